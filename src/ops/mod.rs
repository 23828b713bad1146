//! Ops: what an operator sees — Prometheus metrics, the `/status`
//! snapshot, the HTTP endpoints, systemd notify/watchdog and the host name.

pub(crate) mod host;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod status;
