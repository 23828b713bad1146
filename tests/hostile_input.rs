//! Hostile input: random and mutated event payloads and configs never panic
//! and always give an error that says what was wrong.

use proptest::prelude::*;
use sentinel_vip::config::Config;
use sentinel_vip::watch::event::{parse, ParseError, MAX_PAYLOAD};

const CHANNELS: &[&str] = &[
    "+switch-master",
    "+odown",
    "-odown",
    "+sdown",
    "-sdown",
    "+new-epoch",
    "+tilt",
    "-tilt",
    "+elected-leader",
    "+slave",
    "-role-change",
    "+vote-for-leader",
    "-script-error",
    "+config-update-from",
];

const GOOD_PAYLOADS: &[&str] = &[
    "mymaster 127.0.0.2 6379 127.0.0.3 6379",
    "master mymaster 10.0.1.11 6379 #quorum 2/2",
    "slave 127.0.0.4:6379 127.0.0.4 6379 @ mymaster 127.0.0.3 6379",
    "sentinel 4f0c3e 127.0.0.3 26379 @ mymaster 127.0.0.2 6379",
    "7",
];

const GOOD_CONFIG: &str = r#"sentinels: ["127.0.0.2:26379", "127.0.0.3:26379", "127.0.0.4:26379"]
aws:
  region: us-east-1
masters:
  mymaster:
    vip: 172.16.0.10/32
    route_tables: [rtb-0123, rtb-4567]
    nodes:
      "10.0.1.11:6379": { instance_id: i-0aaa }
reconcile:
  interval: 30s
alerts:
  group_wait: 10s
"#;

fn mutate(base: &str, pos: usize, bytes: &[u8], cut: usize) -> String {
    let mut v: Vec<u8> = base.as_bytes().to_vec();
    let p = pos % (v.len() + 1);
    let c = cut.min(v.len() - p.min(v.len()));
    v.splice(p..p + c, bytes.iter().copied());
    String::from_utf8_lossy(&v).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_events_never_panic(ch in "[-+a-z_:]{0,24}", payload in ".{0,300}") {
        let _ = parse(&ch, &payload);
    }

    #[test]
    fn mutated_real_events_give_named_errors(ci in 0..CHANNELS.len(), pi in 0..GOOD_PAYLOADS.len(),
            pos in 0usize..80, bytes in proptest::collection::vec(any::<u8>(), 0..12), cut in 0usize..10) {
        let ch = CHANNELS[ci];
        let payload = mutate(GOOD_PAYLOADS[pi], pos, &bytes, cut);
        if let Err(e) = parse(ch, &payload) {
            let msg = e.to_string();
            prop_assert!(!msg.is_empty());
            if let ParseError::Malformed { .. } = e {
                prop_assert!(msg.contains(ch), "{}", msg);
            }
        }
    }

    #[test]
    fn oversized_payloads_are_refused(extra in 1usize..10_000) {
        let p = "x".repeat(MAX_PAYLOAD + extra);
        prop_assert!(
            matches!(parse("+switch-master", &p), Err(ParseError::TooLong { .. })),
            "oversized payload was not refused"
        );
    }

    #[test]
    fn mutated_configs_never_panic_and_explain(pos in 0usize..600, bytes in proptest::collection::vec(any::<u8>(), 0..16), cut in 0usize..20) {
        let text = mutate(GOOD_CONFIG, pos, &bytes, cut);
        if let Err(e) = Config::parse(&text) {
            prop_assert!(e.len() > 10, "unhelpful error {:?}", e);
        }
    }

    #[test]
    fn random_yaml_never_panics(text in ".{0,400}") {
        let _ = Config::parse(&text);
    }
}
