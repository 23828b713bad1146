//! The daemon (`sentinel-vip run`): wires watch → controller → act, and handles
//! signals. `controller` drives the pure core (`decide::steering`) and carries
//! out its actions; `alerts` runs the incident fold and hands incidents to the
//! sinks; `inbox` is the controller's never-blocking hand-off to it.

pub(crate) mod alerts;
pub(crate) mod controller;
pub(crate) mod inbox;
pub(crate) mod journal;
pub(crate) mod read_job;
pub(crate) mod write_job;

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::act::ec2::Ec2;
use crate::config::Config;
use crate::daemon::controller::{Controller, Input, Reload};
use crate::ops::metrics::METRICS;
use crate::ops::status::SharedStatus;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::watch::{self, SentinelLink};

/// Runs the daemon until SIGTERM/SIGINT.
///
/// SIGHUP reloads **in place**: the controller (every master's state, in-flight
/// writes), the alert task (open incidents) and the HTTP server keep running;
/// only what changed is swapped — the sentinel links when the sentinel list,
/// auth or `alerts.local_sentinel` changed, the EC2 client when `aws` changed.
/// An invalid new config is logged and the running one kept. `http.listen` and
/// `log` take effect at the next restart.
///
/// **Architecture Invariant:** every task has an owner that ends it: watchers
/// end with their links' trigger, everything else with the process shutdown.
pub(crate) async fn run(path: PathBuf, mut cfg: Config) -> anyhow::Result<()> {
    METRICS.scope_to(&cfg);
    METRICS.config_loaded(true, controller::now_unix());
    let status = SharedStatus::new(cfg.sentinels.len());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (trigger, shutdown) = Shutdown::new();
    let _http = match cfg.http.listen {
        Some(addr) => Some(crate::ops::http::serve(addr, status.clone(), shutdown.clone()).await?),
        None => None,
    };
    let ec2 = Ec2::for_config(&cfg).await;
    let (tx, rx) = mpsc::channel::<Input>(4096);
    let mut links = Links::start(&cfg).await;
    let alerter = alerts::spawn(&cfg, &links.links, status.clone(), shutdown.clone());
    let controller = Controller::new(
        Arc::new(cfg.clone()),
        ec2,
        links.links.clone(),
        rx,
        Some(alerter.inbox.clone()),
        status.clone(),
    )
    .with_journal(journal::spawn(&cfg.state_dir));
    links.forward(tx.clone());
    let _ = tx.send(Input::Reconcile("start")).await;
    let mut handle = tokio::spawn(controller.run(shutdown.clone()));
    tokio::spawn(crate::ops::notify::watch_ready(
        status.clone(),
        shutdown.clone(),
    ));
    let outcome = loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: finishing in-flight route writes, then exiting"); break Ok(()); }
            _ = int.recv() => { info!("SIGINT: finishing in-flight route writes, then exiting"); break Ok(()); }
            _ = hup.recv() => match load_config(&path) {
                Ok(new) => {
                    reload(&cfg, &new, &mut links, &tx, &alerter).await;
                    status.update(|s| s.sentinels_configured = new.sentinels.len());
                    // After the old links are closed: what the new config
                    // dropped leaves /metrics for good.
                    METRICS.scope_to(&new);
                    METRICS.config_loaded(true, controller::now_unix());
                    cfg = new;
                    info!(config = %path.display(), "SIGHUP: config reloaded in place");
                }
                Err(e) => {
                    METRICS.config_loaded(false, controller::now_unix());
                    error!(error = format!("{e:#}"), "SIGHUP: new config is invalid; keeping the running one");
                }
            },
            r = &mut handle => {
                error!(?r, "controller stopped unexpectedly; exiting so that systemd restarts the service");
                break Err(anyhow::anyhow!("controller stopped unexpectedly"));
            }
        }
    };
    trigger.trigger();
    if tokio::time::timeout(Duration::from_secs(15), &mut handle)
        .await
        .is_err()
    {
        warn!("controller did not stop in time");
    }
    links.close().await;
    crate::ops::notify::stopping();
    info!("stopped");
    outcome
}

/// Swaps what changed between `old` and `new`.
async fn reload(
    old: &Config,
    new: &Config,
    links: &mut Links,
    tx: &mpsc::Sender<Input>,
    alerter: &alerts::Alerter,
) {
    let links_changed = links_differ(old, new);
    // AwsConfig and MasterConfig hold no secrets: their Debug form is their
    // identity. Masters matter here for their `assume_role_arn`.
    let aws_changed = format!("{:?}", old.aws) != format!("{:?}", new.aws)
        || format!("{:?}", old.masters) != format!("{:?}", new.masters);
    if old.http.listen != new.http.listen {
        warn!("http.listen changed: takes effect at the next restart");
    }
    if format!("{:?}", old.log) != format!("{:?}", new.log) {
        warn!("log changed: takes effect at the next restart");
    }
    if old.state_dir != new.state_dir {
        warn!("state_dir changed: the switch journal moves at the next restart");
    }
    let new_links = if links_changed {
        let fresh = Links::start(new).await;
        let stale = std::mem::replace(links, fresh);
        stale.close().await;
        Some(links.links.clone())
    } else {
        None
    };
    let ec2 = if aws_changed {
        Some(Ec2::for_config(new).await)
    } else {
        None
    };
    info!(links_changed, aws_changed, "reload: swapping what changed");
    let cfg = Arc::new(new.clone());
    let _ = tx
        .send(Input::Reload(Box::new(Reload {
            cfg: cfg.clone(),
            links: new_links,
            ec2,
        })))
        .await;
    // The new links' messages only after the controller has them.
    links.forward(tx.clone());
    let _ = alerter
        .reconfigure
        .send(alerts::Reconfigure {
            cfg,
            links: links.links.clone(),
        })
        .await;
}

/// Whether the sentinel connections must be made anew.
fn links_differ(a: &Config, b: &Config) -> bool {
    let auth = |c: &Config| {
        c.sentinel_auth
            .as_ref()
            .map(|x| (x.username.clone(), x.password.clone()))
    };
    // TLS: the files were read anew at load (a rotated CA or client
    // certificate); links hold the rustls config they were made with, so any
    // TLS config means new links.
    let tls = |c: &Config| c.sentinel_tls.is_some();
    a.sentinels != b.sentinels
        || auth(a) != auth(b)
        || tls(a)
        || tls(b)
        || a.alerts.local_sentinel != b.alerts.local_sentinel
}

/// The sentinel links of one config: a watcher task per sentinel (pub/sub)
/// and a command link per sentinel. `close` ends all of them.
struct Links {
    links: Vec<SentinelLink>,
    stop: ShutdownTrigger,
    stopped: Shutdown,
    /// Watch messages not yet forwarded (see [`Links::forward`]).
    messages: Option<mpsc::Receiver<watch::WatchMsg>>,
}

impl Links {
    async fn start(cfg: &Config) -> Links {
        let (stop, stopped) = Shutdown::new();
        let (wtx, wrx) = mpsc::channel(4096);
        let name = watch::connection_name(cfg.alerts.local_sentinel.as_ref());
        let links = watch::spawn_watchers(
            &cfg.sentinels,
            cfg.sentinel_auth.as_ref(),
            &name,
            wtx,
            &stopped,
        );
        // Wait (bounded) for the command connections so the first read counts.
        let up = watch::wait_connected(&links, Duration::from_secs(3)).await;
        for (l, ok) in links.iter().zip(&up) {
            if !ok {
                warn!(sentinel = %l.addr, "sentinel unreachable at start; will keep retrying");
            }
        }
        if !up.iter().any(|u| *u) {
            error!("no sentinel reachable; routes are left as they are until one answers");
        }
        Links {
            links,
            stop,
            stopped,
            messages: Some(wrx),
        }
    }

    /// Starts forwarding this generation's watch messages to the controller,
    /// until its links close: a reloaded controller never hears a stale
    /// watcher under a new id. Called after the controller knows these links.
    fn forward(&mut self, tx: mpsc::Sender<Input>) {
        let Some(mut wrx) = self.messages.take() else {
            return;
        };
        let mut closed = self.stopped.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = closed.recv() => break,
                    m = wrx.recv() => match m {
                        Some(m) => if tx.send(Input::Watch(m)).await.is_err() { break },
                        None => break,
                    },
                }
            }
        });
    }

    async fn close(self) {
        self.stop.trigger();
        for l in &self.links {
            l.close().await;
        }
    }
}

/// Parses the config and checks its shape, reading no secret it names (every
/// verb; `run` goes on with [`load_config`]). A secret's *shape* is checked
/// where its value is at hand: a `whsec_` value that is not base64 is an
/// error, not a raw key, when its variable is set.
pub(crate) fn parse_config(path: &Path) -> anyhow::Result<Config> {
    let cfg = Config::load(path)?;
    check_secret_shapes(&cfg)
        .map_err(anyhow::Error::msg)
        .with_context(|| path.display().to_string())?;
    Ok(cfg)
}

/// The config for `run` (at start and on SIGHUP): parsed, and every secret it
/// names read — the sentinel password and each webhook's — so a daemon never
/// runs with a sink that cannot send or a password it does not have.
pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    let mut cfg = parse_config(path)?;
    cfg.resolve_sentinel_password(None)
        .map_err(anyhow::Error::msg)
        .with_context(|| path.display().to_string())?;
    cfg.alerts
        .sinks()
        .map_err(|p| anyhow::anyhow!("{p}"))
        .with_context(|| path.display().to_string())?;
    Ok(cfg)
}

/// Each webhook `secret_env` whose variable is set must be a usable signing key.
pub(crate) fn check_secret_shapes(cfg: &Config) -> Result<(), String> {
    for (i, w) in cfg.alerts.webhooks.iter().enumerate() {
        if let Some(Ok(s)) = w.secret.as_ref().map(|s| s.resolve()) {
            crate::act::sinks::signing_key(s.expose()).map_err(|e| {
                format!("alerts.webhooks[{i}].secret_env (webhook {}): {e}", w.name)
            })?;
        }
    }
    Ok(())
}
