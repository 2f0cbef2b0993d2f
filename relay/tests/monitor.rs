//! Per-hop stream monitoring end to end: a stream through two mcrd hops, with an nftables rule
//! on hop 1's egress dropping some of it. Hop 1's monitor (what it received) sees no gap; hop
//! 2's sees the datagrams the rule dropped, so the loss is localized to the link between them.
//! Once with an RTP stream from this file (exact), once with ffmpeg's MPEG-TS (continuity
//! counters: within what CC arithmetic resolves).

mod common;

use std::net::SocketAddrV4;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use relay::stats::report::MonitorStats;

/// The two tests run one at a time: on a 2-core machine a second stream could overflow a
/// hop's ring, and that loss (a gap at that hop) is not the one under test.
static TRAFFIC: Mutex<()> = Mutex::new(());

fn traffic_lock() -> std::sync::MutexGuard<'static, ()> {
    TRAFFIC
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `program` can be run; a missing one fails under `MCR_E2E_REQUIRED=1`.
fn tool(test: &str, program: &str, arg: &str) -> bool {
    let found = Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert_ne!(
            std::env::var("MCR_E2E_REQUIRED").as_deref(),
            Ok("1"),
            "{test}: {program} is missing (scripts/setup.sh installs it) and MCR_E2E_REQUIRED=1"
        );
        eprintln!("SKIPPED {test}: {program} is missing");
    }
    found
}

/// Loads `rules` into `ns`'s nftables.
fn nft_load(ns: &Netns, rules: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    let out = ns
        .command("nft")
        .arg("-f")
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The packet count of the first counter in `ns`'s table `inet TABLE`.
fn nft_counter(ns: &Netns, table: &str) -> u64 {
    let listed = ns
        .command("nft")
        .args(["list", "table", "inet", table])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    text.split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {text}"))
}

/// Stops the relays and returns each hop's monitor.
fn monitors(relays: Vec<Relay>) -> Vec<MonitorStats> {
    relays
        .into_iter()
        .enumerate()
        .map(|(k, r)| {
            let fin = r.stop();
            assert_conserves(&fin);
            fin.flows[0]
                .monitor
                .clone()
                .unwrap_or_else(|| panic!("hop {k} has no monitor: {:#?}", fin.flows[0]))
        })
        .collect()
}

/// An RTP packet (PT 96) with sequence `seq` and `len` bytes in all.
fn rtp(seq: u16, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[0] = 0x80;
    b[1] = 96;
    b[2..4].copy_from_slice(&seq.to_be_bytes());
    b[4..8].copy_from_slice(&(u32::from(seq) * 90).to_be_bytes());
    b[8..12].copy_from_slice(&0x6d63_7201u32.to_be_bytes());
    b
}

#[test]
fn sequence_gaps_appear_first_at_the_hop_after_the_lossy_link() {
    if !e2e_allowed("monitor_two_hops") {
        return;
    }
    if !tool("monitor_two_hops", "nft", "--version") {
        return;
    }
    let _traffic = traffic_lock();
    let c = chain(2, false);
    // Plain sends (no GSO): the nftables rule then sees, and drops, single datagrams.
    // The userspace path: its sends cross the OUTPUT hook where the loss is made (the
    // kernel path's redirect does not).
    let config = relay_config(
        1,
        "gso = false\nfast_path = \"off\"",
        &format!("{}monitor = \"rtp\"\n", chain_rule()),
    );
    let relays: Vec<Relay> = c
        .relays
        .iter()
        .map(|ns| Relay::start(ns, &config))
        .collect();
    // Hop 1 sends through its OUTPUT hook: drop 2% of the full-size datagrams there. The first
    // and last few datagrams are shorter and never dropped, so that hop 2 sees the stream's
    // both ends and every drop shows as a gap.
    let rules = "table inet mcrmon {\n chain output {\n  type filter hook output priority 0; \
        policy accept;\n  udp dport 5000 udp length 208 numgen random mod 100 < 2 counter drop\n \
        }\n}\n";
    nft_load(&c.relays[0], rules);

    let tx = sender(&c.src, SRC_ADDR);
    let n: u64 = 6000;
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_micros(i * 250);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // 65000 onwards: the sequence wraps past 65535 on the way.
        let seq = (65_000 + i) as u16;
        let len = if i < 5 || i >= n - 5 { 100 } else { 200 };
        tx.send_to(&rtp(seq, len), SocketAddrV4::new(GROUP, PORT))
            .expect("send");
    }
    std::thread::sleep(Duration::from_millis(300));
    let dropped = nft_counter(&c.relays[0], "mcrmon");
    let hops = monitors(relays);
    let (first, second) = (&hops[0], &hops[1]);
    eprintln!("nft dropped {dropped}; hop 1 {first:?}; hop 2 {second:?}");
    assert!(
        dropped > 30,
        "a 2% rule on 6000 datagrams dropped {dropped}"
    );
    assert_eq!(first.kind, "rtp");
    assert_eq!(
        (
            first.datagrams,
            first.gaps,
            first.lost,
            first.repeats,
            first.foreign
        ),
        (n, 0, 0, 0, 0),
        "hop 1 received everything"
    );
    assert_eq!(second.datagrams, n - dropped);
    assert_eq!(second.lost, dropped, "hop 2's gaps are the link's drops");
    assert!(second.gaps >= 1 && second.gaps <= dropped);
    assert_eq!((second.repeats, second.foreign), (0, 0));
}

#[test]
fn ffmpeg_mpegts_continuity_errors_appear_first_at_the_hop_after_the_lossy_link() {
    let test = "monitor_two_hops_mpegts";
    if !e2e_allowed(test) || !tool(test, "nft", "--version") || !tool(test, "ffmpeg", "-version") {
        return;
    }
    let _traffic = traffic_lock();
    let c = chain(2, false);
    let config = relay_config(
        1,
        "gso = false",
        &format!("{}monitor = \"mpegts\"\n", chain_rule()),
    );
    let relays: Vec<Relay> = c
        .relays
        .iter()
        .map(|ns| Relay::start(ns, &config))
        .collect();
    // 0.5% of the full datagrams (7 TS packets, UDP length 1324) dropped leaving hop 1.
    nft_load(
        &c.relays[0],
        "table inet mcrts {\n chain output {\n  type filter hook output priority 0; policy \
         accept;\n  udp dport 5000 udp length 1324 numgen random mod 1000 < 5 counter drop\n \
         }\n}\n",
    );
    // 8 Mbit/s constant-rate MPEG-2 video for 8 s: about 6000 datagrams of 7 TS packets.
    let url = format!("udp://{GROUP}:{PORT}?pkt_size=1316&ttl=8&localaddr={SRC_ADDR}");
    let out = c
        .src
        .command("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=25",
            "-t",
            "8",
        ])
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
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let dropped = nft_counter(&c.relays[0], "mcrts");
    let hops = monitors(relays);
    let (first, second) = (&hops[0], &hops[1]);
    eprintln!(
        "nft dropped {dropped} (x7 = {}); hop 1 {first:?}; hop 2 {second:?}",
        7 * dropped
    );
    assert!(dropped >= 10, "too few drops to compare: {dropped}");
    assert_eq!(first.kind, "mpegts");
    assert_eq!(
        (first.gaps, first.lost, first.repeats, first.foreign),
        (0, 0, 0, 0),
        "hop 1 received everything: {first:?}"
    );
    assert_eq!(second.datagrams, first.datagrams - dropped);
    // Every dropped datagram held 7 TS packets of PIDs that go on (ffmpeg's stream has no
    // null or adaptation-only packets): each shows as a gap, unless it held a PID's last packet
    // (4 PIDs: at most 4 such datagrams) or 16+ packets of one PID went in a row (3 datagrams
    // in a row, about 1 in 10^7).
    assert!(
        second.lost <= 7 * dropped && 7 * dropped - second.lost <= 7 * 4,
        "hop 2 lost {} TS packets, the link dropped {dropped} datagrams",
        second.lost
    );
    assert_eq!(second.foreign, 0);
}
