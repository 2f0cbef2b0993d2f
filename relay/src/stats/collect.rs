//! Builds a [`StatsReport`] from the live counters (off the packet path, on demand).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::report::{
    FastPathStats, FlowStats, MonitorStats, OutputStats, PerfCounters, RelayInfo, StatsReport,
    Tunables, WorkerCounters, WorkerStats, STATS_MINOR_VERSION, STATS_SCHEMA, STATS_VERSION,
};
use crate::config::DataplaneConfig;
use crate::counters::{
    CacheLine, CounterTable, WorkerCells, PERF_COUNT, TX_ERRNOS, TX_ERRNO_OTHER,
};
use crate::fastpath::counters::{KernelTotals, RuleCounters};
use crate::fastpath::FastPath;
use crate::rules::RuleTable;
use crate::wire::{Filtered, Malformed};

/// Facts about the process that go into every report.
#[derive(Debug, Clone)]
pub struct Identity {
    pub config_path: Option<String>,
    pub dataplane: DataplaneConfig,
    /// `dataplane` as the report records it, made once at start rather than on every read.
    tunables: Tunables,
}

impl Identity {
    pub fn new(
        config_path: Option<String>,
        dataplane: DataplaneConfig,
    ) -> Result<Self, serde_json::Error> {
        Ok(Identity {
            config_path,
            tunables: Tunables::from_serialize(&dataplane)?,
            dataplane,
        })
    }
}

/// One worker's cells in one flow, as read.
struct FlowWorkerRead {
    packets: u64,
    bytes: u64,
    below_min_ttl: u64,
    outputs: Vec<OutputRead>,
    /// datagrams, foreign, gaps, lost, repeats of the flow's monitor.
    monitor: Option<[u64; 5]>,
}

/// One worker's cells for one output, as read.
struct OutputRead {
    matched: u64,
    tx_sent: u64,
    tx_bytes: u64,
    tx_errors: u64,
    buf_exhaust: u64,
    in_flight: u64,
}

/// What a report is read from, as values: the table in force and its flows' counters, the
/// workers' counters, the kernel's (through the fast path) and a few facts.
/// The data plane is not among them: stats read counters, not the forwarding machinery.
pub struct Sources<'a> {
    pub table: &'a RuleTable,
    /// The counters published with `table`, by the position of each rule in it.
    pub counters: &'a CounterTable,
    pub workers: &'a [CacheLine<WorkerCells>],
    /// When the data plane started (the report's uptime).
    pub started: Instant,
    /// Whether `UDP_SEGMENT` sends are enabled.
    pub gso: bool,
    pub fast_path: Option<&'a FastPath>,
    /// Times an interface a rule uses was re-created and followed.
    pub interface_changes: u64,
}

/// Reads every counter once and assembles the report. Each worker's counters, its own and
/// its cells in every flow, are read at one instant of that worker's, so the conservation
/// laws hold in every report, live ones included.
pub fn collect(sources: &Sources, identity: &Identity, final_report: bool) -> StatsReport {
    let table = sources.table;
    let mut workers = Vec::with_capacity(sources.workers.len());
    let mut flow_reads: Vec<Vec<FlowWorkerRead>> = Vec::with_capacity(sources.workers.len());
    for (id, cells) in sources.workers.iter().enumerate() {
        let (counters, flows) = cells.read_consistent(|| {
            let flows = (0..table.rules.len())
                .map(|position| {
                    let w = &sources.counters.flow(position).per_worker[id];
                    FlowWorkerRead {
                        packets: w.packets.get(),
                        bytes: w.bytes.get(),
                        below_min_ttl: w.below_min_ttl.get(),
                        outputs: w
                            .outputs
                            .iter()
                            .map(|c| OutputRead {
                                matched: c.matched.get(),
                                tx_sent: c.tx_sent.get(),
                                tx_bytes: c.tx_bytes.get(),
                                tx_errors: c.tx_errors.get(),
                                buf_exhaust: c.buf_exhaust.get(),
                                in_flight: c.in_flight.get(),
                            })
                            .collect(),
                        monitor: w.monitor.as_ref().map(|m| {
                            [
                                m.datagrams.get(),
                                m.foreign.get(),
                                m.gaps.get(),
                                m.lost.get(),
                                m.repeats.get(),
                            ]
                        }),
                    }
                })
                .collect::<Vec<_>>();
            (worker_counters(cells), flows)
        });
        workers.push(WorkerStats {
            id: id as u32,
            cpu: identity.dataplane.cpus.get(id).copied(),
            counters,
            perf: perf_counters(cells),
        });
        flow_reads.push(flows);
    }
    let mut totals = WorkerCounters::default();
    for w in &workers {
        add_into(&mut totals, &w.counters);
    }
    // The kernel's counters of each rule that has run there (one read per rule: the per-CPU
    // values of its slot).
    let fast_path = sources.fast_path;
    let kernel_reads: Vec<Option<RuleCounters>> = table
        .rules
        .iter()
        .map(|r| fast_path?.rule_counters(r.kernel_slot?))
        .collect();
    // And the program's stream check of each monitored rule (one for all CPUs).
    let kernel_monitors: Vec<Option<[u64; 5]>> = table
        .rules
        .iter()
        .map(|r| {
            r.spec.monitor?;
            let m = fast_path?.monitor_counters(r.kernel_slot?)?;
            Some([m.datagrams, m.foreign, m.gaps, m.lost, m.repeats])
        })
        .collect();
    let fast_path_stats = fast_path.map(|fp| {
        let mut k = fp.retired();
        for (rule, read) in table.rules.iter().zip(&kernel_reads) {
            if let Some(c) = read {
                k.add(c, rule.outputs.len());
            }
        }
        let stats = fast_path_stats(fp, &k, table);
        add_into(&mut totals, &stats.counters);
        stats
    });
    let flows = table
        .rules
        .iter()
        .enumerate()
        .map(|(r, rule)| {
            let kernel = kernel_reads[r].as_ref();
            let per_worker = flow_reads.iter().map(|flows| &flows[r]);
            let outputs = rule
                .outputs
                .iter()
                .map(|o| {
                    let sum = |field: fn(&OutputRead) -> u64| -> u64 {
                        per_worker
                            .clone()
                            .map(|w| field(&w.outputs[o.index_in_rule]))
                            .sum()
                    };
                    let k = kernel
                        .map(|k| k.outputs[o.index_in_rule])
                        .unwrap_or_default();
                    OutputStats {
                        output: format!("{}@{}", o.dest, o.interface),
                        ttl: o.ttl,
                        matched: sum(|c| c.matched) + k.matched,
                        tx_sent: sum(|c| c.tx_sent) + k.sent,
                        tx_bytes: sum(|c| c.tx_bytes) + k.sent_bytes,
                        tx_errors: sum(|c| c.tx_errors) + k.errors(),
                        buf_exhaust: sum(|c| c.buf_exhaust),
                        in_flight: sum(|c| c.in_flight) + k.in_flight(),
                        path: rule.path.name().to_string(),
                    }
                })
                .collect();
            FlowStats {
                rule: rule.spec.name.clone(),
                input_interface: rule.spec.input.clone(),
                group: rule.spec.group.to_string(),
                port: rule.spec.port,
                source: rule.spec.source.map(|s| s.to_string()),
                packets: per_worker.clone().map(|w| w.packets).sum::<u64>()
                    + kernel.map_or(0, |k| k.matched),
                bytes: per_worker.clone().map(|w| w.bytes).sum::<u64>()
                    + kernel.map_or(0, |k| k.bytes),
                below_min_ttl: per_worker.clone().map(|w| w.below_min_ttl).sum::<u64>()
                    + kernel.map_or(0, |k| k.below_min_ttl),
                path: rule.path.name().to_string(),
                path_reason: rule.path.reason().map(str::to_string),
                outputs,
                monitor: rule.spec.monitor.map(|kind| {
                    let mut sum = [0u64; 5];
                    let workers = per_worker.filter_map(|w| w.monitor);
                    for m in workers.chain(kernel_monitors[r]) {
                        for (s, v) in sum.iter_mut().zip(m) {
                            *s += v;
                        }
                    }
                    let [datagrams, foreign, gaps, lost, repeats] = sum;
                    MonitorStats {
                        kind: kind.name().to_string(),
                        datagrams,
                        foreign,
                        gaps,
                        lost,
                        repeats,
                    }
                }),
            }
        })
        .collect();
    StatsReport {
        schema: STATS_SCHEMA.to_string(),
        version: STATS_VERSION,
        minor_version: STATS_MINOR_VERSION,
        timestamp_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        uptime_ns: sources.started.elapsed().as_nanos() as u64,
        final_report,
        relay: RelayInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: crate::version::REVISION.to_string(),
            pid: std::process::id(),
            config_path: identity.config_path.clone(),
            tunables: identity.tunables.clone(),
            gso_egress: sources.gso,
            interface_changes: sources.interface_changes,
        },
        totals,
        workers,
        flows,
        fast_path: fast_path_stats,
    }
}

/// The fast path's section of the report: its totals in the workers' terms.
fn fast_path_stats(fp: &FastPath, k: &KernelTotals, table: &RuleTable) -> FastPathStats {
    let errors: BTreeMap<String, u64> = [
        ("kernel_mtu", k.err_mtu),
        ("kernel_redirect", k.err_redirect),
        ("kernel_rewrite", k.err_rewrite),
        ("kernel_nodev", k.err_nodev),
    ]
    .into_iter()
    .filter(|(_, v)| *v > 0)
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    let pass = fp.pass_counters();
    let facts = fp.facts();
    FastPathStats {
        program_id: facts.id,
        verified_insns: facts.verified_insns,
        attach: fp.attach_mode().name().to_string(),
        missing_features: fp
            .features()
            .missing()
            .into_iter()
            .map(str::to_string)
            .collect(),
        interfaces: fp
            .attached()
            .into_iter()
            .map(|i| {
                table
                    .input(i)
                    .map_or_else(|| i.to_string(), |x| x.name.clone())
            })
            .collect(),
        // Frames of the program's flows it refused: counted as the userspace path counts
        // them (the packet filter keeps them from userspace), so `rx` holds them too.
        counters: WorkerCounters {
            rx_frames: k.frames + k.below_min_ttl_frames + pass.refused(),
            rx: k.matched + k.below_min_ttl + pass.refused(),
            rx_bytes: k.frame_bytes,
            filtered: pass.not_ipv4 + k.below_min_ttl,
            malformed: pass.malformed.iter().sum(),
            malformed_by_kind: pass
                .malformed_by_kind()
                .map(|(kind, n)| (kind.name().to_string(), n))
                .collect(),
            matched: k.matched,
            matched_bytes: k.bytes,
            tx_sent: k.sent,
            tx_bytes: k.sent_bytes,
            tx_errors: errors.values().sum(),
            tx_errors_by_errno: errors,
            in_flight: k.in_flight,
            handed_over: pass.handed_over,
            ..Default::default()
        },
        passed_ip_options: pass.ip_options,
        passed_fragments: pass.fragments,
        passed_extension_headers: pass.extension_headers,
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
        kernel_drop_frames: c.kernel_drop_frames.get(),
        kernel_drops_unsettled_frames: c.kernel_drops_unsettled_frames.get(),
        rx_overflow: c.rx_overflow.get(),
        rx_overflow_frames: c.rx_overflow_frames.get(),
        handed_over: c.handed_over.get(),
        filtered: Filtered::ALL
            .iter()
            .map(|k| c.filtered[k.index()].get())
            .sum(),
        malformed: malformed_by_kind.values().sum(),
        malformed_by_kind,
        no_match: c.no_match.get(),
        matched: c.matched.get(),
        matched_bytes: c.matched_bytes.get(),
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
    a.kernel_drop_frames += b.kernel_drop_frames;
    a.kernel_drops_unsettled_frames += b.kernel_drops_unsettled_frames;
    a.rx_overflow += b.rx_overflow;
    a.rx_overflow_frames += b.rx_overflow_frames;
    a.handed_over += b.handed_over;
    a.filtered += b.filtered;
    a.malformed += b.malformed;
    add_counts(&mut a.malformed_by_kind, &b.malformed_by_kind);
    a.no_match += b.no_match;
    a.matched += b.matched;
    a.matched_bytes += b.matched_bytes;
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
    use crate::counters::FlowShape;
    use crate::rules::RuleSet;

    fn workers(n: usize) -> Vec<CacheLine<WorkerCells>> {
        (0..n).map(|_| CacheLine(WorkerCells::default())).collect()
    }

    /// `set`'s table on `lo`, with fresh counters for `workers` workers.
    fn table(set: &RuleSet, workers: usize) -> (RuleTable, CounterTable) {
        let table = RuleTable::build(set, 1, &|n| crate::netif::index(n)).unwrap();
        let flows = table.rules.iter().map(|r| FlowShape::of(&r.spec));
        let counters = CounterTable::fresh(workers, flows);
        (table, counters)
    }

    fn report(
        (table, counters): &(RuleTable, CounterTable),
        workers: &[CacheLine<WorkerCells>],
        id: &Identity,
    ) -> StatsReport {
        let sources = Sources {
            table,
            counters,
            workers,
            started: Instant::now(),
            gso: true,
            fast_path: None,
            interface_changes: 0,
        };
        collect(&sources, id, false)
    }

    #[test]
    fn report_sums_workers_and_flows_and_marks_unavailable_perf() {
        let cells = workers(2);
        let mut set = RuleSet::default();
        set.add(RuleSpec::on_lo("r", [239, 1, 1, 1], 5000)).unwrap();
        let table = table(&set, 2);
        table.1.flow(0).per_worker[0].packets.add(3);
        table.1.flow(0).per_worker[1].packets.add(4);
        table.1.flow(0).per_worker[1].outputs[0].tx_sent.add(4);
        cells[0].rx.add(10);
        cells[0].matched.add(3);
        cells[0].malformed[Malformed::Fragment.index()].add(7);
        cells[1].rx.add(4);
        cells[1].perf_open.set(0b1);
        cells[1].perf[0].set(123);
        let identity = Identity::new(
            None,
            DataplaneConfig {
                workers: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let r = report(&table, &cells, &identity);
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
        assert!(r.flows[0].monitor.is_none());
        assert!(
            !json.contains("monitor"),
            "an unmonitored flow has no monitor field"
        );
    }

    #[test]
    fn a_monitored_flow_reports_its_workers_checks_summed() {
        let cells = workers(2);
        let mut set = RuleSet::default();
        set.add(RuleSpec {
            monitor: Some(crate::config::Monitor::Rtp),
            ..RuleSpec::on_lo("m", [239, 1, 1, 1], 5000)
        })
        .unwrap();
        let table = table(&set, 2);
        let rtp = |seq: u16| {
            let mut b = [0u8; 12];
            b[0] = 0x80;
            b[2..4].copy_from_slice(&seq.to_be_bytes());
            b
        };
        let flow = &table.1.flow(0).per_worker;
        for seq in [1, 2, 5] {
            flow[0].monitor.as_ref().unwrap().observe(&rtp(seq));
        }
        for seq in [100, 101, 101] {
            flow[1].monitor.as_ref().unwrap().observe(&rtp(seq));
        }
        let identity = Identity::new(None, DataplaneConfig::default()).unwrap();
        let r = report(&table, &cells, &identity);
        let m = r.flows[0].monitor.as_ref().unwrap();
        assert_eq!(
            (m.kind.as_str(), m.datagrams, m.gaps, m.lost, m.repeats),
            ("rtp", 6, 1, 2, 1)
        );
        let text = crate::stats::prometheus::render(&r);
        assert!(
            text.contains("mcr_flow_stream_lost_total{flow=\"m\",kind=\"rtp\"} 2"),
            "{text}"
        );
    }
}
