//! sentinel-vip: keeps a Redis master reachable at one VPC address.
//!
//! watch (sentinel I/O) → decide (controller over pure event/quorum/plan
//! logic) → act (EC2 route writes, alerts). See ARCHITECTURE.md.

pub mod addr;
pub mod alerts;
pub mod check;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod ec2;
pub mod event;
pub mod http;
pub mod iam;
pub mod metrics;
pub mod notify;
pub mod oneshot;
pub mod pacing;
pub mod plan;
pub mod quorum;
pub mod resolve;
pub mod shutdown;
pub mod status;
pub mod steering;
pub mod targets;
pub mod watch;
