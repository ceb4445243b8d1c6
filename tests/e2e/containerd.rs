//! End to end against the real Debian containerd (1.6, stripped Go 1.19,
//! cri-api gogo layout): every CRI call of every pod is seen, with the
//! right pod identity and ids, inside the client's own measurement of it.

use std::{collections::HashMap, process::Command};

use podtrace_tests::{
    containerd::{Env, CRI_CALLS, CRI_CLIENT_RT_PRIORITY},
    podtrace, podtrace_bin, report_json, systematic_cri_errors, TempDir,
};
use serde_json::Value;

fn gt_lines(p: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

fn ms(r: &Value, a: &str, b: &str) -> f64 {
    (r[b].as_u64().unwrap_or(0) as f64 - r[a].as_u64().unwrap_or(0) as f64) / 1e6
}

/// `podtrace record --containerd` around one cri-client command.
fn record(
    env: &Env,
    dir: &TempDir,
    name: &str,
    args: &[&str],
) -> (std::path::PathBuf, Vec<Value>, bool) {
    let trace = dir.join(&format!("{name}.trace"));
    let gt = dir.join(&format!("{name}.gt.jsonl"));
    let out = Command::new(podtrace_bin())
        .env("CRI_CLIENT_RT_PRIORITY", CRI_CLIENT_RT_PRIORITY)
        .args(["record", "-q", "--containerd"])
        .arg(&env.containerd_bin)
        .arg("-o")
        .arg(&trace)
        .arg("--")
        .arg(&env.cri_client)
        .args(args)
        .arg("--socket")
        .arg(&env.socket)
        .arg("--ground-truth")
        .arg(&gt)
        .output()
        .expect("podtrace record");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("podtrace: stopped"),
        "podtrace did not finish: {stderr}"
    );
    (trace, gt_lines(&gt), out.status.success())
}

#[test]
fn every_cri_call_of_real_containerd_is_seen() {
    let env = Env::start();
    let dir = TempDir::new("containerd");

    // podtrace probes lists every handler as resolved, with the versions.
    let o = podtrace(&[
        "probes",
        "--containerd",
        env.containerd_bin.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{table}");
    for call in CRI_CALLS {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(call) && l.contains(" ok ")),
            "{call} not resolved:\n{table}"
        );
    }
    assert!(table.contains("go1.19"), "{table}");
    assert!(table.contains("gogo (cri-api <= v0.33)"), "{table}");
    assert!(table.contains("containerd 1.6"), "{table}");

    let (trace, gt, ok) = record(
        &env,
        &dir,
        "pods",
        &[
            "run-pods",
            "--image",
            &env.image,
            "--pods",
            "3",
            "--namespace",
            "podtrace-e2e",
            "--name-prefix",
            "e2e",
            "--stop",
        ],
    );
    assert!(ok, "cri-client run-pods failed");
    assert_eq!(
        gt.len(),
        3 * 8,
        "8 CRI calls per pod in the client's ground truth"
    );
    let report = report_json(&trace);
    let pods: HashMap<String, &Value> = report["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .map(|p| (p["uid"].as_str().unwrap_or("").to_string(), p))
        .collect();
    assert_eq!(pods.len(), 3, "pods in report: {report:#}");
    let mut diffs = Vec::new();
    for g in &gt {
        let uid = g["pod_uid"].as_str().expect("pod_uid");
        let call = g["call"].as_str().expect("call");
        let p = pods.get(uid).unwrap_or_else(|| panic!("pod {uid} missing"));
        assert_eq!(p["name"], g["pod_name"], "pod name");
        assert_eq!(p["namespace"], g["namespace"], "namespace");
        let ours: Vec<&Value> = p["cri"]
            .as_array()
            .expect("cri")
            .iter()
            .filter(|c| c["call"] == call)
            .collect();
        assert_eq!(ours.len(), 1, "pod {uid}: {call} seen {} times", ours.len());
        let c = ours[0];
        // Every id the handler's request or response carries, as the
        // client knows it (the catalogue's captures per call).
        for id in ids_carried(call) {
            let want = g[id]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| panic!("pod {uid} {call}: the client recorded no {id}: {g}"));
            assert_eq!(c[id].as_str(), Some(want), "pod {uid} {call} {id}: {c}");
        }
        assert_eq!(c["error"], false, "{call} of {uid}");
        let d = c["duration_ms"].as_f64().expect("duration");
        // grpc-go's processUnaryRPC encloses the handler (its return can come
        // after the response is on the wire, so it is no bound on the client).
        let rpc = c["rpc_duration_ms"].as_f64().expect("rpc_duration_ms");
        let client = ms(g, "start_mono_ns", "end_mono_ns");
        assert!(
            d <= rpc && d <= client,
            "pod {uid} {call}: handler {d:.3} ms, gRPC {rpc:.3} ms, client {client:.3} ms"
        );
        eprintln!(
            "{call:<18} handler {d:9.3} ms  gRPC {rpc:9.3} ms  client {client:9.3} ms  diff {:.3}",
            client - d
        );
        diffs.push((call, client - d));
    }
    // What the client sees beyond containerd's handler: gRPC, HTTP/2
    // framing, the socket and the client's own encode/decode; and on single
    // calls any wait for a CPU (see systematic_cri_errors).
    let problems = systematic_cri_errors("containerd", &diffs, 1.0);
    assert!(
        problems.is_empty(),
        "{}\nclient − handler per call: {diffs:?}",
        problems.join("\n")
    );
    // The ids carried by the spans are the ones the client got back.
    for p in pods.values() {
        let cri = p["cri"].as_array().unwrap();
        let sb = cri.iter().find(|c| c["call"] == "RunPodSandbox").unwrap()["sandbox_id"].clone();
        let ct =
            cri.iter().find(|c| c["call"] == "CreateContainer").unwrap()["container_id"].clone();
        assert_eq!(sb.as_str().map(str::len), Some(64), "sandbox id");
        assert_eq!(ct.as_str().map(str::len), Some(64), "container id");
        assert_eq!(
            cri.iter().find(|c| c["call"] == "StartContainer").unwrap()["container_id"],
            ct
        );
        assert_eq!(
            cri.iter()
                .find(|c| c["call"] == "RemovePodSandbox")
                .unwrap()["sandbox_id"],
            sb
        );
    }

    // The journal view prints containerd's own messages.
    let o = podtrace(&["report", "--journal", trace.to_str().unwrap()]);
    let j = String::from_utf8_lossy(&o.stdout);
    assert_eq!(j.lines().count(), 2 * 24, "{j}");
    assert!(
        j.contains("msg=\"RunPodSandbox for &PodSandboxMetadata{Name:e2e-"),
        "{j}"
    );
    assert!(j.contains("returns sandbox id \\\""), "{j}");
    assert!(j.contains("returns container id \\\""), "{j}");
    assert!(j.contains("StartContainer for \\\""), "{j}");

    // A failing call is an error span, not a missing one.
    let (trace, gt, ok) = record(
        &env,
        &dir,
        "bad-image",
        &[
            "run-pods",
            "--image",
            &format!("{}/does-not-exist:v0", env.registry),
            "--pods",
            "1",
            "--name-prefix",
            "bad",
            "--stop",
        ],
    );
    assert!(!ok, "pulling a missing image must fail");
    let pull = gt
        .iter()
        .find(|g| g["call"] == "PullImage")
        .expect("PullImage in ground truth");
    assert!(!pull["error"].is_null(), "client saw the error");
    let report = report_json(&trace);
    let p = &report["pods"][0];
    let ours = p["cri"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call"] == "PullImage")
        .expect("failed PullImage span present");
    assert_eq!(ours["error"], true, "{ours}");
    assert!(ours["duration_ms"].as_f64().unwrap() <= ms(pull, "start_mono_ns", "end_mono_ns"));
}

/// The pod ids a CRI handler's request or response carries (what the
/// containerd catalogue captures): RunPodSandbox answers with the sandbox
/// id, CreateContainer takes it and answers with the container id, the
/// others take one of them; PullImage none.
fn ids_carried(call: &str) -> &'static [&'static str] {
    match call {
        "RunPodSandbox" | "StopPodSandbox" | "RemovePodSandbox" => &["sandbox_id"],
        "CreateContainer" => &["sandbox_id", "container_id"],
        "StartContainer" | "StopContainer" | "RemoveContainer" => &["container_id"],
        "PullImage" => &[],
        other => panic!("CRI call {other} not known to this test"),
    }
}
