//! IPv4 header (RFC 791).
//!
//! [`Packet::new_checked`] validates what every later getter relies on: at least 20 bytes, version
//! 4, a header length (IHL) of at least 5 words that fits in the bytes given. After that the header
//! getters cannot fail. The total length is checked separately by [`Packet::payload`], because what
//! counts as a valid total length depends on the caller (GSO super-frames, see `frame.rs`).
//!
//! A wrong version with EtherType IPv4 is reported as [`Malformed::BadIpHeaderLength`]: both mean
//! the first byte of the header is not a usable IPv4 version/IHL byte, and one counter for "the
//! IPv4 header itself is unusable" is what an operator needs.

use std::net::Ipv4Addr;

use super::checksum;
use super::Malformed;

/// IP protocol numbers the relay cares about (IANA registry).
pub mod protocol {
    /// Internet Control Message Protocol.
    pub const ICMP: u8 = 1;
    /// Internet Group Management Protocol: membership reports share our groups, never ours.
    pub const IGMP: u8 = 2;
    /// Transmission Control Protocol.
    pub const TCP: u8 = 6;
    /// User Datagram Protocol: the only protocol the relay forwards.
    pub const UDP: u8 = 17;
}

/// Byte ranges of the header fields.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VERSION_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENTIFICATION: Field = 4..6;
    pub const FLAGS_FRAGMENT_OFFSET: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SOURCE: Field = 12..16;
    pub const DESTINATION: Field = 16..20;
}

/// Length of a header without options (IHL = 5).
pub const MIN_HEADER_LEN: usize = 20;

/// "More fragments" bit of the flags/fragment-offset word.
const MORE_FRAGMENTS: u16 = 0x2000;
/// "Don't fragment" bit of the flags/fragment-offset word.
const DONT_FRAGMENT: u16 = 0x4000;
/// Fragment offset, in 8-byte units, in the low 13 bits of the same word.
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet whose header is known to be complete and well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps untrusted bytes that start at the IPv4 header and run to the end of the frame.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let data = buffer.as_ref();
        let Some(header) = data.first_chunk::<MIN_HEADER_LEN>() else {
            return Err(Malformed::Truncated);
        };
        let version = header[field::VERSION_IHL] >> 4;
        let header_len = usize::from(header[field::VERSION_IHL] & 0x0f) * 4;
        if version != 4 || header_len < MIN_HEADER_LEN || header_len > data.len() {
            return Err(Malformed::BadIpHeaderLength);
        }
        Ok(Packet { buffer })
    }

    /// The fixed part of the header; `new_checked` guaranteed it exists.
    #[inline(always)]
    fn fixed(&self) -> &[u8; MIN_HEADER_LEN] {
        self.buffer
            .as_ref()
            .first_chunk::<MIN_HEADER_LEN>()
            .unwrap_or(&[0; MIN_HEADER_LEN])
    }

    #[inline(always)]
    fn read_u16(&self, range: field::Field) -> u16 {
        let bytes = &self.fixed()[range];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    #[inline(always)]
    fn read_addr(&self, range: field::Field) -> Ipv4Addr {
        let bytes = &self.fixed()[range];
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
    }

    /// The IP version (always 4 for a checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.fixed()[field::VERSION_IHL] >> 4
    }

    /// The header length in bytes (IHL * 4), 20..=60.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.fixed()[field::VERSION_IHL] & 0x0f) * 4
    }

    /// Whether the header carries options (IHL > 5).
    #[inline]
    pub fn has_options(&self) -> bool {
        self.header_len() > MIN_HEADER_LEN
    }

    /// Differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.fixed()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.fixed()[field::DSCP_ECN] & 0x03
    }

    /// The total length field: header plus payload, in bytes, as the sender wrote it.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::TOTAL_LEN)
    }

    /// The identification field.
    #[inline]
    pub fn identification(&self) -> u16 {
        self.read_u16(field::IDENTIFICATION)
    }

    /// The "don't fragment" flag.
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.read_u16(field::FLAGS_FRAGMENT_OFFSET) & DONT_FRAGMENT != 0
    }

    /// The "more fragments" flag.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.read_u16(field::FLAGS_FRAGMENT_OFFSET) & MORE_FRAGMENTS != 0
    }

    /// The fragment offset in bytes.
    #[inline]
    pub fn fragment_offset(&self) -> usize {
        usize::from(self.read_u16(field::FLAGS_FRAGMENT_OFFSET) & FRAGMENT_OFFSET_MASK) * 8
    }

    /// Whether this packet is a fragment (any but an unfragmented datagram): a first fragment
    /// has MF set, every later one a nonzero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.read_u16(field::FLAGS_FRAGMENT_OFFSET) & (MORE_FRAGMENTS | FRAGMENT_OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.fixed()[field::TTL]
    }

    /// The protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.fixed()[field::PROTOCOL]
    }

    /// The header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The source address.
    #[inline]
    pub fn source(&self) -> Ipv4Addr {
        self.read_addr(field::SOURCE)
    }

    /// The destination address.
    #[inline]
    pub fn destination(&self) -> Ipv4Addr {
        self.read_addr(field::DESTINATION)
    }

    /// The source address as bytes, for checksums.
    #[inline]
    pub fn source_bytes(&self) -> [u8; 4] {
        self.read_addr(field::SOURCE).octets()
    }

    /// The destination address as bytes, for checksums.
    #[inline]
    pub fn destination_bytes(&self) -> [u8; 4] {
        self.read_addr(field::DESTINATION).octets()
    }

    /// Whether the header checksum (over the whole header, options included) is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        if !self.has_options() {
            return checksum::verifies(checksum::sum_ipv4_header(self.fixed()));
        }
        let header = self
            .buffer
            .as_ref()
            .get(..self.header_len())
            .unwrap_or_default();
        checksum::verifies(checksum::sum(header))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Every byte after the header, up to the end of the buffer, whatever the total length says.
    #[inline]
    pub fn bytes_after_header(&self) -> &'a [u8] {
        T::as_ref(self.buffer)
            .get(self.header_len()..)
            .unwrap_or_default()
    }

    /// The payload as delimited by the total length; bytes beyond it (Ethernet padding) are left
    /// out.
    ///
    /// Errors: [`Malformed::BadTotalLength`] if the total length is shorter than the header,
    /// [`Malformed::Truncated`] if the buffer is shorter than the total length.
    #[inline]
    pub fn payload(&self) -> Result<&'a [u8], Malformed> {
        let total_len = usize::from(self.total_len());
        let header_len = self.header_len();
        if total_len < header_len {
            return Err(Malformed::BadTotalLength);
        }
        T::as_ref(self.buffer)
            .get(header_len..total_len)
            .ok_or(Malformed::Truncated)
    }
}

/// The header fields needed to write an unfragmented IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Length of the payload that follows the header.
    pub payload_len: u16,
}

impl Repr {
    /// Writes a 20-byte header with DF set and a correct checksum into the start of `buffer`.
    ///
    /// Errors: [`Malformed::Truncated`] if `buffer` is shorter than 20 bytes,
    /// [`Malformed::BadTotalLength`] if the payload length does not fit the total length field.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<(), Malformed> {
        let total_len = u16::try_from(MIN_HEADER_LEN)
            .ok()
            .and_then(|header| header.checked_add(self.payload_len))
            .ok_or(Malformed::BadTotalLength)?;
        let header = buffer
            .first_chunk_mut::<MIN_HEADER_LEN>()
            .ok_or(Malformed::Truncated)?;
        header[field::VERSION_IHL] = 0x45;
        header[field::DSCP_ECN] = 0;
        header[field::TOTAL_LEN].copy_from_slice(&total_len.to_be_bytes());
        header[field::IDENTIFICATION].copy_from_slice(&[0, 0]);
        header[field::FLAGS_FRAGMENT_OFFSET].copy_from_slice(&DONT_FRAGMENT.to_be_bytes());
        header[field::TTL] = self.ttl;
        header[field::PROTOCOL] = self.protocol;
        header[field::CHECKSUM].copy_from_slice(&[0, 0]);
        header[field::SOURCE].copy_from_slice(&self.source.octets());
        header[field::DESTINATION].copy_from_slice(&self.destination.octets());
        let sum = checksum::finish(checksum::sum(header));
        header[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.1 -> 239.1.1.1, UDP, TTL 64, DF, total length 32 (20 + 8 UDP + 4 payload), followed
    /// by 2 bytes of Ethernet padding.
    const PACKET: [u8; 34] = [
        0x45, 0x00, 0x00, 0x20, // version 4, IHL 5, DSCP 0, total length 32
        0x12, 0x34, 0x40, 0x00, // identification, DF, offset 0
        0x40, 0x11, 0x2e, 0x96, // TTL 64, UDP, checksum
        10, 0, 0, 1, // source
        239, 1, 1, 1, // destination
        0x13, 0x88, 0x13, 0x89, 0x00, 0x0c, 0x00, 0x00, // UDP header
        0xca, 0xfe, 0xba, 0xbe, // UDP payload
        0x00, 0x00, // padding
    ];

    #[test]
    fn parse() {
        let packet = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert!(!packet.has_options());
        assert_eq!(packet.dscp(), 0);
        assert_eq!(packet.ecn(), 0);
        assert_eq!(packet.total_len(), 32);
        assert_eq!(packet.identification(), 0x1234);
        assert!(packet.dont_fragment());
        assert!(!packet.more_fragments());
        assert_eq!(packet.fragment_offset(), 0);
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), protocol::UDP);
        assert_eq!(packet.checksum(), 0x2e96);
        assert!(packet.verify_checksum());
        assert_eq!(packet.source(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(packet.destination(), Ipv4Addr::new(239, 1, 1, 1));
        assert_eq!(packet.payload().unwrap(), &PACKET[20..32]);
        assert_eq!(packet.bytes_after_header(), &PACKET[20..]);
    }

    #[test]
    fn truncated_header() {
        for len in 0..MIN_HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET[..len]),
                Err(Malformed::Truncated)
            );
        }
    }

    #[test]
    fn truncated_payload() {
        let packet = Packet::new_checked(&PACKET[..31]).unwrap();
        assert_eq!(packet.payload(), Err(Malformed::Truncated));
    }

    #[test]
    fn bad_version_and_ihl() {
        let mut bytes = PACKET;
        bytes[0] = 0x65; // version 6
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(Malformed::BadIpHeaderLength)
        );
        bytes[0] = 0x44; // IHL 4
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(Malformed::BadIpHeaderLength)
        );
        bytes[0] = 0x4f; // IHL 15: 60 bytes, more than the 34 given
        assert_eq!(
            Packet::new_checked(&bytes[..]),
            Err(Malformed::BadIpHeaderLength)
        );
        bytes[0] = 0x46; // IHL 6: fits, so the view is valid and reports options
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.has_options());
        assert_eq!(packet.header_len(), 24);
    }

    #[test]
    fn bad_total_length() {
        let mut bytes = PACKET;
        bytes[2..4].copy_from_slice(&19u16.to_be_bytes());
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), Err(Malformed::BadTotalLength));
    }

    #[test]
    fn bad_checksum() {
        let mut bytes = PACKET;
        bytes[8] = 63; // TTL changed without updating the checksum
        assert!(!Packet::new_checked(&bytes[..]).unwrap().verify_checksum());
    }

    #[test]
    fn fragments() {
        let mut bytes = PACKET;
        bytes[6..8].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, first fragment
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.more_fragments() && packet.is_fragment());
        bytes[6..8].copy_from_slice(&0x00b9u16.to_be_bytes()); // last fragment at 1480
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.more_fragments() && packet.is_fragment());
        assert_eq!(packet.fragment_offset(), 1480);
    }

    #[test]
    fn emit_round_trips() {
        let repr = Repr {
            source: Ipv4Addr::new(10, 0, 0, 1),
            destination: Ipv4Addr::new(239, 1, 1, 1),
            protocol: protocol::UDP,
            ttl: 64,
            payload_len: 12,
        };
        let mut buffer = [0u8; 20];
        repr.emit(&mut buffer).unwrap();
        let mut expected = PACKET;
        expected[4..6].copy_from_slice(&[0, 0]); // emit writes identification 0
        expected[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::finish(checksum::sum(&expected[..20]));
        expected[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(buffer, expected[..20]);
        assert!(Packet::new_checked(&buffer[..]).unwrap().verify_checksum());
        assert_eq!(repr.emit(&mut [0u8; 19]), Err(Malformed::Truncated));
        let too_big = Repr {
            payload_len: u16::MAX,
            ..repr
        };
        assert_eq!(too_big.emit(&mut buffer), Err(Malformed::BadTotalLength));
    }
}
