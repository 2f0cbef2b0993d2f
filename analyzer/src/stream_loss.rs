//! Where a production stream lost packets: a monitored flow followed from hop to hop, and on to
//! the receiver, with the loss each point's sequence numbers or continuity counters show.
//!
//! Every point counts what it *received*, from the start of the stream, so the counts grow
//! along the chain: what a point shows beyond its upstream point was lost between the two (in
//! the upstream relay, which says how many of the flow's datagrams it dropped itself, on the
//! link, or in the downstream kernel before the monitor). Gaps at hop 2 but none at hop 1 mean
//! loss between hop 1 and hop 2.
//!
//! A flow is followed by address: hop k + 1's monitored flow whose `GROUP:PORT` is one of hop
//! k's outputs (and of the same kind) continues it, and the receiver's streams on a group that
//! is one of the last hop's outputs end it. Nothing is matched by guess: a hop without a
//! matching monitored flow ends the path there.
//!
//! What the counts resolve:
//! * RTP (`rtp`): a gap of sequence numbers is that many datagrams, exact at the receiver. At a
//!   relay a reordered packet is first counted lost at its gap (and then as a repeat), so with
//!   repeats the relay's loss is at most that many too high.
//! * MPEG-TS (`mpegts`): a continuity-counter error means at least one TS packet of that PID
//!   was lost; the 4-bit counter gives the count modulo 16 (a gap of k is k, k + 16, …, counted
//!   as k), so lost TS packets are a lower bound, and 16 lost packets in a row of one PID, lost
//!   packets without payload, or a PID's last packets leave no error at all.

use crate::record::{MonitoredFlow, ReceivedStream, RunRecord, StreamKind};

/// One place along the path that counted the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The hop's name, or `receiver`.
    pub at: String,
    /// True for the receiver (named "the receiver" in sentences).
    pub receiver: bool,
    /// Datagrams counted here.
    pub datagrams: u64,
    /// Of them, datagrams not of the monitored format (a relay's monitor counts them apart);
    /// `None` where the source does not say (the receiver accounts only its formats' streams).
    pub foreign: Option<u64>,
    /// RTP sequence gaps or MPEG-TS continuity errors; `None` where the source does not count
    /// them (the receiver's RTP account counts lost packets, not gaps).
    pub gaps: Option<u64>,
    /// Sequence numbers (RTP) or TS packets (MPEG-TS, a lower bound) missing here.
    pub lost: u64,
    /// Duplicates and reordered packets (RTP), repeated counters (MPEG-TS).
    pub repeats: u64,
    /// `lost` less the upstream point's: lost between the two (for the first point, before it).
    /// Negative when this point counted less than its upstream: the counts cover different
    /// windows.
    pub new_loss: i64,
    /// Datagrams of the flow the upstream hop dropped itself (its buffer exhaustion and send
    /// errors); `None` for the first point.
    pub upstream_dropped: Option<u64>,
}

impl Point {
    /// How sentences name the point.
    pub fn name(&self) -> &str {
        if self.receiver {
            "the receiver"
        } else {
            &self.at
        }
    }

    /// True when none of the datagrams here were of the monitored format.
    pub fn nothing_checked(&self) -> bool {
        self.foreign.is_some_and(|f| f >= self.datagrams)
    }

    /// True when this point saw any gap.
    pub fn has_loss(&self) -> bool {
        self.lost > 0 || self.gaps.is_some_and(|g| g > 0)
    }
}

/// One stream through the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPath {
    /// The first hop's rule name.
    pub rule: String,
    pub kind: StreamKind,
    /// In chain order: the hops that monitored it, then the receiver when it had the stream.
    pub points: Vec<Point>,
}

impl StreamPath {
    /// Index of the first point with a gap.
    pub fn first_loss(&self) -> Option<usize> {
        self.points.iter().position(Point::has_loss)
    }

    /// What `lost` counts, in words.
    pub fn unit(&self) -> &'static str {
        match self.kind {
            StreamKind::Rtp => "sequence numbers",
            StreamKind::Mpegts => "TS packets",
        }
    }
}

fn hop_point(hop: &str, f: &MonitoredFlow, before: Option<(&Point, &MonitoredFlow)>) -> Point {
    Point {
        at: hop.to_string(),
        receiver: false,
        datagrams: f.datagrams,
        foreign: Some(f.foreign),
        gaps: Some(f.gaps),
        lost: f.lost,
        repeats: f.repeats,
        new_loss: f.lost as i64 - before.map_or(0, |(p, _)| p.lost as i64),
        upstream_dropped: before.map(|(_, up)| up.dropped),
    }
}

/// The receiver's streams on one of `outputs` that count `kind`, summed (one stream per group
/// for raw MPEG-TS; one per SSRC for RTP). `None` when it has none.
fn receiver_point(
    streams: &[ReceivedStream],
    kind: StreamKind,
    last: (&Point, &MonitoredFlow),
) -> Option<Point> {
    let mut found = false;
    let (mut datagrams, mut gaps, mut lost, mut repeats) = (0, None::<u64>, 0, 0);
    for s in streams.iter().filter(|s| last.1.outputs.contains(&s.group)) {
        match kind {
            StreamKind::Rtp => {
                let Some(r) = &s.rtp else { continue };
                lost += r.lost;
                repeats += r.duplicates + r.reordered;
            }
            StreamKind::Mpegts => {
                let Some(t) = &s.mpegts else { continue };
                *gaps.get_or_insert(0) += t.continuity_errors;
                lost += t.lost_ts_packets;
                repeats += t.duplicate_ts_packets;
            }
        }
        datagrams += s.datagrams;
        found = true;
    }
    found.then(|| Point {
        at: "receiver".into(),
        receiver: true,
        datagrams,
        foreign: None,
        gaps,
        lost,
        repeats,
        new_loss: lost as i64 - last.0.lost as i64,
        upstream_dropped: Some(last.1.dropped),
    })
}

/// Every monitored stream of a run, followed from the first hop that monitored it.
pub fn stream_paths(rec: &RunRecord) -> Vec<StreamPath> {
    let continues = |up: &MonitoredFlow, down: &MonitoredFlow| {
        up.kind == down.kind && up.outputs.contains(&down.input)
    };
    let mut paths = Vec::new();
    for (i, hop) in rec.hops.iter().enumerate() {
        for start in &hop.streams {
            // A flow fed by a monitored flow of the hop before is part of that one's path.
            if i > 0
                && rec.hops[i - 1]
                    .streams
                    .iter()
                    .any(|up| continues(up, start))
            {
                continue;
            }
            let mut points = vec![hop_point(&hop.name, start, None)];
            let mut flow = start;
            let mut j = i;
            while let Some(next) = rec
                .hops
                .get(j + 1)
                .and_then(|h| h.streams.iter().find(|d| continues(flow, d)))
            {
                j += 1;
                let p = hop_point(
                    &rec.hops[j].name,
                    next,
                    Some((&points[points.len() - 1], flow)),
                );
                points.push(p);
                flow = next;
            }
            if j + 1 == rec.hops.len() {
                if let Some(r) = &rec.receiver {
                    let last = (&points[points.len() - 1], flow);
                    if let Some(p) = receiver_point(&r.streams, start.kind, last) {
                        points.push(p);
                    }
                }
            }
            paths.push(StreamPath {
                rule: start.rule.clone(),
                kind: start.kind,
                points,
            });
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Hop, Receiver, RtpLoss, TsLoss};

    fn flow(kind: StreamKind, input: &str, output: &str, lost: u64, dropped: u64) -> MonitoredFlow {
        MonitoredFlow {
            rule: "camera".into(),
            input: input.into(),
            outputs: vec![output.into()],
            kind,
            datagrams: 6000 - lost / 7,
            foreign: 0,
            gaps: lost.div_ceil(7),
            lost,
            repeats: 0,
            dropped,
        }
    }

    fn chain(flows: Vec<MonitoredFlow>) -> RunRecord {
        let mut r = RunRecord::new("x");
        for (i, f) in flows.into_iter().enumerate() {
            r.hops.push(Hop {
                name: format!("MCR-{}", i + 1),
                streams: vec![f],
                ..Default::default()
            });
        }
        r
    }

    const G: &str = "239.1.1.1:5000";

    #[test]
    fn loss_first_seen_at_hop_2_is_between_hop_1_and_hop_2() {
        let mut r = chain(vec![
            flow(StreamKind::Mpegts, G, G, 0, 0),
            flow(StreamKind::Mpegts, G, G, 210, 0),
        ]);
        r.receiver = Some(Receiver {
            streams: vec![ReceivedStream {
                group: G.into(),
                format: StreamKind::Mpegts,
                id: 0,
                datagrams: 5950,
                rtp: None,
                mpegts: Some(TsLoss {
                    continuity_errors: 44,
                    lost_ts_packets: 308,
                    duplicate_ts_packets: 0,
                    transport_errors: 0,
                }),
            }],
            ..Default::default()
        });
        let paths = stream_paths(&r);
        assert_eq!(paths.len(), 1);
        let p = &paths[0];
        let at: Vec<(&str, i64)> = p
            .points
            .iter()
            .map(|x| (x.at.as_str(), x.new_loss))
            .collect();
        assert_eq!(at, [("MCR-1", 0), ("MCR-2", 210), ("receiver", 98)]);
        assert_eq!(p.first_loss(), Some(1));
        assert_eq!(p.points[2].gaps, Some(44));
        assert_eq!(p.points[1].upstream_dropped, Some(0));
        assert_eq!(
            crate::render::sentences::localization(p),
            "continuity-counter errors first appear at MCR-2, not at MCR-1: at least 210 TS packets lost between MCR-1 and MCR-2"
        );
    }

    #[test]
    fn no_gaps_anywhere_and_gaps_before_the_first_hop() {
        let r = chain(vec![
            flow(StreamKind::Rtp, G, G, 0, 0),
            flow(StreamKind::Rtp, G, G, 0, 0),
        ]);
        let p = &stream_paths(&r)[0];
        assert_eq!(p.first_loss(), None);
        assert_eq!(
            crate::render::sentences::localization(p),
            "no sequence gaps at MCR-1 or MCR-2: nothing was lost that the stream's sequence numbers can show"
        );
        let r = chain(vec![
            flow(StreamKind::Rtp, G, G, 12, 0),
            flow(StreamKind::Rtp, G, G, 12, 0),
        ]);
        let p = &stream_paths(&r)[0];
        assert_eq!(p.first_loss(), Some(0));
        assert_eq!(p.points[1].new_loss, 0, "nothing more after MCR-1");
        assert!(
            crate::render::sentences::localization(p).starts_with("sequence gaps already at MCR-1")
        );
    }

    #[test]
    fn rtp_receiver_ends_the_path_and_a_smaller_count_is_negative() {
        let mut r = chain(vec![flow(StreamKind::Rtp, G, G, 40, 3)]);
        r.receiver = Some(Receiver {
            streams: vec![ReceivedStream {
                group: G.into(),
                format: StreamKind::Rtp,
                id: 7,
                datagrams: 5900,
                rtp: Some(RtpLoss {
                    lost: 35,
                    duplicates: 1,
                    reordered: 0,
                }),
                mpegts: None,
            }],
            ..Default::default()
        });
        let p = &stream_paths(&r)[0];
        let last = &p.points[1];
        assert_eq!((last.gaps, last.lost, last.repeats), (None, 35, 1));
        assert_eq!(
            last.new_loss, -5,
            "the receiver counted less: another window"
        );
        assert_eq!(last.upstream_dropped, Some(3));
    }

    #[test]
    fn flows_are_followed_by_address_and_kind_only() {
        // MCR-2's flow is fed by another group: two paths, and the receiver (on MCR-2's output)
        // belongs to the second.
        let mut r = chain(vec![
            flow(StreamKind::Mpegts, G, "239.2.2.2:5000", 0, 0),
            flow(StreamKind::Mpegts, "239.3.3.3:5000", G, 7, 0),
        ]);
        r.receiver = Some(Receiver {
            streams: vec![ReceivedStream {
                group: G.into(),
                format: StreamKind::Mpegts,
                id: 0,
                datagrams: 10,
                rtp: None,
                mpegts: Some(TsLoss {
                    continuity_errors: 1,
                    lost_ts_packets: 7,
                    duplicate_ts_packets: 0,
                    transport_errors: 0,
                }),
            }],
            ..Default::default()
        });
        let paths = stream_paths(&r);
        let lens: Vec<usize> = paths.iter().map(|p| p.points.len()).collect();
        assert_eq!(lens, [1, 2]);
        assert_eq!(paths[1].points[1].new_loss, 0);
        // Same address, other kind: not the same stream.
        let r = chain(vec![
            flow(StreamKind::Rtp, G, G, 0, 0),
            flow(StreamKind::Mpegts, G, G, 0, 0),
        ]);
        assert_eq!(stream_paths(&r).len(), 2);
        // A hop in the middle without monitoring ends the path: the receiver is not attached
        // to MCR-1's flow.
        let mut r = chain(vec![flow(StreamKind::Rtp, G, G, 0, 0)]);
        r.hops.push(Hop {
            name: "MCR-2".into(),
            ..Default::default()
        });
        r.receiver = Some(Receiver {
            streams: vec![ReceivedStream {
                group: G.into(),
                format: StreamKind::Rtp,
                id: 1,
                datagrams: 1,
                rtp: Some(RtpLoss {
                    lost: 0,
                    duplicates: 0,
                    reordered: 0,
                }),
                mpegts: None,
            }],
            ..Default::default()
        });
        assert_eq!(stream_paths(&r)[0].points.len(), 1);
        assert!(stream_paths(&RunRecord::new("none")).is_empty());
    }

    #[test]
    fn a_stream_of_another_format_is_not_called_lossless() {
        // trafficgen's probes through hops monitoring RTP: every datagram is foreign.
        let mut foreign = flow(StreamKind::Rtp, G, G, 0, 0);
        foreign.foreign = foreign.datagrams;
        let r = chain(vec![foreign.clone(), foreign]);
        let p = &stream_paths(&r)[0];
        assert_eq!(
            crate::render::sentences::localization(p),
            "none of the datagrams MCR-1 and MCR-2 received was RTP: nothing to follow"
        );
    }
}
