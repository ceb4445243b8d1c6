//! `otlp-sink`: podtrace's test OTLP/gRPC trace receiver.
//!
//! Serves `opentelemetry.proto.collector.trace.v1.TraceService/Export` (what
//! kubelet's and containerd's `otlptracegrpc` exporters call, insecure,
//! gzip-compressed or not) and appends one JSON line per span to `--out`:
//!
//! ```json
//! {"service_name":"kubelet","host_name":"h","scope":"…","trace_id":"<32 hex>",
//!  "span_id":"<16 hex>","parent_span_id":"<16 hex or empty>","name":"syncPod",
//!  "kind":"internal","start_unix_nano":…,"end_unix_nano":…,
//!  "status_code":"unset|ok|error","status_message":"",
//!  "attributes":{"k8s.pod.uid":"…", …},"resource":{"service.name":"kubelet", …}}
//! ```
//!
//! Each request's lines are written and flushed before it is answered, so a
//! test can read the file while the sink runs. Once listening, the bound
//! address (`127.0.0.1:PORT`) is written to `--ready-file` (atomically: a
//! reader never sees half of it). SIGTERM or SIGINT: stop accepting, let
//! running requests finish (at most 2 s), print the totals (spans, requests,
//! gzip-compressed requests) to stderr, exit 0.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use clap::Parser;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value, AnyValue, KeyValue},
    trace::v1::{span::SpanKind, status::StatusCode},
};
use serde_json::{json, Map, Value};
use tonic::{codec::CompressionEncoding, transport::server::TcpIncoming};

#[derive(Parser)]
#[command(
    name = "otlp-sink",
    about = "OTLP/gRPC trace receiver for tests: one JSON line per span"
)]
struct Cli {
    /// address to listen on (port 0: any free port; see --ready-file)
    #[arg(long, default_value = "127.0.0.1:4317")]
    listen: SocketAddr,
    /// JSON-lines file the spans are appended to
    #[arg(long)]
    out: PathBuf,
    /// written with the bound address once the sink accepts connections
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

struct Sink {
    out: Mutex<File>,
    spans: AtomicU64,
    requests: AtomicU64,
    /// Requests that came gzip-compressed (grpc-encoding: gzip).
    gzip: AtomicU64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// OTLP's AnyValue as plain JSON: strings, bools, numbers, arrays, objects;
/// bytes as hex. Integers stay integers (i64), doubles stay doubles.
fn any_value(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| any_value(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(attributes(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
        // Profiling-only (an index into a dictionary this signal lacks).
        Some(any_value::Value::StringValueStrindex(i)) => json!(i),
    }
}

fn attributes(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
        .collect()
}

fn kind(k: i32) -> &'static str {
    match SpanKind::try_from(k) {
        Ok(SpanKind::Internal) => "internal",
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        Ok(SpanKind::Unspecified) | Err(_) => "unspecified",
    }
}

fn status(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "ok",
        Ok(StatusCode::Error) => "error",
        Ok(StatusCode::Unset) | Err(_) => "unset",
    }
}

/// The request's spans, one JSON line each.
fn lines(req: &ExportTraceServiceRequest) -> (String, u64) {
    let mut text = String::new();
    let mut n = 0;
    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let res_str = |k: &str| resource.get(k).cloned().unwrap_or(Value::Null);
        let (service, host) = (res_str("service.name"), res_str("host.name"));
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            for s in &ss.spans {
                let st = s.status.as_ref();
                let line = json!({
                    "service_name": service,
                    "host_name": host,
                    "scope": scope,
                    "trace_id": hex(&s.trace_id),
                    "span_id": hex(&s.span_id),
                    "parent_span_id": hex(&s.parent_span_id),
                    "name": s.name,
                    "kind": kind(s.kind),
                    "start_unix_nano": s.start_time_unix_nano,
                    "end_unix_nano": s.end_time_unix_nano,
                    "status_code": status(st.map_or(0, |st| st.code)),
                    "status_message": st.map_or("", |st| st.message.as_str()),
                    "attributes": attributes(&s.attributes),
                    "resource": resource,
                });
                text.push_str(&line.to_string());
                text.push('\n');
                n += 1;
            }
        }
    }
    (text, n)
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let (text, n) = lines(request.get_ref());
        {
            let mut f = self
                .out
                .lock()
                .map_err(|_| tonic::Status::internal("output lock poisoned"))?;
            // One write per request: a concurrent reader sees whole lines of
            // whole requests (O_APPEND, a regular file).
            f.write_all(text.as_bytes())
                .and_then(|_| f.flush())
                .map_err(|e| tonic::Status::internal(format!("writing spans: {e}")))?;
        }
        self.spans.fetch_add(n, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if request
            .metadata()
            .get("grpc-encoding")
            .is_some_and(|e| e == "gzip")
        {
            self.gzip.fetch_add(1, Ordering::Relaxed);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Write `text` to `path` via a temporary file and a rename.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.to_string_lossy()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

async fn run(cli: Cli) -> Result<()> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cli.out)
        .with_context(|| format!("opening {}", cli.out.display()))?;
    let sink = Arc::new(Sink {
        out: Mutex::new(out),
        spans: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        gzip: AtomicU64::new(0),
    });
    let incoming = TcpIncoming::bind(cli.listen)
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", cli.listen))?;
    let addr = incoming.local_addr().context("bound address")?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("SIGINT handler")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let svc = TraceServiceServer::from_arc(sink.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    // The listener is bound and the server task owns it: connections from
    // here on are queued and served.
    if let Some(f) = &cli.ready_file {
        write_atomically(f, &addr.to_string())?;
    }
    eprintln!(
        "otlp-sink: listening on {addr}, spans to {}",
        cli.out.display()
    );

    let mut server = server;
    tokio::select! {
        r = &mut server => {
            r.context("server task")?.context("serving")?;
            anyhow::bail!("server stopped by itself");
        }
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = stop_tx.send(());
    // Graceful: running requests finish; a client that keeps its connection
    // open must not keep us alive.
    match tokio::time::timeout(Duration::from_secs(2), &mut server).await {
        Ok(r) => r.context("server task")?.context("serving")?,
        Err(_) => server.abort(),
    }
    eprintln!(
        "otlp-sink: stopped; {} spans in {} requests ({} gzip)",
        sink.spans.load(Ordering::Relaxed),
        sink.requests.load(Ordering::Relaxed),
        sink.gzip.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("otlp-sink: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otlp-sink: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
