//! The Prometheus endpoint: `GET /metrics` over HTTP on `[metrics] listen`, off by default.
//!
//! One thread of its own, never on the packet path. Each scrape reads the counters with the
//! same [`collect`] a `mcrctl stats` request uses (so a scrape holds a worker no longer than a
//! stats read does, and the conservation laws hold in a scrape too) and renders them with
//! [`prometheus::render`], the function `mcrctl stats --prometheus` uses.
//!
//! Bounded in every way, so that a bad client cannot hurt the daemon: connections are served
//! one at a time (others wait in a listen backlog of [`BACKLOG`]), a request must arrive
//! whole within [`REQUEST_TIMEOUT`] and fit in [`MAX_REQUEST_BYTES`], and every connection is
//! closed after one response. The request is parsed with `httparse` (hyper's parser);
//! `tiny_http`, the usual small server, starts a thread per open connection without a
//! limit, which is the one thing this endpoint must not do.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dataplane::Shared;
use crate::stats::collect::{collect, Identity};
use crate::stats::prometheus;

/// Largest request (request line and headers) read; larger ones get 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most request headers parsed; more get 431.
pub const MAX_HEADERS: usize = 32;
/// A client must send its whole request within this time (and read the response within it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections the kernel queues while one is served.
pub const BACKLOG: i32 = 16;
/// How often the server thread looks at its stop flag while no client connects.
const STOP_POLL: Duration = Duration::from_millis(100);

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
    /// Listens on `addr` and serves the counters of `shared` from a thread of its own.
    pub fn start(
        addr: SocketAddr,
        shared: Arc<Shared>,
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
        let listener: TcpListener = socket.into();
        let local_addr = listener.local_addr().map_err(io_err("local_addr"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("mcr-metrics".into())
            .spawn(move || serve_forever(listener, &shared, &identity, &stop2))
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

fn serve_forever(listener: TcpListener, shared: &Shared, identity: &Identity, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if !readable(&listener, STOP_POLL) {
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = serve(stream, || {
                    prometheus::render(&collect(shared, identity, false))
                }) {
                    tracing::debug!("metrics connection from {peer}: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("metrics endpoint accept: {e}");
                std::thread::sleep(STOP_POLL);
            }
        }
    }
}

/// Waits up to `timeout` for a connection to accept.
fn readable(listener: &TcpListener, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && pfd.revents & libc::POLLIN != 0
}

/// A response: status line, content type, body.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Reply {
    fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
            allow: false,
        }
    }
}

/// Serves one request on `stream` and closes it. `metrics` renders the exposition.
pub fn serve(mut stream: TcpStream, metrics: impl FnOnce() -> String) -> io::Result<()> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head_only = false;
    let reply = match read_request(&mut stream, deadline)? {
        Request::Complete { method, path } => {
            head_only = method == "HEAD";
            route(&method, &path, metrics)
        }
        Request::TooLarge => Reply::text(
            "431 Request Header Fields Too Large",
            &format!("request larger than {MAX_REQUEST_BYTES} bytes or {MAX_HEADERS} headers"),
        ),
        Request::Bad(why) => Reply::text("400 Bad Request", why),
        Request::Closed => return Ok(()),
    };
    write_reply(&mut stream, &reply, head_only)
}

fn route(method: &str, path: &str, metrics: impl FnOnce() -> String) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Reply {
            status: "200 OK",
            content_type: prometheus::CONTENT_TYPE,
            body: metrics(),
            allow: false,
        },
        ("GET" | "HEAD", "/") => Reply::text("200 OK", "mcrd: the counters are at /metrics"),
        ("GET" | "HEAD", _) => Reply::text("404 Not Found", "not found; try /metrics"),
        _ => Reply {
            allow: true,
            ..Reply::text("405 Method Not Allowed", "only GET and HEAD")
        },
    }
}

enum Request {
    Complete {
        method: String,
        path: String,
    },
    TooLarge,
    Bad(&'static str),
    /// The client closed or timed out before sending a request line: nothing to answer.
    Closed,
}

/// Reads until the end of the request head, within `deadline` and [`MAX_REQUEST_BYTES`].
fn read_request(stream: &mut TcpStream, deadline: Instant) -> io::Result<Request> {
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(if len == 0 {
                Request::Closed
            } else {
                Request::Bad("request not completed in time")
            });
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf[len..]) {
            Ok(n) => n,
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
        };
        if n == 0 {
            return Ok(if len == 0 {
                Request::Closed
            } else {
                Request::Bad("connection closed inside the request")
            });
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or_default().to_string();
                return Ok(Request::Complete {
                    method,
                    path: req.path.unwrap_or_default().to_string(),
                });
            }
            Ok(httparse::Status::Partial) if len == buf.len() => return Ok(Request::TooLarge),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Ok(Request::TooLarge),
            Err(_) => return Ok(Request::Bad("not an HTTP/1.x request")),
        }
    }
}

/// Writes `reply`; for HEAD (`head_only`) the headers GET would send, Content-Length included,
/// and no body.
fn write_reply(stream: &mut TcpStream, reply: &Reply, head_only: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    if reply.allow {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(reply.body.as_bytes())?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
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
        let shared = Arc::new(Shared::new(2, true));
        shared.workers[1].rx.add(5);
        let identity = Identity::new(
            None,
            DataplaneConfig {
                workers: 2,
                ..Default::default()
            },
        )
        .unwrap();
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), shared, identity).unwrap()
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
        // A client that never finishes its request is cut off after REQUEST_TIMEOUT, and the
        // next one is served.
        let mut slow = TcpStream::connect(a).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        let started = Instant::now();
        let r = exchange(a, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        assert!(started.elapsed() >= REQUEST_TIMEOUT - Duration::from_millis(100));
        let mut rest = String::new();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        slow.read_to_string(&mut rest).unwrap();
        assert!(rest.starts_with("HTTP/1.1 400 "), "{rest}");
    }

    #[test]
    fn a_taken_port_is_an_error_naming_the_address() {
        let s = server();
        let e = MetricsServer::start(
            s.local_addr(),
            Arc::new(Shared::new(1, true)),
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
