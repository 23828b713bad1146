//! One-shot views for the CLI: `status` and `reconcile [--dry-run]`, computed
//! directly from the sentinels and EC2 (or, for `status`, read from a running
//! daemon's `/status`).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use crate::act::ec2::Ec2;
use crate::act::targets::Targets;
use crate::config::{Config, RouteTableId};
use crate::decide::plan::{plan, CurrentRoute, RouteAction};
use crate::decide::quorum::{self, Answer, Verdict};
use crate::watch::{self, SentinelLink};

#[derive(Debug, Serialize)]
pub struct SentinelView {
    pub sentinel: String,
    /// `ip:port @ epoch`, or why there is no answer.
    pub says: String,
}

#[derive(Debug, Serialize)]
pub struct TableView {
    pub table: String,
    pub route: String,
    /// keep, replace, create, or unknown (no majority / no target).
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MasterView {
    pub master: String,
    pub vip: String,
    pub sentinels: Vec<SentinelView>,
    pub majority: Option<String>,
    pub config_epoch: Option<u64>,
    pub target: Option<String>,
    pub problem: Option<String>,
    pub tables: Vec<TableView>,
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

/// Reads every sentinel and table, decides, and (unless `dry_run`) writes.
pub async fn reconcile(cfg: &Config, write: bool) -> anyhow::Result<Vec<MasterView>> {
    let links = connect(cfg).await;
    let ec2 = Ec2::for_config(cfg).await;
    let reports = futures::future::join_all(links.iter().map(|l| l.report())).await;
    let tables: BTreeSet<RouteTableId> = cfg
        .masters
        .values()
        .flat_map(|m| m.route_tables.iter().cloned())
        .collect();
    let cidrs = cfg.masters.values().map(|m| m.vip.0).collect();
    let read = ec2
        .read_tables(&tables, &cidrs)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let targets = Targets::default();
    let mut out = Vec::new();
    for (name, m) in &cfg.masters {
        let answers: Vec<Answer> = reports
            .iter()
            .map(|r| Answer::from_report(r, name))
            .collect();
        let sentinels = links
            .iter()
            .zip(&answers)
            .zip(&reports)
            .map(|((l, a), rep)| SentinelView {
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
        let mut view = MasterView {
            master: name.clone(),
            vip: m.vip.to_string(),
            sentinels,
            majority: None,
            config_epoch: None,
            target: None,
            problem: None,
            tables: Vec::new(),
        };
        let target = match quorum::decide(&answers, links.len()) {
            Verdict::Master {
                addr, config_epoch, ..
            } => {
                view.majority = Some(addr.to_string());
                view.config_epoch = Some(config_epoch);
                match targets.resolve(&ec2, name, m, &addr).await {
                    Ok(t) => Some(t),
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
        view.target = target.as_ref().map(|t| t.to_string());
        for t in &m.route_tables {
            let current = read.get(t).map(|r| r.route(&m.vip.0));
            let action = match (&current, &target) {
                (None, _) => None,
                (Some(c), Some(tg)) => Some(plan(c, tg)),
                (Some(_), None) => None,
            };
            let mut tv = TableView {
                table: t.to_string(),
                route: current
                    .as_ref()
                    .map(CurrentRoute::describe)
                    .unwrap_or_else(|| "table not found".into()),
                action: match action {
                    Some(RouteAction::Keep) => "keep",
                    Some(RouteAction::Replace) => "replace",
                    Some(RouteAction::Create) => "create",
                    None => "unknown",
                }
                .into(),
                result: None,
            };
            if write {
                if let (Some(a @ (RouteAction::Replace | RouteAction::Create)), Some(tg)) =
                    (action, &target)
                {
                    tv.result = Some(
                        match ec2
                            .write_route(t, m.vip.0, tg, a == RouteAction::Create)
                            .await
                        {
                            Ok(()) => "written".into(),
                            Err(e) => format!("failed: {e}"),
                        },
                    );
                }
            }
            view.tables.push(tv);
        }
        out.push(view);
    }
    for l in &links {
        l.close().await;
    }
    Ok(out)
}

/// Prints views as text.
pub fn print(views: &[MasterView]) {
    for v in views {
        println!("master {} (vip {})", v.master, v.vip);
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
                .as_deref()
                .map(|r| format!(" -> {r}"))
                .unwrap_or_default();
            println!(
                "  table {:<24} route {:<28} {}{result}",
                t.table, t.route, t.action
            );
        }
    }
}

/// `/status` from a running daemon, if `http.listen` is set and answering.
pub async fn daemon_status(cfg: &Config) -> Option<serde_json::Value> {
    let addr = cfg.http.listen?;
    crate::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let r = client
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Prints a daemon's `/status` JSON as text.
pub fn print_daemon_status(s: &serde_json::Value) {
    let get = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    println!(
        "daemon {}: sentinels {}/{} connected, last reconcile ok={} ({} ms), open incidents {}",
        get(s, "version"),
        get(s, "sentinels_connected"),
        get(s, "sentinels_configured"),
        get(s, "last_reconcile_ok"),
        get(s, "last_reconcile_ms"),
        get(s, "incidents_open"),
    );
    let empty = Vec::new();
    for m in s
        .get("masters")
        .and_then(|m| m.as_array())
        .unwrap_or(&empty)
    {
        println!(
            "master {} (vip {}): majority {} at config-epoch {}, VIP on {}{}",
            get(m, "name"),
            get(m, "vip"),
            get(m, "majority"),
            get(m, "config_epoch"),
            get(m, "applied"),
            m.get("last_error")
                .and_then(|e| e.as_str())
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
        for t in m.get("tables").and_then(|t| t.as_array()).unwrap_or(&empty) {
            println!("  table {:<24} route {}", get(t, "id"), get(t, "route"));
        }
    }
}
