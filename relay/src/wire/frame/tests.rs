//! The frame parser's tests, against literal and built frames (parse, truncated, bad
//! lengths, GSO, checksums, robustness).

use super::*;
use crate::wire::checksum;
use crate::wire::vnet::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP,
    VIRTIO_NET_HDR_GSO_UDP_L4,
};

/// Largest payload the tests' relay can send: a full UDP datagram.
const MAX_PAYLOAD: usize = 65_507;
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

/// A complete minimum-size frame, byte by byte: 10.0.0.1:5000 -> 239.1.1.1:5001, TTL 64,
/// payload ca fe ba be, valid IPv4 and UDP checksums, padded to the 60-byte Ethernet minimum.
const LITERAL_FRAME: [u8; 60] = [
    // Ethernet: 01:00:5e:01:01:01 <- 02:00:00:00:00:01, IPv4
    0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
    // IPv4: 45 00, total length 32, id 0x1234, DF, TTL 64, UDP, checksum 2e96
    0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x2e, 0x96, //
    10, 0, 0, 1, 239, 1, 1, 1, //
    // UDP: 5000 -> 5001, length 12, checksum 5904
    0x13, 0x88, 0x13, 0x89, 0x00, 0x0c, 0x59, 0x04, //
    0xca, 0xfe, 0xba, 0xbe, // payload
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
];
/// Where the IPv4 header starts in an untagged frame.
const IP: usize = 14;
/// Where the UDP header starts in an untagged frame.
const UDP: usize = 34;

/// How to build a test frame.
#[derive(Clone)]
struct Spec {
    /// An in-frame tag: (tag EtherType, TCI).
    tag: Option<(u16, u16)>,
    ethertype: u16,
    protocol: u8,
    ttl: u8,
    src_port: u16,
    dst_port: u16,
    payload: Vec<u8>,
    /// Write a UDP checksum (else 0, "none").
    udp_checksum: bool,
    /// Bytes after the IPv4 packet.
    padding: usize,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            tag: None,
            ethertype: ethertype::IPV4,
            protocol: ipv4::protocol::UDP,
            ttl: 64,
            src_port: 5000,
            dst_port: 5001,
            payload: pattern(1400),
            udp_checksum: true,
            padding: 0,
        }
    }
}

/// Recognisable payload bytes: no two neighbouring segments look alike.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Builds a frame with the crate's own emitters; lengths above 65535 are written as 0, as the
/// kernel does for a big GSO packet.
fn build(spec: &Spec) -> Vec<u8> {
    let tag_len = if spec.tag.is_some() { vlan::TAG_LEN } else { 0 };
    let ip_start = ethernet::HEADER_LEN + tag_len;
    let udp_len = udp::HEADER_LEN + spec.payload.len();
    let mut frame = vec![0u8; ip_start + ipv4::MIN_HEADER_LEN + udp_len + spec.padding];
    let outer_ethertype = spec.tag.map_or(spec.ethertype, |(tpid, _)| tpid);
    ethernet::Frame::emit(
        &mut frame[..],
        [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
        [0x02, 0, 0, 0, 0, 0x01],
        outer_ethertype,
    )
    .unwrap();
    if let Some((_, tci)) = spec.tag {
        vlan::Tag::emit(&mut frame[ethernet::HEADER_LEN..], tci, spec.ethertype).unwrap();
    }
    let udp_start = ip_start + ipv4::MIN_HEADER_LEN;
    let udp_end = udp_start + udp_len;
    frame[udp_start + udp::HEADER_LEN..udp_end].copy_from_slice(&spec.payload);
    let big = udp_len > 0xffff - ipv4::MIN_HEADER_LEN;
    let repr = ipv4::Repr {
        source: SOURCE,
        destination: GROUP,
        protocol: spec.protocol,
        ttl: spec.ttl,
        payload_len: if big { 0 } else { udp_len as u16 },
    };
    repr.emit(&mut frame[ip_start..]).unwrap();
    if big {
        set_u16(&mut frame, ip_start + 2, 0);
        fix_ip_checksum(&mut frame, ip_start);
        let udp = &mut frame[udp_start..udp_end];
        udp[..2].copy_from_slice(&spec.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
    } else {
        udp::Repr {
            source_port: spec.src_port,
            destination_port: spec.dst_port,
        }
        .emit(&mut frame[udp_start..udp_end], SOURCE, GROUP)
        .unwrap();
        if !spec.udp_checksum {
            set_u16(&mut frame, udp_start + 6, 0);
        }
    }
    frame
}

fn set_u16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Recomputes the IPv4 header checksum after a test changed a header field.
fn fix_ip_checksum(frame: &mut [u8], ip_start: usize) {
    // Tests also damage the IHL: checksum what is there, at least the fixed header.
    let header_len = (usize::from(frame[ip_start] & 0x0f) * 4)
        .max(ipv4::MIN_HEADER_LEN)
        .min(frame.len() - ip_start);
    set_u16(frame, ip_start + 10, 0);
    let sum = checksum::finish(checksum::sum(&frame[ip_start..ip_start + header_len]));
    set_u16(frame, ip_start + 10, sum);
}

/// Changes an IPv4 header field and keeps the header checksum right, so that only the field
/// itself is wrong.
fn patch_ip(frame: &mut [u8], offset: usize, value: u16) {
    set_u16(frame, IP + offset, value);
    fix_ip_checksum(frame, IP);
}

fn parse_plain(frame: &[u8]) -> Parsed<'_> {
    parse_frame(frame, None, None, ChecksumHint::Unverified, MAX_PAYLOAD)
}

fn expect_datagram(parsed: Parsed<'_>) -> Datagram<'_> {
    match parsed {
        Parsed::Datagram(datagram) => datagram,
        other => panic!("expected a datagram, got {other:?}"),
    }
}

fn gso_header(gso_type: u8, gso_size: u16) -> VnetHeader {
    VnetHeader {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type,
        hdr_len: (UDP + udp::HEADER_LEN) as u16,
        gso_size,
        csum_start: UDP as u16,
        csum_offset: 6,
    }
}

/// A GSO super-frame the way the kernel hands it over: whole-packet lengths and only the
/// pseudo-header sum in the UDP checksum field.
fn build_gso(payload_len: usize) -> Vec<u8> {
    let mut frame = build(&Spec {
        payload: pattern(payload_len),
        ..Spec::default()
    });
    let udp_len = u16::try_from(udp::HEADER_LEN + payload_len).unwrap_or(0);
    let pseudo = checksum::ipv4_pseudo_header(SOURCE.octets(), GROUP.octets(), 17, udp_len);
    set_u16(&mut frame, UDP + 6, !checksum::finish(pseudo));
    frame
}

// ---- whole frames from literal bytes ----

#[test]
fn literal_frame_parses() {
    let datagram = expect_datagram(parse_plain(&LITERAL_FRAME));
    assert_eq!(
        datagram,
        Datagram {
            vlan_id: None,
            src: SOURCE.into(),
            dst: GROUP.into(),
            src_port: 5000,
            dst_port: 5001,
            ttl: 64,
            tos: 0,
            payload: &[0xca, 0xfe, 0xba, 0xbe],
        }
    );
    // The emitters build the same bytes (apart from the identification we left at 0).
    let mut built = build(&Spec {
        payload: vec![0xca, 0xfe, 0xba, 0xbe],
        padding: 14,
        ..Spec::default()
    });
    set_u16(&mut built, IP + 4, 0x1234);
    fix_ip_checksum(&mut built, IP);
    assert_eq!(built, LITERAL_FRAME);
}

#[test]
fn every_short_prefix_is_truncated() {
    // Up to the end of the IPv4 total length, every prefix is cut short somewhere.
    for len in 0..IP + 32 {
        assert_eq!(
            parse_plain(&LITERAL_FRAME[..len]),
            Parsed::Malformed(Malformed::Truncated),
            "{len} bytes"
        );
    }
    // Beyond it only padding goes missing.
    for len in IP + 32..=LITERAL_FRAME.len() {
        expect_datagram(parse_plain(&LITERAL_FRAME[..len]));
    }
}

#[test]
fn ordinary_1400_byte_datagram() {
    let frame = build(&Spec::default());
    let datagram = expect_datagram(parse_plain(&frame));
    assert_eq!(datagram.payload, &pattern(1400)[..]);
    assert_eq!(datagram.payload.as_ptr(), frame[UDP + 8..].as_ptr());
    assert_eq!(parse_plain(&frame).datagrams().count(), 1);
}

#[test]
fn empty_payload_is_one_datagram() {
    let frame = build(&Spec {
        payload: Vec::new(),
        padding: 18,
        ..Spec::default()
    });
    let parsed = parse_plain(&frame);
    assert_eq!(expect_datagram(parsed).payload, &[] as &[u8]);
    let all: Vec<_> = parsed.datagrams().collect();
    assert_eq!(all.len(), 1);
    assert!(all[0].payload.is_empty());
}

// ---- one test per malformation ----

#[test]
fn bad_ip_header_length() {
    for first_byte in [0x44, 0x40, 0x65, 0x35, 0x4f] {
        let mut frame = LITERAL_FRAME;
        frame[IP] = first_byte;
        fix_ip_checksum(&mut frame, IP);
        assert_eq!(
            parse_plain(&frame[..IP + 32]),
            Parsed::Malformed(Malformed::BadIpHeaderLength),
            "version/IHL byte {first_byte:#x}"
        );
    }
}

#[test]
fn bad_total_length() {
    for total in [27u16, 20, 19, 0] {
        let mut frame = LITERAL_FRAME;
        patch_ip(&mut frame, 2, total);
        assert_eq!(
            parse_plain(&frame),
            Parsed::Malformed(Malformed::BadTotalLength),
            "total length {total}"
        );
    }
}

#[test]
fn total_length_beyond_frame_is_truncated() {
    let mut frame = LITERAL_FRAME;
    patch_ip(&mut frame, 2, 47); // 14 + 47 = 61 > 60 bytes
    assert_eq!(parse_plain(&frame), Parsed::Malformed(Malformed::Truncated));
}

#[test]
fn ip_options() {
    // Insert a Router Alert option (94 04 00 00) into a UDP packet.
    let mut frame = LITERAL_FRAME[..IP + 20].to_vec();
    frame.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
    frame.extend_from_slice(&LITERAL_FRAME[IP + 20..]);
    frame[IP] = 0x46;
    patch_ip(&mut frame, 2, 36);
    assert_eq!(parse_plain(&frame), Parsed::Malformed(Malformed::IpOptions));
}

#[test]
fn igmp_with_router_alert_is_filtered_not_malformed() {
    // An IGMPv2 membership report to 239.1.1.1 with the Router Alert option, as every host
    // joining our groups sends.
    let mut frame = vec![
        0x01, 0x00, 0x5e, 0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, //
        0x46, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00, //
        10, 0, 0, 1, 239, 1, 1, 1, 0x94, 0x04, 0x00, 0x00, //
        0x16, 0x00, 0x00, 0x00, 239, 1, 1, 1,
    ];
    fix_ip_checksum(&mut frame, IP);
    assert_eq!(parse_plain(&frame), Parsed::Filtered(Filtered::NotUdp));
}

#[test]
fn fragments() {
    // First fragment (MF), a middle one (MF + offset), the last (offset only).
    for flags in [0x2000u16, 0x20b9, 0x00b9] {
        let mut frame = LITERAL_FRAME;
        patch_ip(&mut frame, 6, flags);
        assert_eq!(
            parse_plain(&frame),
            Parsed::Malformed(Malformed::Fragment),
            "flags/offset {flags:#06x}"
        );
    }
}

#[test]
fn bad_ip_checksum() {
    let mut frame = LITERAL_FRAME;
    frame[IP + 11] ^= 0x40;
    assert_eq!(
        parse_plain(&frame),
        Parsed::Malformed(Malformed::BadIpChecksum)
    );
    // A changed field without a new checksum is caught too, whatever the hint says.
    let mut frame = LITERAL_FRAME;
    frame[IP + 19] = 2;
    let parsed = parse_frame(&frame, None, None, ChecksumHint::Verified, MAX_PAYLOAD);
    assert_eq!(parsed, Parsed::Malformed(Malformed::BadIpChecksum));
}

#[test]
fn bad_udp_length() {
    for length in [13u16, 11, 8, 7, 0] {
        let mut frame = LITERAL_FRAME;
        set_u16(&mut frame, UDP + 4, length);
        assert_eq!(
            parse_plain(&frame),
            Parsed::Malformed(Malformed::BadUdpLength),
            "UDP length {length}"
        );
    }
}

#[test]
fn bad_udp_checksum_only_when_unverified() {
    let mut frame = build(&Spec::default());
    let last = frame.len() - 1;
    frame[last] ^= 0x01;
    assert_eq!(
        parse_plain(&frame),
        Parsed::Malformed(Malformed::BadUdpChecksum)
    );
    for hint in [ChecksumHint::Verified, ChecksumHint::Partial] {
        expect_datagram(parse_frame(&frame, None, None, hint, MAX_PAYLOAD));
    }
    // The vnet header's word counts as much as the ring's status.
    for flags in [VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM] {
        let vnet = VnetHeader {
            flags,
            ..VnetHeader::default()
        };
        let parsed = parse_frame(
            &frame,
            Some(&vnet),
            None,
            ChecksumHint::Unverified,
            MAX_PAYLOAD,
        );
        expect_datagram(parsed);
    }
    let plain_vnet = VnetHeader::default();
    let parsed = parse_frame(
        &frame,
        Some(&plain_vnet),
        None,
        ChecksumHint::Unverified,
        MAX_PAYLOAD,
    );
    assert_eq!(parsed, Parsed::Malformed(Malformed::BadUdpChecksum));
}

#[test]
fn zero_udp_checksum_means_none() {
    let frame = build(&Spec {
        udp_checksum: false,
        ..Spec::default()
    });
    assert_eq!(&frame[UDP + 6..UDP + 8], &[0, 0]);
    expect_datagram(parse_plain(&frame));
}

#[test]
fn oversize() {
    let frame = build(&Spec::default());
    let parsed = parse_frame(&frame, None, None, ChecksumHint::Unverified, 1399);
    assert_eq!(parsed, Parsed::Malformed(Malformed::Oversize));
    expect_datagram(parse_frame(
        &frame,
        None,
        None,
        ChecksumHint::Unverified,
        1400,
    ));
}

#[test]
fn bad_gso() {
    let frame = build_gso(4000);
    let cases = [
        gso_header(VIRTIO_NET_HDR_GSO_TCPV4, 1400),
        gso_header(VIRTIO_NET_HDR_GSO_TCPV6, 1400),
        gso_header(2, 1400),
        gso_header(0x7f, 1400),
        gso_header(VIRTIO_NET_HDR_GSO_UDP_L4, 0),
    ];
    for vnet in cases {
        let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Partial, 9000);
        assert_eq!(parsed, Parsed::Malformed(Malformed::BadGso), "{vnet:?}");
    }
}

// ---- filtered ----

#[test]
fn other_ethertypes_are_not_ip() {
    let arp = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // request
        0x02, 0, 0, 0, 0, 0x01, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ];
    assert_eq!(parse_plain(&arp), Parsed::Filtered(Filtered::NotIp));
    for ethertype in [0x88cc, 0x0042] {
        let frame = build(&Spec {
            ethertype,
            ..Spec::default()
        });
        assert_eq!(parse_plain(&frame), Parsed::Filtered(Filtered::NotIp));
    }
}

#[test]
fn other_protocols_are_not_udp() {
    for protocol in [
        ipv4::protocol::IGMP,
        ipv4::protocol::TCP,
        ipv4::protocol::ICMP,
    ] {
        let frame = build(&Spec {
            protocol,
            ..Spec::default()
        });
        assert_eq!(parse_plain(&frame), Parsed::Filtered(Filtered::NotUdp));
    }
}

// ---- VLAN ----

#[test]
fn in_frame_vlan_tag() {
    for tpid in [ethertype::VLAN, ethertype::QINQ] {
        let frame = build(&Spec {
            tag: Some((tpid, 0xa064)),
            ..Spec::default()
        });
        let datagram = expect_datagram(parse_plain(&frame));
        assert_eq!(datagram.vlan_id, Some(100));
        assert_eq!(datagram.payload, &pattern(1400)[..]);
        assert_eq!(datagram.dst_port, 5001);
    }
}

#[test]
fn truncated_vlan_tag() {
    let frame = build(&Spec {
        tag: Some((ethertype::VLAN, 100)),
        ..Spec::default()
    });
    for len in 14..18 {
        assert_eq!(
            parse_plain(&frame[..len]),
            Parsed::Malformed(Malformed::Truncated)
        );
    }
}

#[test]
fn kernel_stripped_vlan_tag() {
    let frame = build(&Spec::default());
    let parsed = parse_frame(
        &frame,
        None,
        Some(0xa064),
        ChecksumHint::Unverified,
        MAX_PAYLOAD,
    );
    assert_eq!(expect_datagram(parsed).vlan_id, Some(100));
    // A priority-tagged frame has VLAN id 0.
    let parsed = parse_frame(&frame, None, Some(0xa000), ChecksumHint::Unverified, 9000);
    assert_eq!(expect_datagram(parsed).vlan_id, Some(0));
}

#[test]
fn two_tags_are_filtered() {
    // QinQ in the frame: 802.1ad outer tag, 802.1Q inner tag.
    let mut frame = build(&Spec {
        tag: Some((ethertype::QINQ, 200)),
        ethertype: ethertype::VLAN,
        ..Spec::default()
    });
    assert_eq!(parse_plain(&frame), Parsed::Filtered(Filtered::NotIp));
    // A stripped tag in front of an in-frame tag.
    frame[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
    frame[16..18].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    expect_datagram(parse_plain(&frame));
    let parsed = parse_frame(&frame, None, Some(200), ChecksumHint::Unverified, 9000);
    assert_eq!(parsed, Parsed::Filtered(Filtered::NotIp));
}

// ---- sizes ----

#[test]
fn jumbo_frame() {
    let payload_len = 9000 - 14 - 20 - 8;
    let frame = build(&Spec {
        payload: pattern(payload_len),
        ..Spec::default()
    });
    assert_eq!(frame.len(), 9000);
    let datagram = expect_datagram(parse_frame(
        &frame,
        None,
        None,
        ChecksumHint::Unverified,
        9000,
    ));
    assert_eq!(datagram.payload, &pattern(payload_len)[..]);
}

// ---- GSO ----

#[test]
fn gso_super_frame_splits_into_segments() {
    // Ten full segments and a short last one, as a UDP_SEGMENT send of 14,600 bytes makes.
    let payload_len = 10 * 1400 + 600;
    let frame = build_gso(payload_len);
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP_L4, 1400);
    let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Partial, 1472);
    let Parsed::Segmented {
        first,
        segment_size,
    } = parsed
    else {
        panic!("expected segments, got {parsed:?}");
    };
    assert_eq!(segment_size, 1400);
    assert_eq!(first.payload.len(), payload_len);
    let segments = parsed.datagrams();
    assert_eq!(segments.len(), 11);
    let expected = pattern(payload_len);
    let mut offset = 0;
    for (index, segment) in segments.enumerate() {
        let expected_len = if index < 10 { 1400 } else { 600 };
        assert_eq!(segment.payload.len(), expected_len, "segment {index}");
        assert_eq!(segment.payload, &expected[offset..offset + expected_len]);
        assert_eq!(
            Datagram {
                payload: &[],
                ..segment
            },
            Datagram {
                vlan_id: None,
                src: SOURCE.into(),
                dst: GROUP.into(),
                src_port: 5000,
                dst_port: 5001,
                ttl: 64,
                tos: 0,
                payload: &[],
            }
        );
        offset += expected_len;
    }
    assert_eq!(offset, payload_len);
}

#[test]
fn gso_exact_multiple_has_no_empty_tail() {
    let frame = build_gso(3 * 1000);
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP_L4 | VIRTIO_NET_HDR_GSO_ECN, 1000);
    let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Partial, 1472);
    let lengths: Vec<_> = parsed.datagrams().map(|d| d.payload.len()).collect();
    assert_eq!(lengths, [1000, 1000, 1000]);
}

#[test]
fn gso_with_one_segment_is_a_datagram() {
    let frame = build_gso(900);
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP_L4, 1400);
    // The checksum field holds only a pseudo-header sum, so even "unverified" must not check.
    let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Unverified, 1472);
    assert_eq!(expect_datagram(parsed).payload, &pattern(900)[..]);
}

#[test]
fn gso_segment_size_above_max_payload_is_oversize() {
    let frame = build_gso(6000);
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP_L4, 1500);
    let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Partial, 1472);
    assert_eq!(parsed, Parsed::Malformed(Malformed::Oversize));
}

#[test]
fn gso_lengths_must_describe_the_whole_super_packet() {
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP_L4, 1400);
    // A UDP length of one segment instead of the whole run.
    let mut frame = build_gso(4200);
    set_u16(&mut frame, UDP + 4, 1408);
    let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Partial, 1472);
    assert_eq!(parsed, Parsed::Malformed(Malformed::BadUdpLength));
    // A zero total length on a super-packet that fits in 16 bits.
    let mut frame = build_gso(4200);
    patch_ip(&mut frame, 2, 0);
    let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Partial, 1472);
    assert_eq!(parsed, Parsed::Malformed(Malformed::BadTotalLength));
}

#[test]
fn gso_beyond_64k_with_zero_lengths() {
    let payload_len = 50 * 1400;
    let frame = build_gso(payload_len);
    assert_eq!(&frame[IP + 2..IP + 4], &[0, 0]);
    assert_eq!(&frame[UDP + 4..UDP + 6], &[0, 0]);
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP_L4, 1400);
    let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Partial, 1472);
    assert_eq!(parsed.datagrams().len(), 50);
    let total: usize = parsed.datagrams().map(|d| d.payload.len()).sum();
    assert_eq!(total, payload_len);
    // Without a GSO header the same frame is not acceptable.
    assert_eq!(
        parse_frame(&frame, None, None, ChecksumHint::Partial, MAX_PAYLOAD),
        Parsed::Malformed(Malformed::BadTotalLength)
    );
}

#[test]
fn ufo_is_one_big_datagram() {
    let frame = build(&Spec {
        payload: pattern(20_000),
        ..Spec::default()
    });
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP, 1480);
    let parsed = parse_frame(
        &frame,
        Some(&vnet),
        None,
        ChecksumHint::Partial,
        MAX_PAYLOAD,
    );
    assert_eq!(expect_datagram(parsed).payload.len(), 20_000);
    let parsed = parse_frame(&frame, Some(&vnet), None, ChecksumHint::Partial, 1472);
    assert_eq!(parsed, Parsed::Malformed(Malformed::Oversize));
}

#[test]
fn gso_on_a_truncated_ring_frame_is_truncated() {
    // A ring slot smaller than the super-frame cuts it: never forward a partial run.
    let frame = build_gso(10 * 1400);
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP_L4, 1400);
    let parsed = parse_frame(
        &frame[..2048],
        Some(&vnet),
        None,
        ChecksumHint::Partial,
        1472,
    );
    assert_eq!(parsed, Parsed::Malformed(Malformed::Truncated));
}

#[test]
fn no_datagrams_from_rejected_frames() {
    assert_eq!(Parsed::Filtered(Filtered::NotUdp).datagrams().count(), 0);
    assert_eq!(Parsed::Malformed(Malformed::Truncated).datagrams().len(), 0);
}

// ---- robustness ----

/// xorshift64*: enough randomness to explore the parser, reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Checks what must hold for any verdict, beyond "did not panic".
fn check_invariants(frame: &[u8], parsed: Parsed<'_>, max_payload: usize) {
    let frame_range = frame.as_ptr_range();
    match parsed {
        Parsed::Datagram(datagram) => {
            assert!(datagram.payload.len() <= max_payload);
            assert_eq!(parsed.datagrams().len(), 1);
        }
        Parsed::Segmented {
            first,
            segment_size,
        } => {
            assert!(segment_size > 0 && usize::from(segment_size) <= max_payload);
            assert!(first.payload.len() > usize::from(segment_size));
            let mut total = 0;
            let segments = parsed.datagrams();
            let count = segments.len();
            assert!(count >= 2);
            for segment in segments {
                assert!(!segment.payload.is_empty());
                assert!(segment.payload.len() <= usize::from(segment_size));
                total += segment.payload.len();
            }
            assert_eq!(total, first.payload.len());
        }
        Parsed::Filtered(_) | Parsed::Malformed(_) => {
            assert_eq!(parsed.datagrams().next(), None);
        }
    }
    for datagram in parsed.datagrams() {
        let payload = datagram.payload.as_ptr_range();
        assert!(frame_range.start <= payload.start && payload.end <= frame_range.end);
    }
}

fn random_vnet(rng: &mut Rng) -> Option<VnetHeader> {
    match rng.below(4) {
        0 => None,
        1 => Some(VnetHeader::default()),
        2 => Some(gso_header(
            VIRTIO_NET_HDR_GSO_UDP_L4,
            rng.below(3000) as u16,
        )),
        _ => {
            let mut bytes = [0u8; vnet::LEN];
            bytes.iter_mut().for_each(|b| *b = rng.next() as u8);
            VnetHeader::parse(&bytes)
        }
    }
}

fn random_hint(rng: &mut Rng) -> ChecksumHint {
    [
        ChecksumHint::Unverified,
        ChecksumHint::Verified,
        ChecksumHint::Partial,
    ][rng.below(3)]
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buffer = vec![0u8; 2048];
    for _ in 0..200_000 {
        let len = rng.below(buffer.len());
        for byte in &mut buffer[..len] {
            *byte = rng.next() as u8;
        }
        // Bias towards frames that get past the first layers.
        if len >= 24 && rng.below(2) == 0 {
            buffer[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            buffer[14] = 0x45;
            buffer[23] = ipv4::protocol::UDP;
            if rng.below(2) == 0 && len >= 34 {
                fix_ip_checksum(&mut buffer, IP);
            }
        }
        let frame = &buffer[..len];
        let vnet = random_vnet(&mut rng);
        let tci = (rng.below(4) == 0).then(|| rng.next() as u16);
        let max_payload = rng.below(70_000);
        let parsed = parse_frame(
            frame,
            vnet.as_ref(),
            tci,
            random_hint(&mut rng),
            max_payload,
        );
        check_invariants(frame, parsed, max_payload);
    }
}

#[test]
fn mutated_valid_frames_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let originals = [
        LITERAL_FRAME.to_vec(),
        build(&Spec::default()),
        build(&Spec {
            tag: Some((ethertype::VLAN, 7)),
            payload: pattern(100),
            ..Spec::default()
        }),
        build_gso(5 * 1000 + 1),
        build_gso(50 * 1400),
    ];
    let mut outcomes = [0usize; 4];
    for round in 0..20_000 {
        let original = &originals[round % originals.len()];
        let mut frame = original.clone();
        for _ in 0..rng.below(4) {
            // Mutate mostly in the headers, where the decisions are.
            let at = rng.below(frame.len().min(64));
            frame[at] = rng.next() as u8;
        }
        if rng.below(2) == 0 {
            fix_ip_checksum(&mut frame, IP);
        }
        let len = if rng.below(3) == 0 {
            rng.below(frame.len() + 1)
        } else {
            frame.len()
        };
        let frame = &frame[..len];
        let vnet = if original.len() > 5000 {
            Some(gso_header(
                VIRTIO_NET_HDR_GSO_UDP_L4,
                1 + rng.below(2000) as u16,
            ))
        } else {
            random_vnet(&mut rng)
        };
        let max_payload = [1472, 9000, MAX_PAYLOAD][rng.below(3)];
        let parsed = parse_frame(
            frame,
            vnet.as_ref(),
            None,
            random_hint(&mut rng),
            max_payload,
        );
        check_invariants(frame, parsed, max_payload);
        outcomes[match parsed {
            Parsed::Datagram(_) => 0,
            Parsed::Segmented { .. } => 1,
            Parsed::Filtered(_) => 2,
            Parsed::Malformed(_) => 3,
        }] += 1;
    }
    // The mutations must reach every verdict, or the test explores too little.
    assert!(outcomes.iter().all(|&count| count > 0), "{outcomes:?}");
}

// ---- IPv6 ----

const SOURCE6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const GROUP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234);

/// An IPv6 frame: `extensions` (already chained, the last one's next header UDP) between the
/// fixed header and a UDP datagram to GROUP6 port 5001 from SOURCE6 port 5000, hop limit 9,
/// traffic class 0xb9, with a right checksum.
fn build_v6(first_next: u8, extensions: &[u8], payload: &[u8], tag: bool) -> Vec<u8> {
    let mut udp = vec![0u8; udp::HEADER_LEN + payload.len()];
    udp[udp::HEADER_LEN..].copy_from_slice(payload);
    udp::Repr {
        source_port: 5000,
        destination_port: 5001,
    }
    .emit_ipv6(&mut udp, &SOURCE6, &GROUP6)
    .unwrap();
    let mut frame = vec![0u8; ethernet::HEADER_LEN];
    let outer = if tag {
        ethertype::VLAN
    } else {
        ethertype::IPV6
    };
    ethernet::Frame::emit(
        &mut frame[..],
        [0x33, 0x33, 0, 0, 0x12, 0x34],
        [0x02, 0, 0, 0, 0, 0x01],
        outer,
    )
    .unwrap();
    if tag {
        let mut t = [0u8; vlan::TAG_LEN];
        vlan::Tag::emit(&mut t[..], 100, ethertype::IPV6).unwrap();
        frame.extend_from_slice(&t);
    }
    let mut ip = [0u8; ipv6::HEADER_LEN];
    ipv6::Repr {
        source: SOURCE6,
        destination: GROUP6,
        next_header: first_next,
        hop_limit: 9,
        traffic_class: 0xb9,
        payload_len: (extensions.len() + udp.len()) as u16,
    }
    .emit(&mut ip)
    .unwrap();
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(extensions);
    frame.extend_from_slice(&udp);
    frame
}

fn plain_v6(payload: &[u8]) -> Vec<u8> {
    build_v6(ipv6::next_header::UDP, &[], payload, false)
}

/// Where the UDP header starts in an untagged IPv6 frame without extension headers.
const UDP6: usize = 14 + 40;

#[test]
fn an_ipv6_datagram_is_parsed_with_its_addresses_hop_limit_and_traffic_class() {
    let payload = pattern(1400);
    for tag in [false, true] {
        let frame = build_v6(ipv6::next_header::UDP, &[], &payload, tag);
        let Parsed::Datagram(d) = parse_plain(&frame) else {
            panic!("{:?}", parse_plain(&frame));
        };
        assert_eq!(d.src, IpAddr::V6(SOURCE6));
        assert_eq!(d.dst, IpAddr::V6(GROUP6));
        assert_eq!(
            (d.src_port, d.dst_port, d.ttl, d.tos),
            (5000, 5001, 9, 0xb9)
        );
        assert_eq!(d.vlan_id, tag.then_some(100));
        assert_eq!(d.payload, &payload[..]);
    }
}

#[test]
fn ipv6_extension_headers_are_walked_and_fragments_counted() {
    use ipv6::next_header as nh;
    let payload = pattern(100);
    // Hop-by-hop with a router alert, then destination options, then UDP.
    let mut ext = vec![nh::DESTINATION_OPTIONS, 0, 5, 2, 0, 0, 1, 0];
    ext.extend_from_slice(&[nh::UDP, 0, 1, 4, 0, 0, 0, 0]);
    let frame = build_v6(nh::HOP_BY_HOP, &ext, &payload, false);
    assert!(
        matches!(parse_plain(&frame), Parsed::Datagram(d) if d.payload == &payload[..]),
        "{:?}",
        parse_plain(&frame)
    );
    let first_fragment = [nh::UDP, 0, 0, 1, 0, 0, 0, 9];
    let frame = build_v6(nh::FRAGMENT, &first_fragment, &payload, false);
    assert_eq!(parse_plain(&frame), Parsed::Malformed(Malformed::Fragment));
    let routing = [nh::UDP, 0, 0, 2, 0, 0, 0, 0];
    let frame = build_v6(nh::ROUTING, &routing, &payload, false);
    assert_eq!(
        parse_plain(&frame),
        Parsed::Malformed(Malformed::ExtensionHeaders)
    );
}

#[test]
fn ipv6_other_protocols_are_not_udp() {
    // An MLD report: hop-by-hop (router alert), then ICMPv6.
    let ext = [ipv6::next_header::ICMPV6, 0, 5, 2, 0, 0, 1, 0];
    let frame = build_v6(ipv6::next_header::HOP_BY_HOP, &ext, &[0; 20], false);
    assert_eq!(parse_plain(&frame), Parsed::Filtered(Filtered::NotUdp));
    let frame = build_v6(6, &[], &[0; 20], false);
    assert_eq!(parse_plain(&frame), Parsed::Filtered(Filtered::NotUdp));
}

#[test]
fn ipv6_udp_checksums_are_mandatory_and_verified() {
    let mut frame = plain_v6(&pattern(64));
    frame[UDP6 + 7] ^= 0x10;
    assert_eq!(
        parse_plain(&frame),
        Parsed::Malformed(Malformed::BadUdpChecksum)
    );
    // The kernel's word is taken, as for IPv4.
    let verified = parse_frame(&frame, None, None, ChecksumHint::Verified, MAX_PAYLOAD);
    assert!(matches!(verified, Parsed::Datagram(_)), "{verified:?}");
    // No checksum at all: refused over IPv6 (allowed over IPv4), unless not filled in yet.
    set_u16(&mut frame, UDP6 + 6, 0);
    assert_eq!(
        parse_plain(&frame),
        Parsed::Malformed(Malformed::BadUdpChecksum)
    );
    let partial = parse_frame(&frame, None, None, ChecksumHint::Partial, MAX_PAYLOAD);
    assert!(matches!(partial, Parsed::Datagram(_)), "{partial:?}");
}

#[test]
fn ipv6_lengths_are_checked_against_the_frame_and_each_other() {
    let frame = plain_v6(&pattern(64));
    // A payload length beyond the frame.
    let mut long = frame.clone();
    set_u16(&mut long, 14 + 4, 64 + 8 + 1);
    assert_eq!(parse_plain(&long), Parsed::Malformed(Malformed::Truncated));
    // A payload length too short for the UDP header.
    let mut short = frame.clone();
    set_u16(&mut short, 14 + 4, 4);
    assert_eq!(
        parse_plain(&short),
        Parsed::Malformed(Malformed::BadTotalLength)
    );
    // A UDP length that disagrees with it.
    let mut udp_len = frame.clone();
    set_u16(&mut udp_len, UDP6 + 4, 64 + 8 - 1);
    assert_eq!(
        parse_plain(&udp_len),
        Parsed::Malformed(Malformed::BadUdpLength)
    );
    // Padding after the payload length is not part of the datagram.
    let mut padded = frame.clone();
    padded.extend_from_slice(&[0; 6]);
    assert!(matches!(parse_plain(&padded), Parsed::Datagram(d) if d.payload.len() == 64));
    // Version 4 behind the IPv6 EtherType.
    let mut v4 = frame;
    v4[14] = 0x45;
    assert_eq!(
        parse_plain(&v4),
        Parsed::Malformed(Malformed::BadIpHeaderLength)
    );
}

#[test]
fn an_ipv6_gso_super_frame_is_segmented() {
    let payload = pattern(3000);
    let frame = plain_v6(&payload);
    let vnet = gso_header(VIRTIO_NET_HDR_GSO_UDP_L4, 1000);
    let parsed = parse_frame(
        &frame,
        Some(&vnet),
        None,
        ChecksumHint::Partial,
        MAX_PAYLOAD,
    );
    let Parsed::Segmented { segment_size, .. } = parsed else {
        panic!("{parsed:?}");
    };
    assert_eq!(segment_size, 1000);
    let sizes: Vec<usize> = parsed.datagrams().map(|d| d.payload.len()).collect();
    assert_eq!(sizes, [1000, 1000, 1000]);
}

#[test]
fn every_cut_of_an_ipv6_frame_has_a_verdict() {
    let ext = [ipv6::next_header::UDP, 0, 1, 4, 0, 0, 0, 0];
    let frame = build_v6(
        ipv6::next_header::DESTINATION_OPTIONS,
        &ext,
        &pattern(40),
        true,
    );
    for cut in 0..frame.len() {
        let parsed = parse_plain(&frame[..cut]);
        assert!(
            matches!(parsed, Parsed::Malformed(_) | Parsed::Filtered(_)),
            "cut {cut}: {parsed:?}"
        );
    }
    assert!(matches!(parse_plain(&frame), Parsed::Datagram(_)));
}
