//! Whose is an mcrd program found on an input: a live daemon's, or one a dead daemon left?
//!
//! A tcx link dies with the process holding it, so a tcx program is always a live daemon's. A
//! clsact filter holds its program itself and stays after mcrd is gone (`kill -9`, a crash):
//! the next mcrd on that input must remove it, and must never remove a live daemon's.
//!
//! Each loaded fast path raises a [`Beacon`]: an abstract Unix socket named after its
//! program id, bound in mcrd's network namespace, which the kernel closes when the process
//! ends, however it ends. A program whose beacon is up is a live daemon's. Abstract names are
//! per network namespace, and an interface's filters are in the namespace of the daemon that
//! attached them; looking needs no privilege. The other way, `/proc/PID/fdinfo` (a process
//! holding a descriptor of the program), is used to name that process in messages, not to
//! decide: the packaged unit (`ProtectProc=invisible`, user `mcr`) cannot see other users'
//! processes, so a live daemon run by root would look dead to it.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The abstract socket name of program `prog_id`'s beacon.
fn beacon_name(prog_id: u32) -> String {
    format!("mcr-fastpath/{prog_id}")
}

/// A loaded fast path's sign of life (see the module docs); lowered when dropped.
#[derive(Debug)]
pub struct Beacon {
    _socket: UnixDatagram,
}

impl Beacon {
    /// Raises the beacon of program `prog_id`, before it is attached anywhere (a daemon
    /// looking in between would take the program for a dead one's).
    pub fn raise(prog_id: u32) -> io::Result<Self> {
        let addr = SocketAddr::from_abstract_name(beacon_name(prog_id))?;
        Ok(Self {
            _socket: UnixDatagram::bind_addr(&addr)?,
        })
    }
}

/// Whether program `prog_id`'s beacon is up: a live mcrd holds the program. Binding the name
/// is the question: the kernel refuses it (`EADDRINUSE`) while a socket has it.
pub fn beacon_up(prog_id: u32) -> io::Result<bool> {
    let addr = SocketAddr::from_abstract_name(beacon_name(prog_id))?;
    match UnixDatagram::bind_addr(&addr) {
        // Ours for an instant: no daemon raises a beacon for a program already attached.
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(true),
        Err(e) => Err(e),
    }
}

/// A process holding a descriptor of program `prog_id` (the program itself, or a link to
/// it), found in `/proc/PID/fdinfo` (the `prog_id:` line). Processes whose descriptors this
/// one may not read are skipped, so `None` proves nothing. A walk over every process's
/// descriptors: callers keep the answer.
pub fn holder(prog_id: u32) -> Option<u32> {
    let want = format!("\nprog_id:\t{prog_id}\n");
    let me = std::process::id();
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Looking at a program opens it for a moment: this process is no holder.
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_to_string(fd.path()).is_ok_and(|info| info.contains(&want)) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beacon_is_up_while_it_is_held_and_down_once_dropped() {
        // Far above the ids of real programs on a test machine.
        let id = 4_000_000_000 - std::process::id();
        assert!(!beacon_up(id).unwrap());
        let beacon = Beacon::raise(id).unwrap();
        assert!(beacon_up(id).unwrap());
        assert!(Beacon::raise(id).is_err(), "one beacon per program");
        drop(beacon);
        assert!(!beacon_up(id).unwrap());
    }
}
