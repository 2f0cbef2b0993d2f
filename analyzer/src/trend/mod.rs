//! `analyzer trend`: the nightly history, one series per metric, with change points.
//!
//! Records are taken in the order given (oldest first), which is the order a nightly job
//! appends them. The newest run is "regressed" for a metric when the segment it sits in is
//! worse than the segment before it by at least the minimum effect. A change needs
//! `min_size` (2) runs on its side before it can be told from a one-night outlier.

pub mod changepoint;

use self::changepoint::mean;
use crate::compare::change;
use crate::error::{Error, Result};
use crate::metrics::{Better, Metric, Unit};
use crate::record::RunRecord;
use crate::table::Table;

/// Tunables of the trend analysis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub alpha: f64,
    pub permutations: usize,
    /// Minimum relative difference of segment means, percent.
    pub min_effect_pct: f64,
    /// Minimum difference of segment means of a percentage metric, in points.
    pub min_effect_pp: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.05,
            permutations: 199,
            min_effect_pct: 5.0,
            min_effect_pp: 1.0,
        }
    }
}

/// A stretch of runs between change points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Index into the series' values of the segment's first point.
    pub start: usize,
    /// One past the last point.
    pub end: usize,
    pub mean: f64,
    /// Mean of the segment before, if any.
    pub prev_mean: Option<f64>,
}

/// One metric over the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub metric: Metric,
    pub values: Vec<f64>,
    /// For each value, the index of its run.
    pub run_index: Vec<usize>,
    pub segments: Vec<Segment>,
    /// Change of the newest segment against the one before (percent or pp).
    pub last_change: Option<f64>,
    pub newest_regressed: bool,
    pub newest_improved: bool,
}

/// The whole trend analysis.
#[derive(Debug, Clone)]
pub struct TrendReport {
    /// Run labels in order.
    pub runs: Vec<String>,
    pub paths: Vec<String>,
    pub series: Vec<Series>,
    pub settings: Settings,
}

impl TrendReport {
    /// True when the newest run sits in a regressed segment of any judged metric.
    pub fn regressed(&self) -> bool {
        self.series.iter().any(|s| s.newest_regressed)
    }
}

fn big_enough(unit: Unit, min: f64) -> impl Fn(f64, f64) -> bool {
    move |a, b| change(unit, a, b).is_some_and(|c| c.abs() >= min)
}

/// Analyses records in the order given; `paths` are shown in the report.
pub fn trend(records: &[RunRecord], paths: &[String], s: &Settings) -> Result<TrendReport> {
    if records.len() < 2 {
        return Err(Error::Usage("trend needs at least two records".into()));
    }
    let sets: Vec<Vec<RunRecord>> = records.iter().map(|r| vec![r.clone()]).collect();
    let table = Table::build(&sets, false)?;
    let mut series = Vec::new();
    for m in &table.metrics {
        let mut values = Vec::new();
        let mut run_index = Vec::new();
        for i in 0..records.len() {
            let v = table.values(i, &m.key)?;
            if let Some(&x) = v.first() {
                values.push(x);
                run_index.push(i);
            }
        }
        if values.len() < 2 {
            continue;
        }
        let min = if m.unit == Unit::Percent {
            s.min_effect_pp
        } else {
            s.min_effect_pct
        };
        let effect = big_enough(m.unit, min);
        // The search needs a plain fn pointer; the effect check is applied again below with
        // the metric's unit, so the search itself uses a permissive one and we filter after.
        let cp_settings = changepoint::Settings {
            alpha: s.alpha,
            permutations: s.permutations,
            min_effect: |_, _| true,
            ..Default::default()
        };
        let raw = changepoint::change_points(&values, &cp_settings);
        // Keep change points whose neighbouring segments differ by the minimum effect.
        let mut bounds: Vec<usize> = vec![0];
        bounds.extend(raw);
        bounds.push(values.len());
        let mut kept: Vec<usize> = vec![0];
        for w in 1..bounds.len() - 1 {
            let prev = *kept.last().expect("starts with 0");
            let left = mean(&values[prev..bounds[w]]);
            let right = mean(&values[bounds[w]..bounds[w + 1]]);
            if effect(left, right) {
                kept.push(bounds[w]);
            }
        }
        kept.push(values.len());
        let mut segments: Vec<Segment> = Vec::new();
        for w in kept.windows(2) {
            let prev_mean = segments.last().map(|p: &Segment| p.mean);
            segments.push(Segment {
                start: w[0],
                end: w[1],
                mean: mean(&values[w[0]..w[1]]),
                prev_mean,
            });
        }
        let last = segments.last().expect("at least one segment");
        let last_change = last.prev_mean.and_then(|p| change(m.unit, p, last.mean));
        let worse = |c: f64| match m.better {
            Better::Higher => c < 0.0,
            Better::Lower => c > 0.0,
            Better::Neither => false,
        };
        let judged = m.better != Better::Neither;
        let newest_regressed = judged && last_change.is_some_and(|c| worse(c) && c.abs() >= min);
        let newest_improved = judged && last_change.is_some_and(|c| !worse(c) && c.abs() >= min);
        series.push(Series {
            metric: m.clone(),
            values,
            run_index,
            segments,
            last_change,
            newest_regressed,
            newest_improved,
        });
    }
    Ok(TrendReport {
        runs: records.iter().map(crate::compare::label).collect(),
        paths: paths.to_vec(),
        series,
        settings: *s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Hop, HopCounters};

    fn night(i: usize, tx: u64) -> RunRecord {
        let mut r = RunRecord::new(format!("night-{i:02}"));
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

    fn history(tx: &[u64]) -> (Vec<RunRecord>, Vec<String>) {
        let recs: Vec<RunRecord> = tx.iter().enumerate().map(|(i, &t)| night(i, t)).collect();
        let paths = recs.iter().map(|r| format!("{}.json", r.name)).collect();
        (recs, paths)
    }

    #[test]
    fn newest_in_a_lower_segment_is_a_regression() {
        let (r, p) = history(&[
            900_000, 905_000, 898_000, 902_000, 899_000, 901_000, 700_000, 702_000, 698_000,
        ]);
        let t = trend(&r, &p, &Settings::default()).unwrap();
        let tx = t
            .series
            .iter()
            .find(|s| s.metric.key == "hop1.tx_pps")
            .unwrap();
        assert_eq!(tx.segments.len(), 2);
        assert_eq!(tx.segments[1].start, 6);
        assert!(tx.newest_regressed);
        assert!(t.regressed());
    }

    #[test]
    fn recovered_history_is_not_regressed() {
        let (r, p) = history(&[
            900_000, 905_000, 898_000, 902_000, 899_000, 700_000, 702_000, 698_000, 701_000,
            699_000, 901_000, 899_000, 903_000, 900_000, 902_000,
        ]);
        let t = trend(&r, &p, &Settings::default()).unwrap();
        let tx = t
            .series
            .iter()
            .find(|s| s.metric.key == "hop1.tx_pps")
            .unwrap();
        assert!(!tx.newest_regressed);
        assert!(tx.newest_improved, "{:?}", tx.segments);
        assert!(!t.regressed());
    }

    #[test]
    fn flat_history_has_one_segment() {
        let (r, p) = history(&[900_000, 905_000, 898_000, 902_000, 899_000, 901_000]);
        let t = trend(&r, &p, &Settings::default()).unwrap();
        assert!(t.series.iter().all(|s| s.segments.len() == 1));
        assert!(!t.regressed());
    }
}
