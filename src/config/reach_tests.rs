//! The reach keys of a master: `secondary_ip`, `elastic_ip`, `dns`, and which
//! combinations with `vip` / `route_tables` are accepted.

use super::Config;

fn with(master: &str) -> Result<Config, String> {
    Config::parse(&format!(
        "sentinels: [\"127.0.0.2:26379\"]\naws:\n  region: us-east-1\nmasters:\n  m:\n{master}"
    ))
}

#[test]
fn each_kind_alone_or_all_four_parse() {
    let c = with("    secondary_ip: 10.0.1.100\n").unwrap();
    let m = &c.masters["m"];
    assert_eq!(m.secondary_ip.unwrap().to_string(), "10.0.1.100");
    assert!(m.vip.is_none() && m.route_tables.is_empty());
    let c = with("    elastic_ip: eipalloc-0abc\n").unwrap();
    assert_eq!(
        c.masters["m"].elastic_ip.as_ref().unwrap().as_str(),
        "eipalloc-0abc"
    );
    let c = with("    dns: { zone_id: /hostedzone/Z0123ABC, name: Redis.Example.Internal. }\n")
        .unwrap();
    let d = c.masters["m"].dns.as_ref().unwrap();
    assert_eq!(d.zone_id.as_str(), "Z0123ABC");
    assert_eq!(d.name, "redis.example.internal");
    assert_eq!(d.ttl, 10, "the default TTL");
    let c = with(
        "    vip: 172.16.0.10/32\n    route_tables: [rtb-1]\n    secondary_ip: 10.0.1.100\n    elastic_ip: eipalloc-1\n    dns: { zone_id: Z1, name: r.internal, ttl: 5 }\n",
    )
    .unwrap();
    let m = &c.masters["m"];
    assert!(m.vip.is_some() && m.secondary_ip.is_some() && m.elastic_ip.is_some());
    assert_eq!(m.dns.as_ref().map(|d| d.ttl), Some(5));
    assert!(c.vip_cidrs().len() == 1);
}

#[test]
fn a_master_needs_a_carrier_and_vip_goes_with_route_tables() {
    let cases = [
        (
            "    nodes: {}\n",
            "masters.m: give at least one of route_tables (with vip), secondary_ip, elastic_ip, dns at line 5",
        ),
        (
            "    vip: 172.16.0.10/32\n    secondary_ip: 10.0.1.100\n",
            "masters.m.vip: goes with route_tables at line 6",
        ),
        (
            "    route_tables: [rtb-1]\n",
            "masters.m.route_tables: need a vip",
        ),
        ("    elastic_ip: eip-1\n", "masters.m.elastic_ip"),
        ("    secondary_ip: 10.0.1\n", "masters.m.secondary_ip"),
        (
            "    secondary_ip: \"fd00::100\"\n",
            "masters.m.secondary_ip: an IPv4 address",
        ),
        ("    dns: { zone_id: Z1 }\n", "masters.m.dns"),
        ("    dns: { zone_id: Z/1, name: a.b }\n", "masters.m.dns.zone_id"),
        ("    dns: { zone_id: Z1, name: \"a..b\" }\n", "masters.m.dns.name"),
        ("    dns: { zone_id: Z1, name: a.b, ttl: -1 }\n", "masters.m.dns.ttl"),
        (
            "    dns: { zone_id: Z1, name: a.b, tll: 5 }\n",
            "masters.m.dns.tll: unknown field `tll`",
        ),
    ];
    for (master, want) in cases {
        let e = with(master).expect_err(master);
        assert!(e.contains(want), "{master}: {e}");
    }
}

#[test]
fn two_masters_cannot_move_the_same_address() {
    let e = Config::parse(
        "sentinels: [\"127.0.0.2:26379\"]\nmasters:\n  a:\n    elastic_ip: eipalloc-1\n  b:\n    elastic_ip: eipalloc-1\n",
    )
    .unwrap_err();
    assert!(
        e.contains("masters.b.elastic_ip: eipalloc-1 is also masters.a.elastic_ip"),
        "{e}"
    );
    let e = Config::parse(
        "sentinels: [\"127.0.0.2:26379\"]\nmasters:\n  a:\n    secondary_ip: 10.0.1.100\n  b:\n    secondary_ip: 10.0.1.100\n",
    )
    .unwrap_err();
    assert!(e.contains("masters.b.secondary_ip"), "{e}");
}
