//! Go's pclntab (runtime/symtab.go `pcHeader`, cmd/link pcln.go): function
//! names and entry points. Only the parts needed for that are decoded.
//!
//! Layout (64-bit, little-endian), Go 1.18+:
//! ```text
//! pcHeader  magic u32 | pad1 pad2 minLC ptrSize u8 | nfunc | nfiles | textStart
//!           | funcnameOffset | cuOffset | filetabOffset | pctabOffset | pclnOffset
//! functab   at pclnOffset: nfunc × {entryoff u32, funcoff u32}, then end u32
//! _func     at pclnOffset+funcoff: entryOff u32, nameOff i32, …
//! name      NUL-terminated at funcnameOffset+nameOff
//! ```
//! Go 1.16–1.17 has no textStart and uses absolute pointer-sized entries.
//! From Go 1.26 the textStart word is still there but always 0.
//!
//! Every read is bounds-checked: arbitrary bytes give an error, never a panic.

pub(crate) const MAGIC_GO116: u32 = 0xffff_fffa;
pub(crate) const MAGIC_GO118: u32 = 0xffff_fff0;
pub(crate) const MAGIC_GO120: u32 = 0xffff_fff1;

/// Go 1.2–1.15 tables (unsupported: Go before 1.16 is out of scope).
#[cfg(test)]
const MAGIC_GO12: u32 = 0xffff_fffb;

/// No real binary has more functions than this; a bigger count is garbage
/// and would make us allocate wildly.
const MAX_FUNCS: u64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Go116,
    Go118,
    Go120,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PclnError {
    /// A read at this offset (from the pclntab start) ran past the data.
    Truncated(u64),
    BadMagic(u32),
    Malformed(String),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub version: Version,
    pub nfunc: u64,
    /// 0 when not recorded (Go 1.16–1.17, Go 1.26+).
    pub text_start: u64,
    /// Sub-table offsets from the pcHeader, in the order the linker lays
    /// them out (checked ascending).
    pub funcname_offset: u64,
    pub cu_offset: u64,
    pub pctab_offset: u64,
    pub pcln_offset: u64,
}

#[derive(Debug)]
pub(crate) struct Table {
    pub header: Header,
    /// (name, entry), sorted by entry. Entries are relative to the text
    /// start for Go 1.18+, absolute for Go 1.16.
    pub funcs: Vec<(String, u64)>,
    /// End of the last function, same base as the entries.
    pub end: u64,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&self, off: u64, len: u64) -> Result<&'a [u8], PclnError> {
        let end = off.checked_add(len).ok_or(PclnError::Truncated(off))?;
        let (s, e) = (usize::try_from(off), usize::try_from(end));
        match (s, e) {
            (Ok(s), Ok(e)) => self.0.get(s..e).ok_or(PclnError::Truncated(off)),
            _ => Err(PclnError::Truncated(off)),
        }
    }
    fn u8(&self, off: u64) -> Result<u8, PclnError> {
        Ok(self.bytes(off, 1)?[0])
    }
    fn u32(&self, off: u64) -> Result<u32, PclnError> {
        let b = self.bytes(off, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&self, off: u64) -> Result<u64, PclnError> {
        let b = self.bytes(off, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn malformed<T>(what: impl Into<String>) -> Result<T, PclnError> {
    Err(PclnError::Malformed(what.into()))
}

/// Cheap check used when scanning raw bytes for a pclntab: magic, zero
/// padding, x86/arm64 instruction quantum, 8-byte pointers.
pub(crate) fn looks_like_header(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    matches!(magic, MAGIC_GO116 | MAGIC_GO118 | MAGIC_GO120)
        && b[4] == 0
        && b[5] == 0
        && matches!(b[6], 1 | 4)
        && b[7] == 8
}

pub(crate) fn parse_header(data: &[u8]) -> Result<Header, PclnError> {
    let r = Reader(data);
    let magic = r.u32(0)?;
    let version = match magic {
        MAGIC_GO116 => Version::Go116,
        MAGIC_GO118 => Version::Go118,
        MAGIC_GO120 => Version::Go120,
        _ => return Err(PclnError::BadMagic(magic)),
    };
    if r.u8(4)? != 0 || r.u8(5)? != 0 {
        return malformed("header padding is not zero");
    }
    if !matches!(r.u8(6)?, 1 | 4) {
        return malformed(format!("instruction quantum {}", r.u8(6)?));
    }
    if r.u8(7)? != 8 {
        return malformed(format!(
            "pointer size {} (only 64-bit is supported)",
            r.u8(7)?
        ));
    }
    let nfunc = r.u64(8)?;
    if nfunc == 0 || nfunc > MAX_FUNCS {
        return malformed(format!("function count {nfunc}"));
    }
    let (text_start, first) = match version {
        Version::Go116 => (0, 24),
        Version::Go118 | Version::Go120 => (r.u64(24)?, 32),
    };
    let [funcname, cu, filetab, pctab, pcln] = [0u64, 8, 16, 24, 32].map(|i| r.u64(first + i));
    let (funcname, cu, filetab, pctab, pcln) = (funcname?, cu?, filetab?, pctab?, pcln?);
    let header_len = first + 40;
    if !(header_len <= funcname
        && funcname <= cu
        && cu <= filetab
        && filetab <= pctab
        && pctab <= pcln)
    {
        return malformed("sub-table offsets out of order");
    }
    Ok(Header {
        version,
        nfunc,
        text_start,
        funcname_offset: funcname,
        cu_offset: cu,
        pctab_offset: pctab,
        pcln_offset: pcln,
    })
}

/// Decode the whole function table. `data` starts at the pcHeader and runs
/// to the end of what the file holds (it may be longer than the table).
pub(crate) fn parse(data: &[u8]) -> Result<Table, PclnError> {
    let header = parse_header(data)?;
    let r = Reader(data);
    let (funcname, cu, pcln) = (header.funcname_offset, header.cu_offset, header.pcln_offset);

    let n = header.nfunc;
    // Width of one functab field: u32 offsets from Go 1.18, pointers before.
    let w: u64 = if header.version == Version::Go116 {
        8
    } else {
        4
    };
    let ftab_len = (2 * n + 1) * w;
    // One bounds check for the whole functab, so a truncation shows up at
    // the table rather than somewhere in the middle of it.
    let ftab = Reader(r.bytes(pcln, ftab_len)?);
    let field = |i: u64| -> Result<u64, PclnError> {
        if w == 8 {
            ftab.u64(i * 8)
        } else {
            ftab.u32(i * 4).map(u64::from)
        }
    };

    // First the table's own invariants, so garbage is told apart from a
    // cut-off file: entries ascend, and the linker writes the _func
    // records in the same order, after the table.
    let (mut prev_entry, mut prev_off) = (0u64, ftab_len.saturating_sub(1));
    for i in 0..n {
        let (entry, funcoff) = (field(2 * i)?, field(2 * i + 1)?);
        if entry < prev_entry || funcoff <= prev_off {
            return malformed(format!("functab not sorted at entry {i}"));
        }
        (prev_entry, prev_off) = (entry, funcoff);
    }

    let mut funcs = Vec::with_capacity(n as usize);
    let mut prev = 0u64;
    for i in 0..n {
        let entry = field(2 * i)?;
        let funcoff = field(2 * i + 1)?;
        prev = entry;
        let func = pcln
            .checked_add(funcoff)
            .ok_or_else(|| PclnError::Malformed(format!("function {i}: bad offset")))?;
        // _func starts with its own entry: it must agree with the functab.
        let (own_entry, name_off) = if w == 8 {
            (r.u64(func)?, r.u32(func + 8)?)
        } else {
            (u64::from(r.u32(func)?), r.u32(func + 4)?)
        };
        if own_entry != entry {
            return malformed(format!(
                "function {i}: entry {own_entry:#x} ≠ functab {entry:#x}"
            ));
        }
        let name = cstring(data, funcname, cu, name_off)?;
        funcs.push((name, entry));
    }
    let end = field(2 * n)?;
    if end < prev {
        return malformed("end of text before the last function");
    }
    Ok(Table { header, funcs, end })
}

/// NUL-terminated name at `base + off`, which must lie in `[base, limit)`.
fn cstring(data: &[u8], base: u64, limit: u64, off: u32) -> Result<String, PclnError> {
    let start = base + u64::from(off);
    if start >= limit {
        return malformed(format!("name offset {off:#x} outside the name table"));
    }
    let lim = usize::try_from(limit).unwrap_or(usize::MAX).min(data.len());
    let start_u = usize::try_from(start).map_err(|_| PclnError::Truncated(start))?;
    let bytes = data.get(start_u..lim).ok_or(PclnError::Truncated(start))?;
    match bytes.iter().position(|&b| b == 0) {
        Some(0) => malformed(format!("empty function name at {start:#x}")),
        Some(len) => Ok(String::from_utf8_lossy(&bytes[..len]).into_owned()),
        None if (lim as u64) < limit => Err(PclnError::Truncated(start)),
        None => malformed(format!("unterminated function name at {start:#x}")),
    }
}

/// `runtime.moduledata` field offsets (64-bit), unchanged from Go 1.16 to
/// 1.27: pcHeader *pcHeader @0, funcnametab []byte @8, …, ftab []functab
/// @128, findfunctab @152, minpc @160, maxpc @168, text @176, etext @184.
pub(crate) mod moduledata {
    pub const FUNCNAMETAB: u64 = 8;
    pub const FTAB_LEN: u64 = 136;
    pub const TEXT: u64 = 176;
    pub const ETEXT: u64 = 184;
    pub const MIN_LEN: u64 = 192;
    /// Where `gofunc` may be: after `rodata`, at 304 (Go 1.18–1.19), 320
    /// (1.20+, with covctrs) or 344 (1.26+, with typedesclen and itab
    /// fields); a few words either side for versions in between.
    pub const GOFUNC_FIRST: u64 = 280;
    pub const GOFUNC_LAST: u64 = 392;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go116_table() -> Vec<u8> {
        // Hand-built Go 1.16 table with two functions: absolute entries.
        let mut t = vec![0u8; 64];
        t[..4].copy_from_slice(&MAGIC_GO116.to_le_bytes());
        t[6] = 1;
        t[7] = 8;
        t[8..16].copy_from_slice(&2u64.to_le_bytes()); // nfunc
        let names = b"main.a\0main.b\0";
        let funcname = 64u64;
        let pcln = funcname + names.len() as u64;
        for (i, v) in [funcname, pcln, pcln, pcln, pcln].iter().enumerate() {
            t[24 + i * 8..32 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        t.extend_from_slice(names);
        // functab: (entry, funcoff) ×2, end; then two 16-byte _func heads.
        let ftab_len = 5 * 8u64;
        for v in [0x401000u64, ftab_len, 0x401040, ftab_len + 16, 0x401080] {
            t.extend_from_slice(&v.to_le_bytes());
        }
        for (entry, name) in [(0x401000u64, 0u32), (0x401040, 7)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&name.to_le_bytes());
            t.extend_from_slice(&[0; 4]);
        }
        t
    }

    #[test]
    fn go116_layout() {
        let t = parse(&go116_table()).unwrap();
        assert_eq!(t.header.version, Version::Go116);
        assert_eq!(
            t.funcs,
            vec![
                ("main.a".to_string(), 0x401000),
                ("main.b".to_string(), 0x401040)
            ]
        );
        assert_eq!(t.end, 0x401080);
    }

    #[test]
    fn go116_every_truncation_is_an_error() {
        let t = go116_table();
        // The last 4 bytes are _func padding that is never read.
        for n in 0..t.len() - 4 {
            assert!(parse(&t[..n]).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn old_magic_is_unsupported() {
        let mut t = go116_table();
        t[..4].copy_from_slice(&MAGIC_GO12.to_le_bytes());
        assert_eq!(parse(&t).unwrap_err(), PclnError::BadMagic(MAGIC_GO12));
    }
}
