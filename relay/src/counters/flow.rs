//! Per-flow counters: one block per worker, per output within it.

use super::cell::{CacheLine, Counter};

/// Per-output cells of one worker. `matched = tx_sent + tx_errors + buf_exhaust + in_flight`.
#[derive(Debug, Default)]
pub struct OutputCells {
    pub matched: Counter,
    pub tx_sent: Counter,
    pub tx_bytes: Counter,
    pub tx_errors: Counter,
    pub buf_exhaust: Counter,
    pub in_flight: Counter,
}

/// One worker's cells for one flow (rule).
#[derive(Debug)]
pub struct FlowWorkerCells {
    pub packets: Counter,
    pub bytes: Counter,
    pub outputs: Box<[OutputCells]>,
}

/// A flow's counters: one cache-aligned block per worker. Shared by every rule-table version
/// in which the rule is unchanged, so a flow's counts survive changes to other rules.
#[derive(Debug)]
pub struct FlowCells {
    pub per_worker: Box<[CacheLine<FlowWorkerCells>]>,
}

impl FlowCells {
    pub fn new(workers: usize, outputs: usize) -> Self {
        let per_worker = (0..workers)
            .map(|_| {
                CacheLine(FlowWorkerCells {
                    packets: Counter::default(),
                    bytes: Counter::default(),
                    outputs: (0..outputs).map(|_| OutputCells::default()).collect(),
                })
            })
            .collect();
        Self { per_worker }
    }
}
