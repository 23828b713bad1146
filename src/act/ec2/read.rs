//! Reads: route tables (batched per role, each gone table named), network
//! interfaces by private IP, VPC CIDRs, a target's VPC, source/dest checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_ec2::types::{Filter, RouteState};
use aws_sdk_ec2::Client;
use ipnet::IpNet;

use super::{checked, Ec2};
use crate::config::{EniId, InstanceId, RoleArn, RouteTableId, Target};
use crate::decide::facts::{Ec2Error, ErrorClass, TableRead, TableReads};
use crate::decide::plan::CurrentRoute;

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

impl Ec2 {
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
            let owner = checked("DescribeRouteTables", || subject.clone(), r).and_then(|out| {
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
                    let page = checked("DescribeRouteTables", || subject.clone(), page)?;
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
        let found = checked("DescribeRouteTables", || subject.clone(), r)?
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
        let out = checked("DescribeNetworkInterfaces", || subject, r)?;
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

    /// Source/dest check of a network interface (must be off on every Redis
    /// node's ENI, or the node drops packets addressed to the VIP).
    pub async fn eni_source_dest_check(&self, id: &EniId) -> Result<Option<bool>, Ec2Error> {
        let out = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(id.as_str())
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeNetworkInterfaces", id.as_str(), e))?;
        Ok(out
            .network_interfaces()
            .iter()
            .find_map(|n| n.source_dest_check()))
    }
}
