//! `podtrace compare`: statistics checked against values computed here,
//! independently of the library, and the errors on unusable inputs.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use podtrace::{
    analysis::{
        compare::{compare, compare_with, CompareOptions, Run, Summary, CONFIDENCE},
        stats::MinEffect,
    },
    commands::compare::{run, CompareArgs, CompareFormat},
    correlate::{correlate, load_correlated},
    test_support::synth::{synth, write_trace, KubeletLike, SynthPod, SynthSpec, SynthTruth},
    trace::Trace,
};

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compare-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A run of `n` pods polling every `poll_ms`, volumes ready at varied times.
fn spec(n: usize, poll_ms: f64, seed: u64) -> SynthSpec {
    let pods = (0..n)
        .map(|i| {
            // Deterministic spread, different per run.
            let k = (i as u64 * 7 + seed * 13) % 17;
            let mut p = SynthPod::new(i, 30.0 + 500.0 * i as f64, 40.0 + 23.0 * k as f64, poll_ms);
            p.sandbox_ms = 30.0 + (k % 5) as f64 * 3.0;
            p.containers_ms = vec![10.0 + (k % 3) as f64, 5.0 + (k % 4) as f64];
            p.volumes_ms.push(20.0 + 3.0 * k as f64);
            p
        })
        .collect();
    SynthSpec::new(pods)
}

fn build(label: &str, s: &SynthSpec) -> (Run, SynthTruth) {
    let (t, truth) = synth(s).expect("synthetic trace");
    let c = correlate(&t);
    (Run::new(label, &format!("{label}.trace"), &t, &c), truth)
}

/// Nearest rank, computed with integers: rank = ceil(p·n/100).
fn nearest_rank(sorted: &[f64], p: usize) -> f64 {
    let n = sorted.len();
    let rank = (p * n).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn expected(values: &[f64]) -> Summary {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    Summary {
        n: v.len(),
        p50: nearest_rank(&v, 50),
        p90: nearest_rank(&v, 90),
        p99: nearest_rank(&v, 99),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        min: v[0],
        max: v[v.len() - 1],
    }
}

fn ms(a: u64, b: u64) -> f64 {
    (b - a) as f64 / 1e6
}

/// Per stage, the durations the generator wrote.
fn truth_samples(t: &SynthTruth) -> BTreeMap<&'static str, Vec<f64>> {
    let mut m: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for p in &t.pods {
        m.entry("pod")
            .or_default()
            .push(ms(p.sync_start, p.sync_end));
        m.entry("sync")
            .or_default()
            .push(ms(p.sync_start, p.sync_end));
        m.entry("mount_wait")
            .or_default()
            .push(ms(p.mount_wait_start, p.mount_wait_end));
        let mounted = p.volumes_mounted.expect("volumes");
        m.entry("lost_to_polling")
            .or_default()
            .push(ms(mounted, p.noticed));
        m.entry("runtime_sync")
            .or_default()
            .push(ms(p.runtime_sync.0, p.runtime_sync.1));
        m.entry("create_sandbox")
            .or_default()
            .push(ms(p.sandbox.0, p.sandbox.1));
        for c in &p.containers {
            m.entry("start_container").or_default().push(ms(c.0, c.1));
        }
    }
    m
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

fn assert_summary(got: &Summary, want: &Summary, what: &str) {
    assert_eq!(got.n, want.n, "{what}: n");
    for (g, w, f) in [
        (got.p50, want.p50, "p50"),
        (got.p90, want.p90, "p90"),
        (got.p99, want.p99, "p99"),
        (got.mean, want.mean, "mean"),
        (got.min, want.min, "min"),
        (got.max, want.max, "max"),
    ] {
        assert!(close(g, w), "{what}: {f} {g} != {w}");
    }
}

#[test]
fn stage_statistics_match_the_generated_durations() {
    let (a, ta) = build("default", &spec(12, 300.0, 1));
    let (b, tb) = build("tuned", &spec(12, 100.0, 2));
    let cmp = compare(&[a, b]).expect("compare");
    let (ea, eb) = (truth_samples(&ta), truth_samples(&tb));
    let stages: Vec<&str> = cmp.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        [
            "pod",
            "sync",
            "mount_wait",
            "lost_to_polling",
            "runtime_sync",
            "create_sandbox",
            "start_container"
        ]
    );
    for st in &cmp.stages {
        let name = st.stage.as_str();
        let (wa, wb) = (expected(&ea[name]), expected(&eb[name]));
        let ga = st.runs[0].as_ref().expect("baseline summary");
        let gb = st.runs[1].as_ref().expect("run summary");
        assert_summary(ga, &wa, &format!("{name} default"));
        assert_summary(gb, &wb, &format!("{name} tuned"));
        assert!(
            st.diffs[0].is_none(),
            "the baseline has no difference to itself"
        );
        let d = st.diffs[1].as_ref().expect("diff");
        assert!(close(d.p50, wb.p50 - wa.p50), "{name}: Δp50");
        assert!(close(d.p90, wb.p90 - wa.p90), "{name}: Δp90");
        assert!(close(d.p99, wb.p99 - wa.p99), "{name}: Δp99");
        assert!(close(d.mean, wb.mean - wa.mean), "{name}: Δmean");
        assert_eq!(d.against, "default");
        let (lo, hi) = (d.ci_low.expect("ci"), d.ci_high.expect("ci"));
        assert!(lo <= hi, "{name}: interval [{lo}, {hi}]");
        // The interval is made of differences of sample values.
        assert!(
            lo >= wb.min - wa.max - 1e-9 && hi <= wb.max - wa.min + 1e-9,
            "{name}"
        );
        // The shift is the median of every difference, computed here.
        let mut diffs: Vec<f64> = eb[name]
            .iter()
            .flat_map(|b| ea[name].iter().map(move |a| b - a))
            .collect();
        diffs.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        let k = diffs.len();
        let hl = if k % 2 == 1 {
            diffs[k / 2]
        } else {
            (diffs[k / 2 - 1] + diffs[k / 2]) / 2.0
        };
        assert!(close(d.shift, hl), "{name}: shift {} vs {hl}", d.shift);
        assert!(lo <= hl && hl <= hi, "{name}: shift outside its interval");
        let threshold = (0.05 * wa.p50).max(1.0);
        assert!(close(d.threshold_ms, threshold), "{name}: threshold");
        assert_eq!(
            d.significant,
            (lo > 0.0 || hi < 0.0) && d.shift.abs() >= threshold,
            "{name}: significant iff 0 is outside and the shift is big enough"
        );
    }
    // Polling every 100 ms instead of 300 ms loses less time: clearly so.
    let lost = cmp
        .stages
        .iter()
        .find(|s| s.stage == "lost_to_polling")
        .expect("lost row");
    let d = lost.diffs[1].as_ref().expect("diff");
    assert!(d.significant && d.verdict == "faster", "{d:?}");
    // Polling findings: checks per pod and the configured interval.
    let checks = |t: &SynthTruth| {
        expected(
            &t.pods
                .iter()
                .map(|p| p.checks.len() as f64)
                .collect::<Vec<_>>(),
        )
    };
    assert_summary(
        cmp.polling[0].checks_per_pod.as_ref().expect("checks"),
        &checks(&ta),
        "checks default",
    );
    assert_summary(
        cmp.polling[1].checks_per_pod.as_ref().expect("checks"),
        &checks(&tb),
        "checks tuned",
    );
    assert!(close(
        cmp.polling[0]
            .configured_interval_ms
            .as_ref()
            .expect("interval")
            .p50,
        300.0
    ));
    assert!(close(
        cmp.polling[1]
            .configured_interval_ms
            .as_ref()
            .expect("interval")
            .p50,
        100.0
    ));
    // Loops side by side: the reconciler ticks every 100 ms in both.
    let rec = cmp
        .loops
        .iter()
        .find(|l| l.loop_name == "reconcile")
        .expect("reconcile");
    for r in &rec.runs {
        let f = r.as_ref().expect("ticks");
        assert!(close(f.period_p50_ms.expect("period"), 100.0));
    }
    assert_eq!(cmp.method.confidence, CONFIDENCE);
    assert_eq!(
        (cmp.method.min_effect_pct, cmp.method.min_effect_ms),
        (5.0, 1.0)
    );
}

#[test]
fn noise_is_not_sold_as_a_gain() {
    // The same pods twice: every difference is zero and nothing is significant.
    let (a, _) = build("a", &spec(10, 300.0, 3));
    let (b, _) = build("b", &spec(10, 300.0, 3));
    let cmp = compare(&[a, b]).expect("compare");
    for st in &cmp.stages {
        let d = st.diffs[1].as_ref().expect("diff");
        assert!(!d.significant, "{}: {d:?}", st.stage);
        assert!(d.ci_low.expect("ci") <= 0.0 && d.ci_high.expect("ci") >= 0.0);
    }
    // Three pods a side: no arrangement of 3 against 3 reaches 95 %
    // (P = 2/20 for the most extreme), so no verdict.
    let (a, _) = build("a", &spec(3, 300.0, 1));
    let (b, _) = build("b", &spec(3, 50.0, 2));
    let cmp = compare(&[a, b]).expect("compare");
    let st = cmp
        .stages
        .iter()
        .find(|s| s.stage == "lost_to_polling")
        .expect("row");
    let d = st.diffs[1].as_ref().expect("diff");
    assert!(!d.significant && d.verdict == "too few samples", "{d:?}");
}

#[test]
fn three_runs_compare_against_the_first() {
    let runs: Vec<Run> = [(300.0, 1), (100.0, 2), (50.0, 3)]
        .iter()
        .enumerate()
        .map(|(i, (poll, seed))| build(&format!("r{i}"), &spec(8, *poll, *seed)).0)
        .collect();
    let cmp = compare(&runs).expect("compare");
    assert_eq!(cmp.runs.len(), 3);
    for st in &cmp.stages {
        assert_eq!(st.runs.len(), 3);
        assert!(st.diffs[0].is_none() && st.diffs[1].is_some() && st.diffs[2].is_some());
    }
    let table = cmp.to_table();
    for l in [
        "r0",
        "r1",
        "r2",
        "lost_to_polling",
        "start_container",
        "reconcile",
    ] {
        assert!(table.contains(l), "table lacks {l}:\n{table}");
    }
}

fn rename_stages(t: &mut Trace) {
    for p in &mut t.header.probes {
        if p.role != podtrace::catalogue::Role::PodSync {
            p.probe = format!("containerd_{}", p.probe);
        } else {
            p.probe = "containerd_sync".into();
        }
    }
}

#[test]
fn unusable_inputs_give_clear_messages() {
    let dir = tmp("bad");
    // Empty file.
    let empty = dir.join("empty.trace");
    std::fs::write(&empty, "").expect("write");
    let e = load_correlated(&empty)
        .expect_err("empty must fail")
        .to_string();
    assert!(e.contains("empty file") && e.contains("empty.trace"), "{e}");
    // Another trace format version.
    let (t, _) = synth(&spec(2, 100.0, 1)).expect("synth");
    let mut t2 = t.clone();
    t2.header.version = 99;
    let old = dir.join("v99.trace");
    write_trace(&t2, &old).expect("write");
    let e = load_correlated(&old)
        .expect_err("v99 must fail")
        .to_string();
    assert!(e.contains("version 99") && e.contains("v99.trace"), "{e}");
    // Not a trace at all.
    let junk = dir.join("junk.trace");
    std::fs::write(&junk, "hello\n").expect("write");
    let e = load_correlated(&junk)
        .expect_err("junk must fail")
        .to_string();
    assert!(e.contains("not a podtrace trace"), "{e}");
    // A trace without pod starts.
    let mut nopods = spec(0, 100.0, 1);
    nopods.relist_ms = Some(100.0);
    let (tn, _) = synth(&nopods).expect("synth");
    let cn = correlate(&tn);
    let (a, _) = build("a", &spec(5, 100.0, 1));
    let e = compare(&[a.clone(), Run::new("idle", "idle.trace", &tn, &cn)])
        .expect_err("no pods must fail")
        .to_string();
    assert!(e.contains("idle.trace") && e.contains("no pods"), "{e}");
    // Two runs that share no stage.
    let (mut tc, _) = synth(&spec(5, 100.0, 2)).expect("synth");
    rename_stages(&mut tc);
    let cc = correlate(&tc);
    let other = Run::new("containerd", "containerd.trace", &tc, &cc);
    let e = compare(&[a.clone(), other])
        .expect_err("no common stage must fail")
        .to_string();
    assert!(
        e.contains("no stage in common") && e.contains("a.trace") && e.contains("containerd.trace"),
        "{e}"
    );
    // One run only.
    let e = compare(&[a]).expect_err("one run must fail").to_string();
    assert!(e.contains("at least two"), "{e}");
}

#[test]
fn the_command_reads_files_and_writes_pictures() {
    let dir = tmp("cmd");
    let (ta, _) = synth(&spec(6, 300.0, 1)).expect("synth");
    let (tb, _) = synth(&spec(6, 100.0, 2)).expect("synth");
    let (pa, pb) = (dir.join("default.trace"), dir.join("tuned.trace"));
    write_trace(&ta, &pa).expect("write");
    write_trace(&tb, &pb).expect("write");
    let html = dir.join("cmp.html");
    let svg = dir.join("cmp.svg");
    let code = run(CompareArgs {
        traces: vec![pa.clone(), pb.clone()],
        labels: vec![format!("baseline={}", pa.display())],
        format: CompareFormat::Json,
        html: Some(html.clone()),
        svg: Some(svg.clone()),
        min_effect_pct: 5.0,
        min_effect_ms: 1.0,
        confidence: CONFIDENCE,
        controls: vec![],
        split_by: None,
    })
    .expect("compare runs");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("baseline") && page.contains("tuned") && page.contains("<svg"));
    let pic = std::fs::read_to_string(&svg).expect("svg written");
    assert!(pic.starts_with("<svg") && pic.trim_end().ends_with("</svg>"));
    // A single trace is refused before anything is read.
    let e = run(CompareArgs {
        traces: vec![pa],
        labels: vec![],
        format: CompareFormat::Table,
        html: None,
        svg: None,
        min_effect_pct: 5.0,
        min_effect_ms: 1.0,
        confidence: CONFIDENCE,
        controls: vec![],
        split_by: None,
    })
    .expect_err("one trace must fail")
    .to_string();
    assert!(e.contains("at least two"), "{e}");
    // The JSON form is the documented shape.
    let runs: Vec<Run> = [(&ta, "default"), (&tb, "tuned")]
        .iter()
        .map(|(t, l)| Run::new(l, l, t, &correlate(t)))
        .collect();
    let v = serde_json::to_value(compare(&runs).expect("compare")).expect("json");
    assert_eq!(v["podtrace_compare"], 2);
    assert_eq!(v["method"]["percentile"], "nearest-rank");
    assert!(v["stages"][0]["runs"][1]["p50"].is_number());
    assert!(v["stages"][0]["diffs"][1]["ci_low"].is_number());
    assert!(
        v["stages"][0].get("samples").is_none(),
        "samples stay out of the JSON"
    );
}

#[test]
fn runtime_handlers_are_stages_too() {
    let mk = |poll: f64, seed: u64| {
        let mut s = spec(6, poll, seed);
        s.containerd_pid = Some(900);
        s
    };
    let (a, ta) = build("default", &mk(300.0, 1));
    let (b, tb) = build("tuned", &mk(100.0, 2));
    let cmp = compare(&[a, b]).expect("compare");
    let stages: Vec<&str> = cmp.stages.iter().map(|s| s.stage.as_str()).collect();
    let at = |n: &str| {
        stages
            .iter()
            .position(|s| *s == n)
            .unwrap_or_else(|| panic!("{n} in {stages:?}"))
    };
    assert!(
        at("create_sandbox") < at("RunPodSandbox") && at("RunPodSandbox") < at("start_container")
    );
    for (name, run, truth) in [("RunPodSandbox", 0, &ta), ("CreateContainer", 1, &tb)] {
        let want: Vec<f64> = truth
            .pods
            .iter()
            .flat_map(|p| &p.cri)
            .filter(|c| c.0 == name)
            .map(|c| ms(c.1, c.2))
            .collect();
        let st = cmp.stages.iter().find(|s| s.stage == name).expect("row");
        assert_summary(
            st.runs[run].as_ref().expect("summary"),
            &expected(&want),
            name,
        );
    }
}

#[test]
fn runtime_only_runs_compare_their_cri_calls() {
    let mk = |poll: f64, seed: u64, sandbox: f64| {
        let mut s = spec(6, poll, seed);
        s.containerd_pid = Some(900);
        for p in &mut s.pods {
            p.sandbox_ms += sandbox;
        }
        let (mut t, truth) = synth(&s).expect("synth");
        let probes = t.header.probes.clone();
        t.events
            .retain(|e| probes[e.p as usize].binary == "containerd");
        let c = correlate(&t);
        (Run::new("r", "r.trace", &t, &c), truth)
    };
    let (mut a, ta) = mk(300.0, 1, 0.0);
    let (mut b, tb) = mk(300.0, 1, 25.0);
    a.label = "a".into();
    b.label = "b".into();
    let cmp = compare(&[a, b]).expect("compare");
    let stages: Vec<&str> = cmp.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        ["RunPodSandbox", "CreateContainer", "StartContainer"]
    );
    let st = &cmp.stages[0];
    let want = |t: &SynthTruth| {
        expected(
            &t.pods
                .iter()
                .flat_map(|p| &p.cri)
                .filter(|c| c.0 == "RunPodSandbox")
                .map(|c| ms(c.1, c.2))
                .collect::<Vec<_>>(),
        )
    };
    assert_summary(st.runs[0].as_ref().expect("a"), &want(&ta), "a");
    assert_summary(st.runs[1].as_ref().expect("b"), &want(&tb), "b");
    let d = st.diffs[1].as_ref().expect("diff");
    assert!(
        close(d.p50, 25.0) && d.significant && d.verdict == "slower",
        "{d:?}"
    );
}

fn stage<'a>(
    cmp: &'a podtrace::analysis::compare::Comparison,
    name: &str,
) -> &'a podtrace::analysis::compare::StageComparison {
    cmp.stages
        .iter()
        .find(|s| s.stage == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

#[test]
fn pods_are_classified_and_only_pods_that_waited_count_for_polling() {
    let mut s = spec(12, 300.0, 1);
    // Mounted before the wait began: the first check finds nothing to wait for.
    s.pods[0].volumes_ms = vec![-1.0];
    // No volume at all: kubelet returns before polling.
    s.pods[1].volumes_ms = vec![];
    let (a, truth) = build("default", &s);
    assert_eq!(
        (
            a.classes.waited,
            a.classes.already_mounted,
            a.classes.no_volumes,
            a.classes.unknown
        ),
        (10, 1, 1, 0)
    );
    let (b, _) = build("tuned", &spec(12, 30.0, 2));
    let cmp = compare(&[a, b]).expect("compare");
    let waited: Vec<&podtrace::test_support::synth::PodTruth> = truth.pods[2..].iter().collect();
    let want_wait = expected(
        &waited
            .iter()
            .map(|p| ms(p.mount_wait_start, p.mount_wait_end))
            .collect::<Vec<_>>(),
    );
    let want_lost = expected(
        &waited
            .iter()
            .map(|p| ms(p.volumes_mounted.expect("mounted"), p.noticed))
            .collect::<Vec<_>>(),
    );
    let mw = stage(&cmp, "mount_wait");
    assert_eq!(mw.pods, "pods that waited");
    assert_summary(mw.runs[0].as_ref().expect("wait"), &want_wait, "mount_wait");
    let lost = stage(&cmp, "lost_to_polling");
    assert_summary(lost.runs[0].as_ref().expect("lost"), &want_lost, "lost");
    // The sync row keeps every pod.
    let sync = stage(&cmp, "sync");
    assert_eq!(sync.pods, "all pods");
    assert_eq!(sync.runs[0].as_ref().expect("sync").n, 12);
    // Polling findings count the same pods.
    assert_eq!(cmp.polling[0].pods_with_mount_wait, 12);
    assert_summary(
        cmp.polling[0].lost_to_polling_ms.as_ref().expect("lost"),
        &want_lost,
        "polling lost",
    );
    let table = cmp.to_table();
    for l in [
        "waited for a poll tick",
        "already mounted at the first check",
        "no volumes",
        "mount_wait*",
    ] {
        assert!(table.contains(l), "table lacks {l}:\n{table}");
    }
    let v = serde_json::to_value(&cmp).expect("json");
    assert_eq!(v["runs"][0]["classes"]["already_mounted"], 1);
    assert_eq!(v["runs"][0]["classes"]["no_volumes"], 1);
}

/// Default against tuned, 30 pods each, one default pod already mounted at
/// its first check, the sandbox 2 % and the container start 1 % slower in the
/// tuned run (with per-pod noise): the issue's demo, with enough pods.
fn default_vs_tuned(n: usize) -> (Run, Run) {
    let tweak = |mut s: SynthSpec, sandbox: f64, container: f64, seed: u64| {
        for (i, p) in s.pods.iter_mut().enumerate() {
            let jitter = ((i as u64 * 7 + seed) % 11) as f64 / 10.0 * 0.2;
            p.sandbox_ms = 40.0 * sandbox + jitter;
            p.containers_ms = vec![15.0 * container + jitter];
        }
        s
    };
    let mut d = tweak(KubeletLike::default_periods(n, 1).spec(), 1.0, 1.0, 3);
    d.pods[3].volumes_ms = vec![-1.0];
    let t = tweak(KubeletLike::tuned_periods(n, 2).spec(), 1.02, 1.01, 5);
    (build("default", &d).0, build("tuned", &t).0)
}

#[test]
fn a_tenfold_change_is_called_and_two_percent_is_not() {
    let (d, t) = default_vs_tuned(30);
    let cmp = compare(&[d.clone(), t.clone()]).expect("compare");
    for name in ["pod", "sync", "mount_wait", "lost_to_polling"] {
        let st = stage(&cmp, name);
        let diff = st.diffs[1].as_ref().expect("diff");
        assert_eq!(diff.verdict, "faster", "{name}: {diff:?}");
        // The headline says it with the table's own p50s.
        let (a, b) = (
            st.runs[0].as_ref().expect("a").p50,
            st.runs[1].as_ref().expect("b").p50,
        );
        let said = format!("{name} {:.1}x ({a:.1} -> {b:.1} ms)", a / b);
        assert!(
            cmp.headline[0].contains(&said),
            "{said} not in {}",
            cmp.headline[0]
        );
    }
    let mw = stage(&cmp, "mount_wait").runs[0]
        .as_ref()
        .expect("wait")
        .p50;
    let mwt = stage(&cmp, "mount_wait").runs[1]
        .as_ref()
        .expect("wait")
        .p50;
    assert!((9.0..11.0).contains(&(mw / mwt)), "{mw} / {mwt}");
    for name in ["create_sandbox", "start_container"] {
        let d = stage(&cmp, name).diffs[1].as_ref().expect("diff");
        assert_eq!(d.verdict, "no clear difference", "{name}: {d:?}");
        assert!(!d.significant);
        // Real (the interval excludes 0), but below 5 % and 1 ms.
        assert!(d.ci_low.expect("ci") > 0.0, "{name}: {d:?}");
        assert!(!cmp.headline[0].contains(&format!("slower: {name}")));
    }
    assert!(!cmp.headline[0].contains("slower"), "{}", cmp.headline[0]);
    // Without a minimal effect the same +2 % is called.
    let strict = compare_with(
        &[d, t],
        &CompareOptions {
            confidence: CONFIDENCE,
            min_effect: MinEffect {
                min_pct: 0.0,
                min_ms: 0.0,
            },
            controls: vec![],
        },
    )
    .expect("compare");
    assert_eq!(
        stage(&strict, "create_sandbox").diffs[1]
            .as_ref()
            .expect("diff")
            .verdict,
        "slower"
    );
}

#[test]
fn five_pods_with_one_outlier_cannot_tell_but_thirty_can() {
    // The issue's case: five pods each, one default pod already mounted, is
    // fine for the mount wait now (that pod does not count) but the sync
    // still mixes it in: its interval reaches across zero.
    let (d, t) = default_vs_tuned(5);
    let cmp = compare(&[d, t]).expect("compare");
    let sync = stage(&cmp, "sync").diffs[1].as_ref().expect("diff");
    assert_eq!(sync.verdict, "no clear difference", "{sync:?}");
    assert!(sync.ci_high.expect("ci") > 0.0);
    let mw = stage(&cmp, "mount_wait");
    assert_eq!(mw.runs[0].as_ref().expect("wait").n, 4);
    assert_eq!(
        mw.diffs[1].as_ref().expect("diff").verdict,
        "faster",
        "four pods that waited against five: every pair says so"
    );
}

#[test]
fn the_prediction_is_shown_beside_the_measurement() {
    let (d, t) = default_vs_tuned(30);
    let cmp = compare(&[d, t]).expect("compare");
    let p = cmp.predictions[1].as_ref().expect("prediction");
    assert_eq!(p.from, "default");
    assert!(close(p.intervals.poll_ms.expect("poll"), 30.0));
    for name in ["mount_wait", "sync", "lost_to_polling", "pod"] {
        let st = stage(&cmp, name);
        assert!(
            st.predicted[0].is_none(),
            "the baseline predicts itself not"
        );
        let pr = st.predicted[1].as_ref().expect("predicted");
        assert_eq!(pr.n, 30);
        assert!(pr.low <= pr.p50 && pr.p50 <= pr.high, "{name}: {pr:?}");
    }
    let measured = stage(&cmp, "mount_wait").runs[1].as_ref().expect("m").p50;
    let predicted = stage(&cmp, "mount_wait").predicted[1]
        .as_ref()
        .expect("p")
        .p50;
    assert!(
        (predicted - measured).abs() <= 0.1 * measured,
        "{predicted} vs {measured}"
    );
    let table = cmp.to_table();
    assert!(table.contains("predicted"), "{table}");
    // The page: the headline, one predicted marker per predicted row.
    let page = podtrace::html::compare_html(&cmp);
    assert!(page.contains("class=\"headline\""));
    assert_eq!(page.matches("<g class=\"predicted\">").count(), 4);
    assert!(page.contains("predicted from default"));
    let v = serde_json::to_value(&cmp).expect("json");
    assert!(
        v["stages"][2]["predicted"][1]["p50"].is_number(),
        "{}",
        v["stages"][2]
    );
    assert!(v["predictions"][1]["intervals"]["reconcile_ms"].is_number());
}

/// A default or tuned run of `n` pods traced with containerd, whose runtime
/// work (sandbox and container starts) is `speed` times as long, with a
/// spread, and whose trace says which kubelet and containerd build it is.
fn drifting_run(label: &str, tuned: bool, n: usize, seed: u64, speed: f64) -> (Run, Trace) {
    let k = if tuned {
        KubeletLike::tuned_periods(n, seed)
    } else {
        KubeletLike::default_periods(n, seed)
    };
    let mut s = k.spec();
    s.containerd_pid = Some(4242);
    let mut rng = podtrace::analysis::rng::SplitMix64::new(seed ^ 0x5eed);
    let mut jitter = || 0.85 + 0.3 * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    for p in &mut s.pods {
        p.sandbox_ms = 120.0 * jitter() * speed;
        p.containers_ms = vec![50.0 * jitter() * speed];
    }
    let (mut t, _) = synth(&s).expect("synthetic trace");
    for b in &mut t.header.binaries {
        let sha = match (b.name.as_str(), tuned) {
            ("kubelet", false) => "aa",
            ("kubelet", true) => "bb",
            _ => "cc",
        };
        b.identity = Some(podtrace::format::BinaryIdentity {
            version: Some(
                if b.name == "kubelet" {
                    "v1.36.3"
                } else {
                    "v2.2.9"
                }
                .into(),
            ),
            sha256: sha.repeat(32),
            ..Default::default()
        });
    }
    let c = correlate(&t);
    (Run::new(label, &format!("{label}.trace"), &t, &c), t)
}

fn verdict<'a>(cmp: &'a podtrace::analysis::compare::Comparison, stage: &str) -> &'a str {
    cmp.stages
        .iter()
        .find(|s| s.stage == stage)
        .and_then(|s| s.diffs[1].as_ref())
        .map(|d| d.verdict.as_str())
        .unwrap_or_else(|| panic!("no {stage} row"))
}

#[test]
fn drift_between_runs_is_not_credited_to_the_change() {
    // The tuned run's runtime work is 10 % faster for reasons of its own.
    let (d, _) = drifting_run("default", false, 30, 1, 1.0);
    let (t, _) = drifting_run("tuned", true, 30, 2, 0.9);
    let cmp = compare(&[d, t]).expect("compare");
    let drift = cmp.drift[1].as_ref().expect("a drift estimate");
    assert_eq!(
        drift.controls.stages,
        ["CreateContainer", "RunPodSandbox", "StartContainer"],
        "{}",
        drift.controls.reason
    );
    assert!(drift
        .controls
        .reason
        .starts_with("kubelet changed (another build of the same version)"));
    assert!(
        (drift.shift_pct + 10.0).abs() < 3.0,
        "drift {:.1}%",
        drift.shift_pct
    );
    for c in &drift.controls.stages {
        assert_eq!(verdict(&cmp, c), "control");
    }
    // kubelet's runtime stages wrap containerd's calls: they moved with
    // them, and that is drift, not the tuning.
    for s in ["create_sandbox", "start_container", "runtime_sync"] {
        let v = verdict(&cmp, s);
        assert!(
            v == "within drift" || v == "no clear difference",
            "{s}: {v}"
        );
    }
    assert_eq!(verdict(&cmp, "mount_wait"), "faster");
    assert_eq!(verdict(&cmp, "sync"), "faster");
    let h = &cmp.headline[0];
    assert!(h.contains("drift between the runs: the controls"), "{h}");
    assert!(
        !h.contains("faster: create_sandbox") && !h.contains("runtime_sync 1"),
        "{h}"
    );
    let table = cmp.to_table();
    assert!(table.contains("net of drift"), "{table}");
    assert!(
        table.contains("(another build of the same version)"),
        "{table}"
    );
}

#[test]
fn a_real_slowdown_above_the_drift_is_still_found() {
    // Positive control: the same pair, with every container start 50 ms
    // slower in kubelet (after containerd's StartContainer returned).
    let (d, _) = drifting_run("default", false, 30, 1, 1.0);
    let (mut t, _) = drifting_run("tuned", true, 30, 2, 0.9);
    for stage in ["start_container", "runtime_sync", "sync", "pod"] {
        for v in t.samples.get_mut(stage).expect("stage samples") {
            *v += 50.0;
        }
    }
    let cmp = compare(&[d, t]).expect("compare");
    assert_eq!(verdict(&cmp, "start_container"), "slower");
    assert_eq!(verdict(&cmp, "runtime_sync"), "slower");
    let n = cmp
        .stages
        .iter()
        .find(|s| s.stage == "start_container")
        .and_then(|s| s.diffs[1].as_ref())
        .and_then(|d| d.net_of_drift)
        .expect("net of drift");
    assert!(n.beyond_drift && n.net_pct > 50.0, "{n:?}");
    let h = &cmp.headline[0];
    let slower = h.split("slower: ").nth(1).unwrap_or_default();
    assert!(slower.contains("start_container 2.0x"), "{h}");
}

#[test]
fn named_controls_and_traces_that_cannot_say() {
    let (d, _) = drifting_run("default", false, 30, 1, 1.0);
    let (t, _) = drifting_run("tuned", true, 30, 2, 0.9);
    let opt = CompareOptions {
        controls: vec!["StartContainer".into()],
        ..CompareOptions::default()
    };
    let cmp = compare_with(&[d.clone(), t.clone()], &opt).expect("compare");
    let drift = cmp.drift[1].as_ref().expect("drift");
    assert_eq!(drift.controls.stages, ["StartContainer"]);
    assert_eq!(drift.controls.reason, "named with --control");
    let bad = CompareOptions {
        controls: vec!["nope".into()],
        ..CompareOptions::default()
    };
    let e = compare_with(&[d.clone(), t.clone()], &bad)
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("--control nope: not a stage")));
    // Old traces (no build identity): no drift, and the warning says why.
    let (mut d2, mut t2) = (d, t);
    d2.builds.clear();
    t2.builds.clear();
    let cmp = compare(&[d2, t2]).expect("compare");
    assert!(cmp.drift[1].is_none());
    assert!(
        cmp.warnings.iter().any(|w| w.contains("no control stages")),
        "{:?}",
        cmp.warnings
    );
}

#[test]
fn one_interleaved_trace_splits_by_build() {
    // default, then tuned swapped in at the same path while recording: one
    // trace, the tuned kubelet's probes appended with ids of their own.
    let (_, td) = drifting_run("default", false, 12, 1, 1.0);
    let (_, tt) = drifting_run("tuned", true, 12, 2, 1.0);
    let mut header = td.header.clone();
    let nk = header
        .probes
        .iter()
        .filter(|p| p.binary == "kubelet")
        .count() as u32;
    let n = header.probes.len() as u32;
    let mut first = 0;
    for b in &mut header.binaries {
        let count = header.probes.iter().filter(|p| p.binary == b.name).count() as u32;
        b.first_probe = Some(first);
        b.probe_count = Some(count);
        first += count;
    }
    let kubelet_ids: Vec<u32> = header
        .probes
        .iter()
        .filter(|p| p.binary == "kubelet")
        .map(|p| p.id)
        .collect();
    let mut added = tt
        .header
        .binaries
        .iter()
        .find(|b| b.name == "kubelet")
        .expect("kubelet record")
        .clone();
    added.first_probe = Some(n);
    added.probe_count = Some(nk);
    let new_probes: Vec<_> = tt
        .header
        .probes
        .iter()
        .filter(|p| p.binary == "kubelet")
        .enumerate()
        .map(|(i, p)| podtrace::format::ProbeInfo {
            id: n + i as u32,
            ..p.clone()
        })
        .collect();
    let dir = tmp("split");
    let path = dir.join("interleaved.trace");
    let mut w = podtrace::trace::Writer::create(&path, &header).expect("writer");
    let end = td.events.iter().map(|e| e.t).max().unwrap_or(0) + 2_000_000_000;
    for e in &td.events {
        w.event(e).expect("event");
    }
    w.binary_added(podtrace::format::BinaryAdded {
        binary: added,
        probes: new_probes,
    })
    .expect("binary line");
    for e in &tt.events {
        let mut e = e.clone();
        e.t += end;
        if let Some(i) = kubelet_ids.iter().position(|&id| id == e.p) {
            e.p = n + i as u32;
        }
        w.event(&e).expect("event");
    }
    w.finish(podtrace::format::Footer::default())
        .expect("footer");

    // report names every build the trace holds.
    let (info, corr) = load_correlated(&path).expect("read back");
    let table = podtrace::analysis::report::Report::build(&info, &corr).to_table();
    for want in [
        "binary: kubelet /usr/bin/kubelet: v1.36.3 build aaaaaaaaaaaa",
        "binary: kubelet /usr/bin/kubelet: v1.36.3 build bbbbbbbbbbbb",
        "binary: containerd /usr/bin/containerd: v2.2.9 build cccccccccccc",
    ] {
        assert!(table.contains(want), "{want}\n{table}");
    }
    let parts = podtrace::analysis::split::split_by_build(&path).expect("split");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].identity.sha256, "aa".repeat(32));
    assert_eq!(parts[1].identity.sha256, "bb".repeat(32));
    assert_eq!(podtrace::analysis::split::blocks(&parts), [1, 1]);
    let runs: Vec<Run> = parts
        .iter()
        .map(|p| Run::started_only("x", "y", &p.info, &p.corr))
        .collect();
    for r in &runs {
        assert_eq!(r.report.pods.len(), 12, "each build's own pods only");
        assert_eq!(r.samples["RunPodSandbox"].len(), 12);
    }
    // Through the command: labels in the order the builds ran.
    let code = run(CompareArgs {
        traces: vec![path.clone()],
        labels: vec!["default".into(), "tuned".into()],
        format: CompareFormat::Json,
        html: None,
        svg: None,
        min_effect_pct: 5.0,
        min_effect_ms: 1.0,
        confidence: CONFIDENCE,
        controls: vec![],
        split_by: Some(podtrace::commands::compare::SplitBy::Build),
    })
    .expect("compare --split-by build");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    // A trace with one build has nothing to split.
    let single = dir.join("single.trace");
    write_trace(&td, &single).expect("write");
    let e = podtrace::analysis::split::split_by_build(&single)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("no build identity") || e.contains("nothing to split"),
        "{e}"
    );
}

/// The cost side: a loop ten times as frequent is ten times as busy (the
/// synthetic ticks take the same time), and the text says it in words.
#[test]
fn shorter_intervals_show_their_cost_in_loop_busy_time() {
    let (d, t) = default_vs_tuned(10);
    let cmp = compare(&[d, t]).expect("compare");
    let busy = |name: &str| -> (f64, f64) {
        let l = cmp
            .loops
            .iter()
            .find(|l| l.loop_name == name)
            .unwrap_or_else(|| panic!("loop {name}"));
        let b = |i: usize| {
            l.runs[i]
                .as_ref()
                .and_then(|f| f.busy_ms_per_s)
                .unwrap_or_else(|| panic!("{name} run {i}: no busy time"))
        };
        (b(0), b(1))
    };
    // Reconcile ticks take 0.3 ms: every 100 ms, then every 10 ms.
    let (a, b) = busy("reconcile");
    assert!(
        (a - 3.0).abs() < 0.05 && (b - 30.0).abs() < 0.5,
        "{a} → {b}"
    );
    let (a, b) = busy("relist");
    assert!((b / a - 10.0).abs() < 0.5, "relist {a} → {b}");
    let text = cmp.to_table();
    assert!(text.contains("loop cost"), "{text}");
    assert!(
        text.lines().any(
            |l| l.trim_start().starts_with("tuned:") && l.contains("reconcile 3.0 → 30.0 ms/s")
        ),
        "{text}"
    );
}
