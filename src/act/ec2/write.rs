//! Writes: pointing a VIP route at a target (ReplaceRoute, CreateRoute, each
//! falling back to the other) and the DryRun permission probe.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::create_route::builders::CreateRouteFluentBuilder;
use aws_sdk_ec2::operation::replace_route::builders::ReplaceRouteFluentBuilder;
use ipnet::IpNet;

use super::{checked, Ec2};
use crate::config::{RouteTableId, Target};
use crate::decide::facts::Ec2Error;

/// Names a write in errors: the table, the VIP and the target, so that "does not
/// exist" says which of them.
fn write_subject(table: &RouteTableId, cidr: IpNet, target: &Target) -> String {
    format!("route table {table} ({cidr} -> {target})")
}

/// `cidr` as ReplaceRoute and CreateRoute take it: `(destination_cidr_block,
/// destination_ipv6_cidr_block)`, exactly one of them set.
fn destination(cidr: IpNet) -> (Option<String>, Option<String>) {
    match cidr {
        IpNet::V4(_) => (Some(cidr.to_string()), None),
        IpNet::V6(_) => (None, Some(cidr.to_string())),
    }
}

/// `target` as ReplaceRoute and CreateRoute take it: `(network_interface_id,
/// instance_id)`, exactly one of them set.
fn target_ids(target: &Target) -> (Option<String>, Option<String>) {
    match target {
        Target::Eni(e) => (Some(e.as_str().to_owned()), None),
        Target::Instance(i) => (None, Some(i.as_str().to_owned())),
    }
}

impl Ec2 {
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

    /// ReplaceRoute for `cidr` in `table` to `target`, ready to send (the write
    /// and the DryRun probe differ only in what they add to it).
    fn replace_request(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        target: &Target,
    ) -> ReplaceRouteFluentBuilder {
        let (v4, v6) = destination(cidr);
        let (eni, instance) = target_ids(target);
        self.client_for(table)
            .replace_route()
            .route_table_id(table.as_str())
            .set_destination_cidr_block(v4)
            .set_destination_ipv6_cidr_block(v6)
            .set_network_interface_id(eni)
            .set_instance_id(instance)
    }

    /// The one CreateRoute request, for the write and its DryRun probe.
    fn create_request(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        target: &Target,
    ) -> CreateRouteFluentBuilder {
        let (v4, v6) = destination(cidr);
        let (eni, instance) = target_ids(target);
        self.client_for(table)
            .create_route()
            .route_table_id(table.as_str())
            .set_destination_cidr_block(v4)
            .set_destination_ipv6_cidr_block(v6)
            .set_network_interface_id(eni)
            .set_instance_id(instance)
    }

    async fn replace_route(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        target: &Target,
    ) -> Result<(), Ec2Error> {
        let r = self.replace_request(table, cidr, target).send().await;
        checked("ReplaceRoute", || write_subject(table, cidr, target), r).map(|_| ())
    }

    async fn create_route(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        target: &Target,
    ) -> Result<(), Ec2Error> {
        let r = self.create_request(table, cidr, target).send().await;
        checked("CreateRoute", || write_subject(table, cidr, target), r).map(|_| ())
    }

    /// Harmless permission probe: a DryRun ReplaceRoute to the route's *current*
    /// target (emulators that ignore DryRun then write what is already there).
    pub async fn probe_replace_permission(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        current: &Target,
    ) -> Result<(), Ec2Error> {
        let r = self
            .replace_request(table, cidr, current)
            .dry_run(true)
            .send()
            .await;
        dry_run_outcome("ReplaceRoute(DryRun)", table.as_str(), r).map(|_| ())
    }
}

impl Ec2 {
    /// Whether this endpoint honours `DryRun` on `table`'s credentials: a
    /// DescribeRouteTables with DryRun, which EC2 answers `DryRunOperation`.
    /// An emulator that ignores DryRun answers the read instead — and would
    /// perform a DryRun *write* too (moto does, on ReplaceRoute and
    /// CreateRoute), so `check` probes CreateRoute only where this says yes.
    pub async fn honours_dry_run(&self, table: &RouteTableId) -> Result<bool, Ec2Error> {
        let r = self
            .client_for(table)
            .describe_route_tables()
            .route_table_ids(table.as_str())
            .dry_run(true)
            .send()
            .await;
        dry_run_outcome("DescribeRouteTables(DryRun)", table.as_str(), r)
    }

    /// Permission probe for a table with no VIP route yet (a first
    /// deployment): a DryRun CreateRoute of `cidr` to `target`. Call it only
    /// where [`Ec2::honours_dry_run`]: an endpoint that ignores DryRun would
    /// create the route.
    pub async fn probe_create_permission(
        &self,
        table: &RouteTableId,
        cidr: IpNet,
        target: &Target,
    ) -> Result<(), Ec2Error> {
        let r = self
            .create_request(table, cidr, target)
            .dry_run(true)
            .send()
            .await;
        dry_run_outcome("CreateRoute(DryRun)", table.as_str(), r).map(|_| ())
    }
}

/// What a DryRun call answered: `Ok(true)` when EC2 said the call would have
/// succeeded (`DryRunOperation`), `Ok(false)` when it was performed (an
/// endpoint that ignores DryRun), the error otherwise.
fn dry_run_outcome<T, E, R>(
    operation: &'static str,
    subject: &str,
    r: Result<T, SdkError<E, R>>,
) -> Result<bool, Ec2Error>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match r {
        Ok(_) => Ok(false),
        Err(e) => {
            let err = Ec2Error::from_sdk(operation, subject, e);
            if err.code.as_deref() == Some("DryRunOperation") {
                Ok(true)
            } else {
                Err(err)
            }
        }
    }
}
