//! perf-event counters of the calling thread (a worker), opened one by one so that a counter
//! the machine lacks (cycles on most VMs) is reported as unavailable while the rest still work.
//! Shared with trafficgen (feature `sys`), whose send record reports the same counters.

use perf_event::events::{Event, Hardware, Software};
use perf_event::{Builder, Counter};

use crate::stats::report::PERF_COUNT;

/// The counters of one thread, in [`crate::stats::report::PERF_NAMES`] order.
pub struct ThreadCounters {
    counters: [Option<Counter>; PERF_COUNT],
}

fn open<E: Event + Clone>(event: E) -> Option<Counter> {
    // Count kernel time too: most of a relay's cost is in the kernel's network stack. Where
    // perf_event_paranoid forbids that, fall back to user-space counting.
    let attempt = |include_kernel: bool| {
        let mut b = Builder::new(event.clone());
        b.observe_self().any_cpu().inherit(false);
        if include_kernel {
            b.include_kernel();
        }
        let mut c = b.build().ok()?;
        c.enable().ok()?;
        Some(c)
    };
    attempt(true).or_else(|| attempt(false))
}

impl ThreadCounters {
    /// Opens every counter for the calling thread; failures leave that counter unavailable.
    pub fn open_for_current_thread() -> Self {
        Self {
            counters: [
                open(Software::TASK_CLOCK),
                open(Software::CONTEXT_SWITCHES),
                open(Software::CPU_MIGRATIONS),
                open(Software::PAGE_FAULTS),
                open(Hardware::CPU_CYCLES),
                open(Hardware::INSTRUCTIONS),
                open(Hardware::CACHE_MISSES),
                open(Hardware::BRANCH_MISSES),
            ],
        }
    }

    /// Bit `i` set when counter `i` is open.
    pub fn open_mask(&self) -> u64 {
        self.counters
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// Current values; `None` for counters that are not open or failed to read.
    pub fn read(&mut self) -> [Option<u64>; PERF_COUNT] {
        let mut out = [None; PERF_COUNT];
        for (slot, c) in out.iter_mut().zip(self.counters.iter_mut()) {
            *slot = c.as_mut().and_then(|c| c.read().ok());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_task_clock_counts_this_threads_work() {
        let mut c = ThreadCounters::open_for_current_thread();
        if c.open_mask() & 1 == 0 {
            eprintln!("SKIP: perf events are not permitted here (perf_event_paranoid)");
            return;
        }
        let before = c.read()[0].unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = c.read()[0].unwrap();
        assert!(
            after > before,
            "task clock did not advance: {before} -> {after}"
        );
    }

    #[test]
    fn unavailable_counters_read_as_none_not_zero() {
        let mut c = ThreadCounters::open_for_current_thread();
        let mask = c.open_mask();
        for (i, v) in c.read().iter().enumerate() {
            assert_eq!(v.is_some(), mask & (1 << i) != 0, "counter {i}");
        }
    }
}
