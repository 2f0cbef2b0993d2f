//! One data-plane worker: a run-to-completion loop over its own io_uring.
//!
//! Each pass: take completions, read up to `batch_size` datagrams from the packet rings (no
//! system call), match each against the rule table, copy its payload once into a pooled
//! buffer, queue it per output, then flush the queues as `sendmsg` operations (coalescing
//! same-size runs with `UDP_SEGMENT`) and submit them all with one `io_uring_enter`. When the
//! rings stay empty for `busy_poll_us`, the worker arms a poll on each packet socket and
//! sleeps in the kernel until a frame arrives, a send completes or housekeeping is due.
//!
//! Nothing on this path allocates, formats, locks or logs: errors are counted, and
//! housekeeping logs them at most once a second with their count.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

use super::forward::Forwarder;
use super::ingress::{IngressParams, IngressSocket};
use super::limits::{MAX_SUPER_FRAME, VNET_HDR_LEN};
use super::ring::TP_STATUS_COPY;
use super::uring::{
    build_ring, needs_enter, push, submit, KIND_CANCEL, KIND_MASK, KIND_POLL, KIND_SEND, KIND_TIMER,
};
use super::Shared;
use crate::config::DataplaneConfig;
use crate::counters::TX_ERRNOS;
use crate::perf::ThreadCounters;
use crate::wire::{ChecksumHint, Malformed};

/// How often kernel drop counters are read and the rule-table generation is checked when idle.
const TICK: Duration = Duration::from_millis(100);
/// How often perf counters are published and packet-path errors are logged.
const SLOW_TICK: Duration = Duration::from_secs(1);
/// How long shutdown waits for sends in flight to complete.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a worker could not start. The cause is each variant's `source()`, printed by the
/// caller's chain (`{:#}`), so it is not repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker {worker}: creating io_uring with {entries} entries")]
    Uring {
        worker: usize,
        entries: u32,
        #[source]
        source: io::Error,
    },
    #[error("worker {worker}: pinning to CPU {cpu}")]
    Pin {
        worker: usize,
        cpu: u32,
        #[source]
        source: io::Error,
    },
    #[error(
        "worker {worker}: real-time priority {priority} (SCHED_FIFO) (this needs \
         CAP_SYS_NICE or RLIMIT_RTPRIO >= {priority} (systemd: LimitRTPRIO=), or set \
         [dataplane] realtime_priority = 0)"
    )]
    Realtime {
        worker: usize,
        priority: u32,
        #[source]
        source: io::Error,
    },
    #[error("worker {worker}: starting its thread")]
    Spawn {
        worker: usize,
        #[source]
        source: io::Error,
    },
    #[error("worker {worker}")]
    Pool {
        worker: usize,
        #[source]
        source: super::pool::PoolError,
    },
    #[error("worker {worker}")]
    Ingress {
        worker: usize,
        #[source]
        source: super::ingress::IngressError,
    },
}

struct Ingress {
    sock: IngressSocket,
    /// Identifies this socket in poll completions (never reused within a worker).
    token: u32,
    poll_armed: bool,
}

pub struct Worker {
    ring: IoUring,
    ingress: Vec<Ingress>,
    /// Sockets being closed: kept until their armed poll has completed.
    closing: Vec<Ingress>,
    next_token: u32,
    fwd: Forwarder,
    /// Receives frames too large for a ring slot (the copy path).
    scratch: Vec<u8>,
    ingress_params: IngressParams,
    batch_size: usize,
    busy_poll: Duration,
    rx_coalesce: Duration,
    perf: ThreadCounters,
    /// A housekeeping timeout is in flight: sleeps wait on it instead of each arming a timer
    /// of their own (see `sleep_until`).
    timer_armed: bool,
    /// Its duration; read by the kernel when the timeout is submitted.
    timer_span: Box<types::Timespec>,
    last_logged: LoggedCounts,
    last_socket_error_log: Option<Instant>,
}

/// How much `now` grew since the last log line, if it did; remembers `now`.
fn increase(now: u64, last: &mut u64) -> Option<u64> {
    let grew = now.checked_sub(*last).filter(|n| *n > 0);
    *last = now;
    grew
}

/// Error counts at the last log line, to log only what changed.
#[derive(Default)]
struct LoggedCounts {
    tx_errors: u64,
    malformed: u64,
    buf_exhaust: u64,
    kernel_drops: u64,
}

impl Worker {
    /// Sets up a worker on the calling thread (its io_uring must be created by the thread
    /// that submits to it).
    pub fn new(
        id: usize,
        cpu: Option<u32>,
        dp: &DataplaneConfig,
        fanout_base: Option<u16>,
        gso_supported: bool,
        shared: Arc<Shared>,
    ) -> Result<Self, WorkerError> {
        if let Some(cpu) = cpu {
            super::sys::pin_current_thread(cpu).map_err(|source| WorkerError::Pin {
                worker: id,
                cpu,
                source,
            })?;
        }
        if dp.realtime_priority > 0 {
            super::sys::set_realtime_priority(dp.realtime_priority).map_err(|source| {
                WorkerError::Realtime {
                    worker: id,
                    priority: dp.realtime_priority,
                    source,
                }
            })?;
        }
        let slots = dp.max_in_flight_sends as usize;
        let cq = (dp.uring_entries as usize * 2).max(slots + 256) as u32;
        let ring = build_ring(dp.uring_entries, cq).map_err(|source| WorkerError::Uring {
            worker: id,
            entries: dp.uring_entries,
            source,
        })?;
        let fwd = Forwarder::new(id, shared, dp, gso_supported)
            .map_err(|source| WorkerError::Pool { worker: id, source })?;
        let perf = ThreadCounters::open_for_current_thread();
        fwd.cells().perf_open.set(perf.open_mask());
        Ok(Self {
            ring,
            ingress: Vec::new(),
            closing: Vec::new(),
            next_token: 0,
            fwd,
            scratch: vec![0u8; MAX_SUPER_FRAME + VNET_HDR_LEN],
            ingress_params: IngressParams {
                ring_frames: dp.ring_frames as usize,
                frame_size: dp.ring_frame_size as usize,
                fanout_base,
                rcvbuf: super::ingress::PACKET_RCVBUF,
            },
            batch_size: dp.batch_size as usize,
            busy_poll: Duration::from_micros(u64::from(dp.busy_poll_us)),
            rx_coalesce: Duration::from_micros(u64::from(dp.rx_coalesce_us)),
            perf,
            timer_armed: false,
            timer_span: Box::new(types::Timespec::new()),
            last_logged: LoggedCounts::default(),
            last_socket_error_log: None,
        })
    }

    /// Adopts the currently published rule table: opens, re-filters and closes sockets.
    /// Ingress failures are returned (at start they are fatal; later they are logged).
    pub fn adopt_current_table(&mut self) -> Result<(), WorkerError> {
        let table = self.fwd.shared.table.load_full();
        let mut first_error = None;
        // Ingress: one socket per input interface.
        for input in &table.inputs {
            if let Some(i) = self
                .ingress
                .iter_mut()
                .find(|i| i.sock.ifindex == input.ifindex)
            {
                if let Err(e) = i.sock.update_filter(&input.groups) {
                    tracing::error!(worker = self.fwd.id, interface = %input.name, "updating packet filter: {e}");
                }
                continue;
            }
            match IngressSocket::open(
                input.ifindex,
                &input.name,
                &input.groups,
                self.ingress_params,
            ) {
                Ok(sock) => {
                    self.next_token += 1;
                    self.ingress.push(Ingress {
                        sock,
                        token: self.next_token,
                        poll_armed: false,
                    });
                }
                Err(source) => {
                    tracing::error!(worker = self.fwd.id, "{source}");
                    first_error.get_or_insert(WorkerError::Ingress {
                        worker: self.fwd.id,
                        source,
                    });
                }
            }
        }
        let mut i = 0;
        while i < self.ingress.len() {
            if table.input(self.ingress[i].sock.ifindex).is_some() {
                i += 1;
                continue;
            }
            let gone = self.ingress.swap_remove(i);
            self.fwd
                .cells()
                .kernel_drops
                .add(gone.sock.take_kernel_drops());
            if gone.poll_armed {
                let cancel = opcode::AsyncCancel::new(KIND_POLL | u64::from(gone.token))
                    .build()
                    .user_data(KIND_CANCEL);
                if push(&mut self.ring, &cancel) {
                    self.closing.push(gone);
                }
            }
        }
        self.fwd.adopt(table);
        first_error.map_or(Ok(()), Err)
    }

    /// Runs until the shared stop flag is set, then drains sends in flight.
    pub fn run(mut self) {
        let mut generation = self.fwd.table.generation;
        let mut last_busy = Instant::now();
        let mut next_tick = Instant::now() + TICK;
        let mut next_slow_tick = Instant::now() + SLOW_TICK;
        let mut coalescing = false;
        let shared = Arc::clone(&self.fwd.shared);
        shared.adopted[self.fwd.id].store(generation, Ordering::Release);
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            // Counters change only between these two marks (see `WorkerCells::read_consistent`).
            let cells = &shared.workers[self.fwd.id];
            cells.begin_update();
            let published = shared.generation.load(Ordering::Acquire);
            if published != generation {
                if let Err(e) = self.adopt_current_table() {
                    tracing::error!("{e}");
                }
                generation = self.fwd.table.generation;
                shared.adopted[self.fwd.id].store(generation, Ordering::Release);
            }
            self.reap_completions();
            let taken = self.take_ingress();
            if taken > 0 {
                self.fwd.flush(&mut self.ring);
                submit(&mut self.ring);
                coalescing = !self.rx_coalesce.is_zero();
            } else if needs_enter(&mut self.ring) {
                submit(&mut self.ring);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick();
                next_tick = now + TICK;
                if now >= next_slow_tick {
                    self.slow_tick();
                    next_slow_tick = now + SLOW_TICK;
                }
            }
            cells.end_update();
            if taken > 0 {
                last_busy = now;
            } else if now.duration_since(last_busy) < self.busy_poll {
                std::hint::spin_loop();
            } else if coalescing {
                // Frames came recently: let more gather for one window rather than being
                // woken by each. A window that brings nothing returns us to polls.
                coalescing = false;
                self.wait_for(self.rx_coalesce);
            } else {
                self.sleep_until(next_tick);
            }
        }
        self.drain();
    }

    /// Frames from every ring, up to `batch_size` datagrams. Returns datagrams taken.
    fn take_ingress(&mut self) -> usize {
        let mut taken = 0;
        for ing in &mut self.ingress {
            let ifindex = ing.sock.ifindex;
            while taken < self.batch_size {
                let Some(frame) = ing.sock.ring.peek() else {
                    break;
                };
                let cells = self.fwd.cells();
                cells.rx_frames.add(1);
                match frame {
                    Err(info) => {
                        cells.rx_bytes.add(u64::from(info.len));
                        taken += self.fwd.malformed(Malformed::Truncated);
                    }
                    Ok((info, bytes)) => {
                        cells.rx_bytes.add(u64::from(info.len));
                        if info.status & TP_STATUS_COPY != 0 {
                            // Too big for a slot: the kernel queued the whole frame on the socket.
                            taken += match super::sys::recv_nonblocking(
                                ing.sock.raw_fd(),
                                &mut self.scratch,
                            ) {
                                Ok(Some(n)) if n <= self.scratch.len() => {
                                    let whole = &self.scratch[..n];
                                    self.fwd.frame(
                                        ifindex,
                                        whole,
                                        info.vlan_tci,
                                        ChecksumHint::Unverified,
                                    )
                                }
                                _ => self.fwd.malformed(Malformed::Truncated),
                            };
                        } else {
                            let hint = ChecksumHint::from_tpacket_status(info.status);
                            taken += self.fwd.frame(ifindex, bytes, info.vlan_tci, hint);
                        }
                    }
                }
                ing.sock.ring.release();
            }
        }
        taken
    }

    fn reap_completions(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        // Collect first: handling a send completion may push new submissions.
        let mut done: [(u64, i32); 64] = [(0, 0); 64];
        loop {
            let mut n = 0;
            for cqe in cq.by_ref().take(done.len()) {
                done[n] = (cqe.user_data(), cqe.result());
                n += 1;
            }
            if n == 0 {
                break;
            }
            drop(cq);
            for &(user_data, result) in &done[..n] {
                self.complete(user_data, result);
            }
            cq = self.ring.completion();
            cq.sync();
        }
    }

    fn complete(&mut self, user_data: u64, result: i32) {
        match user_data & KIND_MASK {
            KIND_SEND => {
                self.fwd
                    .complete_send((user_data & !KIND_MASK) as u32, result, &mut self.ring)
            }
            KIND_POLL => {
                let token = (user_data & !KIND_MASK) as u32;
                if let Some(i) = self.ingress.iter_mut().find(|i| i.token == token) {
                    i.poll_armed = false;
                    if result < 0 || result & i32::from(libc::POLLERR) != 0 {
                        // The socket has a pending error (its interface went down, say). Read
                        // it, which clears it; otherwise every poll would complete at once and
                        // the worker would spin.
                        let err = i.sock.take_error();
                        let now = Instant::now();
                        if self
                            .last_socket_error_log
                            .is_none_or(|t| now.duration_since(t) >= SLOW_TICK)
                        {
                            tracing::warn!(worker = self.fwd.id, interface = %i.sock.interface, "packet socket error: {err:?}");
                            self.last_socket_error_log = Some(now);
                        }
                    }
                } else if let Some(pos) = self.closing.iter().position(|i| i.token == token) {
                    self.closing.swap_remove(pos);
                }
            }
            KIND_TIMER => self.timer_armed = false,
            _ => {}
        }
    }

    /// Sleeps in the kernel until a frame arrives on any ring, a send completes, or `until`.
    ///
    /// The deadline is a timeout operation that stays in flight across sleeps, rather than a
    /// timeout argument to each wait, which would program and cancel a kernel timer on every
    /// wake-up (one per packet at moderate rates). Measured on 3 hops at 20k and 65k pps: the
    /// same CPU, median latency 8-9% lower, within noise (`reports/relay-speed.md`). When the
    /// tick moves after the timeout was armed, the timeout wakes the loop once for nothing.
    fn sleep_until(&mut self, until: Instant) {
        for ing in &mut self.ingress {
            if !ing.poll_armed {
                let poll = opcode::PollAdd::new(types::Fd(ing.sock.raw_fd()), libc::POLLIN as u32)
                    .build()
                    .user_data(KIND_POLL | u64::from(ing.token));
                ing.poll_armed = push(&mut self.ring, &poll);
            }
        }
        if !self.timer_armed {
            let wait = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(50));
            *self.timer_span = types::Timespec::new()
                .sec(wait.as_secs())
                .nsec(wait.subsec_nanos());
            let timeout = opcode::Timeout::new(&*self.timer_span)
                .build()
                .user_data(KIND_TIMER);
            self.timer_armed = push(&mut self.ring, &timeout);
        }
        let result = if self.timer_armed {
            self.ring.submit_and_wait(1)
        } else {
            // The ring refused the timeout: bound this wait by itself.
            let ts = *self.timer_span;
            let args = types::SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        };
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => {
                tracing::error!(worker = self.fwd.id, "io_uring wait: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Waits `window` (or until a completion arrives) without arming polls.
    fn wait_for(&mut self, window: Duration) {
        let ts = types::Timespec::new()
            .sec(window.as_secs())
            .nsec(window.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        if let Err(e) = self.ring.submitter().submit_with_args(1, &args) {
            if !matches!(
                e.raw_os_error(),
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
            ) {
                tracing::error!(worker = self.fwd.id, "io_uring wait: {e}");
            }
        }
    }

    fn tick(&mut self) {
        let cells = self.fwd.cells();
        for ing in &self.ingress {
            cells.kernel_drops.add(ing.sock.take_kernel_drops());
        }
    }

    fn slow_tick(&mut self) {
        self.publish_perf();
        for sock in self.fwd.sockets.values() {
            super::sys::drain_error_queue(sock.raw_fd(), 256);
        }
        self.log_errors();
    }

    fn publish_perf(&mut self) {
        let cells = self.fwd.cells();
        for (cell, value) in cells.perf.iter().zip(self.perf.read()) {
            if let Some(v) = value {
                cell.set(v);
            }
        }
    }

    /// Packet-path problems, at most once a second per kind, with their counts.
    fn log_errors(&mut self) {
        let c = self.fwd.cells();
        let id = self.fwd.id;
        let tx_errors: u64 = c.tx_errors.iter().map(|e| e.get()).sum();
        if let Some(n) = increase(tx_errors, &mut self.last_logged.tx_errors) {
            let (slot, _) = c
                .tx_errors
                .iter()
                .enumerate()
                .max_by_key(|(_, e)| e.get())
                .unwrap_or((0, &c.tx_errors[0]));
            let name = TX_ERRNOS.get(slot).map_or("other", |(_, n)| n);
            tracing::warn!(
                worker = id,
                "{n} send errors in the last second (most often {name})"
            );
        }
        let malformed: u64 = c.malformed.iter().map(|m| m.get()).sum();
        if let Some(n) = increase(malformed, &mut self.last_logged.malformed) {
            tracing::warn!(worker = id, "{n} malformed datagrams in the last second");
        }
        if let Some(n) = increase(c.buf_exhaust.get(), &mut self.last_logged.buf_exhaust) {
            tracing::warn!(
                worker = id,
                "{n} datagrams dropped for lack of egress buffers or send slots in the last second"
            );
        }
        if let Some(n) = increase(c.kernel_drops.get(), &mut self.last_logged.kernel_drops) {
            tracing::warn!(
                worker = id,
                "{n} frames dropped by the kernel before we saw them in the last second (ring full)"
            );
        }
    }

    /// Sends what is pending and waits (bounded) for every send in flight to complete.
    fn drain(mut self) {
        let shared = Arc::clone(&self.fwd.shared);
        let cells = &shared.workers[self.fwd.id];
        cells.begin_update();
        self.fwd.flush(&mut self.ring);
        submit(&mut self.ring);
        cells.end_update();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.fwd.slots.free_count() < self.fwd.slots.capacity() && Instant::now() < deadline {
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            cells.begin_update();
            self.reap_completions();
            cells.end_update();
        }
        cells.begin_update();
        self.tick();
        self.publish_perf();
        cells.end_update();
        self.log_errors();
    }
}
