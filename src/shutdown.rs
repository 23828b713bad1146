//! Graceful shutdown as a value passed down (after mini-redis): each long-lived
//! task holds a [`Shutdown`] and selects on [`Shutdown::recv`].

use tokio::sync::watch;

/// A listener for the shutdown signal; clone it for every task.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending half, held by `main`.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    /// True once shutdown was signalled.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is signalled (at once if it already was).
    pub async fn recv(&mut self) {
        let _ = self.rx.wait_for(|s| *s).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}
