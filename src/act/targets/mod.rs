//! Maps a Redis master address to its EC2 target: the static `nodes` map, or
//! discovery of the ENI that holds the private IP (cached, warmed ahead of a
//! failover so that the switch path never waits for a lookup).
//!
//! Discovery rules (the cache rules are pure, in [`DiscoveryCache`], and take
//! the time as an argument):
//! - **Scoped to the VPCs of the master's route tables.** Private IPs overlap
//!   across VPCs, and a route can only target an ENI of its table's VPC. The
//!   VPC of a table is learned from any table read ([`Targets::learn_vpcs`]) or,
//!   when unknown, by one DescribeRouteTables of the master's tables.
//! - **Found answers are kept until EC2 says the target is gone**: the caller
//!   evicts them ([`Targets::evict`]) on a write answered with
//!   [`Ec2Error::is_target_gone`] or a read-back that
//!   [`crate::decide::plan::CurrentRoute::shows_target_gone`]. After [`REFRESH_AFTER`] an
//!   answer is still used, but [`Targets::is_cached`] says no, so the warm-up
//!   looks it up again in the background (an ENI replaced while its node was a
//!   replica heals before the failover needs it).
//! - **"No such IP" answers are kept for [`NOT_FOUND_TTL`]**, so a reconcile
//!   every few seconds does not ask EC2 each time. Errors of the call itself
//!   (network, throttling, permission) are not cached.
//! - **One lookup at a time per (scope, IP)** (single-flight): the warm-up and a
//!   write that need the same address share one DescribeNetworkInterfaces.
//!
//! Files: `cache.rs` holds the cache's rules; `discover.rs` asks EC2 (the
//! VPC scope, the single-flight lookup); this file answers from what is
//! known (the `nodes` map, host names, the cache), warms it up and evicts.
//!
//! [`Ec2Error::is_target_gone`]: crate::decide::facts::Ec2Error::is_target_gone

mod cache;
mod discover;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::act::ec2::Ec2;
use crate::act::resolve::Names;
use crate::config::static_target;
use crate::config::{MasterConfig, RouteTableId, Target};
use crate::decide::facts::TargetError;
use crate::watch::event::Addr;

pub use cache::{Cached, DiscoveryCache, DiscoveryKey, NOT_FOUND_TTL, REFRESH_AFTER};

#[derive(Default)]
struct Shared {
    cache: Mutex<DiscoveryCache>,
    /// Host names (Sentinel's `announce-hostnames yes`) → IP addresses.
    names: Names,
    /// Route table → its VPC (a table never changes VPC).
    table_vpc: Mutex<HashMap<RouteTableId, String>>,
    /// One lock per key being looked up (single-flight).
    flights: Mutex<HashMap<DiscoveryKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// The time source of the cache (injected in tests).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Target resolution with a shared discovery cache ((VPCs, private IP) → ENI).
/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Targets {
    shared: Arc<Shared>,
    clock: Clock,
}

impl Default for Targets {
    fn default() -> Targets {
        Targets::with_clock(Arc::new(Instant::now))
    }
}

impl Targets {
    /// A cache that reads the time from `clock` (tests advance it by hand).
    pub fn with_clock(clock: Clock) -> Targets {
        Targets {
            shared: Arc::default(),
            clock,
        }
    }

    /// As [`Targets::with_clock`], resolving host names through `names`.
    pub fn with_names(clock: Clock, names: Names) -> Targets {
        Targets {
            shared: Arc::new(Shared {
                names,
                ..Shared::default()
            }),
            clock,
        }
    }

    /// The IP addresses `addr` stands for without I/O: its own, or its host
    /// name's if resolved recently. `None`: resolve the name first.
    fn cached_ips(&self, addr: &Addr) -> Option<Result<Vec<String>, TargetError>> {
        if !addr.is_name() {
            return Some(Ok(vec![addr.host.clone()]));
        }
        Some(self.name_answer(addr, self.shared.names.cached(&addr.host, self.now())?))
    }

    /// The IP addresses `addr` stands for, resolving its host name if needed.
    async fn ips(&self, addr: &Addr) -> Result<Vec<String>, TargetError> {
        if !addr.is_name() {
            return Ok(vec![addr.host.clone()]);
        }
        let answer = self.shared.names.resolve(&addr.host, self.now()).await;
        self.name_answer(addr, answer)
    }

    fn name_answer(
        &self,
        addr: &Addr,
        answer: Result<Vec<std::net::IpAddr>, String>,
    ) -> Result<Vec<String>, TargetError> {
        answer
            .map(|ips| ips.iter().map(|ip| ip.to_string()).collect())
            .map_err(|why| TargetError::Unresolved {
                addr: addr.clone(),
                why,
            })
    }

    /// The static `nodes` entry for `addr`: by its own host (IP or name), then by
    /// each address its name resolves to.
    fn static_for(
        master: &str,
        nodes: &std::collections::BTreeMap<crate::config::NodeKey, Target>,
        addr: &Addr,
        ips: Option<&[String]>,
    ) -> Result<Target, TargetError> {
        static_target(nodes, addr)
            .or_else(|| {
                ips?.iter()
                    .find_map(|ip| static_target(nodes, &Addr::new(ip, addr.port)))
            })
            .ok_or_else(|| TargetError::NotInNodes {
                master: master.to_owned(),
                addr: addr.clone(),
            })
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    /// The target if it is known without I/O (static map or cache). `None`:
    /// unknown, resolve it. `Some(Err)` for an address EC2 recently said no
    /// interface holds (for [`NOT_FOUND_TTL`]).
    pub fn cached(
        &self,
        master: &str,
        cfg: &MasterConfig,
        addr: &Addr,
    ) -> Option<Result<Target, TargetError>> {
        match &cfg.nodes {
            Some(nodes) => {
                if let Some(t) = static_target(nodes, addr) {
                    return Some(Ok(t));
                }
                let ips = match self.cached_ips(addr)? {
                    Ok(ips) => ips,
                    Err(e) => return Some(Err(e)),
                };
                Some(Self::static_for(master, nodes, addr, Some(&ips)))
            }
            None => {
                let vpcs = self.known_scope(cfg)?;
                let ips = match self.cached_ips(addr)? {
                    Ok(ips) => ips,
                    Err(e) => return Some(Err(e)),
                };
                let cache = self.shared.cache.lock().ok()?;
                let mut first_miss = None;
                for ip in ips {
                    let key = DiscoveryKey {
                        vpcs: vpcs.clone(),
                        ip,
                    };
                    match cache.get(&key, self.now()) {
                        Cached::Fresh(t) | Cached::Stale(t) => return Some(Ok(t)),
                        Cached::Absent(e) => {
                            first_miss.get_or_insert(e);
                        }
                        Cached::Unknown => return None,
                    }
                }
                first_miss.map(Err)
            }
        }
    }

    /// The target, discovering it through EC2 (in the VPCs of the master's route
    /// tables) when it is not cached. A host name is resolved first; the first of
    /// its addresses that EC2 knows wins (IPv4 first).
    pub async fn resolve(
        &self,
        ec2: &Ec2,
        master: &str,
        cfg: &MasterConfig,
        addr: &Addr,
    ) -> Result<Target, TargetError> {
        if let Some(t) = self.cached(master, cfg, addr) {
            return t;
        }
        self.warm(ec2, master, cfg, addr).await
    }

    /// Warm-up for a master: resolves `addr`'s name and, without a `nodes`
    /// map, looks it up in EC2 unless a fresh answer is cached. Call it for each
    /// replica after a reconcile.
    pub async fn warm(
        &self,
        ec2: &Ec2,
        master: &str,
        cfg: &MasterConfig,
        addr: &Addr,
    ) -> Result<Target, TargetError> {
        let ips = self.ips(addr).await?;
        if let Some(nodes) = &cfg.nodes {
            return Self::static_for(master, nodes, addr, Some(&ips));
        }
        let vpcs = self.scope(ec2, cfg, &ips[0]).await?;
        let mut last = None;
        for ip in &ips {
            match self.lookup(ec2, vpcs.clone(), ip).await {
                Ok(t) => return Ok(t),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("a resolved name has at least one address"))
    }

    /// Whether `addr` has a fresh answer (found, or recently not found), so that a
    /// warm-up need not ask EC2 (or the resolver).
    pub fn is_cached(&self, addr: &Addr) -> bool {
        let Some(Ok(ips)) = self.cached_ips(addr) else {
            return false;
        };
        self.shared
            .cache
            .lock()
            .map(|c| ips.iter().any(|ip| c.knows(ip, self.now())))
            .unwrap_or(false)
    }

    /// Forgets the discovered target of `addr`: call it when a write to it was
    /// answered [`Ec2Error::is_target_gone`], or when the route read back after the
    /// write [`crate::decide::plan::CurrentRoute::shows_target_gone`]. The next
    /// [`Targets::cached`] says `None` and the next resolve asks EC2 again. Returns
    /// whether a target was forgotten (`false` for a static `nodes` map: that needs
    /// the config fixed).
    ///
    /// [`Ec2Error::is_target_gone`]: crate::decide::facts::Ec2Error::is_target_gone
    pub fn evict(&self, addr: &Addr) -> bool {
        let ips = match self.cached_ips(addr) {
            Some(Ok(ips)) => ips,
            _ => vec![addr.host.clone()],
        };
        if addr.is_name() {
            // The node may have been replaced under the same name.
            self.shared.names.forget(&addr.host);
        }
        self.shared
            .cache
            .lock()
            .map(|mut c| ips.iter().filter(|ip| c.evict_ip(ip)).count() > 0)
            .unwrap_or(false)
    }

    /// Forgets every address that resolved to `target` (when only the target is
    /// known, e.g. a blackhole route read back).
    pub fn evict_target(&self, target: &Target) -> bool {
        self.shared
            .cache
            .lock()
            .map(|mut c| c.evict_target(target))
            .unwrap_or(false)
    }
}

/// What the unit tests of `cache.rs` and `discover.rs` look up.
#[cfg(test)]
mod fixtures {
    use super::*;
    use crate::decide::facts::DiscoveryMiss;

    pub(super) fn eni(s: &str) -> Target {
        Target::Eni(s.to_owned().try_into().unwrap())
    }
    pub(super) fn key(ip: &str) -> DiscoveryKey {
        DiscoveryKey {
            vpcs: vec!["vpc-1".into()],
            ip: ip.into(),
        }
    }
    pub(super) fn not_found(ip: &str) -> TargetError {
        TargetError::NotFound(DiscoveryMiss::InVpcs {
            ip: ip.into(),
            vpcs: "vpc-1".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes_config(nodes: &str) -> crate::config::Config {
        let text = format!(
            "sentinels: [\"127.0.0.2:26379\"]\naws: {{ region: us-east-1 }}\nmasters:\n  m:\n    vip: 172.16.0.10/32\n    route_tables: [rtb-1]\n    nodes: {nodes}\n"
        );
        crate::config::Config::parse(&text).expect("config")
    }

    #[tokio::test]
    async fn host_names_find_static_nodes_by_name_or_by_their_address() {
        let names = Names::new(crate::act::resolve::fixed([
            (
                "redis-a.internal".to_owned(),
                vec!["10.0.1.11".parse().unwrap()],
            ),
            (
                "redis-b.internal".to_owned(),
                vec!["fd00::12".parse().unwrap()],
            ),
        ]));
        let targets = Targets::with_names(Arc::new(Instant::now), names);
        let all = nodes_config(
            "{ \"10.0.1.11:6379\": { instance_id: i-0aaa }, \"fd00::12\": { network_interface_id: eni-0bbb }, \"Redis-C.Internal\": { instance_id: i-0ccc } }",
        );
        let cfg = &all.masters["m"];
        // A static map never calls EC2.
        let ec2 = Ec2::new(&all.aws).await;
        // Named in the map (case-insensitively): no resolving needed.
        let c = Addr::new("redis-c.INTERNAL", 6379);
        assert!(matches!(
            targets.cached("m", cfg, &c),
            Some(Ok(Target::Instance(_)))
        ));
        // Named by Sentinel, keyed by IP: unknown until resolved, then found.
        let a = Addr::new("REDIS-A.internal", 6379);
        assert!(targets.cached("m", cfg, &a).is_none(), "not resolved yet");
        let t = targets.resolve(&ec2, "m", cfg, &a).await.unwrap();
        assert_eq!(t.to_string(), "i-0aaa");
        assert!(
            matches!(targets.cached("m", cfg, &a), Some(Ok(_))),
            "now without I/O"
        );
        // An IPv6 key without port.
        let b = Addr::new("redis-b.internal", 6380);
        assert_eq!(
            targets
                .resolve(&ec2, "m", cfg, &b)
                .await
                .unwrap()
                .to_string(),
            "eni-0bbb"
        );
        // A name that resolves to nothing in the map, and one that does not resolve.
        let err = targets
            .resolve(&ec2, "m", cfg, &Addr::new("redis-a.internal", 7000))
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::NotInNodes { .. }), "{err}");
        let err = targets
            .resolve(&ec2, "m", cfg, &Addr::new("nowhere.internal", 6379))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("nowhere.internal:6379: host name does not resolve"),
            "{err}"
        );
    }
}
