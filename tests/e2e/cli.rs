//! End to end: the CLI on bad input, clean detach, and Go stack-growth torture.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use podtrace_tests::{
    bpf_object_exists, bpf_object_gone_within, go119, go127, link_ids, podtrace, podtrace_bin,
    read_gt, read_process_mem, report_json, spawn_until, uprobe_links_of, workload, Guard, TempDir,
    UprobeLink,
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
    assert_clean_error(
        &["probes", "--kubelet", text.to_str().unwrap()],
        "not an ELF",
    );
    assert_clean_error(
        &["probes", "--kubelet", "/nonexistent/kubelet"],
        "/nonexistent/kubelet",
    );
    // An ELF that is not Go.
    assert_clean_error(&["probes", "--kubelet", "/bin/true"], "not a Go binary");
    // A Go binary without any kubelet function: the Go tool itself.
    let go = go119();
    assert_clean_error(
        &["probes", "--kubelet", go.to_str().unwrap()],
        "no probe of the kubelet catalogue",
    );
    assert_clean_error(&["probes"], "--kubelet");
    assert_clean_error(
        &[
            "record",
            "--kubelet",
            go.to_str().unwrap(),
            "-o",
            dir.join("x.trace").to_str().unwrap(),
        ],
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
        assert!(
            !e.contains("panicked"),
            "truncated at {frac}: panicked: {e}"
        );
        assert!(
            !o.status.success(),
            "truncated at {frac} should not resolve: {e}"
        );
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
    let (trace, _) =
        podtrace_tests::record_workload(&dir, "go1.27", &["--preset", "tuned", "--pods", "2"]);
    let bytes = std::fs::read(&trace).unwrap();
    let cut = dir.join("cut.trace");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let o = podtrace(&["report", cut.to_str().unwrap()]);
    assert!(o.status.success(), "cut trace: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("recording interrupted"), "{out}");
    assert!(out.contains("no footer"), "{out}");
}

/// Probe sites (vaddr, file offset) of a binary, from `podtrace probes --format json`.
#[test]
fn probes_say_inlined_when_the_compiler_inlined_a_probe_point() {
    // tests/inlined: pleg.(*GenericPLEG).Relist is small and inlined into
    // its one caller, (*Kubelet).SyncPod is kept out of line, and
    // getUnmountedVolumes is both (see tests/inlined/README.md).
    let closure = "k8s.io/kubernetes/pkg/kubelet/volumemanager.(*volumeManager).verifyVolumesMountedFunc.func1";
    let src = podtrace_tests::root().join("tests/inlined");
    let dir = TempDir::new("inlined");
    for (go, tag, flags) in [
        (go119(), "go1.19", &["-ldflags=-s -w"][..]),
        (
            go119(),
            "go1.19-pie",
            &["-ldflags=-s -w", "-buildmode=pie"][..],
        ),
        (go119(), "go1.19-symtab", &[][..]),
        (go127(), "go1.27", &["-ldflags=-s -w"][..]),
    ] {
        let bin = dir.join(tag);
        let o = Command::new(&go)
            .current_dir(&src)
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .args(["build", "-trimpath", "-buildvcs=false"])
            .args(flags)
            .arg("-o")
            .arg(&bin)
            .arg("./cmd/kubelet")
            .output()
            .expect("go build");
        assert!(o.status.success(), "{tag}: go build: {}", stderr(&o));
        let o = podtrace(&[
            "probes",
            "--kubelet",
            bin.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(o.status.success(), "{tag}: probes: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("probes JSON");
        let probes = v["binaries"][0]["probes"].as_array().expect("probes");
        let status = |name: &str| {
            let p = probes
                .iter()
                .find(|p| p["probe"] == name)
                .unwrap_or_else(|| panic!("{tag}: no probe {name}"));
            (
                p["status"].as_str().unwrap_or("").to_string(),
                p["detail"].as_str().unwrap_or("").to_string(),
            )
        };
        let (st, detail) = status("relist");
        assert_eq!(st, "inlined", "{tag}: relist: {detail}");
        assert!(
            detail.contains("pleg.(*GenericPLEG).Relist was inlined"),
            "{tag}: {detail}"
        );
        assert_eq!(status("sync").0, "ok", "{tag}: sync");
        // Attached, but one caller runs an inlined copy the probe cannot see.
        let check = probes
            .iter()
            .find(|p| p["probe"] == "poll_check")
            .expect("poll_check");
        assert_eq!(check["status"], "ok", "{tag}: poll_check {check:#}");
        assert_eq!(
            check["targets"][0]["inlined_into"],
            serde_json::json!([closure]),
            "{tag}: poll_check {check:#}"
        );
        // Its WaitForAttachAndMount has neither known poll helper: no
        // variant's condition holds, so it is not taken for any version.
        let (st, detail) = status("mount_wait");
        assert_eq!(st, "mismatch", "{tag}: mount_wait: {detail}");
        assert!(
            detail.contains("neither calls wait.PollImmediate"),
            "{tag}: {detail}"
        );
        assert!(
            probes
                .iter()
                .filter(|p| p["probe"] != "poll_check")
                .flat_map(|p| p["targets"].as_array().into_iter().flatten())
                .all(|t| t.get("inlined_into").is_none()),
            "{tag}: only getUnmountedVolumes is inlined somewhere"
        );
        // Absent altogether (not even inlined) stays "missing".
        assert_eq!(status("runtime_sync").0, "missing", "{tag}: runtime_sync");
        // The table says so too.
        let o = podtrace(&["probes", "--kubelet", bin.to_str().unwrap()]);
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("relist") && l.contains(" inlined ")),
            "{tag}:\n{table}"
        );
        assert!(
            table.contains(&format!(
                "also inlined into {closure}: calls there are not seen"
            )),
            "{tag}:\n{table}"
        );
    }
}

fn probe_sites(bin: &std::path::Path) -> Vec<(u64, u64)> {
    let o = podtrace(&[
        "probes",
        "--format",
        "json",
        "--kubelet",
        bin.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "probes: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut sites = Vec::new();
    for p in v["binaries"][0]["probes"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            sites.push((
                t["entry_site_vaddr"].as_u64().unwrap(),
                t["entry_site_offset"].as_u64().unwrap(),
            ));
            for (va, off) in t["ret_vaddrs"]
                .as_array()
                .unwrap()
                .iter()
                .zip(t["ret_offsets"].as_array().unwrap())
            {
                sites.push((va.as_u64().unwrap(), off.as_u64().unwrap()));
            }
        }
    }
    sites
}

/// With uprobe_multi links (this kernel has them): one link for the binary,
/// and SIGINT to exit well under a second (per-site links took ~0.1 s each).
#[test]
fn sigint_detaches_every_uprobe_and_completes_the_trace() {
    let (links, took) = sigint_case("auto");
    assert!(links.iter().all(|l| l.multi && l.pid == 0), "{links:?}");
    assert_eq!(
        link_ids(&links).len(),
        1,
        "one uprobe_multi link: {links:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "podtrace took {took:?} from SIGINT to exit"
    );
}

/// The fallback where the kernel lacks uprobe_multi (or its pid filter is
/// per thread): one perf-event link per site, same trace.
#[test]
fn per_site_links_trace_the_same_and_detach_on_sigint() {
    let (links, _) = sigint_case("per-site");
    assert!(links.iter().all(|l| !l.multi), "{links:?}");
    assert_eq!(link_ids(&links).len(), links.len(), "one link per site");
}

/// Records the workload with `--links MODE` until SIGINT; checks the
/// probes sit on every site while recording, that nothing is left after,
/// and the trace. Returns the links seen and SIGINT → exit.
fn sigint_case(mode: &str) -> (Vec<UprobeLink>, Duration) {
    let dir = TempDir::new("sigint");
    // Own copy so that no other test's probes are counted; non-PIE, so the
    // probe vaddrs are the addresses in the running process.
    let bin = dir.join("kubelet");
    std::fs::copy(workload("go1.19"), &bin).unwrap();
    let file = std::fs::read(&bin).unwrap();
    let sites = probe_sites(&bin);
    assert!(sites.len() > 20, "{} probe sites", sites.len());

    // The workload waits before its first pod so that we can look at it.
    let gt = dir.join("gt.jsonl");
    let wl = Guard::new(
        Command::new(&bin)
            .args([
                "--preset",
                "tuned",
                "--pods",
                "2",
                "--start-delay",
                "4s",
                "--ground-truth",
            ])
            .arg(&gt)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let original: Vec<u8> = sites.iter().map(|&(_, off)| file[off as usize]).collect();
    let in_memory = |pid| -> Vec<u8> {
        sites
            .iter()
            .map(|&(va, _)| read_process_mem(pid, va, 1)[0])
            .collect()
    };
    assert_eq!(
        in_memory(wl.id()),
        original,
        "no breakpoint before podtrace runs"
    );

    let trace = dir.join("t.trace");
    let (child, _) = spawn_until(
        Command::new(podtrace_bin())
            .args(["record", "-q", "--links", mode, "--kubelet"])
            .arg(&bin)
            .arg("-o")
            .arg(&trace),
        "recording to",
        Duration::from_secs(60),
    );
    let links = uprobe_links_of(child.id());
    let mut want: Vec<u64> = sites.iter().map(|s| s.1).collect();
    let mut got: Vec<u64> = links.iter().map(|l| l.offset).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "one uprobe per probe site, at its file offset");
    assert!(
        links.iter().all(|l| Path::new(&l.path) == bin),
        "links on {}: {links:?}",
        bin.display()
    );
    assert!(
        in_memory(wl.id()).iter().all(|&b| b == 0xcc),
        "every probe site holds the uprobe breakpoint while recording"
    );
    assert!(wl.wait_ok(), "workload under probes");
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    let out = child.take().wait_with_output().unwrap();
    let took = t.elapsed();
    eprintln!("--links {mode}: SIGINT to exit {took:?}");
    assert!(
        out.status.success(),
        "podtrace after SIGINT: {}",
        out.status
    );
    for l in &links {
        assert!(
            !bpf_object_exists("link", l.id),
            "uprobe link {l:?} left after SIGINT"
        );
        // Freed a grace period after its last link.
        assert!(
            bpf_object_gone_within("prog", l.prog_id, Duration::from_secs(2)),
            "eBPF program {} left after SIGINT",
            l.prog_id
        );
    }

    // A new process of the binary runs clean: no breakpoint is left anywhere.
    let wl2 = Guard::new(
        Command::new(&bin)
            .args(["--preset", "tuned", "--pods", "1", "--start-delay", "2s"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        in_memory(wl2.id()),
        original,
        "breakpoints left after podtrace exited"
    );
    assert!(wl2.wait_ok());

    let r = report_json(&trace);
    assert_eq!(
        r["trace"]["complete"], true,
        "trace footer written on SIGINT"
    );
    assert_eq!(
        r["pods"].as_array().map(Vec::len),
        Some(2),
        "both pods recorded"
    );
    let _ = read_gt(&gt);
    (links, took)
}

#[test]
fn torture_stack_growth_never_crashes_and_pairs_every_call() {
    let dir = TempDir::new("torture");
    for variant in ["go1.19", "go1.27"] {
        // No pods: every call of a probed function is the torture's own.
        let (trace, gt) = podtrace_tests::record_workload(
            &dir,
            variant,
            &[
                "--torture",
                "--preset",
                "tuned",
                "--pods",
                "0",
                "--linger",
                "1500ms",
            ],
        );
        let t = gt
            .iter()
            .find(|g| g.stage == "torture")
            .expect("torture line in ground truth");
        let calls = t.rest["calls"].as_object().expect("calls");
        let unreturned = t.rest["unreturned"].as_object().expect("unreturned");
        let r = podtrace_tests::report_json_args(&trace, &["--max-open", "1s"]);
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
            assert_eq!(
                n(&p["spans"]),
                n(want),
                "{variant}: calls of {} (after dropping morestack re-entries)",
                p["symbol"]
            );
            assert_eq!(
                n(&p["completed"]),
                n(want) - never,
                "{variant}: returns of {}",
                p["symbol"]
            );
            lost += never;
            checked += 1;
        }
        assert!(
            checked >= 5,
            "{variant}: only {checked} probed functions in the torture's counts"
        );
        assert_eq!(
            n(&stats["aged_out"]) + n(&stats["open_at_end"]),
            lost,
            "{variant}: every call that never returned (panics) is aged out: {stats}"
        );
        assert!(n(&stats["aged_out"]) > 0, "{variant}: {stats}");
        eprintln!("{variant}: torture stats {stats}");
    }
}
