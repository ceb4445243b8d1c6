//! From resolved targets to what the kernel is given: the probe table
//! (one [`ProbeInfo`] per traced function), the eBPF program's
//! [`ProbeSpec`]s (what each site captures) and the [`Site`]s to attach.
//!
//! Every traced function gets one probe id and two specs, entry then exit;
//! a site's cookie is the index of its spec in the planned list, which
//! [`super::bpf`] turns into a slot of the eBPF program's spec table when
//! it attaches (slots are reused once a group is released; probe ids never
//! are). Plans only: loading and attaching are [`super::bpf`]'s.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use podtrace_common::{Capture, ProbeSpec, KIND_ENTRY, KIND_EXIT, MAX_CAPTURES};

use crate::{
    catalogue::{
        list_some, module_any_major, BinaryCatalogue, CaptureDef, Resolution, SiteKind, Status,
    },
    format::{BinaryIdentity, BinaryRecord, ProbeInfo},
    resolve::GoBinary,
};

/// One binary to trace and the processes to trace it in.
pub struct TargetBinary<'a> {
    pub catalogue: &'a BinaryCatalogue,
    pub binary: &'a GoBinary,
    pub resolutions: Vec<Resolution>,
    /// Only these processes; empty = every process running the binary.
    pub pids: Vec<u32>,
}

/// A probe site ready to attach.
#[derive(Debug, Clone)]
pub struct Site {
    pub path: PathBuf,
    pub offset: u64,
    /// Index of its spec in the planned specs (see the module's doc).
    pub cookie: u32,
    pub pid: Option<u32>,
}

/// Which sites of each function get a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteSelection {
    Both,
    Entry,
    Exit,
}

#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    pub sites: SiteSelection,
    /// Entry probes on the function's first instruction (single-stepped)
    /// rather than on the prologue's emulated stack-check jump.
    pub entry_at_function_start: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            sites: SiteSelection::Both,
            entry_at_function_start: false,
        }
    }
}

/// One binary resolved against its catalogue: what to attach, what the
/// trace header says of it, and what the user should be told.
pub struct Resolved<'a> {
    pub target: TargetBinary<'a>,
    pub record: BinaryRecord,
    /// Probes left out and why (a mismatch, a function inlined elsewhere).
    pub warnings: Vec<String>,
}

/// Resolves `catalogue` in `binary` (at `path`, for `pids`; empty: every
/// process). Fails if not one probe resolves: it is not this catalogue's
/// binary, or a version no variant knows.
pub fn resolve_target<'a>(
    catalogue: &'a BinaryCatalogue,
    binary: &'a GoBinary,
    path: &std::path::Path,
    pids: &[u32],
) -> Result<Resolved<'a>> {
    let resolutions = catalogue.resolve(binary);
    let name = &catalogue.binary.name;
    if !resolutions.iter().any(|r| r.status == Status::Ok) {
        bail!(
            "{}: none of the {name} catalogue's functions resolve ({}); see `podtrace probes`",
            path.display(),
            binary.go_version().unwrap_or("?")
        );
    }
    let unresolved: Vec<String> = resolutions
        .iter()
        .filter(|r| r.status != Status::Ok)
        .map(|r| format!("{}: {}", r.probe, r.detail))
        .collect();
    // A mismatch is a function of another version's shape: reading its
    // registers with this catalogue would record garbage, so it is left
    // out, loudly.
    let mut warnings: Vec<String> = resolutions
        .iter()
        .filter(|r| r.status == Status::Mismatch)
        .map(|r| {
            format!(
                "warning: {}: probe {} not attached: {}",
                path.display(),
                r.probe,
                r.detail
            )
        })
        .collect();
    if !unresolved.is_empty() {
        let names: Vec<&str> = resolutions
            .iter()
            .filter(|r| r.status != Status::Ok)
            .map(|r| r.probe.as_str())
            .collect();
        warnings.push(format!(
            "{name}: {} of {} probes not attached ({}); `podtrace probes` says why",
            names.len(),
            catalogue.probes.len(),
            names.join(", ")
        ));
    }
    // A version newer than any tested: the user hears that only shapes
    // were trusted, first.
    let unseen = catalogue.binary.unseen(binary);
    if let Some(u) = &unseen {
        let mut lines = u.summary(name, &resolutions, false);
        lines.append(&mut warnings);
        warnings = lines;
    }
    for r in &resolutions {
        for t in r.targets.iter().filter(|t| !t.inlined_into.is_empty()) {
            warnings.push(format!(
                "{name}: probe {} ({}) is also inlined into {}: calls there are not traced",
                r.probe,
                t.symbol,
                list_some(&t.inlined_into)
            ));
        }
    }
    let record = BinaryRecord {
        name: name.clone(),
        path: path.display().to_string(),
        go_version: binary.go_version().map(str::to_string),
        version: Some(component_version(binary)),
        pids: pids.to_vec(),
        unresolved,
        unseen: unseen.map(|u| u.line(&resolutions)),
        identity: Some(identity(binary, path)),
        first_probe: None,
        probe_count: None,
    };
    Ok(Resolved {
        target: TargetBinary {
            catalogue,
            binary,
            resolutions,
            pids: pids.to_vec(),
        },
        record,
        warnings,
    })
}

/// The modules a component is built from, in the order they name it (k3s
/// holds kubelet's and containerd's modules both: its own comes last, so
/// that a kubelet catalogue names the Kubernetes version).
/// (Each under its own path or a major-version one, `…/containerd/v2`:
/// the lookup the catalogue's newest_tested check uses.)
const COMPONENT_MODULES: &[&str] = &[
    "k8s.io/kubernetes",
    "github.com/containerd/containerd",
    "github.com/k3s-io/k3s",
];

/// The component's module and its version: the Kubernetes or containerd
/// module it was built from, else its main module.
fn component(bin: &GoBinary) -> Option<(String, String)> {
    let info = bin.build_info()?;
    COMPONENT_MODULES
        .iter()
        .filter_map(|m| module_any_major(bin, m).map(|(p, v)| (p, v.to_string())))
        .chain(
            info.main
                .as_ref()
                .map(|m| (m.path.clone(), m.version.clone())),
        )
        .find(|(_, v)| v.starts_with('v'))
}

/// The version a traced binary is known by (the `version` metric label):
/// its component's version, else its Go version.
pub fn component_version(bin: &GoBinary) -> String {
    component(bin)
        .map(|(_, v)| v)
        .or_else(|| bin.go_version().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The version an `-X` in the recorded ldflags stamped (kubelet's
/// `k8s.io/component-base/version.gitVersion`, containerd's
/// `version.Version`).
fn stamped_version(settings: &[(String, String)]) -> Option<String> {
    let ldflags = settings.iter().find(|(k, _)| k == "-ldflags")?.1.as_str();
    let words: Vec<&str> = ldflags.split_whitespace().collect();
    words
        .iter()
        .enumerate()
        .filter_map(
            |(i, w)| match w.strip_prefix("-X=").or(w.strip_prefix("-X")) {
                Some("") => words.get(i + 1).copied(),
                Some(rest) => Some(rest),
                None => None,
            },
        )
        .map(|x| x.trim_matches(|c| c == '\'' || c == '"'))
        .find_map(|x| {
            let (var, val) = x.split_once('=')?;
            (var.ends_with("version.gitVersion") || var.ends_with("version.Version"))
                .then(|| val.to_string())
        })
}

/// What `bin` (opened at `path`) is: module, version, build settings and
/// content hash.
pub fn identity(bin: &GoBinary, path: &std::path::Path) -> BinaryIdentity {
    let settings: Vec<(String, String)> = bin
        .build_info()
        .map(|b| b.settings.clone())
        .unwrap_or_default();
    let setting = |k: &str| {
        settings
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let (module, version) = component(bin).unzip();
    let module_sum = module
        .as_deref()
        .and_then(|m| bin.build_info()?.module(m))
        .map(|m| m.sum.clone())
        .unwrap_or_default();
    BinaryIdentity {
        real_path: std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string(),
        module,
        version,
        module_sum,
        stamped_version: stamped_version(&settings),
        vcs_revision: setting("vcs.revision"),
        vcs_time: setting("vcs.time"),
        vcs_modified: setting("vcs.modified").map(|v| v == "true"),
        sha256: bin.sha256_hex(),
        size: bin.size(),
        build_settings: settings,
    }
}

/// Turns resolutions into the probe table, eBPF specs and attach sites.
pub fn plan(
    targets: &[TargetBinary<'_>],
    opts: PlanOptions,
) -> Result<(Vec<ProbeInfo>, Vec<ProbeSpec>, Vec<Site>)> {
    plan_from(targets, opts, 0)
}

/// [`plan`] for probes appended to a table of `first_id` probes (a binary
/// attached while recording): ids continue from there; cookies index the
/// returned specs.
pub fn plan_from(
    targets: &[TargetBinary<'_>],
    opts: PlanOptions,
    first_id: u32,
) -> Result<(Vec<ProbeInfo>, Vec<ProbeSpec>, Vec<Site>)> {
    let mut probes: Vec<ProbeInfo> = Vec::new();
    let mut specs = Vec::new();
    let mut sites = Vec::new();
    for t in targets {
        let goid_offset = t.binary.goid_offset().unwrap_or(0);
        for res in &t.resolutions {
            if res.status != Status::Ok {
                continue;
            }
            let Some(def) = t.catalogue.probes.iter().find(|p| p.name == res.probe) else {
                continue;
            };
            for target in &res.targets {
                let id = first_id + probes.len() as u32;
                let entry_spec = 2 * probes.len() as u32;
                probes.push(ProbeInfo {
                    id,
                    binary: t.catalogue.binary.name.clone(),
                    probe: def.name.clone(),
                    role: def.role,
                    symbol: target.symbol.clone(),
                    entry_site: target.entry_site,
                    rets: target.ret_offsets.len(),
                    entry_captures: res.entry_captures.clone(),
                    exit_captures: res.exit_captures.clone(),
                });
                specs.push(spec(id, KIND_ENTRY, goid_offset, &res.entry_captures));
                specs.push(spec(id, KIND_EXIT, goid_offset, &res.exit_captures));
                let pids: Vec<Option<u32>> = if t.pids.is_empty() {
                    vec![None]
                } else {
                    t.pids.iter().copied().map(Some).collect()
                };
                let (entry_offset, entry_site) = if opts.entry_at_function_start {
                    let off = t
                        .binary
                        .file_offset(target.entry_vaddr)
                        .context("function entry outside every PT_LOAD segment")?;
                    (off, SiteKind::FunctionStart)
                } else {
                    (target.entry_site_offset, target.entry_site)
                };
                if let Some(p) = probes.last_mut() {
                    p.entry_site = entry_site;
                }
                for pid in pids {
                    if opts.sites != SiteSelection::Exit {
                        sites.push(Site {
                            path: site_path(t.binary.path(), pid),
                            offset: entry_offset,
                            cookie: entry_spec,
                            pid,
                        });
                    }
                    if opts.sites == SiteSelection::Entry {
                        continue;
                    }
                    for &off in &target.ret_offsets {
                        sites.push(Site {
                            path: site_path(t.binary.path(), pid),
                            offset: off,
                            cookie: entry_spec + 1,
                            pid,
                        });
                    }
                }
            }
        }
    }
    Ok((probes, specs, sites))
}

/// Where to attach for one process: a binary found as /proc/N/exe (the
/// first of the processes running it) is reached through each process's
/// own /proc/PID/exe, so that N exiting first does not fail the others.
fn site_path(binary: &std::path::Path, pid: Option<u32>) -> PathBuf {
    match pid {
        Some(pid) if binary.starts_with("/proc") && binary.ends_with("exe") => {
            PathBuf::from(format!("/proc/{pid}/exe"))
        }
        _ => binary.to_path_buf(),
    }
}

fn spec(id: u32, kind: u8, goid_offset: u32, caps: &[CaptureDef]) -> ProbeSpec {
    let mut captures = [Capture::default(); MAX_CAPTURES];
    for (slot, c) in captures.iter_mut().zip(caps) {
        *slot = c.to_capture();
    }
    ProbeSpec {
        probe_id: id,
        kind,
        goid_offset,
        captures,
        ..ProbeSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_versions_from_recorded_ldflags() {
        let s = |v: &str| vec![("-ldflags".to_string(), v.to_string())];
        assert_eq!(
            stamped_version(&s("-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/component-base/version.gitVersion=v1.36.3 -s -w")),
            Some("v1.36.3".into())
        );
        assert_eq!(
            stamped_version(&s(
                "-X=github.com/containerd/containerd/v2/version.Version=v2.2.9"
            )),
            Some("v2.2.9".into())
        );
        assert_eq!(stamped_version(&s("-s -w")), None);
        assert_eq!(stamped_version(&[]), None);
    }
}
