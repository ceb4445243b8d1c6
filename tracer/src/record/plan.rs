//! From resolved targets to what the kernel is given: the probe table
//! (one [`ProbeInfo`] per traced function), the eBPF program's
//! [`ProbeSpec`]s (what each site captures) and the [`Site`]s to attach.
//!
//! Every traced function gets one probe id; its entry site uses spec slot
//! `2*id` and its RET sites slot `2*id+1`. The slot is the attach cookie.
//! Plans only: loading and attaching are [`super::bpf`]'s.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use podtrace_common::{Capture, ProbeSpec, KIND_ENTRY, KIND_EXIT, MAX_CAPTURES, MAX_SPECS};

use crate::{
    catalogue::{list_some, BinaryCatalogue, CaptureDef, Resolution, SiteKind, Status},
    format::{BinaryRecord, ProbeInfo},
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

/// The version a traced binary is known by (the `version` metric label):
/// the Kubernetes or containerd module it was built from, else its main
/// module's version, else its Go version.
pub fn component_version(bin: &GoBinary) -> String {
    const MODULES: &[&str] = &[
        "k8s.io/kubernetes",
        "github.com/containerd/containerd/v2",
        "github.com/containerd/containerd",
        "github.com/k3s-io/k3s",
    ];
    MODULES
        .iter()
        .filter_map(|m| bin.module_version(m))
        .chain(
            bin.build_info()
                .and_then(|b| b.main.as_ref())
                .map(|m| m.version.as_str()),
        )
        .find(|v| v.starts_with('v'))
        .or(bin.go_version())
        .unwrap_or("unknown")
        .to_string()
}

/// Turns resolutions into the probe table, eBPF specs and attach sites.
pub fn plan(
    targets: &[TargetBinary<'_>],
    opts: PlanOptions,
) -> Result<(Vec<ProbeInfo>, Vec<ProbeSpec>, Vec<Site>)> {
    plan_from(targets, opts, 0)
}

/// [`plan`] for probes appended to a table of `first_id` probes (a binary
/// attached while recording): ids, spec slots and cookies continue from there.
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
                if 2 * id + 2 > MAX_SPECS {
                    bail!("more than {} traced functions", MAX_SPECS / 2);
                }
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
                            cookie: 2 * id,
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
                            cookie: 2 * id + 1,
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
