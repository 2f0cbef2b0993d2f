//! The Prometheus text exposition (format 0.0.4) of a [`StatsReport`]: what mcrd's `/metrics`
//! serves and `mcrctl stats --prometheus` prints, from this one function.
//!
//! Every counter of the stats JSON has a metric (a test walks the JSON to make sure):
//! per-worker counters carry a `worker` label, per-kind and per-errno counts `kind` and
//! `errno`, flows `flow` (the rule name) and outputs `flow` and `output` (`ADDR:PORT@IF`).
//! Counters end in `_total`, times are in seconds and sizes in bytes. The JSON's sums
//! (`totals`, `malformed`, `tx_errors`) are not exported again: `sum()` over the labels
//! gives them. A perf counter the machine could not measure has no sample (never a 0).
//! Per-kind and per-errno series are exported for every known kind and errno, zeros
//! included, so `rate()` sees a series from the start.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::report::{
    FlowStats, MonitorStats, OutputStats, PerfCounters, StatsReport, WorkerCounters,
};
use crate::counters::TX_ERRNOS;
use crate::wire::Malformed;

/// The `Content-Type` of the text this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How a family's samples are read.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A per-worker counter: name, help, and how to read it.
type WorkerMetric = (&'static str, &'static str, fn(&WorkerCounters) -> u64);

const WORKER_COUNTERS: [WorkerMetric; 16] = [
    (
        "mcr_rx_frames_total",
        "Frames taken from the kernel's packet rings.",
        |c| c.rx_frames,
    ),
    (
        "mcr_rx_datagrams_total",
        "Datagrams taken in (a GSO/GRO frame counts once per datagram it carries).",
        |c| c.rx,
    ),
    (
        "mcr_rx_bytes_total",
        "Bytes of the frames taken from the kernel, link layer included.",
        |c| c.rx_bytes,
    ),
    (
        "mcr_kernel_drops_total",
        "Datagrams in the frames the kernel dropped on the packet sockets because the ring was full (a lower bound while mcr_kernel_drops_unsettled_frames is above 0).",
        |c| c.kernel_drops,
    ),
    (
        "mcr_kernel_drop_frames_total",
        "Frames the kernel dropped on the packet sockets because the ring was full.",
        |c| c.kernel_drop_frames,
    ),
    (
        "mcr_rx_overflow_total",
        "Datagrams lost to overload on the copy path (oversize frames cut by a full socket queue).",
        |c| c.rx_overflow,
    ),
    (
        "mcr_rx_overflow_frames_total",
        "Frames of mcr_rx_overflow_total.",
        |c| c.rx_overflow_frames,
    ),
    (
        "mcr_handed_over_total",
        "Datagrams of a flow changing path left to the other path by their receive timestamp (outside rx).",
        |c| c.handed_over,
    ),
    (
        "mcr_filtered_total",
        "Well-formed frames that are not UDP over IPv4 or IPv6.",
        |c| c.filtered,
    ),
    (
        "mcr_no_match_total",
        "Valid IPv4/UDP datagrams no rule matched.",
        |c| c.no_match,
    ),
    (
        "mcr_matched_total",
        "Datagrams that matched a rule (once, however many outputs it has).",
        |c| c.matched,
    ),
    (
        "mcr_buf_exhaust_total",
        "Output copies dropped because no egress buffer or send slot was free.",
        |c| c.buf_exhaust,
    ),
    (
        "mcr_tx_sent_total",
        "Output datagrams the kernel accepted.",
        |c| c.tx_sent,
    ),
    (
        "mcr_matched_bytes_total",
        "UDP payload bytes of the matched datagrams (the unit of mcr_tx_bytes_total).",
        |c| c.matched_bytes,
    ),
    (
        "mcr_tx_bytes_total",
        "UDP payload bytes of the datagrams sent.",
        |c| c.tx_bytes,
    ),
    (
        "mcr_tx_syscalls_total",
        "sendmsg operations completed (one may carry many datagrams with GSO).",
        |c| c.tx_syscalls,
    ),
];

/// A perf-event counter of a worker thread: name, help, scale to the metric's unit, reader.
type PerfMetric = (
    &'static str,
    &'static str,
    f64,
    fn(&PerfCounters) -> Option<u64>,
);

const PERF_COUNTERS: [PerfMetric; 8] = [
    (
        "mcr_worker_cpu_seconds_total",
        "CPU time of the worker thread (perf task-clock).",
        1e-9,
        |p| p.task_clock_ns,
    ),
    (
        "mcr_worker_context_switches_total",
        "Context switches of the worker thread.",
        1.0,
        |p| p.context_switches,
    ),
    (
        "mcr_worker_cpu_migrations_total",
        "Migrations of the worker thread between CPUs.",
        1.0,
        |p| p.cpu_migrations,
    ),
    (
        "mcr_worker_page_faults_total",
        "Page faults of the worker thread.",
        1.0,
        |p| p.page_faults,
    ),
    (
        "mcr_worker_cycles_total",
        "CPU cycles of the worker thread (hardware counter).",
        1.0,
        |p| p.cycles,
    ),
    (
        "mcr_worker_instructions_total",
        "Instructions retired by the worker thread (hardware counter).",
        1.0,
        |p| p.instructions,
    ),
    (
        "mcr_worker_cache_misses_total",
        "Cache misses of the worker thread (hardware counter).",
        1.0,
        |p| p.cache_misses,
    ),
    (
        "mcr_worker_branch_misses_total",
        "Branch misses of the worker thread (hardware counter).",
        1.0,
        |p| p.branch_misses,
    ),
];

/// A per-output count: name, help, kind, reader.
type OutputMetric = (&'static str, &'static str, Kind, fn(&OutputStats) -> u64);

const OUTPUT_METRICS: [OutputMetric; 7] = [
    (
        "mcr_output_matched_total",
        "Datagrams of the flow given to this output.",
        Kind::Counter,
        |o| o.matched,
    ),
    (
        "mcr_output_tx_sent_total",
        "Datagrams of this output the kernel accepted.",
        Kind::Counter,
        |o| o.tx_sent,
    ),
    (
        "mcr_output_tx_bytes_total",
        "UDP payload bytes sent on this output.",
        Kind::Counter,
        |o| o.tx_bytes,
    ),
    (
        "mcr_output_tx_errors_total",
        "Datagrams of this output whose send failed.",
        Kind::Counter,
        |o| o.tx_errors,
    ),
    (
        "mcr_output_buf_exhaust_total",
        "Datagrams of this output dropped for lack of buffers or send slots.",
        Kind::Counter,
        |o| o.buf_exhaust,
    ),
    (
        "mcr_output_in_flight",
        "Datagrams of this output queued or submitted and not completed yet.",
        Kind::Gauge,
        |o| o.in_flight,
    ),
    (
        "mcr_output_ttl",
        "IP TTL of this output.",
        Kind::Gauge,
        |o| u64::from(o.ttl),
    ),
];

/// A per-flow count: name, help, reader.
type FlowMetric = (&'static str, &'static str, fn(&FlowStats) -> u64);

const FLOW_COUNTERS: [FlowMetric; 3] = [
    (
        "mcr_flow_packets_total",
        "Datagrams that matched this rule, all workers.",
        |f| f.packets,
    ),
    (
        "mcr_flow_bytes_total",
        "UDP payload bytes of the datagrams that matched this rule.",
        |f| f.bytes,
    ),
    (
        "mcr_flow_below_min_ttl_total",
        "Datagrams to this rule's group and port below its min_ttl: not forwarded.",
        |f| f.below_min_ttl,
    ),
];

/// A monitored flow's stream check (`[[rule]] monitor`): name, help, reader.
type StreamMetric = (&'static str, &'static str, fn(&MonitorStats) -> u64);

const STREAM_COUNTERS: [StreamMetric; 5] = [
    (
        "mcr_flow_stream_datagrams_total",
        "Datagrams of a monitored rule checked (kind: rtp or mpegts).",
        |m| m.datagrams,
    ),
    (
        "mcr_flow_stream_foreign_total",
        "Datagrams of a monitored rule not of the monitored format.",
        |m| m.foreign,
    ),
    (
        "mcr_flow_stream_gaps_total",
        "Sequence gaps (RTP) or continuity-counter errors (MPEG-TS) this hop received.",
        |m| m.gaps,
    ),
    (
        "mcr_flow_stream_lost_total",
        "Packets the gaps show lost before this hop (RTP datagrams, MPEG-TS TS packets).",
        |m| m.lost,
    ),
    (
        "mcr_flow_stream_repeats_total",
        "Duplicated or reordered packets this hop received.",
        |m| m.repeats,
    ),
];

/// Renders `r` in the Prometheus text format.
pub fn render(r: &StatsReport) -> String {
    let mut out = Out(String::with_capacity(
        4096 + 2048 * r.workers.len() + 1024 * r.flows.len(),
    ));

    out.family(
        "mcr_build_info",
        Kind::Gauge,
        "Always 1; the version of mcrd and the commit it was built from, as labels.",
    );
    out.sample(
        "mcr_build_info",
        &[
            ("version", &r.relay.version),
            ("revision", &r.relay.revision),
        ],
        1,
    );
    out.family(
        "mcr_uptime_seconds",
        Kind::Gauge,
        "Seconds since the data plane started.",
    );
    out.sample_f64("mcr_uptime_seconds", &[], r.uptime_ns as f64 * 1e-9);
    out.family(
        "mcr_gso_egress",
        Kind::Gauge,
        "1 when UDP_SEGMENT egress coalescing is in use, else 0.",
    );
    out.sample("mcr_gso_egress", &[], u64::from(r.relay.gso_egress));
    out.family(
        "mcr_interface_changes_total",
        Kind::Counter,
        "Times the rules were re-resolved because an interface they use was created again.",
    );
    out.sample(
        "mcr_interface_changes_total",
        &[],
        r.relay.interface_changes,
    );

    out.family(
        "mcr_worker_info",
        Kind::Gauge,
        "Always 1; the CPU a worker is pinned to as a label (empty: not pinned).",
    );
    for w in &r.workers {
        let cpu = w.cpu.map(|c| c.to_string()).unwrap_or_default();
        out.sample(
            "mcr_worker_info",
            &[("worker", &w.id.to_string()), ("cpu", &cpu)],
            1,
        );
    }
    let worker_ids: Vec<String> = r.workers.iter().map(|w| w.id.to_string()).collect();
    // The kernel fast path counts as one more worker, `worker="kernel"`, so that the sums over
    // `worker` are the report's totals, as in the JSON.
    let kernel = r.fast_path.as_ref().map(|fp| &fp.counters);
    for (name, help, get) in WORKER_COUNTERS {
        out.family(name, Kind::Counter, help);
        for (w, id) in r.workers.iter().zip(&worker_ids) {
            out.sample(name, &[("worker", id)], get(&w.counters));
        }
        if let Some(k) = kernel {
            out.sample(name, &[("worker", "kernel")], get(k));
        }
    }
    out.family(
        "mcr_in_flight",
        Kind::Gauge,
        "Output datagrams queued or submitted whose completion has not arrived yet.",
    );
    for (w, id) in r.workers.iter().zip(&worker_ids) {
        out.sample("mcr_in_flight", &[("worker", id)], w.counters.in_flight);
    }
    out.family(
        "mcr_kernel_drops_unsettled_frames",
        Kind::Gauge,
        "Dropped frames whose datagrams are not known yet, each counted as one in mcr_kernel_drops_total.",
    );
    for (w, id) in r.workers.iter().zip(&worker_ids) {
        out.sample(
            "mcr_kernel_drops_unsettled_frames",
            &[("worker", id)],
            w.counters.kernel_drops_unsettled_frames,
        );
    }

    out.family(
        "mcr_malformed_total",
        Kind::Counter,
        "Datagrams rejected as malformed, by kind.",
    );
    let known_kinds = Malformed::ALL.iter().map(|k| k.name());
    for (w, id) in r.workers.iter().zip(&worker_ids) {
        let by_kind = &w.counters.malformed_by_kind;
        for kind in names(known_kinds.clone(), by_kind.keys()) {
            let n = by_kind.get(kind).copied().unwrap_or(0);
            out.sample("mcr_malformed_total", &[("worker", id), ("kind", kind)], n);
        }
    }
    out.family(
        "mcr_tx_errors_total",
        Kind::Counter,
        "Output datagrams whose send failed, by errno.",
    );
    let known_errnos = TX_ERRNOS
        .iter()
        .map(|(_, name)| *name)
        .chain(std::iter::once("other"));
    for (w, id) in r.workers.iter().zip(&worker_ids) {
        let by_errno = &w.counters.tx_errors_by_errno;
        for errno in names(known_errnos.clone(), by_errno.keys()) {
            let n = by_errno.get(errno).copied().unwrap_or(0);
            out.sample(
                "mcr_tx_errors_total",
                &[("worker", id), ("errno", errno)],
                n,
            );
        }
    }

    for (name, help, scale, get) in PERF_COUNTERS {
        out.family(name, Kind::Counter, help);
        for (w, id) in r.workers.iter().zip(&worker_ids) {
            if let Some(v) = get(&w.perf) {
                if scale == 1.0 {
                    out.sample(name, &[("worker", id)], v);
                } else {
                    out.sample_f64(name, &[("worker", id)], v as f64 * scale);
                }
            }
        }
    }

    if let Some(fp) = &r.fast_path {
        out.family(
            "mcr_fast_path_info",
            Kind::Gauge,
            "The kernel fast path: the hook its program is attached with (tcx or clsact) and the optional kernel features it does without.",
        );
        out.sample(
            "mcr_fast_path_info",
            &[
                ("attach", &fp.attach),
                ("missing_features", &fp.missing_features.join(",")),
            ],
            1,
        );
        out.family(
            "mcr_fast_path_verified_insns",
            Kind::Gauge,
            "Instructions the verifier processed to accept the kernel fast path program.",
        );
        out.sample(
            "mcr_fast_path_verified_insns",
            &[],
            u64::from(fp.verified_insns),
        );
        out.family(
            "mcr_fast_path_passed_total",
            Kind::Counter,
            "Frames the kernel program left to the stack, by reason (the userspace path sees them).",
        );
        out.sample(
            "mcr_fast_path_passed_total",
            &[("reason", "ip_options")],
            fp.passed_ip_options,
        );
        out.sample(
            "mcr_fast_path_passed_total",
            &[("reason", "fragment")],
            fp.passed_fragments,
        );
        out.sample(
            "mcr_fast_path_passed_total",
            &[("reason", "extension_headers")],
            fp.passed_extension_headers,
        );
    }
    out.family(
        "mcr_flow_kernel_path",
        Kind::Gauge,
        "1 if the rule runs on the kernel fast path, 0 if in userspace.",
    );
    for f in &r.flows {
        out.sample(
            "mcr_flow_kernel_path",
            &[("flow", &f.rule)],
            u64::from(f.path == "kernel"),
        );
    }
    out.family(
        "mcr_flow_info",
        Kind::Gauge,
        "Always 1; what a rule matches, as labels.",
    );
    for f in &r.flows {
        out.sample(
            "mcr_flow_info",
            &[
                ("flow", &f.rule),
                ("input", &f.input_interface),
                ("group", &f.group),
                ("port", &f.port.to_string()),
                ("source", f.source.as_deref().unwrap_or("")),
            ],
            1,
        );
    }
    for (name, help, get) in FLOW_COUNTERS {
        out.family(name, Kind::Counter, help);
        for f in &r.flows {
            out.sample(name, &[("flow", &f.rule)], get(f));
        }
    }
    let monitored: Vec<_> = r
        .flows
        .iter()
        .filter_map(|f| f.monitor.as_ref().map(|m| (f, m)))
        .collect();
    for (name, help, get) in STREAM_COUNTERS {
        out.family(name, Kind::Counter, help);
        for (f, m) in &monitored {
            out.sample(name, &[("flow", &f.rule), ("kind", &m.kind)], get(m));
        }
    }
    out.family(
        "mcr_output_info",
        Kind::Gauge,
        "Always 1; an output's destination, port and interface as labels of their own (join on flow and output).",
    );
    for f in &r.flows {
        for o in &f.outputs {
            let (dest, port, interface) = split_output(&o.output);
            out.sample(
                "mcr_output_info",
                &[
                    ("flow", &f.rule),
                    ("output", &o.output),
                    ("dest", dest),
                    ("port", port),
                    ("interface", interface),
                ],
                1,
            );
        }
    }
    for (name, help, kind, get) in OUTPUT_METRICS {
        out.family(name, kind, help);
        for f in &r.flows {
            for o in &f.outputs {
                out.sample(name, &[("flow", &f.rule), ("output", &o.output)], get(o));
            }
        }
    }
    out.0
}

/// An output's `ADDR:PORT@INTERFACE` (`[ADDR]:PORT@INTERFACE` for IPv6) as its three parts;
/// a part that is not there is empty (a report from a daemon that wrote another form).
fn split_output(output: &str) -> (&str, &str, &str) {
    let (address, interface) = output.rsplit_once('@').unwrap_or((output, ""));
    let (dest, port) = address.rsplit_once(':').unwrap_or((address, ""));
    let dest = dest
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .unwrap_or(dest);
    (dest, port, interface)
}

/// The known names followed by any others the report holds (from a newer daemon), each once.
fn names<'a>(
    known: impl Iterator<Item = &'a str>,
    present: impl Iterator<Item = &'a String>,
) -> impl Iterator<Item = &'a str> {
    let mut seen = BTreeSet::new();
    known
        .chain(present.map(String::as_str))
        .filter(move |n| seen.insert(*n))
}

/// The text being written.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.0, " {value}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.0.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.0.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(k);
            self.0.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.0.push_str("\\\\"),
                    '"' => self.0.push_str("\\\""),
                    '\n' => self.0.push_str("\\n"),
                    c => self.0.push(c),
                }
            }
            self.0.push('"');
        }
        self.0.push('}');
    }
}

/// A parsed exposition, for tests here and in the end-to-end tests. It reads what [`render`]
/// writes (no timestamps); it is not a general parser.
#[doc(hidden)]
pub mod parse {
    use std::collections::BTreeMap;

    /// One series: its name and its labels in order.
    pub type Key = (String, Vec<(String, String)>);

    /// The samples of `text`, and the names of the families it declares with `# TYPE`.
    /// Panics with the line on anything it cannot read.
    pub fn samples(text: &str) -> (BTreeMap<Key, f64>, Vec<String>) {
        let mut samples = BTreeMap::new();
        let mut families = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                families.push(rest.split(' ').next().unwrap_or_default().to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name.to_string(), labels(rest, line)),
                None => (series.to_string(), Vec::new()),
            };
            samples.insert((name, labels), value);
        }
        (samples, families)
    }

    /// `k="v",k2="v2"}` with `\\`, `\"` and `\n` escapes in the values.
    fn labels(text: &str, line: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut chars = text.chars();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.is_empty() || key == "}" {
                return out;
            }
            assert_eq!(chars.next(), Some('"'), "label {key} not quoted: {line}");
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => panic!("cut escape: {line}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value: {line}"),
                }
            }
            out.push((key.trim_start_matches(',').to_string(), value));
            match chars.next() {
                Some(',') => {}
                Some('}') => return out,
                other => panic!("unexpected {other:?} after label: {line}"),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::parse::{samples, Key};
    use super::*;
    use crate::config::DataplaneConfig;
    use crate::stats::report::{
        FastPathStats, OutputStats, RelayInfo, Tunables, WorkerStats, STATS_SCHEMA, STATS_VERSION,
    };

    /// A report in which every counter has its own value, so a metric that reads the wrong
    /// field shows.
    pub(crate) fn sample_report() -> StatsReport {
        let next = std::cell::Cell::new(100u64);
        let n = || {
            next.set(next.get() + 7);
            next.get()
        };
        let worker = |id: u32| {
            let mut c = WorkerCounters {
                rx_frames: n(),
                rx: n(),
                rx_bytes: n(),
                kernel_drops: n(),
                kernel_drop_frames: n(),
                kernel_drops_unsettled_frames: n(),
                rx_overflow: n(),
                rx_overflow_frames: n(),
                handed_over: n(),
                matched_bytes: n(),
                filtered: n(),
                no_match: n(),
                matched: n(),
                buf_exhaust: n(),
                tx_sent: n(),
                tx_bytes: n(),
                tx_syscalls: n(),
                in_flight: n(),
                ..Default::default()
            };
            c.malformed_by_kind.insert("fragment".into(), n());
            c.malformed_by_kind.insert("bad_udp_checksum".into(), n());
            c.malformed = c.malformed_by_kind.values().sum();
            c.tx_errors_by_errno.insert("ENOBUFS".into(), n());
            c.tx_errors_by_errno.insert("other".into(), n());
            c.tx_errors = c.tx_errors_by_errno.values().sum();
            WorkerStats {
                id,
                cpu: Some(id + 2),
                counters: c,
                perf: PerfCounters {
                    task_clock_ns: Some(1_500_000_000 + n()),
                    context_switches: Some(n()),
                    cpu_migrations: Some(n()),
                    page_faults: Some(n()),
                    cycles: Some(n()),
                    instructions: Some(n()),
                    cache_misses: Some(n()),
                    branch_misses: Some(n()),
                },
            }
        };
        let workers = vec![worker(0), worker(1)];
        let mut totals = WorkerCounters::default();
        for w in &workers {
            crate::stats::collect::add_into(&mut totals, &w.counters);
        }
        let output = |dest: &str| OutputStats {
            output: dest.into(),
            ttl: 16,
            matched: n(),
            tx_sent: n(),
            tx_bytes: n(),
            tx_errors: n(),
            buf_exhaust: n(),
            in_flight: n(),
            path: "userspace".into(),
        };
        let flows = vec![FlowStats {
            rule: "cam\"1".into(),
            input_interface: "eth0".into(),
            group: "239.1.1.1".into(),
            port: 5000,
            source: Some("10.1.1.50".into()),
            packets: n(),
            bytes: n(),
            below_min_ttl: n(),
            outputs: vec![output("239.2.2.2:6000@eth1"), output("10.9.9.9:7000@eth2")],
            path: "userspace".into(),
            path_reason: None,
            monitor: Some(MonitorStats {
                kind: "rtp".into(),
                datagrams: n(),
                foreign: n(),
                gaps: n(),
                lost: n(),
                repeats: n(),
            }),
        }];
        StatsReport {
            schema: STATS_SCHEMA.into(),
            version: STATS_VERSION,
            minor_version: 0,
            timestamp_ns: 1_700_000_000_000_000_000,
            uptime_ns: 12_500_000_000,
            final_report: false,
            relay: RelayInfo {
                version: "0.1.0".into(),
                revision: "1a2b3c4d5e6f".into(),
                pid: 42,
                config_path: None,
                tunables: Tunables::from_serialize(&DataplaneConfig::default()).unwrap(),
                gso_egress: true,
                interface_changes: n(),
            },
            totals,
            workers,
            flows,
            fast_path: None,
        }
    }

    /// Where a JSON number is in the report, with the labels its metric sample carries.
    #[derive(Default, Clone)]
    struct Place {
        /// The path with array indices and map keys replaced by `[]` and `*`.
        pattern: String,
        labels: Vec<(String, String)>,
    }

    /// Every number in `v`, with its place.
    fn numbers(v: &Value, place: Place, out: &mut Vec<(Place, f64)>) {
        let child = |place: &Place, seg: &str| Place {
            pattern: if place.pattern.is_empty() {
                seg.to_string()
            } else {
                format!("{}.{seg}", place.pattern)
            },
            labels: place.labels.clone(),
        };
        match v {
            Value::Number(x) => out.push((place, x.as_f64().unwrap())),
            Value::Object(map) => {
                let is_map_of_counts =
                    place.pattern.ends_with("_by_kind") || place.pattern.ends_with("_by_errno");
                for (k, v) in map {
                    let mut p = if is_map_of_counts {
                        child(&place, "*")
                    } else {
                        child(&place, k)
                    };
                    if place.pattern.ends_with("malformed_by_kind") {
                        p.labels.push(("kind".into(), k.clone()));
                    } else if place.pattern.ends_with("tx_errors_by_errno") {
                        p.labels.push(("errno".into(), k.clone()));
                    }
                    numbers(v, p, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    let mut p = Place {
                        pattern: format!("{}[]", place.pattern),
                        labels: place.labels.clone(),
                    };
                    let label = |key: &str| {
                        item.get(key).map(|v| match v {
                            Value::String(s) => s.clone(),
                            v => v.to_string(),
                        })
                    };
                    match place.pattern.as_str() {
                        "workers" => p.labels.push(("worker".into(), label("id").unwrap())),
                        "flows" => p.labels.push(("flow".into(), label("rule").unwrap())),
                        "flows[].outputs" => {
                            p.labels.push(("output".into(), label("output").unwrap()))
                        }
                        _ => {}
                    }
                    numbers(item, p, out);
                }
            }
            _ => {}
        }
    }

    /// How a JSON number shows in the exposition.
    enum Expect {
        /// The sample of this metric with the place's labels, times a scale.
        Sample(&'static str, f64),
        /// The sum of this metric's samples that have the place's labels (and any others).
        Sum(&'static str),
        /// Not a count: identity or settings (shown as labels, or not at all).
        NotACounter,
    }

    fn expect(pattern: &str) -> Option<Expect> {
        use Expect::*;
        let worker_field = |f: &str| -> Option<&'static str> {
            Some(match f {
                "rx_frames" => "mcr_rx_frames_total",
                "rx" => "mcr_rx_datagrams_total",
                "rx_bytes" => "mcr_rx_bytes_total",
                "kernel_drops" => "mcr_kernel_drops_total",
                "kernel_drop_frames" => "mcr_kernel_drop_frames_total",
                "kernel_drops_unsettled_frames" => "mcr_kernel_drops_unsettled_frames",
                "rx_overflow" => "mcr_rx_overflow_total",
                "rx_overflow_frames" => "mcr_rx_overflow_frames_total",
                "handed_over" => "mcr_handed_over_total",
                "matched_bytes" => "mcr_matched_bytes_total",
                "filtered" => "mcr_filtered_total",
                "malformed" | "malformed_by_kind.*" => "mcr_malformed_total",
                "no_match" => "mcr_no_match_total",
                "matched" => "mcr_matched_total",
                "buf_exhaust" => "mcr_buf_exhaust_total",
                "tx_sent" => "mcr_tx_sent_total",
                "tx_bytes" => "mcr_tx_bytes_total",
                "tx_errors" | "tx_errors_by_errno.*" => "mcr_tx_errors_total",
                "tx_syscalls" => "mcr_tx_syscalls_total",
                "in_flight" => "mcr_in_flight",
                _ => return None,
            })
        };
        if let Some(f) = pattern.strip_prefix("workers[].counters.") {
            let m = worker_field(f)?;
            return Some(if f == "malformed" || f == "tx_errors" {
                Sum(m)
            } else {
                Sample(m, 1.0)
            });
        }
        if let Some(f) = pattern.strip_prefix("totals.") {
            return Some(Sum(worker_field(f)?));
        }
        if let Some(f) = pattern.strip_prefix("workers[].perf.") {
            let name = match f {
                "task_clock_ns" => "mcr_worker_cpu_seconds_total".to_string(),
                f => format!("mcr_worker_{f}_total"),
            };
            let (name, _, scale, _) = PERF_COUNTERS.iter().find(|p| p.0 == name)?;
            return Some(Sample(name, *scale));
        }
        if let Some(f) = pattern.strip_prefix("flows[].monitor.") {
            let name = format!("mcr_flow_stream_{f}_total");
            return Some(Sum(STREAM_COUNTERS
                .iter()
                .map(|m| m.0)
                .find(|n| *n == name)?));
        }
        if let Some(f) = pattern.strip_prefix("flows[].outputs[].") {
            return Some(match f {
                "ttl" => Sample("mcr_output_ttl", 1.0),
                "in_flight" => Sample("mcr_output_in_flight", 1.0),
                f => Sample(
                    OUTPUT_METRICS
                        .iter()
                        .map(|m| m.0)
                        .find(|n| *n == format!("mcr_output_{f}_total"))?,
                    1.0,
                ),
            });
        }
        Some(match pattern {
            "flows[].packets" => Sample("mcr_flow_packets_total", 1.0),
            "flows[].bytes" => Sample("mcr_flow_bytes_total", 1.0),
            "flows[].below_min_ttl" => Sample("mcr_flow_below_min_ttl_total", 1.0),
            "uptime_ns" => Sample("mcr_uptime_seconds", 1e-9),
            "relay.interface_changes" => Sample("mcr_interface_changes_total", 1.0),
            "version" | "timestamp_ns" | "relay.pid" | "workers[].id" | "workers[].cpu"
            | "flows[].port" => NotACounter,
            p if p.starts_with("relay.tunables.") => NotACounter,
            _ => return None,
        })
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn every_stats_json_counter_has_its_metric_with_the_same_value() {
        let report = sample_report();
        let text = render(&report);
        let (samples, _) = samples(&text);
        let json = serde_json::to_value(&report).unwrap();
        let mut found = Vec::new();
        numbers(&json, Place::default(), &mut found);
        assert!(
            found.len() > 60,
            "the walk found only {} numbers",
            found.len()
        );
        let has_labels = |have: &[(String, String)], want: &[(String, String)]| {
            want.iter().all(|w| have.contains(w))
        };
        for (place, value) in found {
            let Some(expect) = expect(&place.pattern) else {
                panic!(
                    "stats JSON field `{}` has no Prometheus metric: export it in \
                     stats/prometheus.rs and map it in this test",
                    place.pattern
                );
            };
            match expect {
                Expect::NotACounter => {}
                Expect::Sample(metric, scale) => {
                    let key: Key = (metric.to_string(), place.labels.clone());
                    let got = *samples.get(&key).unwrap_or_else(|| {
                        panic!("no sample {metric}{:?} for `{}`", key.1, place.pattern)
                    });
                    assert!(
                        close(got, value * scale),
                        "{metric}{:?} = {got}, JSON `{}` = {value}",
                        key.1,
                        place.pattern
                    );
                }
                Expect::Sum(metric) => {
                    let sum: f64 = samples
                        .iter()
                        .filter(|((n, l), _)| n == metric && has_labels(l, &place.labels))
                        .map(|(_, v)| v)
                        .sum();
                    assert!(
                        close(sum, value),
                        "sum of {metric}{:?} = {sum}, JSON `{}` = {value}",
                        place.labels,
                        place.pattern
                    );
                }
            }
        }
    }

    #[test]
    fn every_output_has_an_info_sample_with_destination_port_and_interface_apart() {
        let report = sample_report();
        let text = render(&report);
        let (samples, _) = samples(&text);
        let mut outputs = 0;
        for f in &report.flows {
            for o in &f.outputs {
                outputs += 1;
                let (dest, rest) = o.output.split_once(':').unwrap();
                let (port, interface) = rest.split_once('@').unwrap();
                let labels: Vec<(String, String)> = [
                    ("flow", f.rule.as_str()),
                    ("output", &o.output),
                    ("dest", dest),
                    ("port", port),
                    ("interface", interface),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .to_vec();
                let key: Key = ("mcr_output_info".to_string(), labels);
                assert_eq!(samples.get(&key), Some(&1.0), "{key:?}\n{text}");
            }
        }
        assert!(outputs > 1);
        assert_eq!(
            split_output("[ff3e::1]:5000@eth1"),
            ("ff3e::1", "5000", "eth1")
        );
        assert_eq!(split_output("odd"), ("odd", "", ""));
    }

    #[test]
    fn families_have_help_and_type_and_counters_end_in_total() {
        let text = render(&sample_report());
        let mut helps = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty(), "{name} has an empty HELP");
                assert!(helps.insert(name.to_string(), ()).is_none(), "{name} twice");
            }
        }
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helps.contains_key(name), "{name} has no HELP");
                assert_eq!(
                    kind == "counter",
                    name.ends_with("_total"),
                    "{name} is a {kind}: counters and only counters end in _total"
                );
            }
        }
    }

    #[test]
    fn unmeasured_perf_counters_have_no_sample_and_label_values_are_escaped() {
        let mut r = sample_report();
        r.workers[1].perf.cycles = None;
        let text = render(&r);
        assert!(text.contains("mcr_worker_cycles_total{worker=\"0\"}"));
        assert!(!text.contains("mcr_worker_cycles_total{worker=\"1\"}"));
        assert!(text.contains("flow=\"cam\\\"1\""), "{text}");
        // Every known kind and errno is there from the start, zeros included.
        assert!(text.contains("mcr_malformed_total{worker=\"0\",kind=\"truncated\"} 0"));
        assert!(text.contains("mcr_tx_errors_total{worker=\"1\",errno=\"ENETUNREACH\"} 0"));
    }

    #[test]
    fn the_fast_path_info_names_its_hook_and_what_the_kernel_lacks() {
        let mut r = sample_report();
        r.fast_path = Some(FastPathStats {
            attach: "clsact".into(),
            missing_features: vec!["tcx".into(), "bpf_loop".into()],
            ..Default::default()
        });
        let text = render(&r);
        assert!(
            text.contains(
                "mcr_fast_path_info{attach=\"clsact\",missing_features=\"tcx,bpf_loop\"} 1"
            ),
            "{text}"
        );
    }

    /// Every PromQL expression in the dashboard (panel targets and template queries).
    fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                        _ => dashboard_queries(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_metric_the_grafana_dashboard_queries_is_exported() {
        let dashboard: Value =
            serde_json::from_str(include_str!("../../packaging/grafana-dashboard.json"))
                .expect("packaging/grafana-dashboard.json is JSON");
        let (_, families) = samples(&render(&sample_report()));
        let mut queries = Vec::new();
        dashboard_queries(&dashboard, &mut queries);
        assert!(queries.len() >= 15, "only {} queries found", queries.len());
        let mut used = BTreeSet::new();
        for q in &queries {
            let words: Vec<&str> = q
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .collect();
            // `up` is Prometheus' own series of each scrape: liveness of a relay.
            if words.first() == Some(&"up") || q.starts_with("label_values(up{") {
                used.insert("up".to_string());
                continue;
            }
            let mut names = words
                .into_iter()
                .filter(|w| w.starts_with("mcr_"))
                .peekable();
            assert!(names.peek().is_some(), "query without an mcr_ metric: {q}");
            for name in names {
                assert!(
                    families.iter().any(|f| f == name),
                    "the dashboard queries {name}, which /metrics does not export: {q}"
                );
                used.insert(name.to_string());
            }
        }
        // What the dashboard is for: liveness, rates per flow and output, drops by place, send
        // errors, the path of each rule, stream monitors, workers' CPU.
        for needed in [
            "up",
            "mcr_flow_kernel_path",
            "mcr_output_tx_errors_total",
            "mcr_flow_stream_lost_total",
            "mcr_flow_stream_gaps_total",
            "mcr_flow_packets_total",
            "mcr_output_tx_sent_total",
            "mcr_kernel_drops_total",
            "mcr_output_buf_exhaust_total",
            "mcr_tx_errors_total",
            "mcr_worker_cpu_seconds_total",
        ] {
            assert!(
                used.contains(needed),
                "the dashboard has no panel on {needed}"
            );
        }
        // Issue 23: a sum across relays hides which one lost packets; every aggregation keeps
        // the instance, and every series is selected by the job and instance variables.
        for q in queries.iter().filter(|q| !q.starts_with("label_values")) {
            for (i, _) in q.match_indices("sum") {
                assert!(
                    q[i..].starts_with("sum by (instance"),
                    "an aggregation without the instance: {q}"
                );
            }
            assert!(
                q.contains(r#"job=~"$job", instance=~"$instance""#),
                "a series not selected by job and instance: {q}"
            );
        }
        // Every panel reads the data source chosen in the dashboard's variable.
        for panel in dashboard["panels"].as_array().unwrap() {
            if panel["type"] != "row" {
                assert_eq!(
                    panel["datasource"]["uid"], "${datasource}",
                    "{}",
                    panel["title"]
                );
            }
        }
    }
}
