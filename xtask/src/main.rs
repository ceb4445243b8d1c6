//! `cargo xtask`: everything that is not a plain cargo build.
//!
//! - `setup`: install what podtrace needs, idempotently
//! - `build`: the tracer (with its eBPF object) and the Go test workloads
//! - `demo`:  record the real kubelet, default vs tuned build, and report
//!   (`--cluster`: in a one-node cluster, Deployment pods with six volume kinds)
//! - `test`:  the whole suite (unit, real-eBPF end-to-end, Go tests, lints)
//! - `bench`: probe cost per hit vs bpftrace, sustained event rate, start and
//!   stop times vs bpftrace, discovery under load
//! - `image`: the podtrace OCI image (no Docker), optionally pushed
//! - `fuzz`:  run the cargo-fuzz targets (fuzz/) for a while
//! - `matrix`: build kubelet 1.30-1.37 and containerd 1.7-2.4 from the Go
//!   module proxy, check each (probes, a short node run), write
//!   docs/compatibility.md; `--fixtures` writes the catalogue's fixtures

mod bench;
mod demo;
mod fuzz;
mod image;
mod lint;
mod matrix;
mod paths;
mod setup;
mod soak;
mod startstop;
mod upstream;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "podtrace's set-up, build, demo, test and bench tasks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install rust-src, bpf-linker, Go 1.19 and Go 1.27, bpftrace, containerd,
    /// and build the real kubelets and containerd 2.x (idempotent).
    Setup,
    /// Build podtrace (release) and the Go workloads into target/.
    Build,
    /// Record a real kubelet (standalone, static pods, on containerd 2.x)
    /// built with default and with tuned intervals, and print both reports
    /// and the comparison.
    Demo {
        /// Pods per run: enough for compare to call a 10x change even with a
        /// third of one run's pods off to the side, and too few for noise to
        /// pass the 5 % threshold (docs/compare.md, "How many pods").
        #[arg(long, default_value_t = 30)]
        pods: u32,
        /// Record the kubelet-shaped test workload instead of the real
        /// kubelet (fast: no containers, no node).
        #[arg(long)]
        workload: bool,
        /// interleaved: one recording while the default and tuned builds
        /// take turns at kubelet's path in ABBA blocks (drift between runs
        /// cancels); sequential: default, then tuned, two recordings.
        #[arg(long, value_enum, default_value = "interleaved")]
        design: demo::Design,
        /// A one-node cluster instead (etcd, API server, controller
        /// manager, scheduler, kubelet registered on containerd): a
        /// Deployment of --pods pods with six volume kinds, per-pod tables
        /// with each volume's mount time, default vs tuned kubelet.
        #[arg(long, conflicts_with = "workload")]
        cluster: bool,
    },
    /// The layout lint alone: import circles between a crate's files
    /// (default: tracer/src, xtask/src and tests/src).
    Lint {
        /// Crate src/ directories to check.
        dirs: Vec<PathBuf>,
    },
    /// Run the whole test suite (needs root: it loads eBPF programs).
    Test {
        /// Skip cargo fmt / clippy.
        #[arg(long)]
        no_lint: bool,
        /// Passed to cargo test as a test-name filter.
        filter: Option<String>,
    },
    /// Measure probe cost per hit (prologue jump, function start, RET) against
    /// bpftrace, and the sustained event rate; start to attached and SIGINT
    /// to exit on the real kubelet and containerd (uprobe_multi, per-site
    /// links, bpftrace at the same points); discovery with 30 unrelated Go
    /// programs starting while pods do; the collector soak
    /// (`record --metrics` at kubelet-like rates: RSS and CPU); then the
    /// cost of reading a one-hour recording of a busy node (events/s, peak
    /// memory).
    Bench {
        /// Only the reading bench (report and export of a synthetic
        /// one-hour recording): needs no eBPF, Go toolchain or root.
        #[arg(long)]
        read_only: bool,
    },
    /// Only the collector soak that `bench` runs: `record --metrics`
    /// at kubelet-like event rates, its RSS and CPU (run `cargo xtask
    /// build` first).
    Soak,
    /// Build podtrace's OCI image into target/image/podtrace (an OCI
    /// layout; no Docker needed) and optionally push it.
    Image {
        /// Push to this registry (host:port, plain HTTP) as
        /// REGISTRY/podtrace:VERSION with skopeo.
        #[arg(long, value_name = "REGISTRY")]
        push: Option<String>,
    },
    /// Fuzz the readers (Go binaries, pclntab, inline trees, trace files)
    /// with cargo-fuzz, seeded from the real binaries and traces.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only these targets (default: all).
        targets: Vec<String>,
        /// Skip set-up and the release build (they ran already).
        #[arg(long)]
        no_build: bool,
        /// Start from the seeds in an emptied corpus, as `test` does,
        /// instead of growing target/fuzz-corpus.
        #[arg(long)]
        fresh: bool,
    },
    /// The version matrix: build every kubelet minor 1.30-1.37 (newest patch
    /// the Go module proxy resolves) and containerd 1.7/2.2/2.4 release-style
    /// into ~/.podtrace/bin, one at a time; `podtrace probes` on each; a
    /// short node check per row (4 static pods with volumes under `podtrace
    /// record`); print the table and write docs/compatibility.md. Not part
    /// of `test`: about a dozen cold Go builds.
    Matrix {
        /// Only these rows (`kubelet-1.33`, `containerd-1.7`, …).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Build only.
        #[arg(long)]
        build_only: bool,
        /// No node checks (builds, probes, table).
        #[arg(long)]
        no_node: bool,
        /// Write tracer/tests/fixtures/versions/ from the built binaries
        /// (what the catalogue needs of each version, not the binaries).
        #[arg(long)]
        fixtures: bool,
    },
    /// One node check of the matrix (run by `matrix` under the e2e lock):
    /// PODTRACE_KUBELET on PODTRACE_CONTAINERD.
    #[command(hide = true)]
    MatrixRow,
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Setup => setup::run(),
        Cmd::Build => setup::run().and_then(|_| build()),
        Cmd::Demo {
            pods,
            workload,
            design,
            cluster,
        } => setup::run().and_then(|_| build()).and_then(|_| {
            if cluster {
                demo::run_cluster(pods)
            } else {
                demo::run(pods, workload, design)
            }
        }),
        Cmd::Lint { dirs } => lint::check(&if dirs.is_empty() { linted() } else { dirs }),
        Cmd::Test { no_lint, filter } => setup::run()
            .and_then(|_| build())
            .and_then(|_| image::build(&podtrace_bin()))
            .and_then(|_| test(no_lint, filter.as_deref())),
        Cmd::Bench { read_only: true } => bench::read(),
        Cmd::Bench { read_only: false } => setup::run()
            .and_then(|_| build())
            .and_then(|_| bench::run())
            .and_then(|_| startstop::attach_detach())
            .and_then(|_| startstop::discovery_load(&root().join("target/bench/bench")))
            .and_then(|_| soak::run())
            .and_then(|_| bench::read()),
        Cmd::Soak => soak::run(),
        Cmd::Matrix {
            only,
            build_only,
            no_node,
            fixtures,
        } => matrix::run(&matrix::Opts {
            only,
            build_only,
            no_node,
            fixtures,
        }),
        Cmd::MatrixRow => matrix::row(),
        Cmd::Image { push } => setup::run()
            .and_then(|_| build())
            .and_then(|_| image::build(&podtrace_bin()))
            .and_then(|b| match push {
                Some(reg) => image::push(&b.layout, &reg).map(|r| eprintln!("    pushed {r}")),
                None => Ok(()),
            }),
        Cmd::Fuzz {
            seconds,
            targets,
            no_build,
            fresh,
        } => (if no_build {
            Ok(())
        } else {
            setup::run().and_then(|_| build())
        })
        .and_then(|_| {
            let all: Vec<&str> = if targets.is_empty() {
                fuzz::TARGETS.to_vec()
            } else {
                targets.iter().map(String::as_str).collect()
            };
            fuzz::run(&all, std::time::Duration::from_secs(seconds), !fresh)
        }),
    };
    if let Err(e) = res {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The crates' src/ trees the layout lint checks by default.
fn linted() -> Vec<PathBuf> {
    ["tracer/src", "xtask/src", "tests/src"]
        .iter()
        .map(|d| root().join(d))
        .collect()
}

pub fn step(msg: &str) {
    eprintln!("==> {msg}");
}

/// Runs a command, failing with its command line if it fails.
pub fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn podtrace_bin() -> PathBuf {
    root().join("target/release/podtrace")
}

pub fn workload_dir() -> PathBuf {
    root().join("target/workload")
}

fn build() -> Result<()> {
    step("building podtrace (release, with its eBPF object), the CRI test client and the OTLP test sink");
    sh(Command::new("cargo").current_dir(root()).args([
        "build",
        "--release",
        "-p",
        "podtrace",
        "-p",
        "cri-client",
        "-p",
        "otlp-sink",
    ]))?;
    step("building the Go workloads (Go 1.19, Go 1.19 PIE, Go 1.27; Go 1.26 with kubelet 1.36's shapes; stripped)");
    sh(Command::new("bash")
        .arg(root().join("tests/workload/build.sh"))
        .arg(workload_dir())
        .env("GO119", paths::go119())
        .env("GO127", paths::go127())
        .env("GO126", paths::go126()))?;
    Ok(())
}

fn test(no_lint: bool, filter: Option<&str>) -> Result<()> {
    let r = root();
    if !no_lint {
        step("cargo fmt --check");
        sh(Command::new("cargo")
            .current_dir(&r)
            .args(["fmt", "--all", "--", "--check"]))?;
        step("import circles (tracer/src, xtask/src, tests/src)");
        lint::check(&linted())?;
        step("cargo clippy -D warnings");
        sh(Command::new("cargo").current_dir(&r).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    step("Go workload unit tests (Go 1.19 and Go 1.27; kubelet 1.31-1.35 and 1.36 shapes)");
    for go in [paths::go119(), paths::go127()] {
        for tags in ["", "kubelet136"] {
            sh(Command::new(&go)
                .current_dir(r.join("tests/workload"))
                .args(["test", "-tags", tags, "./..."])
                .envs(paths::go_env()))?;
        }
    }
    step("cargo test (unit and real-eBPF end-to-end tests; serial: they share uprobes and CPUs)");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&r)
        .args(["test", "--release", "--workspace", "--no-fail-fast"])
        .env("PODTRACE_BIN", podtrace_bin())
        .env("PODTRACE_WORKLOAD_DIR", workload_dir())
        .env("PODTRACE_IMAGE", image::layout_dir())
        .env("GO119", paths::go119())
        .env("GO127", paths::go127())
        .arg("--");
    if let Some(f) = filter {
        cmd.arg(f);
    }
    cmd.arg("--test-threads=1");
    sh(&mut cmd)?;
    if filter.is_none() {
        // Every run: each target briefly (a minute for all), from the seeds
        // and past crashes. Longer, growing a corpus: `cargo xtask fuzz`.
        fuzz::run(fuzz::TARGETS, std::time::Duration::from_secs(15), false)?;
    }
    Ok(())
}
