//! A flow changing path under traffic, each frame forwarded by exactly one side: the control
//! plane's half of [`crate::rules::Handover`] (issue 19, item 7b).
//!
//! Nothing that swaps the map entry and the packet filters closes the window on its own (the
//! taps run before TC ingress, the filter is per socket and the map global: see
//! `reports/hardening-round2/fastpath.md`, item 7). The frame's receive timestamp, the same
//! number for the program (`skb->tstamp`) and the rings (`tp_sec`/`tp_nsec`), arbitrates: a
//! switch gets a cutoff `C` a little ahead of the clock, and frames stamped from `C` on belong
//! to the side the flow goes to, those before to the side it leaves. A switch goes:
//!
//! 1. **Plan** (before the table is published): the flow's rules carry a pending
//!    [`Handover`] that leaves every stamped frame to the old side; the packet filters keep
//!    (to the kernel) or start (to userspace) capturing the flow, and the program's entries
//!    are written (to the kernel: forwarding only frames stamped at the end of time) or kept
//!    (to userspace).
//! 2. **Finish** (the workers run the table, so they capture the flow and see the handover):
//!    `C` = now + [`LEAD`] (and `finish` returns once `C` has passed). Giving frames to the kernel, its entries are written first, and
//!    the workers' cutoff only once that was done before `C` (a frame stamped from `C` on then
//!    reaches TC ingress after the entries changed, so no frame is refused by both: the
//!    workers read frames later than the program does). Giving them to the workers, their
//!    cutoff is written first, then the entries: a frame the program refuses was read by a
//!    worker after its cutoff changed. A write late for `C` makes frames go out twice, never
//!    not at all.
//! 3. **A plan after `C` + [`SETTLE`]** (the next reload, or the periodic re-plan within about
//!    a second): the switch is settled. To the kernel: the entries drop the cutoff, then the
//!    published table stops the filters capturing the flow. To userspace: the workers'
//!    handover gives them everything, then `finish` deletes the entries.
//!
//! Why a cutoff chosen ahead, rather than the program recording per flow the stamps of the
//! frames it forwarded for the workers to compare with: such a record tells a worker only
//! about frames the program has already run for, and a worker may read a frame before the
//! program has run for one stamped just before it on another CPU; a cutoff fixed before either
//! side sees the frames it divides has no such race.
//!
//! A switch reversed before it settled waits (in the plan, at most [`LEAD`] + [`SETTLE`]) for
//! it to settle, so that the workers' handover needs only the last two cutoffs.
//!
//! A frame without a timestamp (receive timestamps off: mcrd keeps them on with a socket of
//! its own, [`Stamps`]; or a delivery time on the skb) is forwarded by both sides, as every
//! frame was in the window before this existed. Malformed frames: the program leaves those
//! its cutoff gives the workers to them uncounted, but counts those it owns; the workers
//! count every malformed frame they capture (they cannot tell its flow), so during a switch
//! a malformed frame of the flow stamped on the kernel's side is counted by both.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::rules::{Handover, Rule};

/// A flow: (input ifindex, group, port). All rules of a flow take one path (`plan.rs`).
pub(super) type Flow = (u32, IpAddr, u16);

pub(super) fn flow_of(rule: &Rule) -> Flow {
    (rule.ifindex, rule.spec.group, rule.spec.port)
}

/// How far ahead of the clock a switch's cutoff is set: longer than writing the program's
/// entries and the workers' cutoff takes (microseconds), with room for the control thread
/// being preempted. A late write costs duplicates, not losses. `FastPath::finish` waits for
/// the cutoff to pass (a reload that moves a flow replies this much later), so that what is
/// received after the reply is forwarded as the new rules say.
pub(super) const LEAD: Duration = Duration::from_millis(10);

/// How long after its cutoff a switch counts as settled: every frame stamped before the
/// cutoff has passed TC ingress by then (the stamp and TC ingress are one softirq apart, or
/// a backlog queue).
pub(super) const SETTLE: Duration = Duration::from_millis(30);

/// Nanoseconds since the Unix epoch, `CLOCK_REALTIME`: the clock the kernel stamps received
/// skbs with (`ktime_get_real`).
pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// A path a flow can be on (waiting flows are on neither and are not followed here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Kernel,
    Userspace,
}

/// A switch not settled yet.
pub(super) struct Switch {
    pub(super) to: Side,
    /// Set by `FastPath::finish`; `None` before.
    pub(super) cutoff: Option<u64>,
    /// The previous switch's cutoff (0: none).
    pub(super) before: u64,
    /// The program's entries of the flow: to the kernel, those the plan wrote (with the
    /// cutoff); to userspace, those kept (and given the cutoff) until the switch settles.
    pub(super) entries: Vec<Vec<u8>>,
    /// Counter slots of kept entries whose rules are gone or changed: freed once the entries
    /// are deleted.
    pub(super) held_slots: Vec<u32>,
}

/// A flow's side as the last plan left it, and the cutoff of its last settled switch (0:
/// none).
#[derive(Clone, Copy)]
struct FlowState {
    side: Side,
    last_cutoff: u64,
}

/// The flows the plans put on a path, and their switches in progress. The switches and
/// handovers are kept apart from the flows, so that a plan with none in progress pays one
/// emptiness test per rule, not a lookup.
#[derive(Default)]
pub(super) struct Switches {
    flows: HashMap<Flow, FlowState>,
    switches: HashMap<Flow, Switch>,
    /// What the workers check a flow's frames against: while it switches, and after a switch
    /// to the kernel has settled (a frame a ring still holds from before the filter stopped
    /// capturing the flow is checked against it); none after one to userspace settled.
    handovers: HashMap<Flow, Arc<Handover>>,
}

/// What one plan changed.
#[derive(Debug, Default)]
pub(super) struct Step {
    /// Switches started, for `FastPath::finish` to time.
    pub(super) started: Vec<Flow>,
    /// Slots held for settled (or abandoned) switches' entries: free them after the entries
    /// are deleted.
    pub(super) released_slots: Vec<u32>,
}

impl Switches {
    /// When the switches `sides` reverses will have settled, if one has not yet.
    pub(super) fn unsettled_until(&self, sides: &HashMap<Flow, Side>) -> Option<u64> {
        self.switches
            .iter()
            .filter_map(|(flow, sw)| {
                let reversed = sides.get(flow).is_some_and(|s| *s != sw.to);
                sw.cutoff.filter(|_| reversed).map(|c| c + ns(SETTLE))
            })
            .max()
    }

    /// Brings the book to `sides` (each flow's path in the new table) at `now`: settles the
    /// switches whose time has come, abandons those not timed yet that the table reverses,
    /// and starts one for each flow that changes side. `kernel_entries` gives the program's
    /// entries of a flow (a switch to userspace keeps them).
    pub(super) fn step(
        &mut self,
        sides: &HashMap<Flow, Side>,
        kernel_entries: impl Fn(Flow) -> Vec<Vec<u8>>,
        now: u64,
    ) -> Step {
        let mut step = Step::default();
        // Flows gone from the table (removed, or waiting).
        let (switches, handovers) = (&mut self.switches, &mut self.handovers);
        self.flows.retain(|flow, st| {
            if sides.contains_key(flow) {
                return true;
            }
            if let Some(sw) = switches.remove(flow) {
                step.released_slots.extend(sw.held_slots);
            }
            if let Some(h) = handovers.remove(flow) {
                if st.side == Side::Userspace {
                    // What the workers still read of it, they forward.
                    h.all_to_workers();
                }
            }
            false
        });
        // Switches settled, or abandoned before they were timed.
        let mut done = Vec::new();
        for (flow, sw) in &self.switches {
            let side = sides.get(flow).copied();
            match sw.cutoff {
                // Settled; or reversed before it settled, which the plan waited for, so only
                // a clock stepped back gets here: settled now (twice, not never).
                Some(c) if now >= c + ns(SETTLE) || side != Some(sw.to) => {
                    done.push((*flow, Some(c)))
                }
                None if side != Some(sw.to) => done.push((*flow, None)),
                _ => {}
            }
        }
        for (flow, cutoff) in done {
            let sw = self.switches.remove(&flow).expect("listed");
            step.released_slots.extend(sw.held_slots);
            let st = self
                .flows
                .get_mut(&flow)
                .expect("a switch's flow is listed");
            match cutoff {
                Some(c) => {
                    st.last_cutoff = c;
                    if sw.to == Side::Userspace {
                        // Before `finish` deletes the entries: the workers take everything.
                        if let Some(h) = self.handovers.remove(&flow) {
                            h.all_to_workers();
                        }
                    }
                }
                None => {
                    // Not timed: the old side still has every stamped frame.
                    st.side = match sw.to {
                        Side::Kernel => Side::Userspace,
                        Side::Userspace => Side::Kernel,
                    };
                    self.handovers.remove(&flow);
                }
            }
        }
        // Switches started.
        for (&flow, &side) in sides {
            let st = self.flows.entry(flow).or_insert(FlowState {
                side,
                last_cutoff: 0,
            });
            if side == st.side || self.switches.contains_key(&flow) {
                continue;
            }
            st.side = side;
            let entries = match side {
                Side::Kernel => Vec::new(),
                Side::Userspace => kernel_entries(flow),
            };
            if side == Side::Userspace && entries.is_empty() {
                // Nothing of the flow in the program: nothing to hand over.
                self.handovers.remove(&flow);
                continue;
            }
            let to_kernel = side == Side::Kernel;
            self.handovers
                .insert(flow, Arc::new(Handover::pending(to_kernel, st.last_cutoff)));
            self.switches.insert(
                flow,
                Switch {
                    to: side,
                    cutoff: None,
                    before: st.last_cutoff,
                    entries,
                    held_slots: Vec::new(),
                },
            );
            step.started.push(flow);
        }
        step
    }

    /// The flow's switch in progress.
    pub(super) fn switch(&self, flow: &Flow) -> Option<&Switch> {
        self.switches.get(flow)
    }

    pub(super) fn switch_mut(&mut self, flow: &Flow) -> Option<&mut Switch> {
        self.switches.get_mut(flow)
    }

    /// The flow's switch in progress with its handover, to time it.
    pub(super) fn timing(&mut self, flow: &Flow) -> Option<(&mut Switch, Arc<Handover>)> {
        let handover = Arc::clone(self.handovers.get(flow)?);
        Some((self.switches.get_mut(flow)?, handover))
    }

    /// Every switch in progress.
    pub(super) fn switches_mut(&mut self) -> impl Iterator<Item = &mut Switch> {
        self.switches.values_mut()
    }

    /// The counter slots the switches in progress hold for their kept entries.
    pub(super) fn held_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.switches
            .values()
            .flat_map(|sw| sw.held_slots.iter().copied())
    }

    /// What the workers check the flow's frames against.
    pub(super) fn handover(&self, flow: &Flow) -> Option<&Arc<Handover>> {
        self.handovers.get(flow)
    }

    /// Whether a switch is in progress: a plan without one skips the per-flow work.
    pub(super) fn any_switch(&self) -> bool {
        !self.switches.is_empty()
    }

    /// Whether a flow has a handover: a plan without one skips the per-rule lookup.
    pub(super) fn any_handover(&self) -> bool {
        !self.handovers.is_empty()
    }
}

/// Receive timestamps on, host-wide, while it lives: a socket with `SO_TIMESTAMPNS` makes the
/// kernel stamp every received skb (`net_enable_timestamp`, the `netstamp_needed` key) before
/// the packet taps and TC ingress see it, which the arbitration needs; without it the workers
/// open no socket on an input whose flows are all in the kernel, and nothing would stamp
/// them. Costs one clock read per frame the host receives.
pub(super) struct Stamps {
    _socket: std::net::UdpSocket,
}

impl Stamps {
    pub(super) fn on() -> std::io::Result<Self> {
        let s = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        crate::sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1i32)?;
        Ok(Stamps { _socket: s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Flow = (2, IpAddr::V4(std::net::Ipv4Addr::new(239, 1, 1, 1)), 5000);

    fn sides(side: Side) -> HashMap<Flow, Side> {
        [(F, side)].into_iter().collect()
    }

    fn entries(_: Flow) -> Vec<Vec<u8>> {
        vec![vec![1, 2, 3]]
    }

    #[test]
    fn a_flow_changing_side_starts_a_switch_that_settles_after_its_cutoff() {
        let mut book = Switches::default();
        assert!(book
            .step(&sides(Side::Kernel), entries, 0)
            .started
            .is_empty());
        let step = book.step(&sides(Side::Userspace), entries, 1_000);
        assert_eq!(step.started, vec![F]);
        let h = Arc::clone(book.handover(&F).unwrap());
        assert!(!h.workers_forward(Some(5_000)), "not timed: the program's");
        // Timed by `finish`.
        let c = 2_000_000;
        book.switch_mut(&F).unwrap().cutoff = Some(c);
        h.set(false, c, 0);
        book.step(&sides(Side::Userspace), entries, c + ns(SETTLE) - 1);
        assert!(book.switch(&F).is_some(), "not settled yet");
        book.step(&sides(Side::Userspace), entries, c + ns(SETTLE));
        assert!(book.switch(&F).is_none(), "settled");
        assert!(book.handover(&F).is_none());
        assert!(
            h.workers_forward(Some(1)),
            "the workers take everything once settled"
        );
    }

    #[test]
    fn a_switch_reversed_before_it_was_timed_is_abandoned() {
        let mut book = Switches::default();
        book.step(&sides(Side::Userspace), entries, 0);
        assert_eq!(book.step(&sides(Side::Kernel), entries, 1).started, vec![F]);
        let step = book.step(&sides(Side::Userspace), entries, 2);
        assert!(step.started.is_empty());
        assert!(book.switch(&F).is_none());
        assert!(book.handover(&F).is_none());
    }

    #[test]
    fn a_reversal_waits_for_the_switch_to_settle() {
        let mut book = Switches::default();
        book.step(&sides(Side::Userspace), entries, 0);
        book.step(&sides(Side::Kernel), entries, 1);
        book.switch_mut(&F).unwrap().cutoff = Some(1_000);
        assert_eq!(book.unsettled_until(&sides(Side::Kernel)), None);
        assert_eq!(
            book.unsettled_until(&sides(Side::Userspace)),
            Some(1_000 + ns(SETTLE))
        );
        let step = book.step(&sides(Side::Userspace), entries, 1_000 + ns(SETTLE));
        assert_eq!(step.started, vec![F], "settled, then the new switch starts");
        assert_eq!(book.switch(&F).unwrap().before, 1_000);
    }

    #[test]
    fn a_flow_with_nothing_in_the_program_moves_to_userspace_without_a_switch() {
        let mut book = Switches::default();
        book.step(&sides(Side::Kernel), entries, 0);
        let step = book.step(&sides(Side::Userspace), |_| Vec::new(), 1);
        assert!(step.started.is_empty());
        assert!(book.handover(&F).is_none());
    }
}
