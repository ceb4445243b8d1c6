//! `cargo xtask …` starts here, built by rustup's default toolchain: it
//! installs the pinned toolchain if it is missing (see the crate's lib.rs
//! for why this is not left to `rust-toolchain.toml`), then replaces itself
//! with `cargo run -p xtask` under that toolchain, so Ctrl-C and the exit
//! status belong to xtask.

use std::{
    os::unix::process::CommandExt as _,
    process::{Command, ExitCode, Stdio},
};

use xtask_boot::{pinned_toolchain, COMPONENTS};

fn installed(tc: &str) -> bool {
    Command::new("rustup")
        .args(["run", tc, "rustc", "--version"])
        // Only ask: an install, if needed, is ours, with a progress line.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() -> ExitCode {
    let Some(tc) = pinned_toolchain() else {
        eprintln!(
            "xtask: error: Cargo.toml has no [workspace.metadata.podtrace] toolchain = \"…\""
        );
        return ExitCode::FAILURE;
    };
    if !installed(tc) {
        eprintln!(
            "==> rust toolchain {tc}: installing (rustup toolchain install {tc} --profile minimal --component {COMPONENTS})"
        );
        let status = Command::new("rustup")
            .args(["toolchain", "install", tc, "--profile", "minimal"])
            .args(["--component", COMPONENTS])
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("xtask: error: rustup toolchain install {tc}: {s}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("xtask: error: running rustup (is it on PATH?): {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // RUSTUP_TOOLCHAIN reaches every cargo and rustc xtask starts; CARGO
    // would point them at the default toolchain's cargo.
    let err = Command::new("rustup")
        .args([
            "run",
            tc,
            "cargo",
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
        ])
        .args(std::env::args_os().skip(1))
        .env("RUSTUP_TOOLCHAIN", tc)
        .env_remove("CARGO")
        .exec();
    eprintln!("xtask: error: running rustup run {tc} cargo: {err}");
    ExitCode::FAILURE
}
