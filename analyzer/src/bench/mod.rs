//! The small benchmarks' analysis: what `scripts/bench-send.sh`, `scripts/scrape-cost.sh` and
//! `scripts/bench-rules.sh` make of what they measured. The scripts keep the namespaces, links
//! and processes and leave the tools' records and the raw samples in a directory; here those
//! are read through their contracts (trafficgen's send and receive records, the relay's stats)
//! and reduced to numbers, which `render::bench` writes as the text the scripts print.
//!
//! [`send`]: the median rate, CPU per packet and rate error of each case's trials.
//! [`scrape_cost`]: the time per `/metrics` scrape, and the receiver's loss and latency per
//! reader condition. [`pings`]: the control socket's round trips.
//!
//! One median everywhere ([`crate::stats::median`]: the mean of the middle two of an even
//! count) and one percentile ([`crate::stats::quantile::nearest_rank`]). The awk and jq these
//! replaced each had their own (the lower middle, the upper middle, `int(n * 99 / 100) - 1`),
//! so the same samples gave different medians in two columns of one table.

pub mod pings;
pub mod scrape_cost;
pub mod send;

use std::path::Path;

use crate::error::{read_nonempty, Error, Result};
use crate::stats::quantile::nearest_rank;

/// The median, 99th percentile and largest of some samples, in their unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tail {
    pub samples: usize,
    pub median: f64,
    /// Nearest rank: the smallest sample with 99% of the samples at or below it.
    pub p99: f64,
    pub max: f64,
}

impl Tail {
    /// The tail of `values`; none of no values.
    pub fn of(values: &[f64]) -> Option<Tail> {
        if values.is_empty() {
            return None;
        }
        Some(Tail {
            samples: values.len(),
            median: crate::stats::median(values),
            p99: nearest_rank(values, 0.99)?,
            max: nearest_rank(values, 1.0)?,
        })
    }

    /// Every figure times `k` (a change of unit).
    pub fn scaled(self, k: f64) -> Tail {
        Tail {
            median: self.median * k,
            p99: self.p99 * k,
            max: self.max * k,
            ..self
        }
    }
}

/// The numbers of a text file, `columns` of them per line separated by blanks (blank lines
/// skipped): `rows[i][c]`. A line of another shape, or a field that is not a finite number, is
/// an error naming the file and the line.
pub fn read_rows(path: &Path, columns: usize) -> Result<Vec<Vec<f64>>> {
    let text = read_nonempty(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| Error::field(path, format!("line {}", i + 1), why);
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != columns {
            return Err(bad(format!(
                "`{line}` has {} fields, expected {columns}",
                fields.len()
            )));
        }
        let row = fields
            .iter()
            .map(|f| {
                f.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(format!("`{f}` is not a number")))
            })
            .collect::<Result<Vec<f64>>>()?;
        rows.push(row);
    }
    Ok(rows)
}

/// One number per line (the samples a script wrote).
pub fn read_samples(path: &Path) -> Result<Vec<f64>> {
    Ok(read_rows(path, 1)?.into_iter().map(|r| r[0]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_an_even_count_takes_the_mean_of_the_middle_two() {
        let t = Tail::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(
            t,
            Tail {
                samples: 4,
                median: 2.5,
                p99: 4.0,
                max: 4.0
            }
        );
        assert_eq!(Tail::of(&[]), None);
        assert_eq!(t.scaled(1000.0).median, 2500.0);
    }

    #[test]
    fn samples_are_read_naming_the_line_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pings");
        std::fs::write(&p, "4\n\n5.5\n").unwrap();
        assert_eq!(read_samples(&p).unwrap(), [4.0, 5.5]);
        std::fs::write(&p, "4\nnan\n").unwrap();
        let e = read_samples(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("`nan`"), "{e}");
        std::fs::write(&p, "0.1 8301\n0.2\n").unwrap();
        let e = read_rows(&p, 2).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("expected 2"), "{e}");
    }
}
