//! A real containerd for tests: Debian's `containerd` (1.6.x) or a
//! containerd 2.x (`cargo xtask setup` builds 2.2.9), with Debian's `runc`,
//! its own config, root, state and socket under a temporary directory; a real
//! local registry (`docker-registry`) so PullImage really pulls; tiny images
//! built from static Go binaries (tests/containerd/build-images.sh); and the
//! `cri-client` tool (tests/cri-client) to start pods the way kubelet does.
//!
//! ```no_run
//! let env = podtrace_tests::containerd::Env::start();
//! let out = env
//!     .cri("run-pods")
//!     .args(["--image", &env.image, "--pods", "3", "--namespace", "ns"])
//!     .arg("--ground-truth").arg(env.dir.join("gt.jsonl"))
//!     .arg("--stop")
//!     .output()
//!     .unwrap();
//! // dropping `env` stops every pod, kills containerd, its shims and the
//! // registry, unmounts what is left, removes per-pod cgroups and the dir.
//! ```
//!
//! Which containerd: [`Options`]. `Env::start()` runs `PODTRACE_CONTAINERD`
//! (with the shim from `PODTRACE_CONTAINERD_SHIM`) or the containerd on PATH;
//! [`Options::debian`] and [`Options::v2`] pick one explicitly. The config
//! template follows the binary's major version (`containerd --version`):
//! tests/containerd/containerd-{1,2}.x.toml.in. containerd 2.x can also send
//! its own OTLP traces somewhere ([`Options::otlp_endpoint`]).
//!
//! Pod networking: host network by default (no CNI plugin runs); with
//! [`Options::cni`], a bridge network of the test's own (Debian's
//! containernetworking-plugins: bridge, host-local, loopback), see [`Cni`].
//!
//! Needs root and `apt-get install containerd runc docker-registry skopeo
//! golang-go` (and containernetworking-plugins for [`Cni`]). The module uses only std, libc and `util.rs` (likewise), so
//! both can also be pulled into another crate's tests with `#[path]`
//! (tests/cri-client/tests/env.rs does).
//!
//! Like the rest of the harness it panics with a clear message (including
//! the tail of containerd's log) instead of returning errors; `Drop` cleans
//! up also when the test panics.

use std::{
    collections::BTreeSet,
    ffi::CString,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::{Duration, Instant, SystemTime},
};

use crate::util::{
    cgroup_roots, free_port, podtrace_home, rand_hex, repo_root, run_with_timeout, stop_child,
    tail, workspace_bin,
};

const CONTAINERD_1_CONFIG: &str = include_str!("../containerd/containerd-1.x.toml.in");
const CONTAINERD_2_CONFIG: &str = include_str!("../containerd/containerd-2.x.toml.in");
const REGISTRY_CONFIG: &str = include_str!("../containerd/registry-config.yml.in");
const HOSTS_TOML: &str = include_str!("../containerd/hosts.toml.in");

/// Debian packages the environment needs.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "docker-registry",
    "skopeo",
    "golang-go",
];

/// The CRI calls kubelet makes for one pod, in order: the ones podtrace's
/// containerd catalogue traces, cri-client makes, and the fakes play.
pub const CRI_CALLS: [&str; 8] = [
    "RunPodSandbox",
    "PullImage",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// The containerd 2.x `cargo xtask setup` builds (into
/// `~/.podtrace/bin/containerd-v2.2.9/`).
pub const CONTAINERD_V2_VERSION: &str = "2.2.9";

/// Where containerd (1.6 and 2.x alike) puts shim sockets, whatever the
/// config says.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// Parent cgroup (under every hierarchy) of the per-container cgroups
/// containerd's default spec asks runc for: /k8s.io/<id>.
const CGROUP_PARENT: &str = "k8s.io";

/// Real-time priorities of the two processes whose clocks the containerd
/// tests compare: containerd (its handler, seen by podtrace) and cri-client
/// (ground truth around each call). On a busy 2-core VM a normal-priority
/// process can wait 10+ ms for a CPU after its socket became readable, and
/// that wait, not containerd, would then be in the client's numbers. Both use
/// SCHED_RESET_ON_FORK so the shims and runc they start run as usual.
/// Pass as `.env("CRI_CLIENT_RT_PRIORITY", CRI_CLIENT_RT_PRIORITY)` to
/// whatever ends up running cri-client (podtrace and the workload pass their
/// environment on).
pub const CRI_CLIENT_RT_PRIORITY: &str = "20";
const CONTAINERD_RT_PRIORITY: i32 = 10;

/// Make `cmd`'s process run at SCHED_FIFO `prio` (reset on fork), if the
/// machine lets it (a cgroup without real-time budget does not): best
/// effort, the tests' rules hold without it, just with noisier clients.
fn realtime(cmd: &mut Command, prio: i32) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs between fork and exec and only makes one
    // async-signal-safe system call on a stack value.
    unsafe {
        cmd.pre_exec(move || {
            let param = libc::sched_param {
                sched_priority: prio,
            };
            // Failure is fine (see above); nothing can be printed here.
            let _ =
                libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param);
            Ok(())
        })
    };
}

/// Which containerd an [`Env`] runs, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The containerd binary.
    pub containerd: PathBuf,
    /// The `containerd-shim-runc-v2` it starts. containerd looks shims up on
    /// its PATH (then next to itself), so a 2.x containerd would otherwise
    /// start Debian's 1.6 shim from /usr/bin: the harness puts this one first
    /// on containerd's PATH.
    pub shim: PathBuf,
    /// OTLP/gRPC endpoint (`host:port`, plain text) for containerd's own
    /// traces; `None`: tracing off. containerd 2.x only.
    pub otlp_endpoint: Option<String>,
    /// Pods off the host network, on a bridge of their own; `None`: pods
    /// must use the host network.
    pub cni: Option<Cni>,
}

/// Debian's CNI plugins (containernetworking-plugins).
pub const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";

/// A pod network of one test: a Linux bridge the harness creates (with the
/// gateway address, so the host reaches pod IPs and pods reach the host at
/// [`Cni::gateway`]) and containerd's CNI config using Debian's `bridge`
/// (no gateway route, no IP masquerade: no iptables rule and no
/// `ip_forward` change), `host-local` IPAM (its state under the test's
/// dir) and `loopback`. Pods reach the host, not the world (they need
/// nothing else: images are pulled by containerd on the host).
/// CNI DEL (containerd, on StopPodSandbox) removes each pod's veth; the
/// harness deletes the bridge.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Bridge interface name (at most 15 bytes).
    pub bridge: String,
    /// The pods' /24, `10.254.N.0/24`.
    pub subnet: String,
    /// The bridge's (the host's) address on it, `10.254.N.1`.
    pub gateway: String,
}

impl Cni {
    /// A bridge and /24 of their own: `ptbr<8 hex>`, `10.254.N.0/24` with a
    /// random N (one test at a time holds the e2e lock; a collision with
    /// something else on the machine fails the bridge's set-up loudly).
    pub fn random() -> Cni {
        let h = rand_hex();
        let n = u8::from_str_radix(&h[..2], 16).unwrap_or(7);
        Cni {
            bridge: format!("ptbr{}", &h[4..12]),
            subnet: format!("10.254.{n}.0/24"),
            gateway: format!("10.254.{n}.1"),
        }
    }

    /// containerd's CNI network config list (plugins 1.1.1 speak CNI 1.0.0).
    fn conflist(&self, ipam_dir: &Path) -> String {
        format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "podtrace-{bridge}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{subnet}", "gateway": "{gateway}"}}]],
        "dataDir": "{ipam}"
      }}
    }}
  ]
}}
"#,
            bridge = self.bridge,
            subnet = self.subnet,
            gateway = self.gateway,
            ipam = ipam_dir.display()
        )
    }

    /// Creates the bridge with the gateway address, up. Its MAC address is
    /// set, not left to the kernel: a bridge with a random one takes the
    /// lowest MAC of its ports, so it changes as pods' veths join, and a pod
    /// that resolved the gateway before (the DaemonSet's podtrace pushing
    /// OTLP to a receiver on it) sends to the old address until its ARP
    /// entry expires: connections timed out for ~40 s at a time.
    fn create_bridge(&self) {
        let prefix = self.subnet.rsplit('/').next().unwrap_or("24");
        // Locally administered, unicast: 02:70:74 ("pt") + the bridge's hex.
        let h = self.bridge.trim_start_matches("ptbr");
        let mac = format!("02:70:74:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6]);
        for args in [
            vec![
                "link",
                "add",
                &self.bridge,
                "address",
                &mac,
                "type",
                "bridge",
            ],
            vec![
                "addr",
                "add",
                &format!("{}/{prefix}", self.gateway),
                "dev",
                &self.bridge,
            ],
            vec!["link", "set", &self.bridge, "up"],
        ] {
            let (st, out, err) =
                run_with_timeout(Command::new("ip").args(&args), Duration::from_secs(10));
            assert!(
                st.is_some_and(|s| s.success()),
                "ip {} failed ({st:?}): {out}{err}",
                args.join(" ")
            );
        }
    }

    /// Deletes the bridge (its veths are gone with the pods' namespaces).
    fn delete_bridge(&self) {
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = run_with_timeout(
                Command::new("ip").args(["link", "del", &self.bridge]),
                Duration::from_secs(10),
            );
        }
    }
}

/// Host network interfaces (names under /sys/class/net).
pub fn interfaces() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// `containerd-shim-runc-v2` from a dir or a file path.
fn shim_at(p: PathBuf) -> PathBuf {
    if p.is_dir() {
        p.join("containerd-shim-runc-v2")
    } else {
        p
    }
}

impl Options {
    /// `PODTRACE_CONTAINERD` and `PODTRACE_CONTAINERD_SHIM` (a dir or the
    /// shim's path), else the containerd on PATH. Without
    /// `PODTRACE_CONTAINERD_SHIM` the shim next to that containerd, else the
    /// one on PATH.
    pub fn from_env() -> Options {
        let containerd = std::env::var_os("PODTRACE_CONTAINERD")
            .map(PathBuf::from)
            .unwrap_or_else(|| need("containerd", "containerd"));
        Options::with_shim_from_env(containerd)
    }

    fn with_shim_from_env(containerd: PathBuf) -> Options {
        let shim = match std::env::var_os("PODTRACE_CONTAINERD_SHIM") {
            Some(p) => shim_at(PathBuf::from(p)),
            None => containerd
                .parent()
                .map(|d| d.join("containerd-shim-runc-v2"))
                .filter(|p| p.is_file())
                .unwrap_or_else(|| need("containerd-shim-runc-v2", "containerd")),
        };
        Options {
            containerd,
            shim,
            otlp_endpoint: None,
            cni: None,
        }
    }

    /// Debian's containerd 1.6 and its shim (`apt-get install containerd`).
    pub fn debian() -> Options {
        let (containerd, shim) = (
            PathBuf::from("/usr/bin/containerd"),
            PathBuf::from("/usr/bin/containerd-shim-runc-v2"),
        );
        for p in [&containerd, &shim] {
            assert!(
                p.is_file(),
                "{} not found: Debian's containerd is needed (`apt-get install -y containerd`, or `cargo xtask setup`)",
                p.display()
            );
        }
        Options {
            containerd,
            shim,
            otlp_endpoint: None,
            cni: None,
        }
    }

    /// containerd 2.x: `PODTRACE_CONTAINERD` (+ `PODTRACE_CONTAINERD_SHIM`)
    /// if set, else the 2.2.9 `cargo xtask setup` builds into
    /// `~/.podtrace/bin/containerd-v2.2.9/`. Panics with the reason when it
    /// is not there (it does not check the version: [`Env::start_with`]
    /// reports it, the test decides).
    pub fn v2() -> Options {
        if std::env::var_os("PODTRACE_CONTAINERD").is_some() {
            return Options::from_env();
        }
        let dir = podtrace_home()
            .join("bin")
            .join(format!("containerd-v{CONTAINERD_V2_VERSION}"));
        let containerd = dir.join("containerd");
        assert!(
            containerd.is_file(),
            "containerd {CONTAINERD_V2_VERSION} not found at {}: `cargo xtask setup` builds it there (or set PODTRACE_CONTAINERD and PODTRACE_CONTAINERD_SHIM)",
            containerd.display()
        );
        let shim = match std::env::var_os("PODTRACE_CONTAINERD_SHIM") {
            Some(p) => shim_at(PathBuf::from(p)),
            None => dir.join("containerd-shim-runc-v2"),
        };
        Options {
            containerd,
            shim,
            otlp_endpoint: None,
            cni: None,
        }
    }

    /// Send containerd's own traces (OTLP/gRPC, plain text) to `endpoint`.
    pub fn otlp_endpoint(mut self, endpoint: &str) -> Options {
        self.otlp_endpoint = Some(endpoint.to_string());
        self
    }

    /// Pods on a bridge network of their own ([`Cni`]).
    pub fn cni(mut self, cni: Cni) -> Options {
        self.cni = Some(cni);
        self
    }
}

/// `containerd --version`: (version as printed, major). 1.6 prints
/// `containerd github.com/containerd/containerd 1.6.20~ds1 <commit>`, 2.x
/// `containerd github.com/containerd/containerd/v2 v2.2.9 <commit>`.
pub fn containerd_version(bin: &Path) -> (String, u32) {
    let (st, out, err) =
        run_with_timeout(Command::new(bin).arg("--version"), Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "{} --version failed ({st:?}): {out}{err}",
        bin.display()
    );
    let version = out
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("{} --version printed {out:?}", bin.display()))
        .trim_start_matches('v')
        .to_string();
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("{} --version: no major version in {out:?}", bin.display()));
    (version, major)
}

/// Whether a containerd of this version (as [`containerd_version`] gives
/// it) has the OTLP tracing plugins the harness can turn on: 2.x, and 1.7
/// (cmd/containerd/builtins/tracing.go, configured from the same OTEL_*
/// environment as 2.x); not Debian's 1.6, built without them.
pub fn has_tracing(version: &str, major: u32) -> bool {
    let minor: u32 = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    major >= 2 || (major == 1 && minor >= 7)
}

/// A running containerd + registry, owned by one test.
pub struct Env {
    /// The temporary directory everything lives under.
    pub dir: PathBuf,
    /// containerd's gRPC (CRI) socket.
    pub socket: PathBuf,
    /// The local registry, `127.0.0.1:PORT`.
    pub registry: String,
    /// Full reference of the app image (`127.0.0.1:PORT/podtrace/app:1`).
    pub image: String,
    /// Full reference of the sandbox ("pause") image.
    pub pause_image: String,
    /// The containerd binary that runs (what a tracer attaches to).
    pub containerd_bin: PathBuf,
    /// Its version (`1.6.20~ds1`, `2.2.9`) and major version.
    pub version: String,
    pub major: u32,
    /// The shim it starts.
    pub shim: PathBuf,
    /// Where containerd sends its own traces, if anywhere.
    pub otlp_endpoint: Option<String>,
    /// The pod network, if pods are off the host network.
    pub cni: Option<Cni>,
    /// Host interfaces before the environment started (veths left behind
    /// are the new ones).
    pub interfaces_before: BTreeSet<String>,
    pub containerd_pid: u32,
    pub registry_pid: u32,
    /// containerd's stdout+stderr (log level info).
    pub containerd_log: PathBuf,
    /// The cri-client binary `cri()` runs.
    pub cri_client: PathBuf,
    pub registry_log: PathBuf,
    containerd: Option<Child>,
    registry_child: Option<Child>,
    run_containerd_existed: bool,
    cgroup_parent_existed: Vec<PathBuf>,
}

fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| p.exists());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn need(name: &str, package: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("`{name}` not found: the containerd test environment needs `apt-get install -y {package}` (all: {})",
            DEBIAN_PACKAGES.join(" "))
    })
}

/// The `cri-client` binary: `CRI_CLIENT_BIN`, else next to the running test
/// binary's target dir (release, then debug), else `target/release/cri-client`.
pub fn cri_client_bin() -> PathBuf {
    workspace_bin(
        "cri-client",
        "CRI_CLIENT_BIN",
        "`cargo build --release -p cri-client`",
    )
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Build the OCI image layouts once per process (and again only when their
/// sources change): `<repo>/target/containerd-images/{pause,app}`, or
/// `PODTRACE_TEST_IMAGES` if set (then used as is).
pub fn images_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("PODTRACE_TEST_IMAGES") {
            let d = PathBuf::from(d);
            assert!(
                d.join("app/index.json").exists() && d.join("pause/index.json").exists(),
                "PODTRACE_TEST_IMAGES={} has no pause/ and app/ OCI layouts",
                d.display()
            );
            return d;
        }
        let root = repo_root();
        let src = root.join("tests/containerd");
        let out = root.join("target/containerd-images");
        let sources = [
            src.join("build-images.sh"),
            src.join("images/go.mod"),
            src.join("images/pause/main.go"),
            src.join("images/app/main.go"),
        ];
        let newest = sources.iter().filter_map(|p| mtime(p)).max();
        let fresh = |n: &str| match (mtime(&out.join(n).join("index.json")), newest) {
            (Some(built), Some(src)) => built >= src,
            (Some(_), None) => true,
            _ => false,
        };
        if fresh("pause") && fresh("app") {
            return out;
        }
        // Build into a private dir, then move into place: test binaries
        // running in parallel may race to build.
        let tmp = root.join(format!(
            "target/containerd-images.tmp-{}-{}",
            std::process::id(),
            rand_hex()
        ));
        let t = Instant::now();
        let o = Command::new("sh")
            .arg(src.join("build-images.sh"))
            .arg(&tmp)
            .output()
            .unwrap_or_else(|e| panic!("running build-images.sh: {e}"));
        assert!(
            o.status.success(),
            "tests/containerd/build-images.sh failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::create_dir_all(&out).expect("create target/containerd-images");
        for n in ["pause", "app"] {
            if !fresh(n) {
                let _ = std::fs::remove_dir_all(out.join(n));
                let _ = std::fs::rename(tmp.join(n), out.join(n));
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            fresh("pause") && fresh("app"),
            "images not in place under {}",
            out.display()
        );
        eprintln!(
            "containerd env: built test images in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        out
    })
    .clone()
}

/// GET /v2/ on the registry; true on HTTP 200.
fn registry_ready(addr: &str) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&addr.parse().expect("addr"), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.starts_with("HTTP/1.") && head.contains(" 200")
}

fn exited(child: &mut Child) -> Option<ExitStatus> {
    child.try_wait().ok().flatten()
}

fn signal(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

fn substitute(template: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in pairs {
        s = s.replace(k, v);
    }
    s
}

impl Env {
    /// Pushes the OCI layout `layout` (tag from its index) to this
    /// registry as `podtrace:TAG`; returns the reference.
    pub fn push_image(&self, layout: &Path) -> String {
        let index: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(layout.join("index.json"))
                .unwrap_or_else(|e| panic!("{}: {e}", layout.display())),
        )
        .expect("index.json");
        let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .expect("the image's tag")
            .to_string();
        let reference = format!("{}/podtrace:{tag}", self.registry);
        let (st, out, err) = run_with_timeout(
            Command::new("skopeo")
                .args([
                    "copy",
                    "--insecure-policy",
                    "--dest-tls-verify=false",
                    "--quiet",
                ])
                .arg(format!("oci:{}:{tag}", layout.display()))
                .arg(format!("docker://{reference}")),
            Duration::from_secs(120),
        );
        assert!(
            st.is_some_and(|s| s.success()),
            "skopeo copy to {reference} failed ({st:?}): {out}{err}"
        );
        reference
    }

    /// [`Env::start_with`] the containerd [`Options::from_env`] names.
    pub fn start() -> Env {
        Env::start_with(Options::from_env())
    }

    /// Start a registry, push the test images, start containerd, and wait
    /// until a CRI Version call works and both images are pulled (so the
    /// first RunPodSandbox does not include a sandbox-image pull).
    pub fn start_with(opts: Options) -> Env {
        // SAFETY: geteuid has no preconditions.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the containerd test environment needs root"
        );
        let t_start = Instant::now();
        let Options {
            containerd: containerd_bin,
            shim,
            otlp_endpoint,
            cni,
        } = opts;
        for (p, what) in [(&containerd_bin, "containerd"), (&shim, "shim")] {
            assert!(p.is_file(), "{what} {} does not exist", p.display());
        }
        let (version, major) = containerd_version(&containerd_bin);
        assert!(
            major == 1 || major == 2,
            "{} is containerd {version}: the harness has configs for 1.x and 2.x",
            containerd_bin.display()
        );
        assert!(
            otlp_endpoint.is_none() || has_tracing(&version, major),
            "containerd {version} ({}): OTLP tracing is wired for containerd 1.7 and 2.x only (Debian's 1.6 is built without the tracing plugin)",
            containerd_bin.display()
        );
        need("runc", "runc");
        let registry_bin = need("docker-registry", "docker-registry");
        let skopeo = need("skopeo", "skopeo");
        let cri_client = cri_client_bin();
        let images = images_dir();

        let dir = std::env::temp_dir().join(format!(
            "podtrace-ctrd-{}-{}",
            std::process::id(),
            rand_hex()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let cgroup_parent_existed = cgroup_roots()
            .into_iter()
            .map(|r| r.join(CGROUP_PARENT))
            .filter(|p| p.exists())
            .collect();
        // From here on, a panic drops `env`, which cleans up.
        let mut env = Env {
            socket: dir.join("containerd.sock"),
            containerd_log: dir.join("containerd.log"),
            registry_log: dir.join("registry.log"),
            cri_client,
            dir,
            registry: String::new(),
            image: String::new(),
            pause_image: String::new(),
            containerd_bin,
            version,
            major,
            shim,
            otlp_endpoint,
            cni,
            interfaces_before: interfaces(),
            containerd_pid: 0,
            registry_pid: 0,
            containerd: None,
            registry_child: None,
            run_containerd_existed: Path::new("/run/containerd").exists(),
            cgroup_parent_existed,
        };
        let dir = env.dir.clone();
        let dir_s = dir.to_str().expect("temp dir path is UTF-8").to_string();

        // Registry. The port is picked by binding :0 and released before the
        // registry binds it: retry on the (rare) collision.
        for attempt in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let cfg = dir.join("registry.yml");
            std::fs::write(
                &cfg,
                substitute(REGISTRY_CONFIG, &[("@DIR@", &dir_s), ("@ADDR@", &addr)]),
            )
            .expect("write registry config");
            let log = std::fs::File::create(&env.registry_log).expect("create registry log");
            let mut child = Command::new(&registry_bin)
                .arg("serve")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", registry_bin.display()));
            env.registry_pid = child.id();
            let t = Instant::now();
            let mut up = false;
            while t.elapsed() < Duration::from_secs(15) {
                if registry_ready(&addr) {
                    up = true;
                    break;
                }
                if exited(&mut child).is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if up {
                env.registry_child = Some(child);
                env.registry = addr;
                break;
            }
            stop_child(&mut child, Duration::from_secs(1));
            if attempt == 3 {
                panic!(
                    "docker-registry did not come up on {addr}\n{}",
                    tail(&env.registry_log, 30)
                );
            }
        }
        env.pause_image = format!("{}/podtrace/pause:1", env.registry);
        env.image = format!("{}/podtrace/app:1", env.registry);

        for (name, dest) in [
            ("pause", env.pause_image.clone()),
            ("app", env.image.clone()),
        ] {
            let (st, out, err) = run_with_timeout(
                Command::new(&skopeo)
                    .args([
                        "copy",
                        "--insecure-policy",
                        "--dest-tls-verify=false",
                        "--quiet",
                    ])
                    .arg(format!("oci:{}:1", images.join(name).display()))
                    .arg(format!("docker://{dest}")),
                Duration::from_secs(60),
            );
            assert!(
                st.is_some_and(|s| s.success()),
                "skopeo copy of {name} to {dest} failed ({st:?}):\n{out}{err}\n{}",
                tail(&env.registry_log, 20)
            );
        }

        // containerd.
        for d in ["cni/bin", "cni/net.d", "opt", "pod-logs", "tmp", "shim-bin"] {
            std::fs::create_dir_all(dir.join(d)).expect("create dir");
        }
        if let Some(cni) = &env.cni {
            for p in ["bridge", "host-local", "loopback"] {
                let src = Path::new(CNI_PLUGIN_DIR).join(p);
                assert!(
                    src.is_file(),
                    "{} not found: pod networking needs `apt-get install -y containernetworking-plugins`",
                    src.display()
                );
                std::os::unix::fs::symlink(&src, dir.join("cni/bin").join(p))
                    .expect("link a CNI plugin into cni/bin");
            }
            std::fs::write(
                dir.join("cni/net.d/10-podtrace.conflist"),
                cni.conflist(&dir.join("cni/ipam")),
            )
            .expect("write the CNI config");
            cni.create_bridge();
        }
        let hosts = dir.join("certs.d").join(&env.registry);
        std::fs::create_dir_all(&hosts).expect("create certs.d");
        let pairs = [
            ("@DIR@", dir_s.as_str()),
            ("@REGISTRY@", env.registry.as_str()),
        ];
        std::fs::write(hosts.join("hosts.toml"), substitute(HOSTS_TOML, &pairs))
            .expect("write hosts.toml");
        let cfg = dir.join("config.toml");
        let tracing_plugins = if env.otlp_endpoint.is_some() {
            ""
        } else {
            r#""io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing","#
        };
        let template = match env.major {
            1 => CONTAINERD_1_CONFIG,
            _ => CONTAINERD_2_CONFIG,
        };
        let mut pairs = pairs.to_vec();
        pairs.push(("@TRACING_PLUGINS@", tracing_plugins));
        std::fs::write(&cfg, substitute(template, &pairs)).expect("write containerd config");
        // The shim under its own name in a dir of its own, first on PATH.
        let shim_bin = dir.join("shim-bin");
        std::os::unix::fs::symlink(&env.shim, shim_bin.join("containerd-shim-runc-v2"))
            .expect("link the shim into shim-bin");
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        let path =
            std::env::join_paths(std::iter::once(shim_bin).chain(std::env::split_paths(&path)))
                .expect("PATH");
        let log = std::fs::File::create(&env.containerd_log).expect("create containerd log");
        let mut cmd = Command::new(&env.containerd_bin);
        realtime(&mut cmd, CONTAINERD_RT_PRIORITY);
        cmd.env("PATH", path);
        // Only the tracing asked for: none from the test's own environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        if let Some(ep) = &env.otlp_endpoint {
            // containerd 2.2 takes these from the environment only (see
            // containerd-2.x.toml.in), 1.7 from it or its config (it
            // copies the config into the environment); every span
            // sampled, whatever the caller's decision.
            cmd.envs([
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{ep}")),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
                ("OTEL_EXPORTER_OTLP_INSECURE", "true".into()),
                ("OTEL_SERVICE_NAME", "containerd".into()),
                ("OTEL_TRACES_SAMPLER", "traceidratio".into()),
                ("OTEL_TRACES_SAMPLER_ARG", "1.0".into()),
            ]);
        }
        let child = cmd
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", env.containerd_bin.display()));
        env.containerd_pid = child.id();
        env.containerd = Some(child);

        let t = Instant::now();
        let mut last = String::new();
        loop {
            if let Some(st) = env.containerd.as_mut().and_then(exited) {
                panic!(
                    "containerd exited during start-up ({st})\n{}",
                    tail(&env.containerd_log, 40)
                );
            }
            if env.socket.exists() {
                let (st, out, err) = run_with_timeout(
                    env.cri("version")
                        .args(["--connect-timeout", "2", "--call-timeout", "5"]),
                    Duration::from_secs(10),
                );
                if st.is_some_and(|s| s.success()) && out.contains("containerd") {
                    break;
                }
                last = format!("{out}{err}");
            }
            if t.elapsed() > Duration::from_secs(30) {
                panic!(
                    "containerd did not answer a CRI Version call within 30 s (socket {}): {last}\n{}",
                    env.socket.display(),
                    tail(&env.containerd_log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }

        let (st, out, err) = run_with_timeout(
            env.cri("pull")
                .arg("--image")
                .arg(&env.pause_image)
                .arg("--image")
                .arg(&env.image),
            Duration::from_secs(60),
        );
        assert!(
            st.is_some_and(|s| s.success()),
            "pre-pulling test images failed ({st:?}): {out}{err}\n{}\n{}",
            tail(&env.containerd_log, 30),
            tail(&env.registry_log, 10)
        );
        eprintln!(
            "containerd env: containerd {} up in {:.1}s (dir {}, registry {}, containerd pid {})",
            env.version,
            t_start.elapsed().as_secs_f64(),
            env.dir.display(),
            env.registry,
            env.containerd_pid
        );
        env
    }

    /// `cri-client SUBCOMMAND --socket <socket>`; add the rest.
    pub fn cri(&self, subcommand: &str) -> Command {
        let mut c = Command::new(&self.cri_client);
        c.env("CRI_CLIENT_RT_PRIORITY", CRI_CLIENT_RT_PRIORITY);
        c.arg(subcommand).arg("--socket").arg(&self.socket);
        c
    }

    /// Sandbox and container IDs this containerd ever created (from its log,
    /// its task bundles and runc's state dir).
    pub fn known_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        if let Ok(b) = std::fs::read(&self.containerd_log) {
            hex64_tokens(&String::from_utf8_lossy(&b), &mut ids);
        }
        for d in [
            self.dir.join("state/io.containerd.runtime.v2.task/k8s.io"),
            self.dir.join("runc/k8s.io"),
        ] {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                hex64_tokens(&e.file_name().to_string_lossy(), &mut ids);
            }
        }
        ids
    }

    /// The executables of this environment's running shims (from
    /// /proc/PID/exe): what containerd really started.
    pub fn shim_exes(&self) -> Vec<PathBuf> {
        our_processes(&self.dir, &BTreeSet::new())
            .iter()
            .filter(|p| {
                p.cmdline
                    .split(' ')
                    .next()
                    .is_some_and(|a| a.ends_with("containerd-shim-runc-v2"))
            })
            .filter_map(|p| std::fs::read_link(format!("/proc/{}/exe", p.pid)).ok())
            .collect()
    }

    /// The shims' sockets (under /run/containerd/s), from their bundles.
    pub fn shim_sockets(&self) -> Vec<PathBuf> {
        shim_socket_paths(&self.dir)
    }

    /// What this environment has left behind (should be empty after drop).
    pub fn leftovers_of(dir: &Path, ids: &BTreeSet<String>) -> Vec<String> {
        leftovers(dir, ids)
    }

    /// The pod network's leftovers: its bridge, and veth interfaces that
    /// appeared since the environment started.
    pub fn network_leftovers(&self) -> Vec<String> {
        network_leftovers(self.cni.as_ref(), &self.interfaces_before)
    }

    /// Stops and removes every pod through CRI while containerd runs (what
    /// a kubelet leaves behind); returns the sandbox and container ids seen.
    pub fn remove_all_pods(&mut self) -> BTreeSet<String> {
        let mut ids = self.known_ids();
        if self
            .containerd
            .as_mut()
            .is_some_and(|c| exited(c).is_none())
            && self.socket.exists()
        {
            let (st, out, err) = run_with_timeout(
                self.cri("cleanup").args([
                    "--stop-timeout",
                    "1",
                    "--connect-timeout",
                    "5",
                    "--call-timeout",
                    "30",
                ]),
                Duration::from_secs(90),
            );
            hex64_tokens(&out, &mut ids);
            if !st.is_some_and(|s| s.success()) {
                eprintln!("containerd env: cri-client cleanup failed ({st:?}): {out}{err}");
            }
        }
        ids
    }

    fn cleanup(&mut self) {
        // 1. Stop and remove every pod through CRI while containerd runs.
        let mut ids = self.remove_all_pods();
        ids.extend(self.known_ids());
        // Shim socket paths, before the bundles go.
        let shim_sockets = shim_socket_paths(&self.dir);

        // 2. containerd itself.
        if let Some(c) = self.containerd.as_mut() {
            stop_child(c, Duration::from_secs(10));
        }
        ids.extend(self.known_ids());

        // 3. Anything still running: shims (their command line names our
        //    socket), their descendants (container processes), processes in
        //    our containers' cgroups, anything else naming our dir.
        kill_ours(&self.dir, &ids);

        // 4. Mounts under our dir (rootfs overlays, sandbox shm), deepest first.
        unmount_under(&self.dir);

        // 5. Per-container cgroups (runc leaves them when its shim is killed).
        remove_cgroups(&ids, &self.cgroup_parent_existed);

        // 6. The pod network's bridge (each pod's veth went with its
        //    network namespace when its sandbox was removed).
        if let Some(cni) = &self.cni {
            cni.delete_bridge();
        }

        // 7. Registry, shim sockets, the directory.
        if let Some(c) = self.registry_child.as_mut() {
            stop_child(c, Duration::from_secs(5));
        }
        for s in shim_sockets {
            let _ = std::fs::remove_file(s);
        }
        if !self.run_containerd_existed {
            let _ = std::fs::remove_dir(SHIM_SOCKET_DIR);
            let _ = std::fs::remove_dir("/run/containerd");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            // Something may still be mounted in another mount namespace.
            unmount_under(&self.dir);
            if let Err(e2) = std::fs::remove_dir_all(&self.dir) {
                eprintln!(
                    "containerd env: removing {}: {e}; again: {e2}",
                    self.dir.display()
                );
            }
        }
        let mut left = leftovers(&self.dir, &ids);
        left.extend(self.network_leftovers());
        if !left.is_empty() {
            eprintln!(
                "containerd env: left behind after cleanup:\n  {}",
                left.join("\n  ")
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The bridge of `cni` if it still exists, and veth interfaces not in
/// `before`.
pub fn network_leftovers(cni: Option<&Cni>, before: &BTreeSet<String>) -> Vec<String> {
    let mut v = Vec::new();
    let now = interfaces();
    if let Some(c) = cni {
        if now.contains(&c.bridge) {
            v.push(format!("bridge {}", c.bridge));
        }
    }
    for i in now.difference(before) {
        if i.starts_with("veth") {
            v.push(format!("interface {i}"));
        }
    }
    v
}

/// Every 64-hex-digit token in `s` (sandbox and container IDs; image
/// digests too, which never name a cgroup, process or mount).
fn hex64_tokens(s: &str, out: &mut BTreeSet<String>) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_hexdigit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_hexdigit() {
                j += 1;
            }
            if j - i == 64 && (j == b.len() || !b[j].is_ascii_alphanumeric()) {
                let t = &s[i..j];
                if t.bytes().all(|c| !c.is_ascii_uppercase()) {
                    out.insert(t.to_string());
                }
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
}

/// The shims' sockets, from their bundles: `address` (1.x) or
/// `bootstrap.json`'s `"address"` (2.x).
fn shim_socket_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let base = dir.join("state/io.containerd.runtime.v2.task");
    for ns in std::fs::read_dir(base).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let mut addrs = Vec::new();
            if let Ok(a) = std::fs::read_to_string(b.path().join("address")) {
                addrs.push(a.trim().to_string());
            }
            if let Some(a) = std::fs::read_to_string(b.path().join("bootstrap.json"))
                .ok()
                .and_then(|j| json_string_field(&j, "address"))
            {
                addrs.push(a);
            }
            for a in addrs {
                let p = a.trim_start_matches("unix://");
                if p.starts_with(SHIM_SOCKET_DIR) {
                    v.push(PathBuf::from(p));
                }
            }
        }
    }
    v
}

/// The value of `"key": "value"` in flat JSON text without escapes (a shim's
/// bootstrap.json), without a JSON parser (this module is std + libc).
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let rest = &json[json.find(&format!("\"{key}\""))? + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

struct Proc {
    pid: u32,
    ppid: u32,
    cmdline: String,
    cgroup: String,
}

fn processes() -> Vec<Proc> {
    let me = std::process::id();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may contain spaces and parens.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = after.split_whitespace();
        let state = f.next().unwrap_or("");
        if state == "Z" || state == "X" {
            continue;
        }
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(e.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        v.push(Proc {
            pid,
            ppid,
            cmdline,
            cgroup,
        });
    }
    v
}

/// Processes of this environment: command line naming its config or socket, cgroup naming
/// one of `ids`, and all their descendants.
fn our_processes(dir: &Path, ids: &BTreeSet<String>) -> Vec<Proc> {
    // containerd (--config DIR/config.toml), its shims (-address
    // DIR/containerd.sock), cri-client (--socket DIR/containerd.sock), the
    // registry (serve DIR/registry.yml). Not just anything naming DIR: a
    // test's tracer may write its output there.
    let marks: Vec<String> = ["config.toml", "containerd.sock", "registry.yml"]
        .iter()
        .map(|f| dir.join(f).to_string_lossy().into_owned())
        .collect();
    let all = processes();
    let mut ours: BTreeSet<u32> = all
        .iter()
        .filter(|p| {
            marks.iter().any(|m| p.cmdline.contains(m.as_str()))
                || p.cgroup
                    .lines()
                    .any(|l| l.rsplit('/').next().is_some_and(|last| ids.contains(last)))
        })
        .map(|p| p.pid)
        .collect();
    loop {
        let before = ours.len();
        for p in &all {
            if ours.contains(&p.ppid) {
                ours.insert(p.pid);
            }
        }
        if ours.len() == before {
            break;
        }
    }
    all.into_iter().filter(|p| ours.contains(&p.pid)).collect()
}

fn kill_ours(dir: &Path, ids: &BTreeSet<String>) {
    let t = Instant::now();
    loop {
        let ps = our_processes(dir, ids);
        if ps.is_empty() {
            return;
        }
        if t.elapsed() > Duration::from_secs(5) {
            let v: Vec<String> = ps
                .iter()
                .map(|p| format!("{} {}", p.pid, p.cmdline))
                .collect();
            eprintln!("containerd env: processes survive SIGKILL: {v:?}");
            return;
        }
        for p in &ps {
            signal(p.pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v.dedup();
    v
}

fn unescape_mount(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let ms = mounts_under(dir);
        if ms.is_empty() {
            return;
        }
        for m in ms {
            let Ok(c) = CString::new(m.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn cgroup_dirs_of(ids: &BTreeSet<String>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for r in cgroup_roots() {
        for id in ids {
            let p = r.join(CGROUP_PARENT).join(id);
            if p.is_dir() {
                v.push(p);
            }
        }
    }
    v
}

fn remove_cgroups(ids: &BTreeSet<String>, parent_existed: &[PathBuf]) {
    let t = Instant::now();
    loop {
        let dirs = cgroup_dirs_of(ids);
        let mut stuck = Vec::new();
        for d in dirs {
            if std::fs::remove_dir(&d).is_err() {
                stuck.push(d);
            }
        }
        if stuck.is_empty() {
            break;
        }
        if t.elapsed() > Duration::from_secs(5) {
            eprintln!("containerd env: cannot remove cgroups {stuck:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The shared parent: only if we created it and it is empty (rmdir fails
    // on a cgroup with children or tasks, e.g. another test's containerd).
    for r in cgroup_roots() {
        let p = r.join(CGROUP_PARENT);
        if !parent_existed.contains(&p) {
            let _ = std::fs::remove_dir(&p);
        }
    }
}

fn leftovers(dir: &Path, ids: &BTreeSet<String>) -> Vec<String> {
    let mut v = Vec::new();
    for p in our_processes(dir, ids) {
        v.push(format!("process {} {}", p.pid, p.cmdline.trim()));
    }
    for m in mounts_under(dir) {
        v.push(format!("mount {}", m.display()));
    }
    for c in cgroup_dirs_of(ids) {
        v.push(format!("cgroup {}", c.display()));
    }
    if dir.exists() {
        v.push(format!("directory {}", dir.display()));
    }
    v
}
