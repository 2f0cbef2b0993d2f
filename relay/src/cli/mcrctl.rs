//! `mcrctl`'s command line.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{Monitor, OutputSpec};

/// Control a running mcrd through its control socket.
#[derive(Debug, Parser)]
#[command(name = "mcrctl", version, long_version = crate::version::relay())]
#[command(
    after_help = "Exit codes: 0 success, 1 the daemon refused the request (or `config check` found an error), 2 bad command line or the daemon could not be reached."
)]
pub struct Args {
    /// Control socket of the daemon.
    #[arg(long, env = "MCR_SOCKET", default_value = "/run/mcr/mcrd.sock")]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Add, remove or list forwarding rules.
    Rules {
        #[command(subcommand)]
        action: RulesCmd,
    },
    /// Show the live counters.
    Stats {
        /// Print the stats report as JSON (schema mcr.relay.stats).
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print Prometheus text format (what mcrd serves on `[metrics] listen`).
        #[arg(long)]
        prometheus: bool,
        /// Repeat every N seconds until interrupted, with the rates over each interval.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<f64>,
        /// Only the flow of the rule with this name.
        #[arg(long, value_name = "NAME")]
        flow: Option<String>,
        /// At most N flows, in name order.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Check a config file, or make the daemon reload its own.
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Set the daemon's log filter (e.g. info, debug, relay=trace).
    LogLevel {
        /// A `tracing` filter.
        level: String,
    },
    /// Check that the daemon answers.
    Ping,
}

#[derive(Debug, Subcommand)]
pub enum RulesCmd {
    /// Add a rule: datagrams to GROUP:PORT arriving on INPUT go to every --output.
    Add {
        /// Unique name of the rule (1 to 64 characters).
        #[arg(long)]
        name: String,
        /// Interface the datagrams arrive on.
        #[arg(long, value_name = "IF")]
        input: String,
        /// Destination (multicast) address to match, IPv4 or IPv6 (no brackets).
        #[arg(long)]
        group: IpAddr,
        /// Destination UDP port to match.
        #[arg(long)]
        port: u16,
        /// Match only this source address (of the group's family).
        #[arg(long)]
        source: Option<IpAddr>,
        /// ADDR:PORT@INTERFACE[/TTL][,dscp=N][,source=ADDR][,source_port=N], an IPv6 ADDR
        /// in brackets ([ff3e::1]:5000@eth1); repeat for fan-out.
        #[arg(long = "output", required = true)]
        outputs: Vec<OutputSpec>,
        /// Check the forwarded stream: rtp (sequence gaps) or mpegts (continuity counters).
        #[arg(long, value_parser = parse_monitor)]
        monitor: Option<Monitor>,
        /// Forward only datagrams that arrive with at least this TTL (IPv6: hop limit), 1 to
        /// 255; the others are counted as `below_min_ttl`. Default: every TTL.
        #[arg(long, value_name = "TTL", value_parser = clap::value_parser!(u8).range(1..))]
        min_ttl: Option<u8>,
    },
    /// Remove the rule called NAME.
    Remove {
        /// Name of the rule.
        name: String,
    },
    /// List the rules in force.
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
        /// Only the rule with this name.
        #[arg(long, value_name = "NAME")]
        flow: Option<String>,
        /// At most N rules, in name order.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Start after the rule with this name (the last one of the previous page).
        #[arg(long, value_name = "NAME", conflicts_with = "flow")]
        after: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate FILE (syntax, fields, addresses, and that its interfaces exist here).
    Check {
        /// The config file (TOML).
        file: PathBuf,
    },
    /// Make the daemon re-read its config file and apply it atomically.
    Reload,
}

/// `--monitor`'s value.
fn parse_monitor(value: &str) -> Result<Monitor, String> {
    match value {
        "rtp" => Ok(Monitor::Rtp),
        "mpegts" => Ok(Monitor::Mpegts),
        _ => Err("expected rtp or mpegts".to_string()),
    }
}

/// The clap command `mcrctl` parses with (for man pages and completions).
pub fn command() -> clap::Command {
    Args::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        super::command().debug_assert();
    }
}
