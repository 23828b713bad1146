//! Sentinel event intake: [`Fold::on_event`] and the aborts it hands to
//! `on_abort`.

use std::time::Duration;

use super::{Ended, Fold, Kind, Severity, Stamp, State};
use crate::watch::event::{Event, InstanceEvent as IE, Role};
use crate::watch::SentinelId;

/// A `+try-failover` this long after the previous one is Sentinel's retry of
/// the failover (it waits 2 × failover-timeout), not a sentinel racing for the
/// same election (those come within the ~1 s of Sentinel's start desync).
const RETRY_GAP: Duration = Duration::from_secs(3);

impl Fold {
    /// Folds one sentinel event in. Events about masters that are not
    /// configured are counted in `ignored` and otherwise dropped.
    pub fn on_event(&mut self, at: Stamp, sentinel: SentinelId, event: &Event) {
        if let Some(m) = event.master() {
            if !self.configured(m) {
                self.ignored += 1;
                return;
            }
        }
        match event {
            Event::NewEpoch(e) => self.epoch = self.epoch.max(*e),
            Event::SwitchMaster { master, old, new } => {
                self.level(master).event_at = Some(at.mono);
                self.switched(at, master, old.to_string(), new.to_string(), false);
            }
            Event::Instance {
                kind,
                instance,
                detail,
            } => {
                let master = instance.master.as_str();
                match (*kind, instance.role) {
                    (IE::Odown, Role::Master) => {
                        let addr = instance.addr.to_string();
                        // After a switch, only the new master can go down: a
                        // +odown of the old one is late news.
                        let current = self.last_switch.get(master).is_none_or(|to| *to == addr);
                        let fresh = current && !self.odown.contains(master);
                        if current {
                            self.odown.insert(master.to_owned());
                            let lv = self.level(master);
                            lv.up = Some(false);
                            lv.event_at = Some(at.mono);
                        }
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.down = true;
                            i.up_before = false;
                            self.absorbed += 1;
                            return;
                        }
                        let note = format!("+odown {detail}").trim().to_owned();
                        if fresh {
                            // A new down transition: a new incident even when the
                            // epoch's key is taken (the last failover's epoch).
                            let i = self.open_new_failover(at, master, addr);
                            i.events += 1;
                            i.down = true;
                            i.annotate(note);
                            return;
                        }
                        let key = self.failover_key(master);
                        if let Some(i) = self.open(
                            at,
                            key,
                            master,
                            Kind::Failover,
                            Severity::Critical,
                            Some(addr),
                        ) {
                            i.events += 1;
                            i.down = true;
                            i.up_before = false;
                            i.annotate(note);
                        }
                    }
                    (IE::OdownCleared, Role::Master) => {
                        let addr = instance.addr.to_string();
                        if self.last_switch.get(master).is_none_or(|to| *to == addr) {
                            self.odown.remove(master);
                            self.last_abort.remove(master);
                            let lv = self.level(master);
                            lv.up = Some(true);
                            lv.event_at = Some(at.mono);
                        }
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.resolve(at);
                        }
                    }
                    (IE::Sdown | IE::SdownCleared, Role::Master) => {
                        // Not an incident on its own; evidence that the master
                        // was down (so a failover that follows is not planned).
                        let addr = instance.addr.to_string();
                        if self.last_switch.get(master).is_none_or(|to| *to == addr) {
                            let down = *kind == IE::Sdown;
                            let lv = self.level(master);
                            lv.sdown = down;
                            lv.event_at = Some(at.mono);
                            if down {
                                if let Some(i) = self.open_master_incident(master, true) {
                                    i.up_before = false;
                                }
                            }
                        }
                        self.absorbed += 1;
                    }
                    (IE::TryFailover, Role::Master) => {
                        self.level(master).event_at = Some(at.mono);
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.tries += 1;
                            let gap = i.last_try.map(|t| at.mono.saturating_duration_since(t));
                            i.last_try = Some(at.mono);
                            if let Some(abort) = i.aborted.take() {
                                // Sentinel's retry after an abort we saw: the
                                // failover time counts from this attempt.
                                i.attempt_started = at.mono;
                                i.annotate(format!("retried after {abort}: +try-failover"));
                            } else if gap.is_some_and(|g| g >= RETRY_GAP) {
                                // Sentinel retried (its abort was lost to us):
                                // the failover time counts from this attempt.
                                i.attempt_started = at.mono;
                                i.annotate("retried: +try-failover".into());
                            } else {
                                i.annotate(IE::TryFailover.to_string());
                            }
                            self.absorbed += 1;
                        } else {
                            // A manual failover, or Sentinel's retry after an abort.
                            let i = self.open_new_failover(at, master, instance.addr.to_string());
                            i.events += 1;
                            i.tries += 1;
                            i.last_try = Some(at.mono);
                            i.annotate(IE::TryFailover.to_string());
                        }
                    }
                    (k, _) if k.is_abort() => {
                        self.on_abort(at, sentinel, master, k);
                    }
                    (
                        IE::ElectedLeader
                        | IE::FailoverEnd
                        | IE::FailoverEndForTimeout
                        | IE::SelectedSlave
                        | IE::PromotedSlave,
                        _,
                    ) => {
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            if *kind == IE::ElectedLeader {
                                i.leader = Some(sentinel);
                            }
                            i.annotate(match *kind {
                                IE::SelectedSlave | IE::PromotedSlave => {
                                    format!("{kind} {}", instance.addr)
                                }
                                _ => kind.to_string(),
                            });
                            self.absorbed += 1;
                        } else if *kind == IE::ElectedLeader {
                            // Manual failovers publish no +odown: remember the leader
                            // for the switch incident that follows (when its
                            // +try-failover was missed).
                            let key = self.failover_key(master);
                            let down = self.odown.contains(master);
                            if let Some(i) = self.open(
                                at,
                                key,
                                master,
                                Kind::Failover,
                                Severity::Critical,
                                Some(instance.addr.to_string()),
                            ) {
                                i.leader = Some(sentinel);
                                i.events += 1;
                                i.down |= down;
                                i.annotate(IE::ElectedLeader.to_string());
                            }
                        } else {
                            self.absorbed += 1;
                        }
                    }
                    (IE::Sdown | IE::SdownCleared, Role::Replica | Role::Sentinel) => {
                        let role = if instance.role == Role::Sentinel {
                            "sentinel"
                        } else {
                            "replica"
                        };
                        if instance.role == Role::Replica {
                            self.level(master).replica_event_at = Some(at.mono);
                        }
                        let addr = instance.addr.to_string();
                        if *kind == IE::Sdown {
                            self.instance_down(at, master, role, addr);
                        } else {
                            self.instance_up(at, master, role, addr);
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
                    i.annotate(event.channel().to_owned());
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
    fn on_abort(&mut self, at: Stamp, sentinel: SentinelId, master: &str, event: IE) {
        let down = self.odown.contains(master);
        let repeat = self.last_abort.get(master) == Some(&event);
        let Some(i) = self.open_master_incident(master, true) else {
            // Late (after the switch or an earlier abort) or duplicated.
            self.absorbed += 1;
            return;
        };
        i.events += 1;
        i.annotate(event.to_string());
        let ends = i.leader.is_none_or(|l| l == sentinel) || event != IE::AbortNotElected;
        if !ends {
            self.absorbed += 1;
            return;
        }
        if down {
            // The master is still down: the condition has not cleared, so the
            // page stays firing, now saying why the failover failed. Sentinel
            // retries; its `+try-failover` restarts the failover clock.
            i.aborted = Some(event);
            self.last_abort.insert(master.to_owned(), event);
            return;
        }
        i.resolve(at);
        i.ended = Some(Ended::Aborted(event));
        i.down |= down;
        // A `SENTINEL FAILOVER` that failed: planned, like its success would be.
        i.planned = !i.down && i.up_before && !i.told_firing;
        if i.planned {
            i.severity = Severity::Info;
        }
        if repeat && i.sent.is_none() {
            let k = i.key.clone();
            self.incidents.remove(&k);
            self.closed.insert(k, (at.mono, 0));
            self.absorbed += 1;
        } else if down {
            self.last_abort.insert(master.to_owned(), event);
        }
    }
}

impl Fold {
    /// A switch of `master` from `old` to `new`, from its `+switch-master` or
    /// (`by_read`) from a majority read that found the master moved. Resolves
    /// the failover incident it ends (open, or resolved by the leader's
    /// `-odown` a moment before and not yet told), absorbs a duplicate, or
    /// opens-and-resolves one for a switch with nothing before it.
    pub(super) fn switched(
        &mut self,
        at: Stamp,
        master: &str,
        old: String,
        new: String,
        by_read: bool,
    ) {
        self.odown.remove(master);
        self.last_abort.remove(master);
        let dup = self.incidents.values_mut().find(|i| {
            i.master == master && i.kind == Kind::Failover && i.to.as_deref() == Some(new.as_str())
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
        let attach = self
            .incidents
            .values()
            .filter(|i| i.master == master && i.kind == Kind::Failover && i.to.is_none())
            .find(|i| {
                i.state == State::Firing
                    || (i.ended.is_none() && !matches!(i.sent, Some((State::Resolved, _))))
            })
            .map(|i| i.key.clone());
        if attach.is_none() && self.last_switch.get(master) == Some(&new) {
            // The same switch, late (a healed sentinel) or duplicated.
            self.absorbed += 1;
            return;
        }
        self.last_switch.insert(master.to_owned(), new.clone());
        let key = match attach {
            Some(k) => k,
            None => self.open_new_failover(at, master, old.clone()).key.clone(),
        };
        let mut former = old;
        if let Some(i) = self.incidents.get_mut(&key) {
            // The master that went down (a lagging sentinel's switch may name
            // an older one as `old`).
            former = i.from.clone().unwrap_or(former);
            i.events += 1;
            i.resolve(at);
            i.to = Some(new.clone());
            i.failover_time = Some(at.mono.saturating_duration_since(i.attempt_started));
            if i.from.is_none() {
                i.from = Some(former.clone());
            }
            // Planned: this watcher saw the failover start (`+try-failover`,
            // `+elected-leader`) with the master known up and never down.
            i.planned = !by_read
                && !i.down
                && i.up_before
                && !i.told_firing
                && (i.tries > 0 || i.leader.is_some());
            if i.planned {
                i.severity = Severity::Info;
            }
            if by_read {
                i.annotate(
                    "switch found by a majority read (its +switch-master was not seen)".into(),
                );
            }
        }
        // The switch's config-epoch: the failover's (`+new-epoch` before its
        // switch), and always above the one before; the next read says it.
        let epoch = self.epoch;
        let lv = self.level(master);
        lv.addr = Some(new);
        lv.config_epoch = Some(epoch.max(lv.config_epoch.unwrap_or(0) + 1));
        lv.up = Some(true);
        lv.sdown = false;
        self.former.insert(master.to_owned(), (former, None));
    }

    /// Whether `addr` is where `master` is now (its last switch, or read).
    fn is_current_master(&self, master: &str, addr: &str) -> bool {
        self.last_switch
            .get(master)
            .or_else(|| self.levels.get(master).and_then(|l| l.addr.as_ref()))
            .is_some_and(|m| m == addr)
    }

    /// Whether `addr` is `master`'s old master of its last failover, not yet
    /// settled back as a replica (forgotten once it is).
    fn is_former(&mut self, at: Stamp, master: &str, addr: &str) -> bool {
        match self.former.get(master) {
            Some((a, back)) if a == addr => {
                if back
                    .is_some_and(|b| at.mono.saturating_duration_since(b) >= super::FORMER_SETTLES)
                {
                    self.former.remove(master);
                    false
                } else {
                    true
                }
            }
            _ => false,
        }
    }

    /// The old master `addr` of `master`'s last failover went down or came
    /// back as a replica: a note on that failover's incident while it is not
    /// yet told, else nothing.
    fn note_former(&mut self, master: &str, addr: &str, event: &str, what: &str) {
        self.absorbed += 1;
        if let Some(i) = self.incidents.values_mut().find(|i| {
            i.master == master && i.kind == Kind::Failover && i.from.as_deref() == Some(addr)
        }) {
            i.events += 1;
            if i.sent.map(|(told, _)| told) != Some(i.state) {
                // Its next message is still to come: it says so.
                i.annotate(format!("{event} of the old master {addr}: {what}"));
            }
        }
    }
}

impl Fold {
    /// A lagging sentinel's view of a "replica" that is the master now: the
    /// master's own incident covers it, so the event is absorbed (counted).
    fn lagging_view(&mut self, master: &str, role: &'static str, addr: &str) -> bool {
        let lagging = role == "replica" && self.is_current_master(master, addr);
        if lagging {
            self.absorbed += 1;
        }
        lagging
    }

    /// A replica or sentinel of `master` seen down (`+sdown`, or a read).
    pub(super) fn instance_down(
        &mut self,
        at: Stamp,
        master: &str,
        role: &'static str,
        addr: String,
    ) {
        if self.lagging_view(master, role, &addr) {
            return;
        }
        if role == "replica" && self.is_former(at, master, &addr) {
            // The old master of the last failover, still down: that
            // failover's news, not an incident of its own.
            self.note_former(master, &addr, "+sdown", "still down, now a replica");
            return;
        }
        if let Some(i) = self.instance_incident(master, &addr, false) {
            i.events += 1;
            if i.state == State::Resolved {
                // Back down within the group's window: a flap.
                i.reopen(at);
            } else {
                self.absorbed += 1;
            }
            return;
        }
        let what = format!("{role}:{addr}");
        let key = self.occurrence_key(at.mono, master, &what);
        if let Some(i) = self.open(
            at,
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

    /// A replica or sentinel of `master` seen up again (`-sdown`, or a read).
    pub(super) fn instance_up(
        &mut self,
        at: Stamp,
        master: &str,
        role: &'static str,
        addr: String,
    ) {
        if self.lagging_view(master, role, &addr) {
            return;
        }
        if role == "replica" && self.is_former(at, master, &addr) {
            if let Some((_, back)) = self.former.get_mut(master) {
                back.get_or_insert(at.mono);
            }
            self.note_former(master, &addr, "-sdown", "back as a replica");
            return;
        }
        let damped = !self.group_interval.is_zero();
        let mut drop_key = None;
        if let Some(i) = self.instance_incident(master, &addr, true) {
            i.events += 1;
            if i.sent.is_none() && !damped {
                // Down for less than group_wait: never told, forget it.
                drop_key = Some(i.key.clone());
            } else {
                i.resolve(at);
            }
        }
        if let Some(k) = drop_key {
            self.incidents.remove(&k);
        }
    }
}
