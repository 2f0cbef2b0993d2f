//! The verdicts of `compare` and `trend` as versioned JSON records (`--json FILE`), for scripts
//! and dashboards that should not parse the Markdown.
//!
//! Two contracts, each `{schema, version, minor_version, ...}` like the producers' records:
//! [`ComparisonRecord`] (`mcr.analyzer.comparison`) and [`TrendRecord`] (`mcr.analyzer.trend`).
//! The structs are the schema; every field is documented where it is declared. Readers follow
//! the same rules as for the producers' records (`ingest/compat.rs`): a newer major `version` is
//! refused, an unknown field in a known minor version is an error naming it, and fields of a
//! newer minor version are skipped and returned by name.

use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::compare::{self, Comparison, Decision, Verdict};
use crate::error::{from_json, read_nonempty, Error, Result};
use crate::metrics::{Better, Metric, Unit};
use crate::stats::mannwhitney;
use crate::trend::{Series, TrendReport};

/// `schema` of a comparison record.
pub const COMPARISON_SCHEMA: &str = "mcr.analyzer.comparison";
/// `schema` of a trend record.
pub const TREND_SCHEMA: &str = "mcr.analyzer.trend";
/// Major version of both records this analyzer writes and reads.
pub const VERSION: u32 = 1;
/// Minor version written (fields added since 1.0 would raise it).
pub const MINOR_VERSION: u32 = 0;

/// A metric as the records name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricInfo {
    /// Stable key: `hop1.tx_pps`, `receiver.loss_pct`.
    pub key: String,
    /// Row label: `MCR-1 Egress`.
    pub label: String,
    /// `pps`, `percent`, `ns_per_packet` or `ns`.
    pub unit: String,
    /// `higher`, `lower`, or `neither` (context: never judged).
    pub better: String,
}

impl From<&Metric> for MetricInfo {
    fn from(m: &Metric) -> Self {
        MetricInfo {
            key: m.key.clone(),
            label: m.label.clone(),
            unit: crate::history::unit_name(m.unit).into(),
            better: match m.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
                Better::Neither => "neither",
            }
            .into(),
        }
    }
}

/// `compare`'s settings, as given on the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSettings {
    /// `--threshold`: smallest relative change that counts, percent.
    pub threshold_pct: f64,
    /// `--threshold-pp`: smallest change of a percentage metric, points.
    pub threshold_pp: f64,
    /// `--alpha`: significance level of the Mann-Whitney U test.
    pub alpha: f64,
    /// `--load-tolerance`, percent.
    pub load_tolerance_pct: f64,
    /// `--chain`.
    pub chain: bool,
}

/// One sample set (the baseline is set 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetInfo {
    /// The first record's name.
    pub name: String,
    /// Column heading: name and date.
    pub label: String,
    /// Records in the set (repeats).
    pub samples: usize,
}

/// A condition that differs between the two sides of a pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionInfo {
    /// `offered load`, `datagram size`, `duration`, `hop count`, `topology`.
    pub condition: String,
    /// The baseline side's value, as the report prints it (`733k pps`).
    pub baseline: String,
    /// The run side's value.
    pub run: String,
    /// True when it took at least one metric out of judgement.
    pub excluded_metrics: bool,
}

/// The judgement of one metric of one pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgementInfo {
    pub metric: MetricInfo,
    /// Median of the baseline side's samples.
    pub baseline: f64,
    /// Median of the run side's samples.
    pub run: f64,
    /// Samples with this metric on each side.
    pub n_baseline: usize,
    pub n_run: usize,
    /// Change of the run against the baseline: percent, or points when `change_unit` is `pp`;
    /// absent when the baseline is 0.
    pub change: Option<f64>,
    /// `percent` or `pp`.
    pub change_unit: String,
    /// `improved`, `regressed`, `within_noise`, `cannot_tell` (the change reaches the
    /// minimum effect but the test cannot reach `alpha` with these sample sizes: see
    /// `smallest_p`), `context` (shown, never judged) or `not_comparable`.
    pub verdict: String,
    /// `threshold` (one sample on a side), `mann_whitney_exact`, `mann_whitney_normal`, or
    /// `none` (not judged).
    pub test: String,
    /// The test's two-sided p-value (Mann-Whitney only).
    pub p_value: Option<f64>,
    /// The significance level the p-value was held against (Mann-Whitney only).
    pub alpha: Option<f64>,
    /// The smallest p-value the test can give with `n_baseline` and `n_run` samples
    /// (Mann-Whitney only): when it is not below `alpha`, the verdict cannot be significant.
    pub smallest_p: Option<f64>,
    /// The threshold or minimum effect, in `change_unit` (absent when not judged).
    pub min_effect: Option<f64>,
    /// The differing condition that kept this metric from being judged.
    pub not_comparable: Option<String>,
    /// Why the verdict may not mean what it says: `survivors' latency` for a latency of a pair
    /// where a side lost more than 1% at the receiver (the latency of the packets that got
    /// through; the key result does not lead with it).
    pub caveat: Option<String>,
}

/// Two sets judged against each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairInfo {
    /// Index of the reference set (0 = the baseline).
    pub base: usize,
    /// Index of the judged set.
    pub run: usize,
    /// True when any judged metric of this pair regressed.
    pub regressed: bool,
    /// The report's key result, one sentence.
    pub key_result: String,
    pub conditions: Vec<ConditionInfo>,
    /// Every metric both sides have, in report order.
    pub judgements: Vec<JudgementInfo>,
}

/// `analyzer compare --json`: what was judged against what, and the verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRecord {
    /// Always [`COMPARISON_SCHEMA`].
    pub schema: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// [`MINOR_VERSION`] of the writer.
    #[serde(default)]
    pub minor_version: u32,
    pub settings: CompareSettings,
    /// The baseline, then each run.
    pub sets: Vec<SetInfo>,
    /// True when any pair regressed (exit code 1).
    pub regressed: bool,
    /// True when no metric of any pair was judged.
    pub nothing_judged: bool,
    pub pairs: Vec<PairInfo>,
}

fn verdict_name(v: Verdict, d: Decision) -> &'static str {
    match (v, d) {
        (_, Decision::NotComparable(_)) => "not_comparable",
        (Verdict::Improved, _) => "improved",
        (Verdict::Regressed, _) => "regressed",
        (Verdict::WithinNoise, _) => "within_noise",
        (Verdict::CannotTell, _) => "cannot_tell",
        (Verdict::Context, _) => "context",
    }
}

impl ComparisonRecord {
    /// The record of a comparison.
    pub fn new(cmp: &Comparison) -> Self {
        let s = &cmp.settings;
        let pairs = cmp
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let judgements = cmp
                    .rows
                    .iter()
                    .filter_map(|r| {
                        let j = r.judgements[i]?;
                        let (b, c) = (r.cells[p.base]?, r.cells[p.run]?);
                        let (test, p_value, alpha, min_effect, smallest_p) = match j.decision {
                            Decision::Threshold { threshold, .. } => {
                                ("threshold", None, None, Some(threshold), None)
                            }
                            Decision::MannWhitney {
                                p,
                                exact,
                                alpha,
                                min_effect,
                                n_baseline,
                                n_run,
                                ..
                            } => (
                                if exact {
                                    "mann_whitney_exact"
                                } else {
                                    "mann_whitney_normal"
                                },
                                Some(p),
                                Some(alpha),
                                Some(min_effect),
                                Some(mannwhitney::smallest_p(n_baseline, n_run)),
                            ),
                            Decision::LossFromNone => ("loss_from_none", None, None, None, None),
                            Decision::None | Decision::NotComparable(_) => {
                                ("none", None, None, None, None)
                            }
                        };
                        Some(JudgementInfo {
                            metric: MetricInfo::from(&r.metric),
                            baseline: b.value,
                            run: c.value,
                            n_baseline: b.samples,
                            n_run: c.samples,
                            change: j.change,
                            change_unit: if r.metric.unit == Unit::Percent {
                                "pp"
                            } else {
                                "percent"
                            }
                            .into(),
                            verdict: verdict_name(j.verdict, j.decision).into(),
                            test: test.into(),
                            p_value,
                            alpha,
                            smallest_p,
                            min_effect,
                            not_comparable: match j.decision {
                                Decision::NotComparable(c) => {
                                    Some(crate::render::sentences::excludes_why(c))
                                }
                                _ => None,
                            },
                            caveat: compare::caveat(cmp, r, i).map(str::to_string),
                        })
                    })
                    .collect::<Vec<_>>();
                PairInfo {
                    base: p.base,
                    run: p.run,
                    regressed: judgements.iter().any(|j| j.verdict == "regressed"),
                    key_result: crate::render::sentences::key_result(cmp, i),
                    conditions: p
                        .conditions
                        .mismatches
                        .iter()
                        .map(|m| ConditionInfo {
                            condition: m.condition.name().into(),
                            baseline: crate::render::sentences::condition_value(&m.baseline),
                            run: crate::render::sentences::condition_value(&m.run),
                            excluded_metrics: p.excluded.contains(&m.condition),
                        })
                        .collect(),
                    judgements,
                }
            })
            .collect();
        ComparisonRecord {
            schema: COMPARISON_SCHEMA.into(),
            version: VERSION,
            minor_version: MINOR_VERSION,
            settings: CompareSettings {
                threshold_pct: s.threshold_pct,
                threshold_pp: s.threshold_pp,
                alpha: s.alpha,
                load_tolerance_pct: s.load_tolerance_pct,
                chain: s.chain,
            },
            sets: (0..cmp.names.len())
                .map(|i| SetInfo {
                    name: cmp.names[i].clone(),
                    label: cmp.labels[i].clone(),
                    samples: cmp.sizes[i],
                })
                .collect(),
            regressed: cmp.regressed(),
            nothing_judged: cmp.nothing_judged(),
            pairs,
        }
    }

    /// Reads a comparison record; returns it and the fields of a newer minor version it skipped.
    pub fn load(path: &Path) -> Result<(Self, Vec<String>)> {
        read(path, COMPARISON_SCHEMA)
    }
}

/// `trend`'s settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendSettings {
    /// `--alpha`: significance level of the permutation test.
    pub alpha: f64,
    /// Shuffles per permutation test.
    pub permutations: usize,
    /// `--min-effect`, percent.
    pub min_effect_pct: f64,
    /// `--min-effect-pp`, points.
    pub min_effect_pp: f64,
}

/// A run of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendRun {
    /// Name and date.
    pub label: String,
    /// Where it was read from (`history.jsonl:3`).
    pub source: String,
}

/// A stretch of one metric's values between change points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Index into `runs` of its first run.
    pub first_run: usize,
    /// Index into `runs` of its last run.
    pub last_run: usize,
    /// Values in it.
    pub samples: usize,
    pub mean: f64,
    /// Change of its mean against the segment before: percent, or points for percentages.
    pub change: Option<f64>,
}

/// One metric over the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub metric: MetricInfo,
    /// Runs that have this metric.
    pub samples: usize,
    /// `percent` or `pp`, for the segments' changes.
    pub change_unit: String,
    /// The minimum effect the search used, in `change_unit`.
    pub min_effect: f64,
    pub segments: Vec<SegmentInfo>,
    /// `regressed`, `improved`, `unchanged` (the newest segment is the only one, or within the
    /// minimum effect of the one before) or `context` (never judged).
    pub verdict: String,
}

/// `analyzer trend --json`: the change points of every metric and the newest run's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendRecord {
    /// Always [`TREND_SCHEMA`].
    pub schema: String,
    /// Always [`VERSION`].
    pub version: u32,
    #[serde(default)]
    pub minor_version: u32,
    /// `e_divisive_means`: energy statistic, binary segmentation, permutation test.
    pub test: String,
    pub settings: TrendSettings,
    /// Oldest first.
    pub runs: Vec<TrendRun>,
    /// True when the newest run sits in a regressed segment of any metric (exit code 1).
    pub regressed: bool,
    pub series: Vec<SeriesInfo>,
}

fn series_info(s: &Series, t: &TrendReport) -> SeriesInfo {
    let pp = s.metric.unit == Unit::Percent;
    let verdict = if s.metric.better == Better::Neither {
        "context"
    } else if s.newest_regressed {
        "regressed"
    } else if s.newest_improved {
        "improved"
    } else {
        "unchanged"
    };
    SeriesInfo {
        metric: MetricInfo::from(&s.metric),
        samples: s.values.len(),
        change_unit: if pp { "pp" } else { "percent" }.into(),
        min_effect: if pp {
            t.settings.min_effect_pp
        } else {
            t.settings.min_effect_pct
        },
        segments: s
            .segments
            .iter()
            .map(|g| SegmentInfo {
                first_run: s.run_index[g.start],
                last_run: s.run_index[g.end - 1],
                samples: g.end - g.start,
                mean: g.mean,
                change: g
                    .prev_mean
                    .and_then(|p| compare::change(s.metric.unit, p, g.mean)),
            })
            .collect(),
        verdict: verdict.into(),
    }
}

impl TrendRecord {
    /// The record of a trend analysis.
    pub fn new(t: &TrendReport) -> Self {
        TrendRecord {
            schema: TREND_SCHEMA.into(),
            version: VERSION,
            minor_version: MINOR_VERSION,
            test: "e_divisive_means".into(),
            settings: TrendSettings {
                alpha: t.settings.alpha,
                permutations: t.settings.permutations,
                min_effect_pct: t.settings.min_effect_pct,
                min_effect_pp: t.settings.min_effect_pp,
            },
            runs: t
                .runs
                .iter()
                .zip(&t.paths)
                .map(|(label, source)| TrendRun {
                    label: label.clone(),
                    source: source.clone(),
                })
                .collect(),
            regressed: t.regressed(),
            series: t.series.iter().map(|s| series_info(s, t)).collect(),
        }
    }

    /// Reads a trend record; returns it and the fields of a newer minor version it skipped.
    pub fn load(path: &Path) -> Result<(Self, Vec<String>)> {
        read(path, TREND_SCHEMA)
    }
}

/// Reads a record of `schema`, major [`VERSION`]; see the module documentation.
fn read<T: DeserializeOwned>(path: &Path, schema: &str) -> Result<(T, Vec<String>)> {
    let text = read_nonempty(path)?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    let ignored = crate::ingest::compat::ignored_fields::<T>(
        path,
        &text,
        &doc,
        schema,
        VERSION,
        MINOR_VERSION,
    )?;
    Ok((from_json(path, &text)?, ignored))
}

/// Writes `record` as pretty JSON to `path`.
pub fn save<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(record).expect("records serialize");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Settings;
    use crate::record::{Hop, HopCounters, RunRecord};

    fn run(name: &str, tx: u64) -> RunRecord {
        let mut r = RunRecord::new(name);
        r.duration_ns = Some(1_000_000_000);
        r.hops.push(Hop {
            name: "MCR-1".into(),
            counters: HopCounters {
                rx: Some(1_000_000),
                tx_sent: Some(tx),
                ..Default::default()
            },
            ..Default::default()
        });
        r
    }

    fn comparison() -> ComparisonRecord {
        let cmp = compare::compare(
            &[
                [900_000, 905_000, 898_000, 902_000, 899_000]
                    .map(|tx| run("base", tx))
                    .to_vec(),
                [600_000, 610_000, 605_000, 598_000, 601_000]
                    .map(|tx| run("new", tx))
                    .to_vec(),
            ],
            &Settings::default(),
        )
        .unwrap();
        ComparisonRecord::new(&cmp)
    }

    fn save_to(dir: &Path, value: &serde_json::Value) -> std::path::PathBuf {
        let p = dir.join("r.json");
        std::fs::write(&p, value.to_string()).unwrap();
        p
    }

    #[test]
    fn a_comparison_record_reads_back_as_written() {
        let rec = comparison();
        let tx = rec.pairs[0]
            .judgements
            .iter()
            .find(|j| j.metric.key == "hop1.tx_pps")
            .unwrap();
        assert_eq!(tx.verdict, "regressed");
        assert_eq!(tx.test, "mann_whitney_exact");
        assert_eq!((tx.n_baseline, tx.n_run), (5, 5));
        assert!(tx.p_value.is_some() && tx.min_effect == Some(5.0));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.json");
        save(&p, &rec).unwrap();
        let (back, ignored) = ComparisonRecord::load(&p).unwrap();
        assert_eq!(back, rec);
        assert!(ignored.is_empty());
    }

    #[test]
    fn too_few_repeats_are_cannot_tell_in_the_record() {
        let cmp = compare::compare(
            &[
                [900_000, 905_000, 898_000, 902_000, 899_000]
                    .map(|tx| run("base", tx))
                    .to_vec(),
                vec![run("new", 600_000), run("new", 610_000)],
            ],
            &Settings::default(),
        )
        .unwrap();
        let rec = ComparisonRecord::new(&cmp);
        let tx = rec.pairs[0]
            .judgements
            .iter()
            .find(|j| j.metric.key == "hop1.tx_pps")
            .unwrap();
        assert_eq!(tx.verdict, "cannot_tell");
        assert_eq!((tx.n_baseline, tx.n_run), (5, 2));
        assert!(tx.smallest_p.unwrap() > 0.09, "{:?}", tx.smallest_p);
        assert!(!rec.regressed);
    }

    #[test]
    fn a_trend_record_reads_back_as_written() {
        let recs: Vec<RunRecord> = [
            900_000, 905_000, 898_000, 902_000, 899_000, 901_000, 700_000, 702_000, 698_000,
        ]
        .iter()
        .enumerate()
        .map(|(i, &tx)| run(&format!("night-{i}"), tx))
        .collect();
        let paths: Vec<String> = (0..recs.len()).map(|i| format!("{i}.json")).collect();
        let t = crate::trend::trend(&recs, &paths, &crate::trend::Settings::default()).unwrap();
        let rec = TrendRecord::new(&t);
        let tx = rec
            .series
            .iter()
            .find(|s| s.metric.key == "hop1.tx_pps")
            .unwrap();
        assert_eq!(tx.verdict, "regressed");
        assert_eq!(tx.segments.len(), 2);
        assert_eq!((tx.segments[1].first_run, tx.segments[1].last_run), (6, 8));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.json");
        save(&p, &rec).unwrap();
        assert_eq!(TrendRecord::load(&p).unwrap().0, rec);
    }

    #[test]
    fn a_newer_major_version_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(comparison()).unwrap();
        v["version"] = (VERSION + 1).into();
        let e = ComparisonRecord::load(&save_to(d.path(), &v))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`version`") && e.contains("newer"), "{e}");
    }

    #[test]
    fn fields_of_a_newer_minor_version_are_skipped_and_named() {
        let d = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(comparison()).unwrap();
        v["dashboard_url"] = "x".into();
        let e = ComparisonRecord::load(&save_to(d.path(), &v))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dashboard_url") && e.contains("unknown field"),
            "{e}"
        );
        v["minor_version"] = (MINOR_VERSION + 1).into();
        let (_, ignored) = ComparisonRecord::load(&save_to(d.path(), &v)).unwrap();
        assert_eq!(ignored, ["dashboard_url"]);
    }
}
