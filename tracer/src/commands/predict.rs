//! `podtrace predict TRACE --poll 30ms --populate 10ms --reconcile 10ms
//! --relist 100ms` (or `--like tuned.trace`): from a trace of kubelet, the
//! mount wait, time lost to polling and sync its pods would have had with
//! other intervals. The model: crate::analysis::predict and docs/compare.md.

use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{bail, Context as _, Result};

use crate::{
    analysis::drift,
    analysis::predict::{self, Intervals, Prediction, StageNames},
    analysis::report::Report,
    analysis::stats,
    commands::{args::parse_duration, Format},
    correlate::load_correlated,
};

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Trace written by `podtrace record` (kubelet with its current intervals).
    pub trace: PathBuf,
    /// The mount wait's poll interval (podAttachAndMountRetryInterval).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub poll: Option<Duration>,
    /// The volume populator's period (desiredStateOfWorldPopulatorLoopSleepPeriod).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub populate: Option<Duration>,
    /// The volume reconciler's period (reconcilerLoopSleepPeriod).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub reconcile: Option<Duration>,
    /// The PLEG relist period.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub relist: Option<Duration>,
    /// Take the intervals from this trace (what it shows: the configured
    /// poll interval, the loops' observed periods); the flags above win.
    #[arg(long, value_name = "TRACE")]
    pub like: Option<PathBuf>,
    /// Pods per predicted run, for the interval of its median (default:
    /// the trace's pod count, or that of --like).
    #[arg(long, value_name = "N")]
    pub pods: Option<usize>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e3)
}

/// The prediction the arguments ask for.
pub fn prediction(args: &PredictArgs) -> Result<Prediction> {
    let (trace, corr) = load_correlated(&args.trace)?;
    let report = Report::build(&trace, &corr);
    if report.pods.is_empty() {
        bail!(
            "{}: no pods in this trace, nothing to predict",
            args.trace.display()
        );
    }
    let models = predict::models(&report, &corr);
    if models.is_empty() {
        bail!(
            "{}: no pod sync in this trace (containerd alone?): the model follows kubelet's mount wait",
            args.trace.display()
        );
    }
    let from = Intervals::of_report(&report);
    let mut to = Intervals::default_none();
    let mut n = models.len();
    if let Some(like) = &args.like {
        let (t, c) = load_correlated(like)?;
        let r = Report::build(&t, &c);
        to = Intervals::of_report(&r);
        n = predict::models(&r, &c).len().max(1);
    }
    let given = Intervals {
        poll_ms: ms(args.poll),
        populate_ms: ms(args.populate),
        reconcile_ms: ms(args.reconcile),
        relist_ms: ms(args.relist),
    };
    if [
        given.poll_ms,
        given.populate_ms,
        given.reconcile_ms,
        given.relist_ms,
    ]
    .iter()
    .flatten()
    .any(|v| *v <= 0.0)
    {
        bail!("intervals must be longer than 0");
    }
    let to = to.with(&given);
    if args.like.is_none() && to == Intervals::default_none() {
        bail!("give the intervals to predict for: --poll, --populate, --reconcile, --relist, or --like TRACE");
    }
    // A future run drifts from this one by an amount of its own: taken as
    // 0 ± what this run drifted within itself.
    let drift = drift::within_run(&report, predict::CONFIDENCE).and_then(|d| {
        let z = stats::z_for(predict::CONFIDENCE);
        let half = (d.log_high? - d.log_low?) / (2.0 * z);
        Some(predict::DriftModel::new(
            0.0,
            (d.log_shift.powi(2) + half.powi(2)).sqrt(),
            format!(
                "none known; taken as 0 ± what this run drifted within itself ({}: {:+.1}%)",
                d.controls.reason, d.shift_pct
            ),
        ))
    });
    let p = predict::predict(
        &args.trace.display().to_string(),
        &StageNames::of(&corr),
        &models,
        from,
        to,
        args.pods.unwrap_or(n),
        predict::SEED,
        drift.as_ref(),
    );
    if let Some(why) = p.refusal() {
        bail!(why);
    }
    Ok(p)
}

pub fn run(args: PredictArgs) -> Result<ExitCode> {
    let p = prediction(&args)?;
    let text = match args.format {
        Format::Table => p.to_table(),
        Format::Json => serde_json::to_string_pretty(&p)? + "\n",
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing standard output")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
