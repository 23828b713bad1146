//! Act: the VPC route tables through aws-sdk-ec2. Thin I/O; decisions live in
//! [`crate::plan`].
//!
//! Throttling, 5xx, timeouts and connection errors are retried by the SDK's
//! standard retry strategy (exponential backoff with jitter) under a per-call
//! deadline; permission and not-found errors are not retried and come back
//! classified so that the caller can say what is missing.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, RouteState};
use aws_sdk_ec2::Client;
use ipnet::Ipv4Net;

use crate::config::{AwsConfig, EniId, InstanceId, RouteTableId, Target};
use crate::plan::CurrentRoute;

/// How a failed EC2 call should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeout, network: try again later.
    Transient,
    /// Missing IAM permission: an operator must act.
    Permission,
    /// The route table / instance / ENI does not exist.
    NotFound,
    /// Anything else the API refused.
    Refused,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("EC2 {operation} on {subject}: {message}")]
pub struct Ec2Error {
    pub operation: &'static str,
    /// What the call was about: a route table id, an IP, ...
    pub subject: String,
    pub class: ErrorClass,
    /// The AWS error code, e.g. `UnauthorizedOperation`.
    pub code: Option<String>,
    pub message: String,
}

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
        Some(c)
            if c.contains("NotFound")
                || c.ends_with(".Malformed") && c.starts_with("InvalidRouteTableID") =>
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

fn count_call(operation: &'static str, ok: bool) {
    crate::metrics::METRICS
        .ec2_calls
        .get_or_create(&vec![
            ("operation", operation.to_owned()),
            ("result", if ok { "ok" } else { "error" }.to_owned()),
        ])
        .inc();
}

/// One route table as read: its VPC and the VIP routes it holds.
#[derive(Debug, Clone)]
pub struct TableRead {
    pub vpc_id: Option<String>,
    /// Only the CIDRs asked for; a CIDR not in the map has no route.
    pub routes: HashMap<Ipv4Net, CurrentRoute>,
}

impl TableRead {
    pub fn route(&self, cidr: &Ipv4Net) -> CurrentRoute {
        self.routes
            .get(cidr)
            .cloned()
            .unwrap_or(CurrentRoute::Missing)
    }
}

/// A network interface found by private IP.
#[derive(Debug, Clone)]
pub struct FoundInterface {
    pub eni_id: EniId,
    pub instance_id: Option<String>,
    pub source_dest_check: Option<bool>,
}

/// How many route table ids go in one DescribeRouteTables filter (AWS allows 200).
const TABLES_PER_READ: usize = 200;

/// The EC2 client, configured once and kept warm.
#[derive(Clone)]
pub struct Ec2 {
    client: Client,
}

impl Ec2 {
    /// Builds the client from the default credential chain plus `cfg`.
    pub async fn new(cfg: &AwsConfig) -> Ec2 {
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
        let shared = loader.load().await;
        Ec2 {
            client: Client::new(&shared),
        }
    }

    /// Reads the given route tables in batches (filter `route-table-id`, paginated)
    /// and keeps only the routes for `cidrs`. A table missing from the answer is
    /// missing from the map.
    pub async fn read_tables(
        &self,
        tables: &BTreeSet<RouteTableId>,
        cidrs: &BTreeSet<Ipv4Net>,
    ) -> Result<HashMap<RouteTableId, TableRead>, Ec2Error> {
        let ids: Vec<String> = tables.iter().map(|t| t.as_str().to_owned()).collect();
        let reads =
            futures::future::try_join_all(ids.chunks(TABLES_PER_READ).map(|chunk| async move {
                let subject = if chunk.len() == 1 {
                    chunk[0].clone()
                } else {
                    format!("{} route tables", chunk.len())
                };
                let mut pages = self
                    .client
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
        let mut out = HashMap::new();
        for table in reads.into_iter().flatten() {
            let Some(id) = table
                .route_table_id()
                .and_then(|s| RouteTableId::try_from(s.to_owned()).ok())
            else {
                continue;
            };
            let mut routes = HashMap::new();
            for r in table.routes() {
                let Some(cidr) = r
                    .destination_cidr_block()
                    .and_then(|c| c.parse::<Ipv4Net>().ok())
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
            out.insert(
                id,
                TableRead {
                    vpc_id: table.vpc_id().map(str::to_owned),
                    routes,
                },
            );
        }
        Ok(out)
    }

    /// Points `cidr` in `table` at `target`: ReplaceRoute, or CreateRoute when the
    /// route does not exist (and the other way round when it appeared meanwhile).
    pub async fn write_route(
        &self,
        table: &RouteTableId,
        cidr: Ipv4Net,
        target: &Target,
        create_first: bool,
    ) -> Result<(), Ec2Error> {
        let first = if create_first {
            self.create_route(table, cidr, target).await
        } else {
            self.replace_route(table, cidr, target).await
        };
        match first {
            Err(e) if !create_first && e.code.as_deref() == Some("InvalidRoute.NotFound") => {
                self.create_route(table, cidr, target).await
            }
            Err(e) if create_first && e.code.as_deref() == Some("RouteAlreadyExists") => {
                self.replace_route(table, cidr, target).await
            }
            other => other,
        }
    }

    async fn replace_route(
        &self,
        table: &RouteTableId,
        cidr: Ipv4Net,
        target: &Target,
    ) -> Result<(), Ec2Error> {
        let req = self
            .client
            .replace_route()
            .route_table_id(table.as_str())
            .destination_cidr_block(cidr.to_string());
        let req = match target {
            Target::Instance(i) => req.instance_id(i.as_str()),
            Target::Eni(e) => req.network_interface_id(e.as_str()),
        };
        let r = req.send().await;
        count_call("ReplaceRoute", r.is_ok());
        r.map(|_| ())
            .map_err(|e| Ec2Error::from_sdk("ReplaceRoute", table.as_str(), e))
    }

    async fn create_route(
        &self,
        table: &RouteTableId,
        cidr: Ipv4Net,
        target: &Target,
    ) -> Result<(), Ec2Error> {
        let req = self
            .client
            .create_route()
            .route_table_id(table.as_str())
            .destination_cidr_block(cidr.to_string());
        let req = match target {
            Target::Instance(i) => req.instance_id(i.as_str()),
            Target::Eni(e) => req.network_interface_id(e.as_str()),
        };
        let r = req.send().await;
        count_call("CreateRoute", r.is_ok());
        r.map(|_| ())
            .map_err(|e| Ec2Error::from_sdk("CreateRoute", table.as_str(), e))
    }

    /// Harmless permission probe: a DryRun ReplaceRoute to the route's *current*
    /// target (emulators that ignore DryRun then write what is already there).
    pub async fn probe_replace_permission(
        &self,
        table: &RouteTableId,
        cidr: Ipv4Net,
        current: &Target,
    ) -> Result<(), Ec2Error> {
        let req = self
            .client
            .replace_route()
            .dry_run(true)
            .route_table_id(table.as_str())
            .destination_cidr_block(cidr.to_string());
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

    /// Finds the network interface holding `ip` as a private address.
    pub async fn find_interface(&self, ip: &str) -> Result<Option<FoundInterface>, Ec2Error> {
        let out = self
            .client
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("addresses.private-ip-address")
                    .values(ip)
                    .build(),
            )
            .send()
            .await
            .inspect(|_| count_call("DescribeNetworkInterfaces", true))
            .map_err(|e| Ec2Error::from_sdk("DescribeNetworkInterfaces", ip, e))?;
        Ok(out.network_interfaces().iter().find_map(|ni| {
            let eni_id = EniId::try_from(ni.network_interface_id()?.to_owned()).ok()?;
            Some(FoundInterface {
                eni_id,
                instance_id: ni
                    .attachment()
                    .and_then(|a| a.instance_id())
                    .map(str::to_owned),
                source_dest_check: ni.source_dest_check(),
            })
        }))
    }

    /// The CIDR blocks of a VPC (for `check`'s VIP-inside-VPC warning).
    pub async fn vpc_cidrs(&self, vpc_id: &str) -> Result<Vec<Ipv4Net>, Ec2Error> {
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
            .filter_map(|c| c.parse().ok())
            .collect())
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
        assert_eq!(classify(Some("InvalidParameterValue")), ErrorClass::Refused);
        assert_eq!(classify(None), ErrorClass::Refused);
    }
}
