//! **ops**: what an operator sees — Prometheus metrics, the `/status`
//! snapshot, the HTTP endpoints and systemd notify/watchdog.

pub mod http;
pub mod metrics;
pub mod notify;
pub mod status;
