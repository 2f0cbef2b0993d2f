//! `mcrd`: the multicast relay daemon.
//!
//! Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 failed to start or failed at run time,
//! 2 bad command line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::{prelude::*, reload, EnvFilter};

use relay::cli::mcrd::Args;
use relay::daemon::{self, Options};
use relay::logging;

fn main() -> ExitCode {
    let args = Args::parse();
    let (filter, handle) = reload::Layer::new(EnvFilter::new("info"));
    // Under systemd, stderr is the journal: priority prefixes, no timestamps, no colours.
    let journal = logging::stderr_is_journal();
    let journal_layer = journal.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .event_format(logging::JournalFormat)
    });
    let plain_layer = (!journal).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journal_layer)
        .with(plain_layer)
        .init();
    let set_log_level = Box::new(move |level: &str| {
        let f =
            EnvFilter::try_new(level).map_err(|e| format!("`{level}` is not a log filter: {e}"))?;
        handle.reload(f).map_err(|e| e.to_string())
    });
    match daemon::run(Options {
        config_path: args.config,
        socket: args.socket,
        final_stats: args.final_stats,
        set_log_level,
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let priority = if journal { "<3>" } else { "" };
            eprintln!("{priority}mcrd: {e:#}");
            ExitCode::from(1)
        }
    }
}
