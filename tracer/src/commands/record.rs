//! `podtrace record`: attach to kubelet and/or containerd and stream every
//! probe hit into a trace file.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    rc::Rc,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    attach::{self, TargetBinary},
    catalogue::{BinaryCatalogue, Catalogue, Role, Status},
    collect,
    commands::{catalogue_for, format_duration, load_catalogue, parse_duration},
    live,
    resolve::GoBinary,
    supervise::Supervisor,
    trace::{self, BinaryRecord, Header, Rotation, Writer},
};

#[derive(clap::Args)]
pub struct RecordArgs {
    /// kubelet binary: trace every process running it.
    #[arg(long, value_name = "PATH")]
    pub kubelet: Option<PathBuf>,
    /// containerd binary: trace its CRI handlers in every process running it.
    #[arg(long, value_name = "PATH")]
    pub containerd: Option<PathBuf>,
    /// Trace only this running process (kubelet or containerd, told apart by
    /// which catalogue resolves); repeat for several.
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Stop after this long (e.g. 500ms, 30s, 5m, 1h30m). Default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Trace file to write (JSON Lines, mode 0600).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Rotate the trace when it reaches this size (e.g. 100M, 1G, 512K;
    /// K, M, G are powers of 1024): FILE is finished with its footer and
    /// renamed FILE.1 (an older FILE.1 becomes FILE.2, and so on) and a new
    /// FILE starts. Every file is a complete trace with the whole probe
    /// table in its header: `podtrace report FILE.3` works on its own.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// With --max-size: keep at most this many files (FILE and FILE.1 to
    /// FILE.N-1), deleting the oldest. Default 10.
    #[arg(long, value_name = "N", requires = "max_size", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_files: Option<u32>,
    /// Ring buffer size in MiB: a power of two from 1 to 1024. The default
    /// holds seconds of a busy kubelet's events (1-20k/s) and keeps the
    /// collector under 40 MB; the ring is locked kernel memory, mapped into
    /// podtrace twice. Raise it (16) for a synthetic storm of 1M+ events/s:
    /// `drops` in the status line says when.
    #[arg(long, default_value = "8", value_parser = parse_ring_mib)]
    pub ring_mib: u32,
    /// Use this catalogue file instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
    /// No live status line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Say on stderr which probe, capture and address failed whenever a
    /// capture cannot be read or a string is cut short (the eBPF program's
    /// aya-log; off by default, when it costs nothing). The trace and the
    /// report count these problems either way.
    #[arg(long)]
    pub ebpf_log: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while recording:
    /// histograms of pod start syncs, mount waits, time lost to polling,
    /// stages, CRI calls and loop periods (labels: binary and version,
    /// never a pod), counters of events, drops, starts, resyncs and poll
    /// checks, and each probe's status. Bind to 127.0.0.1:PORT (say
    /// 127.0.0.1:9464); 0.0.0.0 exposes the node's pod activity to anyone
    /// who can reach the port. No socket is opened without this option.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Send each pod's spans to this OTLP/HTTP receiver as soon as its
    /// start is complete (the spans `export --format otlp` makes), e.g.
    /// http://127.0.0.1:4318 (path defaults to /v1/traces): a DaemonSet
    /// feeds the cluster's Tempo or Jaeger. Sent from a queue of its own;
    /// a receiver too slow to keep up loses pods (counted in
    /// podtrace_otlp_pods_total{result="dropped"}), never events.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// --otlp-endpoint: an extra request header, NAME=VALUE (repeatable).
    #[arg(
        long = "otlp-header",
        value_name = "NAME=VALUE",
        requires = "otlp_endpoint"
    )]
    pub otlp_headers: Vec<String>,
    /// --otlp-endpoint over https: also trust this CA certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "otlp_endpoint")]
    pub otlp_ca_cert: Option<PathBuf>,
    /// Which probe sites to attach (for measuring their cost).
    #[arg(long, value_enum, default_value = "both", hide = true)]
    pub sites: attach::SiteSelection,
    /// Put entry probes on the first instruction instead of the prologue's
    /// stack-check jump (for measuring the difference).
    #[arg(long, hide = true)]
    pub entry_at_function_start: bool,
    /// Command to start once the probes are attached; recording stops when it exits.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--max-files` when only `--max-size` is given.
pub const DEFAULT_MAX_FILES: u32 = 10;

/// Smallest `--max-size`: below this a file would hold little more than
/// its header (the probe table).
pub const MIN_MAX_SIZE: u64 = 16 << 10;

/// `--max-size`: bytes, with an optional K, M or G (powers of 1024; `KiB`,
/// `MB` and the like are read the same), at least [`MIN_MAX_SIZE`].
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a size such as 100M, 1G or 512K"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => return Err(format!("`{s}`: unknown unit `{u}` (use K, M or G)")),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("`{s}`: too large"));
    }
    let bytes = bytes as u64;
    if bytes < MIN_MAX_SIZE {
        return Err(format!(
            "`{s}` is below the smallest trace file size, {} KiB (a file must hold its header, the probe table)",
            MIN_MAX_SIZE >> 10
        ));
    }
    Ok(bytes)
}

/// Largest `--ring-mib`. The kernel takes any power of two that fits its u32
/// size field (2 GiB), but the ring is locked kernel memory for the whole
/// recording and 16 MiB already lost nothing at 1M events/s here.
pub const MAX_RING_MIB: u32 = 1024;

/// `--ring-mib`: a power of two, 1..=[`MAX_RING_MIB`].
pub fn parse_ring_mib(s: &str) -> Result<u32, String> {
    let n: u32 = s.trim().parse().map_err(|_| {
        format!("`{s}`: expected a whole number of MiB (a power of two, 1 to {MAX_RING_MIB})")
    })?;
    if n == 0 || n > MAX_RING_MIB {
        return Err(format!(
            "{n} MiB is out of range: the ring buffer is 1 to {MAX_RING_MIB} MiB"
        ));
    }
    if !n.is_power_of_two() {
        return Err(format!(
            "{n} MiB is not a power of two (the kernel's ring buffer must be one): try {} or {}",
            n.next_power_of_two() / 2,
            n.next_power_of_two().min(MAX_RING_MIB)
        ));
    }
    Ok(n)
}

/// Suffix the kernel adds to /proc/PID/exe's link text when the file was
/// removed or replaced (an in-place upgrade renames a new file over it).
const DELETED: &str = " (deleted)";

/// A running executable (one file, possibly already deleted) and the
/// processes running it.
#[derive(Debug)]
pub(crate) struct RunningExe {
    /// The link text of /proc/PID/exe without [`DELETED`].
    pub shown: PathBuf,
    pub deleted: bool,
    /// Device and inode of the file.
    pub key: (u64, u64),
    pub pids: Vec<u32>,
}

impl RunningExe {
    /// A path that opens this very file for as long as its first process
    /// lives, also when it was deleted or lives in another mount namespace.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.pids[0]))
    }

    pub fn file_name(&self) -> &str {
        self.shown
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
    }
}

/// Every process's executable, grouped by file (device and inode of the
/// file /proc/PID/exe points at), in pid order. Kernel threads and
/// processes we may not look at are left out, and so is podtrace itself.
pub(crate) fn running_executables() -> Vec<RunningExe> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    let mut out: Vec<RunningExe> = Vec::new();
    for pid in pids.into_iter().filter(|&p| p != me) {
        let exe = format!("/proc/{pid}/exe");
        let (Ok(link), Ok(meta)) = (std::fs::read_link(&exe), std::fs::metadata(&exe)) else {
            continue;
        };
        let text = link.to_string_lossy();
        let (shown, deleted) = match text.strip_suffix(DELETED) {
            Some(t) => (PathBuf::from(t), true),
            None => (link.clone(), false),
        };
        let key = (meta.dev(), meta.ino());
        match out.iter_mut().find(|r| r.key == key) {
            Some(r) => r.pids.push(pid),
            None => out.push(RunningExe {
                shown,
                deleted,
                key,
                pids: vec![pid],
            }),
        }
    }
    out
}

/// Whether `path` is an ELF file with Go's build-info section, read from
/// its headers only: discovery looks at every process, and most are not Go
/// (GoBinary::open would read each file whole).
pub(crate) fn has_go_buildinfo(path: &Path) -> bool {
    use object::{Object as _, ObjectSection as _};
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let cache = object::ReadCache::new(f);
    object::File::parse(&cache).is_ok_and(|o| o.sections().any(|s| s.name() == Ok(".go.buildinfo")))
}

/// An absolute path for a binary named on the command line: aya takes a
/// bare name (`kubelet`) for a shared library to look up in ld.so.cache.
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p)
        .with_context(|| format!("{}: cannot make the path absolute", p.display()))
}

fn which(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|c| c.is_file())
    })
}

/// A binary to trace: its path, the processes (empty = all) and which
/// catalogue it is for.
struct Chosen<'c> {
    path: PathBuf,
    pids: Vec<u32>,
    /// The path to watch for the binary being replaced (None: `--pid`, or
    /// a file already deleted).
    watch: Option<PathBuf>,
    catalogue: &'c BinaryCatalogue,
    /// Shared by the catalogues of one multi-call binary.
    binary: Rc<GoBinary>,
}

/// The catalogues that recognise `bin` as theirs: at least one probe that
/// defines the binary (a pod sync for kubelet, a CRI handler for a runtime)
/// resolves. A multi-call binary such as k3s (kubelet and containerd in one
/// executable) gets every one that does.
pub(crate) fn recognising<'c>(cat: &'c Catalogue, bin: &GoBinary) -> Vec<&'c BinaryCatalogue> {
    cat.binaries
        .iter()
        .filter(|b| {
            b.resolve(bin).iter().any(|r| {
                r.status == Status::Ok
                    && b.probes
                        .iter()
                        .any(|p| p.name == r.probe && matches!(p.role, Role::PodSync | Role::Cri))
            })
        })
        .collect()
}

/// The catalogue whose probes resolve best in `bin` (at least one).
fn identify<'c>(cat: &'c Catalogue, bin: &GoBinary) -> Option<&'c BinaryCatalogue> {
    cat.binaries
        .iter()
        .map(|b| {
            let ok = b
                .resolve(bin)
                .iter()
                .filter(|r| r.status == Status::Ok)
                .count();
            (ok, b)
        })
        .filter(|(ok, _)| *ok > 0)
        .max_by_key(|(ok, _)| *ok)
        .map(|(_, b)| b)
}

fn choose_targets<'c>(a: &RecordArgs, cat: &'c Catalogue) -> Result<Vec<Chosen<'c>>> {
    let mut out = Vec::new();
    let names = || {
        cat.binaries
            .iter()
            .map(|b| b.binary.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut add = |path: PathBuf,
                   pids: Vec<u32>,
                   watch: Option<PathBuf>,
                   cats: Vec<&'c BinaryCatalogue>,
                   binary| {
        let binary = Rc::new(binary);
        for catalogue in cats {
            out.push(Chosen {
                path: path.clone(),
                pids: pids.clone(),
                watch: watch.clone(),
                catalogue,
                binary: Rc::clone(&binary),
            });
        }
    };
    for (p, name) in [(&a.kubelet, "kubelet"), (&a.containerd, "containerd")] {
        if let Some(p) = p {
            let path = absolute(p)?;
            let binary = GoBinary::open(&path)?;
            add(
                path.clone(),
                vec![],
                Some(path),
                vec![catalogue_for(cat, name)?],
                binary,
            );
        }
    }
    for &pid in &a.pid {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).with_context(|| {
            format!("no process {pid} (or not allowed to read /proc/{pid}/exe)")
        })?;
        eprintln!("podtrace: process {pid} runs {}", exe.display());
        let path = PathBuf::from(format!("/proc/{pid}/exe"));
        let binary = GoBinary::open(&path)?;
        let mut cats = recognising(cat, &binary);
        if cats.is_empty() {
            cats.extend(identify(cat, &binary));
        }
        if cats.is_empty() {
            bail!(
                "{} (process {pid}): none of the catalogue's functions ({}) resolve in it ({})",
                exe.display(),
                names(),
                binary.go_version().unwrap_or("no Go version")
            );
        }
        add(path, vec![pid], None, cats, binary);
    }
    if let Some(cmd) = a.command.first() {
        if a.kubelet.is_none() && a.containerd.is_none() && a.pid.is_empty() {
            let path = absolute(
                &which(cmd).with_context(|| format!("command `{cmd}` not found on PATH"))?,
            )?;
            let binary = GoBinary::open(&path)?;
            let c = identify(cat, &binary).with_context(|| {
                format!(
                    "{}: none of the catalogue's functions ({}) resolve in it ({})",
                    path.display(),
                    names(),
                    binary.go_version().unwrap_or("no Go version")
                )
            })?;
            add(path.clone(), vec![], Some(path), vec![c], binary);
        }
    }
    if a.kubelet.is_none() && a.containerd.is_none() && a.pid.is_empty() && a.command.is_empty() {
        for exe in running_executables() {
            let by_name: Vec<&BinaryCatalogue> = cat
                .binaries
                .iter()
                .filter(|b| b.binary.process_names.iter().any(|n| n == exe.file_name()))
                .collect();
            let path = exe.proc_path();
            if by_name.is_empty() && !has_go_buildinfo(&path) {
                continue;
            }
            let binary = match GoBinary::open(&path) {
                Ok(b) => b,
                // Gone since the scan, or not a Go binary (most processes).
                Err(_) if by_name.is_empty() || !path.exists() => continue,
                Err(e) => return Err(e).context(format!("{}", exe.shown.display())),
            };
            // Not named like a kubelet or containerd: still one if the
            // catalogue recognises its code (k3s, a renamed copy).
            let cats = if by_name.is_empty() {
                recognising(cat, &binary)
            } else {
                by_name
            };
            if cats.is_empty() {
                continue;
            }
            eprintln!(
                "podtrace: found {}{} (pid {}) running {}",
                exe.shown.display(),
                if exe.deleted {
                    ", deleted or replaced since it started"
                } else {
                    ""
                },
                exe.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                cats.iter()
                    .map(|c| c.binary.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
            // Watched at the path it was started from, when that still
            // names it here (not in another mount namespace).
            let watch = (!exe.deleted && crate::supervise::file_key(&exe.shown) == Some(exe.key))
                .then(|| exe.shown.clone());
            add(path, exe.pids, watch, cats, binary);
        }
        if out.is_empty() {
            bail!(
                "no running kubelet or containerd found; pass --kubelet PATH, --containerd PATH \
                 or --pid PID, or a command after --"
            );
        }
    }
    Ok(out)
}

/// The version a traced binary is known by (the `version` metric label):
/// the Kubernetes or containerd module it was built from, else its main
/// module's version, else its Go version.
fn component_version(bin: &GoBinary) -> String {
    const MODULES: &[&str] = &[
        "k8s.io/kubernetes",
        "github.com/containerd/containerd/v2",
        "github.com/containerd/containerd",
        "github.com/k3s-io/k3s",
    ];
    MODULES
        .iter()
        .filter_map(|m| bin.module_version(m))
        .chain(
            bin.build_info()
                .and_then(|b| b.main.as_ref())
                .map(|m| m.version.as_str()),
        )
        .find(|v| v.starts_with('v'))
        .or(bin.go_version())
        .unwrap_or("unknown")
        .to_string()
}

fn otlp_target(a: &RecordArgs) -> Result<Option<live::OtlpTarget>> {
    let Some(endpoint) = &a.otlp_endpoint else {
        return Ok(None);
    };
    let headers = a
        .otlp_headers
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("--otlp-header {h}: expected NAME=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(live::OtlpTarget {
        endpoint: endpoint.clone(),
        headers,
        ca_cert: a.otlp_ca_cert.clone(),
        timeout: Duration::from_secs(10),
        retries: 3,
    }))
}

pub fn run(a: RecordArgs) -> Result<ExitCode> {
    let cat = load_catalogue(a.catalogue.as_deref())?;
    let chosen = choose_targets(&a, &cat)?;
    let otlp = otlp_target(&a)?;
    // Bound before attaching: a taken port fails before any probe is set.
    let listener = a.metrics.map(live::bind).transpose()?;
    let metrics = if listener.is_some() || otlp.is_some() {
        Some(Arc::new(live::Metrics::new()?))
    } else {
        None
    };
    let mut versions = HashMap::new();
    let mut targets = Vec::new();
    let mut records = Vec::new();
    for c in &chosen {
        let resolutions = c.catalogue.resolve(&c.binary);
        let unresolved: Vec<String> = resolutions
            .iter()
            .filter(|r| r.status != Status::Ok)
            .map(|r| format!("{}: {}", r.probe, r.detail))
            .collect();
        // A mismatch is a function of another version's shape: reading its
        // registers with this catalogue would record garbage, so it is left
        // out, loudly.
        for r in resolutions.iter().filter(|r| r.status == Status::Mismatch) {
            eprintln!(
                "podtrace: warning: {}: probe {} not attached: {}",
                c.path.display(),
                r.probe,
                r.detail
            );
        }
        if !unresolved.is_empty() {
            let names: Vec<&str> = unresolved
                .iter()
                .filter_map(|u| u.split(':').next())
                .collect();
            eprintln!(
                "podtrace: {}: {} of {} probes not attached ({}); `podtrace probes` says why",
                c.catalogue.binary.name,
                names.len(),
                c.catalogue.probes.len(),
                names.join(", ")
            );
        }
        for r in &resolutions {
            for t in r.targets.iter().filter(|t| !t.inlined_into.is_empty()) {
                eprintln!(
                    "podtrace: {}: probe {} ({}) is also inlined into {}: calls there are not traced",
                    c.catalogue.binary.name,
                    r.probe,
                    t.symbol,
                    crate::catalogue::list_some(&t.inlined_into)
                );
            }
        }
        if !resolutions.iter().any(|r| r.status == Status::Ok) {
            bail!(
                "{}: none of the {} catalogue's functions resolve ({}); see `podtrace probes`",
                c.path.display(),
                c.catalogue.binary.name,
                c.binary.go_version().unwrap_or("?")
            );
        }
        versions.insert(
            c.catalogue.binary.name.clone(),
            component_version(&c.binary),
        );
        if let Some(m) = &metrics {
            for r in &resolutions {
                let status = serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{:?}", r.status).to_lowercase());
                m.probe_status(&c.catalogue.binary.name, &r.probe, &status);
            }
        }
        records.push(BinaryRecord {
            name: c.catalogue.binary.name.clone(),
            path: c.path.display().to_string(),
            go_version: c.binary.go_version().map(str::to_string),
            pids: c.pids.clone(),
            unresolved,
        });
        targets.push(TargetBinary {
            catalogue: c.catalogue,
            binary: &c.binary,
            resolutions,
            pids: c.pids.clone(),
        });
    }
    let plan_opts = attach::PlanOptions {
        sites: a.sites,
        entry_at_function_start: a.entry_at_function_start,
    };
    // One plan per target, so that each target's uprobes are a group of
    // their own that the supervisor can release when its file is replaced.
    let mut probes = Vec::new();
    let mut specs = Vec::new();
    let mut target_sites = Vec::new();
    for t in &targets {
        let (p, s, sites) =
            attach::plan_from(std::slice::from_ref(t), plan_opts, probes.len() as u32)?;
        probes.extend(p);
        specs.extend(s);
        target_sites.push(sites);
    }
    let logger = a
        .ebpf_log
        .then(|| crate::ebpf_log::CaptureLogger::stderr(probes.clone()));
    let mut loaded = attach::load(a.ring_mib << 20, &specs, logger)?;
    let mut initial = Vec::new();
    for (group, (c, sites)) in chosen.iter().zip(&target_sites).enumerate() {
        loaded.attach_group(sites, group as u32, |_, _| {})?;
        let key = crate::supervise::file_key(&c.path)
            .with_context(|| format!("{}: cannot stat the file", c.path.display()))?;
        initial.push(crate::supervise::Initial {
            catalogue: c.catalogue,
            key,
            watch: c.watch.clone(),
            only: c.pids.clone(),
            group: group as u32,
        });
    }
    let discover =
        a.kubelet.is_none() && a.containerd.is_none() && a.pid.is_empty() && a.command.is_empty();
    let mut supervisor = Supervisor::new(&cat, plan_opts, discover, initial);
    for c in &chosen {
        let n = probes
            .iter()
            .filter(|p| p.binary == c.catalogue.binary.name)
            .count();
        eprintln!(
            "podtrace: {}: {} functions of {} ({})",
            c.catalogue.binary.name,
            n,
            c.path.display(),
            c.binary.go_version().unwrap_or("?")
        );
    }
    eprintln!(
        "podtrace: attached {} uprobes to {} functions",
        loaded.attached,
        probes.len()
    );
    let header = Header {
        format: trace::FORMAT.into(),
        version: trace::FORMAT_VERSION,
        podtrace_version: env!("CARGO_PKG_VERSION").into(),
        hostname: hostname(),
        mono_to_unix_ns: trace::mono_to_unix_offset(),
        started_unix_ns: trace::mono_now() as i64 + trace::mono_to_unix_offset(),
        binaries: records,
        probes: probes.clone(),
    };
    let rotation = a.max_size.map(|max_bytes| Rotation {
        max_bytes,
        max_files: a.max_files.unwrap_or(DEFAULT_MAX_FILES),
    });
    let writer = Writer::create_rotating(&a.output, &header, rotation)?;
    // The probes are attached and described: the binaries' files (read
    // whole, ~100 MB for a kubelet) are not needed while recording.
    drop(targets);
    drop(chosen);
    let child = match a.command.split_first() {
        Some((cmd, args)) => Some(
            Command::new(cmd)
                .args(args)
                .spawn()
                .with_context(|| format!("starting `{cmd}`"))?,
        ),
        None => None,
    };
    eprintln!("podtrace: recording to {}", a.output.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = collect::Options {
        duration: a.duration,
        drain_every: Duration::from_millis(20),
        status: !a.quiet,
    };
    let mut live = match &metrics {
        Some(m) => Some(live::Live::new(Arc::clone(m), &header, &versions, otlp)?),
        None => None,
    };
    if let (Some(l), Some(m)) = (listener, &metrics) {
        eprintln!(
            "podtrace: metrics at http://{}/metrics",
            l.local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string())
        );
        rt.spawn(live::serve(l, Arc::clone(m)));
    }
    let recorded = rt.block_on(collect::run(
        &mut loaded,
        &mut probes,
        writer,
        child,
        &opts,
        Some(&mut supervisor),
        live.as_mut().map(|l| l as &mut dyn collect::Consumer),
    ));
    let (footer, child_status) = match recorded {
        Ok(r) => r,
        Err(e) => {
            // A full disk, say: the uprobes go now, closed in parallel
            // (dropping them one by one takes a grace period each).
            let _ = loaded.detach();
            return Err(e);
        }
    };
    for l in loaded.log_summary() {
        eprintln!("{l}");
    }
    drop(loaded);
    eprintln!(
        "podtrace: stopped ({}) after {}: {} events, {} dropped, written to {}",
        footer.stopped_by,
        format_duration(Duration::from_nanos(footer.duration_ns)),
        footer.events,
        footer.drops,
        a.output.display()
    );
    let mut lat = supervisor.latencies_ns.clone();
    if !lat.is_empty() {
        lat.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        eprintln!(
            "podtrace: attached to {} binaries while recording, seen to attached min {:.1} ms, median {:.1} ms, max {:.1} ms",
            lat.len(),
            ms(lat[0]),
            ms(lat[lat.len() / 2]),
            ms(lat[lat.len() - 1])
        );
    }
    for c in &footer.capture_problems {
        let p = probes.get(c.probe as usize);
        eprintln!(
            "podtrace: warning: {} {} {} capture `{}`: {} failed, {} truncated{}",
            p.map_or("?", |p| p.binary.as_str()),
            p.map_or("?", |p| p.probe.as_str()),
            c.site,
            c.capture,
            c.failed,
            c.truncated,
            if a.ebpf_log {
                ""
            } else {
                " (--ebpf-log says which addresses)"
            }
        );
    }
    Ok(match child_status {
        Some(st) if !st.success() => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_mib("16"), Ok(16));
        assert_eq!(parse_ring_mib("1024"), Ok(1024));
        assert!(parse_ring_mib("4096").is_err_and(|e| e.contains("1 to 1024 MiB")));
        assert!(parse_ring_mib("0").is_err_and(|e| e.contains("1 to 1024 MiB")));
        assert!(parse_ring_mib("24").is_err_and(|e| e.contains("try 16 or 32")));
        assert!(parse_ring_mib("-1").is_err_and(|e| e.contains("whole number")));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1.5m"), Ok(3 << 19));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("1K").is_err_and(|e| e.contains("smallest")));
        assert!(parse_size("10 parsecs").is_err_and(|e| e.contains("unknown unit")));
        assert!(parse_size("lots").is_err_and(|e| e.contains("such as 100M")));
    }
}
