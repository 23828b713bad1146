//! The other carriers of a master's address (secondary IP, Elastic IP, DNS
//! record) judged by the same rules as its route tables.

use super::*;
use crate::decide::facts::{CarrierReads, ErrorClass};
use crate::decide::plan::{Carrier, Held, Holder};

const EIP: &str = "eipalloc-1";

fn reach_cfg() -> Config {
    Config::parse(&format!(
        r#"
sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]
masters:
  m:
    vip: 172.16.0.10/32
    route_tables: [rtb-1, rtb-2]
    secondary_ip: 10.0.1.100
    elastic_ip: {EIP}
    nodes:
      "{A}:6379": {{ network_interface_id: eni-a }}
      "{B}:6379": {{ network_interface_id: eni-b }}
      "{C}:6379": {{ network_interface_id: eni-c }}
"#
    ))
    .expect("test config parses")
}

fn on(e: &str) -> Holder {
    Holder {
        eni_id: Some(e.into()),
        instance_id: None,
    }
}

fn ip_carrier() -> Carrier {
    Carrier::SecondaryIp("10.0.1.100".parse().unwrap())
}

fn eip_carrier() -> Carrier {
    Carrier::ElasticIp(EIP.to_owned().try_into().unwrap())
}

/// A read: the majority on A, the route tables on A, and `others` as read.
fn read_with(seq: u64, others: CarrierReads) -> Input {
    let Input::ReadDone(mut o) = read(seq, vec![view(A, 1), view(A, 1), view(A, 1)], Some(A))
    else {
        unreachable!()
    };
    o.carriers.insert("m".into(), others);
    Input::ReadDone(o)
}

fn started(others: CarrierReads) -> (Steering, Vec<Action>, Instant) {
    let t0 = Instant::now();
    let mut core = Steering::new(&reach_cfg(), t0, 7);
    let a = core.handle(t0, Input::ReadRequested("start"));
    assert_eq!(reads(&a), vec![1]);
    let a = core.handle(t0 + Duration::from_millis(5), read_with(1, others));
    (core, a, t0)
}

fn error(class: ErrorClass, code: &str) -> Ec2Error {
    Ec2Error {
        operation: "DescribeAddresses",
        subject: format!("Elastic IP {EIP}"),
        class,
        code: Some(code.into()),
        message: code.into(),
    }
}

#[test]
fn all_carriers_right_means_no_write() {
    let (core, a, t0) = started(
        [
            (ip_carrier(), Ok(Held::SecondaryIp(vec![on("eni-a")]))),
            (eip_carrier(), Ok(Held::ElasticIp(Some(on("eni-a"))))),
        ]
        .into_iter()
        .collect(),
    );
    assert!(writes(&a).is_empty(), "{a:?}");
    assert!(core.last_read_ok());
    let st = core.status(t0).remove(0);
    let rows: Vec<(&str, &str)> = st
        .tables
        .iter()
        .map(|t| (t.kind, t.route.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("route_table", "eni-a"),
            ("route_table", "eni-a"),
            ("secondary_ip", "eni-a"),
            ("elastic_ip", "eni-a"),
        ]
    );
}

#[test]
fn a_secondary_ip_left_on_the_old_eni_is_drift_repaired_with_its_holders_known() {
    let (_, a, _) = started(
        [
            // The emulator's copy on B beside A's: not right yet.
            (
                ip_carrier(),
                Ok(Held::SecondaryIp(vec![on("eni-a"), on("eni-b")])),
            ),
            (eip_carrier(), Ok(Held::ElasticIp(Some(on("eni-a"))))),
        ]
        .into_iter()
        .collect(),
    );
    assert_eq!(writes(&a), vec![(A.to_owned(), Cause::Reconcile)]);
    let order = a
        .iter()
        .find_map(|x| match x {
            Action::StartWrite(o) => Some(o),
            _ => None,
        })
        .expect("a write");
    let target = Target::Eni("eni-a".to_owned().try_into().unwrap());
    assert_eq!(order.known[&ip_carrier()].other_holders(&target), ["eni-b"]);
    assert_eq!(
        order.known[&eip_carrier()].plan(&target),
        crate::decide::plan::RouteAction::Keep
    );
}

#[test]
fn an_elastic_ip_elsewhere_is_repaired() {
    let (_, a, _) = started(
        [
            (ip_carrier(), Ok(Held::SecondaryIp(vec![on("eni-a")]))),
            (eip_carrier(), Ok(Held::ElasticIp(Some(on("eni-c"))))),
        ]
        .into_iter()
        .collect(),
    );
    assert_eq!(writes(&a), vec![(A.to_owned(), Cause::Reconcile)]);
}

#[test]
fn a_throttled_carrier_read_is_unknown_a_gone_one_is_not_found() {
    let (core, a, t0) = started(
        [
            (ip_carrier(), Ok(Held::SecondaryIp(vec![on("eni-a")]))),
            (
                eip_carrier(),
                Err(error(ErrorClass::Transient, "RequestLimitExceeded")),
            ),
        ]
        .into_iter()
        .collect(),
    );
    assert!(writes(&a).is_empty(), "never written blind: {a:?}");
    assert!(!core.last_read_ok());
    let st = core.status(t0).remove(0);
    assert_eq!(st.tables[3].route, "unknown");
    assert!(st.last_error.is_none(), "{st:?}");

    let (core, a, t0) = started(
        [
            (ip_carrier(), Ok(Held::SecondaryIp(vec![on("eni-a")]))),
            (
                eip_carrier(),
                Err(error(ErrorClass::NotFound, "InvalidAllocationID.NotFound")),
            ),
        ]
        .into_iter()
        .collect(),
    );
    assert!(writes(&a).is_empty(), "never written blind: {a:?}");
    assert!(!core.last_read_ok());
    let st = core.status(t0).remove(0);
    assert_eq!(st.tables[3].route, "table-not-found");
    assert!(
        st.last_error.as_deref().unwrap_or("").contains(EIP),
        "{st:?}"
    );
}
