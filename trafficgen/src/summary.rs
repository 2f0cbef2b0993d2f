//! Human-readable summaries of the records, printed at the end of each sub-command.

use std::fmt::Write;

use std::collections::BTreeMap;

use crate::record::{
    Distribution, PerfValue, RecvRecord, RtpRecord, SendRecord, StreamFormat, SweepRecord,
    SweepTrial,
};

fn us(ns: u64) -> String {
    format!("{:.1}us", ns as f64 / 1e3)
}

fn dist_us(d: &Distribution) -> String {
    format!(
        "min {} p50 {} p90 {} p99 {} p99.9 {} max {}",
        us(d.min),
        us(d.p50),
        us(d.p90),
        us(d.p99),
        us(d.p999),
        us(d.max)
    )
}

fn perf_value(v: PerfValue) -> String {
    v.to_string()
}

/// The sender's summary.
pub fn send(r: &SendRecord) -> String {
    let mut s = String::new();
    let c = &r.config;
    let secs = r.elapsed_ns as f64 / 1e9;
    let target = if c.target_pps == 0 {
        "as fast as possible".to_string()
    } else {
        format!("{} pps", c.target_pps)
    };
    let _ = writeln!(
        s,
        "trafficgen send -> {}: threads {}, streams {}, payload {} B, {} (batch {} x {} datagrams)",
        c.dst,
        c.threads,
        c.streams,
        c.payload_size_bytes,
        c.batch_mode,
        c.max_batch_packets / c.gso_segments.max(1),
        c.gso_segments
    );
    if let Some(reason) = &c.gso_fallback_reason {
        let _ = writeln!(s, "  GSO turned off: {reason}");
    }
    let _ = writeln!(
        s,
        "  sent        {} packets in {:.3} s",
        r.packets_sent, secs
    );
    let _ = writeln!(
        s,
        "  bytes       {} payload, {} on the wire (Ethernet frames)",
        r.payload_bytes, r.wire_bytes
    );
    let errors = if r.send_errors_by_errno.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = r
            .send_errors_by_errno
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(" ({})", parts.join(", "))
    };
    let _ = writeln!(s, "  errors      {}{}", r.send_errors, errors);
    let error = r
        .rate_error_ratio
        .map(|e| format!(", error {:+.3}%", e * 100.0))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "  rate        {:.0} pps (target {}{}), {:.1} Mbit/s payload, {:.1} Mbit/s wire",
        r.achieved_pps,
        target,
        error,
        r.payload_bps / 1e6,
        r.wire_bps / 1e6
    );
    let _ = writeln!(s, "  batch gap   {}", dist_us(&r.batch_gap_ns));
    let _ = writeln!(s, "  late by     {}", dist_us(&r.schedule_lag_ns));
    let _ = writeln!(
        s,
        "  batch size  p50 {} max {} datagrams",
        r.batch_packets.p50, r.batch_packets.max
    );
    let _ = writeln!(s, "  end markers {}", r.end_markers_sent);
    let _ = writeln!(
        s,
        "  perf        task-clock {} ns, ctx-switches {}, migrations {}, cycles {}, instructions {}",
        perf_value(r.perf.task_clock_ns),
        perf_value(r.perf.context_switches),
        perf_value(r.perf.cpu_migrations),
        perf_value(r.perf.cycles),
        perf_value(r.perf.instructions)
    );
    s
}

/// The receiver's summary: totals, then one line per stream.
pub fn recv(r: &RecvRecord) -> String {
    let mut s = String::new();
    let t = &r.totals;
    let _ = writeln!(
        s,
        "trafficgen recv <- {}: {} streams in {:.3} s",
        r.config.group,
        r.streams.len(),
        r.elapsed_ns as f64 / 1e9
    );
    let _ = writeln!(
        s,
        "  datagrams   {} ({} bytes), foreign {}, malformed {}, untracked streams {}",
        r.datagrams_received,
        r.datagram_bytes,
        r.foreign_datagrams,
        r.malformed_datagrams.values().sum::<u64>(),
        r.untracked_stream_datagrams
    );
    let loss = if t.expected == 0 {
        0.0
    } else {
        t.lost as f64 / t.expected as f64 * 100.0
    };
    let _ = writeln!(
        s,
        "  packets     expected {} received {} lost {} ({:.4}%) duplicated {} reordered {} late {}",
        t.expected, t.received, t.lost, loss, t.duplicated, t.reordered, t.late
    );
    let netns = r
        .udp_rcvbuf_errors_netns
        .map_or("unknown".to_string(), |n| n.to_string());
    let _ = writeln!(
        s,
        "  host drops  {} at this socket (SO_RXQ_OVFL), {} UDP buffer drops in this netns",
        r.socket_drops, netns
    );
    for stream in &r.streams {
        let c = &stream.counters;
        let end = match stream.format {
            StreamFormat::Probe if !stream.end_marker_seen => " (no end marker: tail loss unknown)",
            StreamFormat::Mpegts => " (datagrams; loss estimated from continuity counters)",
            _ => "",
        };
        let _ = writeln!(
            s,
            "  {} {:>4}  received {} lost {} dup {} reord {} late {}, {:.0} pps{}",
            stream.format.name(),
            stream.stream_id,
            c.received,
            c.lost,
            c.duplicated,
            c.reordered,
            c.late,
            stream.receive_pps.unwrap_or(0.0),
            end
        );
        if stream.format == StreamFormat::Probe {
            let _ = writeln!(s, "               latency {}", dist_us(&stream.latency_ns));
        }
        if let Some(rtp) = &stream.rtp {
            let _ = writeln!(s, "               {}", rtp_line(rtp));
        }
        if let Some(ts) = &stream.mpegts {
            let _ = writeln!(
                s,
                "               MPEG-TS {} packets, {} PIDs: CC errors {}, lost >= {} TS packets, \
                 duplicates {}, transport errors {}, discontinuities {}",
                ts.ts_packets,
                ts.pids.len(),
                ts.continuity_errors,
                ts.lost_ts_packets_estimate,
                ts.duplicate_ts_packets,
                ts.transport_errors,
                ts.discontinuities
            );
        }
    }
    s
}

fn rtp_line(rtp: &RtpRecord) -> String {
    let jitter = match (rtp.jitter_ns, rtp.jitter_max_ns, rtp.clock_rate_hz) {
        (Some(j), Some(max), Some(hz)) => format!(
            "jitter {:.3} ms (max {:.3} ms; {hz} Hz clock)",
            j / 1e6,
            max / 1e6
        ),
        _ => "jitter unavailable (clock rate unknown: pass --rtp-clock-rate)".to_string(),
    };
    format!(
        "RTP ssrc 0x{:08x} pt {}, {jitter}, restarts {}",
        rtp.ssrc, rtp.payload_type, rtp.sequence_restarts
    )
}

/// One line per sweep trial, printed as trials complete.
pub fn sweep_trial(t: &SweepTrial) -> String {
    format!(
        "sweep: {:>9} pps trial {}: achieved {:.0} pps, sent {}, lost {} ({:.5}%), socket drops {}{}",
        t.target_pps,
        t.trial_index + 1,
        t.achieved_pps,
        t.packets_sent,
        t.packets_lost,
        t.loss_ratio * 100.0,
        t.socket_drops,
        if t.sender_kept_up { "" } else { " [sender could not keep up]" }
    )
}

/// The sweep's table (one row per rate tried) and its two results.
pub fn sweep(r: &SweepRecord) -> String {
    let mut s = String::new();
    let max_ratio = r.config.max_loss_ratio;
    let mut by_rate: BTreeMap<u64, Vec<&SweepTrial>> = BTreeMap::new();
    for t in &r.trials {
        by_rate.entry(t.target_pps).or_default().push(t);
    }
    let _ = writeln!(
        s,
        "{:>12} {:>7} {:>14} {:>14} {:>8} {:>10} {:>12}",
        "target_pps",
        "trials",
        "min_achieved",
        "worst_loss_%",
        "sender",
        "zero_loss",
        "loss<=ratio"
    );
    for (rate, trials) in &by_rate {
        let achieved = trials
            .iter()
            .map(|t| t.achieved_pps)
            .fold(f64::INFINITY, f64::min);
        let worst = trials.iter().map(|t| t.loss_ratio).fold(0.0, f64::max);
        let kept_up = trials.iter().all(|t| t.sender_kept_up);
        let zero = kept_up && trials.iter().all(|t| t.packets_lost == 0);
        let within = kept_up && trials.iter().all(|t| t.loss_ratio <= max_ratio);
        let _ = writeln!(
            s,
            "{:>12} {:>7} {:>14.0} {:>14.5} {:>8} {:>10} {:>12}",
            rate,
            trials.len(),
            achieved,
            worst * 100.0,
            if kept_up { "ok" } else { "behind" },
            if zero { "pass" } else { "fail" },
            if within { "pass" } else { "fail" }
        );
    }
    let show = |v: Option<u64>| {
        v.map_or("none (even the lowest rate failed)".to_string(), |p| {
            format!("{p} pps")
        })
    };
    let _ = writeln!(
        s,
        "highest rate with no loss:            {}",
        show(r.zero_loss_pps)
    );
    let _ = writeln!(
        s,
        "highest rate with loss <= {:.4}%:    {}",
        max_ratio * 100.0,
        show(r.max_loss_ratio_pps)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        PerfCounters, RecvConfig, SendConfig, StreamCounters, StreamRecord, RECORD_MINOR_VERSION,
        RECORD_VERSION,
    };

    fn send_record() -> SendRecord {
        SendRecord {
            schema: "mcr.trafficgen.send".into(),
            version: RECORD_VERSION,
            minor_version: RECORD_MINOR_VERSION,
            trafficgen_version: "0".into(),
            started_unix_ns: 0,
            config: SendConfig {
                dst: "239.1.1.1:5000".into(),
                src: None,
                iface: None,
                target_pps: 1000,
                count: Some(990),
                duration_ns: None,
                payload_size_bytes: 100,
                ttl: 1,
                threads: 1,
                streams: 1,
                batch_mode: "gso".into(),
                gso_segments: 32,
                max_batch_packets: 256,
                gso_fallback_reason: None,
                end_marker_repeats: 3,
                socket_sndbuf_bytes: 0,
                coalesce_ns: 0,
            },
            packets_sent: 980,
            payload_bytes: 98_000,
            wire_bytes: 139_160,
            send_errors: 10,
            send_errors_by_errno: [("ENOBUFS".to_string(), 10)].into(),
            end_markers_sent: 3,
            elapsed_ns: 1_000_000_000,
            achieved_pps: 980.0,
            rate_error_ratio: Some(-0.02),
            payload_bps: 784_000.0,
            wire_bps: 1_113_280.0,
            batch_gap_ns: Distribution::default(),
            batch_packets: Distribution::default(),
            schedule_lag_ns: Distribution::default(),
            threads: vec![],
            perf: PerfCounters {
                task_clock_ns: PerfValue::Count(5),
                ..PerfCounters::default()
            },
        }
    }

    #[test]
    fn send_summary_shows_errors_rate_error_and_unavailable_counters() {
        let text = send(&send_record());
        assert!(text.contains("sent        980 packets"), "{text}");
        assert!(text.contains("98000 payload, 139160 on the wire"), "{text}");
        assert!(text.contains("errors      10 (ENOBUFS 10)"), "{text}");
        assert!(text.contains("error -2.000%"), "{text}");
        assert!(text.contains("cycles unavailable"), "{text}");
        assert!(text.contains("task-clock 5 ns"), "{text}");
    }

    #[test]
    fn recv_summary_warns_when_the_tail_is_unknown() {
        let counters = StreamCounters {
            expected: 10,
            received: 8,
            lost: 2,
            ..StreamCounters::default()
        };
        let record = RecvRecord {
            schema: "mcr.trafficgen.recv".into(),
            version: RECORD_VERSION,
            minor_version: RECORD_MINOR_VERSION,
            trafficgen_version: "0".into(),
            started_unix_ns: 0,
            config: RecvConfig {
                group: "239.1.1.1:5000".into(),
                iface: None,
                duration_ns: None,
                idle_timeout_ns: None,
                exit_on_end: false,
                socket_rcvbuf_bytes: 0,
                max_streams: 1,
                reorder_window_packets: 64,
                format: Default::default(),
                rtp_clock_rate_hz: None,
            },
            elapsed_ns: 1,
            datagrams_received: 9,
            datagram_bytes: 900,
            foreign_datagrams: 1,
            malformed_datagrams: BTreeMap::new(),
            untracked_stream_datagrams: 0,
            socket_drops: 2,
            udp_rcvbuf_errors_netns: None,
            totals: counters.clone(),
            streams: vec![StreamRecord {
                stream_id: 4,
                counters,
                end_marker_seen: false,
                lowest_sequence: Some(0),
                highest_sequence: Some(9),
                first_rx_unix_ns: None,
                last_rx_unix_ns: None,
                receive_pps: None,
                latency_ns: Distribution::default(),
                negative_latency_packets: 0,
                timeline: vec![],
                format: StreamFormat::Probe,
                rtp: None,
                mpegts: None,
            }],
        };
        let text = recv(&record);
        assert!(text.contains("lost 2 (20.0000%)"), "{text}");
        assert!(
            text.contains("2 at this socket (SO_RXQ_OVFL), unknown UDP buffer drops"),
            "{text}"
        );
        assert!(text.contains("no end marker: tail loss unknown"), "{text}");
    }
}
