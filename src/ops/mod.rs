//! Ops: what an operator sees — Prometheus metrics, the `/status`
//! snapshot, the HTTP endpoints and systemd notify/watchdog.

pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod status;
