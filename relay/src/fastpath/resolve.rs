//! What the program writes into a copy that the userspace path leaves to the kernel's
//! sockets: the output interface's MAC and IPv4 address, and the destination MAC (the
//! group's multicast MAC, or the next hop's from the neighbour table).
//!
//! Everything is read from the current network namespace (ioctls and `/proc/net`, which
//! follow the reader's namespace; `/sys/class/net` may not, under `ip netns exec`).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

/// `ARPHRD_ETHER`: the only link type the program rewrites headers for.
const ARPHRD_ETHER: u16 = 1;
/// `ATF_COM`: a neighbour entry with a known link-layer address.
const ATF_COM: u32 = 0x2;

/// An interface's link-layer facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub mac: [u8; 6],
    /// True for Ethernet (`ARPHRD_ETHER`).
    pub ethernet: bool,
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn ioctl(name: &str, request: libc::Ioctl) -> io::Result<libc::ifreq> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let mut req = ifreq(name)?;
    // SAFETY: the request reads ifr_name and writes the union of the ifreq we own.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// The interface's MAC address and whether it is Ethernet (`SIOCGIFHWADDR`).
pub fn link(name: &str) -> io::Result<Link> {
    let req = ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled ifru_hwaddr.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(Link {
        mac,
        ethernet: sa.sa_family == ARPHRD_ETHER,
    })
}

/// The interface's primary IPv4 address (`SIOCGIFADDR`), `None` if it has none.
pub fn ipv4_address(name: &str) -> io::Result<Option<Ipv4Addr>> {
    match ioctl(name, libc::SIOCGIFADDR) {
        Ok(req) => {
            // SAFETY: SIOCGIFADDR filled ifru_addr with a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe {
                std::ptr::read_unaligned(&req.ifr_ifru.ifru_addr as *const _ as *const _)
            };
            Ok(Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
        }
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The Ethernet address IPv4 multicast `group` maps to (RFC 1112: 01:00:5e + low 23 bits).
pub fn multicast_mac(group: Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// The next hop towards `dest` out of `interface`: the gateway of the longest matching route
/// on that interface (`/proc/net/route`), or `dest` itself when it is on-link.
pub fn next_hop(dest: Ipv4Addr, interface: &str) -> Ipv4Addr {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| next_hop_in(&t, dest, interface))
        .unwrap_or(dest)
}

fn next_hop_in(routes: &str, dest: Ipv4Addr, interface: &str) -> Ipv4Addr {
    // Columns: Iface Destination Gateway Flags RefCnt Use Metric Mask ...; addresses are the
    // network-order value printed as a host-order hex number.
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    let d = u32::from(dest);
    let mut best: Option<(u32, u32)> = None; // (mask, gateway)
    for line in routes.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0] != interface {
            continue;
        }
        let (Some(net), Some(gw), Some(mask)) = (hex(f[1]), hex(f[2]), hex(f[7])) else {
            continue;
        };
        if d & mask == net & mask && best.is_none_or(|(m, _)| mask.count_ones() > m.count_ones()) {
            best = Some((mask, gw));
        }
    }
    match best {
        Some((_, gw)) if gw != 0 => Ipv4Addr::from(gw),
        _ => dest,
    }
}

/// The link-layer address of neighbour `ip` on `interface`, if the neighbour table has a
/// complete entry (`/proc/net/arp`).
pub fn neighbour(ip: Ipv4Addr, interface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string("/proc/net/arp").ok()?;
    neighbour_in(&text, ip, interface)
}

fn neighbour_in(arp: &str, ip: Ipv4Addr, interface: &str) -> Option<[u8; 6]> {
    // Columns: IP address, HW type, Flags, HW address, Mask, Device.
    for line in arp.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != interface || f[0].parse::<Ipv4Addr>().ok() != Some(ip) {
            continue;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & ATF_COM == 0 {
            return None;
        }
        let mut mac = [0u8; 6];
        let mut parts = f[3].split(':');
        for m in &mut mac {
            *m = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        return Some(mac);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_mac_keeps_the_low_23_bits() {
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 129, 2, 3)),
            [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]
        );
    }

    #[test]
    fn next_hop_takes_the_longest_route_on_the_interface() {
        let routes =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth1\t0009000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        // 10.0.0.7 is on-link on eth0; 192.168.1.1 goes via 10.0.0.1; eth1 has no default.
        let on_link = Ipv4Addr::new(10, 0, 0, 7);
        assert_eq!(next_hop_in(routes, on_link, "eth0"), on_link);
        let far = Ipv4Addr::new(192, 168, 1, 1);
        assert_eq!(next_hop_in(routes, far, "eth0"), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(next_hop_in(routes, far, "eth1"), far);
    }

    #[test]
    fn neighbour_needs_a_complete_entry_on_that_interface() {
        let arp =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
            10.0.0.7         0x1         0x2         02:aa:bb:cc:dd:0e     *        eth0\n\
            10.0.0.8         0x1         0x0         00:00:00:00:00:00     *        eth0\n";
        let ip = |d| Ipv4Addr::new(10, 0, 0, d);
        assert_eq!(
            neighbour_in(arp, ip(7), "eth0"),
            Some([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e])
        );
        assert_eq!(neighbour_in(arp, ip(7), "eth1"), None);
        assert_eq!(neighbour_in(arp, ip(8), "eth0"), None);
        assert_eq!(neighbour_in(arp, ip(9), "eth0"), None);
    }

    #[test]
    fn loopback_is_not_ethernet_and_has_127_0_0_1() {
        assert!(!link("lo").unwrap().ethernet);
        assert_eq!(ipv4_address("lo").unwrap(), Some(Ipv4Addr::LOCALHOST));
        assert!(link("nonexistent-if0").is_err());
    }
}
