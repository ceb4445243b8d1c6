//! Recording: the pipeline from "what to trace" to a finished trace file.
//!
//! [`record`] reads top-down as the stages run:
//! [`discover`] (which binaries) → [`plan`] (resolve them against the
//! catalogue: probe table, specs, sites) → [`bpf`] (load the program,
//! attach one group of links per file) → the trace [`Writer`] → the
//! [`supervise`]or on a thread of its own (restarts, replaced binaries,
//! late starters) → [`drain`] (ring buffer → trace, until a stop) →
//! [`Outcome`].
//!
//! A library: no command-line parsing here ([`crate::commands::record`]
//! turns arguments into a [`Config`] and prints the outcome). Each stage
//! uses only the ones before it; none of them knows about the commands.

pub mod bpf;
pub mod discover;
pub mod drain;
pub mod ebpf_log;
pub mod paths;
pub mod plan;
pub mod procs;
pub mod supervise;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{
    catalogue::Catalogue,
    clock::{mono_now, mono_to_unix_offset},
    format::{BinaryRecord, Footer, Header, ProbeInfo, FORMAT, FORMAT_VERSION},
    live::{self, metrics::Metrics, otlp::OtlpTarget},
    trace::{Rotation, Writer},
};
use bpf::{LinkMode, LinkRequest, Program};
use discover::{Chosen, Targets};
use plan::{PlanOptions, Site};
use supervise::{Initial, Supervisor};

/// Everything a recording needs, decided before it starts.
pub struct Config {
    pub targets: Targets,
    pub catalogue: Catalogue,
    pub output: PathBuf,
    /// The node's name for the header, the metrics' `node` label and the
    /// OTLP resource (`k8s.node.name`, `host.name`).
    pub node_name: String,
    pub rotation: Option<Rotation>,
    /// Stop after this long (None: until SIGINT/SIGTERM or the command exits).
    pub duration: Option<Duration>,
    pub ring_bytes: u32,
    /// The live status line on stderr.
    pub status: bool,
    /// The eBPF program's capture diagnostics on stderr.
    pub ebpf_log: bool,
    /// Serve Prometheus metrics here.
    pub metrics: Option<SocketAddr>,
    /// Push each finished pod's spans here.
    pub otlp: Option<OtlpTarget>,
    pub plan: PlanOptions,
    /// uprobe_multi links or one per site (`--links`, hidden).
    pub links: LinkRequest,
}

/// How a recording ended.
pub struct Outcome {
    pub footer: Footer,
    /// The command's exit status, if one was started.
    pub child: Option<ExitStatus>,
    /// The whole probe table, appended probes included.
    pub probes: Vec<ProbeInfo>,
    /// Seen → attached for every binary attached while recording (ns).
    pub attach_latencies_ns: Vec<u64>,
    /// Lines about eBPF log records counted but not shown.
    pub log_summary: Vec<String>,
    /// Probe hit → written, over the recording.
    pub latency: drain::Latency,
    /// How the processes were followed: (exec/exit notices read, full
    /// scans of /proc); None: /proc was read at every supervisor tick.
    pub process_notices: Option<(u64, u64)>,
}

/// What planning made of the chosen binaries: all of it owned, so that the
/// binaries (read whole, ~100 MB for a kubelet) can be let go of before
/// recording.
struct Planned {
    probes: Vec<ProbeInfo>,
    /// One group of specs and sites per chosen binary: released together
    /// when its file is replaced.
    groups: Vec<(Vec<podtrace_common::ProbeSpec>, Vec<Site>)>,
    records: Vec<BinaryRecord>,
    /// (binary, probe, status) of every catalogue probe.
    statuses: Vec<(String, String, String)>,
}

/// Records until the duration passes, a signal arrives or the command of
/// `cfg.targets` (started once the probes are attached) exits.
pub fn record(cfg: &Config) -> Result<Outcome> {
    let t0 = Instant::now();
    let (chosen, rejected) = discover::choose(&cfg.targets, &cfg.catalogue)?;
    // Bound before attaching: a taken port fails before any probe is set.
    let listener = cfg.metrics.map(live::server::bind).transpose()?;
    let metrics = if listener.is_some() || cfg.otlp.is_some() {
        Some(Arc::new(Metrics::new(&cfg.node_name)?))
    } else {
        None
    };
    let planned = plan_chosen(&chosen, cfg.plan)?;
    if let Some(m) = &metrics {
        for (binary, probe, status) in &planned.statuses {
            m.probe_status(binary, probe, status);
        }
    }
    let logger = cfg
        .ebpf_log
        .then(|| ebpf_log::CaptureLogger::stderr(planned.probes.clone()));
    let (mode, why) = bpf::link_mode(cfg.links);
    let (mut program, mut events) = bpf::load(cfg.ring_bytes, mode, logger)?;
    let (initial, links) = attach_groups(&mut program, &chosen, &planned.groups)?;
    let procs = match procs::ProcWatch::start(program.ebpf_mut()) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!(
                "podtrace: no process exec/exit notices ({e:#}): reading /proc every {} ms instead",
                Supervisor::POLL_EVERY.as_millis()
            );
            None
        }
    };
    let paths = match paths::PathWatch::new() {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("podtrace: no inotify ({e:#}): replaced binaries are seen at the supervisor's ticks");
            None
        }
    };
    let supervisor = Supervisor::new(
        &cfg.catalogue,
        cfg.plan,
        cfg.targets.discover(),
        initial,
        rejected,
        planned.probes.len(),
        mode,
    )
    .with_notices(procs, paths);
    say_attached(
        &chosen,
        &planned.probes,
        program.attached,
        links,
        mode,
        &why,
        t0,
    );
    let header = header(&cfg.node_name, planned.records, planned.probes.clone());
    let writer = Writer::create_rotating(&cfg.output, &header, cfg.rotation)?;
    if let Some(old) = &writer.moved_aside {
        eprintln!(
            "podtrace: {} held a trace: moved to {}",
            cfg.output.display(),
            old.display()
        );
    }
    // The probes are attached and described: the binaries' files are not
    // needed while recording.
    drop(chosen);
    let child = start(&cfg.targets.command)?;
    eprintln!("podtrace: recording to {}", cfg.output.display());
    let mut live = match &metrics {
        Some(m) => Some(live::Live::new(Arc::clone(m), &header, cfg.otlp.clone())?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Its own thread and runtime: no client can hold the drain loop up.
    // Served until the recording's end (dropped with `record`'s frame).
    let _server = match (listener, &metrics) {
        (Some(l), Some(m)) => {
            eprintln!(
                "podtrace: metrics at http://{}/metrics",
                l.local_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string())
            );
            Some(live::server::spawn(l, Arc::clone(m))?)
        }
        _ => None,
    };
    let opts = drain::Options {
        duration: cfg.duration,
        drain_every: Duration::from_millis(20),
        status: cfg.status,
    };
    let mut probes = planned.probes;
    let program = Mutex::new(program);
    let (stop, stop_rx) = supervise::stop_signal()?;
    let (recorded, (latencies_ns, process_notices)) = std::thread::scope(|s| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let program = &program;
        let supervisor = std::thread::Builder::new()
            .name("podtrace-supervise".into())
            .spawn_scoped(s, move || supervisor.run(program, tx, stop_rx));
        let supervised = supervisor
            .as_ref()
            .ok()
            .map(|_| drain::Supervised { rx, stop });
        let recorded = rt.block_on(drain::run(
            program,
            &mut events,
            &mut probes,
            writer,
            child,
            &opts,
            supervised,
            live.as_mut().map(|l| l as &mut dyn drain::Consumer),
        ));
        // On an error the drain loop dropped its ends: the supervisor stops.
        let latencies = match supervisor {
            Ok(h) => h.join().unwrap_or_default(),
            Err(_) => (Vec::new(), None),
        };
        (recorded, latencies)
    });
    let (footer, child, latency) = match recorded {
        Ok(r) => r,
        Err(e) => {
            // A full disk, say: the uprobes go now, closed in parallel
            // (dropping per-site links one by one takes a grace period each).
            let _ = supervise::lock(&program).detach();
            return Err(e);
        }
    };
    let log_summary = events.log_summary();
    drop(program);
    drop(events);
    Ok(Outcome {
        footer,
        child,
        probes,
        attach_latencies_ns: latencies_ns,
        log_summary,
        latency,
        process_notices,
    })
}

/// Resolves and plans every chosen binary, one group of sites each.
fn plan_chosen(chosen: &[Chosen<'_>], opts: PlanOptions) -> Result<Planned> {
    let mut p = Planned {
        probes: Vec::new(),
        groups: Vec::new(),
        records: Vec::new(),
        statuses: Vec::new(),
    };
    for c in chosen {
        let r = plan::resolve_target(c.catalogue, &c.binary, &c.path, &c.seen)?;
        // Per process only for --pid; else on the file, every process.
        let r = plan::Resolved {
            target: plan::TargetBinary {
                pids: c.pids.clone(),
                ..r.target
            },
            ..r
        };
        for w in &r.warnings {
            eprintln!("podtrace: {w}");
        }
        let name = &c.catalogue.binary.name;
        for res in &r.target.resolutions {
            p.statuses
                .push((name.clone(), res.probe.clone(), res.status.as_str().into()));
        }
        let first = p.probes.len() as u32;
        let (probes, specs, sites) = plan::plan_from(std::slice::from_ref(&r.target), opts, first)?;
        p.records.push(BinaryRecord {
            first_probe: Some(first),
            probe_count: Some(probes.len() as u32),
            ..r.record
        });
        p.probes.extend(probes);
        p.groups.push((specs, sites));
    }
    Ok(p)
}

/// Attaches each chosen binary's sites as a group of its own, and says
/// what the supervisor needs to look after it; with the links made.
fn attach_groups<'c>(
    program: &mut Program,
    chosen: &[Chosen<'c>],
    groups: &[(Vec<podtrace_common::ProbeSpec>, Vec<Site>)],
) -> Result<(Vec<Initial<'c>>, usize)> {
    let mut initial = Vec::new();
    let mut links = 0;
    for (group, (c, (specs, sites))) in chosen.iter().zip(groups).enumerate() {
        // Held while it is traced: the supervisor sees an in-place rewrite
        // through it, whichever mount namespace its path is in.
        let file = c
            .file
            .try_clone()
            .with_context(|| format!("{}: cannot hold the file", c.path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("{}: cannot stat the file", c.path.display()))?;
        use std::os::unix::fs::MetadataExt as _;
        let key = (meta.dev(), meta.ino());
        links += program.attach_group(group as u32, specs, sites)?.links;
        initial.push(Initial {
            catalogue: c.catalogue,
            key,
            file: Some(file),
            shown: c.path.clone(),
            watch: c.watch.clone(),
            only: c.pids.clone(),
            group: group as u32,
        });
    }
    Ok((initial, links))
}

fn say_attached(
    chosen: &[Chosen<'_>],
    probes: &[ProbeInfo],
    attached: usize,
    links: usize,
    mode: LinkMode,
    why: &str,
    t0: Instant,
) {
    for c in chosen {
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
        "podtrace: attached {attached} uprobes to {} functions in {:.0} ms: {links} links, {} ({why})",
        probes.len(),
        t0.elapsed().as_secs_f64() * 1e3,
        mode.describe()
    );
}

fn header(node_name: &str, binaries: Vec<BinaryRecord>, probes: Vec<ProbeInfo>) -> Header {
    Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        podtrace_version: env!("CARGO_PKG_VERSION").into(),
        hostname: hostname(),
        node_name: node_name.to_string(),
        mono_to_unix_ns: mono_to_unix_offset(),
        started_unix_ns: mono_now() as i64 + mono_to_unix_offset(),
        binaries,
        probes,
    }
}

/// The node's name as uname(2) has it (the UTS namespace's: the node's own
/// with hostNetwork/hostUTS, else the pod's).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Starts the command after `--`, once everything is attached.
fn start(command: &[String]) -> Result<Option<Child>> {
    let Some((cmd, args)) = command.split_first() else {
        return Ok(None);
    };
    Command::new(cmd)
        .args(args)
        .spawn()
        .map(Some)
        .with_context(|| format!("starting `{cmd}`"))
}

#[cfg(test)]
mod tests {
    /// uname's node name is the host name the kernel shows in /proc.
    #[test]
    fn hostname_is_the_kernels() {
        let proc = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        assert_eq!(super::hostname(), proc.trim());
        assert!(!super::hostname().is_empty());
    }
}
