//! Per-flow stream monitoring (`monitor = "rtp" | "mpegts"` on a rule): what this hop received
//! of a production stream, as sequence gaps (RTP) or continuity-counter errors (MPEG-TS), so
//! that a chain of relays shows at which hop loss first appears.
//!
//! One [`MonitorCells`] per worker per monitored flow, written only by that worker (like every
//! cell here) and allocated when the rule table is built; a flow without monitoring has none
//! and pays one branch per datagram. The checks read a few header bytes, with no allocation.
//!
//! The kernel fast path checks RTP with the same definitions (`rtp_check` in
//! `bpf/fastpath.bpf.c`; one state per flow under a lock instead of per worker): change
//! both together, `tests/fastpath.rs` compares them on one stream.
//!
//! The counts localize loss; `trafficgen recv --format rtp|mpegts` is the exact account at the
//! end of the chain. Deliberately simpler than it:
//! * RTP: a packet 2..3000 ahead of the last is a gap of (delta - 1) lost sequence numbers; one
//!   at or up to 100 behind is a repeat (duplicate or reordered: a reordered packet was first
//!   counted lost at its gap); anything else is a jump that restarts the count, a gap with no
//!   loss counted (RFC 3550 A.1's thresholds);
//! * MPEG-TS (raw, or inside RTP): per PID, the 4-bit continuity counter advances with each
//!   packet that carries payload (ISO/IEC 13818-1); a gap of k counts k lost (k + 16n really);
//!   the same counter again is a repeat (the allowed duplicate; the bytes are not compared);
//!   discontinuity_indicator restarts the PID, null packets (0x1FFF) and packets with
//!   transport_error_indicator are not checked.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};

use super::cell::Counter;
use crate::config::Monitor;

const TS_PACKET: usize = 188;
const NULL_PID: usize = 0x1fff;
/// No counter seen yet for a PID.
const NO_CC: u8 = 0xff;
/// No sequence number seen yet.
const NO_SEQ: u32 = u32::MAX;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// One worker's monitor of one flow.
#[derive(Debug)]
pub struct MonitorCells {
    pub kind: Monitor,
    /// Datagrams checked.
    pub datagrams: Counter,
    /// Datagrams that were not of the monitored format (not RTP v2; not whole TS packets).
    pub foreign: Counter,
    /// RTP: sequence gaps; MPEG-TS: continuity-counter errors.
    pub gaps: Counter,
    /// RTP: sequence numbers skipped; MPEG-TS: lost TS packets the counters show.
    pub lost: Counter,
    /// RTP: packets at or behind the highest sequence; MPEG-TS: repeated counters.
    pub repeats: Counter,
    last_seq: AtomicU32,
    /// MPEG-TS: last counter per PID (empty for RTP).
    cc: Box<[AtomicU8]>,
}

impl MonitorCells {
    pub fn new(kind: Monitor) -> MonitorCells {
        let pids = match kind {
            Monitor::Rtp => 0,
            Monitor::Mpegts => NULL_PID,
        };
        MonitorCells {
            kind,
            datagrams: Counter::default(),
            foreign: Counter::default(),
            gaps: Counter::default(),
            lost: Counter::default(),
            repeats: Counter::default(),
            last_seq: AtomicU32::new(NO_SEQ),
            cc: (0..pids).map(|_| AtomicU8::new(NO_CC)).collect(),
        }
    }

    /// Checks one datagram's UDP payload. Only the owning worker may call this.
    #[inline]
    pub fn observe(&self, payload: &[u8]) {
        self.datagrams.add(1);
        match self.kind {
            Monitor::Rtp => match rtp_sequence(payload) {
                Some(seq) => self.sequence(seq),
                None => self.foreign.add(1),
            },
            Monitor::Mpegts => {
                let ts = if payload.first() == Some(&0x47) {
                    Some(payload)
                } else {
                    rtp_payload(payload)
                };
                match ts.filter(|t| is_transport_stream(t)) {
                    Some(ts) => ts.chunks_exact(TS_PACKET).for_each(|p| self.ts_packet(p)),
                    None => self.foreign.add(1),
                }
            }
        }
    }

    /// Forgets the stream's position (the last sequence number, each PID's last counter) and
    /// keeps the counts: the next datagram starts the check afresh. For a flow coming back
    /// from the kernel path, which checked the datagrams in between (else they would show as
    /// one gap). Called while no worker receives the flow (the packet filter still leaves it
    /// to the kernel), so this writer does not race the owning worker.
    pub fn restart(&self) {
        self.last_seq.store(NO_SEQ, Relaxed);
        for c in self.cc.iter() {
            c.store(NO_CC, Relaxed);
        }
    }

    fn sequence(&self, seq: u16) {
        let last = self.last_seq.load(Relaxed);
        if last != NO_SEQ {
            let delta = seq.wrapping_sub(last as u16);
            if delta == 0 || delta > u16::MAX - MAX_MISORDER {
                self.repeats.add(1);
                return;
            }
            if delta > 1 {
                self.gaps.add(1);
                if delta < MAX_DROPOUT {
                    self.lost.add(u64::from(delta - 1));
                }
            }
        }
        self.last_seq.store(u32::from(seq), Relaxed);
    }

    fn ts_packet(&self, p: &[u8]) {
        let pid = usize::from(p[1] & 0x1f) << 8 | usize::from(p[2]);
        if p[1] & 0x80 != 0 || pid == NULL_PID {
            return;
        }
        let afc = (p[3] >> 4) & 0x3;
        if afc == 0 {
            return;
        }
        let cc = p[3] & 0x0f;
        let discontinuity = afc & 0x2 != 0 && p[4] > 0 && p[5] & 0x80 != 0;
        let slot = &self.cc[pid];
        let last = slot.load(Relaxed);
        if last != NO_CC && !discontinuity {
            let payload = afc & 0x1 != 0;
            let expected = if payload { (last + 1) & 0x0f } else { last };
            if payload && cc == last {
                self.repeats.add(1);
                return;
            }
            if cc != expected {
                self.gaps.add(1);
                self.lost.add(u64::from(cc.wrapping_sub(expected) & 0x0f));
            }
        }
        slot.store(cc, Relaxed);
    }
}

/// The sequence number of an RTP version-2 packet (not RTCP's payload types 72-76).
fn rtp_sequence(payload: &[u8]) -> Option<u16> {
    if payload.len() < 12 || payload[0] >> 6 != 2 || (72..=76).contains(&(payload[1] & 0x7f)) {
        return None;
    }
    Some(u16::from_be_bytes([payload[2], payload[3]]))
}

/// The payload of an RTP packet (after CSRCs and header extension; padding ignored).
fn rtp_payload(payload: &[u8]) -> Option<&[u8]> {
    rtp_sequence(payload)?;
    let mut start = 12 + 4 * usize::from(payload[0] & 0x0f);
    if payload[0] & 0x10 != 0 {
        let words = payload.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    payload.get(start..)
}

fn is_transport_stream(ts: &[u8]) -> bool {
    !ts.is_empty()
        && ts.len().is_multiple_of(TS_PACKET)
        && ts.chunks_exact(TS_PACKET).all(|p| p[0] == 0x47)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = 0x80;
        b[1] = 96;
        b[2..4].copy_from_slice(&seq.to_be_bytes());
        b
    }

    fn ts(pid: u16, cc: u8) -> [u8; TS_PACKET] {
        let mut p = [0u8; TS_PACKET];
        p[..4].copy_from_slice(&[0x47, (pid >> 8) as u8, pid as u8, 0x10 | cc]);
        p
    }

    fn counts(m: &MonitorCells) -> (u64, u64, u64, u64) {
        (m.gaps.get(), m.lost.get(), m.repeats.get(), m.foreign.get())
    }

    #[test]
    fn rtp_gaps_wrap_repeats_and_jumps() {
        let m = MonitorCells::new(Monitor::Rtp);
        for seq in [65534, 65535, 2, 1, 2, 3, 40_000, 40_001] {
            m.observe(&rtp(seq));
        }
        m.observe(b"not rtp");
        // 0, 1 skipped at the wrap (gap 1, 2 lost); 1 and 2 again: repeats; the jump to
        // 40000: a gap without loss
        assert_eq!(counts(&m), (2, 2, 2, 1));
        assert_eq!(m.datagrams.get(), 9);
    }

    #[test]
    fn a_restart_forgets_the_position_and_keeps_the_counts() {
        let m = MonitorCells::new(Monitor::Rtp);
        m.observe(&rtp(10));
        m.observe(&rtp(12));
        m.restart();
        // 500 ahead of the last: after the restart, the first of a new count, not a gap.
        m.observe(&rtp(512));
        m.observe(&rtp(513));
        assert_eq!(counts(&m), (1, 1, 0, 0));
        assert_eq!(m.datagrams.get(), 4);
        let m = MonitorCells::new(Monitor::Mpegts);
        m.observe(&ts(0x100, 1));
        m.restart();
        m.observe(&ts(0x100, 9));
        assert_eq!(counts(&m), (0, 0, 0, 0));
    }

    #[test]
    fn mpegts_counters_per_pid_raw_and_in_rtp() {
        let m = MonitorCells::new(Monitor::Mpegts);
        let mut datagram = Vec::new();
        for (pid, cc) in [(0x100, 14), (0x101, 3), (0x100, 15), (0x1fff, 9)] {
            datagram.extend_from_slice(&ts(pid, cc));
        }
        m.observe(&datagram);
        // in RTP (PT 33): 0x100 continues at 0, 0x101 jumps from 3 to 6 (4, 5 lost), then the
        // same counter again on 0x100 (a repeat)
        let mut in_rtp = rtp(7).to_vec();
        in_rtp.truncate(12);
        in_rtp[1] = 33;
        for (pid, cc) in [(0x100, 0), (0x101, 6), (0x100, 0)] {
            in_rtp.extend_from_slice(&ts(pid, cc));
        }
        m.observe(&in_rtp);
        // a discontinuity restarts; adaptation-only keeps the counter
        let mut jump = ts(0x100, 9);
        jump[3] = 0x30 | 9;
        jump[4] = 1;
        jump[5] = 0x80;
        let mut adaptation_only = ts(0x100, 9);
        adaptation_only[3] = 0x20 | 9;
        adaptation_only[4] = 183;
        m.observe(&jump);
        m.observe(&adaptation_only);
        m.observe(&[0x47; 100]);
        assert_eq!(counts(&m), (1, 2, 1, 1));
    }
}
