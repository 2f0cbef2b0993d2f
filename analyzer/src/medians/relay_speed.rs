//! The relay-speed campaign (`scripts/relay-speed.sh`, `reports/relay-speed.md` says what each
//! column means): sets `CONFIG-NHh-PPSpps`, medians per offered rate and configuration, and per
//! configuration the highest rate it delivered with every repeat loss-free.
//!
//! Per-hop host CPU pairs each chain run with the `direct` run of the same repeat and rate:
//! (chain − direct) / hops, then the median over repeats. The cost over the kernel pairs it with
//! the `kernel` chain of the same repeat and rate: (chain − kernel) / hops.

use super::{max, median, pps_tag, split_set, Figures, Input};
use crate::error::Result;

/// One run, with its pairings.
#[derive(Debug, Clone)]
struct Run {
    config: String,
    hops: u32,
    rate: u64,
    rep: String,
    f: Figures,
    per_hop_ns: Option<f64>,
    /// Per hop against the kernel chain's per hop (paired); only for runs with a per-hop cost.
    vs_kernel: Option<f64>,
    over_kernel_ns: Option<f64>,
}

/// One row of the medians table: a configuration at an offered rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub rate_pps: u64,
    pub config: String,
    pub repeats: usize,
    pub gen_pps: Option<f64>,
    pub delivered_pps: Option<f64>,
    pub loss_pct_median: Option<f64>,
    pub loss_pct_max: Option<f64>,
    pub loss_free_repeats: usize,
    pub host_ns_per_pkt: Option<f64>,
    /// (chain − direct) / hops, median over repeats.
    pub per_hop_ns: Option<f64>,
    /// Per hop / the kernel chain's per hop, median over repeats.
    pub per_hop_vs_kernel: Option<f64>,
    /// (chain − kernel chain) / hops, median over repeats.
    pub over_kernel_ns: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

/// A chain configuration's capacity: the highest delivered rate (median of its repeats) over
/// the offered rates at which every repeat was loss-free.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub config: String,
    /// `(delivered pps, offered pps)`; none when no rate was loss-free.
    pub best: Option<(f64, u64)>,
    /// Offered rates at which some repeat lost packets, ascending.
    pub lossy_rates: Vec<u64>,
}

/// The campaign's tables.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySpeed {
    /// By offered rate, then configuration name.
    pub rows: Vec<Row>,
    /// Chains (hops > 0), by configuration name.
    pub capacity: Vec<Capacity>,
    /// Sets whose name is not `CONFIG-NHh-PPSpps`: not in the tables.
    pub skipped_sets: Vec<String>,
}

/// The tables of a campaign's records.
pub fn relay_speed(inputs: &[Input]) -> Result<RelaySpeed> {
    let mut runs = Vec::new();
    let mut skipped_sets: Vec<String> = Vec::new();
    for i in inputs {
        let Some((config, hops, rate)) = split_set(&i.set, pps_tag) else {
            if !skipped_sets.contains(&i.set) {
                skipped_sets.push(i.set.clone());
            }
            continue;
        };
        runs.push(Run {
            config: config.to_string(),
            hops,
            rate,
            rep: i.rep.clone(),
            f: Figures::of(i)?,
            per_hop_ns: None,
            vs_kernel: None,
            over_kernel_ns: None,
        });
    }
    pair(&mut runs);

    let mut rows = Vec::new();
    for rate in sorted_unique(runs.iter().map(|r| r.rate)) {
        let at: Vec<&Run> = runs.iter().filter(|r| r.rate == rate).collect();
        for config in sorted_unique(at.iter().map(|r| r.config.clone())) {
            let g: Vec<&Run> = at.iter().copied().filter(|r| r.config == config).collect();
            let m =
                |f: &dyn Fn(&Run) -> Option<f64>| median(g.iter().filter_map(|r| f(r)).collect());
            rows.push(Row {
                rate_pps: rate,
                config,
                repeats: g.len(),
                gen_pps: m(&|r| Some(r.f.gen_pps)),
                delivered_pps: m(&|r| Some(r.f.recv_pps)),
                loss_pct_median: m(&|r| Some(r.f.loss_pct())),
                loss_pct_max: max(g.iter().map(|r| r.f.loss_pct())),
                loss_free_repeats: g.iter().filter(|r| r.f.lost() == 0.0).count(),
                host_ns_per_pkt: m(&|r| r.f.host_ns_per_pkt),
                per_hop_ns: m(&|r| r.per_hop_ns),
                per_hop_vs_kernel: m(&|r| r.vs_kernel),
                over_kernel_ns: m(&|r| r.over_kernel_ns),
                p50_us: m(&|r| r.f.p50_us),
                p99_us: m(&|r| r.f.p99_us),
            });
        }
    }

    let mut capacity = Vec::new();
    for config in sorted_unique(runs.iter().map(|r| r.config.clone())) {
        let g: Vec<&Run> = runs.iter().filter(|r| r.config == config).collect();
        if g[0].hops == 0 {
            continue;
        }
        let mut best: Option<(f64, u64)> = None;
        let mut lossy_rates = Vec::new();
        for rate in sorted_unique(g.iter().map(|r| r.rate)) {
            let at: Vec<&&Run> = g.iter().filter(|r| r.rate == rate).collect();
            let pps = median(at.iter().map(|r| r.f.recv_pps).collect()).unwrap_or(f64::NAN);
            if at.iter().all(|r| r.f.lost() == 0.0) {
                // The last of equal maxima, as in rate order.
                if best.is_none_or(|(b, _)| pps >= b) {
                    best = Some((pps, rate));
                }
            } else {
                lossy_rates.push(rate);
            }
        }
        capacity.push(Capacity {
            config,
            best,
            lossy_rates,
        });
    }
    Ok(RelaySpeed {
        rows,
        capacity,
        skipped_sets,
    })
}

/// Fills each run's per-hop cost (against `direct`) and its cost against the `kernel` chain,
/// both paired by repeat and rate (the first such run, in input order).
fn pair(runs: &mut [Run]) {
    let host = |runs: &[Run], config: &str, rate: u64, rep: &str| {
        runs.iter()
            .find(|d| d.config == config && d.rate == rate && d.rep == rep)
            .map(|d| (d.f.host_ns_per_pkt, d.per_hop_ns))
    };
    let per_hop: Vec<Option<f64>> = runs
        .iter()
        .map(|r| {
            if r.hops == 0 {
                return None;
            }
            let own = r.f.host_ns_per_pkt?;
            let (direct, _) = host(runs, "direct", r.rate, &r.rep)?;
            Some((own - direct?) / f64::from(r.hops))
        })
        .collect();
    for (r, p) in runs.iter_mut().zip(per_hop) {
        r.per_hop_ns = p;
    }
    let against: Vec<(Option<f64>, Option<f64>)> = runs
        .iter()
        .map(|r| {
            let Some(own) = r.per_hop_ns else {
                return (None, None);
            };
            let Some((k_host, k_hop)) = host(runs, "kernel", r.rate, &r.rep) else {
                return (None, None);
            };
            let vs = k_hop.filter(|&k| k > 0.0).map(|k| own / k);
            let over = k_host.and_then(|k| Some((r.f.host_ns_per_pkt? - k) / f64::from(r.hops)));
            (vs, over)
        })
        .collect();
    for (r, (vs, over)) in runs.iter_mut().zip(against) {
        r.vs_kernel = vs;
        r.over_kernel_ns = over;
    }
}

/// The distinct values, ascending.
pub(crate) fn sorted_unique<T: Ord>(v: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = v.into_iter().collect();
    v.sort();
    v.dedup();
    v
}
