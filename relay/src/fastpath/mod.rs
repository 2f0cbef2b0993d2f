//! The kernel fast path: mcrd's rules run in a tcx ingress program (`bpf/fastpath.bpf.c`)
//! where they can be expressed there; the rest stay on the userspace path.
//!
//! One flow, one path. For each rule of a new table, [`FastPath::plan`] decides the path
//! (with the reason when it is userspace), writes the kernel rules into the program's map
//! (one map update per rule: a packet sees a rule's old output set or its new one, never a
//! mix) and marks the rule's (group, port) on its input so the packet sockets' filter stops
//! capturing it. The caller publishes the table (workers adopt the new filters) and then calls
//! [`FastPath::finish`], which deletes the entries no longer wanted. A flow that changes path
//! is therefore forwarded by both paths for the moment the workers take to adopt the table,
//! never by neither.
//!
//! Counters: each kernel rule has a slot of per-CPU counters in the program, kept while the
//! rule is unchanged (as its userspace counters are), also if it moves to userspace for a
//! while; the stats add them to the flow's.

mod attach;
pub mod counters;
mod layout;
mod lookups;
pub mod probe;
pub mod resolve;
mod skel;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use libbpf_rs::{MapCore, MapFlags};

pub use attach::{
    enable_run_stats, mcrd_programs_on, program_run_stats, tcx_ingress_programs, AttachError,
    ProgramFacts, PROGRAM_NAME,
};
pub use layout::MAX_OUTPUTS;

use crate::config::RuleSpec;
use crate::rules::{Path, Rule, RuleTable};
use layout::{bytes_of, KernelOutput};
use skel::FastpathSkel;

/// How many flows the kernel path holds (`[dataplane] fast_path_max_flows` and
/// `fast_path_max_flows_per_input`); the maps are sized from it at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Entries of the rule map and counter slots, all inputs together.
    pub max_flows: u32,
    /// Distinct (group, port) pairs per input interface on the kernel path: bounds the
    /// packet sockets' classic BPF filter, which must exclude them all.
    pub max_flows_per_input: u32,
}

impl Sizes {
    pub fn of(d: &crate::config::DataplaneConfig) -> Self {
        Sizes {
            max_flows: d.fast_path_max_flows,
            max_flows_per_input: d.fast_path_max_flows_per_input,
        }
    }

    /// Most bytes of kernel memory the maps take when full, with `cpus` possible CPUs (the
    /// counters are per CPU): rule entries (key, value and the hash table's element
    /// header, about 48 bytes), per-CPU counters and monitor state per slot.
    pub fn map_bytes(&self, cpus: usize) -> u64 {
        let n = u64::from(self.max_flows);
        let rule = (size_of::<skel::types::mcr_fp_key>()
            + size_of::<skel::types::mcr_fp_rule>()
            + 48) as u64;
        let counters = (size_of::<skel::types::mcr_fp_rule_counters>() * cpus.max(1)) as u64;
        let monitor = size_of::<skel::types::mcr_fp_monitor>() as u64;
        n * (rule + counters + monitor)
    }
}

impl Default for Sizes {
    fn default() -> Self {
        Self::of(&crate::config::DataplaneConfig::default())
    }
}

/// The path reason of an MPEG-TS-monitored rule. The check walks up to 7 TS packets per
/// datagram with a continuity counter per PID (8191 of them): in the program it tripled the
/// time per datagram and needs 8 MiB of per-PID counters (relay/README.md, "Stream
/// monitoring", has the numbers).
const MPEGTS_USERSPACE: &str =
    "monitor = \"mpegts\" checks every TS packet's continuity counter, which runs in userspace";

/// A loaded fast path: the program, its maps, the links that attach it, and which rule owns
/// which counter slot.
pub struct FastPath {
    skel: FastpathSkel<'static>,
    facts: ProgramFacts,
    sizes: Sizes,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per input interface: the tcx link, or why there is none.
    links: BTreeMap<u32, Result<OwnedFd, LinkError>>,
    /// The pid of the process holding another mcrd's program on an input, by program id
    /// (found once per program: it takes a walk over /proc).
    owners: HashMap<u32, Option<u32>>,
    /// Counter slot of each rule, while its spec and input stay the same.
    slots: HashMap<String, SlotOwner>,
    free: Vec<u32>,
    /// Entries in the rule map, with their values' bytes.
    installed: HashMap<Vec<u8>, Vec<u8>>,
    /// Counts of slots freed since start (removed or changed rules), so totals never shrink.
    retired: counters::KernelTotals,
    /// Output count of each slot's rule, to sum only its outputs when it retires.
    slot_outputs: HashMap<u32, usize>,
}

/// Why an input has no link of ours.
#[derive(Clone)]
struct LinkError {
    why: String,
    /// Another mcrd's fast path holds the input: its flows stand by (neither path of ours
    /// forwards them, or the datagrams would go out twice) until that one detaches.
    taken: bool,
}

struct SlotOwner {
    spec: RuleSpec,
    ifindex: u32,
    slot: u32,
}

/// What [`FastPath::finish`] undoes once the workers run the new table.
#[derive(Default)]
pub struct Pending {
    stale_keys: Vec<Vec<u8>>,
    freed_slots: Vec<u32>,
    unused_inputs: Vec<u32>,
}

/// What a table's plan found that a `required` fast path refuses.
#[derive(Debug, Default)]
pub struct PlanReport {
    /// Input interfaces the program could not be attached to, with why.
    pub attach_errors: Vec<String>,
}

impl FastPath {
    /// Loads the program with the default map sizes (the verifier runs here).
    pub fn load() -> Result<Self, AttachError> {
        Self::load_sized(Sizes::default())
    }

    /// Loads the program with maps of `sizes` (the verifier runs here).
    pub fn load_sized(sizes: Sizes) -> Result<Self, AttachError> {
        let skel = attach::load(sizes.max_flows)?;
        let facts = attach::program_facts(skel.progs.mcr_fastpath.as_fd())
            .map_err(|e| AttachError::Load(format!("reading program info: {e}")))?;
        Ok(Self {
            skel,
            facts,
            sizes,
            state: Mutex::new(State {
                free: (0..sizes.max_flows).rev().collect(),
                ..Default::default()
            }),
        })
    }

    pub fn facts(&self) -> &ProgramFacts {
        &self.facts
    }

    /// Decides each rule's path, installs the kernel rules and marks their flows on their
    /// inputs. The caller publishes `table`, waits for the workers, then calls [`Self::finish`].
    pub fn plan(&self, table: &mut RuleTable, multicast_loop: bool) -> (Pending, PlanReport) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = PlanReport::default();
        let mut pending = Pending::default();

        // Inputs: attach where a rule needs it.
        let inputs: Vec<(u32, String)> = table
            .inputs
            .iter()
            .map(|i| (i.ifindex, i.name.clone()))
            .collect();
        // Where attaching failed before (another daemon's program was there, the interface
        // was not Ethernet yet), it is tried again at every plan, warning only once.
        for (ifindex, name) in &inputs {
            let failed_before = match state.links.get(ifindex) {
                // A link whose interface was deleted (and maybe created again under the same
                // index) attaches nothing any more: attach anew.
                Some(Ok(link)) if !attach::link_attached(link) => {
                    tracing::warn!(
                        interface = %name,
                        "fast path detached by the kernel (the interface was deleted); attaching again"
                    );
                    false
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) => true,
                None => false,
            };
            let failed = |why: String| LinkError { why, taken: false };
            let link = match resolve::link(name) {
                Ok(l) if l.ethernet => {
                    match attach::attach_tcx(self.skel.progs.mcr_fastpath.as_fd(), *ifindex, name) {
                        Ok(fd) => Ok(fd),
                        Err(AttachError::Taken { interface, id, .. }) => {
                            let owner = *state
                                .owners
                                .entry(id)
                                .or_insert_with(|| attach::link_owner(id));
                            Err(LinkError {
                                why: AttachError::Taken {
                                    interface,
                                    id,
                                    owner,
                                }
                                .to_string(),
                                taken: true,
                            })
                        }
                        Err(e) => Err(failed(e.to_string())),
                    }
                }
                Ok(_) => Err(failed(format!("input {name} is not an Ethernet interface"))),
                Err(e) => Err(failed(format!("input {name}: {e}"))),
            };
            match &link {
                Ok(_) => tracing::info!(interface = %name, "fast path attached (tcx ingress)"),
                Err(e) => {
                    if !failed_before && e.taken {
                        tracing::warn!(
                            "{}: its rules stand by, forwarded by neither path of this daemon, \
                             until that one detaches (tried again every second)",
                            e.why
                        );
                    } else if !failed_before {
                        tracing::warn!("fast path not attached: {}", e.why);
                    }
                    report.attach_errors.push(e.why.clone());
                }
            }
            state.links.insert(*ifindex, link);
        }
        pending.unused_inputs = state
            .links
            .keys()
            .filter(|i| !inputs.iter().any(|(j, _)| j == *i))
            .copied()
            .collect();

        // Inputs another mcrd's fast path holds: their rules wait.
        let taken: BTreeMap<u32, String> = state
            .links
            .iter()
            .filter_map(|(i, l)| match l {
                Err(e) if e.taken => Some((*i, e.why.clone())),
                _ => None,
            })
            .collect();

        // Each rule on its own; interfaces and neighbours asked once for all of them.
        let mut lookups = lookups::Lookups::default();
        let mut decided: Vec<Result<Vec<KernelOutput>, String>> = table
            .rules
            .iter()
            .map(|rule| {
                if let Some(why) = taken.get(&rule.ifindex) {
                    return Err(why.clone());
                }
                if multicast_loop {
                    return Err(
                        "multicast_loop = true: the kernel path does not deliver to local sockets"
                            .into(),
                    );
                }
                if let Some(Err(e)) = state.links.get(&rule.ifindex) {
                    return Err(e.why.clone());
                }
                if layout::monitor_kind(rule.spec.monitor).is_none() {
                    return Err(MPEGTS_USERSPACE.into());
                }
                kernel_outputs(rule, table, &mut lookups)
            })
            .collect();

        // Rules sharing (input, group, port) take one path: the program matches any-source
        // entries for every source, and the packet filter excludes by (group, port).
        let mut by_flow: BTreeMap<(u32, Ipv4Addr, u16), Vec<usize>> = BTreeMap::new();
        for (i, r) in table.rules.iter().enumerate() {
            by_flow
                .entry((r.ifindex, r.spec.group, r.spec.port))
                .or_default()
                .push(i);
        }
        for members in by_flow.values() {
            if let Some(&u) = members.iter().find(|&&i| decided[i].is_err()) {
                let name = table.rules[u].spec.name.clone();
                for &i in members {
                    if decided[i].is_ok() {
                        decided[i] = Err(format!(
                            "shares its input, group and port with rule `{name}`, which runs in userspace"
                        ));
                    }
                }
            }
        }
        // The packet filter's bound per input.
        let mut flows_per_input: BTreeMap<u32, usize> = BTreeMap::new();
        for ((ifindex, _, _), members) in &by_flow {
            if decided[members[0]].is_err() {
                continue;
            }
            let n = flows_per_input.entry(*ifindex).or_default();
            *n += 1;
            if *n > self.sizes.max_flows_per_input as usize {
                for &i in members {
                    decided[i] = Err(format!(
                        "more than {} kernel-path flows on this input (fast_path_max_flows_per_input)",
                        self.sizes.max_flows_per_input
                    ));
                }
            }
        }

        // Slots, map entries, paths.
        let mut wanted: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        // By name: searching every rule for each slot's owner took time in slots x rules.
        let by_name: HashMap<&str, &Rule> = table
            .rules
            .iter()
            .map(|r| (r.spec.name.as_str(), r))
            .collect();
        let gone: Vec<String> = state
            .slots
            .iter()
            .filter(|(name, owner)| {
                !by_name
                    .get(name.as_str())
                    .is_some_and(|r| r.spec == owner.spec && r.ifindex == owner.ifindex)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(owner) = state.slots.remove(&name) {
                pending.freed_slots.push(owner.slot);
            }
        }
        for (rule, decision) in table.rules.iter_mut().zip(decided) {
            let slot = state.slots.get(&rule.spec.name).map(|o| o.slot);
            rule.kernel_slot = slot;
            let key = layout::key(
                rule.ifindex,
                rule.spec.group,
                rule.spec.port,
                rule.spec.source,
            );
            let k = bytes_of(&key).to_vec();
            // A monitored flow changing path: the side taking it over has not seen the
            // datagrams the other side checked meanwhile, so it starts afresh.
            let was_kernel = state.installed.contains_key(&k);
            let outputs = match decision {
                Ok(o) => o,
                Err(reason) if taken.contains_key(&rule.ifindex) => {
                    rule.path = Path::Waiting {
                        reason: format!(
                            "standing by: {reason}; this daemon takes the flow over when that \
                             one detaches"
                        ),
                    };
                    continue;
                }
                Err(reason) => {
                    if was_kernel {
                        restart_worker_monitors(rule);
                    }
                    rule.path = Path::Userspace { reason };
                    continue;
                }
            };
            let slot = match slot {
                Some(s) => s,
                None => match self.allocate_slot(&mut state) {
                    Some(s) => {
                        state.slots.insert(
                            rule.spec.name.clone(),
                            SlotOwner {
                                spec: rule.spec.clone(),
                                ifindex: rule.ifindex,
                                slot: s,
                            },
                        );
                        s
                    }
                    None => {
                        rule.path = Path::Userspace {
                            reason: format!(
                                "the kernel path holds at most {} rules (fast_path_max_flows)",
                                self.sizes.max_flows
                            ),
                        };
                        continue;
                    }
                },
            };
            rule.kernel_slot = Some(slot);
            state.slot_outputs.insert(slot, rule.outputs.len());
            // Before the entry goes in: until then the program sees none of the flow.
            if !was_kernel && rule.spec.monitor.is_some() {
                self.restart_monitor(slot);
            }
            // Checked above: only rules whose monitor the program runs get here.
            let monitor = layout::monitor_kind(rule.spec.monitor).unwrap_or_default();
            let value = layout::rule_value(slot, monitor, &outputs);
            let v = bytes_of(&value).to_vec();
            if state.installed.get(&k) != Some(&v) {
                if let Err(e) = self.skel.maps.mcr_fp_rules.update(&k, &v, MapFlags::ANY) {
                    rule.path = Path::Userspace {
                        reason: format!("updating the kernel rule map: {e}"),
                    };
                    continue;
                }
                state.installed.insert(k.clone(), v.clone());
            }
            wanted.insert(k, v);
            rule.path = Path::Kernel;
        }
        pending.stale_keys = state
            .installed
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();

        // The flows the packet filters must leave to the program (ours, or while standing
        // by, the other daemon's).
        for input in &mut table.inputs {
            let mut flows: Vec<(Ipv4Addr, u16)> = table
                .rules
                .iter()
                .filter(|r| {
                    r.ifindex == input.ifindex
                        && matches!(r.path, Path::Kernel | Path::Waiting { .. })
                })
                .map(|r| (r.spec.group, r.spec.port))
                .collect();
            flows.sort();
            flows.dedup();
            input.kernel_flows = flows;
        }
        (pending, report)
    }

    /// Deletes the map entries and frees the slots the previous table used and the new one
    /// does not; call once the workers run the new table.
    pub fn finish(&self, pending: Pending) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for k in &pending.stale_keys {
            if let Err(e) = self.skel.maps.mcr_fp_rules.delete(k) {
                tracing::warn!("deleting a kernel rule: {e}");
            }
            state.installed.remove(k);
        }
        for slot in &pending.freed_slots {
            if let Some(c) = self.rule_counters(*slot) {
                let outputs = state.slot_outputs.remove(slot).unwrap_or(MAX_OUTPUTS);
                state.retired.add(&c, outputs);
            }
        }
        state.free.extend(pending.freed_slots);
        for ifindex in pending.unused_inputs {
            if let Some(Ok(_)) = state.links.remove(&ifindex) {
                tracing::info!(
                    ifindex,
                    "fast path detached: no rule uses this input any more"
                );
            }
        }
    }

    /// A free slot, with its per-CPU counters zeroed and its stream check fresh.
    fn allocate_slot(&self, state: &mut State) -> Option<u32> {
        let slot = state.free.pop()?;
        let cpus = libbpf_rs::num_possible_cpus().ok()?;
        let zero = vec![vec![0u8; std::mem::size_of::<skel::types::mcr_fp_rule_counters>()]; cpus];
        let key = slot.to_ne_bytes();
        let maps = &self.skel.maps;
        let reset = maps
            .mcr_fp_counters
            .update_percpu(&key, &zero, MapFlags::ANY)
            .and_then(|()| {
                // Under the lock (BPF_F_LOCK), like the program's updates.
                let fresh = layout::fresh_monitor();
                maps.mcr_fp_monitors
                    .update(&key, bytes_of(&fresh), MapFlags::LOCK)
            });
        if let Err(e) = reset {
            tracing::warn!("zeroing kernel counter slot {slot}: {e}");
            state.free.push(slot);
            return None;
        }
        Some(slot)
    }

    /// Forgets the stream position of a slot's check, keeping its counts (see
    /// `MonitorCells::restart`). Only while no map entry points to the slot: the read and
    /// the write are two steps.
    fn restart_monitor(&self, slot: u32) {
        let map = &self.skel.maps.mcr_fp_monitors;
        let key = slot.to_ne_bytes();
        let Ok(Some(raw)) = map.lookup(&key, MapFlags::LOCK) else {
            return;
        };
        let Some(mut m) = layout::from_bytes::<skel::types::mcr_fp_monitor>(&raw) else {
            return;
        };
        m.last_seq = layout::fresh_monitor().last_seq;
        if let Err(e) = map.update(&key, bytes_of(&m), MapFlags::LOCK) {
            tracing::warn!("restarting the stream check of kernel slot {slot}: {e}");
        }
    }

    /// The stream check of a monitored rule's slot, read under its lock.
    pub fn monitor_counters(&self, slot: u32) -> Option<counters::MonitorCounters> {
        let raw = self
            .skel
            .maps
            .mcr_fp_monitors
            .lookup(&slot.to_ne_bytes(), MapFlags::LOCK)
            .ok()??;
        counters::MonitorCounters::from_map(&raw)
    }

    /// The summed per-CPU counters of a rule's slot.
    pub fn rule_counters(&self, slot: u32) -> Option<counters::RuleCounters> {
        let per_cpu = self
            .skel
            .maps
            .mcr_fp_counters
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        Some(counters::RuleCounters::sum(&per_cpu))
    }

    /// The summed counters of frames the program left to the stack.
    pub fn pass_counters(&self) -> counters::PassCounters {
        self.skel
            .maps
            .mcr_fp_pass
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .ok()
            .flatten()
            .map(|v| counters::PassCounters::sum(&v))
            .unwrap_or_default()
    }

    /// Counts of the rules removed or replaced since start.
    pub fn retired(&self) -> counters::KernelTotals {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).retired
    }

    /// Input interfaces the program is attached to.
    pub fn attached(&self) -> Vec<u32> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .links
            .iter()
            .filter(|(_, l)| l.is_ok())
            .map(|(i, _)| *i)
            .collect()
    }

    /// Detaches the program from every interface (the kernel does it too when mcrd exits).
    pub fn detach_all(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.links.clear();
    }
}

/// Restarts a flow's userspace stream checks (every worker's) as it leaves the kernel.
fn restart_worker_monitors(rule: &Rule) {
    for w in rule.counters.per_worker.iter() {
        if let Some(m) = &w.monitor {
            m.restart();
        }
    }
}

/// The kernel form of a rule's outputs, or why it cannot run in the kernel.
fn kernel_outputs(
    rule: &Rule,
    table: &RuleTable,
    lookups: &mut lookups::Lookups,
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
            let link = lookups
                .link(name)
                .map_err(|e| format!("output {name}: {e}"))?;
            if !link.ethernet {
                return Err(format!("output {name} is not an Ethernet interface"));
            }
            let src = match spec.source {
                Some(s) => s,
                None => lookups
                    .ipv4_address(name)
                    .map_err(|e| format!("output {name}: {e}"))?
                    .ok_or_else(|| format!("output {name} has no IPv4 address"))?,
            };
            let dest = *o.dest.ip();
            let dst_mac = if dest.is_multicast() {
                resolve::multicast_mac(dest)
            } else {
                let (hop, mac) = lookups.neighbour(dest, name);
                mac.ok_or_else(|| {
                    format!("no neighbour entry for {hop} on {name} yet (retried every second)")
                })?
            };
            Ok(KernelOutput {
                ifindex,
                dst_mac,
                src_mac: link.mac,
                dst: dest,
                src,
                dst_port: o.dest.port(),
                src_port: spec.source_port.unwrap_or(0),
                ttl: o.ttl,
                dscp: o.dscp,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loading needs CAP_BPF; without it the test says so and passes, unless CI requires it.
    fn privileged(test: &str) -> bool {
        let missing = probe::missing_capabilities();
        if missing.is_empty() {
            return true;
        }
        if std::env::var("MCR_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("{test}: needs {missing:?} (MCR_E2E_REQUIRED=1)");
        }
        eprintln!("SKIP {test}: needs {missing:?}");
        false
    }

    #[test]
    fn the_verifier_accepts_the_program() {
        if !privileged("the_verifier_accepts_the_program") {
            return;
        }
        let fp = FastPath::load().expect("loads");
        let facts = fp.facts();
        assert_eq!(facts.name, PROGRAM_NAME);
        eprintln!("verifier processed {} instructions", facts.verified_insns);
        assert!(facts.verified_insns > 0);
        // Counters of a fresh slot read back as zero; the pass counters exist.
        let mut state = fp.state.lock().unwrap();
        let slot = fp.allocate_slot(&mut state).unwrap();
        drop(state);
        assert_eq!(
            fp.rule_counters(slot),
            Some(counters::RuleCounters::default())
        );
        assert_eq!(fp.pass_counters(), counters::PassCounters::default());
        assert_eq!(
            fp.monitor_counters(slot),
            Some(counters::MonitorCounters::default())
        );
    }

    #[test]
    fn the_maps_are_sized_from_the_config() {
        if !privileged("the_maps_are_sized_from_the_config") {
            return;
        }
        // The default holds an IPTV channel list; it was 1,024 rules in all.
        assert!(Sizes::default().max_flows >= 65_536);
        let sizes = Sizes {
            max_flows: 100_000,
            max_flows_per_input: 200,
        };
        let fp = FastPath::load_sized(sizes).expect("loads");
        assert_eq!(fp.skel.maps.mcr_fp_rules.max_entries(), 100_000);
        assert_eq!(fp.skel.maps.mcr_fp_counters.max_entries(), 100_000);
        assert_eq!(fp.skel.maps.mcr_fp_monitors.max_entries(), 100_000);
        // The last slot has counters; one past it has none.
        assert_eq!(
            fp.rule_counters(99_999),
            Some(counters::RuleCounters::default())
        );
        assert_eq!(fp.rule_counters(100_000), None);
        assert_eq!(fp.state.lock().unwrap().free.len(), 100_000);
        assert!(sizes.map_bytes(2) > 100_000 * 100);
    }

    /// An Ethernet/IPv4/UDP frame to 239.1.1.1:5000 carrying an RTP packet with sequence 7.
    fn rtp_frame() -> Vec<u8> {
        let (rtp_len, udp_len) = (200u16, 208u16);
        let mut f = vec![0u8; 14 + 20 + usize::from(udp_len)];
        f[0..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        ip[8] = 8;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 99, 0, 1]);
        ip[16..20].copy_from_slice(&[239, 1, 1, 1]);
        // The program refuses a bad header checksum, as userspace does.
        let sum = crate::wire::checksum::finish(crate::wire::checksum::sum(ip));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f[34..36].copy_from_slice(&4000u16.to_be_bytes());
        f[36..38].copy_from_slice(&5000u16.to_be_bytes());
        f[38..40].copy_from_slice(&udp_len.to_be_bytes());
        let rtp = &mut f[42..42 + usize::from(rtp_len)];
        rtp[0] = 0x80;
        rtp[1] = 96;
        rtp[3] = 7;
        f
    }

    /// Runs the program on `frame` `repeat` times (BPF_PROG_TEST_RUN: no device, the
    /// redirect is only a verdict): the verdict and the average time per run.
    fn test_run(fp: &FastPath, frame: &[u8], repeat: u32) -> (u32, std::time::Duration) {
        let out = fp
            .skel
            .progs
            .mcr_fastpath
            .test_run(libbpf_rs::ProgramInput {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        (out.return_value, out.duration)
    }

    /// Installs the 1:1 rule for [`rtp_frame`] arriving on `lo`, with counter slot `slot`.
    /// The runs of a test share one packet, which the program rewrites in place: the output
    /// writes what the frame holds, so every run matches (and skips the checksum fixes).
    fn install_loopback_rule(fp: &FastPath, slot: u32, monitor: Option<crate::config::Monitor>) {
        let lo = crate::netif::index("lo").expect("lo");
        let out = KernelOutput {
            ifindex: lo,
            dst_mac: [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
            src_mac: [0; 6],
            dst: Ipv4Addr::new(239, 1, 1, 1),
            src: Ipv4Addr::new(10, 99, 0, 1),
            dst_port: 5000,
            src_port: 0,
            ttl: 8,
            dscp: None,
        };
        let key = layout::key(lo, Ipv4Addr::new(239, 1, 1, 1), 5000, None);
        let kind = layout::monitor_kind(monitor).unwrap();
        let value = layout::rule_value(slot, kind, &[out]);
        fp.skel
            .maps
            .mcr_fp_rules
            .update(bytes_of(&key), bytes_of(&value), MapFlags::ANY)
            .unwrap();
    }

    /// Two CPUs run the program on one monitored flow at once: the lock keeps each check
    /// whole, so no count is lost (unlocked `+= 1` on a shared value would lose some).
    #[test]
    fn a_flow_checked_on_two_cpus_at_once_loses_no_count() {
        if !privileged("a_flow_checked_on_two_cpus_at_once_loses_no_count") {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: sched_getaffinity fills the set it is given, of its size.
            .filter(|&c| unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) == 0
                    && libc::CPU_ISSET(c, &set)
            })
            .take(2)
            .collect();
        if cpus.len() < 2 {
            eprintln!("SKIP a_flow_checked_on_two_cpus_at_once_loses_no_count: one CPU");
            return;
        }
        let fp = FastPath::load().expect("loads");
        let slot = {
            let mut state = fp.state.lock().unwrap();
            fp.allocate_slot(&mut state).unwrap()
        };
        install_loopback_rule(&fp, slot, Some(crate::config::Monitor::Rtp));
        let frame = rtp_frame();
        let repeat = 200_000;
        std::thread::scope(|s| {
            for &cpu in &cpus {
                let (fp, frame) = (&fp, &frame);
                s.spawn(move || {
                    // SAFETY: a CPU set built with the libc macros, for this thread.
                    unsafe {
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_SET(cpu, &mut set);
                        assert_eq!(
                            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
                            0
                        );
                    }
                    assert_eq!(test_run(fp, frame, repeat).0, 7, "TC_ACT_REDIRECT");
                });
            }
        });
        // One sequence number throughout: the first check is in order, every other a repeat.
        let runs = 2 * u64::from(repeat);
        assert_eq!(
            fp.monitor_counters(slot).unwrap(),
            counters::MonitorCounters {
                datagrams: runs,
                repeats: runs - 1,
                ..Default::default()
            }
        );
        // The per-CPU rule counters agree.
        assert_eq!(fp.rule_counters(slot).unwrap().matched, runs);
    }

    /// The stream check runs in the program for a rule with `monitor = "rtp"` and counts every
    /// run; an unmonitored rule's runs leave it untouched. Prints the in-program time per
    /// datagram of both (the cost the README quotes), alternating to share the noise.
    #[test]
    fn the_program_checks_rtp_only_for_monitored_rules() {
        if !privileged("the_program_checks_rtp_only_for_monitored_rules") {
            return;
        }
        let fp = FastPath::load().expect("loads");
        let slot = {
            let mut state = fp.state.lock().unwrap();
            fp.allocate_slot(&mut state).unwrap()
        };
        let install = |monitor| install_loopback_rule(&fp, slot, monitor);
        let frame = rtp_frame();
        let repeat = 100_000;
        let (mut plain, mut monitored) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            install(None);
            let (verdict, t) = test_run(&fp, &frame, repeat);
            assert_eq!(verdict, 7, "TC_ACT_REDIRECT");
            plain.push(t.as_nanos());
            install(Some(crate::config::Monitor::Rtp));
            let (verdict, t) = test_run(&fp, &frame, repeat);
            assert_eq!(verdict, 7, "TC_ACT_REDIRECT");
            monitored.push(t.as_nanos());
        }
        // The same sequence number every run: the first is checked in order, the rest repeat.
        let m = fp.monitor_counters(slot).unwrap();
        let runs = 3 * u64::from(repeat);
        assert_eq!(
            m,
            counters::MonitorCounters {
                datagrams: runs,
                repeats: runs - 1,
                ..Default::default()
            }
        );
        assert_eq!(fp.rule_counters(slot).unwrap().matched, 2 * runs);
        plain.sort_unstable();
        monitored.sort_unstable();
        eprintln!(
            "ns per datagram in the program (BPF_PROG_TEST_RUN, {repeat} runs x 3): \
             unmonitored {plain:?}, rtp-monitored {monitored:?}"
        );
    }
}
