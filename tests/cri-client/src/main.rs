//! `cri-client`: podtrace's test CRI client.
//!
//! Starts pods on a real containerd through the CRI gRPC API the way kubelet
//! does (RunPodSandbox → PullImage → CreateContainer → StartContainer, and
//! StopContainer → RemoveContainer → StopPodSandbox → RemovePodSandbox to tear
//! down), and writes one JSON line per CRI call with CLOCK_MONOTONIC
//! timestamps taken right around the gRPC call: the ground truth podtrace's
//! numbers are checked against.
//!
//! `run-sandbox` and `start-container` split `start-pod` in two (RunPodSandbox;
//! PullImage → CreateContainer → StartContainer) for a caller that makes the
//! calls from different places, as the kubelet-shaped test workload does
//! (`--cri-client`: createPodSandbox and startContainer).
//!
//! Bindings: the `k8s-cri` crate (cri-api `runtime.v1`, tonic 0.14), over a
//! Unix socket via a tower `service_fn` connector.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
    ContainerConfig, ContainerFilter, ContainerMetadata, CreateContainerRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainersRequest,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxFilter,
    PodSandboxMetadata, PullImageRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use serde::Serialize;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Parser)]
#[command(
    name = "cri-client",
    about = "podtrace test CRI client: start pods like kubelet, record per-call ground truth"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Conn {
    /// containerd's CRI socket (its grpc.address)
    #[arg(long)]
    socket: PathBuf,
    /// give up connecting after this many seconds
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// per-call deadline in seconds
    #[arg(long, default_value_t = 120.0)]
    call_timeout: f64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start N pods the way kubelet does, optionally tear them down again.
    RunPods {
        #[command(flatten)]
        conn: Conn,
        /// image of the pod's one container (full reference)
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 1)]
        pods: usize,
        /// pods started per second, each in its own task; 0 = one after
        /// another (a pod starts when the previous one is done)
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// JSONL file the per-call records are appended to
        #[arg(long)]
        ground_truth: PathBuf,
        /// pods are named PREFIX-0, PREFIX-1, …
        #[arg(long, default_value = "pod")]
        name_prefix: String,
        /// pod log directories go under here (default: pod-logs next to the ground truth)
        #[arg(long)]
        log_dir: Option<PathBuf>,
        /// after StartContainer: StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox
        #[arg(long)]
        stop: bool,
        /// with --stop: keep each pod running this long before stopping it
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
        /// StopContainer grace period in seconds
        #[arg(long, default_value_t = 10)]
        stop_timeout: i64,
    },
    /// Start one pod; prints {"sandbox_id":..,"container_id":..}.
    StartPod {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        image: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long)]
        uid: String,
        #[arg(long)]
        ground_truth: PathBuf,
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
    /// RunPodSandbox only (what kubelet's createPodSandbox does); prints
    /// {"sandbox_id":..,"error":..}. Pair with start-container.
    RunSandbox {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long)]
        uid: String,
        /// JSONL file the per-call record is appended to (default: none)
        #[arg(long)]
        ground_truth: Option<PathBuf>,
        /// pod log directories go under here (default: pod-logs next to the
        /// ground truth); give start-container the same
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
    /// PullImage → CreateContainer → StartContainer in a sandbox made by
    /// run-sandbox (what kubelet's startContainer does); prints
    /// {"sandbox_id":..,"container_id":..,"error":..}. Pod name, namespace,
    /// uid and log dir must be those given to run-sandbox: the sandbox
    /// config sent with PullImage and CreateContainer is rebuilt from them.
    StartContainer {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        sandbox_id: String,
        #[arg(long)]
        image: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long)]
        uid: String,
        /// the container's name (CRI metadata); unique within the pod
        #[arg(long, default_value = CONTAINER_NAME)]
        container_name: String,
        #[arg(long)]
        ground_truth: Option<PathBuf>,
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
    /// Stop and remove every container of a sandbox, then the sandbox.
    StopPod {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        sandbox_id: String,
        #[arg(long)]
        ground_truth: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        stop_timeout: i64,
    },
    /// Stop and remove every container and sandbox containerd knows;
    /// prints {"sandboxes":[..],"containers":[..]}.
    Cleanup {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, default_value_t = 2)]
        stop_timeout: i64,
    },
    /// CRI Version call; prints the response as JSON.
    Version {
        #[command(flatten)]
        conn: Conn,
    },
    /// PullImage (no sandbox config); prints {"image":..,"image_ref":..}.
    Pull {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, required = true)]
        image: Vec<String>,
    },
}

/// CLOCK_MONOTONIC in nanoseconds: the clock bpf_ktime_get_ns() reads.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n.div_ceil(2)];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut b);
    } else {
        let t = mono_ns() ^ (std::process::id() as u64) << 32;
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
    let s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    s[..n].to_string()
}

fn random_uid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}

fn status_msg(s: &tonic::Status) -> String {
    let mut m = format!("{:?}: {}", s.code(), s.message());
    if let Some(src) = std::error::Error::source(s) {
        m.push_str(" (");
        m.push_str(&error_chain(src));
        m.push(')');
    }
    m
}

/// One ground-truth line.
#[derive(Serialize)]
struct Record<'a> {
    call: &'a str,
    pod_uid: &'a str,
    pod_name: &'a str,
    namespace: &'a str,
    start_mono_ns: u64,
    end_mono_ns: u64,
    sandbox_id: Option<&'a str>,
    container_id: Option<&'a str>,
    image: Option<&'a str>,
    error: Option<String>,
}

#[derive(Clone)]
struct GroundTruth(Option<Arc<Mutex<File>>>);

impl GroundTruth {
    fn open(path: Option<&Path>) -> Result<GroundTruth, String> {
        let Some(path) = path else {
            return Ok(GroundTruth(None));
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("opening ground truth {}: {e}", path.display()))?;
        Ok(GroundTruth(Some(Arc::new(Mutex::new(f)))))
    }

    fn write(&self, r: &Record) {
        let Some(f) = &self.0 else { return };
        let mut line = serde_json::to_vec(r).expect("record serializes");
        line.push(b'\n');
        // One write(2) per line on an O_APPEND file: lines from concurrent
        // cri-client processes (start-pod) do not interleave.
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            eprintln!("cri-client: writing ground truth: {e}");
        }
    }
}

#[derive(Clone)]
struct Cri {
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

async fn connect(c: &Conn) -> Result<Cri, String> {
    let fail = |e: String| {
        format!(
            "cannot connect to containerd at {}: {e}",
            c.socket.display()
        )
    };
    if !c.socket.exists() {
        return Err(fail("socket does not exist".into()));
    }
    let path = c.socket.clone();
    let to = Duration::from_secs_f64(c.connect_timeout);
    // The URI is a placeholder: the connector ignores it and dials the socket.
    let ep = Endpoint::from_static("http://localhost")
        .connect_timeout(to)
        .timeout(Duration::from_secs_f64(c.call_timeout));
    let connecting = ep.connect_with_connector(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    }));
    let ch = match tokio::time::timeout(to, connecting).await {
        Err(_) => return Err(fail(format!("timed out after {:.1}s", c.connect_timeout))),
        Ok(Err(e)) => return Err(fail(error_chain(&e))),
        Ok(Ok(ch)) => ch,
    };
    Ok(Cri {
        rt: RuntimeServiceClient::new(ch.clone()),
        img: ImageServiceClient::new(ch),
    })
}

/// `connect`, then one untimed Version call, so that the recorded calls run
/// on a connection whose HTTP/2 set-up is done, as kubelet's long-lived one
/// is (on a fresh connection the first call takes ~0.5 ms more).
async fn connect_warm(c: &Conn) -> Result<Cri, String> {
    let cri = connect(c).await?;
    // An error here shows again in the real call.
    let _ = cri
        .rt
        .clone()
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await;
    Ok(cri)
}

/// One pod and what has been created for it so far.
struct Pod {
    name: String,
    uid: String,
    namespace: String,
    image: String,
    log_dir: PathBuf,
    sandbox_config: PodSandboxConfig,
    /// Name of the pod's container (CRI metadata, label, log path); the
    /// process it runs is always the image's /app.
    container_name: String,
    sandbox_id: Option<String>,
    container_id: Option<String>,
}

const CONTAINER_NAME: &str = "app";

fn namespace_options() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

impl Pod {
    fn new(name: &str, uid: &str, namespace: &str, image: &str, log_root: &Path) -> Pod {
        // kubelet: /var/log/pods/<namespace>_<name>_<uid>
        let log_dir = log_root.join(format!("{namespace}_{name}_{uid}"));
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), name.to_string()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                namespace.to_string(),
            ),
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
            ("podtrace.test".to_string(), "true".to_string()),
        ]);
        let annotations = HashMap::from([
            ("kubernetes.io/config.source".to_string(), "api".to_string()),
            (
                "kubernetes.io/config.seen".to_string(),
                "podtrace-cri-client".to_string(),
            ),
        ]);
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid: uid.to_string(),
                namespace: namespace.to_string(),
                attempt: 0,
            }),
            // Host network: containerd refuses a hostname without a private
            // UTS namespace, and kubelet leaves it empty for such pods.
            hostname: String::new(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels,
            annotations,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: String::new(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        Pod {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            image: image.into(),
            log_dir,
            sandbox_config,
            container_name: CONTAINER_NAME.into(),
            sandbox_id: None,
            container_id: None,
        }
    }

    fn container_config(&self, image_ref: &str) -> ContainerConfig {
        let labels = HashMap::from([
            (
                "io.kubernetes.container.name".to_string(),
                self.container_name.clone(),
            ),
            ("io.kubernetes.pod.name".to_string(), self.name.clone()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                self.namespace.clone(),
            ),
            ("io.kubernetes.pod.uid".to_string(), self.uid.clone()),
        ]);
        let annotations = HashMap::from([
            (
                "io.kubernetes.container.restartCount".to_string(),
                "0".to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePolicy".to_string(),
                "File".to_string(),
            ),
        ]);
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: self.container_name.clone(),
                attempt: 0,
            }),
            // kubelet passes the image ref PullImage returned.
            image: Some(ImageSpec {
                image: image_ref.into(),
                ..Default::default()
            }),
            command: vec![format!("/{CONTAINER_NAME}")],
            args: vec!["--pod".into(), self.name.clone()],
            labels,
            annotations,
            // kubelet: <container name>/<restart count>.log, under the sandbox's log dir
            log_path: format!("{}/0.log", self.container_name),
            linux: Some(LinuxContainerConfig {
                // BestEffort pod, as kubelet would set it. oom_score_adj is
                // only ever raised here (this VM cannot lower it).
                resources: Some(LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespace_options()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

struct Ctx {
    cri: Cri,
    gt: GroundTruth,
}

impl Ctx {
    fn record(&self, call: &str, pod: &Pod, start: u64, end: u64, error: Option<String>) {
        self.gt.write(&Record {
            call,
            pod_uid: &pod.uid,
            pod_name: &pod.name,
            namespace: &pod.namespace,
            start_mono_ns: start,
            end_mono_ns: end,
            sandbox_id: pod.sandbox_id.as_deref(),
            container_id: pod.container_id.as_deref(),
            image: Some(&pod.image)
                .filter(|s| !s.is_empty())
                .map(|s| s.as_str()),
            error,
        });
    }

    /// One CRI call as ground truth: CLOCK_MONOTONIC right around it, then
    /// `on_ok` (which may set the pod ids the record carries), then one
    /// record. Err is the call's status message.
    async fn timed<T, R>(
        &self,
        call: &str,
        pod: &mut Pod,
        rpc: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
        on_ok: impl FnOnce(&mut Pod, T) -> R,
    ) -> Result<R, String> {
        let t0 = mono_ns();
        let r = rpc.await;
        let t1 = mono_ns();
        match r {
            Ok(resp) => {
                let out = on_ok(pod, resp.into_inner());
                self.record(call, pod, t0, t1, None);
                Ok(out)
            }
            Err(s) => {
                let m = status_msg(&s);
                self.record(call, pod, t0, t1, Some(m.clone()));
                Err(m)
            }
        }
    }

    /// RunPodSandbox → PullImage → CreateContainer → StartContainer.
    async fn start_pod(&self, pod: &mut Pod) -> Result<(), String> {
        self.run_sandbox(pod).await?;
        self.start_container(pod).await
    }

    /// RunPodSandbox (kubelet's createPodSandbox); sets `pod.sandbox_id`.
    async fn run_sandbox(&self, pod: &mut Pod) -> Result<(), String> {
        let mut rt = self.cri.rt.clone();
        // kubelet creates the pod's log directory before RunPodSandbox.
        std::fs::create_dir_all(&pod.log_dir)
            .map_err(|e| format!("creating {}: {e}", pod.log_dir.display()))?;

        let req = RunPodSandboxRequest {
            config: Some(pod.sandbox_config.clone()),
            runtime_handler: String::new(),
        };
        self.timed("RunPodSandbox", pod, rt.run_pod_sandbox(req), |pod, r| {
            pod.sandbox_id = Some(r.pod_sandbox_id);
        })
        .await
        .map_err(|m| format!("RunPodSandbox: {m}"))
    }

    /// PullImage → CreateContainer → StartContainer in the sandbox
    /// `pod.sandbox_id` (kubelet's startContainer); sets `pod.container_id`.
    async fn start_container(&self, pod: &mut Pod) -> Result<(), String> {
        let mut rt = self.cri.rt.clone();
        let mut img = self.cri.img.clone();
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: pod.image.clone(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: Some(pod.sandbox_config.clone()),
        };
        let image_ref = self
            .timed("PullImage", pod, img.pull_image(req), |_, r| r.image_ref)
            .await
            .map_err(|m| format!("PullImage {}: {m}", pod.image))?;

        let req = CreateContainerRequest {
            pod_sandbox_id: pod.sandbox_id.clone().unwrap_or_default(),
            config: Some(pod.container_config(if image_ref.is_empty() {
                &pod.image
            } else {
                &image_ref
            })),
            sandbox_config: Some(pod.sandbox_config.clone()),
        };
        self.timed(
            "CreateContainer",
            pod,
            rt.create_container(req),
            |pod, r| {
                pod.container_id = Some(r.container_id);
            },
        )
        .await
        .map_err(|m| format!("CreateContainer: {m}"))?;

        let req = StartContainerRequest {
            container_id: pod.container_id.clone().unwrap_or_default(),
        };
        self.timed("StartContainer", pod, rt.start_container(req), |_, _| ())
            .await
            .map_err(|m| format!("StartContainer: {m}"))
    }

    /// StopContainer → RemoveContainer (if there is a container), then
    /// StopPodSandbox → RemovePodSandbox (if there is a sandbox). Goes on
    /// after a failure; returns the first error.
    async fn stop_pod(&self, pod: &mut Pod, stop_timeout: i64) -> Result<(), String> {
        let mut rt = self.cri.rt.clone();
        let mut first: Option<String> = None;
        let mut note = |call: &str, m: &str| {
            if first.is_none() {
                first = Some(format!("{call}: {m}"));
            }
        };
        if let Some(cid) = pod.container_id.clone() {
            let req = StopContainerRequest {
                container_id: cid.clone(),
                timeout: stop_timeout,
            };
            if let Err(m) = self
                .timed("StopContainer", pod, rt.stop_container(req), |_, _| ())
                .await
            {
                note("StopContainer", &m);
            }
            let req = RemoveContainerRequest { container_id: cid };
            if let Err(m) = self
                .timed("RemoveContainer", pod, rt.remove_container(req), |_, _| ())
                .await
            {
                note("RemoveContainer", &m);
            }
        }
        if let Some(sid) = pod.sandbox_id.clone() {
            let req = StopPodSandboxRequest {
                pod_sandbox_id: sid.clone(),
            };
            if let Err(m) = self
                .timed("StopPodSandbox", pod, rt.stop_pod_sandbox(req), |_, _| ())
                .await
            {
                note("StopPodSandbox", &m);
            }
            let req = RemovePodSandboxRequest {
                pod_sandbox_id: sid,
            };
            if let Err(m) = self
                .timed(
                    "RemovePodSandbox",
                    pod,
                    rt.remove_pod_sandbox(req),
                    |_, _| (),
                )
                .await
            {
                note("RemovePodSandbox", &m);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn default_log_dir(gt: &Path) -> PathBuf {
    let dir = gt
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    dir.join("pod-logs")
}

/// Log root of run-sandbox / start-container: --log-dir, else pod-logs next
/// to the ground truth.
fn step_log_root(log_dir: Option<PathBuf>, gt: Option<&Path>) -> Result<PathBuf, String> {
    match (log_dir, gt) {
        (Some(d), _) => Ok(d),
        (None, Some(gt)) => Ok(default_log_dir(gt)),
        (None, None) => {
            Err("give --log-dir (or --ground-truth, whose directory gets pod-logs/)".into())
        }
    }
}

#[derive(Serialize)]
struct PodSummary {
    pod_name: String,
    pod_uid: String,
    sandbox_id: Option<String>,
    container_id: Option<String>,
    error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn run_pods(
    conn: Conn,
    image: String,
    pods: usize,
    rate: f64,
    namespace: String,
    ground_truth: PathBuf,
    name_prefix: String,
    log_dir: Option<PathBuf>,
    stop: bool,
    hold_ms: u64,
    stop_timeout: i64,
) -> Result<(), String> {
    let gt = GroundTruth::open(Some(&ground_truth))?;
    let cri = connect_warm(&conn).await?;
    let ctx = Arc::new(Ctx { cri, gt });
    let log_root = log_dir.unwrap_or_else(|| default_log_dir(&ground_truth));

    let one = |i: usize| {
        let ctx = ctx.clone();
        let mut pod = Pod::new(
            &format!("{name_prefix}-{i}"),
            &random_uid(),
            &namespace,
            &image,
            &log_root,
        );
        async move {
            let mut res = ctx.start_pod(&mut pod).await;
            if stop {
                if res.is_ok() && hold_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                }
                let r2 = ctx.stop_pod(&mut pod, stop_timeout).await;
                if res.is_ok() {
                    res = r2;
                }
            }
            PodSummary {
                pod_name: pod.name,
                pod_uid: pod.uid,
                sandbox_id: pod.sandbox_id,
                container_id: pod.container_id,
                error: res.err(),
            }
        }
    };

    let mut summaries = Vec::with_capacity(pods);
    if rate > 0.0 {
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(pods);
        for i in 0..pods {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            tasks.push(tokio::spawn(one(i)));
        }
        for t in tasks {
            match t.await {
                Ok(s) => summaries.push(s),
                Err(e) => return Err(format!("pod task failed: {e}")),
            }
        }
    } else {
        for i in 0..pods {
            summaries.push(one(i).await);
        }
    }

    let mut failed = Vec::new();
    for s in &summaries {
        println!("{}", serde_json::to_string(s).expect("summary serializes"));
        if let Some(e) = &s.error {
            failed.push(format!("{}: {e}", s.pod_name));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {pods} pods failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        ))
    }
}

async fn list_sandbox_pod(cri: &Cri, sandbox_id: &str) -> Result<Option<Pod>, String> {
    let mut rt = cri.rt.clone();
    let r = rt
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: sandbox_id.into(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| format!("ListPodSandbox: {}", status_msg(&s)))?;
    Ok(r.into_inner().items.into_iter().next().map(|sb| {
        let md = sb.metadata.unwrap_or_default();
        let mut p = Pod::new(
            &md.name,
            &md.uid,
            &md.namespace,
            "",
            Path::new("/nonexistent"),
        );
        p.sandbox_id = Some(sb.id);
        p
    }))
}

async fn containers_of(
    cri: &Cri,
    sandbox_id: Option<&str>,
) -> Result<Vec<(String, String)>, String> {
    let mut rt = cri.rt.clone();
    let filter = sandbox_id.map(|id| ContainerFilter {
        pod_sandbox_id: id.into(),
        ..Default::default()
    });
    let r = rt
        .list_containers(ListContainersRequest { filter })
        .await
        .map_err(|s| format!("ListContainers: {}", status_msg(&s)))?;
    Ok(r.into_inner()
        .containers
        .into_iter()
        .map(|c| (c.id, c.pod_sandbox_id))
        .collect())
}

async fn stop_pod_cmd(
    conn: Conn,
    sandbox_id: String,
    ground_truth: Option<PathBuf>,
    stop_timeout: i64,
) -> Result<(), String> {
    let gt = GroundTruth::open(ground_truth.as_deref())?;
    let cri = connect_warm(&conn).await?;
    let Some(mut pod) = list_sandbox_pod(&cri, &sandbox_id).await? else {
        return Err(format!("no pod sandbox {sandbox_id}"));
    };
    let sid = pod.sandbox_id.clone().unwrap_or_default();
    let ctx = Ctx {
        cri: cri.clone(),
        gt,
    };
    let mut first = None;
    for (cid, _) in containers_of(&cri, Some(&sid)).await? {
        pod.container_id = Some(cid);
        let sb = pod.sandbox_id.take();
        if let Err(e) = ctx.stop_pod(&mut pod, stop_timeout).await {
            first.get_or_insert(e);
        }
        pod.sandbox_id = sb;
    }
    pod.container_id = None;
    if let Err(e) = ctx.stop_pod(&mut pod, stop_timeout).await {
        first.get_or_insert(e);
    }
    println!(
        "{}",
        serde_json::json!({ "sandbox_id": sid, "error": first })
    );
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn cleanup_cmd(conn: Conn, stop_timeout: i64) -> Result<(), String> {
    let cri = connect_warm(&conn).await?;
    let mut rt = cri.rt.clone();
    let mut errors = Vec::new();
    let containers = containers_of(&cri, None).await?;
    for (cid, _) in &containers {
        if let Err(s) = rt
            .stop_container(StopContainerRequest {
                container_id: cid.clone(),
                timeout: stop_timeout,
            })
            .await
        {
            errors.push(format!("StopContainer {cid}: {}", status_msg(&s)));
        }
        if let Err(s) = rt
            .remove_container(RemoveContainerRequest {
                container_id: cid.clone(),
            })
            .await
        {
            errors.push(format!("RemoveContainer {cid}: {}", status_msg(&s)));
        }
    }
    let sandboxes: Vec<String> = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .map_err(|s| format!("ListPodSandbox: {}", status_msg(&s)))?
        .into_inner()
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    for sid in &sandboxes {
        if let Err(s) = rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sid.clone(),
            })
            .await
        {
            errors.push(format!("StopPodSandbox {sid}: {}", status_msg(&s)));
        }
        if let Err(s) = rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sid.clone(),
            })
            .await
        {
            errors.push(format!("RemovePodSandbox {sid}: {}", status_msg(&s)));
        }
    }
    let ids: Vec<&String> = containers.iter().map(|(c, _)| c).collect();
    println!(
        "{}",
        serde_json::json!({ "sandboxes": sandboxes, "containers": ids, "errors": errors })
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n  "))
    }
}

async fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::RunPods {
            conn,
            image,
            pods,
            rate,
            namespace,
            ground_truth,
            name_prefix,
            log_dir,
            stop,
            hold_ms,
            stop_timeout,
        } => {
            if !(rate >= 0.0 && rate.is_finite()) {
                return Err(format!("--rate must be a finite number ≥ 0, not {rate}"));
            }
            run_pods(
                conn,
                image,
                pods,
                rate,
                namespace,
                ground_truth,
                name_prefix,
                log_dir,
                stop,
                hold_ms,
                stop_timeout,
            )
            .await
        }
        Cmd::StartPod {
            conn,
            image,
            name,
            namespace,
            uid,
            ground_truth,
            log_dir,
        } => {
            let gt = GroundTruth::open(Some(&ground_truth))?;
            let cri = connect(&conn).await?;
            let ctx = Ctx { cri, gt };
            let log_root = log_dir.unwrap_or_else(|| default_log_dir(&ground_truth));
            let mut pod = Pod::new(&name, &uid, &namespace, &image, &log_root);
            let res = ctx.start_pod(&mut pod).await;
            println!(
                "{}",
                serde_json::json!({
                    "sandbox_id": pod.sandbox_id,
                    "container_id": pod.container_id,
                    "error": res.as_ref().err(),
                })
            );
            res
        }
        Cmd::RunSandbox {
            conn,
            name,
            namespace,
            uid,
            ground_truth,
            log_dir,
        } => {
            let log_root = step_log_root(log_dir, ground_truth.as_deref())?;
            let gt = GroundTruth::open(ground_truth.as_deref())?;
            let cri = connect_warm(&conn).await?;
            let ctx = Ctx { cri, gt };
            let mut pod = Pod::new(&name, &uid, &namespace, "", &log_root);
            let res = ctx.run_sandbox(&mut pod).await;
            println!(
                "{}",
                serde_json::json!({
                    "sandbox_id": pod.sandbox_id,
                    "error": res.as_ref().err(),
                })
            );
            res
        }
        Cmd::StartContainer {
            conn,
            sandbox_id,
            image,
            name,
            namespace,
            uid,
            container_name,
            ground_truth,
            log_dir,
        } => {
            let log_root = step_log_root(log_dir, ground_truth.as_deref())?;
            let gt = GroundTruth::open(ground_truth.as_deref())?;
            let cri = connect_warm(&conn).await?;
            let ctx = Ctx { cri, gt };
            let mut pod = Pod::new(&name, &uid, &namespace, &image, &log_root);
            pod.container_name = container_name;
            pod.sandbox_id = Some(sandbox_id);
            let res = ctx.start_container(&mut pod).await;
            println!(
                "{}",
                serde_json::json!({
                    "sandbox_id": pod.sandbox_id,
                    "container_id": pod.container_id,
                    "error": res.as_ref().err(),
                })
            );
            res
        }
        Cmd::StopPod {
            conn,
            sandbox_id,
            ground_truth,
            stop_timeout,
        } => stop_pod_cmd(conn, sandbox_id, ground_truth, stop_timeout).await,
        Cmd::Cleanup { conn, stop_timeout } => cleanup_cmd(conn, stop_timeout).await,
        Cmd::Version { conn } => {
            let cri = connect(&conn).await?;
            let v = cri
                .rt
                .clone()
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await
                .map_err(|s| format!("Version: {}", status_msg(&s)))?
                .into_inner();
            println!("{}", serde_json::to_string(&v).expect("version serializes"));
            Ok(())
        }
        Cmd::Pull { conn, image } => {
            let cri = connect(&conn).await?;
            let mut first = None;
            for i in image {
                let req = PullImageRequest {
                    image: Some(ImageSpec {
                        image: i.clone(),
                        ..Default::default()
                    }),
                    auth: None,
                    sandbox_config: None,
                };
                match cri.img.clone().pull_image(req).await {
                    Ok(r) => println!(
                        "{}",
                        serde_json::json!({ "image": i, "image_ref": r.into_inner().image_ref })
                    ),
                    Err(s) => {
                        let m = format!("PullImage {i}: {}", status_msg(&s));
                        println!("{}", serde_json::json!({ "image": i, "error": m }));
                        first.get_or_insert(m);
                    }
                }
            }
            match first {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }
}

/// With `CRI_CLIENT_RT_PRIORITY=N` (1-99) the client runs at SCHED_FIFO
/// priority N, so that on a busy machine its stamps are not late by the time
/// it waits for a CPU after containerd's reply arrived: ground truth should
/// measure containerd, not the scheduler. Children get the normal policy back.
fn realtime_from_env() -> Result<(), String> {
    let Ok(v) = std::env::var("CRI_CLIENT_RT_PRIORITY") else {
        return Ok(());
    };
    let prio: i32 = v
        .parse()
        .ok()
        .filter(|p| (1..=99).contains(p))
        .ok_or_else(|| format!("CRI_CLIENT_RT_PRIORITY={v}: want 1..99"))?;
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: pid 0 is this thread (the only one yet: tokio starts after);
    // `param` is a valid sched_param for the duration of the call.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc != 0 {
        return Err(format!(
            "CRI_CLIENT_RT_PRIORITY={prio}: sched_setscheduler: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = realtime_from_env() {
        // Best effort: without it the stamps are only noisier.
        eprintln!("cri-client: warning: {e}; running at normal priority");
    }
    // One thread: the hops between the caller, tonic's buffer task and the
    // HTTP/2 connection task inside a timed call then need no cross-thread
    // wake-ups, which keeps the recorded times close to containerd's. Pods
    // started at a rate still overlap: they are tasks on this thread.
    let built = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cri-client: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cri-client: {e}");
            ExitCode::FAILURE
        }
    }
}
