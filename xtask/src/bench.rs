//! `cargo xtask bench`: what a probe hit costs the traced program.
//!
//! One Go program (tests/bench) calls `main.hot` in a loop and prints its mean
//! ns per call. Cost per hit = (ns/call with probes − ns/call without) / hits
//! per call, all measured in this run, each the median of several runs.
//! bpftrace counting the same function (`@c = count()`) is the baseline.
//! The `--ebpf-log` rows measure the capture diagnostics: off (the default)
//! and on, with captures that succeed and with one that fails on every hit.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{paths, podtrace_bin, root, sh, step};

const REPEATS: usize = 3;

fn build_bench(out: &Path) -> Result<()> {
    sh(Command::new(paths::go119())
        .current_dir(root().join("tests/bench"))
        .args(["build", "-o"])
        .arg(out)
        .arg(".")
        .envs(paths::go_env()))
}

/// Runs `cmd` and returns (ns per call, stdout) from the bench JSON line.
fn measure(cmd: &mut Command) -> Result<(f64, String)> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}\n{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("{\"calls\""))
        .with_context(|| format!("no result line from {cmd:?}: {stdout}"))?;
    let v: Value = serde_json::from_str(line)?;
    let ns = v["ns_per_call"].as_f64().context("ns_per_call")?;
    Ok((ns, String::from_utf8_lossy(&out.stderr).into_owned()))
}

fn median_of(mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut v = (0..REPEATS).map(|_| f()).collect::<Result<Vec<_>>>()?;
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

struct Row {
    name: &'static str,
    ns_per_call: f64,
    hits_per_call: f64,
}

pub fn run() -> Result<()> {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("bench");
    step("building the bench program (Go 1.19)");
    build_bench(&bin)?;
    let catalogue = root().join("tests/bench/bench.toml");
    let failing = root().join("tests/bench/bench-fail.toml");
    let trace = dir.join("bench.trace");
    let n_fast = "400000";
    let n_slow = "60000";

    let podtrace_with =
        |catalogue: &std::path::Path, n: &'static str, extra: &'static [&'static str]| {
            let bin = bin.clone();
            let catalogue = catalogue.to_path_buf();
            let trace = trace.clone();
            move || -> Result<f64> {
                // A run whose collector lost events (a 16 MiB ring holds
                // ~35 ms at 1M events/s: another tenant of this shared VM
                // taking the collector's CPU that long is enough) is run
                // again, a few times at most, and said.
                let mut last = String::new();
                for attempt in 1..=5 {
                    let _ = std::fs::remove_file(&trace);
                    let mut c = Command::new(podtrace_bin());
                    // 1M+ events/s from one hot function: more than record's
                    // default 8 MiB ring (sized for kubelet's rates) holds
                    // between two 20 ms drains.
                    c.args(["record", "-q", "--ring-mib", "16", "--catalogue"])
                        .arg(&catalogue)
                        .arg("-o")
                        .arg(&trace)
                        .args(extra)
                        .arg("--")
                        .arg(&bin)
                        .args(["-n", n]);
                    let (ns, stderr) = measure(&mut c)?;
                    if stderr.contains(" 0 dropped") {
                        return Ok(ns);
                    }
                    eprintln!(
                        "    run {attempt} dropped events, again: {}",
                        stderr.lines().find(|l| l.contains("dropped")).unwrap_or("")
                    );
                    last = stderr;
                }
                bail!("events were dropped in 5 runs: {last}")
            }
        };
    let podtrace = |n, extra| podtrace_with(&catalogue, n, extra);

    step("baseline: no probes");
    let base_fast = median_of(|| measure(Command::new(&bin).args(["-n", n_fast])).map(|r| r.0))?;
    let base_slow = median_of(|| measure(Command::new(&bin).args(["-n", n_slow])).map(|r| r.0))?;
    let base = base_fast.min(base_slow);
    let mut rows = Vec::new();

    step("podtrace entry probe on the prologue's stack-check jump (emulated)");
    rows.push(Row {
        name: "podtrace entry @ prologue jump",
        ns_per_call: median_of(podtrace(n_fast, &["--sites", "entry"]))?,
        hits_per_call: 1.0,
    });
    step("podtrace entry probe on the prologue's stack-check jump, one perf-event link per site");
    rows.push(Row {
        name: "podtrace entry @ jump, per-site link",
        ns_per_call: median_of(podtrace(
            n_fast,
            &["--sites", "entry", "--links", "per-site"],
        ))?,
        hits_per_call: 1.0,
    });
    step("podtrace entry probe on the function's first instruction (single-stepped)");
    rows.push(Row {
        name: "podtrace entry @ function start",
        ns_per_call: median_of(podtrace(
            n_slow,
            &["--sites", "entry", "--entry-at-function-start"],
        ))?,
        hits_per_call: 1.0,
    });
    step("podtrace exit probe on the RET (single-stepped)");
    rows.push(Row {
        name: "podtrace exit @ RET",
        ns_per_call: median_of(podtrace(n_slow, &["--sites", "exit"]))?,
        hits_per_call: 1.0,
    });
    step("podtrace entry (jump) + exit, as `podtrace record` attaches by default");
    let both = median_of(podtrace(n_slow, &[]))?;
    rows.push(Row {
        name: "podtrace entry + exit (per call)",
        ns_per_call: both,
        hits_per_call: 1.0,
    });
    step("bpftrace: uprobe on main.hot, @c = count()");
    let bt = median_of(|| {
        measure(
            Command::new("bpftrace")
                .arg("-e")
                .arg(format!(
                    "uprobe:{}:main.hot {{ @c = count(); }}",
                    bin.display()
                ))
                .arg("-c")
                .arg(format!("{} -n {n_slow}", bin.display())),
        )
        .map(|r| r.0)
    })?;
    let bt_cost = bt - base;
    rows.push(Row {
        name: "bpftrace count() @ function start",
        ns_per_call: bt,
        hits_per_call: 1.0,
    });

    // --ebpf-log: the capture diagnostics. Off, aya-log's level global is 0
    // and the verifier drops the log code; on, a hit whose capture fails
    // formats and writes a log record.
    step("podtrace entry (jump), every capture failing, --ebpf-log off");
    let fail_off = median_of(podtrace_with(&failing, n_fast, &["--sites", "entry"]))?;
    step("podtrace entry (jump), every capture failing, --ebpf-log on");
    let fail_on = median_of(podtrace_with(
        &failing,
        n_fast,
        &["--sites", "entry", "--ebpf-log"],
    ))?;
    step("podtrace entry (jump), captures fine, --ebpf-log on");
    let ok_on = median_of(podtrace(n_fast, &["--sites", "entry", "--ebpf-log"]))?;

    println!("\nprobe cost per hit (median of {REPEATS} runs; baseline {base:.1} ns/call without probes)");
    println!("{:<36} {:>12} {:>14}", "probe", "ns/hit", "vs bpftrace");
    for r in &rows {
        let cost = (r.ns_per_call - base) / r.hits_per_call;
        println!("{:<36} {:>12.0} {:>13.2}x", r.name, cost, cost / bt_cost);
    }
    let jump = (rows[0].ns_per_call - base).max(1.0);
    println!("(rows without a link kind: one uprobe_multi link; the per-site row is the fallback)");
    println!(
        "\n--ebpf-log, entry probe at the prologue jump (ns/hit; ratio to the plain entry probe above, {jump:.0} ns)"
    );
    println!("{:<36} {:>12} {:>14}", "case", "ns/hit", "vs plain");
    for (name, ns) in [
        ("captures fine, log on", ok_on),
        ("capture fails, log off", fail_off),
        ("capture fails, log on", fail_on),
    ] {
        let cost = ns - base;
        println!("{name:<36} {cost:>12.0} {:>13.2}x", cost / jump);
    }
    println!(
        "log on/off with a failing capture: {:.2}x",
        (fail_on - base) / (fail_off - base).max(1.0)
    );
    // Sustained rate: events per second of the traced program's run with both
    // probes, all delivered (the run fails above if any were dropped).
    let rate = 2.0 * 1e9 / both;
    println!("\nsustained: {rate:.0} events/s (entry+exit on every call), 0 dropped");
    Ok(())
}

/// One run of a command: wall time and the child's peak RSS.
struct Usage {
    secs: f64,
    max_rss_kib: u64,
}

/// Runs `cmd` (output discarded) and returns its wall time and peak RSS,
/// from wait4's rusage of that child alone.
fn usage(cmd: &mut Command) -> Result<Usage> {
    let started = std::time::Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; zeroed is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and ru are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let secs = started.elapsed().as_secs_f64();
    if r != pid {
        bail!("waiting for {cmd:?}: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut err);
        }
        bail!("{cmd:?} failed (wait status {status}): {err}");
    }
    Ok(Usage {
        secs,
        max_rss_kib: ru.ru_maxrss as u64,
    })
}

/// Median wall time and the largest peak RSS of `REPEATS` runs.
fn usage_median(mut f: impl FnMut() -> Command) -> Result<Usage> {
    let mut runs = (0..REPEATS)
        .map(|_| usage(&mut f()))
        .collect::<Result<Vec<_>>>()?;
    let rss = runs.iter().map(|u| u.max_rss_kib).max().unwrap_or(0);
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    Ok(Usage {
        secs: runs[runs.len() / 2].secs,
        max_rss_kib: rss,
    })
}

/// `cargo xtask bench` (also `--read-only`): reading long recordings.
/// A synthetic busy node (examples/busy_node: 100 running pods resyncing
/// every 60 s, PLEG relisting every second, reconciler and populator every
/// 100 ms, a pod start with its CRI calls every 5 s) recorded for 15 min
/// and for one hour; `podtrace report` and `export` read each. `wc -l` of
/// the same file is the baseline for speed, so the ratios mean the same on
/// any machine; the peak RSS of the hour against the quarter shows what
/// memory grows with (the spans, not the events).
pub fn read() -> Result<()> {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    step("building podtrace and the busy-node trace generator (release)");
    // Two builds: the example has the dev-dependencies' features, which
    // must not leak into the podtrace binary measured.
    for target in [["--bin", "podtrace"], ["--example", "busy_node"]] {
        sh(Command::new("cargo")
            .current_dir(root())
            .args(["build", "--release", "-p", "podtrace"])
            .args(target))?;
    }
    let gen = root().join("target/release/examples/busy_node");
    let podtrace = podtrace_bin();
    // Printed at the end, after the build and generator messages.
    let mut table = vec![
        format!(
            "\nreading a busy node's recording (median of {REPEATS} runs; peak RSS the largest)"
        ),
        format!(
            "{:<9} {:<24} {:>9} {:>12} {:>10} {:>10} {:>10}",
            "trace", "command", "seconds", "events/s", "MiB/s", "vs wc -l", "peak RSS"
        ),
    ];
    for (label, secs) in [("15 min", 900u64), ("1 hour", 3600)] {
        let trace = dir.join(format!("busy-{secs}s.trace"));
        step(&format!("writing a {label} busy-node recording"));
        let out = Command::new(&gen)
            .arg(&trace)
            .arg(secs.to_string())
            .output()
            .with_context(|| format!("running {}", gen.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed: {}",
                gen.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("busy_node's summary line")?;
        let events = v["events"].as_f64().context("events")?;
        let bytes = v["bytes"].as_f64().context("bytes")?;
        table.push(format!(
            "{label}: {} events, {} spans, {} pod starts, {:.1} MiB",
            events,
            v["spans"],
            v["pod_starts"],
            bytes / 1048576.0
        ));
        let wc = usage_median(|| {
            let mut c = Command::new("wc");
            c.arg("-l").arg(&trace);
            c
        })?;
        let cmds: [(&str, &[&str]); 3] = [
            ("report --format json", &["report", "--format", "json"]),
            (
                "export --format csv",
                &["export", "--format", "csv", "-o", "/dev/null"],
            ),
            (
                "export --format chrome",
                &["export", "--format", "chrome", "-o", "/dev/null"],
            ),
        ];
        for (name, args) in cmds {
            let u = usage_median(|| {
                let mut c = Command::new(&podtrace);
                c.args(args).arg(&trace);
                c
            })?;
            table.push(format!(
                "{label:<9} {name:<24} {:>9.2} {:>12.0} {:>10.1} {:>9.1}x {:>7.0} MiB",
                u.secs,
                events / u.secs,
                bytes / 1048576.0 / u.secs,
                u.secs / wc.secs.max(1e-6),
                u.max_rss_kib as f64 / 1024.0
            ));
        }
        table.push(format!(
            "{label:<9} {:<24} {:>9.3} {:>12.0} {:>10.1} {:>9.1}x {:>7.0} MiB",
            "wc -l (baseline)",
            wc.secs,
            events / wc.secs,
            bytes / 1048576.0 / wc.secs,
            1.0,
            wc.max_rss_kib as f64 / 1024.0
        ));
    }
    println!("{}", table.join("\n"));
    Ok(())
}
