//! The `/metrics` HTTP endpoint of `record --metrics`.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};

use super::metrics::Metrics;

/// Serves `GET /metrics` on `listener` until the runtime stops.
pub async fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>) {
    use http_body_util::Full;
    use hyper::{body::Bytes, server::conn::http1, service::service_fn, Response, StatusCode};
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("podtrace: --metrics: {e}");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move {
                    let resp = if req.uri().path() == "/metrics" {
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
                    };
                    resp
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // A client that goes away mid-request is no concern of ours.
            let _ = http1::Builder::new().serve_connection(io, svc).await;
        });
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
