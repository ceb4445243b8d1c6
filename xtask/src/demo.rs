//! `cargo xtask demo`: record a real kubelet (built from the k8s.io/kubernetes
//! module by set-up, standalone with static pods on containerd 2.x) with
//! kubelet's default intervals and rebuilt with the tuned ones from the field
//! notes; print both reports and compare them (compare's first line says what
//! changed, from the same numbers as its table). `--workload` records the
//! kubelet-shaped test program instead (fast, no containers).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Result};
use podtrace_tests::{
    containerd,
    node::{Node, NodeOpts},
};

use crate::{podtrace_bin, root, sh, step, upstream, workload_dir};

/// `cargo xtask demo`: the real kubelet (default, then tuned) unless
/// `workload`, the kubelet-shaped test program.
pub fn run(pods: u32, workload: bool) -> Result<()> {
    let out = root().join("target/demo");
    std::fs::create_dir_all(&out)?;
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
