//! The other carriers of a master's address in moto, as tests set them and
//! read them: a secondary private IP on the nodes' ENIs, an Elastic IP, a
//! Route 53 private zone and its record.

use aws_sdk_ec2::types::DomainType;

use super::{sdk_config, Vpc};

/// The secondary IP tests move (in the rig's subnet 10.0.1.0/24).
pub const SECONDARY_IP: &str = "10.0.1.100";
/// The record tests move.
pub const RECORD: &str = "redis.example.internal";

impl Vpc {
    /// ENIs holding `ip`, sorted (every ENI listed: moto's
    /// `addresses.private-ip-address` filter matches primary addresses only).
    pub async fn holders_of(&self, ip: &str) -> Vec<String> {
        let out = self
            .client
            .describe_network_interfaces()
            .send()
            .await
            .expect("DescribeNetworkInterfaces");
        let mut v: Vec<String> = out
            .network_interfaces()
            .iter()
            .filter(|n| {
                n.private_ip_addresses()
                    .iter()
                    .any(|a| a.private_ip_address() == Some(ip))
            })
            .filter_map(|n| n.network_interface_id().map(str::to_owned))
            .collect();
        v.sort();
        v
    }

    /// Assigns `ip` to `eni` by hand (moto leaves it where it was too).
    pub async fn assign_ip(&self, eni: &str, ip: &str) {
        self.client
            .assign_private_ip_addresses()
            .network_interface_id(eni)
            .private_ip_addresses(ip)
            .allow_reassignment(true)
            .send()
            .await
            .expect("AssignPrivateIpAddresses");
    }

    /// Allocates an Elastic IP; returns its allocation id.
    pub async fn allocate_eip(&self) -> String {
        self.client
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await
            .expect("AllocateAddress")
            .allocation_id()
            .expect("allocation id")
            .to_owned()
    }

    /// Associates the Elastic IP with `eni` by hand.
    pub async fn associate_eip(&self, alloc: &str, eni: &str) {
        self.client
            .associate_address()
            .allocation_id(alloc)
            .network_interface_id(eni)
            .allow_reassociation(true)
            .send()
            .await
            .expect("AssociateAddress");
    }

    /// The ENI the Elastic IP is associated with.
    pub async fn eip_eni(&self, alloc: &str) -> Option<String> {
        let out = self
            .client
            .describe_addresses()
            .allocation_ids(alloc)
            .send()
            .await
            .expect("DescribeAddresses");
        out.addresses()
            .first()
            .and_then(|a| a.network_interface_id())
            .map(str::to_owned)
    }

    /// The primary private IP of each node's ENI (index = node index).
    pub async fn eni_ips(&self) -> Vec<String> {
        let mut ips = Vec::new();
        for eni in &self.enis {
            let out = self
                .client
                .describe_network_interfaces()
                .network_interface_ids(eni)
                .send()
                .await
                .expect("DescribeNetworkInterfaces");
            ips.push(
                out.network_interfaces()[0]
                    .private_ip_address()
                    .expect("private ip")
                    .to_owned(),
            );
        }
        ips
    }
}

/// A Route 53 private hosted zone in moto.
pub struct Zone {
    pub client: aws_sdk_route53::Client,
    pub id: String,
}

impl Zone {
    /// A private zone `example.internal` for `vpc_id`.
    pub async fn create(url: &str, vpc_id: &str) -> Zone {
        use aws_sdk_route53::types::{HostedZoneConfig, Vpc as ZoneVpc, VpcRegion};
        let client = aws_sdk_route53::Client::new(&sdk_config(url).await);
        let out = client
            .create_hosted_zone()
            .name("example.internal")
            .caller_reference(format!("test-{}", std::process::id()))
            .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
            .vpc(
                ZoneVpc::builder()
                    .vpc_id(vpc_id)
                    .vpc_region(VpcRegion::UsEast1)
                    .build(),
            )
            .send()
            .await
            .expect("CreateHostedZone");
        let id = out
            .hosted_zone()
            .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
            .expect("zone id");
        Zone { client, id }
    }

    /// The values of the A records named `name`.
    pub async fn values(&self, name: &str) -> Vec<String> {
        let out = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(&self.id)
            .send()
            .await
            .expect("ListResourceRecordSets");
        let mut v: Vec<String> = out
            .resource_record_sets()
            .iter()
            .filter(|s| s.name().trim_end_matches('.') == name)
            .filter(|s| s.r#type().as_str() == "A")
            .flat_map(|s| s.resource_records())
            .map(|r| r.value().to_owned())
            .collect();
        v.sort();
        v
    }

    /// Sets the A record `name` to `value` by hand.
    pub async fn set(&self, name: &str, value: &str) {
        use aws_sdk_route53::types::{
            Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
        };
        let set = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::A)
            .ttl(10)
            .resource_records(ResourceRecord::builder().value(value).build().unwrap())
            .build()
            .unwrap();
        let change = Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(set)
            .build()
            .unwrap();
        self.client
            .change_resource_record_sets()
            .hosted_zone_id(&self.id)
            .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
            .send()
            .await
            .expect("ChangeResourceRecordSets");
    }
}
