//! Keeping a long recording on its targets: processes that restart, a
//! binary replaced at its path or rewritten in place, a kubelet or
//! containerd that starts after recording began.
//!
//! Uprobes attached to every process of a file sit on the file's inode, so
//! a restart of the same binary is traced without help. A binary replaced
//! at the same path (an upgrade, the default→tuned kubelet swap: a new file
//! renamed over the old one) is another inode the probes know nothing of.
//!
//! The supervisor runs on a thread of its own ([`Supervisor::run`]), off
//! the one that drains the ring buffer: reading and resolving a 100 MB
//! binary takes a good part of a second, and events must not wait for it.
//! Every [`Supervisor::EVERY`] it looks at which processes run each traced
//! file (/proc/*/exe, by device and inode), at what each traced path names
//! now and at each traced file's size and mtime, and sends the drain loop
//! a [`Note`] for what changed. For a new file it sends the probes' table
//! entries (a `binary` line in the trace) and waits until the drain loop
//! has written them before it attaches: every event of those probes comes
//! after their line. A file no process runs any more is released.
//!
//! Each traced file is held open: its stamp is read through that
//! descriptor (an in-place rewrite is seen whatever mount namespace its
//! path is in: a DaemonSet pod sees no host path), and its probes are
//! attached through /proc/self/fd/N (the process that showed it to us may
//! exit meanwhile; the file stays).
//!
//! Uses discover, plan and bpf; never a command, never the drain loop.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs::File,
    os::{
        fd::{AsFd as _, BorrowedFd, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use rustix::event::{PollFd, PollFlags, Timespec};
use tokio::sync::mpsc::UnboundedSender;

use super::{
    bpf::{LinkMode, Program},
    discover::{fd_path, may_be_ours, recognising, running_executables, FileKey, RunningExe},
    paths::PathWatch,
    plan::{self, PlanOptions},
    procs::{cpu_time_ns, ProcWatch},
};
use crate::{
    catalogue::{BinaryCatalogue, Catalogue},
    clock::mono_now,
    format::{BinaryAdded, BinaryRecord, Note, NoteKind},
    resolve::GoBinary,
};

/// With per-site links: files no process runs any more whose probes are
/// kept (see [`Supervisor::release_idle`]); older ones are released.
pub const KEEP_IDLE_FILES: usize = 4;

/// First wait before attaching again to a file whose attach failed; it
/// doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// What the supervisor sends the drain loop, which owns the trace.
pub enum Msg {
    /// Probes appended to the table, to be written (a `binary` line) and
    /// told to the live consumer; acknowledged once done, and only then
    /// attached.
    Binary(Box<BinaryAdded>, mpsc::SyncSender<()>),
    Note(Note),
}

/// The recording stopped (or the drain loop is gone): the supervisor ends.
#[derive(Debug)]
pub struct Stopped;

/// The supervisor's end of its stop signal: the read end of a pipe whose
/// write end the drain loop holds and closes to stop it. A pipe, not a
/// channel: the supervisor sleeps in poll(2) on it together with the
/// kernel's process and path notices, and wakes at once for any of them.
pub struct StopSignal(OwnedFd);

/// What woke the supervisor.
struct Woke {
    stop: bool,
    paths: bool,
}

/// A stop signal: (the drain loop's end, the supervisor's).
pub fn stop_signal() -> anyhow::Result<(OwnedFd, StopSignal)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("creating the supervisor's stop pipe")?;
    Ok((w, StopSignal(r)))
}

impl StopSignal {
    /// Whether the drain loop closed its end (a look, no wait).
    fn raised(&self) -> bool {
        self.wait(Duration::ZERO, None, None).stop
    }

    /// Waits up to `timeout` for the stop, a process notice (`procs`) or a
    /// path change (`paths`).
    fn wait(
        &self,
        timeout: Duration,
        procs: Option<BorrowedFd<'_>>,
        paths: Option<BorrowedFd<'_>>,
    ) -> Woke {
        let ts = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = vec![PollFd::new(&self.0, PollFlags::IN)];
        if let Some(f) = procs {
            fds.push(PollFd::from_borrowed_fd(f, PollFlags::IN));
        }
        let paths_at = paths.map(|f| {
            fds.push(PollFd::from_borrowed_fd(f, PollFlags::IN));
            fds.len() - 1
        });
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) => Woke {
                // Readable (written) or hung up (closed): both mean stop.
                stop: !fds[0].revents().is_empty(),
                paths: paths_at.is_some_and(|i| !fds[i].revents().is_empty()),
            },
            // EINTR: look again at the next turn.
            Err(_) => Woke {
                stop: false,
                paths: false,
            },
        }
    }
}

/// The supervisor's way out: notes and probe tables to the drain loop, and
/// whether it should stop.
struct Out<'a> {
    tx: &'a UnboundedSender<Msg>,
    stop: &'a StopSignal,
    verbose: bool,
}

impl Out<'_> {
    fn stopping(&self) -> bool {
        self.stop.raised()
    }

    fn note(&self, n: Note) -> Result<(), Stopped> {
        if self.verbose && n.is_event() {
            eprintln!("podtrace: {}", n.describe());
        }
        self.tx.send(Msg::Note(n)).map_err(|_| Stopped)
    }

    /// Sends the probe table lines and waits until they are written.
    fn binary(&self, b: BinaryAdded) -> Result<(), Stopped> {
        let (ack, done) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Binary(Box::new(b), ack))
            .map_err(|_| Stopped)?;
        done.recv().map_err(|_| Stopped)
    }
}

/// One traced (catalogue, file).
struct Traced<'c> {
    catalogue: &'c BinaryCatalogue,
    key: FileKey,
    /// The file, held while its probes are attached or it is being
    /// rewritten (see the module's doc).
    file: Option<File>,
    /// How notes name it (the path it was found or given as).
    shown: PathBuf,
    /// The path to watch for a replacement; None for `--pid` targets, a
    /// file already replaced, or one whose path we cannot see.
    watch: Option<PathBuf>,
    /// `--pid`: only these processes (their probes are per process).
    only: Vec<u32>,
    /// Processes running the file, as last seen.
    pids: BTreeSet<u32>,
    /// When the last of its processes was seen gone (ktime ns).
    last_exit_ns: Option<u64>,
    /// Links group in [`Program`].
    group: u32,
    /// Replaced at its path by another traced file: released once no
    /// process runs it.
    retired: bool,
    released: bool,
    /// The file's (size, mtime) when last looked at.
    stamp: Option<Stamp>,
    /// Rewritten in place (same inode, new content): when that was seen
    /// and the stamp then; attached again once the stamp holds for a tick.
    rewritten: Option<(u64, Stamp)>,
}

impl<'c> Traced<'c> {
    /// A file just attached: running `pids`, last stamped `stamp`.
    fn new(i: Initial<'c>, pids: BTreeSet<u32>, stamp: Option<Stamp>) -> Traced<'c> {
        Traced {
            catalogue: i.catalogue,
            key: i.key,
            file: i.file,
            shown: i.shown,
            watch: i.watch,
            only: i.only,
            pids,
            last_exit_ns: None,
            group: i.group,
            retired: false,
            released: false,
            stamp,
            rewritten: None,
        }
    }
}

/// Notes `pid`'s CPU time so far (nothing if it is gone).
fn note_cpu_of(pid: u32, binary: &str, out: &Out<'_>) -> Result<(), Stopped> {
    match cpu_note(mono_now(), pid, binary) {
        Some(n) => out.note(n),
        None => Ok(()),
    }
}

/// The CpuTime note of `pid` at `t_ns`; None if it is gone.
fn cpu_note(t_ns: u64, pid: u32, binary: &str) -> Option<Note> {
    let cpu = cpu_time_ns(pid)?;
    let mut n = Note::new(t_ns, NoteKind::CpuTime, binary);
    n.pid = Some(pid);
    n.cpu_ns = Some(cpu);
    Some(n)
}

/// A file's (size, mtime s, mtime ns): what changes when it is rewritten.
type Stamp = (u64, i64, i64);

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    (m.size(), m.mtime(), m.mtime_nsec())
}

/// Opens the file `path` names if it is still `key`.
fn open_key(path: &Path, key: FileKey) -> Option<(File, Stamp)> {
    let f = File::open(path).ok()?;
    let m = f.metadata().ok()?;
    ((m.dev(), m.ino()) == key).then(|| (f, stamp_of(&m)))
}

/// A target as `record` chose and attached it.
pub struct Initial<'c> {
    pub catalogue: &'c BinaryCatalogue,
    /// The file's identity (its probes are on this inode).
    pub key: FileKey,
    /// The file, opened when it was attached.
    pub file: Option<File>,
    pub shown: PathBuf,
    /// Path to watch for a replacement (None: `--pid` or not visible).
    pub watch: Option<PathBuf>,
    /// `--pid` processes (empty: every process running the file).
    pub only: Vec<u32>,
    pub group: u32,
}

/// A failed attempt to trace a file.
enum Failure {
    /// Not this catalogue's binary (or not one it knows): not tried again.
    Resolve(anyhow::Error),
    /// The kernel refused the probes: tried again later.
    Attach(anyhow::Error),
}

struct Retry {
    at: Instant,
    delay: Duration,
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
    /// Files found by discovery whose attach failed: when to try again.
    retry: HashMap<FileKey, Retry>,
    next_group: u32,
    /// The id the next appended probe gets (the table's length).
    next_probe: u32,
    /// Idle files whose probes are kept (see [`Supervisor::release_idle`]).
    keep_idle: usize,
    /// Print each note on stderr.
    pub verbose: bool,
    /// Seen → attached, for every replaced or found binary (ns).
    pub latencies_ns: Vec<u64>,
    /// The processes, from the kernel's exec/exit notices; None: read all
    /// of /proc every tick.
    procs: Option<ProcWatch>,
    /// inotify on the watched paths' directories; None: paths are looked
    /// at every tick only.
    paths: Option<PathWatch>,
    last: Instant,
    /// When the CPU times were last noted.
    cpu_noted: Option<Instant>,
}

impl<'c> Supervisor<'c> {
    /// How often it looks at the least when the kernel tells it of process
    /// execs and exits ([`ProcWatch`]) and of changes where a traced path
    /// is ([`PathWatch`]): a replaced binary is then attached within the
    /// attach time of its rename. Without those notices it looks every
    /// [`Self::POLL_EVERY`].
    pub const EVERY: Duration = Duration::from_secs(1);
    pub const POLL_EVERY: Duration = Duration::from_millis(250);
    /// Least time between two looks however many notices arrive (a node
    /// starting processes in a loop must not keep it busy).
    pub const LEAST: Duration = Duration::from_millis(100);
    /// How often each traced process's CPU time is noted (also when it
    /// starts and at the stop): the report holds the loops' busy time
    /// against it over the same window.
    pub const CPU_EVERY: Duration = Duration::from_secs(5);

    /// `rejected`: files discovery already found not to be ours;
    /// `probes`: the probe table's length so far.
    pub fn new(
        cat: &'c Catalogue,
        plan: PlanOptions,
        discover: bool,
        initial: Vec<Initial<'c>>,
        rejected: Vec<FileKey>,
        probes: usize,
        mode: LinkMode,
    ) -> Supervisor<'c> {
        let running = running_executables();
        let next_group = initial.iter().map(|i| i.group + 1).max().unwrap_or(0);
        let traced = initial
            .into_iter()
            .map(|i| {
                let pids = pids_of(&running, i.key, &i.only);
                let stamp = i
                    .file
                    .as_ref()
                    .and_then(|f| f.metadata().ok())
                    .map(|m| stamp_of(&m));
                Traced::new(i, pids, stamp)
            })
            .collect();
        Supervisor {
            cat,
            plan,
            discover,
            traced,
            not_ours: rejected.into_iter().collect(),
            failed: Vec::new(),
            retry: HashMap::new(),
            next_group,
            next_probe: probes as u32,
            // Closing a uprobe_multi link takes one grace period for all
            // its sites; per-site links hold the kernel's uprobe lock for
            // one each, and an attach meanwhile waits for all of them (a
            // re-attach took 3 s instead of 13 ms while the previous file's
            // 49 links were being closed).
            keep_idle: match mode {
                LinkMode::Multi => 0,
                LinkMode::PerSite => KEEP_IDLE_FILES,
            },
            verbose: true,
            latencies_ns: Vec::new(),
            procs: None,
            paths: None,
            last: Instant::now(),
            cpu_noted: None,
        }
    }

    /// Follows processes by the kernel's exec/exit notices instead of
    /// reading /proc every tick (see [`ProcWatch`]), and watched paths by
    /// inotify ([`PathWatch`]).
    pub fn with_notices(mut self, procs: Option<ProcWatch>, paths: Option<PathWatch>) -> Self {
        self.procs = procs;
        self.paths = paths;
        self.watch_paths();
        self
    }

    fn watch_paths(&mut self) {
        if let Some(w) = self.paths.as_mut() {
            let paths: Vec<PathBuf> = self.traced.iter().filter_map(|t| t.watch.clone()).collect();
            w.set(&paths);
        }
    }

    /// How long to wait for a word before looking anyway.
    fn every(&self) -> Duration {
        if self.procs.is_some() {
            Self::EVERY
        } else {
            Self::POLL_EVERY
        }
    }

    /// Looks every [`Self::EVERY`], and when the kernel tells of a process
    /// exec or exit or of a change at a watched path, until `stop` is
    /// raised or the drain loop goes away; returns the attach latencies
    /// and the process notices (read, full scans of /proc).
    pub fn run(
        mut self,
        program: &Mutex<Program>,
        tx: UnboundedSender<Msg>,
        stop: StopSignal,
    ) -> (Vec<u64>, Option<(u64, u64)>) {
        let out = Out {
            tx: &tx,
            stop: &stop,
            verbose: self.verbose,
        };
        let _ = self.note_cpu(&out);
        loop {
            let woke = stop.wait(
                self.every(),
                self.procs.as_ref().map(|p| p.as_fd()),
                self.paths.as_ref().map(|p| p.fd()),
            );
            if woke.stop {
                break;
            }
            if woke.paths {
                if let Some(w) = self.paths.as_mut() {
                    w.changed();
                }
            }
            // Notices in a burst are taken together.
            let since = self.last.elapsed();
            if since < Self::LEAST {
                std::thread::sleep(Self::LEAST - since);
            }
            self.last = Instant::now();
            let out = Out {
                tx: &tx,
                stop: &stop,
                verbose: self.verbose,
            };
            if self.tick(program, &out).is_err() {
                break;
            }
            if self
                .cpu_noted
                .is_none_or(|t| t.elapsed() >= Self::CPU_EVERY)
            {
                let _ = self.note_cpu(&out);
            }
            self.watch_paths();
        }
        // The drain loop takes messages until this thread is gone.
        let _ = self.note_cpu(&Out {
            tx: &tx,
            stop: &stop,
            verbose: self.verbose,
        });
        let notices = self.procs.as_ref().map(|p| (p.notices, p.full_scans));
        (self.latencies_ns, notices)
    }

    /// Notes the CPU time of every traced process.
    fn note_cpu(&mut self, out: &Out<'_>) -> Result<(), Stopped> {
        self.cpu_noted = Some(Instant::now());
        for t in self.traced.iter().filter(|t| !t.released) {
            for &pid in &t.pids {
                note_cpu_of(pid, &t.catalogue.binary.name, out)?;
            }
        }
        Ok(())
    }

    /// Every process's executable: from the notices, or all of /proc.
    fn running(&mut self) -> Vec<RunningExe> {
        match self.procs.as_mut() {
            Some(p) => p.running(),
            None => running_executables(),
        }
    }

    /// Looks at the processes and paths, notes what changed and attaches
    /// to new files. A binary that cannot be traced is noted and recording
    /// goes on.
    fn tick(&mut self, program: &Mutex<Program>, out: &Out<'_>) -> Result<(), Stopped> {
        let running = self.running();
        self.processes(&running, out)?;
        self.replacements(&running, program, out)?;
        if self.discover {
            self.discovery(&running, program, out)?;
        }
        self.release_idle(program);
        Ok(())
    }

    /// A file no process runs any more and that cannot start again
    /// (replaced at its path, deleted, or a --pid target) needs its probes
    /// no longer. One that can (a kubelet stopped for a restart) keeps
    /// them: its next process is traced from its first instruction. With
    /// per-site links the last [`KEEP_IDLE_FILES`] such files keep theirs
    /// too (harmless: no process maps them) until the end, see
    /// [`Supervisor::new`].
    fn release_idle(&mut self, program: &Mutex<Program>) {
        let idle: Vec<usize> = (0..self.traced.len())
            .filter(|&i| {
                let t = &self.traced[i];
                // Deleted: no link to the inode is left (we hold it open).
                let deleted = t
                    .file
                    .as_ref()
                    .and_then(|f| f.metadata().ok())
                    .is_some_and(|m| m.nlink() == 0);
                !t.released
                    && t.rewritten.is_none()
                    && t.pids.is_empty()
                    && (t.retired || deleted || (!t.only.is_empty() && t.last_exit_ns.is_some()))
            })
            .collect();
        for &i in idle.iter().take(idle.len().saturating_sub(self.keep_idle)) {
            let t = &mut self.traced[i];
            let r = lock(program).release_group(t.group);
            if let Err(e) = r {
                log::warn!("releasing the probes of {}: {e:#}", t.shown.display());
            }
            t.released = true;
            t.file = None;
        }
    }

    /// Notes processes started and exited since the last tick.
    fn processes(&mut self, running: &[RunningExe], out: &Out<'_>) -> Result<(), Stopped> {
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
                // Its window starts here (the start-up's CPU is before it).
                notes.extend(cpu_note(now, pid, name));
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
            out.note(n)?;
        }
        Ok(())
    }

    /// Files rewritten in place, and watched paths that name another file
    /// now.
    fn replacements(
        &mut self,
        running: &[RunningExe],
        program: &Mutex<Program>,
        out: &Out<'_>,
    ) -> Result<(), Stopped> {
        for i in 0..self.traced.len() {
            self.rewritten_in_place(i, running, program, out)?;
            let Some(path) = self.traced[i].watch.clone() else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                // Gone for now (mid-upgrade): look again next tick.
                continue;
            };
            let key = (meta.dev(), meta.ino());
            if key == self.traced[i].key {
                continue;
            }
            let stamp = stamp_of(&meta);
            if self.failed.contains(&(key, stamp)) {
                continue;
            }
            self.replaced(i, &path, key, running, program, out)?;
        }
        Ok(())
    }

    /// The watched path of `traced[i]` names file `key` now.
    fn replaced(
        &mut self,
        i: usize,
        path: &Path,
        key: FileKey,
        running: &[RunningExe],
        program: &Mutex<Program>,
        out: &Out<'_>,
    ) -> Result<(), Stopped> {
        let seen = mono_now();
        let catalogue = self.traced[i].catalogue;
        let name = catalogue.binary.name.clone();
        let mut n = Note::new(seen, NoteKind::BinaryReplaced, &name);
        n.path = path.display().to_string();
        out.note(n)?;
        let pids = pids_of(running, key, &[]);
        // A file traced before (A → B → A): its probes again if they are
        // still attached; a second set on it would count every call twice.
        let before = self.traced.iter().position(|t| {
            t.key == key && std::ptr::eq(t.catalogue, catalogue) && t.rewritten.is_none()
        });
        let group = match before {
            Some(j) if !self.traced[j].released => None,
            _ => {
                let Some((file, stamp)) = open_key(path, key) else {
                    // Replaced again meanwhile: next tick.
                    return Ok(());
                };
                let binary = match GoBinary::open(&fd_path(&file)) {
                    Ok(b) => b,
                    Err(e) => {
                        self.failed.push((key, stamp));
                        return self.attach_failed(&name, path, &anyhow::Error::new(e), out);
                    }
                };
                match self.attach_file(program, out, catalogue, &binary, path, &pids)? {
                    Ok(group) => Some((group, file, stamp)),
                    Err(Failure::Resolve(e) | Failure::Attach(e)) => {
                        self.failed.push((key, stamp));
                        return self.attach_failed(&name, path, &e, out);
                    }
                }
            }
        };
        let attached = mono_now();
        let old = &mut self.traced[i];
        // Not traced from the replacement being seen, or from the old
        // process's exit if none ran since.
        let from = match old.last_exit_ns {
            Some(exit) if old.pids.is_empty() => exit.min(seen),
            _ => seen,
        };
        old.watch = None;
        old.retired = true;
        let t = match (before, group) {
            (Some(j), None) => {
                let t = &mut self.traced[j];
                t.retired = false;
                t.watch = Some(path.to_path_buf());
                t.shown = path.to_path_buf();
                j
            }
            (before, Some((group, file, stamp))) => {
                let t = Traced::new(
                    Initial {
                        catalogue,
                        key,
                        file: Some(file),
                        shown: path.to_path_buf(),
                        watch: Some(path.to_path_buf()),
                        only: Vec::new(),
                        group,
                    },
                    pids,
                    Some(stamp),
                );
                match before {
                    Some(j) => {
                        self.traced[j] = t;
                        j
                    }
                    None => {
                        self.traced.push(t);
                        self.traced.len() - 1
                    }
                }
            }
            (None, None) => return Ok(()),
        };
        self.reattached(out, t, seen, attached, attached.saturating_sub(from))
    }

    /// `traced[t]` is attached anew (or again): noted with how long
    /// attaching took once the file was seen (latency) and how long its
    /// path went untraced (gap).
    fn reattached(
        &mut self,
        out: &Out<'_>,
        t: usize,
        seen: u64,
        attached: u64,
        gap_ns: u64,
    ) -> Result<(), Stopped> {
        let t = &self.traced[t];
        let mut n = Note::new(attached, NoteKind::Reattached, &t.catalogue.binary.name);
        n.path = t.watch.as_deref().unwrap_or(&t.shown).display().to_string();
        n.latency_ns = Some(attached - seen);
        n.gap_ns = Some(gap_ns);
        self.latencies_ns.push(attached - seen);
        out.note(n)
    }

    fn attach_failed(
        &self,
        name: &str,
        path: &Path,
        e: &anyhow::Error,
        out: &Out<'_>,
    ) -> Result<(), Stopped> {
        if out.stopping() {
            return Err(Stopped);
        }
        let mut n = Note::new(mono_now(), NoteKind::AttachFailed, name);
        n.path = path.display().to_string();
        n.detail = format!("{e:#}");
        out.note(n)
    }

    /// The file of `traced[i]`, held open, may have been rewritten (`cp new
    /// kubelet` over a stopped kubelet writes into the same inode): its
    /// probes sit at offsets of the old code, where they would break the
    /// new one's instructions. They are removed at once, and attached anew
    /// once the file has stopped changing for a tick.
    fn rewritten_in_place(
        &mut self,
        i: usize,
        running: &[RunningExe],
        program: &Mutex<Program>,
        out: &Out<'_>,
    ) -> Result<(), Stopped> {
        let t = &mut self.traced[i];
        let Some(meta) = t.file.as_ref().and_then(|f| f.metadata().ok()) else {
            return Ok(());
        };
        let stamp = stamp_of(&meta);
        let name = t.catalogue.binary.name.clone();
        let shown = t.watch.clone().unwrap_or_else(|| t.shown.clone());
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
                    let r = lock(program).release_group_now(group);
                    if let Err(e) = r {
                        log::warn!("removing the probes of {}: {e:#}", shown.display());
                    }
                }
                let mut n = Note::new(seen, NoteKind::BinaryReplaced, &name);
                n.path = shown.display().to_string();
                n.detail = "rewritten in place: its probes were removed".into();
                out.note(n)
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
                let key = t.key;
                let pids = pids_of(running, key, &[]);
                let binary = t
                    .file
                    .as_ref()
                    .map(|f| GoBinary::open(&fd_path(f)).map_err(anyhow::Error::new));
                let res = match binary {
                    Some(Ok(b)) => self.attach_file(program, out, catalogue, &b, &shown, &pids)?,
                    Some(Err(e)) => Err(Failure::Resolve(e)),
                    None => return Ok(()),
                };
                match res {
                    Ok(group) => {
                        let attached = mono_now();
                        let t = &mut self.traced[i];
                        t.group = group;
                        t.released = false;
                        t.retired = false;
                        t.rewritten = None;
                        t.pids = pids;
                        self.reattached(out, i, seen, attached, attached - seen)
                    }
                    Err(Failure::Resolve(e) | Failure::Attach(e)) => {
                        // Tried again when the file changes.
                        self.failed.push((key, stamp));
                        self.attach_failed(&name, &shown, &e, out)
                    }
                }
            }
        }
    }

    /// Discovery: a kubelet or containerd file that started running since
    /// (in the host's mount namespace), or one traced before whose probes
    /// were released and that runs again.
    fn discovery(
        &mut self,
        running: &[RunningExe],
        program: &Mutex<Program>,
        out: &Out<'_>,
    ) -> Result<(), Stopped> {
        for exe in running.iter().filter(|e| e.host) {
            if self.not_ours.contains(&exe.key) {
                continue;
            }
            let before = self.traced.iter().position(|t| t.key == exe.key);
            if before
                .is_some_and(|j| !self.traced[j].released || self.traced[j].rewritten.is_some())
            {
                continue;
            }
            if self
                .retry
                .get(&exe.key)
                .is_some_and(|r| Instant::now() < r.at)
            {
                continue;
            }
            let seen = mono_now();
            // Held from here: the process may exit, the file stays. Not
            // openable: gone already, and nothing is known of the file.
            let Some((file, stamp)) = open_key(&exe.proc_path(), exe.key) else {
                continue;
            };
            let path = fd_path(&file);
            let by_name = exe.named_like(self.cat);
            if by_name.is_empty() && !may_be_ours(&path, self.cat) {
                self.not_ours.insert(exe.key);
                continue;
            }
            let binary = match GoBinary::open(&path) {
                Ok(b) => b,
                Err(e) if !by_name.is_empty() => {
                    let name = by_name[0].binary.name.clone();
                    self.not_ours.insert(exe.key);
                    self.attach_failed(&name, &exe.shown, &anyhow::Error::new(e), out)?;
                    continue;
                }
                Err(_) => {
                    self.not_ours.insert(exe.key);
                    continue;
                }
            };
            let cats = if by_name.is_empty() {
                recognising(self.cat, &binary)
            } else {
                by_name
            };
            if cats.is_empty() {
                self.not_ours.insert(exe.key);
                continue;
            }
            if out.stopping() {
                return Err(Stopped);
            }
            let pids: BTreeSet<u32> = exe.pids.iter().copied().collect();
            // Watch the path it was started from, when we can see it.
            let watch = exe.watchable_path();
            for catalogue in cats {
                let name = catalogue.binary.name.clone();
                match self.attach_file(program, out, catalogue, &binary, &exe.shown, &pids)? {
                    Ok(group) => {
                        self.retry.remove(&exe.key);
                        let attached = mono_now();
                        self.latencies_ns.push(attached - seen);
                        let mut n = Note::new(attached, NoteKind::BinaryFound, &name);
                        n.path = exe.shown.display().to_string();
                        n.pid = pids.first().copied();
                        n.latency_ns = Some(attached - seen);
                        let t = Traced::new(
                            Initial {
                                catalogue,
                                key: exe.key,
                                file: file.try_clone().ok(),
                                shown: exe.shown.clone(),
                                watch: watch.clone(),
                                only: Vec::new(),
                                group,
                            },
                            pids.clone(),
                            Some(stamp),
                        );
                        match self
                            .traced
                            .iter()
                            .position(|t| t.key == exe.key && std::ptr::eq(t.catalogue, catalogue))
                        {
                            Some(j) => self.traced[j] = t,
                            None => self.traced.push(t),
                        }
                        out.note(n)?;
                    }
                    Err(Failure::Resolve(e)) => {
                        self.not_ours.insert(exe.key);
                        self.attach_failed(&name, &exe.shown, &e, out)?;
                    }
                    Err(Failure::Attach(e)) => {
                        // The kernel said no (out of memory, a process
                        // gone mid-attach, ...): not a verdict on the file.
                        let delay = self
                            .retry
                            .get(&exe.key)
                            .map_or(RETRY_FIRST, |r| (r.delay * 2).min(RETRY_MAX));
                        self.retry.insert(
                            exe.key,
                            Retry {
                                at: Instant::now() + delay,
                                delay,
                            },
                        );
                        let e = e.context(format!("trying again in {delay:?}"));
                        self.attach_failed(&name, &exe.shown, &e, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves `catalogue` in `binary` (opened through a held file, shown
    /// as `shown`), appends its probes and attaches them to every process
    /// of the file.
    fn attach_file(
        &mut self,
        program: &Mutex<Program>,
        out: &Out<'_>,
        catalogue: &BinaryCatalogue,
        binary: &GoBinary,
        shown: &Path,
        pids: &BTreeSet<u32>,
    ) -> Result<Result<u32, Failure>, Stopped> {
        let first = self.next_probe;
        let t0 = Instant::now();
        let prepared = (|| -> anyhow::Result<_> {
            let pids: Vec<u32> = pids.iter().copied().collect();
            let r = plan::resolve_target(catalogue, binary, shown, &pids)?;
            log::debug!("{}: resolved in {:?}", shown.display(), t0.elapsed());
            // Every process of the file: the uprobes go on its inode.
            let target = plan::TargetBinary {
                pids: Vec::new(),
                ..r.target
            };
            let (new, specs, sites) = plan::plan_from(&[target], self.plan, first)?;
            let record = BinaryRecord {
                first_probe: Some(first),
                probe_count: Some(new.len() as u32),
                ..r.record
            };
            Ok((record, new, specs, sites))
        })();
        let (record, new, specs, sites) = match prepared {
            Ok(p) => p,
            Err(e) => return Ok(Err(Failure::Resolve(e))),
        };
        if out.stopping() {
            return Err(Stopped);
        }
        self.next_probe += new.len() as u32;
        // The probe table first, so that every event of these probes
        // comes after it.
        out.binary(BinaryAdded {
            binary: record,
            probes: new,
        })?;
        let group = self.next_group;
        self.next_group += 1;
        let attached = lock(program).attach_group(group, &specs, &sites);
        match attached {
            Ok(_) => {
                log::debug!(
                    "{}: {} sites attached in {:?}",
                    shown.display(),
                    sites.len(),
                    t0.elapsed()
                );
                Ok(Ok(group))
            }
            Err(_) if out.stopping() => Err(Stopped),
            Err(e) => Ok(Err(Failure::Attach(e))),
        }
    }
}

/// The program, also when a thread panicked holding it (its state is a
/// list of links: still good to detach).
pub fn lock(program: &Mutex<Program>) -> std::sync::MutexGuard<'_, Program> {
    program.lock().unwrap_or_else(|e| e.into_inner())
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
