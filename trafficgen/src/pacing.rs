//! The sender's absolute schedule: packet `n` is due at `start + n / pps`.
//!
//! The schedule is a pure function of elapsed time, so lateness never accumulates into drift:
//! a sender that fell behind (descheduled, slow syscall) catches up by sending everything that
//! is due in the next batch, up to the batch limit, and a sender that is ahead waits. It never
//! sends a packet before its due time, so it cannot burst ahead of the schedule; the largest
//! burst is one batch of packets that were all already due.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Waits longer than this are slept (the rest is spun); shorter ones are spun. Spinning keeps
/// the schedule exact but burns the core that, over a veth, also runs the receiver's network
/// stack, and it inflates the host CPU a benchmark run is charged with. Measured at 10k pps
/// (100 us apart), 150 us / 80 us against 60 us / 50 us: sender CPU fell from 52-54% to 28-32%
/// of a core, 90th percentile lateness rose from 0.1 to 0.2 us. At 20k pps (50 us apart),
/// 25 us / 15 us against 60 us / 50 us: sender CPU time fell to 0.59x (median of 5 paired runs);
/// what remains is mostly the cost of timer sleeps on a VM. The schedule is absolute, so a late
/// wake-up delays packets but never lowers the rate.
pub const SLEEP_THRESHOLD: Duration = Duration::from_micros(25);
/// How much earlier than the due time a sleep ends, leaving the rest to a spin; covers the usual
/// wake-up delay of a sleep with a 1 ns timer slack.
pub const SLEEP_MARGIN: Duration = Duration::from_micros(15);

/// The absolute schedule of one sender thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Packets per second; 0 means as fast as possible (everything is always due).
    pps: u64,
}

impl Schedule {
    pub fn new(pps: u64) -> Schedule {
        Schedule { pps }
    }

    pub fn pps(&self) -> u64 {
        self.pps
    }

    /// How many packets are due `elapsed_ns` after the start: those with `n / pps <= elapsed`,
    /// i.e. `floor(elapsed * pps / 1e9) + 1`. Saturates at `u64::MAX` (and is `u64::MAX` for an
    /// unpaced schedule).
    pub fn due_by(&self, elapsed_ns: u64) -> u64 {
        if self.pps == 0 {
            return u64::MAX;
        }
        let due = elapsed_ns as u128 * self.pps as u128 / NANOS_PER_SEC + 1;
        u64::try_from(due).unwrap_or(u64::MAX)
    }

    /// Nanoseconds after the start at which packet `n` (0-based) is due, rounded up so that
    /// `due_by(due_time_ns(n)) > n`. 0 for an unpaced schedule.
    pub fn due_time_ns(&self, n: u64) -> u64 {
        if self.pps == 0 {
            return 0;
        }
        let t = (n as u128 * NANOS_PER_SEC).div_ceil(self.pps as u128);
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Packets to send now: all that are due and not yet scheduled (sent or failed), at most
    /// `max_batch` and at most `remaining`.
    pub fn batch_now(
        &self,
        elapsed_ns: u64,
        scheduled: u64,
        remaining: u64,
        max_batch: u64,
    ) -> u64 {
        self.due_by(elapsed_ns)
            .saturating_sub(scheduled)
            .min(max_batch)
            .min(remaining)
    }

    /// Smallest batch worth a send call at this rate: the packets due within `coalesce`
    /// (at least 1). Waiting for them delays the first by at most `coalesce`, and saves the
    /// per-call cost that would otherwise cap the rate at high pps.
    pub fn min_batch(&self, coalesce: Duration) -> u64 {
        let n = coalesce.as_nanos() * self.pps as u128 / NANOS_PER_SEC;
        u64::try_from(n).unwrap_or(u64::MAX).max(1)
    }

    /// Packets a run of `duration` at this rate sends (rounded to nearest).
    pub fn count_for(&self, duration: Duration) -> u64 {
        let n = (duration.as_nanos() * self.pps as u128 + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// How to wait until `wait_ns` from now: sleep for the returned duration first (possibly zero),
/// then spin until due. Sleeping only when far ahead keeps the schedule while not burning a
/// core at low rates.
pub fn sleep_part(wait_ns: u64) -> Duration {
    let wait = Duration::from_nanos(wait_ns);
    if wait > SLEEP_THRESHOLD {
        wait - SLEEP_MARGIN
    } else {
        Duration::ZERO
    }
}

/// Splits `total` (a rate or a count) over `parts` threads as evenly as possible: the first
/// `total % parts` get one more.
pub fn split_even(total: u64, parts: u32, index: u32) -> u64 {
    let parts = u64::from(parts.max(1));
    let index = u64::from(index);
    total / parts + u64::from(index < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_is_due_at_start() {
        let s = Schedule::new(1000);
        assert_eq!(s.due_by(0), 1);
        assert_eq!(s.due_time_ns(0), 0);
    }

    #[test]
    fn due_count_follows_the_absolute_schedule() {
        let s = Schedule::new(1_000_000); // one packet per microsecond
        assert_eq!(s.due_by(999), 1);
        assert_eq!(s.due_by(1_000), 2);
        assert_eq!(s.due_by(1_000_000_000), 1_000_001);
        let s = Schedule::new(3); // due at 0, 333_333_334, 666_666_667 ns
        assert_eq!(s.due_time_ns(1), 333_333_334);
        assert_eq!(s.due_by(333_333_333), 1);
        assert_eq!(s.due_by(333_333_334), 2);
        assert_eq!(s.due_by(666_666_667), 3);
    }

    #[test]
    fn due_time_and_due_by_agree_for_awkward_rates() {
        for pps in [1, 7, 999, 10_000, 123_457, 1_000_000, 3_333_333] {
            let s = Schedule::new(pps);
            for n in [0u64, 1, 2, 17, 1000, 99_999, 1 << 30] {
                let t = s.due_time_ns(n);
                assert!(
                    s.due_by(t) > n,
                    "pps {pps} n {n}: packet not due at its due time"
                );
                if t > 0 {
                    assert!(
                        s.due_by(t - 1) <= n,
                        "pps {pps} n {n}: packet due before its time"
                    );
                }
            }
        }
    }

    #[test]
    fn lateness_is_caught_up_in_bounded_batches_without_drift() {
        let s = Schedule::new(1_000_000);
        // 100 us late with nothing sent: 101 packets are due, capped by the batch size.
        assert_eq!(s.batch_now(100_000, 0, u64::MAX, 64), 64);
        assert_eq!(s.batch_now(100_000, 64, u64::MAX, 64), 37);
        assert_eq!(s.batch_now(100_000, 101, u64::MAX, 64), 0);
        // The count limit wins over what is due.
        assert_eq!(s.batch_now(100_000, 0, 10, 64), 10);
    }

    #[test]
    fn never_sends_ahead_of_schedule() {
        let s = Schedule::new(10_000);
        // Simulate a sender polling every 7 us: at no time may it have sent more than due.
        let mut scheduled = 0;
        let mut t = 0;
        while t < 1_000_000_000 {
            scheduled += s.batch_now(t, scheduled, u64::MAX, 1024);
            assert!(scheduled <= s.due_by(t));
            t += 7_000;
        }
        assert_eq!(scheduled, 10_000);
    }

    #[test]
    fn unpaced_schedule_is_always_due() {
        let s = Schedule::new(0);
        assert_eq!(s.batch_now(0, 1 << 50, u64::MAX, 64), 64);
        assert_eq!(s.due_time_ns(12345), 0);
    }

    #[test]
    fn min_batch_scales_with_rate() {
        let window = Duration::from_micros(20);
        assert_eq!(Schedule::new(1_000_000).min_batch(window), 20);
        assert_eq!(Schedule::new(100_000).min_batch(window), 2);
        assert_eq!(Schedule::new(10_000).min_batch(window), 1);
        assert_eq!(Schedule::new(10_000).min_batch(Duration::ZERO), 1);
    }

    #[test]
    fn count_for_duration_rounds_to_nearest() {
        assert_eq!(
            Schedule::new(10_000).count_for(Duration::from_secs(3)),
            30_000
        );
        assert_eq!(Schedule::new(3).count_for(Duration::from_millis(500)), 2);
    }

    #[test]
    fn waits_sleep_only_when_far_ahead() {
        assert_eq!(sleep_part(10_000), Duration::ZERO);
        assert_eq!(
            sleep_part(1_000_000),
            Duration::from_nanos(1_000_000) - SLEEP_MARGIN
        );
    }

    #[test]
    fn split_even_distributes_the_remainder() {
        let parts: Vec<u64> = (0..3).map(|i| split_even(10, 3, i)).collect();
        assert_eq!(parts, vec![4, 3, 3]);
        assert_eq!(parts.iter().sum::<u64>(), 10);
    }
}
