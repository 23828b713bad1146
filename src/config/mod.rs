//! Configuration: YAML parsed once into validated types.
//!
//! Every value is checked while it is deserialised (newtypes with `try_from`), so
//! an error carries the key path, the line and the reason, and the rest of the
//! code never re-checks strings. Secrets are *named* here ([`SecretSource`]: an
//! environment variable or a file) and read only where they are used
//! ([`Config::resolve_sentinel_password`], [`AlertsConfig::sinks`]), into
//! [`Secret`], whose `Debug`/`Display` never show the value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use crate::addr::Addr;
use serde::Deserialize;

mod alerts;
mod aws;
mod secret;
mod sentinels;

pub use alerts::{
    check_webhook_url, AlertsConfig, SecretProblem, SinkKind, WebhookConfig, WebhookSpec,
};
pub use aws::{
    static_target, AllocationId, AwsConfig, DnsRecord, EniId, HostedZoneId, InstanceId, NodeKey,
    RoleArn, RouteTableId, Target, WriteRate, WRITE_BURST_MARGIN, WRITE_RATE_MARGIN,
};
pub use secret::{secret_from_env, secret_from_file, Secret, SecretSource};
pub use sentinels::{SentinelAuth, SentinelTls};

/// Where the daemon looks for its config when neither `--config` nor
/// `SENTINEL_VIP_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sentinel-vip/config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The I/O error is part of the message, not a `source`: printed with its
    /// chain (`{:#}`) it would otherwise be said twice.
    #[error("cannot read config {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// serde_yaml_ng's message already names the key path, line and column.
    #[error("invalid config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole validated configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The deployment's name: part of every incident key and shown in every
    /// message. Unset: derived from the sentinel list (see [`Config::cluster`]).
    #[serde(default)]
    pub cluster: Option<ClusterName>,
    /// Every sentinel of the deployment; the majority is counted over this list.
    #[serde(deserialize_with = "non_empty_sentinels")]
    pub sentinels: Vec<Addr>,
    /// Credentials and TLS for every sentinel connection. When only
    /// `sentinel_tls` is configured this still holds it (with no credentials):
    /// it is what the connection code is handed.
    #[serde(default)]
    pub sentinel_auth: Option<SentinelAuth>,
    /// TLS to the sentinels; folded into `sentinel_auth.tls` by [`Config::parse`].
    #[serde(default)]
    pub sentinel_tls: Option<SentinelTls>,
    #[serde(default)]
    pub aws: AwsConfig,
    #[serde(deserialize_with = "non_empty_masters")]
    pub masters: BTreeMap<String, MasterConfig>,
    #[serde(default)]
    pub reconcile: ReconcileConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The sentinel beside this watcher (one sentinel-vip per sentinel host),
    /// exactly as listed in `sentinels`: the watchers then agree on one
    /// designated writer and one chat speaker (`decide::speaker`). Same meaning
    /// as `alerts.local_sentinel` (either; both must agree). Read it through
    /// [`Config::local`].
    #[serde(default)]
    pub local_sentinel: Option<Addr>,
    /// Where the daemon keeps state across restarts (the switch journal);
    /// systemd's `StateDirectory=sentinel-vip` creates the default.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

/// `state_dir`'s default: the unit's `StateDirectory=sentinel-vip`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sentinel-vip";

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses config text; the error names the key, line and reason.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            explain(text, &path, e.inner())
        })?;
        cfg.check_across(text)?;
        // Everything a sentinel connection needs travels as one value.
        if let Some(tls) = &cfg.sentinel_tls {
            cfg.sentinel_auth
                .get_or_insert_with(SentinelAuth::default)
                .tls = Some(tls.clone());
        }
        Ok(cfg)
    }

    /// Rules that span several keys (serde checks one value at a time):
    /// VIPs must not overlap, `local_sentinel` (or `alerts.local_sentinel`) must be a listed sentinel.
    fn check_across(&self, text: &str) -> Result<(), String> {
        let masters: Vec<(&String, &MasterConfig)> = self.masters.iter().collect();
        for (name, m) in &masters {
            m.check_carriers(name, text)?;
        }
        for (i, (a, ma)) in masters.iter().enumerate() {
            for (b, mb) in &masters[i + 1..] {
                MasterConfig::check_shared(a, ma, b, mb, text)?;
                let (Some(va), Some(vb)) = (ma.vip, mb.vip) else {
                    continue;
                };
                let (va, vb) = (va.0, vb.0);
                if va.contains(&vb.network()) || vb.contains(&va.network()) {
                    return Err(format!(
                        "masters.{b}.vip: {vb} overlaps masters.{a}.vip {va}{}; each master needs its own VIP, or one route would be written for two masters",
                        at_line(text, &["masters", b, "vip"])
                    ));
                }
            }
        }
        for (key, path, local) in [
            (
                "local_sentinel",
                &["local_sentinel"][..],
                &self.local_sentinel,
            ),
            (
                "alerts.local_sentinel",
                &["alerts", "local_sentinel"][..],
                &self.alerts.local_sentinel,
            ),
        ] {
            if let Some(local) = local {
                if !self.sentinels.contains(local) {
                    return Err(format!(
                        "{key}: {local} is not one of `sentinels`{}; give the address of the sentinel beside this watcher exactly as listed there",
                        at_line(text, path)
                    ));
                }
            }
        }
        if let (Some(top), Some(a)) = (&self.local_sentinel, &self.alerts.local_sentinel) {
            if top != a {
                return Err(format!(
                    "alerts.local_sentinel: {a} differs from local_sentinel {top}{}; they name the same thing (the sentinel beside this watcher): keep one",
                    at_line(text, &["alerts", "local_sentinel"])
                ));
            }
        }
        Ok(())
    }

    /// The sentinel beside this watcher: `local_sentinel`, or the older
    /// spelling `alerts.local_sentinel`. Set, the watchers of a deployment
    /// agree on who writes routes and who posts to chat; unset, this one
    /// does both at once.
    pub fn local(&self) -> Option<&Addr> {
        self.local_sentinel
            .as_ref()
            .or(self.alerts.local_sentinel.as_ref())
    }

    /// Reads the sentinel password from where `sentinel_auth` names it, or
    /// from `override_file` when given (the CLI's `--sentinel-password-file`:
    /// the service's `/run/credentials/...` exists only while it runs). The
    /// error names the key and the variable or file, never the value.
    pub fn resolve_sentinel_password(
        &mut self,
        override_file: Option<&Path>,
    ) -> Result<(), String> {
        if let Some(path) = override_file {
            let pw = secret_from_file(path)?;
            self.sentinel_auth
                .get_or_insert_with(SentinelAuth::default)
                .password = Some(pw);
            return Ok(());
        }
        let Some(auth) = self.sentinel_auth.as_mut() else {
            return Ok(());
        };
        let Some(source) = &auth.password_source else {
            return Ok(());
        };
        let key = auth.password_key();
        auth.password = Some(source.resolve().map_err(|e| format!("{key}: {e}"))?);
        Ok(())
    }

    /// The deployment's name: `cluster` when set, else `sentinels-` and the
    /// first 8 hex digits of the sha256 of the sorted, canonical sentinel
    /// addresses (one per line). The derived name is the same on every watcher
    /// that lists the same sentinels, in any order and spelling of one address
    /// (`Addr` is canonical), and differs between deployments whose sentinels
    /// differ; it changes when a sentinel is added or removed.
    pub fn cluster(&self) -> String {
        if let Some(c) = &self.cluster {
            return c.0.clone();
        }
        derived_cluster(&self.sentinels)
    }

    /// How many sentinels make a majority of the configured ones.
    pub fn majority(&self) -> usize {
        majority_of(self.sentinels.len())
    }

    /// Every configured route table, once (a table may serve several masters).
    pub fn route_tables(&self) -> BTreeSet<RouteTableId> {
        self.masters
            .values()
            .flat_map(|m| m.route_tables.iter().cloned())
            .collect()
    }

    /// Every master's VIP CIDR: the only routes ever read or written.
    pub fn vip_cidrs(&self) -> BTreeSet<IpNet> {
        self.masters
            .values()
            .filter_map(|m| m.vip.map(|v| v.0))
            .collect()
    }
}

/// `cluster`'s default for these sentinels (see [`Config::cluster`]).
pub fn derived_cluster(sentinels: &[Addr]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<String> = sentinels.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    let digest = Sha256::digest(sorted.join("\n"));
    format!("sentinels-{}", &hex::encode(digest)[..8])
}

/// A deployment name (`cluster`): 1 to 63 characters of `A-Z a-z 0-9 . _ -`,
/// so that it reads the same in every message format and cannot be confused
/// with the other fields of an incident key or a PagerDuty `source`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ClusterName(String);

impl TryFrom<String> for ClusterName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty() || s.len() > 63 || !s.chars().all(ok) {
            return Err(format!(
                "cluster {s:?} must be 1 to 63 characters of letters, digits, '.', '_' or '-' (e.g. prod-cache-eu1); it names this deployment in every incident key and message"
            ));
        }
        Ok(ClusterName(s))
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many of `configured` sentinels make a majority: more than half. The one
/// place this rule is written: the verdict (`decide::quorum`), `/readyz` and
/// the live-watcher rule (`decide::speaker`) use it.
pub const fn majority_of(configured: usize) -> usize {
    configured / 2 + 1
}

/// Marks the field a list- or struct-level rule is about. serde_yaml_ng puts
/// the *parent's* path in front of such errors (`masters.mymaster: ...`, or no
/// path at the top level); [`Config::parse`] turns `parent: KEY<field>KEY msg`
/// into `parent.field: msg`, so every message names the full key path.
const KEY: char = '\u{1}';

fn field_error<E: serde::de::Error>(field: &str, msg: impl fmt::Display) -> E {
    E::custom(keyed(field, msg))
}

/// A `try_from` error about `field` of the value being converted.
fn keyed(field: &str, msg: impl fmt::Display) -> String {
    format!("{KEY}{field}{KEY}{msg}")
}

/// One parse error as `full.key.path: reason at line N`.
///
/// serde_yaml_ng names only the *parent* of the value that failed
/// (`masters.mymaster: ...`, nothing at the top level) and points at the start of
/// the parent mapping; serde_path_to_error knows the full path. A rule about one
/// field of a struct or list ([`field_error`], [`keyed`]) adds that field.
fn explain(text: &str, path: &str, e: &serde_yaml_ng::Error) -> String {
    let mut msg = e.to_string();
    let mut line = None;
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(m) = msg.strip_suffix(&suffix) {
            msg = m.to_owned();
        }
        line = Some(loc.line());
    }
    // Drop serde_yaml_ng's own (parent) path prefix.
    if let Some((prefix, rest)) = msg.split_once(": ") {
        if !prefix.contains(' ') && !prefix.contains(KEY) && path.starts_with(prefix) {
            msg = rest.to_owned();
        }
    }
    let mut path = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };
    if let Some(start) = msg.find(KEY) {
        if let Some(len) = msg[start + 1..].find(KEY) {
            let field = msg[start + 1..start + 1 + len].to_owned();
            msg = format!("{}{}", &msg[..start], &msg[start + 2 + len..]);
            if path.is_empty() {
                path = field;
            } else if !path.ends_with(&format!(".{field}")) && path != field {
                path = format!("{path}.{field}");
            }
        }
    }
    // The failing key's own line where it can be found, else the parent's.
    let segments: Vec<&str> = path
        .split('.')
        .filter(|s| !s.is_empty() && !s.contains('['))
        .collect();
    let at = match at_line(text, &segments) {
        found if !found.is_empty() && !path.contains('[') => found,
        _ => line.map(|l| format!(" at line {l}")).unwrap_or_default(),
    };
    if path.is_empty() {
        format!("{msg}{at}")
    } else {
        format!("{path}: {msg}{at}")
    }
}

fn non_empty_sentinels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Addr>, D::Error> {
    let v = Vec::<Addr>::deserialize(d)?;
    if v.is_empty() {
        return Err(field_error(
            "sentinels",
            "list at least one sentinel (all of them, so that a majority can be counted)",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for s in &v {
        if !seen.insert(s) {
            return Err(field_error(
                "sentinels",
                format!("sentinel {s} is listed twice; a sentinel listed twice would vote twice in the majority"),
            ));
        }
    }
    Ok(v)
}

/// ` at line N` for a block-style key path (`["masters", "mymaster", "vip"]`),
/// or nothing when it cannot be found (flow style, anchors): best effort for
/// rules checked after parsing, when serde's marks are gone.
fn at_line(text: &str, path: &[&str]) -> String {
    let mut want = path.iter();
    let Some(mut key) = want.next() else {
        return String::new();
    };
    let mut min_indent = 0;
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if indent < min_indent {
            // Left the parent's block without finding the key.
            return String::new();
        }
        let name = body
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        if body.contains(':') && name == *key {
            match want.next() {
                Some(next) => {
                    key = next;
                    min_indent = indent + 1;
                }
                None => return format!(" at line {}", n + 1),
            }
        }
    }
    String::new()
}

fn non_empty_masters<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, MasterConfig>, D::Error> {
    let v = BTreeMap::<String, MasterConfig>::deserialize(d)?;
    if v.is_empty() {
        return Err(field_error("masters", "configure at least one master"));
    }
    Ok(v)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterConfig {
    /// The VIP route's CIDR; goes with `route_tables` (and only with them).
    #[serde(default)]
    pub vip: Option<Vip>,
    #[serde(default, deserialize_with = "non_empty_tables")]
    pub route_tables: Vec<RouteTableId>,
    /// A secondary private IP moved to the master's ENI (AssignPrivateIpAddresses).
    #[serde(default)]
    pub secondary_ip: Option<std::net::IpAddr>,
    /// An Elastic IP associated with the master's ENI (AssociateAddress).
    #[serde(default)]
    pub elastic_ip: Option<AllocationId>,
    /// A Route 53 record holding the private IP of the master's ENI.
    #[serde(default)]
    pub dns: Option<DnsRecord>,
    /// Redis address as Sentinel reports it (`ip:port` or `ip`) → EC2 target.
    /// Omitted: the target is discovered by private IP.
    #[serde(default)]
    pub nodes: Option<BTreeMap<NodeKey, Target>>,
    /// Role to assume for this master's route tables (tables in another account
    /// than `aws.assume_role_arn`'s or the default credentials').
    #[serde(default)]
    pub assume_role_arn: Option<RoleArn>,
}

impl MasterConfig {
    /// What a master's address is carried by must be said, and `vip` only goes
    /// with `route_tables` (the other kinds carry the address themselves).
    fn check_carriers(&self, name: &str, text: &str) -> Result<(), String> {
        match (&self.vip, self.route_tables.is_empty()) {
            (Some(_), true) => {
                return Err(format!(
                    "masters.{name}.vip: goes with route_tables{}; list the route tables (rtb-...) that carry the VIP, or remove vip",
                    at_line(text, &["masters", name, "vip"])
                ))
            }
            (None, false) => {
                return Err(format!(
                    "masters.{name}.route_tables: need a vip (the route's CIDR){}",
                    at_line(text, &["masters", name, "route_tables"])
                ))
            }
            _ => {}
        }
        if self.secondary_ip.is_some_and(|ip| ip.is_ipv6()) {
            return Err(format!(
                "masters.{name}.secondary_ip: an IPv4 address (AssignPrivateIpAddresses moves private IPv4 addresses only){}",
                at_line(text, &["masters", name, "secondary_ip"])
            ));
        }
        if self.route_tables.is_empty()
            && self.secondary_ip.is_none()
            && self.elastic_ip.is_none()
            && self.dns.is_none()
        {
            return Err(format!(
                "masters.{name}: give at least one of route_tables (with vip), secondary_ip, elastic_ip, dns{}; they say how clients reach the master",
                at_line(text, &["masters", name])
            ));
        }
        Ok(())
    }

    /// Two masters must not move the same secondary IP, Elastic IP or record.
    fn check_shared(
        a: &str,
        ma: &MasterConfig,
        b: &str,
        mb: &MasterConfig,
        text: &str,
    ) -> Result<(), String> {
        let same = |key: &str, what: String| {
            Err(format!(
                "masters.{b}.{key}: {what} is also masters.{a}.{key}{}; each master needs its own, or one would be moved for two masters",
                at_line(text, &["masters", b, key])
            ))
        };
        if let (Some(x), Some(y)) = (&ma.secondary_ip, &mb.secondary_ip) {
            if x == y {
                return same("secondary_ip", x.to_string());
            }
        }
        if let (Some(x), Some(y)) = (&ma.elastic_ip, &mb.elastic_ip) {
            if x == y {
                return same("elastic_ip", x.to_string());
            }
        }
        if let (Some(x), Some(y)) = (&ma.dns, &mb.dns) {
            if x.zone_id == y.zone_id && x.name == y.name {
                return same("dns", x.name.clone());
            }
        }
        Ok(())
    }
}

fn non_empty_tables<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<RouteTableId>, D::Error> {
    let v = Vec::<RouteTableId>::deserialize(d)?;
    if v.is_empty() {
        return Err(field_error(
            "route_tables",
            "list at least one route table (rtb-...)",
        ));
    }
    let mut sorted = v.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != v.len() {
        return Err(field_error("route_tables", "a route table is listed twice"));
    }
    Ok(v)
}

/// The VIP: an IPv4 or IPv6 CIDR, normally a /32 (or /128) outside the VPC's
/// CIDR. IPv6 VIPs are written as `DestinationIpv6CidrBlock` routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Vip(pub IpNet);

impl TryFrom<String> for Vip {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let net: IpNet = s
            .parse()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                format!(
                    "vip {s:?} is not an IP address or CIDR (e.g. 172.16.0.10/32 or fd00::10/128)"
                )
            })?;
        if net.network() != net.addr() {
            return Err(format!(
                "vip {s:?} has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Vip(net))
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// How often the sentinels' majority view is re-read and drift repaired.
    #[serde(default = "default_reconcile_interval", with = "duration")]
    pub interval: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            interval: default_reconcile_interval(),
        }
    }
}

fn default_reconcile_interval() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Loopback address for /metrics, /healthz, /readyz, /status; unset = off.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
}

mod duration {
    use serde::Deserialize;
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let v = humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("{s:?} is not a duration like 30s or 5m: {e}"))
        })?;
        if v.is_zero() {
            return Err(serde::de::Error::custom(
                "duration must be greater than zero",
            ));
        }
        Ok(v)
    }
}

mod opt_duration {
    use serde::Deserialize;
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::duration")] Duration);
        Option::<W>::deserialize(d).map(|o| o.map(|w| w.0))
    }
}

#[cfg(test)]
mod reach_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]
aws:
  region: us-east-1
  endpoint_url: http://127.0.0.1:5000
masters:
  mymaster:
    vip: 172.16.0.10/32
    route_tables: [rtb-0123, rtb-4567]
    nodes:
      "10.0.1.11:6379": { instance_id: i-0aaa }
      "10.0.1.12": { network_interface_id: eni-0bbb }
reconcile:
  interval: 30s
http:
  listen: 127.0.0.1:9839
log:
  format: json
"#;

    #[test]
    fn example_config_parses() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.sentinels.len(), 3);
        assert_eq!(c.majority(), 2);
        let m = &c.masters["mymaster"];
        assert_eq!(m.vip.expect("vip").to_string(), "172.16.0.10/32");
        assert_eq!(m.route_tables[1].as_str(), "rtb-4567");
        assert_eq!(c.reconcile.interval, Duration::from_secs(30));
        assert_eq!(c.log.format, LogFormat::Json);
        let nodes = m.nodes.as_ref().unwrap();
        assert!(nodes
            .values()
            .any(|t| matches!(t, Target::Eni(e) if e.as_str() == "eni-0bbb")));
    }

    #[test]
    fn plain_http_webhooks_only_to_loopback_unless_insecure_http() {
        for ok in [
            "https://hooks.slack.com/services/T/B/x",
            "http://127.0.0.1:9000/hook",
            "http://127.9.9.9/hook",
            "http://[::1]:8080/hook",
            "http://localhost/hook",
            "http://LOCALHOST./hook",
        ] {
            assert_eq!(check_webhook_url(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/services/T/B/secret-token",
            "http://10.0.1.5/hook",
            "http://[fd00::1]/hook",
            "http://localhost.evil.example/hook",
            "http://128.0.0.1/hook",
        ] {
            let e = check_webhook_url(bad, false).unwrap_err();
            assert!(e.contains("insecure_http: true"), "{bad}: {e}");
            assert!(
                !e.contains("secret-token"),
                "the URL's token must not be echoed: {e}"
            );
            assert_eq!(check_webhook_url(bad, true), Ok(()), "{bad}");
        }
        assert!(check_webhook_url("ftp://x/", true).is_err());
        assert!(check_webhook_url("not a url", true).is_err());
    }

    #[test]
    fn webhook_http_url_and_url_env_are_refused_at_load_naming_the_key() {
        let hooks = |w: &str| format!("{GOOD}alerts:\n  webhooks:\n    - {w}\n");
        let e = err(&hooks(
            "{ name: ops, kind: slack, url: \"http://hooks.example.com/x\" }",
        ));
        assert!(
            e.starts_with("alerts.webhooks[0].url: webhook ops: url is http://"),
            "{e}"
        );
        // A url_env value is checked where the sink is resolved (run, test-alert).
        std::env::set_var("SV_TEST_HTTP_HOOK", "http://relay.example.com/x");
        let cfg = Config::parse(&hooks(
            "{ name: ops, kind: generic, url_env: SV_TEST_HTTP_HOOK }",
        ))
        .expect("the variable's value is not read at load");
        let e = cfg.alerts.sinks().unwrap_err().to_string();
        assert!(
            e.starts_with("alerts.webhooks[0].url_env: webhook ops: url is http://"),
            "{e}"
        );
        let ok =
            hooks("{ name: ops, kind: generic, url_env: SV_TEST_HTTP_HOOK, insecure_http: true }");
        Config::parse(&ok).unwrap().alerts.sinks().unwrap();
        Config::parse(&hooks(
            "{ name: ops, kind: generic, url: \"http://127.0.0.1:9/x\" }",
        ))
        .unwrap();
    }

    #[test]
    fn sentinel_tls_files_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.crt");
        let e = err(&format!(
            "{GOOD}sentinel_tls:\n  ca_file: {}\n",
            missing.display()
        ));
        assert!(e.starts_with("sentinel_tls.ca_file: cannot read"), "{e}");
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "not pem\n").unwrap();
        let e = err(&format!(
            "{GOOD}sentinel_tls:\n  ca_file: {}\n",
            empty.display()
        ));
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = err(&format!(
            "{GOOD}sentinel_tls:\n  ca_file: {}\n  cert_file: {}\n",
            empty.display(),
            empty.display()
        ));
        assert!(e.contains("sentinel_tls"), "{e}");
    }

    /// One step of a key path, for probing the parser.
    #[derive(Clone, Debug)]
    enum Step {
        Key(String),
        /// An element of a list (`alerts.webhooks[]`).
        Item,
        /// A value of a map with names of the user's choosing (`masters.<name>`).
        Any,
    }

    /// The fields the parser accepts at `path`, read from its own
    /// `deny_unknown_fields` error for a key it cannot know; None when the
    /// value at `path` is not a struct.
    fn accepted_fields(path: &[Step]) -> Option<Vec<String>> {
        use serde_yaml_ng::{Mapping, Value};
        let mut v: Value = serde_yaml_ng::from_str("{zz_probe: 1}").unwrap();
        for step in path.iter().skip(1).rev() {
            v = match step {
                Step::Key(k) => {
                    let mut m = Mapping::new();
                    m.insert(Value::String(k.clone()), v);
                    Value::Mapping(m)
                }
                Step::Item => Value::Sequence(vec![v]),
                Step::Any => {
                    let mut m = Mapping::new();
                    m.insert(Value::String("10.0.0.1".into()), v);
                    Value::Mapping(m)
                }
            };
        }
        let mut root: Value = serde_yaml_ng::from_str(
            "{sentinels: [\"127.0.0.2:26379\"], masters: {m: {vip: 172.16.0.10/32, route_tables: [rtb-0123]}}}",
        )
        .unwrap();
        match path.first() {
            Some(Step::Key(k)) => {
                root.as_mapping_mut()
                    .unwrap()
                    .insert(Value::String(k.clone()), v);
            }
            None => {
                root.as_mapping_mut()
                    .unwrap()
                    .insert(Value::String("zz_probe".into()), Value::from(1));
            }
            Some(_) => unreachable!("paths start with a key"),
        }
        let e = Config::parse(&serde_yaml_ng::to_string(&root).unwrap()).err()?;
        let rest = e.split("unknown field `zz_probe`").nth(1)?;
        if rest.contains("there are no fields") {
            return Some(Vec::new());
        }
        let list = rest.split(" at line").next().unwrap_or(rest);
        Some(
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Every key path the parser accepts, found by asking it (so the list
    /// cannot go stale): each struct's fields, into nested structs, lists of
    /// structs and maps of structs.
    fn accepted_keys(path: Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let Some(fields) = accepted_fields(&path) else {
            return;
        };
        for f in fields {
            let mut here = path.clone();
            here.push(Step::Key(f));
            out.push(here.clone());
            for tail in [None, Some(Step::Item), Some(Step::Any)] {
                let mut deeper = here.clone();
                deeper.extend(tail);
                if accepted_fields(&deeper).is_some() {
                    accepted_keys(deeper, out);
                    break;
                }
            }
        }
    }

    fn key_name(path: &[Step]) -> String {
        match path.last() {
            Some(Step::Key(k)) => k.clone(),
            _ => String::new(),
        }
    }

    fn dotted(path: &[Step]) -> String {
        path.iter()
            .map(|s| match s {
                Step::Key(k) => k.as_str(),
                Step::Item => "[]",
                Step::Any => "<name>",
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// How often `key:` appears in `text` as a key (commented out or not; not
    /// as the tail of a longer name, e.g. `url:` in `endpoint_url:`).
    fn mentions(text: &str, key: &str) -> usize {
        let needle = format!("{key}:");
        text.match_indices(&needle)
            .filter(|(i, _)| {
                text[..*i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
            })
            .count()
    }

    #[test]
    fn every_key_the_parser_accepts_is_in_config_example_yaml() {
        let example = include_str!("../../config.example.yaml");
        let mut keys = Vec::new();
        accepted_keys(Vec::new(), &mut keys);
        let names: BTreeSet<String> = keys.iter().map(|k| key_name(k)).collect();
        // The walk itself works: it reaches a few known keys at depth.
        for known in [
            "sentinels",
            "ca_file",
            "per_second",
            "network_interface_id",
            "routing_key_env",
        ] {
            assert!(names.contains(known), "the probe missed {known}: {names:?}");
        }
        let mut missing = Vec::new();
        for name in &names {
            let paths: Vec<String> = keys
                .iter()
                .filter(|k| key_name(k) == *name)
                .map(|k| dotted(k))
                .collect();
            // A key accepted at several places (assume_role_arn) is shown at each.
            if mentions(example, name) < paths.len() {
                missing.push(paths.join(", "));
            }
        }
        assert!(
            missing.is_empty(),
            "config.example.yaml does not show these keys the parser accepts (write each as `key:`, commented out if optional, with what it does): {missing:?}"
        );
    }

    #[test]
    fn shipped_example_config_parses() {
        let text = include_str!("../../config.example.yaml");
        Config::parse(text).unwrap();
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn unknown_key_is_named_with_line() {
        let e = err(&GOOD.replace("  interval: 30s", "  intervall: 30s"));
        assert!(e.contains("intervall"), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn bad_vip_names_key_and_reason() {
        let e = err(&GOOD.replace("172.16.0.10/32", "172.16.0.300/32"));
        assert!(e.contains("masters") && e.contains("vip"), "{e}");
        assert!(e.contains("not an IP address or CIDR"), "{e}");
        assert!(e.contains("line 8"), "{e}");
    }

    #[test]
    fn bad_route_table_duration_and_target_are_refused() {
        assert!(err(&GOOD.replace("rtb-4567", "rt-4567")).contains("route table id"));
        assert!(err(&GOOD.replace("30s", "thirty")).contains("duration"));
        let both = GOOD.replace(
            "{ instance_id: i-0aaa }",
            "{ instance_id: i-0aaa, network_interface_id: eni-1 }",
        );
        assert!(err(&both).contains("exactly one"));
        assert!(
            err(&GOOD.replace("\"127.0.0.2:26379\", ", "\"127.0.0.3:26379\", ")).contains("twice")
        );
    }

    #[test]
    fn empty_lists_are_refused() {
        assert!(err(&GOOD.replace(
            r#"["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]"#,
            "[]"
        ))
        .contains("at least one sentinel"));
        assert!(
            err(&GOOD.replace("[rtb-0123, rtb-4567]", "[]")).contains("at least one route table")
        );
    }

    #[test]
    fn same_sentinel_spelled_twice_is_refused_naming_the_key() {
        let e = err(&GOOD.replace(
            r#""127.0.0.4:26379"]"#,
            r#""127.0.0.4:26379", "127.0.0.2:26379"]"#,
        ));
        assert!(e.starts_with("sentinels:"), "{e}");
        assert!(e.contains("127.0.0.2:26379 is listed twice"), "{e}");
        let hosts = "sentinels: [\"Sentinel-A:26379\", \"sentinel-a:26379\"]";
        let e = err(&GOOD.replace(
            r#"sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]"#,
            hosts,
        ));
        assert!(e.contains("listed twice"), "{e}");
        let v6 = "sentinels: [\"[::1]:26379\", \"[0:0::1]:26379\"]";
        let e = err(&GOOD.replace(
            r#"sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]"#,
            v6,
        ));
        assert!(e.contains("listed twice"), "{e}");
    }

    const TWO_MASTERS: &str = r#"
sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]
masters:
  cache:
    vip: 172.16.0.0/24
    route_tables: [rtb-0123]
  queue:
    vip: 172.16.0.10/32
    route_tables: [rtb-0123]
"#;

    #[test]
    fn overlapping_vips_of_two_masters_are_refused_naming_both_keys() {
        let e = err(TWO_MASTERS);
        assert!(
            e.starts_with(
                "masters.queue.vip: 172.16.0.10/32 overlaps masters.cache.vip 172.16.0.0/24"
            ),
            "{e}"
        );
        assert!(e.contains("line 8"), "{e}");
        let same = TWO_MASTERS.replace("172.16.0.0/24", "172.16.0.10/32");
        assert!(err(&same).contains("overlaps"), "{}", err(&same));
        let apart = TWO_MASTERS.replace("172.16.0.0/24", "172.16.1.0/24");
        Config::parse(&apart).unwrap();
    }

    #[test]
    fn local_sentinel_not_in_the_list_is_refused() {
        let e = err(&format!(
            "{GOOD}alerts:\n  local_sentinel: 127.0.0.9:26379\n"
        ));
        assert!(
            e.starts_with("alerts.local_sentinel: 127.0.0.9:26379 is not one of `sentinels`"),
            "{e}"
        );
        assert!(e.contains("line 20"), "{e}");
        Config::parse(&format!(
            "{GOOD}alerts:\n  local_sentinel: 127.0.0.3:26379\n"
        ))
        .unwrap();
    }

    #[test]
    fn cluster_defaults_to_a_name_derived_from_the_sentinel_list() {
        let a = Config::parse(GOOD).unwrap();
        // Another watcher of the same deployment: its list in another order.
        let b = Config::parse(&GOOD.replace(
            r#"["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]"#,
            r#"["127.0.0.4:26379", "127.0.0.2:26379", "127.0.0.3:26379"]"#,
        ))
        .unwrap();
        assert_eq!(a.cluster(), b.cluster());
        assert!(a.cluster().starts_with("sentinels-"), "{}", a.cluster());
        assert_eq!(a.cluster().len(), "sentinels-".len() + 8);
        // Another deployment (other sentinels), same master name: another name.
        let other = Config::parse(&GOOD.replace("127.0.0.4:26379", "127.0.0.5:26379")).unwrap();
        assert_ne!(a.cluster(), other.cluster());
        // Set: used as written.
        let set = Config::parse(&format!("cluster: prod-cache.eu_1\n{GOOD}")).unwrap();
        assert_eq!(set.cluster(), "prod-cache.eu_1");
    }

    #[test]
    fn a_bad_cluster_name_is_refused_naming_the_key() {
        for bad in ["\"\"", "\"a b\"", "\"a:b\"", &"x".repeat(64)] {
            let e = err(&format!("cluster: {bad}\n{GOOD}"));
            assert!(e.starts_with("cluster: cluster "), "{bad}: {e}");
            assert!(e.contains("letters, digits"), "{e}");
            assert!(e.contains("line 1"), "{e}");
        }
    }

    #[test]
    fn every_validation_message_names_the_full_key_path() {
        let cases: Vec<(String, &str)> = vec![
            (
                GOOD.replace("[rtb-0123, rtb-4567]", "[]"),
                "masters.mymaster.route_tables: list at least one route table (rtb-...) at line 9",
            ),
            (
                GOOD.replace("[rtb-0123, rtb-4567]", "[rtb-0123, rtb-0123]"),
                "masters.mymaster.route_tables: ",
            ),
            (
                GOOD.replace("rtb-4567", "rt-4567"),
                "masters.mymaster.route_tables",
            ),
            (
                GOOD.replace("172.16.0.10/32", "172.16.0.11/24"),
                "masters.mymaster.vip: ",
            ),
            (GOOD.replace("30s", "thirty"), "reconcile.interval: "),
            (GOOD.replace("30s", "0s"), "reconcile.interval: "),
            (
                GOOD.replace("\"127.0.0.2:26379\"", "\"127.0.0.2\""),
                "sentinels",
            ),
            (
                "sentinels: [\"127.0.0.2:26379\"]\nmasters: {}\n".to_owned(),
                "masters: configure at least one master at line 2",
            ),
            (
                "reconcile:\n  interval: 30s\n".to_owned(),
                "missing field `sentinels`",
            ),
            (
                GOOD.replace(
                    "{ instance_id: i-0aaa }",
                    "{ instance_id: i-0aaa, network_interface_id: eni-1 }",
                ),
                "masters.mymaster.nodes",
            ),
            (
                GOOD.replace(
                    "aws:",
                    "sentinel_auth:\n  password_env: SV_A\n  password_file: /x\naws:",
                ),
                "sentinel_auth.password_env: ",
            ),
            (
                format!("{GOOD}alerts:\n  webhooks:\n    - {{ name: ops, kind: slack }}\n"),
                "alerts.webhooks[0]",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .map(|(text, key)| (err(text), key))
            .filter(|(e, key)| !e.starts_with(*key))
            .map(|(e, key)| format!("want {key:?} at the start of: {e}"))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        for (text, _) in &cases {
            eprintln!("{}", err(text));
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        std::env::set_var("SV_TEST_PW", "hunter2-secret");
        let text = GOOD.replace("aws:", "sentinel_auth:\n  password_env: SV_TEST_PW\naws:");
        let mut c = Config::parse(&text).unwrap();
        c.resolve_sentinel_password(None).unwrap();
        let auth = c.sentinel_auth.as_ref().unwrap();
        assert_eq!(auth.password.as_ref().unwrap().expose(), "hunter2-secret");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn missing_secret_env_is_an_error_naming_the_variable_where_it_is_read() {
        let text = GOOD.replace(
            "aws:",
            "sentinel_auth:\n  password_env: SV_TEST_MISSING_VAR\naws:",
        );
        let mut c = Config::parse(&text).expect("parsing reads no secret");
        assert_eq!(
            c.resolve_sentinel_password(None).unwrap_err(),
            "sentinel_auth.password_env: environment variable SV_TEST_MISSING_VAR is not set"
        );
        let text = format!(
            "{GOOD}alerts:\n  webhooks:\n    - {{ name: pd, kind: pagerduty, routing_key_env: SV_TEST_MISSING_PD }}\n    - {{ name: gen, kind: generic, url: \"https://x.example/h\", secret_env: SV_TEST_MISSING_WH }}\n"
        );
        let c = Config::parse(&text).expect("parsing reads no secret");
        let problems: Vec<String> = c
            .alerts
            .each_sink()
            .into_iter()
            .filter_map(|r| r.err().map(|p| p.to_string()))
            .collect();
        assert_eq!(
            problems,
            [
                "alerts.webhooks[0].routing_key_env: webhook pd: environment variable SV_TEST_MISSING_PD is not set",
                "alerts.webhooks[1].secret_env: webhook gen: environment variable SV_TEST_MISSING_WH is not set",
            ]
        );
    }

    #[test]
    fn a_webhook_key_its_kind_ignores_is_refused() {
        let hook = |w: &str| format!("{GOOD}alerts:\n  webhooks:\n    - {w}\n");
        let e = err(&hook(
            "{ name: ops, kind: slack, url: \"https://hooks.slack.com/x\", secret_env: X }",
        ));
        assert!(
            e.starts_with(
                "alerts.webhooks[0].secret_env: webhook ops: secret_env signs kind generic only"
            ),
            "{e}"
        );
        let e = err(&hook(
            "{ name: gen, kind: generic, url: \"https://x.example/h\", routing_key_env: X }",
        ));
        assert!(
            e.starts_with("alerts.webhooks[0].routing_key_env: webhook gen: routing_key_env is for kind pagerduty only"),
            "{e}"
        );
        Config::parse(&hook(
            "{ name: gen, kind: generic, url: \"https://x.example/h\", secret_env: X }",
        ))
        .unwrap();
        Config::parse(&hook("{ name: pd, kind: pagerduty, routing_key_env: X }")).unwrap();
    }

    #[test]
    fn password_file_override_replaces_the_configured_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-the-override\n").unwrap();
        let text = GOOD.replace(
            "aws:",
            "sentinel_auth:\n  username: watcher\n  password_file: /run/credentials/sentinel-vip.service/nope\naws:",
        );
        let mut c = Config::parse(&text).unwrap();
        let e = c.clone().resolve_sentinel_password(None).unwrap_err();
        assert!(
            e.starts_with("sentinel_auth.password_file: cannot read /run/credentials/sentinel-vip.service/nope"),
            "{e}"
        );
        c.resolve_sentinel_password(Some(&file)).unwrap();
        let auth = c.sentinel_auth.unwrap();
        assert_eq!(auth.username.as_deref(), Some("watcher"));
        assert_eq!(auth.password.unwrap().expose(), "from-the-override");
    }

    #[test]
    fn write_rate_defaults_to_ec2_mutating_bucket_and_refuses_zero() {
        let cfg = Config::parse(GOOD).expect("good config");
        assert_eq!(cfg.aws.write_rate, WriteRate::default());
        let text = GOOD.replace(
            "  region: us-east-1\n",
            "  region: us-east-1\n  write_rate: { per_second: 20 }\n",
        );
        let cfg = Config::parse(&text).expect("write_rate with a default burst");
        assert_eq!(cfg.aws.write_rate.per_second, 20.0);
        assert_eq!(cfg.aws.write_rate.burst, 200);
        for bad in ["{ per_second: 0 }", "{ burst: 0 }", "{ rate: 5 }"] {
            let text = GOOD.replace(
                "  region: us-east-1\n",
                &format!("  region: us-east-1\n  write_rate: {bad}\n"),
            );
            let e = Config::parse(&text).expect_err(bad);
            assert!(e.contains("write_rate"), "{bad}: {e}");
        }
    }

    #[test]
    fn ipv6_and_host_names_in_sentinels_nodes_and_vip() {
        let text = GOOD
            .replace(
                r#"sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]"#,
                r#"sentinels: ["[::1]:26379", "Sentinel-B.internal:26379", "127.0.0.4:26379"]"#,
            )
            .replace("172.16.0.10/32", "fd00::10/128")
            .replace(
                r#""10.0.1.12": { network_interface_id: eni-0bbb }"#,
                r#""fd00::12": { network_interface_id: eni-0bbb }
      "[fd00::13]:6379": { instance_id: i-0ccc }
      "Redis-D.Internal": { instance_id: i-0ddd }"#,
            );
        let c = Config::parse(&text).expect("IPv6 and names");
        assert_eq!(c.sentinels[0], Addr::new("::1", 26379));
        assert_eq!(c.sentinels[1].to_string(), "sentinel-b.internal:26379");
        let m = &c.masters["mymaster"];
        assert_eq!(m.vip.expect("vip").to_string(), "fd00::10/128");
        let nodes = m.nodes.as_ref().unwrap();
        let get = |a: Addr| static_target(nodes, &a).map(|t| t.to_string());
        assert_eq!(get(Addr::new("FD00::12", 1)).as_deref(), Some("eni-0bbb"));
        assert_eq!(get(Addr::new("fd00::13", 6379)).as_deref(), Some("i-0ccc"));
        assert_eq!(get(Addr::new("fd00::13", 6380)), None);
        assert_eq!(
            get(Addr::new("redis-d.internal", 7)).as_deref(),
            Some("i-0ddd")
        );

        // The same sentinel spelled two ways is refused; so is a bad IPv6 spelling.
        let dup = GOOD.replace(
            r#"["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]"#,
            r#"["[::1]:26379", "[0:0::1]:26379", "127.0.0.4:26379"]"#,
        );
        assert!(err(&dup).contains("listed twice"), "{}", err(&dup));
        let bad = GOOD.replace("127.0.0.2:26379", "::1:26379");
        assert!(err(&bad).contains("without brackets"), "{}", err(&bad));
        let bad = GOOD.replace("172.16.0.10/32", "fd00::10/64");
        assert!(err(&bad).contains("host bits"), "{}", err(&bad));
    }
}
