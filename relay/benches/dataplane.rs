//! Micro-benchmarks of the per-datagram work besides parsing: rule lookup, the egress
//! batcher's run splitting, and the buffer pool. They show regressions without a network.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use relay::config::{Monitor, OutputSpec, RuleSpec};
use relay::counters::MonitorCells;
use relay::dataplane::egress::gso_run;
use relay::dataplane::pool::BufferPool;
use relay::dataplane::Snapshot;
use relay::rules::{MatchKey, RuleSet, RuleTable};

fn table(rules: usize) -> RuleTable {
    let mut set = RuleSet::default();
    for i in 0..rules {
        set.add(RuleSpec {
            name: format!("r{i}"),
            input: "eth0".into(),
            group: Ipv4Addr::from(0xef01_0000 + i as u32).into(),
            port: 5000,
            source: None,
            outputs: vec![OutputSpec::new([239, 2, 0, 1].into(), 6000, "eth1", 8)],
            monitor: None,
            min_ttl: None,
        })
        .unwrap();
    }
    RuleTable::build(&set, 1, &|name| Ok(if name == "eth0" { 2 } else { 3 })).unwrap()
}

fn rule_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_lookup");
    g.throughput(Throughput::Elements(1));
    for rules in [1usize, 100, 10_000] {
        let t = table(rules);
        let hit = MatchKey {
            ifindex: 2,
            group: Ipv4Addr::from(0xef01_0000 + rules as u32 / 2).into(),
            port: 5000,
        };
        let miss = MatchKey {
            ifindex: 2,
            group: Ipv4Addr::new(239, 9, 9, 9).into(),
            port: 5000,
        };
        let src = Ipv4Addr::new(10, 0, 0, 1).into();
        g.bench_function(format!("hit_{rules}_rules"), |b| {
            b.iter(|| black_box(t.lookup(black_box(&hit), src)).is_some())
        });
        g.bench_function(format!("miss_{rules}_rules"), |b| {
            b.iter(|| black_box(t.lookup(black_box(&miss), src)).is_some())
        });
    }
    g.finish();
}

/// A match as a worker makes it, short of the copy: the lookup, then the matched rule's
/// counters (packets, bytes, each output's `matched`), found by the rule's position in the
/// counter table published with the rule table.
fn match_and_count(c: &mut Criterion) {
    let mut g = c.benchmark_group("match_and_count");
    g.throughput(Throughput::Elements(1));
    for rules in [1usize, 10_000] {
        let s = Snapshot::new(table(rules), 1, &Snapshot::default());
        let hit = MatchKey {
            ifindex: 2,
            group: Ipv4Addr::from(0xef01_0000 + rules as u32 / 2).into(),
            port: 5000,
        };
        let src = Ipv4Addr::new(10, 0, 0, 1).into();
        g.bench_function(format!("hit_{rules}_rules"), |b| {
            b.iter(|| {
                let Some((position, rule)) = s.table.lookup(black_box(&hit), src) else {
                    return;
                };
                let flow = &s.counters.flow(position).per_worker[0];
                flow.packets.add(1);
                flow.bytes.add(1316);
                for out in &flow.outputs[..rule.outputs.len()] {
                    out.matched.add(1);
                }
            })
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
    let mut pool = BufferPool::new(4096, 2048).unwrap();
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

/// The per-datagram cost of a rule's `monitor`: an RTP packet, and a datagram of 7 MPEG-TS
/// packets (4 PIDs), each continuing its stream (the common case: no gap).
fn stream_monitor(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_monitor");
    g.throughput(Throughput::Elements(1));
    let rtp = MonitorCells::new(Monitor::Rtp);
    let mut packet = [0u8; 1328];
    packet[0] = 0x80;
    let mut seq = 0u16;
    g.bench_function("rtp_datagram", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            rtp.observe(black_box(&packet));
        })
    });
    let ts = MonitorCells::new(Monitor::Mpegts);
    let mut datagram = [0u8; 7 * 188];
    let pids = [0x100u16, 0x100, 0x101, 0x100, 0x100, 0x1000, 0x100];
    let mut cc = [0u8; 0x1001];
    g.bench_function("mpegts_datagram_7_packets", |b| {
        b.iter(|| {
            for (p, &pid) in datagram.chunks_exact_mut(188).zip(&pids) {
                let c = &mut cc[usize::from(pid)];
                *c = (*c + 1) & 0x0f;
                p[..4].copy_from_slice(&[0x47, (pid >> 8) as u8, pid as u8, 0x10 | *c]);
            }
            ts.observe(black_box(&datagram));
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    rule_lookup,
    match_and_count,
    egress_batcher,
    buffer_pool,
    stream_monitor
);
criterion_main!(benches);
