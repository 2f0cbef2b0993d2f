//! The worker's egress buffer pool: a fixed number of fixed-size buffers.
//!
//! A matched datagram's payload is copied once into a buffer, which every output of the rule
//! then sends from (reference counted). The pool never grows: when it is empty, the datagram
//! is dropped and counted as `buf_exhaust`. Free buffers are a stack, so under light load the
//! same few buffers are reused and stay in cache.

/// Index of a buffer in the pool.
pub type BufId = u32;

#[derive(Debug)]
pub struct BufferPool {
    mem: Box<[u8]>,
    size: usize,
    free: Vec<BufId>,
    refs: Box<[u16]>,
}

impl BufferPool {
    pub fn new(count: usize, size: usize) -> Self {
        Self {
            mem: vec![0u8; count * size].into_boxed_slice(),
            size,
            free: (0..count as BufId).rev().collect(),
            refs: vec![0u16; count].into_boxed_slice(),
        }
    }

    /// Takes a buffer for `refs` users, or `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&mut self, refs: u16) -> Option<BufId> {
        let id = self.free.pop()?;
        self.refs[id as usize] = refs;
        Some(id)
    }

    /// Drops one reference; the buffer is free again when the last one goes.
    #[inline]
    pub fn release(&mut self, id: BufId) {
        let r = &mut self.refs[id as usize];
        debug_assert!(*r > 0, "buffer {id} released more often than taken");
        *r = r.saturating_sub(1);
        if *r == 0 {
            self.free.push(id);
        }
    }

    /// The whole buffer, for filling.
    #[inline]
    pub fn buf_mut(&mut self, id: BufId) -> &mut [u8] {
        let start = id as usize * self.size;
        &mut self.mem[start..start + self.size]
    }

    /// Address of a buffer's first byte, for an iovec. Stable: the pool never reallocates.
    #[inline]
    pub fn as_ptr(&self, id: BufId) -> *const u8 {
        self.mem[id as usize * self.size..].as_ptr()
    }

    pub fn buffer_size(&self) -> usize {
        self.size
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.refs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausts_and_recovers() {
        let mut p = BufferPool::new(2, 64);
        let a = p.alloc(1).unwrap();
        let b = p.alloc(2).unwrap();
        assert!(p.alloc(1).is_none());
        p.release(a);
        assert_eq!(p.available(), 1);
        p.release(b);
        assert_eq!(p.available(), 1, "b still has one user");
        p.release(b);
        assert_eq!(p.available(), 2);
    }

    #[test]
    fn buffers_do_not_overlap() {
        let mut p = BufferPool::new(3, 16);
        let ids: Vec<_> = (0..3).map(|_| p.alloc(1).unwrap()).collect();
        for &id in &ids {
            p.buf_mut(id).fill(id as u8 + 1);
        }
        for &id in &ids {
            assert!(p.buf_mut(id).iter().all(|&b| b == id as u8 + 1));
        }
    }

    #[test]
    fn reuses_the_most_recently_freed_buffer() {
        let mut p = BufferPool::new(4, 16);
        let a = p.alloc(1).unwrap();
        p.release(a);
        assert_eq!(p.alloc(1), Some(a));
    }
}
