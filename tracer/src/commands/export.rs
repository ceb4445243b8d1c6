//! `podtrace export TRACE --format chrome|otlp|csv [-o OUT] [--endpoint URL]`.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    correlate::load_correlated,
    export::{chrome, csv, otlp},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Chrome trace-event JSON, for the Perfetto UI and chrome://tracing.
    Chrome,
    /// OTLP traces, protobuf JSON encoding; with --endpoint, pushed over OTLP/HTTP.
    Otlp,
    /// One row per span.
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Trace written by `podtrace record`.
    pub trace: PathBuf,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output file; `-` or none: standard output (none with --endpoint: no file).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Chrome: one track per pod (its syncs) plus one per other goroutine, or
    /// one per goroutine.
    #[arg(long, value_enum, default_value = "pod")]
    pub tracks: chrome::Tracks,
    /// OTLP: push to this OTLP/HTTP receiver (protobuf), e.g.
    /// http://127.0.0.1:4318 (the path defaults to /v1/traces).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// OTLP push: an extra request header, NAME=VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// OTLP push: connect and whole-request timeout in seconds (1 to 3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,
    /// OTLP push over https: also trust this CA certificate (PEM), beside
    /// the system's roots (a collector with its own CA).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// OTLP push: retries after a transient failure (connect error,
    /// timeout, 429/502/503/504), waiting 0.25 s, then twice as long each
    /// time, or what the receiver's Retry-After says.
    /// At most 10.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
}

fn output(path: Option<&PathBuf>) -> Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) if p.as_os_str() != "-" => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        _ => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

/// True if the output was closed early (`| head`), which is not a failure.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn run(args: ExportArgs) -> Result<ExitCode> {
    match export(args) {
        Err(e) if broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        r => r,
    }
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    if args.format != ExportFormat::Otlp
        && (args.endpoint.is_some() || !args.headers.is_empty() || args.ca_cert.is_some())
    {
        bail!("--endpoint, --header and --ca-cert are for --format otlp");
    }
    let (trace, corr) = load_correlated(&args.trace)?;
    let name = args.trace.display();
    for w in &trace.warnings {
        eprintln!("podtrace: warning: {w}");
    }
    if corr.spans.is_empty() {
        bail!(
            "{name}: no calls in this trace ({} events), nothing to export",
            trace.events
        );
    }
    let write_err = || match &args.output {
        Some(p) if p.as_os_str() != "-" => format!("writing {}", p.display()),
        _ => "writing standard output".to_string(),
    };
    match args.format {
        ExportFormat::Chrome => {
            let mut out = output(args.output.as_ref())?;
            chrome::write(&trace, &corr, args.tracks, &mut out).with_context(write_err)?;
            out.flush().with_context(write_err)?;
        }
        ExportFormat::Csv => {
            csv::write(&trace, &corr, output(args.output.as_ref())?).with_context(write_err)?;
        }
        ExportFormat::Otlp => {
            let req = otlp::otlp_request(&trace, &corr);
            let spans: usize = req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            if spans == 0 {
                bail!(
                    "{name}: no pod starts in this trace (no pod sync with a pod UID); OTLP export makes one trace per pod start"
                );
            }
            if args.endpoint.is_none() || args.output.is_some() {
                let mut out = output(args.output.as_ref())?;
                out.write_all(otlp::to_json(&req)?.as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
                    .and_then(|_| out.flush())
                    .with_context(write_err)?;
            }
            if let Some(ep) = &args.endpoint {
                let headers = args
                    .headers
                    .iter()
                    .map(|h| {
                        h.split_once('=')
                            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                            .with_context(|| format!("--header {h}: expected NAME=VALUE"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut opts =
                    otlp::PushOptions::new(&headers, Duration::from_secs(args.timeout_secs.max(1)));
                opts.ca_cert = args.ca_cert.as_deref();
                opts.retries = args.retries;
                let res = otlp::push_with(ep, &req, &opts)?;
                eprintln!(
                    "podtrace: pushed {spans} spans to {ep} ({}{})",
                    res.status,
                    if res.attempts > 1 {
                        format!(", after {} attempts", res.attempts)
                    } else {
                        String::new()
                    }
                );
                if res.rejected_spans > 0 || !res.message.is_empty() {
                    eprintln!(
                        "podtrace: warning: the receiver rejected {} spans: {}",
                        res.rejected_spans, res.message
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
