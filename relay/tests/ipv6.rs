//! IPv6 through mcrd, end to end in namespaces (issue 22): on the userspace path one hop,
//! fan-out across families, three hops, SSM, the MLDv2 join and what the parser refuses
//! counted where it belongs; on the fast path three hops and the reason a rule that
//! translates stays in userspace; multicast to unicast on both paths.
//!
//! Topology: `chain(n)` from the common module (IPv4 as in e2e.rs) with IPv6 addresses added:
//! link k has `fd00:K::1` on node k's `out0` and `fd00:K::2` on node k+1's `in0`, with `nodad`
//! so they are usable at once. Each relay forwards `[ff3e::1234]:5000` arriving on `in0` out
//! of `out0`.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

const GROUP6: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0, 0x1234);

/// The sender's IPv6 address (on `src`'s `out0`).
fn src_addr6() -> Ipv6Addr {
    "fd00:0::1".parse().unwrap()
}

/// `chain(hops)` with IPv6 addresses on every link (see the module docs).
fn chain6(hops: usize) -> Chain {
    let c = chain(hops, false);
    let nodes: Vec<&Netns> = std::iter::once(&c.src)
        .chain(c.relays.iter())
        .chain(std::iter::once(&c.dst))
        .collect();
    for k in 0..nodes.len() - 1 {
        nodes[k].ip(&[
            "-6",
            "addr",
            "add",
            &format!("fd00:{k}::1/64"),
            "dev",
            "out0",
            "nodad",
        ]);
        nodes[k + 1].ip(&[
            "-6",
            "addr",
            "add",
            &format!("fd00:{k}::2/64"),
            "dev",
            "in0",
            "nodad",
        ]);
    }
    c
}

fn rule6(name: &str, source: Option<&str>, outputs: &str) -> String {
    let source = source.map_or(String::new(), |s| format!("source = \"{s}\"\n"));
    format!("[[rule]]\nname = \"{name}\"\ninput = \"in0\"\ngroup = \"{GROUP6}\"\n{source}port = {PORT}\noutputs = [{outputs}]\n")
}

fn out6(dest: &str) -> String {
    format!("{{ dest = \"{dest}\", port = {PORT}, interface = \"out0\", ttl = 8 }}")
}

/// The userspace path only (the tests of it; the fast path has its own).
fn userspace(rules: &str) -> String {
    relay_config(1, "fast_path = \"off\"", rules)
}

/// A UDP socket in `ns` that sends IPv6 multicast out of `ifname` with hop limit 8.
fn sender6(ns: &Netns, ifname: &str, local: Ipv6Addr) -> UdpSocket {
    ns.enter(|| {
        let s = UdpSocket::bind(SocketAddrV6::new(local, 0, 0, 0)).expect("binding the sender");
        let sock = socket2::SockRef::from(&s);
        sock.set_multicast_if_v6(relay::netif::index(ifname).unwrap())
            .unwrap();
        sock.set_multicast_hops_v6(8).unwrap();
        s
    })
}

/// A UDP socket in `ns` bound to `[group]:port`, joined (MLDv2) on `ifname`.
fn receiver6(ns: &Netns, group: Ipv6Addr, port: u16, ifname: &str) -> UdpSocket {
    ns.enter(|| {
        let sock = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
        sock.set_only_v6(true).unwrap();
        sock.set_reuse_address(true).unwrap();
        let _ = sock.set_recv_buffer_size(16 << 20);
        let ifindex = relay::netif::index(ifname).unwrap();
        // A link-local group is bound within its link.
        let scope = if group.segments()[0] & 0xff0f == 0xff02 {
            ifindex
        } else {
            0
        };
        sock.bind(&SocketAddrV6::new(group, port, 0, scope).into())
            .unwrap();
        sock.join_multicast_v6(&group, ifindex).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        sock.into()
    })
}

/// Sends `count` numbered payloads of `len` bytes to `dest` at about `pps`.
fn send6(tx: &UdpSocket, dest: SocketAddr, count: u64, len: usize, pps: u64) {
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / pps);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tx.send_to(&payload(i, len), dest).expect("send");
    }
}

/// `mcrctl rules add` of rule `name`: `[ff3e::1234]:5000` on in0 to the same group out of out0
/// with hop limit 8, with `extra` flags; (exit code, stdout, stderr).
fn add_rule6(relay: &Relay, name: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "rules",
        "add",
        "--name",
        name,
        "--input",
        "in0",
        "--group",
        "ff3e::1234",
        "--port",
        "5000",
        "--output",
        "[ff3e::1234]:5000@out0/8",
    ];
    args.extend_from_slice(extra);
    relay.mcrctl(&args)
}

fn flow<'a>(
    r: &'a relay::stats::report::StatsReport,
    name: &str,
) -> &'a relay::stats::report::FlowStats {
    r.flows
        .iter()
        .find(|f| f.rule == name)
        .expect("the rule's flow")
}

#[test]
fn ipv6_one_hop_forwards_every_datagram_and_joins_with_mldv2() {
    if !e2e_allowed("ipv6_one_hop") {
        return;
    }
    let c = chain6(1);
    let reports_before = snmp6(&c.relays[0], "Icmp6OutMLDv2Reports");
    let relay = Relay::start(
        &c.relays[0],
        &userspace(&rule6("v6", None, &out6(&GROUP6.to_string()))),
    );
    // The input joined the group (MLDv2), so a switch with MLD snooping sends it the flow.
    wait_for("the MLD membership on in0", Duration::from_secs(5), || {
        let t = c.relays[0]
            .command("cat")
            .arg("/proc/net/igmp6")
            .output()
            .unwrap();
        String::from_utf8_lossy(&t.stdout)
            .lines()
            .any(|l| l.contains("in0") && l.contains("ff3e0000000000000000000000001234"))
    });
    wait_for("an MLDv2 report", Duration::from_secs(5), || {
        snmp6(&c.relays[0], "Icmp6OutMLDv2Reports") > reports_before
    });
    // Checksums computed in software on the way out, so the receiver verifies each one.
    let offload = c.relays[0]
        .command("ethtool")
        .args(["-K", "out0", "tx", "off"])
        .output()
        .expect("ethtool");
    assert!(offload.status.success(), "{offload:?}");
    let rx = receiver6(&c.dst, GROUP6, PORT, "in0");
    let tx = sender6(&c.src, "out0", src_addr6());
    let n = 3000;
    send6(
        &tx,
        SocketAddrV6::new(GROUP6, PORT, 0, 0).into(),
        n,
        1400,
        10_000,
    );
    expect_all(&rx, n, 1400, Duration::from_millis(500));
    let r = relay.stop();
    assert_conserves(&r);
    let f = flow(&r, "v6");
    assert_eq!((f.group.as_str(), f.packets), ("ff3e::1234", n));
    assert_eq!(f.outputs[0].tx_sent, n);
    assert_eq!(r.totals.malformed, 0);
    assert_eq!(r.totals.tx_errors, 0);
    assert_eq!(snmp6(&c.dst, "Udp6InCsumErrors"), 0);
    assert!(snmp6(&c.dst, "Udp6InDatagrams") >= n);
}

#[test]
fn ipv6_three_hops_and_fan_out_across_families() {
    if !e2e_allowed("ipv6_three_hops") {
        return;
    }
    let c = chain6(3);
    // Each relay sends IPv6 on; the last also sends the flow on as IPv4 (translation: the
    // payload is the same datagram's, under an IPv4 header).
    let both = format!(
        "{}, {{ dest = \"{GROUP}\", port = {PORT}, interface = \"out0\", ttl = 8 }}",
        out6(&GROUP6.to_string())
    );
    let relays: Vec<Relay> = c
        .relays
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let outputs = if i == 2 {
                both.clone()
            } else {
                out6(&GROUP6.to_string())
            };
            Relay::start(ns, &userspace(&rule6("v6", None, &outputs)))
        })
        .collect();
    let rx6 = receiver6(&c.dst, GROUP6, PORT, "in0");
    let rx4 = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender6(&c.src, "out0", src_addr6());
    let n = 2000;
    send6(
        &tx,
        SocketAddrV6::new(GROUP6, PORT, 0, 0).into(),
        n,
        1000,
        10_000,
    );
    expect_all(&rx6, n, 1000, Duration::from_millis(500));
    expect_all(&rx4, n, 1000, Duration::from_millis(300));
    for relay in relays {
        let r = relay.stop();
        assert_conserves(&r);
        assert_eq!(flow(&r, "v6").packets, n);
    }
}

#[test]
fn ipv4_input_to_ipv6_output() {
    if !e2e_allowed("ipv4_to_ipv6") {
        return;
    }
    let c = chain6(1);
    let rules = rule("four-to-six", GROUP, PORT, &out6(&GROUP6.to_string()));
    let relay = Relay::start(&c.relays[0], &userspace(&rules));
    let rx = receiver6(&c.dst, GROUP6, PORT, "in0");
    let tx = sender(&c.src, SRC_ADDR);
    let n = 1500;
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), 0, n, 1200, 10_000);
    expect_all(&rx, n, 1200, Duration::from_millis(500));
    let r = relay.stop();
    assert_conserves(&r);
    assert_eq!(flow(&r, "four-to-six").outputs[0].tx_sent, n);
}

#[test]
fn ipv6_source_specific_rules_match_only_their_source() {
    if !e2e_allowed("ipv6_ssm") {
        return;
    }
    let c = chain6(1);
    let rules = format!(
        "{}{}",
        rule6("right", Some("fd00::1"), &out6(&GROUP6.to_string())),
        rule6("wrong", Some("fd00:99::9"), &out6("ff3e::99"),)
    );
    let relay = Relay::start(&c.relays[0], &userspace(&rules));
    // Both joined source-specifically: /proc/net/mcfilter6 lists each source.
    wait_for("the SSM joins", Duration::from_secs(5), || {
        let t = c.relays[0]
            .command("cat")
            .arg("/proc/net/mcfilter6")
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&t.stdout).to_string();
        t.contains("fd000000000000000000000000000001")
            && t.contains("fd000099000000000000000000000009")
    });
    let rx_right = receiver6(&c.dst, GROUP6, PORT, "in0");
    let rx_wrong = receiver6(&c.dst, "ff3e::99".parse().unwrap(), PORT, "in0");
    let tx = sender6(&c.src, "out0", src_addr6());
    send6(
        &tx,
        SocketAddrV6::new(GROUP6, PORT, 0, 0).into(),
        500,
        200,
        5_000,
    );
    expect_all(&rx_right, 500, 200, Duration::from_millis(400));
    assert!(drain(&rx_wrong, Duration::from_millis(300), 10).is_empty());
    let r = relay.stop();
    assert_eq!(flow(&r, "right").packets, 500);
    assert_eq!(flow(&r, "wrong").packets, 0);
}

/// The fast path forwards IPv6 to IPv6 on three hops: every relay's rule runs in the kernel,
/// every datagram arrives once (the first relay's input also has a rule in userspace, so its
/// packet socket's filter must leave the kernel's flow alone). A rule that translates to IPv4
/// stays in userspace and says why.
fn ipv6_rides_the_fast_path_on_three_hops_and_translation_says_why(mode: Attach) {
    if !e2e_allowed("ipv6_fast_path") {
        return;
    }
    let c = chain6(3);
    let v6to4: Ipv6Addr = "ff3e::99".parse().unwrap();
    let translating = format!(
        "[[rule]]\nname = \"to4\"\ninput = \"in0\"\ngroup = \"{v6to4}\"\nport = {PORT}\noutputs = [{{ dest = \"{GROUP}\", port = {PORT}, interface = \"out0\", ttl = 8 }}]\n"
    );
    let relays: Vec<Relay> = c
        .relays
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let mut rules = rule6("v6", None, &out6(&GROUP6.to_string()));
            if i == 0 {
                rules += &translating;
            }
            Relay::start(ns, &relay_config(1, &required(mode), &rules))
        })
        .collect();
    let r = relays[0].stats();
    let path = |name: &str| {
        let f = flow(&r, name);
        (f.path.clone(), f.path_reason.clone().unwrap_or_default())
    };
    assert_eq!(path("v6").0, "kernel", "{:?}", path("v6"));
    let (p, why) = path("to4");
    assert_eq!(p, "userspace");
    assert!(why.contains("translation"), "{why}");
    for relay in &relays[1..] {
        let r = relay.stats();
        assert_eq!(flow(&r, "v6").path, "kernel");
    }

    let rx = receiver6(&c.dst, GROUP6, PORT, "in0");
    let tx = sender6(&c.src, "out0", src_addr6());
    let n = 2000;
    send6(
        &tx,
        SocketAddrV6::new(GROUP6, PORT, 0, 0).into(),
        n,
        1000,
        10_000,
    );
    expect_all(&rx, n, 1000, Duration::from_millis(500));
    for relay in relays {
        let r = relay.stop();
        assert_conserves(&r);
        let f = flow(&r, "v6");
        assert_eq!(f.packets, n, "{f:?}");
        assert_eq!(f.path, "kernel");
    }
}

/// An untagged Ethernet/IPv6 frame from `fd00::1` to `[ff3e::1234]:PORT` with `extensions`
/// between the headers (`first_next` naming the first), checksums filled in.
fn frame6(first_next: u8, extensions: &[u8], payload: &[u8]) -> Vec<u8> {
    use relay::wire::{ethernet, ipv6, udp};
    let mut datagram = vec![0u8; udp::HEADER_LEN + payload.len()];
    datagram[udp::HEADER_LEN..].copy_from_slice(payload);
    udp::Repr {
        source_port: 4000,
        destination_port: PORT,
    }
    .emit_ipv6(&mut datagram, &src_addr6(), &GROUP6)
    .unwrap();
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv6::HEADER_LEN];
    ethernet::Frame::emit(
        &mut f[..],
        [0x33, 0x33, 0, 0, 0x12, 0x34],
        [0x02, 0, 0, 0, 0, 1],
        0x86dd,
    )
    .unwrap();
    ipv6::Repr {
        source: src_addr6(),
        destination: GROUP6,
        next_header: first_next,
        hop_limit: 8,
        traffic_class: 0,
        payload_len: (extensions.len() + datagram.len()) as u16,
    }
    .emit(&mut f[ethernet::HEADER_LEN..])
    .unwrap();
    f.extend_from_slice(extensions);
    f.extend_from_slice(&datagram);
    f
}

#[test]
fn ipv6_frames_the_relay_must_not_forward_are_counted_by_kind() {
    if !e2e_allowed("ipv6_malformed") {
        return;
    }
    use relay::wire::ipv6::next_header as nh;
    let c = chain6(1);
    let relay = Relay::start(
        &c.relays[0],
        &userspace(&rule6("v6", None, &out6(&GROUP6.to_string()))),
    );
    let rx = receiver6(&c.dst, GROUP6, PORT, "in0");
    let raw = raw_socket(&c.src, "out0");
    let udp_at = 14 + 40;
    let good = frame6(nh::UDP, &[], &payload(0, 100));
    let mut zero_checksum = good.clone();
    zero_checksum[udp_at + 6..udp_at + 8].copy_from_slice(&[0, 0]);
    let mut bad_checksum = good.clone();
    bad_checksum[udp_at + 7] ^= 0x40;
    let fragment = frame6(
        nh::FRAGMENT,
        &[nh::UDP, 0, 0, 1, 0, 0, 0, 5],
        &payload(1, 100),
    );
    let routed = frame6(
        nh::ROUTING,
        &[nh::UDP, 0, 0, 1, 0, 0, 0, 0],
        &payload(2, 100),
    );
    // Hop-by-hop options (a router alert), then UDP: forwarded.
    let hop_by_hop = frame6(
        nh::HOP_BY_HOP,
        &[nh::UDP, 0, 5, 2, 0, 0, 1, 0],
        &payload(1, 100),
    );
    for _ in 0..10 {
        for f in [&zero_checksum, &bad_checksum, &fragment, &routed] {
            raw_send(&raw, f);
        }
    }
    raw_send(&raw, &good);
    raw_send(&raw, &hop_by_hop);
    let got = drain(&rx, Duration::from_millis(400), 10);
    assert_eq!(check_payloads(&got, 100), vec![0, 1]);
    let r = relay.stop();
    assert_conserves(&r);
    let kind = |k: &str| r.totals.malformed_by_kind.get(k).copied().unwrap_or(0);
    assert_eq!(
        kind("bad_udp_checksum"),
        20,
        "{:?}",
        r.totals.malformed_by_kind
    );
    assert_eq!(kind("fragment"), 10);
    assert_eq!(kind("extension_headers"), 10);
    assert_eq!(flow(&r, "v6").packets, 2);
    assert_eq!(flow(&r, "v6").outputs[0].tx_sent, 2);
}

/// A counter of `/proc/net/snmp6` in `ns`.
fn snmp6(ns: &Netns, field: &str) -> u64 {
    let out = ns.command("cat").arg("/proc/net/snmp6").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(field)).then(|| it.next().and_then(|v| v.parse().ok()))?
        })
        .unwrap_or(0)
}

#[test]
fn ipv6_rules_from_mcrctl_take_bracketed_outputs() {
    if !e2e_allowed("ipv6_mcrctl") {
        return;
    }
    let c = chain6(1);
    let relay = Relay::start(&c.relays[0], &userspace(""));
    let (code, _, err) = add_rule6(&relay, "cli6", &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = relay.mcrctl(&[
        "rules",
        "add",
        "--name",
        "mixed",
        "--input",
        "in0",
        "--group",
        "ff3e::1",
        "--source",
        "10.0.0.1",
        "--port",
        "5000",
        "--output",
        "239.9.9.9:5000@out0",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("of one family"), "{err}");
    let rx = receiver6(&c.dst, GROUP6, PORT, "in0");
    let tx = sender6(&c.src, "out0", src_addr6());
    send6(
        &tx,
        SocketAddrV6::new(GROUP6, PORT, 0, 0).into(),
        300,
        64,
        5_000,
    );
    expect_all(&rx, 300, 64, Duration::from_millis(400));
    let _ = (IpAddr::from(Ipv4Addr::LOCALHOST), relay.stop());
}

#[test]
fn a_link_local_group_is_relayed_to_the_next_segment() {
    if !e2e_allowed("ipv6_link_local") {
        return;
    }
    // The reason some people run a relay: ff02:: never leaves its link, so only a relay
    // carries it to the next one. The input interface is the group's scope.
    let c = chain6(1);
    let link_local: Ipv6Addr = "ff02::1:3000".parse().unwrap();
    let rules = format!(
        "[[rule]]\nname = \"ll\"\ninput = \"in0\"\ngroup = \"{link_local}\"\nport = {PORT}\noutputs = [{}]\n",
        out6(&link_local.to_string())
    );
    let relay = Relay::start(&c.relays[0], &userspace(&rules));
    let rx = receiver6(&c.dst, link_local, PORT, "in0");
    let tx = sender6(&c.src, "out0", src_addr6());
    let scope = c.src.enter(|| relay::netif::index("out0").unwrap());
    let dest = SocketAddrV6::new(link_local, PORT, 0, scope);
    send6(&tx, dest.into(), 400, 500, 5_000);
    expect_all(&rx, 400, 500, Duration::from_millis(400));
    let r = relay.stop();
    assert_eq!(flow(&r, "ll").outputs[0].tx_sent, 400);
}

#[test]
fn ipv6_multicast_to_unicast_from_a_fixed_source_address_and_port() {
    if !e2e_allowed("ipv6_unicast_output") {
        return;
    }
    let output = "{ dest = \"fd00:1::2\", port = 7000, interface = \"out0\", source = \"fd00:1::1\", source_port = 7777 }";
    unicast_output_forwards_all(&userspace(&rule6("uni", None, output)), "userspace");
}

/// The same on the fast path, the source address the kernel's route gives (the output names
/// none), the next hop's MAC its neighbour entry's.
fn ipv6_multicast_to_unicast_on_the_fast_path(mode: Attach) {
    if !e2e_allowed("ipv6_unicast_output_fast_path") {
        return;
    }
    let output = "{ dest = \"fd00:1::2\", port = 7000, interface = \"out0\", source_port = 7777 }";
    let config = relay_config(1, &required(mode), &rule6("uni", None, output));
    unicast_output_forwards_all(&config, "kernel");
}

/// Runs `config`'s rule `uni` (to `[fd00:1::2]:7000` from port 7777) on one relay, once it
/// is on `path`: 300 datagrams arrive from `[fd00:1::1]:7777`.
fn unicast_output_forwards_all(config: &str, path: &str) {
    let c = chain6(1);
    let relay = Relay::start(&c.relays[0], config);
    // While neighbour discovery runs the kernel queues only a few datagrams, and this test
    // is not about that; the fast path takes the rule once the entry is there (within the
    // second its plan is made again).
    pin_neighbour(&c.relays[0], "out0", &c.dst, "in0", "fd00:1::2");
    wait_for(
        &format!("rule uni on the {path} path"),
        Duration::from_secs(5),
        || flow(&relay.stats(), "uni").path == path,
    );
    // Read only once all is sent: a receive buffer for all 300 (the default holds 166).
    let rx = c.dst.enter(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
        s.set_recv_buffer_size(4 << 20).unwrap();
        s.bind(&"[::]:7000".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        UdpSocket::from(s)
    });
    let tx = sender6(&c.src, "out0", src_addr6());
    send6(
        &tx,
        SocketAddrV6::new(GROUP6, PORT, 0, 0).into(),
        300,
        256,
        5_000,
    );
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < 300 && Instant::now() < deadline {
        if let Ok((n, from)) = rx.recv_from(&mut buf) {
            assert_eq!(from, "[fd00:1::1]:7777".parse::<SocketAddr>().unwrap());
            got.push(buf[..n].to_vec());
        }
    }
    assert_eq!(check_payloads(&got, 256), (0..300).collect::<Vec<_>>());
    let r = relay.stop();
    assert_eq!(flow(&r, "uni").outputs[0].output, "[fd00:1::2]:7000@out0");
    assert_eq!(flow(&r, "uni").outputs[0].tx_sent, 300);
}

/// The fast path checks an IPv6 datagram with the sum the kernel already took
/// (CHECKSUM_COMPLETE) instead of summing it again: good datagrams are forwarded, a wrong
/// checksum is still refused and counted. IPv6 has no header checksum, so the program takes
/// the header's sum off the kernel's: a mistake there would refuse every good datagram or
/// pass every bad one. The frames are decapsulated VXLAN, which the relay's stack hands to
/// `vx0` as CHECKSUM_COMPLETE (see `hardening_fastpath.rs` for IPv4). Prints the program's time
/// per frame.
fn decapsulated_ipv6_frames_are_checked_with_the_kernel_s_sum(mode: Attach) {
    if !e2e_allowed("ipv6_checksum_complete") {
        return;
    }
    // Inner frame 14 + 40 + 8 + LEN, outer 50 more: within the veth's 1500.
    const LEN: usize = 1290;
    const UDP_CSUM: usize = 14 + 40 + 6;
    let c = chain6(1);
    let r = &c.relays[0];
    add_vxlan_input(r);
    let rule = rule6("v6", None, &out6(&GROUP6.to_string())).replace("\"in0\"", "\"vx0\"");
    let relay = Relay::start(r, &relay_config(1, &required(mode), &rule));
    let rx = receiver6(&c.dst, GROUP6, PORT, "in0");
    let raw = raw_socket(&c.src, "out0");
    let (in0_mac, id) = r.enter(|| {
        let mac = relay::fastpath::resolve::link("in0").unwrap().mac;
        let ids = relay::fastpath::mcrd_programs_on(relay::netif::index("vx0").unwrap());
        (mac, ids.unwrap()[0])
    });
    let n = 100u64;
    let good = |i| frame6(17, &[], &payload(i, LEN));
    let (time, runs) = send_good_and_bad_in_vxlan(&raw, in0_mac, id, n, good, UDP_CSUM);
    let got = drain(&rx, Duration::from_millis(500), 2 * n as usize);
    assert_eq!(check_payloads(&got, LEN), (0..n).collect::<Vec<_>>());
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(fin.flows[0].path, "kernel");
    assert_eq!(
        fin.totals.malformed_by_kind.get("bad_udp_checksum"),
        Some(&n),
        "{:?}",
        fin.totals.malformed_by_kind
    );
    assert!(runs >= 2 * n, "{runs} runs for {} frames", 2 * n);
    eprintln!(
        "decapsulated IPv6 {LEN}-byte datagrams (CHECKSUM_COMPLETE): {:.0} ns/frame in the program over {runs} runs",
        time as f64 / runs as f64
    );
}

on_each_hook!(
    ipv6_rides_the_fast_path_on_three_hops_and_translation_says_why,
    ipv6_multicast_to_unicast_on_the_fast_path,
    decapsulated_ipv6_frames_are_checked_with_the_kernel_s_sum,
    hop_limit_1_is_not_forwarded_under_min_ttl_2_on_the_fast_path,
);

#[test]
fn hop_limit_1_is_not_forwarded_under_min_ttl_2_in_userspace() {
    if !e2e_allowed("ipv6_min_ttl") {
        return;
    }
    // The rule from mcrctl, as an operator would add it.
    let c = chain6(1);
    let relay = Relay::start(&c.relays[0], &userspace(""));
    let (code, _, err) = add_rule6(&relay, "z", &["--min-ttl", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("--min-ttl"), "{err}");
    let (code, _, err) = add_rule6(&relay, "h", &["--min-ttl", "2"]);
    assert_eq!(code, 0, "{err}");
    let (_, list, _) = relay.mcrctl(&["rules", "list"]);
    assert!(list.contains("min ttl 2 ->"), "{list}");
    hop_limit_1_counted_not_forwarded(&c, relay, "userspace");
}

fn hop_limit_1_is_not_forwarded_under_min_ttl_2_on_the_fast_path(mode: Attach) {
    if !e2e_allowed("ipv6_min_ttl_fast_path") {
        return;
    }
    let rule = format!(
        "{}min_ttl = 2\n",
        rule6("h", None, &out6(&GROUP6.to_string()))
    );
    let c = chain6(1);
    let relay = Relay::start(&c.relays[0], &relay_config(1, &required(mode), &rule));
    hop_limit_1_counted_not_forwarded(&c, relay, "kernel");
}

/// Hop limit 1 (the IPv6 multicast default) under `min_ttl = 2`: 200 such datagrams,
/// interleaved with 300 at hop limit 8, are counted in the flow's `below_min_ttl` and not
/// forwarded; the 300 all are, on the path `path`. `relay` runs the rule `h` on `c`.
fn hop_limit_1_counted_not_forwarded(c: &Chain, relay: Relay, path: &str) {
    let rx = receiver6(&c.dst, GROUP6, PORT, "in0");
    let high = sender6(&c.src, "out0", src_addr6());
    let low = sender6(&c.src, "out0", src_addr6());
    socket2::SockRef::from(&low)
        .set_multicast_hops_v6(1)
        .unwrap();
    let dest = SocketAddr::from(SocketAddrV6::new(GROUP6, PORT, 0, 0));
    let (n, below) = (300, 200);
    for i in 0..n {
        high.send_to(&payload(i, 200), dest).expect("send");
        if i < below {
            low.send_to(&payload(1_000_000 + i, 200), dest)
                .expect("send");
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    expect_all(&rx, n, 200, Duration::from_millis(400));
    let r = relay.stop();
    assert_conserves(&r);
    let f = flow(&r, "h");
    assert_eq!(f.path, path, "{f:?}");
    assert_eq!((f.packets, f.below_min_ttl), (n, below), "{f:?}");
    assert_eq!(f.outputs[0].tx_sent, n);
}
