//! End-to-end tests of the real binary: a sender and a receiver in a pair of network
//! namespaces joined by a veth (root only; see `common::namespaces_available`), and loopback
//! tests that need no privileges.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use trafficgen::record::{RecvRecord, SendRecord, SweepRecord, RECV_SCHEMA, SEND_SCHEMA};

const GROUP: &str = "239.7.7.7:5000";

/// Starts a receiver of GROUP on the pair's rx side that exits once the end markers are in,
/// with `extra` flags, writing its record to `recv_json`.
fn start_receiver(pair: &NetnsPair, recv_json: &Path, extra: &[&str]) -> Receiver {
    let mut args = vec![
        "recv",
        "--group",
        GROUP,
        "--iface",
        &pair.rx_if,
        "--exit-on-end",
        "--duration",
        "60s",
    ];
    args.extend_from_slice(extra);
    args.extend(["--json", recv_json.to_str().unwrap()]);
    Receiver::start(pair.trafficgen(&pair.rx, &args))
}

/// Sends `args` from the pair's tx side to a receiver on its rx side; returns both records.
fn send_and_receive(
    pair: &NetnsPair,
    dir: &tempfile::TempDir,
    send_args: &[&str],
) -> (SendRecord, RecvRecord) {
    let recv_json = dir.path().join("recv.json");
    let send_json = dir.path().join("send.json");
    let receiver = start_receiver(pair, &recv_json, &[]);
    let mut args = vec!["send", "--dst", GROUP, "--iface", &pair.tx_if, "--json"];
    args.push(send_json.to_str().unwrap());
    args.extend_from_slice(send_args);
    run_ok(pair.trafficgen(&pair.tx, &args));
    receiver.finish(Duration::from_secs(30));
    (read_json(&send_json), read_json(&recv_json))
}

#[test]
fn sent_equals_received_at_a_modest_rate() {
    if !namespaces_available("sent_equals_received_at_a_modest_rate") {
        return;
    }
    let _traffic = traffic_lock();
    let pair = NetnsPair::new();
    let dir = tempfile::tempdir().unwrap();
    let backlog_before = pair.tx_dropped();
    let (sent, got) = send_and_receive(
        &pair,
        &dir,
        &[
            "--pps",
            "20000",
            "--count",
            "40000",
            "--streams",
            "3",
            "--threads",
            "1",
        ],
    );
    assert_eq!(sent.schema, SEND_SCHEMA);
    assert_eq!(got.schema, RECV_SCHEMA);
    assert_eq!(sent.packets_sent, 40_000);
    assert_eq!(sent.send_errors, 0);
    assert_eq!(sent.payload_bytes, 40_000 * 1400);
    assert_eq!(sent.wire_bytes, 40_000 * (1400 + 42));
    let t = &got.totals;
    assert_eq!(got.streams.len(), 3);
    assert!(got.streams.iter().all(|s| s.end_marker_seen));
    assert_eq!(t.expected, sent.packets_sent, "{got:#?}");
    // The one loss a modest rate may see is the host's: the receiving CPU's backlog full on
    // a loaded machine, counted by the veth (see `NetnsPair::tx_dropped`).
    let backlog_drops = pair.tx_dropped() - backlog_before;
    assert_eq!(t.received + backlog_drops, sent.packets_sent, "{got:#?}");
    assert_eq!((t.lost, t.duplicated, t.late), (backlog_drops, 0, 0));
    assert_eq!(got.foreign_datagrams, 0);
    assert_eq!(t.end_markers_received, sent.end_markers_sent);
    assert!(got.streams[0].latency_ns.samples > 0);
}

/// The rx namespace's `/proc/net/snmp6` counter `name`.
fn snmp6(ns: &str, name: &str) -> u64 {
    let text = sh(&["ip", "netns", "exec", ns, "cat", "/proc/net/snmp6"]);
    text.lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {name} in /proc/net/snmp6"))
}

/// Issue 22: the generator and the receiver speak IPv6. The receiver joins with MLDv2 (its
/// namespace's `Icmp6OutMLDv2Reports` grows and `/proc/net/igmp6` lists the group on the
/// interface), and every datagram sent to `ff3e::1234` is accounted for, with IPv6's 40-byte
/// header in the wire bytes.
#[test]
fn ipv6_multicast_is_joined_with_mld_and_every_datagram_accounted_for() {
    if !namespaces_available("ipv6_multicast_is_joined_with_mld_and_every_datagram_accounted_for") {
        return;
    }
    let _traffic = traffic_lock();
    let pair = NetnsPair::new();
    // Addresses usable at once (no duplicate address detection), as a source for the sender.
    for (ns, dev, host) in [(&pair.tx, &pair.tx_if, 1), (&pair.rx, &pair.rx_if, 2)] {
        let addr = format!("fd00:7e57::{host}/64");
        sh(&[
            "ip", "-n", ns, "-6", "addr", "add", &addr, "dev", dev, "nodad",
        ]);
    }
    const GROUP6: &str = "[ff3e::1234]:5000";
    let reports_before = snmp6(&pair.rx, "Icmp6OutMLDv2Reports");
    let dir = tempfile::tempdir().unwrap();
    let recv_json = dir.path().join("recv.json");
    let send_json = dir.path().join("send.json");
    let start_receiver = || {
        Receiver::start(pair.trafficgen(
            &pair.rx,
            &[
                "recv",
                "--group",
                GROUP6,
                "--iface",
                &pair.rx_if,
                "--exit-on-end",
                "--duration",
                "60s",
                "--json",
                recv_json.to_str().unwrap(),
            ],
        ))
    };
    // 20,000 datagrams to the group; `batching` are the sender's extra flags.
    let send_to = |receiver: Receiver, batching: &[&str]| -> (SendRecord, RecvRecord) {
        let mut args = vec![
            "send",
            "--dst",
            GROUP6,
            "--iface",
            &pair.tx_if,
            "--pps",
            "20000",
            "--count",
            "20000",
            "--json",
        ];
        args.push(send_json.to_str().unwrap());
        args.extend_from_slice(batching);
        run_ok(pair.trafficgen(&pair.tx, &args));
        receiver.finish(Duration::from_secs(30));
        (read_json(&send_json), read_json(&recv_json))
    };
    let receiver = start_receiver();
    let joined = sh(&["ip", "netns", "exec", &pair.rx, "cat", "/proc/net/igmp6"]);
    assert!(
        joined
            .lines()
            .any(|l| l.contains(&pair.rx_if) && l.contains("ff3e0000000000000000000000001234")),
        "the group is joined on {}:\n{joined}",
        pair.rx_if
    );
    // The report leaves once the interface's link-local address has passed duplicate
    // address detection (its source must be link-local, RFC 3810 5.2.13).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while snmp6(&pair.rx, "Icmp6OutMLDv2Reports") == reports_before {
        assert!(
            std::time::Instant::now() < deadline,
            "joining sent no MLDv2 report within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let backlog_before = pair.tx_dropped();
    let (sent, got) = send_to(receiver, &["--gso-segments", "1"]);
    assert_eq!(sent.config.dst, GROUP6);
    assert_eq!(got.config.group, GROUP6);
    assert_eq!(sent.packets_sent, 20_000);
    assert_eq!(sent.wire_bytes, 20_000 * (1400 + 62));
    // The only loss allowed: the receiving CPU's backlog on a loaded machine, counted.
    let backlog_drops = pair.tx_dropped() - backlog_before;
    assert_eq!(got.totals.received + backlog_drops, 20_000, "{got:#?}");
    assert_eq!((got.totals.lost, got.totals.duplicated), (backlog_drops, 0));
    // GSO batches (UDP_SEGMENT) work over IPv6 as well.
    let backlog_before = pair.tx_dropped();
    let (sent, got) = send_to(start_receiver(), &[]);
    assert_eq!(sent.config.batch_mode, "gso", "{sent:#?}");
    let backlog_drops = pair.tx_dropped() - backlog_before;
    assert_eq!(got.totals.received + backlog_drops, sent.packets_sent);
}

/// A source of one family and a destination of the other is a usage error naming both.
#[test]
fn a_source_and_destination_of_different_families_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_trafficgen"))
        .args([
            "send",
            "--dst",
            "[ff3e::1]:5000",
            "--src",
            "10.0.0.1",
            "--pps",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--src 10.0.0.1")
            && err.contains("[ff3e::1]:5000")
            && err.contains("families"),
        "{err}"
    );
}

/// Whether `nft` is installed; like [`namespaces_available`], a skip fails under
/// `MCR_E2E_REQUIRED=1`.
fn nft_available(test: &str) -> bool {
    if Command::new("nft").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("MCR_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("{test}: nft (Debian package nftables) is required with MCR_E2E_REQUIRED=1");
    }
    skip(&format!(
        "SKIPPED {test}: nft (Debian package nftables) is not installed"
    ));
    false
}

/// Reads the packet counter of the single rule in `table`'s input chain.
fn nft_counter(ns: &str, table: &str) -> u64 {
    let text = sh(&[
        "ip", "netns", "exec", ns, "nft", "list", "chain", "inet", table, "input",
    ]);
    let after = text
        .split("counter packets ")
        .nth(1)
        .unwrap_or_else(|| panic!("no counter in: {text}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn receiver_loss_equals_the_nftables_drop_counter() {
    if !namespaces_available("receiver_loss_equals_the_nftables_drop_counter") {
        return;
    }
    if !nft_available("receiver_loss_equals_the_nftables_drop_counter") {
        return;
    }
    let _traffic = traffic_lock();
    let pair = NetnsPair::new();
    let rules = "table inet tgloss {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
        udp dport 5000 numgen random mod 100 < 2 counter drop\n }\n}\n";
    let rules_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rules_file.path(), rules).unwrap();
    sh(&[
        "ip",
        "netns",
        "exec",
        &pair.rx,
        "nft",
        "-f",
        rules_file.path().to_str().unwrap(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let veth_drops_before = pair.tx_dropped();
    let (sent, got) = send_and_receive(
        &pair,
        &dir,
        &["--pps", "20000", "--count", "50000", "--streams", "2"],
    );
    let dropped = nft_counter(&pair.rx, "tgloss");
    // On a loaded machine the veth itself may drop (receive backlog full) before the rule sees
    // a packet; those drops are counted on the interfaces and are loss too.
    let veth_drops = pair.tx_dropped() - veth_drops_before;
    // The rule drops end markers too; those are not data loss.
    let markers_dropped = sent.end_markers_sent - got.totals.end_markers_received;
    let t = &got.totals;
    assert!(
        dropped > 500,
        "a 2% rule on 50k packets dropped only {dropped}"
    );
    assert_eq!(t.expected, sent.packets_sent, "{got:#?}");
    assert_eq!(
        t.lost,
        dropped - markers_dropped + got.socket_drops + veth_drops,
        "lost {} vs nft dropped {dropped} (of which {markers_dropped} end markers), socket drops {}, \
         veth drops {veth_drops}",
        t.lost,
        got.socket_drops
    );
    assert_eq!(t.received + t.lost, sent.packets_sent);
    assert_eq!(t.duplicated, 0);
}

/// Sends at `pps` for `seconds` and returns (sender's achieved rate, receiver-measured rate).
fn measure_rate(pps: u64, seconds: u64) -> (f64, f64) {
    let pair = NetnsPair::new();
    let dir = tempfile::tempdir().unwrap();
    let (sent, got) = send_and_receive(
        &pair,
        &dir,
        &[
            "--pps",
            &pps.to_string(),
            "--duration",
            &format!("{seconds}s"),
            "--size",
            "200",
        ],
    );
    assert_eq!(sent.packets_sent, pps * seconds);
    let received_rate = got.streams[0].receive_pps.expect("receive rate");
    (sent.achieved_pps, received_rate)
}

#[test]
fn rate_is_within_one_percent_at_10k_and_100k_pps() {
    if !namespaces_available("rate_is_within_one_percent_at_10k_and_100k_pps") {
        return;
    }
    let _traffic = traffic_lock();
    for pps in [10_000u64, 100_000] {
        // The machine is shared and noisy: one retry before calling it a failure.
        let mut attempts = Vec::new();
        for _ in 0..2 {
            let (achieved, received) = measure_rate(pps, 3);
            let ok = [achieved, received]
                .iter()
                .all(|r| ((r - pps as f64) / pps as f64).abs() <= 0.01);
            attempts.push((achieved, received));
            if ok {
                break;
            }
        }
        let (achieved, received) = *attempts.last().unwrap();
        assert!(
            ((achieved - pps as f64) / pps as f64).abs() <= 0.01
                && ((received - pps as f64) / pps as f64).abs() <= 0.01,
            "target {pps} pps: (sender, receiver) rates over 3 s were {attempts:?}"
        );
    }
}

#[test]
fn unreachable_destination_is_a_clear_error() {
    if !namespaces_available("unreachable_destination_is_a_clear_error") {
        return;
    }
    let pair = NetnsPair::new();
    // The rx namespace has no multicast route and no route to 10.99.0.0/16.
    for dst in ["10.99.1.1:5000", "239.1.1.1:5000"] {
        let out = pair
            .trafficgen(&pair.rx, &["--dst", dst, "--pps", "10", "--count", "1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{dst}: {stderr}");
        assert!(
            stderr.contains("unreachable") && stderr.contains(dst),
            "{dst}: {stderr}"
        );
    }
    let out = pair
        .trafficgen(
            &pair.tx,
            &["--iface", "nonexistent0", "--pps", "10", "--count", "1"],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--iface nonexistent0"), "{stderr}");
}

#[test]
fn bad_flags_name_the_flag_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--pps", "fast"], "--pps"),
        (&["--pps", "10", "--size", "10"], "--size"),
        (&["--pps", "10", "--size", "70000"], "--size"),
        (
            &["--pps", "10", "--count", "5", "--duration", "1s"],
            "--duration",
        ),
        (&["--pps", "10", "--duration", "soon"], "--duration"),
        (&["--pps", "10", "--dst", "239.1.1.1"], "--dst"),
        (&["--pps", "1", "--threads", "2"], "--pps"),
        (&["--pps", "10", "--threads", "0"], "--threads"),
        (&["recv"], "--group"),
        (&["recv", "--group", "239.1.1.1:0"], "--group"),
        (
            &["recv", "--group", "127.0.0.1:5000", "--idle-timeout", "x"],
            "--idle-timeout",
        ),
        (&["bogus"], "bogus"),
        (&["sweep", "--min-pps", "0"], "--min-pps"),
        (
            &[
                "--pps",
                "10",
                "--count",
                "1",
                "--json",
                "/nonexistent-dir/x.json",
            ],
            "--json",
        ),
        (
            &[
                "recv",
                "--group",
                "127.0.0.1:5000",
                "--json",
                "/nonexistent-dir/x",
            ],
            "--json",
        ),
        (&["sweep", "--max-loss-ratio", "2"], "--max-loss-ratio"),
        (&["--pps", "10", "--ttl", "300"], "--ttl"),
        (&["--pps", "10", "--ttl", "0"], "--ttl"),
        (&["sweep", "--ttl", "300"], "--ttl"),
        (
            &["--pps", "10", "--end-markers", "4294967295"],
            "--end-markers",
        ),
        (&["--pps", "10", "--end-markers", "1001"], "at most 1000"),
        (
            &["--pps", "10", "--dst", "239.1.1.1:0"],
            "port 0 is not a destination port",
        ),
        (
            &["--pps", "10", "--dst", "0.0.0.0:5000"],
            "unspecified or broadcast",
        ),
    ];
    for (args, flag) in cases {
        let out = Command::new(BIN).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} should mention {flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.matches("(os error").count() <= 1,
            "{args:?}: a cause is printed once: {stderr}"
        );
    }
}

#[test]
fn foreign_and_malformed_datagrams_are_counted_apart_on_loopback() {
    let _traffic = traffic_lock();
    let port = {
        // A free port, released just before the receiver binds it.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let recv_json = dir.path().join("recv.json");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "recv",
        "--group",
        &addr,
        "--exit-on-end",
        "--duration",
        "30s",
        "--json",
        recv_json.to_str().unwrap(),
    ]);
    let receiver = Receiver::start(cmd);

    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.send_to(b"hello, not a probe", &addr).unwrap();
    junk.send_to(b"", &addr).unwrap();
    junk.send_to(b"MCRP\x01\x00", &addr).unwrap(); // truncated
    let mut bad_version = [0u8; 40];
    bad_version[..4].copy_from_slice(b"MCRP");
    bad_version[4] = 99;
    junk.send_to(&bad_version, &addr).unwrap();
    let mut bad_length = bad_version;
    bad_length[4] = 1;
    bad_length[12..16].copy_from_slice(&1000u32.to_be_bytes());
    junk.send_to(&bad_length, &addr).unwrap();

    let mut send = Command::new(BIN);
    send.args([
        "--dst", &addr, "--pps", "5000", "--count", "1000", "--size", "64",
    ]);
    run_ok(send);
    receiver.finish(Duration::from_secs(20));
    let got: RecvRecord = read_json(&recv_json);
    assert_eq!(got.foreign_datagrams, 2, "{got:#?}");
    assert_eq!(got.malformed_datagrams.get("truncated"), Some(&1));
    assert_eq!(got.malformed_datagrams.get("unsupported_version"), Some(&1));
    assert_eq!(got.malformed_datagrams.get("length_mismatch"), Some(&1));
    assert_eq!(got.totals.received, 1000);
    assert_eq!(got.totals.lost, 0);
}

#[test]
fn sweep_finds_the_rate_a_policer_allows() {
    if !namespaces_available("sweep_finds_the_rate_a_policer_allows")
        || !nft_available("sweep_finds_the_rate_a_policer_allows")
    {
        return;
    }
    let _traffic = traffic_lock();
    let pair = NetnsPair::new();
    sweep_against_a_policer(&pair, GROUP);
}

/// The sweep over IPv6 (the MLDv2-joined receiver in the other namespace, as over IPv4).
#[test]
fn sweep_over_ipv6_finds_the_rate_a_policer_allows() {
    if !namespaces_available("sweep_over_ipv6_finds_the_rate_a_policer_allows")
        || !nft_available("sweep_over_ipv6_finds_the_rate_a_policer_allows")
    {
        return;
    }
    let _traffic = traffic_lock();
    let pair = NetnsPair::new();
    for (ns, dev, host) in [(&pair.tx, &pair.tx_if, 1), (&pair.rx, &pair.rx_if, 2)] {
        let addr = format!("fd00:5e::{host}/64");
        sh(&[
            "ip", "-n", ns, "-6", "addr", "add", &addr, "dev", dev, "nodad",
        ]);
    }
    sweep_against_a_policer(&pair, "[ff3e::5]:5000");
}

/// Sweeps `dst` across the pair against a 5000 pps policer on the receiving side.
fn sweep_against_a_policer(pair: &NetnsPair, dst: &str) {
    // A policer in the receiving namespace (IPv4 and IPv6): above 5000 pps, packets drop. Its burst (300) is
    // larger than the sender's largest batch (256), so a sender catching up after being
    // descheduled on a busy machine does not trip it at rates below 5000 pps.
    let rules = "table inet tgpolice {\n chain input {\n  type filter hook input priority 0; \
        policy accept;\n  udp dport 5000 limit rate over 5000/second burst 300 packets counter \
        drop\n }\n}\n";
    let rules_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rules_file.path(), rules).unwrap();
    sh(&[
        "ip",
        "netns",
        "exec",
        &pair.rx,
        "nft",
        "-f",
        rules_file.path().to_str().unwrap(),
    ]);
    // A sweep on a shared 2-core machine can be disturbed (a descheduled sender falls behind
    // and fails a rate it could reach): one retry before calling it a failure.
    let mut tables = Vec::new();
    for _ in 0..2 {
        let (zero, ratio, table) = run_sweep(pair, dst);
        // No loss up to 5000 pps (+ the 300 burst over a 1 s trial); 20% loss at 5300 / 0.8 =
        // 6625 pps. The lower bounds leave room for a loaded machine.
        if (3_500..=5_400).contains(&zero) && (5_600..=6_800).contains(&ratio) {
            return;
        }
        tables.push(table);
    }
    panic!(
        "expected no loss up to ~5000 pps and 20% loss at ~6600 pps:\n{}",
        tables.join("\n")
    );
}

/// Runs a small sweep to `dst` across the pair; returns (zero-loss pps, 20%-loss pps, printed
/// table).
fn run_sweep(pair: &NetnsPair, dst: &str) -> (u64, u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sweep.json");
    let out = run_ok(pair.trafficgen(
        &pair.tx,
        &[
            "sweep",
            "--dst",
            dst,
            "--iface",
            &pair.tx_if,
            "--recv-netns",
            &pair.rx,
            "--recv-iface",
            &pair.rx_if,
            "--size",
            "200",
            "--trial-duration",
            "1s",
            "--trials",
            "1",
            "--min-pps",
            "1000",
            "--max-pps",
            "16000",
            "--resolution-pps",
            "500",
            "--max-loss-ratio",
            "0.2",
            "--json",
            json.to_str().unwrap(),
        ],
    ));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.contains("highest rate with no loss"), "{table}");
    assert_fields_documented(&json);
    let record: SweepRecord = read_json(&json);
    let zero = record.zero_loss_pps.expect("1000 pps passes the policer");
    let ratio = record
        .max_loss_ratio_pps
        .expect("1000 pps passes the policer");
    (zero, ratio, table)
}

#[test]
fn kernel_buffer_drops_are_reported_apart_and_account_for_the_loss() {
    if !namespaces_available("kernel_buffer_drops_are_reported_apart_and_account_for_the_loss") {
        return;
    }
    let _traffic = traffic_lock();
    let pair = NetnsPair::new();
    let dir = tempfile::tempdir().unwrap();
    let recv_json = dir.path().join("recv.json");
    let send_json = dir.path().join("send.json");
    // A small receive buffer, and the receiver stopped (SIGSTOP) for a second mid-run: the
    // kernel must drop what does not fit, and the receiver must see those drops.
    let receiver = start_receiver(&pair, &recv_json, &["--rcvbuf", "100000"]);
    let pid = receiver.pid().to_string();
    let tx_dropped_before = pair.tx_dropped();
    let mut sender = ChildGuard(
        pair.trafficgen(
            &pair.tx,
            &[
                "send",
                "--dst",
                GROUP,
                "--iface",
                &pair.tx_if,
                "--pps",
                "10000",
                // 3.5 s: the receiver has 2 s after SIGCONT to empty its buffer before
                // the end markers come (with 1 s, a CI run under load once lost all three
                // markers to the still-full buffer and the receiver never saw the end).
                "--count",
                "35000",
                "--size",
                "200",
                "--json",
                send_json.to_str().unwrap(),
            ],
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    sh(&["kill", "-STOP", &pid]);
    std::thread::sleep(Duration::from_millis(1000));
    sh(&["kill", "-CONT", &pid]);
    assert!(sender.0.wait().unwrap().success());
    receiver.finish(Duration::from_secs(30));
    // Under load the receiving CPU's backlog can overflow too: veth counts those drops, not
    // the socket, so they are accounted apart. (CI once lost 2 datagrams more than the socket
    // dropped, of ~11,000; with the backlog forced to 8 frames the old law failed every run.)
    let backlog_drops = pair.tx_dropped() - tx_dropped_before;
    let sent: SendRecord = read_json(&send_json);
    let got: RecvRecord = read_json(&recv_json);
    let t = &got.totals;
    assert!(
        got.socket_drops > 1000,
        "expected ~10k drops while stopped: {got:#?}"
    );
    assert_eq!(t.expected, sent.packets_sent);
    assert_eq!(
        t.lost,
        got.socket_drops + backlog_drops,
        "all loss here is the socket's or the backlog's ({backlog_drops}): {got:#?}"
    );
    assert_eq!(got.udp_rcvbuf_errors_netns, Some(got.socket_drops));
}

#[test]
fn idle_timeout_waits_for_the_first_datagram_on_loopback() {
    let _traffic = traffic_lock();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "recv",
        "--group",
        &addr,
        "--idle-timeout",
        "300ms",
        "--duration",
        "20s",
    ]);
    let mut receiver = Receiver::start(cmd);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        receiver.is_running(),
        "the receiver gave up before any traffic"
    );
    let mut send = Command::new(BIN);
    send.args([
        "--dst", &addr, "--pps", "1000", "--count", "100", "--size", "64",
    ]);
    run_ok(send);
    let started = std::time::Instant::now();
    let out = receiver.finish(Duration::from_secs(5));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "idle timeout did not stop it"
    );
    assert!(out.contains("received 100 lost 0"), "{out}");
}

/// SIGINT stops a send early (signal-hook's flag, see `sys::install_stop_handler`): the run
/// still writes its record and exits 130, the shell's code for an interrupt.
#[test]
fn sigint_stops_a_send_with_its_record_and_exit_130() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sink.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("send.json");
    let mut send = Command::new(BIN)
        .args([
            "--dst",
            &addr,
            "--pps",
            "1000",
            "--duration",
            "30s",
            "--json",
        ])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Long enough for the handler to be installed and some packets to go.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) with our own child's pid has no memory effects.
    let rc = unsafe { libc::kill(send.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let status = send.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    let record: SendRecord =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(record.schema, SEND_SCHEMA);
    assert!(record.packets_sent > 0, "{record:?}");
    assert!(
        record.elapsed_ns < 10_000_000_000,
        "stopped early: {record:?}"
    );
}

/// Issue 19 item 5: SIGTERM while the end markers go out (the most allowed, 1,000 repeats of
/// 5 ms: 5 s) stops the run promptly, with its record and summary and exit 130. Before, the
/// marker loop never looked at the stop flag (`--end-markers 4294967295` ran for minutes).
#[test]
fn sigterm_during_end_markers_stops_the_send_promptly_with_its_record() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sink.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("send.json");
    let send = Command::new(BIN)
        .args([
            "--dst",
            &addr,
            "--pps",
            "1000",
            "--count",
            "20",
            "--end-markers",
            "1000",
            "--json",
        ])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // 20 packets take 20 ms; the markers run from then for 5 s.
    std::thread::sleep(Duration::from_millis(800));
    let signalled = std::time::Instant::now();
    // SAFETY: kill(2) with our own child's pid has no memory effects.
    let rc = unsafe { libc::kill(send.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let out = send.wait_with_output().unwrap();
    let took = signalled.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Generous: the markers alone would have taken over 4 s more.
    assert!(
        took < Duration::from_millis(2500),
        "exited {took:?} after SIGTERM"
    );
    let record: SendRecord =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(record.packets_sent, 20, "{record:?}");
    assert!(
        (1..1000).contains(&record.end_markers_sent),
        "some markers, not all: {record:?}"
    );
    assert!(stdout.contains("end markers"), "summary printed: {stdout}");
}
