//! Comparing runs (say kubelet's default intervals against tuned ones): per
//! stage the distribution of durations over pods, the differences against the
//! first run, and a bootstrap confidence interval for the difference of
//! medians so that noise is not sold as a gain. Method: docs/compare.md.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::{
    catalogue::Role,
    correlate::Correlated,
    report::{percentile, Report},
    trace::Trace,
};

pub const COMPARE_VERSION: u32 = 1;
/// Bootstrap resamples per difference.
pub const RESAMPLES: usize = 10_000;
/// Coverage of the confidence interval.
pub const CONFIDENCE: f64 = 0.95;
/// Below this many samples in either run a difference is never called
/// significant: a bootstrap of a handful of values under-covers.
pub const MIN_N: usize = 5;
/// Base seed of the resampling; the stage name and run index are mixed in.
pub const SEED: u64 = 0x7064_7472_6163_6501;

/// Whole pod start: first sync start → end of the first sync without error.
pub const STAGE_POD: &str = "pod";
/// Derived row: volumes mounted → the poll noticed.
pub const STAGE_LOST: &str = "lost_to_polling";

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough for
/// drawing resample indices.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-32 for any n
    /// we meet).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// FNV-1a, to derive a per-stage seed that does not depend on stage order.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

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

/// Nearest-rank median of `v`, reordering it.
fn median_in_place(v: &mut [f64]) -> f64 {
    let rank = v.len().div_ceil(2).max(1);
    let (_, m, _) = v.select_nth_unstable_by(rank - 1, f64::total_cmp);
    *m
}

/// Percentile bootstrap interval for median(b) − median(a): both samples are
/// resampled with replacement `resamples` times, independently; the interval
/// is the (1−confidence)/2 and (1+confidence)/2 nearest-rank percentiles of
/// the resampled differences. None if either sample is empty.
pub fn bootstrap_median_diff(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let (mut ra, mut rb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    let mut diffs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in ra.iter_mut() {
            *x = a[rng.below(a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[rng.below(b.len())];
        }
        diffs.push(median_in_place(&mut rb) - median_in_place(&mut ra));
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0 * 100.0;
    Some((percentile(&diffs, tail)?, percentile(&diffs, 100.0 - tail)?))
}

/// One recorded run, reduced to what the comparison needs.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub source: String,
    pub report: Report,
    pub podtrace_version: String,
    /// Per stage, its durations in ms (one per occurrence in a pod's first sync).
    pub samples: BTreeMap<String, Vec<f64>>,
    /// Stage names in the order they first appear in a pod start.
    pub order: Vec<String>,
    /// Stage occurrences left out because their exit was never seen.
    pub no_exit: usize,
}

impl Run {
    pub fn new(label: &str, source: &str, trace: &Trace, corr: &Correlated) -> Run {
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
        for w in &windows {
            if report.pods.iter().any(|p| p.uid == w.uid) {
                add(
                    &mut order,
                    STAGE_POD,
                    w.end.map(|e| ms(e.saturating_sub(w.start))),
                );
            }
        }
        let mount_wait_names: Vec<&str> = corr
            .spans
            .iter()
            .filter(|s| s.role == Role::MountWait)
            .map(|s| s.name.as_str())
            .collect();
        for p in &report.pods {
            // (start ms after the first sync's start, stage, duration)
            let mut rows: Vec<(f64, &str, Option<f64>)> = p
                .stages
                .iter()
                .map(|r| (r.start_ms, r.stage.as_str(), r.duration_ms))
                .collect();
            // The container runtime's CRI handlers (another process, joined
            // to the pod by the report): those during the pod's start, or all
            // of them for a pod that has no sync in the trace.
            let until = windows
                .iter()
                .find(|w| w.uid == p.uid)
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
            let mut lost = p.mount_wait.as_ref().and_then(|m| m.lost_to_polling_ms);
            for (_, stage, dur) in rows {
                add(&mut order, stage, dur);
                // The derived row follows its mount wait, once per pod.
                if mount_wait_names.contains(&stage) {
                    if let Some(l) = lost.take() {
                        add(&mut order, STAGE_LOST, Some(l));
                    }
                }
            }
        }
        order.retain(|s| samples.contains_key(s));
        Run {
            label: label.to_string(),
            source: source.to_string(),
            report,
            podtrace_version: trace.header.podtrace_version.clone(),
            samples,
            order,
            no_exit,
        }
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// A pod's start: its first sync's start to the end of its first sync that
/// returned without error (None if none did), CLOCK_MONOTONIC ns.
#[derive(Debug, Clone)]
pub struct PodWindow {
    pub pod: usize,
    pub uid: String,
    pub start: u64,
    pub end: Option<u64>,
}

/// The start window of every pod that has a sync.
pub fn pod_windows(c: &Correlated) -> Vec<PodWindow> {
    let mut syncs: Vec<Vec<usize>> = vec![Vec::new(); c.pods.len()];
    for (i, s) in c.spans.iter().enumerate() {
        if let (Role::PodSync, Some(p)) = (s.role, s.pod) {
            if let Some(v) = syncs.get_mut(p) {
                v.push(i);
            }
        }
    }
    c.pods
        .iter()
        .zip(syncs)
        .enumerate()
        .filter_map(|(pi, (pod, mut idx))| {
            idx.sort_by_key(|&i| c.spans[i].start);
            let start = c.spans[*idx.first()?].start;
            let end = idx
                .iter()
                .map(|&i| &c.spans[i])
                .find(|s| s.end.is_some() && s.arg_u64("error") != Some(1))
                .and_then(|s| s.end);
            Some(PodWindow {
                pod: pi,
                uid: pod.uid.clone(),
                start,
                end,
            })
        })
        .collect()
}

/// Per pod UID: the whole pod start in ms (see [`PodWindow`]).
pub fn whole_pod_ms(c: &Correlated) -> Vec<(String, Option<f64>)> {
    pod_windows(c)
        .into_iter()
        .map(|w| (w.uid, w.end.map(|e| ms(e.saturating_sub(w.start)))))
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub percentile: &'static str,
    pub interval: &'static str,
    pub resamples: usize,
    pub confidence: f64,
    pub seed: u64,
    pub min_n: usize,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Label of the run compared against (the first).
    pub against: String,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    /// Δp50 relative to the baseline's p50, %.
    pub p50_rel_pct: Option<f64>,
    /// Bootstrap interval of Δp50 (None if a run has fewer than 2 samples).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The interval excludes 0 and both runs have at least MIN_N samples.
    pub significant: bool,
    /// faster | slower | no clear difference | too few samples
    pub verdict: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageComparison {
    pub stage: String,
    /// Per run (same order as `runs`); None where the run has no such stage.
    pub runs: Vec<Option<Summary>>,
    /// Per run against the first; None for the first and where either lacks the stage.
    pub diffs: Vec<Option<Diff>>,
    /// Per run, the durations (ms); for pictures, not serialized.
    #[serde(skip)]
    pub samples: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PollFindings {
    pub label: String,
    pub pods_with_mount_wait: usize,
    pub checks_per_pod: Option<Summary>,
    pub configured_interval_ms: Option<Summary>,
    pub observed_interval_ms: Option<Summary>,
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

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub podtrace_compare: u32,
    pub method: Method,
    pub runs: Vec<RunInfo>,
    pub stages: Vec<StageComparison>,
    pub polling: Vec<PollFindings>,
    pub loops: Vec<LoopComparison>,
    pub warnings: Vec<String>,
}

fn verdict(ci: Option<(f64, f64)>, na: usize, nb: usize) -> (bool, &'static str) {
    match ci {
        _ if na < MIN_N || nb < MIN_N => (false, "too few samples"),
        Some((lo, _)) if lo > 0.0 => (true, "slower"),
        Some((_, hi)) if hi < 0.0 => (true, "faster"),
        _ => (false, "no clear difference"),
    }
}

/// Compares `runs` against the first. Errors on a run without pods and on a
/// run that shares no stage with the first.
pub fn compare(runs: &[Run]) -> Result<Comparison> {
    let Some(base) = runs.first() else {
        bail!("nothing to compare: no runs given");
    };
    if runs.len() < 2 {
        bail!(
            "compare needs at least two traces, got one ({})",
            base.source
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
                    let ci = if a.n >= 2 && b.n >= 2 {
                        bootstrap_median_diff(
                            &samples[0],
                            &samples[i],
                            RESAMPLES,
                            CONFIDENCE,
                            SEED ^ fnv1a(name) ^ (i as u64).wrapping_mul(0x9e37_79b9),
                        )
                    } else {
                        None
                    };
                    let d = b.p50 - a.p50;
                    let (significant, v) = verdict(ci, a.n, b.n);
                    Some(Diff {
                        against: runs[0].label.clone(),
                        p50: d,
                        p90: b.p90 - a.p90,
                        p99: b.p99 - a.p99,
                        mean: b.mean - a.mean,
                        p50_rel_pct: (a.p50 != 0.0).then(|| d / a.p50 * 100.0),
                        ci_low: ci.map(|c| c.0),
                        ci_high: ci.map(|c| c.1),
                        significant,
                        verdict: v.into(),
                    })
                })
                .collect();
            StageComparison {
                stage: name.clone(),
                runs: sums,
                diffs,
                samples,
            }
        })
        .collect();

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

    Ok(Comparison {
        podtrace_compare: COMPARE_VERSION,
        method: Method {
            percentile: "nearest-rank",
            interval:
                "percentile bootstrap of p50(run) - p50(first run), runs resampled independently",
            resamples: RESAMPLES,
            confidence: CONFIDENCE,
            seed: SEED,
            min_n: MIN_N,
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
            })
            .collect(),
        stages,
        polling,
        loops,
        warnings,
    })
}

fn poll_findings(r: &Run) -> PollFindings {
    let mws: Vec<_> = r
        .report
        .pods
        .iter()
        .filter_map(|p| p.mount_wait.as_ref())
        .collect();
    PollFindings {
        label: r.label.clone(),
        pods_with_mount_wait: mws.len(),
        checks_per_pod: summarize(
            &mws.iter()
                .map(|m| m.checks.len() as f64)
                .collect::<Vec<_>>(),
        ),
        configured_interval_ms: summarize(
            &mws.iter()
                .filter_map(|m| m.configured_interval_ms)
                .collect::<Vec<_>>(),
        ),
        observed_interval_ms: summarize(
            &mws.iter()
                .filter_map(|m| m.observed_interval_ms)
                .collect::<Vec<_>>(),
        ),
        lost_to_polling_ms: summarize(
            &mws.iter()
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
            .max(3);
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
        let sw = self
            .stages
            .iter()
            .map(|s| s.stage.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let base = self.runs.first().map(|r| r.label.as_str()).unwrap_or("");
        let _ = writeln!(
            o,
            "\nstage durations, ms (nearest-rank percentiles; Δ against {base}; {:.0}% bootstrap CI of Δp50)",
            CONFIDENCE * 100.0
        );
        let _ = writeln!(
            o,
            "  {:<sw$} {:<lw$} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>23}  verdict",
            "stage", "run", "n", "p50", "p90", "p99", "mean", "Δp50", "Δp50 %", "CI of Δp50",
        );
        for s in &self.stages {
            for (i, r) in self.runs.iter().enumerate() {
                let name = if i == 0 { s.stage.as_str() } else { "" };
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
                        signed(d.p50),
                        d.p50_rel_pct
                            .map(|p| format!("{p:+.1}%"))
                            .unwrap_or_else(|| "-".into()),
                        ci,
                        d.verdict
                    );
                }
                let _ = writeln!(o);
            }
        }

        let cw = lw.max(17);
        let _ = writeln!(o, "\nmount wait polling (over pods: p50)");
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
                "poll checks per pod",
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
                "lost to polling p50 ms",
                per_run(&|p| p50(&p.lost_to_polling_ms)),
            ),
            (
                "lost to polling p90 ms",
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
    fn splitmix_reference_values() {
        // First outputs for seed 0, as in the reference implementation.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = SplitMix64::new(7);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[r.below(5)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn median_in_place_is_nearest_rank() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0, 4.0]), 2.0);
        assert_eq!(median_in_place(&mut [5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median_in_place(&mut [9.0]), 9.0);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_clear_shifts() {
        let a: Vec<f64> = (0..20).map(|i| 100.0 + i as f64).collect();
        let b: Vec<f64> = (0..20).map(|i| 50.0 + i as f64).collect();
        let ci = bootstrap_median_diff(&a, &b, 2000, 0.95, 1);
        assert_eq!(ci, bootstrap_median_diff(&a, &b, 2000, 0.95, 1));
        let (lo, hi) = ci.unwrap_or_default();
        assert!(lo <= -50.0 && (-50.0..0.0).contains(&hi), "{lo} {hi}");
        assert_eq!(bootstrap_median_diff(&[], &b, 10, 0.95, 1), None);
    }
}
