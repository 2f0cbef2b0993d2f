//! One sender thread: its pacing loop, batch building and error accounting.
//!
//! Per batch the loop reads the clock three times (monotonic for the schedule and for the
//! elapsed time after the send, realtime for the probe timestamps), rewrites each datagram's
//! header in place and makes one `sendmmsg`. Nothing on this path allocates, formats or locks;
//! progress is published with one relaxed store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::Batching;
use crate::histogram::{new_histogram, record};
use crate::pacing::{sleep_part, Schedule};
use crate::perf::ThreadPerf;
use crate::probe::{Probe, HEADER_LEN};
use crate::record::PerfCounters;
use crate::sys::{self, SendBatch};

/// Errno values are counted in a fixed array (Linux errnos are below 134), so a burst of
/// errors costs no allocation; larger values share the last slot.
pub const ERRNO_SLOTS: usize = 160;

/// Byte the payload after the header is filled with (easy to spot in a capture).
const FILLER: u8 = 0xA5;

/// Pause between repeats of the end markers, so a receiver draining a full queue has time to
/// catch up before the next copy arrives.
pub const END_MARKER_INTERVAL: Duration = Duration::from_millis(5);

/// What one thread is asked to do.
pub struct ThreadPlan {
    pub index: u32,
    pub streams: Vec<u32>,
    pub pps: u64,
    /// Packets to send; `None` for an unpaced run bounded by `deadline` only.
    pub count: Option<u64>,
    /// Time after start at which an unpaced duration-bounded run stops.
    pub deadline: Option<Duration>,
    pub size: usize,
    pub batching: Batching,
    pub end_marker_repeats: u32,
    /// Longest a due packet may wait for others to share its send call.
    pub coalesce: Duration,
}

/// What one thread did.
pub struct ThreadOutcome {
    pub packets_sent: u64,
    pub send_errors: u64,
    pub errors_by_errno: Box<[u64; ERRNO_SLOTS]>,
    pub send_calls: u64,
    pub elapsed_ns: u64,
    pub end_markers_sent: u64,
    pub batch_gap_ns: Histogram<u64>,
    pub batch_packets: Histogram<u64>,
    pub schedule_lag_ns: Histogram<u64>,
    pub perf: PerfCounters,
    /// Set when GSO was switched off because the kernel refused it.
    pub gso_fallback_reason: Option<String>,
}

/// Round-robin assignment of packets to this thread's streams, with per-stream sequence
/// numbers that can be handed back when a send fails (a failed packet uses no sequence number).
struct StreamCursor {
    streams: Vec<u32>,
    next_sequence: Vec<u64>,
    position: usize,
}

impl StreamCursor {
    fn new(streams: Vec<u32>) -> StreamCursor {
        let next_sequence = vec![0; streams.len()];
        StreamCursor {
            streams,
            next_sequence,
            position: 0,
        }
    }

    /// The next packet's (stream id, sequence).
    #[inline]
    fn take(&mut self) -> (u32, u64) {
        let p = self.position;
        let sequence = self.next_sequence[p];
        self.next_sequence[p] += 1;
        self.position = if p + 1 == self.streams.len() {
            0
        } else {
            p + 1
        };
        (self.streams[p], sequence)
    }

    /// Hands back the last `count` packets taken.
    fn give_back(&mut self, count: u64) {
        for _ in 0..count {
            self.position = if self.position == 0 {
                self.streams.len() - 1
            } else {
                self.position - 1
            };
            self.next_sequence[self.position] -= 1;
        }
    }
}

/// Whether an error from a GSO send means the kernel or device does not support it (quinn-udp
/// treats EIO and EINVAL the same way), rather than a transient send failure.
fn is_gso_refusal(errno: i32) -> bool {
    matches!(
        errno,
        libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT
    )
}

/// Runs one thread's plan on `socket`. Everything slow (buffers, perf counters) is set up first;
/// then `wait_for_start` blocks until all threads are ready and returns the common start
/// instant, which the schedule counts from. `progress` receives the packets sent so far after
/// every batch.
pub fn run(
    plan: ThreadPlan,
    socket: &socket2::Socket,
    wait_for_start: impl FnOnce() -> Instant,
    progress: &AtomicU64,
) -> ThreadOutcome {
    sys::set_min_timer_slack();
    let mut perf = ThreadPerf::start();
    let schedule = Schedule::new(plan.pps);
    let mut batch = SendBatch::new(
        plan.size,
        plan.batching.messages_per_call,
        plan.batching.segments_per_message,
    );
    batch.all_buffers_mut().fill(FILLER);
    let mut cursor = StreamCursor::new(plan.streams.clone());

    let mut outcome = ThreadOutcome {
        packets_sent: 0,
        send_errors: 0,
        errors_by_errno: Box::new([0; ERRNO_SLOTS]),
        send_calls: 0,
        elapsed_ns: 0,
        end_markers_sent: 0,
        batch_gap_ns: new_histogram(),
        batch_packets: new_histogram(),
        schedule_lag_ns: new_histogram(),
        perf: PerfCounters::default(),
        gso_fallback_reason: None,
    };
    let total = plan.count.unwrap_or(u64::MAX);
    let mut scheduled: u64 = 0;
    let mut gso_confirmed = false;
    let mut last_batch_ns: Option<u64> = None;
    let length = plan.size as u32;
    let min_batch = schedule.min_batch(plan.coalesce);

    // The common start lies a little in the future, so that no thread begins late.
    let start = wait_for_start();
    let ahead = start.saturating_duration_since(Instant::now());
    wait_until(Instant::now(), ahead.as_nanos() as u64, 0);

    while scheduled < total && !sys::stop_requested() {
        let elapsed_ns = start.elapsed().as_nanos() as u64;
        if let Some(deadline) = plan.deadline {
            if elapsed_ns >= deadline.as_nanos() as u64 {
                break;
            }
        }
        let max_batch = (batch.max_messages() * batch.max_segments()) as u64;
        let count = schedule.batch_now(elapsed_ns, scheduled, total - scheduled, max_batch);
        let wanted = min_batch.min(max_batch).min(total - scheduled);
        if count < wanted {
            wait_until(
                start,
                schedule.due_time_ns(scheduled + wanted - 1),
                elapsed_ns,
            );
            continue;
        }

        let tx_timestamp_ns = sys::realtime_ns();
        let segments = batch.max_segments();
        let messages = (count as usize).div_ceil(segments);
        for p in 0..count as usize {
            let (stream_id, sequence) = cursor.take();
            Probe {
                stream_id,
                sequence,
                tx_timestamp_ns,
                length,
                end_marker: false,
            }
            .write(batch.datagram_mut(p / segments, p % segments));
        }
        for m in 0..messages {
            batch.set_segments(m, (count as usize - m * segments).min(segments));
        }

        if let Some(last) = last_batch_ns {
            record(&mut outcome.batch_gap_ns, elapsed_ns - last);
        }
        last_batch_ns = Some(elapsed_ns);
        record(
            &mut outcome.schedule_lag_ns,
            elapsed_ns.saturating_sub(schedule.due_time_ns(scheduled)),
        );
        outcome.send_calls += 1;

        let (sent, failed) = match batch.send(socket, 0, messages) {
            Ok(accepted) => {
                let sent: usize = (0..accepted).map(|m| batch.segments(m)).sum();
                if segments > 1 && !gso_confirmed && (0..accepted).any(|m| batch.segments(m) > 1) {
                    gso_confirmed = true;
                }
                (sent as u64, 0)
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(0);
                if segments > 1 && !gso_confirmed && is_gso_refusal(errno) {
                    // The kernel refuses UDP_SEGMENT: degrade to one datagram per message and
                    // resend these packets, instead of failing the run.
                    outcome.gso_fallback_reason = Some(format!("UDP_SEGMENT send failed: {e}"));
                    batch.set_max_segments(1);
                    cursor.give_back(count);
                    continue;
                }
                if errno == libc::EINTR {
                    cursor.give_back(count);
                    continue;
                }
                let failed = batch.segments(0) as u64;
                outcome.errors_by_errno[(errno.max(0) as usize).min(ERRNO_SLOTS - 1)] += failed;
                (0, failed)
            }
        };
        // Unsent packets (after the first refused message) and failed ones hand back their
        // sequence numbers; failed ones still use up their slot in the schedule.
        cursor.give_back(count - sent);
        scheduled += sent + failed;
        outcome.packets_sent += sent;
        outcome.send_errors += failed;
        record(&mut outcome.batch_packets, sent + failed);
        outcome.elapsed_ns = start.elapsed().as_nanos() as u64;
        progress.store(outcome.packets_sent, Ordering::Relaxed);
    }
    outcome.perf = perf.read();
    outcome.end_markers_sent = send_end_markers(&plan, socket, &cursor);
    outcome
}

/// Longest a sleep runs before the stop flag is looked at again: a signal is honoured this
/// soon in every phase of a send (a slow rate's wait, the end markers).
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Waits until `due_ns` after `start`: sleeps while far ahead, then spins. Returns early once
/// a stop was requested (SIGINT/SIGTERM).
fn wait_until(start: Instant, due_ns: u64, elapsed_ns: u64) {
    sleep_unless_stopped(sleep_part(due_ns.saturating_sub(elapsed_ns)));
    while (start.elapsed().as_nanos() as u64) < due_ns && !sys::stop_requested() {
        std::hint::spin_loop();
    }
}

/// Sleeps for `wait`, in slices of at most [`STOP_CHECK`]; returns early once a stop was
/// requested.
fn sleep_unless_stopped(wait: Duration) {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || sys::stop_requested() {
            return;
        }
        std::thread::sleep(left.min(STOP_CHECK));
    }
}

/// Sends each stream's end marker `end_marker_repeats` times; returns how many the kernel took.
/// The first round is sent even after a stop was requested (so that a receiver waiting for
/// the end learns of it); the repeats stop at a stop request.
fn send_end_markers(plan: &ThreadPlan, socket: &socket2::Socket, cursor: &StreamCursor) -> u64 {
    let mut buf = vec![FILLER; plan.size.max(HEADER_LEN)];
    let mut sent = 0;
    for repeat in 0..plan.end_marker_repeats {
        if repeat > 0 {
            if sys::stop_requested() {
                break;
            }
            std::thread::sleep(END_MARKER_INTERVAL);
        }
        for (i, &stream_id) in cursor.streams.iter().enumerate() {
            Probe {
                stream_id,
                sequence: cursor.next_sequence[i],
                tx_timestamp_ns: sys::realtime_ns(),
                length: buf.len() as u32,
                end_marker: true,
            }
            .write(&mut buf);
            if socket.send(&buf).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_robins_and_gives_back_exactly() {
        let mut c = StreamCursor::new(vec![10, 11, 12]);
        let taken: Vec<_> = (0..5).map(|_| c.take()).collect();
        assert_eq!(taken, vec![(10, 0), (11, 0), (12, 0), (10, 1), (11, 1)]);
        c.give_back(2);
        assert_eq!(c.take(), (10, 1));
        assert_eq!(c.take(), (11, 1));
        assert_eq!(c.take(), (12, 1));
        assert_eq!(c.next_sequence, vec![2, 2, 2]);
    }
}
