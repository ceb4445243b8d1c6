//! Per-pod start windows and the stage names shared by report, compare
//! and predict: what "a pod's start" is, defined once.

use crate::{
    catalogue::{self, Role},
    correlate::Correlated,
};

/// Whole pod start: first sync start → end of the first sync without error.
pub const STAGE_POD: &str = "pod";
/// Derived row: volumes mounted → the poll noticed.
pub const STAGE_LOST: &str = "lost_to_polling";

/// Every pod's sync calls, in start order, indexed by pod in one pass over
/// the spans (report, compare and export all start from this).
pub fn syncs_by_pod(c: &Correlated) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = (0..c.pods.len())
        .map(|p| {
            c.pod_spans(p)
                .iter()
                .copied()
                .filter(|&i| c.spans[i].role == Role::PodSync)
                .collect()
        })
        .collect();
    for v in &mut out {
        v.sort_by_key(|&i| c.spans[i].start);
    }
    out
}

/// kubelet's `SyncPodType` for a pod created from its source
/// (`kubetypes.SyncPodCreate`: sync 0, update 1, create 2, kill 3).
pub const SYNC_POD_CREATE: u64 = 2;

/// Which of a pod's syncs (in start order) starts the pod: its create sync.
/// A pod already running when the recording began only resyncs (every
/// `syncFrequency` and on PLEG events), so it has none and is no start;
/// a kubelet that starts (a restart, an upgrade) sends every running pod a
/// create sync too, and those re-adoptions ([`readoption`]) are no starts
/// either. Traces whose sync probe captured no update type (none of
/// podtrace's catalogue variants lacks it) fall back to the first sync. The
/// report's stages, compare's pod start, the prediction, the exports and the
/// live metrics all take the start from here.
pub fn start_sync(c: &Correlated, syncs: &[usize]) -> Option<usize> {
    let typed = syncs
        .iter()
        .any(|&i| c.spans[i].arg_u64("update_type").is_some());
    if !typed {
        return syncs.first().copied();
    }
    syncs
        .iter()
        .copied()
        .find(|&i| c.spans[i].arg_u64("update_type") == Some(SYNC_POD_CREATE) && !readoption(c, i))
}

/// Whether sync span `i` is a re-adoption: a kubelet that starts adds
/// every pod already running with a create sync (HandlePodAdditions), which
/// finds the pod's sandbox and containers running and creates none. The
/// pod worker keeps only the newest pending update, so a resync or PLEG
/// event that arrives before the worker runs turns that create into a plain
/// sync (seen on kubelet 1.36 with a 2 s syncFrequency): the first sync of
/// a pod by a kubelet process, after another kubelet process synced it in
/// this recording, is a re-adoption too. A pod's real start always creates
/// its sandbox in its create sync, so either sync that returned without
/// error and created no sandbox ([`created_nothing`]) re-adopted a running
/// pod. That needs no note of the kubelet's start, which a recording begun
/// just after it would not have. A create sync that failed before creating
/// a sandbox (a mount that timed out) is a failed start, not a
/// re-adoption; where neither sandbox probe is in the probe table nothing
/// is called a re-adoption.
pub fn readoption(c: &Correlated, i: usize) -> bool {
    let s = &c.spans[i];
    if s.role != Role::PodSync {
        return false;
    }
    let create = s.arg_u64("update_type") == Some(SYNC_POD_CREATE);
    (create || first_by_another_kubelet(c, i)) && created_nothing(c, i)
}

/// Whether sync span `i` is its pod's first by its kubelet process, after
/// a sync of the same pod by another process of that binary.
fn first_by_another_kubelet(c: &Correlated, i: usize) -> bool {
    let s = &c.spans[i];
    let Some(p) = s.pod else {
        return false;
    };
    let mut by_another = false;
    for x in c.pod_spans(p).iter().map(|&j| &c.spans[j]) {
        if x.role == Role::PodSync && x.start < s.start && x.binary == s.binary {
            if x.pid == s.pid {
                return false;
            }
            by_another = true;
        }
    }
    by_another
}

/// Whether sync span `i` returned without error and created no sandbox:
/// neither kubelet's `create_sandbox` stage under it nor a `RunPodSandbox`
/// of its pod from its start to the pod's next sync (the runtime's handler,
/// or kubelet's stage where a kubelet runs it off the sync's goroutine).
pub fn created_nothing(c: &Correlated, i: usize) -> bool {
    let s = &c.spans[i];
    if !c.sandbox_probed || s.arg_u64("error") == Some(1) || s.end.is_none() {
        return false;
    }
    let creates = |j: usize| {
        let x = &c.spans[j];
        catalogue::creates_sandbox(x.role, &x.name)
    };
    if c.descendants(i).into_iter().any(creates) {
        return false;
    }
    let Some(p) = s.pod else {
        return true;
    };
    let mine = c.pod_spans(p);
    let until = mine
        .iter()
        .map(|&j| &c.spans[j])
        .filter(|x| x.role == Role::PodSync && x.start > s.start)
        .map(|x| x.start)
        .min()
        .unwrap_or(u64::MAX);
    !mine.iter().any(|&j| {
        let x = &c.spans[j];
        x.start >= s.start && x.start < until && creates(j)
    })
}

/// Which of a pod's `syncs` are re-adoptions ([`readoption`]).
pub fn readoptions(c: &Correlated, syncs: &[usize]) -> Vec<usize> {
    syncs
        .iter()
        .copied()
        .filter(|&i| readoption(c, i))
        .collect()
}

/// A pod's start: its start sync's start ([`start_sync`]) to the end of
/// the first sync from there that returned without error (None if none
/// did), CLOCK_MONOTONIC ns.
#[derive(Debug, Clone)]
pub struct PodWindow {
    pub pod: usize,
    pub uid: String,
    /// The start sync (a span index).
    pub sync: usize,
    pub start: u64,
    pub end: Option<u64>,
}

/// The start window of every pod that has a sync.
pub fn pod_windows(c: &Correlated) -> Vec<PodWindow> {
    let all_syncs = syncs_by_pod(c);
    c.pods
        .iter()
        .enumerate()
        .filter_map(|(pi, pod)| {
            let syncs = &all_syncs[pi];
            let first = start_sync(c, syncs)?;
            let at = syncs.iter().position(|&i| i == first)?;
            let end = syncs[at..]
                .iter()
                .map(|&i| &c.spans[i])
                .find(|s| s.end.is_some() && s.arg_u64("error") != Some(1))
                .and_then(|s| s.end);
            Some(PodWindow {
                pod: pi,
                uid: pod.uid.clone(),
                sync: first,
                start: c.spans[first].start,
                end,
            })
        })
        .collect()
}
