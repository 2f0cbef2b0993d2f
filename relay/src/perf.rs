//! perf-event counters of the calling thread (a worker), opened one by one so that a counter
//! the machine lacks (cycles on most VMs) is reported as unavailable while the rest still work.
//! Shared with trafficgen (feature `sys`), whose send record reports the same counters.
//! Where perf events are denied altogether, the task clock (the thread's CPU time, what the
//! worker CPU panels show) comes from `CLOCK_THREAD_CPUTIME_ID` instead; the rest are then
//! unavailable.

use perf_event::events::{Event, Hardware, Software};
use perf_event::{Builder, Counter};

use crate::stats::report::PERF_COUNT;

/// The counters of one thread, in [`crate::stats::report::PERF_NAMES`] order.
pub struct ThreadCounters {
    counters: [Option<Counter>; PERF_COUNT],
    /// When the task-clock event could not be opened: the thread's CPU time at open, so that
    /// the task clock still reads as the time used since then, as the event would.
    thread_clock_at_open: Option<u64>,
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
        let mut c = Self::open_events(open(Software::TASK_CLOCK));
        if c.counters[0].is_none() {
            c.thread_clock_at_open = crate::sys::thread_cpu_time_ns().ok();
        }
        c
    }

    /// The task clock from the thread's CPU clock, not perf (what a denied perf event gets).
    #[cfg(test)]
    fn open_with_thread_clock() -> Self {
        let mut c = Self::open_events(None);
        c.thread_clock_at_open = crate::sys::thread_cpu_time_ns().ok();
        c
    }

    fn open_events(task_clock: Option<Counter>) -> Self {
        Self {
            thread_clock_at_open: None,
            counters: [
                task_clock,
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
            | u64::from(self.thread_clock_at_open.is_some())
    }

    /// Current values; `None` for counters that are not open or failed to read.
    pub fn read(&mut self) -> [Option<u64>; PERF_COUNT] {
        let mut out = [None; PERF_COUNT];
        for (slot, c) in out.iter_mut().zip(self.counters.iter_mut()) {
            *slot = c.as_mut().and_then(|c| c.read().ok());
        }
        if let Some(at_open) = self.thread_clock_at_open {
            out[0] = crate::sys::thread_cpu_time_ns()
                .ok()
                .map(|now| now.saturating_sub(at_open));
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

    /// Issue 23: under the packaged unit perf events may be denied; the task clock must still
    /// count the thread's work (from its CPU clock), not read as unavailable or zero.
    #[test]
    fn the_task_clock_without_perf_counts_this_threads_work() {
        let mut c = ThreadCounters::open_with_thread_clock();
        assert_eq!(c.open_mask() & 1, 1, "the task clock is available");
        let before = c.read()[0].unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = c.read()[0].unwrap();
        assert!(
            after > before,
            "thread clock did not advance: {before} -> {after}"
        );
        // Other threads' work does not count.
        let spin = std::thread::spawn(|| {
            let start = std::time::Instant::now();
            let mut y = 0u64;
            while start.elapsed() < std::time::Duration::from_millis(200) {
                y = std::hint::black_box(y.wrapping_add(1));
            }
        });
        let mid = c.read()[0].unwrap();
        spin.join().unwrap();
        let end = c.read()[0].unwrap();
        assert!(
            end - mid < 150_000_000,
            "200 ms of another thread's spinning counted as this thread's: {} ns",
            end - mid
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
