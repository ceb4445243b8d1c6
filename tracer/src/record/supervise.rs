//! Keeping a long recording on its targets: processes that restart, a
//! binary replaced at its path, a kubelet or containerd that starts after
//! recording began.
//!
//! Uprobes attached to every process of a file sit on the file's inode, so
//! a restart of the same binary is traced without help. A binary replaced
//! at the same path (an upgrade, the default→tuned kubelet swap: a new file
//! renamed over the old one) is another inode the probes know nothing of.
//! The collector calls [`Supervisor::tick`] every [`Supervisor::EVERY`]: it
//! looks at which processes run each traced file (/proc/*/exe, by device
//! and inode) and at what each traced path names now, writes a [`Note`]
//! for what changed, and attaches to a new file: its probes continue the
//! probe table (a `binary` line in the trace), their specs go into the eBPF
//! program's spec table, then the uprobes are attached. The old file's
//! probes are released once no process runs it.
//!
//! Uses discover, plan and bpf; never a command, never the drain loop.

use std::{
    collections::{BTreeSet, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{
    bpf::Loaded,
    discover::{has_go_buildinfo, recognising, running_executables, FileKey, RunningExe},
    plan::{self, PlanOptions},
    procs::ProcWatch,
};
use crate::{
    catalogue::{BinaryCatalogue, Catalogue},
    clock::mono_now,
    format::{BinaryAdded, Note, NoteKind, ProbeInfo},
    resolve::GoBinary,
    trace::Writer,
};

/// Files no process runs any more whose probes are kept (see
/// [`Supervisor::tick`]); older ones are released.
pub const KEEP_IDLE_FILES: usize = 4;

/// One traced (catalogue, file).
struct Traced<'c> {
    catalogue: &'c BinaryCatalogue,
    key: FileKey,
    /// The path to watch for a replacement; None for `--pid` targets, a
    /// file already replaced, or one whose path we cannot see.
    watch: Option<PathBuf>,
    /// `--pid`: only these processes (their probes are per process).
    only: Vec<u32>,
    /// Processes running the file, as last seen.
    pids: BTreeSet<u32>,
    /// When the last of its processes was seen gone (ktime ns).
    last_exit_ns: Option<u64>,
    /// Links group in [`Loaded`].
    group: u32,
    /// Replaced at its path by another traced file: released once no
    /// process runs it.
    retired: bool,
    released: bool,
    /// The watched file's (size, mtime) when last looked at.
    stamp: Option<Stamp>,
    /// Rewritten in place (same inode, new content): when that was seen
    /// and the stamp then; attached again once the stamp holds for a tick.
    rewritten: Option<(u64, Stamp)>,
}

impl<'c> Traced<'c> {
    /// A file just attached (group `group`), run by `pids`.
    fn new(
        catalogue: &'c BinaryCatalogue,
        key: FileKey,
        watch: Option<PathBuf>,
        only: Vec<u32>,
        pids: BTreeSet<u32>,
        group: u32,
        stamp: Option<Stamp>,
    ) -> Traced<'c> {
        Traced {
            catalogue,
            key,
            watch,
            only,
            pids,
            last_exit_ns: None,
            group,
            retired: false,
            released: false,
            stamp,
            rewritten: None,
        }
    }
}

/// A file's (size, mtime s, mtime ns): what changes when it is rewritten.
type Stamp = (u64, i64, i64);

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    (m.size(), m.mtime(), m.mtime_nsec())
}

/// A target as `record` chose and attached it.
pub struct Initial<'c> {
    pub catalogue: &'c BinaryCatalogue,
    /// The file's identity (its probes are on this inode).
    pub key: FileKey,
    /// Path to watch for a replacement (None: `--pid` or not visible).
    pub watch: Option<PathBuf>,
    /// `--pid` processes (empty: every process running the file).
    pub only: Vec<u32>,
    pub group: u32,
}

pub struct Supervisor<'c> {
    cat: &'c Catalogue,
    plan: PlanOptions,
    /// Discovery mode: a kubelet or containerd started later is traced too.
    discover: bool,
    traced: Vec<Traced<'c>>,
    /// Files discovery looked at and found not to be a kubelet or containerd.
    not_ours: HashSet<FileKey>,
    /// A replacement that failed to attach, with its (size, mtime): tried
    /// again only when the file changes.
    failed: Vec<(FileKey, Stamp)>,
    next_group: u32,
    last: Instant,
    /// Print each note on stderr.
    pub verbose: bool,
    /// Seen → attached, for every replaced or found binary (ns).
    pub latencies_ns: Vec<u64>,
    /// Notes written since the collector last took them (for the live
    /// metrics).
    pub fresh: Vec<Note>,
    /// Binaries attached since the collector last took them (the live
    /// metrics label each one with its own version).
    pub added: Vec<BinaryAdded>,
    /// The processes, from the kernel's exec/exit notices; None: read all
    /// of /proc every tick.
    pub procs: Option<ProcWatch>,
}

impl<'c> Supervisor<'c> {
    /// How often the collector calls [`Supervisor::tick`] at the least; it
    /// also calls it at once when the kernel tells of a process exec or
    /// exit ([`ProcWatch`]) or of a change in a watched path's directory
    /// (`record::paths`): a replaced binary is attached within the attach
    /// time of its rename. Without those notices it reads /proc at each
    /// tick.
    pub const EVERY: Duration = Duration::from_secs(1);

    pub fn new(
        cat: &'c Catalogue,
        plan: PlanOptions,
        discover: bool,
        initial: Vec<Initial<'c>>,
    ) -> Supervisor<'c> {
        let running = running_executables();
        let next_group = initial.iter().map(|i| i.group + 1).max().unwrap_or(0);
        let traced = initial
            .into_iter()
            .map(|i| {
                let pids = pids_of(&running, i.key, &i.only);
                let stamp = i
                    .watch
                    .as_deref()
                    .and_then(|w| std::fs::metadata(w).ok())
                    .filter(|m| (m.dev(), m.ino()) == i.key)
                    .map(|m| stamp_of(&m));
                Traced::new(i.catalogue, i.key, i.watch, i.only, pids, i.group, stamp)
            })
            .collect();
        Supervisor {
            cat,
            plan,
            discover,
            traced,
            not_ours: HashSet::new(),
            failed: Vec::new(),
            next_group,
            last: Instant::now(),
            verbose: true,
            latencies_ns: Vec::new(),
            fresh: Vec::new(),
            added: Vec::new(),
            procs: None,
        }
    }

    /// Whether a tick is due.
    pub fn due(&self) -> bool {
        self.last.elapsed() >= Self::EVERY
    }

    /// The paths watched for a replacement (for inotify on their
    /// directories).
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        self.traced.iter().filter_map(|t| t.watch.clone()).collect()
    }

    /// A replaced file attached anew: traced from now on, and noted with
    /// how long attaching took once the file was seen (latency) and how
    /// long its path went untraced (gap).
    fn reattached(
        &mut self,
        writer: &mut Writer,
        t: Traced<'c>,
        seen: u64,
        attached: u64,
        gap_ns: u64,
    ) -> Result<()> {
        let mut n = Note::new(attached, NoteKind::Reattached, &t.catalogue.binary.name);
        n.path = t
            .watch
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        n.latency_ns = Some(attached - seen);
        n.gap_ns = Some(gap_ns);
        self.latencies_ns.push(attached - seen);
        self.traced.push(t);
        self.note(writer, n)
    }

    fn note(&mut self, writer: &mut Writer, n: Note) -> Result<()> {
        if self.verbose {
            eprintln!("podtrace: {}", n.describe());
        }
        self.fresh.push(n.clone());
        writer.note(n)
    }

    /// Looks at the processes and paths, notes what changed and attaches
    /// to new files. Only writing the trace fails it: a binary that cannot
    /// be traced is noted and recording goes on.
    pub fn tick(
        &mut self,
        loaded: &mut Loaded,
        probes: &mut Vec<ProbeInfo>,
        writer: &mut Writer,
    ) -> Result<()> {
        self.last = Instant::now();
        let running = match self.procs.as_mut() {
            Some(p) => p.running(),
            None => running_executables(),
        };
        self.processes(&running, writer)?;
        self.replacements(&running, loaded, probes, writer)?;
        if self.discover {
            self.discovery(&running, loaded, probes, writer)?;
        }
        // A file no process runs any more and that cannot start again
        // (replaced, deleted, or --pid) needs its probes no longer; but
        // closing uprobes holds the kernel's uprobe lock for a grace period
        // each, and an attach meanwhile waits for all of them (a re-attach
        // took 3 s instead of 13 ms while the previous file's 49 links were
        // being closed). So the last [`KEEP_IDLE_FILES`] such files keep
        // their probes (harmless: no process maps them) until the end.
        let idle: Vec<usize> = (0..self.traced.len())
            .filter(|&i| {
                let t = &self.traced[i];
                !t.released
                    && t.pids.is_empty()
                    && (t.retired || (t.watch.is_none() && t.last_exit_ns.is_some()))
            })
            .collect();
        for &i in idle.iter().take(idle.len().saturating_sub(KEEP_IDLE_FILES)) {
            loaded.release_group(self.traced[i].group)?;
            self.traced[i].released = true;
        }
        Ok(())
    }

    /// Notes processes started and exited since the last tick.
    fn processes(&mut self, running: &[RunningExe], writer: &mut Writer) -> Result<()> {
        let now = mono_now();
        let mut notes = Vec::new();
        for t in self.traced.iter_mut().filter(|t| !t.released) {
            let pids = pids_of(running, t.key, &t.only);
            let name = &t.catalogue.binary.name;
            for &pid in t.pids.difference(&pids) {
                let mut n = Note::new(now, NoteKind::ProcessExited, name);
                n.pid = Some(pid);
                notes.push(n);
            }
            if pids.is_empty() && !t.pids.is_empty() {
                t.last_exit_ns = Some(now);
            }
            for &pid in pids.difference(&t.pids) {
                let mut n = Note::new(now, NoteKind::ProcessStarted, name);
                n.pid = Some(pid);
                notes.push(n);
                if let (true, Some(exit)) = (t.pids.is_empty(), t.last_exit_ns) {
                    let mut n = Note::new(now, NoteKind::Restart, name);
                    n.pid = Some(pid);
                    n.gap_ns = Some(now.saturating_sub(exit));
                    notes.push(n);
                }
            }
            t.pids = pids;
        }
        for n in notes {
            self.note(writer, n)?;
        }
        Ok(())
    }

    /// Attaches to the file a watched path names now, if it is another.
    fn replacements(
        &mut self,
        running: &[RunningExe],
        loaded: &mut Loaded,
        probes: &mut Vec<ProbeInfo>,
        writer: &mut Writer,
    ) -> Result<()> {
        for i in 0..self.traced.len() {
            let Some(path) = self.traced[i].watch.clone() else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                // Gone for now (mid-upgrade): look again next tick.
                continue;
            };
            let key = (meta.dev(), meta.ino());
            if key == self.traced[i].key {
                self.rewritten_in_place(i, &meta, running, loaded, probes, writer)?;
                continue;
            }
            let stamp = stamp_of(&meta);
            if self.failed.contains(&(key, stamp)) {
                continue;
            }
            let seen = mono_now();
            let catalogue = self.traced[i].catalogue;
            let name = catalogue.binary.name.clone();
            let mut n = Note::new(seen, NoteKind::BinaryReplaced, &name);
            n.path = path.display().to_string();
            self.note(writer, n)?;
            let pids = pids_of(running, key, &[]);
            match self.attach_file(loaded, probes, writer, catalogue, &path, &pids)? {
                Ok(group) => {
                    let attached = mono_now();
                    let old = &mut self.traced[i];
                    // Not traced from the replacement being seen, or from
                    // the old process's exit if none ran since.
                    let from = match old.last_exit_ns {
                        Some(exit) if old.pids.is_empty() => exit.min(seen),
                        _ => seen,
                    };
                    old.watch = None;
                    old.retired = true;
                    let gap = attached.saturating_sub(from);
                    let t = Traced::new(
                        catalogue,
                        key,
                        Some(path),
                        Vec::new(),
                        pids,
                        group,
                        Some(stamp),
                    );
                    self.reattached(writer, t, seen, attached, gap)?;
                }
                Err(e) => {
                    self.failed.push((key, stamp));
                    let mut n = Note::new(mono_now(), NoteKind::AttachFailed, &name);
                    n.path = path.display().to_string();
                    n.detail = format!("{e:#}");
                    self.note(writer, n)?;
                }
            }
        }
        Ok(())
    }

    /// The watched file of `traced[i]` is still the same inode: if its
    /// content changed (`cp new kubelet` over a stopped kubelet writes into
    /// the same file), the probes sit at offsets of the old code, where
    /// they would break the new one's instructions: they are removed at
    /// once, and attached anew once the file has stopped changing for a
    /// tick.
    fn rewritten_in_place(
        &mut self,
        i: usize,
        meta: &std::fs::Metadata,
        running: &[RunningExe],
        loaded: &mut Loaded,
        probes: &mut Vec<ProbeInfo>,
        writer: &mut Writer,
    ) -> Result<()> {
        let stamp = stamp_of(meta);
        let t = &mut self.traced[i];
        let Some(path) = t.watch.clone() else {
            return Ok(());
        };
        let name = t.catalogue.binary.name.clone();
        match t.rewritten {
            None if t.stamp.is_none_or(|s| s == stamp) => {
                t.stamp = Some(stamp);
                Ok(())
            }
            None => {
                let seen = mono_now();
                t.rewritten = Some((seen, stamp));
                t.stamp = Some(stamp);
                let group = t.group;
                if !t.released {
                    t.released = true;
                    loaded.release_group_now(group)?;
                }
                let mut n = Note::new(seen, NoteKind::BinaryReplaced, &name);
                n.path = path.display().to_string();
                n.detail = "rewritten in place: its probes were removed".into();
                self.note(writer, n)
            }
            Some((seen, last)) if last != stamp => {
                // Still being written.
                t.rewritten = Some((seen, stamp));
                t.stamp = Some(stamp);
                Ok(())
            }
            Some(_) if self.failed.contains(&(t.key, stamp)) => Ok(()),
            Some((seen, _)) => {
                let catalogue = t.catalogue;
                let pids = pids_of(running, t.key, &[]);
                match self.attach_file(loaded, probes, writer, catalogue, &path, &pids)? {
                    Ok(group) => {
                        let attached = mono_now();
                        let old = &mut self.traced[i];
                        old.watch = None;
                        old.retired = true;
                        old.rewritten = None;
                        let key = old.key;
                        let t = Traced::new(
                            catalogue,
                            key,
                            Some(path),
                            Vec::new(),
                            pids,
                            group,
                            Some(stamp),
                        );
                        self.reattached(writer, t, seen, attached, attached - seen)
                    }
                    Err(e) => {
                        // Tried again when the file changes.
                        let key = self.traced[i].key;
                        self.failed.push((key, stamp));
                        let mut n = Note::new(mono_now(), NoteKind::AttachFailed, &name);
                        n.path = path.display().to_string();
                        n.detail = format!("{e:#}");
                        self.note(writer, n)
                    }
                }
            }
        }
    }

    /// Discovery: a kubelet or containerd file that started running since.
    fn discovery(
        &mut self,
        running: &[RunningExe],
        loaded: &mut Loaded,
        probes: &mut Vec<ProbeInfo>,
        writer: &mut Writer,
    ) -> Result<()> {
        for exe in running {
            if self.not_ours.contains(&exe.key) || self.traced.iter().any(|t| t.key == exe.key) {
                continue;
            }
            let seen = mono_now();
            let by_name = exe.named_like(self.cat);
            let path = exe.proc_path();
            let cats = if by_name.is_empty() {
                if !has_go_buildinfo(&path) {
                    self.not_ours.insert(exe.key);
                    continue;
                }
                match GoBinary::open(&path) {
                    Ok(b) => recognising(self.cat, &b),
                    Err(_) => Vec::new(),
                }
            } else {
                by_name
            };
            if cats.is_empty() {
                self.not_ours.insert(exe.key);
                continue;
            }
            let pids: BTreeSet<u32> = exe.pids.iter().copied().collect();
            // Watch the path it was started from, when we can see it.
            let watch = exe.watchable_path();
            for catalogue in cats {
                let name = catalogue.binary.name.clone();
                match self.attach_file(loaded, probes, writer, catalogue, &path, &pids)? {
                    Ok(group) => {
                        let attached = mono_now();
                        self.latencies_ns.push(attached - seen);
                        let mut n = Note::new(attached, NoteKind::BinaryFound, &name);
                        n.path = exe.shown.display().to_string();
                        n.pid = pids.first().copied();
                        n.latency_ns = Some(attached - seen);
                        self.traced.push(Traced::new(
                            catalogue,
                            exe.key,
                            watch.clone(),
                            Vec::new(),
                            pids.clone(),
                            group,
                            watch
                                .as_deref()
                                .and_then(|w| std::fs::metadata(w).ok())
                                .map(|m| stamp_of(&m)),
                        ));
                        self.note(writer, n)?;
                    }
                    Err(e) => {
                        self.not_ours.insert(exe.key);
                        let mut n = Note::new(mono_now(), NoteKind::AttachFailed, &name);
                        n.path = exe.shown.display().to_string();
                        n.detail = format!("{e:#}");
                        self.note(writer, n)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves `catalogue` in the file at `path`, appends its probes and
    /// attaches them to every process of the file. The outer error is the
    /// trace's (fatal); the inner one this binary's (noted).
    fn attach_file(
        &mut self,
        loaded: &mut Loaded,
        probes: &mut Vec<ProbeInfo>,
        writer: &mut Writer,
        catalogue: &BinaryCatalogue,
        path: &Path,
        pids: &BTreeSet<u32>,
    ) -> Result<Result<u32>> {
        let first = probes.len() as u32;
        let t0 = Instant::now();
        let prepared = (|| -> Result<_> {
            let binary = GoBinary::open(path)?;
            log::debug!("{}: opened in {:?}", path.display(), t0.elapsed());
            let pids: Vec<u32> = pids.iter().copied().collect();
            let r = plan::resolve_target(catalogue, &binary, path, &pids)?;
            log::debug!("{}: resolved in {:?}", path.display(), t0.elapsed());
            // Every process of the file: the uprobes go on its inode.
            let target = plan::TargetBinary {
                pids: Vec::new(),
                ..r.target
            };
            let (new, specs, sites) = plan::plan_from(&[target], self.plan, first)?;
            loaded.set_specs(2 * first, &specs)?;
            Ok((r.record, new, sites))
        })();
        let (record, new, sites) = match prepared {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        // The probe table first, so that every event of these probes
        // comes after it.
        let added = BinaryAdded {
            binary: record,
            probes: new.clone(),
        };
        writer.binary_added(added.clone())?;
        self.added.push(added);
        probes.extend(new);
        let group = self.next_group;
        self.next_group += 1;
        log::debug!("{}: planned in {:?}", path.display(), t0.elapsed());
        if let Err(e) = loaded.attach_group(&sites, group, |_, _| {}) {
            let _ = loaded.release_group(group);
            return Ok(Err(e));
        }
        log::debug!(
            "{}: {} sites attached in {:?}",
            path.display(),
            sites.len(),
            t0.elapsed()
        );
        Ok(Ok(group))
    }
}

/// The processes running file `key` (of `only`, if given).
fn pids_of(running: &[RunningExe], key: FileKey, only: &[u32]) -> BTreeSet<u32> {
    running
        .iter()
        .filter(|r| r.key == key)
        .flat_map(|r| r.pids.iter().copied())
        .filter(|p| only.is_empty() || only.contains(p))
        .collect()
}
