//! The values of all runs by sample set and metric: for each (set, metric key), every
//! sample's value in sample order and whether it was only a printed figure. Sets are 0 = the
//! baseline, then each compared run or group of repeats. Reports read values back by set and
//! metric, so the numbers a report prints are exactly what this holds.

use std::collections::BTreeMap;

use crate::metrics::{self, Metric, Origin};
use crate::record::RunRecord;

/// One sample's value of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    value: f64,
    /// Only a printed figure (`Origin::Reported`), not computed from counters.
    reported: bool,
}

/// The values and the metrics they are of, in report order.
pub struct Table {
    values: BTreeMap<(usize, String), Vec<Sample>>,
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
    pub fn build(sets: &[Vec<RunRecord>], with_shares: bool) -> Self {
        let mut values: BTreeMap<(usize, String), Vec<Sample>> = BTreeMap::new();
        let mut seen: BTreeMap<String, Metric> = BTreeMap::new();
        for (si, records) in sets.iter().enumerate() {
            for rec in records {
                let mut computed = metrics::metrics(rec);
                if with_shares {
                    computed.extend(metrics::shares(rec));
                }
                for v in computed {
                    values
                        .entry((si, v.metric.key.clone()))
                        .or_default()
                        .push(Sample {
                            value: v.value,
                            reported: matches!(v.origin, Origin::Reported),
                        });
                    seen.entry(v.metric.key.clone()).or_insert(v.metric);
                }
            }
        }
        let mut metrics: Vec<Metric> = seen.into_values().collect();
        neutral_hop_labels(sets, &mut metrics);
        metrics.sort_by(|a, b| metrics::rank(&a.key).total_cmp(&metrics::rank(&b.key)));
        Table { values, metrics }
    }

    fn samples(&self, set: usize, key: &str) -> &[Sample] {
        self.values
            .get(&(set, key.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Every sample's value of `key` in `set` (empty when the set has no such metric).
    pub fn values(&self, set: usize, key: &str) -> Vec<f64> {
        self.samples(set, key).iter().map(|s| s.value).collect()
    }

    /// True when any sample of `set` had `key` only as a printed figure.
    pub fn any_reported(&self, set: usize, key: &str) -> bool {
        self.samples(set, key).iter().any(|s| s.reported)
    }

    /// Values held, over all sets, metrics and samples.
    pub fn len(&self) -> usize {
        self.values.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        );
        assert_eq!(t.len(), 6);
        assert_eq!(t.values(0, "hop1.rx_pps"), vec![10.0, 12.0]);
        assert_eq!(t.values(1, "hop1.rx_pps"), vec![20.0]);
        assert!(t.values(1, "hop2.rx_pps").is_empty());
        assert_eq!(t.metrics[0].key, "generator.pps");
        assert!(!t.any_reported(0, "hop1.rx_pps"));
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
        let t = Table::build(&[vec![rec("a", 10)], vec![kernel]], false);
        let label = |k: &str| t.metrics.iter().find(|m| m.key == k).unwrap().label.clone();
        assert_eq!(label("hop1.rx_pps"), "hop 1 Ingress");
        assert_eq!(label("generator.pps"), "Traffic Generator");
    }
}
