//! The loaded eBPF program, its maps and its links: loading, attaching
//! planned sites in groups (one per traced file), releasing a group,
//! detaching everything. Knows nothing of catalogues or binaries: it is
//! given [`Site`]s and [`ProbeSpec`]s by [`super::plan`].
//!
//! Loading splits the program in two halves that live on different
//! threads while recording: [`Program`] (the links, the spec table; the
//! supervisor attaches and releases with it) and [`Events`] (the ring
//! buffer, the counters and the log reader, which the drain loop empties).
//!
//! Links: on a kernel with uprobe_multi and a process-wide pid filter
//! (6.10+), one `uprobe.multi` link per (file, process) carries every site
//! of a group, each with its spec slot as cookie; it attaches and, above
//! all, detaches in one go (one kernel grace period instead of one per
//! site: 120 perf-event uprobes took 12 s to close here, one multi link
//! 30 ms). Elsewhere each site is a perf-event link of its own.

use std::{
    collections::{BTreeSet, HashMap},
    num::NonZeroU32,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeLinkId, UProbeScope},
        UProbe,
    },
    sys::{is_uprobe_multi_supported, UProbeMultiFeature},
    Ebpf, EbpfLoader,
};
use aya_log::EbpfLogger;
use podtrace_common::{ProbeSpec, MAX_SPECS};

use super::{ebpf_log::CaptureLogger, plan::Site};

/// The compiled eBPF object (tracer-ebpf), built by build.rs.
static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/podtrace.bpf.o"));

/// The plain `uprobe` program (one perf-event link per site) and the
/// `uprobe.multi` one (one link per file and process): the same code. The
/// kernel refuses a program loaded for uprobe_multi on a perf event, so only
/// the one used is loaded.
const PROG_PER_SITE: &str = "podtrace_go";
const PROG_MULTI: &str = "podtrace_go_multi";

/// Threads that close per-site links at the end (see [`Program::detach`]).
const DETACH_THREADS: usize = 64;

/// How links are made, as asked (`record --links`, hidden: for the bench
/// and the tests of the fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkRequest {
    /// uprobe_multi where the kernel has it with a process-wide pid filter.
    #[default]
    Auto,
    Multi,
    PerSite,
}

/// How links are made, as decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Multi,
    PerSite,
}

/// The mode for `req` on this kernel, and why (for `record`'s output).
pub fn link_mode(req: LinkRequest) -> (LinkMode, String) {
    match req {
        LinkRequest::Multi => (LinkMode::Multi, "asked for".into()),
        LinkRequest::PerSite => (LinkMode::PerSite, "asked for".into()),
        LinkRequest::Auto => {
            // Kernels 6.6–6.9 have uprobe_multi links but filter a pid by
            // thread, not process: a link for one kubelet would miss its
            // other threads. aya's probe tells the fixed filter apart.
            match is_uprobe_multi_supported(UProbeMultiFeature::ProcessScopedPidFilter) {
                Ok(true) => (LinkMode::Multi, "the kernel has them".into()),
                Ok(false) => {
                    let base = is_uprobe_multi_supported(UProbeMultiFeature::LinkCreation)
                        .unwrap_or(false);
                    (
                        LinkMode::PerSite,
                        if base {
                            "this kernel's uprobe_multi pid filter is per thread (fixed in 6.10)"
                                .into()
                        } else {
                            "this kernel has no uprobe_multi links (6.6+)".into()
                        },
                    )
                }
                Err(e) => (
                    LinkMode::PerSite,
                    format!("cannot tell whether the kernel has uprobe_multi links: {e}"),
                ),
            }
        }
    }
}

impl LinkMode {
    /// How `record` names it.
    pub fn describe(self) -> &'static str {
        match self {
            LinkMode::Multi => "one uprobe_multi link per binary and process",
            LinkMode::PerSite => "one perf-event link per site",
        }
    }
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Closes links from up to [`DETACH_THREADS`] threads, so that the grace
/// periods of per-site links overlap (see [`Program::detach`]).
fn close_links(links: Vec<UProbeLink>) {
    let per_thread = links.len().div_ceil(DETACH_THREADS).max(1);
    let mut links = links.into_iter();
    std::thread::scope(|scope| loop {
        let chunk: Vec<UProbeLink> = links.by_ref().take(per_thread).collect();
        if chunk.is_empty() {
            break;
        }
        // Dropping a link detaches it.
        scope.spawn(move || drop(chunk));
    });
}

/// One link: its group, aya's id and how many sites it holds.
struct Link {
    group: u32,
    id: UProbeLinkId,
    sites: usize,
}

/// The spec table's slots: which are free and which group holds which.
/// A group's slots come back only once its links are closed (by then no
/// program run can still read them); events carry the probe id, never the
/// slot, so a slot reused later does not change what earlier events mean.
struct Slots {
    free: BTreeSet<u32>,
    by_group: HashMap<u32, Vec<u32>>,
    /// Slots of groups closed on a detach thread, returned when it is done.
    closed: Arc<Mutex<Vec<u32>>>,
}

impl Slots {
    fn new() -> Slots {
        Slots {
            free: (0..MAX_SPECS).collect(),
            by_group: HashMap::new(),
            closed: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn take(&mut self, group: u32, n: usize) -> Result<Vec<u32>> {
        self.free.extend(
            self.closed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..),
        );
        if self.free.len() < n {
            bail!(
                "the eBPF program's spec table is full: {n} more slots wanted, {} of {MAX_SPECS} free \
                 (two per traced function)",
                self.free.len()
            );
        }
        let slots: Vec<u32> = self.free.iter().copied().take(n).collect();
        for s in &slots {
            self.free.remove(s);
        }
        self.by_group.entry(group).or_default().extend(&slots);
        Ok(slots)
    }

    fn release(&mut self, group: u32) -> Vec<u32> {
        self.by_group.remove(&group).unwrap_or_default()
    }
}

/// The attaching half: the loaded program, its links and the spec table.
pub struct Program {
    ebpf: Ebpf,
    prog: &'static str,
    mode: LinkMode,
    /// Sites attached now.
    pub attached: usize,
    links: Vec<Link>,
    slots: Slots,
    /// Detached for good (the recording stopped): attaching fails.
    closed: bool,
}

/// The reading half: ring buffer, counters, the program's log.
pub struct Events {
    pub ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// Reader of the program's aya-log records (`--ebpf-log`), and a handle
    /// on its counts.
    log: Option<(EbpfLogger<CaptureLogger>, CaptureLogger)>,
}

/// What one group's attach did.
#[derive(Debug, Default)]
pub struct Attached {
    /// Sites attached.
    pub sites: usize,
    /// Links made for them.
    pub links: usize,
    /// Processes that exited before their sites were attached (skipped).
    pub gone: Vec<u32>,
}

/// Loads the eBPF object with a ring buffer of `ring_bytes`, the program
/// for `mode`. With `ebpf_log`, the program's capture diagnostics are
/// turned on and go to a [`CaptureLogger`].
pub fn load(
    ring_bytes: u32,
    mode: LinkMode,
    ebpf_log: Option<CaptureLogger>,
) -> Result<(Program, Events)> {
    if BPF_OBJECT.is_empty() {
        bail!("this podtrace was built without its eBPF program (PODTRACE_SKIP_EBPF, or without the `ebpf` feature)");
    }
    // The ELF must be 8-byte aligned for the object parser; copy to be sure.
    let mut aligned: Vec<u64> = vec![0; BPF_OBJECT.len().div_ceil(8)];
    // SAFETY: the Vec<u64> buffer is at least BPF_OBJECT.len() bytes long and
    // u8 has no alignment or validity requirements.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(aligned.as_mut_ptr().cast::<u8>(), BPF_OBJECT.len())
    };
    bytes.copy_from_slice(BPF_OBJECT);
    // aya-log's level global gates every log statement in the program: 0
    // turns them all off (and lets the verifier drop their code).
    let level: u8 = if ebpf_log.is_some() { u8::MAX } else { 0 };
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("EVENTS", ring_bytes)
        .override_global("AYA_LOG_LEVEL", &level, true)
        .load(bytes)
        .context("loading the eBPF object (needs root, BTF and a 5.15+ kernel)")?;
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("no EVENTS map")?)?;
    let counters = PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("no COUNTERS map")?)?;
    let prog = match mode {
        LinkMode::Multi => PROG_MULTI,
        LinkMode::PerSite => PROG_PER_SITE,
    };
    let p: &mut UProbe = ebpf
        .program_mut(prog)
        .with_context(|| format!("eBPF object has no {prog} program"))?
        .try_into()?;
    p.load()
        .with_context(|| format!("loading {prog} into the kernel"))?;
    let log = match ebpf_log {
        Some(l) => Some((
            EbpfLogger::init_with_logger(&mut ebpf, l.clone())
                .context("reading the eBPF program's log (aya-log)")?,
            l,
        )),
        None => None,
    };
    Ok((
        Program {
            ebpf,
            prog,
            mode,
            attached: 0,
            links: Vec::new(),
            slots: Slots::new(),
            closed: false,
        },
        Events {
            ring,
            counters,
            log,
        },
    ))
}

impl Program {
    /// The loaded object, for programs of its own beside the uprobes (the
    /// process notices: [`super::procs`]).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn mode(&self) -> LinkMode {
        self.mode
    }

    fn uprobe(&mut self) -> Result<&mut UProbe> {
        let prog = self.prog;
        Ok(self
            .ebpf
            .program_mut(prog)
            .with_context(|| format!("eBPF object has no {prog} program"))?
            .try_into()?)
    }

    /// Links of `group` now held.
    pub fn links_of(&self, group: u32) -> usize {
        self.links.iter().filter(|l| l.group == group).count()
    }

    /// Spec slots free now.
    pub fn free_slots(&self) -> usize {
        self.slots.free.len()
            + self
                .slots
                .closed
                .lock()
                .map(|c| c.len())
                .unwrap_or_default()
    }

    /// Attaches a group: `specs` go into free slots of the spec table and
    /// each site's cookie, an index into `specs`, becomes its slot. On
    /// error nothing of the group is left attached.
    pub fn attach_group(
        &mut self,
        group: u32,
        specs: &[ProbeSpec],
        sites: &[Site],
    ) -> Result<Attached> {
        if self.closed {
            bail!("the recording stopped");
        }
        let slots = self.slots.take(group, specs.len())?;
        let res = self
            .write_specs(&slots, specs)
            .and_then(|()| self.attach_sites(group, &slots, sites));
        if res.is_err() {
            let _ = self.release_group_now(group);
        }
        res
    }

    fn write_specs(&mut self, slots: &[u32], specs: &[ProbeSpec]) -> Result<()> {
        let map = self
            .ebpf
            .map_mut("SPECS")
            .context("eBPF object has no SPECS map")?;
        let mut arr: Array<_, ProbeSpec> = Array::try_from(map)?;
        for (&slot, s) in slots.iter().zip(specs) {
            arr.set(slot, s, 0)
                .with_context(|| format!("writing probe spec {slot}"))?;
        }
        Ok(())
    }

    fn attach_sites(&mut self, group: u32, slots: &[u32], sites: &[Site]) -> Result<Attached> {
        let cookie = |s: &Site| -> Result<u64> {
            slots
                .get(s.cookie as usize)
                .map(|&slot| u64::from(slot))
                .with_context(|| format!("site cookie {} has no spec", s.cookie))
        };
        // (path, pid) in the order first seen, with their points.
        let mut by_target: Vec<(&PathBuf, Option<u32>, Vec<UProbeAttachPoint<'static>>)> =
            Vec::new();
        for s in sites {
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(s.offset),
                cookie: Some(cookie(s)?),
            };
            match by_target
                .iter_mut()
                .find(|(p, pid, _)| **p == s.path && *pid == s.pid)
            {
                Some(t) => t.2.push(point),
                None => by_target.push((&s.path, s.pid, vec![point])),
            }
        }
        let mode = self.mode;
        let mut done = Attached::default();
        let mut made = Vec::new();
        let prog = self.uprobe()?;
        for (path, pid, points) in by_target {
            let scope = match pid.and_then(NonZeroU32::new) {
                Some(pid) => UProbeScope::OneProcess(pid),
                None => UProbeScope::AllProcesses,
            };
            // Multi: one link for all points. Per site: one link each, so
            // that they can be closed in parallel (aya would make one
            // logical link closing its perf events one after another).
            let batches: Vec<Vec<UProbeAttachPoint<'static>>> = match mode {
                LinkMode::Multi => vec![points],
                LinkMode::PerSite => points.into_iter().map(|p| vec![p]).collect(),
            };
            for batch in batches {
                let n = batch.len();
                let first = batch.first().map(|p| p.location);
                match prog.attach(batch, path, scope) {
                    Ok(id) => {
                        made.push(Link {
                            group,
                            id,
                            sites: n,
                        });
                        done.sites += n;
                        done.links += 1;
                    }
                    // A process found running may exit before we get to it
                    // (ESRCH for a multi link's pid, ENOENT for its
                    // /proc/PID/exe): its other sites are skipped too.
                    Err(_) if pid.is_some_and(|p| !process_exists(p)) => {
                        let p = pid.unwrap_or_default();
                        log::warn!("process {p} exited before its uprobes were attached");
                        done.gone.push(p);
                        break;
                    }
                    Err(e) => {
                        let at = match first {
                            Some(UProbeAttachLocation::AbsoluteOffset(o)) if n == 1 => {
                                format!("at file offset {o:#x}")
                            }
                            _ => format!("({n} sites in one uprobe_multi link)"),
                        };
                        // What was made so far goes with the group.
                        self.attached += made.iter().map(|l| l.sites).sum::<usize>();
                        self.links.extend(made);
                        // A held file's /proc/self/fd/N says nothing: its
                        // link names the file.
                        let shown = std::fs::read_link(path)
                            .ok()
                            .filter(|_| path.starts_with("/proc/self/fd"))
                            .unwrap_or_else(|| path.to_path_buf());
                        return Err(e).with_context(|| {
                            format!("attaching uprobes to {} {at}", shown.display())
                        });
                    }
                }
            }
        }
        self.attached += done.sites;
        self.links.extend(made);
        Ok(done)
    }

    /// Takes the links of `group` out of the program's keeping (dropping
    /// them detaches); with the sites they held and the group's spec slots.
    fn take_group(&mut self, group: u32) -> Result<(Vec<UProbeLink>, Vec<u32>)> {
        let (gone, keep): (Vec<Link>, Vec<Link>) =
            self.links.drain(..).partition(|l| l.group == group);
        self.links = keep;
        self.attached = self
            .attached
            .saturating_sub(gone.iter().map(|l| l.sites).sum());
        let prog = self.uprobe()?;
        let links = gone
            .into_iter()
            .filter_map(|l| prog.take_link(l.id).ok())
            .collect();
        Ok((links, self.slots.release(group)))
    }

    /// Detaches the links of `group` (one binary's probes, no longer
    /// needed) on a thread of its own, so that per-site links' grace periods
    /// keep no one waiting; its spec slots are free again once they are
    /// closed. Returns the number of links.
    pub fn release_group(&mut self, group: u32) -> Result<usize> {
        let (links, slots) = self.take_group(group)?;
        let n = links.len();
        if n == 0 {
            self.slots.free.extend(slots);
            return Ok(0);
        }
        let closed = Arc::clone(&self.slots.closed);
        std::thread::Builder::new()
            .name("podtrace-detach".into())
            .spawn(move || {
                close_links(links);
                closed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(slots);
            })
            .context("starting a thread to detach uprobes")?;
        Ok(n)
    }

    /// Detaches the links of `group` and waits until they are gone: the
    /// file they are on was rewritten, and a breakpoint left at an old
    /// offset would cut an instruction of the new code in two.
    pub fn release_group_now(&mut self, group: u32) -> Result<usize> {
        let (links, slots) = self.take_group(group)?;
        let n = links.len();
        close_links(links);
        self.slots.free.extend(slots);
        Ok(n)
    }

    /// Detaches every uprobe and unloads the program (idempotent); attaching
    /// fails from now on. The maps stay readable: what is in the ring after
    /// this is all there will be.
    ///
    /// Closing a perf-event uprobe waits for a kernel grace period under a
    /// kernel mutex, 0.1–0.15 s each on the test VM: 52 closed one after
    /// another took 8 s, closed from many threads 4 s. A uprobe_multi link
    /// waits once for all its sites (tens of ms).
    pub fn detach(&mut self) -> Result<()> {
        self.closed = true;
        let links: Vec<UProbeLink> = {
            let ids: Vec<UProbeLinkId> = self.links.drain(..).map(|l| l.id).collect();
            let prog = self.uprobe()?;
            ids.into_iter()
                .filter_map(|id| prog.take_link(id).ok())
                .collect()
        };
        close_links(links);
        if self.attached > 0 {
            self.uprobe()?.unload().context("detaching the uprobes")?;
            self.attached = 0;
        }
        Ok(())
    }
}

impl Events {
    /// Passes the eBPF program's log records on (with `--ebpf-log`).
    pub fn flush_log(&mut self) {
        if let Some((l, _)) = self.log.as_mut() {
            l.flush();
        }
    }

    /// Lines about log records counted but not shown.
    pub fn log_summary(&self) -> Vec<String> {
        self.log
            .as_ref()
            .map(|(_, l)| l.summary())
            .unwrap_or_default()
    }

    /// (events lost to a full ring buffer, probe hits), summed over CPUs.
    pub fn counters(&self) -> (u64, u64) {
        let sum = |slot: u32| {
            self.counters
                .get(&slot, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or(0)
        };
        (sum(0), sum(1))
    }
}
