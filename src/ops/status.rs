//! A shared snapshot of what the daemon believes, for `/status`, `/readyz`,
//! `/metrics` and systemd's `STATUS=`. Written by the controller, read by others.

use std::sync::{Arc, RwLock};

use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TableStatus {
    pub id: String,
    /// `route_table`, `secondary_ip`, `elastic_ip` or `dns`.
    pub kind: &'static str,
    /// The route's current target id, `missing`, or `unknown` before the first read.
    pub route: String,
}

/// What one configured sentinel answered of a master at the last majority read.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SentinelView {
    pub sentinel: String,
    /// `ip:port @ epoch N (flags)`, `TILT`, `does not monitor it` or `unreachable`.
    pub says: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct MasterStatus {
    pub name: String,
    pub vip: String,
    /// The master a majority of sentinels named at the last read.
    pub majority: Option<String>,
    pub config_epoch: Option<u64>,
    /// The master the VIP route was last verified to point at.
    pub applied: Option<String>,
    /// A route write in flight towards this master.
    pub writing: Option<String>,
    /// On a standby: the address whose write it leaves to the designated
    /// writer, and when (from now, ms) it checks it by reading.
    pub standby_check: Option<String>,
    pub no_majority: bool,
    /// The VIP was moved on a `+switch-master` that no majority read has
    /// confirmed yet: the address it was moved to.
    pub unconfirmed: Option<String>,
    /// Unconfirmed for longer than the alert threshold: `/readyz` fails.
    pub unconfirmed_too_long: bool,
    /// The VIP route has not been on the majority's master for longer than
    /// the bound (10 s: written, failing or waiting): `/readyz` fails.
    pub route_wrong_too_long: bool,
    pub last_error: Option<String>,
    pub tables: Vec<TableStatus>,
    /// Each configured sentinel's answer at the last majority read, in
    /// configured order (filled by the daemon's driver).
    pub sentinels: Vec<SentinelView>,
    /// The EC2 target the majority's master maps to (static `nodes` or the
    /// discovery cache), or why there is none; None before it is known.
    pub target: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Status {
    pub version: &'static str,
    pub sentinels_configured: usize,
    pub sentinels_connected: usize,
    pub sentinels_answering: usize,
    /// Tokio tasks alive when `/status` was served (flat across reloads).
    pub tasks_alive: usize,
    /// Sentinels that refuse the watcher's subscription (ACL), with why.
    pub sentinels_refused: Vec<String>,
    pub reconciles: u64,
    pub last_reconcile_ok: bool,
    pub last_reconcile_ms: f64,
    pub last_reconcile_unix: f64,
    pub masters: Vec<MasterStatus>,
    /// Masters the sentinels say are objectively down (`o_down` in a majority
    /// read, or `+odown` since): set by the alert task from its fold.
    pub masters_down: Vec<String>,
    pub incidents_open: usize,
    /// With `local_sentinel`: this watcher's place among the live ones (0: the
    /// designated writer; r: a standby); None when it writes alone.
    pub writer_rank: Option<usize>,
    /// Last time the controller loop went round (for the watchdog and /healthz).
    #[serde(skip)]
    pub heartbeat: Option<Instant>,
}

impl Status {
    /// Ready: a majority of sentinels connected, the last reconcile succeeded,
    /// no master is objectively down (the VIP leads to a dead master), and
    /// every VIP route is right (or has been on its way for less than the
    /// bound): a write that keeps failing is not ready, however often it is sent.
    pub(crate) fn ready(&self) -> bool {
        self.sentinels_connected >= crate::config::majority_of(self.sentinels_configured)
            && self.last_reconcile_ok
            && self.masters_down.is_empty()
            && !self
                .masters
                .iter()
                .any(|m| m.unconfirmed_too_long || m.route_wrong_too_long)
            && self.sentinels_refused.is_empty()
    }

    /// One line for systemd's `STATUS=` and logs.
    pub(crate) fn summary(&self) -> String {
        let ok = self
            .masters
            .iter()
            .filter(|m| {
                m.last_error.is_none() && !m.no_majority && !self.masters_down.contains(&m.name)
            })
            .count();
        let down = if self.masters_down.is_empty() {
            String::new()
        } else {
            format!(
                "; DOWN (objectively down per the sentinels): {}",
                self.masters_down.join(", ")
            )
        };
        format!(
            "{} masters ({} healthy{down}), sentinels {}/{} connected, last reconcile {}",
            self.masters.len(),
            ok,
            self.sentinels_connected,
            self.sentinels_configured,
            if self.reconciles == 0 {
                "pending".to_owned()
            } else if self.last_reconcile_ok {
                format!("ok in {:.1} ms", self.last_reconcile_ms)
            } else {
                "FAILED".to_owned()
            }
        )
    }
}

/// Cheaply clonable handle on the snapshot.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedStatus(Arc<RwLock<Status>>);

impl SharedStatus {
    pub(crate) fn new(sentinels_configured: usize) -> SharedStatus {
        SharedStatus(Arc::new(RwLock::new(Status {
            version: env!("CARGO_PKG_VERSION"),
            sentinels_configured,
            ..Default::default()
        })))
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.0.write() {
            f(&mut s);
        }
    }

    /// Reads the status in place (no copy of every master): what the
    /// once-a-second readers need, without holding the controller's
    /// `update` up for the time of a clone.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Status) -> R) -> Option<R> {
        self.0.read().ok().map(|s| f(&s))
    }

    pub(crate) fn get(&self) -> Status {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }
}
