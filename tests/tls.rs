//! TLS to the sentinels (`sentinel_tls`): TLS-only sentinels and Redis
//! (`port 0`, `tls-port`, `tls-replication yes`), certificates made by openssl
//! in the test. A failover moves the VIP as on plaintext; a wrong CA, an expired
//! certificate, a name mismatch or a missing client certificate is named by
//! `check` and by the daemon's log, quickly, without a hang or a panic.

mod common;

use std::time::{Duration, Instant};

use common::*;

const WITHIN: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_on_tls_only_sentinels_with_client_certificate_moves_the_vip() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let moto = Moto::start();
    let vpc = Vpc::create(&moto.url, 2, 3).await;
    let redis = Redis::start_tls(3, 3, &certs, "server", true);
    let cli = TlsCli::new(&certs);
    let yaml = config_yaml(
        &redis,
        &moto,
        &vpc,
        "30s",
        &certs.yaml("ca.crt", true, None),
    );

    let (out, _, _) = run_check(redis.dir.path(), &yaml);
    for s in redis.sentinel_addrs() {
        assert!(
            out.contains(&format!("ok    sentinel {s}: reachable over TLS")),
            "{out}"
        );
    }
    assert!(!out.contains("FAIL  sentinel"), "{out}");

    let daemon = Daemon::start(redis.dir.path(), &yaml);
    vpc.wait_all_point_at(&vpc.enis[0], WITHIN).await;
    let first = redis.failover_with(&cli, 2).await;
    assert_ne!(first, 0);
    vpc.wait_all_point_at(&vpc.enis[first], WITHIN).await;
    // The switch's own write (not the start's), once verified.
    daemon
        .wait_log("cause=\"+switch-master\"", Duration::from_secs(5))
        .await;
    let logs = daemon.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    // The fast path over TLS: the switch's target was known as a replica, so
    // the event moved the VIP at once, without asking the majority first.
    assert!(
        logs.contains("+switch-master: moving the VIP") && !logs.contains("asking the majority"),
        "{logs}"
    );
    eprintln!("---- daemon log ----\n{logs}");
}

/// One TLS-only sentinel presenting `cert`, monitoring one TLS-only redis.
fn one_sentinel(certs: &Certs, cert: &str, auth_clients: bool) -> Redis {
    Redis::start_tls(1, 1, certs, cert, auth_clients)
}

/// A config for one sentinel; EC2 is unreachable (and given up on quickly):
/// only the sentinel lines matter here.
fn one_sentinel_yaml(redis: &Redis, tls: &str) -> String {
    ConfigYaml {
        endpoint: Some("http://127.0.0.1:9".into()),
        aws_extra: "  call_timeout: 1s\n  max_attempts: 1\n".into(),
        tables: vec!["rtb-0123".into()],
        extra: tls.to_owned(),
        ..ConfigYaml::new([redis.sentinel_addrs()[0].clone()])
    }
    .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_certificate_when_sentinels_do_not_ask_for_one() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let redis = one_sentinel(&certs, "server", false);
    let s = &redis.sentinel_addrs()[0];
    for tls in [
        certs.yaml("ca.crt", false, None),
        certs.yaml("ca.crt", true, None),
    ] {
        let (out, _, _) = run_check(redis.dir.path(), &one_sentinel_yaml(&redis, &tls));
        assert!(
            out.contains(&format!("ok    sentinel {s}: reachable over TLS")),
            "{out}"
        );
        assert!(out.contains("ROLE is sentinel"), "{out}");
        assert!(out.contains("PSUBSCRIBE * allowed"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_named_by_check_and_the_daemon_quickly() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let good = one_sentinel(&certs, "server", true);
    let expired = one_sentinel(&certs, "expired", true);
    let named = one_sentinel(&certs, "named", true);
    // (sentinel, sentinel_tls block, what check and the log must say)
    let cases = [
        (
            &good,
            certs.yaml("other-ca.crt", true, None),
            "not signed by the configured CA",
        ),
        (&expired, certs.yaml("ca.crt", true, None), "has expired"),
        (
            &named,
            certs.yaml("ca.crt", true, None),
            "not valid for the address dialled",
        ),
        (
            &good,
            certs.yaml("ca.crt", false, None),
            "client certificate",
        ),
    ];
    for (redis, tls, reason) in &cases {
        let s = &redis.sentinel_addrs()[0];
        let yaml = one_sentinel_yaml(redis, tls);
        let (out, ok, took) = run_check(redis.dir.path(), &yaml);
        assert!(!ok, "{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("FAIL  sentinel {s}: cannot connect")))
            .unwrap_or_else(|| panic!("no FAIL line for {s} ({reason}):\n{out}"));
        assert!(line.contains(reason), "expected {reason:?} in {line}");
        // Not a 3 s wait for the connection: the refusal is conclusive at once
        // (the EC2 part gives up after its own 1 s).
        assert!(
            took < Duration::from_millis(2500),
            "check took {took:?}:\n{out}"
        );
        eprintln!("check {took:?}: {line}");

        let t0 = Instant::now();
        let daemon = Daemon::start(redis.dir.path(), &yaml);
        eventually(
            &format!("daemon log to name {s} and {reason:?}"),
            Duration::from_secs(10),
            || async {
                daemon
                    .logs()
                    .lines()
                    .any(|l| {
                        l.contains("cannot connect to sentinel")
                            && l.contains(s.as_str())
                            && l.contains(reason)
                    })
                    .then_some(())
            },
        )
        .await;
        let named_after = t0.elapsed();
        // Well under the 2 s connection timeout (process start included).
        assert!(named_after < Duration::from_millis(1500), "{named_after:?}");
        let logs = daemon.logs();
        assert!(!logs.contains("panicked"), "{logs}");
        // Logged once per reason and link, not on every retry.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let logs = daemon.logs();
        let n = logs
            .lines()
            .filter(|l| l.contains("cannot connect to sentinel"))
            .count();
        assert!(n <= 2, "logged {n} times:\n{logs}");
        eprintln!("daemon named it after {named_after:?}");
    }

    // The name mismatch is fixed by `server_name`.
    let s = &named.sentinel_addrs()[0];
    let yaml = one_sentinel_yaml(
        &named,
        &certs.yaml("ca.crt", true, Some("sentinel.internal")),
    );
    let (out, _, _) = run_check(named.dir.path(), &yaml);
    assert!(
        out.contains(&format!(
            "ok    sentinel {s}: reachable over TLS (verified against"
        )),
        "{out}"
    );
    assert!(out.contains("as sentinel.internal"), "{out}");
}

/// Connect → subscribed (the watcher's `Connected`: TCP, TLS handshake, AUTH,
/// fred's setup, CLIENT SETNAME, PSUBSCRIBE * and its PING proof), 20 times
/// each on one plaintext and one TLS sentinel (client certificate); prints the
/// medians. Run: `cargo test --test tls handshake_cost -- --nocapture`.
/// Benchmark, not a test (no timing is asserted): median of 20 connects, from
/// start to subscribed. `cargo test --test tls handshake_cost -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn handshake_cost_plaintext_vs_tls() {
    use sentinel_vip::config::Config;
    use sentinel_vip::shutdown::Shutdown;
    use sentinel_vip::watch::{spawn_watchers, WatchMsg};

    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let plain = Redis::start(1, 1);
    let tls = Redis::start_tls(1, 1, &certs, "server", true);
    let mut medians = Vec::new();
    for (what, redis, extra) in [
        ("plaintext", &plain, String::new()),
        ("TLS", &tls, certs.yaml("ca.crt", true, None)),
    ] {
        let yaml = ConfigYaml {
            tables: vec!["rtb-0123".into()],
            extra,
            ..ConfigYaml::new([redis.sentinel_addrs()[0].clone()])
        }
        .yaml();
        let cfg = Config::parse(&yaml).expect("config");
        let mut took = Vec::new();
        for _ in 0..20 {
            let (trigger, shutdown) = Shutdown::new();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let t0 = Instant::now();
            let links = spawn_watchers(
                &cfg.sentinels,
                cfg.sentinel_auth.as_ref(),
                "bench",
                tx,
                &shutdown,
            );
            loop {
                match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                    Ok(Some(WatchMsg::Connected(_))) => break,
                    Ok(Some(WatchMsg::Disconnected(_, why))) => panic!("{what}: {why}"),
                    Ok(Some(_)) => {}
                    other => panic!("{what}: no Connected: {other:?}"),
                }
            }
            took.push(t0.elapsed());
            trigger.trigger();
            for l in &links {
                l.close().await;
            }
        }
        took.sort();
        let median = took[took.len() / 2];
        println!(
            "connect → subscribed, {what}: median {:.2} ms, min {:.2} ms, max {:.2} ms (n=20)",
            median.as_secs_f64() * 1e3,
            took[0].as_secs_f64() * 1e3,
            took[took.len() - 1].as_secs_f64() * 1e3
        );
        medians.push(median);
    }
    println!(
        "TLS / plaintext: {:.2}",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
}

/// How a failover bench cell's rig and the daemon's sentinel links are set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// Everything plaintext.
    Plaintext,
    /// Everything TLS-only, the daemon with a client certificate.
    Tls,
    /// The TLS rig (replication, sentinel links all TLS), the daemon dialling
    /// the sentinels' extra plaintext port: what the rig's own TLS costs, apart
    /// from the daemon's links.
    TlsRigPlainLinks,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Plaintext => "plaintext",
            Setup::Tls => "TLS (client certificate)",
            Setup::TlsRigPlainLinks => "TLS rig, daemon on plaintext",
        }
    }
}

/// One cell: its rig, moto, VPC and daemon.
struct Cell {
    setup: Setup,
    redis: Redis,
    vpc: Vpc,
    daemon: Daemon,
    moto: Moto,
}

impl Cell {
    async fn start(setup: Setup, certs: &Certs) -> Cell {
        let moto = Moto::start();
        let vpc = Vpc::create(&moto.url, 2, 3).await;
        let plain_port = free_port();
        let (redis, extra) = match setup {
            Setup::Plaintext => (Redis::start(3, 3), String::new()),
            Setup::Tls => (
                Redis::start_tls(3, 3, certs, "server", true),
                certs.yaml("ca.crt", true, None),
            ),
            Setup::TlsRigPlainLinks => (
                Redis::start_tls_also_plain(3, 3, certs, "server", true, Some(plain_port)),
                String::new(),
            ),
        };
        let mut yaml = ConfigYaml {
            extra,
            ..ConfigYaml::rig(&redis, &moto.url, &vpc, "30s")
        };
        if setup == Setup::TlsRigPlainLinks {
            yaml.sentinels = (0..3)
                .map(|i| format!("{}:{plain_port}", redis.hosts[i]))
                .collect();
        }
        let daemon = Daemon::start(redis.dir.path(), &yaml.yaml());
        vpc.wait_all_point_at(&vpc.enis[0], WITHIN).await;
        Cell {
            setup,
            redis,
            vpc,
            daemon,
            moto,
        }
    }

    /// One `SENTINEL FAILOVER`. From the failover command until the daemon has
    /// logged the route write, the bench only reads the daemon's log file: no
    /// redis-cli (a TLS one is a process start and a mutual handshake), no
    /// DescribeRouteTables on the single-threaded moto the daemon writes to.
    async fn failover(&self, cli: &TlsCli) -> Cpu {
        let tls_cli = |h: &str, p: u16, a: &[&str]| cli.run(h, p, a);
        let run: common::Run<'_> = match self.setup {
            Setup::Plaintext => &common::cli,
            Setup::Tls | Setup::TlsRigPlainLinks => &tls_cli,
        };
        let r = &self.redis;
        r.wait_ready_for_failover_via(run, 2).await;
        let before = r.master_index_via(run);
        let written = || verified_writes(&self.daemon.logs());
        let logged = written();
        let cpu_before = self.cpu();
        eventually("SENTINEL FAILOVER to be accepted", WITHIN, || async {
            (run(
                &r.hosts[0],
                r.sentinel_port,
                &["SENTINEL", "FAILOVER", MASTER],
            ) == "OK")
                .then_some(())
        })
        .await;
        eventually("the daemon to log a route write", WITHIN, || async {
            (written() > logged).then_some(())
        })
        .await;
        let cpu = self.cpu().since(cpu_before);
        let new = eventually("sentinels to agree on a new master", WITHIN, || async {
            r.master_index_via(run).filter(|m| Some(*m) != before)
        })
        .await;
        self.vpc
            .wait_all_point_at(&self.vpc.enis[new], WITHIN)
            .await;
        cpu
    }

    /// CPU time used so far by the rig's redis-servers and sentinels, moto and
    /// the daemon.
    fn cpu(&self) -> Cpu {
        let procs = |v: &[Option<Proc>]| {
            v.iter()
                .flatten()
                .map(|p| cpu_ms(p.child.id()))
                .sum::<f64>()
        };
        Cpu {
            rig: procs(&self.redis.servers) + procs(&self.redis.sentinels),
            moto: cpu_ms(self.moto.proc.child.id()),
            daemon: self
                .daemon
                .proc
                .as_ref()
                .map_or(0.0, |p| cpu_ms(p.child.id())),
        }
    }

    /// The sentinels' own logs (`+switch-master` lines carry the time it was
    /// published, to the millisecond).
    fn sentinel_logs(&self) -> Vec<String> {
        (0..3)
            .map(|i| {
                std::fs::read_to_string(self.redis.dir.path().join(format!("sentinel-{i}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// CPU time (user + system) in ms, per group of processes.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    rig: f64,
    moto: f64,
    daemon: f64,
}

impl Cpu {
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            rig: self.rig - before.rig,
            moto: self.moto - before.moto,
            daemon: self.daemon - before.daemon,
        }
    }
}

/// User + system CPU time of process `pid` in ms (`/proc/<pid>/stat`, clock
/// ticks of 10 ms); 0 where it cannot be read.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after ")".
    (ticks(11) + ticks(12)) * 10.0
}

fn verified_writes(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("VIP route updated and verified"))
        .count()
}

/// One failover as the daemon logged it.
#[derive(Debug, Clone, Copy)]
struct SwitchWrite {
    /// The daemon's own `since_event_ms`: the event read off the socket →
    /// every table written.
    since_event: f64,
    /// Its `write_ms`: the tables' writes alone.
    write: f64,
    /// The first sentinel's `+switch-master` (its log, ms) → every table
    /// written: what the daemon's own figure leaves out is the delivery.
    published: Option<f64>,
    /// The first sentinel's `+switch-master` → the daemon read it: the
    /// sentinel link's part.
    delivered: Option<f64>,
}

/// Seconds since midnight of `HH:MM:SS.fff…`.
fn time_of_day(t: &str) -> Option<f64> {
    let mut it = t.splitn(3, ':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let s: f64 = it.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `a - b` in seconds for two times of day whose clocks may differ by a time
/// zone (the daemon logs UTC, redis local time): taken modulo 15 minutes, the
/// unit of every zone offset. Only meaningful for gaps well under 7 minutes.
fn tod_gap(a: f64, b: f64) -> f64 {
    (a - b + 450.0).rem_euclid(900.0) - 450.0
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.split(&format!(" {key}=")).nth(1)?;
    Some(rest.split(' ').next()?.trim_matches('"'))
}

/// Every route write the daemon made for a `+switch-master`, with when that
/// switch was first published by any sentinel (from `sentinel_logs`).
fn switch_writes(daemon_log: &str, sentinel_logs: &[String]) -> Vec<SwitchWrite> {
    // (time of day, new master "ip:port") of every +switch-master published.
    let published: Vec<(f64, String)> = sentinel_logs
        .iter()
        .flat_map(|l| l.lines())
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == "+switch-master")?;
            Some((
                time_of_day(w.get(at.checked_sub(2)?)?)?,
                format!("{}:{}", w.get(at + 4)?, w.get(at + 5)?),
            ))
        })
        .collect();
    let mut out = Vec::new();
    // When the daemon first read the switch now under way (its debug line).
    let mut first_read: Option<(String, f64)> = None;
    for l in daemon_log.lines() {
        let Some(tod) = l.get(11..26).and_then(time_of_day) else {
            continue;
        };
        if l.contains("channel=+switch-master") {
            let payload = l.split("payload=").nth(1).unwrap_or("").to_owned();
            if first_read.as_ref().map(|(p, _)| p) != Some(&payload) {
                first_read = Some((payload, tod));
            }
        } else if l.contains("VIP route updated and verified")
            && l.contains("cause=\"+switch-master\"")
        {
            let num = |k| field(l, k).and_then(|v| v.parse::<f64>().ok());
            let (Some(since_event), Some(write), Some(addr)) =
                (num("since_event_ms"), num("write_ms"), field(l, "addr"))
            else {
                continue;
            };
            // The earliest publication of this switch: the largest gap before
            // the daemon read it (-2 ms: the sentinel's log keeps whole ms).
            let delivered = first_read.as_ref().and_then(|(_, read)| {
                published
                    .iter()
                    .filter(|(_, new)| new == addr)
                    .map(|(t, _)| tod_gap(*read, *t))
                    .filter(|gap| (-0.002..5.0).contains(gap))
                    .max_by(f64::total_cmp)
                    .map(|gap| gap * 1e3)
            });
            out.push(SwitchWrite {
                since_event,
                write,
                published: delivered.map(|d| d + since_event),
                delivered,
            });
        }
    }
    out
}

/// Median and p95 (nearest rank) of `v`.
fn median_p95(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (v[v.len() / 2], v[(v.len() * 95).div_ceil(100) - 1])
}

/// Benchmark: `+switch-master` → every route table written, plaintext vs
/// TLS-only sentinels (client certificates), with a third cell — the TLS rig,
/// the daemon dialling the sentinels' plaintext port — that tells the daemon's
/// TLS links apart from the rig's own TLS work. The three cells run at once
/// and take turns, one failover each, `SV_BENCH_FAILOVERS` (default 20) rounds,
/// so the load of the machine falls on all three alike. Printed per cell:
/// median / p95 of the first sentinel's publication → every table written
/// (the sentinels' logs and the daemon's), split into the delivery, the
/// daemon's path to its writes and the writes (`since_event_ms`, `write_ms`),
/// and the CPU the rig, moto and the daemon spent per failover.
/// `cargo test --test tls failover_latency -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn failover_latency_plaintext_vs_tls() {
    let n: usize = std::env::var("SV_BENCH_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::make(certs_dir.path());
    let cli = TlsCli::new(&certs);
    let mut cells = Vec::new();
    for setup in [Setup::Plaintext, Setup::Tls, Setup::TlsRigPlainLinks] {
        cells.push(Cell::start(setup, &certs).await);
    }
    let mut cpu = vec![Cpu::default(); cells.len()];
    for _ in 0..n {
        for (i, cell) in cells.iter().enumerate() {
            let c = cell.failover(&cli).await;
            cpu[i].rig += c.rig / n as f64;
            cpu[i].moto += c.moto / n as f64;
            cpu[i].daemon += c.daemon / n as f64;
        }
    }
    let mut medians = Vec::new();
    for cell in &cells {
        let what = cell.setup.name();
        let log = cell.daemon.logs();
        if let Ok(dir) = std::env::var("SV_BENCH_KEEP_LOGS") {
            let file = format!("{dir}/{:?}", cell.setup);
            let _ = std::fs::write(format!("{file}.daemon.log"), &log);
            let _ = std::fs::write(
                format!("{file}.sentinels.log"),
                cell.sentinel_logs().join(""),
            );
            for i in 0..3 {
                let _ = std::fs::copy(
                    cell.redis.dir.path().join(format!("redis-{i}/redis.log")),
                    format!("{file}.redis-{i}.log"),
                );
            }
        }
        let w = switch_writes(&log, &cell.sentinel_logs());
        // A failover whose route was moved by a read (not the event) logs no
        // `+switch-master` write: left out of the figure.
        assert!(
            w.len() * 4 >= n * 3,
            "{what}: {} switch writes logged for {n} failovers",
            w.len()
        );
        let published: Vec<f64> = w.iter().filter_map(|x| x.published).collect();
        let n_published = published.len();
        let (pm, pp) = median_p95(published);
        let (dm, dp) = median_p95(w.iter().filter_map(|x| x.delivered).collect());
        let (em, ep) = median_p95(w.iter().map(|x| x.since_event).collect());
        let (sm, sp) = median_p95(w.iter().map(|x| x.since_event - x.write).collect());
        let (wm, wp) = median_p95(w.iter().map(|x| x.write).collect());
        let c = cpu[medians.len()];
        println!(
            "{what} (median / p95 ms):\n\
             \x20   first +switch-master published → every table written  {pm:6.1} / {pp:6.1} (n={n_published})\n\
             \x20   of which published → read by the daemon (delivery)    {dm:6.1} / {dp:6.1}\n\
             \x20   the daemon's since_event_ms (read → written)          {em:6.1} / {ep:6.1} (n={})\n\
             \x20   of which read → writes started (guard, target, queue) {sm:6.1} / {sp:6.1}\n\
             \x20   and write_ms (the EC2 writes)                         {wm:6.1} / {wp:6.1}\n\
             \x20   CPU per failover, mean (FAILOVER → written): redis + sentinels {:.0} ms, moto {:.0} ms, daemon {:.0} ms",
            w.len(),
            c.rig,
            c.moto,
            c.daemon
        );
        medians.push((pm, em));
    }
    for (i, cell) in cells.iter().enumerate().skip(1) {
        println!(
            "{} / plaintext (medians): published → written {:.2}, the daemon's since_event_ms {:.2}",
            cell.setup.name(),
            medians[i].0 / medians[0].0,
            medians[i].1 / medians[0].1
        );
    }
}
