//! Kernel limits the data plane must respect, with where they come from.

pub use crate::sys::UDP_MAX_SEGMENTS;

/// Most UDP payload bytes in one GSO send: the IPv4 total length is 16 bits.
pub const GSO_MAX_PAYLOAD: usize = 65_535 - 20 - 8;

/// Size of `struct virtio_net_hdr`, prepended to frames with `PACKET_VNET_HDR` (its layout is
/// `wire::vnet`'s).
pub const VNET_HDR_LEN: usize = crate::wire::vnet::LEN;

/// Largest frame the copy path reads: a 64 KiB GSO/GRO super-frame plus link headers.
pub const MAX_SUPER_FRAME: usize = 65_536 + 64;
