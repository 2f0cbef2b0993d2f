//! Validated configuration values: what the rest of the daemon consumes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dataplane: DataplaneConfig,
    pub control: ControlConfig,
    pub metrics: MetricsConfig,
    /// `tracing` filter directive, e.g. `info` or `relay=debug`; unset, `RUST_LOG` decides,
    /// else `info` (see [`Config::log_filter`]).
    pub log_level: Option<String>,
    /// How log lines are written: text, or one JSON object per line for log shippers.
    pub log_format: LogFormat,
    pub rules: Vec<RuleSpec>,
    /// `allow_empty = true`: this file means to have no rules, so a reload of it may remove
    /// every rule in force. Without it such a reload is refused: an empty file is far more
    /// often one caught half-written than a wish to stop forwarding.
    pub allow_empty: bool,
}

impl Config {
    /// The log filter this file asks for: its `log_level`, else `rust_log` (the environment's
    /// `RUST_LOG`, passed in so that this stays a function of its inputs) when it is a valid
    /// filter, else `info`.
    pub fn log_filter(&self, rust_log: Option<&str>) -> String {
        self.log_level
            .clone()
            .or_else(|| {
                rust_log
                    .filter(|l| tracing_subscriber::EnvFilter::try_new(l).is_ok())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "info".to_string())
    }
}

/// `log_format`: how mcrd writes its log lines (under systemd, both start with the journal's
/// priority prefix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `tracing`'s human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, and each field by
    /// name), for log shippers.
    Json,
}

/// Data-plane tunables (`[dataplane]`). Every bound on memory and queues lives here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneConfig {
    /// Worker threads; each owns an io_uring and one packet socket per input interface.
    pub workers: u32,
    /// CPUs to pin workers to, in worker order (must have `workers` entries when set).
    pub cpus: Vec<u32>,
    /// Frames in each packet socket's receive ring (per worker, per input interface).
    pub ring_frames: u32,
    /// Largest Ethernet frame kept in the ring; larger frames (GSO/GRO super-frames) take the
    /// copy path. 0 = derived from the input interface's MTU.
    pub ring_frame_size: u32,
    /// Egress buffers per worker: the bound on datagrams waiting for the kernel to send them.
    pub buffer_count: u32,
    /// Bytes per egress buffer: the largest UDP payload the relay forwards.
    pub buffer_size: u32,
    /// Submission queue entries of each worker's io_uring.
    pub uring_entries: u32,
    /// Send operations (`sendmsg`, each possibly many GSO segments) in flight per worker.
    pub max_in_flight_sends: u32,
    /// Datagrams taken from the rings before the pending sends are flushed.
    pub batch_size: u32,
    /// Most datagrams coalesced into one `UDP_SEGMENT` send.
    pub max_gso_segments: u32,
    /// `SO_SNDBUF` of egress sockets, bytes (0 = kernel default).
    pub socket_sndbuf: u32,
    /// Coalesce same-size runs to one destination with `UDP_SEGMENT` when the kernel allows it.
    pub gso: bool,
    /// Keep polling the rings this long after the last packet before sleeping, microseconds.
    /// 0 (the default) sleeps as soon as the rings are empty: on a 3-hop chain sharing two
    /// cores, 50 us of polling cost 1.2x the run's CPU (median of 5 paired runs at 30k pps)
    /// because spinning relays take CPU from the stages they feed. Raise it for lower latency
    /// on a host with cores to spare.
    pub busy_poll_us: u32,
    /// Once frames are arriving, wait this long for more before going back to the rings,
    /// instead of being woken by each frame, microseconds (0 = off: woken per frame). Fewer
    /// wake-ups at moderate rates, at the price of up to this much added latency per hop.
    pub rx_coalesce_us: u32,
    /// Run the worker threads under `SCHED_FIFO` at this priority (1-99; 0 = the normal
    /// scheduler). A real-time worker runs as soon as a frame wakes it instead of waiting for
    /// the CPU's other tasks, as the kernel's own forwarding runs in softirq ahead of them: on
    /// a 3-hop chain sharing 2 cores this kept every rate loss-free where the normal scheduler
    /// lost frames at the packet ring, and cut p99 latency several-fold. Needs CAP_SYS_NICE or
    /// an `RLIMIT_RTPRIO` (systemd `LimitRTPRIO=`) at least this high. Combined with
    /// `busy_poll_us` on a shared core, a spinning real-time worker starves that core's other
    /// tasks until the kernel's real-time throttling steps in: pin such workers (`cpus`).
    pub realtime_priority: u32,
    /// Deliver our multicast output to local sockets of this host too (`IP_MULTICAST_LOOP`).
    pub multicast_loop: bool,
    /// Run the rules the kernel can express in a TC program instead of the worker threads.
    pub fast_path: FastPathMode,
    /// The hook the fast path's program goes on: tcx where the kernel has it, else a clsact
    /// qdisc filter (`auto`), or one of them always.
    pub fast_path_attach: FastPathAttach,
    /// Flows (rules) the fast path holds, all inputs together: sizes its kernel maps when
    /// the program is loaded. Rules beyond it run in userspace.
    pub fast_path_max_flows: u32,
    /// Kernel-path (group, port) flows per input. Each is excluded by the packet sockets'
    /// classic BPF filter, which has at most 4096 instructions: beyond this, the input's
    /// other flows run in userspace.
    pub fast_path_max_flows_per_input: u32,
}

/// Default of `[dataplane] fast_path_max_flows`: an IPTV head-end's channel list.
pub const DEFAULT_FAST_PATH_MAX_FLOWS: u32 = 65_536;
/// Most `fast_path_max_flows`: 1 Mi flows, a few GiB of kernel maps at most.
pub const MAX_FAST_PATH_MAX_FLOWS: u32 = 1 << 20;

/// `[dataplane] fast_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FastPathMode {
    /// Use it when the kernel and the privileges allow; else one warning and userspace only.
    /// The default: the fast path is the cheapest way to move a datagram, and without it
    /// everything still works, more slowly.
    #[default]
    Auto,
    /// Userspace only.
    Off,
    /// Refuse to start without it.
    Required,
}

/// `[dataplane] fast_path_attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FastPathAttach {
    /// tcx where the kernel has it (Linux 6.6), else clsact.
    #[default]
    Auto,
    /// A tcx link; on a kernel without tcx there is no fast path.
    Tcx,
    /// A direct-action filter on the input's clsact qdisc (Linux 4.5), even where tcx exists.
    Clsact,
}

impl fmt::Display for FastPathAttach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FastPathAttach::Auto => "auto",
            FastPathAttach::Tcx => "tcx",
            FastPathAttach::Clsact => "clsact",
        })
    }
}

impl fmt::Display for FastPathMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FastPathMode::Auto => "auto",
            FastPathMode::Off => "off",
            FastPathMode::Required => "required",
        })
    }
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            cpus: Vec::new(),
            ring_frames: 4096,
            ring_frame_size: 0,
            buffer_count: 4096,
            buffer_size: 9216,
            uring_entries: 1024,
            max_in_flight_sends: 512,
            batch_size: 256,
            max_gso_segments: 44,
            socket_sndbuf: 4 << 20,
            gso: true,
            busy_poll_us: 0,
            rx_coalesce_us: 0,
            realtime_priority: 0,
            multicast_loop: false,
            fast_path: FastPathMode::Auto,
            fast_path_attach: FastPathAttach::Auto,
            fast_path_max_flows: DEFAULT_FAST_PATH_MAX_FLOWS,
            fast_path_max_flows_per_input: crate::rules::bpf::DEFAULT_KERNEL_FLOWS_PER_INPUT,
        }
    }
}

/// The control socket (`[control]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// Octal permission bits of the socket file, e.g. `"0660"`.
    pub mode: String,
    /// Group that owns the socket file (members may run `mcrctl`); unset keeps the daemon's group.
    pub group: Option<String>,
}

/// `[metrics]`: the Prometheus endpoint. Off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address and port `/metrics` is served on over HTTP, e.g. `127.0.0.1:19108`.
    pub listen: Option<SocketAddr>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/mcr/mcrd.sock"),
            mode: "0660".to_string(),
            group: None,
        }
    }
}

/// One forwarding rule as written by the user: interfaces are still names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name; the handle for `mcrctl rules remove`.
    pub name: String,
    /// Interface the traffic arrives on.
    pub input: String,
    /// Destination address to match (a multicast group, or a unicast address), IPv4 or IPv6.
    pub group: IpAddr,
    /// Destination UDP port to match.
    pub port: u16,
    /// Match only this source address (and join source-specifically).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    pub outputs: Vec<OutputSpec>,
    /// Check the stream this rule forwards (sequence gaps or continuity-counter errors of
    /// what this hop received, in the flow's stats); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    /// Forward only datagrams that arrive with at least this IPv4 TTL or IPv6 hop limit; the
    /// others are counted (in the workers' `filtered`, and the flow's `below_min_ttl`) and
    /// left alone. None (the default) forwards every TTL: a sender's multicast TTL or hop limit is
    /// 1 unless it sets one, and carrying such streams across segments is what a relay is
    /// for; `min_ttl = 2` keeps what senders meant for their own link on it, as a router would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ttl: Option<u8>,
}

/// What a monitored flow carries (`monitor = "rtp" | "mpegts"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Monitor {
    /// RTP (RFC 3550): sequence-number gaps.
    Rtp,
    /// MPEG-TS, raw over UDP or inside RTP: continuity-counter errors per PID.
    Mpegts,
}

impl Monitor {
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Rtp => "rtp",
            Monitor::Mpegts => "mpegts",
        }
    }
}

/// Where matched datagrams go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Destination: a multicast group or a unicast address, of either family (the input's
    /// family need not be the output's: the relay re-sends the UDP payload).
    pub dest: IpAddr,
    pub port: u16,
    /// Interface to send from.
    pub interface: String,
    /// IPv4 TTL or IPv6 hop limit of the sent datagrams.
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// DSCP (0-63) to send with. `None`: keep each datagram's DSCP and ECN as received.
    /// With a DSCP set, the received ECN bits are still kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<u8>,
    /// Source address to send from: one of the output interface's addresses. `None`: the
    /// kernel's choice (the interface's primary address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// UDP source port to send from. `None`: an ephemeral port the kernel picks at start
    /// (it changes with every restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
}

/// Largest DSCP: the six high bits of the type-of-service byte.
pub const MAX_DSCP: u8 = 63;

impl OutputSpec {
    /// An output with the defaults for everything but where it goes.
    pub fn new(dest: IpAddr, port: u16, interface: impl Into<String>, ttl: u8) -> Self {
        Self {
            dest,
            port,
            interface: interface.into(),
            ttl,
            dscp: None,
            source: None,
            source_port: None,
        }
    }
}

fn default_ttl() -> u8 {
    16
}

impl RuleSpec {
    /// The match key: two rules with the same key would fight over the same datagrams.
    pub fn match_key(&self) -> (String, IpAddr, u16, Option<IpAddr>) {
        (self.input.clone(), self.group, self.port, self.source)
    }
}

#[cfg(test)]
impl RuleSpec {
    /// A rule for unit tests: `group:port` arriving on `lo`, sent to 239.2.2.2:6000 out of `lo`
    /// with TTL 1.
    pub(crate) fn on_lo(name: &str, group: [u8; 4], port: u16) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            input: "lo".into(),
            group: group.into(),
            port,
            source: None,
            outputs: vec![OutputSpec::new([239, 2, 2, 2].into(), 6000, "lo", 1)],
            monitor: None,
            min_ttl: None,
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `SocketAddr` writes an IPv6 address in brackets, which the parser above reads back.
        write!(
            f,
            "{}@{}",
            SocketAddr::new(self.dest, self.port),
            self.interface
        )
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}@{}",
            self.name,
            SocketAddr::new(self.group, self.port),
            self.input
        )?;
        if let Some(src) = self.source {
            write!(f, " from {src}")?;
        }
        if let Some(min_ttl) = self.min_ttl {
            write!(f, " min ttl {min_ttl}")?;
        }
        f.write_str(" ->")?;
        for o in &self.outputs {
            write!(f, " {o} ttl {}", o.ttl)?;
            if let Some(dscp) = o.dscp {
                write!(f, " dscp {dscp}")?;
            }
            match (o.source, o.source_port) {
                (Some(a), Some(p)) => write!(f, " from {}", SocketAddr::new(a, p))?,
                (Some(a), None) => write!(f, " from {a}")?,
                (None, Some(p)) => write!(f, " from port {p}")?,
                (None, None) => {}
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for OutputSpec {
    type Err = String;

    /// `ADDR:PORT@INTERFACE[/TTL][,dscp=N][,source=ADDR][,source_port=N]`, the form
    /// `mcrctl rules add --output` takes: every key an output has in the file. Bounds (DSCP
    /// 0-63, the source being the interface's) are checked where file rules are.
    fn from_str(s: &str) -> Result<Self, String> {
        const FORM: &str = "ADDR:PORT@INTERFACE (IPv6: [ADDR]:PORT@INTERFACE)[/TTL][,dscp=N][,source=ADDR][,source_port=N]";
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (dest_port, rest) = head
            .split_once('@')
            .ok_or_else(|| format!("output `{s}` must look like {FORM}"))?;
        let (interface, ttl) = match rest.split_once('/') {
            Some((i, t)) => (
                i,
                t.parse::<u8>()
                    .map_err(|_| format!("output `{s}`: TTL `{t}` is not a number 0-255"))?,
            ),
            None => (rest, default_ttl()),
        };
        let (dest, port) = dest_port
            .rsplit_once(':')
            .ok_or_else(|| format!("output `{s}` must look like {FORM}"))?;
        // An IPv6 address is written in brackets, as in a URL: `[ff3e::1]:5000`.
        let bracketed = dest.strip_prefix('[').and_then(|d| d.strip_suffix(']'));
        let dest = match bracketed {
            Some(v6) => v6
                .parse::<std::net::Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| format!("output `{s}`: `{v6}` is not an IPv6 address"))?,
            None if dest.contains(':') => {
                return Err(format!(
                    "output `{s}`: write an IPv6 address in brackets, `[{dest}]:PORT`"
                ))
            }
            None => dest
                .parse::<std::net::Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| format!("output `{s}`: `{dest}` is not an IP address"))?,
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("output `{s}`: `{port}` is not a UDP port"))?;
        if interface.is_empty() {
            return Err(format!("output `{s}`: the interface name is empty"));
        }
        let mut output = OutputSpec::new(dest, port, interface, ttl);
        for option in parts {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("output `{s}`: `{option}` must look like KEY=VALUE"))?;
            let twice = || format!("output `{s}`: `{key}` is given twice");
            match key {
                "dscp" => {
                    let dscp = value
                        .parse::<u8>()
                        .map_err(|_| format!("output `{s}`: dscp `{value}` is not a number"))?;
                    output.dscp.replace(dscp).map_or(Ok(()), |_| Err(twice()))?;
                }
                "source" => {
                    let source = value.parse::<IpAddr>().map_err(|_| {
                        format!("output `{s}`: source `{value}` is not an IP address")
                    })?;
                    output
                        .source
                        .replace(source)
                        .map_or(Ok(()), |_| Err(twice()))?;
                }
                "source_port" => {
                    let p = value.parse::<u16>().map_err(|_| {
                        format!("output `{s}`: source_port `{value}` is not a UDP port")
                    })?;
                    output
                        .source_port
                        .replace(p)
                        .map_or(Ok(()), |_| Err(twice()))?;
                }
                _ => {
                    return Err(format!(
                        "output `{s}`: unknown option `{key}` (dscp, source or source_port)"
                    ))
                }
            }
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_spec_parses_with_and_without_ttl() {
        let o: OutputSpec = "239.2.2.2:6000@eth1".parse().unwrap();
        assert_eq!(o.dest, IpAddr::from([239, 2, 2, 2]));
        assert_eq!((o.port, o.interface.as_str(), o.ttl), (6000, "eth1", 16));
        let o: OutputSpec = "10.0.0.9:7000@veth-b/3".parse().unwrap();
        assert_eq!((o.port, o.ttl), (7000, 3));
    }

    #[test]
    fn output_spec_takes_every_key_an_output_has_in_the_file() {
        let o: OutputSpec = "10.0.0.9:7000@eth2/4,dscp=46,source=10.0.0.1,source_port=5004"
            .parse()
            .unwrap();
        assert_eq!((o.ttl, o.dscp), (4, Some(46)));
        assert_eq!(o.source, Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(o.source_port, Some(5004));
        let rule = RuleSpec {
            name: "r".into(),
            input: "eth0".into(),
            group: IpAddr::from([239, 1, 1, 1]),
            port: 5000,
            source: None,
            outputs: vec![o],
            monitor: None,
            min_ttl: None,
        };
        assert_eq!(
            rule.to_string(),
            "r: 239.1.1.1:5000@eth0 -> 10.0.0.9:7000@eth2 ttl 4 dscp 46 from 10.0.0.1:5004"
        );
    }

    #[test]
    fn ipv6_outputs_are_written_and_read_in_brackets() {
        let o: OutputSpec = "[ff3e::1234]:6000@eth1/8,source=2001:db8::1"
            .parse()
            .unwrap();
        assert_eq!(o.dest, "ff3e::1234".parse::<IpAddr>().unwrap());
        assert_eq!((o.port, o.ttl), (6000, 8));
        assert_eq!(o.source, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(o.to_string(), "[ff3e::1234]:6000@eth1");
        let back: OutputSpec = format!("{o}/8,source=2001:db8::1").parse().unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn output_spec_rejects_garbage_with_a_reason() {
        for (bad, why) in [
            ("239.2.2.2:6000", "ADDR:PORT@INTERFACE"),
            ("239.2.2:6000@eth1", "not an IP address"),
            ("ff3e::1:6000@eth1", "in brackets"),
            ("[ff3e::g]:6000@eth1", "not an IPv6 address"),
            ("239.2.2.2:70000@eth1", "not a UDP port"),
            ("239.2.2.2:6000@", "interface name is empty"),
            ("239.2.2.2:6000@eth1/300", "TTL"),
            ("239.2.2.2:6000@eth1,dscp", "KEY=VALUE"),
            ("239.2.2.2:6000@eth1,dscp=x", "dscp `x` is not a number"),
            ("239.2.2.2:6000@eth1,dscp=1,dscp=2", "`dscp` is given twice"),
            ("239.2.2.2:6000@eth1,source=1.2.3", "not an IP address"),
            ("239.2.2.2:6000@eth1,source_port=99999", "not a UDP port"),
            ("239.2.2.2:6000@eth1,tos=4", "unknown option `tos`"),
        ] {
            let err = bad.parse::<OutputSpec>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
