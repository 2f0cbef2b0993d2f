//! The `virtio_net_hdr` that an `AF_PACKET` socket with `PACKET_VNET_HDR` puts before each frame.
//!
//! It tells what the kernel knows about the frame beyond its bytes: whether the frame is a GSO/GRO
//! super-frame to be cut into segments of `gso_size` payload bytes, and the state of the L4
//! checksum. The layout is the 10-byte legacy `struct virtio_net_hdr` (linux/virtio_net.h). A
//! packet socket writes it in the legacy virtio byte order, which is the host's own
//! (`vio_le()` in net/packet/af_packet.c is `virtio_legacy_is_little_endian()`), so it is read
//! with native-endian conversions: little-endian on x86 and arm64.
//!
//! What Linux fills in (`virtio_net_hdr_from_skb`): for a GSO skb, `gso_type` is TCPV4, TCPV6 or
//! UDP_L4 (anything else makes the kernel drop the packet instead), `gso_size` the segment payload
//! size and `hdr_len` only a hint; for a `CHECKSUM_PARTIAL` skb, `NEEDS_CSUM` with
//! `csum_start`/`csum_offset` relative to the Ethernet header; for `CHECKSUM_UNNECESSARY`,
//! `DATA_VALID`.

use super::ChecksumHint;

/// Size of the legacy header on the wire (no `num_buffers`: packet sockets use the short form).
pub const LEN: usize = 10;

/// The L4 checksum is partial: only the pseudo-header sum is stored at `csum_start + csum_offset`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// The checksum was verified by the device or the stack.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// Receive segment coalescing information is present (not used by packet sockets).
pub const VIRTIO_NET_HDR_F_RSC_INFO: u8 = 4;

/// Not a GSO frame.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// TCP over IPv4 segmentation.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// UDP fragmentation offload (UFO): one big UDP datagram to be IP-fragmented, not segmented.
/// Linux no longer produces it for packet sockets (UFO was removed from the stack in 4.14), but a
/// virtio peer or a future kernel might.
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// TCP over IPv6 segmentation.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// UDP segmentation (USO, `SKB_GSO_UDP_L4`): the payload is a run of datagrams of `gso_size`
/// bytes each (the last may be shorter) that share one set of headers. This is what a
/// `UDP_SEGMENT` send, or UDP GRO on receive, produces.
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// Flag bit: TCP ECN (CWR) must be carried by the first segment only. Meaningless for UDP.
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// Byte ranges of the header fields.
mod field {
    pub type Field = core::ops::Range<usize>;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Field = 2..4;
    pub const GSO_SIZE: Field = 4..6;
    pub const CSUM_START: Field = 6..8;
    pub const CSUM_OFFSET: Field = 8..10;
}

/// A decoded `struct virtio_net_hdr`, plain values in host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHeader {
    /// `VIRTIO_NET_HDR_F_*` bits.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type, possibly with the ECN bit.
    pub gso_type: u8,
    /// Length of the headers before the payload; a hint only, not validated.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO frame.
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the Ethernet header (with `NEEDS_CSUM`).
    pub csum_start: u16,
    /// Where the checksum is stored, from `csum_start` (with `NEEDS_CSUM`).
    pub csum_offset: u16,
}

impl VnetHeader {
    /// Decodes the first [`LEN`] bytes of `bytes`; `None` if there are fewer.
    #[inline]
    pub fn parse(bytes: &[u8]) -> Option<VnetHeader> {
        let header = bytes.first_chunk::<LEN>()?;
        let read = |range: field::Field| {
            let pair = &header[range];
            u16::from_ne_bytes([pair[0], pair[1]])
        };
        Some(VnetHeader {
            flags: header[field::FLAGS],
            gso_type: header[field::GSO_TYPE],
            hdr_len: read(field::HDR_LEN),
            gso_size: read(field::GSO_SIZE),
            csum_start: read(field::CSUM_START),
            csum_offset: read(field::CSUM_OFFSET),
        })
    }

    /// Encodes the header as the kernel would write it (tests, benchmarks, tools).
    pub fn to_bytes(&self) -> [u8; LEN] {
        let mut bytes = [0u8; LEN];
        bytes[field::FLAGS] = self.flags;
        bytes[field::GSO_TYPE] = self.gso_type;
        bytes[field::HDR_LEN].copy_from_slice(&self.hdr_len.to_ne_bytes());
        bytes[field::GSO_SIZE].copy_from_slice(&self.gso_size.to_ne_bytes());
        bytes[field::CSUM_START].copy_from_slice(&self.csum_start.to_ne_bytes());
        bytes[field::CSUM_OFFSET].copy_from_slice(&self.csum_offset.to_ne_bytes());
        bytes
    }

    /// The GSO type without the ECN flag bit.
    #[inline]
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !VIRTIO_NET_HDR_GSO_ECN
    }

    /// What the flags say about the L4 checksum.
    #[inline]
    pub fn checksum_hint(&self) -> ChecksumHint {
        if self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            ChecksumHint::Partial
        } else if self.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
            ChecksumHint::Verified
        } else {
            ChecksumHint::Unverified
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header the kernel writes for a 10 x 1400-byte UDP GSO frame from a local
    /// `UDP_SEGMENT` send on x86: NEEDS_CSUM, UDP_L4, hdr_len 42, gso_size 1400,
    /// csum_start 34 (Ethernet 14 + IPv4 20), csum_offset 6.
    #[cfg(target_endian = "little")]
    const GSO_HEADER: [u8; LEN] = [0x01, 0x05, 42, 0, 0x78, 0x05, 34, 0, 6, 0];

    #[cfg(target_endian = "little")]
    #[test]
    fn parse_little_endian_literal() {
        let header = VnetHeader::parse(&GSO_HEADER).unwrap();
        assert_eq!(
            header,
            VnetHeader {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
                hdr_len: 42,
                gso_size: 1400,
                csum_start: 34,
                csum_offset: 6,
            }
        );
        assert_eq!(header.to_bytes(), GSO_HEADER);
        assert_eq!(header.checksum_hint(), ChecksumHint::Partial);
    }

    #[test]
    fn round_trip_and_extra_bytes_ignored() {
        let header = VnetHeader {
            flags: VIRTIO_NET_HDR_F_DATA_VALID,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
            hdr_len: 0x1234,
            gso_size: 0xabcd,
            csum_start: 1,
            csum_offset: 0xffff,
        };
        let mut bytes = [0xeeu8; 16];
        bytes[..LEN].copy_from_slice(&header.to_bytes());
        assert_eq!(VnetHeader::parse(&bytes), Some(header));
        assert_eq!(header.gso_kind(), VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(header.checksum_hint(), ChecksumHint::Verified);
    }

    #[test]
    fn truncated() {
        for len in 0..LEN {
            assert_eq!(VnetHeader::parse(&[0u8; LEN][..len]), None);
        }
    }

    #[test]
    fn zero_header_means_plain_frame() {
        let header = VnetHeader::parse(&[0u8; LEN]).unwrap();
        assert_eq!(header.gso_kind(), VIRTIO_NET_HDR_GSO_NONE);
        assert_eq!(header.checksum_hint(), ChecksumHint::Unverified);
    }
}
