//! The HTTP of the `/metrics` endpoint without sockets: what a request head says
//! ([`parse_head`]), which reply it gets ([`route`]) and the bytes of that reply
//! ([`Reply::to_bytes`]). The server loop in `metrics.rs` only moves bytes and keeps time.

use crate::stats::prometheus;

/// Largest request head (request line and headers) read; a larger one gets 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most request headers parsed; more get 431.
pub const MAX_HEADERS: usize = 32;

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A whole request head.
    Complete { method: String, path: String },
    /// Not the whole head yet; more bytes may complete it.
    Partial,
    /// Over [`MAX_REQUEST_BYTES`] or [`MAX_HEADERS`]: 431.
    TooLarge,
    /// Not HTTP/1.x: 400.
    Bad(&'static str),
}

/// Parses the first `buf.len()` bytes of a request (`buf` is at most [`MAX_REQUEST_BYTES`]).
pub fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => Head::Complete {
            method: req.method.unwrap_or_default().to_string(),
            path: req.path.unwrap_or_default().to_string(),
        },
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_BYTES => Head::TooLarge,
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
        Err(_) => Head::Bad("not an HTTP/1.x request"),
    }
}

/// A response: status line, content type, body.
#[derive(Debug)]
pub struct Reply {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
    /// Send `Allow: GET, HEAD` (405).
    pub allow: bool,
    /// HEAD: the headers GET would send, `Content-Length` included, and no body.
    pub head_only: bool,
}

impl Reply {
    pub fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
            allow: false,
            head_only: false,
        }
    }

    /// The reply to a head that is not [`Head::Complete`]; `None` for [`Head::Partial`].
    pub fn for_error(head: &Head) -> Option<Self> {
        match head {
            Head::TooLarge => Some(Self::text(
                "431 Request Header Fields Too Large",
                &format!("request larger than {MAX_REQUEST_BYTES} bytes or {MAX_HEADERS} headers"),
            )),
            Head::Bad(why) => Some(Self::text("400 Bad Request", why)),
            Head::Complete { .. } | Head::Partial => None,
        }
    }

    /// Status line, headers and (unless `head_only`) body, as sent.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The reply to a complete request; `metrics` renders the exposition (only called for
/// `/metrics`).
pub fn route(method: &str, path: &str, metrics: impl FnOnce() -> String) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    let head_only = method == "HEAD";
    let reply = match (method, path) {
        ("GET" | "HEAD", "/metrics") => Reply {
            status: "200 OK",
            content_type: prometheus::CONTENT_TYPE,
            body: metrics(),
            allow: false,
            head_only: false,
        },
        ("GET" | "HEAD", "/") => Reply::text("200 OK", "mcrd: the counters are at /metrics"),
        ("GET" | "HEAD", _) => Reply::text("404 Not Found", "not found; try /metrics"),
        _ => Reply {
            allow: true,
            ..Reply::text("405 Method Not Allowed", "only GET and HEAD")
        },
    };
    Reply { head_only, ..reply }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_complete_partial_too_large_or_bad() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Complete {
                method: "GET".into(),
                path: "/metrics".into()
            }
        );
        assert_eq!(parse_head(b"GET /metr"), Head::Partial);
        assert_eq!(
            parse_head(b"\x16\x03\x01 not http\r\n\r\n"),
            Head::Bad("not an HTTP/1.x request")
        );
        let mut long = b"GET /".to_vec();
        long.resize(MAX_REQUEST_BYTES, b'a');
        assert_eq!(parse_head(&long), Head::TooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Head::TooLarge
        );
    }

    #[test]
    fn head_requests_get_get_s_length_and_no_body() {
        let r = route("HEAD", "/metrics?x=1", || "m 1\n".into()).to_bytes();
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("Content-Length: 4\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        let r = String::from_utf8(route("PUT", "/metrics", String::new).to_bytes()).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD"),
            "{r}"
        );
    }
}
