//! Synthetic traces: the probe hits kubelet would produce for a set of pod
//! starts with chosen durations, plus the ground truth the generator wrote.
//!
//! For tests and documentation: the exporters, `compare` and the pictures are
//! checked against traces whose every time is known, without a kernel.
//! The probe table is the built-in kubelet catalogue's (the oldest variant
//! of each probe that reads anything), so capture names are the real ones.

use std::collections::HashMap;

use anyhow::{Context as _, Result};

use crate::{
    catalogue::{Catalogue, SiteKind},
    format::{Footer, Header, ProbeInfo, Rec, Val, FORMAT, FORMAT_VERSION},
    trace::Trace,
};

/// Base of the synthetic CLOCK_MONOTONIC: 5000 s after boot.
pub const T0_MONO_NS: u64 = 5_000_000_000_000;
/// Unix time of T0: 2026-01-01T00:00:00Z.
pub const T0_UNIX_NS: i64 = 1_767_225_600_000_000_000;

/// One pod start. Times in ms.
#[derive(Debug, Clone)]
pub struct SynthPod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Start of the pod's first sync, after the trace start.
    pub start_ms: f64,
    /// Sync start → mount wait start.
    pub pre_mount_ms: f64,
    /// Per volume: when it is marked mounted, after the mount wait starts.
    pub volumes_ms: Vec<f64>,
    pub poll_interval_ms: f64,
    /// Duration of one check of unmounted volumes.
    pub check_ms: f64,
    pub sandbox_ms: f64,
    pub containers_ms: Vec<f64>,
    /// Runtime sync end → sync return.
    pub post_ms: f64,
    /// Status syncs after the first (short, no stages).
    pub later_syncs: usize,
    /// Already running when the recording began: its first sync seen is a
    /// resync (update type sync), not the create sync.
    pub already_running: bool,
    /// Already running, and re-added by a kubelet that (re)started: its
    /// first sync is a create sync that finds the sandbox and containers
    /// running (kuberuntime's SyncPod creates nothing) and returns.
    pub readopted: bool,
    /// The start sync returns an error (a failed start: kubelet tries again
    /// in a later sync).
    pub sync_error: bool,
}

impl SynthPod {
    /// A pod `default/pod-{i}` with one volume mounted `mount_ms` after the
    /// wait starts and polls every `poll_ms`.
    pub fn new(i: usize, start_ms: f64, mount_ms: f64, poll_ms: f64) -> SynthPod {
        SynthPod {
            name: format!("pod-{i}"),
            namespace: "default".into(),
            uid: format!("00000000-0000-4000-8000-{i:012}"),
            start_ms,
            pre_mount_ms: 2.0,
            volumes_ms: vec![mount_ms],
            poll_interval_ms: poll_ms,
            check_ms: 0.05,
            sandbox_ms: 40.0,
            containers_ms: vec![15.0],
            post_ms: 1.0,
            later_syncs: 0,
            already_running: false,
            readopted: false,
            sync_error: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub pods: Vec<SynthPod>,
    pub pid: u32,
    pub hostname: String,
    /// Tick period of the reconciler loop; None: no ticks.
    pub reconcile_ms: Option<f64>,
    /// Tick period of the volume populator loop; None: no ticks.
    pub populate_ms: Option<f64>,
    /// PLEG relist period; None: no relist.
    pub relist_ms: Option<f64>,
    /// Also trace containerd (this pid): its CRI handlers run inside
    /// kubelet's create_sandbox and start_container calls.
    pub containerd_pid: Option<u32>,
    /// kubelet 1.32-1.34: the condition closure checks the volumes itself
    /// (no poll_check spans); its `done` result says when all are mounted.
    pub closure_checks: bool,
    /// kubelet 1.36+: after each pod's first sync its postSync asks PLEG
    /// for an on-demand relist of the pod, run on PLEG's goroutine.
    pub post_sync_relist: bool,
    /// Runtime stages (kuberuntime SyncPod and below) run on a goroutine
    /// of their own after the sync returned, not inside it: only their pod
    /// argument ties them to the pod.
    pub runtime_after_sync: bool,
    /// The populator's start-up: its initial poll calls findAndAddNewPods
    /// once right before the periodic loop's first call (same goroutine).
    pub populator_initial_poll: bool,
}

impl SynthSpec {
    pub fn new(pods: Vec<SynthPod>) -> SynthSpec {
        SynthSpec {
            pods,
            pid: 4242,
            hostname: "node-1".into(),
            reconcile_ms: Some(100.0),
            populate_ms: Some(100.0),
            relist_ms: Some(1000.0),
            containerd_pid: None,
            closure_checks: false,
            post_sync_relist: false,
            runtime_after_sync: false,
            populator_initial_poll: false,
        }
    }
}

/// What the generator wrote, CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Default)]
pub struct PodTruth {
    pub uid: String,
    pub sync_start: u64,
    pub sync_end: u64,
    pub mount_wait_start: u64,
    pub mount_wait_end: u64,
    /// (start, unmounted) of each poll check.
    pub checks: Vec<(u64, u64)>,
    /// Last volume marked mounted.
    pub volumes_mounted: Option<u64>,
    /// End of the first check that found nothing unmounted.
    pub noticed: u64,
    pub runtime_sync: (u64, u64),
    pub sandbox: (u64, u64),
    pub containers: Vec<(u64, u64)>,
    /// Containerd CRI handlers: (name, start, end).
    pub cri: Vec<(String, u64, u64)>,
    /// Spans written for this pod (its syncs' trees and its volume marks).
    pub spans: usize,
    /// The on-demand relist after the first sync: (start, end).
    pub relist: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Default)]
pub struct SynthTruth {
    pub pods: Vec<PodTruth>,
    /// (loop probe name, tick start times).
    pub loops: Vec<(String, Vec<u64>)>,
    /// (loop probe name, calls of it that are not ticks).
    pub loop_extra_calls: Vec<(String, usize)>,
    /// Every span written, loops included.
    pub spans: usize,
}

fn ns(ms: f64) -> u64 {
    (ms.max(0.0) * 1e6).round() as u64
}

/// A populator tick's duration.
const POPULATE_TICK_NS: u64 = 150_000;

/// The first tick of a loop with this period, after T0: a third of the
/// period in (the loops start with the process, before the first pod).
fn first_tick_ns(period_ns: u64) -> u64 {
    period_ns / 3
}

/// Start (ns after T0) of the first tick at or after `t` of a loop.
fn next_tick_ns(period_ns: u64, t: u64) -> u64 {
    let first = first_tick_ns(period_ns);
    if t <= first {
        first
    } else {
        first + (t - first).div_ceil(period_ns) * period_ns
    }
}

/// A run whose volumes are mounted the way kubelet mounts them: the
/// populator picks a pod up at its first tick after the pod's sync started,
/// the reconciler mounts at its first tick after that populator tick ended,
/// `mount_work_ms` later. Pod i starts at a random point (seeded) of
/// `[30 + i·spacing, 30 + (i+1)·spacing)` ms, against free-running loops.
#[derive(Debug, Clone)]
pub struct KubeletLike {
    pub pods: usize,
    pub poll_ms: f64,
    pub populate_ms: f64,
    pub reconcile_ms: f64,
    pub relist_ms: f64,
    pub mount_work_ms: f64,
    pub spacing_ms: f64,
    pub seed: u64,
}

impl KubeletLike {
    /// Kubelet's default periods (poll 300 ms, populator and reconciler
    /// 100 ms, relist 1 s).
    pub fn default_periods(pods: usize, seed: u64) -> KubeletLike {
        KubeletLike {
            pods,
            poll_ms: 300.0,
            populate_ms: 100.0,
            reconcile_ms: 100.0,
            relist_ms: 1000.0,
            mount_work_ms: 0.4,
            spacing_ms: 500.0,
            seed,
        }
    }

    /// The tuned periods of the field notes (30/10/10/100 ms).
    pub fn tuned_periods(pods: usize, seed: u64) -> KubeletLike {
        KubeletLike {
            poll_ms: 30.0,
            populate_ms: 10.0,
            reconcile_ms: 10.0,
            relist_ms: 100.0,
            ..KubeletLike::default_periods(pods, seed)
        }
    }

    pub fn spec(&self) -> SynthSpec {
        let mut rng = crate::analysis::rng::SplitMix64::new(self.seed);
        let (pop, rec) = (ns(self.populate_ms), ns(self.reconcile_ms));
        let pods = (0..self.pods)
            .map(|i| {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let start = 30.0 + (i as f64 + u) * self.spacing_ms;
                let mut p = SynthPod::new(i, start, 0.0, self.poll_ms);
                let t_pop = next_tick_ns(pop, ns(start));
                let t_rec = next_tick_ns(rec, t_pop + POPULATE_TICK_NS);
                let mounted = (t_rec + ns(self.mount_work_ms)) as f64 / 1e6;
                p.volumes_ms = vec![mounted - start - p.pre_mount_ms];
                p
            })
            .collect();
        SynthSpec {
            reconcile_ms: Some(self.reconcile_ms),
            populate_ms: Some(self.populate_ms),
            relist_ms: Some(self.relist_ms),
            ..SynthSpec::new(pods)
        }
    }
}

/// A built-in catalogue binary as a probe table (of each probe the last
/// variant that reads anything, the oldest such layout; else its last),
/// ids from `first_id`.
pub fn catalogue_probes(binary: &str, first_id: u32) -> Result<Vec<ProbeInfo>> {
    let cat = Catalogue::builtin()?;
    let b = cat
        .binary(binary)
        .with_context(|| format!("built-in catalogue has no {binary}"))?;
    Ok(b.probes
        .iter()
        .filter_map(|p| {
            let v = p
                .variants
                .iter()
                .rev()
                .find(|v| {
                    let (entry, exit) = v.captures(p);
                    !entry.is_empty() || !exit.is_empty()
                })
                .or_else(|| p.variants.last())?;
            let (entry, exit) = v.captures(p);
            Some((p, v.symbols().next()?.to_string(), entry, exit))
        })
        .enumerate()
        .map(|(i, (p, symbol, entry, exit))| ProbeInfo {
            id: first_id + i as u32,
            binary: binary.into(),
            probe: p.name.clone(),
            role: p.role,
            symbol,
            entry_site: SiteKind::PrologueJump,
            rets: 1,
            entry_captures: entry,
            exit_captures: exit,
        })
        .collect())
}

/// The kubelet catalogue as a probe table.
pub fn kubelet_probes() -> Result<Vec<ProbeInfo>> {
    catalogue_probes("kubelet", 0)
}

/// Writes probe hits goroutine by goroutine, in call order.
struct Gen<'a> {
    probes: &'a [ProbeInfo],
    by_name: HashMap<&'a str, usize>,
    pid: u32,
    containerd_pid: u32,
    events: Vec<Rec>,
    /// Open frames per goroutine, for SP values that look like a real stack.
    depth: HashMap<u64, u64>,
    spans: usize,
}

impl<'a> Gen<'a> {
    fn id(&self, probe: &str) -> Result<usize> {
        self.by_name.get(probe).copied().with_context(|| {
            format!("synthetic trace: no probe `{probe}` in the kubelet catalogue")
        })
    }

    fn rec(&mut self, t: u64, id: usize, kind: u8, goid: u64, args: &[(&str, Val)]) {
        let pid = if self.probes[id].binary == "containerd" {
            self.containerd_pid
        } else {
            self.pid
        };
        let p = &self.probes[id];
        let caps = if kind == podtrace_common::KIND_ENTRY {
            &p.entry_captures
        } else {
            &p.exit_captures
        };
        let a = caps
            .iter()
            .map(|c| {
                args.iter()
                    .find(|(n, _)| *n == c.name)
                    .map(|(_, v)| v.clone())
            })
            .collect();
        let depth = self.depth.entry(goid).or_insert(0);
        if kind != podtrace_common::KIND_ENTRY {
            *depth = depth.saturating_sub(1);
        }
        let sp = 0x00c0_0008_0000 - *depth * 0x100;
        if kind == podtrace_common::KIND_ENTRY {
            *depth += 1;
        }
        self.events.push(Rec {
            t,
            p: id as u32,
            k: kind,
            pid,
            tid: pid + (goid % 8) as u32,
            g: 0x00c0_0010_0000 + goid * 0x1000,
            goid,
            sp,
            ra: 0x40_0000 + id as u64 * 0x40,
            a,
            tr: 0,
        });
    }

    fn open(&mut self, probe: &str, t: u64, goid: u64, args: &[(&str, Val)]) -> Result<()> {
        let id = self.id(probe)?;
        self.spans += 1;
        self.rec(t, id, podtrace_common::KIND_ENTRY, goid, args);
        Ok(())
    }

    fn close(&mut self, probe: &str, t: u64, goid: u64, args: &[(&str, Val)]) -> Result<()> {
        let id = self.id(probe)?;
        self.rec(t, id, podtrace_common::KIND_EXIT, goid, args);
        Ok(())
    }
}

/// How long the operation executor's mount of a synthetic volume runs
/// before it is marked mounted.
pub const SYNTH_SETUP_MS: f64 = 3.0;

fn s(v: &str) -> Val {
    Val::S(v.to_string())
}

/// Builds the trace of `spec` and the truth it encodes.
pub fn synth(spec: &SynthSpec) -> Result<(Trace, SynthTruth)> {
    let mut probes = kubelet_probes()?;
    if spec.containerd_pid.is_some() {
        probes.extend(catalogue_probes("containerd", probes.len() as u32)?);
    }
    let mut g = Gen {
        probes: &probes,
        by_name: probes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.probe.as_str(), i))
            .collect(),
        pid: spec.pid,
        containerd_pid: spec.containerd_pid.unwrap_or(0),
        events: Vec::new(),
        depth: HashMap::new(),
        spans: 0,
    };
    let mut truth = SynthTruth::default();
    let mut end = T0_MONO_NS;
    for (i, pod) in spec.pods.iter().enumerate() {
        let before = g.spans;
        let goid = 1000 + i as u64;
        // `update_type` only on syncs: kubelet's SyncPodCreate (2) for the
        // start, SyncPodSync (0) for resyncs.
        let who = |update_type: Option<u64>| {
            let mut v = vec![
                ("pod_name", s(&pod.name)),
                ("pod_uid", s(&pod.uid)),
                ("pod_namespace", s(&pod.namespace)),
            ];
            if let Some(t) = update_type {
                v.push(("update_type", Val::N(t)));
            }
            v
        };
        let mut pt = PodTruth {
            uid: pod.uid.clone(),
            ..PodTruth::default()
        };
        let st = T0_MONO_NS + ns(pod.start_ms);
        pt.sync_start = st;
        if pod.readopted {
            g.open("sync", st, goid, &who(Some(2)))?;
            g.open("runtime_sync", st + 200_000, goid, &who(None))?;
            g.close("runtime_sync", st + 900_000, goid, &[])?;
            pt.sync_end = st + 1_000_000;
            g.close("sync", pt.sync_end, goid, &[("error", Val::N(0))])?;
            let mut t = pt.sync_end;
            for _ in 0..pod.later_syncs {
                t += 50_000_000;
                g.open("sync", t, goid, &who(Some(0)))?;
                t += 300_000;
                g.close("sync", t, goid, &[("error", Val::N(0))])?;
            }
            end = end.max(t);
            pt.spans = g.spans - before;
            truth.pods.push(pt);
            continue;
        }
        let first_type = if pod.already_running { 0 } else { 2 };
        g.open("sync", st, goid, &who(Some(first_type)))?;
        let mw = st + ns(pod.pre_mount_ms);
        pt.mount_wait_start = mw;
        g.open("mount_wait", mw, goid, &who(None))?;
        if pod.volumes_ms.is_empty() {
            // No volume: kubelet returns before polling (nothing below
            // records an event for a pod without volumes).
            pt.mount_wait_end = mw + 20_000;
        }
        let ph = mw + 10_000;
        let interval = ns(pod.poll_interval_ms).max(1_000);
        if !pod.volumes_ms.is_empty() {
            g.open(
                "poll_helper",
                ph,
                goid,
                &[("interval_ns", Val::N(interval))],
            )?;
        }
        let mounted: Vec<u64> = pod.volumes_ms.iter().map(|v| mw + ns(*v)).collect();
        for (v, &m) in mounted.iter().enumerate() {
            // The operation executor mounts each volume on a goroutine of
            // its own (SYNTH_SETUP_MS of plugin SetUp), which ends by
            // marking it mounted (MarkVolumeAsMounted).
            let vg = 5000 + 16 * i as u64 + v as u64;
            let unique = format!("kubernetes.io/configmap/{}-vol{v}", pod.uid);
            let setup = [
                ("volume", s(&unique)),
                ("outer_volume", s(&format!("vol{v}"))),
                ("pod_uid", s(&pod.uid)),
                ("pod_name", s(&pod.name)),
            ];
            let from = m.saturating_sub(ns(SYNTH_SETUP_MS));
            g.open("volume_setup", from, vg, &setup)?;
            let args = [
                ("pod_unique_name", s(&pod.uid)),
                ("pod_uid", s(&pod.uid)),
                ("volume", s(&unique)),
            ];
            g.open("volume_mounted", m, vg, &args)?;
            g.close("volume_mounted", m + 20_000, vg, &[])?;
            g.close("volume_setup", m + 30_000, vg, &[("error", Val::N(0))])?;
        }
        pt.volumes_mounted = mounted.iter().copied().max();
        if !pod.volumes_ms.is_empty() {
            let mut t;
            let mut k = 0u64;
            loop {
                let c = ph + 20_000 + k * interval;
                g.open("poll_cond", c, goid, &[])?;
                let cs = c + 1_000;
                let ce = cs + ns(pod.check_ms);
                let unmounted = mounted.iter().filter(|&&m| m > cs).count() as u64;
                let done = &[
                    ("done", Val::N(u64::from(unmounted == 0))),
                    ("error", Val::N(0)),
                ];
                if spec.closure_checks {
                    // The closure's own span is the check.
                    g.close("poll_cond", ce, goid, done)?;
                    pt.checks.push((c, unmounted));
                    t = ce;
                } else {
                    g.open("poll_check", cs, goid, &[("pod_uid", s(&pod.uid))])?;
                    g.close("poll_check", ce, goid, &[("unmounted", Val::N(unmounted))])?;
                    g.close("poll_cond", ce + 1_000, goid, done)?;
                    pt.checks.push((cs, unmounted));
                    t = ce + 1_000;
                }
                if unmounted == 0 {
                    pt.noticed = ce;
                    break;
                }
                k += 1;
            }
            g.close("poll_helper", t + 5_000, goid, &[])?;
            pt.mount_wait_end = t + 10_000;
        }
        g.close(
            "mount_wait",
            pt.mount_wait_end,
            goid,
            &[("error", Val::N(0))],
        )?;
        // With runtime_after_sync the sync returns right after the mount
        // wait and the runtime stages follow on their own goroutine.
        let (rgoid, rs) = if spec.runtime_after_sync {
            pt.sync_end = pt.mount_wait_end + 50_000;
            g.close("sync", pt.sync_end, goid, &[("error", Val::N(0))])?;
            (9000 + i as u64, pt.sync_end + 100_000)
        } else {
            (goid, pt.mount_wait_end + 100_000)
        };
        g.open("runtime_sync", rs, rgoid, &who(None))?;
        let mut t = rs + 10_000;
        let mut sandbox_args = who(None);
        sandbox_args.push(("attempt", Val::N(0)));
        g.open("create_sandbox", t, rgoid, &sandbox_args)?;
        pt.sandbox = (t, t + ns(pod.sandbox_ms));
        // containerd's handlers run on its own goroutine, inside kubelet's calls.
        let cg = 20_000 + 8 * i as u64;
        let sandbox_id = format!("sb{i:062}");
        if spec.containerd_pid.is_some() {
            let (a, b) = (
                t + 200_000,
                (pt.sandbox.1.saturating_sub(200_000)).max(t + 200_000),
            );
            let args = [
                ("pod_name", s(&pod.name)),
                ("pod_uid", s(&pod.uid)),
                ("pod_namespace", s(&pod.namespace)),
                ("attempt", Val::N(0)),
            ];
            g.open("RunPodSandbox", a, cg, &args)?;
            let ret = [("sandbox_id", s(&sandbox_id)), ("error", Val::N(0))];
            g.close("RunPodSandbox", b, cg, &ret)?;
            pt.cri.push(("RunPodSandbox".into(), a, b));
        }
        t = pt.sandbox.1;
        g.close("create_sandbox", t, rgoid, &[])?;
        for (ci, c) in pod.containers_ms.iter().enumerate() {
            t += 10_000;
            let mut args = who(None);
            args.push(("container_name", s(&format!("c{ci}"))));
            g.open("start_container", t, rgoid, &args)?;
            pt.containers.push((t, t + ns(*c)));
            if spec.containerd_pid.is_some() && ns(*c) >= 2_000_000 {
                let id = format!("ct{i:03}{ci:059}");
                let (a, m, b) = (t + 300_000, t + ns(*c) / 2, t + ns(*c) - 300_000);
                let args = [
                    ("sandbox_id", s(&sandbox_id)),
                    ("container_name", s(&format!("c{ci}"))),
                    ("pod_uid", s(&pod.uid)),
                    ("pod_name", s(&pod.name)),
                ];
                g.open("CreateContainer", a, cg, &args)?;
                let ret = [("container_id", s(&id)), ("error", Val::N(0))];
                g.close("CreateContainer", m, cg, &ret)?;
                g.open(
                    "StartContainer",
                    m + 50_000,
                    cg,
                    &[("container_id", s(&id))],
                )?;
                g.close("StartContainer", b, cg, &[("error", Val::N(0))])?;
                pt.cri.push(("CreateContainer".into(), a, m));
                pt.cri.push(("StartContainer".into(), m + 50_000, b));
            }
            t += ns(*c);
            g.close("start_container", t, rgoid, &[])?;
        }
        t += 10_000;
        g.close("runtime_sync", t, rgoid, &[])?;
        pt.runtime_sync = (rs, t);
        if !spec.runtime_after_sync {
            pt.sync_end = t + ns(pod.post_ms);
            let error = Val::N(u64::from(pod.sync_error));
            g.close("sync", pt.sync_end, goid, &[("error", error)])?;
        }
        if spec.post_sync_relist {
            // postSync → RequestRelist → relistPod on PLEG's goroutine,
            // between two of its periodic relists (2 ms each, from period/3).
            let mut a = pt.sync_end.max(t) + 200_000;
            if let Some(p) = spec.relist_ms.map(ns).filter(|p| *p > 4_000_000) {
                let first = T0_MONO_NS + p / 3;
                let k = a.saturating_sub(first) / p;
                let tick = first + k * p;
                if a >= tick && a < tick + 2_100_000 {
                    a = tick + 2_100_000;
                } else if a + 1_100_000 > tick + p {
                    a = tick + p + 2_100_000;
                }
            }
            g.open("relist_pod", a, 4, &[("pod_uid", s(&pod.uid))])?;
            g.close("relist_pod", a + 1_000_000, 4, &[])?;
            pt.relist = Some((a, a + 1_000_000));
        }
        let mut t = pt.sync_end.max(t);
        for _ in 0..pod.later_syncs {
            t += 50_000_000;
            g.open("sync", t, goid, &who(Some(0)))?;
            t += 300_000;
            g.close("sync", t, goid, &[("error", Val::N(0))])?;
        }
        end = end.max(t);
        pt.spans = g.spans - before;
        truth.pods.push(pt);
    }
    end += 200_000_000;
    let loops: [(&str, Option<f64>, u64, u64); 3] = [
        ("reconcile", spec.reconcile_ms, 1, 300_000),
        ("populate", spec.populate_ms, 3, POPULATE_TICK_NS),
        ("relist", spec.relist_ms, 4, 2_000_000),
    ];
    for (name, period, goid, dur) in loops {
        let Some(period) = period.map(ns).filter(|p| *p > dur) else {
            continue;
        };
        let mut ticks = Vec::new();
        let mut t = T0_MONO_NS + first_tick_ns(period);
        if name == "populate" && spec.populator_initial_poll {
            // The initial poll's call, then the loop's first right after.
            g.open(name, t, goid, &[])?;
            g.close(name, t + dur, goid, &[])?;
            truth.loop_extra_calls.push((name.to_string(), 1));
            t += dur + 20_000;
        }
        while t + dur < end {
            g.open(name, t, goid, &[])?;
            if name == "reconcile" {
                g.open("mount_volumes", t + 10_000, goid, &[])?;
                g.close("mount_volumes", t + 60_000, goid, &[])?;
            }
            g.close(name, t + dur, goid, &[])?;
            ticks.push(t);
            t += period;
        }
        truth.loops.push((name.to_string(), ticks));
    }
    truth.spans = g.spans;
    let mut events = g.events;
    // Stable: a goroutine's hits at one instant keep their call order.
    events.sort_by_key(|e| e.t);
    let footer = Footer {
        events: events.len() as u64,
        drops: 0,
        hits: events.len() as u64,
        duration_ns: end - T0_MONO_NS,
        stopped_by: "duration".into(),
        capture_problems: Vec::new(),
    };
    let header = Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        podtrace_version: env!("CARGO_PKG_VERSION").into(),
        hostname: spec.hostname.clone(),
        node_name: spec.hostname.clone(),
        mono_to_unix_ns: T0_UNIX_NS - T0_MONO_NS as i64,
        started_unix_ns: T0_UNIX_NS,
        binaries: std::iter::once(crate::format::BinaryRecord {
            name: "kubelet".into(),
            path: "/usr/bin/kubelet".into(),
            go_version: Some("go1.27.0".into()),
            version: Some("v1.36.3".into()),
            pids: vec![spec.pid],
            unresolved: vec![],
            unseen: None,
            identity: None,
            first_probe: None,
            probe_count: None,
        })
        .chain(spec.containerd_pid.map(|pid| crate::format::BinaryRecord {
            name: "containerd".into(),
            path: "/usr/bin/containerd".into(),
            go_version: Some("go1.24.0".into()),
            version: Some("v2.2.9".into()),
            pids: vec![pid],
            unresolved: vec![],
            unseen: None,
            identity: None,
            first_probe: None,
            probe_count: None,
        }))
        .collect(),
        probes,
    };
    Ok((
        Trace {
            header,
            events,
            footer: Some(footer),
            notes: vec![],
            warnings: vec![],
        },
        truth,
    ))
}

/// Writes a trace as the recorder does (JSON Lines), for tests of file input.
pub fn write_trace(trace: &Trace, path: &std::path::Path) -> Result<()> {
    let mut w = crate::trace::Writer::create(path, &trace.header)?;
    for e in &trace.events {
        w.event(e)?;
    }
    w.finish(trace.footer.clone().unwrap_or_default())
}

/// A long recording of a busy node, for `cargo xtask bench` and the
/// streaming reader's tests: `running` pods resyncing every `resync_s`,
/// PLEG relisting every second (three gRPC calls to containerd each), the
/// reconciler and populator ticking every 100 ms, and a new pod starting
/// every `start_every_s` (sandbox, one container, containerd's CRI calls,
/// poll checks every 300 ms until its volume is mounted).
#[derive(Debug, Clone)]
pub struct BusyNode {
    pub seconds: u64,
    pub running: usize,
    pub resync_s: u64,
    pub start_every_s: u64,
}

impl BusyNode {
    /// One hour: 100 running pods, a start every 5 s.
    pub fn hour() -> BusyNode {
        BusyNode {
            seconds: 3600,
            running: 100,
            resync_s: 60,
            start_every_s: 5,
        }
    }
}

/// What [`write_busy_node`] wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct BusyStats {
    pub events: u64,
    pub spans: u64,
    pub pod_starts: u64,
    pub bytes: u64,
}

/// Writes the trace of `spec` to `path` as the recorder would, in time
/// order, a minute at a time (bounded memory however long).
pub fn write_busy_node(spec: &BusyNode, path: &std::path::Path) -> Result<BusyStats> {
    let mut probes = kubelet_probes()?;
    let containerd_pid = 4343;
    probes.extend(catalogue_probes("containerd", probes.len() as u32)?);
    let (trace, _) = synth(&SynthSpec {
        containerd_pid: Some(containerd_pid),
        ..SynthSpec::new(vec![])
    })?;
    let mut header = trace.header;
    header.probes = probes.clone();
    let mut g = Gen {
        probes: &probes,
        by_name: probes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.probe.as_str(), i))
            .collect(),
        pid: 4242,
        containerd_pid,
        events: Vec::new(),
        depth: HashMap::new(),
        spans: 0,
    };
    let mut w = crate::trace::Writer::create(path, &header)?;
    let mut st = BusyStats::default();
    let ms = 1_000_000u64;
    let minute = 60_000 * ms;
    let end = T0_MONO_NS + spec.seconds * 1000 * ms;
    let mut from = T0_MONO_NS;
    let mut next_start = 0u64;
    while from < end {
        let to = (from + minute).min(end);
        // Loops: reconciler (goroutine 1) and populator (3) every 100 ms,
        // PLEG (4) every second with containerd's list calls inside.
        let mut t = from + 100 * ms / 3;
        while t < to {
            g.open("reconcile", t, 1, &[])?;
            g.open("mount_volumes", t + 10_000, 1, &[])?;
            g.close("mount_volumes", t + 60_000, 1, &[])?;
            g.close("reconcile", t + 300_000, 1, &[])?;
            g.open("populate", t + 50 * ms, 3, &[])?;
            g.close("populate", t + 50 * ms + POPULATE_TICK_NS, 3, &[])?;
            t += 100 * ms;
        }
        let mut t = from + 1000 * ms / 3;
        while t < to {
            g.open("relist", t, 4, &[])?;
            for k in 0..3u64 {
                let a = t + 100_000 + k * 500_000;
                g.open("grpc_unary", a, 30 + k, &[])?;
                g.close("grpc_unary", a + 300_000, 30 + k, &[])?;
            }
            g.close("relist", t + 2 * ms, 4, &[])?;
            t += 1000 * ms;
        }
        // Resyncs of the running pods, spread over the period.
        let period = spec.resync_s.max(1) * 1000 * ms;
        for i in 0..spec.running {
            let offset = period * i as u64 / spec.running.max(1) as u64 + 7 * ms;
            let mut t = from - (from - T0_MONO_NS) % period + offset;
            while t < to {
                if t >= from {
                    busy_resync(&mut g, i, t)?;
                }
                t += period;
            }
        }
        // Pod starts.
        let every = spec.start_every_s.max(1) * 1000 * ms;
        loop {
            let t = T0_MONO_NS + next_start * every + 1234 * ms;
            if t >= to {
                break;
            }
            busy_start(&mut g, spec.running + next_start as usize, t)?;
            next_start += 1;
        }
        // Everything before `to` is final: later minutes write after it.
        g.events.sort_by_key(|e| e.t);
        let keep = g.events.partition_point(|e| e.t < to);
        for e in g.events.drain(..keep) {
            w.event(&e)?;
        }
        from = to;
    }
    for e in g.events.drain(..) {
        w.event(&e)?;
    }
    st.events = w.events;
    st.spans = g.spans as u64;
    st.pod_starts = next_start;
    w.finish(Footer {
        events: st.events,
        drops: 0,
        hits: st.events,
        duration_ns: end - T0_MONO_NS,
        stopped_by: "duration".into(),
        capture_problems: Vec::new(),
    })?;
    st.bytes = std::fs::metadata(path)?.len();
    Ok(st)
}

fn busy_who(i: usize, update_type: Option<u64>) -> Vec<(&'static str, Val)> {
    let mut v = vec![
        ("pod_name", s(&format!("pod-{i}"))),
        ("pod_uid", s(&format!("00000000-0000-4000-8000-{i:012}"))),
        ("pod_namespace", s("default")),
    ];
    if let Some(t) = update_type {
        v.push(("update_type", Val::N(t)));
    }
    v
}

/// A running pod's resync: its volumes are mounted (one check), the
/// runtime sync asks containerd for the pod's status.
fn busy_resync(g: &mut Gen, i: usize, t: u64) -> Result<()> {
    let goid = 1000 + i as u64;
    let uid = format!("00000000-0000-4000-8000-{i:012}");
    g.open("sync", t, goid, &busy_who(i, Some(0)))?;
    g.open("mount_wait", t + 100_000, goid, &busy_who(i, None))?;
    g.open(
        "poll_helper",
        t + 110_000,
        goid,
        &[("interval_ns", Val::N(300_000_000))],
    )?;
    g.open("poll_cond", t + 130_000, goid, &[])?;
    g.open("poll_check", t + 131_000, goid, &[("pod_uid", s(&uid))])?;
    g.close("poll_check", t + 181_000, goid, &[("unmounted", Val::N(0))])?;
    let done = [("done", Val::N(1)), ("error", Val::N(0))];
    g.close("poll_cond", t + 182_000, goid, &done)?;
    g.close("poll_helper", t + 187_000, goid, &[])?;
    g.close("mount_wait", t + 192_000, goid, &[("error", Val::N(0))])?;
    g.open("runtime_sync", t + 300_000, goid, &busy_who(i, None))?;
    g.open("grpc_unary", t + 400_000, 40 + i as u64, &[])?;
    g.close("grpc_unary", t + 700_000, 40 + i as u64, &[])?;
    g.close("runtime_sync", t + 900_000, goid, &[])?;
    g.close("sync", t + 1_000_000, goid, &[("error", Val::N(0))])
}

/// A pod start: sandbox, one container, a volume mounted 250 ms into the
/// mount wait and noticed by the poll at 300 ms.
fn busy_start(g: &mut Gen, i: usize, st: u64) -> Result<()> {
    let goid = 1000 + i as u64;
    let uid = format!("00000000-0000-4000-8000-{i:012}");
    let ms = 1_000_000u64;
    g.open("sync", st, goid, &busy_who(i, Some(2)))?;
    let mw = st + 2 * ms;
    g.open("mount_wait", mw, goid, &busy_who(i, None))?;
    let ph = mw + 10_000;
    g.open(
        "poll_helper",
        ph,
        goid,
        &[("interval_ns", Val::N(300 * ms))],
    )?;
    let vg = 500_000 + i as u64;
    let vol = [
        ("pod_unique_name", s(&uid)),
        ("pod_uid", s(&uid)),
        ("volume", s(&format!("kubernetes.io/configmap/{uid}-vol0"))),
    ];
    g.open("volume_mounted", mw + 250 * ms, vg, &vol)?;
    g.close("volume_mounted", mw + 250 * ms + 20_000, vg, &[])?;
    let mut end = ph;
    for (k, unmounted) in [(0u64, 1u64), (1, 0)] {
        let c = ph + 20_000 + k * 300 * ms;
        g.open("poll_cond", c, goid, &[])?;
        g.open("poll_check", c + 1_000, goid, &[("pod_uid", s(&uid))])?;
        g.close(
            "poll_check",
            c + 51_000,
            goid,
            &[("unmounted", Val::N(unmounted))],
        )?;
        let done = [("done", Val::N(1 - unmounted)), ("error", Val::N(0))];
        g.close("poll_cond", c + 52_000, goid, &done)?;
        end = c + 52_000;
    }
    g.close("poll_helper", end + 5_000, goid, &[])?;
    g.close("mount_wait", end + 10_000, goid, &[("error", Val::N(0))])?;
    let rs = end + 100_000;
    g.open("runtime_sync", rs, goid, &busy_who(i, None))?;
    let mut args = busy_who(i, None);
    args.push(("attempt", Val::N(0)));
    let t = rs + 10_000;
    g.open("create_sandbox", t, goid, &args)?;
    let cg = 2_000_000 + i as u64;
    let sandbox_id = format!("sb{i:062}");
    let mut cri = busy_who(i, None);
    cri.push(("attempt", Val::N(0)));
    g.open("RunPodSandbox", t + 200 * 1000, cg, &cri)?;
    let ret = [("sandbox_id", s(&sandbox_id)), ("error", Val::N(0))];
    g.close("RunPodSandbox", t + 39 * ms, cg, &ret)?;
    g.close("create_sandbox", t + 40 * ms, goid, &[])?;
    let t = t + 40 * ms + 10_000;
    let mut args = busy_who(i, None);
    args.push(("container_name", s("c0")));
    g.open("start_container", t, goid, &args)?;
    let id = format!("ct{i:062}");
    let cargs = [
        ("sandbox_id", s(&sandbox_id)),
        ("container_name", s("c0")),
        ("pod_uid", s(&uid)),
        ("pod_name", s(&format!("pod-{i}"))),
    ];
    g.open("CreateContainer", t + 300_000, cg, &cargs)?;
    let ret = [("container_id", s(&id)), ("error", Val::N(0))];
    g.close("CreateContainer", t + 8 * ms, cg, &ret)?;
    g.open(
        "StartContainer",
        t + 8 * ms + 50_000,
        cg,
        &[("container_id", s(&id))],
    )?;
    g.close("StartContainer", t + 15 * ms, cg, &[("error", Val::N(0))])?;
    g.close("start_container", t + 16 * ms, goid, &[])?;
    g.close("runtime_sync", t + 17 * ms, goid, &[])?;
    g.close("sync", t + 18 * ms, goid, &[("error", Val::N(0))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::report::{Report, StageRow},
        correlate::correlate,
    };

    #[test]
    fn pods_already_running_are_resyncs_not_starts() -> Result<()> {
        let mut old = SynthPod::new(0, 10.0, 0.0, 300.0);
        old.already_running = true;
        old.later_syncs = 3;
        let (t, _) = synth(&SynthSpec::new(vec![
            old,
            SynthPod::new(1, 40.0, 30.0, 300.0),
        ]))?;
        let c = correlate(&t);
        let r = Report::build(&t, &c);
        let started: Vec<&str> = r.pods.iter().filter_map(|p| p.name.as_deref()).collect();
        assert_eq!(started, ["pod-1"]);
        assert_eq!(r.resynced_pods.len(), 1);
        assert_eq!(r.resynced_pods[0].name.as_deref(), Some("pod-0"));
        assert_eq!(r.resynced_pods[0].syncs, 4);
        assert!(r
            .to_table()
            .contains("already running (resynced while recording; not starts)"));
        let w = crate::analysis::pods::pod_windows(&c);
        assert_eq!(w.len(), 1, "compare counts only the start");
        Ok(())
    }

    #[test]
    fn report_recovers_the_synthetic_truth() -> Result<()> {
        let mut p = SynthPod::new(0, 10.0, 250.0, 100.0);
        p.volumes_ms = vec![120.0, 250.0];
        p.later_syncs = 2;
        let (t, truth) = synth(&SynthSpec::new(vec![
            p,
            SynthPod::new(1, 40.0, 30.0, 300.0),
        ]))?;
        let c = correlate(&t);
        assert_eq!(c.stats.spans as usize, truth.spans);
        assert_eq!(
            (
                c.stats.aged_out,
                c.stats.unmatched_exits,
                c.stats.open_at_end
            ),
            (0, 0, 0)
        );
        let r = Report::build(&t, &c);
        assert_eq!(r.pods.len(), 2);
        let (p0, t0) = (&r.pods[0], &truth.pods[0]);
        assert_eq!(p0.later_syncs, 2);
        let mw = p0.mount_wait.as_ref().context("mount wait")?;
        assert_eq!(mw.checks.len(), t0.checks.len());
        assert_eq!(
            mw.checks.iter().map(|c| c.unmounted).collect::<Vec<_>>(),
            t0.checks.iter().map(|c| Some(c.1)).collect::<Vec<_>>()
        );
        let lost = (t0.noticed - t0.volumes_mounted.context("mounted")?) as f64 / 1e6;
        assert!((mw.lost_to_polling_ms.context("lost")? - lost).abs() < 1e-9);
        let sync_ms = (t0.sync_end - t0.sync_start) as f64 / 1e6;
        assert!((p0.stages[0].duration_ms.context("sync")? - sync_ms).abs() < 1e-9);
        assert_eq!(r.loops.len(), 3);
        Ok(())
    }

    /// kubelet 1.32-1.34 (poll_check is `mismatch` there): the condition
    /// closure's calls are the checks, its `done` says when it saw them all.
    #[test]
    fn closure_checks_stand_in_for_poll_check() -> Result<()> {
        let mut p = SynthPod::new(0, 10.0, 250.0, 100.0);
        p.volumes_ms = vec![120.0, 250.0];
        let mut spec = SynthSpec::new(vec![p]);
        spec.closure_checks = true;
        let (t, truth) = synth(&spec)?;
        let c = correlate(&t);
        assert!(!c
            .spans
            .iter()
            .any(|s| s.role == crate::catalogue::Role::PollCheck));
        let r = Report::build(&t, &c);
        let (mw, t0) = (
            r.pods[0].mount_wait.as_ref().context("mount wait")?,
            &truth.pods[0],
        );
        assert!(t0.checks.len() > 1, "the pod waits more than one check");
        assert_eq!(mw.checks.len(), t0.checks.len());
        assert!(mw.checks.iter().all(|c| c.unmounted.is_none()));
        let noticed = (t0.noticed - t0.mount_wait_start) as f64 / 1e6;
        let lost = (t0.noticed - t0.volumes_mounted.context("mounted")?) as f64 / 1e6;
        assert!((mw.lost_to_polling_ms.context("lost")? - lost).abs() < 1e-9);
        assert!(mw.noticed_ms.is_some() && noticed > 0.0);
        Ok(())
    }

    /// kubelet 1.36+: the postSync relist runs on PLEG's goroutine after the
    /// sync returned; the report shows it with its pod, timed from the
    /// sync's end, and the periodic relist's ticks and period are those of
    /// the loop alone.
    #[test]
    fn on_demand_relist_goes_with_its_pod_not_the_loop() -> Result<()> {
        let mut spec = SynthSpec::new(vec![
            SynthPod::new(0, 10.0, 250.0, 100.0),
            SynthPod::new(1, 700.0, 30.0, 300.0),
        ]);
        spec.post_sync_relist = true;
        spec.relist_ms = Some(100.0);
        let (t, truth) = synth(&spec)?;
        let c = correlate(&t);
        assert_eq!(
            (c.stats.aged_out, c.stats.unmatched_exits),
            (0, 0),
            "relistPod never overlaps a periodic relist"
        );
        let r = Report::build(&t, &c);
        for (p, pt) in r.pods.iter().zip(&truth.pods) {
            assert_eq!(p.uid, pt.uid);
            let (a, b) = pt.relist.context("relist written")?;
            assert_eq!(p.on_demand.len(), 1, "{:?}", p.on_demand);
            let d = &p.on_demand[0];
            assert_eq!(d.call, "relist_pod");
            let after = (a - pt.sync_end) as f64 / 1e6;
            assert!((d.after_sync_ms.context("after sync")? - after).abs() < 1e-9);
            assert!((d.start_ms - (a - pt.sync_start) as f64 / 1e6).abs() < 1e-9);
            assert!((d.duration_ms.context("duration")? - (b - a) as f64 / 1e6).abs() < 1e-9);
            assert!(
                !p.stages.iter().any(|s| s.stage == "relist_pod"),
                "not a stage of the sync"
            );
        }
        let (_, ticks) = truth
            .loops
            .iter()
            .find(|(n, _)| n == "relist")
            .context("relist truth")?;
        let l = r
            .loops
            .iter()
            .find(|l| l.loop_name == "relist")
            .context("relist loop")?;
        assert_eq!((l.ticks, l.on_demand), (ticks.len(), 0));
        assert!((l.period_p50_ms.context("p50")? - 100.0).abs() < 1e-9);
        assert!((l.period_p90_ms.context("p90")? - 100.0).abs() < 1e-9);
        assert!(!r.loops.iter().any(|l| l.loop_name == "relist_pod"));
        Ok(())
    }

    /// Runtime stages that run after the sync returned, on a goroutine of
    /// their own, stay the pod's stages: their own pod argument says whose.
    #[test]
    fn stages_outside_the_sync_stay_with_their_pod() -> Result<()> {
        let mut p = SynthPod::new(0, 10.0, 120.0, 100.0);
        p.containers_ms = vec![15.0, 20.0];
        let mut spec = SynthSpec::new(vec![p, SynthPod::new(1, 40.0, 30.0, 300.0)]);
        spec.runtime_after_sync = true;
        let (t, truth) = synth(&spec)?;
        let c = correlate(&t);
        let r = Report::build(&t, &c);
        assert_eq!(r.pods.len(), 2);
        for (p, pt) in r.pods.iter().zip(&truth.pods) {
            let row = |name: &str| -> Vec<&StageRow> {
                p.stages.iter().filter(|s| s.stage == name).collect()
            };
            let rel = |t: u64| (t - pt.sync_start) as f64 / 1e6;
            let sync = row("sync");
            assert!((sync[0].duration_ms.context("sync")? - rel(pt.sync_end)).abs() < 1e-9);
            let rs = row("runtime_sync");
            assert_eq!(rs.len(), 1, "{:#?}", p.stages);
            assert_eq!(rs[0].depth, 1);
            assert!((rs[0].start_ms - rel(pt.runtime_sync.0)).abs() < 1e-9);
            assert!(
                rs[0].start_ms > sync[0].duration_ms.context("sync")?,
                "after the sync"
            );
            let sb = row("create_sandbox");
            assert_eq!((sb.len(), sb[0].depth), (1, 2));
            assert!((sb[0].start_ms - rel(pt.sandbox.0)).abs() < 1e-9);
            let sc = row("start_container");
            assert_eq!(sc.len(), pt.containers.len());
            for (row, (a, b)) in sc.iter().zip(&pt.containers) {
                assert_eq!(row.depth, 2);
                assert!((row.start_ms - rel(*a)).abs() < 1e-9);
                assert!(
                    (row.duration_ms.context("container")? - (b - a) as f64 / 1e6).abs() < 1e-9
                );
            }
        }
        // The same trace read with nesting alone would have lost them.
        let sp = c
            .spans
            .iter()
            .find(|s| &*s.name == "runtime_sync")
            .context("runtime_sync span")?;
        assert_eq!(sp.parent, None);
        Ok(())
    }

    /// Loop periods come from the loop's own goroutine: the populator's
    /// initial poll (a call right before the loop's first) and calls of the
    /// same function on another goroutine count as on-demand, not ticks.
    #[test]
    fn loop_periods_count_only_the_loops_own_ticks() -> Result<()> {
        // A pod late enough for a few PLEG relists (1 s) before it.
        let mut spec = SynthSpec::new(vec![SynthPod::new(0, 3500.0, 120.0, 100.0)]);
        spec.populator_initial_poll = true;
        let (mut t, truth) = synth(&spec)?;
        // Two Relist calls from another goroutine (as EventedPLEG's).
        let relist = t
            .header
            .probes
            .iter()
            .position(|p| p.probe == "relist")
            .context("relist probe")? as u32;
        let pair: Vec<Rec> = t
            .events
            .iter()
            .filter(|e| e.p == relist)
            .take(2)
            .cloned()
            .collect();
        for k in 1..=2u64 {
            for e in &pair {
                let mut e = e.clone();
                e.goid = 77;
                e.g += 0x7700;
                e.t += k * 150_000_000;
                t.events.push(e);
            }
        }
        t.events.sort_by_key(|e| e.t);
        let r = Report::build(&t, &correlate(&t));
        let extra = |n: &str| {
            truth
                .loop_extra_calls
                .iter()
                .find(|(l, _)| l == n)
                .map_or(0, |(_, k)| *k)
        };
        for (name, ticks) in &truth.loops {
            let l = r
                .loops
                .iter()
                .find(|l| l.loop_name == *name)
                .context("loop")?;
            let want_extra = extra(name) + if name == "relist" { 2 } else { 0 };
            assert_eq!((l.ticks, l.on_demand), (ticks.len(), want_extra), "{name}");
            let period = if name == "relist" { 1000.0 } else { 100.0 };
            assert!(
                (l.period_p50_ms.context("p50")? - period).abs() < 1e-9,
                "{name}"
            );
            assert!(
                (l.period_p90_ms.context("p90")? - period).abs() < 1e-9,
                "{name}"
            );
        }
        assert_eq!(extra("populate"), 1);
        assert!(truth.loops.iter().all(|(_, t)| t.len() >= 3));
        Ok(())
    }
}
