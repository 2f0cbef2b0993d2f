//! Sending, for one worker: the datagrams queued per output become `sendmsg` operations on
//! the worker's io_uring after each batch (same-size runs coalesced with `UDP_SEGMENT`), and
//! their completions update the counters and free the buffers and slots. Where the kernel
//! refuses `UDP_SEGMENT` on a socket, the refused sends are made again one datagram each.
//!
//! Beside the sockets and slots it sends with (the parent module); matching and copying are
//! `forward`'s. Nothing here allocates, formats, locks or logs per datagram.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use io_uring::{opcode, types, IoUring};

use super::pending::PendingQueues;
use super::{gso_run, EgressParams, EgressSocket, OutputTarget, SendSlots};
use crate::config::DataplaneConfig;
use crate::counters::errno_slot;
use crate::dataplane::limits::{GSO_MAX_PAYLOAD, UDP_MAX_SEGMENTS};
use crate::dataplane::pool::{BufId, BufferPool, PoolError};
use crate::dataplane::uring::{push, KIND_SEND};
use crate::dataplane::{Shared, Snapshot};
use crate::rules::EgressKey;

/// A datagram waiting to be sent to one output.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub buf: BufId,
    pub len: u32,
    /// Type of service to send with (DSCP and ECN).
    pub tos: u8,
}

/// One worker's egress: sockets, per-output queues, the buffer pool the queued datagrams
/// live in, and the send slots in flight.
pub struct Sender {
    worker: usize,
    shared: Arc<Shared>,
    /// By output id; `None` where the egress socket could not be opened.
    targets: Vec<Option<Rc<OutputTarget>>>,
    sockets: HashMap<EgressKey, Rc<EgressSocket>>,
    pool: BufferPool,
    pending: PendingQueues,
    /// The most datagrams one output holds per pass.
    pending_capacity: usize,
    /// One output's queue, copied out to be sent (no allocation per flush).
    sending: Vec<Pending>,
    slots: SendSlots,
    max_gso_segments: usize,
    egress_params: EgressParams,
    /// Scratch for gathering a send's segments (no allocation per flush).
    segs: Vec<(BufId, *const u8, usize)>,
    gso_refused_logged: bool,
}

impl Sender {
    pub fn new(
        worker: usize,
        shared: Arc<Shared>,
        dp: &DataplaneConfig,
        gso_supported: bool,
    ) -> Result<Self, PoolError> {
        Ok(Sender {
            worker,
            shared,
            targets: Vec::new(),
            sockets: HashMap::new(),
            pool: BufferPool::new(dp.buffer_count as usize, dp.buffer_size as usize)?,
            pending: PendingQueues::default(),
            pending_capacity: dp.batch_size as usize + UDP_MAX_SEGMENTS as usize,
            sending: Vec::with_capacity(dp.batch_size as usize + UDP_MAX_SEGMENTS as usize),
            slots: SendSlots::new(dp.max_in_flight_sends as usize),
            max_gso_segments: dp.max_gso_segments as usize,
            egress_params: EgressParams {
                sndbuf: dp.socket_sndbuf as usize,
                gso: dp.gso && gso_supported,
                multicast_loop: dp.multicast_loop,
            },
            segs: Vec::with_capacity(UDP_MAX_SEGMENTS as usize),
            gso_refused_logged: false,
        })
    }

    /// Opens the egress sockets `snapshot`'s table needs (keeping those already open) and
    /// builds its per-output targets. Called between passes, when nothing is pending (sends in
    /// flight keep their own targets alive).
    pub fn adopt(&mut self, snapshot: &Snapshot) {
        let table = &snapshot.table;
        debug_assert_eq!(self.pending.active_len(), 0);
        let mut sockets = HashMap::with_capacity(table.egress_keys.len());
        for key in &table.egress_keys {
            let sock = match self.sockets.get(key) {
                Some(s) => Some(Rc::clone(s)),
                None => match EgressSocket::open(key.clone(), self.egress_params) {
                    Ok(s) => Some(Rc::new(s)),
                    Err(e) => {
                        tracing::error!(
                            worker = self.worker,
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
        for (position, rule) in table.rules.iter().enumerate() {
            for out in &rule.outputs {
                let key = &table.egress_keys[out.egress];
                targets[out.id] = self.sockets.get(key).map(|s| {
                    Rc::new(OutputTarget::new(
                        out.dest,
                        Rc::clone(s),
                        Arc::clone(snapshot.counters.flow(position)),
                        out.index_in_rule,
                    ))
                });
            }
        }
        self.targets = targets;
        // Each queued datagram holds one share of a pool buffer, and a buffer has at most
        // one share per output of its rule: that bounds the store.
        let fan_out = table
            .rules
            .iter()
            .map(|r| r.outputs.len())
            .max()
            .unwrap_or(0);
        let store =
            (self.pool.capacity() * fan_out).min(table.output_count * self.pending_capacity);
        self.pending
            .resize(table.output_count, self.pending_capacity, store);
    }

    pub fn sockets(&self) -> impl Iterator<Item = &EgressSocket> {
        self.sockets.values().map(|s| &**s)
    }

    pub fn slots(&self) -> &SendSlots {
        &self.slots
    }

    /// Largest payload a buffer holds.
    #[inline]
    pub fn buffer_size(&self) -> usize {
        self.pool.buffer_size()
    }

    /// Copies `payload` into a free buffer that `outputs` queued sends will share; `None`
    /// when every buffer is taken.
    #[inline]
    pub fn copy_in(&mut self, payload: &[u8], outputs: usize) -> Option<BufId> {
        let buf = self.pool.alloc(outputs as u16)?;
        self.pool.buf_mut(buf)[..payload.len()].copy_from_slice(payload);
        Some(buf)
    }

    /// Queues a datagram for output `output_id`; `false` (and its share of the buffer given
    /// back) when that output's queue is full.
    #[inline]
    pub fn enqueue(&mut self, output_id: usize, datagram: Pending) -> bool {
        if self.pending.push(output_id, datagram).is_err() {
            self.pool.release(datagram.buf);
            return false;
        }
        true
    }

    /// Turns every output's pending datagrams into `sendmsg` submissions. `snapshot` is the
    /// one last adopted (to charge an output whose socket could not be opened).
    pub fn flush(&mut self, snapshot: &Snapshot, ring: &mut IoUring) {
        let mut queue = std::mem::take(&mut self.sending);
        for a in 0..self.pending.active_len() {
            let id = self.pending.active(a);
            self.pending.copy_queue(id, &mut queue);
            match self.targets[id].clone() {
                Some(target) => self.send_queue(&target, &queue, ring),
                None => self.charge_unopened(snapshot, id, &queue),
            }
        }
        self.pending.clear();
        queue.clear();
        self.sending = queue;
    }

    /// The egress socket of output `id` could not be opened: these datagrams cannot be sent.
    #[cold]
    fn charge_unopened(&mut self, snapshot: &Snapshot, id: usize, queue: &[Pending]) {
        if let Some((position, i)) = snapshot
            .table
            .rules
            .iter()
            .enumerate()
            .find_map(|(p, r)| r.outputs.iter().position(|o| o.id == id).map(|i| (p, i)))
        {
            let oc = &snapshot.counters.flow(position).per_worker[self.worker].outputs[i];
            let n = queue.len() as u64;
            oc.in_flight.sub(n);
            oc.tx_errors.add(n);
            let cells = &self.shared.workers[self.worker];
            cells.in_flight.sub(n);
            cells.tx_errors[errno_slot(libc::ENODEV)].add(n);
        }
        for p in queue {
            self.pool.release(p.buf);
        }
    }

    fn send_queue(&mut self, target: &Rc<OutputTarget>, queue: &[Pending], ring: &mut IoUring) {
        let gso = target.socket.gso.get();
        let max_segments = if gso { self.max_gso_segments } else { 1 };
        let mut i = 0;
        while i < queue.len() {
            // One send carries one type of service: a run ends where it changes.
            let tos = queue[i].tos;
            let n = gso_run(
                queue[i..]
                    .iter()
                    .take_while(|p| p.tos == tos)
                    .map(|p| p.len as usize),
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
                .prepare(slot, target, &self.segs, queue[i].len as usize, tos);
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
        let oc = &target.flow.per_worker[self.worker].outputs[target.index_in_rule];
        let n = unsent.len() as u64;
        oc.in_flight.sub(n);
        oc.buf_exhaust.add(n);
        let cells = &self.shared.workers[self.worker];
        cells.in_flight.sub(n);
        cells.buf_exhaust.add(n);
        for p in unsent {
            self.pool.release(p.buf);
        }
    }

    /// Gives up the buffer pool and the send slots without freeing them: the kernel still
    /// holds operations that point into them (see `Worker::drain`).
    pub fn keep_buffers_forever(&mut self) {
        let pool = std::mem::take(&mut self.pool);
        std::mem::forget(pool);
        let slots = std::mem::replace(&mut self.slots, SendSlots::new(0));
        std::mem::forget(slots);
    }

    /// Accounts for the completion of the send in `slot` (`result` as io_uring gives it).
    pub fn complete(&mut self, slot: u32, result: i32, ring: &mut IoUring) {
        // The slot's segments are read in place (before it is finished), not copied out.
        let s = self.slots.slot(slot);
        let segments = s.segments;
        let bytes = s.payload_bytes as u64;
        let Some(target) = s.target.clone() else {
            self.slots.finish(slot);
            return;
        };
        let n = segments as u64;
        let cells = &self.shared.workers[self.worker];
        let oc = &target.flow.per_worker[self.worker].outputs[target.index_in_rule];
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
                && matches!(
                    errno,
                    libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::EMSGSIZE
                )
            {
                self.resend_one_by_one(slot, &target, errno, ring);
                return;
            }
            oc.in_flight.sub(n);
            oc.tx_errors.add(n);
            cells.in_flight.sub(n);
            cells.tx_errors[errno_slot(errno)].add(n);
        }
        for (buf, _) in self.slots.segments(slot) {
            self.pool.release(buf);
        }
        self.slots.finish(slot);
    }

    /// The kernel refused segmentation on this socket (no checksum offload on the device, or
    /// segments larger than its MTU, which a datagram sent alone is fragmented for): stop
    /// using it there and resend the datagrams of `slot` one by one. They stay counted in
    /// flight. Every GSO send already in flight on the socket fails the same way, and each is
    /// resent here, not only the first one seen.
    #[cold]
    fn resend_one_by_one(
        &mut self,
        slot: u32,
        target: &Rc<OutputTarget>,
        errno: i32,
        ring: &mut IoUring,
    ) {
        target.socket.gso.set(false);
        if !self.gso_refused_logged {
            tracing::warn!(
                worker = self.worker,
                ifindex = target.socket.key.ifindex,
                "kernel refused UDP_SEGMENT (errno {errno}); sending one datagram per sendmsg on this interface"
            );
            self.gso_refused_logged = true;
        }
        let s = self.slots.slot(slot);
        let (segments, tos) = (s.segments, s.tos);
        let mut queue = [Pending {
            buf: 0,
            len: 0,
            tos,
        }; UDP_MAX_SEGMENTS as usize];
        for (p, (buf, len)) in queue.iter_mut().zip(self.slots.segments(slot)) {
            *p = Pending {
                buf,
                len: len as u32,
                tos,
            };
        }
        self.slots.finish(slot);
        self.send_queue(target, &queue[..segments], ring);
    }
}
