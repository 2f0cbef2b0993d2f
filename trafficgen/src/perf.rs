//! Perf-event counters of the calling thread, for the send record's `perf` section.
//!
//! Each counter is opened on its own, never as a group: on VMs the hardware counters fail to
//! open (ENOENT), and a group would lose the software counters with them. A counter that did
//! not open, or whose read failed, is reported as unavailable, never as 0. Kernel time is
//! counted too (a sender spends most of its time in the kernel); if the kernel refuses that
//! (`perf_event_paranoid`), the counter is retried for user time only.

use relay::perf::ThreadCounters;

use crate::record::{PerfCounters, PerfValue};

/// Counters of one thread, opened by that thread: the relay's reader (`relay::perf`, one copy
/// for both tools), whose counters are the record's fields in order.
pub struct ThreadPerf {
    counters: ThreadCounters,
}

impl ThreadPerf {
    /// Opens and starts every counter for the calling thread (pid 0, any CPU: the kernel counts
    /// the task that opened it).
    pub fn start() -> ThreadPerf {
        ThreadPerf {
            counters: ThreadCounters::open_for_current_thread(),
        }
    }

    /// Current values.
    pub fn read(&mut self) -> PerfCounters {
        let [task_clock_ns, context_switches, cpu_migrations, page_faults, cycles, instructions, cache_misses, branch_misses] =
            self.counters.read().map(PerfValue::from_option);
        PerfCounters {
            task_clock_ns,
            context_switches,
            cpu_migrations,
            page_faults,
            cycles,
            instructions,
            cache_misses,
            branch_misses,
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
