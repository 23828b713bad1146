//! Webhook sinks: message formats (pure) and delivery with retries.
//!
//! Retries network errors, 5xx and 429 (honouring `Retry-After`, seconds or an
//! HTTP date) with exponential backoff and jitter under a per-message deadline;
//! other 4xx are final. Errors name the sink and say why (refused, timed out,
//! the status and the start of the body), never the URL or any other secret
//! (Slack, Discord and Teams URLs carry tokens; routing keys and HMAC keys).
//!
//! **Architecture Invariant:** a Standard Webhooks signature and its
//! `webhook-timestamp` are made at send time, on every attempt, from the
//! injected [`Clock`]: receivers reject timestamps older than 5 minutes, and a
//! message may wait in the queue behind a receiver that is down. The
//! `webhook-id` is fixed when the message is rendered and kept across retries
//! (it is the receiver's idempotency key); a repeat reminder is a new message
//! with a new id.
//!
//! Files: `render.rs` builds each service's message (pure); `sign.rs` holds
//! the Standard Webhooks secret and signature; `deliver.rs` the HTTP client
//! and the delivery of one message with retries; `limits.rs` what each
//! service accepts; this file each sink's queue and its worker.

mod deliver;
pub mod limits;
mod render;
mod sign;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tracing::warn;

use crate::config::WebhookConfig;
use crate::ops::metrics::METRICS;

pub use deliver::{
    deliver, deliver_with, http_client, log_delivery, redact, retry_after, send_test_alert, Clock,
    Delivery, SystemClock, REQUEST_TIMEOUT, USER_AGENT,
};
pub use render::{render, render_test_alert, webhook_id, Request, TEST_RECEIVER};
pub use sign::{sign, signed, signing_key, validate, SecretError, Signed};

/// Messages waiting per sink; when full the oldest is dropped (and counted).
pub const QUEUE_LEN: usize = 256;
/// How long one message may keep being retried.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(120);

/// A sink's queue and worker.
pub struct Sink {
    pub cfg: WebhookConfig,
    queue: Arc<Mutex<VecDeque<Request>>>,
    wake: Arc<Notify>,
}

impl Drop for Sink {
    /// Wakes the worker so it sees it is orphaned and ends after the queue.
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

impl Sink {
    pub fn start(cfg: WebhookConfig, http: reqwest::Client) -> Arc<Sink> {
        Sink::start_with_clock(cfg, http, Arc::new(SystemClock::default()))
    }

    /// [`Sink::start`] on an injected clock (tests drive minutes of retries).
    pub fn start_with_clock(
        cfg: WebhookConfig,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Arc<Sink> {
        let s = Arc::new(Sink {
            cfg,
            queue: Arc::new(Mutex::new(VecDeque::new())),
            wake: Arc::new(Notify::new()),
        });
        // The worker holds the queue, not the sink: once the last `Arc<Sink>`
        // is dropped (shutdown, reload) it delivers what is queued and ends.
        let owner = Arc::downgrade(&s);
        let (queue, wake, cfg) = (s.queue.clone(), s.wake.clone(), s.cfg.clone());
        tokio::spawn(async move {
            loop {
                let next = queue.lock().await.pop_front();
                match next {
                    Some(req) => {
                        let r = deliver_with(&cfg, &http, &req, DELIVERY_DEADLINE, clock.as_ref())
                            .await;
                        log_delivery(&cfg, &r);
                    }
                    None if owner.strong_count() == 0 => break,
                    None => wake.notified().await,
                }
            }
        });
        s
    }

    /// Queues without waiting on the network; drops the oldest when full.
    pub async fn enqueue(&self, req: Request) {
        let mut q = self.queue.lock().await;
        if q.len() >= QUEUE_LEN {
            q.pop_front();
            METRICS
                .alerts_dropped
                .get_or_create(&vec![("sink", self.cfg.name.clone())])
                .inc();
            warn!(sink = %self.cfg.name, "alert queue full: dropped the oldest message");
        }
        q.push_back(req);
        drop(q);
        self.wake.notify_one();
    }
}

/// What the unit tests of `render.rs`, `sign.rs` and `deliver.rs` render:
/// a sink with every kind of secret, and a failover that is over.
#[cfg(test)]
mod fixtures {
    use std::time::{Duration, Instant, SystemTime};

    use crate::config::{Secret, SinkKind, WebhookConfig};
    use crate::decide::fold::{Incident, Kind, RouteReport, Severity, State};

    pub(super) fn sink(kind: SinkKind) -> WebhookConfig {
        WebhookConfig {
            name: "s".into(),
            kind,
            url: Secret::new("https://hooks.example/services/T000/B000/XXXXSECRETTOKEN"),
            secret: Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
            routing_key: Some(Secret::new("pd-routing-key-SECRET")),
        }
    }

    pub(super) fn failover(master: &str) -> Incident {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut i = Incident::new(
            crate::decide::fold::incident_key("prod-cache", master, 7, None),
            master,
            Kind::Failover,
            Severity::Critical,
            Instant::now(),
            t0,
            Some("10.0.1.11:6379".into()),
        )
        .in_cluster("prod-cache");
        i.down = true;
        i.to = Some("10.0.1.12:6379".into());
        i.state = State::Resolved;
        i.resolved_at = Some(t0 + Duration::from_secs(9));
        i.failover_time = Some(Duration::from_millis(8_700));
        i.route = Some(RouteReport {
            master: master.into(),
            addr: "10.0.1.12:6379".into(),
            ok: true,
            target: "eni-0abc".into(),
            tables_written: 2,
            tables_total: 2,
            carriers: Vec::new(),
            latency_ms: 140.0,
            error: None,
        });
        i
    }
}
