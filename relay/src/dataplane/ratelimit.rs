//! At most one log line per interval for an error that can repeat on the packet path, with the
//! number of repeats it stands for.
//!
//! An error the kernel returns on every pass (a failing `io_uring_enter`, a socket stuck in an
//! error state) would otherwise log tens of thousands of lines a second and cost the very CPU
//! the data plane needs.

use std::time::{Duration, Instant};

/// The interval packet-path errors are logged at.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// One kind of repeating error.
#[derive(Debug, Default)]
pub struct LogLimiter {
    last: Option<Instant>,
    /// Occurrences since the last line that was let through.
    suppressed: u64,
}

impl LogLimiter {
    /// Records one occurrence at `now`. Returns `Some(n)` when a line is due, `n` being the
    /// occurrences it stands for (this one included); `None` when it is to be counted only.
    pub fn occurred(&mut self, now: Instant) -> Option<u64> {
        self.suppressed += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < LOG_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_it_stands_for() {
        let mut l = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(l.occurred(t0), Some(1));
        for i in 1..100 {
            assert_eq!(l.occurred(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(
            l.occurred(t0 + LOG_INTERVAL),
            Some(100),
            "99 suppressed and this one"
        );
        assert_eq!(l.occurred(t0 + LOG_INTERVAL), None);
    }
}
