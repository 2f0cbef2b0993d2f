//! `trafficgen`: the command-line edge. Parses flags, runs a sub-command, prints its summary,
//! writes its JSON record.
//!
//! Exit codes: 0 success; 1 the run failed (nothing could be sent, a socket error, a sweep
//! trial failed to run); 2 bad flags; 130 interrupted (SIGINT/SIGTERM; the summary and record
//! are still written).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use trafficgen::cli::{with_default_subcommand, Cli, Command, RecvArgs, SendArgs, SweepArgs};
use trafficgen::recv::{self, RecvOptions};
use trafficgen::send::{self, SendLimit, SendOptions};
use trafficgen::sweep::{self, SweepOptions};
use trafficgen::{summary, sys};

fn main() -> ExitCode {
    if let Some(code) = mcr_docs::generate_if_asked(trafficgen::cli::command, "1") {
        return ExitCode::from(code as u8);
    }
    let cli = match Cli::try_parse_from(with_default_subcommand(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("trafficgen: error: {e:#}");
            if is_usage_error(&e) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// A flag value clap could not check by itself (e.g. out of range together with another flag).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// Whether `error` is about the flags (exit code 2) rather than the run (exit code 1).
fn is_usage_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause
                .downcast_ref::<send::SendError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<recv::RecvError>()
                .is_some_and(|e| e.is_usage())
            || cause
                .downcast_ref::<sweep::SweepError>()
                .is_some_and(|e| e.is_usage())
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    sys::install_stop_handler();
    match cli.command {
        Command::Send(args) => run_send(args),
        Command::Recv(args) => run_recv(args),
        Command::Sweep(args) => run_sweep(args),
    }
}

/// Prints to stdout; a closed pipe (`trafficgen ... | head`) is not an error.
fn print_out(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// The `--json FILE` of a sub-command, created before the run so that a bad path fails at once
/// rather than after a long run.
struct JsonOutput {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonOutput {
    fn create(path: Option<&Path>) -> anyhow::Result<Option<JsonOutput>> {
        let Some(path) = path else { return Ok(None) };
        let file = std::fs::File::create(path).map_err(|e| {
            UsageError(format!(
                "--json {}: cannot create the file: {e}",
                path.display()
            ))
        })?;
        Ok(Some(JsonOutput {
            path: path.to_path_buf(),
            file,
        }))
    }

    fn write<T: Serialize>(mut self, record: &T) -> anyhow::Result<()> {
        let mut text =
            serde_json::to_string_pretty(record).context("cannot serialize the record")?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .with_context(|| format!("cannot write --json {}", self.path.display()))
    }
}

fn run_send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let limit = match (args.count, args.duration) {
        (Some(n), _) => SendLimit::Count(n),
        (None, Some(d)) => SendLimit::Duration(d),
        (None, None) => SendLimit::Duration(Duration::from_secs(10)),
    };
    let options = SendOptions {
        src: args.src,
        iface: args.iface,
        size: args.size,
        ttl: args.ttl,
        threads: args.threads,
        streams: args.streams.unwrap_or(args.threads),
        gso_segments: args.gso_segments,
        batch_messages: args.batch,
        end_marker_repeats: args.end_markers,
        coalesce: Duration::from_micros(args.coalesce_us),
        ..SendOptions::new(args.dst, args.pps, limit)
    };
    let json = JsonOutput::create(args.json.as_deref())?;
    let bar = progress_bar();
    let record = send::run(&options, Duration::from_millis(100), |watch| {
        let sent: u64 = watch
            .progress
            .iter()
            .map(|c| c.0.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        if let Some(total) = watch.total {
            bar.set_length(total);
        }
        bar.set_position(sent);
    })
    .context("send failed")?;
    bar.finish_and_clear();
    print_out(&summary::send(&record))?;
    if let Some(json) = json {
        json.write(&record)?;
    }
    if record.packets_sent == 0 && record.send_errors > 0 {
        bail!(
            "every send failed ({} errors: {:?}); is --dst {} reachable?",
            record.send_errors,
            record.send_errors_by_errno,
            options.dst
        );
    }
    Ok(if sys::stop_requested() {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_recv(args: RecvArgs) -> anyhow::Result<ExitCode> {
    if args.max_streams == 0 {
        return Err(UsageError("--max-streams must be at least 1".into()).into());
    }
    let options = RecvOptions {
        iface: args.iface,
        duration: args.duration,
        idle_timeout: args.idle_timeout,
        exit_on_end: args.exit_on_end,
        max_streams: args.max_streams,
        rcvbuf_bytes: args.rcvbuf,
        format: args.format,
        rtp_clock_rate_hz: args.rtp_clock_rate,
        ..RecvOptions::new(args.group)
    };
    let json = JsonOutput::create(args.json.as_deref())?;
    let ready_line = args.ready_line;
    let record = recv::run(&options, || {
        if ready_line {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "ready");
            let _ = out.flush();
        }
    })
    .context("receive failed")?;
    print_out(&summary::recv(&record))?;
    if let Some(json) = json {
        json.write(&record)?;
    }
    Ok(if sys::stop_requested() {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_sweep(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the trafficgen executable")?;
    let options = SweepOptions {
        send: SendOptions {
            src: args.src,
            iface: args.iface,
            size: args.size,
            ttl: args.ttl,
            threads: args.threads,
            streams: args.threads,
            ..SendOptions::new(
                args.dst,
                args.min_pps,
                SendLimit::Duration(args.trial_duration),
            )
        },
        receiver_program: vec![exe.into_os_string()],
        recv_netns: args.recv_netns,
        recv_iface: args.recv_iface,
        trial_duration: args.trial_duration,
        trials_per_rate: args.trials,
        min_pps: args.min_pps,
        max_pps: args.max_pps,
        resolution_pps: args.resolution_pps,
        max_loss_ratio: args.max_loss_ratio,
    };
    let json = JsonOutput::create(args.json.as_deref())?;
    let record = sweep::run(&options, |trial| {
        eprintln!("{}", summary::sweep_trial(trial));
    })
    .context("sweep failed")?;
    print_out(&summary::sweep(&record))?;
    if let Some(json) = json {
        json.write(&record)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr when it is a terminal, else a hidden one (CI logs stay clean).
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} packets ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}
