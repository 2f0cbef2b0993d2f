//! A synchronous rtnetlink client for the questions [`super`] asks, for IPv4 and IPv6: a
//! route lookup (`RTM_GETROUTE`, a unicast output's or an IPv6 multicast group's), one
//! neighbour entry (`RTM_GETNEIGH`), and "use this neighbour" (`RTM_NEWNEIGH` with
//! `NTF_USE`).
//!
//! rtnetlink answers a request while `send` runs (in the sender's context), so a reply is
//! already queued when we read; the read timeout only guards against a kernel that does not
//! answer. Messages are built and parsed by `netlink-packet-route`; the socket is socket2's.
//! A reply is matched to its request by sequence number, so one left over from a request
//! that timed out is skipped rather than taken for the next answer.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use socket2::Socket;

use super::RouteQuery;

/// How long to wait for the kernel's answer. It is normally there before `send` returns; a
/// plan that waited longer would hold the controller (and control replies) that long.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);

/// Receive buffer: the answers asked for here are a few hundred bytes (one route or one
/// neighbour, or an acknowledgement).
const RECV_BUF: usize = 16 << 10;

/// The kernel's answer to one request: the message, or the error it refused the request with
/// (`ENOENT` for a missing neighbour entry, `EHOSTUNREACH` for an unreachable route, ...).
pub(crate) type Answer<T> = Result<T, io::Error>;

/// A `NETLINK_ROUTE` socket.
pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    pub(crate) fn open() -> io::Result<Self> {
        let sock = crate::sys::netlink::route_socket(Some(REPLY_TIMEOUT))?;
        Ok(Self {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// The route the kernel takes for `q` (`ip route get DEST oif IF [from SRC] ...`).
    pub(crate) fn route(&mut self, q: &RouteQuery) -> io::Result<Answer<RouteMessage>> {
        self.get_route(route_request(q))
    }

    /// The route the kernel takes for a socket sending to multicast `group` out of interface
    /// `oif` (`ip -6 route get GROUP oif IF`).
    pub(crate) fn multicast_route(
        &mut self,
        group: Ipv6Addr,
        oif: u32,
    ) -> io::Result<Answer<RouteMessage>> {
        self.get_route(output_lookup(group.into(), oif))
    }

    fn get_route(&mut self, request: RouteMessage) -> io::Result<Answer<RouteMessage>> {
        let request = RouteNetlinkMessage::GetRoute(request);
        Ok(match self.ask(request, 0)? {
            Ok(Some(RouteNetlinkMessage::NewRoute(m))) => Ok(m),
            Ok(other) => return Err(unexpected(other)),
            Err(e) => Err(e),
        })
    }

    /// The neighbour entry for `ip` on interface `ifindex` (`ip neigh get IP dev IF`).
    pub(crate) fn neighbour(
        &mut self,
        ip: IpAddr,
        ifindex: u32,
    ) -> io::Result<Answer<NeighbourMessage>> {
        let request = RouteNetlinkMessage::GetNeighbour(neighbour_request(ip, ifindex, false));
        Ok(match self.ask(request, 0)? {
            Ok(Some(RouteNetlinkMessage::NewNeighbour(m))) => Ok(m),
            Ok(other) => return Err(unexpected(other)),
            Err(e) => Err(e),
        })
    }

    /// Uses the existing entry for `ip` on `ifindex` as a transmit through it would
    /// (`neigh_event_send`): a stale entry goes to DELAY and the kernel confirms it
    /// (`ip neigh change IP dev IF use`). Needs `CAP_NET_ADMIN`.
    ///
    /// Only for an entry just seen stale: on a PERMANENT one `NTF_USE` also clears
    /// PERMANENT (`neigh_add` passes `NEIGH_UPDATE_F_USE` to `__neigh_update`; Linux 5.16,
    /// "net, neigh: Enable state migration between NUD_PERMANENT and NTF_USE"), turning an
    /// administrator's static entry into one the kernel may expire.
    pub(crate) fn use_neighbour(&mut self, ip: IpAddr, ifindex: u32) -> io::Result<Answer<()>> {
        let request = RouteNetlinkMessage::NewNeighbour(neighbour_request(ip, ifindex, true));
        Ok(self.ask(request, NLM_F_ACK)?.map(|_| ()))
    }

    /// Sends `msg` and reads until the answer to it: `Ok(Some(message))`, `Ok(None)` for an
    /// acknowledgement, or the kernel's error. The outer error is the socket's.
    fn ask(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Answer<Option<RouteNetlinkMessage>>> {
        self.seq = self.seq.wrapping_add(1);
        let out = serialize(msg, flags, self.seq);
        self.sock.send(&out)?;
        loop {
            let n = match (&self.sock).read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from rtnetlink in {REPLY_TIMEOUT:?}"),
                    ))
                }
                Err(e) => return Err(e),
            };
            for m in messages(&self.buf[..n]) {
                let m = m?;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(inner) => return Ok(Ok(Some(inner))),
                    NetlinkPayload::Error(e) => {
                        return Ok(match e.code {
                            None => Ok(None),
                            Some(_) => Err(e.to_io()),
                        })
                    }
                    NetlinkPayload::Done(_) => return Ok(Ok(None)),
                    _ => {}
                }
            }
        }
    }
}

/// The request bytes of `msg` with `NLM_F_REQUEST | flags` and sequence number `seq`.
fn serialize(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = NLM_F_REQUEST | flags;
    nl.header.sequence_number = seq;
    nl.finalize();
    let mut out = vec![0; nl.buffer_len()];
    nl.serialize(&mut out);
    out
}

/// The netlink messages of one datagram.
fn messages(
    mut buf: &[u8],
) -> impl Iterator<Item = io::Result<NetlinkMessage<RouteNetlinkMessage>>> + '_ {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let parsed = NetlinkBuffer::new_checked(buf)
            .map(|b| b.length() as usize)
            .and_then(|len| {
                let m = NetlinkMessage::deserialize(&buf[..len])?;
                // Messages are padded to 4 bytes (NLMSG_ALIGN); the last may not be.
                buf = &buf[len.next_multiple_of(4).min(buf.len())..];
                Ok(m)
            })
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
        if parsed.is_err() {
            buf = &[];
        }
        Some(parsed)
    })
}

fn unexpected(answer: Option<RouteNetlinkMessage>) -> io::Error {
    let what = match answer {
        None => "an acknowledgement".to_string(),
        Some(m) => format!("message type {}", m.message_type()),
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("rtnetlink answered with {what}"),
    )
}

/// `RTM_GETROUTE` for an output lookup: what `udp_sendmsg` puts in its flow for a socket
/// bound to the output's device (and address and port, when the output names them) sending
/// to the destination. No `RTA_IIF`, so the kernel does an output lookup; without `RTA_UID`
/// it uses the asking process's uid, as it does for that process's sockets; `RTA_IP_PROTO`
/// defaults to UDP; mcrd's sockets set no mark.
pub(super) fn route_request(q: &RouteQuery) -> RouteMessage {
    let mut m = output_lookup(q.dest.ip(), q.oif);
    m.attributes.push(RouteAttribute::Dport(q.dest.port()));
    if let Some(src) = q
        .source
        .filter(|s| !s.is_unspecified() && s.is_ipv6() == q.dest.is_ipv6())
    {
        m.header.source_prefix_length = host_prefix(src);
        m.attributes
            .push(RouteAttribute::Source(route_address(src)));
    }
    if let Some(port) = q.source_port {
        m.attributes.push(RouteAttribute::Sport(port));
    }
    m
}

/// An output lookup (no `RTA_IIF`) for `dest` out of interface `oif`, in `dest`'s family:
/// the part of every request here that is not about ports or a bound source.
fn output_lookup(dest: IpAddr, oif: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(dest);
    m.header.destination_prefix_length = host_prefix(dest);
    m.attributes = vec![
        RouteAttribute::Destination(route_address(dest)),
        RouteAttribute::Oif(oif),
    ];
    m
}

fn family(a: IpAddr) -> AddressFamily {
    match a {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The prefix length of a single address of `a`'s family (32 or 128).
fn host_prefix(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn route_address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

/// `RTM_GETNEIGH` for one entry, or with `use_it` the `RTM_NEWNEIGH` that uses it (`NTF_USE`,
/// without `NLM_F_CREATE`: only an existing entry).
pub(super) fn neighbour_request(ip: IpAddr, ifindex: u32, use_it: bool) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(ip);
    m.header.ifindex = ifindex;
    if use_it {
        m.header.flags = NeighbourFlags::Use;
    }
    let dest = match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    };
    m.attributes = vec![NeighbourAttribute::Destination(dest)];
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    /// The request for `ip route get 10.9.0.5 oif 7 from 10.0.0.1 sport 4321 dport 6000`,
    /// byte by byte as `linux/rtnetlink.h` lays it out.
    #[test]
    fn a_route_request_carries_what_the_socket_would_route_by() {
        let q = RouteQuery {
            dest: SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 5), 6000).into(),
            oif: 7,
            source: Some(Ipv4Addr::new(10, 0, 0, 1).into()),
            source_port: Some(4321),
        };
        let bytes = serialize(RouteNetlinkMessage::GetRoute(route_request(&q)), 0, 42);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // nlmsghdr: length 68, RTM_GETROUTE (26), NLM_F_REQUEST, seq 42, port 0
            &[68, 0, 0, 0, 26, 0, 1, 0, 42, 0, 0, 0, 0, 0, 0, 0][..],
            // rtmsg: AF_INET, dst_len 32, src_len 32, tos, table, protocol, scope, type, flags
            &[2, 32, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // RTA_DST 10.9.0.5
            &[8, 0, 1, 0, 10, 9, 0, 5],
            // RTA_OIF 7 (host order)
            &[8, 0, 4, 0, 7, 0, 0, 0],
            // RTA_DPORT 6000 (network order), padded
            &[6, 0, 29, 0, 0x17, 0x70, 0, 0],
            // RTA_SRC 10.0.0.1
            &[8, 0, 2, 0, 10, 0, 0, 1],
            // RTA_SPORT 4321, padded
            &[6, 0, 28, 0, 0x10, 0xe1, 0, 0],
        ]
        .concat();
        assert_eq!(bytes, want);

        let plain = RouteQuery {
            source: None,
            source_port: None,
            ..q
        };
        let m = route_request(&plain);
        assert_eq!(m.header.source_prefix_length, 0);
        assert_eq!(m.attributes.len(), 3, "no source, no source port");
        let unspecified = RouteQuery {
            source: Some(Ipv4Addr::UNSPECIFIED.into()),
            ..plain
        };
        assert_eq!(route_request(&unspecified), m, "0.0.0.0 is no source");
    }

    /// The request for `ip -6 route get 2001:db8::5 oif 7 from 2001:db8::1 sport 4321 dport
    /// 6000`: `AF_INET6`, /128 prefixes and 16-byte addresses, the rest as for IPv4.
    #[test]
    fn an_ipv6_route_request_has_its_family_and_128_bit_prefixes() {
        let q = RouteQuery {
            dest: "[2001:db8::5]:6000".parse().unwrap(),
            oif: 7,
            source: Some("2001:db8::1".parse().unwrap()),
            source_port: Some(4321),
        };
        let bytes = serialize(RouteNetlinkMessage::GetRoute(route_request(&q)), 0, 42);
        let v6 = |last: u8| {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[15] = last;
            a
        };
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // nlmsghdr: length 92, RTM_GETROUTE (26), NLM_F_REQUEST, seq 42, port 0
            &[92, 0, 0, 0, 26, 0, 1, 0, 42, 0, 0, 0, 0, 0, 0, 0][..],
            // rtmsg: AF_INET6 (10), dst_len 128, src_len 128, the rest 0
            &[10, 128, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            // RTA_DST 2001:db8::5
            &[20, 0, 1, 0], &v6(5),
            // RTA_OIF 7
            &[8, 0, 4, 0, 7, 0, 0, 0],
            // RTA_DPORT 6000, padded
            &[6, 0, 29, 0, 0x17, 0x70, 0, 0],
            // RTA_SRC 2001:db8::1
            &[20, 0, 2, 0], &v6(1),
            // RTA_SPORT 4321, padded
            &[6, 0, 28, 0, 0x10, 0xe1, 0, 0],
        ]
        .concat();
        assert_eq!(bytes, want);
        let unspecified = RouteQuery {
            source: Some(Ipv6Addr::UNSPECIFIED.into()),
            source_port: None,
            ..q
        };
        let m = route_request(&unspecified);
        assert_eq!(m.header.source_prefix_length, 0, ":: is no source");
        assert_eq!(m.attributes.len(), 3);
    }

    /// `ip -6 route get ff3e::1 oif 7`: what an unbound socket's lookup has, no ports.
    #[test]
    fn a_multicast_route_request_has_the_group_and_interface_only() {
        let m = output_lookup("ff3e::1".parse().unwrap(), 7);
        let bytes = serialize(RouteNetlinkMessage::GetRoute(m), 0, 3);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[56, 0, 0, 0, 26, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0][..],
            &[10, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[20, 0, 1, 0, 0xff, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[8, 0, 4, 0, 7, 0, 0, 0],
        ]
        .concat();
        assert_eq!(bytes, want);
    }

    #[test]
    fn an_ipv6_neighbour_request_asks_the_ipv6_table() {
        let ip: IpAddr = "fe80::1".parse().unwrap();
        let get = serialize(
            RouteNetlinkMessage::GetNeighbour(neighbour_request(ip, 3, false)),
            0,
            1,
        );
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // nlmsghdr: length 48, RTM_GETNEIGH (30), NLM_F_REQUEST, seq 1
            &[48, 0, 0, 0, 30, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0][..],
            // ndmsg: AF_INET6, pad, ifindex 3, state 0, flags 0, type 0
            &[10, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0],
            // NDA_DST fe80::1
            &[20, 0, 1, 0, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ]
        .concat();
        assert_eq!(get, want);
        let use_it = serialize(
            RouteNetlinkMessage::NewNeighbour(neighbour_request(ip, 3, true)),
            NLM_F_ACK,
            2,
        );
        assert_eq!(use_it[16], 10, "AF_INET6");
        assert_eq!(use_it[16 + 10], 1, "ndm_flags = NTF_USE");
    }

    #[test]
    fn a_neighbour_request_names_the_entry_and_only_use_sets_ntf_use() {
        let get = serialize(
            RouteNetlinkMessage::GetNeighbour(neighbour_request(
                Ipv4Addr::new(10, 0, 1, 2).into(),
                3,
                false,
            )),
            0,
            1,
        );
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // nlmsghdr: length 36, RTM_GETNEIGH (30), NLM_F_REQUEST, seq 1
            &[36, 0, 0, 0, 30, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0][..],
            // ndmsg: AF_INET, pad, ifindex 3, state 0, flags 0, type 0
            &[2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0],
            // NDA_DST 10.0.1.2
            &[8, 0, 1, 0, 10, 0, 1, 2],
        ]
        .concat();
        assert_eq!(get, want);
        let use_it = serialize(
            RouteNetlinkMessage::NewNeighbour(neighbour_request(
                Ipv4Addr::new(10, 0, 1, 2).into(),
                3,
                true,
            )),
            NLM_F_ACK,
            2,
        );
        assert_eq!(&use_it[4..8], &[28, 0, 5, 0], "RTM_NEWNEIGH, REQUEST|ACK");
        assert_eq!(use_it[16 + 10], 1, "ndm_flags = NTF_USE");
        assert_eq!(use_it[16 + 8], 0, "ndm_state untouched");
    }

    #[test]
    fn replies_are_split_at_their_padded_lengths_and_garbage_is_an_error() {
        // An acknowledgement (NLMSG_ERROR, code 0) for seq 5, then NLMSG_DONE for seq 6.
        #[rustfmt::skip]
        let two: Vec<u8> = [
            &[36, 0, 0, 0, 2, 0, 0, 1, 5, 0, 0, 0, 0, 0, 0, 0][..],
            &[0, 0, 0, 0],
            &[16, 0, 0, 0, 28, 0, 5, 0, 5, 0, 0, 0, 0, 0, 0, 0],
            &[20, 0, 0, 0, 3, 0, 2, 0, 6, 0, 0, 0, 0, 0, 0, 0],
            &[0, 0, 0, 0],
        ]
        .concat();
        let got: Vec<_> = messages(&two).collect::<io::Result<_>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].header.sequence_number, 5);
        assert!(matches!(&got[0].payload, NetlinkPayload::Error(e) if e.code.is_none()));
        assert!(matches!(got[1].payload, NetlinkPayload::Done(_)));
        let truncated = &two[..10];
        let got: Vec<_> = messages(truncated).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }

    /// The kernel's own answers, which need no privilege: a route to a local address goes
    /// out of `lo`, and `lo` has no neighbour entry for a made-up address.
    #[test]
    fn the_kernel_answers_a_route_and_a_missing_neighbour() {
        let mut rtnl = Rtnl::open().unwrap();
        let q = RouteQuery {
            dest: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9).into(),
            oif: 1,
            source: None,
            source_port: None,
        };
        let route = rtnl.route(&q).unwrap().unwrap();
        assert!(
            route.attributes.contains(&RouteAttribute::Oif(1)),
            "{route:?}"
        );
        let missing = rtnl
            .neighbour(Ipv4Addr::new(127, 0, 0, 77).into(), 1)
            .unwrap()
            .unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT), "{missing}");
        let no_device = rtnl.route(&RouteQuery { oif: u32::MAX, ..q }).unwrap();
        assert_eq!(no_device.unwrap_err().raw_os_error(), Some(libc::ENODEV));

        // And in the IPv6 tables: ::1 is local on lo, which has no IPv6 neighbours either.
        let q6 = RouteQuery {
            dest: "[::1]:9".parse().unwrap(),
            ..q
        };
        let route = rtnl.route(&q6).unwrap().unwrap();
        assert_eq!(route.header.address_family, AddressFamily::Inet6);
        assert!(
            route.attributes.contains(&RouteAttribute::Oif(1)),
            "{route:?}"
        );
        let missing = rtnl
            .neighbour("::77".parse().unwrap(), 1)
            .unwrap()
            .unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT), "{missing}");
    }
}
