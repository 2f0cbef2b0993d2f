//! Counters of the data plane and the reports made from them.

pub mod collect;
pub mod counters;
pub mod render;
pub mod report;
