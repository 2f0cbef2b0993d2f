//! Two-sided Mann-Whitney U test (Wilcoxon rank-sum) for two independent samples.
//!
//! Benchmark repeats are few and not normal (one slow run from a noisy neighbour is common), so
//! we test ranks rather than means. Small samples without ties get the exact distribution of U
//! (counted by recursion, as in the classic tables); otherwise the normal approximation with a
//! tie correction and a continuity correction is used. The result says which was used.

/// How the p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Exact,
    NormalApproximation,
}

/// Outcome of the test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: pairs (x, y) with x > y, ties counting one half.
    pub u: f64,
    /// Two-sided p-value.
    pub p: f64,
    pub method: Method,
}

/// Above this many total samples the exact distribution is not computed (the normal
/// approximation is already good there, and the table grows as n1 * n2 * (n1 + n2)).
const EXACT_MAX_TOTAL: usize = 50;

/// Runs the test. Both samples must be non-empty and finite.
pub fn test(x: &[f64], y: &[f64]) -> MannWhitney {
    assert!(
        !x.is_empty() && !y.is_empty(),
        "Mann-Whitney needs two non-empty samples"
    );
    let (n1, n2) = (x.len(), y.len());
    let mut all: Vec<(f64, usize)> = x
        .iter()
        .map(|&v| (v, 0))
        .chain(y.iter().map(|&v| (v, 1)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mid-ranks for ties; collect tie group sizes for the variance correction.
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_x += all[i..=j].iter().filter(|e| e.1 == 0).count() as f64 * rank;
        i = j + 1;
    }
    let u = rank_sum_x - (n1 * (n1 + 1)) as f64 / 2.0;
    let has_ties = tie_term > 0.0;
    if !has_ties && n1 + n2 <= EXACT_MAX_TOTAL {
        return MannWhitney {
            u,
            p: exact_p(n1, n2, u as usize),
            method: Method::Exact,
        };
    }
    let (m, n) = (n1 as f64, n2 as f64);
    let total = m + n;
    let mean = m * n / 2.0;
    let var = m * n / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    let p = if var <= 0.0 {
        1.0 // every value equal: no evidence of any difference
    } else {
        let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
        (2.0 * normal_sf(z)).min(1.0)
    };
    MannWhitney {
        u,
        p,
        method: Method::NormalApproximation,
    }
}

/// The smallest two-sided p-value the test can give for samples of `n1` and `n2`: that of two
/// samples that do not overlap at all (ties only make it larger). When it is not below the
/// significance level, no outcome of the test can be significant: with 5 against 2 it is
/// 2 / C(7, 2) = 0.095, so those repeats cannot show a change at α = 0.05 however large.
pub fn smallest_p(n1: usize, n2: usize) -> f64 {
    let x: Vec<f64> = (0..n1).map(|i| i as f64).collect();
    let y: Vec<f64> = (n1..n1 + n2).map(|i| i as f64).collect();
    test(&x, &y).p
}

/// Exact two-sided p-value: 2 * P(U <= min(u, n1 n2 - u)), capped at 1.
fn exact_p(n1: usize, n2: usize, u: usize) -> f64 {
    let max_u = n1 * n2;
    // counts[m][n][k]: arrangements of m x's and n y's with U = k, built as
    // f(m, n, k) = f(m - 1, n, k - n) + f(m, n - 1, k) (the largest value is an x or a y).
    let mut prev: Vec<Vec<f64>> = (0..=n2).map(|_| vec![1.0]).collect(); // m = 0: U is 0
    for m in 1..=n1 {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(n2 + 1);
        cur.push(vec![1.0]); // n = 0
        for n in 1..=n2 {
            let mut row = vec![0.0; m * n + 1];
            for (k, slot) in row.iter_mut().enumerate() {
                let from_x = if k >= n {
                    prev[n].get(k - n).copied().unwrap_or(0.0)
                } else {
                    0.0
                };
                let from_y = cur[n - 1].get(k).copied().unwrap_or(0.0);
                *slot = from_x + from_y;
            }
            cur.push(row);
        }
        prev = cur;
    }
    let dist = &prev[n2];
    let total: f64 = dist.iter().sum();
    let tail = u.min(max_u - u);
    let p: f64 = dist[..=tail].iter().sum::<f64>() / total;
    (2.0 * p).min(1.0)
}

/// Upper tail of the standard normal distribution, via `erfc`.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7,
/// ample for p-values that are compared with 0.05).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: enumerate every way of choosing which ranks belong to x.
    fn brute_p(n1: usize, n2: usize, u_obs: f64) -> f64 {
        let n = n1 + n2;
        let mut us = Vec::new();
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != n1 {
                continue;
            }
            let rank_sum: usize = (0..n).filter(|b| mask & (1 << b) != 0).map(|b| b + 1).sum();
            us.push(rank_sum as f64 - (n1 * (n1 + 1)) as f64 / 2.0);
        }
        let max = (n1 * n2) as f64;
        let tail = u_obs.min(max - u_obs);
        let k = us.iter().filter(|&&u| u <= tail).count() as f64;
        (2.0 * k / us.len() as f64).min(1.0)
    }

    #[test]
    fn complete_separation_of_three_and_three() {
        // 1 arrangement in C(6,3) = 20 has U = 0: two-sided p = 2/20.
        let r = test(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert_eq!(r.u, 0.0);
        assert_eq!(r.method, Method::Exact);
        assert!((r.p - 0.1).abs() < 1e-12, "{}", r.p);
    }

    #[test]
    fn complete_separation_of_five_and_five() {
        // 2 / C(10,5) = 2/252.
        let r = test(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(r.u, 25.0);
        assert!((r.p - 2.0 / 252.0).abs() < 1e-12, "{}", r.p);
    }

    #[test]
    fn exact_matches_brute_force() {
        let x = [1.1, 4.0, 2.5, 9.0];
        let y = [3.0, 5.5, 6.0, 7.5, 8.0];
        let r = test(&x, &y);
        let direct: f64 = x
            .iter()
            .map(|a| y.iter().filter(|b| a > b).count() as f64)
            .sum();
        assert_eq!(r.u, direct);
        assert!((r.p - brute_p(4, 5, r.u)).abs() < 1e-12);
    }

    #[test]
    fn identical_samples_are_not_different() {
        let r = test(&[5.0, 5.0, 5.0], &[5.0, 5.0, 5.0]);
        assert_eq!(r.p, 1.0);
        assert_eq!(r.method, Method::NormalApproximation);
    }

    #[test]
    fn normal_approximation_with_ties() {
        // x = 1..=10 with one tie to y; hand-computed: U = 45.5 of 100... checked by formula.
        let x: Vec<f64> = (1..=10).map(f64::from).collect();
        let y: Vec<f64> = (10..=19).map(f64::from).collect();
        let r = test(&x, &y);
        assert_eq!(r.method, Method::NormalApproximation);
        assert_eq!(r.u, 0.5);
        // mean 50, var = 100/12 * (21 - 6/380) = 174.868..., z = (49.5 - 0.5)/13.2237 = 3.7055
        // two-sided p = 2 * (1 - Phi(3.7055)) = 2.11e-4.
        assert!((r.p - 2.11e-4).abs() < 0.02e-4, "{}", r.p);
    }

    #[test]
    fn erfc_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-7);
        assert!((normal_sf(1.959_963_985) - 0.025).abs() < 1e-7);
    }
}
