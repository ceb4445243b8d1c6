//! End to end: real eBPF uprobes on the stripped kubelet-shaped workload
//! (Go 1.19, Go 1.19 PIE, Go 1.27), checked against the workload's own
//! ground-truth log of every stage.

use std::collections::HashMap;

use podtrace_tests::{
    check_pod_stages, median, record_workload, report_json, Gt, TempDir, TOLERANCE_MS, VARIANTS,
};
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Checks one recording against its ground truth; returns per pod the mount
/// wait (ms) and how many volumes the first poll check found unmounted.
fn check_run(variant: &str, preset: &str, report: &Value, gt: &[Gt]) -> Vec<(f64, u64)> {
    let mut waits = Vec::new();
    for (p, g_sync) in check_pod_stages(&format!("{variant}/{preset}"), report, gt) {
        let uid = p["uid"].as_str().expect("uid");
        // Every poll check seen, with what it returned.
        let mw = &p["mount_wait"];
        let checks = mw["checks"].as_array().expect("checks");
        let gt_checks: Vec<&Gt> = gt
            .iter()
            .filter(|g| g.stage == "poll_check" && g.pod_uid == uid)
            .collect();
        assert_eq!(
            checks.len(),
            gt_checks.len(),
            "{variant}/{preset} pod {uid}: poll checks"
        );
        for (c, g) in checks.iter().zip(&gt_checks) {
            assert_eq!(
                c["unmounted"].as_u64(),
                g.unmounted,
                "unmounted count of a check"
            );
            let at = (g.start_mono_ns as f64 - g_sync.start_mono_ns as f64) / 1e6;
            assert!((f(&c["at_ms"]) - at).abs() <= TOLERANCE_MS, "check time");
        }
        // The volumes' mount time is the reconciler's last MarkVolumeAsMounted.
        let gt_mounted = gt
            .iter()
            .filter(|g| g.stage == "volume_mounted" && g.pod_uid == uid)
            .map(|g| (g.start_mono_ns as f64 - g_sync.start_mono_ns as f64) / 1e6)
            .fold(f64::NAN, f64::max);
        let mounted = f(&mw["volumes_mounted_ms"]);
        assert!(
            (mounted - gt_mounted).abs() <= TOLERANCE_MS,
            "{variant}/{preset} pod {uid}: volumes mounted at {mounted:.3}, ground truth {gt_mounted:.3}"
        );
        let lost = f(&mw["lost_to_polling_ms"]);
        let noticed = f(&mw["noticed_ms"]);
        assert!(
            lost >= 0.0 && (noticed - mounted - lost).abs() < 1e-6,
            "lost = noticed - mounted"
        );
        let first_found = checks
            .first()
            .and_then(|c| c["unmounted"].as_u64())
            .unwrap_or(0);
        waits.push((f(&mw["duration_ms"]), first_found));
    }
    waits
}

fn config_ms(gt: &[Gt], key: &str) -> f64 {
    let cfg = gt
        .iter()
        .find(|g| g.stage == "config")
        .expect("config line");
    cfg.rest
        .get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("config has no {key}: {:?}", cfg.rest))
        / 1e6
}

#[test]
fn default_vs_tuned_match_ground_truth_on_every_go_build() {
    let dir = TempDir::new("kubelet");
    for variant in VARIANTS {
        let mut medians = HashMap::new();
        for preset in ["default", "tuned"] {
            let (trace, gt) = record_workload(
                &dir,
                variant,
                &[
                    "--preset",
                    preset,
                    "--pods",
                    "4",
                    "--rate",
                    "5",
                    "--volumes",
                    "2",
                ],
            );
            let report = report_json(&trace);
            assert_eq!(report["trace"]["drops"], 0, "no events dropped");
            let waits = check_run(variant, preset, &report, &gt);
            // A pod whose first check finds a volume unmounted waits for the
            // next tick: the wait lies in [x, 2x] of the poll interval x, the
            // slowest timer. (Now and then the reconciler is faster than the
            // sync and the first check passes: no wait to speak of.)
            let x = config_ms(&gt, "poll_interval_ns");
            let mut polled = 0;
            for &(w, first_found) in &waits {
                if first_found > 0 {
                    polled += 1;
                    assert!(
                        w >= 0.9 * x && w <= 2.0 * x + 5.0,
                        "{variant}/{preset}: mount wait {w:.1} ms outside [x, 2x] for x = {x} ms"
                    );
                } else {
                    assert!(
                        w < x,
                        "{variant}/{preset}: no volume missing, yet waited {w:.1} ms"
                    );
                }
            }
            assert!(
                polled * 2 >= waits.len(),
                "{variant}/{preset}: most pods should have had to poll: {waits:?}"
            );
            let waits: Vec<f64> = waits.iter().map(|w| w.0).collect();
            // The observed loop periods match the configured ones.
            for (name, key) in [
                ("reconcile", "reconciler_period_ns"),
                ("populate", "populator_period_ns"),
            ] {
                let l = report["loops"]
                    .as_array()
                    .and_then(|a| a.iter().find(|l| l["loop_name"] == name))
                    .unwrap_or_else(|| panic!("{variant}/{preset}: no `{name}` loop in report"));
                let p50 = f(&l["period_p50_ms"]);
                let want = config_ms(&gt, key);
                assert!(
                    (p50 - want).abs() <= 0.2 * want + 1.0,
                    "{variant}/{preset}: {name} period {p50:.2} ms, configured {want} ms"
                );
            }
            medians.insert(preset, median(waits));
        }
        let ratio = medians["default"] / medians["tuned"];
        assert!(
            ratio >= 5.0,
            "{variant}: tuned mount wait should be roughly 10x shorter: default {:.1} ms, tuned {:.1} ms",
            medians["default"],
            medians["tuned"]
        );
        eprintln!(
            "{variant}: mount wait median default {:.1} ms, tuned {:.1} ms ({ratio:.1}x)",
            medians["default"], medians["tuned"]
        );
    }
}
