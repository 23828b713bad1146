//! `sentinel-vip iam-policy`: the least-privilege IAM policy for one config.
//!
//! Pure: it is handed the config, the region and the account that owns each
//! route table (DescribeRouteTables `OwnerId`, or `--account`), and returns
//! policy documents. What each action is for:
//!
//! | action | who calls it | needed when |
//! |---|---|---|
//! | `ec2:DescribeRouteTables` | daemon, `check`, `status` | always (Describe* takes no resource ARNs: `*`) |
//! | `ec2:ReplaceRoute`, `ec2:CreateRoute` | daemon (and `check`'s DryRun probe) | always, on the configured tables' ARNs only |
//! | `ec2:DescribeNetworkInterfaces` | daemon | a master without static `nodes` (target found by private IP) |
//! | `ec2:DescribeInstances` | `check` (source/dest check) | a static node given as `instance_id` |
//! | `ec2:DescribeRouteTables` with DryRun, `ec2:CreateRoute` with DryRun | `check` (write permission where the VIP route does not exist yet) | covered by the rows above |
//! | `ec2:DescribeVpcs` | `check` (VIP inside the VPC CIDR) | always |
//! | (`check` only, optional) `ec2:DescribeNetworkInterfaces`/`ec2:DescribeInstances` for static nodes | `check` (nodes in the tables' VPC; source/dest check of static ENI nodes) | left out: without them `check` says it skipped that comparison or read |
//! | `sts:AssumeRole` | the credentials that assume a configured role | `aws.assume_role_arn` or a master's `assume_role_arn` |
//!
//! Who needs what with roles: route-table calls for a master with its own role
//! go through that role; every other call goes through `aws.assume_role_arn`
//! when set, else through the default credentials (see [`crate::act::ec2::Ec2`]).

mod reach;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::config::{Config, RoleArn, RouteTableId, Target};

/// The principals of one config and the policy each needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Policies {
    /// The default credential chain (instance profile, environment, ...).
    pub default_credentials: Value,
    /// Each role the config assumes, by ARN.
    pub roles: BTreeMap<RoleArn, Value>,
}

impl Policies {
    /// What `iam-policy` prints: the policy document itself when the config
    /// assumes no role, else `{"default_credentials": .., "roles": {arn: ..}}`.
    pub(super) fn to_json(&self) -> Value {
        if self.roles.is_empty() {
            self.default_credentials.clone()
        } else {
            json!({
                "default_credentials": self.default_credentials,
                "roles": self.roles.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<serde_json::Map<_, _>>(),
            })
        }
    }
}

/// `arn:aws:ec2:<region>:<account>:route-table/<id>` (partition from the region).
pub(super) fn route_table_arn(region: &str, account: &str, table: &RouteTableId) -> String {
    format!(
        "arn:{}:ec2:{region}:{account}:route-table/{table}",
        partition(region)
    )
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The policies for `cfg`; `owner` names the account of each route table.
pub(super) fn policies(
    cfg: &Config,
    region: &str,
    owner: &BTreeMap<RouteTableId, String>,
) -> Policies {
    // Which principal writes which tables.
    let mut writes: BTreeMap<Option<&RoleArn>, BTreeSet<&RouteTableId>> = BTreeMap::new();
    for m in cfg.masters.values() {
        let who = m
            .assume_role_arn
            .as_ref()
            .or(cfg.aws.assume_role_arn.as_ref());
        writes.entry(who).or_default().extend(&m.route_tables);
    }
    let discovery = cfg.masters.values().any(|m| m.nodes.is_none());
    let instances = cfg
        .masters
        .values()
        .filter_map(|m| m.nodes.as_ref())
        .flat_map(|n| n.values())
        .any(|t| matches!(t, Target::Instance(_)));
    // The principal of every call that names no table.
    let base = cfg.aws.assume_role_arn.as_ref();
    let mut describe = vec!["ec2:DescribeRouteTables", "ec2:DescribeVpcs"];
    if discovery {
        describe.push("ec2:DescribeNetworkInterfaces");
    }
    if instances {
        describe.push("ec2:DescribeInstances");
    }
    let (reach_describe, reach) = reach::statements(cfg, region);
    for d in reach_describe {
        if !describe.contains(&d) {
            describe.push(d);
        }
    }

    let arns = |tables: &BTreeSet<&RouteTableId>| -> Vec<String> {
        tables
            .iter()
            .map(|t| {
                let account = owner.get(*t).map(String::as_str).unwrap_or("*");
                route_table_arn(region, account, t)
            })
            .collect()
    };
    let doc = |principal: Option<&RoleArn>| -> Value {
        let mut statements = Vec::new();
        let describes: Vec<&str> = if principal == base {
            describe.clone()
        } else {
            vec!["ec2:DescribeRouteTables"]
        };
        let tables = writes.get(&principal);
        if principal == base || tables.is_some() {
            statements.push(json!({
                "Sid": "DescribeWhatTheConfigUses",
                "Effect": "Allow",
                "Action": describes,
                "Resource": "*",
            }));
        }
        if principal == base {
            statements.extend(reach.iter().cloned());
        }
        if let Some(tables) = tables {
            statements.push(json!({
                "Sid": "MoveTheVipRouteInTheConfiguredTablesOnly",
                "Effect": "Allow",
                "Action": ["ec2:ReplaceRoute", "ec2:CreateRoute"],
                "Resource": arns(tables),
            }));
        }
        // The default credentials assume every configured role.
        if principal.is_none() {
            let assumed: BTreeSet<&RoleArn> = cfg
                .masters
                .values()
                .filter_map(|m| m.assume_role_arn.as_ref())
                .chain(base)
                .collect();
            if !assumed.is_empty() {
                statements.push(json!({
                    "Sid": "AssumeTheConfiguredRoles",
                    "Effect": "Allow",
                    "Action": ["sts:AssumeRole"],
                    "Resource": assumed.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                }));
            }
        }
        json!({ "Version": "2012-10-17", "Statement": statements })
    };

    let roles: BTreeSet<&RoleArn> = writes.keys().flatten().copied().chain(base).collect();
    Policies {
        default_credentials: doc(None),
        roles: roles
            .into_iter()
            .map(|r| (r.clone(), doc(Some(r))))
            .collect(),
    }
}

/// The `iam-policy` verb: the tables' owners (from `--account` or EC2), then the policy as JSON.
pub(super) async fn run(cfg: &Config, account: Option<&str>) -> super::Exit {
    use super::Exit;
    if let Some(a) = account {
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            eprintln!("error: --account {a:?}: an AWS account id is 12 digits");
            return Exit::Usage;
        }
    }
    let ec2 = crate::act::ec2::Ec2::for_config(cfg).await;
    let Some(region) = ec2.region().map(str::to_owned) else {
        eprintln!("error: no region: set aws.region (or AWS_REGION)");
        return Exit::Usage;
    };
    let tables = cfg.route_tables();
    let owners = match account {
        Some(a) => tables.into_iter().map(|t| (t, a.to_owned())).collect(),
        None => {
            let mut owners = std::collections::BTreeMap::new();
            let mut failed = false;
            for (t, r) in ec2.table_owners(&tables).await {
                match r {
                    Ok(owner) => {
                        owners.insert(t, owner);
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            if failed {
                eprintln!("error: cannot read every route table's owner; pass --account ID to print the policy without EC2");
                return Exit::Failed;
            }
            owners
        }
    };
    let p = policies(cfg, &region, &owners);
    println!(
        "{}",
        serde_json::to_string_pretty(&p.to_json()).unwrap_or_default()
    );
    Exit::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(masters: &str, aws: &str) -> Config {
        let text = format!(
            "sentinels: [\"10.0.1.11:26379\"]\naws:\n  region: eu-west-1\n{aws}masters:\n{masters}"
        );
        Config::parse(&text).expect("config")
    }

    fn owners(ids: &[&str]) -> BTreeMap<RouteTableId, String> {
        ids.iter()
            .map(|i| {
                (
                    RouteTableId::try_from(i.to_string()).unwrap(),
                    "111122223333".to_owned(),
                )
            })
            .collect()
    }

    fn actions(doc: &Value) -> Vec<String> {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().iter())
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }

    const STATIC: &str = "  m:\n    vip: 172.16.0.10/32\n    route_tables: [rtb-0a, rtb-0b]\n    nodes:\n      \"10.0.1.11:6379\": { network_interface_id: eni-0a }\n";
    const DISCOVERED: &str = "  d:\n    vip: 172.16.0.20/32\n    route_tables: [rtb-0c]\n";

    #[test]
    fn static_nodes_need_no_interface_lookup_and_writes_name_the_tables() {
        let p = policies(
            &cfg(STATIC, ""),
            "eu-west-1",
            &owners(&["rtb-0a", "rtb-0b"]),
        );
        assert!(p.roles.is_empty());
        let doc = p.to_json();
        let a = actions(&doc);
        assert!(
            !a.iter().any(|a| a == "ec2:DescribeNetworkInterfaces"),
            "{a:?}"
        );
        assert!(!a.iter().any(|a| a == "ec2:DescribeInstances"), "{a:?}");
        assert_eq!(
            doc["Statement"][1]["Resource"],
            json!([
                "arn:aws:ec2:eu-west-1:111122223333:route-table/rtb-0a",
                "arn:aws:ec2:eu-west-1:111122223333:route-table/rtb-0b"
            ])
        );
    }

    #[test]
    fn discovery_needs_describe_network_interfaces() {
        let p = policies(
            &cfg(&format!("{STATIC}{DISCOVERED}"), ""),
            "eu-west-1",
            &owners(&[]),
        );
        let a = actions(&p.to_json());
        assert!(
            a.iter().any(|a| a == "ec2:DescribeNetworkInterfaces"),
            "{a:?}"
        );
        // Unknown owner: the account part is a wildcard, never a guess.
        assert!(p
            .to_json()
            .to_string()
            .contains("arn:aws:ec2:eu-west-1:*:route-table/rtb-0c"));
    }

    #[test]
    fn roles_split_the_policy_by_principal() {
        let masters = format!(
            "{STATIC}{DISCOVERED}    assume_role_arn: arn:aws:iam::444455556666:role/vip\n"
        );
        let p = policies(
            &cfg(&masters, ""),
            "eu-west-1",
            &owners(&["rtb-0a", "rtb-0b"]),
        );
        let role = RoleArn::try_from("arn:aws:iam::444455556666:role/vip".to_owned()).unwrap();
        let r = &p.roles[&role];
        assert_eq!(
            actions(r),
            [
                "ec2:DescribeRouteTables",
                "ec2:ReplaceRoute",
                "ec2:CreateRoute"
            ]
        );
        assert!(r.to_string().contains("route-table/rtb-0c"));
        assert!(!r.to_string().contains("rtb-0a"));
        let base = p.default_credentials.to_string();
        assert!(base.contains("sts:AssumeRole") && base.contains("444455556666:role/vip"));
        assert!(base.contains("route-table/rtb-0a") && !base.contains("rtb-0c"));
        // Discovery of d's target is a base call.
        assert!(base.contains("ec2:DescribeNetworkInterfaces"));
    }

    #[test]
    fn a_global_role_leaves_the_default_credentials_only_sts() {
        let p = policies(
            &cfg(
                STATIC,
                "  assume_role_arn: arn:aws:iam::444455556666:role/vip\n",
            ),
            "eu-west-1",
            &owners(&["rtb-0a", "rtb-0b"]),
        );
        assert_eq!(actions(&p.default_credentials), ["sts:AssumeRole"]);
        let role = RoleArn::try_from("arn:aws:iam::444455556666:role/vip".to_owned()).unwrap();
        assert!(actions(&p.roles[&role]).contains(&"ec2:ReplaceRoute".to_owned()));
    }

    #[test]
    fn role_arns_are_checked_at_load() {
        for bad in [
            "arn:aws:iam::12:role/x",
            "arn:aws:iam::123456789012:user/x",
            "role/x",
        ] {
            assert!(RoleArn::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        assert_eq!(
            RoleArn::try_from("arn:aws-cn:iam::123456789012:role/a/b".to_owned())
                .unwrap()
                .account(),
            "123456789012"
        );
        assert_eq!(partition("cn-north-1"), "aws-cn");
    }
}
