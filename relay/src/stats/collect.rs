//! Builds a [`StatsReport`] from the live counters (off the packet path, on demand).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::counters::{WorkerCells, PERF_COUNT, TX_ERRNOS, TX_ERRNO_OTHER};
use super::report::{
    FlowStats, OutputStats, PerfCounters, RelayInfo, StatsReport, WorkerCounters, WorkerStats,
    STATS_SCHEMA, STATS_VERSION,
};
use crate::config::DataplaneConfig;
use crate::dataplane::Shared;
use crate::wire::{Filtered, Malformed};

/// Facts about the process that go into every report.
#[derive(Debug, Clone)]
pub struct Identity {
    pub config_path: Option<String>,
    pub dataplane: DataplaneConfig,
}

/// Reads every counter once and assembles the report.
pub fn collect(shared: &Shared, identity: &Identity, final_report: bool) -> StatsReport {
    let workers: Vec<WorkerStats> = shared
        .workers
        .iter()
        .enumerate()
        .map(|(id, cells)| WorkerStats {
            id: id as u32,
            cpu: identity.dataplane.cpus.get(id).copied(),
            counters: worker_counters(cells),
            perf: perf_counters(cells),
        })
        .collect();
    let mut totals = WorkerCounters::default();
    for w in &workers {
        add_into(&mut totals, &w.counters);
    }
    let table = shared.table.load();
    let flows = table
        .rules
        .iter()
        .map(|rule| {
            let per_worker = &rule.counters.per_worker;
            let outputs = rule
                .outputs
                .iter()
                .map(|o| {
                    let sum = |f: fn(&super::counters::OutputCells) -> u64| -> u64 {
                        per_worker
                            .iter()
                            .map(|w| f(&w.outputs[o.index_in_rule]))
                            .sum()
                    };
                    OutputStats {
                        output: format!("{}@{}", o.dest, o.interface),
                        ttl: o.ttl,
                        matched: sum(|c| c.matched.get()),
                        tx_sent: sum(|c| c.tx_sent.get()),
                        tx_bytes: sum(|c| c.tx_bytes.get()),
                        tx_errors: sum(|c| c.tx_errors.get()),
                        buf_exhaust: sum(|c| c.buf_exhaust.get()),
                        in_flight: sum(|c| c.in_flight.get()),
                    }
                })
                .collect();
            FlowStats {
                rule: rule.spec.name.clone(),
                input_interface: rule.spec.input.clone(),
                group: rule.spec.group.to_string(),
                port: rule.spec.port,
                source: rule.spec.source.map(|s| s.to_string()),
                packets: per_worker.iter().map(|w| w.packets.get()).sum(),
                bytes: per_worker.iter().map(|w| w.bytes.get()).sum(),
                outputs,
            }
        })
        .collect();
    let dp = &identity.dataplane;
    StatsReport {
        schema: STATS_SCHEMA.to_string(),
        version: STATS_VERSION,
        timestamp_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        uptime_ns: shared.started.elapsed().as_nanos() as u64,
        final_report,
        relay: RelayInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            config_path: identity.config_path.clone(),
            tunables: dp.clone(),
            gso_egress: shared.gso,
        },
        totals,
        workers,
        flows,
    }
}

fn worker_counters(c: &WorkerCells) -> WorkerCounters {
    let malformed_by_kind: BTreeMap<String, u64> = Malformed::ALL
        .iter()
        .map(|k| (k.name().to_string(), c.malformed[k.index()].get()))
        .filter(|(_, v)| *v > 0)
        .collect();
    let mut tx_errors_by_errno: BTreeMap<String, u64> = TX_ERRNOS
        .iter()
        .enumerate()
        .map(|(i, (_, name))| (name.to_string(), c.tx_errors[i].get()))
        .filter(|(_, v)| *v > 0)
        .collect();
    let other = c.tx_errors[TX_ERRNO_OTHER].get();
    if other > 0 {
        tx_errors_by_errno.insert("other".to_string(), other);
    }
    WorkerCounters {
        rx_frames: c.rx_frames.get(),
        rx: c.rx.get(),
        rx_bytes: c.rx_bytes.get(),
        kernel_drops: c.kernel_drops.get(),
        filtered: Filtered::ALL
            .iter()
            .map(|k| c.filtered[k.index()].get())
            .sum(),
        malformed: malformed_by_kind.values().sum(),
        malformed_by_kind,
        no_match: c.no_match.get(),
        matched: c.matched.get(),
        buf_exhaust: c.buf_exhaust.get(),
        tx_sent: c.tx_sent.get(),
        tx_bytes: c.tx_bytes.get(),
        tx_errors: tx_errors_by_errno.values().sum(),
        tx_errors_by_errno,
        tx_syscalls: c.tx_syscalls.get(),
        in_flight: c.in_flight.get(),
    }
}

fn perf_counters(c: &WorkerCells) -> PerfCounters {
    let open = c.perf_open.get();
    let v = |i: usize| -> Option<u64> {
        debug_assert!(i < PERF_COUNT);
        (open & (1 << i) != 0).then(|| c.perf[i].get())
    };
    PerfCounters {
        task_clock_ns: v(0),
        context_switches: v(1),
        cpu_migrations: v(2),
        page_faults: v(3),
        cycles: v(4),
        instructions: v(5),
        cache_misses: v(6),
        branch_misses: v(7),
    }
}

/// Adds `b` into `a`, field by field.
pub fn add_into(a: &mut WorkerCounters, b: &WorkerCounters) {
    a.rx_frames += b.rx_frames;
    a.rx += b.rx;
    a.rx_bytes += b.rx_bytes;
    a.kernel_drops += b.kernel_drops;
    a.filtered += b.filtered;
    a.malformed += b.malformed;
    add_counts(&mut a.malformed_by_kind, &b.malformed_by_kind);
    a.no_match += b.no_match;
    a.matched += b.matched;
    a.buf_exhaust += b.buf_exhaust;
    a.tx_sent += b.tx_sent;
    a.tx_bytes += b.tx_bytes;
    a.tx_errors += b.tx_errors;
    add_counts(&mut a.tx_errors_by_errno, &b.tx_errors_by_errno);
    a.tx_syscalls += b.tx_syscalls;
    a.in_flight += b.in_flight;
}

/// Adds the counts of `b` into `a`, name by name.
fn add_counts(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleSpec;
    use crate::rules::{RuleSet, RuleTable};

    #[test]
    fn report_sums_workers_and_flows_and_marks_unavailable_perf() {
        let shared = Shared::new(2, true);
        let mut set = RuleSet::default();
        set.add(RuleSpec::on_lo("r", [239, 1, 1, 1], 5000)).unwrap();
        let table = RuleTable::build(&set, 1, 2, None, &|n| crate::netif::index(n)).unwrap();
        table.rules[0].counters.per_worker[0].packets.add(3);
        table.rules[0].counters.per_worker[1].packets.add(4);
        table.rules[0].counters.per_worker[1].outputs[0]
            .tx_sent
            .add(4);
        shared.publish(table);
        shared.workers[0].rx.add(10);
        shared.workers[0].matched.add(3);
        shared.workers[0].malformed[Malformed::Fragment.index()].add(7);
        shared.workers[1].rx.add(4);
        shared.workers[1].perf_open.set(0b1);
        shared.workers[1].perf[0].set(123);
        let identity = Identity {
            config_path: None,
            dataplane: DataplaneConfig {
                workers: 2,
                ..Default::default()
            },
        };
        let r = collect(&shared, &identity, false);
        assert_eq!(r.totals.rx, 14);
        assert_eq!(r.totals.malformed, 7);
        assert_eq!(r.totals.malformed_by_kind["fragment"], 7);
        assert_eq!(r.flows[0].packets, 7);
        assert_eq!(r.flows[0].outputs[0].tx_sent, 4);
        assert_eq!(r.flows[0].outputs[0].output, "239.2.2.2:6000@lo");
        assert_eq!(r.workers[1].perf.task_clock_ns, Some(123));
        assert_eq!(r.workers[0].perf.task_clock_ns, None);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"cycles\":\"unavailable\""), "{json}");
        let back: StatsReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
