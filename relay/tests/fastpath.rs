//! End-to-end tests of the kernel fast path (`[dataplane] fast_path`) in real namespaces.
//!
//! Same topology as `e2e.rs` (`chain(n)`). The generator's veth computes full checksums
//! (`ethtool -K out0 tx off`): veth otherwise carries a partial UDP checksum that receivers
//! trust, and a checksum the program got wrong would go unnoticed. Frames are also captured
//! at the sink and checked field by field (MACs, TTL, addresses, both checksums, payload).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::*;

const REQUIRED: &str = "fast_path = \"required\"";

// Each of these runs once per hook (tcx and clsact): `NAME::tcx`, `NAME::clsact`.
on_each_hook!(
    a_unicast_output_follows_a_policy_rule_to_its_gateway,
    a_stale_neighbour_is_confirmed_and_a_failed_one_is_not_used,
    an_input_has_packet_sockets_only_while_a_rule_on_it_runs_in_userspace,
    a_flow_moving_between_the_paths_under_traffic_loses_no_datagram,
    one_hop_in_the_kernel_with_headers_and_checksums_right,
    fan_out_one_to_three_in_the_kernel,
    three_hops_in_the_kernel,
    multicast_to_unicast_moves_to_the_kernel_once_the_neighbour_is_known,
    a_second_daemon_on_the_same_interface_is_refused_the_fast_path,
    replacing_a_rule_under_traffic_never_mixes_output_sets,
    both_paths_conserve_side_by_side_and_fragments_reach_userspace,
    reload_moves_rules_in_and_out_of_the_kernel,
    an_output_mtu_too_small_is_counted_as_an_error,
    gso_super_frames_are_forwarded_whole_and_counted_per_datagram,
    runs_as_the_packaged_unit_does_with_net_raw_bpf_and_net_admin_only,
    vlan_tagged_input_goes_out_untagged_and_ip_options_go_to_userspace,
    rtp_monitoring_in_the_kernel_counts_exactly_what_userspace_counts,
    kernel_hops_localize_rtp_loss_to_the_link_before_the_first_hop_with_gaps,
    a_monitored_flow_moving_between_paths_shows_no_false_gap,
    datagrams_below_the_rule_s_min_ttl_are_counted_not_forwarded_in_the_kernel,
);

/// A chain whose generator sends full checksums.
fn chain_full_checksums(hops: usize, gso: bool) -> Chain {
    let c = chain(hops, gso);
    let out = c
        .src
        .command("ethtool")
        .args(["-K", "out0", "tx", "off"])
        .output()
        .expect("ethtool");
    assert!(out.status.success(), "ethtool -K out0 tx off failed");
    c
}

/// MAC address of `ifname` in `ns`.
fn mac_of(ns: &Netns, ifname: &str) -> [u8; 6] {
    ns.enter(|| relay::fastpath::resolve::link(ifname).unwrap().mac)
}

/// A packet socket capturing every frame arriving on `ifname` in `ns`.
fn capture(ns: &Netns, ifname: &str) -> OwnedFd {
    ns.enter(|| {
        let idx = relay::netif::index(ifname).unwrap();
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the descriptor is owned right after.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size: libc::c_int = 32 << 20;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: sockaddr_ll is plain data; setsockopt/bind get valid pointers and sizes.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                4,
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = idx as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        }
        fd
    })
}

/// What a forwarded frame must look like.
struct Expect {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
    ttl: u8,
    len: usize,
    /// The TOS byte (DSCP and ECN), when the test knows it.
    tos: Option<u8>,
    /// The UDP source port, when the test knows it.
    sport: Option<u16>,
}

fn ones_complement_sum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Reads captured frames until quiet for `idle`; checks every UDP frame to `e.port` and
/// returns the sequence numbers of their payloads.
fn captured(fd: &OwnedFd, e: &Expect, idle: Duration) -> Vec<u64> {
    let mut buf = vec![0u8; 65536];
    let mut seqs = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < idle {
        // SAFETY: recv into a buffer we own, of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let f = &buf[..n as usize];
        if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
            continue;
        }
        if u16::from_be_bytes([f[36], f[37]]) != e.port {
            continue;
        }
        last = Instant::now();
        let ip = &f[14..34];
        assert_eq!(ip[0], 0x45, "IPv4 without options");
        assert_eq!(ones_complement_sum(ip, 0), 0xffff, "IP header checksum");
        assert_eq!(f[0..6], e.dst_mac, "destination MAC");
        assert_eq!(f[6..12], e.src_mac, "source MAC");
        assert_eq!(ip[8], e.ttl, "TTL");
        if let Some(tos) = e.tos {
            assert_eq!(ip[1], tos, "TOS (DSCP, ECN)");
        }
        if let Some(sport) = e.sport {
            assert_eq!(u16::from_be_bytes([f[34], f[35]]), sport, "UDP source port");
        }
        assert_eq!(ip[12..16], e.src.octets(), "source address");
        assert_eq!(ip[16..20], e.dst.octets(), "destination address");
        let udp_len = usize::from(u16::from_be_bytes([f[38], f[39]]));
        let udp = &f[34..34 + udp_len];
        if udp[6..8] != [0, 0] {
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&ip[12..20]);
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
            let sum = ones_complement_sum(&pseudo, 0);
            assert_eq!(
                ones_complement_sum(udp, u32::from(sum)),
                0xffff,
                "UDP checksum"
            );
        }
        let body = &udp[8..];
        assert_eq!(body.len(), e.len, "payload length");
        let seq = u64::from_be_bytes(body[..8].try_into().unwrap());
        assert!(body == payload(seq, e.len), "payload of {seq} changed");
        seqs.push(seq);
    }
    seqs.sort_unstable();
    seqs
}

/// Reads and drops captured frames until quiet for `idle`.
fn discard(fd: &OwnedFd, idle: Duration) {
    let mut buf = vec![0u8; 65536];
    let mut last = Instant::now();
    while last.elapsed() < idle {
        // SAFETY: recv into a buffer we own, of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            last = Instant::now();
        }
    }
}

fn kernel_flow(r: &relay::stats::report::StatsReport, rule: &str) -> bool {
    r.flows.iter().any(|f| {
        f.rule == rule && f.path == "kernel" && f.outputs.iter().all(|o| o.path == "kernel")
    })
}

fn one_hop_in_the_kernel_with_headers_and_checksums_right(mode: Attach) {
    if !e2e_allowed("fastpath_one_hop") {
        return;
    }
    let c = chain_full_checksums(1, false);
    // Every header field the program writes differs from the input's (sender TTL 8, port 5000).
    let out_group = Ipv4Addr::new(239, 2, 3, 4);
    let outputs =
        format!("{{ dest = \"{out_group}\", port = 6000, interface = \"out0\", ttl = 5, dscp = 46, source_port = 4321 }}");
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, &required(mode), &rule("chain", GROUP, PORT, &outputs)),
    );
    let rx = receiver(&c.dst, out_group, 6000, c.dst_addr());
    let cap = capture(&c.dst, "in0");
    let tx = sender(&c.src, SRC_ADDR);
    socket2::SockRef::from(&tx).set_tos_v4(0x02).unwrap();
    let n = 3000;
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, 1400, 10_000);
    expect_all(&rx, n, 1400, Duration::from_millis(500));
    let expect = Expect {
        dst_mac: [0x01, 0x00, 0x5e, 0x02, 0x03, 0x04],
        src_mac: mac_of(&c.relays[0], "out0"),
        src: Ipv4Addr::new(10, 0, 1, 1),
        dst: out_group,
        port: 6000,
        ttl: 5,
        len: 1400,
        tos: Some((46 << 2) | 0x02),
        sport: Some(4321),
    };
    assert_eq!(
        captured(&cap, &expect, Duration::from_millis(300)),
        (0..n).collect::<Vec<_>>()
    );
    assert_eq!(snmp(&c.dst, "Udp:", "InCsumErrors"), 0);
    assert_eq!(snmp(&c.dst, "Ip:", "InHdrErrors"), 0);
    let live = relay.stats();
    assert_conserves(&live);
    assert!(kernel_flow(&live, "chain"), "{:?}", live.flows);
    let fp = live.fast_path.as_ref().unwrap();
    assert_eq!(fp.interfaces, ["in0"]);
    assert_eq!(fp.attach, mode.name());
    assert!(fp.missing_features.is_empty(), "{fp:?}");
    let (code, list, _) = relay.mcrctl(&["rules", "list"]);
    assert_eq!(code, 0);
    assert!(
        list.contains(&format!("[kernel: {} ingress]", mode.name())),
        "{list}"
    );
    let (code, human, _) = relay.mcrctl(&["stats"]);
    assert_eq!(code, 0);
    assert!(
        human.contains(&format!(
            "fast path: program {} ({} ingress) attached to in0",
            fp.program_id,
            mode.name()
        )),
        "{human}"
    );
    assert!(
        relay
            .log_text()
            .contains(&format!("fast path attached ({} ingress)", mode.name())),
        "{}",
        relay.log_text()
    );
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(fin.totals.matched, n);
    assert_eq!(fin.totals.in_flight, 0);
    assert_eq!(fin.flows[0].packets, n);
    assert_eq!(fin.flows[0].outputs[0].tx_sent, n);
    assert_eq!(fin.flows[0].outputs[0].tx_bytes, n * 1400);
    assert_eq!(
        fin.totals.matched_bytes,
        n * 1400,
        "the program's payload bytes"
    );
    // Nothing went through the workers: the packet filter left the flow to the program.
    assert_eq!(
        fin.workers[0].counters.rx, 0,
        "{:?}",
        fin.workers[0].counters
    );
    let fp = fin.fast_path.expect("fast_path section");
    assert_eq!(fp.counters.matched, n);
    assert!(fp.interfaces.is_empty(), "detached before the final report");
    assert!(fp.verified_insns > 0);
}

/// Adds `out2` and `out3` from the relay to `dst` (10.0.2.0/24 and 10.0.3.0/24).
fn two_more_outputs(c: &Chain) {
    for k in [2, 3] {
        veth(
            &c.relays[0],
            &format!("out{k}"),
            &format!("10.0.{k}.1/24"),
            &c.dst,
            &format!("in{k}"),
            &format!("10.0.{k}.2/24"),
            false,
        );
    }
}

fn fan_out_one_to_three_in_the_kernel(mode: Attach) {
    if !e2e_allowed("fastpath_fan_out") {
        return;
    }
    let c = chain_full_checksums(1, false);
    two_more_outputs(&c);
    let outputs = "{ dest = \"239.2.2.1\", port = 6001, interface = \"out0\" }, \
                   { dest = \"239.2.2.2\", port = 6002, interface = \"out2\" }, \
                   { dest = \"239.2.2.3\", port = 6003, interface = \"out3\" }";
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, &required(mode), &rule("fan", GROUP, PORT, outputs)),
    );
    let rxs: Vec<_> = (1..=3u8)
        .map(|k| {
            receiver(
                &c.dst,
                Ipv4Addr::new(239, 2, 2, k),
                6000 + u16::from(k),
                Ipv4Addr::new(10, 0, k, 2),
            )
        })
        .collect();
    let tx = sender(&c.src, SRC_ADDR);
    let n = 2000;
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, 1000, 10_000);
    for (i, rx) in rxs.iter().enumerate() {
        let got = drain(rx, Duration::from_millis(400), n as usize + 10);
        assert_eq!(
            check_payloads(&got, 1000),
            (0..n).collect::<Vec<_>>(),
            "output {i}"
        );
    }
    assert_eq!(snmp(&c.dst, "Udp:", "InCsumErrors"), 0);
    let fin = relay.stop();
    assert_conserves(&fin);
    assert!(kernel_flow(&fin, "fan"));
    assert_eq!(fin.totals.matched, n);
    assert_eq!(fin.totals.tx_sent, 3 * n);
    assert!(fin.flows[0]
        .outputs
        .iter()
        .all(|o| o.tx_sent == n && o.matched == n));
}

fn three_hops_in_the_kernel(mode: Attach) {
    if !e2e_allowed("fastpath_three_hops") {
        return;
    }
    let c = chain_full_checksums(3, false);
    let relays: Vec<Relay> = c
        .relays
        .iter()
        .map(|ns| Relay::start(ns, &relay_config(1, &required(mode), &chain_rule())))
        .collect();
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    let n = 3000;
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, 1400, 8_000);
    expect_all(&rx, n, 1400, Duration::from_millis(500));
    assert_eq!(snmp(&c.dst, "Udp:", "InCsumErrors"), 0);
    for (hop, r) in relays.into_iter().enumerate() {
        let fin = r.stop();
        assert_conserves(&fin);
        assert!(kernel_flow(&fin, "chain"), "hop {hop}");
        assert_eq!(fin.totals.matched, n, "hop {hop}");
        assert_eq!(fin.totals.tx_sent, n, "hop {hop}");
        assert_eq!(fin.workers[0].counters.rx, 0, "hop {hop}");
    }
}

fn multicast_to_unicast_moves_to_the_kernel_once_the_neighbour_is_known(mode: Attach) {
    if !e2e_allowed("fastpath_m2u") {
        return;
    }
    let c = chain_full_checksums(1, false);
    let dst = c.dst_addr();
    let outputs = format!("{{ dest = \"{dst}\", port = 7000, interface = \"out0\" }}");
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, &required(mode), &rule("m2u", GROUP, PORT, &outputs)),
    );
    // No neighbour entry yet: userspace, which resolves it by sending.
    let first = relay.stats();
    let reason = first.flows[0].path_reason.clone().unwrap_or_default();
    assert!(reason.contains("neighbour"), "{:?}", first.flows[0]);
    let rx = receiver(&c.dst, dst, 7000, dst);
    let cap = capture(&c.dst, "in0");
    let tx = sender(&c.src, SRC_ADDR);
    let n = 1000;
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, 512, 5_000);
    // While the flow changes path both paths may forward a datagram (never neither).
    let mut first = check_payloads(&drain(&rx, Duration::from_millis(400), 2 * n as usize), 512);
    first.dedup();
    assert_eq!(first, (0..n).collect::<Vec<_>>());
    wait_for(
        "the flow to move to the kernel",
        Duration::from_secs(5),
        || kernel_flow(&relay.stats(), "m2u"),
    );
    discard(&cap, Duration::from_millis(50));
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), n, n, 512, 5_000);
    let got = drain(&rx, Duration::from_millis(400), n as usize + 10);
    assert_eq!(check_payloads(&got, 512), (n..2 * n).collect::<Vec<_>>());
    let seqs = captured(
        &cap,
        &Expect {
            dst_mac: mac_of(&c.dst, "in0"),
            src_mac: mac_of(&c.relays[0], "out0"),
            src: Ipv4Addr::new(10, 0, 1, 1),
            dst,
            port: 7000,
            ttl: 16,
            len: 512,
            tos: None,
            sport: None,
        },
        Duration::from_millis(300),
    );
    assert_eq!(seqs, (n..2 * n).collect::<Vec<_>>());
    assert_eq!(snmp(&c.dst, "Udp:", "InCsumErrors"), 0);
    let fin = relay.stop();
    assert_conserves(&fin);
    // Both paths' counts add up in the one flow.
    let kernel = fin.fast_path.unwrap().counters.tx_sent;
    let user = fin.workers[0].counters.tx_sent;
    assert!(kernel >= n && user > 0, "kernel {kernel}, userspace {user}");
    assert_eq!(fin.flows[0].outputs[0].tx_sent, kernel + user);
    assert!(fin.flows[0].packets >= 2 * n);
}

/// A destination behind `c.dst` (on its loopback) that the relay reaches only through a
/// policy rule: `to 10.77.0.0/24` looks up table 100, whose route goes via `dst`'s `in0`
/// (10.0.1.2). The main table's default route points at 10.0.1.9, a gateway with a
/// permanent neighbour entry whose MAC nobody has: a next hop taken from the main table
/// alone sends every datagram there, where `dst` drops it (not its MAC).
const FAR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 5);

fn policy_routed(c: &Chain) {
    let r = &c.relays[0];
    c.dst
        .ip(&["addr", "add", &format!("{FAR}/32"), "dev", "lo"]);
    r.ip(&[
        "route",
        "add",
        "10.77.0.0/24",
        "via",
        "10.0.1.2",
        "dev",
        "out0",
        "table",
        "100",
    ]);
    r.ip(&["rule", "add", "to", "10.77.0.0/24", "table", "100"]);
    r.ip(&["route", "add", "default", "via", "10.0.1.9", "dev", "out0"]);
    r.ip(&[
        "neigh",
        "add",
        "10.0.1.9",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "out0",
        "nud",
        "permanent",
    ]);
}

fn path_reason(relay: &Relay) -> String {
    relay.stats().flows[0]
        .path_reason
        .clone()
        .unwrap_or_default()
}

/// The state `ip neigh` shows for 10.0.1.2 on the relay's `out0` ("" when there is none).
fn gateway_entry(c: &Chain) -> String {
    let out = c.relays[0]
        .command("ip")
        .args(["neigh", "show", "10.0.1.2", "dev", "out0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sends `n` datagrams from `first` and checks they all arrive at FAR:7000, each once in the
/// kernel path (`captured` checks the frames' headers: the gateway's MAC, not 10.0.1.9's).
fn forwarded_in_the_kernel_to_the_gateway(c: &Chain, relay: &Relay, first: u64, n: u64) {
    let rx = receiver(&c.dst, FAR, 7000, FAR);
    let cap = capture(&c.dst, "in0");
    let tx = sender(&c.src, SRC_ADDR);
    // Through userspace first, whose datagrams make the kernel resolve the gateway.
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), first, n, 512, 5_000);
    let mut got = check_payloads(&drain(&rx, Duration::from_millis(400), 2 * n as usize), 512);
    got.dedup();
    assert_eq!(got, (first..first + n).collect::<Vec<_>>());
    // Until the flow moves, a datagram every 200 ms keeps the kernel resolving the gateway:
    // on a loaded machine an ARP answer can come after the last probe, leaving the entry
    // failed with no traffic to ask again (as a live stream always would).
    let mut polls = 0u32;
    wait_for(
        "the flow to move to the kernel",
        Duration::from_secs(10),
        || {
            polls += 1;
            if polls.is_multiple_of(10) {
                let _ = tx.send_to(&payload(first + n, 512), SocketAddrV4::new(GROUP, PORT));
            }
            kernel_flow(&relay.stats(), "far")
        },
    );
    let _ = drain(&rx, Duration::from_millis(100), usize::MAX);
    assert!(
        gateway_entry(c).contains("REACHABLE"),
        "{}",
        gateway_entry(c)
    );
    discard(&cap, Duration::from_millis(50));
    let next = first + n;
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), next, n, 512, 5_000);
    let got = drain(&rx, Duration::from_millis(400), n as usize + 10);
    assert_eq!(
        check_payloads(&got, 512),
        (next..next + n).collect::<Vec<_>>()
    );
    let seqs = captured(
        &cap,
        &Expect {
            dst_mac: mac_of(&c.dst, "in0"),
            src_mac: mac_of(&c.relays[0], "out0"),
            src: Ipv4Addr::new(10, 0, 1, 1),
            dst: FAR,
            port: 7000,
            ttl: 16,
            len: 512,
            tos: None,
            sport: None,
        },
        Duration::from_millis(300),
    );
    assert_eq!(seqs, (next..next + n).collect::<Vec<_>>());
}

fn far_rule() -> String {
    rule(
        "far",
        GROUP,
        PORT,
        &format!("{{ dest = \"{FAR}\", port = 7000, interface = \"out0\" }}"),
    )
}

fn a_unicast_output_follows_a_policy_rule_to_its_gateway(mode: Attach) {
    if !e2e_allowed("fastpath_policy_rule") {
        return;
    }
    let c = chain_full_checksums(1, false);
    policy_routed(&c);
    let relay = Relay::start(&c.relays[0], &relay_config(1, &required(mode), &far_rule()));
    // The next hop named is table 100's gateway, not FAR itself nor the main table's 10.0.1.9.
    assert_eq!(
        path_reason(&relay),
        "no neighbour entry for 10.0.1.2 on out0 yet (retried every second)"
    );
    let n = 1000;
    forwarded_in_the_kernel_to_the_gateway(&c, &relay, 0, n);
    let fin = relay.stop();
    assert_conserves(&fin);
    let kernel = fin.fast_path.unwrap().counters.tx_sent;
    assert!(kernel >= n, "kernel {kernel}");
    assert_eq!(
        fin.flows[0].outputs[0].tx_sent,
        kernel + fin.workers[0].counters.tx_sent
    );
}

fn a_stale_neighbour_is_confirmed_and_a_failed_one_is_not_used(mode: Attach) {
    if !e2e_allowed("fastpath_stale_neighbour") {
        return;
    }
    let c = chain_full_checksums(1, false);
    policy_routed(&c);
    let r = &c.relays[0];
    // Confirmation in about a second instead of 5 + 3 s.
    r.sysctl("net.ipv4.neigh.out0.delay_first_probe_time", "1");
    r.sysctl("net.ipv4.neigh.out0.retrans_time_ms", "100");
    // The gateway's entry is stale with a MAC the gateway no longer has. Nothing but the
    // relay uses it, and the kernel would confirm it only when something sends through it.
    r.ip(&[
        "neigh",
        "add",
        "10.0.1.2",
        "lladdr",
        "02:00:00:00:00:98",
        "dev",
        "out0",
        "nud",
        "stale",
    ]);
    let relay = Relay::start(r, &relay_config(1, &required(mode), &far_rule()));
    // The kernel would send to a stale entry, so the program may; mcrd has the kernel
    // confirm it as its own sending would. Unicast probes to 02:..:98 go unanswered, so the
    // entry fails, and a failed entry is not sent to.
    wait_for(
        "the kernel to find the stale entry wrong",
        Duration::from_secs(10),
        || gateway_entry(&c).contains("FAILED"),
    );
    wait_for(
        "the flow to leave the kernel",
        Duration::from_secs(5),
        || {
            path_reason(&relay)
                == "neighbour 10.0.1.2 on out0 is failed, not resolved (retried every second)"
        },
    );
    // Traffic through userspace resolves the gateway anew, with its real MAC.
    forwarded_in_the_kernel_to_the_gateway(&c, &relay, 0, 500);
    assert_conserves(&relay.stop());
}

/// A tcx link dies with its holder; a clsact filter does not, and the next daemon removes it
/// (`fastpath_hooks.rs`).
#[test]
fn kill_9_leaves_no_tcx_program_attached() {
    if !e2e_allowed("fastpath_kill_9") {
        return;
    }
    let c = chain(1, false);
    let mut relay = Relay::start(
        &c.relays[0],
        &relay_config(1, &required(Attach::Tcx), &chain_rule()),
    );
    assert_eq!(mcrd_programs(&c.relays[0], "in0").len(), 1);
    relay.signal(libc::SIGKILL);
    wait_for("mcrd to die", Duration::from_secs(5), || {
        !relay.is_running()
    });
    wait_for(
        "the kernel to detach the program",
        Duration::from_secs(5),
        || mcrd_programs(&c.relays[0], "in0").is_empty(),
    );
    let (_, all) = c.relays[0].enter(|| {
        relay::fastpath::tcx_ingress_programs(relay::netif::index("in0").unwrap()).unwrap()
    });
    assert!(all.is_empty(), "programs left on in0: {all:?}");
}

fn a_second_daemon_on_the_same_interface_is_refused_the_fast_path(mode: Attach) {
    if !e2e_allowed("fastpath_two_daemons") {
        return;
    }
    let c = chain(1, false);
    let first = Relay::start(
        &c.relays[0],
        &relay_config(1, &required(mode), &chain_rule()),
    );
    // `required`: the second daemon does not start.
    let second = relay_config(1, &required(mode), &chain_rule());
    let (code, err) = mcrd_refusing(&c.relays[0], &second, &[], &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("in0") && err.contains("already has an mcrd fast path"),
        "{err}"
    );
    // `auto`: it starts, and its rule on that interface stands by (forwarded by neither of
    // its paths), saying why.
    let second = Relay::start(&c.relays[0], &relay_config(1, &auto(mode), &chain_rule()));
    let s = second.stats();
    assert_eq!(s.flows[0].path, "waiting");
    assert!(
        s.flows[0]
            .path_reason
            .as_deref()
            .unwrap_or("")
            .contains("already has an mcrd fast path"),
        "{:?}",
        s.flows[0]
    );
    assert_eq!(mcrd_programs(&c.relays[0], "in0").len(), 1);
    assert!(kernel_flow(&first.stats(), "chain"));
    // When the first daemon goes, the second takes the interface over (it retries each second).
    first.stop();
    wait_for(
        "the second daemon to take over in0",
        Duration::from_secs(5),
        || kernel_flow(&second.stats(), "chain"),
    );
    assert_eq!(mcrd_programs(&c.relays[0], "in0").len(), 1);
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 300, 500, 5_000);
    expect_all(&rx, 300, 500, Duration::from_millis(300));
    // The refused attach was retried every second but warned about once.
    let log = second.log_text();
    assert_eq!(log.matches("its rules stand by").count(), 1, "{log}");
    let fin = second.stop();
    assert_conserves(&fin);
    assert_eq!(fin.fast_path.unwrap().counters.tx_sent, 300);
}

/// `fast_path = "auto"` is the default: a config that does not name it, run without the
/// privileges, forwards in userspace after one WARN line saying what is missing.
#[test]
fn the_default_without_privileges_falls_back_to_userspace_with_one_warning() {
    if !e2e_allowed("fastpath_auto_unprivileged") {
        return;
    }
    let c = chain(1, false);
    let relay = Relay::start_as(
        &c.relays[0],
        &relay_config(1, "", &chain_rule()),
        Some(NET_RAW_ONLY),
    );
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 500, 1000, 5_000);
    expect_all(&rx, 500, 1000, Duration::from_millis(400));
    let log = relay.log_text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("fast path unavailable")
            && warnings[0].contains("CAP_BPF")
            && warnings[0].contains("CAP_NET_ADMIN"),
        "{}",
        warnings[0]
    );
    assert!(mcrd_programs(&c.relays[0], "in0").is_empty());
    let fin = relay.stop();
    assert_conserves(&fin);
    assert!(fin.fast_path.is_none());
    assert_eq!(fin.flows[0].path, "userspace");
    let reason = fin.flows[0].path_reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("unavailable") && reason.contains("CAP_BPF"),
        "{reason}"
    );
    assert_eq!(fin.totals.tx_sent, 500);
}

#[test]
fn required_without_privileges_refuses_to_start() {
    if !e2e_allowed("fastpath_required_unprivileged") {
        return;
    }
    let c = chain(1, false);
    let config = relay_config(1, REQUIRED, &chain_rule());
    let (code, err) = mcrd_refusing(&c.relays[0], &config, NET_RAW_ONLY, &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("required") && err.contains("CAP_BPF"), "{err}");
}

/// Config text of one rule on `in0` sending `GROUP:PORT` to `outputs` (ports on out0/out2).
fn replace_config(mode: Attach, ports: [u16; 2]) -> String {
    let outputs = format!(
        "{{ dest = \"239.2.2.1\", port = {}, interface = \"out0\" }}, \
         {{ dest = \"239.2.2.2\", port = {}, interface = \"out2\" }}",
        ports[0], ports[1]
    );
    relay_config(1, &required(mode), &rule("swap", GROUP, PORT, &outputs))
}

fn replacing_a_rule_under_traffic_never_mixes_output_sets(mode: Attach) {
    if !e2e_allowed("fastpath_replace") {
        return;
    }
    let c = chain(1, false);
    two_more_outputs(&c);
    let sets = [[6001, 6002], [6003, 6004]];
    let relay = Relay::start(&c.relays[0], &replace_config(mode, sets[0]));
    let rx: Vec<(u16, std::net::UdpSocket)> = [(6001, 1), (6002, 2), (6003, 1), (6004, 2)]
        .into_iter()
        .map(|(port, k): (u16, u8)| {
            let group = Ipv4Addr::new(239, 2, 2, k);
            (
                port,
                receiver(
                    &c.dst,
                    group,
                    port,
                    Ipv4Addr::new(10, 0, if k == 1 { 1 } else { 2 }, 2),
                ),
            )
        })
        .collect();
    let tx = sender(&c.src, SRC_ADDR);
    let n = 10_000u64;
    let config_path = relay.config.clone();
    let control = std::fs::read_to_string(&config_path)
        .unwrap()
        .split("[dataplane]")
        .next()
        .unwrap()
        .to_string();
    std::thread::scope(|s| {
        s.spawn(|| send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, 200, 5_000));
        // About 20 replacements while the 2 s of traffic flow.
        for i in 1..=20 {
            std::thread::sleep(Duration::from_millis(90));
            let text = format!("{control}{}", replace_config(mode, sets[i % 2]));
            std::fs::write(&config_path, text).unwrap();
            relay.signal(libc::SIGHUP);
        }
    });
    let mut seen: std::collections::BTreeMap<u64, Vec<u16>> = Default::default();
    for (port, sock) in &rx {
        for p in drain(sock, Duration::from_millis(400), 2 * n as usize) {
            let seq = u64::from_be_bytes(p[..8].try_into().unwrap());
            seen.entry(seq).or_default().push(*port);
        }
    }
    let mut per_set = [0u64; 2];
    for (seq, ports) in &mut seen {
        ports.sort_unstable();
        let set = sets.iter().position(|s| s[..] == ports[..]);
        assert!(
            set.is_some(),
            "datagram {seq} went to {ports:?}: a mix of output sets"
        );
        per_set[set.unwrap()] += 1;
    }
    assert_eq!(
        seen.len() as u64,
        n,
        "every datagram reached one whole output set"
    );
    assert!(
        per_set[0] > 0 && per_set[1] > 0,
        "both sets were used: {per_set:?}"
    );
    let reloads = relay.log_text().matches("reloaded").count();
    assert!(
        reloads >= 10,
        "only {reloads} reloads took effect:\n{}",
        relay.log_text()
    );
    let fin = relay.stop();
    assert_conserves(&fin);
    assert!(kernel_flow(&fin, "swap"));
}

/// 17 outputs, one more than the kernel path takes: a rule that must stay in userspace.
fn seventeen_outputs(first_port: u16) -> String {
    (0..17)
        .map(|i| {
            format!(
                "{{ dest = \"239.2.2.9\", port = {}, interface = \"out0\" }}",
                first_port + i
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn both_paths_conserve_side_by_side_and_fragments_reach_userspace(mode: Attach) {
    if !e2e_allowed("fastpath_both_paths") {
        return;
    }
    let c = chain_full_checksums(1, false);
    let user_group = Ipv4Addr::new(239, 1, 1, 2);
    let rules = format!(
        "{}{}",
        rule(
            "k",
            GROUP,
            PORT,
            "{ dest = \"239.2.2.1\", port = 6001, interface = \"out0\" }"
        ),
        rule("u", user_group, PORT, &seventeen_outputs(7000)),
    );
    let relay = Relay::start(&c.relays[0], &relay_config(1, &required(mode), &rules));
    let rx_k = receiver(&c.dst, Ipv4Addr::new(239, 2, 2, 1), 6001, c.dst_addr());
    let rx_u = receiver(&c.dst, Ipv4Addr::new(239, 2, 2, 9), 7016, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    let n = 1000;
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, 800, 5_000);
    send_paced(&tx, SocketAddrV4::new(user_group, PORT), 0, n, 800, 5_000);
    // Datagrams larger than the MTU leave the sender as fragments: the program leaves them
    // to the stack, the userspace path counts them as malformed.
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 5, 3000, 1_000);
    expect_all(&rx_k, n, 800, Duration::from_millis(400));
    expect_all(&rx_u, n, 800, Duration::from_millis(400));
    let live = relay.stats();
    assert_conserves(&live);
    let fin = relay.stop();
    assert_conserves(&fin);
    let k = fin.flows.iter().find(|f| f.rule == "k").unwrap();
    let u = fin.flows.iter().find(|f| f.rule == "u").unwrap();
    assert_eq!(k.path, "kernel");
    assert_eq!(u.path, "userspace");
    assert!(
        u.path_reason.as_deref().unwrap().contains("17 outputs"),
        "{u:?}"
    );
    assert_eq!((k.packets, u.packets), (n, n));
    assert!(u
        .outputs
        .iter()
        .all(|o| o.tx_sent == n && o.path == "userspace"));
    let fp = fin.fast_path.unwrap();
    assert_eq!(fp.counters.rx, n);
    assert_eq!(fin.workers[0].counters.matched, n);
    assert_eq!(fin.totals.rx, fin.workers[0].counters.rx + fp.counters.rx);
    assert_eq!(fin.totals.tx_sent, n + 17 * n);
    assert!(fp.passed_fragments >= 10, "{fp:?}");
    let fragments = fin
        .totals
        .malformed_by_kind
        .get("fragment")
        .copied()
        .unwrap_or(0);
    assert!(
        fragments >= 10,
        "userspace saw {fragments} fragments: {:?}",
        fin.totals
    );
}

fn reload_moves_rules_in_and_out_of_the_kernel(mode: Attach) {
    if !e2e_allowed("fastpath_reload") {
        return;
    }
    let c = chain(1, false);
    let g2 = Ipv4Addr::new(239, 1, 1, 2);
    let a = rule(
        "a",
        GROUP,
        PORT,
        "{ dest = \"239.2.2.1\", port = 6001, interface = \"out0\" }",
    );
    let b = rule(
        "b",
        g2,
        PORT,
        "{ dest = \"239.2.2.2\", port = 6002, interface = \"out0\" }",
    );
    let relay = Relay::start(&c.relays[0], &relay_config(1, &required(mode), &a));
    let rx_a = receiver(&c.dst, Ipv4Addr::new(239, 2, 2, 1), 6001, c.dst_addr());
    let rx_b = receiver(&c.dst, Ipv4Addr::new(239, 2, 2, 2), 6002, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 300, 500, 5_000);
    expect_all(&rx_a, 300, 500, Duration::from_millis(300));
    // Reload: `a` goes, `b` comes.
    let text = std::fs::read_to_string(&relay.config)
        .unwrap()
        .replace(&a, &b);
    std::fs::write(&relay.config, text).unwrap();
    let (code, out, err) = relay.mcrctl(&["config", "reload"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, list, _) = relay.mcrctl(&["rules", "list"]);
    assert!(
        list.starts_with("b:") && list.contains("[kernel: ") && !list.contains("a:"),
        "{list}"
    );
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 300, 300, 500, 5_000);
    send_paced(&tx, SocketAddrV4::new(g2, PORT), 0, 300, 500, 5_000);
    expect_all(&rx_b, 300, 500, Duration::from_millis(300));
    assert!(
        drain(&rx_a, Duration::from_millis(100), 10).is_empty(),
        "the removed rule still forwards"
    );
    // Reload with `b` given 17 outputs: it moves to userspace and keeps forwarding.
    let b17 = rule("b", g2, PORT, &seventeen_outputs(6002));
    let text = std::fs::read_to_string(&relay.config)
        .unwrap()
        .replace(&b, &b17);
    std::fs::write(&relay.config, text).unwrap();
    assert_eq!(relay.mcrctl(&["config", "reload"]).0, 0);
    let (_, list, _) = relay.mcrctl(&["rules", "list"]);
    assert!(list.contains("[userspace: 17 outputs"), "{list}");
    let rx_b17 = receiver(&c.dst, Ipv4Addr::new(239, 2, 2, 9), 6002, c.dst_addr());
    send_paced(&tx, SocketAddrV4::new(g2, PORT), 300, 300, 500, 5_000);
    let got = drain(&rx_b17, Duration::from_millis(300), 400);
    assert_eq!(check_payloads(&got, 500), (300..600).collect::<Vec<_>>());
    assert!(mcrd_programs(&c.relays[0], "in0").len() == 1);
    let fin = relay.stop();
    assert_conserves(&fin);
    // The kernel's counts of the removed and replaced rules stay in the totals.
    let fp = fin.fast_path.unwrap();
    assert_eq!(fp.counters.matched, 600);
    assert_eq!(fin.workers[0].counters.matched, 300);
}

fn an_output_mtu_too_small_is_counted_as_an_error(mode: Attach) {
    if !e2e_allowed("fastpath_mtu") {
        return;
    }
    let c = chain(1, false);
    c.relays[0].ip(&["link", "set", "out0", "mtu", "1000"]);
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, &required(mode), &chain_rule()),
    );
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 200, 1400, 5_000);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 200, 100, 900, 5_000);
    let got = drain(&rx, Duration::from_millis(300), 400);
    assert_eq!(check_payloads(&got, 900), (200..300).collect::<Vec<_>>());
    let fin = relay.stop();
    assert_conserves(&fin);
    let o = &fin.flows[0].outputs[0];
    assert_eq!((o.matched, o.tx_sent, o.tx_errors), (300, 100, 200));
    assert_eq!(fin.totals.tx_errors_by_errno.get("kernel_mtu"), Some(&200));
}

fn gso_super_frames_are_forwarded_whole_and_counted_per_datagram(mode: Attach) {
    if !e2e_allowed("fastpath_gso") {
        return;
    }
    let c = chain(1, true);
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(1, &required(mode), &chain_rule()),
    );
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    set_udp_segment(&tx, 1400);
    let sends = 200u64;
    for s in 0..sends {
        send_gso(&tx, SocketAddrV4::new(GROUP, PORT), s * 10, 10, 1400);
        std::thread::sleep(Duration::from_micros(500));
    }
    let n = sends * 10;
    expect_all(&rx, n, 1400, Duration::from_millis(500));
    let fin = relay.stop();
    assert_conserves(&fin);
    let fp = fin.fast_path.unwrap();
    assert!(
        fp.counters.rx_frames < fp.counters.rx,
        "frames arrived coalesced: {} frames, {} datagrams",
        fp.counters.rx_frames,
        fp.counters.rx
    );
    assert_eq!(fin.totals.rx, n);
    assert_eq!(fin.totals.tx_sent, n);
    assert_eq!(fin.flows[0].bytes, n * 1400);
}

fn runs_as_the_packaged_unit_does_with_net_raw_bpf_and_net_admin_only(mode: Attach) {
    if !e2e_allowed("fastpath_unit_capabilities") {
        return;
    }
    let c = chain(1, false);
    let relay = Relay::start_as(
        &c.relays[0],
        &relay_config(1, &required(mode), &chain_rule()),
        // The capabilities of packaging/mcrd.service, as user nobody.
        Some(UNIT_CAPS),
    );
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, 500, 1000, 5_000);
    expect_all(&rx, 500, 1000, Duration::from_millis(400));
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(fin.flows[0].path, "kernel");
    assert_eq!(fin.fast_path.unwrap().counters.tx_sent, 500);
}

fn vlan_tagged_input_goes_out_untagged_and_ip_options_go_to_userspace(mode: Attach) {
    if !e2e_allowed("fastpath_vlan_options") {
        return;
    }
    let c = chain(1, false);
    // A rule of another group that runs in userspace, so that in0 has a packet socket: an
    // input whose rules all run in the kernel has none, and nothing in userspace sees it.
    let ts = format!(
        "{}monitor = \"mpegts\"\n",
        rule(
            "ts",
            Ipv4Addr::new(239, 1, 1, 9),
            PORT,
            "{ dest = \"239.2.2.9\", port = 6009, interface = \"out0\" }"
        )
    );
    let rules = format!("{}{ts}", chain_rule());
    let relay = Relay::start(&c.relays[0], &relay_config(1, &required(mode), &rules));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let cap = capture(&c.dst, "in0");
    let raw = raw_socket(&c.src, "out0");
    let n = 300u64;
    // 802.1Q-tagged (VLAN 100: veth moves the tag into skb metadata), untagged, and
    // double-tagged frames (802.1ad outer tag in metadata, the 802.1Q inner tag in the frame):
    // the program refuses these as userspace does (`filtered`, a second tag).
    for i in 0..3 * n {
        let mut f = frame(&payload(i, 1000), 4000);
        if i < n {
            f.splice(12..12, [0x81, 0x00, 0x00, 100]);
        } else if i >= 2 * n {
            f.splice(12..12, [0x88, 0xa8, 0x00, 200, 0x81, 0x00, 0x00, 100]);
        }
        raw_send(&raw, &f);
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // IPv4 with options (4 NOPs): the program leaves them to the stack and userspace.
    for i in 0..5 {
        let mut f = frame(&payload(10_000 + i, 1000), 4000);
        f.splice(34..34, [1, 1, 1, 1]);
        f[14] = 0x46;
        let total = u16::from_be_bytes([f[16], f[17]]) + 4;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        refresh_ip_checksum(&mut f);
        raw_send(&raw, &f);
    }
    expect_all(&rx, 2 * n, 1000, Duration::from_millis(400));
    let seqs = captured(
        &cap,
        &Expect {
            dst_mac: [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
            src_mac: mac_of(&c.relays[0], "out0"),
            src: Ipv4Addr::new(10, 0, 1, 1),
            dst: GROUP,
            port: PORT,
            ttl: 8,
            len: 1000,
            tos: None,
            sport: None,
        },
        Duration::from_millis(300),
    );
    assert_eq!(
        seqs,
        (0..2 * n).collect::<Vec<_>>(),
        "every copy untagged and intact"
    );
    assert_eq!(snmp(&c.dst, "Udp:", "InCsumErrors"), 0);
    let fin = relay.stop();
    assert_conserves(&fin);
    let fp = fin.fast_path.unwrap();
    assert_eq!(fp.counters.tx_sent, 2 * n);
    assert_eq!(fp.counters.filtered, n, "the double-tagged frames");
    assert_eq!(fp.passed_ip_options, 5);
    assert_eq!(fin.totals.malformed_by_kind.get("ip_options"), Some(&5));
}

/// One send of the scripted RTP stream: a datagram, or a GSO send of equal segments.
enum RtpSend {
    One(Vec<u8>),
    Gso(Vec<Vec<u8>>),
}

/// An RTP packet (PT 96) with sequence `seq`, `len` bytes in all.
fn rtp_len(seq: u16, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[0] = 0x80;
    b[1] = 96;
    b[2..4].copy_from_slice(&seq.to_be_bytes());
    b[8..12].copy_from_slice(&0x6d63_7202u32.to_be_bytes());
    b
}

/// An RTP packet of 200 bytes.
fn rtp_packet(seq: u16) -> Vec<u8> {
    rtp_len(seq, 200)
}

/// Packets 0..1000 of a stream whose sequence starts at 65500 (so it wraps at 36), with known
/// faults, and what a monitor must count of it, worked out by hand from the definitions
/// (relay/README.md, "Stream monitoring"):
/// * 100 and 200..=204 missing: 2 gaps, 6 lost;
/// * 301 before 300: a gap of 1 lost at 301, then 300 a repeat;
/// * 400 twice: a repeat;
/// * from 501 on, the sequence jumps by 10000: a gap, nothing lost (beyond 3000 ahead);
/// * an RTCP packet after 600, an 8-byte datagram after 700: 2 foreign;
/// * 900..=919 in two GSO sends of 10 segments, 905 missing: a gap, 1 lost.
///
/// Returns the sends and (datagrams, gaps, lost, repeats, foreign).
fn scripted_rtp_stream() -> (Vec<RtpSend>, (u64, u64, u64, u64, u64)) {
    let seq = |k: u32| {
        let jump = if k > 500 { 10_000 } else { 0 };
        (65_500 + k + jump) as u16
    };
    let mut sends = Vec::new();
    let mut k = 0;
    while k < 1000 {
        match k {
            100 | 200..=204 => {}
            300 => {
                sends.push(RtpSend::One(rtp_packet(seq(301))));
                sends.push(RtpSend::One(rtp_packet(seq(300))));
                k = 301;
            }
            400 => {
                sends.push(RtpSend::One(rtp_packet(seq(400))));
                sends.push(RtpSend::One(rtp_packet(seq(400))));
            }
            900 | 910 => {
                let segments = (k..k + 10)
                    .filter(|&j| j != 905)
                    .map(|j| rtp_packet(seq(j)))
                    .collect();
                sends.push(RtpSend::Gso(segments));
                k += 9;
            }
            _ => sends.push(RtpSend::One(rtp_packet(seq(k)))),
        }
        if k == 600 {
            let mut rtcp = vec![0u8; 28];
            rtcp[0] = 0x80;
            rtcp[1] = 200; // sender report: payload type 72 to the RTP parser
            sends.push(RtpSend::One(rtcp));
        }
        if k == 700 {
            sends.push(RtpSend::One(vec![0x80; 8]));
        }
        k += 1;
    }
    (sends, (996, 5, 8, 2, 2))
}

/// Sends the scripted stream through a one-hop chain whose relay runs `dataplane`, and
/// returns the relay's final report and the datagrams the sink received.
fn run_scripted_rtp(dataplane: &str) -> (relay::stats::report::StatsReport, usize) {
    let (sends, _) = scripted_rtp_stream();
    let c = chain(1, true);
    let rules = format!(
        "{}monitor = \"rtp\"\n\n{}monitor = \"mpegts\"\n",
        chain_rule(),
        rule(
            "ts",
            GROUP,
            PORT + 1,
            &format!("{{ dest = \"{GROUP}\", port = 6001, interface = \"out0\" }}"),
        )
    );
    let relay = Relay::start(&c.relays[0], &relay_config(1, dataplane, &rules));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    let tx_gso = sender(&c.src, SRC_ADDR);
    set_udp_segment(&tx_gso, 200);
    let dest = SocketAddrV4::new(GROUP, PORT);
    for s in &sends {
        match s {
            RtpSend::One(p) => tx.send_to(p, dest).map(|_| ()),
            RtpSend::Gso(segments) => tx_gso.send_to(&segments.concat(), dest).map(|_| ()),
        }
        .expect("send");
        std::thread::sleep(Duration::from_micros(200));
    }
    let received = drain(&rx, Duration::from_millis(500), 2000).len();
    let live = relay.stats();
    assert_conserves(&live);
    let (code, text, _) = relay.mcrctl(&["stats"]);
    assert_eq!(code, 0);
    let m = live.flows[0].monitor.as_ref().expect("monitor");
    let line = format!(
        "monitor rtp    checked {:>10} gaps {:>8} lost {:>10}",
        m.datagrams, m.gaps, m.lost
    );
    assert!(text.contains(&line), "mcrctl stats lacks `{line}`:\n{text}");
    let (code, prom, _) = relay.mcrctl(&["stats", "--prometheus"]);
    assert_eq!(code, 0);
    let sample = format!(
        "mcr_flow_stream_lost_total{{flow=\"chain\",kind=\"rtp\"}} {}",
        m.lost
    );
    assert!(prom.contains(&sample), "no `{sample}` in:\n{prom}");
    let fin = relay.stop();
    assert_conserves(&fin);
    (fin, received)
}

fn rtp_monitoring_in_the_kernel_counts_exactly_what_userspace_counts(mode: Attach) {
    if !e2e_allowed("fastpath_rtp_monitor") {
        return;
    }
    let (_, (datagrams, gaps, lost, repeats, foreign)) = scripted_rtp_stream();
    let (kernel, kernel_received) = run_scripted_rtp(&required(mode));
    let (user, user_received) = run_scripted_rtp("fast_path = \"off\"");
    for (path, r, received) in [
        ("kernel", &kernel, kernel_received),
        ("userspace", &user, user_received),
    ] {
        let f = &r.flows[0];
        assert_eq!(f.path, path, "{f:?}");
        assert_eq!(
            received as u64, datagrams,
            "{path}: the sink got every datagram"
        );
        assert_eq!(f.packets, datagrams, "{path}");
        let m = f.monitor.as_ref().expect("monitor");
        assert_eq!(m.kind, "rtp");
        assert_eq!(
            (m.datagrams, m.gaps, m.lost, m.repeats, m.foreign),
            (datagrams, gaps, lost, repeats, foreign),
            "{path}: {m:?}"
        );
    }
    assert_eq!(kernel.flows[0].monitor, user.flows[0].monitor);
    // The kernel walked GSO super-frames segment by segment.
    let fp = kernel.fast_path.as_ref().unwrap();
    assert!(fp.counters.rx_frames < fp.counters.rx, "{:?}", fp.counters);
    // Nothing of the monitored flow went through the workers.
    assert_eq!(kernel.workers[0].counters.rx, 0);
    // MPEG-TS monitoring stays in userspace, and says why.
    let ts = &kernel.flows[1];
    assert_eq!(ts.path, "userspace");
    let why = ts.path_reason.as_deref().unwrap_or_default();
    assert!(why.contains("mpegts"), "{why}");
}

/// The per-hop story on the fast path: two kernel hops checking an RTP stream, with a tc
/// filter on hop 1's output device taking the full-size datagrams whose sequence number ends
/// in 0x37 (of 7 bits) off the link. Netfilter's hooks do not see what a tc program
/// redirects from ingress, the output's tc egress hook does; this kernel has no gact or netem,
/// so the filter redirects them to `lo`, where no one listens. Hop 1's check is clean; hop
/// 2's gaps are exactly the datagrams taken.
fn kernel_hops_localize_rtp_loss_to_the_link_before_the_first_hop_with_gaps(mode: Attach) {
    let test = "fastpath_rtp_monitor_two_hops";
    if !e2e_allowed(test) {
        return;
    }
    let c = chain(2, false);
    let config = relay_config(
        1,
        &required(mode),
        &format!("{}monitor = \"rtp\"\n", chain_rule()),
    );
    let relays: Vec<Relay> = c
        .relays
        .iter()
        .map(|ns| Relay::start(ns, &config))
        .collect();
    let tc = |args: &str| {
        let args: Vec<&str> = args.split_whitespace().collect();
        let out = c.relays[0].command("tc").args(&args).output().expect("tc");
        assert!(
            out.status.success(),
            "tc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    tc("qdisc add dev out0 clsact");
    // IPv4 without options, UDP to port 5000, UDP length (offset 24) 208, RTP sequence number
    // (offset 30) ending in 0x37.
    tc(
        "filter add dev out0 egress protocol ip u32 match ip protocol 17 0xff \
        match ip dport 5000 0xffff match u16 208 0xffff at 24 match u16 0x37 0x7f at 30 \
        action mirred egress redirect dev lo",
    );
    let tx = sender(&c.src, SRC_ADDR);
    let n: u64 = 4000;
    let seq = |i: u64| (65_000 + i) as u16;
    // Shorter first and last datagrams, which the filter never takes: hop 2 sees both ends.
    let full = |i: u64| (5..n - 5).contains(&i);
    let taken = (0..n).filter(|&i| full(i) && seq(i) & 0x7f == 0x37).count() as u64;
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_micros(i * 200);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let len = if full(i) { 200 } else { 100 };
        tx.send_to(&rtp_len(seq(i), len), SocketAddrV4::new(GROUP, PORT))
            .expect("send");
    }
    std::thread::sleep(Duration::from_millis(300));
    let stats = tc("-s filter show dev out0 egress");
    let dropped: u64 = stats
        .split(" pkt")
        .next()
        .and_then(|r| r.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {stats}"));
    let hops: Vec<_> = relays
        .into_iter()
        .map(|r| {
            let fin = r.stop();
            assert_conserves(&fin);
            assert_eq!(fin.flows[0].path, "kernel", "{:?}", fin.flows[0]);
            fin.flows[0].monitor.clone().expect("monitor")
        })
        .collect();
    eprintln!(
        "tc took {dropped}; hop 1 {:?}; hop 2 {:?}",
        hops[0], hops[1]
    );
    assert!(taken > 20, "{taken}");
    assert_eq!(
        dropped, taken,
        "the filter took the datagrams it should: {stats}"
    );
    let counts = |m: &relay::stats::report::MonitorStats| {
        (m.datagrams, m.gaps, m.lost, m.repeats, m.foreign)
    };
    assert_eq!(
        counts(&hops[0]),
        (n, 0, 0, 0, 0),
        "hop 1 received everything"
    );
    // Single drops, 128 apart: one gap of one each.
    assert_eq!(
        counts(&hops[1]),
        (n - taken, taken, taken, 0, 0),
        "hop 2's gaps are the link's drops"
    );
}

/// A monitored flow moved between the paths (by a reload adding and removing a rule that
/// shares its group and port but must run in userspace) keeps an exact count: the side
/// taking the flow over starts its check afresh instead of seeing the other side's
/// datagrams as one gap.
fn a_monitored_flow_moving_between_paths_shows_no_false_gap(mode: Attach) {
    if !e2e_allowed("fastpath_rtp_monitor_path_change") {
        return;
    }
    let c = chain(1, false);
    let chain_rtp = format!("{}monitor = \"rtp\"\n", chain_rule());
    // Another source's (S,G) rule on the same flow, with 17 outputs: it runs in userspace, and
    // so does `chain` while it exists. The sender's datagrams still match `chain`.
    let blocker = format!(
        "\n[[rule]]\nname = \"blocker\"\ninput = \"in0\"\ngroup = \"{GROUP}\"\nport = {PORT}\n\
         source = \"10.99.0.99\"\noutputs = [{}]\n",
        seventeen_outputs(7000)
    );
    let relay = Relay::start(&c.relays[0], &relay_config(1, &auto(mode), &chain_rtp));
    let tx = sender(&c.src, SRC_ADDR);
    let base = std::fs::read_to_string(&relay.config).unwrap();
    let mut sent = 0u64;
    for (phase, path) in ["kernel", "userspace", "kernel", "userspace"]
        .iter()
        .enumerate()
    {
        let config = if phase % 2 == 1 {
            format!("{base}{blocker}")
        } else {
            base.clone()
        };
        std::fs::write(&relay.config, config).unwrap();
        let (code, out, err) = relay.mcrctl(&["config", "reload"]);
        assert_eq!(code, 0, "{out}{err}");
        // The workers adopt a new table within 100 ms when idle.
        std::thread::sleep(Duration::from_millis(300));
        let live = relay.stats();
        let flow = live.flows.iter().find(|f| f.rule == "chain").unwrap();
        assert_eq!(flow.path, *path, "phase {phase}: {flow:?}");
        for i in sent..sent + 500 {
            tx.send_to(&rtp_packet(i as u16), SocketAddrV4::new(GROUP, PORT))
                .expect("send");
            std::thread::sleep(Duration::from_micros(100));
        }
        sent += 500;
        std::thread::sleep(Duration::from_millis(200));
    }
    let fin = relay.stop();
    assert_conserves(&fin);
    let flow = fin.flows.iter().find(|f| f.rule == "chain").unwrap();
    let m = flow.monitor.as_ref().expect("monitor");
    assert_eq!(
        (m.datagrams, m.gaps, m.lost, m.repeats, m.foreign),
        (sent, 0, 0, 0, 0),
        "{m:?}"
    );
    // Both paths took part.
    assert!(fin.workers[0].counters.matched >= 1000);
    assert!(fin.fast_path.unwrap().counters.matched >= 1000);
}

/// Whether `group` is joined on `ifname` in `ns` (`/proc/net/igmp`, which prints each group
/// as the hexadecimal of its address read as a host-order word).
fn joined(ns: &Netns, ifname: &str, group: Ipv4Addr) -> bool {
    let out = ns.command("cat").arg("/proc/net/igmp").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = format!("{:08X}", u32::from_ne_bytes(group.octets()));
    let mut on_ifname = false;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        if line.starts_with('\t') {
            if on_ifname && fields.next() == Some(hex.as_str()) {
                return true;
            }
        } else {
            on_ifname = fields.nth(1) == Some(ifname);
        }
    }
    false
}

/// Issue 20: a packet tap runs before TC ingress, so a packet socket on an input costs every
/// frame there a filter run, also the frames the program forwards. An input whose rules all
/// run in the kernel has no packet socket; a rule that needs userspace (`monitor = "mpegts"`)
/// added by a reload opens one per worker (two, in one fan-out group) before the reload
/// returns, and they forward its traffic; removing it closes them again.
fn an_input_has_packet_sockets_only_while_a_rule_on_it_runs_in_userspace(mode: Attach) {
    if !e2e_allowed("fastpath_capture_only_when_needed") {
        return;
    }
    let c = chain(1, false);
    let ts_group = Ipv4Addr::new(239, 1, 1, 2);
    let ts = format!(
        "{}monitor = \"mpegts\"\n",
        rule(
            "ts",
            ts_group,
            PORT,
            "{ dest = \"239.2.2.2\", port = 6002, interface = \"out0\" }"
        )
    );
    let relay = Relay::start(
        &c.relays[0],
        &relay_config(2, &required(mode), &chain_rule()),
    );
    let sockets = || packet_sockets_on(&c.relays[0], "in0");
    assert_eq!(sockets(), 0, "every rule on in0 runs in the kernel");
    assert!(
        joined(&c.relays[0], "in0", GROUP),
        "the group stays joined: the program needs its frames delivered"
    );
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let rx_ts = receiver(&c.dst, Ipv4Addr::new(239, 2, 2, 2), 6002, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    let n = 300;
    let mut sent = 0;
    let kernel_phase = |sent: &mut u64| {
        send_paced(&tx, SocketAddrV4::new(GROUP, PORT), *sent, n, 500, 5_000);
        let got = drain(&rx, Duration::from_millis(300), n as usize + 10);
        assert_eq!(
            check_payloads(&got, 500),
            (*sent..*sent + n).collect::<Vec<_>>()
        );
        *sent += n;
    };
    kernel_phase(&mut sent);
    // What the program leaves to the stack (IPv4 with options) no packet socket sees now: the
    // program counts it, userspace does not (see the workers' `rx` below).
    let raw = raw_socket(&c.src, "out0");
    for i in 0..5 {
        let mut f = frame(&payload(10_000 + i, 500), 4000);
        f.splice(34..34, [1, 1, 1, 1]);
        f[14] = 0x46;
        let total = u16::from_be_bytes([f[16], f[17]]) + 4;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        refresh_ip_checksum(&mut f);
        raw_send(&raw, &f);
    }

    let base = std::fs::read_to_string(&relay.config).unwrap();
    std::fs::write(&relay.config, format!("{base}{ts}")).unwrap();
    let (code, out, err) = relay.mcrctl(&["config", "reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        sockets(),
        2,
        "one socket per worker once a rule needs userspace"
    );
    send_paced(&tx, SocketAddrV4::new(ts_group, PORT), 0, n, 500, 5_000);
    expect_all(&rx_ts, n, 500, Duration::from_millis(300));
    kernel_phase(&mut sent);
    let live = relay.stats();
    assert!(kernel_flow(&live, "chain"), "{:?}", live.flows);
    assert_eq!(
        live.flows.iter().find(|f| f.rule == "ts").unwrap().path,
        "userspace"
    );

    std::fs::write(&relay.config, &base).unwrap();
    let (code, out, err) = relay.mcrctl(&["config", "reload"]);
    assert_eq!(code, 0, "{out}{err}");
    // A socket closes once its ring is empty (at the latest at the next tick, 100 ms).
    wait_for(
        "in0's packet sockets to close",
        Duration::from_secs(2),
        || sockets() == 0,
    );
    kernel_phase(&mut sent);

    let fin = relay.stop();
    assert_conserves(&fin);
    let users: u64 = fin.workers.iter().map(|w| w.counters.rx).sum();
    assert_eq!(
        users, n,
        "the workers saw the userspace rule's datagrams only"
    );
    let fp = fin.fast_path.unwrap();
    assert_eq!(fp.counters.matched, sent);
    assert_eq!(fp.passed_ip_options, 5);
    assert_eq!(fin.totals.kernel_drops, 0);
}

/// A flow moved between the paths by reloads (a rule sharing its input, group and port that
/// must run in userspace, added and removed), while it carries traffic, with two workers: its
/// input's packet sockets open with every move to userspace (issue 20), and no datagram is
/// lost or sent twice at a move (`hardening_fastpath.rs`'s
/// `a_flow_switching_paths_under_traffic_is_counted_once` checks the counts too).
fn a_flow_moving_between_the_paths_under_traffic_loses_no_datagram(mode: Attach) {
    if !e2e_allowed("fastpath_path_moves_lose_nothing") {
        return;
    }
    let c = chain(1, false);
    let base = relay_config(2, &required(mode), &chain_rule());
    let blocker = format!(
        "{base}\n[[rule]]\nname = \"blocker\"\ninput = \"in0\"\ngroup = \"{GROUP}\"\nport = {PORT}\n\
         source = \"10.99.99.99\"\nmonitor = \"mpegts\"\n\
         outputs = [{{ dest = \"{GROUP}\", port = 6000, interface = \"out0\", ttl = 8 }}]\n"
    );
    let relay = Relay::start(&c.relays[0], &base);
    // The `[control]` section `start` appended, for each rewritten config.
    let written = std::fs::read_to_string(&relay.config).unwrap();
    let control = written[written.find("[control]").unwrap()..].to_string();
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    let (n, len) = (15_000u64, 200);
    let lost_before = udp_rcvbuf_errors(&c.dst);
    let (got, opened) = std::thread::scope(|s| {
        let receiving = s.spawn(|| drain(&rx, Duration::from_millis(800), 3 * n as usize));
        let sending = s.spawn(|| send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, len, 5_000));
        let mut opened = 0;
        for i in 0..12 {
            std::thread::sleep(Duration::from_millis(150));
            let text = if i % 2 == 0 { &blocker } else { &base };
            std::fs::write(&relay.config, format!("{text}\n\n{control}")).unwrap();
            let (code, out, err) = relay.mcrctl(&["config", "reload"]);
            assert_eq!(code, 0, "reload: {out}{err}");
            if i % 2 == 0 && packet_sockets_on(&c.relays[0], "in0") == 2 {
                opened += 1;
            }
        }
        sending.join().unwrap();
        (receiving.join().unwrap(), opened)
    });
    assert_eq!(
        opened, 6,
        "each move to userspace opened both workers' sockets"
    );
    assert_eq!(
        udp_rcvbuf_errors(&c.dst),
        lost_before,
        "the receiver lost none"
    );
    let mut seqs = check_payloads(&got, len);
    let received = seqs.len();
    seqs.dedup();
    let missing = (0..n).filter(|i| seqs.binary_search(i).is_err()).count();
    eprintln!(
        "sent {n}, received {received}, {} of them twice, {missing} never",
        received - seqs.len()
    );
    assert_eq!(
        (received - seqs.len(), missing),
        (0, 0),
        "every datagram once"
    );
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(fin.totals.kernel_drops, 0);
}

fn datagrams_below_the_rule_s_min_ttl_are_counted_not_forwarded_in_the_kernel(mode: Attach) {
    if !e2e_allowed("fastpath_min_ttl") {
        return;
    }
    below_min_ttl_counted_not_forwarded(&required(mode), "kernel");
}

#[test]
fn datagrams_below_the_rule_s_min_ttl_are_counted_not_forwarded_in_userspace() {
    if !e2e_allowed("userspace_min_ttl") {
        return;
    }
    below_min_ttl_counted_not_forwarded("fast_path = \"off\"", "userspace");
}

/// A rule with `min_ttl = 3`: of two interleaved senders, the one with TTL 8 is forwarded
/// whole and the one with TTL 2 not at all, counted in the flow's `below_min_ttl` and in
/// `filtered`, on the path `path`.
fn below_min_ttl_counted_not_forwarded(dataplane: &str, path: &str) {
    let c = chain_full_checksums(1, false);
    let rules = format!("{}min_ttl = 3\n", chain_rule());
    let relay = Relay::start(&c.relays[0], &relay_config(1, dataplane, &rules));
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let high = sender(&c.src, SRC_ADDR);
    let low = sender(&c.src, SRC_ADDR);
    low.set_multicast_ttl_v4(2).unwrap();
    let (n, below) = (300, 200);
    for i in 0..n {
        send_paced(&high, SocketAddrV4::new(GROUP, PORT), i, 1, 200, 1);
        if i < below {
            send_paced(
                &low,
                SocketAddrV4::new(GROUP, PORT),
                1_000_000 + i,
                1,
                200,
                1,
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    expect_all(&rx, n, 200, Duration::from_millis(400));
    let fin = relay.stop();
    assert_conserves(&fin);
    let flow = &fin.flows[0];
    assert_eq!(flow.path, path, "{flow:?}");
    assert_eq!((flow.packets, flow.below_min_ttl), (n, below), "{flow:?}");
    assert_eq!(flow.outputs[0].tx_sent, n);
    assert!(fin.totals.filtered >= below, "{:?}", fin.totals);
    if path == "kernel" {
        let fp = fin.fast_path.unwrap();
        assert_eq!((fp.counters.filtered, fp.counters.rx), (below, n + below));
    }
}
