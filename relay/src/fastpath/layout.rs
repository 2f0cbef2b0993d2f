//! The program's map layouts on the Rust side: the skeleton's types (generated from the
//! program's BTF, so they are the C structs of `bpf/fastpath.h`), filled from a resolved rule.

use std::net::Ipv4Addr;

use super::skel::types::{
    mcr_fp_key, mcr_fp_monitor, mcr_fp_output, mcr_fp_rule, mcr_fp_rule_counters,
};
use crate::config::Monitor;

/// Bytes of `mcr_fp_rule` before its outputs: slot, n_outputs, monitor, flags, cutoff.
const RULE_HEAD: usize = 24;

/// `MCR_FP_MAX_OUTPUTS`, read from the generated type so it cannot differ from the C side.
pub const MAX_OUTPUTS: usize = {
    let rule = std::mem::size_of::<mcr_fp_rule>() - RULE_HEAD;
    rule / std::mem::size_of::<mcr_fp_output>()
};

// The layouts the C header promises (no implicit padding: every byte is a field, so the
// byte views below never expose uninitialised memory).
const _: () = assert!(std::mem::size_of::<mcr_fp_key>() == 16);
const _: () = assert!(std::mem::size_of::<mcr_fp_output>() == 32);
const _: () = assert!(std::mem::size_of::<mcr_fp_rule>() == RULE_HEAD + 32 * MAX_OUTPUTS);
const _: () = assert!(std::mem::size_of::<mcr_fp_monitor>() == 48);
const _: () = assert!(MAX_OUTPUTS == 16);

/// One output as the program writes it into the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOutput {
    pub ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub dst: Ipv4Addr,
    pub src: Ipv4Addr,
    pub dst_port: u16,
    /// 0 keeps the sender's source port.
    pub src_port: u16,
    pub ttl: u8,
    /// `None` keeps the received DSCP (the ECN bits are always kept).
    pub dscp: Option<u8>,
}

/// `MCR_FP_KEEP_DSCP`.
const KEEP_DSCP: u8 = 0xff;
/// `MCR_FP_MONITOR_NONE`, `MCR_FP_MONITOR_RTP`.
const MONITOR_NONE: u32 = 0;
const MONITOR_RTP: u32 = 1;
/// `MCR_FP_RULE_SOURCES`, on an any-source entry: its flow has source-specific entries, which
/// the program looks up only when this says so (`fastpath.h` says why).
pub const RULE_SOURCES: u32 = 1;
/// `MCR_FP_RULE_FROM`, `MCR_FP_RULE_UNTIL`: the entry's flow is changing path, and the
/// program forwards only its frames stamped at or after `cutoff` (from) or before it (until).
const RULE_FROM: u32 = 2;
const RULE_UNTIL: u32 = 4;
/// `MCR_FP_NO_SEQ`: no sequence number seen yet.
const NO_SEQ: u32 = u32::MAX;

/// What the program checks of a rule's datagrams; `None` for what it cannot check (the
/// caller keeps such rules in userspace).
pub fn monitor_kind(m: Option<Monitor>) -> Option<u32> {
    match m {
        None => Some(MONITOR_NONE),
        Some(Monitor::Rtp) => Some(MONITOR_RTP),
        Some(Monitor::Mpegts) => None,
    }
}

/// A slot's stream check before its first datagram.
pub fn fresh_monitor() -> mcr_fp_monitor {
    mcr_fp_monitor {
        last_seq: NO_SEQ,
        ..Default::default()
    }
}

/// The hash key of a rule (source `None`: the any-source entry).
pub fn key(ifindex: u32, group: Ipv4Addr, port: u16, source: Option<Ipv4Addr>) -> mcr_fp_key {
    mcr_fp_key {
        ifindex,
        group: u32::from(group).to_be(),
        source: source.map(|s| u32::from(s).to_be()).unwrap_or(0),
        port: port.to_be(),
        pad: 0,
    }
}

/// The map value of a rule: its counter slot, its monitor kind ([`monitor_kind`]), its flags
/// ([`RULE_SOURCES`] or 0) and its whole output set. At most [`MAX_OUTPUTS`] outputs (the
/// caller checks).
pub fn rule_value(slot: u32, monitor: u32, flags: u32, outputs: &[KernelOutput]) -> mcr_fp_rule {
    assert!(!outputs.is_empty() && outputs.len() <= MAX_OUTPUTS);
    let mut v = mcr_fp_rule {
        slot,
        n_outputs: outputs.len() as u32,
        monitor,
        flags,
        ..Default::default()
    };
    for (slot, o) in v.outputs.iter_mut().zip(outputs) {
        *slot = mcr_fp_output {
            dst_mac: o.dst_mac,
            src_mac: o.src_mac,
            ifindex: o.ifindex,
            dst_ip: u32::from(o.dst).to_be(),
            src_ip: u32::from(o.src).to_be(),
            dst_port: o.dst_port.to_be(),
            src_port: o.src_port.to_be(),
            ttl: o.ttl,
            dscp: o.dscp.unwrap_or(KEEP_DSCP),
            pad: [0; 2],
        };
    }
    v
}

/// `value` with its flow changing path: the program forwards the frames stamped at or after
/// `cutoff` (`from`: the flow comes to the kernel) or before it (it leaves); `None` clears it.
pub fn with_cutoff(mut value: mcr_fp_rule, cutoff: Option<(bool, u64)>) -> mcr_fp_rule {
    value.flags &= !(RULE_FROM | RULE_UNTIL);
    value.cutoff = 0;
    if let Some((from, at)) = cutoff {
        value.flags |= if from { RULE_FROM } else { RULE_UNTIL };
        value.cutoff = at;
    }
    value
}

/// Plain map structs, whose bytes [`bytes_of`] and [`from_bytes`] view.
///
/// # Safety
/// Implement it only for a `repr(C)` type of integers (and arrays of them) with no padding
/// bytes (the size checks above hold the map structs to it): every byte is then initialised
/// and every bit pattern is a valid value.
pub unsafe trait Plain: Copy + Default {}
// SAFETY (all five): skeleton types generated from `fastpath.h`, integers only, sizes checked
// against the C layout above.
unsafe impl Plain for mcr_fp_key {}
unsafe impl Plain for mcr_fp_rule {}
unsafe impl Plain for mcr_fp_rule_counters {}
unsafe impl Plain for super::skel::types::mcr_fp_pass_counters {}
unsafe impl Plain for mcr_fp_monitor {}

/// The bytes of a map struct, as the map stores them.
pub fn bytes_of<T: Plain>(v: &T) -> &[u8] {
    // SAFETY: `T: Plain` is repr(C) with no padding bytes, so all its bytes are initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// A map struct from the bytes the kernel returned; `None` if the size is wrong.
pub fn from_bytes<T: Plain>(b: &[u8]) -> Option<T> {
    if b.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: the length is checked and every bit pattern is a valid `T: Plain` (integers).
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_in_network_order_with_zero_for_any_source() {
        let k = key(7, Ipv4Addr::new(239, 1, 2, 3), 5000, None);
        let b = bytes_of(&k);
        assert_eq!(&b[0..4], &7u32.to_ne_bytes());
        assert_eq!(&b[4..8], &[239, 1, 2, 3]);
        assert_eq!(&b[8..12], &[0, 0, 0, 0]);
        assert_eq!(&b[12..14], &5000u16.to_be_bytes());
        let k = key(
            7,
            Ipv4Addr::new(239, 1, 2, 3),
            5000,
            Some(Ipv4Addr::new(10, 0, 0, 1)),
        );
        assert_eq!(&bytes_of(&k)[8..12], &[10, 0, 0, 1]);
    }

    #[test]
    fn rule_value_holds_every_output_and_round_trips() {
        let out = |i: u8| KernelOutput {
            ifindex: u32::from(i),
            dst_mac: [1, 0, 0x5e, 0, 0, i],
            src_mac: [2, 0, 0, 0, 0, i],
            dst: Ipv4Addr::new(239, 2, 2, i),
            src: Ipv4Addr::new(10, 0, 0, i),
            dst_port: 6000 + u16::from(i),
            src_port: 0,
            ttl: i,
            dscp: (i == 2).then_some(46),
        };
        let v = rule_value(9, MONITOR_RTP, RULE_SOURCES, &[out(1), out(2)]);
        assert_eq!((v.slot, v.n_outputs, v.monitor, v.flags), (9, 2, 1, 1));
        let b = bytes_of(&v);
        assert_eq!(&b[8..12], &1u32.to_ne_bytes());
        assert_eq!(&b[12..16], &RULE_SOURCES.to_ne_bytes());
        // Output 1 starts at 24 + 32: MACs, ifindex, addresses, ports, TTL.
        let o = &b[RULE_HEAD + 32..RULE_HEAD + 64];
        assert_eq!(&o[0..6], &[1, 0, 0x5e, 0, 0, 2]);
        assert_eq!(&o[16..20], &[239, 2, 2, 2]);
        assert_eq!(&o[24..26], &6002u16.to_be_bytes());
        assert_eq!(o[28], 2);
        assert_eq!(o[29], 46);
        assert_eq!(b[RULE_HEAD + 29], KEEP_DSCP, "output 0 keeps the DSCP");
        let back: mcr_fp_rule = from_bytes(b).unwrap();
        assert_eq!(bytes_of(&back), b);
        assert!(from_bytes::<mcr_fp_rule>(&b[..10]).is_none());
    }

    #[test]
    fn a_cutoff_sets_its_flag_and_time_and_none_clears_them() {
        let out = KernelOutput {
            ifindex: 1,
            dst_mac: [0; 6],
            src_mac: [0; 6],
            dst: Ipv4Addr::new(239, 2, 2, 2),
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst_port: 6000,
            src_port: 0,
            ttl: 8,
            dscp: None,
        };
        let v = rule_value(3, MONITOR_NONE, RULE_SOURCES, &[out]);
        let from = with_cutoff(v, Some((true, 1_000)));
        assert_eq!((from.flags, from.cutoff), (RULE_SOURCES | RULE_FROM, 1_000));
        let until = with_cutoff(from, Some((false, 2_000)));
        assert_eq!(
            (until.flags, until.cutoff),
            (RULE_SOURCES | RULE_UNTIL, 2_000)
        );
        assert_eq!(bytes_of(&with_cutoff(until, None)), bytes_of(&v));
        // The C side's values.
        let header = include_str!("../../bpf/fastpath.h");
        assert!(header.contains(&format!("#define MCR_FP_RULE_FROM {RULE_FROM}")));
        assert!(header.contains(&format!("#define MCR_FP_RULE_UNTIL {RULE_UNTIL}")));
    }
}
