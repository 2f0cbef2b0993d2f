//! Every `unsafe` call of the crate: socket options socket2 lacks, `sendmmsg`/`recvmmsg` with
//! control messages and timer slack. The rest of the crate is safe. The helpers it shares with
//! the relay (`cvt`, `setsockopt`, errno names) are the relay's (`relay::sys`).
//!
//! The batch types own their `mmsghdr`/`iovec`/control arrays and the buffers those point into;
//! the pointers are rebuilt from owned storage right before each call, so a moved batch never
//! hands the kernel a stale pointer.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The checked `libc` calls shared with the relay (its feature `sys`).
use relay::sys::{cvt, setsockopt};

/// Sets an integer socket option.
pub fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt(socket.as_raw_fd(), level, name, &value)
}

/// Reads an integer socket option.
pub fn get_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// `IP_MULTICAST_IF` by interface index (socket2 only takes an address).
pub fn set_multicast_if_index(socket: &impl AsRawFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: ip_mreqn is plain old data; all-zero is a valid value.
    let mut mreqn: libc::ip_mreqn = unsafe { zeroed() };
    mreqn.imr_ifindex = ifindex as libc::c_int;
    setsockopt(
        socket.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        &mreqn,
    )
}

/// Interface index of `name`, or the OS error (ENODEV) if there is no such interface.
pub fn if_index(name: &str) -> io::Result<u32> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: cname is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// `CLOCK_REALTIME` in nanoseconds since the Unix epoch (the probe's transmit timestamp clock;
/// `SystemTime::now` is a vDSO `clock_gettime(CLOCK_REALTIME)`, no syscall).
#[inline]
pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sets this thread's timer slack to 1 ns so sleeps of the pacer end when asked (the default
/// 50 us slack would add to every sleep). Best effort.
pub fn set_min_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long value and no pointers.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Set by SIGINT/SIGTERM once [`install_stop_handler`] ran.
static STOP_REQUESTED: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

/// Makes SIGINT and SIGTERM set a flag (see [`stop_requested`]) instead of killing the process,
/// so a run interrupted by hand still sends its end markers and prints its summary. With
/// signal-hook, as in the relay: its handler only stores to the flag (async-signal-safe).
pub fn install_stop_handler() {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&STOP_REQUESTED)).expect(
            "SIGINT and SIGTERM may be handled (only SIGKILL, SIGSTOP and the like may not)",
        );
    }
}

/// Whether SIGINT/SIGTERM arrived since [`install_stop_handler`].
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::Relaxed)
}

/// Space for one `UDP_SEGMENT` control message (a u16), aligned for `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct GsoCmsg {
    bytes: [u8; 32],
}

/// A reusable batch of outgoing messages for `sendmmsg` on a connected socket.
///
/// Message `i` covers `segments[i]` datagrams of `datagram_len` bytes laid out back to back in
/// one buffer; with more than one segment it carries a `UDP_SEGMENT` cmsg so the kernel splits it
/// into that many datagrams.
pub struct SendBatch {
    datagram_len: usize,
    max_segments: usize,
    buffers: Vec<u8>,
    segments: Vec<usize>,
    iovecs: Vec<libc::iovec>,
    cmsgs: Vec<GsoCmsg>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside iovecs/headers only ever point into this struct's own
// vectors and are rebuilt before each use; nothing is shared between threads.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// A batch of up to `max_messages` messages of up to `max_segments` datagrams each.
    pub fn new(datagram_len: usize, max_messages: usize, max_segments: usize) -> SendBatch {
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid.
        let (iovec, header) = unsafe { (zeroed::<libc::iovec>(), zeroed::<libc::mmsghdr>()) };
        SendBatch {
            datagram_len,
            max_segments,
            buffers: vec![0u8; datagram_len * max_segments * max_messages],
            segments: vec![0; max_messages],
            iovecs: vec![iovec; max_messages],
            cmsgs: vec![GsoCmsg { bytes: [0; 32] }; max_messages],
            headers: vec![header; max_messages],
        }
    }

    pub fn max_messages(&self) -> usize {
        self.headers.len()
    }

    pub fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// Changes the segments per message (used when GSO is switched off at run time). Must not
    /// exceed the value the batch was created with.
    pub fn set_max_segments(&mut self, max_segments: usize) {
        assert!(
            max_segments >= 1
                && max_segments * self.max_messages() * self.datagram_len <= self.buffers.len()
        );
        self.max_segments = max_segments;
    }

    /// The buffer of datagram `index` of message `message`, to fill before [`Self::send`].
    pub fn datagram_mut(&mut self, message: usize, index: usize) -> &mut [u8] {
        let start = (message * self.max_segments + index) * self.datagram_len;
        &mut self.buffers[start..start + self.datagram_len]
    }

    /// Every datagram buffer, for filling constant bytes once.
    pub fn all_buffers_mut(&mut self) -> &mut [u8] {
        &mut self.buffers
    }

    /// Sets how many datagrams message `message` carries (1..=max_segments).
    pub fn set_segments(&mut self, message: usize, segments: usize) {
        debug_assert!((1..=self.max_segments).contains(&segments));
        self.segments[message] = segments;
    }

    /// Sends messages `first..first + count` with one `sendmmsg`. Returns how many messages the
    /// kernel accepted (each entirely: a UDP message is never partially sent), or the error of
    /// the first message if it accepted none.
    pub fn send(&mut self, socket: &impl AsRawFd, first: usize, count: usize) -> io::Result<usize> {
        for m in first..first + count {
            let segments = self.segments[m];
            let start = m * self.max_segments * self.datagram_len;
            self.iovecs[m] = libc::iovec {
                iov_base: self.buffers[start..].as_mut_ptr().cast(),
                iov_len: segments * self.datagram_len,
            };
            let header = &mut self.headers[m].msg_hdr;
            header.msg_name = std::ptr::null_mut();
            header.msg_namelen = 0;
            header.msg_iov = &mut self.iovecs[m];
            header.msg_iovlen = 1;
            header.msg_flags = 0;
            if segments > 1 {
                let cmsg_space = {
                    // SAFETY: CMSG_SPACE is a pure size computation.
                    unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) as usize }
                };
                header.msg_control = self.cmsgs[m].bytes.as_mut_ptr().cast();
                header.msg_controllen = cmsg_space;
                // SAFETY: msg_control points to 32 aligned bytes, enough for one cmsg holding a
                // u16 (CMSG_SPACE(2) = 24 on 64-bit Linux), and msg_controllen says so.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(header);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<u16>(),
                        self.datagram_len as u16,
                    );
                }
            } else {
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
            }
        }
        // SAFETY: headers[first..first+count] point into self's own live buffers set up above.
        let sent = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                self.headers[first..].as_mut_ptr(),
                count as libc::c_uint,
                0,
            )
        };
        cvt(sent).map(|n| n as usize)
    }

    /// Datagrams message `message` carries.
    pub fn segments(&self, message: usize) -> usize {
        self.segments[message]
    }
}

/// What the kernel told us about one received datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// Payload bytes received.
    pub len: usize,
    /// Whether the datagram was longer than the buffer (MSG_TRUNC).
    pub truncated: bool,
    /// Kernel receive time (SO_TIMESTAMPNS), ns since the epoch, if the cmsg was present.
    pub rx_timestamp_ns: Option<u64>,
    /// Cumulative socket drop counter (SO_RXQ_OVFL), if the cmsg was present.
    pub socket_drops: Option<u32>,
}

/// Control-message space per received datagram: a timespec and a u32, with headers.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct RecvCmsg {
    bytes: [u8; 64],
}

/// A reusable batch of receive buffers for `recvmmsg`.
pub struct RecvBatch {
    buffer_len: usize,
    buffers: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    cmsgs: Vec<RecvCmsg>,
    headers: Vec<libc::mmsghdr>,
    meta: Vec<RecvMeta>,
}

// SAFETY: as for SendBatch, the pointers only reference owned storage, rebuilt before each use.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(buffer_len: usize, messages: usize) -> RecvBatch {
        // SAFETY: plain old data; all-zero is valid.
        let (iovec, header) = unsafe { (zeroed::<libc::iovec>(), zeroed::<libc::mmsghdr>()) };
        RecvBatch {
            buffer_len,
            buffers: vec![0u8; buffer_len * messages],
            iovecs: vec![iovec; messages],
            cmsgs: vec![RecvCmsg { bytes: [0; 64] }; messages],
            headers: vec![header; messages],
            meta: vec![RecvMeta::default(); messages],
        }
    }

    /// Receives up to a batch with `recvmmsg(MSG_WAITFORONE)`: blocks (up to the socket's
    /// receive timeout) for the first datagram, then takes whatever else is queued. Returns the
    /// number received; `Ok(0)` on timeout or interruption.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        for i in 0..self.headers.len() {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i * self.buffer_len..].as_mut_ptr().cast(),
                iov_len: self.buffer_len,
            };
            let header = &mut self.headers[i];
            header.msg_len = 0;
            header.msg_hdr.msg_name = std::ptr::null_mut();
            header.msg_hdr.msg_namelen = 0;
            header.msg_hdr.msg_iov = &mut self.iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = self.cmsgs[i].bytes.as_mut_ptr().cast();
            header.msg_hdr.msg_controllen = self.cmsgs[i].bytes.len();
            header.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points into self's own live buffers, set up above.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let n = match cvt(n) {
            Ok(n) => n as usize,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) => {
                return Ok(0)
            }
            Err(e) => return Err(e),
        };
        for i in 0..n {
            let header = &mut self.headers[i];
            let mut meta = RecvMeta {
                len: (header.msg_len as usize).min(self.buffer_len),
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                rx_timestamp_ns: None,
                socket_drops: None,
            };
            // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG_* macros walk
            // within msg_controllen, and each payload is read unaligned with its kernel size.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&header.msg_hdr);
                while !cmsg.is_null() {
                    let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
                    if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
                        let ts: libc::timespec =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        meta.rx_timestamp_ns =
                            Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                    } else if level == libc::SOL_SOCKET && kind == libc::SO_RXQ_OVFL {
                        meta.socket_drops = Some(std::ptr::read_unaligned(
                            libc::CMSG_DATA(cmsg).cast::<u32>(),
                        ));
                    }
                    cmsg = libc::CMSG_NXTHDR(&header.msg_hdr, cmsg);
                }
            }
            self.meta[i] = meta;
        }
        Ok(n)
    }

    /// Datagram `i` of the last [`Self::recv`] and what the kernel said about it.
    pub fn datagram(&self, i: usize) -> (&[u8], RecvMeta) {
        let meta = self.meta[i];
        let start = i * self.buffer_len;
        (&self.buffers[start..start + meta.len], meta)
    }
}

/// Name of an errno value for reports ("ENOBUFS", from the relay's one table), or "errno N"
/// for one not listed.
pub fn errno_name(errno: i32) -> String {
    relay::sys::errno_name(errno).map_or_else(|| format!("errno {errno}"), str::to_string)
}
