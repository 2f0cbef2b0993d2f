//! The medians tables of a benchmark campaign (`analyzer medians`), one exporter per layout:
//! [`relay_speed`] and [`fast_path`]. The numbers are the model's ([`crate::medians`]); here
//! they are rounded for reading (rates and ns to whole numbers, ratios and loss to two places,
//! latency and shares to one) and every name from a set's directory is escaped for its cell.
//! A figure that could not be computed is `—`.

use std::fmt::Write;

use super::escape_cell;
use crate::medians::fast_path::{Against, Best, Cell, FastPath, ABOVE_FLOOR_BUDGET_NS, NOISE_RATE};
use crate::medians::relay_speed::RelaySpeed;

const NONE: &str = "—";

/// Rounded to `places` decimals and written shortest (`3.4`, `438`, `0.33`).
fn places(x: Option<f64>, places: i32) -> String {
    match x {
        None => NONE.into(),
        Some(x) => {
            let k = 10f64.powi(places);
            format!("{}", (x * k).round() / k)
        }
    }
}

fn r1(x: Option<f64>) -> String {
    places(x, 1)
}

fn r2(x: Option<f64>) -> String {
    places(x, 2)
}

fn int(x: Option<f64>) -> String {
    places(x, 0)
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|&x| int(Some(x)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rate_label(rate: u64) -> String {
    if rate == 0 {
        "unpaced".into()
    } else {
        rate.to_string()
    }
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        None => NONE,
        Some(true) => "yes",
        Some(false) => "no",
    }
}

/// `reports/relay-speed.md`'s tables.
pub fn relay_speed(m: &RelaySpeed) -> String {
    let mut o = String::new();
    o.push_str("## Medians per offered rate and configuration\n\n");
    o.push_str("| offered pps | configuration | repeats | generator pps | delivered pps | loss % (median / max) | loss-free repeats | host CPU ns per delivered pkt | per-hop ns (paired with direct) | per-hop / kernel's (paired) | ns per hop over the kernel chain (paired) | latency p50 µs | latency p99 µs |\n");
    o.push_str("|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &m.rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
            r.rate_pps,
            escape_cell(&r.config),
            r.repeats,
            int(r.gen_pps),
            int(r.delivered_pps),
            r2(r.loss_pct_median),
            r2(r.loss_pct_max),
            r.loss_free_repeats,
            int(r.host_ns_per_pkt),
            int(r.per_hop_ns),
            r2(r.per_hop_vs_kernel),
            int(r.over_kernel_ns),
            r1(r.p50_us),
            r1(r.p99_us),
        );
    }
    o.push('\n');
    o.push_str("## Highest rate delivered with every repeat loss-free\n\n");
    o.push_str("| configuration | highest loss-free delivered pps (median of its repeats) | at offered pps | offered rates with loss in some repeat |\n");
    o.push_str("|---|---:|---:|---|\n");
    for c in &m.capacity {
        let lossy = if c.lossy_rates.is_empty() {
            "none".to_string()
        } else {
            c.lossy_rates
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            escape_cell(&c.config),
            int(c.best.map(|b| b.0)),
            c.best.map_or(NONE.to_string(), |b| b.1.to_string()),
            lossy
        );
    }
    o
}

/// `reports/pipeline/full/medians.md`'s table.
pub fn pipeline_full(rows: &[crate::medians::pipeline_full::Row]) -> String {
    let floor = |x: Option<f64>| x.map_or(NONE.to_string(), |x| x.floor().to_string());
    let plain = |x: Option<f64>| x.map_or(NONE.to_string(), |x| x.to_string());
    let mut o = String::new();
    o.push_str("| configuration | repeats | sent (median) | generator pps | receiver pps | loss % | counted drops | unexplained | host CPU ns / delivered pkt | ours+ksoftirqd ns / pkt |\n");
    o.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            escape_cell(&r.config),
            r.repeats,
            plain(r.sent),
            floor(r.gen_pps),
            floor(r.recv_pps),
            r1(r.loss_pct),
            plain(r.counted_drops),
            r.unexplained,
            floor(r.host_ns_per_pkt),
            floor(r.ours_ns_per_pkt),
        );
    }
    o
}

fn cell_label(c: &Cell) -> String {
    format!(
        "| {} | {} | {} |",
        escape_cell(&c.mode),
        rate_label(c.rate),
        c.hops
    )
}

fn joined(v: impl IntoIterator<Item = String>) -> String {
    v.into_iter().collect::<Vec<_>>().join(", ")
}

fn best_rate(b: Option<&Best>) -> String {
    b.map_or(NONE.to_string(), |b| rate_label(b.rate))
}

fn versus(o: &mut String, a: &str, b: &str, cells: &[(Cell, Against)]) {
    let (a, b) = (escape_cell(a), escape_cell(b));
    let _ = writeln!(
        o,
        "| mode | offered pps | hops | pairs | {a} per hop ns | {b} per hop ns | per hop {a} / {b} (median of paired ratios) | paired differences per hop, ns ({a} − {b}, by repeat) | median difference ns | chain against chain: host CPU per packet {a} / {b} (median) | chain ratios by repeat | delivered pps {a} / {b} (median) |"
    );
    o.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|\n");
    for (c, x) in cells {
        let _ = writeln!(
            o,
            "{} {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell_label(c),
            x.pairs,
            int(x.a_hop),
            int(x.b_hop),
            r2(x.hop_ratio),
            list(&x.hop_diffs),
            int(x.hop_diff),
            r2(x.chain_ratio),
            joined(x.chain_ratios.iter().map(|&r| r2(Some(r)))),
            r2(x.recv_ratio),
        );
    }
}

/// `reports/relay-speed-fastpath.md`'s tables, the targets of issue 20 first.
pub fn fast_path(m: &FastPath) -> String {
    let mut o = String::new();
    o.push_str("Generator modes: **single** is plain sendmmsg, one datagram per message and no UDP_SEGMENT (`--gen-gso-segments 1`; trafficgen still puts up to 8 messages in one call); **gso** is UDP GSO messages of 32 datagrams (`--gen-gso-segments 32`). Record sets named without a mode are gso. **unpaced**: the generator flat out (`--pps 0`).\n\n");
    o.push_str("## The targets of issue 20, per generator mode\n\n");
    o.push_str("Medians over the repeats of paired figures (each repeat's fast path against the other path of the same repeat). A check says whether the median meets the target (— where a per-hop median is not above 0: the subtraction is then below its noise); the paired values by repeat say how far to trust it. Where a generator fell short of its offered rate (generator pps in the medians table), the two paths ran at different rates.\n\n");
    o.push_str(
        "**Fast path per hop ≤ 1.0x route, at 100k pps and unpaced (flat out), 1 and 3 hops.**\n\n",
    );
    o.push_str("| mode | offered pps | hops | pairs | fastpath per hop ns | route per hop ns | per hop fastpath / route (median of paired ratios) | ≤ 1.0? | median difference per hop ns | chain against chain fastpath / route | delivered pps fastpath | delivered pps route |\n");
    o.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n");
    for (c, x, met) in &m.per_hop_target {
        let _ = writeln!(
            o,
            "{} {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell_label(c),
            x.pairs,
            int(x.a_hop),
            int(x.b_hop),
            r2(x.hop_ratio),
            yes_no(*met),
            int(x.hop_diff),
            r2(x.chain_ratio),
            int(x.a_pps),
            int(x.b_pps),
        );
    }
    o.push('\n');
    let _ = writeln!(
        o,
        "**At {NOISE_RATE} pps: the paired differences per hop (fastpath − route).**\n"
    );
    o.push_str("| mode | offered pps | hops | pairs | differences by repeat, ns | median ns |\n");
    o.push_str("|---|---:|---:|---:|---|---:|\n");
    for (c, x) in &m.noise {
        let _ = writeln!(
            o,
            "{} {} | {} | {} |",
            cell_label(c),
            x.pairs,
            list(&x.hop_diffs),
            int(x.hop_diff)
        );
    }
    o.push('\n');
    o.push_str("**3 hops: the highest loss-free delivered rate, fast path ≥ route.** The highest rate delivered with every repeat loss-free, over all offered rates (unpaced included), median of its repeats.\n\n");
    o.push_str("| mode | fastpath pps | at offered | route pps | at offered | fastpath / route | ≥ route? |\n");
    o.push_str("|---|---:|---:|---:|---:|---:|---|\n");
    for t in &m.capacity_target {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            escape_cell(&t.mode),
            int(t.fastpath.as_ref().map(|b| b.pps)),
            best_rate(t.fastpath.as_ref()),
            int(t.route.as_ref().map(|b| b.pps)),
            best_rate(t.route.as_ref()),
            r2(t.ratio),
            yes_no(t.met),
        );
    }
    o.push('\n');
    let budget = ABOVE_FLOOR_BUDGET_NS;
    let _ = writeln!(
        o,
        "**The fast path's cost above the floor (fastpath − redirect per hop) < {budget} ns.**\n"
    );
    let _ = writeln!(
        o,
        "| mode | offered pps | hops | pairs | fastpath per hop ns | redirect per hop ns | differences by repeat, ns | median ns | < {budget}? |"
    );
    o.push_str("|---|---:|---:|---:|---:|---:|---|---:|---|\n");
    for (c, x, met) in &m.above_floor {
        let _ = writeln!(
            o,
            "{} {} | {} | {} | {} | {} | {} |",
            cell_label(c),
            x.pairs,
            int(x.a_hop),
            int(x.b_hop),
            list(&x.hop_diffs),
            int(x.hop_diff),
            yes_no(*met),
        );
    }
    o.push('\n');
    o.push_str("## Medians per generator mode, offered rate and configuration\n\n");
    o.push_str("| mode | offered pps | configuration | hops | repeats | generator sent as (record) | generator pps | delivered pps | loss % (median / max) | loss-free repeats | conservation OK | host CPU ns per delivered pkt | per-hop ns (paired with its direct path) | per-hop ns by repeat | other processes, % of the window (median) | generator CPU % of its send time | generator context switches per s | latency p50 µs | latency p99 µs |\n");
    o.push_str("|---|---:|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n");
    for r in &m.rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            escape_cell(&r.mode),
            rate_label(r.rate),
            escape_cell(&r.config),
            r.hops,
            r.repeats,
            escape_cell(&r.sent_as.join(", ")),
            int(r.gen_pps),
            int(r.delivered_pps),
            r2(r.loss_pct_median),
            r2(r.loss_pct_max),
            r.loss_free_repeats,
            r.conserved_repeats,
            int(r.host_ns_per_pkt),
            int(r.per_hop_ns),
            list(&r.per_hop_by_repeat),
            r1(r.others_pct),
            r1(r.gen_cpu_pct),
            int(r.gen_cs_per_s),
            r1(r.p50_us),
            r1(r.p99_us),
        );
    }
    o.push('\n');
    let find = |a: &str, b: &str| m.versus.iter().find(|v| v.a == a && v.b == b);
    let section = |o: &mut String, a: &str, b: &str| {
        if let Some(v) = find(a, b) {
            versus(o, &v.a, &v.b, &v.cells);
        }
    };
    o.push_str(
        "## Fast path against the kernel's unicast forwarding (route), paired by repeat\n\n",
    );
    section(&mut o, "fastpath", "route");
    o.push('\n');
    o.push_str(
        "## Fast path against the kernel's multicast forwarding (kernel), paired by repeat\n\n",
    );
    if m.ran_kernel {
        section(&mut o, "fastpath", "kernel");
    } else {
        o.push_str("No kernel runs: the machine that made these records had no IPv4 multicast routing (no `/proc/net/ip_mr_vif`).\n");
    }
    o.push('\n');
    o.push_str("## Each path above the floor of a hop (redirect), paired by repeat\n\n");
    o.push_str(
        "The difference per hop is what the path's forwarding adds to crossing the veth.\n\n",
    );
    section(&mut o, "fastpath", "redirect");
    o.push('\n');
    section(&mut o, "route", "redirect");
    if m.ran_kernel {
        o.push('\n');
        section(&mut o, "kernel", "redirect");
    }
    o.push('\n');
    o.push_str("## Userspace mcrd against the fast path, paired by repeat\n\n");
    section(&mut o, "mcrd", "fastpath");
    o.push('\n');
    o.push_str("## Highest rate delivered with every repeat loss-free\n\n");
    o.push_str("| mode | configuration | hops | highest loss-free delivered pps (median of its repeats) | at offered pps | delivered pps by repeat there | offered rates with loss in some repeat |\n");
    o.push_str("|---|---|---:|---:|---:|---|---|\n");
    for c in &m.capacity {
        let lf = &c.loss_free;
        let lossy = if lf.lossy_rates.is_empty() {
            "none".to_string()
        } else {
            joined(lf.lossy_rates.iter().map(|&r| rate_label(r)))
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            escape_cell(&c.mode),
            escape_cell(&c.config),
            c.hops,
            int(lf.best.as_ref().map(|b| b.pps)),
            best_rate(lf.best.as_ref()),
            lf.best
                .as_ref()
                .map_or(NONE.to_string(), |b| list(&b.by_repeat)),
            lossy
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_rounded_and_written_shortest() {
        assert_eq!(int(Some(34333.4)), "34333");
        assert_eq!(r1(Some(438.04)), "438");
        assert_eq!(r1(Some(3.44)), "3.4");
        assert_eq!(r2(Some(1.0 / 3.0)), "0.33");
        assert_eq!(r2(Some(-0.001)), "-0");
        assert_eq!(int(None), "—");
    }
}
