//! `PACKET_FANOUT` groups: the workers' packet sockets on one interface share one group, so the
//! kernel spreads that interface's flows over them (by hash: each flow stays on one worker,
//! in order).
//!
//! A group id is a 16-bit number shared by every socket on the host; two daemons whose sockets
//! use the same id on the same interface would split each other's traffic. So the first of our
//! sockets on an interface asks the kernel for a fresh id (`PACKET_FANOUT_FLAG_UNIQUEID`), and
//! the others join that id while at least one of ours is still in the group (the kernel frees
//! a group with its last socket, after which the id may be handed to someone else).

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use super::sys;

/// Kernel ABI (`linux/if_packet.h`): ask for a fresh group id.
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

/// Our fan-out groups, by interface index: the group's id and how many of our sockets are in it.
#[derive(Debug, Default)]
pub struct FanoutGroups {
    groups: Mutex<HashMap<u32, (u16, usize)>>,
}

/// One socket's place in a group; leaving is recorded when it is dropped (with its socket).
#[derive(Debug)]
pub struct Membership {
    groups: Arc<FanoutGroups>,
    ifindex: u32,
}

impl FanoutGroups {
    /// Puts packet socket `fd`, bound to `ifindex`, into our group for that interface, creating
    /// the group if none of ours exists.
    pub fn join(self: &Arc<Self>, fd: RawFd, ifindex: u32) -> io::Result<Membership> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let hash = libc::PACKET_FANOUT_HASH;
        match groups.get_mut(&ifindex) {
            Some((id, members)) if *members > 0 => {
                sys::setsockopt(
                    fd,
                    libc::SOL_PACKET,
                    libc::PACKET_FANOUT,
                    &(u32::from(*id) | hash << 16),
                )?;
                *members += 1;
            }
            _ => {
                let arg = (hash | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
                sys::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)?;
                // The kernel reports the id it chose in the low 16 bits.
                let id = sys::getsockopt_u32(fd, libc::SOL_PACKET, libc::PACKET_FANOUT)? as u16;
                groups.insert(ifindex, (id, 1));
            }
        }
        Ok(Membership {
            groups: Arc::clone(self),
            ifindex,
        })
    }

    /// The group id in use on `ifindex`, if one of our sockets is in it.
    pub fn id(&self, ifindex: u32) -> Option<u16> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.get(&ifindex).map(|(id, _)| *id)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut groups = self.groups.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, members)) = groups.get_mut(&self.ifindex) {
            *members -= 1;
            if *members == 0 {
                groups.remove(&self.ifindex);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sockets_of_one_interface_share_a_kernel_chosen_group_and_leave_it() {
        // Needs CAP_NET_RAW for packet sockets (the tests run as root).
        let (Ok(a), Ok(b)) = (sys::packet_socket(), sys::packet_socket()) else {
            assert_ne!(
                std::env::var("MCR_E2E_REQUIRED").as_deref(),
                Ok("1"),
                "no packet sockets"
            );
            return;
        };
        let lo = crate::netif::index("lo").unwrap();
        sys::bind_packet(a.as_raw_fd(), lo).unwrap();
        sys::bind_packet(b.as_raw_fd(), lo).unwrap();
        let groups = Arc::new(FanoutGroups::default());
        let ma = groups.join(a.as_raw_fd(), lo).unwrap();
        let id = groups.id(lo).unwrap();
        let mb = groups.join(b.as_raw_fd(), lo).unwrap();
        let read =
            sys::getsockopt_u32(b.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_FANOUT).unwrap();
        assert_eq!(
            read as u16, id,
            "the second socket joined the first one's group"
        );
        // A second daemon's group on the same interface gets another id.
        let c = sys::packet_socket().unwrap();
        sys::bind_packet(c.as_raw_fd(), lo).unwrap();
        let other = Arc::new(FanoutGroups::default());
        let _mc = other.join(c.as_raw_fd(), lo).unwrap();
        assert_ne!(other.id(lo), Some(id));
        drop(ma);
        assert_eq!(groups.id(lo), Some(id), "one member left");
        drop(mb);
        assert_eq!(groups.id(lo), None);
    }
}
