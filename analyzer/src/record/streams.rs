//! Production streams in a record: what each monitored relay flow saw of an RTP or MPEG-TS
//! stream (`mcrd` rules with `monitor`), and what the receiver counted of such streams
//! (`trafficgen recv --format rtp|mpegts`). The waterfall follows a stream from hop to hop with
//! them (`src/stream_loss.rs`) to say on which link its loss first appears.
//!
//! Both sides count what they *received*: a relay's monitor sits after its receive queue and
//! before its own drops, so a gap at hop 2 that hop 1 did not see was lost in hop 1, on the
//! link, or in hop 2's kernel.

use serde::{Deserialize, Serialize};

/// What a stream's loss is counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// RTP sequence numbers (RFC 3550): a gap is that many datagrams.
    Rtp,
    /// MPEG-TS continuity counters (ISO/IEC 13818-1), raw over UDP or inside RTP: a gap of k is
    /// k, k + 16, k + 32, … TS packets of one PID.
    Mpegts,
}

impl StreamKind {
    /// The name in the relay's stats and in records.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Rtp => "rtp",
            StreamKind::Mpegts => "mpegts",
        }
    }

    /// Reads the relay's `flows[].monitor.kind`.
    pub fn parse(s: &str) -> Option<StreamKind> {
        match s {
            "rtp" => Some(StreamKind::Rtp),
            "mpegts" => Some(StreamKind::Mpegts),
            _ => None,
        }
    }
}

/// One monitored flow of a hop (`flows[]` with a `monitor` in `mcr.relay.stats`), as the hop
/// received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoredFlow {
    /// The rule's name.
    pub rule: String,
    /// `GROUP:PORT` the rule matched: how the flow is found again downstream.
    pub input: String,
    /// `ADDR:PORT` of each output (the next hop's `input`, or the receiver's group).
    pub outputs: Vec<String>,
    pub kind: StreamKind,
    /// Datagrams checked.
    pub datagrams: u64,
    /// Datagrams not of the monitored format.
    pub foreign: u64,
    /// RTP: sequence gaps; MPEG-TS: continuity-counter errors.
    pub gaps: u64,
    /// RTP: sequence numbers skipped (a reordered packet counts at its gap); MPEG-TS: lost TS
    /// packets as the counters show them (a gap of k counts k).
    pub lost: u64,
    /// RTP: packets at or behind the highest sequence (duplicates, reordered); MPEG-TS: packets
    /// repeating their PID's counter.
    pub repeats: u64,
    /// Output datagrams of this flow the hop itself dropped: buffer exhaustion and send errors,
    /// over its outputs.
    pub dropped: u64,
}

/// One RTP or MPEG-TS stream the receiver accounted (`streams[]` of `mcr.trafficgen.recv`
/// whose format is not `probe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceivedStream {
    /// `GROUP:PORT` the receiver listened on (a relay output's `ADDR:PORT`).
    pub group: String,
    /// `rtp` (RTP, with `mpegts` too when it carried MPEG-TS) or `mpegts` (raw over UDP).
    pub format: StreamKind,
    /// SSRC (RTP), 0 for raw MPEG-TS.
    pub id: u32,
    /// Datagrams received (distinct packets for RTP; not wholly duplicate ones for raw TS).
    pub datagrams: u64,
    /// Exact loss from the RTP sequence numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp: Option<RtpLoss>,
    /// Continuity accounting of the MPEG-TS the stream carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpegts: Option<TsLoss>,
}

/// RTP loss as `trafficgen recv` counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpLoss {
    /// Sequence numbers never received.
    pub lost: u64,
    pub duplicates: u64,
    /// Arrivals behind one already received (in the received count, not lost).
    pub reordered: u64,
}

/// MPEG-TS continuity accounting, summed over PIDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsLoss {
    pub continuity_errors: u64,
    /// Lost TS packets from the counter gaps (a gap of k counts k: a lower bound).
    pub lost_ts_packets: u64,
    pub duplicate_ts_packets: u64,
    /// Packets with `transport_error_indicator` set.
    pub transport_errors: u64,
}

impl MonitoredFlow {
    /// Every count with its field name.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("datagrams", self.datagrams),
            ("foreign", self.foreign),
            ("gaps", self.gaps),
            ("lost", self.lost),
            ("repeats", self.repeats),
            ("dropped", self.dropped),
        ]
    }
}

impl ReceivedStream {
    /// Every count with its field name (`rtp.lost`).
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let mut out = vec![("datagrams", self.datagrams)];
        if let Some(r) = &self.rtp {
            out.extend([
                ("rtp.lost", r.lost),
                ("rtp.duplicates", r.duplicates),
                ("rtp.reordered", r.reordered),
            ]);
        }
        if let Some(t) = &self.mpegts {
            out.extend([
                ("mpegts.continuity_errors", t.continuity_errors),
                ("mpegts.lost_ts_packets", t.lost_ts_packets),
                ("mpegts.duplicate_ts_packets", t.duplicate_ts_packets),
                ("mpegts.transport_errors", t.transport_errors),
            ]);
        }
        out
    }
}
