//! The `/metrics` HTTP endpoint of `record --metrics`.
//!
//! It runs on a thread and a runtime of its own, never the drain loop's:
//! whatever clients do (many connections, slow ones, a scrape of a large
//! exposition), the recording goes on at its pace. A client is held to
//! [`HEADER_TIMEOUT`] for its request head and [`CONN_LIFETIME`] in all, at
//! most [`MAX_CONNS`] connections are open at once (a new one closes the
//! oldest: an idle or slow client, rarely a scrape in progress), and an
//! accept that fails for want of file descriptors or memory backs off
//! instead of being retried at once.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{sync::oneshot, task::AbortHandle};

use super::metrics::Metrics;

/// Connections served at once; one more closes the oldest.
pub const MAX_CONNS: usize = 64;
/// From a connection's accept (or its previous response) to the end of its
/// request head. A scraper sends its request at once; a slow-loris client
/// that trickles a header byte at a time is closed after this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection, keep-alive included: a client that sent
/// its request and then reads the answer slowly (or never) is closed too.
pub const CONN_LIFETIME: Duration = Duration::from_secs(60);
/// Request heads larger than this are refused (a scrape's is ~200 bytes;
/// hyper's least buffer).
const MAX_HEAD: usize = 8192;
/// Waits after an accept error that will not clear by itself at once
/// (no file descriptors or memory left): first, and most.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The server's thread: stopped and joined when dropped.
pub struct MetricsServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `GET /metrics` on `listener` from a thread of its own until the
/// returned handle is dropped.
pub fn spawn(listener: std::net::TcpListener, metrics: Arc<Metrics>) -> Result<MetricsServer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("--metrics: starting the server's runtime")?;
    let (stop, stopped) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                tokio::select! {
                    _ = serve(listener, metrics) => {}
                    _ = stopped => {}
                }
            });
        })
        .context("--metrics: starting the server's thread")?;
    Ok(MetricsServer {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Whether an accept error says that the process or system is out of a
/// resource: retrying at once would spin until it frees up.
fn exhausted(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The open connections, oldest first, by id.
type Open = Arc<Mutex<VecDeque<(u64, AbortHandle)>>>;

async fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("podtrace: --metrics: {e}");
            return;
        }
    };
    let open: Open = Arc::new(Mutex::new(VecDeque::new()));
    let mut next_id = 0u64;
    let mut backoff = ACCEPT_BACKOFF;
    let mut said = false;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                backoff = ACCEPT_BACKOFF;
                said = false;
                s
            }
            Err(e) if exhausted(&e) => {
                if !said {
                    eprintln!("podtrace: --metrics: accepting a connection: {e}; backing off");
                    said = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
            // A connection reset before we took it, say: the next one is
            // unaffected.
            Err(_) => continue,
        };
        let id = next_id;
        next_id += 1;
        let task = tokio::spawn(connection(
            stream,
            Arc::clone(&metrics),
            Arc::clone(&open),
            id,
        ));
        // The task removes itself when done; it has not run yet (one
        // thread), so it is pushed before it could.
        let aborted = match open.lock() {
            Ok(mut o) => {
                o.push_back((id, task.abort_handle()));
                let mut aborted = false;
                while o.len() > MAX_CONNS {
                    if let Some((_, oldest)) = o.pop_front() {
                        oldest.abort();
                        aborted = true;
                    }
                }
                aborted
            }
            Err(_) => continue,
        };
        if aborted {
            // An aborted task closes its socket when the runtime next
            // drops it: let it, before another accept, so that a burst of
            // connections cannot hold more than the cap.
            tokio::task::yield_now().await;
        }
    }
}

/// One client connection: HTTP/1 with the time limits above.
async fn connection(stream: tokio::net::TcpStream, metrics: Arc<Metrics>, open: Open, id: u64) {
    use http_body_util::Full;
    use hyper::{body::Bytes, server::conn::http1, service::service_fn, Response, StatusCode};
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let metrics = Arc::clone(&metrics);
        async move {
            if req.uri().path() == "/metrics" {
                Response::builder()
                    .header(
                        hyper::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                    .body(Full::new(Bytes::from(metrics.encode())))
            } else {
                Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Full::new(Bytes::from_static(
                        b"podtrace: metrics are at /metrics\n",
                    )))
            }
        }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, svc);
    // A client that goes away mid-request, or runs out of time, is no
    // concern of ours.
    let _ = tokio::time::timeout(CONN_LIFETIME, conn).await;
    if let Ok(mut o) = open.lock() {
        o.retain(|(i, _)| *i != id);
    }
}

/// Binds `--metrics`' address (before attaching, so a taken port fails
/// early and clearly).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
    l.set_nonblocking(true)
        .with_context(|| format!("--metrics {addr}: making the socket non-blocking"))?;
    Ok(l)
}
