//! The long table of all runs: one row per (sample set, sample, metric), held in polars.
//!
//! Columns: `set` (0 = baseline, then each compared run or group of repeats), `sample` (index
//! within the set), `run` (record name), `key` (metric key), `value` (f64), `origin`
//! (`computed`, `reported` or `measured`). Reports read values back by set and metric, so the
//! numbers a report prints are exactly the rows of this table.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::metrics::{self, Metric, Origin};
use crate::record::RunRecord;

/// The table and the metrics it holds, in report order.
pub struct Table {
    pub df: DataFrame,
    pub metrics: Vec<Metric>,
}

/// When the runs' hops differ (mcrd against the kernel or socat), a row labelled with the first
/// run's hop name (`MCR-1 Ingress`) would misname the others' hops: such rows are labelled by
/// position instead (`hop 1 Ingress`).
fn neutral_hop_labels(sets: &[Vec<RunRecord>], metrics: &mut [Metric]) {
    let records = || sets.iter().flatten();
    if !crate::record::hops_differ(records()) {
        return;
    }
    let positions = records().map(|r| r.hops.len()).max().unwrap_or(0);
    for i in 0..positions {
        let prefix = format!("hop{}.", i + 1);
        for m in metrics.iter_mut().filter(|m| m.key.starts_with(&prefix)) {
            // A hop's metric labels are "NAME what", NAME from the record that first gave the
            // metric: strip whichever hop name at this position the label starts with.
            let rest = records()
                .filter_map(|r| r.hops.get(i))
                .find_map(|h| m.label.strip_prefix(&h.name))
                .unwrap_or(&m.label)
                .to_string();
            m.label = format!("hop {}{rest}", i + 1);
        }
    }
}

impl Table {
    /// Builds the table from sample sets (each a list of records of one configuration); with
    /// `with_shares`, also each hop's share of the offered traffic ([`metrics::shares`]).
    pub fn build(sets: &[Vec<RunRecord>], with_shares: bool) -> PolarsResult<Self> {
        let (mut set, mut sample, mut run, mut key, mut value, mut origin) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut seen: BTreeMap<String, Metric> = BTreeMap::new();
        for (si, records) in sets.iter().enumerate() {
            for (ri, rec) in records.iter().enumerate() {
                let mut values = metrics::metrics(rec);
                if with_shares {
                    values.extend(metrics::shares(rec));
                }
                for v in values {
                    set.push(si as u32);
                    sample.push(ri as u32);
                    run.push(rec.name.clone());
                    key.push(v.metric.key.clone());
                    value.push(v.value);
                    origin.push(match v.origin {
                        Origin::Computed { .. } => "computed",
                        Origin::Reported => "reported",
                        Origin::Measured => "measured",
                    });
                    seen.entry(v.metric.key.clone()).or_insert(v.metric);
                }
            }
        }
        let df = DataFrame::new_infer_height(vec![
            Column::new("set".into(), set),
            Column::new("sample".into(), sample),
            Column::new("run".into(), run),
            Column::new("key".into(), key),
            Column::new("value".into(), value),
            Column::new("origin".into(), origin),
        ])?;
        let mut metrics: Vec<Metric> = seen.into_values().collect();
        neutral_hop_labels(sets, &mut metrics);
        metrics.sort_by(|a, b| metrics::rank(&a.key).total_cmp(&metrics::rank(&b.key)));
        Ok(Table { df, metrics })
    }

    fn rows(&self, set: usize, key: &str) -> PolarsResult<DataFrame> {
        let mask = self.df.column("set")?.u32()?.equal(set as u32)
            & self.df.column("key")?.str()?.equal(key);
        self.df.filter(&mask)
    }

    /// Every sample's value of `key` in `set` (empty when the set has no such metric).
    pub fn values(&self, set: usize, key: &str) -> PolarsResult<Vec<f64>> {
        let rows = self.rows(set, key)?;
        Ok(rows.column("value")?.f64()?.into_no_null_iter().collect())
    }

    /// True when any sample of `set` had `key` only as a printed figure.
    pub fn any_reported(&self, set: usize, key: &str) -> PolarsResult<bool> {
        let rows = self.rows(set, key)?;
        let reported = rows
            .column("origin")?
            .str()?
            .iter()
            .any(|o| o == Some("reported"));
        Ok(reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Generator, Hop, HopCounters};

    fn rec(name: &str, rx: u64) -> RunRecord {
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
                ..Default::default()
            },
            ..Default::default()
        });
        r
    }

    #[test]
    fn one_row_per_sample_and_metric() {
        let t = Table::build(
            &[vec![rec("a", 10), rec("a", 12)], vec![rec("b", 20)]],
            false,
        )
        .unwrap();
        assert_eq!(t.df.height(), 6);
        assert_eq!(t.values(0, "hop1.rx_pps").unwrap(), vec![10.0, 12.0]);
        assert_eq!(t.values(1, "hop1.rx_pps").unwrap(), vec![20.0]);
        assert!(t.values(1, "hop2.rx_pps").unwrap().is_empty());
        assert_eq!(t.metrics[0].key, "generator.pps");
        assert!(!t.any_reported(0, "hop1.rx_pps").unwrap());
        assert_eq!(
            t.metrics
                .iter()
                .find(|m| m.key == "hop1.rx_pps")
                .unwrap()
                .label,
            "MCR-1 Ingress",
            "the same hops keep their names"
        );
    }

    #[test]
    fn mixed_relays_get_neutral_hop_labels() {
        let mut kernel = rec("k", 20);
        kernel.hops[0].name = "KERNEL-1".into();
        kernel.hops[0].relay = Some("smcroute".into());
        let t = Table::build(&[vec![rec("a", 10)], vec![kernel]], false).unwrap();
        let label = |k: &str| t.metrics.iter().find(|m| m.key == k).unwrap().label.clone();
        assert_eq!(label("hop1.rx_pps"), "hop 1 Ingress");
        assert_eq!(label("generator.pps"), "Traffic Generator");
    }
}
