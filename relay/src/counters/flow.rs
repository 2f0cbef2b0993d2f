//! Per-flow counters: one block per worker, per output within it.

use super::cell::{CacheLine, Counter};
use super::monitor::MonitorCells;
use crate::config::{Monitor, RuleSpec};

/// Per-output cells of one worker. `matched = tx_sent + tx_errors + buf_exhaust + in_flight`.
/// Each sits on a cache line of its own (see [`FlowWorkerCells::outputs`]).
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
    /// Datagrams below the rule's `min_ttl`, not forwarded (not in `packets`).
    pub below_min_ttl: Counter,
    /// Cache-aligned: the outputs live in a heap block of their own, which the allocator may
    /// place next to another worker's; unaligned, two workers would write one cache line.
    pub outputs: Box<[CacheLine<OutputCells>]>,
    /// The stream check, when the rule asks for one (`monitor`); `None` costs one branch.
    pub monitor: Option<Box<CacheLine<MonitorCells>>>,
}

/// What a flow's cells are sized for: its outputs and its stream check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowShape {
    pub outputs: usize,
    pub monitor: Option<Monitor>,
}

impl FlowShape {
    /// The shape of the flow a rule forwards.
    pub fn of(spec: &RuleSpec) -> Self {
        FlowShape {
            outputs: spec.outputs.len(),
            monitor: spec.monitor,
        }
    }
}

/// A flow's counters: one cache-aligned block per worker. Shared by every published
/// [`super::CounterTable`] in which the rule is unchanged, so a flow's counts survive changes
/// to other rules.
#[derive(Debug)]
pub struct FlowCells {
    pub per_worker: Box<[CacheLine<FlowWorkerCells>]>,
    shape: FlowShape,
}

impl FlowCells {
    pub fn new(workers: usize, outputs: usize, monitor: Option<Monitor>) -> Self {
        let per_worker = (0..workers)
            .map(|_| {
                CacheLine(FlowWorkerCells {
                    packets: Counter::default(),
                    bytes: Counter::default(),
                    below_min_ttl: Counter::default(),
                    outputs: (0..outputs)
                        .map(|_| CacheLine(OutputCells::default()))
                        .collect(),
                    monitor: monitor.map(|kind| Box::new(CacheLine(MonitorCells::new(kind)))),
                })
            })
            .collect();
        Self {
            per_worker,
            shape: FlowShape { outputs, monitor },
        }
    }

    /// Cells sized for a flow of `shape`.
    pub fn of_shape(workers: usize, shape: FlowShape) -> Self {
        Self::new(workers, shape.outputs, shape.monitor)
    }

    pub fn shape(&self) -> FlowShape {
        self.shape
    }

    /// Starts every worker's stream check afresh (the flow comes back to the workers after
    /// the kernel checked it: they have not seen the datagrams in between).
    pub fn restart_monitors(&self) {
        for w in self.per_worker.iter() {
            if let Some(m) = &w.monitor {
                m.restart();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache lines (address / 64) that `bytes` bytes at `ptr` touch.
    fn lines<T>(ptr: *const T, bytes: usize) -> std::ops::RangeInclusive<usize> {
        let start = ptr as usize;
        start / 64..=(start + bytes - 1) / 64
    }

    #[test]
    fn no_two_workers_write_the_same_cache_line_of_a_flow() {
        for outputs in 1..=4 {
            let cells = FlowCells::new(4, outputs, None);
            let touched: Vec<Vec<usize>> = cells
                .per_worker
                .iter()
                .map(|w| {
                    let own = lines(&w.packets, 16);
                    let outs = w
                        .outputs
                        .iter()
                        .flat_map(|o| lines(&o.0, std::mem::size_of::<OutputCells>()));
                    own.chain(outs).collect()
                })
                .collect();
            for (a, la) in touched.iter().enumerate() {
                for lb in &touched[a + 1..] {
                    assert!(
                        la.iter().all(|l| !lb.contains(l)),
                        "{outputs} outputs: two workers share a cache line"
                    );
                }
            }
        }
    }
}
