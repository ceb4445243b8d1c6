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
    Kubelet {
        minor: u32,
        pinned: Option<&'static str>,
    },
    /// A containerd release built from its module, with kubelet 1.36.3.
    Containerd {
        module: &'static str,
        version: &'static str,
    },
    /// Debian's containerd (installed, not built), with kubelet 1.36.3.
    DebianContainerd,
    /// A kubelet minor's binary against the kubelet catalogue with that
    /// minor's knowledge removed ([`podtrace::catalogue::forget_from`]):
    /// what podtrace does on a version newer than any it was tested on.
    Unseen {
        minor: u32,
        /// The catalogue's newest tested version once it is forgotten.
        newest: &'static str,
        /// Probes that must then be left out (the rest resolve by shape).
        not_attached: &'static [&'static str],
    },
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
            Row::Unseen { minor, .. } => format!("kubelet-1.{minor}-unseen"),
        }
    }

    /// The binary it traces: `kubelet` or `containerd`.
    fn which(&self) -> &'static str {
        match self {
            Row::Kubelet { .. } | Row::Unseen { .. } => "kubelet",
            _ => "containerd",
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
        // 1.37's own binary, its minor forgotten: only relistPod changed
        // registers in 1.37, and it must not be read with 1.36's.
        Row::Unseen {
            minor: 37,
            newest: "v1.36.3",
            not_attached: &["relist_pod"],
        },
    ]
}

/// The kubelet catalogue without `minor`'s knowledge (newest tested:
/// `newest`), written where the row's probes and node check read it.
fn forgotten_catalogue(minor: u32, newest: &str) -> Result<PathBuf> {
    let text = podtrace::catalogue::forget_from(
        podtrace::catalogue::builtin_text("kubelet").context("no built-in kubelet catalogue")?,
        &format!("v1.{minor}.0"),
        newest,
    )
    .map_err(|e| anyhow::anyhow!("forgetting 1.{minor}: {e}"))?;
    let p = home()
        .join("matrix")
        .join(format!("kubelet-without-1.{minor}.toml"));
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
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
    let mut v = vec![
        upstream::bin_dir(),
        upstream::gomodcache(),
        upstream::gocache(),
    ];
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
        bail!("{what}: stopped, less than {} free on disk", gb(DISK_FLOOR));
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
    for &pid in parent.keys() {
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

/// Why a release does not resolve: the module the proxy refused and its
/// answer (`k8s.io/kube-scheduler@v0.31.14: 403 Forbidden: server
/// response: This module version is not available.`), else the last line.
fn resolve_reason(e: &anyhow::Error) -> String {
    let last = last_line(e);
    let s = format!("{e:#}");
    let refused = s.lines().rev().find(|l| l.contains(": reading https://"));
    let Some(l) = refused else {
        return last;
    };
    let module = l.split(": ").map(str::trim).find(|p| p.contains('@'));
    let status = l.rsplit(": ").next().map(str::trim);
    match (module, status) {
        (Some(m), Some(st)) => format!("{m}: {st}: {last}"),
        _ => last,
    }
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
        Row::Unseen { minor, .. } => build_kubelet_minor(*minor, None, gover),
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
            if let Err(e) = upstream::k8s_wrapper(&format!("kubelet-{v}"), &dir, &v, &["kubelet"]) {
                eprintln!("    {id}: {v} does not resolve: {}", resolve_reason(&e));
                skipped.push((v.clone(), resolve_reason(&e)));
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

/// A row's binary if it is built already (with its record).
fn present(row: &Row) -> Option<Built> {
    let (minor, pinned) = match row {
        Row::Kubelet { minor, pinned } => (minor, *pinned),
        Row::Unseen { minor, .. } => (minor, None),
        _ => (&0, None),
    };
    match row {
        Row::Kubelet { .. } | Row::Unseen { .. } => {
            let v = match pinned {
                Some(v) => v.to_string(),
                None => std::fs::read_dir(upstream::bin_dir())
                    .ok()?
                    .flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        let v = n.strip_prefix("kubelet-")?.to_string();
                        (semver(&v)?.1 == *minor).then_some(v)
                    })
                    .find(|v| record_path(&upstream::kubelet(v, false)).exists())?,
            };
            let b = upstream::kubelet(&v, false);
            b.exists().then(|| {
                let mut r = load_record(&b).unwrap_or_default();
                r.binary = b;
                r.version = v;
                r
            })
        }
        Row::Containerd { version, .. } => {
            let b = upstream::containerd_dir_of(version).join("containerd");
            b.exists().then(|| {
                let mut r = load_record(&b).unwrap_or_default();
                r.binary = b;
                r.version = version.to_string();
                r
            })
        }
        Row::DebianContainerd => build_row(row, "").ok(),
    }
}

/// Where the version fixtures live.
pub fn fixtures_dir() -> PathBuf {
    crate::root().join("tracer/tests/fixtures/versions")
}

/// `--fixtures`: one JSON per built binary, what the catalogue reads of it.
fn write_fixtures(built: &[(Row, Result<Built, String>)]) -> Result<()> {
    use podtrace::{catalogue::Catalogue, fixture::Fixture, resolve::GoBinary};
    let cat = Catalogue::builtin()?;
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir)?;
    for (row, b) in built {
        let b = match b {
            Ok(b) if !matches!(row, Row::Unseen { .. }) => b,
            // Its binary's fixture is its minor's row's.
            Ok(_) => continue,
            Err(e) => {
                eprintln!("    {}: no fixture ({e})", row.id());
                continue;
            }
        };
        let which = row.which();
        let bin = GoBinary::open(&b.binary)?;
        let fx = Fixture::extract(&bin, cat.for_binary(which)?, &b.version)
            .map_err(|e| anyhow::anyhow!("{}: {e}", row.id()))?;
        let name = match row {
            Row::DebianContainerd => format!(
                "containerd-debian-{}.json",
                b.version.split('~').next().unwrap_or(&b.version)
            ),
            _ => format!("{which}-{}.json", b.version),
        };
        let path = dir.join(name);
        std::fs::write(&path, fx.to_json()?)?;
        eprintln!(
            "    {}: {} ({} functions, {} probes)",
            row.id(),
            path.display(),
            fx.functions.len(),
            fx.expected.len()
        );
    }
    Ok(())
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
        if o.fixtures {
            // Only what is built: fixtures never start a build.
            built.push((r.clone(), present(r).ok_or_else(|| "not built".to_string())));
            continue;
        }
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
    if o.fixtures {
        return write_fixtures(&built);
    }
    let podtrace = crate::podtrace_bin();
    if !podtrace.exists() {
        bail!(
            "{} does not exist: run `cargo xtask build` first",
            podtrace.display()
        );
    }
    let mut results = Vec::new();
    for (row, b) in built {
        let mut r = RowResult {
            id: row.id(),
            row: row.clone(),
            date: today(),
            built: None,
            error: None,
            probes: Vec::new(),
            probe_problems: Vec::new(),
            node: None,
        };
        match b {
            Err(e) => r.error = Some(e),
            Ok(b) => {
                match probes(&podtrace, &row, &b) {
                    Ok((list, problems)) => {
                        r.probes = list;
                        r.probe_problems = problems;
                    }
                    Err(e) => r.error = Some(format!("podtrace probes: {e:#}")),
                }
                r.built = Some(b);
                if !o.no_node && r.error.is_none() {
                    r.node = Some(node_check(&row, r.built.as_ref().map(|b| &b.binary)));
                }
            }
        }
        eprintln!("    {}", r.line());
        if !o.no_node {
            r.save()?;
        }
        results.push(r);
    }
    println!("{}", table(&results));
    if !o.no_node {
        // Every row: this run's, else the last run's of it (dated), else
        // "not run".
        let all: Vec<RowResult> = self::rows()
            .into_iter()
            .map(|row| {
                results
                    .iter()
                    .find(|r| r.id == row.id())
                    .cloned()
                    .or_else(|| RowResult::load(&row))
                    .unwrap_or_else(|| RowResult::not_run(row))
            })
            .collect();
        let doc = crate::root().join("docs/compatibility.md");
        std::fs::write(&doc, compatibility_md(&all, &table(&all)))
            .with_context(|| format!("writing {}", doc.display()))?;
        eprintln!("    wrote {}", doc.display());
    }
    if results.iter().any(|r| !r.green()) {
        bail!("matrix: not every row is green (table above)");
    }
    Ok(())
}

/// One row's outcome, kept in `$PODTRACE_HOME/matrix/<id>.json` so that
/// `--only` runs add up to the whole document.
#[derive(Clone)]
pub struct RowResult {
    pub id: String,
    pub row: Row,
    /// The day (UTC) its node check ran.
    pub date: String,
    pub built: Option<Built>,
    /// The row could not be built or inspected (the exact reason).
    pub error: Option<String>,
    /// (probe, status) as `podtrace probes` resolved them.
    pub probes: Vec<(String, String)>,
    /// Probes whose status is neither `ok` nor documented for this version.
    pub probe_problems: Vec<String>,
    /// The node check: Ok(summary) or Err(why it failed or could not run).
    pub node: Option<Result<Value, String>>,
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn result_path(id: &str) -> PathBuf {
    home().join("matrix").join(format!("{id}.json"))
}

impl RowResult {
    fn not_run(row: Row) -> RowResult {
        RowResult {
            id: row.id(),
            row,
            date: String::new(),
            built: None,
            error: Some("not run yet".into()),
            probes: Vec::new(),
            probe_problems: Vec::new(),
            node: None,
        }
    }

    fn save(&self) -> Result<()> {
        let p = result_path(&self.id);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        let node = match &self.node {
            None => Value::Null,
            Some(Ok(v)) => json!({ "ok": v }),
            Some(Err(e)) => json!({ "err": e }),
        };
        let v = json!({
            "id": self.id,
            "date": self.date,
            "built": self.built.as_ref().map(|b| {
                let mut j = b.to_json();
                j["binary"] = json!(b.binary);
                j
            }),
            "error": self.error,
            "probes": self.probes,
            "probe_problems": self.probe_problems,
            "node": node,
        });
        std::fs::write(&p, serde_json::to_string_pretty(&v)? + "\n")
            .with_context(|| format!("writing {}", p.display()))
    }

    fn load(row: &Row) -> Option<RowResult> {
        let text = std::fs::read_to_string(result_path(&row.id())).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        let strs = |k: &str| -> Vec<String> {
            v[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        Some(RowResult {
            id: row.id(),
            row: row.clone(),
            date: v["date"].as_str().unwrap_or_default().to_string(),
            built: v["built"].as_object().map(|_| {
                Built::from_json(
                    PathBuf::from(v["built"]["binary"].as_str().unwrap_or_default()),
                    &v["built"],
                )
            }),
            error: v["error"].as_str().map(str::to_string),
            probes: v["probes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect(),
            probe_problems: strs("probe_problems"),
            node: if let Some(ok) = v["node"].get("ok") {
                Some(Ok(ok.clone()))
            } else {
                v["node"]["err"].as_str().map(|e| Err(e.to_string()))
            },
        })
    }

    fn green(&self) -> bool {
        self.error.is_none()
            && self.probe_problems.is_empty()
            && self.node.as_ref().is_none_or(|n| n.is_ok())
    }

    fn line(&self) -> String {
        let probes = format!(
            "{}/{} probes ok",
            self.probes.iter().filter(|(_, s)| s == "ok").count(),
            self.probes.len()
        );
        let node = match &self.node {
            None => "no node check".to_string(),
            Some(Ok(v)) => format!(
                "node ok (mount wait vs kubelet's V(3) lines: worst {:.0} µs)",
                v["mount_wait_worst_us"].as_f64().unwrap_or(f64::NAN)
            ),
            Some(Err(e)) => format!("node FAILED: {}", first_line(e)),
        };
        match &self.error {
            Some(e) => format!("{}: {e}", self.id),
            None => format!("{}: {probes}; {node}", self.id),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The minor of a kubelet row, or of the kubelet a containerd row runs with.
fn kubelet_minor(row: &Row, b: &Built) -> u32 {
    match row {
        Row::Kubelet { .. } | Row::Unseen { .. } => semver(&b.version).map_or(0, |v| v.1),
        _ => semver(upstream::KUBELET_VERSIONS[1]).map_or(0, |v| v.1),
    }
}

/// Non-ok statuses that are documented (docs/probe-points.md, the
/// catalogue's mismatch notes) for a kubelet minor: (probe, status, why).
fn documented(binary: &str, minor: u32, probe: &str, status: &str) -> Option<&'static str> {
    match (binary, probe, status) {
        ("kubelet", "poll_check", "mismatch") if (32..=34).contains(&minor) => Some(
            "1.32-1.34 check the volumes inside the condition closure (poll_cond's calls are the checks)",
        ),
        ("kubelet", "relist_pod", "missing") if minor < 36 => {
            Some("PLEG's on-demand relistPod came with 1.36")
        }
        _ => None,
    }
}

/// `podtrace probes` on a row's binary: every probe's status, and those
/// that are neither ok nor documented.
/// (probe, status) of every probe, and the statuses neither ok nor documented.
type Probes = (Vec<(String, String)>, Vec<String>);

fn probes(podtrace: &Path, row: &Row, b: &Built) -> Result<Probes> {
    let which = row.which();
    let catalogue = match row {
        Row::Unseen { minor, newest, .. } => Some(forgotten_catalogue(*minor, newest)?),
        _ => None,
    };
    let run = |format: &str| {
        let mut c = Command::new(podtrace);
        c.arg("probes")
            .arg(format!("--{which}"))
            .arg(&b.binary)
            .args(["--format", format]);
        if let Some(cat) = &catalogue {
            c.arg("--catalogue").arg(cat);
        }
        c.output()
            .with_context(|| format!("running {}", podtrace.display()))
    };
    if catalogue.is_some() {
        // What the user is told, kept for the row's log.
        let t = run("table")?;
        let log = crate::root().join(format!("target/matrix/{}.probes.txt", row.id()));
        if let Some(d) = log.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&log, &t.stdout)?;
    }
    let out = run("json")?;
    let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "podtrace probes printed no JSON ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let minor = kubelet_minor(row, b);
    let mut list = Vec::new();
    let mut problems = Vec::new();
    let unseen = &v["binaries"][0]["unseen"];
    let left_out: &[&str] = match row {
        Row::Unseen { not_attached, .. } => {
            if unseen["version"] != b.version.as_str() {
                problems.push(format!("not told the kubelet is unseen: {unseen}"));
            }
            not_attached
        }
        _ => {
            if !unseen.is_null() {
                problems.push(format!("a tested version taken for unseen: {unseen}"));
            }
            &[]
        }
    };
    for p in v["binaries"][0]["probes"].as_array().into_iter().flatten() {
        let name = p["probe"].as_str().unwrap_or_default().to_string();
        let status = p["status"].as_str().unwrap_or_default().to_string();
        if left_out.contains(&name.as_str()) {
            if status != "mismatch" {
                problems.push(format!(
                    "{name} {status}: must be left out (mismatch) unseen"
                ));
            }
        } else if !unseen.is_null()
            && p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["by_version"] == true)
        {
            problems.push(format!(
                "{name} matched by a version range on an unseen kubelet"
            ));
        } else if status != "ok" && documented(which, minor, &name, &status).is_none() {
            problems.push(format!(
                "{name} {status}: {}",
                p["detail"].as_str().unwrap_or_default()
            ));
        }
        list.push((name, status));
    }
    if list.is_empty() {
        bail!("no probe resolved: {v}");
    }
    Ok((list, problems))
}

/// The e2e lock every privileged run on this machine takes.
const E2E_LOCK: &str = "/tmp/podtrace-e2e.lock";

/// Runs `xtask matrix-row` for a row under the e2e lock (flock): the node
/// check in a process of its own, whose panic is the failure's reason.
fn node_check(row: &Row, binary: Option<&PathBuf>) -> Result<Value, String> {
    let Some(binary) = binary else {
        return Err("not built".into());
    };
    let (kubelet, containerd, shim) = match row {
        Row::Kubelet { .. } | Row::Unseen { .. } => {
            let d = upstream::containerd_dir();
            (
                binary.clone(),
                d.join("containerd"),
                d.join("containerd-shim-runc-v2"),
            )
        }
        Row::Containerd { .. } => (
            upstream::kubelet(upstream::KUBELET_VERSIONS[1], false),
            binary.clone(),
            binary.with_file_name("containerd-shim-runc-v2"),
        ),
        Row::DebianContainerd => (
            upstream::kubelet(upstream::KUBELET_VERSIONS[1], false),
            binary.clone(),
            PathBuf::from("/usr/bin/containerd-shim-runc-v2"),
        ),
    };
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return Err(format!("current_exe: {e}")),
    };
    eprintln!(
        "    {}: node check ({} on {}), waiting for {E2E_LOCK}",
        row.id(),
        kubelet.display(),
        containerd.display()
    );
    let mut cmd = Command::new("flock");
    cmd.args(["-o", E2E_LOCK])
        .arg(me)
        .arg("matrix-row")
        .env("PODTRACE_KUBELET", &kubelet)
        .env("PODTRACE_CONTAINERD", &containerd)
        .env("PODTRACE_CONTAINERD_SHIM", &shim);
    if let Row::Unseen {
        minor,
        newest,
        not_attached,
    } = row
    {
        let cat = forgotten_catalogue(*minor, newest).map_err(|e| format!("{e:#}"))?;
        cmd.env("PODTRACE_MATRIX_CATALOGUE", cat)
            .env("PODTRACE_MATRIX_NOT_ATTACHED", not_attached.join(","));
    }
    let out = cmd.output().map_err(|e| format!("running flock: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = crate::root().join(format!("target/matrix/{}.log", row.id()));
    if let Some(d) = log.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(&log, format!("{stdout}\n{stderr}"));
    if let Some(j) = stdout
        .lines()
        .find_map(|l| l.strip_prefix(ROW_RESULT_PREFIX))
    {
        if out.status.success() {
            return serde_json::from_str(j).map_err(|e| format!("bad row result {j}: {e}"));
        }
    }
    // A panic's message: the line after "panicked at".
    let why = stderr
        .lines()
        .skip_while(|l| !l.contains("panicked at"))
        .nth(1)
        .map(str::to_string)
        .unwrap_or_else(|| {
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output")
                .to_string()
        });
    Err(format!("{why} ({}; log {})", out.status, log.display()))
}

const ROW_RESULT_PREFIX: &str = "MATRIX-ROW-RESULT ";

/// `xtask matrix-row` (run by [`node_check`] under the e2e lock): the
/// node check of `PODTRACE_KUBELET` on `PODTRACE_CONTAINERD`; prints its
/// summary as one JSON line, or panics with the reason.
pub fn row() -> Result<()> {
    use podtrace_tests::kubelet_check;
    // `matrix` runs under `nice -n 19` for its Go builds; the node under
    // test must not: a niced kubelet is preempted between a function's
    // entry and its own log stamp far more often than a node's kubelet.
    // SAFETY: setpriority(2) on this process (which the node inherits);
    // as root it may lower the niceness back to 0.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 0) } != 0 {
        eprintln!(
            "    matrix-row: cannot reset niceness to 0 ({}): timings may suffer",
            std::io::Error::last_os_error()
        );
    }
    let kubelet = std::env::var_os("PODTRACE_KUBELET")
        .map(PathBuf::from)
        .context("PODTRACE_KUBELET is not set")?;
    let name = kubelet
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = name.trim_start_matches("kubelet-").to_string();
    let check = kubelet_check::Check {
        label: format!("kubelet {version}"),
        kubelet: kubelet.clone(),
        minor: kubelet_check::minor_of(&version),
        tuned: false,
        interval_ms: 300.0,
        pods: kubelet_check::PODS,
        catalogue: std::env::var_os("PODTRACE_MATRIX_CATALOGUE").map(PathBuf::from),
        not_attached: std::env::var("PODTRACE_MATRIX_NOT_ATTACHED")
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
    };
    let run = kubelet_check::run(&check);
    println!(
        "{ROW_RESULT_PREFIX}{}",
        serde_json::to_string(&run.summary)?
    );
    Ok(())
}

fn mib(b: u64) -> String {
    format!("{:.1} GB", b as f64 / (1u64 << 30) as f64)
}

/// The table `matrix` prints (this run's rows) and docs/compatibility.md
/// holds (every row's latest run).
pub fn table(results: &[RowResult]) -> String {
    let mut t = String::from(
        "| row | version | with | built with | go.mod | build | caches added | probes | node check | mount wait vs kubelet's V(3) lines (worst) | run |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let b = r.built.as_ref();
        let with = match &r.row {
            Row::Kubelet { .. } => format!("containerd {}", upstream::CONTAINERD_VERSION),
            Row::Unseen { minor, newest, .. } => format!(
                "containerd {}; catalogue without 1.{minor} (newest tested {newest})",
                upstream::CONTAINERD_VERSION
            ),
            _ => format!("kubelet {}", upstream::KUBELET_VERSIONS[1]),
        };
        let version = b.map_or("-".to_string(), |b| {
            let mut v = b.version.clone();
            if !b.skipped.is_empty() {
                v.push_str(&format!(
                    " (not {}: {})",
                    b.skipped
                        .iter()
                        .map(|s| s.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    b.skipped
                        .iter()
                        .map(|s| s.1.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            v
        });
        let probes = if r.probes.is_empty() {
            "-".to_string()
        } else {
            let odd: Vec<String> = r
                .probes
                .iter()
                .filter(|(_, s)| s != "ok")
                .map(|(p, s)| format!("{p} {s}"))
                .collect();
            let mut s = format!("{}/{} ok", r.probes.len() - odd.len(), r.probes.len());
            if !odd.is_empty() {
                s.push_str(&format!(" ({})", odd.join(", ")));
            }
            if !r.probe_problems.is_empty() {
                s.push_str(&format!(
                    " **undocumented: {}**",
                    r.probe_problems.join("; ")
                ));
            }
            s
        };
        let (node, worst) = match (&r.error, &r.node) {
            (Some(e), _) => (format!("**{}**", e.replace('\n', " ")), "-".to_string()),
            (None, None) => ("not run".to_string(), "-".to_string()),
            (None, Some(Ok(v))) => (
                format!(
                    "ok: {} pods, poll {} ms, loops {}{}",
                    v["pods"],
                    v["poll_configured_ms"],
                    v["loops"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| format!(
                            "{} {:.1} ms",
                            l[0].as_str().unwrap_or(""),
                            l[1].as_f64().unwrap_or(f64::NAN)
                        ))
                        .collect::<Vec<_>>()
                        .join(", "),
                    match v["not_attached"].as_array() {
                        Some(l) if !l.is_empty() => format!(
                            "; not attached, said so: {}",
                            l.iter()
                                .filter_map(|p| p.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        _ => String::new(),
                    }
                ),
                format!(
                    "{:.0} µs",
                    v["mount_wait_worst_us"].as_f64().unwrap_or(f64::NAN)
                ),
            ),
            (None, Some(Err(e))) => (
                format!("**failed: {}**", e.replace('\n', " ")),
                "-".to_string(),
            ),
        };
        t.push_str(&format!(
            "| {} | {version} | {with} | {} | {} | {} | {} | {probes} | {node} | {worst} | {} |\n",
            r.id,
            b.map_or("-", |b| if b.go.is_empty() {
                "(distribution)"
            } else {
                b.go.as_str()
            }),
            b.map_or("-", |b| b.go_line.as_str()),
            // The unseen row traces its minor's binary: built by that row.
            b.filter(|_| !matches!(r.row, Row::Unseen { .. }))
                .and_then(|b| b.build_s)
                .map_or("-".to_string(), |s| format!("{:.0} s", s)),
            b.filter(|_| !matches!(r.row, Row::Unseen { .. }))
                .and_then(|b| b.cache_bytes)
                .map_or("-".to_string(), mib),
            if r.date.is_empty() {
                "-"
            } else {
                r.date.as_str()
            },
        ));
    }
    t
}

fn compatibility_md(results: &[RowResult], table: &str) -> String {
    let date = today();
    let green = results.iter().filter(|r| r.green()).count();
    format!(
        "# Compatibility: the versions podtrace was run on\n\n\
         Written by `cargo xtask matrix` on {date} ({green} of {} rows green). Each\n\
         binary was built from the Go module proxy the way its release is built\n\
         (`-trimpath -s -w`, version stamped, the release's own `go`/`godebug`\n\
         lines; see xtask/src/upstream.rs) with the Go named below; per kubelet\n\
         minor the newest patch whose wrapper module resolves completely.\n\n\
         Per row: `podtrace probes` on the binary (every probe `ok` or a status\n\
         documented in docs/probe-points.md), then a standalone node (4 static\n\
         pods with a hostPath and an emptyDir volume) traced by `podtrace\n\
         record`: each pod's mount wait within 1 ms of kubelet's V(3) lines and\n\
         its sync of kubelet's `syncPod` span (one comparison in 20 may be up to\n\
         5 ms off, printed: kubelet's goroutine preempted between the function's\n\
         entry and its own stamp), poll checks at kubelet's 300 ms,\n\
         every CRI call inside kubelet's client span for it, the reconciler,\n\
         populator and PLEG periods as built (tests/src/kubelet_check.rs).\n\n\
         `kubelet-1.37-unseen` is a version podtrace has never seen: the real\n\
         1.37 kubelet against the kubelet catalogue with every variant that\n\
         needs 1.37 removed and `newest_tested` v1.36.3. No version range holds\n\
         on it; probes resolve by shape only, relist_pod (whose registers 1.37\n\
         changed) is left out and `probes`, `record` and `report` say so, and\n\
         every other stage is checked as in the other rows.\n\n\
         {table}\n\
         `build` is the row's build time on 2 cores shared with other work,\n\
         `caches added` what it added to the Go module and build caches: the\n\
         first kubelet and the first containerd built found the caches\n\
         empty, later ones reuse the dependencies they share (`-`: built by\n\
         `cargo xtask setup`, or Debian's package).\n\n\
         Run it: `cargo xtask build && nice -n 19 cargo xtask matrix` (one Go\n\
         build after another, then a node check per row). `--only kubelet-1.33,containerd-1.7` runs\n\
         some rows: the others keep their last result (the `run` column;\n\
         each row's result is kept in `~/.podtrace/matrix/<row>.json`);\n\
         `--fixtures` writes tracer/tests/fixtures/versions/.\n",
        results.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_reason_names_the_refused_module() {
        let e = anyhow::anyhow!(
            "go mod tidy failed:\n\tk8s.io/kubernetes/pkg/scheduler imports\n\
             \tk8s.io/kube-scheduler/config/v1: k8s.io/kube-scheduler@v0.31.14: reading https://proxy.golang.org/k8s.io/kube-scheduler/@v/v0.31.14.zip: 403 Forbidden\n\
             \tserver response: This module version is not available."
        );
        assert_eq!(
            resolve_reason(&e),
            "k8s.io/kube-scheduler@v0.31.14: 403 Forbidden: server response: This module version is not available."
        );
        let other = anyhow::anyhow!("go: no space left on device\n");
        assert_eq!(resolve_reason(&other), "go: no space left on device");
    }
}
