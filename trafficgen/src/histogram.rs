//! HdrHistograms of nanoseconds or counts, and their summary as a record [`Distribution`].
//!
//! Histograms are created once with fixed bounds, so recording never allocates; values beyond
//! the bound are clamped to it (and show up as the max), never dropped.

use hdrhistogram::Histogram;

use crate::record::Distribution;

/// Highest value tracked: one hour in nanoseconds (far above any gap or latency we measure).
pub const MAX_TRACKED: u64 = 3_600_000_000_000;
/// Significant digits: values are exact to 0.1%.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram for values in 0..=[`MAX_TRACKED`].
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Records `value`, clamped to the tracked range.
#[inline]
pub fn record(histogram: &mut Histogram<u64>, value: u64) {
    histogram.saturating_record(value.min(MAX_TRACKED));
}

/// The record summary of `histogram` (all zero when empty).
pub fn distribution(histogram: &Histogram<u64>) -> Distribution {
    if histogram.is_empty() {
        return Distribution::default();
    }
    Distribution {
        samples: histogram.len(),
        min: histogram.min(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        mean: histogram.mean(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            record(&mut h, v * 1000);
        }
        let d = distribution(&h);
        assert_eq!(d.samples, 1000);
        assert_eq!(d.min, 1000);
        assert!((499_000..=501_000).contains(&d.p50), "{d:?}");
        assert!((989_000..=991_000).contains(&d.p99), "{d:?}");
        assert!(d.max >= 1_000_000 && d.max <= 1_001_000, "{d:?}");
    }

    #[test]
    fn empty_is_all_zero_and_huge_values_clamp() {
        assert_eq!(distribution(&new_histogram()), Distribution::default());
        let mut h = new_histogram();
        record(&mut h, u64::MAX);
        record(&mut h, 0);
        assert_eq!(h.len(), 2);
        assert_eq!(distribution(&h).min, 0);
    }
}
