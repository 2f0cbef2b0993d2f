//! Whether two runs can be judged against each other: like is compared with like.
//!
//! A rate measured under another offered load is not evidence of anything: a relay that
//! forwards every one of 100k pps has not regressed against one that forwarded 490k of 733k.
//! So before any verdict, the conditions that change what a metric means are compared:
//!
//! | Condition | Differs when | Not judged then |
//! |---|---|---|
//! | offered load | the generator's rate is more than the tolerance (10%) off the baseline's | rates, CPU per packet, latency |
//! | datagram size | `configuration.generator.size` (or payload bytes per datagram) differs | rates, CPU per packet, latency |
//! | duration | one run's `duration_ns` is more than twice the other's | rates |
//! | hops | `configuration.harness.hops` differs | end-to-end metrics (receiver, host CPU per delivered packet) |
//! | topology | `configuration.harness.topology` differs | end-to-end metrics |
//!
//! What stays comparable is judged as ever: the share of the offered traffic each hop received
//! and sent on (rows added to the report when the load differs), buffer exhaustion, kernel drops
//! and end-to-end loss. A condition is compared only where both runs' records state it: one that
//! either did not record is not a difference (the analyzer cannot tell, and says nothing). The
//! hop count in particular is the harness's (`configuration.harness.hops`), never the number of
//! hops a record happens to list counters for.

use crate::metrics::{self, Metric, Unit};
use crate::record::{RunRecord, Setting};
use crate::stats::median;

/// Default tolerance on offered load, percent of the baseline's. The generator's achieved rate
/// moves by a few percent between runs of one test on a shared machine (the seed's runs of
/// one test: 733k, 779k and 693k pps, within 6% of the first), and a run meant to be at
/// another rate (5k or 100k pps against 733k) is far outside.
pub const LOAD_TOLERANCE_PCT: f64 = 10.0;

/// Factor between durations beyond which rates are not compared: a short run's rates include
/// its start and the bursts a ring absorbs.
const DURATION_FACTOR: f64 = 2.0;

/// A condition of a run that changes what its metrics mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    OfferedLoad,
    DatagramSize,
    Duration,
    Hops,
    Topology,
}

impl Condition {
    /// The condition in words: `offered load`, `hop count`.
    pub fn name(self) -> &'static str {
        match self {
            Condition::OfferedLoad => "offered load",
            Condition::DatagramSize => "datagram size",
            Condition::Duration => "duration",
            Condition::Hops => "hop count",
            Condition::Topology => "topology",
        }
    }

    /// True when a metric measured under a different value of this condition means something
    /// else.
    fn affects(self, m: &Metric) -> bool {
        let class = Class::of(m);
        match self {
            Condition::OfferedLoad | Condition::DatagramSize => {
                matches!(class, Class::Rate | Class::CpuPerPacket | Class::Latency)
                    || (self == Condition::DatagramSize && class == Class::SearchedRate)
            }
            Condition::Duration => class == Class::Rate,
            Condition::Hops | Condition::Topology => end_to_end(m),
        }
    }
}

/// What kind of quantity a metric is, for the rules above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The generator's rate: an input, never judged anyway.
    Input,
    /// Packets per second through a hop or to the receiver.
    Rate,
    /// A rate found by a search (`sweep`): independent of the offered load.
    SearchedRate,
    /// A share of packets (loss, exhaustion, delivered of offered).
    Fraction,
    CpuPerPacket,
    Latency,
}

impl Class {
    fn of(m: &Metric) -> Class {
        if m.key == "generator.pps" {
            return Class::Input;
        }
        if m.key.starts_with("sweep.") {
            return Class::SearchedRate;
        }
        match m.unit {
            Unit::Pps => Class::Rate,
            Unit::Percent => Class::Fraction,
            Unit::NsPerPacket => Class::CpuPerPacket,
            Unit::Nanos => Class::Latency,
            // A count of lost packets grows with what was sent, as a loss share does not;
            // both depend on the load.
            Unit::Packets => Class::Fraction,
        }
    }
}

/// Metrics of the whole pipeline rather than of one hop.
fn end_to_end(m: &Metric) -> bool {
    m.key.starts_with("receiver.")
        || m.key.starts_with("host.")
        || (m.key.starts_with("stream.")
            && (m.key.ends_with(".receiver.lost") || m.key.ends_with(".receiver.gaps")))
}

/// One side of a differing condition, in its unit (`render::sentences::condition_value`
/// writes it).
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionValue {
    /// A rate, packets per second.
    Pps(f64),
    /// A datagram's size, bytes.
    Bytes(u64),
    /// A run's duration, ns.
    Duration(u64),
    /// A count (hops).
    Count(u64),
    /// A setting as the record states it (topology).
    Text(String),
}

/// One condition that differs, with both sides' values.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub condition: Condition,
    pub baseline: ConditionValue,
    pub run: ConditionValue,
}

/// The conditions of one run against its reference.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    pub mismatches: Vec<Mismatch>,
}

impl Conditions {
    /// Compares the conditions of two sample sets (their median offered load, and the first
    /// record's configuration, which repeats of one configuration share).
    pub fn between(base: &[RunRecord], run: &[RunRecord], load_tolerance_pct: f64) -> Self {
        let mut mismatches = Vec::new();
        let (b, r) = (&base[0], &run[0]);
        if let (Some(lb), Some(lr)) = (offered_load(base), offered_load(run)) {
            if lb > 0.0 && ((lr / lb - 1.0) * 100.0).abs() > load_tolerance_pct {
                mismatches.push(Mismatch {
                    condition: Condition::OfferedLoad,
                    baseline: ConditionValue::Pps(lb),
                    run: ConditionValue::Pps(lr),
                });
            }
        }
        if let (Some(sb), Some(sr)) = (datagram_size(b), datagram_size(r)) {
            if sb != sr {
                mismatches.push(Mismatch {
                    condition: Condition::DatagramSize,
                    baseline: ConditionValue::Bytes(sb),
                    run: ConditionValue::Bytes(sr),
                });
            }
        }
        if let (Some(db), Some(dr)) = (b.duration_ns, r.duration_ns) {
            let (lo, hi) = (db.min(dr) as f64, db.max(dr) as f64);
            if lo > 0.0 && hi / lo > DURATION_FACTOR {
                mismatches.push(Mismatch {
                    condition: Condition::Duration,
                    baseline: ConditionValue::Duration(db),
                    run: ConditionValue::Duration(dr),
                });
            }
        }
        if let (Some(hb), Some(hr)) = (hop_count(b), hop_count(r)) {
            if hb != hr {
                mismatches.push(Mismatch {
                    condition: Condition::Hops,
                    baseline: ConditionValue::Count(hb),
                    run: ConditionValue::Count(hr),
                });
            }
        }
        let topology = |rec: &RunRecord| rec.configuration.harness.get("topology").map(show);
        if let (Some(tb), Some(tr)) = (topology(b), topology(r)) {
            if tb != tr {
                mismatches.push(Mismatch {
                    condition: Condition::Topology,
                    baseline: ConditionValue::Text(tb),
                    run: ConditionValue::Text(tr),
                });
            }
        }
        Conditions { mismatches }
    }

    /// The first differing condition that makes `m` incomparable, if any.
    pub fn excluding(&self, m: &Metric) -> Option<Condition> {
        self.mismatches
            .iter()
            .map(|x| x.condition)
            .find(|c| c.affects(m))
    }

    /// True when the offered traffic's size or rate differs, so the shares of offered traffic
    /// are what can be judged in place of the rates.
    pub fn load_differs(&self) -> bool {
        self.mismatches.iter().any(|x| {
            matches!(
                x.condition,
                Condition::OfferedLoad | Condition::DatagramSize | Condition::Duration
            )
        })
    }
}

fn show(v: &Setting) -> String {
    match v {
        Setting::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The median generator rate of a set (computed, else as printed).
pub fn offered_load(set: &[RunRecord]) -> Option<f64> {
    let v: Vec<f64> = set
        .iter()
        .filter_map(|r| {
            metrics::metrics(r)
                .into_iter()
                .find(|v| v.metric.key == "generator.pps")
                .map(|v| v.value)
        })
        .collect();
    (!v.is_empty()).then(|| median(&v))
}

/// The number of relays the run's pipeline had, as the harness states it
/// (`configuration.harness.hops`). Not the length of `hops[]`: that is the hops whose counters
/// the sources gave (the seed's report printed MCR-1 alone for a three-hop run), so two runs of
/// one pipeline can list different hops, and a run that lists none may still have had some.
fn hop_count(rec: &RunRecord) -> Option<u64> {
    rec.configuration
        .harness
        .get("hops")
        .and_then(Setting::as_u64)
}

/// UDP payload bytes per datagram: the configured size, else payload bytes over datagrams sent.
fn datagram_size(rec: &RunRecord) -> Option<u64> {
    rec.configuration
        .generator
        .get("size")
        .and_then(Setting::as_u64)
        .or_else(|| {
            let g = rec.generator.as_ref()?;
            let (bytes, sent) = (g.payload_bytes?, g.sent?);
            (sent > 0 && bytes % sent == 0).then(|| bytes / sent)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Better;
    use crate::record::{Generator, Hop};

    fn rec(sent: u64, hops: usize) -> RunRecord {
        let mut r = RunRecord::new("r");
        r.duration_ns = Some(1_000_000_000);
        r.generator = Some(Generator {
            sent: Some(sent),
            elapsed_ns: Some(1_000_000_000),
            ..Default::default()
        });
        for i in 0..hops {
            r.hops.push(Hop {
                name: format!("MCR-{}", i + 1),
                ..Default::default()
            });
        }
        r
    }

    fn m(key: &str, unit: Unit) -> Metric {
        Metric {
            key: key.into(),
            label: key.into(),
            unit,
            better: Better::Higher,
        }
    }

    #[test]
    fn load_within_tolerance_is_equal() {
        let c = Conditions::between(&[rec(733_000, 1)], &[rec(693_000, 1)], 10.0);
        assert!(c.mismatches.is_empty(), "{c:?}");
    }

    #[test]
    fn lower_load_excludes_rates_but_not_fractions() {
        let c = Conditions::between(&[rec(733_000, 1)], &[rec(100_000, 1)], 10.0);
        assert_eq!(
            crate::render::sentences::mismatch(&c.mismatches[0]),
            "offered load differs: 100k pps against 733k pps"
        );
        assert_eq!(
            c.excluding(&m("hop1.tx_pps", Unit::Pps)),
            Some(Condition::OfferedLoad)
        );
        assert_eq!(
            c.excluding(&m("hop1.cpu_ns_per_packet", Unit::NsPerPacket)),
            Some(Condition::OfferedLoad)
        );
        assert_eq!(c.excluding(&m("hop1.buf_exhaust_pct", Unit::Percent)), None);
        assert_eq!(c.excluding(&m("hop1.sent_on_pct", Unit::Percent)), None);
        assert!(c.load_differs());
    }

    /// A run whose harness states its hop count.
    fn hops_stated(sent: u64, hops: usize) -> RunRecord {
        let mut r = rec(sent, hops);
        r.configuration
            .harness
            .insert("hops".into(), Setting::from(hops));
        r
    }

    #[test]
    fn other_hop_count_excludes_end_to_end_only() {
        let c = Conditions::between(&[hops_stated(1000, 1)], &[hops_stated(1000, 3)], 10.0);
        assert_eq!(c.mismatches.len(), 1);
        assert_eq!(c.excluding(&m("hop1.tx_pps", Unit::Pps)), None);
        assert_eq!(
            c.excluding(&m("receiver.loss_pct", Unit::Percent)),
            Some(Condition::Hops)
        );
        assert!(!c.load_differs());
    }

    /// The seed's records list the hops whose counters its report printed (MCR-1 in one run,
    /// MCR-1 and MCR-2 in another, of one three-hop pipeline): that is not a hop count, and only
    /// a count both records state is compared.
    #[test]
    fn hops_listed_are_not_a_hop_count() {
        let c = Conditions::between(&[rec(1000, 1)], &[rec(1000, 2)], 10.0);
        assert!(c.mismatches.is_empty(), "{c:?}");
        let c = Conditions::between(&[hops_stated(1000, 3)], &[rec(1000, 2)], 10.0);
        assert!(c.mismatches.is_empty(), "{c:?}");
        let c = Conditions::between(&[hops_stated(1000, 3)], &[hops_stated(1000, 3)], 10.0);
        assert!(c.mismatches.is_empty(), "{c:?}");
    }

    #[test]
    fn unknown_conditions_are_not_differences() {
        let mut a = rec(1000, 1);
        a.generator = None;
        a.duration_ns = None;
        let b = rec(1000, 1);
        assert!(Conditions::between(&[a], &[b], 10.0).mismatches.is_empty());
    }

    #[test]
    fn size_and_duration() {
        let mut a = rec(1000, 1);
        a.configuration
            .generator
            .insert("size".into(), Setting::from(1400));
        let mut b = rec(1000, 1);
        b.generator.as_mut().unwrap().payload_bytes = Some(64_000);
        b.duration_ns = Some(5_000_000_000);
        b.generator.as_mut().unwrap().elapsed_ns = Some(1_000_000_000);
        let c = Conditions::between(&[a], &[b], 10.0);
        let names: Vec<Condition> = c.mismatches.iter().map(|x| x.condition).collect();
        assert_eq!(names, [Condition::DatagramSize, Condition::Duration]);
        assert_eq!(
            crate::render::sentences::mismatch(&c.mismatches[0]),
            "datagram size differs: 64 B against 1400 B"
        );
    }
}
