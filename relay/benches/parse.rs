//! Cost of `wire::parse_frame` on the frames the relay sees most: a 1400-byte multicast datagram
//! (with and without verifying the UDP checksum ourselves), the same over IPv6, and a GSO
//! super-frame of ten such datagrams as veth delivers it, including walking its segments.
//!
//! Run with `cargo bench -p relay --bench parse`.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use relay::wire::{ethernet, ipv4, ipv6, parse_frame, udp, vnet, ChecksumHint, Parsed, VnetHeader};

const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
/// The largest payload a relay behind a 1500-byte MTU sends.
const MAX_PAYLOAD: usize = 1472;
const ETHERNET_AND_IP: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN;

/// An untagged Ethernet/IPv4/UDP frame with `payload_len` bytes of payload and valid checksums.
fn udp_frame(payload_len: usize) -> Vec<u8> {
    let udp_len = udp::HEADER_LEN + payload_len;
    let mut frame = vec![0u8; ETHERNET_AND_IP + udp_len];
    for (index, byte) in frame[ETHERNET_AND_IP + udp::HEADER_LEN..]
        .iter_mut()
        .enumerate()
    {
        *byte = index as u8;
    }
    ethernet::Frame::emit(
        &mut frame[..],
        [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
        [0x02, 0, 0, 0, 0, 0x01],
        ethernet::ethertype::IPV4,
    )
    .expect("room for the Ethernet header");
    ipv4::Repr {
        source: SOURCE,
        destination: GROUP,
        protocol: ipv4::protocol::UDP,
        ttl: 64,
        payload_len: u16::try_from(udp_len).expect("benchmark frames fit in 64 KiB"),
    }
    .emit(&mut frame[ethernet::HEADER_LEN..])
    .expect("room for the IPv4 header");
    udp::Repr {
        source_port: 5000,
        destination_port: 5001,
    }
    .emit(&mut frame[ETHERNET_AND_IP..], SOURCE, GROUP)
    .expect("room for the UDP header");
    frame
}

const SOURCE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234);

/// [`udp_frame`] over IPv6 (no extension headers).
fn udp6_frame(payload_len: usize) -> Vec<u8> {
    let header_len = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
    let udp_len = udp::HEADER_LEN + payload_len;
    let mut frame = vec![0u8; header_len + udp_len];
    for (index, byte) in frame[header_len + udp::HEADER_LEN..].iter_mut().enumerate() {
        *byte = index as u8;
    }
    ethernet::Frame::emit(
        &mut frame[..],
        [0x33, 0x33, 0, 0, 0x12, 0x34],
        [0x02, 0, 0, 0, 0, 0x01],
        ethernet::ethertype::IPV6,
    )
    .expect("room for the Ethernet header");
    ipv6::Repr {
        source: SOURCE6,
        destination: GROUP6,
        next_header: ipv6::next_header::UDP,
        hop_limit: 64,
        traffic_class: 0,
        payload_len: u16::try_from(udp_len).expect("benchmark frames fit in 64 KiB"),
    }
    .emit(&mut frame[ethernet::HEADER_LEN..])
    .expect("room for the IPv6 header");
    udp::Repr {
        source_port: 5000,
        destination_port: 5001,
    }
    .emit_ipv6(&mut frame[header_len..], &SOURCE6, &GROUP6)
    .expect("room for the UDP header");
    frame
}

fn datagram(c: &mut Criterion) {
    datagram_of(c, "parse_frame/datagram_1400", &udp_frame(1400));
    datagram_of(c, "parse_frame/ipv6_datagram_1400", &udp6_frame(1400));
}

fn datagram_of(c: &mut Criterion, name: &str, frame: &[u8]) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for (name, hint) in [
        ("checksum_verified_here", ChecksumHint::Unverified),
        ("checksum_vouched_by_kernel", ChecksumHint::Verified),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                // Return a small summary: criterion's own black_box of a whole `Parsed` would
                // cost more than the parse.
                match parse_frame(black_box(frame), None, None, hint, MAX_PAYLOAD) {
                    Parsed::Datagram(datagram) => datagram.payload.len(),
                    other => panic!("benchmark frame did not parse: {other:?}"),
                }
            })
        });
    }
    group.finish();
}

fn gso_super_frame(c: &mut Criterion) {
    const SEGMENTS: u64 = 10;
    let frame = udp_frame(SEGMENTS as usize * 1400);
    let header = VnetHeader {
        flags: vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: vnet::VIRTIO_NET_HDR_GSO_UDP_L4,
        hdr_len: (ETHERNET_AND_IP + udp::HEADER_LEN) as u16,
        gso_size: 1400,
        csum_start: ETHERNET_AND_IP as u16,
        csum_offset: 6,
    };
    let vnet_bytes = header.to_bytes();
    let mut group = c.benchmark_group("parse_frame/gso_10x1400");
    group.throughput(Throughput::Elements(SEGMENTS));
    group.bench_function("parse_and_split", |b| {
        b.iter(|| {
            let header = VnetHeader::parse(black_box(&vnet_bytes));
            let parsed = parse_frame(
                black_box(&frame),
                header.as_ref(),
                None,
                ChecksumHint::Partial,
                MAX_PAYLOAD,
            );
            let mut bytes = 0;
            for segment in parsed.datagrams() {
                bytes += black_box(segment).payload.len();
            }
            assert_eq!(bytes, SEGMENTS as usize * 1400);
        })
    });
    group.finish();
}

criterion_group!(benches, datagram, gso_super_frame);
criterion_main!(benches);
