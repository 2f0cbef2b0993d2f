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

/// The pool's memory could not be had: a start-up error, never an abort.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot allocate {count} egress buffers of {size} bytes ({bytes} bytes): lower \
     [dataplane] buffer_count or buffer_size"
)]
pub struct PoolError {
    pub count: usize,
    pub size: usize,
    pub bytes: u128,
}

impl Default for BufferPool {
    /// A pool of no buffers (allocates nothing).
    fn default() -> Self {
        Self {
            mem: Box::default(),
            size: 0,
            free: Vec::new(),
            refs: Box::default(),
        }
    }
}

impl BufferPool {
    /// A pool of `count` buffers of `size` bytes. Allocates fallibly (and touches the memory
    /// once, so the packet path takes no page faults on it).
    pub fn new(count: usize, size: usize) -> Result<Self, PoolError> {
        let err = || PoolError {
            count,
            size,
            bytes: count as u128 * size as u128,
        };
        fn filled<T: Clone>(len: usize, v: T) -> Option<Vec<T>> {
            let mut out = Vec::new();
            out.try_reserve_exact(len).ok()?;
            out.resize(len, v);
            Some(out)
        }
        let bytes = count.checked_mul(size).ok_or_else(err)?;
        let mem = filled(bytes, 0u8).ok_or_else(err)?;
        let refs = filled(count, 0u16).ok_or_else(err)?;
        let mut free = Vec::new();
        free.try_reserve_exact(count).map_err(|_| err())?;
        free.extend((0..count as BufId).rev());
        Ok(Self {
            mem: mem.into_boxed_slice(),
            size,
            free,
            refs: refs.into_boxed_slice(),
        })
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
        let mut p = BufferPool::new(2, 64).unwrap();
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
        let mut p = BufferPool::new(3, 16).unwrap();
        let ids: Vec<_> = (0..3).map(|_| p.alloc(1).unwrap()).collect();
        for &id in &ids {
            p.buf_mut(id).fill(id as u8 + 1);
        }
        for &id in &ids {
            assert!(p.buf_mut(id).iter().all(|&b| b == id as u8 + 1));
        }
    }

    #[test]
    fn an_impossible_pool_is_an_error_not_an_abort() {
        let e = BufferPool::new(usize::MAX / 2, 65507).unwrap_err();
        assert!(e.to_string().contains("buffer_count"), "{e}");
        let e = BufferPool::new(1 << 40, 65507).unwrap_err();
        assert_eq!(e.bytes, (1u128 << 40) * 65507);
    }

    #[test]
    fn reuses_the_most_recently_freed_buffer() {
        let mut p = BufferPool::new(4, 16).unwrap();
        let a = p.alloc(1).unwrap();
        p.release(a);
        assert_eq!(p.alloc(1), Some(a));
    }
}
