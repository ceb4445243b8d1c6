//! Per-pod stage tables, the mount wait's poll analysis and loop periods.
//!
//! The JSON form of [`Report`] is a stable, documented shape
//! (docs/report-json.md): fields are only ever added.
//!
//! Uses [`super::pods`] for what a pod's start is; never compare or predict.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::pods::{readoptions, start_sync, syncs_by_pod};
use crate::{
    catalogue::Role,
    correlate::{Correlated, Span, Stats},
    format::{BinaryIdentity, CaptureProblem, Note, NoteKind},
    trace::TraceMeta,
};

pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub podtrace_report: u32,
    pub trace: TraceSummary,
    /// Pods that started while recording (their create sync was seen).
    pub pods: Vec<PodReport>,
    /// Pods that only resynced while recording (already running when it
    /// began): never counted as starts.
    pub resynced_pods: Vec<ResyncedPod>,
    /// Create syncs of a kubelet that started (restarted, upgraded) while
    /// pods were running: it adds each running pod again and creates
    /// nothing. Never counted as starts (see `pods::readoption`).
    pub readopted_pods: Vec<ReadoptedPod>,
    pub loops: Vec<LoopReport>,
    /// Each traced process's CPU time (from /proc, sampled by `record`)
    /// with its loops' busy time over the same window: the cost side of
    /// shorter loop intervals.
    pub cpu: Vec<ProcessCpu>,
    /// Spans per traced function.
    pub probes: Vec<ProbeCount>,
    pub stats: Stats,
    /// Captures that could not be read (failed) or were cut short
    /// (truncated), per probe and capture: a sign of a layout this
    /// catalogue does not know.
    pub capture_problems: Vec<CaptureProblem>,
    /// What happened to the traced processes and binaries while
    /// recording: starts, exits, restarts, binaries replaced and
    /// re-attached (with the gap), binaries found later.
    pub notes: Vec<NoteRow>,
    pub warnings: Vec<String>,
}

/// One supervisor note of the trace, with its time and a sentence.
#[derive(Debug, Clone, Serialize)]
pub struct NoteRow {
    /// ms after recording started.
    pub at_ms: f64,
    #[serde(flatten)]
    pub note: Note,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub hostname: String,
    /// The node the trace is of (`record --node-name`, `$NODE_NAME`, else
    /// the hostname).
    pub node: String,
    pub started_unix_ns: i64,
    pub binaries: Vec<String>,
    /// Which build each traced binary is (traces since podtrace 0.2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<BuildRow>,
    pub events: u64,
    pub drops: u64,
    pub complete: bool,
}

/// One traced binary's identity, for people.
#[derive(Debug, Clone, Serialize)]
pub struct BuildRow {
    pub binary: String,
    pub path: String,
    #[serde(flatten)]
    pub identity: BinaryIdentity,
}

impl BuildRow {
    /// `kubelet /usr/bin/kubelet: k8s.io/kubernetes v1.36.3 build 3f2a… (go1.26.8)`
    pub fn describe(&self) -> String {
        let i = &self.identity;
        format!(
            "{} {}: {}{} ({}{})",
            self.binary,
            self.path,
            i.module
                .as_deref()
                .map(|m| format!("{m} "))
                .unwrap_or_default(),
            i.describe(),
            i.stamped_version
                .as_deref()
                .map(|v| format!("stamped {v}, "))
                .unwrap_or_default(),
            i.vcs_revision
                .as_deref()
                .map(|v| format!("revision {}", v.get(..12).unwrap_or(v)))
                .unwrap_or_else(|| format!("sha256 {}…", i.sha256.get(..16).unwrap_or(&i.sha256)))
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PodReport {
    pub uid: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Wall-clock start of the pod's first sync, Unix ns.
    pub start_unix_ns: i64,
    /// Stages of the first sync, in start order; times relative to its start.
    pub stages: Vec<StageRow>,
    pub mount_wait: Option<MountWait>,
    /// Each of the pod's volumes as the operation executor mounted it for
    /// this start (probe `volume_setup`), in the order the mounts began:
    /// when, how long, and when it was marked mounted (what the mount
    /// wait's poll looks for). Empty where that probe is not traced.
    pub volumes: Vec<VolumeRow>,
    /// The container runtime's CRI handlers for this pod (containerd),
    /// joined by pod UID, sandbox id and container id; times relative to the
    /// same start as `stages`.
    pub cri: Vec<CriCall>,
    /// Syncs of this pod after its start (updates, resyncs).
    pub later_syncs: usize,
    /// Work kubelet's loops did for this pod on request, from the first
    /// sync on (kubelet 1.36+: PLEG's relistPod, asked for by the sync's
    /// postSync), in start order.
    pub on_demand: Vec<OnDemandCall>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OnDemandCall {
    pub call: String,
    pub start_ms: f64,
    pub duration_ms: Option<f64>,
    /// Since the end of this pod's latest sync that ended before the call
    /// (the sync whose postSync asked for it); None: no such sync seen.
    pub after_sync_ms: Option<f64>,
}

/// A pod that only resynced during the recording.
#[derive(Debug, Clone, Serialize)]
pub struct ResyncedPod {
    pub uid: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Sync calls seen (periodic resyncs, PLEG-driven, updates).
    pub syncs: usize,
    pub sync_p50_ms: Option<f64>,
    pub sync_max_ms: Option<f64>,
}

/// A running pod re-added by a kubelet that started: one per re-adoption.
#[derive(Debug, Clone, Serialize)]
pub struct ReadoptedPod {
    pub uid: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The kubelet process that re-adopted it.
    pub pid: u32,
    /// Wall-clock start of the re-adopting create sync, Unix ns.
    pub at_unix_ns: i64,
    pub sync_ms: Option<f64>,
}

/// Pod `pi`'s re-adoptions among its `syncs`, as report rows.
pub fn readopted_rows(c: &Correlated, pi: usize, syncs: &[usize], off: i64) -> Vec<ReadoptedPod> {
    let Some(pod) = c.pods.get(pi) else {
        return Vec::new();
    };
    readoptions(c, syncs)
        .into_iter()
        .map(|i| {
            let s = &c.spans[i];
            ReadoptedPod {
                uid: pod.uid.clone(),
                name: pod.name.clone(),
                namespace: pod.namespace.clone(),
                pid: s.pid,
                at_unix_ns: s.start as i64 + off,
                sync_ms: s.duration().map(ms),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct CriCall {
    pub call: String,
    /// containerd's CRI handler.
    pub start_ms: f64,
    pub duration_ms: Option<f64>,
    /// The enclosing gRPC server call (request decoded → response written),
    /// when the gRPC probe resolved: what a client sees, less the transport.
    pub rpc_start_ms: Option<f64>,
    pub rpc_duration_ms: Option<f64>,
    /// Since the end of this pod's previous CRI call (time spent in kubelet
    /// between the calls); for the first call, since the mount wait ended.
    pub gap_ms: Option<f64>,
    pub error: bool,
    pub sandbox_id: Option<String>,
    pub container_id: Option<String>,
    pub container_name: Option<String>,
    pub image: Option<String>,
    pub image_ref: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: String,
    pub depth: usize,
    pub start_ms: f64,
    /// None: no exit seen.
    pub duration_ms: Option<f64>,
    pub error: bool,
}

/// What a pod's mount wait was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountClass {
    /// The first check found volumes unmounted: the pod waited for a poll
    /// tick.
    Waited,
    /// The first check found every volume mounted: no poll tick was waited
    /// for.
    AlreadyMounted,
    /// No volume to wait for: the wait returned without polling.
    NoVolumes,
    /// The checks were not traced (or the first one's result was not seen).
    Unknown,
}

impl MountClass {
    pub fn describe(&self) -> &'static str {
        match self {
            MountClass::Waited => "waited for a poll tick",
            MountClass::AlreadyMounted => "already mounted at the first check",
            MountClass::NoVolumes => "no volumes",
            MountClass::Unknown => "not classified (checks not traced)",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MountWait {
    /// Relative to the start of the pod's start sync.
    pub start_ms: f64,
    pub duration_ms: Option<f64>,
    pub class: MountClass,
    /// Configured poll interval, read from the poll helper's argument.
    pub configured_interval_ms: Option<f64>,
    pub checks: Vec<PollCheck>,
    /// Median gap between consecutive checks.
    pub observed_interval_ms: Option<f64>,
    /// When the reconciler marked the pod's last volume mounted (relative to sync start).
    pub volumes_mounted_ms: Option<f64>,
    pub volumes: Vec<VolumeMount>,
    /// End of the first check that found nothing unmounted.
    pub noticed_ms: Option<f64>,
    /// noticed − mounted: time lost waiting for the next poll tick.
    pub lost_to_polling_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PollCheck {
    pub at_ms: f64,
    pub duration_ms: Option<f64>,
    /// Volumes still unmounted (getUnmountedVolumes' result length), where
    /// that function is traced (not in kubelet 1.32-1.34, whose condition
    /// closure inlines it).
    pub unmounted: Option<u64>,
    /// Whether this check found every volume mounted: from `unmounted`, else
    /// from the condition closure's `done` result.
    pub mounted: Option<bool>,
}

/// One volume of a pod's start: the operation executor's mount of it.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeRow {
    /// The pod's name for the volume (`spec.volumes[].name`).
    pub name: Option<String>,
    /// kubelet's unique volume name: `PLUGIN/POD-UID-NAME` for a volume of
    /// one pod (`kubernetes.io/configmap/<uid>-config`), `PLUGIN/PV` for a
    /// persistent volume.
    pub unique_name: Option<String>,
    /// The volume plugin, from the unique name (`kubernetes.io/secret`).
    pub plugin: Option<String>,
    /// The mount operation (plugin SetUp through marking it mounted), ms
    /// from the start of the pod's start sync.
    pub start_ms: f64,
    pub duration_ms: Option<f64>,
    /// Mount attempts for this start (more than 1: earlier ones failed).
    pub attempts: usize,
    /// The last attempt failed.
    pub error: bool,
    /// When it was marked mounted in the actual state of the world (the
    /// moment the mount wait's next check can see it), ms from sync start.
    pub mounted_ms: Option<f64>,
}

/// The volume plugin of a unique volume name: all but its last path
/// element (`kubernetes.io/local-volume/pv-1` → `kubernetes.io/local-volume`).
pub fn volume_plugin(unique: &str) -> Option<&str> {
    let (plugin, _) = unique.rsplit_once('/')?;
    (!plugin.is_empty()).then_some(plugin)
}

#[derive(Debug, Clone, Serialize)]
pub struct VolumeMount {
    pub volume: Option<String>,
    pub at_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeCount {
    pub probe: String,
    pub binary: String,
    pub symbol: String,
    /// Calls seen (entries).
    pub spans: u64,
    /// Calls whose return was seen.
    pub completed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoopReport {
    pub loop_name: String,
    pub binary: String,
    /// Calls on the loop's goroutine (the one that made most of them), at
    /// its period.
    pub ticks: usize,
    /// Other calls of the same function: on other goroutines, or on the
    /// loop's sooner than half its median period after the previous tick
    /// (e.g. the populator's initial poll calling findAndAddNewPods right
    /// before its periodic loop does). Not in the periods.
    pub on_demand: usize,
    pub period_p50_ms: Option<f64>,
    pub period_p90_ms: Option<f64>,
    pub duration_p50_ms: Option<f64>,
    pub pid: u32,
    /// Time inside the loop function (every call, ticks and on demand) in
    /// `window_s`: the process's CPU samples' window when it has two or
    /// more (calls clipped to it), else from its first call to its last.
    pub busy_ms: f64,
    pub window_s: f64,
    /// busy_ms / window_s: ms of each second the loop is at work.
    pub busy_ms_per_s: Option<f64>,
}

/// One traced process's CPU time while recording.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    pub binary: String,
    pub pid: u32,
    /// From its first CPU sample to its last (ktime ns).
    #[serde(skip)]
    pub from_ns: u64,
    #[serde(skip)]
    pub to_ns: u64,
    pub window_s: f64,
    /// User + system CPU time in the window (/proc/PID/stat; 10 ms ticks).
    pub cpu_ms: f64,
    pub cpu_ms_per_s: f64,
    /// Its loops' busy time in the same window, per second.
    pub loops_busy_ms_per_s: f64,
}

/// Each process's CPU time between its first and last CpuTime note, for
/// the processes with spans in `c` (a trace split by build holds the notes
/// of both builds' processes).
fn process_cpu(notes: &[Note], c: &Correlated) -> Vec<ProcessCpu> {
    let pids: std::collections::BTreeSet<u32> = c.spans.iter().map(|s| s.pid).collect();
    let mut by_pid: BTreeMap<u32, Vec<&Note>> = BTreeMap::new();
    for n in notes.iter().filter(|n| n.kind == NoteKind::CpuTime) {
        if let (Some(pid), Some(_)) = (n.pid, n.cpu_ns) {
            if pids.contains(&pid) {
                by_pid.entry(pid).or_default().push(n);
            }
        }
    }
    by_pid
        .into_iter()
        .filter_map(|(pid, mut v)| {
            v.sort_by_key(|n| n.t_ns);
            let (first, last) = (v.first()?, v.last()?);
            let (a, b) = (first.cpu_ns?, last.cpu_ns?);
            let window_s = last.t_ns.checked_sub(first.t_ns)? as f64 / 1e9;
            (window_s > 0.0).then(|| ProcessCpu {
                binary: first.binary.clone(),
                pid,
                from_ns: first.t_ns,
                to_ns: last.t_ns,
                window_s,
                cpu_ms: ms(b.saturating_sub(a)),
                cpu_ms_per_s: ms(b.saturating_sub(a)) / window_s,
                loops_busy_ms_per_s: 0.0,
            })
        })
        .collect()
}

/// A loop function's busy time: (ms, window s), in the process's CPU
/// window if it has one, else from the first call's start to the last's
/// (whole periods: the last call's own time falls outside).
fn busy_of(calls: &[&Span], cpu: Option<&ProcessCpu>) -> (f64, f64) {
    let (from, to) = match cpu {
        Some(w) => (w.from_ns, w.to_ns),
        None => (
            calls.iter().map(|s| s.start).min().unwrap_or(0),
            calls.iter().map(|s| s.start).max().unwrap_or(0),
        ),
    };
    let ns: u64 = calls
        .iter()
        .filter_map(|s| Some(s.end?.min(to).saturating_sub(s.start.max(from))))
        .sum();
    (ms(ns), to.saturating_sub(from) as f64 / 1e9)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn rel(t: u64, base: u64) -> f64 {
    (t as f64 - base as f64) / 1e6
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn median_of(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

/// The nearest ancestor of `s` with this role.
fn enclosing<'a>(spans: &'a [Span], s: &Span, role: Role) -> Option<&'a Span> {
    let mut p = s.parent;
    while let Some(i) = p {
        if spans[i].role == role {
            return Some(&spans[i]);
        }
        p = spans[i].parent;
    }
    None
}

fn is_descendant(spans: &[Span], mut i: usize, ancestor: usize) -> Option<usize> {
    let mut depth = 0;
    while let Some(p) = spans[i].parent {
        depth += 1;
        if p == ancestor {
            return Some(depth);
        }
        i = p;
    }
    None
}

/// What one pod did while recording.
pub enum PodSummary {
    /// Its create sync was seen (or, with only the runtime traced, its CRI
    /// calls).
    Started(Box<PodReport>),
    /// Only resyncs: it was already running.
    Resynced(ResyncedPod),
    /// No start, but re-added by a kubelet that started: it was already
    /// running. With its resyncs (the syncs that were no re-adoption), if
    /// any.
    Readopted(Vec<ReadoptedPod>, Option<ResyncedPod>),
    /// Nothing to say (no sync and no CRI call).
    Nothing,
}

/// Pod `pi`'s row of the report, from the spans of `c` (`syncs`: its sync
/// calls in start order, from [`syncs_by_pod`]). The report builds every
/// pod's row with this, and `record --metrics` each pod's as soon as its
/// start sync ends.
pub fn pod_summary(c: &Correlated, pi: usize, syncs: &[usize], off: i64) -> PodSummary {
    let Some(pod) = c.pods.get(pi) else {
        return PodSummary::Nothing;
    };
    let start = start_sync(c, syncs);
    if start.is_none() && !syncs.is_empty() {
        let readopted = readopted_rows(c, pi, syncs, off);
        let again = readoptions(c, syncs);
        let resyncs: Vec<usize> = syncs
            .iter()
            .copied()
            .filter(|i| !again.contains(i))
            .collect();
        let resynced = (!resyncs.is_empty()).then(|| {
            let mut d: Vec<f64> = resyncs
                .iter()
                .filter_map(|&i| c.spans[i].duration().map(ms))
                .collect();
            d.sort_by(f64::total_cmp);
            ResyncedPod {
                uid: pod.uid.clone(),
                name: pod.name.clone(),
                namespace: pod.namespace.clone(),
                syncs: resyncs.len(),
                sync_p50_ms: percentile(&d, 50.0),
                sync_max_ms: d.last().copied(),
            }
        });
        return match (readopted.is_empty(), resynced) {
            (false, r) => PodSummary::Readopted(readopted, r),
            (true, Some(r)) => PodSummary::Resynced(r),
            (true, None) => PodSummary::Nothing,
        };
    }
    let cri_spans: Vec<&Span> = c
        .pod_spans(pi)
        .iter()
        .map(|&i| &c.spans[i])
        .filter(|s| s.role == Role::Cri)
        .collect();
    let base = match (start, cri_spans.first()) {
        (Some(first), _) => c.spans[first].start,
        (None, Some(s)) => s.start,
        (None, None) => return PodSummary::Nothing,
    };
    let mut stages = Vec::new();
    let mut mount_wait_span = None;
    if let Some(first) = start {
        stages.push(StageRow {
            stage: c.spans[first].name.to_string(),
            depth: 0,
            start_ms: 0.0,
            duration_ms: c.spans[first].duration().map(ms),
            error: c.spans[first].arg_u64("error") == Some(1),
        });
    }
    let window = sync_window(c, syncs, start);
    // The calls under the start sync and the pod's own stages moved out of
    // it, in start order.
    let mut candidates = start.map(|f| c.descendants(f)).unwrap_or_default();
    if start.is_some() {
        candidates.extend(
            c.pod_spans(pi)
                .iter()
                .filter(|&&i| moved_out_of_sync(c, i, pi, window)),
        );
        candidates.sort_unstable();
        candidates.dedup();
    }
    for i in candidates {
        let s = &c.spans[i];
        let Some(first) = start else {
            break;
        };
        let Some(depth) = is_descendant(&c.spans, i, first)
            .or_else(|| moved_out_of_sync(c, i, pi, window).then(|| depth_of(&c.spans, i)))
        else {
            continue;
        };
        match s.role {
            Role::MountWait | Role::Stage => {
                if s.role == Role::MountWait && mount_wait_span.is_none() {
                    mount_wait_span = Some(i);
                }
                stages.push(StageRow {
                    stage: s.name.to_string(),
                    depth,
                    start_ms: rel(s.start, base),
                    duration_ms: s.duration().map(ms),
                    error: s.arg_u64("error") == Some(1),
                });
            }
            _ => {}
        }
    }
    let mount_wait = mount_wait_span.map(|mw| mount_wait(c, pi, mw, base));
    // The mounts this start waited for: up to the check that saw them all
    // (later ones are remounts of ConfigMaps, Secrets and projected
    // volumes, every sync period), else up to the next sync.
    let volumes_until = mount_wait_span
        .and_then(|mw| {
            mount_wait
                .as_ref()
                .and_then(|m| m.noticed_ms)
                .map(|n| base + (n * 1e6).max(0.0) as u64)
                .or(c.spans[mw].end)
        })
        .or_else(|| window.and_then(|w| w.1));
    let volumes = volume_rows(c, pi, base, volumes_until);
    let mut prev_end = mount_wait_span.and_then(|mw| c.spans[mw].end);
    let cri = cri_spans
        .iter()
        .map(|s| {
            let gap = prev_end.map(|e| rel(s.start, e));
            prev_end = s.end.or(prev_end);
            let arg = |k: &str| s.arg_str(k).map(str::to_string);
            let rpc = enclosing(&c.spans, s, Role::Rpc);
            CriCall {
                call: s.name.to_string(),
                start_ms: rel(s.start, base),
                duration_ms: s.duration().map(ms),
                rpc_start_ms: rpc.map(|r| rel(r.start, base)),
                rpc_duration_ms: rpc.and_then(|r| r.duration().map(ms)),
                gap_ms: gap,
                error: s.arg_u64("error") == Some(1),
                sandbox_id: arg("sandbox_id"),
                container_id: arg("container_id"),
                container_name: arg("container_name"),
                image: arg("image"),
                image_ref: arg("image_ref"),
            }
        })
        .collect();
    PodSummary::Started(Box::new(PodReport {
        uid: pod.uid.clone(),
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        start_unix_ns: base as i64 + off,
        stages,
        mount_wait,
        volumes,
        cri,
        later_syncs: start
            .and_then(|s| syncs.iter().position(|&i| i == s))
            .map(|at| syncs.len() - at - 1)
            .unwrap_or(0),
        on_demand: on_demand_calls(c, pi, syncs, base),
    }))
}

impl Report {
    pub fn build(trace: &dyn TraceMeta, c: &Correlated) -> Report {
        let off = trace.header().mono_to_unix_ns;
        let mut pods = Vec::new();
        let mut resynced_pods = Vec::new();
        let mut readopted_pods = Vec::new();
        let all_syncs = syncs_by_pod(c);
        for (pi, syncs) in all_syncs.iter().enumerate() {
            match pod_summary(c, pi, syncs, off) {
                PodSummary::Started(p) => {
                    pods.push(*p);
                    // Started while recording and re-adopted later.
                    readopted_pods.extend(readopted_rows(c, pi, syncs, off));
                }
                PodSummary::Resynced(r) => resynced_pods.push(r),
                PodSummary::Readopted(r, resynced) => {
                    readopted_pods.extend(r);
                    resynced_pods.extend(resynced);
                }
                PodSummary::Nothing => {}
            }
        }
        pods.sort_by_key(|p| p.start_unix_ns);
        readopted_pods.sort_by_key(|r| r.at_unix_ns);

        let mut by_loop: BTreeMap<(String, String, u32), Vec<&Span>> = BTreeMap::new();
        for s in c.spans.iter().filter(|s| s.role == Role::Loop) {
            by_loop
                .entry((s.name.to_string(), s.binary.to_string(), s.pid))
                .or_default()
                .push(s);
        }
        let mut cpu = process_cpu(trace.notes(), c);
        let loops: Vec<LoopReport> = by_loop
            .into_iter()
            .map(|((name, binary, pid), calls)| {
                let (busy_ms, window_s) = busy_of(&calls, cpu.iter().find(|w| w.pid == pid));
                let (spans, on_demand) = loop_ticks(&calls);
                let mut periods: Vec<f64> = spans
                    .windows(2)
                    .map(|w| ms(w[1].start - w[0].start))
                    .collect();
                periods.sort_by(f64::total_cmp);
                let durs: Vec<f64> = spans.iter().filter_map(|s| s.duration().map(ms)).collect();
                LoopReport {
                    loop_name: name,
                    binary,
                    ticks: spans.len(),
                    on_demand,
                    period_p50_ms: percentile(&periods, 50.0),
                    period_p90_ms: percentile(&periods, 90.0),
                    duration_p50_ms: median_of(durs),
                    pid,
                    busy_ms,
                    window_s,
                    busy_ms_per_s: (window_s > 0.0).then(|| busy_ms / window_s),
                }
            })
            .collect();
        for w in &mut cpu {
            // fold from +0.0: an empty f64 sum is -0.0.
            let busy = loops
                .iter()
                .filter(|l| l.pid == w.pid)
                .fold(0.0, |a, l| a + l.busy_ms);
            w.loops_busy_ms_per_s = busy / w.window_s;
        }

        let mut probes: Vec<ProbeCount> = trace
            .header()
            .probes
            .iter()
            .map(|p| ProbeCount {
                probe: p.probe.clone(),
                binary: p.binary.clone(),
                symbol: p.symbol.clone(),
                spans: 0,
                completed: 0,
            })
            .collect();
        for s in &c.spans {
            if let Some(p) = probes.get_mut(s.probe as usize) {
                p.spans += 1;
                p.completed += u64::from(s.end.is_some());
            }
        }

        Report {
            podtrace_report: REPORT_VERSION,
            trace: TraceSummary {
                hostname: trace.header().hostname.clone(),
                node: trace.header().node().to_string(),
                started_unix_ns: trace.header().started_unix_ns,
                binaries: trace
                    .header()
                    .binaries
                    .iter()
                    .map(|b| {
                        format!(
                            "{} {} ({})",
                            b.name,
                            b.path,
                            b.go_version.as_deref().unwrap_or("go ?")
                        )
                    })
                    .collect(),
                builds: trace
                    .header()
                    .binaries
                    .iter()
                    .filter_map(|b| {
                        Some(BuildRow {
                            binary: b.name.clone(),
                            path: b.path.clone(),
                            identity: b.identity.clone()?,
                        })
                    })
                    .collect(),
                events: trace.event_count(),
                drops: trace.footer().map(|f| f.drops).unwrap_or(0),
                complete: trace.footer().is_some(),
            },
            pods,
            resynced_pods,
            readopted_pods,
            loops,
            cpu,
            probes,
            stats: c.stats.clone(),
            capture_problems: trace.capture_problems(),
            notes: {
                let start = trace.header().started_unix_ns - off;
                trace
                    .notes()
                    .iter()
                    .filter(|n| n.is_event())
                    .map(|n| NoteRow {
                        at_ms: (n.t_ns as i64 - start) as f64 / 1e6,
                        note: n.clone(),
                        text: n.describe(),
                    })
                    .collect()
            },
            // A binary newer than the catalogue's tested versions: the
            // reader is told which probes were not attached, and why.
            warnings: trace
                .warnings()
                .iter()
                .cloned()
                .chain(trace.header().binaries.iter().filter_map(|b| {
                    b.unseen
                        .as_ref()
                        .map(|u| format!("{} {}: {u}", b.name, b.path))
                }))
                .collect(),
        }
    }

    /// The pod reports by UID (the first of a UID), to look pods up
    /// without a scan per pod.
    pub fn pods_by_uid(&self) -> std::collections::HashMap<&str, &PodReport> {
        let mut m = std::collections::HashMap::new();
        for p in &self.pods {
            m.entry(p.uid.as_str()).or_insert(p);
        }
        m
    }

    pub fn to_table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "trace of node {}: {} events, {} dropped{}",
            self.trace.node,
            self.trace.events,
            self.trace.drops,
            if self.trace.complete {
                ""
            } else {
                " (recording interrupted)"
            }
        );
        for b in &self.trace.builds {
            let _ = writeln!(o, "binary: {}", b.describe());
        }
        for w in &self.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        if self.pods.is_empty() {
            let _ = writeln!(
                o,
                "\nno pod started in this trace{}",
                if self.resynced_pods.is_empty() && self.readopted_pods.is_empty() {
                    ""
                } else {
                    " (only pods already running: resynced or re-adopted)"
                }
            );
        }
        for p in &self.pods {
            let _ = writeln!(
                o,
                "\npod {}/{} uid {}",
                p.namespace.as_deref().unwrap_or("?"),
                p.name.as_deref().unwrap_or("?"),
                p.uid
            );
            let _ = writeln!(
                o,
                "  {:<32} {:>10} {:>12}",
                "stage", "start ms", "duration ms"
            );
            for s in &p.stages {
                let name = format!("{}{}", "  ".repeat(s.depth), s.stage);
                let dur = s
                    .duration_ms
                    .map(|d| format!("{d:.3}"))
                    .unwrap_or_else(|| "(no exit)".into());
                let _ = writeln!(
                    o,
                    "  {:<32} {:>10.3} {:>12}{}",
                    name,
                    s.start_ms,
                    dur,
                    if s.error { "  error" } else { "" }
                );
            }
            if let Some(m) = &p.mount_wait {
                let f = |v: Option<f64>| {
                    v.map(|v| format!("{v:.3} ms"))
                        .unwrap_or_else(|| "-".into())
                };
                let _ = writeln!(
                    o,
                    "  mount wait: {} checks, interval configured {} observed {} ({})",
                    m.checks.len(),
                    f(m.configured_interval_ms),
                    f(m.observed_interval_ms),
                    m.class.describe()
                );
                let checks: Vec<String> = m
                    .checks
                    .iter()
                    .map(|c| {
                        format!(
                            "{:.1}{}",
                            c.at_ms,
                            c.unmounted.map(|u| format!("({u})")).unwrap_or_default()
                        )
                    })
                    .collect();
                let _ = writeln!(o, "    checks at ms (unmounted): {}", checks.join(" "));
                let _ = writeln!(
                    o,
                    "    volumes mounted at {}, poll noticed at {}, lost to polling {}",
                    f(m.volumes_mounted_ms),
                    f(m.noticed_ms),
                    f(m.lost_to_polling_ms)
                );
            }
            if !p.volumes.is_empty() {
                let _ = writeln!(
                    o,
                    "  {:<32} {:>10} {:>12} {:>10}  plugin",
                    "volume", "start ms", "duration ms", "mounted ms"
                );
                for v in &p.volumes {
                    let f =
                        |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
                    let _ = writeln!(
                        o,
                        "  {:<32} {:>10.3} {:>12} {:>10}  {}{}{}",
                        v.name
                            .as_deref()
                            .or(v.unique_name.as_deref())
                            .unwrap_or("?"),
                        v.start_ms,
                        f(v.duration_ms),
                        f(v.mounted_ms),
                        v.plugin.as_deref().unwrap_or("?"),
                        if v.attempts > 1 {
                            format!("  ({} attempts)", v.attempts)
                        } else {
                            String::new()
                        },
                        if v.error { "  error" } else { "" }
                    );
                }
            }
            if !p.cri.is_empty() {
                let _ = writeln!(
                    o,
                    "  {:<32} {:>10} {:>12} {:>9}  ids",
                    "containerd CRI", "start ms", "duration ms", "gap ms"
                );
                for c in &p.cri {
                    let dur = c
                        .duration_ms
                        .map(|d| format!("{d:.3}"))
                        .unwrap_or_else(|| "(no exit)".into());
                    let gap = c.gap_ms.map(|g| format!("{g:.3}")).unwrap_or_default();
                    let short = |v: &Option<String>| {
                        v.as_deref().map(|s| s.chars().take(12).collect::<String>())
                    };
                    let ids = [
                        short(&c.sandbox_id).map(|s| format!("sandbox {s}")),
                        short(&c.container_id).map(|s| format!("container {s}")),
                        c.image.clone(),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                    let _ = writeln!(
                        o,
                        "  {:<32} {:>10.3} {:>12} {:>9}  {}{}",
                        c.call,
                        c.start_ms,
                        dur,
                        gap,
                        ids,
                        if c.error { "  error" } else { "" }
                    );
                }
            }
            for d in &p.on_demand {
                let after = d
                    .after_sync_ms
                    .map(|a| format!(", {a:.3} ms after the sync ended"))
                    .unwrap_or_default();
                let _ = writeln!(o, "  on demand: {} at {:.3} ms{after}", d.call, d.start_ms);
            }
            if p.later_syncs > 0 {
                let _ = writeln!(o, "  ({} later syncs not shown)", p.later_syncs);
            }
        }
        if !self.resynced_pods.is_empty() {
            let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "\nalready running (resynced while recording; not starts)\n  {:<48} {:>6} {:>12} {:>12}",
                "pod", "syncs", "sync p50 ms", "sync max ms"
            );
            for r in &self.resynced_pods {
                let name = format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or("?"),
                    r.name.as_deref().unwrap_or(&r.uid)
                );
                let _ = writeln!(
                    o,
                    "  {name:<48} {:>6} {:>12} {:>12}",
                    r.syncs,
                    f(r.sync_p50_ms),
                    f(r.sync_max_ms)
                );
            }
        }
        if !self.readopted_pods.is_empty() {
            let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "\nre-adopted by a kubelet that started (running already; not starts)\n  {:<48} {:>8} {:>12}",
                "pod", "kubelet", "sync ms"
            );
            for r in &self.readopted_pods {
                let name = format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or("?"),
                    r.name.as_deref().unwrap_or(&r.uid)
                );
                let _ = writeln!(o, "  {name:<48} {:>8} {:>12}", r.pid, f(r.sync_ms));
            }
        }
        if !self.loops.is_empty() {
            let _ = writeln!(o, "\nloops");
            let _ = writeln!(
                o,
                "  {:<16} {:>7} {:>12} {:>12} {:>14} {:>10} {:>10}",
                "loop",
                "ticks",
                "period p50",
                "period p90",
                "tick p50 ms",
                "on demand",
                "busy ms/s"
            );
            let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
            for l in &self.loops {
                let _ = writeln!(
                    o,
                    "  {:<16} {:>7} {:>12} {:>12} {:>14} {:>10} {:>10}",
                    l.loop_name,
                    l.ticks,
                    f(l.period_p50_ms),
                    f(l.period_p90_ms),
                    f(l.duration_p50_ms),
                    l.on_demand,
                    f(l.busy_ms_per_s)
                );
            }
        }
        if !self.cpu.is_empty() {
            let _ = writeln!(
                o,
                "\nCPU of the traced processes (user + system, /proc/PID/stat), and their loops' busy time in the same window"
            );
            for w in &self.cpu {
                let share = if w.cpu_ms_per_s > 0.0 {
                    format!(
                        " ({:.0} % of it)",
                        100.0 * w.loops_busy_ms_per_s / w.cpu_ms_per_s
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    o,
                    "  {:<12} pid {:<8} {:>8.1} s  CPU {:>7.2} ms/s  loops busy {:>6.2} ms/s{share}",
                    w.binary, w.pid, w.window_s, w.cpu_ms_per_s, w.loops_busy_ms_per_s
                );
            }
        }
        let s = &self.stats;
        let _ = writeln!(
            o,
            "\nspans {}  morestack duplicates dropped {}  aged out {}  unmatched exits {}  open at end {}",
            s.spans, s.duplicate_entries, s.aged_out, s.unmatched_exits, s.open_at_end
        );
        if !self.notes.is_empty() {
            let count = |k: NoteKind| self.notes.iter().filter(|n| n.note.kind == k).count();
            let _ = writeln!(
                o,
                "\nprocesses: {} started, {} exited, {} restarts; binaries: {} replaced, {} re-attached, {} found later",
                count(NoteKind::ProcessStarted),
                count(NoteKind::ProcessExited),
                count(NoteKind::Restart),
                count(NoteKind::BinaryReplaced),
                count(NoteKind::Reattached),
                count(NoteKind::BinaryFound)
            );
            for n in self.notes.iter().filter(|n| {
                !matches!(
                    n.note.kind,
                    NoteKind::ProcessStarted | NoteKind::ProcessExited
                )
            }) {
                let _ = writeln!(o, "  {:>10.3} ms  {}", n.at_ms, n.text);
            }
        }
        for c in &self.capture_problems {
            let p = self.probes.get(c.probe as usize);
            let _ = writeln!(
                o,
                "capture {}/{} {} `{}`: {} failed, {} truncated",
                p.map_or("?", |p| p.binary.as_str()),
                p.map_or("?", |p| p.probe.as_str()),
                c.site,
                c.capture,
                c.failed,
                c.truncated
            );
        }
        o
    }
}

/// Whether a poll check (getUnmountedVolumes, or the condition closure
/// where that is inlined) found every volume mounted; None: no exit seen.
fn check_mounted(s: &Span) -> Option<bool> {
    if let Some(n) = s.arg_u64("unmounted") {
        return Some(n == 0);
    }
    s.arg_u64("done")
        .map(|d| d == 1 && s.arg_u64("error") != Some(1))
}

fn mount_wait(c: &Correlated, pod: usize, mw: usize, base: u64) -> MountWait {
    let span = &c.spans[mw];
    let below: Vec<&Span> = c.descendants(mw).iter().map(|&i| &c.spans[i]).collect();
    let under =
        |role: Role| -> Vec<&Span> { below.iter().copied().filter(|s| s.role == role).collect() };
    let mut checks = under(Role::PollCheck);
    if checks.is_empty() {
        // kubelet 1.32-1.34: the condition closure checks the volumes itself
        // (getUnmountedVolumes only runs after a timeout), so each of its
        // calls is a check; its `done` result says when it saw them all.
        checks = under(Role::PollCond);
    }
    checks.sort_by_key(|s| s.start);
    let configured = below
        .iter()
        .find(|s| s.role == Role::PollHelper)
        .and_then(|s| s.arg_u64("interval_ns"))
        .map(ms);
    let observed = median_of(
        checks
            .windows(2)
            .map(|w| ms(w[1].start - w[0].start))
            .collect(),
    );
    let noticed = checks
        .iter()
        .find(|s| check_mounted(s) == Some(true))
        .and_then(|s| s.end);
    let mut volumes: Vec<&Span> = c
        .pod_spans(pod)
        .iter()
        .map(|&i| &c.spans[i])
        .filter(|s| s.role == Role::VolumeMounted && noticed.is_none_or(|n| s.start <= n))
        .collect();
    volumes.sort_by_key(|s| s.start);
    let mounted = volumes.last().map(|s| s.start);
    let class = match (checks.first(), configured) {
        (Some(first), _) => match first.arg_u64("unmounted") {
            Some(0) => MountClass::AlreadyMounted,
            Some(_) => MountClass::Waited,
            None => MountClass::Unknown,
        },
        // kubelet returns before polling when the pod has no volume; a
        // poll helper without checks means the checks were not traced.
        (None, None) => MountClass::NoVolumes,
        (None, Some(_)) => MountClass::Unknown,
    };
    MountWait {
        start_ms: rel(span.start, base),
        duration_ms: span.duration().map(ms),
        class,
        configured_interval_ms: configured,
        checks: checks
            .iter()
            .map(|s| PollCheck {
                at_ms: rel(s.start, base),
                duration_ms: s.duration().map(ms),
                unmounted: s.arg_u64("unmounted"),
                mounted: check_mounted(s),
            })
            .collect(),
        observed_interval_ms: observed,
        volumes_mounted_ms: mounted.map(|t| rel(t, base)),
        volumes: volumes
            .iter()
            .map(|s| VolumeMount {
                volume: s.arg_str("volume").map(str::to_string),
                at_ms: rel(s.start, base),
            })
            .collect(),
        noticed_ms: noticed.map(|t| rel(t, base)),
        lost_to_polling_ms: match (noticed, mounted) {
            (Some(n), Some(m)) => Some(rel(n, m)),
            _ => None,
        },
    }
}

/// The pod's volume mounts (operation executor) that began before `until`
/// (None: no bound), one row per unique volume name in the order the
/// first attempt began, each joined with its MarkVolumeAsMounted call.
fn volume_rows(c: &Correlated, pod: usize, base: u64, until: Option<u64>) -> Vec<VolumeRow> {
    let spans: Vec<&Span> = c
        .pod_spans(pod)
        .iter()
        .map(|&i| &c.spans[i])
        .filter(|s| until.is_none_or(|u| s.start <= u))
        .collect();
    let mut rows: Vec<(String, Vec<&Span>)> = Vec::new();
    for s in spans.iter().filter(|s| s.role == Role::VolumeSetup) {
        let key = s
            .arg_str("volume")
            .or(s.arg_str("outer_volume"))
            .unwrap_or_default()
            .to_string();
        match rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(s),
            None => rows.push((key, vec![s])),
        }
    }
    rows.into_iter()
        .map(|(unique, attempts)| {
            let first = attempts[0];
            let last = attempts[attempts.len() - 1];
            // Marked mounted: inside the last attempt (same goroutine), else
            // the first mark of that volume for this pod.
            let mark = spans
                .iter()
                .filter(|m| m.role == Role::VolumeMounted)
                .filter(|m| m.arg_str("volume") == Some(unique.as_str()))
                .find(|m| m.start >= last.start);
            VolumeRow {
                name: first.arg_str("outer_volume").map(str::to_string),
                plugin: volume_plugin(&unique).map(str::to_string),
                unique_name: (!unique.is_empty()).then(|| unique.clone()),
                start_ms: rel(first.start, base),
                duration_ms: last.end.map(|e| rel(e, first.start)),
                attempts: attempts.len(),
                error: last.arg_u64("error") == Some(1),
                mounted_ms: mark.map(|m| rel(m.start, base)),
            }
        })
        .collect()
}

/// The time a pod's start sync speaks for: from its start to the start of
/// the pod's next sync (None: no later sync).
fn sync_window(
    c: &Correlated,
    syncs: &[usize],
    start: Option<usize>,
) -> Option<(u64, Option<u64>)> {
    let first = start?;
    let start = c.spans[first].start;
    let next = syncs
        .iter()
        .map(|&i| c.spans[i].start)
        .filter(|&t| t > start)
        .min();
    Some((start, next))
}

/// A stage of pod `pod` that names the pod itself and ran outside any
/// sync's call tree (on another goroutine, or after the sync returned)
/// within the first sync's window: work kubelet moved off the sync, kept
/// with the pod by its identity.
fn moved_out_of_sync(
    c: &Correlated,
    i: usize,
    pod: usize,
    window: Option<(u64, Option<u64>)>,
) -> bool {
    let s = &c.spans[i];
    let Some((from, until)) = window else {
        return false;
    };
    matches!(s.role, Role::Stage | Role::MountWait)
        && s.pod == Some(pod)
        && s.arg_str("pod_uid").is_some_and(|u| !u.is_empty())
        && enclosing(&c.spans, s, Role::PodSync).is_none()
        && s.start >= from
        && until.is_none_or(|u| s.start < u)
}

/// 1 + the number of calls enclosing span `i` (a stage outside the sync is
/// shown as if the sync had called its outermost call).
fn depth_of(spans: &[Span], mut i: usize) -> usize {
    let mut depth = 1;
    while let Some(p) = spans[i].parent {
        depth += 1;
        i = p;
    }
    depth
}

/// The pod's on-demand calls from `base` on, each timed from the end of
/// the pod's latest sync that ended before it.
fn on_demand_calls(c: &Correlated, pod: usize, syncs: &[usize], base: u64) -> Vec<OnDemandCall> {
    let mut calls: Vec<&Span> = c
        .pod_spans(pod)
        .iter()
        .map(|&i| &c.spans[i])
        .filter(|s| s.role == Role::OnDemand && s.start >= base)
        .collect();
    calls.sort_by_key(|s| s.start);
    calls
        .iter()
        .map(|s| {
            let sync_end = syncs
                .iter()
                .filter_map(|&i| c.spans[i].end)
                .filter(|&e| e <= s.start)
                .max();
            OnDemandCall {
                call: s.name.to_string(),
                start_ms: rel(s.start, base),
                duration_ms: s.duration().map(ms),
                after_sync_ms: sync_end.map(|e| rel(s.start, e)),
            }
        })
        .collect()
}

/// Splits one loop function's calls (in start order) into the loop's ticks
/// and the number of other calls: the ticks are the calls of the goroutine
/// that made the most (the loop's own; a loop never hops goroutines), less
/// any call followed sooner than half that goroutine's median period by
/// another (a one-off call next to the loop, as the populator's initial
/// poll right before its periodic loop's first call: the period runs from
/// the later one).
fn loop_ticks<'a>(calls: &[&'a Span]) -> (Vec<&'a Span>, usize) {
    let mut per_g: BTreeMap<u64, Vec<&'a Span>> = BTreeMap::new();
    for s in calls {
        per_g.entry(s.goid).or_default().push(s);
    }
    let Some(mine) = per_g.into_values().max_by_key(Vec::len) else {
        return (Vec::new(), 0);
    };
    let gap = |a: &Span, b: &Span| b.start.saturating_sub(a.start);
    let mut sorted: Vec<u64> = mine.windows(2).map(|w| gap(w[0], w[1])).collect();
    sorted.sort_unstable();
    let half = sorted.get(sorted.len() / 2).map_or(0, |m| m / 2);
    let ticks: Vec<&'a Span> = mine
        .iter()
        .enumerate()
        .filter(|(k, s)| mine.get(k + 1).is_none_or(|n| gap(s, n) >= half))
        .map(|(_, s)| *s)
        .collect();
    let on_demand = calls.len() - ticks.len();
    (ticks, on_demand)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        correlate::correlate,
        test_support::synth::{synth, SynthPod, SynthSpec, SYNTH_SETUP_MS},
    };

    #[test]
    fn volume_plugins_come_from_unique_names() {
        assert_eq!(
            volume_plugin("kubernetes.io/configmap/0a-config"),
            Some("kubernetes.io/configmap")
        );
        assert_eq!(
            volume_plugin("kubernetes.io/local-volume/pv-1"),
            Some("kubernetes.io/local-volume")
        );
        assert_eq!(volume_plugin("nonsense"), None);
        assert_eq!(volume_plugin("/x"), None);
    }

    /// Each volume's mount operation is reported with its pod, named as the
    /// pod names it, timed from the start sync, and joined with the moment
    /// it was marked mounted.
    #[test]
    fn each_volume_mount_is_reported_with_its_pod() {
        let mut pods = vec![
            SynthPod::new(0, 50.0, 120.0, 300.0),
            SynthPod::new(1, 900.0, 40.0, 300.0),
        ];
        pods[1].volumes_ms = vec![40.0, 80.0];
        let spec = SynthSpec::new(pods.clone());
        let (trace, _) = synth(&spec).expect("synth");
        let r = Report::build(&trace, &correlate(&trace));
        assert_eq!(r.pods.len(), 2);
        for (p, sp) in r.pods.iter().zip(&pods) {
            assert_eq!(p.uid, sp.uid);
            assert_eq!(p.volumes.len(), sp.volumes_ms.len(), "{:#?}", p.volumes);
            for (v, (row, mount)) in p.volumes.iter().zip(&sp.volumes_ms).enumerate() {
                let mounted = sp.pre_mount_ms + mount;
                assert_eq!(row.name.as_deref(), Some(format!("vol{v}").as_str()));
                assert_eq!(row.plugin.as_deref(), Some("kubernetes.io/configmap"));
                assert_eq!(
                    row.unique_name.as_deref(),
                    Some(format!("kubernetes.io/configmap/{}-vol{v}", sp.uid).as_str())
                );
                let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
                assert!(close(row.mounted_ms.unwrap_or(-1.0), mounted), "{row:?}");
                assert!(close(row.start_ms, mounted - SYNTH_SETUP_MS), "{row:?}");
                assert!(
                    close(row.duration_ms.unwrap_or(-1.0), SYNTH_SETUP_MS + 0.03),
                    "{row:?}"
                );
                assert_eq!((row.attempts, row.error), (1, false));
            }
        }
        let table = r.to_table();
        assert!(table.contains("trace of node node-1:"), "{table}");
        assert!(
            table.lines().any(|l| l.trim_start().starts_with("vol1")
                && l.trim_end().ends_with("kubernetes.io/configmap")),
            "{table}"
        );
    }

    /// Each loop's busy time is its calls' time per second; in the window
    /// of the process's CPU samples when it has them (calls clipped to
    /// it), and the process's CPU per second comes from those samples.
    #[test]
    fn loops_busy_time_is_held_against_the_process_cpu_samples() {
        let spec = SynthSpec::new(vec![SynthPod::new(0, 50.0, 120.0, 300.0)]);
        let (mut trace, _) = synth(&spec).expect("synth");
        // Without samples: from the first tick to the last. Reconcile ticks
        // take 0.3 ms every 100 ms: 3 ms/s.
        let r = Report::build(&trace, &correlate(&trace));
        assert!(r.cpu.is_empty());
        let rec = r
            .loops
            .iter()
            .find(|l| l.loop_name == "reconcile")
            .expect("reconcile");
        let busy = rec.busy_ms_per_s.expect("busy");
        assert!((busy - 3.0).abs() < 0.05, "{rec:?}");
        assert_eq!(rec.pid, spec.pid);

        // Samples 0.5 s apart in the middle of the ticks, 40 ms of CPU.
        let t0 = trace.events.iter().map(|e| e.t).min().expect("events") + 200_000_000;
        for (t, cpu) in [
            (t0, 1_000_000_000u64),
            (t0 + 250_000_000, 1_010_000_000),
            (t0 + 500_000_000, 1_040_000_000),
        ] {
            let mut n = Note::new(t, NoteKind::CpuTime, "kubelet");
            n.pid = Some(spec.pid);
            n.cpu_ns = Some(cpu);
            trace.notes.push(n);
        }
        // Another process's samples (no spans here: not reported).
        let mut other = Note::new(t0, NoteKind::CpuTime, "kubelet");
        other.pid = Some(1);
        other.cpu_ns = Some(5);
        trace.notes.push(other);
        let r = Report::build(&trace, &correlate(&trace));
        assert!(
            r.notes.is_empty(),
            "CPU samples are no notes: {:?}",
            r.notes
        );
        assert_eq!(r.cpu.len(), 1, "{:?}", r.cpu);
        let w = &r.cpu[0];
        assert_eq!((w.pid, w.binary.as_str()), (spec.pid, "kubelet"));
        assert!(
            (w.window_s - 0.5).abs() < 1e-9 && (w.cpu_ms_per_s - 80.0).abs() < 1e-6,
            "{w:?}"
        );
        let rec = r
            .loops
            .iter()
            .find(|l| l.loop_name == "reconcile")
            .expect("reconcile");
        assert!((rec.window_s - 0.5).abs() < 1e-9, "{rec:?}");
        // 5 ticks of 0.3 ms in half a second, give or take a clipped one.
        assert!((rec.busy_ms - 1.5).abs() <= 0.3 + 1e-9, "{rec:?}");
        let all: f64 = r.loops.iter().map(|l| l.busy_ms).sum();
        assert!((w.loops_busy_ms_per_s - all / 0.5).abs() < 1e-9, "{w:?}");
        let table = r.to_table();
        assert!(
            table.contains("busy ms/s") && table.contains("CPU   80.00 ms/s"),
            "{table}"
        );
    }
}
