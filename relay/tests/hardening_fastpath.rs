//! Hardening of the kernel fast path and of interface identity (issue 19, round two), end to
//! end in real namespaces: malformed datagrams counted alike on both paths and never sent,
//! one owner per input, inputs re-created under the same index, and no double count when a
//! flow changes path.
//!
//! `MCR_MEASURE_MCRD=PATH` runs the cost measurement against another mcrd binary (the
//! "before" numbers of reports/hardening-round2/fastpath.md).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use common::*;
use relay::stats::report::StatsReport;

const REQUIRED: &str = "fast_path = \"required\"";
const OFF: &str = "fast_path = \"off\"";

// Each of these runs once per hook (tcx and clsact): `NAME::tcx`, `NAME::clsact`.
on_each_hook!(
    decapsulated_frames_are_checked_with_the_kernel_s_sum_and_bad_ones_still_refused,
    malformed_datagrams_are_counted_alike_on_both_paths_and_never_sent,
    fast_path_cost_per_packet,
    a_second_daemon_on_a_taken_input_stands_by_and_never_doubles_the_flow,
    an_input_recreated_under_the_same_index_is_followed_on_the_fast_path,
    a_flow_switching_paths_under_traffic_is_counted_once,
);

/// Starts mcrd, or the binary `MCR_MEASURE_MCRD` names (to measure an older build).
fn start(ns: &Netns, config: &str) -> Relay {
    match std::env::var("MCR_MEASURE_MCRD") {
        Ok(_) => Relay::start_as(
            ns,
            config,
            Some(&["sh", "-c", "shift; exec \"$MCR_MEASURE_MCRD\" \"$@\"", "sh"]),
        ),
        Err(_) => Relay::start(ns, config),
    }
}

/// Datagrams of each malformed kind.
const EACH: u64 = 100;
const LEN: usize = 200;

fn set_u16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn get_u16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// Offsets in an untagged frame.
const IP: usize = 14;
const IP_TOTAL_LEN: usize = IP + 2;
const UDP: usize = IP + 20;
const UDP_LEN: usize = UDP + 4;
const UDP_CSUM: usize = UDP + 6;

/// One malformed kind of the issue: how to spoil a good frame, and the counter userspace
/// puts it in (`filtered` for QinQ, else the malformed kind).
struct Spoil {
    what: &'static str,
    counted_as: &'static str,
    spoil: fn(&mut Vec<u8>),
}

fn spoils() -> Vec<Spoil> {
    vec![
        Spoil {
            what: "bad IP header checksum",
            counted_as: "bad_ip_checksum",
            spoil: |f| f[IP + 10] ^= 0x5a,
        },
        Spoil {
            what: "bad UDP checksum",
            counted_as: "bad_udp_checksum",
            spoil: |f| f[UDP_CSUM] ^= 0x5a,
        },
        Spoil {
            what: "IP total length above the frame",
            counted_as: "truncated",
            spoil: |f| {
                let l = get_u16(f, IP_TOTAL_LEN);
                set_u16(f, IP_TOTAL_LEN, l + 10);
                refresh_ip_checksum(f);
            },
        },
        Spoil {
            what: "IP total length below the frame",
            counted_as: "bad_udp_length",
            spoil: |f| {
                let l = get_u16(f, IP_TOTAL_LEN);
                set_u16(f, IP_TOTAL_LEN, l - 10);
                refresh_ip_checksum(f);
            },
        },
        Spoil {
            what: "truncated frame",
            counted_as: "truncated",
            spoil: |f| f.truncate(f.len() - 10),
        },
        Spoil {
            what: "UDP length too big",
            counted_as: "bad_udp_length",
            spoil: |f| {
                let l = get_u16(f, UDP_LEN);
                set_u16(f, UDP_LEN, l + 10);
            },
        },
        Spoil {
            what: "UDP length too small",
            counted_as: "bad_udp_length",
            spoil: |f| {
                let l = get_u16(f, UDP_LEN);
                set_u16(f, UDP_LEN, l - 10);
            },
        },
        Spoil {
            what: "UDP length short of its header",
            counted_as: "bad_udp_length",
            spoil: |f| set_u16(f, UDP_LEN, 4),
        },
        Spoil {
            what: "only an IP header",
            counted_as: "bad_total_length",
            spoil: |f| {
                f.truncate(UDP);
                set_u16(f, IP_TOTAL_LEN, 20);
                refresh_ip_checksum(f);
            },
        },
        Spoil {
            what: "IP version 6 in an IPv4 EtherType",
            counted_as: "bad_ip_header_length",
            spoil: |f| {
                f[IP] = 0x65;
                refresh_ip_checksum(f);
            },
        },
        Spoil {
            what: "QinQ (802.1ad outer tag, 802.1Q inner tag)",
            counted_as: "filtered",
            spoil: |f| {
                f.splice(12..12, [0x88, 0xa8, 0x00, 200, 0x81, 0x00, 0x00, 100]);
            },
        },
    ]
}

/// What one run of the malformed probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    malformed_by_kind: BTreeMap<String, u64>,
    filtered: u64,
    tx_sent: u64,
    /// Datagrams the receiver got, by sequence number.
    received: Vec<u64>,
    /// The receiver host's header, length and checksum errors (IP and UDP).
    receiver_errors: u64,
}

/// Sends `EACH` frames of every malformed kind and `2 x EACH` good datagrams (half as raw
/// frames with a full UDP checksum, half from a UDP socket with a partial one) through one
/// relay running with `dataplane`, and reports what it counted (once it counted `malformed`
/// datagrams, or after 5 s) and what got through.
fn malformed_probe(dataplane: &str, malformed: u64) -> (Seen, StatsReport) {
    let c = chain(1, false);
    let relay = start(&c.relays[0], &relay_config(1, dataplane, &chain_rule()));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let raw = raw_socket(&c.src, "out0");
    let errors = |ns: &Netns| {
        snmp(ns, "Ip:", "InHdrErrors")
            + snmp(ns, "Udp:", "InErrors")
            + snmp(ns, "Udp:", "InCsumErrors")
    };
    let errors_before = errors(&c.dst);
    let mut sent = 0u64;
    for i in 0..EACH {
        raw_send(&raw, &frame(&payload(i, LEN), 4000));
        sent += 1;
        for (k, s) in spoils().iter().enumerate() {
            let mut f = frame(&payload(10_000 + k as u64 * EACH + i, LEN), 4000);
            (s.spoil)(&mut f);
            raw_send(&raw, &f);
            sent += 1;
        }
        if sent.is_multiple_of(24) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), EACH, EACH, LEN, 5_000);
    let got = drain(&rx, Duration::from_millis(500), 4 * EACH as usize);
    let received = check_payloads(&got, LEN);
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.stats().totals.malformed < malformed && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let fin = relay.stop();
    assert_conserves(&fin);
    let seen = Seen {
        malformed_by_kind: fin.totals.malformed_by_kind.clone(),
        filtered: fin.totals.filtered,
        tx_sent: fin.totals.tx_sent,
        received,
        receiver_errors: errors(&c.dst) - errors_before,
    };
    (seen, fin)
}

/// Issue 19, item 2: on the fast path, malformed frames were forwarded and counted as sent
/// (matched = tx_sent = 100 per kind, malformed 0; the next hop dropped them), frames with
/// only an IP header or IP version 6 were counted nowhere, and QinQ frames were forwarded.
/// Now each lands in the kind userspace counts it in, on both paths, and none is sent.
///
/// Except one since issue 20: a frame too short for a UDP header (only an IP header) is not
/// one of the program's flows to it, which leaves it to the stack uncounted, and an input
/// whose rules all run in the kernel has no packet socket, so userspace does not see it
/// either. It is still never sent.
fn malformed_datagrams_are_counted_alike_on_both_paths_and_never_sent(mode: Attach) {
    if !e2e_allowed("malformed_datagrams_are_counted_alike_on_both_paths_and_never_sent") {
        return;
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut filtered = 0;
    let mut short_of_udp = 0;
    for s in spoils() {
        if s.what == "only an IP header" {
            short_of_udp += EACH;
        }
        eprintln!("{EACH} x {}: counted as {}", s.what, s.counted_as);
        if s.counted_as == "filtered" {
            filtered += EACH;
        } else {
            *expected.entry(s.counted_as.to_string()).or_default() += EACH;
        }
    }
    let want = Seen {
        malformed_by_kind: expected,
        filtered,
        tx_sent: 2 * EACH,
        received: (0..2 * EACH).collect(),
        receiver_errors: 0,
    };
    let malformed: u64 = want.malformed_by_kind.values().sum();
    let (userspace, _) = malformed_probe(OFF, malformed);
    assert_eq!(userspace, want, "userspace path (fast_path = \"off\")");
    let mut want_kernel = want.clone();
    want_kernel
        .malformed_by_kind
        .remove("bad_total_length")
        .filter(|n| *n == short_of_udp)
        .expect("only the frames short of a UDP header are bad_total_length");
    let (kernel, fin) = malformed_probe(&required(mode), malformed - short_of_udp);
    assert_eq!(fin.flows[0].path, "kernel");
    assert_eq!(
        kernel, want_kernel,
        "fast path, no packet socket on its input"
    );
    let fp = fin.fast_path.unwrap();
    assert_eq!(
        fp.counters.tx_sent,
        2 * EACH,
        "all sends were the program's"
    );
    assert_eq!(fp.counters.matched, 2 * EACH);
}

/// The program's time per packet, from the kernel's run statistics (`BPF_ENABLE_STATS`),
/// for datagrams from a UDP socket (a partial UDP checksum, trusted) and for raw frames with
/// a full UDP checksum (verified by the program, as userspace verifies them). Prints the
/// numbers; asserts only that the program ran for every packet. The tcx run names no hook
/// (tcx is this kernel's default), so that an older mcrd (`MCR_MEASURE_MCRD`) reads its config.
fn fast_path_cost_per_packet(mode: Attach) {
    if !e2e_allowed("fast_path_cost_per_packet") {
        return;
    }
    let c = chain(1, false);
    let dataplane = match mode {
        Attach::Tcx => REQUIRED.to_string(),
        Attach::Clsact => required(mode),
    };
    let cfg = relay_config(1, &dataplane, &chain_rule());
    let relay = start(&c.relays[0], &cfg);
    let id = c.relays[0].enter(|| {
        let ids = relay::fastpath::mcrd_programs_on(relay::netif::index("in0").unwrap()).unwrap();
        assert_eq!(ids.len(), 1, "one mcrd program on in0: {ids:?}");
        ids[0]
    });
    let _rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let stats_on = relay::fastpath::enable_run_stats().expect("BPF_ENABLE_STATS");
    let n = 20_000u64;
    let measure = |send: &dyn Fn()| {
        let (t0, r0) = relay::fastpath::program_run_stats(id).unwrap();
        send();
        std::thread::sleep(Duration::from_millis(200));
        let (t1, r1) = relay::fastpath::program_run_stats(id).unwrap();
        (t1 - t0, r1 - r0)
    };
    let tx = sender(&c.src, SRC_ADDR);
    let raw = raw_socket(&c.src, "out0");
    let mut lines = Vec::new();
    for len in [200usize, 1316] {
        let (ns, runs) =
            measure(&|| send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, len, 20_000));
        assert!(runs >= n, "{runs} runs for {n} datagrams");
        lines.push(format!(
            "UDP socket (partial checksum), {len} B: {:.0} ns/packet over {runs} runs",
            ns as f64 / runs as f64
        ));
        let f = frame(&payload(1, len), 4000);
        let (ns, runs) = measure(&|| {
            let start = Instant::now();
            for i in 0..n {
                let due = start + Duration::from_micros(i * 50);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                raw_send(&raw, &f);
            }
        });
        assert!(runs >= n, "{runs} runs for {n} frames");
        lines.push(format!(
            "raw frames (full checksum, verified), {len} B: {:.0} ns/packet over {runs} runs",
            ns as f64 / runs as f64
        ));
    }
    drop(stats_on);
    eprintln!(
        "fast path cost ({}):\n  {}",
        mode.name(),
        lines.join("\n  ")
    );
    relay.stop();
}

/// Issue 20, item 3: the program sums a datagram in software only when the kernel vouches
/// for nothing. A frame the kernel has summed (CHECKSUM_COMPLETE) is checked with that sum,
/// and a wrong checksum is still refused and counted. The frames are decapsulated VXLAN: the
/// relay's stack verifies the outer UDP checksum of a frame that arrived without offload,
/// keeps the sum (`__skb_checksum_complete`), and hands the inner frame to `vx0` as
/// CHECKSUM_COMPLETE (`vxlan_rcv`), where the fast path takes it. Prints the program's time
/// per frame (the software sum of 1316 bytes, which this saves, is a few hundred ns).
fn decapsulated_frames_are_checked_with_the_kernel_s_sum_and_bad_ones_still_refused(mode: Attach) {
    let test = "decapsulated_frames_are_checked_with_the_kernel_s_sum_and_bad_ones_still_refused";
    if !e2e_allowed(test) {
        return;
    }
    const VX_LEN: usize = 1316;
    let c = chain(1, false);
    let r = &c.relays[0];
    add_vxlan_input(r);
    let rule = chain_rule().replace("input = \"in0\"", "input = \"vx0\"");
    let relay = start(r, &relay_config(1, &required(mode), &rule));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let raw = raw_socket(&c.src, "out0");
    let (in0_mac, id) = r.enter(|| {
        let mac = relay::fastpath::resolve::link("in0").unwrap().mac;
        let ids = relay::fastpath::mcrd_programs_on(relay::netif::index("vx0").unwrap());
        (mac, ids.unwrap()[0])
    });
    let good = |i| frame(&payload(i, VX_LEN), 4000);
    let (time, runs) = send_good_and_bad_in_vxlan(&raw, in0_mac, id, EACH, good, UDP_CSUM);
    let got = drain(&rx, Duration::from_millis(500), 2 * EACH as usize);
    assert_eq!(check_payloads(&got, VX_LEN), (0..EACH).collect::<Vec<_>>());
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(fin.flows[0].path, "kernel");
    assert_eq!(
        fin.totals.malformed_by_kind.get("bad_udp_checksum"),
        Some(&EACH),
        "{:?}",
        fin.totals.malformed_by_kind
    );
    let fp = fin.fast_path.unwrap();
    assert_eq!((fp.counters.matched, fp.counters.tx_sent), (EACH, EACH));
    assert!(runs >= 2 * EACH, "{runs} runs for {} frames", 2 * EACH);
    eprintln!(
        "decapsulated {VX_LEN}-byte datagrams (CHECKSUM_COMPLETE): {:.0} ns/frame in the program over {runs} runs",
        time as f64 / runs as f64
    );
}

/// Issue 19, item 3: a second mcrd with `fast_path = "auto"` on the same input had its tcx
/// attach refused, warned, and forwarded the flow in userspace as well (10,000 sent, 20,006
/// received). Now its rule stands by (path `waiting`, excluded from its packet filter), it
/// says why (the interface, the other program and its pid), and it takes the flow over once
/// the first daemon stops: each datagram arrives once throughout.
fn a_second_daemon_on_a_taken_input_stands_by_and_never_doubles_the_flow(mode: Attach) {
    if !e2e_allowed("a_second_daemon_on_a_taken_input_stands_by_and_never_doubles_the_flow") {
        return;
    }
    let c = chain(1, false);
    let first = start(
        &c.relays[0],
        &relay_config(1, &required(mode), &chain_rule()),
    );
    let second = start(&c.relays[0], &relay_config(1, &auto(mode), &chain_rule()));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    let n = 1_000u64;
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, LEN, 5_000);
    expect_all(&rx, n, LEN, Duration::from_millis(400));
    let s = second.stats();
    assert_eq!(s.totals.tx_sent, 0, "the second daemon forwarded nothing");
    let first_pid = first.stats().relay.pid;
    let log = second.log_text();
    assert!(
        log.contains("interface in0 already has an mcrd fast path")
            && log.contains(&format!("held by pid {first_pid}"))
            && log.contains("stand by"),
        "the second daemon says why: {log}"
    );
    let (code, out, _) = second.mcrctl(&["rules", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("waiting"), "rules list: {out}");
    // The first goes: the second takes the input over within a few seconds.
    first.stop();
    wait_for(
        "the second daemon to take in0 over",
        Duration::from_secs(5),
        || second.stats().flows[0].path == "kernel",
    );
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), n, n, LEN, 5_000);
    let got = drain(&rx, Duration::from_millis(400), 2 * n as usize);
    assert_eq!(check_payloads(&got, LEN), (n..2 * n).collect::<Vec<_>>());
    let fin = second.stop();
    assert_conserves(&fin);
    assert_eq!(fin.totals.tx_sent, n);
}

/// Creates the relay's `in0` again (deleted, with its veth peer `out0` in `src`) under index
/// `index`, addressed and up as `chain` made it.
fn recreate_input_same_index(c: &Chain, index: u32) {
    let relay = &c.relays[0];
    relay.ip(&[
        "link",
        "add",
        "in0",
        "index",
        &index.to_string(),
        "type",
        "veth",
        "peer",
        "name",
        "out0",
        "netns",
        &c.src.name,
    ]);
    relay.ip(&["addr", "add", "10.0.0.2/24", "dev", "in0"]);
    c.src
        .ip(&["addr", "add", &format!("{SRC_ADDR}/24"), "dev", "out0"]);
    for (ns, ifname) in [(relay, "in0"), (&c.src, "out0")] {
        ns.ip(&["link", "set", ifname, "up"]);
        let _ = ns
            .command("ethtool")
            .args(["-K", ifname, "tx-udp-segmentation", "off"])
            .output();
    }
    c.src.ip(&["route", "add", "224.0.0.0/4", "dev", "out0"]);
}

/// What `mcrctl rules list` prints.
fn listed(relay: &Relay) -> String {
    let (code, out, err) = relay.mcrctl(&["rules", "list"]);
    assert_eq!(code, 0, "{err}");
    out
}

/// Issue 19, item 1: an input deleted and created again under the same index stopped
/// forwarding in silence on both paths (frames arrived, rx stayed 0, `interface_changes` 0,
/// `rules list` still said `[kernel]`, a reload did not recover). Now link events are
/// followed: while the input is gone its rule is listed as waiting, and once it is back the
/// packet sockets are re-opened, the program attached again, the group joined again, and
/// `interface_changes` counts it.
fn input_recreated_under_the_same_index(dataplane: &str, path: &str) {
    let c = chain(1, false);
    let relay = start(&c.relays[0], &relay_config(1, dataplane, &chain_rule()));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let n = 300u64;
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, LEN, 5_000);
    expect_all(&rx, n, LEN, Duration::from_millis(300));
    assert_eq!(relay.stats().flows[0].path, path);
    let index = c.relays[0].enter(|| relay::netif::index("in0").unwrap());

    // Gone: the rule says so.
    c.relays[0].ip(&["link", "del", "in0"]);
    wait_for(
        "rules list to show the rule waiting",
        Duration::from_secs(5),
        || {
            let out = listed(&relay);
            out.contains("waiting") && out.contains("in0 was deleted")
        },
    );
    // Back, under the same index.
    recreate_input_same_index(&c, index);
    assert_eq!(
        c.relays[0].enter(|| relay::netif::index("in0").unwrap()),
        index,
        "created again under the same index"
    );
    wait_for(
        "interface_changes to count it",
        Duration::from_secs(5),
        || relay.stats().relay.interface_changes == 1,
    );
    wait_for("the rule's path to be back", Duration::from_secs(5), || {
        relay.stats().flows[0].path == path
    });
    let joined = c.relays[0]
        .command("ip")
        .args(["maddr", "show", "dev", "in0"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&joined.stdout).contains(&GROUP.to_string()),
        "the group joined again on the new in0: {}",
        String::from_utf8_lossy(&joined.stdout)
    );
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), n, n, LEN, 5_000);
    let got = drain(&rx, Duration::from_millis(400), 2 * n as usize);
    assert_eq!(check_payloads(&got, LEN), (n..2 * n).collect::<Vec<_>>());

    // Deleted and created again at once (one burst of events: the table never shows it
    // gone; the sockets, the link and the membership must still be renewed).
    c.relays[0].ip(&["link", "del", "in0"]);
    recreate_input_same_index(&c, index);
    wait_for(
        "interface_changes to count it",
        Duration::from_secs(5),
        || relay.stats().relay.interface_changes == 2,
    );
    wait_for("the rule's path to be back", Duration::from_secs(5), || {
        relay.stats().flows[0].path == path
    });
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 2 * n, n, LEN, 5_000);
    let got = drain(&rx, Duration::from_millis(400), 2 * n as usize);
    assert_eq!(
        check_payloads(&got, LEN),
        (2 * n..3 * n).collect::<Vec<_>>()
    );
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(fin.totals.tx_sent, 3 * n);
    assert_eq!(fin.relay.interface_changes, 2);
}

fn an_input_recreated_under_the_same_index_is_followed_on_the_fast_path(mode: Attach) {
    if !e2e_allowed("an_input_recreated_under_the_same_index_is_followed_on_the_fast_path") {
        return;
    }
    input_recreated_under_the_same_index(&required(mode), "kernel");
}

#[test]
fn an_input_recreated_under_the_same_index_is_followed_in_userspace() {
    if !e2e_allowed("an_input_recreated_under_the_same_index_is_followed_in_userspace") {
        return;
    }
    input_recreated_under_the_same_index(OFF, "userspace");
}

/// Issue 19, item 7 (path switch): a flow moved between the paths under traffic; every
/// datagram the relay forwards is counted once in `rx` and reaches the receiver once.
///
/// The flow `chain` is moved to userspace and back 10 times by reloads that add and remove a
/// rule sharing its input, group and port (`monitor = "mpegts"`, which runs in userspace, so
/// the flow must: one flow, one path), while 20,000 datagrams go at 5k pps.
///
/// Before the handover by receive timestamp (`fastpath/switch.rs`), both paths forwarded the
/// flow while the workers adopted a table: 20,078 received and counted for 20,000 sent.
fn a_flow_switching_paths_under_traffic_is_counted_once(mode: Attach) {
    if !e2e_allowed("a_flow_switching_paths_under_traffic_is_counted_once") {
        return;
    }
    switch_paths_under_traffic(&required(mode), 1);
}

/// The same with two workers: the packet fan-out splits the flow's frames between them (a
/// flow hashes to one of them, the switch's handover is in both tables).
#[test]
fn a_flow_switching_paths_under_traffic_with_two_workers_is_counted_once() {
    if !e2e_allowed("a_flow_switching_paths_under_traffic_with_two_workers_is_counted_once") {
        return;
    }
    switch_paths_under_traffic(REQUIRED, 2);
}

fn switch_paths_under_traffic(fast_path: &str, workers: u32) {
    let c = chain(1, false);
    let base = relay_config(workers, fast_path, &chain_rule());
    let blocker = format!(
        "{base}\n[[rule]]\nname = \"blocker\"\ninput = \"in0\"\ngroup = \"{GROUP}\"\nport = {PORT}\n\
         source = \"10.99.99.99\"\nmonitor = \"mpegts\"\n\
         outputs = [{{ dest = \"{GROUP}\", port = 6000, interface = \"out0\", ttl = 8 }}]\n"
    );
    let relay = start(&c.relays[0], &base);
    // The `[control]` section `start` appended, for each rewritten config.
    let written = std::fs::read_to_string(&relay.config).unwrap();
    let control = written[written.find("[control]").unwrap()..].to_string();
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let n = 20_000u64;
    let tx = sender(&c.src, SRC_ADDR);
    let got = std::thread::scope(|s| {
        let receiving = s.spawn(|| drain(&rx, Duration::from_millis(800), 3 * n as usize));
        let sending = s.spawn(|| send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, LEN, 5_000));
        for i in 0..20 {
            std::thread::sleep(Duration::from_millis(150));
            let text = if i % 2 == 0 { &blocker } else { &base };
            std::fs::write(&relay.config, format!("{text}\n\n{control}")).unwrap();
            let (code, out, err) = relay.mcrctl(&["config", "reload"]);
            assert_eq!(code, 0, "reload: {out}{err}");
        }
        sending.join().unwrap();
        receiving.join().unwrap()
    });
    let seqs = check_payloads(&got, LEN);
    let fin = relay.stop();
    assert_conserves(&fin);
    let chain = fin.flows.iter().find(|f| f.rule == "chain").unwrap();
    let mut distinct = seqs.clone();
    distinct.dedup();
    let twice = seqs.len() - distinct.len();
    let missing = (0..n)
        .filter(|i| distinct.binary_search(i).is_err())
        .count();
    let kernel_handed_over = fin.fast_path.as_ref().map_or(0, |f| f.counters.handed_over);
    eprintln!(
        "sent {n}, received {}, distinct {}, chain packets {}, totals rx {}, handed over by \
         the workers {}, by the program {kernel_handed_over}",
        seqs.len(),
        distinct.len(),
        chain.packets,
        fin.totals.rx,
        fin.totals.handed_over - kernel_handed_over,
    );
    assert_eq!((twice, missing), (0, 0), "datagrams received twice, never");
    assert_eq!(chain.packets, n, "counted once");
}
