//! One HTTP/1.1 POST, over TCP or TLS (rustls, the system's roots plus an
//! optional CA file): all that OTLP/HTTP needs.
//!
//! Why not reqwest: its blocking client runs a tokio runtime on a thread of
//! its own and brought hyper's client, tower, tokio-rustls, h2 parts, url
//! with its IDNA tables and a platform verifier, for one request shape
//! sent from a thread that may block anyway. This is a plain blocking
//! exchange on std's sockets: request with Content-Length, `Connection:
//! close`, answer read by Content-Length, chunks or to the end. No proxy
//! (a receiver on the node must not be reached through one), no redirect,
//! no compression.

use std::{
    fmt,
    io::{BufRead as _, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs as _},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// Longest answer read (OTLP answers are a few bytes; an error page more).
const MAX_ANSWER: usize = 4 << 20;
/// Longest line of the answer's head.
const MAX_LINE: usize = 16 << 10;

/// An `http(s)://host[:port]/path` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, from its `/`.
    pub path: String,
}

impl Url {
    /// Parses an absolute http or https URL. `default_path` replaces an
    /// empty path (or `/`).
    pub fn parse(text: &str, default_path: &str) -> Result<Url> {
        let Some((scheme, rest)) = text.split_once("://") else {
            bail!("{text}: not a URL");
        };
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => bail!("{text}: unsupported scheme `{other}`, expected http:// or https://"),
        };
        let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, mut path) = rest.split_at(cut);
        if let Some(i) = path.find('#') {
            path = &path[..i];
        }
        if authority.contains('@') {
            bail!("{text}: credentials in the URL are not supported (send a header instead)");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((h, after)) = v6.split_once(']') else {
                bail!("{text}: unclosed [ in the host");
            };
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                bail!("{text}: `{h}` is not an IPv6 address");
            }
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            bail!("{text}: no host");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            bail!("{text}: `{host}` is not a host name");
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("{text}: `{p}` is not a port"))?,
            None if https => 443,
            None => 80,
        };
        let path = match path {
            "" | "/" => default_path.to_string(),
            p if p.starts_with('?') => format!("{default_path}{p}"),
            p => p.to_string(),
        };
        Ok(Url {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    fn default_port(&self) -> bool {
        self.port == if self.https { 443 } else { 80 }
    }

    /// `host[:port]` as the Host header has it.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Whether `name` is a header name (an RFC 9110 token).
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` can be sent as a header value: visible ASCII, spaces and
/// tabs (no line break that would end the header).
pub fn valid_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// TLS settings for https: the system's roots (as the distribution installs
/// them) and, if given, the certificates of a PEM file.
pub fn tls_config(ca_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    // Certificates the system has that rustls cannot read are skipped, as
    // browsers do; none at all only matters for an https endpoint.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(p) = ca_cert {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: not a PEM certificate", p.display()))?;
        if certs.is_empty() {
            bail!("{}: no certificate in it", p.display());
        }
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("{}: a certificate rustls cannot use", p.display()))?;
        }
    }
    if roots.is_empty() {
        // podtrace's own image has no CA certificates: say what to give
        // rather than fail every handshake later.
        bail!(
            "no CA certificates: the system has none (podtrace's image, say) and none was given; \
             give the endpoint's CA with --ca-cert / --otlp-ca-cert"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The receiver's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a POST failed.
#[derive(Debug)]
pub enum Failed {
    /// No connection (resolve, connect, refused): another try may work.
    Connect(anyhow::Error),
    /// The time ran out: another try may work.
    Timeout(anyhow::Error),
    /// The TLS handshake refused the server (its certificate, say): it
    /// would again.
    Tls(anyhow::Error),
    /// Anything else (a broken answer, a reset mid-answer).
    Other(anyhow::Error),
}

impl Failed {
    pub fn into_error(self) -> anyhow::Error {
        match self {
            Failed::Connect(e) | Failed::Timeout(e) | Failed::Tls(e) | Failed::Other(e) => e,
        }
    }
}

/// The rustls error inside an I/O error, if the TLS layer failed it.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn io_failed(e: std::io::Error, what: &str) -> Failed {
    let timed_out = matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    );
    if tls_error(&e).is_some() {
        Failed::Tls(anyhow::Error::new(e).context(what.to_string()))
    } else if timed_out {
        Failed::Timeout(anyhow::Error::new(e).context(format!("{what}: timed out")))
    } else {
        Failed::Other(anyhow::Error::new(e).context(what.to_string()))
    }
}

/// A stream that gives up at a deadline (each read or write may take what
/// is left of the whole request's time).
struct Timed<S> {
    inner: S,
    sock: TcpStream,
    deadline: Instant,
}

impl<S> Timed<S> {
    fn arm(&self) -> std::io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.sock.set_read_timeout(Some(left))?;
        self.sock.set_write_timeout(Some(left))
    }
}

impl<S: Read> Read for Timed<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Timed<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.arm()?;
        self.inner.flush()
    }
}

/// POSTs `body` to `url` with `headers` (beside Host, Content-Length and
/// Connection), all of it within `timeout`.
pub fn post(
    url: &Url,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Answer, Failed> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| {
            Failed::Connect(anyhow::Error::new(e).context(format!("resolving {}", url.host)))
        })?
        .collect();
    let mut last = None;
    let mut sock = None;
    for a in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(a, left) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(sock) = sock else {
        let e = last.map_or_else(
            || anyhow::anyhow!("{}: no address", url.host),
            |e| anyhow::Error::new(e).context(format!("connecting to {}", url.authority())),
        );
        return Err(Failed::Connect(e));
    };
    let _ = sock.set_nodelay(true);
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        url.authority(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let clone = sock
        .try_clone()
        .map_err(|e| Failed::Other(anyhow::Error::new(e).context("socket")))?;
    if url.https {
        let Some(cfg) = tls else {
            return Err(Failed::Other(anyhow::anyhow!("https without a TLS config")));
        };
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| Failed::Other(anyhow::Error::new(e).context("TLS server name")))?;
        let conn = rustls::ClientConnection::new(Arc::clone(cfg), name)
            .map_err(|e| Failed::Tls(anyhow::Error::new(e).context("starting TLS")))?;
        let stream = Timed {
            inner: rustls::StreamOwned::new(conn, sock),
            sock: clone,
            deadline,
        };
        exchange(stream, head.as_bytes(), body)
    } else {
        let stream = Timed {
            inner: sock,
            sock: clone,
            deadline,
        };
        exchange(stream, head.as_bytes(), body)
    }
}

fn exchange<S: Read + Write>(mut s: S, head: &[u8], body: &[u8]) -> Result<Answer, Failed> {
    s.write_all(head)
        .and_then(|_| s.write_all(body))
        .and_then(|_| s.flush())
        .map_err(|e| match io_failed(e, "sending the request") {
            // A refused connection shows up at the first write on some
            // systems: that is a connection failure.
            Failed::Other(e) => Failed::Connect(e),
            f => f,
        })?;
    let mut r = BufReader::new(s);
    read_answer(&mut r).map_err(|e| match e.downcast::<std::io::Error>() {
        Ok(io) => io_failed(io, "reading the answer"),
        Err(e) => Failed::Other(e),
    })
}

/// One CRLF- (or LF-) terminated line, at most [`MAX_LINE`] bytes.
fn line<R: std::io::BufRead>(r: &mut R) -> Result<String> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        bail!("the connection closed before the answer was complete");
    }
    if !buf.ends_with(b"\n") {
        bail!("an answer line longer than {MAX_LINE} bytes");
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_answer<R: std::io::BufRead>(r: &mut R) -> Result<Answer> {
    loop {
        let status_line = line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            bail!("not an HTTP/1 answer: {status_line:?}");
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status in {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let h = line(r)?;
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        // 100 Continue and other interim answers: the real one follows.
        if (100..200).contains(&status) {
            continue;
        }
        let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let chunked =
            get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            read_chunked(r)?
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .with_context(|| format!("Content-Length {len:?}"))?;
            if len > MAX_ANSWER {
                bail!("an answer of {len} bytes");
            }
            let mut b = vec![0; len];
            r.read_exact(&mut b)?;
            b
        } else {
            let mut b = Vec::new();
            r.take(MAX_ANSWER as u64).read_to_end(&mut b)?;
            b
        };
        return Ok(Answer {
            status,
            headers,
            body,
        });
    }
}

fn read_chunked<R: std::io::BufRead>(r: &mut R) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = line(r)?;
        let hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16).with_context(|| format!("chunk size {hex:?}"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !line(r)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_ANSWER {
            bail!("an answer over {MAX_ANSWER} bytes");
        }
        let at = body.len();
        body.resize(at + size, 0);
        r.read_exact(&mut body[at..])?;
        line(r)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() -> Result<()> {
        let p = |s| Url::parse(s, "/v1/traces").map(|u| u.to_string());
        assert_eq!(
            p("http://127.0.0.1:4318")?,
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            p("http://collector/otlp/v1/traces")?,
            "http://collector/otlp/v1/traces"
        );
        assert_eq!(p("http://[::1]:4318/")?, "http://[::1]:4318/v1/traces");
        assert_eq!(p("HTTPS://X:443")?, "https://x/v1/traces");
        assert_eq!(p("http://x:80/a?b=1#frag")?, "http://x/a?b=1");
        let u = Url::parse("http://[::1]:4318", "/")?;
        assert_eq!((u.host.as_str(), u.port), ("::1", 4318));
        for bad in [
            "http://x:notaport",
            "ftp://x",
            "http://",
            "http://u:p@x",
            "http://x:0",
            "http://[::1",
            "x:4318",
            "http://a b",
        ] {
            assert!(Url::parse(bad, "/").is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn answers_by_length_chunks_or_close() -> Result<()> {
        let read = |t: &str| read_answer(&mut std::io::Cursor::new(t.as_bytes().to_vec()));
        let a = read("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcdef")?;
        assert_eq!(
            (a.status, a.body.as_slice(), a.header("x-a")),
            (200, &b"abc"[..], Some("b"))
        );
        let a = read("HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n")?;
        assert_eq!((a.status, a.body.as_slice()), (503, &b"abcde"[..]));
        let a = read("HTTP/1.0 400 Bad\nContent-Type: text/plain\n\nuntil the end")?;
        assert_eq!((a.status, a.body.as_slice()), (400, &b"until the end"[..]));
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(read("SSH-2.0-OpenSSH\r\n").is_err());
        assert!(read("").is_err());
        Ok(())
    }

    #[test]
    fn header_checks() {
        assert!(valid_header_name("X-Tenant"));
        assert!(!valid_header_name("X Tenant"));
        assert!(!valid_header_name(""));
        assert!(valid_header_value("Bearer a.b\tc"));
        assert!(!valid_header_value("a\r\nInjected: 1"));
        assert!(!valid_header_value("é"));
    }
}
