//! The built-in catalogue against every version the matrix has seen: each
//! fixture under fixtures/versions/ (written by `cargo xtask matrix
//! --fixtures` from a real binary: the functions the catalogue's patterns
//! match, their RETs, calls and result registers, the inline facts, the
//! modules' versions) must resolve every probe as the real binary did —
//! same status, same variant, same functions. A catalogue change that
//! breaks a version nobody has at hand fails here.

use std::path::PathBuf;

use podtrace::{
    catalogue::Catalogue,
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
