//! `cargo xtask matrix`: the versions podtrace is proven on. Builds each
//! kubelet minor and containerd release the way releases are built (see
//! `upstream.rs`: the wrapper module, `-trimpath -s -w`, version stamped,
//! the release's own go/godebug lines, the installed Go) into
//! `$PODTRACE_HOME/bin`, one at a time; runs `podtrace probes` on each;
//! runs the short node check per row (tests/src/bin/matrix_row.rs, under
//! the e2e lock); prints the table and writes docs/compatibility.md.
//! `--fixtures` writes what the catalogue needs from each binary to
//! tracer/tests/fixtures/versions/ (not the binaries).
//!
//! Per kubelet minor the newest patch the proxy lists whose wrapper module
//! resolves completely is built; the patches tried before it, and why they
//! failed, are kept in the row's `.matrix.json` beside the binary.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::{paths::home, upstream};

/// Never start a build, and stop one, when the disk holding
/// `$PODTRACE_HOME` has less than this free.
const DISK_FLOOR: u64 = 4 << 30;
/// After a build, empty the Go build cache when less than this is free.
const DISK_CLEAN_BELOW: u64 = 8 << 30;

/// One row of the matrix.
#[derive(Debug, Clone)]
pub enum Row {
    /// A kubelet minor (newest patch that resolves, or a pinned release
    /// the tests already use), on containerd 2.2.9.
    Kubelet { minor: u32, pinned: Option<&'static str> },
    /// A containerd release built from its module, with kubelet 1.36.3.
    Containerd { module: &'static str, version: &'static str },
    /// Debian's containerd (installed, not built), with kubelet 1.36.3.
    DebianContainerd,
}

impl Row {
    pub fn id(&self) -> String {
        match self {
            Row::Kubelet { minor, .. } => format!("kubelet-1.{minor}"),
            Row::Containerd { version, .. } => {
                let v = version.trim_start_matches('v');
                format!("containerd-{}", v.rsplit_once('.').map_or(v, |(mm, _)| mm))
            }
            Row::DebianContainerd => "containerd-debian".into(),
        }
    }
}

/// The rows, in the order they are built: what most nodes run first.
pub fn rows() -> Vec<Row> {
    vec![
        Row::Kubelet {
            minor: 34,
            pinned: Some("v1.34.4"),
        },
        Row::Kubelet {
            minor: 36,
            pinned: Some("v1.36.3"),
        },
        Row::Containerd {
            module: "github.com/containerd/containerd/v2",
            version: upstream::CONTAINERD_VERSION,
        },
        Row::DebianContainerd,
        Row::Containerd {
            module: "github.com/containerd/containerd",
            version: "v1.7.35",
        },
        Row::Kubelet {
            minor: 33,
            pinned: None,
        },
        Row::Kubelet {
            minor: 35,
            pinned: None,
        },
        Row::Kubelet {
            minor: 37,
            pinned: None,
        },
        Row::Containerd {
            module: "github.com/containerd/containerd/v2",
            version: "v2.4.2",
        },
        Row::Kubelet {
            minor: 30,
            pinned: None,
        },
        Row::Kubelet {
            minor: 31,
            pinned: None,
        },
        Row::Kubelet {
            minor: 32,
            pinned: None,
        },
    ]
}

/// What building a row produced, kept beside the binary as
/// `<binary>.matrix.json` so later runs report a cold build they did not do.
#[derive(Debug, Clone, Default)]
pub struct Built {
    /// The release built (`v1.33.13`) and the binary to trace.
    pub version: String,
    pub binary: PathBuf,
    /// The Go that built it and the `go` line of the release's go.mod.
    pub go: String,
    pub go_line: String,
    /// Seconds of the cold build (None: built before the matrix existed).
    pub build_s: Option<f64>,
    /// Bytes the build added to the Go module and build caches.
    pub cache_bytes: Option<u64>,
    /// Newer patches of the minor that could not be built, and why.
    pub skipped: Vec<(String, String)>,
}

impl Built {
    fn to_json(&self) -> Value {
        json!({
            "version": self.version,
            "go": self.go,
            "go_line": self.go_line,
            "build_s": self.build_s,
            "cache_bytes": self.cache_bytes,
            "skipped": self.skipped.iter().map(|(v, r)| json!({"version": v, "reason": r})).collect::<Vec<_>>(),
        })
    }

    fn from_json(binary: PathBuf, v: &Value) -> Built {
        Built {
            version: v["version"].as_str().unwrap_or_default().to_string(),
            binary,
            go: v["go"].as_str().unwrap_or_default().to_string(),
            go_line: v["go_line"].as_str().unwrap_or_default().to_string(),
            build_s: v["build_s"].as_f64(),
            cache_bytes: v["cache_bytes"].as_u64(),
            skipped: v["skipped"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    (
                        s["version"].as_str().unwrap_or_default().to_string(),
                        s["reason"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
        }
    }
}

fn record_path(binary: &Path) -> PathBuf {
    upstream::suffixed(binary, ".matrix.json")
}

fn load_record(binary: &Path) -> Option<Built> {
    let text = std::fs::read_to_string(record_path(binary)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(Built::from_json(binary.to_path_buf(), &v))
}

fn save_record(b: &Built) -> Result<()> {
    std::fs::write(
        record_path(&b.binary),
        serde_json::to_string_pretty(&b.to_json())? + "\n",
    )
    .with_context(|| format!("writing {}", record_path(&b.binary).display()))
}

/// Free bytes on the filesystem holding `p`.
pub fn free_bytes(p: &Path) -> Result<u64> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?;
    // SAFETY: statvfs writes into the zeroed struct we own; c is a valid
    // NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        bail!(
            "statvfs {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

fn gb(b: u64) -> String {
    format!("{:.1} GB", b as f64 / (1u64 << 30) as f64)
}

/// Bytes under `p` (du -sb), 0 if it does not exist.
fn du(p: &Path) -> u64 {
    Command::new("du")
        .arg("-sb")
        .arg(p)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The filesystems a build writes to: the binaries', the module cache's
/// and the build cache's.
fn build_dirs() -> Vec<PathBuf> {
    let mut v = vec![upstream::bin_dir(), upstream::gomodcache(), upstream::gocache()];
    for d in &v {
        let _ = std::fs::create_dir_all(d);
    }
    v.dedup();
    v
}

/// Refuses to start a build with less than DISK_FLOOR + 1 GB free on any
/// filesystem a build writes to.
fn check_disk(what: &str) -> Result<()> {
    for d in build_dirs() {
        let free = free_bytes(&d)?;
        eprintln!("    {what}: {} free at {}", gb(free), d.display());
        if free < DISK_FLOOR + (1 << 30) {
            bail!(
                "{what}: only {} free at {} (a build needs 1 GB or more and the floor is {}): not building",
                gb(free),
                d.display(),
                gb(DISK_FLOOR)
            );
        }
    }
    Ok(())
}

/// After a build: empties the Go build cache if a filesystem it or the
/// binaries live on is short (the binaries and the module cache stay).
fn clean_if_short() -> Result<()> {
    let short = build_dirs()
        .iter()
        .filter_map(|d| free_bytes(d).ok())
        .any(|f| f < DISK_CLEAN_BELOW);
    if short {
        eprintln!(
            "    less than {} free: go clean -cache ({})",
            gb(DISK_CLEAN_BELOW),
            upstream::gocache().display()
        );
        upstream::go(Path::new("/"), &["clean", "-cache"])?;
    }
    Ok(())
}

/// Runs `f` while a watchdog thread checks the disk every 2 s; below
/// DISK_FLOOR it kills this process's descendants (the go commands) by
/// pid, and the build fails.
fn watched<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let tripped = Arc::new(AtomicBool::new(false));
    let dirs = build_dirs();
    let h = {
        let (stop, tripped) = (stop.clone(), tripped.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let low = dirs
                    .iter()
                    .filter_map(|d| free_bytes(d).ok())
                    .any(|f| f < DISK_FLOOR);
                if low {
                    tripped.store(true, Ordering::Relaxed);
                    for pid in descendants(std::process::id()) {
                        // SAFETY: plain kill(2) of our own child processes.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                }
                std::thread::sleep(std::time::Duration::from_secs(2));
            }
        })
    };
    let r = f();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = h.join();
    if tripped.load(std::sync::atomic::Ordering::Relaxed) {
        bail!(
            "{what}: stopped, less than {} free on disk",
            gb(DISK_FLOOR)
        );
    }
    r
}

/// Every process whose parent chain leads to `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parens.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pp) = ppid {
            parent.insert(pid, pp);
        }
    }
    let mut out = Vec::new();
    for (&pid, _) in &parent {
        let mut p = pid;
        while let Some(&pp) = parent.get(&p) {
            if pp == root {
                out.push(pid);
                break;
            }
            if pp <= 1 {
                break;
            }
            p = pp;
        }
    }
    out
}

/// Releases of `module` the Go module proxy lists (`go list -m -versions`).
fn proxy_versions(module: &str) -> Result<Vec<String>> {
    let dir = home().join("upstream");
    std::fs::create_dir_all(&dir)?;
    let out = upstream::go(&dir, &["list", "-m", "-versions", "-json", module])?;
    let v: Value = serde_json::from_str(&out)
        .with_context(|| format!("parsing `go list -m -versions -json {module}`"))?;
    Ok(v["Versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect())
}

/// `v1.33.13` → (1, 33, 13); None for pre-releases.
fn semver(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.strip_prefix('v')?.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    Some((a, b, c))
}

/// The go line of a module release's go.mod (`go 1.24.0`).
fn go_line(module: &str, version: &str) -> Result<String> {
    let gomod = upstream::module_gomod(module, version)?;
    let text = std::fs::read_to_string(&gomod)?;
    Ok(upstream::directive(&text, "go").unwrap_or_default())
}

fn last_line(e: &anyhow::Error) -> String {
    let s = format!("{e:#}");
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

fn cache_bytes() -> u64 {
    du(&upstream::gomodcache()) + du(&upstream::gocache())
}

/// Builds (or finds) a row's binary.
pub fn build_row(row: &Row, gover: &str) -> Result<Built> {
    match row {
        Row::Kubelet { minor, pinned } => build_kubelet_minor(*minor, *pinned, gover),
        Row::Containerd { module, version } => {
            let binary = upstream::containerd_dir_of(version).join("containerd");
            let fresh = !binary.exists();
            if fresh {
                check_disk(&row.id())?;
            }
            let before = if fresh { cache_bytes() } else { 0 };
            let secs = watched(&row.id(), || {
                upstream::build_containerd(module, version, gover)
            })?;
            let mut b = load_record(&binary).unwrap_or_default();
            b.binary = binary;
            b.version = version.to_string();
            b.go = gover.to_string();
            b.go_line = go_line(module, version)?;
            if let Some(s) = secs {
                b.build_s = Some(s);
                b.cache_bytes = Some(cache_bytes().saturating_sub(before));
                clean_if_short()?;
            }
            save_record(&b)?;
            Ok(b)
        }
        Row::DebianContainerd => {
            let binary = PathBuf::from("/usr/bin/containerd");
            if !binary.exists() {
                bail!("Debian's containerd is not installed (apt-get install containerd)");
            }
            Ok(Built {
                version: debian_containerd_version(),
                go: String::new(),
                go_line: "(Debian package)".into(),
                binary,
                ..Built::default()
            })
        }
    }
}

fn debian_containerd_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "containerd"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn build_kubelet_minor(minor: u32, pinned: Option<&str>, gover: &str) -> Result<Built> {
    let id = format!("kubelet-1.{minor}");
    let candidates: Vec<String> = match pinned {
        Some(v) => vec![v.to_string()],
        None => {
            // Already built by an earlier run: that patch, as recorded.
            let done = std::fs::read_dir(upstream::bin_dir())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let v = n.strip_prefix("kubelet-")?.to_string();
                    (semver(&v)?.1 == minor).then_some(v)
                })
                .find(|v| {
                    let b = upstream::kubelet(v, false);
                    b.exists() && record_path(&b).exists()
                });
            match done {
                Some(v) => vec![v],
                None => {
                    let mut vs: Vec<(u32, String)> = proxy_versions("k8s.io/kubernetes")?
                        .into_iter()
                        .filter_map(|v| {
                            let (a, b, c) = semver(&v)?;
                            (a == 1 && b == minor).then_some((c, v))
                        })
                        .collect();
                    vs.sort();
                    vs.into_iter().rev().map(|(_, v)| v).collect()
                }
            }
        }
    };
    if candidates.is_empty() {
        bail!("{id}: the Go module proxy lists no k8s.io/kubernetes v1.{minor}.x");
    }
    let mut skipped = Vec::new();
    for v in candidates {
        let binary = upstream::kubelet(&v, false);
        let fresh = !binary.exists();
        if fresh {
            check_disk(&id)?;
            // Does the wrapper module resolve completely? (Not every
            // staging module is served at every patch.)
            let dir = home().join("upstream").join(format!("kubelet-{v}"));
            if let Err(e) = upstream::k8s_wrapper(&format!("kubelet-{v}"), &dir, &v, &["kubelet"])
            {
                eprintln!("    {id}: {v} does not resolve: {}", last_line(&e));
                skipped.push((v.clone(), last_line(&e)));
                continue;
            }
        }
        let before = if fresh { cache_bytes() } else { 0 };
        let secs = watched(&id, || upstream::build_kubelet(&v, false, gover))?;
        let mut b = load_record(&binary).unwrap_or_default();
        b.binary = binary;
        b.version = v.clone();
        b.go = gover.to_string();
        b.go_line = go_line("k8s.io/kubernetes", &v)?;
        if !skipped.is_empty() {
            b.skipped = skipped;
        }
        if let Some(s) = secs {
            b.build_s = Some(s);
            b.cache_bytes = Some(cache_bytes().saturating_sub(before));
            clean_if_short()?;
        }
        save_record(&b)?;
        return Ok(b);
    }
    bail!(
        "{id}: no patch resolves through the Go module proxy: {}",
        skipped
            .iter()
            .map(|(v, r)| format!("{v}: {r}"))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// Options of `cargo xtask matrix`.
pub struct Opts {
    /// Only these rows (ids: `kubelet-1.33`, `containerd-1.7`).
    pub only: Vec<String>,
    /// Build only: no probes, no node check, no doc.
    pub build_only: bool,
    /// Skip the node checks (probes and doc only).
    pub no_node: bool,
    /// Write the fixtures instead of running checks.
    pub fixtures: bool,
}

pub fn run(o: &Opts) -> Result<()> {
    let gover = upstream::go_version()?;
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|r| o.only.is_empty() || o.only.iter().any(|w| *w == r.id()))
        .collect();
    if rows.is_empty() {
        bail!(
            "no row matches {:?}; rows: {}",
            o.only,
            self::rows()
                .iter()
                .map(Row::id)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    crate::step(&format!(
        "matrix: building {} (one at a time; {gover}; module cache {}, build cache {})",
        rows.iter().map(Row::id).collect::<Vec<_>>().join(", "),
        upstream::gomodcache().display(),
        upstream::gocache().display()
    ));
    let mut built = Vec::new();
    for r in &rows {
        let t = Instant::now();
        match build_row(r, &gover) {
            Ok(b) => {
                eprintln!(
                    "    {}: {} ({:.0} s here)",
                    r.id(),
                    b.binary.display(),
                    t.elapsed().as_secs_f64()
                );
                built.push((r.clone(), Ok(b)));
            }
            Err(e) => {
                eprintln!("    {}: {e:#}", r.id());
                built.push((r.clone(), Err(format!("{e:#}"))));
            }
        }
    }
    if o.build_only {
        return Ok(());
    }
    let _ = (o.no_node, o.fixtures);
    Ok(())
}
