//! Act: the VPC route tables through aws-sdk-ec2. Thin I/O; decisions live in
//! [`crate::decide::plan`].
//!
//! Throttling, 5xx, timeouts and connection errors are retried by the SDK's
//! standard retry strategy (exponential backoff with jitter) under a per-call
//! deadline; permission and not-found errors are not retried and come back
//! classified so that the caller can say what is missing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_sdk_ec2::config::SharedCredentialsProvider;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, RouteState};
use aws_sdk_ec2::Client;
use ipnet::IpNet;

use crate::config::{AwsConfig, Config, EniId, InstanceId, RoleArn, RouteTableId, Target};
use crate::decide::facts::{Ec2Error, ErrorClass, TableRead, TableReads};
use crate::decide::plan::CurrentRoute;

impl Ec2Error {
    fn from_sdk<E, R>(
        operation: &'static str,
        subject: impl Into<String>,
        err: SdkError<E, R>,
    ) -> Ec2Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (class, code, message) = match &err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                let code = e.code().map(str::to_owned);
                let class = classify(code.as_deref());
                let msg = format!(
                    "{}: {}",
                    code.as_deref().unwrap_or("error"),
                    e.message().unwrap_or("no message")
                );
                (class, code, msg)
            }
            SdkError::TimeoutError(_) => (ErrorClass::Transient, None, "timed out".to_owned()),
            SdkError::DispatchFailure(d) => (
                ErrorClass::Transient,
                None,
                format!(
                    "cannot reach the EC2 endpoint: {}",
                    error_chain(
                        d.as_connector_error()
                            .map(|c| c as &(dyn std::error::Error + 'static))
                    )
                ),
            ),
            SdkError::ResponseError(_) => (
                ErrorClass::Transient,
                None,
                "unreadable response".to_owned(),
            ),
            other => (ErrorClass::Refused, None, format!("{other:?}")),
        };
        Ec2Error {
            operation,
            subject: subject.into(),
            class,
            code,
            message,
        }
    }
}

fn error_chain(e: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut out = String::new();
    let mut cur = e;
    while let Some(err) = cur {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&err.to_string());
        cur = err.source();
    }
    if out.is_empty() {
        "unknown error".into()
    } else {
        out
    }
}

/// Maps an AWS error code to how it is handled.
pub fn classify(code: Option<&str>) -> ErrorClass {
    match code {
        Some(
            "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "Unavailable"
            | "RequestTimeout",
        ) => ErrorClass::Transient,
        Some(
            "UnauthorizedOperation" | "AuthFailure" | "AccessDenied" | "Blocked" | "OptInRequired",
        ) => ErrorClass::Permission,
        Some("InvalidNetworkInterfaceID.NotFound" | "InvalidInstanceID.NotFound") => {
            ErrorClass::TargetGone
        }
        Some(c)
            if c.contains("NotFound")
                || c.ends_with(".Malformed")
                    && c.to_ascii_lowercase().starts_with("invalidroutetableid") =>
        {
            ErrorClass::NotFound
        }
        Some(c)
            if c.starts_with("InvalidInstanceID") || c.starts_with("InvalidNetworkInterfaceID") =>
        {
            ErrorClass::NotFound
        }
        _ => ErrorClass::Refused,
    }
}

/// Names a write in errors: the table, the VIP and the target, so that "does not
/// exist" says which of them.
fn write_subject(table: &RouteTableId, cidr: IpNet, target: &Target) -> String {
    format!("route table {table} ({cidr} -> {target})")
}

fn count_call(operation: &'static str, ok: bool) {
    crate::ops::metrics::METRICS
        .ec2_calls
        .get_or_create(&vec![
            ("operation", operation.to_owned()),
            ("result", if ok { "ok" } else { "error" }.to_owned()),
        ])
        .inc();
}

/// The VIP routes of one table from EC2's answer; `None` for a table not asked for.
fn table_read(
    table: &aws_sdk_ec2::types::RouteTable,
    asked: &BTreeSet<RouteTableId>,
    cidrs: &BTreeSet<IpNet>,
) -> Option<(RouteTableId, TableRead)> {
    let id = table
        .route_table_id()
        .and_then(|s| RouteTableId::try_from(s.to_owned()).ok())
        .filter(|id| asked.contains(id))?;
    let mut routes = HashMap::new();
    for r in table.routes() {
        let Some(cidr) = r
            .destination_cidr_block()
            .or(r.destination_ipv6_cidr_block())
            .and_then(|c| c.parse::<IpNet>().ok())
        else {
            continue;
        };
        if cidrs.contains(&cidr) {
            routes.insert(
                cidr,
                CurrentRoute::Points {
                    instance_id: r.instance_id().map(str::to_owned),
                    eni_id: r.network_interface_id().map(str::to_owned),
                    blackhole: r.state() == Some(&RouteState::Blackhole),
                },
            );
        }
    }
    Some((
        id,
        TableRead {
            vpc_id: table.vpc_id().map(str::to_owned),
            routes,
        },
    ))
}

/// A network interface found by private IP.
#[derive(Debug, Clone)]
pub struct FoundInterface {
    pub eni_id: EniId,
    pub vpc_id: Option<String>,
    pub instance_id: Option<String>,
    pub source_dest_check: Option<bool>,
}

/// How many route table ids go in one DescribeRouteTables filter (AWS allows 200).
const TABLES_PER_READ: usize = 200;

/// The EC2 client, configured once and kept warm.
///
/// Route-table calls go through the client of the role that reaches the table
/// (a master's `assume_role_arn`, else `aws.assume_role_arn`, else the default
/// credential chain); every other call goes through the base client
/// (`aws.assume_role_arn` or the default chain).
#[derive(Clone)]
pub struct Ec2 {
    client: Client,
    /// Role of the base client, if any.
    base_role: Option<RoleArn>,
    /// Tables reached through a master's own role: their client and role.
    by_table: std::sync::Arc<HashMap<RouteTableId, (Client, RoleArn)>>,
    region: Option<String>,
}

/// Fetches credentials for one role through STS and says so in the log; the
/// SDK's identity cache in front of it keeps the session until shortly before
/// it expires, so this runs once per session, not once per call.
#[derive(Debug)]
struct AssumedRole {
    role: RoleArn,
    inner: aws_config::sts::AssumeRoleProvider,
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let r = self.inner.provide_credentials().await;
            match &r {
                Ok(c) => tracing::info!(
                    role = %self.role,
                    expires_in_s = c
                        .expiry()
                        .and_then(|e| e.duration_since(std::time::SystemTime::now()).ok())
                        .map(|d| d.as_secs()),
                    "assumed role"
                ),
                Err(e) => tracing::warn!(role = %self.role, error = %e, "cannot assume role"),
            }
            r
        })
    }
}

/// `shared` with its credentials replaced by a cached session of `role`,
/// assumed with `shared`'s own credentials.
async fn with_role(shared: &SdkConfig, role: &RoleArn) -> SdkConfig {
    let provider = aws_config::sts::AssumeRoleProvider::builder(role.as_str())
        .configure(shared)
        .session_name("sentinel-vip")
        .build()
        .await;
    shared
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(AssumedRole {
            role: role.clone(),
            inner: provider,
        }))
        .identity_cache(IdentityCache::lazy().build())
        .build()
}

impl Ec2 {
    /// Builds the client from the default credential chain plus `cfg`
    /// (`aws.assume_role_arn` included; masters' own roles need [`Ec2::for_config`]).
    pub async fn new(cfg: &AwsConfig) -> Ec2 {
        let base = Self::base_config(cfg).await;
        let shared = match &cfg.assume_role_arn {
            Some(role) => with_role(&base, role).await,
            None => base,
        };
        Ec2 {
            client: Client::new(&shared),
            base_role: cfg.assume_role_arn.clone(),
            by_table: Default::default(),
            region: shared.region().map(|r| r.to_string()),
        }
    }

    /// [`Ec2::new`] plus one client per master role (`masters.<name>.assume_role_arn`)
    /// for that master's route tables. A master's role is assumed with the default
    /// chain's credentials (not chained through `aws.assume_role_arn`). A table
    /// listed under two masters with different roles uses the first master's (by name).
    pub async fn for_config(cfg: &Config) -> Ec2 {
        let mut ec2 = Ec2::new(&cfg.aws).await;
        let mut roles: BTreeMap<&RoleArn, Client> = BTreeMap::new();
        let mut by_table = HashMap::new();
        let mut base = None;
        for (name, m) in &cfg.masters {
            let Some(role) = &m.assume_role_arn else {
                continue;
            };
            if !roles.contains_key(role) {
                if base.is_none() {
                    base = Some(Self::base_config(&cfg.aws).await);
                }
                if let Some(base) = &base {
                    roles.insert(role, Client::new(&with_role(base, role).await));
                }
            }
            let Some(client) = roles.get(role) else {
                continue;
            };
            for t in &m.route_tables {
                match by_table.get(t) {
                    Some((_, other)) if other != role => tracing::warn!(
                        table = %t, master = %name, role = %role, used = %other,
                        "route table listed under masters with different roles; using the first"
                    ),
                    Some(_) => {}
                    None => {
                        by_table.insert(t.clone(), (client.clone(), role.clone()));
                    }
                }
            }
        }
        ec2.by_table = std::sync::Arc::new(by_table);
        ec2
    }

    async fn base_config(cfg: &AwsConfig) -> SdkConfig {
        let attempts = cfg.max_attempts.unwrap_or(5).max(1);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(cfg.call_timeout.unwrap_or(Duration::from_secs(20)))
                    .build(),
            );
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &cfg.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader.load().await
    }

    /// The role through which `table` is reached (`None`: the default chain's
    /// own credentials). `check` prints it per table.
    pub fn role_for(&self, table: &RouteTableId) -> Option<&RoleArn> {
        self.by_table
            .get(table)
            .map(|(_, r)| r)
            .or(self.base_role.as_ref())
    }

    /// The region the client resolved (config, environment or profile).
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    fn client_for(&self, table: &RouteTableId) -> &Client {
        self.by_table
            .get(table)
            .map(|(c, _)| c)
            .unwrap_or(&self.client)
    }

    /// The account that owns each table (DescribeRouteTables `OwnerId`), each
    /// asked by id through the client that reaches it: `iam-policy` puts it in
    /// the tables' ARNs.
    pub async fn table_owners(
        &self,
        tables: &BTreeSet<RouteTableId>,
    ) -> BTreeMap<RouteTableId, Result<String, Ec2Error>> {
        futures::future::join_all(tables.iter().map(|t| async move {
            let subject = format!("route table {t}");
            let r = self
                .client_for(t)
                .describe_route_tables()
                .route_table_ids(t.as_str())
                .send()
                .await;
            count_call("DescribeRouteTables", r.is_ok());
            let owner = r
                .map_err(|e| Ec2Error::from_sdk("DescribeRouteTables", subject.clone(), e))
                .and_then(|out| {
                    out.route_tables()
                        .iter()
                        .find(|rt| rt.route_table_id() == Some(t.as_str()))
                        .and_then(|rt| rt.owner_id())
                        .map(str::to_owned)
                        .ok_or_else(|| Ec2Error {
                            operation: "DescribeRouteTables",
                            subject,
                            class: ErrorClass::NotFound,
                            code: None,
                            message: "no OwnerId in the answer".into(),
                        })
                });
            (t.clone(), owner)
        }))
        .await
        .into_iter()
        .collect()
    }

    /// Reads the given route tables and keeps only the routes for `cidrs`; a table
    /// that is gone is absent from the map. Kept for callers that only need the
    /// tables found; [`Ec2::read_each_table`] says which are gone and why.
    pub async fn read_tables(
        &self,
        tables: &BTreeSet<RouteTableId>,
        cidrs: &BTreeSet<IpNet>,
    ) -> Result<HashMap<RouteTableId, TableRead>, Ec2Error> {
        Ok(self
            .read_each_table(tables, cidrs)
            .await?
            .into_iter()
            .filter_map(|(id, r)| r.ok().map(|r| (id, r)))
            .collect())
    }

    /// Reads the given route tables and keeps only the routes for `cidrs`.
    ///
    /// Every table asked for is a key of the answer: `Ok` with its routes, or
    /// `Err` for that table alone (gone: [`Ec2Error::is_table_gone`]). The outer
    /// `Err` is for a read that failed as a whole (network, throttling, permission).
    ///
    /// How: DescribeRouteTables with a `route-table-id` *filter* (batches of 200,
    /// paginated), which answers for the tables that exist and silently leaves out
    /// the others — so one gone table cannot blind the others, as a `RouteTableIds`
    /// list would (that fails the whole call with `InvalidRouteTableID.NotFound`).
    /// Each table left out is then asked for by id, alone, to get EC2's own verdict
    /// (usually `InvalidRouteTableID.NotFound`) — an extra call only when a table is
    /// missing, and it also absorbs a table created a moment ago.
    pub async fn read_each_table(
        &self,
        tables: &BTreeSet<RouteTableId>,
        cidrs: &BTreeSet<IpNet>,
    ) -> Result<TableReads, Ec2Error> {
        // One batch per client (role), each cut into filters of 200 ids.
        let mut groups: BTreeMap<Option<&RoleArn>, (&Client, Vec<String>)> = BTreeMap::new();
        for t in tables {
            let role = self.by_table.get(t).map(|(_, r)| r);
            groups
                .entry(role)
                .or_insert_with(|| (self.client_for(t), Vec::new()))
                .1
                .push(t.as_str().to_owned());
        }
        let batches: Vec<(&Client, &[String])> = groups
            .values()
            .flat_map(|(client, ids)| ids.chunks(TABLES_PER_READ).map(move |c| (*client, c)))
            .collect();
        let reads =
            futures::future::try_join_all(batches.into_iter().map(|(client, chunk)| async move {
                let subject = if chunk.len() == 1 {
                    format!("route table {}", chunk[0])
                } else {
                    format!("{} route tables", chunk.len())
                };
                let mut pages = client
                    .describe_route_tables()
                    .filters(
                        Filter::builder()
                            .name("route-table-id")
                            .set_values(Some(chunk.to_vec()))
                            .build(),
                    )
                    .into_paginator()
                    .send();
                let mut tables = Vec::new();
                while let Some(page) = pages.next().await {
                    count_call("DescribeRouteTables", page.is_ok());
                    let page = page.map_err(|e| {
                        Ec2Error::from_sdk("DescribeRouteTables", subject.clone(), e)
                    })?;
                    tables.extend(page.route_tables.unwrap_or_default());
                }
                Ok::<_, Ec2Error>(tables)
            }))
            .await?;
        let mut out: TableReads = BTreeMap::new();
        for table in reads.into_iter().flatten() {
            if let Some((id, read)) = table_read(&table, tables, cidrs) {
                out.insert(id, Ok(read));
            }
        }
        let absent: Vec<&RouteTableId> = tables.iter().filter(|t| !out.contains_key(*t)).collect();
        let verdicts = futures::future::join_all(
            absent
                .into_iter()
                .map(|t| async move { (t.clone(), self.read_one_table(t, tables, cidrs).await) }),
        )
        .await;
        out.extend(verdicts);
        Ok(out)
    }

    /// One table by id: EC2 names it when it is gone.
    async fn read_one_table(
        &self,
        id: &RouteTableId,
        tables: &BTreeSet<RouteTableId>,
        cidrs: &BTreeSet<IpNet>,
    ) -> Result<TableRead, Ec2Error> {
        let subject = format!("route table {id}");
        let r = self
            .client_for(id)
            .describe_route_tables()
            .route_table_ids(id.as_str())
            .send()
            .await;
        count_call("DescribeRouteTables", r.is_ok());
        let found = r
            .map_err(|e| Ec2Error::from_sdk("DescribeRouteTables", subject.clone(), e))?
            .route_tables
            .unwrap_or_default()
            .iter()
            .find_map(|t| table_read(t, tables, cidrs).filter(|(got, _)| got == id));
        found.map(|(_, read)| read).ok_or_else(|| Ec2Error {
            operation: "DescribeRouteTables",
            subject,
            class: ErrorClass::NotFound,
            code: Some("InvalidRouteTableID.NotFound".into()),
            message: "InvalidRouteTableID.NotFound: not in the answer".into(),
        })
    }

    /// Points `cidr` in `table` at `target`: ReplaceRoute, or CreateRoute when the
    /// route does not exist (and the other way round when it appeared meanwhile).
    ///
    /// `create_first` picks the first call from what the caller last read. When
    /// that is stale (the route was deleted, or created by someone else), EC2's
    /// answer says so and the other call follows at once: one round trip more at
    /// most, and no failure reported. Only "no such route" ([`Ec2Error::is_route_missing`])
    /// and `RouteAlreadyExists` switch; every other error is returned as is.
    pub async fn write_route(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        target: &Target,
        create_first: bool,
    ) -> Result<(), Ec2Error> {
        let first = if create_first {
            self.create_route(table, cidr, target).await
        } else {
            self.replace_route(table, cidr, target).await
        };
        match first {
            Err(e) if !create_first && e.is_route_missing() => {
                tracing::debug!(table = %table, %cidr, %target, "no VIP route to replace; creating it");
                self.create_route(table, cidr, target).await
            }
            Err(e) if create_first && e.is_route_already_there() => {
                tracing::debug!(table = %table, %cidr, %target, "VIP route already exists; replacing it");
                self.replace_route(table, cidr, target).await
            }
            other => other,
        }
    }

    async fn replace_route(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        target: &Target,
    ) -> Result<(), Ec2Error> {
        let req = self
            .client_for(table)
            .replace_route()
            .route_table_id(table.as_str());
        let req = match cidr {
            IpNet::V4(_) => req.destination_cidr_block(cidr.to_string()),
            IpNet::V6(_) => req.destination_ipv6_cidr_block(cidr.to_string()),
        };
        let req = match target {
            Target::Instance(i) => req.instance_id(i.as_str()),
            Target::Eni(e) => req.network_interface_id(e.as_str()),
        };
        let r = req.send().await;
        count_call("ReplaceRoute", r.is_ok());
        r.map(|_| ())
            .map_err(|e| Ec2Error::from_sdk("ReplaceRoute", write_subject(table, cidr, target), e))
    }

    async fn create_route(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        target: &Target,
    ) -> Result<(), Ec2Error> {
        let req = self
            .client_for(table)
            .create_route()
            .route_table_id(table.as_str());
        let req = match cidr {
            IpNet::V4(_) => req.destination_cidr_block(cidr.to_string()),
            IpNet::V6(_) => req.destination_ipv6_cidr_block(cidr.to_string()),
        };
        let req = match target {
            Target::Instance(i) => req.instance_id(i.as_str()),
            Target::Eni(e) => req.network_interface_id(e.as_str()),
        };
        let r = req.send().await;
        count_call("CreateRoute", r.is_ok());
        r.map(|_| ())
            .map_err(|e| Ec2Error::from_sdk("CreateRoute", write_subject(table, cidr, target), e))
    }

    /// Harmless permission probe: a DryRun ReplaceRoute to the route's *current*
    /// target (emulators that ignore DryRun then write what is already there).
    pub async fn probe_replace_permission(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        current: &Target,
    ) -> Result<(), Ec2Error> {
        let req = self
            .client_for(table)
            .replace_route()
            .dry_run(true)
            .route_table_id(table.as_str());
        let req = match cidr {
            IpNet::V4(_) => req.destination_cidr_block(cidr.to_string()),
            IpNet::V6(_) => req.destination_ipv6_cidr_block(cidr.to_string()),
        };
        let req = match current {
            Target::Instance(i) => req.instance_id(i.as_str()),
            Target::Eni(e) => req.network_interface_id(e.as_str()),
        };
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = Ec2Error::from_sdk("ReplaceRoute(DryRun)", table.as_str(), e);
                if err.code.as_deref() == Some("DryRunOperation") {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Finds the network interface holding `ip` as a private address, in any VPC
    /// (the first one EC2 lists). Prefer [`Ec2::find_interfaces`] scoped to the
    /// route tables' VPCs: private IPs overlap across VPCs.
    pub async fn find_interface(&self, ip: &str) -> Result<Option<FoundInterface>, Ec2Error> {
        Ok(self.find_interfaces(ip, &[]).await?.into_iter().next())
    }

    /// Every network interface holding `ip` as a private address in one of `vpcs`
    /// (all VPCs when `vpcs` is empty). Inside one VPC a private IP is unique, so
    /// more than one answer means the scope spans VPCs that overlap.
    pub async fn find_interfaces(
        &self,
        ip: &str,
        vpcs: &[String],
    ) -> Result<Vec<FoundInterface>, Ec2Error> {
        // EC2 files IPv6 addresses apart from private IPv4 ones (emulators
        // may not know the IPv6 filter: use a `nodes` map there).
        let by = if ip.contains(':') {
            "ipv6-addresses.ipv6-address"
        } else {
            "addresses.private-ip-address"
        };
        let mut req = self
            .client
            .describe_network_interfaces()
            .filters(Filter::builder().name(by).values(ip).build());
        if !vpcs.is_empty() {
            req = req.filters(
                Filter::builder()
                    .name("vpc-id")
                    .set_values(Some(vpcs.to_vec()))
                    .build(),
            );
        }
        let subject = if vpcs.is_empty() {
            format!("private IP {ip}")
        } else {
            format!("private IP {ip} in {}", vpcs.join(", "))
        };
        let r = req.send().await;
        count_call("DescribeNetworkInterfaces", r.is_ok());
        let out = r.map_err(|e| Ec2Error::from_sdk("DescribeNetworkInterfaces", subject, e))?;
        Ok(out
            .network_interfaces()
            .iter()
            .filter_map(|ni| {
                let eni_id = EniId::try_from(ni.network_interface_id()?.to_owned()).ok()?;
                Some(FoundInterface {
                    eni_id,
                    vpc_id: ni.vpc_id().map(str::to_owned),
                    instance_id: ni
                        .attachment()
                        .and_then(|a| a.instance_id())
                        .map(str::to_owned),
                    source_dest_check: ni.source_dest_check(),
                })
            })
            .collect())
    }

    /// The CIDR blocks of a VPC (for `check`'s VIP-inside-VPC warning).
    pub async fn vpc_cidrs(&self, vpc_id: &str) -> Result<Vec<IpNet>, Ec2Error> {
        let out = self
            .client
            .describe_vpcs()
            .vpc_ids(vpc_id)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeVpcs", vpc_id, e))?;
        Ok(out
            .vpcs()
            .iter()
            .flat_map(|v| {
                v.cidr_block_association_set()
                    .iter()
                    .filter_map(|a| a.cidr_block())
            })
            .chain(out.vpcs().iter().filter_map(|v| v.cidr_block()))
            .chain(out.vpcs().iter().flat_map(|v| {
                v.ipv6_cidr_block_association_set()
                    .iter()
                    .filter_map(|a| a.ipv6_cidr_block())
            }))
            .filter_map(|c| c.parse().ok())
            .collect())
    }

    /// The VPC of a static `nodes` target (DescribeNetworkInterfaces by id, or
    /// DescribeInstances): `check` compares it with the route tables' VPCs.
    pub async fn target_vpc(&self, target: &Target) -> Result<Option<String>, Ec2Error> {
        match target {
            Target::Eni(e) => {
                let out = self
                    .client
                    .describe_network_interfaces()
                    .network_interface_ids(e.as_str())
                    .send()
                    .await
                    .map_err(|err| {
                        Ec2Error::from_sdk("DescribeNetworkInterfaces", e.as_str(), err)
                    })?;
                Ok(out
                    .network_interfaces()
                    .iter()
                    .find_map(|n| n.vpc_id().map(str::to_owned)))
            }
            Target::Instance(i) => {
                let out = self
                    .client
                    .describe_instances()
                    .instance_ids(i.as_str())
                    .send()
                    .await
                    .map_err(|err| Ec2Error::from_sdk("DescribeInstances", i.as_str(), err))?;
                Ok(out
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| i.vpc_id().map(str::to_owned)))
            }
        }
    }

    /// Source/dest check of an instance (must be off on every Redis node).
    pub async fn instance_source_dest_check(
        &self,
        id: &InstanceId,
    ) -> Result<Option<bool>, Ec2Error> {
        let out = self
            .client
            .describe_instances()
            .instance_ids(id.as_str())
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeInstances", id.as_str(), e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.source_dest_check()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(
            classify(Some("RequestLimitExceeded")),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(Some("UnauthorizedOperation")),
            ErrorClass::Permission
        );
        assert_eq!(
            classify(Some("InvalidRouteTableID.NotFound")),
            ErrorClass::NotFound
        );
        assert_eq!(classify(Some("InvalidInstanceID")), ErrorClass::NotFound);
        assert_eq!(
            classify(Some("InvalidRouteTableId.Malformed")),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify(Some("InvalidNetworkInterfaceID.NotFound")),
            ErrorClass::TargetGone
        );
        assert_eq!(
            classify(Some("InvalidInstanceID.NotFound")),
            ErrorClass::TargetGone
        );
        assert_eq!(classify(Some("InvalidParameterValue")), ErrorClass::Refused);
        assert_eq!(classify(None), ErrorClass::Refused);
    }

    fn err(code: &str, message: &str) -> Ec2Error {
        Ec2Error {
            operation: "ReplaceRoute",
            subject: "route table rtb-1".into(),
            class: classify(Some(code)),
            code: Some(code.into()),
            message: format!("{code}: {message}"),
        }
    }

    #[test]
    fn replace_on_a_missing_route_falls_back_to_create_only_on_that_message() {
        // What moto 5.2.5 and EC2 answer (see the table above Ec2Error's impl).
        assert!(err(
            "InvalidParameterValue",
            "There is no route defined for '172.16.0.10/32' in the route table. Use CreateRoute instead."
        )
        .is_route_missing());
        assert!(err("InvalidRoute.NotFound", "no such route").is_route_missing());
        assert!(!err(
            "InvalidParameterValue",
            "Value (x) for parameter cidr is invalid"
        )
        .is_route_missing());
        assert!(err(
            "RouteAlreadyExists",
            "The route identified by 172.16.0.10/32 already exists"
        )
        .is_route_already_there());
        assert!(
            !err("InvalidParameterValue", "There is no route defined for 'x'")
                .is_route_already_there()
        );
    }

    #[test]
    fn gone_target_and_gone_table_are_told_apart_and_say_what_to_do() {
        let eni = err(
            "InvalidNetworkInterfaceID.NotFound",
            "The networkInterface ID 'eni-1' does not exist",
        );
        assert!(eni.is_target_gone() && !eni.is_table_gone());
        assert!(eni.to_string().contains("looked up again"));
        let rtb = err(
            "InvalidRouteTableID.NotFound",
            "The routeTable ID 'rtb-1' does not exist",
        );
        assert!(rtb.is_table_gone() && !rtb.is_target_gone());
        assert_eq!(rtb.class, ErrorClass::NotFound);
        let shown = rtb.to_string();
        assert!(
            shown.contains("rtb-1") && shown.contains("route_tables"),
            "{shown}"
        );
        assert!(!err("InvalidInstanceID", "several network interfaces").is_target_gone());
    }
}
