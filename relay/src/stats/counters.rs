//! Live counters of the data plane.
//!
//! Every cell has exactly one writer: the worker thread that owns it. The writer updates it
//! with a relaxed load and store (no locked instruction, no contention); readers (the stats
//! collector) load it relaxed at any time. Cells of different workers sit on different cache
//! lines so workers never write to a line another worker writes.
//!
//! One datagram moves several counters (`rx`, then `matched`, then an output's `in_flight`,
//! later `tx_sent`), so a reader that loads them one by one while the worker runs can see a
//! datagram counted at one stage and not yet at the next, and the conservation laws fail by
//! a few. Readers that need them to hold use [`WorkerCells::read_consistent`]: a sequence
//! lock that the worker closes around each pass of its loop (two stores per pass, not per
//! datagram) and that a waiting reader may ask the worker to hold open for a moment.

use std::sync::atomic::{
    fence, AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
    Ordering::SeqCst,
};
use std::time::{Duration, Instant};

use crate::wire::{Filtered, Malformed};

/// A count written by one thread and read by any.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread may call this (see the module docs).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Subtracts `n`. Only the owning thread may call this.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    /// Sets the value. Only the owning thread may call this.
    #[inline]
    pub fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Aligns its content to a cache line so two workers' cells never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct CacheLine<T>(pub T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Send errors we name in the stats; anything else is counted as `other`.
pub const TX_ERRNOS: [(i32, &str); 12] = [
    (libc::ENOBUFS, "ENOBUFS"),
    (libc::EAGAIN, "EAGAIN"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
    (libc::ENETDOWN, "ENETDOWN"),
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::EPERM, "EPERM"),
    (libc::EACCES, "EACCES"),
    (libc::EMSGSIZE, "EMSGSIZE"),
    (libc::EINVAL, "EINVAL"),
    (libc::EIO, "EIO"),
    (libc::ENODEV, "ENODEV"),
];
/// Slot of errors not in [`TX_ERRNOS`].
pub const TX_ERRNO_OTHER: usize = TX_ERRNOS.len();

/// Index of `errno` in the per-errno counters.
#[inline]
pub fn errno_slot(errno: i32) -> usize {
    TX_ERRNOS
        .iter()
        .position(|(e, _)| *e == errno)
        .unwrap_or(TX_ERRNO_OTHER)
}

/// perf-event counters of a worker thread, in [`PERF_NAMES`] order.
pub const PERF_COUNT: usize = 8;
pub const PERF_NAMES: [&str; PERF_COUNT] = [
    "task_clock_ns",
    "context_switches",
    "cpu_migrations",
    "page_faults",
    "cycles",
    "instructions",
    "cache_misses",
    "branch_misses",
];

/// One worker's counters. Field meanings are those of [`crate::stats::report::WorkerCounters`].
#[derive(Debug, Default)]
pub struct WorkerCells {
    pub rx_frames: Counter,
    pub rx: Counter,
    pub rx_bytes: Counter,
    pub kernel_drops: Counter,
    pub filtered: [Counter; Filtered::ALL.len()],
    pub malformed: [Counter; Malformed::COUNT],
    pub no_match: Counter,
    pub matched: Counter,
    pub buf_exhaust: Counter,
    pub tx_sent: Counter,
    pub tx_bytes: Counter,
    pub tx_errors: [Counter; TX_ERRNOS.len() + 1],
    pub tx_syscalls: Counter,
    pub in_flight: Counter,
    /// Published about once a second by the worker; meaningful where `perf_open` has the bit.
    pub perf: [Counter; PERF_COUNT],
    /// Bit `i` set: perf counter `i` opened on this machine.
    pub perf_open: Counter,
    /// Odd while the worker is in a pass that updates its counters (its own and its cells in
    /// every flow); written only by the worker.
    update_seq: AtomicU64,
    /// A reader wants a consistent read: the worker holds still at the end of a pass.
    reader_waiting: AtomicBool,
}

/// The longest a worker holds still for a waiting reader, so a reader that stalls cannot
/// stall the data plane for longer (the packet rings absorb the pause).
const HOLD_FOR_READER: Duration = Duration::from_millis(1);
/// The longest a reader tries for a consistent read before taking the counters as they are.
/// A worker ends a pass at least every housekeeping tick (100 ms) and sleeps outside passes.
const CONSISTENT_READ_TIMEOUT: Duration = Duration::from_millis(250);

impl WorkerCells {
    /// The worker starts a pass that may update its counters.
    #[inline]
    pub fn begin_update(&self) {
        let seq = self.update_seq.load(Relaxed);
        self.update_seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
    }

    /// The worker ends the pass; if a reader is waiting, it holds still (bounded) until the
    /// reader is done.
    #[inline]
    pub fn end_update(&self) {
        let seq = self.update_seq.load(Relaxed);
        self.update_seq.store(seq.wrapping_add(1), Release);
        if self.reader_waiting.load(Relaxed) {
            self.hold_for_reader();
        }
    }

    #[cold]
    fn hold_for_reader(&self) {
        let since = Instant::now();
        while self.reader_waiting.load(Acquire) && since.elapsed() < HOLD_FOR_READER {
            std::hint::spin_loop();
        }
    }

    /// Runs `read` (which loads this worker's cells) until it ran while no pass was updating
    /// them, so the counters it saw are those of one instant. Gives up after
    /// [`CONSISTENT_READ_TIMEOUT`] and returns a read as it is.
    pub fn read_consistent<T>(&self, mut read: impl FnMut() -> T) -> T {
        self.reader_waiting.store(true, SeqCst);
        let deadline = Instant::now() + CONSISTENT_READ_TIMEOUT;
        let value = loop {
            let before = self.update_seq.load(Acquire);
            if before.is_multiple_of(2) {
                let value = read();
                fence(Acquire);
                if self.update_seq.load(Relaxed) == before {
                    break value;
                }
            }
            if Instant::now() >= deadline {
                break read();
            }
            std::thread::yield_now();
        };
        self.reader_waiting.store(false, Release);
        value
    }
}

/// Per-output cells of one worker. `matched = tx_sent + tx_errors + buf_exhaust + in_flight`.
#[derive(Debug, Default)]
pub struct OutputCells {
    pub matched: Counter,
    pub tx_sent: Counter,
    pub tx_bytes: Counter,
    pub tx_errors: Counter,
    pub buf_exhaust: Counter,
    pub in_flight: Counter,
}

/// One worker's cells for one flow (rule).
#[derive(Debug)]
pub struct FlowWorkerCells {
    pub packets: Counter,
    pub bytes: Counter,
    pub outputs: Box<[OutputCells]>,
}

/// A flow's counters: one cache-aligned block per worker. Shared by every rule-table version
/// in which the rule is unchanged, so a flow's counts survive changes to other rules.
#[derive(Debug)]
pub struct FlowCells {
    pub per_worker: Box<[CacheLine<FlowWorkerCells>]>,
}

impl FlowCells {
    pub fn new(workers: usize, outputs: usize) -> Self {
        let per_worker = (0..workers)
            .map(|_| {
                CacheLine(FlowWorkerCells {
                    packets: Counter::default(),
                    bytes: Counter::default(),
                    outputs: (0..outputs).map(|_| OutputCells::default()).collect(),
                })
            })
            .collect();
        Self { per_worker }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_adds_and_subtracts() {
        let c = Counter::default();
        c.add(5);
        c.sub(2);
        assert_eq!(c.get(), 3);
        c.set(9);
        assert_eq!(c.get(), 9);
    }

    #[test]
    fn errno_slots_are_stable_and_other_catches_the_rest() {
        assert_eq!(TX_ERRNOS[errno_slot(libc::ENOBUFS)].1, "ENOBUFS");
        assert_eq!(errno_slot(libc::ENOTSOCK), TX_ERRNO_OTHER);
    }

    #[test]
    fn worker_cells_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<CacheLine<FlowWorkerCells>>(), 64);
    }

    #[test]
    fn a_consistent_read_never_sees_a_pass_half_done() {
        use std::sync::atomic::AtomicBool;
        let cells = WorkerCells::default();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                // A worker whose every pass moves one datagram from `rx` to `matched`.
                while !stop.load(Relaxed) {
                    cells.begin_update();
                    cells.rx.add(1);
                    for _ in 0..50 {
                        std::hint::spin_loop();
                    }
                    cells.matched.add(1);
                    cells.end_update();
                }
            });
            let (mut reads, mut torn) = (0, 0);
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                let (rx, matched) = cells.read_consistent(|| (cells.rx.get(), cells.matched.get()));
                torn += usize::from(rx != matched);
                reads += 1;
            }
            // Stop the worker before asserting, so a failure cannot leave the scope waiting.
            stop.store(true, Relaxed);
            assert_eq!(torn, 0, "{torn} of {reads} reads saw a pass half done");
            assert!(reads > 0);
        });
        assert!(cells.rx.get() > 0, "the worker ran");
    }
}
