//! The summary `scripts/pipeline_veth.sh` prints after each run (and keeps as `summary.txt`):
//! what was sent and received, the conservation stages as a table, the frame balance, and the
//! host CPU the run caused; and the nightly report's line for one run ([`nightly_row`]).

use std::fmt::Write;

use trafficgen::record::{RecvRecord, SendRecord};

use crate::pipeline::conservation::{Conservation, ConservationFigures};
use crate::pipeline::host_cpu::HostCpuFigures;

/// Width of the stage column; longer stage names are cut.
const STAGE_WIDTH: usize = 36;

/// The run's summary, one fact a line.
pub fn summary(
    send: &SendRecord,
    recv: &RecvRecord,
    c: &Conservation,
    h: &HostCpuFigures,
    hops: usize,
) -> String {
    let cfg = &send.config;
    let t = &recv.totals;
    let mut o = String::new();
    let target = if cfg.target_pps == 0 {
        "unpaced".to_string()
    } else {
        format!("target {} pps", cfg.target_pps)
    };
    let _ = writeln!(
        o,
        "== {}, {hops} hops, {} B, {target}, generator {} ({} datagrams per message), veth GSO {}",
        c.relay, cfg.payload_size_bytes, cfg.batch_mode, cfg.gso_segments, c.veth_gso
    );
    let _ = writeln!(
        o,
        "generator: sent {} at {} pps, send errors {}",
        send.packets_sent,
        send.achieved_pps.floor(),
        send.send_errors
    );
    let lost_pct = if send.packets_sent > 0 {
        (t.lost as f64 * 10000.0 / send.packets_sent as f64).floor() / 100.0
    } else {
        0.0
    };
    let rate = recv
        .streams
        .first()
        .and_then(|s| s.receive_pps)
        .unwrap_or(0.0)
        .floor();
    let _ = writeln!(
        o,
        "receiver:  got {}, lost {} ({lost_pct}%), rate {rate} pps",
        t.received, t.lost
    );
    o.push_str(
        "stage                                       in    dropped        out  unexplained\n",
    );
    for s in &c.stages {
        let name: String = s.stage.chars().take(STAGE_WIDTH).collect();
        let _ = writeln!(
            o,
            "{name:<STAGE_WIDTH$} {:>10} {:>10} {:>10} {:>12}",
            s.input, s.dropped, s.out, s.unexplained
        );
    }
    if c.veth_gso == "on" {
        o.push_str("(veth GSO on: veth counts whole GSO buffers, so the kernel figures above are not datagrams; only the receiver's count is checked)\n");
    }
    if c.receiver_expected_short_by != 0 {
        let _ = writeln!(
            o,
            "(every end marker of a stream was dropped: the receiver counted {} of the tail neither as received nor as lost; the frame count below includes them)",
            c.receiver_expected_short_by
        );
    }
    let f = &c.frames;
    let _ = writeln!(
        o,
        "frames: sent {} = received {} + counted drops {} + unexplained {}",
        f.sent, f.received, f.explained_drops, f.unexplained
    );
    let ms = |ns: i64| (ns as f64 / 1e6).floor();
    let _ = writeln!(
        o,
        "host CPU caused by the run: {} ms (host busy {} ms - other processes {} ms); ours+ksoftirqd {} ms",
        ms(h.run_ns),
        ms(h.host_busy_ns),
        ms(h.other_processes_ns),
        ms(h.our_processes_ns + h.ksoftirqd_ns)
    );
    let per_packet = if t.received > 0 {
        (h.run_ns as f64 / t.received as f64).floor().to_string()
    } else {
        "-".to_string()
    };
    let _ = writeln!(o, "host CPU per delivered packet: {per_packet} ns");
    let _ = writeln!(
        o,
        "conservation: {}",
        if c.ok {
            "OK, every packet accounted for"
        } else {
            "FAILED: unexplained loss"
        }
    );
    o
}

/// One run's line in the nightly report's table: `| repeat | sent | received | lost | counted
/// drops | unexplained | host CPU ns/delivered pkt | other processes (% of a CPU) |`.
pub fn nightly_row(label: &str, c: &ConservationFigures, h: &HostCpuFigures) -> String {
    let per_packet = if c.data.received > 0 {
        (h.run_ns as f64 / c.data.received as f64)
            .floor()
            .to_string()
    } else {
        "-".into()
    };
    let others = if h.window_ns > 0 {
        (h.other_processes_ns as f64 * 100.0 / h.window_ns as f64)
            .floor()
            .to_string()
    } else {
        "-".into()
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {per_packet} | {others} |\n",
        super::markdown::escape_cell(label),
        c.data.sent,
        c.data.received,
        c.data.lost,
        c.frames.explained_drops,
        c.frames.unexplained
    )
}
