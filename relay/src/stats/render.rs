//! The human rendering of a [`StatsReport`] (for `mcrctl stats` and shutdown); the Prometheus
//! one is [`super::prometheus`].

use std::fmt::Write;

use super::report::{StatsReport, WorkerCounters};

/// A table a person reads at a glance: totals, per worker, per flow and output.
pub fn human(r: &StatsReport) -> String {
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
    let _ = writeln!(
        s,
        "{:<8} {:>12} {:>10} {:>9} {:>9} {:>10} {:>12} {:>11} {:>12} {:>9} {:>9}",
        "worker",
        "rx",
        "kdrops",
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
    let _ = writeln!(
        s,
        "\n{:<20} {:<28} {:>12} {:>14}",
        "flow", "match", "packets", "bytes"
    );
    for f in &r.flows {
        let m = format!("{}:{}@{}", f.group, f.port, f.input_interface);
        let path = match &f.path_reason {
            Some(why) => format!("{} ({why})", f.path),
            None => f.path.clone(),
        };
        let _ = writeln!(
            s,
            "{:<20} {:<28} {:>12} {:>14}  {path}",
            f.rule, m, f.packets, f.bytes
        );
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
