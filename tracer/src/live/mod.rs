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
    format::{BinaryAdded, BinaryRecord, Header, Note, ProbeInfo, Rec},
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
/// Due starts are summarised together at most this often: each summary
/// correlates the window from the oldest due start, and at a dozen pod
/// starts a second one correlation per pod was a quarter of the
/// collector's CPU. A pod's numbers then arrive 1-2 s after its sync.
const SUMMARISE_EVERY_NS: u64 = 1_000_000_000;
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
    /// A plain sync that is its pod's first by this kubelet process after
    /// another process synced it: a re-adoption whose create update kubelet
    /// coalesced into a later sync (see `pods::readoption`); summarised
    /// like a start to tell whether it created anything.
    readopt: bool,
}

/// A start (create) sync that returned, waiting for [`GRACE_NS`].
struct Pending {
    start: u64,
    end: u64,
    key: GKey,
    /// A plain sync that may be a re-adoption (see [`OpenSync::readopt`]).
    readopt: bool,
}

/// What each probe id means to the live view, worked out once.
struct ProbeKind {
    role: Role,
    /// Index into [`Live::labels`]: the binary file it was attached to.
    label: usize,
    events: IntCounter,
    /// Counts as a mount-wait poll check.
    check: Option<IntCounter>,
    /// The binary's resync counter (pod syncs), the probe's period
    /// histogram (loops): label lookups done here once, not per event.
    resyncs: IntCounter,
    loop_period: Option<Histogram>,
    loop_busy: Option<prometheus::Counter>,
    update_type_slot: Option<usize>,
    uid_slot: Option<usize>,
}

/// Pods whose last kubelet process is remembered (see `Live::synced_by`).
const MAX_PODS_SEEN: usize = 20_000;

/// The live consumer of `record --metrics` / `--otlp-endpoint`.
pub struct Live {
    metrics: Arc<Metrics>,
    kinds: Vec<ProbeKind>,
    /// (binary, version) label values, one per distinct pair of the binary
    /// files attached: a binary swapped in at the same path (an upgrade)
    /// gets its own version's series.
    labels: Vec<(String, String)>,
    /// Header only: the OTLP builder reads the clock offset, binaries and
    /// host from it.
    trace: Trace,
    window: VecDeque<Rec>,
    open: HashMap<GKey, OpenSync>,
    pending: Vec<Pending>,
    /// Per pod UID, the kubelet process (binary, pid) that synced it last:
    /// a sync by another process is a possible re-adoption.
    synced_by: HashMap<String, (usize, u32)>,
    /// Syncs that were no start (resyncs, updates) and returned, with
    /// their goroutine: their calls are the first let go of when the window
    /// is full (no start needs them).
    resyncs: VecDeque<(GKey, u64, u64)>,
    /// Per (loop probe, goroutine): last call's start and whether a call is
    /// open (a second entry then is a morestack repeat).
    loops: HashMap<(u32, GKey), (u64, bool)>,
    last_t: u64,
    /// The events' clock (CLOCK_MONOTONIC), so that a start whose process
    /// went quiet after it (exited, say) is still summarised once its grace
    /// passed; None replays a recorded trace on its own timestamps.
    clock: Option<fn() -> u64>,
    /// Most events the window holds ([`MAX_BUFFERED`]; smaller in tests).
    cap: usize,
    /// When due starts are next summarised ([`SUMMARISE_EVERY_NS`]).
    next_summary: u64,
    drops: u64,
    otlp: Option<OtlpQueue>,
}

/// The `version` label of a binary: the component's version, else its Go
/// version (traces of podtrace before per-binary versions).
fn version_of(b: &BinaryRecord) -> String {
    b.version
        .clone()
        .or_else(|| b.go_version.clone())
        .unwrap_or_default()
}

/// Which of `binaries` each of `probes` belongs to. `record` plans the
/// binaries in the header's order, each one's probes after the previous
/// one's and in catalogue order: the next binary of a name begins where a
/// probe name repeats.
fn owners(binaries: &[BinaryRecord], probes: &[ProbeInfo]) -> Vec<Option<usize>> {
    let mut seen: Vec<Vec<&str>> = vec![Vec::new(); binaries.len()];
    let mut current: HashMap<&str, usize> = HashMap::new();
    probes
        .iter()
        .map(|p| {
            let name = p.binary.as_str();
            let from = current.get(name).copied();
            let fits = |i: usize| binaries[i].name == name && !seen[i].contains(&p.probe.as_str());
            let at = match from {
                Some(i) if fits(i) => Some(i),
                _ => (from.map_or(0, |i| i + 1)..binaries.len()).find(|&i| fits(i)),
            };
            if let Some(i) = at {
                seen[i].push(&p.probe);
                current.insert(name, i);
            }
            at
        })
        .collect()
}

impl Live {
    pub fn new(metrics: Arc<Metrics>, header: &Header, otlp: Option<OtlpTarget>) -> Result<Live> {
        let otlp = match otlp {
            Some(t) => Some(OtlpQueue::start(
                t,
                otlp::OtlpCounts {
                    pods: metrics.otlp_pods.clone(),
                    held: metrics.otlp_held.clone(),
                },
            )?),
            None => None,
        };
        let mut live = Live {
            metrics,
            kinds: Vec::new(),
            labels: Vec::new(),
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
            synced_by: HashMap::new(),
            pending: Vec::new(),
            resyncs: VecDeque::new(),
            loops: HashMap::new(),
            last_t: 0,
            clock: Some(crate::clock::mono_now),
            cap: MAX_BUFFERED,
            next_summary: 0,
            drops: 0,
            otlp,
        };
        let owner = owners(&header.binaries, &header.probes);
        let labels: Vec<usize> = owner
            .iter()
            .zip(&header.probes)
            .map(|(o, p)| match o {
                Some(i) => live.label_of(&header.binaries[*i]),
                None => live.label_of_name(&p.binary, String::new()),
            })
            .collect();
        live.add_probes(&header.probes, &labels);
        Ok(live)
    }

    fn label_of(&mut self, b: &BinaryRecord) -> usize {
        self.label_of_name(&b.name, version_of(b))
    }

    fn label_of_name(&mut self, name: &str, version: String) -> usize {
        match self
            .labels
            .iter()
            .position(|(n, v)| n == name && *v == version)
        {
            Some(i) => i,
            None => {
                self.labels.push((name.to_string(), version));
                self.labels.len() - 1
            }
        }
    }

    /// Works out what each probe id means, for `probes` following the ones
    /// already known (the header's, then those of a binary attached anew),
    /// each with its binary's label.
    fn add_probes(&mut self, probes: &[ProbeInfo], labels: &[usize]) {
        self.trace.header.probes.extend_from_slice(probes);
        for (p, &label) in probes.iter().zip(labels) {
            let has_check = probes
                .iter()
                .zip(labels)
                .any(|(q, &l)| l == label && q.role == Role::PollCheck);
            let (b, v) = &self.labels[label];
            let check = match p.role {
                Role::PollCheck => true,
                // kubelet 1.32-1.34 inline getUnmountedVolumes into the
                // condition closure: each of its calls is a check.
                Role::PollCond => !has_check,
                _ => false,
            };
            self.kinds.push(ProbeKind {
                role: p.role,
                label,
                events: self.metrics.events.with_label_values(&[b]),
                check: check.then(|| self.metrics.poll_checks.with_label_values(&[b, v])),
                resyncs: self.metrics.pod_resyncs.with_label_values(&[b, v]),
                loop_period: (p.role == Role::Loop).then(|| {
                    self.metrics
                        .loop_period
                        .with_label_values(&[&p.probe, b, v])
                }),
                loop_busy: (p.role == Role::Loop)
                    .then(|| self.metrics.loop_busy.with_label_values(&[&p.probe, b, v])),
                update_type_slot: p
                    .entry_captures
                    .iter()
                    .position(|c| c.name == "update_type"),
                uid_slot: p.entry_captures.iter().position(|c| c.name == "pod_uid"),
            });
        }
    }

    /// The label index of the binary that probe `probe` belongs to.
    fn label_of_probe(&self, probe: u32) -> Option<usize> {
        self.kinds.get(probe as usize).map(|k| k.label)
    }

    /// The events' clock now (or the last event's time, replaying).
    fn now(&self) -> u64 {
        self.clock.map_or(self.last_t, |c| self.last_t.max(c()))
    }

    /// Correlates the window once for every start sync that is due (all of
    /// them when `all`), and summarises each pod with the report's code.
    fn summarise_due(&mut self, all: bool) {
        let now = self.now();
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| all || now >= p.end.saturating_add(GRACE_NS));
        self.pending = wait;
        let Some(from) = due.iter().map(|p| p.start).min() else {
            return;
        };
        let from = from.saturating_sub(MARGIN_NS);
        // The goroutines of syncs not due yet (still open, or returned less
        // than the grace ago) hold only their own pods' calls: those pods
        // are summarised later, and correlating their calls now is work
        // for nothing (half the window at a dozen starts a second).
        let later: std::collections::HashSet<GKey> = self
            .open
            .keys()
            .copied()
            .chain(self.pending.iter().map(|p| p.key))
            .filter(|k| !due.iter().any(|d| d.key == *k))
            .collect();
        let mut recs: Vec<&Rec> = self
            .window
            .iter()
            .filter(|r| r.t >= from && !later.contains(&(r.pid, r.g, r.goid)))
            .collect();
        recs.sort_by_key(|r| r.t);
        let mut c = Correlator::new(&self.trace.header.probes, MAX_OPEN.as_nanos() as u64);
        for r in recs {
            c.push(r);
        }
        let c = c.finish();
        let syncs = pods::syncs_by_pod(&c);
        let off = self.trace.header.mono_to_unix_ns;
        let is_due = |s: &crate::correlate::Span| due.iter().any(|p| p.start == s.start);
        for (pi, idx) in syncs.iter().enumerate() {
            // Re-adoptions (a kubelet that started adding a running pod
            // again) are counted apart, never as starts.
            for &i in idx {
                let s = &c.spans[i];
                // A plain sync kept as a possible re-adoption: its earlier
                // sync by the other kubelet may be gone from the window.
                let candidate = due.iter().any(|p| p.start == s.start && p.readopt);
                let readopted = if candidate {
                    pods::created_nothing(&c, i)
                } else {
                    is_due(s) && pods::readoption(&c, i)
                };
                if readopted {
                    if let Some(l) = self.label_of_probe(s.probe) {
                        let (b, v) = &self.labels[l];
                        self.metrics
                            .pod_readoptions
                            .with_label_values(&[b, v])
                            .inc();
                    }
                }
            }
            // Only the pods whose start is due: a start still in progress
            // in the same window is summarised later, whole.
            let Some(first) = pods::start_sync(&c, idx) else {
                continue;
            };
            let s = &c.spans[first];
            if !is_due(s) {
                continue;
            }
            if let PodSummary::Started(p) = report::pod_summary(&c, pi, idx, off) {
                // The runtime's binary and version: the one whose probe
                // saw the pod's first CRI call.
                let rt = c
                    .pod_spans(pi)
                    .iter()
                    .map(|&j| &c.spans[j])
                    .find(|x| x.role == Role::Cri)
                    .and_then(|x| self.label_of_probe(x.probe));
                if let Some(l) = self.label_of_probe(s.probe) {
                    self.observe(l, rt, &p);
                }
                if let Some(q) = &self.otlp {
                    let req = otlp_export::otlp_request_for(&self.trace, &c, Some(&[pi]));
                    q.send(req, &self.metrics.otlp_pods);
                }
            }
        }
    }

    /// A started pod's numbers into the histograms, under the labels of
    /// the binary that synced it (`label`) and of the runtime (`rt`), and
    /// `result`: whether its start sync returned an error (a failed start
    /// is counted and timed, but apart from the ones that worked).
    fn observe(&self, label: usize, rt: Option<usize>, p: &PodReport) {
        let m = &self.metrics;
        let (b, v) = &self.labels[label];
        let failed = p.stages.first().is_some_and(|s| s.error);
        let result = if failed { "error" } else { "ok" };
        let bvr = [b.as_str(), v.as_str(), result];
        m.pod_starts.with_label_values(&bvr).inc();
        let secs = |ms: f64| ms / 1e3;
        if let Some(d) = p.stages.first().and_then(|s| s.duration_ms) {
            m.pod_start_sync.with_label_values(&bvr).observe(secs(d));
        }
        for s in p.stages.iter().skip(1) {
            if let Some(d) = s.duration_ms {
                m.stage
                    .with_label_values(&[&s.stage, b, v, result])
                    .observe(secs(d));
            }
        }
        if let Some(mw) = &p.mount_wait {
            if let Some(d) = mw.duration_ms {
                m.mount_wait.with_label_values(&bvr).observe(secs(d));
            }
            if let Some(l) = mw.lost_to_polling_ms {
                m.lost_to_polling
                    .with_label_values(&bvr)
                    .observe(secs(l.max(0.0)));
            }
        }
        let (rb, rv) = rt.map_or(("", ""), |i| {
            let (b, v) = &self.labels[i];
            (b.as_str(), v.as_str())
        });
        for c in &p.cri {
            if let Some(d) = c.duration_ms {
                let result = if c.error { "error" } else { "ok" };
                m.cri_call
                    .with_label_values(&[&c.call, rb, rv, result])
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
            .chain(self.pending.iter().map(|p| p.start))
            .min()
            .unwrap_or(now);
        let horizon = oldest.saturating_sub(MARGIN_NS);
        while self.window.front().is_some_and(|r| r.t < horizon) {
            self.window.pop_front();
        }
        while self.resyncs.front().is_some_and(|r| r.2 < horizon) {
            self.resyncs.pop_front();
        }
        if self.window.len() > self.cap {
            self.thin();
        }
        // Goroutines that stopped calling a loop function.
        self.loops
            .retain(|_, (t, open)| *open || now.saturating_sub(*t) <= 60_000_000_000);
        self.metrics.window_events.set(self.window.len() as i64);
    }

    /// The window is over its cap: let go of what the starts still open
    /// need least, down to 3/4 of the cap (so that a window kept full is
    /// not thinned at every drain). First the calls of syncs that were no
    /// start (resyncs: no start needs them); then, oldest first, events
    /// off the goroutines of open starts (other goroutines' calls: CRI
    /// handlers, volume marks; a start may lose a row, not itself); and
    /// only if the open starts' own calls are still too many, the newest
    /// starts are given up, one at a time. The oldest start, the slowest,
    /// is kept longest: it is the one an operator looks for.
    fn thin(&mut self) {
        let before = self.window.len();
        let target = self.cap - self.cap / 4;
        let resyncs: HashMap<GKey, Vec<(u64, u64)>> =
            self.resyncs
                .iter()
                .fold(HashMap::new(), |mut m, &(k, s, e)| {
                    m.entry(k).or_default().push((s, e));
                    m
                });
        self.window.retain(|r| {
            !resyncs
                .get(&(r.pid, r.g, r.goid))
                .is_some_and(|v| v.iter().any(|&(s, e)| r.t >= s && r.t <= e))
        });
        self.resyncs.clear();
        loop {
            let mut over = self.window.len().saturating_sub(target);
            if over == 0 {
                break;
            }
            let kept: Vec<GKey> = self
                .open
                .iter()
                .filter(|(_, o)| o.create)
                .map(|(k, _)| *k)
                .chain(self.pending.iter().map(|p| p.key))
                .collect();
            self.window.retain(|r| {
                if over > 0 && !kept.contains(&(r.pid, r.g, r.goid)) {
                    over -= 1;
                    false
                } else {
                    true
                }
            });
            if over == 0 {
                break;
            }
            // Only the open starts' own calls are left over the cap: give
            // up the newest open start (a returned one is summarised now).
            let newest = self
                .open
                .iter()
                .filter(|(_, o)| o.create)
                .max_by_key(|(_, o)| o.start)
                .map(|(k, o)| (*k, o.probe));
            let opens = self.open.values().filter(|o| o.create).count();
            let Some((key, probe)) = newest.filter(|_| opens > 1) else {
                // One start alone holds more than the cap: the oldest
                // calls go, and a start whose beginning went with them can
                // no longer be summarised.
                self.window.drain(..over.min(self.window.len()));
                let first = self.window.front().map_or(self.last_t, |r| r.t);
                let gone: Vec<u32> = self
                    .open
                    .values()
                    .filter(|o| o.create && o.start < first)
                    .map(|o| o.probe)
                    .collect();
                self.open.retain(|_, o| !(o.create && o.start < first));
                self.pending.retain(|p| p.start >= first);
                for p in gone {
                    self.abandon(p);
                }
                break;
            };
            self.open.remove(&key);
            self.abandon(probe);
        }
        self.metrics
            .window_overflow
            .inc_by(before.saturating_sub(self.window.len()) as u64);
    }

    fn abandon(&self, probe: u32) {
        if let Some(l) = self.label_of_probe(probe) {
            let (b, v) = &self.labels[l];
            self.metrics
                .abandoned_starts
                .with_label_values(&[b, v])
                .inc();
        }
    }
}

impl drain::Consumer for Live {
    fn binary_added(&mut self, added: &BinaryAdded) {
        let label = self.label_of(&added.binary);
        self.add_probes(&added.probes, &vec![label; added.probes.len()]);
    }

    fn note(&mut self, n: &Note) {
        if !n.is_event() {
            return;
        }
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

    fn event(&mut self, r: Rec) {
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
                let uid = k
                    .uid_slot
                    .and_then(|i| r.a.get(i))
                    .and_then(|v| v.as_ref())
                    .and_then(|v| v.as_str());
                let mut readopt = false;
                if let Some(uid) = uid {
                    if self.synced_by.len() >= MAX_PODS_SEEN && !self.synced_by.contains_key(uid) {
                        // Bounded on a node that churns pods for weeks: a
                        // restart just then goes uncounted, nothing else.
                        self.synced_by.clear();
                    }
                    let binary = |l: usize| self.labels.get(l).map(|b| b.0.as_str());
                    let before = self.synced_by.insert(uid.to_string(), (k.label, r.pid));
                    readopt = !create
                        && before
                            .is_some_and(|(l, pid)| pid != r.pid && binary(l) == binary(k.label));
                }
                if !create && !readopt {
                    k.resyncs.inc();
                }
                self.open.insert(
                    key,
                    OpenSync {
                        probe: r.p,
                        start: r.t,
                        create,
                        readopt,
                    },
                );
            }
            Role::PodSync => {
                if self.open.get(&key).is_some_and(|o| o.probe == r.p) {
                    if let Some(o) = self.open.remove(&key) {
                        if o.create || o.readopt {
                            self.pending.push(Pending {
                                start: o.start,
                                end: r.t,
                                key,
                                readopt: o.readopt,
                            });
                        } else {
                            self.resyncs.push_back((key, o.start, r.t));
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
                    if let Some(c) = k.loop_busy.as_ref().filter(|_| slot.1) {
                        c.inc_by(r.t.saturating_sub(slot.0) as f64 / 1e9);
                    }
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
        self.window.push_back(r);
    }

    fn drained(&mut self, drops: u64) {
        self.metrics
            .dropped
            .inc_by(drops.saturating_sub(self.drops));
        self.drops = self.drops.max(drops);
        if !self.pending.is_empty() {
            let now = self.now();
            if now >= self.next_summary {
                self.summarise_due(false);
                self.next_summary = now.saturating_add(SUMMARISE_EVERY_NS);
            }
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
        let mut live = Live::new(Arc::clone(&m), &trace.header, None).expect("live");
        live.clock = None;
        let mut events = trace.events.clone();
        events.sort_by_key(|r| r.t);
        let mut most = 0;
        for (i, r) in events.iter().enumerate() {
            live.event(r.clone());
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
                "binary=\"containerd\",method=\"RunPodSandbox\",result=\"ok\",version=\"v2.2.9\",node=\"node-1\""
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
        // Each synthetic tick takes some time inside the loop: it adds up.
        assert!(
            value(&text, "podtrace_loop_busy_seconds_total{") > 0.0,
            "{text}"
        );
        // Bounded: the window never held the whole trace, and holds nothing
        // once every start is summarised.
        assert!(most < events.len() / 2, "window {most} of {}", events.len());
        assert!(
            live.window.iter().all(|r| r.t + MARGIN_NS >= live.last_t),
            "the window kept events older than its margin"
        );
        assert!(live.open.is_empty() && live.pending.is_empty());
    }

    /// Feeds `events` in time order, a drain every 50 events, and ends.
    fn replay(live: &mut Live, events: &[Rec]) {
        let mut events = events.to_vec();
        events.sort_by_key(|r| r.t);
        for (i, r) in events.iter().enumerate() {
            live.event(r.clone());
            if i % 50 == 0 {
                live.drained(0);
            }
        }
        live.finish(0);
    }

    fn live_of(trace: &Trace) -> (Arc<Metrics>, Live) {
        let m = Arc::new(Metrics::new("node-1").expect("metrics"));
        let mut live = Live::new(Arc::clone(&m), &trace.header, None).expect("live");
        live.clock = None;
        (m, live)
    }

    /// A kubelet that starts adds every running pod again with a create
    /// sync: those re-adoptions are counted apart (report and metrics),
    /// never as starts; a start whose sync failed is counted and timed
    /// under result="error", not among the ones that worked.
    #[test]
    fn readoptions_are_no_starts_and_failed_starts_are_labelled() {
        let mut pods: Vec<SynthPod> = (0..4)
            .map(|i| SynthPod::new(i, 50.0 + 700.0 * i as f64, 40.0, 30.0))
            .collect();
        pods[2].sync_error = true;
        for i in 4..7 {
            let mut p = SynthPod::new(i, 3000.0 + 30.0 * i as f64, 0.0, 30.0);
            p.readopted = true;
            p.later_syncs = 1;
            pods.push(p);
        }
        let mut spec = SynthSpec::new(pods);
        spec.containerd_pid = Some(4343);
        let (trace, _) = synth(&spec).expect("synth");
        let report = Report::build(&trace, &correlate(&trace));
        let started: Vec<&str> = report
            .pods
            .iter()
            .filter_map(|p| p.name.as_deref())
            .collect();
        assert_eq!(started, ["pod-0", "pod-1", "pod-2", "pod-3"]);
        let readopted: Vec<&str> = report
            .readopted_pods
            .iter()
            .filter_map(|p| p.name.as_deref())
            .collect();
        assert_eq!(readopted, ["pod-4", "pod-5", "pod-6"]);
        // Their later resyncs (not the re-adoption) make them resynced too.
        let resynced: Vec<(&str, usize)> = report
            .resynced_pods
            .iter()
            .filter_map(|p| Some((p.name.as_deref()?, p.syncs)))
            .collect();
        assert_eq!(resynced, [("pod-4", 1), ("pod-5", 1), ("pod-6", 1)]);
        assert!(report
            .to_table()
            .contains("re-adopted by a kubelet that started"));

        let (m, mut live) = live_of(&trace);
        replay(&mut live, &trace.events);
        let text = String::from_utf8(m.encode()).expect("utf-8");
        let ok = "podtrace_pod_starts_total{binary=\"kubelet\",result=\"ok\",version=\"v1.36.3\",node=\"node-1\"}";
        let err =
            "podtrace_pod_starts_total{binary=\"kubelet\",result=\"error\",version=\"v1.36.3\",node=\"node-1\"}";
        assert_eq!(value(&text, ok), 3.0, "{text}");
        assert_eq!(value(&text, err), 1.0, "{text}");
        assert_eq!(
            value(&text, "podtrace_pod_readoptions_total{"),
            3.0,
            "{text}"
        );
        let failed_sync = report.pods[2].stages[0].duration_ms.expect("sync") / 1e3;
        let h = "podtrace_pod_start_sync_seconds_sum{binary=\"kubelet\",result=\"error\"";
        assert!((value(&text, h) - failed_sync).abs() < 1e-9, "{text}");
    }

    /// The events of a one-pod kubelet trace, their probe ids moved up by
    /// `by` (as for a binary attached after `by` probes).
    fn one_pod_events(i: usize, by: u32) -> (Vec<ProbeInfo>, Vec<Rec>) {
        let (t, _) =
            synth(&SynthSpec::new(vec![SynthPod::new(i, 50.0, 40.0, 30.0)])).expect("synth");
        let probes = t
            .header
            .probes
            .iter()
            .map(|p| ProbeInfo {
                id: p.id + by,
                ..p.clone()
            })
            .collect();
        let events = t
            .events
            .iter()
            .map(|r| Rec {
                p: r.p + by,
                ..r.clone()
            })
            .collect();
        (probes, events)
    }

    /// Each binary attached carries its own `version` label: one swapped
    /// in at the traced path (an upgrade) is not labelled with the first
    /// one's version, and one found after recording began is labelled too.
    #[test]
    fn each_attached_binary_has_its_own_version_label() {
        let (first, _) = synth(&SynthSpec::new(Vec::new())).expect("synth");
        let n = first.header.probes.len() as u32;
        let (m, mut live) = live_of(&first);
        let (probes, events) = one_pod_events(1, n);
        let mut binary = first.header.binaries[0].clone();
        binary.version = Some("v1.37.0".into());
        live.binary_added(&BinaryAdded { binary, probes });
        replay(&mut live, &events);
        let text = String::from_utf8(m.encode()).expect("utf-8");
        let new = "podtrace_pod_starts_total{binary=\"kubelet\",result=\"ok\",version=\"v1.37.0\",node=\"node-1\"}";
        assert_eq!(value(&text, new), 1.0, "{text}");
        assert_eq!(value(&text, "podtrace_pod_starts_total{"), 1.0, "{text}");

        // Nothing traced at first (discovery): kubelet found later.
        let empty = Header {
            binaries: Vec::new(),
            probes: Vec::new(),
            ..first.header.clone()
        };
        let m = Arc::new(Metrics::new("node-1").expect("metrics"));
        let mut live = Live::new(Arc::clone(&m), &empty, None).expect("live");
        live.clock = None;
        let (probes, events) = one_pod_events(2, 0);
        live.binary_added(&BinaryAdded {
            binary: first.header.binaries[0].clone(),
            probes,
        });
        replay(&mut live, &events);
        let text = String::from_utf8(m.encode()).expect("utf-8");
        let found =
            "podtrace_pod_starts_total{binary=\"kubelet\",result=\"ok\",version=\"v1.36.3\",node=\"node-1\"}";
        assert_eq!(value(&text, found), 1.0, "{text}");
    }

    /// Two kubelets in the header (say two --pid of different builds):
    /// each probe goes with its own binary's version.
    #[test]
    fn probes_of_two_binaries_of_a_name_are_told_apart() {
        let (t, _) = synth(&SynthSpec::new(Vec::new())).expect("synth");
        let mut a = t.header.binaries[0].clone();
        let mut b = a.clone();
        a.version = Some("v1.35.0".into());
        b.version = Some("v1.36.3".into());
        let mut probes = t.header.probes.clone();
        let n = probes.len() as u32;
        probes.extend(t.header.probes.iter().map(|p| ProbeInfo {
            id: p.id + n,
            ..p.clone()
        }));
        let o = owners(&[a, b], &probes);
        assert!(o[..n as usize].iter().all(|x| *x == Some(0)), "{o:?}");
        assert!(o[n as usize..].iter().all(|x| *x == Some(1)), "{o:?}");
    }

    /// A window over its cap lets go of what no open start needs (resyncs,
    /// other goroutines' calls) and keeps the oldest open start, the
    /// slowest, which an operator most wants to see: it is summarised with
    /// the report's numbers, and no start is given up.
    #[test]
    fn an_overflowing_window_keeps_the_slowest_start() {
        // pod-0 waits 40 s for its volume; 60 pods start meanwhile and
        // resync every 50 ms after.
        let mut pods = vec![SynthPod::new(0, 10.0, 40_000.0, 300.0)];
        for i in 1..=60 {
            let mut p = SynthPod::new(i, 100.0 + 600.0 * i as f64, 20.0, 30.0);
            p.later_syncs = 12;
            pods.push(p);
        }
        let mut spec = SynthSpec::new(pods);
        spec.containerd_pid = Some(4343);
        let (trace, _) = synth(&spec).expect("synth");
        let report = Report::build(&trace, &correlate(&trace));
        assert_eq!(report.pods.len(), 61);
        let (m, mut live) = live_of(&trace);
        live.cap = 1500;
        assert!(
            trace.events.len() > 3 * live.cap,
            "{} events",
            trace.events.len()
        );
        replay(&mut live, &trace.events);
        let text = String::from_utf8(m.encode()).expect("utf-8");
        assert!(
            value(&text, "podtrace_live_window_overflow_events_total") > 0.0,
            "the window never overflowed:\n{text}"
        );
        assert_eq!(
            value(&text, "podtrace_abandoned_starts_total{"),
            0.0,
            "{text}"
        );
        assert_eq!(value(&text, "podtrace_pod_starts_total{"), 61.0, "{text}");
        let mw: f64 = report
            .pods
            .iter()
            .filter_map(|p| p.mount_wait.as_ref()?.duration_ms)
            .sum::<f64>()
            / 1e3;
        assert!(mw > 40.0);
        assert!(
            (value(&text, "podtrace_mount_wait_seconds_sum{") - mw).abs() < 1e-6,
            "{text}"
        );
    }
}
