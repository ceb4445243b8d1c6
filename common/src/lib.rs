//! Types shared by podtrace's eBPF program and its userspace.
//!
//! Everything here is `#[repr(C)]` plain old data: the eBPF side writes it into
//! maps and the ring buffer, userspace reads it back byte for byte. Changing a
//! layout changes [`EVENT_ABI_VERSION`].
#![no_std]

/// Bumped whenever [`Event`] or [`ProbeSpec`] change layout.
pub const EVENT_ABI_VERSION: u32 = 1;

/// Captured values per event.
pub const MAX_CAPTURES: usize = 4;
/// Bytes kept of each captured string (pod UIDs are 36, container ids 64).
pub const STR_CAP: usize = 96;
/// Pointer hops a capture may follow before its final read.
pub const MAX_DEREFS: usize = 3;
/// Entries of the probe-spec array: one per attached (probe, site kind).
pub const MAX_SPECS: u32 = 1024;

/// Event kinds.
pub const KIND_ENTRY: u8 = 1;
pub const KIND_EXIT: u8 = 2;

/// Go amd64 register-ABI operand slots, in argument order, then the extras.
/// Index into this with [`Capture::reg`].
pub mod reg {
    pub const RAX: u8 = 0;
    pub const RBX: u8 = 1;
    pub const RCX: u8 = 2;
    pub const RDI: u8 = 3;
    pub const RSI: u8 = 4;
    pub const R8: u8 = 5;
    pub const R9: u8 = 6;
    pub const R10: u8 = 7;
    pub const R11: u8 = 8;
    /// Closure context.
    pub const RDX: u8 = 9;
    /// Stack pointer: stack-assigned arguments live at SP+8 and up at entry.
    pub const RSP: u8 = 10;
    /// Current goroutine (`g`).
    pub const R14: u8 = 11;
    pub const COUNT: u8 = 12;
}

/// What a capture reads.
pub mod cap {
    /// Slot unused.
    pub const NONE: u8 = 0;
    /// The 8-byte value at the end of the pointer chain (or the register itself).
    pub const U64: u8 = 1;
    /// A Go string header `{ptr, len}` at `value + offs[nderef]`.
    pub const STR_HDR: u8 = 2;
    /// A Go string passed in two registers: pointer in `reg`, length in `reg2`.
    pub const STR_REGS: u8 = 3;
    /// 1 if the register is non-zero, else 0 (a Go `error` or pointer result).
    pub const NONZERO: u8 = 4;
}

/// One value to read when a probe fires.
///
/// Reading starts from register `reg`; for each of the first `nderef` offsets
/// the 8-byte word at `value + off` replaces the value (pointer chasing); then
/// `kind` decides the final read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    pub kind: u8,
    pub reg: u8,
    pub reg2: u8,
    pub nderef: u8,
    pub offs: [u32; MAX_DEREFS + 1],
}

/// Per-attachment instructions, stored in the `SPECS` array and selected by
/// the uprobe's attach cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeSpec {
    pub probe_id: u32,
    /// [`KIND_ENTRY`] or [`KIND_EXIT`].
    pub kind: u8,
    pub _pad: [u8; 3],
    /// Offset of `goid` in `runtime.g` for the traced binary's Go version;
    /// 0 = do not read.
    pub goid_offset: u32,
    pub _pad2: u32,
    pub captures: [Capture; MAX_CAPTURES],
}

/// One probe hit, as written into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ktime_ns: u64,
    /// Goroutine pointer (R14).
    pub g: u64,
    pub goid: u64,
    /// Stack pointer at the probe: the frame key of an entry or a RET.
    pub sp: u64,
    /// The word at SP: the caller's return address at an entry probe.
    pub ret_addr: u64,
    pub pid: u32,
    pub tid: u32,
    pub probe_id: u32,
    pub kind: u8,
    /// Bit i set: string capture i was cut to [`STR_CAP`] bytes.
    pub truncated: u8,
    /// Bit i set: capture i could not be read (bad pointer, paged out).
    pub failed: u8,
    pub _pad: u8,
    /// U64/NONZERO results, or the full length of a string capture.
    pub vals: [u64; MAX_CAPTURES],
    pub strs: [[u8; STR_CAP]; MAX_CAPTURES],
}

impl Event {
    pub const SIZE: usize = core::mem::size_of::<Event>();
}

/// A process notice of the exec/exit tracepoints (`PROCS` ring): the
/// supervisor learns of processes as they start and end instead of reading
/// all of /proc every tick.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcNote {
    /// Thread-group id (the process id).
    pub pid: u32,
    /// [`PROC_EXEC`] or [`PROC_EXIT`].
    pub kind: u32,
}

impl ProcNote {
    pub const SIZE: usize = core::mem::size_of::<ProcNote>();
}

/// The process ran execve: it now runs another executable.
pub const PROC_EXEC: u32 = 1;
/// The process's main thread exited (the process is ending).
pub const PROC_EXIT: u32 = 2;

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are repr(C), contain only integers and arrays of
    // integers, and every bit pattern is valid for them.
    unsafe impl aya::Pod for super::ProbeSpec {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Capture {}
}
