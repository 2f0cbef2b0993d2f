//! `trafficgen`: a paced UDP/multicast sender and a receiver that accounts for every packet.
//!
//! The main parts:
//! * [`probe`]: the 32-byte header at the start of every payload;
//! * [`accounting`], [`rtp`], [`mpegts`]: the receiver's per-stream accounting of probes, RTP
//!   streams and MPEG-TS continuity counters;
//! * [`pacing`]: the absolute send schedule;
//! * [`send`]: the batched (sendmmsg + UDP GSO) sender threads;
//! * [`record`]: the JSON records (`mcr.trafficgen.send|recv|sweep`), a contract the analyzer
//!   reads with these same types.
//!
// The example runs the generator: without its feature it is shown but not compiled.
#![cfg_attr(feature = "generator", doc = "```no_run")]
#![cfg_attr(not(feature = "generator"), doc = "```ignore")]
//! use std::time::Duration;
//! use trafficgen::send::{self, SendLimit, SendOptions};
//! let options = SendOptions::new("239.1.1.1:5000".parse()?, 10_000, SendLimit::Count(50_000));
//! let record = send::run(&options, Duration::from_millis(100), |_| {})?;
//! println!("{} packets at {:.0} pps", record.packets_sent, record.achieved_pps);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See the crate README for usage, the probe header format and the record fields.
//!
//! All but [`record`] is the default feature `generator`. Built without it
//! (`default-features = false`), the library is only the records, with serde-level
//! dependencies: the analyzer reads them that way without building the generator.

#![deny(unsafe_code)]

#[cfg(feature = "generator")]
pub mod accounting;
#[cfg(feature = "generator")]
pub mod cli;
#[cfg(feature = "generator")]
pub mod histogram;
#[cfg(feature = "generator")]
pub mod mpegts;
#[cfg(feature = "generator")]
pub mod pacing;
#[cfg(feature = "generator")]
pub mod perf;
#[cfg(feature = "generator")]
pub mod probe;
pub mod record;
#[cfg(feature = "generator")]
pub mod recv;
#[cfg(feature = "generator")]
pub mod rtp;
#[cfg(feature = "generator")]
pub mod send;
#[cfg(feature = "generator")]
pub mod summary;
#[cfg(feature = "generator")]
pub mod sweep;
#[cfg(feature = "generator")]
pub mod sys;
#[cfg(feature = "generator")]
pub mod units;
