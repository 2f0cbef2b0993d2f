//! A flow changing path, as the workers see it: which of its frames are theirs, by receive
//! timestamp.
//!
//! When a flow (input, group, port) moves between the kernel fast path and the workers, both
//! see its frames for a while: the packet taps run before TC ingress, and neither the map
//! entry nor the socket filter can be swapped at the same instant for every frame (issue 19,
//! item 7; `reports/hardening-round2/fastpath.md`). The frame's receive timestamp decides
//! instead: the stack stamps the skb once, before the taps and the program run; the program
//! reads it as `skb->tstamp`, the rings as `tp_sec`/`tp_nsec`. A switch gets a cutoff `C` a
//! little in the future (`crate::fastpath` picks it and writes the program's side); frames
//! stamped at or after `C` belong to the new side, those before to the old one, and each side
//! forwards exactly its own.
//!
//! A [`Handover`] is shared by the flow's rules in the tables the workers run (so the control
//! plane moves the cutoff without publishing a table) and read once per matched datagram of
//! those rules only. A frame without a timestamp (`None`: timestamps off, or a delivery time
//! on the skb, which the taps and the program both show as none) is forwarded: the program
//! forwards it too, so it may go out twice, never not at all.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bit 0 of [`Handover::last`]: the last switch gave the flow to the kernel (frames stamped at
/// or after its cutoff are the program's). Cutoffs are even, so the bit is free.
const TO_KERNEL: u64 = 1;

/// The cutoffs of a flow's last switch and of the one before, for the workers.
#[derive(Debug)]
pub struct Handover {
    /// The last switch: its cutoff (even), and [`TO_KERNEL`] when it went to the kernel.
    last: AtomicU64,
    /// The cutoff of the switch before (0: none). Frames stamped before it are forwarded:
    /// only a frame that sat in a ring across two switches is that old, and for it twice is
    /// the safe answer.
    before: AtomicU64,
}

impl Handover {
    /// A switch not yet timed: the side the flow leaves keeps every stamped frame (the
    /// cutoff is at the end of time). `before` is the previous switch's cutoff, if any.
    pub fn pending(to_kernel: bool, before: u64) -> Self {
        let h = Handover {
            last: AtomicU64::new(0),
            before: AtomicU64::new(0),
        };
        h.set(to_kernel, u64::MAX, before);
        h
    }

    /// Times the switch: frames stamped at or after `cutoff` (rounded down to even) go to the
    /// kernel (`to_kernel`) or to the workers. `before` is the previous switch's cutoff.
    ///
    /// `before` is stored first and the cutoff last (release), and a worker loads them in the
    /// other order: a worker seeing the new cutoff sees the new `before` too; one seeing the
    /// old cutoff with the new `before` errs only towards forwarding frames older than the
    /// old cutoff.
    pub fn set(&self, to_kernel: bool, cutoff: u64, before: u64) {
        self.before.store(before & !1, Ordering::Relaxed);
        let last = (cutoff & !1) | if to_kernel { TO_KERNEL } else { 0 };
        self.last.store(last, Ordering::Release);
    }

    /// The flow is the workers' alone again (its switch to userspace is settled and the
    /// program's entries are about to go).
    pub fn all_to_workers(&self) {
        self.set(false, 0, 0);
    }

    /// The cutoff as the program must compare it (even).
    pub fn cutoff_of(cutoff: u64) -> u64 {
        cutoff & !1
    }

    /// Whether the workers forward a frame stamped `stamp` (ns since the Unix epoch,
    /// `CLOCK_REALTIME`, as the ring reports it; `None` when the frame has no timestamp).
    #[inline]
    pub fn workers_forward(&self, stamp: Option<u64>) -> bool {
        let Some(t) = stamp else {
            return true;
        };
        let last = self.last.load(Ordering::Acquire);
        let to_kernel = last & TO_KERNEL != 0;
        if t >= last & !1 {
            return !to_kernel;
        }
        if t >= self.before.load(Ordering::Relaxed) {
            return to_kernel;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_to_the_kernel_leaves_the_workers_the_frames_before_its_cutoff() {
        let h = Handover::pending(true, 0);
        assert!(
            h.workers_forward(Some(5_000)),
            "not timed: the workers keep all"
        );
        h.set(true, 1_000, 0);
        assert!(h.workers_forward(Some(999)));
        assert!(!h.workers_forward(Some(1_000)));
        assert!(
            h.workers_forward(None),
            "no timestamp: forwarded (the program does too)"
        );
    }

    #[test]
    fn a_switch_to_userspace_gives_the_workers_the_frames_from_its_cutoff_on() {
        let h = Handover::pending(false, 0);
        assert!(
            !h.workers_forward(Some(5_000)),
            "not timed: the program keeps all"
        );
        assert!(h.workers_forward(None));
        h.set(false, 1_001, 0);
        assert!(!h.workers_forward(Some(999)));
        assert!(
            h.workers_forward(Some(1_000)),
            "the cutoff is rounded down to even"
        );
        h.all_to_workers();
        assert!(h.workers_forward(Some(1)));
    }

    #[test]
    fn frames_older_than_the_switch_before_are_forwarded() {
        // To the kernel at 1,000, then back to userspace at 2,000: the workers own frames
        // before 1,000 and from 2,000 on; those between are the program's.
        let h = Handover::pending(false, 1_000);
        h.set(false, 2_000, 1_000);
        assert!(h.workers_forward(Some(500)));
        assert!(!h.workers_forward(Some(1_500)));
        assert!(h.workers_forward(Some(2_500)));
    }
}
