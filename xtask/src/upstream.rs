//! Real upstream binaries, built from the Go module proxy the way their
//! releases are built: kubelet from `k8s.io/kubernetes` (two SyncPod shapes,
//! plus a build with the field notes' shorter intervals) and containerd 2.x
//! with its runc shim.
//!
//! Everything lives under `$PODTRACE_HOME` (default `~/.podtrace`): the Go
//! module and build caches (`go/mod`, `go/cache`), one wrapper module per
//! build (`upstream/<name>`), and the binaries (`bin/`). A build is redone
//! only when its recipe (versions, flags, edits, Go version) changes: each
//! binary has a `.recipe` file next to it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::paths::home;

/// kubelet releases built and tested: 1.34 returns `(isTerminal, err)` from
/// SyncPod, 1.36 `(isTerminal, postSync, err)`.
pub const KUBELET_VERSIONS: [&str; 2] = ["v1.34.4", "v1.36.3"];
/// The release also built with the tuned intervals (the demo's pair).
pub const TUNED_KUBELET: &str = "v1.36.3";
/// containerd 2.x (cri-api v0.34: protobuf-go request layout).
pub const CONTAINERD_VERSION: &str = "v2.2.9";
/// The control plane of the one-node test cluster, built from the same
/// `k8s.io/kubernetes` release as the default and tuned kubelet (the
/// components of one release are tested together upstream; skew is not
/// what the cluster test is about).
pub const CONTROL_PLANE_VERSION: &str = TUNED_KUBELET;
/// The OpenTelemetry Collector builder and the core components of the
/// test collector (`tests/src/otelcol.rs`): the OTLP receiver, the debug
/// exporter (what arrived, in the collector's log) and the OTLP exporter
/// (forwarding to the tests' sink, which writes each span as JSON).
pub const OTELCOL_VERSION: &str = "v0.165.0";
pub const OTELCOL_COMPONENTS: [(&str, &str); 3] = [
    (
        "receivers",
        "go.opentelemetry.io/collector/receiver/otlpreceiver",
    ),
    (
        "exporters",
        "go.opentelemetry.io/collector/exporter/debugexporter",
    ),
    (
        "exporters",
        "go.opentelemetry.io/collector/exporter/otlpexporter",
    ),
];
/// Prometheus, built from its module (v0.3MM.P is release 3.MM.P): Debian
/// 12's `prometheus` 2.42 is built without the Kubernetes service
/// discovery (`kubernetes_sd_configs`: "field not found"), which the
/// cluster test and the shipped scrape config use.
pub const PROMETHEUS_MODULE_VERSION: &str = "v0.316.0";
/// The `k8s.io/kubernetes/cmd/X` programs of the cluster harness.
pub const CONTROL_PLANE: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];

/// The four compile-time constants the field notes shorten, as
/// (file in k8s.io/kubernetes, constant, upstream value, tuned value).
/// The upstream value is checked too: if a release changes it, the edit
/// would no longer mean what the field notes mean.
pub const TUNED_CONSTANTS: [(&str, &str, &str, &str); 4] = [
    (
        "pkg/kubelet/volumemanager/volume_manager.go",
        "podAttachAndMountRetryInterval",
        "300 * time.Millisecond",
        "30 * time.Millisecond",
    ),
    (
        "pkg/kubelet/volumemanager/volume_manager.go",
        "reconcilerLoopSleepPeriod",
        "100 * time.Millisecond",
        "10 * time.Millisecond",
    ),
    (
        "pkg/kubelet/volumemanager/volume_manager.go",
        "desiredStateOfWorldPopulatorLoopSleepPeriod",
        "100 * time.Millisecond",
        "10 * time.Millisecond",
    ),
    (
        "pkg/kubelet/kubelet.go",
        "genericPlegRelistPeriod",
        "time.Second * 1",
        "100 * time.Millisecond",
    ),
];

pub fn bin_dir() -> PathBuf {
    home().join("bin")
}

/// Path of a built kubelet: `bin/kubelet-v1.34.4`, `bin/kubelet-v1.36.3-tuned`.
pub fn kubelet(version: &str, tuned: bool) -> PathBuf {
    bin_dir().join(format!(
        "kubelet-{version}{}",
        if tuned { "-tuned" } else { "" }
    ))
}

/// Path of a built control-plane program: `bin/kube-apiserver-v1.36.3`.
pub fn control_plane(cmd: &str) -> PathBuf {
    bin_dir().join(format!("{cmd}-{CONTROL_PLANE_VERSION}"))
}

/// Path of the test collector: `bin/otelcol-podtrace-v0.165.0`.
pub fn otelcol() -> PathBuf {
    bin_dir().join(format!("otelcol-podtrace-{OTELCOL_VERSION}"))
}

/// Path of the Prometheus build: `bin/prometheus-v0.316.0`.
pub fn prometheus() -> PathBuf {
    bin_dir().join(format!("prometheus-{PROMETHEUS_MODULE_VERSION}"))
}

/// Directory holding `containerd`, `containerd-shim-runc-v2` and `ctr`.
pub fn containerd_dir() -> PathBuf {
    containerd_dir_of(CONTAINERD_VERSION)
}

/// The same for another release: `bin/containerd-v1.7.35/`.
pub fn containerd_dir_of(version: &str) -> PathBuf {
    bin_dir().join(format!("containerd-{version}"))
}

/// The installed Go (1.26.8 on these machines, at /usr/local/go). Not just
/// `go` from PATH: Debian's golang-go (Go 1.19, for the test workloads)
/// installs /usr/bin/go, which is too old for kubelet.
fn go_bin() -> PathBuf {
    let local = PathBuf::from("/usr/local/go/bin/go");
    if local.exists() {
        return local;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("go"))
                .find(|g| g.is_file())
        })
        .unwrap_or(local)
}

/// The Go module cache: `$PODTRACE_GOMODCACHE`, else `$PODTRACE_HOME/go/mod`.
pub fn gomodcache() -> PathBuf {
    std::env::var_os("PODTRACE_GOMODCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join("go/mod"))
}

/// The Go build cache: `$PODTRACE_GOCACHE`, else `$PODTRACE_HOME/go/cache`
/// (a machine short of disk may put it on a tmpfs).
pub fn gocache() -> PathBuf {
    std::env::var_os("PODTRACE_GOCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join("go/cache"))
}

/// Environment of every go command here: caches outside the repo, the
/// installed toolchain only (its version is part of each recipe), no
/// telemetry, no VCS stamping (the wrapper modules are not repositories).
pub fn go_cmd(dir: &Path) -> Command {
    go_env_cmd(&go_bin(), dir)
}

/// `program` with [`go_cmd`]'s environment, and the installed Go first on
/// PATH (the collector builder runs `go` itself).
fn go_env_cmd(program: &Path, dir: &Path) -> Command {
    let mut c = Command::new(program);
    let go_dir = go_bin().parent().map(Path::to_path_buf).unwrap_or_default();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(go_dir).chain(std::env::split_paths(&path)))
        .unwrap_or(path);
    c.current_dir(dir)
        .env("PATH", path)
        .env("GOMODCACHE", gomodcache())
        .env("GOCACHE", gocache())
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .env("GOFLAGS", "-buildvcs=false")
        .env("CGO_ENABLED", "0");
    c
}

/// A `tools.go` importing `module`'s commands, so that `go mod tidy`
/// keeps what they need and `go build module/cmd/X` resolves.
fn write_tools_go(dir: &Path, module: &str, cmds: &[&str]) -> Result<()> {
    let imports: String = cmds
        .iter()
        .map(|c| format!("\t_ \"{module}/cmd/{c}\"\n"))
        .collect();
    std::fs::write(
        dir.join("tools.go"),
        format!("//go:build tools\n\npackage tools\n\nimport (\n{imports})\n"),
    )?;
    Ok(())
}

/// Runs a go command; on failure the error carries its last output lines.
pub fn go(dir: &Path, args: &[&str]) -> Result<String> {
    run_tail(
        go_cmd(dir).args(args),
        &format!("go {}", args.join(" ")),
        dir,
    )
}

/// Runs `cmd`; its stdout, or an error with its last stderr lines.
fn run_tail(cmd: &mut Command, what: &str, dir: &Path) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {what} (is Go on PATH?)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(25).collect();
        bail!(
            "`{what}` in {} failed ({}):\n{}",
            dir.display(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn go_version() -> Result<String> {
    let v = go(Path::new("/"), &["env", "GOVERSION"])?;
    Ok(v.trim().to_string())
}

/// `go mod download -json MODULE@VERSION` → path of its go.mod in the cache.
pub fn module_gomod(module: &str, version: &str) -> Result<PathBuf> {
    let tmp = home().join("upstream");
    std::fs::create_dir_all(&tmp)?;
    let out = go(
        &tmp,
        &["mod", "download", "-json", &format!("{module}@{version}")],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .with_context(|| format!("parsing `go mod download -json {module}@{version}`"))?;
    if let Some(e) = v["Error"].as_str() {
        bail!("the Go module proxy has no {module}@{version}: {e}");
    }
    v["GoMod"]
        .as_str()
        .map(PathBuf::from)
        .with_context(|| format!("no GoMod for {module}@{version}"))
}

/// The first `go` / `godebug` directive lines of a go.mod.
pub fn directive(gomod: &str, word: &str) -> Option<String> {
    gomod
        .lines()
        .map(str::trim)
        .find(|l| l.split_whitespace().next() == Some(word))
        .map(str::to_string)
}

/// Staging modules of a k8s.io/kubernetes release: every
/// `k8s.io/X => ./staging/src/k8s.io/X` replace of its own go.mod. They are
/// required at the placeholder v0.0.0, which the proxy does not serve, so
/// the wrapper replaces each with the release's `v0.MINOR.PATCH`.
pub fn staging_modules(gomod: &str) -> Vec<String> {
    gomod
        .lines()
        .filter_map(|l| {
            let (lhs, rhs) = l.split_once("=>")?;
            let m = lhs.split_whitespace().next()?;
            let target = rhs.trim();
            (m.starts_with("k8s.io/") && target == format!("./staging/src/{m}"))
                .then(|| m.to_string())
        })
        .collect()
}

/// The wrapper module's go.mod for building kubelet `version`.
pub fn kubelet_wrapper_gomod(version: &str, upstream_gomod: &str) -> Result<String> {
    let staging = staging_modules(upstream_gomod);
    if staging.is_empty() {
        bail!("k8s.io/kubernetes@{version}'s go.mod lists no staging modules (./staging/src/k8s.io/...): cannot build it as a module");
    }
    let semver = version.trim_start_matches('v');
    let staging_version = format!("v0.{}", semver.split_once('.').map_or(semver, |s| s.1));
    let mut s = String::from(
        "// Generated by `cargo xtask setup` from k8s.io/kubernetes's own go.mod: one\n\
         // replace per staging module (./staging/src/k8s.io/X upstream).\n\
         module podtrace.invalid/kubelet-build\n\n",
    );
    // Keep the release's go and godebug lines: they decide GODEBUG defaults.
    for word in ["go", "godebug"] {
        if let Some(l) = directive(upstream_gomod, word) {
            s.push_str(&l);
            s.push('\n');
        }
    }
    s.push_str(&format!(
        "\nrequire k8s.io/kubernetes {version}\n\nreplace (\n"
    ));
    for m in &staging {
        s.push_str(&format!("\t{m} => {m} {staging_version}\n"));
    }
    s.push_str(")\n");
    Ok(s)
}

/// Applies TUNED_CONSTANTS to a k8s.io/kubernetes source tree. Fails, naming
/// the file and constant, if a constant is missing, defined more than once,
/// or has another upstream value.
pub fn tune_kubelet_source(tree: &Path) -> Result<()> {
    for (file, name, old, new) in TUNED_CONSTANTS {
        let path = tree.join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("tuning {name}: reading {}", path.display()))?;
        let mut hits = 0;
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            let trimmed = body.trim_start();
            let defines = trimmed
                .strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if !defines {
                out.push_str(line);
                continue;
            }
            hits += 1;
            let (lhs, rhs) = body.split_once('=').context("checked above")?;
            // Drop a trailing comment before comparing the value.
            let value = rhs.split("//").next().unwrap_or(rhs).trim();
            if value != old {
                bail!(
                    "tuning {name} in {}: upstream value is `{value}`, expected `{old}`",
                    path.display()
                );
            }
            out.push_str(&format!("{lhs}= {new} // podtrace tuned (was {old})"));
            if line.ends_with('\n') {
                out.push('\n');
            }
        }
        if hits != 1 {
            bail!(
                "tuning {name}: found {hits} definitions in {} (expected exactly one)",
                path.display()
            );
        }
        // Vendored files are read-only copies of the module cache's.
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Release-style ldflags: the version stamped where `kubelet --version`
/// and the logs read it, symbols and DWARF stripped.
fn kubelet_ldflags(version: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let v = version.trim_start_matches('v');
    let mut it = v.split('.');
    let major = it.next().unwrap_or("1");
    let minor = it.next().unwrap_or("0");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        for (k, val) in [
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        ] {
            parts.push(format!("-X {pkg}.{k}={val}"));
        }
    }
    parts.push("-s -w".into());
    parts.join(" ")
}

/// What a binary was built from; rebuilt when it changes.
/// `path` + `.suffix` (not `with_extension`: `kubelet-v1.36.3` has dots).
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn recipe_ok(bin: &Path, recipe: &str) -> bool {
    bin.exists() && std::fs::read_to_string(suffixed(bin, ".recipe")).is_ok_and(|r| r == recipe)
}

fn write_recipe(bin: &Path, recipe: &str) -> Result<()> {
    std::fs::write(suffixed(bin, ".recipe"), recipe)
        .with_context(|| format!("writing {}.recipe", bin.display()))
}

fn progress(what: &str, msg: &str) {
    eprintln!("    {what}: {msg}");
}

fn done(what: &str, t: Instant) {
    eprintln!("    {what}: done in {:.0} s", t.elapsed().as_secs_f64());
}

/// The recipe of a `k8s.io/kubernetes` program: what it was built from.
fn k8s_recipe(version: &str, gover: &str, ldflags: &str, tuning: &str) -> String {
    format!(
        "k8s.io/kubernetes {version}\n{gover}\nCGO_ENABLED=0 -trimpath -tags selinux,notest\n{ldflags}\ntuning {tuning}\n"
    )
}

/// Writes the wrapper module for `k8s.io/kubernetes@version` into `dir`
/// importing `cmds` (`k8s.io/kubernetes/cmd/X`) and runs `go mod tidy`.
pub fn k8s_wrapper(name: &str, dir: &Path, version: &str, cmds: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    progress(
        name,
        &format!("fetching k8s.io/kubernetes@{version} from the Go module proxy"),
    );
    let upstream = module_gomod("k8s.io/kubernetes", version)?;
    let upstream = std::fs::read_to_string(&upstream)
        .with_context(|| format!("reading {}", upstream.display()))?;
    std::fs::write(
        dir.join("go.mod"),
        kubelet_wrapper_gomod(version, &upstream)?,
    )?;
    write_tools_go(dir, "k8s.io/kubernetes", cmds)?;
    progress(name, "go mod tidy (downloads the dependencies)");
    go(dir, &["mod", "tidy"])?;
    Ok(())
}

/// Builds one kubelet (stripped, like a release) unless up to date; the
/// build's seconds when it built one.
pub fn build_kubelet(version: &str, tuned: bool, gover: &str) -> Result<Option<f64>> {
    let bin = kubelet(version, tuned);
    let name = bin
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("kubelet")
        .to_string();
    let ldflags = kubelet_ldflags(version);
    let tuning = if tuned {
        format!("{TUNED_CONSTANTS:?}")
    } else {
        "none".into()
    };
    let recipe = k8s_recipe(version, gover, &ldflags, &tuning);
    if recipe_ok(&bin, &recipe) {
        progress(&name, &format!("present ({})", bin.display()));
        return Ok(None);
    }
    let t = Instant::now();
    let dir = home().join("upstream").join(&name);
    k8s_wrapper(&name, &dir, version, &["kubelet"])?;
    let mut args = vec![
        "build",
        "-trimpath",
        "-tags",
        "selinux,notest",
        "-ldflags",
        &ldflags,
    ];
    if tuned {
        // The way kubelet is patched by hand: vendor the source, edit the
        // constants, build from the vendored tree.
        progress(
            &name,
            "go mod vendor, then editing the four interval constants",
        );
        let _ = std::fs::remove_dir_all(dir.join("vendor"));
        go(&dir, &["mod", "vendor"])?;
        tune_kubelet_source(&dir.join("vendor/k8s.io/kubernetes"))?;
        args.push("-mod=vendor");
    }
    let out = suffixed(&bin, ".tmp");
    let out_s = out
        .to_str()
        .context("PODTRACE_HOME is not UTF-8")?
        .to_string();
    args.extend(["-o", &out_s, "k8s.io/kubernetes/cmd/kubelet"]);
    progress(
        &name,
        &format!(
            "go build (cold: several minutes on 2 cores; cached in {})",
            gocache().display()
        ),
    );
    go(&dir, &args)?;
    std::fs::rename(&out, &bin)?;
    write_recipe(&bin, &recipe)?;
    done(&name, t);
    Ok(Some(t.elapsed().as_secs_f64()))
}

/// Builds kube-apiserver, kube-controller-manager, kube-scheduler and
/// kubectl of [`CONTROL_PLANE_VERSION`] (stripped, release ldflags) from
/// one wrapper module, unless up to date. They share kubelet's build cache:
/// most of their packages (client-go, apimachinery, the API types) are
/// compiled already.
fn build_control_plane(gover: &str) -> Result<()> {
    let version = CONTROL_PLANE_VERSION;
    let ldflags = kubelet_ldflags(version);
    let recipe = k8s_recipe(version, gover, &ldflags, "none");
    let stale: Vec<&str> = CONTROL_PLANE
        .iter()
        .copied()
        .filter(|c| !recipe_ok(&control_plane(c), &recipe))
        .collect();
    let name = format!("control-plane-{version}");
    if stale.is_empty() {
        progress(
            &name,
            &format!(
                "present ({} in {})",
                CONTROL_PLANE.join(", "),
                bin_dir().display()
            ),
        );
        return Ok(());
    }
    let t = Instant::now();
    let dir = home().join("upstream").join(&name);
    k8s_wrapper(&name, &dir, version, &CONTROL_PLANE)?;
    for c in stale {
        let tc = Instant::now();
        let bin = control_plane(c);
        // A name of our own: another checkout may build the same binary.
        let out = suffixed(&bin, &format!(".tmp{}", std::process::id()));
        let out_s = out
            .to_str()
            .context("PODTRACE_HOME is not UTF-8")?
            .to_string();
        progress(&name, &format!("go build {c} (cold: minutes on 2 cores)"));
        go(
            &dir,
            &[
                "build",
                "-trimpath",
                "-tags",
                "selinux,notest",
                "-ldflags",
                &ldflags,
                "-o",
                &out_s,
                &format!("k8s.io/kubernetes/cmd/{c}"),
            ],
        )?;
        std::fs::rename(&out, &bin)?;
        write_recipe(&bin, &recipe)?;
        done(c, tc);
    }
    done(&name, t);
    Ok(())
}

/// Builds containerd, its runc shim and ctr (stripped) unless up to date:
/// `module` is `github.com/containerd/containerd/v2` for 2.x,
/// `github.com/containerd/containerd` for 1.x. The build's seconds when it
/// built them.
pub fn build_containerd(module: &str, version: &str, gover: &str) -> Result<Option<f64>> {
    let dir_out = containerd_dir_of(version);
    let stamp = dir_out.join("containerd");
    let ldflags = format!(
        "-X {module}/version.Version={version} -X {module}/version.Package=github.com/containerd/containerd -s -w"
    );
    // btrfs/devmapper/zfs snapshotters need cgo or are unused here.
    let tags = "no_btrfs,no_devmapper,no_zfs";
    let recipe =
        format!("{module} {version}\n{gover}\nCGO_ENABLED=0 -trimpath -tags {tags}\n{ldflags}\n");
    let name = format!("containerd-{version}");
    let cmds = ["containerd", "containerd-shim-runc-v2", "ctr"];
    if recipe_ok(&stamp, &recipe) && cmds.iter().all(|c| dir_out.join(c).exists()) {
        progress(&name, &format!("present ({})", dir_out.display()));
        return Ok(None);
    }
    let t = Instant::now();
    let dir = home().join("upstream").join(&name);
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&dir_out)?;
    progress(
        &name,
        &format!("fetching {module}@{version} from the Go module proxy"),
    );
    let upstream = module_gomod(module, version)?;
    let upstream = std::fs::read_to_string(&upstream)?;
    let goline = directive(&upstream, "go").unwrap_or_else(|| "go 1.25.0".into());
    std::fs::write(
        dir.join("go.mod"),
        format!(
            "module podtrace.invalid/containerd-build\n\n{goline}\n\nrequire {module} {version}\n"
        ),
    )?;
    write_tools_go(&dir, module, &cmds)?;
    progress(&name, "go mod tidy");
    go(&dir, &["mod", "tidy"])?;
    for c in cmds {
        progress(&name, &format!("go build {c}"));
        let out = dir_out.join(format!("{c}.tmp"));
        let out_s = out.to_str().context("PODTRACE_HOME is not UTF-8")?;
        go(
            &dir,
            &[
                "build",
                "-trimpath",
                "-tags",
                tags,
                "-ldflags",
                &ldflags,
                "-o",
                out_s,
                &format!("{module}/cmd/{c}"),
            ],
        )?;
        std::fs::rename(&out, dir_out.join(c))?;
    }
    write_recipe(&stamp, &recipe)?;
    done(&name, t);
    Ok(Some(t.elapsed().as_secs_f64()))
}

/// The collector builder's manifest: [`OTELCOL_COMPONENTS`] at
/// [`OTELCOL_VERSION`], the sources and binary in `output`.
pub fn otelcol_manifest(output: &Path) -> String {
    let v = OTELCOL_VERSION;
    let mut m = format!(
        "dist:\n  name: otelcol-podtrace\n  description: podtrace's test collector\n  output_path: {}\n",
        output.display()
    );
    for kind in ["receivers", "exporters"] {
        m.push_str(&format!("{kind}:\n"));
        for (_, module) in OTELCOL_COMPONENTS.iter().filter(|(k, _)| *k == kind) {
            m.push_str(&format!("  - gomod: {module} {v}\n"));
        }
    }
    m
}

/// Installs the collector builder (`go install …/cmd/builder`, Go >= 1.26)
/// and builds the test collector with it, unless up to date.
fn build_otelcol(gover: &str) -> Result<()> {
    let bin = otelcol();
    let name = format!("otelcol-podtrace-{OTELCOL_VERSION}");
    let dir = home().join("upstream").join(&name);
    let manifest = otelcol_manifest(&dir.join("build"));
    let recipe = format!(
        "go.opentelemetry.io/collector/cmd/builder {OTELCOL_VERSION}\n{gover}\nCGO_ENABLED=0\n{manifest}"
    );
    if recipe_ok(&bin, &recipe) {
        progress(&name, &format!("present ({})", bin.display()));
        return Ok(());
    }
    let t = Instant::now();
    std::fs::create_dir_all(dir.join("bin"))?;
    progress(
        &name,
        &format!(
            "go install go.opentelemetry.io/collector/cmd/builder@{OTELCOL_VERSION} (about 20-40 s)"
        ),
    );
    let builder_pkg = format!("go.opentelemetry.io/collector/cmd/builder@{OTELCOL_VERSION}");
    run_tail(
        go_cmd(&dir)
            .env("GOBIN", dir.join("bin"))
            .args(["install", &builder_pkg]),
        &format!("go install {builder_pkg}"),
        &dir,
    )?;
    std::fs::write(dir.join("manifest.yaml"), &manifest)?;
    progress(
        &name,
        "building the collector: otlpreceiver, debugexporter, otlpexporter (about a minute)",
    );
    let _ = std::fs::remove_dir_all(dir.join("build"));
    run_tail(
        go_env_cmd(&dir.join("bin/builder"), &dir).arg("--config=manifest.yaml"),
        "builder --config=manifest.yaml",
        &dir,
    )?;
    let tmp = suffixed(&bin, &format!(".tmp{}", std::process::id()));
    std::fs::rename(dir.join("build/otelcol-podtrace"), &tmp).with_context(|| {
        format!(
            "the builder wrote no {}",
            dir.join("build/otelcol-podtrace").display()
        )
    })?;
    std::fs::rename(&tmp, &bin)?;
    write_recipe(&bin, &recipe)?;
    done(&name, t);
    Ok(())
}

/// Builds Prometheus (`go install …/cmd/prometheus`, without the web UI's
/// assets: the HTTP API is what the tests use; of the service discoveries
/// only Kubernetes and the built-in file/static/HTTP ones, through
/// upstream's `remove_all_sd` / `enable_*_sd` build tags: no cloud SDKs to
/// download and compile) unless up to date.
fn build_prometheus(gover: &str) -> Result<()> {
    let bin = prometheus();
    let name = format!("prometheus-{PROMETHEUS_MODULE_VERSION}");
    let pkg =
        format!("github.com/prometheus/prometheus/cmd/prometheus@{PROMETHEUS_MODULE_VERSION}");
    let tags = "remove_all_sd,enable_kubernetes_sd";
    let recipe = format!("{pkg}\n{gover}\nCGO_ENABLED=0 -tags {tags} -ldflags=-s -w\n");
    if recipe_ok(&bin, &recipe) {
        progress(&name, &format!("present ({})", bin.display()));
        return Ok(());
    }
    let t = Instant::now();
    let dir = home().join("upstream").join(&name);
    std::fs::create_dir_all(&dir)?;
    progress(
        &name,
        &format!(
            "go install {pkg} (Debian's has no Kubernetes discovery; cold: minutes on 2 cores)"
        ),
    );
    run_tail(
        go_cmd(&dir).env("GOBIN", dir.join("bin")).args([
            "install",
            "-tags",
            tags,
            "-ldflags=-s -w",
            &pkg,
        ]),
        &format!("go install -tags {tags} {pkg}"),
        &dir,
    )?;
    let tmp = suffixed(&bin, &format!(".tmp{}", std::process::id()));
    std::fs::rename(dir.join("bin/prometheus"), &tmp)?;
    std::fs::rename(&tmp, &bin)?;
    write_recipe(&bin, &recipe)?;
    done(&name, t);
    Ok(())
}

/// Builds every upstream binary the demo and the tests use.
pub fn run() -> Result<()> {
    let gover = go_version()?;
    progress(
        "upstream builds",
        &format!(
            "{gover}; caches in {} (cold: ~{} GB, tens of minutes on 2 cores)",
            home().join("go").display(),
            6
        ),
    );
    for v in KUBELET_VERSIONS {
        build_kubelet(v, false, &gover)?;
    }
    build_kubelet(TUNED_KUBELET, true, &gover)?;
    build_containerd(
        "github.com/containerd/containerd/v2",
        CONTAINERD_VERSION,
        &gover,
    )?;
    build_control_plane(&gover)?;
    build_otelcol(&gover)?;
    build_prometheus(&gover)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOMOD: &str = "module k8s.io/kubernetes\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/cri-api => ./staging/src/k8s.io/cri-api\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n";

    #[test]
    fn collector_manifest_lists_each_component_at_the_release() {
        let m = otelcol_manifest(Path::new("/x/build"));
        assert!(m.contains("  output_path: /x/build\n"), "{m}");
        let receivers = m.find("receivers:").expect("receivers");
        let exporters = m.find("exporters:").expect("exporters");
        for (kind, module) in OTELCOL_COMPONENTS {
            let at = m
                .find(&format!("  - gomod: {module} {OTELCOL_VERSION}\n"))
                .unwrap_or_else(|| panic!("{module} missing: {m}"));
            let section = if at > exporters {
                "exporters"
            } else {
                "receivers"
            };
            assert!(at > receivers, "{m}");
            assert_eq!(section, kind, "{module} under {section}: {m}");
        }
    }

    #[test]
    fn wrapper_replaces_every_staging_module() {
        let m = kubelet_wrapper_gomod("v1.34.4", GOMOD).expect("wrapper");
        assert!(m.contains("\ngo 1.24.0\n"), "{m}");
        assert!(m.contains("godebug default=go1.24\n"), "{m}");
        assert!(m.contains("require k8s.io/kubernetes v1.34.4\n"), "{m}");
        assert!(m.contains("\tk8s.io/api => k8s.io/api v0.34.4\n"), "{m}");
        assert!(
            m.contains("\tk8s.io/cri-api => k8s.io/cri-api v0.34.4\n"),
            "{m}"
        );
        assert!(!m.contains("github.com/x/y"), "{m}");
    }

    #[test]
    fn tuning_edits_each_constant_once_and_fails_loudly() {
        let dir = std::env::temp_dir().join(format!("xtask-tune-{}", std::process::id()));
        let vm = dir.join("pkg/kubelet/volumemanager/volume_manager.go");
        let kl = dir.join("pkg/kubelet/kubelet.go");
        std::fs::create_dir_all(vm.parent().expect("parent")).expect("mkdir");
        let vm_src = "const (\n\treconcilerLoopSleepPeriod = 100 * time.Millisecond\n\n\tdesiredStateOfWorldPopulatorLoopSleepPeriod = 100 * time.Millisecond\n\tpodAttachAndMountRetryInterval = 300 * time.Millisecond\n\tpodAttachAndMountTimeout = 2*time.Minute + 3*time.Second\n)\n";
        std::fs::write(&vm, vm_src).expect("write");
        std::fs::write(
            &kl,
            "const (\n\tgenericPlegRelistPeriod    = time.Second * 1\n)\n",
        )
        .expect("write");
        tune_kubelet_source(&dir).expect("tune");
        let v = std::fs::read_to_string(&vm).expect("read");
        assert!(
            v.contains("reconcilerLoopSleepPeriod = 10 * time.Millisecond"),
            "{v}"
        );
        assert!(
            v.contains("podAttachAndMountRetryInterval = 30 * time.Millisecond"),
            "{v}"
        );
        assert!(
            v.contains("podAttachAndMountTimeout = 2*time.Minute"),
            "{v}"
        );
        let k = std::fs::read_to_string(&kl).expect("read");
        assert!(
            k.contains("genericPlegRelistPeriod    = 100 * time.Millisecond"),
            "{k}"
        );
        // Already tuned: the upstream value no longer matches.
        let e = tune_kubelet_source(&dir).expect_err("second tune must fail");
        assert!(
            format!("{e:#}").contains("expected `300 * time.Millisecond`"),
            "{e:#}"
        );
        // Missing constant.
        std::fs::write(&kl, "const ()\n").expect("write");
        std::fs::write(&vm, vm_src).expect("write");
        let e = tune_kubelet_source(&dir).expect_err("missing constant must fail");
        assert!(
            format!("{e:#}").contains("genericPlegRelistPeriod: found 0"),
            "{e:#}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
