//! Alerts: fold events from all sentinels into incidents, and send each
//! incident state change once to every webhook sink.
//!
//! `fold` is the pure state machine (time injected); `sink` formats and
//! delivers; this module wires them into a task that never blocks the route path
//! (the controller only ever `try_send`s into it).

pub mod fold;
pub mod sink;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::info;

use crate::config::{Config, SentinelAddr};
use crate::event::Event;
use crate::metrics::METRICS;
use crate::shutdown::Shutdown;
use crate::status::SharedStatus;
use fold::{Fold, Incident, Kind};
use sink::Sink;

/// What the controller tells the alerter.
#[derive(Debug, Clone)]
pub enum AlertInput {
    Event {
        sentinel: usize,
        event: Event,
    },
    Route(RouteReport),
    Majority {
        master: String,
        ok: bool,
        detail: String,
    },
    /// EC2 reads failing (`ok == false`) or working again.
    Ec2 {
        ok: bool,
        detail: String,
    },
}

/// A route write's outcome, as alerts quote it.
#[derive(Debug, Clone)]
pub struct RouteReport {
    pub master: String,
    pub addr: String,
    pub ok: bool,
    pub target: String,
    pub tables_written: usize,
    pub tables_total: usize,
    pub latency_ms: f64,
    pub error: Option<String>,
}

/// Whether this watcher speaks for chat sinks about `incident`.
///
/// Without `local_sentinel` every watcher speaks. With it: for a failover, the
/// watcher beside the sentinel that published `+elected-leader`; otherwise (or
/// when that sentinel is itself `+sdown` in the others' view) the watcher beside
/// the lowest-addressed sentinel not seen down.
pub fn designated(
    local: Option<&SentinelAddr>,
    sentinels: &[SentinelAddr],
    leader: Option<usize>,
    down: &HashSet<String>,
) -> bool {
    let Some(local) = local else { return true };
    let is_down = |s: &SentinelAddr| down.contains(&s.to_string());
    if let Some(l) = leader.and_then(|l| sentinels.get(l)) {
        if !is_down(l) {
            return l == local;
        }
    }
    let mut up: Vec<&SentinelAddr> = sentinels.iter().filter(|s| !is_down(s)).collect();
    up.sort_by(|a, b| {
        let key = |s: &SentinelAddr| {
            (
                s.host.parse::<std::net::IpAddr>().ok(),
                s.host.clone(),
                s.port,
            )
        };
        key(a).cmp(&key(b))
    });
    up.first().is_none_or(|first| *first == local)
}

/// Starts the alert task when sinks are configured; returns its inbox. The
/// controller only ever `try_send`s into it: alerts never delay a route write.
pub fn spawn(
    cfg: &Config,
    status: SharedStatus,
    mut shutdown: Shutdown,
) -> Option<mpsc::Sender<AlertInput>> {
    if cfg.alerts.webhooks.is_empty() {
        return None;
    }
    let (tx, mut rx) = mpsc::channel::<AlertInput>(4096);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("sentinel-vip/", env!("CARGO_PKG_VERSION")))
        .build()
        .ok()?;
    let sinks: Vec<Arc<Sink>> = cfg
        .alerts
        .webhooks
        .iter()
        .map(|w| Sink::start(w.clone(), http.clone()))
        .collect();
    let mut fold = Fold::new(cfg.alerts.group_wait, cfg.alerts.repeat_interval);
    let local = cfg.alerts.local_sentinel.clone();
    let sentinels = cfg.sentinels.clone();
    let receiver = local
        .as_ref()
        .map(|l| format!("sentinel-vip@{l}"))
        .unwrap_or_else(|| "sentinel-vip".into());
    tokio::spawn(async move {
        loop {
            let wake = fold
                .next_due()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.recv() => break,
                _ = tokio::time::sleep_until(wake) => {}
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    let (now, wall) = (Instant::now(), SystemTime::now());
                    for s in status.get().masters.iter().filter_map(|m| m.config_epoch) {
                        fold.observe_epoch(s);
                    }
                    match &m {
                        AlertInput::Event { sentinel, event } => fold.on_event(now, wall, *sentinel, event),
                        AlertInput::Route(r) => fold.on_route(now, wall, r),
                        AlertInput::Majority { master, ok, detail } => fold.on_majority(now, wall, master, *ok, detail),
                        AlertInput::Ec2 { ok, detail } => fold.on_ec2(now, wall, !*ok, detail),
                    }
                }
            }
            for incident in fold.due(Instant::now()) {
                send(
                    &incident,
                    &sinks,
                    &receiver,
                    local.as_ref(),
                    &sentinels,
                    &fold.sentinels_down,
                )
                .await;
            }
            METRICS.incidents_open.set(fold.open_count() as i64);
            let open = fold.open_count();
            status.update(|s| s.incidents_open = open);
        }
    });
    Some(tx)
}

async fn send(
    incident: &Incident,
    sinks: &[Arc<Sink>],
    receiver: &str,
    local: Option<&SentinelAddr>,
    sentinels: &[SentinelAddr],
    down: &HashSet<String>,
) {
    let speak = designated(local, sentinels, incident.leader, down);
    info!(key = %incident.key, state = incident.state.as_str(), summary = %incident.summary(),
        events = incident.events, designated = speak, "incident");
    for s in sinks {
        if s.cfg.kind.is_chat() && !speak {
            continue;
        }
        if s.cfg.kind == crate::config::SinkKind::Pagerduty
            && incident.state == fold::State::Resolved
            && !incident.told_firing
        {
            // Resolved before it was ever told: trigger then resolve, so the
            // incident shows in PagerDuty's history instead of vanishing.
            let mut firing = incident.clone();
            firing.state = fold::State::Firing;
            s.enqueue(sink::render(&s.cfg, &firing, receiver, SystemTime::now()))
                .await;
        }
        s.enqueue(sink::render(&s.cfg, incident, receiver, SystemTime::now()))
            .await;
    }
}

/// `test-alert`: sends a clearly marked test incident to each sink (or one) and
/// returns each result.
pub async fn test_alert(cfg: &Config, only: Option<&str>) -> Vec<(String, sink::Delivery)> {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            return vec![(
                "http".into(),
                sink::Delivery::Failed {
                    why: e.to_string(),
                    attempts: 0,
                },
            )]
        }
    };
    let now = SystemTime::now();
    let mut incident = Incident::new(
        fold::incident_key(
            "sentinel-vip-test",
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            Some("test"),
        ),
        "TEST",
        Kind::Failover,
        fold::Severity::Warning,
        Instant::now(),
        now,
        Some("TEST — sentinel-vip test-alert, no action needed".into()),
    );
    incident.annotations = vec!["this is a test message from `sentinel-vip test-alert`".into()];
    let mut out = Vec::new();
    for w in cfg
        .alerts
        .webhooks
        .iter()
        .filter(|w| only.is_none_or(|o| o == w.name))
    {
        let req = sink::render(w, &incident, "sentinel-vip-test", now);
        // Interactive: a few quick retries, not the daemon's two minutes.
        let r = sink::deliver(w, &http, &req, Duration::from_secs(5)).await;
        out.push((w.name.clone(), r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<SentinelAddr> {
        ["10.0.0.12:26379", "10.0.0.2:26379", "10.0.0.11:26379"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    }

    #[test]
    fn exactly_one_watcher_is_designated() {
        let s = addrs();
        let none = HashSet::new();
        for leader in [None, Some(0), Some(2)] {
            let n = s
                .iter()
                .filter(|l| designated(Some(l), &s, leader, &none))
                .count();
            assert_eq!(n, 1, "leader {leader:?}");
        }
        // Leader speaks; without a leader the lowest address (numerically) speaks.
        assert!(designated(Some(&s[2]), &s, Some(2), &none));
        assert!(designated(Some(&s[1]), &s, None, &none));
    }

    #[test]
    fn next_in_order_takes_over_when_designated_sentinel_is_down() {
        let s = addrs();
        let down: HashSet<String> = ["10.0.0.2:26379".to_owned()].into();
        assert!(designated(Some(&s[2]), &s, None, &down));
        assert!(designated(Some(&s[2]), &s, Some(1), &down));
        assert!(!designated(Some(&s[1]), &s, None, &down));
    }

    #[test]
    fn without_local_sentinel_every_watcher_speaks() {
        assert!(designated(None, &addrs(), Some(0), &HashSet::new()));
    }
}
