//! `record --otlp-endpoint`: finished pods' spans pushed from a queue and a
//! thread of their own. A collector that is away (restarting, say) has the
//! pods held and sent again, in order, once it answers.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::export::otlp_proto::collector::trace::v1::ExportTraceServiceRequest;
use anyhow::{Context as _, Result};
use prometheus::{IntCounterVec, IntGauge};

use crate::export::otlp;

/// Pods queued for the OTLP exporter before further ones are dropped.
const OTLP_QUEUE: usize = 256;
/// Pods held for a collector that is away, oldest given up first beyond
/// this (a pod's spans are a few kB: a few MB at most).
const HELD_MAX: usize = 1024;
/// First wait before trying a held pod again; doubled up to [`RESEND_MAX`].
const RESEND_FIRST: Duration = Duration::from_secs(1);
const RESEND_MAX: Duration = Duration::from_secs(30);

/// Where `--otlp-endpoint` sends finished pods.
#[derive(Debug, Clone)]
pub struct OtlpTarget {
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub ca_cert: Option<PathBuf>,
    pub timeout: Duration,
    pub retries: u32,
}

/// The metrics the pusher keeps: pods by result (queued, sent, failed,
/// dropped) and pods held for a collector that is away.
#[derive(Clone)]
pub(super) struct OtlpCounts {
    pub pods: IntCounterVec,
    pub held: IntGauge,
}

impl OtlpCounts {
    fn count(&self, result: &str, n: u64) {
        self.pods.with_label_values(&[result]).inc_by(n);
    }
}

/// The OTLP pusher: a thread of its own (the push is blocking and may retry
/// for seconds), fed through a bounded queue so a slow collector never
/// holds up draining the ring; a full queue drops the pod and counts it.
pub(super) struct OtlpQueue {
    tx: Option<mpsc::SyncSender<ExportTraceServiceRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
    outstanding: Arc<AtomicU64>,
}

/// Pods waiting for the collector to answer again, and when to try. Every
/// pod goes through it: held while the collector is away, sent at once
/// otherwise.
struct Held {
    pods: VecDeque<ExportTraceServiceRequest>,
    next_try: Instant,
    wait: Duration,
    /// The collector did not answer the last try (pods stay held).
    away: bool,
}

impl Held {
    fn new() -> Held {
        Held {
            pods: VecDeque::new(),
            next_try: Instant::now(),
            wait: RESEND_FIRST,
            away: false,
        }
    }

    /// Holds `req` behind the others; beyond [`HELD_MAX`] the oldest is
    /// given up.
    fn hold(&mut self, req: ExportTraceServiceRequest, counts: &OtlpCounts, left: &AtomicU64) {
        if self.pods.len() >= HELD_MAX && self.pods.pop_front().is_some() {
            counts.count("failed", 1);
            left.fetch_sub(1, Ordering::Relaxed);
        }
        self.pods.push_back(req);
        if self.away {
            counts.held.set(self.pods.len() as i64);
        }
    }

    /// Sends the held pods in order until the collector is away. Returns
    /// false if it is (then waits longer before each next try).
    fn flush(&mut self, pusher: &otlp::Pusher<'_>, counts: &OtlpCounts, left: &AtomicU64) -> bool {
        let before = self.pods.len();
        while let Some(req) = self.pods.front() {
            match pusher.try_push(req) {
                Ok(_) => counts.count("sent", 1),
                Err(f) if f.away => {
                    self.next_try = Instant::now() + self.wait;
                    if self.away {
                        self.wait = (self.wait * 2).min(RESEND_MAX);
                    } else {
                        self.away = true;
                        eprintln!(
                            "podtrace: --otlp-endpoint: {:#}; holding pods until it answers",
                            f.error
                        );
                    }
                    counts.held.set(self.pods.len() as i64);
                    return false;
                }
                Err(f) => {
                    counts.count("failed", 1);
                    eprintln!("podtrace: --otlp-endpoint: {:#}", f.error);
                }
            }
            self.pods.pop_front();
            left.fetch_sub(1, Ordering::Relaxed);
        }
        if self.away {
            eprintln!("podtrace: --otlp-endpoint: answering again; {before} held pods sent");
        }
        self.away = false;
        self.wait = RESEND_FIRST;
        counts.held.set(0);
        true
    }
}

/// The push thread: each pod in turn; while the collector is away, pods
/// are held and tried again with backoff, and new ones queue behind them.
fn push_loop(
    pusher: &otlp::Pusher<'_>,
    rx: &mpsc::Receiver<ExportTraceServiceRequest>,
    counts: &OtlpCounts,
    left: &AtomicU64,
) {
    let mut held = Held::new();
    loop {
        let next = if held.pods.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(held.next_try.saturating_duration_since(Instant::now()))
        };
        match next {
            Ok(req) => {
                held.hold(req, counts, left);
                if !held.away || Instant::now() >= held.next_try {
                    held.flush(pusher, counts, left);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                held.flush(pusher, counts, left);
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Recording stopped: one more try for what is held.
                if !held.pods.is_empty() && !held.flush(pusher, counts, left) {
                    let n = held.pods.len() as u64;
                    counts.count("failed", n);
                    counts.held.set(0);
                    left.fetch_sub(n, Ordering::Relaxed);
                    eprintln!(
                        "podtrace: --otlp-endpoint: still not answering; {n} held pods not sent"
                    );
                }
                return;
            }
        }
    }
}

impl OtlpQueue {
    pub(super) fn start(target: OtlpTarget, counts: OtlpCounts) -> Result<OtlpQueue> {
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
                match otlp::Pusher::new(&target.endpoint, &opts) {
                    Ok(pusher) => push_loop(&pusher, &rx, &counts, &left),
                    Err(e) => {
                        eprintln!("podtrace: --otlp-endpoint: {e:#}");
                        for _ in rx {
                            counts.count("failed", 1);
                            left.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
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

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader, Read as _, Write as _},
        net::{TcpListener, TcpStream},
    };

    use prometheus::Opts;
    use prost::Message as _;

    use super::*;
    use crate::export::otlp_proto::trace::v1::ResourceSpans;

    fn pod(i: usize) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                schema_url: format!("pod-{i}"),
                ..Default::default()
            }],
        }
    }

    /// Answers 200 to `n` requests on `l`; hands back each request's pod.
    fn receiver(l: TcpListener, n: usize) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..n {
                let Ok((sock, _)) = l.accept() else { return };
                if let Some(p) = one_request(sock) {
                    let _ = tx.send(p);
                }
            }
        });
        rx
    }

    fn one_request(sock: TcpStream) -> Option<String> {
        let mut r = BufReader::new(sock);
        let mut len = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        let req = ExportTraceServiceRequest::decode(body.as_slice()).ok()?;
        r.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .ok()?;
        Some(req.resource_spans.first()?.schema_url.clone())
    }

    /// A queue pointed at a port with nobody listening (connections are
    /// refused), its counts, and the port.
    fn away_collector(timeout: Duration) -> (u16, OtlpCounts, OtlpQueue) {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let counts = OtlpCounts {
            pods: IntCounterVec::new(Opts::new("pods", "pods"), &["result"]).expect("counter"),
            held: IntGauge::new("held", "held").expect("gauge"),
        };
        let target = OtlpTarget {
            endpoint: format!("http://127.0.0.1:{port}"),
            headers: vec![],
            ca_cert: None,
            timeout,
            retries: 0,
        };
        let q = OtlpQueue::start(target, counts.clone()).expect("queue");
        (port, counts, q)
    }

    /// A collector that is away while pods finish gets them, in order,
    /// once it answers; none is counted failed, and the held gauge goes
    /// up and back to 0.
    #[test]
    fn pods_are_held_while_the_collector_is_away_and_sent_in_order_after() {
        let (port, counts, mut q) = away_collector(Duration::from_secs(2));
        for i in 0..3 {
            q.send(pod(i), &counts.pods);
        }
        let t = Instant::now();
        while counts.held.get() < 3 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "held {}",
                counts.held.get()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let n = |r: &str| counts.pods.with_label_values(&[r]).get();
        assert_eq!((n("sent"), n("failed")), (0, 0));
        // The collector is back; one more pod finishes meanwhile.
        let l = TcpListener::bind(("127.0.0.1", port)).expect("the same port again");
        let got = receiver(l, 4);
        q.send(pod(3), &counts.pods);
        let order: Vec<String> = (0..4)
            .map(|_| got.recv_timeout(Duration::from_secs(10)).expect("a pod"))
            .collect();
        assert_eq!(order, ["pod-0", "pod-1", "pod-2", "pod-3"]);
        q.close(Duration::from_secs(5));
        assert_eq!(
            (n("queued"), n("sent"), n("failed"), n("dropped")),
            (4, 4, 0, 0)
        );
        assert_eq!(counts.held.get(), 0);
    }

    /// Recording stops while the collector is still away: the held pods
    /// are tried once more, then counted failed.
    #[test]
    fn held_pods_are_given_up_at_the_stop_if_the_collector_never_answers() {
        let (_, counts, mut q) = away_collector(Duration::from_secs(1));
        for i in 0..2 {
            q.send(pod(i), &counts.pods);
        }
        q.close(Duration::from_secs(10));
        let n = |r: &str| counts.pods.with_label_values(&[r]).get();
        assert_eq!((n("sent"), n("failed")), (0, 2));
        assert_eq!(counts.held.get(), 0);
    }
}
