//! Planning: which carriers of a master's address need a write for a desired
//! target. Pure.
//!
//! A master's address reaches clients through one or more [`Carrier`]s: the
//! VIP's route in each route table, a secondary private IP, an Elastic IP, a
//! Route 53 record. They differ in how they are read and written (`act`), not
//! in how they are judged: each is read as a [`Held`] (which node carries it
//! now), kept when it already carries the desired target, replaced otherwise,
//! and read back after a write.

use std::net::IpAddr;

use crate::config::{AllocationId, DnsRecord, MasterConfig, RouteTableId, Target};

/// One thing that carries a master's address to its clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Carrier {
    /// The VIP's route in this route table (`ReplaceRoute`/`CreateRoute`).
    RouteTable(RouteTableId),
    /// A secondary private IP on the master's ENI (`AssignPrivateIpAddresses`).
    SecondaryIp(IpAddr),
    /// An Elastic IP associated with the master's ENI (`AssociateAddress`).
    ElasticIp(AllocationId),
    /// A Route 53 record holding the private IP of the master's ENI (UPSERT).
    Dns(DnsRecord),
}

impl Carrier {
    /// The config key this carrier comes from (also the metrics' `kind` label).
    pub fn kind(&self) -> &'static str {
        match self {
            Carrier::RouteTable(_) => "route_table",
            Carrier::SecondaryIp(_) => "secondary_ip",
            Carrier::ElasticIp(_) => "elastic_ip",
            Carrier::Dns(_) => "dns",
        }
    }

    pub fn route_table(&self) -> Option<&RouteTableId> {
        match self {
            Carrier::RouteTable(t) => Some(t),
            _ => None,
        }
    }
}

impl std::fmt::Display for Carrier {
    /// A route table is its id (as logs and alerts always said); the others
    /// name their kind: `secondary-ip:10.0.1.100`, `eipalloc-…`, `dns:name`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Carrier::RouteTable(t) => t.fmt(f),
            Carrier::SecondaryIp(ip) => write!(f, "secondary-ip:{ip}"),
            Carrier::ElasticIp(a) => a.fmt(f),
            Carrier::Dns(d) => write!(f, "dns:{}", d.name),
        }
    }
}

impl From<RouteTableId> for Carrier {
    fn from(t: RouteTableId) -> Carrier {
        Carrier::RouteTable(t)
    }
}

/// Every carrier of a master, route tables first (in configured order).
pub fn carriers(cfg: &MasterConfig) -> Vec<Carrier> {
    let mut v: Vec<Carrier> = cfg.route_tables.iter().cloned().map(Into::into).collect();
    v.extend(cfg.secondary_ip.map(Carrier::SecondaryIp));
    v.extend(cfg.elastic_ip.clone().map(Carrier::ElasticIp));
    v.extend(cfg.dns.clone().map(Carrier::Dns));
    v
}

/// A node that carries a master's address, as AWS names it: its ENI and the
/// instance that ENI is attached to (either may be unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub eni_id: Option<String>,
    pub instance_id: Option<String>,
}

impl Holder {
    pub fn is(&self, target: &Target) -> bool {
        match target {
            Target::Instance(i) => self.instance_id.as_deref() == Some(i.as_str()),
            Target::Eni(e) => self.eni_id.as_deref() == Some(e.as_str()),
        }
    }

    fn describe(&self) -> String {
        self.eni_id
            .as_deref()
            .or(self.instance_id.as_deref())
            .unwrap_or("other-target")
            .to_owned()
    }
}

/// Who carries the address now, per kind of carrier, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Route(CurrentRoute),
    /// The ENIs the secondary IP is assigned to (empty: on none). Real EC2
    /// moves it on reassignment; the emulator leaves a copy on the old ENI.
    SecondaryIp(Vec<Holder>),
    /// The ENI (and instance) the Elastic IP is associated with, if any.
    ElasticIp(Option<Holder>),
    /// The record's values (empty: no such record), each with the ENI whose
    /// private IP it is (`None`: no ENI has that private IP).
    Dns(Vec<(IpAddr, Option<Holder>)>),
}

impl From<CurrentRoute> for Held {
    fn from(r: CurrentRoute) -> Held {
        Held::Route(r)
    }
}

impl Held {
    /// Whether the address reaches `target`, and only it.
    pub fn points_at(&self, target: &Target) -> bool {
        match self {
            Held::Route(r) => r.points_at(target),
            Held::SecondaryIp(on) => matches!(on.as_slice(), [h] if h.is(target)),
            Held::ElasticIp(on) => on.as_ref().is_some_and(|h| h.is(target)),
            Held::Dns(values) => matches!(values.as_slice(), [(_, Some(h))] if h.is(target)),
        }
    }

    /// Keep, or the write that brings it to `target` (only a route is created
    /// apart from replaced; the other kinds' writes create and replace alike).
    pub fn plan(&self, target: &Target) -> RouteAction {
        match self {
            Held::Route(r) => plan(r, target),
            h if h.points_at(target) => RouteAction::Keep,
            _ => RouteAction::Replace,
        }
    }

    /// See [`CurrentRoute::shows_target_gone`]. The other kinds name the
    /// target in the write's error (`InvalidNetworkInterfaceID.NotFound`): a
    /// read-back that differs is only unverified.
    pub fn shows_target_gone(&self, written: &Target) -> bool {
        match self {
            Held::Route(r) => r.shows_target_gone(written),
            _ => false,
        }
    }

    /// The route of a route table carrier.
    pub fn route(&self) -> Option<&CurrentRoute> {
        match self {
            Held::Route(r) => Some(r),
            _ => None,
        }
    }

    /// ENIs holding a secondary IP besides `target`'s: unassigned after the write.
    pub fn other_holders(&self, target: &Target) -> Vec<String> {
        match self {
            Held::SecondaryIp(on) => on
                .iter()
                .filter(|h| !h.is(target))
                .filter_map(|h| h.eni_id.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A short description for logs and status: who carries it, or that nothing does.
    pub fn describe(&self) -> String {
        let list = |v: Vec<String>, none: &str| {
            if v.is_empty() {
                none.to_owned()
            } else {
                v.join(",")
            }
        };
        match self {
            Held::Route(r) => r.describe(),
            Held::SecondaryIp(on) => list(on.iter().map(Holder::describe).collect(), "unassigned"),
            Held::ElasticIp(on) => on
                .as_ref()
                .map(Holder::describe)
                .unwrap_or_else(|| "not-associated".into()),
            Held::Dns(values) => list(
                values
                    .iter()
                    .map(|(ip, h)| match h {
                        Some(h) => format!("{ip} ({})", h.describe()),
                        None => format!("{ip} (no ENI)"),
                    })
                    .collect(),
                "missing",
            ),
        }
    }
}

/// The VIP's route in one table, as last read from EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentRoute {
    /// No route for the VIP's CIDR in this table.
    Missing,
    /// A route exists; `blackhole` means its target is gone.
    Points {
        instance_id: Option<String>,
        eni_id: Option<String>,
        blackhole: bool,
    },
}

/// What to do with one table's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAction {
    /// Already points at the target: no write.
    Keep,
    /// Exists but points elsewhere (or is a blackhole): `ReplaceRoute`.
    Replace,
    /// Missing: `CreateRoute`.
    Create,
}

impl CurrentRoute {
    /// Whether this route already delivers to `target`.
    pub fn points_at(&self, target: &Target) -> bool {
        match (self, target) {
            (CurrentRoute::Missing, _) => false,
            (
                CurrentRoute::Points {
                    blackhole: true, ..
                },
                _,
            ) => false,
            (CurrentRoute::Points { instance_id, .. }, Target::Instance(i)) => {
                instance_id.as_deref() == Some(i.as_str())
            }
            (CurrentRoute::Points { eni_id, .. }, Target::Eni(e)) => {
                eni_id.as_deref() == Some(e.as_str())
            }
        }
    }

    /// The route's target no longer exists (EC2 shows `State: blackhole`).
    pub fn is_blackhole(&self) -> bool {
        matches!(
            self,
            CurrentRoute::Points {
                blackhole: true,
                ..
            }
        )
    }

    /// Read back after writing `written`, this route says the target we resolved
    /// is not (or no longer) the one EC2 holds: a blackhole, or a route that
    /// points elsewhere. The discovered target must then be evicted and resolved
    /// again (`act::targets::Targets::evict`). A missing route says nothing
    /// about the target.
    ///
    /// EC2 reads are eventually consistent: judge the *last* read-back of a write,
    /// not the first. moto never shows `blackhole`: a route to a deleted ENI
    /// keeps showing its id as `active`.
    pub fn shows_target_gone(&self, written: &Target) -> bool {
        match self {
            CurrentRoute::Missing => false,
            c => c.is_blackhole() || !c.points_at(written),
        }
    }

    /// A short description for logs and status: the target id or `missing`.
    pub fn describe(&self) -> String {
        match self {
            CurrentRoute::Missing => "missing".into(),
            CurrentRoute::Points {
                instance_id,
                eni_id,
                blackhole,
            } => {
                let id = eni_id
                    .as_deref()
                    .or(instance_id.as_deref())
                    .unwrap_or("other-target");
                if *blackhole {
                    format!("{id} (blackhole)")
                } else {
                    id.to_owned()
                }
            }
        }
    }
}

/// Decides the write for one table.
pub fn plan(current: &CurrentRoute, desired: &Target) -> RouteAction {
    match current {
        CurrentRoute::Missing => RouteAction::Create,
        c if c.points_at(desired) => RouteAction::Keep,
        _ => RouteAction::Replace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{static_target, NodeKey};
    use crate::watch::event::Addr;
    use std::collections::BTreeMap;

    fn eni(s: &str) -> Target {
        Target::Eni(s.to_owned().try_into().unwrap())
    }
    fn inst(s: &str) -> Target {
        Target::Instance(s.to_owned().try_into().unwrap())
    }
    fn points(i: Option<&str>, e: Option<&str>, blackhole: bool) -> CurrentRoute {
        CurrentRoute::Points {
            instance_id: i.map(Into::into),
            eni_id: e.map(Into::into),
            blackhole,
        }
    }

    #[test]
    fn missing_route_is_created() {
        assert_eq!(
            plan(&CurrentRoute::Missing, &eni("eni-1")),
            RouteAction::Create
        );
    }

    #[test]
    fn right_route_is_kept_wrong_or_blackhole_replaced() {
        assert_eq!(
            plan(&points(Some("i-1"), Some("eni-1"), false), &eni("eni-1")),
            RouteAction::Keep
        );
        assert_eq!(
            plan(&points(Some("i-1"), Some("eni-1"), false), &inst("i-1")),
            RouteAction::Keep
        );
        assert_eq!(
            plan(&points(None, Some("eni-2"), false), &eni("eni-1")),
            RouteAction::Replace
        );
        assert_eq!(
            plan(&points(Some("i-1"), Some("eni-1"), true), &eni("eni-1")),
            RouteAction::Replace
        );
        assert_eq!(
            plan(&points(None, None, false), &inst("i-1")),
            RouteAction::Replace
        );
    }

    #[test]
    fn read_back_blackhole_or_other_target_says_target_gone() {
        let written = eni("eni-1");
        assert!(points(Some("i-1"), Some("eni-1"), true).shows_target_gone(&written));
        assert!(points(None, Some("eni-2"), false).shows_target_gone(&written));
        assert!(!points(Some("i-1"), Some("eni-1"), false).shows_target_gone(&written));
        assert!(!CurrentRoute::Missing.shows_target_gone(&written));
        assert!(points(None, Some("eni-1"), true).is_blackhole());
        assert!(!CurrentRoute::Missing.is_blackhole());
    }

    fn on(eni: &str) -> Holder {
        Holder {
            eni_id: Some(eni.into()),
            instance_id: Some(format!("i-{}", eni.trim_start_matches("eni-"))),
        }
    }

    #[test]
    fn every_kind_is_kept_only_when_it_reaches_the_target_alone() {
        let t = eni("eni-1");
        let ip: IpAddr = "10.0.1.11".parse().unwrap();
        let cases = [
            (
                Held::Route(points(None, Some("eni-1"), false)),
                RouteAction::Keep,
            ),
            (Held::Route(CurrentRoute::Missing), RouteAction::Create),
            (Held::SecondaryIp(vec![on("eni-1")]), RouteAction::Keep),
            // The emulator's copy left on the old ENI: not right until it is gone.
            (
                Held::SecondaryIp(vec![on("eni-1"), on("eni-2")]),
                RouteAction::Replace,
            ),
            (Held::SecondaryIp(vec![]), RouteAction::Replace),
            (Held::SecondaryIp(vec![on("eni-2")]), RouteAction::Replace),
            (Held::ElasticIp(Some(on("eni-1"))), RouteAction::Keep),
            (Held::ElasticIp(Some(on("eni-2"))), RouteAction::Replace),
            (Held::ElasticIp(None), RouteAction::Replace),
            (Held::Dns(vec![(ip, Some(on("eni-1")))]), RouteAction::Keep),
            (Held::Dns(vec![]), RouteAction::Replace),
            (Held::Dns(vec![(ip, None)]), RouteAction::Replace),
            (
                Held::Dns(vec![(ip, Some(on("eni-1"))), (ip, Some(on("eni-2")))]),
                RouteAction::Replace,
            ),
        ];
        for (held, want) in cases {
            assert_eq!(held.plan(&t), want, "{held:?}");
        }
        // An instance target is matched by the holder's instance.
        assert!(Held::ElasticIp(Some(on("eni-1"))).points_at(&inst("i-1")));
    }

    #[test]
    fn a_secondary_ip_write_unassigns_every_other_holder() {
        let held = Held::SecondaryIp(vec![on("eni-1"), on("eni-2"), on("eni-3")]);
        assert_eq!(held.other_holders(&eni("eni-2")), ["eni-1", "eni-3"]);
        assert!(Held::ElasticIp(Some(on("eni-1")))
            .other_holders(&eni("eni-2"))
            .is_empty());
    }

    #[test]
    fn carriers_name_their_kind_route_tables_keep_their_id() {
        let c = crate::config::Config::parse(
            "sentinels: [\"127.0.0.2:26379\"]\nmasters:\n  m:\n    vip: 172.16.0.10/32\n    route_tables: [rtb-1]\n    secondary_ip: 10.0.1.100\n    elastic_ip: eipalloc-1\n    dns: { zone_id: Z1, name: r.internal }\n",
        )
        .unwrap();
        let names: Vec<(String, &str)> = carriers(&c.masters["m"])
            .iter()
            .map(|c| (c.to_string(), c.kind()))
            .collect();
        assert_eq!(
            names,
            [
                ("rtb-1".to_owned(), "route_table"),
                ("secondary-ip:10.0.1.100".to_owned(), "secondary_ip"),
                ("eipalloc-1".to_owned(), "elastic_ip"),
                ("dns:r.internal".to_owned(), "dns"),
            ]
        );
        assert_eq!(Held::SecondaryIp(vec![]).describe(), "unassigned");
        assert_eq!(Held::ElasticIp(None).describe(), "not-associated");
        assert_eq!(Held::Dns(vec![]).describe(), "missing");
    }

    #[test]
    fn exact_node_key_wins_over_bare_ip() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            NodeKey::try_from("10.0.0.1".to_owned()).unwrap(),
            inst("i-any"),
        );
        nodes.insert(
            NodeKey::try_from("10.0.0.1:6380".to_owned()).unwrap(),
            inst("i-exact"),
        );
        assert_eq!(
            static_target(&nodes, &Addr::new("10.0.0.1", 6380)),
            Some(inst("i-exact"))
        );
        assert_eq!(
            static_target(&nodes, &Addr::new("10.0.0.1", 6379)),
            Some(inst("i-any"))
        );
        assert_eq!(static_target(&nodes, &Addr::new("10.0.0.2", 6379)), None);
    }
}
