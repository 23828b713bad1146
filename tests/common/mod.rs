//! The test rig: real redis-server master + 2 replicas + 3 sentinels on loopback
//! addresses, moto_server as the EC2 API, and the daemon as a real process.
//!
//! - [`redis`](self::redis): redis-server + sentinels (start, ports, wait-ready,
//!   kill/pause), the one reader of SENTINEL replies, and a proxy that makes a
//!   sentinel link go silent;
//! - [`tls`](self::tls): the same rig TLS-only, and its certificates;
//! - [`moto`](self::moto): the moto server, EC2 fixtures and the fault proxy;
//! - [`daemon`](self::daemon): the sentinel-vip process (config, spawn, logs,
//!   /status) and [`Rig`], the whole set-up most tests use;
//! - [`webhook`](self::webhook): the webhook receiver.
//!
//! The sentinel config and redis-server arguments come from `sentinel.conf` and
//! `redis.conf` next to this file, which `scripts/rig.py` (demo, benchmarks,
//! fixture recorder) fills in the same way.
//!
//! Missing tools are a test failure naming the setup command, never a skip.

#![allow(dead_code)]

mod daemon;
mod moto;
mod reach;
mod redis;
mod tls;
mod webhook;

// One flat namespace (`use common::*`); a test binary that uses nothing of a
// component would warn about its re-export.
#[allow(unused_imports)]
pub use self::{daemon::*, moto::*, reach::*, redis::*, tls::*, webhook::*};

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr discarded; a failure to start
    /// names the setup command.
    pub fn spawn(mut cmd: Command, name: &str) -> Proc {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                let program = cmd.get_program().to_string_lossy().into_owned();
                panic!("cannot start {name} ({program}): {e}; {SETUP}")
            });
        Proc {
            child,
            name: name.to_owned(),
        }
    }
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

/// A plain HTTP client for the tests (the crate's crypto provider installed first).
pub fn http_client() -> reqwest::Client {
    sentinel_vip::install_crypto_provider();
    reqwest::Client::new()
}

/// `reqwest::get` with the crate's crypto provider installed first.
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http_client().get(url).send().await
}
