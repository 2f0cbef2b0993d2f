//! How much memory a `[dataplane]` configuration asks for, and whether this machine has it.
//!
//! Every worker owns its egress buffer pool, one packet ring per input interface, its send
//! slots and its io_uring, all allocated (and, for the pool and rings, touched or locked by the
//! kernel) at start. `mcrctl config check` and `mcrd` at start compare the sum with the
//! memory the kernel says can be had without swapping (`MemAvailable` in `/proc/meminfo`),
//! and refuse a configuration that does not fit, naming the keys that cost the most, instead
//! of letting the allocation abort the daemon. Not counted: socket buffers (`socket_sndbuf`,
//! the packet sockets' receive buffers), which the kernel fills only under load and caps by
//! its own limits.

use std::fmt;

use super::egress::SendSlot;
use super::ring::Geometry;
use crate::config::DataplaneConfig;

/// Bytes of one io_uring submission / completion queue entry.
const SQE_BYTES: u64 = 64;
const CQE_BYTES: u64 = 16;
/// Frame size assumed for an input whose MTU cannot be read (Ethernet + one VLAN tag).
const DEFAULT_MAX_FRAME: usize = 1500 + 18;

/// One kind of allocation, per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub what: &'static str,
    /// How the size follows from the config, with the values (`buffer_count 4096 x
    /// buffer_size 9216`).
    pub formula: String,
    pub per_worker: u64,
}

/// The data plane's memory for a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub workers: u64,
    pub parts: Vec<Part>,
}

impl MemoryEstimate {
    pub fn per_worker(&self) -> u64 {
        self.parts.iter().map(|p| p.per_worker).sum()
    }

    pub fn total(&self) -> u64 {
        self.per_worker().saturating_mul(self.workers)
    }
}

/// The configuration asks for more memory than the machine has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "[dataplane] needs {} of memory ({} per worker x {} workers: {}), more than the {} this \
     machine has available (MemAvailable in /proc/meminfo); lower the largest: dataplane.{}",
    human(estimate.total()),
    human(estimate.per_worker()),
    estimate.workers,
    parts(estimate),
    human(*available),
    largest_keys(estimate)
)]
pub struct MemoryError {
    pub estimate: MemoryEstimate,
    pub available: u64,
}

/// The memory `dp` asks for with inputs whose largest frames are `input_frames` (bytes, one
/// entry per input interface).
pub fn estimate(dp: &DataplaneConfig, input_frames: &[usize]) -> MemoryEstimate {
    let count = u64::from(dp.buffer_count);
    let size = u64::from(dp.buffer_size);
    // Each buffer also has a reference count (u16) and a free-list entry (u32).
    let pool = count.saturating_mul(size + 2 + 4);
    let rings: u64 = input_frames
        .iter()
        .map(|&f| {
            let g = Geometry::new(dp.ring_frames as usize, f);
            (g.block_size as u64).saturating_mul(g.block_nr as u64)
        })
        .sum();
    let slots = u64::from(dp.max_in_flight_sends);
    let entries = u64::from(dp.uring_entries);
    // As the worker sizes its completion queue.
    let cq = (entries * 2).max(slots + 256);
    let frame_sizes = match input_frames {
        [] => "no input interface".to_string(),
        [f, ..] if dp.ring_frame_size != 0 => format!("ring_frame_size {f}"),
        _ => "frame size from each interface's MTU".to_string(),
    };
    MemoryEstimate {
        workers: u64::from(dp.workers),
        parts: vec![
            Part {
                what: "egress buffers",
                formula: format!("buffer_count {count} x buffer_size {size}"),
                per_worker: pool,
            },
            Part {
                what: "packet rings",
                formula: format!(
                    "ring_frames {} x {frame_sizes}, x {} input interfaces",
                    dp.ring_frames,
                    input_frames.len()
                ),
                per_worker: rings,
            },
            Part {
                what: "send slots",
                formula: format!(
                    "max_in_flight_sends {slots} x {} bytes",
                    std::mem::size_of::<SendSlot>()
                ),
                per_worker: slots.saturating_mul(std::mem::size_of::<SendSlot>() as u64),
            },
            Part {
                what: "io_uring",
                formula: format!("uring_entries {entries}"),
                per_worker: entries * SQE_BYTES + cq * CQE_BYTES,
            },
        ],
    }
}

/// The largest frame of each input interface: `ring_frame_size` when set, else the
/// interface's MTU plus the Ethernet header and a VLAN tag (as the ring is sized).
pub fn input_frames(dp: &DataplaneConfig, inputs: &[String]) -> Vec<usize> {
    inputs
        .iter()
        .map(|name| {
            if dp.ring_frame_size != 0 {
                dp.ring_frame_size as usize
            } else {
                crate::netif::mtu(name).map_or(DEFAULT_MAX_FRAME, |m| m as usize + 18)
            }
        })
        .collect()
}

/// `MemAvailable` from `/proc/meminfo`, bytes; `None` when the kernel does not say.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses an estimate larger than `available` bytes.
pub fn check(
    estimate: MemoryEstimate,
    available: Option<u64>,
) -> Result<MemoryEstimate, MemoryError> {
    match available {
        Some(available) if estimate.total() > available => Err(MemoryError {
            estimate,
            available,
        }),
        _ => Ok(estimate),
    }
}

/// Checks `dp` for rules with these input interfaces against this machine.
pub fn check_config(
    dp: &DataplaneConfig,
    inputs: &[String],
) -> Result<MemoryEstimate, MemoryError> {
    check(estimate(dp, &input_frames(dp, inputs)), available())
}

fn parts(e: &MemoryEstimate) -> String {
    let mut out = String::new();
    for (i, p) in e.parts.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&format!(
            "{} {} ({})",
            p.what,
            human(p.per_worker),
            p.formula
        ));
    }
    out
}

fn largest_keys(e: &MemoryEstimate) -> &'static str {
    let largest = e.parts.iter().max_by_key(|p| p.per_worker);
    match largest.map(|p| p.what) {
        Some("egress buffers") => "buffer_count or dataplane.buffer_size",
        Some("packet rings") => "ring_frames or dataplane.ring_frame_size",
        Some("send slots") => "max_in_flight_sends",
        Some("io_uring") => "uring_entries",
        _ => "workers",
    }
}

/// Bytes in binary units, e.g. `36.0 MiB`.
pub fn human(bytes: u64) -> String {
    struct H(u64);
    impl fmt::Display for H {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
            let mut v = self.0 as f64;
            let mut u = 0;
            while v >= 1024.0 && u < UNITS.len() - 1 {
                v /= 1024.0;
                u += 1;
            }
            if u == 0 {
                write!(f, "{} bytes", self.0)
            } else {
                write!(f, "{v:.1} {}", UNITS[u])
            }
        }
    }
    H(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_and_add_up() {
        let dp = DataplaneConfig::default();
        let e = estimate(&dp, &[1518, 1518]);
        let pool = e.parts.iter().find(|p| p.what == "egress buffers").unwrap();
        assert_eq!(pool.per_worker, 4096 * (9216 + 6));
        let rings = e.parts.iter().find(|p| p.what == "packet rings").unwrap();
        let g = Geometry::new(4096, 1518);
        assert_eq!(rings.per_worker, 2 * (g.block_size * g.block_nr) as u64);
        assert_eq!(e.total(), e.per_worker());
        assert!(check(e, Some(1 << 30)).is_ok());
    }

    #[test]
    fn the_issue_s_68_gb_pool_is_refused_naming_its_keys() {
        let dp = DataplaneConfig {
            buffer_count: 1 << 20,
            buffer_size: 65507,
            workers: 2,
            ..DataplaneConfig::default()
        };
        let e = check(estimate(&dp, &[1518]), Some(16 << 30)).unwrap_err();
        let msg = e.to_string();
        assert!(e.estimate.total() > 2 * 68_000_000_000, "{msg}");
        for want in [
            "buffer_count 1048576 x buffer_size 65507",
            "lower the largest: dataplane.buffer_count or dataplane.buffer_size",
            "x 2 workers",
            "16.0 GiB",
        ] {
            assert!(msg.contains(want), "{want}: {msg}");
        }
    }

    #[test]
    fn rings_can_be_the_largest_part() {
        let dp = DataplaneConfig {
            ring_frames: 1 << 20,
            ring_frame_size: 65536,
            ..DataplaneConfig::default()
        };
        let e = check(estimate(&dp, &[65536]), Some(1 << 30)).unwrap_err();
        assert!(e.to_string().contains("dataplane.ring_frames"), "{e}");
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24683584 kB\nMemFree:  1 kB\nMemAvailable:   22483444 kB\n";
        assert_eq!(parse_mem_available(text), Some(22_483_444 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert!(check(estimate(&DataplaneConfig::default(), &[]), None).is_ok());
    }
}
