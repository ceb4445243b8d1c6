//! The Prometheus metrics of `record --metrics`: their definitions and the
//! text exposition. What feeds them is [`super::Live`]'s business.

use anyhow::Result;
use prometheus::{
    CounterVec, Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
    pub(super) pod_start_sync: HistogramVec,
    pub(super) mount_wait: HistogramVec,
    pub(super) lost_to_polling: HistogramVec,
    pub(super) stage: HistogramVec,
    pub(super) cri_call: HistogramVec,
    pub(super) loop_period: HistogramVec,
    pub(super) loop_busy: CounterVec,
    pub(super) events: IntCounterVec,
    pub(super) dropped: IntCounter,
    pub(super) pod_starts: IntCounterVec,
    pub(super) pod_resyncs: IntCounterVec,
    pub(super) pod_readoptions: IntCounterVec,
    pub(super) abandoned_starts: IntCounterVec,
    pub(super) poll_checks: IntCounterVec,
    pub(super) probe_status: IntGaugeVec,
    pub(super) window_events: IntGauge,
    pub(super) window_overflow: IntCounter,
    pub(super) otlp_pods: IntCounterVec,
    pub(super) otlp_held: IntGauge,
    pub(super) supervisor_notes: IntCounterVec,
    pub(super) untraced_gap: HistogramVec,
}

/// Registers `metric` with `r` and hands it back: each metric is named once.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    metric: M,
) -> Result<M> {
    r.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help)
        .namespace("podtrace")
        .buckets(BUCKETS.to_vec());
    registered(r, HistogramVec::new(opts, labels)?)
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    registered(
        r,
        IntCounterVec::new(Opts::new(name, help).namespace("podtrace"), labels)?,
    )
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("podtrace")
}

impl Metrics {
    /// `node`: the node's name, a constant `node` label on every metric (a
    /// cluster's Prometheus scrapes one recording per node).
    pub fn new(node: &str) -> Result<Metrics> {
        let bv = &["binary", "version"];
        // Per start: `result` says whether the pod's start sync returned
        // an error (kubelet then tries again in a later sync), so a failed
        // start is never averaged in with the ones that worked.
        let bvr = &["binary", "version", "result"];
        let labels = std::collections::HashMap::from([("node".to_string(), node.to_string())]);
        let r = Registry::new_custom(None, Some(labels))?;
        let m = Metrics {
            pod_start_sync: histogram(
                &r,
                "pod_start_sync_seconds",
                "Duration of each pod's start (create) sync in kubelet",
                bvr,
            )?,
            mount_wait: histogram(
                &r,
                "mount_wait_seconds",
                "Time a pod's start sync spent waiting for its volumes (WaitForAttachAndMount)",
                bvr,
            )?,
            lost_to_polling: histogram(
                &r,
                "lost_to_polling_seconds",
                "From the pod's last volume marked mounted to the poll check that noticed it",
                bvr,
            )?,
            stage: histogram(
                &r,
                "stage_seconds",
                "Duration of each traced stage of a pod's start sync, by probe name",
                &["stage", "binary", "version", "result"],
            )?,
            cri_call: histogram(
                &r,
                "cri_call_seconds",
                "Duration of the container runtime's CRI handlers during pod starts (result: the call's own)",
                &["method", "binary", "version", "result"],
            )?,
            loop_period: histogram(
                &r,
                "loop_period_seconds",
                "Gap between consecutive calls of a loop function on one goroutine",
                &["loop", "binary", "version"],
            )?,
            loop_busy: registered(
                &r,
                CounterVec::new(
                    opts(
                        "loop_busy_seconds_total",
                        "Time spent inside each loop function (every call): against the process's own process_cpu_seconds_total, what a loop's interval costs",
                    ),
                    &["loop", "binary", "version"],
                )?,
            )?,
            events: counter(&r, "events_total", "Probe hits recorded", &["binary"])?,
            dropped: registered(&r, IntCounter::with_opts(opts("dropped_events_total", "Probe hits lost because the ring buffer was full"))?)?,
            pod_starts: counter(
                &r,
                "pod_starts_total",
                "Pods whose start (create) sync was seen and summarised (result: whether that sync returned an error)",
                bvr,
            )?,
            pod_resyncs: counter(
                &r,
                "pod_resyncs_total",
                "Pod sync calls that were not a start (updates, periodic and PLEG resyncs)",
                bv,
            )?,
            pod_readoptions: counter(
                &r,
                "pod_readoptions_total",
                "Running pods a kubelet that started (restart, upgrade) added again with a create sync that created no sandbox: never counted as starts",
                bv,
            )?,
            abandoned_starts: counter(
                &r,
                "abandoned_starts_total",
                "Start syncs given up on: no return seen within 300 s, or the window overflowed (the newest first)",
                bv,
            )?,
            poll_checks: counter(
                &r,
                "poll_checks_total",
                "Mount-wait poll checks (getUnmountedVolumes, or the condition closure that inlines it)",
                bv,
            )?,
            probe_status: registered(&r, IntGaugeVec::new(opts("probe_status", "1 for each catalogue probe's resolution status per traced binary"), &["binary", "probe", "status"])?)?,
            window_events: registered(&r, IntGauge::with_opts(opts("live_window_events", "Events held for pods whose start is not summarised yet"))?)?,
            window_overflow: registered(&r, IntCounter::with_opts(opts("live_window_overflow_events_total", "Events let go because the live window was full"))?)?,
            otlp_pods: counter(
                &r,
                "otlp_pods_total",
                "Pods' spans for --otlp-endpoint: queued, sent, failed (rejected, or given up), or dropped (queue full)",
                &["result"],
            )?,
            otlp_held: registered(&r, IntGauge::with_opts(opts("otlp_held_pods", "Pods held for an --otlp-endpoint that does not answer, sent again in order once it does"))?)?,
            supervisor_notes: counter(
                &r,
                "supervisor_notes_total",
                "Processes started/exited/restarted and binaries replaced, found or re-attached while recording",
                &["kind"],
            )?,
            untraced_gap: histogram(
                &r,
                "untraced_gap_seconds",
                "How long a traced binary was not traced: a restart (exit to new process seen) or a replaced binary (to re-attached)",
                &["kind"],
            )?,
            registry: r,
        };
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
