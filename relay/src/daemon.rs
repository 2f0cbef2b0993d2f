//! `mcrd` as a whole: load the config, start the data plane and the control socket, handle
//! signals, and on shutdown drain and report the final counters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{self, parse_mode, DataplaneConfig, FastPathAttach, FastPathMode};
use crate::control::audit::{Action, Origin};
use crate::control::handler::{FileSettings, InForceError, LogLevelSetter};
use crate::control::server::ControlServer;
use crate::control::Controller;
use crate::dataplane::{sys, DataPlane, Shared};
use crate::fastpath::{probe, FastPath, KernelFeatures};
use crate::membership::Memberships;
use crate::metrics::MetricsServer;
use crate::rules::RuleSet;
use crate::runtime::Runtime;
use crate::stats::collect::Identity;
use crate::stats::render;

/// What `mcrd`'s command line decides.
pub struct Options {
    pub config_path: PathBuf,
    /// What `config_path` held when mcrd read it (to set up logging before anything else).
    pub config: config::Config,
    /// The log filter in force (from the file, `RUST_LOG` or the default).
    pub log_level: String,
    /// Overrides `[control] socket`.
    pub socket: Option<PathBuf>,
    /// Where to write the final stats as JSON at shutdown.
    pub final_stats: Option<PathBuf>,
    pub set_log_level: LogLevelSetter,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let cfg = opts.config;
    let dp = cfg.dataplane.clone();
    // Before any worker exists: pinning one to a CPU the machine cannot give fails in CPU_SET.
    crate::config::machine::check(&dp)?;
    check_kernel_tuning(&dp);

    let socket = opts.socket.clone().unwrap_or(cfg.control.socket.clone());
    // Before anything starts: a path that is not ours to replace stops the daemon here.
    crate::control::server::check_path(&socket)?;
    let memory = crate::dataplane::memory::check_config(&dp, &input_names(&cfg.rules))?;
    tracing::info!(
        "data plane memory: {} ({} per worker)",
        crate::dataplane::memory::human(memory.total()),
        crate::dataplane::memory::human(memory.per_worker())
    );

    let gso = dp.gso && sys::probe_udp_gso();
    if dp.gso && !gso {
        tracing::warn!("this kernel refuses UDP_SEGMENT; sending one datagram per sendmsg");
    }
    let workers = dp.workers as usize;
    let shared = Arc::new(Shared::new(workers, gso));
    let runtime = Arc::new(Runtime::new(Arc::clone(&shared), start_fast_path(&dp)?));
    let rules = RuleSet::from_specs(cfg.rules.clone())?;
    let identity = Identity::new(Some(opts.config_path.display().to_string()), dp.clone())
        .context("recording the data plane settings for the stats")?;
    // Signals first, so a SIGTERM during start-up is not lost.
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    let controller = Arc::new(Mutex::new(Controller::new(
        RuleSet::default(),
        0,
        Arc::clone(&runtime),
        identity.clone(),
        opts.set_log_level,
        Memberships::default(),
        crate::netif::index,
    )));
    controller
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .started_with(FileSettings::of(&cfg));
    // The first rules go in force as every later change does; the data plane starts once
    // their table is published, so its workers open the inputs' sockets at start (an input
    // that cannot be captured stops mcrd here).
    let message = format!("{} rules loaded", rules.len());
    let plane = controller
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .start(rules, &message, |report| {
            if dp.fast_path == FastPathMode::Required && !report.attach_errors.is_empty() {
                bail!(
                    "[dataplane] fast_path = \"required\": {}",
                    report.attach_errors.join("; ")
                );
            }
            DataPlane::start(&dp, Arc::clone(&shared)).context("starting the data plane")
        })
        .map_err(|e| match e {
            InForceError::Rules(e) => {
                anyhow::Error::new(e).context(format!("in {}", opts.config_path.display()))
            }
            InForceError::Hook(e) => e,
        })?;
    let mode = parse_mode(&cfg.control.mode).unwrap_or(0o660);
    let server = match ControlServer::start(
        &socket,
        mode,
        cfg.control.group.as_deref(),
        Arc::clone(&controller),
    ) {
        Ok(s) => s,
        Err(e) => {
            plane.stop();
            bail!(e);
        }
    };
    // Without link events, rules still work; they just do not follow re-created interfaces.
    let _link_watch = crate::linkwatch::LinkWatch::start(Arc::clone(&controller))
        .map_err(|e| {
            tracing::warn!(
                "not watching link events ({e}): a deleted and re-created interface needs a reload"
            )
        })
        .ok();
    let refresher = runtime
        .fast_path
        .as_ref()
        .map(|_| FastPathRefresher::start(Arc::clone(&controller)));
    let kernel_rules = shared
        .snapshot
        .load()
        .table
        .rules
        .iter()
        .filter(|r| r.path == crate::rules::Path::Kernel)
        .count();
    let metrics = match cfg.metrics.listen {
        Some(addr) => match MetricsServer::start(addr, Arc::clone(&runtime), identity.clone()) {
            Ok(m) => {
                tracing::info!(
                    "serving Prometheus metrics on http://{}/metrics",
                    m.local_addr()
                );
                Some(m)
            }
            Err(e) => {
                drop(server);
                plane.stop();
                bail!(e);
            }
        },
        None => None,
    };
    tracing::info!(
        workers,
        rules = shared.snapshot.load().table.rules.len(),
        kernel_rules,
        gso,
        socket = %socket.display(),
        "mcrd ready"
    );
    crate::notify::ready(&ready_status(&shared));

    for signal in signals.forever() {
        match signal {
            SIGHUP => {
                crate::notify::reloading();
                let reply = match controller.lock() {
                    Ok(mut c) => c.reload(),
                    Err(_) => {
                        crate::notify::ready(&ready_status(&shared));
                        continue;
                    }
                };
                crate::notify::ready(&ready_status(&shared));
                Action::ConfigReload
                    .entry(Origin::Signal("SIGHUP"), &reply)
                    .log();
            }
            _ => break,
        }
    }
    if shared.failure().is_some() {
        tracing::error!("stopping: a worker failed");
    }
    crate::notify::stopping();
    tracing::info!("stopping: draining sends in flight");
    drop(refresher);
    drop(metrics);
    drop(server);
    plane.stop();
    // Detached, the program holds no datagram: its counters are final.
    if let Some(fp) = &runtime.fast_path {
        fp.detach_all();
    }
    let report = runtime.stats(&identity, true);
    print!("{}", render::human(&report));
    if let Some(path) = &opts.final_stats {
        write_json(path, &report)?;
    }
    if let Some(why) = shared.failure() {
        bail!("the data plane failed: {why}");
    }
    Ok(())
}

/// What `systemctl status` shows while mcrd runs: its rules and how many the kernel runs.
fn ready_status(shared: &Shared) -> String {
    let snapshot = shared.snapshot.load();
    let table = &snapshot.table;
    let kernel = table
        .rules
        .iter()
        .filter(|r| r.path == crate::rules::Path::Kernel)
        .count();
    format!(
        "forwarding: {} rules, {kernel} on the kernel fast path",
        table.rules.len()
    )
}

/// The distinct input interfaces of `rules`.
pub fn input_names(rules: &[crate::config::RuleSpec]) -> Vec<String> {
    let mut names: Vec<String> = rules.iter().map(|r| r.input.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// Loads the fast path if the config asks for it and the kernel and privileges allow.
/// `auto` falls back to userspace with one warning naming what is missing (returned as the
/// inner error); `required` refuses.
fn start_fast_path(dp: &DataplaneConfig) -> anyhow::Result<Result<Option<Arc<FastPath>>, String>> {
    let mode = dp.fast_path;
    if mode == FastPathMode::Off {
        return Ok(Ok(None));
    }
    let missing = probe::missing_capabilities();
    let why = if missing.is_empty() {
        match load_fast_path(dp) {
            Ok(fp) => return Ok(Ok(Some(Arc::new(fp)))),
            Err(why) => why,
        }
    } else {
        format!("mcrd lacks {}", missing.join(" and "))
    };
    if mode == FastPathMode::Required {
        bail!("[dataplane] fast_path = \"required\" but the fast path is unavailable: {why}");
    }
    tracing::warn!(
        "fast path unavailable, every rule runs in userspace: {why} (fast_path = \"auto\"; set \"off\" to silence this)"
    );
    Ok(Err(why))
}

/// Probes the kernel's optional features, loads the program for them and says how it will
/// run: the hook, and what it does without the features it lacks.
fn load_fast_path(dp: &DataplaneConfig) -> Result<FastPath, String> {
    let features = KernelFeatures::probe()?;
    let fp = FastPath::load_with(
        crate::fastpath::Sizes::of(dp),
        dp.fast_path_attach,
        features,
    )
    .map_err(|e| match probe::kernel_version() {
        // The verifier's refusal names an instruction, not the kernel that is too old.
        Some((major, minor)) if (major, minor) < MIN_FAST_PATH_KERNEL => format!(
            "{e} (the fast path needs Linux {}.{} or later; this kernel is {major}.{minor})",
            MIN_FAST_PATH_KERNEL.0, MIN_FAST_PATH_KERNEL.1
        ),
        _ => e.to_string(),
    })?;
    let f = fp.facts();
    tracing::info!(
        program_id = f.id,
        verified_insns = f.verified_insns,
        attach = fp.attach_mode().name(),
        "fast path loaded"
    );
    if dp.fast_path_attach == FastPathAttach::Auto && !features.tcx {
        tracing::info!(
            "this kernel has no tcx (Linux 6.6): the fast path goes in clsact qdisc filters, \
             which mcrd deletes when it exits (after a kill -9, the next mcrd does)"
        );
    }
    if !features.bpf_loop {
        tracing::warn!(
            "this kernel lacks the bpf_loop helper (Linux 5.17): the fast path sums UDP \
             checksums with a bounded loop, and rules with monitor = \"rtp\" run in userspace"
        );
    }
    Ok(fp)
}

/// The oldest kernel the program loads on (relay/README.md, "Kernel versions"):
/// `bpf_check_mtu` and pointers as arguments of global functions came in Linux 5.12.
const MIN_FAST_PATH_KERNEL: (u32, u32) = (5, 12);

/// Re-plans the fast path every second (neighbours resolved, addresses or MACs changed),
/// until dropped.
struct FastPathRefresher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FastPathRefresher {
    const PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

    fn start(controller: Arc<Mutex<Controller>>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("mcr-fastpath".into())
            .spawn(move || {
                use std::sync::atomic::Ordering::Relaxed;
                while !flag.load(Relaxed) {
                    std::thread::park_timeout(Self::PERIOD);
                    if flag.load(Relaxed) {
                        break;
                    }
                    if let Ok(mut c) = controller.lock() {
                        c.refresh_fast_path();
                    }
                }
            })
            .ok();
        Self { stop, handle }
    }
}

impl Drop for FastPathRefresher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn write_json(path: &Path, report: &crate::stats::report::StatsReport) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(report)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Warns when the kernel's socket-buffer limits are below what the config asks for: an
/// unprivileged daemon cannot exceed them, and would silently get less.
fn check_kernel_tuning(dp: &DataplaneConfig) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if let Some(wmem_max) = read("/proc/sys/net/core/wmem_max") {
        if u64::from(dp.socket_sndbuf) > wmem_max {
            tracing::warn!(
                "socket_sndbuf {} exceeds net.core.wmem_max {wmem_max}; run: sysctl -w net.core.wmem_max={}",
                dp.socket_sndbuf,
                dp.socket_sndbuf
            );
        }
    }
    let rcvbuf = crate::dataplane::ingress::PACKET_RCVBUF as u64;
    if let Some(rmem_max) = read("/proc/sys/net/core/rmem_max") {
        if rcvbuf > rmem_max {
            tracing::warn!("packet-socket receive buffers are capped by net.core.rmem_max {rmem_max}; run: sysctl -w net.core.rmem_max={rcvbuf}");
        }
    }
}
