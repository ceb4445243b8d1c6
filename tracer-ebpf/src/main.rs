//! podtrace's eBPF programs: one generic uprobe for Go functions (here),
//! and process exec/exit notices for the supervisor ([`procs`]).
//!
//! The uprobe is attached many times, at function entries (the prologue's stack-check
//! jump, which x86 uprobes emulate instead of single-stepping) and at every RET
//! of a function (never kernel return probes: they crash Go when stacks move). The attach
//! cookie selects a `ProbeSpec` that says which probe this is and which
//! registers/memory to capture, so the catalogue lives in userspace as data.
#![no_std]
#![no_main]

// Process exec/exit notices for the supervisor: separate programs and maps.
mod procs;

use aya_ebpf::{
    bindings::{
        pt_regs, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE,
    },
    helpers::{
        bpf_get_attach_cookie, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        bpf_probe_read_user_buf,
    },
    macros::{map, uprobe},
    maps::{Array, PerCpuArray, RingBuf},
    programs::ProbeContext,
};
use aya_log_ebpf::warn;
use podtrace_common::{
    cap, reg, Capture, Event, ProbeSpec, KIND_ENTRY, MAX_CAPTURES, MAX_DEREFS, MAX_SPECS, STR_CAP,
};

// Capture failures and truncations are told through aya-log (which probe,
// which capture, which address). Its macros test aya-log's own read-only
// global AYA_LOG_LEVEL first; userspace sets it to 0 unless `podtrace record
// --ebpf-log`, and the verifier then drops the logging code: off costs at
// most that one load.

/// Probe instructions, indexed by attach cookie.
#[map]
static SPECS: Array<ProbeSpec> = Array::with_max_entries(MAX_SPECS, 0);

/// Events to userspace. Size set by userspace at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Slot 0: events lost because the ring buffer was full. Slot 1: hits.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// The program for per-site perf-event links (kernels without
/// uprobe_multi, or whose pid filter is unreliable).
#[uprobe]
pub fn podtrace_go(ctx: ProbeContext) -> u32 {
    let _ = try_probe(&ctx);
    0
}

/// The same body as a `uprobe.multi` program: one link per traced file
/// (and process) holds every site, each with its cookie, and detaches in
/// one kernel grace period instead of one per site. A program loaded for
/// uprobe_multi cannot be attached as a perf-event uprobe (EINVAL), hence
/// two programs; userspace loads only the one it uses.
#[uprobe(multi)]
pub fn podtrace_go_multi(ctx: ProbeContext) -> u32 {
    let _ = try_probe(&ctx);
    0
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn reg_value(regs: &pt_regs, r: u8) -> u64 {
    match r {
        reg::RAX => regs.rax,
        reg::RBX => regs.rbx,
        reg::RCX => regs.rcx,
        reg::RDI => regs.rdi,
        reg::RSI => regs.rsi,
        reg::R8 => regs.r8,
        reg::R9 => regs.r9,
        reg::R10 => regs.r10,
        reg::R11 => regs.r11,
        reg::RDX => regs.rdx,
        reg::RSP => regs.rsp,
        reg::R14 => regs.r14,
        _ => 0,
    }
}

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user copes with any address; failure is an Err.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

// Inlined into both programs: a BPF-to-BPF call would cost a frame per
// hit and share the 512-byte stack with the register copy below.
#[inline(always)]
fn try_probe(ctx: &ProbeContext) -> Option<()> {
    bump(1);
    // SAFETY: the helper only reads the attach cookie of the running program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.regs as *mut _) } as u32;
    let spec = SPECS.get(cookie)?;
    // A copy on the stack: the verifier refuses loads through a context
    // pointer the compiler has moved (`ctx + 8`), which it does once the
    // program holds enough live values (the log statements).
    // SAFETY: a uprobe's context is a valid pt_regs for the whole invocation.
    let regs: pt_regs = unsafe { core::ptr::read(ctx.regs) };
    let regs = &regs;

    let Some(mut slot) = EVENTS.reserve::<Event>(0) else {
        bump(0);
        return None;
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer record of
    // size_of::<Event>(); all writes below stay inside it.
    unsafe {
        let pid_tgid = bpf_get_current_pid_tgid();
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = pid_tgid as u32;
        (*ev).g = regs.r14;
        (*ev).sp = regs.rsp;
        (*ev).ret_addr = read_u64(regs.rsp).unwrap_or(0);
        (*ev).goid = if spec.goid_offset != 0 {
            read_u64(regs.r14 + spec.goid_offset as u64).unwrap_or(0)
        } else {
            0
        };
        (*ev).probe_id = spec.probe_id;
        (*ev).kind = spec.kind;
        (*ev).truncated = 0;
        (*ev).failed = 0;
        (*ev)._pad = 0;
        for i in 0..MAX_CAPTURES {
            (*ev).vals[i] = 0;
            (*ev).strs[i][0] = 0;
            let c = &spec.captures[i];
            if c.kind == cap::NONE {
                continue;
            }
            match capture(regs, c, &mut (*ev).vals[i], &mut (*ev).strs[i]) {
                Err(f) => {
                    (*ev).failed |= 1 << i;
                    warn!(
                        ctx,
                        "probe {} {} capture {}: read of {} bytes at 0x{:x} failed (step {} of the path)",
                        spec.probe_id,
                        site_name(spec.kind),
                        i,
                        f.len,
                        f.addr,
                        f.step
                    );
                }
                Ok(()) => {
                    let len = (*ev).vals[i];
                    if (c.kind == cap::STR_HDR || c.kind == cap::STR_REGS) && len > STR_CAP as u64 {
                        (*ev).truncated |= 1 << i;
                        warn!(
                            ctx,
                            "probe {} {} capture {}: string of {} bytes cut to {}",
                            spec.probe_id,
                            site_name(spec.kind),
                            i,
                            len,
                            STR_CAP
                        );
                    }
                }
            }
        }
    }
    slot.submit(wakeup_flag());
    Some(())
}

/// Submit without waking the collector (a wake-up costs the traced program
/// 1–13 µs here), except once the ring is an eighth full: the collector
/// sleeps up to a second between drains while few events arrive, and a
/// burst must not fill the ring meanwhile. Two ring queries: a few ns.
#[inline(always)]
fn wakeup_flag() -> u64 {
    let size = EVENTS.query(BPF_RB_RING_SIZE as u64);
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > size / 8 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn site_name(kind: u8) -> &'static str {
    if kind == KIND_ENTRY {
        "entry"
    } else {
        "exit"
    }
}

/// A read that failed: where, how long, and at which step (0.. the pointer
/// hops of the capture's path, then the final read).
struct Fail {
    addr: u64,
    len: u64,
    step: u8,
}

#[inline(always)]
fn read_at(addr: u64, step: u8) -> Result<u64, Fail> {
    read_u64(addr).ok_or(Fail { addr, len: 8, step })
}

/// Follows `c`'s pointer chain and stores the result in `val` (and `buf` for strings).
#[inline(always)]
fn capture(
    regs: &pt_regs,
    c: &Capture,
    val: &mut u64,
    buf: &mut [u8; STR_CAP],
) -> Result<(), Fail> {
    let mut v = reg_value(regs, c.reg);
    for d in 0..MAX_DEREFS {
        if d as u8 >= c.nderef {
            break;
        }
        v = read_at(v.wrapping_add(c.offs[d] as u64), d as u8)?;
    }
    let step = c.nderef;
    let last = c.offs[(c.nderef as usize).min(MAX_DEREFS)] as u64;
    let (ptr, len) = match c.kind {
        cap::U64 => {
            *val = v;
            return Ok(());
        }
        cap::NONZERO => {
            *val = (v != 0) as u64;
            return Ok(());
        }
        cap::STR_HDR => (
            read_at(v.wrapping_add(last), step)?,
            read_at(v.wrapping_add(last + 8), step)?,
        ),
        cap::STR_REGS => (v, reg_value(regs, c.reg2)),
        _ => {
            return Err(Fail {
                addr: 0,
                len: 0,
                step,
            })
        }
    };
    *val = len;
    if len == 0 {
        return Ok(());
    }
    let n = if len > STR_CAP as u64 {
        STR_CAP
    } else {
        len as usize
    };
    // SAFETY: reads at most STR_CAP bytes of user memory into `buf`; a bad
    // pointer makes the helper fail, not fault.
    unsafe { bpf_probe_read_user_buf(ptr as *const u8, &mut buf[..n]) }.map_err(|_| Fail {
        addr: ptr,
        len: n as u64,
        step: step + 1,
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
