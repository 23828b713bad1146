//! The sentinels' majority view of a master. Pure: no I/O.
//!
//! Events are hints; this is the truth. The desired master is the address that
//! the sentinels reporting the highest config-epoch agree on, and only when a
//! majority of the *configured* sentinels (not merely the reachable ones) holds
//! that address. A lagging majority at an older epoch therefore never reverts a
//! newer switch, and a minority never moves the VIP.

use crate::watch::event::Addr;
use crate::watch::{MasterView, SentinelError, SentinelReport};

/// One sentinel's answer for one master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    View(MasterView),
    /// The sentinel is in TILT mode: its view is not to be trusted.
    Tilt,
    /// The sentinel does not monitor this master.
    NotMonitored,
    /// The sentinel did not answer.
    Unreachable,
}

impl Answer {
    /// One sentinel's read turned into its vote on `master`.
    pub(crate) fn from_report(
        report: &Result<SentinelReport, SentinelError>,
        master: &str,
    ) -> Answer {
        match report {
            Err(_) => Answer::Unreachable,
            Ok(rep) if rep.tilt => Answer::Tilt,
            Ok(rep) => rep
                .masters
                .get(master)
                .cloned()
                .map(Answer::View)
                .unwrap_or(Answer::NotMonitored),
        }
    }
}

/// The outcome of counting the answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A majority of the configured sentinels agree on `addr` at `config_epoch`.
    Master {
        addr: Addr,
        config_epoch: u64,
        votes: usize,
        /// True when a majority flags it objectively down.
        odown: bool,
    },
    /// No majority: change nothing, keep the last good state, say so.
    NoMajority {
        /// Sentinels that gave a usable view.
        usable: usize,
        /// The best candidate and its votes, for the log line.
        best: Option<(Addr, usize)>,
        needed: usize,
    },
}

/// Counts `answers` (one per configured sentinel) into a [`Verdict`].
pub(crate) fn decide(answers: &[Answer], configured: usize) -> Verdict {
    let needed = crate::config::majority_of(configured);
    let views: Vec<&MasterView> = answers
        .iter()
        .filter_map(|a| match a {
            Answer::View(v) => Some(v),
            _ => None,
        })
        .collect();
    let Some(top_epoch) = views.iter().map(|v| v.config_epoch).max() else {
        return Verdict::NoMajority {
            usable: 0,
            best: None,
            needed,
        };
    };
    // Candidates: addresses reported at the highest epoch. Votes: every view that
    // names the candidate (a sentinel at an older epoch naming the same address
    // agrees on where the master is).
    let mut best: Option<(&Addr, usize)> = None;
    let mut tie = false;
    for cand in views
        .iter()
        .filter(|v| v.config_epoch == top_epoch)
        .map(|v| &v.addr)
    {
        let votes = views.iter().filter(|v| &v.addr == cand).count();
        match best {
            Some((b, _)) if b == cand => {}
            Some((_, bv)) if votes == bv => tie = true,
            Some((_, bv)) if votes < bv => {}
            _ => {
                best = Some((cand, votes));
                tie = false;
            }
        }
    }
    match best {
        Some((addr, votes)) if votes >= needed && !tie => {
            let down = views
                .iter()
                .filter(|v| &v.addr == addr && v.flags.split(',').any(|f| f == "o_down"))
                .count();
            Verdict::Master {
                addr: addr.clone(),
                config_epoch: top_epoch,
                votes,
                odown: down >= needed,
            }
        }
        _ => Verdict::NoMajority {
            usable: views.len(),
            best: best.map(|(a, v)| (a.clone(), v)),
            needed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(host: &str, epoch: u64) -> Answer {
        Answer::View(MasterView {
            addr: Addr::new(host, 6379),
            config_epoch: epoch,
            flags: "master".into(),
            failover_timeout: None,
            replicas: vec![],
        })
    }

    fn master(host: &str) -> Addr {
        Addr::new(host, 6379)
    }

    #[test]
    fn all_agree() {
        let verdict = decide(&[v("a", 1), v("a", 1), v("a", 1)], 3);
        assert!(
            matches!(verdict, Verdict::Master { addr, votes: 3, config_epoch: 1, .. } if addr == master("a"))
        );
    }

    #[test]
    fn two_of_three_is_enough_one_is_not() {
        assert!(matches!(
            decide(&[v("b", 2), v("b", 2), Answer::Unreachable], 3),
            Verdict::Master { votes: 2, .. }
        ));
        assert!(matches!(
            decide(&[v("b", 2), Answer::Unreachable, Answer::Unreachable], 3),
            Verdict::NoMajority {
                usable: 1,
                needed: 2,
                ..
            }
        ));
    }

    #[test]
    fn lagging_majority_at_older_epoch_does_not_revert_a_switch() {
        // One sentinel already switched to b at epoch 2, two still say a at epoch 1.
        let verdict = decide(&[v("b", 2), v("a", 1), v("a", 1)], 3);
        assert!(
            matches!(verdict, Verdict::NoMajority { best: Some((ref a, 1)), .. } if *a == master("b"))
        );
    }

    #[test]
    fn healed_minority_at_old_epoch_is_outvoted() {
        let verdict = decide(&[v("c", 3), v("c", 3), v("b", 2)], 3);
        assert!(
            matches!(verdict, Verdict::Master { addr, config_epoch: 3, .. } if addr == master("c"))
        );
    }

    #[test]
    fn tilt_and_not_monitored_do_not_vote() {
        assert!(matches!(
            decide(&[v("a", 1), Answer::Tilt, Answer::NotMonitored], 3),
            Verdict::NoMajority { .. }
        ));
        assert!(matches!(
            decide(&[v("a", 1), v("a", 1), Answer::Tilt], 3),
            Verdict::Master { .. }
        ));
    }

    #[test]
    fn majority_is_of_configured_not_reachable() {
        // Five configured, two reachable and agreeing: no majority.
        assert!(matches!(
            decide(&[v("a", 1), v("a", 1)], 5),
            Verdict::NoMajority { needed: 3, .. }
        ));
        assert!(matches!(
            decide(&[], 3),
            Verdict::NoMajority { usable: 0, .. }
        ));
    }

    #[test]
    fn split_at_top_epoch_is_a_tie() {
        let verdict = decide(&[v("a", 2), v("b", 2)], 2);
        assert!(matches!(verdict, Verdict::NoMajority { .. }));
    }

    #[test]
    fn odown_needs_a_majority_flag() {
        let down = |h: &str| {
            Answer::View(MasterView {
                addr: Addr::new(h, 6379),
                config_epoch: 0,
                flags: "master,s_down,o_down".into(),
                failover_timeout: None,
                replicas: vec![],
            })
        };
        assert!(matches!(
            decide(&[down("a"), down("a"), v("a", 0)], 3),
            Verdict::Master { odown: true, .. }
        ));
        assert!(matches!(
            decide(&[down("a"), v("a", 0), v("a", 0)], 3),
            Verdict::Master { odown: false, .. }
        ));
    }

    #[test]
    fn every_subset_of_three_gives_a_sound_verdict() {
        // Exhaustive over 3 sentinels × {a@1, b@2, unreachable}: a verdict for x
        // always has ≥ 2 votes for x, and never picks an address only seen at a
        // lower epoch than another.
        let opts = [v("a", 1), v("b", 2), Answer::Unreachable];
        for i in 0..3 {
            for j in 0..3 {
                for k in 0..3 {
                    let answers = [opts[i].clone(), opts[j].clone(), opts[k].clone()];
                    if let Verdict::Master { addr, votes, .. } = decide(&answers, 3) {
                        let count = answers
                            .iter()
                            .filter(|a| matches!(a, Answer::View(m) if m.addr == addr))
                            .count();
                        assert!(count >= 2 && votes == count, "{answers:?}");
                        let has_b = answers
                            .iter()
                            .any(|a| matches!(a, Answer::View(m) if m.addr == master("b")));
                        assert!(!(has_b && addr == master("a")), "{answers:?}");
                    }
                }
            }
        }
    }
}
