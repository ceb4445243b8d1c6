//! End to end: `podtrace record` left running on a node — a kubelet that
//! starts after recording began, restarts, is replaced at its path by
//! another build (the default→tuned swap) or exits while another traced
//! process goes on; trace rotation; and its faults: SIGKILL leaves no
//! uprobe in the kernel, a full disk stops it with a clear error and a
//! readable trace, trace files are private.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use podtrace_tests::{
    bpf_object_gone_within, link_ids, podtrace, podtrace_bin, read_gt, read_process_mem,
    report_json, spawn_until, uprobe_links_of,
    util::{free_port, http_get},
    workload, Guard, TempDir,
};
use serde_json::Value;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// CLOCK_MONOTONIC now, in ns: the clock of the trace's events and notes.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A copy of the workload (stripped Go 1.19) at `path`: a file of its own
/// (its own inode).
fn workload_copy(path: &Path) -> PathBuf {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("create dir");
    }
    std::fs::copy(workload("go1.19"), path).expect("copy workload");
    path.to_path_buf()
}

/// Runs the workload at `exe` to the end: `pods` pods after `delay`.
fn run_workload(exe: &Path, pods: u32, delay: &str, gt: &Path) -> u32 {
    let mut c = Command::new(exe)
        .args(["--preset", "tuned", "--pods", &pods.to_string()])
        .args(["--start-delay", delay, "--ground-truth"])
        .arg(gt)
        .spawn()
        .expect("start workload");
    let pid = c.id();
    assert!(
        c.wait().expect("wait workload").success(),
        "workload failed"
    );
    pid
}

/// The sync pod UIDs of a workload's ground truth.
fn gt_pods(gt: &Path) -> Vec<String> {
    read_gt(gt)
        .into_iter()
        .filter(|g| g.stage == "sync")
        .map(|g| g.pod_uid)
        .collect()
}

fn report_pods(r: &Value) -> Vec<String> {
    r["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .filter_map(|p| p["uid"].as_str().map(str::to_string))
        .collect()
}

/// The trace's lines of one kind (`note`, `binary`, `e`, ...), parsed;
/// lines cut short are left out.
fn lines_of(trace: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(trace)
        .unwrap_or_else(|e| panic!("reading {}: {e}", trace.display()))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get(kind).cloned())
        .collect()
}

fn notes_of(trace: &Path, kind: &str) -> Vec<Value> {
    lines_of(trace, "note")
        .into_iter()
        .filter(|n| n["kind"] == kind)
        .collect()
}

/// Waits until the trace holds `n` notes of `kind` (at most `limit`).
fn wait_for_notes(trace: &Path, kind: &str, n: usize, limit: Duration) -> Vec<Value> {
    let t = Instant::now();
    loop {
        let got = notes_of(trace, kind);
        if got.len() >= n {
            return got;
        }
        assert!(
            t.elapsed() < limit,
            "no {n} `{kind}` notes in {} after {limit:?}: {got:?}",
            trace.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGINT to podtrace, then its exit must be a success.
fn stop(pt: Guard) -> String {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(pt.id() as i32, libc::SIGINT) };
    let out = pt.take().wait_with_output().expect("podtrace");
    let e = stderr(&out);
    assert!(out.status.success(), "podtrace: {}\n{e}", out.status);
    e
}

fn record(args: &[&str], trace: &Path) -> Guard {
    spawn_until(
        Command::new(podtrace_bin())
            .args(["record", "-q"])
            .args(args)
            .arg("-o")
            .arg(trace),
        "recording to",
        Duration::from_secs(60),
    )
    .0
}

/// [`record`] with its stderr in `log` (whole, to the end), and
/// [`stop`] for it: the stderr after the stop.
fn record_logged(args: &[&str], trace: &Path, log: &Path) -> Guard {
    let pt = Guard::new(
        Command::new(podtrace_bin())
            .args(["record", "-q"])
            .args(args)
            .arg("-o")
            .arg(trace)
            .stderr(std::fs::File::create(log).expect("create log"))
            .spawn()
            .expect("start podtrace"),
    );
    let t = Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("recording to")
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "podtrace not recording after 60 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pt
}

fn stop_logged(pt: Guard, log: &Path) -> String {
    stop(pt);
    std::fs::read_to_string(log).expect("podtrace's log")
}

#[test]
fn a_kubelet_started_after_recording_began_and_restarted_is_traced_and_the_restart_noted() {
    let dir = TempDir::new("restart");
    let exe = workload_copy(&dir.join("kubelet"));
    let trace = dir.join("t.trace");
    let log = dir.join("podtrace.log");
    // No kubelet runs yet: --kubelet PATH attaches to the file.
    let pt = record_logged(&["--kubelet", exe.to_str().expect("utf-8")], &trace, &log);
    let (gt1, gt2) = (dir.join("gt1.jsonl"), dir.join("gt2.jsonl"));
    let pid1 = run_workload(&exe, 1, "500ms", &gt1);
    wait_for_notes(&trace, "process_exited", 1, Duration::from_secs(5));
    let pid2 = run_workload(&exe, 1, "500ms", &gt2);
    wait_for_notes(&trace, "process_exited", 2, Duration::from_secs(5));
    let e = stop_logged(pt, &log);
    // The processes came from the kernel's exec/exit notices (the two runs'
    // execs and exits at least), not from reading /proc every tick: once
    // at the start, and again only if notices were lost or after 30 s.
    assert!(!e.contains("no process exec/exit notices"), "{e}");
    let (notices, scans) = e
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("podtrace: processes followed by ")?;
            let (n, rest) = rest.split_once(" exec/exit notices and ")?;
            let s = rest.strip_suffix(" full reads of /proc")?;
            Some((n.parse::<u64>().ok()?, s.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no process notice summary in:\n{e}"));
    assert!(notices >= 4, "{notices} notices for 2 execs and 2 exits");
    assert_eq!(scans, 1, "full reads of /proc while recording: {e}");

    let r = report_json(&trace);
    let seen = report_pods(&r);
    for uid in gt_pods(&gt1).iter().chain(&gt_pods(&gt2)) {
        assert!(seen.contains(uid), "pod {uid} not traced: {seen:?}");
    }
    let pids = |kind| -> Vec<u64> {
        notes_of(&trace, kind)
            .iter()
            .filter_map(|n| n["pid"].as_u64())
            .collect()
    };
    let (p1, p2) = (u64::from(pid1), u64::from(pid2));
    assert_eq!(pids("process_started"), vec![p1, p2]);
    assert_eq!(pids("process_exited"), vec![p1, p2]);
    let restarts = notes_of(&trace, "restart");
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert_eq!(restarts[0]["pid"], p2);
    assert!(restarts[0]["gap_ns"].as_u64().is_some_and(|g| g > 0));
    // The report says so, in JSON and in its table.
    let kinds: Vec<&str> = r["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"restart"), "{kinds:?}");
    let table = podtrace(&["report", trace.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("processes: 2 started, 2 exited, 1 restarts")
            && text.contains(&format!("kubelet: restarted as process {pid2}")),
        "{text}"
    );
}

#[test]
fn a_binary_replaced_at_its_path_is_reattached_within_a_second_and_the_gap_reported() {
    let dir = TempDir::new("swap");
    let exe = workload_copy(&dir.join("kubelet"));
    let trace = dir.join("t.trace");
    // The metrics count the swaps and the new builds' pod starts too.
    let metrics = format!("127.0.0.1:{}", free_port());
    let pt = record(
        &[
            "--kubelet",
            exe.to_str().expect("utf-8"),
            "--metrics",
            &metrics,
        ],
        &trace,
    );
    let probes0 = lines_of(&trace, "header")[0]["probes"]
        .as_array()
        .expect("probes")
        .len();
    let links0 = uprobe_links_of(pt.id()).len();
    assert!(links0 > 0, "no uprobe links");
    // The old build keeps running across the first swap: its pod, started
    // after the swap, is still traced (its file keeps its probes).
    let gt_old = dir.join("gt-old.jsonl");
    let mut old = Some(Guard::new(
        Command::new(&exe)
            .args(["--preset", "tuned", "--pods", "1", "--start-delay", "2s"])
            .arg("--ground-truth")
            .arg(&gt_old)
            .spawn()
            .expect("start old"),
    ));
    let mut gts = vec![gt_old.clone()];
    let mut swapped_at = Vec::new();
    const SWAPS: usize = 3;
    for i in 0..SWAPS {
        let new = workload_copy(&dir.join(&format!("kubelet.new{i}")));
        let t0 = mono_ns();
        std::fs::rename(&new, &exe).expect("rename over the binary");
        swapped_at.push(t0);
        wait_for_notes(&trace, "reattached", i + 1, Duration::from_secs(10));
        if let Some(old) = old.take() {
            assert!(old.wait_ok(), "old build failed");
        }
        let gt = dir.join(&format!("gt{i}.jsonl"));
        run_workload(&exe, 1, "300ms", &gt);
        gts.push(gt);
    }
    // The replaced files no process runs any more are released (one
    // uprobe_multi link each closes in one grace period): only the
    // current file's probes are left, in one link.
    let left = uprobe_links_of(pt.id());
    assert_eq!(left.len(), links0, "{left:?}");
    assert_eq!(link_ids(&left).len(), 1, "{left:?}");
    let value_in = |text: &str, prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // A start is summarised 1 s after its sync returned (late events).
    let t = Instant::now();
    let text = loop {
        let (status, text) = http_get(&metrics, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{text}");
        if value_in(&text, "podtrace_pod_starts_total") >= (1 + SWAPS) as f64
            || t.elapsed() > Duration::from_secs(5)
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let value = |prefix: &str| value_in(&text, prefix);
    assert_eq!(
        value("podtrace_supervisor_notes_total{kind=\"reattached\""),
        SWAPS as f64,
        "{text}"
    );
    assert_eq!(
        value("podtrace_untraced_gap_seconds_count{kind=\"reattached\""),
        SWAPS as f64,
        "{text}"
    );
    // The old build's pod and one per new build, counted live from the
    // appended probes.
    assert_eq!(
        value("podtrace_pod_starts_total"),
        (1 + SWAPS) as f64,
        "{text}"
    );
    stop(pt);

    let r = report_json(&trace);
    let seen = report_pods(&r);
    for gt in &gts {
        for uid in gt_pods(gt) {
            assert!(
                seen.contains(&uid),
                "pod {uid} of {} not traced: {seen:?}",
                gt.display()
            );
        }
    }
    let binaries = lines_of(&trace, "binary");
    assert_eq!(binaries.len(), SWAPS, "one binary line per swap");
    for (i, b) in binaries.iter().enumerate() {
        let ids: Vec<u64> = b["probes"]
            .as_array()
            .expect("probes")
            .iter()
            .filter_map(|p| p["id"].as_u64())
            .collect();
        let first = (probes0 * (i + 1)) as u64;
        assert_eq!(
            ids,
            (first..first + probes0 as u64).collect::<Vec<_>>(),
            "appended probe ids continue the table"
        );
        assert_eq!(b["path"], exe.to_str().expect("utf-8"));
    }
    let re = notes_of(&trace, "reattached");
    assert_eq!(re.len(), SWAPS, "{re:?}");
    let mut latencies = Vec::new();
    for (n, t0) in re.iter().zip(&swapped_at) {
        let lat = n["latency_ns"].as_u64().expect("latency_ns");
        let since_rename = n["t_ns"].as_u64().expect("t_ns").saturating_sub(*t0);
        assert!(
            since_rename <= 1_000_000_000,
            "re-attached {since_rename} ns after the rename: {n}; all notes: {:#?}",
            lines_of(&trace, "note")
        );
        assert!(lat <= since_rename, "{n}");
        assert!(n["gap_ns"].as_u64().is_some(), "{n}");
        latencies.push(lat as f64 / 1e6);
    }
    latencies.sort_by(f64::total_cmp);
    eprintln!(
        "re-attach after a binary swap: seen→attached min {:.1} ms, median {:.1} ms, max {:.1} ms; rename→attached {:?} ms",
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        re.iter()
            .zip(&swapped_at)
            .map(|(n, t0)| (n["t_ns"].as_u64().unwrap_or(0).saturating_sub(*t0)) / 1_000_000)
            .collect::<Vec<_>>()
    );
    assert_eq!(notes_of(&trace, "binary_replaced").len(), SWAPS);
    let table = podtrace(&["report", trace.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&format!("binaries: {SWAPS} replaced, {SWAPS} re-attached"))
            && text.contains("(not traced for"),
        "{text}"
    );
}

#[test]
fn a_binary_rewritten_in_place_loses_its_old_probes_and_is_attached_anew() {
    let dir = TempDir::new("inplace");
    let exe = workload_copy(&dir.join("kubelet"));
    let trace = dir.join("t.trace");
    let pt = record(&["--kubelet", exe.to_str().expect("utf-8")], &trace);
    // `cp` over a stopped kubelet writes the new build into the same file
    // (inode): probes left at the old build's offsets would break the new
    // build's instructions (a Go 1.27 build here: other code, other offsets).
    std::fs::copy(workload("go1.27"), &exe).expect("cp over the binary");
    let re = wait_for_notes(&trace, "reattached", 1, Duration::from_secs(20));
    let replaced = notes_of(&trace, "binary_replaced");
    assert!(
        replaced
            .first()
            .is_some_and(|n| n["detail"].as_str().is_some_and(|d| d.contains("in place"))),
        "{replaced:?}"
    );
    let gt = dir.join("gt.jsonl");
    // Runs clean (no stale breakpoint) and is traced with the new probes.
    run_workload(&exe, 1, "300ms", &gt);
    stop(pt);
    let r = report_json(&trace);
    let seen = report_pods(&r);
    for uid in gt_pods(&gt) {
        assert!(seen.contains(&uid), "pod {uid} not traced: {seen:?}");
    }
    let b = lines_of(&trace, "binary");
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(
        b[0]["go_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("go1.27")),
        "{}",
        b[0]["go_version"]
    );
    eprintln!("rewritten in place: re-attached {re:?}");
}

#[test]
fn discovery_picks_up_a_kubelet_started_later_and_one_exiting_does_not_stop_the_others() {
    let dir = TempDir::new("later");
    let a = workload_copy(&dir.join("a/kubelet"));
    let b = workload_copy(&dir.join("b/kubelet"));
    let (gt_a, gt_b) = (dir.join("gt-a.jsonl"), dir.join("gt-b.jsonl"));
    // A runs when recording starts (discovery reads every running Go
    // program first: give it time).
    let wa = Guard::new(
        Command::new(&a)
            .args(["--preset", "tuned", "--pods", "1", "--start-delay", "6s"])
            .arg("--ground-truth")
            .arg(&gt_a)
            .spawn()
            .expect("start a"),
    );
    std::thread::sleep(Duration::from_millis(200));
    let trace = dir.join("t.trace");
    let pt = record(&[], &trace);
    let pid_a = wa.id();
    assert!(wa.wait_ok(), "kubelet a failed");
    // A exited; recording goes on, and B, started now, is found.
    wait_for_notes(&trace, "process_exited", 1, Duration::from_secs(5));
    let pid_b = run_workload(&b, 2, "1500ms", &gt_b);
    std::thread::sleep(Duration::from_millis(300));
    stop(pt);

    let r = report_json(&trace);
    let seen = report_pods(&r);
    for uid in gt_pods(&gt_a).iter().chain(&gt_pods(&gt_b)) {
        assert!(seen.contains(uid), "pod {uid} not traced: {seen:?}");
    }
    assert!(
        notes_of(&trace, "process_exited")
            .iter()
            .any(|n| n["pid"] == pid_a),
        "a's exit noted"
    );
    let found = notes_of(&trace, "binary_found");
    assert!(
        found
            .iter()
            .any(|n| n["path"] == b.to_str().expect("utf-8") && n["pid"] == pid_b),
        "b found: {found:?}"
    );
}

#[test]
fn rotation_keeps_max_files_each_a_complete_private_trace() {
    let dir = TempDir::new("rotate");
    let exe = workload_copy(&dir.join("kubelet"));
    let trace = dir.join("t.trace");
    // A trace file left by someone else, readable by all: ours is 0600.
    std::fs::write(&trace, "old").expect("write");
    std::fs::set_permissions(&trace, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new(podtrace_bin())
        .args(["record", "-q", "--kubelet"])
        .arg(&exe)
        .args(["--max-size", "32K", "--max-files", "3", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&exe)
        .args(["--preset", "tuned", "--pods", "6", "--rate", "3"])
        .output()
        .expect("podtrace");
    assert!(out.status.success(), "{}", stderr(&out));
    let name = |n: u32| {
        if n == 0 {
            trace.clone()
        } else {
            dir.join(&format!("t.trace.{n}"))
        }
    };
    assert!(
        !name(3).exists(),
        "at most 3 files: {:?}",
        std::fs::read_dir(&dir.0)
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    );
    let mut last_t = 0;
    let probes = lines_of(&trace, "header")[0]["probes"]
        .as_array()
        .map(Vec::len)
        .expect("probes");
    // Oldest first: events continue from one file to the next.
    for n in (0..3).rev() {
        let f = name(n);
        assert!(f.exists(), "{} missing", f.display());
        let meta = std::fs::metadata(&f).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", f.display());
        let text = std::fs::read_to_string(&f).expect("read");
        let header = lines_of(&f, "header");
        assert_eq!(header.len(), 1, "{}: one header", f.display());
        assert_eq!(header[0]["probes"].as_array().map(Vec::len), Some(probes));
        let footer = lines_of(&f, "footer");
        assert_eq!(footer.len(), 1, "{}: one footer", f.display());
        let events = lines_of(&f, "e");
        assert_eq!(footer[0]["events"], events.len() as u64);
        if n > 0 {
            assert_eq!(footer[0]["stopped_by"], "rotated");
            // Rotated at 32 KiB: over it by at most the last line.
            let longest = text.lines().map(str::len).max().unwrap_or(0) as u64;
            assert!(
                meta.len() <= 32 * 1024 + 2 * longest + 2,
                "{}: {} bytes",
                f.display(),
                meta.len()
            );
        }
        let ts: Vec<u64> = events.iter().filter_map(|e| e["t"].as_u64()).collect();
        assert!(!ts.is_empty(), "{}: no events", f.display());
        let first = ts.iter().copied().min().unwrap_or(0);
        assert!(first >= last_t, "{}: events go back in time", f.display());
        last_t = ts.iter().copied().max().unwrap_or(0);
        // Each file reads as a trace on its own.
        let r = report_json(&f);
        assert_eq!(r["trace"]["complete"], true, "{}", f.display());
    }
}

/// Each rotated file's footer counts the probe hits and drops while it was
/// the one written, not those of the files before it: over all the files
/// (none deleted here) they add up to the recording's, where every hit is
/// an event in some file or a drop.
#[test]
fn rotated_files_count_only_their_own_hits_and_drops() {
    let dir = TempDir::new("rotate-counts");
    let exe = workload_copy(&dir.join("kubelet"));
    let trace = dir.join("t.trace");
    let out = Command::new(podtrace_bin())
        .args(["record", "-q", "--kubelet"])
        .arg(&exe)
        .args(["--max-size", "32K", "--max-files", "1000", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&exe)
        .args(["--preset", "tuned", "--pods", "3", "--rate", "3"])
        .output()
        .expect("podtrace");
    assert!(out.status.success(), "{}", stderr(&out));
    let (mut hits, mut events, mut drops, mut files) = (0, 0, 0, 0);
    for n in 0.. {
        let f = if n == 0 {
            trace.clone()
        } else {
            dir.join(&format!("t.trace.{n}"))
        };
        if !f.exists() {
            break;
        }
        let footer = &lines_of(&f, "footer")[0];
        let get = |k: &str| {
            footer[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k}: {footer}"))
        };
        hits += get("hits");
        drops += get("drops");
        events += lines_of(&f, "e").len() as u64;
        files += 1;
    }
    assert!(files >= 3, "only {files} files");
    assert_eq!(
        hits,
        events + drops,
        "the files' hits add up to their events and drops ({files} files)"
    );
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mkdir");
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            o.status.success(),
            "mount -t tmpfs (needs root): {}",
            stderr(&o)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_recording_with_a_clear_error_and_a_readable_trace() {
    let dir = TempDir::new("full");
    let exe = workload_copy(&dir.join("kubelet"));
    let full = Tmpfs::mount(&dir.join("full"), "256k");
    let trace = full.0.join("t.trace");
    let out = Command::new(podtrace_bin())
        .args(["record", "-q", "--kubelet"])
        .arg(&exe)
        .arg("-o")
        .arg(&trace)
        .arg("--")
        .arg(&exe)
        .args(["--preset", "tuned", "--pods", "40", "--rate", "4"])
        .stdout(Stdio::null())
        .output()
        .expect("podtrace");
    let e = stderr(&out);
    assert!(!out.status.success(), "a full disk must fail record: {e}");
    assert!(
        e.contains(&format!("writing trace {}", trace.display()))
            && e.contains("No space left on device"),
        "the error names the file and the cause: {e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    // Up to its last complete line: every complete event is read.
    let text = std::fs::read(&trace).expect("read trace");
    assert!(
        text.len() > 200_000,
        "the disk was filled: {} bytes",
        text.len()
    );
    let complete = text.rsplit(|&b| b == b'\n').count() - 1;
    let whole_events = String::from_utf8_lossy(&text)
        .lines()
        .take(complete)
        .filter(|l| l.starts_with("{\"e\":"))
        .count() as u64;
    let r = report_json(&trace);
    assert_eq!(r["trace"]["events"], whole_events, "{}", r["warnings"]);
    assert_eq!(r["trace"]["complete"], false);
    assert!(whole_events > 100, "{whole_events} events");
}

/// The sockets process `pid` listens on (or binds for datagrams): its
/// socket inodes found in /proc/net/{tcp,tcp6,udp,udp6} in state LISTEN
/// (0A) or bound (udp), and in /proc/net/unix with the listening flag.
fn listening_sockets(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9
                && inodes.iter().any(|i| i == f[9])
                && (f[3] == "0A" || table.starts_with("udp"))
            {
                out.push(format!("{table}: {l}"));
            }
        }
    }
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    for l in unix.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = listening
        if f.len() > 6 && inodes.iter().any(|i| i == f[6]) && f[3] == "00010000" {
            out.push(format!("unix: {l}"));
        }
    }
    out
}

/// (vaddr, file offset) of every probe site of `bin` (`podtrace probes`).
fn probe_sites(bin: &Path) -> Vec<(u64, u64)> {
    let o = podtrace(&[
        "probes",
        "--format",
        "json",
        "--kubelet",
        bin.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "probes: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("probes JSON");
    let mut sites = Vec::new();
    let n = |v: &Value| v.as_u64().expect("number");
    for p in v["binaries"][0]["probes"].as_array().expect("probes") {
        for t in p["targets"].as_array().expect("targets") {
            sites.push((n(&t["entry_site_vaddr"]), n(&t["entry_site_offset"])));
            let vas = t["ret_vaddrs"].as_array().expect("ret_vaddrs");
            let offs = t["ret_offsets"].as_array().expect("ret_offsets");
            for (va, off) in vas.iter().zip(offs) {
                sites.push((n(va), n(off)));
            }
        }
    }
    sites
}

#[test]
fn sigkill_leaves_no_uprobe_in_the_kernel_and_a_readable_trace() {
    let dir = TempDir::new("sigkill");
    // Non-PIE: the probe vaddrs are the addresses in the running process.
    let bin = workload_copy(&dir.join("kubelet"));
    let file = std::fs::read(&bin).expect("read binary");
    let sites = probe_sites(&bin);
    let original: Vec<u8> = sites.iter().map(|&(_, off)| file[off as usize]).collect();
    let wl = Guard::new(
        Command::new(&bin)
            .args(["--preset", "tuned", "--pods", "1", "--start-delay", "60s"])
            .spawn()
            .expect("start workload"),
    );
    let in_memory = |pid| -> Vec<u8> {
        sites
            .iter()
            .map(|&(va, _)| read_process_mem(pid, va, 1)[0])
            .collect()
    };
    std::thread::sleep(Duration::from_millis(300));
    let trace = dir.join("t.trace");
    let pt = record(&["--kubelet", bin.to_str().expect("utf-8")], &trace);
    let links = uprobe_links_of(pt.id());
    assert!(!links.is_empty(), "no uprobe links while recording");
    assert!(
        in_memory(wl.id()).iter().all(|&b| b == 0xcc),
        "every probe site holds the breakpoint while recording"
    );
    assert_eq!(
        listening_sockets(pt.id()),
        Vec::<String>::new(),
        "record listens on no socket unless asked"
    );
    // Some loop ticks into the trace.
    std::thread::sleep(Duration::from_millis(800));
    let mut pt = pt.take();
    pt.kill().expect("SIGKILL");
    pt.wait().expect("wait");
    // The kernel drops the links and the program with the last fd; the
    // uprobes go with them (a grace period for each link), the program
    // once the last link has let go of it (deferred, after an RCU grace
    // period).
    let t = Instant::now();
    let gone = |kind: &str, id: u64| bpf_object_gone_within(kind, id, Duration::from_secs(10));
    for l in &links {
        assert!(gone("link", l.id), "uprobe link {l:?} left after SIGKILL");
        assert!(
            gone("prog", l.prog_id),
            "eBPF program {} left after SIGKILL",
            l.prog_id
        );
    }
    eprintln!(
        "SIGKILL: links and program gone {:.0} ms after the exit",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(
        in_memory(wl.id()),
        original,
        "the running process's text holds its own bytes again (no 0xCC left)"
    );
    // The trace reads up to its last complete record.
    let r = report_json(&trace);
    assert_eq!(r["trace"]["complete"], false);
    assert!(
        r["trace"]["events"].as_u64().is_some_and(|n| n > 0),
        "{}",
        r["trace"]
    );
    let meta = std::fs::metadata(&trace).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

/// `cmd` run in a mount namespace of its own where `hide` is covered by an
/// empty tmpfs: what a DaemonSet pod sees of a host path (nothing), or a
/// kind/DinD node's processes (a namespace that is not the host's).
fn in_own_mount_ns(hide: &Path, cmd: &Path, args: &[&str]) -> Command {
    std::fs::create_dir_all(hide).expect("mkdir");
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs \"$0\" && shift && exec \"$@\"")
        .arg(hide)
        .arg("--")
        .arg(cmd)
        .args(args);
    c
}

/// Review finding: the in-place rewrite protection was off when podtrace
/// could not see the traced file's path in its own mount namespace (a
/// DaemonSet pod): `watch` was None, probes stayed at the old build's
/// offsets and broke the new one. The traced file is watched through the
/// descriptor podtrace holds now.
#[test]
fn a_binary_rewritten_in_place_is_caught_when_podtrace_cannot_see_its_path() {
    let dir = TempDir::new("inplace-ns");
    let bin = dir.join("bin");
    let exe = workload_copy(&bin.join("kubelet"));
    let gt1 = dir.join("gt1.jsonl");
    let first = Guard::new(
        Command::new(&exe)
            .args(["--preset", "tuned", "--pods", "1", "--start-delay", "2s"])
            .arg("--ground-truth")
            .arg(&gt1)
            .spawn()
            .expect("start workload"),
    );
    std::thread::sleep(Duration::from_millis(200));
    let trace = dir.join("t.trace");
    // Discovery from a mount namespace where bin/ is an empty tmpfs: it
    // finds the kubelet through /proc/PID/exe only.
    let (pt, _) = spawn_until(
        &mut in_own_mount_ns(
            &bin,
            &podtrace_bin(),
            &["record", "-q", "-o", trace.to_str().expect("utf-8")],
        ),
        "recording to",
        Duration::from_secs(60),
    );
    let pid1 = first.id();
    assert!(first.wait_ok(), "first build failed");
    let exited = |n: &Value| n["pid"] == pid1;
    let t = Instant::now();
    while !notes_of(&trace, "process_exited").iter().any(exited) {
        assert!(t.elapsed() < Duration::from_secs(5), "no exit noted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stopped, so the file can be written in place: another build.
    std::fs::copy(workload("go1.27"), &exe).expect("cp over the binary");
    wait_for_notes(&trace, "reattached", 1, Duration::from_secs(20));
    let gt2 = dir.join("gt2.jsonl");
    run_workload(&exe, 1, "300ms", &gt2);
    stop(pt);
    let replaced = notes_of(&trace, "binary_replaced");
    assert!(
        replaced
            .iter()
            .any(|n| n["detail"].as_str().is_some_and(|d| d.contains("in place"))),
        "{replaced:?}"
    );
    let seen = report_pods(&report_json(&trace));
    for uid in gt_pods(&gt1).iter().chain(&gt_pods(&gt2)) {
        assert!(seen.contains(uid), "pod {uid} not traced: {seen:?}");
    }
}

/// Review finding: swapping A → B → A put a second probe set on A, so each
/// of its calls was recorded twice. A's probes are reused while attached
/// (A still runs), attached again once released (A stopped). Both link
/// modes: per-site links keep idle files' probes longer.
#[test]
fn swapping_a_binary_back_and_forth_traces_every_call_once() {
    for mode in ["auto", "per-site"] {
        swap_back_and_forth(mode);
    }
}

fn swap_back_and_forth(mode: &str) {
    let dir = TempDir::new("aba");
    let exe = workload_copy(&dir.join("kubelet"));
    let keep_a = dir.join("kubelet.a");
    std::fs::hard_link(&exe, &keep_a).expect("link A");
    let trace = dir.join("t.trace");
    let pt = record(
        &["--links", mode, "--kubelet", exe.to_str().expect("utf-8")],
        &trace,
    );
    let links0 = uprobe_links_of(pt.id()).len();
    // One probe set on A, and B's while it is kept: per-site links keep an
    // idle file's probes (supervise::KEEP_IDLE_FILES), a uprobe_multi link
    // is closed at once (a moment after the swap). A second set on A would
    // show as one set more.
    let sets = if mode == "per-site" { 2 } else { 1 };
    let one_set_on_a = |pt: &Guard| {
        let t = Instant::now();
        loop {
            let n = uprobe_links_of(pt.id()).len();
            if n == sets * links0 || t.elapsed() > Duration::from_secs(3) {
                assert_eq!(n, sets * links0, "{mode}: uprobes after A → B → A");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Phase 1: A runs across A → B → A (its pods start after the swaps).
    let gt_a = dir.join("gt-a.jsonl");
    let a = Guard::new(
        Command::new(&exe)
            .args(["--preset", "tuned", "--pods", "2", "--start-delay", "3s"])
            .arg("--ground-truth")
            .arg(&gt_a)
            .spawn()
            .expect("start A"),
    );
    let swap = |to: &Path, n: usize| {
        let tmp = dir.join("swap.tmp");
        std::fs::hard_link(to, &tmp).expect("link");
        std::fs::rename(&tmp, &exe).expect("rename over the binary");
        wait_for_notes(&trace, "reattached", n, Duration::from_secs(10));
    };
    let b = workload_copy(&dir.join("kubelet.b"));
    swap(&b, 1);
    swap(&keep_a, 2);
    one_set_on_a(&pt);
    assert!(a.wait_ok(), "A failed");
    // Phase 2: nothing runs A when it comes back.
    swap(&b, 3);
    std::thread::sleep(Duration::from_millis(600));
    swap(&keep_a, 4);
    one_set_on_a(&pt);
    let gt2 = dir.join("gt2.jsonl");
    run_workload(&exe, 1, "300ms", &gt2);
    stop(pt);
    let mut gt = read_gt(&gt_a);
    gt.extend(read_gt(&gt2));
    // Every stage of every pod once, as in the ground truth.
    podtrace_tests::check_pod_stages(&format!("A→B→A {mode}"), &report_json(&trace), &gt);
}

/// Review finding: a process that exited while podtrace attached to it
/// (discovery had seen it, /proc/PID/exe was gone by the time of the
/// attach) put its file on the not-ours list for good: the same kubelet
/// started again was never traced. The file is held open once seen, and a
/// failed attach is tried again later.
#[test]
fn a_kubelet_that_exits_while_being_attached_is_traced_when_it_runs_again() {
    let dir = TempDir::new("exit-attach");
    // Discovery needs something to find when it starts.
    let decoy = workload_copy(&dir.join("decoy/kubelet"));
    let _d = Guard::new(
        Command::new(&decoy)
            .args(["--pods", "0", "--linger", "60s"])
            .spawn()
            .expect("start decoy"),
    );
    let exe = workload_copy(&dir.join("k/kubelet"));
    std::thread::sleep(Duration::from_millis(200));
    let trace = dir.join("t.trace");
    let pt = record(&[], &trace);
    // Short lives (~40 ms each) for four seconds: scans catch some of them
    // alive, and they exit before an attach is done.
    let t = Instant::now();
    let mut runs = 0;
    while t.elapsed() < Duration::from_secs(4) {
        let ok = Command::new(&exe)
            .args(["--preset", "tuned", "--pods", "0", "--linger", "20ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run");
        assert!(ok.success());
        runs += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let gt = dir.join("gt.jsonl");
    run_workload(&exe, 1, "1500ms", &gt);
    stop(pt);
    let seen = report_pods(&report_json(&trace));
    for uid in gt_pods(&gt) {
        assert!(
            seen.contains(&uid),
            "pod {uid} not traced after {runs} short runs: {seen:?}; notes {:#?}",
            lines_of(&trace, "note")
        );
    }
}

/// Review finding: the eBPF program's spec table (1024 slots, two per
/// traced function) was never reclaimed, so repeated swaps filled it and
/// then every attach failed. Forty swaps between two builds (~28 slots
/// each) need more slots than the table has; released groups give theirs
/// back.
#[test]
fn many_swaps_do_not_fill_the_spec_table() {
    let dir = TempDir::new("slots");
    let exe = workload_copy(&dir.join("kubelet"));
    let builds = [dir.join("kubelet.a"), dir.join("kubelet.b")];
    std::fs::hard_link(&exe, &builds[0]).expect("link A");
    workload_copy(&builds[1]);
    let trace = dir.join("t.trace");
    let pt = record(&["--kubelet", exe.to_str().expect("utf-8")], &trace);
    const SWAPS: usize = 40;
    for i in 0..SWAPS {
        let tmp = dir.join("swap.tmp");
        std::fs::hard_link(&builds[(i + 1) % 2], &tmp).expect("link");
        std::fs::rename(&tmp, &exe).expect("rename over the binary");
        wait_for_notes(&trace, "reattached", i + 1, Duration::from_secs(10));
    }
    let gt = dir.join("gt.jsonl");
    run_workload(&exe, 1, "300ms", &gt);
    stop(pt);
    assert_eq!(notes_of(&trace, "attach_failed"), Vec::<Value>::new());
    let seen = report_pods(&report_json(&trace));
    for uid in gt_pods(&gt) {
        assert!(seen.contains(&uid), "pod {uid} not traced: {seen:?}");
    }
    let probes = lines_of(&trace, "header")[0]["probes"]
        .as_array()
        .map(Vec::len)
        .expect("probes");
    assert!(
        2 * probes * (SWAPS + 1) > 1024,
        "{probes} probes per build: the swaps need more than the table's 1024 slots"
    );
}

/// Item 3: a kubelet in another mount namespace (a kind or DinD node on
/// this machine) is not this node's: discovery leaves it alone.
#[test]
fn discovery_skips_a_kubelet_in_another_mount_namespace() {
    let dir = TempDir::new("mntns");
    let host = workload_copy(&dir.join("host/kubelet"));
    let nested = workload_copy(&dir.join("nested/kubelet"));
    let (gt_host, gt_nested) = (dir.join("gt-host.jsonl"), dir.join("gt-nested.jsonl"));
    let args = |gt: &Path| -> Vec<String> {
        ["--preset", "tuned", "--pods", "1", "--start-delay", "3s"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--ground-truth".into(), gt.display().to_string()])
            .collect()
    };
    let h = Guard::new(
        Command::new(&host)
            .args(args(&gt_host))
            .spawn()
            .expect("start host kubelet"),
    );
    let hide = dir.join("hidden");
    let a = args(&gt_nested);
    let n = Guard::new(
        in_own_mount_ns(
            &hide,
            &nested,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .spawn()
        .expect("start nested kubelet"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let trace = dir.join("t.trace");
    let pt = record(&[], &trace);
    assert!(h.wait_ok() && n.wait_ok(), "a workload failed");
    stop(pt);
    let header = &lines_of(&trace, "header")[0];
    let paths: Vec<&str> = header["binaries"]
        .as_array()
        .expect("binaries")
        .iter()
        .filter_map(|b| b["path"].as_str())
        .collect();
    let seen = report_pods(&report_json(&trace));
    for uid in gt_pods(&gt_host) {
        assert!(seen.contains(&uid), "host pod {uid} not traced: {seen:?}");
    }
    for uid in gt_pods(&gt_nested) {
        assert!(
            !seen.contains(&uid),
            "the nested kubelet's pod {uid} was traced; binaries {paths:?}"
        );
    }
    assert!(
        lines_of(&trace, "binary")
            .iter()
            .all(|b| !b["path"].as_str().is_some_and(|p| p.contains("nested"))),
        "the nested kubelet was attached while recording"
    );
}

/// Item 3: discovery reads unrelated Go binaries' build info only (a few
/// KB each), once: not whole (GoBinary::open read each one, ~30 MB here),
/// and the supervisor does not look at them again. 30 copies of the
/// kubelet-shaped workload run, unrelated to the bench catalogue used.
#[test]
fn discovery_reads_only_the_build_info_of_unrelated_go_binaries() {
    let dir = TempDir::new("unrelated");
    let bench = podtrace_tests::bench_binary(&dir);
    let target = Guard::new(
        Command::new(&bench)
            .args(["-n", "0", "-sleep", "30s"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start bench"),
    );
    let mut others = Vec::new();
    let mut size = 0;
    for i in 0..30 {
        let p = workload_copy(&dir.join(&format!("app{i}/app-{i}")));
        size += std::fs::metadata(&p).expect("stat").len();
        others.push(Guard::new(
            Command::new(&p)
                .args(["--pods", "0", "--linger", "60s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start app"),
        ));
    }
    std::thread::sleep(Duration::from_millis(500));
    let trace = dir.join("t.trace");
    let cat = podtrace_tests::root().join("tests/bench/bench.toml");
    let pt = record(&["--catalogue", cat.to_str().expect("utf-8")], &trace);
    // Some supervisor ticks.
    std::thread::sleep(Duration::from_secs(2));
    let io = std::fs::read_to_string(format!("/proc/{}/io", pt.id())).expect("io");
    let rchar: u64 = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar");
    stop(pt);
    drop(target);
    let bench_size = std::fs::metadata(&bench).expect("stat").len();
    eprintln!(
        "podtrace read {:.1} MB with 30 unrelated Go binaries ({:.0} MB) running",
        rchar as f64 / 1e6,
        size as f64 / 1e6
    );
    assert!(
        rchar < 2 * bench_size + (8 << 20),
        "podtrace read {rchar} bytes: more than the traced bench binary ({bench_size}) and a little; the 30 unrelated ones are {size} bytes"
    );
}
