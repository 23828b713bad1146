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
//!   with many tables is not overtaken forever by small ones.
//!
//! **Architecture Invariant:** pure — no I/O, no clock; time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The token bucket and the line of route writes waiting for it.
#[derive(Debug)]
pub struct Pacer<T> {
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
    /// A full bucket at `now`: `burst` writes may go at once, then `per_second`.
    pub fn new(per_second: f64, burst: u32, now: Instant) -> Pacer<T> {
        let burst = f64::from(burst.max(1));
        Pacer {
            per_second: if per_second > 0.0 { per_second } else { 1.0 },
            burst,
            tokens: burst,
            at: now,
            line: VecDeque::new(),
        }
    }

    /// Offers `master`'s write of `tables` route tables; returns every order
    /// that may start now (this one included when the line was empty and the
    /// bucket has room).
    pub fn offer(&mut self, now: Instant, master: &str, tables: usize, order: T) -> Vec<T> {
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
    pub fn poll(&mut self, now: Instant) -> Vec<T> {
        self.refill(now);
        let mut out = Vec::new();
        while let Some(head) = self.line.front() {
            // The epsilon absorbs float rounding at exactly `next_release`.
            if head.cost > self.tokens + 1e-9 {
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
    pub fn next_release(&self) -> Option<Instant> {
        let head = self.line.front()?;
        let missing = (head.cost - self.tokens).max(0.0);
        Some(self.at + Duration::from_secs_f64(missing / self.per_second))
    }

    /// How many masters wait for the bucket.
    pub fn waiting(&self) -> usize {
        self.line.len()
    }

    /// Empties the line (shutdown): the orders that never started.
    pub fn drain(&mut self) -> Vec<T> {
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
        let mut p = Pacer::new(5.0, 10, t0);
        for i in 0..5 {
            assert_eq!(p.offer(t0, &format!("m{i}"), 2, i), vec![i]);
        }
        assert_eq!(p.waiting(), 0);
        assert_eq!(p.next_release(), None);
    }

    #[test]
    fn beyond_the_burst_writes_leave_at_the_refill_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(20.0, 20, t0);
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
        let mut p = Pacer::new(1.0, 2, t0);
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
        let mut p = Pacer::new(1.0, 4, t0);
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
        let mut p = Pacer::new(2.0, 3, t0);
        assert_eq!(p.offer(t0, "m", 8, "all tables"), vec!["all tables"]);
        assert!(p.offer(t0, "n", 8, "again").is_empty());
        assert_eq!(p.next_release(), Some(t0 + ms(1_500)));
    }

    #[test]
    fn the_bucket_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10.0, 4, t0);
        let later = t0 + Duration::from_secs(3_600);
        let out: Vec<i32> = (0..6)
            .flat_map(|i| p.offer(later, &format!("m{i}"), 1, i))
            .collect();
        assert_eq!(out, vec![0, 1, 2, 3]);
        assert_eq!(p.drain(), vec![4, 5]);
        assert_eq!(p.next_release(), None);
    }
}
