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

use anyhow::{bail, Result};
use podtrace_tests::{
    containerd,
    node::{Node, NodeOpts},
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
