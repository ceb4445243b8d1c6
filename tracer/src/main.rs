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
    catalogue::{BinaryCatalogue, BinaryInfo, Catalogue, Resolution, Status},
    collect,
    report::Report,
    resolve::GoBinary,
    trace::{self, BinaryRecord, Header, Trace, Writer},
};

/// Where does a pod's start-up time go inside kubelet and containerd?
///
/// podtrace attaches eBPF uprobes to unmodified (also stripped) kubelet and
/// containerd binaries, pairs every function entry with its returns per
/// goroutine, and prints per-pod stage tables: sync, the volume mount wait
/// with every poll check, containerd's CRI calls, and the periods of
/// kubelet's background loops.
///
/// Typical session (as root):
///
///   podtrace probes --kubelet /usr/bin/kubelet --containerd /usr/bin/containerd
///   podtrace record --duration 60s -o start.trace     (finds both running)
///   podtrace report start.trace
///   podtrace compare default.trace tuned.trace --html compare.html
///   podtrace export start.trace --format chrome -o start.perfetto.json
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
    ///
    /// Status: ok (attachable); missing (no variant's symbol in the binary:
    /// another version, or not a kubelet/containerd); mismatch (the symbol is
    /// there but no variant's condition holds for it, e.g. it lacks the
    /// callee or the result shape of every known version: `record` does not
    /// attach it); inlined
    /// (the compiler inlined the function into its callers, so it has no
    /// code of its own: probe a caller or build with -gcflags=all=-l).
    Probes(ProbesArgs),
    /// Attach to kubelet and/or containerd and write a trace until
    /// --duration, Ctrl-C, or the command given after `--` exits.
    ///
    /// Examples:
    ///   podtrace record --kubelet /usr/bin/kubelet --duration 30s -o a.trace
    ///   podtrace record --pid $(pidof kubelet) -o a.trace
    ///   podtrace record -o a.trace            (finds running kubelet/containerd)
    ///   podtrace record --kubelet /usr/bin/kubelet --containerd /usr/bin/containerd -o a.trace
    ///   podtrace record -o a.trace -- ./kubelet --preset tuned
    #[command(verbatim_doc_comment)]
    Record(RecordArgs),
    /// Per-pod stage tables, the mount wait's poll checks and the loop periods
    /// of a recorded trace.
    Report(ReportArgs),
    /// Compare runs (e.g. default vs tuned): per stage count, p50/p90/p99, mean,
    /// differences against the first run with bootstrap confidence intervals,
    /// and the polling and loop findings side by side.
    Compare(podtrace::commands::compare::CompareArgs),
    /// Export a trace as Chrome trace-event JSON (Perfetto), OTLP traces
    /// (JSON file or OTLP/HTTP push) or CSV.
    Export(podtrace::commands::export::ExportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("bins").required(true).multiple(true).args(["kubelet", "containerd"])))]
struct ProbesArgs {
    /// kubelet binary to inspect.
    #[arg(long, value_name = "PATH")]
    kubelet: Option<PathBuf>,
    /// containerd binary to inspect.
    #[arg(long, value_name = "PATH")]
    containerd: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Use this catalogue file instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    catalogue: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RecordArgs {
    /// kubelet binary: trace every process running it.
    #[arg(long, value_name = "PATH")]
    kubelet: Option<PathBuf>,
    /// containerd binary: trace its CRI handlers in every process running it.
    #[arg(long, value_name = "PATH")]
    containerd: Option<PathBuf>,
    /// Trace only this running process (kubelet or containerd, told apart by
    /// which catalogue resolves); repeat for several.
    #[arg(long, value_name = "PID")]
    pid: Vec<u32>,
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
    /// Also write a self-contained HTML page with a waterfall per pod.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Also write the waterfalls as one standalone SVG picture.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Print the CRI calls as containerd's log lines would (journalctl -u
    /// containerd), instead of the tables.
    #[arg(long)]
    journal: bool,
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
        Cmd::Compare(a) => podtrace::commands::compare::run(a),
        Cmd::Export(a) => podtrace::commands::export::run(a),
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

/// The catalogue's `[binary]` of this name, or the only one of a
/// single-binary `--catalogue` file.
fn catalogue_for<'c>(cat: &'c Catalogue, name: &str) -> Result<&'c BinaryCatalogue> {
    cat.binary(name)
        .or_else(|| (cat.binaries.len() == 1).then(|| &cat.binaries[0]))
        .with_context(|| format!("the catalogue has no [binary] named {name}"))
}

fn probes(a: ProbesArgs) -> Result<ExitCode> {
    let cat = load_catalogue(a.catalogue.as_deref())?;
    let mut code = ExitCode::SUCCESS;
    let mut json = Vec::new();
    let wanted = [("kubelet", &a.kubelet), ("containerd", &a.containerd)];
    for (name, path) in wanted {
        let Some(path) = path else { continue };
        let bc = catalogue_for(&cat, name)?;
        let bin = GoBinary::open(path)?;
        let res = bc.resolve(&bin);
        match a.format {
            Format::Json => json.push(serde_json::json!({
                "binary": bin.path(),
                "catalogue": bc.binary.name,
                "go_version": bin.go_version(),
                "main_module": bin.build_info().and_then(|b| b.main.as_ref()).map(|m| (&m.path, &m.version)),
                "versions": detected_versions(&bin, &bc.binary),
                "symbol_source": format!("{:?}", bin.symbol_source()),
                "goid_offset": bin.goid_offset(),
                "layout": res.iter().find(|r| r.status == Status::Ok).map(|r| &r.detail),
                "probes": res,
            })),
            Format::Table => {
                print!("{}", probes_table(&bin, &bc.binary, &res));
                // Which version family the handler symbols belong to.
                if let Some(note) = res.iter().find(|r| r.status == Status::Ok).map(|r| &r.detail) {
                    if !note.is_empty() {
                        println!("layout      {note}");
                    }
                }
                println!();
            }
        }
        if !res.iter().any(|r| r.status == Status::Ok) {
            eprintln!(
                "podtrace: no probe of the {} catalogue resolves in {} (is it a {}?)",
                bc.binary.name,
                path.display(),
                bc.binary.name
            );
            code = ExitCode::from(2);
        }
    }
    if matches!(a.format, Format::Json) {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "binaries": json }))?
        );
    }
    Ok(code)
}

/// Versions that decide probe layouts, as far as the binary tells them:
/// Go, the main module, the catalogue's `modules` and `detect` facts.
fn detected_versions(bin: &GoBinary, info: &BinaryInfo) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Some(g) = bin.go_version() {
        v.push(("go".to_string(), g.to_string()));
    }
    if let Some(m) = bin.build_info().and_then(|b| b.main.as_ref()) {
        v.push((m.path.clone(), m.version.clone()));
    }
    for module in &info.modules {
        if let Some(ver) = bin.module_version(module) {
            if !v.iter().any(|(m, _)| m == module) {
                v.push((module.clone(), ver.to_string()));
            }
        }
    }
    v.extend(info.detected(bin));
    v
}

fn probes_table(bin: &GoBinary, info: &BinaryInfo, res: &[Resolution]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "binary      {}", bin.path().display());
    let versions = detected_versions(bin, info);
    for (what, ver) in &versions {
        let _ = writeln!(o, "  {what:<32} {ver}");
    }
    if let Some(bi) = bin.build_info() {
        for d in bi.deps.iter().filter(|d| {
            (d.path.starts_with("k8s.io/") || d.path.starts_with("github.com/containerd/"))
                && !versions.iter().any(|(m, _)| *m == d.path)
        }) {
            let _ = writeln!(o, "  {:<32} {} (dependency)", d.path, d.version);
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
        "\n{:<16} {:<8} {:<14} {:>10} {:>10} {:>5}  symbol",
        "probe", "status", "entry site", "address", "offset", "rets"
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
            // Which version's shape it was taken for, and the fact that said so.
            let _ = writeln!(
                o,
                "{:<16} {:<8} variant {} ({}){}{}",
                "",
                "",
                t.variant + 1,
                t.matched_by,
                if t.note.is_empty() { "" } else { ": " },
                t.note
            );
            if !t.inlined_into.is_empty() {
                let _ = writeln!(
                    o,
                    "{:<16} {:<8} {:<50}  also inlined into {}: calls there are not seen",
                    "",
                    "",
                    "",
                    podtrace::catalogue::list_some(&t.inlined_into)
                );
            }
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

fn record(a: RecordArgs) -> Result<ExitCode> {
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
                    podtrace::catalogue::list_some(&t.inlined_into)
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

fn report(a: ReportArgs) -> Result<ExitCode> {
    let t = Trace::read(&a.trace)?;
    let corr = podtrace::commands::correlate_with(&t, a.max_open.as_nanos() as u64);
    if a.journal {
        print!("{}", podtrace::journal::journal(&t, &corr));
        return Ok(ExitCode::SUCCESS);
    }
    let r = Report::build(&t, &corr);
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Table => print!("{}", r.to_table()),
    }
    podtrace::html::write_report_pictures(&r, a.html.as_deref(), a.svg.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
