//! `cargo xtask demo`: record a real kubelet (built from the k8s.io/kubernetes
//! module by set-up, standalone with static pods on containerd 2.x) with
//! kubelet's default intervals and rebuilt with the tuned ones from the field
//! notes; print both reports and compare them. `--workload` records the
//! kubelet-shaped test program instead (fast, no containers).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use podtrace_tests::{
    containerd,
    node::{Node, NodeOpts},
};
use serde_json::Value;

use crate::{podtrace_bin, root, sh, step, upstream, workload_dir};

fn report_json(trace: &std::path::Path) -> Result<Value> {
    let out = Command::new(podtrace_bin())
        .args(["report", "--format", "json"])
        .arg(trace)
        .output()?;
    if !out.status.success() {
        bail!(
            "podtrace report failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Median of a mount-wait field over the report's pods.
fn mount_wait_median(r: &Value, field: &str) -> Option<f64> {
    median(
        r["pods"]
            .as_array()?
            .iter()
            .filter_map(|p| p["mount_wait"][field].as_f64())
            .collect(),
    )
}

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
    let mut json = Vec::new();
    for (preset, trace) in &reports {
        step(&format!("podtrace report {}", trace.display()));
        sh(Command::new(podtrace_bin()).arg("report").arg(trace))?;
        json.push((*preset, report_json(trace).context("reading the report")?));
    }
    summary(&out, &json, &versions)
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

fn summary(out: &Path, reports: &[(&str, Value)], versions: &str) -> Result<()> {
    let f = |v: Option<f64>| {
        v.map(|v| format!("{v:8.1} ms"))
            .unwrap_or_else(|| "       -".into())
    };
    println!("\nmount wait (WaitForAttachAndMount), median over pods");
    println!(
        "{:<9} {:>11} {:>11} {:>11} {:>16}",
        "preset", "wait", "interval", "checks", "lost to polling"
    );
    for (preset, r) in reports {
        let checks = median(
            r["pods"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| {
                            p["mount_wait"]["checks"].as_array().map(|c| c.len() as f64)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        );
        println!(
            "{:<9} {} {} {:>11} {}",
            preset,
            f(mount_wait_median(r, "duration_ms")),
            f(mount_wait_median(r, "observed_interval_ms")),
            checks.map(|c| format!("{c:.0}")).unwrap_or_default(),
            f(mount_wait_median(r, "lost_to_polling_ms"))
        );
    }
    if let (Some(d), Some(t)) = (
        mount_wait_median(&reports[0].1, "duration_ms"),
        mount_wait_median(&reports[1].1, "duration_ms"),
    ) {
        println!(
            "\ntuned intervals cut the mount wait {:.1}x ({d:.1} ms -> {t:.1} ms)",
            d / t
        );
    }
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
