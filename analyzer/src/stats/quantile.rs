//! Percentiles of a handful of samples (ping round trips, scrape times, a benchmark's trials)
//! by nearest rank: the smallest sample that at least `q` of the samples are at or below, so
//! every percentile is a value that was measured (p99 of 200 pings is the 198th fastest). This
//! is polars' `QuantileMethod::Equiprobable` (Hyndman and Fan's definition 1), computed by
//! polars on the samples; the median beside it is [`super::median`] (the mean of the middle
//! two of an even count), not a nearest rank.

use polars::prelude::{ChunkQuantile, Float64Chunked, NewChunkedArray, QuantileMethod};

/// The nearest-rank percentile `q` (0 < q ≤ 1) of `values`; none of no values.
pub fn nearest_rank(values: &[f64], q: f64) -> Option<f64> {
    assert!(q > 0.0 && q <= 1.0, "a percentile is in (0, 1], got {q}");
    Float64Chunked::from_slice("samples".into(), values)
        .quantile(q, QuantileMethod::Equiprobable)
        .expect("q is in [0, 1]")
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    #[test]
    fn the_smallest_sample_with_q_of_the_samples_at_or_below_it() {
        let v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.99), Some(198.0));
        assert_eq!(nearest_rank(&v, 0.5), Some(100.0));
        assert_eq!(nearest_rank(&v, 1.0), Some(200.0));
        let v: Vec<f64> = (1..=150).map(f64::from).collect();
        // ceil(148.5): the 149th, where taking index n * 99 / 100 - 1 gave the 148th.
        assert_eq!(nearest_rank(&v, 0.99), Some(149.0));
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.99), Some(990.0));
        assert_eq!(nearest_rank(&v, 0.999), Some(999.0));
        assert_eq!(nearest_rank(&[7.0], 0.99), Some(7.0));
        assert_eq!(nearest_rank(&[], 0.99), None);
    }
}
