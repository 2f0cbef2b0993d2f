//! From one captured frame to the datagram(s) the relay forwards: [`parse_frame`].
//!
//! The checks run in a fixed order, cheapest and most fundamental first, and the first failure
//! decides the verdict, so every frame lands in exactly one counter:
//!
//! 1. Ethernet header, then at most one VLAN tag (see "VLAN" below); EtherType neither IPv4
//!    nor IPv6 is [`Filtered::NotIp`].
//! 2. IPv4 header: version and IHL ([`Malformed::BadIpHeaderLength`]); protocol not UDP is
//!    [`Filtered::NotUdp`]. Protocol comes before the options check on purpose: IGMP carries the
//!    Router Alert option, and an IGMP report is "not ours", not malformed.
//! 3. Options, header checksum (always verified: 20 bytes cost next to nothing, and a corrupt
//!    destination would send the payload to the wrong place), fragments.
//! 4. GSO description from the vnet header, then the total length and the UDP length.
//! 5. UDP checksum, when nobody vouched for it; then the payload size.
//!
//!
//! For IPv6 (RFC 8200): the fixed header (version), the payload length (a frame shorter is
//! [`Malformed::Truncated`]), the extension headers walked to the upper layer
//! ([`crate::wire::ipv6::Packet::upper_layer`]: fragments, bad chains), protocol not UDP
//! ([`Filtered::NotUdp`]: MLD and neighbour discovery are ICMPv6), the vnet header's GSO
//! description, the UDP length against the payload, and the UDP checksum, which IPv6 makes
//! mandatory: zero is [`Malformed::BadUdpChecksum`] unless the kernel has yet to fill it in.
//! There is no header checksum to verify.
//!
//! A frame shorter than its IPv4 total length is [`Malformed::Truncated`] (the usual cause is a
//! ring frame or snap length too small for the packet), not `BadTotalLength`, which is kept for a
//! total length that contradicts the headers themselves. Bytes after the total length are Ethernet
//! padding (or an FCS) and are ignored.
//!
//! # VLAN
//!
//! We look through one tag: either the one the kernel stripped (`vlan_tci`), or, if it stripped
//! none, one in-frame 802.1Q (0x8100) or 802.1ad (0x88a8) tag. A second tag (QinQ, or an in-frame
//! tag behind a stripped one) leaves a VLAN EtherType where IPv4 should be, so the frame is
//! [`Filtered::NotIp`]: multicast is delivered on single-tagged or untagged links, and a frame
//! with two tags belongs to someone else's service VLAN.
//!
//! # GSO super-frames
//!
//! Over veth and on GRO-capable NICs a packet socket sees one frame that stands for many
//! datagrams. With `PACKET_VNET_HDR` the kernel says so in the vnet header:
//!
//! - `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation. The frame carries one IPv4 and one UDP
//!   header and a payload that is a run of `gso_size`-byte datagram payloads (the last may be
//!   shorter). This is [`Parsed::Segmented`]. Linux writes the lengths of the whole super-packet:
//!   a `UDP_SEGMENT` send sets `tot_len` and `uh->len` to the full length (`__ip_make_skb`,
//!   `udp_send_skb`), UDP GRO rewrites both to the merged length (`inet_gro_complete`,
//!   `udp_gro_complete`), and both fit because UDP GSO and GRO stop at 64 KiB. So the usual length
//!   checks apply unchanged. The one exception we accept is the convention from IPv4 BIG TCP
//!   (`iph_totlen()`): a super-packet longer than 65535 bytes has `tot_len` 0 (and then a UDP
//!   length of 0); it extends to the end of the frame. The UDP checksum field of a super-frame
//!   holds a pseudo-header sum for the whole run (it is `CHECKSUM_PARTIAL`; segmentation computes
//!   each datagram's checksum), so it is never verified here.
//! - `VIRTIO_NET_HDR_GSO_UDP` (UFO): one UDP datagram bigger than the MTU that would have been
//!   IP-fragmented on the wire. It is a single datagram, and the relay re-sends a payload, not
//!   fragments, so it is parsed as one [`Parsed::Datagram`] (subject to `max_payload`); its
//!   `gso_size` is a fragment size and does not matter to us.
//! - TCP types on a UDP frame, unknown types, and UDP_L4 with `gso_size` 0 are
//!   [`Malformed::BadGso`]. The ECN flag bit is ignored (TCP-only, harmless).

use std::iter::FusedIterator;
use std::net::{IpAddr, Ipv4Addr};

use super::ethernet::{self, ethertype};
use super::vnet::{self, VnetHeader};
use super::{ipv4, ipv6, udp, vlan, Filtered, Malformed};

/// What the kernel told us about the checksum (from the TPACKET status or the vnet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumHint {
    /// Verify the UDP checksum ourselves (if the packet has one, i.e. nonzero).
    Unverified,
    /// The kernel/NIC already verified it (`TP_STATUS_CSUM_VALID` or
    /// `VIRTIO_NET_HDR_F_DATA_VALID`).
    Verified,
    /// The checksum is not filled in yet (locally generated, `TP_STATUS_CSUMNOTREADY` or
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`): do not verify.
    Partial,
}

impl ChecksumHint {
    #[inline]
    fn must_verify(self) -> bool {
        self == ChecksumHint::Unverified
    }
}

/// One valid UDP datagram over IPv4 or IPv6, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The VLAN id (low 12 bits of the tag) if the frame was tagged, in-frame or stripped.
    pub vlan_id: Option<u16>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address (the group, for multicast).
    pub dst: IpAddr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// IPv4 time to live or IPv6 hop limit as received.
    pub ttl: u8,
    /// The IPv4 type-of-service or IPv6 traffic-class byte as received: DSCP (high six bits)
    /// and ECN (low two).
    pub tos: u8,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// A parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// One datagram.
    Datagram(Datagram<'a>),
    /// A GSO/GRO super-frame: `first.payload` is the whole run of payloads, to be cut into
    /// segments of `segment_size` bytes (the last may be shorter); always at least two segments.
    /// Each segment is an independent datagram with the addresses, ports and TTL of `first`.
    /// [`Parsed::datagrams`] does the cutting; a sender that supports `UDP_SEGMENT` can instead
    /// pass the whole payload with the same segment size.
    Segmented {
        /// The shared headers, with the whole super-payload.
        first: Datagram<'a>,
        /// Payload bytes per segment, 1..=`max_payload`.
        segment_size: u16,
    },
    /// Well-formed but not ours.
    Filtered(Filtered),
    /// Rejected; the kind says why.
    Malformed(Malformed),
}

impl<'a> Parsed<'a> {
    /// The datagrams to forward: one for [`Parsed::Datagram`], one per segment for
    /// [`Parsed::Segmented`], none otherwise.
    #[inline]
    pub fn datagrams(&self) -> Segments<'a> {
        match *self {
            Parsed::Datagram(datagram) => Segments {
                template: datagram,
                rest: datagram.payload,
                segment_size: datagram.payload.len(),
                remaining: 1,
            },
            Parsed::Segmented {
                first,
                segment_size,
            } => {
                let segment_size = usize::from(segment_size).max(1);
                Segments {
                    template: first,
                    rest: first.payload,
                    segment_size,
                    remaining: first.payload.len().div_ceil(segment_size),
                }
            }
            Parsed::Filtered(_) | Parsed::Malformed(_) => Segments {
                template: EMPTY_DATAGRAM,
                rest: &[],
                segment_size: 0,
                remaining: 0,
            },
        }
    }
}

const EMPTY_DATAGRAM: Datagram<'static> = Datagram {
    vlan_id: None,
    src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    src_port: 0,
    dst_port: 0,
    ttl: 0,
    tos: 0,
    payload: &[],
};

/// Iterator over the datagrams of a [`Parsed`] frame; see [`Parsed::datagrams`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    template: Datagram<'a>,
    rest: &'a [u8],
    segment_size: usize,
    remaining: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = Datagram<'a>;

    #[inline]
    fn next(&mut self) -> Option<Datagram<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (payload, rest) = self.rest.split_at(self.segment_size.min(self.rest.len()));
        self.rest = rest;
        Some(Datagram {
            payload,
            ..self.template
        })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Segments<'_> {}
impl FusedIterator for Segments<'_> {}

/// Parse one frame as received on an `AF_PACKET` `SOCK_RAW` socket.
///
/// `frame` starts at the Ethernet header (after the vnet header, which is passed separately as
/// `vnet` when the socket has `PACKET_VNET_HDR`). `vlan_tci` is the tag the kernel stripped
/// ([`tpacket_vlan_tci`]), if any. `csum` is the checksum state from `tp_status`
/// ([`ChecksumHint::from_tpacket_status`]); the vnet header's flags are consulted too, and the UDP
/// checksum is verified only if neither source vouches for it or marks it partial. `max_payload` is
/// the largest UDP payload the relay can forward; bigger is [`Malformed::Oversize`].
///
/// See the module documentation for the order of checks, VLAN and GSO handling.
#[inline]
pub fn parse_frame<'a>(
    frame: &'a [u8],
    vnet: Option<&VnetHeader>,
    vlan_tci: Option<u16>,
    csum: ChecksumHint,
    max_payload: usize,
) -> Parsed<'a> {
    match parse(frame, vnet, vlan_tci, csum, max_payload) {
        Ok(parsed) => parsed,
        Err(Reject::Filtered(kind)) => Parsed::Filtered(kind),
        Err(Reject::Malformed(kind)) => Parsed::Malformed(kind),
    }
}

/// The two ways out of [`parse`] other than success, so `?` works on every layer's result.
enum Reject {
    Filtered(Filtered),
    Malformed(Malformed),
}

impl From<Filtered> for Reject {
    #[inline]
    fn from(kind: Filtered) -> Reject {
        Reject::Filtered(kind)
    }
}

impl From<Malformed> for Reject {
    #[inline]
    fn from(kind: Malformed) -> Reject {
        Reject::Malformed(kind)
    }
}

/// How the payload of a UDP frame is to be divided, from the vnet header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Segmentation {
    /// One datagram (no vnet header, GSO_NONE, or UFO).
    Whole,
    /// UDP GSO: payloads of `segment_size` bytes each.
    Segments { segment_size: u16 },
}

#[inline]
fn segmentation(vnet: Option<&VnetHeader>) -> Result<Segmentation, Malformed> {
    let Some(header) = vnet else {
        return Ok(Segmentation::Whole);
    };
    match header.gso_kind() {
        vnet::VIRTIO_NET_HDR_GSO_NONE | vnet::VIRTIO_NET_HDR_GSO_UDP => Ok(Segmentation::Whole),
        vnet::VIRTIO_NET_HDR_GSO_UDP_L4 if header.gso_size > 0 => Ok(Segmentation::Segments {
            segment_size: header.gso_size,
        }),
        _ => Err(Malformed::BadGso),
    }
}

/// Largest length an IPv4 total length or UDP length field can state.
const MAX_LENGTH_FIELD: usize = u16::MAX as usize;

#[inline]
fn parse<'a>(
    frame: &'a [u8],
    vnet: Option<&VnetHeader>,
    vlan_tci: Option<u16>,
    csum: ChecksumHint,
    max_payload: usize,
) -> Result<Parsed<'a>, Reject> {
    let ethernet = ethernet::Frame::new_checked(frame)?;
    let (vlan_id, ethertype, network) = match (vlan_tci, ethernet.ethertype()) {
        (None, ethertype::VLAN | ethertype::QINQ) => {
            let tag = vlan::Tag::new_checked(ethernet.payload())?;
            (Some(tag.vid()), tag.ethertype(), tag.payload())
        }
        (tci, ethertype) => (tci.map(vlan::vid_of), ethertype, ethernet.payload()),
    };
    // Read once: the family's checks ask whether this is a GSO frame, the split below how.
    let hint = Hint {
        vnet,
        csum,
        segmentation: segmentation(vnet),
    };
    let first = match ethertype {
        ethertype::IPV4 => ipv4_datagram(network, vlan_id, hint)?,
        ethertype::IPV6 => ipv6_datagram(network, vlan_id, hint)?,
        _ => return Err(Filtered::NotIp.into()),
    };
    match hint.segmentation? {
        Segmentation::Segments { segment_size }
            if first.payload.len() > usize::from(segment_size) =>
        {
            if usize::from(segment_size) > max_payload {
                return Err(Malformed::Oversize.into());
            }
            Ok(Parsed::Segmented {
                first,
                segment_size,
            })
        }
        // No segmentation, or a GSO frame with a single segment: one ordinary datagram.
        _ => {
            if first.payload.len() > max_payload {
                return Err(Malformed::Oversize.into());
            }
            Ok(Parsed::Datagram(first))
        }
    }
}

/// What the kernel said about a frame: its vnet header (GSO, checksum state) and the
/// checksum state from the ring.
#[derive(Clone, Copy)]
struct Hint<'v> {
    vnet: Option<&'v VnetHeader>,
    csum: ChecksumHint,
    /// The vnet header's segmentation, or why it is refused (reported where each family's
    /// checks come to it, so that the order of verdicts stays the documented one).
    segmentation: Result<Segmentation, Malformed>,
}

impl Hint<'_> {
    /// Whether the frame is a UDP GSO super-frame.
    #[inline]
    fn is_gso(self) -> Result<bool, Malformed> {
        Ok(matches!(self.segmentation?, Segmentation::Segments { .. }))
    }

    /// Whether the kernel or the NIC vouched for the checksum or left it to be filled in.
    #[inline]
    fn vouched_for(self) -> bool {
        !self.csum.must_verify() || self.vnet.is_some_and(|v| !v.checksum_hint().must_verify())
    }

    /// Whether the checksum field is not filled in yet (locally generated).
    #[inline]
    fn partial(self) -> bool {
        self.csum == ChecksumHint::Partial
            || self
                .vnet
                .is_some_and(|v| v.checksum_hint() == ChecksumHint::Partial)
    }
}

/// The IPv4 half of [`parse`]: header checks in the order of the module documentation.
#[inline]
fn ipv4_datagram<'a>(
    network: &'a [u8],
    vlan_id: Option<u16>,
    hint: Hint<'_>,
) -> Result<Datagram<'a>, Reject> {
    let ip = ipv4::Packet::new_checked(network)?;
    if ip.protocol() != ipv4::protocol::UDP {
        return Err(Filtered::NotUdp.into());
    }
    if ip.has_options() {
        return Err(Malformed::IpOptions.into());
    }
    if !ip.verify_checksum() {
        return Err(Malformed::BadIpChecksum.into());
    }
    if ip.is_fragment() {
        return Err(Malformed::Fragment.into());
    }

    let is_gso = hint.is_gso()?;
    let ip_payload = match ip.payload() {
        Ok(payload) => payload,
        // A GSO super-packet too long for the 16-bit field (see the module docs).
        Err(Malformed::BadTotalLength)
            if is_gso
                && ip.total_len() == 0
                && ip.header_len() + ip.bytes_after_header().len() > MAX_LENGTH_FIELD =>
        {
            ip.bytes_after_header()
        }
        Err(kind) => return Err(kind.into()),
    };
    // The total length must leave room for the UDP header.
    let datagram = udp::Packet::new_checked(ip_payload).map_err(|_| Malformed::BadTotalLength)?;
    if let Err(kind) = datagram.check_length() {
        let unstated_gso_length =
            is_gso && datagram.length() == 0 && ip_payload.len() > MAX_LENGTH_FIELD;
        if !unstated_gso_length {
            return Err(kind.into());
        }
    }

    let source = ip.source();
    let destination = ip.destination();
    let must_verify = !hint.vouched_for() && !is_gso && datagram.checksum() != 0;
    if must_verify && !datagram.verify_checksum(source, destination) {
        return Err(Malformed::BadUdpChecksum.into());
    }
    Ok(Datagram {
        vlan_id,
        src: IpAddr::V4(source),
        dst: IpAddr::V4(destination),
        src_port: datagram.source_port(),
        dst_port: datagram.destination_port(),
        ttl: ip.ttl(),
        tos: ip.dscp() << 2 | ip.ecn(),
        payload: datagram.payload(),
    })
}

/// The IPv6 half of [`parse`]: the fixed header, the payload length, the extension headers
/// to UDP, then the UDP checks as for IPv4, except that a zero UDP checksum is malformed
/// (IPv6 makes it mandatory) unless the kernel has yet to fill it in.
#[inline]
fn ipv6_datagram<'a>(
    network: &'a [u8],
    vlan_id: Option<u16>,
    hint: Hint<'_>,
) -> Result<Datagram<'a>, Reject> {
    let ip = ipv6::Packet::new_checked(network)?;
    let ip_payload = ip.payload()?;
    let upper = ip.upper_layer(ip_payload)?;
    if upper.protocol != ipv6::next_header::UDP {
        return Err(Filtered::NotUdp.into());
    }
    let is_gso = hint.is_gso()?;
    let udp_bytes = ip_payload.get(upper.extension_len..).unwrap_or_default();
    // The payload length must leave room for the UDP header.
    let datagram = udp::Packet::new_checked(udp_bytes).map_err(|_| Malformed::BadTotalLength)?;
    datagram.check_length()?;

    let source = ip.source();
    let destination = ip.destination();
    if datagram.checksum() == 0 && !is_gso && !hint.partial() {
        return Err(Malformed::BadUdpChecksum.into());
    }
    let must_verify = !hint.vouched_for() && !is_gso;
    if must_verify && !datagram.verify_checksum_ipv6(&source, &destination) {
        return Err(Malformed::BadUdpChecksum.into());
    }
    Ok(Datagram {
        vlan_id,
        src: IpAddr::V6(source),
        dst: IpAddr::V6(destination),
        src_port: datagram.source_port(),
        dst_port: datagram.destination_port(),
        ttl: ip.hop_limit(),
        tos: ip.traffic_class(),
        payload: datagram.payload(),
    })
}

#[cfg(test)]
mod tests;
