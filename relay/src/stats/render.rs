//! The human rendering of a [`StatsReport`] (for `mcrctl stats` and shutdown); the Prometheus
//! one is [`super::prometheus`].

use std::collections::BTreeMap;
use std::fmt::Write;

use super::report::{FastPathStats, StatsReport, WorkerCounters};

/// Rates over the interval between two reports of the same daemon: what `mcrctl stats
/// --watch` shows beside the cumulative counters, so a change of rate is seen within one
/// interval rather than diluted by the whole uptime.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRates {
    pub seconds: f64,
    pub rx_pps: f64,
    pub tx_pps: f64,
    /// Datagrams per second by rule name; a flow missing here is new in `now` or had its
    /// counters restarted (a changed rule), so it has no rate over the interval.
    pub flow_pps: BTreeMap<String, f64>,
}

/// The rates between `previous` and `now`; `None` when they are not two reports of one
/// daemon's run in order (another pid: mcrd restarted; uptime not grown; totals gone back).
pub fn interval_rates(previous: &StatsReport, now: &StatsReport) -> Option<IntervalRates> {
    if previous.relay.pid != now.relay.pid || now.uptime_ns <= previous.uptime_ns {
        return None;
    }
    let seconds = (now.uptime_ns - previous.uptime_ns) as f64 / 1e9;
    let per_second = |was: u64, is: u64| is.checked_sub(was).map(|d| d as f64 / seconds);
    let before: BTreeMap<&str, u64> = previous
        .flows
        .iter()
        .map(|f| (f.rule.as_str(), f.packets))
        .collect();
    let flow_pps = now
        .flows
        .iter()
        .filter_map(|f| {
            let was = *before.get(f.rule.as_str())?;
            Some((f.rule.clone(), per_second(was, f.packets)?))
        })
        .collect();
    Some(IntervalRates {
        seconds,
        rx_pps: per_second(previous.totals.rx, now.totals.rx)?,
        tx_pps: per_second(previous.totals.tx_sent, now.totals.tx_sent)?,
        flow_pps,
    })
}

/// One line on the kernel fast path: its program, the hook it is attached with and where,
/// and what the kernel lacks (`mcrctl stats` and the report at shutdown show it).
pub fn fast_path_line(fp: &FastPathStats) -> String {
    let hook = if fp.attach.is_empty() {
        String::new()
    } else {
        format!(" ({} ingress)", fp.attach)
    };
    let inputs = if fp.interfaces.is_empty() {
        "no input".to_string()
    } else {
        fp.interfaces.join(", ")
    };
    let lacks = if fp.missing_features.is_empty() {
        String::new()
    } else {
        format!("; the kernel lacks {}", fp.missing_features.join(", "))
    };
    format!(
        "fast path: program {}{hook} attached to {inputs}{lacks}",
        fp.program_id
    )
}

/// A table a person reads at a glance: totals, per worker, per flow and output.
pub fn human(r: &StatsReport) -> String {
    human_with_rates(r, None)
}

/// [`human`] with the rates over the last interval (`mcrctl stats --watch`): a line beside
/// the rates since start, and a `pps` column in the flow table.
pub fn human_with_rates(r: &StatsReport, interval: Option<&IntervalRates>) -> String {
    let mut s = String::new();
    let up = r.uptime_ns as f64 / 1e9;
    let _ = writeln!(
        s,
        "mcrd {} pid {}  up {:.1}s  workers {}  gso {}{}",
        r.relay.version,
        r.relay.pid,
        up,
        r.workers.len(),
        if r.relay.gso_egress { "on" } else { "off" },
        if r.final_report { "  (final)" } else { "" }
    );
    if let Some(fp) = &r.fast_path {
        let _ = writeln!(s, "{}", fast_path_line(fp));
    }
    let _ = writeln!(
        s,
        "{:<8} {:>12} {:>10} {:>9} {:>9} {:>10} {:>12} {:>11} {:>12} {:>9} {:>9}",
        "worker",
        "rx",
        // Datagrams, like `rx` beside it; the frames are on a line of their own below.
        "kdrop",
        "filtered",
        "malformed",
        "no_match",
        "matched",
        "buf_exhaust",
        "tx_sent",
        "tx_err",
        "inflight"
    );
    let row = |s: &mut String, name: &str, c: &WorkerCounters| {
        let _ = writeln!(
            s,
            "{:<8} {:>12} {:>10} {:>9} {:>9} {:>10} {:>12} {:>11} {:>12} {:>9} {:>9}",
            name,
            c.rx,
            c.kernel_drops,
            c.filtered,
            c.malformed,
            c.no_match,
            c.matched,
            c.buf_exhaust,
            c.tx_sent,
            c.tx_errors,
            c.in_flight
        );
    };
    for w in &r.workers {
        row(&mut s, &w.id.to_string(), &w.counters);
    }
    row(&mut s, "total", &r.totals);
    if !r.totals.malformed_by_kind.is_empty() {
        let kinds: Vec<String> = r
            .totals
            .malformed_by_kind
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "malformed: {}", kinds.join(" "));
    }
    if r.totals.kernel_drop_frames > 0 {
        let unsettled = match r.totals.kernel_drops_unsettled_frames {
            0 => String::new(),
            n => format!(" (a lower bound: {n} of the frames count as one datagram each until theirs are known)"),
        };
        let _ = writeln!(
            s,
            "overload at the packet ring: {} datagrams in {} frames dropped by the kernel{unsettled}",
            r.totals.kernel_drops, r.totals.kernel_drop_frames
        );
    }
    if r.totals.rx_overflow_frames > 0 {
        let _ = writeln!(
            s,
            "overload on the copy path: {} datagrams in {} frames lost (packet socket receive queue full)",
            r.totals.rx_overflow, r.totals.rx_overflow_frames
        );
    }
    if !r.totals.tx_errors_by_errno.is_empty() {
        let kinds: Vec<String> = r
            .totals
            .tx_errors_by_errno
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "send errors: {}", kinds.join(" "));
    }
    if up > 0.0 {
        let _ = writeln!(
            s,
            "rates since start: rx {:.0} pps, tx {:.0} pps",
            r.totals.rx as f64 / up,
            r.totals.tx_sent as f64 / up
        );
    }
    if let Some(i) = interval {
        let _ = writeln!(
            s,
            "rates over the last {:.1}s: rx {:.0} pps, tx {:.0} pps",
            i.seconds, i.rx_pps, i.tx_pps
        );
    }
    let _ = write!(
        s,
        "\n{:<20} {:<28} {:>12} {:>14}",
        "flow", "match", "packets", "bytes"
    );
    let _ = writeln!(
        s,
        "{}",
        if interval.is_some() {
            "        pps"
        } else {
            ""
        }
    );
    for f in &r.flows {
        // An IPv6 group in brackets, as in `[ff3e::1]:5000`, so the port stays readable.
        let m = if f.group.contains(':') {
            format!("[{}]:{}@{}", f.group, f.port, f.input_interface)
        } else {
            format!("{}:{}@{}", f.group, f.port, f.input_interface)
        };
        let path = match &f.path_reason {
            Some(why) => format!("{} ({why})", f.path),
            None => f.path.clone(),
        };
        let rate = match interval.map(|i| i.flow_pps.get(&f.rule)) {
            None => String::new(),
            Some(Some(pps)) => format!(" {pps:>10.0}"),
            Some(None) => format!(" {:>10}", "-"),
        };
        let _ = writeln!(
            s,
            "{:<20} {:<28} {:>12} {:>14}{rate}  {path}",
            f.rule, m, f.packets, f.bytes
        );
        if f.below_min_ttl > 0 {
            let _ = writeln!(s, "  below min_ttl {:>10} (not forwarded)", f.below_min_ttl);
        }
        if let Some(mon) = &f.monitor {
            let _ = writeln!(
                s,
                "  monitor {:<6} checked {:>10} gaps {:>8} lost {:>10} repeats {:>8} foreign {:>8}",
                mon.kind, mon.datagrams, mon.gaps, mon.lost, mon.repeats, mon.foreign
            );
        }
        for o in &f.outputs {
            let _ = writeln!(
                s,
                "  -> {:<36} ttl {:<3} matched {:>10} sent {:>10} err {:>7} exhaust {:>8} inflight {:>5}",
                o.output, o.ttl, o.matched, o.tx_sent, o.tx_errors, o.buf_exhaust, o.in_flight
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::prometheus::tests::sample_report;

    /// The whitespace-separated fields of the line that starts with `first`.
    fn fields<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&first))
            .unwrap_or_else(|| panic!("no line starting with {first}:\n{text}"))
    }

    #[test]
    fn the_fast_path_line_names_the_hook_the_inputs_and_what_the_kernel_lacks() {
        let mut r = sample_report();
        assert!(!human(&r).contains("fast path"), "no fast path, no line");
        let fp = FastPathStats {
            program_id: 57,
            attach: "tcx".into(),
            interfaces: vec!["in0".into(), "in1".into()],
            ..Default::default()
        };
        r.fast_path = Some(fp.clone());
        assert!(human(&r)
            .lines()
            .any(|l| l == "fast path: program 57 (tcx ingress) attached to in0, in1"));
        let fp = FastPathStats {
            attach: "clsact".into(),
            interfaces: Vec::new(),
            missing_features: vec!["tcx".into(), "bpf_loop".into()],
            ..fp
        };
        assert_eq!(
            fast_path_line(&fp),
            "fast path: program 57 (clsact ingress) attached to no input; the kernel lacks tcx, bpf_loop"
        );
        // A report from before minor version 2 has no hook.
        let old = FastPathStats {
            attach: String::new(),
            missing_features: Vec::new(),
            interfaces: vec!["in0".into()],
            ..fp
        };
        assert_eq!(
            fast_path_line(&old),
            "fast path: program 57 attached to in0"
        );
    }

    /// Every counter of the sample has a value of its own, so a column showing the wrong field
    /// shows.
    #[test]
    fn each_column_shows_its_own_counter() {
        let r = sample_report();
        let text = human(&r);
        for (name, c) in r
            .workers
            .iter()
            .map(|w| (w.id.to_string(), &w.counters))
            .chain([("total".to_string(), &r.totals)])
        {
            let want = [
                c.rx,
                c.kernel_drops,
                c.filtered,
                c.malformed,
                c.no_match,
                c.matched,
                c.buf_exhaust,
                c.tx_sent,
                c.tx_errors,
                c.in_flight,
            ]
            .map(|v| v.to_string());
            assert_eq!(fields(&text, &name)[1..], want, "worker {name}:\n{text}");
        }
        let f = &r.flows[0];
        let flow = fields(&text, &f.rule);
        assert_eq!(flow[1], "239.1.1.1:5000@eth0");
        assert_eq!(flow[2..4], [f.packets.to_string(), f.bytes.to_string()]);
        assert_eq!(flow[4], "userspace");
        let m = f.monitor.as_ref().unwrap();
        let mon = fields(&text, "monitor");
        assert_eq!(
            [mon[3], mon[5], mon[7], mon[9], mon[11]],
            [m.datagrams, m.gaps, m.lost, m.repeats, m.foreign].map(|v| v.to_string()),
            "{text}"
        );
        for o in &f.outputs {
            let line = text
                .lines()
                .find(|l| l.contains(&o.output))
                .unwrap_or_else(|| panic!("no line for {}:\n{text}", o.output));
            let v: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                [v[5], v[7], v[9], v[11], v[13]],
                [
                    o.matched,
                    o.tx_sent,
                    o.tx_errors,
                    o.buf_exhaust,
                    o.in_flight
                ]
                .map(|v| v.to_string()),
                "{line}"
            );
        }
    }

    #[test]
    fn kinds_errnos_overload_and_rates_are_spelled_out() {
        let r = sample_report();
        let text = human(&r);
        let t = &r.totals;
        for (k, v) in &t.malformed_by_kind {
            assert!(text.contains(&format!("{k}={v}")), "{k}:\n{text}");
        }
        for (k, v) in &t.tx_errors_by_errno {
            assert!(text.contains(&format!("{k}={v}")), "{k}:\n{text}");
        }
        assert!(text.contains(&format!(
            "overload on the copy path: {} datagrams in {} frames lost",
            t.rx_overflow, t.rx_overflow_frames
        )));
        let rx_pps = t.rx as f64 / 12.5;
        assert!(
            text.contains(&format!("rates since start: rx {rx_pps:.0} pps")),
            "{text}"
        );
        assert!(text.starts_with("mcrd 0.1.0 pid 42  up 12.5s  workers 2  gso on\n"));
    }

    #[test]
    fn a_flow_s_datagrams_below_its_min_ttl_have_a_line_of_their_own() {
        let r = sample_report();
        let text = human(&r);
        let line = format!(
            "  below min_ttl {:>10} (not forwarded)",
            r.flows[0].below_min_ttl
        );
        assert!(r.flows[0].below_min_ttl > 0);
        assert!(text.contains(&line), "{text}");
    }

    #[test]
    fn kernel_drops_have_a_line_with_their_frames_and_say_when_they_are_a_bound() {
        let mut r = sample_report();
        r.totals.kernel_drops = 4_960;
        r.totals.kernel_drop_frames = 155;
        r.totals.kernel_drops_unsettled_frames = 0;
        let line =
            "overload at the packet ring: 4960 datagrams in 155 frames dropped by the kernel";
        assert!(human(&r).lines().any(|l| l == line), "{}", human(&r));
        r.totals.kernel_drops_unsettled_frames = 3;
        assert!(
            human(&r).lines().any(|l| l.starts_with(line)
                && l.ends_with("(a lower bound: 3 of the frames count as one datagram each until theirs are known)")),
            "{}",
            human(&r)
        );
        r.totals.kernel_drop_frames = 0;
        assert!(!human(&r).contains("packet ring"));
    }

    #[test]
    fn a_quiet_daemon_shows_no_empty_breakdowns() {
        let mut r = sample_report();
        r.totals = WorkerCounters::default();
        r.uptime_ns = 0;
        r.flows[0].below_min_ttl = 0;
        let text = human(&r);
        for absent in [
            "below min_ttl",
            "malformed:",
            "overload",
            "send errors:",
            "rates since start",
        ] {
            assert!(!text.contains(absent), "{absent}:\n{text}");
        }
    }

    #[test]
    fn watching_shows_the_rates_of_the_last_interval_per_total_and_flow() {
        let before = sample_report();
        let mut now = before.clone();
        now.uptime_ns += 2_000_000_000;
        now.totals.rx += 2_000;
        now.totals.tx_sent += 1_000;
        now.flows[0].packets += 600;
        let rates = interval_rates(&before, &now).expect("one run, in order");
        assert_eq!(rates.seconds, 2.0);
        assert_eq!((rates.rx_pps, rates.tx_pps), (1000.0, 500.0));
        assert_eq!(rates.flow_pps[&now.flows[0].rule], 300.0);
        let text = human_with_rates(&now, Some(&rates));
        assert!(
            text.contains("rates over the last 2.0s: rx 1000 pps, tx 500 pps"),
            "{text}"
        );
        let row = fields(&text, &now.flows[0].rule);
        assert_eq!(row[4], "300", "{text}");
        assert!(fields(&text, "flow").contains(&"pps"));
        assert!(!human(&now).contains("rates over the last"));
    }

    #[test]
    fn no_interval_rate_across_a_restart_or_a_counter_reset() {
        let before = sample_report();
        let mut restarted = before.clone();
        restarted.relay.pid += 1;
        restarted.uptime_ns += 1_000_000_000;
        assert_eq!(interval_rates(&before, &restarted), None);
        let mut same_instant = before.clone();
        same_instant.totals.rx += 1;
        assert_eq!(interval_rates(&before, &same_instant), None);
        // A changed rule restarts its counters: that flow has no rate, the others do.
        let mut now = before.clone();
        now.uptime_ns += 1_000_000_000;
        now.flows[0].packets = 0;
        let rates = interval_rates(&before, &now).unwrap();
        assert!(!rates.flow_pps.contains_key(&now.flows[0].rule));
        let text = human_with_rates(&now, Some(&rates));
        assert_eq!(fields(&text, &now.flows[0].rule)[4], "-", "{text}");
    }
}
