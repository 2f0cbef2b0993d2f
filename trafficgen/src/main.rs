//! `trafficgen`: the command-line edge. Parses flags, runs a sub-command, prints its summary,
//! writes its JSON record.
//!
//! Exit codes: 0 success; 1 the run failed (nothing could be sent, a socket error, a sweep
//! trial failed to run); 2 bad flags; 130 interrupted (SIGINT/SIGTERM; the summary and record
//! are still written).

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use trafficgen::record::RecvFormat;
use trafficgen::recv::{self, RecvOptions};
use trafficgen::send::{self, SendLimit, SendOptions};
use trafficgen::sweep::{self, SweepOptions};
use trafficgen::units::parse_duration;
use trafficgen::{summary, sys};

#[derive(Parser)]
#[command(
    name = "trafficgen",
    version,
    about = "Paced UDP/multicast sender and accounting receiver",
    long_about = "Paced UDP/multicast sender and accounting receiver.\n\n\
        `trafficgen [send] --pps N ...` sends (send is the default sub-command);\n\
        `trafficgen recv --group G:P ...` receives and accounts;\n\
        `trafficgen sweep ...` searches for the highest loss-free rate."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send probe datagrams on an absolute schedule (the default sub-command).
    Send(SendArgs),
    /// Join a group and account for every probe: loss, duplicates, reordering, latency.
    Recv(RecvArgs),
    /// Find the highest rate with no loss (and with loss at most a ratio) by bisection.
    Sweep(SweepArgs),
}

#[derive(Args)]
struct SweepArgs {
    /// Destination group (or unicast address) and port.
    #[arg(long, default_value = "239.1.1.1:5000", value_name = "ADDR:PORT")]
    dst: SocketAddrV4,
    /// Sender's outgoing interface.
    #[arg(long, value_name = "IF")]
    iface: Option<String>,
    /// Sender's source address.
    #[arg(long, value_name = "ADDR")]
    src: Option<Ipv4Addr>,
    /// UDP payload bytes per datagram.
    #[arg(long, default_value_t = 1400)]
    size: usize,
    /// Sender threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// IP TTL of the sender.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    ttl: u32,
    /// Run the receiver in this network namespace (through `ip netns exec`).
    #[arg(long, value_name = "NS")]
    recv_netns: Option<String>,
    /// Interface the receiver joins the group on.
    #[arg(long, value_name = "IF")]
    recv_iface: Option<String>,
    /// Send phase of one trial (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    trial_duration: Duration,
    /// Trials per rate; a rate passes only if all pass.
    #[arg(long, default_value_t = 2)]
    trials: u32,
    /// Lowest rate tried, packets per second.
    #[arg(long, default_value_t = 1_000)]
    min_pps: u64,
    /// Highest rate tried, packets per second.
    #[arg(long, default_value_t = 1_000_000)]
    max_pps: u64,
    /// Stop when the pass/fail bracket is this narrow, packets per second.
    #[arg(long, default_value_t = 1_000)]
    resolution_pps: u64,
    /// Loss ratio accepted by the second search (lost / sent).
    #[arg(long, default_value_t = 0.001)]
    max_loss_ratio: f64,
    /// Write the JSON record (mcr.trafficgen.sweep) to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct RecvArgs {
    /// Group (or local unicast address) and port to receive on.
    #[arg(long, value_name = "ADDR:PORT")]
    group: SocketAddrV4,
    /// Interface to join the group on.
    #[arg(long, value_name = "IF")]
    iface: Option<String>,
    /// Stop after this long (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this long without a datagram (e.g. 2s), once the first has arrived; until
    /// then only --duration or a signal stops the receiver.
    #[arg(long, value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// Stop once every stream seen has sent its end marker.
    #[arg(long)]
    exit_on_end: bool,
    /// Streams accounted separately; datagrams of more streams are only counted.
    #[arg(long, default_value_t = trafficgen::accounting::DEFAULT_MAX_STREAMS)]
    max_streams: u32,
    /// Socket receive buffer to ask for, bytes (small values provoke kernel drops on purpose).
    #[arg(long, default_value_t = trafficgen::recv::DEFAULT_RCVBUF_BYTES)]
    rcvbuf: u32,
    /// Formats to recognise: auto (decided per datagram: probe, MPEG-TS, RTP), probe, rtp or
    /// mpegts (raw over UDP, or inside RTP).
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    format: RecvFormat,
    /// RTP timestamp clock rate (Hz) of payload types without a static one (96-127), needed
    /// for their jitter (e.g. 90000 for video, 48000 for audio).
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(1..))]
    rtp_clock_rate: Option<u32>,
    /// Write the JSON record (mcr.trafficgen.recv) to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Print the line `ready` on stdout once the group is joined (for scripts and `sweep`).
    #[arg(long)]
    ready_line: bool,
}

#[derive(Args)]
struct SendArgs {
    /// Destination group (or unicast address) and port.
    #[arg(long, default_value = "239.1.1.1:5000", value_name = "ADDR:PORT")]
    dst: SocketAddrV4,
    /// Target rate in packets per second over all threads; 0 sends as fast as possible.
    #[arg(long)]
    pps: u64,
    /// Packets to send in total. Default (without --duration): 10 seconds' worth.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// How long to send (e.g. 10s, 500ms).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// UDP payload bytes per datagram, probe header (32 bytes) included.
    #[arg(long, default_value_t = 1400)]
    size: usize,
    /// Outgoing interface (IP_MULTICAST_IF for groups, SO_BINDTODEVICE for unicast).
    #[arg(long, value_name = "IF")]
    iface: Option<String>,
    /// Source address to bind.
    #[arg(long, value_name = "ADDR")]
    src: Option<Ipv4Addr>,
    /// IP TTL. The default 1 keeps multicast on the link; raise it for routed paths.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    ttl: u32,
    /// Sender threads, each with its own socket and share of the rate.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Streams (independent sequence spaces), spread over threads. Default: one per thread.
    #[arg(long)]
    streams: Option<u32>,
    /// Datagrams per UDP GSO message; 1 turns GSO off (plain sendmmsg).
    #[arg(long, default_value_t = 32)]
    gso_segments: u32,
    /// Messages per sendmmsg call.
    #[arg(long, default_value_t = 8)]
    batch: u32,
    /// Longest a due packet waits for later ones to share its send call, in microseconds
    /// (fewer, larger batches at high rates; 0 sends each packet the moment it is due).
    #[arg(long, default_value_t = 20)]
    coalesce_us: u64,
    /// How often each stream's end marker is sent.
    #[arg(long, default_value_t = 3)]
    end_markers: u32,
    /// Write the JSON record (mcr.trafficgen.send) to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// `--format`'s value.
fn parse_format(value: &str) -> Result<RecvFormat, String> {
    match value {
        "auto" => Ok(RecvFormat::Auto),
        "probe" => Ok(RecvFormat::Probe),
        "rtp" => Ok(RecvFormat::Rtp),
        "mpegts" => Ok(RecvFormat::Mpegts),
        _ => Err("expected auto, probe, rtp or mpegts".to_string()),
    }
}

/// Inserts `send` when the first argument is a flag other than help/version, so that
/// `trafficgen --pps N` means `trafficgen send --pps N` (a sub-command name is never a flag).
fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        let is_global = matches!(first, "-h" | "--help" | "-V" | "--version");
        if first.starts_with('-') && !is_global {
            args.insert(1, OsString::from("send"));
        }
    }
    args
}

fn main() -> ExitCode {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn send_is_the_default_subcommand() {
        assert_eq!(
            with_default_subcommand(os(&["tg", "--pps", "1"])),
            os(&["tg", "send", "--pps", "1"])
        );
        assert_eq!(
            with_default_subcommand(os(&["tg", "recv"])),
            os(&["tg", "recv"])
        );
        assert_eq!(
            with_default_subcommand(os(&["tg", "--help"])),
            os(&["tg", "--help"])
        );
    }
}
