//! Egress: UDP sockets per (interface, TTL), the send slots that carry `sendmsg`
//! operations through io_uring, and ([`send`]) the worker's sending over them.
//!
//! A [`SendSlot`] holds everything the kernel reads while a `sendmsg` is in flight (the
//! `msghdr`, its iovecs, the destination address and the `UDP_SEGMENT` control message), so
//! slots live in one boxed slice that never moves. A slot also keeps the output it sends for
//! (an `Rc`), which keeps that output's socket open until the kernel is done with it.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use socket2::{Domain, Socket, Type};

mod pending;
pub mod send;
pub use send::{Pending, Sender};

use super::limits::UDP_MAX_SEGMENTS;
use super::pool::BufId;
use super::sys;
use crate::counters::FlowCells;
use crate::rules::EgressKey;

const MAX_SEGMENTS: usize = UDP_MAX_SEGMENTS as usize;

/// A UDP socket that sends out of one interface with one TTL.
#[derive(Debug)]
pub struct EgressSocket {
    fd: OwnedFd,
    pub key: EgressKey,
    /// Cleared at run time if the kernel refuses a `UDP_SEGMENT` send on this socket.
    pub gso: Cell<bool>,
}

/// Settings for new egress sockets.
#[derive(Debug, Clone, Copy)]
pub struct EgressParams {
    pub sndbuf: usize,
    pub gso: bool,
    pub multicast_loop: bool,
}

impl EgressSocket {
    pub fn open(key: EgressKey, params: EgressParams) -> io::Result<Self> {
        let domain = if key.ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let sock = Socket::new(domain, Type::DGRAM.cloexec(), None)?;
        let fd = sock.as_raw_fd();
        // Leave the socket blocking: io_uring then waits for send-buffer space itself (it arms
        // an internal poll) instead of failing the send with EAGAIN.
        let ifindex = NonZeroU32::new(key.ifindex);
        if key.ipv6 {
            // An IPv6 output sends IPv6 only: no IPv4-mapped destinations.
            sock.set_only_v6(true)?;
            sock.bind_device_by_index_v6(ifindex)?;
        } else {
            sock.bind_device_by_index_v4(ifindex)?;
        }
        // Nothing we send from ever needs to be read: a filter that takes no packet keeps
        // replies (a unicast receiver answering, say) from filling the receive queue.
        sys::attach_filter(fd, &[DROP_EVERY_PACKET])?;
        if let Some(bind) = key.bind {
            // Every worker has its own socket for this output, bound to the same address.
            sock.set_reuse_address(true)?;
            sock.set_reuse_port(true)?;
            sock.bind(&bind.into())?;
        }
        if key.ipv6 {
            set_ipv6_options(&sock, &key, params)?;
        } else {
            set_ipv4_options(&sock, &key, params)?;
        }
        if params.sndbuf > 0 {
            sock.set_send_buffer_size(params.sndbuf)?;
        }
        Ok(Self {
            fd: sock.into(),
            key,
            gso: Cell::new(params.gso),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The IPv4 socket's multicast interface, TTL, loop, fragmentation and error reporting.
fn set_ipv4_options(sock: &Socket, key: &EgressKey, params: EgressParams) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: key.ifindex as libc::c_int,
    };
    sys::setsockopt(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)?;
    sock.set_multicast_ttl_v4(u32::from(key.ttl))?;
    sock.set_ttl_v4(u32::from(key.ttl.max(1)))?;
    sock.set_multicast_loop_v4(params.multicast_loop)?;
    // Never set DF: with the default (IP_PMTUDISC_WANT) the kernel set it on datagrams
    // sent one by one but not on those cut from a GSO send, and a relayed datagram larger
    // than a link further on is better fragmented than dropped. The input side drops
    // fragments (`malformed.fragment`), so this is also what the next relay can take.
    sys::setsockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        &libc::IP_PMTUDISC_DONT,
    )?;
    // Report local transmit drops (qdisc full, ENOBUFS) as send errors instead of
    // pretending they were sent; the error queue is drained by housekeeping. ICMP errors
    // arrive this way too, which is why unicast outputs have sockets of their own.
    sys::setsockopt(fd, libc::IPPROTO_IP, libc::IP_RECVERR, &1i32)
}

/// [`set_ipv4_options`] for IPv6: the hop limit for both kinds of destination, and
/// fragmentation by the source (IPv6 routers never fragment) rather than a refused send.
fn set_ipv6_options(sock: &Socket, key: &EgressKey, params: EgressParams) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    sock.set_multicast_if_v6(key.ifindex)?;
    sock.set_multicast_hops_v6(u32::from(key.ttl))?;
    sock.set_unicast_hops_v6(u32::from(key.ttl.max(1)))?;
    sock.set_multicast_loop_v6(params.multicast_loop)?;
    sys::setsockopt(
        fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_MTU_DISCOVER,
        &libc::IPV6_PMTUDISC_DONT,
    )?;
    sys::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, &1i32)
}

/// `ret #0`: a socket filter that accepts no packet.
const DROP_EVERY_PACKET: libc::sock_filter = libc::sock_filter {
    code: (libc::BPF_RET | libc::BPF_K) as u16,
    jt: 0,
    jf: 0,
    k: 0,
};

/// A destination as the kernel reads it in `msg_name`: IPv4 or IPv6.
#[repr(C)]
#[derive(Clone, Copy)]
pub union InetAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl InetAddr {
    /// The kernel form of `dest`, and its length.
    pub fn new(dest: SocketAddr) -> (Self, libc::socklen_t) {
        match dest {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_in is plain old data; all-zero is valid.
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                (
                    InetAddr { v4: sin },
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
            SocketAddr::V6(v6) => {
                // SAFETY: sockaddr_in6 is plain old data; all-zero is valid.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_scope_id = v6.scope_id();
                (
                    InetAddr { v6: sin6 },
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    }

    fn zeroed() -> Self {
        // SAFETY: both members are plain old data; all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}

impl std::fmt::Debug for InetAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InetAddr")
    }
}

/// What a worker needs to send to one output (built when a rule table is adopted).
#[derive(Debug)]
pub struct OutputTarget {
    pub addr: InetAddr,
    pub addr_len: libc::socklen_t,
    pub socket: Rc<EgressSocket>,
    pub flow: Arc<FlowCells>,
    pub index_in_rule: usize,
}

impl OutputTarget {
    pub fn new(
        dest: SocketAddr,
        socket: Rc<EgressSocket>,
        flow: Arc<FlowCells>,
        index_in_rule: usize,
    ) -> Self {
        let (addr, addr_len) = InetAddr::new(dest);
        Self {
            addr,
            addr_len,
            socket,
            flow,
            index_in_rule,
        }
    }
}

/// Space for the control messages of one send: `IP_TOS` or `IPV6_TCLASS` (an `int`) and
/// `UDP_SEGMENT` (a
/// `u16`), each `CMSG_SPACE` of its payload on 64-bit Linux (checked by a test), 8-aligned.
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy)]
struct CmsgSpace([u8; CMSG_TOS_SPACE + CMSG_SEGMENT_SPACE]);

/// `CMSG_SPACE(sizeof(int))`.
const CMSG_TOS_SPACE: usize = 24;
/// `CMSG_SPACE(sizeof(u16))`.
const CMSG_SEGMENT_SPACE: usize = 24;

/// One `sendmsg` in preparation or in flight.
pub struct SendSlot {
    msg: libc::msghdr,
    iov: [libc::iovec; MAX_SEGMENTS],
    addr: InetAddr,
    cmsg: CmsgSpace,
    pub bufs: [BufId; MAX_SEGMENTS],
    pub segments: usize,
    pub payload_bytes: usize,
    /// The type of service the send carries (to resend with, after a refused GSO send).
    pub tos: u8,
    pub target: Option<Rc<OutputTarget>>,
}

/// A fixed set of send slots and the free list over them.
pub struct SendSlots {
    slots: Box<[SendSlot]>,
    free: Vec<u32>,
}

impl SendSlots {
    pub fn new(count: usize) -> Self {
        let slots = (0..count)
            .map(|_| SendSlot {
                // SAFETY: msghdr is plain old data; zero is valid.
                msg: unsafe { std::mem::zeroed() },
                iov: [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; MAX_SEGMENTS],
                addr: InetAddr::zeroed(),
                cmsg: CmsgSpace([0; CMSG_TOS_SPACE + CMSG_SEGMENT_SPACE]),
                bufs: [0; MAX_SEGMENTS],
                segments: 0,
                payload_bytes: 0,
                tos: 0,
                target: None,
            })
            .collect();
        Self {
            slots,
            free: (0..count as u32).rev().collect(),
        }
    }

    pub fn take(&mut self) -> Option<u32> {
        self.free.pop()
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Ends a slot's operation: frees the slot and returns its target. Read the segments first
    /// ([`SendSlots::segments`]) to release their buffers.
    pub fn finish(&mut self, idx: u32) -> Option<Rc<OutputTarget>> {
        self.free.push(idx);
        self.slots[idx as usize].target.take()
    }

    /// The (buffer, length) of each segment of slot `idx`.
    pub fn segments(&self, idx: u32) -> impl Iterator<Item = (BufId, usize)> + '_ {
        let s = &self.slots[idx as usize];
        s.bufs[..s.segments]
            .iter()
            .zip(&s.iov[..s.segments])
            .map(|(&buf, iov)| (buf, iov.iov_len))
    }

    pub fn slot(&self, idx: u32) -> &SendSlot {
        &self.slots[idx as usize]
    }

    /// Fills slot `idx` for a send of `segments` to `target` with type of service `tos` and
    /// returns the `msghdr` pointer to submit. With more than one segment, all but the last
    /// have `segment_size` bytes and the kernel splits the send into datagrams (`UDP_SEGMENT`).
    ///
    /// The returned pointer stays valid until the slot is finished: slots never move.
    pub fn prepare(
        &mut self,
        idx: u32,
        target: &Rc<OutputTarget>,
        segments: &[(BufId, *const u8, usize)],
        segment_size: usize,
        tos: u8,
    ) -> *const libc::msghdr {
        let s = &mut self.slots[idx as usize];
        let n = segments.len().min(MAX_SEGMENTS);
        let mut bytes = 0;
        for (k, &(buf, ptr, len)) in segments[..n].iter().enumerate() {
            s.iov[k] = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len,
            };
            s.bufs[k] = buf;
            bytes += len;
        }
        s.segments = n;
        s.payload_bytes = bytes;
        s.tos = tos;
        s.addr = target.addr;
        s.target = Some(Rc::clone(target));
        s.msg.msg_name = (&mut s.addr as *mut InetAddr).cast();
        s.msg.msg_namelen = target.addr_len;
        s.msg.msg_iov = s.iov.as_mut_ptr();
        s.msg.msg_iovlen = n;
        s.msg.msg_flags = 0;
        let base = s.cmsg.0.as_mut_ptr();
        // SAFETY: `cmsg` holds CMSG_SPACE(4) + CMSG_SPACE(2) bytes, 8-aligned; we write one
        // cmsghdr with an int payload at its start and, for a GSO send, one with a u16 payload
        // right after the first's CMSG_SPACE, exactly what that room holds.
        let controllen = unsafe {
            let hdr = base.cast::<libc::cmsghdr>();
            // The same byte: IPv6's traffic class is IPv4's type of service.
            if target.socket.key.ipv6 {
                (*hdr).cmsg_level = libc::IPPROTO_IPV6;
                (*hdr).cmsg_type = libc::IPV6_TCLASS;
            } else {
                (*hdr).cmsg_level = libc::IPPROTO_IP;
                (*hdr).cmsg_type = libc::IP_TOS;
            }
            (*hdr).cmsg_len = libc::CMSG_LEN(4) as usize;
            libc::CMSG_DATA(hdr)
                .cast::<libc::c_int>()
                .write_unaligned(libc::c_int::from(tos));
            if n > 1 {
                let seg = base.add(CMSG_TOS_SPACE).cast::<libc::cmsghdr>();
                (*seg).cmsg_level = libc::SOL_UDP;
                (*seg).cmsg_type = libc::UDP_SEGMENT;
                (*seg).cmsg_len = libc::CMSG_LEN(2) as usize;
                libc::CMSG_DATA(seg)
                    .cast::<u16>()
                    .write_unaligned(segment_size as u16);
                CMSG_TOS_SPACE + CMSG_SEGMENT_SPACE
            } else {
                CMSG_TOS_SPACE
            }
        };
        s.msg.msg_control = base.cast();
        s.msg.msg_controllen = controllen;
        &s.msg
    }
}

/// Splits a run of datagram lengths into one GSO send: how many of `lens` (from the start) go
/// into it. All but the last must equal the first; the last may be shorter; the total payload
/// must fit one IP packet.
///
/// A zero-length datagram is always sent on its own: the kernel cuts a GSO send by bytes, so
/// empty segments would vanish from it (ten empty datagrams sent as one GSO send leave as one
/// empty datagram) while they were counted as sent.
pub fn gso_run(lens: impl Iterator<Item = usize>, max_segments: usize, max_bytes: usize) -> usize {
    let mut n = 0;
    let mut total = 0;
    let mut size = 0;
    for len in lens {
        if n == max_segments || total + len > max_bytes || len == 0 {
            break;
        }
        if n == 0 {
            size = len;
        } else if len > size {
            break;
        } else if len < size {
            // A shorter datagram can only end the run.
            n += 1;
            break;
        }
        total += len;
        n += 1;
    }
    n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmsg_space_matches_the_kernel_macro() {
        // SAFETY: CMSG_SPACE is a pure computation.
        let (tos, segment) = unsafe { (libc::CMSG_SPACE(4), libc::CMSG_SPACE(2)) };
        assert_eq!(CMSG_TOS_SPACE, tos as usize);
        assert_eq!(CMSG_SEGMENT_SPACE, segment as usize);
    }

    #[test]
    fn gso_runs_group_equal_sizes_and_end_on_a_shorter_one() {
        assert_eq!(gso_run([1400, 1400, 1400].into_iter(), 64, 65_000), 3);
        assert_eq!(gso_run([1400, 1400, 700, 1400].into_iter(), 64, 65_000), 3);
        assert_eq!(gso_run([700, 1400].into_iter(), 64, 65_000), 1);
        assert_eq!(gso_run([1400; 10].into_iter(), 4, 65_000), 4);
        assert_eq!(gso_run([1400; 100].into_iter(), 64, 65_507), 46);
        assert_eq!(gso_run([9000; 2].into_iter(), 64, 65_507), 2);
        assert_eq!(gso_run(std::iter::empty(), 64, 65_507), 1);
    }

    #[test]
    fn zero_length_datagrams_are_never_coalesced() {
        assert_eq!(gso_run([0, 0, 0].into_iter(), 64, 65_000), 1);
        assert_eq!(gso_run([100, 100, 0].into_iter(), 64, 65_000), 2);
        assert_eq!(gso_run([100, 0, 100].into_iter(), 64, 65_000), 1);
    }

    #[test]
    fn prepared_slot_points_at_its_own_storage() {
        let mut slots = SendSlots::new(2);
        let idx = slots.take().unwrap();
        let key = EgressKey {
            ifindex: 1,
            ipv6: false,
            ttl: 1,
            bind: None,
            unicast: None,
        };
        let sock = EgressSocket::open(
            key,
            EgressParams {
                sndbuf: 0,
                gso: true,
                multicast_loop: false,
            },
        );
        // Binding to a device needs CAP_NET_RAW: the tests run as root (CI requires it).
        let sock = match sock {
            Ok(s) => s,
            Err(e) if std::env::var("MCR_E2E_REQUIRED").as_deref() != Ok("1") => {
                eprintln!("SKIP: cannot open an egress socket here: {e}");
                return;
            }
            Err(e) => panic!("opening an egress socket: {e}"),
        };
        let target = Rc::new(OutputTarget::new(
            "127.0.0.1:9".parse().unwrap(),
            Rc::new(sock),
            Arc::new(FlowCells::new(1, 1, None)),
            0,
        ));
        let data = [7u8; 100];
        let msg = slots.prepare(
            idx,
            &target,
            &[(3, data.as_ptr(), 100), (4, data.as_ptr(), 50)],
            100,
            0xb8,
        );
        let s = slots.slot(idx);
        // SAFETY: msg points into the slot we just prepared.
        let m = unsafe { &*msg };
        assert_eq!(m.msg_iovlen, 2);
        assert_eq!(m.msg_iov, s.iov.as_ptr() as *mut _);
        assert!(!m.msg_control.is_null());
        assert_eq!(m.msg_controllen, CMSG_TOS_SPACE + CMSG_SEGMENT_SPACE);
        // SAFETY: msg_control points at the slot's control space, filled by prepare.
        let (tos, segment) = unsafe {
            let first = libc::CMSG_FIRSTHDR(m);
            let second = libc::CMSG_NXTHDR(m, first);
            (
                (
                    (*first).cmsg_type,
                    *libc::CMSG_DATA(first).cast::<libc::c_int>(),
                ),
                ((*second).cmsg_type, *libc::CMSG_DATA(second).cast::<u16>()),
            )
        };
        assert_eq!(tos, (libc::IP_TOS, 0xb8));
        assert_eq!(segment, (libc::UDP_SEGMENT, 100));
        assert_eq!(s.payload_bytes, 150);
        let segments: Vec<_> = slots.segments(idx).collect();
        assert_eq!(segments.len(), 2);
        assert_eq!(segments, [(3, 100), (4, 50)]);
        assert!(slots.finish(idx).is_some());
        assert_eq!(slots.free_count(), 2);
    }
}
