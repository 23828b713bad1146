//! `sentinel-vip status [--json]`: a running daemon's `/status` when
//! `http.listen` is set and answering, else the view `reconcile --dry-run`
//! computes (nothing is written).

use std::path::Path;
use std::time::Duration;

use super::Exit;
use crate::config::Config;

pub(super) async fn run(cfg: &mut Config, json: bool, password: Option<&Path>) -> Exit {
    if let Some(s) = daemon_status(cfg).await {
        if json {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        } else {
            print_daemon_status(&s);
        }
        return Exit::Ok;
    }
    // No daemon answering: read the sentinels ourselves, with the password.
    if let Err(e) = super::sentinel_password(cfg, password) {
        eprintln!("error: {e}");
        return Exit::Usage;
    }
    super::reconcile::run(cfg, false, json).await
}

/// `/status` from a running daemon, if `http.listen` is set and answering.
pub(super) async fn daemon_status(cfg: &Config) -> Option<serde_json::Value> {
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
pub(super) fn print_daemon_status(s: &serde_json::Value) {
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
    match s.get("writer_rank").and_then(|r| r.as_u64()) {
        Some(0) => println!("designated writer: this watcher writes routes at once"),
        Some(r) => println!(
            "standby (rank {r}): the designated writer writes; this watcher checks after it"
        ),
        None => {}
    }
    let empty = Vec::new();
    for m in s
        .get("masters")
        .and_then(|m| m.as_array())
        .unwrap_or(&empty)
    {
        let vip = get(m, "vip");
        println!(
            "master {}{}: majority {} at config-epoch {}, VIP on {}{}",
            get(m, "name"),
            if vip.is_empty() || vip == "null" {
                String::new()
            } else {
                format!(" (vip {vip})")
            },
            get(m, "majority"),
            get(m, "config_epoch"),
            get(m, "applied"),
            m.get("last_error")
                .and_then(|e| e.as_str())
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
        if let Some(c) = m.get("standby_check").and_then(|c| c.as_str()) {
            println!("  standby check: {c}");
        }
        for v in m
            .get("sentinels")
            .and_then(|v| v.as_array())
            .unwrap_or(&empty)
        {
            println!("  sentinel {:<22} {}", get(v, "sentinel"), get(v, "says"));
        }
        println!(
            "  expected target: {}",
            m.get("target")
                .and_then(|t| t.as_str())
                .unwrap_or("not known yet (no majority, or not resolved)")
        );
        for t in m.get("tables").and_then(|t| t.as_array()).unwrap_or(&empty) {
            println!(
                "  {:<12} {:<24} {}",
                get(t, "kind"),
                get(t, "id"),
                get(t, "route")
            );
        }
    }
}
