//! The fold's level-triggered input: what a majority read found for a master
//! ([`MasterRead`]). Events are fast but can be lost (a watcher started in
//! the middle of an incident, a link down when the closing event came); the
//! read is the state itself. It opens the master's incident when the events
//! that should have opened it were missed, keeps it firing while Sentinel says
//! `o_down`, resolves it when Sentinel says the master is up, and ends a
//! failover whose `+switch-master` was missed.
//!
//! **Architecture Invariant:** a read never overrides an event that came
//! after it started (`MasterRead::started` against the master's last event):
//! the older news loses.

use super::{Fold, Kind, MasterRead, Stamp, State};

impl Fold {
    /// Folds one majority read of a master in.
    pub fn on_master_read(&mut self, at: Stamp, r: &MasterRead) {
        if !self.configured(&r.master) {
            self.ignored += 1;
            return;
        }
        let master = r.master.as_str();
        if self
            .level(master)
            .replica_event_at
            .is_none_or(|e| e <= r.started)
        {
            self.replicas_read(at, r);
        }
        let lv = self.level(master);
        if lv.event_at.is_some_and(|e| e > r.started) {
            // An event came while the read ran: it is the newer news.
            return;
        }
        let was = lv.addr.replace(r.addr.clone());
        lv.config_epoch = Some(r.config_epoch);
        lv.up = Some(!r.odown);
        if !r.odown {
            lv.sdown = false;
        }
        if let Some(old) = was.filter(|old| *old != r.addr) {
            if self.last_switch.get(master) != Some(&r.addr) {
                // The master moved and no +switch-master told us.
                self.switched(at, master, old, r.addr.clone(), true);
                // The read's epoch is the switch's.
                self.level(master).config_epoch = Some(r.config_epoch);
            }
        }
        let open = self.open_master_incident(master, true).is_some();
        match (r.odown, open) {
            (true, true) => {
                self.odown.insert(master.to_owned());
                if let Some(i) = self.open_master_incident(master, true) {
                    i.down = true;
                    i.up_before = false;
                }
            }
            (true, false) => {
                // Objectively down and no incident: its +odown was missed
                // (started mid-incident, link down) or its incident was
                // ended by an event the read contradicts.
                self.odown.insert(master.to_owned());
                let i = self.open_new_failover(at, master, r.addr.clone());
                i.events += 1;
                i.down = true;
                i.up_before = false;
                i.annotate(format!(
                    "o_down per a majority read (config-epoch {}){}",
                    r.config_epoch,
                    if r.failover_in_progress {
                        ", failover in progress"
                    } else {
                        ""
                    }
                ));
            }
            (false, true) => {
                let down = self
                    .open_master_incident(master, true)
                    .is_some_and(|i| i.down);
                if down && !r.failover_in_progress {
                    // Up again and no failover running: its -odown was missed.
                    self.odown.remove(master);
                    self.last_abort.remove(master);
                    if let Some(i) = self.open_master_incident(master, true) {
                        i.resolve(at);
                        i.annotate("up per a majority read (its -odown was not seen)".into());
                    }
                }
            }
            (false, false) => {}
        }
    }

    /// The replicas as the read found them: one flagged down with no
    /// incident opens one (its `+sdown` was missed), a firing one that no
    /// sentinel flags any more resolves (its `-sdown` was lost).
    fn replicas_read(&mut self, at: Stamp, r: &MasterRead) {
        let up: Vec<String> = self
            .incidents
            .values()
            .filter(|i| i.master == r.master && i.state == State::Firing)
            .filter_map(|i| match &i.kind {
                Kind::InstanceDown {
                    role: "replica",
                    instance,
                } if !r.replicas_down.contains(instance) => Some(instance.clone()),
                _ => None,
            })
            .collect();
        for addr in up {
            self.instance_up(at, &r.master, "replica", addr);
        }
        for addr in &r.replicas_down {
            if self.instance_incident(&r.master, addr, true).is_none() {
                self.instance_down(at, &r.master, "replica", addr.clone());
            }
        }
    }

    /// Masters a majority read or the events say are objectively down now.
    pub fn masters_down(&self) -> Vec<String> {
        self.levels
            .iter()
            .filter(|(_, l)| l.up == Some(false))
            .map(|(m, _)| m.clone())
            .chain(
                self.incidents
                    .values()
                    .filter(|i| i.kind == Kind::Failover && i.state == State::Firing && i.down)
                    .map(|i| i.master.clone()),
            )
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}
