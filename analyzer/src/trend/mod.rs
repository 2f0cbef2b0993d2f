//! `analyzer trend`: the nightly history, one series per metric, with change points.
//!
//! Records are taken in the order given (oldest first), which is the order a nightly job
//! appends them. The newest run is "regressed" for a metric when the segment it sits in is
//! worse than the segment before it by at least the minimum effect. A change needs
//! `min_size` (2) runs on its side before it can be told from a one-night outlier.
//!
//! A history is read one record at a time ([`Collector`]): only each run's label and its metric
//! values are kept, so memory grows with runs × metrics, not with the records' size.

pub mod changepoint;

use std::collections::BTreeMap;

use self::changepoint::{mean, MinEffect};
use crate::compare::change;
use crate::error::{Error, Result};
use crate::metrics::{self, Better, Metric, Unit};
use crate::record::RunRecord;

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

/// One metric's values while a history is read.
struct Gathered {
    metric: Metric,
    /// The hop name the label starts with (hop metrics), for labels by position.
    hop_name: Option<String>,
    values: Vec<f64>,
    run_index: Vec<usize>,
}

/// Reads a history one record at a time and keeps only what the trend needs.
#[derive(Default)]
pub struct Collector {
    runs: Vec<String>,
    paths: Vec<String>,
    metrics: BTreeMap<String, Gathered>,
    /// Name and implementation of the first run's hop at each position.
    hops: Vec<(String, Option<String>)>,
    hops_differ: bool,
}

impl Collector {
    /// Adds the next (newer) run.
    pub fn push(&mut self, path: String, rec: &RunRecord) {
        let hops: Vec<(String, Option<String>)> = rec
            .hops
            .iter()
            .map(|h| (h.name.clone(), h.relay.clone()))
            .collect();
        let values = metrics::metrics(rec)
            .into_iter()
            .map(|v| (v.metric, v.value));
        self.push_values(path, crate::compare::label(rec), &hops, values);
    }

    /// Adds the next (newer) run from its metric values: `label` as the report shows it, the
    /// name and implementation of its hop at each position, and each metric's value (as a
    /// history's rows hold them).
    pub fn push_values(
        &mut self,
        path: String,
        label: String,
        hops: &[(String, Option<String>)],
        values: impl IntoIterator<Item = (Metric, f64)>,
    ) {
        let i = self.runs.len();
        for (p, h) in hops.iter().enumerate() {
            match self.hops.get(p) {
                Some(first) => self.hops_differ |= first != h,
                None => self.hops.push(h.clone()),
            }
        }
        for (metric, value) in values {
            let g = self.metrics.entry(metric.key.clone()).or_insert_with(|| {
                let hop_name = hop_position(&metric.key)
                    .and_then(|p| hops.get(p))
                    .map(|h| h.0.clone());
                Gathered {
                    metric,
                    hop_name,
                    values: Vec::new(),
                    run_index: Vec::new(),
                }
            });
            g.values.push(value);
            g.run_index.push(i);
        }
        self.runs.push(label);
        self.paths.push(path);
    }

    /// Finds the change points of every metric with two or more values.
    pub fn finish(self, s: &Settings) -> Result<TrendReport> {
        if self.runs.len() < 2 {
            return Err(Error::Usage("trend needs at least two records".into()));
        }
        let mut gathered: Vec<Gathered> = self.metrics.into_values().collect();
        if self.hops_differ {
            // As in compare: one run's hop name would misname the others' hops.
            for g in &mut gathered {
                if let Some(p) = hop_position(&g.metric.key) {
                    let rest = g
                        .hop_name
                        .as_deref()
                        .and_then(|n| g.metric.label.strip_prefix(n))
                        .unwrap_or(&g.metric.label)
                        .to_string();
                    g.metric.label = format!("hop {}{rest}", p + 1);
                }
            }
        }
        gathered
            .sort_by(|a, b| metrics::rank(&a.metric.key).total_cmp(&metrics::rank(&b.metric.key)));
        gathered.retain(|g| g.values.len() >= 2);
        let series = analyse_all(gathered, s);
        Ok(TrendReport {
            runs: self.runs,
            paths: self.paths,
            series,
            settings: *s,
        })
    }
}

/// `hop3.tx_pps` -> Some(2).
fn hop_position(key: &str) -> Option<usize> {
    let (section, _) = key.split_once('.')?;
    let n: usize = section.strip_prefix("hop")?.parse().ok()?;
    n.checked_sub(1)
}

/// Analyses every series, spread over the machine's cores (each series is independent).
fn analyse_all(gathered: Vec<Gathered>, s: &Settings) -> Vec<Series> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(gathered.len().max(1));
    if workers <= 1 {
        return gathered.into_iter().map(|g| analyse(g, s)).collect();
    }
    let mut slots: Vec<Option<Series>> = vec![None; gathered.len()];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let gathered: Vec<std::sync::Mutex<Option<Gathered>>> = gathered
        .into_iter()
        .map(|g| std::sync::Mutex::new(Some(g)))
        .collect();
    let done = std::sync::Mutex::new(&mut slots);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(cell) = gathered.get(i) else { break };
                let g = cell
                    .lock()
                    .expect("not poisoned")
                    .take()
                    .expect("taken once");
                let series = analyse(g, s);
                done.lock().expect("not poisoned")[i] = Some(series);
            });
        }
    });
    slots
        .into_iter()
        .map(|x| x.expect("every series analysed"))
        .collect()
}

/// Change points, segments and the newest run's verdict of one metric.
fn analyse(g: Gathered, s: &Settings) -> Series {
    let Gathered {
        metric: m,
        values,
        run_index,
        ..
    } = g;
    let min = if m.unit == Unit::Percent {
        s.min_effect_pp
    } else {
        s.min_effect_pct
    };
    let cp_settings = changepoint::Settings {
        alpha: s.alpha,
        permutations: s.permutations,
        min_effect: MinEffect::for_unit(m.unit, s.min_effect_pct, s.min_effect_pp),
        ..Default::default()
    };
    let mut bounds: Vec<usize> = vec![0];
    bounds.extend(changepoint::change_points(&values, &cp_settings));
    bounds.push(values.len());
    let mut segments: Vec<Segment> = Vec::new();
    for w in bounds.windows(2) {
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
    Series {
        metric: m,
        values,
        run_index,
        segments,
        last_change,
        newest_regressed,
        newest_improved,
    }
}

/// Analyses records in the order given; `paths` are shown in the report.
pub fn trend(records: &[RunRecord], paths: &[String], s: &Settings) -> Result<TrendReport> {
    let mut c = Collector::default();
    for (i, r) in records.iter().enumerate() {
        c.push(paths.get(i).cloned().unwrap_or_default(), r);
    }
    c.finish(s)
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
