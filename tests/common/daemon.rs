//! The sentinel-vip process: its config (the one writer of test configs),
//! spawn, log capture, /status; `check` as a process; and [`Rig`], the whole
//! set-up most tests use.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{eventually, free_port, http_get, Moto, Proc, Redis, Vpc, MASTER, VIP};

/// The daemon binary: the tests' own build, or `SV_BIN` when set (to run the
/// ignored benchmarks against a release build: `SV_BIN=target/release/sentinel-vip`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("SV_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sentinel-vip").to_owned())
    })
}

/// A sentinel-vip config: every test config is written by [`ConfigYaml::yaml`].
#[derive(Clone, Debug)]
pub struct ConfigYaml {
    /// `host:port` of each sentinel.
    pub sentinels: Vec<String>,
    /// `aws.endpoint_url` (with `region: us-east-1`); None: no `aws` block.
    pub endpoint: Option<String>,
    /// Whole lines added to the `aws` block.
    pub aws_extra: String,
    pub master: String,
    pub vip: String,
    pub tables: Vec<String>,
    /// No `vip` and `route_tables` lines (a master carried by other kinds only).
    pub no_route: bool,
    /// Whole lines added to the master, before its `nodes`.
    pub master_extra: String,
    /// `nodes` as (address key, ENI id); empty: no `nodes` (discovery).
    pub nodes: Vec<(String, String)>,
    /// `reconcile.interval`; None: no `reconcile` block.
    pub interval: Option<String>,
    /// Appended verbatim.
    pub extra: String,
}

impl ConfigYaml {
    /// One master ([`MASTER`], [`VIP`]) watched through `sentinels`; no aws
    /// block, no tables, no nodes.
    pub fn new(sentinels: impl IntoIterator<Item = String>) -> ConfigYaml {
        ConfigYaml {
            sentinels: sentinels.into_iter().collect(),
            endpoint: None,
            aws_extra: String::new(),
            master: MASTER.to_owned(),
            vip: VIP.to_owned(),
            tables: Vec::new(),
            no_route: false,
            master_extra: String::new(),
            nodes: Vec::new(),
            interval: None,
            extra: String::new(),
        }
    }

    /// The rig's config: its sentinels, moto at `endpoint`, the VPC's tables,
    /// node `i` = `hosts[i]:redis_port` on `enis[i]`, reconciled every `interval`.
    pub fn rig(redis: &Redis, endpoint: &str, vpc: &Vpc, interval: &str) -> ConfigYaml {
        ConfigYaml {
            endpoint: Some(endpoint.to_owned()),
            tables: vpc.tables.clone(),
            nodes: vpc
                .enis
                .iter()
                .enumerate()
                .map(|(i, eni)| {
                    (
                        format!("{}:{}", redis.hosts[i], redis.redis_port),
                        eni.clone(),
                    )
                })
                .collect(),
            interval: Some(interval.to_owned()),
            ..ConfigYaml::new(redis.sentinel_addrs())
        }
    }

    pub fn yaml(&self) -> String {
        let quoted: Vec<String> = self.sentinels.iter().map(|s| format!("\"{s}\"")).collect();
        let mut y = format!("sentinels: [{}]\n", quoted.join(", "));
        if let Some(url) = &self.endpoint {
            y += &format!("aws:\n  region: us-east-1\n  endpoint_url: {url}\n");
            y += &self.aws_extra;
        }
        // An IPv6 VIP (`fd00::10/128`) is quoted, to be read as one string.
        let vip = if self.vip.contains(':') {
            format!("\"{}\"", self.vip)
        } else {
            self.vip.clone()
        };
        y += &format!("masters:\n  {}:\n", self.master);
        if !self.no_route {
            y += &format!(
                "    vip: {vip}\n    route_tables: [{}]\n",
                self.tables.join(", ")
            );
        }
        y += &self.master_extra;
        if !self.nodes.is_empty() {
            y += "    nodes:\n";
            for (key, eni) in &self.nodes {
                y += &format!("      \"{key}\": {{ network_interface_id: {eni} }}\n");
            }
        }
        if let Some(i) = &self.interval {
            y += &format!("reconcile:\n  interval: {i}\n");
        }
        y + &self.extra
    }
}

/// Config YAML for the rig; `extra` is appended verbatim.
pub fn config_yaml(redis: &Redis, moto: &Moto, vpc: &Vpc, interval: &str, extra: &str) -> String {
    ConfigYaml {
        extra: extra.to_owned(),
        ..ConfigYaml::rig(redis, &moto.url, vpc, interval)
    }
    .yaml()
}

/// The daemon as a real process with a generated config.
pub struct Daemon {
    pub proc: Option<Proc>,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, yaml: &str) -> Daemon {
        let config = dir.join(format!("sentinel-vip-{}.yaml", free_port()));
        // A test daemon journals under its own temp dir, never in the default
        // /var/lib/sentinel-vip (an installed daemon's), unless the test says where.
        let yaml = if yaml.lines().any(|l| l.starts_with("state_dir:")) {
            yaml.to_owned()
        } else {
            let state = config.with_extension("state");
            std::fs::create_dir_all(&state).expect("state dir");
            format!("{yaml}\nstate_dir: {}\n", state.display())
        };
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

/// The text of the daemon's log after byte `from` (to look only at what
/// happened after a point in the test).
pub fn log_since(d: &Daemon, from: usize) -> String {
    d.logs().get(from..).unwrap_or("").to_owned()
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

/// The daemon's `/status` on 127.0.0.1:`http` (`http.listen`), if it answers.
pub async fn status(http: u16) -> Option<serde_json::Value> {
    http_get(format!("http://127.0.0.1:{http}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
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

    /// The rig's config, to change before [`ConfigYaml::yaml`].
    pub fn config_yaml(&self, interval: &str) -> ConfigYaml {
        ConfigYaml::rig(&self.redis, &self.moto.url, &self.vpc, interval)
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
