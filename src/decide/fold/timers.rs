//! Timing: when each incident may be told ([`Fold::due`], [`Fold::next_due`]),
//! and forgetting what is done and what is old.

use std::time::{Duration, Instant};

use super::{Fold, Incident, Kind, State, REMEMBER_CLOSED};

/// A manual failover still unfinished after this is told as firing.
const STUCK_FAILOVER: Duration = Duration::from_secs(60);
/// How long a resolved failover waits for its route outcome before it is told anyway.
const ROUTE_WAIT: Duration = Duration::from_secs(5);

/// An occurrence counter unused (and with nothing open) for this long is
/// forgotten: the next occurrence counts from 1 again. Longer than
/// `REMEMBER_CLOSED`, so a key is never reissued while it is remembered.
const FORGET_OCCURRENCES: Duration = Duration::from_secs(3600);

impl Fold {
    /// When `i` may be told in its current state (`None`: nothing to tell).
    fn due_at(&self, i: &Incident) -> Option<Instant> {
        let ready = match (&i.kind, i.state) {
            // A manual failover (no +odown) is only news once it ends, or
            // when it has not ended long after it should have.
            (Kind::Failover, State::Firing) if !i.down => {
                i.opened + self.group_wait.max(STUCK_FAILOVER)
            }
            // A switch: wait briefly for the route outcome to quote it. A
            // failover attempt that ended in `-odown` (the leader clears it
            // just before its switch): wait as long for that switch, so
            // that it ends this incident instead of a "back up" and a new one.
            (Kind::Failover, State::Resolved)
                if (i.route.is_none() && i.to.is_some())
                    || (i.to.is_none()
                        && i.ended.is_none()
                        && (i.tries > 0 || i.leader.is_some())) =>
            {
                (i.opened + self.group_wait)
                    .max(i.resolved.map(|r| r + ROUTE_WAIT).unwrap_or(i.opened))
            }
            _ => i.opened + self.group_wait,
        };
        let Some((told, at)) = i.sent else {
            if i.state == State::Resolved && !i.flapped() && instance_down(i) {
                // A blip shorter than group_wait: nothing to tell (kept a
                // while when damped, so that the next blip counts as a flap).
                return None;
            }
            return Some(ready);
        };
        let changed = told != i.state || i.flapped();
        if !changed {
            return match i.state {
                State::Firing => Some(at + self.repeat_interval),
                State::Resolved => None,
            };
        }
        if self.damped(i) {
            // Flap damping: a change after the group's first notice waits
            // for group_interval since the last one, then one message tells
            // what happened meanwhile.
            Some(ready.max(at + self.group_interval))
        } else {
            Some(ready)
        }
    }

    /// Whether `i`'s changes after its first notice wait for
    /// `group_interval`: a replica or sentinel down (the groups that flap at
    /// the events' rate), their resolve included, as Alertmanager does.
    /// Critical incidents are not held (a page opens and closes with its
    /// cause, and a master down again must page within `group_wait`; Sentinel
    /// itself paces failovers), but they are grouped: a master that comes back
    /// and goes down again before its incident was told is one incident, told
    /// as a flap.
    fn damped(&self, i: &Incident) -> bool {
        !self.group_interval.is_zero() && instance_down(i)
    }

    /// Whether a resolved incident is done with: its resolve told and its
    /// group's window (`group_interval` after that notice, while a new down
    /// is the same group's flap) over, or never told and not worth telling.
    fn finished(&self, i: &Incident, now: Instant) -> bool {
        if i.state != State::Resolved || i.flapped() {
            return false;
        }
        match i.sent {
            Some((State::Resolved, at)) => !self.damped(i) || now >= at + self.group_interval,
            // A blip shorter than group_wait (kept only to count flaps).
            None => {
                let keep = if self.damped(i) {
                    self.group_interval
                } else {
                    Duration::ZERO
                };
                instance_down(i) && now >= i.opened + self.group_wait + keep
            }
            Some((State::Firing, _)) => false,
        }
    }

    /// What is due to be sent at `now`: each incident state change once, after
    /// `group_wait`, plus repeats of long-open incidents. Marks them sent, and
    /// forgets what is done and what is old.
    pub fn due(&mut self, now: Instant) -> Vec<Incident> {
        // Keep the counters of open conditions (see FORGET_OCCURRENCES).
        for i in self.incidents.values() {
            if let Some(w) = &i.occurrence {
                if let Some(o) = self.occurrences.get_mut(&(i.master.clone(), w.clone())) {
                    o.last = now;
                }
            }
        }
        let mut out = Vec::new();
        let mut done = Vec::new();
        let due: Vec<String> = self
            .incidents
            .iter()
            .filter(|(_, i)| self.due_at(i).is_some_and(|t| now >= t))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let Some(i) = self.incidents.get(&k) else {
                continue;
            };
            if self.finished(i, now) {
                // Resolved before it was told, once: nothing to tell.
                done.push(k);
                continue;
            }
            if let Some(i) = self.incidents.get_mut(&k) {
                out.push(i.clone());
                i.sent = Some((i.state, now));
                i.told_firing |= i.state == State::Firing;
                i.notices += 1;
                i.downs = 0;
                i.flap_from = None;
            }
        }
        done.extend(
            self.incidents
                .iter()
                .filter(|(_, i)| self.finished(i, now))
                .map(|(k, _)| k.clone()),
        );
        for k in done {
            if let Some(i) = self.incidents.remove(&k) {
                if i.sent.is_some() {
                    self.closed.insert(k, (now, i.notices));
                }
            }
        }
        self.closed
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < REMEMBER_CLOSED);
        let epoch = self.epoch;
        self.occurrences.retain(|_, o| {
            o.epoch == epoch && now.saturating_duration_since(o.last) < FORGET_OCCURRENCES
        });
        out
    }

    /// When the next message could become due (for the timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.incidents
            .values()
            .filter_map(|i| {
                self.due_at(i).or_else(|| match i.sent {
                    // A told resolve's window ends: forget it then.
                    Some((State::Resolved, at)) if self.damped(i) => Some(at + self.group_interval),
                    _ => None,
                })
            })
            .min()
    }
}

/// A replica or sentinel down: the damped kind.
fn instance_down(i: &Incident) -> bool {
    matches!(i.kind, Kind::InstanceDown { .. })
}
