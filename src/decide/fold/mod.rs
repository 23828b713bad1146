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
//! - **Level-triggered** (`level`): every majority read hands the fold the
//!   master's state ([`MasterRead`]: address, config-epoch, `o_down`,
//!   `failover_in_progress`). It opens the master's incident when its events
//!   were missed (a watcher started mid-incident), keeps it firing while the
//!   sentinels say `o_down`, resolves it when they say the master is up (its
//!   `-odown` lost), and tells a failover whose `+switch-master` was missed. A
//!   read older than the master's last event is ignored.
//! - **One failover, one incident**: the leader's `-odown` just before its
//!   switch, the old master's `+sdown`/`-sdown` as a replica and its
//!   `+convert-to-slave`, the replicas' reconfiguration: all attach to that
//!   failover's incident (as notes while it is not told) or are dropped.
//! - **Planned**: a failover this watcher saw start (`+try-failover`,
//!   `+elected-leader`) with the master known up (a read without `o_down`) and
//!   never seen down (`+sdown`/`+odown`) is a planned switchover: `Info`, never
//!   paged. Without that knowledge (started mid-switchover, switch seen only by
//!   a read) it is unplanned.
//! - **Flap damping** (`group_interval`): after a replica's or sentinel's
//!   down incident is first told, its further changes (its resolve included)
//!   are told at most once per `group_interval`, as one summary ("went down 5
//!   times in 35 s; up now"); blips shorter than `group_wait` count as flaps.
//!   Other incidents are told on every change.
//! - Keys: [`incident_key`], hex sha256 of the deployment (`cluster`), the
//!   master, the config-epoch at open (+ `what` for counted conditions): the
//!   same on every watcher of one deployment, different across deployments.
//!   A master's failover incident uses
//!   the master's **config-epoch** when it opens (from the reads), which a
//!   restarted watcher reads back: the same incident has the same key across a
//!   restart. A failover moves the config-epoch, so each failover is a new key;
//!   the master going down again without one is the same group again.
//! - Memory is bounded: events of masters not configured are not folded, and
//!   per-master state is pruned (see [`Fold::state_size`]).
//!
//! Files: `incident` (the incident and the fold's inputs), `text` (all message
//! text), this file (the fold's state, opening incidents), `events` (sentinel
//! event intake, switches), `level` (majority reads), `outcomes` (route
//! outcomes and other conditions), `timers` (what is due when, damping).

mod events;
mod incident;
mod level;
mod outcomes;
mod text;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use crate::watch::event::InstanceEvent;
pub use incident::{
    incident_key, AlertInput, Condition, Ended, Incident, Kind, MasterRead, RouteReport, Severity,
    State,
};

/// When something happened, on both clocks: `mono` for the fold's timing
/// (grouping, repeats), `wall` for the times told to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Stamp {
    /// Both clocks, now.
    pub fn now() -> Stamp {
        Stamp {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// How many times a condition occurred for a master in one epoch.
#[derive(Debug)]
struct Occurrences {
    epoch: u64,
    count: u32,
    /// Last issued, or last seen open: a counter is forgotten only well after.
    last: Instant,
}

/// What the fold knows of one master's state, from majority reads and events.
#[derive(Debug, Default)]
struct Level {
    /// Where the master is (last read, or last switch).
    addr: Option<String>,
    /// Its config-epoch (last read, or the epoch of the last switch): the
    /// failover incident's key is made of it, so a watcher restarted while
    /// the incident is open computes the same key from its first read.
    config_epoch: Option<u64>,
    /// Known up (`Some(true)`: a read without `o_down`, a `-odown`, a switch)
    /// or down; `None` until the first read or event.
    up: Option<bool>,
    /// A sentinel said `+sdown` of the master (not cleared since).
    sdown: bool,
    /// The last event about the master's state: a read that started
    /// before it is older news and does not override it.
    event_at: Option<Instant>,
    /// The same for its replicas' `+sdown`/`-sdown`.
    replica_event_at: Option<Instant>,
}

/// The fold's state.
#[derive(Debug)]
pub struct Fold {
    /// The deployment's name (`cluster`): part of every key made from now on.
    cluster: String,
    group_wait: Duration,
    repeat_interval: Duration,
    /// After a group's first notice, further changes to it are told at most
    /// once per `group_interval` (flap damping, as Alertmanager does).
    group_interval: Duration,
    /// Per configured master: what is known of its state.
    levels: BTreeMap<String, Level>,
    /// Per master: the old master of its last switch, and when a sentinel
    /// first saw it back (`-sdown`). Its `+sdown`/`-sdown` as a replica belong
    /// to that failover until [`FORMER_SETTLES`] after it is back (sentinels
    /// see it go and come at slightly different times).
    former: BTreeMap<String, (String, Option<Instant>)>,
    /// Configured master names (`None`: every master is folded).
    masters: Option<BTreeSet<String>>,
    /// Open (or resolved but not yet sent) incidents by key.
    incidents: BTreeMap<String, Incident>,
    /// Highest epoch seen (from `+new-epoch` and majority reads).
    epoch: u64,
    /// Keys recently closed, to absorb late duplicates (key → when closed,
    /// and how many notices it had: a reopened group continues the count).
    closed: BTreeMap<String, (Instant, u32)>,
    /// Last switch per configured master (its destination), to absorb late
    /// duplicates after the incident was told and closed.
    last_switch: BTreeMap<String, String>,
    /// Configured masters currently objectively down (`+odown` … `-odown` or switch).
    odown: BTreeSet<String>,
    /// Last abort told per master while it stays down: the same abort of each
    /// retry is not told again.
    last_abort: BTreeMap<String, InstanceEvent>,
    /// Occurrences of each condition per master (`master`, `what`).
    occurrences: BTreeMap<(String, String), Occurrences>,
    pub absorbed: usize,
    /// Events about masters that are not configured (not folded).
    pub ignored: usize,
}

/// How long after a sentinel saw a failover's old master back as a replica
/// the others' `+sdown`/`-sdown` of it still belong to that failover.
const FORMER_SETTLES: Duration = Duration::from_secs(60);

/// How long a closed incident's key is remembered to absorb late duplicates.
const REMEMBER_CLOSED: Duration = Duration::from_secs(600);

impl Fold {
    /// Folds one input from the controller, whatever its kind.
    pub fn on_input(&mut self, at: Stamp, input: &AlertInput) {
        match input {
            AlertInput::Event { sentinel, event } => self.on_event(at, *sentinel, event),
            AlertInput::Route(r) => self.on_route(at, r),
            AlertInput::RouteVerified {
                master,
                addr,
                target,
            } => self.on_route_verified(at, master, addr, target),
            AlertInput::Majority { master, ok, detail } => {
                self.on_majority(at, master, *ok, detail)
            }
            AlertInput::Ec2 { ok, detail } => self.on_ec2(at, !*ok, detail),
            AlertInput::SentinelRefused {
                sentinel,
                ok,
                detail,
            } => self.on_sentinel_refused(at, sentinel, !*ok, detail),
            AlertInput::MasterRead(r) => self.on_master_read(at, r),
            AlertInput::Condition {
                master,
                condition,
                bad,
                detail,
            } => self.on_failure_condition(at, master, *condition, *bad, detail),
        }
    }

    /// A fold that folds every master's events (see [`Fold::for_masters`]).
    pub fn new(group_wait: Duration, repeat_interval: Duration) -> Fold {
        Fold {
            cluster: String::new(),
            group_wait,
            repeat_interval,
            group_interval: Duration::ZERO,
            levels: BTreeMap::new(),
            former: BTreeMap::new(),
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

    /// Flap damping: after a group's first notice, its further changes are
    /// told at most once per `interval` (zero: every change is told).
    pub fn with_group_interval(mut self, interval: Duration) -> Fold {
        self.group_interval = interval;
        self
    }

    /// New `group_interval` (reload).
    pub fn set_group_interval(&mut self, interval: Duration) {
        self.group_interval = interval;
    }

    /// Keys made by this fold name deployment `cluster` (see [`incident_key`]).
    pub fn for_cluster(mut self, cluster: &str) -> Fold {
        self.cluster = cluster.to_owned();
        self
    }

    /// A renamed deployment (reload): incidents opened from now on carry the
    /// new name; open ones keep the key and name they were told with.
    pub fn set_cluster(&mut self, cluster: &str) {
        self.cluster = cluster.to_owned();
    }

    /// The key of `master`'s incident at `epoch` (`what`: a counted condition).
    fn key(&self, master: &str, epoch: u64, what: Option<&str>) -> String {
        incident_key(&self.cluster, master, epoch, what)
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
    pub fn set_masters(&mut self, at: Stamp, names: impl IntoIterator<Item = String>) {
        let names: BTreeSet<String> = names.into_iter().collect();
        let keep = |m: &String| m == "*" || names.contains(m);
        self.last_switch.retain(|m, _| keep(m));
        self.levels.retain(|m, _| keep(m));
        self.former.retain(|m, _| keep(m));
        self.odown.retain(keep);
        self.last_abort.retain(|m, _| keep(m));
        self.occurrences.retain(|(m, _), _| keep(m));
        self.incidents
            .retain(|_, i| keep(&i.master) || (i.told_firing && i.state == State::Firing));
        for i in self.incidents.values_mut().filter(|i| !keep(&i.master)) {
            i.resolve(at);
            i.ended = Some(Ended::Removed);
        }
        self.masters = Some(names);
    }

    fn configured(&self, master: &str) -> bool {
        self.masters.as_ref().is_none_or(|m| m.contains(master))
    }

    /// How many entries the fold holds (incidents, remembered keys, per-master
    /// state, counters): flat over months of events. The per-master level and
    /// old-master entries are not counted: one each per configured master at
    /// most, dropped with the master on a reload.
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
        let what = format!("{what}#{}", o.count);
        self.key(master, epoch, Some(&what))
    }

    /// Tells the fold the latest config-epoch known from a majority read.
    pub fn observe_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// Whether a majority read (or the events since) says `master` is
    /// objectively down.
    pub fn master_down(&self, master: &str) -> bool {
        self.levels.get(master).and_then(|l| l.up) == Some(false)
    }

    /// The key of `master`'s failover incident: its config-epoch when it
    /// opens (from the reads; the events' epoch until a read came), which a
    /// restarted watcher reads back. One group per master and config-epoch:
    /// the master going down again without a failover is the same group.
    fn failover_key(&self, master: &str) -> String {
        let epoch = self
            .levels
            .get(master)
            .and_then(|l| l.config_epoch)
            .unwrap_or(self.epoch);
        self.key(master, epoch, None)
    }

    fn level(&mut self, master: &str) -> &mut Level {
        self.levels.entry(master.to_owned()).or_default()
    }

    pub fn open_count(&self) -> usize {
        self.incidents
            .values()
            .filter(|i| i.state == State::Firing)
            .count()
    }

    /// `master`'s instance-down incident for `addr` (only a firing one when
    /// `firing_only`).
    fn instance_incident(
        &mut self,
        master: &str,
        addr: &str,
        firing_only: bool,
    ) -> Option<&mut Incident> {
        self.incidents.values_mut().find(|i| {
            i.master == master
                && (!firing_only || i.state == State::Firing)
                && matches!(&i.kind, Kind::InstanceDown { instance, .. } if instance == addr)
        })
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

    fn open(
        &mut self,
        at: Stamp,
        key: String,
        master: &str,
        kind: Kind,
        severity: Severity,
        from: Option<String>,
    ) -> Option<&mut Incident> {
        if self.recently_closed(&key, at.mono) {
            self.absorbed += 1;
            return None;
        }
        let inc = self.incidents.entry(key.clone()).or_insert_with(|| {
            Incident::new(key, master, kind, severity, at.mono, at.wall, from)
                .in_cluster(&self.cluster)
        });
        Some(inc)
    }

    /// Whether `key` was closed less than `REMEMBER_CLOSED` ago (the map is
    /// pruned lazily, in `due`).
    fn recently_closed(&self, key: &str, now: Instant) -> bool {
        self.closed
            .get(key)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < REMEMBER_CLOSED)
    }

    /// Opens a failover incident for a new attempt, down or switch (not a
    /// late duplicate: the caller checked). Its key is the master's
    /// config-epoch's ([`Fold::failover_key`]): when that group was already
    /// told and closed, the master went down again without a failover, and
    /// the group is opened again under its key (its notices go on counting,
    /// so each message keeps its own `webhook-id`). One not yet told (resolved
    /// within `group_wait`) is reopened: a flap, summarised when told.
    fn open_new_failover(&mut self, at: Stamp, master: &str, from: String) -> &mut Incident {
        let key = self.failover_key(master);
        let down = self.odown.contains(master);
        let up_before = self
            .levels
            .get(master)
            .is_some_and(|l| l.up == Some(true) && !l.sdown);
        let notices = self.closed.remove(&key).map(|(_, n)| n).unwrap_or(0);
        let i = self.incidents.entry(key.clone()).or_insert_with(|| {
            let mut i = Incident::new(
                key,
                master,
                Kind::Failover,
                Severity::Critical,
                at.mono,
                at.wall,
                Some(from.clone()),
            )
            .in_cluster(&self.cluster);
            i.notices = notices;
            i.up_before = up_before;
            i
        });
        if i.state == State::Resolved {
            // The same group again: down again after a blip.
            i.reopen(at);
            if i.sent.is_some() {
                i.opened = at.mono;
                i.opened_at = at.wall;
            }
            i.kind = Kind::Failover;
            i.severity = Severity::Critical;
            i.from = Some(from);
            i.to = None;
            i.failover_time = None;
            i.aborted = None;
            i.attempt_started = at.mono;
            i.tries = 0;
            i.last_try = None;
            i.route = None;
            i.planned = false;
            i.up_before = up_before && i.up_before;
        }
        i.down |= down;
        i
    }
}
