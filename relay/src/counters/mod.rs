//! Live counters of the data plane: the cells the packet path writes.
//!
//! Nothing here knows about the stats report or its rendering (`crate::stats`), which read
//! these cells off the packet path, nor about the rule table: a [`CounterTable`] holds each
//! flow's cells by its rule's position and is published beside the rule table.
//!
//! Every cell has exactly one writer: the worker thread that owns it. The writer updates it
//! with a relaxed load and store (no locked instruction, no contention); readers (the stats
//! collector) load it relaxed at any time. Cells of different workers sit on different cache
//! lines so workers never write to a line another worker writes.
//!
//! One datagram moves several counters (`rx`, then `matched`, then an output's `in_flight`,
//! later `tx_sent`), so a reader that loads them one by one while the worker runs can see a
//! datagram counted at one stage and not yet at the next, and the conservation laws fail by
//! a few. Readers that need them to hold use [`WorkerCells::read_consistent`]: a sequence
//! lock that the worker closes around each pass of its loop (two stores per pass, not per
//! datagram) and that a waiting reader may ask the worker to hold open for a moment.

mod cell;
mod flow;
mod monitor;
mod names;
mod table;
mod worker;

pub use cell::{CacheLine, Counter};
pub use flow::{FlowCells, FlowShape, FlowWorkerCells, OutputCells};
pub use monitor::MonitorCells;
pub use names::{errno_slot, PERF_COUNT, PERF_NAMES, TX_ERRNOS, TX_ERRNO_OTHER};
pub use table::CounterTable;
pub use worker::WorkerCells;
