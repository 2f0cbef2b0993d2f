//! `trafficgen`: a paced UDP/multicast sender and a receiver that accounts for every packet.
//!
//! The main parts:
//! * [`record`]: the JSON records (`mcr.trafficgen.send|recv|sweep`), a contract the analyzer
//!   reads with these same types.
//!
//! See the crate README for usage, the probe header format and the record fields.

pub mod record;
