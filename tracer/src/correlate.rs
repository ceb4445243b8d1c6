//! From probe hits to spans and pods.
//!
//! Entries and exits are paired per goroutine `{pid, g, goid}` (never per
//! thread: goroutines migrate), last-in-first-out by probe, so nesting falls
//! out of the goroutine's own call stack. Two Go specifics:
//! - morestack: when a function's prologue finds the stack too small, the
//!   runtime grows (copies) it and re-runs the function from its first
//!   instruction, so the entry probe fires twice. The second hit has the same
//!   probe and the same return address (the caller frame was copied), a
//!   different SP, and nothing in between: it is dropped.
//! - restarted probes: a signal (Go's SIGURG preemption) that arrives while
//!   the kernel steps over a probed instruction makes it re-run the
//!   instruction and fire the probe again, same SP. Such repeats of an entry
//!   or an exit are dropped the same way.
//! - RETs that never run (tail calls, panics): an exit pops every younger open
//!   frame of the goroutine; those are closed unmatched ("aged out").
//!
//! Reads trace records only ([`crate::format`], [`crate::trace`]); knows
//! nothing of recording, and nothing of reports (they read its spans).

use std::{
    borrow::Cow,
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    path::Path,
    sync::Arc,
};

use anyhow::Result;
use serde::Serialize;

use crate::{
    catalogue::{self, Role},
    format::{ProbeInfo, Rec, Val},
    trace::{EventStream, Trace, TraceInfo},
};

#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub probe: u32,
    pub role: Role,
    /// Catalogue probe name (shared by all calls of the probe).
    pub name: Arc<str>,
    pub binary: Arc<str>,
    pub pid: u32,
    pub goid: u64,
    /// ktime ns.
    pub start: u64,
    /// ktime ns; None if the exit was never seen.
    pub end: Option<u64>,
    /// Captured values by capture name (names shared per probe).
    pub entry: Vec<(Arc<str>, Val)>,
    pub exit: Vec<(Arc<str>, Val)>,
    pub parent: Option<usize>,
    pub pod: Option<usize>,
    pub children: u32,
}

impl Span {
    pub fn duration(&self) -> Option<u64> {
        self.end.map(|e| e.saturating_sub(self.start))
    }
    pub fn arg(&self, name: &str) -> Option<&Val> {
        self.entry
            .iter()
            .chain(self.exit.iter())
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }
    pub fn arg_str(&self, name: &str) -> Option<&str> {
        self.arg(name).and_then(Val::as_str)
    }
    pub fn arg_u64(&self, name: &str) -> Option<u64> {
        self.arg(name).and_then(Val::as_u64)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Pod {
    pub uid: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub spans: u64,
    /// Repeated entry hits of one call (morestack, restarted probe), dropped.
    pub duplicate_entries: u64,
    /// Repeated exit hits of one RET (restarted probe), dropped.
    pub duplicate_exits: u64,
    /// Entries whose exit never came (tail call, panic), closed when an outer
    /// frame of the same goroutine returned or when they got too old.
    pub aged_out: u64,
    /// Exits with no open entry (the call began before recording).
    pub unmatched_exits: u64,
    /// Entries still open when the trace ended.
    pub open_at_end: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Correlated {
    pub spans: Vec<Span>,
    pub pods: Vec<Pod>,
    pub stats: Stats,
    /// Each pod's spans (indices, in start order), built once when the
    /// spans are final, so that per-pod work never scans all spans.
    #[serde(skip)]
    pub by_pod: Vec<Vec<usize>>,
    /// Each span's children (indices, in start order).
    #[serde(skip)]
    pub children: Vec<Vec<usize>>,
    /// Whether the probe table can see a pod's sandbox being created
    /// (kubelet's `create_sandbox` stage or the runtime's `RunPodSandbox`
    /// handler): only then can a create sync that made none be told to be a
    /// re-adoption (`analysis::pods::readoption`).
    #[serde(skip)]
    pub sandbox_probed: bool,
}

impl Correlated {
    /// Indices of pod `pod`'s spans, in start order.
    pub fn pod_spans(&self, pod: usize) -> &[usize] {
        self.by_pod.get(pod).map(Vec::as_slice).unwrap_or_default()
    }

    /// Indices of every call under span `i` (not `i` itself), in start order.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut todo = vec![i];
        while let Some(j) = todo.pop() {
            if let Some(k) = self.children.get(j) {
                out.extend_from_slice(k);
                todo.extend_from_slice(k);
            }
        }
        out.sort_unstable();
        out
    }
}

type GKey = (u32, u64, u64);

struct Frame {
    span: usize,
    sp: u64,
    ret_addr: u64,
}

#[derive(Default)]
struct GState {
    frames: Vec<Frame>,
    /// (probe, SP) of the last event if it was an exit: a repeat is a restart.
    last_exit: Option<(u32, u64)>,
}

/// Incremental pairing; feed events in time order.
pub struct Correlator<'a> {
    /// Borrowed from the trace's header; owned once a replaced binary's
    /// probes were appended ([`Correlator::add_probes`]).
    probes: Cow<'a, [ProbeInfo]>,
    /// Per probe: its name, binary and capture names, allocated once and
    /// shared by every span (a long recording keeps hundreds of thousands).
    names: Vec<ProbeNames>,
    stacks: HashMap<GKey, GState>,
    spans: Vec<Span>,
    stats: Stats,
    max_age_ns: u64,
    /// Time of the last sweep over all goroutines.
    swept_at: u64,
}

/// How often (ktime ns) all goroutines are swept for overdue frames: a
/// goroutine that died inside a traced call is never seen again.
const SWEEP_EVERY_NS: u64 = 100_000_000;

impl<'a> Correlator<'a> {
    /// `max_age_ns`: an open entry older than this is aged out when its
    /// goroutine is next seen.
    pub fn new(probes: &'a [ProbeInfo], max_age_ns: u64) -> Self {
        Correlator {
            probes: Cow::Borrowed(probes),
            names: probes.iter().map(ProbeNames::of).collect(),
            stacks: HashMap::new(),
            spans: Vec::new(),
            stats: Stats::default(),
            max_age_ns,
            swept_at: 0,
        }
    }

    /// Probes appended to the table while recording (a binary replaced at
    /// its path and attached anew): their ids follow the known ones.
    pub fn add_probes(&mut self, more: &[ProbeInfo]) {
        self.probes.to_mut().extend_from_slice(more);
        self.names.extend(more.iter().map(ProbeNames::of));
    }

    /// Ages out every frame older than the limit, in all goroutines.
    fn sweep(&mut self, now: u64) {
        let spans = &self.spans;
        let max = self.max_age_ns;
        let mut aged = 0;
        self.stacks.retain(|_, g| {
            let before = g.frames.len();
            g.frames
                .retain(|f| now.saturating_sub(spans[f.span].start) <= max);
            aged += (before - g.frames.len()) as u64;
            !g.frames.is_empty()
        });
        self.stats.aged_out += aged;
        self.swept_at = now;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn push(&mut self, r: &Rec) {
        self.push_owned(r.clone());
    }

    /// As [`Correlator::push`], taking the event: its captured values move
    /// into the span instead of being copied.
    pub fn push_owned(&mut self, r: Rec) {
        self.stats.events += 1;
        let Some(role) = self.probes.get(r.p as usize).map(|p| p.role) else {
            return;
        };
        if r.t.saturating_sub(self.swept_at) >= SWEEP_EVERY_NS.min(self.max_age_ns) {
            self.sweep(r.t);
        }
        let Some(nm) = self.names.get(r.p as usize) else {
            return;
        };
        let key = (r.pid, r.g, r.goid);
        let gstate = self.stacks.entry(key).or_default();
        let last_exit = gstate.last_exit.take();
        let stack = &mut gstate.frames;
        // Age out frames whose exit is long overdue.
        while let Some(f) = stack.first() {
            if r.t.saturating_sub(self.spans[f.span].start) <= self.max_age_ns {
                break;
            }
            stack.remove(0);
            self.stats.aged_out += 1;
        }
        if r.k == podtrace_common::KIND_ENTRY {
            if let Some(top) = stack.last_mut() {
                let s = &self.spans[top.span];
                if s.probe == r.p && top.ret_addr == r.ra && s.children == 0 {
                    // morestack re-entry (moved stack) or restarted probe (same SP).
                    top.sp = r.sp;
                    self.stats.duplicate_entries += 1;
                    return;
                }
            }
            let parent = stack.last().map(|f| f.span);
            let idx = self.spans.len();
            if let Some(p) = parent {
                self.spans[p].children += 1;
            }
            self.spans.push(Span {
                probe: r.p,
                role,
                name: nm.name.clone(),
                binary: nm.binary.clone(),
                pid: r.pid,
                goid: r.goid,
                start: r.t,
                end: None,
                entry: named(&nm.entry, r.a),
                exit: Vec::new(),
                parent,
                pod: None,
                children: 0,
            });
            stack.push(Frame {
                span: idx,
                sp: r.sp,
                ret_addr: r.ra,
            });
            self.stats.spans += 1;
        } else {
            if last_exit == Some((r.p, r.sp)) {
                self.stats.duplicate_exits += 1;
                gstate.last_exit = last_exit;
                return;
            }
            let Some(pos) = stack.iter().rposition(|f| self.spans[f.span].probe == r.p) else {
                self.stats.unmatched_exits += 1;
                return;
            };
            let younger = stack.len() - pos - 1;
            self.stats.aged_out += younger as u64;
            let frame = &stack[pos];
            let span = &mut self.spans[frame.span];
            span.end = Some(r.t);
            span.exit = named(&nm.exit, r.a);
            stack.truncate(pos);
            gstate.last_exit = Some((r.p, r.sp));
        }
    }

    pub fn finish(mut self) -> Correlated {
        self.stats.open_at_end = self.stacks.values().map(|g| g.frames.len() as u64).sum();
        let pods = attribute(&mut self.spans);
        let mut by_pod = vec![Vec::new(); pods.len()];
        let mut children = vec![Vec::new(); self.spans.len()];
        for (i, s) in self.spans.iter().enumerate() {
            if let Some(v) = s.pod.and_then(|p| by_pod.get_mut(p)) {
                v.push(i);
            }
            if let Some(v) = s.parent.and_then(|p| children.get_mut(p)) {
                v.push(i);
            }
        }
        for v in by_pod.iter_mut().chain(children.iter_mut()) {
            v.shrink_to_fit();
        }
        let sandbox_probed = self
            .probes
            .iter()
            .any(|p| catalogue::creates_sandbox(p.role, &p.probe));
        Correlated {
            spans: self.spans,
            pods,
            stats: self.stats,
            by_pod,
            children,
            sandbox_probed,
        }
    }
}

struct ProbeNames {
    name: Arc<str>,
    binary: Arc<str>,
    entry: Vec<Arc<str>>,
    exit: Vec<Arc<str>>,
}

impl ProbeNames {
    fn of(p: &ProbeInfo) -> ProbeNames {
        let caps = |c: &[crate::catalogue::CaptureDef]| {
            c.iter().map(|d| Arc::from(d.name.as_str())).collect()
        };
        ProbeNames {
            name: Arc::from(p.probe.as_str()),
            binary: Arc::from(p.binary.as_str()),
            entry: caps(&p.entry_captures),
            exit: caps(&p.exit_captures),
        }
    }
}

fn named(names: &[Arc<str>], vals: Vec<Option<Val>>) -> Vec<(Arc<str>, Val)> {
    let mut v: Vec<(Arc<str>, Val)> = names
        .iter()
        .zip(vals)
        .filter_map(|(n, v)| v.map(|v| (n.clone(), v)))
        .collect();
    // collect() of a filter starts at 4 slots: a long recording keeps
    // hundreds of thousands of these, most with one or two values.
    v.shrink_to_fit();
    v
}

/// How far (ktime ns) an event may come after a later one in the file and
/// still be put back in time order: the ring buffer interleaves CPUs, so a
/// trace is in time order only to within the few microseconds between a
/// probe reading the clock and reserving its ring slot.
pub const REORDER_NS: u64 = 1_000_000_000;

/// At most this many events are held back for reordering (an event storm
/// within [`REORDER_NS`] does not grow memory beyond it).
pub const REORDER_MAX: usize = 1 << 18;

struct Pending(Rec, u64);

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.0.t, self.1) == (o.0.t, o.1)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0.t, self.1).cmp(&(o.0.t, o.1))
    }
}

/// Feeds a [`Correlator`] a stream of events in time order (equal times in
/// stream order, as a stable sort would), holding back only the last
/// [`REORDER_NS`] of them.
pub struct InOrder<'a> {
    c: Correlator<'a>,
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    newest: u64,
    /// Time of the last event handed on.
    released: u64,
    /// Events that came after one already handed on with a later time.
    pub late: u64,
}

impl<'a> InOrder<'a> {
    pub fn new(c: Correlator<'a>) -> Self {
        InOrder {
            c,
            pending: BinaryHeap::new(),
            seq: 0,
            newest: 0,
            released: 0,
            late: 0,
        }
    }

    pub fn push(&mut self, r: Rec) {
        if self.seq > 0 && r.t < self.released {
            self.late += 1;
        }
        self.newest = self.newest.max(r.t);
        self.pending.push(Reverse(Pending(r, self.seq)));
        self.seq += 1;
        while let Some(Reverse(p)) = self.pending.peek() {
            if p.0.t.saturating_add(REORDER_NS) >= self.newest && self.pending.len() <= REORDER_MAX
            {
                break;
            }
            self.release();
        }
    }

    /// See [`Correlator::add_probes`]; events still held for ordering may
    /// name them already.
    pub fn add_probes(&mut self, more: &[ProbeInfo]) {
        self.c.add_probes(more);
    }

    fn release(&mut self) {
        if let Some(Reverse(Pending(r, _))) = self.pending.pop() {
            self.released = self.released.max(r.t);
            self.c.push_owned(r);
        }
    }

    /// The correlation and the number of events that came too late to be
    /// put in order (paired in file order instead).
    pub fn finish(mut self) -> (Correlated, u64) {
        while !self.pending.is_empty() {
            self.release();
        }
        (self.c.finish(), self.late)
    }
}

/// Gives spans their pod, by identity first: a span that read a pod UID
/// from its own arguments (the sync, the kuberuntime stages, the mount
/// wait, PLEG's relistPod, a volume mark) belongs to that pod wherever it
/// ran, so work kubelet does on another goroutine or after the sync
/// returned stays with its pod. Only a span without one inherits its
/// parent's pod (goroutine nesting), and containerd's calls follow the
/// sandbox and container ids.
fn attribute(spans: &mut [Span]) -> Vec<Pod> {
    let mut pods: Vec<Pod> = Vec::new();
    let mut by_uid: HashMap<String, usize> = HashMap::new();
    let mut pod_for = |uid: &str, pods: &mut Vec<Pod>| -> usize {
        *by_uid.entry(uid.to_string()).or_insert_with(|| {
            pods.push(Pod {
                uid: uid.to_string(),
                ..Pod::default()
            });
            pods.len() - 1
        })
    };
    for s in spans.iter_mut().filter(|s| s.role == Role::PodSync) {
        if let Some(uid) = s.arg_str("pod_uid").filter(|u| !u.is_empty()) {
            let i = pod_for(uid, &mut pods);
            let p = &mut pods[i];
            if p.name.is_none() {
                p.name = s.arg_str("pod_name").map(str::to_string);
                p.namespace = s.arg_str("pod_namespace").map(str::to_string);
            }
            s.pod = Some(i);
        }
    }
    for i in 0..spans.len() {
        if spans[i].pod.is_some() {
            continue;
        }
        let by_arg = spans[i]
            .arg_str("pod_uid")
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        let pod = match by_arg {
            Some(uid) => {
                let p = pod_for(&uid, &mut pods);
                if pods[p].name.is_none() {
                    pods[p].name = spans[i].arg_str("pod_name").map(str::to_string);
                }
                if pods[p].namespace.is_none() {
                    pods[p].namespace = spans[i].arg_str("pod_namespace").map(str::to_string);
                }
                Some(p)
            }
            None => spans[i].parent.and_then(|p| spans[p].pod),
        };
        spans[i].pod = pod;
    }
    // containerd's later calls name only the sandbox or container: follow
    // the ids that RunPodSandbox and CreateContainer returned for a pod.
    // One pass in start order: a span joins through ids seen before it, then
    // lends its own ids to the calls after it.
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for s in spans.iter_mut() {
        if s.pod.is_none() {
            s.pod = ["container_id", "sandbox_id"]
                .iter()
                .find_map(|k| s.arg_str(k).and_then(|id| by_id.get(id)).copied());
        }
        if let Some(p) = s.pod {
            for key in ["sandbox_id", "container_id"] {
                if let Some(id) = s.arg_str(key).filter(|v| !v.is_empty()) {
                    by_id.entry(id.to_string()).or_insert(p);
                }
            }
        }
    }
    pods
}

/// An open entry older than this (10 min) is closed as aged out: far longer
/// than any pod start, short enough not to hold a whole day's frames.
pub const MAX_SPAN_AGE_NS: u64 = 600 * 1_000_000_000;

/// Pairs a trace's events into spans and pods (events in time order).
pub fn correlate(trace: &Trace) -> Correlated {
    correlate_with(trace, MAX_SPAN_AGE_NS)
}

/// As [`correlate`], with calls open longer than `max_open_ns` aged out.
pub fn correlate_with(trace: &Trace, max_open_ns: u64) -> Correlated {
    let mut order: Vec<usize> = (0..trace.events.len()).collect();
    // Stable: equal timestamps keep file order (entry before exit of a call).
    order.sort_by_key(|&i| trace.events[i].t);
    let mut c = Correlator::new(&trace.header.probes, max_open_ns);
    for i in order {
        c.push(&trace.events[i]);
    }
    c.finish()
}

/// Reads a trace file and correlates it.
pub fn load_correlated(path: &Path) -> Result<(TraceInfo, Correlated)> {
    read_correlated(path, MAX_SPAN_AGE_NS)
}

/// Streams a trace file into the correlator, one line at a time: memory
/// holds the spans, never the events (but for the last second of them,
/// put back in time order).
pub fn read_correlated(path: &Path, max_open_ns: u64) -> Result<(TraceInfo, Correlated)> {
    // Trace::open's errors already name the file.
    correlate_stream(Trace::open(path)?, &path.display().to_string(), max_open_ns)
}

/// Correlates a stream of events (a file, or a rotated chain as one) named
/// `name` in warnings; calls still open where one file ends are closed in
/// the next.
pub fn correlate_stream(
    mut reader: impl EventStream,
    name: &str,
    max_open_ns: u64,
) -> Result<(TraceInfo, Correlated)> {
    let probes = reader.probes().to_vec();
    let mut known = probes.len();
    let mut c = InOrder::new(Correlator::new(&probes, max_open_ns));
    while let Some(e) = reader.next_event()? {
        // A `binary` line (a binary replaced while recording) or a newer
        // file's header grew the table before the first event naming its
        // probes.
        let table = reader.probes();
        if table.len() > known {
            c.add_probes(&table[known..]);
            known = table.len();
        }
        c.push(e);
    }
    let (corr, late) = c.finish();
    let mut info = reader.finish();
    if late > 0 {
        info.warnings.push(format!(
            "{name}: {late} events came more than {} s after later ones and were paired in file order",
            REORDER_NS / 1_000_000_000
        ));
    }
    Ok((info, corr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{CaptureDef, CaptureKind};

    fn probe(id: u32, role: Role, name: &str) -> ProbeInfo {
        ProbeInfo::kubelet_with_pod_uid(id, name, role, name)
    }

    fn ev(t: u64, p: u32, k: u8, g: u64, sp: u64, ra: u64, uid: Option<&str>) -> Rec {
        Rec {
            t,
            p,
            k,
            pid: 7,
            tid: 7,
            g,
            goid: g,
            sp,
            ra,
            a: uid
                .map(|u| vec![Some(Val::S(u.into()))])
                .unwrap_or_default(),
            tr: 0,
        }
    }

    #[test]
    fn pairs_per_goroutine_and_drops_morestack_duplicate() {
        let probes = vec![
            probe(0, Role::PodSync, "sync"),
            probe(1, Role::Stage, "inner"),
        ];
        let mut c = Correlator::new(&probes, u64::MAX);
        // Two goroutines interleaved; g1's sync enters twice (morestack).
        c.push(&ev(10, 0, 1, 1, 1000, 0xaa, Some("u1")));
        c.push(&ev(11, 0, 1, 1, 5000, 0xaa, Some("u1")));
        c.push(&ev(12, 0, 1, 2, 2000, 0xaa, Some("u2")));
        c.push(&ev(13, 1, 1, 1, 4900, 0xbb, None));
        c.push(&ev(20, 1, 2, 1, 4900, 0, None));
        c.push(&ev(30, 0, 2, 2, 2000, 0, None));
        c.push(&ev(40, 0, 2, 1, 5000, 0, None));
        let r = c.finish();
        assert_eq!(r.stats.duplicate_entries, 1);
        assert_eq!(r.spans.len(), 3);
        assert_eq!((r.spans[0].start, r.spans[0].end), (10, Some(40)));
        assert_eq!((r.spans[1].start, r.spans[1].end), (12, Some(30)));
        assert_eq!(r.spans[2].parent, Some(0));
        assert_eq!(r.spans[2].pod, r.spans[0].pod);
        assert_eq!(r.pods.len(), 2);
    }

    #[test]
    fn recursion_is_not_a_duplicate_and_lost_exits_age_out() {
        let probes = vec![probe(0, Role::Stage, "f"), probe(1, Role::Stage, "g")];
        let mut c = Correlator::new(&probes, u64::MAX);
        c.push(&ev(1, 0, 1, 1, 1000, 0x10, None));
        // recursive call: return address inside f, different from the first
        c.push(&ev(2, 0, 1, 1, 900, 0x20, None));
        // g enters but panics: no exit
        c.push(&ev(3, 1, 1, 1, 800, 0x30, None));
        c.push(&ev(4, 0, 2, 1, 900, 0, None));
        c.push(&ev(5, 0, 2, 1, 1000, 0, None));
        c.push(&ev(6, 1, 2, 1, 1, 0, None)); // exit with nothing open
        let r = c.finish();
        assert_eq!(r.stats.duplicate_entries, 0);
        assert_eq!(r.stats.aged_out, 1);
        assert_eq!(r.stats.unmatched_exits, 1);
        assert_eq!(r.spans[1].end, Some(4));
        assert_eq!(r.spans[0].end, Some(5));
        assert_eq!(r.spans[2].end, None);
    }

    #[test]
    fn cri_calls_join_by_sandbox_and_container_id() {
        let cap = |name: &str| CaptureDef {
            name: name.into(),
            kind: CaptureKind::Str,
            reg: "RDI".into(),
            reg2: None,
            path: vec![0],
        };
        let mut run = probe(0, Role::Cri, "RunPodSandbox");
        run.exit_captures = vec![cap("sandbox_id")];
        let mut create = probe(1, Role::Cri, "CreateContainer");
        create.entry_captures = vec![cap("sandbox_id")];
        create.exit_captures = vec![cap("container_id")];
        let mut start = probe(2, Role::Cri, "StartContainer");
        start.entry_captures = vec![cap("container_id")];
        let probes = vec![run, create, start];
        let mut c = Correlator::new(&probes, u64::MAX);
        let s = |v: &str| vec![Some(Val::S(v.into()))];
        c.push(&Rec {
            a: s("uid-1"),
            ..ev(1, 0, 1, 1, 100, 1, None)
        });
        c.push(&Rec {
            a: s("sb-1"),
            ..ev(2, 0, 2, 1, 100, 1, None)
        });
        c.push(&Rec {
            a: s("sb-1"),
            ..ev(3, 1, 1, 2, 100, 1, None)
        });
        c.push(&Rec {
            a: s("ct-1"),
            ..ev(4, 1, 2, 2, 100, 1, None)
        });
        c.push(&Rec {
            a: s("ct-1"),
            ..ev(5, 2, 1, 3, 100, 1, None)
        });
        c.push(&ev(6, 2, 2, 3, 100, 1, None));
        let r = c.finish();
        assert_eq!(r.pods.len(), 1);
        assert!(r.spans.iter().all(|s| s.pod == Some(0)), "{:?}", r.spans);
    }

    #[test]
    fn identity_beats_nesting() {
        let probes = vec![
            probe(0, Role::PodSync, "sync"),
            probe(1, Role::Stage, "runtime_sync"),
            probe(2, Role::OnDemand, "relist_pod"),
            probe(3, Role::Stage, "no_uid"),
        ];
        let mut c = Correlator::new(&probes, u64::MAX);
        // Pod u1's sync on g1; inside it a stage that names pod u2 (its
        // own argument wins over the goroutine) and one that names nobody.
        c.push(&ev(10, 0, 1, 1, 1000, 0xa0, Some("u1")));
        c.push(&ev(11, 1, 1, 1, 900, 0xa1, Some("u2")));
        c.push(&ev(12, 1, 2, 1, 900, 0, None));
        c.push(&ev(13, 3, 1, 1, 900, 0xa3, None));
        c.push(&ev(14, 3, 2, 1, 900, 0, None));
        c.push(&ev(20, 0, 2, 1, 1000, 0, None));
        // After the sync returned, on other goroutines: u1's runtime stage
        // and its on-demand relist, with no enclosing call at all.
        c.push(&ev(30, 1, 1, 2, 800, 0xa1, Some("u1")));
        c.push(&ev(31, 3, 1, 2, 700, 0xa3, None));
        c.push(&ev(32, 3, 2, 2, 700, 0, None));
        c.push(&ev(33, 1, 2, 2, 800, 0, None));
        c.push(&ev(40, 2, 1, 3, 600, 0xa2, Some("u1")));
        c.push(&ev(41, 2, 2, 3, 600, 0, None));
        let r = c.finish();
        let uid = |i: usize| r.spans[i].pod.map(|p| r.pods[p].uid.as_str());
        assert_eq!(
            (0..r.spans.len()).map(uid).collect::<Vec<_>>(),
            vec![
                Some("u1"), // sync
                Some("u2"), // nested in u1's sync, names u2
                Some("u1"), // nested, names nobody: its parent's
                Some("u1"), // after the sync, elsewhere: by its argument
                Some("u1"), // nested in that: its parent's
                Some("u1"), // the on-demand relist
            ]
        );
        assert_eq!(r.spans[3].parent, None);
    }

    #[test]
    fn restarted_probes_are_dropped() {
        let probes = vec![probe(0, Role::Stage, "f"), probe(1, Role::Stage, "g")];
        let mut c = Correlator::new(&probes, u64::MAX);
        c.push(&ev(1, 0, 1, 1, 1000, 0x10, None));
        c.push(&ev(2, 1, 1, 1, 900, 0x20, None));
        c.push(&ev(3, 1, 1, 1, 900, 0x20, None)); // entry restarted by a signal
        c.push(&ev(4, 1, 2, 1, 900, 0, None));
        c.push(&ev(5, 1, 2, 1, 900, 0, None)); // RET restarted by a signal
        c.push(&ev(6, 0, 2, 1, 1000, 0, None));
        let r = c.finish();
        assert_eq!((r.stats.duplicate_entries, r.stats.duplicate_exits), (1, 1));
        assert_eq!(r.stats.unmatched_exits, 0);
        assert_eq!(r.spans.len(), 2);
        assert_eq!((r.spans[1].start, r.spans[1].end), (2, Some(4)));
        assert_eq!(r.spans[0].end, Some(6));
    }

    #[test]
    fn old_open_entries_age_out() {
        let probes = vec![probe(0, Role::Stage, "f")];
        let mut c = Correlator::new(&probes, 100);
        c.push(&ev(1, 0, 1, 1, 1000, 0x10, None));
        c.push(&ev(500, 0, 1, 1, 1000, 0x11, None));
        assert_eq!(c.stats().aged_out, 1);
        // A goroutine that died inside a call is never seen again: the sweep
        // still ages its frame out.
        c.push(&ev(600, 0, 1, 9, 1000, 0x10, None));
        c.push(&ev(2000, 0, 1, 1, 1000, 0x12, None));
        assert_eq!(c.stats().aged_out, 3);
        assert_eq!(c.finish().stats.open_at_end, 1);
    }
}
