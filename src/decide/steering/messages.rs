//! What goes in and out of [`Steering`](super::Steering): the inputs it reacts
//! to, the actions it asks the driver for, and the read and write orders and
//! outcomes they carry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::{MasterConfig, Target};
use crate::decide::facts::{CarrierReads, Ec2Error, TableReads, TargetError};
use crate::decide::fold::{AlertInput, RouteReport};
use crate::decide::plan::{Carrier, Held};
use crate::decide::quorum::Answer;
use crate::watch::event::Addr;
use crate::watch::WatchMsg;

/// Why a route write was started (for logs, metrics and alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    SwitchEvent,
    Reconcile,
}

impl Cause {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cause::SwitchEvent => "+switch-master",
            Cause::Reconcile => "reconcile",
        }
    }
}

/// Everything the decision core reacts to (besides time).
#[derive(Debug)]
pub(crate) enum Input {
    /// What a sentinel's watcher reported: an event, or its pub/sub link up
    /// (pub/sub lost what was published meanwhile, so the majority is read) or
    /// down.
    Watch(WatchMsg),
    /// Read the majority now (start-up, SIGHUP, on demand).
    ReadRequested(&'static str),
    ReadDone(Box<ReadOutcome>),
    WriteDone(Box<WriteOutcome>),
}

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Read every sentinel's view and the route tables; answer with `ReadDone`
    /// carrying this `seq`.
    StartRead { seq: u64 },
    /// Write the VIP route of one master; answer with `WriteDone`.
    StartWrite(WriteOrder),
    /// Hand to the alerter (never awaited).
    Alert(AlertInput),
}

/// One route write to carry out.
#[derive(Debug, Clone)]
pub(crate) struct WriteOrder {
    /// Which write this is (unique per core): its [`WriteOutcome`] carries it
    /// back, so a result that comes after the core gave up on it (or twice) is
    /// recognised and ignored.
    pub id: u64,
    pub master: String,
    pub cfg: MasterConfig,
    pub addr: Addr,
    pub cause: Cause,
    /// When the triggering event (or decision) happened, for the latency figure.
    pub at: Instant,
    /// Carriers as last known, so those already right are not written.
    pub known: HashMap<Carrier, Held>,
    /// A standby's check (another watcher is the designated writer and had
    /// its turn): read every carrier first, write only those still wrong.
    pub check_first: bool,
}

/// Result of one majority read plus route table read.
#[derive(Debug)]
pub(crate) struct ReadOutcome {
    /// Sequence number given in [`Action::StartRead`].
    pub seq: u64,
    /// Per master: one answer per configured sentinel, in configured order.
    pub answers: HashMap<String, Vec<Answer>>,
    /// Every configured table: its read, or why it could not be read (a table
    /// that is gone is an error of its own, never silently absent). The outer
    /// error is a failure of the whole call (network, permission).
    pub tables: Result<TableReads, Ec2Error>,
    /// Per master: its other carriers (secondary IP, Elastic IP, DNS record),
    /// each read or failed on its own.
    pub carriers: HashMap<String, CarrierReads>,
    /// Targets known without I/O (static `nodes` or the discovery cache) for the
    /// addresses the sentinels named, per master.
    pub targets: HashMap<String, HashMap<Addr, Result<Target, TargetError>>>,
    pub sentinels_answering: usize,
    pub took: Duration,
}

impl ReadOutcome {
    /// A read that could not be carried out at all (panicked or hung): every
    /// sentinel counts as unreachable and EC2 as unreadable.
    pub(crate) fn failed(seq: u64, why: String, took: Duration) -> ReadOutcome {
        ReadOutcome {
            seq,
            answers: HashMap::new(),
            tables: Err(task_failed("DescribeRouteTables", why)),
            carriers: HashMap::new(),
            targets: HashMap::new(),
            sentinels_answering: 0,
            took,
        }
    }
}

/// Result of one route write (all tables of one master).
#[derive(Debug)]
pub(crate) struct WriteOutcome {
    /// The [`WriteOrder::id`] this answers.
    pub id: u64,
    pub master: String,
    pub addr: Addr,
    pub cause: Cause,
    pub target: Result<Target, TargetError>,
    /// Per carrier: Ok(true) written, Ok(false) already right, Err why not.
    pub tables: Vec<(Carrier, Result<bool, Ec2Error>)>,
    /// Carriers read back after the write.
    pub verified: Option<HashMap<Carrier, Held>>,
    /// From the triggering event (or decision) to all writes answered.
    pub latency: Duration,
    pub write_time: Duration,
}

impl WriteOutcome {
    /// A write that could not be carried out (its task panicked or hung).
    pub(crate) fn failed(order: &WriteOrder, why: String, latency: Duration) -> WriteOutcome {
        WriteOutcome {
            id: order.id,
            master: order.master.clone(),
            addr: order.addr.clone(),
            cause: order.cause,
            target: Err(TargetError::Ec2(task_failed("ReplaceRoute", why))),
            tables: Vec::new(),
            verified: None,
            latency,
            write_time: Duration::ZERO,
        }
    }

    /// A write whose result never came (the core's deadline passed): a
    /// transient failure, retried like one.
    pub(crate) fn lost(
        id: u64,
        master: &str,
        addr: &Addr,
        cause: Cause,
        why: String,
        latency: Duration,
    ) -> WriteOutcome {
        WriteOutcome {
            id,
            master: master.to_owned(),
            addr: addr.clone(),
            cause,
            target: Err(TargetError::Ec2(task_failed("ReplaceRoute", why))),
            tables: Vec::new(),
            verified: None,
            latency,
            write_time: Duration::ZERO,
        }
    }

    /// Every table answered and reads back pointing at the target.
    pub(crate) fn ok(&self) -> bool {
        let Ok(target) = &self.target else {
            return false;
        };
        self.tables.iter().all(|(_, r)| r.is_ok())
            && self.verified.as_ref().is_some_and(|v| {
                self.tables
                    .iter()
                    .all(|(t, _)| v.get(t).is_some_and(|r| r.points_at(target)))
            })
    }

    /// The outcome as alerts quote it.
    pub(crate) fn report(&self) -> RouteReport {
        let ok = self.ok();
        RouteReport {
            master: self.master.clone(),
            addr: self.addr.to_string(),
            ok,
            target: self
                .target
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_default(),
            tables_written: self.written(),
            tables_total: self.tables.len(),
            carriers: self
                .carrier_results()
                .into_iter()
                .zip(&self.tables)
                .filter(|(_, (c, _))| c.route_table().is_none())
                .map(|((_, result), (c, _))| format!("{c} {result}"))
                .collect(),
            latency_ms: self.latency.as_secs_f64() * 1e3,
            error: (!ok).then(|| self.describe_failure()),
        }
    }

    /// Each carrier's kind and result, in order: `written` (and read back so),
    /// `already_right`, `read_back_wrong` (written, but the read-back shows
    /// another holder) or `failed`.
    pub(crate) fn carrier_results(&self) -> Vec<(&'static str, &'static str)> {
        self.tables
            .iter()
            .map(|(c, r)| {
                let result = match r {
                    Err(_) => "failed",
                    Ok(false) => "already_right",
                    Ok(true) => match (&self.target, &self.verified) {
                        (Ok(t), Some(v)) if v.get(c).is_some_and(|h| h.points_at(t)) => "written",
                        _ => "read_back_wrong",
                    },
                };
                (c.kind(), result)
            })
            .collect()
    }

    pub(crate) fn written(&self) -> usize {
        self.tables
            .iter()
            .filter(|(_, r)| matches!(r, Ok(true)))
            .count()
    }

    pub(crate) fn describe_failure(&self) -> String {
        match &self.target {
            Err(e) => e.to_string(),
            Ok(_) => {
                let errs: Vec<String> = self
                    .tables
                    .iter()
                    .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("{t}: {e}")))
                    .collect();
                if errs.is_empty() {
                    "route did not read back as written".into()
                } else {
                    errs.join("; ")
                }
            }
        }
    }

    /// Whether EC2 said the target is gone (`InvalidNetworkInterfaceID.NotFound`,
    /// ...), or a written route reads back as a blackhole or another target:
    /// the address must be looked up again. Only the last read-back is judged
    /// (reads lag behind writes).
    pub(crate) fn target_gone(&self) -> bool {
        let refused = self
            .tables
            .iter()
            .any(|(_, r)| r.as_ref().err().is_some_and(Ec2Error::is_target_gone));
        let reads_wrong = match (&self.target, &self.verified) {
            (Ok(t), Some(v)) => self.tables.iter().any(|(tb, r)| {
                matches!(r, Ok(true)) && v.get(tb).is_some_and(|c| c.shows_target_gone(t))
            }),
            _ => false,
        };
        refused || reads_wrong
    }

    /// Whether every failure is one that retrying soon cannot fix (permission,
    /// a static map that lacks the node): alerted and retried at the interval.
    pub(crate) fn needs_operator(&self) -> bool {
        use crate::decide::facts::ErrorClass;
        let class_needs_operator =
            |c: ErrorClass| matches!(c, ErrorClass::Permission | ErrorClass::NotFound);
        match &self.target {
            Err(TargetError::NotInNodes { .. }) => true,
            Err(TargetError::Ec2(e)) => class_needs_operator(e.class),
            Err(TargetError::NotFound(_) | TargetError::Unresolved { .. }) => false,
            Ok(_) => {
                let errs: Vec<&Ec2Error> = self
                    .tables
                    .iter()
                    .filter_map(|(_, r)| r.as_ref().err())
                    .collect();
                !errs.is_empty() && errs.iter().all(|e| class_needs_operator(e.class))
            }
        }
    }
}

/// The error a read or write task reports when it panicked or hung past its
/// deadline: transient, so it is retried.
fn task_failed(operation: &'static str, why: String) -> Ec2Error {
    Ec2Error {
        operation,
        subject: "sentinel-vip task".into(),
        class: crate::decide::facts::ErrorClass::Transient,
        code: None,
        message: why,
    }
}
