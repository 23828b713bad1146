//! Sending: the HTTP client (timeout, User-Agent, redirect policy) and the
//! delivery of one message with retries, backoff and `Retry-After`, under a
//! deadline; errors that say why without a secret.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::render::{render_test_alert, Request};
use super::sign::{signed, Signed};
use crate::config::WebhookConfig;
use crate::decide::fold::Incident;
use crate::ops::metrics::METRICS;

/// Per-request timeout of the daemon's (and `test-alert`'s) HTTP client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Sent on every request, by the daemon and by `test-alert` alike.
pub const USER_AGENT: &str = concat!("sentinel-vip/", env!("CARGO_PKG_VERSION"));
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

/// Sends `test-alert`'s message to `cfg` (trigger and resolve for PagerDuty).
pub async fn send_test_alert(
    cfg: &WebhookConfig,
    http: &reqwest::Client,
    i: &Incident,
    host: &str,
    within: Duration,
) -> Delivery {
    let req = render_test_alert(cfg, i, host, SystemTime::now());
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
    use crate::act::sinks::fixtures::sink;
    use crate::config::SinkKind;

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
