//! podtrace deployed as Kubernetes deploys it: the OCI image built by
//! `cargo xtask image`, pushed to the node harness's registry, started from
//! `deploy/static-pod.yaml` by the real kubelet (v1.34.4, standalone, on
//! containerd 2.2.9 / runc 1.1.5, cgroup v1) with exactly the privileges
//! written there. podtrace finds that kubelet and containerd by itself
//! (hostPID, /proc/PID/exe) and records while other static pods start; the
//! trace on the hostPath must hold those pods with their stages and CRI
//! calls. Then the same pod with one privilege less must fail, saying why.
//! `deploy/daemonset.yaml` must run the same pod spec.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use podtrace_tests::{
    bpf_object_exists, image_layout, link_ids,
    node::{self, Node, NodeOpts},
    report_json, root, uprobe_links_of, TempDir,
};
use serde::Deserialize as _;
use serde_json::Value;

/// How the manifests name the image and the trace directory; the test
/// replaces both (and fails if they are not there).
const IMAGE_IN_MANIFEST: &str = "image: localhost:5000/podtrace:0.1.0";
const TRACES_IN_MANIFEST: &str = "path: /var/lib/podtrace,";
const NAMESPACE: &str = "kube-system";
const PODS: usize = 3;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Every YAML document of a file, as JSON values.
fn yaml_docs(p: &Path) -> Vec<Value> {
    let text = read(p);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// `s` with `from` replaced by `to`, which must occur exactly once.
fn replace_once(s: &str, from: &str, to: &str) -> String {
    assert_eq!(
        s.matches(from).count(),
        1,
        "deploy/static-pod.yaml must hold {from:?} exactly once (the test edits it)"
    );
    s.replacen(from, to, 1)
}

#[test]
fn daemonset_runs_the_static_pods_spec() {
    let dir = root().join("deploy");
    let pod = yaml_docs(&dir.join("static-pod.yaml")).remove(0);
    let docs = yaml_docs(&dir.join("daemonset.yaml"));
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("daemonset.yaml has a DaemonSet");
    let ns = docs
        .iter()
        .find(|d| d["kind"] == "Namespace")
        .expect("daemonset.yaml has its Namespace");
    assert_eq!(ds["metadata"]["namespace"], ns["metadata"]["name"]);
    let mut spec = ds["spec"]["template"]["spec"].clone();
    // Tolerations are the DaemonSet's own (a static pod is bound to its node).
    assert!(spec
        .as_object_mut()
        .and_then(|o| o.remove("tolerations"))
        .is_some());
    assert_eq!(
        spec, pod["spec"],
        "daemonset.yaml's pod template and static-pod.yaml's spec differ"
    );
    // Kubernetes' default: detaching (one uprobe_multi link per binary)
    // and the footer take well under a second, which the static-pod test
    // measures. It was 120 s while per-site links took 17-23 s to close.
    assert_eq!(grace_period(), 30, "terminationGracePeriodSeconds");
    // What the privileges are, so a change to them is a change to this test.
    let c = &pod["spec"]["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(pod["spec"]["hostPID"], true);
    assert_eq!(pod["spec"].get("hostNetwork"), None);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["SYS_ADMIN", "SYS_PTRACE"])
    );
    let host_paths: Vec<&Value> = pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.get("hostPath"))
        .collect();
    assert_eq!(
        host_paths,
        [&serde_json::json!({"path": "/var/lib/podtrace", "type": "DirectoryOrCreate"})],
        "the trace directory is the only host path"
    );
}

/// deploy/static-pod.yaml's terminationGracePeriodSeconds: how long kubelet
/// gives podtrace after SIGTERM to detach its probes and write the footer.
fn grace_period() -> u64 {
    let pod = yaml_docs(&root().join("deploy/static-pod.yaml")).remove(0);
    pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("static-pod.yaml sets terminationGracePeriodSeconds")
}

/// deploy/static-pod.yaml with the image and trace directory of this test,
/// `edit` applied, host networking (the node harness has no CNI plugin, so
/// pods without it cannot get a sandbox; podtrace needs none) and a UID of
/// its own (each variant's logs apart; kubelet keeps a manifest's UID).
fn manifest(uid: &str, image: &str, traces: &Path, edit: impl Fn(String) -> String) -> String {
    let m = read(&root().join("deploy/static-pod.yaml"));
    let m = replace_once(
        &m,
        "  name: podtrace\n",
        &format!("  name: podtrace\n  uid: {uid}\n"),
    );
    let m = replace_once(&m, IMAGE_IN_MANIFEST, &format!("image: {image}"));
    let m = replace_once(
        &m,
        TRACES_IN_MANIFEST,
        &format!("path: {},", traces.display()),
    );
    let m = replace_once(
        &m,
        "  hostPID: true\n",
        "  hostPID: true\n  hostNetwork: true\n",
    );
    edit(m)
}

/// The host PID of the podtrace process running in the node's pod.
fn podtrace_pid(node: &Node) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        (exe.file_name()? == "podtrace" && cg.contains(&node.cgroup_root)).then_some(pid)
    })
}

/// Waits until the podtrace of pod `uid` wrote `needle` (or exited: its
/// log says why); returns the log.
fn wait_log(node: &Node, full: &str, uid: &str, needle: &str, timeout: Duration) -> String {
    let t = Instant::now();
    loop {
        let log = node.container_log(NAMESPACE, full, uid, "podtrace");
        if log.contains(needle) {
            return log;
        }
        assert!(
            t.elapsed() < timeout,
            "podtrace in {full} did not log {needle:?} within {timeout:?}; its log:\n{log}\nkubelet:\n{}",
            std::fs::read_to_string(&node.kubelet_log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(full))
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The trace's lines, once its footer is written.
fn wait_footer(trace: &Path, timeout: Duration) -> Vec<String> {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(trace).unwrap_or_default();
        if text
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("{\"footer\""))
        {
            return text.lines().map(str::to_string).collect();
        }
        assert!(
            t.elapsed() < timeout,
            "{} has no footer {timeout:?} after the pod was removed",
            trace.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Peak resident memory of a process (VmHWM), MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[test]
fn static_pod_records_the_real_kubelet_and_containerd() {
    let dir = TempDir::new("deploy");
    // Discovery matches the executable's file name ("kubelet"); the harness
    // builds are named kubelet-vX.Y.Z, so run one under its usual name.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("create bin dir");
    let kubelet = bin.join("kubelet");
    let built = node::kubelet("v1.34.4", false);
    if std::fs::hard_link(&built, &kubelet).is_err() {
        std::fs::copy(&built, &kubelet).expect("copy kubelet");
    }
    let node = Node::start(NodeOpts::new(kubelet));
    let image = node.env.push_image(&image_layout());
    let traces = dir.join("traces");
    let full = Node::pod_name("podtrace");

    // One privilege less, each: podtrace must fail and say why.
    // (what, how the manifest changes, what podtrace must say).
    type Case = (&'static str, fn(String) -> String, &'static str);
    let cases: [Case; 2] = [
        (
            "without SYS_PTRACE",
            |m| replace_once(&m, "        - SYS_PTRACE\n", ""),
            // Discovery skips the processes whose /proc/PID/exe it may not
            // read, which without CAP_SYS_PTRACE is all of them.
            "no running kubelet or containerd found",
        ),
        (
            // uprobe_multi links are made with bpf(2) alone, which BPF and
            // PERFMON allow: on this kernel podtrace records without
            // SYS_ADMIN. The per-site links of kernels before 6.10 are
            // perf events, which 6.18 (and kernels with the 2025 fix
            // backported) give SYS_ADMIN only: why the manifest keeps it.
            "with BPF and PERFMON instead of SYS_ADMIN, per-site links",
            |m| {
                let m = replace_once(
                    &m,
                    "        - SYS_ADMIN\n",
                    "        - BPF\n        - PERFMON\n",
                );
                replace_once(
                    &m,
                    "args: [\"record\", ",
                    "args: [\"record\", \"--links\", \"per-site\", ",
                )
            },
            "`perf_event_open` failed: Permission denied",
        ),
    ];
    for (i, (what, edit, expect)) in cases.into_iter().enumerate() {
        let uid = format!("00000000-0000-4000-8000-00000000000{i}");
        let m = manifest(&uid, &image, &traces, edit);
        node.add_manifest("podtrace", &m);
        let log = wait_log(
            &node,
            &full,
            &uid,
            "podtrace: error:",
            Duration::from_secs(90),
        );
        assert!(
            log.contains(expect),
            "podtrace {what}: expected {expect:?} in its log:\n{log}"
        );
        eprintln!(
            "    {what}: {}",
            log.lines()
                .find(|l| l.contains("error:"))
                .unwrap_or("")
                .trim()
        );
        node.remove_pod("podtrace");
    }
    // With BPF and PERFMON instead of SYS_ADMIN and uprobe_multi links
    // (this kernel has them), it records.
    let uid = "00000000-0000-4000-8000-0000000000fe";
    let m = manifest(uid, &image, &traces, |m| {
        replace_once(
            &m,
            "        - SYS_ADMIN\n",
            "        - BPF\n        - PERFMON\n",
        )
    });
    node.add_manifest("podtrace", &m);
    let log = wait_log(
        &node,
        &full,
        uid,
        "podtrace: recording to",
        Duration::from_secs(90),
    );
    assert!(log.contains("uprobe_multi link per binary"), "{log}");
    eprintln!("    with BPF and PERFMON instead of SYS_ADMIN, uprobe_multi links: records");
    node.remove_pod("podtrace");
    let _ = std::fs::remove_dir_all(&traces);

    // deploy/static-pod.yaml as written.
    let uid = "00000000-0000-4000-8000-0000000000ff";
    node.add_manifest("podtrace", &manifest(uid, &image, &traces, |m| m));
    let log = wait_log(
        &node,
        &full,
        uid,
        "podtrace: recording to",
        Duration::from_secs(90),
    );
    let pid = podtrace_pid(&node).expect("the podtrace process of the pod");
    // It runs with what the manifest says, no more: CAP_SYS_PTRACE (19)
    // and CAP_SYS_ADMIN (21) only, under a seccomp filter.
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    for k in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(
            field(k),
            "0000000000280000",
            "podtrace's {k} (SYS_PTRACE|SYS_ADMIN)"
        );
    }
    assert_eq!(
        field("Seccomp:"),
        "2",
        "podtrace runs under RuntimeDefault's seccomp filter"
    );
    let links = link_ids(&uprobe_links_of(pid));
    assert!(
        !links.is_empty(),
        "podtrace in the pod holds no uprobe link:\n{log}"
    );

    let mut pods = Vec::new();
    for i in 0..PODS {
        let full = node.add_pod(&format!("traced-{i:02}"));
        node.wait_running(&full, Duration::from_secs(60));
        pods.push(full);
        std::thread::sleep(Duration::from_millis(500));
    }
    let rss = peak_rss_mib(pid);
    node.remove_pod("podtrace");
    let trace = traces.join(format!("{}.trace", node::NODE_NAME));
    // kubelet allows the grace period (then SIGKILL: no footer).
    let lines = wait_footer(&trace, Duration::from_secs(grace_period() + 15));
    // SIGTERM → footer: the stop is at the header's start plus the
    // footer's duration (the drain loop's clock), the footer was written
    // when the file was last modified.
    let header: Value = serde_json::from_str(&lines[0]).expect("trace header");
    let footer: Value = serde_json::from_str(&lines[lines.len() - 1]).expect("trace footer");
    let stopped_ns = header["header"]["started_unix_ns"]
        .as_i64()
        .expect("started_unix_ns")
        + footer["footer"]["duration_ns"]
            .as_i64()
            .expect("duration_ns");
    let written_ns = std::fs::metadata(&trace)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .expect("trace mtime");
    let sigterm_to_footer = Duration::from_nanos((written_ns - stopped_ns).max(0) as u64);
    eprintln!(
        "deploy: SIGTERM to footer {:.0} ms (grace period {} s)",
        sigterm_to_footer.as_secs_f64() * 1e3,
        grace_period()
    );
    assert!(
        sigterm_to_footer < Duration::from_secs(grace_period()) / 10,
        "SIGTERM to footer took {sigterm_to_footer:?}: not well within the {} s grace period",
        grace_period()
    );
    for id in &links {
        let t = Instant::now();
        while bpf_object_exists("link", *id) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "uprobe link {id} outlived the podtrace pod"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // It found this node's kubelet and containerd by itself.
    let bins = header["header"]["binaries"].as_array().expect("binaries");
    for (name, pid) in [
        ("kubelet", node.kubelet_pid),
        ("containerd", node.env.containerd_pid),
    ] {
        assert!(
            bins.iter().any(|b| b["name"] == name
                && b["pids"]
                    .as_array()
                    .is_some_and(|p| p.contains(&pid.into()))),
            "the trace's header does not name {name} pid {pid}: {bins:#?}"
        );
    }
    assert_eq!(footer["footer"]["stopped_by"], "SIGTERM", "{footer}");
    assert_eq!(footer["footer"]["drops"], 0, "{footer}");

    // Every pod started while it recorded, with its stages and CRI calls.
    let report = report_json(&trace);
    let klog = node.klog();
    for full in &pods {
        node::started_pod(&report, full, &node::pod_uid(&klog, full), "deploy");
    }
    eprintln!(
        "deploy: podtrace pod traced {} pods ({} events, peak RSS {rss:.0} MiB) from {}",
        pods.len(),
        footer["footer"]["events"],
        image
    );
    assert!(
        rss > 0.0 && rss < 1024.0,
        "peak RSS {rss:.0} MiB vs the 1 GiB limit"
    );
    node.remove_all_pods(Duration::from_secs(30));
}
