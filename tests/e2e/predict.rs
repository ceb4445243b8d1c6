//! The what-if prediction against a real measured run: record the
//! kubelet-shaped workload with kubelet's default intervals and with the
//! tuned ones, predict the tuned run from the default one, and hold the
//! predicted median mount wait and sync to within 10 % of the measured.
//!
//! To validate another pair (say a real kubelet, default and tuned):
//!
//!   PODTRACE_PREDICT_BASELINE=default.trace PODTRACE_PREDICT_MEASURED=tuned.trace \
//!     cargo test --release -p podtrace-tests --test e2e_predict
//!
//! (then nothing is recorded and no root is needed).

use std::{path::PathBuf, process::Command};

use podtrace_tests::{podtrace_bin, record_workload, TempDir};
use serde_json::Value;

/// Pods per run: what the demo records (docs/compare.md says why).
const PODS: &str = "30";
const TOLERANCE: f64 = 0.10;

fn json(args: &[&str], traces: &[&PathBuf]) -> Value {
    let out = Command::new(podtrace_bin())
        .args(args)
        .args(traces.iter().map(|p| p.as_os_str()))
        .args(["--format", "json"])
        .output()
        .expect("running podtrace");
    assert!(
        out.status.success(),
        "podtrace {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

#[test]
fn predicted_tuned_run_within_ten_percent_of_the_measured_one() {
    let dir = TempDir::new("predict");
    let (base, measured) = match (
        std::env::var_os("PODTRACE_PREDICT_BASELINE"),
        std::env::var_os("PODTRACE_PREDICT_MEASURED"),
    ) {
        (Some(b), Some(m)) => (PathBuf::from(b), PathBuf::from(m)),
        _ => {
            let mut t = Vec::new();
            for preset in ["default", "tuned"] {
                let (trace, _) = record_workload(
                    &dir,
                    "go1.27",
                    &["--preset", preset, "--pods", PODS, "--rate", "2"],
                );
                let named = dir.join(&format!("{preset}.trace"));
                std::fs::rename(&trace, &named).expect("rename");
                t.push(named);
            }
            (t[0].clone(), t[1].clone())
        }
    };
    let cmp = json(&["compare"], &[&base, &measured]);
    let stages = cmp["stages"].as_array().expect("stages");
    let row = |name: &str| {
        stages
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap_or_else(|| panic!("no {name} row"))
    };
    let mut table = String::new();
    for name in ["mount_wait", "sync", "lost_to_polling"] {
        let r = row(name);
        let m = f(&r["runs"][1]["p50"]);
        let p = f(&r["predicted"][1]["p50"]);
        let (lo, hi) = (f(&r["predicted"][1]["low"]), f(&r["predicted"][1]["high"]));
        table += &format!(
            "{name:<16} measured {m:9.3}  predicted {p:9.3} [{lo:.3}, {hi:.3}]  {:+.1}%\n",
            (p - m) / m * 100.0
        );
        // The change itself is called, in the right direction.
        assert_eq!(
            r["diffs"][1]["verdict"], "faster",
            "{name}: {}",
            r["diffs"][1]
        );
        if name != "lost_to_polling" {
            assert!(
                (p - m).abs() <= TOLERANCE * m,
                "{name}: predicted p50 {p:.3} ms, measured {m:.3} ms (more than 10% apart)\n{table}"
            );
        }
    }
    eprintln!("{table}");
    // Whatever is called clears the minimal effect.
    for s in stages {
        let d = &s["diffs"][1];
        if d["significant"] == true {
            assert!(f(&d["shift"]).abs() >= f(&d["threshold_ms"]), "{s}");
        }
    }
    // `predict --like` tells the same as compare's column.
    let like = json(&["predict"], &[&base, &PathBuf::from("--like"), &measured]);
    let p = like["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stage"] == "mount_wait"))
        .expect("mount_wait");
    assert_eq!(p["predicted"], row("mount_wait")["predicted"][1]);
}
