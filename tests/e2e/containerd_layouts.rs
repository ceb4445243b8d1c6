//! End to end: the containerd catalogue's entries for containerd 1.7, 2.0-2.1
//! and 2.2+ on fake containerd programs (tests/fake-containerd) built with
//! containerd's package paths and cri-api's struct layouts (gogo, and
//! protobuf-go's +8), stripped, with Go 1.27 (and 1.7 also with Go 1.19).
//!
//! For each build: `podtrace probes` resolves all eight CRI handlers with the
//! variant of that containerd version, and `podtrace record` of the program
//! captures, for every call in the program's ground truth, an entry and an
//! exit with exactly the ground truth's values (pod name/uid/namespace/
//! attempt, sandbox and container ids, container name, image, image ref,
//! error), and a span that lies between the program's stamps around the call
//! and the handler's own stamps inside it, within 1 ms of the nearer.
//!
//! The programs come from `PODTRACE_FAKE_CONTAINERD_DIR` (default
//! `target/fake-containerd`); missing or older than their sources, they are
//! built there by tests/fake-containerd/build.sh (Go 1.19 and 1.27 needed).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
    time::SystemTime,
};

use podtrace_tests::{containerd::CRI_CALLS, podtrace, podtrace_bin, root, TempDir};
use serde_json::{Map, Value};

/// Fake builds (tests/fake-containerd/build.sh): directory, what the
/// catalogue's variant note must say, the package of the handlers.
struct Build {
    dir: &'static str,
    note: &'static str,
    package: &'static str,
    /// (probe, package) where another function than the instrumented
    /// wrapper is probed.
    other: Option<(&'static str, &'static str)>,
}

const V1_7: &str = "github.com/containerd/containerd/pkg/cri/instrument.(*instrumentedService).";
const V2: &str =
    "github.com/containerd/containerd/v2/internal/cri/instrument.(*instrumentedService).";
const V2_IMAGES: &str =
    "github.com/containerd/containerd/v2/internal/cri/server/images.(*GRPCCRIImageService).";

const BUILDS: &[Build] = &[
    Build {
        dir: "containerd-1.7",
        note: "containerd 1.7:",
        package: V1_7,
        other: None,
    },
    Build {
        dir: "containerd-1.7-go1.19",
        note: "containerd 1.7:",
        package: V1_7,
        other: None,
    },
    Build {
        dir: "containerd-2.0",
        note: "containerd 2.0-2.1:",
        package: V2,
        other: Some(("PullImage", V2_IMAGES)),
    },
    Build {
        dir: "containerd-2.2",
        note: "containerd 2.2+:",
        package: V2,
        other: Some(("PullImage", V2_IMAGES)),
    },
];

const PODS: usize = 3;
const TOLERANCE_NS: i64 = 1_000_000;

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let t = if p.is_dir() {
                newest_mtime(&p)
            } else {
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            };
            newest = newest.max(t);
        }
    }
    newest
}

/// The directory of the fake containerd builds, built (once per test
/// process) when missing or older than tests/fake-containerd.
fn fake_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("PODTRACE_FAKE_CONTAINERD_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/fake-containerd"));
        let src = root().join("tests/fake-containerd");
        let sources = newest_mtime(&src);
        let fresh = BUILDS.iter().all(|b| {
            std::fs::metadata(dir.join(b.dir).join("containerd"))
                .and_then(|m| m.modified())
                .map(|t| t >= sources)
                .unwrap_or(false)
        });
        if !fresh {
            let out = Command::new(src.join("build.sh"))
                .arg(&dir)
                .output()
                .expect("running tests/fake-containerd/build.sh");
            assert!(
                out.status.success(),
                "tests/fake-containerd/build.sh {} failed ({}): {}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

fn binary(b: &Build) -> PathBuf {
    fake_dir().join(b.dir).join("containerd")
}

/// One recording at a time: the 1 ms tolerance needs the CPUs.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn probes_json(bin: &Path) -> Value {
    let o = podtrace(&[
        "probes",
        "--containerd",
        bin.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        o.status.success(),
        "podtrace probes --containerd {}: {}\n{}",
        bin.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("probes JSON")
}

fn check_probes(b: &Build) {
    let bin = binary(b);
    let v = probes_json(&bin);
    let binfo = &v["binaries"][0];
    let layout = binfo["layout"].as_str().unwrap_or("");
    assert!(
        layout.starts_with(b.note),
        "{}: layout {layout:?}, want {:?}…",
        b.dir,
        b.note
    );
    let probes = binfo["probes"].as_array().expect("probes array");
    for h in &CRI_CALLS {
        let p = probes
            .iter()
            .find(|p| p["probe"] == *h)
            .unwrap_or_else(|| panic!("{}: no probe {h} in {binfo:#}", b.dir));
        let detail = p["detail"].as_str().unwrap_or("");
        assert_eq!(p["status"], "ok", "{}: {h}: {p:#}", b.dir);
        assert!(
            detail.starts_with(b.note),
            "{}: {h} resolved with variant {detail:?}, want {:?}…",
            b.dir,
            b.note
        );
        let package = match b.other {
            Some((probe, package)) if probe == *h => package,
            _ => b.package,
        };
        let targets = p["targets"].as_array().expect("targets");
        assert_eq!(targets.len(), 1, "{}: {h}: {targets:?}", b.dir);
        assert_eq!(
            targets[0]["symbol"].as_str(),
            Some(format!("{package}{h}").as_str()),
            "{}: {h} probes the wrong function",
            b.dir
        );
    }
}

#[test]
fn probes_containerd_1_7() {
    check_probes(&BUILDS[0]);
}

#[test]
fn probes_containerd_1_7_go1_19() {
    check_probes(&BUILDS[1]);
}

#[test]
fn probes_containerd_2_0() {
    check_probes(&BUILDS[2]);
}

#[test]
fn probes_containerd_2_2() {
    check_probes(&BUILDS[3]);
}

/// A probe of the trace header.
struct ProbeInfo {
    name: String,
    entry: Vec<String>,
    exit: Vec<String>,
}

/// One call as the trace saw it: entry and exit event of the same
/// goroutine.
struct Span {
    probe: u64,
    entry_t: i64,
    exit_t: i64,
    entry: Vec<Value>,
    exit: Vec<Value>,
}

struct Trace {
    probes: HashMap<u64, ProbeInfo>,
    spans: Vec<Span>,
    duplicate_entries: usize,
    unmatched_exits: usize,
    unreturned: usize,
}

fn names(caps: &Value) -> Vec<String> {
    caps.as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn read_trace(path: &Path) -> Trace {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading trace {}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Value =
        serde_json::from_str(lines.next().expect("trace header line")).expect("trace header JSON");
    let mut probes = HashMap::new();
    for p in header["header"]["probes"]
        .as_array()
        .expect("header.probes")
    {
        probes.insert(
            p["id"].as_u64().expect("probe id"),
            ProbeInfo {
                name: p["probe"].as_str().unwrap_or("").to_string(),
                entry: names(&p["entry_captures"]),
                exit: names(&p["exit_captures"]),
            },
        );
    }
    let mut events: Vec<Value> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("trace line JSON"))
        .filter_map(|v| v.get("e").cloned())
        .collect();
    events.sort_by_key(|e| e["t"].as_i64().unwrap_or(0));
    // Pair per goroutine and probe: (pid, goid or g, probe).
    let mut open: HashMap<(u64, u64, u64), Value> = HashMap::new();
    let mut spans = Vec::new();
    let (mut duplicate_entries, mut unmatched_exits) = (0, 0);
    for e in events {
        let goid = e["goid"].as_u64().unwrap_or(0);
        let g = if goid != 0 {
            goid
        } else {
            e["g"].as_u64().unwrap_or(0)
        };
        let key = (
            e["pid"].as_u64().unwrap_or(0),
            g,
            e["p"].as_u64().expect("event probe id"),
        );
        match e["k"].as_u64() {
            Some(1) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = open.entry(key) {
                    slot.insert(e);
                } else {
                    duplicate_entries += 1;
                }
            }
            Some(2) => match open.remove(&key) {
                Some(entry) => spans.push(Span {
                    probe: key.2,
                    entry_t: entry["t"].as_i64().unwrap_or(0),
                    exit_t: e["t"].as_i64().unwrap_or(0),
                    entry: entry["a"].as_array().cloned().unwrap_or_default(),
                    exit: e["a"].as_array().cloned().unwrap_or_default(),
                }),
                None => unmatched_exits += 1,
            },
            k => panic!("event kind {k:?}: {e}"),
        }
    }
    Trace {
        probes,
        spans,
        duplicate_entries,
        unmatched_exits,
        unreturned: open.len(),
    }
}

/// Whether captured value `got` is the ground truth's `want`.
fn same(got: &Value, want: &Value) -> bool {
    match want {
        Value::String(s) if s.is_empty() => got.is_null() || got.as_str() == Some(""),
        Value::String(s) => got.as_str() == Some(s.as_str()),
        Value::Bool(b) => got.as_u64() == Some(*b as u64) || got.as_bool() == Some(*b),
        Value::Number(n) => got.as_u64().is_some() && got.as_u64() == n.as_u64(),
        _ => false,
    }
}

fn captures_match(names: &[String], got: &[Value], gt: &Map<String, Value>) -> bool {
    names.iter().enumerate().all(|(i, n)| {
        let want = gt.get(n).unwrap_or_else(|| {
            panic!(
                "capture `{n}` has no field in the fake containerd's ground truth: \
                 add it to tests/fake-containerd/driver"
            )
        });
        same(got.get(i).unwrap_or(&Value::Null), want)
    })
}

fn show(names: &[String], got: &[Value]) -> String {
    names
        .iter()
        .zip(got.iter().chain(std::iter::repeat(&Value::Null)))
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A recording of a fake containerd run under `podtrace record`.
struct Run {
    trace: Trace,
    gt: Vec<Map<String, Value>>,
}

fn record(b: &Build, dir: &TempDir, catalogue: Option<&Path>, args: &[&str]) -> Run {
    // Own copy: uprobes go on the inode, and no other test's runs of the
    // same build may land in this trace.
    let bin = dir.join("containerd");
    std::fs::copy(binary(b), &bin).expect("copy the fake containerd");
    let trace_path = dir.join("t.trace");
    let gt_path = dir.join("gt.jsonl");
    let mut cmd = Command::new(podtrace_bin());
    cmd.args(["record", "--containerd"]).arg(&bin);
    if let Some(c) = catalogue {
        cmd.arg("--catalogue").arg(c);
    }
    let out = cmd
        .args(["-q", "-o"])
        .arg(&trace_path)
        .arg("--")
        .arg(&bin)
        .args(args)
        .arg("--ground-truth")
        .arg(&gt_path)
        .output()
        .expect("running podtrace record");
    assert!(
        out.status.success(),
        "{}: podtrace record failed: {}\nstderr:\n{}",
        b.dir,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let gt: Vec<Map<String, Value>> = std::fs::read_to_string(&gt_path)
        .unwrap_or_else(|e| panic!("{}: reading ground truth: {e}", b.dir))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("ground-truth JSON line"))
        .collect();
    let trace = read_trace(&trace_path);
    for h in &CRI_CALLS {
        assert!(
            trace.probes.values().any(|p| p.name == *h),
            "{}: no probe {h} in the trace header",
            b.dir
        );
    }
    Run { trace, gt }
}

/// How a recording compares with its ground truth.
struct Outcome {
    matched: usize,
    /// Ground-truth calls without a span of exactly their values, and
    /// matched calls whose timing is off.
    failures: Vec<String>,
    /// Spans that are no ground-truth call.
    extra: usize,
    summary: String,
}

fn compare(b: &Build, run: &Run) -> Outcome {
    let trace = &run.trace;
    let mut used = vec![false; trace.spans.len()];
    let mut failures = Vec::new();
    // per handler: (ground-truth calls, matched)
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut max_diff: i64 = 0;
    for g in &run.gt {
        let call = g["call"].as_str().expect("call");
        counts.entry(call).or_default().0 += 1;
        let stamp = |k: &str| {
            g[k].as_i64()
                .unwrap_or_else(|| panic!("ground truth has no {k}"))
        };
        let (start, end) = (stamp("start_mono_ns"), stamp("end_mono_ns"));
        let (in_start, in_end) = (stamp("inner_start_mono_ns"), stamp("inner_end_mono_ns"));
        let found = trace.spans.iter().enumerate().find(|(i, s)| {
            let p = &trace.probes[&s.probe];
            !used[*i]
                && p.name == call
                && captures_match(&p.entry, &s.entry, g)
                && captures_match(&p.exit, &s.exit, g)
        });
        let Some((i, s)) = found else {
            let seen: Vec<String> = trace
                .spans
                .iter()
                .filter(|s| trace.probes[&s.probe].name == call)
                .map(|s| {
                    let p = &trace.probes[&s.probe];
                    format!(
                        "  entry {} | exit {}",
                        show(&p.entry, &s.entry),
                        show(&p.exit, &s.exit)
                    )
                })
                .collect();
            failures.push(format!(
                "{call}: no span with the ground truth's values {}\n spans of {call}:\n{}",
                Value::Object(g.clone()),
                seen.join("\n")
            ));
            continue;
        };
        used[i] = true;
        counts.entry(call).or_default().1 += 1;
        // Exact: the probes fire between the driver's stamps around the
        // call and the handler's own stamps inside it. Within 1 ms of the
        // nearer of the two: a deschedule between a stamp and a probe only
        // ever widens one side.
        let d = s.exit_t - s.entry_t;
        let diff = (d - (in_end - in_start)).min((end - start) - d);
        max_diff = max_diff.max(diff);
        if s.entry_t < start
            || s.entry_t > in_start
            || s.exit_t < in_end
            || s.exit_t > end
            || diff > TOLERANCE_NS
        {
            failures.push(format!(
                "{call} of {}: traced [{}, {}] = {:.3} ms; handler's own stamps [{in_start}, {in_end}] = {:.3} ms; \
                 caller's [{start}, {end}] = {:.3} ms",
                g["pod_name"],
                s.entry_t,
                s.exit_t,
                d as f64 / 1e6,
                (in_end - in_start) as f64 / 1e6,
                (end - start) as f64 / 1e6
            ));
        }
    }
    let matched = counts.values().map(|c| c.1).sum::<usize>();
    let extra = used.iter().filter(|u| !**u).count();
    let per_call: Vec<String> = counts
        .iter()
        .map(|(c, (n, m))| format!("{c} {m}/{n}"))
        .collect();
    let summary = format!(
        "{}: {matched} of {} ground-truth calls captured exactly ({}); {extra} extra spans; \
         traced durations at most {:.1} us from the nearer ground truth; {} duplicate entries, {} unmatched exits, {} unreturned",
        b.dir,
        run.gt.len(),
        per_call.join(", "),
        max_diff as f64 / 1e3,
        trace.duplicate_entries,
        trace.unmatched_exits,
        trace.unreturned
    );
    Outcome {
        matched,
        failures,
        extra,
        summary,
    }
}

fn check_record(b: &Build, pods: usize, parallel: bool) {
    let _serial = serial();
    let dir = TempDir::new(&format!("fake-{}", b.dir));
    let pods_arg = pods.to_string();
    let mut args = vec!["--pods", pods_arg.as_str()];
    if parallel {
        args.push("--parallel");
    }
    let run = record(b, &dir, None, &args);
    assert_eq!(
        run.gt.len(),
        CRI_CALLS.len() * pods + 1,
        "{}: ground-truth calls",
        b.dir
    );
    let o = compare(b, &run);
    eprintln!(
        "{}{}",
        o.summary,
        if parallel { " [--parallel]" } else { "" }
    );
    assert!(
        o.failures.is_empty(),
        "{}: {} problems:\n{}",
        b.dir,
        o.failures.len(),
        o.failures.join("\n")
    );
    assert_eq!(o.matched, run.gt.len(), "{}", o.summary);
    assert_eq!(o.extra, 0, "{}: spans without a ground-truth call", b.dir);
    assert_eq!(
        (run.trace.unmatched_exits, run.trace.unreturned),
        (0, 0),
        "{}: unpaired events",
        b.dir
    );
}

#[test]
fn record_containerd_1_7() {
    check_record(&BUILDS[0], PODS, false);
}

#[test]
fn record_containerd_1_7_go1_19() {
    check_record(&BUILDS[1], PODS, false);
}

#[test]
fn record_containerd_2_0() {
    check_record(&BUILDS[2], PODS, false);
}

#[test]
fn record_containerd_2_2() {
    check_record(&BUILDS[3], PODS, false);
}

/// Concurrent pods: calls of different pods overlap on different
/// goroutines (and goroutine structs get reused).
#[test]
fn record_containerd_2_2_parallel_pods() {
    check_record(&BUILDS[3], 6, true);
}

/// The layouts really differ: with the catalogue edited by `edit`, not a
/// single call of build `b` is captured right.
fn wrong_layout_matches_nothing(b: &Build, edit: impl Fn(&str) -> String) {
    let _serial = serial();
    let dir = TempDir::new(&format!("fake-wrong-{}", b.dir));
    let cat = dir.join("containerd.toml");
    let text = std::fs::read_to_string(root().join("tracer/catalogue/containerd.toml"))
        .expect("reading tracer/catalogue/containerd.toml");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&cat, edited).unwrap();
    let run = record(b, &dir, Some(&cat), &["--pods", &PODS.to_string()]);
    let o = compare(b, &run);
    eprintln!("{} [wrong layout]", o.summary);
    assert_eq!(
        o.matched, 0,
        "{}: calls captured right with the wrong layout: {}",
        b.dir, o.summary
    );
}

/// containerd 2.2 read with gogo offsets (the +8 of protobuf-go dropped).
#[test]
fn containerd_2_2_without_path_shift_matches_nothing() {
    wrong_layout_matches_nothing(&BUILDS[3], |t| {
        t.replace("path_shift = 8", "path_shift = 0")
    });
}

/// containerd 2.0 read with protobuf-go offsets (the +8 variants' condition
/// changed from protobuf-go's ProtoReflect to Reset, which gogo has too, so
/// the +8 variant applies to the gogo layout).
#[test]
fn containerd_2_0_with_path_shift_matches_nothing() {
    wrong_layout_matches_nothing(&BUILDS[2], |t| {
        t.lines()
            .map(|l| {
                if l.trim_start().starts_with("when_symbol") {
                    l.replace(").ProtoReflect", ").Reset")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
}
