//! Watches the kernel's link events (rtnetlink) so that rules follow their interfaces.
//!
//! A rule names interfaces, the data plane uses their indices. When an interface is deleted
//! and created again (a VLAN interface re-made, a link reset by a management tool), sockets
//! bound to the old one stay dead, the fast path's program is detached and the group
//! memberships are gone, whether the new interface has a new index or the same one (`ip link
//! add NAME index N`). The index alone cannot tell, so the watcher follows identity by the
//! events themselves: it collects the indices of `RTM_DELLINK` messages and hands them,
//! with every burst of events, to `Controller::refresh_interfaces`, which re-resolves the
//! names, re-opens what the deleted interfaces held and says which rules wait for an
//! interface while it is gone.

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::Socket;

use crate::control::Controller;

/// A link deleted: `libc::RTM_DELLINK` as the `u16` message type it is on the wire.
const RTM_DELLINK: u16 = libc::RTM_DELLINK;
/// `struct nlmsghdr` and `struct ifinfomsg`: 16 bytes each; the index is at 4..8 of the
/// latter.
const NLMSG_HDRLEN: usize = 16;
const IFINFO_INDEX: std::ops::Range<usize> = NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8;

/// What a burst of link events said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinkEvents {
    /// Indices of the interfaces deleted (some may exist again, created anew).
    pub deleted: BTreeSet<u32>,
    /// Events were lost (`ENOBUFS`): any interface may have been deleted and created again.
    pub lost: bool,
}

impl LinkEvents {
    /// Whether the interface with index `ifindex` may have been deleted.
    pub fn may_have_deleted(&self, ifindex: u32) -> bool {
        self.lost || self.deleted.contains(&ifindex)
    }

    /// Adds the `RTM_DELLINK` messages of one netlink datagram.
    fn add_messages(&mut self, mut buf: &[u8]) {
        while buf.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            let kind = u16::from_ne_bytes([buf[4], buf[5]]);
            if len < NLMSG_HDRLEN || len > buf.len() {
                return;
            }
            if kind == RTM_DELLINK {
                if let Some(b) = buf.get(IFINFO_INDEX) {
                    let index = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                    if let Ok(i) = u32::try_from(index) {
                        self.deleted.insert(i);
                    }
                }
            }
            // Messages are 4-byte aligned (NLMSG_ALIGN).
            let next = (len + 3) & !3;
            buf = buf.get(next..).unwrap_or_default();
        }
    }
}
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
        let sock = crate::sys::netlink::link_events(POLL_STOP)?;
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

/// One `recv` from the socket into `events` (`flags` 0 waits up to [`POLL_STOP`]). Returns
/// whether anything arrived, or the error that ends the watch.
fn receive(sock: &Socket, buf: &mut [u8], flags: i32, events: &mut LinkEvents) -> io::Result<bool> {
    let e = match crate::sys::netlink::recv(sock, buf, flags) {
        Ok(n) => {
            events.add_messages(&buf[..n]);
            return Ok(true);
        }
        Err(e) => e,
    };
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
        // Events were lost: any interface may have been deleted and created again.
        _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
            events.lost = true;
            Ok(true)
        }
        _ => Err(e),
    }
}

fn watch(sock: &Socket, stop: &AtomicBool, controller: &Mutex<Controller>) {
    let mut buf = vec![0u8; 16 << 10];
    let mut events = LinkEvents::default();
    while !stop.load(Ordering::Relaxed) {
        match receive(sock, &mut buf, 0, &mut events) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!("link events: {e}; rules no longer follow interface changes");
                return;
            }
        }
        // A burst of events (an interface deleted, created, brought up) is handled once:
        // wait a little, then take what else arrived.
        std::thread::sleep(Duration::from_millis(50));
        loop {
            match receive(sock, &mut buf, libc::MSG_DONTWAIT, &mut events) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::error!("link events: {e}; rules no longer follow interface changes");
                    return;
                }
            }
        }
        if let Ok(mut c) = controller.lock() {
            c.refresh_interfaces(&std::mem::take(&mut events));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message of `kind` about interface `index`, as the kernel writes it (the
    /// attributes after the ifinfomsg are left out; their length is in the header).
    fn message(kind: u16, index: i32, attrs: usize) -> Vec<u8> {
        let len = NLMSG_HDRLEN + 16 + attrs;
        let mut m = vec![0u8; (len + 3) & !3];
        m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[IFINFO_INDEX].copy_from_slice(&index.to_ne_bytes());
        m
    }

    #[test]
    fn deleted_links_are_collected_from_a_burst_of_messages() {
        let mut buf = message(16, 7, 3); // RTM_NEWLINK, unaligned length
        buf.extend(message(RTM_DELLINK, 9, 0));
        buf.extend(message(16, 9, 40));
        buf.extend(message(RTM_DELLINK, 12, 5));
        let mut e = LinkEvents::default();
        e.add_messages(&buf);
        assert_eq!(e.deleted, BTreeSet::from([9, 12]));
        assert!(e.may_have_deleted(9) && !e.may_have_deleted(7));
        // Truncated or nonsense input ends the walk without a panic.
        e.add_messages(&buf[..buf.len() - 3]);
        e.add_messages(&[0xff; 40]);
        e.add_messages(&[]);
        let lost = LinkEvents {
            lost: true,
            ..Default::default()
        };
        assert!(lost.may_have_deleted(7));
    }
}
