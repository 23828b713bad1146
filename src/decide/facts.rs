//! What the outside world answered, as the pure core reads it: a route table as
//! read ([`TableRead`]), a failed EC2 call ([`Ec2Error`], classified by
//! [`ErrorClass`]), a master address that maps to no EC2 target
//! ([`TargetError`]). `act` produces these; `decide` judges them.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use crate::addr::Addr;
use crate::config::RouteTableId;
use crate::decide::plan::{Carrier, CurrentRoute, Held};

/// How a failed EC2 call should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeout, network: try again later.
    Transient,
    /// Missing IAM permission: an operator must act.
    Permission,
    /// The route table (or a configured id) does not exist: an operator must act.
    NotFound,
    /// The route's *target* (ENI or instance) no longer exists
    /// (`InvalidNetworkInterfaceID.NotFound`, `InvalidInstanceID.NotFound`). A
    /// discovered target heals by evicting it and resolving the address again
    /// (`act::targets::Targets::evict`); a static `nodes` entry needs the config fixed.
    TargetGone,
    /// Anything else the API refused.
    Refused,
}

/// A failed EC2 call: which call, about what (route table, VIP and target, IP),
/// how to treat it, AWS's code and message. Its `Display` ends with what to do
/// for the cases an operator must fix.
#[derive(Debug, Clone)]
pub struct Ec2Error {
    pub operation: &'static str,
    /// What the call was about: a route table id, an IP, ...
    pub subject: String,
    pub class: ErrorClass,
    /// The AWS error code, e.g. `UnauthorizedOperation`.
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Ec2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let service = match self.operation {
            "ChangeResourceRecordSets"
            | "ListResourceRecordSets"
            | "GetChange"
            | "GetHostedZone" => "Route 53",
            _ => "EC2",
        };
        write!(
            f,
            "{service} {} on {}: {}",
            self.operation, self.subject, self.message
        )?;
        if self.is_table_gone() {
            f.write_str(" (check the id in route_tables, aws.region and the account of the credentials: a deleted table or one of another account reads as not found)")?;
        } else if self.is_target_gone() {
            f.write_str(" (the ENI/instance no longer exists: a discovered target is looked up again; a `nodes` entry must be updated)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Ec2Error {}

/// What EC2 answers on the fault paths this module handles, as measured on moto
/// 5.2.5 (`tests/ec2_repair.rs` asserts the moto column through this module) and as the
/// EC2 API reference ("Error codes for the Amazon EC2 API") documents them:
///
/// | case | moto 5.2.5 | EC2 (docs) |
/// |---|---|---|
/// | ReplaceRoute, no route for the CIDR | `InvalidParameterValue` "There is no route defined for '<cidr>' in the route table. Use CreateRoute instead." | same (moto's source notes it copies AWS here; `InvalidRoute.NotFound` is DeleteRoute's answer) |
/// | CreateRoute, route exists | ENI target: accepted silently (overwrites); instance target: `RouteAlreadyExists` "The route identified by <cidr> already exists" | `RouteAlreadyExists` "A route for the specified CIDR block already exists in this route table." |
/// | route table gone, any call naming it | `InvalidRouteTableID.NotFound` "The routeTable ID '<id>' does not exist" | same code; a badly formed id is `InvalidRouteTableId.Malformed` (moto: NotFound) |
/// | DescribeRouteTables `RouteTableIds=[ok, gone]` | whole call fails `InvalidRouteTableID.NotFound` naming one id | same |
/// | DescribeRouteTables filter `route-table-id=[ok, gone]` | the gone table is silently absent | same |
/// | ReplaceRoute/CreateRoute to a deleted ENI | `InvalidNetworkInterfaceID.NotFound` "The networkInterface ID '<id>' does not exist" | same code ("The specified network interface does not exist.") |
/// | … to an unknown instance | `InvalidInstanceID.NotFound` "The instance ID '<id>' does not exist" | same code; plain `InvalidInstanceID` = instance has several ENIs (config problem, not "gone") |
/// | route whose ENI was deleted, read back | still shows the old ENI id, `State: active` | `State: blackhole` |
/// | ReplaceRoute to an ENI of another VPC | accepted | refused (a route's ENI must be in the table's VPC); discovery is scoped to the tables' VPCs so it is not asked |
impl Ec2Error {
    /// ReplaceRoute found no route for the CIDR: CreateRoute instead. EC2 and moto
    /// say `InvalidParameterValue` with "There is no route defined for '…' in the
    /// route table. Use CreateRoute instead."; `InvalidRoute.NotFound` (DeleteRoute's
    /// answer) is accepted too. Other `InvalidParameterValue`s are not this.
    pub fn is_route_missing(&self) -> bool {
        match self.code.as_deref() {
            Some("InvalidRoute.NotFound") => true,
            Some("InvalidParameterValue") => {
                self.message.contains("There is no route defined for")
                    || self.message.contains("Use CreateRoute instead")
            }
            _ => false,
        }
    }

    /// CreateRoute found a route already there: ReplaceRoute instead.
    pub fn is_route_already_there(&self) -> bool {
        self.code.as_deref() == Some("RouteAlreadyExists")
    }

    /// EC2 says the route's target (ENI or instance) does not exist: a discovered
    /// target must be evicted and resolved again.
    pub fn is_target_gone(&self) -> bool {
        self.class == ErrorClass::TargetGone
    }

    /// EC2 says the route table does not exist (deleted, another account or
    /// region, typo): no write can succeed until the config or the account is fixed.
    pub fn is_table_gone(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            let c = c.to_ascii_lowercase();
            c.starts_with("invalidroutetableid.")
        })
    }
}

/// One route table as read: its VPC and the VIP routes it holds.
#[derive(Debug, Clone)]
pub struct TableRead {
    pub vpc_id: Option<String>,
    /// Only the CIDRs asked for; a CIDR not in the map has no route.
    pub routes: HashMap<IpNet, CurrentRoute>,
}

impl TableRead {
    pub fn route(&self, cidr: &IpNet) -> CurrentRoute {
        self.routes
            .get(cidr)
            .cloned()
            .unwrap_or(CurrentRoute::Missing)
    }
}

/// Every route table asked for, each read or failed on its own (see
/// [`Ec2::read_each_table`]).
pub type TableReads = BTreeMap<RouteTableId, Result<TableRead, Ec2Error>>;

/// One master's carriers other than route tables (secondary IP, Elastic IP,
/// DNS record), each read or failed on its own. Route tables are read for all
/// masters at once ([`TableReads`]).
pub type CarrierReads = BTreeMap<Carrier, Result<Held, Ec2Error>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    #[error("{addr} is not in masters.{master}.nodes; add it there")]
    NotInNodes { master: String, addr: Addr },
    /// Discovery found no single ENI for the address (see [`DiscoveryMiss`]).
    #[error(transparent)]
    NotFound(DiscoveryMiss),
    /// Sentinel named the node by a host name that does not resolve.
    #[error("{addr}: host name does not resolve ({why}); Sentinel announces it (announce-hostnames yes), so this host must resolve it too")]
    Unresolved { addr: Addr, why: String },
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
}

/// Why discovery found no single ENI for a private IP. An answer about the
/// address, cached for [`NOT_FOUND_TTL`] (except [`DiscoveryMiss::NoScope`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryMiss {
    #[error("no network interface in EC2 holds private IP {ip}; is the Redis node's ENI in this account and region?")]
    Anywhere { ip: String },
    #[error("no network interface holds private IP {ip} in {vpcs}, the VPC(s) of the master's route tables; is the Redis node's ENI there (a replaced ENI is found again once it exists)?")]
    InVpcs { ip: String, vpcs: String },
    #[error("private IP {ip} is held by several network interfaces ({enis}) in {vpcs}: the master's route tables span VPCs with overlapping CIDRs; list the targets in masters.<name>.nodes")]
    Ambiguous {
        ip: String,
        enis: String,
        vpcs: String,
    },
    #[error("none of route tables {tables} could be read, so the VPC to look {ip} up in is unknown: {reason}")]
    NoScope {
        ip: String,
        tables: String,
        reason: String,
    },
}

impl TargetError {
    /// An answer about the address itself (cached briefly), not a failed call.
    pub(crate) fn is_answer(&self) -> bool {
        matches!(
            self,
            TargetError::NotFound(
                DiscoveryMiss::Anywhere { .. }
                    | DiscoveryMiss::InVpcs { .. }
                    | DiscoveryMiss::Ambiguous { .. }
            )
        )
    }
}
