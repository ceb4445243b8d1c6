//! Builds the eBPF object (tracer-ebpf) for bpfel-unknown-none and leaves it in
//! OUT_DIR for `include_bytes!`.
//!
//! Done here rather than only in xtask so that a plain `cargo build` of the
//! tracer is complete. Needs `rust-src` and `bpf-linker`: `cargo xtask setup`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

fn main() -> Result<()> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .context("tracer crate has no parent directory")?;
    let ebpf_dir = root.join("tracer-ebpf");
    let obj = out_dir.join("podtrace.bpf.o");

    println!("cargo:rerun-if-env-changed=PODTRACE_SKIP_EBPF");
    for p in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", ebpf_dir.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("common/src").display()
    );

    // Without the `ebpf` feature (xtask, the test harness: library only) or
    // with PODTRACE_SKIP_EBPF (work on userspace parts), the object is empty
    // and the binary refuses to load it.
    if env::var_os("CARGO_FEATURE_EBPF").is_none() || env::var_os("PODTRACE_SKIP_EBPF").is_some() {
        std::fs::write(&obj, b"")?;
        return Ok(());
    }
    build_ebpf(&ebpf_dir, &out_dir.join("ebpf-target"))?;
    let built = out_dir.join("ebpf-target/bpfel-unknown-none/release/podtrace");
    std::fs::copy(&built, &obj)
        .with_context(|| format!("copying {} to {}", built.display(), obj.display()))?;
    Ok(())
}

/// The bpf-linker for this toolchain's LLVM: where `cargo xtask setup`
/// installs it ($PODTRACE_HOME/bpf-linker-llvm<major>-rust-<release>, see
/// xtask/src/setup.rs), else $PODTRACE_BPF_LINKER, else the one on PATH.
/// One built for another LLVM fails on this one's bitcode ("Invalid record").
fn bpf_linker() -> Result<PathBuf> {
    println!("cargo:rerun-if-env-changed=PODTRACE_BPF_LINKER");
    println!("cargo:rerun-if-env-changed=PODTRACE_HOME");
    if let Some(p) = env::var_os("PODTRACE_BPF_LINKER") {
        return Ok(PathBuf::from(p));
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("running {rustc} -vV"))?;
    let vv = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let release = field("release:");
    let llvm = field("LLVM version:");
    let major = llvm.split('.').next().unwrap_or_default();
    let home = env::var_os("PODTRACE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".podtrace")
        });
    let ours = home.join(format!(
        "bpf-linker-llvm{major}-rust-{release}/bin/bpf-linker"
    ));
    println!("cargo:rerun-if-changed={}", ours.display());
    Ok(if ours.exists() {
        ours
    } else {
        PathBuf::from("bpf-linker")
    })
}

fn build_ebpf(dir: &Path, target_dir: &Path) -> Result<()> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let linker = bpf_linker()?;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--target-dir",
        ])
        .arg(target_dir)
        // The host build's wrappers and flags must not leak into the BPF build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "--cfg",
                "bpf_target_arch=\"x86_64\"",
                "-Cdebuginfo=2",
                "-Clink-arg=--btf",
                &format!("-Clinker={}", linker.display()),
            ]
            .join("\x1f"),
        );
    let status = cmd
        .status()
        .context("running cargo for the eBPF crate (is cargo on PATH?)")?;
    if !status.success() {
        bail!(
            "building tracer-ebpf failed ({status}); it needs the rust-src component and \
             a bpf-linker for this toolchain's LLVM ({} was used): run `cargo xtask setup`",
            linker.display()
        );
    }
    Ok(())
}
