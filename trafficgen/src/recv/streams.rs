//! Routes each datagram to the account of its stream, by format: probes to [`Accounting`],
//! RTP packets to one [`RtpAccount`] per SSRC (with a [`TsAccount`] when they carry
//! MPEG-TS), raw MPEG-TS to one [`TsAccount`] for the receiver.
//!
//! With `--format auto` the format is decided per datagram, in an order where no datagram can
//! match two: the probe magic (`MCRP`), then whole 188-byte TS packets starting with 0x47, then
//! an RTP version-2 header. The first byte of a probe (0x4D) and of a TS packet (0x47) both read
//! as RTP version 1, so neither is ever taken for RTP.

use std::collections::HashMap;

use crate::accounting::{Accounting, Timeline};
use crate::mpegts::{self, TsAccount};
use crate::probe::{Probe, ProbeError, MAGIC};
use crate::record::{RecvFormat, StreamCounters, StreamFormat, StreamRecord};
use crate::rtp::{RtpAccount, RtpPacket, PT_MPEG_TS};

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Accounted in a stream (or counted as untracked, beyond the stream limit).
    Accounted,
    /// Not of a format the receiver looks for.
    Foreign,
    /// Carries the probe magic but is not a valid probe.
    MalformedProbe(ProbeError),
}

/// An RTP stream, and the MPEG-TS inside it once a payload was MPEG-TS.
#[derive(Debug)]
struct RtpStream {
    account: RtpAccount,
    ts: Option<TsAccount>,
}

/// Raw MPEG-TS over UDP: one transport stream per receiver. Its datagram counters are derived
/// from the continuity counters (see [`RawTs::counters`]).
#[derive(Debug, Default)]
struct RawTs {
    ts: TsAccount,
    datagrams: u64,
    duplicate_datagrams: u64,
    payload_bytes: u64,
    first_rx_ns: Option<u64>,
    last_rx_ns: Option<u64>,
    timeline: Timeline,
}

impl RawTs {
    fn on_datagram(&mut self, payload: &[u8], rx_ns: u64, second: u64) {
        let outcome = self.ts.on_datagram(payload);
        self.datagrams += 1;
        if outcome.all_duplicates {
            self.duplicate_datagrams += 1;
            self.timeline.at(second).duplicated += 1;
            return;
        }
        self.payload_bytes += payload.len() as u64;
        self.first_rx_ns.get_or_insert(rx_ns);
        self.last_rx_ns = Some(rx_ns);
        let entry = self.timeline.at(second);
        entry.received += 1;
        entry.payload_bytes += payload.len() as u64;
    }

    /// Datagram counters: `received` = datagrams that were not wholly duplicates, `lost` = the
    /// lost TS packet estimate divided by the mean TS packets per datagram, rounded up.
    /// Reordering cannot be told from loss by continuity counters (it shows as counter errors),
    /// so `reordered` and `late` stay 0.
    fn counters(&self) -> StreamCounters {
        let received = self.datagrams - self.duplicate_datagrams;
        let ts_packets = self.ts.record().ts_packets;
        let per_datagram = if self.datagrams == 0 {
            1
        } else {
            ((ts_packets as f64 / self.datagrams as f64).round() as u64).max(1)
        };
        let lost = self.ts.lost_estimate().div_ceil(per_datagram);
        StreamCounters {
            expected: received + lost,
            received,
            lost,
            duplicated: self.duplicate_datagrams,
            payload_bytes: self.payload_bytes,
            ..StreamCounters::default()
        }
    }

    fn record(&self) -> StreamRecord {
        let counters = self.counters();
        StreamRecord {
            stream_id: 0,
            receive_pps: receive_pps(self.first_rx_ns, self.last_rx_ns, counters.received),
            counters,
            end_marker_seen: false,
            lowest_sequence: None,
            highest_sequence: None,
            first_rx_unix_ns: self.first_rx_ns,
            last_rx_unix_ns: self.last_rx_ns,
            latency_ns: Default::default(),
            negative_latency_packets: 0,
            timeline: self.timeline.seconds().to_vec(),
            format: StreamFormat::Mpegts,
            rtp: None,
            mpegts: Some(self.ts.record()),
        }
    }
}

fn receive_pps(first: Option<u64>, last: Option<u64>, received: u64) -> Option<f64> {
    match (first, last) {
        (Some(first), Some(last)) if last > first && received > 1 => {
            Some((received - 1) as f64 * 1e9 / (last - first) as f64)
        }
        _ => None,
    }
}

/// Every stream the receiver has seen, of every format.
#[derive(Debug)]
pub struct StreamTable {
    format: RecvFormat,
    dynamic_clock_rate_hz: Option<u32>,
    start_ns: u64,
    max_streams: u32,
    probes: Accounting,
    rtp: Vec<RtpStream>,
    rtp_index: HashMap<u32, usize>,
    raw_ts: Option<RawTs>,
    untracked: u64,
}

impl StreamTable {
    /// A table whose timelines start at `start_ns` (realtime, ns since the epoch).
    pub fn new(
        format: RecvFormat,
        dynamic_clock_rate_hz: Option<u32>,
        start_ns: u64,
        max_streams: u32,
        reorder_window: u64,
    ) -> StreamTable {
        StreamTable {
            format,
            dynamic_clock_rate_hz,
            start_ns,
            max_streams,
            probes: Accounting::new(start_ns, max_streams, reorder_window),
            rtp: Vec::new(),
            rtp_index: HashMap::new(),
            raw_ts: None,
            untracked: 0,
        }
    }

    fn stream_count(&self) -> usize {
        self.probes.stream_count() + self.rtp.len() + usize::from(self.raw_ts.is_some())
    }

    fn has_room(&self) -> bool {
        self.stream_count() < self.max_streams as usize
    }

    /// Accounts one datagram (the whole UDP payload) received at `rx_ns`.
    pub fn on_datagram(&mut self, payload: &[u8], rx_ns: u64) -> Routed {
        let wants = |f: RecvFormat| self.format == RecvFormat::Auto || self.format == f;
        if wants(RecvFormat::Probe) && payload.starts_with(&MAGIC) {
            return match Probe::parse(payload) {
                Ok(probe) => {
                    if !self.probes.has_stream(probe.stream_id) && !self.has_room() {
                        self.untracked += 1;
                    } else {
                        self.probes.on_probe(&probe, rx_ns);
                    }
                    Routed::Accounted
                }
                Err(e) => Routed::MalformedProbe(e),
            };
        }
        if self.format == RecvFormat::Probe {
            return Routed::Foreign;
        }
        let second = rx_ns.saturating_sub(self.start_ns) / 1_000_000_000;
        if wants(RecvFormat::Mpegts) && mpegts::is_transport_stream(payload) {
            if self.raw_ts.is_none() {
                if !self.has_room() {
                    self.untracked += 1;
                    return Routed::Accounted;
                }
                self.raw_ts = Some(RawTs::default());
            }
            if let Some(raw) = &mut self.raw_ts {
                raw.on_datagram(payload, rx_ns, second);
            }
            return Routed::Accounted;
        }
        let Ok(packet) = RtpPacket::parse(payload) else {
            return Routed::Foreign;
        };
        let carries_ts =
            packet.payload_type == PT_MPEG_TS || mpegts::is_transport_stream(packet.payload);
        if self.format == RecvFormat::Mpegts && !carries_ts {
            return Routed::Foreign;
        }
        let slot = match self.rtp_index.get(&packet.ssrc) {
            Some(&slot) => slot,
            None => {
                if !self.has_room() {
                    self.untracked += 1;
                    return Routed::Accounted;
                }
                self.rtp.push(RtpStream {
                    account: RtpAccount::new(
                        packet.ssrc,
                        packet.payload_type,
                        self.dynamic_clock_rate_hz,
                    ),
                    ts: None,
                });
                self.rtp_index.insert(packet.ssrc, self.rtp.len() - 1);
                self.rtp.len() - 1
            }
        };
        let stream = &mut self.rtp[slot];
        let new = stream
            .account
            .on_packet(&packet, payload.len() as u64, rx_ns, second);
        // Only first arrivals reach the TS check: a repeated datagram would otherwise break
        // the counters of every PID it carries.
        if new && carries_ts {
            stream
                .ts
                .get_or_insert_with(TsAccount::default)
                .on_datagram(packet.payload);
        }
        Routed::Accounted
    }

    /// Whether at least one probe stream was seen and every probe stream has sent its end
    /// marker. RTP and MPEG-TS streams have no end marker and do not hold the receiver.
    pub fn all_ended(&self) -> bool {
        self.probes.all_ended()
    }

    /// Datagrams of streams beyond the stream limit.
    pub fn untracked(&self) -> u64 {
        self.untracked + self.probes.untracked()
    }

    /// Per-stream records ordered by stream id (then format), and their totals.
    pub fn records(&self) -> (Vec<StreamRecord>, StreamCounters) {
        let (mut records, _) = self.probes.records();
        for stream in &self.rtp {
            let mut record = stream.account.record();
            record.mpegts = stream.ts.as_ref().map(TsAccount::record);
            records.push(record);
        }
        if let Some(raw) = &self.raw_ts {
            records.push(raw.record());
        }
        records.sort_by_key(|r| (r.stream_id, r.format));
        let mut totals = StreamCounters::default();
        for r in &records {
            let c = &r.counters;
            totals.expected += c.expected;
            totals.received += c.received;
            totals.lost += c.lost;
            totals.duplicated += c.duplicated;
            totals.reordered += c.reordered;
            totals.late += c.late;
            totals.payload_bytes += c.payload_bytes;
            totals.end_markers_received += c.end_markers_received;
        }
        (records, totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(stream_id: u32, sequence: u64) -> [u8; 32] {
        let mut b = [0u8; 32];
        Probe {
            stream_id,
            sequence,
            tx_timestamp_ns: 1,
            length: 32,
            end_marker: false,
        }
        .write(&mut b);
        b
    }

    fn rtp(ssrc: u32, seq: u16, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0x80, pt];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        b.extend_from_slice(&ssrc.to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    /// `n` TS packets of PID 0x100 with counters from `cc`.
    fn ts(cc: u8, n: u8) -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..n {
            let mut p = [0u8; 188];
            p[..4].copy_from_slice(&[0x47, 0x41, 0x00, 0x10 | ((cc + i) & 0x0f)]);
            p[4] = cc.wrapping_add(i); // payload differs, so no packet is a duplicate
            b.extend_from_slice(&p);
        }
        b
    }

    fn table(format: RecvFormat) -> StreamTable {
        StreamTable::new(format, None, 0, 8, 1024)
    }

    #[test]
    fn auto_tells_the_formats_apart() {
        let mut t = table(RecvFormat::Auto);
        assert_eq!(t.on_datagram(&probe(3, 0), 10), Routed::Accounted);
        assert_eq!(
            t.on_datagram(&rtp(77, 5, 0, &[1, 2]), 10),
            Routed::Accounted
        );
        assert_eq!(t.on_datagram(&ts(0, 7), 10), Routed::Accounted);
        assert_eq!(t.on_datagram(b"hello, not a probe", 10), Routed::Foreign);
        assert_eq!(
            t.on_datagram(b"MCRP\x01", 10),
            Routed::MalformedProbe(ProbeError::Truncated { len: 5 })
        );
        let (records, totals) = t.records();
        let formats: Vec<_> = records.iter().map(|r| (r.stream_id, r.format)).collect();
        assert_eq!(
            formats,
            vec![
                (0, StreamFormat::Mpegts),
                (3, StreamFormat::Probe),
                (77, StreamFormat::Rtp)
            ]
        );
        assert_eq!(totals.received, 3);
    }

    #[test]
    fn probe_format_sees_only_probes_as_before() {
        let mut t = table(RecvFormat::Probe);
        assert_eq!(t.on_datagram(&rtp(77, 5, 0, &[1]), 10), Routed::Foreign);
        assert_eq!(t.on_datagram(&ts(0, 7), 10), Routed::Foreign);
        assert_eq!(t.on_datagram(&probe(1, 0), 10), Routed::Accounted);
        let (records, _) = t.records();
        assert_eq!(records.len(), 1);
        assert!(records[0].rtp.is_none() && records[0].mpegts.is_none());
    }

    #[test]
    fn mpegts_in_rtp_is_checked_once_per_sequence_number() {
        let mut t = table(RecvFormat::Mpegts);
        assert_eq!(t.on_datagram(&rtp(9, 1, 0, &[1]), 10), Routed::Foreign); // not TS
        t.on_datagram(&rtp(9, 1, 33, &ts(0, 7)), 10);
        t.on_datagram(&rtp(9, 1, 33, &ts(0, 7)), 11); // a repeated datagram
        t.on_datagram(&rtp(9, 3, 33, &ts(14, 7)), 12); // seq 2 (cc 7..=13) lost
        let (records, totals) = t.records();
        assert_eq!((totals.received, totals.lost, totals.duplicated), (2, 1, 1));
        let m = records[0].mpegts.as_ref().unwrap();
        assert_eq!((m.ts_packets, m.continuity_errors), (14, 1));
        assert_eq!(m.lost_ts_packets_estimate, 7);
    }

    #[test]
    fn raw_mpegts_loss_is_estimated_in_datagrams() {
        let mut t = table(RecvFormat::Auto);
        t.on_datagram(&ts(0, 7), 10);
        t.on_datagram(&ts(7, 7), 11);
        // one datagram (cc 14..=4) lost
        t.on_datagram(&ts(5, 7), 12);
        let (records, totals) = t.records();
        assert_eq!((totals.expected, totals.received, totals.lost), (4, 3, 1));
        assert_eq!(
            records[0].mpegts.as_ref().unwrap().lost_ts_packets_estimate,
            7
        );
    }

    #[test]
    fn the_stream_limit_spans_formats() {
        let mut t = StreamTable::new(RecvFormat::Auto, None, 0, 2, 1024);
        t.on_datagram(&probe(1, 0), 10);
        t.on_datagram(&rtp(5, 0, 0, &[1]), 10);
        t.on_datagram(&rtp(6, 0, 0, &[1]), 10);
        t.on_datagram(&probe(2, 0), 10);
        t.on_datagram(&ts(0, 1), 10);
        assert_eq!(t.untracked(), 3);
        assert_eq!(t.records().0.len(), 2);
    }
}
