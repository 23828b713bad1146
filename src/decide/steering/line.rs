//! The designated writer's `aws.write_rate` line, as a standby models it: when
//! would the writer's pacer (`act::pacing`: a token bucket with a first come,
//! first served line, spending [`WRITE_RATE_MARGIN`] of the rate and
//! [`WRITE_BURST_MARGIN`] of the burst) release the next write of `cost`
//! tables? Every watcher decides the same writes at about the same time, so a
//! standby checks the n-th write of a burst after the writer's turn for it —
//! a burst's first writes at once, the rest at the budget's pace.
//!
//! **Architecture Invariant:** pure — no I/O, no clock; time is passed in.

use std::time::{Duration, Instant};

use crate::config::{Config, WRITE_BURST_MARGIN, WRITE_RATE_MARGIN};

#[derive(Debug, Clone)]
pub(super) struct WriterLine {
    per_second: f64,
    burst: f64,
    /// Tokens left right after the last modelled release, at `free`.
    tokens: f64,
    /// When the last modelled write was released (the line is FIFO: none
    /// after it is released earlier).
    free: Instant,
}

impl WriterLine {
    /// A full bucket at `now`, for `cfg`'s `aws.write_rate`.
    pub(super) fn new(cfg: &Config, now: Instant) -> WriterLine {
        let mut line = WriterLine {
            per_second: 1.0,
            burst: 1.0,
            tokens: 0.0,
            free: now,
        };
        line.set_budget(cfg);
        line.tokens = line.burst;
        line
    }

    /// Takes a reloaded `aws.write_rate`.
    pub(super) fn set_budget(&mut self, cfg: &Config) {
        let r = cfg.aws.write_rate;
        self.per_second = (r.per_second * WRITE_RATE_MARGIN).max(0.01);
        self.burst = (f64::from(r.burst.max(1)) * WRITE_BURST_MARGIN)
            .floor()
            .max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    /// When the writer's pacer should release a write of `cost` tables offered
    /// at `now`, behind every write modelled before it.
    pub(super) fn slot(&mut self, now: Instant, cost: usize) -> Instant {
        // A write larger than the bucket waits for a full bucket, as the pacer's.
        let cost = (cost.max(1) as f64).min(self.burst);
        let start = self.free.max(now);
        let refill = start.saturating_duration_since(self.free).as_secs_f64() * self.per_second;
        let tokens = (self.tokens + refill).min(self.burst);
        let slot = if tokens >= cost {
            start
        } else {
            start + Duration::from_secs_f64((cost - tokens) / self.per_second)
        };
        self.tokens = (tokens - cost).max(0.0);
        self.free = slot;
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(per_second: u32, burst: u32) -> Config {
        Config::parse(&format!(
            "sentinels: [\"127.0.0.2:26379\"]\naws:\n  write_rate: {{ per_second: {per_second}, burst: {burst} }}\n\
             masters:\n  m:\n    vip: 172.16.0.10/32\n    route_tables: [rtb-1]\n"
        ))
        .expect("parses")
    }

    #[test]
    fn a_burst_goes_at_once_then_the_rest_at_the_budgets_pace() {
        // 20/s, burst 20: the pacer holds 18 tokens and spends 19 a second.
        let t0 = Instant::now();
        let mut line = WriterLine::new(&cfg(20, 20), t0);
        let slots: Vec<f64> = (0..20)
            .map(|_| line.slot(t0, 2).duration_since(t0).as_secs_f64())
            .collect();
        // 9 writes of 2 tables fit the 18 tokens at once.
        assert!(slots[..9].iter().all(|s| *s == 0.0), "{slots:?}");
        // Then one every 2 / 19 s.
        assert!((slots[9] - 2.0 / 19.0).abs() < 1e-6, "{slots:?}");
        assert!((slots[19] - 11.0 * 2.0 / 19.0).abs() < 1e-6, "{slots:?}");
    }

    #[test]
    fn a_quiet_line_refills_and_is_first_come_first_served() {
        let t0 = Instant::now();
        let mut line = WriterLine::new(&cfg(5, 4), t0);
        // Burst 4 → 3 tokens; 4.75/s.
        assert_eq!(line.slot(t0, 2), t0);
        let second = line.slot(t0, 2);
        assert!(second > t0, "one token left: waits for the second");
        // Offered later than the line is free, after a long quiet: at once.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(line.slot(later, 2), later);
        // Offered before the last release: behind it.
        assert!(line.slot(t0, 3) >= later);
    }
}
