//! The counter table: the cells of every flow of one rule table, by the rule's position in it.
//!
//! Published beside its rule table in one snapshot (`dataplane::Snapshot`), so a worker finds
//! a matched rule's cells with the rule's index, without a lookup. A new table takes the cells
//! of the previous one for each flow its caller says is the same rule (the rule table decides
//! what that is, `rules::RuleTable::positions_in`); the rest get fresh cells. Built off the
//! packet path; immutable once published, like the cells' owners, the flows.

use std::sync::Arc;

use super::flow::{FlowCells, FlowShape};

/// Every flow's cells, by the position of its rule in the rule table published with it.
#[derive(Debug, Default)]
pub struct CounterTable {
    /// The worker count the cells are sized for.
    workers: usize,
    flows: Box<[Arc<FlowCells>]>,
}

impl CounterTable {
    /// Cells for `flows`, in order: each `(shape, carried)` takes the cells at position
    /// `carried` of `previous` (a rule unchanged keeps its counts), unless they were sized
    /// for another worker count or another shape; the others start at zero.
    pub fn carried(
        workers: usize,
        previous: &CounterTable,
        flows: impl IntoIterator<Item = (FlowShape, Option<usize>)>,
    ) -> Self {
        let same_workers = previous.workers == workers;
        let flows = flows
            .into_iter()
            .map(|(shape, carried)| {
                carried
                    .filter(|_| same_workers)
                    .and_then(|p| previous.flows.get(p))
                    .filter(|cells| cells.shape() == shape)
                    .map_or_else(|| Arc::new(FlowCells::of_shape(workers, shape)), Arc::clone)
            })
            .collect();
        CounterTable { workers, flows }
    }

    /// Fresh cells for `flows`, in order.
    pub fn fresh(workers: usize, flows: impl IntoIterator<Item = FlowShape>) -> Self {
        Self::carried(
            workers,
            &CounterTable::default(),
            flows.into_iter().map(|s| (s, None)),
        )
    }

    /// The cells of the flow of the rule at `position`. Hot path: an index, no lookup.
    ///
    /// Panics if `position` is not a rule of the table published with this one.
    #[inline]
    pub fn flow(&self, position: usize) -> &Arc<FlowCells> {
        &self.flows[position]
    }

    /// The number of flows (the rules of the table published with this one).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The worker count the cells are sized for.
    pub fn workers(&self) -> usize {
        self.workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Monitor;

    fn shape(outputs: usize) -> FlowShape {
        FlowShape {
            outputs,
            monitor: None,
        }
    }

    #[test]
    fn carried_flows_keep_their_cells_and_the_others_start_at_zero() {
        let t1 = CounterTable::fresh(2, [shape(1), shape(2)]);
        t1.flow(0).per_worker[1].packets.add(7);
        t1.flow(1).per_worker[0].packets.add(9);
        // Flow 0 moved to position 1; a new flow took position 0.
        let t2 = CounterTable::carried(2, &t1, [(shape(3), None), (shape(1), Some(0))]);
        assert!(Arc::ptr_eq(t1.flow(0), t2.flow(1)));
        assert_eq!(t2.flow(1).per_worker[1].packets.get(), 7);
        assert_eq!(t2.flow(0).per_worker[0].packets.get(), 0);
        assert_eq!(t2.flow(0).per_worker[0].outputs.len(), 3);
        assert_eq!(t2.len(), 2);
    }

    #[test]
    fn another_worker_count_or_shape_resets_the_cells() {
        let t1 = CounterTable::fresh(2, [shape(1)]);
        t1.flow(0).per_worker[0].packets.add(7);
        let more_workers = CounterTable::carried(3, &t1, [(shape(1), Some(0))]);
        assert_eq!(more_workers.flow(0).per_worker.len(), 3);
        assert_eq!(more_workers.flow(0).per_worker[0].packets.get(), 0);
        let monitored = FlowShape {
            outputs: 1,
            monitor: Some(Monitor::Rtp),
        };
        let other_shape = CounterTable::carried(2, &t1, [(monitored, Some(0))]);
        assert!(!Arc::ptr_eq(t1.flow(0), other_shape.flow(0)));
        assert!(other_shape.flow(0).per_worker[0].monitor.is_some());
        // A position past the previous table's end is a new flow, not a panic.
        let past = CounterTable::carried(2, &t1, [(shape(1), Some(5))]);
        assert_eq!(past.flow(0).per_worker[0].packets.get(), 0);
    }
}
