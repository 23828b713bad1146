//! Decide: the pure core — no I/O, no clock (time is passed in).
//! `quorum` (the sentinels' majority), `plan` (per-table route decision),
//! `steering` (the controller's state machine), `fold` (events → incidents),
//! `speaker` (which watcher posts to chat), and `facts` (what the outside world
//! answered: table reads, EC2 and target errors).

pub mod facts;
pub mod fold;
pub mod journal;
pub mod plan;
pub(crate) mod quorum;
pub(crate) mod speaker;
pub(crate) mod steering;
