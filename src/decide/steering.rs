//! Decide: where every master's VIP route should point, as a pure state machine.
//!
//! Sans-I/O in the quinn-proto sense: [`Steering`] is driven by inputs and time
//! (`handle(now, input)`, `handle_timeout(now)`) and answers with [`Action`]s
//! (start a majority read, start a route write, send an alert) that the async
//! driver (`controller.rs`) carries out. It never reads the clock, draws
//! randomness from the OS, spawns or awaits: every rule below is table-tested in
//! this file without sockets.
//!
//! **Architecture Invariant:** events are hints, the sentinels' majority is the
//! truth.
//! - A `+switch-master` is applied at once (fast path) only when it starts from
//!   where the VIP is (or is heading) *and* its new address is a replica the
//!   sentinels last reported for that master. Anything else (late, duplicated,
//!   forged, after a missed failover, to an unknown node) asks for a majority read.
//! - After a fast-path write the switch is *unconfirmed*: the majority is read
//!   again every [`CONFIRM_EVERY`] until a majority names the same address
//!   (confirmed) or another one (reverted at once). Still unconfirmed after
//!   [`UNCONFIRMED_ALERT_AFTER`]: alerted, and `/readyz` fails until confirmed.
//! - A majority read that started before a fast-path write does not judge that
//!   master (it may predate the failover); a fresh read follows.
//! - A majority at a config-epoch *lower* than the last one applied (sentinels
//!   re-monitored or restarted without their `sentinel.conf`) is accepted when two
//!   consecutive reads agree on it; it is logged and alerted, never ignored forever.
//! - Without a majority nothing changes: the last good route stays, and it is said.
//! - At most one route write per master is in flight; a newer wish waits in
//!   `queued` and supersedes older queued ones.
//! - Every read and write that is started ends in a `ReadDone`/`WriteDone` (the
//!   driver supervises the tasks), so `read_running`/`in_flight` never stay set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::config::{Config, MasterConfig, RouteTableId, Target};
use crate::decide::facts::TargetError;
use crate::decide::facts::{Ec2Error, TableReads};
use crate::decide::fold::{AlertInput, RouteReport};
use crate::decide::plan::{plan, CurrentRoute, RouteAction};
use crate::decide::quorum::{self, Answer, Verdict};
use crate::ops::status::{MasterStatus, TableStatus};
use crate::watch::event::{Addr, Event, Role};
use crate::watch::{SentinelId, REFUSED_PREFIX};

/// First confirming read after a fast-path switch (the other sentinels usually
/// learn the new configuration from the leader's hello within a second or two).
pub const CONFIRM_FIRST: Duration = Duration::from_millis(500);
/// Then the majority is read this often until the switch is confirmed or reverted.
pub const CONFIRM_EVERY: Duration = Duration::from_millis(1500);
/// A fast-path switch still unconfirmed after this is alerted and fails `/readyz`.
pub const UNCONFIRMED_ALERT_AFTER: Duration = Duration::from_secs(10);
/// A majority at a lower config-epoch is read again this soon to see it twice.
pub const EPOCH_BACK_RECHECK: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failed route write or EC2 read.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Why a route write was started (for logs, metrics and alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    SwitchEvent,
    Reconcile,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::SwitchEvent => "+switch-master",
            Cause::Reconcile => "reconcile",
        }
    }
}

/// Everything the decision core reacts to (besides time).
#[derive(Debug)]
pub enum Input {
    /// A parsed sentinel event from the watcher of sentinel `sentinel`, received at `at`.
    Event {
        sentinel: SentinelId,
        event: Event,
        at: Instant,
    },
    /// The pub/sub link to this sentinel is (again) up: pub/sub lost what was
    /// published meanwhile, so the majority is read.
    Connected(SentinelId),
    Disconnected(SentinelId, String),
    /// Read the majority now (start-up, SIGHUP, on demand).
    ReadRequested(&'static str),
    ReadDone(Box<ReadOutcome>),
    WriteDone(Box<WriteOutcome>),
}

/// What the driver must do.
#[derive(Debug)]
pub enum Action {
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
pub struct WriteOrder {
    pub master: String,
    pub cfg: MasterConfig,
    pub addr: Addr,
    pub cause: Cause,
    /// When the triggering event (or decision) happened, for the latency figure.
    pub at: Instant,
    /// Routes as last known, so tables that are already right are not written.
    pub known: HashMap<RouteTableId, CurrentRoute>,
}

/// Result of one majority read plus route table read.
#[derive(Debug)]
pub struct ReadOutcome {
    /// Sequence number given in [`Action::StartRead`].
    pub seq: u64,
    /// Per master: one answer per configured sentinel, in configured order.
    pub answers: HashMap<String, Vec<Answer>>,
    /// Every configured table: its read, or why it could not be read (a table
    /// that is gone is an error of its own, never silently absent). The outer
    /// error is a failure of the whole call (network, permission).
    pub tables: Result<TableReads, Ec2Error>,
    /// Targets known without I/O (static `nodes` or the discovery cache) for the
    /// addresses the sentinels named, per master.
    pub targets: HashMap<String, HashMap<Addr, Result<Target, TargetError>>>,
    pub sentinels_answering: usize,
    pub took: Duration,
}

impl ReadOutcome {
    /// A read that could not be carried out at all (panicked or hung): every
    /// sentinel counts as unreachable and EC2 as unreadable.
    pub fn failed(seq: u64, why: String, took: Duration) -> ReadOutcome {
        ReadOutcome {
            seq,
            answers: HashMap::new(),
            tables: Err(task_failed("DescribeRouteTables", why)),
            targets: HashMap::new(),
            sentinels_answering: 0,
            took,
        }
    }
}

/// Result of one route write (all tables of one master).
#[derive(Debug)]
pub struct WriteOutcome {
    pub master: String,
    pub addr: Addr,
    pub cause: Cause,
    pub target: Result<Target, TargetError>,
    /// Per table: Ok(true) written, Ok(false) already right, Err why not.
    pub tables: Vec<(RouteTableId, Result<bool, Ec2Error>)>,
    /// Routes read back after the write.
    pub verified: Option<HashMap<RouteTableId, CurrentRoute>>,
    /// From the triggering event (or decision) to all writes answered.
    pub latency: Duration,
    pub write_time: Duration,
}

impl WriteOutcome {
    /// A write that could not be carried out (its task panicked or hung).
    pub fn failed(order: &WriteOrder, why: String, latency: Duration) -> WriteOutcome {
        WriteOutcome {
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

    /// Every table answered and reads back pointing at the target.
    pub fn ok(&self) -> bool {
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
    pub fn report(&self) -> RouteReport {
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
            latency_ms: self.latency.as_secs_f64() * 1e3,
            error: (!ok).then(|| self.describe_failure()),
        }
    }

    pub fn written(&self) -> usize {
        self.tables
            .iter()
            .filter(|(_, r)| matches!(r, Ok(true)))
            .count()
    }

    pub fn describe_failure(&self) -> String {
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
    pub fn target_gone(&self) -> bool {
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
    pub fn needs_operator(&self) -> bool {
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

/// A fast-path switch that no majority read has confirmed yet.
#[derive(Debug, Clone)]
struct Unconfirmed {
    addr: Addr,
    since: Instant,
    next_read: Instant,
    alerted: bool,
}

/// One master's state.
#[derive(Debug)]
struct MasterState {
    cfg: MasterConfig,
    /// Last known route per table (read, or written and verified).
    routes: HashMap<RouteTableId, CurrentRoute>,
    /// The address the routes were last verified to point at.
    applied: Option<Addr>,
    /// Last accepted majority verdict and its config-epoch.
    majority: Option<(Addr, u64)>,
    /// A majority at a lower epoch than `majority`, seen once: seen again in the
    /// next read, it is accepted.
    epoch_back: Option<(Addr, u64)>,
    /// Replicas the sentinels last reported (read, plus `+slave`-like events).
    replicas: BTreeSet<Addr>,
    no_majority: bool,
    in_flight: Option<Addr>,
    queued: Option<(Addr, Cause, Instant)>,
    /// Read sequence at which the last fast-path write started: reads that began
    /// at or before it do not judge this master.
    changed_seq: u64,
    unconfirmed: Option<Unconfirmed>,
    failures: u32,
    /// When to read again after a failed write (transient errors only).
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// A route table listed in the config that EC2 does not have.
    missing_tables: Vec<RouteTableId>,
}

impl MasterState {
    fn new(cfg: MasterConfig) -> MasterState {
        MasterState {
            cfg,
            routes: HashMap::new(),
            applied: None,
            majority: None,
            epoch_back: None,
            replicas: BTreeSet::new(),
            no_majority: false,
            in_flight: None,
            queued: None,
            changed_seq: 0,
            unconfirmed: None,
            failures: 0,
            retry_at: None,
            last_error: None,
            missing_tables: Vec::new(),
        }
    }

    /// Where the VIP is, or is on its way to.
    fn heading_to(&self) -> Option<&Addr> {
        self.queued
            .as_ref()
            .map(|q| &q.0)
            .or(self.in_flight.as_ref())
            .or(self.applied.as_ref())
    }
}

/// The decision core: every master's state, the read scheduler, EC2 health.
pub struct Steering {
    interval: Duration,
    /// Configured sentinels' addresses, for log lines (index = [`SentinelId`]).
    sentinels: Vec<String>,
    masters: BTreeMap<String, MasterState>,
    seq: u64,
    read_running: bool,
    read_pending: Option<&'static str>,
    next_interval_read: Instant,
    /// Earliest extra read asked for by a rule (retry, epoch recheck).
    read_at: Option<(Instant, &'static str)>,
    connected: Vec<bool>,
    /// Per sentinel: why it refuses our subscription (ACL), while it does.
    refused: Vec<Option<String>>,
    ec2_down: bool,
    ec2_failures: u32,
    last_read_ok: bool,
    rng: u64,
}

impl Steering {
    /// `seed` feeds the retry jitter (pass a random one; tests pass a constant).
    pub fn new(cfg: &Config, now: Instant, seed: u64) -> Steering {
        Steering {
            interval: cfg.reconcile.interval,
            sentinels: cfg.sentinels.iter().map(|s| s.to_string()).collect(),
            masters: cfg
                .masters
                .iter()
                .map(|(n, m)| (n.clone(), MasterState::new(m.clone())))
                .collect(),
            seq: 0,
            read_running: false,
            read_pending: None,
            next_interval_read: now + cfg.reconcile.interval,
            read_at: None,
            connected: vec![false; cfg.sentinels.len()],
            refused: vec![None; cfg.sentinels.len()],
            ec2_down: false,
            ec2_failures: 0,
            last_read_ok: false,
            rng: seed | 1,
        }
    }

    /// Configured sentinel count: the majority is counted over it.
    fn configured(&self) -> usize {
        self.sentinels.len()
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Event {
                sentinel,
                event,
                at,
            } => self.on_event(now, sentinel, event, at, &mut out),
            Input::Connected(id) => {
                self.set_connected(id, true);
                self.set_refused(id, None, &mut out);
                self.request_read("sentinel connected", &mut out);
            }
            Input::Disconnected(id, why) => {
                self.set_connected(id, false);
                if why.starts_with(REFUSED_PREFIX) {
                    self.set_refused(id, Some(why), &mut out);
                }
            }
            Input::ReadRequested(why) => self.request_read(why, &mut out),
            Input::ReadDone(o) => self.on_read(now, *o, &mut out),
            Input::WriteDone(w) => self.on_write_done(now, *w, &mut out),
        }
        out
    }

    /// Takes a reloaded config in place: masters whose config is unchanged keep
    /// all their state; a changed master keeps its decision state but forgets
    /// its routes (they are read again); new masters start fresh, removed ones
    /// are dropped. A changed sentinel list resets the link states. Any read
    /// running now was started under the old config and does not judge.
    pub fn reconfigure(&mut self, now: Instant, cfg: &Config) -> Vec<Action> {
        let mut out = Vec::new();
        self.interval = cfg.reconcile.interval;
        self.next_interval_read = self.next_interval_read.min(now + self.interval);
        let sentinels: Vec<String> = cfg.sentinels.iter().map(|s| s.to_string()).collect();
        if sentinels != self.sentinels {
            self.connected = vec![false; sentinels.len()];
            self.refused = vec![None; sentinels.len()];
            self.sentinels = sentinels;
        }
        let mut masters = BTreeMap::new();
        for (name, m) in &cfg.masters {
            let st = match self.masters.remove(name) {
                Some(mut st) => {
                    // MasterConfig holds no secrets: its Debug form is its identity.
                    if format!("{:?}", st.cfg) != format!("{m:?}") {
                        info!(master = %name, "master's config changed: its routes are read again");
                        st.cfg = m.clone();
                        st.routes.clear();
                        st.missing_tables.clear();
                        st.applied = None;
                    }
                    st
                }
                None => MasterState::new(m.clone()),
            };
            masters.insert(name.clone(), st);
        }
        for name in self.masters.keys() {
            info!(master = %name, "master removed from the config: no longer watched");
        }
        self.masters = masters;
        for st in self.masters.values_mut() {
            st.changed_seq = self.seq;
        }
        self.request_read("reload", &mut out);
        out
    }

    /// Fires whatever is due at `now` (interval reads, confirmations, retries,
    /// the unconfirmed-switch alert).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let mut why = None;
        if now >= self.next_interval_read {
            self.next_interval_read = now + self.interval;
            why = Some("interval");
        }
        if let Some((at, w)) = self.read_at {
            if now >= at {
                self.read_at = None;
                why = why.or(Some(w));
            }
        }
        for (name, st) in self.masters.iter_mut() {
            if st.retry_at.is_some_and(|at| now >= at) {
                st.retry_at = None;
                why = why.or(Some("retry failed route write"));
            }
            if let Some(u) = st.unconfirmed.as_mut() {
                if now >= u.next_read {
                    u.next_read = now + CONFIRM_EVERY;
                    why = why.or(Some("confirm switch"));
                }
                if !u.alerted && now.duration_since(u.since) >= UNCONFIRMED_ALERT_AFTER {
                    u.alerted = true;
                    let secs = now.duration_since(u.since).as_secs();
                    error!(master = %name, addr = %u.addr, secs,
                        "VIP moved on a +switch-master that no sentinel majority has confirmed yet");
                    out.push(Action::Alert(AlertInput::Majority {
                        master: name.clone(),
                        ok: false,
                        detail: format!(
                            "VIP moved on an unconfirmed switch to {}: no sentinel majority has confirmed it for {secs} s",
                            u.addr
                        ),
                    }));
                }
            }
        }
        if let Some(why) = why {
            self.request_read(why, &mut out);
        }
        out
    }

    /// When [`Steering::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_interval_read;
        if let Some((at, _)) = self.read_at {
            t = t.min(at);
        }
        for st in self.masters.values() {
            if let Some(at) = st.retry_at {
                t = t.min(at);
            }
            if let Some(u) = &st.unconfirmed {
                t = t.min(u.next_read);
                if !u.alerted {
                    t = t.min(u.since + UNCONFIRMED_ALERT_AFTER);
                }
            }
        }
        t
    }

    /// Whether any route write is in flight (shutdown waits for them).
    pub fn writes_in_flight(&self) -> bool {
        self.masters.values().any(|m| m.in_flight.is_some())
    }

    /// Marks the in-flight write of `master` as done without an outcome (shutdown).
    pub fn forget_write(&mut self, master: &str) {
        if let Some(st) = self.masters.get_mut(master) {
            st.in_flight = None;
            st.queued = None;
        }
    }

    pub fn connected_count(&self) -> usize {
        self.connected.iter().filter(|c| **c).count()
    }

    pub fn last_read_ok(&self) -> bool {
        self.last_read_ok
    }

    /// Masters whose VIP has no majority behind it, for metrics.
    pub fn no_majority(&self) -> impl Iterator<Item = (&str, bool)> {
        self.masters
            .iter()
            .map(|(n, st)| (n.as_str(), st.no_majority))
    }

    /// The per-master part of `/status`, at `now`.
    pub fn status(&self, now: Instant) -> Vec<MasterStatus> {
        self.masters
            .iter()
            .map(|(name, st)| MasterStatus {
                name: name.clone(),
                vip: st.cfg.vip.to_string(),
                majority: st.majority.as_ref().map(|(a, _)| a.to_string()),
                config_epoch: st.majority.as_ref().map(|(_, e)| *e),
                applied: st.applied.as_ref().map(|a| a.to_string()),
                writing: st.in_flight.as_ref().map(|a| a.to_string()),
                no_majority: st.no_majority,
                unconfirmed: st.unconfirmed.as_ref().map(|u| u.addr.to_string()),
                unconfirmed_too_long: st
                    .unconfirmed
                    .as_ref()
                    .is_some_and(|u| now.duration_since(u.since) >= UNCONFIRMED_ALERT_AFTER),
                last_error: st.last_error.clone().or_else(|| {
                    (!st.missing_tables.is_empty()).then(|| missing_text(&st.missing_tables))
                }),
                tables: st
                    .cfg
                    .route_tables
                    .iter()
                    .map(|t| TableStatus {
                        id: t.to_string(),
                        route: if st.missing_tables.contains(t) {
                            "table-not-found".into()
                        } else {
                            st.routes
                                .get(t)
                                .map(|r| r.describe())
                                .unwrap_or_else(|| "unknown".into())
                        },
                    })
                    .collect(),
            })
            .collect()
    }

    /// Sentinels refusing our subscription, with why (`/readyz` fails while any does).
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .iter()
            .zip(&self.sentinels)
            .filter_map(|(r, s)| r.as_ref().map(|why| format!("{s}: {why}")))
            .collect()
    }

    fn set_refused(&mut self, id: SentinelId, why: Option<String>, out: &mut Vec<Action>) {
        let Some(slot) = self.refused.get_mut(id) else {
            return;
        };
        if slot.is_some() == why.is_some() {
            *slot = why;
            return;
        }
        let sentinel = self.sentinels.get(id).cloned().unwrap_or_default();
        out.push(Action::Alert(AlertInput::SentinelRefused {
            sentinel,
            ok: why.is_none(),
            detail: why.clone().unwrap_or_default(),
        }));
        *slot = why;
    }

    fn set_connected(&mut self, id: SentinelId, up: bool) {
        if let Some(c) = self.connected.get_mut(id) {
            *c = up;
        }
    }

    /// Starts a majority read unless one is running (then one more follows it).
    fn request_read(&mut self, why: &'static str, out: &mut Vec<Action>) {
        if self.read_running {
            self.read_pending.get_or_insert(why);
            return;
        }
        self.read_running = true;
        self.seq += 1;
        debug!(why, seq = self.seq, "majority read");
        out.push(Action::StartRead { seq: self.seq });
    }

    fn read_soon(&mut self, at: Instant, why: &'static str) {
        match self.read_at {
            Some((t, _)) if t <= at => {}
            _ => self.read_at = Some((at, why)),
        }
    }

    fn on_event(
        &mut self,
        now: Instant,
        sentinel: SentinelId,
        event: Event,
        at: Instant,
        out: &mut Vec<Action>,
    ) {
        let from = self
            .sentinels
            .get(sentinel)
            .cloned()
            .unwrap_or_else(|| format!("#{sentinel}"));
        match event {
            Event::Instance { kind, instance, .. } if instance.role == Role::Replica => {
                // Sentinel names every replica it learns or reconfigures: keep the
                // set of plausible switch targets current between reads.
                if matches!(
                    kind,
                    "+slave" | "+promoted-slave" | "+convert-to-slave" | "+slave-reconf-done"
                ) {
                    if let Some(st) = self.masters.get_mut(&instance.master) {
                        st.replicas.insert(instance.addr);
                    }
                }
            }
            Event::SwitchMaster { master, old, new } => {
                self.on_switch(now, &from, master, old, new, at, out)
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_switch(
        &mut self,
        now: Instant,
        from: &str,
        master: String,
        old: Addr,
        new: Addr,
        at: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(st) = self.masters.get_mut(&master) else {
            debug!(%master, "ignored +switch-master for a master not in the config");
            return;
        };
        let heading_to = st.heading_to();
        if heading_to == Some(&new) {
            debug!(%master, %new, sentinel = %from, "duplicate +switch-master: VIP already there or on its way");
            return;
        }
        if let Some(vip_on) = heading_to.filter(|h| **h != old) {
            // Late (healed minority), forged, or after a missed failover.
            warn!(%master, %old, %new, %vip_on, sentinel = %from,
                "+switch-master does not start from the VIP's master (late or stale event?); asking the majority");
            self.request_read("unexpected +switch-master", out);
            return;
        }
        if !st.replicas.contains(&new) {
            warn!(%master, %old, %new, sentinel = %from,
                "+switch-master names a node the sentinels did not report as a replica; asking the majority before moving the VIP");
            self.request_read("+switch-master to an unknown node", out);
            return;
        }
        info!(%master, %old, %new, sentinel = %from, "+switch-master: moving the VIP (to be confirmed by the majority)");
        st.changed_seq = self.seq;
        st.unconfirmed = Some(Unconfirmed {
            addr: new.clone(),
            since: now,
            next_read: now + CONFIRM_FIRST,
            alerted: false,
        });
        st.replicas.remove(&new);
        st.replicas.insert(old);
        self.dispatch(&master, new, Cause::SwitchEvent, at, out);
    }

    /// Starts (or queues) a route write for `master` towards `addr`.
    fn dispatch(
        &mut self,
        master: &str,
        addr: Addr,
        cause: Cause,
        at: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(st) = self.masters.get_mut(master) else {
            return;
        };
        if st.in_flight.is_some() {
            st.queued = Some((addr, cause, at));
            return;
        }
        st.in_flight = Some(addr.clone());
        out.push(Action::StartWrite(WriteOrder {
            master: master.to_owned(),
            cfg: st.cfg.clone(),
            addr,
            cause,
            at,
            known: st.routes.clone(),
        }));
    }

    fn on_write_done(&mut self, now: Instant, w: WriteOutcome, out: &mut Vec<Action>) {
        let ok = w.ok();
        let report = w.report();
        out.push(Action::Alert(AlertInput::Route(report)));
        let jitter = self.next_jitter();
        let Some(st) = self.masters.get_mut(&w.master) else {
            return;
        };
        st.in_flight = None;
        if let Some(v) = &w.verified {
            for (t, r) in v {
                st.routes.insert(t.clone(), r.clone());
            }
        }
        if ok {
            st.applied = Some(w.addr.clone());
            st.failures = 0;
            st.retry_at = None;
            st.last_error = None;
        } else {
            st.failures += 1;
            st.last_error = Some(w.describe_failure());
            // The routes may be anything now: read them before judging again.
            if w.verified.is_none() {
                for (t, _) in &w.tables {
                    st.routes.remove(t);
                }
            }
            // Transient failures: retry with backoff (each retry is a fresh
            // majority read). Permission / not-found need an operator: alerted and
            // retried at the interval.
            if w.target_gone() {
                // The driver evicted the cached target: look again right away.
                st.retry_at = Some(now);
            } else if st.queued.is_none() && !w.needs_operator() {
                st.retry_at = Some(now + retry_delay(st.failures, jitter));
            }
        }
        if let Some((addr, cause, at)) = st.queued.take() {
            self.dispatch(&w.master, addr, cause, at, out);
        }
    }

    /// A jitter factor in 0.85..1.15 for retry delays.
    fn next_jitter(&mut self) -> f64 {
        // xorshift64: deterministic under a fixed seed, good enough for jitter.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        0.85 + (x % 1000) as f64 / 1000.0 * 0.3
    }

    fn on_read(&mut self, now: Instant, o: ReadOutcome, out: &mut Vec<Action>) {
        self.read_running = false;
        let mut ok = self.judge_ec2(now, &o, out);
        let mut again = false;
        let configured = self.configured();
        let names: Vec<String> = self.masters.keys().cloned().collect();
        for name in names {
            match self.judge_master(now, &name, &o, configured, out) {
                Judged::Ok => {}
                Judged::Failed => ok = false,
                Judged::ReadAgain => again = true,
                Judged::RecheckAt(at) => {
                    ok = false;
                    self.read_soon(at, "config-epoch went back");
                }
            }
        }
        self.last_read_ok = ok;
        let pending = self.read_pending.take();
        if again {
            self.request_read("follow-up", out);
        } else if let Some(why) = pending {
            self.request_read(why, out);
        }
    }

    /// EC2's side of a read: health transitions and retry of a failed read.
    /// Returns whether the tables could be read.
    fn judge_ec2(&mut self, now: Instant, o: &ReadOutcome, out: &mut Vec<Action>) -> bool {
        match &o.tables {
            Err(e) => {
                self.ec2_failures += 1;
                let jitter = self.next_jitter();
                let delay = retry_delay(self.ec2_failures, jitter);
                error!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot read the route tables; routes left as they are");
                self.read_soon(now + delay, "retry EC2 read");
            }
            Ok(_) => self.ec2_failures = 0,
        }
        let down = o.tables.is_err();
        if down != self.ec2_down {
            self.ec2_down = down;
            out.push(Action::Alert(AlertInput::Ec2 {
                ok: !down,
                detail: o
                    .tables
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            }));
        }
        !down
    }

    fn judge_master(
        &mut self,
        now: Instant,
        name: &str,
        o: &ReadOutcome,
        configured: usize,
        out: &mut Vec<Action>,
    ) -> Judged {
        let Some(st) = self.masters.get_mut(name) else {
            return Judged::Ok;
        };
        if st.changed_seq >= o.seq {
            // The read may predate a switch applied since: judge with a fresh one.
            return Judged::ReadAgain;
        }
        let mut result = Judged::Ok;
        // Route tables as read.
        if let Ok(tables) = &o.tables {
            st.missing_tables.clear();
            let mut why = Vec::new();
            for t in &st.cfg.route_tables {
                match tables.get(t) {
                    Some(Ok(read)) => {
                        st.routes.insert(t.clone(), read.route(&st.cfg.vip.0));
                    }
                    Some(Err(e)) => {
                        // Never judge from a stale cache what cannot be read now.
                        st.routes.remove(t);
                        st.missing_tables.push(t.clone());
                        why.push(e.to_string());
                    }
                    None => {
                        st.routes.remove(t);
                        st.missing_tables.push(t.clone());
                        why.push(format!("{t}: not in EC2's answer"));
                    }
                }
            }
            if !st.missing_tables.is_empty() {
                error!(master = %name, tables = %missing_text(&st.missing_tables), error = %why.join("; "),
                    "route table cannot be read (deleted, another account or region, or a typo in masters.{name}.route_tables)");
                result = Judged::Failed;
            }
        }
        let empty = Vec::new();
        let answers = o.answers.get(name).unwrap_or(&empty);
        // Replicas every answering sentinel knows: plausible fast-path targets.
        let known: BTreeSet<Addr> = answers
            .iter()
            .filter_map(|a| match a {
                Answer::View(v) => Some(v.replicas.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect();
        if !known.is_empty() {
            st.replicas = known;
        }
        match quorum::decide(answers, configured) {
            Verdict::Master {
                addr,
                config_epoch,
                votes,
                ..
            } => {
                if let Some((last_addr, last_epoch)) = st.majority.clone() {
                    if config_epoch < last_epoch {
                        let lower: Vec<&str> = answers
                            .iter()
                            .enumerate()
                            .filter(|(_, a)| matches!(a, Answer::View(v) if v.config_epoch < last_epoch))
                            .filter_map(|(i, _)| self.sentinels.get(i).map(|s| s.as_str()))
                            .collect();
                        if st.epoch_back.as_ref() != Some(&(addr.clone(), config_epoch)) {
                            warn!(master = %name, %addr, config_epoch, known = last_epoch, sentinels = %lower.join(","),
                                "majority at a lower config-epoch than the last one applied; reading again to be sure");
                            st.epoch_back = Some((addr, config_epoch));
                            return Judged::RecheckAt(now + EPOCH_BACK_RECHECK);
                        }
                        let detail = format!(
                            "config-epoch went back from {last_epoch} to {config_epoch} on {} (sentinels re-monitored or restarted without their config?); following the majority: {addr} (was {last_addr})",
                            lower.join(", ")
                        );
                        error!(master = %name, "{detail}");
                        out.push(Action::Alert(AlertInput::Majority {
                            master: name.to_owned(),
                            ok: true,
                            detail,
                        }));
                    }
                }
                st.epoch_back = None;
                if st.no_majority {
                    info!(master = %name, %addr, votes, "sentinel majority is back");
                    st.no_majority = false;
                    out.push(Action::Alert(AlertInput::Majority {
                        master: name.to_owned(),
                        ok: true,
                        detail: format!("{votes} sentinels agree on {addr}"),
                    }));
                }
                st.majority = Some((addr.clone(), config_epoch));
                if let Some(u) = st.unconfirmed.take() {
                    let waited_ms = now.duration_since(u.since).as_secs_f64() * 1e3;
                    if u.addr == addr {
                        info!(master = %name, %addr, config_epoch, votes, waited_ms, "switch confirmed by the sentinel majority");
                    } else {
                        error!(master = %name, switched_to = %u.addr, majority = %addr, config_epoch, votes, waited_ms,
                            "the sentinel majority names another master than the +switch-master did: moving the VIP back");
                    }
                    if u.alerted {
                        out.push(Action::Alert(AlertInput::Majority {
                            master: name.to_owned(),
                            ok: true,
                            detail: format!(
                                "{votes} sentinels agree on {addr} (config-epoch {config_epoch})"
                            ),
                        }));
                    }
                }
                if o.tables.is_err() {
                    return result;
                }
                if let Some(flying) = st.in_flight.clone() {
                    // The write reads its own result back; only a different
                    // wish needs queueing.
                    if flying != addr {
                        self.dispatch(name, addr, Cause::Reconcile, now, out);
                    }
                    return result;
                }
                let target = o.targets.get(name).and_then(|t| t.get(&addr)).cloned();
                match target {
                    Some(Ok(target)) => {
                        let wrong: Vec<String> = st
                            .cfg
                            .route_tables
                            .iter()
                            .filter(|t| !st.missing_tables.contains(t))
                            .filter_map(|t| {
                                let r = st.routes.get(t)?;
                                (plan(r, &target) != RouteAction::Keep)
                                    .then(|| format!("{t}={}", r.describe()))
                            })
                            .collect();
                        if wrong.is_empty() {
                            if st.applied.as_ref() != Some(&addr) {
                                info!(master = %name, %addr, %target, "VIP route already right in every table");
                            }
                            if st.failures > 0 || st.last_error.is_some() {
                                // A failed write is open: the route is right
                                // after all (another watcher fixed it, or the
                                // read-back was slow), so the failure resolves.
                                out.push(Action::Alert(AlertInput::RouteVerified {
                                    master: name.to_owned(),
                                    addr: addr.to_string(),
                                    target: target.to_string(),
                                }));
                            }
                            st.applied = Some(addr);
                            if st.missing_tables.is_empty() {
                                st.last_error = None;
                                st.failures = 0;
                                st.retry_at = None;
                            }
                        } else {
                            warn!(master = %name, %addr, %target, routes = %wrong.join(","),
                                "VIP route drifted from the majority's master; repairing");
                            self.dispatch(name, addr, Cause::Reconcile, now, out);
                        }
                    }
                    Some(Err(e)) => {
                        error!(master = %name, %addr, error = %e, "cannot map the master to an EC2 target");
                        st.last_error = Some(e.to_string());
                        result = Judged::Failed;
                    }
                    None => self.dispatch(name, addr, Cause::Reconcile, now, out),
                }
                result
            }
            Verdict::NoMajority {
                usable,
                best,
                needed,
            } => {
                st.epoch_back = None;
                if !st.no_majority {
                    let best = best
                        .map(|(a, v)| format!("{a} ({v} votes)"))
                        .unwrap_or_else(|| "none".into());
                    error!(master = %name, usable, needed, best = %best,
                        "no sentinel majority for this master: VIP route kept where it is");
                    st.no_majority = true;
                    out.push(Action::Alert(AlertInput::Majority {
                        master: name.to_owned(),
                        ok: false,
                        detail: format!("{usable} of {configured} sentinels usable, {needed} needed; best candidate {best}"),
                    }));
                }
                Judged::Failed
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

/// How one master came out of a read.
enum Judged {
    Ok,
    Failed,
    /// The read predates a switch: judge with a fresh one.
    ReadAgain,
    /// Not judged yet (a majority at a lower epoch, seen once): read again at.
    RecheckAt(Instant),
}

fn missing_text(tables: &[RouteTableId]) -> String {
    let ids: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    format!(
        "route table {} not found in EC2 (or not readable)",
        ids.join(", ")
    )
}

/// Backoff for the `failures`-th consecutive failure: 0.5 s doubling, capped at
/// [`MAX_RETRY_DELAY`], times `jitter`.
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(failures.saturating_sub(1).min(6));
    base.min(MAX_RETRY_DELAY).mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    //! The decision rules as scenarios: inputs at injected times, expected actions.
    use super::*;
    use crate::decide::facts::TableRead;
    use crate::watch::MasterView;

    const A: &str = "10.0.1.10";
    const B: &str = "10.0.1.11";
    const C: &str = "10.0.1.12";
    const X: &str = "10.0.9.99";

    fn cfg() -> Config {
        Config::parse(&format!(
            r#"
sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]
masters:
  m:
    vip: 172.16.0.10/32
    route_tables: [rtb-1, rtb-2]
    nodes:
      "{A}:6379": {{ network_interface_id: eni-a }}
      "{B}:6379": {{ network_interface_id: eni-b }}
      "{C}:6379": {{ network_interface_id: eni-c }}
reconcile:
  interval: 30s
"#
        ))
        .expect("test config parses")
    }

    fn addr(h: &str) -> Addr {
        Addr::new(h, 6379)
    }

    fn eni(h: &str) -> &'static str {
        match h {
            A => "eni-a",
            B => "eni-b",
            C => "eni-c",
            _ => "eni-unknown",
        }
    }

    /// A sentinel's view: master `h` at `epoch`, the other rig nodes as replicas.
    fn view(h: &str, epoch: u64) -> Answer {
        Answer::View(MasterView {
            addr: addr(h),
            config_epoch: epoch,
            flags: "master".into(),
            replicas: [A, B, C]
                .iter()
                .filter(|r| **r != h)
                .map(|r| addr(r))
                .collect(),
        })
    }

    /// The route tables as EC2 would answer: both pointing at `on`'s ENI.
    fn tables(on: Option<&str>) -> HashMap<RouteTableId, TableRead> {
        plain_tables(on)
    }

    fn table_reads(on: Option<&str>) -> TableReads {
        plain_tables(on)
            .into_iter()
            .map(|(t, r)| (t, Ok(r)))
            .collect()
    }

    fn plain_tables(on: Option<&str>) -> HashMap<RouteTableId, TableRead> {
        let cfg = cfg();
        let vip = cfg.masters["m"].vip.0;
        cfg.masters["m"]
            .route_tables
            .iter()
            .map(|t| {
                let routes = on
                    .map(|h| {
                        [(
                            vip,
                            CurrentRoute::Points {
                                instance_id: None,
                                eni_id: Some(eni(h).into()),
                                blackhole: false,
                            },
                        )]
                        .into_iter()
                        .collect()
                    })
                    .unwrap_or_default();
                (
                    t.clone(),
                    TableRead {
                        vpc_id: Some("vpc-1".into()),
                        routes,
                    },
                )
            })
            .collect()
    }

    fn read(seq: u64, answers: Vec<Answer>, vip_on: Option<&str>) -> Input {
        let cfg = cfg();
        let m = &cfg.masters["m"];
        let targets = [A, B, C, X]
            .iter()
            .map(|h| {
                let t = crate::config::static_target(m.nodes.as_ref().expect("nodes"), &addr(h))
                    .ok_or(TargetError::NotInNodes {
                        master: "m".into(),
                        addr: addr(h),
                    });
                (addr(h), t)
            })
            .collect();
        Input::ReadDone(Box::new(ReadOutcome {
            seq,
            answers: [("m".to_owned(), answers)].into_iter().collect(),
            tables: Ok(table_reads(vip_on)),
            targets: [("m".to_owned(), targets)].into_iter().collect(),
            sentinels_answering: 3,
            took: Duration::from_millis(5),
        }))
    }

    fn switch(from: SentinelId, old: &str, new: &str, at: Instant) -> Input {
        Input::Event {
            sentinel: from,
            event: Event::SwitchMaster {
                master: "m".into(),
                old: addr(old),
                new: addr(new),
            },
            at,
        }
    }

    /// The core plus a clock: times are milliseconds since the start.
    struct Sim {
        core: Steering,
        t0: Instant,
    }

    impl Sim {
        fn new() -> Sim {
            let t0 = Instant::now();
            Sim {
                core: Steering::new(&cfg(), t0, 7),
                t0,
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn feed(&mut self, ms: u64, input: Input) -> Vec<Action> {
            self.core.handle(self.at(ms), input)
        }

        fn tick(&mut self, ms: u64) -> Vec<Action> {
            self.core.handle_timeout(self.at(ms))
        }

        /// Start-up: the first read finds master A at epoch 1 and the VIP on A.
        fn started() -> Sim {
            let mut s = Sim::new();
            let a = s.feed(0, Input::ReadRequested("start"));
            assert_eq!(reads(&a), vec![1]);
            let a = s.feed(
                5,
                read(1, vec![view(A, 1), view(A, 1), view(A, 1)], Some(A)),
            );
            assert!(writes(&a).is_empty(), "{a:?}");
            s
        }

        /// Reports the write in `actions` done: verified on its target when `ok`.
        fn complete(&mut self, ms: u64, actions: &[Action], ok: bool) -> Vec<Action> {
            let order = actions
                .iter()
                .find_map(|a| match a {
                    Action::StartWrite(o) => Some(o.clone()),
                    _ => None,
                })
                .expect("a write was started");
            let target = Target::Eni(
                crate::config::EniId::try_from(eni(&order.addr.host).to_owned()).expect("id"),
            );
            let vip = order.cfg.vip.0;
            let verified = ok.then(|| {
                order
                    .cfg
                    .route_tables
                    .iter()
                    .map(|t| (t.clone(), tables(Some(&order.addr.host))[t].route(&vip)))
                    .collect()
            });
            let tables = order
                .cfg
                .route_tables
                .iter()
                .map(|t| {
                    let r = if ok {
                        Ok(true)
                    } else {
                        Err(Ec2Error {
                            operation: "ReplaceRoute",
                            subject: t.to_string(),
                            class: crate::decide::facts::ErrorClass::Transient,
                            code: Some("RequestLimitExceeded".into()),
                            message: "throttled".into(),
                        })
                    };
                    (t.clone(), r)
                })
                .collect();
            self.feed(
                ms,
                Input::WriteDone(Box::new(WriteOutcome {
                    master: order.master,
                    addr: order.addr,
                    cause: order.cause,
                    target: Ok(target),
                    tables,
                    verified,
                    latency: Duration::from_millis(9),
                    write_time: Duration::from_millis(8),
                })),
            )
        }

        fn master(&self) -> MasterStatus {
            self.core.status(self.t0).remove(0)
        }
    }

    fn writes(actions: &[Action]) -> Vec<(String, Cause)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::StartWrite(o) => Some((o.addr.host.clone(), o.cause)),
                _ => None,
            })
            .collect()
    }

    fn reads(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::StartRead { seq } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    /// Majority alerts: (ok, detail).
    fn majority_alerts(actions: &[Action]) -> Vec<(bool, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Alert(AlertInput::Majority { ok, detail, .. }) => {
                    Some((*ok, detail.clone()))
                }
                _ => None,
            })
            .collect()
    }

    // --- sentinel-truth §1: the verdict names the promoted replica during a failover

    #[test]
    fn failover_in_progress_vectors_name_the_promoted_replica() {
        // Views as GET-MASTER-ADDR-BY-NAME gives them (epoch from SENTINEL MASTER).
        // Leader (B, E+1), follower (B, E+1), lagging follower (A, E) → B.
        let v = quorum::decide(&[view(B, 2), view(B, 2), view(A, 1)], 3);
        assert!(
            matches!(v, Verdict::Master { addr: ref got, config_epoch: 2, votes: 2, .. } if *got == addr(B)),
            "{v:?}"
        );
        // The seed's layout: the master's node died with its sentinel; leader and
        // follower agree on B at E+1 → a majority of 3 configured, not a tie.
        let v = quorum::decide(&[Answer::Unreachable, view(B, 2), view(B, 2)], 3);
        assert!(
            matches!(v, Verdict::Master { addr: ref got, votes: 2, .. } if *got == addr(B)),
            "{v:?}"
        );
        // What SENTINEL MASTER said in the same moment (the leader still naming
        // A at E+1) would have been a tie at the top epoch: no majority.
        let v = quorum::decide(&[view(A, 2), view(B, 2), view(A, 1)], 3);
        assert!(!matches!(v, Verdict::Master { addr: ref got, .. } if *got == addr(B)));
    }

    #[test]
    fn confirm_read_during_failover_never_moves_the_vip_back() {
        let mut s = Sim::started();
        let a = s.feed(100, switch(1, A, B, s.at(100)));
        assert_eq!(writes(&a), vec![(B.to_owned(), Cause::SwitchEvent)]);
        s.complete(110, &a, true);
        let a = s.tick(600);
        let seq = reads(&a)[0];
        // Leader and follower at E+1 on B, one lagging at E on A.
        let a = s.feed(
            610,
            read(seq, vec![view(B, 2), view(B, 2), view(A, 1)], Some(B)),
        );
        assert!(writes(&a).is_empty(), "{a:?}");
        assert_eq!(s.master().unconfirmed, None);
        assert_eq!(s.master().majority.as_deref(), Some("10.0.1.11:6379"));
    }

    // --- §2: guard the fast path, confirm until confirmed

    #[test]
    fn fast_path_rules() {
        // (event, expected: write at once?)
        let cases: &[(&str, &str, &str, bool)] = &[
            ("from the VIP's master to a known replica", A, B, true),
            ("to a node no sentinel reported", A, X, false),
            ("not from where the VIP is (late or forged)", C, B, false),
        ];
        for (what, old, new, fast) in cases {
            let mut s = Sim::started();
            let a = s.feed(100, switch(0, old, new, s.at(100)));
            assert_eq!(!writes(&a).is_empty(), *fast, "{what}: {a:?}");
            assert_eq!(reads(&a).len(), usize::from(!*fast), "{what}: {a:?}");
        }
    }

    #[test]
    fn duplicate_switches_from_other_sentinels_are_no_ops() {
        let mut s = Sim::started();
        let a = s.feed(100, switch(0, A, B, s.at(100)));
        assert_eq!(writes(&a).len(), 1);
        for (ms, from) in [(101, 1), (102, 2), (103, 0)] {
            let a = s.feed(ms, switch(from, A, B, s.at(ms)));
            assert!(a.is_empty(), "{a:?}");
        }
        s.complete(110, &a, true);
        let a = s.feed(200, switch(2, A, B, s.at(200)));
        assert!(a.is_empty(), "{a:?}");
    }

    #[test]
    fn replica_learned_from_an_event_is_a_fast_path_target() {
        let mut s = Sim::started();
        let slave =
            crate::watch::event::parse("+slave", &format!("slave {X}:6379 {X} 6379 @ m {A} 6379"))
                .expect("parses");
        s.feed(
            50,
            Input::Event {
                sentinel: 0,
                event: slave,
                at: s.at(50),
            },
        );
        let a = s.feed(100, switch(0, A, X, s.at(100)));
        assert_eq!(writes(&a), vec![(X.to_owned(), Cause::SwitchEvent)]);
    }

    #[test]
    fn read_started_before_the_switch_does_not_judge_it() {
        let mut s = Sim::started();
        let a = s.feed(90, Input::ReadRequested("interval"));
        let before = reads(&a)[0];
        let w = s.feed(100, switch(0, A, B, s.at(100)));
        s.complete(110, &w, true);
        // That read still saw A everywhere: it must not revert, but read again.
        let a = s.feed(
            120,
            read(before, vec![view(A, 1), view(A, 1), view(A, 1)], Some(B)),
        );
        assert!(writes(&a).is_empty(), "{a:?}");
        assert_eq!(reads(&a).len(), 1, "a fresh read follows: {a:?}");
    }

    #[test]
    fn unconfirmed_switch_is_reverted_when_the_majority_names_another_master() {
        let mut s = Sim::started();
        let w = s.feed(100, switch(0, A, B, s.at(100)));
        s.complete(110, &w, true);
        let seq = reads(&s.tick(600))[0];
        let a = s.feed(
            620,
            read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], Some(B)),
        );
        assert_eq!(writes(&a), vec![(A.to_owned(), Cause::Reconcile)]);
        assert_eq!(s.master().unconfirmed, None);
    }

    #[test]
    fn unconfirmed_switch_keeps_being_read_then_alerts_and_fails_readiness() {
        let mut s = Sim::started();
        let w = s.feed(100, switch(0, A, B, s.at(100)));
        s.complete(110, &w, true);
        let mut ms = 600;
        let mut reads_done = 0;
        let mut alerted_at = None;
        // No majority (one sentinel switched, one down, one lagging) for 15 s.
        while ms <= 15_100 {
            let a = s.tick(ms);
            if let Some((false, d)) = majority_alerts(&a).into_iter().next() {
                assert!(d.contains("unconfirmed switch"), "{d}");
                alerted_at.get_or_insert(ms);
            }
            for seq in reads(&a) {
                reads_done += 1;
                let a = s.feed(
                    ms + 5,
                    read(
                        seq,
                        vec![view(B, 2), Answer::Unreachable, view(A, 1)],
                        Some(B),
                    ),
                );
                assert!(
                    writes(&a).is_empty(),
                    "no majority never moves the VIP: {a:?}"
                );
            }
            ms = s.core.poll_timeout().duration_since(s.t0).as_millis() as u64;
        }
        assert!(
            reads_done >= 9,
            "read every 1.5 s while unconfirmed: {reads_done}"
        );
        assert_eq!(alerted_at, Some(10_100));
        let st = s.core.status(s.at(ms)).remove(0);
        assert!(st.unconfirmed_too_long);
        // Then the majority catches up: confirmed, alert resolved, no write.
        let seq = reads(&s.feed(ms, Input::ReadRequested("test")))[0];
        let a = s.feed(
            ms + 5,
            read(seq, vec![view(B, 2), view(B, 2), view(A, 1)], Some(B)),
        );
        assert!(writes(&a).is_empty());
        assert_eq!(
            majority_alerts(&a)
                .into_iter()
                .filter(|(ok, _)| *ok)
                .count(),
            2,
            "{a:?}"
        );
        let st = s.core.status(s.at(ms + 5)).remove(0);
        assert!(!st.unconfirmed_too_long && st.unconfirmed.is_none());
        // And no more confirm reads are scheduled.
        assert!(s.core.poll_timeout() >= s.at(30_000));
    }

    // --- §3: a config-epoch that goes back

    #[test]
    fn epoch_going_back_is_followed_after_two_reads() {
        let mut s = Sim::started();
        // Majority at epoch 5 on A.
        let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
        s.feed(
            110,
            read(seq, vec![view(A, 5), view(A, 5), view(A, 5)], Some(A)),
        );
        // Sentinels re-monitored: all at epoch 0, now naming B.
        let seq = reads(&s.feed(200, Input::ReadRequested("t")))[0];
        let a = s.feed(
            210,
            read(seq, vec![view(B, 0), view(B, 0), view(B, 0)], Some(A)),
        );
        assert!(writes(&a).is_empty(), "one read is not enough: {a:?}");
        // A second read is scheduled soon, and it follows the majority.
        assert_eq!(s.core.poll_timeout(), s.at(210) + EPOCH_BACK_RECHECK);
        let seq = reads(&s.tick(1210))[0];
        let a = s.feed(
            1220,
            read(seq, vec![view(B, 0), view(B, 0), view(B, 0)], Some(A)),
        );
        assert_eq!(writes(&a), vec![(B.to_owned(), Cause::Reconcile)]);
        let alerts = majority_alerts(&a);
        assert!(
            alerts
                .iter()
                .any(|(_, d)| d.contains("config-epoch went back from 5 to 0")),
            "{alerts:?}"
        );
        assert_eq!(s.master().config_epoch, Some(0));
    }

    #[test]
    fn epoch_back_seen_once_then_the_high_epoch_again_is_ignored() {
        let mut s = Sim::started();
        let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
        s.feed(
            110,
            read(seq, vec![view(A, 5), view(A, 5), view(A, 5)], Some(A)),
        );
        let seq = reads(&s.feed(200, Input::ReadRequested("t")))[0];
        s.feed(
            210,
            read(
                seq,
                vec![view(B, 0), view(B, 0), Answer::Unreachable],
                Some(A),
            ),
        );
        let seq = reads(&s.feed(300, Input::ReadRequested("t")))[0];
        s.feed(
            310,
            read(seq, vec![view(A, 5), view(A, 5), view(A, 5)], Some(A)),
        );
        let seq = reads(&s.tick(1300))
            .into_iter()
            .next()
            .unwrap_or_else(|| reads(&s.feed(1300, Input::ReadRequested("t")))[0]);
        let a = s.feed(
            1310,
            read(
                seq,
                vec![view(B, 0), view(B, 0), Answer::Unreachable],
                Some(A),
            ),
        );
        assert!(writes(&a).is_empty(), "not two *consecutive* reads: {a:?}");
    }

    // --- drift, failures, supervision

    #[test]
    fn drift_is_repaired_and_a_right_route_is_left_alone() {
        let cases: &[(Option<&str>, bool)] = &[(Some(A), false), (Some(B), true), (None, true)];
        for (vip_on, write) in cases {
            let mut s = Sim::started();
            let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
            let a = s.feed(
                110,
                read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], *vip_on),
            );
            assert_eq!(!writes(&a).is_empty(), *write, "{vip_on:?}: {a:?}");
        }
    }

    #[test]
    fn failed_write_is_retried_with_backoff_through_a_fresh_read() {
        let mut s = Sim::started();
        let w = s.feed(100, switch(0, A, B, s.at(100)));
        let a = s.complete(110, &w, false);
        assert!(a
            .iter()
            .any(|x| matches!(x, Action::Alert(AlertInput::Route(r)) if !r.ok)));
        let due = s.core.poll_timeout();
        assert!(due <= s.at(110 + 600), "first retry within ~0.5 s");
        let a = s.core.handle_timeout(due);
        assert_eq!(reads(&a).len(), 1);
    }

    #[test]
    fn a_wish_during_a_write_is_queued_and_sent_after_it() {
        let mut s = Sim::started();
        let w = s.feed(100, switch(0, A, B, s.at(100)));
        // A majority read (started after the switch) names C while the write flies.
        let seq = reads(&s.tick(600))[0];
        let a = s.feed(
            610,
            read(seq, vec![view(C, 3), view(C, 3), view(C, 3)], Some(A)),
        );
        assert!(
            writes(&a).is_empty(),
            "one write in flight at a time: {a:?}"
        );
        let a = s.complete(700, &w, true);
        assert_eq!(writes(&a), vec![(C.to_owned(), Cause::Reconcile)]);
    }

    #[test]
    fn a_read_that_never_finished_does_not_wedge_the_scheduler() {
        let mut s = Sim::started();
        let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
        assert!(reads(&s.feed(150, Input::ReadRequested("again"))).is_empty());
        s.feed(
            200,
            Input::ReadDone(Box::new(ReadOutcome::failed(
                seq,
                "the task panicked".into(),
                Duration::ZERO,
            ))),
        );
        // The queued wish runs right away, and later wishes start reads again.
        assert!(!s.core.last_read_ok());
        let a = s.feed(300, Input::ReadRequested("t"));
        assert!(reads(&a).len() <= 1);
    }

    #[test]
    fn missing_route_table_is_an_error_not_already_right() {
        let mut s = Sim::started();
        let seq = reads(&s.feed(100, Input::ReadRequested("t")))[0];
        let Input::ReadDone(mut o) = read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], Some(A))
        else {
            unreachable!()
        };
        if let Ok(t) = o.tables.as_mut() {
            let id = RouteTableId::try_from("rtb-2".to_owned()).expect("id");
            t.insert(
                id.clone(),
                Err(Ec2Error {
                    operation: "DescribeRouteTables",
                    subject: id.to_string(),
                    class: crate::decide::facts::ErrorClass::NotFound,
                    code: Some("InvalidRouteTableID.NotFound".into()),
                    message: "The routeTable ID 'rtb-2' does not exist".into(),
                }),
            );
        }
        s.feed(110, Input::ReadDone(o));
        assert!(!s.core.last_read_ok());
        let st = s.master();
        assert!(
            st.last_error.as_deref().unwrap_or("").contains("rtb-2"),
            "{st:?}"
        );
        assert_eq!(st.tables[1].route, "table-not-found");
    }

    #[test]
    fn no_majority_is_alerted_once_and_its_return_once() {
        let mut s = Sim::started();
        let mut alerts = Vec::new();
        for i in 0..3 {
            let seq = reads(&s.feed(100 + i * 100, Input::ReadRequested("t")))[0];
            let a = s.feed(
                110 + i * 100,
                read(
                    seq,
                    vec![view(A, 1), Answer::Unreachable, Answer::Tilt],
                    Some(A),
                ),
            );
            assert!(writes(&a).is_empty());
            alerts.extend(majority_alerts(&a));
        }
        let seq = reads(&s.feed(500, Input::ReadRequested("t")))[0];
        alerts.extend(majority_alerts(&s.feed(
            510,
            read(seq, vec![view(A, 1), view(A, 1), Answer::Tilt], Some(A)),
        )));
        assert_eq!(
            alerts.iter().map(|(ok, _)| *ok).collect::<Vec<_>>(),
            vec![false, true]
        );
    }

    #[test]
    fn failed_write_found_right_by_a_later_read_resolves_the_failure() {
        let mut s = Sim::started();
        let w = s.feed(100, switch(0, A, B, s.at(100)));
        s.complete(110, &w, false);
        // Another watcher wrote it meanwhile: the next read finds B everywhere.
        let seq = reads(&s.feed(700, Input::ReadRequested("retry")))
            .into_iter()
            .next()
            .or_else(|| reads(&s.tick(700)).into_iter().next())
            .expect("a read");
        let a = s.feed(
            710,
            read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(B)),
        );
        assert!(writes(&a).is_empty(), "{a:?}");
        assert!(
            a.iter().any(|x| matches!(x, Action::Alert(AlertInput::RouteVerified { addr, .. }) if addr == "10.0.1.11:6379")),
            "{a:?}"
        );
        assert_eq!(s.master().last_error, None);
        // Once resolved, a further right read says nothing more.
        let seq = reads(&s.feed(800, Input::ReadRequested("t")))[0];
        let a = s.feed(
            810,
            read(seq, vec![view(B, 2), view(B, 2), view(B, 2)], Some(B)),
        );
        assert!(!a
            .iter()
            .any(|x| matches!(x, Action::Alert(AlertInput::RouteVerified { .. }))));
    }

    #[test]
    fn refused_subscription_is_alerted_once_and_cleared_on_connect() {
        let mut s = Sim::started();
        let why = || Input::Disconnected(1, "PSUBSCRIBE refused: NOPERM (grant &*)".into());
        let a = s.feed(10, why());
        let b = s.feed(5010, why());
        let refusals = |a: &[Action]| {
            a.iter()
                .filter(|x| {
                    matches!(
                        x,
                        Action::Alert(AlertInput::SentinelRefused { ok: false, .. })
                    )
                })
                .count()
        };
        assert_eq!(refusals(&a) + refusals(&b), 1, "told once: {a:?} {b:?}");
        assert_eq!(s.core.refused().len(), 1);
        // A plain disconnect is not a refusal.
        assert!(s
            .feed(5020, Input::Disconnected(2, "connection reset".into()))
            .is_empty());
        let a = s.feed(6000, Input::Connected(1));
        assert!(a.iter().any(|x| matches!(
            x,
            Action::Alert(AlertInput::SentinelRefused { ok: true, .. })
        )));
        assert!(s.core.refused().is_empty());
    }

    #[test]
    fn reload_keeps_unchanged_masters_and_rereads() {
        let mut s = Sim::started();
        let w = s.feed(100, switch(0, A, B, s.at(100)));
        s.complete(110, &w, true);
        let mut cfg = cfg();
        cfg.reconcile.interval = Duration::from_secs(5);
        let a = s.core.reconfigure(s.at(200), &cfg);
        assert_eq!(reads(&a).len(), 1, "a read under the new config: {a:?}");
        let st = s.master();
        assert_eq!(st.applied.as_deref(), Some("10.0.1.11:6379"), "state kept");
        assert!(
            st.unconfirmed.is_some(),
            "the unconfirmed switch is still followed"
        );
        assert!(s.core.poll_timeout() <= s.at(200) + Duration::from_secs(5));
        // A master whose tables changed forgets its routes; a removed one is gone.
        let mut cfg2 = cfg.clone();
        let m = cfg2.masters.remove("m").expect("m");
        cfg2.masters.insert("other".into(), m);
        s.core.reconfigure(s.at(300), &cfg2);
        let names: Vec<String> = s
            .core
            .status(s.at(300))
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, vec!["other".to_owned()]);
    }
}
