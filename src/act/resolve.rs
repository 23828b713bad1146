//! Host names to IP addresses, for Redis nodes that Sentinel reports by name
//! (`announce-hostnames yes`): the ENI discovery and the static `nodes` map
//! both need the IP. The system resolver (what `getaddrinfo` answers: DNS,
//! `/etc/hosts`), cached for a short time so a failover's burst of events does
//! not ask once per event, and substitutable in tests ([`Lookup`]).
//!
//! Cache rules (pure, time passed in): an answer is used for [`NAME_TTL`], a
//! failure for [`FAILURE_TTL`] (a name that does not resolve is asked again
//! soon, not hammered per event); when the resolver fails for a name that
//! resolved before, the last good answer is served for up to [`STALE_MAX`].
//! Lookups are bounded by [`LOOKUP_TIMEOUT`].

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a resolved name is believed.
pub const NAME_TTL: Duration = Duration::from_secs(30);
/// How long "this name does not resolve" is believed.
pub const FAILURE_TTL: Duration = Duration::from_secs(2);
/// How long the last good answer is served when the resolver fails.
pub const STALE_MAX: Duration = Duration::from_secs(600);
/// One lookup may take this long before it counts as failed.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// A resolver: host name → its addresses, or why not.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, String>> + Send>>
        + Send
        + Sync,
>;

/// The system resolver (`getaddrinfo` through tokio).
pub fn system() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| e.to_string())?;
            Ok(found.map(|a| a.ip()).collect())
        })
    })
}

/// A fixed table (tests, and anyone who wants no DNS on the failover path).
pub fn fixed(table: impl IntoIterator<Item = (String, Vec<IpAddr>)>) -> Lookup {
    let table: HashMap<String, Vec<IpAddr>> = table
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    Arc::new(move |host: String| {
        let r = table
            .get(&host)
            .cloned()
            .ok_or_else(|| format!("{host}: name not known"));
        Box::pin(async move { r })
    })
}

type Answer = Result<Vec<IpAddr>, String>;

/// Names resolved recently. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Names {
    lookup: Lookup,
    cache: Arc<Mutex<HashMap<String, (Instant, Answer)>>>,
}

impl Default for Names {
    fn default() -> Names {
        Names::new(system())
    }
}

impl Names {
    pub fn new(lookup: Lookup) -> Names {
        Names {
            lookup,
            cache: Arc::default(),
        }
    }

    /// The cached answer for `host` if it is still believed at `now`; `None`:
    /// ask [`Names::resolve`].
    pub fn cached(&self, host: &str, now: Instant) -> Option<Answer> {
        let cache = self.cache.lock().ok()?;
        let (at, answer) = cache.get(host)?;
        let ttl = if answer.is_ok() {
            NAME_TTL
        } else {
            FAILURE_TTL
        };
        (now.saturating_duration_since(*at) < ttl).then(|| answer.clone())
    }

    /// `host`'s addresses, IPv4 first (EC2's private addresses), from the cache
    /// or the resolver. An empty answer is an error.
    pub async fn resolve(&self, host: &str, now: Instant) -> Answer {
        if let Some(a) = self.cached(host, now) {
            return a;
        }
        let answer =
            match tokio::time::timeout(LOOKUP_TIMEOUT, (self.lookup)(host.to_owned())).await {
                Ok(Ok(ips)) if ips.is_empty() => Err(format!("{host}: no address")),
                Ok(Ok(mut ips)) => {
                    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
                    ips.dedup();
                    Ok(ips)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!(
                    "{host}: no answer from the resolver within {LOOKUP_TIMEOUT:?}"
                )),
            };
        let Ok(mut c) = self.cache.lock() else {
            return answer;
        };
        // Stale-if-error: a resolver hiccup during a failover must not undo an
        // answer that was right seconds ago; the last good one is served (and
        // kept, for up to STALE_MAX) until the resolver answers again.
        if answer.is_err() {
            if let Some((at, Ok(last))) = c.get(host) {
                if now.saturating_duration_since(*at) < STALE_MAX {
                    tracing::warn!(host, error = ?answer.as_ref().err(), "host name lookup failed; using its last answer");
                    return Ok(last.clone());
                }
            }
        }
        c.insert(host.to_owned(), (now, answer.clone()));
        answer
    }

    /// Forgets `host` (its node was replaced: ask again).
    pub fn forget(&self, host: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn answers_are_cached_for_their_ttl_and_failures_briefly() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let lookup: Lookup = Arc::new(move |host: String| {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                match host.as_str() {
                    "redis-a.internal" => Ok(vec![ip("fd00::1"), ip("10.0.0.1"), ip("10.0.0.1")]),
                    _ => Err(format!("{host}: Name or service not known")),
                }
            })
        });
        let names = Names::new(lookup);
        let t0 = Instant::now();
        let got = names.resolve("redis-a.internal", t0).await.unwrap();
        assert_eq!(
            got,
            vec![ip("10.0.0.1"), ip("fd00::1")],
            "IPv4 first, no duplicates"
        );
        names
            .resolve("redis-a.internal", t0 + NAME_TTL / 2)
            .await
            .unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(names.cached("redis-a.internal", t0 + NAME_TTL).is_none());
        names
            .resolve("redis-a.internal", t0 + NAME_TTL)
            .await
            .unwrap();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);

        let e = names.resolve("gone.internal", t0).await.unwrap_err();
        assert!(e.contains("gone.internal"), "{e}");
        assert!(names
            .cached("gone.internal", t0 + FAILURE_TTL / 2)
            .is_some());
        assert!(names.cached("gone.internal", t0 + FAILURE_TTL).is_none());
        names.forget("redis-a.internal");
        assert!(names.cached("redis-a.internal", t0 + NAME_TTL).is_none());
    }

    #[tokio::test]
    async fn a_failing_resolver_does_not_undo_the_last_good_answer() {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let u = up.clone();
        let lookup: Lookup = Arc::new(move |host: String| {
            let ok = u.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if ok {
                    Ok(vec![ip("10.0.0.1")])
                } else {
                    Err(format!("{host}: Temporary failure in name resolution"))
                }
            })
        });
        let names = Names::new(lookup);
        let t0 = Instant::now();
        names.resolve("redis-a.internal", t0).await.unwrap();
        up.store(false, std::sync::atomic::Ordering::SeqCst);
        let later = t0 + NAME_TTL;
        assert_eq!(
            names.resolve("redis-a.internal", later).await,
            Ok(vec![ip("10.0.0.1")])
        );
        assert!(names
            .resolve("redis-a.internal", t0 + STALE_MAX)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn the_system_resolver_knows_localhost() {
        let names = Names::default();
        let ips = names.resolve("localhost", Instant::now()).await.unwrap();
        assert!(ips.iter().any(|i| i.is_loopback()), "{ips:?}");
    }
}
