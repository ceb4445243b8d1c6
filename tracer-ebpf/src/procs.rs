//! Process notices for the supervisor: `sched_process_exec` (a process now
//! runs another executable) and `sched_process_exit` (a process ends), so
//! that userspace looks at /proc/PID only for the processes that changed,
//! not at every process four times a second.
//!
//! A program of its own, apart from the uprobe program, with a ring of its
//! own: a storm of probe hits never crowds out a notice, and a notice never
//! takes room from probe events.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint},
    maps::{Array, PerCpuArray, RingBuf},
    programs::RawTracePointContext,
};
use podtrace_common::{ProcNote, PROC_EXEC, PROC_EXIT};

/// Notices to userspace (read a few times a second: 8 k notices of room).
#[map]
static PROCS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// Slot 0: notices lost to a full ring (userspace then reads all of /proc).
#[map]
static PROCS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: when a notice last woke the collector (ktime ns).
#[map]
static PROCS_WOKE: Array<u64> = Array::with_max_entries(1, 0);

/// At most one wake-up per this long: a node exec'ing hundreds of
/// processes a second wakes the collector ten times a second, a lone
/// kubelet (re)start at once.
const WAKE_EVERY_NS: u64 = 100_000_000;

/// Whether this notice wakes the collector (and when it last did).
#[inline(always)]
fn wake() -> u64 {
    // SAFETY: reads the monotonic clock.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(last) = PROCS_WOKE.get_ptr_mut(0) {
        // SAFETY: a valid slot of an array map; two CPUs racing here at
        // worst both wake the collector.
        unsafe {
            if now.wrapping_sub(*last) >= WAKE_EVERY_NS {
                *last = now;
                return BPF_RB_FORCE_WAKEUP as u64;
            }
        }
    }
    BPF_RB_NO_WAKEUP as u64
}

#[inline(always)]
fn notice(kind: u32, pid: u32) {
    match PROCS.reserve::<ProcNote>(0) {
        Some(mut slot) => {
            slot.write(ProcNote { pid, kind });
            slot.submit(wake());
        }
        None => {
            if let Some(c) = PROCS_LOST.get_ptr_mut(0) {
                // SAFETY: per-CPU slot, only this CPU writes it while we run.
                unsafe { *c += 1 };
            }
        }
    }
}

/// After a successful execve, in the process that made it. Raw
/// tracepoints attach by name (no tracefs needed, which a container may
/// not have mounted) and the program reads no argument.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn podtrace_exec(_ctx: RawTracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    notice(PROC_EXEC, tgid);
    0
}

/// A task exits; only the main thread's exit is the process's (threads of
/// a Go program come and go).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn podtrace_exit(_ctx: RawTracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    if tgid == tid {
        notice(PROC_EXIT, tgid);
    }
    0
}
