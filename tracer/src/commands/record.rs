//! `podtrace record`: the command line of [`crate::record`]: arguments in,
//! a [`Config`] out, and the summary printed at the end.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    catalogue::Catalogue,
    commands::args::{format_duration, parse_duration, parse_ring_mib, parse_size},
    live::otlp::OtlpTarget,
    record::{self, bpf, discover::Targets, plan, Config, Outcome},
    trace::Rotation,
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
    /// Stop after this long (e.g. 500ms, 30s, 5m, 1h30m). Default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Trace file to write (JSON Lines, mode 0600).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The Kubernetes node being traced, for the trace header, the
    /// report, the metrics' `node` label and the OTLP resource
    /// (`k8s.node.name`, `host.name`). Default: $NODE_NAME (a DaemonSet sets
    /// it from spec.nodeName: inside a container the hostname is the pod's
    /// name), else the hostname.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Rotate the trace when it reaches this size (e.g. 100M, 1G, 512K;
    /// K, M, G are powers of 1024): FILE is finished with its footer and
    /// renamed FILE.1 (an older FILE.1 becomes FILE.2, and so on) and a new
    /// FILE starts. Every file is a complete trace with the whole probe
    /// table in its header: `podtrace report FILE.3` works on its own.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// With --max-size: keep at most this many files (FILE and FILE.1 to
    /// FILE.N-1), deleting the oldest. Default 10.
    #[arg(long, value_name = "N", requires = "max_size", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_files: Option<u32>,
    /// Ring buffer size in MiB: a power of two from 1 to 1024. The default
    /// holds seconds of a busy kubelet's events (1-20k/s) and keeps the
    /// collector under 40 MB; the ring is locked kernel memory, mapped into
    /// podtrace twice. Raise it (16) for a synthetic storm of 1M+ events/s:
    /// `drops` in the status line says when.
    #[arg(long, default_value = "8", value_parser = parse_ring_mib)]
    pub ring_mib: u32,
    /// A catalogue file (format: tracer/catalogue/kubelet.toml). It replaces
    /// the built-in catalogue of the binary its `[binary] name` names
    /// (kubelet or containerd; the other stays built-in); a file for any
    /// other program is the only catalogue.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
    /// No live status line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Say on stderr which probe, capture and address failed whenever a
    /// capture cannot be read or a string is cut short (the eBPF program's
    /// aya-log; off by default, when it costs nothing). The trace and the
    /// report count these problems either way.
    #[arg(long)]
    pub ebpf_log: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while recording:
    /// histograms of pod start syncs, mount waits, time lost to polling,
    /// stages, CRI calls and loop periods (labels: binary and version, and
    /// result for starts; never a pod), counters of events, drops, starts,
    /// resyncs, re-adoptions after a kubelet restart and poll checks, and
    /// each probe's status. Bind to 127.0.0.1:PORT (say
    /// 127.0.0.1:9464); 0.0.0.0 exposes the node's pod activity to anyone
    /// who can reach the port. No socket is opened without this option.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Send each pod's spans to this OTLP/HTTP receiver as soon as its
    /// start is complete (the spans `export --format otlp` makes), e.g.
    /// http://127.0.0.1:4318 (path defaults to /v1/traces): a DaemonSet
    /// feeds the cluster's Tempo or Jaeger. Sent from a queue of its own;
    /// a receiver too slow to keep up loses pods (counted in
    /// podtrace_otlp_pods_total{result="dropped"}), never events.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// --otlp-endpoint: an extra request header, NAME=VALUE (repeatable).
    #[arg(
        long = "otlp-header",
        value_name = "NAME=VALUE",
        requires = "otlp_endpoint"
    )]
    pub otlp_headers: Vec<String>,
    /// --otlp-endpoint over https: also trust this CA certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "otlp_endpoint")]
    pub otlp_ca_cert: Option<PathBuf>,
    /// Which probe sites to attach (for measuring their cost).
    #[arg(long, value_enum, default_value = "both", hide = true)]
    pub sites: Sites,
    /// Put entry probes on the first instruction instead of the prologue's
    /// stack-check jump (for measuring the difference).
    #[arg(long, hide = true)]
    pub entry_at_function_start: bool,
    /// How uprobes are linked: one uprobe_multi link per binary and
    /// process where the kernel has them with a process-wide pid filter
    /// (6.10+), else one perf-event link per site (for measuring and
    /// testing the fallback).
    #[arg(long, value_enum, default_value = "auto", hide = true)]
    pub links: Links,
    /// Command to start once the probes are attached; recording stops when it exits.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--sites`: which probe sites of each function to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sites {
    Both,
    Entry,
    Exit,
}

/// `--links`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Links {
    Auto,
    Multi,
    PerSite,
}

/// `--max-files` when only `--max-size` is given.
pub const DEFAULT_MAX_FILES: u32 = 10;

fn otlp_target(a: &RecordArgs) -> Result<Option<OtlpTarget>> {
    let Some(endpoint) = &a.otlp_endpoint else {
        return Ok(None);
    };
    let headers = a
        .otlp_headers
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("--otlp-header {h}: expected NAME=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(OtlpTarget {
        endpoint: endpoint.clone(),
        headers,
        ca_cert: a.otlp_ca_cert.clone(),
        timeout: Duration::from_secs(10),
        retries: 3,
    }))
}

/// `--node-name`, else a non-empty `$NODE_NAME`, else the hostname.
pub fn node_name(
    flag: Option<String>,
    env: Option<String>,
    hostname: impl FnOnce() -> String,
) -> String {
    flag.or(env)
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(hostname)
}

fn config(a: RecordArgs) -> Result<Config> {
    Ok(Config {
        node_name: node_name(
            a.node_name.clone(),
            std::env::var("NODE_NAME").ok(),
            record::hostname,
        ),
        catalogue: Catalogue::load(a.catalogue.as_deref())?,
        otlp: otlp_target(&a)?,
        rotation: a.max_size.map(|max_bytes| Rotation {
            max_bytes,
            max_files: a.max_files.unwrap_or(DEFAULT_MAX_FILES),
        }),
        plan: plan::PlanOptions {
            sites: match a.sites {
                Sites::Both => plan::SiteSelection::Both,
                Sites::Entry => plan::SiteSelection::Entry,
                Sites::Exit => plan::SiteSelection::Exit,
            },
            entry_at_function_start: a.entry_at_function_start,
        },
        links: match a.links {
            Links::Auto => bpf::LinkRequest::Auto,
            Links::Multi => bpf::LinkRequest::Multi,
            Links::PerSite => bpf::LinkRequest::PerSite,
        },
        targets: Targets {
            kubelet: a.kubelet,
            containerd: a.containerd,
            pids: a.pid,
            command: a.command,
        },
        output: a.output,
        duration: a.duration,
        ring_bytes: a.ring_mib << 20,
        status: !a.quiet,
        ebpf_log: a.ebpf_log,
        metrics: a.metrics,
    })
}

pub fn run(a: RecordArgs) -> Result<ExitCode> {
    let cfg = config(a)?;
    let out = record::record(&cfg)?;
    summary(&cfg, &out);
    Ok(match out.child {
        Some(st) if !st.success() => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    })
}

fn summary(cfg: &Config, out: &Outcome) {
    for l in &out.log_summary {
        eprintln!("{l}");
    }
    let f = &out.footer;
    eprintln!(
        "podtrace: stopped ({}) after {}: {} events, {} dropped, written to {}",
        f.stopped_by,
        format_duration(Duration::from_nanos(f.duration_ns)),
        f.events,
        f.drops,
        cfg.output.display()
    );
    let l = &out.latency;
    if l.count > 0 {
        let ms = |ns: u64| ns as f64 / 1e6;
        eprintln!(
            "podtrace: probe hit to written: median under {:.1} ms, p99 under {:.1} ms, max {:.1} ms",
            ms(l.quantile_ns(0.5)),
            ms(l.quantile_ns(0.99)),
            ms(l.max_ns)
        );
    }
    if let Some((notices, scans)) = out.process_notices {
        eprintln!(
            "podtrace: processes followed by {notices} exec/exit notices and {scans} full reads of /proc"
        );
    }
    let mut lat = out.attach_latencies_ns.clone();
    if !lat.is_empty() {
        lat.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        eprintln!(
            "podtrace: attached to {} binaries while recording, seen to attached min {:.1} ms, median {:.1} ms, max {:.1} ms",
            lat.len(),
            ms(lat[0]),
            ms(lat[lat.len() / 2]),
            ms(lat[lat.len() - 1])
        );
    }
    for c in &f.capture_problems {
        let p = out.probes.get(c.probe as usize);
        eprintln!(
            "podtrace: warning: {} {} {} capture `{}`: {} failed, {} truncated{}",
            p.map_or("?", |p| p.binary.as_str()),
            p.map_or("?", |p| p.probe.as_str()),
            c.site,
            c.capture,
            c.failed,
            c.truncated,
            if cfg.ebpf_log {
                ""
            } else {
                " (--ebpf-log says which addresses)"
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::node_name;

    #[test]
    fn node_name_is_the_flag_then_node_name_then_the_hostname() {
        let host = || "pod-abc".to_string();
        assert_eq!(node_name(Some("n1".into()), Some("n2".into()), host), "n1");
        assert_eq!(node_name(None, Some(" n2\n".into()), host), "n2");
        assert_eq!(node_name(None, Some(String::new()), host), "pod-abc");
        assert_eq!(node_name(None, None, host), "pod-abc");
    }
}
