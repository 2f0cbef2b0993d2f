//! One worker's own counters, and the sequence lock that lets a reader see them at one instant.

use std::sync::atomic::{
    fence, AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
    Ordering::SeqCst,
};
use std::time::{Duration, Instant};

use super::cell::Counter;
use super::names::{PERF_COUNT, TX_ERRNOS};
use crate::wire::{Filtered, Malformed};

/// One worker's counters. Field meanings are those of [`crate::stats::report::WorkerCounters`].
#[derive(Debug, Default)]
pub struct WorkerCells {
    pub rx_frames: Counter,
    pub rx: Counter,
    pub rx_bytes: Counter,
    pub kernel_drops: Counter,
    pub kernel_drop_frames: Counter,
    /// A gauge, set by the worker at each tick.
    pub kernel_drops_unsettled_frames: Counter,
    pub rx_overflow: Counter,
    pub rx_overflow_frames: Counter,
    pub handed_over: Counter,
    pub filtered: [Counter; Filtered::ALL.len()],
    pub malformed: [Counter; Malformed::COUNT],
    pub no_match: Counter,
    pub matched: Counter,
    pub matched_bytes: Counter,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consistent_read_never_sees_a_pass_half_done() {
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
