//! `podtrace record`: attach to kubelet and/or containerd and stream every
//! probe hit into a trace file.

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    attach::{self, TargetBinary},
    catalogue::{BinaryCatalogue, Catalogue, Status},
    collect,
    commands::{catalogue_for, load_catalogue, parse_duration},
    resolve::GoBinary,
    trace::{self, BinaryRecord, Header, Writer},
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
    /// Stop after this long (e.g. 500ms, 30s, 5m). Default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Trace file to write (JSON Lines).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = 16)]
    pub ring_mib: u32,
    /// Use this catalogue file instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
    /// No live status line.
    #[arg(short, long)]
    pub quiet: bool,
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

/// Processes whose executable's file name is one of `names`.
fn find_processes(names: &[String]) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
            continue;
        };
        let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if names.iter().any(|n| n == name) {
            out.push((pid, exe));
        }
    }
    out
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
    catalogue: &'c BinaryCatalogue,
    binary: GoBinary,
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
    let mut add = |path: PathBuf, pids: Vec<u32>, want: Option<&str>| -> Result<()> {
        let binary = GoBinary::open(&path)?;
        let catalogue = match want {
            Some(name) => catalogue_for(cat, name)?,
            None => identify(cat, &binary).with_context(|| {
                format!(
                    "{}: none of the catalogue's functions ({}) resolve in it ({})",
                    path.display(),
                    cat.binaries
                        .iter()
                        .map(|b| b.binary.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    binary.go_version().unwrap_or("no Go version")
                )
            })?,
        };
        out.push(Chosen {
            path,
            pids,
            catalogue,
            binary,
        });
        Ok(())
    };
    if let Some(p) = &a.kubelet {
        add(p.clone(), vec![], Some("kubelet"))?;
    }
    if let Some(p) = &a.containerd {
        add(p.clone(), vec![], Some("containerd"))?;
    }
    for &pid in &a.pid {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).with_context(|| {
            format!("no process {pid} (or not allowed to read /proc/{pid}/exe)")
        })?;
        eprintln!("podtrace: process {pid} runs {}", exe.display());
        add(PathBuf::from(format!("/proc/{pid}/exe")), vec![pid], None)?;
    }
    if let Some(cmd) = a.command.first() {
        if a.kubelet.is_none() && a.containerd.is_none() && a.pid.is_empty() {
            let p = which(cmd).with_context(|| format!("command `{cmd}` not found on PATH"))?;
            add(p, vec![], None)?;
        }
    }
    if a.kubelet.is_none() && a.containerd.is_none() && a.pid.is_empty() && a.command.is_empty() {
        for b in &cat.binaries {
            for (pid, exe) in find_processes(&b.binary.process_names) {
                eprintln!("podtrace: found {} (pid {pid})", exe.display());
                add(
                    PathBuf::from(format!("/proc/{pid}/exe")),
                    vec![pid],
                    Some(&b.binary.name),
                )?;
            }
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

pub fn run(a: RecordArgs) -> Result<ExitCode> {
    let cat = load_catalogue(a.catalogue.as_deref())?;
    let chosen = choose_targets(&a, &cat)?;
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
    let (probes, specs, sites) = attach::plan(
        &targets,
        attach::PlanOptions {
            sites: a.sites,
            entry_at_function_start: a.entry_at_function_start,
        },
    )?;
    if !a.ring_mib.is_power_of_two() {
        bail!("--ring-mib must be a power of two, not {}", a.ring_mib);
    }
    let mut loaded = attach::load(a.ring_mib << 20, &specs)?;
    loaded.attach(&sites, |_, _| {})?;
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
    let writer = Writer::create(&a.output, &header)?;
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
    let (footer, child_status) =
        rt.block_on(collect::run(&mut loaded, &probes, writer, child, &opts))?;
    drop(loaded); // detaches every uprobe
    eprintln!(
        "podtrace: stopped ({}): {} events, {} dropped, written to {}",
        footer.stopped_by,
        footer.events,
        footer.drops,
        a.output.display()
    );
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
