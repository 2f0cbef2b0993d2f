//! `NETLINK_ROUTE` sockets (socket2's), opened here once for the fast path's route and
//! neighbour lookups, the tc filter dump and the link watch.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::cvt;

/// `RTMGRP_LINK` (include/uapi/linux/rtnetlink.h): the link-event group as a `bind` mask
/// bit. (Subscribing with `NETLINK_ADD_MEMBERSHIP` instead would need a bind first: the kernel
/// delivers group messages only to bound sockets.)
const RTMGRP_LINK: u32 = 1 << (libc::RTNLGRP_LINK - 1);

/// A `NETLINK_ROUTE` socket whose reads give up after `timeout` (`None`: wait).
pub fn route_socket(timeout: Option<Duration>) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW.cloexec(),
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )?;
    sock.set_read_timeout(timeout)?;
    Ok(sock)
}

/// A `NETLINK_ROUTE` socket that receives the kernel's link events (`RTNLGRP_LINK`:
/// `RTM_NEWLINK`, `RTM_DELLINK`), its reads giving up after `timeout`.
pub fn link_events(timeout: Duration) -> io::Result<Socket> {
    let sock = route_socket(Some(timeout))?;
    // SAFETY: sockaddr_nl is plain old data; all-zero is valid before the fields we set.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = RTMGRP_LINK;
    // SAFETY: bind with a sockaddr_nl of its own size, which the kernel copies.
    cvt(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    })?;
    Ok(sock)
}

/// One `recv(2)` into `buf` with `flags` (`MSG_DONTWAIT`, ...): the bytes received.
pub fn recv(sock: &Socket, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`, which we borrow exclusively.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    cvt(n.try_into().unwrap_or(-1)).map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_event_socket_opens_and_times_out_when_nothing_happens() {
        let sock = link_events(Duration::from_millis(20)).unwrap();
        let mut buf = [0u8; 4096];
        let e = recv(&sock, &mut buf, libc::MSG_DONTWAIT).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
