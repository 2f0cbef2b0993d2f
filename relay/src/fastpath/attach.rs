//! Loading the program, and attaching it to input interfaces with tcx links; a clsact filter
//! (`clsact.rs`) is the other way, where tcx is missing or not wanted.
//!
//! A tcx link lives as long as its file descriptor: mcrd holds it, and when mcrd exits (also
//! by `kill -9`) the kernel closes it and detaches the program. Nothing is pinned (pins would
//! outlive mcrd, and `ip netns exec` remounts /sys/fs/bpf anyway).
//!
//! Two daemons on one interface: refused, race-free. Before attaching, mcrd lists the tcx
//! ingress programs of the interface with the chain's revision; if one is an mcrd fast path
//! it does not attach (the flows of that interface stay in userspace, or a `required` daemon
//! does not start), and it attaches only if the chain is still at that revision, so two
//! daemons starting together cannot both pass the check. [`claim`] looks on the other hook
//! too, so a daemon on tcx and one on clsact see each other (not race-free between them: the
//! two hooks have no common revision; only a config forcing different hooks on one kernel
//! can make them meet).

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use super::probe::KernelFeatures;
use super::skel::{FastpathSkel, FastpathSkelBuilder};
use super::{clsact, owner};

/// The name of mcrd's programs as the kernel reports them: `mcr_fastpath`, and
/// `mcr_fastpath_nl` for kernels without bpf_loop (BPF object names are cut at 15 bytes).
/// A program whose name starts with it is an mcrd fast path.
pub const PROGRAM_NAME: &str = "mcr_fastpath";

/// Whether a program of this name is an mcrd fast path.
pub(super) fn is_mcrd_program(name: Option<&str>) -> bool {
    name.is_some_and(|n| n.starts_with(PROGRAM_NAME))
}

/// Why the program could not be loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("loading the fast-path program: {0}")]
    Load(String),
    /// The kernel lacks what the config asks for (a hook).
    #[error("{0}")]
    Kernel(String),
    #[error("interface {interface} already has an mcrd fast path attached ({hook}, program id {id}{}); two daemons on one interface would forward the same datagrams twice", owner.map(|p| format!(", held by pid {p}")).unwrap_or_default())]
    Taken {
        interface: String,
        /// `tcx` or `clsact`: where the other program is.
        hook: &'static str,
        id: u32,
        /// The process holding that program, when it could be found.
        owner: Option<u32>,
    },
    #[error("attaching the fast path to {interface}: {step}: {source}")]
    Attach {
        interface: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Opens and loads the program and its maps (the verifier runs here), sized for `max_flows`
/// rules, for a kernel with `features`.
///
/// The skeleton borrows its object storage for its whole life; mcrd loads the program once
/// and keeps it until it exits, so the storage is leaked to get a `'static` skeleton.
pub fn load(
    max_flows: u32,
    features: KernelFeatures,
) -> Result<FastpathSkel<'static>, AttachError> {
    // libbpf's messages (the verifier log of a refused program among them) go to our log at
    // debug level instead of straight to stderr; the error we return says what failed.
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Info, |_, msg| {
        tracing::debug!(target: "relay::fastpath::libbpf", "{}", msg.trim_end());
    })));
    let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
        Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = FastpathSkelBuilder::default()
        .open(storage)
        .map_err(|e| AttachError::Load(e.to_string()))?;
    for map in [
        &mut open.maps.mcr_fp_rules,
        &mut open.maps.mcr_fp_rules6,
        &mut open.maps.mcr_fp_counters,
        &mut open.maps.mcr_fp_monitors,
    ] {
        map.set_max_entries(max_flows).map_err(|e| {
            AttachError::Load(format!("sizing the maps for {max_flows} flows: {e}"))
        })?;
    }
    // One of the two entry points, for what the kernel has (see their comment in
    // bpf/fastpath.bpf.c): the other is not loaded, so the kernel never sees its calls.
    open.progs.mcr_fastpath.set_autoload(features.bpf_loop);
    open.progs.mcr_fastpath_nl.set_autoload(!features.bpf_loop);
    open.load().map_err(|e| AttachError::Load(e.to_string()))
}

/// Facts about a loaded program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramFacts {
    pub id: u32,
    pub name: String,
    /// Instructions the verifier processed to accept the program (kernel >= 5.16).
    pub verified_insns: u32,
}

/// Reads a program's id, name and verifier cost.
pub fn program_facts(prog: impl AsFd) -> io::Result<ProgramFacts> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes that the call fills.
    let rc = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(prog.as_fd().as_raw_fd(), &mut info, &mut len)
    };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    // SAFETY: the kernel NUL-terminates the name within the array.
    let name = unsafe { CStr::from_ptr(info.name.as_ptr()) };
    Ok(ProgramFacts {
        id: info.id,
        name: name.to_string_lossy().into_owned(),
        verified_insns: info.verified_insns,
    })
}

/// The tcx ingress chain of an interface: its revision and its programs' ids.
pub fn tcx_ingress_programs(ifindex: u32) -> io::Result<(u64, Vec<u32>)> {
    let mut ids = [0u32; 64];
    let mut opts = libbpf_sys::bpf_prog_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as _,
        prog_ids: ids.as_mut_ptr(),
        ..Default::default()
    };
    opts.__bindgen_anon_1.prog_cnt = ids.len() as u32;
    // SAFETY: `opts` points at `ids`, whose length it states; the call writes at most that.
    let rc = unsafe {
        libbpf_sys::bpf_prog_query_opts(ifindex as i32, libbpf_sys::BPF_TCX_INGRESS, &mut opts)
    };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    // SAFETY: the kernel wrote the count into the union.
    let n = unsafe { opts.__bindgen_anon_1.prog_cnt } as usize;
    Ok((opts.revision, ids[..n.min(ids.len())].to_vec()))
}

/// The name of program `id` (`None` if it went away meanwhile).
/// Opening a program by id takes CAP_SYS_ADMIN: without it, `None`.
pub(super) fn program_name(id: u32) -> Option<String> {
    // SAFETY: plain syscall wrapper; a negative return is an error.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the call returned a new descriptor we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    program_facts(&fd).ok().map(|f| f.name)
}

/// The kernel's run statistics of a program: (total ns in the program, runs). The kernel keeps
/// them only while statistics are on ([`enable_run_stats`] or `kernel.bpf_stats_enabled`).
pub fn program_run_stats(id: u32) -> io::Result<(u64, u64)> {
    // SAFETY: plain syscall wrapper; a negative return is an error.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the call returned a new descriptor we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes that the call fills.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok((info.run_time_ns, info.run_cnt))
}

/// Turns on the kernel's run-time statistics of every BPF program while the returned
/// descriptor is open (`BPF_ENABLE_STATS`: unlike the sysctl, nothing stays on after us).
pub fn enable_run_stats() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall wrapper; a negative return is an error.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: the call returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether a tcx link still attaches its program to an interface. When the interface is
/// deleted the kernel detaches the program and the link stays, pointing at no device
/// (`tcx.ifindex` 0): an interface created again, even under the same index, has no program
/// until it is attached anew.
pub fn link_attached(link: impl AsFd) -> bool {
    // SAFETY: bpf_link_info is plain old data; all-zero is valid.
    let mut info: libbpf_sys::bpf_link_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is a bpf_link_info of `len` bytes that the call fills.
    let rc = unsafe {
        libbpf_sys::bpf_link_get_info_by_fd(link.as_fd().as_raw_fd(), &mut info, &mut len)
    };
    // SAFETY: a tcx link's info fills the `tcx` member of the union.
    rc == 0 && unsafe { info.__bindgen_anon_1.tcx.ifindex } != 0
}

/// Whether tcx program `id` is an mcrd fast path: by its name, or, where this process may not
/// open it by id to read the name (that takes CAP_SYS_ADMIN, which the packaged unit does
/// not have), by its beacon (`owner.rs`). A tcx program lives only as long as its daemon, so
/// an mcrd program there always has its beacon up.
fn is_mcrd_tcx_program(id: u32) -> bool {
    is_mcrd_program(program_name(id).as_deref()) || owner::beacon_up(id).unwrap_or(false)
}

/// Ids of the mcrd fast paths attached to an interface's tcx ingress (none on a kernel
/// without tcx).
fn mcrd_tcx_programs(ifindex: u32) -> io::Result<Vec<u32>> {
    let ids = match tcx_ingress_programs(ifindex) {
        Ok((_, ids)) => ids,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(ids
        .into_iter()
        .filter(|&id| is_mcrd_tcx_program(id))
        .collect())
}

/// Ids of the mcrd fast paths on an interface's ingress: tcx programs and clsact filters.
pub fn mcrd_programs_on(ifindex: u32) -> io::Result<Vec<u32>> {
    let mut ids = mcrd_tcx_programs(ifindex)?;
    ids.extend(clsact::mcrd_filters(ifindex)?.iter().map(|f| f.prog_id));
    Ok(ids)
}

/// Makes way for program `own` on `ifindex`: another mcrd's fast path there that a live
/// daemon holds is [`AttachError::Taken`]; a clsact filter that no live daemon holds was left
/// by one that died, and is deleted (with a warning). Looks at tcx too when `tcx` (a daemon
/// attaching with tcx checks that hook itself, race-free: [`attach_tcx`]).
pub fn claim(ifindex: u32, interface: &str, own: u32, tcx: bool) -> Result<(), AttachError> {
    let err = |step: &'static str| {
        move |source| AttachError::Attach {
            interface: interface.to_string(),
            step,
            source,
        }
    };
    let taken = |hook, id| AttachError::Taken {
        interface: interface.to_string(),
        hook,
        id,
        owner: None,
    };
    if tcx {
        let ids = mcrd_tcx_programs(ifindex).map_err(err("querying tcx ingress"))?;
        if let Some(&id) = ids.iter().find(|&&id| id != own) {
            return Err(taken("tcx", id));
        }
    }
    let filters = clsact::mcrd_filters(ifindex).map_err(err("listing clsact filters"))?;
    for f in filters.into_iter().filter(|f| f.prog_id != own) {
        let live = owner::beacon_up(f.prog_id).map_err(err("asking for a program's beacon"))?
            || owner::holder(f.prog_id).is_some();
        if live {
            return Err(taken("clsact", f.prog_id));
        }
        clsact::remove_stale(ifindex, interface, f)?;
    }
    Ok(())
}

/// Attaches `prog` to the tcx ingress of `ifindex`, unless an mcrd fast path is attached
/// there already. The returned link detaches the program when dropped (or when the process
/// dies).
pub fn attach_tcx(prog: impl AsFd, ifindex: u32, interface: &str) -> Result<OwnedFd, AttachError> {
    let err = |step: &'static str| {
        move |source| AttachError::Attach {
            interface: interface.to_string(),
            step,
            source,
        }
    };
    let (revision, ids) = tcx_ingress_programs(ifindex).map_err(err("querying tcx ingress"))?;
    if let Some(&id) = ids.iter().find(|&&id| is_mcrd_tcx_program(id)) {
        return Err(AttachError::Taken {
            interface: interface.to_string(),
            hook: "tcx",
            id,
            owner: None,
        });
    }
    let mut opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        ..Default::default()
    };
    // Fails with ESTALE if another program was attached since the query: no check-then-act race.
    opts.__bindgen_anon_1.tcx.expected_revision = revision;
    // SAFETY: plain syscall wrapper with an options struct we own.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_fd().as_raw_fd(),
            ifindex as i32,
            libbpf_sys::BPF_TCX_INGRESS,
            &opts,
        )
    };
    if fd < 0 {
        return Err(err("BPF_LINK_CREATE (tcx ingress)")(
            io::Error::from_raw_os_error(-fd),
        ));
    }
    // SAFETY: the call returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
