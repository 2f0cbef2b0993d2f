//! The data plane: worker threads that move datagrams from packet rings to UDP sockets.
//!
//! The control plane talks to the workers only through [`Shared`]: it publishes a new rule
//! table (an `ArcSwap` plus a generation number the workers poll between batches), sets the
//! stop flag, and reads the counters. There is no queue between threads on the packet path.

pub mod egress;
mod forward;
pub mod ingress;
pub mod limits;
pub mod pool;
mod ratelimit;
pub mod ring;
pub mod sys;
mod uring;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::DataplaneConfig;
use crate::counters::{CacheLine, WorkerCells};
use crate::rules::RuleTable;
pub use worker::WorkerError;

/// State shared between the control plane and the workers.
pub struct Shared {
    pub table: ArcSwap<RuleTable>,
    /// Generation of the published table; workers compare it with theirs between batches.
    pub generation: AtomicU64,
    /// Generation each worker has adopted.
    pub adopted: Box<[AtomicU64]>,
    pub stop: AtomicBool,
    pub workers: Box<[CacheLine<WorkerCells>]>,
    pub started: Instant,
    /// Whether `UDP_SEGMENT` sends are enabled (config and kernel probe).
    pub gso: bool,
}

impl Shared {
    pub fn new(workers: usize, gso: bool) -> Self {
        Self {
            table: ArcSwap::from_pointee(RuleTable::default()),
            generation: AtomicU64::new(0),
            adopted: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            workers: (0..workers)
                .map(|_| CacheLine(WorkerCells::default()))
                .collect(),
            started: Instant::now(),
            gso,
        }
    }

    /// Publishes a table; workers adopt it between batches.
    pub fn publish(&self, table: RuleTable) {
        let generation = table.generation;
        self.table.store(Arc::new(table));
        self.generation.store(generation, Ordering::Release);
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
        // All workers on an interface share one fan-out group; the id must be unique on the
        // host, so derive it from our pid.
        let fanout_base = (workers > 1).then(|| (std::process::id() as u16).wrapping_mul(97));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut handles = Vec::with_capacity(workers);
        for id in 0..workers {
            let cpu = dp.cpus.get(id).copied();
            let dp = dp.clone();
            let worker_shared = Arc::clone(&shared);
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("mcr-worker-{id}"))
                .spawn(move || {
                    let gso = worker_shared.gso;
                    let setup = worker::Worker::new(id, cpu, &dp, fanout_base, gso, worker_shared)
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
                Err(_) => break,
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
