//! The collector soak (`cargo xtask bench` ends with it; `cargo xtask soak`
//! alone): `podtrace record --metrics` of the kubelet-shaped workload
//! starting pods continuously, once at a kubelet-like event rate (about 1k
//! events/s), once compressed (loops and pods many times faster), and once
//! on an idle node (no pod starts: only kubelet's loops tick), each for
//! [`WINDOW`]. The collector's RSS (VmRSS, sampled every 250 ms: max, and
//! at the start and end of the window to show it flat) and CPU (the
//! scheduler's run time of all its threads, /proc/PID/task/*/schedstat, in
//! ns: tick-based utime+stime cannot tell 0.05 % from 0.1 %) against the
//! targets: under 40 MB, 0.3 % of a core at 1k events/s and 0.1 % idle.
//! The ring buffer is record's default ([`RING_MIB`]): its pages count in
//! VmRSS twice.
//!
//! CPU figures on a shared VM move with its other load: with
//! `PODTRACE_SOAK_BASELINE=/path/to/an/older/podtrace` each case runs with
//! both binaries, alternately, `PODTRACE_SOAK_RUNS` times (default 1), and
//! the table gives each one's median and range.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{podtrace_bin, root, step, workload_dir};

/// Measured span of each run, after [`WARMUP`].
const WINDOW: Duration = Duration::from_secs(45);
const WARMUP: Duration = Duration::from_secs(5);
const RSS_TARGET_MB: f64 = 40.0;
/// The ring buffer's pages are mapped into the collector (twice: the data
/// area is mapped back to back so records never wrap), all of them from the
/// start, so VmRSS holds 2 x the ring. `record`'s default, not passed:
/// the soak measures what a node runs.
const RING_MIB: u32 = 8;
const CPU_TARGET_PCT: f64 = 0.3;
const IDLE_CPU_TARGET_PCT: f64 = 0.1;

struct Case {
    name: &'static str,
    /// Workload arguments: pods keep arriving for 60 s (longer than
    /// [`WARMUP`] + [`WINDOW`]); the recording ends with the workload.
    args: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "kubelet-like",
        // The tuned kubelet's loop periods (30 ms poll, 10 ms loops, 100 ms
        // PLEG), 12 pod starts a second: about 1k events/s (10 a second
        // gave 846). (Stock periods, 300/100/100 ms and 1 s, give about 200
        // events/s at 5 pods/s.)
        args: &[
            "--pods",
            "720",
            "--rate",
            "12",
            "--volumes",
            "3",
            "--preset",
            "tuned",
        ],
    },
    Case {
        name: "idle",
        // No pod starts: the stock loop periods (reconciler and populator
        // 100 ms, PLEG 1 s) tick for the whole run, as on a node at rest.
        args: &["--pods", "0", "--linger", "60s"],
    },
    Case {
        name: "compressed",
        // Loops 100x faster (1 ms), polls every 3 ms, 10 pods/s. (Many
        // more pods than that slow the workload's own loops down: each
        // tick walks every pod it has.)
        args: &[
            "--pods",
            "600",
            "--rate",
            "10",
            "--volumes",
            "3",
            "--poll-interval",
            "3ms",
            "--reconciler-period",
            "1ms",
            "--populator-period",
            "1ms",
            "--pleg-period",
            "10ms",
        ],
    },
];

/// CPU time of all of `pid`'s threads so far, in ns: the scheduler's own
/// account (/proc/PID/task/*/schedstat, first field), exact to the ns
/// where utime+stime count 10 ms ticks. (Threads that exited within the
/// window are not counted: the collector's threads live as long as it.)
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for t in tasks.flatten() {
        let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        total += s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// (VmRSS, RssAnon) of `pid`, in kB.
fn rss_kb(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

struct Outcome {
    events_per_s: f64,
    drops: u64,
    rss_start_mb: f64,
    rss_end_mb: f64,
    rss_max_mb: f64,
    anon_max_mb: f64,
    cpu_pct: f64,
    pods: f64,
}

/// A sample's value from the text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut t = String::new();
    s.read_to_string(&mut t).ok()?;
    Some(t)
}

fn run_case(bin: &Path, c: &Case, wl: &Path, dir: &Path) -> Result<Outcome> {
    let trace = dir.join(format!("soak-{}.trace", c.name));
    let mut child = Command::new(bin)
        .args(["record", "-q", "--metrics", "127.0.0.1:0"])
        .arg("-o")
        .arg(&trace)
        .arg("--")
        .arg(wl)
        .args(c.args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting podtrace record")?;
    let pid = child.id();
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut addr = None;
    let mut lines = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while addr.is_none() && Instant::now() < until {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(a) = l
                .strip_prefix("podtrace: metrics at http://")
                .and_then(|r| r.strip_suffix("/metrics"))
            {
                addr = Some(a.to_string());
            }
            lines.push(l);
        }
    }
    let Some(addr) = addr else {
        let _ = child.kill();
        bail!(
            "podtrace did not say where its metrics are:\n{}",
            lines.join("\n")
        );
    };
    std::thread::sleep(WARMUP);
    let cpu0 = cpu_ns(pid).context("reading the collector's CPU time")?;
    let t0 = Instant::now();
    let events0 = scrape(&addr).map_or(0.0, |t| metric(&t, "podtrace_events_total"));
    let (rss_start, mut anon_max) = rss_kb(pid).unwrap_or((0, 0));
    let mut rss_max = rss_start;
    let mut rss_end = rss_start;
    while t0.elapsed() < WINDOW {
        std::thread::sleep(Duration::from_millis(250));
        if let Some((r, anon)) = rss_kb(pid) {
            rss_max = rss_max.max(r);
            anon_max = anon_max.max(anon);
            rss_end = r;
        }
    }
    let cpu1 = cpu_ns(pid).context("reading the collector's CPU time")?;
    let wall = t0.elapsed().as_secs_f64();
    let text = scrape(&addr).context("scraping the collector's metrics")?;
    let events = metric(&text, "podtrace_events_total") - events0;
    let status = child.wait().context("waiting for podtrace record")?;
    for l in rx.try_iter() {
        lines.push(l);
    }
    if !status.success() {
        let tail = &lines[lines.len().saturating_sub(8)..];
        let tail: Vec<String> = tail.iter().map(|l| l.chars().take(300).collect()).collect();
        bail!("podtrace record failed: {status}\n{}", tail.join("\n"));
    }
    let _ = std::fs::remove_file(&trace);
    Ok(Outcome {
        events_per_s: events / wall,
        drops: metric(&text, "podtrace_dropped_events_total") as u64,
        rss_start_mb: rss_start as f64 / 1024.0,
        rss_end_mb: rss_end as f64 / 1024.0,
        rss_max_mb: rss_max as f64 / 1024.0,
        anon_max_mb: anon_max as f64 / 1024.0,
        cpu_pct: cpu1.saturating_sub(cpu0) as f64 / 1e9 / wall * 100.0,
        pods: metric(&text, "podtrace_pod_starts_total"),
    })
}

/// The median and range of `v`.
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[0], v[n - 1])
}

fn cpu_cell(v: &[f64]) -> String {
    let (med, lo, hi) = spread(v);
    if v.len() == 1 {
        format!("{med:.3}")
    } else {
        format!("{med:.3} ({lo:.3}-{hi:.3})")
    }
}

pub fn run() -> Result<()> {
    let wl = workload_dir().join("go1.26-kubelet1.36/kubelet");
    if !podtrace_bin().is_file() || !wl.is_file() {
        bail!(
            "{} or {} missing: run `cargo xtask build` first",
            podtrace_bin().display(),
            wl.display()
        );
    }
    let baseline = std::env::var_os("PODTRACE_SOAK_BASELINE").map(std::path::PathBuf::from);
    if let Some(b) = &baseline {
        if !b.is_file() {
            bail!("PODTRACE_SOAK_BASELINE={}: no such file", b.display());
        }
    }
    let runs: usize = std::env::var("PODTRACE_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut bins = vec![("this", podtrace_bin())];
    if let Some(b) = baseline {
        bins.push(("baseline", b));
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    // (case, binary) -> outcomes, runs alternating between the binaries.
    let mut rows: Vec<(&str, &str, Vec<Outcome>)> = Vec::new();
    for c in CASES {
        for (label, _) in &bins {
            rows.push((c.name, label, Vec::new()));
        }
        for r in 0..runs {
            for (label, bin) in &bins {
                step(&format!(
                    "soak: record --metrics, {} workload, {label} ({}), run {}/{runs} ({} s measured)",
                    c.name,
                    bin.display(),
                    r + 1,
                    WINDOW.as_secs()
                ));
                let o = run_case(bin, c, &wl, &dir)?;
                if let Some(row) = rows.iter_mut().find(|(n, l, _)| *n == c.name && l == label) {
                    row.2.push(o);
                }
            }
        }
    }
    println!(
        "\ncollector soak: `record --metrics` over {} s, {runs} run(s) each (targets: RSS < {RSS_TARGET_MB} MB; CPU < {CPU_TARGET_PCT}% of a core at ~1k events/s, < {IDLE_CPU_TARGET_PCT}% idle)",
        WINDOW.as_secs()
    );
    println!(
        "(record's default --ring-mib {RING_MIB}: VmRSS includes the ring mapped twice, {} MiB; heap = RssAnon; CPU: median (min-max))",
        2 * RING_MIB
    );
    println!(
        "{:<12} {:<9} {:>9} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>22}",
        "case",
        "binary",
        "events/s",
        "drops",
        "pods",
        "RSS start",
        "RSS end",
        "RSS max",
        "heap max",
        "CPU %"
    );
    let mut verdicts = Vec::new();
    for (name, label, os) in &rows {
        let f = |g: fn(&Outcome) -> f64| spread(&os.iter().map(g).collect::<Vec<_>>()).0;
        let cpu: Vec<f64> = os.iter().map(|o| o.cpu_pct).collect();
        println!(
            "{name:<12} {label:<9} {:>9.0} {:>6} {:>6.0} {:>8.1}MB {:>8.1}MB {:>8.1}MB {:>8.1}MB {:>22}",
            f(|o| o.events_per_s),
            os.iter().map(|o| o.drops).max().unwrap_or(0),
            f(|o| o.pods),
            f(|o| o.rss_start_mb),
            f(|o| o.rss_end_mb),
            os.iter().map(|o| o.rss_max_mb).fold(0.0, f64::max),
            os.iter().map(|o| o.anon_max_mb).fold(0.0, f64::max),
            cpu_cell(&cpu)
        );
        if *label == "this" {
            let target = match *name {
                "kubelet-like" => Some(CPU_TARGET_PCT),
                "idle" => Some(IDLE_CPU_TARGET_PCT),
                _ => None,
            };
            if let Some(t) = target {
                let med = spread(&cpu).0;
                let rss = os.iter().map(|o| o.rss_max_mb).fold(0.0, f64::max);
                verdicts.push(format!(
                    "{name}: RSS max {rss:.1} MB ({} {RSS_TARGET_MB} MB), CPU {med:.3}% ({} {t}%)",
                    if rss < RSS_TARGET_MB { "under" } else { "OVER" },
                    if med < t { "under" } else { "OVER" },
                ));
            }
        }
    }
    for v in verdicts {
        println!("{v}");
    }
    Ok(())
}
