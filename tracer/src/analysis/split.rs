//! `compare --split-by build`: one trace of an interleaved experiment
//! (kubelet builds swapped at the same path in blocks, ABBA…, while one
//! `podtrace record` ran) split into one run per build.
//!
//! The binary that has more than one build in the trace is the one split:
//! its events go to the run of the build whose probes they hit (every
//! attach of a file has probe ids of its own, see
//! [`crate::format::BinaryRecord::first_probe`]); the other binaries'
//! events (containerd's) go to every run and are joined to the pods each
//! run has. Builds are told apart by content hash.
//!
//! Reads traces and correlates them; uses no other analysis.

use std::{collections::BTreeMap, path::Path};

use anyhow::{bail, Result};

use crate::{
    correlate::{Correlated, Correlator, InOrder, MAX_SPAN_AGE_NS, REORDER_NS},
    format::{BinaryIdentity, BinaryRecord, NoteKind},
    trace::{Trace, TraceInfo},
};

/// One build's share of a trace.
pub struct Part {
    /// The split binary's catalogue name ("kubelet").
    pub binary: String,
    pub identity: BinaryIdentity,
    pub info: TraceInfo,
    pub corr: Correlated,
}

/// The binary with several builds in `binaries`, and those builds in the
/// order they first appear.
fn split_binary(path: &Path, binaries: &[BinaryRecord]) -> Result<(String, Vec<BinaryIdentity>)> {
    let mut builds: BTreeMap<&str, Vec<BinaryIdentity>> = BTreeMap::new();
    for b in binaries {
        let Some(id) = &b.identity else {
            bail!(
                "{}: {} {} has no build identity (recorded by an older podtrace): cannot split by build",
                path.display(),
                b.name,
                b.path
            );
        };
        let v = builds.entry(&b.name).or_default();
        if !v.iter().any(|x| x.sha256 == id.sha256) {
            v.push(id.clone());
        }
    }
    let several: Vec<(&str, Vec<BinaryIdentity>)> =
        builds.into_iter().filter(|(_, v)| v.len() > 1).collect();
    match several.as_slice() {
        [] => bail!(
            "{}: nothing to split: every traced binary has a single build in this trace \
             (an interleaved experiment swaps builds at the traced path while recording)",
            path.display()
        ),
        [(name, ids)] => Ok((name.to_string(), ids.clone())),
        _ => bail!(
            "{}: several binaries changed build while recording ({}): split by one of them only",
            path.display(),
            several
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Splits the trace at `path` into one run per build of the binary that
/// changed build while recording.
pub fn split_by_build(path: &Path) -> Result<Vec<Part>> {
    // First pass: the whole probe table and binary list (binaries replaced
    // while recording are appended as the trace goes).
    let mut first = Trace::open(path)?;
    while first.next_event()?.is_some() {}
    let whole = first.finish();
    let (binary, builds) = split_binary(path, &whole.header.binaries)?;
    let group_of_record = |b: &BinaryRecord| {
        (b.name == binary)
            .then(|| {
                let sha = &b.identity.as_ref()?.sha256;
                builds.iter().position(|i| &i.sha256 == sha)
            })
            .flatten()
    };
    // Probe id → the build it belongs to (None: another binary's, shared).
    let mut group: Vec<Option<usize>> = vec![None; whole.header.probes.len()];
    for b in &whole.header.binaries {
        if let (Some(g), Some(f), Some(n)) = (group_of_record(b), b.first_probe, b.probe_count) {
            for id in f..f + n {
                if let Some(slot) = group.get_mut(id as usize) {
                    *slot = Some(g);
                }
            }
        }
    }
    let probes = whole.header.probes.clone();
    let mut reader = Trace::open(path)?;
    let mut known = reader.header().probes.len();
    let mut parts: Vec<InOrder<'_>> = builds
        .iter()
        .map(|_| InOrder::new(Correlator::new(&probes[..known], MAX_SPAN_AGE_NS)))
        .collect();
    while let Some(e) = reader.next_event()? {
        let table = reader.header().probes.len();
        if table > known {
            for p in &mut parts {
                p.add_probes(&probes[known..table]);
            }
            known = table;
        }
        match group.get(e.p as usize).copied().flatten() {
            Some(g) => parts[g].push(e),
            None => {
                for p in &mut parts {
                    p.push(e.clone());
                }
            }
        }
    }
    let info = reader.finish();
    let ids = builds.clone();
    parts
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(g, (p, identity))| {
            let (corr, late) = p.finish();
            let mut info = info.clone();
            info.header
                .binaries
                .retain(|b| b.name != binary || group_of_record(b) == Some(g));
            // The other binaries' processes ran through every block: their
            // CPU samples (every 5 s) cannot be cut at the blocks' edges,
            // so only the split binary's own processes keep theirs.
            info.notes
                .retain(|n| n.kind != NoteKind::CpuTime || n.binary == binary);
            if late > 0 {
                info.warnings.push(format!(
                    "{}: {late} events came more than {} s after later ones and were paired in file order",
                    path.display(),
                    REORDER_NS / 1_000_000_000
                ));
            }
            Ok(Part {
                binary: binary.clone(),
                identity,
                info,
                corr,
            })
        })
        .collect()
}

/// Per part, in how many blocks its pods started: consecutive pod starts
/// (over all parts, in time order) of one build make a block. An ABBA
/// design over four blocks gives 2 and 2.
pub fn blocks(parts: &[Part]) -> Vec<usize> {
    let mut starts: Vec<(u64, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(g, p)| {
            super::pods::pod_windows(&p.corr)
                .into_iter()
                .map(move |w| (w.start, g))
        })
        .collect();
    starts.sort_unstable();
    let mut out = vec![0; parts.len()];
    let mut last = None;
    for (_, g) in starts {
        if last != Some(g) {
            out[g] += 1;
            last = Some(g);
        }
    }
    out
}
