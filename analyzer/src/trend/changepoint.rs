//! Change points in a series: E-divisive means (Matteson & James, 2014) by binary segmentation.
//!
//! For a segment, every split point τ is scored with the energy statistic
//! `Q = m n / (m + n) * (2/(m n) Σ|x - y| - Σ|x - x'| / C(m,2) - Σ|y - y'| / C(n,2))`,
//! which is large when the two sides differ in distribution (for a step, in mean). The best
//! split is kept when a permutation test says so (shuffling the segment destroys any order, so
//! the share of shuffles that score as high is the p-value) and when the two sides' means
//! differ by at least the minimum effect: nightly numbers wobble, and a statistically clear
//! 1% step is not a finding. The permutations use a fixed seed, so results are reproducible.

/// Tunables of the search.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub alpha: f64,
    pub permutations: usize,
    /// Fewest points on each side of a change.
    pub min_size: usize,
    /// Smallest difference of means that counts, as a function of (left mean, right mean).
    pub min_effect: fn(f64, f64) -> bool,
    pub seed: u64,
}

/// Relative difference of at least 5%, the default minimum effect.
pub fn five_percent(a: f64, b: f64) -> bool {
    let scale = a.abs().max(b.abs());
    scale > 0.0 && (a - b).abs() / scale >= 0.05
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.05,
            permutations: 199,
            min_size: 2,
            min_effect: five_percent,
            seed: 0x4d43_5221,
        }
    }
}

/// splitmix64: a tiny, well-known generator; enough for shuffles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle(&mut self, v: &mut [f64]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Best split of `z` (index of the first point of the right side) and its statistic.
///
/// As in Matteson & James, the right side is `z[τ..κ]` for the best `κ`, not necessarily the
/// whole rest: a dip in the middle of a series (good, bad, good again) is found even though no
/// single split separates it cleanly. Each side keeps at least `min_size` points. O(n²) time
/// and memory, so a year of nightly runs with 199 permutations takes well under a second.
pub fn best_split(z: &[f64], min_size: usize) -> Option<(usize, f64)> {
    let n = z.len();
    let min = min_size.max(2);
    if n < 2 * min {
        return None;
    }
    // before[k][t] = Σ_{i<t} |z_i - z_k| for t <= k: every sum below is a difference of two of
    // these, so each (τ, κ) costs O(1) and a whole search O(n²).
    let before: Vec<Vec<f64>> = (0..n)
        .map(|k| {
            let mut row = Vec::with_capacity(k + 1);
            let mut acc = 0.0;
            row.push(0.0);
            for zi in &z[..k] {
                acc += (zi - z[k]).abs();
                row.push(acc);
            }
            row
        })
        .collect();
    // within_left[t] = sum of distances over pairs inside z[..t].
    let mut within_left = vec![0.0; n + 1];
    for t in 1..=n {
        within_left[t] = within_left[t - 1] + before[t - 1][t - 1];
    }
    let pairs = |c: f64| c * (c - 1.0) / 2.0;
    let mut best: Option<(usize, f64)> = None;
    for (t, &within_x) in within_left.iter().enumerate().take(n - min + 1).skip(min) {
        let m = t as f64;
        let (mut cross, mut within_right) = (0.0, 0.0);
        for (k, row) in before.iter().enumerate().skip(t) {
            // Add z[k] to the right side z[t..k+1].
            cross += row[t];
            within_right += row[k] - row[t];
            let len = (k + 1 - t) as f64;
            if len < min as f64 {
                continue;
            }
            let e = 2.0 * cross / (m * len) - within_x / pairs(m) - within_right / pairs(len);
            let q = m * len / (m + len) * e;
            if best.is_none_or(|b| q > b.1) {
                best = Some((t, q));
            }
        }
    }
    best
}

/// Arithmetic mean of a non-empty slice.
pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Indices where a new segment starts, ascending (empty: no change point).
pub fn change_points(values: &[f64], s: &Settings) -> Vec<usize> {
    let mut rng = Rng(s.seed);
    let mut cps: Vec<usize> = Vec::new();
    // Segments still worth searching, as [start, end).
    let mut open: Vec<(usize, usize)> = vec![(0, values.len())];
    while let Some((a, b)) = open.pop() {
        let seg = &values[a..b];
        let Some((t, q)) = best_split(seg, s.min_size) else {
            continue;
        };
        if !(s.min_effect)(mean(&seg[..t]), mean(&seg[t..])) {
            continue;
        }
        let mut shuffled = seg.to_vec();
        let mut as_high = 0usize;
        for _ in 0..s.permutations {
            rng.shuffle(&mut shuffled);
            if best_split(&shuffled, s.min_size).is_some_and(|(_, qp)| qp >= q) {
                as_high += 1;
            }
        }
        let p = (as_high + 1) as f64 / (s.permutations + 1) as f64;
        if p < s.alpha {
            cps.push(a + t);
            open.push((a, a + t));
            open.push((a + t, b));
        }
    }
    cps.sort_unstable();
    cps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_clear_step() {
        let mut v = vec![100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.1];
        v.extend([80.0, 80.5, 79.5, 80.2, 79.8, 80.1]);
        assert_eq!(change_points(&v, &Settings::default()), vec![8]);
    }

    #[test]
    fn finds_two_steps() {
        let mut v = vec![100.0, 101.0, 99.0, 100.5, 99.5, 100.2];
        v.extend([80.0, 80.5, 79.5, 80.2, 79.8, 80.1]);
        v.extend([120.0, 119.0, 121.0, 120.5, 119.5, 120.1]);
        assert_eq!(change_points(&v, &Settings::default()), vec![6, 12]);
    }

    #[test]
    fn noise_has_no_change_point() {
        let v = [
            100.0, 102.0, 98.0, 101.0, 99.0, 100.5, 99.5, 101.5, 98.5, 100.0, 102.0, 99.0,
        ];
        assert!(change_points(&v, &Settings::default()).is_empty());
    }

    #[test]
    fn significant_but_tiny_step_is_ignored() {
        let mut v = vec![100.0; 8];
        v.extend([99.0; 8]);
        assert!(change_points(&v, &Settings::default()).is_empty());
    }

    /// The O(n²) search must agree with the definition, computed directly.
    #[test]
    fn statistic_matches_the_definition() {
        let z = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0, 3.5, 8.0, 9.7];
        let d = |a: &[f64], b: &[f64]| -> f64 {
            a.iter()
                .map(|x| b.iter().map(|y| (x - y).abs()).sum::<f64>())
                .sum()
        };
        let mut best = (0, f64::NEG_INFINITY);
        for t in 2..=8 {
            for k in t + 2..=10 {
                let (x, y) = (&z[..t], &z[t..k]);
                let (m, n) = (x.len() as f64, y.len() as f64);
                let e = 2.0 * d(x, y) / (m * n)
                    - d(x, x) / 2.0 / (m * (m - 1.0) / 2.0)
                    - d(y, y) / 2.0 / (n * (n - 1.0) / 2.0);
                let q = m * n / (m + n) * e;
                if q > best.1 {
                    best = (t, q);
                }
            }
        }
        let (t, q) = best_split(&z, 2).unwrap();
        assert_eq!(t, best.0);
        assert!((q - best.1).abs() < 1e-9, "{q} vs {}", best.1);
    }

    #[test]
    fn a_year_of_nights_is_fast() {
        let v: Vec<f64> = (0..365)
            .map(|i| {
                if i < 300 {
                    100.0 + (i % 7) as f64
                } else {
                    80.0 + (i % 5) as f64
                }
            })
            .collect();
        let start = std::time::Instant::now();
        assert_eq!(change_points(&v, &Settings::default()), vec![300]);
        assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());
    }

    #[test]
    fn too_short_series() {
        assert!(change_points(&[1.0, 100.0, 1.0], &Settings::default()).is_empty());
        assert!(change_points(&[], &Settings::default()).is_empty());
    }

    #[test]
    fn best_split_of_a_step_is_at_the_step() {
        let v = [1.0, 1.0, 1.0, 5.0, 5.0, 5.0];
        assert_eq!(best_split(&v, 2).unwrap().0, 3);
    }

    #[test]
    fn finds_a_dip_in_the_middle() {
        let mut v = vec![100.0, 101.0, 99.0, 100.5, 99.5];
        v.extend([80.0, 80.5, 79.5, 80.2, 79.8]);
        v.extend([100.2, 99.8, 100.1, 100.4, 99.6]);
        assert_eq!(change_points(&v, &Settings::default()), vec![5, 10]);
    }
}
