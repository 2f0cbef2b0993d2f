//! The control socket: a Unix stream socket, line-delimited JSON, bounded in every way
//! (connections, request size, time) so that a bad client cannot stop the daemon.
//!
//! * A request must be complete within [`REQUEST_TIMEOUT`] of the moment the server starts
//!   waiting for it: one deadline for the whole line, not per read, so a client trickling a
//!   byte at a time is cut off like one that sends nothing.
//! * At most [`MAX_CONNECTIONS`] are served at once. When all are taken, the connection that
//!   has waited longest for its request (not one whose request is being handled) is closed
//!   with a `busy` reply to make room, so a crowd of slow or idle clients cannot lock out
//!   `mcrctl`, which sends its request as soon as it connects. Only when every connection is
//!   in the middle of a request is a newcomer told `busy`.
//! * Accepting blocks in `poll(2)` on the listening socket (and a wake-up socket for
//!   shutdown): no polling interval, no latency per connection.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::audit::{Action, Origin, Peer};
use super::handler::Controller;
use super::protocol::{ErrorKind, Response, MAX_REQUEST_BYTES};
use crate::sys::poll;

/// Connections served at once (see the module doc for what happens to the next one).
pub const MAX_CONNECTIONS: usize = 16;
/// A client must send a complete request within this time of the server starting to wait
/// for it (a whole-request deadline, not a timeout per read).
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
    #[error(
        "control socket path {path} is {len} bytes long; a Unix socket path holds at most {max} \
         (sun_path): set [control] socket (or --socket) to a shorter path, e.g. under /run"
    )]
    TooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("control socket group `{0}` does not exist")]
    NoSuchGroup(String),
    #[error(
        "control socket path {path} is {kind}, not a socket; mcrd replaces only a stale socket \
         there: set [control] socket (or --socket) to another path, or move it away"
    )]
    NotASocket { path: PathBuf, kind: &'static str },
}

/// The longest path a Unix socket address holds: `sun_path` less its terminating NUL (107 on
/// Linux). A longer path would fail at bind with a message that names neither the path nor
/// the limit, so it is refused before.
pub const MAX_SOCKET_PATH_LEN: usize = std::mem::size_of::<libc::sockaddr_un>()
    - std::mem::offset_of!(libc::sockaddr_un, sun_path)
    - 1;

/// What is at the control socket path before the daemon binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketPath {
    /// Nothing: the daemon creates the socket.
    Free,
    /// A socket nobody listens on (a daemon that died): the daemon replaces it.
    Stale,
}

/// Checks the control socket path without changing anything. A path longer than a socket
/// address holds is an error naming its length and the limit. Only a socket is ever
/// replaced: anything else there (a regular file, perhaps a config named by mistake, a
/// directory, a symbolic link, which is not followed) is an error naming the path, and so is
/// a socket another daemon answers on.
pub fn check_path(path: &Path) -> Result<SocketPath, ServerError> {
    let len = path.as_os_str().len();
    let max = MAX_SOCKET_PATH_LEN;
    if len > max {
        return Err(ServerError::TooLong {
            path: path.to_path_buf(),
            len,
            max,
        });
    }
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
    /// Closing (dropping) this wakes the accept thread, which then stops.
    _wake: UnixStream,
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
            let gid = crate::sys::users::group_id(g)
                .ok_or_else(|| ServerError::NoSuchGroup(g.to_string()))?;
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err("chown"))?;
        }
        // Non-blocking only so that a connection gone between poll and accept cannot block
        // the loop; the loop itself sleeps in poll.
        listener
            .set_nonblocking(true)
            .map_err(io_err("set_nonblocking"))?;
        let (wake, woken) = UnixStream::pair().map_err(io_err("socketpair"))?;
        std::thread::Builder::new()
            .name("mcr-control".into())
            .spawn(move || accept_loop(listener, woken, controller))
            .map_err(io_err("spawning the server thread"))?;
        Ok(Self {
            path: path.to_path_buf(),
            _wake: wake,
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One connection being served.
struct Slot {
    id: u64,
    /// When the server started waiting for its current request.
    waiting_since: Instant,
    /// Waiting for (reading) a request, as opposed to handling one.
    waiting: bool,
    /// Set when the connection is closed to make room for a newer one.
    evicted: Arc<AtomicBool>,
    /// A handle on the socket, to shut its reading side down on eviction.
    stream: UnixStream,
}

/// The connections being served, shared by the accept thread and the connection threads.
#[derive(Default)]
struct Slots {
    list: Mutex<Vec<Slot>>,
    next_id: AtomicU64,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A panicking connection thread cannot leave the list inconsistent (every change is
        // one push, remove or field store), so a poisoned lock is still usable.
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for `stream`, making room by evicting the connection that has waited
    /// longest for its request; `None` when every slot is handling a request.
    fn admit(&self, stream: &UnixStream) -> Option<(u64, Arc<AtomicBool>)> {
        let handle = stream.try_clone().ok()?;
        let mut list = self.lock();
        if list.len() >= MAX_CONNECTIONS {
            let oldest = list
                .iter()
                .enumerate()
                .filter(|(_, s)| s.waiting)
                .min_by_key(|(_, s)| s.waiting_since)
                .map(|(i, _)| i)?;
            let victim = list.swap_remove(oldest);
            victim.evicted.store(true, Ordering::Relaxed);
            // Its thread sees end of input, finds the flag and says why before closing.
            let _ = victim.stream.shutdown(std::net::Shutdown::Read);
            tracing::debug!(
                "control socket full: closed the connection waiting longest for its request"
            );
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(AtomicBool::new(false));
        list.push(Slot {
            id,
            waiting_since: Instant::now(),
            waiting: true,
            evicted: Arc::clone(&evicted),
            stream: handle,
        });
        Some((id, evicted))
    }

    fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(s) = self.lock().iter_mut().find(|s| s.id == id) {
            s.waiting = waiting;
            s.waiting_since = Instant::now();
        }
    }

    fn release(&self, id: u64) {
        self.lock().retain(|s| s.id != id);
    }
}

fn accept_loop(listener: UnixListener, woken: UnixStream, controller: Arc<Mutex<Controller>>) {
    let slots = Arc::new(Slots::default());
    loop {
        let mut fds = [
            poll::pollfd(listener.as_raw_fd(), libc::POLLIN),
            poll::pollfd(woken.as_raw_fd(), libc::POLLIN),
        ];
        if let Err(e) = poll::poll(&mut fds, None) {
            tracing::warn!("control socket poll: {e}");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if fds[1].revents != 0 {
            // The server was dropped (its end of the pair closed): stop accepting.
            return;
        }
        match listener.accept() {
            Ok((stream, _)) => serve_in_thread(stream, &slots, &controller),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve_in_thread(stream: UnixStream, slots: &Arc<Slots>, controller: &Arc<Mutex<Controller>>) {
    let _ = stream.set_nonblocking(false);
    let Some((id, evicted)) = slots.admit(&stream) else {
        let mut s = stream;
        let _ = s.set_write_timeout(Some(REQUEST_TIMEOUT));
        let _ = write_response(
            &mut s,
            &Response::error(
                ErrorKind::Busy,
                "too many control requests in progress; try again",
            ),
        );
        return;
    };
    let controller = Arc::clone(controller);
    let thread_slots = Arc::clone(slots);
    let spawned = std::thread::Builder::new()
        .name("mcr-control-conn".into())
        .spawn(move || {
            let conn = Connection {
                slots: &thread_slots,
                id,
                evicted: &evicted,
            };
            if let Err(e) = serve_connection(stream, &controller, &conn) {
                tracing::debug!("control connection: {e}");
            }
            thread_slots.release(id);
        });
    if spawned.is_err() {
        slots.release(id);
    }
}

/// What a connection thread tells the slot table.
struct Connection<'a> {
    slots: &'a Slots,
    id: u64,
    evicted: &'a AtomicBool,
}

/// How reading one request ended.
enum ReadOutcome {
    /// A complete line (without its newline), or the last bytes before end of input.
    Line(Vec<u8>),
    /// End of input with nothing pending.
    Closed,
    TimedOut {
        partial: bool,
    },
    TooLarge,
}

/// Reads one request line from `stream` into `pending` (which keeps bytes of the next
/// request), all of it before `deadline`.
fn read_request(
    stream: &mut UnixStream,
    pending: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<ReadOutcome> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let rest = pending.split_off(pos + 1);
            let mut line = std::mem::replace(pending, rest);
            line.pop();
            return Ok(ReadOutcome::Line(line));
        }
        if pending.len() > MAX_REQUEST_BYTES {
            return Ok(ReadOutcome::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(ReadOutcome::TimedOut {
                partial: !pending.is_empty(),
            });
        }
        stream.set_read_timeout(Some(left))?;
        // Read at most one byte past the limit, so an oversize request is detected, not
        // buffered.
        let room = (MAX_REQUEST_BYTES + 1 - pending.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) if pending.is_empty() => return Ok(ReadOutcome::Closed),
            // The last line before end of input is served as a request.
            Ok(0) => return Ok(ReadOutcome::Line(std::mem::take(pending))),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn serve_connection(
    stream: UnixStream,
    controller: &Mutex<Controller>,
    conn: &Connection<'_>,
) -> io::Result<()> {
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    // Read once: the kernel took the credentials at connect, and they do not change.
    let origin = Origin::Socket(Peer::of(&stream).ok());
    let mut writer = stream.try_clone()?;
    let mut reader = stream;
    let mut pending = Vec::with_capacity(1024);
    loop {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let read = read_request(&mut reader, &mut pending, deadline)?;
        if conn.evicted.load(Ordering::Relaxed) {
            // Whatever was read, it was cut off: do not act on a fragment.
            return write_response(
                &mut writer,
                &Response::error(
                    ErrorKind::Busy,
                    "closed to make room for another control connection: every slot was \
                     taken and this one had waited longest for its request",
                ),
            );
        }
        let line = match read {
            ReadOutcome::Line(line) => line,
            ReadOutcome::Closed => return Ok(()),
            ReadOutcome::TimedOut { partial } => {
                if partial {
                    write_response(
                        &mut writer,
                        &Response::error(
                            ErrorKind::Timeout,
                            format!(
                                "request not completed within {} s",
                                REQUEST_TIMEOUT.as_secs()
                            ),
                        ),
                    )?;
                }
                return Ok(());
            }
            ReadOutcome::TooLarge => {
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
        };
        let request = line.strip_suffix(b"\r").unwrap_or(&line);
        if request.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        conn.slots.set_waiting(conn.id, false);
        // A ping is answered without the controller: it says the daemon answers, and must
        // not wait behind a reload or the fast path's re-plan of every rule.
        let (response, action) = match super::protocol::parse_request(request) {
            Err(reply) => (reply, None),
            Ok(req) if req.request == super::protocol::Command::Ping => {
                (super::handler::pong(), None)
            }
            Ok(req) => {
                let action = Action::of(&req.request);
                let response = match controller.lock() {
                    Ok(mut c) => c.handle(req),
                    Err(_) => Response::error(ErrorKind::Internal, "control state unavailable"),
                };
                (response, action)
            }
        };
        if let Some(action) = action {
            action.entry(origin, &response).log();
        }
        write_response(&mut writer, &response)?;
        conn.slots.set_waiting(conn.id, true);
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
