//! The datagrams a worker has queued per output during one pass, kept in one flat store.
//!
//! A queue per output sized for a whole batch cost `outputs × batch` entries however few
//! outputs a pass touched: at 100,000 rules that was 150 MiB per worker, allocated (and its
//! pages zeroed) again at every rule change. Here each output has only a head, a tail and a
//! length (12 bytes), and the queued datagrams live in one store chained by index. The store
//! can never need more entries than there are shares of pool buffers (`buffers × largest
//! fan-out`), so it is sized to that when a table is adopted and never grows while
//! forwarding. Everything is emptied at once by [`PendingQueues::clear`] after a flush.

use super::send::Pending;

/// No entry: the end of a chain, or an empty queue's head.
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Queue {
    head: u32,
    tail: u32,
    len: u32,
}

const EMPTY: Queue = Queue {
    head: NONE,
    tail: NONE,
    len: 0,
};

#[derive(Debug, Clone, Copy)]
struct Entry {
    datagram: Pending,
    next: u32,
}

/// Why a datagram was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The output already holds its most datagrams per pass.
    QueueFull,
    /// The store is full (cannot happen with the sizing [`PendingQueues::resize`] is given).
    StoreFull,
}

/// Per-output FIFO queues over one store. The outputs with something queued are listed in
/// the order they were first queued to, which is the order a flush sends them in.
#[derive(Debug, Default)]
pub struct PendingQueues {
    queues: Vec<Queue>,
    entries: Vec<Entry>,
    active: Vec<u32>,
    per_output_limit: u32,
}

impl PendingQueues {
    /// Empty queues for `outputs` outputs, each holding at most `per_output_limit` datagrams,
    /// over a store of `store` entries. Keeps the allocations it already has where they are
    /// large enough. Call only when nothing is queued.
    pub fn resize(&mut self, outputs: usize, per_output_limit: usize, store: usize) {
        debug_assert!(self.active.is_empty());
        self.queues.clear();
        self.queues.resize(outputs, EMPTY);
        self.queues.shrink_to(outputs);
        self.entries.clear();
        self.entries.reserve_exact(store);
        self.entries.shrink_to(store);
        self.active.clear();
        self.active.reserve_exact(outputs.min(store));
        self.active.shrink_to(outputs.min(store));
        self.per_output_limit = u32::try_from(per_output_limit).unwrap_or(u32::MAX);
    }

    /// Appends `datagram` to output `output`'s queue.
    #[inline]
    pub fn push(&mut self, output: usize, datagram: Pending) -> Result<(), Refused> {
        let queue = self.queues[output];
        if queue.len >= self.per_output_limit {
            return Err(Refused::QueueFull);
        }
        if self.entries.len() == self.entries.capacity() {
            return Err(Refused::StoreFull);
        }
        let at = self.entries.len() as u32;
        self.entries.push(Entry {
            datagram,
            next: NONE,
        });
        let queue = &mut self.queues[output];
        if queue.len == 0 {
            queue.head = at;
            // `active` has room for every output with a queue: at most one per entry.
            self.active.push(output as u32);
        } else {
            self.entries[queue.tail as usize].next = at;
        }
        queue.tail = at;
        queue.len += 1;
        Ok(())
    }

    /// How many outputs have something queued.
    #[inline]
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// The `nth` output with something queued, in first-queued order.
    #[inline]
    pub fn active(&self, nth: usize) -> usize {
        self.active[nth] as usize
    }

    /// Copies output `output`'s queue, oldest first, into `into` (cleared first).
    #[inline]
    pub fn copy_queue(&self, output: usize, into: &mut Vec<Pending>) {
        into.clear();
        let mut at = self.queues[output].head;
        while at != NONE {
            let entry = &self.entries[at as usize];
            into.push(entry.datagram);
            at = entry.next;
        }
    }

    /// Empties every queue (after they were all sent).
    #[inline]
    pub fn clear(&mut self) {
        for &output in &self.active {
            self.queues[output as usize] = EMPTY;
        }
        self.active.clear();
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(buf: u32) -> Pending {
        Pending {
            buf,
            len: 100 + buf,
            tos: 0,
        }
    }

    fn queued(q: &PendingQueues, output: usize) -> Vec<u32> {
        let mut v = Vec::new();
        q.copy_queue(output, &mut v);
        v.iter().map(|p| p.buf).collect()
    }

    #[test]
    fn queues_keep_their_order_and_outputs_their_first_queued_order() {
        let mut q = PendingQueues::default();
        q.resize(4, 8, 16);
        for (output, buf) in [(2, 1), (0, 2), (2, 3), (3, 4), (0, 5), (2, 6)] {
            q.push(output, datagram(buf)).unwrap();
        }
        let active: Vec<usize> = (0..q.active_len()).map(|i| q.active(i)).collect();
        assert_eq!(active, [2, 0, 3]);
        assert_eq!(queued(&q, 2), [1, 3, 6]);
        assert_eq!(queued(&q, 0), [2, 5]);
        assert_eq!(queued(&q, 3), [4]);
        assert_eq!(queued(&q, 1), Vec::<u32>::new());
        let mut v = Vec::new();
        q.copy_queue(2, &mut v);
        assert_eq!(v[1].len, 103);
    }

    #[test]
    fn clear_empties_every_queue_and_they_fill_again() {
        let mut q = PendingQueues::default();
        q.resize(3, 8, 4);
        q.push(1, datagram(1)).unwrap();
        q.push(2, datagram(2)).unwrap();
        q.clear();
        assert_eq!(q.active_len(), 0);
        assert!(queued(&q, 1).is_empty() && queued(&q, 2).is_empty());
        for buf in 0..4 {
            q.push(1, datagram(buf)).unwrap();
        }
        assert_eq!(queued(&q, 1), [0, 1, 2, 3]);
        assert_eq!(q.active_len(), 1);
    }

    #[test]
    fn a_full_queue_or_store_refuses_and_the_store_never_grows() {
        let mut q = PendingQueues::default();
        q.resize(2, 2, 3);
        let capacity = q.entries.capacity();
        q.push(0, datagram(0)).unwrap();
        q.push(0, datagram(1)).unwrap();
        assert_eq!(q.push(0, datagram(2)), Err(Refused::QueueFull));
        q.push(1, datagram(3)).unwrap();
        assert_eq!(capacity, 3);
        assert_eq!(q.push(1, datagram(4)), Err(Refused::StoreFull));
        assert_eq!(q.entries.capacity(), capacity);
        assert_eq!(queued(&q, 0), [0, 1]);
    }

    #[test]
    fn resize_keeps_nothing_queued_and_releases_what_is_no_longer_needed() {
        let mut q = PendingQueues::default();
        q.resize(100_000, 128, 4096);
        q.push(99_999, datagram(7)).unwrap();
        q.clear();
        q.resize(10, 128, 64);
        assert!(q.queues.capacity() < 1000, "{}", q.queues.capacity());
        assert!(q.entries.capacity() < 1000, "{}", q.entries.capacity());
        assert_eq!(q.active_len(), 0);
        q.push(9, datagram(1)).unwrap();
        assert_eq!(queued(&q, 9), [1]);
    }
}
