//! Watch: one task per configured sentinel turns its pub/sub stream into typed
//! [`Event`]s on a channel, and a command connection answers the majority reads.
//!
//! Pub/sub drops whatever is published while a connection is down, so every
//! (re)connect is reported as [`WatchMsg::Connected`]: the controller answers it
//! with a reconcile.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fred::clients::SentinelClient;
use fred::interfaces::{
    ClientInterface, ClientLike, EventInterface, PubsubInterface, SentinelInterface,
};
use fred::prelude::{ConnectionConfig, PerformanceConfig, ReconnectPolicy};
use fred::types::config::{SentinelConfig, UnresponsiveConfig};
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{SentinelAddr, SentinelAuth};
use crate::event::{self, Addr, Event, ParseError};
use crate::metrics::METRICS;
use crate::quorum::MasterView;
use crate::shutdown::Shutdown;

/// Index of a sentinel in the configured list.
pub type SentinelId = usize;

/// What the watchers tell the controller.
#[derive(Debug)]
pub enum WatchMsg {
    Event {
        sentinel: SentinelId,
        event: Event,
        at: Instant,
    },
    /// The pub/sub connection to this sentinel is (again) up and subscribed.
    Connected(SentinelId),
    /// The pub/sub connection to this sentinel dropped.
    Disconnected(SentinelId, String),
}

/// Command connection to one sentinel, for `SENTINEL MASTER(S)` and `INFO`.
#[derive(Clone)]
pub struct SentinelLink {
    pub id: SentinelId,
    pub addr: SentinelAddr,
    cmd: SentinelClient,
}

/// How long a command to a sentinel may take before it counts as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);

fn client(addr: &SentinelAddr, auth: Option<&SentinelAuth>) -> SentinelClient {
    let config = SentinelConfig {
        host: addr.host.clone(),
        port: addr.port,
        username: auth.and_then(|a| a.username.clone()),
        password: auth.and_then(|a| a.password.as_ref().map(|p| p.expose().to_owned())),
    };
    let perf = PerformanceConfig {
        default_command_timeout: COMMAND_TIMEOUT,
        ..Default::default()
    };
    let conn = ConnectionConfig {
        connection_timeout: Duration::from_secs(2),
        internal_command_timeout: Duration::from_secs(2),
        max_command_attempts: 1,
        unresponsive: UnresponsiveConfig {
            max_timeout: Some(Duration::from_secs(5)),
            interval: Duration::from_secs(1),
        },
        ..Default::default()
    };
    // Unlimited attempts, 100 ms doubling to 5 s.
    let policy = ReconnectPolicy::new_exponential(0, 100, 5_000, 2);
    SentinelClient::new(config, Some(perf), Some(conn), Some(policy))
}

/// Name our connections carry (`CLIENT LIST` shows which watchers are connected).
pub fn connection_name(local: Option<&SentinelAddr>) -> String {
    match local {
        Some(a) => format!("sentinel-vip:{a}"),
        None => "sentinel-vip".to_owned(),
    }
    .replace(' ', "_")
}

/// Starts one watcher per sentinel; returns the command links for the majority reads.
pub fn spawn_watchers(
    sentinels: &[SentinelAddr],
    auth: Option<&SentinelAuth>,
    name: &str,
    tx: mpsc::Sender<WatchMsg>,
    shutdown: &Shutdown,
) -> Vec<SentinelLink> {
    for (id, addr) in sentinels.iter().enumerate() {
        tokio::spawn(watch_one(
            id,
            addr.clone(),
            client(addr, auth),
            name.to_owned(),
            tx.clone(),
            shutdown.clone(),
        ));
    }
    command_links(sentinels, auth, name)
}

/// Command connections only (no pub/sub): what the one-shot CLI verbs need.
pub fn command_links(
    sentinels: &[SentinelAddr],
    auth: Option<&SentinelAuth>,
    name: &str,
) -> Vec<SentinelLink> {
    sentinels
        .iter()
        .enumerate()
        .map(|(id, addr)| {
            let cmd = client(addr, auth);
            connect_named(&cmd, name.to_owned());
            SentinelLink {
                id,
                addr: addr.clone(),
                cmd,
            }
        })
        .collect()
}

/// Waits (bounded) for every link's command connection; true where it came up.
pub async fn wait_connected(links: &[SentinelLink], within: Duration) -> Vec<bool> {
    futures::future::join_all(links.iter().map(|l| l.wait_connected(within))).await
}

/// Connects in the background and names every (re)connection.
fn connect_named(c: &SentinelClient, name: String) {
    let mut reconnects = c.reconnect_rx();
    let named = c.clone();
    tokio::spawn(async move {
        while reconnects.recv().await.is_ok() {
            let _ = named.client_setname(name.clone()).await;
        }
    });
    // The handle resolves when the client stops for good; the reconnect policy keeps it up.
    drop(c.connect());
}

async fn watch_one(
    id: SentinelId,
    addr: SentinelAddr,
    sub: SentinelClient,
    name: String,
    tx: mpsc::Sender<WatchMsg>,
    mut shutdown: Shutdown,
) {
    let mut messages = sub.message_rx();
    let mut reconnects = sub.reconnect_rx();
    let mut errors = sub.error_rx();
    drop(sub.connect());
    let mut connected = false;
    loop {
        tokio::select! {
            _ = shutdown.recv() => break,
            r = reconnects.recv() => {
                if r.is_err() { break; }
                let _ = sub.client_setname(name.clone()).await;
                match sub.psubscribe("*").await {
                    Ok(()) => {
                        info!(sentinel = %addr, "subscribed to sentinel events");
                        connected = true;
                        METRICS.sentinel_connected.get_or_create(&vec![("sentinel", addr.to_string())]).set(1);
                        let _ = tx.send(WatchMsg::Connected(id)).await;
                    }
                    Err(e) => warn!(sentinel = %addr, error = %e, "PSUBSCRIBE failed; will retry on reconnect"),
                }
            }
            e = errors.recv() => {
                let Ok((err, _)) = e else { break };
                if connected {
                    warn!(sentinel = %addr, error = %err, "sentinel connection lost; reconnecting");
                    connected = false;
                    METRICS.sentinel_connected.get_or_create(&vec![("sentinel", addr.to_string())]).set(0);
                    let _ = tx.send(WatchMsg::Disconnected(id, err.to_string())).await;
                } else {
                    debug!(sentinel = %addr, error = %err, "sentinel still unreachable");
                }
            }
            m = messages.recv() => {
                let msg = match m {
                    Ok(msg) => msg,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!(sentinel = %addr, skipped = n, "event stream lagged; asking for a reconcile");
                        let _ = tx.send(WatchMsg::Connected(id)).await;
                        continue;
                    }
                    Err(_) => break,
                };
                let at = Instant::now();
                let payload = match &msg.value {
                    Value::String(s) => s.to_string(),
                    Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    other => other.as_string().unwrap_or_default(),
                };
                match event::parse(&msg.channel, &payload) {
                    Ok(event) => {
                        METRICS
                            .events
                            .get_or_create(&vec![("sentinel", addr.to_string()), ("type", event.channel().to_owned())])
                            .inc();
                        debug!(sentinel = %addr, channel = %msg.channel, %payload, "event");
                        if tx.send(WatchMsg::Event { sentinel: id, event, at }).await.is_err() {
                            break;
                        }
                    }
                    Err(ParseError::Hello) => {}
                    Err(e) => warn!(sentinel = %addr, error = %e, "skipped sentinel message"),
                }
            }
        }
    }
    let _ = sub.quit().await;
}

/// One sentinel's answer to a majority read.
#[derive(Debug, Clone)]
pub struct SentinelReport {
    pub tilt: bool,
    /// Master name → view, for every master this sentinel monitors.
    pub masters: HashMap<String, MasterView>,
}

impl SentinelLink {
    /// `INFO sentinel` (for TILT) and `SENTINEL MASTERS` in one round.
    pub async fn report(&self) -> Result<SentinelReport, String> {
        let info = CustomCommand::new_static("INFO", ClusterHash::FirstKey, false);
        let (info, masters) = tokio::join!(
            self.cmd.custom::<String, _>(info, vec!["sentinel"]),
            self.cmd.masters::<Vec<HashMap<String, String>>>()
        );
        let info = info.map_err(|e| format!("INFO sentinel: {e}"))?;
        let masters = masters.map_err(|e| format!("SENTINEL MASTERS: {e}"))?;
        let tilt = info.lines().any(|l| l.trim() == "sentinel_tilt:1");
        let masters = masters
            .into_iter()
            .filter_map(|m| master_view(&m))
            .collect();
        Ok(SentinelReport { tilt, masters })
    }

    /// `SENTINEL MASTER <name>` → address and epoch (for `check`).
    pub async fn master(&self, name: &str) -> Result<Option<MasterView>, String> {
        match self.cmd.master::<HashMap<String, String>, _>(name).await {
            Ok(m) => Ok(master_view(&m).map(|(_, v)| v)),
            Err(e) if e.details().contains("No such master") => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// `SENTINEL REPLICAS <name>` → replica addresses (to warm target discovery).
    pub async fn replicas(&self, name: &str) -> Result<Vec<Addr>, String> {
        let rs = self
            .cmd
            .replicas::<Vec<HashMap<String, String>>, _>(name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(rs
            .iter()
            .filter_map(|r| {
                Some(Addr::new(
                    r.get("ip")?.clone(),
                    r.get("port")?.parse().ok()?,
                ))
            })
            .collect())
    }

    /// `CLIENT LIST` as the sentinel prints it (one client per line), to see
    /// which watchers (`name=sentinel-vip:...`) are connected to it.
    pub async fn client_list(&self) -> Result<String, String> {
        let cmd = CustomCommand::new_static("CLIENT", ClusterHash::FirstKey, false);
        self.cmd
            .custom::<String, _>(cmd, vec!["LIST"])
            .await
            .map_err(|e| format!("CLIENT LIST: {e}"))
    }

    /// Waits (bounded) until the command connection is up.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.cmd.wait_for_connect())
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    pub async fn close(&self) {
        let _ = self.cmd.quit().await;
    }
}

/// One sentinel's read turned into its vote on `master`.
pub fn answer(report: &Result<SentinelReport, String>, master: &str) -> crate::quorum::Answer {
    use crate::quorum::Answer;
    match report {
        Err(_) => Answer::Unreachable,
        Ok(rep) if rep.tilt => Answer::Tilt,
        Ok(rep) => rep
            .masters
            .get(master)
            .cloned()
            .map(Answer::View)
            .unwrap_or(Answer::NotMonitored),
    }
}

fn master_view(m: &HashMap<String, String>) -> Option<(String, MasterView)> {
    let name = m.get("name")?.clone();
    let view = MasterView {
        addr: Addr::new(m.get("ip")?.clone(), m.get("port")?.parse().ok()?),
        config_epoch: m
            .get("config-epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0),
        flags: m.get("flags").cloned().unwrap_or_default(),
        replicas: Vec::new(),
    };
    Some((name, view))
}
