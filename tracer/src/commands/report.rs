//! `podtrace report TRACE…`: per-pod stage tables, poll checks and loop
//! periods; or containerd's CRI log lines (`--journal`). Several files:
//! rotated chains are read as one recording, several nodes are reported
//! per node and pooled, with the nodes compared (analysis/fleet.rs).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    analysis::{
        fleet::{self, by_node, pod_times, pool_reports, read_chain, FleetReport, NodeInput},
        report::Report,
    },
    commands::{args::parse_duration, Format},
    trace::chain::{self, Chain},
};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Traces written by `podtrace record`: files, globs (quote them:
    /// '/var/lib/podtrace/*.trace*') or comma-separated lists. Rotated
    /// files (FILE.2 FILE.1 FILE, from --max-files) are read as one
    /// recording, oldest first, so a pod start cut by a rotation is whole.
    /// Traces of several nodes (the node name in each header: --node-name,
    /// $NODE_NAME or the hostname) give each node's report, every pod with its node, per-node
    /// medians, the pooled distribution and the nodes that differ.
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
    /// Also write a self-contained HTML page with a waterfall per pod.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the waterfalls as one standalone SVG picture.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Print the CRI calls as containerd's log lines would (journalctl -u
    /// containerd), instead of the tables.
    #[arg(long)]
    pub journal: bool,
    /// A call still open after this long is taken to have ended without a
    /// RET (panic, tail call, goroutine exit) and counted as aged out.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub max_open: Duration,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Coverage of the intervals of the node comparison (several nodes).
    #[arg(long, default_value_t = crate::analysis::compare::CONFIDENCE)]
    pub confidence: f64,
}

/// The chains the arguments name (globs expanded, rotated files grouped),
/// with a note on stderr for older rotated files left out.
pub fn chains_of(args: &[PathBuf]) -> Result<Vec<Chain>> {
    let mut files = Vec::new();
    for a in args {
        files.extend(chain::expand_arg(a)?);
    }
    let chains = chain::chains(&files)?;
    for c in &chains {
        let older = chain::older_not_given(c);
        if let Some(oldest) = older.last() {
            eprintln!(
                "podtrace: note: {} has {} older rotated file{} not given (up to {}): give '{}*' to read them as one recording",
                c.base.display(),
                older.len(),
                if older.len() == 1 { "" } else { "s" },
                oldest.display(),
                c.base.display()
            );
        }
    }
    Ok(chains)
}

pub fn run(a: ReportArgs) -> Result<ExitCode> {
    let max_open = a.max_open.as_nanos() as u64;
    let nodes = by_node(chains_of(&a.traces)?);
    if a.journal {
        let many = nodes.len() > 1 || nodes.iter().any(|n| n.chains.len() > 1);
        for n in &nodes {
            for c in &n.chains {
                let (t, corr) = read_chain(c, max_open)?;
                if many {
                    println!("# node {}: {}", n.node, c.base.display());
                }
                print!("{}", crate::analysis::journal::journal(&t, &corr));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut per_node = Vec::new();
    for n in nodes {
        let (r, pods) = node_report(&n, max_open)?;
        per_node.push((n, r, pods));
    }
    if per_node.len() == 1 {
        // One node (one or more recordings): the report as always.
        let Some((_, r, _)) = per_node.pop() else {
            return Ok(ExitCode::SUCCESS);
        };
        match a.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
            Format::Table => print!("{}", r.to_table()),
        }
        crate::html::write_report_pictures(&r, a.html.as_deref(), a.svg.as_deref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let all: Vec<_> = per_node.iter().flat_map(|(_, _, p)| p.clone()).collect();
    for w in fleet::shared_pods(&all) {
        eprintln!("podtrace: warning: {w}");
    }
    let fr = FleetReport::new(per_node, a.confidence);
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&fr.to_json()?)?),
        Format::Table => print!("{}", fr.to_table()),
    }
    if let Some(p) = &a.html {
        std::fs::write(p, crate::html::fleet_report_html(&fr))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let (Some(p), Some(r)) = (&a.svg, fr.pooled()) {
        crate::html::write_report_pictures(&r, None, Some(p))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One node's report (its recordings pooled) and pod starts.
pub fn node_report(n: &NodeInput, max_open_ns: u64) -> Result<(Report, Vec<fleet::PodTime>)> {
    let mut reports = Vec::new();
    let mut pods = Vec::new();
    for c in &n.chains {
        let (t, corr) = read_chain(c, max_open_ns)?;
        reports.push(Report::build(&t, &corr));
        pods.extend(pod_times(&n.node, &corr));
    }
    let r = pool_reports(reports).context("no trace given")?;
    Ok((r, pods))
}
