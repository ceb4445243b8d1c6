//! The built-in catalogue against every version the matrix has seen: each
//! fixture under fixtures/versions/ (written by `cargo xtask matrix
//! --fixtures` from a real binary: the functions the catalogue's patterns
//! match, their RETs, calls and result registers, the inline facts, the
//! modules' versions) must resolve every probe as the real binary did —
//! same status, same variant, same functions. A catalogue change that
//! breaks a version nobody has at hand fails here.

use std::path::PathBuf;

use podtrace::{
    catalogue::{builtin_text, forget_from, BinaryCatalogue, Catalogue},
    fixture::{Expected, Fixture},
};

fn fixtures() -> Vec<(PathBuf, Fixture)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/versions");
    let mut v: Vec<(PathBuf, Fixture)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read fixture");
            let fx = Fixture::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, fx)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn catalogue_resolves_every_seen_version_as_its_binary_did() {
    let cat = Catalogue::builtin().expect("built-in catalogue");
    let all = fixtures();
    // The versions the tests run for real are among them, and both binaries.
    for want in ["kubelet-v1.34.4", "kubelet-v1.36.3", "containerd-v2.2.9"] {
        assert!(
            all.iter().any(|(p, _)| p.to_string_lossy().contains(want)),
            "no fixture {want}.json: run `cargo xtask matrix --fixtures`"
        );
    }
    let mut failures = Vec::new();
    for (path, fx) in &all {
        let bc = cat
            .for_binary(&fx.binary)
            .expect("catalogue for the binary");
        let got: Vec<Expected> = bc.resolve_facts(fx).iter().map(Expected::of).collect();
        for want in &fx.expected {
            match got.iter().find(|g| g.probe == want.probe) {
                Some(g) if g == want => {}
                Some(g) => failures.push(format!(
                    "{} ({}): probe {}: the binary gave {} (variant {:?}, {:?}), the catalogue now gives {} (variant {:?}, {:?})",
                    path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                    fx.version,
                    want.probe,
                    want.status,
                    want.variant,
                    want.targets,
                    g.status,
                    g.variant,
                    g.targets
                )),
                None => failures.push(format!(
                    "{}: probe {} is no longer in the catalogue",
                    fx.version, want.probe
                )),
            }
        }
        for g in got
            .iter()
            .filter(|g| !fx.expected.iter().any(|w| w.probe == g.probe))
        {
            failures.push(format!(
                "{}: new probe {} ({}) has no expectation: write the fixtures again (`cargo xtask matrix --fixtures`)",
                fx.version, g.probe, g.status
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the catalogue no longer resolves versions it was proven on:\n{}",
        failures.join("\n")
    );
}

/// The fixtures hold what the matrix's rows are about: a kubelet fixture
/// names its k8s.io/kubernetes release, a containerd one its module.
#[test]
fn fixtures_name_their_release() {
    for (path, fx) in fixtures() {
        let module = match fx.binary.as_str() {
            "kubelet" => "k8s.io/kubernetes",
            _ => "github.com/containerd/containerd",
        };
        let has = fx
            .modules
            .iter()
            .any(|(m, v)| m.starts_with(module) && fx.version.contains(v.trim_start_matches('v')));
        assert!(
            has || fx.binary == "containerd" && path.to_string_lossy().contains("debian"),
            "{}: no {module} at {} in {:?}",
            path.display(),
            fx.version,
            fx.modules.keys().collect::<Vec<_>>()
        );
        assert!(!fx.functions.is_empty(), "{}: no functions", path.display());
        assert!(
            fx.go.starts_with("go1."),
            "{}: Go {}",
            path.display(),
            fx.go
        );
    }
}

/// The fixture of one version (`kubelet-v1.37.2`).
fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|(p, _)| p.file_stem().is_some_and(|s| s == name))
        .map(|(_, fx)| fx)
        .unwrap_or_else(|| panic!("no fixture {name}.json"))
}

/// (probe, status, matched_by of each target, whether any matched by a
/// version range, detail) of a resolution.
fn outcome(bc: &BinaryCatalogue, fx: &Fixture) -> Vec<(String, String, Vec<String>, bool, String)> {
    bc.resolve_facts(fx)
        .iter()
        .map(|r| {
            (
                r.probe.clone(),
                r.status.as_str().to_string(),
                r.targets.iter().map(|t| t.matched_by.clone()).collect(),
                r.targets.iter().any(|t| t.by_version),
                r.detail.clone(),
            )
        })
        .collect()
}

/// The probes that resolve on kubelet v1.37.2 by code shapes alone: the
/// stages podtrace still traces on a kubelet newer than it was tested on.
const BY_SHAPE_ON_1_37: &[&str] = &[
    "sync",
    "mount_wait",
    "poll_helper",
    "poll_cond",
    "poll_check",
    "volume_mounted",
    "volume_setup",
    "reconcile",
    "mount_volumes",
    "populate",
    "relist",
    "runtime_sync",
    "create_sandbox",
    "start_container",
];

/// Every `ok` probe matched by a shape fact, none by a version range.
fn assert_by_shape_only(what: &str, got: &[(String, String, Vec<String>, bool, String)]) {
    for (probe, status, by, by_version, _) in got.iter().filter(|o| o.1 == "ok") {
        assert!(
            !by_version && by.iter().all(|b| !b.contains("k8s.io/kubernetes v")),
            "{what}: {probe} ({status}) matched by a version range: {by:?}"
        );
        assert!(!by.is_empty(), "{what}: {probe} ok without a target");
    }
}

/// Issue 18's "a version podtrace has never seen": the real kubelet
/// v1.37.2 (its fixture) against the catalogue with 1.37's knowledge
/// removed, whose newest tested version is then v1.36.3. The on-demand
/// relist changed registers in 1.37 (RBX/RCX → RDI/RSI): it must not be
/// attached with 1.36's layout, and the user is told why; every other
/// stage still resolves, by the shape of the code alone.
#[test]
fn kubelet_1_37_against_a_catalogue_that_never_saw_it() {
    let forgot = forget_from(
        builtin_text("kubelet").expect("kubelet.toml"),
        "v1.37.0",
        "v1.36.3",
    )
    .expect("forget 1.37");
    let bc = Catalogue::parse("forgot.toml", &forgot).expect("forgotten catalogue parses");
    assert_eq!(bc.binary.newest_tested.as_deref(), Some("v1.36.3"));
    let fx = fixture("kubelet-v1.37.2");
    let unseen = bc.binary.unseen(&fx).expect("v1.37.2 is unseen by it");
    assert_eq!(
        (unseen.module.as_str(), unseen.version.as_str()),
        ("k8s.io/kubernetes", "v1.37.2")
    );
    let got = outcome(&bc, &fx);
    let relist_pod = got
        .iter()
        .find(|o| o.0 == "relist_pod")
        .expect("relist_pod in the catalogue");
    assert_eq!(relist_pod.1, "mismatch", "{relist_pod:?}");
    assert!(
        relist_pod.4.contains(
            "k8s.io/kubernetes v1.37.2 is newer than the newest tested v1.36.3: \
             a version range says nothing of its layout"
        ),
        "{}",
        relist_pod.4
    );
    // Not resolved to 1.36's layout (pod UID in RBX/RCX).
    let res = bc.resolve_facts(&fx);
    let r = res
        .iter()
        .find(|r| r.probe == "relist_pod")
        .expect("relist_pod");
    assert!(r.targets.is_empty() && r.entry_captures.is_empty(), "{r:?}");
    assert_by_shape_only("1.37 forgotten", &got);
    let ok: Vec<&str> = got
        .iter()
        .filter(|o| o.1 == "ok")
        .map(|o| o.0.as_str())
        .collect();
    assert_eq!(ok, BY_SHAPE_ON_1_37);
    // The same catalogue without 1.37's variants trusts its ranges on its
    // newest tested version: the same functions and registers as the full
    // one (variant numbers move up where a 1.37 variant went).
    let fx36 = fixture("kubelet-v1.36.3");
    assert!(bc.binary.unseen(&fx36).is_none());
    let full = Catalogue::builtin().expect("built-in catalogue");
    let layout = |c: &BinaryCatalogue| {
        c.resolve_facts(&fx36)
            .into_iter()
            .map(|r| {
                let targets: Vec<String> = r.targets.iter().map(|t| t.symbol.clone()).collect();
                (
                    r.probe,
                    r.status,
                    targets,
                    r.entry_captures,
                    r.exit_captures,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        layout(&bc),
        layout(full.binary("kubelet").expect("kubelet"))
    );
    // What `probes` says of it, headline to the mismatch.
    let summary = unseen.summary("kubelet", &res, true).join("\n");
    assert!(summary.starts_with(
        "kubelet: k8s.io/kubernetes v1.37.2 is newer than the newest version this catalogue \
         was tested on (v1.36.3)"
    ));
    assert!(summary.contains("\n14 probes matched by a known shape:\n  sync: kubelet.(*Kubelet).SyncPod.func2 calls kubelet.(*Kubelet).RequestPodRelist\n"), "{summary}");
    assert!(
        summary
            .contains("\n1 not attached:\n  relist_pod (mismatch): no variant's condition holds"),
        "{summary}"
    );
    assert_eq!(
        unseen.line(&res),
        "k8s.io/kubernetes v1.37.2 is newer than the newest tested v1.36.3: \
         14 probes matched by a known shape only, 1 not attached (relist_pod)"
    );
}

/// A kubelet one minor past the full catalogue's newest tested (the
/// v1.37.2 fixture stamped v1.38.0): unseen, every probe by its shape;
/// nothing is lost, as every 1.37 variant states a shape beside its range
/// (relist_pod's: relistPod calls klog.FromContext).
#[test]
fn kubelet_1_38_is_matched_by_shape_only() {
    let cat = Catalogue::builtin().expect("built-in catalogue");
    let bc = cat.binary("kubelet").expect("kubelet");
    let mut fx = fixture("kubelet-v1.37.2");
    fx.modules
        .insert("k8s.io/kubernetes".into(), "v1.38.0".into());
    let unseen = bc.binary.unseen(&fx).expect("v1.38.0 is unseen");
    assert_eq!(unseen.newest_tested, "v1.37.2");
    let got = outcome(bc, &fx);
    assert_by_shape_only("1.38", &got);
    let lost: Vec<&str> = got
        .iter()
        .filter(|o| o.1 != "ok")
        .map(|o| o.0.as_str())
        .collect();
    assert!(lost.is_empty(), "lost on 1.38: {got:?}");
    // Its real version resolves the same functions and variants.
    let real = fixture("kubelet-v1.37.2");
    assert!(bc.binary.unseen(&real).is_none());
    let by_shape: Vec<Expected> = bc.resolve_facts(&fx).iter().map(Expected::of).collect();
    assert_eq!(by_shape, real.expected);
}

/// containerd's version is its major-version module's: v2.4.2 is the
/// newest tested, v2.5.0 is not seen, 1.7 is.
#[test]
fn containerd_unseen_by_its_major_version_module() {
    let cat = Catalogue::builtin().expect("built-in catalogue");
    let bc = cat.binary("containerd").expect("containerd");
    let mut fx = fixture("containerd-v2.4.2");
    assert!(bc.binary.unseen(&fx).is_none());
    fx.modules.insert(
        "github.com/containerd/containerd/v2".into(),
        "v2.5.0".into(),
    );
    let u = bc.binary.unseen(&fx).expect("v2.5.0 is unseen");
    assert_eq!(u.module, "github.com/containerd/containerd/v2");
    // containerd's variants are told by shapes (the request type's
    // generated methods): all resolve as on 2.4.2.
    let got: Vec<Expected> = bc.resolve_facts(&fx).iter().map(Expected::of).collect();
    assert_eq!(got, fixture("containerd-v2.4.2").expected);
    assert!(bc.binary.unseen(&fixture("containerd-v1.7.35")).is_none());
}
