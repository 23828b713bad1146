//! An Elastic IP that follows the master: AssociateAddress with
//! `AllowReassociation` to the master's ENI; read back as DescribeAddresses'
//! association.

use super::{checked, Ec2};
use crate::config::{AllocationId, Target};
use crate::decide::facts::{Ec2Error, ErrorClass};
use crate::decide::plan::{Held, Holder};

impl Ec2 {
    /// The ENI and instance the Elastic IP is associated with, if any.
    pub async fn read_elastic_ip(&self, alloc: &AllocationId) -> Result<Held, Ec2Error> {
        let r = self
            .client
            .describe_addresses()
            .allocation_ids(alloc.as_str())
            .send()
            .await;
        let out = checked("DescribeAddresses", || format!("Elastic IP {alloc}"), r)?;
        let a = out
            .addresses()
            .iter()
            .find(|a| a.allocation_id() == Some(alloc.as_str()))
            .ok_or_else(|| Ec2Error {
                operation: "DescribeAddresses",
                subject: format!("Elastic IP {alloc}"),
                class: ErrorClass::NotFound,
                code: Some("InvalidAllocationID.NotFound".into()),
                message: "not in EC2's answer (check masters.<name>.elastic_ip and aws.region)"
                    .into(),
            })?;
        let on =
            (a.network_interface_id().is_some() || a.instance_id().is_some()).then(|| Holder {
                eni_id: a.network_interface_id().map(str::to_owned),
                instance_id: a.instance_id().map(str::to_owned),
            });
        Ok(Held::ElasticIp(on))
    }

    /// Associates the Elastic IP with `target` (an ENI, or an instance's
    /// primary ENI), taking it from wherever it is.
    pub async fn associate_elastic_ip(
        &self,
        alloc: &AllocationId,
        target: &Target,
        dry_run: bool,
    ) -> Result<(), Ec2Error> {
        let mut req = self
            .client
            .associate_address()
            .allocation_id(alloc.as_str())
            .allow_reassociation(true)
            .dry_run(dry_run);
        req = match target {
            Target::Eni(e) => req.network_interface_id(e.as_str()),
            Target::Instance(i) => req.instance_id(i.as_str()),
        };
        let r = req.send().await;
        checked(
            "AssociateAddress",
            || format!("Elastic IP {alloc} -> {target}"),
            r,
        )
        .map(|_| ())
    }
}
