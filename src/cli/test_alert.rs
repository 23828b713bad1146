//! `sentinel-vip test-alert [--sink NAME]`: a clearly marked test incident to
//! each webhook sink (or one), each result printed.

use std::time::{Duration, Instant, SystemTime};

use super::Exit;
use crate::act::sinks::Delivery;
use crate::config::Config;
use crate::decide::fold::{Incident, Kind};

pub(super) async fn run(cfg: &Config, sink: Option<&str>) -> Exit {
    if cfg.alerts.webhooks.is_empty() {
        eprintln!("error: no alerts.webhooks configured");
        return Exit::Usage;
    }
    let results = send_to_sinks(cfg, sink).await;
    if results.is_empty() {
        eprintln!("error: no sink named {:?}", sink.unwrap_or_default());
        return Exit::Usage;
    }
    let mut exit = Exit::Ok;
    for (name, r) in results {
        match r {
            Delivery::Sent { status, attempts } => {
                println!("ok    {name}: HTTP {status} after {attempts} attempt(s)")
            }
            Delivery::Failed { why, attempts } => {
                exit = Exit::Failed;
                println!("FAIL  {name}: {why} after {attempts} attempt(s)")
            }
        }
    }
    exit
}

/// `test-alert`: sends a clearly marked test incident to each sink (or one) and
/// returns each result.
pub(super) async fn send_to_sinks(
    cfg: &Config,
    only: Option<&str>,
) -> Vec<(String, crate::act::sinks::Delivery)> {
    let http = match crate::act::sinks::http_client() {
        Ok(h) => h,
        Err(why) => {
            return vec![(
                "http".into(),
                crate::act::sinks::Delivery::Failed { why, attempts: 0 },
            )]
        }
    };
    let now = SystemTime::now();
    let mut incident = Incident::new(
        crate::decide::fold::incident_key(
            "sentinel-vip-test",
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            Some("test"),
        ),
        "TEST",
        Kind::Failover,
        crate::decide::fold::Severity::Warning,
        Instant::now(),
        now,
        Some("TEST — sentinel-vip test-alert, no action needed".into()),
    );
    incident.annotations = vec!["this is a test message from `sentinel-vip test-alert`".into()];
    let mut out = Vec::new();
    for (i, spec) in cfg
        .alerts
        .webhooks
        .iter()
        .enumerate()
        .filter(|(_, w)| only.is_none_or(|o| o == w.name))
    {
        // The sink's secrets are read here, where something is sent.
        let w = match spec.resolve(i) {
            Ok(w) => w,
            Err(p) => {
                out.push((
                    spec.name.clone(),
                    Delivery::Failed {
                        why: format!("{}: {}", p.key, p.why),
                        attempts: 0,
                    },
                ));
                continue;
            }
        };
        // Interactive: a few quick retries, not the daemon's two minutes. A
        // trigger is followed by its resolve, so no test incident stays open.
        let r =
            crate::act::sinks::send_test_alert(&w, &http, &incident, Duration::from_secs(5)).await;
        out.push((w.name.clone(), r));
    }
    out
}
