//! End to end: `podtrace record` on real processes in the situations a node
//! gives it — an event storm it cannot keep up with, an executable replaced
//! under a running kubelet, a kubelet inside a k3s-like multi-call binary, a
//! binary named by a relative path, captures that fault — and its option
//! checks.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use podtrace_tests::{
    bench_binary, podtrace, podtrace_bin, read_gt, report_json, root, spawn_until, workload,
    CpuLimit, Guard, TempDir,
};
use serde_json::Value;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The trace's footer line.
fn footer(trace: &Path) -> Value {
    let text = std::fs::read_to_string(trace)
        .unwrap_or_else(|e| panic!("reading {}: {e}", trace.display()));
    let last = text.lines().last().expect("trace has lines");
    let v: Value = serde_json::from_str(last).expect("last line is JSON");
    v.get("footer")
        .unwrap_or_else(|| panic!("no footer: the recording did not finish: {last}"))
        .clone()
}

/// Waits for `child` to exit, at most `limit`; the exit status and how long.
fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> (bool, Duration) {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return (st.success(), t.elapsed());
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("podtrace still running {limit:?} after it was asked to stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two processes calling a probed function as fast as they can, and
/// podtrace limited to 5 % of one CPU once it records: it cannot keep up,
/// so the ring buffer never runs empty. (Before draining in batches, the
/// collector looped until the ring was empty and never stopped here.)
fn storm(dir: &TempDir, stop: &str) -> (Value, Duration) {
    let bench = bench_binary(dir);
    let producers: Vec<Guard> = (0..2)
        .map(|_| {
            Guard::new(
                Command::new(&bench)
                    .args(["-n", "4000000000"])
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("start bench"),
            )
        })
        .collect();
    let trace = dir.join(&format!("storm-{stop}.trace"));
    let mut cmd = Command::new(podtrace_bin());
    cmd.args(["record", "--sites", "entry", "--catalogue"])
        .arg(root().join("tests/bench/bench.toml"))
        .arg("-o")
        .arg(&trace);
    for p in &producers {
        cmd.arg("--pid").arg(p.id().to_string());
    }
    if stop == "duration" {
        cmd.args(["--duration", "2s"]);
    }
    let (child, _) = spawn_until(&mut cmd, "recording to", Duration::from_secs(60));
    let limit = CpuLimit::new("storm", 5);
    limit.add(child.id());
    let mut child = child.take();
    let asked = match stop {
        "duration" => Duration::from_secs(2),
        sig => {
            std::thread::sleep(Duration::from_secs(1));
            let s = if sig == "SIGINT" {
                libc::SIGINT
            } else {
                libc::SIGTERM
            };
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, s) };
            Duration::ZERO
        }
    };
    // From the start of recording for --duration, from the signal else.
    let (ok, took) = wait_at_most(&mut child, Duration::from_secs(60));
    assert!(ok, "podtrace under a storm, stopped by {stop}, failed");
    drop(producers);
    let f = footer(&trace);
    let late = took.saturating_sub(asked);
    eprintln!("storm, {stop}: finished {late:?} after the stop; footer {f}");
    (f, late)
}

#[test]
fn an_event_storm_does_not_keep_duration_sigint_or_sigterm_waiting() {
    let dir = TempDir::new("storm");
    for stop in ["duration", "SIGINT", "SIGTERM"] {
        let (f, late) = storm(&dir, stop);
        assert_eq!(f["stopped_by"], stop, "{f}");
        let n = |k: &str| f[k].as_u64().unwrap_or(0);
        assert!(
            n("drops") > 0,
            "a storm fills the ring faster than podtrace empties it: {f}"
        );
        assert!(n("events") > 0, "{f}");
        // What is left after the stop is bounded: detaching the two
        // uprobes, then at most one ring's worth of events at 5 % of a CPU.
        assert!(
            late < Duration::from_secs(15),
            "{stop}: podtrace took {late:?} beyond the stop to finish"
        );
    }
}

#[test]
fn option_values_are_checked_with_clear_errors() {
    for (args, expect) in [
        (&["--ring-mib", "4096"][..], "1 to 1024 MiB"),
        (&["--ring-mib", "0"][..], "1 to 1024 MiB"),
        (&["--ring-mib", "24"][..], "not a power of two"),
        (&["--ring-mib", "lots"][..], "whole number of MiB"),
        (&["--duration", "5 parsecs"][..], "--duration"),
        (&["--duration", "0s"][..], "--duration"),
    ] {
        let o = podtrace(
            &[
                &["record", "-o", "/nonexistent/x.trace"][..],
                args,
                &["--", "true"],
            ]
            .concat(),
        );
        let e = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(e.contains(expect), "{args:?}: expected {expect:?} in {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
    for (args, expect) in [
        (&["--retries", "11"][..], "0..=10"),
        (&["--timeout-secs", "0"][..], "1..=3600"),
    ] {
        let o = podtrace(
            &[
                &["export", "/nonexistent.trace", "--format", "otlp"][..],
                args,
            ]
            .concat(),
        );
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains(expect), "{args:?}: {e}");
    }
}

/// A copy of the workload (stripped Go 1.19) under `name` in `dir`.
fn workload_copy(dir: &TempDir, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(workload("go1.19"), &p).expect("copy workload");
    p
}

/// Records (process discovery: no binary, no pid given) while the process
/// behind `wl` starts two pods, and checks that both are in the trace.
fn discovered_and_recorded(dir: &TempDir, wl: Guard, gt: &Path, expect_found: &str) {
    let trace = dir.join("found.trace");
    let (pt, seen) = spawn_until(
        Command::new(podtrace_bin())
            .args(["record", "-q", "-o"])
            .arg(&trace),
        "recording to",
        Duration::from_secs(60),
    );
    assert!(
        seen.iter().any(|l| l.contains(expect_found)),
        "podtrace should say {expect_found:?}; said:\n{}",
        seen.join("\n")
    );
    assert!(wl.wait_ok(), "workload failed");
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(pt.id() as i32, libc::SIGINT) };
    let out = pt.take().wait_with_output().expect("podtrace");
    assert!(out.status.success(), "podtrace: {}", stderr(&out));
    let gt = read_gt(gt);
    let r = report_json(&trace);
    let uids = podtrace_tests::strs(&r["pods"], "uid");
    let ours: Vec<&str> = gt
        .iter()
        .filter(|g| g.stage == "sync")
        .map(|g| g.pod_uid.as_str())
        .collect();
    assert_eq!(ours.len(), 2, "two pods in the ground truth");
    for uid in ours {
        // Other kubelet-like processes on the machine may be traced too.
        assert!(uids.contains(&uid), "pod {uid} not in the report: {uids:?}");
    }
}

fn start_workload(exe: &Path, pre: &[&str], gt: &Path) -> Guard {
    // The first pod only after podtrace is attached (discovery reads every
    // running Go program, which can take seconds on a loaded machine).
    Guard::new(
        Command::new(exe)
            .args(pre)
            .args(["--preset", "tuned", "--pods", "2", "--start-delay", "6s"])
            .arg("--ground-truth")
            .arg(gt)
            .spawn()
            .expect("start workload"),
    )
}

#[test]
fn a_kubelet_whose_executable_was_replaced_is_found_and_traced() {
    let dir = TempDir::new("deleted");
    let exe = workload_copy(&dir, "kubelet");
    let gt = dir.join("gt.jsonl");
    let wl = start_workload(&exe, &[], &gt);
    std::thread::sleep(Duration::from_millis(200));
    // An in-place upgrade: a new file renamed over the running one.
    let new = workload_copy(&dir, "kubelet.new");
    std::fs::rename(&new, &exe).expect("rename over the running binary");
    let link = std::fs::read_link(format!("/proc/{}/exe", wl.id())).expect("readlink");
    assert!(
        link.to_string_lossy().ends_with(" (deleted)"),
        "the kernel shows {}",
        link.display()
    );
    let found = format!(
        "found {}, deleted or replaced since it started (pid {}) running kubelet",
        exe.display(),
        wl.id()
    );
    discovered_and_recorded(&dir, wl, &gt, &found);
}

#[test]
fn a_kubelet_inside_a_k3s_binary_is_found_by_its_code() {
    let dir = TempDir::new("k3s");
    // Named k3s (no catalogue's process name), run as `k3s agent`: only
    // resolving the catalogue in its executable tells it is a kubelet.
    let exe = workload_copy(&dir, "k3s");
    let gt = dir.join("gt.jsonl");
    let wl = start_workload(&exe, &["agent"], &gt);
    std::thread::sleep(Duration::from_millis(200));
    let found = format!("found {} (pid {}) running kubelet", exe.display(), wl.id());
    discovered_and_recorded(&dir, wl, &gt, &found);
}

#[test]
fn a_binary_named_by_a_relative_path_is_traced() {
    let dir = TempDir::new("relative");
    workload_copy(&dir, "kl");
    let gt = dir.join("gt.jsonl");
    let out = Command::new(podtrace_bin())
        .current_dir(&dir.0)
        .args(["record", "-q", "--kubelet", "kl", "-o", "t.trace", "--"])
        .args(["./kl", "--preset", "tuned", "--pods", "1", "--ground-truth"])
        .arg(&gt)
        .output()
        .expect("podtrace");
    assert!(out.status.success(), "{}", stderr(&out));
    let r = report_json(&dir.join("t.trace"));
    assert_eq!(r["pods"].as_array().map(Vec::len), Some(1), "{r:#}");
}

/// A catalogue for the bench program whose entry captures fault on every
/// call (`bad` dereferences the loop counter) or are cut short (`long`, a
/// string of `i` bytes at the stack pointer).
const DIAG_CATALOGUE: &str = r#"
[binary]
name = "bench"
module = "podtrace.dev/bench"
process_names = ["bench"]

[[probe]]
name = "hot"
role = "stage"
help = "the benchmark's hot function"
[[probe.variant]]
symbol = "main.hot"
when = [{ symbol = "main.hot" }]
entry = [{ name = "bad", kind = "u64", reg = "RAX", path = [0] }, { name = "long", kind = "strregs", reg = "RSP", reg2 = "RAX" }]
exit = [{ name = "result", kind = "u64", reg = "RAX" }]
"#;

#[test]
fn failing_and_truncated_captures_are_counted_and_with_ebpf_log_located() {
    let dir = TempDir::new("diag");
    let bench = bench_binary(&dir);
    let cat = dir.join("diag.toml");
    std::fs::write(&cat, DIAG_CATALOGUE).expect("write catalogue");
    // bench -n 1000: 1000 warm-up calls and 1000 timed ones, i = 0..999
    // each, so 2000 entries of which 2 × 903 have i > 96 (STR_CAP); and a
    // few more when the goroutine's stack grows (morestack re-enters the
    // function at its first instruction, before the probed jump).
    let (calls, truncated) = (2000u64, 2 * (1000 - 97u64));
    for log in [false, true] {
        let trace = dir.join(&format!("diag-{log}.trace"));
        let mut cmd = Command::new(podtrace_bin());
        cmd.args(["record", "-q", "--catalogue"])
            .arg(&cat)
            .arg("-o")
            .arg(&trace);
        if log {
            cmd.arg("--ebpf-log");
        }
        let out = cmd
            .arg("--")
            .arg(&bench)
            .args(["-n", "1000"])
            .output()
            .expect("podtrace");
        let e = stderr(&out);
        assert!(out.status.success(), "{e}");
        let text = std::fs::read_to_string(&trace).expect("trace");
        let entries: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("e").cloned())
            .filter(|e| e["k"] == 1)
            .collect();
        let hits = entries.len() as u64;
        assert!(
            (calls..calls + 10).contains(&hits),
            "{hits} entry events for {calls} calls"
        );
        // The trace: `bad` null in every entry, `long` marked cut (tr bit
        // 1) when the call's i was over 96.
        assert!(entries.iter().all(|e| e["a"][0].is_null()));
        let marked = entries.iter().filter(|e| e["tr"] == 2).count() as u64;
        assert!(
            (truncated..=truncated + hits - calls).contains(&marked),
            "{marked} truncated"
        );
        // The report and the footer count the same.
        let r = report_json(&trace);
        let problems = r["capture_problems"].as_array().expect("capture_problems");
        let by_name = |n: &str| {
            problems
                .iter()
                .find(|p| p["capture"] == n)
                .unwrap_or_else(|| panic!("no problem counted for `{n}`: {problems:?}"))
        };
        assert_eq!(by_name("bad")["failed"], hits, "{problems:?}");
        assert_eq!(by_name("bad")["site"], "entry");
        assert_eq!(by_name("long")["truncated"], marked, "{problems:?}");
        assert_eq!(by_name("long")["failed"], 0);
        let f = footer(&trace);
        assert_eq!(&f["capture_problems"], &r["capture_problems"]);
        assert!(
            e.contains(&format!(
                "bench hot entry capture `bad`: {hits} failed, 0 truncated"
            )),
            "{e}"
        );
        let ebpf: Vec<&str> = e
            .lines()
            .filter(|l| l.starts_with("podtrace: ebpf:"))
            .collect();
        if !log {
            assert!(ebpf.is_empty(), "no eBPF log without --ebpf-log: {ebpf:?}");
            continue;
        }
        let fault = ebpf
            .iter()
            .find(|l| l.contains("capture `bad`"))
            .unwrap_or_else(|| panic!("no eBPF log line for `bad`: {e}"));
        assert!(
            fault.starts_with(
                "podtrace: ebpf: bench hot (main.hot) entry capture `bad` (u64 at RAX+0): read of 8 bytes at 0x"
            ) && fault.contains("failed (step 0 of the path)"),
            "{fault}"
        );
        assert!(
            ebpf.iter().any(|l| l
                .starts_with("podtrace: ebpf: bench hot (main.hot) entry capture `long` (strregs at RSP): string of ")
                && l.contains("bytes cut to 96")),
            "{e}"
        );
    }
}

/// A DaemonSet pod restarted (rollout, OOM kill, crash) runs `record -o`
/// with the same FILE again: the trace already there is moved to FILE.1,
/// never truncated (it was: the node's newest trace, up to 256 MB, lost).
#[test]
fn two_recordings_to_the_same_path_keep_both_traces() {
    let dir = TempDir::new("restart-same-path");
    let exe = workload_copy(&dir, "kubelet");
    let trace = dir.join("t.trace");
    let mut pods = Vec::new();
    for i in 0..2 {
        let gt = dir.join(&format!("gt{i}.jsonl"));
        let out = Command::new(podtrace_bin())
            .args(["record", "-q", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&exe)
            .args(["--preset", "tuned", "--pods", "1", "--ground-truth"])
            .arg(&gt)
            .output()
            .expect("podtrace");
        let e = stderr(&out);
        assert!(out.status.success(), "{e}");
        if i == 1 {
            assert!(
                e.contains(&format!(
                    "{} held a trace: moved to {}.1",
                    trace.display(),
                    trace.display()
                )),
                "{e}"
            );
        }
        let uid = read_gt(&gt)
            .into_iter()
            .find(|g| g.stage == "sync")
            .map(|g| g.pod_uid)
            .expect("a sync in the ground truth");
        pods.push(uid);
    }
    // The first recording in FILE.1, the second in FILE, each complete.
    for (file, uid) in [(dir.join("t.trace.1"), &pods[0]), (trace.clone(), &pods[1])] {
        let r = report_json(&file);
        assert_eq!(r["trace"]["complete"], true, "{}", file.display());
        let uids = podtrace_tests::strs(&r["pods"], "uid");
        assert_eq!(uids, [uid.as_str()], "{}", file.display());
    }
    assert!(!dir.join("t.trace.2").exists());
}
