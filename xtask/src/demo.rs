//! `cargo xtask demo`: record the kubelet-shaped workload (stripped, Go 1.27)
//! with kubelet's default intervals and with the tuned ones from the field
//! notes, print both reports and compare them (compare's first line says
//! what changed, from the same numbers as its table).

use std::process::Command;

use anyhow::Result;

use crate::{podtrace_bin, root, sh, step, workload_dir};

pub fn run(pods: u32) -> Result<()> {
    let out = root().join("target/demo");
    std::fs::create_dir_all(&out)?;
    let kubelet = workload_dir().join("go1.27/kubelet");
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
