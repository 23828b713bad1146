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

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::act::ec2::Ec2;
use crate::act::resolve::Names;
use crate::config::static_target;
use crate::config::{MasterConfig, RouteTableId, Target};
use crate::decide::facts::{DiscoveryMiss, TableRead, TargetError};
use crate::watch::event::Addr;

/// How long "no network interface holds this IP" is believed.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(10);
/// Age after which a found target is looked up again by the warm-up (still used
/// meanwhile).
pub const REFRESH_AFTER: Duration = Duration::from_secs(300);

/// Where a lookup looks: the VPCs (sorted; empty = every VPC) and the IP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiscoveryKey {
    pub vpcs: Vec<String>,
    pub ip: String,
}

#[derive(Debug, Clone)]
enum Entry {
    Found { target: Target, at: Instant },
    NotFound { error: TargetError, at: Instant },
}

/// What the cache knows about a key at a given time.
#[derive(Debug, Clone)]
pub enum Cached {
    /// A target younger than [`REFRESH_AFTER`].
    Fresh(Target),
    /// A target older than [`REFRESH_AFTER`]: use it, and look it up again.
    Stale(Target),
    /// "Not found" younger than [`NOT_FOUND_TTL`].
    Absent(TargetError),
    /// Nothing, or an expired "not found".
    Unknown,
}

/// The discovery cache's rules over plain data and a given `now`. Pure.
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    entries: HashMap<DiscoveryKey, Entry>,
}

impl DiscoveryCache {
    pub fn get(&self, key: &DiscoveryKey, now: Instant) -> Cached {
        match self.entries.get(key) {
            Some(Entry::Found { target, at }) => {
                if now.saturating_duration_since(*at) < REFRESH_AFTER {
                    Cached::Fresh(target.clone())
                } else {
                    Cached::Stale(target.clone())
                }
            }
            Some(Entry::NotFound { error, at })
                if now.saturating_duration_since(*at) < NOT_FOUND_TTL =>
            {
                Cached::Absent(error.clone())
            }
            _ => Cached::Unknown,
        }
    }

    /// Records a lookup's answer. A failed call is not an answer: it leaves
    /// what was known (a stale target stays usable while EC2 is unreachable).
    pub fn record(
        &mut self,
        key: DiscoveryKey,
        answer: &Result<Target, TargetError>,
        now: Instant,
    ) {
        match answer {
            Ok(target) => {
                self.entries.insert(
                    key,
                    Entry::Found {
                        target: target.clone(),
                        at: now,
                    },
                );
            }
            Err(e) if e.is_answer() => {
                self.entries.insert(
                    key,
                    Entry::NotFound {
                        error: e.clone(),
                        at: now,
                    },
                );
            }
            Err(_) => {}
        }
    }

    /// Forgets everything known about `ip` (every scope). Returns whether a
    /// found target was dropped.
    pub fn evict_ip(&mut self, ip: &str) -> bool {
        let mut dropped = false;
        self.entries.retain(|k, e| {
            let hit = k.ip == ip;
            dropped |= hit && matches!(e, Entry::Found { .. });
            !hit
        });
        dropped
    }

    /// Forgets every address that resolved to `target`.
    pub fn evict_target(&mut self, target: &Target) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| !matches!(e, Entry::Found { target: t, .. } if t == target));
        before != self.entries.len()
    }

    /// Whether `ip` has an answer that needs no lookup now (in any scope).
    pub fn knows(&self, ip: &str, now: Instant) -> bool {
        self.entries
            .keys()
            .filter(|k| k.ip == ip)
            .any(|k| matches!(self.get(k, now), Cached::Fresh(_) | Cached::Absent(_)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

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

    /// Looks `ip` up in EC2 and caches the answer, scoped to every VPC learned so
    /// far (all VPCs when none is known yet). Kept for callers without the
    /// master's config; prefer [`Targets::warm`], which scopes to one master's tables.
    pub async fn discover(&self, ec2: &Ec2, ip: &str) -> Result<Target, TargetError> {
        let vpcs: BTreeSet<String> = self
            .shared
            .table_vpc
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        self.lookup(ec2, vpcs.into_iter().collect(), ip).await
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

    /// Records the VPC of every table read, so discovery needs no extra call.
    pub fn learn_vpcs<'a>(
        &self,
        reads: impl IntoIterator<Item = (&'a RouteTableId, &'a TableRead)>,
    ) {
        if let Ok(mut m) = self.shared.table_vpc.lock() {
            for (id, read) in reads {
                if let Some(vpc) = &read.vpc_id {
                    m.insert(id.clone(), vpc.clone());
                }
            }
        }
    }

    /// The VPCs of `cfg`'s route tables when every one is known.
    fn known_scope(&self, cfg: &MasterConfig) -> Option<Vec<String>> {
        let m = self.shared.table_vpc.lock().ok()?;
        let vpcs: Option<BTreeSet<String>> =
            cfg.route_tables.iter().map(|t| m.get(t).cloned()).collect();
        vpcs.map(|v| v.into_iter().collect())
    }

    /// The VPCs of `cfg`'s route tables, reading the tables once if needed. Tables
    /// that are gone are left out; none readable is an error.
    async fn scope(
        &self,
        ec2: &Ec2,
        cfg: &MasterConfig,
        ip: &str,
    ) -> Result<Vec<String>, TargetError> {
        if let Some(v) = self.known_scope(cfg) {
            return Ok(v);
        }
        let tables: BTreeSet<RouteTableId> = cfg.route_tables.iter().cloned().collect();
        let reads = ec2.read_each_table(&tables, &BTreeSet::new()).await?;
        self.learn_vpcs(
            reads
                .iter()
                .filter_map(|(t, r)| r.as_ref().ok().map(|r| (t, r))),
        );
        let vpcs: BTreeSet<String> = reads
            .values()
            .filter_map(|r| r.as_ref().ok().and_then(|r| r.vpc_id.clone()))
            .collect();
        if vpcs.is_empty() {
            let reason = reads
                .values()
                .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(TargetError::NotFound(DiscoveryMiss::NoScope {
                ip: ip.to_owned(),
                tables: cfg
                    .route_tables
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason,
            }));
        }
        Ok(vpcs.into_iter().collect())
    }

    /// Single-flight lookup of `ip` in `vpcs`, through the cache.
    async fn lookup(&self, ec2: &Ec2, vpcs: Vec<String>, ip: &str) -> Result<Target, TargetError> {
        let key = DiscoveryKey {
            vpcs,
            ip: ip.to_owned(),
        };
        let ask_key = key.clone();
        self.single_flight(key, move || async move {
            let found = ec2.find_interfaces(&ask_key.ip, &ask_key.vpcs).await?;
            let scope = ask_key.vpcs.join(", ");
            match found.as_slice() {
                [] if ask_key.vpcs.is_empty() => {
                    Err(TargetError::NotFound(DiscoveryMiss::Anywhere {
                        ip: ask_key.ip.clone(),
                    }))
                }
                [] => Err(TargetError::NotFound(DiscoveryMiss::InVpcs {
                    ip: ask_key.ip.clone(),
                    vpcs: scope,
                })),
                [one] => Ok(Target::Eni(one.eni_id.clone())),
                many => Err(TargetError::NotFound(DiscoveryMiss::Ambiguous {
                    ip: ask_key.ip.clone(),
                    enis: many
                        .iter()
                        .map(|f| {
                            format!(
                                "{} in {}",
                                f.eni_id,
                                f.vpc_id.as_deref().unwrap_or("unknown VPC")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    vpcs: if scope.is_empty() {
                        "all VPCs".into()
                    } else {
                        scope
                    },
                })),
            }
        })
        .await
    }

    /// Runs `ask` for `key` unless a fresh answer is cached, at most one at a
    /// time per key: a caller that waited for another's lookup takes its answer.
    async fn single_flight<F, Fut>(&self, key: DiscoveryKey, ask: F) -> Result<Target, TargetError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Target, TargetError>>,
    {
        let flight = {
            let Ok(mut flights) = self.shared.flights.lock() else {
                return ask().await;
            };
            flights.entry(key.clone()).or_default().clone()
        };
        let answer = {
            let _turn = flight.lock().await;
            let known = self
                .shared
                .cache
                .lock()
                .map(|c| c.get(&key, self.now()))
                .unwrap_or(Cached::Unknown);
            match known {
                Cached::Fresh(t) => Ok(t),
                Cached::Absent(e) => Err(e),
                Cached::Stale(_) | Cached::Unknown => {
                    let answer = ask().await;
                    if let Ok(mut c) = self.shared.cache.lock() {
                        c.record(key.clone(), &answer, self.now());
                    }
                    answer
                }
            }
        };
        if let Ok(mut flights) = self.shared.flights.lock() {
            // Drop the lock entry when nobody else holds or waits on it.
            if flights
                .get(&key)
                .is_some_and(|f| Arc::ptr_eq(f, &flight) && Arc::strong_count(f) == 2)
            {
                flights.remove(&key);
            }
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn eni(s: &str) -> Target {
        Target::Eni(s.to_owned().try_into().unwrap())
    }
    fn key(ip: &str) -> DiscoveryKey {
        DiscoveryKey {
            vpcs: vec!["vpc-1".into()],
            ip: ip.into(),
        }
    }
    fn not_found(ip: &str) -> TargetError {
        TargetError::NotFound(DiscoveryMiss::InVpcs {
            ip: ip.into(),
            vpcs: "vpc-1".into(),
        })
    }
    fn call_failed() -> TargetError {
        TargetError::Ec2(crate::decide::facts::Ec2Error {
            operation: "DescribeNetworkInterfaces",
            subject: "private IP 10.0.1.11".into(),
            class: crate::decide::facts::ErrorClass::Transient,
            code: None,
            message: "timed out".into(),
        })
    }

    #[test]
    fn found_target_is_fresh_then_stale_but_still_used() {
        let t0 = Instant::now();
        let mut c = DiscoveryCache::default();
        c.record(key("10.0.1.11"), &Ok(eni("eni-1")), t0);
        assert!(matches!(c.get(&key("10.0.1.11"), t0), Cached::Fresh(t) if t == eni("eni-1")));
        assert!(c.knows("10.0.1.11", t0 + REFRESH_AFTER - Duration::from_secs(1)));
        let later = t0 + REFRESH_AFTER;
        assert!(matches!(c.get(&key("10.0.1.11"), later), Cached::Stale(t) if t == eni("eni-1")));
        assert!(
            !c.knows("10.0.1.11", later),
            "a stale answer is refreshed by the warm-up"
        );
    }

    #[test]
    fn not_found_is_believed_for_ten_seconds_only() {
        let t0 = Instant::now();
        let mut c = DiscoveryCache::default();
        c.record(key("10.0.1.11"), &Err(not_found("10.0.1.11")), t0);
        assert!(matches!(
            c.get(&key("10.0.1.11"), t0 + Duration::from_secs(9)),
            Cached::Absent(_)
        ));
        assert!(c.knows("10.0.1.11", t0 + Duration::from_secs(9)));
        assert!(matches!(
            c.get(&key("10.0.1.11"), t0 + NOT_FOUND_TTL),
            Cached::Unknown
        ));
        assert!(!c.knows("10.0.1.11", t0 + NOT_FOUND_TTL));
    }

    #[test]
    fn failed_call_is_not_cached_and_keeps_the_last_target() {
        let t0 = Instant::now();
        let mut c = DiscoveryCache::default();
        c.record(key("10.0.1.11"), &Err(call_failed()), t0);
        assert!(c.is_empty());
        c.record(key("10.0.1.11"), &Ok(eni("eni-1")), t0);
        c.record(key("10.0.1.11"), &Err(call_failed()), t0 + REFRESH_AFTER);
        assert!(
            matches!(c.get(&key("10.0.1.11"), t0 + REFRESH_AFTER), Cached::Stale(t) if t == eni("eni-1"))
        );
    }

    #[test]
    fn evict_forgets_the_address_in_every_scope_and_by_target() {
        let t0 = Instant::now();
        let mut c = DiscoveryCache::default();
        let other_scope = DiscoveryKey {
            vpcs: vec![],
            ip: "10.0.1.11".into(),
        };
        c.record(key("10.0.1.11"), &Ok(eni("eni-1")), t0);
        c.record(other_scope.clone(), &Ok(eni("eni-1")), t0);
        c.record(key("10.0.1.12"), &Ok(eni("eni-2")), t0);
        assert!(c.evict_ip("10.0.1.11"));
        assert!(matches!(c.get(&key("10.0.1.11"), t0), Cached::Unknown));
        assert!(matches!(c.get(&other_scope, t0), Cached::Unknown));
        assert!(!c.evict_ip("10.0.1.11"), "nothing left to evict");
        assert!(c.evict_target(&eni("eni-2")));
        assert!(c.is_empty());
    }

    #[test]
    fn same_ip_in_two_scopes_are_two_answers() {
        let t0 = Instant::now();
        let mut c = DiscoveryCache::default();
        let b = DiscoveryKey {
            vpcs: vec!["vpc-2".into()],
            ip: "10.0.1.11".into(),
        };
        c.record(key("10.0.1.11"), &Ok(eni("eni-a")), t0);
        c.record(b.clone(), &Ok(eni("eni-b")), t0);
        assert!(matches!(c.get(&key("10.0.1.11"), t0), Cached::Fresh(t) if t == eni("eni-a")));
        assert!(matches!(c.get(&b, t0), Cached::Fresh(t) if t == eni("eni-b")));
    }

    /// A clock the test moves by hand.
    fn manual_clock() -> (Clock, Arc<Mutex<Instant>>) {
        let t = Arc::new(Mutex::new(Instant::now()));
        let read = t.clone();
        (Arc::new(move || *read.lock().unwrap()), t)
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_address_ask_ec2_once() {
        let targets = Targets::default();
        let asked = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let lookups = (0..5).map(|_| {
            let (targets, asked, release) = (targets.clone(), asked.clone(), release.clone());
            async move {
                targets
                    .single_flight(key("10.0.1.11"), || async move {
                        asked.fetch_add(1, Ordering::SeqCst);
                        // Held open until every other lookup waits behind it.
                        release.notified().await;
                        Ok(eni("eni-1"))
                    })
                    .await
            }
        });
        // join_all polls every lookup once (one asks, four wait), then the release.
        let releaser = async {
            tokio::task::yield_now().await;
            release.notify_one();
            Ok(eni("eni-1"))
        };
        let answers = futures::future::join_all(
            lookups
                .map(futures::future::Either::Left)
                .chain([futures::future::Either::Right(releaser)]),
        )
        .await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(answers
            .iter()
            .all(|a| matches!(a, Ok(t) if *t == eni("eni-1"))));
        assert!(
            targets.shared.flights.lock().unwrap().is_empty(),
            "no lock left behind"
        );
    }

    #[tokio::test]
    async fn not_found_is_asked_again_only_after_the_ttl() {
        let (clock, t) = manual_clock();
        let targets = Targets::with_clock(clock);
        let asked = Arc::new(AtomicUsize::new(0));
        let ask = |asked: Arc<AtomicUsize>| {
            move || async move {
                asked.fetch_add(1, Ordering::SeqCst);
                Err(not_found("10.0.1.11"))
            }
        };
        for _ in 0..3 {
            let r = targets
                .single_flight(key("10.0.1.11"), ask(asked.clone()))
                .await;
            assert!(matches!(
                r,
                Err(TargetError::NotFound(DiscoveryMiss::InVpcs { .. }))
            ));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(targets.is_cached(&Addr::new("10.0.1.11", 6379)));
        *t.lock().unwrap() += NOT_FOUND_TTL;
        assert!(!targets.is_cached(&Addr::new("10.0.1.11", 6379)));
        let _ = targets
            .single_flight(key("10.0.1.11"), ask(asked.clone()))
            .await;
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stale_target_is_used_by_the_switch_path_and_refreshed_by_the_warm_up() {
        let (clock, t) = manual_clock();
        let targets = Targets::with_clock(clock);
        let _ = targets
            .single_flight(key("10.0.1.11"), || async { Ok(eni("eni-old")) })
            .await;
        *t.lock().unwrap() += REFRESH_AFTER;
        assert!(
            !targets.is_cached(&Addr::new("10.0.1.11", 6379)),
            "the warm-up looks it up again"
        );
        let r = targets
            .single_flight(key("10.0.1.11"), || async { Ok(eni("eni-new")) })
            .await;
        assert!(matches!(r, Ok(t) if t == eni("eni-new")));
        assert!(targets.is_cached(&Addr::new("10.0.1.11", 6379)));
    }

    #[tokio::test]
    async fn evicted_target_is_looked_up_again() {
        let targets = Targets::default();
        let r = targets
            .single_flight(key("10.0.1.11"), || async { Ok(eni("eni-old")) })
            .await;
        assert!(matches!(r, Ok(t) if t == eni("eni-old")));
        // Cached: a second lookup does not ask.
        let r = targets
            .single_flight(key("10.0.1.11"), || async { Ok(eni("eni-never-asked")) })
            .await;
        assert!(matches!(r, Ok(t) if t == eni("eni-old")));
        assert!(targets.evict(&Addr::new("10.0.1.11", 6379)));
        let r = targets
            .single_flight(key("10.0.1.11"), || async { Ok(eni("eni-new")) })
            .await;
        assert!(matches!(r, Ok(t) if t == eni("eni-new")));
    }

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
