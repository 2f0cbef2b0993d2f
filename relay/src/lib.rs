//! MCR relay library: the parts of `mcrd` and `mcrctl`.
//!
//! * [`cli`]: the command lines of `mcrd` and `mcrctl` (also used for man pages).
//! * [`wire`]: packet parsing (Ethernet, 802.1Q, IPv4, UDP, vnet/GSO headers).
//! * [`config`]: the TOML file and its validation.
//! * [`rules`]: the rule set, the resolved rule table, and the kernel packet filter.
//! * [`dataplane`]: worker threads, packet rings, io_uring egress.
//! * [`fastpath`]: the kernel fast path (a tcx program) for the rules it can run.
//! * [`counters`]: the live counters the packet path writes (one writer per cell).
//! * [`stats`]: the JSON report read from those counters, and its text renderings.
//! * [`control`]: the control-socket protocol, its handler, server and client.
//! * [`memory`]: the memory a `[dataplane]` configuration takes, checked against the machine.
//! * [`linkwatch`]: follows interfaces that are deleted and created again.
//! * [`metrics`]: the Prometheus endpoint (`[metrics] listen`).
//! * [`daemon`]: ties them together for `mcrd`; [`logging`]: its log lines under systemd.

pub mod cli;
pub mod config;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod dataplane;
pub mod fastpath;
#[doc(hidden)]
pub mod fuzzing;
pub mod linkwatch;
pub mod logging;
pub mod membership;
pub mod memory;
pub mod metrics;
pub mod netif;
pub mod perf;
pub mod rules;
pub mod stats;
pub mod wire;
