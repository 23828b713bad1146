//! Each service's message for an incident (Slack, Discord, Teams, PagerDuty,
//! generic Alertmanager-style JSON), cut to what the service accepts. Pure:
//! signing happens at send time (`sign.rs`), sending in `deliver.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::limits::{self, cut, cut_discord, cut_slack, discord_escape, fit, slack_escape};
use crate::config::{SinkKind, WebhookConfig};
use crate::decide::fold::{Incident, Kind, Severity, State};

/// The `receiver` name `test-alert` renders with.
pub const TEST_RECEIVER: &str = "sentinel-vip-test";

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
        Severity::Info => "info",
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

/// `t`'s headline, led by its deployment (`[prod-cache] mymaster failed over
/// …`), with the master name replaced by `master` (possibly elided).
fn headline(t: &Incident, master: &str) -> String {
    let summary = if master == t.master {
        t.summary()
    } else {
        let mut c = t.clone();
        c.master = master.to_owned();
        c.summary()
    };
    if t.cluster.is_empty() {
        summary
    } else {
        format!("[{}] {summary}", t.cluster)
    }
}

/// The line that names the watcher that sent a message.
fn sent_by(host: &str) -> String {
    format!("sent by sentinel-vip on {host}")
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
        // A group's later notices (a flap summary, a reopened group): ids
        // of their own, numbered by the notices before them.
        _ if i.notices >= 2 || i.flapped() && i.notices >= 1 => {
            format!("{}-{state}-n{}", i.key, i.notices)
        }
        _ => format!("{}-{state}", i.key),
    }
}

/// Renders `i` for `sink`, as sent by the watcher on `host` (every message
/// names it; the deployment, `i.cluster`, is in every headline, label and
/// PagerDuty `source`/`group`). Signing happens at send time (see
/// [`signed`](super::signed)); `_now` is unused, kept for the callers in
/// `daemon/alerts.rs` and [`render_test_alert`].
pub fn render(
    sink: &WebhookConfig,
    i: &Incident,
    receiver: &str,
    host: &str,
    _now: SystemTime,
) -> Request {
    let t = as_told(i);
    let description = t.description();
    let state = i.state.as_str();
    let resolved = t.state == State::Resolved;
    let mut webhook_id_ = None;
    let body = match sink.kind {
        SinkKind::Generic => {
            webhook_id_ = Some(webhook_id(i));
            generic(&t, i.state, receiver, host, &description)
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
                    {"type": "context", "elements": [
                        {"type": "mrkdwn",
                         "text": cut_slack(&slack_escape(&description), limits::SLACK_TEXT)},
                        {"type": "mrkdwn",
                         "text": cut_slack(&slack_escape(&sent_by(host)), limits::SLACK_TEXT)}
                    ]}
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
                "footer": {"text": cut(&sent_by(host), limits::DISCORD_EMBED_FOOTER)},
            }]
        }),
        SinkKind::Teams => teams(&t, description, host),
        SinkKind::Pagerduty => json!({
            "routing_key": sink.routing_key.as_ref().map(|k| k.expose()).unwrap_or_default(),
            "event_action": if i.state == State::Resolved { "resolve" } else { "trigger" },
            "dedup_key": i.key,
            "payload": {
                "summary": fit(&t.master, limits::PAGERDUTY_SUMMARY, |m| headline(&t, m), cut),
                // The affected system, the same from every watcher (PagerDuty
                // groups by it); the sender is in custom_details.
                "source": format!("sentinel-vip/{}/{}", t.cluster, t.master),
                "severity": severity(&t),
                "component": t.master,
                "group": t.cluster,
                "class": t.kind.alertname(),
                "custom_details": {"description": description, "from": t.from, "to": t.to,
                    "cluster": t.cluster, "sent_by": host},
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
fn generic(t: &Incident, state: State, receiver: &str, host: &str, description: &str) -> Value {
    let state = state.as_str();
    // Labels identify the alert: the same from every watcher (no host here).
    let mut labels = json!({
        "alertname": t.kind.alertname(),
        "cluster": t.cluster,
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
    let annotations = json!({"summary": t.summary(), "description": description,
        "sent_by": host});
    json!({
        "version": "4",
        "groupKey": t.key,
        "truncatedAlerts": 0,
        "status": state,
        "receiver": receiver,
        "groupLabels": {"alertname": t.kind.alertname(), "cluster": t.cluster, "master": t.master},
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
            "cluster": t.cluster, "sentBy": host,
            "from": t.from, "to": t.to,
            "failoverSeconds": t.failover_time.map(|d| d.as_secs_f64()),
            "route": t.route.as_ref().map(|r| json!({
                "ok": r.ok, "target": r.target, "tablesWritten": r.tables_written,
                "tablesTotal": r.tables_total, "latencyMs": r.latency_ms, "error": r.error,
                "carriers": r.carriers,
            })),
            "eventsFolded": t.events,
        }
    })
}

fn teams_card(headline: &str, description: &str, host: &str, resolved: bool) -> Value {
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
                    {"type": "TextBlock", "text": description, "wrap": true, "isSubtle": true},
                    {"type": "TextBlock", "text": sent_by(host), "wrap": true, "isSubtle": true,
                     "size": "Small"}
                ]
            }
        }]
    })
}

/// A Teams card within [`limits::TEAMS_BODY_BYTES`]: the headline within
/// [`limits::TEAMS_HEADLINE`] characters (master name elided first), then the
/// description cut to what is left of the body.
fn teams(t: &Incident, description: String, host: &str) -> Value {
    let resolved = t.state == State::Resolved;
    let head = fit(&t.master, limits::TEAMS_HEADLINE, |m| headline(t, m), cut);
    let mut desc = description;
    // JSON escaping makes the size only roughly predictable: converge.
    for _ in 0..16 {
        let card = teams_card(&head, &desc, host, resolved);
        let size = serde_json::to_string(&card).map(|s| s.len()).unwrap_or(0);
        if size <= limits::TEAMS_BODY_BYTES {
            return card;
        }
        let over = size - limits::TEAMS_BODY_BYTES;
        desc = limits::cut_bytes(&desc, desc.len().saturating_sub(over));
    }
    teams_card(&head, "", host, resolved)
}

/// `test-alert`'s message for `cfg`: for PagerDuty a trigger followed by its
/// resolve, so a test never leaves an open incident behind.
pub fn render_test_alert(
    cfg: &WebhookConfig,
    i: &Incident,
    host: &str,
    now: SystemTime,
) -> Request {
    let mut req = render(cfg, i, TEST_RECEIVER, host, now);
    if cfg.kind == SinkKind::Pagerduty {
        let mut done = i.clone();
        done.state = State::Resolved;
        done.resolved_at = Some(now);
        req.then = Some(Box::new(render(cfg, &done, TEST_RECEIVER, host, now)));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::sinks::fixtures::{failover, sink};
    use limits::ELLIPSIS;
    use std::time::Duration;

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
        let trigger = render(&cfg, &firing, "r", "w1", SystemTime::now()).body;
        let resolve = render(&cfg, &done, "r", "w1", SystemTime::now()).body;
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
        let req = render_test_alert(&cfg, &i, "w1", SystemTime::now());
        assert_eq!(req.body["event_action"], "trigger");
        let then = req.then.as_ref().expect("a resolve follows");
        assert_eq!(then.body["event_action"], "resolve");
        assert_eq!(then.body["dedup_key"], req.body["dedup_key"]);
        assert!(then.then.is_none());
        // Other sinks: one message.
        assert!(
            render_test_alert(&sink(SinkKind::Slack), &i, "w1", SystemTime::now())
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
            let body = render(
                &cfg,
                &failover(&hostile_master(n)),
                "r",
                "w1",
                SystemTime::now(),
            )
            .body;
            field(&body).chars().count()
        };
        // Escaping is 1:1 for 'ñ', so the field grows by one per extra char.
        let overhead = len_for(100) - 100;
        for target in [limit - 1, limit, limit + 1] {
            let master = hostile_master(target - overhead);
            let body = render(&cfg, &failover(&master), "r", "w1", SystemTime::now()).body;
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
        let b = render(
            &cfg,
            &failover(&"m".repeat(975)),
            "r",
            "w1",
            SystemTime::now(),
        )
        .body;
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
            "w1",
            SystemTime::now(),
        )
        .body;
        let section = b["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.starts_with(":white_check_mark: *RedisMasterFailover* (resolved)\n"),
            "{section}"
        );
        assert!(
            section.contains("[prod-cache] a*b &lt;!channel&gt; &amp; c failed over"),
            "{section}"
        );
        assert_eq!(
            b["blocks"][1]["elements"][1]["text"],
            "sent by sentinel-vip on w1"
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
            "w1",
            SystemTime::now(),
        )
        .body;
        assert_eq!(b["allowed_mentions"], json!({"parse": []}));
        assert!(b["content"]
            .as_str()
            .unwrap()
            .starts_with("\\[prod-cache\\] @everyone \\*\\*x\\*\\*"));
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
            let b = render(&cfg, &i, "r", "w1", SystemTime::now()).body;
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
            let b = render(&cfg, &i, "r", "w1", SystemTime::now()).body;
            let size = serde_json::to_string(&b).unwrap().len();
            assert!(size <= limits::TEAMS_BODY_BYTES, "{n}: {size} bytes");
            let head = b["attachments"][0]["content"]["body"][0]["text"]
                .as_str()
                .unwrap();
            assert!(head.contains("10.0.1.11:6379 → 10.0.1.12:6379"), "{n}");
        }
    }
}
