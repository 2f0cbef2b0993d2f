//! End-to-end tests of how the kernel fast path meets kernels older than this one (issue 20):
//! the hook chosen (`[dataplane] fast_path_attach`, tcx or a clsact qdisc filter), the clsact
//! filter's lifetime (deleted at exit; after `kill -9`, by the next daemon, never a live
//! daemon's), and the program for kernels without `bpf_loop`.
//!
//! This kernel has tcx and `bpf_loop`; an older one cannot be booted here (nested KVM cannot
//! boot a stock kernel). `MCR_TEST_KERNEL_LACKS=tcx,bpf_loop` (`relay::fastpath::probe`)
//! makes mcrd act as if the kernel lacked them: it then takes the very path it takes on such a
//! kernel (the other hook, the other program), which these tests check; what they cannot
//! check is an old verifier's verdict on that program.

mod common;

use std::net::SocketAddrV4;
use std::time::Duration;

use common::*;

const LACKS: &str = "MCR_TEST_KERNEL_LACKS";

/// `tc filter show dev IF ingress` in `ns`.
fn ingress_filters(ns: &Netns, ifname: &str) -> String {
    tc(ns, &["filter", "show", "dev", ifname, "ingress"])
}

/// Whether `ifname` in `ns` has a clsact qdisc.
fn has_clsact(ns: &Netns, ifname: &str) -> bool {
    tc(ns, &["qdisc", "show", "dev", ifname]).contains("clsact")
}

/// Sends 300 datagrams through the chain and checks they all arrive.
fn forwards(c: &Chain, first: u64) {
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let tx = sender(&c.src, SRC_ADDR);
    send_paced(&tx, SocketAddrV4::new(GROUP, PORT), first, 300, 500, 5_000);
    let got = drain(&rx, Duration::from_millis(300), 400);
    assert_eq!(
        check_payloads(&got, 500),
        (first..first + 300).collect::<Vec<_>>()
    );
}

#[test]
fn auto_attaches_with_tcx_on_this_kernel_and_with_clsact_where_tcx_is_missing() {
    if !e2e_allowed("auto_attaches_with_tcx_on_this_kernel_and_with_clsact_where_tcx_is_missing") {
        return;
    }
    let c = chain(1, false);
    let r0 = &c.relays[0];
    let auto = "fast_path = \"required\"\nfast_path_attach = \"auto\"";
    let config = relay_config(1, auto, &chain_rule());

    let relay = Relay::start(r0, &config);
    let fp = relay.stats().fast_path.expect("fast path");
    assert_eq!(
        (fp.attach.as_str(), fp.missing_features.len()),
        ("tcx", 0),
        "{fp:?}"
    );
    assert!(relay
        .log_text()
        .contains("fast path attached (tcx ingress)"));
    assert!(!has_clsact(r0, "in0"), "tcx needs no qdisc");
    forwards(&c, 0);
    let fin = relay.stop();
    assert_eq!(fin.fast_path.unwrap().counters.tx_sent, 300);
    assert!(mcrd_programs(r0, "in0").is_empty());

    // Where the kernel has no tcx, `auto` takes a clsact qdisc.
    let relay = Relay::start_env(r0, &config, &[(LACKS, "tcx")]);
    let fp = relay.stats().fast_path.expect("fast path");
    assert_eq!(fp.attach, "clsact");
    assert_eq!(fp.missing_features, ["tcx"]);
    let log = relay.log_text();
    assert!(
        log.contains("fast path attached (clsact ingress)")
            && log.contains("has no tcx (Linux 6.6)")
            && log.contains("acting as if this kernel lacked tcx"),
        "{log}"
    );
    let filters = ingress_filters(r0, "in0");
    assert!(
        filters.contains("mcr_fastpath")
            && filters.contains("pref 49374")
            && filters.contains("handle 0x4d4352")
            && filters.contains("direct-action"),
        "{filters}"
    );
    assert_eq!(mcrd_programs(r0, "in0"), [fp.program_id]);
    forwards(&c, 300);
    let fin = relay.stop();
    assert_conserves(&fin);
    assert_eq!(fin.fast_path.unwrap().counters.tx_sent, 300);
    // At exit mcrd deletes its filter, and the qdisc it created for it.
    assert_eq!(ingress_filters(r0, "in0"), "");
    assert!(!has_clsact(r0, "in0"));
}

#[test]
fn a_forced_tcx_on_a_kernel_without_tcx_is_refused_naming_the_key() {
    if !e2e_allowed("a_forced_tcx_on_a_kernel_without_tcx_is_refused_naming_the_key") {
        return;
    }
    let c = chain(1, false);
    let r0 = &c.relays[0];
    let config = relay_config(1, &required(Attach::Tcx), &chain_rule());
    let (code, err) = mcrd_refusing(r0, &config, &[], &[(LACKS, "tcx")]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("fast_path_attach = \"tcx\"") && err.contains("no tcx (Linux 6.6)"),
        "{err}"
    );
    // `auto`: userspace, saying why.
    let relay = Relay::start_env(
        r0,
        &relay_config(
            1,
            "fast_path = \"auto\"\nfast_path_attach = \"tcx\"",
            &chain_rule(),
        ),
        &[(LACKS, "tcx")],
    );
    forwards(&c, 0);
    let fin = relay.stop();
    assert!(fin.fast_path.is_none());
    assert_eq!(fin.flows[0].path, "userspace");
    assert!(
        fin.flows[0]
            .path_reason
            .as_deref()
            .unwrap_or("")
            .contains("fast_path_attach"),
        "{:?}",
        fin.flows[0]
    );
}

/// A clsact filter outlives its daemon: after `kill -9` it goes on forwarding with the dead
/// daemon's rules until the next mcrd on that input removes it, saying so at WARN, whichever
/// hook that one uses.
#[test]
fn a_kill_9ed_daemons_clsact_filter_is_removed_by_the_next_start() {
    if !e2e_allowed("a_kill_9ed_daemons_clsact_filter_is_removed_by_the_next_start") {
        return;
    }
    let c = chain(1, false);
    let r0 = &c.relays[0];
    let clsact = relay_config(1, &required(Attach::Clsact), &chain_rule());
    let mut relay = Relay::start(r0, &clsact);
    let dead = relay.stats().fast_path.unwrap().program_id;
    relay.signal(libc::SIGKILL);
    wait_for("mcrd to die", Duration::from_secs(5), || {
        !relay.is_running()
    });
    drop(relay);
    assert_eq!(mcrd_programs(r0, "in0"), [dead], "the filter outlived mcrd");
    // With no daemon left, the dead one's program still forwards.
    forwards(&c, 0);

    // The next daemon (clsact, with the packaged unit's capabilities: it cannot see root's
    // processes) finds it, removes it, and attaches its own.
    let relay = Relay::start_as(r0, &clsact, Some(UNIT_CAPS));
    let live = relay.stats().fast_path.unwrap().program_id;
    assert_ne!(live, dead);
    assert_eq!(mcrd_programs(r0, "in0"), [live]);
    let log = relay.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("removed a stale mcrd fast path"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("WARN")
            && warning.contains("in0")
            && warning.contains(&format!("program {dead}")),
        "{warning}"
    );
    forwards(&c, 300);
    let mut relay = relay;
    let fin_stats = relay.stats();
    assert_eq!(fin_stats.fast_path.unwrap().counters.tx_sent, 300);

    // Again, and this time the next daemon uses tcx: the stale filter goes all the same.
    relay.signal(libc::SIGKILL);
    wait_for("mcrd to die", Duration::from_secs(5), || {
        !relay.is_running()
    });
    drop(relay);
    assert_eq!(mcrd_programs(r0, "in0"), [live]);
    let relay = Relay::start(r0, &relay_config(1, &required(Attach::Tcx), &chain_rule()));
    let tcx = relay.stats().fast_path.unwrap();
    assert_eq!(tcx.attach, "tcx");
    assert_eq!(mcrd_programs(r0, "in0"), [tcx.program_id]);
    assert!(
        relay
            .log_text()
            .contains(&format!("program {live} in a clsact ingress filter")),
        "{}",
        relay.log_text()
    );
    assert_eq!(ingress_filters(r0, "in0"), "");
    forwards(&c, 600);
    let fin = relay.stop();
    assert_eq!(fin.fast_path.unwrap().counters.tx_sent, 300);
    assert!(mcrd_programs(r0, "in0").is_empty());
}

/// Two daemons on one input with different hooks (only a config forcing them can do that):
/// the second sees the first's program and is refused, and never takes a live daemon's
/// filter for a stale one.
#[test]
fn daemons_on_different_hooks_see_each_other() {
    if !e2e_allowed("daemons_on_different_hooks_see_each_other") {
        return;
    }
    let c = chain(1, false);
    let r0 = &c.relays[0];
    for (first, second) in [(Attach::Clsact, Attach::Tcx), (Attach::Tcx, Attach::Clsact)] {
        let relay = Relay::start(r0, &relay_config(1, &required(first), &chain_rule()));
        let id = relay.stats().fast_path.unwrap().program_id;
        let config = relay_config(1, &required(second), &chain_rule());
        let (code, err) = mcrd_refusing(r0, &config, &[], &[]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains(&format!(
                "already has an mcrd fast path attached ({}, program id {id}",
                first.name()
            )),
            "{first:?} then {second:?}: {err}"
        );
        assert!(!err.contains("stale"), "{err}");
        assert_eq!(mcrd_programs(r0, "in0"), [id]);
        forwards(&c, 0);
        relay.stop();
        assert!(mcrd_programs(r0, "in0").is_empty());
    }
}

/// mcrd deletes the clsact qdisc at exit only if it created it and nothing else is on it.
#[test]
fn the_clsact_qdisc_goes_only_if_mcrd_created_it_and_nothing_else_is_on_it() {
    if !e2e_allowed("the_clsact_qdisc_goes_only_if_mcrd_created_it_and_nothing_else_is_on_it") {
        return;
    }
    let c = chain(1, false);
    let r0 = &c.relays[0];
    let config = relay_config(1, &required(Attach::Clsact), &chain_rule());
    // A classic BPF filter that matches nothing: cls_bpf is built in, other classifiers may
    // be modules this kernel lacks.
    let foreign = [
        "filter",
        "add",
        "dev",
        "in0",
        "egress",
        "pref",
        "1",
        "bpf",
        "bytecode",
        "1,6 0 0 0,",
    ];

    // Created by mcrd, and another filter added meanwhile: the qdisc stays, with it.
    let relay = Relay::start(r0, &config);
    assert!(has_clsact(r0, "in0"));
    tc(r0, &foreign);
    relay.stop();
    assert!(has_clsact(r0, "in0"));
    assert_eq!(ingress_filters(r0, "in0"), "", "mcrd's filter is gone");
    assert!(tc(r0, &["filter", "show", "dev", "in0", "egress"]).contains("bytecode"));

    // There before mcrd, empty: it stays too (it is not mcrd's).
    tc(r0, &["qdisc", "del", "dev", "in0", "clsact"]);
    tc(r0, &["qdisc", "add", "dev", "in0", "clsact"]);
    let relay = Relay::start(r0, &config);
    forwards(&c, 0);
    relay.stop();
    assert!(has_clsact(r0, "in0"));
    assert_eq!(ingress_filters(r0, "in0"), "");
}

/// A kernel without `bpf_loop` (Linux < 5.17) gets the program that sums UDP checksums with a
/// bounded loop, and `monitor = "rtp"` rules run in userspace, saying why; with the packaged
/// unit's capabilities (no CAP_PERFMON, under which the verifier is stricter).
#[test]
fn without_bpf_loop_checksums_are_checked_and_rtp_rules_run_in_userspace() {
    if !e2e_allowed("without_bpf_loop_checksums_are_checked_and_rtp_rules_run_in_userspace") {
        return;
    }
    let c = chain(1, false);
    let r0 = &c.relays[0];
    let rtp = rule(
        "rtp",
        std::net::Ipv4Addr::new(239, 1, 1, 2),
        PORT,
        "{ dest = \"239.1.1.2\", port = 5000, interface = \"out0\", ttl = 8 }",
    ) + "monitor = \"rtp\"\n";
    let rules = format!("{}\n{rtp}", chain_rule());
    // The capabilities of packaging/mcrd.service, as user nobody, and no bpf_loop.
    let unit_caps: Vec<&str> = ["env", "MCR_TEST_KERNEL_LACKS=bpf_loop"]
        .into_iter()
        .chain(UNIT_CAPS.iter().copied())
        .collect();
    let relay = Relay::start_as(
        r0,
        &relay_config(1, &required(Attach::Clsact), &rules),
        Some(&unit_caps),
    );
    let live = relay.stats();
    let fp = live.fast_path.as_ref().unwrap();
    assert_eq!(fp.missing_features, ["bpf_loop"]);
    eprintln!(
        "program without bpf_loop, loaded with CAP_BPF and CAP_NET_ADMIN only: {} verifier \
         instructions",
        fp.verified_insns
    );
    let flow = |r: &relay::stats::report::StatsReport, name: &str| {
        r.flows.iter().find(|f| f.rule == name).unwrap().clone()
    };
    assert_eq!(flow(&live, "chain").path, "kernel");
    let rtp_flow = flow(&live, "rtp");
    assert_eq!(rtp_flow.path, "userspace");
    assert!(
        rtp_flow
            .path_reason
            .as_deref()
            .unwrap_or("")
            .contains("bpf_loop helper (Linux 5.17)"),
        "{rtp_flow:?}"
    );
    let log = relay.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("lacks the bpf_loop helper")),
        "{log}"
    );
    // Datagrams with their UDP checksum (two chunks of the loop, and a bit), half of them
    // spoiled: the good ones are forwarded, the others counted and dropped as userspace does.
    let rx = receiver(&c.dst, GROUP, PORT, c.dst_addr());
    let raw = raw_socket(&c.src, "out0");
    let n = 100u64;
    for seq in 0..2 * n {
        let mut f = frame(&payload(seq, 600), 4000);
        if seq % 2 == 1 {
            f[40] ^= 0x5a;
        }
        raw_send(&raw, &f);
        std::thread::sleep(Duration::from_micros(200));
    }
    let got = drain(&rx, Duration::from_millis(300), 2 * n as usize);
    let seqs = check_payloads(&got, 600);
    assert_eq!(seqs, (0..2 * n).step_by(2).collect::<Vec<_>>());
    let fin = relay.stop();
    assert_conserves(&fin);
    let counters = fin.fast_path.unwrap().counters;
    assert_eq!(counters.tx_sent, n);
    assert_eq!(counters.malformed_by_kind.get("bad_udp_checksum"), Some(&n));
}

/// With the packaged unit's capabilities (no CAP_SYS_ADMIN, so no program can be opened by
/// its id to read its name), a second daemon still sees the first's program, on either hook.
#[test]
fn a_second_daemon_with_the_units_capabilities_is_refused_on_either_hook() {
    if !e2e_allowed("a_second_daemon_with_the_units_capabilities_is_refused_on_either_hook") {
        return;
    }
    let c = chain(1, false);
    let r0 = &c.relays[0];
    for mode in [Attach::Tcx, Attach::Clsact] {
        let config = relay_config(1, &required(mode), &chain_rule());
        let first = Relay::start_as(r0, &config, Some(UNIT_CAPS));
        let id = first.stats().fast_path.unwrap().program_id;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("second.toml");
        std::fs::write(
            &path,
            format!(
                "[control]\nsocket = \"{}\"\n\n{config}",
                dir.path().join("s.sock").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut second = r0
            .command(UNIT_CAPS[0])
            .args(&UNIT_CAPS[1..])
            .arg(env!("CARGO_BIN_EXE_mcrd"))
            .arg("--config")
            .arg(&path)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A daemon that attached beside the first would run on: kill it, and fail.
        let started = std::time::Instant::now();
        while second.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = second.kill();
        let out = second.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {err}");
        assert!(
            err.contains(&format!(
                "already has an mcrd fast path attached ({}, program id {id}",
                mode.name()
            )),
            "{mode:?}: {err}"
        );
        assert_eq!(mcrd_programs(r0, "in0"), [id]);
        first.stop();
    }
}
