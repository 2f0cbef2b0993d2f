//! The `PACKET_MMAP` receive ring (TPACKET_V2) of one packet socket.
//!
//! The kernel writes frames into fixed-size slots and flips each slot's status word to
//! `TP_STATUS_USER`; we read the frame in place and hand the slot back by writing
//! `TP_STATUS_KERNEL`. No system call per frame: at high rate the worker only reads memory.
//!
//! Why V2 and not V3: V3 hands over whole blocks, which the kernel retires only when full or
//! after a timeout of at least a millisecond, and that would be added latency at low rates.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{TPACKET2_HDRLEN, TP_STATUS_KERNEL, TP_STATUS_TS_SOFTWARE, TP_STATUS_USER};

use super::limits::VNET_HDR_LEN;
use super::sys::{self, Mapping};
use crate::wire;

/// The frame was longer than the slot; the whole frame is also queued on the socket.
pub use libc::TP_STATUS_COPY;

// The checksum and VLAN bits of `tp_status` (linux/if_packet.h). The libc crate has them only
// in its unfinished `linux_uapi` module, not at its root, in the version we build with.
/// The checksum is not filled in yet (`CHECKSUM_PARTIAL`, e.g. locally generated or GRO).
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
/// `tp_vlan_tci` holds a tag the kernel stripped from the frame.
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
/// The checksum was verified (`CHECKSUM_UNNECESSARY`).
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;

/// What a slot's `tp_status` says of its frame's checksum.
#[inline]
pub fn checksum_hint(status: u32) -> wire::ChecksumHint {
    if status & TP_STATUS_CSUMNOTREADY != 0 {
        wire::ChecksumHint::Partial
    } else if status & TP_STATUS_CSUM_VALID != 0 {
        wire::ChecksumHint::Verified
    } else {
        wire::ChecksumHint::Unverified
    }
}

/// The tag the kernel stripped, if `tp_status` says there was one (`TP_STATUS_VLAN_VALID`; a
/// `tp_vlan_tci` of 0 without the bit means "no tag", with it a priority-only tag).
#[inline]
fn vlan_tci(status: u32, tp_vlan_tci: u16) -> Option<u16> {
    (status & TP_STATUS_VLAN_VALID != 0).then_some(tp_vlan_tci)
}

/// Bytes in a slot before the Ethernet header: header, address, alignment and the vnet header.
const SLOT_OVERHEAD: usize = 96;
const BLOCK_TARGET: usize = 64 * 1024;
const PAGE: usize = 4096;

/// Offsets in `struct tpacket2_hdr`.
mod field {
    pub const STATUS: usize = 0;
    pub const LEN: usize = 4;
    pub const SNAPLEN: usize = 8;
    pub const MAC: usize = 12;
    pub const SEC: usize = 16;
    pub const NSEC: usize = 20;
    pub const VLAN_TCI: usize = 24;
}

/// Geometry of a ring, derived from the wanted frame count and the largest frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub frame_size: usize,
    pub frames_per_block: usize,
    pub block_size: usize,
    pub block_nr: usize,
}

impl Geometry {
    /// A ring of at least `frames` slots, each holding an Ethernet frame of `max_frame` bytes.
    pub fn new(frames: usize, max_frame: usize) -> Self {
        let frame_size = (SLOT_OVERHEAD + max_frame)
            .next_multiple_of(16)
            .max(TPACKET2_HDRLEN);
        let block_size = BLOCK_TARGET.max(frame_size).next_multiple_of(PAGE);
        let frames_per_block = block_size / frame_size;
        let block_nr = frames.div_ceil(frames_per_block).max(1);
        Self {
            frame_size,
            frames_per_block,
            block_size,
            block_nr,
        }
    }

    pub fn frame_nr(&self) -> usize {
        self.frames_per_block * self.block_nr
    }

    fn offset(&self, index: usize) -> usize {
        (index / self.frames_per_block) * self.block_size
            + (index % self.frames_per_block) * self.frame_size
    }
}

/// What the kernel says about one received frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    pub status: u32,
    /// Length of the frame on the wire.
    pub len: u32,
    /// VLAN tag (TCI) the kernel stripped, if any.
    pub vlan_tci: Option<u16>,
    /// The skb's receive timestamp (ns since the Unix epoch), the value the fast path's
    /// program reads for the same frame; `None` when the skb had none
    /// (`TP_STATUS_TS_SOFTWARE` clear: the ring then holds the time of the tap's copy, which
    /// the program never sees). See `crate::rules::Handover`.
    pub stamp: Option<u64>,
}

/// A mapped receive ring and our position in it.
#[derive(Debug)]
pub struct RxRing {
    map: Mapping,
    geometry: Geometry,
    head: usize,
}

impl RxRing {
    /// Configures `PACKET_RX_RING` on `fd` and maps it.
    pub fn setup(fd: RawFd, geometry: Geometry) -> io::Result<Self> {
        let req = libc::tpacket_req {
            tp_block_size: geometry.block_size as u32,
            tp_block_nr: geometry.block_nr as u32,
            tp_frame_size: geometry.frame_size as u32,
            tp_frame_nr: geometry.frame_nr() as u32,
        };
        sys::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let map = Mapping::ring(fd, geometry.block_size * geometry.block_nr)?;
        Ok(Self {
            map,
            geometry,
            head: 0,
        })
    }

    fn status_word(&self, index: usize) -> &AtomicU32 {
        let offset = self.geometry.offset(index) + field::STATUS;
        debug_assert!(offset + 4 <= self.map.len());
        // SAFETY: the offset is inside the mapping (offset() < block_nr * block_size) and
        // 4-aligned (slots are 16-aligned); the status word is shared with the kernel, which
        // is why it is accessed atomically.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(offset).cast()) }
    }

    fn read_u32(&self, slot: usize, field: usize) -> u32 {
        // SAFETY: inside the slot, which the kernel does not write while it is ours.
        unsafe { self.map.as_ptr().add(slot + field).cast::<u32>().read() }
    }

    fn read_u16(&self, slot: usize, field: usize) -> u16 {
        // SAFETY: as `read_u32`.
        unsafe { self.map.as_ptr().add(slot + field).cast::<u16>().read() }
    }

    /// The frame at the head of the ring, if the kernel has handed it to us: its info and the
    /// bytes from the vnet header through the end of the captured frame. Returns `Err(info)`
    /// for a slot whose offsets are inconsistent; release it like any other.
    #[inline]
    pub fn peek(&self) -> Option<Result<(FrameInfo, &[u8]), FrameInfo>> {
        let status = self.status_word(self.head).load(Ordering::Acquire);
        if status & TP_STATUS_USER == 0 {
            return None;
        }
        let slot = self.geometry.offset(self.head);
        let info = FrameInfo {
            status,
            len: self.read_u32(slot, field::LEN),
            vlan_tci: vlan_tci(status, self.read_u16(slot, field::VLAN_TCI)),
            stamp: (status & TP_STATUS_TS_SOFTWARE != 0).then(|| {
                u64::from(self.read_u32(slot, field::SEC)) * 1_000_000_000
                    + u64::from(self.read_u32(slot, field::NSEC))
            }),
        };
        let snaplen = self.read_u32(slot, field::SNAPLEN) as usize;
        let mac = self.read_u16(slot, field::MAC) as usize;
        if mac < VNET_HDR_LEN || mac + snaplen > self.geometry.frame_size {
            return Some(Err(info));
        }
        let start = slot + mac - VNET_HDR_LEN;
        // SAFETY: [start, start + VNET_HDR_LEN + snaplen) lies inside this slot (checked above),
        // and the kernel does not write a slot while its status is TP_STATUS_USER.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(start), VNET_HDR_LEN + snaplen)
        };
        Some(Ok((info, bytes)))
    }

    /// Hands the head slot back to the kernel and advances.
    #[inline]
    pub fn release(&mut self) {
        self.status_word(self.head)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.head += 1;
        if self.head == self.geometry.frame_nr() {
            self.head = 0;
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_word_says_the_checksum_state_and_a_stripped_tag() {
        use wire::ChecksumHint;
        assert_eq!(checksum_hint(0x1), ChecksumHint::Unverified);
        assert_eq!(
            checksum_hint(0x1 | TP_STATUS_CSUM_VALID),
            ChecksumHint::Verified
        );
        let both = 0x1 | TP_STATUS_CSUMNOTREADY | TP_STATUS_VLAN_VALID;
        assert_eq!(checksum_hint(both), ChecksumHint::Partial);
        assert_eq!(vlan_tci(TP_STATUS_VLAN_VALID, 0xa064), Some(0xa064));
        assert_eq!(vlan_tci(0, 0xa064), None);
    }

    #[test]
    fn geometry_fits_standard_and_jumbo_frames() {
        let g = Geometry::new(4096, 1518);
        assert_eq!(g.frame_size, 1616);
        assert!(g.frame_nr() >= 4096);
        assert_eq!(g.block_size % PAGE, 0);
        assert!(g.frames_per_block * g.frame_size <= g.block_size);
        let j = Geometry::new(1024, 9018);
        assert!(j.frame_size >= 9018 + SLOT_OVERHEAD);
        assert!(j.frames_per_block >= 1);
        assert!(j.frame_nr() >= 1024);
    }

    #[test]
    fn slot_offsets_never_cross_blocks() {
        let g = Geometry::new(100, 9018);
        for i in 0..g.frame_nr() {
            let off = g.offset(i);
            let block = off / g.block_size;
            assert_eq!((off + g.frame_size - 1) / g.block_size, block, "slot {i}");
        }
    }
}
