//! The run record: one JSON document that holds a whole benchmark run.
//!
//! A record is the analyzer's input contract (documented field by field in `analyzer/README.md`).
//! Its rule is that an unknown value stays unknown: every counter is optional and a counter the
//! source did not report is *absent*, never 0; perf-style counters additionally distinguish
//! "unavailable" (asked for, the machine could not count it) from absent (not collected).
//! Where an old log gives only a rate or a percentage, the record keeps that under `reported`
//! and the reports say the number was reported rather than computed from counters.

mod conservation;
mod kernel;
mod measured;
mod streams;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use conservation::{Conservation, Stage};
pub use kernel::{Kernel, Link, NamespaceUdp};
pub use measured::{Measured, UNAVAILABLE};
pub use streams::{MonitoredFlow, ReceivedStream, RtpLoss, StreamKind, TsLoss};

use crate::error::{from_json, read_nonempty, Error, Result};

/// Value of the `schema` field of a run record.
pub const RUN_SCHEMA: &str = "mcr.analyzer.run";
/// Value of the `version` field this analyzer writes and reads.
pub const RUN_VERSION: u32 = 1;
/// The newest `minor_version` of the run record this analyzer knows (written as absent = 0).
/// A record of a newer minor version is read without the fields added since, which are listed
/// in [`RunRecord::skipped`].
pub const RUN_MINOR_VERSION: u32 = 0;

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

    /// Reads and checks a record. The schema and version are checked before the body so that a
    /// record of another version is reported as such, not as a confusing missing field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_nonempty(path)?;
        Self::parse(path, &text)
    }

    /// Parses and checks one record's JSON text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let head = head(path, text)?;
        let record = if head.get("minor_version").is_none() {
            // The common case, a 1.0 record: straight from the text, every unknown field an
            // error naming it.
            check_schema(path, &head, RUN_SCHEMA, RUN_VERSION)?;
            from_json(path, text)?
        } else {
            let doc: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
            let (mut record, skipped): (RunRecord, _) = crate::ingest::compat::read_versioned(
                path,
                &doc,
                RUN_SCHEMA,
                RUN_VERSION,
                RUN_MINOR_VERSION,
            )?;
            record.skipped = skipped;
            record
        };
        record.validate(path)?;
        Ok(record)
    }

    /// Reads a history: a record, a directory of `*.json` records (in file-name order), or a
    /// JSON Lines file (`*.jsonl`, one record per line, as a nightly job appends them). Each
    /// record comes with the name it is shown under (`history.jsonl:3` for line 3), which is also
    /// how errors name it.
    pub fn load_many(path: &Path) -> Result<Vec<(String, RunRecord)>> {
        let mut out = Vec::new();
        Self::for_each_in(path, |name, rec| {
            out.push((name, rec));
            Ok(())
        })?;
        Ok(out)
    }

    /// [`RunRecord::load_many`] one record at a time, oldest first: a long history is never
    /// held in memory whole (a JSON Lines file is read line by line).
    pub fn for_each_in(
        path: &Path,
        mut each: impl FnMut(String, RunRecord) -> Result<()>,
    ) -> Result<()> {
        if path.is_dir() {
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::format(path, "directory holds no .json records"));
            }
            for f in &files {
                each(f.display().to_string(), Self::load(f)?)?;
            }
            return Ok(());
        }
        if path.extension().is_some_and(|x| x == "jsonl") {
            use std::io::BufRead;
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut any = false;
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| Error::io(path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                any = true;
                let name = format!("{}:{}", path.display(), i + 1);
                let rec = Self::parse(Path::new(&name), &line)?;
                each(name, rec)?;
            }
            if !any {
                return Err(Error::Empty {
                    path: path.to_path_buf(),
                });
            }
            return Ok(());
        }
        each(path.display().to_string(), Self::load(path)?)
    }

    /// The record as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("records serialize");
        text.push('\n');
        text
    }

    /// Writes [`RunRecord::to_json`] to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()).map_err(|e| Error::io(path, e))
    }

    /// Checks what serde cannot: names present, rates finite and non-negative, percentiles in range.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::field(path, "name", "must not be empty"));
        }
        if self.duration_ns == Some(0) {
            return Err(Error::field(path, "duration_ns", "must be greater than 0"));
        }
        self.check_counts(path)?;
        let rate = |field: String, v: Option<f64>| match v {
            Some(x) if !x.is_finite() || x < 0.0 => Err(Error::field(
                path,
                field,
                format!("{x} is not a non-negative rate"),
            )),
            _ => Ok(()),
        };
        if let Some(g) = &self.generator {
            rate("generator.reported_pps".into(), g.reported_pps)?;
            if g.elapsed_ns == Some(0) {
                return Err(Error::field(
                    path,
                    "generator.elapsed_ns",
                    "must be greater than 0",
                ));
            }
        }
        for (i, hop) in self.hops.iter().enumerate() {
            if hop.name.trim().is_empty() {
                return Err(Error::field(
                    path,
                    format!("hops[{i}].name"),
                    "must not be empty",
                ));
            }
            rate(format!("hops[{i}].reported.rx_pps"), hop.reported.rx_pps)?;
            rate(format!("hops[{i}].reported.tx_pps"), hop.reported.tx_pps)?;
            if let Some(p) = hop.reported.buf_exhaust_pct {
                if !(0.0..=100.0).contains(&p) {
                    return Err(Error::field(
                        path,
                        format!("hops[{i}].reported.buf_exhaust_pct"),
                        format!("{p} is not a percentage (0..=100)"),
                    ));
                }
            }
            if hop.duration_ns == Some(0) {
                return Err(Error::field(
                    path,
                    format!("hops[{i}].duration_ns"),
                    "must be greater than 0",
                ));
            }
        }
        if let Some(r) = &self.receiver {
            rate("receiver.reported_pps".into(), r.reported_pps)?;
            for (i, p) in r.latency.iter().enumerate() {
                if !(0.0..=100.0).contains(&p.percentile) {
                    return Err(Error::field(
                        path,
                        format!("receiver.latency[{i}].percentile"),
                        format!("{} is not a percentile (0..=100)", p.percentile),
                    ));
                }
            }
        }
        if let Some(x) = self.sweep.as_ref().and_then(|s| s.max_loss_ratio) {
            if !x.is_finite() || x < 0.0 {
                return Err(Error::field(
                    path,
                    "sweep.max_loss_ratio",
                    format!("{x} is not a non-negative ratio"),
                ));
            }
        }
        if let Some(h) = &self.host_cpu {
            if h.window_ns == Some(0) {
                return Err(Error::field(
                    path,
                    "host_cpu.window_ns",
                    "must be greater than 0",
                ));
            }
        }
        for (i, l) in self.kernel.links.iter().enumerate() {
            if l.from.trim().is_empty() || l.to.trim().is_empty() {
                return Err(Error::field(
                    path,
                    format!("kernel.links[{i}]"),
                    "`from` and `to` must name both ends",
                ));
            }
        }
        if let Some((i, wrong)) = self
            .conservation
            .as_ref()
            .and_then(Conservation::unbalanced_stage)
        {
            return Err(Error::field(
                path,
                format!("conservation.stages[{i}].unexplained"),
                wrong,
            ));
        }
        Ok(())
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

/// The largest packet count a record may hold: 2^53, the largest integer an `f64` holds exactly
/// (metrics are computed in `f64`), and so small that sums and differences of a record's
/// counters never overflow. 2^53 packets take 2.8 years at 100M pps; a larger value is a counter
/// that wrapped (`u64::MAX` is what `0 - 1` becomes) or was never set.
pub const MAX_COUNT: u64 = 1 << 53;

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

/// Refuses a packet count above [`MAX_COUNT`], naming its field.
fn check_count(path: &Path, field: impl FnOnce() -> String, v: Option<u64>) -> Result<()> {
    match v {
        Some(n) if n > MAX_COUNT => Err(Error::field(
            path,
            field(),
            format!(
                "{n} is not a real count (more than 2^53 = {MAX_COUNT}): the producer's counter wrapped{}",
                if n == u64::MAX { " (u64::MAX is 0 - 1)" } else { "" }
            ),
        )),
        _ => Ok(()),
    }
}

impl RunRecord {
    /// Refuses any packet count above [`MAX_COUNT`], so that no sum or difference of counters
    /// computed from the record can wrap.
    fn check_counts(&self, path: &Path) -> Result<()> {
        if let Some(g) = &self.generator {
            for (name, v) in [
                ("sent", g.sent),
                ("send_errors", g.send_errors),
                ("end_markers_sent", g.end_markers_sent),
            ] {
                check_count(path, || format!("generator.{name}"), v)?;
            }
        }
        for (i, h) in self.hops.iter().enumerate() {
            for (name, v) in h.counters.named() {
                check_count(path, || format!("hops[{i}].counters.{name}"), v)?;
            }
            for (k, f) in h.streams.iter().enumerate() {
                for (name, v) in f.named() {
                    check_count(path, || format!("hops[{i}].streams[{k}].{name}"), Some(v))?;
                }
            }
            for (errno, &v) in &h.tx_errors_by_errno {
                check_count(
                    path,
                    || format!("hops[{i}].tx_errors_by_errno.{errno}"),
                    Some(v),
                )?;
            }
        }
        if let Some(r) = &self.receiver {
            for (name, v) in [
                ("received", r.received),
                ("lost", r.lost),
                ("duplicates", r.duplicates),
                ("reordered", r.reordered),
                ("late", r.late),
                ("end_markers_received", r.end_markers_received),
                ("socket_drops", r.socket_drops),
            ] {
                check_count(path, || format!("receiver.{name}"), v)?;
            }
            for (k, st) in r.streams.iter().enumerate() {
                for (name, v) in st.named() {
                    check_count(path, || format!("receiver.streams[{k}].{name}"), Some(v))?;
                }
            }
        }
        for (i, l) in self.kernel.links.iter().enumerate() {
            for (name, v) in [
                ("tx_packets", l.tx_packets),
                ("tx_dropped", l.tx_dropped),
                ("rx_packets", l.rx_packets),
                ("rx_dropped", l.rx_dropped),
            ] {
                check_count(path, || format!("kernel.links[{i}].{name}"), v)?;
            }
        }
        for (i, n) in self.kernel.namespaces.iter().enumerate() {
            for (name, v) in [
                ("in_errors", n.in_errors),
                ("rcvbuf_errors", n.rcvbuf_errors),
                ("sndbuf_errors", n.sndbuf_errors),
            ] {
                check_count(path, || format!("kernel.namespaces[{i}].{name}"), v)?;
            }
        }
        check_count(
            path,
            || "kernel.softnet_dropped".into(),
            self.kernel.softnet_dropped,
        )?;
        if let Some(c) = &self.conservation {
            for (i, st) in c.stages.iter().enumerate() {
                for (name, v) in [("in", st.input), ("dropped", st.dropped), ("out", st.out)] {
                    check_count(path, || format!("conservation.stages[{i}].{name}"), Some(v))?;
                }
            }
        }
        Ok(())
    }
}

/// The `schema` and `version` of a JSON document, without building the rest of it (a long
/// history is parsed once, not twice).
fn head(path: &Path, text: &str) -> Result<serde_json::Value> {
    #[derive(Deserialize)]
    struct Head {
        schema: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
        minor_version: Option<serde_json::Value>,
    }
    let syntax = |e: serde_json::Error| Error::format(path, format!("not valid JSON: {e}"));
    match serde_json::from_str::<Head>(text) {
        Ok(h) => {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("schema", h.schema),
                ("version", h.version),
                ("minor_version", h.minor_version),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Ok(serde_json::Value::Object(m))
        }
        Err(e) if e.is_syntax() || e.is_eof() => Err(syntax(e)),
        // Not an object: let the whole document say what it is.
        Err(_) => serde_json::from_str(text).map_err(syntax),
    }
}

/// Checks the `schema` and `version` fields of any producer's JSON document.
pub fn check_schema(
    path: &Path,
    doc: &serde_json::Value,
    schema: &str,
    version: u32,
) -> Result<()> {
    let found = doc
        .get("schema")
        .ok_or_else(|| Error::field(path, "schema", format!("missing (expected \"{schema}\")")))?;
    if found.as_str() != Some(schema) {
        return Err(Error::field(
            path,
            "schema",
            format!("is {found}, expected \"{schema}\""),
        ));
    }
    let v = doc
        .get("version")
        .ok_or_else(|| Error::field(path, "version", "missing"))?;
    match v.as_u64() {
        Some(found) if found == u64::from(version) => Ok(()),
        // A newer major version may mean other things by the same fields: reading it with
        // these types could be silently wrong, so it is refused, never guessed at.
        Some(found) if found > u64::from(version) => Err(Error::field(
            path,
            "version",
            format!(
                "{schema} version {found} is newer than this analyzer reads (version \
                 {version}): a new major version changes what fields mean; use an analyzer \
                 built from the same release as the tool that wrote the file"
            ),
        )),
        _ => Err(Error::field(
            path,
            "version",
            format!(
                "{schema} version {v} is not supported (this analyzer reads version {version})"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn round_trip_keeps_absent_counters_absent() {
        let mut r = RunRecord::new("x");
        r.hops.push(Hop {
            name: "MCR-1".into(),
            counters: HopCounters {
                rx: Some(10),
                tx_sent: Some(0),
                ..Default::default()
            },
            ..Default::default()
        });
        let f = tempfile::NamedTempFile::new().unwrap();
        r.save(f.path()).unwrap();
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(text.contains("\"tx_sent\": 0"));
        assert!(!text.contains("buf_exhaust"), "absent must not become 0");
        assert_eq!(RunRecord::load(f.path()).unwrap(), r);
    }

    #[test]
    fn wrong_version_names_the_field() {
        let f = write(r#"{"schema":"mcr.analyzer.run","version":2,"name":"x"}"#);
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("field `version`") && e.contains("version 2"),
            "{e}"
        );
    }

    #[test]
    fn wrong_schema_names_the_field() {
        let f = write(r#"{"schema":"mcr.relay.stats","version":1,"name":"x"}"#);
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("field `schema`"), "{e}");
    }

    #[test]
    fn counter_that_is_not_a_number_names_its_path() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x",
                "hops":[{"name":"MCR-1","counters":{"rx":"lots"}}]}"#,
        );
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("hops[0].counters.rx"), "{e}");
        assert!(e.contains(&f.path().display().to_string()), "{e}");
    }

    #[test]
    fn stream_checks_round_trip_and_a_wrapped_count_is_named() {
        let flow = r#"{"rule":"camera","input":"239.1.1.1:5000","outputs":["239.1.1.1:5000"],
            "kind":"mpegts","datagrams":6313,"foreign":0,"gaps":38,"lost":LOST,"repeats":0,
            "dropped":0}"#;
        let stream = r#"{"group":"239.1.1.1:5000","format":"rtp","id":7,"datagrams":6154,
            "rtp":{"lost":47,"duplicates":0,"reordered":0},
            "mpegts":{"continuity_errors":49,"lost_ts_packets":329,"duplicate_ts_packets":0,
                "transport_errors":0}}"#;
        let text = |lost: &str| {
            format!(
                r#"{{"schema":"mcr.analyzer.run","version":1,"name":"x",
                "hops":[{{"name":"MCR-1","streams":[{}]}}],"receiver":{{"streams":[{stream}]}}}}"#,
                flow.replace("LOST", lost)
            )
        };
        let f = write(&text("266"));
        let r = RunRecord::load(f.path()).unwrap();
        assert_eq!(r.hops[0].streams[0].kind, StreamKind::Mpegts);
        let again = write(&r.to_json());
        assert_eq!(RunRecord::load(again.path()).unwrap(), r);
        let f = write(&text(&u64::MAX.to_string()));
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("hops[0].streams[0].lost") && e.contains("wrapped"),
            "{e}"
        );
    }

    #[test]
    fn missing_required_field_is_named() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x","hops":[{"counters":{}}]}"#,
        );
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("hops[0]") && e.contains("name"), "{e}");
    }

    #[test]
    fn history_as_json_lines_names_the_bad_line() {
        let good = r#"{"schema":"mcr.analyzer.run","version":1,"name":"a"}"#;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.jsonl");
        std::fs::write(&p, format!("{good}\n\n{good}\n")).unwrap();
        assert_eq!(RunRecord::load_many(&p).unwrap().len(), 2);
        std::fs::write(
            &p,
            format!("{good}\n{{\"schema\":\"mcr.analyzer.run\",\"version\":3}}\n"),
        )
        .unwrap();
        let e = RunRecord::load_many(&p).unwrap_err().to_string();
        assert!(
            e.contains("history.jsonl:2") && e.contains("version"),
            "{e}"
        );
        std::fs::write(dir.path().join("b.json"), good).unwrap();
        std::fs::write(dir.path().join("a.json"), good).unwrap();
        let v = RunRecord::load_many(dir.path()).unwrap();
        assert!(v[0].0.ends_with("a.json") && v[1].0.ends_with("b.json"));
    }

    #[test]
    fn empty_file_is_an_error() {
        let f = write("  \n");
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn negative_reported_rate_is_rejected() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x",
                "hops":[{"name":"a","reported":{"rx_pps":-1}}]}"#,
        );
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("hops[0].reported.rx_pps"), "{e}");
    }

    #[test]
    fn record_without_the_new_sections_still_loads() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"old",
                "host_cpu":{"busy_ns":5},"generator":{"sent":1}}"#,
        );
        let r = RunRecord::load(f.path()).unwrap();
        assert!(r.kernel.is_empty() && r.conservation.is_none());
        assert_eq!(r.host_cpu.unwrap().window_ns, None);
        assert_eq!(r.generator.unwrap().end_markers_sent, None);
    }

    #[test]
    fn kernel_and_conservation_round_trip_with_absent_counters_absent() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x",
                "kernel":{"links":[{"from":"a:out0","to":"b:in0","tx_packets":5}],
                          "namespaces":[{"name":"b","in_errors":0}],"softnet_dropped":0},
                "conservation":{"ok":true,"stages":[{"name":"s","in":5,"dropped":1,"out":4,"unexplained":0}]},
                "host_cpu":{"busy_ns":1,"window_ns":2,"other_processes_ns":0,"method":"m"}}"#,
        );
        let r = RunRecord::load(f.path()).unwrap();
        assert_eq!(r.kernel.links[0].rx_dropped, None);
        assert_eq!(r.kernel.namespaces[0].in_errors, Some(0));
        let out = tempfile::NamedTempFile::new().unwrap();
        r.save(out.path()).unwrap();
        let text = std::fs::read_to_string(out.path()).unwrap();
        assert!(!text.contains("rx_dropped") && !text.contains("rcvbuf_errors"));
        assert_eq!(RunRecord::load(out.path()).unwrap(), r);
    }

    #[test]
    fn bad_kernel_conservation_or_host_values_name_the_field() {
        let case = |body: &str, field: &str| {
            let f = write(&format!(
                r#"{{"schema":"mcr.analyzer.run","version":1,"name":"x",{body}}}"#
            ));
            let e = RunRecord::load(f.path()).unwrap_err().to_string();
            assert!(
                e.contains(field) && e.contains(&f.path().display().to_string()),
                "{field}: {e}"
            );
        };
        case(
            r#""kernel":{"links":[{"from":"a","to":"b","tx_dropped":"x"}]}"#,
            "kernel.links[0].tx_dropped",
        );
        case(r#""kernel":{"links":[{"from":"a"}]}"#, "kernel.links[0]");
        case(
            r#""kernel":{"links":[{"from":"a","to":" "}]}"#,
            "kernel.links[0]",
        );
        case(
            r#""kernel":{"softnet_dropped":-1}"#,
            "kernel.softnet_dropped",
        );
        case(
            r#""conservation":{"ok":true,"stages":[{"name":"s","in":5,"dropped":1,"out":4,"unexplained":2}]}"#,
            "conservation.stages[0].unexplained",
        );
        case(r#""conservation":{"stages":[]}"#, "conservation");
        case(r#""host_cpu":{"window_ns":0}"#, "host_cpu.window_ns");
        case(r#""host_cpu":{"method":7}"#, "host_cpu.method");
        case(
            r#""receiver":{"end_markers_received":1.5}"#,
            "receiver.end_markers_received",
        );
    }

    /// Issue 19: a run record with `minor_version` was refused ("unknown field
    /// `minor_version`"). A known minor version reads as before (an unknown field is still an
    /// error naming it); a newer one is read without its new fields, which are listed.
    #[test]
    fn a_record_with_a_minor_version_is_read_and_names_what_it_skipped() {
        let p = Path::new("r.json");
        let known = r#"{"schema":"mcr.analyzer.run","version":1,"minor_version":0,"name":"a",
            "hops":[{"name":"MCR-1","counters":{"rx":5}}]}"#;
        let r = RunRecord::parse(p, known).unwrap();
        assert_eq!((r.hops[0].counters.rx, r.skipped.len()), (Some(5), 0));

        let typo = known.replace(r#""rx":5"#, r#""rx":5,"rx_fames":1"#);
        let e = RunRecord::parse(p, &typo).unwrap_err().to_string();
        assert!(e.contains("hops[0].counters.rx_fames"), "{e}");
        assert!(e.contains("unknown field"), "{e}");

        let newer = typo
            .replace(r#""minor_version":0"#, r#""minor_version":3"#)
            .replace(r#""name":"a","#, r#""name":"a","dashboard":{"url":"x"},"#);
        let r = RunRecord::parse(p, &newer).unwrap();
        assert_eq!(r.hops[0].counters.rx, Some(5));
        assert_eq!(r.skipped, ["dashboard", "hops[0].counters.rx_fames"]);
        // Still refused: a wrong type, and a newer major version.
        let wrong = newer.replace(r#""rx":5"#, r#""rx":"five""#);
        let e = RunRecord::parse(p, &wrong).unwrap_err().to_string();
        assert!(e.contains("hops[0].counters.rx"), "{e}");
        let major = newer.replace(r#""version":1"#, r#""version":2"#);
        let e = RunRecord::parse(p, &major).unwrap_err().to_string();
        assert!(e.contains("newer"), "{e}");
        // Written back, the record is a 1.0 record without the skipped fields.
        let again = RunRecord::parse(p, &serde_json::to_string(&r).unwrap()).unwrap();
        assert!(again.skipped.is_empty());
    }

    /// Issue 19: NaN and infinite values are refused with the record and the field, wherever
    /// a record can hold a float (text ingest parses `p_nan` or a 400-digit number to them).
    #[test]
    fn nan_and_infinite_values_are_refused_naming_the_field() {
        let p = Path::new("night.json");
        let mut r = RunRecord::new("n");
        r.receiver = Some(Receiver {
            reported_pps: Some(f64::INFINITY),
            ..Default::default()
        });
        let e = r.validate(p).unwrap_err().to_string();
        assert!(
            e.contains("night.json") && e.contains("receiver.reported_pps"),
            "{e}"
        );
        r.receiver = Some(Receiver {
            latency: vec![Percentile {
                percentile: f64::NAN,
                latency_ns: 5,
            }],
            ..Default::default()
        });
        let e = r.validate(p).unwrap_err().to_string();
        assert!(e.contains("receiver.latency[0].percentile"), "{e}");
        r.receiver = None;
        r.sweep = Some(Sweep {
            max_loss_ratio: Some(f64::NAN),
            ..Default::default()
        });
        let e = r.validate(p).unwrap_err().to_string();
        assert!(e.contains("sweep.max_loss_ratio"), "{e}");
        r.sweep = None;
        r.hops.push(Hop {
            name: "MCR-1".into(),
            ..Default::default()
        });
        r.hops[0].reported.tx_pps = Some(f64::NEG_INFINITY);
        let e = r.validate(p).unwrap_err().to_string();
        assert!(e.contains("hops[0].reported.tx_pps"), "{e}");
    }
}
