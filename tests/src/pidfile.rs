//! Pid files that name a process by pid and start time, so that a stale
//! file never names a recycled pid: the cluster's daemons and the
//! collector, cleaned up by a later run if a test was killed.

use std::path::Path;

/// A process's start time (clock ticks since boot, /proc/PID/stat field
/// 22): with the pid, who it is (a pid alone may have been reused).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_whitespace();
    // After the command: state (3), ppid (4), …, starttime (22).
    let state = f.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    f.nth(18)?.parse().ok()
}

/// Writes `PID STARTTIME` to `path`.
pub fn write_pid_file(path: &Path, pid: u32) {
    let st = start_time(pid).unwrap_or(0);
    std::fs::write(path, format!("{pid} {st}\n"))
        .unwrap_or_else(|e| panic!("writing pid file {}: {e}", path.display()));
}

/// The process a pid file names, if it still runs (same pid, same start
/// time).
pub fn pid_file_process(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let st: u64 = it.next()?.parse().ok()?;
    (pid > 1 && start_time(pid) == Some(st)).then_some(pid)
}
