//! End to end: the CLI on bad input, clean detach, and Go stack-growth torture.

use std::{process::Command, time::Duration};

use podtrace_tests::{
    attached_uprobes, go119, podtrace, podtrace_bin, podtrace_programs, read_gt, report_json,
    spawn_until, workload, TempDir,
};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with a clear message naming the file, exits non-zero, never panics.
fn assert_clean_error(args: &[&str], expect: &str) {
    let o = podtrace(args);
    let e = stderr(&o);
    assert!(!o.status.success(), "{args:?} should fail; stderr: {e}");
    assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
    assert!(e.contains(expect), "{args:?}: expected {expect:?} in: {e}");
}

#[test]
fn bad_binaries_get_clear_errors() {
    let dir = TempDir::new("bad");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "not an ELF file\n").unwrap();
    assert_clean_error(&["probes", "--kubelet", text.to_str().unwrap()], "not an ELF");
    assert_clean_error(&["probes", "--kubelet", "/nonexistent/kubelet"], "/nonexistent/kubelet");
    // An ELF that is not Go.
    assert_clean_error(&["probes", "--kubelet", "/bin/true"], "not a Go binary");
    // A Go binary without any kubelet function: the Go tool itself.
    let go = go119();
    assert_clean_error(&["probes", "--kubelet", go.to_str().unwrap()], "no probe of the kubelet catalogue");
    assert_clean_error(
        &["record", "--kubelet", go.to_str().unwrap(), "-o", dir.join("x.trace").to_str().unwrap()],
        "none of the kubelet catalogue's functions resolve",
    );
    // Truncated copies of a stripped kubelet: cut inside the binary at many
    // points (the pclntab is in the second half); none may panic.
    let wl = std::fs::read(workload("go1.27")).unwrap();
    for frac in [0.3, 0.5, 0.7, 0.8, 0.9, 0.95] {
        let cut = dir.join("cut");
        std::fs::write(&cut, &wl[..(wl.len() as f64 * frac) as usize]).unwrap();
        let o = podtrace(&["probes", "--kubelet", cut.to_str().unwrap()]);
        let e = stderr(&o);
        assert!(!e.contains("panicked"), "truncated at {frac}: panicked: {e}");
        assert!(!o.status.success(), "truncated at {frac} should not resolve: {e}");
    }
}

#[test]
fn bad_traces_get_clear_errors() {
    let dir = TempDir::new("badtrace");
    let empty = dir.join("empty.trace");
    std::fs::write(&empty, "").unwrap();
    assert_clean_error(&["report", empty.to_str().unwrap()], "empty file");
    let junk = dir.join("junk.trace");
    std::fs::write(&junk, "{\"hello\": 1}\n").unwrap();
    assert_clean_error(&["report", junk.to_str().unwrap()], "not a podtrace trace");
    assert_clean_error(&["report", "/nonexistent.trace"], "/nonexistent.trace");

    // A real trace cut in the middle of a line still reports, with a warning.
    let (trace, _) = podtrace_tests::record_workload(&dir, "go1.27", &["--preset", "tuned", "--pods", "2"]);
    let bytes = std::fs::read(&trace).unwrap();
    let cut = dir.join("cut.trace");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let o = podtrace(&["report", cut.to_str().unwrap()]);
    assert!(o.status.success(), "cut trace: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("recording interrupted"), "{out}");
    assert!(out.contains("no footer"), "{out}");
}

#[test]
fn sigint_detaches_every_uprobe_and_completes_the_trace() {
    let dir = TempDir::new("sigint");
    // Own copy so that no other test's probes are counted.
    let bin = dir.join("kubelet");
    std::fs::copy(workload("go1.19"), &bin).unwrap();
    let trace = dir.join("t.trace");
    let (child, _) = spawn_until(
        Command::new(podtrace_bin())
            .args(["record", "-q", "--kubelet"])
            .arg(&bin)
            .arg("-o")
            .arg(&trace),
        "recording to",
        Duration::from_secs(60),
    );
    let attached = attached_uprobes(&bin);
    assert!(attached > 10, "expected the probes to be attached, bpftool shows {attached}");
    // Run the workload while recording.
    let gt = dir.join("gt.jsonl");
    let st = Command::new(&bin)
        .args(["--preset", "tuned", "--pods", "2", "--ground-truth"])
        .arg(&gt)
        .status()
        .unwrap();
    assert!(st.success());
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "podtrace after SIGINT: {}", out.status);
    assert_eq!(attached_uprobes(&bin), 0, "uprobes left attached after SIGINT");
    assert_eq!(podtrace_programs(), 0, "eBPF program left loaded after SIGINT");
    let r = report_json(&trace);
    assert_eq!(r["trace"]["complete"], true, "trace footer written on SIGINT");
    assert_eq!(r["pods"].as_array().map(Vec::len), Some(2));
    let _ = read_gt(&gt);
}

#[test]
fn torture_stack_growth_never_crashes_and_pairs_every_call() {
    let dir = TempDir::new("torture");
    for variant in ["go1.19", "go1.27"] {
        // No pods: every call of a probed function is the torture's own.
        let (trace, gt) = podtrace_tests::record_workload(
            &dir,
            variant,
            &["--torture", "--preset", "tuned", "--pods", "0"],
        );
        let t = gt
            .iter()
            .find(|g| g.stage == "torture")
            .expect("torture line in ground truth");
        let calls = t.rest["calls"].as_object().expect("calls");
        let unreturned = t.rest["unreturned"].as_object().expect("unreturned");
        let r = podtrace_tests::report_json_args(&trace, &["--max-open", "500ms"]);
        let stats = &r["stats"];
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        assert!(
            n(&stats["duplicate_entries"]) > 0,
            "{variant}: torture should make morestack re-enter probed functions: {stats}"
        );
        let mut checked = 0;
        let mut lost = 0;
        for p in r["probes"].as_array().expect("probes") {
            let Some(want) = calls.get(p["symbol"].as_str().unwrap_or("")) else {
                continue;
            };
            let never = unreturned
                .get(p["symbol"].as_str().unwrap_or(""))
                .map(n)
                .unwrap_or(0);
            assert_eq!(n(&p["spans"]), n(want), "{variant}: calls of {} (after dropping morestack re-entries)", p["symbol"]);
            assert_eq!(n(&p["completed"]), n(want) - never, "{variant}: returns of {}", p["symbol"]);
            lost += never;
            checked += 1;
        }
        assert!(checked >= 5, "{variant}: only {checked} probed functions in the torture's counts");
        assert_eq!(
            n(&stats["aged_out"]) + n(&stats["open_at_end"]),
            lost,
            "{variant}: every call that never returned (panics) is aged out: {stats}"
        );
        assert!(n(&stats["aged_out"]) > 0, "{variant}: {stats}");
        eprintln!("{variant}: torture stats {stats}");
    }
}
