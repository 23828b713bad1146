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
                    None => self.open_new_failover(at, master, old.clone()),
                };
                i.events += 1;
                i.resolve(at);
                i.to = Some(new);
                i.failover_time = Some(at.mono.saturating_duration_since(i.attempt_started));
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
                    (IE::Odown, Role::Master) => {
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
                            let i = self.open_new_failover(at, master, addr);
                            i.events += 1;
                            i.down = true;
                            i.annotate(note);
                            return;
                        }
                        let key = self.key(master, self.epoch, None);
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
                            i.annotate(note);
                        }
                    }
                    (IE::OdownCleared, Role::Master) => {
                        let addr = instance.addr.to_string();
                        if self.last_switch.get(master).is_none_or(|to| *to == addr) {
                            self.odown.remove(master);
                            self.last_abort.remove(master);
                        }
                        if let Some(i) = self.open_master_incident(master, true) {
                            i.events += 1;
                            i.resolve(at);
                        }
                    }
                    (IE::TryFailover, Role::Master) => {
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
                            let key = self.key(master, self.epoch, None);
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
                    (IE::Sdown, Role::Replica | Role::Sentinel) => {
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
                    (IE::SdownCleared, Role::Replica | Role::Sentinel) => {
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
                                i.resolve(at);
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
        if repeat && i.sent.is_none() {
            let k = i.key.clone();
            self.incidents.remove(&k);
            self.closed.insert(k, at.mono);
            self.absorbed += 1;
        } else if down {
            self.last_abort.insert(master.to_owned(), event);
        }
    }
}
