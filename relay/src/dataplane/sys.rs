//! Thin, checked wrappers over the socket calls the data plane needs that neither `std` nor
//! `socket2` offer: `AF_PACKET` options, the packet ring, `UDP_SEGMENT`, CPU pinning, and the
//! BPF calls of the counting packet filter (`filter_count`).
//!
//! All `unsafe` of the data plane's setup lives here; each call says why it is sound.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::rules::bpf_counting::{EbpfInsn, TakenCounts};

use crate::sys::{cvt, libbpf_rc};
/// The one checked `setsockopt` and `getsockopt` (in `crate::sys`, shared with trafficgen).
pub use crate::sys::{getsockopt, setsockopt};

/// `getsockopt` of an option whose value is a `u32`.
pub fn getsockopt_u32(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<u32> {
    let mut value: u32 = 0;
    getsockopt(fd, level, name, &mut value)?;
    Ok(value)
}

/// Sends `signal` to this process (as `kill -SIGNAL $$` would): a worker that fails stops
/// the daemon through the same path as an operator's SIGTERM.
pub fn signal_self(signal: libc::c_int) {
    // SAFETY: kill with our own pid and a valid signal number has no memory effects.
    unsafe { libc::kill(libc::getpid(), signal) };
}

/// Opens an `AF_PACKET`/`SOCK_RAW` socket that receives nothing until [`bind_packet`].
///
/// Protocol 0 at creation means no frames are queued before the ring and filter are in place.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success we own the returned descriptor.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a freshly opened descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds a packet socket to `ifindex`, all protocols.
pub fn bind_packet(fd: RawFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll of the length we pass.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The interface index a packet socket is bound to (`getsockname`): -1 once its device was
/// deleted.
pub fn bound_ifindex(fd: RawFd) -> io::Result<i32> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is a writable sockaddr_ll of `len` bytes.
    cvt(unsafe { libc::getsockname(fd, (&mut sll as *mut libc::sockaddr_ll).cast(), &mut len) })?;
    Ok(sll.sll_ifindex)
}

/// Attaches (or atomically replaces) a classic BPF filter.
pub fn attach_filter(fd: RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // The kernel copies the program during the call; `prog` outlives it.
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// Reads and resets the socket's packet counters (`struct tpacket_stats` for TPACKET_V1/V2).
pub fn packet_statistics(fd: RawFd) -> io::Result<libc::tpacket_stats> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    getsockopt(fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut stats)?;
    Ok(stats)
}

/// A shared, read-write mapping of a packet ring. Unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; the worker that owns it is the only user-space accessor.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps the ring configured on `fd` with `PACKET_RX_RING`.
    pub fn ring(fd: RawFd, len: usize) -> io::Result<Self> {
        // SAFETY: mapping a packet socket's ring; the kernel validates len against the ring.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        let ptr = if ptr == libc::MAP_FAILED {
            // MAP_LOCKED needs RLIMIT_MEMLOCK headroom an unprivileged service may lack.
            // SAFETY: as above, without locking.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            p
        } else {
            ptr
        };
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing uses the ring after drop.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Non-blocking `recv` into `buf`; `Ok(None)` when nothing is queued. Returns the frame's full
/// length (which may exceed `buf` when truncated).
pub fn recv_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(n as usize))
}

/// Drains a socket's error queue (`IP_RECVERR`), returning how many entries were read.
pub fn drain_error_queue(fd: RawFd, limit: usize) -> usize {
    let mut buf = [0u8; 256];
    let mut control = [0u8; 256];
    let mut n = 0;
    while n < limit {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain old data; zero is a valid initial value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        // SAFETY: all pointers in `msg` refer to live local buffers of the stated sizes.
        let rc = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if rc < 0 {
            break;
        }
        n += 1;
    }
    n
}

/// CPU affinity (written once, in `crate::sys::cpu`).
pub use crate::sys::cpu::{allowed_cpus, pin_current_thread, CPU_SET_CAPACITY};

/// Puts the calling thread under `SCHED_FIFO` at `priority` (1-99).
pub fn set_realtime_priority(priority: u32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority as libc::c_int,
    };
    // SAFETY: pid 0 is the calling thread; `param` outlives the call.
    cvt(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) }).map(drop)
}

/// Does this kernel accept `UDP_SEGMENT` on a UDP socket? Probed once at start: kernels before
/// 4.18 refuse the option, and the relay then sends one datagram per `sendmsg`.
pub fn probe_udp_gso() -> bool {
    let Ok(sock) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None) else {
        return false;
    };
    let seg: libc::c_int = 1400;
    setsockopt(sock.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, &seg).is_ok()
}

/// Creates a per-CPU array of one entry of `value_size` bytes (key 0); `EPERM` where BPF
/// may not be loaded.
pub fn percpu_array(name: &CStr, value_size: u32) -> io::Result<OwnedFd> {
    // SAFETY: the name is NUL-terminated; null options are allowed.
    let fd = libbpf_rc(unsafe {
        libbpf_sys::bpf_map_create(
            libbpf_sys::BPF_MAP_TYPE_PERCPU_ARRAY,
            name.as_ptr(),
            4,
            value_size,
            1,
            std::ptr::null(),
        )
    })?;
    // SAFETY: `fd` was just returned to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The CPUs a per-CPU map holds a value for.
pub fn possible_cpus() -> io::Result<usize> {
    // SAFETY: plain query of a libbpf global.
    libbpf_rc(unsafe { libbpf_sys::libbpf_num_possible_cpus() }).map(|n| n as usize)
}

/// Reads entry 0 of the counting filter's per-CPU map into `values`, one per possible CPU.
pub fn read_taken(map: &OwnedFd, values: &mut [TakenCounts]) -> io::Result<()> {
    if values.len() != possible_cpus()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "one value per possible CPU",
        ));
    }
    let key = 0u32;
    // SAFETY: the map's key is a u32 and its value a `TakenCounts` (it was created so by
    // `CountingFilter::new`); `values` holds one for each possible CPU, as a per-CPU lookup
    // writes.
    libbpf_rc(unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast(),
            values.as_mut_ptr().cast(),
        )
    })
    .map(drop)
}

/// Loads `code` as a socket filter. A refusal other than `EPERM` is loaded again with the
/// verifier's log, whose last lines come with the error.
pub fn load_socket_filter(code: &[EbpfInsn]) -> Result<OwnedFd, (io::Error, String)> {
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        ..Default::default()
    };
    let attempt = |opts: &mut libbpf_sys::bpf_prog_load_opts| {
        // SAFETY: `EbpfInsn` has `struct bpf_insn`'s layout (8 bytes: code, registers,
        // offset, immediate); the strings are NUL-terminated; `opts` and any log buffer it
        // names outlive the call.
        libbpf_rc(unsafe {
            libbpf_sys::bpf_prog_load(
                libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER,
                c"mcr_filter".as_ptr(),
                c"GPL".as_ptr(),
                code.as_ptr().cast(),
                code.len() as _,
                opts,
            )
        })
    };
    let error = match attempt(&mut opts) {
        // SAFETY: `fd` was just returned to us and nobody else owns it.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => e,
    };
    if error.raw_os_error() == Some(libc::EPERM) {
        return Err((error, String::new()));
    }
    let mut log = vec![0u8; 64 * 1024];
    opts.log_buf = log.as_mut_ptr().cast();
    opts.log_size = log.len() as u32;
    opts.log_level = 1;
    if let Ok(fd) = attempt(&mut opts) {
        // SAFETY: as above. (Loaded the second time: take it.)
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let text = CStr::from_bytes_until_nul(&log)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tail: Vec<&str> = text.lines().rev().take(3).collect();
    tail.reverse();
    Err((error, tail.join("; ")))
}

/// The id of the BPF program `prog` refers to.
pub fn bpf_program_id(prog: &OwnedFd) -> io::Result<u32> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes that the call fills.
    libbpf_rc(unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len)
    })?;
    Ok(info.id)
}

/// One test run (`BPF_PROG_TEST_RUN`) of socket filter `prog` on `data` whose skb has
/// `gso_segs`: the verdict.
#[cfg(test)]
pub fn test_run_socket_filter(prog: &OwnedFd, data: &[u8], gso_segs: u32) -> io::Result<u32> {
    // `struct __sk_buff`, 192 bytes, `gso_segs` at 164: the fields a test run may set.
    let mut ctx = [0u8; 192];
    ctx[164..168].copy_from_slice(&gso_segs.to_ne_bytes());
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: data.as_ptr().cast(),
        data_size_in: data.len() as u32,
        ctx_in: ctx.as_ptr().cast(),
        ctx_size_in: ctx.len() as u32,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: the buffers outlive the call and their sizes are the ones given.
    libbpf_rc(unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) })?;
    Ok(opts.retval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_gso_probe_answers() {
        // Linux 6.x has it; the probe must not fail on this kernel.
        assert!(probe_udp_gso());
    }

    #[test]
    fn the_affinity_mask_lists_the_cpu_we_run_on() {
        let cpus = allowed_cpus().unwrap();
        // SAFETY: sched_getcpu has no preconditions.
        let now = unsafe { libc::sched_getcpu() };
        assert!(
            now >= 0 && cpus.contains(&(now as u32)),
            "{now} not in {cpus:?}"
        );
        assert!(cpus.iter().all(|&c| (c as usize) < CPU_SET_CAPACITY));
        assert!(pin_current_thread(CPU_SET_CAPACITY as u32).is_err());
    }
}
