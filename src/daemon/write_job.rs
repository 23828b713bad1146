//! One route write, as the controller spawns it and `reconcile` runs it: resolve
//! the master's target, write every table that needs it in parallel, read the
//! routes back until they show the target (EC2 reads are eventually consistent).

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::act::ec2::Ec2;
use crate::act::targets::Targets;
use crate::config::RouteTableId;
use crate::decide::plan::{plan, CurrentRoute, RouteAction};
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
        let started = Instant::now();
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
        let cidr = o.cfg.vip.0;
        let writes = o.cfg.route_tables.iter().map(|t| {
            let known = o.known.get(t).cloned();
            let ec2 = &self.ec2;
            let target = &target;
            async move {
                // Unknown state: try ReplaceRoute (falls back to CreateRoute).
                let action = known
                    .as_ref()
                    .map(|k| plan(k, target))
                    .unwrap_or(RouteAction::Replace);
                let r = match action {
                    RouteAction::Keep => Ok(false),
                    RouteAction::Replace => {
                        ec2.write_route(t, cidr, target, false).await.map(|_| true)
                    }
                    RouteAction::Create => {
                        ec2.write_route(t, cidr, target, true).await.map(|_| true)
                    }
                };
                (t.clone(), r)
            }
        });
        outcome.tables = futures::future::join_all(writes).await;
        outcome.write_time = started.elapsed();
        outcome.latency = o.at.elapsed();
        let tables: BTreeSet<RouteTableId> = o.cfg.route_tables.iter().cloned().collect();
        let cidrs: BTreeSet<IpNet> = [cidr].into_iter().collect();
        // EC2 reads are eventually consistent: read back after a short pause,
        // and again a few times before calling the write unverified. Nothing to
        // verify when every write failed; an unreadable EC2 ends verification.
        if outcome.tables.iter().all(|(_, r)| r.is_err()) {
            return outcome;
        }
        for (attempt, pause) in VERIFY_AFTER.iter().enumerate() {
            tokio::time::sleep(*pause).await;
            match self.ec2.read_tables(&tables, &cidrs).await {
                Ok(read) => {
                    let routes: HashMap<RouteTableId, CurrentRoute> = read
                        .iter()
                        .map(|(t, r)| (t.clone(), r.route(&cidr)))
                        .collect();
                    let right = o
                        .cfg
                        .route_tables
                        .iter()
                        .all(|t| routes.get(t).is_some_and(|r| r.points_at(&target)));
                    outcome.verified = Some(routes);
                    if right {
                        break;
                    }
                }
                Err(e) => {
                    warn!(master = %o.master, error = %e, attempt, "could not read the routes back after writing");
                    break;
                }
            }
        }
        outcome
    }
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
