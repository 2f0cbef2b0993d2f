//! The run record's types: what a record holds, field by field (`analyzer/README.md`
//! documents each), with serde's rules for absent values. Reading and writing them is
//! `io.rs`'s job, checking what serde cannot is `validate.rs`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Conservation, Kernel, Measured, MonitoredFlow, ReceivedStream, RUN_SCHEMA, RUN_VERSION,
};

/// A free-form setting value (number, string or bool) as found in the source.
pub type Setting = serde_json::Value;

/// One benchmark run: environment, configuration, generator, each hop, receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Always [`RUN_SCHEMA`].
    pub schema: String,
    /// Always [`RUN_VERSION`].
    pub version: u32,
    /// Short label used as the column heading in reports ("After Fix").
    pub name: String,
    /// When the run was made (ISO 8601 date or date-time), shown next to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// One line on what this run is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where every number came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub configuration: Configuration,
    /// Wall-clock time the counters cover, ns. Hop rates are counter / duration unless the hop
    /// has its own `duration_ns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,
    /// Relays in pipeline order (first hop receives from the generator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<Hop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<Receiver>,
    /// CPU time of the whole host over the run (all processes, kernel work included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cpu: Option<HostCpu>,
    /// Kernel counters outside the relays: veth links, UDP per namespace, softnet drops.
    #[serde(default, skip_serializing_if = "Kernel::is_empty")]
    pub kernel: Kernel,
    /// The harness's packet-conservation check, per stage, with its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conservation: Option<Conservation>,
    /// Result of a rate search (`trafficgen sweep`), when the run was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// Fields of a newer minor version of the record that this analyzer did not read (dotted
    /// paths); never written, set when a record is read.
    #[serde(skip)]
    pub skipped: Vec<String>,
}

/// What a rate search found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Highest rate at which no trial lost a packet, packets/s; absent if even the lowest lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_loss_pps: Option<u64>,
    /// Highest rate whose loss ratio stayed at most `max_loss_ratio`, packets/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_loss_ratio_pps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_loss_ratio: Option<f64>,
    /// Trials run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<u64>,
}

/// Provenance of one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Part of the record filled from it: `generator`, `receiver`, `hop:MCR-1`, `host`, `environment`.
    pub role: String,
    /// Input format: `text`, `perf-csv`, `mcr.relay.stats/1`, `mcr.trafficgen.send/1`, `set`, `host`.
    pub format: String,
    /// Path as given to `analyzer ingest` (or `--set KEY` for a value from the command line).
    pub path: String,
    /// Fields of a newer minor version of the input's format that this analyzer does not know
    /// and so did not read (dotted paths; see `ingest/compat.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

/// The machine the run was made on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// `uname -r`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Online CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `git rev-parse HEAD` of the code under test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
    /// Relevant sysctls by name (`net.core.wmem_max`), values as read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Anything else that describes the machine (NIC offloads, VM, governor).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, String>,
}

/// What the run was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configuration {
    /// Generator parameters by name (`target_pps`, `count`, `size`, `dst`, `threads`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generator: BTreeMap<String, Setting>,
    /// Relay tunables in force on every hop unless the hop lists its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relay: BTreeMap<String, Setting>,
    /// Test harness parameters (`script`, `topology`, `hops`, `offloads`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub harness: BTreeMap<String, Setting>,
}

/// The traffic generator's side of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// Program that sent (`trafficgen`, `seed traffic_generator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Datagrams the kernel accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    /// Sends that failed (never counted in `sent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_errors: Option<u64>,
    /// End-of-stream markers sent after the data (not in `sent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_markers_sent: Option<u64>,
    /// UDP payload bytes of `sent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_bytes: Option<u64>,
    /// Bytes on the wire (Ethernet frame without preamble/FCS) of `sent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_bytes: Option<u64>,
    /// Time from first to last send, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ns: Option<u64>,
    /// Rate the tool printed, packets/s. Used only when `sent` or `elapsed_ns` is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_pps: Option<f64>,
    /// CPU time of the generator process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ProcessCpu>,
    /// perf-event counters of the generator, by event (`task_clock_ns`, `context_switches`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub perf: BTreeMap<String, Measured>,
}

/// One relay in the pipeline (MCR or any other forwarder).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hop {
    /// Name shown in reports (`MCR-1`).
    pub name: String,
    /// Implementation (`mcr`, `mcr-seed`, `socat`, `smcroute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    #[serde(default)]
    pub counters: HopCounters,
    /// Failed sends by errno name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tx_errors_by_errno: BTreeMap<String, u64>,
    /// Time this hop's counters cover, ns, when it measured its own (else the run's duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// Rates and ratios the source printed without the counters behind them.
    #[serde(default, skip_serializing_if = "Reported::is_empty")]
    pub reported: Reported,
    /// CPU time of the relay process over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ProcessCpu>,
    /// perf-event counters of the relay (summed over its workers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub perf: BTreeMap<String, Measured>,
    /// Tunables of this hop where they differ from (or are missing in) `configuration.relay`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tunables: BTreeMap<String, Setting>,
    /// The flows this hop monitored (rules with `monitor`): what it received of each stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<MonitoredFlow>,
}

/// Counters of one hop, named as in the relay's stats (relay/README.md, "Stats JSON"). All
/// optional: absent = not reported by the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopCounters {
    /// Frames taken from the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_frames: Option<u64>,
    /// Datagrams taken in (a coalesced frame counts as its datagrams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    /// Dropped by the kernel before the relay saw them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_drops: Option<u64>,
    /// Not IPv4/UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtered: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<u64>,
    /// Valid datagrams no rule matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_match: Option<u64>,
    /// Datagrams that matched a rule (once per datagram).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<u64>,
    /// Output copies to send (matched datagrams times outputs); equals `matched` without fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_copies: Option<u64>,
    /// Output copies dropped for want of a buffer or send slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buf_exhaust: Option<u64>,
    /// Output datagrams the kernel accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_sent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    /// Output datagrams whose send failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_errors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_syscalls: Option<u64>,
    /// Output datagrams still queued when the counters were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
}

/// Numbers a source printed as rates or ratios only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reported {
    /// Ingress rate, packets/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_pps: Option<f64>,
    /// Egress rate, packets/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_pps: Option<f64>,
    /// Buffer exhaustion as a percentage of received datagrams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buf_exhaust_pct: Option<f64>,
}

impl Reported {
    pub fn is_empty(&self) -> bool {
        self.rx_pps.is_none() && self.tx_pps.is_none() && self.buf_exhaust_pct.is_none()
    }
}

/// CPU time of one process, from `/proc/PID/stat` or `getrusage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessCpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_ns: Option<u64>,
}

impl ProcessCpu {
    /// user + system, when both are known.
    pub fn total_ns(&self) -> Option<u64> {
        Some(self.user_ns?.saturating_add(self.system_ns?))
    }
}

/// CPU time of the whole host over the run (deltas of `/proc/stat`), ns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softirq_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irq_ns: Option<u64>,
    /// Busy time when only a total is known (`perf stat -a` cpu-clock, or the host's busy time
    /// less other processes' as `method` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_ns: Option<u64>,
    /// Wall-clock time the host CPU figures cover, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ns: Option<u64>,
    /// CPU time of processes outside the run in the window, ns (already left out of `busy_ns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_processes_ns: Option<u64>,
    /// How `busy_ns` was measured, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl HostCpu {
    /// Busy CPU time: the sum of the parts when user and system are known, else `busy_ns`.
    /// softirq and irq are added when present (on veth they carry the forwarding work).
    pub fn total_ns(&self) -> Option<u64> {
        match (self.user_ns, self.system_ns) {
            (Some(u), Some(s)) => Some(
                u.saturating_add(s)
                    .saturating_add(self.softirq_ns.unwrap_or(0))
                    .saturating_add(self.irq_ns.unwrap_or(0)),
            ),
            _ => self.busy_ns,
        }
    }
}

/// The receiving end of the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Distinct datagrams received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// Sequence numbers never seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reordered: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<u64>,
    /// End-of-stream markers received (not in `received`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_markers_received: Option<u64>,
    /// Datagrams the receiving socket's full buffer dropped (host loss; also inside `lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_drops: Option<u64>,
    /// Time from first to last datagram, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ns: Option<u64>,
    /// Rate the tool printed, used only without `received` and `elapsed_ns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_pps: Option<f64>,
    /// One-way latency percentiles, ascending by `percentile`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<Percentile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ProcessCpu>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub perf: BTreeMap<String, Measured>,
    /// The RTP and MPEG-TS streams received (probe streams are in the counters above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<ReceivedStream>,
}

/// One point of a latency distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percentile {
    /// 0..=100 (50 = median).
    pub percentile: f64,
    pub latency_ns: u64,
}

impl RunRecord {
    /// An empty record of the current schema.
    pub fn new(name: impl Into<String>) -> Self {
        RunRecord {
            schema: RUN_SCHEMA.into(),
            version: RUN_VERSION,
            name: name.into(),
            date: None,
            description: None,
            sources: Vec::new(),
            environment: Environment::default(),
            configuration: Configuration::default(),
            duration_ns: None,
            generator: None,
            hops: Vec::new(),
            receiver: None,
            host_cpu: None,
            kernel: Kernel::default(),
            conservation: None,
            sweep: None,
            skipped: Vec::new(),
        }
    }
}

/// True when the records' hops at some position differ in name or implementation (mcrd against
/// the kernel or socat). Reports then name hops by position (`hop 1`), since one run's hop name
/// would misname the others'.
pub fn hops_differ<'a>(records: impl IntoIterator<Item = &'a RunRecord>) -> bool {
    let records: Vec<&RunRecord> = records.into_iter().collect();
    let positions = records.iter().map(|r| r.hops.len()).max().unwrap_or(0);
    (0..positions).any(|i| {
        let mut hops = records.iter().filter_map(|r| r.hops.get(i));
        let first = hops.next();
        hops.any(|h| first.is_some_and(|f| f.name != h.name || f.relay != h.relay))
    })
}

impl HopCounters {
    /// Every counter with its field name, in the order of the record.
    pub fn named(&self) -> [(&'static str, Option<u64>); 15] {
        [
            ("rx_frames", self.rx_frames),
            ("rx", self.rx),
            ("rx_bytes", self.rx_bytes),
            ("kernel_drops", self.kernel_drops),
            ("filtered", self.filtered),
            ("malformed", self.malformed),
            ("no_match", self.no_match),
            ("matched", self.matched),
            ("output_copies", self.output_copies),
            ("buf_exhaust", self.buf_exhaust),
            ("tx_sent", self.tx_sent),
            ("tx_bytes", self.tx_bytes),
            ("tx_errors", self.tx_errors),
            ("tx_syscalls", self.tx_syscalls),
            ("in_flight", self.in_flight),
        ]
    }
}
