//! Alerts: fold events from all sentinels into incidents, and send each
//! incident state change once to every webhook sink.
//!
//! `fold` is the pure state machine (time injected); `speaker` is the pure rule
//! for which watcher posts to chat sinks; `sink` formats and delivers; `inbox`
//! is how the controller hands inputs over without waiting. This module wires
//! them into a task that never blocks the route path.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::act::sinks::Sink;
use crate::addr::Addr;
use crate::config::Config;
use crate::daemon::peers::{current, Peers};
use crate::decide::fold::{AlertInput, Fold, Incident, Stamp};
use crate::decide::speaker::{designated, Liveness};
use crate::ops::metrics::METRICS;
use crate::ops::status::SharedStatus;
use crate::shutdown::Shutdown;

/// What the daemon hands the alert task on SIGHUP: the new config and the
/// live-watcher view of the links in use. The fold (open incidents) is kept;
/// sinks, timing, masters and the speaker rule follow the new config.
pub(crate) struct Reconfigure {
    pub cfg: Arc<Config>,
    pub peers: Peers,
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
    /// This machine's host name: every message names the watcher that sent it.
    host: String,
    /// Which watchers are alive (`daemon::peers`, polled with the links).
    live: Peers,
}

impl Speaking {
    fn new(cfg: &Config, live: Peers, http: &reqwest::Client) -> Speaking {
        let local = cfg.local().cloned();
        let sentinels = cfg.sentinels.clone();
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
            host: crate::ops::host::host_name(),
            local,
            sentinels,
            live,
        }
    }
}

/// Starts the alert task. The controller only ever `offer`s into its inbox:
/// alerts never delay a route write. With no webhooks configured the fold
/// still runs (a reload may add sinks) and nothing is sent.
///
/// With `local_sentinel` set, `peers` (the links' `CLIENT LIST` poller, see
/// [`crate::daemon::peers`]) tells whether this watcher posts to chat sinks.
///
/// **Architecture Invariant:** every task started here ends on `shutdown`
/// (sink workers end once their sink is dropped and their queue is empty), so
/// reloads do not leak tasks.
pub(crate) fn spawn(
    cfg: &Config,
    peers: Peers,
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
        .with_group_interval(cfg.alerts.group_interval)
        .for_masters(cfg.masters.keys().cloned())
        .for_cluster(&cfg.cluster());
    let mut speaking = Speaking::new(cfg, peers, &http);
    info!(cluster = %cfg.cluster(), explicit = cfg.cluster.is_some(), host = %speaking.host,
        "alerts: incident keys and messages name this deployment and host");
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
                    fold.set_group_interval(r.cfg.alerts.group_interval);
                    fold.set_masters(Stamp::now(), r.cfg.masters.keys().cloned());
                    fold.set_cluster(&r.cfg.cluster());
                    speaking = Speaking::new(&r.cfg, r.peers, &http);
                    info!(sinks = speaking.sinks.len(), "alerts reconfigured; open incidents kept");
                }
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    // What waits behind it is folded too before the timers
                    // and the status below, which walk every open incident.
                    for m in crate::daemon::inbox::batch(&mut rx, m) {
                        fold.on_input(Stamp::now(), &m);
                    }
                }
            }
            let due = fold.due(Instant::now());
            if !due.is_empty() {
                let live = current(&speaking.live);
                for incident in due {
                    send(
                        &incident,
                        &speaking.sinks,
                        &speaking.receiver,
                        &speaking.host,
                        speaking.local.as_ref(),
                        &speaking.sentinels,
                        &live,
                    )
                    .await;
                }
            }
            METRICS.incidents_open.set(fold.open_count() as i64);
            let open = fold.open_count();
            let down = fold.masters_down();
            status.update(|s| {
                s.incidents_open = open;
                s.masters_down = down;
            });
        }
    });
    Alerter {
        inbox: tx,
        reconfigure: reconf_tx,
    }
}

async fn send(
    incident: &Incident,
    sinks: &[Arc<Sink>],
    receiver: &str,
    host: &str,
    local: Option<&Addr>,
    sentinels: &[Addr],
    live: &Liveness,
) {
    let speak = designated(local, sentinels, live);
    info!(key = %incident.key, state = incident.state.as_str(), summary = %incident.summary(),
        events = incident.events, planned = incident.planned, designated = speak, "incident");
    // Chat sinks: only the designated watcher. Generic and PagerDuty sinks are
    // idempotent by key (`webhook-id`, `dedup_key`): every watcher sends.
    for s in sinks {
        if s.cfg.kind.is_chat() && !speak {
            continue;
        }
        if s.cfg.kind == crate::config::SinkKind::Pagerduty && !pages(incident) {
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
                host,
                SystemTime::now(),
            ))
            .await;
        }
        s.enqueue(crate::act::sinks::render(
            &s.cfg,
            incident,
            receiver,
            host,
            SystemTime::now(),
        ))
        .await;
    }
}

/// Whether PagerDuty hears of `incident`'s message: never of a planned
/// switchover (Events v2 has no event that informs without opening an
/// incident), and not of a damped update that leaves a told page firing (its
/// trigger is already open; the resolve will come).
fn pages(incident: &Incident) -> bool {
    use crate::decide::fold::State;
    if incident.planned || incident.severity == crate::decide::fold::Severity::Info {
        return false;
    }
    !(incident.state == State::Firing
        && incident.told_firing
        && matches!(incident.sent, Some((State::Firing, _)))
        && incident.flapped())
}

#[cfg(test)]
mod tests {
    use super::pages;
    use crate::decide::fold::{Incident, Kind, Severity, State};
    use std::time::{Instant, SystemTime};

    fn incident(kind: Kind, severity: Severity) -> Incident {
        Incident::new(
            "k".into(),
            "mymaster",
            kind,
            severity,
            Instant::now(),
            SystemTime::now(),
            None,
        )
    }

    #[test]
    fn a_planned_switchover_and_a_damped_update_of_an_open_page_do_not_page() {
        let mut planned = incident(Kind::Failover, Severity::Info);
        planned.planned = true;
        planned.state = State::Resolved;
        assert!(!pages(&planned));
        let replica = Kind::InstanceDown {
            role: "replica",
            instance: "127.0.0.3:6379".into(),
        };
        let first = incident(replica.clone(), Severity::Warning);
        assert!(pages(&first), "a first trigger pages");
        // Told firing, flapped, still down: PagerDuty's trigger is open already.
        let mut update = incident(replica, Severity::Warning);
        update.sent = Some((State::Firing, Instant::now()));
        update.told_firing = true;
        update.notices = 1;
        update.downs = 2;
        assert!(!pages(&update));
        update.state = State::Resolved;
        assert!(pages(&update), "its resolve does");
    }
}
