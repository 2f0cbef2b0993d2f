//! The data plane: worker threads that move datagrams from packet rings to UDP sockets.
//!
//! The control plane talks to the workers only through [`Shared`]: it publishes a new
//! [`Snapshot`], a rule table and the counter table beside it (an `ArcSwap` plus a generation
//! number the workers poll between batches), sets the stop flag, and reads the counters.
//! There is no queue between threads on the packet path.

#[allow(unsafe_code)]
pub mod egress;
mod fanout;
pub mod filter_count;
mod forward;
pub mod ingress;
pub mod limits;
pub mod memory;
pub mod pool;
mod ratelimit;
#[allow(unsafe_code)]
pub mod ring;
#[allow(unsafe_code)]
pub mod sys;
#[allow(unsafe_code)]
mod uring;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::DataplaneConfig;
use crate::counters::{CacheLine, CounterTable, FlowShape, WorkerCells};
use crate::rules::RuleTable;
pub use worker::WorkerError;

/// What the workers forward by: a rule table and its flows' counters, published as one, so
/// that a worker never counts a rule's datagrams in another rule's cells.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub table: RuleTable,
    /// By the position of each rule in `table`.
    pub counters: CounterTable,
}

impl Snapshot {
    /// `table` with counters for `workers` workers: a rule that is the same in `previous`
    /// (`RuleTable::positions_in`) keeps its counters; a new or changed one, or every one if
    /// the worker count changed, starts at zero.
    pub fn new(table: RuleTable, workers: usize, previous: &Snapshot) -> Self {
        let carried = table.positions_in(&previous.table);
        let flows = table
            .rules
            .iter()
            .zip(carried)
            .map(|(rule, at)| (FlowShape::of(&rule.spec), at));
        let counters = CounterTable::carried(workers, &previous.counters, flows);
        Snapshot { table, counters }
    }
}

/// State shared between the control plane and the workers.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// Generation of the published table; workers compare it with theirs between batches.
    pub generation: AtomicU64,
    /// Generation each worker has adopted.
    pub adopted: Box<[AtomicU64]>,
    pub stop: AtomicBool,
    pub workers: Box<[CacheLine<WorkerCells>]>,
    pub started: Instant,
    /// Whether `UDP_SEGMENT` sends are enabled (config and kernel probe).
    pub gso: bool,
    /// Why a worker stopped on its own (a panic, or an error it could not go on after). Set
    /// once, off the packet path; the daemon then stops with this as its error.
    pub failure: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(workers: usize, gso: bool) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            generation: AtomicU64::new(0),
            adopted: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            workers: (0..workers)
                .map(|_| CacheLine(WorkerCells::default()))
                .collect(),
            started: Instant::now(),
            gso,
            failure: Mutex::new(None),
        }
    }

    /// Records that worker `id` stopped on its own, and asks the process to stop: a data plane
    /// with a worker missing would silently lose that worker's share of the traffic. SIGTERM
    /// reaches the daemon's signal loop, which stops everything and exits non-zero with
    /// [`Shared::failure`] (so a supervisor such as systemd restarts it).
    pub fn worker_failed(&self, id: usize, why: String) {
        tracing::error!(worker = id, "worker stopped: {why}");
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(format!("worker {id} stopped: {why}"));
        }
        sys::signal_self(libc::SIGTERM);
    }

    /// Why a worker stopped on its own, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Publishes a snapshot; workers adopt it between batches.
    pub fn publish(&self, snapshot: Snapshot) {
        let generation = snapshot.table.generation;
        self.snapshot.store(Arc::new(snapshot));
        self.generation.store(generation, Ordering::Release);
    }

    /// `table` with its counters: those of the table in force for its unchanged rules.
    pub fn next_snapshot(&self, table: RuleTable) -> Snapshot {
        Snapshot::new(table, self.workers.len(), &self.snapshot.load())
    }

    /// Waits until every worker has adopted `generation` (or `timeout` passes).
    pub fn wait_adopted(&self, generation: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .adopted
                .iter()
                .all(|a| a.load(Ordering::Acquire) >= generation)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The running workers.
pub struct DataPlane {
    pub shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl DataPlane {
    /// Starts one worker per configured worker, each adopting the table already published in
    /// `shared`. Returns once every worker has opened its sockets, or the first error.
    pub fn start(dp: &DataplaneConfig, shared: Arc<Shared>) -> Result<Self, WorkerError> {
        let workers = dp.workers as usize;
        // All workers on an interface share one fan-out group, with an id the kernel chose.
        let fanout = (workers > 1).then(|| Arc::new(fanout::FanoutGroups::default()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut handles = Vec::with_capacity(workers);
        for id in 0..workers {
            let cpu = dp.cpus.get(id).copied();
            let dp = dp.clone();
            let fanout = fanout.clone();
            let worker_shared = Arc::clone(&shared);
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("mcr-worker-{id}"))
                .spawn(move || {
                    let shared = Arc::clone(&worker_shared);
                    let run = std::panic::AssertUnwindSafe(|| {
                        let gso = worker_shared.gso;
                        let setup = worker::Worker::new(id, cpu, &dp, fanout, gso, worker_shared)
                            .and_then(|mut w| w.adopt_current_table().map(|()| w));
                        match setup {
                            Ok(w) => {
                                let _ = ready.send(Ok(()));
                                w.run();
                            }
                            Err(e) => {
                                let _ = ready.send(Err(e));
                            }
                        }
                    });
                    // `run` returns only when asked to stop, and a start-up error goes back
                    // through `ready`; a panic is the one way a worker ends on its own. The
                    // ready channel is dropped with the closure, so a worker that panics
                    // while starting fails `start` too.
                    if let Err(panic) = std::panic::catch_unwind(run) {
                        shared.worker_failed(id, format!("panicked: {}", panic_message(&*panic)));
                    }
                });
            let handle = match handle {
                Ok(h) => h,
                Err(source) => {
                    let plane = Self { shared, handles };
                    plane.stop();
                    return Err(WorkerError::Spawn { worker: id, source });
                }
            };
            handles.push(handle);
        }
        drop(ready_tx);
        let plane = Self { shared, handles };
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    plane.stop();
                    return Err(e);
                }
                Err(_) => {
                    // A worker ended without reporting: it panicked while starting.
                    let why = plane
                        .shared
                        .failure()
                        .unwrap_or_else(|| "a worker stopped while starting".to_string());
                    plane.stop();
                    return Err(WorkerError::Failed(why));
                }
            }
        }
        Ok(plane)
    }

    /// Stops the workers and waits for them to drain.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// The text of a panic's payload (`panic!` with a message gives `&str` or `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
