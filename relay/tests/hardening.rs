//! End-to-end regression tests of the packet path's failure behaviour, in real namespaces:
//! overload on the copy path, empty datagrams, refused segmentation, fairness between inputs,
//! ICMP errors from a dead receiver, and what real clients need from the output (DSCP,
//! source port, DF). Each test names the finding it guards (relay/README.md, "Failure
//! behaviour").

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;

/// Sends one `UDP_SEGMENT` send of `segments` datagrams of `size` bytes each, numbered from
/// `first`.
fn send_gso(tx: &UdpSocket, dest: SocketAddrV4, first: u64, segments: u64, size: usize) {
    let mut buf = Vec::with_capacity(segments as usize * size);
    for i in 0..segments {
        buf.extend_from_slice(&payload(first + i, size));
    }
    let _ = tx.send_to(&buf, dest);
}

/// Turns on `UDP_SEGMENT` with `size`-byte segments for every send on `tx`.
fn set_udp_segment(tx: &UdpSocket, size: libc::c_int) {
    // SAFETY: setsockopt(UDP_SEGMENT) with an int on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&size as *const libc::c_int).cast(),
            4,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
}

/// Finding 3: unpaced GSO super-frames overran the packet socket's receive queue behind the
/// copy path, and each super-frame of 46 datagrams was counted as one malformed datagram.
#[test]
fn copy_path_overload_is_counted_as_overload_in_datagrams() {
    if !e2e_allowed("copy_path_overload") {
        return;
    }
    // Offload on: each 46-datagram send crosses the veth as one super-frame.
    let c = chain(1, true);
    // Eight outputs make the relay slower per datagram than two unpaced senders.
    let outputs = (0..8)
        .map(|k| format!("{{ dest = \"239.1.2.{k}\", port = {PORT}, interface = \"out0\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, "", &rule("flood", GROUP, PORT, &outputs)),
    );
    let sends = 300_000 / 46;
    let senders: Vec<_> = (0..2)
        .map(|k| {
            let tx = sender(&c.src, SRC_ADDR);
            set_udp_segment(&tx, 1400);
            std::thread::spawn(move || {
                for s in 0..sends {
                    send_gso(
                        &tx,
                        SocketAddrV4::new(GROUP, PORT),
                        (k * sends + s) * 46,
                        46,
                        1400,
                    );
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let sends = 2 * sends;
    std::thread::sleep(Duration::from_millis(300));
    let fin = relay.stop();
    let t = &fin.totals;
    assert_conserves(&fin);
    assert_eq!(
        t.malformed, 0,
        "overload must not be counted as malformed input: {:?}",
        t.malformed_by_kind
    );
    assert!(
        t.rx_overflow_frames + t.kernel_drops > 0,
        "the unpaced sender should overrun the relay ({} of {} datagrams taken)",
        t.rx,
        sends * 46
    );
    // Every frame carried 46 datagrams: those taken in and those lost to overload add up to
    // exactly the frames taken off the ring.
    assert_eq!(
        t.rx + t.rx_overflow,
        46 * t.rx_frames,
        "datagrams of the frames taken: rx {} + overflow {} ({} frames) vs {} frames",
        t.rx,
        t.rx_overflow,
        t.rx_overflow_frames,
        t.rx_frames
    );
    // The interface also received a few frames no rule wants (IGMP, IPv6 neighbour
    // discovery), which the packet filter drops uncounted.
    let arrived = c.relays[0].link_stat("in0", "rx_packets");
    let seen = t.rx_frames + t.kernel_drops;
    assert!(
        seen <= arrived && arrived - seen <= 20,
        "frames that reached the relay's interface ({arrived}) vs taken or dropped by the kernel ({seen})"
    );
}

/// Finding 5: ten empty datagrams went out as one (coalesced into a `UDP_SEGMENT` send) while
/// `tx_sent` said ten.
#[test]
fn empty_datagrams_each_leave_as_one_datagram() {
    if !e2e_allowed("empty_datagrams") {
        return;
    }
    let c = chain(1, false);
    let relay = Relay::start(&c.relays[0], &relay_config(1, "", &chain_rule()));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    // Sent back to back, so the relay takes them in one batch.
    for _ in 0..10 {
        tx.send_to(&[], SocketAddrV4::new(GROUP, PORT)).unwrap();
    }
    let got = drain(&rx, Duration::from_millis(500), 100);
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(got.len(), 10, "datagrams on the wire");
    assert!(got.iter().all(|p| p.is_empty()));
    assert_eq!(fin.totals.tx_sent, 10);
    assert_eq!(fin.totals.tx_syscalls, 10, "one send per empty datagram");
}

/// Finding 13: when the kernel refused `UDP_SEGMENT` on an interface, only the first refused
/// send was retried; the others in flight failed as `tx_errors`.
#[test]
fn every_refused_gso_send_is_resent_without_gso() {
    if !e2e_allowed("gso_refused") {
        return;
    }
    let c = chain(1, false);
    // No transmit checksum offload on the output: the kernel refuses UDP_SEGMENT there (EIO).
    let out = c.relays[0]
        .command("ethtool")
        .args(["-K", "out0", "tx", "off"])
        .output()
        .expect("ethtool");
    assert!(out.status.success(), "ethtool -K out0 tx off failed");
    let relay = Relay::start(&c.relays[0], &relay_config(1, "", &chain_rule()));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    // Bursts of 400 back to back: each batch becomes several GSO sends in flight at once.
    let (bursts, per_burst) = (10u64, 400u64);
    for b in 0..bursts {
        for i in 0..per_burst {
            tx.send_to(
                &payload(b * per_burst + i, 1000),
                SocketAddrV4::new(GROUP, PORT),
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = bursts * per_burst;
    let got = drain(&rx, Duration::from_millis(500), n as usize + 10);
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(
        fin.totals.tx_errors, 0,
        "{:?}",
        fin.totals.tx_errors_by_errno
    );
    assert_eq!(fin.totals.matched, n);
    assert_eq!(fin.totals.tx_sent + fin.totals.buf_exhaust, n);
    assert_eq!(
        got.len() as u64 + udp_rcvbuf_errors(&c.dst),
        fin.totals.tx_sent
    );
    check_payloads(&got, 1000);
}

/// Finding 12: one worker served its inputs in a fixed order with one shared budget, so a
/// flood on the first input starved the second.
#[test]
fn a_flooded_input_does_not_starve_another() {
    if !e2e_allowed("fair_inputs") {
        return;
    }
    let src = Netns::new("fsrc");
    let relay_ns = Netns::new("frly");
    let dst = Netns::new("fdst");
    // Created first, so the flooded input has the lower interface index.
    veth(
        &src,
        "out0",
        "10.98.0.1/24",
        &relay_ns,
        "in0",
        "10.98.0.2/24",
        false,
    );
    veth(
        &src,
        "out1",
        "10.98.1.1/24",
        &relay_ns,
        "in1",
        "10.98.1.2/24",
        false,
    );
    veth(
        &relay_ns,
        "out0",
        "10.98.2.1/24",
        &dst,
        "in0",
        "10.98.2.2/24",
        false,
    );
    let quiet_group = Ipv4Addr::new(239, 1, 1, 9);
    let rules = format!(
        "{}[[rule]]\nname = \"quiet\"\ninput = \"in1\"\ngroup = \"{quiet_group}\"\nport = {PORT}\noutputs = [{{ dest = \"{quiet_group}\", port = {PORT}, interface = \"out0\" }}]\n",
        rule(
            "flood",
            GROUP,
            PORT,
            &format!("{{ dest = \"{GROUP}\", port = {PORT}, interface = \"out0\" }}")
        )
    );
    // A small ring: starvation shows as kernel drops on the quiet input within moments.
    let relay = Relay::start(&relay_ns, &relay_config(1, "ring_frames = 512", &rules));
    let rx = receiver(&dst, quiet_group, PORT, Ipv4Addr::new(10, 98, 2, 2));
    let flood_tx = src.enter(|| {
        let s = UdpSocket::bind("10.98.0.1:0").unwrap();
        socket2::SockRef::from(&s)
            .set_multicast_if_v4(&Ipv4Addr::new(10, 98, 0, 1))
            .unwrap();
        s
    });
    let quiet_tx = src.enter(|| {
        let s = UdpSocket::bind("10.98.1.1:0").unwrap();
        socket2::SockRef::from(&s)
            .set_multicast_if_v4(&Ipv4Addr::new(10, 98, 1, 1))
            .unwrap();
        s
    });
    let flood = std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(2);
        let mut i = 0u64;
        while std::time::Instant::now() < until && i < 2_000_000 {
            let _ = flood_tx.send_to(&payload(i, 1200), SocketAddrV4::new(GROUP, PORT));
            i += 1;
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let n = 2000;
    send_paced(
        &quiet_tx,
        SocketAddrV4::new(quiet_group, PORT),
        0,
        n,
        200,
        2_000,
    );
    flood.join().unwrap();
    let got = drain(&rx, Duration::from_millis(500), n as usize + 10);
    let fin = relay.stop();
    assert_conserves(&fin);
    let quiet = fin.flows.iter().find(|f| f.rule == "quiet").unwrap();
    assert_eq!(
        quiet.packets, n,
        "the quiet input's datagrams all reached the relay"
    );
    // Past the input, the quiet flow shares the output with the flood: what it loses there is
    // counted at the egress, and the rest is delivered.
    let out = &quiet.outputs[0];
    assert_eq!(out.tx_sent + out.buf_exhaust + out.tx_errors, n);
    assert_eq!(got.len() as u64 + udp_rcvbuf_errors(&dst), out.tx_sent);
}

/// Finding 8: `cpus = [1024]` passed `config check`, then the worker panicked in `CPU_SET`
/// (one worker: mcrd reported success with no worker; two: it hung). Now both the check and
/// the daemon refuse it, promptly and naming the key.
#[test]
fn a_cpu_the_machine_cannot_give_is_refused_at_start() {
    if !e2e_allowed("bad_cpus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cpus.toml");
    for cpus in ["[1024]", "[0, 1024]"] {
        let workers = cpus.matches(',').count() + 1;
        std::fs::write(
            &path,
            format!(
                "[control]\nsocket = \"{}\"\n[dataplane]\nworkers = {workers}\ncpus = {cpus}\n\n{}",
                dir.path().join("s").display(),
                "[[rule]]\ninput = \"lo\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [{ dest = \"239.2.2.2\", port = 1, interface = \"lo\" }]\n"
            ),
        )
        .unwrap();
        let check = std::process::Command::new(env!("CARGO_BIN_EXE_mcrctl"))
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            check.status.code(),
            Some(1),
            "config check of cpus = {cpus}"
        );
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mcrd"))
            .arg("--config")
            .arg(&path)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut waited = Duration::ZERO;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if waited > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mcrd with cpus = {cpus} neither started nor stopped in 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
            waited += Duration::from_millis(50);
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(1), "cpus = {cpus}: {err}");
        assert!(
            err.contains("dataplane.cpus") && err.contains("CPU 1024"),
            "{err}"
        );
    }
}

/// Finding 11: at shutdown, when sends were still waiting after the 2 s drain, the buffer
/// pool and send slots were freed under them. Now they are cancelled and reaped first: the
/// final report has nothing in flight, and the cancelled sends are counted as errors.
#[test]
fn shutdown_cancels_sends_that_cannot_drain_before_freeing_their_buffers() {
    if !e2e_allowed("shutdown_stuck_sends") {
        return;
    }
    let c = chain(1, false);
    // The output drains at 8 kbit/s into a queue that holds everything, so the relay's small
    // socket buffer stays full and its sends wait in the kernel.
    let tc = c.relays[0]
        .command("tc")
        .args([
            "qdisc",
            "add",
            "dev",
            "out0",
            "root",
            "tbf",
            "rate",
            "8kbit",
            "burst",
            "1600",
            "limit",
            "100000000",
        ])
        .output()
        .expect("tc");
    assert!(
        tc.status.success(),
        "tc tbf: {}",
        String::from_utf8_lossy(&tc.stderr)
    );
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, "socket_sndbuf = 65536\ngso = false", &chain_rule()),
    );
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 3000, 1400, 20_000);
    std::thread::sleep(Duration::from_millis(300));
    let live = relay.stats();
    assert!(
        live.totals.in_flight > 0,
        "sends should be waiting for socket buffer space: {:?}",
        live.totals
    );
    let started = std::time::Instant::now();
    let fin = relay.stop();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_conserves(&fin);
    assert_eq!(
        fin.totals.in_flight, 0,
        "nothing may be left in flight: {:?}",
        fin.totals
    );
    assert!(
        fin.totals
            .tx_errors_by_errno
            .get("ECANCELED")
            .copied()
            .unwrap_or(0)
            > 0,
        "{:?}",
        fin.totals.tx_errors_by_errno
    );
    assert_eq!(
        fin.totals.tx_sent + fin.totals.tx_errors + fin.totals.buf_exhaust,
        fin.totals.matched
    );
}
