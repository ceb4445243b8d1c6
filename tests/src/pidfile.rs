//! Pid files that name a process by pid and start time, so that a stale
//! file never names a recycled pid: the cluster's daemons and the
//! collector, cleaned up by a later run if a test was killed. Also the
//! harness's one reader of /proc/PID/stat.

use std::path::Path;

/// The fields of /proc/PID/stat from the state (field 3) on: the command
/// name before them is in parentheses and may itself hold spaces and
/// parentheses, so they are counted after its last `)`.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// A process's start time (clock ticks since boot, /proc/PID/stat field
/// 22): with the pid, who it is (a pid alone may have been reused).
pub fn start_time(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    let state = f.first()?;
    if state == "Z" || state == "X" {
        return None;
    }
    f.get(22 - 3)?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields start at the state, whatever the command name holds:
    /// field 4 is our parent, field 22 our start time.
    #[test]
    fn stat_fields_start_at_the_state() {
        let me = std::process::id();
        let f = stat_fields(me).expect("our own stat");
        assert!(matches!(f[0].as_str(), "R" | "S"), "{f:?}");
        assert_eq!(
            f[4 - 3].parse::<u32>().ok(),
            Some(std::os::unix::process::parent_id())
        );
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert!(crate::node::cpu_ms(me).is_some());
    }
}
