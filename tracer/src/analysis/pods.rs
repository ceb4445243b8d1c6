//! Per-pod start windows and the stage names shared by report, compare
//! and predict: what "a pod's start" is, defined once.

use crate::{catalogue::Role, correlate::Correlated};

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
/// `syncFrequency` and on PLEG events), so it has none and is no start.
/// Traces whose sync probe captured no update type (none of podtrace's
/// catalogue variants lacks it) fall back to the first sync. The report's
/// stages, compare's pod start, the prediction and the exports all take the
/// start from here.
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
        .find(|&i| c.spans[i].arg_u64("update_type") == Some(SYNC_POD_CREATE))
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
