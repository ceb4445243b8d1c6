//! The built-in kubelet catalogue's variant choice on programs that have
//! kubelet's symbols in the shapes of different versions (tests/variants,
//! built here with Go 1.19 and Go 1.27, stripped): every variant is taken on
//! a positive condition, and a shape no variant knows is `mismatch`, never
//! a fallback to another version's registers.
//!
//! Needs both Go toolchains (`cargo xtask setup` installs them); a missing
//! toolchain fails the tests.

use podtrace::catalogue::{BinaryCatalogue, Catalogue, Resolution, Status};
use podtrace::resolve::GoBinary;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The toolchains: `$GO119`/`$GO127` (what `cargo xtask test` passes), else
/// where `cargo xtask setup` puts them.
fn toolchain(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
}
const GENS: [&str; 4] = ["gen_old", "gen_mid", "gen_new", "gen_trap"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/variants")
}

/// (toolchain label, generation) → stripped binary; built once per run.
fn binaries() -> &'static Vec<(&'static str, &'static str, PathBuf)> {
    static B: OnceLock<Vec<(&'static str, &'static str, PathBuf)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("variants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut out = Vec::new();
        for (go, label) in [
            (toolchain("GO119", "/usr/lib/go-1.19/bin/go"), "go1.19"),
            (
                toolchain(
                    "GO127",
                    "/root/.podtrace/gobin-venv/lib/python3.11/site-packages/go/bin/go",
                ),
                "go1.27",
            ),
        ] {
            assert!(
                go.exists(),
                "Go toolchain {} is missing: run `cargo xtask setup` to install Go 1.19 and Go 1.27",
                go.display()
            );
            for gen in GENS {
                let bin = dir.join(format!("{label}-{gen}"));
                let o = Command::new(&go)
                    .current_dir(src())
                    .env("GOTOOLCHAIN", "local")
                    .env("GOPROXY", "off")
                    .env("GOFLAGS", "-mod=mod")
                    .env("GOWORK", "off")
                    .args(["build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"])
                    .args(["-tags", gen, "-o"])
                    .arg(&bin)
                    .arg("./cmd/kubelet")
                    .output()
                    .unwrap_or_else(|e| panic!("running {}: {e}", go.display()));
                assert!(
                    o.status.success(),
                    "{label} {gen}: go build: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                out.push((label, gen, bin));
            }
        }
        out
    })
}

fn kubelet() -> BinaryCatalogue {
    Catalogue::builtin()
        .expect("built-in catalogue")
        .binary("kubelet")
        .expect("kubelet catalogue")
        .clone()
}

fn resolve(gen: &str) -> Vec<(&'static str, GoBinary, Vec<Resolution>)> {
    let cat = kubelet();
    binaries()
        .iter()
        .filter(|(_, g, _)| *g == gen)
        .map(|(label, _, p)| {
            let bin = GoBinary::open(p).unwrap_or_else(|e| panic!("{e}"));
            let res = cat.resolve(&bin);
            (*label, bin, res)
        })
        .collect()
}

fn probe<'r>(res: &'r [Resolution], name: &str) -> &'r Resolution {
    res.iter()
        .find(|r| r.probe == name)
        .unwrap_or_else(|| panic!("no probe {name}"))
}

/// Status, the 1-based variant of every target and what held, for messages.
fn ok_with(res: &[Resolution], name: &str, label: &str, variant: usize) -> Vec<String> {
    let r = probe(res, name);
    assert_eq!(r.status, Status::Ok, "{label}: {name}: {}", r.detail);
    assert!(!r.targets.is_empty(), "{label}: {name}: no targets");
    for t in &r.targets {
        assert_eq!(
            t.variant + 1,
            variant,
            "{label}: {name}: {} taken as variant {} ({})",
            t.symbol,
            t.variant + 1,
            t.matched_by
        );
    }
    r.targets.iter().map(|t| t.matched_by.clone()).collect()
}

fn reg_of(caps: &[podtrace::catalogue::CaptureDef], name: &str) -> String {
    caps.iter()
        .find(|c| c.name == name)
        .map(|c| c.reg.clone())
        .unwrap_or_else(|| panic!("no capture {name}"))
}

#[test]
fn old_shape_pod_in_rbx_by_its_poll_helper() {
    for (label, _, res) in resolve("gen_old") {
        let by = ok_with(&res, "mount_wait", label, 2);
        assert_eq!(by, ["calls wait.PollImmediate"], "{label}");
        assert_eq!(
            reg_of(&probe(&res, "mount_wait").entry_captures, "pod_uid"),
            "RBX"
        );
        let by = ok_with(&res, "sync", label, 2);
        // No module version in a test build: the result shape decides.
        assert_eq!(by, ["3 result registers"], "{label}");
        assert_eq!(reg_of(&probe(&res, "sync").exit_captures, "error"), "RBX");
        ok_with(&res, "poll_helper", label, 2);
        ok_with(&res, "poll_check", label, 1);
        ok_with(&res, "poll_cond", label, 1);
        assert_eq!(probe(&res, "relist_pod").status, Status::Missing, "{label}");
    }
}

#[test]
fn ctx_shape_pod_in_rdi_and_both_reconcilers() {
    for (label, _, res) in resolve("gen_mid") {
        let by = ok_with(&res, "mount_wait", label, 1);
        assert_eq!(by, ["calls wait.PollUntilContextTimeout"], "{label}");
        assert_eq!(
            reg_of(&probe(&res, "mount_wait").entry_captures, "pod_uid"),
            "RDI"
        );
        ok_with(&res, "poll_helper", label, 1);
        ok_with(&res, "sync", label, 2);
        // 1.28-1.30 compile in reconcile and reconcileNew; a gate picks one
        // at run time, so both are attached.
        let r = probe(&res, "reconcile");
        assert_eq!(r.status, Status::Ok, "{label}: {}", r.detail);
        let mut syms: Vec<&str> = r.targets.iter().map(|t| t.symbol.as_str()).collect();
        syms.sort_unstable();
        assert_eq!(
            syms,
            [
                "k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler.(*reconciler).reconcile",
                "k8s.io/kubernetes/pkg/kubelet/volumemanager/reconciler.(*reconciler).reconcileNew",
            ],
            "{label}"
        );
    }
}

#[test]
fn three_result_sync_pod_reads_the_error_from_rcx() {
    for (label, _, res) in resolve("gen_new") {
        let by = ok_with(&res, "sync", label, 1);
        assert!(
            by[0].contains("SyncPod.func")
                && by[0].contains("calls kubelet.(*Kubelet).RequestPodRelist"),
            "{label}: {by:?}"
        );
        let exit = &probe(&res, "sync").exit_captures;
        assert_eq!(reg_of(exit, "error"), "RCX", "{label}");
        assert_eq!(reg_of(exit, "post_sync"), "RBX", "{label}");
        // The on-demand relist is its own probe (a stage with the pod UID),
        // not a tick of the periodic relist loop.
        // Variant 2, 1.36's (podUID): no module version here, and none of
        // 1.37's rewritten evented PLEG (variant 1 is 1.37's (ctx, podUID)).
        let by = ok_with(&res, "relist_pod", label, 2);
        assert_eq!(
            by,
            ["no pleg.(*EventedPLEG).Start.func1, calls pleg.(*GenericPLEG).reconcilePodRecord"],
            "{label}"
        );
        assert_eq!(
            reg_of(&probe(&res, "relist_pod").entry_captures, "pod_uid"),
            "RBX"
        );
        ok_with(&res, "relist", label, 1);
        let r = probe(&res, "reconcile");
        assert_eq!(r.targets.len(), 1, "{label}: only reconcile exists");
    }
}

#[test]
fn result_shapes_are_read_from_the_code() {
    // Each alternative of the SyncPod variants on its own: the result
    // registers the function fills tell (bool, error) from
    // (bool, func(), error) without any module version.
    for (gen, want) in [
        ("gen_old", 3),
        ("gen_mid", 3),
        ("gen_new", 4),
        ("gen_trap", 2),
    ] {
        for (label, bin, _) in resolve(gen) {
            let f = bin
                .function("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).SyncPod")
                .expect("SyncPod");
            assert_eq!(
                bin.result_regs(f).expect("decodes"),
                Some(want),
                "{label} {gen}"
            );
        }
    }
}

#[test]
fn unknown_shapes_are_mismatch_not_another_versions_variant() {
    for (label, _, res) in resolve("gen_trap") {
        // (ctx, pod) without either known poll helper: the <= 1.27 variant
        // (pod in RBX, which holds the ctx here) must not be taken.
        let r = probe(&res, "mount_wait");
        assert_eq!(r.status, Status::Mismatch, "{label}: {r:#?}");
        assert!(r.targets.is_empty() && r.variant.is_none(), "{label}");
        for why in [
            "WaitForAttachAndMount neither calls wait.PollUntilContextTimeout",
            "WaitForAttachAndMount neither calls wait.PollImmediate",
            "version unknown",
        ] {
            assert!(r.detail.contains(why), "{label}: {}", r.detail);
        }
        // Neither known helper is even linked in.
        assert_eq!(
            probe(&res, "poll_helper").status,
            Status::Missing,
            "{label}"
        );
        // SyncPod returning only an error: no variant's shape.
        let r = probe(&res, "sync");
        assert_eq!(r.status, Status::Mismatch, "{label}: {}", r.detail);
        assert!(
            r.detail.contains("fills 2 result registers, not 4")
                && r.detail.contains("fills 2 result registers, not 3"),
            "{label}: {}",
            r.detail
        );
        // What the binary does have still resolves.
        ok_with(&res, "poll_check", label, 1);
        ok_with(&res, "reconcile", label, 1);
    }
}

/// `podtrace record` leaves mismatched probes out and says which and why.
#[test]
fn record_plan_leaves_mismatches_out() {
    let cat = kubelet();
    for (label, bin, res) in resolve("gen_trap") {
        let target = podtrace::record::plan::TargetBinary {
            catalogue: &cat,
            binary: &bin,
            resolutions: res,
            pids: vec![],
        };
        let (probes, _, _) = podtrace::record::plan::plan(&[target], Default::default())
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let names: Vec<&str> = probes.iter().map(|p| p.probe.as_str()).collect();
        assert!(
            !names.contains(&"mount_wait") && !names.contains(&"sync"),
            "{label}: {names:?}"
        );
        assert!(names.contains(&"poll_check"), "{label}: {names:?}");
    }
}
