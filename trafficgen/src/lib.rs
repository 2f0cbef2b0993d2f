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
//! ```no_run
//! use std::time::Duration;
//! use trafficgen::send::{self, SendLimit, SendOptions};
//! let options = SendOptions::new("239.1.1.1:5000".parse()?, 10_000, SendLimit::Count(50_000));
//! let record = send::run(&options, Duration::from_millis(100), |_| {})?;
//! println!("{} packets at {:.0} pps", record.packets_sent, record.achieved_pps);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See the crate README for usage, the probe header format and the record fields.

#![deny(unsafe_code)]

pub mod accounting;
pub mod cli;
pub mod histogram;
pub mod mpegts;
pub mod pacing;
pub mod perf;
pub mod probe;
pub mod record;
pub mod recv;
pub mod rtp;
pub mod send;
pub mod summary;
pub mod sweep;
pub mod sys;
pub mod units;
