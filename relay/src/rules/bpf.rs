//! The classic BPF program attached to each packet socket.
//!
//! It lets through only IPv4 and IPv6 frames (untagged, or with one 802.1Q/802.1ad tag in the
//! frame) whose destination address some rule on that interface wants, and never our own
//! transmissions. Everything else is dropped in the kernel before it is copied into our ring,
//! which is most of the cost of a packet we don't want. Port and protocol are checked in user
//! space, so malformed datagrams to our groups are still seen and counted.
//!
//! Flows the kernel fast path forwards (`kernel_flows`: group and port, of either family) are
//! excluded: a packet tap sees a frame before TC ingress, so without the exclusion both paths
//! would forward it. Only what the program forwards is excluded: IPv4 without options, not a
//! fragment, UDP to that port; IPv6 whose fixed header is followed directly by UDP (no
//! extension header) to that port. IP options, fragments and IPv6 extension headers of those
//! flows, which the program leaves to the stack, still reach the userspace path and are
//! counted there, where the input has a packet socket: an input none of whose rules runs in
//! userspace has none (`InputInterface::needs_capture`).
//!
//! The kernel takes at most [`MAX_INSNS`] instructions. When the program testing every wanted
//! group would be longer, first IPv6 and then IPv4 test only their kernel groups and accept
//! every other frame of the family: userspace drops what no rule wants, and the kernel flows
//! stay excluded in every mode, so the two paths never both forward a datagram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One classic BPF instruction (`struct sock_filter`).
pub type Insn = libc::sock_filter;

// Opcodes (linux/bpf_common.h, linux/filter.h); the eBPF translation reads them too
// (`bpf_counting`).
/// Not emitted here; the translation takes it all the same.
pub(crate) const LD_W_ABS: u16 = 0x20;
pub(crate) const LD_H_ABS: u16 = 0x28;
pub(crate) const LD_B_ABS: u16 = 0x30;
pub(crate) const LD_W_IND: u16 = 0x40;
pub(crate) const LD_H_IND: u16 = 0x48;
pub(crate) const LD_B_IND: u16 = 0x50;
pub(crate) const AND_K: u16 = 0x54;
pub(crate) const LDX_IMM: u16 = 0x01;
pub(crate) const LD_W_LEN: u16 = 0x80;
pub(crate) const SUB_X: u16 = 0x1c;
pub(crate) const JGE_K: u16 = 0x35;
pub(crate) const JEQ_K: u16 = 0x15;
pub(crate) const JA: u16 = 0x05;
pub(crate) const RET_K: u16 = 0x06;

/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: loads the skb's packet type.
pub(crate) const AD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
/// `PACKET_OUTGOING`: a frame this host sent.
const PACKET_OUTGOING: u32 = 4;
const ETH_P_IP: u32 = 0x0800;
const ETH_P_8021Q: u32 = 0x8100;
const ETH_P_8021AD: u32 = 0x88a8;
const ETH_P_IPV6: u32 = 0x86dd;
/// Offset of the IPv6 destination address in an untagged Ethernet frame.
const IPV6_DST_OFFSET: u32 = 14 + 24;
/// Most IPv6 groups one input's filter tests (nine instructions each); beyond, it tests only
/// the IPv6 kernel groups and takes every other IPv6 frame.
pub const MAX_FILTERED_IPV6_GROUPS: usize = 128;
/// Offset of the IPv4 destination address in an untagged Ethernet frame.
const IPV4_DST_OFFSET: u32 = 14 + 16;
/// Accept the whole frame (GSO super-frames can be 64 KiB).
const ACCEPT: u32 = 0x0004_0000;
/// Default of `[dataplane] fast_path_max_flows_per_input`.
pub const DEFAULT_KERNEL_FLOWS_PER_INPUT: u32 = 200;
/// Most kernel flows (of both families together) one input's filter can exclude. With IPv4
/// only, in the worst layout (each flow its own group, [`MAX_FILTERED_GROUPS`] other groups
/// tested) the exact program is 15 + 2 x (250 + K) + 2 + 15 x K instructions (a kernel
/// group's block: 12 checks, its port test, 2 returns; K = 210: 4,087 of the 4,096 the kernel
/// takes), and a group's port tests stay within the 8-bit jump of a conditional. (It was 249
/// while a block had 9 checks; the frame-length check that lets userspace count short frames
/// made it 12.) An input with IPv6 groups too has 4 more prologue instructions and at least 1
/// for its IPv6 section: 4,092. An IPv6 kernel flow costs more (a 9-instruction test and a
/// block of 6 checks, its port test, 2 returns), so with IPv6 flows [`build`] may fall back
/// to testing only the kernel groups, family by family; that program is at most 19 + 2 + 5 +
/// 18 x K = 3,806 instructions for K = 210 in any mix of the families (it would fit up to
/// K = 226).
pub const MAX_KERNEL_FLOWS_PER_INPUT: u32 = 210;
/// The kernel's bound on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;
/// Jump offsets are 8 bits; beyond this many groups the filter accepts all IPv4 (less the
/// kernel flows).
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

/// Offsets from the start of IPv6 in a frame (plus X, the tag length).
const IPV6_NEXT_HEADER: u32 = 14 + 6;
/// The UDP destination port right after the IPv6 fixed header.
const IPV6_UDP_DPORT: u32 = 14 + 40 + 2;
/// The frame length that holds the UDP header right after the IPv6 fixed header (plus X).
const IPV6_UDP_HEADER_END: u32 = 14 + 40 + 8;

pub(crate) fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// Builds the filter for an interface whose rules want `groups`, less the `kernel_flows` the
/// fast path forwards. It tests every group when that fits (at most [`MAX_FILTERED_GROUPS`]
/// IPv4 and [`MAX_FILTERED_IPV6_GROUPS`] IPv6 groups, [`MAX_INSNS`] instructions in all);
/// otherwise a family tests only its kernel groups, accepts its other frames, and user space
/// sorts them out.
///
/// Layout of an interface without IPv6 (cBPF jumps only forward, with 8-bit offsets, so each
/// drop sits near its test; `dual_prologue` adds IPv6):
/// ```text
///  0 ld pkttype          1 jeq OUTGOING ? 2 : 3    2 ret 0
///  3 ldh [12]            4 jeq IPv4 ? 11 : 5        5 jeq 802.1Q ? 8 : 6
///  6 jeq 802.1ad ? 8 : 7 7 ret 0
///  8 ldh [16]            9 jeq IPv4 ? 13 : 10      10 ret 0
/// 11 ldx #0             12 ja 14                   13 ldx #4
/// 14 ld [x + 30]        15.. jeq group_i ? ACCEPT : next    DROP: ret 0    ACCEPT: ret ACCEPT
/// ```
/// (with kernel flows, `group_table` follows instruction 14 instead).
pub fn build(groups: &[IpAddr], kernel_flows: &[(IpAddr, u16)]) -> Vec<Insn> {
    let flows = Flows::new(groups, kernel_flows);
    let mut p = flows.program(Tested::Wanted, Tested::Wanted);
    // IPv6 gives way first: its groups cost nine instructions each, IPv4's two.
    for (v4, v6) in [
        (Tested::Wanted, Tested::Kernel),
        (Tested::Kernel, Tested::Kernel),
    ] {
        if p.len() <= MAX_INSNS {
            break;
        }
        p = flows.program(v4, v6);
    }
    p
}

/// Which groups of a family the filter tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tested {
    /// The wanted groups and the kernel groups: frames to other groups are dropped. A family
    /// with more groups than its bound (`MAX_FILTERED_GROUPS`, `MAX_FILTERED_IPV6_GROUPS`)
    /// is tested as with `Kernel`.
    Wanted,
    /// Only the kernel flows' groups: every other frame of the family is accepted.
    Kernel,
}

/// An interface's groups and kernel flows, by family.
struct Flows {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    kernel_v4: Vec<(Ipv4Addr, u16)>,
    kernel_v6: Vec<(Ipv6Addr, u16)>,
}

impl Flows {
    fn new(groups: &[IpAddr], kernel_flows: &[(IpAddr, u16)]) -> Self {
        let mut f = Flows {
            v4: Vec::new(),
            v6: Vec::new(),
            kernel_v4: Vec::new(),
            kernel_v6: Vec::new(),
        };
        for g in groups {
            match *g {
                IpAddr::V4(g) => f.v4.push(g),
                IpAddr::V6(g) => f.v6.push(g),
            }
        }
        for &(g, port) in kernel_flows {
            match g {
                IpAddr::V4(g) => f.kernel_v4.push((g, port)),
                IpAddr::V6(g) => f.kernel_v6.push((g, port)),
            }
        }
        f
    }

    /// The program whose IPv4 and IPv6 tables test the `v4` and `v6` groups. An interface with
    /// neither IPv6 groups nor IPv6 kernel flows keeps the shorter IPv4-only program, which
    /// drops IPv6.
    fn program(&self, v4: Tested, v6: Tested) -> Vec<Insn> {
        if self.v6.is_empty() && self.kernel_v6.is_empty() {
            let mut p = prologue();
            ipv4_tests(&mut p, &self.v4, &self.kernel_v4, v4);
            return p;
        }
        let mut p = dual_prologue();
        ipv4_tests(&mut p, &self.v4, &self.kernel_v4, v4);
        ipv6_section(&mut p, &self.v6, &self.kernel_v6, v6);
        p
    }
}

/// The IPv4 group tests after the prologue (A holds the destination, X the tag length).
fn ipv4_tests(
    p: &mut Vec<Insn>,
    groups: &[Ipv4Addr],
    kernel_flows: &[(Ipv4Addr, u16)],
    tested: Tested,
) {
    let all_ipv4 = tested == Tested::Kernel || groups.len() > MAX_FILTERED_GROUPS;
    if !kernel_flows.is_empty() {
        let tested = tested_groups(groups, kernel_flows, all_ipv4);
        group_table(p, &tested, kernel_flows, if all_ipv4 { ACCEPT } else { 0 });
        return;
    }
    if all_ipv4 {
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

/// Appends the IPv6 section and points the prologue's IPv6 jumps at it: X is set, then the
/// IPv6 [`group_table`] follows, whose match of a group is four 32-bit comparisons of the
/// destination address (so no conditional jump is longer than a group):
/// ```text
/// V6_TAGGED:   ldx #4     ja TABLE
/// V6_UNTAGGED: ldx #0
/// TABLE, per group: ld [x+38] jeq w0 ? : next  ld [x+42] jeq w1 ? : next
///                   ld [x+46] jeq w2 ? : next  ld [x+50] jeq w3 ? : next  ja TARGET
/// ```
/// With more than [`MAX_FILTERED_IPV6_GROUPS`] groups, or when [`build`] needs the room, only
/// the kernel groups are tested, and without any the section is `ret ACCEPT`: every other
/// IPv6 frame reaches userspace, which counts what it does not want (`filtered.not_udp` for
/// neighbour discovery and MLD, `no_match` for other groups).
fn ipv6_section(
    p: &mut Vec<Insn>,
    groups: &[Ipv6Addr],
    kernel_flows: &[(Ipv6Addr, u16)],
    tested: Tested,
) {
    let start = p.len();
    let all_ipv6 = tested == Tested::Kernel || groups.len() > MAX_FILTERED_IPV6_GROUPS;
    let (tagged, untagged) = if all_ipv6 && kernel_flows.is_empty() {
        p.push(insn(RET_K, 0, 0, ACCEPT));
        (start, start)
    } else {
        p.push(insn(LDX_IMM, 0, 0, 4));
        p.push(insn(JA, 0, 0, 1));
        p.push(insn(LDX_IMM, 0, 0, 0));
        let tested = tested_groups(groups, kernel_flows, all_ipv6);
        group_table(p, &tested, kernel_flows, if all_ipv6 { ACCEPT } else { 0 });
        (start, start + 2)
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

/// The groups a family's table tests: the wanted `groups` unless `only_kernel`, and the
/// kernel flows' groups. A kernel group no rule lists is tested too, so that its flows stay
/// excluded whatever `groups` holds.
fn tested_groups<G: Copy + Ord>(
    groups: &[G],
    kernel_flows: &[(G, u16)],
    only_kernel: bool,
) -> Vec<G> {
    let mut kernel_groups: Vec<G> = kernel_flows.iter().map(|(g, _)| *g).collect();
    kernel_groups.sort();
    kernel_groups.dedup();
    if only_kernel {
        return kernel_groups;
    }
    let mut tested = groups.to_vec();
    tested.extend(kernel_groups.iter().filter(|g| !groups.contains(g)));
    tested
}

/// What the IPv4 and IPv6 group tables differ in: how a group is matched, and what a kernel
/// group's block checks before its port tests.
trait Family: Copy + Eq {
    /// Instructions of [`Family::push_match`].
    const MATCH_LEN: usize;
    /// Instructions of [`Family::push_checks`].
    const CHECKS: usize;
    /// Appends the test that the frame is to this group: it falls through on a match and
    /// otherwise jumps past the one instruction after it (the table's `ja`).
    fn push_match(self, p: &mut Vec<Insn>);
    /// Appends the checks that the frame is one the fast path forwards, ending with its UDP
    /// destination port in A; a check at +k that fails jumps `to_accept(k)` on.
    fn push_checks(p: &mut Vec<Insn>, to_accept: impl Fn(usize) -> u8);
}

impl Family for Ipv4Addr {
    const MATCH_LEN: usize = 1;
    const CHECKS: usize = 12;

    /// A holds the destination address: the prologue loaded it.
    fn push_match(self, p: &mut Vec<Insn>) {
        p.push(insn(JEQ_K, 0, 1, u32::from(self)));
    }

    /// IPv4 without options, UDP, not a fragment, and the frame holds the whole UDP header.
    fn push_checks(p: &mut Vec<Insn>, to_accept: impl Fn(usize) -> u8) {
        p.extend([
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
        ]);
    }
}

impl Family for Ipv6Addr {
    const MATCH_LEN: usize = 8;
    const CHECKS: usize = 6;

    /// Loads and compares the address word by word: a mismatch at word k skips the 7 - 2k
    /// instructions after its `jeq` (the rest of the match and the `ja`).
    fn push_match(self, p: &mut Vec<Insn>) {
        for (k, word) in self.octets().chunks_exact(4).enumerate() {
            let word = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            p.push(insn(LD_W_IND, 0, 0, IPV6_DST_OFFSET + 4 * k as u32));
            p.push(insn(JEQ_K, 0, (7 - 2 * k) as u8, word));
        }
    }

    /// UDP right after the fixed header (the program leaves extension headers to the
    /// stack), and the frame holds the whole UDP header. The next header byte lies before
    /// the destination address the match has read, so its load cannot fail.
    fn push_checks(p: &mut Vec<Insn>, to_accept: impl Fn(usize) -> u8) {
        p.extend([
            insn(LD_B_IND, 0, 0, IPV6_NEXT_HEADER),
            insn(JEQ_K, 0, to_accept(1), IPPROTO_UDP),
            insn(LD_W_LEN, 0, 0, 0),
            insn(SUB_X, 0, 0, 0),
            insn(JGE_K, 0, to_accept(4), IPV6_UDP_HEADER_END),
            insn(LD_H_IND, 0, 0, IPV6_UDP_DPORT),
        ]);
    }
}

/// A family's group tests as a table of `ja`s (32-bit offsets), so the 8-bit limit of
/// conditional jumps does not bound it:
/// ```text
/// per group:  match g ? next : skip    ja TARGET(g)
/// after them: ret miss (0 when every wanted group is tested; ACCEPT when only the kernel
///             groups are, and every other frame of the family goes to user space)
/// ACCEPT:     ret ACCEPT
/// per kernel group, TARGET: the fast path forwards this frame (Family::push_checks) and
///             its port is one of the group's kernel ports ? ret 0 : ret ACCEPT
/// ```
/// A frame too short for the UDP header is accepted (the program never sees it as one of its
/// flows, and userspace counts it as malformed): a cBPF load beyond the frame would drop it
/// uncounted.
fn group_table<F: Family>(p: &mut Vec<Insn>, tested: &[F], kernel_flows: &[(F, u16)], miss: u32) {
    let ports = |g: F| -> Vec<u16> {
        kernel_flows
            .iter()
            .filter(|(k, _)| *k == g)
            .map(|(_, p)| *p)
            .collect()
    };
    let is_kernel = |g: F| kernel_flows.iter().any(|(k, _)| *k == g);
    let tests_start = p.len();
    let after_tests = tests_start + (F::MATCH_LEN + 1) * tested.len();
    let accept = after_tests + 1;
    let mut block_start = after_tests + 2;
    let mut targets = Vec::with_capacity(tested.len());
    for &g in tested {
        if is_kernel(g) {
            targets.push(block_start);
            block_start += F::CHECKS + ports(g).len() + 2;
        } else {
            targets.push(accept);
        }
    }
    for (&g, target) in tested.iter().zip(targets) {
        g.push_match(p);
        let ja_at = p.len();
        p.push(insn(JA, 0, 0, (target - ja_at - 1) as u32));
    }
    p.push(insn(RET_K, 0, 0, miss));
    p.push(insn(RET_K, 0, 0, ACCEPT));
    for &g in tested.iter().filter(|&&g| is_kernel(g)) {
        kernel_block::<F>(p, &ports(g));
    }
}

/// A kernel group's block: `F::CHECKS` checks at +0.., one test per port at +CHECKS.., then
/// ACC: ret ACCEPT at +CHECKS+n and DROP: ret 0 at +CHECKS+1+n. A jump at +k to +t has
/// offset t - k - 1; a group's ports fit the 8-bit offsets as the flows per input are bounded
/// ([`MAX_KERNEL_FLOWS_PER_INPUT`]).
fn kernel_block<F: Family>(p: &mut Vec<Insn>, ports: &[u16]) {
    let n = ports.len();
    let start = p.len();
    F::push_checks(p, |k| (F::CHECKS + n - k - 1) as u8);
    debug_assert_eq!(p.len() - start, F::CHECKS);
    for (j, port) in ports.iter().enumerate() {
        // Port test j jumps to DROP; the last one falls through to ACC.
        p.push(insn(JEQ_K, (n - j) as u8, 0, u32::from(*port)));
    }
    p.push(insn(RET_K, 0, 0, ACCEPT));
    p.push(insn(RET_K, 0, 0, 0));
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

    /// A kernel flow's frame `whole` (ending with its 8-byte UDP header and no payload) cut
    /// `cuts` bytes into that header is accepted, for userspace to count (a load beyond the
    /// frame would drop it, counted nowhere); the whole frame is left to the program.
    fn cut_frames_pass_and_the_whole_one_does_not(
        p: &[Insn],
        whole: &[u8],
        cuts: &[usize],
        what: &str,
    ) {
        for &cut in cuts {
            let f = &whole[..whole.len() - 8 + cut];
            assert_eq!(run(p, f, false), ACCEPT, "{what}: cut after {cut} bytes");
        }
        assert_eq!(run(p, whole, false), 0, "{what}: whole");
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
            cut_frames_pass_and_the_whole_one_does_not(
                &p,
                &udp_frame(vlan, G1, 5000, 5, 0),
                &[2, 4, 7],
                &format!("vlan {vlan}"),
            );
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

    /// An IPv6 frame to `dst` whose fixed header's next header is `next`, followed by a UDP
    /// header to `port` (whatever `next` says), with one in-frame tag when `vlan`.
    fn ipv6_udp_frame(vlan: bool, dst: Ipv6Addr, next: u8, port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = [0u8; 48];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&8u16.to_be_bytes());
        ip[6] = next;
        ip[24..40].copy_from_slice(&dst.octets());
        ip[42..44].copy_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }

    /// An IPv6/UDP frame to `dst`, port 9, with one in-frame tag when `vlan`.
    fn ipv6_frame(vlan: bool, dst: Ipv6Addr) -> Vec<u8> {
        ipv6_udp_frame(vlan, dst, 17, 9)
    }

    /// A UDP frame to `group`:`port` of either family (IPv4 without options).
    fn udp_to(vlan: bool, group: IpAddr, port: u16) -> Vec<u8> {
        match group {
            IpAddr::V4(g) => udp_frame(vlan, g.octets(), port, 5, 0),
            IpAddr::V6(g) => ipv6_udp_frame(vlan, g, 17, port),
        }
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

    #[test]
    fn ipv6_kernel_flows_are_left_to_the_program_and_the_rest_still_pass() {
        let kernel = [
            (V6_G1.into(), 5000),
            (V6_G1.into(), 5001),
            (G1.into(), 6000),
        ];
        let p = build(&[G1.into(), V6_G1.into(), V6_G2.into()], &kernel);
        let unwanted = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x5555);
        for vlan in [false, true] {
            // What the program forwards: dropped here.
            assert_eq!(run(&p, &ipv6_udp_frame(vlan, V6_G1, 17, 5000), false), 0);
            assert_eq!(run(&p, &ipv6_udp_frame(vlan, V6_G1, 17, 5001), false), 0);
            // Other ports of a kernel group, and groups of userspace rules: accepted.
            let accepted = |f: Vec<u8>, what: &str| {
                assert_eq!(run(&p, &f, false), ACCEPT, "{what}, vlan {vlan}")
            };
            accepted(ipv6_udp_frame(vlan, V6_G1, 17, 5002), "another port");
            accepted(ipv6_udp_frame(vlan, V6_G2, 17, 5000), "another group");
            // What the program leaves to the stack: extension headers, other protocols.
            accepted(ipv6_udp_frame(vlan, V6_G1, 0, 5000), "hop-by-hop");
            accepted(ipv6_udp_frame(vlan, V6_G1, 44, 5000), "fragment header");
            accepted(ipv6_udp_frame(vlan, V6_G1, 6, 5000), "TCP");
            // Groups no rule wants, outgoing frames: dropped as before.
            assert_eq!(run(&p, &ipv6_udp_frame(vlan, unwanted, 17, 5000), false), 0);
            assert_eq!(run(&p, &ipv6_udp_frame(vlan, V6_G1, 17, 5002), true), 0);
            // IPv4 beside them is unchanged.
            assert_eq!(run(&p, &udp_frame(vlan, G1, 6000, 5, 0), false), 0);
            assert_eq!(run(&p, &udp_frame(vlan, G1, 6001, 5, 0), false), ACCEPT);
            assert_eq!(run(&p, &udp_frame(vlan, G2, 6000, 5, 0), false), 0);
        }
        // A frame of a kernel flow cut inside its UDP header, or right after the fixed header:
        // userspace counts it (a load beyond the frame would drop it, counted nowhere).
        for vlan in [false, true] {
            let whole = ipv6_udp_frame(vlan, V6_G1, 17, 5000);
            cut_frames_pass_and_the_whole_one_does_not(
                &p,
                &whole,
                &[0, 2, 4, 7],
                &format!("vlan {vlan}"),
            );
        }
    }

    #[test]
    fn an_ipv6_kernel_group_no_rule_lists_is_still_excluded() {
        let lone = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x99);
        let kernel = [(lone.into(), 7000)];
        let beside_ipv6 = build(&[V6_G1.into()], &kernel);
        // Without IPv6 groups the interface still gets the IPv6 section, to test it.
        let beside_ipv4 = build(&[G1.into()], &kernel);
        for p in [&beside_ipv6, &beside_ipv4] {
            for vlan in [false, true] {
                assert_eq!(run(p, &ipv6_udp_frame(vlan, lone, 17, 7000), false), 0);
                assert_eq!(run(p, &ipv6_udp_frame(vlan, lone, 17, 7001), false), ACCEPT);
                assert_eq!(run(p, &ipv6_frame(vlan, V6_G2), false), 0);
            }
        }
        assert_eq!(run(&beside_ipv6, &ipv6_frame(false, V6_G1), false), ACCEPT);
        assert_eq!(run(&beside_ipv4, &ipv6_frame(false, V6_G1), false), 0);
        assert_eq!(run(&beside_ipv4, &frame(0x0800, false, G1), false), ACCEPT);
    }

    #[test]
    fn too_many_ipv6_groups_still_exclude_the_ipv6_kernel_flows() {
        let groups: Vec<IpAddr> = (0..=MAX_FILTERED_IPV6_GROUPS as u128)
            .map(|i| Ipv6Addr::from(0xff3e_0000_0000_0000_0000_0000_0000_0000 + i).into())
            .collect();
        let IpAddr::V6(kernel_group) = groups[5] else {
            unreachable!("IPv6 groups")
        };
        let p = build(&groups, &[(kernel_group.into(), 5000)]);
        for vlan in [false, true] {
            let f = |g, port| ipv6_udp_frame(vlan, g, 17, port);
            assert_eq!(run(&p, &f(kernel_group, 5000), false), 0);
            assert_eq!(run(&p, &f(kernel_group, 5001), false), ACCEPT);
            // Every other IPv6 frame: user space sorts it out.
            assert_eq!(run(&p, &f(V6_G2, 5000), false), ACCEPT);
        }
    }

    #[test]
    fn the_most_kernel_flows_in_any_family_mix_fit_and_stay_exact() {
        let k = MAX_KERNEL_FLOWS_PER_INPUT;
        let v4 = |i: u32| IpAddr::from(Ipv4Addr::from(0xef01_0000 + i));
        let v6 = |i: u32| IpAddr::from(Ipv6Addr::from(0xff3e_u128 << 112 | u128::from(i)));
        // Each kernel flow its own group (the most tests and blocks) in every mix of the
        // families, and all of them on one or two groups (the longest port lists).
        let distinct = |k6: u32| -> Vec<(IpAddr, u16)> {
            let ipv4 = (0..k - k6).map(|i| (v4(100_000 + i), 5000));
            ipv4.chain((0..k6).map(|i| (v6(100_000 + i), 5000)))
                .collect()
        };
        let mut layouts: Vec<Vec<(IpAddr, u16)>> =
            [0, 1, k / 2, k - 1, k].into_iter().map(distinct).collect();
        layouts.push((0..k).map(|i| (v6(100_000), 5000 + i as u16)).collect());
        layouts.push(
            (0..k)
                .map(|i| {
                    (
                        if i % 2 == 0 { v4(100_000) } else { v6(100_000) },
                        5000 + i as u16,
                    )
                })
                .collect(),
        );
        // The rule table lists the kernel groups beside 250 IPv4 and 128 IPv6 others.
        let groups_with = |kernel: &[(IpAddr, u16)]| -> Vec<IpAddr> {
            let mut groups: Vec<IpAddr> = (0..MAX_FILTERED_GROUPS as u32).map(v4).collect();
            groups.extend((0..MAX_FILTERED_IPV6_GROUPS as u32).map(v6));
            groups.extend(kernel.iter().map(|(g, _)| *g));
            groups.sort();
            groups.dedup();
            groups
        };
        let mut worst = 0;
        for kernel in &layouts {
            let p = build(&groups_with(kernel), kernel);
            assert!(p.len() <= MAX_INSNS, "{} instructions", p.len());
            worst = worst.max(p.len());
            for &(g, port) in kernel.iter().step_by(7) {
                for vlan in [false, true] {
                    assert_eq!(run(&p, &udp_to(vlan, g, port), false), 0, "{g} {port}");
                    assert_eq!(run(&p, &udp_to(vlan, g, 4000), false), ACCEPT, "{g} 4000");
                }
            }
            for other in [v4(0), v4(249), v6(0), v6(127)] {
                assert_eq!(run(&p, &udp_to(false, other, 5000), false), ACCEPT);
                assert_eq!(run(&p, &udp_to(true, other, 5000), false), ACCEPT);
            }
        }
        assert!(
            worst > 3500,
            "the layouts fill the program: {worst} instructions"
        );
        // All flows IPv6: IPv6 tests only its kernel groups, IPv4 stays exact.
        let all_ipv6 = distinct(k);
        let p = build(&groups_with(&all_ipv6), &all_ipv6);
        assert_eq!(run(&p, &udp_to(false, v6(300), 5000), false), ACCEPT);
        assert_eq!(run(&p, &udp_to(false, v4(300), 5000), false), 0);
        // One of them IPv4: IPv4 tests only its kernel group too.
        let one_ipv4 = distinct(k - 1);
        let p = build(&groups_with(&one_ipv4), &one_ipv4);
        assert_eq!(run(&p, &udp_to(false, v4(300), 5000), false), ACCEPT);
    }
}
