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

use crate::{podtrace_bin, root, setup, sh, step};

const REPEATS: usize = 3;

fn build_bench(out: &Path) -> Result<()> {
    sh(Command::new(setup::go119())
        .current_dir(root().join("tests/bench"))
        .args(["build", "-o"])
        .arg(out)
        .arg(".")
        .envs(setup::go_env()))
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
                let mut c = Command::new(podtrace_bin());
                c.args(["record", "-q", "--catalogue"])
                    .arg(&catalogue)
                    .arg("-o")
                    .arg(&trace)
                    .args(extra)
                    .arg("--")
                    .arg(&bin)
                    .args(["-n", n]);
                let (ns, stderr) = measure(&mut c)?;
                if !stderr.contains(" 0 dropped") {
                    bail!("events were dropped: {stderr}");
                }
                Ok(ns)
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
