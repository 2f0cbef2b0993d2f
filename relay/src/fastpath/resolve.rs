//! What the program writes into a copy that the userspace path leaves to the kernel's
//! sockets: the output interface's MAC and source address, and the destination MAC (the
//! group's multicast MAC, or the next hop's).
//!
//! A unicast output's next hop is the kernel's own answer, so the program sends where the
//! kernel would send the userspace path's datagrams: the route from the kernel's route
//! lookup (`RTM_GETROUTE`, with everything a socket's lookup takes: see [`RouteQuery`]), and
//! the next hop's MAC from its neighbour entry (`RTM_GETNEIGH`), only in a state the kernel
//! transmits to without waiting (see `usable`). Both over rtnetlink (`rtnl.rs`), for IPv4
//! and IPv6 alike (IPv6 neighbour entries have the same NUD states).
//!
//! An IPv6 multicast output's source is the kernel's answer too (see [`multicast_source`]):
//! IPv6 source selection (RFC 6724) depends on the group's scope, so no single "primary
//! address" of the interface would do.
//!
//! Everything is read from the current network namespace (ioctls and rtnetlink, which
//! follow the caller's namespace; `/sys/class/net` may not, under `ip netns exec`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};

use crate::rules::EgressKey;

mod rtnl;
pub(crate) use rtnl::Rtnl;

/// `ARPHRD_ETHER`: the only link type the program rewrites headers for.
const ARPHRD_ETHER: u16 = 1;

/// An interface's link-layer facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub mac: [u8; 6],
    /// True for Ethernet (`ARPHRD_ETHER`).
    pub ethernet: bool,
}

/// The interface's MAC address and whether it is Ethernet (`SIOCGIFHWADDR`).
pub fn link(name: &str) -> io::Result<Link> {
    let (mac, kind) = crate::sys::netif::hardware_address(name)?;
    Ok(Link {
        mac,
        ethernet: kind == ARPHRD_ETHER,
    })
}

/// The interface's primary IPv4 address (`SIOCGIFADDR`), `None` if it has none.
pub use crate::sys::netif::ipv4_address;

/// The Ethernet address IPv4 multicast `group` maps to (RFC 1112: 01:00:5e + low 23 bits).
pub fn multicast_mac(group: Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// The Ethernet address IPv6 multicast `group` maps to (RFC 2464, 7: 33:33 + low 32 bits).
pub fn multicast_mac6(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// What the kernel's route lookup for a unicast output's egress socket takes into account:
/// mcrd sends a unicast output from a socket of its own, bound to the output interface
/// (`SO_BINDTODEVICE`) and, when the output names them, to its source address and port.
/// Policy rules (`ip rule`: `to`, `from`, `oif`, `sport`, `dport`, `ipproto`, `uidrange`),
/// VRFs (the interface's l3mdev table) and every routing table then apply as they do for the
/// datagrams the userspace path sends. Not given: a TOS (the userspace path sends each
/// datagram with its own, so no single lookup matches `ip rule ... tos`) and a mark (mcrd's
/// sockets set none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteQuery {
    /// The destination; its family is the lookup's (`AF_INET` or `AF_INET6`).
    pub dest: SocketAddr,
    /// The output interface's index (`RTA_OIF`).
    pub oif: u32,
    /// The address the socket is bound to (`RTA_SRC`), of the destination's family: without
    /// it the kernel chooses one.
    pub source: Option<IpAddr>,
    /// The port the socket is bound to (`RTA_SPORT`): without it the socket has an
    /// ephemeral one, which no lookup can know in advance.
    pub source_port: Option<u16>,
}

impl RouteQuery {
    /// The lookup for egress socket `key`, or `None` if it is not a unicast output's. A bound
    /// address of the other family (which the socket could not have) is no source.
    pub fn of(key: &EgressKey) -> Option<Self> {
        let dest = key.unicast?;
        Some(Self {
            dest,
            oif: key.ifindex,
            source: key
                .bind
                .map(|b| b.ip())
                .filter(|a| a.is_ipv6() == dest.is_ipv6() && !a.is_unspecified()),
            source_port: key.bind.map(|b| b.port()).filter(|&p| p != 0),
        })
    }
}

/// Why a unicast output has no next-hop MAC the program can send to (yet), or an IPv6
/// multicast output no source address. The messages are rule path reasons (`mcrctl rules
/// list`, the stats' `path_reason`).
#[derive(Debug, thiserror::Error)]
pub enum Unresolved {
    #[error("the kernel has no route to {dest} out of {interface} ({error})")]
    NoRoute {
        dest: IpAddr,
        interface: String,
        error: io::Error,
    },
    #[error("{dest} is an address of this host: the kernel delivers it locally")]
    Local { dest: IpAddr },
    #[error("the kernel routes {dest} as {kind}, not as unicast")]
    NotUnicast { dest: IpAddr, kind: String },
    #[error("the kernel routes {dest} out of interface index {oif}, not out of {interface}")]
    OtherInterface {
        dest: IpAddr,
        interface: String,
        oif: u32,
    },
    #[error("the route to {dest} {what}, which the kernel path does not do")]
    Unsupported { dest: IpAddr, what: &'static str },
    #[error("no neighbour entry for {hop} on {interface} yet (retried every second)")]
    NoNeighbour { hop: IpAddr, interface: String },
    #[error("neighbour {hop} on {interface} is {state}, not resolved (retried every second)")]
    NotResolved {
        hop: IpAddr,
        interface: String,
        state: NeighbourState,
    },
    #[error("neighbour {hop} on {interface} has a {len}-byte link-layer address, not a MAC")]
    NotEthernet {
        hop: IpAddr,
        interface: String,
        len: usize,
    },
    #[error("the kernel routes {group} out of {interface} as {kind}, not as multicast")]
    NotMulticast {
        group: Ipv6Addr,
        interface: String,
        kind: String,
    },
    #[error("output {interface} has no IPv6 address the kernel would send {group} from")]
    NoSource { group: Ipv6Addr, interface: String },
    #[error("asking the kernel about {dest} on {interface}: {error}")]
    Asking {
        dest: IpAddr,
        interface: String,
        error: io::Error,
    },
}

/// Where the kernel sends a socket's unicast datagrams: the next hop, and the source address
/// it gives them (`RTA_PREFSRC` of the answer: the route's `src`, or the address the kernel
/// selects for the interface and gateway) when the socket is bound to none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    /// Of the destination's family.
    pub hop: IpAddr,
    pub source: Option<IpAddr>,
}

/// The next hop towards `q`'s destination as the kernel routes it (`RTM_GETROUTE`): its
/// gateway, or the destination itself when it is on-link, with the source it selects. With `RTA_OIF` given and no
/// route out of that interface, the kernel assumes the destination is on-link (as it does
/// for the socket), so that is no error.
pub(crate) fn next_hop(
    rtnl: &mut Rtnl,
    q: &RouteQuery,
    interface: &str,
) -> Result<Route, Unresolved> {
    let dest = q.dest.ip();
    match rtnl.route(q) {
        Ok(Ok(route)) => hop_of(&route, q, interface),
        Ok(Err(error)) => Err(Unresolved::NoRoute {
            dest,
            interface: interface.to_string(),
            error,
        }),
        Err(error) => Err(Unresolved::Asking {
            dest,
            interface: interface.to_string(),
            error,
        }),
    }
}

/// The next hop in the kernel's answer `route` to `q`, or why the program cannot send
/// there: only a plain unicast route out of the output interface, through a gateway of the
/// destination's family if any, is what it can do.
fn hop_of(route: &RouteMessage, q: &RouteQuery, interface: &str) -> Result<Route, Unresolved> {
    let dest = q.dest.ip();
    match route.header.kind {
        RouteType::Unicast => {}
        RouteType::Local => return Err(Unresolved::Local { dest }),
        kind => {
            return Err(Unresolved::NotUnicast {
                dest,
                kind: format!("{kind:?}").to_lowercase(),
            })
        }
    }
    let mut hop = dest;
    let mut source = None;
    for a in &route.attributes {
        match a {
            RouteAttribute::Oif(oif) if *oif != q.oif => {
                return Err(Unresolved::OtherInterface {
                    dest,
                    interface: interface.to_string(),
                    oif: *oif,
                })
            }
            RouteAttribute::Gateway(gw) => {
                hop = same_family(gw, dest).ok_or_else(|| Unresolved::Unsupported {
                    dest,
                    what: other_family_gateway(dest),
                })?
            }
            RouteAttribute::Via(_) => {
                return Err(Unresolved::Unsupported {
                    dest,
                    what: other_family_gateway(dest),
                })
            }
            RouteAttribute::PrefSource(src) => source = same_family(src, dest),
            RouteAttribute::Encap(_) | RouteAttribute::EncapType(_) => {
                return Err(Unresolved::Unsupported {
                    dest,
                    what: "adds an encapsulation (lwtunnel)",
                })
            }
            _ => {}
        }
    }
    Ok(Route { hop, source })
}

/// `a` if it is an address of `like`'s family.
fn same_family(a: &RouteAddress, like: IpAddr) -> Option<IpAddr> {
    match (a, like) {
        (RouteAddress::Inet(a), IpAddr::V4(_)) => Some((*a).into()),
        (RouteAddress::Inet6(a), IpAddr::V6(_)) => Some((*a).into()),
        _ => None,
    }
}

/// What a route to `dest` through a gateway of the other family (`RTA_VIA`, or an
/// `RTA_GATEWAY` of the other family, RFC 5549) does: the program would need that gateway's
/// neighbour entry in the other family's table, which it does not look up.
fn other_family_gateway(dest: IpAddr) -> &'static str {
    match dest {
        IpAddr::V4(_) => "goes through an IPv6 gateway",
        IpAddr::V6(_) => "goes through an IPv4 gateway",
    }
}

/// The source address the kernel gives an unbound IPv6 UDP socket's datagrams to multicast
/// `group` out of interface `oif` (`IPV6_MULTICAST_IF`): the `RTA_PREFSRC` of its route
/// lookup (`ip -6 route get GROUP oif IF`), which is the kernel's source address selection
/// (`ipv6_dev_get_saddr`, RFC 6724) for that interface and the group's scope.
pub(crate) fn multicast_source(
    rtnl: &mut Rtnl,
    oif: u32,
    interface: &str,
    group: Ipv6Addr,
) -> Result<Ipv6Addr, Unresolved> {
    match rtnl.multicast_route(group, oif) {
        Ok(Ok(route)) => multicast_source_of(&route, oif, interface, group),
        Ok(Err(error)) => Err(Unresolved::NoRoute {
            dest: group.into(),
            interface: interface.to_string(),
            error,
        }),
        Err(error) => Err(Unresolved::Asking {
            dest: group.into(),
            interface: interface.to_string(),
            error,
        }),
    }
}

/// The source in the kernel's answer `route` for multicast `group` out of `oif`. The answer
/// is a multicast route (`RTN_MULTICAST`, from the local table), which the unicast checks of
/// [`hop_of`] would refuse; the kernel names no source when the interface (and, for a wide
/// enough scope, the host) has no IPv6 address to send from.
fn multicast_source_of(
    route: &RouteMessage,
    oif: u32,
    interface: &str,
    group: Ipv6Addr,
) -> Result<Ipv6Addr, Unresolved> {
    if route.header.kind != RouteType::Multicast {
        return Err(Unresolved::NotMulticast {
            group,
            interface: interface.to_string(),
            kind: format!("{:?}", route.header.kind).to_lowercase(),
        });
    }
    let mut source = None;
    for a in &route.attributes {
        match a {
            RouteAttribute::Oif(o) if *o != oif => {
                return Err(Unresolved::OtherInterface {
                    dest: group.into(),
                    interface: interface.to_string(),
                    oif: *o,
                })
            }
            RouteAttribute::PrefSource(RouteAddress::Inet6(src)) => source = Some(*src),
            _ => {}
        }
    }
    source
        .filter(|s| !s.is_unspecified())
        .ok_or_else(|| Unresolved::NoSource {
            group,
            interface: interface.to_string(),
        })
}

/// The link-layer address the kernel would send to next hop `hop` on interface `oif` now,
/// from its neighbour entry (`RTM_GETNEIGH`; see [`usable`] for which entries count).
///
/// A stale entry is used, and also used through the kernel (`NTF_USE`, see
/// [`Rtnl::use_neighbour`]): the program's frames bypass the neighbour layer, so without
/// that an entry nobody else sends through stays stale forever and the program keeps
/// sending to a MAC that may have moved. With it the kernel confirms the entry as it does
/// for its own traffic (DELAY, then unicast probes): it becomes reachable again (with the
/// MAC that answered) or failed, and the next plan follows.
///
/// A missing entry is not created here: the rule runs in userspace meanwhile, and its first
/// datagram makes the kernel resolve the neighbour, as for any socket; an idle output to a
/// dead address then costs no ARP.
pub(crate) fn neighbour_mac(
    rtnl: &mut Rtnl,
    hop: IpAddr,
    oif: u32,
    interface: &str,
) -> Result<[u8; 6], Unresolved> {
    let asking = |error| Unresolved::Asking {
        dest: hop,
        interface: interface.to_string(),
        error,
    };
    let entry = match rtnl.neighbour(hop, oif).map_err(asking)? {
        Ok(m) => Some(m),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) => return Err(asking(e)),
    };
    let (mac, confirm) = usable(entry.as_ref(), hop, interface)?;
    if confirm {
        // Without CAP_NET_ADMIN (mcrd has it whenever the program is attached) the entry
        // is used unconfirmed, which costs nothing but the confirmation.
        if let Err(e) = rtnl.use_neighbour(hop, oif).and_then(|a| a) {
            tracing::debug!(%hop, interface, "confirming a stale neighbour entry: {e}");
        }
    }
    Ok(mac)
}

/// `NUD_VALID`: the states whose entry holds a link-layer address. The kernel transmits
/// through such an entry at once (`neigh_event_send`): REACHABLE, PERMANENT and NOARP
/// directly; DELAY and PROBE while it confirms the address; STALE too, moving it to DELAY
/// first. INCOMPLETE queues the packet until ARP (or neighbour discovery) answers, FAILED
/// and NONE start it again:
/// the kernel sends nothing to those yet, so the program may not either.
const NUD_VALID: u16 = libc::NUD_PERMANENT
    | libc::NUD_NOARP
    | libc::NUD_REACHABLE
    | libc::NUD_PROBE
    | libc::NUD_STALE
    | libc::NUD_DELAY;

/// The MAC of neighbour entry `entry` if the kernel would send to it now, and whether the
/// entry is stale (to be confirmed, see [`neighbour_mac`]).
fn usable(
    entry: Option<&NeighbourMessage>,
    hop: IpAddr,
    interface: &str,
) -> Result<([u8; 6], bool), Unresolved> {
    let Some(entry) = entry else {
        return Err(Unresolved::NoNeighbour {
            hop,
            interface: interface.to_string(),
        });
    };
    let state = u16::from(entry.header.state);
    if state & NUD_VALID == 0 {
        return Err(Unresolved::NotResolved {
            hop,
            interface: interface.to_string(),
            state: entry.header.state,
        });
    }
    let lladdr = entry.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => Some(l.as_slice()),
        _ => None,
    });
    let mac =
        <[u8; 6]>::try_from(lladdr.unwrap_or_default()).map_err(|_| Unresolved::NotEthernet {
            hop,
            interface: interface.to_string(),
            len: lladdr.map_or(0, <[u8]>::len),
        })?;
    Ok((mac, state == libc::NUD_STALE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Parseable;
    use std::net::SocketAddrV4;

    #[test]
    fn multicast_mac6_keeps_the_low_32_bits() {
        let g: Ipv6Addr = "ff3e::8001:0203".parse().unwrap();
        assert_eq!(multicast_mac6(g), [0x33, 0x33, 0x80, 0x01, 0x02, 0x03]);
    }

    #[test]
    fn multicast_mac_keeps_the_low_23_bits() {
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 129, 2, 3)),
            [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]
        );
    }

    fn query(dest: [u8; 4]) -> RouteQuery {
        RouteQuery {
            dest: SocketAddrV4::new(Ipv4Addr::from(dest), 6000).into(),
            oif: 7,
            source: None,
            source_port: None,
        }
    }

    fn route(kind: RouteType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.kind = kind;
        m.attributes = attributes;
        m
    }

    #[test]
    fn a_query_is_what_the_egress_socket_is_bound_to() {
        let dest = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 5), 6000);
        let key = |bind: Option<SocketAddrV4>| EgressKey {
            ifindex: 7,
            ipv6: false,
            ttl: 16,
            bind: bind.map(Into::into),
            unicast: Some(dest.into()),
        };
        let plain = RouteQuery::of(&key(None)).unwrap();
        assert_eq!((plain.dest, plain.oif), (dest.into(), 7));
        assert_eq!((plain.source, plain.source_port), (None, None));
        let port_only = RouteQuery::of(&key(Some("0.0.0.0:4321".parse().unwrap()))).unwrap();
        assert_eq!(
            (port_only.source, port_only.source_port),
            (None, Some(4321))
        );
        let addr_only = RouteQuery::of(&key(Some("10.0.0.1:0".parse().unwrap()))).unwrap();
        assert_eq!(
            (addr_only.source, addr_only.source_port),
            (Some(Ipv4Addr::new(10, 0, 0, 1).into()), None)
        );
        let multicast = EgressKey {
            unicast: None,
            ..key(None)
        };
        assert_eq!(RouteQuery::of(&multicast), None);
    }

    #[test]
    fn the_next_hop_is_the_gateway_or_the_destination_on_link() {
        let q = query([10, 9, 0, 5]);
        let gw = Ipv4Addr::new(10, 0, 1, 2);
        let via = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Table(100),
                RouteAttribute::Oif(7),
                RouteAttribute::Gateway(RouteAddress::Inet(gw)),
            ],
        );
        assert_eq!(
            hop_of(&via, &q, "out0").unwrap(),
            Route {
                hop: gw.into(),
                source: None
            }
        );
        // The kernel names the source it selects for the socket (RTA_PREFSRC).
        let src = Ipv4Addr::new(10, 0, 1, 77);
        let on_link = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(7),
                RouteAttribute::PrefSource(RouteAddress::Inet(src)),
            ],
        );
        assert_eq!(
            hop_of(&on_link, &q, "out0").unwrap(),
            Route {
                hop: q.dest.ip(),
                source: Some(src.into())
            }
        );
    }

    fn query6(dest: &str) -> RouteQuery {
        RouteQuery {
            dest: SocketAddr::new(dest.parse().unwrap(), 6000),
            ..query([0; 4])
        }
    }

    #[test]
    fn an_ipv6_query_takes_only_an_ipv6_bound_source() {
        let dest: SocketAddr = "[2001:db8:9::5]:6000".parse().unwrap();
        let key = |bind: Option<&str>| EgressKey {
            ifindex: 7,
            ipv6: true,
            ttl: 16,
            bind: bind.map(|b| b.parse().unwrap()),
            unicast: Some(dest),
        };
        let plain = RouteQuery::of(&key(None)).unwrap();
        assert_eq!((plain.dest, plain.oif, plain.source), (dest, 7, None));
        let port_only = RouteQuery::of(&key(Some("[::]:4321"))).unwrap();
        assert_eq!(
            (port_only.source, port_only.source_port),
            (None, Some(4321))
        );
        let bound = RouteQuery::of(&key(Some("[2001:db8::1]:0"))).unwrap();
        assert_eq!(bound.source, Some("2001:db8::1".parse().unwrap()));
        let other_family = RouteQuery::of(&key(Some("10.0.0.1:0"))).unwrap();
        assert_eq!(other_family.source, None);
    }

    #[test]
    fn an_ipv6_next_hop_is_its_ipv6_gateway_or_the_destination_on_link() {
        let q = query6("2001:db8:9::5");
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        let src: Ipv6Addr = "2001:db8::77".parse().unwrap();
        let via = route(
            RouteType::Unicast,
            vec![
                RouteAttribute::Oif(7),
                RouteAttribute::Gateway(RouteAddress::Inet6(gw)),
                RouteAttribute::PrefSource(RouteAddress::Inet6(src)),
            ],
        );
        assert_eq!(
            hop_of(&via, &q, "out0").unwrap(),
            Route {
                hop: gw.into(),
                source: Some(src.into())
            }
        );
        let on_link = route(RouteType::Unicast, vec![RouteAttribute::Oif(7)]);
        assert_eq!(
            hop_of(&on_link, &q, "out0").unwrap(),
            Route {
                hop: q.dest.ip(),
                source: None
            }
        );
        let why = |r: RouteMessage| hop_of(&r, &q, "out0").unwrap_err().to_string();
        let v4 = RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(10, 0, 1, 2)));
        assert_eq!(
            why(route(RouteType::Unicast, vec![RouteAttribute::Oif(7), v4])),
            "the route to 2001:db8:9::5 goes through an IPv4 gateway, \
             which the kernel path does not do"
        );
        assert_eq!(
            why(route(RouteType::Local, vec![RouteAttribute::Oif(1)])),
            "2001:db8:9::5 is an address of this host: the kernel delivers it locally"
        );
    }

    /// The kernel's answer to `ip -6 route get ff3e::1 oif 7`: `multicast ff3e::1 from ::
    /// dev out0 table local ... src fd00::1`.
    fn multicast_answer(attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut m = route(RouteType::Multicast, attributes);
        m.header.address_family = netlink_packet_route::AddressFamily::Inet6;
        m.header.destination_prefix_length = 128;
        m
    }

    #[test]
    fn a_multicast_source_is_the_kernels_preferred_source() {
        let group: Ipv6Addr = "ff3e::1".parse().unwrap();
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let answer = multicast_answer(vec![
            RouteAttribute::Destination(RouteAddress::Inet6(group)),
            RouteAttribute::Table(255),
            RouteAttribute::Oif(7),
            RouteAttribute::PrefSource(RouteAddress::Inet6(src)),
        ]);
        assert_eq!(multicast_source_of(&answer, 7, "out0", group).unwrap(), src);
        let why = |m: RouteMessage| {
            multicast_source_of(&m, 7, "out0", group)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            why(multicast_answer(vec![RouteAttribute::Oif(7)])),
            "output out0 has no IPv6 address the kernel would send ff3e::1 from"
        );
        assert_eq!(
            why(multicast_answer(vec![RouteAttribute::Oif(8)])),
            "the kernel routes ff3e::1 out of interface index 8, not out of out0"
        );
        assert_eq!(
            why(route(RouteType::Unicast, vec![RouteAttribute::Oif(7)])),
            "the kernel routes ff3e::1 out of out0 as unicast, not as multicast"
        );
    }

    #[test]
    fn routes_the_program_cannot_follow_say_why() {
        let q = query([10, 9, 0, 5]);
        let why = |r: RouteMessage| hop_of(&r, &q, "out0").unwrap_err().to_string();
        assert_eq!(
            why(route(RouteType::Local, vec![RouteAttribute::Oif(1)])),
            "10.9.0.5 is an address of this host: the kernel delivers it locally"
        );
        assert_eq!(
            why(route(RouteType::Broadcast, vec![RouteAttribute::Oif(7)])),
            "the kernel routes 10.9.0.5 as broadcast, not as unicast"
        );
        assert_eq!(
            why(route(RouteType::Unicast, vec![RouteAttribute::Oif(8)])),
            "the kernel routes 10.9.0.5 out of interface index 8, not out of out0"
        );
        let v6 = RouteAttribute::Gateway(RouteAddress::Inet6("fe80::1".parse().unwrap()));
        assert_eq!(
            why(route(RouteType::Unicast, vec![RouteAttribute::Oif(7), v6])),
            "the route to 10.9.0.5 goes through an IPv6 gateway, which the kernel path does not do"
        );
    }

    fn entry(state: NeighbourState, lladdr: Option<&[u8]>) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.state = state;
        if let Some(l) = lladdr {
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(l.to_vec()));
        }
        m
    }

    #[test]
    fn only_entries_the_kernel_sends_to_at_once_are_used_and_stale_ones_are_confirmed() {
        let hop = Ipv4Addr::new(10, 0, 1, 2).into();
        let mac = [2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e];
        let judge = |e: Option<NeighbourMessage>| usable(e.as_ref(), hop, "out0");
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Permanent,
            NeighbourState::Noarp,
            NeighbourState::Delay,
            NeighbourState::Probe,
        ] {
            assert_eq!(
                judge(Some(entry(state, Some(&mac)))).unwrap(),
                (mac, false),
                "{state}"
            );
        }
        assert_eq!(
            judge(Some(entry(NeighbourState::Stale, Some(&mac)))).unwrap(),
            (mac, true),
            "stale: used, and confirmed"
        );
        for (state, text) in [
            (NeighbourState::Incomplete, "incomplete"),
            (NeighbourState::Failed, "failed"),
            (NeighbourState::None, "none"),
        ] {
            assert_eq!(
                judge(Some(entry(state, None))).unwrap_err().to_string(),
                format!(
                    "neighbour 10.0.1.2 on out0 is {text}, not resolved (retried every second)"
                )
            );
        }
        assert_eq!(
            judge(None).unwrap_err().to_string(),
            "no neighbour entry for 10.0.1.2 on out0 yet (retried every second)"
        );
        let hop6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            usable(None, hop6, "out0").unwrap_err().to_string(),
            "no neighbour entry for fe80::1 on out0 yet (retried every second)"
        );
        assert_eq!(
            usable(
                Some(&entry(NeighbourState::Stale, Some(&mac))),
                hop6,
                "out0"
            )
            .unwrap(),
            (mac, true),
            "IPv6 entries have the same states"
        );
        assert_eq!(
            judge(Some(entry(NeighbourState::Reachable, Some(&[1, 2, 3, 4]))))
                .unwrap_err()
                .to_string(),
            "neighbour 10.0.1.2 on out0 has a 4-byte link-layer address, not a MAC"
        );
    }

    /// A neighbour answer as the kernel sends it (`RTM_NEWNEIGH`: ndmsg, NDA_DST, NDA_LLADDR,
    /// NDA_PROBES, NDA_CACHEINFO), parsed and judged.
    #[test]
    fn a_kernel_neighbour_answer_parses_to_its_state_and_mac() {
        #[rustfmt::skip]
        let payload: Vec<u8> = [
            // ndmsg: AF_INET, ifindex 3, NUD_STALE, flags 0, RTN_UNICAST
            &[2, 0, 0, 0, 3, 0, 0, 0, 0x04, 0, 0, 1][..],
            &[8, 0, 1, 0, 10, 0, 1, 2],
            &[10, 0, 2, 0, 2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e, 0, 0],
            &[8, 0, 4, 0, 1, 0, 0, 0],
            &[20, 0, 3, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        let m = NeighbourMessage::parse(&payload).unwrap();
        assert_eq!(m.header.ifindex, 3);
        assert_eq!(
            usable(Some(&m), Ipv4Addr::new(10, 0, 1, 2).into(), "out0").unwrap(),
            ([2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e], true)
        );
    }

    /// The kernel's own lookups, which need no privilege: `lo`'s answers.
    #[test]
    fn loopback_destinations_are_local_and_have_no_neighbour() {
        let mut rtnl = Rtnl::open().unwrap();
        let q = RouteQuery {
            oif: 1,
            ..query([127, 0, 0, 1])
        };
        assert!(matches!(
            next_hop(&mut rtnl, &q, "lo"),
            Err(Unresolved::Local { .. })
        ));
        assert!(matches!(
            neighbour_mac(&mut rtnl, Ipv4Addr::new(127, 0, 0, 77).into(), 1, "lo"),
            Err(Unresolved::NoNeighbour { .. })
        ));
        let gone = RouteQuery { oif: u32::MAX, ..q };
        let e = next_hop(&mut rtnl, &gone, "gone0").unwrap_err().to_string();
        assert!(
            e.starts_with("the kernel has no route to 127.0.0.1 out of gone0 ("),
            "{e}"
        );

        let q6 = RouteQuery {
            oif: 1,
            ..query6("::1")
        };
        assert!(matches!(
            next_hop(&mut rtnl, &q6, "lo"),
            Err(Unresolved::Local { .. })
        ));
        assert!(matches!(
            neighbour_mac(&mut rtnl, "::77".parse().unwrap(), 1, "lo"),
            Err(Unresolved::NoNeighbour { .. })
        ));
    }

    /// `lo` is no multicast interface: the kernel has no route for a group out of it, and
    /// the answer names both.
    #[test]
    fn loopback_has_no_ipv6_multicast_source() {
        let mut rtnl = Rtnl::open().unwrap();
        let group: Ipv6Addr = "ff3e::1".parse().unwrap();
        let e = multicast_source(&mut rtnl, 1, "lo", group)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ff3e::1") && e.contains(" lo"), "{e}");
    }

    #[test]
    fn loopback_is_not_ethernet_and_has_127_0_0_1() {
        assert!(!link("lo").unwrap().ethernet);
        assert_eq!(ipv4_address("lo").unwrap(), Some(Ipv4Addr::LOCALHOST));
        assert!(link("nonexistent-if0").is_err());
    }
}
