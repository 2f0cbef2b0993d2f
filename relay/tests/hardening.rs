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

/// Finding 3: unpaced GSO super-frames overran the packet socket's receive queue behind the
/// copy path, and each super-frame of 46 datagrams was counted as one malformed datagram.
#[test]
fn copy_path_overload_is_counted_as_overload_in_datagrams() {
    if !e2e_allowed("copy_path_overload") {
        return;
    }
    // Offload on: each 46-datagram send crosses the veth as one super-frame.
    let c = chain(1, true);
    // Eight outputs, so that each frame the relay takes costs it real work.
    let outputs = (0..8)
        .map(|k| format!("{{ dest = \"239.1.2.{k}\", port = {PORT}, interface = \"out0\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let relay = Relay::start(
        &c.relays[0],
        // The copy path is the userspace path's.
        &relay_config(
            1,
            "fast_path = \"off\"",
            &rule("flood", GROUP, PORT, &outputs),
        ),
    );
    let sends = 300_000 / 46;
    // Overload made certain, not hoped for from relative speeds on a shared machine: the
    // relay is stopped while the senders run, so the receive queue behind its copy path
    // fills; it takes what was queued when it continues.
    relay.signal(libc::SIGSTOP);
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
    relay.signal(libc::SIGCONT);
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
        t.rx_overflow_frames + t.kernel_drop_frames > 0,
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
    let seen = t.rx_frames + t.kernel_drop_frames;
    assert!(
        seen <= arrived && arrived - seen <= 20,
        "frames that reached the relay's interface ({arrived}) vs taken or dropped by the kernel ({seen})"
    );
    // And in datagrams: each sent is taken, lost on the copy path or dropped at the ring
    // (`kernel_drops`, datagrams once settled), unless the link itself dropped its frame.
    let link_drops = c.relays[0].link_stat("in0", "rx_dropped");
    eprintln!(
        "sent {} datagrams: rx {}, rx_overflow {}, kernel_drops {} in {} frames ({} unsettled), \
         link rx_dropped {link_drops}",
        sends * 46,
        t.rx,
        t.rx_overflow,
        t.kernel_drops,
        t.kernel_drop_frames,
        t.kernel_drops_unsettled_frames
    );
    if link_drops == 0 && t.kernel_drops_unsettled_frames == 0 {
        assert_eq!(
            t.rx + t.rx_overflow + t.kernel_drops,
            sends * 46,
            "datagrams: taken + lost on the copy path + dropped at the ring: {t:?}"
        );
    }
}

/// Finding 5: ten empty datagrams went out as one (coalesced into a `UDP_SEGMENT` send) while
/// `tx_sent` said ten.
#[test]
fn empty_datagrams_each_leave_as_one_datagram() {
    if !e2e_allowed("empty_datagrams") {
        return;
    }
    let c = chain(1, false);
    // Send system calls are the userspace path's.
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, "fast_path = \"off\"", &chain_rule()),
    );
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
/// send was retried; the others in flight failed as `tx_errors`. (The kernel refuses it for
/// segments larger than the output's MTU, and on devices without checksum offload.)
#[test]
fn every_refused_gso_send_is_resent_without_gso() {
    if !e2e_allowed("gso_refused") {
        return;
    }
    // Offload on at the sender: each 46-datagram send arrives as one super-frame, so one
    // pass queues 46 datagrams and, 8 to a send, several GSO sends are in flight at once.
    let c = chain(1, true);
    // An output link with a smaller MTU than the datagrams: the kernel refuses a GSO send
    // whose segments do not fit it (EINVAL), while a datagram sent alone is fragmented.
    c.relays[0].ip(&["link", "set", "out0", "mtu", "800"]);
    c.dst.ip(&["link", "set", "in0", "mtu", "800"]);
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, "max_gso_segments = 8", &chain_rule()),
    );
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    set_udp_segment(&tx, 1000);
    let sends = 20u64;
    for s in 0..sends {
        send_gso(&tx, SocketAddrV4::new(GROUP, PORT), s * 46, 46, 1000);
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = sends * 46;
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
            // Eight outputs: the relay cannot keep up with the flood, whose ring stays full.
            &(0..8)
                .map(|k| format!("{{ dest = \"239.1.3.{k}\", port = {PORT}, interface = \"out0\" }}"))
                .collect::<Vec<_>>()
                .join(", ")
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
        // The userspace path's sends wait in its socket; the kernel path has none (its
        // redirected frames hold the sender's socket buffer instead).
        &relay_config(
            1,
            "socket_sndbuf = 65536\ngso = false\nfast_path = \"off\"",
            &chain_rule(),
        ),
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

/// An `AF_PACKET` socket in `ns` that captures the IPv4 packets arriving on `ifname`
/// (network layer on, no link header).
fn capture(ns: &Netns, ifname: &str) -> std::os::fd::OwnedFd {
    let ifname = ifname.to_string();
    ns.enter(move || {
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh socket we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let c = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
        assert!(ifindex > 0);
        // SAFETY: sockaddr_ll is plain old data; all-zero is valid before the fields we set.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binding with a valid sockaddr_ll of its own size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        // Room for every packet of a burst: the test reads only after it.
        let size: libc::c_int = 16 << 20;
        // SAFETY: setsockopt with an int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                4,
            )
        };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 300_000,
        };
        // SAFETY: setsockopt with a timeval.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        fd
    })
}

/// What a captured UDP packet's IP and UDP headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    tos: u8,
    dont_fragment: bool,
    src: SocketAddrV4,
    dst: SocketAddrV4,
}

/// Reads captured packets until the socket is quiet for its timeout; keeps UDP ones.
fn captured(fd: &std::os::fd::OwnedFd, max: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while out.len() < max {
        // SAFETY: recv into our buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            break;
        }
        let p = &buf[..n as usize];
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if p[9] != 17 || p.len() < ihl + 8 {
            continue;
        }
        let addr = |a: &[u8]| Ipv4Addr::new(a[0], a[1], a[2], a[3]);
        let port = |a: &[u8]| u16::from_be_bytes([a[0], a[1]]);
        out.push(Seen {
            tos: p[1],
            dont_fragment: p[6] & 0x40 != 0,
            src: SocketAddrV4::new(addr(&p[12..16]), port(&p[ihl..])),
            dst: SocketAddrV4::new(addr(&p[16..20]), port(&p[ihl + 2..])),
        });
    }
    out
}

/// Findings 16-18: DSCP was cleared (EF in, 0 out), the source port was random and could not
/// be chosen, and DF was set on single sends but not on GSO-coalesced ones. Now the received
/// DSCP/ECN is kept unless an output sets its own DSCP, an output may name its source address
/// and port, and DF is never set.
#[test]
fn outputs_keep_or_set_dscp_name_their_source_and_never_set_df() {
    if !e2e_allowed("dscp_source_df") {
        return;
    }
    let c = chain(1, false);
    let dst = c.dst_addr();
    let relay_addr = Ipv4Addr::new(10, 0, 1, 1);
    let outputs = format!(
        "{{ dest = \"{GROUP}\", port = {PORT}, interface = \"out0\" }}, \
         {{ dest = \"{dst}\", port = 7000, interface = \"out0\", dscp = 10, source = \"{relay_addr}\", source_port = 6500 }}"
    );
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, "", &rule("qos", GROUP, PORT, &outputs)),
    );
    // Resolve the unicast receiver's address first: the kernel queues only a few datagrams
    // for a neighbour it is still resolving (`unres_qlen`), and this test is not about that.
    pin_neighbour(&c.relays[0], "out0", &c.dst, "in0", &dst.to_string());
    // A listener, so the unicast receiver answers with no ICMP port unreachable.
    let _listener = receiver(&c.dst, dst, 7000, dst);
    let cap = capture(&c.dst, "in0");
    let tx = sender(&c.src, SRC_ADDR);
    // EF with ECT(1): DSCP 46, ECN 1.
    socket2::SockRef::from(&tx).set_tos_v4(0xb9).unwrap();
    // Paced ones go out one by one; the back-to-back burst is coalesced into GSO sends.
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 20, 1000, 200);
    for i in 20..220 {
        tx.send_to(&payload(i, 1000), SocketAddrV4::new(GROUP, PORT))
            .unwrap();
    }
    let seen = captured(&cap, 1000);
    let fin = relay.stop();
    assert_conserves(&fin);
    assert!(
        fin.totals.tx_syscalls < fin.totals.tx_sent,
        "some sends were coalesced"
    );
    let to_group: Vec<_> = seen.iter().filter(|s| *s.dst.ip() == GROUP).collect();
    let to_unicast: Vec<_> = seen
        .iter()
        .filter(|s| s.dst == SocketAddrV4::new(dst, 7000))
        .collect();
    assert_eq!(
        (to_group.len(), to_unicast.len()),
        (220, 220),
        "captured; relay: {:?}",
        fin.flows[0].outputs
    );
    assert!(to_group.iter().all(|s| s.tos == 0xb9), "DSCP and ECN kept");
    assert!(
        to_unicast.iter().all(|s| s.tos == (10 << 2 | 1)),
        "the output's DSCP, the received ECN"
    );
    assert!(to_unicast
        .iter()
        .all(|s| s.src == SocketAddrV4::new(relay_addr, 6500)));
    assert!(seen.iter().all(|s| !s.dont_fragment), "DF never set");
}

/// Finding 4: egress sockets were shared by outputs, with `IP_RECVERR`: an ICMP port
/// unreachable from one dead unicast receiver failed the next send of another flow
/// (ECONNREFUSED, charged to the wrong output). And output sockets never read their receive
/// queue, so a receiver that answered filled it.
#[test]
fn a_dead_unicast_receiver_costs_no_other_output_a_datagram() {
    if !e2e_allowed("icmp_isolation") {
        return;
    }
    let c = chain(1, false);
    let dst = c.dst_addr();
    let relay_addr = Ipv4Addr::new(10, 0, 1, 1);
    let dead = format!("{{ dest = \"{dst}\", port = 7000, interface = \"out0\" }}");
    let alive =
        format!("{{ dest = \"{dst}\", port = 7001, interface = \"out0\", source_port = 6501 }}");
    let g2 = Ipv4Addr::new(239, 1, 1, 2);
    let rules = format!(
        "{}{}",
        rule("dead", GROUP, PORT, &dead),
        rule("alive", g2, PORT, &alive)
    );
    // ICMP errors reach the userspace path's sockets (the kernel path sends from none).
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, "fast_path = \"off\"", &rules),
    );
    let rx = receiver(&c.dst, dst, 7001, dst);
    let tx = sender(&c.src, SRC_ADDR);
    // The live receiver answers every datagram, to the relay's source port.
    let answer = c
        .dst
        .enter(|| UdpSocket::bind(SocketAddrV4::new(dst, 0)).unwrap());
    let n = 3000u64;
    for i in 0..n {
        tx.send_to(&payload(i, 500), SocketAddrV4::new(GROUP, PORT))
            .unwrap();
        tx.send_to(&payload(i, 500), SocketAddrV4::new(g2, PORT))
            .unwrap();
        let _ = answer.send_to(b"ack", SocketAddrV4::new(relay_addr, 6501));
        std::thread::sleep(Duration::from_micros(300));
    }
    let got = drain(&rx, Duration::from_millis(500), n as usize + 10);
    // Nothing queued for reading on the relay's sockets (/proc/net/udp: rx_queue, in hex).
    let udp = c.relays[0]
        .command("cat")
        .arg("/proc/net/udp")
        .output()
        .unwrap();
    let udp = String::from_utf8_lossy(&udp.stdout).to_string();
    let fin = relay.stop();
    assert_conserves(&fin);
    let out = |rule: &str| fin.flows.iter().find(|f| f.rule == rule).unwrap().outputs[0].clone();
    let (dead, alive) = (out("dead"), out("alive"));
    assert_eq!(
        alive.tx_errors, 0,
        "the live output lost nothing: {alive:?}"
    );
    assert_eq!(alive.tx_sent, n);
    assert_eq!(got.len() as u64 + udp_rcvbuf_errors(&c.dst), n);
    assert!(
        fin.totals
            .tx_errors_by_errno
            .get("ECONNREFUSED")
            .is_some_and(|&e| e == dead.tx_errors && e > 0),
        "the dead receiver's errors are its own: {dead:?} {:?}",
        fin.totals.tx_errors_by_errno
    );
    // The socket the receiver answered (its error queue, which the dead output's socket holds
    // between drains, counts in rx_queue too, so only this one is checked).
    let answered = format!(":{:04X}", 6501);
    let mut checked = 0;
    for line in udp.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields[1].ends_with(&answered) {
            continue;
        }
        checked += 1;
        let queues = fields[4];
        let rx_queue = u64::from_str_radix(queues.split(':').nth(1).unwrap(), 16).unwrap();
        assert_eq!(rx_queue, 0, "a relay socket queued input: {line}");
    }
    assert_eq!(checked, 1, "the relay's socket on port 6501:\n{udp}");
}

/// Finding 20: an interface deleted and created again (a VLAN interface re-made, a link reset)
/// stayed dead until a reload. Now mcrd follows link events and re-opens what the rules name.
#[test]
fn interfaces_deleted_and_recreated_are_followed_without_a_reload() {
    if !e2e_allowed("recreated_interfaces") {
        return;
    }
    let c = chain(1, false);
    let relay = Relay::start(&c.relays[0], &relay_config(1, "", &chain_rule()));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 200, 500, 2_000);
    expect_all(&rx, 200, 500, Duration::from_millis(300));
    drop(rx);
    // Both of the relay's links are deleted and made again: new interfaces, new indices.
    c.relays[0].ip(&["link", "del", "in0"]);
    c.relays[0].ip(&["link", "del", "out0"]);
    veth(
        &c.src,
        "out0",
        &format!("{SRC_ADDR}/24"),
        &c.relays[0],
        "in0",
        "10.0.0.2/24",
        false,
    );
    veth(
        &c.relays[0],
        "out0",
        "10.0.1.1/24",
        &c.dst,
        "in0",
        "10.0.1.2/24",
        false,
    );
    c.src
        .ip(&["route", "replace", "224.0.0.0/4", "dev", "out0"]);
    c.relays[0].sysctl("net.ipv4.conf.in0.rp_filter", "1");
    wait_for(
        "the relay to re-resolve its interfaces",
        Duration::from_secs(5),
        || relay.stats().relay.interface_changes > 0,
    );
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 500, 500, 2_000);
    expect_all(&rx, 500, 500, Duration::from_millis(500));
    let fin = relay.stop();
    assert_conserves(&fin);
    assert!(fin.relay.interface_changes >= 1);
}
