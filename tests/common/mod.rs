//! The test rig: real redis-server master + 2 replicas + 3 sentinels on loopback
//! addresses, moto_server as the EC2 API, and the daemon as a real process.
//!
//! Missing tools are a test failure naming the setup command, never a skip.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;

pub const SETUP: &str =
    "run `scripts/setup.sh` (apt: redis-server redis-tools; a venv .venv with moto[server])";
pub const MASTER: &str = "mymaster";
pub const VIP: &str = "172.16.0.10/32";

/// Polls `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn free_port() -> u16 {
    // 0.0.0.0 so the port is free on every 127.0.0.x address.
    TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

pub fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("{name} not found on PATH: {SETUP}"))
}

fn moto_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    which("moto_server").unwrap_or_else(|| {
        panic!("moto_server not found (.venv/bin, PATH or $MOTO_SERVER): {SETUP}")
    })
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_port(host: &str, port: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect((host, port)).is_err() {
        if Instant::now() > deadline {
            panic!("{what} did not listen on {host}:{port} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-cli` against host:port; returns stdout.
pub fn cli(host: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new(tool("redis-cli"))
        .args(["-h", host, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub struct Moto {
    pub proc: Proc,
    pub port: u16,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_path())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server: {e}; {SETUP}"));
        wait_port("127.0.0.1", port, Duration::from_secs(30), "moto_server");
        Moto {
            proc: Proc {
                child,
                name: "moto".into(),
            },
            port,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// EC2 objects made in moto for the rig.
pub struct Vpc {
    pub client: Client,
    pub tables: Vec<String>,
    /// One ENI per Redis node (index = node index).
    pub enis: Vec<String>,
}

pub async fn ec2_client(url: &str) -> Client {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .load()
        .await;
    Client::new(&conf)
}

impl Vpc {
    pub async fn create(url: &str, tables: usize, nodes: usize) -> Vpc {
        let client = ec2_client(url).await;
        let vpc = client
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .expect("CreateVpc");
        let vpc_id = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("vpc id")
            .to_owned();
        let subnet = client
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.0.1.0/24")
            .send()
            .await
            .expect("CreateSubnet");
        let subnet_id = subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_owned();
        let mut table_ids = Vec::new();
        for _ in 0..tables {
            let t = client
                .create_route_table()
                .vpc_id(&vpc_id)
                .send()
                .await
                .expect("CreateRouteTable");
            table_ids.push(
                t.route_table()
                    .and_then(|t| t.route_table_id())
                    .expect("rtb id")
                    .to_owned(),
            );
        }
        let mut enis = Vec::new();
        for i in 0..nodes {
            let e = client
                .create_network_interface()
                .subnet_id(&subnet_id)
                .private_ip_address(format!("10.0.1.{}", 11 + i))
                .send()
                .await
                .expect("CreateNetworkInterface");
            enis.push(
                e.network_interface()
                    .and_then(|n| n.network_interface_id())
                    .expect("eni")
                    .to_owned(),
            );
        }
        Vpc {
            client,
            tables: table_ids,
            enis,
        }
    }

    /// The VIP route's target (ENI id, or instance id) per table.
    pub async fn vip_targets(&self) -> Vec<Option<String>> {
        self.routes_to(VIP).await
    }

    /// The target (ENI id, or instance id) of the route to `cidr` (IPv4 or
    /// IPv6 destination) per table.
    pub async fn routes_to(&self, cidr: &str) -> Vec<Option<String>> {
        let out = self
            .client
            .describe_route_tables()
            .filters(
                Filter::builder()
                    .name("route-table-id")
                    .set_values(Some(self.tables.clone()))
                    .build(),
            )
            .send()
            .await
            .expect("DescribeRouteTables");
        let by_id: HashMap<String, Option<String>> = out
            .route_tables()
            .iter()
            .map(|t| {
                let target = t
                    .routes()
                    .iter()
                    .find(|r| {
                        r.destination_cidr_block() == Some(cidr)
                            || r.destination_ipv6_cidr_block() == Some(cidr)
                    })
                    .and_then(|r| {
                        r.network_interface_id()
                            .or(r.instance_id())
                            .map(str::to_owned)
                    });
                (t.route_table_id().unwrap_or_default().to_owned(), target)
            })
            .collect();
        self.tables
            .iter()
            .map(|t| by_id.get(t).cloned().flatten())
            .collect()
    }

    /// Waits until every table's VIP route points at `eni`.
    pub async fn wait_all_point_at(&self, eni: &str, within: Duration) {
        let want = Some(eni.to_owned());
        eventually(
            &format!("every route table's VIP route to point at {eni}"),
            within,
            || async {
                let t = self.vip_targets().await;
                t.iter().all(|x| *x == want).then_some(())
            },
        )
        .await
    }

    pub async fn set_route(&self, table: usize, eni: &str) {
        let r = self
            .client
            .replace_route()
            .route_table_id(&self.tables[table])
            .destination_cidr_block(VIP)
            .network_interface_id(eni)
            .send()
            .await;
        if r.is_err() {
            self.client
                .create_route()
                .route_table_id(&self.tables[table])
                .destination_cidr_block(VIP)
                .network_interface_id(eni)
                .send()
                .await
                .expect("CreateRoute");
        }
    }
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

impl Redis {
    /// `nodes` redis servers (first is master) and `sentinels` sentinels.
    pub fn start(nodes: usize, sentinels: usize) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis_port = free_port();
        let sentinel_port = free_port();
        let hosts: Vec<String> = (0..nodes.max(sentinels))
            .map(|i| format!("127.0.0.{}", 2 + i))
            .collect();
        let mut r = Redis {
            dir,
            redis_port,
            sentinel_port,
            hosts,
            servers: Vec::new(),
            sentinels: Vec::new(),
        };
        for i in 0..nodes {
            let p = r.spawn_server(i);
            r.servers.push(Some(p));
        }
        for i in 0..nodes {
            wait_port(
                &r.hosts[i],
                redis_port,
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
                sentinel_port,
                Duration::from_secs(10),
                "redis-sentinel",
            );
        }
        r
    }

    fn spawn_server(&self, i: usize) -> Proc {
        let host = &self.hosts[i];
        let dir = self.dir.path().join(format!("redis-{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut cmd = Command::new(tool("redis-server"));
        cmd.args(["--bind", host, "--port", &self.redis_port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--replica-announce-ip", host])
            .arg("--dir")
            .arg(&dir)
            .args(["--logfile", "redis.log"]);
        if i > 0 {
            cmd.args(["--replicaof", &self.hosts[0], &self.redis_port.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server: {e}; {SETUP}"));
        Proc {
            child,
            name: format!("redis-{i}"),
        }
    }

    fn spawn_sentinel(&self, i: usize) -> Proc {
        let host = &self.hosts[i];
        let conf = self.dir.path().join(format!("sentinel-{i}.conf"));
        if !conf.exists() {
            let text = format!(
                "bind {host}\nport {sp}\nprotected-mode no\ndir {dir}\nlogfile sentinel-{i}.log\nsentinel announce-ip {host}\n\
                 sentinel monitor {MASTER} {mh} {rp} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 4000\n\
                 sentinel parallel-syncs {MASTER} 2\n",
                sp = self.sentinel_port,
                dir = self.dir.path().display(),
                mh = self.hosts[0],
                rp = self.redis_port,
            );
            std::fs::write(&conf, text).expect("write sentinel conf");
        }
        let child = Command::new(tool("redis-server"))
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server --sentinel: {e}; {SETUP}"));
        Proc {
            child,
            name: format!("sentinel-{i}"),
        }
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        (0..self.sentinels.len())
            .map(|i| format!("{}:{}", self.hosts[i], self.sentinel_port))
            .collect()
    }

    /// The master as sentinel `i` sees it ("ip:port").
    pub fn master_seen_by(&self, i: usize) -> Option<String> {
        let out = cli(
            &self.hosts[i],
            self.sentinel_port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
        );
        let mut lines = out.lines();
        Some(format!("{}:{}", lines.next()?.trim(), lines.next()?.trim())).filter(|s| s.len() > 3)
    }

    /// The node index of the master per sentinel 0.. majority.
    pub fn master_index(&self) -> Option<usize> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for i in 0..self.sentinels.len() {
            if self.sentinels[i].is_some() {
                if let Some(m) = self.master_seen_by(i) {
                    *counts.entry(m).or_default() += 1;
                }
            }
        }
        let (addr, n) = counts.into_iter().max_by_key(|(_, n)| *n)?;
        if n * 2 <= self.sentinels.len() {
            return None;
        }
        let host = addr.split(':').next()?.to_owned();
        self.hosts.iter().position(|h| *h == host)
    }

    /// Waits until all sentinels know every replica (so a failover can pick one).
    /// See [`ready_for_failover`].
    pub async fn wait_ready_for_failover(&self, replicas: usize) {
        eventually(
            "sentinels to see the replicas and each other",
            Duration::from_secs(30),
            || async {
                (0..self.sentinels.len())
                    .filter(|i| self.sentinels[*i].is_some())
                    .all(|i| {
                        let info = cli(
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
        let before = self.master_index();
        eventually(
            "SENTINEL FAILOVER to be accepted",
            Duration::from_secs(60),
            || async {
                let out = cli(
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
            || async { self.master_index().filter(|m| Some(*m) != before) },
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

/// The daemon as a real process with a generated config.
pub struct Daemon {
    pub proc: Option<Proc>,
    pub config: PathBuf,
    pub log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sentinel-vip")
}

/// Config YAML for the rig; `extra` is appended verbatim.
pub fn config_yaml(redis: &Redis, moto: &Moto, vpc: &Vpc, interval: &str, extra: &str) -> String {
    let sentinels: Vec<String> = redis
        .sentinel_addrs()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    let mut nodes = String::new();
    for (i, eni) in vpc.enis.iter().enumerate() {
        nodes.push_str(&format!(
            "      \"{}:{}\": {{ network_interface_id: {eni} }}\n",
            redis.hosts[i], redis.redis_port
        ));
    }
    format!(
        "sentinels: [{}]\naws:\n  region: us-east-1\n  endpoint_url: {}\nmasters:\n  {MASTER}:\n    vip: {VIP}\n    route_tables: [{}]\n    nodes:\n{nodes}reconcile:\n  interval: {interval}\n{extra}",
        sentinels.join(", "),
        moto.url,
        vpc.tables.join(", "),
    )
}

impl Daemon {
    pub fn start(dir: &Path, yaml: &str) -> Daemon {
        let config = dir.join(format!("sentinel-vip-{}.yaml", free_port()));
        std::fs::write(&config, yaml).expect("write config");
        let log = config.with_extension("log");
        let mut d = Daemon {
            proc: None,
            config,
            log,
        };
        d.spawn();
        d
    }

    pub fn spawn(&mut self) {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("SENTINEL_VIP_LOG", "info,sentinel_vip=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("start sentinel-vip");
        self.proc = Some(Proc {
            child,
            name: "sentinel-vip".into(),
        });
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> i32 {
        self.proc.as_ref().map(|p| p.child.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        eventually(
            &format!("daemon log to contain {needle:?}"),
            within,
            || async { self.logs().contains(needle).then_some(()) },
        )
        .await
    }

    pub fn kill(&mut self) {
        self.proc = None;
    }
}

/// The full rig used by most tests.
pub struct Rig {
    pub moto: Moto,
    pub vpc: Vpc,
    pub redis: Redis,
}

impl Rig {
    pub async fn start(tables: usize) -> Rig {
        let moto = Moto::start();
        let vpc = Vpc::create(&moto.url, tables, 3).await;
        let redis = Redis::start(3, 3);
        Rig { moto, vpc, redis }
    }

    pub fn config(&self, interval: &str, extra: &str) -> String {
        config_yaml(&self.redis, &self.moto, &self.vpc, interval, extra)
    }

    pub fn start_daemon(&self, interval: &str, extra: &str) -> Daemon {
        Daemon::start(self.redis.dir.path(), &self.config(interval, extra))
    }

    /// Dumps daemon logs to stderr (shown by the test harness on failure).
    pub fn dump(&self, d: &Daemon) {
        eprintln!("---- daemon log ----\n{}", d.logs());
    }
}

/// Fault modes of [`FaultProxy`].
pub const PASS: u8 = 0;
pub const THROTTLE: u8 = 1;
/// Every request hangs (an EC2 endpoint that is unreachable / stopped).
pub const HANG: u8 = 2;

/// An HTTP proxy in front of moto that can answer 503 / RequestLimitExceeded.
pub struct FaultProxy {
    pub url: String,
    pub mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    pub faults: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
        use std::sync::Arc;
        let mode = Arc::new(AtomicU8::new(PASS));
        let faults = Arc::new(AtomicUsize::new(0));
        let client = http_client();
        let up = upstream.to_owned();
        let (m, f) = (mode.clone(), faults.clone());
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (m, f, client, up) = (m.clone(), f.clone(), client.clone(), up.clone());
            async move {
                while m.load(Ordering::SeqCst) == HANG {
                    f.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if m.load(Ordering::SeqCst) == THROTTLE {
                    let n = f.fetch_add(1, Ordering::SeqCst);
                    let code = if n % 2 == 0 { "RequestLimitExceeded" } else { "Unavailable" };
                    let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error></Errors><RequestID>test</RequestID></Response>");
                    return (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/xml".to_owned())], xml.into_bytes());
                }
                let url = format!("{up}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
                let mut req = client.request(reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(), url);
                for (k, v) in headers.iter() {
                    if k != "host" && k != "content-length" {
                        req = req.header(k.as_str(), v.as_bytes());
                    }
                }
                match req.body(body.to_vec()).send().await {
                    Ok(r) => {
                        let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("text/xml").to_owned();
                        (status, [("content-type", ct)], r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
                    }
                    Err(e) => (StatusCode::BAD_GATEWAY, [("content-type", "text/plain".to_owned())], e.to_string().into_bytes()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { url, mode, faults }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    pub at: Instant,
    /// The status the receiver answered.
    pub status: u16,
}

/// How the receiver answers: a script of statuses per path prefix, then 200
/// (202 for paths starting with /pd); `hang` never answers.
#[derive(Default)]
pub struct HookScript {
    pub script: std::collections::VecDeque<(u16, Option<String>)>,
    pub hang: bool,
}

/// A real HTTP server that records webhook deliveries.
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Hook>>>,
    pub script: std::sync::Arc<std::sync::Mutex<HookScript>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode, Uri};
        use axum::response::IntoResponse;
        use std::sync::{Arc, Mutex};
        let got: Arc<Mutex<Vec<Hook>>> = Arc::default();
        let script: Arc<Mutex<HookScript>> = Arc::default();
        let (g, s) = (got.clone(), script.clone());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (g, s) = (g.clone(), s.clone());
            async move {
                let (hang, next) = {
                    let mut s = s.lock().unwrap();
                    (s.hang, s.script.pop_front())
                };
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let default = if uri.path().starts_with("/pd") {
                    202
                } else {
                    200
                };
                let (status, retry_after) = next.unwrap_or((default, None));
                g.lock().unwrap().push(Hook {
                    path: uri.path().to_owned(),
                    query: uri.query().unwrap_or("").to_owned(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    at: Instant::now(),
                    status,
                });
                let mut resp = (StatusCode::from_u16(status).unwrap(), "ok").into_response();
                if let Some(ra) = retry_after {
                    resp.headers_mut()
                        .insert("retry-after", ra.parse().unwrap());
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got, script }
    }

    /// Requests answered 2xx on `path`.
    pub fn delivered(&self, path: &str) -> Vec<Hook> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path && h.status < 300)
            .cloned()
            .collect()
    }

    /// The `webhook-id` header of every delivered request on `path`.
    pub fn webhook_ids(&self, path: &str) -> Vec<String> {
        self.delivered(path)
            .iter()
            .filter_map(|h| {
                h.headers
                    .iter()
                    .find(|(k, _)| k == "webhook-id")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }

    pub fn all(&self, path: &str) -> Vec<Hook> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

// --- ec2 helpers ---

impl Vpc {
    /// The VPC and subnet of the rig's nodes (from the first ENI).
    pub async fn vpc_and_subnet(&self) -> (String, String) {
        let out = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(&self.enis[0])
            .send()
            .await
            .expect("DescribeNetworkInterfaces");
        let ni = &out.network_interfaces()[0];
        (
            ni.vpc_id().expect("vpc id").to_owned(),
            ni.subnet_id().expect("subnet id").to_owned(),
        )
    }

    /// Deletes the VIP route of `table` by hand (as an operator might).
    pub async fn delete_route(&self, table: usize) {
        self.client
            .delete_route()
            .route_table_id(&self.tables[table])
            .destination_cidr_block(VIP)
            .send()
            .await
            .expect("DeleteRoute");
    }

    /// Creates an ENI holding `ip` in `subnet`.
    pub async fn create_eni(&self, subnet: &str, ip: &str) -> String {
        self.client
            .create_network_interface()
            .subnet_id(subnet)
            .private_ip_address(ip)
            .send()
            .await
            .expect("CreateNetworkInterface")
            .network_interface()
            .and_then(|n| n.network_interface_id())
            .expect("eni id")
            .to_owned()
    }

    /// Starts an instance in `subnet` (moto accepts its first listed image).
    pub async fn create_instance(&self, subnet: &str) -> String {
        let images = self
            .client
            .describe_images()
            .send()
            .await
            .expect("DescribeImages");
        let ami = images.images()[0].image_id().expect("image id").to_owned();
        self.client
            .run_instances()
            .image_id(ami)
            .min_count(1)
            .max_count(1)
            .subnet_id(subnet)
            .send()
            .await
            .expect("RunInstances")
            .instances()[0]
            .instance_id()
            .expect("instance id")
            .to_owned()
    }

    /// Replaces the ENI `old` by a new one holding the same private IP, attached
    /// to `instance` (what happens when a node's ENI is recreated); returns its id.
    pub async fn replace_eni(&self, old: &str, subnet: &str, ip: &str, instance: &str) -> String {
        self.client
            .delete_network_interface()
            .network_interface_id(old)
            .send()
            .await
            .expect("DeleteNetworkInterface");
        let new = self.create_eni(subnet, ip).await;
        self.client
            .attach_network_interface()
            .network_interface_id(&new)
            .instance_id(instance)
            .device_index(1)
            .send()
            .await
            .expect("AttachNetworkInterface");
        new
    }
}

// --- links helpers ---

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

/// The text of the daemon's log after byte `from` (to look only at what
/// happened after a point in the test).
pub fn log_since(d: &Daemon, from: usize) -> String {
    d.logs().get(from..).unwrap_or("").to_owned()
}

// --- secure-links helpers ---

/// Test certificates made with the openssl CLI (EC P-256, valid 2 days):
/// `ca` signs `server` (IP SANs 127.0.0.1-6, ::1, localhost), `client`,
/// `named` (only DNS:sentinel.internal) and `expired` (2020-01-01..02);
/// `other-ca` signs nothing.
pub struct Certs {
    pub dir: PathBuf,
}

const CERTS_SH: &str = r#"set -e
cd "$1"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
ca() { openssl req -x509 $ec -keyout $1.key -out $1.crt -days 2 -subj "/CN=$1" 2>/dev/null; }
csr() { openssl req -new $ec -keyout $1.key -out $1.csr -subj "/CN=$1" 2>/dev/null; }
ext() { printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' "$1" > $2.ext; }
sign() { openssl x509 -req -in $1.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $1.crt -days 2 -extfile $1.ext 2>/dev/null; }
ca ca; ca other-ca
IPS="IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:127.0.0.4,IP:127.0.0.5,IP:127.0.0.6,IP:::1,DNS:localhost"
csr server; ext "$IPS" server; sign server
csr client; ext "DNS:sentinel-vip" client; sign client
csr named; ext "DNS:sentinel.internal" named; sign named
csr expired; ext "$IPS" expired
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=ca.srl\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' > ca.cnf
: > index.txt
openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr -out expired.crt -startdate 20200101000000Z -enddate 20200102000000Z -extfile expired.ext -notext 2>/dev/null
"#;

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        let dir = dir.join("certs");
        std::fs::create_dir_all(&dir).expect("certs dir");
        let ok = Command::new("sh")
            .args(["-c", CERTS_SH, "certs"])
            .arg(&dir)
            .status()
            .expect("sh runs")
            .success();
        assert!(
            ok,
            "openssl could not make the test certificates (apt: openssl)"
        );
        Certs { dir }
    }
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
    /// A `sentinel_tls:` block (`cert` = with the client certificate).
    pub fn yaml(&self, ca: &str, cert: bool, server_name: Option<&str>) -> String {
        let mut y = format!("sentinel_tls:\n  ca_file: {}\n", self.path(ca));
        if cert {
            y += &format!(
                "  cert_file: {}\n  key_file: {}\n",
                self.path("client.crt"),
                self.path("client.key")
            );
        }
        if let Some(n) = server_name {
            y += &format!("  server_name: {n}\n");
        }
        y
    }
}

/// How the TLS rig's processes are reached: redis-cli with `--tls`.
#[derive(Clone)]
pub struct TlsCli {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl TlsCli {
    pub fn new(c: &Certs) -> TlsCli {
        TlsCli {
            ca: c.path("ca.crt"),
            cert: c.path("client.crt"),
            key: c.path("client.key"),
        }
    }
    pub fn run(&self, host: &str, port: u16, args: &[&str]) -> String {
        let out = Command::new(tool("redis-cli"))
            .args([
                "--tls", "--cacert", &self.ca, "--cert", &self.cert, "--key", &self.key,
            ])
            .args(["-h", host, "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// TLS-only arguments for redis-server / redis-sentinel (`port 0`, `tls-port`,
/// `tls-replication yes`), with the server certificate `cert` (`server`,
/// `expired`, `named`) and `tls-auth-clients yes|no`.
fn tls_args(c: &Certs, port: u16, cert: &str, auth_clients: bool) -> Vec<String> {
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &c.path(&format!("{cert}.crt")),
        "--tls-key-file",
        &c.path(&format!("{cert}.key")),
        "--tls-ca-cert-file",
        &c.path("ca.crt"),
        "--tls-auth-clients",
        if auth_clients { "yes" } else { "no" },
        "--tls-replication",
        "yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn wait_tls(cli: &TlsCli, host: &str, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cli.run(host, port, &["PING"]) != "PONG" {
        if Instant::now() > deadline {
            panic!("{what} did not answer PING over TLS on {host}:{port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Redis {
    /// The rig with TLS only everywhere: `nodes` redis servers (first is master)
    /// and `sentinels` sentinels, all `port 0` + `tls-port`, replication and
    /// sentinel links over TLS. Sentinels present `sentinel_cert`.
    pub fn start_tls(
        nodes: usize,
        sentinels: usize,
        certs: &Certs,
        sentinel_cert: &str,
        auth_clients: bool,
    ) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis_port = free_port();
        let sentinel_port = free_port();
        let hosts: Vec<String> = (0..nodes.max(sentinels))
            .map(|i| format!("127.0.0.{}", 2 + i))
            .collect();
        let cli = TlsCli::new(certs);
        let mut servers = Vec::new();
        for (i, host) in hosts.iter().enumerate().take(nodes) {
            let d = dir.path().join(format!("redis-{i}"));
            std::fs::create_dir_all(&d).expect("dir");
            let mut cmd = Command::new(tool("redis-server"));
            cmd.args(["--bind", host])
                .args(tls_args(certs, redis_port, "server", auth_clients))
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .args(["--replica-announce-ip", host])
                .arg("--dir")
                .arg(&d)
                .args(["--logfile", "redis.log"]);
            if i > 0 {
                cmd.args(["--replicaof", &hosts[0], &redis_port.to_string()]);
            }
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("redis-server: {e}; {SETUP}"));
            servers.push(Some(Proc {
                child,
                name: format!("redis-{i}"),
            }));
        }
        for host in hosts.iter().take(nodes) {
            wait_tls(&cli, host, redis_port, "redis-server");
        }
        let mut sents = Vec::new();
        for (i, host) in hosts.iter().enumerate().take(sentinels) {
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let text = format!(
                "bind {host}\nprotected-mode no\ndir {d}\nlogfile sentinel-{i}.log\nsentinel announce-ip {host}\n\
                 sentinel monitor {MASTER} {mh} {rp} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 4000\n\
                 sentinel parallel-syncs {MASTER} 2\n",
                d = dir.path().display(),
                mh = hosts[0],
                rp = redis_port,
            );
            std::fs::write(&conf, text).expect("write sentinel conf");
            let child = Command::new(tool("redis-server"))
                .arg(&conf)
                .arg("--sentinel")
                .args(tls_args(certs, sentinel_port, sentinel_cert, auth_clients))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("redis-server --sentinel: {e}; {SETUP}"));
            sents.push(Some(Proc {
                child,
                name: format!("sentinel-{i}"),
            }));
        }
        for host in hosts.iter().take(sentinels) {
            wait_port(
                host,
                sentinel_port,
                Duration::from_secs(10),
                "redis-sentinel (TLS)",
            );
        }
        Redis {
            dir,
            redis_port,
            sentinel_port,
            hosts,
            servers,
            sentinels: sents,
        }
    }

    /// [`Redis::master_index`] through `cli` (TLS).
    pub fn master_index_with(&self, cli: &TlsCli) -> Option<usize> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for i in 0..self.sentinels.len() {
            let out = cli.run(
                &self.hosts[i],
                self.sentinel_port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
            );
            if let Some(host) = out.lines().next().filter(|h| !h.is_empty()) {
                *counts.entry(host.trim().to_owned()).or_default() += 1;
            }
        }
        let (host, n) = counts.into_iter().max_by_key(|(_, n)| *n)?;
        if n * 2 <= self.sentinels.len() {
            return None;
        }
        self.hosts.iter().position(|h| *h == host)
    }

    /// [`Redis::wait_ready_for_failover`] + [`Redis::failover`] through `cli`.
    pub async fn failover_with(&self, cli: &TlsCli, replicas: usize) -> usize {
        eventually(
            "sentinels to see the replicas and each other (TLS)",
            Duration::from_secs(30),
            || async {
                (0..self.sentinels.len())
                    .all(|i| {
                        let info = cli.run(
                            &self.hosts[i],
                            self.sentinel_port,
                            &["SENTINEL", "MASTER", MASTER],
                        );
                        ready_for_failover(&info, replicas, self.sentinels.len())
                    })
                    .then_some(())
            },
        )
        .await;
        let before = self.master_index_with(cli);
        eventually(
            "SENTINEL FAILOVER to be accepted (TLS)",
            Duration::from_secs(60),
            || async {
                let out = cli.run(
                    &self.hosts[0],
                    self.sentinel_port,
                    &["SENTINEL", "FAILOVER", MASTER],
                );
                (out == "OK").then_some(())
            },
        )
        .await;
        eventually(
            "sentinels to agree on a new master (TLS)",
            Duration::from_secs(60),
            || async { self.master_index_with(cli).filter(|m| Some(*m) != before) },
        )
        .await
    }
}

/// `sentinel-vip check` on `yaml`; returns (stdout, exit ok, wall time).
pub fn run_check(dir: &Path, yaml: &str) -> (String, bool, Duration) {
    let config = dir.join(format!("check-{}.yaml", free_port()));
    std::fs::write(&config, yaml).expect("write config");
    let t0 = Instant::now();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("NO_COLOR", "1")
        .output()
        .expect("sentinel-vip check runs");
    let took = t0.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success(), took)
}

/// `since_event_ms` of every write the daemon logged as caused by +switch-master.
pub fn switch_write_ms(logs: &str) -> Vec<f64> {
    logs.lines()
        .filter(|l| l.contains("VIP route updated and verified") && l.contains("+switch-master"))
        .filter_map(|l| {
            let rest = l.split("since_event_ms=").nth(1)?;
            rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// A plain HTTP client for the tests (the crate's crypto provider installed first).
pub fn http_client() -> reqwest::Client {
    sentinel_vip::install_crypto_provider();
    reqwest::Client::new()
}

/// `reqwest::get` with the crate's crypto provider installed first.
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http_client().get(url).send().await
}

/// Whether one sentinel's `SENTINEL MASTER` reply shows at least `replicas`
/// replicas and the other `sentinels - 1` sentinels: a failover can then pick
/// a replica and win a vote.
pub fn ready_for_failover(sentinel_master: &str, replicas: usize, sentinels: usize) -> bool {
    let lines: Vec<&str> = sentinel_master.lines().collect();
    let field = |k: &str| {
        lines
            .iter()
            .position(|l| *l == k)
            .and_then(|p| lines.get(p + 1))
            .and_then(|v| v.parse::<usize>().ok())
    };
    field("num-slaves") >= Some(replicas) && field("num-other-sentinels") >= Some(sentinels - 1)
}
