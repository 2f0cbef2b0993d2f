//! Matching and copying, for one worker: each datagram is looked up in the rule table, its
//! payload copied once into a pooled buffer, and queued for every output of its rule on the
//! worker's [`Sender`] (`egress::send`), which turns the queues into sends after each batch.
//!
//! Kept apart from the rings (see `worker`) so that a frame borrowed from a ring can be handed
//! to it. Nothing here allocates, formats, locks or logs per datagram.

use std::sync::Arc;

use io_uring::IoUring;

use super::egress::{Pending, Sender};
use super::limits::VNET_HDR_LEN;
use super::{Shared, Snapshot};
use crate::config::DataplaneConfig;
use crate::counters::WorkerCells;
use crate::rules::MatchKey;
use crate::wire::{self, ChecksumHint, Filtered, Malformed, Parsed, Segments, VnetHeader};

/// Per-worker state for matching, apart from the ingress rings so that a frame borrowed from
/// a ring can be handed to it.
pub struct Forwarder {
    pub id: usize,
    pub shared: Arc<Shared>,
    /// The rule table matched against and its counters.
    pub snapshot: Arc<Snapshot>,
    pub sender: Sender,
}

impl Forwarder {
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        dp: &DataplaneConfig,
        gso_supported: bool,
    ) -> Result<Self, super::pool::PoolError> {
        Ok(Forwarder {
            id,
            snapshot: Arc::new(Snapshot::default()),
            sender: Sender::new(id, Arc::clone(&shared), dp, gso_supported)?,
            shared,
        })
    }

    #[inline]
    pub fn cells(&self) -> &WorkerCells {
        &self.shared.workers[self.id]
    }

    /// Adopts a new snapshot. Called between passes, when nothing is pending.
    pub fn adopt(&mut self, snapshot: Arc<Snapshot>) {
        self.sender.adopt(&snapshot);
        self.snapshot = snapshot;
    }

    /// Sends what the last batch queued.
    pub fn flush(&mut self, ring: &mut IoUring) {
        self.sender.flush(&self.snapshot, ring);
    }

    /// Handles one frame (`bytes` starts with the vnet header). `hint` is what `tp_status`
    /// said about the checksum; frames from the copy path have no status and pass
    /// `Unverified` (the parser also honours the vnet header's checksum flags). `stamp` is
    /// its receive timestamp (`RxRing`'s `FrameInfo::stamp`). Returns datagrams taken.
    #[inline]
    pub fn frame(
        &mut self,
        ifindex: u32,
        bytes: &[u8],
        vlan_tci: Option<u16>,
        hint: ChecksumHint,
        stamp: Option<u64>,
    ) -> usize {
        let Some((vnet_bytes, frame)) = bytes.split_at_checked(VNET_HDR_LEN) else {
            return self.malformed(Malformed::Truncated);
        };
        let vnet = VnetHeader::parse(vnet_bytes);
        let max_payload = self.sender.buffer_size();
        match wire::parse_frame(frame, vnet.as_ref(), vlan_tci, hint, max_payload) {
            Parsed::Filtered(kind) => {
                let cells = self.cells();
                cells.rx.add(1);
                cells.filtered[kind.index()].add(1);
                1
            }
            Parsed::Malformed(kind) => self.malformed(kind),
            parsed => self.dispatch(ifindex, parsed.datagrams(), stamp),
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
    ///
    /// A frame of a flow changing path that its receive timestamp gives to the kernel
    /// (`Handover`) is left to it: counted in `handed_over` only, not in `rx`, since the
    /// program counts it in its own `rx` and `matched`.
    #[inline]
    fn dispatch(&mut self, ifindex: u32, datagrams: Segments<'_>, stamp: Option<u64>) -> usize {
        let n = datagrams.len();
        let cells = &self.shared.workers[self.id];
        // The segments of a super-frame share the first's addresses, ports and TTL.
        let Some(first) = datagrams.clone().next() else {
            return 0;
        };
        let key = MatchKey {
            ifindex,
            group: first.dst,
            port: first.dst_port,
        };
        let Some((position, rule)) = self.snapshot.table.lookup(&key, first.src) else {
            cells.rx.add(n as u64);
            cells.no_match.add(n as u64);
            return n;
        };
        if let Some(h) = &rule.handover {
            if !h.workers_forward(stamp) {
                cells.handed_over.add(n as u64);
                return n;
            }
        }
        let flow = &self.snapshot.counters.flow(position).per_worker[self.id];
        if rule.spec.min_ttl.is_some_and(|min| first.ttl < min) {
            cells.rx.add(n as u64);
            cells.filtered[Filtered::BelowMinTtl.index()].add(n as u64);
            flow.below_min_ttl.add(n as u64);
            return n;
        }
        cells.rx.add(n as u64);
        cells.matched.add(n as u64);
        flow.packets.add(n as u64);
        let outputs = rule.outputs.len();
        // The frame's payload bytes, added to the flow's and the worker's counts once.
        let mut payload_bytes = 0u64;
        for d in datagrams {
            payload_bytes += d.payload.len() as u64;
            if let Some(monitor) = &flow.monitor {
                monitor.observe(d.payload);
            }
            let Some(buf) = self.sender.copy_in(d.payload, outputs) else {
                for (i, _) in rule.outputs.iter().enumerate() {
                    flow.outputs[i].matched.add(1);
                    flow.outputs[i].buf_exhaust.add(1);
                }
                cells.buf_exhaust.add(outputs as u64);
                continue;
            };
            let len = d.payload.len() as u32;
            for (i, out) in rule.outputs.iter().enumerate() {
                let oc = &flow.outputs[i];
                oc.matched.add(1);
                // An output's own DSCP replaces the received one; ECN is always kept.
                let tos = out.dscp.map_or(d.tos, |dscp| dscp << 2 | d.tos & 0b11);
                if !self.sender.enqueue(out.id, Pending { buf, len, tos }) {
                    oc.buf_exhaust.add(1);
                    cells.buf_exhaust.add(1);
                    continue;
                }
                oc.in_flight.add(1);
                cells.in_flight.add(1);
            }
        }
        flow.bytes.add(payload_bytes);
        cells.matched_bytes.add(payload_bytes);
        n
    }
}
