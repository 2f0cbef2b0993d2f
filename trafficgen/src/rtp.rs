//! RTP (RFC 3550) accounting of one stream (one SSRC): received, lost, duplicated, reordered,
//! interarrival jitter, payload type and a per-second timeline. Pure logic, no I/O, tested on
//! literal packet bytes.
//!
//! The 16-bit sequence number is extended to 64 bits as RFC 3550 appendix A.1 does: a packet
//! less than [`MAX_DROPOUT`] ahead of the highest sequence moves it forward (counting a wrap
//! past 65535 as a new cycle); one at most [`MAX_MISORDER`] behind is a duplicate or a reordered
//! packet; anything else is a jump, which restarts the stream only when the next packet follows
//! it in sequence (a sender that restarted) and is otherwise dropped as a stray (`late`).
//! Extended numbers start at 65536 + the first sequence number, so a packet reordered before the
//! first one stays positive.
//!
//! Within a sequence space the counts are exact, as for probes: `expected` = highest - lowest +
//! 1 (summed over restarts), `received` = distinct sequence numbers, `lost` = the difference,
//! duplicates and strays not received.
//!
//! The jitter is RFC 3550 6.4.1 (code in A.8): for packets i-1, i in order of arrival,
//! D = (R_i - R_{i-1}) - (S_i - S_{i-1}) with R the arrival time (kernel receive timestamp) in
//! RTP timestamp units and S the RTP timestamp, and J += (|D| - J) / 16, over every packet that
//! arrives (duplicates and reordered ones included). It is kept in floating point from
//! nanosecond arrival times rather than A.8's integer arithmetic, so it does not round arrival
//! times to the clock's tick. Arrival times need the timestamp clock rate: the static payload
//! types of RFC 3551 have one; a dynamic type (96-127) has none unless `--rtp-clock-rate` gives
//! it, and its jitter is then unavailable (null), never 0.

use thiserror::Error;

use crate::accounting::{Arrival, SequenceWindow, Timeline};
use crate::record::{RtpRecord, StreamCounters, StreamFormat, StreamRecord};

/// A jump ahead of at least this many sequence numbers is not loss but a possible restart
/// (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// A packet at most this many sequence numbers behind the highest is a duplicate or reordered;
/// further behind it is treated like a jump (RFC 3550 A.1).
pub const MAX_MISORDER: u16 = 100;
/// Fixed header length.
pub const HEADER_LEN: usize = 12;
/// Payload type of MPEG-TS in RTP (RFC 3551).
pub const PT_MPEG_TS: u8 = 33;
/// Extended sequence number of the first packet's cycle.
const FIRST_CYCLE: u64 = 1 << 16;
/// Sequence numbers remembered to tell duplicates from reordered packets: more than the range
/// A.1 accepts (MAX_DROPOUT ahead, MAX_MISORDER behind).
const WINDOW_PACKETS: u64 = 4096;

/// Why a datagram is not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("shorter than the 12-byte RTP header ({len} bytes)")]
    Truncated { len: usize },
    #[error("RTP version {version}, not 2")]
    Version { version: u8 },
    #[error("payload type {payload_type} is RTCP's range (72-76, RFC 5761)")]
    Rtcp { payload_type: u8 },
    #[error("CSRC list or header extension runs past the datagram's end")]
    HeaderPastEnd,
    #[error("padding count {count} does not fit the payload")]
    Padding { count: u8 },
}

/// A parsed RTP packet: the header fields accounting needs and the payload (without CSRCs,
/// header extension or padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses and validates the RTP header of `datagram` (the whole UDP payload).
    pub fn parse(datagram: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if datagram.len() < HEADER_LEN {
            return Err(RtpError::Truncated {
                len: datagram.len(),
            });
        }
        let version = datagram[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version { version });
        }
        let payload_type = datagram[1] & 0x7f;
        if (72..=76).contains(&payload_type) {
            return Err(RtpError::Rtcp { payload_type });
        }
        let padding = datagram[0] & 0x20 != 0;
        let extension = datagram[0] & 0x10 != 0;
        let csrc_count = usize::from(datagram[0] & 0x0f);
        let mut start = HEADER_LEN + 4 * csrc_count;
        if extension {
            let words = datagram
                .get(start + 2..start + 4)
                .ok_or(RtpError::HeaderPastEnd)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        if start > datagram.len() {
            return Err(RtpError::HeaderPastEnd);
        }
        let mut end = datagram.len();
        if padding {
            let count = datagram[end - 1];
            if count == 0 || usize::from(count) > end - start {
                return Err(RtpError::Padding { count });
            }
            end -= usize::from(count);
        }
        Ok(RtpPacket {
            marker: datagram[1] & 0x80 != 0,
            payload_type,
            sequence: u16::from_be_bytes([datagram[2], datagram[3]]),
            timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
            ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
            payload: &datagram[start..end],
        })
    }
}

/// Timestamp clock rate of a static payload type (RFC 3551 tables 4 and 5), Hz.
pub fn static_clock_rate(payload_type: u8) -> Option<u32> {
    Some(match payload_type {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => 8_000,
        6 => 16_000,
        10 | 11 => 44_100,
        16 => 11_025,
        17 => 22_050,
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90_000,
        _ => return None,
    })
}

/// What the sequence extension made of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequenced {
    /// Its extended sequence number.
    Extended(u64),
    /// A jump not (yet) confirmed: dropped, like RFC 3550 A.1 does.
    Stray,
    /// The packet before was a jump and this one follows it: the stream restarts with the two
    /// (extended numbers of the held packet and of this one, in the new sequence space).
    Restart { held: u64, this: u64 },
}

/// RFC 3550 A.1's sequence extension: the highest sequence seen, its cycle count, and the
/// sequence number that would confirm a jump.
#[derive(Debug, Clone)]
pub struct SequenceExtender {
    max_seq: u16,
    cycles: u64,
    bad_seq: Option<u16>,
}

impl SequenceExtender {
    /// Starts at `first`, whose extended number is `FIRST_CYCLE + first`.
    pub fn new(first: u16) -> SequenceExtender {
        SequenceExtender {
            max_seq: first,
            cycles: FIRST_CYCLE,
            bad_seq: None,
        }
    }

    pub fn extend(&mut self, seq: u16) -> Sequenced {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
            Sequenced::Extended(self.cycles + u64::from(seq))
        } else if u32::from(udelta) <= (1 << 16) - u32::from(MAX_MISORDER) {
            if self.bad_seq == Some(seq) {
                let held = seq.wrapping_sub(1);
                *self = SequenceExtender::new(held);
                let this = match self.extend(seq) {
                    Sequenced::Extended(e) => e,
                    _ => unreachable!("the successor of the first sequence is in order"),
                };
                Sequenced::Restart {
                    held: FIRST_CYCLE + u64::from(held),
                    this,
                }
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                Sequenced::Stray
            }
        } else {
            // Duplicate or reordered: in this cycle, or (numerically above the highest) in the
            // one before the wrap.
            let cycle = if seq > self.max_seq {
                self.cycles - (1 << 16)
            } else {
                self.cycles
            };
            Sequenced::Extended(cycle + u64::from(seq))
        }
    }
}

/// Interarrival jitter (RFC 3550 6.4.1), with its maximum and mean over the stream.
#[derive(Debug, Clone)]
pub struct Jitter {
    clock_rate_hz: u32,
    previous: Option<(u64, u32)>,
    /// J, in timestamp units.
    j: f64,
    max: f64,
    sum: f64,
    samples: u64,
}

impl Jitter {
    pub fn new(clock_rate_hz: u32) -> Jitter {
        Jitter {
            clock_rate_hz,
            previous: None,
            j: 0.0,
            max: 0.0,
            sum: 0.0,
            samples: 0,
        }
    }

    /// A packet with RTP timestamp `timestamp` arrived at `rx_ns`.
    pub fn on_packet(&mut self, rx_ns: u64, timestamp: u32) {
        if let Some((prev_rx, prev_ts)) = self.previous {
            let arrival =
                (rx_ns as i128 - prev_rx as i128) as f64 * f64::from(self.clock_rate_hz) / 1e9;
            let sent = f64::from(timestamp.wrapping_sub(prev_ts) as i32);
            let d = arrival - sent;
            self.j += (d.abs() - self.j) / 16.0;
            self.max = self.max.max(self.j);
            self.sum += self.j;
            self.samples += 1;
        }
        self.previous = Some((rx_ns, timestamp));
    }

    /// J in timestamp units.
    pub fn timestamp_units(&self) -> f64 {
        self.j
    }

    fn to_ns(&self, units: f64) -> f64 {
        units * 1e9 / f64::from(self.clock_rate_hz)
    }
}

/// One RTP stream's account.
#[derive(Debug)]
pub struct RtpAccount {
    ssrc: u32,
    sequence: Option<SequenceExtender>,
    window: SequenceWindow,
    /// Received, duplicated, reordered and late over the whole stream; `expected`/`lost` are
    /// filled in by [`RtpAccount::counters`].
    counters: StreamCounters,
    /// `expected` of the sequence spaces before the last restart.
    expected_before_restart: u64,
    lowest: Option<u64>,
    highest: Option<u64>,
    /// Payload bytes and arrival second of the last stray, counted if a restart confirms it.
    held: Option<(u64, u64, u64)>,
    first_rx_ns: Option<u64>,
    last_rx_ns: Option<u64>,
    payload_type: u8,
    payload_type_changes: u64,
    marker_packets: u64,
    sequence_restarts: u64,
    clock: Option<(u32, &'static str)>,
    jitter: Option<Jitter>,
    timeline: Timeline,
}

impl RtpAccount {
    /// A stream of `ssrc`; `dynamic_clock_rate_hz` is the clock rate of payload types without a
    /// static one (`--rtp-clock-rate`).
    pub fn new(
        ssrc: u32,
        first_payload_type: u8,
        dynamic_clock_rate_hz: Option<u32>,
    ) -> RtpAccount {
        let clock = static_clock_rate(first_payload_type)
            .map(|hz| (hz, "payload_type"))
            .or(dynamic_clock_rate_hz.map(|hz| (hz, "flag")));
        RtpAccount {
            ssrc,
            sequence: None,
            window: SequenceWindow::new(WINDOW_PACKETS),
            counters: StreamCounters::default(),
            expected_before_restart: 0,
            lowest: None,
            highest: None,
            held: None,
            first_rx_ns: None,
            last_rx_ns: None,
            payload_type: first_payload_type,
            payload_type_changes: 0,
            marker_packets: 0,
            sequence_restarts: 0,
            clock,
            jitter: clock.map(|(hz, _)| Jitter::new(hz)),
            timeline: Timeline::default(),
        }
    }

    /// Accounts `packet` (of this SSRC) received at `rx_ns`, `second` seconds after the
    /// receiver started, `udp_len` bytes. Returns whether it was the first arrival of its
    /// sequence number (so its payload is new).
    pub fn on_packet(&mut self, packet: &RtpPacket, udp_len: u64, rx_ns: u64, second: u64) -> bool {
        if packet.payload_type != self.payload_type {
            self.payload_type_changes += 1;
            self.payload_type = packet.payload_type;
        }
        if packet.marker {
            self.marker_packets += 1;
        }
        if let Some(jitter) = &mut self.jitter {
            jitter.on_packet(rx_ns, packet.timestamp);
        }
        let sequenced = match &mut self.sequence {
            None => {
                self.sequence = Some(SequenceExtender::new(packet.sequence));
                Sequenced::Extended(FIRST_CYCLE + u64::from(packet.sequence))
            }
            Some(extender) => extender.extend(packet.sequence),
        };
        match sequenced {
            Sequenced::Extended(ext) => self.observe(ext, udp_len, rx_ns, second),
            Sequenced::Stray => {
                self.counters.late += 1;
                self.held = Some((udp_len, rx_ns, second));
                false
            }
            Sequenced::Restart { held, this } => {
                self.sequence_restarts += 1;
                self.expected_before_restart += self.span();
                self.window = SequenceWindow::new(WINDOW_PACKETS);
                self.lowest = None;
                self.highest = None;
                if let Some((len, held_rx, held_second)) = self.held.take() {
                    self.counters.late -= 1;
                    self.observe(held, len, held_rx, held_second);
                }
                self.observe(this, udp_len, rx_ns, second)
            }
        }
    }

    fn observe(&mut self, ext: u64, udp_len: u64, rx_ns: u64, second: u64) -> bool {
        match self.window.observe(ext) {
            Arrival::Late => {
                self.counters.late += 1;
                false
            }
            Arrival::Duplicate => {
                self.counters.duplicated += 1;
                self.timeline.at(second).duplicated += 1;
                false
            }
            Arrival::New => {
                let reordered = self.highest.is_some_and(|h| ext < h);
                self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
                self.lowest = Some(self.lowest.map_or(ext, |l| l.min(ext)));
                self.counters.received += 1;
                self.counters.payload_bytes += udp_len;
                self.first_rx_ns.get_or_insert(rx_ns);
                self.last_rx_ns = Some(rx_ns);
                let entry = self.timeline.at(second);
                entry.received += 1;
                entry.payload_bytes += udp_len;
                if reordered {
                    self.counters.reordered += 1;
                    entry.reordered += 1;
                }
                true
            }
        }
    }

    /// Sequence numbers spanned since the last restart.
    fn span(&self) -> u64 {
        match (self.lowest, self.highest) {
            (Some(l), Some(h)) => h - l + 1,
            _ => 0,
        }
    }

    /// Counters with `expected` and `lost` filled in.
    pub fn counters(&self) -> StreamCounters {
        let expected = self.expected_before_restart + self.span();
        StreamCounters {
            expected,
            lost: expected - self.counters.received,
            ..self.counters.clone()
        }
    }

    /// The stream's record; `mpegts` is added by the caller when the payload was MPEG-TS.
    pub fn record(&self) -> StreamRecord {
        let counters = self.counters();
        let receive_pps = match (self.first_rx_ns, self.last_rx_ns) {
            (Some(first), Some(last)) if last > first && counters.received > 1 => {
                Some((counters.received - 1) as f64 * 1e9 / (last - first) as f64)
            }
            _ => None,
        };
        let jitter = self.jitter.as_ref();
        StreamRecord {
            stream_id: self.ssrc,
            counters,
            end_marker_seen: false,
            lowest_sequence: self.lowest,
            highest_sequence: self.highest,
            first_rx_unix_ns: self.first_rx_ns,
            last_rx_unix_ns: self.last_rx_ns,
            receive_pps,
            latency_ns: Default::default(),
            negative_latency_packets: 0,
            timeline: self.timeline.seconds().to_vec(),
            format: StreamFormat::Rtp,
            rtp: Some(RtpRecord {
                ssrc: self.ssrc,
                payload_type: self.payload_type,
                payload_type_changes: self.payload_type_changes,
                marker_packets: self.marker_packets,
                sequence_restarts: self.sequence_restarts,
                clock_rate_hz: self.clock.map(|(hz, _)| hz),
                clock_rate_source: self.clock.map(|(_, source)| source.to_string()),
                jitter_timestamp_units: jitter.map(Jitter::timestamp_units),
                jitter_ns: jitter.map(|j| j.to_ns(j.j)),
                jitter_max_ns: jitter.map(|j| j.to_ns(j.max)),
                jitter_mean_ns: jitter.map(|j| {
                    j.to_ns(if j.samples == 0 {
                        0.0
                    } else {
                        j.sum / j.samples as f64
                    })
                }),
            }),
            mpegts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PCMU (PT 0), sequence 0xfffe, timestamp 160, SSRC 0x12345678, marker set, 4 payload
    /// bytes: written out byte by byte from RFC 3550 5.1.
    const LITERAL: [u8; 16] = [
        0x80, // V=2, P=0, X=0, CC=0
        0x80, // M=1, PT=0
        0xff, 0xfe, // sequence 65534
        0x00, 0x00, 0x00, 0xa0, // timestamp 160
        0x12, 0x34, 0x56, 0x78, // SSRC
        0xde, 0xad, 0xbe, 0xef, // payload
    ];

    /// A packet of SSRC 0x0a0b0c0d, PT 0, with `seq` and `ts`.
    fn packet_bytes(seq: u16, ts: u32) -> [u8; 14] {
        let mut b = [0u8; 14];
        b[0] = 0x80;
        b[2..4].copy_from_slice(&seq.to_be_bytes());
        b[4..8].copy_from_slice(&ts.to_be_bytes());
        b[8..12].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
        b
    }

    #[test]
    fn parses_literal_bytes() {
        let p = RtpPacket::parse(&LITERAL).unwrap();
        assert_eq!(
            p,
            RtpPacket {
                marker: true,
                payload_type: 0,
                sequence: 65534,
                timestamp: 160,
                ssrc: 0x1234_5678,
                payload: &[0xde, 0xad, 0xbe, 0xef],
            }
        );
    }

    #[test]
    fn csrcs_extension_and_padding_are_not_payload() {
        let bytes = [
            0xb1, // V=2, P=1, X=1, CC=1
            33,   // PT 33
            0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 9, // seq 7, ts 1, SSRC 9
            0xaa, 0xbb, 0xcc, 0xdd, // one CSRC
            0xbe, 0xde, 0x00, 0x01, // extension profile, 1 word
            0x11, 0x22, 0x33, 0x44, // extension word
            0x47, 0x01, // payload
            0x00, 0x00, 0x03, // padding: 3 bytes, count last
        ];
        let p = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(p.payload, &[0x47, 0x01]);
        assert_eq!((p.payload_type, p.sequence, p.ssrc), (33, 7, 9));
    }

    #[test]
    fn rejects_what_is_not_rtp() {
        assert_eq!(
            RtpPacket::parse(&LITERAL[..11]),
            Err(RtpError::Truncated { len: 11 })
        );
        let mut v1 = LITERAL;
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::Version { version: 1 }));
        // An RTCP receiver report (PT 201 = marker + 73).
        let mut rtcp = LITERAL;
        rtcp[1] = 201;
        assert_eq!(
            RtpPacket::parse(&rtcp),
            Err(RtpError::Rtcp { payload_type: 73 })
        );
        let mut csrcs = LITERAL;
        csrcs[0] = 0x82; // two CSRCs: 8 bytes, only 4 there
        assert_eq!(RtpPacket::parse(&csrcs), Err(RtpError::HeaderPastEnd));
        let mut padding = LITERAL;
        padding[0] = 0xa0;
        padding[15] = 5; // 5 bytes of padding in a 4-byte payload
        assert_eq!(
            RtpPacket::parse(&padding),
            Err(RtpError::Padding { count: 5 })
        );
        // The probe magic and an MPEG-TS sync byte are version 1.
        assert!(RtpPacket::parse(b"MCRP\x01\x00\x00\x00\x00\x00\x00\x07").is_err());
        assert!(RtpPacket::parse(&[0x47; 188]).is_err());
    }

    #[test]
    fn never_panics_on_any_prefix_of_random_bytes() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = [0u8; 80];
        for round in 0..2000 {
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            if round % 2 == 0 {
                buf[0] = 0x80 | (buf[0] & 0x3f);
            }
            for len in 0..buf.len() {
                let _ = RtpPacket::parse(&buf[..len]);
            }
        }
    }

    #[test]
    fn sequence_extension_wraps_and_tells_reordering_from_jumps() {
        let mut s = SequenceExtender::new(65534);
        let base = FIRST_CYCLE;
        assert_eq!(s.extend(65535), Sequenced::Extended(base + 65535));
        assert_eq!(s.extend(1), Sequenced::Extended(base + 65536 + 1)); // wrapped, 0 lost
        assert_eq!(s.extend(0), Sequenced::Extended(base + 65536)); // reordered after the wrap
        assert_eq!(s.extend(65533), Sequenced::Extended(base + 65533)); // behind, before it
        assert_eq!(s.extend(2999), Sequenced::Extended(base + 65536 + 2999)); // gap < 3000
                                                                              // 3000 ahead is a jump: dropped unless the next one follows it
        assert_eq!(s.extend(6000), Sequenced::Stray);
        assert_eq!(s.extend(3000), Sequenced::Extended(base + 65536 + 3000));
        assert_eq!(s.extend(9000), Sequenced::Stray);
        assert_eq!(
            s.extend(9001),
            Sequenced::Restart {
                held: base + 9000,
                this: base + 9001
            }
        );
        // more than 100 behind is a jump too
        assert_eq!(s.extend(8900), Sequenced::Stray);
        assert_eq!(s.extend(8950), Sequenced::Extended(base + 8950));
    }

    fn feed(account: &mut RtpAccount, seqs: &[u16]) {
        for (i, &seq) in seqs.iter().enumerate() {
            let bytes = packet_bytes(seq, u32::from(seq) * 160);
            let p = RtpPacket::parse(&bytes).unwrap();
            account.on_packet(&p, bytes.len() as u64, 1_000 + i as u64, 0);
        }
    }

    #[test]
    fn counts_loss_duplicates_and_reordering_across_the_wrap() {
        let mut a = RtpAccount::new(1, 0, None);
        // 65533..=65535, 0..=5 is 9 numbers; 65535 lost, 2 lost, 1 duplicated, 4 before 3
        feed(&mut a, &[65533, 65534, 0, 1, 1, 4, 3, 5]);
        let c = a.counters();
        assert_eq!((c.expected, c.received, c.lost), (9, 7, 2), "{c:?}");
        assert_eq!((c.duplicated, c.reordered, c.late), (1, 1, 0));
        assert_eq!(c.payload_bytes, 7 * 14);
    }

    #[test]
    fn a_restart_keeps_the_counts_before_it_and_a_stray_is_late() {
        let mut a = RtpAccount::new(1, 0, None);
        feed(&mut a, &[10, 11, 13, 40_000, 14, 30_000, 30_001, 30_002]);
        let c = a.counters();
        // before: 10..=14 (12 lost, 40000 a stray); after: 30000..=30002
        assert_eq!(
            (c.expected, c.received, c.lost, c.late),
            (8, 7, 1, 1),
            "{c:?}"
        );
        let r = a.record();
        assert_eq!(r.rtp.as_ref().unwrap().sequence_restarts, 1);
        assert_eq!(r.lowest_sequence, Some(FIRST_CYCLE + 30_000));
    }

    #[test]
    fn jitter_follows_rfc_3550_a8_and_is_null_without_a_clock_rate() {
        // 8 kHz; packets every 20 ms (160 ticks) arriving 0, 20, 45, 60 ms: D = 0, 5, 5 ms
        // = 0, 40, 40 ticks; J = 0 -> 40/16 = 2.5 -> 2.5 + (40 - 2.5)/16 = 4.84375.
        let mut a = RtpAccount::new(1, 0, None);
        for (i, rx_ms) in [0u64, 20, 45, 60].into_iter().enumerate() {
            let bytes = packet_bytes(i as u16, i as u32 * 160);
            let p = RtpPacket::parse(&bytes).unwrap();
            a.on_packet(&p, 14, rx_ms * 1_000_000, 0);
        }
        let r = a.record().rtp.unwrap();
        assert_eq!(r.clock_rate_hz, Some(8000));
        assert_eq!(r.clock_rate_source.as_deref(), Some("payload_type"));
        let j = r.jitter_timestamp_units.unwrap();
        assert!((j - 4.84375).abs() < 1e-9, "{j}");
        assert!((r.jitter_ns.unwrap() - 4.84375 * 125_000.0).abs() < 1e-3);
        assert!((r.jitter_max_ns.unwrap() - 4.84375 * 125_000.0).abs() < 1e-3);
        let mean = (0.0 + 2.5 + 4.84375) / 3.0 * 125_000.0;
        assert!((r.jitter_mean_ns.unwrap() - mean).abs() < 1e-3);

        let dynamic = RtpAccount::new(1, 96, None).record().rtp.unwrap();
        assert_eq!(dynamic.clock_rate_hz, None);
        assert_eq!(dynamic.jitter_ns, None);
        let given = RtpAccount::new(1, 96, Some(90_000)).record().rtp.unwrap();
        assert_eq!(given.clock_rate_hz, Some(90_000));
        assert_eq!(given.clock_rate_source.as_deref(), Some("flag"));
    }

    #[test]
    fn jitter_timestamp_differences_wrap() {
        let mut j = Jitter::new(90_000);
        j.on_packet(0, u32::MAX - 899);
        j.on_packet(10_000_000, 900 - 900); // 900 ticks later across the wrap, 10 ms later
        assert!(j.timestamp_units().abs() < 1e-9, "{}", j.timestamp_units());
    }
}
