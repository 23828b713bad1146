//! sentinel-vip: keeps a Redis master reachable at one VPC address.
//!
//! `watch` (sentinel I/O, event parsing) → `decide` (the pure core) → `act`
//! (EC2 route writes, targets, webhook sinks); `daemon` drives them, `cli` holds
//! the verbs, `ops` what an operator sees; `addr`, `config` and `shutdown` are
//! the ground everything stands on. See ARCHITECTURE.md.

#![warn(unreachable_pub)]

pub mod act;
pub mod addr;
pub mod cli;
pub mod config;
pub(crate) mod daemon;
pub mod decide;
pub(crate) mod ops;
pub mod shutdown;
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
