//! `cargo xtask demo`: record the kubelet-shaped workload (stripped, Go 1.27)
//! with kubelet's default intervals and with the tuned ones from the field
//! notes, print both reports and compare the mount wait.

use std::process::Command;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{podtrace_bin, root, sh, step, workload_dir};

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

pub fn run(pods: u32) -> Result<()> {
    let out = root().join("target/demo");
    std::fs::create_dir_all(&out)?;
    let kubelet = workload_dir().join("go1.27/kubelet");
    let mut reports = Vec::new();
    for preset in ["default", "tuned"] {
        let trace = out.join(format!("{preset}.trace"));
        step(&format!(
            "recording {} pod starts of the kubelet-shaped workload, {preset} intervals",
            pods
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
        step(&format!("podtrace report {}", trace.display()));
        sh(Command::new(podtrace_bin()).arg("report").arg(&trace))?;
        reports.push((preset, report_json(&trace).context("reading the report")?));
    }
    let f = |v: Option<f64>| {
        v.map(|v| format!("{v:8.1} ms"))
            .unwrap_or_else(|| "       -".into())
    };
    println!("\nmount wait (WaitForAttachAndMount), median over pods");
    println!(
        "{:<9} {:>11} {:>11} {:>11} {:>16}",
        "preset", "wait", "interval", "checks", "lost to polling"
    );
    for (preset, r) in &reports {
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
    println!("  *.groundtruth.jsonl            the workload's own log of every stage");
    Ok(())
}
