//! A secondary private IP that follows the master: AssignPrivateIpAddresses
//! with `AllowReassignment` to the master's ENI, and UnassignPrivateIpAddresses
//! from every other ENI that still holds it (real EC2 moves the address; the
//! emulator leaves a copy on the old ENI). Same subnet only.

use std::collections::BTreeSet;
use std::net::IpAddr;

use aws_sdk_ec2::types::Filter;

use super::{checked, Ec2};
use crate::config::Target;
use crate::decide::facts::{Ec2Error, ErrorClass};
use crate::decide::plan::{Held, Holder};

impl Ec2 {
    /// Which ENIs hold `ip` now: those EC2's `addresses.private-ip-address`
    /// filter names (EC2 matches secondary addresses; moto only primary ones),
    /// and those of `nodes` (the master's configured or discovered nodes) that
    /// list it — so a copy left on a node's ENI is seen on either.
    pub async fn read_secondary_ip(&self, ip: IpAddr, nodes: &[Target]) -> Result<Held, Ec2Error> {
        let by_filter = self.holders_of(ip);
        let by_node = async {
            let mut enis = BTreeSet::new();
            for t in nodes {
                match t {
                    Target::Eni(e) => {
                        enis.insert(e.as_str().to_owned());
                    }
                    Target::Instance(_) => {
                        // An instance's primary ENI (cached after the first look).
                        if let Ok(i) = self.interface_of(t).await {
                            enis.insert(i.eni_id);
                        }
                    }
                }
            }
            if enis.is_empty() {
                return Ok(Vec::new());
            }
            // A filter, not ids: an ENI that is gone is left out, not an error.
            let r = self
                .client
                .describe_network_interfaces()
                .filters(
                    Filter::builder()
                        .name("network-interface-id")
                        .set_values(Some(enis.into_iter().collect()))
                        .build(),
                )
                .send()
                .await;
            let out = checked(
                "DescribeNetworkInterfaces",
                || format!("secondary IP {ip}"),
                r,
            )?;
            let s = ip.to_string();
            Ok(out
                .network_interfaces()
                .iter()
                .filter(|n| {
                    n.private_ip_addresses()
                        .iter()
                        .any(|a| a.private_ip_address() == Some(s.as_str()))
                        || n.ipv6_addresses()
                            .iter()
                            .any(|a| a.ipv6_address() == Some(s.as_str()))
                })
                .map(|n| Holder {
                    eni_id: n.network_interface_id().map(str::to_owned),
                    instance_id: n
                        .attachment()
                        .and_then(|a| a.instance_id())
                        .map(str::to_owned),
                })
                .collect::<Vec<_>>())
        };
        let (filtered, listed) = tokio::join!(by_filter, by_node);
        let on: BTreeSet<Holder> = filtered?
            .iter()
            .map(|i| i.holder())
            .chain(listed?)
            .collect();
        Ok(Held::SecondaryIp(on.into_iter().collect()))
    }

    /// Assigns `ip` to `eni` (moving it) and, at the same time, unassigns it
    /// from `others` (the ENIs the last read found holding it). An unassign
    /// that finds the address gone already is what was wanted; only a refused
    /// permission among them is an error (the read-back judges the rest).
    /// (Neither call has DryRun in EC2: `check` cannot probe them.)
    pub async fn move_secondary_ip(
        &self,
        ip: IpAddr,
        eni: &str,
        others: &[String],
    ) -> Result<(), Ec2Error> {
        let assign = async {
            let r = self
                .client
                .assign_private_ip_addresses()
                .network_interface_id(eni)
                .private_ip_addresses(ip.to_string())
                .allow_reassignment(true)
                .send()
                .await;
            checked(
                "AssignPrivateIpAddresses",
                || format!("secondary IP {ip} -> {eni}"),
                r,
            )
            .map(|_| ())
        };
        let unassign = futures::future::join_all(others.iter().map(|old| async move {
            let r = self
                .client
                .unassign_private_ip_addresses()
                .network_interface_id(old)
                .private_ip_addresses(ip.to_string())
                .send()
                .await;
            checked(
                "UnassignPrivateIpAddresses",
                || format!("secondary IP {ip} on {old}"),
                r,
            )
            .map(|_| ())
        }));
        let (assigned, unassigned) = tokio::join!(assign, unassign);
        assigned?;
        for u in unassigned {
            match u {
                Err(e) if e.class == ErrorClass::Permission => return Err(e),
                Err(e) => tracing::debug!(error = %e, "secondary IP left an ENI already"),
                Ok(()) => {}
            }
        }
        Ok(())
    }
}
