//! The stats report: read from the live counters (`crate::counters`) off the packet path,
//! as the JSON contract (`report`) and its text renderings (`render` for people, `prometheus`
//! for Prometheus).
//!
//! Only `report` is built without the `daemon` feature: it is the contract other crates read.

#[cfg(feature = "daemon")]
pub mod collect;
#[cfg(feature = "daemon")]
pub mod prometheus;
#[cfg(feature = "daemon")]
pub mod render;
pub mod report;
