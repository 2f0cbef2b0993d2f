//! End-to-end tests of `trafficgen recv` on real-stream formats, in network namespaces (root
//! only): an RTP stream with known gaps, duplicates and reordering from a generator in this
//! file, checked against the truth of what it sent and against tshark's reading of a capture;
//! and ffmpeg's MPEG-TS over UDP multicast through an nftables rule dropping 0.5% of the
//! datagrams, checked against the rule's counter.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use trafficgen::record::{RecvRecord, StreamFormat, StreamRecord};

/// One RTP stream of the generator: what it is and what it does to its sequence.
struct RtpPlan {
    ssrc: u32,
    payload_type: u8,
    first_sequence: u16,
    /// RTP timestamp ticks per slot (8 kHz clock, 5 ms slots: 40).
    ticks_per_slot: u32,
    /// Slots whose packet is never sent.
    lost: fn(u32) -> bool,
    /// Slots whose packet is sent twice.
    duplicated: fn(u32) -> bool,
    /// Slots whose packet is sent after the next slot's.
    swapped: fn(u32) -> bool,
}

const SLOT: Duration = Duration::from_millis(5);
const SLOTS: u32 = 800;

impl RtpPlan {
    /// Which slots' packets go out at each slot time, in order.
    fn schedule(&self) -> Vec<Vec<u32>> {
        let mut at: Vec<Vec<u32>> = vec![Vec::new(); SLOTS as usize];
        let mut i = 0;
        while i < SLOTS {
            let lost = (self.lost)(i);
            if (self.swapped)(i) && !lost && i + 1 < SLOTS && !(self.lost)(i + 1) {
                at[i as usize] = vec![i + 1, i];
                i += 2;
                continue;
            }
            if !lost {
                at[i as usize].push(i);
                if (self.duplicated)(i) {
                    at[i as usize].push(i);
                }
            }
            i += 1;
        }
        at
    }

    fn packet(&self, slot: u32) -> Vec<u8> {
        let mut b = vec![0x80, self.payload_type];
        b.extend_from_slice(&self.first_sequence.wrapping_add(slot as u16).to_be_bytes());
        b.extend_from_slice(&(slot * self.ticks_per_slot).to_be_bytes());
        b.extend_from_slice(&self.ssrc.to_be_bytes());
        b.extend_from_slice(&[0xd5; 40]); // 40 samples of PCMU/PCMA silence
        b
    }
}

/// What the receiver must count for a stream sent in `order` (slot numbers, as they left; the
/// veth keeps their order): an independent computation from the send list.
fn truth(order: &[u32]) -> (u64, u64, u64, u64) {
    let distinct: BTreeSet<u32> = order.iter().copied().collect();
    let expected = u64::from(distinct.last().unwrap() - distinct.first().unwrap() + 1);
    let mut seen = BTreeSet::new();
    let mut highest = None;
    let mut reordered = 0;
    for &slot in order {
        if seen.insert(slot) {
            if highest.is_some_and(|h| slot < h) {
                reordered += 1;
            }
            highest = Some(highest.map_or(slot, |h: u32| h.max(slot)));
        }
    }
    let received = distinct.len() as u64;
    let duplicated = order.len() as u64 - received;
    (expected, received, duplicated, reordered)
}

/// A pseudo-random delay of 0..1.5 ms for each slot, so that the jitter is not zero.
fn slot_delay(slot: u32) -> Duration {
    let mut x = u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    Duration::from_micros(x % 1500)
}

/// Sends every plan's schedule from `socket` to `dst`, slot by slot.
fn send_plans(socket: &UdpSocket, dst: SocketAddrV4, plans: &[RtpPlan]) -> Vec<Vec<u32>> {
    let schedules: Vec<_> = plans.iter().map(RtpPlan::schedule).collect();
    let start = Instant::now() + Duration::from_millis(20);
    for slot in 0..SLOTS {
        let due = start + SLOT * slot + slot_delay(slot);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for (plan, schedule) in plans.iter().zip(&schedules) {
            for &s in &schedule[slot as usize] {
                socket.send_to(&plan.packet(s), dst).expect("send RTP");
            }
        }
    }
    schedules
        .iter()
        .map(|s| s.iter().flatten().copied().collect())
        .collect()
}

/// RFC 3550 6.4.1 jitter of one SSRC from a capture, computed here apart from trafficgen:
/// (final J, max J, mean J after the first packet), in milliseconds.
fn jitter_from_capture(pcap: &Path, ssrc: u32, clock_hz: f64) -> (f64, f64, f64) {
    let out = run_ok({
        let mut c = Command::new("tshark");
        c.args(["-n", "-r"])
            .arg(pcap)
            .args(["-d", "udp.port==5004,rtp", "-Y"])
            .arg(format!("rtp.ssrc == 0x{ssrc:08x}"))
            .args([
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "rtp.timestamp",
            ]);
        c
    });
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut j, mut max, mut sum, mut n) = (0.0f64, 0.0f64, 0.0f64, 0u32);
    let mut previous: Option<(i128, u32)> = None;
    for line in text.lines() {
        let mut fields = line.split('\t');
        let time = fields.next().unwrap();
        let ts: u32 = fields.next().unwrap().trim().parse().unwrap();
        let (secs, frac) = time.split_once('.').unwrap();
        let ns = secs.parse::<i128>().unwrap() * 1_000_000_000
            + format!("{frac:0<9}")[..9].parse::<i128>().unwrap();
        if let Some((prev_ns, prev_ts)) = previous {
            let arrival_ticks = (ns - prev_ns) as f64 * clock_hz / 1e9;
            let d = arrival_ticks - f64::from(ts.wrapping_sub(prev_ts) as i32);
            j += (d.abs() - j) / 16.0;
            max = max.max(j);
            sum += j;
            n += 1;
        }
        previous = Some((ns, ts));
    }
    assert!(
        n > 100,
        "too few packets of 0x{ssrc:08x} in the capture: {text}"
    );
    let ms = |ticks: f64| ticks * 1000.0 / clock_hz;
    (ms(j), ms(max), ms(sum / f64::from(n)))
}

/// tshark's `-z rtp,streams` row of `ssrc`: (packets, max jitter ms, mean jitter ms).
fn tshark_rtp_streams(pcap: &Path, ssrc: u32) -> (u64, f64, f64, String) {
    let out = run_ok({
        let mut c = Command::new("tshark");
        c.args(["-n", "-q", "-r"]).arg(pcap).args([
            "-d",
            "udp.port==5004,rtp",
            "-z",
            "rtp,streams",
        ]);
        c
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let header = text
        .lines()
        .find(|l| l.contains("SSRC") && l.contains("Jitter"))
        .unwrap_or_else(|| panic!("no header in tshark's output:\n{text}"));
    let row = text
        .lines()
        .find(|l| l.to_lowercase().contains(&format!("0x{ssrc:08x}")))
        .unwrap_or_else(|| panic!("no row for 0x{ssrc:08x} in tshark's output:\n{text}"));
    // Counted from the end, since a payload name may hold spaces: "... Pkts Lost (x%) MinDelta
    // MeanDelta MaxDelta MinJitter MeanJitter MaxJitter [X]" (X flags a problem: here, the
    // gaps the generator made).
    assert!(
        header.trim_end().ends_with("Max Jitter(ms) Problems?"),
        "{header}"
    );
    let cols: Vec<&str> = row.split_whitespace().collect();
    let problem = usize::from(cols.last() == Some(&"X"));
    let at = |from_end: usize| cols[cols.len() - 1 - problem - from_end];
    let max_jitter: f64 = at(0).parse().unwrap();
    let mean_jitter: f64 = at(1).parse().unwrap();
    let packets: u64 = at(8).parse().unwrap();
    (packets, max_jitter, mean_jitter, text)
}

fn rtp_stream(record: &RecvRecord, ssrc: u32) -> &StreamRecord {
    record
        .streams
        .iter()
        .find(|s| s.format == StreamFormat::Rtp && s.stream_id == ssrc)
        .unwrap_or_else(|| panic!("no RTP stream 0x{ssrc:08x}: {record:#?}"))
}

#[test]
fn rtp_counts_are_exact_and_jitter_matches_an_independent_reading_of_the_capture() {
    let test = "rtp_counts_are_exact_and_jitter_matches_an_independent_reading_of_the_capture";
    if !namespaces_available(test)
        || !tool_available(test, "tshark", "-v")
        || !tool_available(test, "dumpcap", "-v")
    {
        return;
    }
    let _traffic = traffic_lock();
    let pair = NetnsPair::new();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("rtp.pcapng");
    let recv_json = dir.path().join("recv.json");
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 7, 7, 9), 5004);
    let capture = Capture::start(&pair.rx, &pair.rx_if, "udp port 5004", &pcap);
    let receiver = Receiver::start(pair.trafficgen(
        &pair.rx,
        &[
            "recv",
            "--group",
            &group.to_string(),
            "--iface",
            &pair.rx_if,
            "--idle-timeout",
            "1s",
            "--duration",
            "30s",
            "--json",
            recv_json.to_str().unwrap(),
        ],
    ));
    // A: gaps, duplicates and swapped pairs, its sequence wrapping past 65535 after 536 slots.
    // B: gaps and duplicates only, in order, so tshark (which measures a packet after a
    // reordered one against the last in-order one) reads its jitter exactly as RFC 3550 does.
    let plans = [
        RtpPlan {
            ssrc: 0x4d43_5201,
            payload_type: 0,
            first_sequence: 65_000,
            ticks_per_slot: 40,
            lost: |i| i % 50 == 17,
            duplicated: |i| i % 70 == 33,
            swapped: |i| i % 90 == 45,
        },
        RtpPlan {
            ssrc: 0x4d43_5202,
            payload_type: 8,
            first_sequence: 7,
            ticks_per_slot: 40,
            lost: |i| i % 37 == 5 || (300..303).contains(&i),
            duplicated: |i| i % 61 == 20,
            swapped: |_| false,
        },
    ];
    let tx_addr: Ipv4Addr = pair.tx_addr.parse().unwrap();
    // The tx namespace routes 224.0.0.0/4 out of its veth.
    let socket = in_netns(&pair.tx, || {
        UdpSocket::bind((tx_addr, 0)).expect("bind the generator")
    });
    let sent = send_plans(&socket, group, &plans);
    receiver.finish(Duration::from_secs(30));
    capture.stop();
    let got: RecvRecord = read_json(&recv_json);
    assert_eq!(got.streams.len(), 2, "{got:#?}");
    assert_eq!(got.foreign_datagrams, 0);
    for (plan, order) in plans.iter().zip(&sent) {
        let s = rtp_stream(&got, plan.ssrc);
        let c = &s.counters;
        let (expected, received, duplicated, reordered) = truth(order);
        assert_eq!(
            (
                c.expected,
                c.received,
                c.lost,
                c.duplicated,
                c.reordered,
                c.late
            ),
            (
                expected,
                received,
                expected - received,
                duplicated,
                reordered,
                0
            ),
            "0x{:08x}: {s:#?}",
            plan.ssrc
        );
        let rtp = s.rtp.as_ref().unwrap();
        assert_eq!(rtp.payload_type, plan.payload_type);
        assert_eq!(rtp.sequence_restarts, 0);
        assert_eq!(rtp.clock_rate_hz, Some(8000));
        assert_eq!(
            s.timeline.iter().map(|t| t.received).sum::<u64>(),
            c.received
        );

        // Jitter: trafficgen (from SO_TIMESTAMPNS) against this file's own RFC 3550
        // computation from the capture's timestamps (microseconds), within 5 us.
        let (final_ms, max_ms, mean_ms) = jitter_from_capture(&pcap, plan.ssrc, 8000.0);
        let ours = |ns: Option<f64>| ns.unwrap() / 1e6;
        let report = format!(
            "0x{:08x}: trafficgen J {:.4} max {:.4} mean {:.4} ms; capture J {final_ms:.4} max \
             {max_ms:.4} mean {mean_ms:.4} ms",
            plan.ssrc,
            ours(rtp.jitter_ns),
            ours(rtp.jitter_max_ns),
            ours(rtp.jitter_mean_ns)
        );
        skip(&report);
        assert!(
            max_ms > 0.05,
            "the generator's delays make jitter: {report}"
        );
        for (a, b) in [
            (ours(rtp.jitter_ns), final_ms),
            (ours(rtp.jitter_max_ns), max_ms),
            (ours(rtp.jitter_mean_ns), mean_ms),
        ] {
            assert!((a - b).abs() < 0.005, "{report}");
        }
        let j_units = rtp.jitter_timestamp_units.unwrap();
        assert!((j_units / 8.0 - ours(rtp.jitter_ns)).abs() < 1e-9);
    }

    // tshark's own RTP statistics of the in-order stream B: its max and mean jitter, printed
    // to 3 decimals in ms, are RFC 3550's J over the packets after the first.
    let b = &plans[1];
    let (packets, max_jitter, mean_jitter, text) = tshark_rtp_streams(&pcap, b.ssrc);
    let s = rtp_stream(&got, b.ssrc);
    let rtp = s.rtp.as_ref().unwrap();
    let (ours_max, ours_mean) = (
        rtp.jitter_max_ns.unwrap() / 1e6,
        rtp.jitter_mean_ns.unwrap() / 1e6,
    );
    skip(&format!(
        "0x{:08x}: tshark max {max_jitter:.3} mean {mean_jitter:.3} ms, trafficgen max \
         {ours_max:.4} mean {ours_mean:.4} ms",
        b.ssrc
    ));
    assert_eq!(
        packets,
        s.counters.received + s.counters.duplicated,
        "{text}"
    );
    assert!((ours_max - max_jitter).abs() <= 0.0055, "{text}");
    assert!((ours_mean - mean_jitter).abs() <= 0.0055, "{text}");
    assert_fields_documented(&recv_json);
}

#[test]
fn ffmpeg_mpegts_loss_from_continuity_counters_matches_the_nftables_drops() {
    let test = "ffmpeg_mpegts_loss_from_continuity_counters_matches_the_nftables_drops";
    if !namespaces_available(test)
        || !tool_available(test, "ffmpeg", "-version")
        || !tool_available(test, "nft", "--version")
    {
        return;
    }
    let _traffic = traffic_lock();
    let pair = NetnsPair::new();
    // Every datagram is counted; full ones (1316 bytes of TS = 7 packets, UDP length 1324)
    // are dropped at random, 5 in 1000. ffmpeg's last datagram may be shorter: never dropped,
    // so every dropped datagram held exactly 7 TS packets.
    nft_load(
        &pair.rx,
        "table inet tgts {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
         udp dport 5006 counter\n  \
         udp dport 5006 udp length 1324 numgen random mod 1000 < 5 counter drop\n }\n}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let recv_json = dir.path().join("recv.json");
    let group = "239.7.7.10:5006";
    let receiver = Receiver::start(pair.trafficgen(
        &pair.rx,
        &[
            "recv",
            "--group",
            group,
            "--iface",
            &pair.rx_if,
            "--format",
            "mpegts",
            "--idle-timeout",
            "2s",
            "--duration",
            "60s",
            "--json",
            recv_json.to_str().unwrap(),
        ],
    ));
    let veth_drops_before = pair.tx_dropped();
    // 8 Mbit/s constant-rate MPEG-2 video for 8 s: about 6000 datagrams.
    let url = format!(
        "udp://{group}?pkt_size=1316&ttl=4&localaddr={}",
        pair.tx_addr
    );
    let ffmpeg = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.tx,
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
        ])
        .args(["-loglevel", "error", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc=size=640x360:rate=25", "-t", "8"])
        .args([
            "-c:v",
            "mpeg2video",
            "-b:v",
            "8M",
            "-minrate",
            "8M",
            "-maxrate",
            "8M",
        ])
        .args(["-bufsize", "2M", "-f", "mpegts", &url])
        .stdin(Stdio::null())
        .output()
        .expect("run ffmpeg");
    assert!(
        ffmpeg.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&ffmpeg.stderr)
    );
    receiver.finish(Duration::from_secs(30));
    let veth_drops = pair.tx_dropped() - veth_drops_before;
    let counters = nft_counters(&pair.rx, "tgts");
    let (all, dropped) = (counters[0], counters[1]);
    let got: RecvRecord = read_json(&recv_json);
    assert_eq!(got.streams.len(), 1, "{got:#?}");
    let s = &got.streams[0];
    assert_eq!(s.format, StreamFormat::Mpegts);
    let ts = s.mpegts.as_ref().unwrap();
    let by_pid: HashMap<u16, u64> = ts.pids.iter().map(|p| (p.pid, p.ts_packets)).collect();
    let lost_datagrams = dropped + got.socket_drops + veth_drops;
    let truth = 7 * lost_datagrams;
    let report = format!(
        "nft: {all} datagrams, {dropped} dropped (x7 = {} TS packets); socket drops {}, veth \
         drops {veth_drops}; trafficgen: {} datagrams, {} TS packets, CC errors {}, lost \
         estimate {} TS packets ({} datagrams), PIDs {by_pid:?}",
        7 * dropped,
        got.socket_drops,
        ts.datagrams,
        ts.ts_packets,
        ts.continuity_errors,
        ts.lost_ts_packets_estimate,
        s.counters.lost
    );
    skip(&report);
    assert!(dropped >= 10, "too few drops to compare: {report}");
    // The rule counts after the veth, before the socket.
    assert_eq!(ts.datagrams + dropped + got.socket_drops, all, "{report}");
    // The premise of the comparison: every packet advances its PID's counter (no null packets,
    // none without payload), so every lost packet leaves a gap...
    assert_eq!((ts.null_packets, ts.no_payload_packets), (0, 0), "{report}");
    assert_eq!(
        (ts.transport_errors, ts.duplicate_ts_packets),
        (0, 0),
        "{report}"
    );
    // ...except what CC arithmetic cannot resolve: 16 or more packets of one PID lost in a row
    // (three consecutive datagrams here, about 1 in 10^7), and a PID's packets in a dropped
    // datagram after the last (or before the first) packet of that PID that arrived. So the
    // estimate never exceeds the truth, and falls short by at most those edge datagrams:
    // 7 packets for each PID's first and last datagram.
    let edge = 2 * 7 * ts.pids.len() as u64;
    assert!(
        ts.lost_ts_packets_estimate <= truth && truth - ts.lost_ts_packets_estimate <= edge,
        "{report}"
    );
    // In datagrams: the estimate / 7, rounded up.
    assert_eq!(
        s.counters.lost,
        ts.lost_ts_packets_estimate.div_ceil(7),
        "{report}"
    );
    assert_fields_documented(&recv_json);
}
