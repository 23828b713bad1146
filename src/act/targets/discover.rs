//! Asking EC2 which network interface holds an address: scoped to the VPCs
//! of the master's route tables, one lookup at a time per (scope, IP),
//! answers kept in the cache.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Cached, DiscoveryKey, Targets};
use crate::act::ec2::Ec2;
use crate::config::{MasterConfig, RouteTableId, Target};
use crate::decide::facts::{DiscoveryMiss, TableRead, TargetError};

impl Targets {
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
    pub(super) fn known_scope(&self, cfg: &MasterConfig) -> Option<Vec<String>> {
        let m = self.shared.table_vpc.lock().ok()?;
        let vpcs: Option<BTreeSet<String>> =
            cfg.route_tables.iter().map(|t| m.get(t).cloned()).collect();
        vpcs.map(|v| v.into_iter().collect())
    }

    /// The VPCs of `cfg`'s route tables, reading the tables once if needed. Tables
    /// that are gone are left out; none readable is an error.
    pub(super) async fn scope(
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
    pub(super) async fn lookup(
        &self,
        ec2: &Ec2,
        vpcs: Vec<String>,
        ip: &str,
    ) -> Result<Target, TargetError> {
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
    use crate::act::targets::fixtures::{eni, key, not_found};
    use crate::act::targets::{Clock, NOT_FOUND_TTL, REFRESH_AFTER};
    use crate::watch::event::Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

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
}
