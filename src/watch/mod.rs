//! Watch: one task per configured sentinel turns its pub/sub stream into typed
//! [`Event`]s on a channel, and a command connection answers the majority reads.
//!
//! Pub/sub drops whatever is published while a connection is down, so every
//! (re)connect is reported as [`WatchMsg::Connected`]: the controller answers it
//! with a reconcile.

mod acl;
pub mod event;
mod operator;
mod report;
mod subscriber;

use subscriber::Watcher;

pub use acl::{acl_rule, probe_subscribe, NeededCommand, NEEDED_COMMANDS};
pub use operator::OPERATOR_ACL_RULE;
pub use report::{MasterView, SentinelError, SentinelReport};

use std::time::{Duration, Instant};

use fred::clients::SentinelClient;
use fred::interfaces::{ClientInterface, ClientLike, EventInterface, PubsubInterface};
use fred::prelude::{ConnectionConfig, PerformanceConfig, ReconnectPolicy};
use fred::types::config::{
    SentinelConfig, TcpConfig, TlsConfig, TlsConnector, TlsHostMapping, UnresponsiveConfig,
};
use fred::types::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tracing::{error, warn};

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

/// Events a subscriber connection buffers between the socket and the watcher
/// task (fred's broadcast channel; its default, 32, overflowed at the first
/// burst of a few thousand `+sdown`/`-sdown` a second: the overflow is
/// skipped, counted as lag and answered with a majority read). 4,096 holds
/// ~0.7 s of the storm bench's 6,000 events a second while the watcher task
/// waits for a core (1,024 held 0.17 s, and a loaded 2-core machine lost
/// four events in five); it costs ~0.8 MB per sentinel (168-byte messages,
/// every slot allocated up front).
const SUBSCRIBER_BUFFER: usize = 4096;

fn client(addr: &Addr, auth: Option<&SentinelAuth>) -> SentinelClient {
    client_with(
        addr,
        auth,
        PerformanceConfig::default().broadcast_channel_capacity,
    )
}

fn client_with(addr: &Addr, auth: Option<&SentinelAuth>, buffer: usize) -> SentinelClient {
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
        broadcast_channel_capacity: buffer,
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
            sub: client_with(addr, auth, SUBSCRIBER_BUFFER),
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

/// Why `PSUBSCRIBE *` did not take: the sentinel said no, or it did not
/// answer at all. Only the first is an ACL matter (an operator must change the
/// user); the second is a link problem (a stopped or overloaded sentinel,
/// packets dropped) and is reported as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// The sentinel answered with a refusal (`NOPERM`, or a PING answered
    /// outside subscribed mode: the `NOPERM` frame was lost).
    Refused(String),
    /// No answer within the command timeout, or the connection failed.
    NoAnswer(String),
}

impl SubscribeError {
    /// From the error of the PSUBSCRIBE or of the PING behind it: timeouts,
    /// I/O errors and cancelled commands are a link problem, any reply a refusal.
    fn from_fred(e: &fred::error::Error) -> SubscribeError {
        use fred::error::ErrorKind as K;
        match e.kind() {
            K::Timeout | K::IO | K::Canceled | K::Backpressure => {
                SubscribeError::NoAnswer(e.to_string())
            }
            _ => SubscribeError::Refused(e.to_string()),
        }
    }

    /// A label for the `subscribe_failures` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            SubscribeError::Refused(_) => "refused",
            SubscribeError::NoAnswer(_) => "no_answer",
        }
    }

    /// What an operator reads: for a refusal the permission to grant (see
    /// [`refused_subscribe_hint`]), for no answer that it is a link problem.
    pub fn explain(&self, user: Option<&str>) -> String {
        match self {
            SubscribeError::Refused(e) => format!("{}: {e}", refused_subscribe_hint(e, user)),
            SubscribeError::NoAnswer(e) => format!(
                "no answer to PSUBSCRIBE * within {} ms: a link problem (a stopped or overloaded sentinel, or packets dropped on the way), not an ACL refusal [{e}]",
                COMMAND_TIMEOUT.as_millis()
            ),
        }
    }
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscribeError::Refused(e) => write!(f, "refused: {e}"),
            SubscribeError::NoAnswer(e) => write!(f, "no answer: {e}"),
        }
    }
}

/// `PSUBSCRIBE *`, then proof that it took.
///
/// fred 10 resolves `psubscribe()` as soon as the command is written (its reply
/// is out-of-band, `Command::has_no_responses`), so an ACL refusal never reaches
/// that call: the `NOPERM` error frame arrives as the answer to the next command
/// instead. A `PING` right behind it therefore tells all three cases apart:
/// `["pong", ""]` (RESP2 subscribed mode) = subscribed; the `NOPERM` error =
/// refused, with Redis's reason; a plain `PONG` = not subscribed for another reason.
///
/// A PING that times out is not a refusal: the sentinel did not answer
/// ([`SubscribeError::NoAnswer`]).
async fn psubscribe_confirmed(c: &SentinelClient) -> Result<(), SubscribeError> {
    c.psubscribe("*")
        .await
        .map_err(|e| SubscribeError::from_fred(&e))?;
    match c.ping::<Value>(None).await {
        Ok(Value::Array(a)) if a.first().and_then(|v| v.as_string()).as_deref() == Some("pong") => {
            Ok(())
        }
        Ok(other) => Err(SubscribeError::Refused(format!(
            "PSUBSCRIBE * did not take (PING answered {:?} outside subscribed mode)",
            other.as_string().unwrap_or_default()
        ))),
        Err(e) => Err(SubscribeError::from_fred(&e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use report::{addr_reply, promotable_replicas};
    use std::collections::HashMap;

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
    fn a_subscriber_buffers_most_of_a_second_of_an_event_storm() {
        let sub = client_with(&Addr::new("127.0.0.1", 1), None, SUBSCRIBER_BUFFER);
        let held = sub.perf_config().broadcast_channel_capacity;
        // The storm bench: 6,000 events in one second from one endpoint.
        assert!(
            held * 10 >= 6_000 * 6,
            "{held} events: under 0.6 s of a storm"
        );
    }

    #[test]
    fn a_psubscribe_timeout_is_a_link_problem_not_an_acl_refusal() {
        use fred::error::{Error, ErrorKind};
        let timeout =
            SubscribeError::from_fred(&Error::new(ErrorKind::Timeout, "Request timed out."));
        assert_eq!(timeout.reason(), "no_answer");
        let said = timeout.explain(Some("watcher"));
        assert!(
            said.contains("no answer") && said.contains("not an ACL refusal"),
            "{said}"
        );
        assert!(!said.contains("ACL SETUSER"), "{said}");
        let io = SubscribeError::from_fred(&Error::new(ErrorKind::IO, "Broken pipe"));
        assert_eq!(io.reason(), "no_answer");
        let noperm = SubscribeError::from_fred(&Error::new(
            ErrorKind::Unknown,
            "NOPERM No permissions to access a channel",
        ));
        assert_eq!(noperm.reason(), "refused");
        assert!(noperm
            .explain(Some("watcher"))
            .contains("ACL SETUSER watcher &*"));
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
