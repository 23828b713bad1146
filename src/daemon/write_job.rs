//! One route write, as the controller spawns it and `reconcile` runs it: resolve
//! the master's target, write every table that needs it in parallel, read the
//! routes back until they show the target (EC2 reads are eventually consistent).

use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::act::carriers;
use crate::act::ec2::Ec2;
use crate::act::targets::Targets;
use crate::decide::plan::{carriers, RouteAction};
use crate::decide::steering::{WriteOrder, WriteOutcome};
use crate::ops::metrics::METRICS;

/// Pauses before reading a written route back (EC2 reads are eventually consistent).
const VERIFY_AFTER: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1000),
];

/// One route write: resolve the target, write every table that needs it in
/// parallel, read back.
///
/// A standby's check ([`WriteOrder::check_first`]: another watcher is the
/// designated writer and its turn is over) first reads every carrier and writes
/// only those still wrong: when the writer did its job, it costs one read and
/// no mutating call; when the writer is dead or cut off, the standby writes in
/// its place.
pub(crate) struct WriteJob {
    pub order: WriteOrder,
    pub ec2: Ec2,
    pub targets: Targets,
}

impl WriteJob {
    pub(crate) async fn run(self) -> WriteOutcome {
        let o = &self.order;
        let target = self
            .targets
            .resolve(&self.ec2, &o.master, &o.cfg, &o.addr)
            .await;
        let mut outcome = WriteOutcome {
            id: o.id,
            master: o.master.clone(),
            addr: o.addr.clone(),
            cause: o.cause,
            target: target.clone(),
            tables: Vec::new(),
            verified: None,
            latency: Duration::ZERO,
            write_time: Duration::ZERO,
        };
        let Ok(target) = target else {
            outcome.latency = o.at.elapsed();
            return outcome;
        };
        let mut known = o.known.clone();
        let mut checked = None;
        if o.check_first {
            let nodes = carriers::write_nodes(&o.cfg, &target, &known);
            match carriers::read_back(&self.ec2, &o.cfg, &nodes).await {
                Ok(held) => {
                    known.extend(held.iter().map(|(c, h)| (c.clone(), h.clone())));
                    checked = Some(held);
                }
                Err(e) => {
                    // Not written blind: EC2 in trouble gets no extra writes
                    // from every standby. A failed write is retried through a
                    // fresh majority read, and checked again after the wait.
                    warn!(master = %o.master, error = %e, "standby: cannot read the carriers to check the designated writer's work; nothing written, retrying");
                    count_standby("unreadable");
                    outcome.tables = carriers(&o.cfg)
                        .into_iter()
                        .map(|c| (c, Err(e.clone())))
                        .collect();
                    outcome.latency = o.at.elapsed();
                    return outcome;
                }
            }
        }
        let started = Instant::now();
        let o = &WriteOrder { known, ..o.clone() };
        // Every carrier (route tables, secondary IP, Elastic IP, DNS record)
        // that needs it, at once; an unknown one is written (the write's own
        // fallbacks cover a missing route).
        let all = carriers(&o.cfg);
        let writes = all.iter().map(|c| {
            let known = o.known.get(c);
            let action = known
                .map(|k| k.plan(&target))
                .unwrap_or(RouteAction::Replace);
            let (ec2, target) = (&self.ec2, &target);
            async move {
                let r = carriers::write(ec2, &o.cfg, c, target, &o.addr, action, known).await;
                (c.clone(), r)
            }
        });
        outcome.tables = futures::future::join_all(writes).await;
        outcome.write_time = started.elapsed();
        outcome.latency = o.at.elapsed();
        // Reads are eventually consistent: read back after a short pause,
        // and again a few times before calling the write unverified. Nothing to
        // verify when every write failed; an unreadable carrier ends verification.
        if outcome.tables.iter().all(|(_, r)| r.is_err()) {
            return outcome;
        }
        if let Some(held) = checked {
            if outcome.written() == 0 && outcome.tables.iter().all(|(_, r)| r.is_ok()) {
                // The designated writer did it: what was just read is the proof.
                debug!(master = %o.master, "standby: every carrier already right; nothing written");
                count_standby("already_right");
                outcome.verified = Some(held);
                return outcome;
            }
            warn!(master = %o.master, addr = %o.addr, written = outcome.written(),
                "standby: carriers still wrong after the designated writer's turn; written in its place");
            count_standby("written");
        }
        let nodes = carriers::write_nodes(&o.cfg, &target, &o.known);
        for (attempt, pause) in VERIFY_AFTER.iter().enumerate() {
            tokio::time::sleep(*pause).await;
            match carriers::read_back(&self.ec2, &o.cfg, &nodes).await {
                Ok(held) => {
                    let right = all
                        .iter()
                        .all(|c| held.get(c).is_some_and(|h| h.points_at(&target)));
                    outcome.verified = Some(held);
                    if right {
                        break;
                    }
                }
                Err(e) => {
                    warn!(master = %o.master, error = %e, attempt, "could not read the carriers back after writing");
                    break;
                }
            }
        }
        outcome
    }
}

/// Counts a standby check in `/metrics` by what it found.
fn count_standby(result: &'static str) {
    METRICS
        .standby_checks
        .get_or_create(&vec![("result", result.to_owned())])
        .inc();
}

/// Counts a finished write in `/metrics`.
pub(crate) fn count_write(w: &WriteOutcome) {
    let ok = w.ok();
    METRICS
        .route_updates
        .get_or_create(&vec![
            ("master", w.master.clone()),
            ("result", if ok { "ok" } else { "failed" }.to_owned()),
            ("cause", w.cause.as_str().to_owned()),
        ])
        .inc();
    if ok && w.written() > 0 {
        METRICS
            .route_update_seconds
            .observe(w.latency.as_secs_f64());
    }
    for (kind, result) in w.carrier_results() {
        METRICS
            .carrier_writes
            .get_or_create(&vec![
                ("master", w.master.clone()),
                ("kind", kind.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }
}

/// Logs a finished write: info when verified, error (with why) otherwise.
pub(crate) fn log_write(w: &WriteOutcome) {
    let tables: Vec<String> = w
        .tables
        .iter()
        .map(|(t, r)| match r {
            Ok(true) => format!("{t}=written"),
            Ok(false) => format!("{t}=already-right"),
            Err(e) => format!("{t}=failed({})", e.code.as_deref().unwrap_or(&e.message)),
        })
        .collect();
    let target = w
        .target
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|e| e.to_string());
    if w.ok() {
        info!(master = %w.master, addr = %w.addr, %target, cause = w.cause.as_str(), tables = %tables.join(","),
            written = w.written(), since_event_ms = w.latency.as_secs_f64() * 1e3, write_ms = w.write_time.as_secs_f64() * 1e3,
            "VIP route updated and verified");
    } else {
        error!(master = %w.master, addr = %w.addr, %target, cause = w.cause.as_str(), tables = %tables.join(","),
            error = %w.describe_failure(), "VIP route update failed; will retry");
    }
}
