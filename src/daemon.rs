//! `sentinel-vip run`: wires watch → controller → act, and handles signals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::alerts;
use crate::config::Config;
use crate::controller::{Controller, Input};
use crate::ec2::Ec2;
use crate::shutdown::Shutdown;
use crate::status::SharedStatus;
use crate::watch::{self, SentinelLink};

/// Runs the daemon until SIGTERM/SIGINT. SIGHUP reloads the config (an invalid
/// new config is logged and the running one kept).
pub async fn run(path: PathBuf, mut cfg: Config) -> anyhow::Result<()> {
    let status = SharedStatus::new(cfg.sentinels.len());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (outer_trigger, outer) = Shutdown::new();
    let _http = match cfg.http.listen {
        Some(addr) => Some(crate::http::serve(addr, status.clone(), outer.clone()).await?),
        None => None,
    };
    loop {
        let cfg_arc = Arc::new(cfg.clone());
        let (trigger, shutdown) = Shutdown::new();
        let running = start(cfg_arc.clone(), status.clone(), shutdown).await;
        let mut controller = running.controller;
        let reload = loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: finishing in-flight route writes, then exiting"); break None; }
                _ = int.recv() => { info!("SIGINT: finishing in-flight route writes, then exiting"); break None; }
                _ = hup.recv() => match load_config(&path) {
                    Ok(new) => { info!(config = %path.display(), "SIGHUP: config reloaded"); break Some(new); }
                    Err(e) => error!(error = %e, "SIGHUP: new config is invalid; keeping the running one"),
                },
                r = &mut controller => {
                    error!(?r, "controller stopped unexpectedly; restarting it");
                    break Some(cfg.clone());
                }
            }
        };
        trigger.trigger();
        if tokio::time::timeout(Duration::from_secs(15), &mut controller)
            .await
            .is_err()
        {
            warn!("controller did not stop in time");
        }
        for l in running.links.iter() {
            l.close().await;
        }
        match reload {
            Some(new) => cfg = new,
            None => break,
        }
    }
    outer_trigger.trigger();
    crate::notify::stopping();
    info!("stopped");
    Ok(())
}

struct Running {
    controller: tokio::task::JoinHandle<()>,
    links: Arc<Vec<SentinelLink>>,
}

async fn start(cfg: Arc<Config>, status: SharedStatus, shutdown: Shutdown) -> Running {
    let ec2 = Ec2::for_config(&cfg).await;
    let (tx, rx) = mpsc::channel::<Input>(4096);
    let (wtx, mut wrx) = mpsc::channel(4096);
    let name = watch::connection_name(cfg.alerts.local_sentinel.as_ref());
    let links = watch::spawn_watchers(
        &cfg.sentinels,
        cfg.sentinel_auth.as_ref(),
        &name,
        wtx,
        &shutdown,
    );
    let forward = tx.clone();
    tokio::spawn(async move {
        while let Some(m) = wrx.recv().await {
            if forward.send(Input::Watch(m)).await.is_err() {
                break;
            }
        }
    });
    // Wait (bounded) for the command connections so the first reconcile counts.
    let up = watch::wait_connected(&links, Duration::from_secs(3)).await;
    for (l, ok) in links.iter().zip(&up) {
        if !ok {
            warn!(sentinel = %l.addr, "sentinel unreachable at start; will keep retrying");
        }
    }
    if !up.iter().any(|u| *u) {
        error!("no sentinel reachable at start; routes are left as they are until one answers");
    }
    let alert_tx = alerts::spawn(&cfg, &links, status.clone(), shutdown.clone());
    let links_arc = Arc::new(links.clone());
    let controller = Controller::new(
        cfg.clone(),
        ec2,
        links,
        rx,
        tx.clone(),
        alert_tx,
        status.clone(),
    );
    let _ = tx.send(Input::Reconcile("start")).await;
    let handle = tokio::spawn(controller.run(shutdown.clone()));
    tokio::spawn(crate::notify::watch_ready(status, shutdown));
    Running {
        controller: handle,
        links: links_arc,
    }
}

/// Loads the config or explains why not (used by every CLI verb).
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let cfg = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Secrets named by the config are checked once, here, for every verb and
    // for SIGHUP (a `whsec_` value that is not base64 is an error, not a raw key).
    crate::alerts::sink::validate(&cfg.alerts.webhooks)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(cfg)
}
