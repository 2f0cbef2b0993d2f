//! UDP header (RFC 768).
//!
//! A [`Packet`] view covers exactly one UDP datagram: the caller hands it the IPv4 payload as
//! delimited by the IP total length, so the buffer length is the datagram length the network layer
//! vouches for. [`Packet::new_checked`] guarantees the 8 header bytes; [`Packet::check_length`]
//! compares the UDP length field with the buffer, which the caller skips for GSO super-frames
//! (see `frame.rs`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::Malformed;

/// Byte ranges of the header fields.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub const SOURCE_PORT: Field = 0..2;
    pub const DESTINATION_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD_START: usize = 8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD_START;

/// A zero-copy view of one UDP datagram whose header is known to be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps untrusted bytes (the IPv4 payload), checking that the header fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::Truncated);
        }
        Ok(Packet { buffer })
    }

    #[inline(always)]
    fn read_u16(&self, range: field::Field) -> u16 {
        let header = self
            .buffer
            .as_ref()
            .first_chunk::<HEADER_LEN>()
            .unwrap_or(&[0; HEADER_LEN]);
        let bytes = &header[range];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    /// The source port.
    #[inline]
    pub fn source_port(&self) -> u16 {
        self.read_u16(field::SOURCE_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn destination_port(&self) -> u16 {
        self.read_u16(field::DESTINATION_PORT)
    }

    /// The length field: header plus payload, as the sender wrote it.
    #[inline]
    pub fn length(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// The checksum as stored; 0 means the sender computed none (allowed over IPv4).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Whether the length field agrees with the datagram length the IP layer gave us.
    ///
    /// Errors: [`Malformed::BadUdpLength`] otherwise (which includes a length below 8).
    #[inline]
    pub fn check_length(&self) -> Result<(), Malformed> {
        if usize::from(self.length()) == self.buffer.as_ref().len() {
            Ok(())
        } else {
            Err(Malformed::BadUdpLength)
        }
    }

    /// Whether the stored checksum verifies over the pseudo-header, header and payload.
    ///
    /// A zero checksum (none computed) does not verify; callers decide whether to skip it.
    #[inline]
    pub fn verify_checksum(&self, source: Ipv4Addr, destination: Ipv4Addr) -> bool {
        let pseudo = checksum::ipv4_pseudo_header(
            source.octets(),
            destination.octets(),
            super::ipv4::protocol::UDP,
            self.length(),
        );
        checksum::verifies(pseudo + checksum::sum(self.buffer.as_ref()))
    }

    /// [`Packet::verify_checksum`] over the IPv6 pseudo-header, whose length is the datagram
    /// length the IP layer gave (the same as the UDP length once that is checked).
    #[inline]
    pub fn verify_checksum_ipv6(&self, source: &Ipv6Addr, destination: &Ipv6Addr) -> bool {
        let length = self.buffer.as_ref().len() as u32;
        let pseudo =
            super::ipv6::pseudo_header(source, destination, super::ipv4::protocol::UDP, length);
        checksum::verifies(pseudo + checksum::sum(self.buffer.as_ref()))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the header, borrowed for as long as the frame itself.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        T::as_ref(self.buffer)
            .get(field::PAYLOAD_START..)
            .unwrap_or_default()
    }
}

/// The header fields needed to write a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub source_port: u16,
    /// Destination port.
    pub destination_port: u16,
}

impl Repr {
    /// Writes the header into `datagram`, whose bytes after the first 8 are the payload already in
    /// place, with the length of `datagram` and a checksum over the pseudo-header of
    /// `source`/`destination`.
    ///
    /// Errors: [`Malformed::Truncated`] if `datagram` is shorter than 8 bytes,
    /// [`Malformed::BadUdpLength`] if it is longer than the length field can say.
    pub fn emit(
        &self,
        datagram: &mut [u8],
        source: Ipv4Addr,
        destination: Ipv4Addr,
    ) -> Result<(), Malformed> {
        let length = u16::try_from(datagram.len()).map_err(|_| Malformed::BadUdpLength)?;
        let pseudo = checksum::ipv4_pseudo_header(
            source.octets(),
            destination.octets(),
            super::ipv4::protocol::UDP,
            length,
        );
        self.emit_with(datagram, length, pseudo)
    }

    /// [`Repr::emit`] with the IPv6 pseudo-header.
    pub fn emit_ipv6(
        &self,
        datagram: &mut [u8],
        source: &Ipv6Addr,
        destination: &Ipv6Addr,
    ) -> Result<(), Malformed> {
        let length = u16::try_from(datagram.len()).map_err(|_| Malformed::BadUdpLength)?;
        let pseudo = super::ipv6::pseudo_header(
            source,
            destination,
            super::ipv4::protocol::UDP,
            u32::from(length),
        );
        self.emit_with(datagram, length, pseudo)
    }

    fn emit_with(&self, datagram: &mut [u8], length: u16, pseudo: u64) -> Result<(), Malformed> {
        let header = datagram
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(Malformed::Truncated)?;
        header[field::SOURCE_PORT].copy_from_slice(&self.source_port.to_be_bytes());
        header[field::DESTINATION_PORT].copy_from_slice(&self.destination_port.to_be_bytes());
        header[field::LENGTH].copy_from_slice(&length.to_be_bytes());
        header[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let sum = match checksum::finish(pseudo + checksum::sum(datagram)) {
            // RFC 768: a computed checksum of zero is sent as all ones; zero means "none".
            0 => 0xffff,
            sum => sum,
        };
        if let Some(stored) = datagram.get_mut(field::CHECKSUM) {
            stored.copy_from_slice(&sum.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DESTINATION: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

    /// Port 5000 -> 5001, length 12, 4 payload bytes, checksum computed by hand below.
    const DATAGRAM: [u8; 12] = [
        0x13, 0x88, 0x13, 0x89, 0x00, 0x0c, 0x59, 0x04, 0xca, 0xfe, 0xba, 0xbe,
    ];

    #[test]
    fn parse() {
        let packet = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(packet.source_port(), 5000);
        assert_eq!(packet.destination_port(), 5001);
        assert_eq!(packet.length(), 12);
        assert_eq!(packet.checksum(), 0x5904);
        assert_eq!(packet.check_length(), Ok(()));
        assert_eq!(packet.payload(), &[0xca, 0xfe, 0xba, 0xbe]);
        assert!(packet.verify_checksum(SOURCE, DESTINATION));
        assert!(!packet.verify_checksum(SOURCE, Ipv4Addr::new(239, 1, 1, 2)));
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&DATAGRAM[..len]),
                Err(Malformed::Truncated)
            );
        }
    }

    #[test]
    fn bad_length() {
        // Longer than the IP layer says, shorter, and below the header size.
        for length in [13u16, 11, 7, 0] {
            let mut bytes = DATAGRAM;
            bytes[4..6].copy_from_slice(&length.to_be_bytes());
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                packet.check_length(),
                Err(Malformed::BadUdpLength),
                "{length}"
            );
        }
    }

    #[test]
    fn bad_checksum() {
        let mut bytes = DATAGRAM;
        bytes[11] ^= 0x01;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum(SOURCE, DESTINATION));
    }

    #[test]
    fn emit_round_trips() {
        let mut buffer = [0u8; 12];
        buffer[8..].copy_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
        let repr = Repr {
            source_port: 5000,
            destination_port: 5001,
        };
        repr.emit(&mut buffer, SOURCE, DESTINATION).unwrap();
        assert_eq!(buffer, DATAGRAM);
        assert_eq!(
            repr.emit(&mut [0u8; 7], SOURCE, DESTINATION),
            Err(Malformed::Truncated)
        );
    }

    #[test]
    fn computed_zero_is_sent_as_all_ones() {
        // Pick payload bytes that make the sum (pseudo-header + length field) all ones, so the checksum computes to zero.
        let mut buffer = [0u8; 10];
        let repr = Repr {
            source_port: 0,
            destination_port: 0,
        };
        repr.emit(&mut buffer, SOURCE, DESTINATION).unwrap();
        let sum_without = checksum::fold(
            checksum::ipv4_pseudo_header(SOURCE.octets(), DESTINATION.octets(), 17, 10) + 10,
        );
        buffer[8..10].copy_from_slice(&(0xffff - sum_without).to_be_bytes());
        repr.emit(&mut buffer, SOURCE, DESTINATION).unwrap();
        assert_eq!(&buffer[6..8], &[0xff, 0xff]);
        assert!(Packet::new_checked(&buffer[..])
            .unwrap()
            .verify_checksum(SOURCE, DESTINATION));
    }
}
