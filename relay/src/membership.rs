//! IGMP (IPv4) and MLDv2 (IPv6) membership of the input groups, so that switches (and the
//! NIC's multicast filter) deliver the traffic we capture.
//!
//! Memberships are packed into sockets, up to what one socket may hold: a socket per
//! membership took a file descriptor per group, and 100,000 channels ran out of them (the
//! daemon then failed to install its signal handlers). A membership is left by dropping it
//! on the socket that holds it; a socket that holds none is closed.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

use crate::rules::RuleTable;
use crate::sys::sockaddr_storage_of;

type Key = (IpAddr, u32, Option<IpAddr>);

/// A socket and how many memberships it holds.
struct Holder {
    sock: Socket,
    /// An IPv6 socket, which holds IPv6 memberships only (and an IPv4 one IPv4 only).
    ipv6: bool,
    held: usize,
    /// The kernel refused one more (`igmp_max_memberships` or `igmp_max_msf`).
    full: bool,
    /// It held memberships on an interface that was deleted: the kernel may still list them
    /// on the socket, so a join of the same group on an interface created again under the
    /// same index would fail there (EADDRINUSE). It joins nothing more and closes once empty.
    retired: bool,
}

/// The memberships the daemon holds.
#[derive(Default)]
pub struct Memberships {
    /// Each membership and the index of the socket holding it in `holders`.
    joined: HashMap<Key, usize>,
    holders: Vec<Option<Holder>>,
}

impl Memberships {
    /// Joins what `table` needs and leaves what it no longer does. Returns warnings for
    /// memberships that could not be joined (forwarding still works where the network
    /// delivers the traffic without them).
    pub fn sync(&mut self, table: &RuleTable) -> Vec<String> {
        let mut wanted: Vec<(Key, &str)> = Vec::new();
        let mut wanted_keys: HashSet<Key> = HashSet::new();
        for r in table.rules.iter().filter(|r| r.spec.group.is_multicast()) {
            let key = (r.spec.group, r.ifindex, r.spec.source);
            if wanted_keys.insert(key) {
                wanted.push((key, r.spec.input.as_str()));
            }
        }
        let gone: Vec<Key> = self
            .joined
            .keys()
            .filter(|k| !wanted_keys.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.leave(key, false);
        }
        let mut warnings = Vec::new();
        for (key, name) in wanted {
            if self.joined.contains_key(&key) {
                continue;
            }
            if let Err(e) = self.join(key) {
                warnings.push(format!("joining {} on {name}: {e}", key.0));
            }
        }
        warnings
    }

    /// Forgets the memberships on `ifindex`, whose interface was deleted: the kernel dropped
    /// them with the device, and the sockets that held them cannot join again on an
    /// interface created under the same index (they still list the old membership). The next
    /// [`Memberships::sync`] joins with new sockets.
    pub fn forget_interface(&mut self, ifindex: u32) {
        let gone: Vec<Key> = self
            .joined
            .keys()
            .filter(|k| k.1 == ifindex)
            .copied()
            .collect();
        for key in gone {
            // Best effort: the device it was joined on is gone.
            self.leave(key, true);
        }
    }

    pub fn len(&self) -> usize {
        self.joined.len()
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// Sockets open for memberships.
    pub fn sockets(&self) -> usize {
        self.holders.iter().flatten().count()
    }

    fn join(&mut self, key: Key) -> io::Result<()> {
        // The last socket that took one, else a new one; a socket the kernel finds full
        // (ENOBUFS) is not asked again.
        loop {
            let at = match self.holders.iter().rposition(|h| {
                h.as_ref()
                    .is_some_and(|h| !h.full && !h.retired && h.ipv6 == key.0.is_ipv6())
            }) {
                Some(i) => i,
                None => {
                    let domain = if key.0.is_ipv6() {
                        Domain::IPV6
                    } else {
                        Domain::IPV4
                    };
                    let sock = Socket::new(domain, Type::DGRAM.cloexec(), None)?;
                    let holder = Some(Holder {
                        sock,
                        ipv6: key.0.is_ipv6(),
                        held: 0,
                        full: false,
                        retired: false,
                    });
                    match self.holders.iter().position(Option::is_none) {
                        Some(i) => {
                            self.holders[i] = holder;
                            i
                        }
                        None => {
                            self.holders.push(holder);
                            self.holders.len() - 1
                        }
                    }
                }
            };
            let Some(h) = self.holders[at].as_mut() else {
                unreachable!("position of a socket that is there")
            };
            match membership(&h.sock, key, true) {
                Ok(()) => {
                    h.held += 1;
                    self.joined.insert(key, at);
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && h.held > 0 => {
                    h.full = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Leaves `key`. `retire`: its interface was deleted, so its socket joins nothing more.
    fn leave(&mut self, key: Key, retire: bool) {
        let Some(at) = self.joined.remove(&key) else {
            return;
        };
        let Some(h) = self.holders[at].as_mut() else {
            return;
        };
        if let Err(e) = membership(&h.sock, key, false) {
            tracing::debug!("leaving {}: {e}", key.0);
        }
        h.held -= 1;
        h.full = false;
        h.retired |= retire;
        if h.held == 0 {
            self.holders[at] = None;
        }
    }
}

/// Closes the sockets newest first. The kernel keeps an interface's memberships in a list,
/// newest first, and searches it for each membership dropped: closing in the order of
/// joining walked the whole list each time (100,000 groups: minutes of kernel time to stop),
/// closing in reverse finds each at the head.
impl Drop for Memberships {
    fn drop(&mut self) {
        while let Some(h) = self.holders.pop() {
            drop(h);
        }
    }
}

/// Joins (or leaves) `key` on `sock`, by interface index (`MCAST_JOIN_GROUP`,
/// `MCAST_JOIN_SOURCE_GROUP` and their leaves). The same requests serve both families, at
/// the family's level: over IPv6 the kernel sends MLDv2 reports, over IPv4 IGMP ones.
fn membership(sock: &Socket, (group, ifindex, source): Key, join: bool) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let level = if group.is_ipv6() {
        libc::IPPROTO_IPV6
    } else {
        libc::IPPROTO_IP
    };
    match source {
        None => {
            let req = libc::group_req {
                gr_interface: ifindex,
                gr_group: sockaddr_storage_of(group),
            };
            let op = if join {
                libc::MCAST_JOIN_GROUP
            } else {
                libc::MCAST_LEAVE_GROUP
            };
            crate::sys::setsockopt(fd, level, op, &req)
        }
        Some(src) => {
            let req = libc::group_source_req {
                gsr_interface: ifindex,
                gsr_group: sockaddr_storage_of(group),
                gsr_source: sockaddr_storage_of(src),
            };
            let op = if join {
                libc::MCAST_JOIN_SOURCE_GROUP
            } else {
                libc::MCAST_LEAVE_SOURCE_GROUP
            };
            crate::sys::setsockopt(fd, level, op, &req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleSpec;
    use crate::rules::RuleSet;

    fn table(groups: &[([u8; 4], Option<[u8; 4]>)]) -> RuleTable {
        let mut set = RuleSet::default();
        for (i, (g, s)) in groups.iter().enumerate() {
            set.add(RuleSpec {
                source: s.map(Into::into),
                ..RuleSpec::on_lo(&format!("r{i}"), *g, 5000 + i as u16)
            })
            .unwrap();
        }
        RuleTable::build(&set, 1, &|n| crate::netif::index(n)).unwrap()
    }

    #[test]
    fn joins_and_leaves_with_the_table() {
        let mut m = Memberships::default();
        let w = m.sync(&table(&[
            ([239, 1, 1, 1], None),
            ([239, 1, 1, 2], Some([127, 0, 0, 1])),
            ([127, 0, 0, 1], None),
        ]));
        if !w.is_empty() {
            // lo may lack the MULTICAST flag in some sandboxes; CI's machine has it.
            assert_ne!(
                std::env::var("MCR_E2E_REQUIRED").as_deref(),
                Ok("1"),
                "cannot join groups on lo: {w:?}"
            );
            eprintln!("SKIP: cannot join groups on lo here: {w:?}");
            return;
        }
        assert_eq!(m.len(), 2, "unicast destinations are not joined");
        assert_eq!(m.sockets(), 1, "memberships share a socket");
        m.sync(&table(&[([239, 1, 1, 2], Some([127, 0, 0, 1]))]));
        assert_eq!(m.len(), 1);
        m.sync(&table(&[]));
        assert!(m.is_empty());
        assert_eq!(m.sockets(), 0, "a socket that holds none is closed");
    }

    #[test]
    fn many_groups_share_few_sockets_and_are_all_left() {
        let groups: Vec<([u8; 4], Option<[u8; 4]>)> =
            (0..100u8).map(|i| ([239, 7, 1, i], None)).collect();
        let mut m = Memberships::default();
        let w = m.sync(&table(&groups));
        if !w.is_empty() {
            assert_ne!(
                std::env::var("MCR_E2E_REQUIRED").as_deref(),
                Ok("1"),
                "cannot join groups on lo: {w:?}"
            );
            eprintln!("SKIP: cannot join groups on lo here: {w:?}");
            return;
        }
        assert_eq!(m.len(), 100);
        // One socket per membership before: 100 descriptors.
        assert!(m.sockets() <= 100 / 20 + 1, "{} sockets", m.sockets());
        m.sync(&table(&groups[..10]));
        assert_eq!(m.len(), 10);
        m.sync(&table(&[]));
        assert_eq!((m.len(), m.sockets()), (0, 0));
    }
}
