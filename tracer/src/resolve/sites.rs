//! Instruction-level facts about one function (x86-64): RET sites, the
//! prologue's stack-check jump, tail jumps, direct calls; and the runtime.g
//! goid offset read out of the runtime's own code.

use super::{EntrySite, FunctionSites};
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    OpKind, Register,
};

/// The stack-check prologue is always at the very start; look no further.
const PROLOGUE_WINDOW: usize = 8;

fn decode_all(code: &[u8], entry: u64) -> Vec<Instruction> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut out = Vec::with_capacity(code.len() / 4);
    let mut ins = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut ins);
        out.push(ins);
    }
    out
}

/// Decode `code` (the bytes of `[entry, end)`).
pub(crate) fn decode(code: &[u8], entry: u64, end: u64) -> FunctionSites {
    let instrs = decode_all(code, entry);
    let inside = |t: u64| t >= entry && t < end;
    let mut sites = FunctionSites {
        entry,
        entry_site: prologue_jump(&instrs, entry, end)
            .map_or(EntrySite::FunctionStart { vaddr: entry }, |vaddr| {
                EntrySite::PrologueJump { vaddr }
            }),
        rets: Vec::new(),
        tail_jumps: Vec::new(),
        calls: Vec::new(),
    };
    for ins in &instrs {
        match ins.flow_control() {
            // Near RET only (C3, C2 iw); far returns do not occur in Go code.
            FlowControl::Return if ins.mnemonic() == Mnemonic::Ret => sites.rets.push(ins.ip()),
            FlowControl::Call if ins.op0_kind() == OpKind::NearBranch64 => {
                sites.calls.push((ins.ip(), ins.near_branch_target()));
            }
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
                if ins.op0_kind() == OpKind::NearBranch64 && !inside(ins.near_branch_target()) =>
            {
                sites.tail_jumps.push(ins.ip());
            }
            _ => {}
        }
    }
    sites
}

/// The JBE of Go's stack-bound check, in any of its forms:
/// ```text
/// small frame:  cmp rsp, [g+0x10]; jbe morestack
/// > 128 bytes:  lea r12, [rsp-N]; cmp r12, [g+0x10]; jbe morestack
/// > 4 KiB:      mov r12, rsp; sub r12, N; jb morestack; cmp r12, [g+0x10]; jbe morestack
/// ```
/// g is R14 in ABIInternal code; ABI0 assembly loads it from TLS first, so
/// any base register is accepted. The JBE must jump inside the function
/// (to the morestack call at its end).
fn prologue_jump(instrs: &[Instruction], entry: u64, end: u64) -> Option<u64> {
    let window = &instrs[..instrs.len().min(PROLOGUE_WINDOW)];
    let mut r12_from_sp = false;
    for (i, ins) in window.iter().enumerate() {
        match ins.flow_control() {
            FlowControl::Next | FlowControl::ConditionalBranch => {}
            _ => return None,
        }
        let writes_r12 = ins.op_count() > 0
            && ins.op0_kind() == OpKind::Register
            && ins.op0_register() == Register::R12;
        if writes_r12 && matches!(ins.mnemonic(), Mnemonic::Lea | Mnemonic::Mov) {
            r12_from_sp = (ins.mnemonic() == Mnemonic::Lea && ins.memory_base() == Register::RSP)
                || (ins.op1_kind() == OpKind::Register && ins.op1_register() == Register::RSP);
        }
        let is_check = ins.mnemonic() == Mnemonic::Cmp
            && ins.op0_kind() == OpKind::Register
            && (ins.op0_register() == Register::RSP
                || (ins.op0_register() == Register::R12 && r12_from_sp))
            && ins.op1_kind() == OpKind::Memory
            && ins.memory_index() == Register::None
            && ins.memory_displacement64() == 0x10
            && ins.memory_base().is_gpr64()
            && ins.memory_base() != Register::RSP;
        if !is_check {
            continue;
        }
        let next = window.get(i + 1).or_else(|| instrs.get(i + 1))?;
        let target = next.near_branch_target();
        return (next.mnemonic() == Mnemonic::Jbe && target >= entry && target < end)
            .then(|| next.ip());
    }
    None
}

/// runtime.g.goid offset, read from `runtime.goroutineheader`, which starts
/// with `print("goroutine ", gp.goid, …)`: the first printint/printuint call
/// right after a printstring call gets gp.goid in RAX. The compiler loads it
/// as `mov rax, [gp+goid]`, or loads it earlier and spills it to the stack
/// (`mov rdx, [gp+goid]; mov [rsp+s], rdx; …; mov rax, [rsp+s]`). Anything
/// else gives None (the caller then uses the per-version table).
pub(crate) fn goid_from_goroutineheader(
    code: &[u8],
    entry: u64,
    printstring: u64,
    print_ints: &[u64],
) -> Option<u32> {
    let instrs = decode_all(code, entry);
    let is_call_to = |ins: &Instruction, targets: &[u64]| {
        ins.flow_control() == FlowControl::Call
            && ins.op0_kind() == OpKind::NearBranch64
            && targets.contains(&ins.near_branch_target())
    };
    let call = instrs.iter().position(|i| is_call_to(i, print_ints))?;
    // The call before must print the "goroutine " string.
    let prev_call = instrs[..call]
        .iter()
        .rposition(|i| i.flow_control() == FlowControl::Call)?;
    if !is_call_to(&instrs[prev_call], &[printstring]) {
        return None;
    }
    let (at, src) = last_load(&instrs[..call], Register::RAX, true)?;
    let disp = if src.memory_base() == Register::RSP {
        // Spilled: find the store to that slot, then what was stored.
        let slot = src.memory_displacement64();
        let store = instrs[..at].iter().rposition(|i| {
            i.mnemonic() == Mnemonic::Mov
                && i.op0_kind() == OpKind::Memory
                && i.memory_base() == Register::RSP
                && i.memory_displacement64() == slot
                && i.op1_kind() == OpKind::Register
        })?;
        let reg = instrs[store].op1_register();
        let (_, load) = last_load(&instrs[..store], reg, false)?;
        if load.memory_base() == Register::RSP {
            return None;
        }
        load.memory_displacement64()
    } else {
        src.memory_displacement64()
    };
    let disp = u32::try_from(disp).ok()?;
    // g starts with stack, stackguards, _panic, _defer, m, sched (≥ 100
    // bytes); goid has never been far beyond that.
    (100..=400).contains(&disp).then_some(disp)
}

/// The last instruction in `instrs` that writes `reg`, if it is a 64-bit
/// `mov reg, [base+disp]` (no index). With `stop_at_call`, a CALL on the way
/// back means the value came from elsewhere.
fn last_load(
    instrs: &[Instruction],
    reg: Register,
    stop_at_call: bool,
) -> Option<(usize, Instruction)> {
    for (i, ins) in instrs.iter().enumerate().rev() {
        if stop_at_call && ins.flow_control() == FlowControl::Call {
            return None;
        }
        let writes = ins.op_count() > 0
            && ins.op0_kind() == OpKind::Register
            && ins.op0_register().full_register() == reg
            && !matches!(ins.mnemonic(), Mnemonic::Cmp | Mnemonic::Test);
        if !writes {
            continue;
        }
        let ok = ins.mnemonic() == Mnemonic::Mov
            && ins.op0_register() == reg
            && ins.op1_kind() == OpKind::Memory
            && ins.memory_index() == Register::None;
        return ok.then_some((i, *ins));
    }
    None
}

/// Go's ABIInternal integer result registers (amd64), in assignment order.
const RESULT_REGS: [Register; 9] = [
    Register::RAX,
    Register::RBX,
    Register::RCX,
    Register::RDI,
    Register::RSI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
];

/// How many integer result registers the function fills: over every RET,
/// the highest result register (in ABI order) that the straight-line code
/// leading to it leaves set for the caller, plus one. Every register is
/// caller-saved in Go's ABI, so after the last call before a RET the results
/// must be (re)loaded there; a function with a `defer` (which runs a call on
/// every return path) therefore shows its full result shape, e.g.
/// `(bool, error)` 3 and `(bool, func(), error)` 4. A register written and
/// then read again before the RET is a temporary (building an error value,
/// say), not a result. A function whose RETs directly follow a call that
/// produced its results shows fewer. None if the function has no RET.
pub(crate) fn result_regs(code: &[u8], entry: u64, end: u64) -> Option<usize> {
    let instrs = decode_all(code, entry);
    let targets: std::collections::BTreeSet<u64> = instrs
        .iter()
        .filter(|i| {
            matches!(
                i.flow_control(),
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
            ) && i.op0_kind() == OpKind::NearBranch64
        })
        .map(Instruction::near_branch_target)
        .filter(|&t| t >= entry && t < end)
        .collect();
    let result_index = |r: Register| RESULT_REGS.iter().position(|&x| x == r.full_register());
    let mut info = InstructionInfoFactory::new();
    let mut best = None;
    for (at, ret) in instrs.iter().enumerate() {
        if ret.mnemonic() != Mnemonic::Ret {
            continue;
        }
        let (mut highest, mut read_later) = (0, [false; RESULT_REGS.len()]);
        for ins in instrs[..at].iter().rev() {
            if ins.flow_control() != FlowControl::Next {
                break; // a call, jump or return ends the straight line
            }
            let used = info.info(ins).used_registers().to_vec();
            for r in &used {
                let writes = matches!(
                    r.access(),
                    OpAccess::Write
                        | OpAccess::CondWrite
                        | OpAccess::ReadWrite
                        | OpAccess::ReadCondWrite
                );
                if let Some(i) = result_index(r.register()).filter(|&i| writes && !read_later[i]) {
                    highest = highest.max(i + 1);
                }
            }
            for r in &used {
                let reads = matches!(
                    r.access(),
                    OpAccess::Read
                        | OpAccess::CondRead
                        | OpAccess::ReadWrite
                        | OpAccess::ReadCondWrite
                );
                if let Some(i) = result_index(r.register()).filter(|_| reads) {
                    read_later[i] = true;
                }
            }
            if targets.contains(&ins.ip()) {
                break; // other paths join here
            }
        }
        best = Some(best.map_or(highest, |b: usize| b.max(highest)));
    }
    best
}

/// runtime.g.goid offset by Go version, for when the code cannot be read.
/// From runtime2.go: stack (16), stackguard0/1, _panic, _defer, m, sched
/// (gobuf), syscallsp, syscallpc, [syscallbp, 1.23+], stktopsp, param,
/// atomicstatus+stackLock, goid; gobuf lost `ret` in 1.25. Checked by the
/// tests against code decoded from Go 1.19, 1.22, 1.23, 1.24 and 1.27
/// binaries and against DWARF for 1.19 and 1.27; 1.16–1.18, 1.20–1.21 and
/// 1.25–1.26 are inferred from the struct definitions.
pub(crate) fn goid_table(major: u32, minor: u32) -> Option<u32> {
    match (major, minor) {
        (1, 16..=22) => Some(152),
        (1, 23..=24) => Some(160),
        (1, 25..) => Some(152),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(code: &[u8]) -> FunctionSites {
        decode(code, 0x1000, 0x1000 + code.len() as u64)
    }

    #[test]
    fn small_frame_prologue_and_rets() {
        // cmp rsp,[r14+10h]; jbe +6; ret; ret 8; nop; call morestack; jmp entry
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x76, 0x05, 0xc3, 0xc2, 0x08, 0x00, 0x90, 0xe8, 0, 0, 0, 0,
            0xeb, 0xee,
        ];
        let s = sites(&code);
        assert_eq!(s.entry_site, EntrySite::PrologueJump { vaddr: 0x1004 });
        assert_eq!(s.rets, vec![0x1006, 0x1007]);
        assert_eq!(s.calls, vec![(0x100b, 0x1010)]);
        assert!(s.tail_jumps.is_empty());
    }

    #[test]
    fn leaf_and_tail_jump() {
        // imul rax,rbx; jmp far away
        let code = [0x48, 0x0f, 0xaf, 0xc3, 0xe9, 0x00, 0x10, 0x00, 0x00];
        let s = sites(&code);
        assert_eq!(s.entry_site, EntrySite::FunctionStart { vaddr: 0x1000 });
        assert_eq!(s.tail_jumps, vec![0x1004]);
        assert!(s.rets.is_empty());
    }

    #[test]
    fn r12_check_needs_r12_from_rsp() {
        // lea r12,[rsp-0x88]; cmp r12,[r14+10h]; jbe +1; ret
        let ok = [
            0x4c, 0x8d, 0xa4, 0x24, 0x78, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x76, 0x01,
            0xc3, 0x90,
        ];
        assert_eq!(
            sites(&ok).entry_site,
            EntrySite::PrologueJump { vaddr: 0x100c }
        );
        // Without the lea the compare is not a stack check.
        assert_eq!(
            sites(&ok[8..]).entry_site,
            EntrySite::FunctionStart { vaddr: 0x1000 }
        );
    }

    #[test]
    fn table() {
        assert_eq!(goid_table(1, 19), Some(152));
        assert_eq!(goid_table(1, 23), Some(160));
        assert_eq!(goid_table(1, 27), Some(152));
        assert_eq!(goid_table(1, 15), None);
    }
}
