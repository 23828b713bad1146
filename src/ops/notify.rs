//! systemd integration: `READY=1` once the first reconcile ran with a sentinel
//! connected, `STATUS=` with a one-line summary, and `WATCHDOG=1` only while
//! the controller loop is alive (it stamps a heartbeat every second), so a
//! wedged loop gets the process restarted. No-ops outside systemd.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::ops::status::SharedStatus;
use crate::shutdown::Shutdown;

/// How stale the controller's heartbeat may be before the watchdog is starved.
const HEARTBEAT_STALE: Duration = Duration::from_secs(5);

pub(crate) async fn watch_ready(status: SharedStatus, mut shutdown: Shutdown) {
    let mut ready = false;
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let watchdog = {
        let mut usec = 0;
        sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
    };
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = every.tick() => {}
        }
        let Some((alive, can_be_ready, line)) = status.with(|s| {
            (
                s.heartbeat.is_some_and(|h| h.elapsed() < HEARTBEAT_STALE),
                s.reconciles > 0 && s.sentinels_connected > 0,
                s.summary(),
            )
        }) else {
            continue;
        };
        if !ready && can_be_ready {
            ready = true;
            let _ = sd_notify::notify(false, &[NotifyState::Ready]);
            tracing::info!(summary = %line, "ready");
        }
        let _ = sd_notify::notify(false, &[NotifyState::Status(&line)]);
        if watchdog.is_some() && alive {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        }
    }
}

/// Tells systemd we are stopping.
pub(crate) fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// Stamps the controller loop's heartbeat.
pub(crate) fn heartbeat(status: &SharedStatus) {
    let now = Instant::now();
    status.update(|s| s.heartbeat = Some(now));
}
