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
    /// Nothing is wrong: a planned switchover. Never pages.
    Info,
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
    /// A configured route table cannot be read (deleted, another account or
    /// region, a typo): its VIP route can be neither checked nor repaired.
    RouteTableUnreadable,
    /// The sentinels' majority came back at a lower config-epoch than the one
    /// last applied (re-monitored, or restarted without their config) and the
    /// watcher followed it: a warning that resolves once the majority has held.
    EpochWentBack,
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
            Kind::RouteTableUnreadable => "VipRouteTableUnreadable",
            Kind::EpochWentBack => "SentinelConfigEpochWentBack",
        }
    }
}

/// A failure the steering core finds that no event announces: each is an
/// incident while `bad` (see [`AlertInput::Condition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// A route table of the master cannot be read.
    TableUnreadable,
    /// An accepted config-epoch regression (`bad`); `!bad` once it has held.
    EpochWentBack,
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
    /// The deployment (`cluster`) it belongs to, fixed when it opened: its key
    /// was made with it, so a reload that renames the deployment does not
    /// change what an open incident is called.
    pub cluster: String,
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
    /// A failover Sentinel ran without the master being objectively down
    /// (`SENTINEL FAILOVER`): a planned switchover, told at `Info` and never
    /// paged. Decided from the events this watcher folded (no `+sdown`/`+odown`
    /// of the master, no majority read saying `o_down`) and the knowledge that
    /// the master was up: a watcher that does not know (started mid-switchover,
    /// no read yet) says unplanned. Never true once a firing was told.
    pub planned: bool,
    /// The fold knew the master was up when this opened (a read without
    /// `o_down`, no `+sdown` of it since) and has seen nothing down since.
    pub up_before: bool,
    /// Messages sent for this incident so far (its group's notices).
    pub notices: u32,
    /// Times the condition came back (went down again) since the last notice,
    /// counting the opening while nothing was told: flap damping's summary.
    pub downs: u32,
    /// When the first of those `downs` began, and when the state last changed.
    pub flap_from: Option<Instant>,
    pub flap_last: Option<Instant>,
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
            cluster: String::new(),
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
            planned: false,
            up_before: false,
            notices: 0,
            downs: 1,
            flap_from: Some(opened),
            flap_last: Some(opened),
        }
    }

    /// Whether what happened since the last notice is a flap series worth
    /// summarising ("went down 5 times in 35 s"): the condition came back
    /// after a notice, or came and went more than once before the first.
    pub fn flapped(&self) -> bool {
        if self.notices == 0 {
            self.downs >= 2
        } else {
            self.downs >= 1
        }
    }

    /// The condition came back (went down again): the same incident, firing
    /// again, one more down in its flap count.
    pub(super) fn reopen(&mut self, at: Stamp) {
        if self.downs == 0 {
            self.flap_from = Some(at.mono);
        }
        self.downs += 1;
        self.flap_last = Some(at.mono);
        self.state = State::Firing;
        self.resolved = None;
        self.resolved_at = None;
        self.ended = None;
    }

    /// The same incident, of deployment `cluster`.
    pub fn in_cluster(mut self, cluster: &str) -> Incident {
        self.cluster = cluster.to_owned();
        self
    }

    pub(super) fn resolve(&mut self, at: Stamp) {
        if self.state == State::Firing {
            self.flap_last = Some(at.mono);
        }
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

/// An incident's key: hex sha256 of its identity, the deployment
/// (`cluster`), the master, the config-epoch when it opened and, for the
/// conditions counted within an epoch, `what` (`replica:10.0.1.12:6379#2`).
/// Every watcher of one deployment computes the same key for the same incident,
/// before and after a restart; two deployments never do. Each field is
/// length-prefixed, so no characters in a name can make two identities hash
/// the same input.
pub fn incident_key(cluster: &str, master: &str, epoch: u64, what: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(b"sentinel-vip incident");
    let epoch = epoch.to_string();
    for field in [Some(cluster), Some(master), Some(epoch.as_str()), what]
        .into_iter()
        .flatten()
    {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
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
    /// A failure of `master` that would otherwise only be logged, while `bad`,
    /// and its end.
    Condition {
        master: String,
        condition: Condition,
        bad: bool,
        detail: String,
    },
    /// What a majority read found for one master: its state, not an event.
    MasterRead(MasterRead),
}

/// A master's state as the sentinels' majority reported it in one read
/// (`SENTINEL MASTER(S)` flags and config-epoch, `GET-MASTER-ADDR-BY-NAME`):
/// the fold's level-triggered input. Events make the fold fast; this makes it
/// right when events were missed (a watcher started mid-incident, a closing
/// event lost): it opens, keeps and resolves master incidents.
#[derive(Debug, Clone)]
pub struct MasterRead {
    pub master: String,
    /// Where the majority says the master is.
    pub addr: String,
    pub config_epoch: u64,
    /// A majority flags the master `o_down`.
    pub odown: bool,
    /// Some sentinel of the majority flags `failover_in_progress`.
    pub failover_in_progress: bool,
    /// Replicas some sentinel of the majority flags down (`s_down`), as
    /// `ip:port`: as the events open one on any sentinel's `+sdown`.
    pub replicas_down: Vec<String>,
    /// When the read started: events folded after it are newer than it.
    pub started: Instant,
}

impl MasterRead {
    /// The read of `master` from the views that name the majority's `addr`
    /// (`needed` of them make a majority).
    pub fn from_views<'a>(
        master: &str,
        addr: &crate::addr::Addr,
        config_epoch: u64,
        views: impl IntoIterator<Item = &'a crate::watch::MasterView>,
        needed: usize,
        started: Instant,
    ) -> MasterRead {
        let flagged =
            |v: &crate::watch::MasterView, flag: &str| v.flags.split(',').any(|f| f == flag);
        let same: Vec<&crate::watch::MasterView> =
            views.into_iter().filter(|v| v.addr == *addr).collect();
        MasterRead {
            master: master.to_owned(),
            addr: addr.to_string(),
            config_epoch,
            odown: same.iter().filter(|v| flagged(v, "o_down")).count() >= needed,
            failover_in_progress: same.iter().any(|v| flagged(v, "failover_in_progress")),
            replicas_down: same
                .iter()
                .flat_map(|v| v.down_replicas.iter().map(|a| a.to_string()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            started,
        }
    }
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
