//! The skeleton libbpf-cargo generates from `bpf/fastpath.bpf.c` (see `build.rs`): the
//! embedded object, typed handles to its maps and program, and in [`types`] the map key and
//! value structs as the program's BTF describes them.

#![allow(
    clippy::all,
    clippy::pedantic,
    unsafe_op_in_unsafe_fn,
    missing_docs,
    unreachable_pub
)]

include!(concat!(env!("OUT_DIR"), "/fastpath.skel.rs"));
