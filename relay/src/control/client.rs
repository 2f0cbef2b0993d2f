//! The client side of the control protocol, used by `mcrctl` and the tests.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Command, Request, Response};

/// How long `mcrctl` waits for a reply (a rule change waits for workers to adopt it).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Each cause is the error's `source()`, printed by the caller's chain (`{:#}`), so it is not
/// repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path} (is mcrd running, and may you use its socket?)")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("talking to {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} closed the connection without a reply")]
    NoReply { path: PathBuf },
    #[error("unreadable reply from {path}")]
    BadReply {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Sends one command and returns the daemon's response.
pub fn call(path: &Path, command: Command) -> Result<Response, ClientError> {
    let io_err = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(io_err)?;
    stream
        .set_write_timeout(Some(REPLY_TIMEOUT))
        .map_err(io_err)?;
    let mut line =
        serde_json::to_vec(&Request::new(command)).map_err(|e| io_err(io::Error::other(e)))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(io_err)?;
    if reply.is_empty() {
        return Err(ClientError::NoReply {
            path: path.to_path_buf(),
        });
    }
    serde_json::from_str(&reply).map_err(|source| ClientError::BadReply {
        path: path.to_path_buf(),
        source,
    })
}
