//! JSON written by our own tools, read with the producers' own types (README.md,
//! "Architecture") so a field cannot drift between writer and reader.

use std::collections::BTreeMap;
use std::path::Path;

use relay::stats::report::{StatsReport, PERF_COUNT, PERF_NAMES, STATS_SCHEMA, STATS_VERSION};
use trafficgen::record::{
    Distribution, PerfCounters, RecvRecord, SendRecord, StreamFormat, StreamRecord, SweepRecord,
    RECORD_VERSION, RECV_SCHEMA, SEND_SCHEMA, SWEEP_SCHEMA,
};

use crate::error::{from_json, Error, Result};
use crate::record::{
    check_schema, Generator, Hop, Measured, MonitoredFlow, Percentile, ReceivedStream, Receiver,
    RtpLoss, RunRecord, Setting, StreamKind, Sweep, TsLoss,
};

/// Reads one percentile out of a trafficgen latency distribution.
type ReadPercentile = fn(&Distribution) -> u64;

/// The `schema` field of a JSON document, if it has one.
pub fn schema_of(doc: &serde_json::Value) -> Option<&str> {
    doc.get("schema").and_then(|s| s.as_str())
}

/// Reads `mcrctl stats --json` / `mcrd --final-stats` output into `hop`.
pub fn relay_stats(path: &Path, text: &str, doc: &serde_json::Value, hop: &mut Hop) -> Result<()> {
    check_schema(path, doc, STATS_SCHEMA, STATS_VERSION)?;
    let report: StatsReport = from_json(path, text)?;
    let t = &report.totals;
    let c = &mut hop.counters;
    c.rx_frames = Some(t.rx_frames);
    c.rx = Some(t.rx);
    c.rx_bytes = Some(t.rx_bytes);
    // Both are datagrams the kernel dropped before the relay could read them: on the ring,
    // and on the copy path's full receive queue.
    c.kernel_drops = Some(t.kernel_drops + t.rx_overflow);
    c.filtered = Some(t.filtered);
    c.malformed = Some(t.malformed);
    c.no_match = Some(t.no_match);
    c.matched = Some(t.matched);
    c.buf_exhaust = Some(t.buf_exhaust);
    c.tx_sent = Some(t.tx_sent);
    c.tx_bytes = Some(t.tx_bytes);
    c.tx_errors = Some(t.tx_errors);
    c.tx_syscalls = Some(t.tx_syscalls);
    c.in_flight = Some(t.in_flight);
    // With fan-out one matched datagram becomes several output copies; the egress side of the
    // conservation law is stated per output, so the copies are what egress must account for.
    c.output_copies = Some(
        report
            .flows
            .iter()
            .flat_map(|f| &f.outputs)
            .map(|o| o.matched)
            .sum(),
    );
    hop.tx_errors_by_errno = t.tx_errors_by_errno.clone();
    let streams = monitored_flows(path, &report)?;
    if !streams.is_empty() {
        hop.streams = streams;
    }
    hop.duration_ns = Some(report.uptime_ns).filter(|&n| n > 0);
    hop.relay.get_or_insert_with(|| "mcr".into());
    let mut perf: BTreeMap<String, Measured> = BTreeMap::new();
    for w in &report.workers {
        let p = &w.perf;
        for (name, m) in perf_by_name([
            p.task_clock_ns,
            p.context_switches,
            p.cpu_migrations,
            p.page_faults,
            p.cycles,
            p.instructions,
            p.cache_misses,
            p.branch_misses,
        ]) {
            perf.entry(name)
                .and_modify(|acc| *acc = acc.plus(m))
                .or_insert(m);
        }
    }
    hop.perf.extend(perf);
    hop.tunables.extend(
        report
            .relay
            .tunables
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone())),
    );
    hop.tunables.insert(
        "gso_egress_active".into(),
        Setting::from(report.relay.gso_egress),
    );
    hop.tunables.insert(
        "mcrd_version".into(),
        Setting::from(report.relay.version.clone()),
    );
    Ok(())
}

/// `GROUP:PORT` as the relay writes an output's address and trafficgen a receiver's group:
/// an IPv6 address in brackets (`[ff3e::1234]:5000`), so that a hop's input reads the same
/// as the previous hop's output.
fn address_and_port(group: &str, port: u16) -> String {
    match group.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{group}:{port}"),
    }
}

/// The flows of a stats report that carry a stream check (`flows[].monitor`).
fn monitored_flows(path: &Path, report: &StatsReport) -> Result<Vec<MonitoredFlow>> {
    let mut out = Vec::new();
    for (i, f) in report.flows.iter().enumerate() {
        let Some(m) = &f.monitor else { continue };
        let kind = StreamKind::parse(&m.kind).ok_or_else(|| {
            Error::field(
                path,
                format!("flows[{i}].monitor.kind"),
                format!("{:?} is not a monitor kind (\"rtp\" or \"mpegts\")", m.kind),
            )
        })?;
        out.push(MonitoredFlow {
            rule: f.rule.clone(),
            input: address_and_port(&f.group, f.port),
            // `ADDR:PORT@INTERFACE`: the address and port are what the next hop matches.
            outputs: f
                .outputs
                .iter()
                .map(|o| o.output.split('@').next().unwrap_or_default().to_string())
                .collect(),
            kind,
            datagrams: m.datagrams,
            foreign: m.foreign,
            gaps: m.gaps,
            lost: m.lost,
            repeats: m.repeats,
            dropped: f.outputs.iter().map(|o| o.buf_exhaust + o.tx_errors).sum(),
        });
    }
    Ok(out)
}

/// perf-event counters under the relay's names ([`PERF_NAMES`]), which trafficgen's fields
/// share; `values` are in that order, `None` where the counter was unavailable.
fn perf_by_name(values: [Option<u64>; PERF_COUNT]) -> impl Iterator<Item = (String, Measured)> {
    PERF_NAMES
        .into_iter()
        .zip(values)
        .map(|(name, v)| (name.to_string(), Measured::from_option(v)))
}

fn trafficgen_perf(p: &PerfCounters) -> impl Iterator<Item = (String, Measured)> {
    perf_by_name([
        p.task_clock_ns.count(),
        p.context_switches.count(),
        p.cpu_migrations.count(),
        p.page_faults.count(),
        p.cycles.count(),
        p.instructions.count(),
        p.cache_misses.count(),
        p.branch_misses.count(),
    ])
}

/// Reads `trafficgen send --json` into the generator and its configuration.
pub fn trafficgen_send(
    path: &Path,
    text: &str,
    doc: &serde_json::Value,
    rec: &mut RunRecord,
) -> Result<()> {
    check_schema(path, doc, SEND_SCHEMA, RECORD_VERSION)?;
    let r: SendRecord = from_json(path, text)?;
    let g = rec.generator.get_or_insert_with(Generator::default);
    g.tool = Some(format!("trafficgen {}", r.trafficgen_version));
    g.sent = Some(r.packets_sent);
    g.send_errors = Some(r.send_errors);
    g.end_markers_sent = Some(r.end_markers_sent);
    g.payload_bytes = Some(r.payload_bytes);
    g.wire_bytes = Some(r.wire_bytes);
    g.elapsed_ns = Some(r.elapsed_ns).filter(|&n| n > 0);
    g.reported_pps = Some(r.achieved_pps).filter(|x| x.is_finite());
    g.perf.extend(trafficgen_perf(&r.perf));
    let c = &r.config;
    let cfg = &mut rec.configuration.generator;
    let mut put = |k: &str, v: Setting| {
        if !v.is_null() {
            cfg.insert(k.to_string(), v);
        }
    };
    put("dst", c.dst.clone().into());
    put("src", c.src.clone().into());
    put("iface", c.iface.clone().into());
    put("target_pps", c.target_pps.into());
    put("count", c.count.into());
    put("duration_ns", c.duration_ns.into());
    put("size", c.payload_size_bytes.into());
    put("ttl", c.ttl.into());
    put("threads", c.threads.into());
    put("streams", c.streams.into());
    put("batch_mode", c.batch_mode.clone().into());
    put("gso_segments", c.gso_segments.into());
    put("max_batch_packets", c.max_batch_packets.into());
    put("socket_sndbuf_bytes", c.socket_sndbuf_bytes.into());
    put("gso_fallback_reason", c.gso_fallback_reason.clone().into());
    put("coalesce_ns", c.coalesce_ns.into());
    Ok(())
}

/// Reads `trafficgen recv --json` into the receiver.
///
/// Latency percentiles of several streams cannot be merged from their summaries; with more
/// than one stream the record keeps, per percentile, the worst stream's value (documented in
/// the README), which is what a regression check needs.
pub fn trafficgen_recv(
    path: &Path,
    text: &str,
    doc: &serde_json::Value,
    rec: &mut RunRecord,
) -> Result<()> {
    check_schema(path, doc, RECV_SCHEMA, RECORD_VERSION)?;
    let r: RecvRecord = from_json(path, text)?;
    let out = rec.receiver.get_or_insert_with(Receiver::default);
    out.tool = Some(format!("trafficgen {}", r.trafficgen_version));
    out.received = Some(r.totals.received);
    out.lost = Some(r.totals.lost);
    out.duplicates = Some(r.totals.duplicated);
    out.reordered = Some(r.totals.reordered);
    out.late = Some(r.totals.late);
    out.socket_drops = Some(r.socket_drops);
    out.end_markers_received = Some(r.totals.end_markers_received);
    out.elapsed_ns = Some(r.elapsed_ns).filter(|&n| n > 0);
    let rates: Vec<f64> = r.streams.iter().filter_map(|s| s.receive_pps).collect();
    if !rates.is_empty() {
        out.reported_pps = Some(rates.iter().sum());
    }
    let dists: Vec<&Distribution> = r
        .streams
        .iter()
        .map(|s| &s.latency_ns)
        .filter(|d| d.samples > 0)
        .collect();
    if !dists.is_empty() {
        let worst = |f: fn(&Distribution) -> u64| dists.iter().map(|d| f(d)).max().unwrap_or(0);
        let percentiles: [(f64, ReadPercentile); 5] = [
            (50.0, |d| d.p50),
            (90.0, |d| d.p90),
            (99.0, |d| d.p99),
            (99.9, |d| d.p999),
            (100.0, |d| d.max),
        ];
        out.latency = percentiles
            .iter()
            .map(|&(percentile, read)| Percentile {
                percentile,
                latency_ns: worst(read),
            })
            .collect();
    }
    let streams: Vec<ReceivedStream> = r
        .streams
        .iter()
        .filter_map(|st| received_stream(&r.config.group, st))
        .collect();
    if !streams.is_empty() {
        out.streams = streams;
    }
    rec.configuration.harness.insert(
        "recv_socket_rcvbuf_bytes".into(),
        r.config.socket_rcvbuf_bytes.into(),
    );
    Ok(())
}

/// An RTP or MPEG-TS stream of a receiver record; `None` for a probe stream.
fn received_stream(group: &str, st: &StreamRecord) -> Option<ReceivedStream> {
    let format = match st.format {
        StreamFormat::Probe => return None,
        StreamFormat::Rtp => StreamKind::Rtp,
        StreamFormat::Mpegts => StreamKind::Mpegts,
    };
    let c = &st.counters;
    Some(ReceivedStream {
        group: group.to_string(),
        format,
        id: st.stream_id,
        datagrams: c.received,
        rtp: (format == StreamKind::Rtp).then_some(RtpLoss {
            lost: c.lost,
            duplicates: c.duplicated,
            reordered: c.reordered,
        }),
        mpegts: st.mpegts.as_ref().map(|m| TsLoss {
            continuity_errors: m.continuity_errors,
            lost_ts_packets: m.lost_ts_packets_estimate,
            duplicate_ts_packets: m.duplicate_ts_packets,
            transport_errors: m.transport_errors,
        }),
    })
}

/// Reads `trafficgen sweep --json`: the rates found, and the sweep's parameters.
pub fn trafficgen_sweep(
    path: &Path,
    text: &str,
    doc: &serde_json::Value,
    rec: &mut RunRecord,
) -> Result<()> {
    check_schema(path, doc, SWEEP_SCHEMA, RECORD_VERSION)?;
    let r: SweepRecord = from_json(path, text)?;
    rec.sweep = Some(Sweep {
        zero_loss_pps: r.zero_loss_pps,
        max_loss_ratio_pps: r.max_loss_ratio_pps,
        max_loss_ratio: Some(r.config.max_loss_ratio),
        trials: Some(r.trials.len() as u64),
    });
    let cfg = &mut rec.configuration.generator;
    cfg.insert("size".into(), r.config.payload_size_bytes.into());
    cfg.insert("threads".into(), r.config.threads.into());
    cfg.insert(
        "sweep_trial_duration_ns".into(),
        r.config.trial_duration_ns.into(),
    );
    cfg.insert(
        "sweep_trials_per_rate".into(),
        r.config.trials_per_rate.into(),
    );
    cfg.insert("sweep_min_pps".into(), r.config.min_pps.into());
    cfg.insert("sweep_max_pps".into(), r.config.max_pps.into());
    cfg.insert(
        "sweep_resolution_pps".into(),
        r.config.resolution_pps.into(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "schema": "mcr.relay.stats", "version": 1,
            "timestamp_ns": 1, "uptime_ns": 2_000_000_000u64, "final_report": true,
            "relay": {"version": "0.1.0", "pid": 7, "config_path": null, "gso_egress": true,
                "tunables": {"workers": 2, "cpus": [0, 1], "ring_frames": 4096, "ring_frame_size": 2048,
                    "buffer_count": 8192, "buffer_size": 2048, "uring_entries": 1024,
                    "max_in_flight_sends": 512, "batch_size": 32, "max_gso_segments": 16,
                    "socket_sndbuf": 4194304, "gso": true, "busy_poll_us": 0}},
            "totals": counters(100, 2, 90, 8),
            "workers": [
                {"id": 0, "cpu": 0, "counters": counters(50, 1, 45, 4),
                 "perf": perf(1000, "unavailable")},
                {"id": 1, "cpu": 1, "counters": counters(50, 1, 45, 4),
                 "perf": perf(500, "unavailable")}],
            "flows": [{"rule": "r", "input_interface": "veth0", "group": "239.1.1.1", "port": 5000,
                "source": null, "packets": 98, "bytes": 0,
                "outputs": [{"output": "239.2.2.2:5000@veth1", "ttl": 8, "matched": 98,
                    "tx_sent": 90, "tx_bytes": 0, "tx_errors": 0, "buf_exhaust": 8, "in_flight": 0}]}]
        })
    }

    fn counters(rx: u64, no_match: u64, tx: u64, ex: u64) -> serde_json::Value {
        serde_json::json!({"rx_frames": rx, "rx": rx, "rx_bytes": 0, "kernel_drops": 3,
            "filtered": 0, "malformed": 0, "malformed_by_kind": {}, "no_match": no_match,
            "matched": rx - no_match, "buf_exhaust": ex, "tx_sent": tx, "tx_bytes": 0,
            "tx_errors": 0, "tx_errors_by_errno": {}, "tx_syscalls": 10, "in_flight": 0})
    }

    fn perf(task: u64, cycles: &str) -> serde_json::Value {
        serde_json::json!({"task_clock_ns": task, "context_switches": 0, "cpu_migrations": 0,
            "page_faults": 0, "cycles": cycles, "instructions": cycles,
            "cache_misses": cycles, "branch_misses": cycles})
    }

    #[test]
    fn reads_totals_perf_and_tunables() {
        let doc = sample();
        let mut hop = Hop::default();
        relay_stats(Path::new("s.json"), &doc.to_string(), &doc, &mut hop).unwrap();
        assert_eq!(hop.counters.rx, Some(100));
        assert_eq!(hop.counters.tx_sent, Some(90));
        assert_eq!(hop.counters.output_copies, Some(98));
        assert_eq!(hop.counters.kernel_drops, Some(3));
        assert_eq!(hop.perf["task_clock_ns"], Measured::Count(1500));
        assert_eq!(hop.perf["context_switches"], Measured::Count(0));
        assert_eq!(hop.perf["cycles"], Measured::Unavailable);
        assert_eq!(hop.tunables["uring_entries"], Setting::from(1024));
        assert_eq!(hop.duration_ns, Some(2_000_000_000));
    }

    #[test]
    fn monitored_flows_become_the_hop_streams_and_a_bad_kind_is_named() {
        let doc = sample();
        let mut hop = Hop::default();
        relay_stats(Path::new("s.json"), &doc.to_string(), &doc, &mut hop).unwrap();
        assert!(hop.streams.is_empty(), "no monitor, no streams");
        let mut doc = sample();
        doc["flows"][0]["outputs"][0]["tx_errors"] = serde_json::json!(2);
        doc["flows"][0]["outputs"][0]["tx_sent"] = serde_json::json!(88);
        doc["flows"][0]["monitor"] = serde_json::json!({"kind": "mpegts", "datagrams": 98,
            "foreign": 1, "gaps": 3, "lost": 21, "repeats": 0});
        relay_stats(Path::new("s.json"), &doc.to_string(), &doc, &mut hop).unwrap();
        assert_eq!(
            hop.streams,
            [MonitoredFlow {
                rule: "r".into(),
                input: "239.1.1.1:5000".into(),
                outputs: vec!["239.2.2.2:5000".into()],
                kind: StreamKind::Mpegts,
                datagrams: 98,
                foreign: 1,
                gaps: 3,
                lost: 21,
                repeats: 0,
                dropped: 10,
            }]
        );
        // An IPv6 flow: its input is written as its outputs are, in brackets.
        let mut six = doc.clone();
        six["flows"][0]["group"] = serde_json::json!("ff3e::1234");
        six["flows"][0]["outputs"][0]["output"] = serde_json::json!("[ff3e::4321]:5000@veth1");
        let mut hop6 = Hop::default();
        relay_stats(Path::new("s.json"), &six.to_string(), &six, &mut hop6).unwrap();
        assert_eq!(hop6.streams[0].input, "[ff3e::1234]:5000");
        assert_eq!(hop6.streams[0].outputs, ["[ff3e::4321]:5000"]);
        doc["flows"][0]["monitor"]["kind"] = serde_json::json!("srt");
        let e = relay_stats(Path::new("s.json"), &doc.to_string(), &doc, &mut hop)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("flows[0].monitor.kind") && e.contains("srt"),
            "{e}"
        );
    }

    #[test]
    fn missing_counter_is_named_with_its_path() {
        let mut doc = sample();
        doc["totals"].as_object_mut().unwrap().remove("tx_sent");
        let mut hop = Hop::default();
        let e = relay_stats(Path::new("s.json"), &doc.to_string(), &doc, &mut hop)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s.json") && e.contains("totals") && e.contains("tx_sent"),
            "{e}"
        );
    }

    #[test]
    fn counter_as_text_is_named() {
        let mut doc = sample();
        doc["totals"]["rx"] = serde_json::json!("many");
        let mut hop = Hop::default();
        let e = relay_stats(Path::new("s.json"), &doc.to_string(), &doc, &mut hop)
            .unwrap_err()
            .to_string();
        assert!(e.contains("totals.rx"), "{e}");
    }

    #[test]
    fn newer_version_is_refused() {
        let mut doc = sample();
        doc["version"] = serde_json::json!(2);
        let mut hop = Hop::default();
        let e = relay_stats(Path::new("s.json"), &doc.to_string(), &doc, &mut hop)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `version`"), "{e}");
    }

    // Fixtures are JSON as trafficgen writes it (not struct literals), so the tests keep
    // compiling when trafficgen adds a field with a default, as its contract allows.
    fn dist(p50: u64, p99: u64) -> serde_json::Value {
        serde_json::json!({"samples": 100, "min": 1, "p50": p50, "p90": p50 * 2, "p99": p99,
            "p999": p99 * 2, "max": p99 * 4, "mean": p50 as f64})
    }

    fn tg_perf(task: u64) -> serde_json::Value {
        serde_json::json!({"task_clock_ns": task, "context_switches": 5, "cpu_migrations": 0,
            "page_faults": 0, "cycles": "unavailable", "instructions": "unavailable",
            "cache_misses": "unavailable", "branch_misses": "unavailable"})
    }

    fn send_doc() -> serde_json::Value {
        serde_json::json!({
            "schema": "mcr.trafficgen.send", "version": 1, "trafficgen_version": "0.1.0",
            "started_unix_ns": 1,
            "config": {"dst": "239.1.1.1:5000", "src": null, "iface": "veth0",
                "target_pps": 100000, "count": 1000000, "duration_ns": null,
                "payload_size_bytes": 1400, "ttl": 8, "threads": 1, "streams": 1,
                "batch_mode": "gso", "gso_segments": 16, "max_batch_packets": 64,
                "gso_fallback_reason": null, "end_marker_repeats": 3,
                "socket_sndbuf_bytes": 4194304},
            "packets_sent": 1000000u64, "payload_bytes": 1400000000u64, "wire_bytes": 1442000000u64,
            "send_errors": 0, "send_errors_by_errno": {}, "end_markers_sent": 3,
            "elapsed_ns": 10000000000u64, "achieved_pps": 100000.0, "rate_error_ratio": 0.0,
            "payload_bps": 1.12e9, "wire_bps": 1.15e9,
            "batch_gap_ns": dist(0, 0), "batch_packets": dist(0, 0), "schedule_lag_ns": dist(0, 0),
            "threads": [{"thread_index": 0, "stream_ids": [0], "target_pps": 100000,
                "packets_sent": 1000000u64, "payload_bytes": 1400000000u64,
                "wire_bytes": 1442000000u64, "send_errors": 0, "send_calls": 62500,
                "elapsed_ns": 10000000000u64, "achieved_pps": 100000.0, "perf": tg_perf(2000000000)}],
            "perf": tg_perf(2000000000)
        })
    }

    #[test]
    fn reads_trafficgen_send_with_its_own_types() {
        let doc = send_doc();
        let text = doc.to_string();
        let mut rec = RunRecord::new("x");
        trafficgen_send(Path::new("send.json"), &text, &doc, &mut rec).unwrap();
        let g = rec.generator.unwrap();
        assert_eq!(g.sent, Some(1_000_000));
        assert_eq!(g.elapsed_ns, Some(10_000_000_000));
        assert_eq!(g.perf["task_clock_ns"], Measured::Count(2_000_000_000));
        assert_eq!(
            g.perf["cycles"],
            Measured::Unavailable,
            "unavailable stays unavailable"
        );
        assert_eq!(
            rec.configuration.generator["target_pps"],
            Setting::from(100_000)
        );
        assert_eq!(rec.configuration.generator["size"], Setting::from(1400));
        assert!(
            !rec.configuration.generator.contains_key("src"),
            "null settings are not recorded"
        );
    }

    #[test]
    fn trafficgen_send_with_a_missing_field_is_named() {
        let mut doc = send_doc();
        doc.as_object_mut().unwrap().remove("packets_sent");
        let text = doc.to_string();
        let mut rec = RunRecord::new("x");
        let e = trafficgen_send(Path::new("send.json"), &text, &doc, &mut rec)
            .unwrap_err()
            .to_string();
        assert!(e.contains("send.json") && e.contains("packets_sent"), "{e}");
    }

    #[test]
    fn reads_trafficgen_recv_and_keeps_the_worst_stream_latency() {
        let counters = serde_json::json!({"expected": 500000, "received": 495000, "lost": 5000,
            "duplicated": 1, "reordered": 2, "late": 0, "payload_bytes": 0, "end_markers_received": 3});
        let stream = |id: u32, p50: u64, p99: u64| {
            serde_json::json!({
            "stream_id": id, "counters": counters.clone(), "end_marker_seen": true,
            "lowest_sequence": 0, "highest_sequence": 499999, "first_rx_unix_ns": 1,
            "last_rx_unix_ns": 2, "receive_pps": 50000.0, "latency_ns": dist(p50, p99),
            "negative_latency_packets": 0, "timeline": []})
        };
        let doc = serde_json::json!({
            "schema": "mcr.trafficgen.recv", "version": 1, "trafficgen_version": "0.1.0",
            "started_unix_ns": 1,
            "config": {"group": "239.1.1.1:5000", "iface": null, "duration_ns": null,
                "idle_timeout_ns": 1000000000u64, "exit_on_end": true,
                "socket_rcvbuf_bytes": 4194304, "max_streams": 64, "reorder_window_packets": 1024},
            "elapsed_ns": 11000000000u64, "datagrams_received": 990002, "datagram_bytes": 0,
            "foreign_datagrams": 0, "malformed_datagrams": {}, "untracked_stream_datagrams": 0,
            "socket_drops": 7, "udp_rcvbuf_errors_netns": null,
            "totals": {"expected": 1000000, "received": 990000, "lost": 10000, "duplicated": 2,
                "reordered": 4, "late": 0, "payload_bytes": 0, "end_markers_received": 6},
            "streams": [stream(0, 20000, 90000), stream(1, 30000, 80000)]
        });
        let text = doc.to_string();
        let mut rec = RunRecord::new("x");
        trafficgen_recv(Path::new("recv.json"), &text, &doc, &mut rec).unwrap();
        let out = rec.receiver.unwrap();
        assert_eq!(out.received, Some(990_000));
        assert_eq!(out.lost, Some(10_000));
        assert_eq!(out.socket_drops, Some(7));
        assert_eq!(out.reported_pps, Some(100_000.0));
        assert_eq!(out.latency[0].latency_ns, 30_000, "worst stream's p50");
        assert_eq!(out.latency[2].latency_ns, 90_000, "worst stream's p99");
        assert!(
            out.streams.is_empty(),
            "probe streams are in the counters only"
        );
    }
}
