//! `record --metrics` / `--otlp-endpoint`: what a long-running recording
//! tells as it goes.
//!
//! The collector hands every event to [`Live`] (a [`drain::Consumer`]).
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
//!
//! Fed by the drain loop through [`drain::Consumer`]; it never touches the
//! ring, the links or the trace file.

pub mod metrics;
pub mod otlp;
pub mod server;

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use anyhow::Result;
use podtrace_common::KIND_ENTRY;
use prometheus::{Histogram, IntCounter};

use crate::{
    analysis::{
        pods,
        report::{self, PodReport, PodSummary},
    },
    catalogue::Role,
    correlate::Correlator,
    export::otlp as otlp_export,
    format::{Header, Note, ProbeInfo, Rec},
    record::drain,
    trace::Trace,
};
use metrics::Metrics;
use otlp::{OtlpQueue, OtlpTarget};

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
            clock: Some(crate::clock::mono_now),
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
        let syncs = pods::syncs_by_pod(&c);
        let off = self.trace.header.mono_to_unix_ns;
        for (pi, idx) in syncs.iter().enumerate() {
            // Only the pods whose start is due: a start still in progress
            // in the same window is summarised later, whole.
            let Some(first) = pods::start_sync(&c, idx) else {
                continue;
            };
            let s = &c.spans[first];
            if !due.iter().any(|&(start, _)| start == s.start) {
                continue;
            }
            if let PodSummary::Started(p) = report::pod_summary(&c, pi, idx, off) {
                self.observe(&s.binary, &p);
                if let Some(q) = &self.otlp {
                    let req = otlp_export::otlp_request_for(&self.trace, &c, Some(&[pi]));
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

impl drain::Consumer for Live {
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
                    == Some(pods::SYNC_POD_CREATE);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::report::Report,
        correlate::correlate,
        record::drain::Consumer as _,
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
        let m = Arc::new(Metrics::new("node-1").expect("metrics"));
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
            text.contains(
                "binary=\"containerd\",method=\"RunPodSandbox\",version=\"v2.2.9\",node=\"node-1\""
            ),
            "{text}"
        );
        // Every sample names the node (a constant label of the registry).
        assert!(
            text.lines()
                .filter(|l| l.starts_with("podtrace_"))
                .all(|l| l.contains("node=\"node-1\"")),
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
