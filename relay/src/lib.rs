//! MCR relay library: the parts of `mcrd` and `mcrctl`.
//!
//! * [`cli`]: the command lines of `mcrd` and `mcrctl` (also used for man pages).
//! * [`wire`]: packet parsing (Ethernet, 802.1Q, IPv4, UDP, vnet/GSO headers).
//! * [`config`]: the TOML file and its validation.
//! * [`rules`]: the rule set, the resolved rule table, and the kernel packet filter.
//! * [`dataplane`]: worker threads, packet rings, io_uring egress, and the memory a
//!   `[dataplane]` configuration takes, checked against the machine.
//! * [`runtime`]: what the daemon holds beside the packet path (the fast path in use).
//! * [`fastpath`]: the kernel fast path (a tcx program) for the rules it can run.
//! * [`counters`]: the live counters the packet path writes (one writer per cell).
//! * [`stats`]: the JSON report read from those counters, and its text renderings.
//! * [`control`]: the control-socket protocol, its handler, server and client.
//! * [`linkwatch`]: follows interfaces that are deleted and created again.
//! * [`metrics`]: the Prometheus endpoint (`[metrics] listen`).
//! * [`daemon`]: ties them together for `mcrd`; [`logging`]: its log lines under systemd.
//!
//! All of that is the default feature `daemon`. Built without it (`default-features = false`),
//! the library is only the stats JSON contract, [`stats::report`], with serde-level
//! dependencies: the analyzer reads relay stats that way without building the daemon. The
//! feature `sys` (part of `daemon`) adds [`sys`] and [`perf`], the low-level helpers trafficgen
//! shares with the relay (checked libc calls, errno names, per-thread perf counters).
//!
//! `unsafe` is denied everywhere but in the modules that make system calls or read memory the
//! kernel shares, each allowed where it is declared: [`sys`] (checked libc calls), the data
//! plane's `sys`, `ring` (the mmap'ed packet ring), `egress` and `uring` (buffers lent to
//! io_uring), and the fast path's `attach`, `clsact`, `probe` and `layout` (BPF syscalls and
//! the byte views of the maps' values), and `skel`, which libbpf-cargo generates.
//! `tests/architecture.rs` keeps that list.
#![deny(unsafe_code)]

#[cfg(feature = "daemon")]
pub mod cli;
#[cfg(feature = "daemon")]
pub mod config;
#[cfg(feature = "daemon")]
pub mod control;
#[cfg(feature = "daemon")]
pub mod counters;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod dataplane;
#[cfg(feature = "daemon")]
pub mod fastpath;
#[cfg(feature = "daemon")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "daemon")]
pub mod linkwatch;
#[cfg(feature = "daemon")]
pub mod logging;
#[cfg(feature = "daemon")]
pub mod membership;
#[cfg(feature = "daemon")]
pub mod metrics;
/// Interfaces by name (index, MTU, addresses): [`sys::netif`], under its old name.
#[cfg(feature = "daemon")]
pub use sys::netif;
#[cfg(feature = "daemon")]
pub mod notify;
#[cfg(feature = "sys")]
pub mod perf;
#[cfg(feature = "daemon")]
pub mod rules;
#[cfg(feature = "daemon")]
pub mod runtime;
pub mod stats;
#[cfg(feature = "sys")]
#[allow(unsafe_code)]
pub mod sys;
pub mod version;
#[cfg(feature = "daemon")]
pub mod wire;
