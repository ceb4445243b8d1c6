//! Run-to-run drift, told from the effect of a change.
//!
//! Two runs recorded one after the other differ by more than the change
//! under test: a warmer page cache, image layers already unpacked, a
//! quieter machine. Stages the change cannot touch are negative controls:
//! when two kubelet builds are compared, containerd's own CRI handlers;
//! when two containerd builds are, kubelet's mount wait. Their shift
//! between the runs estimates the drift; a stage is credited to the change
//! only with what its own shift exceeds the drift by.
//!
//! Drift is taken as multiplicative (a slower machine slows a 120 ms
//! sandbox start and a 6 ms container create alike), so shifts are
//! estimated on log durations: each control's samples are centred on the
//! first run's median of that control, the controls are pooled, and the
//! Hodges–Lehmann shift of the pool with its Mann–Whitney interval is the
//! drift. A stage's own log shift minus the drift, with the two intervals'
//! half-widths added in quadrature, is what the change did.
//!
//! Uses [`super::stats`]; knows runs only as samples per stage and the
//! binaries their traces name. Method and numbers: docs/compare.md.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    report::{PodReport, Report},
    stats::{self, MinEffect},
};
use crate::format::{BinaryIdentity, BinaryRecord};

/// Shortest duration taken into a logarithm (ms): a zero-length stage
/// would otherwise be minus infinity.
const FLOOR_MS: f64 = 1e-3;

/// A control disagrees with the others when its interval lies at least
/// this far (log: 10 %) from the median of the controls' shifts: drift
/// moves stages alike, within a few per cent of each other.
const DISAGREE_LOG: f64 = 0.0953;

/// How one traced binary differs between two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildChange {
    /// Catalogue binary name ("kubelet").
    pub binary: String,
    /// The builds seen in each run (`v1.36.3 build 3f2a…`).
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// same build | another build of the same version | another version |
    /// unknown (the trace records no identity)
    pub change: &'static str,
}

impl BuildChange {
    pub fn changed(&self) -> bool {
        matches!(
            self.change,
            "another build of the same version" | "another version"
        )
    }
}

/// The builds of each catalogue binary a run's trace names.
pub fn builds_of(binaries: &[BinaryRecord]) -> BTreeMap<String, Vec<BinaryIdentity>> {
    let mut out: BTreeMap<String, Vec<BinaryIdentity>> = BTreeMap::new();
    for b in binaries {
        let v = out.entry(b.name.clone()).or_default();
        match &b.identity {
            Some(id) if !v.iter().any(|x| x.sha256 == id.sha256) => v.push(id.clone()),
            Some(_) => {}
            // No identity: an old trace; an empty placeholder says "unknown".
            None => v.push(BinaryIdentity::default()),
        }
    }
    out
}

/// Which traced binaries changed between `base` and `run`.
pub fn changes(
    base: &BTreeMap<String, Vec<BinaryIdentity>>,
    run: &BTreeMap<String, Vec<BinaryIdentity>>,
) -> Vec<BuildChange> {
    let names: BTreeSet<&String> = base.keys().chain(run.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let (a, b) = (
                base.get(name).map(Vec::as_slice).unwrap_or_default(),
                run.get(name).map(Vec::as_slice).unwrap_or_default(),
            );
            let known =
                |v: &[BinaryIdentity]| !v.is_empty() && v.iter().all(|i| !i.sha256.is_empty());
            let hashes =
                |v: &[BinaryIdentity]| v.iter().map(|i| i.sha256.clone()).collect::<BTreeSet<_>>();
            let versions =
                |v: &[BinaryIdentity]| v.iter().map(|i| i.version.clone()).collect::<BTreeSet<_>>();
            let change = if !known(a) || !known(b) {
                "unknown (the trace records no build identity)"
            } else if hashes(a) == hashes(b) {
                "same build"
            } else if versions(a) == versions(b) {
                "another build of the same version"
            } else {
                "another version"
            };
            let describe = |v: &[BinaryIdentity]| {
                v.iter()
                    .filter(|i| !i.sha256.is_empty())
                    .map(BinaryIdentity::describe)
                    .collect()
            };
            BuildChange {
                binary: name.clone(),
                from: describe(a),
                to: describe(b),
                change,
            }
        })
        .collect()
}

/// The stages used as controls for one pair of runs, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Controls {
    pub stages: Vec<String>,
    /// In words: "kubelet changed (…), containerd did not: its CRI
    /// handlers".
    pub reason: String,
}

/// Stages a change of the binaries in `changes` cannot touch, among those
/// both runs have (`stage_binary`: stage → the binary whose probe it is).
/// A kubelet change leaves the runtime's own CRI handlers alone; a runtime
/// change leaves kubelet's mount wait alone. `named` (`--control`) are
/// used as given, instead.
pub fn choose_controls(
    changes: &[BuildChange],
    stage_binary: &BTreeMap<String, String>,
    in_both: &dyn Fn(&str) -> bool,
    mount_wait: &str,
    named: &[String],
) -> Option<Controls> {
    if !named.is_empty() {
        let stages: Vec<String> = named.iter().filter(|s| in_both(s)).cloned().collect();
        return (!stages.is_empty()).then(|| Controls {
            reason: "named with --control".into(),
            stages,
        });
    }
    let changed: Vec<&BuildChange> = changes.iter().filter(|c| c.changed()).collect();
    let same: Vec<&BuildChange> = changes
        .iter()
        .filter(|c| c.change == "same build")
        .collect();
    let [c] = changed.as_slice() else {
        return None;
    };
    let untouched: BTreeSet<&str> = same.iter().map(|c| c.binary.as_str()).collect();
    let stages: Vec<String> = if c.binary == "kubelet" {
        stage_binary
            .iter()
            .filter(|(s, b)| untouched.contains(b.as_str()) && in_both(s))
            .map(|(s, _)| s.clone())
            .collect()
    } else if untouched.contains("kubelet") && in_both(mount_wait) {
        vec![mount_wait.to_string()]
    } else {
        Vec::new()
    };
    if stages.is_empty() {
        return None;
    }
    let others: Vec<&str> = untouched.iter().copied().collect();
    Some(Controls {
        reason: format!(
            "{} changed ({}), {} did not: {}",
            c.binary,
            c.change,
            others.join(" and "),
            if c.binary == "kubelet" {
                format!("{}'s own calls", others.join(" and "))
            } else {
                "kubelet's mount wait".to_string()
            }
        ),
        stages,
    })
}

/// One control's own shift between the runs.
#[derive(Debug, Clone, Serialize)]
pub struct ControlShift {
    pub stage: String,
    pub n: (usize, usize),
    /// Shift of its median as a percentage of the first run's (−8.0: 8 %
    /// faster), and its interval.
    pub shift_pct: f64,
    pub low_pct: Option<f64>,
    pub high_pct: Option<f64>,
}

/// The drift between two runs, from their controls.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub controls: Controls,
    /// The pooled controls' shift, % of the first run (multiplicative).
    pub shift_pct: f64,
    pub low_pct: Option<f64>,
    pub high_pct: Option<f64>,
    /// The same on log durations (what stages are corrected by).
    pub log_shift: f64,
    pub log_low: Option<f64>,
    pub log_high: Option<f64>,
    /// The interval excludes no drift.
    pub significant: bool,
    pub per_control: Vec<ControlShift>,
    /// Controls whose own shift is apart from the other controls': perhaps
    /// not untouched by the change after all.
    pub disagreeing: Vec<String>,
    /// The disagreeing ones (a minority) were left out of the drift.
    pub excluded: bool,
}

fn logs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.max(FLOOR_MS).ln()).collect()
}

fn pct(log: f64) -> f64 {
    (log.exp() - 1.0) * 100.0
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    super::report::percentile(&s, 50.0)
}

/// Shift of `b` against `a` on log durations: (estimate, low, high).
pub fn log_shift(a: &[f64], b: &[f64], confidence: f64) -> Option<(f64, Option<f64>, Option<f64>)> {
    let s = stats::shift(&logs(a), &logs(b), confidence)?;
    Some((s.estimate, s.low, s.high))
}

/// Controls centred on the first run's median of each and pooled: the
/// (first run, second run) log samples.
fn pooled(
    base: &BTreeMap<String, Vec<f64>>,
    run: &BTreeMap<String, Vec<f64>>,
    stages: &[&String],
) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for stage in stages {
        let (Some(x), Some(y)) = (base.get(stage.as_str()), run.get(stage.as_str())) else {
            continue;
        };
        let Some(m) = median(&logs(x)) else { continue };
        a.extend(logs(x).into_iter().map(|v| v - m));
        b.extend(logs(y).into_iter().map(|v| v - m));
    }
    (a, b)
}

/// The drift from the controls' samples of both runs (stage → ms). With
/// three controls or more, one whose own interval lies over 10 % from the
/// median of the controls' shifts is left out while such ones are a
/// minority: it moved for a reason of its own, not the runs' drift.
pub fn estimate(
    base: &BTreeMap<String, Vec<f64>>,
    run: &BTreeMap<String, Vec<f64>>,
    controls: Controls,
    confidence: f64,
) -> Option<Drift> {
    let mut per_control = Vec::new();
    let mut shifts = Vec::new();
    for stage in &controls.stages {
        let (Some(x), Some(y)) = (base.get(stage), run.get(stage)) else {
            continue;
        };
        if let Some((e, lo, hi)) = log_shift(x, y, confidence) {
            per_control.push(ControlShift {
                stage: stage.clone(),
                n: (x.len(), y.len()),
                shift_pct: pct(e),
                low_pct: lo.map(pct),
                high_pct: hi.map(pct),
            });
            shifts.push((stage.clone(), e, lo, hi));
        }
    }
    // The median of the controls' own shifts: where most of them are.
    let mut centre: Vec<f64> = shifts.iter().map(|s| s.1).collect();
    centre.sort_by(f64::total_cmp);
    let centre = centre.get(centre.len() / 2).copied();
    let mut disagreeing = Vec::new();
    if let (true, Some(m)) = (shifts.len() >= 3, centre) {
        for (stage, _, lo, hi) in &shifts {
            let far = |x: f64| (x - m).abs() >= DISAGREE_LOG;
            if lo.is_some_and(|l| l > m && far(l)) || hi.is_some_and(|h| h < m && far(h)) {
                disagreeing.push(stage.clone());
            }
        }
    }
    let kept: Vec<&String> = if !disagreeing.is_empty() && disagreeing.len() * 2 < shifts.len() {
        shifts
            .iter()
            .map(|s| &s.0)
            .filter(|s| !disagreeing.contains(s))
            .collect()
    } else {
        shifts.iter().map(|s| &s.0).collect()
    };
    let (a, b) = pooled(base, run, &kept);
    let s = stats::shift(&a, &b, confidence)?;
    let (lo, hi) = (s.low, s.high);
    Some(Drift {
        controls,
        shift_pct: pct(s.estimate),
        low_pct: lo.map(pct),
        high_pct: hi.map(pct),
        log_shift: s.estimate,
        log_low: lo,
        log_high: hi,
        significant: lo.is_some_and(|l| l > 0.0) || hi.is_some_and(|h| h < 0.0),
        per_control,
        excluded: disagreeing.len() * 2 < shifts.len() && !disagreeing.is_empty(),
        disagreeing,
    })
}

/// Drift within one run: its first half of pod starts against its second,
/// on the container runtime's own calls (which kubelet's intervals cannot
/// touch). What one trace can say of how much runs drift apart; None if
/// the runtime was not traced or there are too few pods.
pub fn within_run(report: &Report, confidence: f64) -> Option<Drift> {
    let mut pods: Vec<&PodReport> = report.pods.iter().filter(|p| !p.cri.is_empty()).collect();
    pods.sort_by_key(|p| p.start_unix_ns);
    if pods.len() < 8 {
        return None;
    }
    let (first, second) = pods.split_at(pods.len() / 2);
    let samples = |half: &[&PodReport]| {
        let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for p in half {
            for c in &p.cri {
                if let Some(d) = c.duration_ms {
                    m.entry(c.call.clone()).or_default().push(d);
                }
            }
        }
        m
    };
    let (a, b) = (samples(first), samples(second));
    let stages: Vec<String> = a
        .iter()
        .filter(|(k, v)| v.len() >= 4 && b.get(*k).is_some_and(|w| w.len() >= 4))
        .map(|(k, _)| k.clone())
        .collect();
    if stages.is_empty() {
        return None;
    }
    estimate(
        &a,
        &b,
        Controls {
            reason: "the runtime's own calls, first half of the pods against the second".into(),
            stages,
        },
        confidence,
    )
}

/// What a stage's shift is beyond the drift.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Net {
    /// The stage's own shift on log durations, as % of the first run.
    pub shift_pct: f64,
    /// That shift less the drift, % (multiplicative), and its interval.
    pub net_pct: f64,
    pub low_pct: f64,
    pub high_pct: f64,
    /// The net interval excludes 0 and the net effect clears the minimal
    /// effect at the first run's p50.
    pub beyond_drift: bool,
}

/// `a` (first run) against `b`, net of `drift`.
pub fn net(a: &[f64], b: &[f64], drift: &Drift, confidence: f64, min: &MinEffect) -> Option<Net> {
    let (e, lo, hi) = log_shift(a, b, confidence)?;
    let (lo, hi) = (lo?, hi?);
    let (d, dlo, dhi) = (drift.log_shift, drift.log_low?, drift.log_high?);
    let n = e - d;
    let low = n - ((e - lo).powi(2) + (dhi - d).powi(2)).sqrt();
    let high = n + ((hi - e).powi(2) + (d - dlo).powi(2)).sqrt();
    let p50 = median(a)?;
    let effect_ms = (p50 * (n.exp() - 1.0)).abs();
    Some(Net {
        shift_pct: pct(e),
        net_pct: pct(n),
        low_pct: pct(low),
        high_pct: pct(high),
        beyond_drift: (low > 0.0 || high < 0.0) && effect_ms >= min.threshold_ms(p50),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::rng::SplitMix64;

    /// `n` durations around `ms`, log-normal with spread `sd`, scaled by
    /// `factor`.
    fn sample(rng: &mut SplitMix64, n: usize, ms: f64, sd: f64, factor: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                // Sum of 12 uniforms − 6: a standard normal, near enough.
                let z: f64 = (0..12)
                    .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
                    .sum::<f64>()
                    - 6.0;
                ms * (sd * z).exp() * factor
            })
            .collect()
    }

    fn runs(drift: f64, effect: f64) -> (BTreeMap<String, Vec<f64>>, BTreeMap<String, Vec<f64>>) {
        let mut rng = SplitMix64::new(42);
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        for (stage, ms) in [
            ("RunPodSandbox", 120.0),
            ("CreateContainer", 6.0),
            ("StartContainer", 50.0),
        ] {
            a.insert(stage.to_string(), sample(&mut rng, 30, ms, 0.1, 1.0));
            b.insert(stage.to_string(), sample(&mut rng, 30, ms, 0.1, drift));
        }
        a.insert("runtime_sync".into(), sample(&mut rng, 30, 230.0, 0.1, 1.0));
        b.insert(
            "runtime_sync".into(),
            sample(&mut rng, 30, 230.0, 0.1, drift * effect),
        );
        (a, b)
    }

    fn controls() -> Controls {
        Controls {
            stages: vec![
                "RunPodSandbox".into(),
                "CreateContainer".into(),
                "StartContainer".into(),
            ],
            reason: "test".into(),
        }
    }

    #[test]
    fn drift_alone_is_not_credited_to_the_change() {
        let (a, b) = runs(0.90, 1.0);
        let d = estimate(&a, &b, controls(), 0.95).expect("drift");
        assert!(
            (d.shift_pct + 10.0).abs() < 3.0,
            "drift {:.1}%",
            d.shift_pct
        );
        assert!(d.significant);
        assert!(d.disagreeing.is_empty(), "{:?}", d.disagreeing);
        let n = net(
            &a["runtime_sync"],
            &b["runtime_sync"],
            &d,
            0.95,
            &MinEffect::default(),
        )
        .expect("net");
        // The raw shift is about −10 %: all of it drift.
        assert!(n.shift_pct < -6.0, "{n:?}");
        assert!(!n.beyond_drift, "{n:?}");
        assert!(n.low_pct < 0.0 && n.high_pct > 0.0, "{n:?}");
    }

    #[test]
    fn a_real_effect_above_the_drift_is_still_found() {
        // Positive control: 25 % slower beyond a 10 % drift the other way.
        let (a, b) = runs(0.90, 1.25);
        let d = estimate(&a, &b, controls(), 0.95).expect("drift");
        let n = net(
            &a["runtime_sync"],
            &b["runtime_sync"],
            &d,
            0.95,
            &MinEffect::default(),
        )
        .expect("net");
        assert!(n.beyond_drift, "{n:?}");
        assert!((n.net_pct - 25.0).abs() < 8.0, "{n:?}");
    }

    #[test]
    fn a_control_that_moved_alone_is_pointed_out() {
        let (a, mut b) = runs(1.0, 1.0);
        for v in b.get_mut("StartContainer").expect("stage") {
            *v *= 1.6;
        }
        let d = estimate(&a, &b, controls(), 0.95).expect("drift");
        assert_eq!(d.disagreeing, vec!["StartContainer".to_string()]);
        assert!(d.excluded);
        // The drift is that of the two others: none.
        assert!(d.shift_pct.abs() < 3.0, "{:.1}%", d.shift_pct);
    }

    fn id(version: &str, sha: &str) -> BinaryIdentity {
        BinaryIdentity {
            version: Some(version.into()),
            sha256: sha.into(),
            ..BinaryIdentity::default()
        }
    }

    #[test]
    fn the_changed_binary_picks_the_controls() {
        let map = |k: &[(&str, BinaryIdentity)]| {
            k.iter()
                .map(|(n, i)| (n.to_string(), vec![i.clone()]))
                .collect::<BTreeMap<_, _>>()
        };
        let base = map(&[
            ("kubelet", id("v1.36.3", "aa")),
            ("containerd", id("v2.2.9", "cc")),
        ]);
        let tuned = map(&[
            ("kubelet", id("v1.36.3", "bb")),
            ("containerd", id("v2.2.9", "cc")),
        ]);
        let ch = changes(&base, &tuned);
        assert_eq!(ch[0].binary, "containerd");
        assert_eq!(ch[0].change, "same build");
        assert_eq!(ch[1].change, "another build of the same version");
        let stage_binary: BTreeMap<String, String> = [
            ("RunPodSandbox", "containerd"),
            ("StartContainer", "containerd"),
            ("runtime_sync", "kubelet"),
            ("mount_wait", "kubelet"),
        ]
        .iter()
        .map(|(s, b)| (s.to_string(), b.to_string()))
        .collect();
        let all = |_: &str| true;
        let c = choose_controls(&ch, &stage_binary, &all, "mount_wait", &[]).expect("controls");
        assert_eq!(c.stages, ["RunPodSandbox", "StartContainer"]);
        assert!(c.reason.starts_with("kubelet changed"), "{}", c.reason);
        // A containerd change: kubelet's mount wait.
        let other = map(&[
            ("kubelet", id("v1.36.3", "aa")),
            ("containerd", id("v2.4.2", "dd")),
        ]);
        let c = choose_controls(
            &changes(&base, &other),
            &stage_binary,
            &all,
            "mount_wait",
            &[],
        )
        .expect("controls");
        assert_eq!(c.stages, ["mount_wait"]);
        // Both changed, or nothing known: none, unless named.
        let both = map(&[
            ("kubelet", id("v1.36.3", "bb")),
            ("containerd", id("v2.4.2", "dd")),
        ]);
        assert!(choose_controls(
            &changes(&base, &both),
            &stage_binary,
            &all,
            "mount_wait",
            &[]
        )
        .is_none());
        let named = ["StartContainer".to_string()];
        let c = choose_controls(
            &changes(&base, &both),
            &stage_binary,
            &all,
            "mount_wait",
            &named,
        )
        .expect("named");
        assert_eq!(c.stages, ["StartContainer"]);
    }
}
