//! redis-server master + replicas + sentinels on 127.0.0.2.. : start, ports,
//! wait-ready, failover, kill/pause/restart; what the rig writes to them
//! (`sentinel.conf`, `redis.conf`) and the one reader of what they answer.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{eventually, free_port, tool, wait_port, Proc, MASTER};

/// How a test talks to a redis or sentinel port: plain [`cli`], or through TLS
/// (`TlsCli::run`).
pub type Run<'a> = &'a (dyn Fn(&str, u16, &[&str]) -> String + Sync);

/// `redis-cli` against host:port; returns stdout.
pub fn cli(host: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new(tool("redis-cli"))
        .args(["-h", host, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// --- what the rig writes: the templates shared with scripts/rig.py ---

const SENTINEL_CONF: &str = include_str!("sentinel.conf");
const REDIS_CONF: &str = include_str!("redis.conf");

/// A template with its `#` lines dropped and every `{name}` filled in
/// (scripts/rig.py `fill` does the same).
fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut text: String = template
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    for (k, v) in vars {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    text
}

/// `text` without its blank lines.
fn no_blank_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// One sentinel's config file (`sentinel.conf`).
pub struct SentinelConf<'a> {
    /// Index: names the log file.
    pub i: usize,
    pub bind: &'a str,
    /// The address it announces (and replicas announce for this host).
    pub host: &'a str,
    pub port: u16,
    pub dir: &'a Path,
    /// The master it monitors as [`MASTER`] (host, port); None: nothing yet.
    pub monitor: Option<(&'a str, u16)>,
    /// Whole lines added before the `sentinel announce-ip` line.
    pub extra: &'a str,
}

impl SentinelConf<'_> {
    pub fn text(&self) -> String {
        let (mh, mp) = self.monitor.unwrap_or_default();
        let text = fill(
            SENTINEL_CONF,
            &[
                ("bind", self.bind.to_owned()),
                ("port", self.port.to_string()),
                ("dir", self.dir.display().to_string()),
                ("i", self.i.to_string()),
                ("extra", self.extra.to_owned()),
                ("host", self.host.to_owned()),
                ("master", MASTER.to_owned()),
                ("master_host", mh.to_owned()),
                ("master_port", mp.to_string()),
            ],
        );
        let text = match self.monitor {
            Some(_) => text.as_str(),
            None => text.split("sentinel monitor ").next().unwrap_or_default(),
        };
        no_blank_lines(text)
    }
}

/// redis-server's command line (`redis.conf`): listens on `bind`:`port`,
/// announces `host`, keeps its files in `dir`; a replica of `replicaof`.
pub fn redis_server_args(
    bind: &str,
    host: &str,
    port: u16,
    dir: &Path,
    replicaof: Option<(&str, u16)>,
) -> Vec<String> {
    let text = fill(
        REDIS_CONF,
        &[
            ("bind", bind.to_owned()),
            ("port", port.to_string()),
            ("host", host.to_owned()),
            ("dir", dir.display().to_string()),
        ],
    );
    let mut args = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, value) = line.split_once(' ').unwrap_or((line, ""));
        args.push(format!("--{name}"));
        args.push(if value == "\"\"" { "" } else { value }.to_owned());
    }
    if let Some((h, p)) = replicaof {
        args.extend(["--replicaof".to_owned(), h.to_owned(), p.to_string()]);
    }
    args
}

// --- what they answer: the one reader of SENTINEL replies ---

/// The records of a `SENTINEL MASTER` / `SENTINEL REPLICAS` reply as redis-cli
/// prints it (field and value lines, one after the other), each as (field,
/// value) pairs; a record starts at its `name` field.
pub fn sentinel_records(reply: &str) -> Vec<Vec<(&str, &str)>> {
    let lines: Vec<&str> = reply.lines().collect();
    let mut records: Vec<Vec<(&str, &str)>> = Vec::new();
    for pair in lines.chunks_exact(2) {
        match records.last_mut() {
            Some(r) if pair[0] != "name" => r.push((pair[0], pair[1])),
            _ => records.push(vec![(pair[0], pair[1])]),
        }
    }
    records
}

/// Field `key` of a `SENTINEL MASTER` reply.
pub fn sentinel_field<'a>(reply: &'a str, key: &str) -> Option<&'a str> {
    sentinel_records(reply)
        .first()?
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
}

/// A `SENTINEL GET-MASTER-ADDR-BY-NAME` reply as (host, port).
pub fn master_addr(reply: &str) -> Option<(String, String)> {
    let mut lines = reply.lines().map(str::trim);
    let (host, port) = (lines.next()?, lines.next()?);
    (!host.is_empty() && !port.is_empty()).then(|| (host.to_owned(), port.to_owned()))
}

/// The answer more than half of `of` sentinels gave, if any.
pub fn majority(answers: impl IntoIterator<Item = String>, of: usize) -> Option<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for a in answers {
        *counts.entry(a).or_default() += 1;
    }
    let (answer, n) = counts.into_iter().max_by_key(|(_, n)| *n)?;
    (n * 2 > of).then_some(answer)
}

/// Whether one sentinel's `SENTINEL MASTER` reply shows at least `replicas`
/// replicas and the other `sentinels - 1` sentinels: a failover can then pick
/// a replica and win a vote.
pub fn ready_for_failover(sentinel_master: &str, replicas: usize, sentinels: usize) -> bool {
    let field = |k: &str| sentinel_field(sentinel_master, k).and_then(|v| v.parse::<usize>().ok());
    field("num-slaves") >= Some(replicas) && field("num-other-sentinels") >= Some(sentinels - 1)
}

/// Redis master + replicas + sentinels on 127.0.0.2.. .
pub struct Redis {
    pub dir: tempfile::TempDir,
    pub redis_port: u16,
    pub sentinel_port: u16,
    pub hosts: Vec<String>,
    pub servers: Vec<Option<Proc>>,
    pub sentinels: Vec<Option<Proc>>,
}

/// `n` loopback hosts from 127.0.0.2 on.
pub fn rig_hosts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("127.0.0.{}", 2 + i)).collect()
}

impl Redis {
    /// A rig with nothing started yet: its directory, ports and hosts.
    pub(super) fn unstarted(nodes: usize, sentinels: usize) -> Redis {
        Redis {
            dir: tempfile::tempdir().expect("tempdir"),
            redis_port: free_port(),
            sentinel_port: free_port(),
            hosts: rig_hosts(nodes.max(sentinels)),
            servers: Vec::new(),
            sentinels: Vec::new(),
        }
    }

    /// `nodes` redis servers (first is master) and `sentinels` sentinels.
    pub fn start(nodes: usize, sentinels: usize) -> Redis {
        let mut r = Redis::unstarted(nodes, sentinels);
        for i in 0..nodes {
            let p = r.spawn_server(i);
            r.servers.push(Some(p));
        }
        for i in 0..nodes {
            wait_port(
                &r.hosts[i],
                r.redis_port,
                Duration::from_secs(10),
                "redis-server",
            );
        }
        for i in 0..sentinels {
            let p = r.spawn_sentinel(i);
            r.sentinels.push(Some(p));
        }
        for i in 0..sentinels {
            wait_port(
                &r.hosts[i],
                r.sentinel_port,
                Duration::from_secs(10),
                "redis-sentinel",
            );
        }
        r
    }

    /// Node `i`'s data directory (made if missing).
    pub(super) fn node_dir(&self, i: usize) -> std::path::PathBuf {
        let dir = self.dir.path().join(format!("redis-{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    /// Node `i`'s command line: node 0 is the master, the others its replicas.
    pub(super) fn server_args(&self, i: usize) -> Vec<String> {
        let host = &self.hosts[i];
        let master = (i > 0).then(|| (self.hosts[0].as_str(), self.redis_port));
        redis_server_args(host, host, self.redis_port, &self.node_dir(i), master)
    }

    /// Sentinel `i`'s config file, written unless it exists (a restarted
    /// sentinel keeps what it rewrote).
    pub(super) fn sentinel_conf_file(&self, i: usize) -> std::path::PathBuf {
        let conf = self.dir.path().join(format!("sentinel-{i}.conf"));
        if !conf.exists() {
            let text = SentinelConf {
                i,
                bind: &self.hosts[i],
                host: &self.hosts[i],
                port: self.sentinel_port,
                dir: self.dir.path(),
                monitor: Some((&self.hosts[0], self.redis_port)),
                extra: "",
            }
            .text();
            std::fs::write(&conf, text).expect("write sentinel conf");
        }
        conf
    }

    fn spawn_server(&self, i: usize) -> Proc {
        let mut cmd = Command::new(tool("redis-server"));
        cmd.args(self.server_args(i));
        Proc::spawn(cmd, &format!("redis-{i}"))
    }

    fn spawn_sentinel(&self, i: usize) -> Proc {
        let mut cmd = Command::new(tool("redis-server"));
        cmd.arg(self.sentinel_conf_file(i)).arg("--sentinel");
        Proc::spawn(cmd, &format!("sentinel-{i}"))
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        (0..self.sentinels.len())
            .map(|i| format!("{}:{}", self.hosts[i], self.sentinel_port))
            .collect()
    }

    /// The master as sentinel `i` sees it ("ip:port").
    pub fn master_seen_by(&self, i: usize) -> Option<String> {
        self.master_seen_via(&cli, i)
    }

    fn master_seen_via(&self, run: Run<'_>, i: usize) -> Option<String> {
        let out = run(
            &self.hosts[i],
            self.sentinel_port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
        );
        master_addr(&out).map(|(h, p)| format!("{h}:{p}"))
    }

    /// The node index of the master per sentinel 0.. majority.
    pub fn master_index(&self) -> Option<usize> {
        self.master_index_via(&cli)
    }

    /// [`Redis::master_index`], talking to the sentinels through `run`.
    pub fn master_index_via(&self, run: Run<'_>) -> Option<usize> {
        let seen = (0..self.sentinels.len())
            .filter(|i| self.sentinels[*i].is_some())
            .filter_map(|i| self.master_seen_via(run, i));
        let addr = majority(seen, self.sentinels.len())?;
        let host = addr.split(':').next()?.to_owned();
        self.hosts.iter().position(|h| *h == host)
    }

    /// Waits until all sentinels know every replica (so a failover can pick one).
    /// See [`ready_for_failover`].
    pub async fn wait_ready_for_failover(&self, replicas: usize) {
        self.wait_ready_for_failover_via(&cli, replicas).await
    }

    /// [`Redis::wait_ready_for_failover`], talking to the sentinels through `run`.
    pub async fn wait_ready_for_failover_via(&self, run: Run<'_>, replicas: usize) {
        eventually(
            "sentinels to see the replicas and each other",
            Duration::from_secs(30),
            || async {
                (0..self.sentinels.len())
                    .filter(|i| self.sentinels[*i].is_some())
                    .all(|i| {
                        let info = run(
                            &self.hosts[i],
                            self.sentinel_port,
                            &["SENTINEL", "MASTER", MASTER],
                        );
                        ready_for_failover(&info, replicas, self.sentinels.len())
                    })
                    .then_some(())
            },
        )
        .await
    }

    /// `SENTINEL FAILOVER` (retried while sentinel says no good replica yet);
    /// waits for the majority to name a new master; returns its node index.
    pub async fn failover(&self) -> usize {
        self.failover_via(&cli).await
    }

    /// [`Redis::failover`], talking to the sentinels through `run`.
    pub async fn failover_via(&self, run: Run<'_>) -> usize {
        let before = self.master_index_via(run);
        eventually(
            "SENTINEL FAILOVER to be accepted",
            Duration::from_secs(60),
            || async {
                let out = run(
                    &self.hosts[0],
                    self.sentinel_port,
                    &["SENTINEL", "FAILOVER", MASTER],
                );
                (out == "OK").then_some(())
            },
        )
        .await;
        eventually(
            "sentinels to agree on a new master",
            Duration::from_secs(60),
            || async { self.master_index_via(run).filter(|m| Some(*m) != before) },
        )
        .await
    }

    /// SIGSTOP (`stop = true`) or SIGCONT a redis server.
    pub fn pause_server(&self, i: usize, stop: bool) {
        if let Some(p) = &self.servers[i] {
            let sig = if stop { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([sig, &p.child.id().to_string()])
                .status();
        }
    }

    /// SIGSTOP (`stop = true`) or SIGCONT sentinel `i`: its sockets stay open
    /// and nothing answers.
    pub fn pause_sentinel(&self, i: usize, stop: bool) {
        if let Some(p) = &self.sentinels[i] {
            let sig = if stop { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([sig, &p.child.id().to_string()])
                .status();
        }
    }

    pub fn kill_server(&mut self, i: usize) {
        self.servers[i] = None;
    }

    pub fn kill_sentinel(&mut self, i: usize) {
        self.sentinels[i] = None;
    }

    pub fn restart_sentinel(&mut self, i: usize) {
        let p = self.spawn_sentinel(i);
        self.sentinels[i] = Some(p);
        wait_port(
            &self.hosts[i],
            self.sentinel_port,
            Duration::from_secs(10),
            "redis-sentinel",
        );
    }

    pub fn restart_server(&mut self, i: usize) {
        let p = self.spawn_server(i);
        self.servers[i] = Some(p);
    }
}

// --- a sentinel link that goes silent ---

/// A TCP proxy in front of one sentinel that can be told to go silent: every
/// connection open at that moment stops forwarding both ways (bytes are read and
/// dropped) without being closed, as when a NAT or firewall forgets a flow. New
/// connections pass, as they would through the same NAT.
pub struct SilentProxy {
    /// `127.0.0.1:port` to give the daemon instead of the sentinel's address.
    pub addr: String,
    /// Connections opened before this generation are silent.
    cut: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentProxy {
    pub async fn start(upstream: String) -> SilentProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let cut = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (c, a) = (cut.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let generation = a.fetch_add(1, Ordering::SeqCst);
                let Ok(up) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                let silent = {
                    let c = c.clone();
                    move || generation < c.load(Ordering::SeqCst)
                };
                tokio::spawn(pump(dr, uw, silent.clone()));
                tokio::spawn(pump(ur, dw, silent));
            }
        });
        SilentProxy {
            addr,
            cut,
            accepted,
        }
    }

    /// Every connection open now goes silent (for good).
    pub fn silence_open_connections(&self) {
        use std::sync::atomic::Ordering;
        self.cut
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: impl Fn() -> bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if silent() {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if silent() {
        // Keep the other side open: a silent path never says goodbye.
        std::future::pending::<()>().await;
    }
}
