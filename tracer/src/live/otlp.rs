//! `record --otlp-endpoint`: finished pods' spans pushed from a queue and a
//! thread of their own.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use crate::export::otlp_proto::collector::trace::v1::ExportTraceServiceRequest;
use anyhow::{Context as _, Result};
use prometheus::IntCounterVec;

use crate::export::otlp;

/// Pods queued for the OTLP exporter before further ones are dropped.
const OTLP_QUEUE: usize = 256;
/// Where `--otlp-endpoint` sends finished pods.
#[derive(Debug, Clone)]
pub struct OtlpTarget {
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub ca_cert: Option<PathBuf>,
    pub timeout: Duration,
    pub retries: u32,
}

/// The OTLP pusher: a thread of its own (the push is blocking and may retry
/// for seconds), fed through a bounded queue so a slow collector never
/// holds up draining the ring; a full queue drops the pod and counts it.
pub(super) struct OtlpQueue {
    tx: Option<mpsc::SyncSender<ExportTraceServiceRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
    outstanding: Arc<AtomicU64>,
}

impl OtlpQueue {
    pub(super) fn start(target: OtlpTarget, counts: IntCounterVec) -> Result<OtlpQueue> {
        // Check the URL, headers and CA file now, not at the first pod.
        {
            let opts = otlp::PushOptions {
                ca_cert: target.ca_cert.as_deref(),
                ..otlp::PushOptions::new(&target.headers, target.timeout)
            };
            otlp::Pusher::new(&target.endpoint, &opts)?;
        }
        let (tx, rx) = mpsc::sync_channel::<ExportTraceServiceRequest>(OTLP_QUEUE);
        let outstanding = Arc::new(AtomicU64::new(0));
        let left = Arc::clone(&outstanding);
        let thread = std::thread::Builder::new()
            .name("otlp-push".into())
            .spawn(move || {
                let opts = otlp::PushOptions {
                    ca_cert: target.ca_cert.as_deref(),
                    retries: target.retries,
                    ..otlp::PushOptions::new(&target.headers, target.timeout)
                };
                let pusher = match otlp::Pusher::new(&target.endpoint, &opts) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("podtrace: --otlp-endpoint: {e:#}");
                        for _ in rx {
                            counts.with_label_values(&["failed"]).inc();
                            left.fetch_sub(1, Ordering::Relaxed);
                        }
                        return;
                    }
                };
                for req in rx {
                    match pusher.push(&req) {
                        Ok(_) => counts.with_label_values(&["sent"]).inc(),
                        Err(e) => {
                            counts.with_label_values(&["failed"]).inc();
                            eprintln!("podtrace: --otlp-endpoint: {e:#}");
                        }
                    }
                    left.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .context("starting the OTLP push thread")?;
        Ok(OtlpQueue {
            tx: Some(tx),
            thread: Some(thread),
            outstanding,
        })
    }

    pub(super) fn send(&self, req: ExportTraceServiceRequest, counts: &IntCounterVec) {
        let Some(tx) = &self.tx else { return };
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(req) {
            Ok(()) => counts.with_label_values(&["queued"]).inc(),
            Err(_) => {
                self.outstanding.fetch_sub(1, Ordering::Relaxed);
                counts.with_label_values(&["dropped"]).inc();
            }
        }
    }

    /// Sends what is queued, waiting at most `limit`.
    pub(super) fn close(&mut self, limit: Duration) {
        self.tx = None;
        let Some(t) = self.thread.take() else { return };
        let until = Instant::now() + limit;
        while !t.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            eprintln!(
                "podtrace: --otlp-endpoint: {} pods not sent after {}s; giving up",
                self.outstanding.load(Ordering::Relaxed),
                limit.as_secs()
            );
        }
    }
}
