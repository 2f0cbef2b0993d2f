//! `mcrctl`: controls a running `mcrd` through its control socket.
//!
//! Exit codes: 0 success, 1 the daemon refused the request (or `config check` found an
//! error), 2 bad command line or the daemon could not be reached.

#![deny(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use relay::cli::mcrctl::{Args, Cmd, ConfigCmd, RulesCmd};
use relay::config::{self, RuleSpec};
use relay::control::client;
use relay::control::protocol::{Command, Reply, Response};
use relay::control::server::{check_path, ServerError};
use relay::rules::{RuleSet, RuleTable};
use relay::stats::{prometheus, render};

/// mimalloc, not glibc's allocator: at 100,000 rules a config parse and a rule-table build
/// make millions of small allocations, and glibc's took 1.4x as long (`config check`: 1.09 s
/// against 0.75 s) and held about 880 MiB after a few reloads where mimalloc gave memory back
/// (325 MiB). Nothing on the forwarding path allocates, so it is the same there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    if let Some(code) = mcr_docs::generate_if_asked(relay::cli::mcrctl::command, "1") {
        return ExitCode::from(code as u8);
    }
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcrctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let call = |cmd: Command| client::call(&args.socket, cmd).map_err(anyhow::Error::from);
    match args.command {
        Cmd::Config {
            action: ConfigCmd::Check { file },
        } => Ok(check_config(&file)),
        Cmd::Config {
            action: ConfigCmd::Reload,
        } => done(call(Command::ConfigReload)?),
        Cmd::LogLevel { level } => done(call(Command::LogLevel { level })?),
        Cmd::Ping => match call(Command::Ping)? {
            Response {
                result: Some(Reply::Pong { pid, version }),
                ..
            } => {
                println!("mcrd {version} (pid {pid}) is running");
                Ok(ExitCode::SUCCESS)
            }
            other => refused(other),
        },
        Cmd::Rules { action } => match action {
            RulesCmd::Add {
                name,
                input,
                group,
                port,
                source,
                outputs,
                monitor,
                min_ttl,
            } => {
                let rule = RuleSpec {
                    name,
                    input,
                    group,
                    port,
                    source,
                    outputs,
                    monitor,
                    min_ttl,
                };
                done(call(Command::RulesAdd { rule })?)
            }
            RulesCmd::Remove { name } => done(call(Command::RulesRemove { name })?),
            RulesCmd::List {
                json,
                flow,
                limit,
                after,
            } => match call(if flow.is_none() && limit.is_none() && after.is_none() {
                // What every daemon understands.
                Command::RulesList
            } else {
                Command::RulesPage { flow, after, limit }
            })? {
                Response {
                    result: Some(Reply::Rules(rules)),
                    ..
                } => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&rules)?);
                        return Ok(ExitCode::SUCCESS);
                    }
                    // The hook the kernel path's rules run on (`[kernel: clsact ingress]`),
                    // from the stats: the rules list's format is fixed for older clients.
                    // Unknown (a daemon from before hooks were reported: tcx), `[kernel]`.
                    let hook = match rules.iter().any(|r| r.path == "kernel") {
                        true => match call(Command::StatsPage {
                            flow: None,
                            limit: Some(0),
                        }) {
                            Ok(Response {
                                result: Some(Reply::Stats(stats)),
                                ..
                            }) => stats
                                .fast_path
                                .map(|fp| fp.attach)
                                .filter(|a| !a.is_empty()),
                            _ => None,
                        },
                        false => None,
                    };
                    if rules.is_empty() {
                        println!("no rules");
                    } else {
                        for r in rules {
                            match (&r.path_reason, &hook) {
                                (Some(why), _) => println!("{}  [{}: {why}]", r.rule, r.path),
                                (None, Some(hook)) if r.path == "kernel" => {
                                    println!("{}  [kernel: {hook} ingress]", r.rule)
                                }
                                (None, _) => println!("{}  [{}]", r.rule, r.path),
                            }
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => refused(other),
            },
        },
        Cmd::Stats {
            json,
            prometheus,
            watch,
            flow,
            limit,
        } => {
            let request = || {
                if flow.is_none() && limit.is_none() {
                    Command::Stats
                } else {
                    Command::StatsPage {
                        flow: flow.clone(),
                        limit,
                    }
                }
            };
            if let Some(secs) = watch {
                if !(secs.is_finite() && secs > 0.0) {
                    anyhow::bail!("--watch takes a positive number of seconds, not {secs}");
                }
            }
            // The last report shown, for the rates over the interval since.
            let mut previous: Option<Box<relay::stats::report::StatsReport>> = None;
            loop {
                let report = match call(request())? {
                    Response {
                        result: Some(Reply::Stats(r)),
                        ..
                    } => r,
                    other => return refused(other),
                };
                let text = if json {
                    serde_json::to_string_pretty(&report)? + "\n"
                } else if prometheus {
                    prometheus::render(&report)
                } else {
                    let interval = previous
                        .as_deref()
                        .and_then(|p| render::interval_rates(p, &report));
                    render::human_with_rates(&report, interval.as_ref())
                };
                let mut out = std::io::stdout().lock();
                if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    // A closed pipe (`| head`) is the reader's choice, not an error.
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(ExitCode::SUCCESS);
                    }
                    return Err(e).context("writing to stdout");
                }
                previous = Some(report);
                match watch {
                    Some(secs) => std::thread::sleep(Duration::from_secs_f64(secs)),
                    None => return Ok(ExitCode::SUCCESS),
                }
            }
        }
    }
}

fn done(r: Response) -> anyhow::Result<ExitCode> {
    match r {
        Response {
            ok: true,
            result: Some(Reply::Done { message }),
            ..
        } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

fn refused(r: Response) -> anyhow::Result<ExitCode> {
    match r.error {
        Some(e) => {
            eprintln!("mcrctl: mcrd refused: {} ({:?})", e.message, e.kind);
            Ok(ExitCode::from(1))
        }
        None => anyhow::bail!("unexpected reply from mcrd: {r:?}"),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let cfg = match config::parse_file(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = config::machine::check(&cfg.dataplane) {
        eprintln!("{}: {e}", file.display());
        return ExitCode::from(1);
    }
    let memory = match relay::dataplane::memory::check_config(
        &cfg.dataplane,
        &relay::daemon::input_names(&cfg.rules),
    ) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    let set = match RuleSet::from_specs(cfg.rules) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    if let Err(e) = RuleTable::build(&set, 1, &relay::netif::index) {
        eprintln!("{}: {e}", file.display());
        return ExitCode::from(1);
    }
    // mcrd would refuse to start on it; warn here, where the file may be checked on another
    // host than the one it is for.
    match check_path(&cfg.control.socket) {
        Err(e @ ServerError::NotASocket { .. }) => eprintln!("{}: warning: {e}", file.display()),
        // No host makes a socket path longer than a socket address valid.
        Err(e @ ServerError::TooLong { .. }) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(1);
        }
        _ => {}
    }
    // The fast path's maps are sized at load whether or not rules use them.
    let fast_path = match cfg.dataplane.fast_path {
        relay::config::FastPathMode::Off => String::new(),
        _ => {
            let sizes = relay::fastpath::Sizes::of(&cfg.dataplane);
            // Per-CPU maps hold a value for every possible CPU.
            let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1);
            format!(
                ", fast path maps up to {} for {} flows ({} per input)",
                relay::dataplane::memory::human(sizes.map_bytes(cpus)),
                sizes.max_flows,
                sizes.max_flows_per_input
            )
        }
    };
    println!(
        "{}: OK ({} rules, {} workers, data plane memory {}{fast_path})",
        file.display(),
        set.len(),
        cfg.dataplane.workers,
        relay::dataplane::memory::human(memory.total())
    );
    ExitCode::SUCCESS
}
