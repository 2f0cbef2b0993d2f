//! The program's per-CPU counters, summed over CPUs.
//!
//! The program updates a rule's counters one field at a time while it handles a packet, so
//! a read can see a datagram counted as matched and not yet as sent or failed: that
//! difference is the datagram in the program at that instant and is reported as `in_flight`
//! (0 once the program is detached), which keeps `matched = tx_sent + tx_errors +
//! buf_exhaust + in_flight` exact in every report.

use super::layout::{from_bytes, MAX_OUTPUTS};
use super::skel::types::{mcr_fp_monitor, mcr_fp_pass_counters, mcr_fp_rule_counters};
use crate::wire::Malformed;

/// One output's counters, all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounters {
    pub matched: u64,
    pub sent: u64,
    pub sent_bytes: u64,
    pub err_mtu: u64,
    pub err_redirect: u64,
    pub err_rewrite: u64,
    /// The output's interface was gone (deleted) when the program sent to it.
    pub err_nodev: u64,
}

impl OutputCounters {
    pub fn errors(&self) -> u64 {
        self.err_mtu + self.err_redirect + self.err_rewrite + self.err_nodev
    }

    /// Matched but neither sent nor failed yet: in the program right now.
    pub fn in_flight(&self) -> u64 {
        self.matched.saturating_sub(self.sent + self.errors())
    }
}

/// One rule's counters, all CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleCounters {
    /// skbs (a GSO super-frame is one).
    pub frames: u64,
    /// Datagrams (a super-frame counts its segments).
    pub matched: u64,
    /// UDP payload bytes of `matched`.
    pub bytes: u64,
    /// Frame bytes, link layer included.
    pub frame_bytes: u64,
    /// Datagrams below the rule's `min_ttl`, left alone (not in `matched`).
    pub below_min_ttl: u64,
    /// Their skbs.
    pub below_min_ttl_frames: u64,
    pub outputs: [OutputCounters; MAX_OUTPUTS],
}

impl RuleCounters {
    /// Sums the per-CPU values of one slot, as `lookup_percpu` returns them.
    pub fn sum(per_cpu: &[Vec<u8>]) -> Self {
        let mut s = Self::default();
        for raw in per_cpu {
            let Some(c) = from_bytes::<mcr_fp_rule_counters>(raw) else {
                continue;
            };
            s.frames += c.frames;
            s.matched += c.matched;
            s.bytes += c.bytes;
            s.frame_bytes += c.frame_bytes;
            s.below_min_ttl += c.below_min_ttl;
            s.below_min_ttl_frames += c.below_min_ttl_frames;
            for (o, c) in s.outputs.iter_mut().zip(c.outputs.iter()) {
                o.matched += c.matched;
                o.sent += c.sent;
                o.sent_bytes += c.sent_bytes;
                o.err_mtu += c.err_mtu;
                o.err_redirect += c.err_redirect;
                o.err_rewrite += c.err_rewrite;
                o.err_nodev += c.err_nodev;
            }
        }
        s
    }
}

/// What the program did over many rules (the retired ones' included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelTotals {
    pub frames: u64,
    pub frame_bytes: u64,
    pub matched: u64,
    /// UDP payload bytes of `matched`.
    pub bytes: u64,
    pub sent: u64,
    pub sent_bytes: u64,
    pub err_mtu: u64,
    pub err_redirect: u64,
    pub err_rewrite: u64,
    pub err_nodev: u64,
    pub in_flight: u64,
    /// Datagrams (and their skbs) below their rule's `min_ttl`: the program's share of
    /// `filtered`.
    pub below_min_ttl: u64,
    pub below_min_ttl_frames: u64,
}

impl KernelTotals {
    /// Adds a rule's counters (its first `outputs` outputs).
    pub fn add(&mut self, r: &RuleCounters, outputs: usize) {
        self.frames += r.frames;
        self.frame_bytes += r.frame_bytes;
        self.matched += r.matched;
        self.bytes += r.bytes;
        self.below_min_ttl += r.below_min_ttl;
        self.below_min_ttl_frames += r.below_min_ttl_frames;
        for o in r.outputs.iter().take(outputs) {
            self.sent += o.sent;
            self.sent_bytes += o.sent_bytes;
            self.err_mtu += o.err_mtu;
            self.err_redirect += o.err_redirect;
            self.err_rewrite += o.err_rewrite;
            self.err_nodev += o.err_nodev;
            self.in_flight += o.in_flight();
        }
    }

    pub fn add_totals(&mut self, o: &KernelTotals) {
        self.frames += o.frames;
        self.frame_bytes += o.frame_bytes;
        self.matched += o.matched;
        self.bytes += o.bytes;
        self.sent += o.sent;
        self.sent_bytes += o.sent_bytes;
        self.err_mtu += o.err_mtu;
        self.err_redirect += o.err_redirect;
        self.err_rewrite += o.err_rewrite;
        self.err_nodev += o.err_nodev;
        self.in_flight += o.in_flight;
        self.below_min_ttl += o.below_min_ttl;
        self.below_min_ttl_frames += o.below_min_ttl_frames;
    }
}

/// A monitored rule's stream check in the program (one for all CPUs), with the meanings of
/// the userspace monitor's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorCounters {
    pub datagrams: u64,
    pub foreign: u64,
    pub gaps: u64,
    pub lost: u64,
    pub repeats: u64,
}

impl MonitorCounters {
    /// From the map value as read under its lock (`BPF_F_LOCK`): one consistent state.
    pub fn from_map(raw: &[u8]) -> Option<Self> {
        let m = from_bytes::<mcr_fp_monitor>(raw)?;
        Some(Self {
            datagrams: m.datagrams,
            foreign: m.foreign,
            gaps: m.gaps,
            lost: m.lost,
            repeats: m.repeats,
        })
    }
}

/// Frames the program left to the stack, all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassCounters {
    /// Left to the userspace path (which counts them as malformed too).
    pub ip_options: u64,
    pub fragments: u64,
    /// IPv6 frames with extension headers, which userspace walks.
    pub extension_headers: u64,
    pub no_counters: u64,
    /// Frames of the program's flows it refused, by [`Malformed::index`]: counted here only
    /// (the packet filter keeps them from userspace), in the userspace path's kinds.
    pub malformed: [u64; Malformed::COUNT],
    /// Frames of the program's flows with a second VLAN tag: userspace's `filtered.not_ip`.
    pub not_ipv4: u64,
    /// Frames of a flow changing path that its cutoff left to the workers (`switch.rs`),
    /// which count them; not in any rule's counters.
    pub handed_over: u64,
}

impl PassCounters {
    pub fn sum(per_cpu: &[Vec<u8>]) -> Self {
        let mut s = Self::default();
        for c in per_cpu
            .iter()
            .filter_map(|r| from_bytes::<mcr_fp_pass_counters>(r))
        {
            s.ip_options += c.ip_options;
            s.fragments += c.fragments;
            s.extension_headers += c.extension_headers;
            s.no_counters += c.no_counters;
            for (sum, v) in s.malformed.iter_mut().zip(c.malformed.iter()) {
                *sum += v;
            }
            s.not_ipv4 += c.not_ipv4;
            s.handed_over += c.handed_over;
        }
        s
    }

    /// The refused frames by kind, as the userspace path names them (kinds with 0 left out).
    pub fn malformed_by_kind(&self) -> impl Iterator<Item = (Malformed, u64)> + '_ {
        Malformed::ALL
            .iter()
            .map(|k| (*k, self.malformed[k.index()]))
            .filter(|(_, v)| *v > 0)
    }

    /// Frames of the program's flows it refused: malformed ones and filtered ones.
    pub fn refused(&self) -> u64 {
        self.malformed.iter().sum::<u64>() + self.not_ipv4
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::bytes_of;
    use super::*;

    #[test]
    fn sums_cpus_and_derives_in_flight() {
        let mut a = mcr_fp_rule_counters {
            matched: 5,
            ..Default::default()
        };
        a.outputs[1].matched = 5;
        a.outputs[1].sent = 3;
        a.outputs[1].err_mtu = 1;
        let mut b = mcr_fp_rule_counters {
            matched: 2,
            ..Default::default()
        };
        b.outputs[1].matched = 2;
        b.outputs[1].sent = 2;
        let s = RuleCounters::sum(&[bytes_of(&a).to_vec(), bytes_of(&b).to_vec()]);
        assert_eq!(s.matched, 7);
        assert_eq!(s.outputs[1].sent, 5);
        assert_eq!(s.outputs[1].errors(), 1);
        assert_eq!(s.outputs[1].in_flight(), 1);
        assert_eq!(s.outputs[0], OutputCounters::default());
    }

    /// The program's kind numbers (bpf/fastpath.h) are `Malformed::index`: a frame it refuses
    /// is counted under the name userspace gives the same frame.
    #[test]
    fn the_program_s_refusal_kinds_are_the_parser_s() {
        use super::super::skel::types as t;
        let pairs = [
            (Malformed::Truncated, 0),
            (Malformed::BadIpHeaderLength, 1),
            (Malformed::BadTotalLength, 2),
            (Malformed::BadIpChecksum, 5),
            (Malformed::BadUdpLength, 6),
            (Malformed::BadUdpChecksum, 7),
        ];
        let header = include_str!("../../bpf/fastpath.h");
        for (kind, index) in pairs {
            let define = format!(
                "#define MCR_FP_MALFORMED_{} {index}",
                kind.name().to_uppercase()
            );
            assert!(header.contains(&define), "bpf/fastpath.h lacks `{define}`");
            assert_eq!(kind.index(), index);
        }
        assert!(header.contains(&format!(
            "#define MCR_FP_MALFORMED_KINDS {}",
            Malformed::COUNT
        )));
        let c = t::mcr_fp_pass_counters::default();
        assert_eq!(c.malformed.len(), Malformed::COUNT);
        let mut raw = c;
        raw.malformed[Malformed::BadUdpLength.index()] = 3;
        raw.not_ipv4 = 2;
        let s = PassCounters::sum(&[bytes_of(&raw).to_vec(), bytes_of(&raw).to_vec()]);
        assert_eq!(
            s.malformed_by_kind().collect::<Vec<_>>(),
            vec![(Malformed::BadUdpLength, 6)]
        );
        assert_eq!(s.refused(), 10);
    }
}
