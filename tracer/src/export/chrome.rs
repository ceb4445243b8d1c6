//! Chrome trace-event JSON (the "JSON Object Format" that the Perfetto UI
//! and chrome://tracing open).
//!
//! One process per traced process (named after its binary); one track
//! (thread) per pod, holding the pod's syncs and everything under them, and
//! one per goroutine for the rest (loops); or, with [`Tracks::Goroutine`],
//! one track per goroutine throughout. Calls are complete ("X") events;
//! poll checks, volume marks, calls whose exit was never seen and the
//! mount-wait findings are instant ("i") events. `ts`/`dur` are µs since the
//! first span; `otherData` gives the clock offsets.

use std::{collections::BTreeMap, io::Write};

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::{
    analysis::report::Report,
    catalogue::Role,
    correlate::Correlated,
    export::{args_json, function, pod_label, root, syncs_by_pod, unix_ns},
    trace::TraceMeta,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Tracks {
    /// A track per pod for its syncs, a track per goroutine for the rest.
    #[default]
    Pod,
    /// A track per goroutine.
    Goroutine,
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceEvent {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cat: String,
    pub ph: &'static str,
    pub ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dur: Option<f64>,
    pub pid: u32,
    pub tid: u64,
    /// Scope of an instant event ("t": thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s: Option<&'static str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub args: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChromeTrace {
    pub trace_events: Vec<TraceEvent>,
    pub display_time_unit: &'static str,
    pub other_data: Map<String, Value>,
}

/// Complete events of a track: (start, end, span index).
type Calls = Vec<(u64, u64, usize)>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TrackKey {
    Pod(usize),
    Goroutine(u64),
}

/// ns → µs, the unit of `ts` and `dur`.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn role_name(r: Role) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Splits intervals `(start, end, id)` into lanes in which they nest
/// properly (each one inside or after the previous ones): the first lane
/// that can take an interval gets it. Returns the lane of each id.
fn lanes(mut iv: Vec<(u64, u64, usize)>) -> BTreeMap<usize, usize> {
    // Outer calls first when they start together.
    iv.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut stacks: Vec<Vec<u64>> = Vec::new();
    let mut out = BTreeMap::new();
    for (start, end, id) in iv {
        let mut placed = None;
        for (l, st) in stacks.iter_mut().enumerate() {
            while st.last().is_some_and(|&e| e <= start) {
                st.pop();
            }
            if st.last().is_none_or(|&e| end <= e) {
                st.push(end);
                placed = Some(l);
                break;
            }
        }
        let l = placed.unwrap_or_else(|| {
            stacks.push(vec![end]);
            stacks.len() - 1
        });
        out.insert(id, l);
    }
    out
}

/// Builds the trace-event document.
pub fn chrome_trace(trace: &dyn TraceMeta, c: &Correlated, tracks: Tracks) -> ChromeTrace {
    let t0 = c.spans.iter().map(|s| s.start).min().unwrap_or(0);
    let rel = |t: u64| us(t.saturating_sub(t0));
    let syncs = syncs_by_pod(c);

    // Which track each span goes to.
    let key_of = |i: usize| -> TrackKey {
        let s = &c.spans[i];
        if tracks == Tracks::Pod {
            let r = &c.spans[root(c, i)];
            // A pod's syncs, and the runtime's handlers for it (a pod track
            // in the runtime's process).
            if matches!(r.role, Role::PodSync | Role::Cri) {
                if let Some(p) = r.pod {
                    return TrackKey::Pod(p);
                }
            }
            // Volume marks run elsewhere but belong on their pod's track.
            if s.role == Role::VolumeMounted {
                if let Some(p) = s.pod {
                    return TrackKey::Pod(p);
                }
            }
        }
        TrackKey::Goroutine(s.goid)
    };
    let is_instant = |i: usize| {
        let s = &c.spans[i];
        matches!(s.role, Role::PollCheck | Role::VolumeMounted) || s.end.is_none()
    };

    // Per (pid, track): the complete events, to be split into nesting lanes.
    let mut groups: BTreeMap<(u32, TrackKey), Calls> = BTreeMap::new();
    let mut instants: Vec<(u32, TrackKey, usize)> = Vec::new();
    for (i, s) in c.spans.iter().enumerate() {
        let k = key_of(i);
        if is_instant(i) {
            instants.push((s.pid, k, i));
        } else if let Some(e) = s.end {
            groups.entry((s.pid, k)).or_default().push((s.start, e, i));
        }
    }
    for &(pid, ref k, _) in &instants {
        groups.entry((pid, k.clone())).or_default();
    }
    // Pod tracks in order of the pod's first sync, then goroutines by id.
    let first_sync = |p: usize| {
        syncs
            .get(p)
            .and_then(|v| v.first())
            .map(|&i| c.spans[i].start)
    };
    let mut order: Vec<(u32, TrackKey)> = groups.keys().cloned().collect();
    order.sort_by_key(|(pid, k)| match k {
        TrackKey::Pod(p) => (
            0,
            first_sync(*p).unwrap_or(u64::MAX),
            *pid as u64,
            *p as u64,
        ),
        TrackKey::Goroutine(g) => (1, 0, *pid as u64, *g),
    });

    let mut events = Vec::new();
    let mut tid_of: BTreeMap<(u32, TrackKey, usize), u64> = BTreeMap::new();
    let mut next_tid = 1u64;
    let mut pids: BTreeMap<u32, String> = BTreeMap::new();
    for (pid, key) in order {
        let iv = groups.remove(&(pid, key.clone())).unwrap_or_default();
        let lane_of = lanes(iv.clone());
        let n_lanes = lane_of.values().max().map(|m| m + 1).unwrap_or(1);
        let base_name = match &key {
            TrackKey::Pod(p) => {
                format!("pod {}", c.pods.get(*p).map(pod_label).unwrap_or_default())
            }
            TrackKey::Goroutine(g) => format!("goroutine {g}"),
        };
        for lane in 0..n_lanes {
            let tid = next_tid;
            next_tid += 1;
            tid_of.insert((pid, key.clone(), lane), tid);
            let name = if lane == 0 {
                base_name.clone()
            } else {
                format!("{base_name} (overlap {})", lane + 1)
            };
            events.push(meta("thread_name", pid, tid, json!({ "name": name })));
            events.push(meta(
                "thread_sort_index",
                pid,
                tid,
                json!({ "sort_index": tid }),
            ));
        }
        for (start, end, i) in iv {
            let s = &c.spans[i];
            let lane = lane_of.get(&i).copied().unwrap_or(0);
            let tid = tid_of.get(&(pid, key.clone(), lane)).copied().unwrap_or(0);
            pids.entry(pid).or_insert_with(|| s.binary.to_string());
            events.push(TraceEvent {
                name: s.name.to_string(),
                cat: role_name(s.role),
                ph: "X",
                ts: rel(start),
                dur: Some(us(end - start)),
                pid,
                tid,
                s: None,
                args: span_args(trace, c, i),
            });
        }
    }
    for (pid, key, i) in instants {
        let s = &c.spans[i];
        let tid = tid_of.get(&(pid, key, 0)).copied().unwrap_or(0);
        pids.entry(pid).or_insert_with(|| s.binary.to_string());
        let mut args = span_args(trace, c, i);
        let name = match s.end {
            None => {
                args.insert("no_exit".into(), Value::Bool(true));
                format!("{} (no exit)", s.name)
            }
            Some(e) => {
                args.insert("duration_us".into(), json!(us(e - s.start)));
                s.name.to_string()
            }
        };
        events.push(TraceEvent {
            name,
            cat: role_name(s.role),
            ph: "i",
            ts: rel(s.start),
            dur: None,
            pid,
            tid,
            s: Some("t"),
            args,
        });
    }
    // The report's mount-wait findings, as markers on the pod's track.
    let report = Report::build(trace, c);
    let pod_reports = report.pods_by_uid();
    for (p, idx) in syncs.iter().enumerate() {
        let Some(&first) = idx.first() else { continue };
        let pod = &c.pods[p];
        let Some(&pr) = pod_reports.get(pod.uid.as_str()) else {
            continue;
        };
        let Some(mw) = &pr.mount_wait else { continue };
        let sync = &c.spans[first];
        let key = match tracks {
            Tracks::Pod => TrackKey::Pod(p),
            Tracks::Goroutine => TrackKey::Goroutine(sync.goid),
        };
        let Some(&tid) = tid_of.get(&(sync.pid, key, 0)) else {
            continue;
        };
        let at = |ms: f64| rel(sync.start) + ms * 1000.0;
        let lost = json!(mw.lost_to_polling_ms);
        if let Some(m) = mw.volumes_mounted_ms {
            events.push(marker("volumes mounted", at(m), sync.pid, tid, &lost));
        }
        if let Some(n) = mw.noticed_ms {
            events.push(marker("mount noticed by poll", at(n), sync.pid, tid, &lost));
        }
    }
    for (pid, binary) in &pids {
        events.push(meta(
            "process_name",
            *pid,
            0,
            json!({ "name": format!("{binary} (pid {pid})") }),
        ));
        events.push(meta(
            "process_labels",
            *pid,
            0,
            json!({ "labels": trace.header().hostname }),
        ));
    }
    // Metadata first, then by time: what viewers expect, and stable output.
    events.sort_by(|a, b| {
        (a.ph != "M")
            .cmp(&(b.ph != "M"))
            .then(a.ts.total_cmp(&b.ts))
            .then(b.dur.unwrap_or(0.0).total_cmp(&a.dur.unwrap_or(0.0)))
    });
    let mut other = Map::new();
    other.insert(
        "podtrace_version".into(),
        json!(trace.header().podtrace_version),
    );
    other.insert("hostname".into(), json!(trace.header().hostname));
    other.insert("t0_mono_ns".into(), json!(t0));
    other.insert("t0_unix_ns".into(), json!(unix_ns(trace, t0)));
    other.insert(
        "mono_to_unix_ns".into(),
        json!(trace.header().mono_to_unix_ns),
    );
    ChromeTrace {
        trace_events: events,
        display_time_unit: "ms",
        other_data: other,
    }
}

fn meta(name: &str, pid: u32, tid: u64, args: Value) -> TraceEvent {
    TraceEvent {
        name: name.into(),
        cat: String::new(),
        ph: "M",
        ts: 0.0,
        dur: None,
        pid,
        tid,
        s: None,
        args: args.as_object().cloned().unwrap_or_default(),
    }
}

fn marker(name: &str, ts: f64, pid: u32, tid: u64, lost_ms: &Value) -> TraceEvent {
    let mut args = Map::new();
    args.insert("lost_to_polling_ms".into(), lost_ms.clone());
    TraceEvent {
        name: name.into(),
        cat: "podtrace".into(),
        ph: "i",
        ts,
        dur: None,
        pid,
        tid,
        s: Some("t"),
        args,
    }
}

fn span_args(trace: &dyn TraceMeta, c: &Correlated, i: usize) -> Map<String, Value> {
    let s = &c.spans[i];
    let mut a = args_json(s);
    a.insert("function".into(), json!(function(trace, s)));
    a.insert("goroutine".into(), json!(s.goid));
    a.insert("span".into(), json!(i));
    if let Some(p) = s.parent {
        a.insert("parent_span".into(), json!(p));
    }
    if let Some(pod) = s.pod.and_then(|p| c.pods.get(p)) {
        a.insert("pod".into(), json!(pod_label(pod)));
        a.insert("pod_uid".into(), json!(pod.uid));
    }
    a
}

/// Writes the document as JSON.
pub fn write(trace: &dyn TraceMeta, c: &Correlated, tracks: Tracks, out: impl Write) -> Result<()> {
    serde_json::to_writer(out, &chrome_trace(trace, c, tracks)).context("writing Chrome trace JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_keep_nesting_and_split_overlaps() {
        // 0: [0,10] holds 1: [2,5]; 2: [4,12] overlaps both partially.
        let l = lanes(vec![(0, 10, 0), (2, 5, 1), (4, 12, 2), (10, 11, 3)]);
        assert_eq!(l[&0], 0);
        assert_eq!(l[&1], 0);
        assert_eq!(l[&2], 1);
        assert_eq!(l[&3], 0, "starts when 0 ends: after it, same lane");
    }
}
