//! Attaching the program to an input's clsact qdisc: a direct-action `bpf` filter at
//! ingress, for kernels without tcx (Linux < 6.6) or when the config asks for it
//! (`[dataplane] fast_path_attach = "clsact"`).
//!
//! mcrd puts its filter at a priority and handle of its own ([`PRIORITY`], [`HANDLE`]): the
//! kernel refuses a second filter there (`NLM_F_EXCL`), so two daemons starting together
//! cannot both attach, and a filter at that place is easy to tell in `tc filter show`.
//!
//! Unlike a tcx link, the filter holds the program itself and outlives mcrd. So mcrd deletes
//! it whenever it lets go of an input and at exit ([`ClsactFilter`]'s drop), with the clsact
//! qdisc if mcrd created it and nothing else is on it. After `kill -9` or a crash the filter
//! stays, forwarding with the dead daemon's last rules, until the next mcrd on that input
//! finds it (an mcrd program whose beacon is down, `owner.rs`) and deletes it
//! ([`remove_stale`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::attach::{is_mcrd_program, program_name, AttachError};
use super::tcfilters::{self, Parent};

/// The filter's priority: after the filters `tc` adds without one (it picks 49152, 0xc000,
/// then lower numbers, which run first), as a tcx link appends mcrd's program after the
/// programs already there.
pub const PRIORITY: u16 = 0xc0de;
/// The filter's handle: "MCR" in ASCII.
pub const HANDLE: u32 = 0x004d_4352;

/// libbpf's description of an interface's clsact ingress (or, with `both`, of the qdisc).
fn hook(ifindex: u32, both: bool) -> libbpf_sys::bpf_tc_hook {
    libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: if both {
            libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS
        } else {
            libbpf_sys::BPF_TC_INGRESS
        },
        ..Default::default()
    }
}

fn opts(priority: u16, handle: u32) -> libbpf_sys::bpf_tc_opts {
    libbpf_sys::bpf_tc_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
        handle,
        priority: u32::from(priority),
        ..Default::default()
    }
}

/// libbpf returns a negative errno.
fn check(rc: i32) -> io::Result<()> {
    crate::sys::libbpf_rc(rc).map(drop)
}

/// The program at `priority`/`handle` on the clsact ingress of `ifindex`.
fn program_at(ifindex: u32, priority: u16, handle: u32) -> io::Result<u32> {
    let hook = hook(ifindex, false);
    let mut o = opts(priority, handle);
    // SAFETY: both structs are ours, sized as libbpf expects; the call fills `o.prog_id`.
    check(unsafe { libbpf_sys::bpf_tc_query(&hook, &mut o) })?;
    Ok(o.prog_id)
}

/// Deletes the filter at `priority`/`handle` on the clsact ingress of `ifindex`.
fn delete(ifindex: u32, priority: u16, handle: u32) -> io::Result<()> {
    let hook = hook(ifindex, false);
    let o = opts(priority, handle);
    // SAFETY: both structs are ours, sized as libbpf expects.
    check(unsafe { libbpf_sys::bpf_tc_detach(&hook, &o) })
}

/// Whether the interface's clsact qdisc has no filter left, on either side.
fn qdisc_empty(ifindex: u32) -> io::Result<bool> {
    Ok(tcfilters::filters(ifindex, Parent::Ingress)?.is_empty()
        && tcfilters::filters(ifindex, Parent::Egress)?.is_empty())
}

/// Deletes the interface's clsact qdisc if nothing is on it.
fn destroy_qdisc_if_empty(ifindex: u32) -> io::Result<()> {
    if !qdisc_empty(ifindex)? {
        return Ok(());
    }
    let mut hook = hook(ifindex, true);
    // SAFETY: a hook struct of ours, sized as libbpf expects.
    check(unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut hook) })
}

/// mcrd's filter on one input; deleted when dropped (see the module docs).
#[derive(Debug)]
pub struct ClsactFilter {
    ifindex: u32,
    interface: String,
    prog_id: u32,
    /// mcrd created the input's clsact qdisc (it was not there before).
    created_qdisc: bool,
}

impl ClsactFilter {
    /// Whether the filter is still there with our program: the kernel deletes the qdisc and
    /// its filters with the interface, and an interface created again (even under the same
    /// index) has none until mcrd attaches anew.
    pub fn attached(&self) -> bool {
        program_at(self.ifindex, PRIORITY, HANDLE).is_ok_and(|id| id == self.prog_id)
    }

    /// Lets go of a filter the kernel deleted with its interface, deleting nothing: by now
    /// the index may name a new interface, with a filter of ours on it.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for ClsactFilter {
    fn drop(&mut self) {
        // Only our own program's filter: anything else at our place is not ours to delete.
        match program_at(self.ifindex, PRIORITY, HANDLE) {
            Ok(id) if id == self.prog_id => {
                if let Err(e) = delete(self.ifindex, PRIORITY, HANDLE) {
                    tracing::warn!(
                        interface = %self.interface,
                        "deleting the fast path's clsact filter: {e}; remove it with `tc filter del dev {} ingress pref {PRIORITY} handle {HANDLE:#x} bpf`",
                        self.interface
                    );
                    return;
                }
            }
            _ => return,
        }
        if self.created_qdisc {
            if let Err(e) = destroy_qdisc_if_empty(self.ifindex) {
                tracing::warn!(interface = %self.interface, "deleting the clsact qdisc mcrd created: {e}");
            }
        }
    }
}

/// Attaches `prog` (program `prog_id`) to the clsact ingress of `ifindex`, creating the qdisc
/// if it is missing. Fails with [`AttachError::Taken`] when another daemon's filter holds
/// mcrd's place (the caller has removed any stale one, [`remove_stale`]).
pub fn attach(
    prog: BorrowedFd<'_>,
    prog_id: u32,
    ifindex: u32,
    interface: &str,
) -> Result<ClsactFilter, AttachError> {
    let err = |step: &'static str| {
        move |source| AttachError::Attach {
            interface: interface.to_string(),
            step,
            source,
        }
    };
    let mut qdisc = hook(ifindex, false);
    // SAFETY: a hook struct of ours, sized as libbpf expects.
    let created_qdisc = match check(unsafe { libbpf_sys::bpf_tc_hook_create(&mut qdisc) }) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
        Err(e) => return Err(err("creating the clsact qdisc")(e)),
    };
    let mut o = opts(PRIORITY, HANDLE);
    o.prog_fd = prog.as_raw_fd();
    // SAFETY: both structs are ours, sized as libbpf expects; without BPF_TC_F_REPLACE the
    // kernel refuses a filter where one is (NLM_F_EXCL).
    if let Err(e) = check(unsafe { libbpf_sys::bpf_tc_attach(&qdisc, &mut o) }) {
        // Nothing of ours is there to delete; the qdisc goes if ours and empty.
        if created_qdisc {
            let _ = destroy_qdisc_if_empty(ifindex);
        }
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Err(AttachError::Taken {
                interface: interface.to_string(),
                hook: "clsact",
                id: program_at(ifindex, PRIORITY, HANDLE).unwrap_or(0),
                owner: None,
            });
        }
        return Err(err("adding the clsact ingress filter")(e));
    }
    Ok(ClsactFilter {
        ifindex,
        interface: interface.to_string(),
        prog_id,
        created_qdisc,
    })
}

/// An mcrd program in a clsact ingress filter of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McrdFilter {
    pub priority: u16,
    pub handle: u32,
    pub prog_id: u32,
}

/// The clsact ingress filters of `ifindex` that run an mcrd program: by the name the
/// filter carries (libbpf names it `PROGRAM:[ID]`), which needs no privilege to read, else
/// by the program's own name (opening a program by id takes CAP_SYS_ADMIN, which the
/// packaged unit does not have).
pub fn mcrd_filters(ifindex: u32) -> io::Result<Vec<McrdFilter>> {
    Ok(tcfilters::filters(ifindex, Parent::Ingress)?
        .into_iter()
        .filter_map(|f| {
            let prog_id = f.bpf_prog_id?;
            let named = f
                .bpf_name
                .as_deref()
                .map(|n| n.split(":[").next().unwrap_or(n));
            let ours = is_mcrd_program(named) || is_mcrd_program(program_name(prog_id).as_deref());
            ours.then_some(McrdFilter {
                priority: f.priority,
                handle: f.handle,
                prog_id,
            })
        })
        .collect())
}

/// Deletes `stale`, an mcrd filter no live daemon holds, saying so at WARN.
pub fn remove_stale(ifindex: u32, interface: &str, stale: McrdFilter) -> Result<(), AttachError> {
    delete(ifindex, stale.priority, stale.handle).map_err(|source| AttachError::Attach {
        interface: interface.to_string(),
        step: "deleting a stale mcrd clsact filter",
        source,
    })?;
    tracing::warn!(
        interface,
        program_id = stale.prog_id,
        "removed a stale mcrd fast path from {interface}: program {} in a clsact ingress filter \
         (pref {} handle {:#x}) that no running mcrd holds, left by a daemon that did not exit \
         cleanly (kill -9, a crash); it forwarded that daemon's last rules until now",
        stale.prog_id,
        stale.priority,
        stale.handle
    );
    Ok(())
}
