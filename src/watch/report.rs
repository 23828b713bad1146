//! The command link's reads: what one sentinel says of every master
//! ([`SentinelReport`], [`MasterView`]): `GET-MASTER-ADDR-BY-NAME`, `SENTINEL
//! MASTERS`/`REPLICAS`, `INFO` (TILT).

use std::collections::HashMap;
use std::time::Duration;

use fred::interfaces::{ClientLike, SentinelInterface};
use fred::types::{ClusterHash, CustomCommand, Value};

use super::*;

/// What one sentinel said about one master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterView {
    /// Where this sentinel says the master is *now*: `SENTINEL
    /// GET-MASTER-ADDR-BY-NAME`, which names the promoted replica from the
    /// reconfiguration phase of a failover on (`SENTINEL MASTER` keeps the old
    /// address until the failover ends). It is what Sentinel-aware clients follow.
    pub addr: Addr,
    /// `config-epoch` from `SENTINEL MASTER(S)`.
    pub config_epoch: u64,
    /// Sentinel's flags for the master, e.g. `master,s_down,o_down`.
    pub flags: String,
    /// `failover-timeout` from `SENTINEL MASTER(S)`: how long a failover may
    /// take before the sentinels try another (the epoch rule waits this long
    /// for silent sentinels that held a higher epoch). None: not reported.
    pub failover_timeout: Option<Duration>,
    /// Replicas this sentinel knows for the master (`SENTINEL REPLICAS`), for
    /// guarding the fast path: a `+switch-master` to a known replica is plausible.
    pub replicas: Vec<Addr>,
}

/// One sentinel's answer to a majority read.
#[derive(Debug, Clone)]
pub struct SentinelReport {
    pub tilt: bool,
    /// Master name → view, for every master this sentinel monitors.
    pub masters: HashMap<String, MasterView>,
    /// Master name → the address `SENTINEL MASTERS` still prints, only where it
    /// differs from the view's (`GET-MASTER-ADDR-BY-NAME`): the old master while
    /// this sentinel leads a failover through its reconfiguration phase. For
    /// showing both reads side by side; never used to decide.
    pub stale_addrs: HashMap<String, Addr>,
}

/// The fields of one `SENTINEL MASTERS` entry that a report keeps.
struct MastersEntry {
    name: String,
    listed: Option<Addr>,
    config_epoch: u64,
    flags: String,
    failover_timeout: Option<Duration>,
}

fn masters_entry(m: &HashMap<String, String>) -> Option<MastersEntry> {
    Some(MastersEntry {
        name: m.get("name")?.clone(),
        listed: m
            .get("ip")
            .zip(m.get("port").and_then(|p| p.parse().ok()))
            .map(|(ip, port)| Addr::new(ip.clone(), port)),
        config_epoch: m
            .get("config-epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0),
        flags: m.get("flags").cloned().unwrap_or_default(),
        failover_timeout: m
            .get("failover-timeout")
            .and_then(|t| t.parse().ok())
            .map(Duration::from_millis),
    })
}

/// `GET-MASTER-ADDR-BY-NAME`'s answer: `[ip, port]`, or nil when the sentinel
/// does not (or no longer) monitor the name.
pub(super) fn addr_reply(v: &Value) -> Option<Addr> {
    let Value::Array(a) = v else { return None };
    match a.as_slice() {
        [ip, port] => Some(Addr::new(ip.as_string()?, port.as_string()?.parse().ok()?)),
        _ => None,
    }
}

/// Replica addresses from `SENTINEL REPLICAS`, without those Sentinel itself
/// would never promote: flagged `s_down`/`o_down` or `disconnected`
/// (`sentinelSelectSlave` skips them). The list guards the fast path ("is the
/// `+switch-master` target a replica the sentinels know?"), so a replica that
/// cannot be the target must not make a forged or stale switch look plausible.
/// The old master of a finished failover shows up here as an `s_down` replica
/// until it returns, and is left out for the same reason.
pub(super) fn promotable_replicas(rs: &[HashMap<String, String>]) -> Vec<Addr> {
    rs.iter()
        .filter(|r| {
            let flags = r.get("flags").map(String::as_str).unwrap_or("");
            !flags
                .split(',')
                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
        })
        .filter_map(|r| {
            Some(Addr::new(
                r.get("ip")?.clone(),
                r.get("port")?.parse().ok()?,
            ))
        })
        .collect()
}

/// A sentinel command that gave no usable answer: which command, and why
/// (connection down, timeout, ACL refusal, error reply, or an answer of the
/// wrong shape). Never carries the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SentinelError {
    /// The command failed: not connected, timed out, refused, error reply.
    #[error("{command}: {reason}")]
    Failed { command: String, reason: String },
    /// The answer is not what the command returns.
    #[error("{command}: unexpected answer: {what}")]
    Unexpected { command: &'static str, what: String },
}

impl SentinelError {
    fn failed(command: impl Into<String>, e: &fred::error::Error) -> SentinelError {
        SentinelError::Failed {
            command: command.into(),
            reason: e.to_string(),
        }
    }
}

impl SentinelLink {
    /// One sentinel's view of every master it monitors.
    ///
    /// `INFO sentinel` (TILT) and `SENTINEL MASTERS` (names, config-epoch,
    /// flags), then, per master and all at once, `GET-MASTER-ADDR-BY-NAME` (the
    /// address: it names the promoted replica from the reconfiguration phase on,
    /// while `SENTINEL MASTERS` keeps the old one until the failover ends;
    /// `sentinelGetCurrentMasterAddress` in redis `sentinel.c`) and `SENTINEL
    /// REPLICAS`. fred pipelines concurrent commands on the one connection, so
    /// 1,000 masters cost two round trips, not 2,001.
    ///
    /// Bounded as a whole by [`SILENCE_LIMIT`], the subscriber's own silence
    /// bound: a sentinel that stops answering (SIGSTOP, a host frozen, a flow
    /// forgotten by a NAT) counts as unreachable within it, whatever fred's
    /// per-command timers and its unresponsive check (measured from the last
    /// write) make of a pipeline of 2,000 commands.
    pub async fn report(&self) -> Result<SentinelReport, SentinelError> {
        match tokio::time::timeout(SILENCE_LIMIT, self.report_unbounded()).await {
            Ok(r) => r,
            Err(_) => Err(SentinelError::Failed {
                command: "majority read".to_owned(),
                reason: format!(
                    "no complete answer within {} s (sentinel silent: stopped, frozen or cut off)",
                    SILENCE_LIMIT.as_secs()
                ),
            }),
        }
    }

    async fn report_unbounded(&self) -> Result<SentinelReport, SentinelError> {
        let info = CustomCommand::new_static("INFO", ClusterHash::FirstKey, false);
        let (info, masters) = tokio::join!(
            self.cmd.custom::<String, _>(info, vec!["sentinel"]),
            self.cmd.masters::<Vec<HashMap<String, String>>>()
        );
        let info = info.map_err(|e| SentinelError::failed("INFO sentinel", &e))?;
        let masters = masters.map_err(|e| SentinelError::failed("SENTINEL MASTERS", &e))?;
        let tilt = info.lines().any(|l| l.trim() == "sentinel_tilt:1");
        let entries: Vec<MastersEntry> = masters.iter().filter_map(masters_entry).collect();
        let reads =
            futures::future::join_all(entries.iter().map(|e| self.addr_and_replicas(&e.name)))
                .await;
        let mut report = SentinelReport {
            tilt,
            masters: HashMap::with_capacity(entries.len()),
            stale_addrs: HashMap::new(),
        };
        for (e, read) in entries.into_iter().zip(reads) {
            // None: removed between the two reads; it is not monitored any more.
            let Some((addr, replicas)) = read? else {
                continue;
            };
            if let Some(listed) = e.listed.filter(|l| *l != addr) {
                report.stale_addrs.insert(e.name.clone(), listed);
            }
            report.masters.insert(
                e.name,
                MasterView {
                    addr,
                    config_epoch: e.config_epoch,
                    flags: e.flags,
                    failover_timeout: e.failover_timeout,
                    replicas,
                },
            );
        }
        Ok(report)
    }

    /// `GET-MASTER-ADDR-BY-NAME` and `SENTINEL REPLICAS` for one master, sent
    /// together; `Ok(None)` when the sentinel does not monitor it.
    async fn addr_and_replicas(
        &self,
        name: &str,
    ) -> Result<Option<(Addr, Vec<Addr>)>, SentinelError> {
        let (addr, replicas) = tokio::join!(
            self.cmd.get_master_addr_by_name::<Value, _>(name),
            self.cmd.replicas::<Vec<HashMap<String, String>>, _>(name)
        );
        let addr = match addr {
            Ok(v) => addr_reply(&v),
            Err(e) if no_such_master(&e) => None,
            Err(e) => {
                return Err(SentinelError::failed(
                    format!("SENTINEL GET-MASTER-ADDR-BY-NAME {name}"),
                    &e,
                ))
            }
        };
        let replicas = match replicas {
            Ok(rs) => promotable_replicas(&rs),
            Err(e) if no_such_master(&e) => return Ok(None),
            Err(e) => {
                return Err(SentinelError::failed(
                    format!("SENTINEL REPLICAS {name}"),
                    &e,
                ))
            }
        };
        Ok(addr.map(|a| (a, replicas)))
    }

    /// One master as [`report`](Self::report) sees it (for `check`), plus the
    /// address `SENTINEL MASTER` itself prints when it differs.
    pub async fn master(
        &self,
        name: &str,
    ) -> Result<Option<(MasterView, Option<Addr>)>, SentinelError> {
        let (master, read) = tokio::join!(
            self.cmd.master::<HashMap<String, String>, _>(name),
            self.addr_and_replicas(name)
        );
        let m = match master {
            Ok(m) => m,
            Err(e) if no_such_master(&e) => return Ok(None),
            Err(e) => return Err(SentinelError::failed(format!("SENTINEL MASTER {name}"), &e)),
        };
        let (Some(e), Some((addr, replicas))) = (masters_entry(&m), read?) else {
            return Ok(None);
        };
        let stale = e.listed.filter(|l| *l != addr);
        Ok(Some((
            MasterView {
                addr,
                config_epoch: e.config_epoch,
                flags: e.flags,
                failover_timeout: e.failover_timeout,
                replicas,
            },
            stale,
        )))
    }

    /// `ROLE`'s first element: `sentinel` for a sentinel, `master`/`slave` for a
    /// Redis data node listed by mistake.
    pub async fn role(&self) -> Result<String, SentinelError> {
        let cmd = CustomCommand::new_static("ROLE", ClusterHash::FirstKey, false);
        let v = self
            .cmd
            .custom::<Value, _>(cmd, Vec::<Value>::new())
            .await
            .map_err(|e| SentinelError::failed("ROLE", &e))?;
        match v {
            Value::Array(a) => {
                a.first()
                    .and_then(|r| r.as_string())
                    .ok_or_else(|| SentinelError::Unexpected {
                        command: "ROLE",
                        what: "an empty array".to_owned(),
                    })
            }
            other => Err(SentinelError::Unexpected {
                command: "ROLE",
                what: format!("{:?}", other.kind()),
            }),
        }
    }

    /// `num-other-sentinels` from `SENTINEL MASTER <name>`: how many other
    /// sentinels this one knows for the master.
    pub async fn other_sentinels(&self, name: &str) -> Result<Option<usize>, SentinelError> {
        match self.cmd.master::<HashMap<String, String>, _>(name).await {
            Ok(m) => Ok(m.get("num-other-sentinels").and_then(|n| n.parse().ok())),
            Err(e) if no_such_master(&e) => Ok(None),
            Err(e) => Err(SentinelError::failed(format!("SENTINEL MASTER {name}"), &e)),
        }
    }

    /// `SENTINEL REPLICAS <name>` → replica addresses (to warm target discovery).
    pub async fn replicas(&self, name: &str) -> Result<Vec<Addr>, SentinelError> {
        let rs = self
            .cmd
            .replicas::<Vec<HashMap<String, String>>, _>(name)
            .await
            .map_err(|e| SentinelError::failed(format!("SENTINEL REPLICAS {name}"), &e))?;
        Ok(rs
            .iter()
            .filter_map(|r| {
                Some(Addr::new(
                    r.get("ip")?.clone(),
                    r.get("port")?.parse().ok()?,
                ))
            })
            .collect())
    }

    /// `CLIENT LIST` as the sentinel prints it (one client per line), to see
    /// which watchers (`name=sentinel-vip:...`) are connected to it.
    pub async fn client_list(&self) -> Result<String, SentinelError> {
        let cmd = CustomCommand::new_static("CLIENT", ClusterHash::FirstKey, false);
        self.cmd
            .custom::<String, _>(cmd, vec!["LIST"])
            .await
            .map_err(|e| SentinelError::failed("CLIENT LIST", &e))
    }

    /// Waits (bounded) until the command connection is up; false at once on a
    /// conclusive failure (TLS, authentication): waiting longer cannot help.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let mut problem = self.problem.clone();
        let conclusive = async move {
            let seen = problem
                .wait_for(|p| p.as_ref().is_some_and(|p| p.conclusive))
                .await;
            if seen.is_err() {
                // The link was closed: only the timeout can answer now.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = tokio::time::timeout(within, self.cmd.wait_for_connect()) => {
                r.map(|r| r.is_ok()).unwrap_or(false)
            }
            () = conclusive => false,
        }
    }

    /// Sends each of [`NEEDED_COMMANDS`] once; returns those refused by ACL
    /// (`NOPERM`), with Redis's words. Other errors are not this probe's business.
    pub async fn refused_commands(
        &self,
        master: &str,
        name: &str,
    ) -> Vec<(&'static NeededCommand, String)> {
        let mut refused = Vec::new();
        for needed in NEEDED_COMMANDS {
            let mut words = needed.args.iter().map(|w| match *w {
                "{master}" => master.to_owned(),
                "{name}" => name.to_owned(),
                w => w.to_owned(),
            });
            let Some(cmd) = words.next() else { continue };
            let cmd = CustomCommand::new(cmd, ClusterHash::FirstKey, false);
            let args: Vec<String> = words.collect();
            if let Err(e) = self.cmd.custom::<Value, _>(cmd, args).await {
                let e = e.to_string();
                if e.contains("NOPERM") {
                    refused.push((needed, e));
                }
            }
        }
        refused
    }

    /// Why the last connection attempt failed, waiting up to `within` for the
    /// first failure to be recorded (fred reports a failed first connect to
    /// `wait_for_connect` a moment before its error broadcast).
    pub async fn problem(&self, within: Duration) -> Option<LinkProblem> {
        let mut rx = self.problem.clone();
        let _ = tokio::time::timeout(within, rx.wait_for(|p| p.is_some())).await;
        let p = rx.borrow().clone();
        p
    }

    /// Ends the link: its naming task and its connection.
    pub async fn close(&self) {
        self.minder.abort();
        let _ = self.cmd.quit().await;
    }
}

fn no_such_master(e: &fred::error::Error) -> bool {
    e.details().contains("No such master")
}
