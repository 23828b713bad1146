//! Watch: one task per configured sentinel turns its pub/sub stream into typed
//! [`Event`]s on a channel, and a command connection answers the majority reads.
//!
//! Pub/sub drops whatever is published while a connection is down, so every
//! (re)connect is reported as [`WatchMsg::Connected`]: the controller answers it
//! with a reconcile.

pub mod event;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fred::clients::SentinelClient;
use fred::interfaces::{
    ClientInterface, ClientLike, EventInterface, PubsubInterface, SentinelInterface,
};
use fred::prelude::{ConnectionConfig, PerformanceConfig, ReconnectPolicy};
use fred::types::config::{
    SentinelConfig, TcpConfig, TlsConfig, TlsConnector, TlsHostMapping, UnresponsiveConfig,
};
use fred::types::{ClusterHash, CustomCommand, Value};
use futures::future::BoxFuture;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tracing::{debug, error, info, warn};

use crate::config::SentinelAuth;
use crate::ops::metrics::METRICS;
use crate::shutdown::Shutdown;
use event::{Addr, Event, ParseError};

/// How a refused subscription (ACL `NOPERM`) is worded in
/// [`WatchMsg::Disconnected`]: the controller alerts on it and fails `/readyz`.
pub const REFUSED_PREFIX: &str = "PSUBSCRIBE refused";

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
///
/// **Architecture Invariant:** every task a link starts is ended by
/// [`close`](Self::close) (a SIGHUP reload closes the old links; nothing of
/// them may live on).
#[derive(Clone)]
pub struct SentinelLink {
    pub id: SentinelId,
    pub addr: Addr,
    cmd: SentinelClient,
    /// The task that names each (re)connection and records connection errors.
    minder: AbortHandle,
    /// Why the last connection attempt failed (cleared when it connects).
    problem: watch::Receiver<Option<LinkProblem>>,
}

/// Why a sentinel connection failed, in the words an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkProblem {
    pub reason: String,
    /// TLS and authentication failures: retrying will not help until someone
    /// changes a certificate, a password or an ACL. Logged at error level once
    /// per distinct reason; a waiting caller need not wait for the timeout.
    pub conclusive: bool,
}

/// Turns a fred connection error into a [`LinkProblem`].
///
/// rustls' reasons arrive inside fred's `Debug` rendering of an I/O error
/// (`InvalidCertificate(UnknownIssuer)`, ...), so they are recognised by name.
pub fn link_problem(error: &str, user: Option<&str>) -> LinkProblem {
    let e = error;
    let has = |needle: &str| e.contains(needle);
    let conclusive = |reason: String| LinkProblem {
        reason,
        conclusive: true,
    };
    let user = user.unwrap_or("default");
    if has("UnknownIssuer") || has("BadSignature") || has("UnknownRevocationStatus") {
        conclusive(format!("TLS: the sentinel's certificate is not signed by the configured CA (sentinel_tls.ca_file) [{e}]"))
    } else if has("Expired") {
        conclusive(format!("TLS: the sentinel's certificate has expired [{e}]"))
    } else if has("NotValidYet") {
        conclusive(format!(
            "TLS: the sentinel's certificate is not valid yet (clock?) [{e}]"
        ))
    } else if has("NotValidForName") {
        conclusive(format!("TLS: the sentinel's certificate is not valid for the address dialled; add it as a SAN or set sentinel_tls.server_name to a name the certificate carries [{e}]"))
    } else if has("CertificateRequired") || has("HandshakeFailure") && has("AlertReceived") {
        conclusive(format!("TLS: the sentinel refused the handshake; with `tls-auth-clients yes` it needs a client certificate signed by its tls-ca-cert-file (sentinel_tls.cert_file/key_file) [{e}]"))
    } else if has("InvalidContentType") || has("InvalidMessage") || has("CorruptMessage") {
        conclusive(format!(
            "TLS: the sentinel did not answer in TLS on this port (a plaintext port?) [{e}]"
        ))
    } else if has("InvalidCertificate")
        || has("AlertReceived")
        || has("PeerIncompatible")
        || has("PeerMisbehaved")
    {
        conclusive(format!("TLS: handshake failed [{e}]"))
    } else if has("WRONGPASS") || has("invalid username-password") {
        conclusive(format!("authentication failed for ACL user {user:?}: wrong username or password (sentinel_auth) [{e}]"))
    } else if has("NOAUTH") {
        conclusive(format!(
            "the sentinel requires a password: set sentinel_auth [{e}]"
        ))
    } else if has("NOPERM") {
        conclusive(format!("ACL user {user:?} is refused a command the watcher needs; see the README's Security section for the rule [{e}]"))
    } else {
        let reason = if has("ConnectionRefused") || has("Connection refused") {
            format!("connection refused (is it running, is the address/port right?) [{e}]")
        } else if has("TimedOut") || has("timed out") || has("Timeout") {
            format!("no answer in time (firewall, security group, or a down host?) [{e}]")
        } else if has("failed to lookup") || has("Name or service not known") {
            format!("the host name does not resolve [{e}]")
        } else {
            e.to_owned()
        };
        LinkProblem {
            reason,
            conclusive: false,
        }
    }
}

/// How long a command to a sentinel may take before it counts as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);

/// How often a subscriber is PINGed. Sentinel sends nothing on an idle
/// subscription, so an answered PING is the only sign that a quiet link is alive.
pub const PING_EVERY: Duration = Duration::from_secs(1);

/// A subscriber that has delivered nothing (no event, no PING answer) for this
/// long is dead, whatever its socket says: a NAT or firewall that forgets the
/// flow drops packets without a reset.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(5);

/// How often a refused PSUBSCRIBE (ACL) is retried: a refusal does not drop the
/// connection, so there is no reconnect to retry on.
pub const SUBSCRIBE_RETRY: Duration = Duration::from_secs(5);

/// TCP keepalive on every sentinel connection: the kernel probes an idle
/// connection after 30 s, then every 10 s, and gives up after 3 unanswered
/// probes. It backs up the PINGs (command links are idle between reads) and keeps
/// NAT/conntrack entries warm.
fn keepalive() -> fred::socket2::TcpKeepalive {
    let k = fred::socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
    let k = k.with_retries(3);
    k
}

fn client(addr: &Addr, auth: Option<&SentinelAuth>) -> SentinelClient {
    let config = SentinelConfig {
        host: addr.host.clone(),
        port: addr.port,
        username: auth.and_then(|a| a.username.clone()),
        password: auth.and_then(|a| a.password.as_ref().map(|p| p.expose().to_owned())),
        // The rustls config was built (and its files checked) when the config loaded.
        tls: auth.and_then(|a| a.tls.as_ref()).map(|t| TlsConfig {
            connector: TlsConnector::from((*t.client).clone()),
            hostnames: TlsHostMapping::None,
        }),
    };
    let perf = PerformanceConfig {
        default_command_timeout: COMMAND_TIMEOUT,
        ..Default::default()
    };
    let conn = ConnectionConfig {
        connection_timeout: Duration::from_secs(2),
        internal_command_timeout: Duration::from_secs(2),
        max_command_attempts: 1,
        // Covers the command links: a command written without any frame read back
        // for 5 s drops the connection. It cannot cover subscribers: fred measures
        // from the *last* write (fred 10.1 `poll_connection`), so PINGs every second
        // keep resetting it; `watch_one` measures silence from the last frame instead.
        unresponsive: UnresponsiveConfig {
            max_timeout: Some(SILENCE_LIMIT),
            interval: Duration::from_secs(1),
        },
        tcp: TcpConfig {
            nodelay: Some(true),
            keepalive: Some(keepalive()),
            ..Default::default()
        },
        ..Default::default()
    };
    // Unlimited attempts, 100 ms doubling to 5 s.
    let policy = ReconnectPolicy::new_exponential(0, 100, 5_000, 2);
    SentinelClient::new(config, Some(perf), Some(conn), Some(policy))
}

/// Name our connections carry (`CLIENT LIST` shows which watchers are connected).
pub fn connection_name(local: Option<&Addr>) -> String {
    match local {
        Some(a) => format!("sentinel-vip:{a}"),
        None => "sentinel-vip".to_owned(),
    }
    .replace(' ', "_")
}

/// Starts one watcher per sentinel; returns the command links for the majority reads.
pub fn spawn_watchers(
    sentinels: &[Addr],
    auth: Option<&SentinelAuth>,
    name: &str,
    tx: mpsc::Sender<WatchMsg>,
    shutdown: &Shutdown,
) -> Vec<SentinelLink> {
    for (id, addr) in sentinels.iter().enumerate() {
        let watcher = Watcher {
            id,
            addr: addr.clone(),
            user: auth.and_then(|a| a.username.clone()),
            sub: client(addr, auth),
            name: name.to_owned(),
            tx: tx.clone(),
        };
        tokio::spawn(watcher.run(shutdown.clone()));
    }
    command_links(sentinels, auth, name)
}

/// Command connections only (no pub/sub): what the one-shot CLI verbs need.
pub fn command_links(
    sentinels: &[Addr],
    auth: Option<&SentinelAuth>,
    name: &str,
) -> Vec<SentinelLink> {
    sentinels
        .iter()
        .enumerate()
        .map(|(id, addr)| {
            let cmd = client(addr, auth);
            let (minder, problem) = connect_named(
                &cmd,
                name.to_owned(),
                addr.clone(),
                auth.and_then(|a| a.username.clone()),
            );
            SentinelLink {
                id,
                addr: addr.clone(),
                cmd,
                minder,
                problem,
            }
        })
        .collect()
}

/// Waits (bounded) for every link's command connection; true where it came up.
pub async fn wait_connected(links: &[SentinelLink], within: Duration) -> Vec<bool> {
    futures::future::join_all(links.iter().map(|l| l.wait_connected(within))).await
}

/// Connects in the background, names every (re)connection and records why a
/// connection attempt failed. The returned handle ends the task (it holds a
/// client clone, so it would otherwise outlive the link).
fn connect_named(
    c: &SentinelClient,
    name: String,
    addr: Addr,
    user: Option<String>,
) -> (AbortHandle, watch::Receiver<Option<LinkProblem>>) {
    let mut reconnects = c.reconnect_rx();
    let mut errors = c.error_rx();
    let named = c.clone();
    let (problem_tx, problem_rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        // What was last logged at error level, so a refused handshake retried
        // with backoff is logged once, not on every attempt.
        let mut logged: Option<String> = None;
        loop {
            tokio::select! {
                r = reconnects.recv() => {
                    // A lagged receiver still means "reconnected at least once".
                    if matches!(r, Err(RecvError::Closed)) { break; }
                    logged = None;
                    problem_tx.send_replace(None);
                    if let Err(e) = named.client_setname(name.clone()).await {
                        // The live-watcher rule needs the name; say once per connection.
                        let p = link_problem(&e.to_string(), user.as_deref());
                        warn!(sentinel = %addr, error = %p.reason, "CLIENT SETNAME refused: other watchers will not see this one as live (grant +client|setname)");
                    }
                }
                e = errors.recv() => {
                    let err = match e {
                        Ok((err, _)) => err.to_string(),
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    };
                    let p = link_problem(&err, user.as_deref());
                    if p.conclusive && logged.as_deref() != Some(p.reason.as_str()) {
                        error!(sentinel = %addr, reason = %p.reason, "cannot connect to sentinel (command link); retrying with backoff");
                        logged = Some(p.reason.clone());
                    }
                    problem_tx.send_replace(Some(p));
                }
            }
        }
    });
    // The handle resolves when the client stops for good; the reconnect policy keeps it up.
    drop(c.connect());
    (task.abort_handle(), problem_rx)
}

/// `PSUBSCRIBE *`, then proof that it took.
///
/// fred 10 resolves `psubscribe()` as soon as the command is written (its reply
/// is out-of-band, `Command::has_no_responses`), so an ACL refusal never reaches
/// that call: the `NOPERM` error frame arrives as the answer to the next command
/// instead. A `PING` right behind it therefore tells all three cases apart:
/// `["pong", ""]` (RESP2 subscribed mode) = subscribed; the `NOPERM` error =
/// refused, with Redis's reason; a plain `PONG` = not subscribed for another reason.
async fn psubscribe_confirmed(c: &SentinelClient) -> Result<(), String> {
    c.psubscribe("*").await.map_err(|e| e.to_string())?;
    match c.ping::<Value>(None).await {
        Ok(Value::Array(a)) if a.first().and_then(|v| v.as_string()).as_deref() == Some("pong") => {
            Ok(())
        }
        Ok(other) => Err(format!(
            "PSUBSCRIBE * did not take (PING answered {:?} outside subscribed mode)",
            other.as_string().unwrap_or_default()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a PSUBSCRIBE was refused, in the words an operator acts on.
///
/// Redis 7 answers `NOPERM ... channel ...` when the ACL user has no channel
/// access (Redis 7 defaults to `resetchannels`) and `NOPERM ... 'psubscribe'
/// command` when the command itself is not allowed.
pub fn refused_subscribe_hint(error: &str, user: Option<&str>) -> String {
    let user = user.unwrap_or("default");
    let lower = error.to_ascii_lowercase();
    if lower.contains("noperm") && lower.contains("channel") {
        format!("ACL user {user:?} lacks channel access `&*` (Sentinel events are published on every channel): run `ACL SETUSER {user} &*` on the sentinel and persist it")
    } else if lower.contains("noperm") {
        format!("ACL user {user:?} may not run PSUBSCRIBE: grant `+psubscribe` (and `+subscribe +ping`) with `ACL SETUSER {user} +psubscribe` on the sentinel")
    } else if lower.contains("did not take") {
        // The NOPERM frame raced ahead of our PING and fred dropped it, so Redis's
        // own reason is lost; name both permissions PSUBSCRIBE * needs.
        format!("ACL user {user:?} was refused PSUBSCRIBE * (an ACL NOPERM): it needs channel access `&*` (Redis 7 defaults to resetchannels; the usual cause) and `+psubscribe`: run `ACL SETUSER {user} &* +psubscribe` on the sentinel and persist it")
    } else {
        "PSUBSCRIBE * failed; check the sentinel's log".to_owned()
    }
}

/// One sentinel's pub/sub subscriber: events in, [`WatchMsg`]s out.
struct Watcher {
    id: SentinelId,
    addr: Addr,
    /// ACL user, for naming it in permission errors (never the password).
    user: Option<String>,
    sub: SentinelClient,
    name: String,
    tx: mpsc::Sender<WatchMsg>,
}

/// Where one subscriber stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    /// No TCP connection (fred is reconnecting).
    Down,
    /// Connected, PSUBSCRIBE not (yet) accepted (`refusal`: why); retried at
    /// `retry_at`.
    Unsubscribed { retry_at: Instant, refusal: String },
    /// Subscribed: events flow, silence is watched.
    Subscribed,
}

impl Watcher {
    /// **Architecture Invariant:** this task ends only on shutdown, when the
    /// controller's inbox is gone, or when fred's client is dropped; never
    /// because a broadcast receiver lagged.
    async fn run(self, mut shutdown: Shutdown) {
        let mut messages = self.sub.message_rx();
        let mut reconnects = self.sub.reconnect_rx();
        let mut errors = self.sub.error_rx();
        drop(self.sub.connect());
        let mut state = LinkState::Down;
        // What the controller was last told: Some(true) = Connected, None = nothing yet.
        let mut told_up: Option<bool> = None;
        // The conclusive problem (TLS, auth) last logged at error level.
        let mut logged: Option<LinkProblem> = None;
        let mut last_heard = Instant::now();
        let mut ping: Option<BoxFuture<'static, Result<Value, fred::error::Error>>> = None;
        let mut reconnecting: Option<BoxFuture<'static, ()>> = None;
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.recv() => break,
                r = reconnects.recv() => {
                    if matches!(r, Err(RecvError::Closed)) { break; }
                    // Lagged: we missed some reconnects, but we are connected now.
                    logged = None;
                    let _ = self.sub.client_setname(self.name.clone()).await;
                    last_heard = Instant::now();
                    ping = None;
                    state = self.subscribe(&mut told_up, None).await;
                }
                e = errors.recv() => {
                    let err = match e {
                        Ok((err, _)) => err.to_string(),
                        Err(RecvError::Lagged(n)) => format!("{n} connection errors"),
                        Err(RecvError::Closed) => break,
                    };
                    let problem = link_problem(&err, self.user.as_deref());
                    let err = problem.reason.clone();
                    if problem.conclusive {
                        // TLS or auth: say it once per distinct reason, at error level.
                        if logged.as_ref() != Some(&problem) {
                            error!(sentinel = %self.addr, reason = %err, "cannot connect to sentinel (subscriber); retrying with backoff");
                            logged = Some(problem);
                        }
                    } else if told_up == Some(true) {
                        warn!(sentinel = %self.addr, error = %err, "sentinel connection lost; reconnecting");
                    } else {
                        debug!(sentinel = %self.addr, error = %err, "sentinel still unreachable");
                    }
                    state = LinkState::Down;
                    ping = None;
                    if !self.tell_down(&mut told_up, err).await { break; }
                }
                m = messages.recv() => {
                    last_heard = Instant::now();
                    let msg = match m {
                        Ok(msg) => msg,
                        Err(RecvError::Lagged(n)) => {
                            warn!(sentinel = %self.addr, skipped = n, "event stream lagged; asking for a reconcile");
                            if self.tx.send(WatchMsg::Connected(self.id)).await.is_err() { break; }
                            continue;
                        }
                        Err(RecvError::Closed) => break,
                    };
                    if !self.forward(&msg).await { break; }
                }
                r = async { ping.as_mut().expect("guarded by is_some").await }, if ping.is_some() => {
                    ping = None;
                    match r {
                        Ok(_) => last_heard = Instant::now(),
                        Err(e) => debug!(sentinel = %self.addr, error = %e, "PING unanswered"),
                    }
                }
                () = async { reconnecting.as_mut().expect("guarded by is_some").await }, if reconnecting.is_some() => {
                    reconnecting = None;
                }
                _ = tick.tick() => match &state {
                    LinkState::Down => {}
                    LinkState::Unsubscribed { retry_at, refusal } => {
                        if Instant::now() >= *retry_at {
                            let refusal = refusal.clone();
                            state = self.subscribe(&mut told_up, Some(&refusal)).await;
                        }
                    }
                    LinkState::Subscribed => {
                        let silent = last_heard.elapsed();
                        if silent >= SILENCE_LIMIT {
                            let reason = format!("no answer to PING for {} ms", silent.as_millis());
                            warn!(sentinel = %self.addr, silent_ms = silent.as_millis() as u64,
                                "sentinel subscriber silent (no answer to PING); dropping the connection and reconnecting");
                            state = LinkState::Down;
                            ping = None;
                            if !self.tell_down(&mut told_up, reason).await { break; }
                            if reconnecting.is_none() {
                                let sub = self.sub.clone();
                                reconnecting = Some(Box::pin(async move {
                                    let _ = sub.force_reconnection().await;
                                }));
                            }
                        } else if ping.is_none() {
                            let sub = self.sub.clone();
                            ping = Some(Box::pin(async move { sub.ping::<Value>(None).await }));
                        }
                    }
                },
            }
        }
        let _ = self.sub.quit().await;
    }

    /// `PSUBSCRIBE *` on a fresh connection; tells the controller the outcome.
    /// `PSUBSCRIBE *`, confirmed. A refusal is logged at error level once per
    /// connection and reason (`previous`: the last refusal on this connection);
    /// the retries every [`SUBSCRIBE_RETRY`] that are refused the same way log
    /// at debug.
    async fn subscribe(&self, told_up: &mut Option<bool>, previous: Option<&str>) -> LinkState {
        match psubscribe_confirmed(&self.sub).await {
            Ok(()) => {
                info!(sentinel = %self.addr, "subscribed to sentinel events");
                METRICS
                    .sentinel_connected
                    .get_or_create(&vec![("sentinel", self.addr.to_string())])
                    .set(1);
                *told_up = Some(true);
                let _ = self.tx.send(WatchMsg::Connected(self.id)).await;
                LinkState::Subscribed
            }
            Err(err) => {
                let hint = refused_subscribe_hint(&err, self.user.as_deref());
                let refusal = err.to_string();
                if previous == Some(refusal.as_str()) {
                    debug!(sentinel = %self.addr, error = %err, "PSUBSCRIBE * still refused");
                } else {
                    error!(sentinel = %self.addr, error = %err, retry_in_s = SUBSCRIBE_RETRY.as_secs(),
                        "PSUBSCRIBE * refused: {hint}; this sentinel counts as not connected until it is accepted");
                }
                let _ = self
                    .tell_down(told_up, format!("{REFUSED_PREFIX}: {hint}"))
                    .await;
                LinkState::Unsubscribed {
                    retry_at: Instant::now() + SUBSCRIBE_RETRY,
                    refusal,
                }
            }
        }
    }

    /// Tells the controller this sentinel is not connected (once per drop, and
    /// once at start when it never came up); false when the controller is gone.
    async fn tell_down(&self, told_up: &mut Option<bool>, reason: String) -> bool {
        METRICS
            .sentinel_connected
            .get_or_create(&vec![("sentinel", self.addr.to_string())])
            .set(0);
        if *told_up == Some(false) {
            return !self.tx.is_closed();
        }
        *told_up = Some(false);
        self.tx
            .send(WatchMsg::Disconnected(self.id, reason))
            .await
            .is_ok()
    }

    /// Parses one pub/sub message and forwards it; false when the controller is gone.
    async fn forward(&self, msg: &fred::types::Message) -> bool {
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
                    .get_or_create(&vec![
                        ("sentinel", self.addr.to_string()),
                        ("type", event.channel().to_owned()),
                    ])
                    .inc();
                debug!(sentinel = %self.addr, channel = %msg.channel, %payload, "event");
                self.tx
                    .send(WatchMsg::Event {
                        sentinel: self.id,
                        event,
                        at,
                    })
                    .await
                    .is_ok()
            }
            Err(ParseError::Hello) => true,
            Err(e) => {
                warn!(sentinel = %self.addr, error = %e, "skipped sentinel message");
                true
            }
        }
    }
}

/// What one sentinel said about one master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterView {
    /// Where this sentinel says the master is *now*: `SENTINEL
    /// GET-MASTER-ADDR-BY-NAME`, which names the promoted replica from the
    /// reconfiguration phase of a failover on (`SENTINEL MASTER` keeps the old
    /// address until the failover ends). It is what Sentinel-aware clients follow.
    pub addr: Addr,
    /// `config-epoch` from `SENTINEL MASTER(S)`.
    pub config_epoch: u64,
    /// Sentinel's flags for the master, e.g. `master,s_down,o_down`.
    pub flags: String,
    /// Replicas this sentinel knows for the master (`SENTINEL REPLICAS`), for
    /// guarding the fast path: a `+switch-master` to a known replica is plausible.
    pub replicas: Vec<Addr>,
}

/// One sentinel's answer to a majority read.
#[derive(Debug, Clone)]
pub struct SentinelReport {
    pub tilt: bool,
    /// Master name → view, for every master this sentinel monitors.
    pub masters: HashMap<String, MasterView>,
    /// Master name → the address `SENTINEL MASTERS` still prints, only where it
    /// differs from the view's (`GET-MASTER-ADDR-BY-NAME`): the old master while
    /// this sentinel leads a failover through its reconfiguration phase. For
    /// showing both reads side by side; never used to decide.
    pub stale_addrs: HashMap<String, Addr>,
}

/// The fields of one `SENTINEL MASTERS` entry that a report keeps.
struct MastersEntry {
    name: String,
    listed: Option<Addr>,
    config_epoch: u64,
    flags: String,
}

fn masters_entry(m: &HashMap<String, String>) -> Option<MastersEntry> {
    Some(MastersEntry {
        name: m.get("name")?.clone(),
        listed: m
            .get("ip")
            .zip(m.get("port").and_then(|p| p.parse().ok()))
            .map(|(ip, port)| Addr::new(ip.clone(), port)),
        config_epoch: m
            .get("config-epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0),
        flags: m.get("flags").cloned().unwrap_or_default(),
    })
}

/// `GET-MASTER-ADDR-BY-NAME`'s answer: `[ip, port]`, or nil when the sentinel
/// does not (or no longer) monitor the name.
fn addr_reply(v: &Value) -> Option<Addr> {
    let Value::Array(a) = v else { return None };
    match a.as_slice() {
        [ip, port] => Some(Addr::new(ip.as_string()?, port.as_string()?.parse().ok()?)),
        _ => None,
    }
}

/// Replica addresses from `SENTINEL REPLICAS`, without those Sentinel itself
/// would never promote: flagged `s_down`/`o_down` or `disconnected`
/// (`sentinelSelectSlave` skips them). The list guards the fast path ("is the
/// `+switch-master` target a replica the sentinels know?"), so a replica that
/// cannot be the target must not make a forged or stale switch look plausible.
/// The old master of a finished failover shows up here as an `s_down` replica
/// until it returns, and is left out for the same reason.
fn promotable_replicas(rs: &[HashMap<String, String>]) -> Vec<Addr> {
    rs.iter()
        .filter(|r| {
            let flags = r.get("flags").map(String::as_str).unwrap_or("");
            !flags
                .split(',')
                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
        })
        .filter_map(|r| {
            Some(Addr::new(
                r.get("ip")?.clone(),
                r.get("port")?.parse().ok()?,
            ))
        })
        .collect()
}

impl SentinelLink {
    /// One sentinel's view of every master it monitors.
    ///
    /// `INFO sentinel` (TILT) and `SENTINEL MASTERS` (names, config-epoch,
    /// flags), then, per master and all at once, `GET-MASTER-ADDR-BY-NAME` (the
    /// address: it names the promoted replica from the reconfiguration phase on,
    /// while `SENTINEL MASTERS` keeps the old one until the failover ends;
    /// `sentinelGetCurrentMasterAddress` in redis `sentinel.c`) and `SENTINEL
    /// REPLICAS`. fred pipelines concurrent commands on the one connection, so
    /// 1,000 masters cost two round trips, not 2,001.
    pub async fn report(&self) -> Result<SentinelReport, String> {
        let info = CustomCommand::new_static("INFO", ClusterHash::FirstKey, false);
        let (info, masters) = tokio::join!(
            self.cmd.custom::<String, _>(info, vec!["sentinel"]),
            self.cmd.masters::<Vec<HashMap<String, String>>>()
        );
        let info = info.map_err(|e| format!("INFO sentinel: {e}"))?;
        let masters = masters.map_err(|e| format!("SENTINEL MASTERS: {e}"))?;
        let tilt = info.lines().any(|l| l.trim() == "sentinel_tilt:1");
        let entries: Vec<MastersEntry> = masters.iter().filter_map(masters_entry).collect();
        let reads =
            futures::future::join_all(entries.iter().map(|e| self.addr_and_replicas(&e.name)))
                .await;
        let mut report = SentinelReport {
            tilt,
            masters: HashMap::with_capacity(entries.len()),
            stale_addrs: HashMap::new(),
        };
        for (e, read) in entries.into_iter().zip(reads) {
            // None: removed between the two reads; it is not monitored any more.
            let Some((addr, replicas)) = read? else {
                continue;
            };
            if let Some(listed) = e.listed.filter(|l| *l != addr) {
                report.stale_addrs.insert(e.name.clone(), listed);
            }
            report.masters.insert(
                e.name,
                MasterView {
                    addr,
                    config_epoch: e.config_epoch,
                    flags: e.flags,
                    replicas,
                },
            );
        }
        Ok(report)
    }

    /// `GET-MASTER-ADDR-BY-NAME` and `SENTINEL REPLICAS` for one master, sent
    /// together; `Ok(None)` when the sentinel does not monitor it.
    async fn addr_and_replicas(&self, name: &str) -> Result<Option<(Addr, Vec<Addr>)>, String> {
        let (addr, replicas) = tokio::join!(
            self.cmd.get_master_addr_by_name::<Value, _>(name),
            self.cmd.replicas::<Vec<HashMap<String, String>>, _>(name)
        );
        let addr = match addr {
            Ok(v) => addr_reply(&v),
            Err(e) if no_such_master(&e) => None,
            Err(e) => return Err(format!("SENTINEL GET-MASTER-ADDR-BY-NAME {name}: {e}")),
        };
        let replicas = match replicas {
            Ok(rs) => promotable_replicas(&rs),
            Err(e) if no_such_master(&e) => return Ok(None),
            Err(e) => return Err(format!("SENTINEL REPLICAS {name}: {e}")),
        };
        Ok(addr.map(|a| (a, replicas)))
    }

    /// One master as [`report`](Self::report) sees it (for `check`), plus the
    /// address `SENTINEL MASTER` itself prints when it differs.
    pub async fn master(&self, name: &str) -> Result<Option<(MasterView, Option<Addr>)>, String> {
        let (master, read) = tokio::join!(
            self.cmd.master::<HashMap<String, String>, _>(name),
            self.addr_and_replicas(name)
        );
        let m = match master {
            Ok(m) => m,
            Err(e) if no_such_master(&e) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let (Some(e), Some((addr, replicas))) = (masters_entry(&m), read?) else {
            return Ok(None);
        };
        let stale = e.listed.filter(|l| *l != addr);
        Ok(Some((
            MasterView {
                addr,
                config_epoch: e.config_epoch,
                flags: e.flags,
                replicas,
            },
            stale,
        )))
    }

    /// `ROLE`'s first element: `sentinel` for a sentinel, `master`/`slave` for a
    /// Redis data node listed by mistake.
    pub async fn role(&self) -> Result<String, String> {
        let cmd = CustomCommand::new_static("ROLE", ClusterHash::FirstKey, false);
        let v = self
            .cmd
            .custom::<Value, _>(cmd, Vec::<Value>::new())
            .await
            .map_err(|e| format!("ROLE: {e}"))?;
        match v {
            Value::Array(a) => a
                .first()
                .and_then(|r| r.as_string())
                .ok_or_else(|| "ROLE: empty answer".to_owned()),
            other => Err(format!("ROLE: unexpected answer {:?}", other.kind())),
        }
    }

    /// `num-other-sentinels` from `SENTINEL MASTER <name>`: how many other
    /// sentinels this one knows for the master.
    pub async fn other_sentinels(&self, name: &str) -> Result<Option<usize>, String> {
        match self.cmd.master::<HashMap<String, String>, _>(name).await {
            Ok(m) => Ok(m.get("num-other-sentinels").and_then(|n| n.parse().ok())),
            Err(e) if no_such_master(&e) => Ok(None),
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

    /// Waits (bounded) until the command connection is up; false at once on a
    /// conclusive failure (TLS, authentication): waiting longer cannot help.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let mut problem = self.problem.clone();
        let conclusive = async move {
            let seen = problem
                .wait_for(|p| p.as_ref().is_some_and(|p| p.conclusive))
                .await;
            if seen.is_err() {
                // The link was closed: only the timeout can answer now.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = tokio::time::timeout(within, self.cmd.wait_for_connect()) => {
                r.map(|r| r.is_ok()).unwrap_or(false)
            }
            () = conclusive => false,
        }
    }

    /// Sends each of [`NEEDED_COMMANDS`] once; returns those refused by ACL
    /// (`NOPERM`), with Redis's words. Other errors are not this probe's business.
    pub async fn refused_commands(
        &self,
        master: &str,
        name: &str,
    ) -> Vec<(&'static NeededCommand, String)> {
        let mut refused = Vec::new();
        for needed in NEEDED_COMMANDS {
            let mut words = needed.args.iter().map(|w| match *w {
                "{master}" => master.to_owned(),
                "{name}" => name.to_owned(),
                w => w.to_owned(),
            });
            let Some(cmd) = words.next() else { continue };
            let cmd = CustomCommand::new(cmd, ClusterHash::FirstKey, false);
            let args: Vec<String> = words.collect();
            if let Err(e) = self.cmd.custom::<Value, _>(cmd, args).await {
                let e = e.to_string();
                if e.contains("NOPERM") {
                    refused.push((needed, e));
                }
            }
        }
        refused
    }

    /// Why the last connection attempt failed, waiting up to `within` for the
    /// first failure to be recorded (fred reports a failed first connect to
    /// `wait_for_connect` a moment before its error broadcast).
    pub async fn problem(&self, within: Duration) -> Option<LinkProblem> {
        let mut rx = self.problem.clone();
        let _ = tokio::time::timeout(within, rx.wait_for(|p| p.is_some())).await;
        let p = rx.borrow().clone();
        p
    }

    /// Ends the link: its naming task and its connection.
    pub async fn close(&self) {
        self.minder.abort();
        let _ = self.cmd.quit().await;
    }
}

/// One command the watcher sends to a sentinel, with the ACL rule that allows
/// it and why it is needed: the single list the README's rule, `check`'s
/// permission probe and the ACL test are held to.
pub struct NeededCommand {
    /// The command as sent (`{master}` and `{name}` are filled in).
    pub args: &'static [&'static str],
    /// The ACL rule that grants it.
    pub rule: &'static str,
    pub why: &'static str,
    /// False: refused only costs noise in `ACL LOG` (fred tolerates it).
    pub required: bool,
}

/// Every command sent on a command link (the subscriber's `PSUBSCRIBE *` and
/// `PING` are probed by [`probe_subscribe`]).
pub const NEEDED_COMMANDS: &[NeededCommand] = &[
    NeededCommand {
        args: &["INFO", "sentinel"],
        rule: "+info",
        why: "TILT detection in every majority read (fred also sends INFO server at connect)",
        required: true,
    },
    NeededCommand {
        args: &["SENTINEL", "MASTERS"],
        rule: "+sentinel|masters",
        why: "config-epoch and flags in every majority read",
        required: true,
    },
    NeededCommand {
        args: &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "{master}"],
        rule: "+sentinel|get-master-addr-by-name",
        why: "where each sentinel says the master is",
        required: true,
    },
    NeededCommand {
        args: &["SENTINEL", "REPLICAS", "{master}"],
        rule: "+sentinel|replicas",
        why: "the replicas that guard the fast path",
        required: true,
    },
    NeededCommand {
        args: &["SENTINEL", "MASTER", "{master}"],
        rule: "+sentinel|master",
        why: "check and target warm-up",
        required: true,
    },
    NeededCommand {
        args: &["ROLE"],
        rule: "+role",
        why: "proof that the endpoint is a sentinel (check)",
        required: true,
    },
    NeededCommand {
        args: &["CLIENT", "SETNAME", "{name}"],
        rule: "+client|setname",
        why: "naming this watcher for the live-watcher rule",
        required: true,
    },
    NeededCommand {
        args: &["CLIENT", "LIST"],
        rule: "+client|list",
        why: "seeing which watchers are live (alerts.local_sentinel)",
        required: true,
    },
    NeededCommand {
        args: &["CLIENT", "ID"],
        rule: "+client|id",
        why: "sent by fred at every connect; refused it only fills ACL LOG",
        required: false,
    },
];

/// The exact Redis 7 ACL rule for the watcher user (besides `on` and its password).
pub fn acl_rule() -> String {
    let mut rule = vec!["resetchannels", "&*", "-@all", "+psubscribe", "+ping"];
    rule.extend(NEEDED_COMMANDS.iter().map(|c| c.rule));
    rule.join(" ")
}

fn no_such_master(e: &fred::error::Error) -> bool {
    e.details().contains("No such master")
}

/// Tries `PSUBSCRIBE *` on a short-lived connection (for `check`): `Err` says
/// which permission is missing, or why the sentinel could not be reached.
pub async fn probe_subscribe(addr: &Addr, auth: Option<&SentinelAuth>) -> Result<(), String> {
    let c = client(addr, auth);
    drop(c.connect());
    let result = match tokio::time::timeout(Duration::from_secs(3), c.wait_for_connect()).await {
        Ok(Ok(())) => psubscribe_confirmed(&c).await.map_err(|e| {
            format!(
                "{}: {e}",
                refused_subscribe_hint(&e, auth.and_then(|a| a.username.as_deref()))
            )
        }),
        Ok(Err(e)) => Err(format!("cannot connect: {e}")),
        Err(_) => Err("cannot connect within 3 s".to_owned()),
    };
    let _ = c.quit().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(ip: &str, flags: &str) -> HashMap<String, String> {
        [("ip", ip), ("port", "6379"), ("flags", flags)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn replicas_sentinel_would_not_promote_are_left_out() {
        let rs = vec![
            replica("10.0.1.12", "slave"),
            replica("10.0.1.11", "s_down,slave,disconnected"),
            replica("10.0.1.13", "slave,disconnected"),
            replica("10.0.1.14", "slave,s_down"),
            replica("10.0.1.15", "slave,o_down"),
        ];
        assert_eq!(promotable_replicas(&rs), vec![Addr::new("10.0.1.12", 6379)]);
    }

    #[test]
    fn get_master_addr_reply_is_parsed_and_nil_is_none() {
        let v = Value::Array(vec![Value::from("127.0.0.3"), Value::from("6380")]);
        assert_eq!(addr_reply(&v), Some(Addr::new("127.0.0.3", 6380)));
        assert_eq!(addr_reply(&Value::Null), None);
        let bad = Value::Array(vec![Value::from("127.0.0.3"), Value::from("x")]);
        assert_eq!(addr_reply(&bad), None);
    }

    #[tokio::test]
    async fn close_ends_every_task_the_link_started() {
        // Nothing listens on port 1: the link keeps retrying until closed.
        let addr: Addr = "127.0.0.1:1".parse().unwrap();
        let links = command_links(&[addr], None, "t");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!links[0].minder.is_finished());
        tokio::time::timeout(Duration::from_secs(5), links[0].close())
            .await
            .expect("close does not hang on a link that never connected");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            links[0].minder.is_finished(),
            "the naming task outlived close()"
        );
    }

    #[test]
    fn tls_and_auth_failures_are_conclusive_and_say_what_to_fix() {
        let cases = [
            (
                "IO Error: Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }",
                "sentinel_tls.ca_file",
            ),
            ("InvalidCertificate(Expired)", "expired"),
            ("InvalidCertificate(ExpiredContext { time: .. })", "expired"),
            ("InvalidCertificate(NotValidForName)", "server_name"),
            (
                "InvalidCertificate(NotValidForNameContext { .. })",
                "server_name",
            ),
            ("AlertReceived(CertificateRequired)", "client certificate"),
            ("AlertReceived(HandshakeFailure)", "client certificate"),
            (
                "WRONGPASS invalid username-password pair or user is disabled.",
                "wrong username or password",
            ),
        ];
        for (error, says) in cases {
            let p = link_problem(error, Some("w"));
            assert!(p.conclusive, "{error}");
            assert!(p.reason.contains(says), "{error} -> {}", p.reason);
        }
        let p = link_problem("IO Error: Connection refused (os error 111)", None);
        assert!(!p.conclusive);
    }

    #[test]
    fn the_acl_rule_covers_every_needed_command() {
        let rule = acl_rule();
        assert!(
            rule.starts_with("resetchannels &* -@all +psubscribe +ping "),
            "{rule}"
        );
        for c in NEEDED_COMMANDS {
            assert!(rule.contains(c.rule), "{}", c.rule);
        }
    }

    #[test]
    fn refused_psubscribe_names_the_missing_permission() {
        let channel = "NOPERM No permissions to access a channel";
        let h = refused_subscribe_hint(channel, Some("watcher"));
        assert!(h.contains("&*") && h.contains("watcher"), "{h}");
        let cmd = "NOPERM User watcher has no permissions to run the 'psubscribe' command";
        let h = refused_subscribe_hint(cmd, Some("watcher"));
        assert!(h.contains("+psubscribe"), "{h}");
        let lost = "PSUBSCRIBE * did not take (PING answered \"PONG\" outside subscribed mode)";
        let h = refused_subscribe_hint(lost, Some("watcher"));
        assert!(
            h.contains("&*") && h.contains("+psubscribe") && h.contains("watcher"),
            "{h}"
        );
        assert!(refused_subscribe_hint(
            "NOPERM this user has no permissions to access one of the channels used as arguments",
            None
        )
        .contains("\"default\""));
    }
}
