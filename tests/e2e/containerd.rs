//! End to end against real containerds: Debian's 1.6 (stripped Go 1.19,
//! cri-api gogo layout) and 2.2.9 (built by `cargo xtask setup`, cri-api
//! v0.34, protobuf-go layout: every request field 8 bytes further): every
//! CRI call of every pod is seen, with the right pod identity and ids,
//! inside the client's own measurement of it. On 2.2.9 also containerd's own
//! OpenTelemetry spans (sent to tests/otlp-sink) hold the handler spans.

use std::{collections::HashMap, process::Command};

use podtrace_tests::{
    containerd::{Env, Options, CONTAINERD_V2_VERSION, CRI_CALLS, CRI_CLIENT_RT_PRIORITY},
    median,
    otlp::{Sink, Span},
    podtrace, podtrace_bin, report_json, systematic_cri_errors, TempDir,
};
use serde_json::Value;

/// What `podtrace probes` must say about a containerd.
struct Expect {
    /// `containerd --version` starts with this.
    version: &'static str,
    /// The catalogue variant's note (the table's `layout` line).
    variant: &'static str,
    layout: &'static str,
    /// In the Go-version line; None: whatever Go built it.
    go: Option<&'static str>,
    /// (module, version prefix) lines from the build info.
    modules: &'static [(&'static str, &'static str)],
}

const DEBIAN_1_6: Expect = Expect {
    version: "1.6.",
    variant: "containerd 1.6: gogo layout",
    layout: "gogo (cri-api <= v0.33)",
    go: Some("go1.19"),
    // Debian builds it without module info.
    modules: &[],
};

const V2_2: Expect = Expect {
    version: CONTAINERD_V2_VERSION,
    variant: "containerd 2.2+: cri-api >= v0.34, protobuf-go layout (+8)",
    layout: "protobuf-go (cri-api >= v0.34)",
    go: None,
    modules: &[
        ("github.com/containerd/containerd/v2", "v2.2."),
        ("k8s.io/cri-api", "v0.34."),
    ],
};

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

/// One CRI call of the main run: the client's numbers and podtrace's.
struct Call {
    call: String,
    pod_uid: String,
    /// cri-client's CLOCK_MONOTONIC stamp at the call's start, ns.
    client_start_ns: u64,
    client_ms: f64,
    /// containerd's handler as podtrace saw it.
    handler_ms: f64,
}

#[test]
fn every_cri_call_of_debian_containerd_1_6_is_seen() {
    let env = Env::start_with(Options::debian());
    every_cri_call_is_seen(&env, &DEBIAN_1_6);
}

/// containerd 2.2.9 (a fresh build, cri-api protobuf-go layout), with its
/// own OTLP tracing on: podtrace's handler span of every call lies inside
/// the gRPC server span containerd itself reports for it.
#[test]
fn every_cri_call_of_containerd_2_2_is_seen_and_inside_its_own_spans() {
    let dir = TempDir::new("containerd2-otlp");
    let mut sink = Sink::start(&dir.0);
    let env = Env::start_with(Options::v2().otlp_endpoint(&sink.endpoint));
    let run = every_cri_call_is_seen(&env, &V2_2);
    check_own_spans(&mut sink, &run);
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The 3-pod run: its calls, and wall-clock ns before and after it.
struct Run {
    calls: Vec<Call>,
    unix_window: (u64, u64),
}

/// The main checks, on whichever containerd `env` runs.
fn every_cri_call_is_seen(env: &Env, expect: &Expect) -> Run {
    assert!(
        env.version.starts_with(expect.version),
        "{} is containerd {}, this test is for {}*",
        env.containerd_bin.display(),
        env.version,
        expect.version
    );
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
    if let Some(go) = expect.go {
        assert!(table.contains(go), "{go}:\n{table}");
    }
    for want in [expect.layout, expect.variant] {
        assert!(table.contains(want), "`{want}` not in:\n{table}");
    }
    for (module, version) in expect.modules {
        assert!(
            table.lines().any(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some(module) && w.next().is_some_and(|v| v.starts_with(version))
            }),
            "{module} {version}* not in:\n{table}"
        );
    }

    let t0 = unix_ns();
    let (trace, gt, ok) = record(
        env,
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
    let unix_window = (t0, unix_ns());
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
    let mut calls = Vec::new();
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
        calls.push(Call {
            call: call.to_string(),
            pod_uid: uid.to_string(),
            client_start_ns: g["start_mono_ns"].as_u64().unwrap_or(0),
            client_ms: client,
            handler_ms: d,
        });
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
        env,
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
    Run { calls, unix_window }
}

/// otelgrpc's name for containerd's server span of a CRI call.
fn grpc_method(call: &str) -> String {
    let service = if call == "PullImage" {
        "ImageService"
    } else {
        "RuntimeService"
    };
    format!("runtime.v1.{service}/{call}")
}

/// containerd's own span of every call (its gRPC server span, sent over
/// OTLP) holds podtrace's handler span: the same calls, in the same order,
/// each handler no longer than containerd's span of it.
fn check_own_spans(sink: &mut Sink, run: &Run) {
    let (t0, t1) = run.unix_window;
    let in_run = |s: &Span| {
        s.service_name.as_deref() == Some("containerd")
            && s.kind == "server"
            && (t0..=t1).contains(&s.start_unix_nano)
            && CRI_CALLS.iter().any(|c| s.name == grpc_method(c))
    };
    // The batch span processor exports every 5 s.
    let spans = sink.wait_for(std::time::Duration::from_secs(20), |s| {
        s.iter().filter(|s| in_run(s)).count() >= run.calls.len()
    });
    let mut theirs: Vec<&Span> = spans.iter().filter(|s| in_run(s)).collect();
    theirs.sort_by_key(|s| s.start_unix_nano);
    let mut ours: Vec<&Call> = run.calls.iter().collect();
    ours.sort_by_key(|c| c.client_start_ns);
    assert_eq!(
        theirs.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        ours.iter()
            .map(|c| grpc_method(&c.call))
            .collect::<Vec<_>>(),
        "containerd's own server spans vs the client's calls, in order"
    );
    let (mut inside, mut worst) = (Vec::new(), 0f64);
    for (c, s) in ours.iter().zip(&theirs) {
        let own = s.duration_ms();
        assert_eq!(s.status_code, "unset", "{} of {}: {s:?}", c.call, c.pod_uid);
        // otelgrpc's span starts before the handler is called and ends
        // after it returned (the response written); 2 µs for the clock reads.
        assert!(
            c.handler_ms <= own + 0.002,
            "{} of pod {}: podtrace's handler span {:.3} ms, containerd's own span {own:.3} ms",
            c.call,
            c.pod_uid,
            c.handler_ms
        );
        inside.push(own - c.handler_ms);
        worst = worst.max(own - c.handler_ms);
        eprintln!(
            "{:<18} handler {:9.3} ms  containerd's span {own:9.3} ms  client {:9.3} ms",
            c.call, c.handler_ms, c.client_ms
        );
    }
    eprintln!(
        "containerd's own spans: all {} calls hold podtrace's handler span; span − handler median {:.0} µs, max {:.0} µs",
        theirs.len(),
        median(inside) * 1e3,
        worst * 1e3
    );
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
