//! `analyzer compare`: a baseline against one or more runs, each a set of one or more samples.
//!
//! For every metric: the baseline's value, each run's value (the median when a set has several
//! samples), the change (relative, or in percentage points for percentages) and a verdict.
//! With two or more samples on both sides the verdict comes from a two-sided Mann-Whitney U test
//! at `alpha` together with a minimum effect size (a significant 0.5% shift is not a
//! regression worth a red mark); with a single sample on either side, from the threshold alone.
//! Each verdict records which rule decided it, and the report prints it.

use crate::conditions::{Condition, Conditions, LOAD_TOLERANCE_PCT};
use crate::diff::{self, Difference};
use crate::error::{Error, Result};
use crate::metrics::{self, Better, Metric, Unit};
use crate::record::RunRecord;
use crate::stats::{mannwhitney, median};
use crate::table::Table;
use crate::waterfall::{self, Waterfall};

/// Receiver loss, percent, above which a run's latency is "survivors' latency": the latency of
/// the packets that got through. A relay that drops a burst does not queue it, so heavy loss
/// can make latency look better (or, with retries upstream, worse) for reasons that are not
/// latency at all. 1% is far above the loss of a healthy run here (0 to 0.01% on veth) and
/// well below where the seed's losses were (14% to 86% per hop).
pub const SURVIVORS_LOSS_PCT: f64 = 1.0;

/// Tunables of the verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Smallest relative change, percent, that counts as a change of a rate or a time.
    pub threshold_pct: f64,
    /// Smallest change, in percentage points, of a metric that is itself a percentage (loss,
    /// buffer exhaustion). Separate because 1% -> 5% loss is a +4 pp change that matters.
    pub threshold_pp: f64,
    /// Significance level of the Mann-Whitney U test.
    pub alpha: f64,
    /// How far, percent of the baseline's, a run's offered load may be off and still count as
    /// equal (see [`crate::conditions`]).
    pub load_tolerance_pct: f64,
    /// Also compare each run with the one before it (`--chain`).
    pub chain: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            threshold_pct: 5.0,
            threshold_pp: 1.0,
            alpha: 0.05,
            load_tolerance_pct: LOAD_TOLERANCE_PCT,
            chain: false,
        }
    }
}

/// The judgement on one metric of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Improved,
    Regressed,
    WithinNoise,
    /// The change reaches the minimum effect, but the repeats are too few for the test to
    /// reach `alpha` whatever they hold (Mann-Whitney with 5 against 2: p ≥ 0.095). Not
    /// "within noise": the test could not have said otherwise, so it says nothing.
    CannotTell,
    /// Shown for context (an input of the test), never judged.
    Context,
}

/// The rule that produced a verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Single sample on at least one side: |change| >= threshold (`pp`: in percentage points).
    Threshold { threshold: f64, pp: bool },
    /// Repeats on both sides: p < alpha and |change| >= minimum effect.
    MannWhitney {
        p: f64,
        exact: bool,
        n_baseline: usize,
        n_run: usize,
        alpha: f64,
        min_effect: f64,
        pp: bool,
    },
    /// A count of lost packets against a side that lost none: any loss where the baseline's
    /// every sample lost none is a regression, and none where its every sample lost some an
    /// improvement, whatever the rates say (the size of such a change has no percent).
    LossFromNone,
    /// Not judged (context metric, or no change can be computed).
    None,
    /// Not judged: the runs differ in a condition that changes what this metric means.
    NotComparable(Condition),
}

/// How a run's value of one metric compares with the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// Percent change, or percentage points for [`Unit::Percent`]; `None` if the baseline is 0.
    pub change: Option<f64>,
    pub verdict: Verdict,
    pub decision: Decision,
}

/// One set's value of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Median over the set's samples.
    pub value: f64,
    /// Samples that had this metric.
    pub samples: usize,
    /// At least one sample had only a printed figure.
    pub reported: bool,
}

/// One metric across all sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub metric: Metric,
    /// One per set; `None` where the set has no value.
    pub cells: Vec<Option<Cell>>,
    /// One per [`Pair`] of the comparison; `None` where either side has no value.
    pub judgements: Vec<Option<Judgement>>,
}

/// Two sets judged against each other: `run` against `base` (set indices).
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub base: usize,
    pub run: usize,
    pub conditions: Conditions,
    /// The differing conditions that took at least one metric both sides have out of
    /// judgement, in order.
    pub excluded: Vec<Condition>,
}

impl Pair {
    /// True for the pairs against the baseline (the others come from `--chain`).
    pub fn against_baseline(&self) -> bool {
        self.base == 0
    }
}

/// A whole comparison, ready to render.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Column headings: record name, with its date in parentheses.
    pub labels: Vec<String>,
    /// Record names alone, for the change columns and sentences.
    pub names: Vec<String>,
    /// Samples per set.
    pub sizes: Vec<usize>,
    pub rows: Vec<Row>,
    /// The first sample of each set (for the calculated rates and waterfalls).
    pub representatives: Vec<RunRecord>,
    pub waterfalls: Vec<Waterfall>,
    pub differences: Vec<Difference>,
    /// What is judged against what: every run against the baseline, then (with `chain`) each
    /// run against the one before it.
    pub pairs: Vec<Pair>,
    pub settings: Settings,
}

impl Comparison {
    /// True when any comparable metric of any pair regressed.
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| {
            r.judgements
                .iter()
                .flatten()
                .any(|j| j.verdict == Verdict::Regressed)
        })
    }

    /// True when no metric of any pair was judged (every one context or not comparable).
    pub fn nothing_judged(&self) -> bool {
        !self
            .rows
            .iter()
            .flat_map(|r| r.judgements.iter().flatten())
            .any(|j| j.verdict != Verdict::Context)
    }
}

/// A set's heading: `After Fix (2025-11-16)`.
pub fn label(rec: &RunRecord) -> String {
    match &rec.date {
        Some(d) => format!("{} ({d})", rec.name),
        None => rec.name.clone(),
    }
}

/// Change of `run` against `base`: relative percent, or points for percentages.
pub fn change(unit: Unit, base: f64, run: f64) -> Option<f64> {
    if unit == Unit::Percent {
        Some(run - base)
    } else if base != 0.0 {
        Some((run / base - 1.0) * 100.0)
    } else {
        None
    }
}

/// Judges one metric: `base` and `run` are the samples of each side.
pub fn judge(metric: &Metric, base: &[f64], run: &[f64], s: &Settings) -> Judgement {
    if let Some(j) = judge_loss_from_none(metric, base, run) {
        return j;
    }
    let change = change(metric.unit, median(base), median(run));
    let Some(c) = change.filter(|_| metric.better != Better::Neither) else {
        return Judgement {
            change,
            verdict: Verdict::Context,
            decision: Decision::None,
        };
    };
    let pp = metric.unit == Unit::Percent;
    let threshold = if pp { s.threshold_pp } else { s.threshold_pct };
    let big = c.abs() >= threshold;
    let (significant, decision) = if base.len() >= 2 && run.len() >= 2 {
        let t = mannwhitney::test(base, run);
        (
            t.p < s.alpha,
            Decision::MannWhitney {
                p: t.p,
                exact: t.method == mannwhitney::Method::Exact,
                n_baseline: base.len(),
                n_run: run.len(),
                alpha: s.alpha,
                min_effect: threshold,
                pp,
            },
        )
    } else {
        (true, Decision::Threshold { threshold, pp })
    };
    let powerless = matches!(decision, Decision::MannWhitney { .. })
        && mannwhitney::smallest_p(base.len(), run.len()) >= s.alpha;
    let verdict = if big && powerless {
        Verdict::CannotTell
    } else if !(significant && big) {
        Verdict::WithinNoise
    } else if (c > 0.0) == (metric.better == Better::Higher) {
        Verdict::Improved
    } else {
        Verdict::Regressed
    };
    Judgement {
        change,
        verdict,
        decision,
    }
}

/// A packet count where one side lost none in every sample and the other lost some (in its
/// median): see [`Decision::LossFromNone`]. `None` when the rule does not apply.
fn judge_loss_from_none(metric: &Metric, base: &[f64], run: &[f64]) -> Option<Judgement> {
    if metric.unit != Unit::Packets || metric.better != Better::Lower {
        return None;
    }
    let none = |v: &[f64]| v.iter().all(|x| *x == 0.0);
    let verdict = if none(base) && median(run) > 0.0 {
        Verdict::Regressed
    } else if none(run) && median(base) > 0.0 {
        Verdict::Improved
    } else if median(base) == 0.0 && median(run) == 0.0 {
        // Both lost none in the middle sample: no change to size, none to report.
        Verdict::WithinNoise
    } else {
        return None;
    };
    Some(Judgement {
        change: None,
        verdict,
        decision: Decision::LossFromNone,
    })
}

/// The pairs a comparison judges: every run against the baseline, then with `chain` each run
/// against the one before it (run 1 against the baseline is already there).
fn pairs(sets: &[Vec<RunRecord>], settings: &Settings) -> Vec<Pair> {
    let mut ix: Vec<(usize, usize)> = (1..sets.len()).map(|k| (0, k)).collect();
    if settings.chain {
        ix.extend((2..sets.len()).map(|k| (k - 1, k)));
    }
    ix.into_iter()
        .map(|(base, run)| Pair {
            base,
            run,
            conditions: Conditions::between(&sets[base], &sets[run], settings.load_tolerance_pct),
            excluded: Vec::new(),
        })
        .collect()
}

/// Compares `sets[0]` (the baseline) with every other set.
pub fn compare(sets: &[Vec<RunRecord>], settings: &Settings) -> Result<Comparison> {
    if sets.len() < 2 || sets.iter().any(Vec::is_empty) {
        return Err(Error::Usage(
            "compare needs a baseline and at least one run, each with at least one record".into(),
        ));
    }
    let mut pairs = pairs(sets, settings);
    let with_shares = pairs.iter().any(|p| p.conditions.load_differs());
    let table = Table::build(sets, with_shares);
    let mut rows = Vec::new();
    for m in &table.metrics {
        let mut samples = Vec::new();
        let mut cells = Vec::new();
        for set in 0..sets.len() {
            let v = table.values(set, &m.key);
            let reported = table.any_reported(set, &m.key);
            cells.push((!v.is_empty()).then(|| Cell {
                value: median(&v),
                samples: v.len(),
                reported,
            }));
            samples.push(v);
        }
        let judgements = pairs
            .iter_mut()
            .map(|p| {
                let (b, r) = (&samples[p.base], &samples[p.run]);
                if b.is_empty() || r.is_empty() {
                    return None;
                }
                let mut j = judge(m, b, r, settings);
                if metrics::is_share(&m.key) && !p.conditions.load_differs() {
                    // At equal load a share says what the rate says: judge it once.
                    j.verdict = Verdict::Context;
                    j.decision = Decision::None;
                } else if let Some(c) = p.conditions.excluding(m) {
                    if j.verdict != Verdict::Context {
                        j.verdict = Verdict::Context;
                        j.decision = Decision::NotComparable(c);
                        if !p.excluded.contains(&c) {
                            p.excluded.push(c);
                        }
                    }
                }
                Some(j)
            })
            .collect();
        rows.push(Row {
            metric: m.clone(),
            cells,
            judgements,
        });
    }
    for p in &mut pairs {
        p.excluded.sort();
    }
    let representatives: Vec<RunRecord> = sets.iter().map(|s| s[0].clone()).collect();
    let waterfalls: Vec<Waterfall> = representatives.iter().map(waterfall::waterfall).collect();
    let labels: Vec<String> = representatives.iter().map(label).collect();
    let names: Vec<String> = representatives.iter().map(|r| r.name.clone()).collect();
    let cmp = Comparison {
        labels,
        names,
        sizes: sets.iter().map(Vec::len).collect(),
        rows,
        representatives,
        waterfalls,
        differences: diff::differences(sets),
        pairs,
        settings: *settings,
    };
    Ok(cmp)
}

/// The larger receiver loss (percent) of the two sides of `pair` when it is above
/// [`SURVIVORS_LOSS_PCT`].
pub fn survivors_loss(cmp: &Comparison, pair: usize) -> Option<f64> {
    let p = &cmp.pairs[pair];
    let loss = row(cmp, "receiver.loss_pct")?;
    [loss.cells[p.base], loss.cells[p.run]]
        .into_iter()
        .flatten()
        .map(|c| c.value)
        .max_by(f64::total_cmp)
        .filter(|&l| l > SURVIVORS_LOSS_PCT)
}

/// Why a judged change of `row` in `pair` may not mean what it says: `survivors' latency` for a
/// latency measured on a run that lost more than [`SURVIVORS_LOSS_PCT`] at the receiver.
pub fn caveat(cmp: &Comparison, row: &Row, pair: usize) -> Option<&'static str> {
    let judged = row.judgements[pair]
        .is_some_and(|j| !matches!(j.verdict, Verdict::Context | Verdict::WithinNoise));
    (judged && row.metric.unit == Unit::Nanos && survivors_loss(cmp, pair).is_some())
        .then_some("survivors' latency")
}

/// The row of the metric with `key`, if any run has it.
pub fn row<'a>(cmp: &'a Comparison, key: &str) -> Option<&'a Row> {
    cmp.rows.iter().find(|r| r.metric.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Generator, Hop, HopCounters};

    fn m(better: Better, unit: Unit) -> Metric {
        Metric {
            key: "k".into(),
            label: "K".into(),
            unit,
            better,
        }
    }

    #[test]
    fn threshold_decides_single_samples() {
        let s = Settings::default();
        let j = judge(&m(Better::Higher, Unit::Pps), &[100.0], &[104.0], &s);
        assert_eq!(j.verdict, Verdict::WithinNoise);
        let j = judge(&m(Better::Higher, Unit::Pps), &[100.0], &[94.0], &s);
        assert_eq!(j.verdict, Verdict::Regressed);
        assert!(matches!(j.decision, Decision::Threshold { .. }));
        let j = judge(&m(Better::Lower, Unit::Percent), &[37.0], &[86.0], &s);
        assert_eq!((j.verdict, j.change), (Verdict::Regressed, Some(49.0)));
        let j = judge(&m(Better::Neither, Unit::Pps), &[733.0], &[693.0], &s);
        assert_eq!(j.verdict, Verdict::Context);
    }

    #[test]
    fn repeats_use_the_test_and_the_minimum_effect() {
        let s = Settings::default();
        let base = [100.0, 101.0, 99.0, 100.5, 99.5];
        // Clearly lower: exact p = 2/252 < 0.05, effect -20%.
        let j = judge(
            &m(Better::Higher, Unit::Pps),
            &base,
            &[80.0, 81.0, 79.0, 80.5, 79.5],
            &s,
        );
        assert_eq!(j.verdict, Verdict::Regressed);
        assert!(matches!(
            j.decision,
            Decision::MannWhitney { exact: true, .. }
        ));
        // Overlapping samples with a large median shift: not significant, so within noise (four
        // a side, where the test could have reached p < 0.05: smallest p = 2/70).
        let j = judge(
            &m(Better::Higher, Unit::Pps),
            &[100.0, 60.0, 140.0, 90.0],
            &[70.0, 130.0, 50.0, 85.0],
            &s,
        );
        assert_eq!(j.verdict, Verdict::WithinNoise);
        // Significant but tiny (-1%): below the minimum effect.
        let j = judge(
            &m(Better::Higher, Unit::Pps),
            &base,
            &[99.0, 99.1, 98.9, 99.05, 98.95],
            &s,
        );
        assert_eq!(j.verdict, Verdict::WithinNoise);
    }

    /// Five repeats against two cannot reach p < 0.05 (smallest p = 2/21 = 0.095): a 20% drop is
    /// "cannot tell", not "within noise"; a change below the minimum effect stays within noise.
    #[test]
    fn a_stream_losing_where_the_baseline_lost_none_is_a_regression_whatever_its_size() {
        let lost = m(Better::Lower, Unit::Packets);
        let s = Settings::default();
        let j = judge(&lost, &[0.0], &[1.0], &s);
        assert_eq!(
            (j.verdict, j.decision),
            (Verdict::Regressed, Decision::LossFromNone)
        );
        let j = judge(&lost, &[0.0, 0.0, 0.0], &[2.0, 0.0, 7.0], &s);
        assert_eq!(j.verdict, Verdict::Regressed);
        let j = judge(&lost, &[3.0, 5.0], &[0.0, 0.0], &s);
        assert_eq!(
            (j.verdict, j.decision),
            (Verdict::Improved, Decision::LossFromNone)
        );
        // One lossy sample of three is not a stream that loses: the medians say none.
        let j = judge(&lost, &[0.0, 0.0, 0.0], &[0.0, 0.0, 7.0], &s);
        assert_eq!(j.verdict, Verdict::WithinNoise);
        // Both sides lose: judged by size and test as any count.
        let j = judge(&lost, &[100.0], &[200.0], &s);
        assert_eq!(
            (j.verdict, j.change),
            (Verdict::Regressed, Some(100.0)),
            "{j:?}"
        );
        assert!(matches!(j.decision, Decision::Threshold { .. }));
    }

    #[test]
    fn too_few_repeats_cannot_tell() {
        let s = Settings::default();
        let base = [100.0, 101.0, 99.0, 100.5, 99.5];
        let j = judge(&m(Better::Higher, Unit::Pps), &base, &[80.0, 81.0], &s);
        assert_eq!(j.verdict, Verdict::CannotTell);
        match j.decision {
            Decision::MannWhitney { p, .. } => assert!((p - 2.0 / 21.0).abs() < 1e-12, "{p}"),
            d => panic!("{d:?}"),
        }
        let j = judge(&m(Better::Higher, Unit::Pps), &base, &[99.0, 99.5], &s);
        assert_eq!(j.verdict, Verdict::WithinNoise);
        // Six against two can (smallest p = 2/28 = 0.071 at 0.05: no; 6 + 3: 2/84 = 0.024: yes).
        let j = judge(
            &m(Better::Higher, Unit::Pps),
            &base,
            &[80.0, 81.0, 79.0],
            &s,
        );
        assert_eq!(j.verdict, Verdict::Regressed);
    }

    #[test]
    fn key_result_says_cannot_tell_with_the_sample_sizes() {
        let base: Vec<RunRecord> = [900, 905, 898, 902, 899]
            .iter()
            .map(|&tx| run("base", 1000, tx))
            .collect();
        let c = compare(
            &[base, vec![run("new", 1000, 700), run("new", 1000, 705)]],
            &Settings::default(),
        )
        .unwrap();
        let tx = row(&c, "hop1.tx_pps").unwrap();
        assert_eq!(tx.judgements[0].unwrap().verdict, Verdict::CannotTell);
        assert!(!c.regressed());
        assert!(
            crate::render::sentences::key_result(&c, 0)
                .contains("cannot tell with n = 5 + 2 whether MCR-1 Egress"),
            "{}",
            crate::render::sentences::key_result(&c, 0)
        );
        assert!(
            !crate::render::sentences::key_result(&c, 0).contains("beyond noise"),
            "{}",
            crate::render::sentences::key_result(&c, 0)
        );
    }

    fn run(name: &str, rx: u64, tx: u64) -> RunRecord {
        let mut r = RunRecord::new(name);
        r.duration_ns = Some(1_000_000_000);
        r.generator = Some(Generator {
            sent: Some(rx),
            elapsed_ns: Some(1_000_000_000),
            ..Default::default()
        });
        r.hops.push(Hop {
            name: "MCR-1".into(),
            counters: HopCounters {
                rx: Some(rx),
                tx_sent: Some(tx),
                buf_exhaust: Some(rx - tx),
                ..Default::default()
            },
            ..Default::default()
        });
        r
    }

    #[test]
    fn comparison_rows_verdicts_and_key_result() {
        let c = compare(
            &[vec![run("base", 1000, 900)], vec![run("new", 1000, 500)]],
            &Settings::default(),
        )
        .unwrap();
        assert!(c.regressed());
        let tx = row(&c, "hop1.tx_pps").unwrap();
        assert_eq!(tx.judgements[0].unwrap().verdict, Verdict::Regressed);
        assert!(
            crate::render::sentences::key_result(&c, 0).contains("regressed MCR-1 Egress -44%"),
            "{}",
            crate::render::sentences::key_result(&c, 0)
        );
        assert!(
            crate::render::sentences::key_result(&c, 0).contains("buffer exhaustion"),
            "{}",
            crate::render::sentences::key_result(&c, 0)
        );
        let same = compare(
            &[vec![run("base", 1000, 900)], vec![run("new", 1000, 900)]],
            &Settings::default(),
        )
        .unwrap();
        assert!(!same.regressed());
    }

    /// A run with `lost` of 100,000 packets lost at the receiver and a p99 latency.
    fn with_latency(name: &str, lost: u64, p99_us: u64) -> RunRecord {
        let mut r = run(name, 100_000, 100_000);
        r.receiver = Some(crate::record::Receiver {
            received: Some(100_000 - lost),
            lost: Some(lost),
            latency: vec![crate::record::Percentile {
                percentile: 99.0,
                latency_ns: p99_us * 1000,
            }],
            ..Default::default()
        });
        r
    }

    /// A latency that fell because the run dropped 20% of its packets is survivors' latency: it
    /// is marked, and the key result leads with the loss, not with the "improved" latency.
    #[test]
    fn latency_of_a_lossy_run_is_survivors_latency() {
        let c = compare(
            &[
                vec![with_latency("base", 0, 800)],
                vec![with_latency("lossy", 20_000, 400)],
            ],
            &Settings::default(),
        )
        .unwrap();
        let lat = row(&c, "receiver.latency_p99").unwrap();
        assert_eq!(lat.judgements[0].unwrap().verdict, Verdict::Improved);
        assert_eq!(caveat(&c, lat, 0), Some("survivors' latency"));
        let k = &crate::render::sentences::key_result(&c, 0);
        let lead = k.split(". ").next().unwrap();
        assert!(!lead.contains("Latency"), "{k}");
        assert!(lead.contains("regressed End-to-end Loss"), "{k}");
        assert!(
            k.contains("Survivors' latency: Latency p99 -50%") && k.contains("lost 20%"),
            "{k}"
        );
        // Loss at or below the threshold: latency is judged and told as ever.
        let c = compare(
            &[
                vec![with_latency("base", 0, 800)],
                vec![with_latency("ok", 1_000, 400)],
            ],
            &Settings::default(),
        )
        .unwrap();
        let lat = row(&c, "receiver.latency_p99").unwrap();
        assert_eq!(caveat(&c, lat, 0), None);
        assert!(
            crate::render::sentences::key_result(&c, 0)
                .starts_with("ok against base: improved Latency p99 -50%"),
            "{}",
            crate::render::sentences::key_result(&c, 0)
        );
    }

    #[test]
    fn needs_two_sets() {
        assert!(compare(&[vec![run("a", 1, 1)]], &Settings::default()).is_err());
    }
}
