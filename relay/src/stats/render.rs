//! Human and Prometheus renderings of a [`StatsReport`] (for `mcrctl stats` and shutdown).

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

/// A counter family: name, help text, and how to read it from a worker's counters.
type Metric = (&'static str, &'static str, fn(&WorkerCounters) -> u64);

/// Prometheus text exposition format (version 0.0.4).
pub fn prometheus(r: &StatsReport) -> String {
    let mut s = String::new();
    let counters: [Metric; 12] = [
        (
            "mcr_rx_frames_total",
            "Frames taken from the kernel's packet rings.",
            |c| c.rx_frames,
        ),
        (
            "mcr_rx_datagrams_total",
            "Datagrams taken in (GSO frames split).",
            |c| c.rx,
        ),
        (
            "mcr_kernel_drops_total",
            "Frames the kernel dropped before the relay saw them.",
            |c| c.kernel_drops,
        ),
        (
            "mcr_filtered_total",
            "Datagrams that are not IPv4/UDP.",
            |c| c.filtered,
        ),
        ("mcr_malformed_total", "Malformed datagrams.", |c| {
            c.malformed
        }),
        ("mcr_no_match_total", "Datagrams no rule matched.", |c| {
            c.no_match
        }),
        ("mcr_matched_total", "Datagrams that matched a rule.", |c| {
            c.matched
        }),
        (
            "mcr_buf_exhaust_total",
            "Output copies dropped for lack of buffers or send slots.",
            |c| c.buf_exhaust,
        ),
        ("mcr_tx_sent_total", "Datagrams sent.", |c| c.tx_sent),
        ("mcr_tx_bytes_total", "Payload bytes sent.", |c| c.tx_bytes),
        ("mcr_tx_errors_total", "Datagrams whose send failed.", |c| {
            c.tx_errors
        }),
        (
            "mcr_tx_syscalls_total",
            "sendmsg operations completed.",
            |c| c.tx_syscalls,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
        for w in &r.workers {
            let _ = writeln!(s, "{name}{{worker=\"{}\"}} {}", w.id, get(&w.counters));
        }
    }
    let _ = writeln!(s, "# HELP mcr_flow_packets_total Datagrams matched per rule.\n# TYPE mcr_flow_packets_total counter");
    for f in &r.flows {
        let _ = writeln!(
            s,
            "mcr_flow_packets_total{{rule=\"{}\"}} {}",
            escape(&f.rule),
            f.packets
        );
    }
    let monitored: Vec<_> = r
        .flows
        .iter()
        .filter_map(|f| f.monitor.as_ref().map(|m| (f, m)))
        .collect();
    if !monitored.is_empty() {
        type Read = fn(&crate::stats::report::MonitorStats) -> u64;
        let families: [(&str, &str, Read); 3] = [
            (
                "mcr_flow_stream_gaps_total",
                "Sequence gaps (RTP) or continuity-counter errors (MPEG-TS) this hop received, per monitored rule.",
                |m| m.gaps,
            ),
            (
                "mcr_flow_stream_lost_total",
                "Packets the gaps show lost before this hop (RTP datagrams, MPEG-TS TS packets), per monitored rule.",
                |m| m.lost,
            ),
            (
                "mcr_flow_stream_repeats_total",
                "Duplicated or reordered packets this hop received, per monitored rule.",
                |m| m.repeats,
            ),
        ];
        for (name, help, get) in families {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (f, m) in &monitored {
                let _ = writeln!(
                    s,
                    "{name}{{rule=\"{}\",kind=\"{}\"}} {}",
                    escape(&f.rule),
                    m.kind,
                    get(m)
                );
            }
        }
    }
    let _ = writeln!(s, "# HELP mcr_flow_kernel_path 1 if the rule runs on the kernel fast path, 0 in userspace.\n# TYPE mcr_flow_kernel_path gauge");
    for f in &r.flows {
        let _ = writeln!(
            s,
            "mcr_flow_kernel_path{{rule=\"{}\"}} {}",
            escape(&f.rule),
            u8::from(f.path == "kernel")
        );
    }
    let _ = writeln!(s, "# HELP mcr_output_sent_total Datagrams sent per output.\n# TYPE mcr_output_sent_total counter");
    for f in &r.flows {
        for o in &f.outputs {
            let _ = writeln!(
                s,
                "mcr_output_sent_total{{rule=\"{}\",output=\"{}\"}} {}",
                escape(&f.rule),
                escape(&o.output),
                o.tx_sent
            );
        }
    }
    s
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
