//! The `podtrace` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podtrace::commands::{compare, export, predict, probes, record, report};

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
///   podtrace predict default.trace --poll 30ms --populate 10ms --reconcile 10ms
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
    Probes(probes::ProbesArgs),
    /// Attach to kubelet and/or containerd and write a trace until
    /// --duration, Ctrl-C, or the command given after `--` exits.
    ///
    /// A traced process that exits does not stop the recording. Restarts
    /// are traced and noted; a binary replaced at its path (a new file
    /// renamed over it) is re-attached within about a second, the time it
    /// was not traced noted in the trace; without --kubelet/--containerd/
    /// --pid, a kubelet or containerd started later is picked up too.
    /// --kubelet PATH works before any kubelet runs. The trace is mode 0600.
    ///
    /// Examples:
    ///   podtrace record --kubelet /usr/bin/kubelet --duration 30s -o a.trace
    ///   podtrace record --pid $(pidof kubelet) -o a.trace
    ///   podtrace record -o a.trace            (finds running kubelet/containerd)
    ///   podtrace record --kubelet /usr/bin/kubelet --containerd /usr/bin/containerd -o a.trace
    ///   podtrace record -o a.trace -- ./kubelet --preset tuned
    ///   podtrace record -o /var/lib/podtrace/node.trace --max-size 100M --max-files 10
    #[command(verbatim_doc_comment)]
    Record(record::RecordArgs),
    /// Per-pod stage tables, the mount wait's poll checks and the loop periods
    /// of a recorded trace, or of many: rotated files read as one recording,
    /// several nodes' traces reported per node and pooled, with the node
    /// that differs.
    ///
    /// Examples:
    ///   podtrace report start.trace
    ///   podtrace report '/var/lib/podtrace/node.trace*'     (FILE.N … FILE.1 FILE)
    ///   podtrace report 'traces/*.trace*' --html nodes.html (one trace per node)
    #[command(verbatim_doc_comment)]
    Report(report::ReportArgs),
    /// Compare runs (e.g. default vs tuned), stage by stage, with verdicts.
    ///
    /// Per stage count, p50/p90/p99, mean; against the first run the
    /// Hodges-Lehmann shift with its Mann-Whitney interval and a verdict
    /// (faster, slower, no clear difference, too few samples); pods by mount
    /// wait; what the first run predicts for each other run's intervals;
    /// polling and loops side by side. Method: docs/compare.md.
    ///
    /// Each TRACE is one run: a file, a quoted glob ('default/*.trace*') or
    /// a comma list, so a run can be many nodes' traces and rotated files;
    /// each such run's per-node medians and the node that differs are shown
    /// below the comparison.
    Compare(compare::CompareArgs),
    /// What-if: the mount wait, time lost to polling and sync the pods of a
    /// trace would have had with other kubelet intervals.
    ///
    /// Examples:
    ///   podtrace predict default.trace --poll 30ms --populate 10ms --reconcile 10ms --relist 100ms
    ///   podtrace predict default.trace --like tuned.trace
    #[command(verbatim_doc_comment)]
    Predict(predict::PredictArgs),
    /// Export a trace as Chrome trace-event JSON (Perfetto), OTLP traces
    /// (JSON file or OTLP/HTTP push) or CSV.
    Export(export::ExportArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Probes(a) => probes::run(a),
        Cmd::Record(a) => record::run(a),
        Cmd::Report(a) => report::run(a),
        Cmd::Compare(a) => compare::run(a),
        Cmd::Predict(a) => predict::run(a),
        Cmd::Export(a) => export::run(a),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podtrace: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
