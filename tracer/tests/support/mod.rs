//! Shared by the integration tests that stand up HTTP receivers
//! (`export.rs`, `otlp_push.rs`): included with `mod support;`.

use std::{
    io::BufRead,
    net::{TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

/// A non-blocking listener on a free port of 127.0.0.1 (for [`accept`])
/// and its address.
pub fn listen() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    l.set_nonblocking(true).expect("nonblocking");
    (l, addr)
}

/// The next connection on a non-blocking listener, blocking with a 10 s
/// read timeout; None once `deadline` passes without one.
pub fn accept(l: &TcpListener, deadline: Instant) -> Option<TcpStream> {
    loop {
        match l.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(false).ok()?;
                c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                return Some(c);
            }
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Err(_) => return None,
        }
    }
}

/// One HTTP/1.1 request as received.
// Each test crate reads the fields it checks; the others stay unread there.
#[allow(dead_code)]
pub struct Request {
    /// The request line, e.g. `POST /v1/traces HTTP/1.1`.
    pub line: String,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (Content-Length bodies); None if the
/// connection fails or ends early.
pub fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        line: line.trim_end().to_string(),
        headers,
        body,
    })
}
