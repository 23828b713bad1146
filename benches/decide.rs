//! Pure decision paths: event parsing and incident folding (`cargo bench`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sentinel_vip::decide::fold::{Fold, Stamp};
use sentinel_vip::watch::event::parse;

/// One failover as three sentinels publish it (recorded on the test rig).
const BURST: &[(&str, &str)] = &[
    ("+sdown", "master mymaster 127.0.0.2 6379"),
    ("+odown", "master mymaster 127.0.0.2 6379 #quorum 2/2"),
    ("+new-epoch", "1"),
    ("+try-failover", "master mymaster 127.0.0.2 6379"),
    ("+vote-for-leader", "4f0c3e8a2b 1"),
    ("+elected-leader", "master mymaster 127.0.0.2 6379"),
    (
        "+failover-state-select-slave",
        "master mymaster 127.0.0.2 6379",
    ),
    (
        "+selected-slave",
        "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
    ),
    (
        "+failover-state-send-slaveof-noone",
        "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
    ),
    (
        "+failover-state-wait-promotion",
        "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
    ),
    (
        "+promoted-slave",
        "slave 127.0.0.3:6379 127.0.0.3 6379 @ mymaster 127.0.0.2 6379",
    ),
    (
        "+failover-state-reconf-slaves",
        "master mymaster 127.0.0.2 6379",
    ),
    (
        "+config-update-from",
        "sentinel 4f0c3e8a2b 127.0.0.3 26379 @ mymaster 127.0.0.2 6379",
    ),
    ("+switch-master", "mymaster 127.0.0.2 6379 127.0.0.3 6379"),
    (
        "+slave",
        "slave 127.0.0.4:6379 127.0.0.4 6379 @ mymaster 127.0.0.3 6379",
    ),
    (
        "-role-change",
        "slave 127.0.0.2:6379 127.0.0.2 6379 @ mymaster 127.0.0.3 6379 new reported role is master",
    ),
    (
        "+convert-to-slave",
        "slave 127.0.0.2:6379 127.0.0.2 6379 @ mymaster 127.0.0.3 6379",
    ),
];

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(BURST.len() as u64));
    g.bench_function("failover_burst", |b| {
        b.iter(|| {
            for (ch, p) in BURST {
                let _ = black_box(parse(black_box(ch), black_box(p)));
            }
        })
    });
    g.finish();
}

fn folding(c: &mut Criterion) {
    let events: Vec<_> = (0..3)
        .flat_map(|s| {
            BURST
                .iter()
                .map(move |(ch, p)| (s, parse(ch, p).expect("valid")))
        })
        .collect();
    let mut g = c.benchmark_group("fold");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("three_sentinel_failover", |b| {
        b.iter(|| {
            let mut f = Fold::new(Duration::from_secs(10), Duration::from_secs(3600));
            let t0 = Stamp::now();
            for (s, e) in &events {
                f.on_event(t0, *s, e);
            }
            black_box(f.due(t0.mono + Duration::from_secs(20)))
        })
    });
    g.finish();
}

criterion_group!(benches, parsing, folding);
criterion_main!(benches);
