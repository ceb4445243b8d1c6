//! `cargo xtask demo`: record a real kubelet (built from the k8s.io/kubernetes
//! module by set-up, standalone with static pods on containerd 2.x) with
//! kubelet's default intervals and rebuilt with the tuned ones from the field
//! notes, and compare them (compare's first line says what changed, from the
//! same numbers as its table, net of the drift between the runs).
//!
//! The default design is interleaved: one `podtrace record` while the two
//! builds take turns at kubelet's path in ABBA blocks, so that drift over
//! time falls on both alike; `compare --split-by build` makes the runs.
//! `--design sequential` records default, then tuned, as two traces.
//! `--workload` records the kubelet-shaped test program instead (fast, no
//! containers).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use podtrace_tests::{
    cluster::{Cluster, ClusterOpts, VOLUME_KINDS},
    containerd,
    node::{Node, NodeOpts, Recorder},
    otlp,
    prometheus::{value_of, Prometheus},
    util::free_port,
};

use crate::{podtrace_bin, root, sh, step, upstream, workload_dir};

/// `cargo xtask demo`: the real kubelet (default, then tuned) unless
/// `workload`, the kubelet-shaped test program.
/// How default and tuned runs are laid out in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Design {
    Interleaved,
    Sequential,
}

pub fn run(pods: u32, workload: bool, design: Design) -> Result<()> {
    let out = root().join("target/demo");
    std::fs::create_dir_all(&out)?;
    if !workload && design == Design::Interleaved {
        return interleaved(&out, pods);
    }
    let mut reports = Vec::new();
    let versions;
    if workload {
        versions = "the kubelet-shaped workload (tests/workload, Go 1.27, stripped)".to_string();
        for preset in ["default", "tuned"] {
            let trace = record_workload(&out, preset, pods)?;
            reports.push((preset, trace));
        }
    } else {
        let v = upstream::TUNED_KUBELET;
        versions = format!(
            "kubelet {v} (built from k8s.io/kubernetes@{v}, stripped) and containerd {} (github.com/containerd/containerd/v2)",
            upstream::CONTAINERD_VERSION
        );
        for (preset, tuned) in [("default", false), ("tuned", true)] {
            let trace = record_real(&out, preset, tuned, pods)?;
            reports.push((preset, trace));
        }
    }
    for (_, trace) in &reports {
        step(&format!("podtrace report {}", trace.display()));
        sh(Command::new(podtrace_bin()).arg("report").arg(trace))?;
    }
    summary(&out, &versions)
}

/// Records `pods` pod starts of the kubelet-shaped workload.
fn record_workload(out: &Path, preset: &str, pods: u32) -> Result<PathBuf> {
    let kubelet = workload_dir().join("go1.27/kubelet");
    let trace = out.join(format!("{preset}.trace"));
    step(&format!(
        "recording {pods} pod starts of the kubelet-shaped workload, {preset} intervals"
    ));
    sh(Command::new(podtrace_bin())
        .args(["record", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&kubelet)
        .args([
            "--preset",
            preset,
            "--pods",
            &pods.to_string(),
            "--rate",
            "2",
        ])
        .arg("--ground-truth")
        .arg(out.join(format!("{preset}.groundtruth.jsonl"))))?;
    Ok(trace)
}

/// Starts a standalone real kubelet (default or tuned build) on containerd
/// 2.x with a local registry, records `pods` static pod starts, removes the
/// pods and tears the node down. Keeps kubelet's log next to the trace.
fn record_real(out: &Path, preset: &str, tuned: bool, pods: u32) -> Result<PathBuf> {
    let version = upstream::TUNED_KUBELET;
    let kubelet = upstream::kubelet(version, tuned);
    let trace = out.join(format!("{preset}.trace"));
    let kubelet_log = out.join(format!("{preset}.kubelet.log"));
    step(&format!(
        "starting kubelet {version} ({preset} intervals) standalone on containerd {}, static pods from a local registry",
        upstream::CONTAINERD_VERSION
    ));
    let t = std::time::Instant::now();
    let (tr, kl) = (trace.clone(), kubelet_log.clone());
    // The node harness panics with a clear message (and the tail of the
    // failing component's log) and tears everything down while unwinding.
    let res = std::panic::catch_unwind(move || {
        let mut opts = NodeOpts::new(kubelet);
        opts.containerd = containerd::Options::v2();
        let node = Node::start(opts);
        step(&format!(
            "recording {pods} static pod starts with podtrace (one at a time, then a pause)"
        ));
        let names: Vec<String> = (0..pods).map(|i| format!("demo-{i:02}")).collect();
        let rec = node.record_pods(&podtrace_bin(), &tr, &names, Duration::from_millis(600));
        node.remove_all_pods(Duration::from_secs(30));
        let _ = std::fs::copy(&node.kubelet_log, &kl);
        rec.pods.len()
    });
    match res {
        Ok(n) => {
            eprintln!(
                "    recorded {n} pod starts in {:.0} s; kubelet's own log: {}",
                t.elapsed().as_secs_f64(),
                kubelet_log.display()
            );
            Ok(trace)
        }
        Err(_) => bail!("the {preset} node run failed (see the message above)"),
    }
}

/// The interleaved design on the real kubelet: ABBA blocks of `pods / 2`
/// pod starts (so `pods` per build) under one recording.
fn interleaved(out: &Path, pods: u32) -> Result<()> {
    let version = upstream::TUNED_KUBELET;
    let (a, b) = (
        upstream::kubelet(version, false),
        upstream::kubelet(version, true),
    );
    let trace = out.join("interleaved.trace");
    let kubelet_log = out.join("interleaved.kubelet.log");
    let per_block = (pods as usize).div_ceil(2);
    step(&format!(
        "starting kubelet {version} standalone on containerd {}; default and tuned builds take turns \
         at kubelet's path in ABBA blocks of {per_block} static pods, one podtrace recording",
        upstream::CONTAINERD_VERSION
    ));
    let t = std::time::Instant::now();
    let (tr, kl) = (trace.clone(), kubelet_log.clone());
    let res = std::panic::catch_unwind(move || {
        let mut opts = NodeOpts::new(a.clone());
        opts.containerd = containerd::Options::v2();
        opts.swappable = true;
        let mut node = Node::start(opts);
        let rec = node.record_interleaved(
            &podtrace_bin(),
            &tr,
            [("default", &a), ("tuned", &b)],
            "ABBA",
            per_block,
            Duration::from_millis(600),
        );
        node.remove_all_pods(Duration::from_secs(30));
        let _ = std::fs::copy(&node.kubelet_log, &kl);
        rec.recording.pods.len()
    });
    let n = match res {
        Ok(n) => n,
        Err(_) => bail!("the interleaved node run failed (see the message above)"),
    };
    eprintln!(
        "    recorded {n} pod starts in {:.0} s; kubelet's own log: {}",
        t.elapsed().as_secs_f64(),
        kubelet_log.display()
    );
    step("podtrace report interleaved.trace");
    sh(Command::new(podtrace_bin()).arg("report").arg(&trace))?;
    step("podtrace compare interleaved.trace --split-by build --label default --label tuned");
    let cmp_html = out.join("compare.html");
    sh(Command::new(podtrace_bin())
        .arg("compare")
        .arg(&trace)
        .args([
            "--split-by",
            "build",
            "--label",
            "default",
            "--label",
            "tuned",
            "--html",
        ])
        .arg(&cmp_html))?;
    let chrome = out.join("interleaved.perfetto.json");
    sh(Command::new(podtrace_bin())
        .args(["export", "--format", "chrome", "-o"])
        .arg(&chrome)
        .arg(&trace))?;
    println!("\nwritten to {}:", out.display());
    println!("  interleaved.trace              the recording (podtrace report / compare --split-by build / export)");
    println!("  compare.html                   stage distributions, default vs tuned");
    println!(
        "  interleaved.perfetto.json      open in https://ui.perfetto.dev or chrome://tracing"
    );
    println!("  interleaved.kubelet.log        kubelet's own log");
    println!(
        "\nrecorded: kubelet {version} (built from k8s.io/kubernetes@{version}, stripped; default and tuned builds) and containerd {} (github.com/containerd/containerd/v2)",
        upstream::CONTAINERD_VERSION
    );
    Ok(())
}

/// `cargo xtask demo --cluster`: a one-node cluster (etcd, the v1.36.3
/// control plane, kubelet registered on containerd 2.x, a CNI bridge) runs
/// a Deployment of `pods` pods with six volume kinds while podtrace
/// records; once with the default kubelet, once with the tuned build. Prints
/// each report (per pod: stages, each volume's mount, the poll) with, next
/// to it, what the cluster's OpenTelemetry Collector and a Prometheus
/// scraping podtrace got, and, per volume kind, the median time from sync
/// start to mounted.
pub fn run_cluster(pods: u32) -> Result<()> {
    let out = root().join("target/demo");
    std::fs::create_dir_all(&out)?;
    let mut traces = Vec::new();
    let mut views = Vec::new();
    for (preset, tuned) in [("default", false), ("tuned", true)] {
        let (trace, view) = record_cluster(&out, preset, tuned, pods)?;
        traces.push((preset, trace));
        views.push(view);
    }
    for ((_, trace), view) in traces.iter().zip(&views) {
        step(&format!("podtrace report {}", trace.display()));
        sh(Command::new(podtrace_bin()).arg("report").arg(trace))?;
        println!("{view}");
    }
    volume_summary(&traces)?;
    step("podtrace compare cluster-default.trace cluster-tuned.trace");
    sh(Command::new(podtrace_bin())
        .arg("compare")
        .arg(&traces[0].1)
        .arg(&traces[1].1))?;
    println!(
        "\nwritten to {}: cluster-default.trace, cluster-tuned.trace (podtrace report / compare / export), cluster-*.kubelet.log",
        out.display()
    );
    Ok(())
}

/// One cluster run: bring-up, podtrace attached to the node's kubelet and
/// containerd (live spans to the cluster's collector, metrics scraped by a
/// Prometheus), the Deployment, recording stopped once every pod is ready,
/// teardown (failing if anything is left on the machine). Returns the trace
/// and the backends' view of the run.
fn record_cluster(out: &Path, preset: &str, tuned: bool, pods: u32) -> Result<(PathBuf, String)> {
    let version = upstream::CONTROL_PLANE_VERSION;
    let trace = out.join(format!("cluster-{preset}.trace"));
    let kubelet_log = out.join(format!("cluster-{preset}.kubelet.log"));
    step(&format!(
        "one-node cluster: etcd (Debian), kube-apiserver, kube-controller-manager, kube-scheduler {version}, kubelet {version} ({preset} intervals) registered on containerd {}",
        upstream::CONTAINERD_VERSION
    ));
    let t = std::time::Instant::now();
    let (tr, kl) = (trace.clone(), kubelet_log.clone());
    let kubelet = upstream::kubelet(upstream::TUNED_KUBELET, tuned);
    // The harness panics with a clear message (and the tail of the failing
    // component's log) and tears everything down while unwinding.
    let res = std::panic::catch_unwind(move || {
        let mut c = Cluster::start(ClusterOpts::new(kubelet));
        c.create_volume_sources();
        let metrics = format!("127.0.0.1:{}", free_port());
        let collector = c.collector().http.clone();
        let rec = Recorder::start(
            &podtrace_bin(),
            &tr,
            &c.node().pids(),
            &[
                "--node-name",
                podtrace_tests::cluster::NODE_NAME,
                "--otlp-endpoint",
                &collector,
                "--metrics",
                &metrics,
            ],
        );
        // podtrace runs on the host here, not in a pod: a static target
        // (the cluster test discovers the DaemonSet's pod through the API).
        let prom = Prometheus::start(
            &c.dir.join("prometheus"),
            &c.dir.join("pids"),
            &format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n- job_name: podtrace\n  static_configs: [{{targets: ['{metrics}']}}]\n"
            ),
        );
        step(&format!(
            "a Deployment scaled to {pods} pods through the API, one at a time (projected token, ConfigMap, Secret, downward API, emptyDir, PVC on a local PV)"
        ));
        c.apply("demo", &c.deployment("demo", 0, true));
        // One pod at a time, as the standalone demo starts its static pods.
        c.scale_up("demo", pods as usize, Duration::from_secs(120));
        // Each pod's last sync after its container started; every start
        // summarised, sent and scraped.
        std::thread::sleep(Duration::from_secs(2));
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(20)
            && prom
                .query("sum(podtrace_pod_starts_total)")
                .first()
                .and_then(value_of)
                != Some(f64::from(pods))
        {
            std::thread::sleep(Duration::from_millis(250));
        }
        // kubelet exports its spans in batches every 5 s.
        let t = std::time::Instant::now();
        let spans = loop {
            let spans = c.collector().sink.spans();
            let kubelet_has = |uid: &str| {
                spans
                    .iter()
                    .any(|s| s.name == "syncPod" && s.attr("k8s.pod.uid") == Some(uid))
            };
            let all = spans
                .iter()
                .filter(|s| s.scope == "podtrace" && s.name == "sync")
                .filter_map(|s| s.attr("k8s.pod.uid"))
                .all(kubelet_has);
            if all || t.elapsed() > Duration::from_secs(10) {
                break spans;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let view = backends_view(&prom, &spans);
        drop(prom);
        rec.stop();
        let _ = std::fs::copy(&c.node().kubelet_log, &kl);
        (c.shutdown(), view)
    });
    match res {
        Ok((left, view)) if left.is_empty() => {
            eprintln!(
                "    {pods} pods recorded, cluster up and down in {:.0} s, nothing left behind; kubelet's own log: {}",
                t.elapsed().as_secs_f64(),
                kubelet_log.display()
            );
            Ok((trace, view))
        }
        Ok((left, _)) => bail!("the {preset} cluster left behind: {left:#?}"),
        Err(_) => bail!("the {preset} cluster run failed (see the message above)"),
    }
}

/// A few lines of what the collector and Prometheus got: the pods' starts
/// at the collector, podtrace's sync span against kubelet's own syncPod
/// span for the same pod, and Prometheus's quantiles of podtrace's
/// histograms.
fn backends_view(prom: &Prometheus, spans: &[otlp::Span]) -> String {
    let ours: Vec<&otlp::Span> = spans
        .iter()
        .filter(|s| s.scope == "podtrace" && s.name == "sync" && s.parent_span_id.is_empty())
        .collect();
    let mut diffs_us: Vec<f64> = ours
        .iter()
        .filter_map(|o| {
            let uid = o.attr("k8s.pod.uid")?;
            let k = spans
                .iter()
                .filter(|s| s.name == "syncPod" && s.scope != "podtrace")
                .filter(|s| s.attr("k8s.pod.uid") == Some(uid))
                .min_by_key(|s| s.start_unix_nano)?;
            let d = |a: u64, b: u64| (a as f64 - b as f64).abs() / 1e3;
            Some(d(o.start_unix_nano, k.start_unix_nano).max(d(o.end_unix_nano, k.end_unix_nano)))
        })
        .collect();
    diffs_us.sort_by(f64::total_cmp);
    let q = |v: &[f64], p: f64| {
        v.get(((v.len() as f64 * p).ceil() as usize).clamp(1, v.len().max(1)) - 1)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let kubelet_spans = spans.iter().filter(|s| s.scope != "podtrace").count();
    let pq = |expr: &str| {
        prom.query(expr)
            .first()
            .and_then(value_of)
            .map_or_else(|| "-".to_string(), |v| format!("{:.1}", v * 1e3))
    };
    let hq = |p: f64, m: &str| {
        pq(&format!(
            "histogram_quantile({p}, sum by (le) ({m}_bucket))"
        ))
    };
    format!(
        "  OpenTelemetry Collector: {} pod starts from podtrace ({} spans), {kubelet_spans} spans of kubelet's own; podtrace's sync vs kubelet's syncPod span (worse end, n {}): median {:.0} µs, worst {:.0} µs\n  Prometheus: {} starts; sync p50 {} ms, p99 {} ms; mount wait p50 {} ms; lost to polling p50 {} ms (bucket-interpolated)",
        ours.len(),
        spans.len() - kubelet_spans,
        diffs_us.len(),
        q(&diffs_us, 0.5),
        diffs_us.last().copied().unwrap_or(f64::NAN),
        prom.query("sum(podtrace_pod_starts_total)")
            .first()
            .and_then(value_of)
            .map_or_else(|| "-".to_string(), |v| format!("{v:.0}")),
        hq(0.5, "podtrace_pod_start_sync_seconds"),
        hq(0.99, "podtrace_pod_start_sync_seconds"),
        hq(0.5, "podtrace_mount_wait_seconds"),
        hq(0.5, "podtrace_lost_to_polling_seconds"),
    )
}

/// Per volume kind, the median time from sync start to the volume marked
/// mounted, default vs tuned, from the reports' JSON.
fn volume_summary(traces: &[(&str, PathBuf)]) -> Result<()> {
    let mut rows: Vec<(String, Vec<Option<f64>>)> = VOLUME_KINDS
        .iter()
        .map(|(kind, _, _)| (kind.to_string(), Vec::new()))
        .collect();
    let mut lost = Vec::new();
    for (_, trace) in traces {
        let out = Command::new(podtrace_bin())
            .args(["report", "--format", "json"])
            .arg(trace)
            .output()
            .context("running podtrace report")?;
        if !out.status.success() {
            bail!("podtrace report {} failed", trace.display());
        }
        let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let pods = r["pods"].as_array().cloned().unwrap_or_default();
        for (i, (_, prefix, plugin)) in VOLUME_KINDS.iter().enumerate() {
            let mut v: Vec<f64> = pods
                .iter()
                .flat_map(|p| p["volumes"].as_array().cloned().unwrap_or_default())
                .filter(|v| {
                    v["plugin"] == *plugin
                        && v["name"]
                            .as_str()
                            .is_some_and(|n| n.starts_with(prefix.trim_end_matches('-')))
                })
                .filter_map(|v| v["mounted_ms"].as_f64())
                .collect();
            v.sort_by(f64::total_cmp);
            rows[i].1.push(v.get(v.len() / 2).copied());
        }
        let mut l: Vec<f64> = pods
            .iter()
            .filter_map(|p| p["mount_wait"]["lost_to_polling_ms"].as_f64())
            .collect();
        l.sort_by(f64::total_cmp);
        lost.push(l.get(l.len() / 2).copied());
    }
    let f = |v: &Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    println!(
        "\nper volume kind: median ms from sync start to marked mounted\n  {:<34} {:>10} {:>10}",
        "volume", traces[0].0, traces[1].0
    );
    for (kind, v) in &rows {
        println!("  {kind:<34} {:>10} {:>10}", f(&v[0]), f(&v[1]));
    }
    println!(
        "  {:<34} {:>10} {:>10}",
        "mount wait lost to polling",
        f(&lost[0]),
        f(&lost[1])
    );
    Ok(())
}

/// compare (its first line says what changed, from the same numbers as its
/// table), the HTML pages and the Perfetto file.
fn summary(out: &Path, versions: &str) -> Result<()> {
    let (d, t) = (out.join("default.trace"), out.join("tuned.trace"));
    step("podtrace compare default.trace tuned.trace");
    let cmp_html = out.join("compare.html");
    sh(Command::new(podtrace_bin())
        .arg("compare")
        .arg(&d)
        .arg(&t)
        .arg("--html")
        .arg(&cmp_html))?;
    let html = out.join("tuned.html");
    sh(Command::new(podtrace_bin())
        .arg("report")
        .arg(&t)
        .arg("--html")
        .arg(&html)
        .stdout(std::process::Stdio::null()))?;
    let chrome = out.join("tuned.perfetto.json");
    sh(Command::new(podtrace_bin())
        .args(["export", "--format", "chrome", "-o"])
        .arg(&chrome)
        .arg(&t))?;
    println!("\nwritten to {}:", out.display());
    println!(
        "  default.trace, tuned.trace     the recordings (podtrace report / compare / export)"
    );
    println!("  compare.html                   stage distributions, default vs tuned");
    println!("  tuned.html                     per-pod waterfall with poll checks and mount times");
    println!(
        "  tuned.perfetto.json            open in https://ui.perfetto.dev or chrome://tracing"
    );
    println!("  *.groundtruth.jsonl / *.kubelet.log   the workload's or kubelet's own log");
    println!("\nrecorded: {versions}");
    Ok(())
}
