//! Self-test of the containerd test environment (tests/src/containerd.rs)
//! and of cri-client against a real containerd. Needs root and the Debian
//! packages containerd, runc, docker-registry, skopeo, golang-go.
//!
//!     cargo test -p cri-client --test env -- --nocapture

#[path = "../../src/containerd.rs"]
#[allow(dead_code)]
mod containerd;
#[path = "../../src/util.rs"]
#[allow(dead_code)]
mod util;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Output,
};

use containerd::{Env, Options, CRI_CALLS as CALLS};
use serde_json::Value;

fn read_gt(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad ground-truth line {l:?}: {e}"))
        })
        .collect()
}

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ms(r: &Value) -> f64 {
    (r["end_mono_ns"].as_u64().unwrap() as f64 - r["start_mono_ns"].as_u64().unwrap() as f64) / 1e6
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn start_pod(env: &Env, name: &str, gt: &Path) -> Value {
    let o = env
        .cri("start-pod")
        .args([
            "--image",
            &env.image,
            "--name",
            name,
            "--namespace",
            "selftest",
        ])
        .args([
            "--uid",
            &format!("00000000-0000-4000-8000-{:012}", name.len()),
        ])
        .arg("--ground-truth")
        .arg(gt)
        .output()
        .expect("run cri-client start-pod");
    assert!(o.status.success(), "start-pod failed: {}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("start-pod output: {e}: {}", show(&o)));
    assert_eq!(v["sandbox_id"].as_str().map(str::len), Some(64), "{v}");
    assert_eq!(v["container_id"].as_str().map(str::len), Some(64), "{v}");
    v
}

#[test]
fn cannot_connect_is_a_clear_error() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cri-client"))
        .args(["version", "--socket", "/nonexistent/containerd.sock"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot connect to containerd at /nonexistent/containerd.sock"),
        "{err}"
    );
}

#[test]
fn containerd_env_runs_pods_and_cleans_up() {
    runs_pods_and_cleans_up(Options::from_env);
}

/// The same with containerd 2.2.9 (`cargo xtask setup`, or
/// PODTRACE_CONTAINERD): config version 3, shim sockets named in
/// bootstrap.json.
#[test]
fn containerd_2_env_runs_pods_and_cleans_up() {
    runs_pods_and_cleans_up(Options::v2);
}

fn runs_pods_and_cleans_up(opts: fn() -> Options) {
    assert!(
        is_root(),
        "the containerd environment needs root (it mounts, creates cgroups, runs runc): run as root, e.g. `cargo xtask test`"
    );
    std::env::set_var("CRI_CLIENT_BIN", env!("CARGO_BIN_EXE_cri-client"));

    // --- first environment: pods with --stop, a bad image, one pod left running
    let (dir, ids, pid, registry_pid, sockets) = {
        let env = Env::start_with(opts());
        eprintln!("containerd {}", env.version);
        let gt = env.dir.join("gt.jsonl");
        let o = env
            .cri("run-pods")
            .args([
                "--image",
                &env.image,
                "--pods",
                "3",
                "--rate",
                "0",
                "--namespace",
                "selftest",
            ])
            .arg("--ground-truth")
            .arg(&gt)
            .arg("--stop")
            .output()
            .unwrap();
        assert!(o.status.success(), "run-pods failed: {}", show(&o));
        let recs = read_gt(&gt);
        assert_eq!(recs.len(), 3 * 8, "{recs:#?}");
        let mut by_pod: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for r in &recs {
            assert!(r["error"].is_null(), "call failed: {r}");
            assert!(
                r["end_mono_ns"].as_u64() >= r["start_mono_ns"].as_u64(),
                "{r}"
            );
            assert_eq!(r["namespace"], "selftest");
            assert_eq!(r["sandbox_id"].as_str().map(str::len), Some(64), "{r}");
            by_pod
                .entry(r["pod_uid"].as_str().unwrap().to_string())
                .or_default()
                .push(r);
        }
        assert_eq!(by_pod.len(), 3);
        for (uid, rs) in &by_pod {
            let calls: Vec<&str> = rs.iter().map(|r| r["call"].as_str().unwrap()).collect();
            assert_eq!(calls, CALLS, "pod {uid}");
            for w in rs.windows(2) {
                assert!(
                    w[0]["end_mono_ns"].as_u64() <= w[1]["start_mono_ns"].as_u64(),
                    "{} then {}",
                    w[0],
                    w[1]
                );
            }
            // Created container ID carried on every record after CreateContainer.
            assert!(rs[2..]
                .iter()
                .all(|r| r["container_id"].as_str().map(str::len) == Some(64)));
        }
        let mut line = String::from("client-side CRI call durations, median of 3 pods (ms):");
        for c in CALLS {
            let mut v: Vec<f64> = recs.iter().filter(|r| r["call"] == c).map(ms).collect();
            v.sort_by(f64::total_cmp);
            line.push_str(&format!(" {c} {:.1}", v[v.len() / 2]));
        }
        eprintln!("{line}");

        // A PullImage of an image the registry does not have: recorded with
        // its error, the sandbox still torn down, a clear non-zero exit.
        let bad_gt = env.dir.join("gt-bad.jsonl");
        let bad_image = format!("{}/podtrace/does-not-exist:1", env.registry);
        let o = env
            .cri("run-pods")
            .args([
                "--image",
                &bad_image,
                "--pods",
                "1",
                "--namespace",
                "selftest",
                "--name-prefix",
                "bad",
            ])
            .arg("--ground-truth")
            .arg(&bad_gt)
            .arg("--stop")
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "run-pods with a bad image succeeded: {}",
            show(&o)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("PullImage") && err.contains("1 of 1 pods failed"),
            "{err}"
        );
        let recs = read_gt(&bad_gt);
        let calls: Vec<&str> = recs.iter().map(|r| r["call"].as_str().unwrap()).collect();
        assert_eq!(
            calls,
            [
                "RunPodSandbox",
                "PullImage",
                "StopPodSandbox",
                "RemovePodSandbox"
            ],
            "{recs:#?}"
        );
        assert!(
            recs[0]["error"].is_null() && recs[2]["error"].is_null() && recs[3]["error"].is_null()
        );
        let pull_err = recs[1]["error"].as_str().expect("PullImage error recorded");
        assert!(
            pull_err.contains("not found") || pull_err.contains("NotFound"),
            "{pull_err}"
        );
        eprintln!("bad image PullImage error: {pull_err}");

        // start-pod, then stop-pod: four teardown calls recorded.
        let sgt = env.dir.join("gt-start-stop.jsonl");
        let v = start_pod(&env, "start-stop", &sgt);
        let o = env
            .cri("stop-pod")
            .args(["--sandbox-id", v["sandbox_id"].as_str().unwrap()])
            .arg("--ground-truth")
            .arg(&sgt)
            .output()
            .unwrap();
        assert!(o.status.success(), "stop-pod failed: {}", show(&o));
        let recs = read_gt(&sgt);
        let calls: Vec<&str> = recs.iter().map(|r| r["call"].as_str().unwrap()).collect();
        assert_eq!(calls, CALLS, "{recs:#?}");
        assert!(
            recs.iter()
                .all(|r| r["error"].is_null() && r["pod_name"] == "start-stop"),
            "{recs:#?}"
        );

        // A pod left running: Drop must stop and remove it.
        let v = start_pod(&env, "left-running", &env.dir.join("gt-start.jsonl"));
        let ids = env.known_ids();
        assert!(
            ids.contains(v["sandbox_id"].as_str().unwrap()),
            "known_ids misses the sandbox"
        );
        assert!(
            ids.contains(v["container_id"].as_str().unwrap()),
            "known_ids misses the container"
        );
        // The shim that runs is the one asked for (containerd takes the
        // first on its PATH).
        let exes = env.shim_exes();
        let want = std::fs::canonicalize(&env.shim).expect("shim path");
        assert!(
            !exes.is_empty() && exes.iter().all(|e| *e == want),
            "running shims {exes:?}, asked for {}",
            want.display()
        );
        // The running pod's shim socket, found from its bundle.
        let sockets = env.shim_sockets();
        assert!(
            !sockets.is_empty() && sockets.iter().all(|s| s.exists()),
            "shim sockets of the running pod: {sockets:?}"
        );
        (
            env.dir.clone(),
            ids,
            env.containerd_pid,
            env.registry_pid,
            sockets,
        )
    };
    assert!(
        sockets.iter().all(|s| !s.exists()),
        "shim sockets left behind: {sockets:?}"
    );
    assert!(!alive(pid), "containerd {pid} still running after drop");
    assert!(
        !alive(registry_pid),
        "registry {registry_pid} still running after drop"
    );
    let left = Env::leftovers_of(&dir, &ids);
    assert!(
        left.is_empty(),
        "left behind by the first environment: {left:#?}"
    );

    // --- second environment after the first: containerd crashes with a pod
    // running; Drop must still kill shims and containers, unmount, rmdir cgroups.
    let (dir, ids, containers, sockets) = {
        let env = Env::start_with(opts());
        assert_ne!(env.dir, dir);
        let v = start_pod(&env, "orphaned", &env.dir.join("gt.jsonl"));
        let ids = env.known_ids();
        let containers: BTreeSet<String> = [&v["sandbox_id"], &v["container_id"]]
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        let sockets = env.shim_sockets();
        assert!(!sockets.is_empty(), "no shim socket for the running pod");
        // SAFETY: plain kill(2) of the containerd we started.
        unsafe { libc::kill(env.containerd_pid as i32, libc::SIGKILL) };
        std::thread::sleep(std::time::Duration::from_millis(200));
        (env.dir.clone(), ids, containers, sockets)
    };
    assert!(containers.is_subset(&ids));
    assert!(
        sockets.iter().all(|s| !s.exists()),
        "shim sockets left behind after a containerd crash: {sockets:?}"
    );
    let left = Env::leftovers_of(&dir, &ids);
    assert!(
        left.is_empty(),
        "left behind after a containerd crash: {left:#?}"
    );
}
