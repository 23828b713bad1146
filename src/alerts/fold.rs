//! The incident fold: a pure state machine over events, route outcomes and
//! time. No I/O; time is passed in, so grouping is tested without sleeping.
//!
//! - A master incident opens on the first `+odown master` (a lone `+sdown` is
//!   not one) or, for a switch with no down phase (manual failover), on the
//!   first `+switch-master`. It is held for `group_wait`, so a quick failover
//!   gives one "failed over A → B" message. Failover progress events annotate it.
//!   The first `+switch-master` (or `-odown`) resolves it; the same switch seen
//!   from the other sentinels is absorbed.
//! - A replica or sentinel in `+sdown` for longer than `group_wait` is a warning
//!   incident, one per instance, resolved by `-sdown`.
//! - Failed route writes and loss of the sentinel majority are incidents too.
//! - Keys: hex sha256 of `sentinel:<master>:<epoch>` (+ `:<what>` for
//!   warnings), the same on every watcher.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::RouteReport;
use crate::event::{Event, Role};

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
}

impl Kind {
    pub fn alertname(&self) -> &'static str {
        match self {
            Kind::Failover => "RedisMasterFailover",
            Kind::InstanceDown { .. } => "RedisInstanceDown",
            Kind::RouteFailure => "VipRouteUpdateFailed",
            Kind::NoMajority => "SentinelNoMajority",
            Kind::Ec2Unreachable => "Ec2Unreachable",
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
        }
    }

    /// One-line summary, the message's headline.
    pub fn summary(&self) -> String {
        let route = self.route.as_ref().map(route_text).unwrap_or_default();
        match (&self.kind, self.state) {
            (Kind::Failover, State::Resolved) => match (&self.from, &self.to) {
                (Some(f), Some(t)) => {
                    let took = self
                        .failover_time
                        .map(|d| format!(" in {:.1} s", d.as_secs_f64()))
                        .unwrap_or_default();
                    format!("{} failed over {f} → {t}{took}{route}", self.master)
                }
                _ => format!(
                    "{} is back up at {} (no failover)",
                    self.master,
                    self.from.as_deref().unwrap_or("?")
                ),
            },
            (Kind::Failover, State::Firing) if !self.down => format!(
                "{}: failover from {} started but has not finished",
                self.master,
                self.from.as_deref().unwrap_or("?")
            ),
            (Kind::Failover, State::Firing) => format!(
                "{} is down at {} (objectively down); failover in progress",
                self.master,
                self.from.as_deref().unwrap_or("?")
            ),
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
            (Kind::RouteFailure, State::Resolved) => {
                format!("{}: VIP route update recovered{route}", self.master)
            }
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

/// The fold's state.
#[derive(Debug)]
pub struct Fold {
    group_wait: Duration,
    repeat_interval: Duration,
    /// Open (or resolved but not yet sent) incidents by key.
    incidents: BTreeMap<String, Incident>,
    /// Highest epoch seen per master (from `+new-epoch` and majority reads).
    epoch: u64,
    /// Sentinels seen `+sdown` by others (address strings).
    pub sentinels_down: HashSet<String>,
    /// Keys recently closed, to absorb late duplicates (key → when closed).
    closed: BTreeMap<String, Instant>,
    /// Last switch per master (its destination), to absorb late duplicates
    /// after the incident was told and closed.
    last_switch: BTreeMap<String, String>,
    /// Occurrences of each condition per master and epoch (see `occurrence_key`).
    occurrences: BTreeMap<String, u32>,
    pub absorbed: usize,
}

/// A manual failover still unfinished after this is told as firing.
const STUCK_FAILOVER: Duration = Duration::from_secs(60);
/// How long a resolved failover waits for its route outcome before it is told anyway.
const ROUTE_WAIT: Duration = Duration::from_secs(5);

/// How long a closed incident's key is remembered to absorb late duplicates.
const REMEMBER_CLOSED: Duration = Duration::from_secs(600);

impl Fold {
    pub fn new(group_wait: Duration, repeat_interval: Duration) -> Fold {
        Fold {
            group_wait,
            repeat_interval,
            incidents: BTreeMap::new(),
            epoch: 0,
            sentinels_down: HashSet::new(),
            closed: BTreeMap::new(),
            last_switch: BTreeMap::new(),
            occurrences: BTreeMap::new(),
            absorbed: 0,
        }
    }

    /// Key of the next occurrence of a condition (`what`) for `master`: the same
    /// instance going down twice in one epoch is two incidents. Watchers that
    /// saw the same events count the same occurrences, so keys still agree.
    fn occurrence_key(&mut self, master: &str, what: &str) -> String {
        let n = self
            .occurrences
            .entry(format!("{master}:{}:{what}", self.epoch))
            .or_insert(0);
        *n += 1;
        incident_key(master, self.epoch, Some(&format!("{what}#{n}")))
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
        if self.closed.contains_key(&key) {
            self.absorbed += 1;
            return None;
        }
        let inc = self
            .incidents
            .entry(key.clone())
            .or_insert_with(|| Incident::new(key, master, kind, severity, now, wall, from));
        Some(inc)
    }

    /// Folds one sentinel event in.
    pub fn on_event(&mut self, now: Instant, wall: SystemTime, sentinel: usize, event: &Event) {
        match event {
            Event::NewEpoch(e) => self.epoch = self.epoch.max(*e),
            Event::SwitchMaster { master, old, new } => {
                let (old, new) = (old.to_string(), new.to_string());
                // Resolve the open failover incident, or absorb a duplicate, or
                // open-and-resolve one for a switch with no down phase.
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
                let open = self.open_master_incident(master, true).is_some();
                if !open && self.last_switch.get(master) == Some(&new) {
                    // The same switch, late (a healed sentinel) or duplicated.
                    self.absorbed += 1;
                    return;
                }
                self.last_switch.insert(master.clone(), new.clone());
                let epoch = self.epoch;
                let inc = match self.open_master_incident(master, true) {
                    Some(i) => Some(i),
                    None => {
                        let key = incident_key(master, epoch, None);
                        self.open(
                            now,
                            wall,
                            key,
                            master,
                            Kind::Failover,
                            Severity::Critical,
                            Some(old.clone()),
                        )
                    }
                };
                if let Some(i) = inc {
                    i.events += 1;
                    i.state = State::Resolved;
                    i.resolved_at = Some(wall);
                    i.resolved = Some(now);
                    i.to = Some(new);
                    i.failover_time = Some(now.saturating_duration_since(i.opened));
                    if i.from.is_none() {
                        i.from = Some(old);
                    }
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
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.down = true;
                            self.absorbed += 1;
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
                            Some(instance.addr.to_string()),
                        ) {
                            i.events += 1;
                            i.down = true;
                            i.annotations
                                .push(format!("+odown {detail}").trim().to_owned());
                        }
                    }
                    ("-odown", Role::Master) => {
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.state = State::Resolved;
                            i.resolved_at = Some(wall);
                            i.resolved = Some(now);
                        }
                    }
                    (
                        "+try-failover"
                        | "+elected-leader"
                        | "+failover-end"
                        | "-failover-abort-not-elected"
                        | "-failover-abort-no-good-slave"
                        | "-failover-abort-slave-timeout"
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
                            if !i.annotations.iter().any(|a| a.starts_with(kind)) {
                                i.annotations.push(match *kind {
                                    "+selected-slave" | "+promoted-slave" => {
                                        format!("{kind} {}", instance.addr)
                                    }
                                    _ => (*kind).to_owned(),
                                });
                            }
                            self.absorbed += 1;
                        } else if *kind == "+elected-leader" {
                            // Manual failovers publish no +odown: remember the leader
                            // for the switch incident that follows.
                            let key = incident_key(master, self.epoch, None);
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
                                i.annotations.push("+elected-leader".into());
                            }
                        } else {
                            self.absorbed += 1;
                        }
                    }
                    ("+sdown", Role::Replica | Role::Sentinel) => {
                        if instance.role == Role::Sentinel {
                            self.sentinels_down.insert(instance.addr.to_string());
                        }
                        let role = if instance.role == Role::Sentinel {
                            "sentinel"
                        } else {
                            "replica"
                        };
                        let what = format!("{role}:{}", instance.addr);
                        let key = self.occurrence_key(master, &what);
                        let existing = self.incidents.values_mut().find(|i| {
                            i.master == master && i.state == State::Firing
                                && matches!(&i.kind, Kind::InstanceDown { instance: x, .. } if *x == instance.addr.to_string())
                        });
                        if let Some(i) = existing {
                            i.events += 1;
                            self.absorbed += 1;
                        } else if let Some(i) = self.open(
                            now,
                            wall,
                            key,
                            master,
                            Kind::InstanceDown {
                                role,
                                instance: instance.addr.to_string(),
                            },
                            Severity::Warning,
                            None,
                        ) {
                            i.events += 1;
                        }
                    }
                    ("-sdown", Role::Replica | Role::Sentinel) => {
                        if instance.role == Role::Sentinel {
                            self.sentinels_down.remove(&instance.addr.to_string());
                        }
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
                                i.state = State::Resolved;
                                i.resolved_at = Some(wall);
                            }
                        }
                        if let Some(k) = drop_key {
                            self.incidents.remove(&k);
                        }
                    }
                    ("+tilt", _) => {}
                    _ => self.absorbed += 1,
                }
            }
            Event::Tilt { entered: true } => {
                for i in self
                    .incidents
                    .values_mut()
                    .filter(|i| i.state == State::Firing && i.kind == Kind::Failover)
                {
                    if !i.annotations.iter().any(|a| a == "+tilt") {
                        i.annotations.push("+tilt".into());
                    }
                }
            }
            _ => self.absorbed += 1,
        }
    }

    /// Attaches a route outcome; a failed write opens a RouteFailure incident.
    pub fn on_route(&mut self, now: Instant, wall: SystemTime, r: &RouteReport) {
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
        let failing = self.incidents.values_mut().find(|i| {
            i.master == r.master && i.kind == Kind::RouteFailure && i.state == State::Firing
        });
        match (r.ok, failing) {
            (true, Some(i)) => {
                i.state = State::Resolved;
                i.resolved_at = Some(wall);
                i.route = Some(r.clone());
            }
            (false, Some(i)) => i.detail = r.error.clone(),
            (false, None) => {
                let key = self.occurrence_key(&r.master, "route");
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
                }
            }
            (true, None) => {}
        }
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
        self.on_condition(now, wall, master, Kind::NoMajority, "majority", !ok, detail);
    }

    /// EC2 unreachable (`down == true`) or reachable again.
    pub fn on_ec2(&mut self, now: Instant, wall: SystemTime, down: bool, detail: &str) {
        self.on_condition(now, wall, "*", Kind::Ec2Unreachable, "ec2", down, detail);
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
                let key = self.occurrence_key(master, what);
                if let Some(i) = self.open(now, wall, key, master, kind, Severity::Critical, None) {
                    i.detail = Some(detail.to_owned());
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

    /// What is due to be sent at `now`: each incident state change once, after
    /// `group_wait`, plus repeats of long-open incidents. Marks them sent.
    pub fn due(&mut self, now: Instant) -> Vec<Incident> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        for (k, i) in self.incidents.iter_mut() {
            let age = now.saturating_duration_since(i.opened);
            let ripe = match (&i.kind, i.state) {
                // A manual failover (no +odown) is only news once it ends, or
                // when it has not ended long after it should have.
                (Kind::Failover, State::Firing) if !i.down => {
                    age >= self.group_wait.max(STUCK_FAILOVER)
                }
                // A switch: wait briefly for the route outcome to quote it.
                (Kind::Failover, State::Resolved) if i.route.is_none() && i.to.is_some() => {
                    age >= self.group_wait
                        && i.resolved
                            .is_none_or(|r| now.saturating_duration_since(r) >= ROUTE_WAIT)
                }
                _ => age >= self.group_wait,
            };
            let send = match (i.state, i.sent) {
                _ if !ripe => false,
                (s, None) => {
                    let _ = s;
                    true
                }
                (State::Resolved, Some((State::Firing, _))) => true,
                (State::Firing, Some((State::Firing, at))) => {
                    now.saturating_duration_since(at) >= self.repeat_interval
                }
                _ => false,
            };
            if send {
                out.push(i.clone());
                i.sent = Some((i.state, now));
                i.told_firing |= i.state == State::Firing;
            }
            if i.state == State::Resolved && i.sent.is_some_and(|(s, _)| s == State::Resolved) {
                done.push(k.clone());
            }
        }
        for k in done {
            self.incidents.remove(&k);
            self.closed.insert(k, now);
        }
        self.closed
            .retain(|_, at| now.saturating_duration_since(*at) < REMEMBER_CLOSED);
        out
    }

    /// When the next message could become due (for the timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.incidents
            .values()
            .map(|i| match i.sent {
                None if i.kind == Kind::Failover && i.state == State::Firing && !i.down => {
                    i.opened + self.group_wait.max(STUCK_FAILOVER)
                }
                None if i.state == State::Resolved && i.route.is_none() => (i.opened
                    + self.group_wait)
                    .max(i.resolved.map(|r| r + ROUTE_WAIT).unwrap_or(i.opened)),
                None => i.opened + self.group_wait,
                Some((State::Firing, at)) if i.state == State::Firing => at + self.repeat_interval,
                Some(_) => i.opened + self.group_wait,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse;

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
}
