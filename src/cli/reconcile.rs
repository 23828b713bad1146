//! `sentinel-vip reconcile [--dry-run] [--json]`: the daemon's own path, once —
//! the majority read (`daemon::read_job`), the verdict (`decide::quorum`), and
//! for each master whose VIP route is wrong the daemon's write job
//! (`daemon::write_job`: resolve the target, write the tables that need it, read
//! them back). `status` without a running daemon shows the same view, writing
//! nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use super::Exit;
use crate::act::ec2::Ec2;
use crate::act::targets::Targets;
use crate::config::{Config, MasterConfig, Target};
use crate::daemon::read_job::majority_read_with_reports;
use crate::daemon::write_job::WriteJob;
use crate::decide::facts::{CarrierReads, TableReads};
use crate::decide::plan::{carriers, Carrier, Held, RouteAction};
use crate::decide::quorum::{self, Answer, Verdict};
use crate::decide::steering::{Cause, WriteOrder, WriteOutcome};
use crate::watch::{self, SentinelError, SentinelLink, SentinelReport};

/// What one sentinel says of a master, as the CLI prints it.
#[derive(Debug, Serialize)]
pub(super) struct SentinelSummary {
    pub sentinel: String,
    /// `ip:port @ epoch`, or why there is no answer.
    pub says: String,
}

/// One route table's VIP route, what it needs and (after a write) what happened.
#[derive(Debug, Serialize)]
pub(super) struct TableSummary {
    pub table: String,
    /// `route_table`, `secondary_ip`, `elastic_ip` or `dns`.
    pub kind: &'static str,
    pub route: String,
    /// keep, replace, create, or unknown (no majority / no target / unreadable).
    #[serde(serialize_with = "action_text")]
    pub action: Option<RouteAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<WriteResult>,
}

/// One master: the sentinels' answers, the verdict, the target and its tables.
#[derive(Debug, Serialize)]
pub(super) struct MasterSummary {
    pub master: String,
    pub vip: String,
    pub sentinels: Vec<SentinelSummary>,
    pub majority: Option<String>,
    pub config_epoch: Option<u64>,
    pub target: Option<String>,
    pub problem: Option<String>,
    pub tables: Vec<TableSummary>,
}

fn action_text<S: Serializer>(a: &Option<RouteAction>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(action_name(*a))
}

fn action_name(a: Option<RouteAction>) -> &'static str {
    match a {
        Some(RouteAction::Keep) => "keep",
        Some(RouteAction::Replace) => "replace",
        Some(RouteAction::Create) => "create",
        None => "unknown",
    }
}

/// How one table's write ended (serialized as its text: `written`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WriteResult {
    /// Written and read back pointing at the target.
    Written,
    /// Written, but the reads back never showed the target.
    NotReadBack,
    Failed(String),
}

impl std::fmt::Display for WriteResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteResult::Written => f.write_str("written"),
            WriteResult::NotReadBack => {
                f.write_str("written, but it does not read back as written")
            }
            WriteResult::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl Serialize for WriteResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl MasterSummary {
    /// Whether this master is left needing an operator: no verdict or target,
    /// or a write that did not end read back as written.
    pub(super) fn failed(&self) -> bool {
        self.problem.is_some()
            || self.tables.iter().any(|t| {
                t.result
                    .as_ref()
                    .is_some_and(|r| *r != WriteResult::Written)
            })
    }
}

/// The verb: prints the view (text or JSON); [`Exit::Failed`] when a master is
/// left wrong or nothing could be read.
pub(super) async fn run(cfg: &Config, write: bool, json: bool) -> Exit {
    match reconcile(cfg, write).await {
        Ok(views) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&views).unwrap_or_default()
                );
            } else {
                print(&views);
            }
            if views.iter().any(MasterSummary::failed) {
                Exit::Failed
            } else {
                Exit::Ok
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Failed
        }
    }
}

async fn connect(cfg: &Config) -> Vec<SentinelLink> {
    let links = watch::command_links(
        &cfg.sentinels,
        cfg.sentinel_auth.as_ref(),
        "sentinel-vip-cli",
    );
    watch::wait_connected(&links, Duration::from_secs(3)).await;
    links
}

/// Reads every sentinel and table (the daemon's majority read), decides, and
/// (when `write`) repairs each master through the daemon's write job.
pub(super) async fn reconcile(cfg: &Config, write: bool) -> anyhow::Result<Vec<MasterSummary>> {
    let links = connect(cfg).await;
    let ec2 = Ec2::for_config(cfg).await;
    let targets = Targets::default();
    let (read, reports) = majority_read_with_reports(0, &links, &ec2, cfg, &targets).await;
    for l in &links {
        l.close().await;
    }
    let tables = read.tables?;
    let mut out = Vec::new();
    for (name, m) in &cfg.masters {
        let answers = read.answers.get(name).cloned().unwrap_or_default();
        let mut view = summary(name, m, &links, &reports, &answers);
        let target = match quorum::decide(&answers, links.len()) {
            Verdict::Master {
                addr, config_epoch, ..
            } => {
                view.majority = Some(addr.to_string());
                view.config_epoch = Some(config_epoch);
                match targets.resolve(&ec2, name, m, &addr).await {
                    Ok(t) => Some((addr, t)),
                    Err(e) => {
                        view.problem = Some(e.to_string());
                        None
                    }
                }
            }
            Verdict::NoMajority { usable, needed, .. } => {
                view.problem = Some(format!(
                    "no majority: {usable} usable answers, {needed} needed"
                ));
                None
            }
        };
        view.target = target.as_ref().map(|(_, t)| t.to_string());
        let others = read.carriers.get(name);
        let known = current_routes(m, &tables, others);
        view.tables = table_plans(m, &known, target.as_ref().map(|(_, t)| t));
        if let Some(why) = unreadable(m, &tables, others) {
            view.problem.get_or_insert(why);
        }
        let needs_write = view
            .tables
            .iter()
            .any(|t| matches!(t.action, Some(RouteAction::Replace | RouteAction::Create)));
        if let (true, true, Some((addr, _))) = (write, needs_write, target) {
            // Only the tables that could be read: an unreadable one is reported
            // (and fails the run), never written blind.
            let mut readable = m.clone();
            let read_ok = |c: Carrier| known.contains_key(&c);
            readable
                .route_tables
                .retain(|t| read_ok(Carrier::RouteTable(t.clone())));
            readable.secondary_ip = m.secondary_ip.filter(|i| read_ok(Carrier::SecondaryIp(*i)));
            readable.elastic_ip = m
                .elastic_ip
                .clone()
                .filter(|a| read_ok(Carrier::ElasticIp(a.clone())));
            readable.dns = m.dns.clone().filter(|d| read_ok(Carrier::Dns(d.clone())));
            let order = WriteOrder {
                id: 0,
                master: name.clone(),
                cfg: readable,
                addr,
                cause: Cause::Reconcile,
                at: Instant::now(),
                known,
                // An operator's command: it has just read, it writes now.
                check_first: false,
            };
            let job = WriteJob {
                order,
                ec2: ec2.clone(),
                targets: targets.clone(),
            };
            record_write(&mut view, &job.run().await);
        }
        out.push(view);
    }
    Ok(out)
}

/// The master's header: each sentinel's answer, in configured order.
fn summary(
    name: &str,
    m: &MasterConfig,
    links: &[SentinelLink],
    reports: &[Result<SentinelReport, SentinelError>],
    answers: &[Answer],
) -> MasterSummary {
    let sentinels = links
        .iter()
        .zip(answers)
        .zip(reports)
        .map(|((l, a), rep)| SentinelSummary {
            sentinel: l.addr.to_string(),
            says: match a {
                Answer::View(v) => {
                    // The address is GET-MASTER-ADDR-BY-NAME's (what the verdict
                    // counts); SENTINEL MASTER lags behind during a failover.
                    let stale = rep
                        .as_ref()
                        .ok()
                        .and_then(|r| r.stale_addrs.get(name))
                        .map(|s| format!("; SENTINEL MASTER still shows {s}"))
                        .unwrap_or_default();
                    format!("{} @ epoch {} ({}{stale})", v.addr, v.config_epoch, v.flags)
                }
                Answer::Tilt => "TILT".into(),
                Answer::NotMonitored => "does not monitor it".into(),
                Answer::Unreachable => "unreachable".into(),
            },
        })
        .collect();
    MasterSummary {
        master: name.to_owned(),
        vip: m.vip.map(|v| v.to_string()).unwrap_or_default(),
        sentinels,
        majority: None,
        config_epoch: None,
        target: None,
        problem: None,
        tables: Vec::new(),
    }
}

/// Each of the master's carriers that could be read: its VIP route per table,
/// its secondary IP, Elastic IP, DNS record.
fn current_routes(
    m: &MasterConfig,
    tables: &TableReads,
    others: Option<&CarrierReads>,
) -> HashMap<Carrier, Held> {
    carriers(m)
        .into_iter()
        .filter_map(|c| {
            let held = match (&c, m.vip) {
                (Carrier::RouteTable(t), Some(vip)) => {
                    tables.get(t)?.as_ref().ok()?.route(&vip.0).into()
                }
                (Carrier::RouteTable(_), None) => return None,
                _ => others?.get(&c)?.as_ref().ok()?.clone(),
            };
            Some((c, held))
        })
        .collect()
}

/// Why some of the master's carriers could not be read, if any were not.
fn unreadable(
    m: &MasterConfig,
    tables: &TableReads,
    others: Option<&CarrierReads>,
) -> Option<String> {
    let why: Vec<String> = carriers(m)
        .iter()
        .filter_map(|c| {
            let read = match c {
                Carrier::RouteTable(t) => tables.get(t).map(|r| r.as_ref().map(|_| ())),
                _ => others
                    .and_then(|o| o.get(c))
                    .map(|r| r.as_ref().map(|_| ())),
            };
            match read {
                Some(Ok(())) => None,
                Some(Err(e)) => Some(e.to_string()),
                None if c.route_table().is_some() => Some(format!("route table {c} was not read")),
                None => Some(format!("{c} was not read")),
            }
        })
        .collect();
    (!why.is_empty()).then(|| why.join("; "))
}

/// Each table's route and what it needs (unknown without a target or a read).
fn table_plans(
    m: &MasterConfig,
    known: &HashMap<Carrier, Held>,
    target: Option<&Target>,
) -> Vec<TableSummary> {
    carriers(m)
        .iter()
        .map(|t| {
            let current = known.get(t);
            let action = match (current, target) {
                (Some(c), Some(tg)) => Some(c.plan(tg)),
                _ => None,
            };
            TableSummary {
                table: t.to_string(),
                kind: t.kind(),
                route: current
                    .map(Held::describe)
                    .unwrap_or_else(|| "cannot be read (see problem)".into()),
                action,
                result: None,
            }
        })
        .collect()
}

/// Each written table's result: written and read back, written but not read
/// back as written, or why the write failed.
fn record_write(view: &mut MasterSummary, w: &WriteOutcome) {
    if let Err(e) = &w.target {
        view.problem = Some(e.to_string());
        return;
    }
    for (table, r) in &w.tables {
        let Some(row) = view
            .tables
            .iter_mut()
            .find(|t| t.table == table.to_string())
        else {
            continue;
        };
        row.result = match r {
            Ok(false) => None,
            Ok(true) => {
                let reads_back = match (&w.target, &w.verified) {
                    (Ok(t), Some(v)) => v.get(table).is_some_and(|c| c.points_at(t)),
                    _ => false,
                };
                Some(if reads_back {
                    WriteResult::Written
                } else {
                    WriteResult::NotReadBack
                })
            }
            Err(e) => Some(WriteResult::Failed(e.to_string())),
        };
    }
}

/// Prints views as text.
pub(super) fn print(views: &[MasterSummary]) {
    for v in views {
        if v.vip.is_empty() {
            println!("master {}", v.master);
        } else {
            println!("master {} (vip {})", v.master, v.vip);
        }
        for s in &v.sentinels {
            println!("  sentinel {:<22} {}", s.sentinel, s.says);
        }
        match (&v.majority, v.config_epoch) {
            (Some(m), Some(e)) => println!(
                "  majority: {m} at config-epoch {e} -> target {}",
                v.target.as_deref().unwrap_or("?")
            ),
            _ => println!("  majority: none"),
        }
        if let Some(p) = &v.problem {
            println!("  problem: {p}");
        }
        for t in &v.tables {
            let result = t
                .result
                .as_ref()
                .map(|r| format!(" -> {r}"))
                .unwrap_or_default();
            println!(
                "  {:<12} {:<24} {:<28} {}{result}",
                t.kind,
                t.table,
                t.route,
                action_name(t.action)
            );
        }
    }
}
