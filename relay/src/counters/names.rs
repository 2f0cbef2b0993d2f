//! Names that both the counters and the stats report index by: send errnos and perf counters.

/// Send errors we name in the stats; anything else is counted as `other`. The names come from
/// the one errno table, [`crate::sys::errno_name`].
pub const TX_ERRNOS: [(i32, &str); 13] = [
    named(libc::ENOBUFS),
    named(libc::EAGAIN),
    named(libc::ENETUNREACH),
    named(libc::EHOSTUNREACH),
    named(libc::ENETDOWN),
    named(libc::ECONNREFUSED),
    named(libc::EPERM),
    named(libc::EACCES),
    named(libc::EMSGSIZE),
    named(libc::EINVAL),
    named(libc::EIO),
    named(libc::ENODEV),
    // Sends cancelled at shutdown because their output could not drain.
    named(libc::ECANCELED),
];

/// `(errno, name)`; a compile-time error for an errno the table does not name.
const fn named(errno: i32) -> (i32, &'static str) {
    match crate::sys::errno_name(errno) {
        Some(name) => (errno, name),
        None => panic!("every errno of TX_ERRNOS has a name in crate::sys::errno_name"),
    }
}

/// Slot of errors not in [`TX_ERRNOS`].
pub const TX_ERRNO_OTHER: usize = TX_ERRNOS.len();

/// Index of `errno` in the per-errno counters.
#[inline]
pub fn errno_slot(errno: i32) -> usize {
    TX_ERRNOS
        .iter()
        .position(|(e, _)| *e == errno)
        .unwrap_or(TX_ERRNO_OTHER)
}

/// perf-event counters of a worker thread: the contract names them, so they are defined there.
pub use crate::stats::report::{PERF_COUNT, PERF_NAMES};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_slots_are_stable_and_other_catches_the_rest() {
        assert_eq!(TX_ERRNOS[errno_slot(libc::ENOBUFS)].1, "ENOBUFS");
        assert_eq!(errno_slot(libc::ENOTSOCK), TX_ERRNO_OTHER);
    }
}
