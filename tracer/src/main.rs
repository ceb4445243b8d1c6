//! The `podtrace` command line.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use podtrace::{
    attach::{self, TargetBinary},
    catalogue::{BinaryCatalogue, Catalogue, Resolution, Status},
    collect,
    correlate::Correlator,
    report::Report,
    resolve::GoBinary,
    trace::{self, BinaryRecord, Header, Trace, Writer},
};

/// Where does a pod's start-up time go inside kubelet and containerd?
///
/// podtrace attaches eBPF uprobes to unmodified (also stripped) kubelet
/// binaries, pairs every function entry with its returns per goroutine, and
/// prints per-pod stage tables: sync, the volume mount wait with every poll
/// check, the runtime calls, and the periods of kubelet's background loops.
///
/// Typical session (as root):
///
///   podtrace probes --kubelet /usr/bin/kubelet
///   podtrace record --kubelet /usr/bin/kubelet --duration 60s -o start.trace
///   podtrace report start.trace
#[derive(Parser)]
#[command(name = "podtrace", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show what can be traced in the given binaries: per probe the matched
    /// symbol, address, file offset, entry site kind, RET count and status.
    Probes(ProbesArgs),
    /// Attach to kubelet and write a trace until --duration, Ctrl-C, or the
    /// command given after `--` exits.
    ///
    /// Examples:
    ///   podtrace record --kubelet /usr/bin/kubelet --duration 30s -o a.trace
    ///   podtrace record --pid $(pidof kubelet) -o a.trace
    ///   podtrace record -o a.trace            (finds a running kubelet)
    ///   podtrace record -o a.trace -- ./kubelet --preset tuned
    #[command(verbatim_doc_comment)]
    Record(RecordArgs),
    /// Per-pod stage tables, the mount wait's poll checks and the loop periods
    /// of a recorded trace.
    Report(ReportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
struct ProbesArgs {
    /// kubelet binary to inspect.
    #[arg(long, value_name = "PATH")]
    kubelet: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Use this catalogue file instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    catalogue: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RecordArgs {
    /// kubelet binary: trace every process running it.
    #[arg(long, value_name = "PATH", conflicts_with = "pid")]
    kubelet: Option<PathBuf>,
    /// Trace only this running kubelet process.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Stop after this long (e.g. 500ms, 30s, 5m). Default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Trace file to write (JSON Lines).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Ring buffer size in MiB (a power of two).
    #[arg(long, default_value_t = 16)]
    ring_mib: u32,
    /// Use this catalogue file instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    catalogue: Option<PathBuf>,
    /// No live status line.
    #[arg(short, long)]
    quiet: bool,
    /// Which probe sites to attach (for measuring their cost).
    #[arg(long, value_enum, default_value = "both", hide = true)]
    sites: attach::SiteSelection,
    /// Put entry probes on the first instruction instead of the prologue's
    /// stack-check jump (for measuring the difference).
    #[arg(long, hide = true)]
    entry_at_function_start: bool,
    /// Command to start once the probes are attached; recording stops when it exits.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Trace written by `podtrace record`.
    trace: PathBuf,
    /// A call still open after this long is taken to have ended without a
    /// RET (panic, tail call, goroutine exit) and counted as aged out.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    max_open: Duration,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a number with a unit, e.g. 500ms, 30s, 5m"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (ns, us, ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}`: not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Probes(a) => probes(a),
        Cmd::Record(a) => record(a),
        Cmd::Report(a) => report(a),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podtrace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_catalogue(path: Option<&Path>) -> Result<Catalogue> {
    match path {
        None => Ok(Catalogue::builtin()?),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Catalogue {
                binaries: vec![Catalogue::parse(&p.display().to_string(), &text)?],
            })
        }
    }
}

/// The kubelet catalogue, or the only binary of a `--catalogue` file.
fn kubelet_catalogue(cat: &Catalogue) -> Result<&BinaryCatalogue> {
    match (cat.binary("kubelet"), cat.binaries.as_slice()) {
        (Some(k), _) => Ok(k),
        (None, [only]) => Ok(only),
        _ => bail!("the catalogue has no [binary] named kubelet"),
    }
}

fn probes(a: ProbesArgs) -> Result<ExitCode> {
    let cat = load_catalogue(a.catalogue.as_deref())?;
    let kc = kubelet_catalogue(&cat)?;
    let bin = GoBinary::open(&a.kubelet)?;
    let res = kc.resolve(&bin);
    match a.format {
        Format::Json => {
            let v = serde_json::json!({
                "binary": bin.path(),
                "catalogue": kc.binary.name,
                "go_version": bin.go_version(),
                "main_module": bin.build_info().and_then(|b| b.main.as_ref()).map(|m| (&m.path, &m.version)),
                "symbol_source": format!("{:?}", bin.symbol_source()),
                "goid_offset": bin.goid_offset(),
                "probes": res,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => print!("{}", probes_table(&bin, &res)),
    }
    let ok = res.iter().filter(|r| r.status == Status::Ok).count();
    Ok(if ok == 0 {
        eprintln!(
            "podtrace: no probe of the kubelet catalogue resolves in {} (is it a kubelet?)",
            a.kubelet.display()
        );
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn probes_table(bin: &GoBinary, res: &[Resolution]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "binary      {}", bin.path().display());
    let _ = writeln!(o, "go          {}", bin.go_version().unwrap_or("unknown"));
    if let Some(bi) = bin.build_info() {
        if let Some(m) = &bi.main {
            let _ = writeln!(o, "module      {} {}", m.path, m.version);
        }
        for d in bi.deps.iter().filter(|d| {
            d.path.starts_with("k8s.io/") || d.path.starts_with("github.com/containerd/")
        }) {
            let _ = writeln!(o, "  dep       {} {}", d.path, d.version);
        }
    }
    let _ = writeln!(o, "symbols     {:?}", bin.symbol_source());
    let _ = writeln!(
        o,
        "goid        {}",
        bin.goid_offset()
            .map(|g| format!("runtime.g+{g}"))
            .unwrap_or_else(|| "unknown (goroutines keyed by g pointer only)".into())
    );
    let _ = writeln!(
        o,
        "\n{:<16} {:<8} {:<14} {:>10} {:>10} {:>5}  {}",
        "probe", "status", "entry site", "address", "offset", "rets", "symbol"
    );
    for r in res {
        if r.targets.is_empty() {
            let _ = writeln!(
                o,
                "{:<16} {:<8} {:<14} {:>10} {:>10} {:>5}  {}",
                r.probe,
                format!("{:?}", r.status).to_lowercase(),
                "-",
                "-",
                "-",
                "-",
                r.detail
            );
        }
        for t in &r.targets {
            let _ = writeln!(
                o,
                "{:<16} {:<8} {:<14} {:>#10x} {:>#10x} {:>5}  {}",
                r.probe,
                "ok",
                match t.entry_site {
                    podtrace::catalogue::SiteKind::PrologueJump => "prologue-jump",
                    podtrace::catalogue::SiteKind::FunctionStart => "function-start",
                },
                t.entry_vaddr,
                t.entry_site_offset,
                t.ret_offsets.len(),
                t.symbol
            );
        }
    }
    o
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

fn record(a: RecordArgs) -> Result<ExitCode> {
    let cat = load_catalogue(a.catalogue.as_deref())?;
    let kc = kubelet_catalogue(&cat)?;
    let (path, pids) = if let Some(p) = &a.kubelet {
        (p.clone(), vec![])
    } else if let Some(pid) = a.pid {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).with_context(|| {
            format!("no process {pid} (or not allowed to read /proc/{pid}/exe)")
        })?;
        eprintln!("podtrace: process {pid} runs {}", exe.display());
        (PathBuf::from(format!("/proc/{pid}/exe")), vec![pid])
    } else if let Some(cmd) = a.command.first() {
        let p = which(cmd).with_context(|| format!("command `{cmd}` not found on PATH"))?;
        (p, vec![])
    } else {
        let found = find_processes(&kc.binary.process_names);
        match found.as_slice() {
            [] => bail!(
                "no running {} found; pass --kubelet PATH or --pid PID, or a command after --",
                kc.binary.process_names.join("/")
            ),
            [(pid, exe), ..] => {
                eprintln!("podtrace: found {} (pid {pid})", exe.display());
                (
                    PathBuf::from(format!("/proc/{pid}/exe")),
                    found.iter().map(|f| f.0).collect(),
                )
            }
        }
    };
    let bin = GoBinary::open(&path)?;
    let resolutions = kc.resolve(&bin);
    let unresolved: Vec<String> = resolutions
        .iter()
        .filter(|r| r.status != Status::Ok)
        .map(|r| format!("{}: {}", r.probe, r.detail))
        .collect();
    if !unresolved.is_empty() {
        let names: Vec<&str> = unresolved
            .iter()
            .filter_map(|u| u.split(':').next())
            .collect();
        eprintln!(
            "podtrace: {} of {} probes not attached ({}); `podtrace probes` says why",
            names.len(),
            kc.probes.len(),
            names.join(", ")
        );
    }
    let targets = vec![TargetBinary {
        catalogue: kc,
        binary: &bin,
        resolutions,
        pids: pids.clone(),
    }];
    let (probes, specs, sites) = attach::plan(
        &targets,
        attach::PlanOptions {
            sites: a.sites,
            entry_at_function_start: a.entry_at_function_start,
        },
    )?;
    if probes.is_empty() {
        bail!(
            "{}: none of the kubelet catalogue's functions resolve ({}); see `podtrace probes`",
            path.display(),
            bin.go_version().unwrap_or("?")
        );
    }
    if !a.ring_mib.is_power_of_two() {
        bail!("--ring-mib must be a power of two, not {}", a.ring_mib);
    }
    let mut loaded = attach::load(a.ring_mib << 20, &specs)?;
    loaded.attach(&sites, |_, _| {})?;
    eprintln!(
        "podtrace: attached {} uprobes to {} functions of {} ({})",
        loaded.attached,
        probes.len(),
        path.display(),
        bin.go_version().unwrap_or("?")
    );
    let header = Header {
        format: trace::FORMAT.into(),
        version: trace::FORMAT_VERSION,
        podtrace_version: env!("CARGO_PKG_VERSION").into(),
        hostname: hostname(),
        mono_to_unix_ns: trace::mono_to_unix_offset(),
        started_unix_ns: trace::mono_now() as i64 + trace::mono_to_unix_offset(),
        binaries: vec![BinaryRecord {
            name: kc.binary.name.clone(),
            path: path.display().to_string(),
            go_version: bin.go_version().map(str::to_string),
            pids,
            unresolved,
        }],
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

fn report(a: ReportArgs) -> Result<ExitCode> {
    let t = Trace::read(&a.trace)?;
    let mut c = Correlator::new(&t.header.probes, a.max_open.as_nanos() as u64);
    let mut events = t.events.clone();
    events.sort_by_key(|e| e.t);
    for e in &events {
        c.push(e);
    }
    let corr = c.finish();
    let r = Report::build(&t, &corr);
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Table => print!("{}", r.to_table()),
    }
    Ok(ExitCode::SUCCESS)
}
