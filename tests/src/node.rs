//! A real node for tests: a real kubelet (built from the `k8s.io/kubernetes`
//! module by `cargo xtask setup`) in standalone mode, on the real containerd
//! of [`crate::containerd::Env`] (registry, runc, images), with static pods.
//!
//! Standalone means no API server: pods come from manifests in
//! `staticPodPath`, webhook authentication is off and authorization is
//! `AlwaysAllow`, cgroup v1 is allowed (`failCgroupV1: false`), and nothing
//! listens but kubelet's healthz on a free 127.0.0.1 port. kubelet logs at
//! `-v=4` (SyncPod enter/exit, the volume wait's V(3) lines, the
//! reconciler's "MountVolume.SetUp succeeded") and sends its own
//! OpenTelemetry spans (`syncPod`, the CRI client's gRPC spans) to an
//! OTLP/gRPC receiver started here; containerd 2.x sends its spans there too.
//!
//! Everything the node creates stays under its own paths: a temporary dir
//! (kubelet root, certs, manifests, pod logs, volume plugins, hostPath
//! volumes) and its own cgroup root `/podtrace-node-<rand>` in every
//! hierarchy; `Drop` stops kubelet, lets the containerd env remove every pod,
//! kills what is left in those cgroups, unmounts, and removes both — also
//! when a test panics.
//!
//! Which binaries: `PODTRACE_KUBELET` (or the path given to
//! [`Node::start`]) and `PODTRACE_CONTAINERD` / `PODTRACE_CONTAINERD_SHIM`,
//! so the same tests run against a user's own builds.
//!
//! In a cluster ([`crate::cluster`]) the same node registers with an API
//! server instead ([`NodeOpts::kubeconfig`]): kubelet then also serves its
//! API and, read-only and unauthenticated on 127.0.0.1, `/metrics`
//! ([`Node::read_only_port`]), and pods run on a CNI bridge
//! ([`containerd::Cni`]).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use crate::containerd::{self, Env};
use crate::otlp;
pub use crate::util::podtrace_home;
use crate::util::setup_bin;
use crate::util::{cgroup_roots, free_port, rand_hex, stop_child, tail};

/// The node name kubelet runs as: static pods are named `<name>-<node>`.
pub const NODE_NAME: &str = "podtrace-node";

/// A kubelet built by `cargo xtask setup`: `kubelet("v1.34.4", false)`.
/// Panics with what to run when it is missing.
pub fn kubelet(version: &str, tuned: bool) -> PathBuf {
    setup_bin(
        &format!("kubelet-{version}{}", if tuned { "-tuned" } else { "" }),
        "the real kubelets from the k8s.io/kubernetes module",
    )
}

/// The containerd 2.x that `cargo xtask setup` builds (dir with
/// `containerd`, `containerd-shim-runc-v2`, `ctr`).
pub fn containerd2_dir() -> PathBuf {
    let p = podtrace_home().join("bin/containerd-v2.2.9");
    assert!(
        p.join("containerd").exists(),
        "{} does not exist: `cargo xtask setup` builds containerd 2.x from the Go module proxy",
        p.display()
    );
    p
}

/// A parsed klog line: `I1129 11:40:01.123456  1234 file.go:42] "msg" k="v" …`.
#[derive(Debug, Clone)]
pub struct Klog {
    /// Wall clock, ns since the Unix epoch (klog prints µs, local time; the
    /// machines run in UTC, checked in [`parse_klog`]).
    pub unix_ns: i64,
    pub severity: char,
    /// `file.go:42`.
    pub source: String,
    /// The quoted message, unquoted.
    pub msg: String,
    /// The rest of the line: `key="value"` pairs.
    pub rest: String,
}

impl Klog {
    /// The value of `key="value"` (or `key=value`) after the message.
    pub fn field(&self, key: &str) -> Option<String> {
        let pat = format!("{key}=");
        let mut from = 0;
        while let Some(i) = self.rest[from..].find(&pat) {
            let at = from + i;
            // A whole key, not the end of another one.
            let whole = at == 0 || self.rest.as_bytes()[at - 1] == b' ';
            let v = &self.rest[at + pat.len()..];
            if whole {
                return Some(if let Some(q) = v.strip_prefix('"') {
                    unquote_prefix(q).0
                } else {
                    v.split_whitespace().next().unwrap_or("").to_string()
                });
            }
            from = at + pat.len();
        }
        None
    }
}

/// Reads a Go-quoted string body up to its closing quote; returns it and
/// the byte length consumed (including the quote).
fn unquote_prefix(s: &str) -> (String, usize) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, i + 1),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    (out, s.len())
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The first klog line `msg` logged for static pod `full`
/// (`pod="default/FULL"`): the create sync's.
pub fn first_klog<'a>(log: &'a [Klog], msg: &str, full: &str) -> &'a Klog {
    let want = format!("default/{full}");
    pod_klog(log, msg, &want).unwrap_or_else(|| panic!("kubelet never logged {msg:?} for {want}"))
}

/// The UID kubelet gave static pod `full` (from its "SyncPod enter" line).
pub fn pod_uid(log: &[Klog], full: &str) -> String {
    first_klog(log, "SyncPod enter", full)
        .field("podUID")
        .unwrap_or_else(|| panic!("kubelet's SyncPod enter for {full} has no podUID"))
}

/// A stage of a `podtrace report --format json` pod, in wall-clock ns.
pub struct Stage {
    pub start_unix_ns: i64,
    pub end_unix_ns: i64,
}

/// Stage `name` of a report pod (the first row of that name), in
/// wall-clock ns; panics if it is missing or has no exit.
pub fn stage(pod: &Value, name: &str) -> Stage {
    let base = pod["start_unix_ns"].as_i64().expect("start_unix_ns");
    let s = pod["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == name)
        .unwrap_or_else(|| panic!("pod {} has no {name} stage: {pod:#}", pod["name"]));
    let start = base + (s["start_ms"].as_f64().expect("start_ms") * 1e6) as i64;
    let dur = s["duration_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} of {} has no exit", pod["name"]));
    Stage {
        start_unix_ns: start,
        end_unix_ns: start + (dur * 1e6) as i64,
    }
}

/// podtrace's instants against kubelet's own (log lines, spans): each
/// within `tolerance_ms`, and the spread of the differences.
///
/// podtrace stamps the function's entry and return; kubelet stamps its log
/// line or span a few instructions inside. On two cores busy with a control
/// plane, kubelet's goroutine is now and then preempted between the two for
/// a scheduler slice or more (1.08-1.10 ms seen on a quiet machine, 3.02 ms
/// once while a Go build ran beside the test). So one comparison in 20 (at
/// least one) may exceed the tolerance, by at most [`Agreement::PREEMPTED`]
/// times it, and is printed; any other fails. A wrong probe site or
/// argument misses by a sync, not by milliseconds.
pub struct Agreement {
    tolerance_ms: f64,
    /// |podtrace − kubelet| per comparison, µs.
    pub diffs_us: Vec<f64>,
    /// Comparisons beyond the tolerance (what, ms).
    pub beyond: Vec<(String, f64)>,
}

impl Agreement {
    /// How far past the tolerance a preempted comparison may be.
    pub const PREEMPTED: f64 = 5.0;

    pub fn new(tolerance_ms: f64) -> Agreement {
        Agreement {
            tolerance_ms,
            diffs_us: Vec::new(),
            beyond: Vec::new(),
        }
    }

    /// Panics, naming `what`, if the two are more than
    /// [`Self::PREEMPTED`] times the tolerance apart; notes it if more than
    /// the tolerance (see the type's doc; [`Self::quantiles`] checks how
    /// many).
    pub fn add(&mut self, what: &str, podtrace_ns: i64, kubelet_ns: i64) {
        let d = (podtrace_ns - kubelet_ns) as f64 / 1e6;
        assert!(
            d.abs() <= self.tolerance_ms * Self::PREEMPTED,
            "{what}: podtrace {podtrace_ns} vs kubelet {kubelet_ns}: {d:.3} ms apart (> {} ms)",
            self.tolerance_ms
        );
        if d.abs() > self.tolerance_ms {
            eprintln!(
                "    {what}: podtrace {d:+.3} ms from kubelet (beyond {} ms: kubelet's goroutine preempted in between?)",
                self.tolerance_ms
            );
            self.beyond.push((what.to_string(), d));
        }
        self.diffs_us.push(d.abs() * 1000.0);
    }

    /// (median, p99, worst) of the differences, µs (nearest rank). Panics
    /// if more than one comparison in 20 (at least one) was beyond the
    /// tolerance.
    pub fn quantiles(&mut self) -> (f64, f64, f64) {
        self.diffs_us.sort_by(f64::total_cmp);
        let n = self.diffs_us.len();
        assert!(n > 0, "no comparison made");
        let allowed = (n / 20).max(1);
        assert!(
            self.beyond.len() <= allowed,
            "{} of {n} comparisons more than {} ms apart (at most {allowed}): {:?}",
            self.beyond.len(),
            self.tolerance_ms,
            self.beyond
        );
        let at = |q: f64| self.diffs_us[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
        (at(0.5), at(0.99), self.diffs_us[n - 1])
    }

    pub fn summary(&mut self) -> String {
        let (m, p99, worst) = self.quantiles();
        format!(
            "n {}, median {m:.0} µs, p99 {p99:.0} µs, worst {worst:.0} µs",
            self.diffs_us.len()
        )
    }
}

/// The first klog line `msg` logged for the pod `ns_name`
/// (`pod="NAMESPACE/NAME"`), if any.
pub fn pod_klog<'a>(log: &'a [Klog], msg: &str, ns_name: &str) -> Option<&'a Klog> {
    log.iter()
        .find(|l| l.msg == msg && l.field("pod").as_deref() == Some(ns_name))
}

/// The stages every pod a node starts goes through, finished.
pub const POD_STAGES: &[&str] = &[
    "sync",
    "mount_wait",
    "runtime_sync",
    "create_sandbox",
    "start_container",
];
/// The CRI calls every pod a node starts makes.
pub const POD_CRI_CALLS: &[&str] = &["RunPodSandbox", "CreateContainer", "StartContainer"];

/// Static pod `full` in a `podtrace report --format json` of the node:
/// there, with kubelet's `uid`, every stage of [`POD_STAGES`] finished and
/// every call of [`POD_CRI_CALLS`] made. `label` heads the panics.
pub fn started_pod<'r>(report: &'r Value, full: &str, uid: &str, label: &str) -> &'r Value {
    let pod = report["pods"]
        .as_array()
        .expect("the report has pods")
        .iter()
        .find(|p| p["name"] == full)
        .unwrap_or_else(|| panic!("{label}: {full} is not in the report: {report:#}"));
    assert_eq!(pod["uid"], uid, "{label}: {full}'s UID");
    let stages: Vec<&str> = pod["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter(|s| s["duration_ms"].as_f64().is_some())
        .filter_map(|s| s["stage"].as_str())
        .collect();
    for s in POD_STAGES {
        assert!(
            stages.contains(s),
            "{label}: {full} has no finished {s} stage: {stages:?}"
        );
    }
    let calls = crate::strs(&pod["cri"], "call");
    for c in POD_CRI_CALLS {
        assert!(
            calls.contains(c),
            "{label}: {full} has no {c} call: {calls:?}"
        );
    }
    pod
}

/// Parses one klog header line. klog has no year: `year` is the one the
/// test runs in (a test spanning New Year's Eve would need the next one).
pub fn parse_klog(line: &str, year: i64) -> Option<Klog> {
    let b = line.as_bytes();
    let severity = *b.first()? as char;
    if !"IWEF".contains(severity) || b.len() < 30 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| line.get(r)?.parse::<i64>().ok();
    let (mo, d) = (num(1..3)?, num(3..5)?);
    let (h, mi, s, us) = (num(6..8)?, num(9..11)?, num(12..14)?, num(15..21)?);
    let close = line.find("] ")?;
    let head = &line[21..close];
    let source = head.split_whitespace().last()?.to_string();
    let body = &line[close + 2..];
    let (msg, rest) = if let Some(q) = body.strip_prefix('"') {
        let (m, n) = unquote_prefix(q);
        (m, q[n..].trim().to_string())
    } else {
        (body.to_string(), String::new())
    };
    let secs = days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    Some(Klog {
        unix_ns: secs * 1_000_000_000 + us * 1000,
        severity,
        source,
        msg,
        rest,
    })
}

/// The current year (UTC).
pub fn this_year() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Invert days_from_civil by search: cheap and obviously right.
    let days = secs / 86400;
    let mut y = 1970 + days / 366;
    while days_from_civil(y + 1, 1, 1) <= days {
        y += 1;
    }
    y
}

/// GET /healthz on kubelet's healthz port; true on "ok".
fn healthz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let r = String::from_utf8_lossy(&buf);
    r.starts_with("HTTP/1.") && r.contains(" 200") && r.trim_end().ends_with("ok")
}

/// Every cgroup directory under `dir`, deepest first.
fn cgroup_tree(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            cgroup_tree(&e.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

/// The options of a node: which kubelet and which containerd.
pub struct NodeOpts {
    pub kubelet: PathBuf,
    /// containerd 2.x by default (it sends its own spans too).
    pub containerd: containerd::Options,
    /// Extra `key: value` lines for the KubeletConfiguration.
    pub extra_config: Vec<String>,
    /// Run kubelet from a copy of its own in the node's directory, so that
    /// [`Node::swap_kubelet`] can move another build into place at that
    /// path (the interleaved experiment).
    pub swappable: bool,
    /// Register as a Node with the API server of this kubeconfig (None:
    /// standalone, static pods only).
    pub kubeconfig: Option<PathBuf>,
    /// The node's name (`--hostname-override`).
    pub node_name: String,
    /// Where kubelet sends its spans (OTLP/gRPC, plain text); None: the
    /// node's own [`otlp::Sink`]. The cluster points it at its collector.
    pub tracing_endpoint: Option<String>,
}

impl NodeOpts {
    pub fn new(kubelet: PathBuf) -> NodeOpts {
        NodeOpts {
            kubelet,
            containerd: containerd::Options::v2(),
            extra_config: Vec::new(),
            swappable: false,
            kubeconfig: None,
            node_name: NODE_NAME.to_string(),
            tracing_endpoint: None,
        }
    }
}

/// A running standalone kubelet on a running containerd.
pub struct Node {
    /// kubelet's own files: root dir, config, manifests, pod logs.
    pub dir: PathBuf,
    pub kubelet_bin: PathBuf,
    pub kubelet_pid: u32,
    /// kubelet's stderr (klog, -v=4).
    pub kubelet_log: PathBuf,
    /// Where static pod manifests go.
    pub manifests: PathBuf,
    /// Host directory mounted into every pod as a hostPath volume.
    pub host_volume: PathBuf,
    pub healthz_port: u16,
    /// The node's name (kubelet's `--hostname-override`).
    pub node_name: String,
    /// The kubeconfig kubelet registers with (None: standalone).
    pub kubeconfig: Option<PathBuf>,
    /// With a kubeconfig: kubelet's read-only port on 127.0.0.1 (`/metrics`,
    /// `/pods`; no authentication) and its API port.
    pub read_only_port: Option<u16>,
    pub server_port: Option<u16>,
    /// The OTLP/gRPC receiver containerd 2.x (and kubelet, unless
    /// [`NodeOpts::tracing_endpoint`] says otherwise) send spans to.
    pub sink: otlp::Sink,
    /// Where kubelet sends its spans.
    pub tracing_endpoint: String,
    /// Name of the node's cgroup root under every hierarchy.
    pub cgroup_root: String,
    kubelet: Option<Child>,
    // Dropped last: containerd removes the pods kubelet left behind.
    pub env: Env,
}

impl Node {
    /// containerd (from `PODTRACE_CONTAINERD`, else Debian's) + registry +
    /// OTLP receiver + kubelet; returns once kubelet's healthz says ok.
    pub fn start(opts: NodeOpts) -> Node {
        let t0 = Instant::now();
        let kubelet_bin = std::env::var_os("PODTRACE_KUBELET")
            .map(PathBuf::from)
            .unwrap_or(opts.kubelet);
        assert!(
            kubelet_bin.exists(),
            "kubelet binary {} does not exist",
            kubelet_bin.display()
        );
        let dir = std::env::temp_dir().join(format!("podtrace-node-{}", rand_hex()));
        for d in [
            "manifests",
            "root",
            "pod-logs",
            "volume-plugins",
            "hostpath",
            "otlp",
        ] {
            std::fs::create_dir_all(dir.join(d)).expect("create node dir");
        }
        let kubelet_bin = if opts.swappable {
            let own = dir.join("kubelet");
            std::fs::copy(&kubelet_bin, &own)
                .unwrap_or_else(|e| panic!("copying {} into the node: {e}", kubelet_bin.display()));
            own
        } else {
            kubelet_bin
        };
        let sink = otlp::Sink::start(&dir.join("otlp"));
        // containerd's own spans too where it has the tracing plugins
        // (kubelet's are the ground truth; Debian's 1.6 has none).
        let (cv, cmajor) = crate::containerd::containerd_version(&opts.containerd.containerd);
        let env = Env::start_with(if crate::containerd::has_tracing(&cv, cmajor) {
            opts.containerd.otlp_endpoint(&sink.endpoint)
        } else {
            opts.containerd
        });
        let cgroup_root = format!("podtrace-node-{}", rand_hex());
        let mut node = Node {
            manifests: dir.join("manifests"),
            kubelet_log: dir.join("kubelet.log"),
            host_volume: dir.join("hostpath"),
            dir,
            kubelet_bin,
            kubelet_pid: 0,
            healthz_port: free_port(),
            read_only_port: opts.kubeconfig.as_ref().map(|_| free_port()),
            server_port: opts.kubeconfig.as_ref().map(|_| free_port()),
            node_name: opts.node_name.clone(),
            kubeconfig: opts.kubeconfig.clone(),
            tracing_endpoint: opts
                .tracing_endpoint
                .clone()
                .unwrap_or_else(|| sink.endpoint.clone()),
            sink,
            cgroup_root,
            kubelet: None,
            env,
        };
        std::fs::write(node.host_volume.join("hello"), "podtrace\n").expect("write hostPath file");
        // kubelet checks that its cgroup root exists in every hierarchy.
        for r in cgroup_roots() {
            let _ = std::fs::create_dir_all(r.join(&node.cgroup_root));
        }
        let cfg = node.dir.join("kubelet.yaml");
        std::fs::write(&cfg, node.config(&opts.extra_config)).expect("write kubelet config");
        node.spawn_kubelet();
        node.wait_healthy(t0);
        node
    }

    /// The KubeletConfiguration (see the module doc for why each line).
    fn config(&self, extra: &[String]) -> String {
        let d = self.dir.display();
        let mut c = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: {d}/manifests
fileCheckFrequency: 5s
containerRuntimeEndpoint: unix://{sock}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroot}
failCgroupV1: false
failSwapOn: false
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
{server}
healthzBindAddress: 127.0.0.1
healthzPort: {port}
podLogsDir: {d}/pod-logs
volumePluginDir: {d}/volume-plugins
makeIPTablesUtilChains: false
oomScoreAdj: 0
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: \"1Mi\"}}
logging: {{format: text}}
tracing:
  endpoint: {sink}
  samplingRatePerMillion: 1000000
",
            sock = self.env.socket.display(),
            server = match (self.server_port, self.read_only_port) {
                // Registered: kubelet's API (self-signed, for the API
                // server's logs/exec) and the read-only port, whose
                // /metrics the cluster test scrapes, both on 127.0.0.1.
                (Some(port), Some(ro)) => format!(
                    "enableServer: true\naddress: 127.0.0.1\nport: {port}\nreadOnlyPort: {ro}"
                ),
                _ => "enableServer: false\nreadOnlyPort: 0".to_string(),
            },
            cgroot = self.cgroup_root,
            port = self.healthz_port,
            sink = self.tracing_endpoint,
        );
        for l in extra {
            c.push_str(l);
            c.push('\n');
        }
        c
    }

    fn spawn_kubelet(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.kubelet_log)
            .expect("open kubelet log");
        let mut cmd = Command::new(&self.kubelet_bin);
        if let Some(k) = &self.kubeconfig {
            cmd.arg(format!("--kubeconfig={}", k.display()));
        }
        let child = cmd
            .arg(format!(
                "--config={}",
                self.dir.join("kubelet.yaml").display()
            ))
            .arg(format!("--hostname-override={}", self.node_name))
            .arg(format!("--root-dir={}", self.dir.join("root").display()))
            .arg(format!(
                "--cert-dir={}",
                self.dir.join("root/pki").display()
            ))
            .arg("-v=4")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.kubelet_bin.display()));
        self.kubelet_pid = child.id();
        self.kubelet = Some(child);
    }

    fn wait_healthy(&mut self, t0: Instant) {
        let t = Instant::now();
        loop {
            if let Some(st) = self
                .kubelet
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "kubelet {} exited during start-up ({st})\n{}",
                    self.kubelet_bin.display(),
                    tail(&self.kubelet_log, 60)
                );
            }
            if healthz(self.healthz_port) {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                panic!(
                    "kubelet's healthz on 127.0.0.1:{} did not say ok within 60 s\n{}",
                    self.healthz_port,
                    tail(&self.kubelet_log, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "node: kubelet {} up in {:.1}s (pid {}, dir {}, containerd {})",
            self.kubelet_bin.display(),
            t0.elapsed().as_secs_f64(),
            self.kubelet_pid,
            self.dir.display(),
            self.env.containerd_bin.display()
        );
    }

    /// The static pod's full name as kubelet and podtrace see it.
    pub fn pod_name(name: &str) -> String {
        format!("{name}-{NODE_NAME}")
    }

    /// Writes a static pod manifest (one container from the test registry,
    /// an emptyDir and a hostPath volume, host network) and returns the
    /// pod's full name. Written to a dot-file and renamed, so kubelet never
    /// reads half a manifest.
    pub fn add_pod(&self, name: &str) -> String {
        let manifest = format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
  labels: {{app: podtrace-test}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    - {{name: host, mountPath: /host, readOnly: true}}
  volumes:
  - name: scratch
    emptyDir: {{}}
  - name: host
    hostPath: {{path: {host}, type: Directory}}
",
            image = self.env.image,
            host = self.host_volume.display(),
        );
        let tmp = self.manifests.join(format!(".{name}.yaml.tmp"));
        std::fs::write(&tmp, manifest).expect("write manifest");
        std::fs::rename(&tmp, self.manifests.join(format!("{name}.yaml")))
            .expect("rename manifest");
        Node::pod_name(name)
    }

    /// Writes any static pod manifest (YAML or JSON) as `<file>.yaml`,
    /// atomically as [`Node::add_pod`] does; [`Node::remove_pod`]`(file)`
    /// removes it.
    pub fn add_manifest(&self, file: &str, manifest: &str) {
        let tmp = self.manifests.join(format!(".{file}.yaml.tmp"));
        std::fs::write(&tmp, manifest).expect("write manifest");
        std::fs::rename(&tmp, self.manifests.join(format!("{file}.yaml")))
            .expect("rename manifest");
    }

    /// What a container of a pod wrote to its CRI logs so far, every
    /// restart's file in order; empty before it first started. `uid` picks
    /// one incarnation of the pod ("" takes them all).
    pub fn container_log(
        &self,
        namespace: &str,
        full_name: &str,
        uid: &str,
        container: &str,
    ) -> String {
        let prefix = format!("{namespace}_{full_name}_{uid}");
        let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(self.dir.join("pod-logs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .flat_map(|e| {
                std::fs::read_dir(e.path().join(container))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .filter_map(|f| {
                let n = f
                    .file_name()
                    .to_string_lossy()
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some((n, f.path()))
            })
            .collect();
        files.sort();
        files
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// Removes a static pod's manifest (kubelet then stops the pod).
    pub fn remove_pod(&self, name: &str) {
        let _ = std::fs::remove_file(self.manifests.join(format!("{name}.yaml")));
    }

    /// kubelet's log lines so far, parsed.
    pub fn klog(&self) -> Vec<Klog> {
        let year = this_year();
        std::fs::read(&self.kubelet_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| parse_klog(l, year))
            .collect()
    }

    /// Waits until kubelet logged `msg` for pod `full_name` (`pod="default/NAME"`).
    pub fn wait_for_log(&self, msg: &str, full_name: &str, timeout: Duration) -> Klog {
        let want = format!("default/{full_name}");
        let t = Instant::now();
        loop {
            if let Some(l) = self
                .klog()
                .into_iter()
                .find(|l| l.msg == msg && l.field("pod").as_deref() == Some(want.as_str()))
            {
                return l;
            }
            assert!(
                self.kubelet_alive(),
                "kubelet exited while waiting for {msg:?} for {want}\n{}",
                tail(&self.kubelet_log, 60)
            );
            assert!(
                t.elapsed() < timeout,
                "kubelet did not log {msg:?} for {want} within {timeout:?}\n{}\n{}",
                tail(&self.kubelet_log, 40),
                tail(&self.env.containerd_log, 20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the pod's app container wrote its first line to its CRI
    /// log: it runs, so kubelet's create sync is over.
    pub fn wait_running(&self, full_name: &str, timeout: Duration) {
        let t = Instant::now();
        let prefix = format!("default_{full_name}_");
        loop {
            let started = std::fs::read_dir(self.dir.join("pod-logs"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .any(|e| {
                    std::fs::read_to_string(e.path().join("app/0.log"))
                        .is_ok_and(|s| s.contains("app started"))
                });
            if started {
                return;
            }
            assert!(
                self.kubelet_alive(),
                "kubelet exited while waiting for {full_name}\n{}",
                tail(&self.kubelet_log, 60)
            );
            assert!(
                t.elapsed() < timeout,
                "pod {full_name} did not start within {timeout:?}\n{}\n{}",
                tail(&self.kubelet_log, 60),
                tail(&self.env.containerd_log, 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kubelet_alive(&self) -> bool {
        // SAFETY: kill(pid, 0) only checks that the process exists.
        self.kubelet_pid > 0
            && unsafe { libc::kill(self.kubelet_pid as libc::pid_t, 0) } == 0
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.kubelet_pid)).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
    }

    /// Removes every manifest and waits (up to `timeout`) until kubelet has
    /// stopped every pod's containers (no app process left in the node's
    /// cgroups besides the pause processes kubelet removes lazily).
    pub fn remove_all_pods(&self, timeout: Duration) {
        let names: Vec<String> = std::fs::read_dir(&self.manifests)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".yaml"))
                    .map(str::to_string)
            })
            .collect();
        for n in &names {
            self.remove_pod(n);
        }
        let t = Instant::now();
        while t.elapsed() < timeout {
            let log = std::fs::read_to_string(&self.kubelet_log).unwrap_or_default();
            let all_killed = names.iter().all(|n| {
                let full = Node::pod_name(n);
                log.lines().any(|l| {
                    l.contains("SyncTerminatedPod exit") && l.contains(&format!("default/{full}\""))
                })
            });
            if all_killed {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops kubelet, moves `build` into place at kubelet's path (a copy
    /// renamed over it, as an upgrade does: a new file, a new inode) and
    /// starts it again; returns once its healthz says ok. Needs
    /// [`NodeOpts::swappable`].
    pub fn swap_kubelet(&mut self, build: &Path) {
        assert!(
            self.kubelet_bin.starts_with(&self.dir),
            "swap_kubelet needs a node started with NodeOpts::swappable"
        );
        self.stop_kubelet();
        let tmp = self.dir.join("kubelet.next");
        std::fs::copy(build, &tmp).unwrap_or_else(|e| panic!("copying {}: {e}", build.display()));
        std::fs::rename(&tmp, &self.kubelet_bin).expect("rename the new kubelet into place");
        let t0 = Instant::now();
        self.spawn_kubelet();
        self.wait_healthy(t0);
    }

    /// SIGTERM kubelet and wait for it (SIGKILL after 10 s).
    pub fn stop_kubelet(&mut self) {
        if let Some(mut c) = self.kubelet.take() {
            stop_child(&mut c, Duration::from_secs(10));
        }
    }

    /// Stops kubelet and starts it again (same binary, config and root
    /// dir: it finds the pods running and adopts them), returning once its
    /// healthz says ok. `kubelet_pid` is the new process's.
    pub fn restart_kubelet(&mut self) {
        let t0 = Instant::now();
        self.stop_kubelet();
        self.spawn_kubelet();
        self.wait_healthy(t0);
    }

    fn cleanup(&mut self) {
        self.stop_kubelet();
        // The containerd env's own drop removes every pod through CRI; do
        // it now so the cgroups below are empty before they are removed.
        self.env.remove_all_pods();
        // Anything left in the node's cgroups (a container whose shim was
        // killed) goes, then the cgroups, deepest first.
        for _ in 0..50 {
            let mut pids = Vec::new();
            let mut dirs = Vec::new();
            for r in cgroup_roots() {
                let root = r.join(&self.cgroup_root);
                if root.exists() {
                    cgroup_tree(&root, &mut dirs);
                }
            }
            for d in &dirs {
                if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            }
            for p in &pids {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            let mut left = 0;
            for d in &dirs {
                if std::fs::remove_dir(d).is_err() && d.exists() {
                    left += 1;
                }
            }
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        containerd::unmount_under(&self.dir);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("node: removing {}: {e}", self.dir.display());
        }
    }

    /// What the node left behind (should be empty after drop): cgroups,
    /// mounts, its directory, a kubelet process.
    pub fn leftovers(dir: &Path, cgroup_root: &str, kubelet_pid: u32) -> Vec<String> {
        let mut v = Vec::new();
        for r in cgroup_roots() {
            let p = r.join(cgroup_root);
            if p.exists() {
                v.push(format!("cgroup {}", p.display()));
            }
        }
        for m in containerd::mounts_under(dir) {
            v.push(format!("mount {}", m.display()));
        }
        if dir.exists() {
            v.push(format!("directory {}", dir.display()));
        }
        if Path::new(&format!("/proc/{kubelet_pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{kubelet_pid}/cmdline"))
                .is_ok_and(|c| c.contains(&dir.display().to_string()))
        {
            v.push(format!("process {kubelet_pid} (kubelet)"));
        }
        v
    }
}

/// A `podtrace record` of a node while pods start, and kubelet's own
/// account of the same time.
pub struct Recording {
    pub trace: PathBuf,
    /// Full static pod names, in start order.
    pub pods: Vec<String>,
    /// podtrace's stderr.
    pub podtrace_log: PathBuf,
    /// The uprobe bpf links podtrace held while recording.
    pub links: Vec<u64>,
    /// kubelet's CPU time while podtrace was attached, read here from
    /// /proc/PID/stat (ground truth for the report's CPU rows).
    pub kubelet_cpu: Option<CpuWindow>,
}

/// A process's CPU time (user + system) over a wall-clock window.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    pub window_s: f64,
    pub cpu_ms: f64,
}

impl CpuWindow {
    pub fn ms_per_s(&self) -> f64 {
        self.cpu_ms / self.window_s
    }
}

/// `pid`'s user + system CPU time so far in ms, from /proc/PID/stat
/// (fields 14 and 15; USER_HZ is 100 on Linux). Read here, not with
/// podtrace's own reader: it is the ground truth that reader is held to.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let f = crate::pidfile::stat_fields(pid)?;
    let utime: f64 = f.get(14 - 3)?.parse().ok()?;
    let stime: f64 = f.get(15 - 3)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}

/// An interleaved experiment's recording: which build ran each block.
pub struct Interleaved {
    pub recording: Recording,
    /// Per block: the build's label and the pods it started.
    pub blocks: Vec<(String, Vec<String>)>,
}

/// A `podtrace record` of given processes, running until [`Recorder::stop`]
/// (killed if dropped).
pub struct Recorder {
    child: crate::Guard,
    pub trace: PathBuf,
    /// podtrace's stderr.
    pub log: PathBuf,
    /// The uprobe bpf links it held once it was recording.
    pub links: Vec<u64>,
}

impl Recorder {
    /// Starts `podtrace record -q -o OUT --pid …` for `pids` (by pid: other
    /// tests may run the same binaries at the same time, and a uprobe on a
    /// binary fires in every process of it) plus `args`, and returns once
    /// it is recording.
    pub fn start(podtrace: &Path, out: &Path, pids: &[u32], args: &[&str]) -> Recorder {
        let log = suffixed(out, ".log");
        let f = std::fs::File::create(&log).expect("create podtrace log");
        let mut cmd = Command::new(podtrace);
        cmd.arg("record");
        for p in pids {
            cmd.arg("--pid").arg(p.to_string());
        }
        let mut child = crate::Guard::new(
            cmd.args(args)
                .arg("-q")
                .arg("-o")
                .arg(out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(f)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", podtrace.display())),
        );
        let t = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("recording to") {
                break;
            }
            if let Some(st) = child.try_wait() {
                panic!("podtrace record exited before recording ({st}):\n{text}");
            }
            if t.elapsed() > Duration::from_secs(60) {
                panic!("podtrace record did not start recording within 60 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let links = crate::link_ids(&crate::uprobe_links_of(child.id()));
        Recorder {
            child,
            trace: out.to_path_buf(),
            log,
            links,
        }
    }

    /// SIGINT, and waits until podtrace wrote the footer and exited (it
    /// must succeed, within [`STOP_WITHIN`]); returns how long that took.
    pub fn stop(mut self) -> Duration {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let t = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait() {
                break st;
            }
            // One uprobe_multi link per binary closes in one kernel grace
            // period: well under a second. (Per-site links took ~0.1 s
            // each, 17-23 s for kubelet's and containerd's ~120.)
            if t.elapsed() > STOP_WITHIN {
                panic!(
                    "podtrace record did not stop within {STOP_WITHIN:?} of SIGINT:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!(
            "    podtrace record stopped {:.1} s after SIGINT",
            t.elapsed().as_secs_f64()
        );
        assert!(
            status.success(),
            "podtrace record failed ({status}):\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        t.elapsed()
    }
}

impl Node {
    /// Starts `podtrace record -q -o OUT ARGS...` (stderr to OUT.log) and
    /// returns once it records.
    pub fn start_recording(&self, podtrace: &Path, out: &Path, args: &[String]) -> Recorder {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Recorder::start(podtrace, out, &[], &args)
    }

    /// This node's kubelet and containerd processes (what a recording of
    /// it attaches to).
    pub fn pids(&self) -> [u32; 2] {
        [self.kubelet_pid, self.env.containerd_pid]
    }

    /// Starts pods `names` one at a time: each waits until its container
    /// runs, then `gap`. Returns their full names.
    pub fn start_pods(&self, names: &[String], gap: Duration) -> Vec<String> {
        let mut pods = Vec::new();
        for n in names {
            let full = self.add_pod(n);
            self.wait_running(&full, Duration::from_secs(60));
            eprintln!("    {full} running ({}/{})", pods.len() + 1, names.len());
            pods.push(full);
            std::thread::sleep(gap);
        }
        pods
    }

    /// Attaches `podtrace record` to this node's kubelet and containerd
    /// processes (by pid: other tests may run the same binaries at the same
    /// time, and a uprobe on a binary fires in every process of it), starts
    /// `names` one at a time (each waits until its container runs, then
    /// `gap`), stops podtrace with SIGINT and returns the trace. Pods stay;
    /// [`Node::remove_all_pods`] removes them.
    pub fn record_pods(
        &self,
        podtrace: &Path,
        out: &Path,
        names: &[String],
        gap: Duration,
    ) -> Recording {
        self.record_pods_with(podtrace, out, names, gap, &[])
    }

    /// [`Node::record_pods`] with more arguments to `podtrace record`
    /// (`--catalogue FILE`).
    pub fn record_pods_with(
        &self,
        podtrace: &Path,
        out: &Path,
        names: &[String],
        gap: Duration,
        args: &[&str],
    ) -> Recording {
        let rec = Recorder::start(podtrace, out, &self.pids(), args);
        let cpu_from = (std::time::Instant::now(), cpu_ms(self.kubelet_pid));
        let pods = self.start_pods(names, gap);
        let cpu_to = cpu_ms(self.kubelet_pid);
        let kubelet_cpu = match (cpu_from, cpu_to) {
            ((at, Some(a)), Some(b)) => Some(CpuWindow {
                window_s: at.elapsed().as_secs_f64(),
                cpu_ms: b - a,
            }),
            _ => None,
        };
        let (trace, podtrace_log, links) = (rec.trace.clone(), rec.log.clone(), rec.links.clone());
        rec.stop();
        Recording {
            trace,
            pods,
            podtrace_log,
            links,
            kubelet_cpu,
        }
    }

    /// The interleaved experiment: one `podtrace record` while blocks of
    /// `per_block` pods start, each block on the build `pattern` names
    /// ('A' or 'B', e.g. "ABBA"): between blocks the pods are removed,
    /// kubelet stops, the other build is moved into place at kubelet's
    /// path and kubelet starts again (podtrace's supervisor re-attaches to
    /// the new file). The node must be [`NodeOpts::swappable`] and run
    /// build A.
    pub fn record_interleaved(
        &mut self,
        podtrace: &Path,
        out: &Path,
        builds: [(&str, &Path); 2],
        pattern: &str,
        per_block: usize,
        gap: Duration,
    ) -> Interleaved {
        assert!(
            pattern.starts_with('A') && pattern.chars().all(|c| c == 'A' || c == 'B'),
            "pattern {pattern:?}: A and B, starting with A (the node runs A)"
        );
        // A first pod before recording: its cold start (image unpacked,
        // first sandbox) would otherwise fall on the first block's build.
        let warm = self.add_pod("ilv-warm-up");
        self.wait_running(&warm, Duration::from_secs(60));
        self.remove_all_pods(Duration::from_secs(60));
        // kubelet by path (its file is replaced between blocks: watched
        // there), containerd by pid (its binary is shared with other tests).
        let args = [
            "--kubelet".to_string(),
            self.kubelet_bin.display().to_string(),
            "--pid".to_string(),
            self.env.containerd_pid.to_string(),
        ];
        let rec = self.start_recording(podtrace, out, &args);
        let (log, links) = (rec.log.clone(), rec.links.clone());
        let (mut pods, mut blocks) = (Vec::new(), Vec::new());
        let mut current = 'A';
        for (b, build) in pattern.chars().enumerate() {
            let (label, path) = builds[usize::from(build == 'B')];
            if build != current {
                self.remove_all_pods(Duration::from_secs(60));
                let before = reattached(out);
                self.swap_kubelet(path);
                wait_reattached(out, before, &log);
                current = build;
            }
            eprintln!("    block {} of {}: {label}", b + 1, pattern.len());
            let names: Vec<String> = (0..per_block).map(|i| format!("ilv-{b}-{i:02}")).collect();
            let started = self.start_pods(&names, gap);
            pods.extend(started.iter().cloned());
            blocks.push((label.to_string(), started));
        }
        rec.stop();
        Interleaved {
            recording: Recording {
                trace: out.to_path_buf(),
                pods,
                podtrace_log: log,
                links,
                // kubelet restarts between blocks: no one process's window.
                kubelet_cpu: None,
            },
            blocks,
        }
    }
}

/// How many re-attach notes the trace at `path` holds so far.
fn reattached(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("{\"note\"") && l.contains("\"reattached\""))
        .count()
}

/// Waits until the supervisor re-attached to the swapped-in kubelet.
fn wait_reattached(trace: &Path, before: usize, log: &Path) {
    let t = Instant::now();
    while reattached(trace) <= before {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "podtrace did not re-attach to the swapped kubelet within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long `record` may take from SIGINT to exit here (it takes well under
/// a second; a loaded 2-core machine gets some slack).
pub const STOP_WITHIN: Duration = Duration::from_secs(5);

/// `path` + `suffix`.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Drop for Node {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klog_lines_parse() {
        let l = parse_klog(
            r#"I1129 11:40:01.123456    4242 volume_manager.go:440] "All volumes are attached and mounted for pod" pod="default/web-0-podtrace-node" podUID="a b""#,
            2026,
        )
        .expect("parses");
        assert_eq!(l.severity, 'I');
        assert_eq!(l.source, "volume_manager.go:440");
        assert_eq!(l.msg, "All volumes are attached and mounted for pod");
        assert_eq!(
            l.field("pod").as_deref(),
            Some("default/web-0-podtrace-node")
        );
        assert_eq!(l.field("podUID").as_deref(), Some("a b"));
        assert_eq!(l.field("UID"), None);
        // 2026-11-29T11:40:01.123456Z
        assert_eq!(l.unix_ns, 1_795_952_401_123_456_000);
        assert!(parse_klog("not a klog line", 2026).is_none());
    }
}
