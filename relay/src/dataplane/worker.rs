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

use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::egress::{gso_run, EgressParams, EgressSocket, OutputTarget, SendSlots};
use super::ingress::{IngressParams, IngressSocket};
use super::limits::{GSO_MAX_PAYLOAD, MAX_SUPER_FRAME, VNET_HDR_LEN};
use super::pool::{BufId, BufferPool};
use super::ring::TP_STATUS_COPY;
use super::Shared;
use crate::config::DataplaneConfig;
use crate::perf::ThreadCounters;
use crate::rules::{EgressKey, MatchKey, RuleTable};
use crate::stats::counters::{errno_slot, WorkerCells, TX_ERRNOS};
use crate::wire::{self, ChecksumHint, Datagram, Malformed, Parsed, VnetHeader};

/// `user_data` kinds (top byte).
const KIND_SEND: u64 = 1 << 56;
const KIND_POLL: u64 = 2 << 56;
const KIND_CANCEL: u64 = 3 << 56;
const KIND_MASK: u64 = 0xff << 56;

/// How often kernel drop counters are read and the rule-table generation is checked when idle.
const TICK: Duration = Duration::from_millis(100);
/// How often perf counters are published and packet-path errors are logged.
const SLOW_TICK: Duration = Duration::from_secs(1);
/// How long shutdown waits for sends in flight to complete.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker {worker}: creating io_uring with {entries} entries: {source}")]
    Uring {
        worker: usize,
        entries: u32,
        #[source]
        source: io::Error,
    },
    #[error("worker {worker}: pinning to CPU {cpu}: {source}")]
    Pin {
        worker: usize,
        cpu: u32,
        #[source]
        source: io::Error,
    },
    #[error("worker {worker}: {source}")]
    Ingress {
        worker: usize,
        #[source]
        source: super::ingress::IngressError,
    },
}

/// A datagram waiting to be sent to one output.
#[derive(Debug, Clone, Copy)]
struct Pending {
    buf: BufId,
    len: u32,
}

struct Ingress {
    sock: IngressSocket,
    /// Identifies this socket in poll completions (never reused within a worker).
    token: u32,
    poll_armed: bool,
}

/// Per-worker state for matching and sending, apart from the ingress rings so that a frame
/// borrowed from a ring can be handed to it.
struct Forwarder {
    id: usize,
    shared: Arc<Shared>,
    table: Arc<RuleTable>,
    /// By output id; `None` where the egress socket could not be opened.
    targets: Vec<Option<Rc<OutputTarget>>>,
    sockets: HashMap<EgressKey, Rc<EgressSocket>>,
    pool: BufferPool,
    pending: Vec<Vec<Pending>>,
    /// Output ids with something pending, in first-queued order.
    active: Vec<usize>,
    pending_capacity: usize,
    slots: SendSlots,
    max_gso_segments: usize,
    egress_params: EgressParams,
    /// Scratch for gathering a send's segments (no allocation per flush).
    segs: Vec<(BufId, *const u8, usize)>,
    gso_refused_logged: bool,
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
    perf: ThreadCounters,
    last_logged: LoggedCounts,
    last_socket_error_log: Option<Instant>,
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
        let slots = dp.max_in_flight_sends as usize;
        let cq = (dp.uring_entries as usize * 2).max(slots + 256) as u32;
        let ring = build_ring(dp.uring_entries, cq).map_err(|source| WorkerError::Uring {
            worker: id,
            entries: dp.uring_entries,
            source,
        })?;
        let pending_capacity = dp.batch_size as usize + super::limits::UDP_MAX_SEGMENTS as usize;
        let fwd = Forwarder {
            id,
            table: Arc::new(RuleTable::default()),
            shared,
            targets: Vec::new(),
            sockets: HashMap::new(),
            pool: BufferPool::new(dp.buffer_count as usize, dp.buffer_size as usize),
            pending: Vec::new(),
            active: Vec::new(),
            pending_capacity,
            slots: SendSlots::new(slots),
            max_gso_segments: dp.max_gso_segments as usize,
            egress_params: EgressParams {
                sndbuf: dp.socket_sndbuf as usize,
                gso: dp.gso && gso_supported,
                multicast_loop: dp.multicast_loop,
            },
            segs: Vec::with_capacity(super::limits::UDP_MAX_SEGMENTS as usize),
            gso_refused_logged: false,
        };
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
                rcvbuf: 4 << 20,
            },
            batch_size: dp.batch_size as usize,
            busy_poll: Duration::from_micros(u64::from(dp.busy_poll_us)),
            perf,
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
        let shared = Arc::clone(&self.fwd.shared);
        shared.adopted[self.fwd.id].store(generation, Ordering::Release);
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
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
                last_busy = Instant::now();
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
            if taken == 0 {
                if now.duration_since(last_busy) < self.busy_poll {
                    std::hint::spin_loop();
                } else {
                    self.sleep_until(next_tick);
                }
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
                        cells.rx.add(1);
                        cells.malformed[Malformed::Truncated.index()].add(1);
                        taken += 1;
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
                                    self.fwd.frame(ifindex, whole, info.vlan_tci, None)
                                }
                                _ => {
                                    cells.rx.add(1);
                                    cells.malformed[Malformed::Truncated.index()].add(1);
                                    1
                                }
                            };
                        } else {
                            let hint = ChecksumHint::from_tpacket_status(info.status);
                            taken += self.fwd.frame(ifindex, bytes, info.vlan_tci, Some(hint));
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
                        let err = super::sys::take_socket_error(i.sock.raw_fd());
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
            _ => {}
        }
    }

    /// Sleeps in the kernel until a frame arrives on any ring, a send completes, or `until`.
    fn sleep_until(&mut self, until: Instant) {
        for ing in &mut self.ingress {
            if !ing.poll_armed {
                let poll = opcode::PollAdd::new(types::Fd(ing.sock.raw_fd()), libc::POLLIN as u32)
                    .build()
                    .user_data(KIND_POLL | u64::from(ing.token));
                ing.poll_armed = push(&mut self.ring, &poll);
            }
        }
        let wait = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_micros(50));
        let ts = types::Timespec::new()
            .sec(wait.as_secs())
            .nsec(wait.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
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
        if tx_errors > self.last_logged.tx_errors {
            let (slot, _) = c
                .tx_errors
                .iter()
                .enumerate()
                .max_by_key(|(_, e)| e.get())
                .unwrap_or((0, &c.tx_errors[0]));
            let name = TX_ERRNOS.get(slot).map_or("other", |(_, n)| n);
            tracing::warn!(
                worker = id,
                "{} send errors in the last second (most often {name})",
                tx_errors - self.last_logged.tx_errors
            );
            self.last_logged.tx_errors = tx_errors;
        }
        let malformed: u64 = c.malformed.iter().map(|m| m.get()).sum();
        if malformed > self.last_logged.malformed {
            tracing::warn!(
                worker = id,
                "{} malformed datagrams in the last second",
                malformed - self.last_logged.malformed
            );
            self.last_logged.malformed = malformed;
        }
        let exhaust = c.buf_exhaust.get();
        if exhaust > self.last_logged.buf_exhaust {
            tracing::warn!(
                worker = id,
                "{} datagrams dropped for lack of egress buffers or send slots in the last second",
                exhaust - self.last_logged.buf_exhaust
            );
            self.last_logged.buf_exhaust = exhaust;
        }
        let kdrops = c.kernel_drops.get();
        if kdrops > self.last_logged.kernel_drops {
            tracing::warn!(
                worker = id,
                "{} frames dropped by the kernel before we saw them in the last second (ring full)",
                kdrops - self.last_logged.kernel_drops
            );
            self.last_logged.kernel_drops = kdrops;
        }
    }

    /// Sends what is pending and waits (bounded) for every send in flight to complete.
    fn drain(mut self) {
        self.fwd.flush(&mut self.ring);
        submit(&mut self.ring);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.fwd.slots.free_count() < self.fwd.slots.capacity() && Instant::now() < deadline {
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap_completions();
        }
        self.tick();
        self.publish_perf();
        self.log_errors();
    }
}

impl Forwarder {
    #[inline]
    fn cells(&self) -> &WorkerCells {
        &self.shared.workers[self.id]
    }

    /// Adopts a new table: egress sockets and per-output targets. Called between passes, when
    /// nothing is pending (sends in flight keep their own targets alive).
    fn adopt(&mut self, table: Arc<RuleTable>) {
        debug_assert!(self.active.is_empty());
        let mut sockets = HashMap::with_capacity(table.egress_keys.len());
        for key in &table.egress_keys {
            let sock = match self.sockets.get(key) {
                Some(s) => Some(Rc::clone(s)),
                None => match EgressSocket::open(key.clone(), self.egress_params) {
                    Ok(s) => Some(Rc::new(s)),
                    Err(e) => {
                        tracing::error!(
                            worker = self.id,
                            ifindex = key.ifindex,
                            "opening egress socket: {e}"
                        );
                        None
                    }
                },
            };
            if let Some(s) = sock {
                sockets.insert(key.clone(), s);
            }
        }
        self.sockets = sockets;
        let mut targets: Vec<Option<Rc<OutputTarget>>> =
            (0..table.output_count).map(|_| None).collect();
        for rule in &table.rules {
            for out in &rule.outputs {
                let key = &table.egress_keys[out.egress];
                targets[out.id] = self.sockets.get(key).map(|s| {
                    Rc::new(OutputTarget::new(
                        out.dest,
                        Rc::clone(s),
                        Arc::clone(&rule.counters),
                        out.index_in_rule,
                    ))
                });
            }
        }
        self.targets = targets;
        self.pending = (0..table.output_count)
            .map(|_| Vec::with_capacity(self.pending_capacity))
            .collect();
        self.active = Vec::with_capacity(table.output_count);
        self.table = table;
    }

    /// Handles one frame (`bytes` starts with the vnet header). Returns datagrams taken.
    #[inline]
    fn frame(
        &mut self,
        ifindex: u32,
        bytes: &[u8],
        vlan_tci: Option<u16>,
        hint: Option<ChecksumHint>,
    ) -> usize {
        let cells = self.cells();
        let Some((vnet_bytes, frame)) = bytes.split_at_checked(VNET_HDR_LEN) else {
            cells.rx.add(1);
            cells.malformed[Malformed::Truncated.index()].add(1);
            return 1;
        };
        let vnet = VnetHeader::parse(vnet_bytes);
        let hint = hint.unwrap_or(match vnet {
            Some(v) if v.flags & wire::vnet::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 => {
                ChecksumHint::Partial
            }
            Some(v) if v.flags & wire::vnet::VIRTIO_NET_HDR_F_DATA_VALID != 0 => {
                ChecksumHint::Verified
            }
            _ => ChecksumHint::Unverified,
        });
        let max_payload = self.pool.buffer_size();
        match wire::parse_frame(frame, vnet.as_ref(), vlan_tci, hint, max_payload) {
            Parsed::Filtered(kind) => {
                cells.rx.add(1);
                cells.filtered[kind.index()].add(1);
                1
            }
            Parsed::Malformed(kind) => {
                cells.rx.add(1);
                cells.malformed[kind.index()].add(1);
                1
            }
            parsed => {
                let mut n = 0;
                for d in parsed.datagrams() {
                    self.dispatch(ifindex, &d);
                    n += 1;
                }
                n
            }
        }
    }

    /// Matches one datagram and queues it for each output of its rule.
    #[inline]
    fn dispatch(&mut self, ifindex: u32, d: &Datagram<'_>) {
        let cells = &self.shared.workers[self.id];
        cells.rx.add(1);
        let key = MatchKey {
            ifindex,
            group: d.dst,
            port: d.dst_port,
        };
        let Some(rule) = self.table.lookup(&key, d.src) else {
            cells.no_match.add(1);
            return;
        };
        cells.matched.add(1);
        let flow = &rule.counters.per_worker[self.id];
        flow.packets.add(1);
        flow.bytes.add(d.payload.len() as u64);
        let outputs = rule.outputs.len();
        let Some(buf) = self.pool.alloc(outputs as u16) else {
            for (i, _) in rule.outputs.iter().enumerate() {
                flow.outputs[i].matched.add(1);
                flow.outputs[i].buf_exhaust.add(1);
            }
            cells.buf_exhaust.add(outputs as u64);
            return;
        };
        let len = d.payload.len();
        self.pool.buf_mut(buf)[..len].copy_from_slice(d.payload);
        for (i, out) in rule.outputs.iter().enumerate() {
            let oc = &flow.outputs[i];
            oc.matched.add(1);
            let queue = &mut self.pending[out.id];
            if queue.len() >= self.pending_capacity {
                oc.buf_exhaust.add(1);
                cells.buf_exhaust.add(1);
                self.pool.release(buf);
                continue;
            }
            if queue.is_empty() {
                self.active.push(out.id);
            }
            queue.push(Pending {
                buf,
                len: len as u32,
            });
            oc.in_flight.add(1);
            cells.in_flight.add(1);
        }
    }

    /// Turns every output's pending datagrams into `sendmsg` submissions.
    fn flush(&mut self, ring: &mut IoUring) {
        for a in 0..self.active.len() {
            let id = self.active[a];
            let target = self.targets[id].clone();
            let mut queue = std::mem::take(&mut self.pending[id]);
            match target {
                Some(target) => self.send_queue(&target, &queue, ring),
                None => {
                    // The egress socket could not be opened: these datagrams cannot be sent.
                    let table = Arc::clone(&self.table);
                    if let Some((rule, i)) = table
                        .rules
                        .iter()
                        .find_map(|r| r.outputs.iter().position(|o| o.id == id).map(|i| (r, i)))
                    {
                        let oc = &rule.counters.per_worker[self.id].outputs[i];
                        let n = queue.len() as u64;
                        oc.in_flight.sub(n);
                        oc.tx_errors.add(n);
                        let cells = self.cells();
                        cells.in_flight.sub(n);
                        cells.tx_errors[errno_slot(libc::ENODEV)].add(n);
                    }
                    for p in &queue {
                        self.pool.release(p.buf);
                    }
                }
            }
            queue.clear();
            self.pending[id] = queue;
        }
        self.active.clear();
    }

    fn send_queue(&mut self, target: &Rc<OutputTarget>, queue: &[Pending], ring: &mut IoUring) {
        let gso = target.socket.gso.get();
        let max_segments = if gso { self.max_gso_segments } else { 1 };
        let mut i = 0;
        while i < queue.len() {
            let n = gso_run(
                queue[i..].iter().map(|p| p.len as usize),
                max_segments,
                GSO_MAX_PAYLOAD,
            );
            let Some(slot) = self.slots.take() else {
                // Every send slot is in flight: the overload drop point.
                self.drop_unsent(target, &queue[i..]);
                return;
            };
            self.segs.clear();
            for p in &queue[i..i + n] {
                self.segs
                    .push((p.buf, self.pool.as_ptr(p.buf), p.len as usize));
            }
            let msg = self
                .slots
                .prepare(slot, target, &self.segs, queue[i].len as usize);
            let sqe = opcode::SendMsg::new(types::Fd(target.socket.raw_fd()), msg)
                .build()
                .user_data(KIND_SEND | u64::from(slot));
            if !push(ring, &sqe) {
                // The ring refuses work: account for these datagrams as not sent.
                self.slots.finish(slot);
                self.drop_unsent(target, &queue[i..]);
                return;
            }
            i += n;
        }
    }

    fn drop_unsent(&mut self, target: &OutputTarget, unsent: &[Pending]) {
        let oc = &target.flow.per_worker[self.id].outputs[target.index_in_rule];
        let n = unsent.len() as u64;
        oc.in_flight.sub(n);
        oc.buf_exhaust.add(n);
        let cells = &self.shared.workers[self.id];
        cells.in_flight.sub(n);
        cells.buf_exhaust.add(n);
        for p in unsent {
            self.pool.release(p.buf);
        }
    }

    fn complete_send(&mut self, slot: u32, result: i32, ring: &mut IoUring) {
        let mut sent = [(0 as BufId, 0usize); super::limits::UDP_MAX_SEGMENTS as usize];
        let segments = self.slots.segments_of(slot, &mut sent);
        let bytes = self.slots.slot(slot).payload_bytes as u64;
        let (target, _) = self.slots.finish(slot);
        let Some(target) = target else {
            return;
        };
        let n = segments as u64;
        let cells = &self.shared.workers[self.id];
        let oc = &target.flow.per_worker[self.id].outputs[target.index_in_rule];
        cells.tx_syscalls.add(1);
        if result >= 0 {
            oc.in_flight.sub(n);
            oc.tx_sent.add(n);
            oc.tx_bytes.add(bytes);
            cells.in_flight.sub(n);
            cells.tx_sent.add(n);
            cells.tx_bytes.add(bytes);
        } else {
            let errno = -result;
            if segments > 1
                && matches!(errno, libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                && target.socket.gso.get()
            {
                // The kernel refused segmentation on this socket (no checksum offload on the
                // device, say): stop using it there and resend these datagrams one by one.
                // They stay counted in flight.
                target.socket.gso.set(false);
                if !self.gso_refused_logged {
                    tracing::warn!(
                        worker = self.id,
                        ifindex = target.socket.key.ifindex,
                        "kernel refused UDP_SEGMENT (errno {errno}); sending one datagram per sendmsg on this interface"
                    );
                    self.gso_refused_logged = true;
                }
                let queue: Vec<Pending> = sent[..segments]
                    .iter()
                    .map(|&(buf, len)| Pending {
                        buf,
                        len: len as u32,
                    })
                    .collect();
                self.send_queue(&target, &queue, ring);
                return;
            }
            oc.in_flight.sub(n);
            oc.tx_errors.add(n);
            cells.in_flight.sub(n);
            cells.tx_errors[errno_slot(errno)].add(n);
        }
        for &(b, _) in &sent[..segments] {
            self.pool.release(b);
        }
    }
}

fn build_ring(entries: u32, cq: u32) -> io::Result<IoUring> {
    // Single issuer + deferred task work: completions are processed only when this thread
    // enters the kernel, in batches (Linux 6.1+). Fall back to a plain ring on older kernels.
    // The task-run flag makes the kernel tell us (IORING_SQ_TASKRUN) when deferred work, such
    // as a send that had to wait for buffer space, is ready to complete; `submit` then enters
    // the kernel with GETEVENTS even when we have nothing new to submit.
    IoUring::<squeue::Entry, cqueue::Entry>::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(cq)
        .build(entries)
        .or_else(|_| IoUring::builder().setup_cqsize(cq).build(entries))
}

/// Queues a submission, submitting what is queued first if the queue is full. Returns false
/// only if the kernel will not take submissions at all; the caller then accounts for the
/// operation itself.
fn push(ring: &mut IoUring, sqe: &squeue::Entry) -> bool {
    for _ in 0..1000 {
        // SAFETY: every entry we push refers to memory that outlives the operation: send slots
        // and pool buffers never move or get freed while their slot is in flight (the slot
        // holds the buffers' references and the socket's Rc), and polls refer to sockets kept
        // open until their completion (see `closing`).
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return true;
        }
        submit(ring);
    }
    false
}

/// Whether entering the kernel would do anything: submissions are queued, or completions are
/// waiting for deferred task work.
fn needs_enter(ring: &mut IoUring) -> bool {
    let sq = ring.submission();
    !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
}

fn submit(ring: &mut IoUring) {
    match ring.submit() {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EBUSY) | Some(libc::EINTR) | Some(libc::EAGAIN)
            ) => {}
        Err(e) => tracing::error!("io_uring submit: {e}"),
    }
}
