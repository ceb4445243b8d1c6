//! A one-node Kubernetes cluster for tests and `cargo xtask demo --cluster`:
//! etcd (Debian's `etcd-server` 3.4), kube-apiserver, kube-controller-manager,
//! kube-scheduler and kubectl built from `k8s.io/kubernetes` at the version
//! of the default kubelet (`cargo xtask setup`, v1.36.3), and the node of
//! [`crate::node`]: a real kubelet registered through a token kubeconfig, on
//! containerd 2.2.9 with runc, the local registry and a CNI bridge
//! ([`containerd::Cni`]: pods off the host network).
//!
//! What each piece is started with, and why:
//! - etcd: its data dir under the cluster's dir, client and peer URLs on
//!   free 127.0.0.1 ports.
//! - kube-apiserver: the smallest flag set that serves (service-account
//!   issuer and keys, a service IP range, a self-signed serving cert in its
//!   `--cert-dir`), a static token (`system:masters`) as the only
//!   credential and `AlwaysAllow`; the default admission plugins stay on,
//!   ServiceAccount among them, so every pod gets its projected
//!   `kube-api-access-*` volume (a TokenRequest per pod).
//! - kube-controller-manager: the controllers the tests need; `nodelifecycle`
//!   removes the `not-ready` taint kubelet registers with (without it every
//!   pod stays Pending), `serviceaccount` and `serviceaccount-token` create
//!   the `default` accounts, `root-ca-cert-publisher` the `kube-root-ca.crt`
//!   ConfigMap the projected volume reads, `persistentvolume-binder` binds
//!   claims, `deployment`/`replicaset`/`daemonset` make the pods,
//!   `garbagecollector` and `namespace` clean up after deletes.
//! - kube-scheduler: places every pod, the DaemonSet's too.
//! - kubelet: the node harness's configuration plus `--kubeconfig`.
//!
//! Every daemon has a pid file (`DIR/pids/NAME.pid`: pid and start time)
//! and is stopped by that pid: SIGTERM, then SIGKILL. A cluster whose test
//! process died without cleaning up (SIGKILL) is found by the next
//! [`Cluster::start`] from its `owner` file and its daemons killed by their
//! pid files. [`Cluster::shutdown`] stops everything in order and returns
//! what is left on the machine (processes, mounts, cgroups, network
//! namespaces, the bridge and veths, iptables rules and chains, the
//! `ip_forward` setting, directories): a test asserts it is empty. `Drop`
//! does the same when a test panics.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    containerd::{self, Cni},
    node::{Node, NodeOpts},
    otelcol::Collector,
    pidfile::{pid_file_process, start_time, write_pid_file},
    util::{free_port, rand_hex, run_with_timeout, setup_bin, tail},
};

/// The node's name: a name of its own, not the machine's hostname (a
/// DaemonSet's pod must take it from the downward API, not from its own
/// hostname).
pub const NODE_NAME: &str = "podtrace-cluster-node";
/// The release of the control plane `cargo xtask setup` builds (the default
/// and tuned kubelet's).
pub const VERSION: &str = "v1.36.3";
/// The pods' service IP range (no kube-proxy: nothing routes it).
const SERVICE_CIDR: &str = "10.0.0.0/24";
/// The static token of the only user (`system:masters`).
pub const TOKEN: &str = "podtrace-test-token";
/// Where stale clusters are looked for: `podtrace-cluster-*` here.
const PREFIX: &str = "podtrace-cluster-";

/// A control-plane program `cargo xtask setup` builds:
/// `~/.podtrace/bin/kube-apiserver-v1.36.3`. Panics with what to run when
/// it is missing.
pub fn bin(name: &str) -> PathBuf {
    setup_bin(
        &format!("{name}-{VERSION}"),
        "the control plane from the k8s.io/kubernetes module",
    )
}

fn signal(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

/// A daemon of the cluster: its child, pid file and log.
struct Daemon {
    name: &'static str,
    child: Option<Child>,
    pid_file: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("create daemon log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        let pid_file = dir.join("pids").join(format!("{name}.pid"));
        write_pid_file(&pid_file, child.id());
        Daemon {
            name,
            child: Some(child),
            pid_file,
            log,
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM by the pid file's pid, SIGKILL after `grace`; reaped, pid
    /// file removed.
    fn stop(&mut self, grace: Duration) {
        if let Some(pid) = pid_file_process(&self.pid_file) {
            signal(pid, libc::SIGTERM);
            let t = Instant::now();
            while t.elapsed() < grace && pid_file_process(&self.pid_file).is_some() {
                if self.exited().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if pid_file_process(&self.pid_file).is_some() {
                signal(pid, libc::SIGKILL);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// `iptables-save` and `ip6tables-save`, as (table, line) without counters
/// and comments: what rules and chains exist.
fn iptables_state() -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let (st, text, _) = run_with_timeout(&mut Command::new(tool), Duration::from_secs(20));
        if !st.is_some_and(|s| s.success()) {
            continue;
        }
        let mut table = String::new();
        for l in text.lines() {
            if let Some(t) = l.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(chain) = l.strip_prefix(':') {
                // `:CHAIN POLICY [packets:bytes]`: the counters change.
                let name = chain.split_whitespace().next().unwrap_or("");
                out.insert((tool.to_string(), table.clone(), format!(":{name}")));
            } else if l.starts_with("-A ") {
                out.insert((tool.to_string(), table.clone(), l.to_string()));
            }
        }
    }
    out
}

/// Splits an iptables-save rule into arguments (double quotes group, `\`
/// escapes).
fn rule_args(line: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    v.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        v.push(cur);
    }
    v
}

/// Removes the rules, then the chains, of `new` (lines of
/// [`iptables_state`] that were not there before the cluster).
fn remove_iptables(new: &BTreeSet<(String, String, String)>) {
    for (tool, table, line) in new {
        if let Some(rule) = line.strip_prefix("-A ") {
            let cmd = tool.trim_end_matches("-save");
            let mut c = Command::new(cmd);
            c.args(["-w", "5", "-t", table, "-D"]).args(rule_args(rule));
            let _ = run_with_timeout(&mut c, Duration::from_secs(10));
        }
    }
    for (tool, table, line) in new {
        if let Some(chain) = line.strip_prefix(':') {
            let cmd = tool.trim_end_matches("-save");
            for op in ["-F", "-X"] {
                let _ = run_with_timeout(
                    Command::new(cmd).args(["-w", "5", "-t", table, op, chain]),
                    Duration::from_secs(10),
                );
            }
        }
    }
}

fn ip_forward() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Kills the daemons of clusters whose test process is gone (their
/// `owner` pid file names no running process): a test killed with SIGKILL
/// cannot clean up. Only processes named by those pid files, with the start
/// time written there, are signalled.
fn kill_stale_clusters() {
    for e in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = e.path();
        let is_cluster = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PREFIX));
        if !is_cluster || pid_file_process(&dir.join("owner")).is_some() {
            continue;
        }
        for p in std::fs::read_dir(dir.join("pids"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some(pid) = pid_file_process(&p.path()) {
                eprintln!(
                    "cluster: killing {} (pid {pid}) of a cluster whose test is gone ({})",
                    p.file_name().to_string_lossy(),
                    dir.display()
                );
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// The six kinds of volume a pod of [`Cluster::deployment`] carries, as
/// (what, the pod's name for the volume or its prefix, kubelet's plugin).
/// The projected service-account token is added by the ServiceAccount
/// admission plugin (`kube-api-access-<random>`).
pub const VOLUME_KINDS: [(&str, &str, &str); 6] = [
    (
        "projected service-account token",
        "kube-api-access-",
        "kubernetes.io/projected",
    ),
    ("ConfigMap", "config", "kubernetes.io/configmap"),
    ("Secret", "secret", "kubernetes.io/secret"),
    ("downward API", "podinfo", "kubernetes.io/downward-api"),
    ("emptyDir", "scratch", "kubernetes.io/empty-dir"),
    (
        "PVC bound to a local PV",
        "data",
        "kubernetes.io/local-volume",
    ),
];

/// The namespace of the test workloads.
pub const NAMESPACE: &str = "default";
/// The claim every pod of a [`Cluster::deployment`] with a PVC mounts
/// (ReadWriteOnce: all of them run on the one node).
const CLAIM: &str = "podtrace-data";

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp as the API
/// server writes them (`2026-12-04T20:50:01Z`, whole seconds).
pub fn rfc3339_unix_s(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || !t.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, s) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days since 1970-01-01 of a civil date (proleptic Gregorian).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + s)
}

/// What a cluster runs on: the kubelet binary, and extra kubelet config.
pub struct ClusterOpts {
    pub kubelet: PathBuf,
    /// Extra `key: value` lines for the KubeletConfiguration.
    pub extra_kubelet_config: Vec<String>,
}

impl ClusterOpts {
    pub fn new(kubelet: PathBuf) -> ClusterOpts {
        ClusterOpts {
            kubelet,
            extra_kubelet_config: Vec::new(),
        }
    }
}

/// What the node was, kept to look for leftovers once it is gone.
#[derive(Clone)]
struct NodeFacts {
    dir: PathBuf,
    cgroup_root: String,
    kubelet_pid: u32,
    env_dir: PathBuf,
    ids: BTreeSet<String>,
    cni: Option<Cni>,
    interfaces_before: BTreeSet<String>,
}

/// A running one-node cluster.
pub struct Cluster {
    /// Everything of the control plane: pki, logs, pid files, kubeconfig.
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub api_url: String,
    pub kubectl_bin: PathBuf,
    node: Option<Node>,
    /// The OpenTelemetry Collector kubelet's tracing goes to (and
    /// podtrace's `--otlp-endpoint` in the cluster test and the demo).
    collector: Option<Collector>,
    /// etcd, apiserver, controller-manager, scheduler (started in that
    /// order, stopped in the reverse).
    daemons: Vec<Daemon>,
    iptables_before: BTreeSet<(String, String, String)>,
    ip_forward_before: String,
    down: bool,
}

/// What a cluster put on the machine, taken while it runs, to tell once it
/// is gone what is left of it ([`Footprint::leftovers`]).
#[derive(Clone)]
pub struct Footprint {
    dir: PathBuf,
    /// (pid file name, pid, start time) of the daemons and the node's
    /// processes.
    processes: Vec<(String, u32, u64)>,
    node: Option<NodeFacts>,
    iptables_before: BTreeSet<(String, String, String)>,
    ip_forward_before: String,
}

impl Footprint {
    /// Everything of the cluster still on the machine: its processes (same
    /// pid and start time), the node's cgroups, mounts and directories,
    /// containerd's containers, cgroups and mounts, the bridge and new
    /// veths, new iptables rules and chains, a changed `ip_forward`, the
    /// cluster's directory and mounts under it.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (name, pid, st) in &self.processes {
            if start_time(*pid) == Some(*st) {
                v.push(format!("process {pid} ({name})"));
            }
        }
        if let Some(f) = &self.node {
            v.extend(Node::leftovers(&f.dir, &f.cgroup_root, f.kubelet_pid));
            v.extend(containerd::Env::leftovers_of(&f.env_dir, &f.ids));
            v.extend(containerd::network_leftovers(
                f.cni.as_ref(),
                &f.interfaces_before,
            ));
        }
        for m in containerd::mounts_under(&self.dir) {
            v.push(format!("mount {}", m.display()));
        }
        if self.dir.exists() {
            v.push(format!("directory {}", self.dir.display()));
        }
        for (tool, table, line) in iptables_state().difference(&self.iptables_before) {
            v.push(format!("{tool} -t {table}: {line}"));
        }
        let fwd = ip_forward();
        if fwd != self.ip_forward_before {
            v.push(format!(
                "net.ipv4.ip_forward {} (was {})",
                fwd, self.ip_forward_before
            ));
        }
        v
    }
}

impl Cluster {
    /// Starts the control plane, then the node, and returns once the node
    /// is Ready without taints and the `default` namespace has its service
    /// account and `kube-root-ca.crt` (what every pod's projected volume
    /// needs).
    pub fn start(opts: ClusterOpts) -> Cluster {
        // SAFETY: geteuid has no preconditions.
        assert!(unsafe { libc::geteuid() } == 0, "the cluster needs root");
        kill_stale_clusters();
        let t0 = Instant::now();
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", rand_hex()));
        for d in ["pids", "pki", "etcd", "manifests"] {
            std::fs::create_dir_all(dir.join(d)).expect("create cluster dir");
        }
        write_pid_file(&dir.join("owner"), std::process::id());
        let mut c = Cluster {
            kubeconfig: dir.join("kubeconfig"),
            api_url: String::new(),
            kubectl_bin: bin("kubectl"),
            dir,
            node: None,
            collector: None,
            daemons: Vec::new(),
            iptables_before: iptables_state(),
            ip_forward_before: ip_forward(),
            down: false,
        };
        // From here on a panic drops `c`, which tears down what started.
        c.start_control_plane();
        let t_cp = t0.elapsed();
        let cni = Cni::random();
        let gateway = cni.gateway.clone();
        // kubelet exports to the collector's gRPC receiver; the collector
        // starts once the node's bridge (its HTTP receiver's address) is
        // up, and kubelet's exporter connects when it has spans.
        let otel_grpc = format!("127.0.0.1:{}", free_port());
        let mut node_opts = NodeOpts::new(opts.kubelet);
        node_opts.containerd = containerd::Options::v2().cni(cni);
        node_opts.kubeconfig = Some(c.kubeconfig.clone());
        node_opts.node_name = NODE_NAME.to_string();
        node_opts.extra_config = opts.extra_kubelet_config;
        node_opts.tracing_endpoint = Some(otel_grpc.clone());
        let node = Node::start(node_opts);
        for (name, pid) in [
            ("kubelet", node.kubelet_pid),
            ("containerd", node.env.containerd_pid),
            ("registry", node.env.registry_pid),
            ("otlp-sink", node.sink.pid()),
        ] {
            write_pid_file(&c.dir.join("pids").join(format!("{name}.pid")), pid);
        }
        c.node = Some(node);
        c.collector = Some(Collector::start(
            &c.dir.join("otelcol"),
            &c.dir.join("pids"),
            &otel_grpc,
            &gateway,
        ));
        c.wait_node_ready();
        c.wait_for(
            "the default service account and kube-root-ca.crt",
            Duration::from_secs(60),
            |c| {
                let ok = c.kubectl_ok(&["get", "serviceaccount", "default", "-n", "default"])
                    && c.kubectl_ok(&["get", "configmap", "kube-root-ca.crt", "-n", "default"]);
                ok.then_some(())
            },
        );
        eprintln!(
            "cluster: up in {:.1} s (control plane {:.1} s; node {NODE_NAME}, dir {}, api {})",
            t0.elapsed().as_secs_f64(),
            t_cp.as_secs_f64(),
            c.dir.display(),
            c.api_url
        );
        c
    }

    fn start_control_plane(&mut self) {
        let d = self.dir.clone();
        let pki = d.join("pki");
        for args in [
            vec!["genrsa", "-out", "sa.key", "2048"],
            vec!["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        ] {
            let (st, out, err) = run_with_timeout(
                Command::new("openssl").current_dir(&pki).args(&args),
                Duration::from_secs(60),
            );
            assert!(
                st.is_some_and(|s| s.success()),
                "openssl {} failed ({st:?}): {out}{err}",
                args.join(" ")
            );
        }
        std::fs::write(
            d.join("tokens.csv"),
            format!("{TOKEN},admin,admin,system:masters\n"),
        )
        .expect("write tokens.csv");

        // etcd.
        let (client, peer) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let etcd = Daemon::spawn(
            "etcd",
            Command::new("etcd")
                .arg("--name=podtrace")
                .arg(format!("--data-dir={}", d.join("etcd").display()))
                .arg(format!("--listen-client-urls={etcd_url}"))
                .arg(format!("--advertise-client-urls={etcd_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=podtrace={peer_url}"))
                // The data dir is thrown away with the test.
                .arg("--unsafe-no-fsync")
                .arg("--logger=zap"),
            &d,
        );
        self.daemons.push(etcd);

        // kube-apiserver.
        let port = free_port();
        self.api_url = format!("https://127.0.0.1:{port}");
        let api = Daemon::spawn(
            "kube-apiserver",
            Command::new(bin("kube-apiserver"))
                .arg(format!("--etcd-servers={etcd_url}"))
                .arg(format!("--secure-port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                .arg(format!("--cert-dir={}", pki.display()))
                .arg(format!(
                    "--token-auth-file={}",
                    d.join("tokens.csv").display()
                ))
                .arg("--authorization-mode=AlwaysAllow")
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg(format!(
                    "--service-account-key-file={}",
                    pki.join("sa.pub").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    pki.join("sa.key").display()
                ))
                .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
                // The DaemonSet runs with hostPID and added capabilities.
                .arg("--allow-privileged=true"),
            &d,
        );
        self.daemons.push(api);
        std::fs::write(
            &self.kubeconfig,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: podtrace
  cluster: {{server: \"{}\", insecure-skip-tls-verify: true}}
users:
- name: admin
  user: {{token: {TOKEN}}}
contexts:
- name: podtrace
  context: {{cluster: podtrace, user: admin}}
current-context: podtrace
",
                self.api_url
            ),
        )
        .expect("write kubeconfig");
        self.wait_for("kube-apiserver's /readyz", Duration::from_secs(90), |c| {
            c.kubectl_ok(&["get", "--raw", "/readyz"]).then_some(())
        });

        let kc = format!("--kubeconfig={}", self.kubeconfig.display());
        let cm = Daemon::spawn(
            "kube-controller-manager",
            Command::new(bin("kube-controller-manager"))
                .arg(&kc)
                .arg("--leader-elect=false")
                .arg("--controllers=daemonset,deployment,replicaset,serviceaccount,serviceaccount-token,root-ca-cert-publisher,persistentvolume-binder,garbagecollector,namespace,nodelifecycle")
                .arg(format!(
                    "--service-account-private-key-file={}",
                    pki.join("sa.key").display()
                ))
                .arg(format!("--root-ca-file={}", pki.join("apiserver.crt").display()))
                .arg("--bind-address=127.0.0.1")
                // No server: nothing scrapes it.
                .arg("--secure-port=0"),
            &d,
        );
        self.daemons.push(cm);
        let sched = Daemon::spawn(
            "kube-scheduler",
            Command::new(bin("kube-scheduler"))
                .arg(&kc)
                .arg("--leader-elect=false")
                .arg("--bind-address=127.0.0.1")
                .arg("--secure-port=0"),
            &d,
        );
        self.daemons.push(sched);
    }

    /// The node (kubelet, containerd, registry, OTLP receiver).
    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("the cluster's node runs")
    }

    /// The collector (kubelet's spans; podtrace's where the test says so).
    pub fn collector(&mut self) -> &mut Collector {
        self.collector
            .as_mut()
            .expect("the cluster's collector was started")
    }

    /// Fails with the logs of any daemon that exited.
    fn check_daemons(&mut self) {
        for d in &mut self.daemons {
            if let Some(st) = d.exited() {
                panic!("{} exited ({st})\n{}", d.name, tail(&d.log, 40));
            }
        }
    }

    /// Polls `f` every 200 ms until it returns Some, failing after
    /// `timeout` (or as soon as a daemon exits) with what it waited for.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut Cluster) -> Option<T>,
    ) -> T {
        let t = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            self.check_daemons();
            if t.elapsed() > timeout {
                let logs: Vec<String> = self.daemons.iter().map(|d| tail(&d.log, 8)).collect();
                let kubelet = self
                    .node
                    .as_ref()
                    .map(|n| tail(&n.kubelet_log, 30))
                    .unwrap_or_default();
                panic!(
                    "cluster: waited {timeout:?} for {what}\n{}\n{kubelet}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl_bin);
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args);
        c
    }

    /// kubectl ARGS; its stdout, or a panic with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let (st, out, err) = run_with_timeout(&mut self.kubectl_cmd(args), Duration::from_secs(60));
        assert!(
            st.is_some_and(|s| s.success()),
            "kubectl {} failed ({st:?}):\n{out}{err}",
            args.join(" ")
        );
        out
    }

    /// Whether kubectl ARGS succeeds.
    pub fn kubectl_ok(&self, args: &[&str]) -> bool {
        run_with_timeout(&mut self.kubectl_cmd(args), Duration::from_secs(30))
            .0
            .is_some_and(|s| s.success())
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl {} printed no JSON ({e}):\n{out}", a.join(" ")))
    }

    /// `kubectl apply -f` of `yaml` (kept as `manifests/NAME.yaml`).
    pub fn apply(&self, name: &str, yaml: &str) -> String {
        let f = self.dir.join("manifests").join(format!("{name}.yaml"));
        std::fs::write(&f, yaml).expect("write manifest");
        self.kubectl(&["apply", "-f", &f.to_string_lossy()])
    }

    fn wait_node_ready(&mut self) {
        self.wait_for(
            &format!("node {NODE_NAME} Ready without taints"),
            Duration::from_secs(120),
            |c| {
                if !c.node().kubelet_alive() {
                    panic!(
                        "kubelet exited while registering\n{}",
                        tail(&c.node().kubelet_log, 60)
                    );
                }
                if !c.kubectl_ok(&["get", "node", NODE_NAME]) {
                    return None;
                }
                let n = c.get_json(&["node", NODE_NAME]);
                let ready = n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["type"] == "Ready" && x["status"] == "True");
                let tainted = n["spec"]["taints"]
                    .as_array()
                    .is_some_and(|t| !t.is_empty());
                (ready && !tainted).then_some(())
            },
        );
    }

    /// kubelet's `/metrics` (read-only port).
    pub fn kubelet_metrics(&self) -> String {
        let port = self
            .node()
            .read_only_port
            .expect("a registered node serves its read-only port");
        let (status, body) = crate::util::http_get(&format!("127.0.0.1:{port}"), "/metrics")
            .unwrap_or_else(|| panic!("kubelet's read-only port {port} does not answer"));
        assert_eq!(status, 200, "kubelet /metrics: {body}");
        body
    }

    /// The pods matching `selector` in `namespace` once `n` of them are
    /// Running with every container ready; their JSON.
    pub fn wait_pods_ready(
        &mut self,
        namespace: &str,
        selector: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        self.wait_for(
            &format!("{n} ready pods {selector} in {namespace}"),
            timeout,
            |c| {
                let pods = c.get_json(&["pods", "-n", namespace, "-l", selector]);
                let items = pods["items"].as_array().cloned().unwrap_or_default();
                let ready = items
                    .iter()
                    .filter(|p| p["status"]["phase"] == "Running")
                    .filter(|p| {
                        p["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|x| x["type"] == "Ready" && x["status"] == "True")
                    })
                    .count();
                (ready == n && items.len() == n).then_some(items)
            },
        )
    }

    /// Scales Deployment `name` (in [`NAMESPACE`], label `app=NAME`) up one
    /// pod at a time to `replicas`, each step once the pods so far are
    /// ready; returns the pods' JSON. One pod starting at a time, as the
    /// node harness starts static pods: on 2 busy cores a burst of pods
    /// makes kubelet's goroutines wait milliseconds for a CPU between two
    /// of its own instants (a function's entry and its first log line),
    /// which is not what the comparisons are about.
    pub fn scale_up(&mut self, name: &str, replicas: usize, timeout: Duration) -> Vec<Value> {
        let deployment = format!("deployment/{name}");
        let selector = format!("app={name}");
        let mut pods = Vec::new();
        for n in 1..=replicas {
            self.kubectl(&[
                "scale",
                &deployment,
                "-n",
                NAMESPACE,
                &format!("--replicas={n}"),
            ]);
            pods = self.wait_pods_ready(NAMESPACE, &selector, n, timeout);
        }
        pods
    }

    /// The objects the volumes of [`Cluster::deployment`] come from: a
    /// ConfigMap, a Secret, and a local PersistentVolume (a directory of
    /// the node, with the node affinity local volumes need) bound to a
    /// claim by name; returns once the claim is Bound.
    pub fn create_volume_sources(&mut self) {
        let local = self.dir.join("local-pv");
        std::fs::create_dir_all(&local).expect("create the local PV's directory");
        std::fs::write(local.join("hello"), "podtrace\n").expect("write into the local PV");
        let yaml = format!(
            "apiVersion: v1
kind: ConfigMap
metadata: {{name: podtrace-config, namespace: {NAMESPACE}}}
data: {{greeting: hello, level: debug}}
---
apiVersion: v1
kind: Secret
metadata: {{name: podtrace-secret, namespace: {NAMESPACE}}}
stringData: {{token: not-a-real-secret}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {{name: podtrace-local}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: \"\"
  volumeMode: Filesystem
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [{NODE_NAME}]}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {CLAIM}, namespace: {NAMESPACE}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: \"\"
  volumeName: podtrace-local
  resources: {{requests: {{storage: 1Gi}}}}
",
            path = local.display()
        );
        self.apply("volume-sources", &yaml);
        self.wait_for(
            "the claim bound to the local PV",
            Duration::from_secs(60),
            |c| {
                let pvc = c.get_json(&["pvc", CLAIM, "-n", NAMESPACE]);
                (pvc["status"]["phase"] == "Bound").then_some(())
            },
        );
    }

    /// A Deployment `name` of `replicas` pods (label `app=NAME`), one
    /// container from the node's registry, each pod with a ConfigMap, a
    /// Secret, a downward-API, an emptyDir volume and the projected token
    /// the admission plugin adds, and with `pvc` the claim of
    /// [`Cluster::create_volume_sources`]: [`VOLUME_KINDS`].
    pub fn deployment(&self, name: &str, replicas: usize, pvc: bool) -> String {
        let (pvc_mount, pvc_volume) = if pvc {
            (
                "\n        - {name: data, mountPath: /data}",
                format!("\n      - {{name: data, persistentVolumeClaim: {{claimName: {CLAIM}}}}}"),
            )
        } else {
            ("", String::new())
        };
        format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      enableServiceLinks: false
      containers:
      - name: app
        image: {image}
        imagePullPolicy: IfNotPresent
        volumeMounts:
        - {{name: config, mountPath: /config}}
        - {{name: secret, mountPath: /secret}}
        - {{name: podinfo, mountPath: /podinfo}}
        - {{name: scratch, mountPath: /scratch}}{pvc_mount}
      volumes:
      - {{name: config, configMap: {{name: podtrace-config}}}}
      - {{name: secret, secret: {{secretName: podtrace-secret}}}}
      - name: podinfo
        downwardAPI:
          items:
          - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
          - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{name: scratch, emptyDir: {{}}}}{pvc_volume}
",
            image = self.node().env.image
        )
    }

    /// What the cluster has put on the machine so far.
    pub fn footprint(&self) -> Footprint {
        let processes = std::fs::read_dir(self.dir.join("pids"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|p| p.file_name() != "owner")
            .filter_map(|p| {
                let text = std::fs::read_to_string(p.path()).ok()?;
                let mut it = text.split_whitespace();
                let pid = it.next()?.parse().ok()?;
                let st = it.next()?.parse().ok()?;
                Some((p.file_name().to_string_lossy().into_owned(), pid, st))
            })
            .collect();
        Footprint {
            dir: self.dir.clone(),
            processes,
            node: self.node.as_ref().map(|node| NodeFacts {
                dir: node.dir.clone(),
                cgroup_root: node.cgroup_root.clone(),
                kubelet_pid: node.kubelet_pid,
                env_dir: node.env.dir.clone(),
                ids: node.env.known_ids(),
                cni: node.env.cni.clone(),
                interfaces_before: node.env.interfaces_before.clone(),
            }),
            iptables_before: self.iptables_before.clone(),
            ip_forward_before: self.ip_forward_before.clone(),
        }
    }

    /// Stops everything in order and returns what is left on the machine
    /// (empty when the cluster cleaned up after itself).
    pub fn shutdown(mut self) -> Vec<String> {
        self.teardown()
    }

    fn teardown(&mut self) -> Vec<String> {
        if self.down {
            return Vec::new();
        }
        self.down = true;
        let footprint = self.footprint();
        // The controllers first, so nothing makes pods while the node goes.
        for d in self.daemons.iter_mut().rev().take(2) {
            d.stop(Duration::from_secs(10));
        }
        // Stops kubelet, removes every pod through CRI (CNI DEL removes
        // their veths), stops containerd, the registry and the OTLP
        // receiver, unmounts, removes cgroups, the bridge and the node's
        // directories.
        drop(self.node.take());
        drop(self.collector.take());
        for d in self.daemons.iter_mut().rev() {
            d.stop(Duration::from_secs(10));
        }
        // kubelet's iptables hint/canary chains and anything else that
        // appeared while the cluster ran.
        let new: BTreeSet<_> = iptables_state()
            .difference(&self.iptables_before)
            .cloned()
            .collect();
        remove_iptables(&new);
        containerd::unmount_under(&self.dir);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cluster: removing {}: {e}", self.dir.display());
        }
        footprint.leftovers()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let left = self.teardown();
        if !left.is_empty() {
            eprintln!("cluster: left behind:\n  {}", left.join("\n  "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_rules_split_like_a_shell() {
        assert_eq!(
            rule_args(r#"KUBE-FIREWALL -m comment --comment "block \"x\" y" -j DROP"#),
            vec![
                "KUBE-FIREWALL",
                "-m",
                "comment",
                "--comment",
                "block \"x\" y",
                "-j",
                "DROP"
            ]
        );
        assert_eq!(
            rule_args(r#"A --comment "" -j B"#),
            vec!["A", "--comment", "", "-j", "B"]
        );
    }

    #[test]
    fn api_timestamps_parse() {
        assert_eq!(rfc3339_unix_s("1970-01-01T00:00:00Z"), Some(0));
        // 2026-11-29T11:40:01Z (the klog test's instant, whole seconds).
        assert_eq!(rfc3339_unix_s("2026-11-29T11:40:01Z"), Some(1_795_952_401));
        assert_eq!(rfc3339_unix_s("2024-02-29T23:59:59Z"), Some(1_709_251_199));
        assert_eq!(rfc3339_unix_s("not a time"), None);
    }

    #[test]
    fn pid_files_name_a_process_by_pid_and_start_time() {
        let dir = std::env::temp_dir().join(format!("pidfile-{}", rand_hex()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let f = dir.join("me.pid");
        write_pid_file(&f, std::process::id());
        assert_eq!(pid_file_process(&f), Some(std::process::id()));
        // Same pid, another start time: not the same process.
        let st = start_time(std::process::id()).expect("my start time");
        std::fs::write(&f, format!("{} {}\n", std::process::id(), st + 1)).expect("write");
        assert_eq!(pid_file_process(&f), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
