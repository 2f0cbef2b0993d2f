//! Opening and configuring a sender socket: one per thread, connected to the destination so
//! that sends need no address and an unreachable destination fails at start, not mid-run.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use socket2::{Domain, Protocol, Socket, Type};

use super::{SendError, SendOptions};
use crate::sys;

/// Send buffer asked for: deep enough for several full batches (128 x 1.4 KB) in flight.
/// SO_SNDBUFFORCE (root) passes `wmem_max`; otherwise the kernel caps it.
const SNDBUF_BYTES: libc::c_int = 4 << 20;

/// IP + UDP header bytes, what a datagram adds to its payload inside the MTU: IPv4 (20) or
/// IPv6 (40, no extension headers) and UDP (8).
fn ip_udp_header_bytes(dst: &SocketAddr) -> usize {
    match dst {
        SocketAddr::V4(_) => 28,
        SocketAddr::V6(_) => 48,
    }
}

/// A configured, connected sender socket.
pub struct SenderSocket {
    pub socket: Socket,
    /// SO_SNDBUF the kernel granted (it reports double the requested value).
    pub sndbuf_bytes: u64,
}

/// Opens the socket for one sender thread as `options` say.
pub fn open(options: &SendOptions) -> Result<SenderSocket, SendError> {
    let dst = options.dst;
    let socket = Socket::new(Domain::for_address(dst), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| SendError::Socket("create UDP socket", e))?;
    if sys::set_int_option(
        &socket,
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        SNDBUF_BYTES,
    )
    .is_err()
    {
        socket
            .set_send_buffer_size(SNDBUF_BYTES as usize)
            .map_err(|e| SendError::Socket("set SO_SNDBUF", e))?;
    }
    if let Some(src) = options.src {
        socket
            .bind(&SocketAddr::new(src, 0).into())
            .map_err(|e| SendError::BindSource(src, e))?;
    }
    let multicast = dst.ip().is_multicast();
    if let Some(name) = &options.iface {
        let index = sys::if_index(name).map_err(|e| SendError::NoSuchInterface(name.clone(), e))?;
        match (multicast, dst) {
            (true, SocketAddr::V4(_)) => sys::set_multicast_if_index(&socket, index)
                .map_err(|e| SendError::Socket("set IP_MULTICAST_IF", e))?,
            (true, SocketAddr::V6(_)) => socket
                .set_multicast_if_v6(index)
                .map_err(|e| SendError::Socket("set IPV6_MULTICAST_IF", e))?,
            (false, SocketAddr::V4(_)) => socket
                .bind_device_by_index_v4(NonZeroU32::new(index))
                .map_err(|e| SendError::Socket("set SO_BINDTODEVICE", e))?,
            (false, SocketAddr::V6(_)) => socket
                .bind_device_by_index_v6(NonZeroU32::new(index))
                .map_err(|e| SendError::Socket("set SO_BINDTODEVICE", e))?,
        }
    }
    set_hops(&socket, dst, multicast, options.ttl)?;
    socket
        .connect(&dst.into())
        .map_err(|e| SendError::Unreachable(dst, e))?;
    let (level, name) = match dst {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
    };
    if let Ok(mtu) = sys::get_int_option(&socket, level, name) {
        let mtu = mtu as usize;
        let headers = ip_udp_header_bytes(&dst);
        if options.size + headers > mtu {
            return Err(SendError::ExceedsMtu {
                size: options.size,
                mtu,
                headers,
                max: mtu.saturating_sub(headers),
            });
        }
    }
    let sndbuf_bytes = socket.send_buffer_size().unwrap_or(0) as u64;
    Ok(SenderSocket {
        socket,
        sndbuf_bytes,
    })
}

/// The TTL (IPv4) or hop limit (IPv6) of what the socket sends, multicast looped back to
/// this host's sockets too (receivers on the same host).
fn set_hops(socket: &Socket, dst: SocketAddr, multicast: bool, hops: u32) -> Result<(), SendError> {
    match (dst, multicast) {
        (SocketAddr::V4(_), true) => socket
            .set_multicast_ttl_v4(hops)
            .and_then(|()| socket.set_multicast_loop_v4(true))
            .map_err(|e| SendError::Socket("set IP_MULTICAST_TTL and IP_MULTICAST_LOOP", e)),
        (SocketAddr::V4(_), false) => socket
            .set_ttl_v4(hops)
            .map_err(|e| SendError::Socket("set IP_TTL", e)),
        (SocketAddr::V6(_), true) => socket
            .set_multicast_hops_v6(hops)
            .and_then(|()| socket.set_multicast_loop_v6(true))
            .map_err(|e| SendError::Socket("set IPV6_MULTICAST_HOPS and IPV6_MULTICAST_LOOP", e)),
        (SocketAddr::V6(_), false) => socket
            .set_unicast_hops_v6(hops)
            .map_err(|e| SendError::Socket("set IPV6_UNICAST_HOPS", e)),
    }
}

/// Whether `addr` can only be a destination by mistake (unspecified, or IPv4 broadcast).
pub fn is_bad_destination(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified(),
    }
}
