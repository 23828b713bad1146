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

/// Installs the one process-level rustls crypto provider, aws-lc-rs (the AWS
/// SDK's own; reqwest is built without one, fred and the SDK link this one), so
/// no client panics with "No provider set". Idempotent; `main` calls it first
/// thing, and every place in the library that builds an HTTP client calls it
/// too, so the library is safe to use from any process (tests included).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only means another provider was installed first: it is used.
        let _ = fred::rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}
