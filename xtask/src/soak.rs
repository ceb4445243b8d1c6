//! The collector soak (`cargo xtask bench` ends with it; `cargo xtask soak`
//! alone): `podtrace record --metrics` of the kubelet-shaped workload
//! starting pods continuously, once at a kubelet-like event rate (about 1k
//! events/s) and once compressed (loops and pods many times faster), each
//! for [`WINDOW`]. The collector's RSS (VmRSS, sampled every 250 ms: max,
//! and at the start and end of the window to show it flat) and CPU
//! (utime+stime over the window) against the targets: under 40 MB and 1% of
//! a core at 1k events/s. The ring buffer is record's default
//! ([`RING_MIB`]): its pages count in VmRSS twice.

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
const CPU_TARGET_PCT: f64 = 1.0;

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

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
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

fn run_case(c: &Case, wl: &Path, dir: &Path) -> Result<Outcome> {
    let trace = dir.join(format!("soak-{}.trace", c.name));
    let mut child = Command::new(podtrace_bin())
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
    let ticks0 = cpu_ticks(pid).context("reading the collector's CPU time")?;
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
    let ticks1 = cpu_ticks(pid).context("reading the collector's CPU time")?;
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
        cpu_pct: (ticks1 - ticks0) as f64 / clock_ticks() / wall * 100.0,
        pods: metric(&text, "podtrace_pod_starts_total"),
    })
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
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for c in CASES {
        step(&format!(
            "soak: record --metrics, {} workload ({} s measured)",
            c.name,
            WINDOW.as_secs()
        ));
        rows.push((c.name, run_case(c, &wl, &dir)?));
    }
    println!(
        "\ncollector soak: `record --metrics` over {} s (targets at ~1k events/s: RSS < {RSS_TARGET_MB} MB, CPU < {CPU_TARGET_PCT}% of a core)",
        WINDOW.as_secs()
    );
    println!(
        "(record's default --ring-mib {RING_MIB}: VmRSS includes the ring mapped twice, {} MiB; heap = RssAnon)",
        2 * RING_MIB
    );
    println!(
        "{:<14} {:>10} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "case", "events/s", "drops", "pods", "RSS start", "RSS end", "RSS max", "heap max", "CPU %"
    );
    for (name, o) in &rows {
        println!(
            "{name:<14} {:>10.0} {:>7} {:>7.0} {:>8.1}MB {:>8.1}MB {:>8.1}MB {:>8.1}MB {:>8.2}",
            o.events_per_s,
            o.drops,
            o.pods,
            o.rss_start_mb,
            o.rss_end_mb,
            o.rss_max_mb,
            o.anon_max_mb,
            o.cpu_pct
        );
    }
    if let Some((_, o)) = rows.first() {
        println!(
            "kubelet-like: RSS max {:.1} MB ({} {RSS_TARGET_MB} MB), CPU {:.2}% ({} {CPU_TARGET_PCT}%)",
            o.rss_max_mb,
            if o.rss_max_mb < RSS_TARGET_MB { "under" } else { "OVER" },
            o.cpu_pct,
            if o.cpu_pct < CPU_TARGET_PCT { "under" } else { "OVER" },
        );
    }
    Ok(())
}
