//! The other watchers of the deployment, as seen through Sentinel: with
//! `local_sentinel` set, every watcher names its sentinel connections
//! `sentinel-vip:<local_sentinel>` and this task polls `CLIENT LIST` on every
//! sentinel (see [`crate::decide::speaker`]). The controller reads the verdict
//! to know whether it is the designated writer (or a standby of some rank), the
//! alert task to know whether it posts to chat. One poller per generation of
//! sentinel links: it ends when they close.

use std::time::Instant;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::addr::Addr;
use crate::decide::speaker::{Liveness, POLL_EVERY, POLL_TIMEOUT, STALE_AFTER};
use crate::ops::metrics::METRICS;
use crate::shutdown::Shutdown;
use crate::watch::SentinelLink;

/// The latest liveness view and when it was taken (`None`: no poll yet).
pub(crate) type LivenessView = Option<(Instant, Liveness)>;

/// Where the liveness verdict is read; `None` inside when no poll was taken.
pub(crate) type Peers = watch::Receiver<LivenessView>;

/// A view that never changes from "no poll yet": every watcher acts alone.
pub(crate) fn alone() -> Peers {
    watch::channel(None).1
}

/// The liveness view to decide with now: unknown when none was taken yet or
/// the last one is stale.
pub(crate) fn current(peers: &Peers) -> Liveness {
    match &*peers.borrow() {
        Some((at, l)) if at.elapsed() < STALE_AFTER => l.clone(),
        _ => Liveness::Unknown,
    }
}

/// Polls `CLIENT LIST` on every sentinel every [`POLL_EVERY`] and publishes the
/// liveness verdict, until `stopped` (the links' own trigger). Logs when a
/// watcher is seen gone or back, and when nothing can be read.
pub(crate) fn poll(links: Vec<SentinelLink>, sentinels: Vec<Addr>, mut stopped: Shutdown) -> Peers {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Liveness> = None;
        loop {
            tokio::select! {
                _ = stopped.recv() => break,
                _ = tick.tick() => {}
            }
            let reads = links.iter().map(|l| async move {
                match tokio::time::timeout(POLL_TIMEOUT, l.client_list()).await {
                    Ok(Ok(text)) => Some(text),
                    _ => None,
                }
            });
            let lists = futures::future::join_all(reads).await;
            let live = crate::decide::speaker::liveness(&sentinels, &lists);
            if last.as_ref() != Some(&live) {
                match &live {
                    Liveness::Known { alive, answered } => {
                        let gone: Vec<String> = sentinels
                            .iter()
                            .map(|s| s.to_string())
                            .filter(|s| !alive.contains(s))
                            .collect();
                        METRICS.watchers_alive.set(alive.len() as i64);
                        info!(alive = ?alive, gone = ?gone, answered, "watchers seen through CLIENT LIST");
                    }
                    Liveness::Unknown => {
                        METRICS.watchers_alive.set(-1);
                        warn!(
                            "CLIENT LIST unreadable on every sentinel: cannot tell which watchers are alive, \
                             so this one posts to chat sinks too, and writes in its place by address (needs ACL +client|list)"
                        )
                    }
                }
                last = Some(live.clone());
            }
            if tx.send(Some((Instant::now(), live))).is_err() {
                break;
            }
        }
    });
    rx
}
