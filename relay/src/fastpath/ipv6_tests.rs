//! The program's IPv6 half, run on frames through `BPF_PROG_TEST_RUN`: the headers it writes
//! (read back from the frame it sends) and the frames it refuses, each in the kind userspace
//! counts it as (`wire/frame`'s `ipv6_datagram`).

use std::net::Ipv6Addr;

use libbpf_rs::{MapCore, MapFlags};

use super::layout::{self, KernelOutput};
use super::tests::privileged;
use super::{FastPath, KernelFeatures, Sizes};
use crate::config::FastPathAttach;
use crate::wire::{checksum, Malformed};

const GROUP: &str = "ff3e::1234";
const SOURCE: &str = "fd00::5";
/// The verdicts: TC_ACT_REDIRECT, and TC_ACT_UNSPEC (the next program, then the stack).
const REDIRECT: u32 = 7;
const NEXT: u32 = u32::MAX;

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An Ethernet/IPv6/UDP frame from `SOURCE`:4000 to `GROUP`:5000 with `len` bytes of
/// payload, traffic class 0xb9 (DSCP 46, ECN 1), flow label 0xabcde, hop limit 64 and a
/// right UDP checksum.
fn frame(len: usize) -> Vec<u8> {
    let udp_len = 8 + len;
    let mut f = vec![0u8; 14 + 40 + udp_len];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0x12, 0x34]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 5]);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut f[14..54];
    ip[0..4].copy_from_slice(&(6u32 << 28 | 0xb9 << 20 | 0xabcde).to_be_bytes());
    ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    ip[6] = 17;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&addr(SOURCE).octets());
    ip[24..40].copy_from_slice(&addr(GROUP).octets());
    let udp = &mut f[54..];
    udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    for (i, b) in udp[8..].iter_mut().enumerate() {
        *b = (i * 13 + 1) as u8;
    }
    set_checksum(&mut f);
    f
}

/// Computes the UDP checksum of `f` (IPv6 headers at 14) into its field.
fn set_checksum(f: &mut [u8]) {
    f[60..62].copy_from_slice(&[0, 0]);
    let c = match checksum::finish(pseudo(f) + checksum::sum(&f[54..])) {
        0 => 0xffff,
        c => c,
    };
    f[60..62].copy_from_slice(&c.to_be_bytes());
}

fn pseudo(f: &[u8]) -> u64 {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
    crate::wire::ipv6::pseudo_header(&src, &dst, 17, (f.len() - 54) as u32)
}

/// One run of the program on `frame`: its verdict and the frame as it left.
fn run(fp: &FastPath, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 64];
    let result = fp
        .program()
        .test_run(libbpf_rs::ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    let verdict = result.return_value;
    let len = result.data.map_or(0, |d| d.len());
    out.truncate(len);
    (verdict, out)
}

/// An IPv6 output out of `lo` to `dst`:6000 from fd00::9:7000, hop limit 5.
fn output(lo: u32, dst: &str, dscp: Option<u8>) -> KernelOutput {
    KernelOutput {
        ifindex: lo,
        dst_mac: [0x33, 0x33, 0, 0, 0, 2],
        src_mac: [2, 0, 0, 0, 0, 9],
        dst: addr(dst).into(),
        src: addr("fd00::9").into(),
        dst_port: 6000,
        src_port: 7000,
        ttl: 5,
        dscp,
    }
}

/// The program for a kernel with `bpf_loop` and the one for a kernel without (which sums
/// checksums with a bounded loop), each with a name for messages.
fn both_programs() -> [(FastPath, &'static str); 2] {
    let without = KernelFeatures {
        bpf_loop: false,
        ..KernelFeatures::ALL
    };
    let load = |features| {
        FastPath::load_with(Sizes::default(), FastPathAttach::Auto, features).expect("loads")
    };
    [
        (load(KernelFeatures::ALL), "bpf_loop"),
        (load(without), "bounded loop"),
    ]
}

/// Puts the rule for the test frames' flow (`GROUP`:5000 on `lo`, any source) into slot 0.
fn install(fp: &FastPath, out: KernelOutput) -> u32 {
    install_checked(fp, out, layout::RuleChecks::default())
}

/// [`install`] with the rule's checks.
fn install_checked(fp: &FastPath, out: KernelOutput, checks: layout::RuleChecks) -> u32 {
    let lo = crate::netif::index("lo").expect("lo");
    fp.maps().reset_slot(0).unwrap();
    let key = layout::key_bytes(lo, addr(GROUP).into(), 5000, None).unwrap();
    let value = layout::rule_bytes(0, checks, 0, &[out]);
    fp.skel
        .maps
        .mcr_fp_rules6
        .update(&key, &value, MapFlags::ANY)
        .unwrap();
    lo
}

#[test]
fn an_ipv6_datagram_leaves_with_its_output_s_headers_and_a_right_checksum() {
    if !privileged("an_ipv6_datagram_leaves_with_its_output_s_headers_and_a_right_checksum") {
        return;
    }
    let lo = crate::netif::index("lo").expect("lo");
    for (fp, name) in both_programs() {
        forwards_with_the_output_s_headers(&fp, lo, name);
    }
    // As on a kernel that refuses BPF_F_IPV6 (Linux < 6.16), once the program has learnt it:
    // the checksum is updated without the flag, and as right.
    let fp = FastPath::load().expect("loads");
    let refused = 1u32.to_ne_bytes();
    let zero = 0u32.to_ne_bytes();
    fp.skel
        .maps
        .bss
        .update(&zero, &refused, MapFlags::ANY)
        .unwrap();
    forwards_with_the_output_s_headers(&fp, lo, "without BPF_F_IPV6");
}

fn forwards_with_the_output_s_headers(fp: &FastPath, lo: u32, name: &str) {
    for (dscp, tclass) in [(Some(10), 10 << 2 | 1), (None, 0xb9)] {
        install(fp, output(lo, "ff3e::2", dscp));
        for len in [1, 255, 1400] {
            let sent = frame(len);
            let (verdict, out) = run(fp, &sent);
            assert_eq!(verdict, REDIRECT, "{name}, {len} bytes");
            assert_eq!(out.len(), sent.len());
            assert_eq!(&out[0..12], &[0x33, 0x33, 0, 0, 0, 2, 2, 0, 0, 0, 0, 9]);
            let word = u32::from_be_bytes(out[14..18].try_into().unwrap());
            assert_eq!(word >> 28, 6, "version");
            assert_eq!((word >> 20) & 0xff, tclass, "traffic class, ECN kept");
            assert_eq!(word & 0xfffff, 0xabcde, "flow label kept");
            assert_eq!(out[21], 5, "hop limit");
            assert_eq!(&out[22..38], &addr("fd00::9").octets());
            assert_eq!(&out[38..54], &addr("ff3e::2").octets());
            assert_eq!(
                &out[54..58],
                &[0x1b, 0x58, 0x17, 0x70],
                "ports 7000 -> 6000"
            );
            assert_eq!(&out[62..], &sent[62..], "payload untouched");
            assert!(
                checksum::verifies(pseudo(&out) + checksum::sum(&out[54..])),
                "{name}, {len} bytes: the UDP checksum verifies"
            );
        }
    }
    let c = fp.rule_counters(0).unwrap();
    assert_eq!((c.matched, c.outputs[0].sent), (3, 3), "{name}");
}

/// A frame of the program's flow that userspace would refuse is refused here too, in the
/// same kind, and left to the stack; extension headers are left to userspace, counted apart.
#[test]
fn malformed_ipv6_frames_are_refused_in_userspace_s_kinds() {
    if !privileged("malformed_ipv6_frames_are_refused_in_userspace_s_kinds") {
        return;
    }
    let lo = crate::netif::index("lo").expect("lo");
    for (fp, name) in both_programs() {
        refuses_in_userspace_s_kinds(&fp, lo, name);
    }
}

fn refuses_in_userspace_s_kinds(fp: &FastPath, lo: u32, name: &str) {
    install(fp, output(lo, "ff3e::2", None));
    let good = frame(100);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let cases: [(&str, Vec<u8>, Malformed); 7] = [
        (
            "zero checksum",
            with(&|v| v[60..62].copy_from_slice(&[0, 0])),
            Malformed::BadUdpChecksum,
        ),
        (
            "wrong checksum",
            with(&|v| v[100] ^= 0x40),
            Malformed::BadUdpChecksum,
        ),
        (
            "payload length past the frame",
            with(&|v| v[18..20].copy_from_slice(&200u16.to_be_bytes())),
            Malformed::Truncated,
        ),
        (
            "payload length below the UDP header",
            with(&|v| v[18..20].copy_from_slice(&4u16.to_be_bytes())),
            Malformed::BadTotalLength,
        ),
        (
            "UDP length longer than the payload",
            with(&|v| {
                v[58..60].copy_from_slice(&109u16.to_be_bytes());
                set_checksum(v);
            }),
            Malformed::BadUdpLength,
        ),
        (
            "UDP length shorter than the payload",
            with(&|v| {
                v[58..60].copy_from_slice(&50u16.to_be_bytes());
                set_checksum(v);
            }),
            Malformed::BadUdpLength,
        ),
        (
            "version 4 under EtherType IPv6",
            with(&|v| v[14] = 0x40 | (v[14] & 0x0f)),
            Malformed::BadIpHeaderLength,
        ),
    ];
    for (what, f, kind) in &cases {
        let before = fp.pass_counters().malformed[kind.index()];
        assert_eq!(run(fp, f).0, NEXT, "{name}, {what}: left to the stack");
        assert_eq!(
            fp.pass_counters().malformed[kind.index()],
            before + 1,
            "{name}, {what}: counted as {kind:?}"
        );
    }
    let hop_by_hop = with(&|v| v[20] = 0);
    assert_eq!(run(fp, &hop_by_hop).0, NEXT);
    assert_eq!(fp.pass_counters().extension_headers, 1, "{name}");
    let c = fp.rule_counters(0).unwrap();
    assert_eq!(
        (c.matched, c.outputs[0].sent),
        (0, 0),
        "{name}: none counted as sent"
    );
    assert_eq!(
        run(fp, &good).0,
        REDIRECT,
        "{name}: the good frame still goes"
    );
}

/// An IPv6 frame is forwarded only by its own flow's entry: none without one, none for a
/// group that differs in its last bits.
#[test]
fn an_ipv6_frame_finds_only_its_flow_s_entry() {
    if !privileged("an_ipv6_frame_finds_only_its_flow_s_entry") {
        return;
    }
    let fp = FastPath::load().expect("loads");
    let lo = crate::netif::index("lo").expect("lo");
    let mut f = frame(64);
    assert_eq!(run(&fp, &f).0, NEXT, "no rule");
    install(&fp, output(lo, "ff3e::2", None));
    assert_eq!(run(&fp, &f).0, REDIRECT);
    f[52..54].copy_from_slice(&[0x12, 0x35]);
    set_checksum(&mut f);
    assert_eq!(run(&fp, &f).0, NEXT, "another group");
    let c = fp.rule_counters(0).unwrap();
    assert_eq!(c.matched, 1);
}

/// A rule's `min_ttl`: a datagram that arrives with a lower hop limit is left to the stack and
/// counted in `below_min_ttl` (not in `matched`); one at the minimum is forwarded. A malformed
/// one is counted as malformed first, as userspace counts it.
#[test]
fn a_datagram_below_the_rule_s_min_ttl_is_left_alone_and_counted() {
    if !privileged("a_datagram_below_the_rule_s_min_ttl_is_left_alone_and_counted") {
        return;
    }
    let lo = crate::netif::index("lo").expect("lo");
    for (fp, name) in both_programs() {
        let checks = layout::RuleChecks {
            monitor: 0,
            min_ttl: 3,
        };
        install_checked(&fp, output(lo, "ff3e::2", None), checks);
        let with_hop_limit = |hops: u8| {
            let mut f = frame(100);
            f[21] = hops;
            f
        };
        for hops in [0, 1, 2] {
            let (verdict, _) = run(&fp, &with_hop_limit(hops));
            assert_eq!(verdict, NEXT, "{name}: hop limit {hops} left to the stack");
        }
        for hops in [3, 255] {
            let (verdict, out) = run(&fp, &with_hop_limit(hops));
            assert_eq!(verdict, REDIRECT, "{name}: hop limit {hops} forwarded");
            assert_eq!(out[21], 5, "{name}: the output's hop limit");
        }
        let mut bad = with_hop_limit(1);
        bad[60] ^= 0xff;
        assert_eq!(run(&fp, &bad).0, NEXT);
        let c = fp.rule_counters(0).unwrap();
        assert_eq!(
            (
                c.below_min_ttl,
                c.below_min_ttl_frames,
                c.matched,
                c.outputs[0].sent
            ),
            (3, 3, 2, 2),
            "{name}"
        );
        let pass = fp.pass_counters();
        assert_eq!(
            pass.malformed[Malformed::BadUdpChecksum.index()],
            1,
            "{name}: the malformed one counted as malformed"
        );
    }
}
