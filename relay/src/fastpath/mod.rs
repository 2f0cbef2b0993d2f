//! The kernel fast path: mcrd's rules run in a TC ingress program (`bpf/fastpath.bpf.c`)
//! where they can be expressed there; the rest stay on the userspace path. The program is
//! attached with tcx links (`attach.rs`, Linux 6.6) or, where tcx is missing or the config
//! says so, as clsact qdisc filters (`clsact.rs`): [`AttachMode`].
//!
//! One flow, one path. For each rule of a new table, [`FastPath::plan`] decides the path
//! (with the reason when it is userspace), writes the kernel rules into the program's map
//! (one map update per rule: a packet sees a rule's old output set or its new one, never a
//! mix) and marks the rule's (group, port) on its input so the packet sockets' filter stops
//! capturing it. The caller publishes the table (workers adopt the new filters) and then calls
//! [`FastPath::finish`], which deletes the entries no longer wanted. A flow that changes path
//! under traffic is handed over by receive timestamp (`switch.rs`): each frame stamped before
//! the switch's cutoff is forwarded by the side the flow leaves, each one from it on by the
//! side it goes to; a frame without a timestamp by both, never by neither.
//!
//! The parts: `plan.rs` decides (a pure function of the table, the inputs' attachment and
//! what the host says of interfaces and neighbours, tested without privileges), `slots.rs`
//! keeps which rule owns which counter slot, `links.rs` attaches the program to the inputs,
//! `maps.rs` reads and writes the maps, and [`FastPath::plan`] runs them in that order.
//!
//! Counters: each kernel rule has a slot of per-CPU counters in the program, kept while the
//! rule is unchanged (as its userspace counters are), also if it moves to userspace for a
//! while; the stats add them to the flow's.

#[allow(unsafe_code)]
mod attach;
#[allow(unsafe_code)]
mod clsact;
pub mod counters;
#[allow(unsafe_code)]
mod layout;
mod links;
mod lookups;
mod maps;
mod owner;
mod plan;
#[allow(unsafe_code)]
pub mod probe;
pub mod resolve;
// The skeleton libbpf-cargo generates (its own `unsafe`, not ours to rewrite).
#[allow(unsafe_code)]
mod skel;
mod slots;
mod switch;
mod tcfilters;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::time::Duration;

pub use attach::{
    enable_run_stats, mcrd_programs_on, program_run_stats, tcx_ingress_programs, AttachError,
    ProgramFacts, PROGRAM_NAME,
};
pub use clsact::{HANDLE as CLSACT_HANDLE, PRIORITY as CLSACT_PRIORITY};
pub use layout::MAX_OUTPUTS;
pub use probe::KernelFeatures;

use crate::config::FastPathAttach;
use crate::rules::{Path, Rule, RuleTable};
use links::Links;
use lookups::Lookups;
use maps::{Installed, Maps};
use plan::Decision;
use skel::FastpathSkel;
use slots::SlotBook;
use switch::{Flow, Side, Switches};

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
        // A slot's entry is in one family's map; IPv6 entries are the larger.
        let rule = (size_of::<skel::types::mcr_fp_key6>()
            + size_of::<skel::types::mcr_fp_rule6>()
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

/// The hook the program is attached to on every input of a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// tcx links (Linux 6.6): detached by the kernel when mcrd exits.
    Tcx,
    /// Direct-action filters on clsact qdiscs: deleted by mcrd (at exit, or by the next mcrd
    /// after a `kill -9`).
    Clsact,
}

impl AttachMode {
    /// `[dataplane] fast_path_attach` on a kernel with `features`: tcx where it exists for
    /// `auto`; a forced tcx on a kernel without it is an error naming the key.
    pub fn choose(choice: FastPathAttach, features: KernelFeatures) -> Result<Self, String> {
        match choice {
            FastPathAttach::Auto if features.tcx => Ok(AttachMode::Tcx),
            FastPathAttach::Auto | FastPathAttach::Clsact => Ok(AttachMode::Clsact),
            FastPathAttach::Tcx if features.tcx => Ok(AttachMode::Tcx),
            FastPathAttach::Tcx => Err(
                "[dataplane] fast_path_attach = \"tcx\" but this kernel has no tcx (Linux 6.6); \
                 set \"auto\" or \"clsact\" to attach to a clsact qdisc"
                    .into(),
            ),
        }
    }

    /// `tcx` or `clsact`, as in the log and the stats.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Clsact => "clsact",
        }
    }
}

/// A loaded fast path: the program, its maps, the links that attach it, and which rule owns
/// which counter slot.
pub struct FastPath {
    skel: FastpathSkel<'static>,
    facts: ProgramFacts,
    sizes: Sizes,
    mode: AttachMode,
    features: KernelFeatures,
    state: Mutex<State>,
    /// Receive timestamps on while the fast path is loaded (`switch.rs`); `None` if the
    /// socket could not be set up (switches then forward in both paths for a moment).
    _stamps: Option<switch::Stamps>,
    /// Declared after `state`, so lowered after every attachment is dropped: a daemon
    /// starting meanwhile never finds our filter without it (`owner.rs`).
    _beacon: owner::Beacon,
}

struct State {
    links: Links,
    slots: SlotBook,
    installed: Installed,
    /// Counts of slots freed since start (removed or changed rules), so totals never shrink.
    retired: counters::KernelTotals,
    /// Each flow's path, and its switch in progress (`switch.rs`).
    switches: Switches,
    /// What the last plan asked the kernel, and its answers (see [`FastPath::replan_needed`]).
    last_lookups: Option<Lookups>,
}

/// What [`FastPath::finish`] undoes once the workers run the new table.
#[derive(Default)]
pub struct Pending {
    stale_keys: Vec<Vec<u8>>,
    freed_slots: Vec<u32>,
    unused_inputs: Vec<u32>,
    /// Path switches to time (`switch.rs`, step 2).
    started: Vec<Flow>,
}

/// What a table's plan found: what a `required` fast path refuses, and what the caller must
/// do before it publishes the table.
#[derive(Debug, Default)]
pub struct PlanReport {
    /// Input interfaces the program could not be attached to, with why.
    pub attach_errors: Vec<String>,
    /// The rules (by position in the table) whose flow leaves the kernel for the workers:
    /// their userspace stream checks must start afresh before the workers take the flow,
    /// since the program checked the datagrams in between (the fast path knows no worker
    /// counters; the caller restarts them).
    pub left_kernel: Vec<usize>,
}

impl FastPath {
    /// Loads the program with the default map sizes, on the hook this kernel has, with the
    /// features it has (the verifier runs here).
    pub fn load() -> Result<Self, AttachError> {
        let features = KernelFeatures::probe().map_err(AttachError::Kernel)?;
        Self::load_with(Sizes::default(), FastPathAttach::Auto, features)
    }

    /// Loads the program with maps of `sizes`, for the hook `attach` chooses on a kernel with
    /// `features` (the verifier runs here).
    pub fn load_with(
        sizes: Sizes,
        attach: FastPathAttach,
        features: KernelFeatures,
    ) -> Result<Self, AttachError> {
        let mode = AttachMode::choose(attach, features).map_err(AttachError::Kernel)?;
        let skel = attach::load(sizes.max_flows, features)?;
        let facts = attach::program_facts(entry(&skel, features).as_fd())
            .map_err(|e| AttachError::Load(format!("reading program info: {e}")))?;
        let beacon = owner::Beacon::raise(facts.id).map_err(|e| {
            AttachError::Load(format!("raising program {}'s beacon: {e}", facts.id))
        })?;
        let stamps = switch::Stamps::on()
            .inspect_err(|e| {
                tracing::warn!(
                    "receive timestamps (SO_TIMESTAMPNS): {e}; a flow changing path may be \
                     forwarded by both paths for a moment"
                )
            })
            .ok();
        Ok(Self {
            skel,
            sizes,
            mode,
            features,
            state: Mutex::new(State {
                links: Links::new(mode, facts.id, features.tcx),
                slots: SlotBook::new(sizes.max_flows),
                installed: Installed::default(),
                retired: Default::default(),
                switches: Switches::default(),
                last_lookups: None,
            }),
            facts,
            _stamps: stamps,
            _beacon: beacon,
        })
    }

    /// The loaded entry point.
    fn program(&self) -> &libbpf_rs::ProgramMut<'static> {
        entry(&self.skel, self.features)
    }

    /// The hook the program is attached to.
    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    /// The kernel features the program was loaded for.
    pub fn features(&self) -> KernelFeatures {
        self.features
    }

    pub fn facts(&self) -> &ProgramFacts {
        &self.facts
    }

    fn maps(&self) -> Maps<'_> {
        Maps::of(&self.skel)
    }

    /// Whether a plan of the same rules could now decide differently from the last one: a
    /// path switch is still settling, an input is not (or no longer) attached, or the kernel
    /// answers a question about interfaces, routes or neighbours differently. Costs a
    /// question per input, interface and next hop, where a plan costs work per rule.
    pub fn replan_needed(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.switches.any_switch()
            || state.switches.any_handover()
            || !state.links.all_live()
            || state.last_lookups.as_ref().is_none_or(Lookups::changed)
    }

    /// Decides each rule's path, installs the kernel rules and marks their flows on their
    /// inputs. The caller publishes `table`, waits for the workers, then calls [`Self::finish`].
    ///
    /// Three steps: attach to the inputs (`links.rs`), decide (`plan.rs`, no side effect),
    /// write the decision into the maps (`maps.rs`) and onto the table.
    pub fn plan(&self, table: &mut RuleTable, multicast_loop: bool) -> (Pending, PlanReport) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = PlanReport::default();
        let inputs: Vec<(u32, String)> = table
            .inputs
            .iter()
            .map(|i| (i.ifindex, i.name.clone()))
            .collect();
        let links = state
            .links
            .attach(self.program().as_fd(), &inputs, &mut report.attach_errors);
        let policy = plan::Policy {
            multicast_loop,
            max_flows_per_input: self.sizes.max_flows_per_input,
            rtp_in_kernel: self.features.bpf_loop,
        };
        let mut lookups = Lookups::default();
        let decisions = plan::decide(table, &links, policy, &mut lookups);
        state.last_lookups = Some(lookups);
        let flags = plan::entry_flags(&table.rules, &decisions);

        let mut pending = Pending {
            unused_inputs: state.links.unused(&inputs),
            freed_slots: state.slots.drop_changed(&table.rules),
            ..Default::default()
        };
        let step = self.step_switches(&mut state, &table.rules, &decisions);
        pending.freed_slots.extend(step.released_slots);
        pending.started = step.started;
        let switching = state.switches.any_switch();
        let handovers = state.switches.any_handover();
        for sw in state
            .switches
            .switches_mut()
            .filter(|s| s.to == Side::Kernel)
        {
            sw.entries.clear();
        }
        let mut wanted: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let each = table.rules.iter_mut().zip(decisions).zip(flags);
        for (position, ((rule, decision), flags)) in each.enumerate() {
            let flow = switch::flow_of(rule);
            let to_kernel = switching
                .then(|| state.switches.switch(&flow))
                .flatten()
                .filter(|s| s.to == Side::Kernel)
                .map(|s| s.cutoff.unwrap_or(u64::MAX));
            let cutoff = to_kernel.map(|c| (true, c));
            match self.apply(&mut state, rule, decision, flags, cutoff) {
                Applied::Kernel(k, v) => {
                    if let Some(sw) = to_kernel.and_then(|_| state.switches.switch_mut(&flow)) {
                        sw.entries.push(k.clone());
                    }
                    wanted.insert(k, v);
                }
                Applied::LeftKernel => report.left_kernel.push(position),
                Applied::Elsewhere => {}
            }
            // A rule that failed to go to the kernel is the workers' alone.
            let kept = !(to_kernel.is_some() && rule.path != Path::Kernel);
            rule.handover = handovers
                .then(|| state.switches.handover(&flow))
                .flatten()
                .filter(|_| kept)
                .cloned();
        }
        let mut capture_for_switch = std::collections::BTreeSet::new();
        if switching {
            self.keep_handed_over_entries(&mut state, &mut wanted, &mut pending.freed_slots);
            for rule in &table.rules {
                let flow = switch::flow_of(rule);
                if state
                    .switches
                    .switch(&flow)
                    .is_some_and(|s| s.to == Side::Kernel)
                {
                    capture_for_switch.insert(flow);
                }
            }
        }
        pending.stale_keys = state.installed.stale(&wanted);
        for input in &mut table.inputs {
            input.kernel_flows = plan::kernel_flows_of(&table.rules, input.ifindex);
            // A flow coming to the kernel stays captured until its switch settles.
            let ifindex = input.ifindex;
            input
                .kernel_flows
                .retain(|&(g, p)| !capture_for_switch.contains(&(ifindex, g, p)));
        }
        table.mark_capture();
        for input in &mut table.inputs {
            input.needs_capture |= capture_for_switch.iter().any(|f| f.0 == input.ifindex);
        }
        (pending, report)
    }

    /// The path switches of a plan (`switch.rs`, steps 1 and 3): waits for the switches this
    /// plan reverses to settle (at most `LEAD` + `SETTLE`), then settles, abandons and starts
    /// switches for the flows whose side changes.
    fn step_switches(
        &self,
        state: &mut State,
        rules: &[Rule],
        decisions: &[Decision],
    ) -> switch::Step {
        let mut sides: HashMap<Flow, Side> = HashMap::with_capacity(rules.len());
        for (rule, decision) in rules.iter().zip(decisions) {
            let side = match decision {
                Decision::Kernel(_) => Side::Kernel,
                Decision::Userspace(_) => Side::Userspace,
                Decision::Waiting(_) => continue,
            };
            sides.insert(switch::flow_of(rule), side);
        }
        if let Some(until) = state.switches.unsettled_until(&sides) {
            let wait = until.saturating_sub(switch::now_ns());
            let most = switch::LEAD + switch::SETTLE;
            std::thread::sleep(Duration::from_nanos(wait).min(most));
        }
        let State {
            switches,
            installed,
            ..
        } = state;
        switches.step(
            &sides,
            |(ifindex, group, port)| installed.keys_of(ifindex, group, port),
            switch::now_ns(),
        )
    }

    /// Keeps the program's entries of the flows leaving it until their switches settle, with
    /// the counter slots they count into.
    fn keep_handed_over_entries(
        &self,
        state: &mut State,
        wanted: &mut HashMap<Vec<u8>, Vec<u8>>,
        freed_slots: &mut Vec<u32>,
    ) {
        let State {
            switches,
            installed,
            ..
        } = state;
        for sw in switches.switches_mut().filter(|s| s.to == Side::Userspace) {
            for k in &sw.entries {
                let Some(v) = installed.get(k) else {
                    continue;
                };
                wanted.insert(k.clone(), v.to_vec());
                let slot = layout::head_of(v).map(|h| h.slot);
                if let Some(pos) = freed_slots.iter().position(|s| Some(*s) == slot) {
                    sw.held_slots.push(freed_slots.swap_remove(pos));
                }
            }
        }
    }

    /// Times the switches a plan started, once the workers run its table (`switch.rs`,
    /// step 2), and waits for their cutoffs to pass (at most [`switch::LEAD`]).
    fn time_switches(&self, state: &mut State, started: &[Flow]) {
        let State {
            switches,
            installed,
            ..
        } = state;
        let maps = self.maps();
        let mut write = |entries: &[Vec<u8>], cutoff: (bool, u64)| {
            for k in entries {
                let Some(v) = installed.get(k) else {
                    continue;
                };
                let v = layout::with_cutoff(v, Some(cutoff));
                if let Err(e) = maps.put_rule(installed, k, &v) {
                    tracing::warn!("timing a path switch in a kernel rule: {e}");
                }
            }
        };
        let ahead =
            |now: u64| crate::rules::Handover::cutoff_of(now + switch::LEAD.as_nanos() as u64);
        let mut latest = 0;
        for flow in started {
            let Some((sw, handover)) = switches.timing(flow) else {
                continue;
            };
            if sw.cutoff.is_some() {
                continue;
            }
            match sw.to {
                Side::Userspace => {
                    // The workers' cutoff first: a frame the program then refuses was read
                    // by a worker after it changed.
                    let c = ahead(switch::now_ns());
                    handover.set(false, c, sw.before);
                    write(&sw.entries, (false, c));
                    sw.cutoff = Some(c);
                }
                Side::Kernel => {
                    // The program's entries first, and the workers' cutoff only if that was
                    // done before it: else the workers keep every frame (twice, for a while).
                    let (mut c, mut on_time) = (0, false);
                    for _ in 0..3 {
                        c = ahead(switch::now_ns());
                        write(&sw.entries, (true, c));
                        if switch::now_ns() < c {
                            handover.set(true, c, sw.before);
                            on_time = true;
                            break;
                        }
                    }
                    if !on_time {
                        tracing::warn!(
                            "flow {}:{} on ifindex {}: the kernel rule took longer than {:?} to \
                             write; the flow is forwarded by both paths until its switch settles",
                            flow.1,
                            flow.2,
                            flow.0,
                            switch::LEAD
                        );
                    }
                    sw.cutoff = Some(c);
                }
            }
            latest = latest.max(sw.cutoff.unwrap_or(0));
        }
        // Returns once the cutoffs have passed, so that a frame received after a reload's
        // reply is forwarded by the rules the reply announced.
        let wait = latest.saturating_sub(switch::now_ns());
        if wait > 0 {
            std::thread::sleep(Duration::from_nanos(wait).min(2 * switch::LEAD));
        }
    }

    /// Puts one rule on the path `decision` gives it: for the kernel, a counter slot and its
    /// map entry with `flags` (`plan::entry_flags`). A rule whose slot or entry cannot be
    /// written goes to userspace, saying why.
    fn apply(
        &self,
        state: &mut State,
        rule: &mut Rule,
        decision: Decision,
        flags: u32,
        cutoff: Option<(bool, u64)>,
    ) -> Applied {
        let slot = state.slots.owned(&rule.spec.name);
        rule.kernel_slot = slot;
        let Some(k) = layout::key_bytes(
            rule.ifindex,
            rule.spec.group,
            rule.spec.port,
            rule.spec.source,
        ) else {
            // Validation refuses a source of the other family than the group; never here.
            rule.path = Path::Userspace {
                reason: "its source is of the other address family than its group".into(),
            };
            return Applied::Elsewhere;
        };
        // A monitored flow changing path: the side taking it over has not seen the datagrams
        // the other side checked meanwhile, so it starts afresh.
        let was_kernel = state.installed.contains(&k);
        let outputs = match decision {
            Decision::Kernel(o) => o,
            Decision::Waiting(reason) => {
                rule.path = Path::Waiting { reason };
                return Applied::Elsewhere;
            }
            Decision::Userspace(reason) => {
                rule.path = Path::Userspace { reason };
                return if was_kernel {
                    Applied::LeftKernel
                } else {
                    Applied::Elsewhere
                };
            }
        };
        let slot = match slot {
            Some(s) => s,
            None => match self.new_slot(state, rule) {
                Ok(s) => s,
                Err(reason) => {
                    rule.path = Path::Userspace { reason };
                    return Applied::Elsewhere;
                }
            },
        };
        rule.kernel_slot = Some(slot);
        // Before the entry goes in: until then the program sees none of the flow.
        if !was_kernel && rule.spec.monitor.is_some() {
            self.maps().restart_monitor(slot);
        }
        // The plan sends only rules whose monitor the program runs to the kernel.
        let checks = layout::RuleChecks::of(&rule.spec).unwrap_or_default();
        let v = layout::with_cutoff(&layout::rule_bytes(slot, checks, flags, &outputs), cutoff);
        if let Err(e) = self.maps().put_rule(&mut state.installed, &k, &v) {
            rule.path = Path::Userspace {
                reason: format!("updating the kernel rule map: {e}"),
            };
            return Applied::Elsewhere;
        }
        rule.path = Path::Kernel;
        Applied::Kernel(k, v)
    }

    /// A free slot for `rule`, its counters zeroed and its stream check fresh.
    fn new_slot(&self, state: &mut State, rule: &Rule) -> Result<u32, String> {
        let full = || {
            format!(
                "the kernel path holds at most {} rules (fast_path_max_flows)",
                self.sizes.max_flows
            )
        };
        let slot = state.slots.take(rule).ok_or_else(full)?;
        if let Err(e) = self.maps().reset_slot(slot) {
            state.slots.untake(&rule.spec.name);
            return Err(format!("zeroing kernel counter slot {slot}: {e}"));
        }
        Ok(slot)
    }

    /// Times the path switches the plan started, deletes the map entries and frees the slots
    /// the previous table used and the new one does not; call once the workers run the new
    /// table.
    pub fn finish(&self, pending: Pending) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        self.time_switches(state, &pending.started);
        for k in &pending.stale_keys {
            self.maps().delete_rule(&mut state.installed, k);
        }
        for (slot, outputs) in state.slots.release(pending.freed_slots) {
            if let Some(c) = self.rule_counters(slot) {
                state.retired.add(&c, outputs.unwrap_or(MAX_OUTPUTS));
            }
        }
        for ifindex in pending.unused_inputs {
            state.links.drop_input(ifindex);
        }
    }

    /// The stream check of a monitored rule's slot, read under its lock.
    pub fn monitor_counters(&self, slot: u32) -> Option<counters::MonitorCounters> {
        self.maps().monitor_counters(slot)
    }

    /// The summed per-CPU counters of a rule's slot.
    pub fn rule_counters(&self, slot: u32) -> Option<counters::RuleCounters> {
        self.maps().rule_counters(slot)
    }

    /// The summed counters of frames the program left to the stack.
    pub fn pass_counters(&self) -> counters::PassCounters {
        self.maps().pass_counters()
    }

    /// Counts of the rules removed or replaced since start (with those whose entries a path
    /// switch still keeps, `switch.rs`).
    pub fn retired(&self) -> counters::KernelTotals {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut totals = state.retired;
        for slot in state.switches.held_slots() {
            if let Some(c) = self.rule_counters(slot) {
                totals.add(&c, state.slots.outputs_of(slot).unwrap_or(MAX_OUTPUTS));
            }
        }
        totals
    }

    /// Input interfaces the program is attached to.
    pub fn attached(&self) -> Vec<u32> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.links.attached()
    }

    /// Detaches the program from every interface (the kernel does it too when mcrd exits).
    pub fn detach_all(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.links.clear();
    }
}

/// The entry point `attach::load` loaded for a kernel with `features`.
fn entry<'a>(
    skel: &'a FastpathSkel<'static>,
    features: KernelFeatures,
) -> &'a libbpf_rs::ProgramMut<'static> {
    if features.bpf_loop {
        &skel.progs.mcr_fastpath
    } else {
        &skel.progs.mcr_fastpath_nl
    }
}

/// What [`FastPath::apply`] did with a rule.
enum Applied {
    /// It runs in the kernel, under this map entry (key, value).
    Kernel(Vec<u8>, Vec<u8>),
    /// Its flow was in the kernel and goes to the workers ([`PlanReport::left_kernel`]).
    LeftKernel,
    /// Anything else: not in the kernel, its userspace stream checks left as they are.
    Elsewhere,
}

#[cfg(test)]
mod ipv6_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use layout::{bytes_of, KernelOutput};
    use libbpf_rs::{MapCore, MapFlags};
    use std::net::Ipv4Addr;

    /// Loading needs CAP_BPF; without it the test says so and passes, unless CI requires it.
    pub(super) fn privileged(test: &str) -> bool {
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
        let slot = 0;
        fp.maps().reset_slot(slot).unwrap();
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
        let fp =
            FastPath::load_with(sizes, FastPathAttach::Auto, KernelFeatures::ALL).expect("loads");
        assert_eq!(fp.skel.maps.mcr_fp_rules.max_entries(), 100_000);
        assert_eq!(fp.skel.maps.mcr_fp_counters.max_entries(), 100_000);
        assert_eq!(fp.skel.maps.mcr_fp_monitors.max_entries(), 100_000);
        // The last slot has counters; one past it has none.
        assert_eq!(
            fp.rule_counters(99_999),
            Some(counters::RuleCounters::default())
        );
        assert_eq!(fp.rule_counters(100_000), None);
        assert_eq!(fp.state.lock().unwrap().slots.free_count(), 100_000);
        assert!(sizes.map_bytes(2) > 100_000 * 100);
    }

    /// An Ethernet/IPv4/UDP frame from 10.99.0.1:4000 to 239.1.1.1:5000 carrying `payload`,
    /// with a full UDP checksum (`checksum`, what a sender without offload puts on the wire)
    /// or none (0).
    fn udp_frame(payload: &[u8], checksum: bool) -> Vec<u8> {
        use crate::wire::checksum;
        let udp_len = 8 + payload.len() as u16;
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
        let sum = checksum::finish(checksum::sum(ip));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f[34..36].copy_from_slice(&4000u16.to_be_bytes());
        f[36..38].copy_from_slice(&5000u16.to_be_bytes());
        f[38..40].copy_from_slice(&udp_len.to_be_bytes());
        f[42..].copy_from_slice(payload);
        if checksum {
            let pseudo = checksum::ipv4_pseudo_header([10, 99, 0, 1], [239, 1, 1, 1], 17, udp_len);
            let sum = match checksum::finish(pseudo + checksum::sum(&f[34..])) {
                0 => 0xffff,
                s => s,
            };
            f[40..42].copy_from_slice(&sum.to_be_bytes());
        }
        f
    }

    /// An Ethernet/IPv4/UDP frame to 239.1.1.1:5000 carrying an RTP packet with sequence 7.
    fn rtp_frame() -> Vec<u8> {
        let mut rtp = vec![0u8; 200];
        rtp[0] = 0x80;
        rtp[1] = 96;
        rtp[3] = 7;
        udp_frame(&rtp, false)
    }

    /// Runs the program on `frame` `repeat` times (BPF_PROG_TEST_RUN: no device, the
    /// redirect is only a verdict): the verdict and the average time per run.
    fn test_run(fp: &FastPath, frame: &[u8], repeat: u32) -> (u32, std::time::Duration) {
        let out = fp
            .program()
            .test_run(libbpf_rs::ProgramInput {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        (out.return_value, out.duration)
    }

    /// An output to 239.1.1.1:5000 out of `lo` (the loopback rules' one output).
    fn loopback_output(lo: u32) -> KernelOutput {
        KernelOutput {
            ifindex: lo,
            dst_mac: [0x01, 0x00, 0x5e, 0x01, 0x01, 0x01],
            src_mac: [0; 6],
            dst: Ipv4Addr::new(239, 1, 1, 1).into(),
            src: Ipv4Addr::new(10, 99, 0, 1).into(),
            dst_port: 5000,
            src_port: 0,
            ttl: 8,
            dscp: None,
        }
    }

    /// Installs the 1:1 rule for [`rtp_frame`] arriving on `lo`, with counter slot `slot`.
    /// The runs of a test share one packet, which the program rewrites in place: the output
    /// writes what the frame holds, so every run matches (and skips the checksum fixes).
    fn install_loopback_rule(fp: &FastPath, slot: u32, monitor: Option<crate::config::Monitor>) {
        install_rule(fp, slot, monitor, None, 0);
    }

    /// Installs a 1:1 rule for [`udp_frame`]'s flow (239.1.1.1:5000 arriving on `lo`) from
    /// `source` (`None`: any source), with counter slot `slot` and entry flags `flags`.
    fn install_rule(
        fp: &FastPath,
        slot: u32,
        monitor: Option<crate::config::Monitor>,
        source: Option<Ipv4Addr>,
        flags: u32,
    ) {
        let lo = crate::netif::index("lo").expect("lo");
        let out = loopback_output(lo);
        let key = layout::key(lo, Ipv4Addr::new(239, 1, 1, 1), 5000, source);
        let checks = layout::RuleChecks {
            monitor: layout::monitor_kind(monitor).unwrap(),
            min_ttl: 0,
        };
        let value = layout::rule_value(slot, checks, flags, &[out]);
        fp.skel
            .maps
            .mcr_fp_rules
            .update(bytes_of(&key), bytes_of(&value), MapFlags::ANY)
            .unwrap();
    }

    /// Which rule the program forwards [`udp_frame`] (from 10.99.0.1) by: the any-source
    /// entry (slot 0) unless the flow has a source-specific entry for that source (slot 1),
    /// which the program finds through the any-source entry's flag or, with no any-source
    /// entry, by looking it up.
    #[test]
    fn the_source_s_rule_is_found_through_the_any_source_entry_s_flag() {
        if !privileged("the_source_s_rule_is_found_through_the_any_source_entry_s_flag") {
            return;
        }
        let frame = udp_frame(&[0u8; 64], false);
        let (sender, other) = (Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(10, 99, 0, 2));
        let cases: [(&str, bool, Option<Ipv4Addr>, u32); 4] = [
            ("an any-source rule alone", true, None, 0),
            ("the sender's rule", true, Some(sender), 1),
            ("another source's rule", true, Some(other), 0),
            (
                "the sender's rule, no any-source rule",
                false,
                Some(sender),
                1,
            ),
        ];
        for (what, any, source, slot_hit) in cases {
            let fp = FastPath::load().expect("loads");
            for slot in [0, 1] {
                fp.maps().reset_slot(slot).unwrap();
            }
            let flags = if source.is_some() {
                layout::RULE_SOURCES
            } else {
                0
            };
            if any {
                install_rule(&fp, 0, None, None, flags);
            }
            if let Some(s) = source {
                install_rule(&fp, 1, None, Some(s), 0);
            }
            assert_eq!(test_run(&fp, &frame, 1).0, 7, "{what}: TC_ACT_REDIRECT");
            let matched = |slot| fp.rule_counters(slot).unwrap().matched;
            assert_eq!(matched(slot_hit), 1, "{what}: slot {slot_hit}");
            assert_eq!(matched(1 - slot_hit), 0, "{what}");
        }
    }

    /// A flow changing path: the program forwards the frames its entry's cutoff gives it, by
    /// `skb->tstamp` (set here through the test run's `__sk_buff`), leaves the others to the
    /// workers uncounted (but in `handed_over`), and forwards a frame without a timestamp.
    #[test]
    fn a_cutoff_gives_the_program_the_frames_stamped_on_its_side() {
        if !privileged("a_cutoff_gives_the_program_the_frames_stamped_on_its_side") {
            return;
        }
        /// `offsetof(struct __sk_buff, tstamp)` and `sizeof(struct __sk_buff)` (Linux 6.x).
        const TSTAMP: usize = 152;
        const SK_BUFF: usize = 192;
        let fp = FastPath::load().expect("loads");
        fp.maps().reset_slot(0).unwrap();
        let frame = udp_frame(&[0u8; 64], false);
        let run = |stamp: u64| {
            let mut ctx = [0u8; SK_BUFF];
            ctx[TSTAMP..TSTAMP + 8].copy_from_slice(&stamp.to_ne_bytes());
            fp.program()
                .test_run(libbpf_rs::ProgramInput {
                    data_in: Some(&frame),
                    context_in: Some(&mut ctx),
                    ..Default::default()
                })
                .expect("BPF_PROG_TEST_RUN")
                .return_value
        };
        let (redirect, next) = (7, u32::MAX);
        let lo = crate::netif::index("lo").expect("lo");
        let key = layout::key(lo, Ipv4Addr::new(239, 1, 1, 1), 5000, None);
        let install = |cutoff| {
            let out = loopback_output(lo);
            let value = layout::with_cutoff(
                &layout::rule_bytes(0, Default::default(), 0, &[out]),
                cutoff,
            );
            fp.skel
                .maps
                .mcr_fp_rules
                .update(bytes_of(&key), &value, MapFlags::ANY)
                .unwrap();
        };
        install(Some((true, 1_000)));
        assert_eq!(
            run(999),
            next,
            "coming to the kernel: before the cutoff, the workers'"
        );
        assert_eq!(run(1_000), redirect);
        assert_eq!(run(0), redirect, "no timestamp: forwarded");
        install(Some((false, 1_000)));
        assert_eq!(
            run(999),
            redirect,
            "leaving the kernel: before the cutoff, ours"
        );
        assert_eq!(run(1_000), next);
        install(None);
        assert_eq!(run(1_000), redirect);
        assert_eq!(fp.pass_counters().handed_over, 2);
        assert_eq!(
            fp.rule_counters(0).unwrap().matched,
            4,
            "handed-over frames uncounted"
        );
    }

    /// An Ethernet/IPv4/UDP frame to 239.1.1.1:5000 with `len` bytes of payload and a UDP
    /// checksum, which the program must verify (`corrupt`: one payload byte changed after it
    /// was computed).
    fn checksummed_frame(len: usize, corrupt: bool) -> Vec<u8> {
        use crate::wire::checksum;
        let udp_len = 8 + len;
        let mut f = vec![0u8; 14 + 20 + udp_len];
        f[0..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let (src, dst) = ([10, 99, 0, 1], [239, 1, 1, 1]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
        ip[8] = 8;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let sum = checksum::finish(checksum::sum(ip));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let udp = &mut f[34..];
        udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        for (i, b) in udp[8..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let pseudo = checksum::ipv4_pseudo_header(src, dst, 17, udp_len as u16);
        let c = match checksum::finish(pseudo + checksum::sum(udp)) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        if corrupt {
            udp[8 + len / 2] ^= 0x40;
        }
        f
    }

    /// A kernel without bpf_loop (Linux < 5.17) gets the other entry point: the UDP checksum
    /// summed by a bounded loop, no RTP check. This kernel has bpf_loop, so that program is
    /// tested by loading it as for a kernel without: it is the same program either way.
    #[test]
    fn without_bpf_loop_udp_checksums_are_summed_by_a_bounded_loop() {
        if !privileged("without_bpf_loop_udp_checksums_are_summed_by_a_bounded_loop") {
            return;
        }
        let without = KernelFeatures {
            bpf_loop: false,
            ..KernelFeatures::ALL
        };
        let load = |features| {
            FastPath::load_with(Sizes::default(), FastPathAttach::Auto, features).expect("loads")
        };
        let (with, without) = (load(KernelFeatures::ALL), load(without));
        eprintln!(
            "verifier instructions: {} with bpf_loop, {} with the bounded loop",
            with.facts().verified_insns,
            without.facts().verified_insns
        );
        assert_eq!(with.facts().name, "mcr_fastpath");
        assert_eq!(without.facts().name, "mcr_fastpath_nl");
        // Payloads across the loop's chunk edges (256 bytes), of odd length too, up to what
        // BPF_PROG_TEST_RUN takes (a page).
        let lens = [1, 3, 255, 256, 257, 1400, 3000];
        for (fp, name) in [(&with, "bpf_loop"), (&without, "bounded loop")] {
            fp.maps().reset_slot(0).unwrap();
            install_loopback_rule(fp, 0, None);
            for len in lens {
                let good = checksummed_frame(len, false);
                assert_eq!(
                    test_run(fp, &good, 1).0,
                    7,
                    "{name}, {len} bytes: redirected"
                );
                let bad = checksummed_frame(len, true);
                assert_eq!(
                    test_run(fp, &bad, 1).0,
                    u32::MAX,
                    "{name}, {len} bytes, bad UDP checksum: left to the stack (TC_ACT_UNSPEC)"
                );
            }
            let bad_udp = crate::wire::Malformed::BadUdpChecksum.index();
            assert_eq!(
                fp.pass_counters().malformed[bad_udp],
                lens.len() as u64,
                "{name}"
            );
        }
        // The program without bpf_loop has no RTP check: a monitored rule's datagrams are not
        // checked (mcrd keeps such rules in userspace on such a kernel: plan.rs).
        for (fp, checked) in [(&with, 1), (&without, 0)] {
            install_loopback_rule(fp, 0, Some(crate::config::Monitor::Rtp));
            assert_eq!(test_run(fp, &rtp_frame(), 1).0, 7);
            assert_eq!(fp.monitor_counters(0).unwrap().datagrams, checked);
        }
    }

    /// Two CPUs run the program on one monitored flow at once: the lock keeps each check
    /// whole, so no count is lost (unlocked `+= 1` on a shared value would lose some).
    #[test]
    fn a_flow_checked_on_two_cpus_at_once_loses_no_count() {
        if !privileged("a_flow_checked_on_two_cpus_at_once_loses_no_count") {
            return;
        }
        let cpus: Vec<u32> = crate::sys::cpu::allowed_cpus()
            .unwrap()
            .into_iter()
            .take(2)
            .collect();
        if cpus.len() < 2 {
            eprintln!("SKIP a_flow_checked_on_two_cpus_at_once_loses_no_count: one CPU");
            return;
        }
        let fp = FastPath::load().expect("loads");
        let slot = 0;
        fp.maps().reset_slot(slot).unwrap();
        install_loopback_rule(&fp, slot, Some(crate::config::Monitor::Rtp));
        let frame = rtp_frame();
        let repeat = 200_000;
        std::thread::scope(|s| {
            for &cpu in &cpus {
                let (fp, frame) = (&fp, &frame);
                s.spawn(move || {
                    crate::sys::cpu::pin_current_thread(cpu).unwrap();
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
        let slot = 0;
        fp.maps().reset_slot(slot).unwrap();
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

    /// The program's time per datagram under BPF_PROG_TEST_RUN, the in-program cost issue 20
    /// works on (reports/fastpath-cost.md): a 1400-byte datagram of an any-source rule, with
    /// a full UDP checksum (test-run frames are CHECKSUM_NONE, so the program verifies it, as
    /// for a frame from a NIC without checksum offload) and with none. The frame is rewritten
    /// in place to what it already holds, so no checksum is updated. Prints the medians;
    /// asserts only the verdict (no speed is asserted on a shared machine).
    #[test]
    fn the_program_s_time_per_datagram() {
        if !privileged("the_program_s_time_per_datagram") {
            return;
        }
        let fp = FastPath::load().expect("loads");
        fp.maps().reset_slot(0).unwrap();
        install_loopback_rule(&fp, 0, None);
        let payload: Vec<u8> = (0..1400u32).map(|i| (i * 7) as u8).collect();
        let frames = [
            ("full UDP checksum", udp_frame(&payload, true)),
            ("no UDP checksum", udp_frame(&payload, false)),
        ];
        let mut ns: [Vec<u128>; 2] = Default::default();
        for _ in 0..7 {
            for (i, (_, frame)) in frames.iter().enumerate() {
                let (verdict, t) = test_run(&fp, frame, 20_000);
                assert_eq!(verdict, 7, "TC_ACT_REDIRECT");
                ns[i].push(t.as_nanos());
            }
        }
        for ((what, _), mut ns) in frames.iter().zip(ns) {
            ns.sort_unstable();
            eprintln!(
                "BPF_PROG_TEST_RUN, 1400-byte datagram, {what}: median {} ns (7 x 20,000 runs: {ns:?})",
                ns[3]
            );
        }
    }
}
