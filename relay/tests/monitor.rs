//! Per-hop stream monitoring end to end: an RTP stream through two mcrd hops, with an nftables
//! rule on hop 1's egress dropping 2% of it. Hop 1's monitor (what it received) sees no gap;
//! hop 2's sees exactly the datagrams the rule dropped, so the loss is localized to the link
//! between them.

mod common;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use common::*;

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
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        assert_ne!(
            std::env::var("MCR_E2E_REQUIRED").as_deref(),
            Ok("1"),
            "nft is missing and MCR_E2E_REQUIRED=1"
        );
        eprintln!("SKIPPED monitor_two_hops: nft is missing");
        return;
    }
    let c = chain(2, false);
    // Plain sends (no GSO): the nftables rule then sees, and drops, single datagrams.
    let config = relay_config(
        1,
        "gso = false",
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
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    let out = c.relays[0]
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
    let listed = c.relays[0]
        .command("nft")
        .args(["list", "table", "inet", "mcrmon"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    let dropped: u64 = text
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {text}"));
    let finals: Vec<_> = relays.into_iter().map(Relay::stop).collect();
    let hop = |k: usize| {
        finals[k].flows[0]
            .monitor
            .clone()
            .unwrap_or_else(|| panic!("hop {k} has no monitor: {:#?}", finals[k].flows[0]))
    };
    let (first, second) = (hop(0), hop(1));
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
