//! The control socket: a Unix stream socket, line-delimited JSON, bounded in every way
//! (connections, request size, time) so that a bad client cannot stop the daemon.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::handler::Controller;
use super::protocol::{ErrorKind, Response, MAX_REQUEST_BYTES};

/// Connections served at once; more get a `busy` reply.
pub const MAX_CONNECTIONS: usize = 16;
/// A client must send a complete request within this time.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("control socket {0} is in use by a running daemon")]
    InUse(PathBuf),
    #[error("control socket {path}: {step}")]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("control socket group `{0}` does not exist")]
    NoSuchGroup(String),
    #[error(
        "control socket path {path} is {kind}, not a socket; mcrd replaces only a stale socket \
         there: set [control] socket (or --socket) to another path, or move it away"
    )]
    NotASocket { path: PathBuf, kind: &'static str },
}

/// What is at the control socket path before the daemon binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketPath {
    /// Nothing: the daemon creates the socket.
    Free,
    /// A socket nobody listens on (a daemon that died): the daemon replaces it.
    Stale,
}

/// Checks the control socket path without changing anything. Only a socket is ever
/// replaced: anything else there (a regular file, perhaps a config named by mistake, a
/// directory, a symbolic link, which is not followed) is an error naming the path, and so is
/// a socket another daemon answers on.
pub fn check_path(path: &Path) -> Result<SocketPath, ServerError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SocketPath::Free),
        Err(source) => {
            return Err(ServerError::Io {
                path: path.to_path_buf(),
                step: "checking what is at the path",
                source,
            })
        }
    };
    let t = meta.file_type();
    if !t.is_socket() {
        let kind = if t.is_file() {
            "a regular file"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_symlink() {
            "a symbolic link"
        } else {
            "a device, FIFO or other special file"
        };
        return Err(ServerError::NotASocket {
            path: path.to_path_buf(),
            kind,
        });
    }
    if UnixStream::connect(path).is_ok() {
        return Err(ServerError::InUse(path.to_path_buf()));
    }
    Ok(SocketPath::Stale)
}

/// A running control server; the socket file is removed on drop.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl ControlServer {
    pub fn start(
        path: &Path,
        mode: u32,
        group: Option<&str>,
        controller: Arc<Mutex<Controller>>,
    ) -> Result<Self, ServerError> {
        let io_err = |step: &'static str| {
            let path = path.to_path_buf();
            move |source| ServerError::Io { path, step, source }
        };
        if check_path(path)? == SocketPath::Stale {
            std::fs::remove_file(path).map_err(io_err("removing stale socket"))?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err("creating its directory"))?;
        }
        let listener = UnixListener::bind(path).map_err(io_err("bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod"))?;
        if let Some(g) = group {
            let gid = group_id(g).ok_or_else(|| ServerError::NoSuchGroup(g.to_string()))?;
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err("chown"))?;
        }
        listener
            .set_nonblocking(true)
            .map_err(io_err("set_nonblocking"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("mcr-control".into())
            .spawn(move || accept_loop(listener, controller, stop2))
            .map_err(io_err("spawning the server thread"))?;
        Ok(Self {
            path: path.to_path_buf(),
            stop,
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam returns NULL or a pointer to static storage valid until the next call;
    // we read one field immediately. The control thread is not started yet, so no other
    // thread of ours calls getgrnam concurrently.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return None;
    }
    // SAFETY: non-null result of getgrnam.
    Some(unsafe { (*gr).gr_gid })
}

fn accept_loop(listener: UnixListener, controller: Arc<Mutex<Controller>>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    let mut s = stream;
                    let _ = s.set_write_timeout(Some(REQUEST_TIMEOUT));
                    let _ = write_response(
                        &mut s,
                        &Response::error(
                            ErrorKind::Busy,
                            "too many control connections; try again",
                        ),
                    );
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let controller = Arc::clone(&controller);
                let active2 = Arc::clone(&active);
                let spawned = std::thread::Builder::new()
                    .name("mcr-control-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve(stream, &controller) {
                            tracing::debug!("control connection: {e}");
                        }
                        active2.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves requests on one connection until it closes, times out or misbehaves.
pub fn serve(stream: UnixStream, controller: &Mutex<Controller>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        // Read at most one byte past the limit so an oversize request is detected, not buffered.
        let n = match (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if !line.is_empty() {
                    write_response(
                        &mut writer,
                        &Response::error(ErrorKind::Timeout, "request not completed in time"),
                    )?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        // A line without its newline is either oversize or the last one before EOF (which is
        // served as a request).
        if line.last() != Some(&b'\n') && line.len() > MAX_REQUEST_BYTES {
            write_response(
                &mut writer,
                &Response::error(
                    ErrorKind::TooLarge,
                    format!("request exceeds {MAX_REQUEST_BYTES} bytes"),
                ),
            )?;
            discard_rest(&mut reader, &writer);
            return Ok(());
        }
        let request = line.strip_suffix(b"\n").unwrap_or(&line);
        let request = request.strip_suffix(b"\r").unwrap_or(request);
        if request.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let response = match controller.lock() {
            Ok(mut c) => c.handle_line(request),
            Err(_) => Response::error(ErrorKind::Internal, "control state unavailable"),
        };
        write_response(&mut writer, &response)?;
    }
}

/// Most bytes read and thrown away after refusing an oversize request.
const MAX_DISCARD_BYTES: u64 = 16 * 1024 * 1024;

/// After refusing an oversize request: a Unix socket closed with unread data resets its peer,
/// which could then lose our reply. So end our side, and read what the client is still
/// sending (bounded in bytes, and in time by the read timeout) before closing.
fn discard_rest(reader: &mut impl Read, writer: &UnixStream) {
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = io::copy(&mut reader.take(MAX_DISCARD_BYTES), &mut io::sink());
}

fn write_response(w: &mut impl Write, r: &Response) -> io::Result<()> {
    let mut out = serde_json::to_vec(r).map_err(io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out)
}
