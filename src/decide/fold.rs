//! The incident fold: a pure state machine over events, route outcomes and
//! time. No I/O; time is passed in, so grouping is tested without sleeping.
//!
//! - A master incident opens on the first `+odown master` (a lone `+sdown` is
//!   not one), on `+try-failover` when none is open (a manual failover, or
//!   Sentinel's retry after an aborted one), or, for a switch with nothing
//!   before it, on the first `+switch-master`. It is held for `group_wait`, so a
//!   quick failover gives one "failed over A → B" message. Failover progress
//!   events annotate it. The first `+switch-master` (or `-odown`) resolves it;
//!   the same switch seen from the other sentinels is absorbed.
//! - A `-failover-abort-*` from the sentinel running the attempt (or from any,
//!   when nobody was elected): while the master stays objectively down the
//!   incident stays **firing** (its condition has not cleared) and says why the
//!   failover failed; Sentinel's retry restarts the failover clock at its own
//!   `+try-failover`, so a later switch reports the retry's duration. An abort
//!   with the master not down (a manual failover) resolves it with the reason
//!   ("the master was not changed").
//! - A replica or sentinel in `+sdown` for longer than `group_wait` is a warning
//!   incident, one per instance, resolved by `-sdown`.
//! - Failed route writes and loss of the sentinel majority are incidents too. A
//!   failed write resolves on a good write or a read that finds the route right;
//!   resolved before it was ever told, it is dropped.
//! - Keys: hex sha256 of `sentinel:<master>:<epoch>` (+ `:<what>` for
//!   warnings), the same on every watcher.
//! - Memory is bounded: events of masters not configured are not folded, and
//!   per-master state is pruned (see [`Fold::state_size`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::watch::event::{Event, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The master went down and/or failed over.
    Failover,
    /// A replica or sentinel is subjectively down.
    InstanceDown {
        role: &'static str,
        instance: String,
    },
    /// The VIP route could not be written.
    RouteFailure,
    /// No sentinel majority agrees on the master.
    NoMajority,
    /// EC2 could not be read at all.
    Ec2Unreachable,
    /// A sentinel refuses what the watcher needs (ACL `NOPERM` on PSUBSCRIBE):
    /// its events are not seen until an operator fixes the user.
    SentinelRefused,
}

impl Kind {
    pub fn alertname(&self) -> &'static str {
        match self {
            Kind::Failover => "RedisMasterFailover",
            Kind::InstanceDown { .. } => "RedisInstanceDown",
            Kind::RouteFailure => "VipRouteUpdateFailed",
            Kind::NoMajority => "SentinelNoMajority",
            Kind::Ec2Unreachable => "Ec2Unreachable",
            Kind::SentinelRefused => "SentinelSubscriptionRefused",
        }
    }
}

/// One incident as it is told to people.
#[derive(Debug, Clone)]
pub struct Incident {
    pub key: String,
    pub master: String,
    pub kind: Kind,
    pub severity: Severity,
    pub state: State,
    pub opened: Instant,
    pub opened_at: SystemTime,
    pub resolved_at: Option<SystemTime>,
    /// Master address when it opened, and where it went.
    pub from: Option<String>,
    pub to: Option<String>,
    pub failover_time: Option<Duration>,
    pub annotations: Vec<String>,
    pub route: Option<RouteReport>,
    pub detail: Option<String>,
    /// Events folded into this incident (from every sentinel).
    pub events: usize,
    /// The sentinel (index) that published `+elected-leader`, if any.
    pub leader: Option<usize>,
    /// Last state sent and when.
    pub sent: Option<(State, Instant)>,
    /// Whether a firing message was ever sent (PagerDuty needs a trigger
    /// before a resolve).
    pub told_firing: bool,
    /// Whether the master was seen objectively down (else: a manual failover).
    pub down: bool,
    /// When it was resolved (monotonic), to wait briefly for the route outcome.
    pub resolved: Option<Instant>,
    /// Start of the failover attempt that is running (the open, or a later
    /// `+try-failover`): the failover time is measured from it.
    pub attempt_started: Instant,
    /// `+try-failover`s folded in, and when the last one came.
    pub tries: u32,
    pub last_try: Option<Instant>,
    /// Why it ended without its condition clearing: the `-failover-abort-*`
    /// event, or `removed from the config`.
    pub ended: Option<String>,
    /// The `-failover-abort-*` of the last attempt while the master stays
    /// down: the incident stays firing (its condition has not cleared) and
    /// Sentinel's retry restarts the failover clock.
    pub aborted: Option<String>,
    /// The condition this incident counts occurrences of (see
    /// `Fold::occurrence_key`), to keep that counter while it is open.
    pub occurrence: Option<String>,
}

impl Incident {
    /// A new firing incident with nothing folded into it yet.
    pub fn new(
        key: String,
        master: &str,
        kind: Kind,
        severity: Severity,
        opened: Instant,
        opened_at: SystemTime,
        from: Option<String>,
    ) -> Incident {
        Incident {
            key,
            master: master.to_owned(),
            kind,
            severity,
            state: State::Firing,
            opened,
            opened_at,
            resolved_at: None,
            from,
            to: None,
            failover_time: None,
            annotations: Vec::new(),
            route: None,
            detail: None,
            events: 0,
            leader: None,
            sent: None,
            told_firing: false,
            down: false,
            resolved: None,
            attempt_started: opened,
            tries: 0,
            last_try: None,
            ended: None,
            aborted: None,
            occurrence: None,
        }
    }

    /// One-line summary, the message's headline.
    pub fn summary(&self) -> String {
        let route = self.route.as_ref().map(route_text).unwrap_or_default();
        let from = self.from.as_deref().unwrap_or("?");
        match (&self.kind, self.state) {
            (_, State::Resolved) if self.ended.as_deref() == Some(REMOVED) => format!(
                "{}: {} no longer watched (master removed from the config)",
                self.master,
                self.kind.alertname()
            ),
            (Kind::Failover, State::Resolved) if self.ended.is_some() => {
                let event = self.ended.as_deref().unwrap_or("");
                let after = if self.down {
                    "; the master is still down and Sentinel will retry"
                } else {
                    "; the master was not changed"
                };
                format!(
                    "{}: failover from {from} ABORTED: {} ({event}){after}",
                    self.master,
                    abort_reason(event)
                )
            }
            (Kind::Failover, State::Resolved) => match (&self.from, &self.to) {
                (Some(f), Some(t)) => {
                    let took = self
                        .failover_time
                        .map(|d| format!(" in {:.1} s", d.as_secs_f64()))
                        .unwrap_or_default();
                    format!("{} failed over {f} → {t}{took}{route}", self.master)
                }
                _ => format!("{} is back up at {from} (no failover)", self.master),
            },
            (Kind::Failover, State::Firing) if !self.down => format!(
                "{}: failover from {from} started but has not finished",
                self.master
            ),
            (Kind::Failover, State::Firing) => match &self.aborted {
                Some(event) => format!(
                    "{} is down at {from} (objectively down); failover ABORTED: {} ({event}); Sentinel will retry",
                    self.master,
                    abort_reason(event)
                ),
                None => format!(
                    "{} is down at {from} (objectively down); failover in progress",
                    self.master
                ),
            },
            (Kind::InstanceDown { role, instance }, State::Firing) => {
                format!("{} {role} {instance} is down", self.master)
            }
            (Kind::InstanceDown { role, instance }, State::Resolved) => {
                format!("{} {role} {instance} is back up", self.master)
            }
            (Kind::RouteFailure, State::Firing) => format!(
                "{}: VIP route update FAILED: {}",
                self.master,
                self.detail.as_deref().unwrap_or("unknown error")
            ),
            (Kind::RouteFailure, State::Resolved) => match &self.route {
                Some(r) if r.ok && r.tables_written == 0 => format!(
                    "{}: VIP route is right again: {} → {} (found by a read; no write needed)",
                    self.master, r.addr, r.target
                ),
                _ => format!("{}: VIP route update recovered{route}", self.master),
            },
            (Kind::NoMajority, State::Firing) => format!(
                "{}: no sentinel majority; VIP route held where it is ({})",
                self.master,
                self.detail.as_deref().unwrap_or("")
            ),
            (Kind::NoMajority, State::Resolved) => {
                format!("{}: sentinel majority is back", self.master)
            }
            (Kind::Ec2Unreachable, State::Firing) => format!(
                "EC2 API unreachable: route tables cannot be read or written ({})",
                self.detail.as_deref().unwrap_or("")
            ),
            (Kind::Ec2Unreachable, State::Resolved) => "EC2 API reachable again".to_owned(),
            (Kind::SentinelRefused, State::Firing) => format!(
                "sentinel refuses the watcher's subscription: events from it are not seen ({})",
                self.detail.as_deref().unwrap_or("")
            ),
            (Kind::SentinelRefused, State::Resolved) => {
                "sentinel accepts the watcher's subscription again".to_owned()
            }
        }
    }

    /// Longer text: annotations and counts.
    pub fn description(&self) -> String {
        let mut parts = Vec::new();
        if !self.annotations.is_empty() {
            parts.push(format!("progress: {}", self.annotations.join(", ")));
        }
        if let Some(r) = &self.route {
            parts.push(if r.ok {
                format!(
                    "route: {} → {} in {}/{} tables",
                    r.addr, r.target, r.tables_written, r.tables_total
                )
            } else {
                format!("route: FAILED: {}", r.error.as_deref().unwrap_or("?"))
            });
        }
        parts.push(format!("{} sentinel events folded", self.events));
        parts.join("; ")
    }

    fn resolve(&mut self, now: Instant, wall: SystemTime) {
        self.state = State::Resolved;
        self.resolved_at = Some(wall);
        self.resolved = Some(now);
    }

    fn annotate(&mut self, note: String) {
        let head = note.split(' ').next().unwrap_or("").to_owned();
        if !self.annotations.iter().any(|a| a.starts_with(&head)) {
            self.annotations.push(note);
        }
    }
}

/// `Incident::ended` of an incident closed because its master left the config.
const REMOVED: &str = "removed from the config";

/// What a `-failover-abort-*` event means (redis 7.0 `sentinel.c`).
fn abort_reason(event: &str) -> &'static str {
    match event {
        // sentinelFailoverWaitStart: not leader within min(10 s, failover-timeout).
        "-failover-abort-not-elected" => "no sentinel was elected leader to run it",
        // sentinelFailoverSelectSlave: no replica passed the selection.
        "-failover-abort-no-good-slave" => "no replica fit to be promoted",
        // sentinelFailoverSendSlaveOfNoOne / WaitPromotion: over failover-timeout.
        "-failover-abort-slave-timeout" => {
            "the selected replica did not become master within failover-timeout"
        }
        _ => "Sentinel aborted it",
    }
}

fn route_text(r: &RouteReport) -> String {
    if r.ok && r.tables_written > 0 {
        format!(
            "; VIP route updated in {} table{} in {:.0} ms",
            r.tables_written,
            if r.tables_written == 1 { "" } else { "s" },
            r.latency_ms
        )
    } else if r.ok {
        "; VIP route already right".to_owned()
    } else {
        format!(
            "; VIP route update FAILED: {}",
            r.error.as_deref().unwrap_or("?")
        )
    }
}

/// Hex sha256 of `sentinel:<master>:<epoch>[:<what>]`.
pub fn incident_key(master: &str, epoch: u64, what: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(format!("sentinel:{master}:{epoch}"));
    if let Some(w) = what {
        h.update(format!(":{w}"));
    }
    hex::encode(h.finalize())
}

/// How many times a condition occurred for a master in one epoch.
#[derive(Debug)]
struct Occurrences {
    epoch: u64,
    count: u32,
    /// Last issued, or last seen open: a counter is forgotten only well after.
    last: Instant,
}

/// The fold's state.
#[derive(Debug)]
pub struct Fold {
    group_wait: Duration,
    repeat_interval: Duration,
    /// Configured master names (`None`: every master is folded).
    masters: Option<BTreeSet<String>>,
    /// Open (or resolved but not yet sent) incidents by key.
    incidents: BTreeMap<String, Incident>,
    /// Highest epoch seen (from `+new-epoch` and majority reads).
    epoch: u64,
    /// Keys recently closed, to absorb late duplicates (key → when closed).
    closed: BTreeMap<String, Instant>,
    /// Last switch per configured master (its destination), to absorb late
    /// duplicates after the incident was told and closed.
    last_switch: BTreeMap<String, String>,
    /// Configured masters currently objectively down (`+odown` … `-odown` or switch).
    odown: BTreeSet<String>,
    /// Last abort told per master while it stays down: the same abort of each
    /// retry is not told again.
    last_abort: BTreeMap<String, String>,
    /// Occurrences of each condition per master (`master`, `what`).
    occurrences: BTreeMap<(String, String), Occurrences>,
    pub absorbed: usize,
    /// Events about masters that are not configured (not folded).
    pub ignored: usize,
}

/// A manual failover still unfinished after this is told as firing.
const STUCK_FAILOVER: Duration = Duration::from_secs(60);
/// How long a resolved failover waits for its route outcome before it is told anyway.
const ROUTE_WAIT: Duration = Duration::from_secs(5);

/// A `+try-failover` this long after the previous one is Sentinel's retry of
/// the failover (it waits 2 × failover-timeout), not a sentinel racing for the
/// same election (those come within the ~1 s of Sentinel's start desync).
const RETRY_GAP: Duration = Duration::from_secs(3);

/// How long a closed incident's key is remembered to absorb late duplicates.
const REMEMBER_CLOSED: Duration = Duration::from_secs(600);
/// An occurrence counter unused (and with nothing open) for this long is
/// forgotten: the next occurrence counts from 1 again. Longer than
/// `REMEMBER_CLOSED`, so a key is never reissued while it is remembered.
const FORGET_OCCURRENCES: Duration = Duration::from_secs(3600);

impl Fold {
    /// A fold that folds every master's events (see [`Fold::for_masters`]).
    pub fn new(group_wait: Duration, repeat_interval: Duration) -> Fold {
        Fold {
            group_wait,
            repeat_interval,
            masters: None,
            incidents: BTreeMap::new(),
            epoch: 0,
            closed: BTreeMap::new(),
            last_switch: BTreeMap::new(),
            odown: BTreeSet::new(),
            last_abort: BTreeMap::new(),
            occurrences: BTreeMap::new(),
            absorbed: 0,
            ignored: 0,
        }
    }

    /// Folds only these masters' events: a sentinel that monitors more masters
    /// than we route for must not grow our state.
    pub fn for_masters(mut self, names: impl IntoIterator<Item = String>) -> Fold {
        self.masters = Some(names.into_iter().collect());
        self
    }

    /// New `group_wait` / `repeat_interval` (reload): open incidents keep
    /// their state and follow the new timing from now on.
    pub fn set_timing(&mut self, group_wait: Duration, repeat_interval: Duration) {
        self.group_wait = group_wait;
        self.repeat_interval = repeat_interval;
    }

    /// Replaces the configured masters (reload). The state of masters no longer
    /// configured is dropped; their incidents already told firing are resolved
    /// ("no longer watched") so that no page stays open forever, the others
    /// are forgotten.
    pub fn set_masters(
        &mut self,
        now: Instant,
        wall: SystemTime,
        names: impl IntoIterator<Item = String>,
    ) {
        let names: BTreeSet<String> = names.into_iter().collect();
        let keep = |m: &String| m == "*" || names.contains(m);
        self.last_switch.retain(|m, _| keep(m));
        self.odown.retain(keep);
        self.last_abort.retain(|m, _| keep(m));
        self.occurrences.retain(|(m, _), _| keep(m));
        self.incidents
            .retain(|_, i| keep(&i.master) || (i.told_firing && i.state == State::Firing));
        for i in self.incidents.values_mut().filter(|i| !keep(&i.master)) {
            i.resolve(now, wall);
            i.ended = Some(REMOVED.to_owned());
        }
        self.masters = Some(names);
    }

    fn configured(&self, master: &str) -> bool {
        self.masters.as_ref().is_none_or(|m| m.contains(master))
    }

    /// How many entries the fold holds (incidents, remembered keys, per-master
    /// state, counters): flat over months of events.
    pub fn state_size(&self) -> usize {
        self.incidents.len()
            + self.closed.len()
            + self.last_switch.len()
            + self.odown.len()
            + self.last_abort.len()
            + self.occurrences.len()
    }

    /// Key of the next occurrence of a condition (`what`) for `master`: the same
    /// instance going down twice in one epoch is two incidents. Watchers that
    /// saw the same events count the same occurrences, so keys still agree.
    fn occurrence_key(&mut self, now: Instant, master: &str, what: &str) -> String {
        let epoch = self.epoch;
        let o = self
            .occurrences
            .entry((master.to_owned(), what.to_owned()))
            .or_insert(Occurrences {
                epoch,
                count: 0,
                last: now,
            });
        if o.epoch != epoch {
            // A new epoch: its keys differ from every older one, count afresh.
            *o = Occurrences {
                epoch,
                count: 0,
                last: now,
            };
        }
        o.count += 1;
        o.last = now;
        incident_key(master, epoch, Some(&format!("{what}#{}", o.count)))
    }

    /// Tells the fold the latest config-epoch known from a majority read.
    pub fn observe_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    pub fn open_count(&self) -> usize {
        self.incidents
            .values()
            .filter(|i| i.state == State::Firing)
            .count()
    }

    fn open_master_incident(
        &mut self,
        master: &str,
        kind_is_failover: bool,
    ) -> Option<&mut Incident> {
        self.incidents.values_mut().find(|i| {
            i.master == master
                && i.state == State::Firing
                && (i.kind == Kind::Failover) == kind_is_failover
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        now: Instant,
        wall: SystemTime,
        key: String,
        master: &str,
        kind: Kind,
        severity: Severity,
        from: Option<String>,
    ) -> Option<&mut Incident> {
        if self.recently_closed(&key, now) {
            self.absorbed += 1;
            return None;
        }
        let inc = self
            .incidents
            .entry(key.clone())
            .or_insert_with(|| Incident::new(key, master, kind, severity, now, wall, from));
        Some(inc)
    }

    /// Whether `key` was closed less than `REMEMBER_CLOSED` ago (the map is
    /// pruned lazily, in `due`).
    fn recently_closed(&self, key: &str, now: Instant) -> bool {
        self.closed
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < REMEMBER_CLOSED)
    }

    /// Opens a failover incident for a new attempt or switch (not a late
    /// duplicate: the caller checked). Its key is the epoch's, unless that one
    /// is taken (an aborted attempt of the same epoch, `+new-epoch` missed):
    /// then the epoch's next occurrence, which every watcher computes alike.
    fn open_new_failover(
        &mut self,
        now: Instant,
        wall: SystemTime,
        master: &str,
        from: String,
    ) -> &mut Incident {
        let mut key = incident_key(master, self.epoch, None);
        if self.recently_closed(&key, now) || self.incidents.contains_key(&key) {
            key = self.occurrence_key(now, master, "failover");
        }
        let down = self.odown.contains(master);
        let i = self.incidents.entry(key.clone()).or_insert_with(|| {
            Incident::new(
                key,
                master,
                Kind::Failover,
                Severity::Critical,
                now,
                wall,
                Some(from),
            )
        });
        i.down |= down;
        i
    }

    /// Folds one sentinel event in. Events about masters that are not
    /// configured are counted in `ignored` and otherwise dropped.
    pub fn on_event(&mut self, now: Instant, wall: SystemTime, sentinel: usize, event: &Event) {
        if let Some(m) = event.master() {
            if !self.configured(m) {
                self.ignored += 1;
                return;
            }
        }
        match event {
            Event::NewEpoch(e) => self.epoch = self.epoch.max(*e),
            Event::SwitchMaster { master, old, new } => {
                let (old, new) = (old.to_string(), new.to_string());
                self.odown.remove(master);
                self.last_abort.remove(master);
                // Resolve the open failover incident, or absorb a duplicate, or
                // open-and-resolve one for a switch with nothing before it.
                let dup = self.incidents.values_mut().find(|i| {
                    i.master == *master
                        && i.kind == Kind::Failover
                        && i.to.as_deref() == Some(new.as_str())
                });
                if let Some(i) = dup {
                    i.events += 1;
                    self.absorbed += 1;
                    return;
                }
                if let Some(i) = self.open_master_incident(master, true) {
                    if i.from.as_deref() == Some(new.as_str()) {
                        // A switch *to* the master this incident is about is the
                        // previous failover's switch arriving late (a lagging
                        // sentinel): it cannot end this one.
                        i.events += 1;
                        self.absorbed += 1;
                        return;
                    }
                }
                let open = self.open_master_incident(master, true).is_some();
                if !open && self.last_switch.get(master) == Some(&new) {
                    // The same switch, late (a healed sentinel) or duplicated.
                    self.absorbed += 1;
                    return;
                }
                self.last_switch.insert(master.clone(), new.clone());
                let i = match self.open_master_incident(master, true) {
                    Some(i) => i,
                    None => self.open_new_failover(now, wall, master, old.clone()),
                };
                i.events += 1;
                i.resolve(now, wall);
                i.to = Some(new);
                i.failover_time = Some(now.saturating_duration_since(i.attempt_started));
                if i.from.is_none() {
                    i.from = Some(old);
                }
            }
            Event::Instance {
                kind,
                instance,
                detail,
            } => {
                let master = instance.master.as_str();
                match (*kind, instance.role) {
                    ("+odown", Role::Master) => {
                        let addr = instance.addr.to_string();
                        // After a switch, only the new master can go down: a
                        // +odown of the old one is late news.
                        let current = self.last_switch.get(master).is_none_or(|to| *to == addr);
                        let fresh = current && !self.odown.contains(master);
                        if current {
                            self.odown.insert(master.to_owned());
                        }
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.down = true;
                            self.absorbed += 1;
                            return;
                        }
                        let note = format!("+odown {detail}").trim().to_owned();
                        if fresh {
                            // A new down transition: a new incident even when the
                            // epoch's key is taken (the last failover's epoch).
                            let i = self.open_new_failover(now, wall, master, addr);
                            i.events += 1;
                            i.down = true;
                            i.annotate(note);
                            return;
                        }
                        let key = incident_key(master, self.epoch, None);
                        if let Some(i) = self.open(
                            now,
                            wall,
                            key,
                            master,
                            Kind::Failover,
                            Severity::Critical,
                            Some(addr),
                        ) {
                            i.events += 1;
                            i.down = true;
                            i.annotate(note);
                        }
                    }
                    ("-odown", Role::Master) => {
                        let addr = instance.addr.to_string();
                        if self.last_switch.get(master).is_none_or(|to| *to == addr) {
                            self.odown.remove(master);
                            self.last_abort.remove(master);
                        }
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.resolve(now, wall);
                        }
                    }
                    ("+try-failover", Role::Master) => {
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.tries += 1;
                            let gap = i.last_try.map(|t| now.saturating_duration_since(t));
                            i.last_try = Some(now);
                            if let Some(abort) = i.aborted.take() {
                                // Sentinel's retry after an abort we saw: the
                                // failover time counts from this attempt.
                                i.attempt_started = now;
                                i.annotate(format!("retried after {abort}: +try-failover"));
                            } else if gap.is_some_and(|g| g >= RETRY_GAP) {
                                // Sentinel retried (its abort was lost to us):
                                // the failover time counts from this attempt.
                                i.attempt_started = now;
                                i.annotate("retried: +try-failover".into());
                            } else {
                                i.annotate("+try-failover".into());
                            }
                            self.absorbed += 1;
                        } else {
                            // A manual failover, or Sentinel's retry after an abort.
                            let i = self.open_new_failover(
                                now,
                                wall,
                                master,
                                instance.addr.to_string(),
                            );
                            i.events += 1;
                            i.tries += 1;
                            i.last_try = Some(now);
                            i.annotate("+try-failover".into());
                        }
                    }
                    (k, _) if k.starts_with("-failover-abort-") => {
                        self.on_abort(now, wall, sentinel, master, k);
                    }
                    (
                        "+elected-leader"
                        | "+failover-end"
                        | "+failover-end-for-timeout"
                        | "+selected-slave"
                        | "+promoted-slave",
                        _,
                    ) => {
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            if *kind == "+elected-leader" {
                                i.leader = Some(sentinel);
                            }
                            i.annotate(match *kind {
                                "+selected-slave" | "+promoted-slave" => {
                                    format!("{kind} {}", instance.addr)
                                }
                                _ => (*kind).to_owned(),
                            });
                            self.absorbed += 1;
                        } else if *kind == "+elected-leader" {
                            // Manual failovers publish no +odown: remember the leader
                            // for the switch incident that follows (when its
                            // +try-failover was missed).
                            let key = incident_key(master, self.epoch, None);
                            let down = self.odown.contains(master);
                            if let Some(i) = self.open(
                                now,
                                wall,
                                key,
                                master,
                                Kind::Failover,
                                Severity::Critical,
                                Some(instance.addr.to_string()),
                            ) {
                                i.leader = Some(sentinel);
                                i.events += 1;
                                i.down |= down;
                                i.annotate("+elected-leader".into());
                            }
                        } else {
                            self.absorbed += 1;
                        }
                    }
                    ("+sdown", Role::Replica | Role::Sentinel) => {
                        let role = if instance.role == Role::Sentinel {
                            "sentinel"
                        } else {
                            "replica"
                        };
                        let addr = instance.addr.to_string();
                        let existing = self.incidents.values_mut().find(|i| {
                            i.master == master && i.state == State::Firing
                                && matches!(&i.kind, Kind::InstanceDown { instance: x, .. } if *x == addr)
                        });
                        if let Some(i) = existing {
                            i.events += 1;
                            self.absorbed += 1;
                            return;
                        }
                        let what = format!("{role}:{addr}");
                        let key = self.occurrence_key(now, master, &what);
                        if let Some(i) = self.open(
                            now,
                            wall,
                            key,
                            master,
                            Kind::InstanceDown {
                                role,
                                instance: addr,
                            },
                            Severity::Warning,
                            None,
                        ) {
                            i.events += 1;
                            i.occurrence = Some(what);
                        }
                    }
                    ("-sdown", Role::Replica | Role::Sentinel) => {
                        let addr = instance.addr.to_string();
                        let mut drop_key = None;
                        if let Some(i) = self.incidents.values_mut().find(|i| {
                            i.master == master && i.state == State::Firing
                                && matches!(&i.kind, Kind::InstanceDown { instance: x, .. } if *x == addr)
                        }) {
                            i.events += 1;
                            if i.sent.is_none() {
                                // Down for less than group_wait: never told, forget it.
                                drop_key = Some(i.key.clone());
                            } else {
                                i.resolve(now, wall);
                            }
                        }
                        if let Some(k) = drop_key {
                            self.incidents.remove(&k);
                        }
                    }
                    _ => self.absorbed += 1,
                }
            }
            Event::Tilt { entered: true } => {
                for i in self
                    .incidents
                    .values_mut()
                    .filter(|i| i.state == State::Firing && i.kind == Kind::Failover)
                {
                    i.annotate("+tilt".into());
                }
            }
            _ => self.absorbed += 1,
        }
    }

    /// A `-failover-abort-*` from `sentinel`. It ends the attempt when it comes
    /// from the attempt's leader, or when nobody was elected; a
    /// `-not-elected` from a sentinel that lost the vote while another leads is
    /// only a note (the failover goes on). The same abort again for a master
    /// that stayed down, never told, is dropped (each retry would repeat it).
    fn on_abort(
        &mut self,
        now: Instant,
        wall: SystemTime,
        sentinel: usize,
        master: &str,
        kind: &str,
    ) {
        let down = self.odown.contains(master);
        let repeat = self.last_abort.get(master).map(String::as_str) == Some(kind);
        let Some(i) = self.open_master_incident(master, true) else {
            // Late (after the switch or an earlier abort) or duplicated.
            self.absorbed += 1;
            return;
        };
        i.events += 1;
        i.annotate(kind.to_owned());
        let ends = i.leader.is_none_or(|l| l == sentinel) || kind != "-failover-abort-not-elected";
        if !ends {
            self.absorbed += 1;
            return;
        }
        if down {
            // The master is still down: the condition has not cleared, so the
            // page stays firing, now saying why the failover failed. Sentinel
            // retries; its `+try-failover` restarts the failover clock.
            i.aborted = Some(kind.to_owned());
            self.last_abort.insert(master.to_owned(), kind.to_owned());
            return;
        }
        i.resolve(now, wall);
        i.ended = Some(kind.to_owned());
        i.down |= down;
        if repeat && i.sent.is_none() {
            let k = i.key.clone();
            self.incidents.remove(&k);
            self.closed.insert(k, now);
            self.absorbed += 1;
        } else if down {
            self.last_abort.insert(master.to_owned(), kind.to_owned());
        }
    }

    /// Attaches a route outcome; a failed write opens a RouteFailure incident,
    /// a good one resolves it (or drops it, when it was never told).
    pub fn on_route(&mut self, now: Instant, wall: SystemTime, r: &RouteReport) {
        if !self.configured(&r.master) {
            self.ignored += 1;
            return;
        }
        let target = self
            .incidents
            .values_mut()
            .filter(|i| i.master == r.master && i.kind == Kind::Failover)
            .find(|i| i.to.as_deref() == Some(r.addr.as_str()) || i.state == State::Firing);
        if let Some(i) = target {
            if i.route
                .as_ref()
                .is_none_or(|old| !old.ok || r.tables_written > 0)
            {
                i.route = Some(r.clone());
            }
        }
        if r.ok {
            self.route_right(now, wall, r.clone());
            return;
        }
        match self
            .open_master_incident(&r.master, false)
            .filter(|i| i.kind == Kind::RouteFailure)
        {
            Some(i) => i.detail = r.error.clone(),
            None => {
                let key = self.occurrence_key(now, &r.master, "route");
                if let Some(i) = self.open(
                    now,
                    wall,
                    key,
                    &r.master,
                    Kind::RouteFailure,
                    Severity::Critical,
                    None,
                ) {
                    i.detail = r.error.clone();
                    i.route = Some(r.clone());
                    i.occurrence = Some("route".into());
                }
            }
        }
    }

    /// A read found `master`'s VIP route right (`addr` → `target`) in every
    /// table without writing: another watcher fixed it, or a read-back was
    /// slow. Resolves its route failure (drops it when never told).
    pub fn on_route_verified(
        &mut self,
        now: Instant,
        wall: SystemTime,
        master: &str,
        addr: &str,
        target: &str,
    ) {
        if !self.configured(master) {
            self.ignored += 1;
            return;
        }
        let total = self
            .incidents
            .values()
            .find(|i| {
                i.master == master && i.kind == Kind::RouteFailure && i.state == State::Firing
            })
            .and_then(|i| i.route.as_ref().map(|r| r.tables_total))
            .unwrap_or(0);
        self.route_right(
            now,
            wall,
            RouteReport {
                master: master.to_owned(),
                addr: addr.to_owned(),
                ok: true,
                target: target.to_owned(),
                tables_written: 0,
                tables_total: total,
                latency_ms: 0.0,
                error: None,
            },
        );
    }

    fn route_right(&mut self, now: Instant, wall: SystemTime, r: RouteReport) {
        let Some(i) = self.incidents.values_mut().find(|i| {
            i.master == r.master && i.kind == Kind::RouteFailure && i.state == State::Firing
        }) else {
            return;
        };
        if i.sent.is_none() {
            // Failed and fixed within group_wait: never told, nothing to tell.
            let k = i.key.clone();
            self.incidents.remove(&k);
            return;
        }
        i.resolve(now, wall);
        i.route = Some(r);
    }

    /// Majority lost (`ok == false`) or regained for `master`.
    pub fn on_majority(
        &mut self,
        now: Instant,
        wall: SystemTime,
        master: &str,
        ok: bool,
        detail: &str,
    ) {
        if !self.configured(master) {
            self.ignored += 1;
            return;
        }
        self.on_condition(now, wall, master, Kind::NoMajority, "majority", !ok, detail);
    }

    /// EC2 unreachable (`down == true`) or reachable again.
    pub fn on_ec2(&mut self, now: Instant, wall: SystemTime, down: bool, detail: &str) {
        self.on_condition(now, wall, "*", Kind::Ec2Unreachable, "ec2", down, detail);
    }

    /// A sentinel refusing (`refused == true`) or accepting again the
    /// watcher's PSUBSCRIBE. One incident per sentinel.
    pub fn on_sentinel_refused(
        &mut self,
        now: Instant,
        wall: SystemTime,
        sentinel: &str,
        refused: bool,
        detail: &str,
    ) {
        // Keyed by the sentinel (in the master slot): one incident each.
        self.on_condition(
            now,
            wall,
            sentinel,
            Kind::SentinelRefused,
            "subscribe",
            refused,
            detail,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_condition(
        &mut self,
        now: Instant,
        wall: SystemTime,
        master: &str,
        kind: Kind,
        what: &str,
        bad: bool,
        detail: &str,
    ) {
        let open = self
            .incidents
            .values_mut()
            .find(|i| i.master == master && i.kind == kind && i.state == State::Firing);
        match (bad, open) {
            (true, Some(i)) => i.detail = Some(detail.to_owned()),
            (true, None) => {
                let key = self.occurrence_key(now, master, what);
                if let Some(i) = self.open(now, wall, key, master, kind, Severity::Critical, None) {
                    i.detail = Some(detail.to_owned());
                    i.occurrence = Some(what.to_owned());
                }
            }
            (false, Some(i)) => {
                i.resolved = Some(now);
                if i.sent.is_none() {
                    let k = i.key.clone();
                    self.incidents.remove(&k);
                } else {
                    i.state = State::Resolved;
                    i.resolved_at = Some(wall);
                }
            }
            (false, None) => {}
        }
    }

    /// When `i` may be told in its current state (`None`: nothing to tell).
    fn due_at(&self, i: &Incident) -> Option<Instant> {
        let ready = match (&i.kind, i.state) {
            // A manual failover (no +odown) is only news once it ends, or
            // when it has not ended long after it should have.
            (Kind::Failover, State::Firing) if !i.down => {
                i.opened + self.group_wait.max(STUCK_FAILOVER)
            }
            // A switch: wait briefly for the route outcome to quote it.
            (Kind::Failover, State::Resolved) if i.route.is_none() && i.to.is_some() => (i.opened
                + self.group_wait)
                .max(i.resolved.map(|r| r + ROUTE_WAIT).unwrap_or(i.opened)),
            _ => i.opened + self.group_wait,
        };
        match (i.state, i.sent) {
            (_, None) => Some(ready),
            (State::Resolved, Some((State::Firing, _))) => Some(ready),
            (State::Firing, Some((State::Firing, at))) => Some(at + self.repeat_interval),
            _ => None,
        }
    }

    /// What is due to be sent at `now`: each incident state change once, after
    /// `group_wait`, plus repeats of long-open incidents. Marks them sent, and
    /// forgets what is done and what is old.
    pub fn due(&mut self, now: Instant) -> Vec<Incident> {
        // Keep the counters of open conditions (see FORGET_OCCURRENCES).
        for i in self.incidents.values() {
            if let Some(w) = &i.occurrence {
                if let Some(o) = self.occurrences.get_mut(&(i.master.clone(), w.clone())) {
                    o.last = now;
                }
            }
        }
        let mut out = Vec::new();
        let mut done = Vec::new();
        let due: Vec<String> = self
            .incidents
            .iter()
            .filter(|(_, i)| self.due_at(i).is_some_and(|t| now >= t))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(i) = self.incidents.get_mut(&k) {
                out.push(i.clone());
                i.sent = Some((i.state, now));
                i.told_firing |= i.state == State::Firing;
                if i.state == State::Resolved {
                    done.push(k);
                }
            }
        }
        for k in done {
            self.incidents.remove(&k);
            self.closed.insert(k, now);
        }
        self.closed
            .retain(|_, at| now.saturating_duration_since(*at) < REMEMBER_CLOSED);
        let epoch = self.epoch;
        self.occurrences.retain(|_, o| {
            o.epoch == epoch && now.saturating_duration_since(o.last) < FORGET_OCCURRENCES
        });
        out
    }

    /// When the next message could become due (for the timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.incidents.values().filter_map(|i| self.due_at(i)).min()
    }
}

/// What the controller tells the alerter (through [`offer`]).
#[derive(Debug, Clone)]
pub enum AlertInput {
    Event {
        sentinel: usize,
        event: Event,
    },
    Route(RouteReport),
    /// A read found the VIP route right for `addr` (→ `target`) in every table
    /// without writing: another watcher fixed it, or a read-back was slow. It
    /// resolves a route-failure incident of `master`.
    RouteVerified {
        master: String,
        addr: String,
        target: String,
    },
    Majority {
        master: String,
        ok: bool,
        detail: String,
    },
    /// A sentinel refusing the watcher's PSUBSCRIBE (`ok == false`, ACL) or
    /// accepting it again.
    SentinelRefused {
        sentinel: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::event::parse;

    const GW: Duration = Duration::from_secs(10);

    fn fold() -> Fold {
        Fold::new(GW, Duration::from_secs(4 * 3600))
    }

    fn feed(f: &mut Fold, t0: Instant, at_ms: u64, sentinel: usize, channel: &str, payload: &str) {
        let e = parse(channel, payload).unwrap();
        f.on_event(
            t0 + Duration::from_millis(at_ms),
            SystemTime::now(),
            sentinel,
            &e,
        );
    }

    /// What three sentinels published for one SIGKILL failover (recorded on the rig, trimmed).
    fn sigkill_burst(f: &mut Fold, t0: Instant) {
        for s in 0..3 {
            feed(
                f,
                t0,
                1000 + s as u64,
                s,
                "+sdown",
                "master mymaster 127.0.0.2 6379",
            );
        }
        for s in 0..3 {
            feed(
                f,
                t0,
                1100 + s as u64,
                s,
                "+odown",
                "master mymaster 127.0.0.2 6379 #quorum 2/2",
            );
        }
        feed(f, t0, 1200, 0, "+new-epoch", "1");
        feed(
            f,
            t0,
            1201,
            0,
            "+try-failover",
            "master mymaster 127.0.0.2 6379",
        );
        feed(
            f,
            t0,
            1300,
            0,
            "+elected-leader",
            "master mymaster 127.0.0.2 6379",
        );
        feed(
            f,
            t0,
            1400,
            0,
            "+selected-slave",
            "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
        );
        feed(
            f,
            t0,
            2000,
            0,
            "+failover-end",
            "master mymaster 127.0.0.2 6379",
        );
        for s in [1, 2, 0] {
            feed(f, t0, 2100 + s as u64, s, "+new-epoch", "1");
            feed(
                f,
                t0,
                2200 + s as u64,
                s,
                "+switch-master",
                "mymaster 127.0.0.2 6379 127.0.0.3 6379",
            );
            feed(
                f,
                t0,
                2300 + s as u64,
                s,
                "+slave",
                "slave 127.0.0.4:6379 127.0.0.4 6379 @ mymaster 127.0.0.3 6379",
            );
        }
    }

    #[test]
    fn burst_from_three_sentinels_sends_one_alert() {
        let t0 = Instant::now();
        let mut f = fold();
        sigkill_burst(&mut f, t0);
        assert!(
            f.due(t0 + Duration::from_secs(5)).is_empty(),
            "held for group_wait"
        );
        let sent = f.due(t0 + Duration::from_secs(12));
        assert_eq!(sent.len(), 1, "{sent:?}");
        let i = &sent[0];
        assert_eq!(i.state, State::Resolved);
        assert!(
            i.summary()
                .starts_with("mymaster failed over 127.0.0.2:6379 → 127.0.0.3:6379"),
            "{}",
            i.summary()
        );
        assert_eq!(i.leader, Some(0));
        assert!(i.annotations.iter().any(|a| a == "+elected-leader"));
        assert!(i.events >= 10, "{}", i.events);
        assert!(f.due(t0 + Duration::from_secs(100)).is_empty(), "sent once");
        // A late duplicate switch from a healed sentinel is absorbed.
        feed(
            &mut f,
            t0,
            30_000,
            2,
            "+switch-master",
            "mymaster 127.0.0.2 6379 127.0.0.3 6379",
        );
        assert!(f.due(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn route_outcome_is_quoted_in_the_message() {
        let t0 = Instant::now();
        let mut f = fold();
        sigkill_burst(&mut f, t0);
        f.on_route(
            t0 + Duration::from_millis(2210),
            SystemTime::now(),
            &RouteReport {
                master: "mymaster".into(),
                addr: "127.0.0.3:6379".into(),
                ok: true,
                target: "eni-1".into(),
                tables_written: 2,
                tables_total: 2,
                latency_ms: 9.0,
                error: None,
            },
        );
        let sent = f.due(t0 + GW + Duration::from_secs(2));
        assert!(
            sent[0]
                .summary()
                .ends_with("VIP route updated in 2 tables in 9 ms"),
            "{}",
            sent[0].summary()
        );
    }

    #[test]
    fn slow_failover_sends_firing_then_resolved() {
        let t0 = Instant::now();
        let mut f = fold();
        feed(
            &mut f,
            t0,
            0,
            0,
            "+odown",
            "master mymaster 127.0.0.2 6379 #quorum 2/2",
        );
        let firing = f.due(t0 + GW);
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].state, State::Firing);
        feed(
            &mut f,
            t0,
            30_000,
            1,
            "+switch-master",
            "mymaster 127.0.0.2 6379 127.0.0.3 6379",
        );
        assert!(
            f.due(t0 + Duration::from_secs(31)).is_empty(),
            "waits briefly for the route outcome"
        );
        let resolved = f.due(t0 + Duration::from_secs(36));
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, State::Resolved);
        assert_eq!(resolved[0].key, firing[0].key);
    }

    #[test]
    fn manual_failover_is_one_message_even_when_slower_than_group_wait() {
        let t0 = Instant::now();
        let mut f = Fold::new(Duration::from_secs(1), Duration::from_secs(3600));
        feed(
            &mut f,
            t0,
            0,
            0,
            "+elected-leader",
            "master mymaster 127.0.0.2 6379",
        );
        assert!(
            f.due(t0 + Duration::from_secs(3)).is_empty(),
            "not 'down': nobody saw +odown"
        );
        feed(
            &mut f,
            t0,
            3000,
            1,
            "+switch-master",
            "mymaster 127.0.0.2 6379 127.0.0.3 6379",
        );
        let sent = f.due(t0 + Duration::from_secs(9));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].state, State::Resolved);
        assert_eq!(sent[0].leader, Some(0));
        // One that never finishes is told after a minute.
        feed(&mut f, t0, 99_000, 0, "+new-epoch", "2");
        feed(
            &mut f,
            t0,
            100_000,
            0,
            "+elected-leader",
            "master mymaster 127.0.0.3 6379",
        );
        assert!(f.due(t0 + Duration::from_secs(150)).is_empty());
        let stuck = f.due(t0 + Duration::from_secs(161));
        assert_eq!(stuck.len(), 1);
        assert!(
            stuck[0].summary().contains("has not finished"),
            "{}",
            stuck[0].summary()
        );
    }

    #[test]
    fn master_back_without_failover_resolves_on_minus_odown() {
        let t0 = Instant::now();
        let mut f = fold();
        feed(
            &mut f,
            t0,
            0,
            0,
            "+odown",
            "master mymaster 127.0.0.2 6379 #quorum 2/2",
        );
        assert_eq!(f.due(t0 + GW).len(), 1);
        feed(
            &mut f,
            t0,
            20_000,
            0,
            "-odown",
            "master mymaster 127.0.0.2 6379",
        );
        let r = f.due(t0 + Duration::from_secs(21));
        assert_eq!(r.len(), 1);
        assert!(r[0].summary().contains("back up"), "{}", r[0].summary());
    }

    #[test]
    fn lone_sdown_of_master_is_not_an_incident_and_short_replica_blip_is_silent() {
        let t0 = Instant::now();
        let mut f = fold();
        feed(&mut f, t0, 0, 0, "+sdown", "master mymaster 127.0.0.2 6379");
        feed(
            &mut f,
            t0,
            0,
            1,
            "+sdown",
            "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
        );
        feed(
            &mut f,
            t0,
            3000,
            1,
            "-sdown",
            "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
        );
        assert!(f.due(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn replica_down_longer_than_group_wait_is_one_warning_then_resolved() {
        let t0 = Instant::now();
        let mut f = fold();
        for s in 0..3 {
            feed(
                &mut f,
                t0,
                s,
                s as usize,
                "+sdown",
                "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
            );
        }
        let w = f.due(t0 + GW);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].severity, Severity::Warning);
        feed(
            &mut f,
            t0,
            60_000,
            0,
            "-sdown",
            "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
        );
        let r = f.due(t0 + Duration::from_secs(61));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].state, State::Resolved);
    }

    #[test]
    fn open_incident_repeats_every_repeat_interval() {
        let t0 = Instant::now();
        let mut f = Fold::new(GW, Duration::from_secs(3600));
        feed(
            &mut f,
            t0,
            0,
            0,
            "+odown",
            "master mymaster 127.0.0.2 6379 #quorum 2/2",
        );
        assert_eq!(f.due(t0 + GW).len(), 1);
        assert!(f.due(t0 + GW + Duration::from_secs(1800)).is_empty());
        assert_eq!(f.due(t0 + GW + Duration::from_secs(3600)).len(), 1);
    }

    #[test]
    fn same_replica_down_twice_in_one_epoch_is_two_incidents() {
        let t0 = Instant::now();
        let mut f = fold();
        let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
        feed(&mut f, t0, 0, 0, "+sdown", p);
        let first = f.due(t0 + GW);
        feed(&mut f, t0, 20_000, 0, "-sdown", p);
        assert_eq!(f.due(t0 + Duration::from_secs(21)).len(), 1);
        feed(&mut f, t0, 30_000, 0, "+sdown", p);
        let second = f.due(t0 + Duration::from_secs(41));
        assert_eq!(second.len(), 1);
        assert_ne!(first[0].key, second[0].key);
    }

    #[test]
    fn keys_are_the_same_on_every_watcher() {
        assert_eq!(incident_key("m", 3, None), incident_key("m", 3, None));
        assert_ne!(incident_key("m", 3, None), incident_key("m", 4, None));
        assert_eq!(incident_key("m", 3, None).len(), 64);
    }

    #[test]
    fn failed_route_write_is_an_incident_resolved_by_a_good_one() {
        let t0 = Instant::now();
        let mut f = fold();
        let mut r = RouteReport {
            master: "mymaster".into(),
            addr: "127.0.0.3:6379".into(),
            ok: false,
            target: "eni-1".into(),
            tables_written: 0,
            tables_total: 2,
            latency_ms: 1.0,
            error: Some("rtb-1: UnauthorizedOperation".into()),
        };
        f.on_route(t0, SystemTime::now(), &r);
        let s = f.due(t0 + GW);
        assert_eq!(s.len(), 1);
        assert!(s[0].summary().contains("FAILED"));
        r.ok = true;
        r.error = None;
        f.on_route(t0 + GW, SystemTime::now(), &r);
        assert_eq!(f.due(t0 + GW * 2)[0].state, State::Resolved);
    }

    fn report(ok: bool) -> RouteReport {
        RouteReport {
            master: "mymaster".into(),
            addr: "127.0.0.3:6379".into(),
            ok,
            target: "eni-3".into(),
            tables_written: if ok { 2 } else { 0 },
            tables_total: 2,
            latency_ms: 7.0,
            error: (!ok).then(|| "rtb-1: RequestLimitExceeded".into()),
        }
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    const ODOWN: &str = "master mymaster 127.0.0.2 6379 #quorum 2/2";
    const MASTER: &str = "master mymaster 127.0.0.2 6379";
    const SWITCH: &str = "mymaster 127.0.0.2 6379 127.0.0.3 6379";

    #[test]
    fn route_failure_resolves_when_a_read_finds_the_route_right_without_a_write() {
        let t0 = Instant::now();
        let mut f = fold();
        let w = SystemTime::now();
        // A verification with nothing failing is nothing (and duplicates too).
        f.on_route_verified(t0, w, "mymaster", "127.0.0.3:6379", "eni-3");
        f.on_route(t0, w, &report(false));
        let fired = f.due(t0 + GW);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].state, State::Firing);
        // Another watcher fixed it: our next read finds it right, no write.
        f.on_route_verified(at(t0, 20_000), w, "mymaster", "127.0.0.3:6379", "eni-3");
        let r = f.due(at(t0, 20_000));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].state, State::Resolved);
        assert_eq!(
            r[0].key, fired[0].key,
            "resolves the same incident (PagerDuty)"
        );
        assert_eq!(
            r[0].summary(),
            "mymaster: VIP route is right again: 127.0.0.3:6379 → eni-3 (found by a read; no write needed)"
        );
        // Duplicated verification, and no more repeats of the old failure.
        f.on_route_verified(at(t0, 21_000), w, "mymaster", "127.0.0.3:6379", "eni-3");
        assert!(f.due(at(t0, 22_000)).is_empty());
        assert_eq!(f.open_count(), 0, "no repeats every repeat_interval");
        // A later failure is a new incident with a new key.
        f.on_route(at(t0, 30_000), w, &report(false));
        let again = f.due(at(t0, 30_000) + GW);
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].key, fired[0].key);
    }

    #[test]
    fn route_failure_fixed_before_it_was_told_is_dropped() {
        let t0 = Instant::now();
        let w = SystemTime::now();
        // Fixed by our own retry…
        let mut f = fold();
        f.on_route(t0, w, &report(false));
        f.on_route(at(t0, 600), w, &report(true));
        assert!(
            f.due(t0 + GW * 10).is_empty(),
            "no 'recovered', no PagerDuty pair"
        );
        assert_eq!(f.open_count(), 0);
        // …or found right by a read.
        let mut f = fold();
        f.on_route(t0, w, &report(false));
        f.on_route(at(t0, 300), w, &report(false));
        f.on_route_verified(at(t0, 900), w, "mymaster", "127.0.0.3:6379", "eni-3");
        assert!(f.due(t0 + GW * 10).is_empty());
        assert_eq!(f.state_size(), 1, "only the occurrence counter is left");
    }

    /// odown, a try by `leader`, its election; returns the time of the election.
    fn down_and_elected(f: &mut Fold, t0: Instant, from_ms: u64, epoch: u64, leader: usize) {
        if from_ms == 0 {
            feed(f, t0, 0, 0, "+odown", ODOWN);
        }
        feed(
            f,
            t0,
            from_ms + 100,
            leader,
            "+new-epoch",
            &epoch.to_string(),
        );
        feed(f, t0, from_ms + 100, leader, "+try-failover", MASTER);
        feed(f, t0, from_ms + 200, leader, "+elected-leader", MASTER);
    }

    #[test]
    fn aborted_failover_while_the_master_stays_down_keeps_firing_with_the_reason_and_the_retry_reports_its_own_duration(
    ) {
        let t0 = Instant::now();
        let mut f = fold();
        down_and_elected(&mut f, t0, 0, 1, 0);
        feed(&mut f, t0, 300, 0, "-failover-abort-no-good-slave", MASTER);
        let told = f.due(t0 + GW);
        assert_eq!(told.len(), 1, "{told:?}");
        // The master is still down: the page stays firing, saying why.
        assert_eq!(told[0].state, State::Firing);
        assert_eq!(
            told[0].summary(),
            "mymaster is down at 127.0.0.2:6379 (objectively down); failover ABORTED: no replica \
             fit to be promoted (-failover-abort-no-good-slave); Sentinel will retry"
        );
        assert_eq!(f.open_count(), 1);
        // An hour later Sentinel retries (new epoch) and succeeds in 2 s: the
        // same incident resolves, its failover time counted from the retry.
        let retry = 3600 * 1000;
        down_and_elected(&mut f, t0, retry, 2, 1);
        feed(&mut f, t0, retry + 2100, 1, "+switch-master", SWITCH);
        let sent = f.due(at(t0, retry + 2100) + GW);
        let resolved: Vec<&Incident> = sent.iter().filter(|i| i.state == State::Resolved).collect();
        assert_eq!(resolved.len(), 1, "{sent:?}");
        let s = resolved[0].summary();
        assert!(
            s.starts_with("mymaster failed over 127.0.0.2:6379 → 127.0.0.3:6379 in 2.0 s"),
            "{s}"
        );
        assert!(resolved[0].down, "the retry knows the master is down");
    }

    #[test]
    fn each_abort_reason_is_told() {
        for (event, reason) in [
            (
                "-failover-abort-not-elected",
                "no sentinel was elected leader",
            ),
            (
                "-failover-abort-no-good-slave",
                "no replica fit to be promoted",
            ),
            (
                "-failover-abort-slave-timeout",
                "did not become master within failover-timeout",
            ),
        ] {
            let t0 = Instant::now();
            let mut f = fold();
            feed(&mut f, t0, 0, 0, "+odown", ODOWN);
            feed(&mut f, t0, 100, 0, "+try-failover", MASTER);
            if event != "-failover-abort-not-elected" {
                feed(&mut f, t0, 200, 0, "+elected-leader", MASTER);
            }
            feed(&mut f, t0, 20_000, 0, event, MASTER);
            let sent = f.due(at(t0, 20_000));
            // The master stays down: one firing message, with the reason.
            assert_eq!(sent.len(), 1, "{event}: {sent:?}");
            assert_eq!(sent[0].state, State::Firing, "{event}");
            assert!(sent[0].summary().contains(reason), "{}", sent[0].summary());
        }
    }

    #[test]
    fn not_elected_from_a_sentinel_that_lost_the_vote_does_not_end_the_failover() {
        let t0 = Instant::now();
        let mut f = fold();
        feed(&mut f, t0, 0, 0, "+odown", ODOWN);
        feed(&mut f, t0, 100, 1, "+try-failover", MASTER);
        feed(&mut f, t0, 150, 0, "+try-failover", MASTER);
        feed(&mut f, t0, 300, 0, "+elected-leader", MASTER);
        // Sentinel 1 lost the vote; it says so after its election timeout.
        feed(&mut f, t0, 4300, 1, "-failover-abort-not-elected", MASTER);
        assert_eq!(f.open_count(), 1, "sentinel 0 is still failing over");
        feed(&mut f, t0, 5000, 2, "+switch-master", SWITCH);
        let sent = f.due(t0 + GW * 2);
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].summary().contains("failed over"),
            "{}",
            sent[0].summary()
        );
        assert!(
            sent[0].summary().contains("in 5.0 s"),
            "{}",
            sent[0].summary()
        );
        // Late: another loser's abort after the switch is absorbed, and does
        // not touch the next failover.
        feed(&mut f, t0, 9000, 2, "-failover-abort-not-elected", MASTER);
        assert!(f.due(t0 + GW * 3).is_empty());
        assert_eq!(f.open_count(), 0);
    }

    #[test]
    fn the_same_abort_on_every_retry_is_told_once_while_the_master_stays_down() {
        let t0 = Instant::now();
        let mut f = fold();
        down_and_elected(&mut f, t0, 0, 1, 0);
        feed(&mut f, t0, 300, 0, "-failover-abort-no-good-slave", MASTER);
        assert_eq!(f.due(t0 + GW).len(), 1);
        // Sentinel retries every 2 × failover-timeout, failing the same way.
        for n in 1..=5u64 {
            let t = n * 360_000;
            down_and_elected(&mut f, t0, t, 1 + n, 0);
            feed(
                &mut f,
                t0,
                t + 300,
                0,
                "-failover-abort-no-good-slave",
                MASTER,
            );
            // Duplicated abort (a reconnect replays nothing, but be safe).
            feed(
                &mut f,
                t0,
                t + 301,
                0,
                "-failover-abort-no-good-slave",
                MASTER,
            );
            assert!(f.due(at(t0, t) + GW).is_empty(), "retry {n} told again");
        }
        // A different outcome is news again: the retry that works.
        down_and_elected(&mut f, t0, 3_000_000, 10, 0);
        feed(&mut f, t0, 3_001_000, 0, "+switch-master", SWITCH);
        let sent = f.due(at(t0, 3_001_000) + GW);
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].summary().contains("in 0.9 s"),
            "{}",
            sent[0].summary()
        );
        // The master came back: the next down/abort is told again.
        feed(
            &mut f,
            t0,
            4_000_000,
            0,
            "+odown",
            "master mymaster 127.0.0.3 6379 #quorum 2/2",
        );
        feed(&mut f, t0, 4_000_100, 0, "+new-epoch", "11");
        feed(
            &mut f,
            t0,
            4_000_100,
            0,
            "+try-failover",
            "master mymaster 127.0.0.3 6379",
        );
        feed(
            &mut f,
            t0,
            4_000_200,
            0,
            "+elected-leader",
            "master mymaster 127.0.0.3 6379",
        );
        feed(
            &mut f,
            t0,
            4_000_300,
            0,
            "-failover-abort-no-good-slave",
            "master mymaster 127.0.0.3 6379",
        );
        assert_eq!(f.due(at(t0, 4_000_000) + GW).len(), 1);
    }

    #[test]
    fn a_lost_abort_does_not_stretch_the_next_failover_time() {
        let t0 = Instant::now();
        let mut f = fold();
        down_and_elected(&mut f, t0, 0, 1, 0);
        // (the abort was lost while our connection was down)
        assert_eq!(f.due(t0 + GW).len(), 1, "told firing");
        let retry = 2 * 3600 * 1000;
        feed(&mut f, t0, retry, 1, "+new-epoch", "2");
        feed(&mut f, t0, retry, 1, "+try-failover", MASTER);
        feed(&mut f, t0, retry + 1500, 2, "+switch-master", SWITCH);
        let sent = f.due(at(t0, retry + 1500) + GW);
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].summary().contains("in 1.5 s"),
            "{}",
            sent[0].summary()
        );
    }

    #[test]
    fn a_retry_in_the_same_epoch_after_an_abort_is_told_not_absorbed() {
        // +new-epoch of the retry missed: the retry and its switch must still
        // be told, with the failover time of the retry.
        let t0 = Instant::now();
        let mut f = fold();
        down_and_elected(&mut f, t0, 0, 1, 0);
        feed(&mut f, t0, 300, 0, "-failover-abort-slave-timeout", MASTER);
        let aborted = f.due(t0 + GW);
        assert_eq!(aborted.len(), 1);
        feed(&mut f, t0, 60_000, 0, "+try-failover", MASTER);
        feed(&mut f, t0, 61_000, 0, "+switch-master", SWITCH);
        let sent = f.due(at(t0, 61_000) + GW);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].summary().contains("failed over") && sent[0].summary().contains("in 1.0 s"),
            "{}",
            sent[0].summary()
        );
        // Two watchers that saw the same events agree on that key.
        let mut g = fold();
        down_and_elected(&mut g, t0, 0, 1, 0);
        feed(&mut g, t0, 300, 0, "-failover-abort-slave-timeout", MASTER);
        g.due(t0 + GW);
        feed(&mut g, t0, 60_000, 0, "+try-failover", MASTER);
        feed(&mut g, t0, 61_000, 0, "+switch-master", SWITCH);
        assert_eq!(g.due(at(t0, 61_000) + GW)[0].key, sent[0].key);
    }

    #[test]
    fn manual_failover_aborted_says_the_master_was_not_changed() {
        let t0 = Instant::now();
        let mut f = fold();
        feed(&mut f, t0, 0, 0, "+new-epoch", "1");
        feed(&mut f, t0, 0, 0, "+try-failover", MASTER);
        feed(&mut f, t0, 10, 0, "+elected-leader", MASTER);
        feed(&mut f, t0, 4100, 0, "-failover-abort-slave-timeout", MASTER);
        let sent = f.due(t0 + GW);
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].summary().ends_with("the master was not changed"),
            "{}",
            sent[0].summary()
        );
    }

    #[test]
    fn events_of_masters_not_configured_are_not_folded() {
        let t0 = Instant::now();
        let mut f = fold().for_masters(["mymaster".to_owned()]);
        feed(
            &mut f,
            t0,
            0,
            0,
            "+odown",
            "master other 10.0.0.9 6379 #quorum 2/2",
        );
        feed(
            &mut f,
            t0,
            1,
            0,
            "+switch-master",
            "other 10.0.0.9 6379 10.0.0.8 6379",
        );
        feed(
            &mut f,
            t0,
            2,
            0,
            "+sdown",
            "slave 10.0.0.8:6379 10.0.0.8 6379 @ other 10.0.0.9 6379",
        );
        assert_eq!(f.ignored, 3);
        assert_eq!(f.state_size(), 0);
        assert!(f.due(t0 + GW).is_empty());
        // Configured ones still are.
        feed(&mut f, t0, 3, 0, "+odown", ODOWN);
        assert_eq!(f.open_count(), 1);
    }

    #[test]
    fn occurrence_counters_are_forgotten_when_the_epoch_moves_on_or_after_an_idle_hour() {
        let t0 = Instant::now();
        let mut f = fold();
        let p = "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379";
        feed(&mut f, t0, 0, 0, "+sdown", p);
        feed(&mut f, t0, 1000, 0, "-sdown", p);
        f.due(at(t0, 1000));
        assert_eq!(f.state_size(), 1, "one counter");
        // Kept while the condition is open, however long.
        feed(&mut f, t0, 2000, 0, "+sdown", p);
        let first = f.due(at(t0, 2000) + GW);
        assert_eq!(first.len(), 1);
        f.due(at(t0, 5 * 3600 * 1000));
        feed(&mut f, t0, 5 * 3600 * 1000, 0, "-sdown", p);
        assert_eq!(f.due(at(t0, 5 * 3600 * 1000)).len(), 1);
        // Down again at once: a new key, not the remembered one (absorbed).
        feed(&mut f, t0, 5 * 3600 * 1000 + 1, 0, "+sdown", p);
        let again = f.due(at(t0, 5 * 3600 * 1000 + 1) + GW);
        assert_eq!(again.len(), 1, "not absorbed as a duplicate");
        assert_ne!(again[0].key, first[0].key);
        feed(&mut f, t0, 5 * 3600 * 1000 + 20_000, 0, "-sdown", p);
        f.due(at(t0, 5 * 3600 * 1000 + 20_000));
        // An idle hour later, nothing is left.
        f.due(at(t0, 7 * 3600 * 1000));
        assert_eq!(f.state_size(), 0);
        // A new epoch drops the old epoch's counters.
        feed(&mut f, t0, 7 * 3600 * 1000, 0, "+sdown", p);
        feed(&mut f, t0, 7 * 3600 * 1000 + 10, 0, "-sdown", p);
        feed(&mut f, t0, 7 * 3600 * 1000 + 20, 0, "+new-epoch", "9");
        f.due(at(t0, 7 * 3600 * 1000 + 30));
        assert_eq!(f.state_size(), 0);
    }

    #[test]
    fn a_master_removed_from_the_config_leaves_nothing_behind_and_no_open_page() {
        let t0 = Instant::now();
        let w = SystemTime::now();
        let mut f = fold().for_masters(["mymaster".to_owned(), "other".to_owned()]);
        feed(
            &mut f,
            t0,
            0,
            0,
            "+odown",
            "master other 10.0.0.9 6379 #quorum 2/2",
        );
        feed(
            &mut f,
            t0,
            0,
            0,
            "+switch-master",
            "mymaster 127.0.0.2 6379 127.0.0.3 6379",
        );
        assert_eq!(f.due(t0 + GW).len(), 2);
        f.set_masters(at(t0, 20_000), w, ["mymaster".to_owned()]);
        let closed = f.due(at(t0, 20_000));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].state, State::Resolved);
        assert!(
            closed[0].summary().contains("no longer watched"),
            "{}",
            closed[0].summary()
        );
        f.due(at(t0, 3 * 3600 * 1000));
        assert_eq!(f.state_size(), 1, "mymaster's last switch only");
    }

    #[test]
    fn a_late_switch_to_the_failing_master_does_not_end_its_incident() {
        let t0 = Instant::now();
        let mut f = fold();
        // 127.0.0.2 goes down; a lagging sentinel now publishes the *previous*
        // failover's switch (… → 127.0.0.2).
        feed(&mut f, t0, 0, 0, "+odown", ODOWN);
        feed(
            &mut f,
            t0,
            100,
            2,
            "+switch-master",
            "mymaster 127.0.0.4 6379 127.0.0.2 6379",
        );
        assert_eq!(f.open_count(), 1, "still failing over");
        feed(&mut f, t0, 900, 0, "+switch-master", SWITCH);
        let sent = f.due(at(t0, 900) + GW);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let s = sent[0].summary();
        assert!(s.contains("127.0.0.2:6379 → 127.0.0.3:6379"), "{s}");
    }
}
