//! The stats report: what `mcrctl stats --json` prints and `mcrd --final-stats FILE` writes.
//!
//! This is a documented contract (see `relay/README.md`, "Stats JSON"). The analyzer reads it
//! with these same types, so a field cannot drift between writer and reader. Add fields only
//! with `#[serde(default)]` and bump [`STATS_VERSION`] when a meaning changes.
//!
//! Conservation, checked by tests and by the analyzer:
//! * per worker and in the totals: `rx = filtered + malformed + no_match + matched`;
//! * per output of a flow: `matched = tx_sent + tx_errors + buf_exhaust + in_flight`
//!   (`in_flight` is zero once the daemon has drained at shutdown).
//!
//! Both hold whichever path forwards a flow: the kernel fast path's counters are added into
//! the flows, their outputs and `totals` (and shown on their own in `fast_path`), so
//! `totals` = sum of `workers` + `fast_path.counters`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The fields of [`PerfCounters`], in the order the workers count them.
pub use crate::counters::{PERF_COUNT, PERF_NAMES};

/// Value of the `schema` field.
pub const STATS_SCHEMA: &str = "mcr.relay.stats";
/// Value of the `version` field.
pub const STATS_VERSION: u32 = 1;

/// One snapshot of a running (or just stopped) relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsReport {
    pub schema: String,
    pub version: u32,
    /// Wall-clock time of the snapshot, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Nanoseconds since the data plane started.
    pub uptime_ns: u64,
    /// True in the report written after shutdown, once every send has completed.
    pub final_report: bool,
    pub relay: RelayInfo,
    /// Sum over all workers.
    pub totals: WorkerCounters,
    pub workers: Vec<WorkerStats>,
    pub flows: Vec<FlowStats>,
    /// The kernel fast path, when it is in use (absent when off or unavailable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<FastPathStats>,
}

/// What the kernel fast path did, in the workers' terms (its datagrams are `rx` and
/// `matched` when the program matches them; `tx_errors_by_errno` names its reasons
/// `kernel_mtu`, `kernel_redirect`, `kernel_rewrite`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastPathStats {
    pub program_id: u32,
    /// Instructions the verifier processed to accept the program.
    pub verified_insns: u32,
    /// Input interfaces the program is attached to.
    pub interfaces: Vec<String>,
    pub counters: WorkerCounters,
    /// Frames to any destination that the program left to the stack, where the userspace
    /// path sees them (and counts those of its groups as malformed).
    pub passed_ip_options: u64,
    pub passed_fragments: u64,
}

/// The path of flows in reports that predate the fast path.
fn userspace() -> String {
    "userspace".to_string()
}

/// Static facts about the relay process that produced a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayInfo {
    /// `CARGO_PKG_VERSION` of mcrd.
    pub version: String,
    pub pid: u32,
    pub config_path: Option<String>,
    /// Every tunable in force, so a run record can show what differed between runs.
    pub tunables: Tunables,
    /// Whether `UDP_SEGMENT` egress coalescing is in use (probed at start, may turn off at run time).
    pub gso_egress: bool,
    /// Times the rules were re-resolved because an interface they use was deleted and
    /// created again (a new interface index).
    #[serde(default)]
    pub interface_changes: u64,
}

/// Data-plane tunables, as configured (`[dataplane]` in the config file): the same type the
/// daemon runs with, so the report cannot drift from it.
pub use crate::config::DataplaneConfig as Tunables;

/// Per-worker counters. All counts are since start; they never reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerCounters {
    /// Frames taken from the kernel's packet ring.
    pub rx_frames: u64,
    /// Datagrams taken in: one per frame, or the number of datagrams a GSO/GRO frame was split into.
    pub rx: u64,
    /// Bytes of the frames taken from the kernel (link layer included).
    pub rx_bytes: u64,
    /// Frames the kernel dropped on our packet sockets before we saw them (`PACKET_STATISTICS`).
    pub kernel_drops: u64,
    /// Datagrams lost to overload on the copy path: a frame too big for a ring slot arrived
    /// while the packet socket's receive queue was full, so the kernel kept only its head.
    /// Counted from the GSO size of a super-frame (one per frame when it cannot be told).
    /// Like `kernel_drops`, outside `rx`.
    #[serde(default)]
    pub rx_overflow: u64,
    /// The frames of `rx_overflow` (each is also in `rx_frames`).
    #[serde(default)]
    pub rx_overflow_frames: u64,
    /// Well-formed datagrams that are not IPv4/UDP.
    pub filtered: u64,
    /// Datagrams rejected as malformed (sum of `malformed_by_kind`).
    pub malformed: u64,
    pub malformed_by_kind: BTreeMap<String, u64>,
    /// Valid IPv4/UDP datagrams that no rule matched.
    pub no_match: u64,
    /// Datagrams that matched a rule (counted once, however many outputs the rule has).
    pub matched: u64,
    /// Output copies dropped because no buffer or send slot was free: the one place overload drops.
    pub buf_exhaust: u64,
    /// Output datagrams the kernel accepted.
    pub tx_sent: u64,
    /// UDP payload bytes of `tx_sent`.
    pub tx_bytes: u64,
    /// Output datagrams whose send failed (sum of `tx_errors_by_errno`).
    pub tx_errors: u64,
    /// Keyed by errno name (`ENOBUFS`, `ENETUNREACH`, ...).
    pub tx_errors_by_errno: BTreeMap<String, u64>,
    /// `sendmsg` operations completed (one may carry many datagrams with GSO).
    pub tx_syscalls: u64,
    /// Output datagrams queued or submitted whose completion has not arrived yet.
    pub in_flight: u64,
}

/// One worker thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerStats {
    pub id: u32,
    /// CPU the worker is pinned to, if any.
    pub cpu: Option<u32>,
    pub counters: WorkerCounters,
    pub perf: PerfCounters,
}

/// perf-event counters of one thread. `None` (JSON `"unavailable"`) means the counter could not be
/// opened on this machine; it is never reported as zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerfCounters {
    #[serde(with = "measured")]
    pub task_clock_ns: Option<u64>,
    #[serde(with = "measured")]
    pub context_switches: Option<u64>,
    #[serde(with = "measured")]
    pub cpu_migrations: Option<u64>,
    #[serde(with = "measured")]
    pub page_faults: Option<u64>,
    #[serde(with = "measured")]
    pub cycles: Option<u64>,
    #[serde(with = "measured")]
    pub instructions: Option<u64>,
    #[serde(with = "measured")]
    pub cache_misses: Option<u64>,
    #[serde(with = "measured")]
    pub branch_misses: Option<u64>,
}

/// One rule (flow) and its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowStats {
    pub rule: String,
    pub input_interface: String,
    pub group: String,
    pub port: u16,
    pub source: Option<String>,
    /// Datagrams that matched this rule, all workers.
    pub packets: u64,
    /// UDP payload bytes of `packets`.
    pub bytes: u64,
    /// `"kernel"` or `"userspace"`: the path forwarding the flow now (its counts include
    /// both paths' since start).
    #[serde(default = "userspace")]
    pub path: String,
    /// Why the flow is not on the kernel path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_reason: Option<String>,
    pub outputs: Vec<OutputStats>,
    /// The stream check of a rule with `monitor`: what this hop received. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorStats>,
}

/// A monitored flow's stream check, all workers (see `counters/monitor.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorStats {
    /// `"rtp"` or `"mpegts"`.
    pub kind: String,
    /// Datagrams checked.
    pub datagrams: u64,
    /// Datagrams not of the monitored format.
    pub foreign: u64,
    /// RTP: sequence gaps; MPEG-TS: continuity-counter errors.
    pub gaps: u64,
    /// RTP: sequence numbers skipped; MPEG-TS: lost TS packets the counters show (a gap of k
    /// is k + 16n lost, counted as k).
    pub lost: u64,
    /// RTP: packets at or behind the highest sequence (duplicates, reordered); MPEG-TS:
    /// packets repeating their PID's counter.
    pub repeats: u64,
}

/// One output of a flow. `matched = tx_sent + tx_errors + buf_exhaust + in_flight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputStats {
    /// `ADDR:PORT@INTERFACE`.
    pub output: String,
    pub ttl: u8,
    pub matched: u64,
    pub tx_sent: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub buf_exhaust: u64,
    pub in_flight: u64,
    /// The flow's path (every output of a flow takes the same one).
    #[serde(default = "userspace")]
    pub path: String,
}

/// Serde adapter: `Some(n)` as a JSON number, `None` as the string `"unavailable"`.
pub mod measured {
    use serde::{de, Deserialize, Deserializer, Serializer};

    /// The JSON spelling of a counter that could not be measured.
    pub const UNAVAILABLE: &str = "unavailable";

    pub fn serialize<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_str(UNAVAILABLE),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Some(n)),
            Raw::Text(t) if t == UNAVAILABLE => Ok(None),
            Raw::Text(t) => Err(de::Error::custom(format!(
                "expected a count or \"{UNAVAILABLE}\", found \"{t}\""
            ))),
        }
    }
}
