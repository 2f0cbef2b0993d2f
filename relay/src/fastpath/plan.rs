//! Which rules the kernel program runs, and why the others do not.
//!
//! A pure decision over the rule table, the state of each input's attachment and what the
//! host says about output interfaces and neighbours (through [`Host`]). It touches no kernel
//! object, so it is tested without privileges; `links.rs` attaches, `maps.rs` writes what
//! it decides, and `FastPath::plan` runs the three in order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::layout::{self, KernelOutput, MAX_OUTPUTS};
use super::resolve::{self, Link};
use crate::config::Monitor;
use crate::rules::{EgressKey, Path, Rule, RuleTable};

/// The link-layer address to send a unicast output's datagrams to (its next hop's), or why
/// the program cannot send them there yet.
pub(super) type Neighbour = Result<NextHop, String>;

/// Where a unicast output's datagrams go, as the kernel would send them from its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NextHop {
    /// The next hop's link-layer address.
    pub mac: [u8; 6],
    /// The source address the kernel's route gives the socket's datagrams, of the
    /// destination's family (`None`: the interface's primary address).
    pub source: Option<IpAddr>,
}

/// What the plan asks of the host about output interfaces and next hops. The real one asks
/// the kernel once per interface and destination (`lookups::Lookups`); tests give fixed
/// answers.
pub(super) trait Host {
    fn link(&mut self, name: &str) -> Result<Link, String>;
    fn ipv4_address(&mut self, name: &str) -> Result<Option<Ipv4Addr>, String>;
    /// For the datagrams egress socket `socket` (a unicast output's, on interface `name`)
    /// sends: the kernel routes them by the socket's bound device, address and port.
    fn neighbour(&mut self, socket: &EgressKey, name: &str) -> Neighbour;
    /// The source address the kernel gives an unbound IPv6 UDP socket's datagrams to
    /// `group` out of interface `ifindex` (named `name`): IPv6 source selection depends on
    /// the group's scope, so the interface's "primary" address would not do.
    fn multicast_source(
        &mut self,
        ifindex: u32,
        name: &str,
        group: Ipv6Addr,
    ) -> Result<Ipv6Addr, String>;
}

/// The state of the program's attachment on an input interface, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InputLink {
    Attached,
    /// Not attached, for this reason (not Ethernet, gone, an attach error).
    Failed(String),
    /// Another mcrd's fast path holds the input: its flows stand by (neither path of ours
    /// forwards them, or the datagrams would go out twice) until that one detaches.
    Taken(String),
}

/// The settings a plan obeys.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// `[dataplane] multicast_loop`: the program cannot deliver to local sockets.
    pub multicast_loop: bool,
    /// `fast_path_max_flows_per_input`: the packet filter's bound.
    pub max_flows_per_input: u32,
    /// The program can run the RTP check (the kernel has `bpf_loop`, which walks a GSO
    /// super-frame's datagrams).
    pub rtp_in_kernel: bool,
}

/// The path a rule takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// In the program, with these outputs.
    Kernel(Vec<KernelOutput>),
    /// In mcrd's workers, for this reason.
    Userspace(String),
    /// In neither, standing by for another daemon's program to detach.
    Waiting(String),
}

/// The path reason of an MPEG-TS-monitored rule. The check walks up to 7 TS packets per
/// datagram with a continuity counter per PID (8191 of them): in the program it tripled the
/// time per datagram and needs 8 MiB of per-PID counters (relay/README.md, "Stream
/// monitoring", has the numbers).
const MPEGTS_USERSPACE: &str =
    "monitor = \"mpegts\" checks every TS packet's continuity counter, which runs in userspace";

/// The path reason of a rule with outputs of the other family than its group's: the program
/// rewrites headers in place, and translating them (a new header of another length) runs in
/// userspace.
const TRANSLATION_USERSPACE: &str =
    "translation between IPv4 and IPv6 runs in userspace; the kernel path keeps the family";

/// The path reason of an RTP-monitored rule on a kernel without `bpf_loop`.
const RTP_NEEDS_BPF_LOOP: &str = "monitor = \"rtp\" in the kernel needs the bpf_loop helper \
     (Linux 5.17), which this kernel lacks; the check runs in userspace";

/// One decision per rule of `table`, in its order.
///
/// Rules sharing (input, group, port) take one path: the program matches any-source entries
/// for every source, and the packet filter excludes by (group, port). At most
/// `max_flows_per_input` such flows per input go to the kernel.
pub(super) fn decide(
    table: &RuleTable,
    links: &BTreeMap<u32, InputLink>,
    policy: Policy,
    host: &mut impl Host,
) -> Vec<Decision> {
    let mut decided: Vec<Result<Vec<KernelOutput>, String>> = table
        .rules
        .iter()
        .map(|rule| alone(rule, table, links, policy, host))
        .collect();

    let mut by_flow: BTreeMap<(u32, IpAddr, u16), Vec<usize>> = BTreeMap::new();
    for (i, r) in table.rules.iter().enumerate() {
        by_flow
            .entry((r.ifindex, r.spec.group, r.spec.port))
            .or_default()
            .push(i);
    }
    for members in by_flow.values() {
        if let Some(&u) = members.iter().find(|&&i| decided[i].is_err()) {
            let name = &table.rules[u].spec.name;
            let why = format!(
                "shares its input, group and port with rule `{name}`, which runs in userspace"
            );
            for &i in members {
                if decided[i].is_ok() {
                    decided[i] = Err(why.clone());
                }
            }
        }
    }
    let mut flows_per_input: BTreeMap<u32, u32> = BTreeMap::new();
    for ((ifindex, _, _), members) in &by_flow {
        if decided[members[0]].is_err() {
            continue;
        }
        let n = flows_per_input.entry(*ifindex).or_default();
        *n += 1;
        if *n > policy.max_flows_per_input {
            for &i in members {
                decided[i] = Err(format!(
                    "more than {} kernel-path flows on this input (fast_path_max_flows_per_input)",
                    policy.max_flows_per_input
                ));
            }
        }
    }

    table
        .rules
        .iter()
        .zip(decided)
        .map(|(rule, d)| match (d, links.get(&rule.ifindex)) {
            (Ok(outputs), _) => Decision::Kernel(outputs),
            (Err(reason), Some(InputLink::Taken(_))) => Decision::Waiting(format!(
                "standing by: {reason}; this daemon takes the flow over when that one detaches"
            )),
            (Err(reason), _) => Decision::Userspace(reason),
        })
        .collect()
}

/// A rule's path on its own, before the rules sharing its flow are considered.
fn alone(
    rule: &Rule,
    table: &RuleTable,
    links: &BTreeMap<u32, InputLink>,
    policy: Policy,
    host: &mut impl Host,
) -> Result<Vec<KernelOutput>, String> {
    match links.get(&rule.ifindex) {
        Some(InputLink::Taken(why)) => return Err(why.clone()),
        _ if policy.multicast_loop => {
            return Err(
                "multicast_loop = true: the kernel path does not deliver to local sockets".into(),
            )
        }
        Some(InputLink::Failed(why)) => return Err(why.clone()),
        Some(InputLink::Attached) => {}
        None => return Err(format!("input {} is not attached", rule.spec.input)),
    }
    if rule
        .outputs
        .iter()
        .any(|o| o.dest.is_ipv6() != rule.spec.group.is_ipv6())
    {
        return Err(TRANSLATION_USERSPACE.into());
    }
    if layout::monitor_kind(rule.spec.monitor).is_none() {
        return Err(MPEGTS_USERSPACE.into());
    }
    if rule.spec.monitor == Some(Monitor::Rtp) && !policy.rtp_in_kernel {
        return Err(RTP_NEEDS_BPF_LOOP.into());
    }
    kernel_outputs(rule, table, host)
}

/// The kernel form of a rule's outputs, or why it cannot run in the kernel.
fn kernel_outputs(
    rule: &Rule,
    table: &RuleTable,
    host: &mut impl Host,
) -> Result<Vec<KernelOutput>, String> {
    if rule.outputs.len() > MAX_OUTPUTS {
        return Err(format!(
            "{} outputs; the kernel path takes at most {MAX_OUTPUTS}",
            rule.outputs.len()
        ));
    }
    rule.outputs
        .iter()
        .map(|o| {
            let ifindex = table.egress_keys[o.egress].ifindex;
            let name = &o.interface;
            let spec = &rule.spec.outputs[o.index_in_rule];
            let link = host.link(name).map_err(|e| format!("output {name}: {e}"))?;
            if !link.ethernet {
                return Err(format!("output {name} is not an Ethernet interface"));
            }
            let (dst_mac, src) = match o.dest {
                SocketAddr::V4(dest) => ipv4_addressing(
                    *dest.ip(),
                    spec.source,
                    &table.egress_keys[o.egress],
                    name,
                    host,
                )?,
                SocketAddr::V6(dest) => ipv6_addressing(
                    *dest.ip(),
                    spec.source,
                    &table.egress_keys[o.egress],
                    name,
                    host,
                )?,
            };
            Ok(KernelOutput {
                ifindex,
                dst_mac,
                src_mac: link.mac,
                dst: o.dest.ip(),
                src,
                dst_port: o.dest.port(),
                src_port: spec.source_port.unwrap_or(0),
                ttl: o.ttl,
                dscp: o.dscp,
            })
        })
        .collect()
}

/// The destination MAC and the source address of an IPv4 output, as its socket sends: from
/// its bound address, else from the source the route selects (a route's `src`, a secondary
/// address, a VRF's), else (multicast) from the interface's primary address.
fn ipv4_addressing(
    dest: Ipv4Addr,
    bound: Option<IpAddr>,
    socket: &EgressKey,
    name: &str,
    host: &mut impl Host,
) -> Result<([u8; 6], IpAddr), String> {
    let (dst_mac, route_source) = if dest.is_multicast() {
        (resolve::multicast_mac(dest), None)
    } else {
        let hop = host.neighbour(socket, name)?;
        let source = match hop.source {
            Some(IpAddr::V4(s)) => Some(s),
            // An IPv4 socket's route selects an IPv4 source; never expected.
            Some(IpAddr::V6(s)) => return Err(format!("the kernel routes {dest} from {s}")),
            None => None,
        };
        (hop.mac, source)
    };
    let bound = bound.and_then(|s| match s {
        IpAddr::V4(s) => Some(s),
        IpAddr::V6(_) => None,
    });
    let src = match bound.or(route_source) {
        Some(s) => s,
        None => host
            .ipv4_address(name)
            .map_err(|e| format!("output {name}: {e}"))?
            .ok_or_else(|| format!("output {name} has no IPv4 address"))?,
    };
    Ok((dst_mac, IpAddr::V4(src)))
}

/// [`ipv4_addressing`] for IPv6. A multicast output's MAC is 33:33 and the group's low 32
/// bits (RFC 2464, 7), and its source the one the kernel selects for the group out of the
/// interface (RFC 6724: it depends on the group's scope, so no one address of the interface
/// would do), which it says in answer to a route lookup. A unicast output's next hop and
/// source are the kernel's route's, as for IPv4.
fn ipv6_addressing(
    dest: Ipv6Addr,
    bound: Option<IpAddr>,
    socket: &EgressKey,
    name: &str,
    host: &mut impl Host,
) -> Result<([u8; 6], IpAddr), String> {
    let bound = bound.and_then(|s| match s {
        IpAddr::V6(s) => Some(s),
        IpAddr::V4(_) => None,
    });
    if dest.is_multicast() {
        let src = match bound {
            Some(s) => s,
            None => host.multicast_source(socket.ifindex, name, dest)?,
        };
        return Ok((resolve::multicast_mac6(dest), IpAddr::V6(src)));
    }
    let hop = host.neighbour(socket, name)?;
    let route_source = match hop.source {
        Some(IpAddr::V6(s)) => Some(s),
        Some(IpAddr::V4(s)) => return Err(format!("the kernel routes {dest} from {s}")),
        None => None,
    };
    let src = bound
        .or(route_source)
        .ok_or_else(|| format!("the kernel gives {dest} out of {name} no IPv6 source address"))?;
    Ok((hop.mac, IpAddr::V6(src)))
}

/// The flags of each rule's map entry, in the table's order: [`layout::RULE_SOURCES`] for an
/// any-source rule on the kernel path whose flow (input, group, port) has a source-specific
/// rule on the kernel path too, else 0.
///
/// The program looks up a flow's any-source entry first and the source's entry only when this
/// flag says so (or when there is no any-source entry), so a flow without source-specific
/// rules costs one hash lookup. The flag is decided from the decisions, before any entry is
/// written: a source-specific entry that then fails to be written leaves a flag that costs a
/// lookup that misses, never a source-specific entry without its flag (which the program
/// would not find).
pub(super) fn entry_flags(rules: &[Rule], decisions: &[Decision]) -> Vec<u32> {
    let kernel = |i: usize| matches!(decisions.get(i), Some(Decision::Kernel(_)));
    let flow = |r: &Rule| (r.ifindex, r.spec.group, r.spec.port);
    let with_sources: BTreeSet<(u32, IpAddr, u16)> = rules
        .iter()
        .enumerate()
        .filter(|&(i, r)| kernel(i) && r.spec.source.is_some())
        .map(|(_, r)| flow(r))
        .collect();
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let any_source = r.spec.source.is_none();
            if kernel(i) && any_source && with_sources.contains(&flow(r)) {
                layout::RULE_SOURCES
            } else {
                0
            }
        })
        .collect()
}

/// The (group, port) pairs per input that the packet filters must leave to the program: the
/// flows it forwards, and those standing by for another daemon's program.
pub(super) fn kernel_flows_of(rules: &[Rule], ifindex: u32) -> Vec<(IpAddr, u16)> {
    let mut flows: Vec<(IpAddr, u16)> = rules
        .iter()
        .filter(|r| r.ifindex == ifindex && !matches!(r.path, Path::Userspace { .. }))
        .map(|r| (r.spec.group, r.spec.port))
        .collect();
    flows.sort();
    flows.dedup();
    flows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleSpec;
    use crate::rules::RuleSet;
    use std::collections::HashMap;

    /// A host with fixed answers: interfaces by name, and neighbours by destination.
    #[derive(Default)]
    struct FixedHost {
        links: HashMap<String, Link>,
        addresses: HashMap<String, Ipv4Addr>,
        neighbours: HashMap<IpAddr, NextHop>,
        /// The source for any IPv6 group, per interface.
        ipv6_sources: HashMap<String, Ipv6Addr>,
        asked: usize,
    }

    impl Host for FixedHost {
        fn link(&mut self, name: &str) -> Result<Link, String> {
            self.asked += 1;
            self.links
                .get(name)
                .copied()
                .ok_or_else(|| "No such device (os error 19)".to_string())
        }
        fn ipv4_address(&mut self, name: &str) -> Result<Option<Ipv4Addr>, String> {
            Ok(self.addresses.get(name).copied())
        }
        fn neighbour(&mut self, socket: &EgressKey, name: &str) -> Neighbour {
            let dest = socket.unicast.expect("a unicast output").ip();
            self.neighbours.get(&dest).copied().ok_or_else(|| {
                format!("no neighbour entry for {dest} on {name} yet (retried every second)")
            })
        }
        fn multicast_source(
            &mut self,
            _ifindex: u32,
            name: &str,
            group: Ipv6Addr,
        ) -> Result<Ipv6Addr, String> {
            self.ipv6_sources.get(name).copied().ok_or_else(|| {
                format!("output {name} has no IPv6 address the kernel would send {group} from")
            })
        }
    }

    const ETH: Link = Link {
        mac: [2, 0, 0, 0, 0, 1],
        ethernet: true,
    };

    fn host() -> FixedHost {
        let mut h = FixedHost::default();
        for (i, name) in ["out0", "out1"].iter().enumerate() {
            h.links.insert(name.to_string(), ETH);
            h.addresses
                .insert(name.to_string(), Ipv4Addr::new(10, 0, i as u8, 1));
            h.ipv6_sources.insert(
                name.to_string(),
                Ipv6Addr::new(0xfd00, 0, 0, i as u16, 0, 0, 0, 1),
            );
        }
        h.links.insert(
            "tun0".into(),
            Link {
                mac: [0; 6],
                ethernet: false,
            },
        );
        h
    }

    fn index(name: &str) -> std::io::Result<u32> {
        match name {
            "in0" => Ok(10),
            "in1" => Ok(11),
            "out0" => Ok(20),
            "out1" => Ok(21),
            "tun0" => Ok(30),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    fn rule(name: &str, input: &str, group: [u8; 4], port: u16, outputs: &[&str]) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            input: input.into(),
            group: Ipv4Addr::from(group).into(),
            port,
            source: None,
            outputs: outputs.iter().map(|o| o.parse().unwrap()).collect(),
            monitor: None,
            min_ttl: None,
        }
    }

    fn table(specs: Vec<RuleSpec>) -> RuleTable {
        let set = RuleSet::from_specs(specs).unwrap();
        RuleTable::build(&set, 1, &index).unwrap()
    }

    fn attached(inputs: &[u32]) -> BTreeMap<u32, InputLink> {
        inputs.iter().map(|&i| (i, InputLink::Attached)).collect()
    }

    const POLICY: Policy = Policy {
        multicast_loop: false,
        max_flows_per_input: 200,
        rtp_in_kernel: true,
    };

    fn reason(d: &Decision) -> &str {
        match d {
            Decision::Userspace(r) | Decision::Waiting(r) => r,
            Decision::Kernel(_) => "kernel",
        }
    }

    #[test]
    fn a_plain_multicast_rule_runs_in_the_kernel_with_its_output_rewritten() {
        let t = table(vec![rule(
            "a",
            "in0",
            [239, 1, 1, 1],
            5000,
            &["239.2.2.2:6000@out0"],
        )]);
        let d = decide(&t, &attached(&[10]), POLICY, &mut host());
        let Decision::Kernel(outputs) = &d[0] else {
            panic!("{d:?}")
        };
        assert_eq!(outputs.len(), 1);
        let o = outputs[0];
        assert_eq!(o.ifindex, 20);
        assert_eq!(o.dst, Ipv4Addr::new(239, 2, 2, 2));
        assert_eq!(o.dst_port, 6000);
        assert_eq!(o.dst_mac, [0x01, 0x00, 0x5e, 0x02, 0x02, 0x02]);
        assert_eq!(o.src_mac, ETH.mac);
        assert_eq!(o.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(o.src_port, 0, "the sender's source port kept");
    }

    #[test]
    fn an_ipv6_rule_runs_in_the_kernel_and_one_that_translates_does_not() {
        let v6 = |name: &str, port, outputs: &[&str]| RuleSpec {
            group: "ff3e::1234".parse().unwrap(),
            ..rule(name, "in0", [0, 0, 0, 0], port, outputs)
        };
        let mut uni = v6("uni", 5003, &["[fd00:1::2]:6000@out1"]);
        uni.group = "ff3e::1235".parse().unwrap();
        let t = table(vec![
            v6("six", 5000, &["[ff3e::8001:203]:6000@out1"]),
            v6("to4", 5001, &["239.2.2.2:6000@out0"]),
            rule("to6", "in0", [239, 1, 1, 1], 5002, &["[ff3e::1]:6000@out0"]),
            uni,
        ]);
        let mut h = host();
        h.neighbours.insert(
            "fd00:1::2".parse::<Ipv6Addr>().unwrap().into(),
            NextHop {
                mac: [2, 0, 0, 0, 0, 0x42],
                source: Some("fd00:1::1".parse::<Ipv6Addr>().unwrap().into()),
            },
        );
        let d = decide(&t, &attached(&[10]), POLICY, &mut h);
        let Decision::Kernel(outputs) = &d[0] else {
            panic!("{d:?}")
        };
        let o = outputs[0];
        assert_eq!(o.dst, "ff3e::8001:203".parse::<Ipv6Addr>().unwrap());
        assert_eq!(o.dst_mac, [0x33, 0x33, 0x80, 0x01, 0x02, 0x03]);
        assert_eq!(
            o.src,
            Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1),
            "the kernel's choice"
        );
        assert_eq!((o.ifindex, o.dst_port), (21, 6000));
        for i in [1, 2] {
            assert!(reason(&d[i]).contains("translation"), "{:?}", d[i]);
        }
        let Decision::Kernel(outputs) = &d[3] else {
            panic!("{d:?}")
        };
        assert_eq!(outputs[0].dst_mac, [2, 0, 0, 0, 0, 0x42], "the neighbour's");
        assert_eq!(
            outputs[0].src,
            "fd00:1::1".parse::<Ipv6Addr>().unwrap(),
            "the route's"
        );
    }

    #[test]
    fn a_unicast_output_waits_for_its_neighbour_entry() {
        let t = table(vec![rule(
            "a",
            "in0",
            [239, 1, 1, 1],
            5000,
            &["10.0.0.9:6000@out0"],
        )]);
        let mut h = host();
        let d = decide(&t, &attached(&[10]), POLICY, &mut h);
        assert_eq!(
            reason(&d[0]),
            "no neighbour entry for 10.0.0.9 on out0 yet (retried every second)"
        );
        let hop = NextHop {
            mac: [2, 0, 0, 0, 0, 9],
            source: None,
        };
        h.neighbours.insert(Ipv4Addr::new(10, 0, 0, 9).into(), hop);
        let d = decide(&t, &attached(&[10]), POLICY, &mut h);
        let Decision::Kernel(o) = &d[0] else {
            panic!("{d:?}")
        };
        assert_eq!(o[0].dst_mac, [2, 0, 0, 0, 0, 9]);
        assert_eq!(
            o[0].src,
            Ipv4Addr::new(10, 0, 0, 1),
            "the interface's address"
        );

        // The route selects another source (its `src`, a secondary address): the datagrams
        // leave from it, as the output's socket's would.
        let routed = NextHop {
            source: Some(Ipv4Addr::new(10, 0, 0, 77).into()),
            ..hop
        };
        h.neighbours
            .insert(Ipv4Addr::new(10, 0, 0, 9).into(), routed);
        let d = decide(&t, &attached(&[10]), POLICY, &mut h);
        assert!(
            matches!(&d[0], Decision::Kernel(o) if o[0].src == Ipv4Addr::new(10, 0, 0, 77)),
            "{d:?}"
        );
    }

    #[test]
    fn each_reason_for_userspace_is_named() {
        let mut mpegts = rule("ts", "in0", [239, 1, 1, 2], 5000, &["239.2.2.2:6000@out0"]);
        mpegts.monitor = Some(Monitor::Mpegts);
        let many: Vec<String> = (0..=MAX_OUTPUTS)
            .map(|i| format!("239.3.3.{i}:6000@out0"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let t = table(vec![
            mpegts,
            rule("tun", "in0", [239, 1, 1, 3], 5000, &["239.2.2.2:6000@tun0"]),
            rule("many", "in0", [239, 1, 1, 4], 5000, &many),
            rule(
                "noaddr",
                "in0",
                [239, 1, 1, 5],
                5000,
                &["239.2.2.2:6000@out1"],
            ),
            rule(
                "unattached",
                "in1",
                [239, 1, 1, 6],
                5000,
                &["239.2.2.2:6000@out0"],
            ),
        ]);
        let mut h = host();
        h.addresses.remove("out1");
        let mut links = attached(&[10]);
        links.insert(
            11,
            InputLink::Failed("input in1 is not an Ethernet interface".into()),
        );
        let d = decide(&t, &links, POLICY, &mut h);
        let mut reasons: Vec<(&str, &str)> = t
            .rules
            .iter()
            .zip(&d)
            .map(|(r, d)| (r.spec.name.as_str(), reason(d)))
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            [
                ("many", "17 outputs; the kernel path takes at most 16"),
                ("noaddr", "output out1 has no IPv4 address"),
                ("ts", MPEGTS_USERSPACE),
                ("tun", "output tun0 is not an Ethernet interface"),
                ("unattached", "input in1 is not an Ethernet interface"),
            ]
        );
        assert!(d.iter().all(|d| matches!(d, Decision::Userspace(_))));

        let looped = Policy {
            multicast_loop: true,
            ..POLICY
        };
        let d = decide(&t, &attached(&[10, 11]), looped, &mut h);
        assert!(d
            .iter()
            .all(|d| reason(d).starts_with("multicast_loop = true")));
    }

    #[test]
    fn rtp_monitored_rules_run_in_userspace_without_bpf_loop_and_say_why() {
        let mut rtp = rule("rtp", "in0", [239, 1, 1, 1], 5000, &["239.2.2.2:6000@out0"]);
        rtp.monitor = Some(Monitor::Rtp);
        let plain = rule(
            "plain",
            "in0",
            [239, 1, 1, 2],
            5000,
            &["239.2.2.2:6000@out0"],
        );
        let t = table(vec![rtp, plain]);
        let by_name = |d: &[Decision], n: &str| {
            d[t.rules.iter().position(|r| r.spec.name == n).unwrap()].clone()
        };
        let d = decide(&t, &attached(&[10]), POLICY, &mut host());
        assert!(matches!(by_name(&d, "rtp"), Decision::Kernel(_)), "{d:?}");
        let without = Policy {
            rtp_in_kernel: false,
            ..POLICY
        };
        let d = decide(&t, &attached(&[10]), without, &mut host());
        assert_eq!(
            by_name(&d, "rtp"),
            Decision::Userspace(RTP_NEEDS_BPF_LOOP.into())
        );
        assert!(RTP_NEEDS_BPF_LOOP.contains("bpf_loop") && RTP_NEEDS_BPF_LOOP.contains("5.17"));
        assert!(matches!(by_name(&d, "plain"), Decision::Kernel(_)), "{d:?}");
    }

    #[test]
    fn rules_sharing_a_flow_follow_the_one_that_runs_in_userspace() {
        let mut any = rule("any", "in0", [239, 1, 1, 1], 5000, &["239.2.2.2:6000@out0"]);
        any.monitor = Some(Monitor::Mpegts);
        let mut one = rule("one", "in0", [239, 1, 1, 1], 5000, &["239.2.2.3:6000@out0"]);
        one.source = Some(Ipv4Addr::new(10, 9, 9, 9).into());
        let other = rule(
            "other",
            "in0",
            [239, 1, 1, 1],
            5001,
            &["239.2.2.4:6000@out0"],
        );
        let t = table(vec![any, one, other]);
        let d = decide(&t, &attached(&[10]), POLICY, &mut host());
        let by_name = |n: &str| &d[t.rules.iter().position(|r| r.spec.name == n).unwrap()];
        assert_eq!(reason(by_name("any")), MPEGTS_USERSPACE);
        assert_eq!(
            reason(by_name("one")),
            "shares its input, group and port with rule `any`, which runs in userspace"
        );
        assert!(matches!(by_name("other"), Decision::Kernel(_)));
    }

    #[test]
    fn only_any_source_entries_of_flows_with_source_rules_send_the_program_to_look_further() {
        let source = |mut r: RuleSpec, s: [u8; 4]| {
            r.source = Some(Ipv4Addr::from(s).into());
            r
        };
        let out = &["239.2.2.2:6000@out0"];
        let t = table(vec![
            // Only an any-source rule: one lookup.
            rule("plain", "in0", [239, 1, 1, 1], 5000, out),
            // Any-source and source-specific rules on one flow: the any-source entry says so.
            rule("any", "in0", [239, 1, 1, 2], 5000, out),
            source(rule("one", "in0", [239, 1, 1, 2], 5000, out), [10, 9, 9, 9]),
            // The same group on another port, and on another input: flows of their own.
            rule("port", "in0", [239, 1, 1, 2], 5001, out),
            rule("input", "in1", [239, 1, 1, 2], 5000, out),
            // Only a source-specific rule: no any-source entry to flag.
            source(
                rule("alone", "in0", [239, 1, 1, 3], 5000, out),
                [10, 9, 9, 9],
            ),
        ]);
        let d = decide(&t, &attached(&[10, 11]), POLICY, &mut host());
        assert!(d.iter().all(|d| matches!(d, Decision::Kernel(_))), "{d:?}");
        let flags = entry_flags(&t.rules, &d);
        let flagged: Vec<&str> = t
            .rules
            .iter()
            .zip(&flags)
            .filter(|&(_, &f)| f == layout::RULE_SOURCES)
            .map(|(r, _)| r.spec.name.as_str())
            .collect();
        assert_eq!(flagged, ["any"]);
        assert!(flags.iter().all(|&f| f == 0 || f == layout::RULE_SOURCES));

        // A source-specific rule in userspace is not the program's to look up: no flag.
        let mut d = d;
        let one = t.rules.iter().position(|r| r.spec.name == "one").unwrap();
        d[one] = Decision::Userspace("x".into());
        assert!(entry_flags(&t.rules, &d).iter().all(|&f| f == 0));
    }

    #[test]
    fn flows_past_the_per_input_bound_stay_in_userspace() {
        let specs: Vec<RuleSpec> = (0..5)
            .map(|i| {
                rule(
                    &format!("r{i}"),
                    "in0",
                    [239, 1, 1, i],
                    5000,
                    &["239.2.2.2:6000@out0"],
                )
            })
            .chain([rule(
                "b",
                "in1",
                [239, 1, 1, 9],
                5000,
                &["239.2.2.2:6000@out0"],
            )])
            .collect();
        let t = table(specs);
        let policy = Policy {
            max_flows_per_input: 3,
            ..POLICY
        };
        let d = decide(&t, &attached(&[10, 11]), policy, &mut host());
        let kernel = d
            .iter()
            .filter(|d| matches!(d, Decision::Kernel(_)))
            .count();
        assert_eq!(kernel, 4, "3 on in0, 1 on in1: {d:?}");
        assert!(d.iter().any(|d| reason(d)
            == "more than 3 kernel-path flows on this input (fast_path_max_flows_per_input)"));
    }

    #[test]
    fn rules_on_an_input_another_daemon_holds_stand_by() {
        let t = table(vec![
            rule("a", "in0", [239, 1, 1, 1], 5000, &["239.2.2.2:6000@out0"]),
            rule("b", "in1", [239, 1, 1, 1], 5000, &["239.2.2.2:6000@out0"]),
        ]);
        let mut links = attached(&[11]);
        links.insert(10, InputLink::Taken("in0 holds program 7 of pid 99".into()));
        let d = decide(&t, &links, POLICY, &mut host());
        assert_eq!(
            d[0],
            Decision::Waiting(
                "standing by: in0 holds program 7 of pid 99; this daemon takes the flow over \
                 when that one detaches"
                    .into()
            )
        );
        assert!(matches!(d[1], Decision::Kernel(_)));
    }

    #[test]
    fn the_packet_filter_leaves_kernel_and_waiting_flows_alone() {
        let mut t = table(vec![
            rule("a", "in0", [239, 1, 1, 1], 5000, &["239.2.2.2:6000@out0"]),
            rule("b", "in0", [239, 1, 1, 2], 5000, &["239.2.2.2:6000@out0"]),
            rule("c", "in0", [239, 1, 1, 3], 5000, &["239.2.2.2:6000@out0"]),
            rule("d", "in1", [239, 1, 1, 4], 5000, &["239.2.2.2:6000@out0"]),
        ]);
        t.rules[0].path = crate::rules::Path::Kernel;
        t.rules[1].path = crate::rules::Path::Waiting { reason: "x".into() };
        t.rules[2].path = crate::rules::Path::Userspace { reason: "y".into() };
        t.rules[3].path = crate::rules::Path::Kernel;
        assert_eq!(
            kernel_flows_of(&t.rules, 10),
            [
                (IpAddr::from([239, 1, 1, 1]), 5000),
                (IpAddr::from([239, 1, 1, 2]), 5000)
            ]
        );
    }
}
