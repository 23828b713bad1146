//! The incident and the fold's inputs: what one incident is ([`Incident`], its
//! [`Kind`], [`State`], [`Severity`] and [`incident_key`]) and what the fold is
//! fed ([`AlertInput`], [`RouteReport`]). Its message text is in `text`.

use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::Stamp;
use crate::watch::event::{Event, InstanceEvent};
use crate::watch::SentinelId;

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

/// Why an incident ended without its condition clearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Sentinel gave the failover up (`-failover-abort-*`).
    Aborted(InstanceEvent),
    /// The master was removed from the config (SIGHUP).
    Removed,
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
    pub leader: Option<SentinelId>,
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
    /// Why it ended without its condition clearing.
    pub ended: Option<Ended>,
    /// The `-failover-abort-*` of the last attempt while the master stays
    /// down: the incident stays firing (its condition has not cleared) and
    /// Sentinel's retry restarts the failover clock.
    pub aborted: Option<InstanceEvent>,
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

    pub(super) fn resolve(&mut self, at: Stamp) {
        self.state = State::Resolved;
        self.resolved_at = Some(at.wall);
        self.resolved = Some(at.mono);
    }

    pub(super) fn annotate(&mut self, note: String) {
        let head = note.split(' ').next().unwrap_or("").to_owned();
        if !self.annotations.iter().any(|a| a.starts_with(&head)) {
            self.annotations.push(note);
        }
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

/// What the controller tells the alerter (through [`offer`]).
#[derive(Debug, Clone)]
pub enum AlertInput {
    Event {
        sentinel: SentinelId,
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
    /// Each carrier of the address besides route tables (secondary IP, Elastic
    /// IP, DNS record) with its result, e.g. `secondary-ip:10.0.1.100 written`;
    /// empty when the master has route tables only.
    pub carriers: Vec<String>,
}
