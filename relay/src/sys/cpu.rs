//! CPU affinity: which CPUs this process may run on, and pinning a thread to one.

use std::io;
use std::mem::size_of;

use super::cvt;

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: u32) -> io::Result<()> {
    if cpu as usize >= CPU_SET_CAPACITY {
        // libc's CPU_SET would panic on an index beyond the set.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain old data; CPU_SET writes within it (index checked above).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        cvt(libc::sched_setaffinity(
            0,
            size_of::<libc::cpu_set_t>(),
            &set,
        ))
        .map(drop)
    }
}

/// CPUs a `cpu_set_t` can name.
pub const CPU_SET_CAPACITY: usize = 8 * size_of::<libc::cpu_set_t>();

/// The CPUs this process may run on (its affinity mask), in increasing order.
pub fn allowed_cpus() -> io::Result<Vec<u32>> {
    // SAFETY: cpu_set_t is plain old data; sched_getaffinity writes at most its size, and
    // CPU_ISSET reads within it for indices below CPU_SET_CAPACITY.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        cvt(libc::sched_getaffinity(
            0,
            size_of::<libc::cpu_set_t>(),
            &mut set,
        ))?;
        Ok((0..CPU_SET_CAPACITY)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .map(|c| c as u32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_may_run_somewhere_and_a_cpu_beyond_the_set_is_refused() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let e = pin_current_thread(CPU_SET_CAPACITY as u32).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
