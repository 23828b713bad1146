//! Route writes: at most one in flight per master (a newer wish is queued),
//! what a finished write changes, and the backoff schedule for retries (also
//! used for a failed EC2 read).

use std::time::{Duration, Instant};

use tracing::{debug, error, warn};

use super::{Action, Cause, Flight, Pending, Steering, WriteOrder, WriteOutcome, MAX_RETRY_DELAY};
use crate::decide::fold::AlertInput;
use crate::watch::event::Addr;

impl Steering {
    /// Starts (or queues) a route write for `master` towards `addr` — or, on a
    /// standby, leaves it to the designated writer until its check is due.
    pub(super) fn dispatch(
        &mut self,
        master: &str,
        addr: Addr,
        cause: Cause,
        at: Instant,
        out: &mut Vec<Action>,
    ) {
        let (standby, clock) = (self.standby, self.clock);
        let Some(st) = self.masters.get_mut(master) else {
            return;
        };
        if !standby.is_zero() {
            st.wrong_since.get_or_insert(clock);
            let moving = st.queued.as_ref().map(|q| &q.0).or(st.in_flight.as_ref());
            let needed = match &st.pending {
                Some(p) => p.addr != addr,
                None => moving != Some(&addr),
            };
            if needed {
                // Its place in the writer's line: the writer's pacer releases
                // it about then; the standby looks one wait later.
                let cost = st.cfg.route_tables.len();
                let slot = self.writer_line.slot(clock, cost);
                debug!(%master, %addr, check_in_ms = (slot + standby - clock).as_millis() as u64,
                    "standby: leaving the write to the designated writer; checking after its turn");
                if let Some(st) = self.masters.get_mut(master) {
                    st.pending = Some(Pending {
                        addr,
                        cause,
                        at,
                        slot,
                        due: slot + standby,
                    });
                }
            }
            return;
        }
        self.start(master, addr, cause, at, false, out);
    }

    /// Hands every standby check that is due to [`Steering::start`].
    pub(super) fn pending_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        let due: Vec<(String, Pending)> = self
            .masters
            .iter_mut()
            .filter(|(_, st)| st.pending.as_ref().is_some_and(|p| now >= p.due))
            .filter_map(|(name, st)| Some((name.clone(), st.pending.take()?)))
            .collect();
        for (master, p) in due {
            self.start(&master, p.addr, p.cause, p.at, true, out);
        }
    }

    /// Starts (or queues behind the one in flight) a route write; `check_first`
    /// for a standby's check.
    fn start(
        &mut self,
        master: &str,
        addr: Addr,
        cause: Cause,
        at: Instant,
        check_first: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(st) = self.masters.get_mut(master) else {
            return;
        };
        if st.in_flight.is_some() {
            st.queued = Some((addr, cause, at));
            return;
        }
        st.in_flight = Some(addr.clone());
        st.wrong_since.get_or_insert(self.clock);
        self.write_seq += 1;
        let id = self.write_seq;
        // Until the driver says it started, the write may wait for
        // `aws.write_rate`: its deadline covers that wait too.
        st.flight = Some(Flight {
            id,
            cause,
            at: self.clock,
            due: self.clock + self.pacing_due_after + self.write_due_after,
        });
        out.push(Action::StartWrite(WriteOrder {
            id,
            master: master.to_owned(),
            cfg: st.cfg.clone(),
            addr,
            cause,
            at,
            known: st.routes.clone(),
            check_first,
        }));
    }

    /// The driver started write `id` of `master` (it left the `aws.write_rate`
    /// line) at `now`: its result is due within the job's bound from now.
    pub(crate) fn write_started(&mut self, now: Instant, master: &str, id: u64) {
        self.timers_changed();
        let due_after = self.write_due_after;
        if let Some(f) = self
            .masters
            .get_mut(master)
            .and_then(|st| st.flight.as_mut())
            .filter(|f| f.id == id)
        {
            f.due = now + due_after;
        }
    }

    /// Ends every in-flight write whose result did not come by its deadline:
    /// counted, and handled as a failed write (logged, alerted, retried
    /// through a fresh read).
    pub(super) fn write_results_lost(&mut self, now: Instant, out: &mut Vec<Action>) {
        let lost: Vec<(String, Addr, Flight)> = self
            .masters
            .iter()
            .filter_map(|(name, st)| {
                let f = st.flight.as_ref().filter(|f| now >= f.due)?;
                Some((name.clone(), st.in_flight.clone()?, f.clone()))
            })
            .collect();
        for (master, addr, f) in lost {
            self.lost.1 += 1;
            let waited = now.duration_since(f.at);
            let why = format!(
                "route write gave no result within {} s (lost; counted in sentinel_vip_results_lost_total)",
                waited.as_secs()
            );
            error!(%master, %addr, write = f.id, "{why}; retrying through a fresh read");
            if let Some(st) = self.masters.get_mut(&master) {
                // It may have written anything: judge from a fresh read only.
                st.routes.clear();
            }
            let outcome = WriteOutcome::lost(f.id, &master, &addr, f.cause, why, waited);
            self.on_write_done(now, outcome, out);
        }
    }

    pub(super) fn on_write_done(&mut self, now: Instant, w: WriteOutcome, out: &mut Vec<Action>) {
        let current = self
            .masters
            .get(&w.master)
            .and_then(|st| st.flight.as_ref())
            .is_some_and(|f| f.id == w.id);
        if !current {
            // The core gave up on it (deadline) or it came twice: the routes it
            // wrote are read again by the reads that follow; state is left alone.
            warn!(master = %w.master, addr = %w.addr, write = w.id,
                "route write result came after its deadline or twice; ignored");
            return;
        }
        let ok = w.ok();
        let report = w.report();
        out.push(Action::Alert(AlertInput::Route(report)));
        let jitter = self.next_jitter();
        let Some(st) = self.masters.get_mut(&w.master) else {
            return;
        };
        st.in_flight = None;
        st.flight = None;
        if let Some(v) = &w.verified {
            for (t, r) in v {
                st.routes.insert(t.clone(), r.clone());
            }
        }
        if ok {
            if st.pending.as_ref().is_some_and(|p| p.addr == w.addr) {
                st.pending = None;
            }
            st.applied = Some(w.addr.clone());
            st.wrong_since = None;
            st.revert_done(&w.master, &w.addr, out);
            st.failures = 0;
            st.retry_at = None;
            st.last_error = None;
        } else {
            st.failures += 1;
            st.last_error = Some(w.describe_failure());
            // The routes may be anything now: read them before judging again.
            if w.verified.is_none() {
                for (t, _) in &w.tables {
                    st.routes.remove(t);
                }
            }
            // Transient failures: retry with backoff (each retry is a fresh
            // majority read). Permission / not-found need an operator: alerted and
            // retried at the interval.
            if w.target_gone() {
                // The driver evicted the cached target: look again right away.
                st.retry_at = Some(now);
            } else if st.queued.is_none() && !w.needs_operator() {
                st.retry_at = Some(now + retry_delay(st.failures, jitter));
            }
        }
        if let Some((addr, cause, at)) = st.queued.take() {
            // A standby's queued wish has had its wait: it is checked now.
            let check_first = !self.standby.is_zero();
            self.start(&w.master, addr, cause, at, check_first, out);
        }
    }

    /// A jitter factor in 0.85..1.15 for retry delays.
    pub(super) fn next_jitter(&mut self) -> f64 {
        // xorshift64: deterministic under a fixed seed, good enough for jitter.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        0.85 + (x % 1000) as f64 / 1000.0 * 0.3
    }
}

/// Backoff for the `failures`-th consecutive failure: 0.5 s doubling, capped at
/// [`MAX_RETRY_DELAY`], times `jitter`.
pub(crate) fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(failures.saturating_sub(1).min(6));
    base.min(MAX_RETRY_DELAY).mul_f64(jitter)
}
