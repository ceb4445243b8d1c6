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
//! The input is untrusted, so work and memory are bounded by its size too:
//! the header's counts and offsets are checked against the table's size
//! before anything is allocated, and the names decoded may not add up to
//! more than the name table holds (a crafted table whose functions all
//! point at one huge name would otherwise cost functions × name length).

pub(crate) const MAGIC_GO116: u32 = 0xffff_fffa;
pub(crate) const MAGIC_GO118: u32 = 0xffff_fff0;
pub(crate) const MAGIC_GO120: u32 = 0xffff_fff1;

/// Go 1.2–1.15 tables (unsupported: Go before 1.16 is out of scope).
#[cfg(test)]
const MAGIC_GO12: u32 = 0xffff_fffb;

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

/// Width of one functab field: u32 offsets from Go 1.18, pointers before.
fn functab_width(v: Version) -> u64 {
    if v == Version::Go116 {
        8
    } else {
        4
    }
}

/// The pcHeader at the start of `data`. `size` is how long the table says
/// it is (its section's size, or what is left of its segment): every
/// offset and count must fit in it. It may exceed `data.len()` when the
/// file is cut short; reads past the data are then `Truncated`.
pub(crate) fn parse_header(data: &[u8], size: u64) -> Result<Header, PclnError> {
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
    if nfunc == 0 {
        return malformed("pcHeader.nfunc is 0: no functions");
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
    // Ascending, so checking the last one checks them all; name the first
    // that is out, as that is the field to look at.
    for (field, off) in [
        ("funcnameOffset", funcname),
        ("cuOffset", cu),
        ("filetabOffset", filetab),
        ("pctabOffset", pctab),
        ("pclnOffset", pcln),
    ] {
        if off >= size {
            return malformed(format!(
                "pcHeader.{field} {off:#x} is past the end of the {size:#x}-byte pclntab"
            ));
        }
    }
    // The functab at pclnOffset holds nfunc (entry, funcoff) pairs and an
    // end entry: a count the bytes cannot hold is garbage, and is refused
    // before it sizes any allocation.
    let w = functab_width(version);
    let room = ((size - pcln) / w).saturating_sub(1) / 2;
    if nfunc > room {
        return malformed(format!(
            "pclntab claims {nfunc} functions (pcHeader.nfunc) but holds room for {room}"
        ));
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
/// to the end of what the file holds (it may be longer than the table);
/// `size` as for [`parse_header`].
pub(crate) fn parse(data: &[u8], size: u64) -> Result<Table, PclnError> {
    let header = parse_header(data, size)?;
    let r = Reader(data);
    let (funcname, cu, pcln) = (header.funcname_offset, header.cu_offset, header.pcln_offset);

    let n = header.nfunc;
    let w = functab_width(header.version);
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

    // n fits the functab bytes just read, so this is at most data.len() / 8.
    let mut funcs = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    // Real names are laid out once each, so together they fit the name
    // table; more means functions share (overlapping) names, which would
    // let a small file decode to gigabytes of copies.
    let name_table = cu - funcname;
    let mut name_bytes = 0u64;
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
        name_bytes += name.len() as u64;
        if name_bytes > name_table {
            return malformed(format!(
                "the names of the first {} of {n} functions already take {name_bytes} bytes, \
                 more than the {name_table}-byte name table holds (names overlap)",
                i + 1
            ));
        }
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

/// Hand-built Go 1.20 pclntabs for tests (here and in `inline`).
#[cfg(test)]
pub(crate) mod synth {
    use super::MAGIC_GO120;

    /// Bytes of one `_func` record: entryOff, nameOff, …, npcdata @28,
    /// nfuncdata @43, pcdata[3] @44, funcdata[4] @56.
    pub const FUNC_LEN: u64 = 72;
    pub const HEADER_LEN: u64 = 72;

    /// One function: name offset, PCDATA_InlTreeIndex table offset in the
    /// pctab (0: none), FUNCDATA_InlTree offset from gofunc.
    #[derive(Clone, Copy)]
    pub struct Func {
        pub name: u32,
        pub inl_pcdata: u32,
        pub inl_tree: u32,
    }

    /// A pclntab with these functions (entries 0x40 apart), name table and
    /// pctab.
    pub fn table(funcs: &[Func], names: &[u8], pctab: &[u8]) -> Vec<u8> {
        let n = funcs.len() as u64;
        let funcname = HEADER_LEN;
        let cu = funcname + names.len() as u64;
        let pctab_off = cu;
        let pcln = pctab_off + pctab.len() as u64;
        let mut t = vec![0u8; HEADER_LEN as usize];
        t[..4].copy_from_slice(&MAGIC_GO120.to_le_bytes());
        t[6] = 1;
        t[7] = 8;
        t[8..16].copy_from_slice(&n.to_le_bytes());
        // nfiles 0, textStart 0, then the sub-table offsets (filetab empty).
        for (i, v) in [funcname, cu, cu, pctab_off, pcln].iter().enumerate() {
            t[32 + i * 8..40 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        t.extend_from_slice(names);
        t.extend_from_slice(pctab);
        let ftab_len = (2 * n + 1) * 4;
        let entry = |i: u64| (i * 0x40) as u32;
        for i in 0..n {
            t.extend_from_slice(&entry(i).to_le_bytes());
            t.extend_from_slice(&((ftab_len + i * FUNC_LEN) as u32).to_le_bytes());
        }
        t.extend_from_slice(&entry(n).to_le_bytes());
        for (i, f) in funcs.iter().enumerate() {
            let mut r = [0u8; FUNC_LEN as usize];
            r[..4].copy_from_slice(&entry(i as u64).to_le_bytes());
            r[4..8].copy_from_slice(&f.name.to_le_bytes());
            r[28..32].copy_from_slice(&3u32.to_le_bytes());
            r[43] = 4;
            r[52..56].copy_from_slice(&f.inl_pcdata.to_le_bytes());
            r[68..72].copy_from_slice(&f.inl_tree.to_le_bytes());
            t.extend_from_slice(&r);
        }
        t
    }

    /// Names NUL-terminated one after another, with their offsets.
    pub fn names(list: &[&str]) -> (Vec<u8>, Vec<u32>) {
        let (mut b, mut offs) = (Vec::new(), Vec::new());
        for n in list {
            offs.push(b.len() as u32);
            b.extend_from_slice(n.as_bytes());
            b.push(0);
        }
        (b, offs)
    }
}

#[cfg(test)]
mod tests {
    use super::synth::Func;
    use super::*;

    /// `funcs` functions with distinct names of `name_len - 1` bytes.
    fn go120(funcs: usize, name_len: usize) -> Vec<u8> {
        let mut names = vec![b'x'; name_len * funcs];
        let fs: Vec<Func> = (0..funcs)
            .map(|i| {
                let at = i * name_len;
                names[at + name_len - 1] = 0;
                Func {
                    name: at as u32,
                    inl_pcdata: 0,
                    inl_tree: u32::MAX,
                }
            })
            .collect();
        synth::table(&fs, &names, &[0])
    }

    fn malformed_msg(t: &[u8]) -> String {
        match parse(t, t.len() as u64) {
            Err(PclnError::Malformed(m)) => m,
            other => panic!("expected a malformed-table error, got {other:?}"),
        }
    }

    fn patch(t: &mut [u8], at: usize, v: u64) {
        t[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn go120_layout() {
        let t = go120(3, 8);
        let table = parse(&t, t.len() as u64).unwrap();
        assert_eq!(table.funcs.len(), 3);
        assert_eq!(table.funcs[2], ("xxxxxxx".to_string(), 0x80));
        assert_eq!(table.end, 0xc0);
    }

    #[test]
    fn function_count_beyond_the_bytes_is_refused_before_allocating() {
        let mut t = go120(3, 8);
        let len = t.len() as u64;
        // Room: the functab from pclnOffset to the end, 8 bytes a function.
        let pcln = u64::from_le_bytes(t[64..72].try_into().unwrap());
        let room = ((len - pcln) / 4 - 1) / 2;
        for claim in [u64::from(u32::MAX), u64::MAX, room + 1] {
            patch(&mut t, 8, claim);
            assert_eq!(
                malformed_msg(&t),
                format!(
                    "pclntab claims {claim} functions (pcHeader.nfunc) but holds room for {room}"
                )
            );
        }
        patch(&mut t, 8, 0);
        assert_eq!(malformed_msg(&t), "pcHeader.nfunc is 0: no functions");
    }

    #[test]
    fn offsets_beyond_the_table_are_refused() {
        let t0 = go120(3, 8);
        let len = t0.len() as u64;
        // Each offset field in turn (and those after it, to keep them
        // ascending) pushed past the end: the first one out is named.
        for (i, field) in [
            "funcnameOffset",
            "cuOffset",
            "filetabOffset",
            "pctabOffset",
            "pclnOffset",
        ]
        .iter()
        .enumerate()
        {
            for huge in [len, 1 << 40, u64::MAX] {
                let mut t = t0.clone();
                for j in i..5 {
                    patch(&mut t, 32 + j * 8, huge);
                }
                assert_eq!(
                    malformed_msg(&t),
                    format!(
                        "pcHeader.{field} {huge:#x} is past the end of the {len:#x}-byte pclntab"
                    )
                );
            }
        }
        // A section size bigger than the bytes (a cut file): a truncation.
        assert!(matches!(
            parse(&t0[..t0.len() / 2], len),
            Err(PclnError::Truncated(_))
        ));
    }

    #[test]
    fn functions_sharing_a_huge_name_are_refused() {
        // 2000 functions all named by one 64 KiB name: 128 MB of copies
        // from a 210 KB table if decoded.
        let t = {
            let mut names = vec![b'x'; 64 << 10];
            names[(64 << 10) - 1] = 0;
            let fs = vec![
                Func {
                    name: 0,
                    inl_pcdata: 0,
                    inl_tree: u32::MAX
                };
                2000
            ];
            synth::table(&fs, &names, &[0])
        };
        assert!(t.len() < 300 << 10, "{}", t.len());
        assert_eq!(
            malformed_msg(&t),
            format!(
                "the names of the first 2 of 2000 functions already take {} bytes, \
                 more than the {}-byte name table holds (names overlap)",
                2 * ((64 << 10) - 1),
                64 << 10
            )
        );
        // Distinct names filling the table exactly are fine.
        let t = go120(50, 100);
        assert_eq!(parse(&t, t.len() as u64).unwrap().funcs.len(), 50);
    }

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
        let t = go116_table();
        let t = parse(&t, t.len() as u64).unwrap();
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
            // As the section size says (a cut file) and as the bytes say.
            assert!(
                matches!(parse(&t[..n], t.len() as u64), Err(PclnError::Truncated(_))),
                "cut at {n}"
            );
            assert!(parse(&t[..n], n as u64).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn old_magic_is_unsupported() {
        let mut t = go116_table();
        t[..4].copy_from_slice(&MAGIC_GO12.to_le_bytes());
        assert_eq!(
            parse(&t, t.len() as u64).unwrap_err(),
            PclnError::BadMagic(MAGIC_GO12)
        );
    }
}
