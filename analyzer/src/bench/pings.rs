//! `scripts/bench-rules.sh`'s control-socket round trips: the wall time of whole `mcrctl ping`
//! processes (fork, exec, connect, reply: under load mostly process start), and, where python3
//! was there to measure it, the daemon's own reply on the socket without a process per ping.
//! Both are milliseconds, one a line; a ping that failed is written as a huge time by the
//! script, so it shows in the tail.

use std::path::Path;

use super::{read_samples, Tail};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Pings {
    /// `mcrctl ping` processes, ms.
    pub process: Tail,
    /// Round trips on the socket itself, ms.
    pub socket: Option<Tail>,
}

fn tail(path: &Path) -> Result<Tail> {
    Tail::of(&read_samples(path)?)
        .ok_or_else(|| Error::format(path, "no round trips: one time in ms a line"))
}

pub fn pings(process: &Path, socket: Option<&Path>) -> Result<Pings> {
    Ok(Pings {
        process: tail(process)?,
        socket: socket.map(tail).transpose()?,
    })
}
