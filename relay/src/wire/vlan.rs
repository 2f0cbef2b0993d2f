//! IEEE 802.1Q / 802.1ad VLAN tag: the 4 bytes that follow an Ethernet header whose EtherType is
//! 0x8100 or 0x88a8.
//!
//! The tag holds the tag control information (priority, drop eligible, VLAN id) and the EtherType
//! of what follows. The kernel usually strips the tag before a packet socket sees the frame and
//! reports it out of band (`TP_STATUS_VLAN_VALID`); it stays in the frame when VLAN offload is off
//! or on a device that does not strip. [`Tag::new_checked`] guarantees the 4 bytes are present.

use super::Malformed;

/// Byte ranges of the tag fields, relative to the start of the tag.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD_START: usize = 4;
}

/// Length of one VLAN tag.
pub const TAG_LEN: usize = field::PAYLOAD_START;

/// The VLAN id is the low 12 bits of the tag control information.
pub const VID_MASK: u16 = 0x0fff;

/// The VLAN id carried by a tag control information value (`tp_vlan_tci` or an in-frame TCI).
#[inline]
pub fn vid_of(tci: u16) -> u16 {
    tci & VID_MASK
}

/// A zero-copy view of a VLAN tag and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Tag<T> {
    /// Wraps untrusted bytes (the Ethernet payload), checking that the tag fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        if buffer.as_ref().len() < TAG_LEN {
            return Err(Malformed::Truncated);
        }
        Ok(Tag { buffer })
    }

    /// The whole tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        self.read_u16(field::TCI)
    }

    /// The priority code point (802.1p class), 0..=7.
    #[inline]
    pub fn priority(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// The drop eligible indicator.
    #[inline]
    pub fn drop_eligible(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// The VLAN id, 0..=4095 (0 means priority-tagged only).
    #[inline]
    pub fn vid(&self) -> u16 {
        vid_of(self.tci())
    }

    /// The EtherType of the encapsulated payload.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        self.read_u16(field::ETHERTYPE)
    }

    #[inline(always)]
    fn read_u16(&self, range: field::Field) -> u16 {
        // `new_checked` guaranteed the range exists; the fallback only keeps this panic-free.
        self.buffer
            .as_ref()
            .get(range)
            .and_then(|bytes| <[u8; 2]>::try_from(bytes).ok())
            .map_or(0, u16::from_be_bytes)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Tag<&'a T> {
    /// The bytes after the tag, borrowed for as long as the frame itself.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        T::as_ref(self.buffer)
            .get(field::PAYLOAD_START..)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tag<T> {
    /// Writes a tag into the first [`TAG_LEN`] bytes of `buffer`.
    pub fn emit(mut buffer: T, tci: u16, ethertype: u16) -> Result<Self, Malformed> {
        let data = buffer.as_mut();
        if data.len() < TAG_LEN {
            return Err(Malformed::Truncated);
        }
        data[field::TCI].copy_from_slice(&tci.to_be_bytes());
        data[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
        Ok(Tag { buffer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Priority 5, DEI 0, VID 100; IPv4 follows.
    const TAG: [u8; 6] = [0xa0, 0x64, 0x08, 0x00, 0x45, 0x00];

    #[test]
    fn parse() {
        let tag = Tag::new_checked(&TAG[..]).unwrap();
        assert_eq!(tag.tci(), 0xa064);
        assert_eq!(tag.priority(), 5);
        assert!(!tag.drop_eligible());
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.ethertype(), 0x0800);
        assert_eq!(tag.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn drop_eligible_and_max_vid() {
        let tag = Tag::new_checked(&[0x1f, 0xff, 0x86, 0xdd][..]).unwrap();
        assert!(tag.drop_eligible());
        assert_eq!(tag.vid(), 4095);
        assert_eq!(tag.priority(), 0);
        assert_eq!(vid_of(0xffff), 4095);
    }

    #[test]
    fn truncated() {
        for len in 0..TAG_LEN {
            assert_eq!(Tag::new_checked(&TAG[..len]), Err(Malformed::Truncated));
        }
    }

    #[test]
    fn emit_round_trips() {
        let mut buffer = [0u8; 6];
        buffer[4..].copy_from_slice(&[0x45, 0x00]);
        Tag::emit(&mut buffer[..], 0xa064, 0x0800).unwrap();
        assert_eq!(buffer, TAG);
        assert_eq!(
            Tag::emit(&mut [0u8; 3][..], 0, 0).unwrap_err(),
            Malformed::Truncated
        );
    }
}
