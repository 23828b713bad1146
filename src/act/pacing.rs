//! Route-write pacing: a token bucket in front of EC2's own.
//!
//! EC2 throttles mutating calls per account and region with a token bucket
//! (`RequestLimitExceeded` beyond it). When a host carrying many masters dies,
//! every master wants its route moved at once; bursting past the bucket only
//! buys throttled answers and SDK back-off, so the *last* master is right later
//! than if the writes had been paced. The controller offers each route write
//! here and starts it only when this releases it.
//!
//! Rules:
//! - one bucket for all masters; a write costs one token per route table it
//!   may write (an order larger than the bucket waits for a full bucket);
//! - **newest wish per master**: a master already waiting has its order
//!   replaced by the newer one, keeping its place in the line;
//! - **no master starved**: the line is first come, first served, so a master
//!   with many tables is not overtaken forever by small ones;
//! - **a margin under the budget**: the bucket paces at [`RATE_MARGIN`] of the
//!   configured rate and holds [`BURST_MARGIN`] of its burst. EC2's bucket is
//!   not in phase with ours (network jitter, other callers): paced at exactly
//!   its rate, half the writes arrive a hair early and are throttled (measured:
//!   27–56 `RequestLimitExceeded` for 200 writes at 20/s), each then retried by
//!   the SDK. The margin costs ≤ 10 % of the time to drain a long line.
//!
//! **Architecture Invariant:** pure — no I/O, no clock; time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Share of `aws.write_rate.per_second` the pacer spends.
pub(crate) const RATE_MARGIN: f64 = crate::config::WRITE_RATE_MARGIN;
/// Share of `aws.write_rate.burst` the pacer holds (at least 1 token).
pub(crate) const BURST_MARGIN: f64 = crate::config::WRITE_BURST_MARGIN;

/// The token bucket and the line of route writes waiting for it.
#[derive(Debug)]
pub(crate) struct Pacer<T> {
    per_second: f64,
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
    line: VecDeque<Waiting<T>>,
}

#[derive(Debug)]
struct Waiting<T> {
    master: String,
    cost: f64,
    order: T,
}

impl<T> Pacer<T> {
    /// A full bucket at `now` for a budget of `burst` writes at once, then
    /// `per_second`, less the margins ([`RATE_MARGIN`], [`BURST_MARGIN`]).
    pub(crate) fn new(per_second: f64, burst: u32, now: Instant) -> Pacer<T> {
        let per_second = if per_second > 0.0 { per_second } else { 1.0 };
        let burst = (f64::from(burst.max(1)) * BURST_MARGIN).floor().max(1.0);
        Pacer::exact(per_second * RATE_MARGIN, burst, now)
    }

    /// A full bucket of exactly `burst` tokens refilled at exactly `per_second`.
    fn exact(per_second: f64, burst: f64, now: Instant) -> Pacer<T> {
        Pacer {
            per_second,
            burst,
            tokens: burst,
            at: now,
            line: VecDeque::new(),
        }
    }

    /// Offers `master`'s write of `tables` route tables; returns every order
    /// that may start now (this one included when the line was empty and the
    /// bucket has room).
    pub(crate) fn offer(&mut self, now: Instant, master: &str, tables: usize, order: T) -> Vec<T> {
        let cost = (tables.max(1) as f64).min(self.burst);
        match self.line.iter_mut().find(|w| w.master == master) {
            Some(w) => {
                w.order = order;
                w.cost = cost;
            }
            None => self.line.push_back(Waiting {
                master: master.to_owned(),
                cost,
                order,
            }),
        }
        self.poll(now)
    }

    /// Releases, first come first served, every waiting order the bucket pays for.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<T> {
        self.refill(now);
        let mut out = Vec::new();
        while let Some(head) = self.line.front() {
            // The epsilon absorbs rounding at exactly `next_release`: a
            // Duration is whole nanoseconds, short by up to 1 ns × rate tokens
            // (2e-8 at 20/s; with 1e-9 a poll at exactly `next_release`
            // released nothing, for ever).
            if head.cost > self.tokens + 1e-6 {
                break;
            }
            self.tokens = (self.tokens - head.cost).max(0.0);
            if let Some(w) = self.line.pop_front() {
                out.push(w.order);
            }
        }
        out
    }

    /// When the head of the line can go (None: nobody waits).
    pub(crate) fn next_release(&self) -> Option<Instant> {
        let head = self.line.front()?;
        let missing = (head.cost - self.tokens).max(0.0);
        Some(self.at + Duration::from_secs_f64(missing / self.per_second))
    }

    /// How many masters wait for the bucket.
    pub(crate) fn waiting(&self) -> usize {
        self.line.len()
    }

    /// A new budget (`aws.write_rate` changed on reload): tokens earned so far
    /// are kept up to the new burst, the line keeps its order, and what the
    /// new bucket pays for now is released.
    pub(crate) fn set_budget(&mut self, per_second: f64, burst: u32, now: Instant) -> Vec<T> {
        self.refill(now);
        let fresh: Pacer<T> = Pacer::new(per_second, burst, now);
        self.per_second = fresh.per_second;
        self.burst = fresh.burst;
        self.tokens = self.tokens.min(self.burst);
        for w in &mut self.line {
            w.cost = w.cost.min(self.burst);
        }
        self.poll(now)
    }

    /// Empties the line (shutdown): the orders that never started.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.line.drain(..).map(|w| w.order).collect()
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let gained = now.duration_since(self.at).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + gained).min(self.burst);
            self.at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn writes_within_the_burst_go_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::exact(5.0, 10.0, t0);
        for i in 0..5 {
            assert_eq!(p.offer(t0, &format!("m{i}"), 2, i), vec![i]);
        }
        assert_eq!(p.waiting(), 0);
        assert_eq!(p.next_release(), None);
    }

    #[test]
    fn beyond_the_burst_writes_leave_at_the_refill_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::exact(20.0, 20.0, t0);
        let mut started = Vec::new();
        for i in 0..100 {
            started.extend(
                p.offer(t0, &format!("m{i}"), 2, i)
                    .into_iter()
                    .map(|o| (o, t0)),
            );
        }
        assert_eq!(
            started.len(),
            10,
            "a 20-token bucket pays for 10 two-table writes"
        );
        // Drive it the way the controller does: sleep until next_release, poll.
        while let Some(at) = p.next_release() {
            started.extend(p.poll(at).into_iter().map(|o| (o, at)));
        }
        assert_eq!(started.len(), 100);
        let order: Vec<_> = started.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            order,
            (0..100).collect::<Vec<_>>(),
            "first come, first served"
        );
        // 90 writes × 2 tables at 20/s = 9 s after the burst.
        let last = started
            .last()
            .map(|(_, at)| at.duration_since(t0))
            .unwrap_or_default();
        assert!(
            last >= ms(8_990) && last <= ms(9_010),
            "last write at {last:?}"
        );
        // Never more than burst + rate × elapsed tokens spent.
        for (n, (_, at)) in started.iter().enumerate() {
            let spent = 2.0 * (n as f64 + 1.0);
            let allowed = 20.0 + 20.0 * at.duration_since(t0).as_secs_f64() + 1e-6;
            assert!(spent <= allowed, "write {n}: {spent} tokens by {at:?}");
        }
    }

    #[test]
    fn a_newer_wish_replaces_the_waiting_one_and_keeps_its_place() {
        let t0 = Instant::now();
        let mut p = Pacer::exact(1.0, 2.0, t0);
        assert_eq!(p.offer(t0, "a", 2, "a→10.0.0.2"), vec!["a→10.0.0.2"]);
        assert!(p.offer(t0, "b", 2, "b→10.0.0.5").is_empty());
        assert!(p.offer(t0, "c", 2, "c→10.0.0.8").is_empty());
        assert!(p.offer(t0, "b", 2, "b→10.0.0.6").is_empty());
        assert_eq!(p.waiting(), 2);
        assert_eq!(p.poll(t0 + ms(2_000)), vec!["b→10.0.0.6"]);
        assert_eq!(p.poll(t0 + ms(4_000)), vec!["c→10.0.0.8"]);
    }

    #[test]
    fn a_big_order_is_not_overtaken_by_small_ones() {
        let t0 = Instant::now();
        let mut p = Pacer::exact(1.0, 4.0, t0);
        assert_eq!(p.offer(t0, "small0", 3, 0), vec![0]);
        assert!(
            p.offer(t0, "big", 4, 1).is_empty(),
            "1 token left, big needs 4"
        );
        assert!(
            p.offer(t0, "small1", 1, 2).is_empty(),
            "small waits behind big"
        );
        assert_eq!(p.next_release(), Some(t0 + ms(3_000)));
        assert_eq!(p.poll(t0 + ms(3_000)), vec![1]);
        assert_eq!(p.poll(t0 + ms(4_000)), vec![2]);
    }

    #[test]
    fn an_order_larger_than_the_bucket_waits_for_a_full_bucket() {
        let t0 = Instant::now();
        let mut p = Pacer::exact(2.0, 3.0, t0);
        assert_eq!(p.offer(t0, "m", 8, "all tables"), vec!["all tables"]);
        assert!(p.offer(t0, "n", 8, "again").is_empty());
        assert_eq!(p.next_release(), Some(t0 + ms(1_500)));
    }

    #[test]
    fn the_bucket_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::exact(10.0, 4.0, t0);
        let later = t0 + Duration::from_secs(3_600);
        let out: Vec<i32> = (0..6)
            .flat_map(|i| p.offer(later, &format!("m{i}"), 1, i))
            .collect();
        assert_eq!(out, vec![0, 1, 2, 3]);
        assert_eq!(p.drain(), vec![4, 5]);
        assert_eq!(p.next_release(), None);
    }

    #[test]
    fn the_configured_budget_is_paced_with_a_margin() {
        let t0 = Instant::now();
        let p: Pacer<()> = Pacer::new(20.0, 20, t0);
        assert_eq!(p.burst, 18.0);
        assert!((p.per_second - 19.0).abs() < 1e-9);
        let tiny: Pacer<()> = Pacer::new(1.0, 1, t0);
        assert_eq!(tiny.burst, 1.0, "never less than one token");
    }

    /// EC2's bucket (same rate and burst as configured) sees each released
    /// write a few ms early or late; the margin keeps every write within it.
    /// (At exactly the configured rate, every early arrival was throttled.)
    #[test]
    fn jittered_arrivals_fit_a_bucket_of_the_configured_size() {
        let t0 = Instant::now();
        let (rate, burst) = (20.0, 20u32);
        let mut p = Pacer::new(rate, burst, t0);
        let mut released = Vec::new();
        for i in 0..100 {
            released.extend(p.offer(t0, &format!("m{i}"), 2, i).into_iter().map(|_| t0));
        }
        while let Some(at) = p.next_release() {
            released.extend(p.poll(at).into_iter().map(|_| at));
        }
        assert_eq!(released.len(), 100);
        // EC2's bucket, full at t0; each order's two writes arrive 50 ms later
        // give or take 4 ms (alternating early and late).
        let (mut tokens, mut last, mut throttled) = (f64::from(burst), 0.0_f64, 0);
        for (n, at) in released.iter().enumerate() {
            let jitter = if n % 2 == 0 { -0.004 } else { 0.004 };
            let arrive = (at.duration_since(t0).as_secs_f64() + 0.050 + jitter).max(last);
            tokens = (tokens + (arrive - last) * rate).min(f64::from(burst));
            last = arrive;
            for _ in 0..2 {
                if tokens >= 1.0 {
                    tokens -= 1.0;
                } else {
                    throttled += 1;
                }
            }
        }
        assert_eq!(throttled, 0);
        // The margin's price: the line drains within 10 % of the budget's best.
        let best = (200.0 - f64::from(burst)) / rate;
        let took = released
            .last()
            .map(|at| at.duration_since(t0).as_secs_f64())
            .unwrap_or(0.0);
        assert!(took <= best * 1.1, "took {took} s, best {best} s");
    }

    #[test]
    fn a_new_budget_keeps_the_line_and_applies_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::exact(1.0, 4.0, t0);
        assert_eq!(p.offer(t0, "a", 4, 1), vec![1]);
        assert!(p.offer(t0, "b", 4, 2).is_empty(), "bucket empty: b waits");
        assert!(p.offer(t0, "c", 2, 3).is_empty());
        // A smaller burst: b's cost is capped to it, so b still leaves; a
        // faster rate: b and c leave sooner than at 1/s.
        assert!(p.set_budget(20.0, 2, t0).is_empty());
        let next = p.next_release().expect("b waits");
        assert!(next <= t0 + ms(120), "{:?}", next - t0);
        assert_eq!(p.poll(next), vec![2]);
        assert_eq!(p.poll(p.next_release().unwrap()), vec![3]);
        assert_eq!(p.waiting(), 0);
    }
}
