//! `mcrd`'s command line.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::config::DEFAULT_CONFIG_PATH;

/// Userspace multicast relay: forwards UDP multicast between interfaces the kernel will not
/// route between, with AF_PACKET ingress and io_uring egress.
#[derive(Debug, Parser)]
#[command(name = "mcrd", version, long_version = crate::version::relay())]
#[command(
    after_help = "Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 failed to start or at run time, 2 bad command line.\n\
                  Signals: SIGHUP reloads the config file; SIGTERM/SIGINT drain the sends in flight and stop."
)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Control socket path (overrides `[control] socket`).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Write the final counters as JSON to this file at shutdown.
    #[arg(long, value_name = "FILE")]
    pub final_stats: Option<PathBuf>,
}

/// The clap command `mcrd` parses with (for man pages and completions).
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
