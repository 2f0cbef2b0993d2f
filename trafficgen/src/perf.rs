//! Perf-event counters of the calling thread, for the send record's `perf` section.
//!
//! Each counter is opened on its own, never as a group: on VMs the hardware counters fail to
//! open (ENOENT), and a group would lose the software counters with them. A counter that did
//! not open, or whose read failed, is reported as unavailable, never as 0. Kernel time is
//! counted too (a sender spends most of its time in the kernel); if the kernel refuses that
//! (`perf_event_paranoid`), the counter is retried for user time only.

use perf_event::events::{Event, Hardware, Software};
use perf_event::{Builder, Counter};

use crate::record::{PerfCounters, PerfValue};

/// Counters of one thread, opened by that thread.
pub struct ThreadPerf {
    task_clock: Option<Counter>,
    context_switches: Option<Counter>,
    cpu_migrations: Option<Counter>,
    page_faults: Option<Counter>,
    cycles: Option<Counter>,
    instructions: Option<Counter>,
    cache_misses: Option<Counter>,
    branch_misses: Option<Counter>,
}

fn open<E: Event + Copy>(event: E) -> Option<Counter> {
    let build = |exclude_kernel: bool| {
        Builder::new(event)
            .observe_self()
            .any_cpu()
            .exclude_kernel(exclude_kernel)
            .build()
    };
    let mut counter = build(false).or_else(|_| build(true)).ok()?;
    counter.enable().ok()?;
    Some(counter)
}

fn read(counter: &mut Option<Counter>) -> PerfValue {
    match counter.as_mut().map(Counter::read) {
        Some(Ok(v)) => PerfValue::Count(v),
        _ => PerfValue::Unavailable,
    }
}

impl ThreadPerf {
    /// Opens and starts every counter for the calling thread (pid 0, any CPU: the kernel counts
    /// the task that opened it).
    pub fn start() -> ThreadPerf {
        ThreadPerf {
            task_clock: open(Software::TASK_CLOCK),
            context_switches: open(Software::CONTEXT_SWITCHES),
            cpu_migrations: open(Software::CPU_MIGRATIONS),
            page_faults: open(Software::PAGE_FAULTS),
            cycles: open(Hardware::CPU_CYCLES),
            instructions: open(Hardware::INSTRUCTIONS),
            cache_misses: open(Hardware::CACHE_MISSES),
            branch_misses: open(Hardware::BRANCH_MISSES),
        }
    }

    /// Current values.
    pub fn read(&mut self) -> PerfCounters {
        PerfCounters {
            task_clock_ns: read(&mut self.task_clock),
            context_switches: read(&mut self.context_switches),
            cpu_migrations: read(&mut self.cpu_migrations),
            page_faults: read(&mut self.page_faults),
            cycles: read(&mut self.cycles),
            instructions: read(&mut self.instructions),
            cache_misses: read(&mut self.cache_misses),
            branch_misses: read(&mut self.branch_misses),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_clock_counts_this_threads_work() {
        let mut perf = ThreadPerf::start();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let counters = perf.read();
        match counters.task_clock_ns {
            // Software counters exist on every Linux we run on, unless perf is disabled
            // outright (perf_event_paranoid = 3 without CAP_PERFMON); then all are unavailable.
            PerfValue::Count(ns) => assert!(ns > 0, "task clock did not advance"),
            PerfValue::Unavailable => {
                eprintln!("perf events unavailable here; checking they are all unavailable");
                assert_eq!(counters.context_switches, PerfValue::Unavailable);
            }
        }
    }
}
