//! sinks: every message is accepted by the service it is sent to, checked by
//! that service's own rules: the official `standardwebhooks` library (also
//! after 6 minutes of retries, on an injected clock), the Adaptive Card JSON
//! schema, Alertmanager's webhook structs, PagerDuty's trigger/resolve
//! lifecycle, and `promtool check metrics` on a scrape of the daemon.
//!
//! Validators are run from the test venv (`scripts/setup.sh`); a missing one
//! is a failure naming the setup command, never a skip.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sentinel_vip::act::sinks::{self, Clock, Delivery, Sink};
use sentinel_vip::config::{Secret, SinkKind, WebhookConfig};
use sentinel_vip::decide::fold::RouteReport;
use sentinel_vip::decide::fold::{incident_key, Incident, Kind, Severity, State};
use serde_json::{json, Value};

use common::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The deployment the test incidents belong to, and the watcher sending them.
const CLUSTER: &str = "prod-cache";
const HOST: &str = "watcher-a";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a validator script from `tests/fixtures/validators` with the venv's
/// python, `input` on stdin; returns (passed, output).
fn python(script: &str, args: &[&str], input: &Value) -> (bool, String) {
    use std::io::Write;
    let py = root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/setup.sh (installs standardwebhooks and jsonschema)",
        py.display()
    );
    let mut child = Command::new(&py)
        .arg(root().join("tests/fixtures/validators").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "{text}\nrun scripts/setup.sh (pip installs standardwebhooks and jsonschema into .venv)"
    );
    (out.status.success(), text)
}

fn webhook(kind: SinkKind, url: &str) -> WebhookConfig {
    WebhookConfig {
        name: format!("{kind:?}").to_lowercase(),
        kind,
        url: Secret::new(url),
        secret: (kind == SinkKind::Generic).then(|| Secret::new(SECRET)),
        routing_key: (kind == SinkKind::Pagerduty).then(|| Secret::new("pd-routing-key-SECRET")),
    }
}

fn failover(master: &str, resolved: bool) -> Incident {
    let t0 = SystemTime::now() - Duration::from_secs(20);
    let mut i = Incident::new(
        incident_key(CLUSTER, master, 3, None),
        master,
        Kind::Failover,
        Severity::Critical,
        Instant::now(),
        t0,
        Some("10.0.1.11:6379".into()),
    )
    .in_cluster(CLUSTER);
    i.down = true;
    i.events = 9;
    i.annotations = vec!["+try-failover".into(), "+elected-leader".into()];
    if resolved {
        i.state = State::Resolved;
        i.to = Some("10.0.1.12:6379".into());
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
            carriers: Vec::new(),
        });
    }
    i
}

/// A spread of incidents, hostile names included.
fn incidents() -> Vec<Incident> {
    let long = format!("<b>*bold*</b> & @everyone {}", "名前ñ".repeat(12_000));
    let mut v = vec![
        failover("mymaster", false),
        failover("mymaster", true),
        failover("a*b_<c>&\"q\"", true),
        failover(&long, true),
    ];
    let mut down = failover("cache", false);
    down.kind = Kind::InstanceDown {
        role: "replica",
        instance: "10.0.1.13:6379".into(),
    };
    down.severity = Severity::Warning;
    v.push(down);
    v
}

/// Time that moves only when the code under test sleeps.
struct VirtualClock {
    base: SystemTime,
    offset: Mutex<Duration>,
}

impl Clock for VirtualClock {
    fn now(&self) -> SystemTime {
        self.base + *self.offset.lock().unwrap()
    }
    fn monotonic(&self) -> Duration {
        *self.offset.lock().unwrap()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        *self.offset.lock().unwrap() += d;
        Box::pin(tokio::task::yield_now())
    }
}

#[derive(Debug, Clone)]
struct Got {
    at: SystemTime,
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A receiver on the virtual clock: answers 503 until `down_for` has passed.
async fn receiver_on(
    clock: Arc<VirtualClock>,
    down_for: Duration,
) -> (String, Arc<Mutex<Vec<Got>>>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let (g, clock) = (g.clone(), clock.clone());
        async move {
            let status = if clock.monotonic() < down_for {
                503
            } else {
                200
            };
            g.lock().unwrap().push(Got {
                at: clock.now(),
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            (StatusCode::from_u16(status).unwrap(), "")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/generic", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

fn standardwebhooks_verify(deliveries: &[Got]) -> (bool, String) {
    let input: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "received_at": d.at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64(),
                "headers": d.headers,
                "body": d.body,
            })
        })
        .collect();
    python("standardwebhooks_verify.py", &[SECRET], &json!(input))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_verifies_with_standardwebhooks_even_after_six_minutes_of_503() {
    let clock = Arc::new(VirtualClock {
        base: SystemTime::now(),
        offset: Mutex::new(Duration::ZERO),
    });
    let (url, got) = receiver_on(clock.clone(), Duration::from_secs(6 * 60)).await;
    let cfg = webhook(SinkKind::Generic, &url);
    let sink = Sink::start_with_clock(cfg.clone(), sinks::http_client().unwrap(), clock.clone());
    // Five messages queued at once while the receiver is down; the second is
    // a repeat reminder of the first.
    let first = failover("mymaster", false);
    let mut reminder = first.clone();
    reminder.sent = Some((State::Firing, reminder.opened + Duration::from_secs(30)));
    let mut queued = vec![first, reminder];
    queued.extend(["b", "c"].map(|m| failover(m, false)));
    queued.push(failover("d", true));
    for i in &queued {
        sink.enqueue(sinks::render(&cfg, i, "sentinel-vip", HOST, clock.now()))
            .await;
    }
    let last_id = sinks::webhook_id(&queued[4]);
    eventually(
        "the last queued message is accepted",
        Duration::from_secs(60),
        || {
            let got = got.clone();
            let last_id = last_id.clone();
            async move {
                got.lock()
                    .unwrap()
                    .iter()
                    .any(|g| g.status == 200 && g.headers.get("webhook-id") == Some(&last_id))
                    .then_some(())
            }
        },
    )
    .await;
    let all = got.lock().unwrap().clone();
    let accepted: Vec<&Got> = all.iter().filter(|g| g.status == 200).collect();
    // The scenario of the report: accepted more than 5 minutes after queueing.
    let late = accepted
        .iter()
        .map(|g| g.at.duration_since(clock.base).unwrap())
        .max()
        .unwrap();
    assert!(late > Duration::from_secs(300), "{late:?}");
    // One id per message, the same on each of its retries; the reminder has its own.
    let ids: BTreeSet<&str> = all
        .iter()
        .map(|g| g.headers["webhook-id"].as_str())
        .collect();
    let expected: BTreeSet<String> = queued.iter().map(sinks::webhook_id).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert_eq!(ids, expected.iter().map(String::as_str).collect());
    assert!(all.len() > 10, "retried: {} attempts", all.len());
    for g in &all {
        assert_eq!(g.headers["user-agent"], sinks::USER_AGENT);
    }
    let (ok, out) = standardwebhooks_verify(&all);
    assert!(ok, "standardwebhooks rejected deliveries:\n{out}");
    eprintln!("standardwebhooks: {out}");
}

#[tokio::test]
async fn signing_at_queue_time_would_be_rejected_by_standardwebhooks() {
    // The validator itself: a message signed at queue time and arriving
    // 325 s later is "too old" (proves the check above can fail).
    let clock = Arc::new(VirtualClock {
        base: SystemTime::now(),
        offset: Mutex::new(Duration::ZERO),
    });
    let cfg = webhook(SinkKind::Generic, "http://127.0.0.1:9/");
    let req = sinks::render(&cfg, &failover("m", true), "r", HOST, clock.now());
    let sinks::Signed { body, headers } = sinks::signed(&cfg, &req, clock.now()).unwrap();
    let got = Got {
        at: clock.now() + Duration::from_secs(325),
        status: 200,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        body,
    };
    let (ok, out) = standardwebhooks_verify(std::slice::from_ref(&got));
    assert!(!ok && out.contains("too old"), "{out}");
    let fresh = Got {
        at: clock.now() + Duration::from_secs(5),
        ..got
    };
    assert!(standardwebhooks_verify(&[fresh]).0);
}

fn jsonschema_check(schema: &str, docs: Vec<Value>) -> (bool, String) {
    let path = root().join("tests/fixtures").join(schema);
    python(
        "jsonschema_check.py",
        &[path.to_str().unwrap()],
        &Value::Array(docs),
    )
}

#[test]
fn teams_cards_validate_against_the_adaptive_card_1_4_schema() {
    let cfg = webhook(SinkKind::Teams, "https://example.invalid/teams");
    let mut cards = Vec::new();
    for i in incidents() {
        let body = sinks::render(&cfg, &i, "r", HOST, SystemTime::now()).body;
        assert!(serde_json::to_string(&body).unwrap().len() <= 28_000);
        assert_eq!(
            body["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        cards.push(body["attachments"][0]["content"].clone());
    }
    let (ok, out) = jsonschema_check("adaptive-card/adaptive-card-1.4.schema.json", cards.clone());
    assert!(ok, "Adaptive Card schema 1.4:\n{out}");
    eprintln!("adaptive card 1.4: {out}");
    // The validator rejects what Teams would: a misspelt element type.
    let mut bad = cards[0].clone();
    bad["body"][0]["type"] = json!("Textblock");
    assert!(!jsonschema_check("adaptive-card/adaptive-card-1.4.schema.json", vec![bad]).0);
}

#[test]
fn generic_body_has_alertmanager_v4_field_names_and_types() {
    let cfg = webhook(SinkKind::Generic, "https://example.invalid/generic");
    let bodies: Vec<Value> = incidents()
        .iter()
        .map(|i| sinks::render(&cfg, i, "sentinel-vip", HOST, SystemTime::now()).body)
        .collect();
    let (ok, out) = jsonschema_check("alertmanager-webhook-v4.schema.json", bodies.clone());
    assert!(ok, "alertmanager notify/webhook Message:\n{out}");
    eprintln!("alertmanager v4: {out}");
    let mut bad = bodies[0].clone();
    bad["alerts"][0]["labels"]["n"] = json!(1);
    assert!(!jsonschema_check("alertmanager-webhook-v4.schema.json", vec![bad]).0);
}

#[test]
fn every_message_names_the_deployment_and_the_watcher_that_sent_it() {
    let i = failover("mymaster", true);
    let kinds = [
        SinkKind::Generic,
        SinkKind::Slack,
        SinkKind::Discord,
        SinkKind::Teams,
        SinkKind::Pagerduty,
    ];
    for kind in kinds {
        let cfg = webhook(kind, "https://example.invalid/x");
        let body = sinks::render(&cfg, &i, "sentinel-vip", HOST, SystemTime::now()).body;
        let text = body.to_string();
        assert!(text.contains(CLUSTER), "{kind:?}: {text}");
        assert!(
            text.contains(&format!("sent by sentinel-vip on {HOST}"))
                || text.contains(&format!("\"{HOST}\"")),
            "{kind:?} names the sender: {text}"
        );
    }
    // Chat headlines lead with the deployment.
    let slack = sinks::render(
        &webhook(SinkKind::Slack, "https://example.invalid/x"),
        &i,
        "r",
        HOST,
        SystemTime::now(),
    )
    .body;
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("[prod-cache] mymaster failed over 10.0.1.11:6379 → 10.0.1.12:6379"),
        "{slack}"
    );
    // PagerDuty: the deployment in source, component's group and the summary;
    // the sender in custom_details (source is the same from every watcher).
    let pd = sinks::render(
        &webhook(SinkKind::Pagerduty, "https://example.invalid/x"),
        &i,
        "r",
        HOST,
        SystemTime::now(),
    )
    .body;
    let p = &pd["payload"];
    assert_eq!(p["source"], "sentinel-vip/prod-cache/mymaster");
    assert_eq!(p["component"], "mymaster");
    assert_eq!(p["group"], CLUSTER);
    assert_eq!(p["custom_details"]["sent_by"], HOST);
    assert!(p["summary"].as_str().unwrap().starts_with("[prod-cache] "));
    assert_eq!(pd["dedup_key"], incident_key(CLUSTER, "mymaster", 3, None));
    // Generic: a label (the alert's identity, the same from every watcher) and
    // the sender as an annotation; the webhook-id is the deployment's key.
    let cfg = webhook(SinkKind::Generic, "https://example.invalid/x");
    let req = sinks::render(&cfg, &i, "r", HOST, SystemTime::now());
    let g = &req.body;
    assert_eq!(g["alerts"][0]["labels"]["cluster"], CLUSTER);
    assert_eq!(g["groupLabels"]["cluster"], CLUSTER);
    assert_eq!(g["alerts"][0]["annotations"]["sent_by"], HOST);
    assert_eq!(g["sentinelVip"]["sentBy"], HOST);
    assert_eq!(
        req.webhook_id.as_deref(),
        Some(format!("{}-resolved", incident_key(CLUSTER, "mymaster", 3, None)).as_str())
    );
    // Another watcher of the same deployment: the same identity, another sender.
    let other = sinks::render(&cfg, &i, "r", "watcher-b", SystemTime::now());
    assert_eq!(other.webhook_id, req.webhook_id);
    assert_eq!(other.body["alerts"][0]["labels"], g["alerts"][0]["labels"]);
    assert_eq!(
        other.body["alerts"][0]["fingerprint"],
        g["alerts"][0]["fingerprint"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_test_alert_triggers_then_resolves_with_the_daemons_user_agent() {
    let hooks = Receiver::start().await;
    let pd = webhook(SinkKind::Pagerduty, &format!("{}/pd", hooks.url));
    let slack = webhook(SinkKind::Slack, &format!("{}/slack", hooks.url));
    let mut test = failover("TEST", false);
    test.down = false;
    let http = sinks::http_client().unwrap();
    let r = sinks::send_test_alert(&pd, &http, &test, HOST, Duration::from_secs(5)).await;
    assert_eq!(
        r,
        Delivery::Sent {
            status: 202,
            attempts: 2
        }
    );
    let got = hooks.delivered("/pd");
    let actions: Vec<&str> = got
        .iter()
        .map(|h| h.body["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "resolve"]);
    assert_eq!(got[0].body["dedup_key"], got[1].body["dedup_key"]);
    let r = sinks::send_test_alert(&slack, &http, &test, HOST, Duration::from_secs(5)).await;
    assert!(matches!(r, Delivery::Sent { .. }), "{r:?}");
    for h in hooks.all("/pd").iter().chain(hooks.all("/slack").iter()) {
        let ua = h
            .headers
            .iter()
            .find(|(k, _)| k == "user-agent")
            .map(|(_, v)| v.as_str());
        assert_eq!(ua, Some(sinks::USER_AGENT));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_errors_say_why_once_without_secrets() {
    let http = sinks::http_client().unwrap();
    let msg = failover("m", true);
    // Nothing listens: refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = webhook(
        SinkKind::Slack,
        &format!("http://127.0.0.1:{closed}/services/T000/B000/XXXXSECRETTOKEN"),
    );
    let req = sinks::render(&cfg, &msg, "r", HOST, SystemTime::now());
    let Delivery::Failed { why, attempts } =
        sinks::deliver(&cfg, &http, &req, Duration::from_millis(100)).await
    else {
        panic!("delivered to a closed port")
    };
    assert_eq!(why, "connection refused");
    assert_eq!(attempts, 1);
    // A 4xx: the status and the start of the body, redacted, said once.
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .route(
            "/bad/{token}",
            axum::routing::post(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid_payload for token XXXXSECRETTOKEN key pd-routing-key-SECRET {}",
                        "é".repeat(300)
                    ),
                )
            }),
        )
        .route(
            "/hang",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                ""
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut cfg = webhook(SinkKind::Pagerduty, &format!("{base}/bad/XXXXSECRETTOKEN"));
    cfg.secret = None;
    let req = sinks::render(&cfg, &msg, "r", HOST, SystemTime::now());
    let Delivery::Failed { why, attempts } =
        sinks::deliver(&cfg, &http, &req, Duration::from_secs(5)).await
    else {
        panic!("a 400 was taken as delivered")
    };
    assert_eq!(attempts, 1, "4xx is final");
    assert!(
        why.starts_with("HTTP 400: invalid_payload for token ***"),
        "{why}"
    );
    assert!(!why.contains("SECRET"), "{why}");
    assert!(why.len() <= "HTTP 400: ".len() + 200 + "…".len(), "{why}");
    assert!(!why.contains("attempt"), "{why}");
    // A receiver that never answers: timed out.
    let cfg = webhook(SinkKind::Discord, &format!("{base}/hang"));
    let req = sinks::render(&cfg, &msg, "r", HOST, SystemTime::now());
    let Delivery::Failed { why, .. } =
        sinks::deliver(&cfg, &http, &req, Duration::from_millis(100)).await
    else {
        panic!("a hanging receiver was taken as delivered")
    };
    assert_eq!(why, "timed out after 10 s");
}

async fn scrape(url: &str, accept: Option<&str>) -> (String, String) {
    let mut req = http_client().get(url);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (ct, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_passes_promtool_and_speaks_both_formats() {
    let promtool = which("promtool")
        .expect("promtool missing: run scripts/setup.sh (apt installs prometheus)");
    let rig = Rig::start(1).await;
    let port = free_port();
    let daemon = rig.start_daemon("30s", &format!("http:\n  listen: 127.0.0.1:{port}\n"));
    rig.vpc
        .wait_all_point_at(&rig.vpc.enis[0], Duration::from_secs(45))
        .await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    eventually("counters in /metrics", Duration::from_secs(45), || async {
        let (_, m) = scrape(&url, None).await;
        m.contains("sentinel_vip_events_total{").then_some(())
    })
    .await;
    const PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (ct, om) = scrape(&url, Some(PROMETHEUS)).await;
    assert!(
        ct.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ct}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let (ct, text) = scrape(&url, accept).await;
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
        assert!(!text.contains("# EOF"));
        assert!(
            text.contains("# TYPE sentinel_vip_events_total counter"),
            "{text}"
        );
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || !report.trim().is_empty() {
            rig.dump(&daemon);
        }
        assert!(
            out.status.success(),
            "promtool check metrics:\n{report}\n{text}"
        );
        assert!(
            report.trim().is_empty(),
            "promtool check metrics:\n{report}"
        );
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}
