//! The fast-path campaign (`scripts/fast-path-speed.sh`; `reports/relay-speed-fastpath.md` says
//! what each column means): sets `CONFIG-NHh-RATE[-MODE]`, where RATE is `PPSpps` or
//! `unpaced` (the generator flat out) and MODE how the generator sent (`single`: one datagram
//! per message; `gso`: UDP GSO messages; sets named without a mode were made before modes
//! existed, with gso). Every table is keyed by the mode, the targets of issue 20 first.
//!
//! Per-hop host CPU pairs each chain run with the direct run of the same mode, repeat and rate:
//! (chain − direct) / hops, where the direct run has the chain's addressing (`route`: unicast,
//! `direct-unicast`; the others: multicast, `direct`). Unpaced, the direct run is at its own
//! top rate, higher than a chain's, so the per-hop figures there set different rates side by
//! side. A comparison of two paths ([`Against`]) pairs their chains of the same mode, repeat,
//! rate and hop count.

use std::cmp::Ordering;

use super::relay_speed::sorted_unique;
use super::{max, median, pps_tag, rep_order, split_set, Figures, Input};
use crate::error::{Error, Result};
use crate::record::{Measured, Setting};

/// Offered rates of the per-hop target (fast path per hop ≤ 1.0x route); 0 is unpaced.
pub const PER_HOP_TARGET_RATES: [u64; 2] = [100_000, 0];
/// The rate at which only the paired differences are asked for (the noise there).
pub const NOISE_RATE: u64 = 20_000;
/// The budget of the fast path above the floor: fastpath − redirect per hop, ns.
pub const ABOVE_FLOOR_BUDGET_NS: f64 = 100.0;
/// The mode of sets named without one.
const DEFAULT_MODE: &str = "gso";

/// One run.
#[derive(Debug, Clone)]
struct Run {
    config: String,
    hops: u32,
    /// Offered pps; 0 = unpaced.
    rate: u64,
    mode: String,
    rep: String,
    f: Figures,
    sent_as: String,
    /// Other processes' CPU, % of the window.
    others_pct: f64,
    /// The generator's task clock over its send time, %.
    gen_cpu_pct: Option<f64>,
    gen_cs_per_s: Option<f64>,
    /// The harness's conservation verdict.
    ok: Option<bool>,
    per_hop_ns: Option<f64>,
}

/// A table cell's key: generator mode, hop count and offered rate (0 = unpaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub mode: String,
    pub hops: u32,
    pub rate: u64,
}

impl Cell {
    /// Table order: mode, hops, then rate with unpaced last.
    fn order(&self, o: &Cell) -> Ordering {
        (&self.mode, self.hops, rate_order(self.rate)).cmp(&(&o.mode, o.hops, rate_order(o.rate)))
    }
}

/// Unpaced (0) sorts after every paced rate.
fn rate_order(rate: u64) -> (bool, u64) {
    (rate == 0, rate)
}

/// Path `a` against path `b` in one cell, paired by repeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Against {
    /// Repeats both paths ran.
    pub pairs: usize,
    /// Medians of the per-hop costs of the pairs where both have one.
    pub a_hop: Option<f64>,
    pub b_hop: Option<f64>,
    /// Median of the paired per-hop ratios a / b, over pairs with b above 0.
    pub hop_ratio: Option<f64>,
    /// Paired per-hop differences a − b, by repeat.
    pub hop_diffs: Vec<f64>,
    pub hop_diff: Option<f64>,
    /// Chain against chain: host CPU per packet a / b, by repeat, and their median.
    pub chain_ratios: Vec<f64>,
    pub chain_ratio: Option<f64>,
    /// Delivered pps, medians over the pairs, and the median of their paired ratios.
    pub a_pps: Option<f64>,
    pub b_pps: Option<f64>,
    pub recv_ratio: Option<f64>,
}

/// The highest delivered rate of a path with every repeat loss-free.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    /// Offered pps (0 = unpaced).
    pub rate: u64,
    /// Delivered pps, median of the repeats.
    pub pps: f64,
    /// Delivered pps by repeat.
    pub by_repeat: Vec<f64>,
}

/// A path's loss-free capacity in one mode and hop count.
#[derive(Debug, Clone, PartialEq)]
pub struct LossFree {
    pub best: Option<Best>,
    /// Offered rates with loss in some repeat, ascending (unpaced first, as 0).
    pub lossy_rates: Vec<u64>,
}

/// One row of the medians table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub mode: String,
    pub rate: u64,
    pub config: String,
    pub hops: u32,
    pub repeats: usize,
    /// How the generator's records say it sent, distinct values.
    pub sent_as: Vec<String>,
    pub gen_pps: Option<f64>,
    pub delivered_pps: Option<f64>,
    pub loss_pct_median: Option<f64>,
    pub loss_pct_max: Option<f64>,
    pub loss_free_repeats: usize,
    pub conserved_repeats: usize,
    pub host_ns_per_pkt: Option<f64>,
    pub per_hop_ns: Option<f64>,
    /// Per-hop costs by repeat (repeats that have one).
    pub per_hop_by_repeat: Vec<f64>,
    pub others_pct: Option<f64>,
    pub gen_cpu_pct: Option<f64>,
    pub gen_cs_per_s: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

/// Fast path against route at 3 hops: each one's loss-free capacity in a mode.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityTarget {
    pub mode: String,
    pub fastpath: Option<Best>,
    pub route: Option<Best>,
    /// fastpath / route delivered pps.
    pub ratio: Option<f64>,
    /// Whether the fast path reached route's rate.
    pub met: Option<bool>,
}

/// A comparison of two paths over every cell both ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Versus {
    pub a: String,
    pub b: String,
    pub cells: Vec<(Cell, Against)>,
}

/// One path's capacity row.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub mode: String,
    pub config: String,
    pub hops: u32,
    pub loss_free: LossFree,
}

/// The campaign's tables.
#[derive(Debug, Clone, PartialEq)]
pub struct FastPath {
    /// Fastpath against route at the target rates, with whether the median meets ≤ 1.0.
    pub per_hop_target: Vec<(Cell, Against, Option<bool>)>,
    /// Fastpath against route at [`NOISE_RATE`].
    pub noise: Vec<(Cell, Against)>,
    /// 3 hops: the highest loss-free rate, fast path against route, per mode.
    pub capacity_target: Vec<CapacityTarget>,
    /// Fastpath against redirect in every cell, with whether the median difference is below
    /// [`ABOVE_FLOOR_BUDGET_NS`].
    pub above_floor: Vec<(Cell, Against, Option<bool>)>,
    /// By mode, rate (unpaced last), hops and configuration.
    pub rows: Vec<Row>,
    /// Whether any `kernel` run is in the records (a machine without multicast routing has none).
    pub ran_kernel: bool,
    /// fastpath/route, fastpath/kernel, fastpath/redirect, route/redirect, kernel/redirect,
    /// mcrd/fastpath; the kernel ones only when [`FastPath::ran_kernel`].
    pub versus: Vec<Versus>,
    /// By configuration, hops, mode.
    pub capacity: Vec<Capacity>,
    /// Sets whose name is not `CONFIG-NHh-RATE[-MODE]`: not in the tables.
    pub skipped_sets: Vec<String>,
}

/// `PPSpps` or `unpaced`, then an optional `-MODE` (no dash in it).
fn rate_and_mode(tail: &str) -> Option<(u64, String)> {
    let (rate, mode) = match tail.split_once('-') {
        Some((r, m)) if !m.is_empty() && !m.contains('-') => (r, m.to_string()),
        Some(_) => return None,
        None => (tail, DEFAULT_MODE.to_string()),
    };
    let rate = if rate == "unpaced" { 0 } else { pps_tag(rate)? };
    Some((rate, mode))
}

/// A setting as text: a string as it is, anything else as JSON.
fn setting_text(s: Option<&Setting>) -> String {
    match s {
        None | Some(Setting::Null) => "?".into(),
        Some(Setting::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn run_of(i: &Input, config: &str, hops: u32, rate: u64, mode: String) -> Result<Run> {
    let f = Figures::of(i)?;
    let r = &i.record;
    let p = i.path.as_path();
    let g = &r.configuration.generator;
    let sent_as = format!(
        "{} ×{}, ≤ {} per call",
        setting_text(g.get("batch_mode")),
        setting_text(g.get("gso_segments")),
        setting_text(g.get("max_batch_packets"))
    );
    let host = r.host_cpu.as_ref();
    let others = super::need(
        p,
        "host_cpu.other_processes_ns",
        host.and_then(|h| h.other_processes_ns),
    )?;
    let window = super::need(p, "host_cpu.window_ns", host.and_then(|h| h.window_ns))?;
    if window == 0 {
        return Err(Error::field(p, "host_cpu.window_ns", "is 0"));
    }
    // Checked non-zero by Figures::of.
    let elapsed = r.generator.as_ref().and_then(|g| g.elapsed_ns).unwrap_or(1) as f64;
    let perf = |name: &str| {
        r.generator
            .as_ref()?
            .perf
            .get(name)
            .copied()
            .and_then(Measured::count)
    };
    Ok(Run {
        config: config.to_string(),
        hops,
        rate,
        mode,
        rep: i.rep.clone(),
        f,
        sent_as,
        others_pct: others as f64 * 100.0 / window as f64,
        gen_cpu_pct: perf("task_clock_ns").map(|t| t as f64 * 100.0 / elapsed),
        gen_cs_per_s: perf("context_switches").map(|c| c as f64 * 1e9 / elapsed),
        ok: r.conservation.as_ref().map(|c| c.ok),
        per_hop_ns: None,
    })
}

/// The campaign's tables.
pub fn fast_path(inputs: &[Input]) -> Result<FastPath> {
    let mut runs = Vec::new();
    let mut skipped_sets: Vec<String> = Vec::new();
    for i in inputs {
        let Some((config, hops, (rate, mode))) = split_set(&i.set, rate_and_mode) else {
            if !skipped_sets.contains(&i.set) {
                skipped_sets.push(i.set.clone());
            }
            continue;
        };
        runs.push(run_of(i, config, hops, rate, mode)?);
    }
    let per_hop: Vec<Option<f64>> = runs
        .iter()
        .map(|c| {
            if c.hops == 0 {
                return None;
            }
            let own = c.f.host_ns_per_pkt?;
            let direct = if c.config == "route" {
                "direct-unicast"
            } else {
                "direct"
            };
            let d = find(&runs, direct, &c.mode, 0, c.rate, &c.rep)?;
            Some((own - d.f.host_ns_per_pkt?) / f64::from(c.hops))
        })
        .collect();
    for (r, p) in runs.iter_mut().zip(per_hop) {
        r.per_hop_ns = p;
    }
    let t = Tables { runs: &runs };
    let cells = t.cells();

    let per_hop_target = cells
        .iter()
        .filter(|c| PER_HOP_TARGET_RATES.contains(&c.rate))
        .filter_map(|c| {
            let a = t.against("fastpath", "route", c)?;
            let met = match (a.a_hop, a.b_hop, a.hop_ratio) {
                (Some(x), Some(y), Some(r)) if x > 0.0 && y > 0.0 => Some(r <= 1.0),
                _ => None,
            };
            Some((c.clone(), a, met))
        })
        .collect();
    let noise = cells
        .iter()
        .filter(|c| c.rate == NOISE_RATE)
        .filter_map(|c| Some((c.clone(), t.against("fastpath", "route", c)?)))
        .collect();
    let capacity_target =
        sorted_unique(runs.iter().filter(|r| r.hops == 3).map(|r| r.mode.clone()))
            .into_iter()
            .map(|mode| {
                let f = t.loss_free("fastpath", &mode, 3).best;
                let r = t.loss_free("route", &mode, 3).best;
                let ratio = match (&f, &r) {
                    (Some(f), Some(r)) if r.pps != 0.0 => Some(f.pps / r.pps),
                    _ => None,
                };
                let met = match (&f, &r) {
                    (Some(f), Some(r)) => Some(f.pps >= r.pps),
                    _ => None,
                };
                CapacityTarget {
                    mode,
                    fastpath: f,
                    route: r,
                    ratio,
                    met,
                }
            })
            .collect();
    let above_floor = cells
        .iter()
        .filter_map(|c| {
            let a = t.against("fastpath", "redirect", c)?;
            let met = a.hop_diff.map(|d| d < ABOVE_FLOOR_BUDGET_NS);
            Some((c.clone(), a, met))
        })
        .collect();

    let ran_kernel = runs.iter().any(|r| r.config == "kernel");
    let mut pairs = vec![
        ("fastpath", "route"),
        ("fastpath", "kernel"),
        ("fastpath", "redirect"),
        ("route", "redirect"),
        ("kernel", "redirect"),
        ("mcrd", "fastpath"),
    ];
    if !ran_kernel {
        pairs.retain(|(a, b)| *a != "kernel" && *b != "kernel");
    }
    let versus = pairs
        .into_iter()
        .map(|(a, b)| Versus {
            a: a.into(),
            b: b.into(),
            cells: cells
                .iter()
                .filter_map(|c| Some((c.clone(), t.against(a, b, c)?)))
                .collect(),
        })
        .collect();

    Ok(FastPath {
        per_hop_target,
        noise,
        capacity_target,
        above_floor,
        rows: t.rows(),
        ran_kernel,
        versus,
        capacity: t.capacity(),
        skipped_sets,
    })
}

/// The first run (in input order) of a configuration, mode, hop count, rate and repeat.
fn find<'a>(
    runs: &'a [Run],
    config: &str,
    mode: &str,
    hops: u32,
    rate: u64,
    rep: &str,
) -> Option<&'a Run> {
    runs.iter().find(|r| {
        r.config == config && r.mode == mode && r.hops == hops && r.rate == rate && r.rep == rep
    })
}

struct Tables<'a> {
    runs: &'a [Run],
}

impl Tables<'_> {
    /// Every mode, hop count and rate with chains, in table order.
    fn cells(&self) -> Vec<Cell> {
        let mut v: Vec<Cell> = Vec::new();
        for r in self.runs.iter().filter(|r| r.hops > 0) {
            let c = Cell {
                mode: r.mode.clone(),
                hops: r.hops,
                rate: r.rate,
            };
            if !v.contains(&c) {
                v.push(c);
            }
        }
        v.sort_by(Cell::order);
        v
    }

    fn against(&self, a: &str, b: &str, c: &Cell) -> Option<Against> {
        let mut p: Vec<(&Run, &Run)> = self
            .runs
            .iter()
            .filter(|x| x.config == a && x.mode == c.mode && x.hops == c.hops && x.rate == c.rate)
            .filter_map(|x| Some((x, find(self.runs, b, &x.mode, x.hops, x.rate, &x.rep)?)))
            .collect();
        if p.is_empty() {
            return None;
        }
        p.sort_by(|x, y| rep_order(&x.0.rep, &y.0.rep));
        let q: Vec<(f64, f64)> = p
            .iter()
            .filter_map(|(x, y)| Some((x.per_hop_ns?, y.per_hop_ns?)))
            .collect();
        let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) if y != 0.0 => Some(x / y),
            _ => None,
        };
        let hop_diffs: Vec<f64> = q.iter().map(|(x, y)| x - y).collect();
        let chain_ratios: Vec<f64> = p
            .iter()
            .filter_map(|(x, y)| ratio(x.f.host_ns_per_pkt, y.f.host_ns_per_pkt))
            .collect();
        Some(Against {
            pairs: p.len(),
            a_hop: median(q.iter().map(|q| q.0).collect()),
            b_hop: median(q.iter().map(|q| q.1).collect()),
            hop_ratio: median(q.iter().filter(|q| q.1 > 0.0).map(|q| q.0 / q.1).collect()),
            hop_diff: median(hop_diffs.clone()),
            hop_diffs,
            chain_ratio: median(chain_ratios.clone()),
            chain_ratios,
            a_pps: median(p.iter().map(|(x, _)| x.f.recv_pps).collect()),
            b_pps: median(p.iter().map(|(_, y)| y.f.recv_pps).collect()),
            recv_ratio: median(
                p.iter()
                    .filter_map(|(x, y)| ratio(Some(x.f.recv_pps), Some(y.f.recv_pps)))
                    .collect(),
            ),
        })
    }

    /// The highest delivered rate of `config` on `hops` hops in `mode` over the offered rates
    /// at which every repeat was loss-free.
    fn loss_free(&self, config: &str, mode: &str, hops: u32) -> LossFree {
        let g: Vec<&Run> = self
            .runs
            .iter()
            .filter(|r| r.config == config && r.mode == mode && r.hops == hops)
            .collect();
        let mut best: Option<Best> = None;
        let mut lossy_rates = Vec::new();
        for rate in sorted_unique(g.iter().map(|r| r.rate)) {
            let mut at: Vec<&&Run> = g.iter().filter(|r| r.rate == rate).collect();
            let pps = median(at.iter().map(|r| r.f.recv_pps).collect()).unwrap_or(f64::NAN);
            if at.iter().all(|r| r.f.lost() == 0.0) {
                // The last of equal maxima, in rate order.
                if best.as_ref().is_none_or(|b| pps >= b.pps) {
                    at.sort_by(|x, y| rep_order(&x.rep, &y.rep));
                    best = Some(Best {
                        rate,
                        pps,
                        by_repeat: at.iter().map(|r| r.f.recv_pps).collect(),
                    });
                }
            } else {
                lossy_rates.push(rate);
            }
        }
        LossFree { best, lossy_rates }
    }

    fn rows(&self) -> Vec<Row> {
        let mut keys: Vec<(&str, u64, u32, &str)> = Vec::new();
        for r in self.runs {
            let k = (r.mode.as_str(), r.rate, r.hops, r.config.as_str());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys.sort_by(|a, b| {
            (a.0, rate_order(a.1), a.2, a.3).cmp(&(b.0, rate_order(b.1), b.2, b.3))
        });
        keys.into_iter()
            .map(|(mode, rate, hops, config)| {
                let mut g: Vec<&Run> = self
                    .runs
                    .iter()
                    .filter(|r| {
                        r.mode == mode && r.rate == rate && r.hops == hops && r.config == config
                    })
                    .collect();
                g.sort_by(|x, y| rep_order(&x.rep, &y.rep));
                let m = |f: &dyn Fn(&Run) -> Option<f64>| {
                    median(g.iter().filter_map(|r| f(r)).collect())
                };
                Row {
                    mode: mode.to_string(),
                    rate,
                    config: config.to_string(),
                    hops,
                    repeats: g.len(),
                    sent_as: sorted_unique(g.iter().map(|r| r.sent_as.clone())),
                    gen_pps: m(&|r| Some(r.f.gen_pps)),
                    delivered_pps: m(&|r| Some(r.f.recv_pps)),
                    loss_pct_median: m(&|r| Some(r.f.loss_pct())),
                    loss_pct_max: max(g.iter().map(|r| r.f.loss_pct())),
                    loss_free_repeats: g.iter().filter(|r| r.f.lost() == 0.0).count(),
                    conserved_repeats: g.iter().filter(|r| r.ok == Some(true)).count(),
                    host_ns_per_pkt: m(&|r| r.f.host_ns_per_pkt),
                    per_hop_ns: m(&|r| r.per_hop_ns),
                    per_hop_by_repeat: g.iter().filter_map(|r| r.per_hop_ns).collect(),
                    others_pct: m(&|r| Some(r.others_pct)),
                    gen_cpu_pct: m(&|r| r.gen_cpu_pct),
                    gen_cs_per_s: m(&|r| r.gen_cs_per_s),
                    p50_us: m(&|r| r.f.p50_us),
                    p99_us: m(&|r| r.f.p99_us),
                }
            })
            .collect()
    }

    /// Every chain's loss-free capacity, by configuration, hops and mode.
    fn capacity(&self) -> Vec<Capacity> {
        sorted_unique(
            self.runs
                .iter()
                .filter(|r| r.hops > 0)
                .map(|r| (r.config.clone(), r.hops, r.mode.clone())),
        )
        .into_iter()
        .map(|(config, hops, mode)| Capacity {
            loss_free: self.loss_free(&config, &mode, hops),
            mode,
            config,
            hops,
        })
        .collect()
    }
}
