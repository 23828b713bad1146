//! Decide: where every master's VIP route should point, as a pure state machine.
//!
//! Sans-I/O in the quinn-proto sense: [`Steering`] is driven by inputs and time
//! (`handle(now, input)`, `handle_timeout(now)`) and answers with [`Action`]s
//! (start a majority read, start a route write, send an alert) that the async
//! driver (`controller.rs`) carries out. It never reads the clock, draws
//! randomness from the OS, spawns or awaits: every rule below is table-tested in
//! `tests.rs` without sockets.
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
//! - A majority at a config-epoch *lower* than the last one applied is accepted
//!   when two consecutive reads agree on it *and* it is a reset (re-monitored:
//!   epoch 0; restarted: every sentinel answers, none higher; gone: the silent
//!   sentinels, unreachable or in TILT, silent for longer than
//!   `failover-timeout`); it is logged and alerted with which. Otherwise it is a
//!   stale view promoted by silence: the VIP is held, and read again.
//! - A route not on the majority's master for [`ROUTE_WRONG_UNREADY_AFTER`]
//!   (written, failing or waiting) fails the reconcile and `/readyz`; a revert
//!   of an unconfirmed switch keeps it unconfirmed until written.
//! - Without a majority nothing changes: the last good route stays, and it is said.
//! - At most one route write per master is in flight; a newer wish waits in
//!   `queued` and supersedes older queued ones.
//!
//! **Architecture Invariant:** every flag that blocks work has a deadline of
//! the core's own. The driver supervises each read and write task and reports
//! every one (their results travel on a channel that cannot drop them), but
//! the core does not depend on it: a running read ([`read_running`]) and every
//! in-flight write carry a deadline ([`job_bounds`] plus [`RESULT_GRACE`]), and
//! [`Steering::handle_timeout`] ends one whose result never came — logged,
//! counted ([`Steering::lost_results`]), and retried (a read at once; a write
//! as a failed write, through a fresh read). Each result carries the sequence
//! number or write id it answers: one that comes after its deadline, or twice,
//! is ignored and changes nothing.
//!
//! [`read_running`]: Steering::read_running
//!
//! Where the rules live:
//! - `mod.rs` (here): the state ([`Steering`], one `MasterState` per master),
//!   the entry points the driver calls, and the status it reads back;
//! - `messages.rs`: what goes in and out ([`Input`], [`Action`] and their payloads);
//! - `events.rs`: the sentinels' links and events, the `+switch-master` fast path;
//! - `writes.rs`: one route write per master, its outcome, the retry schedule;
//! - `reads.rs`: the read scheduler and judging a majority read, master by
//!   master, a slice of masters per step ([`Steering::judge_more`]).

mod events;
mod line;
mod messages;
mod reads;
#[cfg(test)]
mod tests;
mod writes;

pub(crate) use messages::{Action, Cause, Input, ReadOutcome, WriteOrder, WriteOutcome};

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tracing::{error, info};

use crate::config::{Config, MasterConfig};
use crate::decide::fold::AlertInput;
use crate::decide::plan::{carriers, Carrier, Held};
use crate::ops::status::{MasterStatus, TableStatus};
use crate::watch::event::{Addr, Event};
use crate::watch::{WatchMsg, REFUSED_PREFIX};

use reads::missing_text;

/// First confirming read after a fast-path switch (the other sentinels usually
/// learn the new configuration from the leader's hello within a second or two).
pub(crate) const CONFIRM_FIRST: Duration = Duration::from_millis(500);
/// Then the majority is read this often until the switch is confirmed or reverted.
pub(crate) const CONFIRM_EVERY: Duration = Duration::from_millis(1500);
/// A fast-path switch still unconfirmed after this is alerted and fails `/readyz`.
pub(crate) const UNCONFIRMED_ALERT_AFTER: Duration = Duration::from_secs(10);
/// A VIP route that is not where the majority's master is (being written,
/// failing, or waiting) for this long fails `/readyz` and the reconcile: ready
/// means the route is right, not that a write was sent.
pub(crate) const ROUTE_WRONG_UNREADY_AFTER: Duration = Duration::from_secs(10);
/// Sentinel's default `failover-timeout`, used until a sentinel reports its own.
pub(crate) const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(180);
/// A majority at a lower config-epoch is read again this soon to see it twice.
pub(crate) const EPOCH_BACK_RECHECK: Duration = Duration::from_secs(1);
/// An accepted config-epoch regression is alerted (a warning) and resolved
/// at the first read this long after, when the majority has held.
pub(crate) const EPOCH_BACK_HOLD: Duration = Duration::from_secs(600);
/// Longest wait between retries of a failed route write or EC2 read.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How much longer than the driver's own bound on a job (see [`job_bounds`])
/// the core waits for its result before it gives up on it: the driver's
/// supervisor reports a hung job at its bound, so the core's deadline only
/// fires when that report itself is lost.
pub(crate) const RESULT_GRACE: Duration = Duration::from_secs(5);

/// The driver's bounds on one majority read and on one route write job (the
/// supervisor aborts a job that outlives them and reports a failure).
/// A read: every table read and the sentinels' answers, each bounded by
/// `aws.call_timeout` (a sentinel read by the command links' own bound), and
/// slack. A write: the target lookup, a standby's read first, up to two writes and three reads back
/// (each bounded by `aws.call_timeout`), the read-back pauses, and slack.
pub(crate) fn job_bounds(cfg: &Config) -> (Duration, Duration) {
    let call = cfg.aws.call_timeout();
    (
        call * 2 + Duration::from_secs(10),
        call * 9 + Duration::from_secs(5),
    )
}

/// How much later than the designated writer a standby of rank 1 checks a
/// write (rank r: r steps): `aws.standby_check_after`. Every watcher hears a
/// switch event at once, and decides from a majority read of the same moment
/// (confirmations, reads an event asked for); a drift found by the periodic
/// read may be found by the writer up to one `reconcile.interval` later, and
/// then the first standby to look repairs it instead (one write either way).
pub(crate) fn standby_step(cfg: &Config) -> Duration {
    cfg.aws.standby_check_after()
}

/// Longest a route write may wait for `aws.write_rate` before it starts: every
/// master's tables paid for at the configured rate, plus a second.
fn pacing_bound(cfg: &Config) -> Duration {
    let tables: usize = cfg
        .masters
        .values()
        .map(|m| m.route_tables.len().max(1))
        .sum();
    let rate = cfg.aws.write_rate.per_second.max(0.01);
    Duration::from_secs_f64(tables as f64 / rate * 1.1) + Duration::from_secs(1)
}

/// A route write in flight, as the core knows it.
#[derive(Debug, Clone)]
struct Flight {
    /// The [`WriteOrder::id`] its result must carry.
    id: u64,
    cause: Cause,
    /// When it was handed out (the outcome's latency if it never answers).
    at: Instant,
    /// When the core gives up waiting for its result.
    due: Instant,
}

/// A route write this watcher, a standby, leaves to the designated writer for
/// now: at `due` it reads every carrier and writes only those still wrong
/// ([`WriteOrder::check_first`]). `slot` is when the writer's own
/// `aws.write_rate` line should release it (see [`line::WriterLine`]);
/// `due` is the standby's wait after that. A newer wish for another address
/// replaces it (with a new slot); the same wish keeps it.
#[derive(Debug, Clone)]
struct Pending {
    addr: Addr,
    cause: Cause,
    at: Instant,
    slot: Instant,
    due: Instant,
}

/// A fast-path switch that no majority read has confirmed yet.
#[derive(Debug, Clone)]
struct Unconfirmed {
    addr: Addr,
    since: Instant,
    next_read: Instant,
    alerted: bool,
    /// The majority named another master: the VIP is being moved back there.
    /// The switch stays unconfirmed (gauge, `/readyz`, alert) until that
    /// write is verified.
    reverting: Option<Addr>,
}

/// One master's state.
#[derive(Debug)]
struct MasterState {
    cfg: MasterConfig,
    /// Last known state per carrier (read, or written and verified).
    routes: HashMap<Carrier, Held>,
    /// The address the routes were last verified to point at.
    applied: Option<Addr>,
    /// Last accepted majority verdict and its config-epoch.
    majority: Option<(Addr, u64)>,
    /// A majority at a lower epoch than `majority`, seen once: seen again in the
    /// next read, it is accepted.
    epoch_back: Option<(Addr, u64)>,
    /// Last read whose majority held the known (highest) config-epoch: a lower
    /// epoch is a reset only once the sentinels that held it have been silent
    /// (unreachable or in TILT) for `failover_timeout` since.
    high_seen: Option<Instant>,
    /// The longest `failover-timeout` the sentinels reported for this master.
    failover_timeout: Option<Duration>,
    /// Replicas the sentinels last reported (read, plus `+slave`-like events).
    replicas: BTreeSet<Addr>,
    no_majority: bool,
    in_flight: Option<Addr>,
    /// The write behind `in_flight`: its id and deadline.
    flight: Option<Flight>,
    queued: Option<(Addr, Cause, Instant)>,
    /// A standby's write left to the designated writer until its check is due.
    pending: Option<Pending>,
    /// Read sequence at which the last fast-path write started: reads that began
    /// at or before it do not judge this master.
    changed_seq: u64,
    unconfirmed: Option<Unconfirmed>,
    /// Since when the route has not been where it should be (a write started,
    /// failing, or a revert pending); cleared when it is verified right.
    wrong_since: Option<Instant>,
    failures: u32,
    /// When to read again after a failed write (transient errors only).
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// A carrier listed in the config that cannot be read (a route table EC2
    /// does not have, an Elastic IP or hosted zone it cannot find, ...).
    missing_tables: Vec<Carrier>,
    /// What was last alerted about unreadable tables (`None`: all readable, or
    /// nothing alerted).
    tables_alerted: Option<String>,
    /// When a config-epoch regression was accepted and alerted (resolved
    /// [`EPOCH_BACK_HOLD`] later).
    epoch_back_since: Option<Instant>,
}

impl MasterState {
    fn new(cfg: MasterConfig) -> MasterState {
        MasterState {
            cfg,
            routes: HashMap::new(),
            applied: None,
            majority: None,
            epoch_back: None,
            high_seen: None,
            failover_timeout: None,
            replicas: BTreeSet::new(),
            no_majority: false,
            in_flight: None,
            flight: None,
            queued: None,
            pending: None,
            changed_seq: 0,
            unconfirmed: None,
            wrong_since: None,
            failures: 0,
            retry_at: None,
            last_error: None,
            missing_tables: Vec::new(),
            tables_alerted: None,
            epoch_back_since: None,
        }
    }

    /// The route has not been right for [`ROUTE_WRONG_UNREADY_AFTER`].
    fn route_wrong_too_long(&self, now: Instant) -> bool {
        self.wrong_since
            .is_some_and(|t| now.saturating_duration_since(t) >= ROUTE_WRONG_UNREADY_AFTER)
    }

    /// Where the VIP is, or is on its way to.
    fn heading_to(&self) -> Option<&Addr> {
        self.pending
            .as_ref()
            .map(|p| &p.addr)
            .or(self.queued.as_ref().map(|q| &q.0))
            .or(self.in_flight.as_ref())
            .or(self.applied.as_ref())
    }
}

/// The decision core: every master's state, the read scheduler, EC2 health.
pub(crate) struct Steering {
    interval: Duration,
    /// Configured sentinels' addresses, for log lines (index = [`SentinelId`](crate::watch::SentinelId)).
    sentinels: Vec<String>,
    masters: BTreeMap<String, MasterState>,
    seq: u64,
    /// The majority read in progress: its sequence number and deadline.
    read_running: Option<(u64, Instant)>,
    /// A finished read still being judged, a slice of masters at a time
    /// ([`Steering::judge_more`]); no other read starts until it is done.
    judging: Option<Box<reads::Judging>>,
    /// [`Steering::poll_timeout`]'s answer, kept until an input may change a
    /// deadline: the loop asks before every input, and computing it walks
    /// every master.
    next_timeout: Cell<Option<Instant>>,
    /// How often `next_timeout` was computed (tests).
    #[cfg(test)]
    timeouts_computed: Cell<u64>,
    /// Last id given to a route write.
    write_seq: u64,
    /// The core's deadlines for a read's and a write's result once started
    /// ([`job_bounds`] + [`RESULT_GRACE`]), and for a write still waiting
    /// for `aws.write_rate` ([`pacing_bound`] on top).
    read_due_after: Duration,
    write_due_after: Duration,
    pacing_due_after: Duration,
    /// Results the core gave up waiting for: reads, writes.
    lost: (u64, u64),
    /// The latest `now` the core was given: actions decided inside a handler
    /// (a read requested by a rule) take their deadline from it.
    clock: Instant,
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
    /// How long this watcher leaves a write to the designated writer before it
    /// checks (zero: it is the designated writer, or alone). Set by the driver
    /// from the live watchers ([`Steering::set_standby`]).
    standby: Duration,
    /// The designated writer's `aws.write_rate` line as a standby models it
    /// ([`line::WriterLine`]).
    writer_line: line::WriterLine,
}

impl Steering {
    /// `seed` feeds the retry jitter (pass a random one; tests pass a constant).
    pub(crate) fn new(cfg: &Config, now: Instant, seed: u64) -> Steering {
        Steering {
            interval: cfg.reconcile.interval,
            sentinels: cfg.sentinels.iter().map(|s| s.to_string()).collect(),
            masters: cfg
                .masters
                .iter()
                .map(|(n, m)| (n.clone(), MasterState::new(m.clone())))
                .collect(),
            seq: 0,
            read_running: None,
            judging: None,
            next_timeout: Cell::new(None),
            #[cfg(test)]
            timeouts_computed: Cell::new(0),
            write_seq: 0,
            read_due_after: job_bounds(cfg).0 + RESULT_GRACE,
            write_due_after: job_bounds(cfg).1 + RESULT_GRACE,
            pacing_due_after: pacing_bound(cfg),
            lost: (0, 0),
            clock: now,
            read_pending: None,
            next_interval_read: now + cfg.reconcile.interval,
            read_at: None,
            connected: vec![false; cfg.sentinels.len()],
            refused: vec![None; cfg.sentinels.len()],
            ec2_down: false,
            ec2_failures: 0,
            last_read_ok: false,
            rng: seed | 1,
            standby: Duration::ZERO,
            writer_line: line::WriterLine::new(cfg, now),
        }
    }

    /// How long a write of this watcher waits for the designated writer before
    /// it checks: zero when it is the designated writer (or alone), else its
    /// rank times [`standby_step`], after the write's place in the writer's
    /// line. Becoming the writer (or moving up) makes each pending check due
    /// at its place in the line plus the new wait: the line still paces them,
    /// as this watcher's own pacer would.
    pub(crate) fn set_standby(&mut self, wait: Duration) {
        if wait == self.standby {
            return;
        }
        info!(
            wait_ms = wait.as_millis() as u64,
            "{}",
            if wait.is_zero() {
                "this watcher is the designated writer: it writes routes at once"
            } else {
                "this watcher is a standby: it checks each route write after the designated writer's turn"
            }
        );
        self.standby = wait;
        self.timers_changed();
        for st in self.masters.values_mut() {
            if let Some(p) = st.pending.as_mut() {
                p.due = p.due.min(p.slot + wait);
            }
        }
    }

    /// Configured sentinel count: the majority is counted over it.
    fn configured(&self) -> usize {
        self.sentinels.len()
    }

    pub(crate) fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        self.clock = self.clock.max(now);
        // Only a `+switch-master` among the sentinels' events can start a
        // write or a read (a deadline); the others (a storm of `+sdown`, say)
        // keep the next timeout as it was.
        if !matches!(
            &input,
            Input::Watch(WatchMsg::Event { event, .. }) if !matches!(event, Event::SwitchMaster { .. })
        ) {
            self.timers_changed();
        }
        let mut out = Vec::new();
        match input {
            Input::Watch(WatchMsg::Event {
                sentinel,
                event,
                at,
            }) => self.on_event(now, sentinel, event, at, &mut out),
            Input::Watch(WatchMsg::Connected(id)) => {
                self.set_connected(id, true);
                self.set_refused(id, None, &mut out);
                self.request_read("sentinel connected", &mut out);
            }
            Input::Watch(WatchMsg::Disconnected(id, why)) => {
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
    pub(crate) fn reconfigure(&mut self, now: Instant, cfg: &Config) -> Vec<Action> {
        self.clock = self.clock.max(now);
        self.timers_changed();
        let mut out = Vec::new();
        self.interval = cfg.reconcile.interval;
        self.read_due_after = job_bounds(cfg).0 + RESULT_GRACE;
        self.write_due_after = job_bounds(cfg).1 + RESULT_GRACE;
        self.pacing_due_after = pacing_bound(cfg);
        self.writer_line.set_budget(cfg);
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
                    // Compared as values (1,000 Debug strings took ~10 ms of
                    // the loop at a reload).
                    if st.cfg != *m {
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
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        self.clock = self.clock.max(now);
        self.timers_changed();
        let mut out = Vec::new();
        let mut why = None;
        if self.read_result_lost(now) {
            why = Some("majority read result lost");
        }
        self.write_results_lost(now, &mut out);
        self.pending_due(now, &mut out);
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

    /// Whether a finished majority read is still being judged: call
    /// [`Steering::judge_more`] (between other inputs) until it is not.
    pub(crate) fn judging(&self) -> bool {
        self.judging.is_some()
    }

    /// Judges the next slice of masters of the read being judged (nothing
    /// when none is). The driver calls it between inputs, so that a read of
    /// 1,000 masters never holds the sentinels' events for long.
    pub(crate) fn judge_more(&mut self, now: Instant) -> Vec<Action> {
        self.clock = self.clock.max(now);
        self.timers_changed();
        let mut out = Vec::new();
        self.judge_slice(now, &mut out);
        out
    }

    /// Something may have moved a deadline: [`Steering::poll_timeout`]
    /// computes it again.
    fn timers_changed(&self) {
        self.next_timeout.set(None);
    }

    /// When [`Steering::handle_timeout`] must next be called.
    pub(crate) fn poll_timeout(&self) -> Instant {
        if let Some(t) = self.next_timeout.get() {
            return t;
        }
        #[cfg(test)]
        self.timeouts_computed.set(self.timeouts_computed.get() + 1);
        let t = self.compute_timeout();
        self.next_timeout.set(Some(t));
        t
    }

    fn compute_timeout(&self) -> Instant {
        let mut t = self.next_interval_read;
        if let Some((_, due)) = self.read_running {
            t = t.min(due);
        }
        if let Some((at, _)) = self.read_at {
            t = t.min(at);
        }
        for st in self.masters.values() {
            if let Some(at) = st.retry_at {
                t = t.min(at);
            }
            if let Some(f) = &st.flight {
                t = t.min(f.due);
            }
            if let Some(p) = &st.pending {
                t = t.min(p.due);
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
    pub(crate) fn writes_in_flight(&self) -> bool {
        self.masters.values().any(|m| m.in_flight.is_some())
    }

    /// Marks the in-flight write of `master` as done without an outcome (shutdown).
    pub(crate) fn forget_write(&mut self, master: &str) {
        self.timers_changed();
        if let Some(st) = self.masters.get_mut(master) {
            st.in_flight = None;
            st.flight = None;
            st.queued = None;
            st.pending = None;
        }
    }

    /// Whether `seq` is the majority read the core waits for (a result with
    /// another sequence number is late or duplicated, and ignored).
    pub(crate) fn awaits_read(&self, seq: u64) -> bool {
        self.read_running.is_some_and(|(s, _)| s == seq)
    }

    /// Results the core gave up waiting for (their deadline passed): majority
    /// reads, route writes. For the driver's metric.
    pub(crate) fn lost_results(&self) -> (u64, u64) {
        self.lost
    }

    pub(crate) fn connected_count(&self) -> usize {
        self.connected.iter().filter(|c| **c).count()
    }

    pub(crate) fn last_read_ok(&self) -> bool {
        self.last_read_ok
    }

    /// The per-master part of `/status`, at `now`.
    pub(crate) fn status(&self, now: Instant) -> Vec<MasterStatus> {
        self.masters
            .iter()
            .map(|(name, st)| master_status(name, st, now))
            .collect()
    }

    /// How many masters `/status` lists (in [`Steering::status`]'s order).
    pub(crate) fn master_count(&self) -> usize {
        self.masters.len()
    }

    /// `/status` of the masters at `positions` (in [`Steering::status`]'s
    /// order, ascending), each with its position: a driver with many masters
    /// refreshes a slice of them per publish, plus the [`Steering::busy_masters`].
    pub(crate) fn status_at(
        &self,
        now: Instant,
        positions: &[usize],
    ) -> Vec<(usize, MasterStatus)> {
        let mut want = positions.iter().copied().peekable();
        let mut out = Vec::with_capacity(positions.len());
        for (i, (name, st)) in self.masters.iter().enumerate() {
            let Some(&next) = want.peek() else { break };
            if i == next {
                out.push((i, master_status(name, st, now)));
                while want.peek() == Some(&i) {
                    want.next();
                }
            }
        }
        out
    }

    /// Positions of (at most `max`) masters being acted on — a write in
    /// flight or pending, an unconfirmed switch —, whose `/status` changes from
    /// one moment to the next: refreshed at every publish.
    pub(crate) fn busy_masters(&self, max: usize) -> Vec<usize> {
        self.masters
            .values()
            .enumerate()
            .filter(|(_, st)| {
                st.in_flight.is_some() || st.pending.is_some() || st.unconfirmed.is_some()
            })
            .map(|(i, _)| i)
            .take(max)
            .collect()
    }

    /// Sentinels refusing our subscription, with why (`/readyz` fails while any does).
    pub(crate) fn refused(&self) -> Vec<String> {
        self.refused
            .iter()
            .zip(&self.sentinels)
            .filter_map(|(r, s)| r.as_ref().map(|why| format!("{s}: {why}")))
            .collect()
    }
}

/// One master's `/status` at `now` (`sentinels` and `target` are the
/// driver's: it holds the answers and the target cache).
fn master_status(name: &str, st: &MasterState, now: Instant) -> MasterStatus {
    MasterStatus {
        name: name.to_owned(),
        vip: st.cfg.vip.map(|v| v.to_string()).unwrap_or_default(),
        majority: st.majority.as_ref().map(|(a, _)| a.to_string()),
        config_epoch: st.majority.as_ref().map(|(_, e)| *e),
        applied: st.applied.as_ref().map(|a| a.to_string()),
        writing: st.in_flight.as_ref().map(|a| a.to_string()),
        standby_check: st.pending.as_ref().map(|p| {
            format!(
                "{} in {} ms",
                p.addr,
                p.due.saturating_duration_since(now).as_millis()
            )
        }),
        no_majority: st.no_majority,
        unconfirmed: st.unconfirmed.as_ref().map(|u| u.addr.to_string()),
        unconfirmed_too_long: st
            .unconfirmed
            .as_ref()
            .is_some_and(|u| now.duration_since(u.since) >= UNCONFIRMED_ALERT_AFTER),
        route_wrong_too_long: st.route_wrong_too_long(now),
        last_error: st
            .last_error
            .clone()
            .or_else(|| (!st.missing_tables.is_empty()).then(|| missing_text(&st.missing_tables))),
        tables: carriers(&st.cfg)
            .iter()
            .map(|t| TableStatus {
                id: t.to_string(),
                kind: t.kind(),
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
        ..MasterStatus::default()
    }
}
