//! Many nodes, one comparison: three synthetic nodes' traces (one of them
//! slowed, one rotated in the middle of a pod start) read through the
//! commands' own file handling (globs, rotated chains), checked against
//! what the generator wrote.

use std::path::{Path, PathBuf};

use podtrace::{
    analysis::{
        compare::CONFIDENCE,
        fleet::{by_node, pod_times, read_chain, FleetReport, PodTime},
        report::Report,
    },
    commands::{
        compare::{fleet_run, run as compare_cmd, CompareArgs, CompareFormat},
        report::{chains_of, node_report, run as report_cmd, ReportArgs},
        Format,
    },
    correlate::{load_correlated, MAX_SPAN_AGE_NS},
    test_support::synth::{synth, write_trace, SynthPod, SynthSpec, SynthTruth},
    trace::{Rotation, Trace, Writer},
};

const PODS: usize = 12;
/// Node c's pods take this much longer in every stage that is not polling.
const SLOW: f64 = 1.6;
/// The pod of node b whose start is cut by the rotation.
const STRADDLING: usize = 8;

fn tmp(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fleet-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// One node's pods: varied volumes, sandbox and container times, `slow`
/// times longer; unique UIDs and names per node.
fn node_spec(node: usize, host: &str, slow: f64) -> SynthSpec {
    let pods = (0..PODS)
        .map(|i| {
            // The same spread on every node, in another order, a little
            // jitter apart.
            let k = (i * 5 + node * 3) % PODS;
            let jitter = node as f64 * 0.3;
            let mut p = SynthPod::new(
                i,
                30.0 + 900.0 * i as f64,
                (40.0 + 9.0 * k as f64) * slow + jitter,
                10.0,
            );
            p.uid = format!("0000000{node}-0000-4000-8000-{i:012}");
            p.name = format!("{host}-pod-{i}");
            p.sandbox_ms = (30.0 + (k % 5) as f64 * 4.0) * slow;
            p.containers_ms = vec![
                (10.0 + (k % 3) as f64) * slow,
                (5.0 + (k % 4) as f64) * slow,
            ];
            p.post_ms = 1.0 * slow;
            p
        })
        .collect();
    SynthSpec {
        hostname: host.into(),
        ..SynthSpec::new(pods)
    }
}

/// The pod start as the generator wrote it: start sync start → its end.
fn truth_ms(t: &SynthTruth) -> Vec<(String, f64)> {
    t.pods
        .iter()
        .map(|p| (p.uid.clone(), (p.sync_end - p.sync_start) as f64 / 1e6))
        .collect()
}

/// Nearest-rank median, rank = ceil(n/2), over values sorted here.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len().div_ceil(2) - 1]
}

/// Writes `trace` as `record --max-size` would, sized so that the file
/// rotates right after event `split - 1`: FILE.1 holds the events before
/// `split`, FILE the rest.
fn write_rotated(trace: &Trace, path: &Path, split: usize) {
    // What the writer counts up to the split: header and those events.
    let probe = path.with_extension("size");
    let mut w = Writer::create(&probe, &trace.header).expect("writer");
    for e in &trace.events[..split] {
        w.event(e).expect("event");
    }
    w.flush().expect("flush");
    let max_bytes = std::fs::metadata(&probe).expect("size").len();
    drop(w);
    std::fs::remove_file(&probe).expect("remove");
    let rot = Rotation {
        max_bytes,
        max_files: 5,
    };
    let mut w = Writer::create_rotating(path, &trace.header, Some(rot)).expect("writer");
    for e in &trace.events {
        w.event(e).expect("event");
    }
    w.finish(trace.footer.clone().unwrap_or_default())
        .expect("finish");
}

struct Nodes {
    dir: PathBuf,
    truths: Vec<(String, SynthTruth)>,
}

fn three_nodes(name: &str) -> Nodes {
    let dir = tmp(name);
    let mut truths = Vec::new();
    for (i, (host, slow)) in [("node-a", 1.0), ("node-b", 1.0), ("node-c", SLOW)]
        .into_iter()
        .enumerate()
    {
        let (t, truth) = synth(&node_spec(i, host, slow)).expect("synth");
        let path = dir.join(format!("{host}.trace"));
        if host == "node-b" {
            // Rotate in the middle of pod STRADDLING's mount wait.
            let p = &truth.pods[STRADDLING];
            let mid = (p.mount_wait_start + p.mount_wait_end) / 2;
            let split = t.events.iter().position(|e| e.t > mid).expect("split");
            write_rotated(&t, &path, split);
        } else {
            write_trace(&t, &path).expect("write");
        }
        truths.push((host.to_string(), truth));
    }
    Nodes { dir, truths }
}

fn glob(dir: &Path) -> PathBuf {
    dir.join("*.trace*")
}

#[test]
fn a_rotated_pod_is_whole_and_the_slow_node_is_pointed_out() {
    let n = three_nodes("report");
    let b = n.dir.join("node-b.trace");
    let b1 = Rotation::numbered(&b, 1);
    // The setup: node b's recording rotated exactly once.
    assert!(b1.exists() && !Rotation::numbered(&b, 2).exists());
    let straddling_uid = n.truths[1].1.pods[STRADDLING].uid.clone();
    let want_b = truth_ms(&n.truths[1].1);
    let want_straddling = want_b[STRADDLING].1;

    // Each file alone cuts the pod: the older one has its start and no
    // end, the newer one not its start.
    let (_, older) = load_correlated(&b1).expect("FILE.1");
    let older_pod = pod_times("node-b", &older)
        .into_iter()
        .find(|p| p.uid == straddling_uid);
    assert_eq!(older_pod.map(|p| p.pod_ms), Some(None), "FILE.1 alone");
    let (_, newer) = load_correlated(&b).expect("FILE");
    assert!(
        pod_times("node-b", &newer)
            .iter()
            .all(|p| p.uid != straddling_uid),
        "FILE alone starts no such pod"
    );

    // The quoted glob, as a DaemonSet's hostPath would be given.
    let chains = chains_of(&[glob(&n.dir)]).expect("chains");
    assert_eq!(chains.len(), 3, "{chains:?}");
    let chain_b = chains
        .iter()
        .find(|c| c.node == "node-b")
        .expect("node b's chain");
    assert_eq!(chain_b.files, vec![b1.clone(), b.clone()], "oldest first");
    let (_, corr) = read_chain(chain_b, MAX_SPAN_AGE_NS).expect("read chain");
    let pods_b = pod_times("node-b", &corr);
    let got: Vec<&PodTime> = pods_b.iter().filter(|p| p.uid == straddling_uid).collect();
    assert_eq!(got.len(), 1, "the straddling pod once");
    let ms = got[0].pod_ms.expect("the straddling pod has its end");
    assert!(
        (ms - want_straddling).abs() < 1e-6,
        "{ms} vs {want_straddling}"
    );
    // Every pod of node b is whole, and its report has every stage of it.
    assert_eq!(pods_b.len(), PODS);
    for (uid, want) in &want_b {
        let p = pods_b.iter().find(|p| &p.uid == uid).expect("pod");
        assert!((p.pod_ms.unwrap_or(f64::NAN) - want).abs() < 1e-6, "{uid}");
    }

    // The report over all nodes.
    let nodes = by_node(chains);
    assert_eq!(
        nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        ["node-a", "node-b", "node-c"]
    );
    let mut per_node = Vec::new();
    for node in nodes {
        let (r, pods) = node_report(&node, MAX_SPAN_AGE_NS).expect("node report");
        per_node.push((node, r, pods));
    }
    let report_b: &Report = &per_node[1].1;
    let pr = report_b
        .pods
        .iter()
        .find(|p| p.uid == straddling_uid)
        .expect("in node b's report");
    let mw = pr.mount_wait.as_ref().expect("mount wait");
    let truth_p = &n.truths[1].1.pods[STRADDLING];
    let want_mw = (truth_p.mount_wait_end - truth_p.mount_wait_start) as f64 / 1e6;
    assert!((mw.duration_ms.unwrap_or(f64::NAN) - want_mw).abs() < 1e-6);
    assert_eq!(pr.cri.len(), 0, "kubelet only");
    assert!(pr.stages.iter().all(|s| s.duration_ms.is_some()));

    let fr = FleetReport::new(per_node, CONFIDENCE);
    // Per-node medians, from the generator's times.
    for (i, (host, truth)) in n.truths.iter().enumerate() {
        let want = median(truth_ms(truth).into_iter().map(|(_, v)| v).collect());
        let node = &fr.fleet.nodes[i];
        assert_eq!(&node.node, host);
        assert_eq!(node.pods, PODS);
        let got = node.pod.as_ref().map(|s| s.p50).expect("median");
        assert!((got - want).abs() < 1e-6, "{host}: {got} vs {want}");
    }
    let pooled = median(
        n.truths
            .iter()
            .flat_map(|(_, t)| truth_ms(t))
            .map(|(_, v)| v)
            .collect(),
    );
    let got = fr.fleet.pooled.pod.as_ref().map(|s| s.p50).expect("pooled");
    assert!((got - pooled).abs() < 1e-6, "{got} vs {pooled}");
    assert_eq!(fr.fleet.pooled.pods, 3 * PODS);
    // The slow node, and only it.
    assert_eq!(fr.fleet.outliers, ["node-c"], "{}", fr.fleet.to_table());
    let c = &fr.fleet.nodes[2];
    let shift = c
        .vs_others
        .iter()
        .find(|s| s.metric == "pod")
        .expect("shift");
    assert!(shift.shift.low.is_some_and(|l| l > 0.0), "{shift:?}");
    assert!(fr.fleet.nodes[..2].iter().all(|n| !n.outlier));

    // The node named on each pod: JSON, table, HTML.
    let v = fr.to_json().expect("json");
    let pods = v["pods"].as_array().expect("pods");
    assert_eq!(pods.len(), 3 * PODS);
    let straddling: Vec<_> = pods
        .iter()
        .filter(|p| p["uid"] == straddling_uid.as_str())
        .collect();
    assert_eq!(straddling.len(), 1);
    assert_eq!(straddling[0]["node"], "node-b");
    assert!(pods.iter().all(|p| p["name"]
        .as_str()
        .is_some_and(|n| n.starts_with(p["node"].as_str().unwrap_or("-")))));
    assert_eq!(v["fleet"]["outliers"], serde_json::json!(["node-c"]));
    assert_eq!(v["nodes"][1]["files"].as_array().map(Vec::len), Some(2));
    let table = fr.to_table();
    assert!(table.contains("=== node node-b (2 files"), "{table}");
    assert!(table.contains("node node-c differs: pod slower"), "{table}");
    let html = podtrace::html::fleet_report_html(&fr);
    assert!(html.contains("on node node-b") && html.contains("<b>differs</b>"));

    // The command end to end (a glob and a comma list), with its HTML.
    let page = n.dir.join("nodes.html");
    let list = format!(
        "{},{}",
        n.dir.join("node-a.trace").display(),
        n.dir.join("node-c.trace").display()
    );
    report_cmd(ReportArgs {
        traces: vec![n.dir.join("node-b.trace*"), PathBuf::from(list)],
        html: Some(page.clone()),
        svg: None,
        journal: false,
        max_open: std::time::Duration::from_secs(600),
        format: Format::Table,
        confidence: CONFIDENCE,
    })
    .expect("report");
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(
        html.contains("node-b-pod-8 on node node-b"),
        "straddling pod drawn"
    );
    let _ = std::fs::remove_dir_all(&n.dir);
}

#[test]
fn compare_pools_each_runs_nodes_and_names_the_slow_one() {
    let n = three_nodes("compare");
    let nodes = by_node(chains_of(&[glob(&n.dir)]).expect("chains"));
    let (run, fleet) = fleet_run("fleet", &glob(&n.dir), &nodes, CONFIDENCE).expect("run");
    let fleet = fleet.expect("three nodes: a node comparison");
    assert_eq!(fleet.outliers, ["node-c"]);
    // The pooled run holds every pod start of every node, each whole.
    let pods = run.samples.get("pod").expect("pod samples");
    assert_eq!(pods.len(), 3 * PODS);
    let mut want: Vec<f64> = n
        .truths
        .iter()
        .flat_map(|(_, t)| truth_ms(t))
        .map(|(_, v)| v)
        .collect();
    let mut got = pods.clone();
    want.sort_by(f64::total_cmp);
    got.sort_by(f64::total_cmp);
    assert!(
        got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-6),
        "{got:?}\n{want:?}"
    );
    assert_eq!(run.report.pods.len(), 3 * PODS);
    assert!(run.source.contains("4 files, 3 nodes"), "{}", run.source);

    // The command: the fast nodes against all three (a glob per run).
    let fast = format!(
        "{},{}",
        n.dir.join("node-a.trace").display(),
        n.dir.join("node-b.trace*").display()
    );
    let code = compare_cmd(CompareArgs {
        traces: vec![PathBuf::from(&fast), glob(&n.dir)],
        labels: vec![format!("fast={fast}")],
        format: CompareFormat::Json,
        html: None,
        svg: None,
        min_effect_pct: 5.0,
        min_effect_ms: 1.0,
        confidence: CONFIDENCE,
        controls: vec![],
        split_by: None,
    })
    .expect("compare");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let _ = std::fs::remove_dir_all(&n.dir);
}
