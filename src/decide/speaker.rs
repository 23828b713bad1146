//! Who speaks to chat sinks when several watchers run (one beside each
//! sentinel, `alerts.local_sentinel` set). Pure: no I/O, no clock.
//!
//! Chat sinks have no idempotency key, so each incident state must reach them
//! from one watcher only, and from a *live* one. Liveness is read from Sentinel
//! itself: every watcher names its connections `sentinel-vip:<local_sentinel>`
//! (`watch::connection_name`) and polls `CLIENT LIST` on every sentinel every
//! [`POLL_EVERY`], which keeps its command connection's `idle` near zero. A
//! watcher whose name is missing (or idle for longer than [`MAX_IDLE_SECS`], as
//! after a host crash that sent no FIN) on a majority of the sentinels that
//! answered is gone, and the next in a fixed order speaks for it.
//!
//! The order is the configured sentinels sorted by address: every watcher of
//! the deployment computes the same one from its config, however its list is
//! written. It depends on no event: `+elected-leader` is published by the
//! leader only, so a watcher that missed it would put another watcher first
//! and each would leave the message to the other (none posts).
//!
//! **Architecture Invariant:** when this watcher cannot tell whether the one
//! ahead of it is alive, it speaks (at-least-once: a rare duplicate beats a lost
//! page).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::addr::Addr;

/// How often each watcher reads `CLIENT LIST` on every sentinel.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long one `CLIENT LIST` read may take.
pub(crate) const POLL_TIMEOUT: Duration = Duration::from_millis(1500);
/// A liveness view older than this is not used (the poller is stuck).
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(10);
/// A watcher connection idle for longer than this is not a live watcher: a live
/// one touches its command connection every [`POLL_EVERY`].
pub(crate) const MAX_IDLE_SECS: u64 = 10;

/// Which watchers are alive, as far as this watcher can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// No sentinel's `CLIENT LIST` could be read, or the last view is stale.
    Unknown,
    /// Watchers (by their local sentinel, `host:port`) connected to a majority
    /// of the `answered` sentinels; every other configured watcher is gone.
    Known {
        alive: BTreeSet<String>,
        answered: usize,
    },
}

impl Liveness {
    fn is_alive(&self, watcher: &Addr) -> Option<bool> {
        match self {
            Liveness::Unknown => None,
            Liveness::Known { alive, .. } => Some(alive.contains(&watcher.to_string())),
        }
    }
}

/// Connection names in one sentinel's `CLIENT LIST` output whose connection
/// was active within `max_idle_secs`. Lines or fields it cannot read are skipped.
pub(crate) fn live_names(client_list: &str, max_idle_secs: u64) -> BTreeSet<String> {
    client_list
        .lines()
        .filter_map(|line| {
            let mut name = None;
            let mut idle = None;
            for field in line.split_whitespace() {
                match field.split_once('=') {
                    Some(("name", v)) if !v.is_empty() => name = Some(v),
                    Some(("idle", v)) => idle = v.parse::<u64>().ok(),
                    _ => {}
                }
            }
            match (name, idle) {
                (Some(n), Some(i)) if i <= max_idle_secs => Some(n.to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// The liveness verdict from one poll: `lists[i]` is sentinel `i`'s `CLIENT
/// LIST` (`None`: it did not answer). A watcher is gone when its name is missing
/// on a majority of the sentinels that answered; with no answer at all, nobody
/// can tell.
pub(crate) fn liveness(sentinels: &[Addr], lists: &[Option<String>]) -> Liveness {
    let seen: Vec<BTreeSet<String>> = lists
        .iter()
        .flatten()
        .map(|l| live_names(l, MAX_IDLE_SECS))
        .collect();
    let answered = seen.len();
    if answered == 0 {
        return Liveness::Unknown;
    }
    let alive = sentinels
        .iter()
        .filter(|s| {
            let name = crate::watch::connection_name(Some(s));
            let missing = seen.iter().filter(|names| !names.contains(&name)).count();
            missing < crate::config::majority_of(answered)
        })
        .map(|s| s.to_string())
        .collect();
    Liveness::Known { alive, answered }
}

/// Whether this watcher speaks for chat sinks about an incident: it is first
/// among the live watchers ([`rank`] 0).
pub(crate) fn designated(local: Option<&Addr>, sentinels: &[Addr], live: &Liveness) -> bool {
    rank(local, sentinels, live) == 0
}

/// This watcher's place among the live ones for chat: 0 speaks. (Route
/// writes use [`write_rank`], which differs only for an unknown liveness.)
///
/// Without `local_sentinel` every watcher is first. With it, watchers are
/// taken in a fixed order — by sentinel address, the same on every watcher and
/// for every master — and those seen alive ahead of this one are counted;
/// gone watchers are skipped. When the liveness of one ahead is unknown, this
/// one counts itself first (at-least-once: a duplicate post beats a lost
/// one). This watcher is alive to itself whatever the sentinels say.
pub(crate) fn rank(local: Option<&Addr>, sentinels: &[Addr], live: &Liveness) -> usize {
    ahead_of(local, sentinels, live, false)
}

/// This watcher's place in the route-writing order: like [`rank`], except
/// that a watcher ahead whose liveness is unknown (no `CLIENT LIST` answered
/// yet after a start or reload, none answers, or the view is stale) counts as
/// alive. That is safe for writes, unlike for chat: a standby always checks
/// after its wait and writes what is still wrong, so a wrong guess costs one
/// wait, while counting itself first would make every watcher write.
pub(crate) fn write_rank(local: Option<&Addr>, sentinels: &[Addr], live: &Liveness) -> usize {
    ahead_of(local, sentinels, live, true)
}

/// The live watchers ahead of `local` in the order; one whose liveness is
/// unknown counts as alive when `unknown_is_alive`, else makes `local` first.
/// Gone watchers are skipped; a `local` that is not listed comes after all.
fn ahead_of(
    local: Option<&Addr>,
    sentinels: &[Addr],
    live: &Liveness,
    unknown_is_alive: bool,
) -> usize {
    let Some(local) = local else { return 0 };
    let mut ahead = 0;
    for w in speaking_order(sentinels) {
        if w == local {
            return ahead;
        }
        match live.is_alive(w) {
            Some(true) => ahead += 1,
            Some(false) => {}
            None if unknown_is_alive => ahead += 1,
            None => return 0,
        }
    }
    ahead
}

/// The configured sentinels by address (numeric IPs first, in numeric order;
/// then hostnames; then port): the same on every watcher whatever order its
/// list is written in.
fn speaking_order(sentinels: &[Addr]) -> Vec<&Addr> {
    let mut order: Vec<&Addr> = sentinels.iter().collect();
    order.sort_by_key(|s| {
        (
            s.host.parse::<std::net::IpAddr>().is_err(),
            s.host.parse::<std::net::IpAddr>().ok(),
            s.host.clone(),
            s.port,
        )
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<Addr> {
        ["10.0.0.12:26379", "10.0.0.2:26379", "10.0.0.11:26379"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    }

    /// A `CLIENT LIST` line as Redis 7.0 prints it.
    fn line(id: u32, name: &str, idle: u64) -> String {
        format!(
            "id={id} addr=10.0.0.9:5{id} laddr=10.0.0.2:26379 fd=9 name={name} age=40 idle={idle} \
             flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 \
             multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1800 events=r cmd=client|list \
             user=default redir=-1 resp=2\n"
        )
    }

    /// CLIENT LIST of one sentinel with the given watchers (by index into
    /// `addrs()`) connected and active, plus unrelated clients.
    fn list_with(watchers: &[usize]) -> String {
        let s = addrs();
        let mut out = line(1, "", 0);
        out.push_str(&line(2, "sentinel-vip", 0));
        for (n, w) in watchers.iter().enumerate() {
            let name = crate::watch::connection_name(Some(&s[*w]));
            out.push_str(&line(10 + n as u32 * 2, &name, 1));
            out.push_str(&line(11 + n as u32 * 2, &name, 300));
        }
        out
    }

    fn all_alive() -> Liveness {
        let l = Some(list_with(&[0, 1, 2]));
        liveness(&addrs(), &[l.clone(), l.clone(), l])
    }

    /// Which of the running watchers speak (a watcher that is gone runs no
    /// code: it is left out).
    fn speakers(live: &Liveness) -> Vec<usize> {
        let s = addrs();
        (0..s.len())
            .filter(|i| match live {
                Liveness::Known { alive, .. } => alive.contains(&s[*i].to_string()),
                Liveness::Unknown => true,
            })
            .filter(|i| designated(Some(&s[*i]), &s, live))
            .collect()
    }

    #[test]
    fn client_list_gives_the_names_of_active_connections() {
        let names = live_names(&list_with(&[1]), MAX_IDLE_SECS);
        assert!(names.contains("sentinel-vip:10.0.0.2:26379"), "{names:?}");
        assert!(names.contains("sentinel-vip"));
        assert_eq!(names.len(), 2, "unnamed clients are skipped: {names:?}");
        // A connection idle for minutes (host gone without FIN) is not alive.
        let stale = line(5, "sentinel-vip:10.0.0.11:26379", 300);
        assert!(live_names(&stale, MAX_IDLE_SECS).is_empty());
        // Garbage is skipped, not an error.
        assert!(live_names("ERR unknown\n\nname=x idle=abc", MAX_IDLE_SECS).is_empty());
    }

    #[test]
    fn exactly_one_watcher_speaks_while_all_are_alive() {
        // The lowest address (numerically): 10.0.0.2, index 1.
        assert_eq!(speakers(&all_alive()), vec![1]);
    }

    #[test]
    fn every_watcher_computes_the_same_order_whatever_its_list_order() {
        // Each watcher's config may list the sentinels in another order; what
        // each one decides must still give exactly one speaker. (The order used
        // to put the failover leader's watcher first: only the leader publishes
        // +elected-leader, so a watcher that missed it put another first, and
        // with watcher 0 missing it nobody spoke.)
        let s = addrs();
        let live = all_alive();
        let mut reversed = s.clone();
        reversed.reverse();
        let lists = [
            s.clone(),
            reversed,
            vec![s[2].clone(), s[0].clone(), s[1].clone()],
        ];
        let speaking: Vec<usize> = (0..3)
            .filter(|i| designated(Some(&s[*i]), &lists[*i], &live))
            .collect();
        assert_eq!(speaking, vec![1]);
    }

    #[test]
    fn next_in_order_speaks_when_the_first_is_gone() {
        let s = addrs();
        // Watcher 1 (10.0.0.2, first) killed: its name vanished from every sentinel.
        let l = Some(list_with(&[0, 2]));
        let live = liveness(&s, &[l.clone(), l.clone(), l]);
        assert_eq!(
            live,
            Liveness::Known {
                alive: ["10.0.0.12:26379", "10.0.0.11:26379"]
                    .map(String::from)
                    .into(),
                answered: 3
            }
        );
        // Next by address: 10.0.0.11 (index 2).
        assert_eq!(speakers(&live), vec![2]);
        // That one gone too → 10.0.0.12.
        let l = Some(list_with(&[0]));
        let live = liveness(&s, &[l.clone(), l.clone(), l]);
        assert_eq!(speakers(&live), vec![0]);
    }

    #[test]
    fn a_watcher_missing_on_a_minority_of_sentinels_is_still_alive() {
        let s = addrs();
        // Watcher 1 (first) lost its connection to one sentinel only.
        let live = liveness(
            &s,
            &[
                Some(list_with(&[0, 2])),
                Some(list_with(&[0, 1, 2])),
                Some(list_with(&[0, 1, 2])),
            ],
        );
        assert_eq!(speakers(&live), vec![1]);
        // Missing on two of two that answered (third unreachable): gone.
        let live = liveness(
            &s,
            &[Some(list_with(&[0, 2])), None, Some(list_with(&[0, 2]))],
        );
        assert_eq!(speakers(&live), vec![2]);
        // Missing on one of two that answered: not a majority, still alive.
        let live = liveness(
            &s,
            &[Some(list_with(&[0, 2])), None, Some(list_with(&[0, 1, 2]))],
        );
        assert_eq!(speakers(&live), vec![1]);
    }

    #[test]
    fn when_no_client_list_can_be_read_every_watcher_speaks() {
        let s = addrs();
        let live = liveness(&s, &[None, None, None]);
        assert_eq!(live, Liveness::Unknown);
        // At-least-once: nobody can tell whether the one ahead is alive.
        assert_eq!(speakers(&live), vec![0, 1, 2]);
    }

    #[test]
    fn a_watcher_that_sees_itself_missing_still_speaks_when_first() {
        let s = addrs();
        // This watcher (1, the first) is cut off from the sentinels: the
        // others take over, and it speaks too (a duplicate, not a loss).
        let l = Some(list_with(&[0, 2]));
        let live = liveness(&s, &[l.clone(), l.clone(), l]);
        assert!(designated(Some(&s[1]), &s, &live));
        assert!(designated(Some(&s[2]), &s, &live));
        assert!(!designated(Some(&s[0]), &s, &live));
    }

    #[test]
    fn rank_counts_the_live_watchers_ahead_and_skips_the_gone() {
        let s = addrs();
        // Order by address: 10.0.0.2 (index 1), 10.0.0.11 (2), 10.0.0.12 (0).
        let all = all_alive();
        assert_eq!(rank(Some(&s[1]), &s, &all), 0);
        assert_eq!(rank(Some(&s[2]), &s, &all), 1);
        assert_eq!(rank(Some(&s[0]), &s, &all), 2);
        // The first one gone: every other moves up one step.
        let l = Some(list_with(&[0, 2]));
        let first_gone = liveness(&s, &[l.clone(), l.clone(), l]);
        assert_eq!(rank(Some(&s[2]), &s, &first_gone), 0);
        assert_eq!(rank(Some(&s[0]), &s, &first_gone), 1);
        // Nobody can tell: for chat each is first (at-least-once) ...
        for w in &s {
            assert_eq!(rank(Some(w), &s, &Liveness::Unknown), 0);
        }
        assert_eq!(rank(None, &s, &all), 0);
        // ... but for writes each keeps its place (standbys check anyway).
        let places: Vec<usize> = s
            .iter()
            .map(|w| write_rank(Some(w), &s, &Liveness::Unknown))
            .collect();
        assert_eq!(places, vec![2, 0, 1]);
        assert_eq!(write_rank(Some(&s[0]), &s, &first_gone), 1);
        assert_eq!(write_rank(None, &s, &Liveness::Unknown), 0);
    }

    #[test]
    fn without_local_sentinel_every_watcher_speaks() {
        assert!(designated(None, &addrs(), &all_alive()));
    }

    #[test]
    fn a_watcher_not_in_the_list_speaks_only_when_all_listed_are_gone() {
        let s = addrs();
        let stranger: Addr = "10.0.0.99:26379".parse().unwrap();
        assert!(!designated(Some(&stranger), &s, &all_alive()));
        let l = Some(list_with(&[]));
        let none_alive = liveness(&s, &[l.clone(), l.clone(), l]);
        assert!(designated(Some(&stranger), &s, &none_alive));
    }
}
