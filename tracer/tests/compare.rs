//! `podtrace compare`: statistics checked against values computed here,
//! independently of the library, and the errors on unusable inputs.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use podtrace::{
    commands::{
        compare::{run, CompareArgs, CompareFormat},
        correlate, load_correlated,
    },
    compare::{bootstrap_median_diff, compare, Run, Summary, CONFIDENCE, MIN_N, RESAMPLES},
    test_support::synth::{synth, write_trace, SynthPod, SynthSpec, SynthTruth},
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
        assert_eq!(
            d.significant,
            lo > 0.0 || hi < 0.0,
            "{name}: significant iff 0 is outside"
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
    assert_eq!(cmp.method.resamples, RESAMPLES);
}

/// P(X ≥ r) for X ~ Binomial(n, p).
fn binom_at_least(n: usize, p: f64, r: usize) -> f64 {
    let mut total = 0.0;
    for k in r..=n {
        let mut c = 1.0;
        for j in 0..k {
            c = c * (n - j) as f64 / (j + 1) as f64;
        }
        total += c * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32);
    }
    total
}

/// Exact distribution of the nearest-rank median of a resample (with
/// replacement) of distinct values: med* ≤ x_(k) iff at least ceil(n/2)
/// draws are ≤ x_(k), and the count of those is Binomial(n, k/n).
fn median_resample_pmf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let n = v.len();
    let r = n.div_ceil(2);
    let cdf = |k: usize| {
        if k == 0 {
            0.0
        } else {
            binom_at_least(n, k as f64 / n as f64, r)
        }
    };
    (1..=n).map(|k| (v[k - 1], cdf(k) - cdf(k - 1))).collect()
}

#[test]
fn bootstrap_interval_matches_the_exact_bootstrap_distribution() {
    // Distinct integers, so differences are exact.
    let a = [112.0, 97.0, 130.0, 101.0, 125.0, 90.0, 118.0, 140.0, 105.0];
    let b = [80.0, 96.0, 71.0, 88.0, 102.0, 77.0, 93.0];
    let (pa, pb) = (median_resample_pmf(&a), median_resample_pmf(&b));
    let mut diff: BTreeMap<i64, f64> = BTreeMap::new();
    for (xa, qa) in &pa {
        for (xb, qb) in &pb {
            *diff.entry((xb - xa) as i64).or_default() += qa * qb;
        }
    }
    let total: f64 = diff.values().sum();
    assert!((total - 1.0).abs() < 1e-12, "pmf sums to {total}");
    // F(x) = P(D ≤ x), F⁻(x) = P(D < x).
    let cdf = |x: f64, strict: bool| -> f64 {
        diff.iter()
            .filter(|(d, _)| {
                if strict {
                    (**d as f64) < x
                } else {
                    (**d as f64) <= x
                }
            })
            .map(|(_, p)| p)
            .sum()
    };
    let (lo, hi) = bootstrap_median_diff(&a, &b, RESAMPLES, CONFIDENCE, 42).expect("interval");
    let tail = (1.0 - CONFIDENCE) / 2.0;
    // A Monte Carlo quantile of 10k draws: its exact CDF position is within
    // a few standard errors (≈0.0016) of the target.
    let tol = 0.01;
    assert!(
        cdf(lo, true) <= tail + tol && cdf(lo, false) >= tail - tol,
        "lo {lo}"
    );
    assert!(
        cdf(hi, true) <= 1.0 - tail + tol && cdf(hi, false) >= 1.0 - tail - tol,
        "hi {hi}"
    );
    // And it is reproducible.
    assert_eq!(
        bootstrap_median_diff(&a, &b, RESAMPLES, CONFIDENCE, 42),
        Some((lo, hi))
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
    // Fewer than MIN_N pods: shown, never called significant.
    let (a, _) = build("a", &spec(MIN_N - 1, 300.0, 1));
    let (b, _) = build("b", &spec(MIN_N - 1, 50.0, 2));
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
    assert_eq!(v["podtrace_compare"], 1);
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
