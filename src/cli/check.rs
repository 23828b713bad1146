//! `sentinel-vip check`: validates the config against the live sentinels and
//! EC2, one line per check, non-zero exit when any check failed.

mod reach;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::act::ec2::Ec2;
use crate::config::{Config, Target};
use crate::decide::facts::ErrorClass;
use crate::decide::plan::CurrentRoute;
use crate::decide::quorum::{self, Answer, Verdict};

use crate::act::targets::Targets;
use crate::watch::{self, SentinelLink};

#[derive(Default)]
struct Checklist {
    failed: usize,
    warned: usize,
}

impl Checklist {
    fn ok(&mut self, what: impl AsRef<str>) {
        println!("ok    {}", what.as_ref());
    }
    fn warn(&mut self, what: impl AsRef<str>) {
        self.warned += 1;
        println!("warn  {}", what.as_ref());
    }
    fn fail(&mut self, what: impl AsRef<str>) {
        self.failed += 1;
        println!("FAIL  {}", what.as_ref());
    }
}

impl Checklist {
    fn exit(&self) -> super::Exit {
        println!("{} checks failed, {} warnings", self.failed, self.warned);
        if self.failed == 0 {
            super::Exit::Ok
        } else {
            super::Exit::Failed
        }
    }
}

/// `check --offline`: the config and the secrets it names, no network.
pub(super) fn offline(
    cfg: &Config,
    config_path: &str,
    password: Result<(), String>,
) -> super::Exit {
    let mut r = Checklist::default();
    check_config(&mut r, cfg, config_path, password);
    r.exit()
}

/// What needs no network: the config parsed (else we would not be here), and
/// every secret it names readable in this environment (the sentinel password
/// as `password` says, each webhook's variables). A missing secret is a failed
/// line naming the sink and the variable, never a value.
fn check_config(r: &mut Checklist, cfg: &Config, config_path: &str, password: Result<(), String>) {
    r.ok(format!(
        "config {config_path}: {} sentinels, {} masters, {} webhooks",
        cfg.sentinels.len(),
        cfg.masters.len(),
        cfg.alerts.webhooks.len()
    ));
    for (name, m) in &cfg.masters {
        let Some(vip) = m.vip else { continue };
        let net = vip.0;
        if net.prefix_len() < net.max_prefix_len() {
            r.warn(format!(
                "masters.{name}.vip: {net} is wider than one address; a VIP is one address (/{}): every address in {net} would be routed to the master",
                net.max_prefix_len()
            ));
        }
    }
    match password {
        Ok(()) => {
            if let Some(key) = cfg
                .sentinel_auth
                .as_ref()
                .filter(|a| a.password.is_some())
                .map(|a| a.password_key())
            {
                r.ok(format!("{key}: the sentinel password is readable"));
            }
        }
        Err(e) => r.fail(e),
    }
    for sink in cfg.alerts.each_sink() {
        match sink {
            Ok(w) => r.ok(format!(
                "webhook {} ({:?}): its url and secrets are readable",
                w.name, w.kind
            )),
            Err(p) => r.fail(format!(
                "webhook {}: {}: {}; `run` and `test-alert` need it (in the service's environment: Environment=, EnvironmentFile= or a credential)",
                p.sink, p.key, p.why
            )),
        }
    }
}

/// Runs every check; [`super::Exit::Failed`] when any failed.
pub(super) async fn run(
    cfg: &Config,
    config_path: &str,
    password: Result<(), String>,
) -> super::Exit {
    let mut r = Checklist::default();
    check_config(&mut r, cfg, config_path, password);
    let links = watch::command_links(
        &cfg.sentinels,
        cfg.sentinel_auth.as_ref(),
        "sentinel-vip-check",
    );
    let up = watch::wait_connected(&links, Duration::from_secs(3)).await;
    let tls = cfg.sentinel_tls.as_ref().map(|t| {
        format!(
            " over TLS (verified against {}{}{})",
            t.ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the system CAs".to_owned()),
            t.server_name
                .as_ref()
                .map(|n| format!(" as {n}"))
                .unwrap_or_default(),
            if t.client_cert {
                ", client certificate sent"
            } else {
                ""
            }
        )
    });
    let user = cfg.sentinel_auth.as_ref().and_then(|a| a.username.clone());
    for (l, ok) in links.iter().zip(&up) {
        if *ok {
            r.ok(format!(
                "sentinel {}: reachable{}",
                l.addr,
                tls.as_deref().unwrap_or("")
            ));
            check_is_sentinel(&mut r, l).await;
            check_permissions(&mut r, l, cfg, user.as_deref()).await;
            match watch::probe_subscribe(&l.addr, cfg.sentinel_auth.as_ref()).await {
                Ok(()) => r.ok(format!("sentinel {}: PSUBSCRIBE * allowed", l.addr)),
                Err((watch::SubscribeError::Refused(_), e)) => r.fail(format!(
                    "sentinel {}: PSUBSCRIBE * refused, the daemon would see no events from it: {e}",
                    l.addr
                )),
                Err((watch::SubscribeError::NoAnswer(_), e)) => r.fail(format!(
                    "sentinel {}: PSUBSCRIBE * unanswered, the daemon would see no events from it: {e}",
                    l.addr
                )),
            }
        } else {
            match l.problem(Duration::from_millis(500)).await {
                Some(p) if p.conclusive => {
                    r.fail(format!("sentinel {}: cannot connect: {}", l.addr, p.reason))
                }
                Some(p) => r.fail(format!("sentinel {}: unreachable: {}", l.addr, p.reason)),
                None => r.fail(format!(
                    "sentinel {}: unreachable (is it running, is the address/port right, auth?)",
                    l.addr
                )),
            }
        }
    }
    let ec2 = Ec2::for_config(cfg).await;
    let (tables, cidrs) = (cfg.route_tables(), cfg.vip_cidrs());
    let read = match ec2.read_tables(&tables, &cidrs).await {
        Ok(read) => {
            r.ok(format!(
                "ec2: DescribeRouteTables answered for {} tables",
                tables.len()
            ));
            Some(read)
        }
        Err(e) => {
            let hint = if e.class == ErrorClass::Permission {
                " (grant ec2:DescribeRouteTables)"
            } else {
                ""
            };
            r.fail(format!("ec2: {e}{hint}"));
            None
        }
    };
    let targets = Targets::default();
    // Commands to a link that is down would wait for their timeout each.
    let reachable: Vec<SentinelLink> = links
        .iter()
        .zip(&up)
        .filter(|(_, ok)| **ok)
        .map(|(l, _)| l.clone())
        .collect();
    for (name, m) in &cfg.masters {
        let master = check_master(&mut r, &reachable, links.len(), name).await;
        let Some(read) = &read else { continue };
        let target = match &master {
            Some(addr) => match targets.resolve(&ec2, name, m, addr).await {
                Ok(t) => {
                    r.ok(format!("master {name}: {addr} maps to EC2 target {t}"));
                    Some(t)
                }
                Err(e) => {
                    r.fail(format!("master {name}: {e}"));
                    None
                }
            },
            None => None,
        };
        // Source/dest check matters where a route table sends the VIP's
        // packets to a node; a secondary IP, Elastic IP or DNS record is the
        // node's own address and works with the check on.
        if !m.route_tables.is_empty() {
            check_source_dest(&mut r, &ec2, &targets, &reachable, name, m, master.as_ref()).await;
        }
        check_nodes_share_the_tables_vpc(&mut r, &ec2, name, m, read).await;
        reach::check_carriers(&mut r, &ec2, name, m, target.as_ref()).await;
        let Some(vip) = m.vip else { continue };
        for t in &m.route_tables {
            report_role(&mut r, &ec2, t);
            let Some(table) = read.get(t) else {
                r.fail(format!(
                    "route table {t} (masters.{name}): not found in EC2"
                ));
                continue;
            };
            if let Some(vpc) = &table.vpc_id {
                if let Ok(blocks) = ec2.vpc_cidrs(vpc).await {
                    if blocks.iter().any(|b| b.contains(&vip.0.addr())) {
                        r.warn(format!(
                            "route table {t}: VIP {} lies inside VPC {vpc}'s CIDR; AWS refuses routes more specific than the local route in most set-ups: pick a VIP outside the VPC",
                            vip
                        ));
                    }
                }
            }
            let current = table.route(&vip.0);
            let state = current.describe();
            match (&current, &target) {
                (CurrentRoute::Missing, _) => {
                    r.ok(format!("route table {t}: no route for {} yet; it will be created", vip));
                    probe_create(&mut r, &ec2, t, m, target.as_ref()).await;
                }
                (c, Some(tg)) if c.points_at(tg) => {
                    r.ok(format!("route table {t}: {} → {state} (the master's target)", vip))
                }
                _ => r.warn(format!(
                    "route table {t}: {} → {state}, not the master's target; the daemon will repair it",
                    vip
                )),
            }
            if let CurrentRoute::Points {
                instance_id,
                eni_id,
                blackhole: false,
            } = &current
            {
                let cur = eni_id
                    .clone()
                    .and_then(|e| e.try_into().ok().map(Target::Eni))
                    .or_else(|| {
                        instance_id
                            .clone()
                            .and_then(|i| i.try_into().ok().map(Target::Instance))
                    });
                if let Some(cur) = cur {
                    match ec2.probe_replace_permission(t, vip.0, &cur).await {
                        Ok(()) => r.ok(format!("route table {t}: ec2:ReplaceRoute permitted")),
                        Err(e) if e.class == ErrorClass::Permission => r.fail(format!(
                            "route table {t}: missing permission ec2:ReplaceRoute ({e})"
                        )),
                        Err(e) => r.warn(format!(
                            "route table {t}: ReplaceRoute probe inconclusive: {e}"
                        )),
                    }
                }
            }
        }
    }
    for l in &links {
        l.close().await;
    }
    r.exit()
}

async fn check_master(
    r: &mut Checklist,
    links: &[SentinelLink],
    configured: usize,
    name: &str,
) -> Option<crate::watch::event::Addr> {
    let mut answers = vec![Answer::Unreachable; configured - links.len()];
    for l in links {
        match l.master(name).await {
            Ok(Some((v, stale))) => {
                let stale = stale
                    .map(|s| format!("; SENTINEL MASTER still shows {s} until its failover ends"))
                    .unwrap_or_default();
                r.ok(format!(
                    "sentinel {}: monitors {name}, master {} (config-epoch {}, flags {}{stale})",
                    l.addr, v.addr, v.config_epoch, v.flags
                ));
                answers.push(Answer::View(v));
            }
            Ok(None) => {
                r.fail(format!(
                    "sentinel {}: does not monitor a master named {name}",
                    l.addr
                ));
                answers.push(Answer::NotMonitored);
            }
            Err(_) => answers.push(Answer::Unreachable),
        }
    }
    check_sentinel_count(r, links, configured, name).await;
    match quorum::decide(&answers, configured) {
        Verdict::Master {
            addr,
            votes,
            config_epoch,
            ..
        } => {
            r.ok(format!(
                "master {name}: majority ({votes}/{configured}) says {addr} at config-epoch {config_epoch}"
            ));
            Some(addr)
        }
        Verdict::NoMajority { usable, needed, .. } => {
            r.fail(format!(
                "master {name}: no majority ({usable} usable answers, {needed} needed)"
            ));
            None
        }
    }
}

/// Which credentials reach `table` (a master's role, `aws.assume_role_arn`, or
/// the default chain): with several accounts, a "not found" is read against it.
fn report_role(r: &mut Checklist, ec2: &Ec2, table: &crate::config::RouteTableId) {
    match ec2.role_for(table) {
        Some(role) => r.ok(format!("route table {table}: reached as role {role}")),
        None => r.ok(format!(
            "route table {table}: reached with the default credentials"
        )),
    }
}

/// A route's target must be in the table's VPC (EC2 refuses the write
/// otherwise): warn when a table of `masters.<name>` lies in another VPC than its
/// static `nodes`. Discovered targets are looked up in the tables' VPCs already.
/// Best effort: a node whose VPC cannot be read (permission) is skipped and said.
async fn check_nodes_share_the_tables_vpc(
    r: &mut Checklist,
    ec2: &Ec2,
    name: &str,
    m: &crate::config::MasterConfig,
    read: &std::collections::HashMap<crate::config::RouteTableId, crate::decide::facts::TableRead>,
) {
    let Some(nodes) = &m.nodes else { return };
    let mut node_vpcs = BTreeSet::new();
    for t in nodes.values() {
        match ec2.target_vpc(t).await {
            Ok(Some(vpc)) => {
                node_vpcs.insert(vpc);
            }
            Ok(None) => r.warn(format!("master {name}: node {t} not found in EC2")),
            Err(e) => {
                r.ok(format!("master {name}: VPC of node {t} not checked ({e})"));
            }
        }
    }
    if node_vpcs.is_empty() {
        return;
    }
    let nodes_in = node_vpcs.iter().cloned().collect::<Vec<_>>().join(", ");
    for t in &m.route_tables {
        match read.get(t).and_then(|x| x.vpc_id.as_ref()) {
            Some(vpc) if !node_vpcs.contains(vpc) => r.warn(format!(
                "route table {t}: in {vpc}, but the nodes of masters.{name} are in {nodes_in}; a route can only point at a target in the table's VPC (clients in another VPC reach the VIP through a Transit Gateway: see docs/reachability.md)"
            )),
            Some(vpc) => r.ok(format!("route table {t}: same VPC ({vpc}) as the nodes of masters.{name}")),
            None => {}
        }
    }
}

/// Source/dest check must be off on every node the VIP can move to, or that
/// node drops the packets addressed to the VIP after a failover: every static
/// `nodes` target (instances and ENIs), or without `nodes` the master and the
/// replicas the sentinels report, each resolved to its target as the daemon
/// would. Unreadable (permission): said, not failed.
async fn check_source_dest(
    r: &mut Checklist,
    ec2: &Ec2,
    targets: &Targets,
    links: &[SentinelLink],
    name: &str,
    m: &crate::config::MasterConfig,
    master: Option<&crate::config::Addr>,
) {
    let mut nodes: Vec<(Target, String)> = Vec::new();
    match &m.nodes {
        Some(map) => {
            for (key, t) in map {
                let who = match key.port {
                    Some(p) => crate::config::Addr::new(key.host.clone(), p).to_string(),
                    None => key.host.clone(),
                };
                nodes.push((t.clone(), format!("node {who}")));
            }
        }
        None => {
            let mut addrs: Vec<(crate::config::Addr, &str)> = Vec::new();
            if let Some(a) = master {
                addrs.push((a.clone(), "master"));
            }
            for l in links {
                if let Ok(replicas) = l.replicas(name).await {
                    addrs.extend(replicas.into_iter().map(|a| (a, "replica")));
                    break;
                }
            }
            for (a, role) in addrs {
                match targets.resolve(ec2, name, m, &a).await {
                    Ok(t) => nodes.push((t, format!("{role} {a}"))),
                    Err(e) => r.warn(format!(
                        "master {name}: {role} {a}: no EC2 target found, source/dest check not read ({e})"
                    )),
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (t, who) in nodes {
        if !seen.insert(t.clone()) {
            continue;
        }
        let check = match &t {
            Target::Instance(i) => ec2.instance_source_dest_check(i).await,
            Target::Eni(e) => ec2.eni_source_dest_check(e).await,
        };
        match check {
            Ok(Some(true)) => r.warn(format!(
                "master {name}: source/dest check is ON for {t} ({who}); that node drops packets for the VIP once it is master: disable it on every Redis node's instance/ENI"
            )),
            Ok(Some(false)) => r.ok(format!(
                "master {name}: source/dest check is off for {t} ({who})"
            )),
            Ok(None) => r.warn(format!("master {name}: {t} ({who}) not found in EC2")),
            Err(e) => r.ok(format!(
                "master {name}: source/dest check of {t} ({who}) not read ({e})"
            )),
        }
    }
}

/// A table with no VIP route yet (a first deployment) is written with
/// CreateRoute, which ReplaceRoute's probe does not test: a DryRun CreateRoute
/// of the VIP to the master's target — only where the endpoint honours DryRun
/// (EC2 does; moto performs a DryRun write, so there nothing is sent and the
/// line says so).
async fn probe_create(
    r: &mut Checklist,
    ec2: &Ec2,
    t: &crate::config::RouteTableId,
    m: &crate::config::MasterConfig,
    target: Option<&Target>,
) {
    let (Some(target), Some(vip)) = (target, m.vip) else {
        r.warn(format!(
            "route table {t}: ec2:CreateRoute not probed: no master target to probe with"
        ));
        return;
    };
    match ec2.honours_dry_run(t).await {
        Ok(true) => match ec2.probe_create_permission(t, vip.0, target).await {
            Ok(()) => r.ok(format!("route table {t}: ec2:CreateRoute permitted (DryRun)")),
            Err(e) if e.class == ErrorClass::Permission => r.fail(format!(
                "route table {t}: missing permission ec2:CreateRoute ({e}); the first write of the VIP route would fail"
            )),
            Err(e) => r.warn(format!("route table {t}: CreateRoute probe inconclusive: {e}")),
        },
        Ok(false) => r.warn(format!(
            "route table {t}: ec2:CreateRoute not probed: this EC2 endpoint ignores DryRun (an emulator?) and would create the route; the daemon's first write shows the permission"
        )),
        Err(e) => r.warn(format!(
            "route table {t}: ec2:CreateRoute not probed: DryRun support unknown ({e})"
        )),
    }
}

/// Sends every command the daemon uses once and names each one the ACL user
/// is refused (`NOPERM`), with the rule that grants it: a user missing one
/// permission fails here, not at the first failover.
async fn check_permissions(r: &mut Checklist, l: &SentinelLink, cfg: &Config, user: Option<&str>) {
    let master = cfg.masters.keys().next().map(String::as_str).unwrap_or("");
    // Not the daemon's own name: while check runs, other watchers must not
    // take this host's watcher for alive (the permission tested is the same).
    let name = "sentinel-vip-check";
    let refused = l.refused_commands(master, name).await;
    let who = user.unwrap_or("default");
    for (c, e) in &refused {
        let cmd = c
            .args
            .join(" ")
            .replace("{master}", master)
            .replace("{name}", name);
        let line = format!(
            "sentinel {}: ACL user {who:?} may not run `{cmd}` ({e}); the daemon needs it for {}: run `ACL SETUSER {who} {}` on every sentinel (and persist it)",
            l.addr, c.why, c.rule
        );
        if c.required {
            r.fail(line);
        } else {
            r.warn(line);
        }
    }
    if refused.is_empty() {
        r.ok(format!(
            "sentinel {}: ACL allows every command the daemon sends",
            l.addr
        ));
    }
}

/// A Redis data node listed as a sentinel accepts any `PUBLISH`, so anyone
/// could forge a `+switch-master` through it: `ROLE` must say `sentinel`.
async fn check_is_sentinel(r: &mut Checklist, l: &SentinelLink) {
    match l.role().await {
        Ok(role) if role == "sentinel" => r.ok(format!("sentinel {}: ROLE is sentinel", l.addr)),
        Ok(role) => r.fail(format!(
            "sentinel {}: ROLE says {role:?}: this is a Redis data node, not a sentinel; list the sentinels' addresses (their `port`, 26379 by default) under `sentinels`",
            l.addr
        )),
        Err(e) => r.fail(format!(
            "sentinel {}: ROLE failed ({e}); is it a sentinel?",
            l.addr
        )),
    }
}

/// The majority is counted over the configured list: when the sentinels know
/// more of their own (`num-other-sentinels` + 1), a list that leaves some out
/// can reach a "majority" that Sentinel's own quorum does not share.
async fn check_sentinel_count(
    r: &mut Checklist,
    links: &[SentinelLink],
    configured: usize,
    name: &str,
) {
    let mut known = 0;
    let mut by = None;
    for l in links {
        if let Ok(Some(n)) = l.other_sentinels(name).await {
            if n + 1 > known {
                known = n + 1;
                by = Some(&l.addr);
            }
        }
    }
    if let Some(by) = by {
        if known > configured {
            r.warn(format!(
                "master {name}: sentinel {by} knows {known} sentinels (num-other-sentinels + 1) but `sentinels` lists {}: the majority is counted over the list, so list every sentinel",
                configured
            ));
        } else {
            r.ok(format!(
                "master {name}: `sentinels` lists all {known} sentinels that monitor it"
            ));
        }
    }
}
