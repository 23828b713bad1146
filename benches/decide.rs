//! Pure decision paths: event parsing and incident folding (`cargo bench`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sentinel_vip::decide::fold::{Fold, Stamp};
use sentinel_vip::watch::event::parse;

/// One SIGKILL failover as three sentinels published it, recorded on the rig
/// (`tests/fixtures/record.sh`): `<ms> <sentinel> <channel> <payload>` a line.
const RECORDED: &str = include_str!("../tests/fixtures/sigkill_failover.events");

/// The recording as (sentinel, channel, payload), in the order it was received.
fn burst() -> Vec<(usize, &'static str, &'static str)> {
    RECORDED
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let _ms = f.next()?;
            let sentinel = f.next()?.parse().ok()?;
            Some((sentinel, f.next()?, f.next().unwrap_or("")))
        })
        .collect()
}

fn parsing(c: &mut Criterion) {
    let burst = burst();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(burst.len() as u64));
    g.bench_function("failover_burst", |b| {
        b.iter(|| {
            for (_, ch, p) in &burst {
                let _ = black_box(parse(black_box(ch), black_box(p)));
            }
        })
    });
    g.finish();
}

fn folding(c: &mut Criterion) {
    let events: Vec<_> = burst()
        .into_iter()
        .map(|(s, ch, p)| (s, parse(ch, p).expect("a recorded event parses")))
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
