//! `trafficgen`'s command line, as clap definitions. In the library so that the man pages and
//! shell completions are generated from the definitions the binary parses with.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::record::RecvFormat;
use crate::units::parse_duration;

/// `--version`: trafficgen's version, the commit and its features.
fn long_version() -> &'static str {
    static LINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let features: &[&str] = if cfg!(feature = "generator") {
            &["generator"]
        } else {
            &[]
        };
        relay::version::long(env!("CARGO_PKG_VERSION"), features)
    });
    LINE.as_str()
}

#[derive(Debug, Parser)]
#[command(
    name = "trafficgen",
    version,
    long_version = long_version(),
    about = "Paced UDP/multicast sender and accounting receiver",
    long_about = "Paced UDP/multicast sender and accounting receiver.\n\n\
        `trafficgen [send] --pps N ...` sends (send is the default sub-command);\n\
        `trafficgen recv --group G:P ...` receives and accounts;\n\
        `trafficgen sweep ...` searches for the highest loss-free rate."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send probe datagrams on an absolute schedule (the default sub-command).
    Send(SendArgs),
    /// Join a group and account for every probe: loss, duplicates, reordering, latency.
    Recv(RecvArgs),
    /// Find the highest rate with no loss (and with loss at most a ratio) by bisection.
    Sweep(SweepArgs),
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Destination group (or unicast address) and port: IPv4 `239.1.1.1:5000` or IPv6
    /// `[ff3e::1234]:5000`.
    #[arg(long, default_value = "239.1.1.1:5000", value_name = "ADDR:PORT")]
    pub dst: SocketAddr,
    /// Sender's outgoing interface.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Sender's source address.
    #[arg(long, value_name = "ADDR")]
    pub src: Option<IpAddr>,
    /// UDP payload bytes per datagram.
    #[arg(long, default_value_t = 1400)]
    pub size: usize,
    /// Sender threads.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// IP TTL of the sender.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub ttl: u32,
    /// Run the receiver in this network namespace (through `ip netns exec`).
    #[arg(long, value_name = "NS")]
    pub recv_netns: Option<String>,
    /// Interface the receiver joins the group on.
    #[arg(long, value_name = "IF")]
    pub recv_iface: Option<String>,
    /// Send phase of one trial (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub trial_duration: Duration,
    /// Trials per rate; a rate passes only if all pass.
    #[arg(long, default_value_t = 2)]
    pub trials: u32,
    /// Lowest rate tried, packets per second.
    #[arg(long, default_value_t = 1_000)]
    pub min_pps: u64,
    /// Highest rate tried, packets per second.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_pps: u64,
    /// Stop when the pass/fail bracket is this narrow, packets per second.
    #[arg(long, default_value_t = 1_000)]
    pub resolution_pps: u64,
    /// Loss ratio accepted by the second search (lost / sent).
    #[arg(long, default_value_t = 0.001)]
    pub max_loss_ratio: f64,
    /// Write the JSON record (mcr.trafficgen.sweep) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Group (or local unicast address) and port to receive on: IPv4 `239.1.1.1:5000` or
    /// IPv6 `[ff3e::1234]:5000` (joined with MLD).
    #[arg(long, value_name = "ADDR:PORT")]
    pub group: SocketAddr,
    /// Interface to join the group on.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Stop after this long (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this long without a datagram (e.g. 2s), once the first has arrived; until
    /// then only --duration or a signal stops the receiver.
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Stop once every stream seen has sent its end marker.
    #[arg(long)]
    pub exit_on_end: bool,
    /// Streams accounted separately; datagrams of more streams are only counted.
    #[arg(long, default_value_t = crate::accounting::DEFAULT_MAX_STREAMS)]
    pub max_streams: u32,
    /// Socket receive buffer to ask for, bytes (small values provoke kernel drops on purpose).
    #[arg(long, default_value_t = crate::recv::DEFAULT_RCVBUF_BYTES)]
    pub rcvbuf: u32,
    /// Formats to recognise: auto (decided per datagram: probe, MPEG-TS, RTP), probe, rtp or
    /// mpegts (raw over UDP, or inside RTP).
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    pub format: RecvFormat,
    /// RTP timestamp clock rate (Hz) of payload types without a static one (96-127), needed
    /// for their jitter (e.g. 90000 for video, 48000 for audio).
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(1..))]
    pub rtp_clock_rate: Option<u32>,
    /// Write the JSON record (mcr.trafficgen.recv) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print the line `ready` on stdout once the group is joined (for scripts and `sweep`).
    #[arg(long)]
    pub ready_line: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Destination group (or unicast address) and port: IPv4 `239.1.1.1:5000` or IPv6
    /// `[ff3e::1234]:5000`.
    #[arg(long, default_value = "239.1.1.1:5000", value_name = "ADDR:PORT")]
    pub dst: SocketAddr,
    /// Target rate in packets per second over all threads; 0 sends as fast as possible.
    #[arg(long)]
    pub pps: u64,
    /// Packets to send in total. Default (without --duration): 10 seconds' worth.
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// How long to send (e.g. 10s, 500ms).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// UDP payload bytes per datagram, probe header (32 bytes) included.
    #[arg(long, default_value_t = 1400)]
    pub size: usize,
    /// Outgoing interface (IP_MULTICAST_IF for groups, SO_BINDTODEVICE for unicast).
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Source address to bind.
    #[arg(long, value_name = "ADDR")]
    pub src: Option<IpAddr>,
    /// IP TTL. The default 1 keeps multicast on the link; raise it for routed paths.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub ttl: u32,
    /// Sender threads, each with its own socket and share of the rate.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Streams (independent sequence spaces), spread over threads. Default: one per thread.
    #[arg(long)]
    pub streams: Option<u32>,
    /// Datagrams per UDP GSO message; 1 turns GSO off (plain sendmmsg).
    #[arg(long, default_value_t = 32)]
    pub gso_segments: u32,
    /// Messages per sendmmsg call.
    #[arg(long, default_value_t = 8)]
    pub batch: u32,
    /// Longest a due packet waits for later ones to share its send call, in microseconds
    /// (fewer, larger batches at high rates; 0 sends each packet the moment it is due).
    #[arg(long, default_value_t = 20)]
    pub coalesce_us: u64,
    /// How often each stream's end marker is sent.
    #[arg(long, default_value_t = 3)]
    pub end_markers: u32,
    /// Write the JSON record (mcr.trafficgen.send) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
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
pub fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        let is_global = matches!(first, "-h" | "--help" | "-V" | "--version");
        if first.starts_with('-') && !is_global {
            args.insert(1, OsString::from("send"));
        }
    }
    args
}

/// The clap command `trafficgen` parses with (for man pages and completions).
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn command_line_definition_is_consistent() {
        command().debug_assert();
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
