//! One worker's packet socket on one input interface: ring, filter, fan-out membership.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use std::sync::Arc;

use super::fanout::{FanoutGroups, Membership};
use super::filter_count::{CountingFilter, DropAccount, DropDelta};
use super::ring::{Geometry, RxRing};
use super::sys;
use crate::rules::bpf;
use crate::rules::bpf_counting::TakenCounts;

/// `SO_RCVBUF` of packet sockets. Only frames too big for a ring slot (GSO/GRO super-frames,
/// the copy path) queue there, so 4 MiB holds dozens of 64 KiB super-frames.
pub const PACKET_RCVBUF: usize = 4 << 20;

/// Why an ingress socket could not be set up, naming the step. The cause is in the message
/// (it is logged on its own) and so not also the `source()`, which a chain printer would repeat.
#[derive(Debug, thiserror::Error)]
#[error("packet socket on {interface} (ifindex {ifindex}): {step}: {error}")]
pub struct IngressError {
    pub interface: String,
    pub ifindex: u32,
    pub step: &'static str,
    pub error: io::Error,
}

/// A packet socket bound to one interface, with its ring.
#[derive(Debug)]
pub struct IngressSocket {
    pub ifindex: u32,
    pub interface: String,
    pub ring: RxRing,
    fd: OwnedFd,
    /// Groups the current filter lets through and kernel flows it leaves out (to skip
    /// needless re-attaching); `None` once the filter takes nothing (see
    /// [`IngressSocket::stop_capture`]).
    filtered: Option<Filtered>,
    /// Counts what the filter takes, to tell the datagrams of dropped frames; `None` where
    /// mcrd may not load BPF (every dropped frame then counts as one datagram).
    counter: Option<CountingFilter>,
    /// The counting filter's program id, while it is the socket's filter.
    filter_program: Option<u32>,
    /// Frames read, dropped and settled ([`DropAccount`]).
    pub drops: DropAccount,
    /// Our place in the interface's fan-out group, left when the socket is dropped.
    _fanout: Option<Membership>,
}

/// What a socket's filter takes: these groups, less these kernel flows.
type Filtered = (Vec<IpAddr>, Vec<(IpAddr, u16)>);

/// How to build ingress sockets; the same for every interface of a worker.
#[derive(Debug, Clone)]
pub struct IngressParams {
    pub ring_frames: usize,
    /// 0 = derive from the interface MTU.
    pub frame_size: usize,
    /// The fan-out groups shared by all workers, or `None` with one worker.
    pub fanout: Option<Arc<FanoutGroups>>,
    pub rcvbuf: usize,
}

impl IngressSocket {
    /// Opens the socket, sets up its ring and filter, binds it and joins the fan-out group.
    /// The order matters: nothing is queued before the ring and filter exist.
    pub fn open(
        ifindex: u32,
        interface: &str,
        groups: &[IpAddr],
        kernel_flows: &[(IpAddr, u16)],
        params: &IngressParams,
    ) -> Result<Self, IngressError> {
        let err = |step: &'static str| {
            let interface = interface.to_string();
            move |error| IngressError {
                interface,
                ifindex,
                step,
                error,
            }
        };
        let max_frame = if params.frame_size > 0 {
            params.frame_size
        } else {
            // MTU + Ethernet header + one VLAN tag.
            crate::netif::mtu(interface).map_err(err("read MTU"))? as usize + 18
        };
        let fd = sys::packet_socket().map_err(err("socket(AF_PACKET)"))?;
        let raw = fd.as_raw_fd();
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(err("PACKET_VERSION"))?;
        sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1i32)
            .map_err(err("PACKET_VNET_HDR"))?;
        // Frames longer than a slot (GSO/GRO super-frames) are also queued whole on the socket.
        sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, &1i32)
            .map_err(err("PACKET_COPY_THRESH"))?;
        socket2::SockRef::from(&fd)
            .set_recv_buffer_size(params.rcvbuf)
            .map_err(err("SO_RCVBUF"))?;
        let ring = RxRing::setup(raw, Geometry::new(params.ring_frames, max_frame))
            .map_err(err("PACKET_RX_RING"))?;
        let mut counter = counting_filter(interface);
        let filter_program = attach(
            raw,
            &mut counter,
            &bpf::build(groups, kernel_flows),
            interface,
        )
        .map_err(err("SO_ATTACH_FILTER"))?;
        // Linux 4.20+; the filter drops outgoing frames anyway, so an older kernel is fine.
        let _ = sys::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32);
        sys::bind_packet(raw, ifindex).map_err(err("bind"))?;
        // Hash fan-out keeps each flow on one worker, so datagrams of a flow stay in order.
        let fanout = match &params.fanout {
            Some(groups) => Some(groups.join(raw, ifindex).map_err(err("PACKET_FANOUT"))?),
            None => None,
        };
        Ok(Self {
            ifindex,
            interface: interface.to_string(),
            ring,
            fd,
            filtered: Some((groups.to_vec(), kernel_flows.to_vec())),
            counter,
            filter_program,
            drops: DropAccount::default(),
            _fanout: fanout,
        })
    }

    /// Replaces the filter if the wanted groups or the kernel's flows changed (the kernel
    /// swaps it atomically).
    pub fn update_filter(
        &mut self,
        groups: &[IpAddr],
        kernel_flows: &[(IpAddr, u16)],
    ) -> io::Result<()> {
        if let Some((g, k)) = &self.filtered {
            if g == groups && k == kernel_flows {
                return Ok(());
            }
        }
        let program = bpf::build(groups, kernel_flows);
        self.filter_program = attach(
            self.fd.as_raw_fd(),
            &mut self.counter,
            &program,
            &self.interface,
        )?;
        self.filtered = Some((groups.to_vec(), kernel_flows.to_vec()));
        Ok(())
    }

    /// Replaces the filter with one that takes nothing, so that the ring only empties from
    /// now on (the socket can then be closed without losing a frame it already holds).
    pub fn stop_capture(&mut self) -> io::Result<()> {
        if self.filtered.is_none() {
            return Ok(());
        }
        sys::attach_filter(self.fd.as_raw_fd(), &bpf::nothing())?;
        self.filter_program = None;
        self.filtered = None;
        Ok(())
    }

    /// Whether the filter takes nothing ([`IngressSocket::stop_capture`]).
    pub fn is_stopped(&self) -> bool {
        self.filtered.is_none()
    }

    /// Whether the interface this socket was bound to is gone: the kernel unbinds a packet
    /// socket when its device is deleted (its address then names ifindex -1), and binds it
    /// to nothing else, also not to an interface created again under the same index. Such a
    /// socket receives nothing; a new one must be opened.
    pub fn is_orphaned(&self) -> bool {
        sys::bound_ifindex(self.fd.as_raw_fd()).is_ok_and(|i| i != self.ifindex as i32)
    }

    /// What the kernel dropped on this socket since the last call, in frames and datagrams
    /// (see [`super::filter_count`]). Dropped frames are settled at a later call that finds
    /// the ring drained and nothing on its way.
    pub fn take_kernel_drops(&mut self) -> DropDelta {
        // The filter's counts are read only while a drop is unsettled: a socket that never
        // overflows costs one `getsockopt` a tick, as before the counts existed.
        let before = match self.drops.unsettled_frames() {
            0 => None,
            _ => self.counter.as_mut().and_then(|c| c.taken().ok()),
        };
        let drops = sys::packet_statistics(self.fd.as_raw_fd())
            .map(|s| u64::from(s.tp_drops))
            .unwrap_or(0);
        let after = match before {
            Some(_) => self.counter.as_mut().and_then(|c| c.taken().ok()),
            None => None,
        };
        self.drops.settle(before, drops, after)
    }

    /// The id of the counting filter's program (`bpftool prog show id N`), if it is the
    /// socket's filter.
    pub fn filter_program(&self) -> Option<u32> {
        self.filter_program
    }

    /// The filter's counts of what it took, summed over the CPUs, if it counts.
    pub fn taken(&mut self) -> Option<TakenCounts> {
        self.counter.as_mut().and_then(|c| c.taken().ok())
    }

    /// Reads and clears the socket's pending error (`SO_ERROR`); a failed read is returned as
    /// the error.
    pub fn take_error(&self) -> Option<io::Error> {
        socket2::SockRef::from(&self.fd)
            .take_error()
            .unwrap_or_else(Some)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The socket's counting filter, or `None` where BPF may not be loaded (said once per
/// daemon: it holds for every socket).
fn counting_filter(interface: &str) -> Option<CountingFilter> {
    static SAID: std::sync::Once = std::sync::Once::new();
    match CountingFilter::new() {
        Ok(c) => Some(c),
        Err(e) => {
            SAID.call_once(|| {
                // Not a warning: nothing is lost, and the stats say which counts are bounds.
                tracing::info!(
                    "cannot create the packet filter's counters ({e}, on {interface}): frames \
                     the kernel drops at a full ring are counted as one datagram each \
                     (kernel_drops_unsettled_frames in the stats); mcrd needs CAP_BPF for the \
                     exact count"
                )
            });
            None
        }
    }
}

/// Attaches `program` counting what it takes where `counter` allows (returning the
/// program's id), else as classic BPF. A counting filter the kernel refuses is given up for
/// this socket (its counts would no longer match the frames read), with a warning.
fn attach(
    fd: RawFd,
    counter: &mut Option<CountingFilter>,
    program: &[bpf::Insn],
    interface: &str,
) -> io::Result<Option<u32>> {
    if let Some(c) = counter {
        match c.attach(fd, program) {
            Ok(id) => return Ok(Some(id)),
            Err(e) => {
                tracing::warn!(
                    "{interface}: {e}; the classic filter takes its place, and frames the \
                     kernel drops on this socket count as one datagram each"
                );
                *counter = None;
            }
        }
    }
    sys::attach_filter(fd, program).map(|()| None)
}
