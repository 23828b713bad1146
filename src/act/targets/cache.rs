//! The discovery cache's rules ((VPCs, private IP) → ENI, or "not found"),
//! over plain data and a given `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::Target;
use crate::decide::facts::TargetError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::targets::fixtures::{eni, key, not_found};

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
}
