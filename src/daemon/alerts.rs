//! Alerts: fold events from all sentinels into incidents, and send each
//! incident state change once to every webhook sink.
//!
//! `fold` is the pure state machine (time injected); `speaker` is the pure rule
//! for which watcher posts to chat sinks; `sink` formats and delivers; `inbox`
//! is how the controller hands inputs over without waiting. This module wires
//! them into a task that never blocks the route path.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::act::sinks::Sink;
use crate::addr::Addr;
use crate::config::Config;
use crate::decide::fold::{AlertInput, Fold, Incident, Stamp};
use crate::decide::speaker::{designated, Liveness};
use crate::ops::metrics::METRICS;
use crate::ops::status::SharedStatus;
use crate::shutdown::Shutdown;
use crate::watch::SentinelLink;

/// The latest liveness view and when it was taken (`None`: no poll yet).
type LivenessView = Option<(Instant, Liveness)>;

/// What the daemon hands the alert task on SIGHUP: the new config and the
/// sentinel links in use. The fold (open incidents) is kept; sinks, timing,
/// masters and the live-watcher poller follow the new config.
pub(crate) struct Reconfigure {
    pub cfg: Arc<Config>,
    pub links: Vec<SentinelLink>,
}

/// The running alert task's two inboxes.
pub(crate) struct Alerter {
    /// Events and outcomes from the controller (`offer` only, never awaited).
    pub inbox: mpsc::Sender<AlertInput>,
    /// Reloads from the daemon.
    pub reconfigure: mpsc::Sender<Reconfigure>,
}

/// Who the alert task speaks to and for, built from one config.
struct Speaking {
    sinks: Vec<Arc<Sink>>,
    local: Option<Addr>,
    sentinels: Vec<Addr>,
    receiver: String,
    live: watch::Receiver<LivenessView>,
    /// Dropping it stops this config's `CLIENT LIST` poller.
    _poller: Option<crate::shutdown::ShutdownTrigger>,
}

impl Speaking {
    fn new(
        cfg: &Config,
        links: &[SentinelLink],
        http: &reqwest::Client,
        shutdown: &Shutdown,
    ) -> Speaking {
        let local = cfg.alerts.local_sentinel.clone();
        let sentinels = cfg.sentinels.clone();
        let (poller, live) = match &local {
            Some(_) => {
                let (stop, stopped) = Shutdown::new();
                let rx =
                    poll_liveness(links.to_vec(), sentinels.clone(), shutdown.clone(), stopped);
                (Some(stop), rx)
            }
            None => (None, watch::channel(None).1),
        };
        Speaking {
            // `load_config` read every sink's secrets before this config
            // was accepted; a process's environment does not change since.
            sinks: match cfg.alerts.sinks() {
                Ok(sinks) => sinks
                    .into_iter()
                    .map(|w| Sink::start(w, http.clone()))
                    .collect(),
                Err(p) => {
                    tracing::error!(problem = %p, "webhook sinks not started");
                    Vec::new()
                }
            },
            receiver: local
                .as_ref()
                .map(|l| format!("sentinel-vip@{l}"))
                .unwrap_or_else(|| "sentinel-vip".into()),
            local,
            sentinels,
            live,
            _poller: poller,
        }
    }
}

/// Starts the alert task. The controller only ever `offer`s into its inbox:
/// alerts never delay a route write. With no webhooks configured the fold
/// still runs (a reload may add sinks) and nothing is sent.
///
/// With `alerts.local_sentinel` set, the task also polls `CLIENT LIST` on every
/// sentinel through `links` (see [`speaker`]) to decide who posts to chat sinks;
/// the poller ends with the task's `shutdown` or when a reload replaces it.
///
/// **Architecture Invariant:** every task started here ends on `shutdown`
/// (sink workers end once their sink is dropped and their queue is empty), so
/// reloads do not leak tasks.
pub(crate) fn spawn(
    cfg: &Config,
    links: &[SentinelLink],
    status: SharedStatus,
    mut shutdown: Shutdown,
) -> Alerter {
    let (tx, mut rx) = mpsc::channel::<AlertInput>(4096);
    let (reconf_tx, mut reconf_rx) = mpsc::channel::<Reconfigure>(4);
    let http = match crate::act::sinks::http_client() {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "cannot build the HTTP client for webhooks; alerts are not sent");
            reqwest::Client::new()
        }
    };
    let mut fold = Fold::new(cfg.alerts.group_wait, cfg.alerts.repeat_interval)
        .for_masters(cfg.masters.keys().cloned());
    let mut speaking = Speaking::new(cfg, links, &http, &shutdown);
    tokio::spawn(async move {
        loop {
            let wake = fold
                .next_due()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.recv() => break,
                _ = tokio::time::sleep_until(wake) => {}
                r = reconf_rx.recv() => {
                    let Some(r) = r else { continue };
                    fold.set_timing(r.cfg.alerts.group_wait, r.cfg.alerts.repeat_interval);
                    fold.set_masters(Stamp::now(), r.cfg.masters.keys().cloned());
                    speaking = Speaking::new(&r.cfg, &r.links, &http, &shutdown);
                    info!(sinks = speaking.sinks.len(), "alerts reconfigured; open incidents kept");
                }
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    let at = Stamp::now();
                    if let Some(e) = status.read(|s| s.max_config_epoch) {
                        fold.observe_epoch(e);
                    }
                    match &m {
                        AlertInput::Event { sentinel, event } => fold.on_event(at, *sentinel, event),
                        AlertInput::Route(r) => fold.on_route(at, r),
                        AlertInput::RouteVerified { master, addr, target } => fold.on_route_verified(at, master, addr, target),
                        AlertInput::Majority { master, ok, detail } => fold.on_majority(at, master, *ok, detail),
                        AlertInput::Ec2 { ok, detail } => fold.on_ec2(at, !*ok, detail),
                        AlertInput::SentinelRefused { sentinel, ok, detail } => fold.on_sentinel_refused(at, sentinel, !*ok, detail),
                    }
                }
            }
            let due = fold.due(Instant::now());
            if !due.is_empty() {
                let live = current(&speaking.live.borrow());
                for incident in due {
                    send(
                        &incident,
                        &speaking.sinks,
                        &speaking.receiver,
                        speaking.local.as_ref(),
                        &speaking.sentinels,
                        &live,
                    )
                    .await;
                }
            }
            METRICS.incidents_open.set(fold.open_count() as i64);
            let open = fold.open_count();
            status.update(|s| s.incidents_open = open);
        }
    });
    Alerter {
        inbox: tx,
        reconfigure: reconf_tx,
    }
}

/// The liveness view to decide with now: unknown when none was taken yet or
/// the last one is stale.
fn current(view: &LivenessView) -> Liveness {
    match view {
        Some((at, l)) if at.elapsed() < crate::decide::speaker::STALE_AFTER => l.clone(),
        _ => Liveness::Unknown,
    }
}

/// Polls `CLIENT LIST` on every sentinel every [`crate::decide::speaker::POLL_EVERY`] and
/// publishes the liveness verdict. Ends on shutdown. Logs when a watcher is
/// seen gone or back, and when nothing can be read.
fn poll_liveness(
    links: Vec<SentinelLink>,
    sentinels: Vec<Addr>,
    mut shutdown: Shutdown,
    mut replaced: Shutdown,
) -> watch::Receiver<LivenessView> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::decide::speaker::POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Liveness> = None;
        loop {
            tokio::select! {
                _ = shutdown.recv() => break,
                _ = replaced.recv() => break,
                _ = tick.tick() => {}
            }
            let reads = links.iter().map(|l| async move {
                match tokio::time::timeout(crate::decide::speaker::POLL_TIMEOUT, l.client_list())
                    .await
                {
                    Ok(Ok(text)) => Some(text),
                    _ => None,
                }
            });
            let lists = futures::future::join_all(reads).await;
            let live = crate::decide::speaker::liveness(&sentinels, &lists);
            if last.as_ref() != Some(&live) {
                match &live {
                    Liveness::Known { alive, answered } => {
                        let gone: Vec<String> = sentinels
                            .iter()
                            .map(|s| s.to_string())
                            .filter(|s| !alive.contains(s))
                            .collect();
                        info!(alive = ?alive, gone = ?gone, answered, "watchers seen through CLIENT LIST");
                    }
                    Liveness::Unknown => warn!(
                        "CLIENT LIST unreadable on every sentinel: cannot tell which watchers are alive, \
                         so this one posts to chat sinks too (needs ACL +client|list)"
                    ),
                }
                last = Some(live.clone());
            }
            if tx.send(Some((Instant::now(), live))).is_err() {
                break;
            }
        }
    });
    rx
}

async fn send(
    incident: &Incident,
    sinks: &[Arc<Sink>],
    receiver: &str,
    local: Option<&Addr>,
    sentinels: &[Addr],
    live: &Liveness,
) {
    let speak = designated(local, sentinels, incident.leader, live);
    info!(key = %incident.key, state = incident.state.as_str(), summary = %incident.summary(),
        events = incident.events, designated = speak, "incident");
    // Chat sinks: only the designated watcher. Generic and PagerDuty sinks are
    // idempotent by key (`webhook-id`, `dedup_key`): every watcher sends.
    for s in sinks {
        if s.cfg.kind.is_chat() && !speak {
            continue;
        }
        if s.cfg.kind == crate::config::SinkKind::Pagerduty
            && incident.state == crate::decide::fold::State::Resolved
            && !incident.told_firing
        {
            // Resolved before it was ever told: trigger then resolve, so the
            // incident shows in PagerDuty's history instead of vanishing.
            let mut firing = incident.clone();
            firing.state = crate::decide::fold::State::Firing;
            s.enqueue(crate::act::sinks::render(
                &s.cfg,
                &firing,
                receiver,
                SystemTime::now(),
            ))
            .await;
        }
        s.enqueue(crate::act::sinks::render(
            &s.cfg,
            incident,
            receiver,
            SystemTime::now(),
        ))
        .await;
    }
}
