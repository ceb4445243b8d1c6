//! A real OpenTelemetry Collector for the cluster tests and `cargo xtask
//! demo --cluster`: `otelcol-podtrace-v0.165.0`, which `cargo xtask setup`
//! builds with the collector builder from the core `otlpreceiver`,
//! `debugexporter` and `otlpexporter`.
//!
//! Its pipeline: the OTLP receiver (gRPC on 127.0.0.1 for kubelet's own
//! tracing, HTTP on the pods' bridge for podtrace in the DaemonSet) → the
//! debug exporter (a line per batch in the collector's log) and the OTLP
//! exporter, which forwards every span unchanged to an [`otlp::Sink`] of the
//! collector's own. The sink's file holds exactly what went through the
//! collector; the tests read it with [`otlp::Sink::spans`]. (The debug
//! exporter's `detailed` text is made for people: Go time strings, typed
//! attribute renderings that change between releases; the OTLP exporter
//! hands over the protobuf as received.)
//!
//! The collector has a pid file (`PIDS/otelcol.pid`, the sink's
//! `otelcol-sink.pid`) and is stopped by that pid. [`Collector::kill`] and
//! [`Collector::restart`] make an outage.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    otlp,
    pidfile::{pid_file_process, write_pid_file},
    util::{free_port, setup_bin, tail},
};

/// The release `cargo xtask setup` builds.
pub const VERSION: &str = "v0.165.0";
/// What the collector logs once its pipelines run.
const READY: &str = "Everything is ready";

/// `~/.podtrace/bin/otelcol-podtrace-v0.165.0`; panics with what to run
/// when it is missing.
pub fn bin() -> PathBuf {
    setup_bin(
        &format!("otelcol-podtrace-{VERSION}"),
        "it with the OpenTelemetry Collector builder",
    )
}

/// A running collector and the sink it forwards to.
pub struct Collector {
    /// OTLP/gRPC, `127.0.0.1:PORT` (kubelet's tracing endpoint).
    pub grpc: String,
    /// OTLP/HTTP, `http://IP:PORT` (podtrace's `--otlp-endpoint`).
    pub http: String,
    /// What the collector forwarded.
    pub sink: otlp::Sink,
    /// The collector's log (all its runs, appended).
    pub log: PathBuf,
    config: PathBuf,
    pid_file: PathBuf,
    child: Option<Child>,
}

impl Collector {
    /// Starts the sink, then the collector with its gRPC receiver on
    /// `grpc` (`127.0.0.1:PORT`) and its HTTP receiver on `http_ip` (a
    /// free port); files in `dir`, pid files in `pids`. Returns once the
    /// collector says it is ready.
    pub fn start(dir: &Path, pids: &Path, grpc: &str, http_ip: &str) -> Collector {
        std::fs::create_dir_all(dir.join("sink")).expect("create the collector's dir");
        let sink = otlp::Sink::start(&dir.join("sink"));
        write_pid_file(&pids.join("otelcol-sink.pid"), sink.pid());
        let http = format!("{http_ip}:{}", free_port());
        let config = dir.join("otelcol.yaml");
        std::fs::write(
            &config,
            format!(
                "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: \"{grpc}\"}}
      http: {{endpoint: \"{http}\"}}
exporters:
  debug: {{verbosity: basic}}
  otlp:
    endpoint: \"{sink}\"
    tls: {{insecure: true}}
service:
  telemetry:
    metrics: {{level: none}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp, debug]}}
",
                sink = sink.endpoint
            ),
        )
        .expect("write otelcol.yaml");
        let mut c = Collector {
            grpc: grpc.to_string(),
            http: format!("http://{http}"),
            sink,
            log: dir.join("otelcol.log"),
            config,
            pid_file: pids.join("otelcol.pid"),
            child: None,
        };
        c.spawn();
        c
    }

    /// The collector's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        pid_file_process(&self.pid_file)
    }

    fn spawn(&mut self) {
        let before = self.ready_lines();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the collector's log");
        let child = Command::new(bin())
            .arg(format!("--config={}", self.config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin().display()));
        write_pid_file(&self.pid_file, child.id());
        self.child = Some(child);
        let t = Instant::now();
        while self.ready_lines() == before {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the collector exited ({st})\n{}", tail(&self.log, 40));
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the collector was not ready within 30 s\n{}",
                tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ready_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.matches(READY).count())
            .unwrap_or(0)
    }

    /// Kills the collector (SIGKILL by its pid file's pid): an outage.
    pub fn kill(&mut self) {
        self.signal_and_reap(libc::SIGKILL, Duration::ZERO);
    }

    /// Starts it again with the same configuration (same ports); returns
    /// once it is ready.
    pub fn restart(&mut self) {
        assert!(self.pid().is_none(), "the collector still runs");
        self.spawn();
    }

    /// SIGTERM (SIGKILL after `grace`) by the pid file's pid, reaped, pid
    /// file removed.
    fn signal_and_reap(&mut self, sig: libc::c_int, grace: Duration) {
        if let Some(pid) = self.pid() {
            // SAFETY: plain kill(2) of the process our pid file names
            // (same pid and start time).
            unsafe { libc::kill(pid as libc::pid_t, sig) };
            let t = Instant::now();
            while self.pid().is_some() && t.elapsed() < grace {
                if self
                    .child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some())
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(pid) = self.pid() {
                // SAFETY: as above.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }

    /// Stops the collector (SIGTERM, then SIGKILL after 10 s) and its sink.
    pub fn stop(&mut self) {
        self.signal_and_reap(libc::SIGTERM, Duration::from_secs(10));
        self.sink.stop();
    }

    /// The debug exporter's lines of the log: batches and span counts.
    pub fn batches_logged(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().filter(|l| l.contains("\"spans\":")).count())
            .unwrap_or(0)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}
