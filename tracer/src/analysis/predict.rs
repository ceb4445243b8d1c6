//! What-if: from a trace of kubelet with some loop periods, the mount wait,
//! time lost to polling and sync each pod would have had with others.
//!
//! The model follows the chain the trace shows for each pod (times from the
//! start of its start sync): the volume populator picks the pod up at its
//! first tick after the pod appeared, the reconciler starts the mount at its
//! first tick after that, the volume is marked mounted after the measured
//! mount work, and the mount wait's poll notices at its first check after
//! that. The work of every step (populator tick, mount, poll check, the
//! sync's other stages) is kept as measured; the waits for a tick are
//! replaced: a loop's phase against a pod's arrival is uniform over the new
//! period (pods arrive at random times against free-running loops), the
//! poll ticks at the new interval from the mount wait's first check.
//! Method, assumptions and validation: docs/compare.md.
//!
//! Uses [`super::pods`], [`super::report`] and [`super::rng`]; never compare.

use std::{collections::HashMap, fmt::Write as _};

use serde::Serialize;

use super::{
    pods::{pod_windows, PodWindow, STAGE_LOST, STAGE_POD},
    report::{percentile, MountClass, Report},
    rng::SplitMix64,
};
use crate::{catalogue::Role, correlate::Correlated};

/// Simulated runs for the interval of the median.
pub const RUNS: usize = 2000;
/// Coverage of the prediction interval.
pub const CONFIDENCE: f64 = 0.95;
pub const SEED: u64 = 0x7072_6564_6963_7401;
/// Populator and reconciler periods within this fraction of each other
/// count as equal (phase-locked loops): observed periods differ by timer
/// slack.
pub const LOCKED_TOLERANCE: f64 = 0.02;

/// Loop periods and the poll interval, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Intervals {
    /// The mount wait's poll (podAttachAndMountRetryInterval).
    pub poll_ms: Option<f64>,
    /// The volume populator's loop (findAndAddNewPods).
    pub populate_ms: Option<f64>,
    /// The volume reconciler's loop.
    pub reconcile_ms: Option<f64>,
    /// PLEG relist.
    pub relist_ms: Option<f64>,
}

impl Intervals {
    /// As a trace shows them: the poll interval configured (the poll
    /// helper's argument, median over pods), the loops' observed period
    /// (median tick-to-tick gap of the busiest process).
    pub fn of_report(r: &Report) -> Intervals {
        let mut poll: Vec<f64> = r
            .pods
            .iter()
            .filter_map(|p| p.mount_wait.as_ref()?.configured_interval_ms)
            .collect();
        poll.sort_by(f64::total_cmp);
        let period = |name: &str| {
            r.loops
                .iter()
                .filter(|l| l.loop_name == name)
                .max_by_key(|l| l.ticks)
                .and_then(|l| l.period_p50_ms)
        };
        Intervals {
            poll_ms: percentile(&poll, 50.0),
            populate_ms: period(LOOP_POPULATE),
            reconcile_ms: period(LOOP_RECONCILE),
            relist_ms: period(LOOP_RELIST),
        }
    }

    /// No interval known.
    pub fn default_none() -> Intervals {
        Intervals {
            poll_ms: None,
            populate_ms: None,
            reconcile_ms: None,
            relist_ms: None,
        }
    }

    /// `self` with every interval `other` gives replaced.
    pub fn with(self, other: &Intervals) -> Intervals {
        Intervals {
            poll_ms: other.poll_ms.or(self.poll_ms),
            populate_ms: other.populate_ms.or(self.populate_ms),
            reconcile_ms: other.reconcile_ms.or(self.reconcile_ms),
            relist_ms: other.relist_ms.or(self.relist_ms),
        }
    }
}

/// Catalogue names of the loops the model reads.
pub const LOOP_POPULATE: &str = "populate";
pub const LOOP_RECONCILE: &str = "reconcile";
pub const LOOP_RELIST: &str = "relist";

/// The chain from a pod's appearance to its volumes being mounted, ms from
/// the start of its start sync.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chain {
    /// Sync start → the populator tick that picked the pod up (a wait).
    pub populate_wait_ms: f64,
    /// That tick's duration (work).
    pub populate_work_ms: f64,
    /// Its end → the first reconciler tick after it (a wait).
    pub reconcile_wait_ms: f64,
    /// Whole reconciler periods from that tick to the one that started the
    /// mount (waits): the real kubelet marks an emptyDir or hostPath volume
    /// attached in one tick and mounts it in the next.
    pub reconcile_ticks: u32,
    /// The mounting tick's start → the last volume marked mounted (work).
    pub mount_work_ms: f64,
}

/// What the model keeps of one pod start.
#[derive(Debug, Clone, Serialize)]
pub struct PodModel {
    pub uid: String,
    pub class: MountClass,
    pub sync_ms: f64,
    pub pod_ms: Option<f64>,
    /// Sync start → mount wait start.
    pub mount_wait_start_ms: f64,
    pub mount_wait_ms: f64,
    /// Mount wait start → first poll check's start.
    pub first_check_ms: f64,
    /// Duration of the check that noticed.
    pub check_ms: f64,
    /// Noticed → mount wait returned.
    pub tail_ms: f64,
    /// Observed minus configured poll interval (timer lateness per tick).
    pub tick_lag_ms: Option<f64>,
    pub lost_to_polling_ms: Option<f64>,
    pub chain: Option<Chain>,
}

/// Run-to-run drift the prediction allows for: the work the first run
/// measured (everything but waits for loop ticks and the poll) is scaled by
/// a factor drawn once per simulated run, exp(N(log_shift, log_sd)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftModel {
    pub log_shift: f64,
    pub log_sd: f64,
    /// The shift as % and its 95 % range, for people.
    pub shift_pct: f64,
    pub low_pct: f64,
    pub high_pct: f64,
    /// Where it comes from, in words.
    pub source: String,
}

impl DriftModel {
    pub fn new(log_shift: f64, log_sd: f64, source: String) -> DriftModel {
        let pct = |l: f64| (l.exp() - 1.0) * 100.0;
        DriftModel {
            log_shift,
            log_sd,
            shift_pct: pct(log_shift),
            low_pct: pct(log_shift - 1.96 * log_sd),
            high_pct: pct(log_shift + 1.96 * log_sd),
            source,
        }
    }
}

/// One simulated pod start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub class: MountClass,
    pub mount_wait_ms: f64,
    pub lost_to_polling_ms: Option<f64>,
    pub sync_ms: f64,
    pub pod_ms: Option<f64>,
}

/// The model of every pod of a run that has a start sync; pods whose chain
/// the trace does not show (no mount marks, loops not traced, a mount wait
/// that never noticed) keep `chain: None` and are predicted unchanged.
pub fn models(report: &Report, c: &Correlated) -> Vec<PodModel> {
    let windows = pod_windows(c);
    let window_of: HashMap<&str, &PodWindow> =
        windows.iter().rev().map(|w| (w.uid.as_str(), w)).collect();
    // Loop ticks (start, end) per (loop, pid), in time order, gathered once.
    let mut loop_ticks: HashMap<(&str, u32), Vec<(u64, u64)>> = HashMap::new();
    for s in c.spans.iter().filter(|s| s.role == Role::Loop) {
        loop_ticks
            .entry((&*s.name, s.pid))
            .or_default()
            .push((s.start, s.end.unwrap_or(s.start)));
    }
    for v in loop_ticks.values_mut() {
        v.sort_unstable();
    }
    let ticks = |name: &'static str, pid: u32| -> &[(u64, u64)] {
        loop_ticks
            .get(&(name, pid))
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    // In a tick list sorted by start: the first starting at or after `t`,
    // and the last starting at or before it (binary searches: a long
    // recording has tens of thousands of ticks per loop).
    let first_from = |v: &[(u64, u64)], t: u64| v.get(v.partition_point(|x| x.0 < t)).copied();
    let last_until =
        |v: &[(u64, u64)], t: u64| v.partition_point(|x| x.0 <= t).checked_sub(1).map(|i| v[i]);
    let mut out = Vec::new();
    for p in &report.pods {
        let Some(w) = window_of.get(p.uid.as_str()) else {
            continue;
        };
        let Some(sync_ms) = p.stages.first().and_then(|s| s.duration_ms) else {
            continue;
        };
        let pid = c.spans[w.sync].pid;
        let s0 = w.start;
        let rel = |t: u64| (t as f64 - s0 as f64) / 1e6;
        let pod_ms = w.end.map(rel);
        let Some(mw) = p.mount_wait.as_ref() else {
            out.push(PodModel {
                uid: p.uid.clone(),
                class: MountClass::Unknown,
                sync_ms,
                pod_ms,
                mount_wait_start_ms: 0.0,
                mount_wait_ms: 0.0,
                first_check_ms: 0.0,
                check_ms: 0.0,
                tail_ms: 0.0,
                tick_lag_ms: None,
                lost_to_polling_ms: None,
                chain: None,
            });
            continue;
        };
        let mw_ms = mw.duration_ms.unwrap_or(0.0);
        let first = mw.checks.first();
        let noticing = mw
            .checks
            .iter()
            .find(|k| k.unmounted == Some(0))
            .or(mw.checks.last());
        let check_ms = noticing.and_then(|k| k.duration_ms).unwrap_or(0.0);
        let tail_ms = match (mw.noticed_ms, mw.duration_ms) {
            (Some(n), Some(d)) => (mw.start_ms + d - n).max(0.0),
            _ => 0.0,
        };
        let tick_lag_ms = match (mw.observed_interval_ms, mw.configured_interval_ms) {
            (Some(o), Some(c)) => Some(o - c),
            _ => None,
        };
        // The chain: populator tick after the pod appeared, the reconciler
        // tick after that, the last volume marked mounted.
        let chain = (|| {
            mw.noticed_ms?;
            let mounted = s0 as f64 + mw.volumes_mounted_ms? * 1e6;
            let mounted = mounted.max(0.0) as u64;
            let pops = ticks(LOOP_POPULATE, pid);
            let recs = ticks(LOOP_RECONCILE, pid);
            // The first populator tick at or after the sync started; if that
            // came after the mount, the pod appeared before its sync (added
            // to the pod manager a moment earlier): the last tick before.
            let pop = first_from(pops, s0)
                .filter(|t| t.1 <= mounted)
                .or_else(|| last_until(pops, mounted))?;
            let rec = first_from(recs, pop.1)
                .filter(|t| t.0 <= mounted)
                .or_else(|| last_until(recs, mounted))?;
            // The tick that started the mount: the last one before it.
            let from = recs.partition_point(|t| t.0 <= rec.0);
            let later = &recs[from..recs.partition_point(|t| t.0 <= mounted).max(from)];
            let mounting = later.last().map_or(rec.0, |t| t.0);
            Some(Chain {
                populate_wait_ms: rel(pop.0),
                populate_work_ms: (pop.1 - pop.0) as f64 / 1e6,
                reconcile_wait_ms: (rec.0 as f64 - pop.1 as f64) / 1e6,
                reconcile_ticks: later.len() as u32,
                mount_work_ms: (mounted as f64 - mounting as f64) / 1e6,
            })
        })();
        out.push(PodModel {
            uid: p.uid.clone(),
            class: mw.class,
            sync_ms,
            pod_ms,
            mount_wait_start_ms: mw.start_ms,
            mount_wait_ms: mw_ms,
            first_check_ms: first.map(|k| k.at_ms - mw.start_ms).unwrap_or(0.0),
            check_ms,
            tail_ms,
            tick_lag_ms,
            lost_to_polling_ms: mw.lost_to_polling_ms,
            chain,
        });
    }
    out
}

impl Outcome {
    /// The same start with its measured work (all but the mount wait)
    /// scaled by `g`: a run that is `g` times as slow.
    fn drifted(&self, g: f64) -> Outcome {
        let mw = self.mount_wait_ms;
        Outcome {
            sync_ms: mw + (self.sync_ms - mw) * g,
            pod_ms: self.pod_ms.map(|p| mw + (p - mw) * g),
            ..*self
        }
    }
}

impl PodModel {
    /// The measured outcome.
    pub fn measured(&self) -> Outcome {
        Outcome {
            class: self.class,
            mount_wait_ms: self.mount_wait_ms,
            lost_to_polling_ms: self.lost_to_polling_ms,
            sync_ms: self.sync_ms,
            pod_ms: self.pod_ms,
        }
    }

    /// The outcome with the loops' ticks `u_pop` and `u_rec` (fractions of
    /// their periods after the pod appeared, resp. after the populator's
    /// tick), polling every `poll_ms` late by `lag_ms` per tick.
    pub fn outcome(&self, iv: &Resolved, lag_ms: f64, u_pop: f64, u_rec: f64) -> Option<Outcome> {
        let ch = self.chain.as_ref()?;
        let t_pop = u_pop * iv.populate_ms;
        let t_rec =
            t_pop + ch.populate_work_ms + (u_rec + f64::from(ch.reconcile_ticks)) * iv.reconcile_ms;
        let mounted = t_rec + ch.mount_work_ms;
        let c0 = self.mount_wait_start_ms + self.first_check_ms;
        let step = (iv.poll_ms + lag_ms).max(1e-6);
        let k = if mounted <= c0 {
            0.0
        } else {
            ((mounted - c0) / step).ceil()
        };
        let noticed = c0 + k * step + self.check_ms;
        let mount_wait = noticed + self.tail_ms - self.mount_wait_start_ms;
        let delta = mount_wait - self.mount_wait_ms;
        Some(Outcome {
            class: if k == 0.0 {
                MountClass::AlreadyMounted
            } else {
                MountClass::Waited
            },
            mount_wait_ms: mount_wait,
            lost_to_polling_ms: (k > 0.0).then_some(noticed - mounted),
            sync_ms: self.sync_ms + delta,
            pod_ms: self.pod_ms.map(|p| p + delta),
        })
    }

    /// The phases this pod really had (fractions of the run's periods), to
    /// replay it: with its own intervals, `outcome` gives back the measurement.
    pub fn measured_phases(&self, iv: &Resolved) -> Option<(f64, f64)> {
        let ch = self.chain.as_ref()?;
        Some((
            ch.populate_wait_ms / iv.populate_ms,
            ch.reconcile_wait_ms / iv.reconcile_ms,
        ))
    }
}

/// Intervals with every value known (the model needs all three).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Resolved {
    pub poll_ms: f64,
    pub populate_ms: f64,
    pub reconcile_ms: f64,
}

impl Resolved {
    pub fn of(iv: &Intervals) -> Option<Resolved> {
        Some(Resolved {
            poll_ms: iv.poll_ms?,
            populate_ms: iv.populate_ms?,
            reconcile_ms: iv.reconcile_ms?,
        })
    }
}

/// A predicted statistic: the median over pods and the interval in which
/// the median of a run of `n` pods falls with [`CONFIDENCE`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Predicted {
    pub p50: f64,
    pub p90: f64,
    pub low: f64,
    pub high: f64,
    /// The interval from tick phases and resampling alone (without the
    /// drift between runs): where the width comes from.
    pub ticks_low: f64,
    pub ticks_high: f64,
    /// Pods per simulated run.
    pub n: usize,
}

/// Predicted share of pods per mount-wait class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct ClassShares {
    pub waited: f64,
    pub already_mounted: f64,
    pub no_volumes: f64,
    pub unknown: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StagePrediction {
    pub stage: String,
    /// Measured in the trace the prediction starts from (nearest-rank p50
    /// over the same pods the prediction counts).
    pub measured_p50: Option<f64>,
    pub predicted: Option<Predicted>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub podtrace_predict: u32,
    pub source: String,
    /// The trace's own intervals.
    pub from: Intervals,
    /// The intervals predicted for.
    pub to: Intervals,
    pub pods: usize,
    /// Pods whose chain the trace shows (the others are kept as measured).
    pub modelled: usize,
    pub runs: usize,
    pub confidence: f64,
    pub seed: u64,
    /// Populator and reconciler share a period: their relative phase is
    /// drawn once per simulated run instead of per pod.
    pub phase_locked: bool,
    pub measured_classes: ClassShares,
    pub classes: ClassShares,
    pub stages: Vec<StagePrediction>,
    /// The drift between runs the interval includes (None: not known).
    pub drift: Option<DriftModel>,
    /// With drift: how much the poll timer's lateness per tick may differ
    /// in another run (sd, ms), drawn per simulated run.
    pub lag_sd_ms: Option<f64>,
    pub warnings: Vec<String>,
}

/// At least this share of a trace's pods must show their mount chain for a
/// prediction: the others are kept as measured, which says nothing of the
/// new intervals.
pub const MIN_MODELLED: f64 = 0.5;

pub const PREDICT_VERSION: u32 = 2;

/// The stages the model predicts, by the names a trace gives them.
#[derive(Debug, Clone)]
pub struct StageNames {
    pub sync: String,
    pub mount_wait: String,
}

impl StageNames {
    pub fn of(c: &Correlated) -> StageNames {
        let name = |role: Role, default: &str| {
            c.spans
                .iter()
                .find(|s| s.role == role)
                .map(|s| s.name.to_string())
                .unwrap_or_else(|| default.to_string())
        };
        StageNames {
            sync: name(Role::PodSync, "sync"),
            mount_wait: name(Role::MountWait, "mount_wait"),
        }
    }
}

fn shares(classes: impl Iterator<Item = MountClass>) -> ClassShares {
    let mut s = ClassShares::default();
    let mut n = 0.0;
    for c in classes {
        n += 1.0;
        match c {
            MountClass::Waited => s.waited += 1.0,
            MountClass::AlreadyMounted => s.already_mounted += 1.0,
            MountClass::NoVolumes => s.no_volumes += 1.0,
            MountClass::Unknown => s.unknown += 1.0,
        }
    }
    if n > 0.0 {
        s.waited /= n;
        s.already_mounted /= n;
        s.no_volumes /= n;
        s.unknown /= n;
    }
    s
}

/// The per-stage values of outcomes, as compare counts them: mount wait and
/// lost to polling over pods that waited for a poll tick, sync and pod over
/// all.
fn values(o: &[Outcome]) -> [Vec<f64>; 4] {
    let waited = |x: &&Outcome| x.class == MountClass::Waited;
    let mut v = [
        o.iter().map(|x| x.sync_ms).collect::<Vec<_>>(),
        o.iter().filter(waited).map(|x| x.mount_wait_ms).collect(),
        o.iter()
            .filter(waited)
            .filter_map(|x| x.lost_to_polling_ms)
            .collect(),
        o.iter().filter_map(|x| x.pod_ms).collect(),
    ];
    for x in v.iter_mut() {
        x.sort_by(f64::total_cmp);
    }
    v
}

/// Predicts the pods of `models` (a run with intervals `from`) under `to`;
/// the interval is that of the median of a run of `n` pods. None if the
/// model lacks an interval (say the trace has no populator ticks and none
/// is given).
#[allow(clippy::too_many_arguments)]
pub fn predict(
    source: &str,
    names: &StageNames,
    models: &[PodModel],
    from: Intervals,
    to: Intervals,
    n: usize,
    seed: u64,
    drift: Option<&DriftModel>,
) -> Prediction {
    let mut warnings = Vec::new();
    let to = from.with(&to);
    let resolved = Resolved::of(&to);
    if resolved.is_none() {
        warnings.push(format!(
            "{source}: the model needs the poll interval and the populator and reconciler periods; \
             the trace shows {} and none was given for the rest: pods kept as measured",
            [
                ("poll", from.poll_ms),
                ("populate", from.populate_ms),
                ("reconcile", from.reconcile_ms)
            ]
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
        ));
    }
    let modelled = models.iter().filter(|m| m.chain.is_some()).count();
    let unmodelled_with_volumes = models
        .iter()
        .filter(|m| {
            m.chain.is_none() && matches!(m.class, MountClass::Waited | MountClass::AlreadyMounted)
        })
        .count();
    if unmodelled_with_volumes > 0 {
        warnings.push(format!(
            "{source}: {unmodelled_with_volumes} pods with volumes show no populator → reconciler → mounted chain \
             (loops or mount marks not traced, or the wait never ended): kept as measured"
        ));
    }
    // The run's median tick lag stands in for pods with a single check.
    let mut lags: Vec<f64> = models.iter().filter_map(|m| m.tick_lag_ms).collect();
    lags.sort_by(f64::total_cmp);
    let run_lag = percentile(&lags, 50.0).unwrap_or(0.0);
    let mut rng = SplitMix64::new(seed);
    let uniform = |rng: &mut SplitMix64| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    // Populator and reconciler with the same period tick in a fixed
    // relation, set when kubelet starts and drifting slowly: one draw per
    // simulated run. With different periods the relation turns over from
    // pod to pod: one draw per pod.
    let locked = resolved.is_some_and(|iv| {
        (iv.populate_ms - iv.reconcile_ms).abs() <= LOCKED_TOLERANCE * iv.reconcile_ms
    });
    // A pod's start under the new intervals with its tick phases and the
    // timer late by its own lag plus `lag_off` per poll tick.
    let simulate = |m: &PodModel, u_pop: f64, u_rec: f64, lag_off: f64| -> Outcome {
        let lag = m.tick_lag_ms.unwrap_or(run_lag);
        let lag = if lag >= 0.0 {
            (lag + lag_off).max(0.0)
        } else {
            lag + lag_off
        };
        resolved
            .and_then(|iv| m.outcome(&iv, lag, u_pop, u_rec))
            .unwrap_or_else(|| m.measured())
    };
    // How late the poll's timer is varies with the machine's load as the
    // work does: another run's lateness is uncertain by as much as it
    // varies from pod to pod here (1.4826 MAD, a robust sd).
    let lag_sd_ms = drift.map(|_| {
        let mut dev: Vec<f64> = lags.iter().map(|l| (l - run_lag).abs()).collect();
        dev.sort_by(f64::total_cmp);
        1.4826 * percentile(&dev, 50.0).unwrap_or(0.0)
    });
    let n = n.max(1);
    // Per run the medians without drift (tick phases and resampling alone)
    // and with it.
    let (mut pooled, mut ticks, mut medians): (Vec<Outcome>, [Vec<f64>; 4], [Vec<f64>; 4]) =
        (Vec::new(), Default::default(), Default::default());
    let normal = |rng: &mut SplitMix64| {
        // Box–Muller: a standard normal from two uniforms.
        let (u1, u2) = (uniform(rng).max(f64::MIN_POSITIVE), uniform(rng));
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    if !models.is_empty() {
        for _ in 0..RUNS {
            let u_rec = uniform(&mut rng);
            let draws: Vec<(&PodModel, f64, f64)> = (0..n)
                .map(|_| {
                    let m = &models[rng.below(models.len())];
                    let u_pop = uniform(&mut rng);
                    let u_rec = if locked { u_rec } else { uniform(&mut rng) };
                    (m, u_pop, u_rec)
                })
                .collect();
            let at = |lag_off: f64| -> Vec<Outcome> {
                draws
                    .iter()
                    .map(|&(m, u_pop, u_rec)| simulate(m, u_pop, u_rec, lag_off))
                    .collect()
            };
            let run = at(0.0);
            for (i, v) in values(&run).iter().enumerate() {
                if let Some(p) = percentile(v, 50.0) {
                    ticks[i].push(p);
                }
            }
            let run: Vec<Outcome> = match (drift, lag_sd_ms) {
                (Some(d), Some(sd)) => {
                    let g = (d.log_shift + d.log_sd * normal(&mut rng)).exp();
                    let off = sd * normal(&mut rng);
                    at(off).iter().map(|o| o.drifted(g)).collect()
                }
                _ => run,
            };
            for (i, v) in values(&run).iter().enumerate() {
                if let Some(p) = percentile(v, 50.0) {
                    medians[i].push(p);
                }
            }
            pooled.extend(run);
        }
    }
    for m in medians.iter_mut().chain(ticks.iter_mut()) {
        m.sort_by(f64::total_cmp);
    }
    let pooled_values = values(&pooled);
    let measured: Vec<Outcome> = models.iter().map(PodModel::measured).collect();
    let measured_values = values(&measured);
    let tail = (1.0 - CONFIDENCE) / 2.0 * 100.0;
    let stage_names = [
        names.sync.clone(),
        names.mount_wait.clone(),
        STAGE_LOST.to_string(),
        STAGE_POD.to_string(),
    ];
    let stages = stage_names
        .iter()
        .enumerate()
        .map(|(i, stage)| StagePrediction {
            stage: stage.clone(),
            measured_p50: percentile(&measured_values[i], 50.0),
            predicted: (|| {
                Some(Predicted {
                    p50: percentile(&pooled_values[i], 50.0)?,
                    p90: percentile(&pooled_values[i], 90.0)?,
                    low: percentile(&medians[i], tail)?,
                    high: percentile(&medians[i], 100.0 - tail)?,
                    ticks_low: percentile(&ticks[i], tail)?,
                    ticks_high: percentile(&ticks[i], 100.0 - tail)?,
                    n,
                })
            })(),
        })
        .collect();
    Prediction {
        podtrace_predict: PREDICT_VERSION,
        source: source.to_string(),
        from,
        to,
        pods: models.len(),
        modelled,
        runs: RUNS,
        confidence: CONFIDENCE,
        seed,
        phase_locked: locked,
        measured_classes: shares(models.iter().map(|m| m.class)),
        classes: shares(pooled.iter().map(|o| o.class)),
        stages,
        drift: drift.cloned(),
        lag_sd_ms,
        warnings,
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

impl Prediction {
    /// Why this is no prediction, if it is none: too few pods show the
    /// chain the model follows (the rest would be the measurement again).
    pub fn refusal(&self) -> Option<String> {
        if self.pods > 0 && (self.modelled as f64) >= MIN_MODELLED * self.pods as f64 {
            return None;
        }
        Some(format!(
            "{}: cannot predict: only {} of {} pods show their populator → reconciler → mounted \
             chain (the volume loops or the mount marks were not traced, or the waits never \
             ended); at least {:.0}% are needed, the others would only repeat their measurement",
            self.source,
            self.modelled,
            self.pods,
            MIN_MODELLED * 100.0
        ))
    }

    pub fn stage(&self, name: &str) -> Option<&StagePrediction> {
        self.stages.iter().find(|s| s.stage == name)
    }

    pub fn to_table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "prediction from {} ({} pods, {} with their mount chain in the trace)",
            self.source, self.pods, self.modelled
        );
        for w in &self.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        let _ = writeln!(
            o,
            "\n  {:<22} {:>12} {:>12}",
            "interval", "measured", "what-if"
        );
        for (name, a, b) in [
            ("poll (mount wait)", self.from.poll_ms, self.to.poll_ms),
            ("populator", self.from.populate_ms, self.to.populate_ms),
            ("reconciler", self.from.reconcile_ms, self.to.reconcile_ms),
            ("PLEG relist", self.from.relist_ms, self.to.relist_ms),
        ] {
            let _ = writeln!(o, "  {name:<22} {:>12} {:>12}", opt(a), opt(b));
        }
        let _ = writeln!(
            o,
            "  (no stage of a pod's start sync waits on the PLEG relist: it decides when kubelet \
             notices the started containers, after the sync)"
        );
        if self.phase_locked {
            let _ = writeln!(
                o,
                "  (populator and reconciler share a period: their relative phase is fixed per \
                 kubelet run, drawn once per predicted run)"
            );
        }
        let pct = |v: f64| format!("{:.0}%", v * 100.0);
        let _ = writeln!(
            o,
            "\n  {:<32} {:>9} {:>10}",
            "pods by mount wait", "measured", "predicted"
        );
        for (name, a, b) in [
            (
                "waited for a poll tick",
                self.measured_classes.waited,
                self.classes.waited,
            ),
            (
                "already mounted at first check",
                self.measured_classes.already_mounted,
                self.classes.already_mounted,
            ),
            (
                "no volumes",
                self.measured_classes.no_volumes,
                self.classes.no_volumes,
            ),
        ] {
            let _ = writeln!(o, "  {name:<32} {:>9} {:>10}", pct(a), pct(b));
        }
        let n = self.stages.iter().find_map(|s| s.predicted.map(|p| p.n));
        let _ = writeln!(
            o,
            "\n  {:<18} {:>12} {:>14} {:>24}",
            "stage, ms",
            "measured p50",
            "predicted p50",
            format!(
                "{:.0}% interval{}",
                self.confidence * 100.0,
                n.map(|n| format!(" ({n} pods)")).unwrap_or_default()
            )
        );
        for s in &self.stages {
            let (p, iv) = match &s.predicted {
                Some(p) => (
                    format!("{:.3}", p.p50),
                    format!("[{:.3}, {:.3}]", p.low, p.high),
                ),
                None => ("-".into(), "-".into()),
            };
            let _ = writeln!(
                o,
                "  {:<18} {:>12} {:>14} {:>24}",
                s.stage,
                s.measured_p50
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "-".into()),
                p,
                iv
            );
        }
        let _ = writeln!(
            o,
            "  (mount wait and lost to polling: pods that waited for a poll tick)"
        );
        match &self.drift {
            Some(d) => {
                let _ = writeln!(
                    o,
                    "  the intervals include drift between runs: the measured work (all but the \
                     mount wait) scaled by {:+.1}% [{:+.1}, {:+.1}] ({}), and the poll timer's \
                     lateness per tick ± {:.2} ms (sd)",
                    d.shift_pct,
                    d.low_pct,
                    d.high_pct,
                    d.source,
                    self.lag_sd_ms.unwrap_or(0.0)
                );
                for s in &self.stages {
                    if let Some(p) = &s.predicted {
                        let _ = writeln!(
                            o,
                            "    {:<18} tick phases and resampling alone: [{:.3}, {:.3}]",
                            s.stage, p.ticks_low, p.ticks_high
                        );
                    }
                }
            }
            None => {
                let _ = writeln!(
                    o,
                    "  the intervals cover tick phases and resampling only: the trace shows no \
                     drift to allow for (runtime not traced?); a second run drifts by some per cent"
                );
            }
        }
        o
    }
}
