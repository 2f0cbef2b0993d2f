//! The JSON records `trafficgen` writes with `--json FILE`: one per sub-command.
//!
//! These types are a contract: the analyzer deserializes them with these same types
//! (`trafficgen::record::*`), so a field cannot drift between writer and reader. Every field
//! carries its unit in its name (`_ns`, `_pps`, `_bytes`, `_ratio`). Rules for changing them:
//! add fields only (with `#[serde(default)]` so older records still load) and bump
//! [`RECORD_MINOR_VERSION`]; never rename, remove or change a meaning without bumping
//! [`RECORD_VERSION`] (the major version, which readers refuse when it is newer than theirs).
//! The types accept unknown fields, so that an older reader loads a newer minor version; the
//! analyzer still rejects a field it does not know in a record whose minor version it does
//! know, so that a typo in a hand-written record is an error, not a silently missing number.
//!
//! This module is all the crate builds without its `generator` feature: serde-level
//! dependencies only.
//!
//! Counting conventions shared by all records:
//! * a *packet* is one UDP datagram carrying a probe header (see `probe.rs`); end markers are
//!   counted apart and never as packets;
//! * `payload_bytes` are UDP payload bytes (what the application wrote, header included);
//! * `wire_bytes` are Ethernet II frame bytes without preamble, FCS or inter-frame gap:
//!   payload + 8 (UDP) + 20 (IPv4, no options) or 40 (IPv6, no extension headers) + 14
//!   (Ethernet) per packet, see [`WIRE_OVERHEAD_BYTES`] and [`WIRE_OVERHEAD_BYTES_V6`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `schema` of a [`SendRecord`].
pub const SEND_SCHEMA: &str = "mcr.trafficgen.send";
/// `schema` of a [`RecvRecord`].
pub const RECV_SCHEMA: &str = "mcr.trafficgen.recv";
/// `schema` of a [`SweepRecord`].
pub const SWEEP_SCHEMA: &str = "mcr.trafficgen.sweep";
/// `version` of all three records: the major version.
pub const RECORD_VERSION: u32 = 1;
/// `minor_version` of all three records (absent when 0, as in records written before it existed).
pub const RECORD_MINOR_VERSION: u32 = 0;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Bytes a datagram costs on an Ethernet wire beyond its UDP payload: UDP header (8) + IPv4
/// header without options (20) + Ethernet II header (14). Preamble, FCS and inter-frame gap are
/// not included, matching what a packet capture on the interface shows.
pub const WIRE_OVERHEAD_BYTES: u64 = 8 + 20 + 14;

/// [`WIRE_OVERHEAD_BYTES`] of an IPv6 datagram: its fixed header is 40 bytes.
pub const WIRE_OVERHEAD_BYTES_V6: u64 = 8 + 40 + 14;

/// What `trafficgen send` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRecord {
    /// Always [`SEND_SCHEMA`].
    pub schema: String,
    /// Always [`RECORD_VERSION`] for records written by this code.
    pub version: u32,
    /// [`RECORD_MINOR_VERSION`] for records written by this code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor_version: u32,
    /// `CARGO_PKG_VERSION` of the trafficgen that wrote the record.
    pub trafficgen_version: String,
    /// Wall-clock start of the send loop, nanoseconds since the Unix epoch.
    pub started_unix_ns: u64,
    /// The configuration the run used, after defaults were applied.
    pub config: SendConfig,
    /// Datagrams the kernel accepted (summed over threads). Never includes failed sends or end
    /// markers.
    pub packets_sent: u64,
    /// UDP payload bytes of `packets_sent`.
    pub payload_bytes: u64,
    /// Ethernet frame bytes of `packets_sent` (payload + [`WIRE_OVERHEAD_BYTES`] each, or
    /// [`WIRE_OVERHEAD_BYTES_V6`] to an IPv6 `dst`).
    pub wire_bytes: u64,
    /// Datagrams whose send failed (summed over threads). A failed datagram does not consume a
    /// sequence number, so the receiver's expected count equals `packets_sent`.
    pub send_errors: u64,
    /// `send_errors` by errno name (e.g. `"ENOBUFS"`); empty when there were none.
    pub send_errors_by_errno: BTreeMap<String, u64>,
    /// End-of-stream markers sent (each stream gets `end_marker_repeats` of them).
    pub end_markers_sent: u64,
    /// From the start of the schedule to the completion of the last data send (not including
    /// the end markers), in nanoseconds.
    pub elapsed_ns: u64,
    /// `packets_sent` / elapsed, packets per second.
    pub achieved_pps: f64,
    /// (achieved_pps - target_pps) / target_pps; `None` when the target is "as fast as
    /// possible" (`--pps 0`).
    pub rate_error_ratio: Option<f64>,
    /// `payload_bytes` * 8 / elapsed, bits per second.
    pub payload_bps: f64,
    /// `wire_bytes` * 8 / elapsed, bits per second.
    pub wire_bps: f64,
    /// Time between the starts of consecutive batch sends of one thread (all threads merged).
    pub batch_gap_ns: Distribution,
    /// Datagrams per batch send call (all threads merged).
    pub batch_packets: Distribution,
    /// How late each batch was against its schedule: the send time of the batch minus the due
    /// time of its first packet. Zero for `--pps 0`.
    pub schedule_lag_ns: Distribution,
    /// One entry per sender thread.
    pub threads: Vec<SendThreadRecord>,
    /// Perf-event counters of the sender threads, summed over threads.
    pub perf: PerfCounters,
}

/// The sender's configuration as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendConfig {
    /// Destination `ADDR:PORT` (`--dst`).
    pub dst: String,
    /// Source address the sockets were bound to (`--src`), if any.
    pub src: Option<String>,
    /// Outgoing interface (`--iface`), if any.
    pub iface: Option<String>,
    /// Target aggregate rate in packets per second over all threads; 0 = as fast as possible.
    pub target_pps: u64,
    /// Packets to send (`--count`), if the run was bounded by count.
    pub count: Option<u64>,
    /// Run length (`--duration`) in nanoseconds, if the run was bounded by time.
    pub duration_ns: Option<u64>,
    /// UDP payload size of every datagram in bytes (`--size`), probe header included.
    pub payload_size_bytes: u32,
    /// Multicast/unicast TTL (`--ttl`).
    pub ttl: u32,
    /// Sender threads (`--threads`).
    pub threads: u32,
    /// Streams (`--streams`), spread round-robin over threads.
    pub streams: u32,
    /// Batching method actually used: `"gso"` (sendmmsg of UDP_SEGMENT messages) or
    /// `"sendmmsg"` (one datagram per message).
    pub batch_mode: String,
    /// Datagrams per UDP_SEGMENT message (1 when `batch_mode` is `"sendmmsg"`).
    pub gso_segments: u32,
    /// Most datagrams one send call may carry.
    pub max_batch_packets: u32,
    /// Why GSO was not used although requested, if it was not (e.g. the kernel refused it).
    pub gso_fallback_reason: Option<String>,
    /// Times each stream's end marker is sent.
    pub end_marker_repeats: u32,
    /// SO_SNDBUF the kernel granted, in bytes.
    pub socket_sndbuf_bytes: u64,
    /// Longest a due packet waited for later ones to share its send call (`--coalesce-us`),
    /// nanoseconds. Added after version 1 was first published; 0 in older records.
    #[serde(default)]
    pub coalesce_ns: u64,
}

/// Per-thread results of a send run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendThreadRecord {
    /// 0-based thread index.
    pub thread_index: u32,
    /// Stream ids this thread sent.
    pub stream_ids: Vec<u32>,
    /// This thread's share of the target rate, packets per second (0 = as fast as possible).
    pub target_pps: u64,
    /// Datagrams the kernel accepted.
    pub packets_sent: u64,
    /// UDP payload bytes of `packets_sent`.
    pub payload_bytes: u64,
    /// Ethernet frame bytes of `packets_sent`.
    pub wire_bytes: u64,
    /// Datagrams whose send failed.
    pub send_errors: u64,
    /// Send calls made (each carries one batch).
    pub send_calls: u64,
    /// From the common start to this thread's last data send, nanoseconds.
    pub elapsed_ns: u64,
    /// `packets_sent` / `elapsed_ns`, packets per second.
    pub achieved_pps: f64,
    /// Perf-event counters of this thread.
    pub perf: PerfCounters,
}

/// Summary of a distribution of non-negative integers, in the unit its field's name gives
/// (`batch_gap_ns` is in nanoseconds, `batch_packets` in datagrams) (from an HdrHistogram with 3 significant
/// digits, so values are exact to 0.1%). All fields are 0 when `samples` is 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Number of values recorded.
    pub samples: u64,
    /// Smallest value, in the unit the enclosing field names (e.g. `_ns`).
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Perf-event counters of one or more threads (kernel and user mode). A counter the kernel
/// would not open (e.g. hardware counters on a VM) is [`PerfValue::Unavailable`], which
/// serializes as the string `"unavailable"` and never as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerfCounters {
    /// CPU time the threads ran, nanoseconds (software counter `task-clock`).
    pub task_clock_ns: PerfValue,
    /// Context switches (software).
    pub context_switches: PerfValue,
    /// Moves to another CPU (software).
    pub cpu_migrations: PerfValue,
    /// Page faults (software).
    pub page_faults: PerfValue,
    /// CPU cycles (hardware).
    pub cycles: PerfValue,
    /// Instructions retired (hardware).
    pub instructions: PerfValue,
    /// Last-level cache misses (hardware).
    pub cache_misses: PerfValue,
    /// Mispredicted branches (hardware).
    pub branch_misses: PerfValue,
}

/// One perf-event counter value: a count, or `"unavailable"` when the counter could not be
/// opened or read. The relay's contract defines it (as `Measured`), so that the three crates
/// share one spelling of "unavailable".
pub use relay::stats::report::Measured as PerfValue;

/// The string an unavailable counter serializes as.
pub use relay::stats::report::UNAVAILABLE as PERF_UNAVAILABLE;

impl PerfCounters {
    /// Field-by-field [`PerfValue::plus`].
    pub fn sum(&self, other: &PerfCounters) -> PerfCounters {
        PerfCounters {
            task_clock_ns: self.task_clock_ns.plus(other.task_clock_ns),
            context_switches: self.context_switches.plus(other.context_switches),
            cpu_migrations: self.cpu_migrations.plus(other.cpu_migrations),
            page_faults: self.page_faults.plus(other.page_faults),
            cycles: self.cycles.plus(other.cycles),
            instructions: self.instructions.plus(other.instructions),
            cache_misses: self.cache_misses.plus(other.cache_misses),
            branch_misses: self.branch_misses.plus(other.branch_misses),
        }
    }
}

/// What `trafficgen recv` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecvRecord {
    /// Always [`RECV_SCHEMA`].
    pub schema: String,
    /// Always [`RECORD_VERSION`] for records written by this code.
    pub version: u32,
    /// [`RECORD_MINOR_VERSION`] for records written by this code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor_version: u32,
    /// `CARGO_PKG_VERSION` of the trafficgen that wrote the record.
    pub trafficgen_version: String,
    /// Wall-clock time the receiver was ready (group joined), nanoseconds since the Unix epoch.
    pub started_unix_ns: u64,
    /// The configuration the run used.
    pub config: RecvConfig,
    /// From ready to exit, nanoseconds.
    pub elapsed_ns: u64,
    /// Every datagram read from the socket, whatever it contained.
    pub datagrams_received: u64,
    /// UDP payload bytes of `datagrams_received`.
    pub datagram_bytes: u64,
    /// Datagrams that did not start with the probe magic (someone else's traffic).
    pub foreign_datagrams: u64,
    /// Datagrams with the probe magic that failed validation, by reason (e.g.
    /// `"unsupported_version"`, `"truncated"`, `"length_mismatch"`).
    pub malformed_datagrams: BTreeMap<String, u64>,
    /// Datagrams from streams beyond the receiver's stream limit (`max_streams`), not accounted.
    pub untracked_stream_datagrams: u64,
    /// Datagrams the kernel dropped at this socket because its receive buffer was full, from
    /// `SO_RXQ_OVFL` (the last value the kernel reported alongside a datagram). This is host
    /// loss, not network loss; it is also inside the streams' `lost`.
    pub socket_drops: u64,
    /// Increase of `Udp: RcvbufErrors` in `/proc/net/snmp` over the run: buffer drops of every
    /// UDP socket in this network namespace, not only ours. `None` if unreadable.
    pub udp_rcvbuf_errors_netns: Option<u64>,
    /// Sum of the per-stream counters.
    pub totals: StreamCounters,
    /// One entry per stream seen, ordered by stream id.
    pub streams: Vec<StreamRecord>,
}

/// The receiver's configuration as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecvConfig {
    /// Group (or unicast address) and port listened on (`--group`).
    pub group: String,
    /// Interface the group was joined on (`--iface`), if any.
    pub iface: Option<String>,
    /// Run length limit (`--duration`), nanoseconds.
    pub duration_ns: Option<u64>,
    /// Stop after this long without a datagram, counted once the first arrived
    /// (`--idle-timeout`), nanoseconds.
    pub idle_timeout_ns: Option<u64>,
    /// Whether the receiver stopped once every stream's end marker had arrived (`--exit-on-end`).
    pub exit_on_end: bool,
    /// SO_RCVBUF the kernel granted, bytes.
    pub socket_rcvbuf_bytes: u64,
    /// Most streams accounted separately.
    pub max_streams: u32,
    /// Sequence numbers a stream may arrive out of order and still be told apart from a
    /// duplicate; older arrivals are counted as `late`.
    pub reorder_window_packets: u64,
    /// Formats recognised (`--format`): `"auto"`, `"probe"`, `"rtp"` or `"mpegts"`. Records
    /// written before the flag existed read as `"probe"`.
    #[serde(default)]
    pub format: RecvFormat,
    /// RTP clock rate for payload types without a static one (`--rtp-clock-rate`), Hz.
    #[serde(default)]
    pub rtp_clock_rate_hz: Option<u32>,
}

/// Loss accounting of one stream, or of all streams summed.
///
/// With `expected = end marker's count` (or highest sequence + 1 without one):
/// `expected = received + lost`, exactly. Duplicates and late arrivals are not in `received`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounters {
    /// Packets the sender sent, as far as the receiver knows: the count in the end marker when
    /// one arrived, else highest sequence seen + 1.
    pub expected: u64,
    /// Distinct sequence numbers received.
    pub received: u64,
    /// `expected - received`: never arrived (or arrived `late`).
    pub lost: u64,
    /// Arrivals of a sequence number already received.
    pub duplicated: u64,
    /// Arrivals (counted in `received`) of a sequence lower than one already received.
    pub reordered: u64,
    /// Arrivals more than `reorder_window_packets` behind the highest sequence: too old to tell
    /// from a duplicate, so not in `received` (and still in `lost`).
    pub late: u64,
    /// UDP payload bytes of the `received` packets.
    pub payload_bytes: u64,
    /// End-marker datagrams received (the sender repeats each marker).
    pub end_markers_received: u64,
}

/// One stream's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Stream id from the probe header.
    pub stream_id: u32,
    /// This stream's loss accounting.
    pub counters: StreamCounters,
    /// Whether an end marker arrived (if not, loss at the tail of the stream is invisible).
    pub end_marker_seen: bool,
    /// Lowest sequence number received.
    pub lowest_sequence: Option<u64>,
    /// Highest sequence number received.
    pub highest_sequence: Option<u64>,
    /// Kernel receive time (SO_TIMESTAMPNS) of the first packet received (first arrival of a
    /// new sequence number), nanoseconds since the Unix epoch.
    pub first_rx_unix_ns: Option<u64>,
    /// Kernel receive time of the last packet received, nanoseconds since the Unix epoch.
    pub last_rx_unix_ns: Option<u64>,
    /// (received - 1) / (last_rx - first_rx), packets per second; `None` with < 2 packets.
    pub receive_pps: Option<f64>,
    /// One-way latency (kernel receive time - transmit timestamp), nanoseconds. Meaningful when
    /// sender and receiver share a clock (same host, or PTP-synchronised hosts).
    pub latency_ns: Distribution,
    /// Packets whose receive time was before their transmit timestamp (clock skew); recorded as
    /// latency 0.
    pub negative_latency_packets: u64,
    /// Per-second timeline, second 0 starting at the receiver's start.
    pub timeline: Vec<TimelineSecond>,
    /// How this stream was recognised and accounted: `"probe"` (trafficgen's header), `"rtp"`
    /// (RFC 3550 sequence numbers; `rtp` is set, and `mpegts` too when the payload is MPEG-TS)
    /// or `"mpegts"` (raw MPEG-TS over UDP: `counters` are estimates from continuity
    /// counters, see `mpegts`). Records written before formats existed are probe records.
    #[serde(default)]
    pub format: StreamFormat,
    /// RTP details (format `"rtp"`), else null.
    #[serde(default)]
    pub rtp: Option<RtpRecord>,
    /// MPEG-TS continuity accounting (raw MPEG-TS, or MPEG-TS inside RTP), else null.
    #[serde(default)]
    pub mpegts: Option<MpegTsRecord>,
}

/// How a stream's datagrams were recognised and accounted.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum StreamFormat {
    /// trafficgen's probe header (sequence numbers from 0, end markers, tx timestamps).
    #[default]
    Probe,
    /// RTP (RFC 3550): a stream is one SSRC sent to the receiver's `--group`.
    Rtp,
    /// Raw MPEG-TS over UDP (188-byte packets, sync byte 0x47): one stream per receiver.
    Mpegts,
}

impl StreamFormat {
    pub fn name(self) -> &'static str {
        match self {
            StreamFormat::Probe => "probe",
            StreamFormat::Rtp => "rtp",
            StreamFormat::Mpegts => "mpegts",
        }
    }
}

/// Which formats the receiver recognises (`--format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecvFormat {
    /// Probe header first, then raw MPEG-TS, then RTP, decided per datagram.
    Auto,
    /// Only probes; anything else is foreign. What records before `--format` existed did.
    #[default]
    Probe,
    /// Only RTP (with MPEG-TS inside checked when the payload type is 33).
    Rtp,
    /// Only MPEG-TS: raw over UDP, or inside RTP with payload type 33.
    Mpegts,
}

/// RTP details of one stream (RFC 3550).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RtpRecord {
    /// Synchronization source identifier (also the stream's `stream_id`).
    pub ssrc: u32,
    /// Payload type of the last packet.
    pub payload_type: u8,
    /// Packets whose payload type differed from the packet before.
    pub payload_type_changes: u64,
    /// Packets with the marker bit set.
    pub marker_packets: u64,
    /// Sequence restarts: a jump of more than 3000 ahead (or 100 behind) confirmed by the next
    /// packet in sequence (RFC 3550 A.1). The counts before a restart are kept; the loss across
    /// the jump is unknown and not counted; `lowest_sequence`/`highest_sequence` describe the
    /// part after the last restart.
    pub sequence_restarts: u64,
    /// RTP timestamp clock rate used for the jitter, Hz; null when unknown (a dynamic payload
    /// type without `--rtp-clock-rate`), and then the jitter fields are null too.
    pub clock_rate_hz: Option<u32>,
    /// Where `clock_rate_hz` came from: `"payload_type"` (the static table of RFC 3551) or
    /// `"flag"` (`--rtp-clock-rate`); null when unknown.
    pub clock_rate_source: Option<String>,
    /// Interarrival jitter J after the last packet (RFC 3550 6.4.1), in RTP timestamp units:
    /// what an RTCP receiver report would carry.
    pub jitter_timestamp_units: Option<f64>,
    /// `jitter_timestamp_units` in nanoseconds (divided by the clock rate).
    pub jitter_ns: Option<f64>,
    /// Highest value J took over the stream, nanoseconds.
    pub jitter_max_ns: Option<f64>,
    /// Mean of J over every packet after the first, nanoseconds.
    pub jitter_mean_ns: Option<f64>,
}

/// MPEG-TS continuity accounting of one stream (ISO/IEC 13818-1), summed over its PIDs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MpegTsRecord {
    /// TS packets received (every 188-byte packet, duplicates and errored ones included).
    pub ts_packets: u64,
    /// Datagrams that carried TS packets.
    pub datagrams: u64,
    /// Datagrams whose payload was not whole 188-byte packets each starting with 0x47 (not
    /// counted in `ts_packets`).
    pub sync_errors: u64,
    /// Continuity-counter errors: packets whose counter was not the one expected.
    pub continuity_errors: u64,
    /// Lost TS packets as the counter gaps show them: a gap of k means k + 16n lost packets,
    /// and this takes n = 0 (a lower bound; see the README for what CC cannot see).
    pub lost_ts_packets_estimate: u64,
    /// Duplicate packets (same counter, same bytes but the PCR, right after the original).
    pub duplicate_ts_packets: u64,
    /// Packets with `transport_error_indicator` set (not checked further: their header may be
    /// corrupt).
    pub transport_errors: u64,
    /// Packets whose adaptation field set `discontinuity_indicator` (the counter restarts).
    pub discontinuities: u64,
    /// Null packets (PID 0x1FFF), whose counter is not checked.
    pub null_packets: u64,
    /// Packets without payload (adaptation field only, or the reserved field value 00): their
    /// counter does not advance, so a lost one leaves no gap.
    pub no_payload_packets: u64,
    /// Per PID (null packets excepted), ordered by PID.
    pub pids: Vec<PidRecord>,
}

/// Continuity accounting of one PID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidRecord {
    /// Packet identifier (13 bits).
    pub pid: u16,
    /// TS packets of this PID received (transport errors excepted).
    pub ts_packets: u64,
    /// Continuity-counter errors of this PID.
    pub continuity_errors: u64,
    /// Lost packets of this PID from its counter gaps (n = 0 in k + 16n).
    pub lost_ts_packets_estimate: u64,
    /// Duplicate packets of this PID.
    pub duplicate_ts_packets: u64,
    /// Packets of this PID with `discontinuity_indicator` set.
    pub discontinuities: u64,
    /// Packets of this PID without payload.
    pub no_payload_packets: u64,
}

/// One second of a stream's timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineSecond {
    /// Seconds since the receiver started.
    pub second: u64,
    /// Distinct packets received in this second.
    pub received: u64,
    /// Duplicates that arrived in this second.
    pub duplicated: u64,
    /// Reordered packets (counted in `received`) that arrived in this second.
    pub reordered: u64,
    /// UDP payload bytes of `received`.
    pub payload_bytes: u64,
    /// Highest latency in this second, nanoseconds.
    pub latency_max_ns: u64,
}

/// What `trafficgen sweep` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// Always [`SWEEP_SCHEMA`].
    pub schema: String,
    /// Always [`RECORD_VERSION`] for records written by this code.
    pub version: u32,
    /// [`RECORD_MINOR_VERSION`] for records written by this code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor_version: u32,
    /// `CARGO_PKG_VERSION` of the trafficgen that wrote the record.
    pub trafficgen_version: String,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub started_unix_ns: u64,
    /// The configuration the sweep used.
    pub config: SweepConfig,
    /// Highest rate at which every trial lost nothing, packets per second; `None` if even the
    /// lowest rate lost packets.
    pub zero_loss_pps: Option<u64>,
    /// Highest rate at which every trial's loss ratio was at most `config.max_loss_ratio`;
    /// `None` if even the lowest rate exceeded it.
    pub max_loss_ratio_pps: Option<u64>,
    /// Every trial run, in order.
    pub trials: Vec<SweepTrial>,
}

/// The sweep's configuration as used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    /// Destination `ADDR:PORT` the sender used.
    pub dst: String,
    /// Sender's outgoing interface, if any.
    pub iface: Option<String>,
    /// Network namespace the receiver ran in, if any.
    pub recv_netns: Option<String>,
    /// Interface the receiver joined on, if any.
    pub recv_iface: Option<String>,
    /// UDP payload bytes per datagram.
    pub payload_size_bytes: u32,
    /// Sender threads per trial.
    pub threads: u32,
    /// Length of one trial's send phase, nanoseconds.
    pub trial_duration_ns: u64,
    /// Trials at each rate; a rate passes only if all pass.
    pub trials_per_rate: u32,
    /// Lowest rate tried, packets per second.
    pub min_pps: u64,
    /// Highest rate tried (and the first one tried), packets per second.
    pub max_pps: u64,
    /// The search stops when the pass/fail bracket is narrower than this, packets per second.
    pub resolution_pps: u64,
    /// Loss ratio (lost / sent) accepted by the second search.
    pub max_loss_ratio: f64,
}

/// One trial of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepTrial {
    /// Rate asked of the sender, packets per second.
    pub target_pps: u64,
    /// Rate the sender achieved, packets per second.
    pub achieved_pps: f64,
    /// 0-based index of this trial at this rate.
    pub trial_index: u32,
    /// Packets the sender sent (kernel accepted).
    pub packets_sent: u64,
    /// Send errors at the sender.
    pub send_errors: u64,
    /// Distinct packets the receiver got.
    pub packets_received: u64,
    /// Packets the receiver counted as lost (includes `socket_drops`).
    pub packets_lost: u64,
    /// Of which dropped by the receiving socket's full buffer.
    pub socket_drops: u64,
    /// packets_lost / packets_sent (0 when nothing was sent).
    pub loss_ratio: f64,
    /// Whether the sender achieved at least 99% of the target rate without send errors; a
    /// trial where it did not cannot pass, whatever the loss.
    #[serde(default)]
    pub sender_kept_up: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_counter_is_a_string_never_zero() {
        let perf = PerfCounters {
            task_clock_ns: PerfValue::Count(12),
            ..PerfCounters::default()
        };
        let json = serde_json::to_value(perf).unwrap();
        assert_eq!(json["task_clock_ns"], 12);
        assert_eq!(json["cycles"], "unavailable");
        let back: PerfCounters = serde_json::from_value(json).unwrap();
        assert_eq!(back, perf);
    }

    #[test]
    fn unknown_fields_of_a_newer_minor_version_load() {
        let json = r#"{"samples":0,"min":0,"p50":0,"p90":0,"p99":0,"p999":0,"max":0,"mean":0.0,"extra":1}"#;
        let d: Distribution = serde_json::from_str(json).unwrap();
        assert_eq!(d.samples, 0);
    }
}
