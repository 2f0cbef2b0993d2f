//! How many datagrams a frame carried when only its head was captured.
//!
//! A frame too big for a packet-ring slot is delivered whole through the socket's receive
//! queue (the copy path). When that queue is full the kernel keeps only the head in the ring,
//! so the frame's datagrams are lost to overload, not malformed. The data plane counts them as
//! such, and this works out how many there were: one, or for a GSO super-frame the number of
//! `gso_size` segments its UDP payload held.

use super::vnet::{self, VnetHeader};
use super::{ethernet, vlan};

/// UDP header length.
const UDP_HEADER_LEN: usize = 8;
/// The IPv6 fixed header's length.
const IPV6_HEADER_LEN: usize = 40;
const IPPROTO_UDP: u8 = 17;

/// The datagrams in a frame of `wire_len` bytes whose first bytes are `head` (from the
/// Ethernet header on). `None` when the head is too short, or neither IPv4 nor IPv6 with UDP next, to tell: the caller
/// then counts the frame alone.
pub fn datagrams_in_frame(head: &[u8], wire_len: usize, vnet: Option<&VnetHeader>) -> Option<u64> {
    let segment_size = match vnet {
        Some(h) if h.gso_kind() == vnet::VIRTIO_NET_HDR_GSO_UDP_L4 && h.gso_size > 0 => {
            usize::from(h.gso_size)
        }
        _ => return Some(1),
    };
    let mut l3 = ethernet::HEADER_LEN;
    let mut ethertype = u16::from_be_bytes(head.get(12..14)?.try_into().ok()?);
    if ethertype == ethernet::ethertype::VLAN {
        ethertype = u16::from_be_bytes(head.get(l3 + 2..l3 + 4)?.try_into().ok()?);
        l3 += vlan::TAG_LEN;
    }
    let headers = match ethertype {
        ethernet::ethertype::IPV4 => {
            // Version and header length are the first byte of the IPv4 header.
            let version_ihl = *head.get(l3)?;
            let ip_header = usize::from(version_ihl & 0x0f) * 4;
            if version_ihl >> 4 != 4 || ip_header < 20 {
                return None;
            }
            l3 + ip_header + UDP_HEADER_LEN
        }
        // UDP right after the fixed header: a super-frame with extension headers cannot
        // be told here (the caller counts it as one).
        ethernet::ethertype::IPV6 if *head.get(l3 + 6)? == IPPROTO_UDP => {
            l3 + IPV6_HEADER_LEN + UDP_HEADER_LEN
        }
        _ => return None,
    };
    let payload = wire_len.checked_sub(headers)?;
    Some(payload.div_ceil(segment_size).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(vlan: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0x00]);
        f.resize(f.len() + 100, 0);
        f
    }

    fn gso(size: u16) -> VnetHeader {
        VnetHeader {
            gso_type: vnet::VIRTIO_NET_HDR_GSO_UDP_L4,
            gso_size: size,
            ..VnetHeader::default()
        }
    }

    #[test]
    fn a_plain_frame_is_one_datagram() {
        assert_eq!(datagrams_in_frame(&head(false), 9000, None), Some(1));
        assert_eq!(datagrams_in_frame(&[], 9000, None), Some(1));
    }

    #[test]
    fn a_gso_frame_counts_its_segments_untagged_and_tagged() {
        // 46 segments of 1400 bytes: 14 + 20 + 8 + 46 * 1400.
        let len = 14 + 20 + 8 + 46 * 1400;
        assert_eq!(
            datagrams_in_frame(&head(false), len, Some(&gso(1400))),
            Some(46)
        );
        assert_eq!(
            datagrams_in_frame(&head(true), len + 4, Some(&gso(1400))),
            Some(46)
        );
        // A shorter last segment still counts.
        assert_eq!(
            datagrams_in_frame(&head(false), len - 700, Some(&gso(1400))),
            Some(46)
        );
    }

    #[test]
    fn an_ipv6_gso_frame_counts_its_segments_when_udp_follows_the_fixed_header() {
        let mut ipv6 = head(false);
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        ipv6[14] = 0x60;
        ipv6[14 + 6] = 17;
        let len = 14 + 40 + 8 + 7 * 1200 - 100;
        assert_eq!(datagrams_in_frame(&ipv6, len, Some(&gso(1200))), Some(7));
        // A hop-by-hop header first: not told.
        ipv6[14 + 6] = 0;
        assert_eq!(datagrams_in_frame(&ipv6, len, Some(&gso(1200))), None);
    }

    #[test]
    fn an_unreadable_head_gives_no_count() {
        assert_eq!(datagrams_in_frame(&[0; 10], 5000, Some(&gso(1400))), None);
        let mut ipv6 = head(false);
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(datagrams_in_frame(&ipv6, 5000, Some(&gso(1400))), None);
        assert_eq!(datagrams_in_frame(&head(false), 30, Some(&gso(1400))), None);
    }
}
