//! Counters of the data plane and the JSON report made from them.

pub mod report;
