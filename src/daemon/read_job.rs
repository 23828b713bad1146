//! The majority read, as the controller spawns it and the CLI verbs run it:
//! every sentinel's view and every configured route table at once.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use tracing::debug;

use crate::act::carriers::{has_others, node_targets, read_others};
use crate::act::ec2::Ec2;
use crate::act::targets::Targets;
use crate::config::Config;
use crate::decide::quorum::Answer;
use crate::decide::steering::ReadOutcome;
use crate::watch::event::Addr;
use crate::watch::{SentinelError, SentinelLink, SentinelReport};

/// Reads every sentinel's view and every configured route table at once, and
/// looks up (without I/O) the targets of the addresses the sentinels named.
pub(crate) async fn majority_read(
    seq: u64,
    links: &[SentinelLink],
    ec2: &Ec2,
    cfg: &Config,
    targets: &Targets,
) -> ReadOutcome {
    majority_read_with_reports(seq, links, ec2, cfg, targets)
        .await
        .0
}

/// [`majority_read`], also handing back each sentinel's whole report (in
/// configured order) for the CLI, which prints more of it than the core reads.
pub(crate) async fn majority_read_with_reports(
    seq: u64,
    links: &[SentinelLink],
    ec2: &Ec2,
    cfg: &Config,
    targets: &Targets,
) -> (ReadOutcome, Vec<Result<SentinelReport, SentinelError>>) {
    let started = Instant::now();
    let (tables, cidrs) = (cfg.route_tables(), cfg.vip_cidrs());
    // The other carriers follow the sentinels' answers (a secondary IP is
    // looked for on the nodes they name), beside the route table read.
    let ((reports, carriers), tables) = tokio::join!(
        async {
            let reports = futures::future::join_all(links.iter().map(|l| async move {
                let r = l.report().await;
                if let Err(e) = &r {
                    debug!(sentinel = %l.addr, error = %e, "sentinel did not answer the majority read");
                }
                r
            }))
            .await;
            let carriers = read_other_carriers(ec2, cfg, targets, &reports).await;
            (reports, carriers)
        },
        ec2.read_each_table(&tables, &cidrs)
    );
    if let Ok(reads) = &tables {
        targets.learn_vpcs(
            reads
                .iter()
                .filter_map(|(id, r)| Some((id, r.as_ref().ok()?))),
        );
    }
    let sentinels_answering = reports.iter().filter(|r| r.is_ok()).count();
    let mut answers = HashMap::new();
    let mut known = HashMap::new();
    for (name, m) in &cfg.masters {
        let a: Vec<Answer> = reports
            .iter()
            .map(|r| crate::decide::quorum::Answer::from_report(r, name))
            .collect();
        let named: BTreeSet<&Addr> = a
            .iter()
            .filter_map(|x| match x {
                Answer::View(v) => Some(&v.addr),
                _ => None,
            })
            .collect();
        let t: HashMap<Addr, _> = named
            .into_iter()
            .filter_map(|addr| Some((addr.clone(), targets.cached(name, m, addr)?)))
            .collect();
        known.insert(name.clone(), t);
        answers.insert(name.clone(), a);
    }
    let outcome = ReadOutcome {
        seq,
        answers,
        tables,
        carriers,
        targets: known,
        sentinels_answering,
        took: started.elapsed(),
    };
    (outcome, reports)
}

/// Every master's carriers besides route tables (secondary IP, Elastic IP,
/// DNS record), each master's at once; a secondary IP is looked for on the
/// nodes the sentinels named (master and replicas) and the static `nodes`.
async fn read_other_carriers(
    ec2: &Ec2,
    cfg: &Config,
    targets: &Targets,
    reports: &[Result<SentinelReport, SentinelError>],
) -> HashMap<String, crate::decide::facts::CarrierReads> {
    futures::future::join_all(cfg.masters.iter().filter(|(_, m)| has_others(m)).map(
        |(name, m)| async move {
            let named = reports
                .iter()
                .filter_map(|r| r.as_ref().ok()?.masters.get(name))
                .flat_map(|v| std::iter::once(&v.addr).chain(&v.replicas));
            let nodes = node_targets(targets, name, m, named);
            (name.clone(), read_others(ec2, m, &nodes).await)
        },
    ))
    .await
    .into_iter()
    .collect()
}
