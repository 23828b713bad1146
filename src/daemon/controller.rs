//! The driver of the decision core: it feeds [`Steering`] with sentinel events,
//! task results and time, and carries out the actions it returns (majority
//! reads, route writes, alerts). All the rules live in `decide::steering`; this
//! file only does I/O, through the jobs in `read_job.rs` and `write_job.rs`.
//!
//! **Architecture Invariant:** the loop never awaits the network. Reads and
//! writes run as spawned tasks, each supervised: a task that panics or outlives
//! its bound still reports back (as a failure). Their results travel on a
//! channel of their own that never drops (unbounded, and bounded in fact: one
//! read and at most one write per master run at once), served before the
//! sentinels' inbox, so a storm of events can neither drop nor delay them. The
//! core does not rely on it either: it bounds `read_running` and every
//! in-flight write with its own deadline (`decide::steering`). The loop feeds
//! the systemd watchdog; when it stalls, the heartbeat stops and systemd
//! restarts us.
//!
//! The cost of one input does not grow with the number of masters: `/status`
//! and the per-master gauges are rebuilt from the core at most every
//! [`PUBLISH_EVERY`] while something changed, not after every input.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::act::ec2::Ec2;
use crate::act::pacing::Pacer;
use crate::act::targets::Targets;
use crate::config::Config;
use crate::daemon::peers::Peers;
use crate::daemon::read_job::majority_read;
use crate::daemon::write_job::{count_write, log_write, WriteJob};
use crate::decide::fold::AlertInput;
use crate::decide::speaker;
use crate::decide::steering::{self, Action, ReadOutcome, Steering, WriteOrder, WriteOutcome};
use crate::ops::metrics::METRICS;
use crate::ops::status::{MasterStatus, SentinelView, SharedStatus};
use crate::shutdown::Shutdown;
use crate::watch::{SentinelLink, WatchMsg};

/// Longest `/status`, `/readyz` and the per-master gauges lag behind the core.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Everything the controller's inbox carries (job results come on their own
/// channel, as the same variants).
#[derive(Debug)]
pub(crate) enum Input {
    Watch(WatchMsg),
    /// Read the majority now (start-up, SIGHUP, on demand).
    Reconcile(&'static str),
    /// A majority read and each sentinel's answers as `/status` shows them
    /// (formatted by the job, off the loop).
    ReadDone(Box<ReadOutcome>, Views),
    WriteDone(Box<WriteOutcome>),
    /// SIGHUP: a new config, and new links / EC2 client where those changed.
    Reload(Box<Reload>),
}

/// Per master, each sentinel's answer at a majority read (`/status`).
pub(crate) type Views = HashMap<String, Vec<SentinelView>>;

/// Sentinel events served between two slices of a majority read being
/// judged when the inbox stays busy (the judging is not starved by a storm).
const INPUTS_PER_SLICE: usize = 16;

/// What changes on a reload; `None` keeps what runs.
pub(crate) struct Reload {
    pub cfg: Arc<Config>,
    pub links: Option<Vec<SentinelLink>>,
    /// The live-watcher view of the links in use (new links, new poller).
    pub peers: Peers,
    pub ec2: Option<Ec2>,
}

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reload")
            .field("links", &self.links.as_ref().map(|l| l.len()))
            .field("ec2", &self.ec2.is_some())
            .finish()
    }
}

/// The decision loop's driver. Create with [`Controller::new`], drive with [`Controller::run`].
pub(crate) struct Controller {
    cfg: Arc<Config>,
    ec2: Ec2,
    links: Arc<Vec<SentinelLink>>,
    targets: Targets,
    core: Steering,
    inbox: mpsc::Receiver<Input>,
    /// Job results (`ReadDone`, `WriteDone`): never dropped, served first.
    results: mpsc::UnboundedReceiver<Input>,
    results_tx: mpsc::UnboundedSender<Input>,
    alerts: Option<mpsc::Sender<AlertInput>>,
    status: SharedStatus,
    /// One discovery warm-up at a time.
    warming: Arc<AtomicBool>,
    /// Route writes wait here for `aws.write_rate` before they start.
    pacer: Pacer<WriteOrder>,
    /// Something changed since `/status` was last published.
    dirty: bool,
    published: Instant,
    /// The core's lost-result counts already added to the metric.
    lost_counted: (u64, u64),
    /// Per master, each sentinel's answer at the last majority read (`/status`).
    views: Views,
    /// The read being judged: how long it took and how many sentinels
    /// answered, for the metrics told once it is judged.
    judged_read: Option<(Duration, usize)>,
    /// Inbox inputs served since the last slice of a read being judged.
    since_slice: usize,
    /// The switch journal's feed (`try_send` only; off by default).
    journal: crate::daemon::journal::JournalFeed,
    /// Which watchers of the deployment are alive: this one writes at once
    /// when it is first ([`speaker::rank`] 0), else as a standby.
    peers: Peers,
    /// The rank last shown in `/status` (None: no `local_sentinel`).
    writer_rank: Option<usize>,
    /// Per master, the gauges last set (route_ok, switch_unconfirmed,
    /// no_majority): set again only when they change.
    gauges: HashMap<String, (bool, bool, bool)>,
    /// How many masters `/status` lists now (a reload that changes the
    /// masters makes the next publish a full one), and where the next slice
    /// of a many-master publish starts.
    status_listed: usize,
    status_cursor: usize,
}

impl Controller {
    pub(crate) fn new(
        cfg: Arc<Config>,
        ec2: Ec2,
        links: Vec<SentinelLink>,
        inbox: mpsc::Receiver<Input>,
        alerts: Option<mpsc::Sender<AlertInput>>,
        status: SharedStatus,
    ) -> Controller {
        let (results_tx, results) = mpsc::unbounded_channel();
        let core = Steering::new(&cfg, Instant::now(), rand::random());
        let rate = cfg.aws.write_rate;
        let pacer = Pacer::new(rate.per_second, rate.burst, Instant::now());
        Controller {
            cfg,
            ec2,
            links: Arc::new(links),
            targets: Targets::default(),
            core,
            inbox,
            results,
            results_tx,
            alerts,
            status,
            warming: Arc::new(AtomicBool::new(false)),
            pacer,
            dirty: true,
            published: Instant::now(),
            lost_counted: (0, 0),
            views: HashMap::new(),
            judged_read: None,
            since_slice: 0,
            journal: Default::default(),
            peers: crate::daemon::peers::alone(),
            writer_rank: None,
            gauges: HashMap::new(),
            status_listed: usize::MAX,
            status_cursor: 0,
        }
    }

    /// Feeds the switch journal (events, write outcomes, verified changes).
    pub(crate) fn with_journal(mut self, feed: crate::daemon::journal::JournalFeed) -> Controller {
        self.journal = feed;
        self
    }

    /// The other watchers (`daemon::peers`); without it this one writes alone.
    pub(crate) fn with_peers(mut self, peers: Peers) -> Controller {
        self.peers = peers;
        self
    }

    /// Tells the core how long this watcher leaves a route write to the
    /// designated writer: zero when it is first among the live watchers
    /// ([`speaker::write_rank`] 0, or alone), else rank steps of
    /// [`steering::standby_step`]. Called when the live-watcher view changes
    /// and every second (a view goes stale).
    fn update_standby(&mut self) {
        let live = crate::daemon::peers::current(&self.peers);
        let rank = speaker::write_rank(self.cfg.local(), &self.cfg.sentinels, &live);
        METRICS.writer_rank.set(rank as i64);
        let shown = self.cfg.local().map(|_| rank);
        if self.writer_rank != shown {
            self.writer_rank = shown;
            self.status.update(|s| s.writer_rank = shown);
        }
        self.core
            .set_standby(steering::standby_step(&self.cfg) * rank as u32);
    }

    /// Runs until shutdown; then lets in-flight route writes finish (bounded).
    pub(crate) async fn run(mut self, mut shutdown: Shutdown) {
        self.update_standby();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        loop {
            let wake = tokio::time::Instant::from_std(self.core.poll_timeout());
            let paced = self.pacer.next_release();
            let pace_wake = tokio::time::Instant::from_std(paced.unwrap_or_else(Instant::now));
            let publish_at = tokio::time::Instant::from_std(self.published + PUBLISH_EVERY);
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                // Results first: a storm in the inbox never delays them.
                Some(done) = self.results.recv() => self.handle(done),
                // A read of many masters is judged a slice at a time, the
                // inbox served in between (and at least every
                // INPUTS_PER_SLICE inputs a slice, storm or not).
                _ = std::future::ready(()), if self.core.judging() && self.since_slice >= INPUTS_PER_SLICE => self.judge_more(),
                input = self.inbox.recv() => match input {
                    Some(i) => {
                        self.since_slice += 1;
                        self.handle(i)
                    }
                    None => break,
                },
                _ = std::future::ready(()), if self.core.judging() => self.judge_more(),
                _ = tokio::time::sleep_until(wake) => {
                    let t0 = Instant::now();
                    let actions = self.core.handle_timeout(t0);
                    self.act(actions);
                    self.count_lost();
                    self.dirty = true;
                    busy("timers", t0);
                }
                _ = tokio::time::sleep_until(publish_at), if self.dirty => self.publish_status(),
                _ = tokio::time::sleep_until(pace_wake), if paced.is_some() => {
                    for order in self.pacer.poll(Instant::now()) {
                        self.start_write(order);
                    }
                }
                Ok(()) = self.peers.changed() => self.update_standby(),
                _ = heartbeat.tick() => {
                    // Time alone changes some of `/status` (an unconfirmed
                    // switch grows old): publish at least this often.
                    self.dirty = true;
                    self.update_standby();
                    crate::ops::notify::heartbeat(&self.status);
                }
            }
        }
        self.drain_writes().await;
    }

    async fn drain_writes(&mut self) {
        // Writes still waiting for the budget never started: nothing to wait for.
        for order in self.pacer.drain() {
            warn!(master = %order.master, addr = %order.addr, "route write not started before exit (waiting for aws.write_rate)");
            self.core.forget_write(&order.master);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.core.writes_in_flight() {
            info!("waiting for in-flight route writes before exit");
            match tokio::time::timeout_at(deadline, self.results.recv()).await {
                Ok(Some(Input::WriteDone(w))) => {
                    log_write(&w);
                    self.core.forget_write(&w.master);
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
        let now = Instant::now();
        let kind = input_kind(&input);
        self.handle_input(now, input);
        busy(kind, now);
    }

    fn handle_input(&mut self, now: Instant, input: Input) {
        let input = match input {
            Input::Watch(msg) => {
                if let WatchMsg::Event {
                    sentinel,
                    event,
                    at,
                } = &msg
                {
                    METRICS
                        .input_delay_seconds
                        .observe(now.saturating_duration_since(*at).as_secs_f64());
                    self.journal.event(event, *at);
                    self.alert(AlertInput::Event {
                        sentinel: *sentinel,
                        event: event.clone(),
                    });
                }
                steering::Input::Watch(msg)
            }
            Input::Reconcile(why) => steering::Input::ReadRequested(why),
            Input::ReadDone(o, views) => {
                self.journal.read(&o);
                // A late or duplicated read is ignored by the core: its views too.
                if self.core.awaits_read(o.seq) {
                    self.views = views;
                    self.judged_read = Some((o.took, o.sentinels_answering));
                }
                let actions = self.core.handle(now, steering::Input::ReadDone(o));
                self.act(actions);
                self.read_judged();
                self.dirty = true;
                return;
            }
            Input::Reload(r) => {
                let Reload {
                    cfg,
                    links,
                    peers,
                    ec2,
                } = *r;
                if let Some(links) = links {
                    self.links = Arc::new(links);
                }
                self.peers = peers;
                if let Some(ec2) = ec2 {
                    self.ec2 = ec2;
                }
                if cfg.aws.write_rate != self.cfg.aws.write_rate {
                    let rate = cfg.aws.write_rate;
                    info!(
                        per_second = rate.per_second,
                        burst = rate.burst,
                        "aws.write_rate changed"
                    );
                    for order in self.pacer.set_budget(rate.per_second, rate.burst, now) {
                        self.start_write(order);
                    }
                }
                self.cfg = cfg;
                // The reload removes the series of removed masters: every
                // gauge is set again at the next publish.
                self.gauges.clear();
                self.status_listed = usize::MAX;
                self.update_standby();
                let actions = self.core.reconfigure(now, &self.cfg);
                self.act(actions);
                self.publish_status();
                return;
            }
            Input::WriteDone(w) => {
                log_write(&w);
                count_write(&w);
                self.journal.write(&w);
                if w.target_gone() && self.targets.evict(&w.addr) {
                    warn!(master = %w.master, addr = %w.addr, "EC2 says the target is gone; looking the address up again");
                }
                steering::Input::WriteDone(w)
            }
        };
        let actions = self.core.handle(now, input);
        self.act(actions);
        self.dirty = true;
    }

    /// Judges the next slice of the read being judged.
    fn judge_more(&mut self) {
        let t0 = Instant::now();
        self.judge_slice();
        busy("judging a slice of a majority read", t0);
    }

    fn judge_slice(&mut self) {
        self.since_slice = 0;
        let actions = self.core.judge_more(Instant::now());
        self.act(actions);
        self.read_judged();
        self.dirty = true;
    }

    /// Once the core has judged the read in full: its metrics and status.
    fn read_judged(&mut self) {
        if self.core.judging() {
            return;
        }
        if let Some((took, answering)) = self.judged_read.take() {
            self.after_read(took, answering);
        }
    }

    /// Adds what the core gave up on since the last call to the metric.
    fn count_lost(&mut self) {
        let (reads, writes) = self.core.lost_results();
        for (kind, now, before) in [
            ("read", reads, self.lost_counted.0),
            ("write", writes, self.lost_counted.1),
        ] {
            if now > before {
                METRICS
                    .results_lost
                    .get_or_create(&vec![("kind", kind.to_owned())])
                    .inc_by(now - before);
            }
        }
        self.lost_counted = (reads, writes);
    }

    fn act(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::StartRead { seq } => self.start_read(seq),
                Action::StartWrite(order) => self.pace_write(order),
                Action::Alert(input) => self.alert(input),
            }
        }
    }

    fn alert(&self, input: AlertInput) {
        if let Some(a) = &self.alerts {
            crate::daemon::inbox::offer(a, input);
        }
    }

    /// Hands a route write to the pacer; starts whatever it releases.
    fn pace_write(&mut self, order: WriteOrder) {
        let master = order.master.clone();
        let tables = order.cfg.route_tables.len();
        let released = self.pacer.offer(Instant::now(), &master, tables, order);
        if self.pacer.waiting() > 0 {
            debug!(%master, waiting = self.pacer.waiting(), "route writes waiting for aws.write_rate");
        }
        for order in released {
            self.start_write(order);
        }
    }

    fn start_write(&mut self, order: WriteOrder) {
        self.core
            .write_started(Instant::now(), &order.master, order.id);
        let deadline = self.write_deadline();
        let job = WriteJob {
            order: order.clone(),
            ec2: self.ec2.clone(),
            targets: self.targets.clone(),
        };
        let tx = self.results_tx.clone();
        supervise(job.run(), deadline, move |r, took| {
            let outcome = r.unwrap_or_else(|why| {
                error!(master = %order.master, addr = %order.addr, %why, "route write task did not finish");
                WriteOutcome::failed(&order, why, took)
            });
            // Fails only when the controller is gone (shutdown).
            let _ = tx.send(Input::WriteDone(Box::new(outcome)));
        });
    }

    fn start_read(&self, seq: u64) {
        let links = self.links.clone();
        let ec2 = self.ec2.clone();
        let cfg = self.cfg.clone();
        let targets = self.targets.clone();
        let tx = self.results_tx.clone();
        let deadline = self.read_deadline();
        let sentinels = self.cfg.sentinels.clone();
        supervise(
            async move { majority_read(seq, &links, &ec2, &cfg, &targets).await },
            deadline,
            move |r, took| {
                let outcome = r.unwrap_or_else(|why| {
                    error!(seq, %why, "majority read task did not finish");
                    ReadOutcome::failed(seq, why, took)
                });
                let views = sentinel_views(&sentinels, &outcome.answers);
                // Fails only when the controller is gone (shutdown).
                let _ = tx.send(Input::ReadDone(Box::new(outcome), views));
            },
        );
    }

    /// Bound for one write job (`steering::job_bounds`).
    fn write_deadline(&self) -> Duration {
        steering::job_bounds(&self.cfg).1
    }

    /// Bound for one majority read (`steering::job_bounds`).
    fn read_deadline(&self) -> Duration {
        steering::job_bounds(&self.cfg).0
    }

    fn after_read(&mut self, took: Duration, answering: usize) {
        let ok = self.core.last_read_ok();
        METRICS.reconcile_seconds.set(took.as_secs_f64());
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
        self.status.update(|s| {
            s.reconciles += 1;
            s.last_reconcile_ms = took.as_secs_f64() * 1e3;
            s.last_reconcile_ok = ok;
            s.last_reconcile_unix = now_unix();
            s.sentinels_answering = answering;
        });
        self.dirty = true;
        self.warm_discovery();
    }

    /// For masters without a static `nodes` map, looks up the replicas' ENIs ahead
    /// of a failover so the switch path finds them cached. One warm-up at a time.
    fn warm_discovery(&self) {
        let discovery: Vec<String> = self
            .cfg
            .masters
            .iter()
            .filter(|(_, m)| m.nodes.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if discovery.is_empty() || self.warming.swap(true, Ordering::AcqRel) {
            return;
        }
        let links = self.links.clone();
        let ec2 = self.ec2.clone();
        let targets = self.targets.clone();
        let warming = self.warming.clone();
        let cfg = self.cfg.clone();
        tokio::spawn(async move {
            for name in discovery {
                let Some(m) = cfg.masters.get(&name) else {
                    continue;
                };
                for link in links.iter() {
                    if let Ok(replicas) = link.replicas(&name).await {
                        for r in replicas {
                            if !targets.is_cached(&r) {
                                if let Err(e) = targets.warm(&ec2, &name, m, &r).await {
                                    debug!(master = %name, replica = %r, error = %e, "replica target not found yet");
                                }
                            }
                        }
                        break;
                    }
                }
            }
            warming.store(false, Ordering::Release);
        });
    }

    /// Rebuilds `/status`'s masters and the per-master gauges from the core:
    /// O(masters), so called at most every [`PUBLISH_EVERY`] (and on reload).
    fn publish_status(&mut self) {
        let t0 = Instant::now();
        self.dirty = false;
        self.publish_status_now();
        busy("publishing /status", t0);
    }

    fn publish_status_now(&mut self) {
        self.published = Instant::now();
        let now = self.published;
        let count = self.core.master_count();
        // Every master at once up to STATUS_SLICE of them (and after a
        // reload); beyond, a slice per publish plus every master being acted
        // on: with 1,000 masters, rebuilding all of them held the loop for
        // 10-28 ms every 100 ms (release build), and every sentinel event
        // behind it waited as long.
        let full = count <= STATUS_SLICE || self.status_listed != count;
        let mut updates: Vec<(usize, MasterStatus)> = if full {
            self.status_cursor = 0;
            self.dirty = false;
            self.core.status(now).into_iter().enumerate().collect()
        } else {
            let end = (self.status_cursor + STATUS_SLICE).min(count);
            let mut at: Vec<usize> = (self.status_cursor..end).collect();
            at.extend(self.core.busy_masters(STATUS_SLICE));
            at.sort_unstable();
            at.dedup();
            self.status_cursor = if end >= count { 0 } else { end };
            // Clean once a whole round has been published.
            self.dirty = self.status_cursor != 0;
            self.core.status_at(now, &at)
        };
        let built = now.elapsed();
        for (_, m) in &mut updates {
            m.sentinels = self.views.get(&m.name).cloned().unwrap_or_default();
            m.target = self.expected_target(&m.name, m.majority.as_deref());
            let right = m.last_error.is_none()
                && !m.no_majority
                && m.majority.is_some()
                && m.applied == m.majority;
            let gauges = (right, m.unconfirmed.is_some(), m.no_majority);
            // Each series set when it changes only (three label allocations
            // and lookups per master otherwise).
            if self.gauges.get(&m.name) == Some(&gauges) {
                continue;
            }
            self.gauges.insert(m.name.clone(), gauges);
            let label = vec![("master", m.name.clone())];
            METRICS.route_ok.get_or_create(&label).set(i64::from(right));
            METRICS
                .switch_unconfirmed
                .get_or_create(&label)
                .set(i64::from(m.unconfirmed.is_some()));
            METRICS
                .no_majority
                .get_or_create(&label)
                .set(i64::from(m.no_majority));
        }
        let filled = now.elapsed();
        let connected = self.core.connected_count();
        let refused = self.core.refused();
        let mut old = Vec::new();
        let n = updates.len();
        if full {
            let masters: Vec<MasterStatus> = updates.into_iter().map(|(_, m)| m).collect();
            self.journal.status(&masters);
            self.status_listed = masters.len();
            self.status.update(|s| {
                s.sentinels_connected = connected;
                s.sentinels_refused = refused;
                old = std::mem::replace(&mut s.masters, masters);
            });
        } else {
            self.journal.status(updates.iter().map(|(_, m)| m));
            self.status.update(|s| {
                s.sentinels_connected = connected;
                s.sentinels_refused = refused;
                for (i, m) in updates {
                    if let Some(slot) = s.masters.get_mut(i) {
                        old.push(std::mem::replace(slot, m));
                    }
                }
            });
        }
        // What was replaced is freed outside the lock.
        drop(old);
        if now.elapsed() >= BUSY_WARN {
            debug!(
                masters = n,
                full,
                built_ms = built.as_secs_f64() * 1e3,
                filled_ms = filled.as_secs_f64() * 1e3,
                total_ms = now.elapsed().as_secs_f64() * 1e3,
                "a slow /status publish"
            );
        }
    }
}

impl Controller {
    /// The target the majority's master maps to, if known without I/O.
    fn expected_target(&self, master: &str, majority: Option<&str>) -> Option<String> {
        let cfg = self.cfg.masters.get(master)?;
        let addr: crate::config::Addr = majority?.parse().ok()?;
        match self.targets.cached(master, cfg, &addr)? {
            Ok(t) => Some(t.to_string()),
            Err(e) => Some(format!("none: {e}")),
        }
    }
}

/// Each configured sentinel's answer per master, as `/status` shows it.
fn sentinel_views(
    sentinels: &[crate::config::Addr],
    answers: &HashMap<String, Vec<crate::decide::quorum::Answer>>,
) -> HashMap<String, Vec<SentinelView>> {
    use crate::decide::quorum::Answer;
    answers
        .iter()
        .map(|(master, list)| {
            let views = sentinels
                .iter()
                .zip(list)
                .map(|(s, a)| SentinelView {
                    sentinel: s.to_string(),
                    says: match a {
                        Answer::View(v) => {
                            format!("{} @ epoch {} ({})", v.addr, v.config_epoch, v.flags)
                        }
                        Answer::Tilt => "TILT".into(),
                        Answer::NotMonitored => "does not monitor it".into(),
                        Answer::Unreachable => "unreachable".into(),
                    },
                })
                .collect();
            (master.clone(), views)
        })
        .collect()
}

/// Runs `fut` as a task and calls `report` exactly once with its result, or
/// with why it has none (panicked, or still running after `deadline`: then it
/// is aborted).
fn supervise<T, F, R>(fut: F, deadline: Duration, report: R)
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    R: FnOnce(Result<T, String>, Duration) + Send + 'static,
{
    let started = Instant::now();
    let mut handle = tokio::spawn(fut);
    tokio::spawn(async move {
        let r = match tokio::time::timeout(deadline, &mut handle).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_panic() => Err("the task panicked".to_owned()),
            Ok(Err(_)) => Err("the task was cancelled".to_owned()),
            Err(_) => {
                handle.abort();
                Err(format!(
                    "no answer within {} s; abandoned",
                    deadline.as_secs()
                ))
            }
        };
        report(r, started.elapsed());
    });
}

pub(crate) fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Masters whose `/status` is rebuilt per publish when there are more (plus
/// every master being acted on); a whole round of 1,000 takes 8 publishes.
const STATUS_SLICE: usize = 128;

/// One step of the loop that held it longer than this is logged: every
/// sentinel event behind it waited as long.
const BUSY_WARN: Duration = Duration::from_millis(10);

/// Logs a step of the loop that held it for longer than [`BUSY_WARN`].
fn busy(what: &str, since: Instant) {
    let took = since.elapsed();
    if took >= BUSY_WARN {
        warn!(
            step = what,
            took_ms = took.as_secs_f64() * 1e3,
            "the decision loop was busy: sentinel events waited behind this step"
        );
    }
}

/// What an input is, for [`busy`].
fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Watch(_) => "a sentinel event or link change",
        Input::Reconcile(_) => "a read request",
        Input::ReadDone(..) => "a majority read's result",
        Input::WriteDone(_) => "a route write's result",
        Input::Reload(_) => "a config reload",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::event::Event;

    /// `n` masters with static nodes; EC2 and sentinels unreachable (nothing
    /// here reads them: no reconcile is asked for until the end).
    fn many_masters(n: usize) -> Config {
        let mut y = String::from(
            "sentinels: [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\naws:\n  region: us-east-1\n  endpoint_url: http://127.0.0.1:1\nreconcile:\n  interval: 30s\nmasters:\n",
        );
        for i in 0..n {
            let (a, b) = (i / 250, 1 + i % 250);
            y += &format!(
                "  m{i}:\n    vip: 172.16.{a}.{b}/32\n    route_tables: [rtb-{i:08x}]\n    nodes:\n      \"10.0.{a}.{b}:6379\": {{ network_interface_id: eni-{i:08x} }}\n"
            );
        }
        Config::parse(&y).expect("test config parses")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cost_of_an_input_does_not_grow_with_the_masters() {
        const EVENTS: usize = 5_000;
        let cfg = Arc::new(many_masters(1_000));
        let ec2 = Ec2::for_config(&cfg).await;
        let (tx, rx) = mpsc::channel(EVENTS + 16);
        let status = SharedStatus::new(3);
        let controller = Controller::new(cfg, ec2, Vec::new(), rx, None, status.clone());
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(controller.run(shutdown));
        let started = Instant::now();
        for i in 0..EVENTS {
            let m = i % 1_000;
            let kind = if i % 2 == 0 { "+sdown" } else { "-sdown" };
            let payload = format!("master m{m} 10.0.{}.{} 6379", m / 250, 1 + m % 250);
            let event = crate::watch::event::parse(kind, &payload).expect("event parses");
            assert!(matches!(event, Event::Instance { .. }));
            tx.send(Input::Watch(WatchMsg::Event {
                sentinel: 0,
                event,
                at: Instant::now(),
            }))
            .await
            .expect("inbox open");
        }
        // FIFO: once this one shows in /status, every event before it was handled.
        tx.send(Input::Watch(WatchMsg::Connected(0)))
            .await
            .expect("inbox open");
        let bound = Duration::from_secs(5);
        while status.get().sentinels_connected == 0 {
            assert!(
                started.elapsed() < bound,
                "{EVENTS} events for 1,000 masters not handled within {bound:?}: the cost of an input grows with the masters"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
}
