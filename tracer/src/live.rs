//! `record --metrics` / `--otlp-endpoint`: what a long-running recording
//! tells as it goes.
//!
//! The collector hands every event to [`Live`] (a [`collect::Consumer`]).
//! It keeps a short window of recent events and follows each pod sync call
//! by goroutine. When a pod's create sync (its start) has returned and a
//! grace period has passed (for the reconciler's marks, containerd's calls
//! and kubelet 1.36's on-demand relist to arrive), the window from that
//! sync's start is correlated with the same [`Correlator`] and summarised
//! with the same [`report::pod_summary`] as `podtrace report`; the summary
//! feeds the histograms and the pod's spans are queued for OTLP. The window
//! then moves past the pod, so memory stays bounded over hours: only events
//! since the oldest unfinished start sync (at most [`MAX_OPEN`] old) are
//! kept, and never more than [`MAX_BUFFERED`].
//!
//! Resyncs of running pods are counted (never as starts); loop periods are
//! the gaps between a loop function's consecutive calls on one goroutine.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use podtrace_common::KIND_ENTRY;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::{
    attach::ProbeInfo,
    catalogue::Role,
    collect,
    correlate::Correlator,
    export::otlp,
    report::{self, PodReport, PodSummary},
    trace::{Header, Note, Rec, Trace},
};

/// After a start sync returns, wait this long (event time) before
/// summarising the pod: containerd's calls and the reconciler's volume
/// marks reach the ring from other CPUs, and kubelet 1.36 relists the pod
/// right after the sync.
const GRACE_NS: u64 = 1_000_000_000;
/// Events kept from before a start sync began (a volume marked mounted just
/// before the sync looked).
const MARGIN_NS: u64 = 200_000_000;
/// A start sync open longer than this is given up (kubelet's own mount
/// timeout is 2m3s): its pod is counted in `abandoned_starts_total`.
pub const MAX_OPEN: Duration = Duration::from_secs(300);
/// Most events the window holds, whatever is open (about 200 bytes each).
pub const MAX_BUFFERED: usize = 100_000;
/// Pods queued for the OTLP exporter before further ones are dropped.
const OTLP_QUEUE: usize = 256;

/// Bucket bounds (s) for every duration: 1 ms .. 10 s, finest around
/// kubelet's 30 ms (tuned) and 300 ms (default) mount-wait poll periods and
/// its 100 ms / 1 s loop periods (a mount wait is one poll period and a
/// little more: 10 ms steps above 300 ms, 1 ms above 30 ms).
pub const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.031, 0.0325, 0.035, 0.04, 0.05,
    0.06, 0.075, 0.09, 0.1, 0.11, 0.125, 0.15, 0.2, 0.25, 0.3, 0.31, 0.325, 0.35, 0.4, 0.5, 0.6,
    0.75, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
];

/// The Prometheus metrics of one recording (prefix `podtrace_`). No label
/// names a pod: a cluster's pod churn must not grow the series.
pub struct Metrics {
    pub registry: Registry,
    pod_start_sync: HistogramVec,
    mount_wait: HistogramVec,
    lost_to_polling: HistogramVec,
    stage: HistogramVec,
    cri_call: HistogramVec,
    loop_period: HistogramVec,
    events: IntCounterVec,
    dropped: IntCounter,
    pod_starts: IntCounterVec,
    pod_resyncs: IntCounterVec,
    abandoned_starts: IntCounterVec,
    poll_checks: IntCounterVec,
    probe_status: IntGaugeVec,
    window_events: IntGauge,
    window_overflow: IntCounter,
    otlp_pods: IntCounterVec,
    supervisor_notes: IntCounterVec,
    untraced_gap: HistogramVec,
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> Result<HistogramVec> {
    Ok(HistogramVec::new(
        HistogramOpts::new(name, help)
            .namespace("podtrace")
            .buckets(BUCKETS.to_vec()),
        labels,
    )?)
}

fn counter(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    Ok(IntCounterVec::new(
        Opts::new(name, help).namespace("podtrace"),
        labels,
    )?)
}

impl Metrics {
    pub fn new() -> Result<Metrics> {
        let bv = &["binary", "version"];
        let m = Metrics {
            registry: Registry::new(),
            pod_start_sync: histogram(
                "pod_start_sync_seconds",
                "Duration of each pod's start (create) sync in kubelet",
                bv,
            )?,
            mount_wait: histogram(
                "mount_wait_seconds",
                "Time a pod's start sync spent waiting for its volumes (WaitForAttachAndMount)",
                bv,
            )?,
            lost_to_polling: histogram(
                "lost_to_polling_seconds",
                "From the pod's last volume marked mounted to the poll check that noticed it",
                bv,
            )?,
            stage: histogram(
                "stage_seconds",
                "Duration of each traced stage of a pod's start sync, by probe name",
                &["stage", "binary", "version"],
            )?,
            cri_call: histogram(
                "cri_call_seconds",
                "Duration of the container runtime's CRI handlers during pod starts",
                &["method", "binary", "version"],
            )?,
            loop_period: histogram(
                "loop_period_seconds",
                "Gap between consecutive calls of a loop function on one goroutine",
                &["loop", "binary", "version"],
            )?,
            events: counter("events_total", "Probe hits recorded", &["binary"])?,
            dropped: IntCounter::with_opts(
                Opts::new(
                    "dropped_events_total",
                    "Probe hits lost because the ring buffer was full",
                )
                .namespace("podtrace"),
            )?,
            pod_starts: counter(
                "pod_starts_total",
                "Pods whose start (create) sync was seen and summarised",
                bv,
            )?,
            pod_resyncs: counter(
                "pod_resyncs_total",
                "Pod sync calls that were not a start (updates, periodic and PLEG resyncs)",
                bv,
            )?,
            abandoned_starts: counter(
                "abandoned_starts_total",
                "Start syncs given up on: no return seen within 300 s, or the window overflowed",
                bv,
            )?,
            poll_checks: counter(
                "poll_checks_total",
                "Mount-wait poll checks (getUnmountedVolumes, or the condition closure that inlines it)",
                bv,
            )?,
            probe_status: IntGaugeVec::new(
                Opts::new(
                    "probe_status",
                    "1 for each catalogue probe's resolution status per traced binary",
                )
                .namespace("podtrace"),
                &["binary", "probe", "status"],
            )?,
            window_events: IntGauge::with_opts(
                Opts::new(
                    "live_window_events",
                    "Events held for pods whose start is not summarised yet",
                )
                .namespace("podtrace"),
            )?,
            window_overflow: IntCounter::with_opts(
                Opts::new(
                    "live_window_overflow_events_total",
                    "Events let go because the live window was full",
                )
                .namespace("podtrace"),
            )?,
            otlp_pods: counter(
                "otlp_pods_total",
                "Pods' spans for --otlp-endpoint: queued, sent, failed, or dropped (queue full)",
                &["result"],
            )?,
            supervisor_notes: counter(
                "supervisor_notes_total",
                "Processes started/exited/restarted and binaries replaced, found or re-attached while recording",
                &["kind"],
            )?,
            untraced_gap: histogram(
                "untraced_gap_seconds",
                "How long a traced binary was not traced: a restart (exit to new process seen) or a replaced binary (to re-attached)",
                &["kind"],
            )?,
        };
        let r = &m.registry;
        r.register(Box::new(m.pod_start_sync.clone()))?;
        r.register(Box::new(m.mount_wait.clone()))?;
        r.register(Box::new(m.lost_to_polling.clone()))?;
        r.register(Box::new(m.stage.clone()))?;
        r.register(Box::new(m.cri_call.clone()))?;
        r.register(Box::new(m.loop_period.clone()))?;
        r.register(Box::new(m.events.clone()))?;
        r.register(Box::new(m.dropped.clone()))?;
        r.register(Box::new(m.pod_starts.clone()))?;
        r.register(Box::new(m.pod_resyncs.clone()))?;
        r.register(Box::new(m.abandoned_starts.clone()))?;
        r.register(Box::new(m.poll_checks.clone()))?;
        r.register(Box::new(m.probe_status.clone()))?;
        r.register(Box::new(m.window_events.clone()))?;
        r.register(Box::new(m.window_overflow.clone()))?;
        r.register(Box::new(m.otlp_pods.clone()))?;
        r.register(Box::new(m.supervisor_notes.clone()))?;
        r.register(Box::new(m.untraced_gap.clone()))?;
        Ok(m)
    }

    /// Sets `probe_status{binary,probe,status}` to 1.
    pub fn probe_status(&self, binary: &str, probe: &str, status: &str) {
        self.probe_status
            .with_label_values(&[binary, probe, status])
            .set(1);
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on an inconsistent metric family,
        // which registration already ruled out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Where `--otlp-endpoint` sends finished pods.
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
struct OtlpQueue {
    tx: Option<mpsc::SyncSender<ExportTraceServiceRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
    outstanding: Arc<AtomicU64>,
}

impl OtlpQueue {
    fn start(target: OtlpTarget, counts: IntCounterVec) -> Result<OtlpQueue> {
        // Check the URL now, not at the first pod.
        otlp::endpoint_url(&target.endpoint)?;
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
                for req in rx {
                    match otlp::push_with(&target.endpoint, &req, &opts) {
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

    fn send(&self, req: ExportTraceServiceRequest, counts: &IntCounterVec) {
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
    fn close(&mut self, limit: Duration) {
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

type GKey = (u32, u64, u64);

/// A pod sync call in progress.
struct OpenSync {
    probe: u32,
    start: u64,
    create: bool,
}

/// What each probe id means to the live view, worked out once.
struct ProbeKind {
    role: Role,
    /// Index into [`Live::labels`].
    binary: usize,
    events: IntCounter,
    /// Counts as a mount-wait poll check.
    check: Option<IntCounter>,
    /// The binary's resync counter (pod syncs), the probe's period
    /// histogram (loops): label lookups done here once, not per event.
    resyncs: IntCounter,
    loop_period: Option<Histogram>,
    update_type_slot: Option<usize>,
}

/// The live consumer of `record --metrics` / `--otlp-endpoint`.
pub struct Live {
    metrics: Arc<Metrics>,
    kinds: Vec<ProbeKind>,
    /// (binary, version) label values per traced binary.
    labels: Vec<(String, String)>,
    /// Catalogue binary name → version, for the labels of binaries added
    /// later.
    versions: HashMap<String, String>,
    /// Header only: the OTLP builder reads the clock offset, binaries and
    /// host from it.
    trace: Trace,
    window: VecDeque<Rec>,
    open: HashMap<GKey, OpenSync>,
    /// Start syncs that returned: (start, end), waiting for [`GRACE_NS`].
    pending: Vec<(u64, u64)>,
    /// Per (loop probe, goroutine): last call's start and whether a call is
    /// open (a second entry then is a morestack repeat).
    loops: HashMap<(u32, GKey), (u64, bool)>,
    last_t: u64,
    /// The events' clock (CLOCK_MONOTONIC), so that a start whose process
    /// went quiet after it (exited, say) is still summarised once its grace
    /// passed; None replays a recorded trace on its own timestamps.
    clock: Option<fn() -> u64>,
    drops: u64,
    otlp: Option<OtlpQueue>,
}

impl Live {
    /// `versions`: each traced binary's version (catalogue binary name →
    /// version), for the `version` label.
    pub fn new(
        metrics: Arc<Metrics>,
        header: &Header,
        versions: &HashMap<String, String>,
        otlp: Option<OtlpTarget>,
    ) -> Result<Live> {
        let otlp = match otlp {
            Some(t) => Some(OtlpQueue::start(t, metrics.otlp_pods.clone())?),
            None => None,
        };
        let mut live = Live {
            metrics,
            kinds: Vec::new(),
            labels: Vec::new(),
            versions: versions.clone(),
            // The probe table is filled by add_probes, with the kinds.
            trace: Trace {
                header: Header {
                    probes: Vec::new(),
                    ..header.clone()
                },
                events: Vec::new(),
                footer: None,
                warnings: Vec::new(),
                notes: Vec::new(),
            },
            window: VecDeque::new(),
            open: HashMap::new(),
            pending: Vec::new(),
            loops: HashMap::new(),
            last_t: 0,
            clock: Some(crate::trace::mono_now),
            drops: 0,
            otlp,
        };
        live.add_probes(&header.probes);
        Ok(live)
    }

    /// Works out what each probe id means, for `probes` following the ones
    /// already known (the header's, then those of a binary attached anew).
    fn add_probes(&mut self, probes: &[ProbeInfo]) {
        self.trace.header.probes.extend_from_slice(probes);
        let all = &self.trace.header.probes;
        let has_check = |b: &str| {
            all.iter()
                .any(|p| p.binary == b && p.role == Role::PollCheck)
        };
        for p in probes {
            let binary = match self.labels.iter().position(|(b, _)| *b == p.binary) {
                Some(i) => i,
                None => {
                    let v = self.versions.get(&p.binary).cloned().unwrap_or_default();
                    self.labels.push((p.binary.clone(), v));
                    self.labels.len() - 1
                }
            };
            let (b, v) = &self.labels[binary];
            let check = match p.role {
                Role::PollCheck => true,
                // kubelet 1.32-1.34 inline getUnmountedVolumes into the
                // condition closure: each of its calls is a check.
                Role::PollCond => !has_check(&p.binary),
                _ => false,
            };
            self.kinds.push(ProbeKind {
                role: p.role,
                binary,
                events: self.metrics.events.with_label_values(&[b]),
                check: check.then(|| self.metrics.poll_checks.with_label_values(&[b, v])),
                resyncs: self.metrics.pod_resyncs.with_label_values(&[b, v]),
                loop_period: (p.role == Role::Loop).then(|| {
                    self.metrics
                        .loop_period
                        .with_label_values(&[&p.probe, b, v])
                }),
                update_type_slot: p
                    .entry_captures
                    .iter()
                    .position(|c| c.name == "update_type"),
            });
        }
    }

    fn label<'s>(&'s self, binary: &'s str) -> (&'s str, &'s str) {
        self.labels
            .iter()
            .find(|(b, _)| b == binary)
            .map_or((binary, ""), |(b, v)| (b.as_str(), v.as_str()))
    }

    /// Correlates the window once for every start sync that is due (all of
    /// them when `all`), and summarises each pod with the report's code.
    fn summarise_due(&mut self, all: bool) {
        let now = self.clock.map_or(self.last_t, |c| self.last_t.max(c()));
        let (due, wait): (Vec<_>, Vec<_>) = self
            .pending
            .iter()
            .partition(|(_, end)| all || now >= end.saturating_add(GRACE_NS));
        self.pending = wait;
        let Some(from) = due.iter().map(|(s, _)| *s).min() else {
            return;
        };
        let from = from.saturating_sub(MARGIN_NS);
        let mut recs: Vec<&Rec> = self.window.iter().filter(|r| r.t >= from).collect();
        recs.sort_by_key(|r| r.t);
        let mut c = Correlator::new(&self.trace.header.probes, MAX_OPEN.as_nanos() as u64);
        for r in recs {
            c.push(r);
        }
        let c = c.finish();
        let syncs = report::syncs_by_pod(&c);
        let off = self.trace.header.mono_to_unix_ns;
        for (pi, idx) in syncs.iter().enumerate() {
            // Only the pods whose start is due: a start still in progress
            // in the same window is summarised later, whole.
            let Some(first) = report::start_sync(&c, idx) else {
                continue;
            };
            let s = &c.spans[first];
            if !due.iter().any(|&(start, _)| start == s.start) {
                continue;
            }
            if let PodSummary::Started(p) = report::pod_summary(&c, pi, idx, off) {
                self.observe(&s.binary, &p);
                if let Some(q) = &self.otlp {
                    let req = otlp::otlp_request_for(&self.trace, &c, Some(&[pi]));
                    q.send(req, &self.metrics.otlp_pods);
                }
            }
        }
    }

    /// A started pod's numbers into the histograms.
    fn observe(&self, binary: &str, p: &PodReport) {
        let m = &self.metrics;
        let (b, v) = self.label(binary);
        m.pod_starts.with_label_values(&[b, v]).inc();
        let secs = |ms: f64| ms / 1e3;
        if let Some(d) = p.stages.first().and_then(|s| s.duration_ms) {
            m.pod_start_sync.with_label_values(&[b, v]).observe(secs(d));
        }
        for s in p.stages.iter().skip(1) {
            if let Some(d) = s.duration_ms {
                m.stage
                    .with_label_values(&[&s.stage, b, v])
                    .observe(secs(d));
            }
        }
        if let Some(mw) = &p.mount_wait {
            if let Some(d) = mw.duration_ms {
                m.mount_wait.with_label_values(&[b, v]).observe(secs(d));
            }
            if let Some(l) = mw.lost_to_polling_ms {
                m.lost_to_polling
                    .with_label_values(&[b, v])
                    .observe(secs(l.max(0.0)));
            }
        }
        // The runtime's own binary and version.
        let rt = self
            .labels
            .iter()
            .find(|(b, _)| b != binary)
            .map_or(("", ""), |(b, v)| (b.as_str(), v.as_str()));
        for c in &p.cri {
            if let Some(d) = c.duration_ms {
                m.cri_call
                    .with_label_values(&[&c.call, rt.0, rt.1])
                    .observe(secs(d));
            }
        }
    }

    /// Lets go of the window's events no pod still needs.
    fn trim(&mut self) {
        let max_open = MAX_OPEN.as_nanos() as u64;
        let now = self.last_t;
        let mut abandoned = Vec::new();
        self.open.retain(|_, o| {
            let keep = now.saturating_sub(o.start) <= max_open;
            if !keep && o.create {
                abandoned.push(o.probe);
            }
            keep
        });
        for p in abandoned {
            self.abandon(p);
        }
        let oldest = self
            .open
            .values()
            .filter(|o| o.create)
            .map(|o| o.start)
            .chain(self.pending.iter().map(|(s, _)| *s))
            .min()
            .unwrap_or(now);
        let horizon = oldest.saturating_sub(MARGIN_NS);
        while self.window.front().is_some_and(|r| r.t < horizon) {
            self.window.pop_front();
        }
        let over = self.window.len().saturating_sub(MAX_BUFFERED);
        if over > 0 {
            self.window.drain(..over);
            self.metrics.window_overflow.inc_by(over as u64);
            // Starts whose beginning is gone can no longer be summarised.
            let first = self.window.front().map_or(now, |r| r.t);
            let gone: Vec<u32> = self
                .open
                .values()
                .filter(|o| o.create && o.start < first)
                .map(|o| o.probe)
                .collect();
            self.open.retain(|_, o| !(o.create && o.start < first));
            self.pending.retain(|(s, _)| *s >= first);
            for p in gone {
                self.abandon(p);
            }
        }
        // Goroutines that stopped calling a loop function.
        self.loops
            .retain(|_, (t, open)| *open || now.saturating_sub(*t) <= 60_000_000_000);
        self.metrics.window_events.set(self.window.len() as i64);
    }

    fn abandon(&self, probe: u32) {
        if let Some(k) = self.kinds.get(probe as usize) {
            let (b, v) = &self.labels[k.binary];
            self.metrics
                .abandoned_starts
                .with_label_values(&[b, v])
                .inc();
        }
    }
}

impl collect::Consumer for Live {
    fn probes_added(&mut self, probes: &[ProbeInfo]) {
        self.add_probes(probes);
    }

    fn note(&mut self, n: &Note) {
        let kind = n.kind.as_str();
        self.metrics
            .supervisor_notes
            .with_label_values(&[kind])
            .inc();
        if let Some(gap) = n.gap_ns {
            self.metrics
                .untraced_gap
                .with_label_values(&[kind])
                .observe(gap as f64 / 1e9);
        }
    }

    fn event(&mut self, r: &Rec) {
        let Some(k) = self.kinds.get(r.p as usize) else {
            return;
        };
        k.events.inc();
        self.last_t = self.last_t.max(r.t);
        let key = (r.pid, r.g, r.goid);
        let entry = r.k == KIND_ENTRY;
        match k.role {
            Role::PodSync if entry => {
                if self.open.get(&key).is_some_and(|o| o.probe == r.p) {
                    return; // morestack or restarted probe: the same call
                }
                let create = k
                    .update_type_slot
                    .and_then(|i| r.a.get(i))
                    .and_then(|v| v.as_ref())
                    .and_then(|v| v.as_u64())
                    == Some(report::SYNC_POD_CREATE);
                if !create {
                    k.resyncs.inc();
                }
                self.open.insert(
                    key,
                    OpenSync {
                        probe: r.p,
                        start: r.t,
                        create,
                    },
                );
            }
            Role::PodSync => {
                if self.open.get(&key).is_some_and(|o| o.probe == r.p) {
                    if let Some(o) = self.open.remove(&key) {
                        if o.create {
                            self.pending.push((o.start, r.t));
                        }
                    }
                }
            }
            Role::Loop => {
                let slot = self.loops.entry((r.p, key)).or_insert((0, false));
                if entry && !slot.1 {
                    if let Some(h) = k.loop_period.as_ref().filter(|_| slot.0 != 0) {
                        h.observe(r.t.saturating_sub(slot.0) as f64 / 1e9);
                    }
                    *slot = (r.t, true);
                } else if !entry {
                    slot.1 = false;
                }
                // Loop ticks are not part of any pod's summary: not kept.
                return;
            }
            _ => {
                if entry {
                    if let Some(c) = &k.check {
                        c.inc();
                    }
                }
            }
        }
        self.window.push_back(r.clone());
    }

    fn drained(&mut self, drops: u64) {
        self.metrics
            .dropped
            .inc_by(drops.saturating_sub(self.drops));
        self.drops = self.drops.max(drops);
        if !self.pending.is_empty() {
            self.summarise_due(false);
        }
        self.trim();
    }

    fn finish(&mut self, drops: u64) {
        self.drained(drops);
        self.summarise_due(true);
        self.trim();
        if let Some(mut q) = self.otlp.take() {
            q.close(Duration::from_secs(30));
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        collect::Consumer as _,
        commands::correlate,
        report::Report,
        test_support::synth::{synth, SynthPod, SynthSpec},
    };

    fn value(text: &str, line_start: &str) -> f64 {
        text.lines()
            .filter(|l| l.starts_with(line_start))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Pods summarised live, event by event, get the report's numbers; the
    /// window is empty once they are done; resyncs are no starts.
    #[test]
    fn live_summaries_match_the_report_and_the_window_empties() {
        let mut pods: Vec<SynthPod> = (0..8)
            .map(|i| SynthPod::new(i, 50.0 + 700.0 * i as f64, 20.0 + 37.0 * i as f64, 30.0))
            .collect();
        pods[3].later_syncs = 2;
        let mut running = SynthPod::new(9, 10.0, 0.0, 30.0);
        running.already_running = true;
        pods.push(running);
        let mut spec = SynthSpec::new(pods);
        spec.containerd_pid = Some(4242);
        spec.reconcile_ms = Some(100.0);
        let (trace, _) = synth(&spec).expect("synth");
        let report = Report::build(&trace, &correlate(&trace));
        let m = Arc::new(Metrics::new().expect("metrics"));
        let versions = HashMap::from([
            ("kubelet".to_string(), "v1.36.3".to_string()),
            ("containerd".to_string(), "v2.2.9".to_string()),
        ]);
        let mut live = Live::new(Arc::clone(&m), &trace.header, &versions, None).expect("live");
        live.clock = None;
        let mut events = trace.events.clone();
        events.sort_by_key(|r| r.t);
        let mut most = 0;
        for (i, r) in events.iter().enumerate() {
            live.event(r);
            if i % 50 == 0 {
                live.drained(0);
                most = most.max(live.window.len());
            }
        }
        live.finish(3);
        let text = String::from_utf8(m.encode()).expect("utf-8");
        assert_eq!(report.pods.len(), 8);
        assert_eq!(value(&text, "podtrace_pod_starts_total{"), 8.0, "{text}");
        assert!(value(&text, "podtrace_pod_resyncs_total{") >= 3.0, "{text}");
        assert_eq!(value(&text, "podtrace_dropped_events_total"), 3.0);
        assert_eq!(
            value(&text, "podtrace_events_total{"),
            trace.events.len() as f64
        );
        let sum = |f: fn(&PodReport) -> Option<f64>| -> f64 {
            report.pods.iter().filter_map(f).sum::<f64>() / 1e3
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let mw = sum(|p| p.mount_wait.as_ref()?.duration_ms);
        assert!(
            close(value(&text, "podtrace_mount_wait_seconds_sum{"), mw),
            "{text}"
        );
        let lost = sum(|p| p.mount_wait.as_ref()?.lost_to_polling_ms);
        assert!(close(
            value(&text, "podtrace_lost_to_polling_seconds_sum{"),
            lost
        ));
        let sync = sum(|p| p.stages.first()?.duration_ms);
        assert!(close(
            value(&text, "podtrace_pod_start_sync_seconds_sum{"),
            sync
        ));
        let cri: f64 = report
            .pods
            .iter()
            .flat_map(|p| p.cri.iter().filter_map(|c| c.duration_ms))
            .sum::<f64>()
            / 1e3;
        assert!(cri > 0.0);
        assert!(
            close(value(&text, "podtrace_cri_call_seconds_sum{"), cri),
            "{text}"
        );
        assert!(
            text.contains("binary=\"containerd\",method=\"RunPodSandbox\",version=\"v2.2.9\""),
            "{text}"
        );
        assert!(value(&text, "podtrace_loop_period_seconds_count{") > 10.0);
        // Bounded: the window never held the whole trace, and holds nothing
        // once every start is summarised.
        assert!(most < events.len() / 2, "window {most} of {}", events.len());
        assert!(
            live.window.iter().all(|r| r.t + MARGIN_NS >= live.last_t),
            "the window kept events older than its margin"
        );
        assert!(live.open.is_empty() && live.pending.is_empty());
    }
}
