//! Packet parsing for the data plane: Ethernet (with one VLAN tag), IPv4 or IPv6 (with its
//! extension headers), UDP, and the
//! `virtio_net_hdr` that tells us about GSO super-frames and checksum state.
//!
//! The entry point is [`parse_frame`]: one frame from the `AF_PACKET` ring in, one [`Parsed`]
//! verdict out: a [`Datagram`] borrowed from the frame, a GSO super-frame to split
//! ([`Parsed::Segmented`]), or the reason it is not forwarded ([`Filtered`], [`Malformed`]), which
//! the data plane counts. Each layer has its own file with a zero-copy view (`Packet<T>` or
//! `Frame<T>`) whose `new_checked` validates lengths once, so its getters cannot panic.
//!
//! Invariants, for every input: no panic, no allocation, no formatting. Every byte string is
//! exactly one of datagram(s), filtered or malformed, so the counters add up
//! (`rx = filtered + malformed + no_match + matched`).
//!
//! ```
//! use relay::wire::{parse_frame, ChecksumHint, Parsed};
//! # let frame: &[u8] = &[];
//! match parse_frame(frame, None, None, ChecksumHint::Unverified, 65_507) {
//!     Parsed::Malformed(kind) => { /* counters.malformed[kind.index()] += 1 */ }
//!     Parsed::Filtered(kind) => { /* counters.filtered[kind.index()] += 1 */ }
//!     parsed => {
//!         for datagram in parsed.datagrams() {
//!             let _ = (datagram.dst, datagram.dst_port, datagram.payload);
//!         }
//!     }
//! }
//! ```

pub mod checksum;
pub mod ethernet;
mod frame;
pub mod ipv4;
pub mod ipv6;
mod overflow;
pub mod udp;
pub mod vlan;
pub mod vnet;

pub use frame::{parse_frame, ChecksumHint, Datagram, Parsed, Segments};
pub use overflow::datagrams_in_frame;
pub use vnet::VnetHeader;

/// Why a frame was rejected as malformed. Counted per kind by the data plane.
///
/// The order is part of the counter layout ([`Malformed::index`]); append new kinds at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// The frame ends before a header it announces, or before the IPv4 total length or the
    /// IPv6 payload length.
    Truncated,
    /// The IPv4 header length is below 20 bytes or beyond the frame, or the version is not 4
    /// (not 6 behind an IPv6 EtherType).
    BadIpHeaderLength,
    /// The IPv4 total length cannot hold the IPv4 and UDP headers (or, for a GSO super-frame, is
    /// not one of the values Linux writes).
    BadTotalLength,
    /// The IPv4 header has options. We refuse them: the relay re-sends only the UDP payload
    /// through an ordinary socket, so options would be dropped silently on the way through.
    IpOptions,
    /// The packet is an IPv4 fragment, or an IPv6 one (a fragment header with an offset or
    /// more fragments to come). The relay does not reassemble; a first fragment alone
    /// would be forwarded as a short datagram, the others have no UDP header.
    Fragment,
    /// The IPv4 header checksum is wrong.
    BadIpChecksum,
    /// The UDP length disagrees with the IPv4 total length (or is below 8).
    BadUdpLength,
    /// A nonzero UDP checksum that the kernel did not vouch for does not verify, or an IPv6
    /// datagram has none (zero), which IPv6 forbids (RFC 8200 section 8.1).
    BadUdpChecksum,
    /// A datagram's payload is larger than the relay can send.
    Oversize,
    /// The vnet header describes segmentation we cannot or must not apply to a UDP frame.
    BadGso,
    /// The IPv6 extension headers cannot be followed to UDP: more than
    /// [`ipv6::MAX_EXTENSION_HEADERS`], hop-by-hop options anywhere but first, or a routing
    /// header with segments left (the destination is not the final one).
    ExtensionHeaders,
}

impl Malformed {
    /// Number of kinds: the length of a counter array indexed by [`Malformed::index`].
    pub const COUNT: usize = 11;

    /// Every kind, in index order.
    pub const ALL: [Malformed; Malformed::COUNT] = [
        Malformed::Truncated,
        Malformed::BadIpHeaderLength,
        Malformed::BadTotalLength,
        Malformed::IpOptions,
        Malformed::Fragment,
        Malformed::BadIpChecksum,
        Malformed::BadUdpLength,
        Malformed::BadUdpChecksum,
        Malformed::Oversize,
        Malformed::BadGso,
        Malformed::ExtensionHeaders,
    ];

    /// A stable index in `0..COUNT` for a counter array.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name used in stats output.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::Truncated => "truncated",
            Malformed::BadIpHeaderLength => "bad_ip_header_length",
            Malformed::BadTotalLength => "bad_total_length",
            Malformed::IpOptions => "ip_options",
            Malformed::Fragment => "fragment",
            Malformed::BadIpChecksum => "bad_ip_checksum",
            Malformed::BadUdpLength => "bad_udp_length",
            Malformed::BadUdpChecksum => "bad_udp_checksum",
            Malformed::Oversize => "oversize",
            Malformed::BadGso => "bad_gso",
            Malformed::ExtensionHeaders => "extension_headers",
        }
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A well-formed frame that is not ours to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filtered {
    /// Neither IPv4 nor IPv6 (ARP, LLDP...), including a second VLAN tag (QinQ).
    NotIp,
    /// IP but not UDP (IGMP, ICMP, ICMPv6 with MLD and neighbour discovery, TCP, ESP...).
    NotUdp,
    /// A datagram of a rule with `min_ttl` that arrived with a lower TTL (IPv6: hop limit).
    /// Decided after the match, not by the parser; the flow counts it too.
    BelowMinTtl,
}

impl Filtered {
    /// Number of kinds: the length of a counter array indexed by [`Filtered::index`].
    pub const COUNT: usize = 3;

    /// Every kind, in index order.
    pub const ALL: [Filtered; Filtered::COUNT] =
        [Filtered::NotIp, Filtered::NotUdp, Filtered::BelowMinTtl];

    /// A stable index in `0..COUNT` for a counter array.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name used in stats output.
    pub fn name(self) -> &'static str {
        match self {
            Filtered::NotIp => "not_ip",
            Filtered::NotUdp => "not_udp",
            Filtered::BelowMinTtl => "below_min_ttl",
        }
    }
}

impl std::fmt::Display for Filtered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_indices_are_dense_and_names_unique() {
        for (position, kind) in Malformed::ALL.iter().enumerate() {
            assert_eq!(kind.index(), position);
            assert_eq!(kind.to_string(), kind.name());
        }
        let mut names: Vec<_> = Malformed::ALL.iter().map(|kind| kind.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Malformed::COUNT);
        assert_eq!(Malformed::BadGso.name(), "bad_gso");
        assert_eq!(Malformed::BadIpHeaderLength.name(), "bad_ip_header_length");
    }

    #[test]
    fn filtered_indices_and_names() {
        for (position, kind) in Filtered::ALL.iter().enumerate() {
            assert_eq!(kind.index(), position);
        }
        assert_eq!(Filtered::NotIp.name(), "not_ip");
        assert_eq!(Filtered::NotUdp.to_string(), "not_udp");
        assert_eq!(Filtered::BelowMinTtl.name(), "below_min_ttl");
    }
}
