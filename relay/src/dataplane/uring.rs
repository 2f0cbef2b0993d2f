//! The worker's io_uring: how it is built, and submitting to it without losing work.

use std::cell::RefCell;
use std::io;
use std::time::Instant;

use io_uring::{cqueue, squeue, IoUring};

use super::ratelimit::LogLimiter;

thread_local! {
    /// Submission errors of this worker thread (each worker owns its ring).
    static SUBMIT_ERRORS: RefCell<LogLimiter> = RefCell::new(LogLimiter::default());
}

/// `user_data` kinds (top byte); the low bits identify the slot or socket.
pub const KIND_SEND: u64 = 1 << 56;
pub const KIND_POLL: u64 = 2 << 56;
pub const KIND_CANCEL: u64 = 3 << 56;
pub const KIND_TIMER: u64 = 4 << 56;
pub const KIND_MASK: u64 = 0xff << 56;

pub fn build_ring(entries: u32, cq: u32) -> io::Result<IoUring> {
    // Single issuer + deferred task work: completions are processed only when this thread
    // enters the kernel, in batches (Linux 6.1+). Fall back to a plain ring on older kernels.
    // The task-run flag makes the kernel tell us (IORING_SQ_TASKRUN) when deferred work, such
    // as a send that had to wait for buffer space, is ready to complete; `submit` then enters
    // the kernel with GETEVENTS even when we have nothing new to submit.
    IoUring::<squeue::Entry, cqueue::Entry>::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(cq)
        .build(entries)
        .or_else(|_| IoUring::builder().setup_cqsize(cq).build(entries))
}

/// Queues a submission, submitting what is queued first if the queue is full. Returns false
/// only if the kernel will not take submissions at all; the caller then accounts for the
/// operation itself.
pub fn push(ring: &mut IoUring, sqe: &squeue::Entry) -> bool {
    for _ in 0..1000 {
        // SAFETY: every entry we push refers to memory that outlives the operation: send slots
        // and pool buffers never move or get freed while their slot is in flight (the slot
        // holds the buffers' references and the socket's Rc), and polls refer to sockets kept
        // open until their completion (see `closing`).
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return true;
        }
        submit(ring);
    }
    false
}

/// Whether entering the kernel would do anything: submissions are queued, or completions are
/// waiting for deferred task work.
pub fn needs_enter(ring: &mut IoUring) -> bool {
    let sq = ring.submission();
    !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
}

pub fn submit(ring: &mut IoUring) {
    match ring.submit() {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EBUSY) | Some(libc::EINTR) | Some(libc::EAGAIN)
            ) => {}
        Err(e) => {
            if let Some(n) = SUBMIT_ERRORS.with(|l| l.borrow_mut().occurred(Instant::now())) {
                tracing::error!("io_uring submit: {e} ({n} times since the last report)");
            }
        }
    }
}
