//! The metrics a report compares, derived from one run record.
//!
//! Rates are the seed's "calculated rates": a counter divided by the run's duration, so every
//! hop of a run shares one denominator (the generator's elapsed time unless the record says
//! otherwise). A hop's own `duration_ns` (its uptime) is used only when the run has none,
//! because a relay is up before and after the traffic and its uptime would understate rates.
//! When a record has no counter for a metric but the source printed the figure, the printed
//! figure is used and marked [`Origin::Reported`]; nothing is ever estimated.

use crate::record::{Hop, RunRecord};

/// What a metric is measured in; percentages change in percentage points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Pps,
    Percent,
    /// Nanoseconds of CPU per packet.
    NsPerPacket,
    /// Latency in nanoseconds.
    Nanos,
    /// A count of packets (a stream's lost sequence numbers or TS packets, its gaps): judged
    /// from zero too, since any loss where the baseline lost none is a finding.
    Packets,
}

/// Which direction is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// An input of the test rather than a result (the generator's rate): shown, never judged.
    Neither,
}

/// How a value was obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// `numerator / denominator` from counters.
    Computed {
        numerator: u64,
        denominator: Denominator,
    },
    /// A figure the source printed without its counters.
    Reported,
    /// Read directly (latency percentiles).
    Measured,
}

/// The denominator of a computed value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Denominator {
    /// A duration, ns (rates).
    Duration(u64),
    /// A packet count (ratios, CPU per packet).
    Packets(u64),
}

/// Identity of a metric, shared by all runs that have it.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Stable key: `generator.pps`, `hop1.rx_pps`, `receiver.latency_p99`.
    pub key: String,
    /// Row label: `MCR-1 Ingress`.
    pub label: String,
    pub unit: Unit,
    pub better: Better,
}

/// One metric's value in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub metric: Metric,
    pub value: f64,
    pub origin: Origin,
}

fn metric(key: impl Into<String>, label: impl Into<String>, unit: Unit, better: Better) -> Metric {
    Metric {
        key: key.into(),
        label: label.into(),
        unit,
        better,
    }
}

fn ratio(num: u64, den: u64, scale: f64) -> Option<(f64, Origin)> {
    (den > 0).then(|| {
        (
            num as f64 / den as f64 * scale,
            Origin::Computed {
                numerator: num,
                denominator: Denominator::Packets(den),
            },
        )
    })
}

fn per_second(num: u64, ns: u64) -> Option<(f64, Origin)> {
    (ns > 0).then(|| {
        (
            num as f64 * 1e9 / ns as f64,
            Origin::Computed {
                numerator: num,
                denominator: Denominator::Duration(ns),
            },
        )
    })
}

/// A rate from a counter over a duration, else the rate the source printed.
fn rate(count: Option<u64>, ns: Option<u64>, printed: Option<f64>) -> Option<(f64, Origin)> {
    count
        .zip(ns)
        .and_then(|(n, ns)| per_second(n, ns))
        .or_else(|| reported(printed))
}

fn reported(v: Option<f64>) -> Option<(f64, Origin)> {
    v.map(|x| (x, Origin::Reported))
}

/// The duration hop rates are computed over.
pub fn hop_duration(rec: &RunRecord, hop: &Hop) -> Option<u64> {
    rec.duration_ns.or(hop.duration_ns)
}

/// The duration the generator's rate is computed over.
fn generator_duration(rec: &RunRecord) -> Option<u64> {
    rec.generator
        .as_ref()
        .and_then(|g| g.elapsed_ns)
        .or(rec.duration_ns)
}

/// CPU time of a hop: process user+system if known, else the perf task clock of its workers.
pub fn hop_cpu_ns(hop: &Hop) -> Option<u64> {
    hop.cpu
        .as_ref()
        .and_then(|c| c.total_ns())
        .or_else(|| hop.perf.get("task_clock_ns").and_then(|m| m.count()))
}

/// Packets that made it through the whole pipeline: the receiver's count, else the last hop's sends.
pub fn delivered(rec: &RunRecord) -> Option<u64> {
    rec.receiver
        .as_ref()
        .and_then(|r| r.received)
        .or_else(|| rec.hops.last().and_then(|h| h.counters.tx_sent))
}

/// Every metric the record has a value for, in report order.
pub fn metrics(rec: &RunRecord) -> Vec<Value> {
    let mut out = Vec::new();
    let mut push = |m: Metric, v: Option<(f64, Origin)>| {
        if let Some((value, origin)) = v {
            out.push(Value {
                metric: m,
                value,
                origin,
            });
        }
    };
    if let Some(g) = &rec.generator {
        push(
            metric(
                "generator.pps",
                "Traffic Generator",
                Unit::Pps,
                Better::Neither,
            ),
            rate(g.sent, generator_duration(rec), g.reported_pps),
        );
    }
    for (i, hop) in rec.hops.iter().enumerate() {
        let k = format!("hop{}", i + 1);
        let c = &hop.counters;
        let d = hop_duration(rec, hop);
        push(
            metric(
                format!("{k}.rx_pps"),
                format!("{} Ingress", hop.name),
                Unit::Pps,
                Better::Higher,
            ),
            rate(c.rx, d, hop.reported.rx_pps),
        );
        push(
            metric(
                format!("{k}.tx_pps"),
                format!("{} Egress", hop.name),
                Unit::Pps,
                Better::Higher,
            ),
            rate(c.tx_sent, d, hop.reported.tx_pps),
        );
        push(
            metric(
                format!("{k}.buf_exhaust_pct"),
                format!("{} Buffer Exhaustion", hop.name),
                Unit::Percent,
                Better::Lower,
            ),
            // Of the copies egress had to send (with fan-out, more than were received).
            c.buf_exhaust
                .zip(c.output_copies.or(c.rx))
                .and_then(|(n, d)| ratio(n, d, 100.0))
                .or_else(|| reported(hop.reported.buf_exhaust_pct)),
        );
        push(
            metric(
                format!("{k}.kernel_drop_pct"),
                format!("{} Kernel Drops", hop.name),
                Unit::Percent,
                Better::Lower,
            ),
            c.kernel_drops
                .zip(c.rx)
                .and_then(|(kd, rx)| ratio(kd, rx.checked_add(kd)?, 100.0)),
        );
        push(
            metric(
                format!("{k}.cpu_ns_per_packet"),
                format!("{} CPU per packet", hop.name),
                Unit::NsPerPacket,
                Better::Lower,
            ),
            hop_cpu_ns(hop)
                .zip(c.rx)
                .and_then(|(ns, rx)| ratio(ns, rx, 1.0)),
        );
    }
    if let Some(r) = &rec.receiver {
        let d = rec.duration_ns.or(r.elapsed_ns);
        push(
            metric(
                "receiver.pps",
                "Receiver Delivered",
                Unit::Pps,
                Better::Higher,
            ),
            rate(r.received, d, r.reported_pps),
        );
        push(
            metric(
                "receiver.loss_pct",
                "End-to-end Loss",
                Unit::Percent,
                Better::Lower,
            ),
            r.lost
                .zip(r.received)
                .and_then(|(l, n)| ratio(l, l.checked_add(n)?, 100.0)),
        );
        for p in &r.latency {
            push(
                metric(
                    format!("receiver.latency_p{}", p.percentile),
                    if p.percentile >= 100.0 {
                        "Latency max".to_string()
                    } else {
                        format!("Latency p{}", p.percentile)
                    },
                    Unit::Nanos,
                    Better::Lower,
                ),
                Some((p.latency_ns as f64, Origin::Measured)),
            );
        }
    }
    if let Some(h) = &rec.host_cpu {
        push(
            metric(
                "host.cpu_ns_per_packet",
                "Host CPU per delivered packet",
                Unit::NsPerPacket,
                Better::Lower,
            ),
            h.total_ns()
                .zip(delivered(rec))
                .and_then(|(ns, n)| ratio(ns, n, 1.0)),
        );
    }
    // Each monitored stream at each point that counted it (relays and the receiver): what it
    // lost there, and its gaps or continuity errors.
    for path in crate::stream_loss::stream_paths(rec) {
        for p in &path.points {
            let at = if p.receiver {
                "receiver".to_string()
            } else {
                rec.hops
                    .iter()
                    .position(|h| h.name == p.at)
                    .map_or_else(|| p.at.clone(), |i| format!("hop{}", i + 1))
            };
            let name = p.name();
            // The kind is in the key: an RTP stream's lost sequence numbers and an MPEG-TS
            // stream's lost TS packets are not one measure.
            let kind = match path.kind {
                crate::record::StreamKind::Rtp => "rtp",
                crate::record::StreamKind::Mpegts => "mpegts",
            };
            push(
                metric(
                    format!("stream.{}.{kind}.{at}.lost", path.rule),
                    format!("{} ({kind}) lost at {name}", path.rule),
                    Unit::Packets,
                    Better::Lower,
                ),
                Some((p.lost as f64, Origin::Measured)),
            );
            if let Some(g) = p.gaps {
                let what = match path.kind {
                    crate::record::StreamKind::Rtp => "sequence gaps",
                    crate::record::StreamKind::Mpegts => "continuity errors",
                };
                push(
                    metric(
                        format!("stream.{}.{kind}.{at}.gaps", path.rule),
                        format!("{} ({kind}) {what} at {name}", path.rule),
                        Unit::Packets,
                        Better::Lower,
                    ),
                    Some((g as f64, Origin::Measured)),
                );
            }
        }
    }
    if let Some(s) = &rec.sweep {
        push(
            metric(
                "sweep.zero_loss_pps",
                "Zero-loss Rate",
                Unit::Pps,
                Better::Higher,
            ),
            s.zero_loss_pps.map(|v| (v as f64, Origin::Measured)),
        );
    }
    out
}

/// What the generator offered the first hop: data plus the end markers, which relays and veth
/// count like data (when the record knows how many were sent).
pub fn offered(rec: &RunRecord) -> Option<u64> {
    let g = rec.generator.as_ref()?;
    g.sent?.checked_add(g.end_markers_sent.unwrap_or(0))
}

/// The share of the offered traffic each hop received and sent on: what stays comparable when
/// runs were offered different loads (a rate then says more about the generator than the
/// relay). From counters, else from the rates the sources printed (marked reported).
pub fn shares(rec: &RunRecord) -> Vec<Value> {
    let mut out = Vec::new();
    let offered = offered(rec);
    let gen_rate = metrics(rec)
        .into_iter()
        .find(|v| v.metric.key == "generator.pps")
        .map(|v| v.value);
    for (i, hop) in rec.hops.iter().enumerate() {
        let k = format!("hop{}", i + 1);
        let c = &hop.counters;
        for (key, what, count, printed) in [
            ("received_pct", "Received", c.rx, hop.reported.rx_pps),
            ("sent_on_pct", "Sent on", c.tx_sent, hop.reported.tx_pps),
        ] {
            let v = count
                .zip(offered)
                .and_then(|(n, off)| ratio(n, off, 100.0))
                .or_else(|| {
                    let (p, g) = (printed?, gen_rate?);
                    (g > 0.0).then(|| (p / g * 100.0, Origin::Reported))
                });
            if let Some((value, origin)) = v {
                out.push(Value {
                    metric: metric(
                        format!("{k}.{key}"),
                        format!("{} {what} (% of offered)", hop.name),
                        Unit::Percent,
                        Better::Higher,
                    ),
                    value,
                    origin,
                });
            }
        }
    }
    out
}

/// True for the keys of [`shares`].
pub fn is_share(key: &str) -> bool {
    key.ends_with(".received_pct") || key.ends_with(".sent_on_pct")
}

/// Position of a metric in reports: generator, then each hop in pipeline order, then the
/// Which direction is better for the metric with `key` and `unit`, as [`metrics`] defines it:
/// the generator's rate is an input, rates are better higher, and everything else (losses,
/// exhaustion, CPU per packet, latency) lower. For values read back without their record (a
/// history's rows).
pub fn better_of(key: &str, unit: Unit) -> Better {
    match (key, unit) {
        ("generator.pps", _) => Better::Neither,
        (_, Unit::Pps) => Better::Higher,
        _ => Better::Lower,
    }
}

/// receiver (latency percentiles ascending), host and sweep.
pub fn rank(key: &str) -> f64 {
    const HOP_METRICS: [&str; 7] = [
        "rx_pps",
        "received_pct",
        "tx_pps",
        "sent_on_pct",
        "buf_exhaust_pct",
        "kernel_drop_pct",
        "cpu_ns_per_packet",
    ];
    let (section, name) = key.split_once('.').unwrap_or((key, ""));
    if let Some(n) = section
        .strip_prefix("hop")
        .and_then(|n| n.parse::<f64>().ok())
    {
        let sub = HOP_METRICS.iter().position(|m| *m == name).unwrap_or(9);
        return 1_000.0 + n * 10.0 + sub as f64;
    }
    match (section, name) {
        ("generator", _) => 0.0,
        ("receiver", "pps") => 100_000.0,
        ("receiver", "loss_pct") => 100_001.0,
        ("receiver", p) => {
            100_002.0
                + p.trim_start_matches("latency_p")
                    .parse::<f64>()
                    .unwrap_or(0.0)
        }
        ("host", _) => 200_000.0,
        ("stream", rest) => {
            // After the receiver, by point along the chain (hops, then the receiver).
            let at = rest.split('.').rev().nth(1).unwrap_or("");
            let hop = at
                .strip_prefix("hop")
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(1_000.0);
            150_000.0 + hop + if rest.ends_with(".gaps") { 0.5 } else { 0.0 }
        }
        _ => 300_000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn better_of_agrees_with_every_metric_of_a_pipeline_record() {
        let text = include_str!("../tests/fixtures/pipeline/mcrd-3h-80000pps.json");
        let rec = RunRecord::parse(std::path::Path::new("fixture"), text).unwrap();
        let values = metrics(&rec);
        assert!(values.len() > 20);
        for v in values {
            assert_eq!(
                better_of(&v.metric.key, v.metric.unit),
                v.metric.better,
                "{}",
                v.metric.key
            );
        }
    }
    use crate::record::{Generator, HopCounters, Reported};

    fn seed_after() -> RunRecord {
        let mut r = RunRecord::new("after");
        r.duration_ns = Some(14_430_000_000);
        r.generator = Some(Generator {
            sent: Some(10_000_000),
            elapsed_ns: Some(14_430_000_000),
            reported_pps: Some(692_879.0),
            ..Default::default()
        });
        r.hops.push(Hop {
            name: "MCR-1".into(),
            counters: HopCounters {
                rx: Some(9_940_000),
                tx_sent: Some(1_405_182),
                buf_exhaust: Some(8_534_699),
                ..Default::default()
            },
            ..Default::default()
        });
        r
    }

    fn get(v: &[Value], key: &str) -> f64 {
        v.iter().find(|x| x.metric.key == key).unwrap().value
    }

    #[test]
    fn seed_calculated_rates() {
        let m = metrics(&seed_after());
        assert_eq!(get(&m, "hop1.rx_pps").round(), 688_843.0);
        assert_eq!(get(&m, "hop1.tx_pps").round(), 97_379.0);
        assert_eq!((get(&m, "hop1.buf_exhaust_pct") * 100.0).round(), 8586.0);
        assert_eq!(
            get(&m, "generator.pps").round(),
            693_001.0,
            "computed, not the printed rate"
        );
        assert!(
            m.iter().all(|v| v.metric.key != "hop1.kernel_drop_pct"),
            "unknown stays unknown"
        );
    }

    #[test]
    fn each_monitored_stream_has_its_loss_at_each_point_as_metrics() {
        let mut rec = seed_after();
        assert!(metrics(&rec)
            .iter()
            .all(|v| !v.metric.key.starts_with("stream.")));
        let flow: crate::record::MonitoredFlow = serde_json::from_value(serde_json::json!({
            "rule": "cam.1", "kind": "rtp", "input": "239.1.1.1:5000",
            "outputs": ["239.2.2.2:5000"], "datagrams": 1000, "foreign": 0, "gaps": 2,
            "lost": 5, "repeats": 0, "dropped": 0
        }))
        .unwrap();
        rec.hops[0].streams.push(flow);
        let v = metrics(&rec);
        let lost = v
            .iter()
            .find(|v| v.metric.key == "stream.cam.1.rtp.hop1.lost")
            .unwrap();
        assert_eq!((lost.value, lost.metric.unit), (5.0, Unit::Packets));
        assert_eq!(lost.metric.better, Better::Lower);
        assert_eq!(get(&v, "stream.cam.1.rtp.hop1.gaps"), 2.0);
        assert!(rank("stream.cam.1.rtp.hop1.lost") > rank("receiver.latency_p99"));
        assert!(rank("stream.cam.1.rtp.hop1.lost") < rank("stream.cam.1.rtp.receiver.lost"));
    }

    #[test]
    fn report_order() {
        let keys = [
            "receiver.pps",
            "hop2.rx_pps",
            "hop1.tx_pps",
            "hop1.rx_pps",
            "generator.pps",
            "hop10.rx_pps",
        ];
        let mut sorted = keys.to_vec();
        sorted.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
        assert_eq!(
            sorted,
            [
                "generator.pps",
                "hop1.rx_pps",
                "hop1.tx_pps",
                "hop2.rx_pps",
                "hop10.rx_pps",
                "receiver.pps"
            ]
        );
    }

    #[test]
    fn reported_rate_is_used_only_without_counters() {
        let mut r = RunRecord::new("phase4");
        r.hops.push(Hop {
            name: "MCR-1".into(),
            reported: Reported {
                rx_pps: Some(490_000.0),
                ..Default::default()
            },
            ..Default::default()
        });
        let m = metrics(&r);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].value, 490_000.0);
        assert_eq!(m[0].origin, Origin::Reported);
    }
}
