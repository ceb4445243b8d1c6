//! An OTLP/gRPC trace receiver for tests: runs `otlp-sink` (tests/otlp-sink)
//! as a child process and reads back what it received.
//!
//! ```no_run
//! let dir = podtrace_tests::TempDir::new("otlp");
//! let mut sink = podtrace_tests::otlp::Sink::start(&dir.0);
//! // point an OTLP/gRPC exporter (insecure) at sink.endpoint, then:
//! let spans = sink.wait_for(std::time::Duration::from_secs(10), |s| s.len() >= 3);
//! // dropping `sink` stops the process (SIGTERM, then SIGKILL).
//! ```
//!
//! Like the rest of the harness it panics with a clear message (with the
//! tail of the sink's log) instead of returning errors.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::util::{stop_child, tail, workspace_bin};

/// One span as the sink wrote it (see tests/otlp-sink/src/main.rs).
#[derive(Debug, Clone, Deserialize)]
pub struct Span {
    /// Resource attributes `service.name` and `host.name`.
    pub service_name: Option<String>,
    pub host_name: Option<String>,
    /// Instrumentation scope name.
    pub scope: String,
    /// Lower-case hex; `parent_span_id` empty for a root span.
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer`, `unspecified`.
    pub kind: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// `unset`, `ok`, `error`.
    pub status_code: String,
    pub status_message: String,
    /// Span attributes: strings, bools, numbers, arrays, objects.
    pub attributes: Map<String, Value>,
    /// All resource attributes.
    pub resource: Map<String, Value>,
}

impl Span {
    pub fn duration_ms(&self) -> f64 {
        (self.end_unix_nano as f64 - self.start_unix_nano as f64) / 1e6
    }
    /// A string attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

/// The `otlp-sink` binary: `OTLP_SINK_BIN`, else next to the running test
/// binary's target dir (release, then debug), else `target/release/otlp-sink`.
pub fn otlp_sink_bin() -> PathBuf {
    workspace_bin(
        "otlp-sink",
        "OTLP_SINK_BIN",
        "`cargo build --release -p otlp-sink` or `cargo xtask build`",
    )
}

/// A running `otlp-sink`, stopped on drop.
pub struct Sink {
    /// Where it listens, `127.0.0.1:PORT` (plain-text gRPC).
    pub endpoint: String,
    /// The JSON-lines file it appends spans to.
    pub out: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Sink {
    /// Start a sink on a free port of 127.0.0.1 with its files in `dir`
    /// (`otlp-spans.jsonl`, `otlp-sink.log`); returns once it accepts
    /// connections.
    pub fn start(dir: &Path) -> Sink {
        let bin = otlp_sink_bin();
        let out = dir.join("otlp-spans.jsonl");
        let log = dir.join("otlp-sink.log");
        let ready = dir.join("otlp-sink.ready");
        let _ = std::fs::remove_file(&ready);
        let log_f =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--out"])
            .arg(&out)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        // From here on, a panic drops `sink`, which stops the process.
        let mut sink = Sink {
            endpoint: String::new(),
            out,
            log,
            child: Some(child),
        };
        let t = Instant::now();
        loop {
            if let Ok(a) = std::fs::read_to_string(&ready) {
                sink.endpoint = a.trim().to_string();
                break;
            }
            if let Some(st) = sink.exited() {
                panic!(
                    "otlp-sink exited during start-up ({st})\n{}",
                    tail(&sink.log, 20)
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "otlp-sink did not write {} within 10 s\n{}",
                ready.display(),
                tail(&sink.log, 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sink
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Every span received so far (whole lines only: the sink may be
    /// writing the next request right now).
    pub fn spans(&self) -> Vec<Span> {
        let text = match std::fs::read_to_string(&self.out) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("reading {}: {e}", self.out.display()),
        };
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("bad span line in {}: {e}\n{l}", self.out.display()))
            })
            .collect()
    }

    /// Poll [`Sink::spans`] until `done` holds; panics after `timeout` with
    /// what arrived and the sink's log (also when the sink died).
    pub fn wait_for(&mut self, timeout: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let t = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            let died = self.exited();
            if died.is_some() || t.elapsed() > timeout {
                let names: Vec<String> = spans
                    .iter()
                    .map(|s| format!("{:?} {}", s.service_name, s.name))
                    .collect();
                panic!(
                    "otlp-sink: condition not met after {:.1} s{}; {} spans: {names:?}\n{}",
                    t.elapsed().as_secs_f64(),
                    died.map_or(String::new(), |st| format!(" (sink exited: {st})")),
                    spans.len(),
                    tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait (SIGKILL after 5 s); the exit status, None if it
    /// had to be killed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        stop_child(&mut self.child.take()?, Duration::from_secs(5))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}
