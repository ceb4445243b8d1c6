//! Which processes run which executable, kept up to date by the kernel's
//! word instead of by reading all of /proc: the eBPF tracepoints on
//! `sched_process_exec` and `sched_process_exit` (tracer-ebpf's procs.rs)
//! put each process start and end in a small ring; [`ProcWatch::running`]
//! looks at /proc/PID/exe only for the processes those name.
//!
//! Why: the supervisor looked at every process four times a second (a
//! readdir of /proc, a readlink and a stat per process): on the soak's
//! machine 18 % of the collector's CPU, and more on a node running hundreds
//! of processes, for nothing most of the time. A full scan still runs when
//! notices were lost (the ring was full) and every [`FULL_SCAN_EVERY`],
//! as a safety net; where the tracepoints cannot be attached, the
//! supervisor scans /proc every tick as before.
//!
//! Used by the supervisor; knows nothing of catalogues or probes.

use std::{
    collections::HashMap,
    os::{
        fd::{AsFd, BorrowedFd},
        unix::fs::MetadataExt as _,
    },
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::RawTracePoint,
    Ebpf,
};
use podtrace_common::{ProcNote, PROC_EXEC, PROC_EXIT};

use super::discover::{host_mount_ns, mount_ns, running_executables, FileKey, RunningExe};

/// Longest time between two full scans of /proc (the notices make them
/// unnecessary; this bounds what a missed one could cost).
pub const FULL_SCAN_EVERY: Duration = Duration::from_secs(30);

/// Suffix the kernel adds to /proc/PID/exe's link text for a file removed
/// or replaced.
const DELETED: &str = " (deleted)";

/// What /proc/PID/exe says of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exe {
    shown: PathBuf,
    deleted: bool,
    key: FileKey,
    /// In the host's mount namespace (see [`RunningExe::host`]).
    host: bool,
}

fn exe_of(pid: u32, host_ns: Option<u64>) -> Option<Exe> {
    let exe = format!("/proc/{pid}/exe");
    let link = std::fs::read_link(&exe).ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let text = link.to_string_lossy();
    let (shown, deleted) = match text.strip_suffix(DELETED) {
        Some(t) => (PathBuf::from(t), true),
        None => (link.clone(), false),
    };
    // Unreadable: taken as the host's, as a full scan does.
    let host = host_ns.is_none_or(|h| mount_ns(&pid.to_string()).is_none_or(|m| m == h));
    Some(Exe {
        shown,
        deleted,
        key: (meta.dev(), meta.ino()),
        host,
    })
}

/// The process table, fed by the exec/exit notices.
pub struct ProcWatch {
    ring: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
    by_pid: HashMap<u32, Exe>,
    /// [`RunningExe`]s of `by_pid`, rebuilt when it changed.
    table: Vec<RunningExe>,
    dirty: bool,
    last_full: Instant,
    me: u32,
    /// The host's mount namespace (None: unreadable).
    host_ns: Option<u64>,
    /// Full scans so far (the first, at start, included).
    pub full_scans: u64,
    /// Exec and exit notices read so far.
    pub notices: u64,
}

impl AsFd for ProcWatch {
    /// The notices' ring: readable when a notice woke it (at most ten
    /// times a second, see tracer-ebpf's procs.rs).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl ProcWatch {
    /// Loads and attaches the exec/exit tracepoint programs of `ebpf`,
    /// takes their maps and reads /proc once.
    pub fn start(ebpf: &mut Ebpf) -> Result<ProcWatch> {
        for (prog, event) in [
            ("podtrace_exec", "sched_process_exec"),
            ("podtrace_exit", "sched_process_exit"),
        ] {
            let p: &mut RawTracePoint = ebpf
                .program_mut(prog)
                .with_context(|| format!("eBPF object has no {prog} program"))?
                .try_into()?;
            p.load().with_context(|| format!("loading {prog}"))?;
            p.attach(event)
                .with_context(|| format!("attaching {prog} to the {event} tracepoint"))?;
        }
        let ring = RingBuf::try_from(ebpf.take_map("PROCS").context("no PROCS map")?)?;
        let lost =
            PerCpuArray::try_from(ebpf.take_map("PROCS_LOST").context("no PROCS_LOST map")?)?;
        let mut w = ProcWatch {
            ring,
            lost,
            lost_seen: 0,
            by_pid: HashMap::new(),
            table: Vec::new(),
            dirty: true,
            last_full: Instant::now(),
            me: std::process::id(),
            host_ns: host_mount_ns(),
            full_scans: 0,
            notices: 0,
        };
        w.full_scan();
        Ok(w)
    }

    fn lost_total(&self) -> u64 {
        self.lost
            .get(&0, 0)
            .map(|v| v.iter().copied().sum())
            .unwrap_or(0)
    }

    /// Reads all of /proc into the table (the notices since are in the
    /// ring and applied after: an exec seen twice is harmless).
    fn full_scan(&mut self) {
        self.by_pid.clear();
        for r in running_executables() {
            for &pid in &r.pids {
                self.by_pid.insert(
                    pid,
                    Exe {
                        shown: r.shown.clone(),
                        deleted: r.deleted,
                        key: r.key,
                        host: r.host,
                    },
                );
            }
        }
        self.last_full = Instant::now();
        self.full_scans += 1;
        self.dirty = true;
    }

    /// Applies the notices that arrived. Returns whether any did.
    fn apply_notices(&mut self) -> bool {
        let mut any = false;
        while let Some(item) = self.ring.next() {
            if item.len() < ProcNote::SIZE {
                continue;
            }
            // SAFETY: the record holds at least size_of::<ProcNote>() bytes
            // written by our eBPF program as a ProcNote; read_unaligned
            // copes with alignment and every bit pattern is a valid one.
            let n: ProcNote = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            any = true;
            self.notices += 1;
            if n.pid == self.me {
                continue;
            }
            match n.kind {
                PROC_EXEC => match exe_of(n.pid, self.host_ns) {
                    Some(e) => {
                        self.by_pid.insert(n.pid, e);
                    }
                    // Gone already (a short-lived process).
                    None => {
                        self.by_pid.remove(&n.pid);
                    }
                },
                PROC_EXIT => {
                    self.by_pid.remove(&n.pid);
                }
                _ => {}
            }
        }
        self.dirty |= any;
        any
    }

    /// Every process's executable, grouped by file and in pid order, as
    /// [`running_executables`] gives them, from the notices since the last
    /// call (and a full scan when notices were lost or it is due).
    pub fn running(&mut self) -> Vec<RunningExe> {
        let lost = self.lost_total();
        if lost != self.lost_seen || self.last_full.elapsed() >= FULL_SCAN_EVERY {
            self.lost_seen = lost;
            // Drop what is queued: the scan sees the state after it.
            while self.ring.next().is_some() {}
            self.full_scan();
        }
        self.apply_notices();
        if self.dirty {
            self.table = group(&self.by_pid);
            self.dirty = false;
        }
        self.table
            .iter()
            .map(|r| RunningExe {
                shown: r.shown.clone(),
                deleted: r.deleted,
                key: r.key,
                pids: r.pids.clone(),
                host: r.host,
            })
            .collect()
    }
}

/// The table grouped by file, files in the order of their lowest pid, each
/// file's pids in order (as a scan of /proc in pid order gives them).
fn group(by_pid: &HashMap<u32, Exe>) -> Vec<RunningExe> {
    let mut pids: Vec<u32> = by_pid.keys().copied().collect();
    pids.sort_unstable();
    let mut out: Vec<RunningExe> = Vec::new();
    let mut at: HashMap<FileKey, usize> = HashMap::new();
    for pid in pids {
        let e = &by_pid[&pid];
        match at.get(&e.key) {
            Some(&i) => {
                out[i].pids.push(pid);
                out[i].host |= e.host;
            }
            None => {
                at.insert(e.key, out.len());
                out.push(RunningExe {
                    shown: e.shown.clone(),
                    deleted: e.deleted,
                    key: e.key,
                    pids: vec![pid],
                    host: e.host,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_by_file_in_pid_order() {
        let e = |n: &str, ino| Exe {
            shown: PathBuf::from(n),
            deleted: false,
            key: (1, ino),
            host: true,
        };
        let by_pid = HashMap::from([(30, e("/a", 1)), (10, e("/b", 2)), (20, e("/a", 1))]);
        let g = group(&by_pid);
        let got: Vec<(String, Vec<u32>)> = g
            .iter()
            .map(|r| (r.shown.display().to_string(), r.pids.clone()))
            .collect();
        assert_eq!(
            got,
            vec![("/b".into(), vec![10]), ("/a".into(), vec![20, 30])]
        );
    }

    /// /proc/self/exe read as the notices have it: the test binary itself.
    #[test]
    fn exe_of_reads_proc() {
        let me = exe_of(std::process::id(), host_mount_ns()).expect("own exe");
        assert!(me.host);
        let here = std::env::current_exe().expect("current exe");
        assert_eq!(me.shown, here);
        assert!(!me.deleted);
        assert!(exe_of(u32::MAX, None).is_none());
    }
}

/// A process's user + system CPU time so far, from /proc/PID/stat (fields
/// 14 and 15, in clock ticks; the time of its exited threads included).
/// None if it is gone or the line does not parse.
pub fn cpu_time_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks_to_ns(ticks, clock_ticks()))
}

/// The kernel's USER_HZ (100 on every Linux that podtrace runs on).
fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

fn ticks_to_ns(ticks: u64, per_s: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000) / per_s
}

/// utime + stime of a /proc/PID/stat line. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses: fields are
/// counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 12th here.
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_name_with_spaces_and_parentheses() {
        let line = "4242 (kube let) (x)) S 1 4242 4242 0 -1 4194560 5000 0 12 0 731 129 0 0 20 0 40 0 900 0 0";
        assert_eq!(parse_cpu_ticks(line), Some(860));
        assert_eq!(parse_cpu_ticks("4242 (kubelet) S 1"), None);
        assert_eq!(ticks_to_ns(860, 100), 8_600_000_000);
    }

    #[test]
    fn our_own_cpu_time_grows() {
        let me = std::process::id();
        let before = cpu_time_ns(me);
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_time_ns(me);
        assert!(before.is_some() && after > before, "{before:?} → {after:?}");
    }
}
