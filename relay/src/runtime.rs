//! What a running daemon holds beside the data plane's packet path: the kernel fast path (or
//! why there is none) and the count of interface re-creations it followed.
//!
//! These used to sit in `dataplane::Shared`, which the workers read on every batch; they
//! are no business of the workers, and keeping them there made the data plane import the
//! fast path and everything that wanted them (control, stats, metrics) reach into the data
//! plane. `Shared` now holds only what workers read; the daemon owns a `Runtime` and hands
//! it to those that need more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::dataplane::Shared;
use crate::fastpath::FastPath;
use crate::stats::collect::{collect, Identity, Sources};
use crate::stats::report::StatsReport;

pub struct Runtime {
    /// What the workers read: the rule table and its counters, theirs, the stop flag.
    pub plane: Arc<Shared>,
    /// The kernel fast path, when it is in use (decided at start).
    pub fast_path: Option<Arc<FastPath>>,
    /// Why the config asked for the fast path and did not get it: the reason every rule
    /// gives for running in userspace.
    pub fast_path_unavailable: Option<String>,
    /// Times the rule table was re-resolved because an interface came back.
    interface_changes: AtomicU64,
}

impl Runtime {
    /// A runtime over `plane`; `fast_path` is the fast path in use, none (off), or why it
    /// is unavailable.
    pub fn new(plane: Arc<Shared>, fast_path: Result<Option<Arc<FastPath>>, String>) -> Self {
        let (fast_path, fast_path_unavailable) = match fast_path {
            Ok(fp) => (fp, None),
            Err(why) => (None, Some(why)),
        };
        Self {
            plane,
            fast_path,
            fast_path_unavailable,
            interface_changes: AtomicU64::new(0),
        }
    }

    /// A runtime over `plane` without the fast path (tests, the fuzzing entry points).
    pub fn userspace(plane: Arc<Shared>) -> Self {
        Self::new(plane, Ok(None))
    }

    /// A runtime over a new data plane state for `workers` workers (none started), without
    /// the fast path: what tests of the control plane and the endpoints run against.
    pub fn without_workers_running(workers: usize, gso: bool) -> Self {
        Self::userspace(Arc::new(Shared::new(workers, gso)))
    }

    pub fn count_interface_change(&self) {
        self.interface_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// A stats report of everything as it is now.
    pub fn stats(&self, identity: &Identity, final_report: bool) -> StatsReport {
        let snapshot = self.plane.snapshot.load();
        let sources = Sources {
            table: &snapshot.table,
            counters: &snapshot.counters,
            workers: &self.plane.workers,
            started: self.plane.started,
            gso: self.plane.gso,
            fast_path: self.fast_path.as_deref(),
            interface_changes: self.interface_changes.load(Ordering::Relaxed),
        };
        collect(&sources, identity, final_report)
    }
}
