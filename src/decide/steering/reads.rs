//! Majority reads: the read scheduler (one read at a time, one more queued
//! behind it, extra reads at a set time) and judging a finished read: EC2's
//! health, then every master against the sentinels' majority.

use std::collections::BTreeSet;
use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::writes::retry_delay;
use super::{
    Action, Cause, MasterState, ReadOutcome, Steering, DEFAULT_FAILOVER_TIMEOUT, EPOCH_BACK_HOLD,
    EPOCH_BACK_RECHECK,
};
use crate::config::Target;
use crate::decide::facts::{CarrierReads, ErrorClass, TableReads};
use crate::decide::fold::{AlertInput, Condition, MasterRead, RouteReport};
use crate::decide::plan::{carriers, Carrier, RouteAction};
use crate::decide::quorum::{self, Answer, Verdict};
use crate::watch::event::Addr;

impl Steering {
    /// Starts a majority read unless one is running (then one more follows it).
    pub(super) fn request_read(&mut self, why: &'static str, out: &mut Vec<Action>) {
        if self.read_running.is_some() || self.judging.is_some() {
            self.read_pending.get_or_insert(why);
            return;
        }
        self.seq += 1;
        self.read_running = Some((self.seq, self.clock + self.read_due_after));
        debug!(why, seq = self.seq, "majority read");
        out.push(Action::StartRead { seq: self.seq });
    }

    pub(super) fn read_soon(&mut self, at: Instant, why: &'static str) {
        match self.read_at {
            Some((t, _)) if t <= at => {}
            _ => self.read_at = Some((at, why)),
        }
    }

    /// Ends a running read whose result did not come by its deadline: counted,
    /// logged, and the read is started again (returns true: read now).
    pub(super) fn read_result_lost(&mut self, now: Instant) -> bool {
        let Some((seq, due)) = self.read_running else {
            return false;
        };
        if now < due {
            return false;
        }
        self.read_running = None;
        self.lost.0 += 1;
        self.last_read_ok = false;
        error!(seq, waited_s = self.read_due_after.as_secs(),
            "majority read gave no result by its deadline; reading again (counted in sentinel_vip_results_lost_total)");
        true
    }

    pub(super) fn on_read(&mut self, now: Instant, o: ReadOutcome, out: &mut Vec<Action>) {
        match self.read_running {
            Some((seq, _)) if seq == o.seq => self.read_running = None,
            _ => {
                // The core gave up on it (deadline), or it came twice: the read
                // that replaced it judges; this one changes nothing.
                warn!(seq = o.seq, running = ?self.read_running.map(|r| r.0),
                    "majority read result came after its deadline or twice; ignored");
                return;
            }
        }
        let ok = self.judge_ec2(now, &o, out);
        let mut left: Vec<String> = self.masters.keys().cloned().collect();
        left.reverse();
        self.judging = Some(Box::new(Judging {
            outcome: o,
            left,
            ok,
            again: false,
        }));
        self.judge_slice(now, out);
    }

    /// Judges the next [`JUDGE_SLICE`] masters of the read being judged; the
    /// last slice ends the read (its verdict, the read that follows it).
    pub(super) fn judge_slice(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(mut j) = self.judging.take() else {
            return;
        };
        let configured = self.configured();
        for _ in 0..JUDGE_SLICE {
            let Some(name) = j.left.pop() else { break };
            match self.judge_master(now, &name, &j.outcome, configured, out) {
                Judged::Ok => {}
                Judged::Failed => j.ok = false,
                Judged::ReadAgain => j.again = true,
                Judged::RecheckAt(at) => {
                    j.ok = false;
                    self.read_soon(at, "config-epoch went back");
                }
            }
        }
        if !j.left.is_empty() {
            self.judging = Some(j);
            return;
        }
        self.last_read_ok = j.ok;
        let pending = self.read_pending.take();
        if j.again {
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

    /// One master against a finished read, step by step: the route tables as
    /// read, the replicas the sentinels know, then the majority's verdict (the
    /// epoch rule, the unconfirmed switch, the routes brought to the majority).
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
        let (unreadable, transient) =
            st.take_tables(name, o.tables.as_ref().ok(), o.carriers.get(name));
        if unreadable.is_some() || transient {
            result = Judged::Failed;
        }
        // A route-table read that failed as a whole says nothing of which
        // carrier is readable: an open unreadable incident is neither
        // resolved nor re-said from it unless some carrier is known missing.
        if o.tables.is_ok() || unreadable.is_some() {
            st.alert_unreadable(name, unreadable, out);
        }
        let empty = Vec::new();
        let answers = o.answers.get(name).unwrap_or(&empty);
        st.learn_replicas(answers);
        st.learn_failover_timeout(answers);
        match quorum::decide(answers, configured) {
            Verdict::Master {
                addr,
                config_epoch,
                votes,
                ..
            } => {
                match st.epoch_rule(
                    now,
                    name,
                    &self.sentinels,
                    answers,
                    &addr,
                    config_epoch,
                    out,
                ) {
                    EpochRule::SeenOnce => return Judged::RecheckAt(now + EPOCH_BACK_RECHECK),
                    EpochRule::Held(at) => return Judged::RecheckAt(at),
                    EpochRule::Accepted => st.epoch_back_since = Some(now),
                    EpochRule::NotLower => {}
                }
                st.high_seen = Some(now);
                st.epoch_back_held(now, name, config_epoch, out);
                st.majority_back(name, &addr, votes, out);
                st.majority = Some((addr.clone(), config_epoch));
                // The master's state, for the incident fold (level-triggered).
                out.push(Action::Alert(AlertInput::MasterRead(
                    MasterRead::from_views(
                        name,
                        &addr,
                        config_epoch,
                        answers.iter().filter_map(Answer::view),
                        crate::config::majority_of(configured),
                        now.checked_sub(o.took).unwrap_or(now),
                    ),
                )));
                st.settle_unconfirmed(now, name, &addr, config_epoch, votes, out);
                if o.tables.is_err() {
                    // A revert needs no table read: the VIP is where our own
                    // write put it. Written blind (ReplaceRoute, CreateRoute as
                    // the fallback), not left until EC2 reads again.
                    let revert = st
                        .unconfirmed
                        .as_ref()
                        .is_some_and(|u| u.reverting.is_some())
                        && st.heading_to() != Some(&addr);
                    if revert {
                        self.dispatch(name, addr, Cause::Reconcile, now, out);
                    }
                    return result;
                }
                if !self.follow_majority(now, name, addr, o, out) {
                    result = Judged::Failed;
                }
                if self
                    .masters
                    .get(name)
                    .is_some_and(|st| st.route_wrong_too_long(now))
                {
                    result = Judged::Failed;
                }
                result
            }
            Verdict::NoMajority {
                usable,
                best,
                needed,
            } => {
                st.lose_majority(name, usable, best, needed, configured, out);
                Judged::Failed
            }
        }
    }

    /// Brings the master's routes to the majority's `addr` (the tables were
    /// read): a running write towards it is left alone, drift is repaired, and
    /// routes found right settle an open failure. Returns false when the
    /// address cannot be mapped to an EC2 target.
    fn follow_majority(
        &mut self,
        now: Instant,
        name: &str,
        addr: Addr,
        o: &ReadOutcome,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(st) = self.masters.get_mut(name) else {
            return true;
        };
        if let Some(p) = st.pending.take_if(|p| p.addr != addr) {
            // A standby's wish the majority refutes (a switch the writer did
            // not act on, or reverted): never checked, never written.
            info!(master = %name, wish = %p.addr, majority = %addr,
                "standby: the majority names another master; the write left to the designated writer is dropped");
        }
        if let Some(flying) = st.in_flight.clone() {
            // The write reads its own result back; only a different
            // wish needs queueing.
            if flying != addr {
                self.dispatch(name, addr, Cause::Reconcile, now, out);
            }
            return true;
        }
        let target = o.targets.get(name).and_then(|t| t.get(&addr)).cloned();
        match target {
            Some(Ok(target)) => {
                let wrong = st.wrong_routes(&target);
                if wrong.is_empty() {
                    if st.pending.as_ref().is_some_and(|p| p.addr == addr) {
                        // The designated writer did it: nothing left to check.
                        debug!(master = %name, %addr, "standby: the majority read shows the designated writer's routes; no check needed");
                        st.pending = None;
                    }
                    if st.applied.as_ref() != Some(&addr) {
                        info!(master = %name, %addr, %target, "VIP route already right in every table");
                    }
                    if (st.failures > 0 || st.last_error.is_some()) && st.missing_tables.is_empty()
                    {
                        // A failed write is open: the route is right
                        // after all (another watcher fixed it, or the
                        // read-back was slow), so the failure resolves —
                        // unless a table could not be read: then it is
                        // not known to be right.
                        out.push(Action::Alert(AlertInput::RouteVerified {
                            master: name.to_owned(),
                            addr: addr.to_string(),
                            target: target.to_string(),
                        }));
                    }
                    st.revert_done(name, &addr, out);
                    st.applied = Some(addr);
                    if st.missing_tables.is_empty() {
                        st.wrong_since = None;
                        st.last_error = None;
                        st.failures = 0;
                        st.retry_at = None;
                    }
                } else if st.pending.as_ref().is_some_and(|p| p.addr == addr) {
                    debug!(master = %name, %addr, routes = %wrong.join(","),
                        "standby: routes not moved yet; the designated writer has until the check");
                } else {
                    warn!(master = %name, %addr, %target, routes = %wrong.join(","),
                        "VIP route drifted from the majority's master; repairing");
                    self.dispatch(name, addr, Cause::Reconcile, now, out);
                }
                true
            }
            Some(Err(e)) => {
                error!(master = %name, %addr, error = %e, "cannot map the master to an EC2 target");
                st.last_error = Some(e.to_string());
                // Not only a log line: the VIP cannot follow the majority's
                // master, which is a failed route update until a target is
                // found (resolved by a good write or a read finding it right).
                out.push(Action::Alert(AlertInput::Route(RouteReport {
                    master: name.to_owned(),
                    addr: addr.to_string(),
                    ok: false,
                    target: String::new(),
                    tables_written: 0,
                    tables_total: st.cfg.route_tables.len(),
                    latency_ms: 0.0,
                    carriers: Vec::new(),
                    error: Some(format!(
                        "no EC2 target for the sentinel majority's master {addr}: {e}; the VIP route stays where it is"
                    )),
                })));
                false
            }
            None => {
                self.dispatch(name, addr, Cause::Reconcile, now, out);
                true
            }
        }
    }
}

/// The steps of `Steering::judge_master` that touch one master only.
impl MasterState {
    /// Takes the carriers as read (`tables`: the route tables, `None` when
    /// their read failed as a whole; `others`: the other kinds). A carrier that
    /// cannot be read is dropped from the cache and listed in `missing_tables`.
    /// Returns why (and logs it) when any is, and whether one could not be read
    /// for now (throttled, unreachable: unknown, not missing).
    fn take_tables(
        &mut self,
        name: &str,
        tables: Option<&TableReads>,
        others: Option<&CarrierReads>,
    ) -> (Option<String>, bool) {
        // A kind that was not read this time keeps what was said of it.
        self.missing_tables.retain(|c| match c {
            Carrier::RouteTable(_) => tables.is_none(),
            _ => others.is_none(),
        });
        let mut why = Vec::new();
        let mut transient = false;
        for c in carriers(&self.cfg) {
            let read = match (&c, self.cfg.vip) {
                (Carrier::RouteTable(t), Some(vip)) => {
                    let Some(tables) = tables else { continue };
                    tables.get(t).map(|r| {
                        r.as_ref()
                            .map(|r| r.route(&vip.0).into())
                            .map_err(Clone::clone)
                    })
                }
                (Carrier::RouteTable(_), None) => continue,
                (c, _) => {
                    let Some(others) = others else { continue };
                    others.get(c).cloned()
                }
            };
            let t = &c;
            match read {
                Some(Ok(held)) => {
                    self.routes.insert(t.clone(), held);
                }
                Some(Err(e)) if t.route_table().is_none() && e.class == ErrorClass::Transient => {
                    // Throttled or unreachable: unknown until the next read,
                    // not "not found".
                    self.routes.remove(t);
                    warn!(master = %name, carrier = %t, error = %e, "cannot read this carrier now; read again at the next reconcile");
                    transient = true;
                }
                Some(Err(e)) => {
                    // Never judge from a stale cache what cannot be read now.
                    self.routes.remove(t);
                    self.missing_tables.push(t.clone());
                    why.push(e.to_string());
                }
                None => {
                    self.routes.remove(t);
                    self.missing_tables.push(t.clone());
                    why.push(format!("{t}: not in AWS's answer"));
                }
            }
        }
        if !self.missing_tables.is_empty() {
            error!(master = %name, tables = %missing_text(&self.missing_tables), error = %why.join("; "),
                "route table or other carrier cannot be read (deleted, another account or region, or a typo in masters.{name})");
            return (
                Some(format!(
                    "{} ({}); deleted, in another account or region, or a typo in masters.{name}?",
                    missing_text(&self.missing_tables),
                    why.join("; ")
                )),
                transient,
            );
        }
        (None, transient)
    }

    /// An unreadable table is an incident, firing until every table reads
    /// again. Said at every read while it lasts (the fold folds repeats into
    /// the open incident, so an input lost on the way, or a fold that never
    /// heard it, is healed by the next read); its end is said once.
    fn alert_unreadable(&mut self, name: &str, why: Option<String>, out: &mut Vec<Action>) {
        let alert = |bad: bool, detail: String| {
            Action::Alert(AlertInput::Condition {
                master: name.to_owned(),
                condition: Condition::TableUnreadable,
                bad,
                detail,
            })
        };
        match why {
            Some(why) => {
                out.push(alert(true, why.clone()));
                self.tables_alerted = Some(why);
            }
            None => {
                if self.tables_alerted.take().is_some() {
                    info!(master = %name, "every route table can be read again");
                    out.push(alert(false, "every route table reads again".into()));
                }
            }
        }
    }

    /// Resolves the alert of an accepted config-epoch regression once the
    /// majority has held for [`EPOCH_BACK_HOLD`] (any epoch not lower again:
    /// a lower one is a new regression, alerted by the epoch rule).
    fn epoch_back_held(&mut self, now: Instant, name: &str, epoch: u64, out: &mut Vec<Action>) {
        let Some(since) = self.epoch_back_since else {
            return;
        };
        if now.saturating_duration_since(since) < EPOCH_BACK_HOLD {
            return;
        }
        self.epoch_back_since = None;
        out.push(Action::Alert(AlertInput::Condition {
            master: name.to_owned(),
            condition: Condition::EpochWentBack,
            bad: false,
            detail: format!("the majority has held at config-epoch {epoch} or later"),
        }));
    }

    /// Replicas every answering sentinel knows: plausible fast-path targets
    /// (kept as they were when no answer names any).
    fn learn_replicas(&mut self, answers: &[Answer]) {
        let known: BTreeSet<Addr> = answers
            .iter()
            .filter_map(|a| match a {
                Answer::View(v) => Some(v.replicas.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect();
        if !known.is_empty() {
            self.replicas = known;
        }
    }

    /// The longest `failover-timeout` any answering sentinel reports.
    fn learn_failover_timeout(&mut self, answers: &[Answer]) {
        let reported = answers
            .iter()
            .filter_map(|a| match a {
                Answer::View(v) => v.failover_timeout,
                _ => None,
            })
            .max();
        if reported.is_some() {
            self.failover_timeout = reported;
        }
    }

    /// The epoch rule: a majority at a lower config-epoch than the last one
    /// applied is followed only when it is seen in two consecutive reads *and*
    /// it is a reset:
    /// - re-monitored: the majority is at config-epoch 0 (`SENTINEL REMOVE` +
    ///   `MONITOR`);
    /// - restarted: every configured sentinel answers, none at the higher
    ///   epoch (restarted without its rewritten `sentinel.conf`);
    /// - gone: the sentinels that do not answer (unreachable or in TILT),
    ///   among them those that held the higher epoch, have been silent for
    ///   longer than `failover-timeout` (after which Sentinel itself would
    ///   have tried another failover).
    ///
    /// Otherwise the lower epoch is a stale minority view promoted by silence
    /// (the sentinels with the newer configuration are only cut off or in
    /// TILT): the VIP is held where it is, said, and read again when the
    /// timeout would pass ([`EpochRule::Held`]). Accepted, it is alerted as a
    /// condition of its own, naming which reset it was.
    #[allow(clippy::too_many_arguments)]
    fn epoch_rule(
        &mut self,
        now: Instant,
        name: &str,
        sentinels: &[String],
        answers: &[Answer],
        addr: &Addr,
        config_epoch: u64,
        out: &mut Vec<Action>,
    ) -> EpochRule {
        let Some((last_addr, last_epoch)) = self.majority.clone() else {
            return EpochRule::NotLower;
        };
        if config_epoch >= last_epoch {
            self.epoch_back = None;
            return EpochRule::NotLower;
        }
        let named = |keep: &dyn Fn(&Answer) -> bool| -> Vec<&str> {
            answers
                .iter()
                .enumerate()
                .filter(|(_, a)| keep(a))
                .filter_map(|(i, _)| sentinels.get(i).map(|s| s.as_str()))
                .collect()
        };
        let lower = named(&|a| matches!(a, Answer::View(v) if v.config_epoch < last_epoch));
        let silent = named(&|a| matches!(a, Answer::Unreachable | Answer::Tilt));
        if self.epoch_back.as_ref() != Some(&(addr.clone(), config_epoch)) {
            warn!(master = %name, %addr, config_epoch, known = last_epoch, sentinels = %lower.join(","),
                "majority at a lower config-epoch than the last one applied; reading again to be sure");
            self.epoch_back = Some((addr.clone(), config_epoch));
            return EpochRule::SeenOnce;
        }
        let timeout = self.failover_timeout.unwrap_or(DEFAULT_FAILOVER_TIMEOUT);
        let silent_for = self.high_seen.map(|t| now.saturating_duration_since(t));
        let reset = if config_epoch == 0 {
            "re-monitored: the majority is at config-epoch 0".to_owned()
        } else if silent.is_empty() {
            "restarted: every sentinel answers and none holds the higher epoch (restarted without its config?)".to_owned()
        } else if silent_for.is_none_or(|d| d >= timeout) {
            format!(
                "gone: the sentinels not answering ({}) have been silent for longer than failover-timeout ({} s)",
                silent.join(", "),
                timeout.as_secs()
            )
        } else {
            let at = self.high_seen.map_or(now, |t| t + timeout);
            warn!(master = %name, %addr, config_epoch, known = last_epoch, silent = %silent.join(","),
                silent_s = silent_for.unwrap_or_default().as_secs(), failover_timeout_s = timeout.as_secs(),
                "majority at a lower config-epoch while sentinels are unreachable or in TILT: not a reset (yet); VIP held where it is");
            return EpochRule::Held(at.max(now + EPOCH_BACK_RECHECK));
        };
        let detail = format!(
            "config-epoch went back from {last_epoch} to {config_epoch} on {} ({reset}); following the majority: {addr} (was {last_addr})",
            lower.join(", ")
        );
        error!(master = %name, "{detail}");
        // Told as an alert of its own (it used to ride on a majority
        // "ok", which only resolves a lost majority: told nowhere).
        out.push(Action::Alert(AlertInput::Condition {
            master: name.to_owned(),
            condition: Condition::EpochWentBack,
            bad: true,
            detail,
        }));
        self.epoch_back = None;
        EpochRule::Accepted
    }

    /// A majority again after none: said and alerted.
    fn majority_back(&mut self, name: &str, addr: &Addr, votes: usize, out: &mut Vec<Action>) {
        if self.no_majority {
            info!(master = %name, %addr, votes, "sentinel majority is back");
            self.no_majority = false;
            out.push(Action::Alert(AlertInput::Majority {
                master: name.to_owned(),
                ok: true,
                detail: format!("{votes} sentinels agree on {addr}"),
            }));
        }
    }

    /// Ends an unconfirmed fast-path switch: confirmed when the majority names
    /// the same address; otherwise the routes are moved back by
    /// `Steering::follow_majority`. An alerted one is cleared.
    fn settle_unconfirmed(
        &mut self,
        now: Instant,
        name: &str,
        addr: &Addr,
        config_epoch: u64,
        votes: usize,
        out: &mut Vec<Action>,
    ) {
        if let Some(mut u) = self.unconfirmed.take() {
            let waited_ms = now.duration_since(u.since).as_secs_f64() * 1e3;
            if u.addr == *addr {
                info!(master = %name, %addr, config_epoch, votes, waited_ms, "switch confirmed by the sentinel majority");
            } else {
                if u.reverting.as_ref() != Some(addr) {
                    error!(master = %name, switched_to = %u.addr, majority = %addr, config_epoch, votes, waited_ms,
                        "the sentinel majority names another master than the +switch-master did: moving the VIP back");
                }
                // Still unconfirmed until the route is back: see `revert_done`.
                u.reverting = Some(addr.clone());
                self.unconfirmed = Some(u);
                return;
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
    }

    /// The route is verified on `addr`: a revert towards it is over, and its
    /// alert (if told) resolved.
    pub(super) fn revert_done(&mut self, name: &str, addr: &Addr, out: &mut Vec<Action>) {
        let Some(u) = self
            .unconfirmed
            .take_if(|u| u.reverting.as_ref() == Some(addr))
        else {
            return;
        };
        info!(master = %name, %addr, switched_to = %u.addr, "VIP moved back to the sentinel majority's master");
        if u.alerted {
            out.push(Action::Alert(AlertInput::Majority {
                master: name.to_owned(),
                ok: true,
                detail: format!(
                    "VIP back on {addr}, where the sentinel majority says the master is"
                ),
            }));
        }
    }

    /// Tables (among those read) whose VIP route does not point at `target`,
    /// as `table=route` for the log line.
    fn wrong_routes(&self, target: &Target) -> Vec<String> {
        carriers(&self.cfg)
            .iter()
            .filter(|t| !self.missing_tables.contains(t))
            .filter_map(|t| {
                let r = self.routes.get(t)?;
                (r.plan(target) != RouteAction::Keep).then(|| format!("{t}={}", r.describe()))
            })
            .collect()
    }

    /// No majority: the route is kept where it is, said and alerted once.
    fn lose_majority(
        &mut self,
        name: &str,
        usable: usize,
        best: Option<(Addr, usize)>,
        needed: usize,
        configured: usize,
        out: &mut Vec<Action>,
    ) {
        self.epoch_back = None;
        if !self.no_majority {
            let best = best
                .map(|(a, v)| format!("{a} ({v} votes)"))
                .unwrap_or_else(|| "none".into());
            error!(master = %name, usable, needed, best = %best,
                "no sentinel majority for this master: VIP route kept where it is");
            self.no_majority = true;
            out.push(Action::Alert(AlertInput::Majority {
                master: name.to_owned(),
                ok: false,
                detail: format!("{usable} of {configured} sentinels usable, {needed} needed; best candidate {best}"),
            }));
        }
    }
}

/// Masters judged per step of a finished majority read. Judging one master
/// costs microseconds, but 1,000 of them in one go held the loop for
/// milliseconds (debug: ~15 ms) while sentinel events waited in the inbox;
/// the driver serves its inbox between slices.
pub(crate) const JUDGE_SLICE: usize = 64;

/// A finished majority read being judged, [`JUDGE_SLICE`] masters at a time.
/// Events and results handled between two slices see the masters judged so
/// far; a master switched by the fast path meanwhile is not judged by this
/// read (`changed_seq`: it predates the switch) but by a follow-up read.
pub(super) struct Judging {
    outcome: ReadOutcome,
    /// Masters still to judge, the next one last.
    left: Vec<String>,
    /// No master failed so far (EC2 included).
    ok: bool,
    /// Some master needs a fresh read.
    again: bool,
}

/// What the epoch rule made of a majority's config-epoch.
enum EpochRule {
    /// Not lower than the last one applied.
    NotLower,
    /// Lower, seen the first time: read again before following it.
    SeenOnce,
    /// Lower, seen twice in a row, and a reset: alerted and followed.
    Accepted,
    /// Lower, seen twice, but not a reset (the sentinels that held the higher
    /// epoch are only silent): held; read again at.
    Held(Instant),
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

pub(super) fn missing_text(tables: &[Carrier]) -> String {
    let (routes, others): (Vec<&Carrier>, Vec<&Carrier>) =
        tables.iter().partition(|c| c.route_table().is_some());
    let ids = |v: Vec<&Carrier>| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut said = Vec::new();
    if !routes.is_empty() {
        said.push(format!(
            "route table {} not found in EC2 (or not readable)",
            ids(routes)
        ));
    }
    if !others.is_empty() {
        said.push(format!(
            "{} not found in AWS (or not readable)",
            ids(others)
        ));
    }
    said.join("; ")
}
