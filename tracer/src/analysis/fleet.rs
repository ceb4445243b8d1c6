//! Many nodes' traces, one report or one run of a comparison: a DaemonSet
//! writes one trace per node, rotated into FILE, FILE.1, ….
//!
//! - [`read_chain`]: one recording's rotated files correlated as one stream
//!   (goroutine stacks and pods carry across the files, so a pod start
//!   that straddles a rotation is whole);
//! - [`by_node`]: chains grouped by the node they ran on;
//! - [`pool_reports`], [`pool_runs`]: the pods of several nodes as one
//!   report, or one run of `compare`;
//! - [`fleet`]: per-node medians, the pooled distribution, and the nodes
//!   whose pod starts differ from the others' (Hodges–Lehmann shift with
//!   its Mann–Whitney interval, [`super::stats`]).
//!
//! Method: docs/compare.md, "Many nodes".

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::Result;
use serde::Serialize;

use super::{
    compare::{summarize, Run, Summary},
    pods::pod_windows,
    predict::Intervals,
    report::Report,
    stats::{self, MinEffect, Shift, Verdict},
};
use crate::{
    correlate::{correlate_stream, Correlated},
    trace::{
        chain::{Chain, ChainReader},
        TraceInfo,
    },
};

/// A node's pod start or sync must differ from the other nodes' by at
/// least this much to be pointed out: 10 % of their median and 1 ms.
pub const NODE_MIN_EFFECT: MinEffect = MinEffect {
    min_pct: 10.0,
    min_ms: 1.0,
};

/// Reads a chain's files as one trace (oldest first) and correlates them
/// as one stream of events: calls open when a file was rotated close in the
/// next one.
pub fn read_chain(chain: &Chain, max_open_ns: u64) -> Result<(TraceInfo, Correlated)> {
    correlate_stream(
        ChainReader::open(&chain.files)?,
        &chain.base.display().to_string(),
        max_open_ns,
    )
}

/// One node's chains (several when it was recorded more than once).
#[derive(Debug, Clone)]
pub struct NodeInput {
    pub node: String,
    pub chains: Vec<Chain>,
}

impl NodeInput {
    /// Every file of the node, oldest first per chain.
    pub fn files(&self) -> Vec<String> {
        self.chains
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.display().to_string()))
            .collect()
    }
}

/// Chains grouped by node, nodes in the order their first chain came.
pub fn by_node(chains: Vec<Chain>) -> Vec<NodeInput> {
    let mut out: Vec<NodeInput> = Vec::new();
    for c in chains {
        match out.iter_mut().find(|n| n.node == c.node) {
            Some(n) => n.chains.push(c),
            None => out.push(NodeInput {
                node: c.node.clone(),
                chains: vec![c],
            }),
        }
    }
    out
}

/// One pod start on one node: what the node comparison counts.
#[derive(Debug, Clone, Serialize)]
pub struct PodTime {
    pub node: String,
    pub uid: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The pod's start: its start sync's start to the end of its first
    /// sync without error (`pod` in compare); None: no such end seen.
    pub pod_ms: Option<f64>,
    /// The start sync's own duration.
    pub sync_ms: Option<f64>,
}

/// The pod starts of one node's correlated trace.
pub fn pod_times(node: &str, corr: &Correlated) -> Vec<PodTime> {
    pod_windows(corr)
        .into_iter()
        .map(|w| {
            let pod = corr.pods.get(w.pod);
            PodTime {
                node: node.to_string(),
                uid: w.uid.clone(),
                name: pod.and_then(|p| p.name.clone()),
                namespace: pod.and_then(|p| p.namespace.clone()),
                pod_ms: w.end.map(|e| e.saturating_sub(w.start) as f64 / 1e6),
                sync_ms: corr
                    .spans
                    .get(w.sync)
                    .and_then(|s| s.duration())
                    .map(|d| d as f64 / 1e6),
            }
        })
        .collect()
}

/// Several reports (nodes, or one node's recordings) as one: pods, loops,
/// notes and warnings of all; counts added; the probe table merged by
/// probe (capture problems renumbered to it). Pods keep their order, part
/// by part. None for no part.
pub fn pool_reports(parts: impl IntoIterator<Item = Report>) -> Option<Report> {
    let mut parts = parts.into_iter();
    let mut acc = parts.next()?;
    let mut hosts: Vec<String> = vec![acc.trace.hostname.clone()];
    let mut nodes: Vec<String> = vec![acc.trace.node.clone()];
    for r in parts {
        if !hosts.contains(&r.trace.hostname) {
            hosts.push(r.trace.hostname.clone());
        }
        if !nodes.contains(&r.trace.node) {
            nodes.push(r.trace.node.clone());
        }
        let t = &mut acc.trace;
        t.started_unix_ns = t.started_unix_ns.min(r.trace.started_unix_ns);
        for b in r.trace.binaries {
            if !t.binaries.contains(&b) {
                t.binaries.push(b);
            }
        }
        for b in r.trace.builds {
            if !t.builds.iter().any(|x| {
                x.binary == b.binary && x.path == b.path && x.identity.sha256 == b.identity.sha256
            }) {
                t.builds.push(b);
            }
        }
        t.events += r.trace.events;
        t.drops += r.trace.drops;
        t.complete &= r.trace.complete;
        // The part's probe ids → the merged table's.
        let mut renumber = Vec::with_capacity(r.probes.len());
        for p in r.probes {
            let at = acc
                .probes
                .iter()
                .position(|q| (&q.binary, &q.probe, &q.symbol) == (&p.binary, &p.probe, &p.symbol));
            renumber.push(match at {
                Some(i) => {
                    acc.probes[i].spans += p.spans;
                    acc.probes[i].completed += p.completed;
                    i as u32
                }
                None => {
                    acc.probes.push(p);
                    (acc.probes.len() - 1) as u32
                }
            });
        }
        for mut c in r.capture_problems {
            if let Some(&id) = renumber.get(c.probe as usize) {
                c.probe = id;
            }
            acc.capture_problems.push(c);
        }
        acc.pods.extend(r.pods);
        acc.resynced_pods.extend(r.resynced_pods);
        acc.loops.extend(r.loops);
        let (s, o) = (&mut acc.stats, &r.stats);
        s.events += o.events;
        s.spans += o.spans;
        s.duplicate_entries += o.duplicate_entries;
        s.duplicate_exits += o.duplicate_exits;
        s.aged_out += o.aged_out;
        s.unmatched_exits += o.unmatched_exits;
        s.open_at_end += o.open_at_end;
        acc.notes.extend(r.notes);
        acc.warnings.extend(r.warnings);
    }
    acc.trace.hostname = hosts.join(", ");
    acc.trace.node = nodes.join(", ");
    Some(acc)
}

/// Several runs (the nodes of one run of `compare`) as one run labelled
/// `label`: the pods of all, the stage samples, classes and models added
/// up, the intervals read from the pooled report. None for no part.
pub fn pool_runs(label: &str, source: &str, parts: Vec<Run>) -> Option<Run> {
    let mut parts = parts.into_iter();
    let mut acc = parts.next()?;
    let mut reports = Vec::new();
    for r in parts {
        reports.push(r.report);
        for (stage, v) in r.samples {
            acc.samples.entry(stage).or_default().extend(v);
        }
        for s in r.order {
            if !acc.order.contains(&s) {
                acc.order.push(s);
            }
        }
        acc.no_exit += r.no_exit;
        let (c, o) = (&mut acc.classes, r.classes);
        c.waited += o.waited;
        c.already_mounted += o.already_mounted;
        c.no_volumes += o.no_volumes;
        c.unknown += o.unknown;
        c.no_mount_wait += o.no_mount_wait;
        acc.models.extend(r.models);
        for (stage, bin) in r.stage_binary {
            acc.stage_binary.entry(stage).or_insert(bin);
        }
        for (bin, ids) in r.builds {
            let mine = acc.builds.entry(bin).or_default();
            for id in ids {
                if !mine.contains(&id) {
                    mine.push(id);
                }
            }
        }
    }
    acc.report = pool_reports(std::iter::once(acc.report.clone()).chain(reports))?;
    acc.intervals = Intervals::of_report(&acc.report);
    acc.label = label.to_string();
    acc.source = source.to_string();
    Some(acc)
}

/// What the node comparison looks at: the whole pod start, and the start
/// sync on its own.
pub const METRICS: [&str; 2] = ["pod", "sync"];

fn metric_of(p: &PodTime, metric: &str) -> Option<f64> {
    match metric {
        "sync" => p.sync_ms,
        _ => p.pod_ms,
    }
}

/// How one node's pods differ from the other nodes' in one metric.
#[derive(Debug, Clone, Serialize)]
pub struct NodeShift {
    /// `pod` (the whole start) or `sync` (the start sync).
    pub metric: &'static str,
    /// Median of the other nodes' pods, pooled.
    pub others_p50: f64,
    /// This node's pods against the other nodes' pooled pods (ms).
    pub shift: Shift,
    /// The shift in % of `others_p50`.
    pub pct: f64,
    /// Against the pooled others: faster or slower when the interval
    /// excludes 0 and the shift is at least the minimal effect.
    pub verdict: Verdict,
    /// The other nodes this one is, one by one, faster or slower than in
    /// the same direction (same rule, each against its own median).
    pub differs_from: Vec<String>,
    /// The other nodes it was compared with one by one.
    pub compared_with: usize,
    /// Pointed out: faster or slower than the pooled others, and than more
    /// than half of the other nodes one by one (so that one slow node does
    /// not make the others look fast).
    pub flagged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStats {
    pub node: String,
    pub files: Vec<String>,
    /// Pod starts seen on the node.
    pub pods: usize,
    /// The whole pod start (ms), over this node's pods.
    pub pod: Option<Summary>,
    /// The start sync's duration (ms).
    pub sync: Option<Summary>,
    /// Against the other nodes, per metric (none with one node).
    pub vs_others: Vec<NodeShift>,
    /// Some metric flagged.
    pub outlier: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pooled {
    pub pods: usize,
    pub pod: Option<Summary>,
    pub sync: Option<Summary>,
}

/// Per-node distributions, the pooled one, and the nodes pointed out.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    pub confidence: f64,
    pub min_effect: MinEffect,
    pub nodes: Vec<NodeStats>,
    pub pooled: Pooled,
    /// The nodes pointed out, in node order.
    pub outliers: Vec<String>,
}

/// One node's name, files and pod starts, for [`fleet`].
#[derive(Debug, Clone)]
pub struct NodePods {
    pub node: String,
    pub files: Vec<String>,
    pub pods: Vec<PodTime>,
}

fn values(pods: &[&PodTime], metric: &str) -> Vec<f64> {
    pods.iter().filter_map(|p| metric_of(p, metric)).collect()
}

/// Compares every node with the others. A node is pointed out when, in
/// the pod start or the sync, the Hodges–Lehmann shift of its pods against
/// the other nodes' pooled pods has a `confidence` interval that excludes
/// 0 and is at least `min_effect` of their median, and the same holds, in
/// the same direction, against more than half of the other nodes one by
/// one.
pub fn fleet(nodes: &[NodePods], confidence: f64, min_effect: MinEffect) -> Fleet {
    let all: Vec<&PodTime> = nodes.iter().flat_map(|n| &n.pods).collect();
    let per_node: Vec<Vec<&PodTime>> = nodes.iter().map(|n| n.pods.iter().collect()).collect();
    let mut stats = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut vs_others = Vec::new();
        if nodes.len() > 1 {
            for metric in METRICS {
                let mine = values(&per_node[i], metric);
                let others: Vec<f64> = per_node
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .flat_map(|(_, p)| values(p, metric))
                    .collect();
                let Some(shift) = stats::shift(&others, &mine, confidence) else {
                    continue;
                };
                let Some(others_p50) = summarize(&others).map(|s| s.p50) else {
                    continue;
                };
                let verdict = stats::verdict(&shift, others_p50, &min_effect);
                let mut differs_from = Vec::new();
                let mut compared_with = 0;
                for (j, other) in per_node.iter().enumerate().filter(|&(j, _)| j != i) {
                    let theirs = values(other, metric);
                    let (Some(s), Some(sum)) =
                        (stats::shift(&theirs, &mine, confidence), summarize(&theirs))
                    else {
                        continue;
                    };
                    compared_with += 1;
                    if stats::verdict(&s, sum.p50, &min_effect) == verdict {
                        differs_from.push(nodes[j].node.clone());
                    }
                }
                let directional = matches!(verdict, Verdict::Faster | Verdict::Slower);
                let flagged = directional && 2 * differs_from.len() > nodes.len() - 1;
                vs_others.push(NodeShift {
                    metric,
                    others_p50,
                    pct: if others_p50 != 0.0 {
                        shift.estimate / others_p50 * 100.0
                    } else {
                        0.0
                    },
                    shift,
                    verdict,
                    differs_from: if directional {
                        differs_from
                    } else {
                        Vec::new()
                    },
                    compared_with,
                    flagged,
                });
            }
        }
        stats.push(NodeStats {
            node: n.node.clone(),
            files: n.files.clone(),
            pods: n.pods.len(),
            pod: summarize(&values(&per_node[i], "pod")),
            sync: summarize(&values(&per_node[i], "sync")),
            outlier: vs_others.iter().any(|s| s.flagged),
            vs_others,
        });
    }
    Fleet {
        confidence,
        min_effect,
        outliers: stats
            .iter()
            .filter(|s| s.outlier)
            .map(|s| s.node.clone())
            .collect(),
        nodes: stats,
        pooled: Pooled {
            pods: all.len(),
            pod: summarize(&values(&all, "pod")),
            sync: summarize(&values(&all, "sync")),
        },
    }
}

fn f3(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

fn signed(v: f64) -> String {
    format!("{v:+.3}")
}

impl NodeShift {
    /// `+61.234 ms (+45.1 %) [+40.000, +80.000] slower`
    pub fn describe(&self) -> String {
        let iv = match (self.shift.low, self.shift.high) {
            (Some(l), Some(h)) => format!(" [{}, {}]", signed(l), signed(h)),
            _ => String::new(),
        };
        format!(
            "{} ms ({:+.1} %){iv} {}",
            signed(self.shift.estimate),
            self.pct,
            self.verdict.as_str()
        )
    }
}

impl Fleet {
    pub fn to_table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "nodes: {}, {} pod starts (pod: start sync start → first sync without error; sync: the start sync)",
            self.nodes.len(),
            self.pooled.pods
        );
        let _ = writeln!(
            o,
            "  {:<24} {:>5} {:>10} {:>10} {:>11}  pod start vs the other nodes (ms)",
            "node", "pods", "pod p50", "pod p90", "sync p50"
        );
        let p = |s: &Option<Summary>, f: fn(&Summary) -> f64| f3(s.as_ref().map(f));
        for n in &self.nodes {
            let vs = n
                .vs_others
                .iter()
                .find(|s| s.metric == "pod")
                .map(NodeShift::describe)
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {:<24} {:>5} {:>10} {:>10} {:>11}  {}{}",
                n.node,
                n.pods,
                p(&n.pod, |s| s.p50),
                p(&n.pod, |s| s.p90),
                p(&n.sync, |s| s.p50),
                vs,
                if n.outlier { "  <- differs" } else { "" }
            );
        }
        let _ = writeln!(
            o,
            "  {:<24} {:>5} {:>10} {:>10} {:>11}",
            "all nodes",
            self.pooled.pods,
            p(&self.pooled.pod, |s| s.p50),
            p(&self.pooled.pod, |s| s.p90),
            p(&self.pooled.sync, |s| s.p50),
        );
        if self.nodes.len() < 2 {
            return o;
        }
        let rule = format!(
            "{:.0} % interval of the Hodges–Lehmann shift against the other nodes' pods excludes 0, shift at least {} % of their median and {} ms, and the same against more than half of the other nodes one by one",
            self.confidence * 100.0,
            self.min_effect.min_pct,
            self.min_effect.min_ms
        );
        if self.outliers.is_empty() {
            let _ = writeln!(o, "no node differs from the others ({rule})");
        }
        for n in self.nodes.iter().filter(|n| n.outlier) {
            for s in n.vs_others.iter().filter(|s| s.flagged) {
                let _ = writeln!(
                    o,
                    "node {} differs: {} {} than the other nodes' pods, {} ms ({:+.1} %), also {} than {} of {} nodes one by one ({})",
                    n.node,
                    s.metric,
                    s.verdict.as_str(),
                    signed(s.shift.estimate),
                    s.pct,
                    s.verdict.as_str(),
                    s.differs_from.len(),
                    s.compared_with,
                    s.differs_from.join(", ")
                );
            }
        }
        if !self.outliers.is_empty() {
            let _ = writeln!(o, "  (pointed out when: {rule})");
        }
        if self.nodes.len() == 2 && !self.outliers.is_empty() {
            let _ = writeln!(
                o,
                "  with two nodes there is no majority: both differ from each other, and which one is off is not known"
            );
        }
        o
    }
}

/// `podtrace report` over several nodes: each node's own report, its pod
/// starts, and the node comparison.
#[derive(Debug, Clone)]
pub struct FleetReport {
    pub nodes: Vec<(NodeInput, Report)>,
    pub pods: Vec<PodTime>,
    pub fleet: Fleet,
}

/// Per node in the JSON: what its own report said besides its pods.
#[derive(Serialize)]
struct NodeJson<'a> {
    node: &'a str,
    files: Vec<String>,
    trace: &'a super::report::TraceSummary,
    pods: usize,
    warnings: &'a [String],
}

impl FleetReport {
    pub fn new(nodes: Vec<(NodeInput, Report, Vec<PodTime>)>, confidence: f64) -> FleetReport {
        let np: Vec<NodePods> = nodes
            .iter()
            .map(|(n, _, p)| NodePods {
                node: n.node.clone(),
                files: n.files(),
                pods: p.clone(),
            })
            .collect();
        let fleet = fleet(&np, confidence, NODE_MIN_EFFECT);
        let mut pods = Vec::new();
        let mut out = Vec::new();
        for (n, r, p) in nodes {
            pods.extend(p);
            out.push((n, r));
        }
        FleetReport {
            nodes: out,
            pods,
            fleet,
        }
    }

    /// All nodes' pods in one report (the node of each: [`Self::pod_nodes`]).
    pub fn pooled(&self) -> Option<Report> {
        pool_reports(self.nodes.iter().map(|(_, r)| r.clone()))
    }

    /// The node of each pod of [`Self::pooled`], in its order.
    pub fn pod_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|(n, r)| std::iter::repeat_n(n.node.clone(), r.pods.len()))
            .collect()
    }

    /// The report JSON (docs/report-json.md) of all nodes' pods, each pod
    /// with its `node`, plus `nodes` (per node: files, trace, warnings) and
    /// `fleet` (the node comparison).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let mut v = match self.pooled() {
            Some(r) => serde_json::to_value(&r)?,
            None => serde_json::json!({}),
        };
        if let Some(pods) = v.get_mut("pods").and_then(|p| p.as_array_mut()) {
            for (p, node) in pods.iter_mut().zip(self.pod_nodes()) {
                if let Some(o) = p.as_object_mut() {
                    o.insert("node".into(), node.into());
                }
            }
        }
        let nodes: Vec<NodeJson> = self
            .nodes
            .iter()
            .map(|(n, r)| NodeJson {
                node: &n.node,
                files: n.files(),
                trace: &r.trace,
                pods: r.pods.len(),
                warnings: &r.warnings,
            })
            .collect();
        if let Some(o) = v.as_object_mut() {
            o.insert("nodes".into(), serde_json::to_value(nodes)?);
            o.insert("fleet".into(), serde_json::to_value(&self.fleet)?);
        }
        Ok(v)
    }

    pub fn to_table(&self) -> String {
        let mut o = String::new();
        for (n, r) in &self.nodes {
            let files = n.files();
            let _ = writeln!(
                o,
                "=== node {} ({} file{}: {}) ===",
                n.node,
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                files.join(" ")
            );
            o.push_str(&r.to_table());
            o.push('\n');
        }
        let _ = writeln!(o, "=== all nodes ===");
        let _ = writeln!(
            o,
            "  {:<24} {:<48} {:>12} {:>10}",
            "node", "pod", "pod ms", "sync ms"
        );
        for p in &self.pods {
            let name = format!(
                "{}/{}",
                p.namespace.as_deref().unwrap_or("?"),
                p.name.as_deref().unwrap_or(&p.uid)
            );
            let _ = writeln!(
                o,
                "  {:<24} {:<48} {:>12} {:>10}",
                p.node,
                name,
                f3(p.pod_ms),
                f3(p.sync_ms)
            );
        }
        o.push_str(&self.fleet.to_table());
        o
    }
}

/// A short name for a run made of several files: the one chain's stem, or
/// the directory they share, or None.
pub fn run_name(chains: &[Chain]) -> Option<String> {
    if let [one] = chains {
        return Some(one.stem());
    }
    let mut dirs = chains.iter().map(|c| c.base.parent());
    let first = dirs.next()??;
    if dirs.all(|d| d == Some(first)) {
        return first
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty());
    }
    None
}

/// Per node, pods by uid: a pod counted on two nodes (the same file given
/// twice under two names) would be a mistake worth a warning.
pub fn shared_pods(pods: &[PodTime]) -> Vec<String> {
    let mut by_uid: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in pods {
        let nodes = by_uid.entry(p.uid.as_str()).or_default();
        if !nodes.contains(&p.node.as_str()) {
            nodes.push(&p.node);
        }
    }
    by_uid
        .into_iter()
        .filter(|(_, n)| n.len() > 1)
        .map(|(uid, n)| format!("pod {uid} starts on several nodes: {}", n.join(", ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ms: &[f64]) -> NodePods {
        NodePods {
            node: name.into(),
            files: vec![format!("{name}.trace")],
            pods: ms
                .iter()
                .enumerate()
                .map(|(i, &v)| PodTime {
                    node: name.into(),
                    uid: format!("{name}-{i}"),
                    name: None,
                    namespace: None,
                    pod_ms: Some(v),
                    sync_ms: Some(v - 1.0),
                })
                .collect(),
        }
    }

    /// Deterministic spread around `center`: ±15 %, no two alike.
    fn spread(center: f64, n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let k = (i as u64 * 7 + seed * 5) % 23;
                center * (0.85 + 0.3 * k as f64 / 22.0) + i as f64 * 1e-3
            })
            .collect()
    }

    #[test]
    fn one_slow_node_is_pointed_out_and_the_others_not() {
        let nodes = vec![
            node("a", &spread(200.0, 15, 1)),
            node("b", &spread(200.0, 15, 2)),
            node("c", &spread(300.0, 15, 3)),
        ];
        let f = fleet(&nodes, 0.95, NODE_MIN_EFFECT);
        assert_eq!(f.outliers, ["c"]);
        let c = &f.nodes[2];
        let pod = c.vs_others.iter().find(|s| s.metric == "pod");
        let pod = pod.unwrap_or_else(|| panic!("no pod shift: {c:?}"));
        assert_eq!(pod.verdict, Verdict::Slower);
        assert!(pod.pct > 30.0 && pod.pct < 70.0, "{pod:?}");
        assert_eq!(pod.differs_from, ["a", "b"]);
        // Node a is faster than the pooled others (c pulls them up) but
        // not than b: not pointed out.
        let a = &f.nodes[0];
        assert!(!a.outlier, "{a:?}");
        let a_pod = a.vs_others.iter().find(|s| s.metric == "pod");
        assert_eq!(a_pod.map(|s| s.verdict), Some(Verdict::Faster));
        assert_eq!(
            a_pod.map(|s| s.differs_from.clone()),
            Some(vec!["c".to_string()])
        );
        assert_eq!(f.pooled.pods, 45);
        // Medians per node are the nodes' own.
        let med = |v: &[f64]| summarize(v).map(|s| s.p50);
        assert_eq!(
            f.nodes[1].pod.as_ref().map(|s| s.p50),
            med(&spread(200.0, 15, 2))
        );
        assert!(
            f.to_table().contains("node c differs: pod slower"),
            "{}",
            f.to_table()
        );
    }

    #[test]
    fn alike_nodes_and_small_shifts_are_not_pointed_out() {
        // 5 % slower: real but under the 10 % threshold.
        let nodes = vec![
            node("a", &spread(200.0, 30, 1)),
            node("b", &spread(200.0, 30, 2)),
            node("c", &spread(210.0, 30, 3)),
        ];
        let f = fleet(&nodes, 0.95, NODE_MIN_EFFECT);
        assert!(f.outliers.is_empty(), "{}", f.to_table());
        // A single node: distributions only.
        let f = fleet(&nodes[..1], 0.95, NODE_MIN_EFFECT);
        assert!(f.nodes[0].vs_others.is_empty() && f.outliers.is_empty());
        // Too few pods for an interval: never pointed out.
        let nodes = vec![node("a", &[1.0, 2.0]), node("b", &[100.0, 200.0])];
        let f = fleet(&nodes, 0.95, NODE_MIN_EFFECT);
        assert!(f.outliers.is_empty());
        assert!(f.nodes[0]
            .vs_others
            .iter()
            .all(|s| s.verdict == Verdict::TooFewSamples));
    }

    #[test]
    fn two_nodes_that_differ_are_both_pointed_out() {
        let nodes = vec![
            node("a", &spread(200.0, 15, 1)),
            node("b", &spread(320.0, 15, 2)),
        ];
        let f = fleet(&nodes, 0.95, NODE_MIN_EFFECT);
        assert_eq!(f.outliers, ["a", "b"]);
        assert!(f.to_table().contains("no majority"));
    }

    #[test]
    fn shared_pods_are_named() {
        let mut a = node("a", &[1.0]).pods;
        let mut b = node("b", &[1.0]).pods;
        b[0].uid = a[0].uid.clone();
        a.append(&mut b);
        assert_eq!(shared_pods(&a).len(), 1);
    }
}
