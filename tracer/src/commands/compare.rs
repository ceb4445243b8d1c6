//! `podtrace compare A B [more…]`: stage distributions of several runs, the
//! shifts against the first with their intervals and verdicts, what the
//! first predicts for the others' intervals, and the polling and loop
//! findings side by side.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    analysis::compare::{compare_with, CompareOptions, Run},
    analysis::fleet::{
        by_node, fleet, pod_times, pool_runs, read_chain, run_name, Fleet, NodeInput, NodePods,
        NODE_MIN_EFFECT,
    },
    analysis::split,
    analysis::stats::MinEffect,
    commands::report::chains_of,
    correlate::MAX_SPAN_AGE_NS,
    html,
    trace::chain::Chain,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// One run per TRACE, the first the baseline the others are compared
    /// against. A run is one trace file or several: a glob (quote it:
    /// 'default/*.trace*'), a comma-separated list, or both. Rotated files
    /// (FILE.2 FILE.1 FILE) are read as one recording; the pods of several
    /// nodes (the node name in each header) are pooled into the run, with
    /// per-node medians and the nodes that differ shown below the
    /// comparison.
    #[arg(required = true, value_name = "TRACE")]
    pub traces: Vec<PathBuf>,
    /// Name a run: LABEL=TRACE (TRACE as given, glob or list included),
    /// or just LABEL for the runs in order. Default: the trace's file name
    /// without its extension; for several files, the directory they share.
    #[arg(long = "label", value_name = "LABEL=TRACE")]
    pub labels: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: CompareFormat,
    /// Also write the stage distributions of every run side by side as a
    /// self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write them as a standalone SVG picture.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// A difference counts only if the shift is at least this % of the
    /// baseline's p50 ...
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    pub min_effect_pct: f64,
    /// ... and at least this many ms.
    #[arg(long, value_name = "MS", default_value_t = 1.0)]
    pub min_effect_ms: f64,
    /// Coverage of the intervals.
    #[arg(long, default_value_t = crate::analysis::compare::CONFIDENCE)]
    pub confidence: f64,
    /// Use this stage as a control (repeatable): one the compared change
    /// cannot touch, whose shift between the runs measures their drift.
    /// Default: chosen from which binary changed between the runs (two
    /// kubelet builds: containerd's own CRI calls; two containerd builds:
    /// kubelet's mount wait). See docs/compare.md, "Drift".
    #[arg(long = "control", value_name = "STAGE")]
    pub controls: Vec<String>,
    /// Split one trace into runs: `build` gives one run per build of the
    /// binary that was swapped at its path while recording (the
    /// interleaved experiment: default and tuned kubelet in ABBA blocks
    /// under one `podtrace record`). Labels (--label) go to the builds in
    /// the order they first ran.
    #[arg(long, value_enum, value_name = "HOW")]
    pub split_by: Option<SplitBy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitBy {
    Build,
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
}

/// One label per trace, from `--label` or the file name.
pub fn labels_for(traces: &[PathBuf], given: &[String]) -> Result<Vec<String>> {
    labels_with_defaults(traces, given, &[])
}

/// As [`labels_for`], a run without `--label` named by `defaults` where
/// that has a name for it (a run of several files), else by its file name.
pub fn labels_with_defaults(
    traces: &[PathBuf],
    given: &[String],
    defaults: &[Option<String>],
) -> Result<Vec<String>> {
    let mut labels: Vec<Option<String>> = vec![None; traces.len()];
    let mut next_unnamed = 0;
    for g in given {
        match g.split_once('=') {
            Some((label, file)) => {
                let file = Path::new(file);
                let Some(i) = traces.iter().position(|t| same_file(t, file)) else {
                    bail!(
                        "--label {g}: {} is not one of the traces given ({})",
                        file.display(),
                        traces
                            .iter()
                            .map(|t| t.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                };
                labels[i] = Some(label.to_string());
            }
            None => {
                while labels.get(next_unnamed).is_some_and(Option::is_some) {
                    next_unnamed += 1;
                }
                let Some(slot) = labels.get_mut(next_unnamed) else {
                    bail!("--label {g}: more labels than traces ({})", traces.len());
                };
                *slot = Some(g.clone());
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for (i, (t, l)) in traces.iter().zip(labels).enumerate() {
        let l = l.or_else(|| defaults.get(i).cloned().flatten());
        let mut l = l.unwrap_or_else(|| {
            t.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| t.display().to_string())
        });
        if l.is_empty() {
            bail!("{}: empty label", t.display());
        }
        // Two runs read the same in every table: number the later one.
        let base = l.clone();
        let mut n = 2;
        while out.contains(&l) {
            l = format!("{base}#{n}");
            n += 1;
        }
        out.push(l);
    }
    Ok(out)
}

/// The runs of `--split-by build`: one per build, labelled in order.
fn split_runs(args: &CompareArgs) -> Result<Vec<Run>> {
    let [path] = args.traces.as_slice() else {
        bail!(
            "--split-by build takes one trace (an interleaved recording), got {}",
            args.traces.len()
        );
    };
    let parts = split::split_by_build(path)?;
    let blocks = split::blocks(&parts);
    if args.labels.len() > parts.len() || args.labels.iter().any(|l| l.contains('=')) {
        bail!(
            "--split-by build: give at most {} plain labels, one per build in the order they ran",
            parts.len()
        );
    }
    Ok(parts
        .iter()
        .zip(blocks)
        .enumerate()
        .map(|(i, (p, blocks))| {
            let label = args
                .labels
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("build {}", p.identity.build()));
            let source = format!(
                "{} [{} {}, {blocks} block{}]",
                path.display(),
                p.binary,
                p.identity.describe(),
                if blocks == 1 { "" } else { "s" }
            );
            Run::started_only(&label, &source, &p.info, &p.corr)
        })
        .collect())
}

pub fn run(args: CompareArgs) -> Result<ExitCode> {
    let mut fleets: Vec<RunFleet> = Vec::new();
    let runs = if args.split_by.is_some() {
        split_runs(&args)?
    } else {
        if args.traces.len() < 2 {
            bail!(
                "compare needs at least two traces (the first is the baseline), got {}; \
                 one trace of an interleaved experiment: --split-by build",
                args.traces.len()
            );
        }
        let mut inputs = Vec::new();
        for arg in &args.traces {
            inputs.push(by_node(chains_of(std::slice::from_ref(arg))?));
        }
        let defaults: Vec<Option<String>> = args
            .traces
            .iter()
            .zip(&inputs)
            .map(|(arg, nodes)| {
                let chains: Vec<Chain> = nodes.iter().flat_map(|n| n.chains.clone()).collect();
                let plain =
                    chains.len() == 1 && chains[0].files.len() == 1 && chains[0].base == *arg;
                if plain {
                    None
                } else {
                    run_name(&chains)
                }
            })
            .collect();
        let labels = labels_with_defaults(&args.traces, &args.labels, &defaults)?;
        let mut runs = Vec::new();
        for ((arg, nodes), label) in args.traces.iter().zip(inputs).zip(&labels) {
            let (run, f) = fleet_run(label, arg, &nodes, args.confidence)?;
            runs.push(run);
            fleets.extend(f.map(|fleet| RunFleet {
                run: label.clone(),
                fleet,
            }));
        }
        runs
    };
    if !(args.min_effect_pct >= 0.0 && args.min_effect_ms >= 0.0) {
        bail!("--min-effect-pct and --min-effect-ms must be >= 0");
    }
    let cmp = compare_with(
        &runs,
        &CompareOptions {
            confidence: args.confidence,
            min_effect: MinEffect {
                min_pct: args.min_effect_pct,
                min_ms: args.min_effect_ms,
            },
            controls: args.controls.clone(),
        },
    )?;
    let text = match args.format {
        CompareFormat::Table => {
            let mut t = cmp.to_table();
            for f in &fleets {
                t.push_str(&format!("\nrun {}: ", f.run));
                t.push_str(&f.fleet.to_table());
            }
            t
        }
        CompareFormat::Json if fleets.is_empty() => serde_json::to_string_pretty(&cmp)? + "\n",
        CompareFormat::Json => {
            // The comparison's JSON with one more field: per run of several
            // nodes, its node comparison.
            let mut v = serde_json::to_value(&cmp)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("fleet".into(), serde_json::to_value(&fleets)?);
            }
            serde_json::to_string_pretty(&v)? + "\n"
        }
    };
    // Closed early (`| head`): not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).context("writing standard output")
        }
        _ => {}
    }
    if let Some(p) = &args.html {
        std::fs::write(p, html::compare_html(&cmp))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.svg {
        std::fs::write(p, html::compare_svg(&cmp))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One run's node comparison (a run of several nodes).
#[derive(Debug, serde::Serialize)]
pub struct RunFleet {
    pub run: String,
    #[serde(flatten)]
    pub fleet: Fleet,
}

/// One run of the comparison from its nodes' chains: every chain read as
/// one recording, the nodes' pods pooled; with several nodes, their
/// comparison too.
pub fn fleet_run(
    label: &str,
    arg: &Path,
    nodes: &[NodeInput],
    confidence: f64,
) -> Result<(Run, Option<Fleet>)> {
    let files: usize = nodes
        .iter()
        .flat_map(|n| &n.chains)
        .map(|c| c.files.len())
        .sum();
    let source = if files == 1 {
        nodes
            .iter()
            .flat_map(|n| n.files())
            .next()
            .unwrap_or_else(|| arg.display().to_string())
    } else {
        format!(
            "{} [{} file{}, {} node{}]",
            arg.display(),
            files,
            if files == 1 { "" } else { "s" },
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        )
    };
    let mut node_runs = Vec::new();
    let mut node_pods = Vec::new();
    for n in nodes {
        let mut parts = Vec::new();
        let mut pods = Vec::new();
        for c in &n.chains {
            let (trace, corr) = read_chain(c, MAX_SPAN_AGE_NS)?;
            parts.push(Run::new(label, &source, &trace, &corr));
            pods.extend(pod_times(&n.node, &corr));
        }
        node_runs.push(pool_runs(label, &source, parts).context("no trace given")?);
        node_pods.push(NodePods {
            node: n.node.clone(),
            files: n.files(),
            pods,
        });
    }
    let run = pool_runs(label, &source, node_runs).context("no trace given")?;
    let fleet = (node_pods.len() > 1).then(|| fleet(&node_pods, confidence, NODE_MIN_EFFECT));
    Ok((run, fleet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_default_to_file_stems_and_can_be_given() -> Result<()> {
        let t = vec![
            PathBuf::from("a/default.trace"),
            PathBuf::from("b/tuned.trace"),
        ];
        assert_eq!(labels_for(&t, &[])?, ["default", "tuned"]);
        assert_eq!(
            labels_for(&t, &["x=b/tuned.trace".into()])?,
            ["default", "x"]
        );
        assert_eq!(labels_for(&t, &["p".into(), "q".into()])?, ["p", "q"]);
        let same = vec![PathBuf::from("a/run.trace"), PathBuf::from("b/run.trace")];
        assert_eq!(labels_for(&same, &[])?, ["run", "run#2"]);
        let e = labels_for(&t, &["x=nope.trace".into()])
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not one of the traces")));
        assert!(labels_for(&t, &["a".into(), "b".into(), "c".into()]).is_err());
        Ok(())
    }

    #[test]
    fn runs_of_several_files_are_named_by_their_directory_unless_labelled() -> Result<()> {
        let t = vec![
            PathBuf::from("default/*.trace*"),
            PathBuf::from("tuned/*.trace*"),
        ];
        let d = [Some("default".to_string()), Some("tuned".to_string())];
        assert_eq!(labels_with_defaults(&t, &[], &d)?, ["default", "tuned"]);
        assert_eq!(
            labels_with_defaults(&t, &["new=tuned/*.trace*".into()], &d)?,
            ["default", "new"]
        );
        assert_eq!(labels_with_defaults(&t, &[], &[None, None])?, ["*", "*#2"]);
        Ok(())
    }
}
