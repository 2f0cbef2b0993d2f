//! Watches the kernel's link events (rtnetlink) so that rules follow their interfaces.
//!
//! A rule names interfaces, the data plane uses their indices. When an interface is deleted
//! and created again (a VLAN interface re-made, a link reset by a management tool), it comes
//! back with a new index, and sockets bound to the old one stay dead. So on every link event
//! the controller re-resolves the rule table's interface names and, when an index changed,
//! publishes a table with the new ones (see `Controller::refresh_interfaces`); the workers
//! then open sockets on the new interfaces, as for any rule change.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::control::Controller;

/// Kernel ABI (`linux/rtnetlink.h`): the multicast group of link events.
const RTMGRP_LINK: u32 = 1;
/// How often the watcher looks at its stop flag while no event arrives.
const POLL_STOP: Duration = Duration::from_millis(200);

/// The watcher thread; stopped and joined on drop.
pub struct LinkWatch {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl LinkWatch {
    /// Subscribes to link events and starts the thread that acts on them.
    pub fn start(controller: Arc<Mutex<Controller>>) -> io::Result<Self> {
        let sock = subscribe()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("mcr-linkwatch".into())
            .spawn(move || watch(&sock, &thread_stop, &controller))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for LinkWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A `NETLINK_ROUTE` socket in the link-event group, with a receive timeout of [`POLL_STOP`].
fn subscribe() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain old data; all-zero is valid before the fields we set.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = RTMGRP_LINK;
    // SAFETY: bind with a sockaddr_nl of its own size.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    socket2::SockRef::from(&sock).set_read_timeout(Some(POLL_STOP))?;
    Ok(sock)
}

fn watch(sock: &OwnedFd, stop: &AtomicBool, controller: &Mutex<Controller>) {
    // Messages are not parsed: any link event (new, changed, deleted) is a reason to look
    // again, and looking is cheap and off the packet path.
    let mut buf = vec![0u8; 16 << 10];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: recv into our buffer of its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                // ENOBUFS: events were lost; looking again covers them.
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                _ => {
                    tracing::error!("link events: {e}; rules no longer follow interface changes");
                    return;
                }
            }
        }
        // A burst of events (an interface and its addresses) is handled once.
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(mut c) = controller.lock() {
            c.refresh_interfaces();
        }
    }
}
