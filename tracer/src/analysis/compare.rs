//! Comparing runs (say kubelet's default intervals against tuned ones): per
//! stage the distribution of durations over pods, and against the first run
//! the Hodges–Lehmann shift with its Mann–Whitney interval (exact for small
//! samples), called a difference only when the interval excludes 0 and the
//! shift is at least a minimal effect. Pods are classified by their mount
//! wait; mount wait and time lost to polling count the pods that waited.
//! Beside each run: what the baseline predicts for that run's intervals.
//! Method: docs/compare.md.
//!
//! Uses [`super::pods`], [`super::stats`] and shows [`super::predict`]'s
//! output; predict never uses compare.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{bail, Result};
use serde::Serialize;

use super::{
    drift::{self, BuildChange, Drift, Net},
    pods::{pod_windows, STAGE_LOST, STAGE_POD},
    predict::{self, ClassShares, Intervals, PodModel, Predicted, StageNames},
    report::{percentile, MountClass, Report},
    stats::{self, MinEffect, Verdict},
};
use crate::{correlate::Correlated, format::BinaryIdentity, trace::TraceMeta};

pub const COMPARE_VERSION: u32 = 2;
/// Coverage of the intervals.
pub const CONFIDENCE: f64 = 0.95;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// Count, nearest-rank percentiles, mean; None for no values.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let (&min, &max) = (v.first()?, v.last()?);
    Some(Summary {
        n: v.len(),
        p50: percentile(&v, 50.0)?,
        p90: percentile(&v, 90.0)?,
        p99: percentile(&v, 99.0)?,
        mean: v.iter().sum::<f64>() / v.len() as f64,
        min,
        max,
    })
}

/// Pods of a run per mount-wait class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    pub waited: usize,
    pub already_mounted: usize,
    pub no_volumes: usize,
    pub unknown: usize,
    /// Pods with no mount wait in the trace (e.g. containerd alone).
    pub no_mount_wait: usize,
}

impl ClassCounts {
    /// (what, count) for the tables, in a fixed order.
    pub fn rows(&self) -> [(&'static str, usize); 5] {
        [
            (MountClass::Waited.describe(), self.waited),
            (MountClass::AlreadyMounted.describe(), self.already_mounted),
            (MountClass::NoVolumes.describe(), self.no_volumes),
            (MountClass::Unknown.describe(), self.unknown),
            ("no mount wait traced", self.no_mount_wait),
        ]
    }

    fn add(&mut self, c: Option<MountClass>) {
        match c {
            Some(MountClass::Waited) => self.waited += 1,
            Some(MountClass::AlreadyMounted) => self.already_mounted += 1,
            Some(MountClass::NoVolumes) => self.no_volumes += 1,
            Some(MountClass::Unknown) => self.unknown += 1,
            None => self.no_mount_wait += 1,
        }
    }
}

/// One recorded run, reduced to what the comparison needs.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub source: String,
    pub report: Report,
    pub podtrace_version: String,
    /// Per stage, its durations in ms (one per occurrence in a pod's start
    /// sync; mount wait and lost to polling only of pods that waited).
    pub samples: BTreeMap<String, Vec<f64>>,
    /// Stage names in the order they first appear in a pod start.
    pub order: Vec<String>,
    /// Stage occurrences left out because their exit was never seen.
    pub no_exit: usize,
    pub classes: ClassCounts,
    /// The stages whose samples count only pods that waited for a poll tick.
    pub waited_only: Vec<String>,
    /// What the prediction model keeps of each pod start.
    pub models: Vec<PodModel>,
    pub names: StageNames,
    /// The poll interval and loop periods this run shows.
    pub intervals: Intervals,
    /// Stage → catalogue binary of its probe ("RunPodSandbox" → containerd).
    pub stage_binary: BTreeMap<String, String>,
    /// The builds of each traced binary the trace names.
    pub builds: BTreeMap<String, Vec<BinaryIdentity>>,
}

impl Run {
    pub fn new(label: &str, source: &str, trace: &dyn TraceMeta, corr: &Correlated) -> Run {
        Run::build(label, source, trace, corr, false)
    }

    /// A run of only the pods whose start sync `corr` holds: one build's
    /// share of an interleaved trace, where the runtime's calls of the
    /// other builds' pods are in `corr` too.
    pub fn started_only(
        label: &str,
        source: &str,
        trace: &dyn TraceMeta,
        corr: &Correlated,
    ) -> Run {
        Run::build(label, source, trace, corr, true)
    }

    fn build(
        label: &str,
        source: &str,
        trace: &dyn TraceMeta,
        corr: &Correlated,
        started_only: bool,
    ) -> Run {
        let mut report = Report::build(trace, corr);
        let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut order = vec![STAGE_POD.to_string()];
        let mut no_exit = 0;
        let mut add = |order: &mut Vec<String>, name: &str, v: Option<f64>| {
            if !order.iter().any(|o| o == name) {
                order.push(name.to_string());
            }
            match v {
                Some(v) => samples.entry(name.to_string()).or_default().push(v),
                None => no_exit += 1,
            }
        };
        let windows = pod_windows(corr);
        if started_only {
            report
                .pods
                .retain(|p| windows.iter().any(|w| w.uid == p.uid));
        }
        let pod_reports = report.pods_by_uid();
        let mut window_of = std::collections::HashMap::new();
        for w in &windows {
            window_of.entry(w.uid.as_str()).or_insert(w);
        }
        for w in &windows {
            if pod_reports.contains_key(w.uid.as_str()) {
                add(
                    &mut order,
                    STAGE_POD,
                    w.end.map(|e| ms(e.saturating_sub(w.start))),
                );
            }
        }
        let names = StageNames::of(corr);
        let mut classes = ClassCounts::default();
        for p in &report.pods {
            let class = p.mount_wait.as_ref().map(|m| m.class);
            if window_of.contains_key(p.uid.as_str()) {
                classes.add(class);
            }
            // (start ms after the start sync's start, stage, duration)
            let mut rows: Vec<(f64, &str, Option<f64>)> = p
                .stages
                .iter()
                .map(|r| (r.start_ms, r.stage.as_str(), r.duration_ms))
                .collect();
            // The container runtime's CRI handlers (another process, joined
            // to the pod by the report): those during the pod's start, or all
            // of them for a pod that has no sync in the trace.
            let until = window_of
                .get(p.uid.as_str())
                .map(|w| w.end.map(|e| ms(e.saturating_sub(w.start))));
            for call in &p.cri {
                let in_start = match until {
                    Some(Some(end)) => call.start_ms >= 0.0 && call.start_ms <= end,
                    Some(None) => call.start_ms >= 0.0,
                    None => true,
                };
                if in_start {
                    rows.push((call.start_ms, &call.call, call.duration_ms));
                }
            }
            rows.sort_by(|a, b| a.0.total_cmp(&b.0));
            // A mount wait that found everything mounted, or had nothing to
            // mount, says nothing about polling: only pods that waited count.
            let waited = class == Some(MountClass::Waited);
            let mut lost = p.mount_wait.as_ref().and_then(|m| m.lost_to_polling_ms);
            let mut seen_wait = false;
            for (_, stage, dur) in rows {
                let is_wait = stage == names.mount_wait && !seen_wait;
                if is_wait {
                    seen_wait = true;
                    if !waited {
                        if !order.iter().any(|o| o == stage) {
                            order.push(stage.to_string());
                        }
                        continue;
                    }
                }
                add(&mut order, stage, dur);
                // The derived row follows its mount wait, once per pod.
                if is_wait {
                    if let Some(l) = lost.take() {
                        add(&mut order, STAGE_LOST, Some(l));
                    }
                }
            }
        }
        order.retain(|s| samples.contains_key(s));
        let mut stage_binary = BTreeMap::new();
        for s in &corr.spans {
            if !stage_binary.contains_key(&*s.name) {
                stage_binary.insert(s.name.to_string(), s.binary.to_string());
            }
        }
        let models = predict::models(&report, corr);
        let intervals = Intervals::of_report(&report);
        Run {
            label: label.to_string(),
            source: source.to_string(),
            report,
            podtrace_version: trace.header().podtrace_version.clone(),
            samples,
            order,
            no_exit,
            classes,
            waited_only: vec![names.mount_wait.clone(), STAGE_LOST.to_string()],
            models,
            names,
            intervals,
            stage_binary,
            builds: drift::builds_of(&trace.header().binaries),
        }
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub percentile: &'static str,
    pub shift: &'static str,
    pub interval: &'static str,
    pub confidence: f64,
    /// A difference counts only if |shift| is at least this % of the
    /// baseline's p50 and at least `min_effect_ms`.
    pub min_effect_pct: f64,
    pub min_effect_ms: f64,
    pub exact_max_pairs: usize,
    pub drift: &'static str,
    pub prediction: &'static str,
    pub prediction_runs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub label: String,
    pub source: String,
    pub hostname: String,
    pub podtrace_version: String,
    pub pods: usize,
    pub events: u64,
    pub drops: u64,
    pub complete: bool,
    pub no_exit: usize,
    pub classes: ClassCounts,
    pub intervals: Intervals,
    /// Catalogue binary → the builds the trace names (`v1.36.3 build …`).
    pub builds: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Label of the run compared against (the first).
    pub against: String,
    /// Differences of the summaries, run − baseline.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    /// Δp50 relative to the baseline's p50, %.
    pub p50_rel_pct: Option<f64>,
    /// baseline p50 / run p50 (above 1: the run is faster).
    pub ratio: Option<f64>,
    /// Hodges–Lehmann shift: median of every difference run − baseline.
    pub shift: f64,
    /// The shift relative to the baseline's p50, %.
    pub shift_rel_pct: Option<f64>,
    /// The shift's interval (None: too few samples for one).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub achieved_confidence: Option<f64>,
    /// exact | normal
    pub ci_method: stats::Method,
    /// Mann–Whitney U of run against baseline and its two-sided p-value.
    pub u: f64,
    pub p_value: f64,
    /// The smallest shift that counts here, ms.
    pub threshold_ms: f64,
    /// The interval excludes 0 and |shift| ≥ threshold, beyond the drift
    /// between the runs when it is known.
    pub significant: bool,
    /// faster | slower | no clear difference | too few samples | within
    /// drift (a difference the controls moved by too) | control (a stage
    /// the change cannot touch, measuring the drift)
    pub verdict: String,
    /// The shift net of the drift between the runs (None without controls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_of_drift: Option<Net>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageComparison {
    pub stage: String,
    /// all pods | pods that waited
    pub pods: &'static str,
    /// Per run (same order as `runs`); None where the run has no such stage.
    pub runs: Vec<Option<Summary>>,
    /// Per run against the first; None for the first and where either lacks the stage.
    pub diffs: Vec<Option<Diff>>,
    /// Per run after the first: what the first run predicts for this run's
    /// intervals (stages the model covers).
    pub predicted: Vec<Option<Predicted>>,
    /// Per run, the durations (ms); for pictures, not serialized.
    #[serde(skip)]
    pub samples: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PollFindings {
    pub label: String,
    pub pods_with_mount_wait: usize,
    /// Over pods that waited for a poll tick.
    pub checks_per_pod: Option<Summary>,
    pub configured_interval_ms: Option<Summary>,
    pub observed_interval_ms: Option<Summary>,
    /// Over pods that waited for a poll tick.
    pub lost_to_polling_ms: Option<Summary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoopFinding {
    pub ticks: usize,
    pub period_p50_ms: Option<f64>,
    pub period_p90_ms: Option<f64>,
    pub duration_p50_ms: Option<f64>,
    /// ms of each second inside the loop function: over every process of
    /// the binary in the run, their busy time over their windows.
    pub busy_ms_per_s: Option<f64>,
}

/// One binary's CPU cost per run: the traced processes' CPU time (/proc)
/// and their loops' busy time, each per second of their windows.
#[derive(Debug, Clone, Serialize)]
pub struct CpuFinding {
    pub processes: usize,
    pub window_s: f64,
    pub cpu_ms_per_s: f64,
    pub loops_busy_ms_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuComparison {
    pub binary: String,
    /// Per run; None where the run has no CPU samples of this binary.
    pub runs: Vec<Option<CpuFinding>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoopComparison {
    pub loop_name: String,
    pub binary: String,
    /// Per run; None where the run has no ticks of this loop.
    pub runs: Vec<Option<LoopFinding>>,
}

/// The prediction shown beside a run: from the first run, with this run's
/// intervals.
#[derive(Debug, Clone, Serialize)]
pub struct RunPrediction {
    /// Label of the run predicted from (the first).
    pub from: String,
    pub intervals: Intervals,
    /// Pods of the first run, and those whose mount chain the model follows.
    pub pods: usize,
    pub modelled: usize,
    pub classes: ClassShares,
    /// The drift between the runs the interval includes.
    pub drift: Option<predict::DriftModel>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub podtrace_compare: u32,
    pub method: Method,
    pub runs: Vec<RunInfo>,
    /// Per run after the first, what it means in one line each, from the
    /// same numbers as the table.
    pub headline: Vec<String>,
    pub stages: Vec<StageComparison>,
    /// Per run; None for the first.
    pub predictions: Vec<Option<RunPrediction>>,
    /// Per run against the first (empty for the first): which traced
    /// binaries changed.
    pub builds: Vec<Vec<BuildChange>>,
    /// Per run; None for the first and where no control is known.
    pub drift: Vec<Option<Drift>>,
    pub polling: Vec<PollFindings>,
    pub loops: Vec<LoopComparison>,
    /// What the loops cost: CPU of the traced processes and their loops'
    /// busy time, per binary and run.
    pub cpu: Vec<CpuComparison>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub confidence: f64,
    pub min_effect: MinEffect,
    /// Stages to use as controls (`--control`) instead of those the
    /// traces' binaries suggest.
    pub controls: Vec<String>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            confidence: CONFIDENCE,
            min_effect: MinEffect::default(),
            controls: Vec::new(),
        }
    }
}

/// Compares `runs` against the first with the default options.
pub fn compare(runs: &[Run]) -> Result<Comparison> {
    compare_with(runs, &CompareOptions::default())
}

/// Compares `runs` against the first. Errors on a run without pods and on a
/// run that shares no stage with the first.
pub fn compare_with(runs: &[Run], opt: &CompareOptions) -> Result<Comparison> {
    check(runs, opt)?;
    let base = &runs[0];
    let mut warnings = warnings_of(runs);
    let builds: Vec<Vec<BuildChange>> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i == 0 {
                Vec::new()
            } else {
                drift::changes(&base.builds, &r.builds)
            }
        })
        .collect();
    let drifts: Vec<Option<Drift>> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let in_both = |s: &str| base.samples.contains_key(s) && r.samples.contains_key(s);
            let controls = drift::choose_controls(
                &builds[i],
                &base.stage_binary,
                &in_both,
                &base.names.mount_wait,
                &opt.controls,
            );
            (i > 0)
                .then(|| drift::estimate(&base.samples, &r.samples, controls?, opt.confidence))
                .flatten()
        })
        .collect();
    for (i, r) in runs.iter().enumerate().skip(1) {
        if drifts[i].is_none() {
            warnings.push(no_controls(r, &builds[i], &opt.controls));
        }
        if let Some(d) = drifts[i].as_ref().filter(|d| !d.disagreeing.is_empty()) {
            warnings.push(format!(
                "{}: control{} {} moved apart from the other controls{}: a change of {} itself?",
                r.source,
                if d.disagreeing.len() > 1 { "s" } else { "" },
                d.disagreeing.join(", "),
                if d.excluded {
                    " and were left out of the drift"
                } else {
                    ""
                },
                d.disagreeing
                    .iter()
                    .filter_map(|s| base.stage_binary.get(s))
                    .next()
                    .map_or("the runtime", String::as_str)
            ));
        }
    }
    let predictions = predictions(runs, &drifts, opt.confidence, &mut warnings);
    let stages = stage_comparisons(runs, opt, &drifts, &predictions);
    let headline = (1..runs.len())
        .map(|i| headline(runs, &stages, i, &opt.min_effect, drifts[i].as_ref()))
        .collect();
    Ok(Comparison {
        podtrace_compare: COMPARE_VERSION,
        method: method(opt),
        runs: run_infos(runs),
        headline,
        stages,
        predictions: run_predictions(base, predictions),
        builds,
        drift: drifts,
        polling: runs.iter().map(poll_findings).collect(),
        loops: loop_comparisons(runs),
        cpu: cpu_comparisons(runs),
        warnings,
    })
}

/// The runs can be compared: two or more, each with pods, each sharing a
/// traced stage with the first.
fn check(runs: &[Run], opt: &CompareOptions) -> Result<()> {
    let Some(base) = runs.first() else {
        bail!("nothing to compare: no runs given");
    };
    if runs.len() < 2 {
        bail!(
            "compare needs at least two traces, got one ({})",
            base.source
        );
    }
    if !(opt.confidence > 0.0 && opt.confidence < 1.0) {
        bail!(
            "the confidence must be between 0 and 1, not {}",
            opt.confidence
        );
    }
    for r in runs {
        if r.report.pods.is_empty() {
            bail!(
                "{}: no pods in this trace, nothing to compare (was it recorded while pods started?)",
                r.source
            );
        }
    }
    for c in &opt.controls {
        if !runs.iter().all(|r| r.samples.contains_key(c)) {
            let known: Vec<&String> = base.order.iter().collect();
            bail!(
                "--control {c}: not a stage of every run (stages: {})",
                known
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    for r in &runs[1..] {
        // Derived rows (whole pod, lost to polling) exist for any pod start:
        // only traced functions say that two runs measured the same thing.
        let traced = |s: &&String| s.as_str() != STAGE_POD && s.as_str() != STAGE_LOST;
        if !r
            .order
            .iter()
            .filter(traced)
            .any(|s| base.samples.contains_key(s))
        {
            bail!(
                "{} and {} have no stage in common ({}: {}; {}: {}); were they recorded from the same kind of binary?",
                base.source,
                r.source,
                base.label,
                base.order.iter().filter(traced).cloned().collect::<Vec<_>>().join(", "),
                r.label,
                r.order.iter().filter(traced).cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}

fn warnings_of(runs: &[Run]) -> Vec<String> {
    let base = &runs[0];
    let mut warnings = Vec::new();
    for r in &runs[1..] {
        if r.podtrace_version != base.podtrace_version {
            warnings.push(format!(
                "{} was recorded by podtrace {}, {} by {}",
                r.source, r.podtrace_version, base.source, base.podtrace_version
            ));
        }
    }
    for r in runs {
        warnings.extend(r.report.warnings.iter().cloned());
        if r.no_exit > 0 {
            warnings.push(format!(
                "{}: {} stage occurrences without an exit left out",
                r.source, r.no_exit
            ));
        }
    }
    warnings
}

/// Why a run pair has no drift estimate, for the warnings.
fn no_controls(r: &Run, changes: &[BuildChange], named: &[String]) -> String {
    let changed: Vec<&str> = changes
        .iter()
        .filter(|c| c.changed())
        .map(|c| c.binary.as_str())
        .collect();
    let why = if !named.is_empty() {
        "the --control stages have too few samples".to_string()
    } else if changes.iter().any(|c| c.change.starts_with("unknown")) {
        "the traces do not say which build each binary is (recorded by an older podtrace)".into()
    } else if changed.is_empty() {
        "both runs traced the same builds".into()
    } else if changed.len() > 1 {
        format!("{} all changed", changed.join(" and "))
    } else {
        format!(
            "no stage untouched by the {} change has samples in both runs",
            changed[0]
        )
    };
    format!(
        "{}: no control stages ({why}): its differences may include drift between the runs; \
         name stages the change cannot touch with --control STAGE",
        r.source
    )
}

/// The first run's pods under every other run's intervals, allowing for
/// the drift between the two runs; none where too few pods show the chain
/// the model follows (said in `warnings`).
fn predictions(
    runs: &[Run],
    drifts: &[Option<Drift>],
    confidence: f64,
    warnings: &mut Vec<String>,
) -> Vec<Option<predict::Prediction>> {
    let base = &runs[0];
    let z = stats::z_for(confidence);
    runs.iter()
        .enumerate()
        .map(|(i, r)| {
            if i == 0 || !base.models.iter().any(|m| m.chain.is_some()) {
                return None;
            }
            let drift = drifts[i].as_ref().and_then(|d| {
                let (lo, hi) = (d.log_low?, d.log_high?);
                Some(predict::DriftModel::new(
                    d.log_shift,
                    (hi - lo) / (2.0 * z),
                    format!("the controls between {} and {}", base.label, r.label),
                ))
            });
            let p = predict::predict(
                &base.source,
                &base.names,
                &base.models,
                base.intervals,
                r.intervals,
                r.models.len(),
                // Run 1 draws as `podtrace predict BASE --like RUN1` does.
                predict::SEED ^ (i as u64 - 1),
                drift.as_ref(),
            );
            match p.refusal() {
                Some(why) => {
                    warnings.push(why);
                    None
                }
                None => Some(p),
            }
        })
        .collect()
}

fn run_predictions(
    base: &Run,
    predictions: Vec<Option<predict::Prediction>>,
) -> Vec<Option<RunPrediction>> {
    predictions
        .into_iter()
        .map(|p| {
            p.map(|p| RunPrediction {
                from: base.label.clone(),
                intervals: p.to,
                pods: p.pods,
                modelled: p.modelled,
                classes: p.classes,
                drift: p.drift,
                warnings: p.warnings,
            })
        })
        .collect()
}

/// Every stage of any run, against the first run, net of the drift.
fn stage_comparisons(
    runs: &[Run],
    opt: &CompareOptions,
    drifts: &[Option<Drift>],
    predictions: &[Option<predict::Prediction>],
) -> Vec<StageComparison> {
    let base = &runs[0];
    let mut names: Vec<String> = Vec::new();
    for r in runs {
        for s in &r.order {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
    }
    names
        .iter()
        .map(|name| {
            let samples: Vec<Vec<f64>> = runs
                .iter()
                .map(|r| r.samples.get(name).cloned().unwrap_or_default())
                .collect();
            let sums: Vec<Option<Summary>> = samples.iter().map(|s| summarize(s)).collect();
            let diffs = (0..runs.len())
                .map(|i| {
                    if i == 0 {
                        return None;
                    }
                    diff(
                        name,
                        &samples[0],
                        &samples[i],
                        &sums[0],
                        &sums[i],
                        &runs[0].label,
                        opt,
                        drifts[i].as_ref(),
                    )
                })
                .collect();
            let predicted = predictions
                .iter()
                .map(|p| {
                    p.as_ref()
                        .and_then(|p| p.stage(name))
                        .and_then(|s| s.predicted)
                })
                .collect();
            StageComparison {
                stage: name.clone(),
                pods: if base.waited_only.contains(name) {
                    "pods that waited"
                } else {
                    "all pods"
                },
                runs: sums,
                diffs,
                predicted,
                samples,
            }
        })
        .collect()
}

/// One stage of one run against the first: the shift, its verdict, and
/// what it is beyond the drift.
#[allow(clippy::too_many_arguments)]
fn diff(
    stage: &str,
    a_samples: &[f64],
    b_samples: &[f64],
    a: &Option<Summary>,
    b: &Option<Summary>,
    against: &str,
    opt: &CompareOptions,
    drift: Option<&Drift>,
) -> Option<Diff> {
    let (Some(a), Some(b)) = (a, b) else {
        return None;
    };
    let sh = stats::shift(a_samples, b_samples, opt.confidence)?;
    let v = stats::verdict(&sh, a.p50, &opt.min_effect);
    let d = b.p50 - a.p50;
    let rel = |x: f64| (a.p50 != 0.0).then(|| x / a.p50 * 100.0);
    let mut significant = matches!(v, Verdict::Faster | Verdict::Slower);
    let mut verdict = v.as_str().to_string();
    let net_of_drift =
        drift.and_then(|dr| drift::net(a_samples, b_samples, dr, opt.confidence, &opt.min_effect));
    if drift.is_some_and(|dr| dr.controls.stages.iter().any(|s| s == stage)) {
        significant = false;
        verdict = "control".into();
    } else if significant && net_of_drift.is_some_and(|n| !n.beyond_drift) {
        significant = false;
        verdict = "within drift".into();
    }
    Some(Diff {
        against: against.to_string(),
        p50: d,
        p90: b.p90 - a.p90,
        p99: b.p99 - a.p99,
        mean: b.mean - a.mean,
        p50_rel_pct: rel(d),
        ratio: (b.p50 > 0.0).then(|| a.p50 / b.p50),
        shift: sh.estimate,
        shift_rel_pct: rel(sh.estimate),
        ci_low: sh.low,
        ci_high: sh.high,
        achieved_confidence: sh.achieved_confidence,
        ci_method: sh.method,
        u: sh.u,
        p_value: sh.p_value,
        threshold_ms: opt.min_effect.threshold_ms(a.p50),
        significant,
        verdict,
        net_of_drift,
    })
}

fn loop_comparisons(runs: &[Run]) -> Vec<LoopComparison> {
    let mut loop_keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        for l in &r.report.loops {
            let k = (l.loop_name.clone(), l.binary.clone());
            if !loop_keys.contains(&k) {
                loop_keys.push(k);
            }
        }
    }
    loop_keys
        .into_iter()
        .map(|(name, binary)| LoopComparison {
            runs: runs
                .iter()
                .map(|r| {
                    let rows = || {
                        r.report
                            .loops
                            .iter()
                            .filter(|l| l.loop_name == name && l.binary == binary)
                    };
                    // Busy time adds up over the processes (an interleaved
                    // run's blocks); periods: the busiest one speaks.
                    let (busy, window) =
                        rows().fold((0.0, 0.0), |(b, w), l| (b + l.busy_ms, w + l.window_s));
                    rows().max_by_key(|l| l.ticks).map(|l| LoopFinding {
                        ticks: l.ticks,
                        period_p50_ms: l.period_p50_ms,
                        period_p90_ms: l.period_p90_ms,
                        duration_p50_ms: l.duration_p50_ms,
                        busy_ms_per_s: (window > 0.0).then(|| busy / window),
                    })
                })
                .collect(),
            loop_name: name,
            binary,
        })
        .collect()
}

fn cpu_comparisons(runs: &[Run]) -> Vec<CpuComparison> {
    let mut binaries: Vec<String> = Vec::new();
    for w in runs.iter().flat_map(|r| &r.report.cpu) {
        if !binaries.contains(&w.binary) {
            binaries.push(w.binary.clone());
        }
    }
    binaries
        .into_iter()
        .map(|binary| CpuComparison {
            runs: runs
                .iter()
                .map(|r| {
                    let rows: Vec<_> = r.report.cpu.iter().filter(|w| w.binary == binary).collect();
                    let window: f64 = rows.iter().map(|w| w.window_s).sum();
                    (window > 0.0).then(|| CpuFinding {
                        processes: rows.len(),
                        window_s: window,
                        cpu_ms_per_s: rows.iter().map(|w| w.cpu_ms).sum::<f64>() / window,
                        loops_busy_ms_per_s: rows
                            .iter()
                            .map(|w| w.loops_busy_ms_per_s * w.window_s)
                            .sum::<f64>()
                            / window,
                    })
                })
                .collect(),
            binary,
        })
        .collect()
}

fn method(opt: &CompareOptions) -> Method {
    Method {
        percentile: "nearest-rank",
        shift: "Hodges-Lehmann: median of all differences run - first run",
        interval: "Mann-Whitney (Moses) interval of the shift: exact null distribution of U when the pooled sample has no ties and m*n <= exact_max_pairs, else normal approximation",
        confidence: opt.confidence,
        min_effect_pct: opt.min_effect.min_pct,
        min_effect_ms: opt.min_effect.min_ms,
        exact_max_pairs: stats::EXACT_MAX_PAIRS,
        drift: "controls (stages the change cannot touch) centred on the first run's median, pooled, Hodges-Lehmann shift of log durations; a stage counts only if its log shift less the drift (half-widths in quadrature) excludes 0 and clears the minimal effect",
        prediction: "first run's pods with each run's intervals: measured work kept, tick phases uniform; median of a run of that run's pod count",
        prediction_runs: predict::RUNS,
    }
}

fn run_infos(runs: &[Run]) -> Vec<RunInfo> {
    runs.iter()
        .map(|r| RunInfo {
            label: r.label.clone(),
            source: r.source.clone(),
            hostname: r.report.trace.hostname.clone(),
            podtrace_version: r.podtrace_version.clone(),
            pods: r.report.pods.len(),
            events: r.report.trace.events,
            drops: r.report.trace.drops,
            complete: r.report.trace.complete,
            no_exit: r.no_exit,
            classes: r.classes,
            intervals: r.intervals,
            builds: r
                .builds
                .iter()
                .map(|(name, ids)| {
                    (
                        name.clone(),
                        ids.iter()
                            .filter(|i| !i.sha256.is_empty())
                            .map(BinaryIdentity::describe)
                            .collect(),
                    )
                })
                .collect(),
        })
        .collect()
}

/// "2.5x" for big ratios, "12%" for small ones.
fn how_much(ratio: f64) -> String {
    if ratio >= 1.5 {
        format!("{ratio:.1}x")
    } else {
        format!("{:.0}%", (ratio - 1.0).abs() * 100.0)
    }
}

/// One line per run: which stages are faster or slower and by how much
/// (ratio of the p50s in the table), which show no clear difference.
/// "−8.0% [−11.2, −4.5]"
fn pct_interval(p: f64, lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(l), Some(h)) => format!("{p:+.1}% [{l:+.1}, {h:+.1}]"),
        _ => format!("{p:+.1}%"),
    }
}

/// The drift in one sentence: what the controls did, and that it is not
/// credited to the change.
pub fn drift_sentence(d: &Drift) -> String {
    format!(
        "drift between the runs: the controls ({}: {}) moved {}{}",
        d.controls.reason,
        d.controls.stages.join(", "),
        pct_interval(d.shift_pct, d.low_pct, d.high_pct),
        if d.significant {
            ", not credited to the change"
        } else {
            " (no clear drift)"
        }
    )
}

fn headline(
    runs: &[Run],
    stages: &[StageComparison],
    i: usize,
    min: &MinEffect,
    drift: Option<&Drift>,
) -> String {
    let (mut faster, mut slower, mut same, mut few, mut within) =
        (vec![], vec![], vec![], vec![], vec![]);
    for st in stages {
        let (Some(d), Some(a), Some(b)) = (
            st.diffs.get(i).and_then(Option::as_ref),
            st.runs.first().and_then(Option::as_ref),
            st.runs.get(i).and_then(Option::as_ref),
        ) else {
            continue;
        };
        let what = |ratio: f64| {
            format!(
                "{} {} ({:.1} -> {:.1} ms)",
                st.stage,
                how_much(ratio),
                a.p50,
                b.p50
            )
        };
        match d.verdict.as_str() {
            "faster" => faster.push(what(a.p50 / b.p50.max(1e-9))),
            "slower" => slower.push(what(b.p50 / a.p50.max(1e-9))),
            "too few samples" => few.push(st.stage.clone()),
            "control" => {}
            "within drift" => within.push(format!(
                "{} {}",
                st.stage,
                d.shift_rel_pct
                    .map(|p| format!("{p:+.0}%"))
                    .unwrap_or_default()
            )),
            _ => same.push(st.stage.clone()),
        }
    }
    let mut parts = vec![];
    if let Some(d) = drift {
        parts.push(drift_sentence(d));
    }
    if !faster.is_empty() {
        parts.push(format!("faster: {}", faster.join(", ")));
    }
    if !slower.is_empty() {
        parts.push(format!("slower: {}", slower.join(", ")));
    }
    if !within.is_empty() {
        parts.push(format!(
            "within drift (moved no more than the controls): {}",
            within.join(", ")
        ));
    }
    if !same.is_empty() {
        parts.push(format!(
            "no clear difference (below {:.0}% and {} ms, or within noise): {}",
            min.min_pct,
            min.min_ms,
            same.join(", ")
        ));
    }
    if !few.is_empty() {
        parts.push(format!("too few samples: {}", few.join(", ")));
    }
    format!(
        "{} against {}: {}",
        runs[i].label,
        runs[0].label,
        parts.join("; ")
    )
}

fn poll_findings(r: &Run) -> PollFindings {
    let all: Vec<_> = r
        .report
        .pods
        .iter()
        .filter_map(|p| p.mount_wait.as_ref())
        .collect();
    let waited: Vec<_> = all
        .iter()
        .filter(|m| m.class == MountClass::Waited)
        .collect();
    PollFindings {
        label: r.label.clone(),
        pods_with_mount_wait: all.len(),
        checks_per_pod: summarize(
            &waited
                .iter()
                .map(|m| m.checks.len() as f64)
                .collect::<Vec<_>>(),
        ),
        configured_interval_ms: summarize(
            &all.iter()
                .filter_map(|m| m.configured_interval_ms)
                .collect::<Vec<_>>(),
        ),
        observed_interval_ms: summarize(
            &all.iter()
                .filter_map(|m| m.observed_interval_ms)
                .collect::<Vec<_>>(),
        ),
        lost_to_polling_ms: summarize(
            &waited
                .iter()
                .filter_map(|m| m.lost_to_polling_ms)
                .collect::<Vec<_>>(),
        ),
    }
}

fn f3(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

fn signed(v: f64) -> String {
    format!("{v:+.3}")
}

impl Comparison {
    /// Which build each run traced, and what changed against the first.
    fn builds_table(&self, o: &mut String, lw: usize) {
        if self
            .runs
            .iter()
            .all(|r| r.builds.values().all(Vec::is_empty))
        {
            return;
        }
        let _ = writeln!(o, "\nbinaries");
        for (i, r) in self.runs.iter().enumerate() {
            for (name, builds) in &r.builds {
                let change = self
                    .builds
                    .get(i)
                    .and_then(|v| v.iter().find(|c| &c.binary == name))
                    .map(|c| format!("  ({})", c.change))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "  {:<lw$}  {name:<10} {}{change}",
                    r.label,
                    if builds.is_empty() {
                        "(no build identity recorded)".to_string()
                    } else {
                        builds.join(", ")
                    }
                );
            }
        }
    }

    /// The drift of each run against the first, control by control.
    fn drift_table(&self, o: &mut String, lw: usize) {
        let Some(first) = self.drift.iter().flatten().next() else {
            return;
        };
        let _ = writeln!(
            o,
            "\ndrift between runs, from the controls ({}); a stage is credited to the change \
             only with what its shift exceeds this by (net of drift)",
            first.controls.reason
        );
        for (r, d) in self.runs.iter().zip(&self.drift) {
            let Some(d) = d else { continue };
            let _ = writeln!(
                o,
                "  {:<lw$}  controls pooled {}{}",
                r.label,
                pct_interval(d.shift_pct, d.low_pct, d.high_pct),
                if d.significant {
                    ""
                } else {
                    " (no clear drift)"
                }
            );
            for c in &d.per_control {
                let _ = writeln!(
                    o,
                    "  {:<lw$}    {:<22} {}{}",
                    "",
                    c.stage,
                    pct_interval(c.shift_pct, c.low_pct, c.high_pct),
                    if d.disagreeing.contains(&c.stage) {
                        if d.excluded {
                            "  apart from the others: left out"
                        } else {
                            "  apart from the others"
                        }
                    } else {
                        ""
                    }
                );
            }
        }
    }

    pub fn to_table(&self) -> String {
        let mut o = String::new();
        let lw = self
            .runs
            .iter()
            .map(|r| r.label.len())
            .max()
            .unwrap_or(3)
            .max(9);
        let _ = writeln!(o, "runs");
        for r in &self.runs {
            let _ = writeln!(
                o,
                "  {:<lw$}  {}  {} pods, {} events, {} dropped{}",
                r.label,
                r.source,
                r.pods,
                r.events,
                r.drops,
                if r.complete {
                    ""
                } else {
                    ", recording interrupted"
                }
            );
        }
        for w in &self.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        let _ = writeln!(o);
        for h in &self.headline {
            let _ = writeln!(o, "{h}");
        }
        self.builds_table(&mut o, lw);
        self.drift_table(&mut o, lw);

        let cw = lw.max(10);
        let _ = writeln!(o, "\npods by mount wait");
        let _ = write!(o, "  {:<36}", "");
        for r in &self.runs {
            let _ = write!(o, " {:>cw$}", r.label);
        }
        let _ = writeln!(o);
        let rows: Vec<[(&str, usize); 5]> = self.runs.iter().map(|r| r.classes.rows()).collect();
        for i in 0..5 {
            // The first three always; the others when they occur.
            if i >= 3 && rows.iter().all(|r| r[i].1 == 0) {
                continue;
            }
            let _ = write!(o, "  {:<36}", rows.first().map(|r| r[i].0).unwrap_or(""));
            for r in &rows {
                let _ = write!(o, " {:>cw$}", r[i].1);
            }
            let _ = writeln!(o);
        }

        let sw = self
            .stages
            .iter()
            .map(|s| s.stage.len() + usize::from(s.pods != "all pods"))
            .max()
            .unwrap_or(5)
            .max(9);
        let base = self.runs.first().map(|r| r.label.as_str()).unwrap_or("");
        let _ = writeln!(
            o,
            "\nstage durations, ms: nearest-rank percentiles; shift = Hodges-Lehmann shift against {base} \
             with its {:.0}% Mann-Whitney interval; a difference counts when the interval excludes 0 \
             and |shift| >= {}% of {base}'s p50 and >= {} ms",
            self.method.confidence * 100.0,
            self.method.min_effect_pct,
            self.method.min_effect_ms
        );
        let _ = writeln!(
            o,
            "  {:<sw$} {:<lw$} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>23}  verdict",
            "stage",
            "run",
            "n",
            "p50",
            "p90",
            "p99",
            "mean",
            "shift",
            "shift %",
            "interval of shift",
        );
        for s in &self.stages {
            for (i, r) in self.runs.iter().enumerate() {
                let name = match (i, s.pods) {
                    (0, "all pods") => s.stage.clone(),
                    (0, _) => format!("{}*", s.stage),
                    _ => String::new(),
                };
                let Some(sum) = s.runs.get(i).and_then(Option::as_ref) else {
                    let _ = writeln!(o, "  {:<sw$} {:<lw$} {:>4}", name, r.label, 0);
                    continue;
                };
                let _ = write!(
                    o,
                    "  {:<sw$} {:<lw$} {:>4} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
                    name, r.label, sum.n, sum.p50, sum.p90, sum.p99, sum.mean
                );
                if let Some(d) = s.diffs.get(i).and_then(Option::as_ref) {
                    let ci = match (d.ci_low, d.ci_high) {
                        (Some(l), Some(h)) => format!("[{}, {}]", signed(l), signed(h)),
                        _ => "-".into(),
                    };
                    let _ = write!(
                        o,
                        " {:>10} {:>8} {:>23}  {}",
                        signed(d.shift),
                        d.shift_rel_pct
                            .map(|p| format!("{p:+.1}%"))
                            .unwrap_or_else(|| "-".into()),
                        ci,
                        d.verdict
                    );
                    if d.significant {
                        if let Some(ratio) = d.ratio {
                            let _ = write!(
                                o,
                                " ({})",
                                how_much(if ratio >= 1.0 { ratio } else { 1.0 / ratio })
                            );
                        }
                    }
                    if let (Some(n), false) = (d.net_of_drift, d.verdict == "control") {
                        let _ = write!(
                            o,
                            ", net of drift {:+.1}% [{:+.1}, {:+.1}]",
                            n.net_pct, n.low_pct, n.high_pct
                        );
                    }
                }
                let _ = writeln!(o);
                if let Some(p) = s.predicted.get(i).and_then(Option::as_ref) {
                    let _ = writeln!(
                        o,
                        "  {:<sw$} {:<lw$} {:>4} {:>10.3} {:>10.3} {:>10} {:>10}   {:.0}% of runs of {} pods: p50 in [{:.3}, {:.3}]{}",
                        "",
                        "predicted",
                        "",
                        p.p50,
                        p.p90,
                        "",
                        "",
                        self.method.confidence * 100.0,
                        p.n,
                        p.low,
                        p.high,
                        if (p.low, p.high) == (p.ticks_low, p.ticks_high) {
                            String::new()
                        } else {
                            format!(
                                " (tick phases and resampling alone [{:.3}, {:.3}], the rest drift)",
                                p.ticks_low, p.ticks_high
                            )
                        }
                    );
                }
            }
        }
        if self.stages.iter().any(|s| s.pods != "all pods") {
            let _ = writeln!(
                o,
                "  * over pods that waited for a poll tick (pods by mount wait, above)"
            );
        }
        for (i, p) in self.predictions.iter().enumerate() {
            let Some(p) = p else { continue };
            let f = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "  predicted: {}'s {} pods ({} with their mount chain traced) with {}'s intervals: \
                 poll {} ms, populator {} ms, reconciler {} ms; measured work kept, tick phases random \
                 (docs/compare.md)",
                p.from,
                p.pods,
                p.modelled,
                self.runs.get(i).map(|r| r.label.as_str()).unwrap_or("?"),
                f(p.intervals.poll_ms),
                f(p.intervals.populate_ms),
                f(p.intervals.reconcile_ms)
            );
            for w in &p.warnings {
                let _ = writeln!(o, "  warning: {w}");
            }
        }

        let cw = lw.max(17);
        let _ = writeln!(o, "\nmount wait polling (p50 over pods)");
        let _ = write!(o, "  {:<28}", "");
        for r in &self.runs {
            let _ = write!(o, " {:>cw$}", r.label);
        }
        let _ = writeln!(o);
        let p50 = |s: &Option<Summary>| f3(s.as_ref().map(|s| s.p50));
        let per_run =
            |f: &dyn Fn(&PollFindings) -> String| self.polling.iter().map(f).collect::<Vec<_>>();
        let rows: Vec<(&str, Vec<String>)> = vec![
            (
                "pods with a mount wait",
                per_run(&|p| p.pods_with_mount_wait.to_string()),
            ),
            (
                "poll checks per pod*",
                per_run(&|p| {
                    p.checks_per_pod
                        .as_ref()
                        .map(|s| format!("{:.0}", s.p50))
                        .unwrap_or_else(|| "-".into())
                }),
            ),
            (
                "interval configured ms",
                per_run(&|p| p50(&p.configured_interval_ms)),
            ),
            (
                "interval observed ms",
                per_run(&|p| p50(&p.observed_interval_ms)),
            ),
            (
                "lost to polling p50 ms*",
                per_run(&|p| p50(&p.lost_to_polling_ms)),
            ),
            (
                "lost to polling p90 ms*",
                per_run(&|p| f3(p.lost_to_polling_ms.as_ref().map(|s| s.p90))),
            ),
        ];
        for (name, cells) in &rows {
            let _ = write!(o, "  {name:<28}");
            for c in cells {
                let _ = write!(o, " {c:>cw$}");
            }
            let _ = writeln!(o);
        }
        if !self.loops.is_empty() {
            let _ = writeln!(o, "\nloop periods, ms (p50 / p90)");
            let _ = write!(o, "  {:<28}", "");
            for r in &self.runs {
                let _ = write!(o, " {:>cw$}", r.label);
            }
            let _ = writeln!(o);
            for l in &self.loops {
                let _ = write!(o, "  {:<28}", format!("{} ({})", l.loop_name, l.binary));
                for r in &l.runs {
                    let cell = match r {
                        Some(f) => format!(
                            "{} / {}",
                            f.period_p50_ms
                                .map(|v| format!("{v:.1}"))
                                .unwrap_or_else(|| "-".into()),
                            f.period_p90_ms
                                .map(|v| format!("{v:.1}"))
                                .unwrap_or_else(|| "-".into())
                        ),
                        None => "-".into(),
                    };
                    let _ = write!(o, " {cell:>cw$}");
                }
                let _ = writeln!(o);
            }
            self.write_cost(&mut o, cw);
        }
        o
    }

    /// The loops' busy time and the processes' CPU, per run: what shorter
    /// intervals cost (`reconcile  0.9 → 8.7 ms/s`).
    fn write_cost(&self, o: &mut String, cw: usize) {
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            o,
            "\nloop cost, ms of each second (busy: inside the loop function; CPU: user + system of the process, /proc)"
        );
        let _ = write!(o, "  {:<28}", "");
        for r in &self.runs {
            let _ = write!(o, " {:>cw$}", r.label);
        }
        let _ = writeln!(o);
        for l in &self.loops {
            let _ = write!(
                o,
                "  {:<28}",
                format!("{} busy ({})", l.loop_name, l.binary)
            );
            for r in &l.runs {
                let _ = write!(
                    o,
                    " {:>cw$}",
                    cell(r.as_ref().and_then(|f| f.busy_ms_per_s))
                );
            }
            let _ = writeln!(o);
        }
        for c in &self.cpu {
            let has_loops = self.loops.iter().any(|l| l.binary == c.binary);
            for (what, f) in [
                (
                    "loops busy",
                    (|f: &CpuFinding| f.loops_busy_ms_per_s) as fn(&CpuFinding) -> f64,
                ),
                ("CPU", |f: &CpuFinding| f.cpu_ms_per_s),
            ] {
                if what == "loops busy" && !has_loops {
                    continue;
                }
                let _ = write!(o, "  {:<28}", format!("{} {what}", c.binary));
                for r in &c.runs {
                    let _ = write!(o, " {:>cw$}", cell(r.as_ref().map(f)));
                }
                let _ = writeln!(o);
            }
        }
        // In words, each run against the first: the trade-off's cost side.
        for (i, r) in self.runs.iter().enumerate().skip(1) {
            let arrow = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => Some(format!("{a:.1} → {b:.1} ms/s")),
                _ => None,
            };
            let mut parts: Vec<String> = self
                .loops
                .iter()
                .filter_map(|l| {
                    let busy = |k: usize| l.runs.get(k)?.as_ref()?.busy_ms_per_s;
                    Some(format!("{} {}", l.loop_name, arrow(busy(0), busy(i))?))
                })
                .collect();
            for c in &self.cpu {
                let cpu = |k: usize| Some(c.runs.get(k)?.as_ref()?.cpu_ms_per_s);
                if let Some(a) = arrow(cpu(0), cpu(i)) {
                    parts.push(format!("{} CPU {a}", c.binary));
                }
            }
            if !parts.is_empty() {
                let _ = writeln!(o, "  {}: {}", r.label, parts.join(", "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_read_as_people_say_them() {
        assert_eq!(how_much(9.84), "9.8x");
        assert_eq!(how_much(1.25), "25%");
        assert_eq!(how_much(1.02), "2%");
    }
}
