//! The client side of the control protocol, used by `mcrctl` and the tests.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::protocol::{Command, ErrorKind, Request, Response};

/// How long `mcrctl` waits for a reply (a rule change waits for workers to adopt it).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`call`] keeps trying while the daemon answers `busy`. A `busy` reply means the
/// request was not acted on (every slot was handling a request, or this connection was
/// evicted before its request was complete), so sending it again is safe.
pub const BUSY_RETRY_FOR: Duration = Duration::from_secs(3);

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

/// Sends one command and returns the daemon's response, trying again with a growing pause
/// for up to [`BUSY_RETRY_FOR`] while the daemon says it is busy.
pub fn call(path: &Path, command: Command) -> Result<Response, ClientError> {
    let give_up = Instant::now() + BUSY_RETRY_FOR;
    let mut pause = Duration::from_millis(10);
    loop {
        let response = call_once(path, &command)?;
        let busy = response.error.as_ref().map(|e| e.kind) == Some(ErrorKind::Busy);
        if !busy || Instant::now() + pause > give_up {
            return Ok(response);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Sends one command over one connection and returns the daemon's response, `busy` included.
pub fn call_once(path: &Path, command: &Command) -> Result<Response, ClientError> {
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
    let mut line = serde_json::to_vec(&Request::new(command.clone()))
        .map_err(|e| io_err(io::Error::other(e)))?;
    line.push(b'\n');
    let mut reply = String::new();
    if let Err(e) = stream.write_all(&line) {
        // A daemon that refuses a connection (`busy`) answers and closes at once, possibly
        // before our request is written: its reply still waits in our receive queue.
        if refused_midway(&e) {
            let _ = BufReader::new(&stream).read_line(&mut reply);
        }
        if reply.is_empty() {
            return Err(io_err(e));
        }
    } else {
        BufReader::new(&stream)
            .read_line(&mut reply)
            .map_err(io_err)?;
    }
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

/// Whether a failed write means the daemon closed the connection (after answering, maybe).
fn refused_midway(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::Reply;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    fn write_line(stream: &mut UnixStream, r: &Response) {
        let mut out = serde_json::to_vec(r).unwrap();
        out.push(b'\n');
        stream.write_all(&out).unwrap();
    }

    /// A daemon that answers `busy` to its first `busy_first` connections without reading
    /// them (as the server's refusal does), then answers pings: (what the client got, how
    /// many connections the daemon saw).
    fn against_busy_daemon(busy_first: usize, retrying: bool) -> (Response, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let daemon = std::thread::spawn(move || {
            let mut seen = 0;
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                seen += 1;
                if seen <= busy_first {
                    write_line(&mut stream, &Response::error(ErrorKind::Busy, "full"));
                    continue;
                }
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while stream.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
                    line.push(byte[0]);
                }
                assert!(crate::control::protocol::parse_request(&line).is_ok());
                let pong = Reply::Pong {
                    pid: 1,
                    version: "test".into(),
                };
                write_line(&mut stream, &Response::ok(pong));
                break;
            }
            seen
        });
        let response = if retrying {
            call(&path, Command::Ping).unwrap()
        } else {
            call_once(&path, &Command::Ping).unwrap()
        };
        if !retrying {
            // Let the daemon thread finish.
            let _ = call_once(&path, &Command::Ping);
        }
        (response, daemon.join().unwrap())
    }

    #[test]
    fn call_retries_while_the_daemon_is_busy() {
        let (response, connections) = against_busy_daemon(3, true);
        assert!(response.ok, "{response:?}");
        assert_eq!(connections, 4);
    }

    #[test]
    fn call_once_reports_busy_as_the_daemon_said_it() {
        let (response, _) = against_busy_daemon(1, false);
        assert_eq!(response.error.map(|e| e.kind), Some(ErrorKind::Busy));
    }
}
