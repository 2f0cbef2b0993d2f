//! The stats report: read from the live counters (`crate::counters`) off the packet path,
//! as the JSON contract (`report`) and its text renderings (`render` for people, `prometheus`
//! for Prometheus).

pub mod collect;
pub mod prometheus;
pub mod render;
pub mod report;
