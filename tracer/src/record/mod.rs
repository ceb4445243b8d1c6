//! Recording: the pipeline from "what to trace" to a finished trace file.
//!
//! [`record`] reads top-down as the stages run:
//! [`discover`] (which binaries) → [`plan`] (resolve them against the
//! catalogue: probe table, specs, sites) → [`bpf`] (load the program,
//! attach one group of links per file) → the trace [`Writer`] → the
//! [`supervise`]or (restarts, replaced binaries, late starters) → [`drain`]
//! (ring buffer → trace, until a stop) → [`Outcome`].
//!
//! A library: no command-line parsing here ([`crate::commands::record`]
//! turns arguments into a [`Config`] and prints the outcome). Each stage
//! uses only the ones before it; none of them knows about the commands.

pub mod bpf;
pub mod discover;
pub mod drain;
pub mod ebpf_log;
pub mod plan;
pub mod supervise;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    catalogue::Catalogue,
    clock::{mono_now, mono_to_unix_offset},
    format::{BinaryRecord, Footer, Header, ProbeInfo, FORMAT, FORMAT_VERSION},
    live::{self, metrics::Metrics, otlp::OtlpTarget},
    trace::{Rotation, Writer},
};
use bpf::Loaded;
use discover::{file_key, Chosen, Targets};
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
}

/// What planning made of the chosen binaries: all of it owned, so that the
/// binaries (read whole, ~100 MB for a kubelet) can be let go of before
/// recording.
struct Planned {
    probes: Vec<ProbeInfo>,
    specs: Vec<podtrace_common::ProbeSpec>,
    /// One group of sites per chosen binary: released together when its
    /// file is replaced.
    groups: Vec<Vec<Site>>,
    records: Vec<BinaryRecord>,
    /// Catalogue binary name → component version (the metrics' label).
    versions: HashMap<String, String>,
    /// (binary, probe, status) of every catalogue probe.
    statuses: Vec<(String, String, String)>,
}

/// Records until the duration passes, a signal arrives or the command of
/// `cfg.targets` (started once the probes are attached) exits.
pub fn record(cfg: &Config) -> Result<Outcome> {
    let chosen = discover::choose(&cfg.targets, &cfg.catalogue)?;
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
    let mut loaded = bpf::load(cfg.ring_bytes, &planned.specs, logger)?;
    let initial = attach_groups(&mut loaded, &chosen, &planned.groups)?;
    let mut supervisor = Supervisor::new(&cfg.catalogue, cfg.plan, cfg.targets.discover(), initial);
    say_attached(&chosen, &planned.probes, loaded.attached);
    let header = header(&cfg.node_name, planned.records, planned.probes.clone());
    let writer = Writer::create_rotating(&cfg.output, &header, cfg.rotation)?;
    // The probes are attached and described: the binaries' files are not
    // needed while recording.
    drop(chosen);
    let child = start(&cfg.targets.command)?;
    eprintln!("podtrace: recording to {}", cfg.output.display());
    let mut live = match &metrics {
        Some(m) => Some(live::Live::new(
            Arc::clone(m),
            &header,
            &planned.versions,
            cfg.otlp.clone(),
        )?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let (Some(l), Some(m)) = (listener, &metrics) {
        eprintln!(
            "podtrace: metrics at http://{}/metrics",
            l.local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string())
        );
        rt.spawn(live::server::serve(l, Arc::clone(m)));
    }
    let opts = drain::Options {
        duration: cfg.duration,
        drain_every: Duration::from_millis(20),
        status: cfg.status,
    };
    let mut probes = planned.probes;
    let recorded = rt.block_on(drain::run(
        &mut loaded,
        &mut probes,
        writer,
        child,
        &opts,
        Some(&mut supervisor),
        live.as_mut().map(|l| l as &mut dyn drain::Consumer),
    ));
    let (footer, child) = match recorded {
        Ok(r) => r,
        Err(e) => {
            // A full disk, say: the uprobes go now, closed in parallel
            // (dropping them one by one takes a grace period each).
            let _ = loaded.detach();
            return Err(e);
        }
    };
    let log_summary = loaded.log_summary();
    drop(loaded);
    Ok(Outcome {
        footer,
        child,
        probes,
        attach_latencies_ns: supervisor.latencies_ns.clone(),
        log_summary,
    })
}

/// Resolves and plans every chosen binary, one group of sites each.
fn plan_chosen(chosen: &[Chosen<'_>], opts: PlanOptions) -> Result<Planned> {
    let mut p = Planned {
        probes: Vec::new(),
        specs: Vec::new(),
        groups: Vec::new(),
        records: Vec::new(),
        versions: HashMap::new(),
        statuses: Vec::new(),
    };
    for c in chosen {
        let r = plan::resolve_target(c.catalogue, &c.binary, &c.path, &c.pids)?;
        for w in &r.warnings {
            eprintln!("podtrace: {w}");
        }
        let name = &c.catalogue.binary.name;
        p.versions
            .insert(name.clone(), plan::component_version(&c.binary));
        for res in &r.target.resolutions {
            p.statuses
                .push((name.clone(), res.probe.clone(), res.status.as_str().into()));
        }
        let (probes, specs, sites) =
            plan::plan_from(std::slice::from_ref(&r.target), opts, p.probes.len() as u32)?;
        p.probes.extend(probes);
        p.specs.extend(specs);
        p.groups.push(sites);
        p.records.push(r.record);
    }
    Ok(p)
}

/// Attaches each chosen binary's sites as a group of its own, and says
/// what the supervisor needs to look after it.
fn attach_groups<'c>(
    loaded: &mut Loaded,
    chosen: &[Chosen<'c>],
    groups: &[Vec<Site>],
) -> Result<Vec<Initial<'c>>> {
    let mut initial = Vec::new();
    for (group, (c, sites)) in chosen.iter().zip(groups).enumerate() {
        loaded.attach_group(sites, group as u32, |_, _| {})?;
        let key = file_key(&c.path)
            .with_context(|| format!("{}: cannot stat the file", c.path.display()))?;
        initial.push(Initial {
            catalogue: c.catalogue,
            key,
            watch: c.watch.clone(),
            only: c.pids.clone(),
            group: group as u32,
        });
    }
    Ok(initial)
}

fn say_attached(chosen: &[Chosen<'_>], probes: &[ProbeInfo], attached: usize) {
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
        "podtrace: attached {attached} uprobes to {} functions",
        probes.len()
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

/// The kernel's hostname (in a container, the pod's name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
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
