//! The short check of a real kubelet on a real containerd that
//! tests/e2e/real_kubelet.rs and `cargo xtask matrix` run: static pods
//! started one at a time under `podtrace record`, each pod held against
//! kubelet's own account of it.
//!
//! Ground truth is kubelet's own account of the same pods:
//! - its klog lines at -v=4: "Waiting for volumes to attach and mount for
//!   pod" / "All volumes are attached and mounted for pod" (logged inside
//!   WaitForAttachAndMount, right after entry and right before return),
//!   "MountVolume.SetUp succeeded" (the reconciler, just before
//!   MarkVolumeAsMounted), "SyncPod enter" (the pod UID);
//! - its OpenTelemetry spans: `syncPod` (started and ended inside SyncPod)
//!   and the CRI client's gRPC spans (around each call to containerd).
//!
//! Clocks: klog and OTel stamp CLOCK_REALTIME (Go's time.Now, µs in klog);
//! podtrace stamps CLOCK_MONOTONIC in eBPF and its trace stores
//! REALTIME − MONOTONIC read when recording began (bracketed reads, < 1 µs
//! apart), which the report applies. Both sides therefore use the same
//! clock; the only error is a clock step or slew during the test.

use std::time::Duration;

use crate::{
    bpf_object_exists, entry_captures,
    node::{self, stage, Agreement, Node, NodeOpts},
    otlp, podtrace_bin, report_json, TempDir,
};

/// Pods per run: each waits for its container, then a gap, so the populator
/// and reconciler ticks fall at different phases of each pod's wait.
pub const PODS: usize = 4;
pub const GAP: Duration = Duration::from_millis(1200);
/// podtrace vs kubelet's own log lines and spans.
pub const TOLERANCE_MS: f64 = 1.0;
/// The latest a pod's on-demand relist may run after its sync returned
/// (PLEG serves the request at once unless it is relisting everything).
pub const ON_DEMAND_MAX_MS: f64 = 100.0;

pub fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// A pod's mount wait when its volumes were not mounted at the first check.
#[derive(Debug)]
pub struct Wait {
    pub ms: f64,
    pub checks: usize,
}

/// Which kubelet a [`run`] starts and what it was built with.
pub struct Check {
    /// Heads every panic and the summary (`kubelet v1.36.3 tuned`).
    pub label: String,
    pub kubelet: std::path::PathBuf,
    /// Its minor version (1.36 → 36): what the checks expect of it.
    pub minor: u32,
    pub tuned: bool,
    /// The mount wait's poll interval it was built with.
    pub interval_ms: f64,
    pub pods: usize,
    /// `record --catalogue FILE`: a kubelet catalogue that has never seen
    /// this version (`cargo xtask matrix`'s unseen row); None: built-in.
    pub catalogue: Option<std::path::PathBuf>,
    /// Probes that catalogue must leave out (`relist_pod`): not attached,
    /// and said so; every other stage is checked as usual.
    pub not_attached: Vec<String>,
}

impl Check {
    /// A kubelet `cargo xtask setup` built: `Check::built("v1.36.3", false, 300.0, PODS)`.
    pub fn built(version: &str, tuned: bool, interval_ms: f64, pods: usize) -> Check {
        Check {
            label: format!("kubelet {version}{}", if tuned { " tuned" } else { "" }),
            kubelet: node::kubelet(version, tuned),
            minor: minor_of(version),
            tuned,
            interval_ms,
            pods,
            catalogue: None,
            not_attached: Vec::new(),
        }
    }

    fn attached(&self, probe: &str) -> bool {
        !self.not_attached.iter().any(|p| p == probe)
    }
}

/// `v1.36.3` → 36 (0 if it is not a version).
pub fn minor_of(version: &str) -> u32 {
    version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// What a run measured, for the matrix's table.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    pub pods: usize,
    /// Worst |podtrace − kubelet's V(3) line| of the mount waits' starts
    /// and ends, µs.
    pub mount_wait_worst_us: f64,
    /// All comparisons with kubelet's log and spans.
    pub agreement: String,
    pub cri_calls_inside: usize,
    /// Poll checks' observed interval (median over pods that polled twice
    /// or more), ms, and the interval read from the poll helper.
    pub poll_observed_ms: Vec<f64>,
    pub poll_configured_ms: f64,
    /// (loop, period p50 ms, ticks).
    pub loops: Vec<(String, f64, u64)>,
    pub waits_ms: Vec<f64>,
    pub on_demand_relists: usize,
    /// Probes the catalogue left out (a version it never saw).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_attached: Vec<String>,
}

/// One recorded run: the pods that waited, and the trace (kept until the
/// run is dropped).
pub struct Run {
    pub waits: Vec<Wait>,
    pub trace: std::path::PathBuf,
    pub summary: Summary,
    /// kubelet's CPU while recording, read from /proc by the harness.
    pub kubelet_cpu: Option<node::CpuWindow>,
    _dir: TempDir,
}

/// Runs `c.pods` static pods on a kubelet under podtrace and checks every
/// pod against kubelet's log and spans.
pub fn run(c: &Check) -> Run {
    let (label, tuned, interval_ms, pods) = (c.label.clone(), c.tuned, c.interval_ms, c.pods);
    let dir = TempDir::new("real-kubelet");
    let node = Node::start(NodeOpts::new(c.kubelet.clone()));
    let names: Vec<String> = (0..pods).map(|i| format!("e2e-{i:02}")).collect();
    let catalogue = c.catalogue.as_ref().map(|p| p.display().to_string());
    let args: Vec<&str> = catalogue
        .iter()
        .flat_map(|p| ["--catalogue", p.as_str()])
        .collect();
    let rec = node.record_pods_with(&podtrace_bin(), &dir.join("real.trace"), &names, GAP, &args);

    // Detached: no uprobe link left, and kubelet still starts pods.
    assert!(
        !rec.links.is_empty(),
        "{label}: podtrace held no uprobe links while recording"
    );
    for id in &rec.links {
        assert!(
            !bpf_object_exists("link", *id),
            "{label}: uprobe link {id} still exists after podtrace exited"
        );
    }
    let after = node.add_pod("after-detach");
    node.wait_running(&after, Duration::from_secs(60));
    assert!(
        node.kubelet_alive(),
        "{label}: kubelet died after podtrace detached"
    );

    let report = report_json(&rec.trace);
    if c.catalogue.is_some() {
        unseen_said(c, &rec.podtrace_log, &report);
    }
    let log = node.klog();
    let uids: Vec<String> = rec.pods.iter().map(|f| node::pod_uid(&log, f)).collect();
    // kubelet exports spans in batches (every 5 s by default).
    let sink: &otlp::Sink = &node.sink;
    let spans = wait_spans(sink, &uids);

    let mut agree = Agreement::new(TOLERANCE_MS);
    let mut mount_agree = Agreement::new(TOLERANCE_MS);
    let mut summary = Summary {
        pods,
        ..Summary::default()
    };
    let mut cri_inside = 0;
    let mut mount_vs_setup_us = Vec::new();
    let mut waits = Vec::new();
    let mut relists_after_ms = Vec::new();
    for (full, uid) in rec.pods.iter().zip(&uids) {
        let pod = node::started_pod(&report, full, uid, &label);
        assert_eq!(pod["namespace"], "default", "{label}: {full}'s namespace");

        // The mount wait against kubelet's two V(3) lines.
        let mw = stage(pod, "mount_wait");
        let waiting = node::first_klog(
            &log,
            "Waiting for volumes to attach and mount for pod",
            full,
        );
        let mounted = node::first_klog(&log, "All volumes are attached and mounted for pod", full);
        for a in [&mut agree, &mut mount_agree] {
            a.add(
                &format!("{label} {full} mount wait start"),
                mw.start_unix_ns,
                waiting.unix_ns,
            );
            a.add(
                &format!("{label} {full} mount wait end"),
                mw.end_unix_ns,
                mounted.unix_ns,
            );
        }

        // The sync against kubelet's own syncPod span.
        let sync = stage(pod, "sync");
        let sync_ms = ms(sync.end_unix_ns - sync.start_unix_ns);
        let span = spans
            .iter()
            .find(|s| s.name == "syncPod" && s.attr("k8s.pod.uid") == Some(uid.as_str()))
            .expect("syncPod span (waited for above)");
        agree.add(
            &format!("{label} {full} sync start"),
            sync.start_unix_ns,
            span.start_unix_nano as i64,
        );
        agree.add(
            &format!("{label} {full} sync end"),
            sync.end_unix_ns,
            span.end_unix_nano as i64,
        );

        // Each CRI call containerd handled inside kubelet's client span.
        let base = pod["start_unix_ns"].as_i64().expect("start_unix_ns");
        let cri = pod["cri"].as_array().expect("cri");
        for c in cri {
            let call = c["call"].as_str().expect("call");
            let start = base + (c["start_ms"].as_f64().expect("start_ms") * 1e6) as i64;
            let end = start + (c["duration_ms"].as_f64().expect("CRI call ended") * 1e6) as i64;
            let client = spans
                .iter()
                .filter(|s| {
                    s.trace_id == span.trace_id
                        && s.kind == "client"
                        && s.name.ends_with(&format!("/{call}"))
                })
                .find(|s| s.start_unix_nano as i64 <= start && end <= s.end_unix_nano as i64)
                .unwrap_or_else(|| {
                    panic!(
                        "{label}: {full}'s {call} ({start}..{end}) is inside none of kubelet's client spans for it: {:#?}",
                        spans
                            .iter()
                            .filter(|s| s.name.ends_with(&format!("/{call}")))
                            .map(|s| (s.start_unix_nano, s.end_unix_nano, &s.trace_id))
                            .collect::<Vec<_>>()
                    )
                });
            assert!(client.duration_ms() >= (end - start) as f64 / 1e6);
            cri_inside += 1;
        }

        // Polling: the configured interval, checks at that period, and when
        // the volumes were marked mounted vs the reconciler's log lines.
        let w = &pod["mount_wait"];
        let configured = w["configured_interval_ms"]
            .as_f64()
            .expect("poll interval read");
        summary.poll_configured_ms = configured;
        assert!(
            (configured - interval_ms).abs() < 0.001,
            "{label}: {full} poll interval {configured} ms, built with {interval_ms} ms"
        );
        let checks = w["checks"].as_array().expect("checks");
        assert!(
            !checks.is_empty(),
            "{label}: {full}: no poll check seen: {w:#}"
        );
        assert_eq!(
            checks.last().and_then(|c| c["mounted"].as_bool()),
            Some(true),
            "{label}: {full}: the last check must find every volume mounted: {w:#}"
        );
        assert!(
            checks[..checks.len() - 1]
                .iter()
                .all(|c| c["mounted"] == false),
            "{label}: {full}: only the last check may find the volumes mounted: {w:#}"
        );
        if checks.len() >= 2 {
            let observed = w["observed_interval_ms"]
                .as_f64()
                .expect("observed interval");
            summary.poll_observed_ms.push(observed);
            assert!(
                (observed - interval_ms).abs() <= 0.1 * interval_ms,
                "{label}: {full}: checks {observed:.2} ms apart, configured {interval_ms} ms"
            );
        }
        let vols = w["volumes"].as_array().expect("volumes");
        for name in ["host", "scratch"] {
            let v = vols
                .iter()
                .find(|v| {
                    v["volume"]
                        .as_str()
                        .is_some_and(|s| s.ends_with(&format!("-{name}")))
                })
                .unwrap_or_else(|| {
                    panic!("{label}: {full}: volume {name} not seen mounted: {w:#}")
                });
            let at = base + (v["at_ms"].as_f64().expect("at_ms") * 1e6) as i64;
            let setup = log
                .iter()
                .find(|l| {
                    l.msg.starts_with(&format!(
                        "MountVolume.SetUp succeeded for volume \"{name}\""
                    )) && l.field("pod").as_deref() == Some(format!("default/{full}").as_str())
                })
                .unwrap_or_else(|| {
                    panic!("{label}: kubelet never logged SetUp of {name} for {full}")
                });
            let d = ms(at - setup.unix_ns);
            assert!(
                (-0.05..=TOLERANCE_MS).contains(&d),
                "{label}: {full}: {name} marked mounted {d:.3} ms after kubelet logged SetUp succeeded"
            );
            mount_vs_setup_us.push(d * 1000.0);
        }
        if checks[0]["mounted"] == false {
            waits.push(Wait {
                ms: w["duration_ms"].as_f64().expect("mount wait"),
                checks: checks.len(),
            });
        }

        // 1.36+: SyncPod's postSync asks PLEG to relist the pod; the relist
        // runs on PLEG's goroutine after the sync returned and is reported
        // with the pod, not as a tick of the periodic relist.
        let on_demand = pod["on_demand"].as_array().expect("on_demand");
        if c.catalogue.is_some() {
            // The volume setups (one per volume, its own probe) by shape.
            let setups = pod["volumes"].as_array().expect("volumes");
            for name in ["host", "scratch"] {
                assert!(
                    setups
                        .iter()
                        .any(|v| v["name"] == name && v["duration_ms"].as_f64().is_some()),
                    "{label}: {full}: no volume setup of {name}: {setups:#?}"
                );
            }
        }
        if c.minor >= 36 && c.attached("relist_pod") {
            let r = on_demand
                .iter()
                .find(|d| d["call"] == "relist_pod")
                .unwrap_or_else(|| panic!("{label}: {full}: no on-demand relist: {pod:#}"));
            let after = r["after_sync_ms"].as_f64().expect("after_sync_ms");
            let at = r["start_ms"].as_f64().expect("start_ms");
            assert!(
                at >= sync_ms && (0.0..=ON_DEMAND_MAX_MS).contains(&after),
                "{label}: {full}: on-demand relist at {at:.3} ms, {after:.3} ms after a sync ended; the sync ran 0..{sync_ms:.3} ms"
            );
            relists_after_ms.push(after);
            summary.on_demand_relists += 1;
        } else {
            assert!(
                on_demand.is_empty(),
                "{label}: {full}: no on-demand relist before 1.36: {on_demand:#?}"
            );
        }
    }

    // The raw trace: every kuberuntime stage read its own pod argument, and
    // names one of the pods started (and each pod is named by each stage).
    let full_of = |uid: &str| {
        rec.pods
            .iter()
            .zip(&uids)
            .find(|(_, u)| u.as_str() == uid)
            .map(|(f, _)| f.as_str())
    };
    for probe in [
        "sync",
        "mount_wait",
        "runtime_sync",
        "create_sandbox",
        "start_container",
    ] {
        let hits = entry_captures(&rec.trace, probe);
        let mut seen = std::collections::BTreeSet::new();
        for h in &hits {
            let uid = h["pod_uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{label}: {probe} read no pod UID: {h:?}"));
            let full = full_of(uid).unwrap_or_else(|| {
                panic!("{label}: {probe} read UID {uid}, no pod started: {h:?}")
            });
            assert_eq!(h["pod_name"], full, "{label}: {probe} of {uid}: pod name");
            assert_eq!(
                h["pod_namespace"], "default",
                "{label}: {probe} of {uid}: namespace"
            );
            if probe == "start_container" {
                assert_eq!(
                    h["container_name"], "app",
                    "{label}: {probe} of {uid}: container"
                );
            }
            seen.insert(uid.to_string());
        }
        assert_eq!(
            seen.len(),
            uids.len(),
            "{label}: {probe} named {seen:?}, pods started {uids:?}"
        );
    }

    // Loop periods: the ticks of each loop's own goroutine, as built.
    let (rec_ms, pleg_ms) = if tuned {
        (10.0, 100.0)
    } else {
        (100.0, 1000.0)
    };
    let loops = report["loops"].as_array().expect("loops");
    let mut periods = Vec::new();
    for (name, want) in [
        ("reconcile", rec_ms),
        ("populate", rec_ms),
        ("relist", pleg_ms),
    ] {
        let l = loops
            .iter()
            .find(|l| l["loop_name"] == name)
            .unwrap_or_else(|| panic!("{label}: no {name} loop: {loops:#?}"));
        let p50 = l["period_p50_ms"].as_f64().expect("period");
        assert!(
            (p50 - want).abs() <= 0.05 * want + 1.0,
            "{label}: {name} period {p50:.3} ms, built with {want} ms: {l}"
        );
        assert_eq!(
            l["on_demand"], 0,
            "{label}: {name}: no call outside the loop: {l}"
        );
        periods.push(format!("{name} {p50:.2} ms ({} ticks)", l["ticks"]));
        summary
            .loops
            .push((name.to_string(), p50, l["ticks"].as_u64().unwrap_or(0)));
    }
    assert!(
        !loops.iter().any(|l| l["loop_name"] == "relist_pod"),
        "{label}: the on-demand relist is not a loop"
    );
    mount_vs_setup_us.sort_by(f64::total_cmp);
    eprintln!(
        "{label}: podtrace vs kubelet's log lines and spans: {}; {cri_inside} CRI calls inside kubelet's client spans; \
         volume marked mounted after SetUp log: median {:.0} µs, worst {:.0} µs; waits {:.1?} ms; \
         on-demand relists after the sync {relists_after_ms:.3?} ms; loop periods {}",
        agree.summary(),
        mount_vs_setup_us[mount_vs_setup_us.len() / 2],
        mount_vs_setup_us[mount_vs_setup_us.len() - 1],
        waits.iter().map(|w| w.ms).collect::<Vec<_>>(),
        periods.join(", "),
    );
    node.remove_all_pods(Duration::from_secs(30));
    summary.not_attached = c.not_attached.clone();
    summary.mount_wait_worst_us = mount_agree.quantiles().2;
    summary.agreement = agree.summary();
    summary.cri_calls_inside = cri_inside;
    summary.waits_ms = waits.iter().map(|w| w.ms).collect();
    Run {
        waits,
        trace: rec.trace.clone(),
        summary,
        kubelet_cpu: rec.kubelet_cpu,
        _dir: dir,
    }
}

/// With a catalogue that never saw this kubelet: `record` said so on
/// stderr, the report says so, and the probes left out are not in the
/// trace while every other kubelet probe is and was called.
fn unseen_said(c: &Check, podtrace_log: &std::path::Path, report: &serde_json::Value) {
    let label = &c.label;
    let stderr = std::fs::read_to_string(podtrace_log).expect("podtrace log");
    let names = c.not_attached.join(", ");
    for want in [
        "probes are matched by known shapes only, never by version ranges".to_string(),
        format!("not attached ({names})"),
    ] {
        assert!(
            stderr.contains(&want),
            "{label}: record did not say `{want}`:\n{stderr}"
        );
    }
    let warnings = report["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("is newer than the newest tested")
                && w.ends_with(&format!("not attached ({names})")))),
        "{label}: the report does not say the kubelet is unseen: {warnings:#?}"
    );
    let probes = report["probes"].as_array().expect("probes");
    let kubelet: Vec<&serde_json::Value> =
        probes.iter().filter(|p| p["binary"] == "kubelet").collect();
    for p in &kubelet {
        let name = p["probe"].as_str().unwrap_or_default();
        assert!(c.attached(name), "{label}: {name} attached: {p}");
        assert!(
            p["spans"].as_u64().unwrap_or(0) > 0,
            "{label}: {name} attached by shape, never called: {p}"
        );
    }
    for stage in [
        "sync",
        "mount_wait",
        "volume_setup",
        "runtime_sync",
        "create_sandbox",
        "start_container",
    ] {
        assert!(
            kubelet.iter().any(|p| p["probe"] == stage),
            "{label}: {stage} not attached: {kubelet:#?}"
        );
    }
}

/// Waits until kubelet's syncPod span of every pod arrived.
pub fn wait_spans(sink: &otlp::Sink, uids: &[String]) -> Vec<otlp::Span> {
    let t = std::time::Instant::now();
    loop {
        let spans = sink.spans();
        let all = uids.iter().all(|u| {
            spans
                .iter()
                .any(|s| s.name == "syncPod" && s.attr("k8s.pod.uid") == Some(u.as_str()))
        });
        if all {
            return spans;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "kubelet's syncPod spans for {uids:?} did not all arrive in 30 s; got {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
