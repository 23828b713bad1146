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
            // A switch: wait briefly for the route outcome to quote it.
            (Kind::Failover, State::Resolved) if i.route.is_none() && i.to.is_some() => (i.opened
                + self.group_wait)
                .max(i.resolved.map(|r| r + ROUTE_WAIT).unwrap_or(i.opened)),
            _ => i.opened + self.group_wait,
        };
        match (i.state, i.sent) {
            (_, None) => Some(ready),
            (State::Resolved, Some((State::Firing, _))) => Some(ready),
            (State::Firing, Some((State::Firing, at))) => Some(at + self.repeat_interval),
            _ => None,
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
            if let Some(i) = self.incidents.get_mut(&k) {
                out.push(i.clone());
                i.sent = Some((i.state, now));
                i.told_firing |= i.state == State::Firing;
                if i.state == State::Resolved {
                    done.push(k);
                }
            }
        }
        for k in done {
            self.incidents.remove(&k);
            self.closed.insert(k, now);
        }
        self.closed
            .retain(|_, at| now.saturating_duration_since(*at) < REMEMBER_CLOSED);
        let epoch = self.epoch;
        self.occurrences.retain(|_, o| {
            o.epoch == epoch && now.saturating_duration_since(o.last) < FORGET_OCCURRENCES
        });
        out
    }

    /// When the next message could become due (for the timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.incidents.values().filter_map(|i| self.due_at(i)).min()
    }
}
