//! Network interfaces by name, from the kernel of the caller's network namespace: the index
//! (`if_nametoindex`) and the `SIOCGIF*` ioctls, each written once. (`/sys/class/net` may show
//! another namespace under `ip netns exec`; these calls follow the caller's.)

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use super::cvt;

/// Index of the interface called `name`.
pub fn index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// MTU of the interface called `name` (`SIOCGIFMTU`).
pub fn mtu(name: &str) -> io::Result<u32> {
    let req = ioctl(name, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(mtu.max(0) as u32)
}

/// The interface's hardware address and its `ARPHRD_*` type (`SIOCGIFHWADDR`).
pub fn hardware_address(name: &str) -> io::Result<([u8; 6], u16)> {
    let req = ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok((mac, sa.sa_family))
}

/// The interface's primary IPv4 address (`SIOCGIFADDR`), `None` when it has none.
pub fn ipv4_address(name: &str) -> io::Result<Option<Ipv4Addr>> {
    match ioctl(name, libc::SIOCGIFADDR) {
        Ok(req) => {
            // SAFETY: SIOCGIFADDR filled ifru_addr with a sockaddr_in (same size as the
            // sockaddr it is declared as); read unaligned since the union's alignment is
            // the sockaddr's.
            let sin: libc::sockaddr_in = unsafe {
                std::ptr::read_unaligned(std::ptr::addr_of!(req.ifr_ifru.ifru_addr).cast())
            };
            Ok(Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
        }
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An `ifreq` naming `name`, passed to the interface ioctl `request` on a datagram socket.
fn ioctl(name: &str, request: libc::Ioctl) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() || name.as_bytes().contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: the request reads ifr_name and writes the union of the ifreq we own.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req) })?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_and_has_an_mtu_an_address_and_a_link_type() {
        let idx = index("lo").expect("lo has an index");
        assert!(idx > 0);
        assert!(mtu("lo").unwrap() >= 1500);
        assert_eq!(ipv4_address("lo").unwrap(), Some(Ipv4Addr::LOCALHOST));
        // ARPHRD_LOOPBACK, no address.
        assert_eq!(hardware_address("lo").unwrap(), ([0; 6], 772));
    }

    #[test]
    fn unknown_or_impossible_names_are_errors() {
        for name in ["nonexistent-if0", "a-name-longer-than-ifnamsiz", "nul\0"] {
            assert!(index(name).is_err(), "{name:?}");
            assert!(mtu(name).is_err(), "{name:?}");
            assert!(hardware_address(name).is_err(), "{name:?}");
        }
    }
}
