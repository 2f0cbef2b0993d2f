//! The resolved, immutable rule table that workers match datagrams against.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::set::{RuleError, RuleSet};
use crate::config::{OutputSpec, RuleSpec};

/// What a datagram is matched on (besides an optional source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchKey {
    pub ifindex: u32,
    pub group: IpAddr,
    pub port: u16,
}

/// Hashed as few words as the family needs: the derived hash of an `IpAddr` feeds the hasher
/// its discriminant and then each octet (with FxHash one multiply each); this key is hashed
/// once per frame. An IPv4 key is one 64-bit word and one 32-bit word; IPv6 adds two words.
/// Equal keys hash alike, as `Hash` requires: the family decides the shape.
impl std::hash::Hash for MatchKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let head = u64::from(self.ifindex) << 16 | u64::from(self.port);
        match self.group {
            IpAddr::V4(g) => {
                state.write_u64(head);
                state.write_u32(u32::from(g));
            }
            IpAddr::V6(g) => {
                state.write_u64(head | 1 << 48);
                state.write_u128(u128::from(g));
            }
        }
    }
}

/// An egress socket's identity: datagrams to outputs with the same key share a socket.
///
/// A unicast output has a socket of its own (`unicast`): an ICMP error from its receiver
/// (port unreachable) fails the next send on the socket it arrives on, and must not cost
/// another output a datagram. Multicast receivers send no ICMP errors, so multicast outputs
/// share a socket per interface, family, TTL and source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EgressKey {
    pub ifindex: u32,
    /// An IPv6 socket (the output's destination is IPv6), else IPv4.
    pub ipv6: bool,
    /// TTL, or hop limit for IPv6.
    pub ttl: u8,
    /// The address the socket is bound to, when the output names a source address or port.
    pub bind: Option<SocketAddr>,
    /// The destination of a unicast output.
    pub unicast: Option<SocketAddr>,
}

impl EgressKey {
    /// The socket an output sends through.
    pub fn for_output(ifindex: u32, o: &OutputSpec) -> Self {
        let unspecified = match o.dest {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let bind = (o.source.is_some() || o.source_port.is_some())
            .then(|| SocketAddr::new(o.source.unwrap_or(unspecified), o.source_port.unwrap_or(0)));
        EgressKey {
            ifindex,
            ipv6: o.dest.is_ipv6(),
            ttl: o.ttl,
            bind,
            unicast: (!o.dest.is_multicast()).then(|| SocketAddr::new(o.dest, o.port)),
        }
    }
}

/// One resolved output of a rule.
#[derive(Debug)]
pub struct Output {
    pub dest: SocketAddr,
    /// Index into [`RuleTable::egress_keys`].
    pub egress: usize,
    /// Dense index over all outputs of the table, for per-output queues in a worker.
    pub id: usize,
    /// Index of this output within its rule (for its counters).
    pub index_in_rule: usize,
    pub interface: String,
    pub ttl: u8,
    /// DSCP to send with; `None` keeps the received one.
    pub dscp: Option<u8>,
}

/// Which path forwards a rule's datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// The kernel fast path's program (`crate::fastpath`).
    Kernel,
    /// mcrd's worker threads; `reason` says why not the kernel.
    Userspace { reason: String },
    /// Neither: the flow waits (its input is another mcrd's, or gone), and the packet filter
    /// leaves its datagrams alone; `reason` says for what it waits.
    Waiting { reason: String },
}

impl Path {
    /// The path of every rule when the fast path is off.
    pub fn fast_path_off() -> Self {
        Path::Userspace {
            reason: "fast path off".into(),
        }
    }

    /// `"kernel"`, `"userspace"` or `"waiting"`, as the stats and `mcrctl rules list` show it.
    pub fn name(&self) -> &'static str {
        match self {
            Path::Kernel => "kernel",
            Path::Userspace { .. } => "userspace",
            Path::Waiting { .. } => "waiting",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Path::Kernel => None,
            Path::Userspace { reason } | Path::Waiting { reason } => Some(reason),
        }
    }
}

/// One resolved rule.
#[derive(Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    pub ifindex: u32,
    pub outputs: Vec<Output>,
    pub path: Path,
    /// The rule's counter slot in the kernel program, once it ran there (kept while the rule
    /// is unchanged, also when it moves back to userspace).
    pub kernel_slot: Option<u32>,
    /// While the rule's flow changes path: which of its frames are the workers' (set by the
    /// fast path's plan, shared with the tables before and after it).
    pub handover: Option<Arc<super::Handover>>,
}

/// An input interface and the destinations any rule wants from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputInterface {
    pub ifindex: u32,
    pub name: String,
    /// Distinct destination addresses of the rules on this interface, sorted (IPv4 first).
    pub groups: Vec<IpAddr>,
    /// (group, port) of the flows the kernel program forwards, sorted: the packet filter
    /// must not capture them (a packet tap sees frames before TC ingress).
    pub kernel_flows: Vec<(IpAddr, u16)>,
    /// Whether a rule on this input runs in userspace, so that the workers need a packet
    /// socket on it. A packet tap runs before TC ingress, so a socket costs every frame of
    /// the interface a filter run even when its filter drops the frame (all those the fast
    /// path forwards); an input whose rules all run in the kernel (or wait) has none. Set by
    /// [`RuleTable::mark_capture`].
    pub needs_capture: bool,
}

/// The table a worker matches against. Built off the packet path; immutable once published.
#[derive(Debug, Default)]
pub struct RuleTable {
    /// Increases with every published table.
    pub generation: u64,
    pub rules: Vec<Rule>,
    /// Rule indices per key; source-specific rules first.
    index: FxHashMap<MatchKey, Vec<usize>>,
    pub inputs: Vec<InputInterface>,
    pub egress_keys: Vec<EgressKey>,
    /// Number of outputs over all rules (the range of [`Output::id`]).
    pub output_count: usize,
}

/// Looks up interface indices; the real one asks the kernel, tests may use `lo` only.
pub type Resolver<'a> = &'a dyn Fn(&str) -> std::io::Result<u32>;

impl RuleTable {
    /// Resolves `set` into a table. What is kept per rule across tables (its counters) is
    /// carried by [`RuleTable::positions_in`].
    pub fn build(
        set: &RuleSet,
        generation: u64,
        resolve: Resolver<'_>,
    ) -> Result<RuleTable, RuleError> {
        // Each interface name is asked of the kernel once per build, not once per rule and
        // output: a table of 100,000 rules names a handful of interfaces.
        let mut resolved: FxHashMap<String, u32> = FxHashMap::default();
        let mut lookup = |rule: &RuleSpec, field: &dyn Fn() -> String, name: &str| {
            if let Some(&i) = resolved.get(name) {
                return Ok(i);
            }
            let i = resolve(name).map_err(|e| RuleError::UnknownInterface {
                rule: rule.name.clone(),
                field: field(),
                interface: name.to_string(),
                reason: e.to_string(),
            })?;
            resolved.insert(name.to_string(), i);
            Ok(i)
        };

        let mut table = RuleTable {
            generation,
            ..Default::default()
        };
        let mut egress: BTreeMap<EgressKey, usize> = BTreeMap::new();
        let mut inputs: BTreeMap<u32, InputInterface> = BTreeMap::new();
        // Groups seen per input, so that each is listed once without searching the list
        // (which made building a table of N rules on one input take time in N²).
        let mut seen_groups: rustc_hash::FxHashSet<(u32, IpAddr)> = Default::default();
        for spec in set.iter() {
            let ifindex = lookup(spec, &|| "input".to_string(), &spec.input)?;
            let mut outputs = Vec::with_capacity(spec.outputs.len());
            for (i, o) in spec.outputs.iter().enumerate() {
                let key = EgressKey::for_output(
                    lookup(spec, &|| format!("outputs[{i}].interface"), &o.interface)?,
                    o,
                );
                let next = egress.len();
                let egress_index = *egress.entry(key).or_insert(next);
                outputs.push(Output {
                    dest: SocketAddr::new(o.dest, o.port),
                    egress: egress_index,
                    id: table.output_count,
                    index_in_rule: i,
                    interface: o.interface.clone(),
                    ttl: o.ttl,
                    dscp: o.dscp,
                });
                table.output_count += 1;
            }
            let input = inputs.entry(ifindex).or_insert_with(|| InputInterface {
                ifindex,
                name: spec.input.clone(),
                groups: Vec::new(),
                kernel_flows: Vec::new(),
                // Every rule starts in userspace (`Path::fast_path_off`).
                needs_capture: true,
            });
            if seen_groups.insert((ifindex, spec.group)) {
                input.groups.push(spec.group);
            }
            table.rules.push(Rule {
                spec: spec.clone(),
                ifindex,
                outputs,
                path: Path::fast_path_off(),
                kernel_slot: None,
                handover: None,
            });
        }
        for (i, rule) in table.rules.iter().enumerate() {
            let key = MatchKey {
                ifindex: rule.ifindex,
                group: rule.spec.group,
                port: rule.spec.port,
            };
            table.index.entry(key).or_default().push(i);
        }
        let rules = &table.rules;
        for list in table.index.values_mut() {
            list.sort_by_key(|&i| rules[i].spec.source.is_none());
        }
        table.inputs = inputs
            .into_values()
            .map(|mut i| {
                i.groups.sort();
                i
            })
            .collect();
        let mut keys: Vec<_> = egress.into_iter().collect();
        keys.sort_by_key(|(_, i)| *i);
        table.egress_keys = keys.into_iter().map(|(k, _)| k).collect();
        Ok(table)
    }

    /// The rule for a datagram, if any, with its position in [`RuleTable::rules`] (by which
    /// the counter table published beside this one holds the rule's counters). Hot path: one
    /// hash lookup, no allocation.
    #[inline]
    pub fn lookup(&self, key: &MatchKey, source: IpAddr) -> Option<(usize, &Rule)> {
        let candidates = self.index.get(key)?;
        candidates
            .iter()
            .map(|&i| (i, &self.rules[i]))
            .find(|(_, r)| r.spec.source.is_none_or(|s| s == source))
    }

    /// For each rule, its position in `previous` if it is the same rule there: the same name,
    /// spec and input interface. What is kept per rule (its counters) is carried by it, so a
    /// change to one rule does not reset the others'.
    pub fn positions_in(&self, previous: &RuleTable) -> Vec<Option<usize>> {
        let old: FxHashMap<&str, usize> = previous
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.spec.name.as_str(), i))
            .collect();
        self.rules
            .iter()
            .map(|rule| {
                old.get(rule.spec.name.as_str()).copied().filter(|&i| {
                    let prev = &previous.rules[i];
                    prev.spec == rule.spec && prev.ifindex == rule.ifindex
                })
            })
            .collect()
    }

    /// The input interface entry for `ifindex`, if any rule uses it.
    pub fn input(&self, ifindex: u32) -> Option<&InputInterface> {
        self.inputs.iter().find(|i| i.ifindex == ifindex)
    }

    /// Sets each input's [`InputInterface::needs_capture`] from its rules' paths: true when
    /// one of them runs in userspace. Call once the paths are decided.
    pub fn mark_capture(&mut self) {
        let captured: rustc_hash::FxHashSet<u32> = self
            .rules
            .iter()
            .filter(|r| matches!(r.path, Path::Userspace { .. }))
            .map(|r| r.ifindex)
            .collect();
        for input in &mut self.inputs {
            input.needs_capture = captured.contains(&input.ifindex);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_resolve(name: &str) -> std::io::Result<u32> {
        match name {
            "eth0" => Ok(2),
            "eth1" => Ok(3),
            "eth2" => Ok(4),
            _ => Err(std::io::Error::from_raw_os_error(libc::ENODEV)),
        }
    }

    fn spec(name: &str, input: &str, group: [u8; 4], port: u16, outs: &[(&str, u8)]) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            input: input.into(),
            group: group.into(),
            port,
            source: None,
            outputs: outs
                .iter()
                .map(|(i, ttl)| OutputSpec::new([239, 2, 2, 2].into(), 6000, *i, *ttl))
                .collect(),
            monitor: None,
            min_ttl: None,
        }
    }

    fn build(set: &RuleSet) -> Result<RuleTable, RuleError> {
        RuleTable::build(set, 1, &fake_resolve)
    }

    #[test]
    fn lookup_matches_interface_group_and_port_only() {
        let mut set = RuleSet::default();
        set.add(spec("a", "eth0", [239, 1, 1, 1], 5000, &[("eth1", 1)]))
            .unwrap();
        let t = build(&set).unwrap();
        let key = |ifindex, g: [u8; 4], port| MatchKey {
            ifindex,
            group: g.into(),
            port,
        };
        let any = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(
            t.lookup(&key(2, [239, 1, 1, 1], 5000), any)
                .unwrap()
                .1
                .spec
                .name,
            "a"
        );
        assert!(t.lookup(&key(3, [239, 1, 1, 1], 5000), any).is_none());
        assert!(t.lookup(&key(2, [239, 1, 1, 2], 5000), any).is_none());
        assert!(t.lookup(&key(2, [239, 1, 1, 1], 5001), any).is_none());
    }

    #[test]
    fn source_specific_rule_wins_over_any_source() {
        let mut set = RuleSet::default();
        set.add(spec("any", "eth0", [239, 1, 1, 1], 5000, &[("eth1", 1)]))
            .unwrap();
        let mut ssm = spec("ssm", "eth0", [239, 1, 1, 1], 5000, &[("eth2", 1)]);
        ssm.source = Some([10, 0, 0, 5].into());
        set.add(ssm).unwrap();
        let t = build(&set).unwrap();
        let key = MatchKey {
            ifindex: 2,
            group: [239, 1, 1, 1].into(),
            port: 5000,
        };
        assert_eq!(
            t.lookup(&key, [10, 0, 0, 5].into()).unwrap().1.spec.name,
            "ssm"
        );
        assert_eq!(
            t.lookup(&key, [10, 0, 0, 6].into()).unwrap().1.spec.name,
            "any"
        );
    }

    #[test]
    fn egress_keys_are_shared_and_outputs_densely_numbered() {
        let mut set = RuleSet::default();
        set.add(spec(
            "a",
            "eth0",
            [239, 1, 1, 1],
            5000,
            &[("eth1", 1), ("eth2", 1)],
        ))
        .unwrap();
        set.add(spec(
            "b",
            "eth0",
            [239, 1, 1, 2],
            5000,
            &[("eth1", 1), ("eth1", 8)],
        ))
        .unwrap();
        let t = build(&set).unwrap();
        assert_eq!(t.output_count, 4);
        assert_eq!(t.egress_keys.len(), 3);
        let ids: Vec<usize> = t
            .rules
            .iter()
            .flat_map(|r| r.outputs.iter().map(|o| o.id))
            .collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        assert_eq!(t.rules[0].outputs[0].egress, t.rules[1].outputs[0].egress);
        assert_eq!(t.inputs.len(), 1);
        assert_eq!(
            t.inputs[0].groups,
            [Ipv4Addr::new(239, 1, 1, 1), Ipv4Addr::new(239, 1, 1, 2)]
        );
    }

    #[test]
    fn unknown_interface_names_rule_and_field() {
        let mut set = RuleSet::default();
        set.add(spec(
            "a",
            "eth0",
            [239, 1, 1, 1],
            5000,
            &[("eth1", 1), ("wlan9", 1)],
        ))
        .unwrap();
        let e = build(&set).unwrap_err().to_string();
        assert!(
            e.contains("rule `a`") && e.contains("outputs[1].interface") && e.contains("wlan9"),
            "{e}"
        );
    }

    #[test]
    fn unchanged_rules_are_found_in_the_previous_table() {
        let mut set = RuleSet::default();
        for (name, last) in [("a", 1), ("b", 2), ("d", 4)] {
            set.add(spec(name, "eth0", [239, 1, 1, last], 5000, &[("eth1", 1)]))
                .unwrap();
        }
        let t1 = build(&set).unwrap();
        assert_eq!(t1.positions_in(&t1), [Some(0), Some(1), Some(2)]);
        // "b" removed, "c" and "c2" added, "a" changed; "d" unchanged at another position.
        set.remove("b").unwrap();
        for (name, last) in [("c", 3), ("c2", 5)] {
            set.add(spec(name, "eth0", [239, 1, 1, last], 5000, &[("eth1", 1)]))
                .unwrap();
        }
        set.remove("a").unwrap();
        set.add(spec("a", "eth0", [239, 1, 1, 1], 5000, &[("eth2", 1)]))
            .unwrap();
        let t2 = build(&set).unwrap();
        let names: Vec<&str> = t2.rules.iter().map(|r| r.spec.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "c2", "d"]);
        assert_eq!(t2.positions_in(&t1), [None, None, None, Some(2)]);
        // The same spec on an input that now has another index is another rule.
        let moved = RuleTable::build(&set, 2, &|n| match n {
            "eth0" => Ok(9),
            n => fake_resolve(n),
        })
        .unwrap();
        assert_eq!(moved.positions_in(&t2), [None, None, None, None]);
    }

    /// The workers bind a packet socket on an input only while one of its rules runs in
    /// userspace: with the fast path off every input is captured; an input whose rules all
    /// run in the kernel or wait is not.
    #[test]
    fn an_input_is_captured_only_while_a_rule_on_it_runs_in_userspace() {
        let mut set = RuleSet::default();
        for (name, input, last) in [
            ("a1", "eth0", 1),
            ("a2", "eth0", 2),
            ("b1", "eth1", 3),
            ("b2", "eth1", 4),
            ("c1", "eth2", 5),
        ] {
            set.add(spec(name, input, [239, 1, 1, last], 5000, &[("eth2", 1)]))
                .unwrap();
        }
        let mut t = build(&set).unwrap();
        let captured = |t: &RuleTable| -> Vec<(u32, bool)> {
            t.inputs
                .iter()
                .map(|i| (i.ifindex, i.needs_capture))
                .collect()
        };
        assert_eq!(
            captured(&t),
            [(2, true), (3, true), (4, true)],
            "fast path off"
        );
        t.mark_capture();
        assert_eq!(captured(&t), [(2, true), (3, true), (4, true)]);

        let waiting = || Path::Waiting { reason: "x".into() };
        let paths = [
            Path::Kernel,
            Path::Kernel,
            Path::Kernel,
            waiting(),
            waiting(),
        ];
        for (rule, path) in t.rules.iter_mut().zip(paths) {
            rule.path = path;
        }
        t.mark_capture();
        assert_eq!(captured(&t), [(2, false), (3, false), (4, false)]);

        // One rule back in userspace (a neighbour gone, a reload) captures its input again.
        t.rules[1].path = Path::Userspace { reason: "y".into() };
        t.rules[4].path = Path::fast_path_off();
        t.mark_capture();
        assert_eq!(captured(&t), [(2, true), (3, false), (4, true)]);
    }
}
