//! `sentinel-vip switchover [--master NAME] [--timeout 60s] [--json]`: a planned
//! switchover an operator can trust.
//!
//! 1. Pre-checks, all from the daemon's own majority read (`daemon::read_job`)
//!    plus `SENTINEL REPLICAS`: a majority agrees on the master; no failover in
//!    progress and the master not down; at least one replica Sentinel would
//!    promote and that is caught up ([`replica_problems`]); every route table
//!    of the master readable; subscribed to the sentinels' events. A failed
//!    pre-check exits 1 **without** asking Sentinel anything.
//! 2. `SENTINEL FAILOVER <name>` on a sentinel of the majority (with the
//!    operator's credentials when `SENTINEL_VIP_OPERATOR_USERNAME` /
//!    `SENTINEL_VIP_OPERATOR_PASSWORD` are set, else `sentinel_auth`'s).
//! 3. Waits for `+switch-master` (subscribed before asking) and until its own
//!    read of every route table shows the VIP on the new master's target. It
//!    never writes a route: the daemon does. Prints old → new and the timeline.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use super::Exit;
use crate::act::ec2::Ec2;
use crate::act::targets::Targets;
use crate::config::{Config, MasterConfig, Secret, SentinelAuth};
use crate::daemon::read_job::majority_read_with_reports;
use crate::decide::quorum::{self, Answer, Verdict};
use crate::shutdown::Shutdown;
use crate::watch::event::{Addr, Event};
use crate::watch::{self, SentinelLink, WatchMsg, OPERATOR_ACL_RULE};

/// A replica more than this many bytes behind the most advanced replica is
/// not counted as caught up. Sentinel does not report the master's own
/// offset, so this bounds the lag between replicas (Sentinel promotes the most
/// advanced one), together with [`INFO_FRESH_MS`].
pub(super) const LAG_BOUND_BYTES: u64 = 1024 * 1024;
/// Sentinel's last INFO of the replica (its offset, its link) must be at most
/// this old: Sentinel refreshes replicas every 10 s.
pub(super) const INFO_FRESH_MS: u64 = 15_000;
/// Env vars naming the operator user allowed to run `SENTINEL FAILOVER`.
pub(super) const OPERATOR_USER_ENV: &str = "SENTINEL_VIP_OPERATOR_USERNAME";
pub(super) const OPERATOR_PASSWORD_ENV: &str = "SENTINEL_VIP_OPERATOR_PASSWORD";
/// How often the route tables are read back while waiting.
const POLL: Duration = Duration::from_millis(100);

/// One pre-check's outcome.
#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    ok: bool,
    detail: String,
}

/// Milliseconds from the moment `SENTINEL FAILOVER` was sent.
#[derive(Debug, Default, Serialize)]
struct Timeline {
    /// Sentinel's answer to `SENTINEL FAILOVER` arrived.
    failover_asked: Option<f64>,
    /// The first `+switch-master` for the master arrived (from any sentinel).
    switch_master_seen: Option<f64>,
    /// This command's own read showed every table on the new master's target.
    vip_verified: Option<f64>,
}

/// What `switchover` prints (one JSON object with `--json`).
#[derive(Debug, Default, Serialize)]
struct Report {
    master: String,
    ok: bool,
    old: Option<String>,
    new: Option<String>,
    config_epoch_before: Option<u64>,
    new_target: Option<String>,
    /// The sentinel `SENTINEL FAILOVER` was sent to (absent: never asked).
    asked: Option<String>,
    prechecks: Vec<Check>,
    timeline_ms: Timeline,
    /// Each table's VIP route at the last read.
    tables: Vec<(String, String)>,
    error: Option<String>,
}

pub(super) async fn run(cfg: &Config, master: Option<&str>, timeout: Duration, json: bool) -> Exit {
    let name = match pick_master(cfg, master) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let report = switchover(cfg, &name, timeout).await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print(&report);
    }
    if report.ok {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

/// `--master`, or the one configured master.
fn pick_master(cfg: &Config, asked: Option<&str>) -> Result<String, String> {
    match asked {
        Some(m) if cfg.masters.contains_key(m) => Ok(m.to_owned()),
        Some(m) => Err(format!(
            "--master {m:?} is not in the config (masters: {})",
            names(cfg)
        )),
        None if cfg.masters.len() == 1 => {
            Ok(cfg.masters.keys().next().cloned().unwrap_or_default())
        }
        None => Err(format!(
            "several masters are configured; name one with --master ({})",
            names(cfg)
        )),
    }
}

fn names(cfg: &Config) -> String {
    cfg.masters.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// The operator's credentials from the environment (TLS as configured), or
/// `None` to use `sentinel_auth`.
fn operator_auth(cfg: &Config) -> Option<SentinelAuth> {
    let user = std::env::var(OPERATOR_USER_ENV)
        .ok()
        .filter(|s| !s.is_empty());
    let password = std::env::var(OPERATOR_PASSWORD_ENV)
        .ok()
        .filter(|s| !s.is_empty());
    if user.is_none() && password.is_none() {
        return None;
    }
    Some(SentinelAuth {
        username: user,
        password: password.map(Secret::new),
        password_source: None,
        tls: cfg.sentinel_auth.as_ref().and_then(|a| a.tls.clone()),
    })
}

/// Why Sentinel would not promote this replica now, or why it is not caught
/// up (`best_offset`: the most advanced replica's `slave-repl-offset`). Empty:
/// a good candidate.
pub(super) fn replica_problems(r: &HashMap<String, String>, best_offset: u64) -> Vec<String> {
    let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("");
    let num = |k: &str| r.get(k).and_then(|v| v.parse::<u64>().ok());
    let mut why = Vec::new();
    let bad: Vec<&str> = get("flags")
        .split(',')
        .filter(|f| matches!(*f, "s_down" | "o_down" | "disconnected"))
        .collect();
    if !bad.is_empty() {
        why.push(format!("flagged {}", bad.join(",")));
    }
    if get("master-link-status") != "ok" {
        why.push(format!(
            "master-link-status:{}",
            r.get("master-link-status")
                .map(String::as_str)
                .unwrap_or("unknown")
        ));
    }
    if num("slave-priority") == Some(0) {
        why.push("replica-priority 0 (Sentinel never promotes it)".into());
    }
    match num("info-refresh") {
        Some(ms) if ms <= INFO_FRESH_MS => {}
        Some(ms) => why.push(format!(
            "Sentinel's INFO of it is {ms} ms old (bound {INFO_FRESH_MS} ms)"
        )),
        None => why.push("no info-refresh reported".into()),
    }
    match num("slave-repl-offset") {
        Some(0) | None => why.push("no replication offset yet (not synced)".into()),
        Some(off) if best_offset.saturating_sub(off) > LAG_BOUND_BYTES => why.push(format!(
            "{} bytes behind the most advanced replica (bound {LAG_BOUND_BYTES})",
            best_offset - off
        )),
        Some(_) => {}
    }
    why
}

/// Each replica's address and its problems (empty: a good candidate).
fn judge_replicas(rs: &[HashMap<String, String>]) -> Vec<(String, Vec<String>)> {
    let best = rs
        .iter()
        .filter_map(|r| r.get("slave-repl-offset")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    rs.iter()
        .map(|r| {
            let addr = format!(
                "{}:{}",
                r.get("ip").map(String::as_str).unwrap_or("?"),
                r.get("port").map(String::as_str).unwrap_or("?")
            );
            (addr, replica_problems(r, best))
        })
        .collect()
}

/// Which sentinels are subscribed, and the first `+switch-master` of `name`.
#[derive(Default)]
struct Heard {
    subscribed: BTreeSet<usize>,
    switch: Option<(Instant, Addr, Addr)>,
}

impl Heard {
    fn take(&mut self, name: &str, m: WatchMsg) {
        match m {
            WatchMsg::Connected(id) => {
                self.subscribed.insert(id);
            }
            WatchMsg::Disconnected(id, _) => {
                self.subscribed.remove(&id);
            }
            WatchMsg::Event {
                event: Event::SwitchMaster { master, old, new },
                at,
                ..
            } if master == name && self.switch.is_none() => {
                self.switch = Some((at, old, new));
            }
            WatchMsg::Event { .. } => {}
        }
    }
}

async fn switchover(cfg: &Config, name: &str, timeout: Duration) -> Report {
    let mut report = Report {
        master: name.to_owned(),
        ..Report::default()
    };
    let Some(m) = cfg.masters.get(name) else {
        report.error = Some(format!("{name} is not configured"));
        return report;
    };
    let (stop, stopped) = Shutdown::new();
    let (tx, mut rx) = mpsc::channel(1024);
    // Subscribed before anything is asked: the +switch-master cannot be missed.
    let links = watch::spawn_watchers(
        &cfg.sentinels,
        cfg.sentinel_auth.as_ref(),
        "sentinel-vip-switchover",
        tx,
        &stopped,
    );
    watch::wait_connected(&links, Duration::from_secs(3)).await;
    let ec2 = Ec2::for_config(cfg).await;
    let targets = Targets::default();
    let mut heard = Heard::default();
    let asked = precheck(
        cfg,
        name,
        m,
        &links,
        &ec2,
        &targets,
        &mut rx,
        &mut heard,
        &mut report,
    )
    .await;
    if let Some(link) = asked {
        ask_and_wait(
            cfg,
            name,
            m,
            link,
            &links,
            &ec2,
            &targets,
            &mut rx,
            &mut heard,
            timeout,
            &mut report,
        )
        .await;
    }
    stop.trigger();
    for l in &links {
        l.close().await;
    }
    report
}

/// Runs every pre-check into `report`; returns the sentinel to ask when all passed.
#[allow(clippy::too_many_arguments)]
async fn precheck<'a>(
    cfg: &Config,
    name: &str,
    m: &MasterConfig,
    links: &'a [SentinelLink],
    ec2: &Ec2,
    targets: &Targets,
    rx: &mut mpsc::Receiver<WatchMsg>,
    heard: &mut Heard,
    report: &mut Report,
) -> Option<&'a SentinelLink> {
    let (read, reports) = majority_read_with_reports(0, links, ec2, cfg, targets).await;
    let answers = read.answers.get(name).cloned().unwrap_or_default();
    let mut check = |check: &'static str, ok: bool, detail: String| {
        report.prechecks.push(Check { check, ok, detail });
        ok
    };
    // 1. The majority agrees on the master.
    let (old, epoch) = match quorum::decide(&answers, links.len()) {
        Verdict::Master {
            addr,
            config_epoch,
            votes,
            ..
        } => {
            check(
                "majority",
                true,
                format!(
                    "{votes}/{} sentinels name {addr} at config-epoch {config_epoch}",
                    links.len()
                ),
            );
            (addr, config_epoch)
        }
        Verdict::NoMajority { usable, needed, .. } => {
            check(
                "majority",
                false,
                format!(
                    "no majority agrees on the master ({usable} usable answers, {needed} needed)"
                ),
            );
            return None;
        }
    };
    report.old = Some(old.to_string());
    report.config_epoch_before = Some(epoch);
    // 2. No failover in progress, the master not down.
    let mut busy = Vec::new();
    for ((l, a), rep) in links.iter().zip(&answers).zip(&reports) {
        if let Answer::View(v) = a {
            let flags: Vec<&str> = v
                .flags
                .split(',')
                .filter(|f| matches!(*f, "failover_in_progress" | "s_down" | "o_down"))
                .collect();
            if !flags.is_empty() {
                busy.push(format!("{} flags the master {}", l.addr, flags.join(",")));
            }
        }
        if let Some(stale) = rep.as_ref().ok().and_then(|r| r.stale_addrs.get(name)) {
            busy.push(format!("{} is still reconfiguring from {stale}", l.addr));
        }
    }
    let calm = busy.is_empty();
    check(
        "no failover in progress",
        calm,
        if calm {
            "no sentinel flags failover_in_progress, s_down or o_down".into()
        } else {
            busy.join("; ")
        },
    );
    // 3. Every carrier readable: the route tables, and the other kinds.
    let tables_ok = {
        let mut bad = Vec::new();
        let mut seen = Vec::new();
        match (&read.tables, m.vip) {
            (Err(e), _) if !m.route_tables.is_empty() => bad.push(e.to_string()),
            (Ok(reads), Some(vip)) => {
                for t in &m.route_tables {
                    match reads.get(t) {
                        Some(Ok(r)) => seen.push(format!("{t} ({})", r.route(&vip.0).describe())),
                        Some(Err(e)) => bad.push(e.to_string()),
                        None => bad.push(format!("{t} was not read")),
                    }
                }
            }
            _ => {}
        }
        if let Some(others) = read.carriers.get(name) {
            for (c, r) in others {
                match r {
                    Ok(h) => seen.push(format!("{c} ({})", h.describe())),
                    Err(e) => bad.push(format!("{c}: {e}")),
                }
            }
        }
        if bad.is_empty() {
            check("carriers readable", true, seen.join(", "))
        } else {
            check("carriers readable", false, bad.join("; "))
        }
    };
    // 4. A replica that Sentinel would promote, caught up; asked of a
    // sentinel of the majority, the one SENTINEL FAILOVER goes to.
    let majority_links: Vec<&SentinelLink> = links
        .iter()
        .zip(&answers)
        .filter(|(_, a)| matches!(a, Answer::View(v) if v.addr == old))
        .map(|(l, _)| l)
        .collect();
    let mut chosen = None;
    let mut replica_detail = "no sentinel of the majority answered SENTINEL REPLICAS".to_owned();
    for l in &majority_links {
        match l.replica_fields(name).await {
            Ok(rs) => {
                let judged = judge_replicas(&rs);
                let good: Vec<&String> = judged
                    .iter()
                    .filter(|(_, p)| p.is_empty())
                    .map(|(a, _)| a)
                    .collect();
                replica_detail = if judged.is_empty() {
                    format!("{} knows no replica of {name}", l.addr)
                } else if good.is_empty() {
                    let why: Vec<String> = judged
                        .iter()
                        .map(|(a, p)| format!("{a}: {}", p.join(", ")))
                        .collect();
                    format!("no replica ready ({})", why.join("; "))
                } else {
                    format!(
                        "{} ready (online, link ok, within {LAG_BOUND_BYTES} bytes of the most advanced replica, INFO <= {INFO_FRESH_MS} ms old)",
                        good.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    )
                };
                if !good.is_empty() {
                    chosen = Some(*l);
                }
                break;
            }
            Err(e) => replica_detail = e.to_string(),
        }
    }
    let replica_ok = check("replica ready", chosen.is_some(), replica_detail);
    // 5. Subscribed to the events (waited for, bounded), so the switch is seen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while heard.subscribed.is_empty() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(msg)) => heard.take(name, msg),
            Ok(None) | Err(_) => break,
        }
    }
    while let Ok(msg) = rx.try_recv() {
        heard.take(name, msg);
    }
    let sub_ok = check(
        "subscribed",
        !heard.subscribed.is_empty(),
        format!(
            "{}/{} sentinels' events subscribed (+switch-master)",
            heard.subscribed.len(),
            links.len()
        ),
    );
    if !(calm && tables_ok && replica_ok && sub_ok) {
        report.error = Some("a pre-check failed: SENTINEL FAILOVER was not sent".into());
        return None;
    }
    chosen
}

/// Sends `SENTINEL FAILOVER`, then waits for the switch and the VIP on the new
/// master (the command's own reads).
#[allow(clippy::too_many_arguments)]
async fn ask_and_wait(
    cfg: &Config,
    name: &str,
    m: &MasterConfig,
    link: &SentinelLink,
    links: &[SentinelLink],
    ec2: &Ec2,
    targets: &Targets,
    rx: &mut mpsc::Receiver<WatchMsg>,
    heard: &mut Heard,
    timeout: Duration,
    report: &mut Report,
) {
    let op = operator_auth(cfg);
    let op_links = op.as_ref().map(|auth| {
        watch::command_links(
            std::slice::from_ref(&link.addr),
            Some(auth),
            "sentinel-vip-switchover",
        )
    });
    if let Some(ls) = &op_links {
        watch::wait_connected(ls, Duration::from_secs(3)).await;
    }
    let asking = op_links.as_ref().and_then(|l| l.first()).unwrap_or(link);
    report.asked = Some(link.addr.to_string());
    let t0 = Instant::now();
    let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1e3;
    let answer = asking.failover(name).await;
    if let Some(ls) = &op_links {
        for l in ls {
            l.close().await;
        }
    }
    if let Err(e) = answer {
        let text = e.to_string();
        let hint = if text.contains("NOPERM") {
            format!(
                "; this user may not run SENTINEL FAILOVER: set {OPERATOR_USER_ENV}/{OPERATOR_PASSWORD_ENV} to an operator user with `ACL SETUSER <user> on >password {OPERATOR_ACL_RULE}`"
            )
        } else {
            String::new()
        };
        report.error = Some(format!("Sentinel refused the failover: {text}{hint}"));
        return;
    }
    report.timeline_ms.failover_asked = Some(ms(Instant::now()));
    let old = report.old.clone().unwrap_or_default();
    let deadline = t0 + timeout;
    let cidrs: BTreeSet<_> = m.vip.iter().map(|v| v.0).collect();
    let tables: BTreeSet<_> = m.route_tables.iter().cloned().collect();
    let mut new: Option<Addr> = None;
    let mut target = None;
    let mut next_majority = Instant::now() + Duration::from_secs(2);
    loop {
        while let Ok(msg) = rx.try_recv() {
            heard.take(name, msg);
        }
        if let (None, Some((at, _, to))) = (&new, &heard.switch) {
            report.timeline_ms.switch_master_seen = Some(ms(*at));
            new = Some(to.clone());
        }
        // No event (a subscription lost?): learn the new master from a majority read.
        if new.is_none() && Instant::now() >= next_majority {
            next_majority = Instant::now() + Duration::from_secs(1);
            let (read, _) = majority_read_with_reports(0, links, ec2, cfg, targets).await;
            let answers = read.answers.get(name).cloned().unwrap_or_default();
            if let Verdict::Master { addr, .. } = quorum::decide(&answers, links.len()) {
                if addr.to_string() != old {
                    new = Some(addr);
                }
            }
        }
        if let Some(n) = &new {
            report.new = Some(n.to_string());
            if target.is_none() {
                match targets.resolve(ec2, name, m, n).await {
                    Ok(t) => {
                        report.new_target = Some(t.to_string());
                        target = Some(t);
                    }
                    Err(e) => report.error = Some(format!("cannot map {n} to an EC2 target: {e}")),
                }
            }
            if let Some(t) = &target {
                // Every carrier of the master, read by this command itself:
                // the route tables, then the other kinds on the master's nodes.
                let tables_read = if tables.is_empty() {
                    Ok(Default::default())
                } else {
                    ec2.read_each_table(&tables, &cidrs).await
                };
                let others = if crate::act::carriers::has_others(m) {
                    let nodes = crate::act::carriers::node_targets(
                        targets,
                        name,
                        m,
                        std::iter::once(n).chain(old_addr(&old).as_ref()),
                    );
                    Some(crate::act::carriers::read_others(ec2, m, &nodes).await)
                } else {
                    None
                };
                if let (Ok(reads), Some(vip)) = (&tables_read, m.vip) {
                    report.tables = m
                        .route_tables
                        .iter()
                        .map(|id| {
                            let r = reads
                                .get(id)
                                .and_then(|r| r.as_ref().ok())
                                .map(|r| r.route(&vip.0));
                            (
                                id.to_string(),
                                r.map(|r| r.describe())
                                    .unwrap_or_else(|| "unreadable".into()),
                            )
                        })
                        .collect();
                }
                if let Some(o) = &others {
                    report.tables.extend(o.iter().map(|(c, r)| {
                        (
                            c.to_string(),
                            r.as_ref()
                                .map(|h| h.describe())
                                .unwrap_or_else(|_| "unreadable".into()),
                        )
                    }));
                }
                let tables_right = match (&tables_read, m.vip) {
                    (Ok(reads), Some(vip)) => m.route_tables.iter().all(|id| {
                        reads
                            .get(id)
                            .and_then(|r| r.as_ref().ok())
                            .is_some_and(|r| r.route(&vip.0).points_at(t))
                    }),
                    (Ok(_), None) => true,
                    (Err(_), _) => false,
                };
                let others_right = others
                    .as_ref()
                    .is_none_or(|o| o.values().all(|r| r.as_ref().is_ok_and(|h| h.points_at(t))));
                if tables_right && others_right {
                    report.timeline_ms.vip_verified = Some(ms(Instant::now()));
                    report.ok = true;
                    report.error = None;
                    return;
                }
            }
        }
        if Instant::now() >= deadline {
            report.error = Some(match &new {
                None => format!(
                    "no +switch-master for {name} within {} s and the majority still names {old}: Sentinel did not finish the failover (see the sentinels' logs)",
                    timeout.as_secs()
                ),
                Some(n) => format!(
                    "Sentinel switched {name} to {n}, but the VIP was not verified on it within {} s: the route is moved by the daemon (`sentinel-vip run`); if no daemon is running the route never moves — run `sentinel-vip reconcile`",
                    timeout.as_secs()
                ),
            });
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print(r: &Report) {
    for c in &r.prechecks {
        println!(
            "{} pre-check {:<24} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.check,
            c.detail
        );
    }
    let old = r.old.as_deref().unwrap_or("?");
    let new = r.new.as_deref().unwrap_or("?");
    if let Some(asked) = &r.asked {
        println!("switchover of {}: {old} -> {new}", r.master);
        let t = &r.timeline_ms;
        let line = |ms: Option<f64>, what: String| match ms {
            Some(ms) => println!("  {ms:>8.0} ms  {what}"),
            None => println!("  {:>8} ms  {what}: not seen", "-"),
        };
        line(
            t.failover_asked,
            format!("SENTINEL FAILOVER answered by {asked}"),
        );
        line(t.switch_master_seen, "+switch-master seen".into());
        line(
            t.vip_verified,
            format!(
                "VIP verified on {new} ({}) in {} carriers",
                r.new_target.as_deref().unwrap_or("?"),
                r.tables.len()
            ),
        );
        for (t, route) in &r.tables {
            println!("  {t:<40} {route}");
        }
    }
    match &r.error {
        Some(e) => println!("error: {e}"),
        None if r.ok => println!("ok: {} now on {new}", r.master),
        None => {}
    }
}

/// The old master's address as the report spells it, for the secondary-IP
/// read (the address may still be on its ENI); `None` when it does not parse.
fn old_addr(old: &str) -> Option<Addr> {
    old.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(fields: &[(&str, &str)]) -> HashMap<String, String> {
        let mut r: HashMap<String, String> = [
            ("ip", "10.0.1.12"),
            ("port", "6379"),
            ("flags", "slave"),
            ("master-link-status", "ok"),
            ("slave-priority", "100"),
            ("info-refresh", "1200"),
            ("slave-repl-offset", "5000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in fields {
            r.insert((*k).to_owned(), (*v).to_owned());
        }
        r
    }

    #[test]
    fn a_caught_up_online_replica_is_a_candidate() {
        assert!(replica_problems(&replica(&[]), 5000).is_empty());
        assert!(replica_problems(&replica(&[]), 5000 + LAG_BOUND_BYTES).is_empty());
    }

    #[test]
    fn each_reason_sentinel_would_not_promote_or_the_replica_lags_is_named() {
        let cases = [
            (
                replica(&[("flags", "slave,s_down,disconnected")]),
                "s_down,disconnected",
            ),
            (
                replica(&[("master-link-status", "err")]),
                "master-link-status:err",
            ),
            (replica(&[("slave-priority", "0")]), "replica-priority 0"),
            (replica(&[("info-refresh", "60000")]), "60000 ms old"),
            (replica(&[("slave-repl-offset", "0")]), "not synced"),
        ];
        for (r, says) in cases {
            let p = replica_problems(&r, 5000);
            assert!(p.iter().any(|x| x.contains(says)), "{says}: {p:?}");
        }
        let behind = replica_problems(&replica(&[]), 5000 + LAG_BOUND_BYTES + 1);
        assert!(behind[0].contains("bytes behind"), "{behind:?}");
    }

    #[test]
    fn judged_against_the_most_advanced_replica() {
        let far = (LAG_BOUND_BYTES * 3).to_string();
        let rs = vec![
            replica(&[]),
            replica(&[("ip", "10.0.1.13"), ("slave-repl-offset", &far)]),
        ];
        let j = judge_replicas(&rs);
        assert!(!j[0].1.is_empty() && j[1].1.is_empty(), "{j:?}");
    }
}
