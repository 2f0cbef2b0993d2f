//! The receiver: joins the group, drains the socket in `recvmmsg` batches and feeds every
//! datagram to the account of its stream ([`streams::StreamTable`]: probes, RTP, MPEG-TS).
//!
//! Foreign and malformed datagrams are counted apart (by reason) and never stop the run. Drops
//! the kernel made because our receive buffer was full come from `SO_RXQ_OVFL` and are reported
//! apart from network loss (they are also inside the streams' `lost`, since those packets never
//! reached us).

mod snmp;
pub mod streams;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use thiserror::Error;

use crate::accounting::{DEFAULT_MAX_STREAMS, DEFAULT_REORDER_WINDOW};
use crate::probe::ProbeError;
use crate::record::{
    RecvConfig, RecvFormat, RecvRecord, RECORD_MINOR_VERSION, RECORD_VERSION, RECV_SCHEMA,
};
use crate::sys::{self, RecvBatch};
use streams::{Routed, StreamTable};

/// Default receive buffer asked for (SO_RCVBUFFORCE as root, else capped by `rmem_max`): room
/// for tens of thousands of datagrams, i.e. tens of ms at 1M pps, so a briefly descheduled
/// receiver does not drop.
pub const DEFAULT_RCVBUF_BYTES: u32 = 64 << 20;
/// Datagrams per `recvmmsg`.
const RECV_BATCH: usize = 64;
/// Receive buffer per datagram: the largest UDP payload, so nothing is ever truncated.
const RECV_BUFFER_LEN: usize = 65_536;
/// How long one `recvmmsg` may block, so limits and signals are checked this often.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// With `exit_on_end`, how long to keep receiving after the last stream's end marker (for
/// stragglers and streams that sent nothing).
const END_GRACE: Duration = Duration::from_millis(200);

/// Everything `trafficgen recv` needs.
#[derive(Debug, Clone)]
pub struct RecvOptions {
    /// Group (or local unicast address) and port.
    /// IPv4 or IPv6: the socket's family follows it.
    pub group: SocketAddr,
    pub iface: Option<String>,
    pub duration: Option<Duration>,
    /// Stop after this long without a datagram, counted from the first datagram (a receiver
    /// started early waits for the sender; `duration` bounds the wait).
    pub idle_timeout: Option<Duration>,
    /// Stop once every stream seen has sent its end marker (plus a short grace period).
    pub exit_on_end: bool,
    pub max_streams: u32,
    pub reorder_window: u64,
    /// Receive buffer to ask for, bytes (the kernel doubles it for bookkeeping).
    pub rcvbuf_bytes: u32,
    /// Formats recognised.
    pub format: RecvFormat,
    /// RTP clock rate of payload types without a static one, Hz.
    pub rtp_clock_rate_hz: Option<u32>,
}

impl RecvOptions {
    pub fn new(group: SocketAddr) -> RecvOptions {
        RecvOptions {
            group,
            iface: None,
            duration: None,
            idle_timeout: None,
            exit_on_end: false,
            max_streams: DEFAULT_MAX_STREAMS,
            reorder_window: DEFAULT_REORDER_WINDOW,
            rcvbuf_bytes: DEFAULT_RCVBUF_BYTES,
            format: RecvFormat::Auto,
            rtp_clock_rate_hz: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum RecvError {
    #[error("--group {0}: port 0 cannot be received on")]
    NoPort(SocketAddr),
    #[error("--iface {0}: no such interface ({1})")]
    NoSuchInterface(String, io::Error),
    #[error("--group {0}: cannot bind ({1}); is another receiver holding it, or is a unicast address not local?")]
    Bind(SocketAddr, io::Error),
    #[error("--group {0}: cannot join ({1}); pass --iface or add a multicast route")]
    Join(SocketAddr, io::Error),
    #[error("cannot {0}: {1}")]
    Socket(&'static str, io::Error),
    #[error("receive failed: {0}")]
    Receive(io::Error),
}

impl RecvError {
    /// Whether the error is in the flags (exit code 2) rather than in the run (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, RecvError::NoPort(_) | RecvError::NoSuchInterface(..))
    }
}

/// Datagram validation failures counted by reason (fixed slots: no allocation per datagram).
#[derive(Default)]
struct Malformed {
    truncated: u64,
    unsupported_version: u64,
    length_mismatch: u64,
}

impl Malformed {
    fn count(&mut self, error: ProbeError) {
        match error {
            ProbeError::Foreign => {}
            ProbeError::Truncated { .. } => self.truncated += 1,
            ProbeError::UnsupportedVersion { .. } => self.unsupported_version += 1,
            ProbeError::LengthMismatch { .. } => self.length_mismatch += 1,
        }
    }

    fn by_reason(&self) -> BTreeMap<String, u64> {
        [
            ("truncated", self.truncated),
            ("unsupported_version", self.unsupported_version),
            ("length_mismatch", self.length_mismatch),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n))
        .collect()
    }
}

fn open_socket(options: &RecvOptions) -> Result<(Socket, u64), RecvError> {
    let group = options.group;
    if group.port() == 0 {
        return Err(RecvError::NoPort(group));
    }
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| RecvError::Socket("create UDP socket", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| RecvError::Socket("set SO_REUSEADDR", e))?;
    let rcvbuf = options.rcvbuf_bytes.min(i32::MAX as u32) as libc::c_int;
    if sys::set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
        socket
            .set_recv_buffer_size(rcvbuf as usize)
            .map_err(|e| RecvError::Socket("set SO_RCVBUF", e))?;
    }
    sys::set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
        .map_err(|e| RecvError::Socket("set SO_RXQ_OVFL", e))?;
    sys::set_int_option(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
        .map_err(|e| RecvError::Socket("set SO_TIMESTAMPNS", e))?;
    socket
        .set_read_timeout(Some(POLL_INTERVAL))
        .map_err(|e| RecvError::Socket("set SO_RCVTIMEO", e))?;
    let ifindex = match &options.iface {
        Some(name) => {
            Some(sys::if_index(name).map_err(|e| RecvError::NoSuchInterface(name.clone(), e))?)
        }
        None => None,
    };
    socket
        .bind(&scoped(group, ifindex).into())
        .map_err(|e| RecvError::Bind(group, e))?;
    let multicast = group.ip().is_multicast();
    if let (Some(index), false) = (ifindex, multicast) {
        // Unicast: --iface restricts which interface the datagrams may arrive on.
        let bound = match group {
            SocketAddr::V4(_) => socket.bind_device_by_index_v4(std::num::NonZeroU32::new(index)),
            SocketAddr::V6(_) => socket.bind_device_by_index_v6(std::num::NonZeroU32::new(index)),
        };
        bound.map_err(|e| RecvError::Socket("set SO_BINDTODEVICE", e))?;
    }
    match group {
        SocketAddr::V4(v4) if multicast => {
            // Only the groups this socket joined, not every group any socket on the host
            // joined.
            socket
                .set_multicast_all_v4(false)
                .map_err(|e| RecvError::Socket("set IP_MULTICAST_ALL", e))?;
            let interface = match ifindex {
                Some(index) => InterfaceIndexOrAddress::Index(index),
                None => InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
            };
            socket
                .join_multicast_v4_n(v4.ip(), &interface)
                .map_err(|e| RecvError::Join(group, e))?;
        }
        SocketAddr::V6(v6) if multicast => {
            socket
                .set_multicast_all_v6(false)
                .map_err(|e| RecvError::Socket("set IPV6_MULTICAST_ALL", e))?;
            // IPV6_ADD_MEMBERSHIP: the kernel reports it with MLD (v2 unless the link is
            // forced to v1), so MLD-snooping switches deliver the group. Interface 0: the
            // kernel's route to the group decides.
            socket
                .join_multicast_v6(v6.ip(), ifindex.unwrap_or(0))
                .map_err(|e| RecvError::Join(group, e))?;
        }
        _ => {}
    }
    let rcvbuf = socket.recv_buffer_size().unwrap_or(0) as u64;
    Ok((socket, rcvbuf))
}

/// Receives until a limit in `options` is reached or SIGINT/SIGTERM arrives, and returns the
/// record. `on_ready` is called once the group is joined (senders may start then).
/// The address to bind: an IPv6 address of link-local scope (`ff02::/16`, `fe80::/10`) is
/// ambiguous without an interface, so it carries `--iface`'s index as its scope.
fn scoped(group: SocketAddr, ifindex: Option<u32>) -> SocketAddr {
    match (group, ifindex) {
        (SocketAddr::V6(mut v6), Some(index)) if link_local_scope(v6.ip()) => {
            v6.set_scope_id(index);
            SocketAddr::V6(v6)
        }
        _ => group,
    }
}

/// Whether an IPv6 address is of link-local scope: unicast `fe80::/10` or a multicast group
/// whose scope nibble is 2 (RFC 4291 2.7; interface-local `ff01::` is not used across hosts).
fn link_local_scope(a: &std::net::Ipv6Addr) -> bool {
    let s = a.segments()[0];
    (s & 0xffc0) == 0xfe80 || (a.is_multicast() && (s & 0x000f) == 2)
}

pub fn run(options: &RecvOptions, on_ready: impl FnOnce()) -> Result<RecvRecord, RecvError> {
    let (socket, rcvbuf) = open_socket(options)?;
    let mut batch = RecvBatch::new(RECV_BUFFER_LEN, RECV_BATCH);
    let ipv6 = options.group.is_ipv6();
    let snmp_before = snmp::udp_rcvbuf_errors(ipv6);
    let started_unix_ns = sys::realtime_ns();
    let start = Instant::now();
    let mut accounting = StreamTable::new(
        options.format,
        options.rtp_clock_rate_hz,
        started_unix_ns,
        options.max_streams,
        options.reorder_window,
    );
    let mut malformed = Malformed::default();
    let (mut datagrams, mut bytes, mut foreign, mut socket_drops) = (0u64, 0u64, 0u64, 0u64);
    let mut last_activity = start;
    let mut ended_at: Option<Instant> = None;
    on_ready();

    loop {
        let now = Instant::now();
        if sys::stop_requested()
            || options.duration.is_some_and(|d| now - start >= d)
            || options
                .idle_timeout
                .is_some_and(|d| datagrams > 0 && now - last_activity >= d)
        {
            break;
        }
        if options.exit_on_end && accounting.all_ended() {
            let at = *ended_at.get_or_insert(now);
            if now - at >= END_GRACE {
                break;
            }
        }
        let n = batch.recv(&socket).map_err(RecvError::Receive)?;
        if n == 0 {
            continue;
        }
        last_activity = Instant::now();
        // One clock read per batch stands in for datagrams without a kernel timestamp.
        let fallback_rx_ns = sys::realtime_ns();
        for i in 0..n {
            let (payload, meta) = batch.datagram(i);
            datagrams += 1;
            bytes += meta.len as u64;
            if let Some(drops) = meta.socket_drops {
                socket_drops = socket_drops.max(u64::from(drops));
            }
            if meta.truncated {
                malformed.truncated += 1;
                continue;
            }
            let rx_ns = meta.rx_timestamp_ns.unwrap_or(fallback_rx_ns);
            match accounting.on_datagram(payload, rx_ns) {
                Routed::Accounted => {}
                Routed::Foreign => foreign += 1,
                Routed::MalformedProbe(e) => malformed.count(e),
            }
        }
    }

    let elapsed_ns = start.elapsed().as_nanos() as u64;
    let (streams, totals) = accounting.records();
    let udp_rcvbuf_errors_netns = match (snmp_before, snmp::udp_rcvbuf_errors(ipv6)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(RecvRecord {
        schema: RECV_SCHEMA.to_string(),
        version: RECORD_VERSION,
        minor_version: RECORD_MINOR_VERSION,
        trafficgen_version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix_ns,
        config: RecvConfig {
            group: options.group.to_string(),
            iface: options.iface.clone(),
            duration_ns: options.duration.map(|d| d.as_nanos() as u64),
            idle_timeout_ns: options.idle_timeout.map(|d| d.as_nanos() as u64),
            exit_on_end: options.exit_on_end,
            socket_rcvbuf_bytes: rcvbuf,
            max_streams: options.max_streams,
            reorder_window_packets: options.reorder_window,
            format: options.format,
            rtp_clock_rate_hz: options.rtp_clock_rate_hz,
        },
        elapsed_ns,
        datagrams_received: datagrams,
        datagram_bytes: bytes,
        foreign_datagrams: foreign,
        malformed_datagrams: malformed.by_reason(),
        untracked_stream_datagrams: accounting.untracked(),
        socket_drops,
        udp_rcvbuf_errors_netns,
        totals,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_ipv6_addresses_take_the_interface_as_their_scope() {
        let at = |s: &str| scoped(s.parse().unwrap(), Some(7)).to_string();
        assert_eq!(at("[ff02::1234]:5000"), "[ff02::1234%7]:5000");
        assert_eq!(at("[fe80::1]:5000"), "[fe80::1%7]:5000");
        // Wider scopes and IPv4 need none; without --iface nothing is added.
        assert_eq!(at("[ff3e::1234]:5000"), "[ff3e::1234]:5000");
        assert_eq!(at("[ff05::1]:5000"), "[ff05::1]:5000");
        assert_eq!(at("239.1.1.1:5000"), "239.1.1.1:5000");
        let unscoped: SocketAddr = "[ff02::1]:5000".parse().unwrap();
        assert_eq!(scoped(unscoped, None), unscoped);
    }
}
