//! The classic BPF program attached to each packet socket.
//!
//! It lets through only IPv4 and IPv6 frames (untagged, or with one 802.1Q/802.1ad tag in the
//! frame) whose destination address some rule on that interface wants, and never our own
//! transmissions. Everything else is dropped in the kernel before it is copied into our ring,
//! which is most of the cost of a packet we don't want. Port and protocol are checked in user
//! space, so malformed datagrams to our groups are still seen and counted.
//!
//! Flows the kernel fast path forwards (`kernel_flows`: group and port) are excluded: a
//! packet tap sees a frame before TC ingress, so without the exclusion both paths would
//! forward it. Only what the program forwards is excluded (IPv4 without options, not a
//! fragment, UDP to that port); IP options and fragments of those flows, which the program
//! leaves to the stack, still reach the userspace path and are counted as malformed there,
//! where the input has a packet socket: an input none of whose rules runs in userspace has
//! none (`InputInterface::needs_capture`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One classic BPF instruction (`struct sock_filter`).
pub type Insn = libc::sock_filter;

// Opcodes (linux/bpf_common.h, linux/filter.h).
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_W_IND: u16 = 0x40;
const LD_H_IND: u16 = 0x48;
const LD_B_IND: u16 = 0x50;
const AND_K: u16 = 0x54;
const LDX_IMM: u16 = 0x01;
const LD_W_LEN: u16 = 0x80;
const SUB_X: u16 = 0x1c;
const JGE_K: u16 = 0x35;
const JEQ_K: u16 = 0x15;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;

/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: loads the skb's packet type.
const AD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
/// `PACKET_OUTGOING`: a frame this host sent.
const PACKET_OUTGOING: u32 = 4;
const ETH_P_IP: u32 = 0x0800;
const ETH_P_8021Q: u32 = 0x8100;
const ETH_P_8021AD: u32 = 0x88a8;
const ETH_P_IPV6: u32 = 0x86dd;
/// Offset of the IPv6 destination address in an untagged Ethernet frame.
const IPV6_DST_OFFSET: u32 = 14 + 24;
/// Most IPv6 groups one input's filter tests (nine instructions each); beyond, it takes
/// every IPv6 frame.
pub const MAX_FILTERED_IPV6_GROUPS: usize = 128;
/// Offset of the IPv4 destination address in an untagged Ethernet frame.
const IPV4_DST_OFFSET: u32 = 14 + 16;
/// Accept the whole frame (GSO super-frames can be 64 KiB).
const ACCEPT: u32 = 0x0004_0000;
/// Default of `[dataplane] fast_path_max_flows_per_input`.
pub const DEFAULT_KERNEL_FLOWS_PER_INPUT: u32 = 200;
/// Most kernel flows one input's filter can exclude: in the worst layout (each flow its own
/// group, [`MAX_FILTERED_GROUPS`] other groups tested) the program is 15 + 2 x (250 + K) +
/// 2 + 15 x K instructions (a kernel group's block: 12 checks, its port test, 2 returns;
/// K = 210: 4,087 of the 4,096 the kernel takes), and a group's port tests stay within the
/// 8-bit jump of a conditional. (It was 249 while a block had 9 checks; the frame-length check
/// that lets userspace count short frames made it 12.) An input with IPv6 groups too has 4
/// more prologue instructions and at least 1 for its IPv6 section: 4,092.
pub const MAX_KERNEL_FLOWS_PER_INPUT: u32 = 210;
/// The kernel's bound on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;
/// Jump offsets are 8 bits; beyond this many groups the filter accepts all IPv4.
pub const MAX_FILTERED_GROUPS: usize = 250;
/// Offsets from the start of IPv4 in a frame (plus X, the tag length).
const IP_VERSION_IHL: u32 = 14;
const IP_FLAGS_FRAGMENT: u32 = 14 + 6;
const IP_PROTOCOL: u32 = 14 + 9;
/// The UDP destination port after an IPv4 header without options.
const UDP_DPORT: u32 = 14 + 20 + 2;
/// The frame length that holds the UDP header after an IPv4 header without options (plus X).
const UDP_HEADER_END: u32 = 14 + 20 + 8;
const IPPROTO_UDP: u32 = 17;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// Builds the filter for an interface whose rules want `groups`. With more than
/// [`MAX_FILTERED_GROUPS`] groups it accepts all IPv4 and user space sorts them out.
///
/// Layout (cBPF jumps only forward, with 8-bit offsets, so each drop sits near its test):
/// ```text
///  0 ld pkttype          1 jeq OUTGOING ? 2 : 3    2 ret 0
///  3 ldh [12]            4 jeq IPv4 ? 11 : 5        5 jeq 802.1Q ? 8 : 6
///  6 jeq 802.1ad ? 8 : 7 7 ret 0
///  8 ldh [16]            9 jeq IPv4 ? 13 : 10      10 ret 0
/// 11 ldx #0             12 ja 14                   13 ldx #4
/// 14 ld [x + 30]        15.. jeq group_i ? ACCEPT : next    DROP: ret 0    ACCEPT: ret ACCEPT
/// ```
pub fn build(groups: &[IpAddr], kernel_flows: &[(IpAddr, u16)]) -> Vec<Insn> {
    let v4: Vec<Ipv4Addr> = groups
        .iter()
        .filter_map(|g| match g {
            IpAddr::V4(g) => Some(*g),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<Ipv6Addr> = groups
        .iter()
        .filter_map(|g| match g {
            IpAddr::V6(g) => Some(*g),
            IpAddr::V4(_) => None,
        })
        .collect();
    let kernel_flows: Vec<(Ipv4Addr, u16)> = kernel_flows
        .iter()
        .filter_map(|&(g, port)| match g {
            IpAddr::V4(g) => Some((g, port)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let kernel_flows = &kernel_flows[..];
    if v6.is_empty() {
        let mut p = prologue();
        ipv4_tests(&mut p, &v4, kernel_flows);
        return p;
    }
    let mut p = dual_prologue();
    ipv4_tests(&mut p, &v4, kernel_flows);
    ipv6_section(&mut p, &v6);
    p
}

/// The IPv4 group tests after the prologue (A holds the destination, X the tag length).
fn ipv4_tests(p: &mut Vec<Insn>, groups: &[Ipv4Addr], kernel_flows: &[(Ipv4Addr, u16)]) {
    if !kernel_flows.is_empty() {
        with_kernel_flows(p, groups, kernel_flows);
        return;
    }
    if groups.len() > MAX_FILTERED_GROUPS {
        p.push(insn(RET_K, 0, 0, ACCEPT));
        return;
    }
    let n = groups.len();
    for (i, g) in groups.iter().enumerate() {
        // From test i, ACCEPT is past the remaining n-1-i tests and DROP.
        let to_accept = (n - 1 - i + 1) as u8;
        p.push(insn(JEQ_K, to_accept, 0, u32::from(*g)));
    }
    p.push(insn(RET_K, 0, 0, 0));
    p.push(insn(RET_K, 0, 0, ACCEPT));
}

/// Where [`dual_prologue`] jumps to the IPv6 section: the `ja` of an untagged frame and of
/// a tagged one.
const UNTAGGED_IPV6_JUMP: usize = 8;
const TAGGED_IPV6_JUMP: usize = 13;

/// [`prologue`] for an interface with IPv6 groups too: IPv6 frames (untagged or with one
/// tag) jump to the IPv6 section at the end, patched in by [`ipv6_section`]; IPv4 frames
/// reach instruction 18 as they reach 14 in [`prologue`].
/// ```text
///  0 ld pkttype          1 jeq OUTGOING ? 2 : 3    2 ret 0
///  3 ldh [12]            4 jeq IPv4 ? 15 : 5        5 jeq 802.1Q ? 10 : 6
///  6 jeq 802.1ad ? 10 : 7                           7 jeq IPv6 ? 8 : 9
///  8 ja V6_UNTAGGED      9 ret 0
/// 10 ldh [16]           11 jeq IPv4 ? 17 : 12      12 jeq IPv6 ? 13 : 14
/// 13 ja V6_TAGGED       14 ret 0
/// 15 ldx #0             16 ja 18                   17 ldx #4
/// 18 ld [x + 30]
/// ```
fn dual_prologue() -> Vec<Insn> {
    vec![
        insn(LD_B_ABS, 0, 0, AD_PKTTYPE),
        insn(JEQ_K, 0, 1, PACKET_OUTGOING),
        insn(RET_K, 0, 0, 0),
        insn(LD_H_ABS, 0, 0, 12),
        insn(JEQ_K, 10, 0, ETH_P_IP),
        insn(JEQ_K, 4, 0, ETH_P_8021Q),
        insn(JEQ_K, 3, 0, ETH_P_8021AD),
        insn(JEQ_K, 0, 1, ETH_P_IPV6),
        insn(JA, 0, 0, 0),
        insn(RET_K, 0, 0, 0),
        insn(LD_H_ABS, 0, 0, 16),
        insn(JEQ_K, 5, 0, ETH_P_IP),
        insn(JEQ_K, 0, 1, ETH_P_IPV6),
        insn(JA, 0, 0, 0),
        insn(RET_K, 0, 0, 0),
        insn(LDX_IMM, 0, 0, 0),
        insn(JA, 0, 0, 1),
        insn(LDX_IMM, 0, 0, 4),
        insn(LD_W_IND, 0, 0, IPV4_DST_OFFSET),
    ]
}

/// Appends the IPv6 section and points the prologue's IPv6 jumps at it. Each group is four
/// 32-bit comparisons of the destination address and a `ja` to ACCEPT (so no conditional
/// jump is longer than a group):
/// ```text
/// V6_TAGGED:   ldx #4     ja BODY
/// V6_UNTAGGED: ldx #0
/// BODY, per group: ld [x+38] jeq w0 ? : next  ld [x+42] jeq w1 ? : next
///                  ld [x+46] jeq w2 ? : next  ld [x+50] jeq w3 ? : next  ja ACCEPT
/// after them: ret 0     ACCEPT: ret ACCEPT
/// ```
/// When that would not fit the kernel's bound (more than [`MAX_FILTERED_IPV6_GROUPS`], or
/// the IPv4 part already near it), the section is `ret ACCEPT`: every IPv6 frame reaches
/// userspace, which counts what it does not want (`filtered.not_udp` for neighbour
/// discovery and MLD, `no_match` for other groups).
fn ipv6_section(p: &mut Vec<Insn>, groups: &[Ipv6Addr]) {
    const PER_GROUP: usize = 9;
    let start = p.len();
    let exact_len = 3 + PER_GROUP * groups.len() + 2;
    let exact = groups.len() <= MAX_FILTERED_IPV6_GROUPS && start + exact_len <= MAX_INSNS;
    let (tagged, untagged) = if exact {
        p.push(insn(LDX_IMM, 0, 0, 4));
        p.push(insn(JA, 0, 0, 1));
        p.push(insn(LDX_IMM, 0, 0, 0));
        let body = p.len();
        let accept = body + PER_GROUP * groups.len() + 1;
        for g in groups {
            let words = g.octets();
            for (k, word) in words.chunks_exact(4).enumerate() {
                let word = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
                // From the jeq of word k, the next group starts 7 - 2k instructions on.
                p.push(insn(LD_W_IND, 0, 0, IPV6_DST_OFFSET + 4 * k as u32));
                p.push(insn(JEQ_K, 0, (7 - 2 * k) as u8, word));
            }
            let ja_at = p.len();
            p.push(insn(JA, 0, 0, (accept - ja_at - 1) as u32));
        }
        p.push(insn(RET_K, 0, 0, 0));
        p.push(insn(RET_K, 0, 0, ACCEPT));
        (start, start + 2)
    } else {
        p.push(insn(RET_K, 0, 0, ACCEPT));
        (start, start)
    };
    p[UNTAGGED_IPV6_JUMP].k = (untagged - UNTAGGED_IPV6_JUMP - 1) as u32;
    p[TAGGED_IPV6_JUMP].k = (tagged - TAGGED_IPV6_JUMP - 1) as u32;
}

/// The filter that takes no frame: a socket about to close keeps what its ring holds and
/// receives nothing more.
pub fn nothing() -> Vec<Insn> {
    vec![insn(RET_K, 0, 0, 0)]
}

/// Instructions 0-14 of the layout above: drop outgoing and non-IPv4 frames, leave the tag
/// length in X and the destination address in A.
fn prologue() -> Vec<Insn> {
    vec![
        insn(LD_B_ABS, 0, 0, AD_PKTTYPE),
        insn(JEQ_K, 0, 1, PACKET_OUTGOING),
        insn(RET_K, 0, 0, 0),
        insn(LD_H_ABS, 0, 0, 12),
        insn(JEQ_K, 6, 0, ETH_P_IP),
        insn(JEQ_K, 2, 0, ETH_P_8021Q),
        insn(JEQ_K, 1, 0, ETH_P_8021AD),
        insn(RET_K, 0, 0, 0),
        insn(LD_H_ABS, 0, 0, 16),
        insn(JEQ_K, 3, 0, ETH_P_IP),
        insn(RET_K, 0, 0, 0),
        insn(LDX_IMM, 0, 0, 0),
        insn(JA, 0, 0, 1),
        insn(LDX_IMM, 0, 0, 4),
        insn(LD_W_IND, 0, 0, IPV4_DST_OFFSET),
    ]
}

/// The group tests when some flows are the kernel's. Each group test jumps through a `ja`
/// (32-bit offset), so the 8-bit limit of conditional jumps does not bound the table:
/// ```text
/// per group:  jeq g ? next : skip    ja TARGET(g)
/// after them: ret 0 (no group matched; ACCEPT when there are more groups than
///             MAX_FILTERED_GROUPS and only the kernel groups are tested)
/// ACCEPT:     ret ACCEPT
/// per kernel group, TARGET: IPv4 without options, not a fragment, UDP, the frame holds the
///             whole UDP header, and the port is one of the group's kernel ports ? ret 0 :
///             ret ACCEPT
/// ```
/// A frame too short for the UDP header is accepted (the program never sees it as one of its
/// flows, and userspace counts it as malformed): a cBPF load beyond the frame would drop it
/// uncounted.
fn with_kernel_flows(p: &mut Vec<Insn>, groups: &[Ipv4Addr], kernel_flows: &[(Ipv4Addr, u16)]) {
    /// Instructions of a kernel group's block before its port tests.
    const CHECKS: usize = 12;
    let mut kernel_groups: Vec<Ipv4Addr> = kernel_flows.iter().map(|(g, _)| *g).collect();
    kernel_groups.sort();
    kernel_groups.dedup();
    let all_ipv4 = groups.len() > MAX_FILTERED_GROUPS;
    let tested: Vec<Ipv4Addr> = if all_ipv4 {
        kernel_groups.clone()
    } else {
        let mut t = groups.to_vec();
        t.extend(kernel_groups.iter().filter(|g| !groups.contains(g)));
        t
    };
    let ports = |g: Ipv4Addr| -> Vec<u16> {
        kernel_flows
            .iter()
            .filter(|(k, _)| *k == g)
            .map(|(_, p)| *p)
            .collect()
    };
    // A kernel group's block: 12 checks + one test per port + 2 returns.
    let block_len = |g: Ipv4Addr| CHECKS + ports(g).len() + 2;
    let tests_start = p.len();
    let after_tests = tests_start + 2 * tested.len();
    let accept = after_tests + 1;
    let mut block_start = after_tests + 2;
    let mut targets = Vec::with_capacity(tested.len());
    for g in &tested {
        if kernel_groups.contains(g) {
            targets.push(block_start);
            block_start += block_len(*g);
        } else {
            targets.push(accept);
        }
    }
    for (i, g) in tested.iter().enumerate() {
        let ja_at = tests_start + 2 * i + 1;
        p.push(insn(JEQ_K, 0, 1, u32::from(*g)));
        p.push(insn(JA, 0, 0, (targets[i] - ja_at - 1) as u32));
    }
    p.push(insn(RET_K, 0, 0, if all_ipv4 { ACCEPT } else { 0 }));
    p.push(insn(RET_K, 0, 0, ACCEPT));
    for g in tested.iter().filter(|g| kernel_groups.contains(g)) {
        let ports = ports(*g);
        let n = ports.len();
        // Block layout: CHECKS checks at +0..+11, port tests at +12.., then ACC: ret ACCEPT
        // at +12+n and DROP: ret 0 at +13+n. A jump at +k to +t has offset t - k - 1.
        let to_accept = |k: usize| (CHECKS + n - k - 1) as u8;
        let checks = [
            insn(LD_B_IND, 0, 0, IP_VERSION_IHL),
            insn(AND_K, 0, 0, 0x0f),
            insn(JEQ_K, 0, to_accept(2), 5),
            insn(LD_B_IND, 0, 0, IP_PROTOCOL),
            insn(JEQ_K, 0, to_accept(4), IPPROTO_UDP),
            insn(LD_H_IND, 0, 0, IP_FLAGS_FRAGMENT),
            insn(AND_K, 0, 0, 0x3fff),
            insn(JEQ_K, 0, to_accept(7), 0),
            insn(LD_W_LEN, 0, 0, 0),
            insn(SUB_X, 0, 0, 0),
            insn(JGE_K, 0, to_accept(10), UDP_HEADER_END),
            insn(LD_H_IND, 0, 0, UDP_DPORT),
        ];
        debug_assert_eq!(checks.len(), CHECKS);
        p.extend(checks);
        for (j, port) in ports.iter().enumerate() {
            // Port test j sits at +CHECKS+j; DROP at +CHECKS+1+n. The last one falls through
            // to ACC.
            p.push(insn(JEQ_K, (n - j) as u8, 0, u32::from(*port)));
        }
        p.push(insn(RET_K, 0, 0, ACCEPT));
        p.push(insn(RET_K, 0, 0, 0));
    }
}

#[cfg(test)]
pub(crate) mod interp {
    //! A tiny interpreter for the instructions `build` emits, to test the program's behaviour.
    use super::*;

    pub fn run(prog: &[Insn], frame: &[u8], outgoing: bool) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let ld = |off: usize, size: usize| -> Option<u32> {
            let b = frame.get(off..off + size)?;
            Some(b.iter().fold(0u32, |acc, &v| (acc << 8) | v as u32))
        };
        loop {
            assert!(pc < prog.len(), "ran off the end of the program");
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_B_ABS if i.k == AD_PKTTYPE => a = if outgoing { PACKET_OUTGOING } else { 0 },
                LD_B_ABS => match ld(i.k as usize, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_H_ABS => match ld(i.k as usize, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_W_IND => match ld((x + i.k) as usize, 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_H_IND => match ld((x + i.k) as usize, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_B_IND => match ld((x + i.k) as usize, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                AND_K => a &= i.k,
                LD_W_LEN => a = frame.len() as u32,
                SUB_X => a = a.wrapping_sub(x),
                JGE_K => pc += if a >= i.k { i.jt } else { i.jf } as usize,
                LDX_IMM => x = i.k,
                JA => pc += i.k as usize,
                JEQ_K => pc += if a == i.k { i.jt } else { i.jf } as usize,
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::interp::run;
    use super::*;

    fn frame(ethertype: u16, vlan: bool, dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        let mut ip = [0u8; 28];
        ip[0] = 0x45;
        ip[9] = 17;
        ip[16..20].copy_from_slice(&dst);
        f.extend_from_slice(&ip);
        f
    }

    /// IPv4 kernel flows as `build` takes them.
    fn ip_flows(flows: &[(Ipv4Addr, u16)]) -> Vec<(IpAddr, u16)> {
        flows.iter().map(|&(g, port)| (g.into(), port)).collect()
    }

    const G1: [u8; 4] = [239, 1, 1, 1];
    const G2: [u8; 4] = [239, 1, 1, 2];

    #[test]
    fn accepts_wanted_groups_untagged_and_tagged() {
        let p = build(&[G1.into(), G2.into()], &[]);
        assert_eq!(run(&p, &frame(0x0800, false, G1), false), ACCEPT);
        assert_eq!(run(&p, &frame(0x0800, false, G2), false), ACCEPT);
        assert_eq!(run(&p, &frame(0x0800, true, G1), false), ACCEPT);
    }

    #[test]
    fn drops_other_groups_other_protocols_and_outgoing() {
        let p = build(&[G1.into()], &[]);
        assert_eq!(run(&p, &frame(0x0800, false, [239, 9, 9, 9]), false), 0);
        assert_eq!(run(&p, &frame(0x86dd, false, G1), false), 0);
        assert_eq!(run(&p, &frame(0x0806, false, G1), false), 0);
        assert_eq!(run(&p, &frame(0x86dd, true, G1), false), 0);
        assert_eq!(run(&p, &frame(0x0800, false, G1), true), 0);
        assert_eq!(run(&p, &[0u8; 10], false), 0);
    }

    #[test]
    fn nothing_takes_no_frame() {
        let p = nothing();
        for f in [
            frame(0x0800, false, G1),
            frame(0x0800, true, G1),
            vec![0u8; 10],
        ] {
            assert_eq!(run(&p, &f, false), 0);
        }
    }

    /// An IPv4/UDP frame to `dst`:`port`, with `ihl` header words and fragment field `frag`.
    fn udp_frame(vlan: bool, dst: [u8; 4], port: u16, ihl: u8, frag: u16) -> Vec<u8> {
        let mut f = frame(0x0800, vlan, dst);
        let ip = if vlan { 18 } else { 14 };
        f[ip] = 0x40 | ihl;
        f[ip + 6..ip + 8].copy_from_slice(&frag.to_be_bytes());
        let udp = ip + usize::from(ihl) * 4;
        f.resize(udp + 8, 0);
        f[udp + 2..udp + 4].copy_from_slice(&port.to_be_bytes());
        f
    }

    #[test]
    fn kernel_flows_are_left_to_the_program_and_the_rest_still_pass() {
        let g3 = [239, 1, 1, 3];
        let kernel = [(G1.into(), 5000), (G1.into(), 5001), (g3.into(), 7000)];
        let p = build(&[G1.into(), G2.into()], &kernel);
        for vlan in [false, true] {
            // What the program forwards: dropped here.
            assert_eq!(run(&p, &udp_frame(vlan, G1, 5000, 5, 0), false), 0);
            assert_eq!(
                run(&p, &udp_frame(vlan, G1, 5001, 5, 0x4000), false),
                0,
                "DF set"
            );
            assert_eq!(run(&p, &udp_frame(vlan, g3, 7000, 5, 0), false), 0);
            // Other ports of a kernel group, and groups of userspace rules: accepted.
            assert_eq!(run(&p, &udp_frame(vlan, G1, 5002, 5, 0), false), ACCEPT);
            assert_eq!(run(&p, &udp_frame(vlan, G2, 5000, 5, 0), false), ACCEPT);
            assert_eq!(run(&p, &udp_frame(vlan, g3, 7001, 5, 0), false), ACCEPT);
            // What the program leaves to the stack: options and fragments.
            assert_eq!(run(&p, &udp_frame(vlan, G1, 5000, 6, 0), false), ACCEPT);
            assert_eq!(
                run(&p, &udp_frame(vlan, G1, 5000, 5, 0x2000), false),
                ACCEPT,
                "MF"
            );
            assert_eq!(
                run(&p, &udp_frame(vlan, G1, 5000, 5, 0x0010), false),
                ACCEPT
            );
            // Other groups, outgoing frames: dropped as before.
            assert_eq!(
                run(&p, &udp_frame(vlan, [239, 9, 9, 9], 5000, 5, 0), false),
                0
            );
            assert_eq!(run(&p, &udp_frame(vlan, G2, 5000, 5, 0), true), 0);
        }
        let mut tcp = udp_frame(false, G1, 5000, 5, 0);
        tcp[14 + 9] = 6;
        assert_eq!(run(&p, &tcp, false), ACCEPT);
        // A frame of a kernel flow cut inside its UDP header: userspace counts it (a load
        // beyond the frame would drop it, counted nowhere).
        for vlan in [false, true] {
            let whole = udp_frame(vlan, G1, 5000, 5, 0);
            for cut in [2, 4, 7] {
                let f = &whole[..whole.len() - 8 + cut];
                assert_eq!(
                    run(&p, f, false),
                    ACCEPT,
                    "cut after {cut} bytes, vlan {vlan}"
                );
            }
            assert_eq!(run(&p, &whole, false), 0);
        }
    }

    #[test]
    fn kernel_flows_are_excluded_beyond_the_group_limit_too() {
        let groups: Vec<IpAddr> = (0..300u32)
            .map(|i| Ipv4Addr::from(0xef01_0000 + i).into())
            .collect();
        let kernel: Vec<(IpAddr, u16)> = (0..200u32)
            .map(|i| (Ipv4Addr::from(0xef01_0000 + i).into(), 5000))
            .collect();
        let p = build(&groups, &kernel);
        assert!(p.len() <= 4096, "{} instructions", p.len());
        let g = |i: u32| Ipv4Addr::from(0xef01_0000 + i).octets();
        assert_eq!(run(&p, &udp_frame(false, g(199), 5000, 5, 0), false), 0);
        assert_eq!(
            run(&p, &udp_frame(false, g(199), 5001, 5, 0), false),
            ACCEPT
        );
        assert_eq!(
            run(&p, &udp_frame(false, g(250), 5000, 5, 0), false),
            ACCEPT
        );
        assert_eq!(
            run(&p, &udp_frame(false, [10, 0, 0, 1], 5000, 5, 0), false),
            ACCEPT
        );
    }

    #[test]
    fn thousands_of_groups_with_the_most_kernel_flows_fit_and_stay_exact() {
        let k = MAX_KERNEL_FLOWS_PER_INPUT;
        let g = |i: u32| Ipv4Addr::from(0xef01_0000 + i);
        let groups_of = |n: u32| -> Vec<IpAddr> { (0..n).map(|i| g(i).into()).collect() };
        // Worst layouts: each kernel flow its own group, with 250 or 10,000 other groups;
        // and all kernel flows on one group (the longest port list).
        let distinct: Vec<(Ipv4Addr, u16)> = (0..k).map(|i| (g(100_000 + i), 5000)).collect();
        let one_group: Vec<(Ipv4Addr, u16)> = (0..k).map(|i| (g(0), 5000 + i as u16)).collect();
        for (groups, kernel) in [
            (groups_of(MAX_FILTERED_GROUPS as u32), &distinct),
            (groups_of(10_000), &distinct),
            (groups_of(MAX_FILTERED_GROUPS as u32), &one_group),
            (groups_of(10_000), &one_group),
        ] {
            let p = build(&groups, &ip_flows(kernel));
            assert!(p.len() <= MAX_INSNS, "{} instructions", p.len());
            for &(kg, port) in kernel.iter().step_by(37) {
                assert_eq!(
                    run(&p, &udp_frame(false, kg.octets(), port, 5, 0), false),
                    0
                );
                assert_eq!(
                    run(&p, &udp_frame(true, kg.octets(), port, 5, 0), false),
                    0,
                    "tagged"
                );
            }
            // A user-space group passes, whether the filter lists it or accepts all IPv4.
            let IpAddr::V4(last) = groups[groups.len() - 1] else {
                unreachable!("IPv4 groups")
            };
            assert_eq!(
                run(&p, &udp_frame(false, last.octets(), 6000, 5, 0), false),
                ACCEPT
            );
        }
        // With thousands of groups and no kernel flows: all IPv4, one short program; the
        // userspace matcher drops what no rule wants.
        let p = build(&groups_of(10_000), &[]);
        assert!(p.len() < 32);
    }

    #[test]
    fn no_groups_accepts_nothing() {
        let p = build(&[], &[]);
        assert_eq!(run(&p, &frame(0x0800, false, G1), false), 0);
    }

    #[test]
    fn many_groups_fall_back_to_all_ipv4() {
        let groups: Vec<IpAddr> = (0..300u32)
            .map(|i| Ipv4Addr::from(0xef01_0000 + i).into())
            .collect();
        let p = build(&groups, &[]);
        assert_eq!(
            run(&p, &frame(0x0800, false, [239, 1, 0, 7]), false),
            ACCEPT
        );
        assert_eq!(run(&p, &frame(0x0800, false, [10, 0, 0, 1]), false), ACCEPT);
        assert_eq!(run(&p, &frame(0x86dd, false, G1), false), 0);
        assert_eq!(run(&p, &frame(0x0800, false, G1), true), 0);
    }

    #[test]
    fn the_largest_filtered_table_is_still_exact() {
        let groups: Vec<IpAddr> = (0..MAX_FILTERED_GROUPS as u32)
            .map(|i| Ipv4Addr::from(0xef01_0000 + i).into())
            .collect();
        let p = build(&groups, &[]);
        let last = Ipv4Addr::from(0xef01_0000 + MAX_FILTERED_GROUPS as u32 - 1).octets();
        assert_eq!(run(&p, &frame(0x0800, false, last), false), ACCEPT);
        assert_eq!(run(&p, &frame(0x0800, false, [10, 0, 0, 1]), false), 0);
        assert_eq!(run(&p, &frame(0x86dd, false, G1), false), 0);
    }

    /// An IPv6/UDP frame to `dst`, with one in-frame tag when `vlan`.
    fn ipv6_frame(vlan: bool, dst: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = [0u8; 48];
        ip[0] = 0x60;
        ip[6] = 17;
        ip[24..40].copy_from_slice(&dst.octets());
        f.extend_from_slice(&ip);
        f
    }

    const V6_G1: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234);
    const V6_G2: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x77);

    #[test]
    fn ipv6_groups_are_matched_on_all_128_bits() {
        let p = build(&[G1.into(), V6_G1.into(), V6_G2.into()], &[]);
        for vlan in [false, true] {
            assert_eq!(run(&p, &ipv6_frame(vlan, V6_G1), false), ACCEPT, "{vlan}");
            assert_eq!(run(&p, &ipv6_frame(vlan, V6_G2), false), ACCEPT, "{vlan}");
            // Each of the four words differs in turn: every one is compared.
            for word in 0..4 {
                let mut o = V6_G1.octets();
                o[word * 4 + 3] ^= 1;
                let other = Ipv6Addr::from(o);
                assert_eq!(run(&p, &ipv6_frame(vlan, other), false), 0, "word {word}");
            }
            // IPv4 is filtered as before, beside them.
            assert_eq!(run(&p, &frame(0x0800, vlan, G1), false), ACCEPT);
            assert_eq!(run(&p, &frame(0x0800, vlan, G2), false), 0);
        }
        assert_eq!(run(&p, &ipv6_frame(false, V6_G1), true), 0, "outgoing");
        assert_eq!(run(&p, &ipv6_frame(false, V6_G1)[..40], false), 0, "short");
        assert_eq!(run(&p, &frame(0x0806, false, G1), false), 0);
    }

    #[test]
    fn an_interface_without_ipv6_groups_takes_no_ipv6_and_keeps_its_program() {
        let p = build(&[G1.into()], &[]);
        assert_eq!(p.len(), 15 + 3, "the IPv4-only program is unchanged");
        assert_eq!(run(&p, &ipv6_frame(false, V6_G1), false), 0);
        let only_v6 = build(&[V6_G1.into()], &[]);
        assert_eq!(run(&only_v6, &ipv6_frame(false, V6_G1), false), ACCEPT);
        assert_eq!(run(&only_v6, &frame(0x0800, false, G1), false), 0);
    }

    #[test]
    fn too_many_ipv6_groups_take_every_ipv6_frame() {
        let groups: Vec<IpAddr> = (0..=MAX_FILTERED_IPV6_GROUPS as u128)
            .map(|i| Ipv6Addr::from(0xff3e_0000_0000_0000_0000_0000_0000_0000 + i).into())
            .collect();
        let p = build(&groups, &[]);
        assert_eq!(run(&p, &ipv6_frame(true, V6_G2), false), ACCEPT);
        let exact = build(&groups[..MAX_FILTERED_IPV6_GROUPS], &[]);
        assert_eq!(run(&exact, &ipv6_frame(true, V6_G2), false), 0);
        let IpAddr::V6(last) = groups[MAX_FILTERED_IPV6_GROUPS - 1] else {
            unreachable!()
        };
        assert_eq!(run(&exact, &ipv6_frame(true, last), false), ACCEPT);
    }

    #[test]
    fn ipv6_groups_beside_the_most_kernel_flows_still_fit() {
        let k = MAX_KERNEL_FLOWS_PER_INPUT;
        let g = |i: u32| Ipv4Addr::from(0xef01_0000 + i);
        let distinct: Vec<(Ipv4Addr, u16)> = (0..k).map(|i| (g(100_000 + i), 5000)).collect();
        let mut groups: Vec<IpAddr> = (0..MAX_FILTERED_GROUPS as u32)
            .map(|i| g(i).into())
            .collect();
        groups.push(V6_G1.into());
        let p = build(&groups, &ip_flows(&distinct));
        assert!(p.len() <= MAX_INSNS, "{} instructions", p.len());
        assert_eq!(run(&p, &ipv6_frame(false, V6_G1), false), ACCEPT);
        let (kg, port) = distinct[7];
        assert_eq!(
            run(&p, &udp_frame(false, kg.octets(), port, 5, 0), false),
            0
        );
    }
}
