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
//! - Keys: [`incident_key`], hex sha256 of the deployment (`cluster`), the
//!   master, the config-epoch at open (+ `what` for counted conditions): the
//!   same on every watcher of one deployment, different across deployments.
//! - Memory is bounded: events of masters not configured are not folded, and
//!   per-master state is pruned (see [`Fold::state_size`]).
//!
//! Files: `incident` (the incident and the fold's inputs), `text` (all message
//! text), this file (the fold's state, opening incidents), `events` (sentinel
//! event intake), `outcomes` (route outcomes and other conditions), `timers`
//! (what is due when).

mod events;
mod incident;
mod outcomes;
mod text;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use crate::watch::event::InstanceEvent;
pub use incident::{
    incident_key, AlertInput, Condition, Ended, Incident, Kind, RouteReport, Severity, State,
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

/// The fold's state.
#[derive(Debug)]
pub struct Fold {
    /// The deployment's name (`cluster`): part of every key made from now on.
    cluster: String,
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
    last_abort: BTreeMap<String, InstanceEvent>,
    /// Occurrences of each condition per master (`master`, `what`).
    occurrences: BTreeMap<(String, String), Occurrences>,
    pub absorbed: usize,
    /// Events about masters that are not configured (not folded).
    pub ignored: usize,
}

/// How long a closed incident's key is remembered to absorb late duplicates.
const REMEMBER_CLOSED: Duration = Duration::from_secs(600);

impl Fold {
    /// A fold that folds every master's events (see [`Fold::for_masters`]).
    pub fn new(group_wait: Duration, repeat_interval: Duration) -> Fold {
        Fold {
            cluster: String::new(),
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
        let what = format!("{what}#{}", o.count);
        self.key(master, epoch, Some(&what))
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
            .is_some_and(|at| now.saturating_duration_since(*at) < REMEMBER_CLOSED)
    }

    /// Opens a failover incident for a new attempt or switch (not a late
    /// duplicate: the caller checked). Its key is the epoch's, unless that one
    /// is taken (an aborted attempt of the same epoch, `+new-epoch` missed):
    /// then the epoch's next occurrence, which every watcher computes alike.
    fn open_new_failover(&mut self, at: Stamp, master: &str, from: String) -> &mut Incident {
        let mut key = self.key(master, self.epoch, None);
        if self.recently_closed(&key, at.mono) || self.incidents.contains_key(&key) {
            key = self.occurrence_key(at.mono, master, "failover");
        }
        let down = self.odown.contains(master);
        let i = self.incidents.entry(key.clone()).or_insert_with(|| {
            Incident::new(
                key,
                master,
                Kind::Failover,
                Severity::Critical,
                at.mono,
                at.wall,
                Some(from),
            )
            .in_cluster(&self.cluster)
        });
        i.down |= down;
        i
    }
}
