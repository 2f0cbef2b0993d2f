//! Micro-benchmarks of the per-datagram work besides parsing: rule lookup, the egress
//! batcher's run splitting, and the buffer pool. They show regressions without a network.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use relay::config::{OutputSpec, RuleSpec};
use relay::dataplane::egress::gso_run;
use relay::dataplane::pool::BufferPool;
use relay::rules::{MatchKey, RuleSet, RuleTable};

fn table(rules: usize) -> RuleTable {
    let mut set = RuleSet::default();
    for i in 0..rules {
        set.add(RuleSpec {
            name: format!("r{i}"),
            input: "eth0".into(),
            group: Ipv4Addr::from(0xef01_0000 + i as u32),
            port: 5000,
            source: None,
            outputs: vec![OutputSpec::new([239, 2, 0, 1].into(), 6000, "eth1", 8)],
            monitor: None,
        })
        .unwrap();
    }
    RuleTable::build(&set, 1, 1, None, &|name| {
        Ok(if name == "eth0" { 2 } else { 3 })
    })
    .unwrap()
}

fn rule_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_lookup");
    g.throughput(Throughput::Elements(1));
    for rules in [1usize, 100, 10_000] {
        let t = table(rules);
        let hit = MatchKey {
            ifindex: 2,
            group: Ipv4Addr::from(0xef01_0000 + rules as u32 / 2),
            port: 5000,
        };
        let miss = MatchKey {
            ifindex: 2,
            group: Ipv4Addr::new(239, 9, 9, 9),
            port: 5000,
        };
        let src = Ipv4Addr::new(10, 0, 0, 1);
        g.bench_function(format!("hit_{rules}_rules"), |b| {
            b.iter(|| black_box(t.lookup(black_box(&hit), src)).is_some())
        });
        g.bench_function(format!("miss_{rules}_rules"), |b| {
            b.iter(|| black_box(t.lookup(black_box(&miss), src)).is_some())
        });
    }
    g.finish();
}

fn egress_batcher(c: &mut Criterion) {
    let mut g = c.benchmark_group("egress_batcher");
    let lens: Vec<usize> = (0..256)
        .map(|i| if i % 50 == 49 { 700 } else { 1400 })
        .collect();
    g.throughput(Throughput::Elements(lens.len() as u64));
    g.bench_function("split_256_datagrams_into_gso_runs", |b| {
        b.iter(|| {
            let mut i = 0;
            let mut sends = 0;
            while i < lens.len() {
                i += gso_run(lens[i..].iter().copied(), 44, 65_507);
                sends += 1;
            }
            black_box(sends)
        })
    });
    g.finish();
}

fn buffer_pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("buffer_pool");
    g.throughput(Throughput::Elements(1));
    let mut pool = BufferPool::new(4096, 2048);
    let payload = [0x5au8; 1400];
    g.bench_function("alloc_copy_1400_release", |b| {
        b.iter(|| {
            let id = pool.alloc(1).unwrap();
            pool.buf_mut(id)[..1400].copy_from_slice(black_box(&payload));
            pool.release(id);
        })
    });
    g.finish();
}

criterion_group!(benches, rule_lookup, egress_batcher, buffer_pool);
criterion_main!(benches);
