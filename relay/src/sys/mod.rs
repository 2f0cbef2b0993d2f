//! The low-level helpers the relay and trafficgen share (feature `sys`, which `daemon`
//! includes and trafficgen's `generator` turns on): checked `libc` calls and the names of
//! errno values. Each is written once, here; the callers' own `sys` modules keep what only
//! they need.
//!
//! With the daemon: [`cpu`] (affinity), [`netif`] (interfaces by name), [`netlink`] (rtnetlink sockets),
//! [`poll`] and [`users`]. The relay's crate root denies `unsafe` everywhere else but in the
//! data plane's and the fast path's own system-call modules (see `lib.rs`).

/// Most segments in one `UDP_SEGMENT` send (`UDP_MAX_SEGMENTS`, include/linux/udp.h: 64 since
/// Linux 4.18; raised to 128 in 6.x, so 64 is safe everywhere). The config's bound for
/// `max_gso_segments` and the data plane's for a send.
pub const UDP_MAX_SEGMENTS: u32 = 64;

#[cfg(feature = "daemon")]
pub mod cpu;
#[cfg(feature = "daemon")]
pub mod netif;
#[cfg(feature = "daemon")]
pub mod netlink;
#[cfg(feature = "daemon")]
pub mod poll;
#[cfg(feature = "daemon")]
pub mod users;

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

/// A `libc` return value as an `io::Result`: negative means `errno` says what failed.
pub fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A libbpf return value as an `io::Result`: libbpf returns a negative errno, not -1.
pub fn libbpf_rc(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(rc)
    }
}

/// `setsockopt` with a plain-old-data value.
pub fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of `size_of::<T>()` bytes for the call's duration;
    // the kernel copies it and keeps no reference.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt` into a plain-old-data value the caller initialised; returns how many bytes
/// the kernel wrote (an option shorter than `T` leaves the rest as it was).
pub fn getsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut T,
) -> io::Result<usize> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points to a live, writable `T` of `len` bytes; the kernel writes at most
    // `len` bytes into it and updates `len`.
    cvt(unsafe { libc::getsockopt(fd, level, name, (value as *mut T).cast(), &mut len) })?;
    Ok(len as usize)
}

/// A `sockaddr_storage` holding the IPv4 address `addr` (port 0), as `group_req` and
/// `group_source_req` take it.
pub fn sockaddr_storage_v4(addr: std::net::Ipv4Addr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; zero is valid, and it is large and aligned
    // enough to hold a sockaddr_in, which we write through a pointer to it.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let sin = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
        (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
        (*sin).sin_addr.s_addr = u32::from(addr).to_be();
        ss
    }
}

/// `addr` (port 0) in a `sockaddr_storage`, as the multicast membership requests take it.
pub fn sockaddr_storage_of(addr: std::net::IpAddr) -> libc::sockaddr_storage {
    match addr {
        std::net::IpAddr::V4(v4) => sockaddr_storage_v4(v4),
        std::net::IpAddr::V6(v6) => sockaddr_storage_v6(v6),
    }
}

fn sockaddr_storage_v6(addr: std::net::Ipv6Addr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; zero is valid, and it is large and aligned
    // enough to hold a sockaddr_in6, which we write through a pointer to it.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let sin6 = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
        (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
        (*sin6).sin6_addr.s6_addr = addr.octets();
        ss
    }
}

/// CPU time the calling thread has used, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`): the task
/// clock where perf events are denied (Debian's kernels default to `perf_event_paranoid = 3`,
/// which denies them to an unprivileged daemon such as the packaged mcrd).
pub fn thread_cpu_time_ns() -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec the kernel writes into; the clock id is a constant.
    cvt(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) })?;
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Clock ticks per second of `/proc`'s CPU times (`sysconf(_SC_CLK_TCK)`, 100 on Linux's
/// mainstream architectures).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no pointer is passed.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// The size of a memory page in bytes (`sysconf(_SC_PAGESIZE)`).
pub fn page_size() -> u64 {
    // SAFETY: as above.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// The symbolic name of an errno value (`"ENOBUFS"`), for reports and counters keyed by it;
/// `None` for one this table does not list (callers say `"errno N"` or count it as other).
pub const fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENOBUFS => "ENOBUFS",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::ENODEV => "ENODEV",
        libc::ENXIO => "ENXIO",
        libc::ECANCELED => "ECANCELED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvt_turns_a_failed_call_into_its_errno() {
        // SAFETY: closing an fd number that is not open only fails with EBADF.
        let e = cvt(unsafe { libc::close(-1) }).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        assert_eq!(cvt(3).unwrap(), 3);
    }

    #[test]
    fn setsockopt_sets_what_the_kernel_reads_back() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &17i32).unwrap();
        assert_eq!(s.ttl().unwrap(), 17);
        let e = setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &-5i32).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn errno_names_are_the_symbols_and_unknown_ones_are_none() {
        assert_eq!(errno_name(libc::ENOBUFS), Some("ENOBUFS"));
        assert_eq!(errno_name(libc::ECANCELED), Some("ECANCELED"));
        assert_eq!(errno_name(libc::ENOTSOCK), None);
    }
}
