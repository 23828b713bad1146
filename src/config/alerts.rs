//! `alerts`: fold timing and the webhook sinks (kind, URL, secret, routing key).

use std::time::Duration;

use serde::Deserialize;

use super::secret::{secret_from_env, Secret};
use super::{duration, keyed, Addr};

/// Alert folding and the webhook sinks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// How long a new incident is held so that a quick failover sends one message.
    #[serde(default = "default_group_wait", with = "duration")]
    pub group_wait: Duration,
    /// How often a still-open incident is repeated.
    #[serde(default = "default_repeat_interval", with = "duration")]
    pub repeat_interval: Duration,
    /// After a group's first notice, how long further changes to it wait, told
    /// as one message (flap damping; Alertmanager's `group_interval`).
    #[serde(default = "default_group_interval", with = "duration")]
    pub group_interval: Duration,
    /// The sentinel this watcher runs beside (several watchers: one speaks).
    #[serde(default)]
    pub local_sentinel: Option<Addr>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            group_wait: default_group_wait(),
            repeat_interval: default_repeat_interval(),
            group_interval: default_group_interval(),
            local_sentinel: None,
            webhooks: Vec::new(),
        }
    }
}

fn default_group_wait() -> Duration {
    Duration::from_secs(10)
}

fn default_group_interval() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Generic,
    Slack,
    Discord,
    Teams,
    Pagerduty,
}

impl SinkKind {
    /// Chat sinks have no idempotency key: only the designated watcher posts.
    pub fn is_chat(self) -> bool {
        matches!(self, SinkKind::Slack | SinkKind::Discord | SinkKind::Teams)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    kind: SinkKind,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    routing_key_env: Option<String>,
    /// Allows `http://` to a host that is not loopback (bodies and URL tokens in clear).
    #[serde(default)]
    insecure_http: bool,
}

/// One webhook sink; the URL is a secret (Slack/Discord/Teams URLs carry tokens).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWebhook")]
pub struct WebhookConfig {
    pub name: String,
    pub kind: SinkKind,
    pub url: Secret,
    pub secret: Option<Secret>,
    pub routing_key: Option<Secret>,
}

/// A webhook URL must be `https://`, or `http://` to a loopback host (a local
/// relay or sidecar: `127.0.0.0/8`, `::1`, `localhost`), or `http://` anywhere
/// with `insecure_http: true`: chat URLs carry their token in the path and the
/// bodies name hosts, so neither may cross the network in clear by accident.
/// The error never repeats the URL (it may hold a token).
pub fn check_webhook_url(url: &str, insecure_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("url is not a valid URL ({e}); it must start with https://"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if insecure_http => Ok(()),
        "http" => {
            // host_str keeps IPv6 literals in brackets; an IP address is already
            // normalised by the URL parser (`http://0x7f.1/` is 127.0.0.1).
            let host = parsed.host_str().unwrap_or("");
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = match bare.parse::<std::net::IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
            };
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "url is http:// to {}, which is not a loopback address: the token and alert bodies would cross the network in clear; use https://, or set `insecure_http: true` on this webhook if that is really meant",
                    parsed.host_str().unwrap_or("?")
                ))
            }
        }
        other => Err(format!(
            "url must start with http:// or https:// (not {other}://)"
        )),
    }
}

impl TryFrom<RawWebhook> for WebhookConfig {
    type Error = String;
    fn try_from(raw: RawWebhook) -> Result<Self, String> {
        let url_key = if raw.url_env.is_some() {
            "url_env"
        } else {
            "url"
        };
        let url = match (raw.url, raw.url_env) {
            (Some(u), None) => Secret::new(u),
            (None, Some(var)) => secret_from_env(&var).map_err(|e| keyed("url_env", e))?,
            (None, None) if raw.kind == SinkKind::Pagerduty => {
                Secret::new("https://events.pagerduty.com/v2/enqueue")
            }
            (None, None) => {
                return Err(keyed(
                    "url",
                    format!("webhook {}: set url or url_env", raw.name),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(keyed(
                    "url",
                    format!("webhook {}: set url or url_env, not both", raw.name),
                ))
            }
        };
        // url_env values are checked here too: the environment is read at load.
        check_webhook_url(url.expose(), raw.insecure_http)
            .map_err(|e| keyed(url_key, format!("webhook {}: {e}", raw.name)))?;
        let secret = raw
            .secret_env
            .as_deref()
            .map(secret_from_env)
            .transpose()
            .map_err(|e| keyed("secret_env", e))?;
        let routing_key = raw
            .routing_key_env
            .as_deref()
            .map(secret_from_env)
            .transpose()
            .map_err(|e| keyed("routing_key_env", e))?;
        if raw.kind == SinkKind::Pagerduty && routing_key.is_none() {
            return Err(keyed(
                "routing_key_env",
                format!("webhook {}: kind pagerduty needs routing_key_env", raw.name),
            ));
        }
        Ok(WebhookConfig {
            name: raw.name,
            kind: raw.kind,
            url,
            secret,
            routing_key,
        })
    }
}
