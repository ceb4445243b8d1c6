//! Fuzzing podtrace's readers with cargo-fuzz (libFuzzer): the targets in
//! `fuzz/` (a crate of its own, outside the workspace), seeds made from the
//! real binaries and traces, and timed runs.
//!
//! cargo-fuzz needs nightly flags (`-Cpasses=sancov-module` is stable, but
//! cargo-fuzz also passes `-Z` options): the project's stable toolchain
//! takes them with `RUSTC_BOOTSTRAP=1`, so no second toolchain is needed.
//! No sanitizer: the readers are safe Rust, so AddressSanitizer would only
//! halve the runs per second; overflow checks and debug assertions stay on.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{root, sh, step};

/// The fuzz targets (fuzz/fuzz_targets/*.rs).
pub const TARGETS: &[&str] = &["go_binary", "pclntab", "inline_tree", "trace_reader"];

/// Inputs up to this size: the small real Go binaries used as seeds are
/// 2–4 MiB (libFuzzer's default cap of 1 MiB would cut them).
const MAX_LEN: usize = 6 << 20;

fn cargo_fuzz() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root())
        .arg("fuzz")
        .env("RUSTC_BOOTSTRAP", "1")
        // The targets use the readers only: no eBPF object needed.
        .env("PODTRACE_SKIP_EBPF", "1");
    c
}

/// Builds every target (once per code change; cargo keeps fuzz/target).
pub fn build() -> Result<()> {
    step("building the fuzz targets (cargo fuzz build, no sanitizer, debug assertions on)");
    sh(cargo_fuzz().args(["build", "-s", "none"]))
}

fn seeds_dir(target: &str) -> PathBuf {
    root().join("target/fuzz-seeds").join(target)
}

fn corpus_dir(target: &str) -> PathBuf {
    root().join("target/fuzz-corpus").join(target)
}

/// Runs each target for `per_target`; fails on any crash, panic, timeout
/// or OOM (libFuzzer leaves the input under fuzz/artifacts/TARGET/). With
/// `keep_corpus` the runs start from the seeds and the corpus earlier runs
/// grew, and grow it further (target/fuzz-corpus/TARGET: gigabytes for
/// go_binary, whose inputs are whole binaries); without, from the seeds
/// and the regressions only, into an emptied directory, so that the start
/// (libFuzzer runs every input first, whatever the time limit) stays short.
pub fn run(targets: &[&str], per_target: Duration, keep_corpus: bool) -> Result<()> {
    build()?;
    make_seeds()?;
    for t in targets {
        let corpus = if keep_corpus {
            corpus_dir(t)
        } else {
            let d = root().join("target/fuzz-corpus-brief").join(t);
            let _ = std::fs::remove_dir_all(&d);
            d
        };
        std::fs::create_dir_all(&corpus)?;
        step(&format!("fuzzing {t} for {}s", per_target.as_secs()));
        let started = Instant::now();
        let mut cmd = cargo_fuzz();
        cmd.args(["run", "-s", "none", t])
            .arg(&corpus)
            .arg(seeds_dir(t));
        // Inputs that once crashed a reader: replayed first on every run.
        let regressions = root().join("fuzz/regressions").join(t);
        if regressions.is_dir() {
            cmd.arg(regressions);
        }
        let status = cmd
            .arg("--")
            .arg(format!("-max_total_time={}", per_target.as_secs()))
            .arg(format!("-max_len={MAX_LEN}"))
            // Ten seconds on one input is a hang (whole seeds take ~10 ms).
            .arg("-timeout=10")
            .arg("-rss_limit_mb=4096")
            .arg("-print_final_stats=1")
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!(
                "fuzz target {t} failed after {:.0}s ({status}): the input is under {}",
                started.elapsed().as_secs_f64(),
                root().join("fuzz/artifacts").join(t).display()
            );
        }
    }
    Ok(())
}

/// Writes the seed inputs under target/fuzz-seeds/TARGET from what is on
/// the machine: the small real Go binaries `cargo xtask build` makes (whole:
/// every table decodes), pieces of the real kubelet and containerd builds
/// (too big to fuzz whole: heads, and heads with their section headers and
/// small sections moved in, so the tables point past the end), their
/// pclntabs cut short, and real traces.
pub fn make_seeds() -> Result<()> {
    let r = root();
    let small: Vec<PathBuf> = ["go1.19", "go1.19-pie", "go1.27"]
        .iter()
        .map(|v| crate::workload_dir().join(v).join("kubelet"))
        .collect();
    for p in &small {
        if !p.exists() {
            bail!(
                "{} does not exist: the fuzz seeds need the Go workloads (`cargo xtask build`)",
                p.display()
            );
        }
    }
    let bin = crate::paths::home().join("bin");
    let big = [
        bin.join("kubelet-v1.34.4"),
        bin.join("kubelet-v1.36.3"),
        bin.join("containerd-v2.2.9/containerd"),
    ];
    for p in &big {
        if !p.exists() {
            bail!(
                "{} does not exist: the fuzz seeds need the real builds (`cargo xtask setup`)",
                p.display()
            );
        }
    }
    for t in TARGETS {
        let d = seeds_dir(t);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
    }
    let put = |target: &str, name: &str, bytes: &[u8]| -> Result<()> {
        let p = seeds_dir(target).join(name);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
    };
    for p in small.iter().chain(&big) {
        let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let name = p
            .strip_prefix(&bin)
            .or_else(|_| p.strip_prefix(crate::workload_dir()))
            .unwrap_or(p)
            .display()
            .to_string()
            .replace('/', "_");
        let elf = Elf64::parse(&data).with_context(|| p.display().to_string())?;
        let pcln = elf
            .section(&data, ".gopclntab")
            .or_else(|| elf.section(&data, ".data.rel.ro.gopclntab"))
            .with_context(|| format!("{}: no pclntab section", p.display()))?;
        if data.len() <= MAX_LEN {
            for t in ["go_binary", "inline_tree"] {
                put(t, &name, &data)?;
            }
            put("pclntab", &name, pcln)?;
        }
        for (cut, label) in [(64 << 10, "64k"), (1 << 20, "1m")] {
            if data.len() > cut {
                for t in ["go_binary", "inline_tree"] {
                    put(t, &format!("{name}.head-{label}"), &data[..cut])?;
                    put(
                        t,
                        &format!("{name}.sampled-{label}"),
                        &elf.sampled(&data, cut)?,
                    )?;
                }
            }
            if pcln.len() > cut {
                put("pclntab", &format!("{name}.cut-{label}"), &pcln[..cut])?;
            }
        }
    }
    // Crafted inputs kept in fuzz/seeds (fuzz/seeds/crafted.py writes
    // them): tables whose headers claim more than their bytes hold. The
    // inline_tree ones are whole (tiny) ELF files, so go_binary gets them too.
    for (dir, targets) in [
        ("pclntab", &["pclntab"][..]),
        ("inline_tree", &["inline_tree", "go_binary"][..]),
    ] {
        let d = r.join("fuzz/seeds").join(dir);
        let entries = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for e in entries {
            let p = e?.path();
            let data = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            let name = format!(
                "crafted-{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            for t in targets {
                put(t, &name, &data)?;
            }
        }
    }
    // Real traces: the ones kept in fuzz/seeds, and those of a demo run.
    let mut traces: Vec<PathBuf> = Vec::new();
    for d in [r.join("fuzz/seeds/trace_reader"), r.join("target/demo")] {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "trace") {
                traces.push(e.path());
            }
        }
    }
    if traces.is_empty() {
        bail!("no real trace for the trace_reader seeds (fuzz/seeds/trace_reader/*.trace)");
    }
    for (i, p) in traces.iter().enumerate() {
        let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        // The head of a long trace: the header and the first pods' events.
        let keep = data.len().min(256 << 10);
        put("trace_reader", &format!("{i}.trace"), &data[..keep])?;
    }
    let count = |t: &str| std::fs::read_dir(seeds_dir(t)).map_or(0, |d| d.count());
    eprintln!(
        "    fuzz seeds: {}",
        TARGETS
            .iter()
            .map(|t| format!("{t} {}", count(t)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Just enough of an ELF64 little-endian file to cut pieces out of it.
struct Elf64 {
    shoff: usize,
    shentsize: usize,
    shnum: usize,
    shstrndx: usize,
}

fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
}

impl Elf64 {
    fn parse(b: &[u8]) -> Result<Elf64> {
        if b.get(..6) != Some(b"\x7fELF\x02\x01") {
            bail!("not a 64-bit little-endian ELF file");
        }
        let f = |at, n| {
            le(b, at, n)
                .and_then(|v| usize::try_from(v).ok())
                .context("ELF header cut short")
        };
        let e = Elf64 {
            shoff: f(0x28, 8)?,
            shentsize: f(0x3a, 2)?,
            shnum: f(0x3c, 2)?,
            shstrndx: f(0x3e, 2)?,
        };
        if e.shentsize != 64 || e.shoff.saturating_add(e.shnum * 64) > b.len() {
            bail!("section header table out of the file");
        }
        Ok(e)
    }

    /// (name offset, file offset, size) of section `i`.
    fn header(&self, b: &[u8], i: usize) -> Option<(usize, usize, usize)> {
        let at = self.shoff + i * self.shentsize;
        let g = |o, n| le(b, at + o, n).and_then(|v| usize::try_from(v).ok());
        Some((g(0, 4)?, g(0x18, 8)?, g(0x20, 8)?))
    }

    fn section<'d>(&self, b: &'d [u8], name: &str) -> Option<&'d [u8]> {
        let (_, stroff, strsize) = self.header(b, self.shstrndx)?;
        let strtab = b.get(stroff..stroff.checked_add(strsize)?)?;
        (0..self.shnum).find_map(|i| {
            let (n, off, size) = self.header(b, i)?;
            let rest = strtab.get(n..)?;
            let end = rest.iter().position(|&c| c == 0)?;
            (&rest[..end] == name.as_bytes()).then(|| b.get(off..off.checked_add(size)?))?
        })
    }

    /// The first `head` bytes, then the section header table, the section
    /// name table and `.go.buildinfo` (moved in, their offsets rewritten),
    /// then the first 256 KiB of the pclntab (its size kept: cut short):
    /// the headers all decode and point into a file that ends too soon.
    fn sampled(&self, b: &[u8], head: usize) -> Result<Vec<u8>> {
        let mut out = b[..head].to_vec();
        let new_shoff = out.len();
        out.extend_from_slice(&b[self.shoff..self.shoff + self.shnum * 64]);
        out[0x28..0x30].copy_from_slice(&(new_shoff as u64).to_le_bytes());
        let (_, stroff, strsize) = self
            .header(b, self.shstrndx)
            .context("no section name table")?;
        let names = b
            .get(stroff..stroff + strsize)
            .context("section names out of the file")?
            .to_vec();
        for i in 0..self.shnum {
            let Some((n, off, size)) = self.header(b, i) else {
                continue;
            };
            let name = names
                .get(n..)
                .and_then(|r| r.split(|&c| c == 0).next())
                .unwrap_or(&[]);
            let keep = match name {
                _ if i == self.shstrndx => size,
                b".go.buildinfo" => size.min(64 << 10),
                n if n.ends_with(b".gopclntab") => size.min(256 << 10),
                _ => continue,
            };
            let Some(bytes) = b.get(off..off + keep) else {
                continue;
            };
            let at = out.len();
            out.extend_from_slice(bytes);
            let h = new_shoff + i * 64 + 0x18;
            out[h..h + 8].copy_from_slice(&(at as u64).to_le_bytes());
        }
        Ok(out)
    }
}
