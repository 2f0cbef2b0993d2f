//! The Prometheus endpoint: `GET /metrics` over HTTP on `[metrics] listen`, off by default.
//!
//! One thread of its own, never on the packet path. Each scrape reads the counters with the
//! same [`crate::stats::collect::collect`] a `mcrctl stats` request uses (so a scrape holds a worker no longer than a
//! stats read does, and the conservation laws hold in a scrape too) and renders them with
//! [`prometheus::render`], the function `mcrctl stats --prometheus` uses.
//!
//! Bounded in every way, so that a few bad clients cannot blind the endpoint: one `poll(2)`
//! loop over non-blocking sockets serves up to [`MAX_CONNECTIONS`] at once, so an idle or slow
//! client costs the others nothing; a request head must arrive whole within
//! [`HEADER_TIMEOUT`] and fit in [`MAX_REQUEST_BYTES`] (else 400 or 431); a response must be
//! taken within [`RESPONSE_TIMEOUT`]; every connection is closed after one response. When all
//! slots are taken, the connection that has waited longest for its request head is closed to
//! make room (a scraper sends its request at once, a slowloris client never does); if every
//! slot is writing a response, the new connection is closed at once. Each such closing is
//! counted in `mcr_metrics_connections_closed_total{reason}`. After an error reply the rest
//! of the request is read and dropped for up to [`LINGER_TIMEOUT`] (a "lingering close"), so
//! that a client still sending an over-long head reads its 431 instead of a reset.
//!
//! Requests are parsed with `httparse` (hyper's parser, in [`http`]). No server crate fits:
//! `tiny_http` (and `rouille` on it) starts a thread per open connection without a limit
//! and has no header deadline; hyper-based servers need an async runtime in the daemon.

pub mod http;
pub mod process;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::runtime::Runtime;
use crate::stats::collect::Identity;
use crate::stats::prometheus;
use crate::sys::poll;

pub use http::{MAX_HEADERS, MAX_REQUEST_BYTES};

/// Connections served at once. Each holds at most [`MAX_REQUEST_BYTES`] of request and one
/// rendered response; 64 is many times the scrapers a relay has (Prometheus keeps one
/// connection per target), and few enough to poll in one loop.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its whole request head within this time of connecting.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// A client must take the whole response within this time of its request: Prometheus's
/// default `scrape_timeout` (10 s), after which it has given up on the scrape anyway.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// After an error reply, how long the rest of the request is read and dropped.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections the kernel queues until the loop accepts them.
pub const BACKLOG: i32 = 128;
/// How often the server thread looks at its stop flag while nothing happens.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Bytes read per `read(2)` while lingering.
const DRAIN_CHUNK: usize = 16 * 1024;

/// Why the endpoint could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("[metrics] listen {addr}: {step}: {source}")]
    Io {
        addr: SocketAddr,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A running endpoint; stopped (and its thread joined) on drop.
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and serves the counters of `runtime` from a thread of its own.
    pub fn start(
        addr: SocketAddr,
        runtime: Arc<Runtime>,
        identity: Identity,
    ) -> Result<Self, MetricsError> {
        let io_err = |step: &'static str| move |source| MetricsError::Io { addr, step, source };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .map_err(io_err("socket"))?;
        socket
            .set_reuse_address(true)
            .map_err(io_err("SO_REUSEADDR"))?;
        socket.bind(&addr.into()).map_err(io_err("bind"))?;
        socket.listen(BACKLOG).map_err(io_err("listen"))?;
        socket.set_nonblocking(true).map_err(io_err("O_NONBLOCK"))?;
        let listener: TcpListener = socket.into();
        let local_addr = listener.local_addr().map_err(io_err("local_addr"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("mcr-metrics".into())
            .spawn(move || {
                let mut server = Server::new(listener);
                while !stop2.load(Ordering::Relaxed) {
                    server.turn(STOP_POLL, |own| {
                        let mut text = prometheus::render(&runtime.stats(&identity, false));
                        own.render(&mut text);
                        process::render(&mut text);
                        text
                    });
                }
            })
            .map_err(io_err("spawning the server thread"))?;
        Ok(Self {
            local_addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port is the kernel's choice when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The endpoint's own counts: connections it closed before (or instead of) a whole response.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerCounts {
    /// Connections accepted.
    pub accepted: u64,
    /// Closed to make room while waiting for their request head (all slots taken).
    pub evicted: u64,
    /// Closed at once because every slot was writing a response.
    pub refused: u64,
    /// Closed because the request head did not arrive within [`HEADER_TIMEOUT`].
    pub header_timeouts: u64,
    /// Closed because the response was not taken within [`RESPONSE_TIMEOUT`].
    pub response_timeouts: u64,
}

impl ServerCounts {
    /// Appends the counts to an exposition, in its format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP mcr_metrics_connections_accepted_total Connections the /metrics endpoint accepted.\n\
             # TYPE mcr_metrics_connections_accepted_total counter\n\
             mcr_metrics_connections_accepted_total {}",
            self.accepted
        );
        let _ = writeln!(
            out,
            "# HELP mcr_metrics_connections_closed_total Connections the /metrics endpoint closed without a whole response, by reason.\n\
             # TYPE mcr_metrics_connections_closed_total counter"
        );
        for (reason, n) in [
            ("full_evicted", self.evicted),
            ("full_refused", self.refused),
            ("header_timeout", self.header_timeouts),
            ("response_timeout", self.response_timeouts),
        ] {
            let _ = writeln!(
                out,
                "mcr_metrics_connections_closed_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
}

/// Where a connection is.
enum State {
    /// Waiting for its request head; `len` bytes of `buf` received.
    Reading { buf: Box<[u8]>, len: usize },
    /// Writing `out[pos..]`; `linger` after an error reply.
    Writing {
        out: Vec<u8>,
        pos: usize,
        deadline: Instant,
        linger: bool,
    },
    /// Reply sent and write side shut; reading and dropping the rest of the request.
    Lingering { deadline: Instant },
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// When it was accepted (the head's deadline runs from here).
    since: Instant,
    state: State,
}

/// What one step on a connection led to.
enum Step {
    Keep,
    Close,
}

/// The poll loop's state: the listener, the open connections, the counts.
struct Server {
    listener: TcpListener,
    conns: Vec<Conn>,
    counts: ServerCounts,
}

impl Server {
    fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            conns: Vec::with_capacity(MAX_CONNECTIONS),
            counts: ServerCounts::default(),
        }
    }

    /// Waits up to `wait` for something to do and does it. `metrics` renders the exposition
    /// (given the server's own counts to append).
    fn turn(&mut self, wait: Duration, mut metrics: impl FnMut(&ServerCounts) -> String) {
        let now = Instant::now();
        let mut wait = wait;
        for c in &self.conns {
            wait = wait.min(c.deadline().saturating_duration_since(now));
        }
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        fds.push(poll::pollfd(self.listener.as_raw_fd(), libc::POLLIN));
        for c in &self.conns {
            let events = match c.state {
                State::Writing { .. } => libc::POLLOUT,
                State::Reading { .. } | State::Lingering { .. } => libc::POLLIN,
            };
            fds.push(poll::pollfd(c.stream.as_raw_fd(), events));
        }
        // Rounded up to whole milliseconds, so a deadline 0.4 ms away does not spin. An
        // interrupted poll reads as nothing ready: deadlines are still checked below.
        if poll::poll(&mut fds, Some(wait)).is_err() {
            return;
        }
        let now = Instant::now();
        // Connections first (their indices match `fds[1..]`), then new ones.
        let mut keep = Vec::with_capacity(self.conns.len());
        for (c, pfd) in std::mem::take(&mut self.conns).into_iter().zip(&fds[1..]) {
            let mut c = c;
            let step = if pfd.revents != 0 {
                c.progress(&self.counts, &mut metrics)
            } else {
                Step::Keep
            };
            match step {
                Step::Close => {}
                Step::Keep if c.deadline() <= now => self.count_expiry(&c),
                Step::Keep => keep.push(c),
            }
        }
        self.conns = keep;
        if fds[0].revents != 0 {
            self.accept_all(now);
        }
    }

    fn count_expiry(&mut self, c: &Conn) {
        match c.state {
            State::Reading { len, .. } => {
                self.counts.header_timeouts += 1;
                if len > 0 {
                    // Best effort, non-blocking: a few bytes into an empty send buffer.
                    let reply = http::Reply::text(
                        "408 Request Timeout",
                        &format!("no whole request head within {HEADER_TIMEOUT:?}"),
                    );
                    let _ = (&c.stream).write(&reply.to_bytes());
                }
                tracing::debug!(
                    "metrics connection from {}: no whole request head within {:?} ({len} bytes)",
                    c.peer,
                    HEADER_TIMEOUT
                );
            }
            State::Writing { pos, ref out, .. } => {
                self.counts.response_timeouts += 1;
                tracing::debug!(
                    "metrics connection from {}: response not taken within {:?} ({pos} of {} bytes)",
                    c.peer,
                    RESPONSE_TIMEOUT,
                    out.len()
                );
            }
            State::Lingering { .. } => {}
        }
    }

    /// Accepts every waiting connection, making room as the module docs say.
    fn accept_all(&mut self, now: Instant) {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the next turn tries again; log it once a turn.
                    tracing::warn!("metrics endpoint accept: {e}");
                    return;
                }
            };
            self.counts.accepted += 1;
            if self.conns.len() >= MAX_CONNECTIONS {
                let oldest_reading = self
                    .conns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| matches!(c.state, State::Reading { .. }))
                    .min_by_key(|(_, c)| c.since)
                    .map(|(i, _)| i);
                match oldest_reading {
                    Some(i) => {
                        let old = self.conns.swap_remove(i);
                        tracing::debug!(
                            "metrics connection from {}: closed to make room ({MAX_CONNECTIONS} open)",
                            old.peer
                        );
                        self.counts.evicted += 1;
                    }
                    None => {
                        self.counts.refused += 1;
                        tracing::debug!(
                            "metrics connection from {peer}: refused, {MAX_CONNECTIONS} responses being written"
                        );
                        continue;
                    }
                }
            }
            if let Err(e) = stream
                .set_nonblocking(true)
                .and_then(|()| stream.set_nodelay(true))
            {
                tracing::debug!("metrics connection from {peer}: {e}");
                continue;
            }
            self.conns.push(Conn {
                stream,
                peer,
                since: now,
                state: State::Reading {
                    buf: vec![0; MAX_REQUEST_BYTES].into_boxed_slice(),
                    len: 0,
                },
            });
        }
    }
}

impl Conn {
    fn deadline(&self) -> Instant {
        match self.state {
            State::Reading { .. } => self.since + HEADER_TIMEOUT,
            State::Writing { deadline, .. } | State::Lingering { deadline } => deadline,
        }
    }

    /// Reads, writes or drains as far as the socket allows without blocking.
    fn progress(
        &mut self,
        counts: &ServerCounts,
        metrics: &mut impl FnMut(&ServerCounts) -> String,
    ) -> Step {
        match self.step(counts, metrics) {
            Ok(step) => step,
            Err(e) => {
                tracing::debug!("metrics connection from {}: {e}", self.peer);
                Step::Close
            }
        }
    }

    fn step(
        &mut self,
        counts: &ServerCounts,
        metrics: &mut impl FnMut(&ServerCounts) -> String,
    ) -> io::Result<Step> {
        loop {
            match &mut self.state {
                State::Reading { buf, len } => {
                    let n = match self.stream.read(&mut buf[*len..]) {
                        Ok(n) => n,
                        Err(e) if would_block(&e) => return Ok(Step::Keep),
                        Err(e) => return Err(e),
                    };
                    if n == 0 {
                        if *len == 0 {
                            return Ok(Step::Close);
                        }
                        let reply = http::Reply::text(
                            "400 Bad Request",
                            "connection closed inside the request",
                        );
                        self.reply(&reply, true);
                        continue;
                    }
                    *len += n;
                    let head = http::parse_head(&buf[..*len]);
                    match head {
                        http::Head::Partial => {}
                        http::Head::Complete { method, path } => {
                            let reply = http::route(&method, &path, || metrics(counts));
                            self.reply(&reply, false);
                        }
                        other => {
                            // TooLarge or Bad: each has a reply.
                            if let Some(reply) = http::Reply::for_error(&other) {
                                self.reply(&reply, true);
                            }
                        }
                    }
                }
                State::Writing {
                    out, pos, linger, ..
                } => {
                    if *pos == out.len() {
                        let _ = self.stream.shutdown(Shutdown::Write);
                        if !*linger {
                            return Ok(Step::Close);
                        }
                        self.state = State::Lingering {
                            deadline: Instant::now() + LINGER_TIMEOUT,
                        };
                        continue;
                    }
                    match self.stream.write(&out[*pos..]) {
                        Ok(n) => *pos += n,
                        Err(e) if would_block(&e) => return Ok(Step::Keep),
                        Err(e) => return Err(e),
                    }
                }
                State::Lingering { .. } => {
                    let mut sink = [0u8; DRAIN_CHUNK];
                    match self.stream.read(&mut sink) {
                        Ok(0) => return Ok(Step::Close),
                        Ok(_) => {}
                        Err(e) if would_block(&e) => return Ok(Step::Keep),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    fn reply(&mut self, reply: &http::Reply, linger: bool) {
        self.state = State::Writing {
            out: reply.to_bytes(),
            pos: 0,
            deadline: Instant::now() + RESPONSE_TIMEOUT,
            linger,
        };
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DataplaneConfig;

    /// Sends `request` to a server on loopback and returns the whole response.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(request).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    fn server() -> MetricsServer {
        let runtime = Arc::new(Runtime::without_workers_running(2, true));
        runtime.plane.workers[1].rx.add(5);
        let identity = Identity::new(
            None,
            DataplaneConfig {
                workers: 2,
                ..Default::default()
            },
        )
        .unwrap();
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), runtime, identity).unwrap()
    }

    #[test]
    fn get_metrics_serves_the_live_counters() {
        let s = server();
        let r = exchange(s.local_addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(prometheus::CONTENT_TYPE), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(
            body.contains("mcr_rx_datagrams_total{worker=\"1\"} 5\n"),
            "{body}"
        );
        // HEAD: same headers, no body.
        let r = exchange(s.local_addr(), b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && body.is_empty(),
            "{r}"
        );
    }

    #[test]
    fn bad_requests_get_an_error_and_the_server_keeps_serving() {
        let s = server();
        let a = s.local_addr();
        let r = exchange(a, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD"),
            "{r}"
        );
        let r = exchange(a, b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = exchange(a, b"\x16\x03\x01 not http\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_BYTES)
        );
        let r = exchange(a, huge.as_bytes());
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let r = exchange(a, format!("GET /metrics HTTP/1.1\r\n{many}\r\n").as_bytes());
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        // A client that never finishes its request does not hold the next one, and is cut
        // off with a 408 after HEADER_TIMEOUT.
        let mut slow = TcpStream::connect(a).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        let started = Instant::now();
        let r = exchange(a, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        assert!(
            started.elapsed() < HEADER_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
        let mut rest = String::new();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        slow.read_to_string(&mut rest).unwrap();
        assert!(rest.starts_with("HTTP/1.1 408 "), "{rest}");
        assert!(started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(100));
    }

    /// A 1 MB request line: the client writes all of it, then reads a 431 (not a reset).
    #[test]
    fn a_megabyte_request_line_gets_431_not_a_reset() {
        let s = server();
        let line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(1 << 20));
        let r = exchange(s.local_addr(), line.as_bytes());
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    }

    /// Idle connections beyond the slots: the oldest idle one makes room, scrapes stay quick,
    /// and the closings are counted in the exposition.
    #[test]
    fn idle_connections_beyond_the_slots_make_room_for_scrapes() {
        let s = server();
        let a = s.local_addr();
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 8)
            .map(|_| TcpStream::connect(a).unwrap())
            .collect();
        for _ in 0..5 {
            let started = Instant::now();
            let r = exchange(a, b"GET /metrics HTTP/1.1\r\n\r\n");
            assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
            // Generous: the old server took 2 s per idle connection ahead of a scrape.
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        }
        let r = exchange(a, b"GET /metrics HTTP/1.1\r\n\r\n");
        let evicted: u64 = r
            .lines()
            .find_map(|l| {
                l.strip_prefix("mcr_metrics_connections_closed_total{reason=\"full_evicted\"} ")
            })
            .unwrap()
            .parse()
            .unwrap();
        assert!(evicted > 8, "{evicted}\n{r}");
        drop(idle);
    }

    /// A client that reads its (large) response slowly holds only its own slot.
    #[test]
    fn a_slow_reader_does_not_hold_other_scrapes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let a = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        // 8 MB of exposition: far more than the socket buffers hold.
        let big = "x 1\n".repeat(2 << 20);
        let t = std::thread::spawn(move || {
            let mut server = Server::new(listener);
            while !stop2.load(Ordering::Relaxed) {
                server.turn(STOP_POLL, |_| big.clone());
            }
        });
        let mut slow = TcpStream::connect(a).unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut first = [0u8; 1024];
        slow.read_exact(&mut first).unwrap();
        for _ in 0..3 {
            let started = Instant::now();
            let r = exchange(a, b"GET /metrics HTTP/1.1\r\n\r\n");
            assert!(
                r.starts_with("HTTP/1.1 200 ") && r.len() > 8 << 20,
                "{}",
                r.len()
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn a_taken_port_is_an_error_naming_the_address() {
        let s = server();
        let e = MetricsServer::start(
            s.local_addr(),
            Arc::new(Runtime::without_workers_running(1, true)),
            Identity::new(None, DataplaneConfig::default()).unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains(&s.local_addr().to_string()) && e.contains("bind"),
            "{e}"
        );
    }
}
