//! `mcrd` as a whole: load the config, start the data plane and the control socket, handle
//! signals, and on shutdown drain and report the final counters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{self, parse_mode, DataplaneConfig};
use crate::control::handler::LogLevelSetter;
use crate::control::server::ControlServer;
use crate::control::Controller;
use crate::dataplane::{sys, DataPlane, Shared};
use crate::membership::Memberships;
use crate::metrics::MetricsServer;
use crate::rules::{RuleSet, RuleTable};
use crate::stats::collect::{collect, Identity};
use crate::stats::render;

/// What `mcrd`'s command line decides.
pub struct Options {
    pub config_path: PathBuf,
    /// Overrides `[control] socket`.
    pub socket: Option<PathBuf>,
    /// Where to write the final stats as JSON at shutdown.
    pub final_stats: Option<PathBuf>,
    pub set_log_level: LogLevelSetter,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let cfg = config::parse_file(&opts.config_path)?;
    let dp = cfg.dataplane.clone();
    (opts.set_log_level)(&cfg.log_level).map_err(anyhow::Error::msg)?;
    check_kernel_tuning(&dp);

    let socket = opts.socket.clone().unwrap_or(cfg.control.socket.clone());
    // Before anything starts: a path that is not ours to replace stops the daemon here.
    crate::control::server::check_path(&socket)?;
    let memory = crate::memory::check_config(&dp, &input_names(&cfg.rules))?;
    tracing::info!(
        "data plane memory: {} ({} per worker)",
        crate::memory::human(memory.total()),
        crate::memory::human(memory.per_worker())
    );

    let gso = dp.gso && sys::probe_udp_gso();
    if dp.gso && !gso {
        tracing::warn!("this kernel refuses UDP_SEGMENT; sending one datagram per sendmsg");
    }
    let workers = dp.workers as usize;
    let shared = Arc::new(Shared::new(workers, gso));
    let rules = RuleSet::from_specs(cfg.rules.clone())?;
    let table = RuleTable::build(&rules, 1, workers, None, &crate::netif::index)
        .with_context(|| format!("in {}", opts.config_path.display()))?;
    let mut memberships = Memberships::default();
    for w in memberships.sync(&table) {
        tracing::warn!("{w}");
    }
    shared.publish(table);

    let identity = Identity {
        config_path: Some(opts.config_path.display().to_string()),
        dataplane: dp.clone(),
    };
    // Signals first, so a SIGTERM during start-up is not lost.
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    let plane = DataPlane::start(&dp, Arc::clone(&shared)).context("starting the data plane")?;
    let controller = Arc::new(Mutex::new(Controller::new(
        rules,
        1,
        Arc::clone(&shared),
        identity.clone(),
        opts.set_log_level,
        memberships,
        crate::netif::index,
    )));
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
    let metrics = match cfg.metrics.listen {
        Some(addr) => match MetricsServer::start(addr, Arc::clone(&shared), identity.clone()) {
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
        rules = shared.table.load().rules.len(),
        gso,
        socket = %socket.display(),
        "mcrd ready"
    );

    for signal in signals.forever() {
        match signal {
            SIGHUP => {
                let reply = match controller.lock() {
                    Ok(mut c) => c.reload(),
                    Err(_) => continue,
                };
                match (reply.ok, reply.error) {
                    (true, _) => {}
                    (false, Some(e)) => tracing::error!("SIGHUP: {}", e.message),
                    (false, None) => tracing::error!("SIGHUP: reload failed"),
                }
            }
            _ => break,
        }
    }
    if shared.failure().is_some() {
        tracing::error!("stopping: a worker failed");
    }
    tracing::info!("stopping: draining sends in flight");
    drop(metrics);
    drop(server);
    plane.stop();
    let report = collect(&shared, &identity, true);
    print!("{}", render::human(&report));
    if let Some(path) = &opts.final_stats {
        write_json(path, &report)?;
    }
    if let Some(why) = shared.failure() {
        bail!("the data plane failed: {why}");
    }
    Ok(())
}

/// The distinct input interfaces of `rules`.
pub fn input_names(rules: &[crate::config::RuleSpec]) -> Vec<String> {
    let mut names: Vec<String> = rules.iter().map(|r| r.input.clone()).collect();
    names.sort();
    names.dedup();
    names
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
