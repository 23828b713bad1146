//! Webhook sinks: message formats (pure) and delivery with retries.
//!
//! Retries network errors, 5xx and 429 (honouring `Retry-After`, seconds or an
//! HTTP date) with exponential backoff and jitter under a per-message deadline;
//! other 4xx are final. Errors name the sink and the status, never the URL
//! (Slack, Discord and Teams URLs carry tokens).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use super::fold::{Incident, Severity, State};
use crate::config::{SinkKind, WebhookConfig};
use crate::metrics::METRICS;

/// Messages waiting per sink; when full the oldest is dropped (and counted).
pub const QUEUE_LEN: usize = 256;
/// How long one message may keep being retried.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(120);

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

fn severity(i: &Incident) -> &'static str {
    match i.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
    }
}

/// A rendered request for one sink.
#[derive(Debug, Clone)]
pub struct Request {
    pub body: Value,
    pub headers: Vec<(String, String)>,
    /// Status codes that mean delivered (besides any 2xx).
    pub expect: Option<u16>,
    pub url_suffix: &'static str,
}

/// Renders `i` for `sink`. `test` marks a `test-alert` message.
pub fn render(sink: &WebhookConfig, i: &Incident, receiver: &str, now: SystemTime) -> Request {
    let summary = i.summary();
    let description = i.description();
    let state = i.state.as_str();
    let mut headers = Vec::new();
    let body = match sink.kind {
        SinkKind::Generic => {
            let mut labels = json!({
                "alertname": i.kind.alertname(),
                "master": i.master,
                "severity": severity(i),
            });
            if let super::fold::Kind::InstanceDown { role, instance } = &i.kind {
                labels["role"] = json!(role);
                labels["instance"] = json!(instance);
            }
            let ends = i
                .resolved_at
                .map(rfc3339)
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
            let annotations = json!({"summary": summary, "description": description});
            let body = json!({
                "version": "4",
                "groupKey": i.key,
                "truncatedAlerts": 0,
                "status": state,
                "receiver": receiver,
                "groupLabels": {"alertname": i.kind.alertname(), "master": i.master},
                "commonLabels": labels,
                "commonAnnotations": annotations,
                "externalURL": "",
                "alerts": [{
                    "status": state,
                    "labels": labels,
                    "annotations": annotations,
                    "startsAt": rfc3339(i.opened_at),
                    "endsAt": ends,
                    "generatorURL": "",
                    "fingerprint": &i.key[..16],
                }],
                "sentinelVip": {
                    "from": i.from, "to": i.to,
                    "failoverSeconds": i.failover_time.map(|d| d.as_secs_f64()),
                    "route": i.route.as_ref().map(|r| json!({
                        "ok": r.ok, "target": r.target, "tablesWritten": r.tables_written,
                        "tablesTotal": r.tables_total, "latencyMs": r.latency_ms, "error": r.error,
                    })),
                    "eventsFolded": i.events,
                }
            });
            let id = format!("{}-{state}", i.key);
            let ts = now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string();
            if let Some(secret) = &sink.secret {
                let payload = serde_json::to_string(&body).unwrap_or_default();
                headers.push((
                    "webhook-signature".into(),
                    sign(secret.expose(), &id, &ts, &payload),
                ));
            }
            headers.push(("webhook-id".into(), id));
            headers.push(("webhook-timestamp".into(), ts));
            body
        }
        SinkKind::Slack => {
            let icon = if i.state == State::Resolved {
                ":white_check_mark:"
            } else {
                ":rotating_light:"
            };
            json!({
                "text": format!("{icon} {summary}"),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("{icon} *{summary}*")}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": description}]}
                ]
            })
        }
        SinkKind::Discord => json!({
            "content": summary,
            "embeds": [{
                "title": format!("{} [{state}]", i.kind.alertname()),
                "description": description,
                "color": if i.state == State::Resolved { 0x2eb67d } else { 0xe01e5a },
            }]
        }),
        SinkKind::Teams => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": summary, "weight": "Bolder", "wrap": true,
                         "color": if i.state == State::Resolved { "Good" } else { "Attention" }},
                        {"type": "TextBlock", "text": description, "wrap": true, "isSubtle": true}
                    ]
                }
            }]
        }),
        SinkKind::Pagerduty => json!({
            "routing_key": sink.routing_key.as_ref().map(|k| k.expose()).unwrap_or_default(),
            "event_action": if i.state == State::Resolved { "resolve" } else { "trigger" },
            "dedup_key": i.key,
            "payload": {
                "summary": summary,
                "source": format!("sentinel-vip/{}", i.master),
                "severity": severity(i),
                "component": i.master,
                "class": i.kind.alertname(),
                "custom_details": {"description": description, "from": i.from, "to": i.to},
            }
        }),
    };
    Request {
        body,
        headers,
        expect: (sink.kind == SinkKind::Pagerduty).then_some(202),
        url_suffix: if sink.kind == SinkKind::Discord {
            "wait=true"
        } else {
            ""
        },
    }
}

/// Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(key, id.ts.body)).
/// A `whsec_` secret is base64 of the key; any other secret is the key's bytes.
pub fn sign(secret: &str, id: &str, ts: &str, body: &str) -> String {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Parses `Retry-After`: delta seconds or an HTTP date.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    httpdate::parse_http_date(value.trim())
        .ok()
        .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Result of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent { status: u16, attempts: u32 },
    Failed { why: String, attempts: u32 },
}

/// A sink's queue and worker.
pub struct Sink {
    pub cfg: WebhookConfig,
    queue: Arc<Mutex<VecDeque<Request>>>,
    wake: Arc<Notify>,
}

impl Sink {
    pub fn start(cfg: WebhookConfig, http: reqwest::Client) -> Arc<Sink> {
        let s = Arc::new(Sink {
            cfg,
            queue: Arc::new(Mutex::new(VecDeque::new())),
            wake: Arc::new(Notify::new()),
        });
        let worker = s.clone();
        tokio::spawn(async move {
            loop {
                let next = worker.queue.lock().await.pop_front();
                match next {
                    Some(req) => {
                        let r = deliver(&worker.cfg, &http, &req, DELIVERY_DEADLINE).await;
                        log_delivery(&worker.cfg, &r);
                    }
                    None => worker.wake.notified().await,
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

pub fn log_delivery(cfg: &WebhookConfig, r: &Delivery) {
    let (result, ok) = match r {
        Delivery::Sent { status, attempts } => {
            info!(sink = %cfg.name, status, attempts, "alert delivered");
            ("sent", true)
        }
        Delivery::Failed { why, attempts } => {
            warn!(sink = %cfg.name, attempts, error = %why, "alert NOT delivered");
            ("failed", false)
        }
    };
    let _ = ok;
    METRICS
        .alerts
        .get_or_create(&vec![
            ("sink", cfg.name.clone()),
            ("result", result.to_owned()),
        ])
        .inc();
}

/// Posts `req` to the sink, retrying what can succeed later.
pub async fn deliver(
    cfg: &WebhookConfig,
    http: &reqwest::Client,
    req: &Request,
    within: Duration,
) -> Delivery {
    let url = {
        let base = cfg.url.expose();
        if req.url_suffix.is_empty() {
            base.to_owned()
        } else if base.contains('?') {
            format!("{base}&{}", req.url_suffix)
        } else {
            format!("{base}?{}", req.url_suffix)
        }
    };
    let deadline = tokio::time::Instant::now() + within;
    let mut attempts = 0u32;
    let mut backoff = Duration::from_millis(250);
    loop {
        attempts += 1;
        let mut b = http.post(&url).json(&req.body);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let (retry, why, wait) = match b.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if resp.status().is_success() || req.expect == Some(status) {
                    return Delivery::Sent { status, attempts };
                }
                let ra = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, SystemTime::now()));
                let retry = status == 429 || status >= 500;
                (retry, format!("HTTP {status}"), ra)
            }
            // without_url(): the URL may carry a token.
            Err(e) => (true, format!("request failed: {}", e.without_url()), None),
        };
        if !retry {
            return Delivery::Failed { why, attempts };
        }
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        let wait = wait.unwrap_or(backoff.mul_f64(jitter));
        if tokio::time::Instant::now() + wait > deadline {
            return Delivery::Failed {
                why: format!("{why}; gave up after {attempts} attempts"),
                attempts,
            };
        }
        warn!(sink = %cfg.name, attempt = attempts, error = %why, retry_in_ms = wait.as_millis() as u64, "alert delivery will be retried");
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_signature_matches_reference() {
        // Vector from the Standard Webhooks spec's reference implementation.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("soon", now), None);
    }
}
