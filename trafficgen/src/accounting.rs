//! Per-stream accounting of received probes: received, lost, duplicated, reordered, late,
//! latency and a per-second timeline. Pure logic, no I/O, so it is tested on crafted sequences.
//!
//! Invariant, per stream and in the totals: `expected = received + lost`, where `expected` is
//! the count the end marker carries (or the highest sequence + 1 without one). Duplicates and
//! late arrivals never count as received.
//!
//! Duplicates are told from reordered packets with a sliding bitmap of the last
//! [`DEFAULT_REORDER_WINDOW`] sequence numbers (128 KiB per stream); an arrival older than the
//! window is `late`. Nothing on the per-packet path allocates except the timeline, which grows
//! by one entry per second.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::histogram::{distribution, new_histogram, record};
use crate::probe::Probe;
use crate::record::{StreamCounters, StreamFormat, StreamRecord, TimelineSecond};

/// Sequence numbers kept to tell a duplicate from a reordered packet.
pub const DEFAULT_REORDER_WINDOW: u64 = 1 << 20;
/// Streams accounted separately; datagrams of further streams are only counted.
pub const DEFAULT_MAX_STREAMS: u32 = 1024;
/// The timeline stops growing after a day; later seconds are added to the last entry.
const MAX_TIMELINE_SECONDS: u64 = 86_400;

/// What a sequence number's arrival was, relative to those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival of this sequence number.
    New,
    /// Seen before (within the window).
    Duplicate,
    /// Older than the window: cannot tell duplicate from first arrival.
    Late,
}

/// A bitmap of the sequence numbers in `[base, base + window)`, sliding forward as higher
/// numbers arrive. `base` is a multiple of 64 so the bitmap moves whole words.
#[derive(Debug, Clone)]
pub struct SequenceWindow {
    words: Vec<u64>,
    base: u64,
}

impl SequenceWindow {
    /// A window of at least `packets` sequence numbers (rounded up to a multiple of 64).
    pub fn new(packets: u64) -> SequenceWindow {
        let words = packets.div_ceil(64).max(1) as usize;
        SequenceWindow {
            words: vec![0; words],
            base: 0,
        }
    }

    fn span(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    /// Marks `sequence` as seen and says whether it was new.
    pub fn observe(&mut self, sequence: u64) -> Arrival {
        if sequence < self.base {
            return Arrival::Late;
        }
        let span = self.span();
        if sequence - self.base >= span {
            let new_base = (sequence + 1 - span).next_multiple_of(64);
            let moved_words = (new_base - self.base) / 64;
            if moved_words >= self.words.len() as u64 {
                self.words.fill(0);
            } else {
                let first = self.base / 64;
                for w in first..first + moved_words {
                    let slot = (w % self.words.len() as u64) as usize;
                    self.words[slot] = 0;
                }
            }
            self.base = new_base;
        }
        let slot = ((sequence / 64) % self.words.len() as u64) as usize;
        let bit = 1u64 << (sequence % 64);
        if self.words[slot] & bit != 0 {
            Arrival::Duplicate
        } else {
            self.words[slot] |= bit;
            Arrival::New
        }
    }
}

/// A stream's per-second timeline, second 0 starting at the receiver's start. It grows by one
/// entry per second (the only allocation on the per-packet path) and stops growing after a day.
#[derive(Debug, Clone, Default)]
pub struct Timeline(Vec<TimelineSecond>);

impl Timeline {
    /// The entry of `second` (seconds since the receiver started), created if needed.
    pub fn at(&mut self, second: u64) -> &mut TimelineSecond {
        let second = second.min(MAX_TIMELINE_SECONDS);
        while self.0.len() as u64 <= second {
            let next = self.0.len() as u64;
            self.0.push(TimelineSecond {
                second: next,
                ..TimelineSecond::default()
            });
        }
        &mut self.0[second as usize]
    }

    pub fn seconds(&self) -> &[TimelineSecond] {
        &self.0
    }
}

/// Everything known about one stream.
#[derive(Debug)]
pub struct StreamAccount {
    stream_id: u32,
    window: SequenceWindow,
    counters: StreamCounters,
    lowest: Option<u64>,
    highest: Option<u64>,
    end_count: Option<u64>,
    first_rx_ns: Option<u64>,
    last_rx_ns: Option<u64>,
    latency: Histogram<u64>,
    negative_latency: u64,
    timeline: Timeline,
}

impl StreamAccount {
    fn new(stream_id: u32, window_packets: u64) -> StreamAccount {
        StreamAccount {
            stream_id,
            window: SequenceWindow::new(window_packets),
            counters: StreamCounters::default(),
            lowest: None,
            highest: None,
            end_count: None,
            first_rx_ns: None,
            last_rx_ns: None,
            latency: new_histogram(),
            negative_latency: 0,
            timeline: Timeline::default(),
        }
    }

    fn on_data(&mut self, probe: &Probe, rx_ns: u64, second: u64) {
        let sequence = probe.sequence;
        match self.window.observe(sequence) {
            Arrival::Late => self.counters.late += 1,
            Arrival::Duplicate => {
                self.counters.duplicated += 1;
                self.timeline.at(second).duplicated += 1;
            }
            Arrival::New => {
                let reordered = self.highest.is_some_and(|h| sequence < h);
                self.counters.received += 1;
                self.counters.payload_bytes += u64::from(probe.length);
                self.highest = Some(self.highest.map_or(sequence, |h| h.max(sequence)));
                self.lowest = Some(self.lowest.map_or(sequence, |l| l.min(sequence)));
                self.first_rx_ns.get_or_insert(rx_ns);
                self.last_rx_ns = Some(rx_ns);
                let latency = match rx_ns.checked_sub(probe.tx_timestamp_ns) {
                    Some(l) => l,
                    None => {
                        self.negative_latency += 1;
                        0
                    }
                };
                record(&mut self.latency, latency);
                if reordered {
                    self.counters.reordered += 1;
                }
                let entry = self.timeline.at(second);
                entry.received += 1;
                entry.payload_bytes += u64::from(probe.length);
                entry.latency_max_ns = entry.latency_max_ns.max(latency);
                if reordered {
                    entry.reordered += 1;
                }
            }
        }
    }

    fn on_end_marker(&mut self, probe: &Probe) {
        self.counters.end_markers_received += 1;
        self.end_count = Some(
            self.end_count
                .map_or(probe.sequence, |c| c.max(probe.sequence)),
        );
    }

    /// Counters with `expected` and `lost` filled in.
    pub fn counters(&self) -> StreamCounters {
        let by_sequence = self.highest.map_or(0, |h| h.saturating_add(1));
        let expected = self.end_count.unwrap_or(0).max(by_sequence);
        StreamCounters {
            expected,
            lost: expected - self.counters.received,
            ..self.counters.clone()
        }
    }

    pub fn end_marker_seen(&self) -> bool {
        self.end_count.is_some()
    }

    fn record(&self) -> StreamRecord {
        let counters = self.counters();
        let receive_pps = match (self.first_rx_ns, self.last_rx_ns) {
            (Some(first), Some(last)) if last > first && counters.received > 1 => {
                Some((counters.received - 1) as f64 * 1e9 / (last - first) as f64)
            }
            _ => None,
        };
        StreamRecord {
            stream_id: self.stream_id,
            counters,
            end_marker_seen: self.end_marker_seen(),
            lowest_sequence: self.lowest,
            highest_sequence: self.highest,
            first_rx_unix_ns: self.first_rx_ns,
            last_rx_unix_ns: self.last_rx_ns,
            receive_pps,
            latency_ns: distribution(&self.latency),
            negative_latency_packets: self.negative_latency,
            timeline: self.timeline.seconds().to_vec(),
            format: StreamFormat::Probe,
            rtp: None,
            mpegts: None,
        }
    }
}

/// The accounts of every stream seen.
#[derive(Debug)]
pub struct Accounting {
    streams: Vec<StreamAccount>,
    index: HashMap<u32, usize>,
    max_streams: u32,
    window_packets: u64,
    start_ns: u64,
    untracked: u64,
}

impl Accounting {
    /// Accounting whose timeline starts at `start_ns` (realtime, ns since the epoch).
    pub fn new(start_ns: u64, max_streams: u32, window_packets: u64) -> Accounting {
        Accounting {
            streams: Vec::new(),
            index: HashMap::new(),
            max_streams,
            window_packets,
            start_ns,
            untracked: 0,
        }
    }

    /// Accounts one valid probe received at `rx_ns`.
    pub fn on_probe(&mut self, probe: &Probe, rx_ns: u64) {
        let slot = match self.index.get(&probe.stream_id) {
            Some(&slot) => slot,
            None => {
                if self.streams.len() >= self.max_streams as usize {
                    self.untracked += 1;
                    return;
                }
                self.streams
                    .push(StreamAccount::new(probe.stream_id, self.window_packets));
                self.index.insert(probe.stream_id, self.streams.len() - 1);
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[slot];
        if probe.end_marker {
            stream.on_end_marker(probe);
        } else {
            let second = rx_ns.saturating_sub(self.start_ns) / 1_000_000_000;
            stream.on_data(probe, rx_ns, second);
        }
    }

    /// Whether at least one stream was seen and every stream seen has sent its end marker.
    pub fn all_ended(&self) -> bool {
        !self.streams.is_empty() && self.streams.iter().all(StreamAccount::end_marker_seen)
    }

    /// Whether a stream with this id has been seen.
    pub fn has_stream(&self, stream_id: u32) -> bool {
        self.index.contains_key(&stream_id)
    }

    /// Streams seen.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Datagrams of streams beyond the stream limit.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Per-stream records ordered by stream id, and their totals.
    pub fn records(&self) -> (Vec<StreamRecord>, StreamCounters) {
        let mut records: Vec<StreamRecord> =
            self.streams.iter().map(StreamAccount::record).collect();
        records.sort_by_key(|r| r.stream_id);
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

    fn data(stream_id: u32, sequence: u64) -> Probe {
        Probe {
            stream_id,
            sequence,
            tx_timestamp_ns: 1_000,
            length: 100,
            end_marker: false,
        }
    }

    fn end(stream_id: u32, count: u64) -> Probe {
        Probe {
            end_marker: true,
            sequence: count,
            ..data(stream_id, 0)
        }
    }

    /// Feeds `sequences` of stream 0 (then an end marker carrying `sent`, if given).
    fn account(sequences: &[u64], sent: Option<u64>, window: u64) -> StreamCounters {
        let mut a = Accounting::new(0, 8, window);
        for &s in sequences {
            a.on_probe(&data(0, s), 2_000);
        }
        if let Some(n) = sent {
            a.on_probe(&end(0, n), 3_000);
        }
        let (_, totals) = a.records();
        assert_eq!(totals.expected, totals.received + totals.lost);
        totals
    }

    #[test]
    fn in_order_stream_has_nothing_lost() {
        let c = account(&[0, 1, 2, 3, 4], Some(5), 1024);
        assert_eq!((c.expected, c.received, c.lost), (5, 5, 0));
        assert_eq!((c.duplicated, c.reordered, c.late), (0, 0, 0));
        assert_eq!(c.payload_bytes, 500);
    }

    #[test]
    fn gaps_are_lost_including_the_tail_known_from_the_end_marker() {
        let c = account(&[0, 2, 3, 6], Some(10), 1024);
        // missing 1, 4, 5 in the middle and 7, 8, 9 at the tail
        assert_eq!((c.expected, c.received, c.lost), (10, 4, 6));
        // without the end marker, the tail is invisible
        let c = account(&[0, 2, 3, 6], None, 1024);
        assert_eq!((c.expected, c.lost), (7, 3));
    }

    #[test]
    fn duplicates_are_not_received_twice() {
        let c = account(&[0, 1, 1, 2, 0, 2, 2], Some(3), 1024);
        assert_eq!(
            (c.received, c.duplicated, c.lost, c.reordered),
            (3, 4, 0, 0)
        );
    }

    #[test]
    fn reordered_packets_fill_their_gap() {
        let c = account(&[0, 2, 1, 5, 3, 4], Some(6), 1024);
        assert_eq!(
            (c.received, c.lost, c.reordered, c.duplicated),
            (6, 0, 3, 0)
        );
    }

    #[test]
    fn arrivals_older_than_the_window_are_late_and_stay_lost() {
        let c = account(&[0, 200, 1, 150, 150], Some(201), 64);
        // the window base is 192 once 200 arrived: 1 and both copies of 150 are late
        assert_eq!(c.late, 3, "{c:?}");
        assert_eq!(c.received, 2);
        assert_eq!(c.lost, 199);
        assert_eq!(c.duplicated, 0);
    }

    #[test]
    fn window_slides_without_forgetting_recent_sequences() {
        let mut w = SequenceWindow::new(128);
        for s in 0..1000 {
            assert_eq!(w.observe(s), Arrival::New);
        }
        assert_eq!(w.observe(999), Arrival::Duplicate);
        assert_eq!(w.observe(900), Arrival::Duplicate);
        assert_eq!(w.observe(10), Arrival::Late);
        // a huge jump clears everything and the new number is new
        assert_eq!(w.observe(1 << 40), Arrival::New);
        assert_eq!(w.observe((1 << 40) - 1), Arrival::New);
        assert_eq!(w.observe(1 << 40), Arrival::Duplicate);
    }

    #[test]
    fn streams_are_independent_and_limited() {
        let mut a = Accounting::new(0, 2, 1024);
        for s in 0..3 {
            a.on_probe(&data(7, s), 10);
            a.on_probe(&data(3, s * 2), 10);
        }
        a.on_probe(&data(99, 0), 10); // beyond the 2-stream limit
        assert_eq!(a.untracked(), 1);
        assert!(!a.all_ended());
        a.on_probe(&end(7, 3), 10);
        a.on_probe(&end(3, 5), 10);
        assert!(a.all_ended());
        let (records, totals) = a.records();
        assert_eq!(
            records.iter().map(|r| r.stream_id).collect::<Vec<_>>(),
            vec![3, 7]
        );
        assert_eq!(records[0].counters.lost, 2); // stream 3 got 0, 2, 4 of 5
        assert_eq!(records[1].counters.lost, 0);
        assert_eq!(totals.expected, 8);
        assert_eq!(totals.end_markers_received, 2);
    }

    #[test]
    fn a_stream_whose_data_all_vanished_is_all_lost() {
        let c = account(&[], Some(42), 1024);
        assert_eq!((c.expected, c.received, c.lost), (42, 0, 42));
    }

    #[test]
    fn latency_timeline_and_receive_rate() {
        let mut a = Accounting::new(1_000_000_000, 8, 1024);
        // tx at 1.0 s; rx at 1.0 s + 50 us + k * 100 ms: seconds 0..=1 of the timeline
        for k in 0..15u64 {
            let p = Probe {
                tx_timestamp_ns: 1_000_000_000 + k * 100_000_000,
                ..data(1, k)
            };
            a.on_probe(&p, 1_000_050_000 + k * 100_000_000);
        }
        // a packet "from the future" (clock skew)
        let p = Probe {
            tx_timestamp_ns: 9_000_000_000,
            ..data(1, 15)
        };
        a.on_probe(&p, 2_500_000_000);
        let (records, _) = a.records();
        let r = &records[0];
        assert_eq!(r.negative_latency_packets, 1);
        assert_eq!(r.latency_ns.max, 50_015); // 50 us within 0.1%
        assert_eq!(r.latency_ns.min, 0);
        assert_eq!(r.timeline.len(), 2);
        assert_eq!(r.timeline[0].received, 10);
        assert_eq!(r.timeline[1].received, 6);
        let pps = r.receive_pps.unwrap();
        // 16 packets, first at 1.00005 s, last at 2.5 s
        assert!((pps - 15.0 / 1.499_95).abs() < 1e-6, "{pps}");
    }
}
