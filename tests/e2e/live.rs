//! `podtrace record --metrics` and `--otlp-endpoint`, live: a real
//! Prometheus (Debian's `prometheus`) scrapes podtrace while it records the
//! kubelet-shaped workload, and its query API's histogram quantile agrees
//! with podtrace's own report; an OTLP/HTTP receiver gets each pod's spans
//! while the recording still runs; without `--metrics` no socket listens.

#[path = "shared/otlp_http.rs"]
mod otlp_http;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use otlp_http::{attr, otlp_receiver};
use podtrace_tests::{
    median, podtrace_bin, read_gt, report_json, spawn_until,
    util::{free_port, http_get},
    workload, Guard, TempDir,
};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const VARIANT: &str = "go1.26-kubelet1.36";

fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server of our own (temp config and storage, never the
/// packaged service), scraping `target` every second.
struct Prometheus {
    addr: String,
    _child: Guard,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &TempDir, target: &str) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} missing: install Debian's `prometheus` package (cargo xtask setup does)"
        );
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: podtrace\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("prometheus log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {PROMETHEUS}: {e}"));
        let mut p = Prometheus {
            addr,
            _child: Guard::new(child),
            log,
        };
        let t = Instant::now();
        while http_get(&p.addr, "/-/ready").is_none_or(|(s, _)| s != 200) {
            assert!(
                p._child.try_wait().is_none(),
                "prometheus exited:\n{}",
                p.log_text()
            );
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "prometheus not ready after 60 s:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query's single value (panics unless exactly one series).
    fn scalar(&self, q: &str) -> f64 {
        let (status, body) = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", encode_query(q)),
        )
        .unwrap_or_else(|| panic!("querying prometheus at {}", self.addr));
        assert_eq!(status, 200, "query {q}: {body}");
        let v: Value = serde_json::from_str(&body).expect("query answer JSON");
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            result.len(),
            1,
            "query {q}: expected one series, got {body}"
        );
        result[0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("query {q}: no value in {body}"))
    }
}

/// Inodes of the TCP sockets in LISTEN state (IPv4 and IPv6).
fn listening_inodes() -> BTreeMap<u64, u16> {
    let mut out = BTreeMap::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for l in text.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() > 9 && c[3] == "0A" {
                let port = c[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    .unwrap_or(0);
                if let Ok(ino) = c[9].parse() {
                    out.insert(ino, port);
                }
            }
        }
    }
    out
}

/// The TCP ports process `pid` listens on (its fds that are listening sockets).
fn listening_ports(pid: u32) -> Vec<u16> {
    let listening = listening_inodes();
    let mut ports = Vec::new();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"));
    for fd in fds.flatten() {
        let Ok(link) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        if let Some(ino) = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            if let Some(p) = listening.get(&ino) {
                ports.push(*p);
            }
        }
    }
    ports
}

fn record_cmd(
    dir: &TempDir,
    extra: &[&str],
    pods: u32,
    linger: &str,
) -> (Command, PathBuf, PathBuf) {
    let trace = dir.join("live.trace");
    let gt = dir.join("live.gt.jsonl");
    let mut cmd = Command::new(podtrace_bin());
    cmd.args(["record", "-o"])
        .arg(&trace)
        .args(extra)
        .arg("--")
        .arg(workload(VARIANT))
        .args([
            "--pods",
            &pods.to_string(),
            "--rate",
            "3",
            "--volumes",
            "2",
            "--start-delay",
            "500ms",
            "--linger",
            linger,
            "--ground-truth",
        ])
        .arg(&gt);
    (cmd, trace, gt)
}

fn wait_exit(g: &mut Guard, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = g.try_wait() {
            return st;
        }
        assert!(
            t.elapsed() < limit,
            "podtrace record still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sample's value from the text exposition (first series matching all
/// of `labels`), None if absent.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                && labels.iter().all(|x| l.contains(x))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn prometheus_scrapes_metrics_that_agree_with_the_report() {
    let dir = TempDir::new("live-metrics");
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let prom = Prometheus::start(&dir, &target);
    const PODS: u32 = 15;
    // --linger: the workload (and podtrace) run on after the last pod, so
    // Prometheus scrapes every pod's numbers.
    let (mut cmd, trace, gt) = record_cmd(&dir, &["--metrics", &target], PODS, "5s");
    let (mut g, _) = spawn_until(&mut cmd, "podtrace: recording to", Duration::from_secs(60));
    // The metrics socket is podtrace's, on the given port, and serves.
    let ports = listening_ports(g.id());
    assert_eq!(ports, vec![port], "podtrace's listening sockets");
    let (status, text) = http_get(&target, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert_eq!(
        sample(&text, "podtrace_dropped_events_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "podtrace_probe_status",
            &["binary=\"kubelet\"", "status=\"ok\""]
        ),
        Some(1.0),
        "{text}"
    );
    let (status, _) = http_get(&target, "/").expect("GET /");
    assert_eq!(status, 404);
    // Mid-recording, pods are counted as they finish starting.
    let t = Instant::now();
    let mut live_text = String::new();
    while t.elapsed() < Duration::from_secs(30) && g.try_wait().is_none() {
        if let Some((200, body)) = http_get(&target, "/metrics") {
            let starts = sample(&body, "podtrace_pod_starts_total", &[]).unwrap_or(0.0);
            live_text = body;
            if starts >= f64::from(PODS) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        sample(&live_text, "podtrace_pod_starts_total", &[]),
        Some(f64::from(PODS)),
        "every pod counted while recording:\n{live_text}"
    );
    assert!(
        live_text.contains("# TYPE podtrace_mount_wait_seconds histogram"),
        "{live_text}"
    );
    let st = wait_exit(&mut g, Duration::from_secs(60));
    assert!(st.success(), "podtrace record: {st}");
    // Let Prometheus' last scrapes land in its head block.
    std::thread::sleep(Duration::from_secs(2));

    let report = report_json(&trace);
    let pods = report["pods"].as_array().expect("report pods");
    let gt_pods: BTreeSet<String> = read_gt(&gt)
        .into_iter()
        .filter(|l| l.stage == "pod_added")
        .map(|l| l.pod_uid)
        .collect();
    assert_eq!(pods.len(), PODS as usize);
    assert_eq!(gt_pods.len(), PODS as usize, "ground truth's pods");
    let waits: Vec<f64> = pods
        .iter()
        .filter_map(|p| p["mount_wait"]["duration_ms"].as_f64())
        .collect();
    assert_eq!(
        waits.len(),
        PODS as usize,
        "every pod's mount wait in the report"
    );
    let mut sorted = waits.clone();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank, as Prometheus' quantile picks the bucket.
    let rank_median = sorted[sorted.len().div_ceil(2) - 1] / 1e3;

    let last = |m: &str| format!("last_over_time({m}[5m])");
    let starts = prom.scalar(&format!("sum({})", last("podtrace_pod_starts_total")));
    assert_eq!(starts, f64::from(PODS), "pod_starts_total == pods started");
    let count = prom.scalar(&format!(
        "sum({})",
        last("podtrace_mount_wait_seconds_count")
    ));
    assert_eq!(count, f64::from(PODS), "one mount wait observed per pod");
    let q = prom.scalar(&format!(
        "histogram_quantile(0.5, sum by (le) ({}))",
        last("podtrace_mount_wait_seconds_bucket")
    ));
    // The bucket that holds the report's median: Prometheus interpolates
    // inside it.
    let mut bounds: Vec<f64> = live_text
        .lines()
        .filter(|l| l.starts_with("podtrace_mount_wait_seconds_bucket{"))
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next()?.parse().ok())
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let hi = bounds
        .iter()
        .copied()
        .find(|&b| b >= rank_median)
        .expect("a bucket above the median");
    let lo = bounds
        .iter()
        .copied()
        .rfind(|&b| b < rank_median)
        .unwrap_or(0.0);
    eprintln!(
        "mount wait: report median {:.4} s (nearest rank; interpolated {:.4} s), Prometheus p50 {q:.4} s, bucket ({lo}, {hi}]",
        rank_median,
        median(waits) / 1e3
    );
    assert!(
        q > lo - 1e-9 && q <= hi + 1e-9,
        "Prometheus p50 {q} s outside the report median's bucket ({lo}, {hi}] (median {rank_median} s)"
    );
    // Loops, resyncs, events and checks got there too.
    let reconciler = prom.scalar(&format!(
        "sum({})",
        last("podtrace_loop_period_seconds_count{loop=\"reconcile\"}")
    ));
    assert!(reconciler > 10.0, "reconciler ticks: {reconciler}");
    let checks = prom.scalar(&format!("sum({})", last("podtrace_poll_checks_total")));
    let report_checks: usize = pods
        .iter()
        .map(|p| p["mount_wait"]["checks"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(
        checks >= report_checks as f64,
        "poll_checks_total {checks} < the start syncs' {report_checks} checks"
    );
    let events = prom.scalar(&format!("sum({})", last("podtrace_events_total")));
    let footer_events = report["trace"]["events"].as_f64().expect("events");
    assert!(
        events > 0.0 && events <= footer_events,
        "events_total {events} vs {footer_events} in the trace"
    );
}

#[test]
fn no_socket_without_metrics() {
    let dir = TempDir::new("live-nosocket");
    let (mut cmd, _, _) = record_cmd(&dir, &[], 2, "2s");
    let (mut g, _) = spawn_until(&mut cmd, "podtrace: recording to", Duration::from_secs(60));
    let ports = listening_ports(g.id());
    assert!(
        ports.is_empty(),
        "podtrace listens on {ports:?} without --metrics"
    );
    let st = wait_exit(&mut g, Duration::from_secs(60));
    assert!(st.success(), "podtrace record: {st}");
}

#[test]
fn otlp_endpoint_gets_each_pod_while_recording() {
    let dir = TempDir::new("live-otlp");
    let (endpoint, got) = otlp_receiver("127.0.0.1:0");
    const PODS: u32 = 6;
    let (mut cmd, trace, _) = record_cmd(&dir, &["--otlp-endpoint", &endpoint], PODS, "4s");
    let (mut g, _) = spawn_until(&mut cmd, "podtrace: recording to", Duration::from_secs(60));
    let st = wait_exit(&mut g, Duration::from_secs(60));
    let exited = Instant::now();
    assert!(st.success(), "podtrace record: {st}");
    let report = report_json(&trace);
    let got = got.lock().expect("receiver");
    // Per pod: when its spans arrived, and its root span.
    let mut arrived: BTreeMap<String, (Instant, u64)> = BTreeMap::new();
    for g in got.iter() {
        for rs in &g.req.resource_spans {
            for ss in &rs.scope_spans {
                for s in ss.spans.iter().filter(|s| s.parent_span_id.is_empty()) {
                    let uid = attr(&s.attributes, "k8s.pod.uid").expect("root span's pod uid");
                    let dur = s.end_time_unix_nano - s.start_time_unix_nano;
                    assert!(
                        arrived.insert(uid.clone(), (g.at, dur)).is_none(),
                        "pod {uid} sent twice"
                    );
                }
            }
        }
    }
    let pods = report["pods"].as_array().expect("report pods");
    assert_eq!(pods.len(), PODS as usize);
    for p in pods {
        let uid = p["uid"].as_str().expect("uid");
        let (at, dur) = arrived
            .get(uid)
            .unwrap_or_else(|| panic!("pod {uid} never reached the OTLP receiver"));
        // Live: sent during the recording (the workload lingers 4 s after
        // its last pod), not at its end.
        let before_end = exited.duration_since(*at);
        assert!(
            before_end > Duration::from_secs(2),
            "pod {uid}'s spans arrived only {before_end:?} before podtrace exited"
        );
        let sync_ms = p["stages"][0]["duration_ms"]
            .as_f64()
            .expect("sync duration");
        assert!(
            (*dur as f64 / 1e6 - sync_ms).abs() < 0.001,
            "pod {uid}: root span {} ms, report's sync {sync_ms} ms",
            *dur as f64 / 1e6
        );
    }
    assert_eq!(
        arrived.len(),
        PODS as usize,
        "only the started pods are sent"
    );
}

/// CPU time (ns) process `pid` has run so far.
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("/proc/{pid}/schedstat"))
}

/// Sockets among process `pid`'s file descriptors.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// GET /metrics: the status and how long the answer took.
fn timed_scrape(addr: &str) -> (Option<u16>, Duration) {
    let t = Instant::now();
    let status = http_get(addr, "/metrics").map(|(s, _)| s);
    (status, t.elapsed())
}

/// Raises this process's soft limit on open files to `n` (the test holds
/// a thousand sockets; a fresh machine's soft limit may be 1024).
fn allow_open_files(n: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        if r.rlim_cur < n {
            r.rlim_cur = n.min(r.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
        }
    }
    assert!(
        r.rlim_cur >= n,
        "RLIMIT_NOFILE hard limit {} < {n}",
        r.rlim_max
    );
}

/// The metrics server stands on its own: a slow-loris client (a header
/// byte every 300 ms) is closed once the header timeout passes, and a
/// thousand idle connections (more than podtrace may open files: it runs
/// with RLIMIT_NOFILE 512 here) are held to the connection cap, while
/// other scrapes are answered at once, podtrace stays idle on the CPU, and
/// the recording loses nothing: every pod counted, no drop.
#[test]
fn slow_loris_and_a_thousand_idle_connections_leave_recording_and_scrapes_alone() {
    const PODS: u32 = 10;
    const IDLE: usize = 1000;
    allow_open_files(IDLE as u64 + 200);
    let dir = TempDir::new("live-server");
    let target = format!("127.0.0.1:{}", free_port());
    let (inner, trace, _) = record_cmd(&dir, &["--metrics", &target], PODS, "14s");
    // prlimit execs podtrace in its place (same pid) with 512 files at most.
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=512:512").arg(inner.get_program());
    cmd.args(inner.get_args());
    let (mut g, _) = spawn_until(&mut cmd, "podtrace: metrics at", Duration::from_secs(60));
    let pid = g.id();
    // Its own sockets before any client: the listener, and the runtime's
    // signal socketpair (dup'ed per signal it waits for).
    let own_sockets = sockets_of(pid);

    // A slow-loris client, alone: closed by the header timeout (5 s).
    let loris = std::net::TcpStream::connect(&target).expect("connect");
    let opened = Instant::now();
    let mut w = loris.try_clone().expect("clone");
    w.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("write");
    let mut closed = None;
    while opened.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(300));
        if w.write_all(b"a").is_err() {
            closed = Some(opened.elapsed());
            break;
        }
        let (status, took) = timed_scrape(&target);
        assert_eq!(status, Some(200), "a scrape beside the slow-loris client");
        assert!(took < Duration::from_secs(1), "a scrape took {took:?}");
    }
    // The server closed it: a write may still succeed once after the FIN.
    let closed = closed.unwrap_or_else(|| {
        let mut buf = [0u8; 64];
        loris
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        match (&loris).read(&mut buf) {
            Ok(0) | Err(_) if opened.elapsed() < Duration::from_secs(13) => opened.elapsed(),
            _ => panic!(
                "the slow-loris connection is still open after {:?}",
                opened.elapsed()
            ),
        }
    });
    assert!(
        closed >= Duration::from_secs(4) && closed < Duration::from_secs(9),
        "slow-loris connection closed after {closed:?}, expected the 5 s header timeout"
    );

    // A thousand idle connections.
    let cpu0 = cpu_ns(pid);
    let t0 = Instant::now();
    let addr: std::net::SocketAddr = target.parse().expect("addr");
    let idle: Vec<std::net::TcpStream> = (0..IDLE)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .collect();
    let mut most_sockets = 0;
    for _ in 0..8 {
        let (status, took) = timed_scrape(&target);
        assert_eq!(
            status,
            Some(200),
            "a scrape among {} idle connections",
            idle.len()
        );
        assert!(took < Duration::from_secs(1), "a scrape took {took:?}");
        most_sockets = most_sockets.max(sockets_of(pid));
        std::thread::sleep(Duration::from_millis(250));
    }
    let busy = (cpu_ns(pid) - cpu0) as f64 / t0.elapsed().as_nanos() as f64;
    eprintln!(
        "{} idle connections: podtrace held at most {most_sockets} sockets, used {:.1}% of a CPU",
        idle.len(),
        busy * 100.0
    );
    assert!(idle.len() > 900, "only {} connections made", idle.len());
    // Its own, the cap's connections, and a scrape or two.
    assert!(
        most_sockets <= own_sockets + 64 + 2,
        "podtrace held {most_sockets} sockets (cap 64, {own_sockets} of its own)"
    );
    assert!(
        busy < 0.25,
        "podtrace used {:.0}% of a CPU among idle connections",
        busy * 100.0
    );
    drop(idle);

    let st = wait_exit(&mut g, Duration::from_secs(60));
    assert!(st.success(), "podtrace record: {st}");
    let report = report_json(&trace);
    assert_eq!(
        report["trace"]["drops"], 0,
        "drops while the server was busy"
    );
    assert_eq!(
        report["pods"].as_array().map(Vec::len),
        Some(PODS as usize),
        "every pod recorded"
    );
}
