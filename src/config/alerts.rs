//! `alerts`: fold timing and the webhook sinks (kind, URL, secret, routing key).

use std::time::Duration;

use serde::Deserialize;

use std::fmt;

use super::secret::{Secret, SecretSource};
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
    /// The sentinel this watcher runs beside (several watchers: one speaks).
    #[serde(default)]
    pub local_sentinel: Option<Addr>,
    #[serde(default)]
    pub webhooks: Vec<WebhookSpec>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            group_wait: default_group_wait(),
            repeat_interval: default_repeat_interval(),
            local_sentinel: None,
            webhooks: Vec::new(),
        }
    }
}

fn default_group_wait() -> Duration {
    Duration::from_secs(10)
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
    /// The name as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Generic => "generic",
            SinkKind::Slack => "slack",
            SinkKind::Discord => "discord",
            SinkKind::Teams => "teams",
            SinkKind::Pagerduty => "pagerduty",
        }
    }

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

/// One webhook sink, ready to send: its secrets read (see [`WebhookSpec::resolve`]).
/// The URL is a secret (Slack/Discord/Teams URLs carry tokens).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub kind: SinkKind,
    pub url: Secret,
    pub secret: Option<Secret>,
    pub routing_key: Option<Secret>,
}

/// One webhook sink as the config writes it: its shape is checked at load
/// (url or url_env, a literal URL's scheme, pagerduty's routing key), its
/// secrets are not read until something is sent ([`WebhookSpec::resolve`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWebhook")]
pub struct WebhookSpec {
    pub name: String,
    pub kind: SinkKind,
    /// `url` (a value) or `url_env` (a variable); PagerDuty's Events API when neither.
    pub url: SecretSource,
    /// `secret_env`: the Standard Webhooks signing secret.
    pub secret: Option<SecretSource>,
    /// `routing_key_env`: PagerDuty's integration key.
    pub routing_key: Option<SecretSource>,
    pub insecure_http: bool,
}

/// A webhook secret that cannot be read: the key it is named by and why
/// (naming the variable, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// The full key path, e.g. `alerts.webhooks[0].secret_env`.
    pub key: String,
    /// The sink's `name`.
    pub sink: String,
    pub why: String,
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: webhook {}: {}", self.key, self.sink, self.why)
    }
}

impl WebhookSpec {
    fn url_key(&self) -> &'static str {
        match self.url {
            SecretSource::Env(_) => "url_env",
            _ => "url",
        }
    }

    /// Reads the sink's secrets (`url_env`, `secret_env`, `routing_key_env`)
    /// and checks a `url_env` value's scheme. `index` is the sink's place in
    /// `alerts.webhooks`, for the key path of a problem.
    pub fn resolve(&self, index: usize) -> Result<WebhookConfig, SecretProblem> {
        let problem = |key: &str, why: String| SecretProblem {
            key: format!("alerts.webhooks[{index}].{key}"),
            sink: self.name.clone(),
            why,
        };
        let url = self.url.resolve().map_err(|e| problem(self.url_key(), e))?;
        check_webhook_url(url.expose(), self.insecure_http)
            .map_err(|e| problem(self.url_key(), e))?;
        let secret = self
            .secret
            .as_ref()
            .map(SecretSource::resolve)
            .transpose()
            .map_err(|e| problem("secret_env", e))?;
        let routing_key = self
            .routing_key
            .as_ref()
            .map(SecretSource::resolve)
            .transpose()
            .map_err(|e| problem("routing_key_env", e))?;
        Ok(WebhookConfig {
            name: self.name.clone(),
            kind: self.kind,
            url,
            secret,
            routing_key,
        })
    }
}

impl AlertsConfig {
    /// Every sink ready to send, or the first secret that cannot be read
    /// (`run` and `test-alert`: a sink that cannot send is a config error there).
    pub fn sinks(&self) -> Result<Vec<WebhookConfig>, SecretProblem> {
        self.webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| w.resolve(i))
            .collect()
    }

    /// Each sink's secrets, resolved or not (`check` reports every one).
    pub fn each_sink(&self) -> Vec<Result<WebhookConfig, SecretProblem>> {
        self.webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| w.resolve(i))
            .collect()
    }
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

impl TryFrom<RawWebhook> for WebhookSpec {
    type Error = String;
    fn try_from(raw: RawWebhook) -> Result<Self, String> {
        let env = |key: &str, var: Option<String>| match var {
            Some(v) if v.is_empty() => Err(keyed(
                key,
                format!("webhook {}: name an environment variable", raw.name),
            )),
            v => Ok(v.map(SecretSource::Env)),
        };
        let url_env = env("url_env", raw.url_env.clone())?;
        let url = match (raw.url, url_env) {
            (Some(u), None) => {
                // A URL written in the file is checked at load; a url_env
                // value where the sink is resolved.
                check_webhook_url(&u, raw.insecure_http)
                    .map_err(|e| keyed("url", format!("webhook {}: {e}", raw.name)))?;
                SecretSource::Value(Secret::new(u))
            }
            (None, Some(var)) => var,
            (None, None) if raw.kind == SinkKind::Pagerduty => {
                SecretSource::Value(Secret::new("https://events.pagerduty.com/v2/enqueue"))
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
        let secret = env("secret_env", raw.secret_env)?;
        let routing_key = env("routing_key_env", raw.routing_key_env)?;
        // A key that a kind would ignore is refused: it would look configured.
        if secret.is_some() && raw.kind != SinkKind::Generic {
            return Err(keyed(
                "secret_env",
                format!(
                    "webhook {}: secret_env signs kind generic only (Standard Webhooks `webhook-signature`); kind {} sends no signature: remove it",
                    raw.name,
                    raw.kind.as_str()
                ),
            ));
        }
        if routing_key.is_some() && raw.kind != SinkKind::Pagerduty {
            return Err(keyed(
                "routing_key_env",
                format!(
                    "webhook {}: routing_key_env is for kind pagerduty only; kind {} has no routing key: remove it",
                    raw.name,
                    raw.kind.as_str()
                ),
            ));
        }
        if raw.kind == SinkKind::Pagerduty && routing_key.is_none() {
            return Err(keyed(
                "routing_key_env",
                format!("webhook {}: kind pagerduty needs routing_key_env", raw.name),
            ));
        }
        Ok(WebhookSpec {
            name: raw.name,
            kind: raw.kind,
            url,
            secret,
            routing_key,
            insecure_http: raw.insecure_http,
        })
    }
}
