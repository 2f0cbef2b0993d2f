//! Ethernet II frame header: destination, source, EtherType.
//!
//! A frame from an `AF_PACKET` `SOCK_RAW` socket starts here (after the vnet header, if any) and
//! carries no FCS. [`Frame::new_checked`] makes sure the 14 header bytes are present, so every
//! getter afterwards is infallible.

use super::Malformed;

/// EtherType values the relay looks at (IEEE registry).
pub mod ethertype {
    /// Internet Protocol version 4.
    pub const IPV4: u16 = 0x0800;
    /// Address Resolution Protocol; common on any LAN, never ours.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (the outer tag of QinQ).
    pub const QINQ: u16 = 0x88a8;
    /// Internet Protocol version 6.
    pub const IPV6: u16 = 0x86dd;
}

/// Byte ranges of the header fields.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD_START: usize = 14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD_START;

/// A zero-copy view of an Ethernet II frame whose header is known to be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps untrusted bytes, checking that the header fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::Truncated);
        }
        Ok(Frame { buffer })
    }

    /// The destination MAC address.
    #[inline]
    pub fn destination(&self) -> [u8; 6] {
        mac(&self.header()[field::DESTINATION])
    }

    /// The source MAC address.
    #[inline]
    pub fn source(&self) -> [u8; 6] {
        mac(&self.header()[field::SOURCE])
    }

    /// The EtherType (or, below 0x0600, an IEEE 802.3 length, which the relay never wants).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let bytes = &self.header()[field::ETHERTYPE];
        u16::from_be_bytes([bytes[0], bytes[1]])
    }

    /// The first [`HEADER_LEN`] bytes, which `new_checked` guaranteed to exist.
    #[inline(always)]
    fn header(&self) -> &[u8; HEADER_LEN] {
        let data = self.buffer.as_ref();
        data.first_chunk::<HEADER_LEN>().unwrap_or(&[0; HEADER_LEN])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// The bytes after the header, borrowed for as long as the frame itself.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        T::as_ref(self.buffer)
            .get(field::PAYLOAD_START..)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Writes the header of a frame into `buffer`, which must hold at least [`HEADER_LEN`] bytes.
    pub fn emit(
        mut buffer: T,
        destination: [u8; 6],
        source: [u8; 6],
        ethertype: u16,
    ) -> Result<Self, Malformed> {
        let data = buffer.as_mut();
        if data.len() < HEADER_LEN {
            return Err(Malformed::Truncated);
        }
        data[field::DESTINATION].copy_from_slice(&destination);
        data[field::SOURCE].copy_from_slice(&source);
        data[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
        Ok(Frame { buffer })
    }
}

#[inline(always)]
fn mac(bytes: &[u8]) -> [u8; 6] {
    <[u8; 6]>::try_from(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 18] = [
        0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, // destination: IPv4 multicast MAC of 239.1.1.1
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source
        0x08, 0x00, // IPv4
        0xde, 0xad, 0xbe, 0xef, // payload
    ];

    #[test]
    fn parse() {
        let frame = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.destination(), [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]);
        assert_eq!(frame.source(), [0x02, 0, 0, 0, 0, 0x01]);
        assert_eq!(frame.ethertype(), ethertype::IPV4);
        assert_eq!(frame.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn header_only_has_empty_payload() {
        let frame = Frame::new_checked(&FRAME[..HEADER_LEN]).unwrap();
        assert_eq!(frame.payload(), &[] as &[u8]);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&FRAME[..len]),
                Err(Malformed::Truncated),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn emit_round_trips() {
        let mut buffer = [0u8; 18];
        buffer[14..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        Frame::emit(
            &mut buffer[..],
            [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
            [0x02, 0, 0, 0, 0, 0x01],
            ethertype::IPV4,
        )
        .unwrap();
        assert_eq!(buffer, FRAME);
        assert_eq!(
            Frame::emit(&mut [0u8; 13][..], [0; 6], [0; 6], 0).unwrap_err(),
            Malformed::Truncated
        );
    }
}
