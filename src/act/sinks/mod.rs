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

pub mod limits;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use crate::config::{SinkKind, WebhookConfig};
use crate::decide::fold::{Incident, Kind, Severity, State};
use crate::ops::metrics::METRICS;
use limits::{cut, cut_discord, cut_slack, discord_escape, fit, slack_escape};

/// Messages waiting per sink; when full the oldest is dropped (and counted).
pub const QUEUE_LEN: usize = 256;
/// How long one message may keep being retried.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(120);
/// Per-request timeout of the daemon's (and `test-alert`'s) HTTP client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Sent on every request, by the daemon and by `test-alert` alike.
pub const USER_AGENT: &str = concat!("sentinel-vip/", env!("CARGO_PKG_VERSION"));
/// The `receiver` name `test-alert` renders with.
pub const TEST_RECEIVER: &str = "sentinel-vip-test";
/// How much of a rejected request's response body an error quotes.
const BODY_QUOTE: usize = 200;

/// The HTTP client sinks send with: the daemon's timeout and User-Agent, and
/// redirects followed only where a configured URL could point (`https://`, or
/// `http://` to loopback): a redirect must not carry a signed body and its
/// headers in clear across the network.
pub fn http_client() -> Result<reqwest::Client, String> {
    crate::install_crypto_provider();
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("more than 5 redirects")
        } else if crate::config::check_webhook_url(attempt.url().as_str(), false).is_ok() {
            attempt.follow()
        } else {
            attempt.error("redirect to plain http:// off this host refused (the body and its signature would cross the network in clear)")
        }
    });
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(USER_AGENT)
        .redirect(redirects)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Wall and monotonic time, and sleeping, for the delivery path. Injected so
/// that minutes of retries are tested without waiting for them.
pub trait Clock: Send + Sync + 'static {
    /// Wall time: signatures' `webhook-timestamp`, `Retry-After` dates.
    fn now(&self) -> SystemTime;
    /// Monotonic time since an arbitrary origin: delivery deadlines.
    fn monotonic(&self) -> Duration;
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock (`tokio::time`, so paused-time tests still drive it).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

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

/// A rendered message for one sink, not yet signed.
#[derive(Debug, Clone)]
pub struct Request {
    pub body: Value,
    /// Standard Webhooks `webhook-id` (generic sinks): fixed for the message,
    /// the same on every retry.
    pub webhook_id: Option<String>,
    /// Status codes that mean delivered (besides any 2xx).
    pub expect: Option<u16>,
    pub url_suffix: &'static str,
    /// A message to send once this one is accepted (PagerDuty: the resolve
    /// after a trigger).
    pub then: Option<Box<Request>>,
}

/// Why a webhook's `secret_env` value cannot be used as a signing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the value starts with whsec_ but the rest is not valid base64 (Standard Webhooks secrets are whsec_ + base64 of the key)")]
    BadBase64,
    #[error("the value starts with whsec_ but holds an empty key")]
    Empty,
}

/// The HMAC key of a Standard Webhooks secret: `whsec_` + base64 of the key,
/// or (without the prefix) the value's bytes. A `whsec_` value that is not
/// valid base64 is an error, never silently a raw key.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, SecretError> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| SecretError::BadBase64)?;
            if key.is_empty() {
                return Err(SecretError::Empty);
            }
            Ok(key)
        }
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// Checks every sink's secrets at startup (`run`, `check`, `test-alert`):
/// the error names the config key, never the value.
pub fn validate(webhooks: &[WebhookConfig]) -> Result<(), String> {
    for (i, w) in webhooks.iter().enumerate() {
        if let Some(s) = &w.secret {
            signing_key(s.expose()).map_err(|e| {
                format!("alerts.webhooks[{i}].secret_env (webhook {}): {e}", w.name)
            })?;
        }
    }
    Ok(())
}

/// Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(key, id.ts.body)).
pub fn sign(key: &[u8], id: &str, ts: &str, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// One attempt's body and headers, signed at send time.
#[derive(Debug, Clone)]
pub struct Signed {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// The body and headers of one attempt to send `req`, signed at `now`.
pub fn signed(cfg: &WebhookConfig, req: &Request, now: SystemTime) -> Result<Signed, String> {
    let body =
        serde_json::to_string(&req.body).map_err(|e| format!("cannot encode the message: {e}"))?;
    let mut headers = Vec::new();
    if let Some(id) = &req.webhook_id {
        let ts = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        if let Some(secret) = &cfg.secret {
            let key = signing_key(secret.expose())
                .map_err(|e| format!("secret_env of webhook {}: {e}", cfg.name))?;
            headers.push(("webhook-signature", sign(&key, id, &ts, &body)));
        }
        headers.push(("webhook-id", id.clone()));
        headers.push(("webhook-timestamp", ts));
    }
    Ok(Signed { body, headers })
}

/// The incident as it should be told: a trigger sent for an incident that is
/// already over (PagerDuty needs a trigger before a resolve) carries the final
/// headline, not "started but has not finished".
fn as_told(i: &Incident) -> Incident {
    let mut t = i.clone();
    if t.state == State::Firing && t.resolved_at.is_some() {
        t.state = State::Resolved;
    }
    t
}

/// `t`'s headline with the master name replaced by `master` (possibly elided).
fn headline(t: &Incident, master: &str) -> String {
    if master == t.master {
        return t.summary();
    }
    let mut c = t.clone();
    c.master = master.to_owned();
    c.summary()
}

/// The Standard Webhooks id of a message: the incident key and state, and for
/// a repeat reminder of a still-open incident a new id (the offset of the
/// previous message from the opening, which every watcher computes alike).
pub fn webhook_id(i: &Incident) -> String {
    let state = i.state.as_str();
    match i.sent {
        Some((State::Firing, at)) if i.state == State::Firing => format!(
            "{}-{state}-r{}",
            i.key,
            at.saturating_duration_since(i.opened).as_secs()
        ),
        _ => format!("{}-{state}", i.key),
    }
}

/// Renders `i` for `sink`. Signing happens at send time (see [`signed`]);
/// `_now` is kept for the callers in `alerts/mod.rs`.
pub fn render(sink: &WebhookConfig, i: &Incident, receiver: &str, _now: SystemTime) -> Request {
    let t = as_told(i);
    let description = t.description();
    let state = i.state.as_str();
    let resolved = t.state == State::Resolved;
    let mut webhook_id_ = None;
    let body = match sink.kind {
        SinkKind::Generic => {
            webhook_id_ = Some(webhook_id(i));
            generic(&t, i.state, receiver, &description)
        }
        SinkKind::Slack => {
            let icon = if resolved {
                ":white_check_mark:"
            } else {
                ":rotating_light:"
            };
            // Only our own fixed ASCII is bold: a `*` in a name cannot break it.
            let title = format!("{icon} *{}* ({state})", t.kind.alertname());
            let section = fit(
                &t.master,
                limits::SLACK_TEXT,
                |m| format!("{title}\n{}", slack_escape(&headline(&t, m))),
                cut_slack,
            );
            let text = fit(
                &t.master,
                limits::SLACK_TEXT,
                |m| format!("{icon} {}", slack_escape(&headline(&t, m))),
                cut_slack,
            );
            json!({
                "text": text,
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": section}},
                    {"type": "context", "elements": [{"type": "mrkdwn",
                        "text": cut_slack(&slack_escape(&description), limits::SLACK_TEXT)}]}
                ]
            })
        }
        SinkKind::Discord => json!({
            "content": fit(
                &t.master,
                limits::DISCORD_CONTENT,
                |m| discord_escape(&headline(&t, m)),
                cut_discord,
            ),
            // Nothing in a message may ping anyone (`@everyone` in a name).
            "allowed_mentions": {"parse": []},
            "embeds": [{
                "title": cut(&format!("{} [{state}]", t.kind.alertname()), limits::DISCORD_EMBED_TITLE),
                "description": cut_discord(&discord_escape(&description), limits::DISCORD_EMBED_DESCRIPTION),
                "color": if resolved { 0x2eb67d } else { 0xe01e5a },
            }]
        }),
        SinkKind::Teams => teams(&t, description),
        SinkKind::Pagerduty => json!({
            "routing_key": sink.routing_key.as_ref().map(|k| k.expose()).unwrap_or_default(),
            "event_action": if i.state == State::Resolved { "resolve" } else { "trigger" },
            "dedup_key": i.key,
            "payload": {
                "summary": fit(&t.master, limits::PAGERDUTY_SUMMARY, |m| headline(&t, m), cut),
                "source": format!("sentinel-vip/{}", t.master),
                "severity": severity(&t),
                "component": t.master,
                "class": t.kind.alertname(),
                "custom_details": {"description": description, "from": t.from, "to": t.to},
            }
        }),
    };
    Request {
        body,
        webhook_id: webhook_id_,
        expect: (sink.kind == SinkKind::Pagerduty).then_some(202),
        url_suffix: if sink.kind == SinkKind::Discord {
            "wait=true"
        } else {
            ""
        },
        then: None,
    }
}

/// Alertmanager webhook v4 (`notify/webhook.Message` = `template.Data` +
/// version, groupKey, truncatedAlerts); labels and annotations are string maps.
fn generic(t: &Incident, state: State, receiver: &str, description: &str) -> Value {
    let state = state.as_str();
    let mut labels = json!({
        "alertname": t.kind.alertname(),
        "master": t.master,
        "severity": severity(t),
    });
    if let Kind::InstanceDown { role, instance } = &t.kind {
        labels["role"] = json!(role);
        labels["instance"] = json!(instance);
    }
    let ends = t
        .resolved_at
        .map(rfc3339)
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    let annotations = json!({"summary": t.summary(), "description": description});
    json!({
        "version": "4",
        "groupKey": t.key,
        "truncatedAlerts": 0,
        "status": state,
        "receiver": receiver,
        "groupLabels": {"alertname": t.kind.alertname(), "master": t.master},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": state,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(t.opened_at),
            "endsAt": ends,
            "generatorURL": "",
            "fingerprint": t.key.get(..16).unwrap_or(&t.key),
        }],
        "sentinelVip": {
            "from": t.from, "to": t.to,
            "failoverSeconds": t.failover_time.map(|d| d.as_secs_f64()),
            "route": t.route.as_ref().map(|r| json!({
                "ok": r.ok, "target": r.target, "tablesWritten": r.tables_written,
                "tablesTotal": r.tables_total, "latencyMs": r.latency_ms, "error": r.error,
            })),
            "eventsFolded": t.events,
        }
    })
}

fn teams_card(headline: &str, description: &str, resolved: bool) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": headline, "weight": "Bolder", "wrap": true,
                     "color": if resolved { "Good" } else { "Attention" }},
                    {"type": "TextBlock", "text": description, "wrap": true, "isSubtle": true}
                ]
            }
        }]
    })
}

/// A Teams card within [`limits::TEAMS_BODY_BYTES`]: the headline within
/// [`limits::TEAMS_HEADLINE`] characters (master name elided first), then the
/// description cut to what is left of the body.
fn teams(t: &Incident, description: String) -> Value {
    let resolved = t.state == State::Resolved;
    let head = fit(&t.master, limits::TEAMS_HEADLINE, |m| headline(t, m), cut);
    let mut desc = description;
    // JSON escaping makes the size only roughly predictable: converge.
    for _ in 0..16 {
        let card = teams_card(&head, &desc, resolved);
        let size = serde_json::to_string(&card).map(|s| s.len()).unwrap_or(0);
        if size <= limits::TEAMS_BODY_BYTES {
            return card;
        }
        let over = size - limits::TEAMS_BODY_BYTES;
        desc = limits::cut_bytes(&desc, desc.len().saturating_sub(over));
    }
    teams_card(&head, "", resolved)
}

/// `test-alert`'s message for `cfg`: for PagerDuty a trigger followed by its
/// resolve, so a test never leaves an open incident behind.
pub fn render_test_alert(cfg: &WebhookConfig, i: &Incident, now: SystemTime) -> Request {
    let mut req = render(cfg, i, TEST_RECEIVER, now);
    if cfg.kind == SinkKind::Pagerduty {
        let mut done = i.clone();
        done.state = State::Resolved;
        done.resolved_at = Some(now);
        req.then = Some(Box::new(render(cfg, &done, TEST_RECEIVER, now)));
    }
    req
}

/// Sends `test-alert`'s message to `cfg` (trigger and resolve for PagerDuty).
pub async fn send_test_alert(
    cfg: &WebhookConfig,
    http: &reqwest::Client,
    i: &Incident,
    within: Duration,
) -> Delivery {
    let req = render_test_alert(cfg, i, SystemTime::now());
    deliver(cfg, http, &req, within).await
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
    Sent {
        status: u16,
        attempts: u32,
    },
    /// `why` says what went wrong last, once (no attempt count: that is
    /// `attempts`), without any secret.
    Failed {
        why: String,
        attempts: u32,
    },
}

/// `text` with every secret of `cfg` replaced by `***`: the URL, its path
/// segments and query values that could be tokens, the routing key, the
/// signing secret.
pub fn redact(cfg: &WebhookConfig, text: &str) -> String {
    let url = cfg.url.expose();
    let mut secrets: Vec<&str> = vec![url];
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    if let Some((_, path)) = rest.split_once('/') {
        secrets.extend(path.split(['/', '?', '&', '=']).filter(|s| s.len() >= 8));
    }
    if let Some(k) = &cfg.routing_key {
        secrets.push(k.expose());
    }
    if let Some(s) = &cfg.secret {
        secrets.push(s.expose());
        secrets.extend(s.expose().strip_prefix("whsec_"));
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for s in secrets.into_iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "***");
    }
    out
}

/// Why a request failed, in words an operator can act on, without the URL.
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", REQUEST_TIMEOUT.as_secs());
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    let mut innermost = None;
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return "connection refused".into(),
                K::ConnectionReset => return "connection reset by the receiver".into(),
                K::TimedOut => return format!("timed out after {} s", REQUEST_TIMEOUT.as_secs()),
                _ => {}
            }
        }
        innermost = Some(c);
        cause = c.source();
    }
    let connect = e.is_connect();
    let what = match innermost {
        Some(c) => c.to_string(),
        None => e.without_url().to_string(),
    };
    if connect {
        format!("cannot connect: {what}")
    } else {
        what
    }
}

/// The start of a response body, for an error message.
fn quote_body(body: &str) -> String {
    let body = body.trim();
    let mut end = body.len().min(BODY_QUOTE);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let quoted = body[..end].replace(['\n', '\r'], " ");
    if end < body.len() {
        format!("{quoted}…")
    } else {
        quoted
    }
}

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

pub fn log_delivery(cfg: &WebhookConfig, r: &Delivery) {
    let result = match r {
        Delivery::Sent { status, attempts } => {
            info!(sink = %cfg.name, status, attempts, "alert delivered");
            "sent"
        }
        Delivery::Failed { why, attempts } => {
            warn!(sink = %cfg.name, attempts, error = %why, "alert NOT delivered");
            "failed"
        }
    };
    METRICS
        .alerts
        .get_or_create(&vec![
            ("sink", cfg.name.clone()),
            ("result", result.to_owned()),
        ])
        .inc();
}

/// Posts `req` (and what follows it) to the sink, retrying what can succeed
/// later, each message within `within`.
pub async fn deliver(
    cfg: &WebhookConfig,
    http: &reqwest::Client,
    req: &Request,
    within: Duration,
) -> Delivery {
    deliver_with(cfg, http, req, within, &SystemClock::default()).await
}

/// [`deliver`] on an injected clock.
pub async fn deliver_with(
    cfg: &WebhookConfig,
    http: &reqwest::Client,
    req: &Request,
    within: Duration,
    clock: &dyn Clock,
) -> Delivery {
    let mut attempts = 0;
    let mut next = Some(req);
    let mut first = true;
    let mut status = 0;
    while let Some(r) = next {
        match deliver_one(cfg, http, r, within, clock, &mut attempts).await {
            Ok(s) => status = s,
            Err(why) => {
                let why = if first {
                    why
                } else {
                    format!("first message accepted, follow-up failed: {why}")
                };
                return Delivery::Failed { why, attempts };
            }
        }
        first = false;
        next = r.then.as_deref();
    }
    Delivery::Sent { status, attempts }
}

async fn deliver_one(
    cfg: &WebhookConfig,
    http: &reqwest::Client,
    req: &Request,
    within: Duration,
    clock: &dyn Clock,
    attempts: &mut u32,
) -> Result<u16, String> {
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
    let deadline = clock.monotonic() + within;
    let mut backoff = Duration::from_millis(250);
    loop {
        *attempts += 1;
        // Signed now, on this attempt: the timestamp is never stale.
        let Signed { body, headers } = signed(cfg, req, clock.now())?;
        let mut b = http
            .post(&url)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let (retry, why, wait) = match b.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if resp.status().is_success() || req.expect == Some(status) {
                    return Ok(status);
                }
                let ra = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, clock.now()));
                let retry = status == 429 || status >= 500;
                let text = resp.text().await.unwrap_or_default();
                let quoted = quote_body(&text);
                let why = if quoted.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {quoted}")
                };
                (retry, redact(cfg, &why), ra)
            }
            Err(e) => (true, redact(cfg, &describe(e)), None),
        };
        if !retry {
            return Err(why);
        }
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        let wait = wait.unwrap_or(backoff.mul_f64(jitter));
        if clock.monotonic() + wait > deadline {
            return Err(why);
        }
        warn!(sink = %cfg.name, attempt = *attempts, error = %why, retry_in_ms = wait.as_millis() as u64, "alert delivery will be retried");
        clock.sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::decide::fold::RouteReport;
    use limits::ELLIPSIS;
    use std::time::Instant;

    fn sink(kind: SinkKind) -> WebhookConfig {
        WebhookConfig {
            name: "s".into(),
            kind,
            url: Secret::new("https://hooks.example/services/T000/B000/XXXXSECRETTOKEN"),
            secret: Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
            routing_key: Some(Secret::new("pd-routing-key-SECRET")),
        }
    }

    fn failover(master: &str) -> Incident {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut i = Incident::new(
            crate::decide::fold::incident_key(master, 7, None),
            master,
            Kind::Failover,
            Severity::Critical,
            Instant::now(),
            t0,
            Some("10.0.1.11:6379".into()),
        );
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
            latency_ms: 140.0,
            error: None,
        });
        i
    }

    #[test]
    fn standard_webhooks_signature_matches_reference() {
        // Vector from the Standard Webhooks spec's reference implementation.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn whsec_secret_that_is_not_base64_is_a_config_error_naming_the_key() {
        let mut good = sink(SinkKind::Generic);
        good.name = "ok".into();
        let mut bad = sink(SinkKind::Generic);
        bad.name = "audit".into();
        bad.secret = Some(Secret::new("whsec_not*base64!TOPSECRET"));
        let err = validate(&[good.clone(), bad.clone()]).unwrap_err();
        assert!(err.contains("alerts.webhooks[1].secret_env"), "{err}");
        assert!(err.contains("audit") && err.contains("base64"), "{err}");
        assert!(!err.contains("TOPSECRET"), "{err}");
        assert!(validate(&[good]).is_ok());
        // Never silently a raw key at send time either.
        let req = render(&bad, &failover("m"), "r", SystemTime::now());
        let e = signed(&bad, &req, SystemTime::now()).unwrap_err();
        assert!(!e.contains("TOPSECRET"), "{e}");
        // A plain (non-whsec) value is the key's bytes.
        assert_eq!(signing_key("plain").unwrap(), b"plain");
        assert_eq!(signing_key("whsec_"), Err(SecretError::Empty));
    }

    #[test]
    fn signature_is_made_at_send_time_with_the_same_id_on_every_attempt() {
        let cfg = sink(SinkKind::Generic);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let req = render(&cfg, &failover("m"), "r", t0);
        let header = |h: &[(&str, String)], k: &str| {
            h.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let Signed { body, headers: a } = signed(&cfg, &req, t0).unwrap();
        let b = signed(&cfg, &req, t0 + Duration::from_secs(400))
            .unwrap()
            .headers;
        assert_eq!(header(&a, "webhook-id"), header(&b, "webhook-id"));
        assert_eq!(header(&a, "webhook-timestamp"), "1700000000");
        assert_eq!(header(&b, "webhook-timestamp"), "1700000400");
        assert_ne!(
            header(&a, "webhook-signature"),
            header(&b, "webhook-signature")
        );
        let key = signing_key(cfg.secret.as_ref().unwrap().expose()).unwrap();
        assert_eq!(
            header(&b, "webhook-signature"),
            sign(&key, &header(&b, "webhook-id"), "1700000400", &body)
        );
    }

    #[test]
    fn repeat_reminder_is_a_new_message_with_a_new_webhook_id() {
        let mut i = failover("m");
        i.state = State::Firing;
        let first = webhook_id(&i);
        i.sent = Some((State::Firing, i.opened + Duration::from_secs(30)));
        let second = webhook_id(&i);
        i.sent = Some((State::Firing, i.opened + Duration::from_secs(4 * 3600 + 30)));
        let third = webhook_id(&i);
        assert_eq!(first, format!("{}-firing", i.key));
        assert!(first != second && second != third && first != third);
        // The resolve after reminders is the plain resolved id.
        i.state = State::Resolved;
        assert_eq!(webhook_id(&i), format!("{}-resolved", i.key));
    }

    #[test]
    fn pagerduty_trigger_of_an_incident_already_over_carries_the_final_summary() {
        let cfg = sink(SinkKind::Pagerduty);
        let done = failover("mymaster");
        let mut firing = done.clone();
        firing.state = State::Firing;
        let trigger = render(&cfg, &firing, "r", SystemTime::now()).body;
        let resolve = render(&cfg, &done, "r", SystemTime::now()).body;
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(resolve["event_action"], "resolve");
        let s = trigger["payload"]["summary"].as_str().unwrap();
        assert!(
            s.contains("failed over 10.0.1.11:6379 → 10.0.1.12:6379"),
            "{s}"
        );
        assert!(!s.contains("has not finished"), "{s}");
        assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    }

    #[test]
    fn pagerduty_test_alert_is_a_trigger_then_its_resolve() {
        let cfg = sink(SinkKind::Pagerduty);
        let mut i = failover("TEST");
        i.state = State::Firing;
        i.resolved_at = None;
        let req = render_test_alert(&cfg, &i, SystemTime::now());
        assert_eq!(req.body["event_action"], "trigger");
        let then = req.then.as_ref().expect("a resolve follows");
        assert_eq!(then.body["event_action"], "resolve");
        assert_eq!(then.body["dedup_key"], req.body["dedup_key"]);
        assert!(then.then.is_none());
        // Other sinks: one message.
        assert!(
            render_test_alert(&sink(SinkKind::Slack), &i, SystemTime::now())
                .then
                .is_none()
        );
    }

    /// A master name with markup, mentions and non-ASCII, `n` characters long.
    fn hostile_master(n: usize) -> String {
        let base = "a*b_<c>&d@everyone`é";
        let mut s: String = base.chars().take(n).collect();
        while s.chars().count() < n {
            s.push('ñ');
        }
        s
    }

    /// For each limit: the field at 1 below, at, and 1 above it. `field` picks
    /// the field from a rendered body; `limit` is in characters.
    fn check_limit(kind: SinkKind, limit: usize, field: impl Fn(&Value) -> String) {
        let cfg = sink(kind);
        let len_for = |n: usize| {
            let body = render(&cfg, &failover(&hostile_master(n)), "r", SystemTime::now()).body;
            field(&body).chars().count()
        };
        // Escaping is 1:1 for 'ñ', so the field grows by one per extra char.
        let overhead = len_for(100) - 100;
        for target in [limit - 1, limit, limit + 1] {
            let master = hostile_master(target - overhead);
            let body = render(&cfg, &failover(&master), "r", SystemTime::now()).body;
            let text = field(&body);
            let n = text.chars().count();
            if target <= limit {
                assert_eq!(n, target, "{kind:?} {target}: not cut");
                assert!(
                    !text.contains(ELLIPSIS),
                    "{kind:?} {target}: cut below the limit"
                );
            } else {
                assert_eq!(n, limit, "{kind:?} {target}: cut to the limit");
                assert!(text.contains(ELLIPSIS), "{kind:?}: visible ellipsis");
            }
            // What an operator needs survives: name (start and end), addresses, outcome.
            assert!(
                text.contains("a*b_") || text.contains("a\\*b\\_"),
                "{kind:?}: {text}"
            );
            assert!(text.ends_with("ñ") || text.contains("ññ"), "{kind:?}");
            assert!(
                text.contains("10.0.1.11:6379 → 10.0.1.12:6379"),
                "{kind:?}: {text}"
            );
            assert!(
                text.contains("VIP route updated in 2 tables"),
                "{kind:?}: {text}"
            );
        }
    }

    #[test]
    fn pagerduty_summary_is_cut_at_1024_characters_keeping_name_addresses_and_outcome() {
        check_limit(SinkKind::Pagerduty, limits::PAGERDUTY_SUMMARY, |b| {
            b["payload"]["summary"].as_str().unwrap().to_owned()
        });
        // The reported case: a 975-character master name.
        let cfg = sink(SinkKind::Pagerduty);
        let b = render(&cfg, &failover(&"m".repeat(975)), "r", SystemTime::now()).body;
        assert!(b["payload"]["summary"].as_str().unwrap().chars().count() <= 1024);
    }

    #[test]
    fn slack_texts_are_cut_at_3000_characters_and_escaped() {
        check_limit(SinkKind::Slack, limits::SLACK_TEXT, |b| {
            b["blocks"][0]["text"]["text"].as_str().unwrap().to_owned()
        });
        check_limit(SinkKind::Slack, limits::SLACK_TEXT, |b| {
            b["text"].as_str().unwrap().to_owned()
        });
        let b = render(
            &sink(SinkKind::Slack),
            &failover("a*b <!channel> & c"),
            "r",
            SystemTime::now(),
        )
        .body;
        let section = b["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.starts_with(":white_check_mark: *RedisMasterFailover* (resolved)\n"),
            "{section}"
        );
        assert!(
            section.contains("a*b &lt;!channel&gt; &amp; c failed over"),
            "{section}"
        );
        for t in [section, b["text"].as_str().unwrap()] {
            assert!(!t.contains('<') && !t.contains('>'), "{t}");
        }
    }

    #[test]
    fn discord_content_is_cut_at_2000_characters_and_can_never_mention() {
        check_limit(SinkKind::Discord, limits::DISCORD_CONTENT, |b| {
            b["content"].as_str().unwrap().to_owned()
        });
        let b = render(
            &sink(SinkKind::Discord),
            &failover("@everyone **x**"),
            "r",
            SystemTime::now(),
        )
        .body;
        assert_eq!(b["allowed_mentions"], json!({"parse": []}));
        assert!(b["content"]
            .as_str()
            .unwrap()
            .starts_with("@everyone \\*\\*x\\*\\*"));
    }

    #[test]
    fn discord_embed_description_is_cut_at_4096_characters() {
        let cfg = sink(SinkKind::Discord);
        for (n, cut_expected) in [(4095, false), (4096, false), (4097, true)] {
            let mut i = failover("m");
            i.annotations = vec![];
            let fixed = i.description().chars().count() + "progress: ; ".len();
            i.annotations = vec!["ß".repeat(n - fixed)];
            assert_eq!(i.description().chars().count(), n);
            let b = render(&cfg, &i, "r", SystemTime::now()).body;
            let d = b["embeds"][0]["description"].as_str().unwrap();
            assert_eq!(d.chars().count(), n.min(4096), "{n}");
            assert_eq!(d.ends_with(ELLIPSIS), cut_expected, "{n}");
            assert!(b["embeds"][0]["title"].as_str().unwrap().chars().count() <= 256);
        }
    }

    #[test]
    fn teams_body_stays_within_28_kb() {
        let cfg = sink(SinkKind::Teams);
        for n in [100, 13_000, 27_000, 40_000] {
            let mut i = failover(&hostile_master(n));
            i.annotations = vec!["注意".repeat(n / 2)];
            let b = render(&cfg, &i, "r", SystemTime::now()).body;
            let size = serde_json::to_string(&b).unwrap().len();
            assert!(size <= limits::TEAMS_BODY_BYTES, "{n}: {size} bytes");
            let head = b["attachments"][0]["content"]["body"][0]["text"]
                .as_str()
                .unwrap();
            assert!(head.contains("10.0.1.11:6379 → 10.0.1.12:6379"), "{n}");
        }
    }

    #[test]
    fn errors_never_show_secrets() {
        let cfg = sink(SinkKind::Slack);
        let text = "HTTP 404: no_service for https://hooks.example/services/T000/B000/XXXXSECRETTOKEN \
                    key pd-routing-key-SECRET whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw XXXXSECRETTOKEN";
        let r = redact(&cfg, text);
        for s in [
            "SECRET",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "hooks.example",
        ] {
            assert!(!r.contains(s), "{r}");
        }
        assert!(r.starts_with("HTTP 404: no_service"), "{r}");
        assert_eq!(quote_body(&"é".repeat(300)).chars().count(), 101);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("soon", now), None);
    }

    #[tokio::test]
    async fn redirects_are_followed_only_to_where_a_webhook_url_may_point() {
        use axum::http::{header, StatusCode};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route(
                "/to-clear",
                axum::routing::post(|| async {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, "http://192.0.2.1/hook")],
                    )
                }),
            )
            .route(
                "/to-loopback",
                axum::routing::post(move || async move {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, format!("http://127.0.0.1:{port}/ok"))],
                    )
                }),
            )
            .route("/ok", axum::routing::post(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = http_client().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let r = http
            .post(format!("{base}/to-loopback"))
            .body("x")
            .send()
            .await;
        assert_eq!(
            r.unwrap().status(),
            200,
            "a redirect to loopback is followed"
        );
        let e = http
            .post(format!("{base}/to-clear"))
            .body("x")
            .send()
            .await
            .expect_err("a redirect to plain http off this host is refused");
        assert!(e.is_redirect(), "{e}");
    }
}
