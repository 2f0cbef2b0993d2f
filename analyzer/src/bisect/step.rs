//! One step of a bisection: is a candidate commit's set of runs like the known-good endpoint's,
//! like the known-bad endpoint's, or can the repeats not say?
//!
//! The rule, on one metric, with `compare`'s own verdicts ([`compare::judge`]): the candidate is
//! *good* when it differs from bad in the direction good does and does not differ from good;
//! *bad* symmetrically; anything else is *undecided* (both within noise, both different, a
//! "cannot tell", or endpoints that do not differ). A bisection built on it never guesses: an
//! undecided step asks for more repeats or stops.

use crate::compare::{self, Decision, Judgement, Settings, Verdict};
use crate::error::{Error, Result};
use crate::metrics::Metric;
use crate::record::RunRecord;
use crate::stats::mannwhitney;
use crate::table::Table;

/// The answer of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Good,
    Bad,
    Undecided,
}

impl Answer {
    /// `good`, `bad` or `undecided`, as the JSON record and the text name it.
    pub fn name(self) -> &'static str {
        match self {
            Answer::Good => "good",
            Answer::Bad => "bad",
            Answer::Undecided => "undecided",
        }
    }
}

/// One side judged against another on the step's metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Side {
    pub judgement: Judgement,
    /// Samples of the reference side (an endpoint).
    pub n_reference: usize,
    /// Samples of the other side.
    pub n_other: usize,
}

impl Side {
    /// The Mann-Whitney p-value, when the verdict came from the test.
    pub fn p(&self) -> Option<f64> {
        match self.judgement.decision {
            Decision::MannWhitney { p, .. } => Some(p),
            _ => None,
        }
    }

    /// True when the verdict says the two sides differ.
    pub fn differs(&self) -> bool {
        matches!(
            self.judgement.verdict,
            Verdict::Improved | Verdict::Regressed
        )
    }

    /// The sign of the change, 0 when there is none to compute.
    pub fn sign(&self) -> f64 {
        self.judgement.change.map_or(0.0, f64::signum)
    }
}

/// A step's answer with the numbers that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub metric: Metric,
    pub answer: Answer,
    /// Bad against good: the change being bisected.
    pub endpoints: Side,
    /// The candidate against good.
    pub against_good: Side,
    /// The candidate against bad.
    pub against_bad: Side,
    /// When a verdict was "cannot tell": how many more repeats of every side would let the
    /// test reach `alpha` at all.
    pub more_repeats: Option<usize>,
    /// Why: which of the rules below gave the answer (`render::bisect` words it).
    pub reason: Reason,
}

/// The rule that gave a step's answer, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Undecided: too few repeats to tell the endpoints apart at all.
    EndpointsCannotTell,
    /// Undecided: the endpoints do not differ on this metric; nothing to bisect.
    EndpointsSame,
    /// Good: differs from bad as good does, and not from good.
    LikeGood,
    /// Bad: differs from good as bad does, and not from bad.
    LikeBad,
    /// Undecided: a test cannot reach alpha with these repeats.
    TooFewRepeats,
    /// Undecided: differs from both endpoints (between them, or a change of its own).
    DiffersFromBoth,
    /// Undecided: differs from neither beyond noise.
    DiffersFromNeither,
    /// Undecided: differs from one endpoint in the direction away from the other.
    AwayFromTheOther,
}

/// The upper bound of the search for [`more_repeats`]: beyond it the answer is "many".
const MORE_REPEATS_SEARCH: usize = 64;

/// The smallest `k` such that `n1 + k` against `n2 + k` samples can reach `alpha`.
pub fn more_repeats(n1: usize, n2: usize, alpha: f64) -> Option<usize> {
    (0..=MORE_REPEATS_SEARCH).find(|&k| mannwhitney::smallest_p(n1 + k, n2 + k) < alpha)
}

/// The samples of `key` in each set, and the metric (from the table of all three sets).
struct Samples {
    metric: Metric,
    values: [Vec<f64>; 3],
}

fn samples(table: &Table, metric: &Metric) -> Result<Samples> {
    let mut values: [Vec<f64>; 3] = Default::default();
    for (set, v) in values.iter_mut().enumerate() {
        *v = table.values(set, &metric.key);
        if v.is_empty() {
            let which = ["good", "bad", "candidate"][set];
            return Err(Error::Usage(format!(
                "metric `{}`: the {which} records have no value of it; pick a metric all \
                 three sides measure (--metric)",
                metric.key
            )));
        }
    }
    Ok(Samples {
        metric: metric.clone(),
        values,
    })
}

/// Whether `m` is CPU time per packet (a hop's, the host's): the work done per packet, which a
/// busy or drifting machine moves far less than rates and latency percentiles, which are ruled
/// by scheduling (`reports/bisect-proof.md`: a latency metric made a comment-only commit
/// undecided where CPU per packet decided every step).
fn is_cpu_per_packet(m: &Metric) -> bool {
    m.key.ends_with(".cpu_ns_per_packet") || m.key.ends_with(".host_ns_per_packet")
}

/// The metric whose change made bad bad: a judged regression from good to bad before a "cannot
/// tell" change in the worse direction (so that the step asks for more repeats instead of
/// failing); among those, CPU time per packet first, then the largest change. `None` when bad
/// is not worse than good on any metric.
pub fn default_metric(table: &Table, s: &Settings) -> Result<Option<Metric>> {
    let mut best: Option<((u8, bool), f64, Metric)> = None;
    for m in &table.metrics {
        let (g, b) = (table.values(0, &m.key), table.values(1, &m.key));
        if g.is_empty() || b.is_empty() || table.values(2, &m.key).is_empty() {
            continue;
        }
        let j = compare::judge(m, &g, &b, s);
        let worse = (j.change.unwrap_or(0.0) > 0.0) != (m.better == crate::metrics::Better::Higher);
        let rank = match j.verdict {
            Verdict::Regressed => (2, is_cpu_per_packet(m)),
            Verdict::CannotTell if worse => (1, is_cpu_per_packet(m)),
            _ => continue,
        };
        let size = j.change.unwrap_or(0.0).abs();
        if best
            .as_ref()
            .is_none_or(|(r, c, _)| (rank, size) > (*r, *c))
        {
            best = Some((rank, size, m.clone()));
        }
    }
    Ok(best.map(|b| b.2))
}

/// Judges `candidate` between `good` and `bad` on `metric` (a key as in `compare`; `None`:
/// [`default_metric`]).
pub fn step(
    good: &[RunRecord],
    bad: &[RunRecord],
    candidate: &[RunRecord],
    metric: Option<&str>,
    s: &Settings,
) -> Result<Step> {
    for (what, set) in [("good", good), ("bad", bad), ("candidate", candidate)] {
        if set.is_empty() {
            return Err(Error::Usage(format!("bisect-step: no {what} record given")));
        }
    }
    let sets = [good.to_vec(), bad.to_vec(), candidate.to_vec()];
    let table = Table::build(&sets, false);
    let m = match metric {
        Some(key) => table
            .metrics
            .iter()
            .find(|m| m.key == key)
            .cloned()
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--metric {key}: no such metric in these records (keys as in `compare \
                     --json`, e.g. receiver.pps, hop1.host_ns_per_packet)"
                ))
            })?,
        None => default_metric(&table, s)?.ok_or_else(|| {
            Error::Usage(
                "the bad records are not worse than the good ones on any metric, so there is \
                 nothing to bisect; give more repeats or name one with --metric"
                    .into(),
            )
        })?,
    };
    for (a, b, what) in [(0, 1, "bad"), (0, 2, "candidate"), (1, 2, "candidate")] {
        let c = crate::conditions::Conditions::between(&sets[a], &sets[b], s.load_tolerance_pct);
        if let Some(cond) = c.excluding(&m) {
            return Err(Error::Usage(format!(
                "metric `{}`: the {what} runs are not comparable with the {} ones ({cond:?} \
                 differs); run every commit with the same configuration",
                m.key,
                ["good", "bad"][a]
            )));
        }
    }
    let sm = samples(&table, &m)?;
    Ok(decide(sm.metric, &sm.values, s))
}

fn side(m: &Metric, reference: &[f64], other: &[f64], s: &Settings) -> Side {
    Side {
        judgement: compare::judge(m, reference, other, s),
        n_reference: reference.len(),
        n_other: other.len(),
    }
}

/// The rule itself, on the samples `[good, bad, candidate]`.
pub fn decide(metric: Metric, v: &[Vec<f64>; 3], s: &Settings) -> Step {
    let endpoints = side(&metric, &v[0], &v[1], s);
    let against_good = side(&metric, &v[0], &v[2], s);
    let against_bad = side(&metric, &v[1], &v[2], s);
    let cannot_tell = [endpoints, against_good, against_bad]
        .iter()
        .any(|x| x.judgement.verdict == Verdict::CannotTell);
    let more = cannot_tell
        .then(|| {
            [endpoints, against_good, against_bad]
                .iter()
                .filter(|x| x.judgement.verdict == Verdict::CannotTell)
                .filter_map(|x| more_repeats(x.n_reference, x.n_other, s.alpha))
                .max()
        })
        .flatten();
    let (answer, reason) = if !endpoints.differs() {
        let why = if endpoints.judgement.verdict == Verdict::CannotTell {
            Reason::EndpointsCannotTell
        } else {
            Reason::EndpointsSame
        };
        (Answer::Undecided, why)
    } else if against_bad.differs()
        && against_bad.sign() == -endpoints.sign()
        && against_good.judgement.verdict == Verdict::WithinNoise
    {
        (Answer::Good, Reason::LikeGood)
    } else if against_good.differs()
        && against_good.sign() == endpoints.sign()
        && against_bad.judgement.verdict == Verdict::WithinNoise
    {
        (Answer::Bad, Reason::LikeBad)
    } else if cannot_tell {
        (Answer::Undecided, Reason::TooFewRepeats)
    } else if against_good.differs() && against_bad.differs() {
        (Answer::Undecided, Reason::DiffersFromBoth)
    } else if !against_good.differs() && !against_bad.differs() {
        (Answer::Undecided, Reason::DiffersFromNeither)
    } else {
        (Answer::Undecided, Reason::AwayFromTheOther)
    };
    Step {
        metric,
        answer,
        endpoints,
        against_good,
        against_bad,
        more_repeats: more,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Better, Unit};

    fn pps() -> Metric {
        Metric {
            key: "hop1.tx_pps".into(),
            label: "MCR-1 Egress".into(),
            unit: Unit::Pps,
            better: Better::Higher,
        }
    }

    /// Five samples around `center`, spread ±0.5%.
    fn around(center: f64) -> Vec<f64> {
        [-0.5, -0.2, 0.0, 0.3, 0.5]
            .iter()
            .map(|d| center * (1.0 + d / 100.0))
            .collect()
    }

    fn decide3(g: f64, b: f64, c: f64) -> Step {
        decide(
            pps(),
            &[around(g), around(b), around(c)],
            &Settings::default(),
        )
    }

    /// One run whose hop forwards 1,000,000 packets at `pps` and spends `cpu_ms` doing it.
    fn run_with_cpu(pps: f64, cpu_ms: u64) -> RunRecord {
        let mut r = RunRecord::new("r");
        r.duration_ns = Some(1_000_000_000);
        r.hops.push(crate::record::Hop {
            name: "MCR-1".into(),
            counters: crate::record::HopCounters {
                rx: Some(1_000_000),
                tx_sent: Some(pps as u64),
                ..Default::default()
            },
            cpu: Some(crate::record::ProcessCpu {
                user_ns: Some(cpu_ms * 1_000_000),
                system_ns: Some(0),
            }),
            ..Default::default()
        });
        r
    }

    /// Five runs at `pps`, spending about `cpu_ms` each (spread as [`around`]).
    fn runs_with_cpu(pps: f64, cpu_ms: f64) -> Vec<RunRecord> {
        around(cpu_ms)
            .iter()
            .map(|&c| run_with_cpu(pps, c as u64))
            .collect()
    }

    /// The metric `bisect-step` would choose between `good` and `bad`.
    fn chosen(good: Vec<RunRecord>, bad: Vec<RunRecord>) -> String {
        let table = Table::build(&[good.clone(), bad, good], false);
        default_metric(&table, &Settings::default())
            .unwrap()
            .unwrap()
            .key
    }

    #[test]
    fn the_chosen_metric_is_cpu_per_packet_when_it_regressed_even_by_less() {
        // Bad sends 40% fewer packets and spends 20% more CPU per packet: both regressed.
        let good = || runs_with_cpu(900_000.0, 1000.0);
        let m = chosen(good(), runs_with_cpu(540_000.0, 1200.0));
        assert_eq!(m, "hop1.cpu_ns_per_packet");
        // Where CPU per packet did not change, the largest regression is taken.
        let m = chosen(good(), runs_with_cpu(540_000.0, 1000.0));
        assert_ne!(m, "hop1.cpu_ns_per_packet");
    }

    #[test]
    fn like_good_is_good_like_bad_is_bad() {
        assert_eq!(decide3(1000.0, 800.0, 1001.0).answer, Answer::Good);
        assert_eq!(decide3(1000.0, 800.0, 799.0).answer, Answer::Bad);
    }

    #[test]
    fn works_for_an_improvement_being_bisected_too() {
        // "bad" is just the other endpoint: the rule follows its direction.
        assert_eq!(decide3(800.0, 1000.0, 800.0).answer, Answer::Good);
        assert_eq!(decide3(800.0, 1000.0, 1000.0).answer, Answer::Bad);
    }

    #[test]
    fn in_between_or_beyond_is_undecided() {
        let s = decide3(1000.0, 800.0, 900.0);
        assert_eq!(s.answer, Answer::Undecided);
        assert_eq!(s.reason, Reason::DiffersFromBoth);
        // Worse than bad: differs from good as bad does, but also from bad.
        assert_eq!(decide3(1000.0, 800.0, 600.0).answer, Answer::Undecided);
        // Better than good.
        assert_eq!(decide3(1000.0, 800.0, 1200.0).answer, Answer::Undecided);
    }

    #[test]
    fn endpoints_that_do_not_differ_decide_nothing() {
        let s = decide3(1000.0, 1001.0, 1000.0);
        assert_eq!(s.answer, Answer::Undecided);
        assert_eq!(s.reason, Reason::EndpointsSame);
    }

    #[test]
    fn too_few_repeats_say_how_many_more() {
        let v = [
            vec![1000.0, 1001.0],
            vec![800.0, 801.0],
            vec![1000.5, 999.0],
        ];
        let s = decide(pps(), &v, &Settings::default());
        assert_eq!(s.answer, Answer::Undecided);
        // 2 + 2 cannot reach 0.05 (smallest p 0.33); 4 + 4 can (0.029).
        assert_eq!(s.more_repeats, Some(2));
        assert_eq!(s.reason, Reason::EndpointsCannotTell);
        let words = crate::render::bisect::reason(&s);
        assert!(words.contains("2 more repeats"), "{words}");
    }

    #[test]
    fn more_repeats_is_the_smallest_that_can_reach_alpha() {
        assert_eq!(more_repeats(5, 5, 0.05), Some(0));
        assert_eq!(more_repeats(2, 2, 0.05), Some(2));
        assert!(mannwhitney::smallest_p(3, 3) >= 0.05);
    }
}
