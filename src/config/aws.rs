//! The EC2 side of the config: `aws` (region, endpoint, role, write budget),
//! EC2 ids (`rtb-`, `i-`, `eni-`), route [`Target`]s and the static `nodes` map.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use std::time::Duration;

use super::{opt_duration, Addr};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; unset means the default chain (env, profile, IMDSv2).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override: emulators, VPC interface endpoints.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Upper bound for one EC2 call including the SDK's retries (default
    /// [`DEFAULT_CALL_TIMEOUT`]; read it through [`AwsConfig::call_timeout`]).
    #[serde(default, with = "opt_duration")]
    pub call_timeout: Option<Duration>,
    /// Attempts per EC2 call for throttling, 5xx and network errors (default 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Role to assume (STS) for every EC2 call: route tables owned by another
    /// account (shared VPC, RAM). The session is cached and refreshed before it
    /// expires, not assumed per call. A master's own `assume_role_arn` wins for
    /// its route tables.
    #[serde(default)]
    pub assume_role_arn: Option<RoleArn>,
    /// Budget for route writes (ReplaceRoute/CreateRoute calls): a token bucket
    /// shared by every master, so a host carrying many masters does not burst
    /// into EC2's `RequestLimitExceeded` (default: 5/s, burst 200).
    #[serde(default)]
    pub write_rate: WriteRate,
    /// With several watchers (`local_sentinel` set), how long a standby
    /// watcher waits, per live watcher ahead of it, after its turn in the
    /// `write_rate` line before it reads the carriers and writes only what is
    /// still wrong (default [`DEFAULT_STANDBY_CHECK_AFTER`]; read it through
    /// [`AwsConfig::standby_check_after`]).
    #[serde(default, with = "opt_duration")]
    pub standby_check_after: Option<Duration>,
}

/// Share of `aws.write_rate.per_second` the route-write pacer spends
/// (`act::pacing`), and so the pace at which a standby expects the designated
/// writer to get through a line of writes (`decide::steering`).
pub const WRITE_RATE_MARGIN: f64 = 0.95;

/// Share of `aws.write_rate.burst` the route-write pacer holds (at least 1
/// token), and so the burst a standby expects the designated writer to send.
pub const WRITE_BURST_MARGIN: f64 = 0.9;

/// `aws.standby_check_after`'s default: long enough for the designated
/// writer's write and its read-back (tens of ms) and for EC2's eventually
/// consistent reads to show it, short enough that a dead writer costs about a
/// second.
pub(crate) const DEFAULT_STANDBY_CHECK_AFTER: Duration = Duration::from_secs(1);

/// An IAM role ARN (`arn:aws:iam::123456789012:role/name`), checked at load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct RoleArn(String);

impl RoleArn {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-digit account that owns the role.
    pub fn account(&self) -> &str {
        self.0.split(':').nth(4).unwrap_or_default()
    }
}

impl TryFrom<String> for RoleArn {
    type Error = String;
    fn try_from(s: String) -> Result<RoleArn, String> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5]
                .strip_prefix("role/")
                .is_some_and(|n| !n.is_empty());
        if ok {
            Ok(RoleArn(s))
        } else {
            Err(format!(
                "{s:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"
            ))
        }
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `aws.call_timeout` when unset.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(20);

impl AwsConfig {
    /// The bound for one EC2 call including retries: `call_timeout`, or 20 s.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT)
    }

    /// `standby_check_after`, or [`DEFAULT_STANDBY_CHECK_AFTER`].
    pub fn standby_check_after(&self) -> Duration {
        self.standby_check_after
            .unwrap_or(DEFAULT_STANDBY_CHECK_AFTER)
    }
}

/// `aws.write_rate`: EC2's account-wide bucket for mutating calls, as the
/// deployment's share of it — **shared by its watchers**, not per watcher:
/// with `local_sentinel` set only the designated writer spends it, and every
/// standby paces its checks through the same line so it writes, if at all,
/// in the writer's place and slot. The default matches EC2's documented bucket
/// for mutating actions (200 tokens, refilled at 5/s); lower it when other
/// tools write in the same account and region.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "WriteRateSpec")]
pub struct WriteRate {
    /// Refill: route writes per second, sustained.
    pub per_second: f64,
    /// Bucket size: route writes allowed at once after a quiet period.
    pub burst: u32,
}

impl Default for WriteRate {
    fn default() -> WriteRate {
        WriteRate {
            per_second: 5.0,
            burst: 200,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteRateSpec {
    #[serde(default)]
    per_second: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
}

impl TryFrom<WriteRateSpec> for WriteRate {
    type Error = String;
    fn try_from(s: WriteRateSpec) -> Result<WriteRate, String> {
        let d = WriteRate::default();
        let r = WriteRate {
            per_second: s.per_second.unwrap_or(d.per_second),
            burst: s.burst.unwrap_or(d.burst),
        };
        if !(r.per_second.is_finite() && r.per_second > 0.0) {
            return Err(format!(
                "aws.write_rate.per_second must be a positive number of writes per second, got {}",
                r.per_second
            ));
        }
        if r.burst == 0 {
            return Err("aws.write_rate.burst must be at least 1 (writes allowed at once)".into());
        }
        Ok(r)
    }
}

/// One monitored master: its VIP and where the VIP's route lives.
macro_rules! aws_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("An EC2 ", $what, " id (`", $prefix, "...`).")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let rest = s.strip_prefix($prefix).unwrap_or("");
                if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(format!(
                        concat!("{:?} is not a ", $what, " id (", $prefix, "...)"),
                        s
                    ));
                }
                Ok($name(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

aws_id!(RouteTableId, "rtb-", "route table");
aws_id!(InstanceId, "i-", "instance");
aws_id!(EniId, "eni-", "network interface");
aws_id!(AllocationId, "eipalloc-", "Elastic IP allocation");

/// A Route 53 hosted zone id (`Z...`, as the console and the API show it; a
/// `/hostedzone/` prefix is dropped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HostedZoneId(String);

impl HostedZoneId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostedZoneId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let id = s.strip_prefix("/hostedzone/").unwrap_or(&s);
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "{s:?} is not a Route 53 hosted zone id (Z..., letters and digits)"
            ));
        }
        Ok(HostedZoneId(id.to_owned()))
    }
}

impl fmt::Display for HostedZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Route 53 record that names the master: an A record (AAAA when the
/// master's ENI address is IPv6) in `zone_id`, UPSERTed with `ttl`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    pub zone_id: HostedZoneId,
    /// The record's name, without or with the trailing dot (stored without).
    #[serde(deserialize_with = "record_name")]
    pub name: String,
    /// Seconds; clients may cache the old answer this long after a failover.
    #[serde(default = "default_dns_ttl")]
    pub ttl: u32,
}

fn default_dns_ttl() -> u32 {
    10
}

fn record_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let name = s.trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !ok {
        return Err(serde::de::Error::custom(format!(
            "{s:?} is not a DNS name (labels of letters, digits, '-' or '_', dot-separated)"
        )));
    }
    Ok(name)
}

/// Where the VIP route points: an instance or (preferred) an ENI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "RawTarget")]
pub enum Target {
    Instance(InstanceId),
    Eni(EniId),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    instance_id: Option<InstanceId>,
    #[serde(default)]
    network_interface_id: Option<EniId>,
}

impl TryFrom<RawTarget> for Target {
    type Error = String;
    fn try_from(raw: RawTarget) -> Result<Self, String> {
        match (raw.instance_id, raw.network_interface_id) {
            (Some(i), None) => Ok(Target::Instance(i)),
            (None, Some(e)) => Ok(Target::Eni(e)),
            _ => Err("give exactly one of instance_id or network_interface_id".into()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Instance(i) => i.fmt(f),
            Target::Eni(e) => e.fmt(f),
        }
    }
}

/// A `nodes` key: `host:port` (`[v6]:port`) matches that exact address,
/// `host` (a bare IPv6 address needs no brackets) any port. The host is an IP
/// address or a host name, compared as [`Addr`] compares them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct NodeKey {
    pub host: String,
    pub port: Option<u16>,
}

impl NodeKey {
    /// The key that matches `addr` exactly, and the one that matches its host on any port.
    pub fn of(addr: &Addr) -> [NodeKey; 2] {
        [
            NodeKey {
                host: addr.host.clone(),
                port: Some(addr.port),
            },
            NodeKey {
                host: addr.host.clone(),
                port: None,
            },
        ]
    }
}

impl TryFrom<String> for NodeKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty node address".into());
        }
        let bare_v6 = t.parse::<std::net::Ipv6Addr>().is_ok();
        let with_port = t.starts_with('[') && t.contains("]:")
            || (!bare_v6 && !t.starts_with('[') && t.contains(':'));
        if with_port {
            let a: Addr = t.parse().map_err(|e| format!("node {e}"))?;
            return Ok(NodeKey {
                host: a.host,
                port: Some(a.port),
            });
        }
        let host = t
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(t);
        // A port-less key: check it as an address with a dummy port.
        let a: Addr = if host.contains(':') {
            format!("[{host}]:1")
        } else {
            format!("{host}:1")
        }
        .parse()
        .map_err(|e: String| format!("node {:?}: {}", s, e.replace(":1\"", "\"")))?;
        Ok(NodeKey {
            host: a.host,
            port: None,
        })
    }
}

/// Looks `addr` up in a static `nodes` map: an exact `host:port` key wins over a
/// bare `host` key.
pub fn static_target(nodes: &BTreeMap<NodeKey, Target>, addr: &Addr) -> Option<Target> {
    NodeKey::of(addr).iter().find_map(|k| nodes.get(k)).cloned()
}
