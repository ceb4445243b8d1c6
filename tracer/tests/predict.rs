//! The what-if model on synthetic runs whose every time is known: replaying
//! a pod with the phases it had gives back its measurements, and a run at
//! default intervals predicts a run at tuned ones. (Real recordings:
//! tests/e2e/predict.rs.)

use std::path::{Path, PathBuf};

use podtrace::{
    analysis::{
        compare::{compare, Run},
        predict::{models, predict, Intervals, PodModel, Resolved, StageNames, SEED},
        report::{MountClass, Report},
    },
    commands::{
        predict::{prediction, PredictArgs},
        Format,
    },
    correlate::correlate,
    test_support::synth::{synth, write_trace, KubeletLike},
};

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("predict-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn run_of(k: &KubeletLike) -> (Report, Vec<PodModel>, StageNames) {
    let (t, _) = synth(&k.spec()).expect("synth");
    let c = correlate(&t);
    let r = Report::build(&t, &c);
    let m = models(&r, &c);
    (r, m, StageNames::of(&c))
}

#[test]
fn replaying_the_measured_phases_gives_back_the_measurement() {
    for k in [
        KubeletLike::default_periods(20, 7),
        KubeletLike::tuned_periods(20, 8),
    ] {
        let (r, ms, _) = run_of(&k);
        assert_eq!(ms.len(), 20);
        let own = Resolved {
            poll_ms: k.poll_ms,
            populate_ms: k.populate_ms,
            reconcile_ms: k.reconcile_ms,
        };
        assert_eq!(Resolved::of(&Intervals::of_report(&r)), Some(own));
        let mut classes = 0;
        for m in &ms {
            let ch = m.chain.as_ref().expect("every pod shows its chain");
            assert!(ch.populate_wait_ms >= 0.0 && ch.populate_wait_ms < k.populate_ms);
            assert!((ch.mount_work_ms - k.mount_work_ms).abs() < 1e-6, "{ch:?}");
            let (u1, u2) = m.measured_phases(&own).expect("phases");
            let o = m
                .outcome(&own, m.tick_lag_ms.unwrap_or(0.0), u1, u2)
                .expect("outcome");
            let want = m.measured();
            assert_eq!(o.class, want.class);
            assert!(
                (o.mount_wait_ms - want.mount_wait_ms).abs() < 1e-6,
                "{} vs {}",
                o.mount_wait_ms,
                want.mount_wait_ms
            );
            assert!((o.sync_ms - want.sync_ms).abs() < 1e-6);
            match (o.lost_to_polling_ms, want.lost_to_polling_ms) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6),
                (None, _) => assert_eq!(o.class, MountClass::AlreadyMounted),
                other => panic!("{other:?}"),
            }
            classes += usize::from(o.class == MountClass::Waited);
        }
        assert!(classes > 0);
    }
}

#[test]
fn default_intervals_predict_a_tuned_run() {
    let (rd, md, names) = run_of(&KubeletLike::default_periods(40, 1));
    let (rt, mt, _) = run_of(&KubeletLike::tuned_periods(40, 2));
    let p = predict(
        "default",
        &names,
        &md,
        Intervals::of_report(&rd),
        Intervals::of_report(&rt),
        mt.len(),
        SEED,
        None,
    );
    assert!(p.phase_locked, "10 ms populator and reconciler");
    assert_eq!(p.modelled, 40);
    let measured = |stage: &str| {
        let mut v: Vec<f64> = mt
            .iter()
            .map(PodModel::measured)
            .filter(|o| stage == "sync" || o.class == MountClass::Waited)
            .map(|o| {
                if stage == "sync" {
                    o.sync_ms
                } else {
                    o.mount_wait_ms
                }
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[(v.len() - 1) / 2]
    };
    for stage in ["mount_wait", "sync"] {
        let pr = p
            .stage(stage)
            .and_then(|s| s.predicted)
            .unwrap_or_else(|| panic!("{stage} predicted"));
        let m = measured(stage);
        assert!(
            (pr.p50 - m).abs() <= 0.02 * m,
            "{stage}: predicted {} measured {m}",
            pr.p50
        );
        assert!(
            pr.low - 1e-6 <= m && m <= pr.high + 1e-6,
            "{stage}: {m} outside {pr:?}"
        );
    }
    // Mounts come within ~20 ms of the sync start, long before a 300 ms
    // tick: with 30 ms polls, a 30 ms wait; some pods now find their
    // volumes mounted at the immediate check.
    assert!(p.classes.already_mounted > 0.0 && p.classes.already_mounted < 0.2);
    assert_eq!(p.measured_classes.waited, 1.0);
    // Nothing changes: the prediction is the measurement, resampled.
    let same = predict(
        "default",
        &names,
        &md,
        Intervals::of_report(&rd),
        Intervals::of_report(&rd),
        md.len(),
        SEED,
        None,
    );
    let s = same
        .stage("mount_wait")
        .and_then(|s| s.predicted)
        .expect("p");
    let m = same
        .stage("mount_wait")
        .and_then(|s| s.measured_p50)
        .expect("m");
    assert!((s.p50 - m).abs() < 0.01 * m, "{s:?} vs {m}");
}

#[test]
fn the_command_takes_intervals_or_another_trace() {
    let dir = tmp("cmd");
    let (td, _) = synth(&KubeletLike::default_periods(20, 3).spec()).expect("synth");
    let (tt, _) = synth(&KubeletLike::tuned_periods(25, 4).spec()).expect("synth");
    let (pd, pt) = (dir.join("default.trace"), dir.join("tuned.trace"));
    write_trace(&td, &pd).expect("write");
    write_trace(&tt, &pt).expect("write");
    let args = |poll: Option<f64>, like: Option<&PathBuf>| PredictArgs {
        trace: pd.clone(),
        poll: poll.map(|ms| std::time::Duration::from_secs_f64(ms / 1e3)),
        populate: Some(std::time::Duration::from_millis(10)),
        reconcile: Some(std::time::Duration::from_millis(10)),
        relist: None,
        like: like.cloned(),
        pods: None,
        format: Format::Json,
    };
    let p = prediction(&args(Some(30.0), None)).expect("predict");
    assert_eq!(p.to.poll_ms, Some(30.0));
    assert_eq!(p.to.relist_ms, p.from.relist_ms, "not given: unchanged");
    let mw = p.stage("mount_wait").and_then(|s| s.predicted).expect("p");
    assert!((mw.p50 - 30.1).abs() < 1.0, "{mw:?}");
    assert_eq!(mw.n, 20, "the trace's own pod count");
    // --like: the other trace's intervals and pod count; flags still win.
    let like = prediction(&args(None, Some(&pt))).expect("predict");
    assert_eq!(like.to.poll_ms, Some(30.0));
    let n = like.stage("sync").and_then(|s| s.predicted).expect("p").n;
    assert_eq!(n, 25);
    // compare shows the same prediction beside the tuned run.
    let runs: Vec<Run> = [(&td, "default"), (&tt, "tuned")]
        .iter()
        .map(|(t, l)| Run::new(l, l, t, &correlate(t)))
        .collect();
    let cmp = compare(&runs).expect("compare");
    let row = cmp
        .stages
        .iter()
        .find(|s| s.stage == "mount_wait")
        .expect("row");
    let from_cmp = row.predicted[1].expect("predicted");
    let from_like = like.stage("mount_wait").and_then(|s| s.predicted);
    // Same pods, intervals (the tuned run's, except populate/reconcile given
    // as flags above), draws: compare's equals predict --like's when the
    // flags match what the trace shows.
    let like_only = prediction(&PredictArgs {
        populate: None,
        reconcile: None,
        ..args(None, Some(&pt))
    })
    .expect("predict");
    assert_eq!(
        like_only.stage("mount_wait").and_then(|s| s.predicted),
        Some(from_cmp)
    );
    assert!(from_like.is_some());
    // Nothing to predict for: a clear error.
    let e = prediction(&PredictArgs {
        populate: None,
        reconcile: None,
        ..args(None, None)
    })
    .expect_err("no intervals")
    .to_string();
    assert!(e.contains("--poll"), "{e}");
}

#[test]
fn drift_between_runs_moves_the_work_and_widens_the_interval() {
    let (rd, md, names) = run_of(&KubeletLike::default_periods(40, 1));
    let (rt, mt, _) = run_of(&KubeletLike::tuned_periods(40, 2));
    let at = |drift: Option<&podtrace::analysis::predict::DriftModel>| {
        predict(
            "default",
            &names,
            &md,
            Intervals::of_report(&rd),
            Intervals::of_report(&rt),
            mt.len(),
            SEED,
            drift,
        )
    };
    let plain = at(None);
    // 10 % faster work, known to about ±2 % (one sd).
    let d = podtrace::analysis::predict::DriftModel::new((0.9f64).ln(), 0.02, "test".into());
    let drifted = at(Some(&d));
    let sync = |p: &podtrace::analysis::predict::Prediction| {
        p.stage("sync")
            .and_then(|s| s.predicted)
            .expect("sync predicted")
    };
    let mw = |p: &podtrace::analysis::predict::Prediction| {
        p.stage("mount_wait")
            .and_then(|s| s.predicted)
            .expect("mount wait predicted")
    };
    let (a, b) = (sync(&plain), sync(&drifted));
    // The mount wait is waits for ticks: no drift in it.
    assert!((mw(&plain).p50 - mw(&drifted).p50).abs() < 1e-9);
    // The rest of the sync (the work) is 10 % shorter.
    let work = a.p50 - mw(&plain).p50;
    let moved = a.p50 - b.p50;
    assert!(
        (moved - 0.1 * work).abs() < 0.03 * work,
        "sync {:.3} -> {:.3}, work {work:.3}",
        a.p50,
        b.p50
    );
    // Without drift both intervals are the ticks' own; with it, wider.
    assert_eq!((a.low, a.high), (a.ticks_low, a.ticks_high));
    assert!(b.high - b.low > b.ticks_high - b.ticks_low, "{b:?}");
    assert!(drifted.refusal().is_none());
}

#[test]
fn too_few_modelled_pods_are_no_prediction() {
    let (rd, mut md, names) = run_of(&KubeletLike::default_periods(10, 1));
    // As if the loops had not been traced for 7 of the 10 pods.
    for m in md.iter_mut().take(7) {
        m.chain = None;
    }
    let p = predict(
        "default",
        &names,
        &md,
        Intervals::of_report(&rd),
        Intervals {
            poll_ms: Some(30.0),
            ..Intervals::of_report(&rd)
        },
        md.len(),
        SEED,
        None,
    );
    let why = p.refusal().expect("refused");
    assert!(why.contains("only 3 of 10 pods"), "{why}");
}
