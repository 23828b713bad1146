//! The subscriber: one task per sentinel, `PSUBSCRIBE *`, each message parsed
//! into an [`Event`]; silence, refusals and reconnects reported as [`WatchMsg`]s.

use std::time::Instant;

use fred::clients::SentinelClient;
use fred::interfaces::{ClientInterface, ClientLike, EventInterface};
use fred::types::Value;
use futures::future::BoxFuture;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::*;

/// One sentinel's pub/sub subscriber: events in, [`WatchMsg`]s out.
pub(super) struct Watcher {
    pub(super) id: SentinelId,
    pub(super) addr: Addr,
    /// ACL user, for naming it in permission errors (never the password).
    pub(super) user: Option<String>,
    pub(super) sub: SentinelClient,
    pub(super) name: String,
    pub(super) tx: mpsc::Sender<WatchMsg>,
}

/// Where one subscriber stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    /// No TCP connection (fred is reconnecting).
    Down,
    /// Connected, PSUBSCRIBE refused (and said so at error level); retried at
    /// `retry_at`.
    /// `refused`: the last attempt was refused (ACL), not unanswered.
    Unsubscribed { retry_at: Instant, refused: bool },
    /// Subscribed: events flow, silence is watched.
    Subscribed,
}

impl Watcher {
    /// **Architecture Invariant:** this task ends only on shutdown, when the
    /// controller's inbox is gone, or when fred's client is dropped; never
    /// because a broadcast receiver lagged.
    pub(super) async fn run(self, mut shutdown: Shutdown) {
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
                    LinkState::Unsubscribed { retry_at, refused } => {
                        if Instant::now() >= *retry_at {
                            state = self.subscribe(&mut told_up, Some(*refused)).await;
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
    /// connection; the retries every [`SUBSCRIBE_RETRY`] on that connection
    /// (`retry`) log at debug, whatever their wording: one ACL refusal reads
    /// either as the NOPERM reply or, when that reply is lost, as a PING
    /// answered outside subscribed mode, and the two alternate.
    ///
    /// `retry`: whether the previous attempt on this connection was refused
    /// (`None`: first attempt). A refusal after unanswered attempts is told
    /// to the controller even though it already heard "not connected".
    async fn subscribe(&self, told_up: &mut Option<bool>, retry: Option<bool>) -> LinkState {
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
            Err(SubscribeError::Refused(err)) => {
                self.count_failure("refused");
                let hint = refused_subscribe_hint(&err, self.user.as_deref());
                if retry == Some(false) {
                    // It was only unanswered so far: tell the refusal.
                    *told_up = None;
                }
                if retry == Some(true) {
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
                    refused: true,
                }
            }
            Err(e @ SubscribeError::NoAnswer(_)) => {
                // Not an ACL matter: nothing was refused, nothing answered.
                // Told as a plain disconnect (no REFUSED_PREFIX: no refusal
                // incident, no "refused" in /status); retried like a refusal,
                // and fred drops a connection that stays silent.
                self.count_failure("no_answer");
                let said = e.explain(self.user.as_deref());
                if retry.is_some() {
                    debug!(sentinel = %self.addr, error = %said, "PSUBSCRIBE * still unanswered");
                } else {
                    warn!(sentinel = %self.addr, error = %said, retry_in_s = SUBSCRIBE_RETRY.as_secs(),
                        "PSUBSCRIBE * unanswered (link problem); this sentinel counts as not connected until it answers");
                }
                let _ = self.tell_down(told_up, said).await;
                LinkState::Unsubscribed {
                    retry_at: Instant::now() + SUBSCRIBE_RETRY,
                    refused: false,
                }
            }
        }
    }

    /// Counts a PSUBSCRIBE that did not take, by `reason` (`refused`, `no_answer`).
    fn count_failure(&self, reason: &'static str) {
        METRICS
            .subscribe_failures
            .get_or_create(&vec![
                ("sentinel", self.addr.to_string()),
                ("reason", reason.to_owned()),
            ])
            .inc();
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
