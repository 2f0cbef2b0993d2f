//! The classic BPF program attached to each packet socket.
//!
//! It lets through only IPv4 frames (untagged, or with one 802.1Q/802.1ad tag in the frame)
//! whose destination address some rule on that interface wants, and never our own
//! transmissions. Everything else is dropped in the kernel before it is copied into our ring,
//! which is most of the cost of a packet we don't want. Port and protocol are checked in user
//! space, so malformed datagrams to our groups are still seen and counted.

use std::net::Ipv4Addr;

/// One classic BPF instruction (`struct sock_filter`).
pub type Insn = libc::sock_filter;

// Opcodes (linux/bpf_common.h, linux/filter.h).
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_W_IND: u16 = 0x40;
const LDX_IMM: u16 = 0x01;
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
/// Offset of the IPv4 destination address in an untagged Ethernet frame.
const IPV4_DST_OFFSET: u32 = 14 + 16;
/// Accept the whole frame (GSO super-frames can be 64 KiB).
const ACCEPT: u32 = 0x0004_0000;
/// Jump offsets are 8 bits; beyond this many groups the filter accepts all IPv4.
pub const MAX_FILTERED_GROUPS: usize = 250;

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
pub fn build(groups: &[Ipv4Addr]) -> Vec<Insn> {
    let mut p = vec![
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
    ];
    if groups.len() > MAX_FILTERED_GROUPS {
        p.push(insn(RET_K, 0, 0, ACCEPT));
        return p;
    }
    let n = groups.len();
    for (i, g) in groups.iter().enumerate() {
        // From test i, ACCEPT is past the remaining n-1-i tests and DROP.
        let to_accept = (n - 1 - i + 1) as u8;
        p.push(insn(JEQ_K, to_accept, 0, u32::from(*g)));
    }
    p.push(insn(RET_K, 0, 0, 0));
    p.push(insn(RET_K, 0, 0, ACCEPT));
    p
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

    const G1: [u8; 4] = [239, 1, 1, 1];
    const G2: [u8; 4] = [239, 1, 1, 2];

    #[test]
    fn accepts_wanted_groups_untagged_and_tagged() {
        let p = build(&[G1.into(), G2.into()]);
        assert_eq!(run(&p, &frame(0x0800, false, G1), false), ACCEPT);
        assert_eq!(run(&p, &frame(0x0800, false, G2), false), ACCEPT);
        assert_eq!(run(&p, &frame(0x0800, true, G1), false), ACCEPT);
    }

    #[test]
    fn drops_other_groups_other_protocols_and_outgoing() {
        let p = build(&[G1.into()]);
        assert_eq!(run(&p, &frame(0x0800, false, [239, 9, 9, 9]), false), 0);
        assert_eq!(run(&p, &frame(0x86dd, false, G1), false), 0);
        assert_eq!(run(&p, &frame(0x0806, false, G1), false), 0);
        assert_eq!(run(&p, &frame(0x86dd, true, G1), false), 0);
        assert_eq!(run(&p, &frame(0x0800, false, G1), true), 0);
        assert_eq!(run(&p, &[0u8; 10], false), 0);
    }

    #[test]
    fn no_groups_accepts_nothing() {
        let p = build(&[]);
        assert_eq!(run(&p, &frame(0x0800, false, G1), false), 0);
    }

    #[test]
    fn many_groups_fall_back_to_all_ipv4() {
        let groups: Vec<Ipv4Addr> = (0..300u32)
            .map(|i| Ipv4Addr::from(0xef01_0000 + i))
            .collect();
        let p = build(&groups);
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
        let groups: Vec<Ipv4Addr> = (0..MAX_FILTERED_GROUPS as u32)
            .map(|i| Ipv4Addr::from(0xef01_0000 + i))
            .collect();
        let p = build(&groups);
        let last = Ipv4Addr::from(0xef01_0000 + MAX_FILTERED_GROUPS as u32 - 1).octets();
        assert_eq!(run(&p, &frame(0x0800, false, last), false), ACCEPT);
        assert_eq!(run(&p, &frame(0x0800, false, [10, 0, 0, 1]), false), 0);
        assert_eq!(run(&p, &frame(0x86dd, false, G1), false), 0);
    }
}
