//! Opening and configuring a sender socket: one per thread, connected to the destination so
//! that sends need no address and an unreachable destination fails at start, not mid-run.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU32;

use socket2::{Domain, Protocol, Socket, Type};

use super::{SendError, SendOptions};
use crate::sys;

/// Send buffer asked for: deep enough for several full batches (128 x 1.4 KB) in flight.
/// SO_SNDBUFFORCE (root) passes `wmem_max`; otherwise the kernel caps it.
const SNDBUF_BYTES: libc::c_int = 4 << 20;

/// IPv4 (20) + UDP (8) header bytes: what a datagram adds to its payload inside the MTU.
const IP_UDP_HEADER_BYTES: usize = 28;

/// A configured, connected sender socket.
pub struct SenderSocket {
    pub socket: Socket,
    /// SO_SNDBUF the kernel granted (it reports double the requested value).
    pub sndbuf_bytes: u64,
}

/// Opens the socket for one sender thread as `options` say.
pub fn open(options: &SendOptions) -> Result<SenderSocket, SendError> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
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
            .bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())
            .map_err(|e| SendError::BindSource(src, e))?;
    }
    let multicast = options.dst.ip().is_multicast();
    if let Some(name) = &options.iface {
        let index = sys::if_index(name).map_err(|e| SendError::NoSuchInterface(name.clone(), e))?;
        if multicast {
            sys::set_multicast_if_index(&socket, index)
                .map_err(|e| SendError::Socket("set IP_MULTICAST_IF", e))?;
        } else {
            socket
                .bind_device_by_index_v4(NonZeroU32::new(index))
                .map_err(|e| SendError::Socket("set SO_BINDTODEVICE", e))?;
        }
    }
    if multicast {
        socket
            .set_multicast_ttl_v4(options.ttl)
            .map_err(|e| SendError::Socket("set IP_MULTICAST_TTL", e))?;
        socket
            .set_multicast_loop_v4(true)
            .map_err(|e| SendError::Socket("set IP_MULTICAST_LOOP", e))?;
    } else {
        socket
            .set_ttl_v4(options.ttl)
            .map_err(|e| SendError::Socket("set IP_TTL", e))?;
    }
    socket
        .connect(&SocketAddr::V4(options.dst).into())
        .map_err(|e| SendError::Unreachable(options.dst, e))?;
    if let Ok(mtu) = sys::get_int_option(&socket, libc::IPPROTO_IP, libc::IP_MTU) {
        let mtu = mtu as usize;
        if options.size + IP_UDP_HEADER_BYTES > mtu {
            return Err(SendError::ExceedsMtu {
                size: options.size,
                mtu,
                max: mtu.saturating_sub(IP_UDP_HEADER_BYTES),
            });
        }
    }
    let sndbuf_bytes = socket.send_buffer_size().unwrap_or(0) as u64;
    Ok(SenderSocket {
        socket,
        sndbuf_bytes,
    })
}

/// Whether `addr` can only be a destination by mistake (unspecified or broadcast).
pub fn is_bad_destination(addr: Ipv4Addr) -> bool {
    addr.is_unspecified() || addr.is_broadcast()
}
