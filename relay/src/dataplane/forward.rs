//! Matching and sending, for one worker: each datagram is looked up in the rule table, its
//! payload copied once into a pooled buffer, and queued per output; after each batch the
//! queues become `sendmsg` operations (same-size runs coalesced with `UDP_SEGMENT`) on the
//! worker's io_uring. Completions update the counters and free buffers and slots.
//!
//! Kept apart from the rings (see `worker`) so that a frame borrowed from a ring can be handed
//! to it. Nothing here allocates, formats, locks or logs per datagram.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use io_uring::{opcode, types, IoUring};

use super::egress::{gso_run, EgressParams, EgressSocket, OutputTarget, SendSlots};
use super::limits::{GSO_MAX_PAYLOAD, UDP_MAX_SEGMENTS, VNET_HDR_LEN};
use super::pool::{BufId, BufferPool};
use super::uring::{push, KIND_SEND};
use super::Shared;
use crate::config::DataplaneConfig;
use crate::counters::{errno_slot, WorkerCells};
use crate::rules::{EgressKey, MatchKey, RuleTable};
use crate::wire::{self, ChecksumHint, Malformed, Parsed, Segments, VnetHeader};

/// A datagram waiting to be sent to one output.
#[derive(Debug, Clone, Copy)]
struct Pending {
    buf: BufId,
    len: u32,
    /// Type of service to send with (DSCP and ECN).
    tos: u8,
}

/// Per-worker state for matching and sending, apart from the ingress rings so that a frame
/// borrowed from a ring can be handed to it.
pub struct Forwarder {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub table: Arc<RuleTable>,
    /// By output id; `None` where the egress socket could not be opened.
    targets: Vec<Option<Rc<OutputTarget>>>,
    pub sockets: HashMap<EgressKey, Rc<EgressSocket>>,
    pool: BufferPool,
    pending: Vec<Vec<Pending>>,
    /// Output ids with something pending, in first-queued order.
    active: Vec<usize>,
    pending_capacity: usize,
    pub slots: SendSlots,
    max_gso_segments: usize,
    egress_params: EgressParams,
    /// Scratch for gathering a send's segments (no allocation per flush).
    segs: Vec<(BufId, *const u8, usize)>,
    gso_refused_logged: bool,
}

impl Forwarder {
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        dp: &DataplaneConfig,
        gso_supported: bool,
    ) -> Result<Self, super::pool::PoolError> {
        let pending_capacity = dp.batch_size as usize + UDP_MAX_SEGMENTS as usize;
        Ok(Forwarder {
            id,
            table: Arc::new(RuleTable::default()),
            shared,
            targets: Vec::new(),
            sockets: HashMap::new(),
            pool: BufferPool::new(dp.buffer_count as usize, dp.buffer_size as usize)?,
            pending: Vec::new(),
            active: Vec::new(),
            pending_capacity,
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

    #[inline]
    pub fn cells(&self) -> &WorkerCells {
        &self.shared.workers[self.id]
    }

    /// Adopts a new table: egress sockets and per-output targets. Called between passes, when
    /// nothing is pending (sends in flight keep their own targets alive).
    pub fn adopt(&mut self, table: Arc<RuleTable>) {
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

    /// Handles one frame (`bytes` starts with the vnet header). `hint` is what `tp_status`
    /// said about the checksum; frames from the copy path have no status and pass
    /// `Unverified` (the parser also honours the vnet header's checksum flags). Returns
    /// datagrams taken.
    #[inline]
    pub fn frame(
        &mut self,
        ifindex: u32,
        bytes: &[u8],
        vlan_tci: Option<u16>,
        hint: ChecksumHint,
    ) -> usize {
        let Some((vnet_bytes, frame)) = bytes.split_at_checked(VNET_HDR_LEN) else {
            return self.malformed(Malformed::Truncated);
        };
        let vnet = VnetHeader::parse(vnet_bytes);
        let max_payload = self.pool.buffer_size();
        match wire::parse_frame(frame, vnet.as_ref(), vlan_tci, hint, max_payload) {
            Parsed::Filtered(kind) => {
                let cells = self.cells();
                cells.rx.add(1);
                cells.filtered[kind.index()].add(1);
                1
            }
            Parsed::Malformed(kind) => self.malformed(kind),
            parsed => self.dispatch(ifindex, parsed.datagrams()),
        }
    }

    /// Counts one frame rejected as malformed; returns the datagrams taken (one).
    #[inline]
    pub fn malformed(&self, kind: Malformed) -> usize {
        let cells = self.cells();
        cells.rx.add(1);
        cells.malformed[kind.index()].add(1);
        1
    }

    /// Counts a frame whose whole copy the kernel could not queue (see
    /// [`wire::datagrams_in_frame`]): `bytes` is its captured head, from the vnet header on,
    /// `wire_len` its length on the wire.
    #[cold]
    pub fn overflow(&self, bytes: &[u8], wire_len: u32) {
        let (vnet_bytes, head) = bytes.split_at(VNET_HDR_LEN.min(bytes.len()));
        let vnet = VnetHeader::parse(vnet_bytes);
        let datagrams = wire::datagrams_in_frame(head, wire_len as usize, vnet.as_ref());
        let cells = self.cells();
        cells.rx_overflow_frames.add(1);
        cells.rx_overflow.add(datagrams.unwrap_or(1));
    }

    /// Matches a frame's datagrams and queues each for every output of their rule. Returns
    /// the number of datagrams.
    ///
    /// The segments of a GSO super-frame share the addresses and ports of the first, so one
    /// lookup serves them all.
    #[inline]
    fn dispatch(&mut self, ifindex: u32, datagrams: Segments<'_>) -> usize {
        let n = datagrams.len();
        let cells = &self.shared.workers[self.id];
        cells.rx.add(n as u64);
        let rule = datagrams.clone().next().and_then(|d| {
            let key = MatchKey {
                ifindex,
                group: d.dst,
                port: d.dst_port,
            };
            self.table.lookup(&key, d.src)
        });
        let Some(rule) = rule else {
            cells.no_match.add(n as u64);
            return n;
        };
        cells.matched.add(n as u64);
        let flow = &rule.counters.per_worker[self.id];
        flow.packets.add(n as u64);
        let outputs = rule.outputs.len();
        for d in datagrams {
            flow.bytes.add(d.payload.len() as u64);
            if let Some(monitor) = &flow.monitor {
                monitor.observe(d.payload);
            }
            let Some(buf) = self.pool.alloc(outputs as u16) else {
                for (i, _) in rule.outputs.iter().enumerate() {
                    flow.outputs[i].matched.add(1);
                    flow.outputs[i].buf_exhaust.add(1);
                }
                cells.buf_exhaust.add(outputs as u64);
                continue;
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
                // An output's own DSCP replaces the received one; ECN is always kept.
                let tos = out.dscp.map_or(d.tos, |dscp| dscp << 2 | d.tos & 0b11);
                queue.push(Pending {
                    buf,
                    len: len as u32,
                    tos,
                });
                oc.in_flight.add(1);
                cells.in_flight.add(1);
            }
        }
        n
    }

    /// Turns every output's pending datagrams into `sendmsg` submissions.
    pub fn flush(&mut self, ring: &mut IoUring) {
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

    /// Gives up the buffer pool and the send slots without freeing them: the kernel still
    /// holds operations that point into them (see `Worker::drain`).
    pub fn keep_buffers_forever(&mut self) {
        let pool = std::mem::take(&mut self.pool);
        std::mem::forget(pool);
        let slots = std::mem::replace(&mut self.slots, SendSlots::new(0));
        std::mem::forget(slots);
    }

    pub fn complete_send(&mut self, slot: u32, result: i32, ring: &mut IoUring) {
        // The slot's segments are read in place (before it is finished), not copied out.
        let s = self.slots.slot(slot);
        let segments = s.segments;
        let bytes = s.payload_bytes as u64;
        let Some(target) = s.target.clone() else {
            self.slots.finish(slot);
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
                && matches!(
                    errno,
                    libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::EMSGSIZE
                )
            {
                // The kernel refused segmentation on this socket (no checksum offload on the
                // device, or segments larger than its MTU, which a datagram sent alone is
                // fragmented for): stop using it there and resend these datagrams one by one.
                // They stay counted in flight. Every GSO send already in flight on the socket
                // fails the same way, and each is resent here, not only the first one seen.
                target.socket.gso.set(false);
                if !self.gso_refused_logged {
                    tracing::warn!(
                        worker = self.id,
                        ifindex = target.socket.key.ifindex,
                        "kernel refused UDP_SEGMENT (errno {errno}); sending one datagram per sendmsg on this interface"
                    );
                    self.gso_refused_logged = true;
                }
                let tos = s.tos;
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
                self.send_queue(&target, &queue[..segments], ring);
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
}
