//! The alert task's inbox, as the controller sees it: never waits, and says so
//! when it drops.
//!
//! The controller must never wait on alerts (a full inbox must not delay a
//! route write), so it offers inputs with `try_send`. What a full inbox drops
//! is counted (`sentinel_vip_alerts_inbox_dropped_total`) and logged once per
//! burst: one warning when dropping starts, one line with the count when the
//! inbox accepts again — not one line per dropped message, which would flood
//! the log exactly when the process is busiest.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::warn;

use crate::decide::fold::AlertInput;
use crate::ops::metrics::METRICS;

/// Dropped inputs in the current burst (0: not dropping). Process-wide like the
/// inbox's metric: one burst state per process is what the log line describes.
static BURST: DropBurst = DropBurst::new();

/// Offers `input` to the alert task without waiting. Returns whether it was
/// accepted; a drop (inbox full) is counted and logged once per burst. A
/// closed inbox (the alert task ended at shutdown) drops silently.
pub(crate) fn offer(tx: &mpsc::Sender<AlertInput>, input: AlertInput) -> bool {
    match tx.try_send(input) {
        Ok(()) => {
            if let Some(n) = BURST.accepted() {
                warn!(
                    dropped = n,
                    "alert inbox accepts again; alert inputs were dropped while it was full"
                );
            }
            true
        }
        Err(TrySendError::Full(_)) => {
            METRICS.alerts_inbox_dropped.inc();
            if BURST.dropped() {
                warn!("alert inbox full: dropping alert inputs until it drains (counted in sentinel_vip_alerts_inbox_dropped_total)");
            }
            false
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

/// Inputs the alert task folds before it looks at its timers and publishes
/// its status.
pub(crate) const BATCH: usize = 256;

/// `first` and whatever else is already waiting in `rx`, up to [`BATCH`] in
/// all, in order. The alert task's timers and status walk every open
/// incident: done once per input, a storm (the controller hands over every
/// `+sdown`) with 1,000 incidents open cost ~0.5 ms per input in a debug
/// build (`Fold::due` alone ~0.4 ms); once per batch, it is paid once per
/// burst.
pub(crate) fn batch<T>(rx: &mut mpsc::Receiver<T>, first: T) -> Vec<T> {
    let mut out = vec![first];
    while out.len() < BATCH {
        match rx.try_recv() {
            Ok(m) => out.push(m),
            Err(_) => break,
        }
    }
    out
}

/// Counts the drops of one burst; tells when to log.
#[derive(Debug)]
pub(crate) struct DropBurst(AtomicU64);

impl DropBurst {
    pub(crate) const fn new() -> DropBurst {
        DropBurst(AtomicU64::new(0))
    }

    /// One more drop; true when it starts a burst (log it).
    pub(crate) fn dropped(&self) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// An input was accepted; the burst's size when this ends one (log it).
    pub(crate) fn accepted(&self) -> Option<u64> {
        if self.0.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Some(self.0.swap(0, Ordering::Relaxed)).filter(|n| *n > 0)
    }
}

impl Default for DropBurst {
    fn default() -> Self {
        DropBurst::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(n: usize) -> AlertInput {
        AlertInput::Ec2 {
            ok: true,
            detail: n.to_string(),
        }
    }

    #[test]
    fn what_waits_behind_an_input_is_taken_with_it_up_to_a_batch() {
        let (tx, mut rx) = mpsc::channel(BATCH * 2);
        for n in 1..BATCH + 10 {
            tx.try_send(n).expect("room");
        }
        let b = batch(&mut rx, 0);
        assert_eq!(
            b,
            (0..BATCH).collect::<Vec<_>>(),
            "in order, a batch at most"
        );
        let b = batch(&mut rx, 0);
        assert_eq!(b.len(), 11, "the rest, and no waiting for more");
        assert_eq!(
            batch(&mut rx, 7),
            vec![7],
            "nothing waiting: the input alone"
        );
    }

    #[test]
    fn a_burst_of_drops_is_logged_once_and_its_size_told_when_it_ends() {
        let b = DropBurst::new();
        assert_eq!(b.accepted(), None, "nothing dropped, nothing to tell");
        let starts: Vec<bool> = (0..1000).map(|_| b.dropped()).collect();
        assert_eq!(starts.iter().filter(|s| **s).count(), 1, "one log line");
        assert!(starts[0]);
        assert_eq!(b.accepted(), Some(1000));
        assert_eq!(b.accepted(), None, "told once");
        assert!(b.dropped(), "a new burst is logged again");
    }

    #[test]
    fn a_full_inbox_drops_without_waiting_and_counts_each_drop() {
        let (tx, mut rx) = mpsc::channel(2);
        let before = METRICS.alerts_inbox_dropped.get();
        let accepted: Vec<bool> = (0..5).map(|n| offer(&tx, input(n))).collect();
        assert_eq!(accepted, [true, true, false, false, false]);
        assert!(METRICS.alerts_inbox_dropped.get() >= before + 3);
        // Drained: accepted again, in order, the first two kept.
        assert!(matches!(rx.try_recv(), Ok(AlertInput::Ec2 { detail, .. }) if detail == "0"));
        assert!(offer(&tx, input(9)));
        drop(rx);
        assert!(!offer(&tx, input(10)), "closed inbox: dropped, not counted");
    }
}
