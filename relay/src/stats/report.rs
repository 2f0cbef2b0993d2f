//! The stats report: what `mcrctl stats --json` prints and `mcrd --final-stats FILE` writes.
//!
//! This is a documented contract (see `relay/README.md`, "Stats JSON"). The analyzer reads it
//! with these same types, so a field cannot drift between writer and reader; it is built
//! without the `daemon` feature, so it depends on serde and serde_json only.
//!
//! Versions: [`STATS_VERSION`] is the major version, bumped when a meaning changes or a field
//! goes (readers refuse a newer one); [`STATS_MINOR_VERSION`] is bumped when a field is added
//! (with `#[serde(default)]`, so older files still load). The types accept unknown fields, so
//! that an older reader can load a newer minor version; a reader that wants to catch typos
//! compares the fields it ignored with the file's minor version (the analyzer does).
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

/// Number of [`PerfCounters`] fields.
pub const PERF_COUNT: usize = 8;
/// The fields of [`PerfCounters`], in the order the workers count them.
pub const PERF_NAMES: [&str; PERF_COUNT] = [
    "task_clock_ns",
    "context_switches",
    "cpu_migrations",
    "page_faults",
    "cycles",
    "instructions",
    "cache_misses",
    "branch_misses",
];

/// Value of the `schema` field.
pub const STATS_SCHEMA: &str = "mcr.relay.stats";
/// Value of the `version` field: the major version.
pub const STATS_VERSION: u32 = 1;
/// Value of the `minor_version` field (absent when 0, as in files written before it existed).
/// 1: `relay.revision`; 2: `fast_path.attach` and `fast_path.missing_features`; 3: counters'
/// `handed_over`; 4: counters' `matched_bytes`; 5: `fast_path.passed_extension_headers`;
/// 6: flows' `below_min_ttl`; 7: counters' `kernel_drops` in datagrams, with
/// `kernel_drop_frames` and `kernel_drops_unsettled_frames`.
pub const STATS_MINOR_VERSION: u32 = 7;

/// One snapshot of a running (or just stopped) relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub schema: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor_version: u32,
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
/// `kernel_mtu` (larger than the output's MTU), `kernel_redirect` (a clone could not be
/// sent), `kernel_rewrite`, `kernel_nodev` (the output's interface was deleted)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FastPathStats {
    pub program_id: u32,
    /// Instructions the verifier processed to accept the program.
    pub verified_insns: u32,
    /// The hook the program is attached with: `tcx`, or `clsact` (a qdisc filter, where the
    /// kernel has no tcx or the config asks for it). Minor version 2; empty in older reports.
    #[serde(default)]
    pub attach: String,
    /// Optional kernel features the kernel lacks, which the program does without (`tcx`,
    /// `bpf_loop`; relay/README.md, "Kernel versions", says what each costs). Minor version 2.
    #[serde(default)]
    pub missing_features: Vec<String>,
    /// Input interfaces the program is attached to.
    pub interfaces: Vec<String>,
    pub counters: WorkerCounters,
    /// Frames to any destination that the program left to the stack, where the userspace
    /// path sees them if their input has a packet socket (a rule on it runs in userspace), and
    /// counts those of its groups as malformed.
    pub passed_ip_options: u64,
    pub passed_fragments: u64,
    /// IPv6 frames with extension headers (userspace walks the chain). Minor version 5.
    #[serde(default)]
    pub passed_extension_headers: u64,
}

/// The path of flows in reports that predate the fast path.
fn userspace() -> String {
    "userspace".to_string()
}

/// Static facts about the relay process that produced a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// `CARGO_PKG_VERSION` of mcrd.
    pub version: String,
    /// The commit mcrd was built from (`-dirty` when the tree had changes, `unknown` outside
    /// a git checkout). Minor version 1; empty in older reports.
    #[serde(default)]
    pub revision: String,
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

/// Data-plane tunables as configured (`[dataplane]` in the config file): each key's name and
/// value, in the config's order. A map rather than the config type, so that a new config key
/// is a new entry and not a new stats format that older readers refuse.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tunables(Vec<(String, serde_json::Value)>);

impl Tunables {
    /// The fields of a serializable config struct, in its serialization order.
    pub fn from_serialize<T: Serialize>(config: &T) -> Result<Self, serde_json::Error> {
        // Through text rather than `serde_json::Value`: its map is sorted and would lose the
        // config's order (`preserve_order` would change every other map of the workspace).
        let text = serde_json::to_string(config)?;
        serde_json::from_str(&text)
    }

    /// The value of tunable `name`.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Every tunable, in the order of the file.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl Serialize for Tunables {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Tunables {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapInOrder;
        impl<'de> serde::de::Visitor<'de> for MapInOrder {
            type Value = Tunables;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of tunable names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Tunables, A::Error> {
                let mut entries: Vec<(String, serde_json::Value)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if entries.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom(format!(
                            "tunable `{k}` appears twice"
                        )));
                    }
                    entries.push((k, v));
                }
                Ok(Tunables(entries))
            }
        }
        d.deserialize_map(MapInOrder)
    }
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// Per-worker counters. All counts are since start; they never reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounters {
    /// Frames taken from the kernel's packet ring.
    pub rx_frames: u64,
    /// Datagrams taken in: one per frame, or the number of datagrams a GSO/GRO frame was split into.
    pub rx: u64,
    /// Bytes of the frames taken from the kernel (link layer included).
    pub rx_bytes: u64,
    /// Datagrams in the frames the kernel dropped on our packet sockets because the ring was
    /// full, before we saw them (a GSO/GRO super-frame counts once per datagram it carried).
    ///
    /// The kernel counts these drops in frames (`kernel_drop_frames`); the datagrams are
    /// counted by the socket's filter, which sees each frame's segment count before the ring
    /// can drop it, less the datagrams read, once nothing is on its way between the two
    /// (`relay/README.md`, "Counters"). Until then a dropped frame counts as one datagram
    /// (`kernel_drops_unsettled_frames` says how many), so this is exact when that is 0 and
    /// a lower bound otherwise; it never goes back. Before minor version 7 this field
    /// counted frames.
    pub kernel_drops: u64,
    /// Frames the kernel dropped at a full ring (`tp_drops` of `PACKET_STATISTICS`).
    /// Minor version 7.
    #[serde(default)]
    pub kernel_drop_frames: u64,
    /// Dropped frames whose datagrams are not known (yet): each is in `kernel_drops` as one.
    /// Non-zero during a sustained overload (settled when the ring drains) and where mcrd
    /// may not load BPF (never settled; it says so in its log). Minor version 7.
    #[serde(default)]
    pub kernel_drops_unsettled_frames: u64,
    /// Datagrams lost to overload on the copy path: a frame too big for a ring slot arrived
    /// while the packet socket's receive queue was full, so the kernel kept only its head.
    /// Counted from the GSO size of a super-frame (one per frame when it cannot be told).
    /// Like `kernel_drops`, outside `rx`.
    #[serde(default)]
    pub rx_overflow: u64,
    /// The frames of `rx_overflow` (each is also in `rx_frames`).
    #[serde(default)]
    pub rx_overflow_frames: u64,
    /// Datagrams of a flow changing path that this side took in and left to the other,
    /// because their receive timestamp is on the other side's side of the switch's cutoff
    /// (`relay/README.md`, "Kernel fast path"): the other side forwards and counts them.
    /// Outside `rx` (each is also in `rx_frames` on the workers). In `fast_path.counters`:
    /// frames the program left to the workers. Minor version 3.
    #[serde(default)]
    pub handed_over: u64,
    /// Well-formed frames that are not UDP over IPv4 or IPv6, and datagrams below their
    /// rule's `min_ttl` (counted by flow in `flows[].below_min_ttl`).
    pub filtered: u64,
    /// Datagrams rejected as malformed (sum of `malformed_by_kind`).
    pub malformed: u64,
    pub malformed_by_kind: BTreeMap<String, u64>,
    /// Valid IPv4/UDP datagrams that no rule matched.
    pub no_match: u64,
    /// Datagrams that matched a rule (counted once, however many outputs the rule has).
    pub matched: u64,
    /// UDP payload bytes of `matched`: the unit of `tx_bytes`, so that what came in and what
    /// went out compare (`rx_bytes` counts whole frames, link layer included, as interface
    /// counters do). Minor version 4.
    #[serde(default)]
    pub matched_bytes: u64,
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
    /// Datagrams to this rule's group and port that arrived with a TTL (IPv6: hop limit)
    /// below its `min_ttl`: not forwarded, not in `packets`, and in the workers'
    /// `filtered`. Absent when 0 (minor version 6).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub below_min_ttl: u64,
    /// `"kernel"` or `"userspace"`: the path forwarding the flow now (its counts include
    /// both paths' since start); `"waiting"` when neither forwards it (its input is gone, or
    /// another mcrd's fast path holds it), with the reason.
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

/// The JSON spelling of a counter that could not be measured.
pub const UNAVAILABLE: &str = "unavailable";

/// A perf-event style counter that was either measured or could not be measured on this
/// machine: the one type for it in all three crates (trafficgen calls it `PerfValue`).
///
/// "unavailable" is not zero: a zero would claim the event never happened. In JSON a count is
/// a number and `Unavailable` the string [`UNAVAILABLE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Measured {
    /// The counter was read.
    Count(u64),
    /// The counter was asked for but the machine could not provide it (e.g. no PMU in a VM).
    #[default]
    Unavailable,
}

impl Measured {
    /// The count, if measured.
    pub fn count(self) -> Option<u64> {
        match self {
            Measured::Count(n) => Some(n),
            Measured::Unavailable => None,
        }
    }

    /// From the `Option<u64>` convention of [`PerfCounters`] (`None` = unavailable).
    pub fn from_option(value: Option<u64>) -> Self {
        value.map_or(Measured::Unavailable, Measured::Count)
    }

    /// Sum of two readings of the same counter; unavailable if either side is (a partial sum
    /// would understate the total).
    pub fn plus(self, other: Measured) -> Measured {
        match (self, other) {
            (Measured::Count(a), Measured::Count(b)) => Measured::Count(a.saturating_add(b)),
            _ => Measured::Unavailable,
        }
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Measured::Count(n) => write!(f, "{n}"),
            Measured::Unavailable => f.write_str(UNAVAILABLE),
        }
    }
}

impl Serialize for Measured {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Measured::Count(n) => s.serialize_u64(*n),
            Measured::Unavailable => s.serialize_str(UNAVAILABLE),
        }
    }
}

impl<'de> Deserialize<'de> for Measured {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Number(n)) => Ok(Measured::Count(n)),
            Ok(Raw::Text(t)) if t == UNAVAILABLE => Ok(Measured::Unavailable),
            Ok(Raw::Text(t)) => Err(D::Error::custom(format!(
                "expected a count or \"{UNAVAILABLE}\", found \"{t}\""
            ))),
            Err(_) => Err(D::Error::custom(format!(
                "expected a non-negative integer count or \"{UNAVAILABLE}\""
            ))),
        }
    }
}

/// Serde adapter for the `Option<u64>` fields of [`PerfCounters`]: written and read as a
/// [`Measured`].
pub mod measured {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Measured;
    pub use super::UNAVAILABLE;

    pub fn serialize<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        Measured::from_option(*value).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Measured::deserialize(d).map(Measured::count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Config {
        workers: u32,
        cpus: Vec<u32>,
        gso: bool,
        busy_poll_us: u32,
    }

    #[test]
    fn tunables_keep_the_config_order_and_values() {
        let config = Config {
            workers: 2,
            cpus: vec![0, 1],
            gso: true,
            busy_poll_us: 0,
        };
        let t = Tunables::from_serialize(&config).unwrap();
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(
            text,
            r#"{"workers":2,"cpus":[0,1],"gso":true,"busy_poll_us":0}"#
        );
        assert_eq!(text, serde_json::to_string(&config).unwrap());
        assert_eq!(serde_json::from_str::<Tunables>(&text).unwrap(), t);
        assert_eq!(t.get("cpus"), Some(&serde_json::json!([0, 1])));
        assert_eq!(t.get("nope"), None);
    }

    #[test]
    fn a_tunable_named_twice_is_an_error_naming_it() {
        let e = serde_json::from_str::<Tunables>(r#"{"gso":true,"gso":false}"#).unwrap_err();
        assert!(e.to_string().contains("`gso` appears twice"), "{e}");
    }

    #[test]
    fn minor_version_zero_is_not_written_and_an_absent_one_reads_as_zero() {
        let mut info = serde_json::json!({"version": "0.1.0", "pid": 1, "config_path": null,
            "tunables": {"workers": 1}, "gso_egress": false});
        let relay: RelayInfo = serde_json::from_value(info.clone()).unwrap();
        info["new_field_of_a_later_minor"] = 1.into();
        assert_eq!(serde_json::from_value::<RelayInfo>(info).unwrap(), relay);
        let report = StatsReport {
            schema: STATS_SCHEMA.into(),
            version: STATS_VERSION,
            minor_version: 0,
            timestamp_ns: 0,
            uptime_ns: 0,
            final_report: false,
            relay,
            totals: WorkerCounters::default(),
            workers: Vec::new(),
            flows: Vec::new(),
            fast_path: None,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("minor_version").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<StatsReport>(json).unwrap(), report);
        let newer = StatsReport {
            minor_version: 3,
            ..report
        };
        assert_eq!(serde_json::to_value(&newer).unwrap()["minor_version"], 3);
    }

    #[test]
    fn unavailable_round_trips_and_is_not_zero() {
        let v: Vec<Measured> = serde_json::from_str(r#"[0, 5, "unavailable"]"#).unwrap();
        assert_eq!(
            v,
            [
                Measured::Count(0),
                Measured::Count(5),
                Measured::Unavailable
            ]
        );
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"[0,5,"unavailable"]"#);
        assert_eq!(Measured::Unavailable.count(), None);
        let p: PerfCounters = serde_json::from_value(serde_json::json!({"task_clock_ns": 3,
            "context_switches": 0, "cpu_migrations": 0, "page_faults": 0, "cycles": "unavailable",
            "instructions": "unavailable", "cache_misses": 1, "branch_misses": 2}))
        .unwrap();
        assert_eq!((p.task_clock_ns, p.cycles), (Some(3), None));
        assert_eq!(serde_json::to_value(&p).unwrap()["cycles"], UNAVAILABLE);
    }

    #[test]
    fn other_text_and_negative_or_fractional_numbers_are_rejected_naming_the_spelling() {
        let e = serde_json::from_str::<Measured>(r#""n/a""#).unwrap_err();
        assert!(e.to_string().contains(r#"found "n/a""#), "{e}");
        for bad in ["-3", "1.5"] {
            let e = serde_json::from_str::<Measured>(bad).unwrap_err();
            assert!(e.to_string().contains("unavailable"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_sum_is_unavailable_if_any_part_is() {
        assert_eq!(
            Measured::Count(2).plus(Measured::Count(3)),
            Measured::Count(5)
        );
        assert_eq!(
            Measured::Count(2).plus(Measured::Unavailable),
            Measured::Unavailable
        );
    }
}
