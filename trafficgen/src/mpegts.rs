//! MPEG-TS (ISO/IEC 13818-1) continuity accounting: per PID, continuity-counter errors, the
//! lost packets their gaps show, duplicates, discontinuities and transport errors. Pure logic,
//! no I/O, tested on literal packet bytes.
//!
//! The rules of 13818-1 2.4.3.3 as applied here, per PID:
//! * the 4-bit `continuity_counter` advances by one (mod 16) with every packet that carries
//!   payload (`adaptation_field_control` 01 or 11); a packet without payload (10, adaptation
//!   field only) repeats the counter of the packet before; 00 is reserved and its packets are
//!   discarded, as a decoder does;
//! * one duplicate may follow a packet: same counter, and every byte the same except the PCR; a
//!   second copy is an error (but not a loss);
//! * `discontinuity_indicator` in the adaptation field lets the counter jump: that packet
//!   restarts the count;
//! * null packets (PID 0x1FFF) are not checked;
//! * a packet with `transport_error_indicator` set is counted and not checked further (its
//!   PID may itself be corrupt).
//!
//! A counter that should have been c but is c + k (mod 16) means k + 16n packets of that PID
//! were lost, for some n >= 0: the estimate takes n = 0, so it is a lower bound, exact while
//! fewer than 16 packets of one PID go missing in a row. A packet that arrives out of order
//! shows as an error too (a jump back of k counts as 16 - k lost), as it does to a decoder.

use crate::record::{MpegTsRecord, PidRecord};

/// Bytes in a TS packet.
pub const PACKET_LEN: usize = 188;
/// First byte of every TS packet.
pub const SYNC_BYTE: u8 = 0x47;
/// PID of null (stuffing) packets.
pub const NULL_PID: u16 = 0x1fff;
/// PIDs are 13 bits.
const PID_COUNT: usize = 1 << 13;
/// Marks a PID without state in the index.
const NO_SLOT: u16 = u16::MAX;

/// Whether `payload` is whole TS packets, each starting with the sync byte.
pub fn is_transport_stream(payload: &[u8]) -> bool {
    !payload.is_empty()
        && payload.len().is_multiple_of(PACKET_LEN)
        && payload.chunks_exact(PACKET_LEN).all(|p| p[0] == SYNC_BYTE)
}

/// The header fields of one TS packet that continuity accounting reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsHeader {
    pub transport_error: bool,
    pub pid: u16,
    /// `adaptation_field_control`: 1 payload only, 2 adaptation field only, 3 both, 0 reserved.
    pub adaptation_field_control: u8,
    pub continuity_counter: u8,
    /// `discontinuity_indicator` of the adaptation field (false without one).
    pub discontinuity: bool,
    /// Whether the adaptation field carries a PCR (bytes 6..12 of the packet).
    pub has_pcr: bool,
}

impl TsHeader {
    /// Reads the header of `packet` (188 bytes starting with the sync byte).
    pub fn parse(packet: &[u8; PACKET_LEN]) -> TsHeader {
        let afc = (packet[3] >> 4) & 0x3;
        // An adaptation field of length 0 is a single stuffing byte and has no flags.
        let flags = if afc & 0x2 != 0 && packet[4] > 0 {
            packet[5]
        } else {
            0
        };
        TsHeader {
            transport_error: packet[1] & 0x80 != 0,
            pid: u16::from_be_bytes([packet[1] & 0x1f, packet[2]]),
            adaptation_field_control: afc,
            continuity_counter: packet[3] & 0x0f,
            discontinuity: flags & 0x80 != 0,
            has_pcr: flags & 0x10 != 0 && packet[4] >= 7,
        }
    }

    pub fn has_payload(&self) -> bool {
        self.adaptation_field_control & 0x1 != 0
    }
}

/// Whether `b` repeats `a` as a duplicate may: every byte equal except the PCR (bytes 6..12)
/// when both carry one.
fn is_duplicate_of(a: &[u8; PACKET_LEN], b: &[u8; PACKET_LEN]) -> bool {
    let (ha, hb) = (TsHeader::parse(a), TsHeader::parse(b));
    if ha.has_pcr && hb.has_pcr {
        a[..6] == b[..6] && a[12..] == b[12..]
    } else {
        a == b
    }
}

/// How a packet's counter relates to the last one of its PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuity {
    Continues,
    /// The one allowed repeat of the packet before.
    Duplicate,
    /// Not the counter expected; `lost` packets (+ 16n) are missing before it.
    Broken {
        lost: u64,
    },
}

/// The verdict on counter `cc` after `last` (ISO/IEC 13818-1 2.4.3.3).
fn continuity(
    last: u8,
    cc: u8,
    header: &TsHeader,
    (last_packet, duplicate_seen): (&[u8; PACKET_LEN], bool),
    packet: &[u8; PACKET_LEN],
) -> Continuity {
    let gap = |expected: u8| match cc.wrapping_sub(expected) & 0x0f {
        0 => Continuity::Continues,
        k => Continuity::Broken { lost: u64::from(k) },
    };
    if !header.has_payload() {
        // Without payload the counter stays where the last payload packet left it.
        return gap(last);
    }
    if cc != last {
        return gap((last + 1) & 0x0f);
    }
    let same = is_duplicate_of(last_packet, packet);
    if same && !duplicate_seen {
        Continuity::Duplicate
    } else {
        // A third copy is an error but no loss; other bytes under the same counter mean 15
        // (+ 16n) packets went missing.
        Continuity::Broken {
            lost: if same { 0 } else { 15 },
        }
    }
}

/// Continuity state and counts of one PID.
#[derive(Debug, Clone)]
struct PidState {
    last_cc: Option<u8>,
    last_packet: [u8; PACKET_LEN],
    /// Whether the last packet was already a duplicate (only one is allowed).
    duplicate_seen: bool,
    counts: PidRecord,
}

/// What one datagram's TS packets added, for the datagram-level counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramOutcome {
    pub ts_packets: u64,
    /// Every packet of the datagram was a duplicate: the datagram was sent twice.
    pub all_duplicates: bool,
}

/// Continuity accounting of one transport stream (all its PIDs).
#[derive(Debug)]
pub struct TsAccount {
    index: Box<[u16; PID_COUNT]>,
    pids: Vec<PidState>,
    totals: MpegTsRecord,
}

impl Default for TsAccount {
    fn default() -> TsAccount {
        TsAccount {
            index: Box::new([NO_SLOT; PID_COUNT]),
            pids: Vec::new(),
            totals: MpegTsRecord::default(),
        }
    }
}

impl TsAccount {
    /// Accounts one datagram's payload; a payload that is not whole TS packets counts as a
    /// sync error and nothing else.
    pub fn on_datagram(&mut self, payload: &[u8]) -> DatagramOutcome {
        if !is_transport_stream(payload) {
            self.totals.sync_errors += 1;
            return DatagramOutcome::default();
        }
        self.totals.datagrams += 1;
        let mut outcome = DatagramOutcome {
            ts_packets: 0,
            all_duplicates: true,
        };
        for chunk in payload.chunks_exact(PACKET_LEN) {
            let packet: &[u8; PACKET_LEN] = chunk.try_into().expect("chunks are 188 bytes");
            outcome.ts_packets += 1;
            if !self.on_packet(packet) {
                outcome.all_duplicates = false;
            }
        }
        outcome
    }

    /// Accounts one TS packet; returns whether it was a duplicate.
    pub fn on_packet(&mut self, packet: &[u8; PACKET_LEN]) -> bool {
        let header = TsHeader::parse(packet);
        let t = &mut self.totals;
        t.ts_packets += 1;
        if header.transport_error {
            t.transport_errors += 1;
            return false;
        }
        if header.pid == NULL_PID {
            t.null_packets += 1;
            return false;
        }
        let slot = match self.index[usize::from(header.pid)] {
            NO_SLOT => {
                self.index[usize::from(header.pid)] = self.pids.len() as u16;
                self.pids.push(PidState {
                    last_cc: None,
                    last_packet: [0; PACKET_LEN],
                    duplicate_seen: false,
                    counts: PidRecord {
                        pid: header.pid,
                        ..PidRecord::default()
                    },
                });
                self.pids.len() - 1
            }
            slot => usize::from(slot),
        };
        let state = &mut self.pids[slot];
        let c = &mut state.counts;
        c.ts_packets += 1;
        if !header.has_payload() {
            c.no_payload_packets += 1;
            t.no_payload_packets += 1;
            if header.adaptation_field_control == 0 {
                return false; // reserved: discarded, as a decoder does
            }
        }
        let cc = header.continuity_counter;
        if header.discontinuity {
            c.discontinuities += 1;
            t.discontinuities += 1;
        }
        let verdict = match state.last_cc {
            _ if header.discontinuity => Continuity::Continues,
            None => Continuity::Continues,
            Some(last) => continuity(
                last,
                cc,
                &header,
                (&state.last_packet, state.duplicate_seen),
                packet,
            ),
        };
        let duplicate = verdict == Continuity::Duplicate;
        let (error, lost) = match verdict {
            Continuity::Broken { lost } => (true, lost),
            _ => (false, 0),
        };
        if duplicate {
            state.duplicate_seen = true;
            c.duplicate_ts_packets += 1;
            t.duplicate_ts_packets += 1;
            return true;
        }
        if error {
            c.continuity_errors += 1;
            c.lost_ts_packets_estimate += lost;
            t.continuity_errors += 1;
            t.lost_ts_packets_estimate += lost;
        }
        state.duplicate_seen = false;
        state.last_cc = Some(cc);
        state.last_packet = *packet;
        false
    }

    /// Lost TS packets estimated so far (n = 0 in k + 16n).
    pub fn lost_estimate(&self) -> u64 {
        self.totals.lost_ts_packets_estimate
    }

    /// The totals with the PIDs, ordered by PID.
    pub fn record(&self) -> MpegTsRecord {
        let mut pids: Vec<PidRecord> = self.pids.iter().map(|p| p.counts.clone()).collect();
        pids.sort_by_key(|p| p.pid);
        MpegTsRecord {
            pids,
            ..self.totals.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TS packet written out by hand: sync, PID 0x0100 with payload_unit_start, payload only
    /// (adaptation_field_control 01), continuity counter `cc`, payload bytes `fill`.
    fn payload_packet(pid: u16, cc: u8, fill: u8) -> [u8; PACKET_LEN] {
        let mut p = [fill; PACKET_LEN];
        p[0] = 0x47;
        p[1] = 0x40 | (pid >> 8) as u8; // TEI 0, PUSI 1, priority 0, PID high bits
        p[2] = pid as u8;
        p[3] = 0x10 | cc; // scrambling 00, AFC 01, CC
        p
    }

    /// Adaptation field only (AFC 10): length 183, flags `flags`, stuffing.
    fn adaptation_only(pid: u16, cc: u8, flags: u8) -> [u8; PACKET_LEN] {
        let mut p = [0xff; PACKET_LEN];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x20 | cc;
        p[4] = 183;
        p[5] = flags;
        p
    }

    /// Adaptation field with a PCR, then payload (AFC 11).
    fn pcr_packet(pid: u16, cc: u8, pcr_byte: u8) -> [u8; PACKET_LEN] {
        let mut p = [0x5a; PACKET_LEN];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x30 | cc;
        p[4] = 7; // adaptation_field_length: flags + 6 PCR bytes
        p[5] = 0x10; // PCR_flag
        p[6..12].fill(pcr_byte);
        p
    }

    fn account(packets: &[[u8; PACKET_LEN]]) -> MpegTsRecord {
        let mut a = TsAccount::default();
        for p in packets {
            a.on_packet(p);
        }
        a.record()
    }

    #[test]
    fn parses_a_literal_header() {
        // 47 41 00 35: PUSI, PID 0x100, AFC 11, CC 5; adaptation field length 7, flags 0x90
        // (discontinuity + PCR)
        let mut p = [0u8; PACKET_LEN];
        p[..6].copy_from_slice(&[0x47, 0x41, 0x00, 0x35, 0x07, 0x90]);
        assert_eq!(
            TsHeader::parse(&p),
            TsHeader {
                transport_error: false,
                pid: 0x100,
                adaptation_field_control: 3,
                continuity_counter: 5,
                discontinuity: true,
                has_pcr: true,
            }
        );
        p[1] = 0x9f; // TEI + PID 0x1fff
        p[2] = 0xff;
        let h = TsHeader::parse(&p);
        assert!(h.transport_error);
        assert_eq!(h.pid, NULL_PID);
    }

    #[test]
    fn recognises_whole_packets_only() {
        let p = payload_packet(0x100, 0, 0);
        let mut seven = Vec::new();
        for _ in 0..7 {
            seven.extend_from_slice(&p);
        }
        assert!(is_transport_stream(&seven));
        assert!(!is_transport_stream(&seven[..1315]));
        assert!(!is_transport_stream(&[]));
        seven[188] = 0x48;
        assert!(!is_transport_stream(&seven));
    }

    #[test]
    fn in_order_counters_wrap_without_errors() {
        let packets: Vec<_> = (0..40).map(|i| payload_packet(0x100, i % 16, i)).collect();
        let r = account(&packets);
        assert_eq!(r.continuity_errors, 0);
        assert_eq!(r.lost_ts_packets_estimate, 0);
        assert_eq!(r.pids.len(), 1);
        assert_eq!(r.pids[0].ts_packets, 40);
    }

    #[test]
    fn a_gap_of_k_counts_k_lost_per_pid() {
        // PID 0x100: 0 1 [2 3 4 lost] 5; PID 0x101: 14 15 [0 lost] 1
        let r = account(&[
            payload_packet(0x100, 0, 1),
            payload_packet(0x101, 14, 1),
            payload_packet(0x100, 1, 2),
            payload_packet(0x101, 15, 2),
            payload_packet(0x100, 5, 3),
            payload_packet(0x101, 1, 3),
        ]);
        assert_eq!((r.continuity_errors, r.lost_ts_packets_estimate), (2, 4));
        assert_eq!(r.pids[0].lost_ts_packets_estimate, 3);
        assert_eq!(r.pids[1].lost_ts_packets_estimate, 1);
    }

    #[test]
    fn sixteen_lost_look_like_none_and_fifteen_like_a_changed_repeat() {
        // 16 lost: the counter comes back to the expected value; CC cannot see it.
        let r = account(&[payload_packet(0x100, 3, 1), payload_packet(0x100, 4, 2)]);
        assert_eq!(r.lost_ts_packets_estimate, 0);
        // 15 lost: the same counter again, but other bytes: 15 lost, not a duplicate.
        let r = account(&[payload_packet(0x100, 3, 1), payload_packet(0x100, 3, 2)]);
        assert_eq!((r.continuity_errors, r.lost_ts_packets_estimate), (1, 15));
        assert_eq!(r.duplicate_ts_packets, 0);
    }

    #[test]
    fn one_duplicate_is_allowed_and_may_differ_in_the_pcr_only() {
        let r = account(&[
            pcr_packet(0x100, 7, 1),
            pcr_packet(0x100, 7, 2), // duplicate, another PCR
            payload_packet(0x100, 8, 0),
            payload_packet(0x100, 8, 0), // duplicate
            payload_packet(0x100, 8, 0), // a third copy: error, no loss
            payload_packet(0x100, 9, 0),
        ]);
        assert_eq!(r.duplicate_ts_packets, 2);
        assert_eq!((r.continuity_errors, r.lost_ts_packets_estimate), (1, 0));
    }

    #[test]
    fn adaptation_only_packets_do_not_advance_the_counter() {
        let r = account(&[
            payload_packet(0x100, 4, 0),
            adaptation_only(0x100, 4, 0x10), // PCR only: still 4
            payload_packet(0x100, 5, 0),
            adaptation_only(0x100, 7, 0), // two payload packets (6, 7) were lost before it
            payload_packet(0x100, 8, 0),
        ]);
        assert_eq!(r.no_payload_packets, 2);
        assert_eq!((r.continuity_errors, r.lost_ts_packets_estimate), (1, 2));
    }

    #[test]
    fn discontinuity_indicator_restarts_and_null_packets_are_not_checked() {
        let mut discontinuity = pcr_packet(0x100, 12, 0);
        discontinuity[5] |= 0x80;
        let r = account(&[
            payload_packet(0x100, 1, 0),
            discontinuity,
            payload_packet(0x100, 13, 0),
            payload_packet(NULL_PID, 9, 0),
            payload_packet(NULL_PID, 2, 0),
        ]);
        assert_eq!(r.discontinuities, 1);
        assert_eq!(r.continuity_errors, 0);
        assert_eq!(r.null_packets, 2);
        assert_eq!(r.pids.len(), 1);
    }

    #[test]
    fn transport_errors_are_counted_and_not_checked() {
        let mut errored = payload_packet(0x100, 9, 0);
        errored[1] |= 0x80;
        let r = account(&[
            payload_packet(0x100, 1, 0),
            errored,
            payload_packet(0x100, 2, 0),
        ]);
        assert_eq!((r.transport_errors, r.continuity_errors), (1, 0));
        assert_eq!(r.ts_packets, 3);
    }

    #[test]
    fn a_datagram_sent_twice_is_all_duplicates_and_a_bad_one_a_sync_error() {
        let mut datagram = Vec::new();
        // One packet per PID: a datagram sent twice is then three allowed duplicates (with two
        // packets of one PID, the second copy of the first would be a counter error).
        for (pid, cc) in [(0x100, 0), (0x101, 0), (0x102, 1)] {
            datagram.extend_from_slice(&payload_packet(pid, cc, cc));
        }
        let mut a = TsAccount::default();
        let first = a.on_datagram(&datagram);
        assert_eq!(
            first,
            DatagramOutcome {
                ts_packets: 3,
                all_duplicates: false
            }
        );
        assert!(a.on_datagram(&datagram).all_duplicates);
        assert_eq!(a.on_datagram(&datagram[..100]).ts_packets, 0);
        let r = a.record();
        assert_eq!((r.datagrams, r.sync_errors, r.ts_packets), (2, 1, 6));
        assert_eq!(r.duplicate_ts_packets, 3);
        assert_eq!(r.continuity_errors, 0);
    }
}
