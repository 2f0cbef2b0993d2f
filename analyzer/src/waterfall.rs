//! Where packets were lost: a waterfall per hop, from the relay's conservation laws
//! (relay/README.md, "Counters and the laws they obey").
//!
//! For each hop: what its upstream sent (the generator for the first hop), what the relay's
//! counters never saw (lost on the way in: kernel drops, plus anything unexplained), what it
//! received, and then every class it dropped, down to what it sent on:
//!
//! `rx - filtered - malformed - no_match (+ fan-out copies) - buf_exhaust - tx_errors - in_flight
//!  = tx_sent + remainder`
//!
//! When the record has the kernel's veth counters (`kernel.links`, one per leg: generator → hop
//! 1, …, last hop → receiver), each leg's link drops are counted before the hop, so a loss on the
//! wire is explained rather than left unexplained. Softnet backlog drops are host-wide: they are
//! shown for the run, not charged to a hop.
//!
//! For production streams that hops monitored (`monitor = "rtp" | "mpegts"`), the waterfall
//! also follows each stream from hop to hop (`stream_loss.rs`): the hop whose sequence numbers
//! or continuity counters first show a gap is the one after the link that lost it.
//!
//! The remainder is printed, never hidden: a non-zero remainder means a counter is missing or
//! wrong. Counters the source did not report are listed so that a reader knows the remainder
//! may hold them.

use crate::record::{Conservation, Hop, Link, RunRecord};
use crate::stream_loss::{self, StreamPath};

/// The classes of the conservation law, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Filtered,
    Malformed,
    NoMatch,
    FanOut,
    BufExhaust,
    TxErrors,
    InFlight,
}

impl StepKind {
    /// How the report names the class.
    pub fn label(self) -> &'static str {
        match self {
            StepKind::Filtered => "filtered (not IPv4/UDP)",
            StepKind::Malformed => "malformed",
            StepKind::NoMatch => "no matching rule",
            StepKind::FanOut => "fan-out copies",
            StepKind::BufExhaust => "buffer exhaustion",
            StepKind::TxErrors => "egress errors",
            StepKind::InFlight => "in flight at read",
        }
    }
}

/// One line of a hop's waterfall.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    /// `None` when the source did not report this counter.
    pub count: Option<u64>,
}

impl Step {
    /// How the report names the step.
    pub fn label(&self) -> &'static str {
        self.kind.label()
    }

    /// True for fan-out copies, which add packets rather than remove them.
    pub fn adds(&self) -> bool {
        self.kind == StepKind::FanOut
    }
}

/// The waterfall of one hop.
#[derive(Debug, Clone, PartialEq)]
pub struct HopFlow {
    pub hop: String,
    /// Name of what fed this hop (`generator` or the previous hop).
    pub upstream: String,
    /// Packets the upstream sent, if known (from the generator: data plus end markers).
    pub offered: Option<u64>,
    pub kernel_drops: Option<u64>,
    /// Frames the veth link into this hop dropped (tx + rx side), when the kernel reported them.
    pub link_drops: Option<u64>,
    /// `offered - received - kernel_drops - link_drops`: lost on the way in with no counter to
    /// explain it.
    /// Negative when the hop received more than was offered (foreign traffic counted in `rx`).
    pub unseen: Option<i64>,
    pub received: Option<u64>,
    /// Drop classes and fan-out in the order of the law above.
    pub steps: Vec<Step>,
    pub sent_on: Option<u64>,
    /// What the counters do not account for; `None` when received or sent on is unknown.
    pub remainder: Option<i64>,
    /// Counters of the law that the source did not report.
    pub unreported: Vec<&'static str>,
}

/// From the last hop to the receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub upstream: String,
    pub offered: Option<u64>,
    pub received: Option<u64>,
    /// End-of-stream markers received, counted in `offered` and `lost` but not in `received`;
    /// known only when the generator's count of them is known too.
    pub end_markers: Option<u64>,
    /// Of the loss, frames the veth link into the receiver dropped.
    pub link_drops: Option<u64>,
    /// Of the loss, datagrams the receiving socket dropped for want of buffer space.
    pub socket_drops: Option<u64>,
    /// `offered - received - end_markers`.
    pub lost: Option<i64>,
}

impl HopFlow {
    /// True when the hop received more than its upstream sent (less what the kernel and the
    /// link dropped): the counters cannot be from one run over one window, so no loss can be
    /// computed from them.
    pub fn inconsistent(&self) -> bool {
        self.unseen.is_some_and(|u| u < 0)
    }
}

impl Delivery {
    /// True when the receiver got more than the last hop sent.
    pub fn inconsistent(&self) -> bool {
        self.lost.is_some_and(|l| l < 0)
    }
}

/// The whole run's waterfall.
#[derive(Debug, Clone, PartialEq)]
pub struct Waterfall {
    pub run: String,
    pub hops: Vec<HopFlow>,
    pub delivery: Option<Delivery>,
    /// Host-wide softnet backlog drops over the run (any hop's), when known.
    pub softnet_dropped: Option<u64>,
    /// Without link counters: how much of the loss before the relays' counters and on the last
    /// leg the softnet drops can explain (the smaller of the two). `None` with link counters,
    /// because a veth counts a frame the backlog refused as the sender's `tx_dropped`
    /// (`veth_xmit`), so the link drops already hold them.
    pub softnet_explains: Option<u64>,
    /// The harness's conservation check, when the record has one.
    pub conservation: Option<Conservation>,
    /// Each monitored stream (RTP, MPEG-TS) from hop to hop: where its loss first appears.
    pub streams: Vec<StreamPath>,
}

fn diff(a: Option<u64>, b: Option<u64>) -> Option<i64> {
    Some(a? as i64 - b? as i64)
}

fn hop_flow(hop: &Hop, upstream: String, offered: Option<u64>, link: Option<&Link>) -> HopFlow {
    let c = &hop.counters;
    let fanout = match (c.output_copies, c.matched) {
        (Some(copies), Some(m)) if copies > m => Some(copies - m),
        (Some(_), Some(_)) => Some(0),
        _ => None,
    };
    let steps: Vec<Step> = [
        (StepKind::Filtered, c.filtered),
        (StepKind::Malformed, c.malformed),
        (StepKind::NoMatch, c.no_match),
        (StepKind::FanOut, fanout),
        (StepKind::BufExhaust, c.buf_exhaust),
        (StepKind::TxErrors, c.tx_errors),
        (StepKind::InFlight, c.in_flight),
    ]
    .into_iter()
    .map(|(kind, count)| Step { kind, count })
    .collect();
    let mut unreported: Vec<&'static str> = steps
        .iter()
        .filter(|s| s.count.is_none() && !s.adds())
        .map(Step::label)
        .collect();
    if c.kernel_drops.is_none() {
        unreported.insert(0, "kernel drops");
    }
    let remainder = match (c.rx, c.tx_sent) {
        (Some(rx), Some(tx)) => {
            let mut r = rx as i64 - tx as i64;
            for s in &steps {
                let n = s.count.unwrap_or(0) as i64;
                r += if s.adds() { n } else { -n };
            }
            Some(r)
        }
        _ => None,
    };
    let link_drops = link.and_then(Link::dropped);
    let unseen = diff(offered, c.rx)
        .map(|d| d - c.kernel_drops.unwrap_or(0) as i64 - link_drops.unwrap_or(0) as i64);
    HopFlow {
        hop: hop.name.clone(),
        upstream,
        offered,
        kernel_drops: c.kernel_drops,
        link_drops,
        unseen,
        received: c.rx,
        steps,
        sent_on: c.tx_sent,
        remainder,
        unreported,
    }
}

/// Builds the waterfall of a run.
pub fn waterfall(rec: &RunRecord) -> Waterfall {
    let mut upstream = "generator".to_string();
    // Relays and veth count the generator's end-of-stream markers like any datagram, so when
    // the record knows how many were sent they are part of what the first hop was offered, and
    // the receiver's markers part of what it got; without them (old records) only data counts.
    let markers_sent = rec.generator.as_ref().and_then(|g| g.end_markers_sent);
    let mut offered = rec
        .generator
        .as_ref()
        .and_then(|g| g.sent)
        .map(|n| n + markers_sent.unwrap_or(0));
    // Links map onto legs only when there is one per leg; otherwise which link fed which hop is
    // not known and none is used.
    let links = &rec.kernel.links;
    let link = |i: usize| (links.len() == rec.hops.len() + 1).then(|| &links[i]);
    let mut hops = Vec::new();
    for (i, hop) in rec.hops.iter().enumerate() {
        let flow = hop_flow(hop, upstream, offered, link(i));
        upstream = hop.name.clone();
        offered = flow.sent_on;
        hops.push(flow);
    }
    let delivery = rec.receiver.as_ref().map(|r| {
        let end_markers = r.end_markers_received.filter(|_| markers_sent.is_some());
        Delivery {
            upstream: upstream.clone(),
            offered,
            received: r.received,
            end_markers,
            link_drops: link(rec.hops.len()).and_then(Link::dropped),
            socket_drops: r.socket_drops,
            lost: diff(offered, r.received.map(|n| n + end_markers.unwrap_or(0))),
        }
    });
    let links_known = hops.iter().any(|h| h.link_drops.is_some())
        || delivery.as_ref().is_some_and(|d| d.link_drops.is_some());
    let not_counted: i64 = hops
        .iter()
        .filter_map(|h| h.unseen)
        .filter(|&u| u > 0)
        .sum::<i64>()
        + delivery
            .as_ref()
            .and_then(|d| d.lost.map(|l| l - d.socket_drops.unwrap_or(0) as i64))
            .filter(|&l| l > 0)
            .unwrap_or(0);
    let softnet_explains = rec
        .kernel
        .softnet_dropped
        .filter(|_| !links_known)
        .map(|s| s.min(not_counted as u64));
    Waterfall {
        run: rec.name.clone(),
        hops,
        delivery,
        softnet_dropped: rec.kernel.softnet_dropped,
        softnet_explains,
        conservation: rec.conservation.clone(),
        streams: stream_loss::stream_paths(rec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Generator, HopCounters};

    fn seed_after() -> RunRecord {
        let mut r = RunRecord::new("After Fix");
        r.generator = Some(Generator {
            sent: Some(10_000_000),
            ..Default::default()
        });
        r.hops.push(Hop {
            name: "MCR-1".into(),
            counters: HopCounters {
                rx: Some(9_940_000),
                tx_sent: Some(1_405_182),
                buf_exhaust: Some(8_534_699),
                filtered: Some(58),
                no_match: Some(60),
                ..Default::default()
            },
            ..Default::default()
        });
        r.hops.push(Hop {
            name: "MCR-2".into(),
            counters: HopCounters {
                rx: Some(1_400_000),
                tx_sent: Some(1_198_042),
                buf_exhaust: Some(201_837),
                ..Default::default()
            },
            ..Default::default()
        });
        r
    }

    #[test]
    fn seed_counters_leave_small_remainders_that_are_shown() {
        let w = waterfall(&seed_after());
        let h1 = &w.hops[0];
        assert_eq!(h1.offered, Some(10_000_000));
        assert_eq!(h1.unseen, Some(60_000));
        assert_eq!(h1.remainder, Some(1));
        assert!(h1.unreported.contains(&"kernel drops"));
        assert!(h1.unreported.contains(&"malformed"));
        let h2 = &w.hops[1];
        assert_eq!(h2.upstream, "MCR-1");
        assert_eq!(h2.offered, Some(1_405_182));
        assert_eq!(h2.unseen, Some(5_182));
        assert_eq!(h2.remainder, Some(121));
        assert!(h2.unreported.contains(&"filtered (not IPv4/UDP)"));
    }

    #[test]
    fn fan_out_adds_copies_and_balances() {
        let mut r = RunRecord::new("x");
        r.hops.push(Hop {
            name: "a".into(),
            counters: HopCounters {
                rx: Some(100),
                kernel_drops: Some(0),
                filtered: Some(0),
                malformed: Some(0),
                no_match: Some(10),
                matched: Some(90),
                output_copies: Some(180),
                buf_exhaust: Some(30),
                tx_errors: Some(0),
                in_flight: Some(0),
                tx_sent: Some(150),
                ..Default::default()
            },
            ..Default::default()
        });
        let w = waterfall(&r);
        assert_eq!(w.hops[0].remainder, Some(0));
        assert!(w.hops[0].unreported.is_empty());
        assert_eq!(
            w.hops[0].offered, None,
            "no generator: offered is unknown, not 0"
        );
    }

    #[test]
    fn link_drops_explain_loss_between_hops() {
        let mut r = seed_after();
        let link = |tx: u64, rx: u64| Link {
            from: "a".into(),
            to: "b".into(),
            tx_dropped: Some(tx),
            rx_dropped: Some(rx),
            ..Default::default()
        };
        r.receiver = Some(crate::record::Receiver {
            received: Some(1_198_000),
            ..Default::default()
        });
        r.kernel.links = vec![link(0, 60_000), link(5_000, 182), link(0, 42)];
        r.kernel.softnet_dropped = Some(7);
        let w = waterfall(&r);
        assert_eq!(w.hops[0].link_drops, Some(60_000));
        assert_eq!(w.hops[0].unseen, Some(0), "explained by the link's drops");
        assert_eq!(w.hops[1].unseen, Some(0));
        assert_eq!(w.delivery.as_ref().unwrap().link_drops, Some(42));
        assert_eq!(w.softnet_dropped, Some(7));
        assert_eq!(w.softnet_explains, None, "inside the link drops");
        r.kernel.links.pop();
        let w = waterfall(&r);
        assert_eq!(
            w.hops[0].link_drops, None,
            "links that do not match the legs are not guessed onto hops"
        );
        assert_eq!(
            w.softnet_explains,
            Some(7),
            "without link counters softnet drops explain what they can"
        );
    }

    #[test]
    fn end_markers_are_offered_and_delivered() {
        let mut r = RunRecord::new("x");
        r.generator = Some(Generator {
            sent: Some(100),
            end_markers_sent: Some(3),
            ..Default::default()
        });
        r.hops.push(Hop {
            name: "a".into(),
            counters: HopCounters {
                rx: Some(103),
                kernel_drops: Some(0),
                tx_sent: Some(103),
                ..Default::default()
            },
            ..Default::default()
        });
        r.receiver = Some(crate::record::Receiver {
            received: Some(100),
            end_markers_received: Some(3),
            ..Default::default()
        });
        let w = waterfall(&r);
        assert_eq!(w.hops[0].offered, Some(103));
        assert_eq!(w.hops[0].unseen, Some(0));
        let d = w.delivery.unwrap();
        assert_eq!((d.lost, d.end_markers), (Some(0), Some(3)));
    }

    #[test]
    fn unknown_sent_means_unknown_remainder() {
        let mut r = RunRecord::new("x");
        r.hops.push(Hop {
            name: "a".into(),
            counters: HopCounters {
                rx: Some(100),
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(waterfall(&r).hops[0].remainder, None);
    }
}
