//! IPv6 header (RFC 8200) and the extension headers between it and UDP.
//!
//! [`Packet::new_checked`] validates the 40-byte fixed header and the version, so its getters
//! cannot fail. [`Packet::upper_layer`] walks the extension-header chain to the upper-layer
//! protocol, checking every length against the bytes given. The payload length is checked
//! separately by [`Packet::payload`], because what counts as valid depends on the caller (GSO
//! super-frames, see `frame/mod.rs`).
//!
//! A wrong version with EtherType IPv6 is [`Malformed::BadIpHeaderLength`], as for IPv4: the
//! first byte of the header is not usable.

use std::net::Ipv6Addr;

use super::checksum;
use super::Malformed;

/// Next-header values the parser acts on (IANA "Assigned Internet Protocol Numbers").
pub mod next_header {
    /// Hop-by-hop options (router alert, jumbo payload): always first.
    pub const HOP_BY_HOP: u8 = 0;
    /// User Datagram Protocol: the only upper layer the relay forwards.
    pub const UDP: u8 = 17;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload: the UDP header, if any, is encrypted.
    pub const ESP: u8 = 50;
    /// Authentication header.
    pub const AUTHENTICATION: u8 = 51;
    /// ICMPv6, which carries MLD and neighbour discovery: never ours.
    pub const ICMPV6: u8 = 58;
    /// No next header.
    pub const NONE: u8 = 59;
    /// Destination options.
    pub const DESTINATION_OPTIONS: u8 = 60;
}

/// Byte ranges of the fixed header's fields.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VERSION_TRAFFIC_CLASS: Field = 0..2;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SOURCE: Field = 8..24;
    pub const DESTINATION: Field = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers walked before UDP. Real traffic has at most two (hop-by-hop with a
/// router alert, a fragment header); the bound keeps a hostile chain from costing more.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Fragment offset (in 8-byte units, high 13 bits) and the "more fragments" bit of the
/// fragment header's second 16-bit word.
const FRAGMENT_OFFSET_MASK: u16 = 0xfff8;
const MORE_FRAGMENTS: u16 = 0x0001;

/// Where the upper-layer header starts and which protocol it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The next-header value of the last header in the chain.
    pub protocol: u8,
    /// Bytes of extension headers between the fixed header and the upper-layer header.
    pub extension_len: usize,
}

/// A zero-copy view of an IPv6 packet whose fixed header is known to be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps untrusted bytes that start at the IPv6 header and run to the end of the frame.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let Some(header) = buffer.as_ref().first_chunk::<HEADER_LEN>() else {
            return Err(Malformed::Truncated);
        };
        if header[0] >> 4 != 6 {
            return Err(Malformed::BadIpHeaderLength);
        }
        Ok(Packet { buffer })
    }

    /// The fixed header; `new_checked` guaranteed it exists.
    #[inline(always)]
    fn fixed(&self) -> &[u8; HEADER_LEN] {
        self.buffer
            .as_ref()
            .first_chunk::<HEADER_LEN>()
            .unwrap_or(&[0; HEADER_LEN])
    }

    #[inline(always)]
    fn read_u16(&self, range: field::Field) -> u16 {
        let bytes = &self.fixed()[range];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    #[inline(always)]
    fn read_addr(&self, range: field::Field) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.fixed()[range]);
        Ipv6Addr::from(octets)
    }

    /// The traffic class byte: DSCP (high six bits) and ECN (low two), as IPv4's TOS byte.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.read_u16(field::VERSION_TRAFFIC_CLASS) >> 4) as u8
    }

    /// The payload length field: everything after the fixed header, extension headers
    /// included, as the sender wrote it.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        self.read_u16(field::PAYLOAD_LEN)
    }

    /// The first next-header value (of the fixed header).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.fixed()[field::NEXT_HEADER]
    }

    /// The hop limit as received.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.fixed()[field::HOP_LIMIT]
    }

    /// The source address.
    #[inline]
    pub fn source(&self) -> Ipv6Addr {
        self.read_addr(field::SOURCE)
    }

    /// The destination address.
    #[inline]
    pub fn destination(&self) -> Ipv6Addr {
        self.read_addr(field::DESTINATION)
    }

    /// Walks the extension headers in `after_header` (the bytes after the fixed header, as
    /// delimited by the payload length) to the upper-layer protocol.
    ///
    /// Hop-by-hop, destination options and routing headers without segments left are
    /// stepped over; an atomic fragment (offset 0, no more fragments; RFC 6946) is too.
    ///
    /// Errors: [`Malformed::Fragment`] for a real fragment of UDP (the relay does not
    /// reassemble; a fragment of another protocol is reported as that protocol),
    /// [`Malformed::Truncated`] when a header runs past the payload,
    /// [`Malformed::ExtensionHeaders`] for a chain longer than [`MAX_EXTENSION_HEADERS`], a
    /// hop-by-hop header anywhere but first, or a routing header with segments left (the
    /// destination is not the final one).
    #[inline]
    pub fn upper_layer(&self, after_header: &[u8]) -> Result<UpperLayer, Malformed> {
        let mut protocol = self.next_header();
        let mut offset = 0usize;
        for position in 0..=MAX_EXTENSION_HEADERS {
            let length = match protocol {
                next_header::HOP_BY_HOP if position > 0 => return Err(Malformed::ExtensionHeaders),
                next_header::HOP_BY_HOP | next_header::DESTINATION_OPTIONS => {
                    let [_, units] = two_bytes(after_header, offset)?;
                    (usize::from(units) + 1) * 8
                }
                next_header::ROUTING => {
                    let [_, units] = two_bytes(after_header, offset)?;
                    let [_, segments_left] = two_bytes(after_header, offset + 2)?;
                    if segments_left != 0 {
                        return Err(Malformed::ExtensionHeaders);
                    }
                    (usize::from(units) + 1) * 8
                }
                next_header::FRAGMENT => {
                    let word = two_bytes(after_header, offset + 2)?;
                    let word = u16::from_be_bytes(word);
                    if word & (FRAGMENT_OFFSET_MASK | MORE_FRAGMENTS) != 0 {
                        // Fragments of another protocol (ICMPv6, say) are not ours, as an
                        // IPv4 fragment's protocol field says; of UDP, or of what may hold it,
                        // they are.
                        let [next, _] = two_bytes(after_header, offset)?;
                        return match next {
                            next_header::UDP
                            | next_header::HOP_BY_HOP
                            | next_header::DESTINATION_OPTIONS
                            | next_header::ROUTING
                            | next_header::FRAGMENT => Err(Malformed::Fragment),
                            other => Ok(UpperLayer {
                                protocol: other,
                                extension_len: offset + 8,
                            }),
                        };
                    }
                    8
                }
                _ => {
                    return Ok(UpperLayer {
                        protocol,
                        extension_len: offset,
                    })
                }
            };
            if position == MAX_EXTENSION_HEADERS {
                break;
            }
            // The next header's value is the first byte of this one.
            let [next, _] = two_bytes(after_header, offset)?;
            if after_header.len() < offset + length {
                return Err(Malformed::Truncated);
            }
            protocol = next;
            offset += length;
        }
        Err(Malformed::ExtensionHeaders)
    }
}

/// Two bytes of `data` at `at`, or [`Malformed::Truncated`].
#[inline(always)]
fn two_bytes(data: &[u8], at: usize) -> Result<[u8; 2], Malformed> {
    data.get(at..at + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .ok_or(Malformed::Truncated)
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Every byte after the fixed header, up to the end of the buffer, whatever the payload
    /// length says.
    #[inline]
    pub fn bytes_after_header(&self) -> &'a [u8] {
        T::as_ref(self.buffer).get(HEADER_LEN..).unwrap_or_default()
    }

    /// The payload (extension headers included) as delimited by the payload length; bytes
    /// beyond it (Ethernet padding) are left out.
    ///
    /// Errors: [`Malformed::Truncated`] if the buffer is shorter than the payload length.
    #[inline]
    pub fn payload(&self) -> Result<&'a [u8], Malformed> {
        let end = HEADER_LEN + usize::from(self.payload_len());
        T::as_ref(self.buffer)
            .get(HEADER_LEN..end)
            .ok_or(Malformed::Truncated)
    }
}

/// The ones' complement sum of the IPv6 pseudo-header that the UDP checksum covers (RFC 8200
/// section 8.1): source and destination address, upper-layer length, next header.
#[inline]
pub(crate) fn pseudo_header(src: &Ipv6Addr, dst: &Ipv6Addr, protocol: u8, length: u32) -> u64 {
    checksum::sum(&src.octets())
        + checksum::sum(&dst.octets())
        + u64::from(length >> 16)
        + u64::from(length & 0xffff)
        + u64::from(protocol)
}

/// The header fields needed to write an IPv6 header without extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    /// DSCP and ECN.
    pub traffic_class: u8,
    /// Length of what follows the fixed header.
    pub payload_len: u16,
}

impl Repr {
    /// Writes the 40-byte fixed header into the start of `buffer`.
    ///
    /// Errors: [`Malformed::Truncated`] if `buffer` is shorter than 40 bytes.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<(), Malformed> {
        let header = buffer
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(Malformed::Truncated)?;
        let word = 6u32 << 28 | u32::from(self.traffic_class) << 20;
        header[0..4].copy_from_slice(&word.to_be_bytes());
        header[field::PAYLOAD_LEN].copy_from_slice(&self.payload_len.to_be_bytes());
        header[field::NEXT_HEADER] = self.next_header;
        header[field::HOP_LIMIT] = self.hop_limit;
        header[field::SOURCE].copy_from_slice(&self.source.octets());
        header[field::DESTINATION].copy_from_slice(&self.destination.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    const DST: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234);

    fn packet(next: u8, extensions: &[u8], upper: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        Repr {
            source: SRC,
            destination: DST,
            next_header: next,
            hop_limit: 9,
            traffic_class: 0xb9,
            payload_len: (extensions.len() + upper.len()) as u16,
        }
        .emit(&mut p)
        .unwrap();
        p.extend_from_slice(extensions);
        p.extend_from_slice(upper);
        p
    }

    fn walk(p: &[u8]) -> Result<UpperLayer, Malformed> {
        let packet = Packet::new_checked(p)?;
        packet.upper_layer(packet.payload()?)
    }

    #[test]
    fn reads_the_fixed_header() {
        let p = packet(next_header::UDP, &[], &[0; 8]);
        let v = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.source(), SRC);
        assert_eq!(v.destination(), DST);
        assert_eq!(v.hop_limit(), 9);
        assert_eq!(v.traffic_class(), 0xb9);
        assert_eq!(v.payload().unwrap().len(), 8);
        assert_eq!(
            walk(&p),
            Ok(UpperLayer {
                protocol: next_header::UDP,
                extension_len: 0
            })
        );
    }

    #[test]
    fn refuses_short_headers_and_other_versions() {
        assert_eq!(
            Packet::new_checked(&[0x60u8; 39][..]),
            Err(Malformed::Truncated)
        );
        let mut p = packet(next_header::UDP, &[], &[0; 8]);
        p[0] = 0x45;
        assert_eq!(
            Packet::new_checked(&p[..]),
            Err(Malformed::BadIpHeaderLength)
        );
        let mut p = packet(next_header::UDP, &[], &[0; 8]);
        p.truncate(44);
        assert_eq!(walk(&p), Err(Malformed::Truncated));
    }

    #[test]
    fn steps_over_hop_by_hop_destination_options_and_atomic_fragments() {
        // Hop-by-hop with a router alert (8 bytes), destination options of 16 bytes, an
        // atomic fragment header, then UDP.
        let mut ext = vec![next_header::DESTINATION_OPTIONS, 0, 5, 2, 0, 0, 1, 0];
        ext.extend_from_slice(&[next_header::FRAGMENT, 1]);
        ext.extend_from_slice(&[0; 14]);
        ext.extend_from_slice(&[next_header::UDP, 0, 0, 0, 0, 0, 0, 7]);
        let p = packet(next_header::HOP_BY_HOP, &ext, &[0; 8]);
        assert_eq!(
            walk(&p),
            Ok(UpperLayer {
                protocol: next_header::UDP,
                extension_len: 32
            })
        );
    }

    #[test]
    fn fragments_and_bad_chains_are_malformed() {
        let first = [next_header::UDP, 0, 0, 1, 0, 0, 0, 7];
        let later = [next_header::UDP, 0, 0, 0xb0, 0, 0, 0, 7];
        for f in [first, later] {
            assert_eq!(
                walk(&packet(next_header::FRAGMENT, &f, &[0; 8])),
                Err(Malformed::Fragment)
            );
        }
        let icmp_fragment = [next_header::ICMPV6, 0, 0, 1, 0, 0, 0, 7];
        assert_eq!(
            walk(&packet(next_header::FRAGMENT, &icmp_fragment, &[0; 8])).map(|u| u.protocol),
            Ok(next_header::ICMPV6)
        );
        // A routing header with a segment left: we are not the final destination.
        let routing = [next_header::UDP, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            walk(&packet(next_header::ROUTING, &routing, &[0; 8])),
            Err(Malformed::ExtensionHeaders)
        );
        // Hop-by-hop only ever comes first.
        let late_hop_by_hop = [
            next_header::HOP_BY_HOP,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            17,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(
            walk(&packet(
                next_header::DESTINATION_OPTIONS,
                &late_hop_by_hop,
                &[0; 8]
            )),
            Err(Malformed::ExtensionHeaders)
        );
        // Nine destination-options headers: beyond the bound.
        let mut chain = Vec::new();
        for i in 0..9 {
            let next = if i == 8 {
                next_header::UDP
            } else {
                next_header::DESTINATION_OPTIONS
            };
            chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            walk(&packet(next_header::DESTINATION_OPTIONS, &chain, &[0; 8])),
            Err(Malformed::ExtensionHeaders)
        );
        // Eight are fine.
        assert_eq!(
            walk(&packet(
                next_header::DESTINATION_OPTIONS,
                &chain[8..],
                &[0; 8]
            ))
            .map(|u| u.extension_len),
            Ok(64)
        );
        // A header whose stated length runs past the payload.
        let long = [next_header::UDP, 3, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            walk(&packet(next_header::DESTINATION_OPTIONS, &long, &[0; 8])),
            Err(Malformed::Truncated)
        );
    }

    #[test]
    fn other_upper_layers_are_reported_as_they_are() {
        for protocol in [next_header::ICMPV6, next_header::ESP, next_header::NONE, 6] {
            assert_eq!(
                walk(&packet(protocol, &[], &[0; 8])).map(|u| u.protocol),
                Ok(protocol)
            );
        }
    }

    #[test]
    fn pseudo_header_sum_matches_a_known_datagram() {
        // UDP ff3e::1234 from 2001:db8::10, ports 1000 -> 5000, payload "hi": a checksum
        // written with this sum verifies, and one bit off does not.
        let mut udp = vec![0x03, 0xe8, 0x13, 0x88, 0, 10, 0, 0, b'h', b'i'];
        let pseudo = pseudo_header(&SRC, &DST, next_header::UDP, 10);
        let sum = checksum::finish(pseudo + checksum::sum(&udp));
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
        assert!(checksum::verifies(pseudo + checksum::sum(&udp)));
        udp[9] ^= 1;
        assert!(!checksum::verifies(pseudo + checksum::sum(&udp)));
    }
}
