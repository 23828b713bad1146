//! Decide: the controller owns every master's state and turns sentinel events
//! and majority reads into route writes.
//!
//! It never blocks on I/O: majority reads and route writes run as spawned tasks
//! that report back through the controller's own inbox, so an event is looked at
//! the moment it arrives.
//!
//! Invariants:
//! - At most one route write per master is in flight; a newer wish waits in
//!   `queued` and supersedes older queued ones.
//! - A `+switch-master` whose old address is the one the VIP is on is applied at
//!   once (fast path), then confirmed by majority reads shortly after.
//! - A switch that does not start from where the VIP is (a late or duplicated
//!   event, or one after a missed failover) is never applied blindly: it
//!   triggers a majority read, and the majority decides.
//! - A majority read that started before a fast-path write is not used to judge
//!   that master (it may predate the failover); another read is scheduled.
//! - Without a majority, nothing is changed: the last good route stays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::alerts::AlertInput;
use crate::config::{Config, MasterConfig, RouteTableId, Target};
use crate::ec2::{Ec2, Ec2Error};
use crate::event::{Addr, Event};
use crate::metrics::METRICS;
use crate::plan::{plan, CurrentRoute, RouteAction};
use crate::quorum::{self, Answer, Verdict};
use crate::shutdown::Shutdown;
use crate::status::{MasterStatus, SharedStatus, TableStatus};
use crate::targets::{TargetError, Targets};
use crate::watch::{SentinelLink, WatchMsg};

/// Delays after a fast-path switch at which the majority is read to confirm it.
const CONFIRM_AFTER: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(6),
];

/// Pauses before reading a written route back (EC2 reads are eventually consistent).
const VERIFY_AFTER: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1000),
];

/// Longest wait between retries of a failed route write.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Why a route write was started (for logs and alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    SwitchEvent,
    Reconcile,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::SwitchEvent => "+switch-master",
            Cause::Reconcile => "reconcile",
        }
    }
}

/// Everything the controller reacts to.
#[derive(Debug)]
pub enum Input {
    Watch(WatchMsg),
    /// Read the majority now (start-up, SIGHUP, on demand, retries).
    Reconcile(&'static str),
    ReconcileDone(Box<ReconcileOutcome>),
    WriteDone(Box<WriteOutcome>),
}

/// Result of one majority read plus route table read.
#[derive(Debug)]
pub struct ReconcileOutcome {
    /// Sequence number at the read's start.
    pub seq: u64,
    pub verdicts: HashMap<String, Verdict>,
    pub tables: Result<HashMap<RouteTableId, crate::ec2::TableRead>, Ec2Error>,
    pub sentinels_answering: usize,
    pub took: Duration,
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
    pub fn report(&self) -> crate::alerts::RouteReport {
        let ok = self.ok();
        crate::alerts::RouteReport {
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
            error: (!ok).then(|| describe_failure(self)),
        }
    }

    pub fn written(&self) -> usize {
        self.tables
            .iter()
            .filter(|(_, r)| matches!(r, Ok(true)))
            .count()
    }
}

#[derive(Debug)]
struct MasterState {
    cfg: MasterConfig,
    /// Last known route per table (read, or written and verified).
    routes: HashMap<RouteTableId, CurrentRoute>,
    /// The address the routes were last verified to point at.
    applied: Option<Addr>,
    /// Last majority verdict and its config-epoch.
    majority: Option<(Addr, u64)>,
    no_majority_logged: bool,
    in_flight: Option<Addr>,
    queued: Option<(Addr, Cause, Instant)>,
    /// Reconcile sequence at which the last fast-path write started.
    changed_seq: u64,
    failures: u32,
    last_error: Option<String>,
}

/// The decision loop. Create with [`Controller::new`], drive with [`Controller::run`].
pub struct Controller {
    cfg: Arc<Config>,
    ec2: Ec2,
    links: Arc<Vec<SentinelLink>>,
    targets: Targets,
    masters: BTreeMap<String, MasterState>,
    inbox: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    seq: u64,
    reconcile_running: bool,
    reconcile_pending: bool,
    connected: Vec<bool>,
    alerts: Option<mpsc::Sender<AlertInput>>,
    status: SharedStatus,
    last_reconcile_ok: bool,
    ec2_down: bool,
    ec2_failures: u32,
}

impl Controller {
    pub fn new(
        cfg: Arc<Config>,
        ec2: Ec2,
        links: Vec<SentinelLink>,
        inbox: mpsc::Receiver<Input>,
        tx: mpsc::Sender<Input>,
        alerts: Option<mpsc::Sender<AlertInput>>,
        status: SharedStatus,
    ) -> Controller {
        let masters = cfg
            .masters
            .iter()
            .map(|(name, m)| {
                (
                    name.clone(),
                    MasterState {
                        cfg: m.clone(),
                        routes: HashMap::new(),
                        applied: None,
                        majority: None,
                        no_majority_logged: false,
                        in_flight: None,
                        queued: None,
                        changed_seq: 0,
                        failures: 0,
                        last_error: None,
                    },
                )
            })
            .collect();
        let n = links.len();
        Controller {
            cfg,
            ec2,
            links: Arc::new(links),
            targets: Targets::default(),
            masters,
            inbox,
            tx,
            seq: 1,
            reconcile_running: false,
            reconcile_pending: false,
            connected: vec![false; n],
            alerts,
            status,
            last_reconcile_ok: false,
            ec2_down: false,
            ec2_failures: 0,
        }
    }

    /// Runs until shutdown; then lets in-flight route writes finish (bounded).
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.cfg.reconcile.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                input = self.inbox.recv() => match input {
                    Some(i) => self.handle(i),
                    None => break,
                },
                _ = tick.tick() => self.start_reconcile("interval"),
                _ = heartbeat.tick() => crate::notify::heartbeat(&self.status),
            }
        }
        self.drain_writes().await;
    }

    async fn drain_writes(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.masters.values().any(|m| m.in_flight.is_some()) {
            info!("waiting for in-flight route writes before exit");
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(Input::WriteDone(w))) => {
                    if let Some(st) = self.masters.get_mut(&w.master) {
                        st.in_flight = None;
                        st.queued = None;
                    }
                    log_write(&w);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    warn!("gave up waiting for in-flight route writes");
                    break;
                }
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Watch(WatchMsg::Event {
                sentinel,
                event,
                at,
            }) => self.on_event(sentinel, event, at),
            Input::Watch(WatchMsg::Connected(id)) => {
                self.set_connected(id, true);
                self.start_reconcile("sentinel connected");
            }
            Input::Watch(WatchMsg::Disconnected(id, _)) => self.set_connected(id, false),
            Input::Reconcile(why) => self.start_reconcile(why),
            Input::ReconcileDone(o) => self.on_reconcile(*o),
            Input::WriteDone(w) => self.on_write_done(*w),
        }
    }

    fn set_connected(&mut self, id: usize, up: bool) {
        if let Some(c) = self.connected.get_mut(id) {
            *c = up;
        }
        let n = self.connected.iter().filter(|c| **c).count();
        self.status.update(|s| s.sentinels_connected = n);
    }

    fn on_event(&mut self, sentinel: usize, event: Event, at: Instant) {
        if let Some(a) = &self.alerts {
            let _ = a.try_send(AlertInput::Event {
                sentinel,
                event: event.clone(),
            });
        }
        let Event::SwitchMaster { master, old, new } = event else {
            return;
        };
        let Some(st) = self.masters.get_mut(&master) else {
            debug!(%master, "ignored +switch-master for a master not in the config");
            return;
        };
        let sentinel_addr = self
            .links
            .get(sentinel)
            .map(|l| l.addr.to_string())
            .unwrap_or_default();
        let heading_to = st
            .queued
            .as_ref()
            .map(|q| &q.0)
            .or(st.in_flight.as_ref())
            .or(st.applied.as_ref());
        if heading_to == Some(&new) {
            debug!(%master, %new, sentinel = %sentinel_addr, "duplicate +switch-master: VIP already there or on its way");
            return;
        }
        if let Some(vip_on) = heading_to.filter(|h| **h != old) {
            // Late (healed minority), forged, or after a missed failover: the
            // majority decides, not this event.
            warn!(%master, %old, %new, %vip_on, sentinel = %sentinel_addr,
                "+switch-master does not start from the VIP's master (late or stale event?); asking the majority");
            self.start_reconcile("unexpected +switch-master");
            return;
        }
        info!(%master, %old, %new, sentinel = %sentinel_addr, "+switch-master: moving the VIP");
        st.changed_seq = self.seq;
        self.dispatch(&master, new, Cause::SwitchEvent, at);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            for d in CONFIRM_AFTER {
                tokio::time::sleep(d).await;
                if tx.send(Input::Reconcile("confirm switch")).await.is_err() {
                    break;
                }
            }
        });
    }

    /// Starts (or queues) a route write for `master` towards `addr`.
    fn dispatch(&mut self, master: &str, addr: Addr, cause: Cause, at: Instant) {
        let Some(st) = self.masters.get_mut(master) else {
            return;
        };
        if st.in_flight.is_some() {
            st.queued = Some((addr, cause, at));
            return;
        }
        st.in_flight = Some(addr.clone());
        let job = WriteJob {
            master: master.to_owned(),
            cfg: st.cfg.clone(),
            addr,
            cause,
            at,
            known: st.routes.clone(),
            ec2: self.ec2.clone(),
            targets: self.targets.clone(),
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let outcome = job.run().await;
            let _ = tx.send(Input::WriteDone(Box::new(outcome))).await;
        });
    }

    fn on_write_done(&mut self, w: WriteOutcome) {
        log_write(&w);
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
        if let Some(a) = &self.alerts {
            let _ = a.try_send(AlertInput::Route(w.report()));
        }
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
            st.last_error = None;
        } else {
            st.failures += 1;
            st.last_error = Some(describe_failure(&w));
            // Transient failures: retry with backoff until it works (each retry is
            // a fresh majority read). Permission / not-found errors need an
            // operator: they are alerted and retried only at the reconcile interval.
            let delay = retry_delay(st.failures);
            let tx = self.tx.clone();
            if st.queued.is_none() && !needs_operator(&w) {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Input::Reconcile("retry failed route write")).await;
                });
            }
        }
        if let Some((addr, cause, at)) = st.queued.take() {
            self.dispatch(&w.master, addr, cause, at);
        }
        self.publish_status();
    }

    /// Starts a majority read unless one is running (then one more follows it).
    fn start_reconcile(&mut self, why: &'static str) {
        if self.reconcile_running {
            self.reconcile_pending = true;
            return;
        }
        self.reconcile_running = true;
        self.seq += 1;
        debug!(why, seq = self.seq, "reconcile");
        let seq = self.seq;
        let links = self.links.clone();
        let ec2 = self.ec2.clone();
        let names: Vec<String> = self.masters.keys().cloned().collect();
        let tables: BTreeSet<RouteTableId> = self
            .masters
            .values()
            .flat_map(|m| m.cfg.route_tables.iter().cloned())
            .collect();
        let cidrs: BTreeSet<Ipv4Net> = self.masters.values().map(|m| m.cfg.vip.0).collect();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let outcome = majority_read(seq, &links, &ec2, &names, &tables, &cidrs).await;
            let _ = tx.send(Input::ReconcileDone(Box::new(outcome))).await;
        });
    }

    fn on_reconcile(&mut self, o: ReconcileOutcome) {
        self.reconcile_running = false;
        let mut again = false;
        let mut ok = o.tables.is_ok();
        if let Err(e) = &o.tables {
            self.ec2_failures += 1;
            let delay = retry_delay(self.ec2_failures);
            error!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot read the route tables; routes left as they are");
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Input::Reconcile("retry EC2 read")).await;
            });
        } else {
            self.ec2_failures = 0;
        }
        if o.tables.is_ok() == self.ec2_down {
            self.ec2_down = !self.ec2_down;
            if let Some(a) = &self.alerts {
                let detail = o
                    .tables
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                let _ = a.try_send(AlertInput::Ec2 {
                    ok: !self.ec2_down,
                    detail,
                });
            }
        }
        let configured = self.links.len();
        let names: Vec<String> = self.masters.keys().cloned().collect();
        for name in names {
            let Some(st) = self.masters.get_mut(&name) else {
                continue;
            };
            if st.changed_seq >= o.seq {
                // The read may predate a switch applied since: judge with a fresh one.
                again = true;
                continue;
            }
            if st.in_flight.is_some() {
                // The write reads its own result back; the next reconcile judges it.
                continue;
            }
            if let Ok(tables) = &o.tables {
                for t in &st.cfg.route_tables {
                    match tables.get(t) {
                        Some(read) => {
                            st.routes.insert(t.clone(), read.route(&st.cfg.vip.0));
                        }
                        None => {
                            st.last_error = Some(format!("route table {t} not found in EC2"));
                            warn!(master = %name, table = %t, "route table not found in EC2 (check masters.{name}.route_tables)");
                        }
                    }
                }
            }
            let verdict = o
                .verdicts
                .get(&name)
                .cloned()
                .unwrap_or(Verdict::NoMajority {
                    usable: 0,
                    best: None,
                    needed: configured / 2 + 1,
                });
            match verdict {
                Verdict::Master {
                    addr,
                    config_epoch,
                    votes,
                    ..
                } => {
                    if let Some((_, e)) = &st.majority {
                        if config_epoch < *e {
                            warn!(master = %name, config_epoch, known = *e, "majority answer older than one already applied; ignored");
                            continue;
                        }
                    }
                    if st.no_majority_logged {
                        info!(master = %name, %addr, votes, "sentinel majority is back");
                        st.no_majority_logged = false;
                        if let Some(a) = &self.alerts {
                            let _ = a.try_send(AlertInput::Majority {
                                master: name.clone(),
                                ok: true,
                                detail: format!("{votes} sentinels agree on {addr}"),
                            });
                        }
                    }
                    st.majority = Some((addr.clone(), config_epoch));
                    if o.tables.is_err() {
                        continue;
                    }
                    match self.targets.cached(&name, &st.cfg, &addr) {
                        Some(Ok(target)) => {
                            let wrong: Vec<&RouteTableId> = st
                                .cfg
                                .route_tables
                                .iter()
                                .filter(|t| {
                                    st.routes.get(*t).map(|r| plan(r, &target))
                                        != Some(RouteAction::Keep)
                                })
                                .collect();
                            if wrong.is_empty() {
                                if st.applied.as_ref() != Some(&addr) {
                                    info!(master = %name, %addr, %target, "VIP route already right in every table");
                                }
                                st.applied = Some(addr);
                                st.last_error = None;
                                st.failures = 0;
                            } else {
                                let found: Vec<String> = wrong
                                    .iter()
                                    .map(|t| {
                                        format!(
                                            "{t}={}",
                                            st.routes
                                                .get(*t)
                                                .map(|r| r.describe())
                                                .unwrap_or("unknown".into())
                                        )
                                    })
                                    .collect();
                                warn!(master = %name, %addr, %target, routes = %found.join(","), "VIP route drifted from the majority's master; repairing");
                                self.dispatch(&name, addr, Cause::Reconcile, Instant::now());
                            }
                        }
                        Some(Err(e)) => {
                            error!(master = %name, %addr, error = %e, "cannot map the master to an EC2 target");
                            st.last_error = Some(e.to_string());
                            ok = false;
                        }
                        None => self.dispatch(&name, addr, Cause::Reconcile, Instant::now()),
                    }
                }
                Verdict::NoMajority {
                    usable,
                    best,
                    needed,
                } => {
                    ok = false;
                    if !st.no_majority_logged {
                        let best = best
                            .map(|(a, v)| format!("{a} ({v} votes)"))
                            .unwrap_or_else(|| "none".into());
                        error!(master = %name, usable, needed, best = %best,
                            "no sentinel majority for this master: VIP route kept where it is");
                        st.no_majority_logged = true;
                        if let Some(a) = &self.alerts {
                            let _ = a.try_send(AlertInput::Majority {
                                master: name.clone(),
                                ok: false,
                                detail: format!("{usable} of {configured} sentinels usable, {needed} needed; best candidate {best}"),
                            });
                        }
                    }
                }
            }
        }
        self.last_reconcile_ok = ok;
        METRICS.reconcile_seconds.set(o.took.as_secs_f64());
        METRICS
            .reconciles
            .get_or_create(&vec![(
                "result",
                if ok { "ok" } else { "failed" }.to_owned(),
            )])
            .inc();
        if ok {
            METRICS.reconcile_last_success.set(now_unix());
        }
        for (name, st) in &self.masters {
            METRICS
                .no_majority
                .get_or_create(&vec![("master", name.clone())])
                .set(i64::from(st.no_majority_logged));
        }
        let n = o.sentinels_answering;
        self.status.update(|s| {
            s.reconciles += 1;
            s.last_reconcile_ms = o.took.as_secs_f64() * 1e3;
            s.last_reconcile_ok = ok;
            s.last_reconcile_unix = now_unix();
            s.sentinels_answering = n;
        });
        self.publish_status();
        self.warm_discovery();
        if again || self.reconcile_pending {
            self.reconcile_pending = false;
            self.start_reconcile("follow-up");
        }
    }

    /// For masters without a static `nodes` map, looks up the replicas' ENIs ahead
    /// of a failover so the switch path finds them cached.
    fn warm_discovery(&self) {
        let discovery: Vec<String> = self
            .masters
            .iter()
            .filter(|(_, m)| m.cfg.nodes.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if discovery.is_empty() {
            return;
        }
        let links = self.links.clone();
        let ec2 = self.ec2.clone();
        let targets = self.targets.clone();
        tokio::spawn(async move {
            for name in discovery {
                for link in links.iter() {
                    if let Ok(replicas) = link.replicas(&name).await {
                        for r in replicas {
                            if !targets.is_cached(&r.host) {
                                if let Err(e) = targets.discover(&ec2, &r.host).await {
                                    debug!(master = %name, replica = %r, error = %e, "replica target not found yet");
                                }
                            }
                        }
                        break;
                    }
                }
            }
        });
    }

    fn publish_status(&self) {
        let masters = self
            .masters
            .iter()
            .map(|(name, st)| MasterStatus {
                name: name.clone(),
                vip: st.cfg.vip.to_string(),
                majority: st.majority.as_ref().map(|(a, _)| a.to_string()),
                config_epoch: st.majority.as_ref().map(|(_, e)| *e),
                applied: st.applied.as_ref().map(|a| a.to_string()),
                writing: st.in_flight.as_ref().map(|a| a.to_string()),
                no_majority: st.no_majority_logged,
                last_error: st.last_error.clone(),
                tables: st
                    .cfg
                    .route_tables
                    .iter()
                    .map(|t| TableStatus {
                        id: t.to_string(),
                        route: st
                            .routes
                            .get(t)
                            .map(|r| r.describe())
                            .unwrap_or_else(|| "unknown".into()),
                    })
                    .collect(),
            })
            .collect();
        self.status.update(|s| s.masters = masters);
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn retry_delay(failures: u32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(failures.saturating_sub(1).min(6));
    let capped = base.min(MAX_RETRY_DELAY);
    let jitter = rand::random::<f64>() * 0.3 + 0.85;
    capped.mul_f64(jitter)
}

/// Whether every failure in `w` is one that retrying soon cannot fix.
fn needs_operator(w: &WriteOutcome) -> bool {
    use crate::ec2::ErrorClass;
    let class_needs_operator =
        |c: ErrorClass| matches!(c, ErrorClass::Permission | ErrorClass::NotFound);
    match &w.target {
        Err(TargetError::NotInNodes { .. }) => true,
        Err(TargetError::Ec2(e)) => class_needs_operator(e.class),
        Err(TargetError::NotFound(_)) => false,
        Ok(_) => {
            let errs: Vec<&Ec2Error> = w
                .tables
                .iter()
                .filter_map(|(_, r)| r.as_ref().err())
                .collect();
            !errs.is_empty() && errs.iter().all(|e| class_needs_operator(e.class))
        }
    }
}

fn describe_failure(w: &WriteOutcome) -> String {
    match &w.target {
        Err(e) => e.to_string(),
        Ok(_) => {
            let errs: Vec<String> = w
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

fn log_write(w: &WriteOutcome) {
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
            error = %describe_failure(w), "VIP route update failed; will retry");
    }
}

/// One route write: resolve the target, write every table that needs it in
/// parallel, read back.
struct WriteJob {
    master: String,
    cfg: MasterConfig,
    addr: Addr,
    cause: Cause,
    at: Instant,
    known: HashMap<RouteTableId, CurrentRoute>,
    ec2: Ec2,
    targets: Targets,
}

impl WriteJob {
    async fn run(self) -> WriteOutcome {
        let target = self
            .targets
            .resolve(&self.ec2, &self.master, &self.cfg, &self.addr)
            .await;
        let started = Instant::now();
        let mut outcome = WriteOutcome {
            master: self.master.clone(),
            addr: self.addr.clone(),
            cause: self.cause,
            target: target.clone(),
            tables: Vec::new(),
            verified: None,
            latency: Duration::ZERO,
            write_time: Duration::ZERO,
        };
        let Ok(target) = target else {
            outcome.latency = self.at.elapsed();
            return outcome;
        };
        let cidr = self.cfg.vip.0;
        let writes = self.cfg.route_tables.iter().map(|t| {
            let known = self.known.get(t).cloned();
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
        outcome.latency = self.at.elapsed();
        let tables: BTreeSet<RouteTableId> = self.cfg.route_tables.iter().cloned().collect();
        let cidrs: BTreeSet<Ipv4Net> = [cidr].into_iter().collect();
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
                    let right = self
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
                    warn!(master = %self.master, error = %e, attempt, "could not read the routes back after writing");
                    break;
                }
            }
        }
        outcome
    }
}

/// Reads every sentinel's view and the route tables at once.
pub async fn majority_read(
    seq: u64,
    links: &[SentinelLink],
    ec2: &Ec2,
    names: &[String],
    tables: &BTreeSet<RouteTableId>,
    cidrs: &BTreeSet<Ipv4Net>,
) -> ReconcileOutcome {
    let started = Instant::now();
    let (reports, tables) = tokio::join!(
        futures::future::join_all(links.iter().map(|l| async move {
            let r = l.report().await;
            if let Err(e) = &r {
                debug!(sentinel = %l.addr, error = %e, "sentinel did not answer the majority read");
            }
            r
        })),
        ec2.read_tables(tables, cidrs)
    );
    let sentinels_answering = reports.iter().filter(|r| r.is_ok()).count();
    let verdicts = names
        .iter()
        .map(|name| {
            let answers: Vec<Answer> = reports
                .iter()
                .map(|r| crate::watch::answer(r, name))
                .collect();
            (name.clone(), quorum::decide(&answers, links.len()))
        })
        .collect();
    ReconcileOutcome {
        seq,
        verdicts,
        tables,
        sentinels_answering,
        took: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        assert!(retry_delay(1) <= Duration::from_millis(600));
        assert!(retry_delay(3) >= Duration::from_millis(1600));
        assert!(retry_delay(50) <= MAX_RETRY_DELAY.mul_f64(1.16));
    }
}
