//! The loaded eBPF program, its maps and its links: loading, attaching
//! planned sites in groups (one per traced file), releasing a group,
//! detaching everything. Knows nothing of catalogues or binaries: it is
//! given [`Site`]s and [`ProbeSpec`]s by [`super::plan`].

use std::num::NonZeroU32;

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeLinkId, UProbeScope},
        UProbe,
    },
    Ebpf, EbpfLoader,
};
use aya_log::EbpfLogger;
use podtrace_common::{ProbeSpec, MAX_SPECS};

use super::{ebpf_log::CaptureLogger, plan::Site};

/// The compiled eBPF object (tracer-ebpf), built by build.rs.
static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/podtrace.bpf.o"));

/// Threads that close uprobe links at the end (see [`Loaded::detach`]).
const DETACH_THREADS: usize = 64;

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Closes uprobe links from up to [`DETACH_THREADS`] threads, so that
/// their grace periods overlap (see [`Loaded::detach`]).
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

/// The loaded program with its maps.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    pub attached: usize,
    /// Each link with the group it was attached in (see [`Loaded::attach_group`]).
    links: Vec<(u32, UProbeLinkId)>,
    /// Reader of the program's aya-log records (`--ebpf-log`), and a handle
    /// on its counts.
    log: Option<(EbpfLogger<CaptureLogger>, CaptureLogger)>,
}

/// Loads the eBPF object with a ring buffer of `ring_bytes` and the given
/// specs. With `ebpf_log`, the program's capture diagnostics are turned on
/// and go to a [`CaptureLogger`] naming `probes`.
pub fn load(
    ring_bytes: u32,
    specs: &[ProbeSpec],
    ebpf_log: Option<CaptureLogger>,
) -> Result<Loaded> {
    if BPF_OBJECT.is_empty() {
        bail!("this podtrace was built with PODTRACE_SKIP_EBPF: it has no eBPF program");
    }
    // The ELF must be 8-byte aligned for the object parser; copy to be sure.
    let aligned: Vec<u64> = vec![0; BPF_OBJECT.len().div_ceil(8)];
    let mut aligned = aligned;
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
    {
        let map = ebpf
            .map_mut("SPECS")
            .context("eBPF object has no SPECS map")?;
        let mut arr: Array<_, ProbeSpec> = Array::try_from(map)?;
        for (i, s) in specs.iter().enumerate() {
            arr.set(i as u32, s, 0)
                .with_context(|| format!("writing probe spec {i}"))?;
        }
    }
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("no EVENTS map")?)?;
    let counters = PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("no COUNTERS map")?)?;
    let prog: &mut UProbe = ebpf
        .program_mut("podtrace_go")
        .context("eBPF object has no podtrace_go program")?
        .try_into()?;
    prog.load().context("loading podtrace_go into the kernel")?;
    let log = match ebpf_log {
        Some(l) => Some((
            EbpfLogger::init_with_logger(&mut ebpf, l.clone())
                .context("reading the eBPF program's log (aya-log)")?,
            l,
        )),
        None => None,
    };
    Ok(Loaded {
        ebpf,
        ring,
        counters,
        attached: 0,
        links: Vec::new(),
        log,
    })
}

impl Loaded {
    /// Attaches every site; `progress(done, total)` is called as it goes.
    pub fn attach(&mut self, sites: &[Site], progress: impl FnMut(usize, usize)) -> Result<()> {
        self.attach_group(sites, 0, progress)
    }

    /// Writes the specs of probes appended while recording, from slot
    /// `first_slot` (twice the first new probe id) on.
    pub fn set_specs(&mut self, first_slot: u32, specs: &[ProbeSpec]) -> Result<()> {
        if first_slot as usize + specs.len() > MAX_SPECS as usize {
            bail!(
                "more than {} traced functions in all (the eBPF program's spec table is full)",
                MAX_SPECS / 2
            );
        }
        let map = self
            .ebpf
            .map_mut("SPECS")
            .context("eBPF object has no SPECS map")?;
        let mut arr: Array<_, ProbeSpec> = Array::try_from(map)?;
        for (i, s) in specs.iter().enumerate() {
            let slot = first_slot + i as u32;
            arr.set(slot, s, 0)
                .with_context(|| format!("writing probe spec {slot}"))?;
        }
        Ok(())
    }

    /// Takes the links of `group` out of the program's keeping (dropping
    /// them detaches).
    fn take_group(&mut self, group: u32) -> Result<Vec<UProbeLink>> {
        let prog: &mut UProbe = self
            .ebpf
            .program_mut("podtrace_go")
            .context("eBPF object has no podtrace_go program")?
            .try_into()?;
        let (gone, keep): (Vec<_>, Vec<_>) = self.links.drain(..).partition(|(g, _)| *g == group);
        self.links = keep;
        let links: Vec<UProbeLink> = gone
            .into_iter()
            .filter_map(|(_, id)| prog.take_link(id).ok())
            .collect();
        self.attached = self.attached.saturating_sub(links.len());
        Ok(links)
    }

    /// Detaches the links of `group` (one binary's probes, no longer
    /// needed) on a thread of its own: each close waits for a kernel grace
    /// period (see [`Loaded::detach`]) and the collector must not.
    pub fn release_group(&mut self, group: u32) -> Result<usize> {
        let links = self.take_group(group)?;
        let n = links.len();
        if n > 0 {
            std::thread::Builder::new()
                .name("podtrace-detach".into())
                .spawn(move || close_links(links))
                .context("starting a thread to detach uprobes")?;
        }
        Ok(n)
    }

    /// Detaches the links of `group` and waits until they are gone: the
    /// file they are on was rewritten, and a breakpoint left at an old
    /// offset would cut an instruction of the new code in two.
    pub fn release_group_now(&mut self, group: u32) -> Result<usize> {
        let links = self.take_group(group)?;
        let n = links.len();
        close_links(links);
        Ok(n)
    }

    /// [`Loaded::attach`], the links tagged with `group` so that they can
    /// be released together.
    pub fn attach_group(
        &mut self,
        sites: &[Site],
        group: u32,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<()> {
        let prog: &mut UProbe = self
            .ebpf
            .program_mut("podtrace_go")
            .context("eBPF object has no podtrace_go program")?
            .try_into()?;
        let mut gone = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let scope = match s.pid.and_then(NonZeroU32::new) {
                Some(pid) => UProbeScope::OneProcess(pid),
                None => UProbeScope::AllProcesses,
            };
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(s.offset),
                cookie: Some(u64::from(s.cookie)),
            };
            if s.pid.is_some_and(|p| gone.contains(&p)) {
                continue;
            }
            match prog.attach(point, &s.path, scope) {
                Ok(id) => {
                    self.links.push((group, id));
                    self.attached += 1;
                }
                // A process found running may exit before we get to it.
                Err(_) if s.pid.is_some_and(|p| !process_exists(p)) => {
                    let pid = s.pid.unwrap_or_default();
                    log::warn!("process {pid} exited before its uprobes were attached");
                    gone.push(pid);
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "attaching uprobe to {} at file offset {:#x}",
                            s.path.display(),
                            s.offset
                        )
                    })
                }
            }
            progress(i + 1, sites.len());
        }
        Ok(())
    }

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

    /// Detaches every uprobe and unloads the program (idempotent). The maps
    /// stay readable: what is in the ring after this is all there will be.
    ///
    /// Closing one uprobe waits for a kernel grace period under a kernel
    /// mutex, 0.1–0.15 s each on the test VM: 52 uprobes closed one after
    /// another took 8 s. Closed from many threads the waits overlap in part
    /// (4 s for the same 52); only uprobe_multi links, which aya 0.14 does
    /// not make, would close in one wait.
    pub fn detach(&mut self) -> Result<()> {
        let prog: &mut UProbe = self
            .ebpf
            .program_mut("podtrace_go")
            .context("eBPF object has no podtrace_go program")?
            .try_into()?;
        let links: Vec<UProbeLink> = self
            .links
            .drain(..)
            .filter_map(|(_, id)| prog.take_link(id).ok())
            .collect();
        close_links(links);
        if self.attached > 0 {
            prog.unload().context("detaching the uprobes")?;
            self.attached = 0;
        }
        Ok(())
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
