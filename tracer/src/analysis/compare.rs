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
    pods::{pod_windows, STAGE_LOST, STAGE_POD},
    predict::{self, ClassShares, Intervals, PodModel, Predicted, StageNames},
    report::{percentile, MountClass, Report},
    stats::{self, MinEffect, Verdict},
};
use crate::{correlate::Correlated, trace::TraceMeta};

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
}

impl Run {
    pub fn new(label: &str, source: &str, trace: &dyn TraceMeta, corr: &Correlated) -> Run {
        let report = Report::build(trace, corr);
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
    /// The interval excludes 0 and |shift| ≥ threshold.
    pub significant: bool,
    /// faster | slower | no clear difference | too few samples
    pub verdict: String,
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
    pub polling: Vec<PollFindings>,
    pub loops: Vec<LoopComparison>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    pub confidence: f64,
    pub min_effect: MinEffect,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            confidence: CONFIDENCE,
            min_effect: MinEffect::default(),
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

    // The baseline's pods under every other run's intervals.
    let predictions: Vec<Option<predict::Prediction>> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (i > 0 && base.models.iter().any(|m| m.chain.is_some())).then(|| {
                predict::predict(
                    &base.source,
                    &base.names,
                    &base.models,
                    base.intervals,
                    r.intervals,
                    r.models.len(),
                    // Run 1 draws as `podtrace predict BASE --like RUN1` does.
                    predict::SEED ^ (i as u64 - 1),
                )
            })
        })
        .collect();

    let mut names: Vec<String> = Vec::new();
    for r in runs {
        for s in &r.order {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
    }
    let stages = names
        .iter()
        .map(|name| {
            let samples: Vec<Vec<f64>> = runs
                .iter()
                .map(|r| r.samples.get(name).cloned().unwrap_or_default())
                .collect();
            let sums: Vec<Option<Summary>> = samples.iter().map(|s| summarize(s)).collect();
            let diffs = (0..runs.len())
                .map(|i| {
                    let (Some(a), Some(b)) = (&sums[0], &sums[i]) else {
                        return None;
                    };
                    if i == 0 {
                        return None;
                    }
                    let sh = stats::shift(&samples[0], &samples[i], opt.confidence)?;
                    let v = stats::verdict(&sh, a.p50, &opt.min_effect);
                    let d = b.p50 - a.p50;
                    let rel = |x: f64| (a.p50 != 0.0).then(|| x / a.p50 * 100.0);
                    Some(Diff {
                        against: runs[0].label.clone(),
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
                        significant: matches!(v, Verdict::Faster | Verdict::Slower),
                        verdict: v.as_str().into(),
                    })
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
        .collect::<Vec<_>>();

    let polling = runs.iter().map(poll_findings).collect();

    let mut loop_keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        for l in &r.report.loops {
            let k = (l.loop_name.clone(), l.binary.clone());
            if !loop_keys.contains(&k) {
                loop_keys.push(k);
            }
        }
    }
    let loops = loop_keys
        .into_iter()
        .map(|(name, binary)| LoopComparison {
            runs: runs
                .iter()
                .map(|r| {
                    // Several processes of one binary: the busiest one speaks.
                    r.report
                        .loops
                        .iter()
                        .filter(|l| l.loop_name == name && l.binary == binary)
                        .max_by_key(|l| l.ticks)
                        .map(|l| LoopFinding {
                            ticks: l.ticks,
                            period_p50_ms: l.period_p50_ms,
                            period_p90_ms: l.period_p90_ms,
                            duration_p50_ms: l.duration_p50_ms,
                        })
                })
                .collect(),
            loop_name: name,
            binary,
        })
        .collect();

    let headline = (1..runs.len())
        .map(|i| headline(runs, &stages, i, &opt.min_effect))
        .collect();
    let predictions = predictions
        .into_iter()
        .map(|p| {
            p.map(|p| RunPrediction {
                from: base.label.clone(),
                intervals: p.to,
                pods: p.pods,
                modelled: p.modelled,
                classes: p.classes,
                warnings: p.warnings,
            })
        })
        .collect();

    Ok(Comparison {
        podtrace_compare: COMPARE_VERSION,
        method: Method {
            percentile: "nearest-rank",
            shift: "Hodges-Lehmann: median of all differences run - first run",
            interval: "Mann-Whitney (Moses) interval of the shift: exact null distribution of U when the pooled sample has no ties and m*n <= exact_max_pairs, else normal approximation",
            confidence: opt.confidence,
            min_effect_pct: opt.min_effect.min_pct,
            min_effect_ms: opt.min_effect.min_ms,
            exact_max_pairs: stats::EXACT_MAX_PAIRS,
            prediction: "first run's pods with each run's intervals: measured work kept, tick phases uniform; median of a run of that run's pod count",
            prediction_runs: predict::RUNS,
        },
        runs: runs
            .iter()
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
            })
            .collect(),
        headline,
        stages,
        predictions,
        polling,
        loops,
        warnings,
    })
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
fn headline(runs: &[Run], stages: &[StageComparison], i: usize, min: &MinEffect) -> String {
    let (mut faster, mut slower, mut same, mut few) = (vec![], vec![], vec![], vec![]);
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
            _ => same.push(st.stage.clone()),
        }
    }
    let mut parts = vec![];
    if !faster.is_empty() {
        parts.push(format!("faster: {}", faster.join(", ")));
    }
    if !slower.is_empty() {
        parts.push(format!("slower: {}", slower.join(", ")));
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
                }
                let _ = writeln!(o);
                if let Some(p) = s.predicted.get(i).and_then(Option::as_ref) {
                    let _ = writeln!(
                        o,
                        "  {:<sw$} {:<lw$} {:>4} {:>10.3} {:>10.3} {:>10} {:>10}   {:.0}% of runs of {} pods: p50 in [{:.3}, {:.3}]",
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
                        p.high
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
        }
        o
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
