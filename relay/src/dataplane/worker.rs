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

use super::fanout::FanoutGroups;
use super::filter_count::DropDelta;
use super::forward::Forwarder;
use super::ingress::{IngressParams, IngressSocket};
use super::limits::{MAX_SUPER_FRAME, VNET_HDR_LEN};
use super::ratelimit::{LogLimiter, LOG_INTERVAL};
use super::ring::TP_STATUS_COPY;
use super::uring::{
    build_ring, needs_enter, push, submit, KIND_CANCEL, KIND_MASK, KIND_POLL, KIND_SEND, KIND_TIMER,
};
use super::Shared;
use crate::config::DataplaneConfig;
use crate::counters::{WorkerCells, TX_ERRNOS};
use crate::perf::ThreadCounters;
use crate::rules::RuleTable;
use crate::wire::{self, ChecksumHint, Malformed, VnetHeader};

/// How often kernel drop counters are read and the rule-table generation is checked when idle.
const TICK: Duration = Duration::from_millis(100);
/// How often perf counters are published and packet-path errors are logged.
const SLOW_TICK: Duration = LOG_INTERVAL;
/// How long shutdown waits for sends in flight to complete.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long shutdown then waits for cancelled sends to complete.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// A worker panicked or stopped on its own while the others started.
    #[error("{0}")]
    Failed(String),
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
    /// Opening a socket the table wants failed: tried again every [`SLOW_TICK`].
    open_failed: bool,
    next_token: u32,
    /// The input a pass starts from (rotates, for fairness).
    next_input: usize,
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
    /// Dropped frames of closed sockets whose datagrams were never settled.
    closed_unsettled: u64,
    socket_errors: LogLimiter,
    wait_errors: LogLimiter,
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
    tx_errors_by_errno: [u64; TX_ERRNOS.len() + 1],
    malformed: u64,
    buf_exhaust: u64,
    kernel_drops: u64,
    rx_overflow: u64,
}

/// The datagrams in a frame read from the ring (`bytes` from its vnet header on, `wire_len`
/// its whole length): one, or a super-frame's `gso_size` segments.
#[inline]
fn frame_segments(bytes: &[u8], wire_len: u32) -> u64 {
    let (vnet, head) = bytes.split_at(VNET_HDR_LEN.min(bytes.len()));
    let vnet = VnetHeader::parse(vnet);
    wire::datagrams_in_frame(head, wire_len as usize, vnet.as_ref()).unwrap_or(1)
}

/// Adds what a socket's kernel drop counters grew by (see `dataplane::filter_count`).
fn add_kernel_drops(cells: &WorkerCells, drops: DropDelta) {
    cells.kernel_drops.add(drops.datagrams);
    cells.kernel_drop_frames.add(drops.frames);
}

/// Takes frames from one ring until it is empty or `limit` datagrams were taken; returns the
/// datagrams taken.
fn take_from(
    sock: &mut IngressSocket,
    fwd: &mut Forwarder,
    scratch: &mut [u8],
    limit: usize,
) -> usize {
    let ifindex = sock.ifindex;
    let mut taken = 0;
    while taken < limit {
        let Some(frame) = sock.ring.peek() else {
            break;
        };
        let cells = fwd.cells();
        cells.rx_frames.add(1);
        // Counted as the socket's filter counts it (`gso_segs`, at least one), so the
        // datagrams of the frames the kernel dropped can be told (`filter_count`).
        let segments = match &frame {
            Ok((info, bytes)) => frame_segments(bytes, info.len),
            Err(_) => 1,
        };
        sock.drops.read(segments);
        match frame {
            Err(info) => {
                cells.rx_bytes.add(u64::from(info.len));
                taken += fwd.malformed(Malformed::Truncated);
            }
            Ok((info, bytes)) => {
                cells.rx_bytes.add(u64::from(info.len));
                if info.status & TP_STATUS_COPY != 0 {
                    // Too big for a slot: the kernel queued the whole frame on the socket.
                    taken += match super::sys::recv_nonblocking(sock.raw_fd(), scratch) {
                        Ok(Some(n)) if n <= scratch.len() => fwd.frame(
                            ifindex,
                            &scratch[..n],
                            info.vlan_tci,
                            ChecksumHint::Unverified,
                            info.stamp,
                        ),
                        // The copy was dropped after the slot was filled: overload too.
                        _ => {
                            fwd.overflow(bytes, info.len);
                            0
                        }
                    };
                } else if bytes.len() - VNET_HDR_LEN < info.len as usize {
                    // Too big for a slot, and the receive queue had no room for the whole
                    // frame: overload, not a malformed frame.
                    fwd.overflow(bytes, info.len);
                } else {
                    let hint = super::ring::checksum_hint(info.status);
                    taken += fwd.frame(ifindex, bytes, info.vlan_tci, hint, info.stamp);
                }
            }
        }
        sock.ring.release();
    }
    taken
}

impl Worker {
    /// Sets up a worker on the calling thread (its io_uring must be created by the thread
    /// that submits to it).
    pub fn new(
        id: usize,
        cpu: Option<u32>,
        dp: &DataplaneConfig,
        fanout: Option<Arc<FanoutGroups>>,
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
            open_failed: false,
            next_token: 0,
            next_input: 0,
            fwd,
            scratch: vec![0u8; MAX_SUPER_FRAME + VNET_HDR_LEN],
            ingress_params: IngressParams {
                ring_frames: dp.ring_frames as usize,
                frame_size: dp.ring_frame_size as usize,
                fanout,
                rcvbuf: super::ingress::PACKET_RCVBUF,
            },
            batch_size: dp.batch_size as usize,
            busy_poll: Duration::from_micros(u64::from(dp.busy_poll_us)),
            rx_coalesce: Duration::from_micros(u64::from(dp.rx_coalesce_us)),
            perf,
            timer_armed: false,
            timer_span: Box::new(types::Timespec::new()),
            last_logged: LoggedCounts::default(),
            closed_unsettled: 0,
            socket_errors: LogLimiter::default(),
            wait_errors: LogLimiter::default(),
        })
    }

    /// Adopts the currently published rule table: opens, re-filters and closes sockets.
    /// Ingress failures are returned (at start they are fatal; later they are logged, and
    /// the opening is tried again every [`SLOW_TICK`]).
    ///
    /// A worker has a packet socket on an input only while the input needs capture (a rule
    /// on it runs in userspace, [`crate::rules::InputInterface::needs_capture`]). A socket
    /// no longer needed first stops taking frames and is closed once its ring is empty
    /// ([`Self::close_drained`]): the frames it holds may have arrived before the kernel path
    /// took their flows over, and then nothing else forwards them. A socket needed again is opened
    /// here, before the worker reports the table adopted, which is before the controller
    /// removes the kernel entries of flows that left the kernel (`FastPath::finish`).
    pub fn adopt_current_table(&mut self) -> Result<(), WorkerError> {
        let snapshot = self.fwd.shared.snapshot.load_full();
        let table = &snapshot.table;
        // First close the sockets of inputs the table no longer has, and those whose
        // interface was deleted (also if one of the same index exists now: the socket is
        // bound to nothing), so that `open_missing` opens a new one for it.
        let mut i = 0;
        while i < self.ingress.len() {
            let sock = &mut self.ingress[i].sock;
            match table.input(sock.ifindex) {
                Some(input) if !sock.is_orphaned() => {
                    if !input.needs_capture {
                        if let Err(e) = sock.stop_capture() {
                            tracing::error!(worker = self.fwd.id, interface = %input.name, "stopping the packet filter: {e}; closing the socket at once");
                            let gone = self.ingress.swap_remove(i);
                            self.close(gone);
                            continue;
                        }
                    }
                    i += 1;
                }
                _ => {
                    let gone = self.ingress.swap_remove(i);
                    self.close(gone);
                }
            }
        }
        let first_error = self.open_missing(table);
        self.fwd.adopt(snapshot);
        self.close_drained();
        first_error.map_or(Ok(()), Err)
    }

    /// Opens a socket on every input of `table` that needs capture and has none, and
    /// re-filters those it has (which captures again on a socket that had stopped). Returns
    /// the first error; `open_failed` remembers that there was one.
    fn open_missing(&mut self, table: &RuleTable) -> Option<WorkerError> {
        let mut first_error = None;
        for input in table.inputs.iter().filter(|i| i.needs_capture) {
            if let Some(i) = self
                .ingress
                .iter_mut()
                .find(|i| i.sock.ifindex == input.ifindex)
            {
                if let Err(e) = i.sock.update_filter(&input.groups, &input.kernel_flows) {
                    tracing::error!(worker = self.fwd.id, interface = %input.name, "updating packet filter: {e}");
                }
                continue;
            }
            // A socket closed a moment ago whose cancelled poll has not completed is still in
            // the interface's fan-out group (the poll holds it open), taking nothing: a new
            // socket beside it would see the group hand it a share of the frames, dropped.
            // It is taken back instead.
            if let Some(pos) = self
                .closing
                .iter()
                .position(|c| c.sock.ifindex == input.ifindex && !c.sock.is_orphaned())
            {
                let mut back = self.closing.swap_remove(pos);
                match back.sock.update_filter(&input.groups, &input.kernel_flows) {
                    Ok(()) => {
                        self.ingress.push(back);
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(worker = self.fwd.id, interface = %input.name, "updating the packet filter of a closing socket: {e}; opening a new one");
                        self.closing.push(back);
                    }
                }
            }
            match IngressSocket::open(
                input.ifindex,
                &input.name,
                &input.groups,
                &input.kernel_flows,
                &self.ingress_params,
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
        self.open_failed = first_error.is_some();
        first_error
    }

    /// Closes the sockets that stopped capturing once their rings are empty.
    fn close_drained(&mut self) {
        let mut i = 0;
        while i < self.ingress.len() {
            let sock = &self.ingress[i].sock;
            if sock.is_stopped() && sock.ring.peek().is_none() {
                let gone = self.ingress.swap_remove(i);
                self.close(gone);
            } else {
                i += 1;
            }
        }
    }

    /// Closes an ingress socket: the frames the kernel dropped on it go to the worker's
    /// count, and a socket with a poll armed is kept until its cancelled poll completes (its
    /// descriptor must not be reused while the poll may still name it).
    fn close(&mut self, mut gone: Ingress) {
        let drops = gone.sock.take_kernel_drops();
        self.closed_unsettled += gone.sock.drops.unsettled_frames();
        add_kernel_drops(self.fwd.cells(), drops);
        if gone.poll_armed {
            let cancel = opcode::AsyncCancel::new(KIND_POLL | u64::from(gone.token))
                .build()
                .user_data(KIND_CANCEL);
            if push(&mut self.ring, &cancel) {
                self.closing.push(gone);
            }
        }
    }

    /// Runs until the shared stop flag is set, then drains sends in flight.
    pub fn run(mut self) {
        let mut generation = self.fwd.snapshot.table.generation;
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
                generation = self.fwd.snapshot.table.generation;
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
    ///
    /// Inputs are served fairly: each gets an equal share of the pass's budget, starting from a
    /// different input every pass, and what a quiet input leaves unused goes to the busy ones
    /// in a second round. Draining one input first would let a flood on it starve the others.
    fn take_ingress(&mut self) -> usize {
        let inputs = self.ingress.len();
        if inputs == 0 {
            return 0;
        }
        let first = self.next_input % inputs;
        self.next_input = self.next_input.wrapping_add(1);
        let share = self.batch_size.div_ceil(inputs);
        let mut taken = 0;
        for round_limit in [share, self.batch_size] {
            for k in 0..inputs {
                let ing = &mut self.ingress[(first + k) % inputs];
                let limit = round_limit.min(self.batch_size - taken);
                taken += take_from(&mut ing.sock, &mut self.fwd, &mut self.scratch, limit);
                if taken >= self.batch_size {
                    return taken;
                }
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
                    .sender
                    .complete((user_data & !KIND_MASK) as u32, result, &mut self.ring)
            }
            KIND_POLL => {
                let token = (user_data & !KIND_MASK) as u32;
                if let Some(i) = self.ingress.iter_mut().find(|i| i.token == token) {
                    i.poll_armed = false;
                    // Cancelled: a socket taken back while being closed (`open_missing`).
                    let cancelled = result == -libc::ECANCELED;
                    if !cancelled && (result < 0 || result & i32::from(libc::POLLERR) != 0) {
                        // The socket has a pending error (its interface went down, say). Read
                        // it, which clears it; otherwise every poll would complete at once and
                        // the worker would spin.
                        let err = i.sock.take_error();
                        if let Some(n) = self.socket_errors.occurred(Instant::now()) {
                            tracing::warn!(worker = self.fwd.id, interface = %i.sock.interface, "packet socket error: {err:?} ({n} times since the last report)");
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
                if let Some(n) = self.wait_errors.occurred(Instant::now()) {
                    tracing::error!(
                        worker = self.fwd.id,
                        "io_uring wait: {e} ({n} times since the last report)"
                    );
                }
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
                if let Some(n) = self.wait_errors.occurred(Instant::now()) {
                    tracing::error!(
                        worker = self.fwd.id,
                        "io_uring wait: {e} ({n} times since the last report)"
                    );
                }
            }
        }
    }

    fn tick(&mut self) {
        let cells = self.fwd.cells();
        let mut unsettled = self.closed_unsettled;
        for ing in &mut self.ingress {
            add_kernel_drops(cells, ing.sock.take_kernel_drops());
            unsettled += ing.sock.drops.unsettled_frames();
        }
        cells.kernel_drops_unsettled_frames.set(unsettled);
        self.close_drained();
    }

    fn slow_tick(&mut self) {
        if self.open_failed {
            let snapshot = Arc::clone(&self.fwd.snapshot);
            self.open_missing(&snapshot.table);
        }
        self.publish_perf();
        for sock in self.fwd.sender.sockets() {
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
            // Name the errno that grew most since the last line, not the largest since start:
            // an old burst of one error must not be blamed for a new one.
            let mut most = (0, 0u64);
            for (slot, (e, last)) in c
                .tx_errors
                .iter()
                .zip(self.last_logged.tx_errors_by_errno.iter_mut())
                .enumerate()
            {
                let grew = increase(e.get(), last).unwrap_or(0);
                if grew > most.1 {
                    most = (slot, grew);
                }
            }
            let name = TX_ERRNOS.get(most.0).map_or("other", |(_, n)| n);
            tracing::warn!(
                worker = id,
                "{n} send errors in the last second ({} of them {name})",
                most.1
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
        if let Some(n) = increase(c.rx_overflow.get(), &mut self.last_logged.rx_overflow) {
            tracing::warn!(
                worker = id,
                "{n} datagrams lost to overload on the copy path in the last second (packet socket receive queue full)"
            );
        }
        if let Some(n) = increase(
            c.kernel_drop_frames.get(),
            &mut self.last_logged.kernel_drops,
        ) {
            tracing::warn!(
                worker = id,
                "{n} frames dropped by the kernel before we saw them in the last second (ring full); their datagrams are in kernel_drops"
            );
        }
    }

    /// Reaps completions until every send slot is free or `timeout` passes; returns whether
    /// every slot is free.
    fn wait_for_sends(&mut self, timeout: Duration) -> bool {
        let cells = Arc::clone(&self.fwd.shared);
        let cells = &cells.workers[self.fwd.id];
        let deadline = Instant::now() + timeout;
        loop {
            if self.fwd.sender.slots().free_count() == self.fwd.sender.slots().capacity() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            cells.begin_update();
            self.reap_completions();
            cells.end_update();
        }
    }

    /// Sends what is pending and waits (bounded) for every send in flight to complete; what
    /// does not complete is cancelled, and its memory is never freed while the kernel may
    /// still read it.
    fn drain(mut self) {
        let shared = Arc::clone(&self.fwd.shared);
        let cells = &shared.workers[self.fwd.id];
        cells.begin_update();
        self.fwd.flush(&mut self.ring);
        submit(&mut self.ring);
        cells.end_update();
        if !self.wait_for_sends(DRAIN_TIMEOUT) {
            // Sends still waiting (an output that cannot drain): cancel every operation and
            // wait for the cancellations to complete; each cancelled send counts as an error.
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(KIND_CANCEL);
            if push(&mut self.ring, &cancel) {
                submit(&mut self.ring);
            }
            if !self.wait_for_sends(CANCEL_TIMEOUT) {
                // The kernel still owns buffers and send slots. Never free memory it may read:
                // leak them (the process is stopping) rather than risk a use after free.
                let left =
                    self.fwd.sender.slots().capacity() - self.fwd.sender.slots().free_count();
                tracing::error!(
                    worker = self.fwd.id,
                    "{left} sends neither completed nor cancelled at shutdown; keeping their buffers"
                );
                self.fwd.sender.keep_buffers_forever();
            }
        }
        cells.begin_update();
        // Twice: drops the first finds are settled by the second (`take_kernel_drops`).
        self.tick();
        self.tick();
        self.publish_perf();
        cells.end_update();
        self.log_errors();
    }
}
