//! The master's network interface as the address kinds other than route
//! tables need it: its ENI id (a secondary IP and an Elastic IP go to an ENI)
//! and its private IP (the DNS record's value). An instance target is its
//! primary ENI (device index 0).

use std::net::IpAddr;

use aws_sdk_ec2::types::Filter;

use super::{checked, Ec2};
use crate::config::Target;
use crate::decide::facts::{Ec2Error, ErrorClass};
use crate::decide::plan::Holder;

/// An ENI as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub eni_id: String,
    pub instance_id: Option<String>,
    /// The primary private IPv4 address.
    pub private_ip: Option<IpAddr>,
    /// The first IPv6 address, if any.
    pub ipv6: Option<IpAddr>,
}

impl Interface {
    pub fn holder(&self) -> Holder {
        Holder {
            eni_id: Some(self.eni_id.clone()),
            instance_id: self.instance_id.clone(),
        }
    }

    fn from_eni(ni: &aws_sdk_ec2::types::NetworkInterface) -> Option<Interface> {
        Some(Interface {
            eni_id: ni.network_interface_id()?.to_owned(),
            instance_id: ni
                .attachment()
                .and_then(|a| a.instance_id())
                .map(str::to_owned),
            private_ip: ni.private_ip_address().and_then(|s| s.parse().ok()),
            ipv6: ni
                .ipv6_addresses()
                .iter()
                .find_map(|a| a.ipv6_address()?.parse().ok()),
        })
    }
}

impl Ec2 {
    /// The ENI `target` names and its private IP. An ENI's id and primary
    /// private IP never change while it exists, nor an instance's primary ENI:
    /// cached until [`Ec2::forget_interface`] (the target was found gone).
    pub async fn interface_of(&self, target: &Target) -> Result<Interface, Ec2Error> {
        if let Some(i) = self
            .interfaces
            .lock()
            .ok()
            .and_then(|m| m.get(target).cloned())
        {
            return Ok(i);
        }
        let found = match target {
            Target::Eni(e) => {
                let r = self
                    .client
                    .describe_network_interfaces()
                    .network_interface_ids(e.as_str())
                    .send()
                    .await;
                let out = checked("DescribeNetworkInterfaces", || format!("ENI {e}"), r)?;
                out.network_interfaces()
                    .iter()
                    .find_map(Interface::from_eni)
            }
            Target::Instance(i) => {
                let r = self
                    .client
                    .describe_instances()
                    .instance_ids(i.as_str())
                    .send()
                    .await;
                let out = checked("DescribeInstances", || format!("instance {i}"), r)?;
                out.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .flat_map(|inst| inst.network_interfaces())
                    .find(|ni| ni.attachment().and_then(|a| a.device_index()) == Some(0))
                    .and_then(|ni| {
                        Some(Interface {
                            eni_id: ni.network_interface_id()?.to_owned(),
                            instance_id: Some(i.as_str().to_owned()),
                            private_ip: ni.private_ip_address().and_then(|s| s.parse().ok()),
                            ipv6: ni
                                .ipv6_addresses()
                                .iter()
                                .find_map(|a| a.ipv6_address()?.parse().ok()),
                        })
                    })
            }
        };
        let found = found.ok_or_else(|| Ec2Error {
            operation: "DescribeNetworkInterfaces",
            subject: format!("target {target}"),
            class: ErrorClass::TargetGone,
            code: None,
            message: "EC2 answered without the network interface".into(),
        })?;
        if let Ok(mut m) = self.interfaces.lock() {
            m.insert(target.clone(), found.clone());
        }
        Ok(found)
    }

    /// Drops a cached [`Interface`] (its target was found gone).
    pub fn forget_interface(&self, target: &Target) {
        if let Ok(mut m) = self.interfaces.lock() {
            m.remove(target);
        }
    }

    /// The ENIs holding `ip` (primary or secondary, IPv4 or IPv6).
    pub async fn holders_of(&self, ip: IpAddr) -> Result<Vec<Interface>, Ec2Error> {
        let by = if ip.is_ipv6() {
            "ipv6-addresses.ipv6-address"
        } else {
            "addresses.private-ip-address"
        };
        let r = self
            .client
            .describe_network_interfaces()
            .filters(Filter::builder().name(by).values(ip.to_string()).build())
            .send()
            .await;
        let out = checked(
            "DescribeNetworkInterfaces",
            || format!("private IP {ip}"),
            r,
        )?;
        let found: Vec<Interface> = out
            .network_interfaces()
            .iter()
            .filter_map(Interface::from_eni)
            .collect();
        if let Ok(mut m) = self.interfaces.lock() {
            for i in &found {
                if let Ok(e) = crate::config::EniId::try_from(i.eni_id.clone()) {
                    m.entry(Target::Eni(e)).or_insert_with(|| i.clone());
                }
            }
        }
        Ok(found)
    }
}
