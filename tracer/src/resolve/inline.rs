//! Inline trees: which functions the compiler inlined into which.
//!
//! A uprobe on a function sees only the calls that reach its own code; calls
//! the compiler inlined into a caller run the callee's body inside the
//! caller and are never seen. Go keeps, for tracebacks, an inline tree per
//! function (runtime/symtabinl.go):
//!
//! ```text
//! _func      … npcdata u32 @28 … nfuncdata u8 (@39 in Go 1.18–1.19, @43 from 1.20)
//!            then pcdata [npcdata]u32, then funcdata [nfuncdata]u32
//! pcdata[2]  PCDATA_InlTreeIndex: pc-value table (offset into pctab) whose
//!            values index the tree; the largest + 1 is its length
//! funcdata[3] FUNCDATA_InlTree: offset from moduledata.gofunc of the tree,
//!            entries { …, nameOff i32 @12 } (20 bytes, Go 1.18–1.19) or
//!            { funcID u8, _ [3]u8, nameOff i32 @4, … } (16 bytes, Go 1.20+)
//! ```
//!
//! `gofunc` is a moduledata field whose position moves between Go versions,
//! so callers pass every plausible word and the one under which the first
//! trees decode to real names is used. Everything is bounds-checked; any
//! inconsistency gives None, never a panic.

use std::collections::BTreeMap;

use super::pclntab::{self, Version};

const PCDATA_INL_TREE_INDEX: u64 = 2;
const FUNCDATA_INL_TREE: u64 = 3;
/// No real function inlines more than this many calls; more is garbage.
const MAX_TREE: u64 = 1 << 16;

fn u32_at(b: &[u8], off: u64) -> Option<u32> {
    let off = usize::try_from(off).ok()?;
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u32> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Largest value of a pc-value table (runtime.step), None if it has none.
/// Entries are (value delta, pc delta) varint pairs from -1; a zero byte
/// ends the table, except as the very first value delta.
fn max_value(pctab: &[u8], start: usize) -> Option<i32> {
    let (mut pos, mut val, mut max) = (start, -1i32, None);
    loop {
        if max.is_some() && *pctab.get(pos)? == 0 {
            return max;
        }
        let uv = varint(pctab, &mut pos)?;
        val = val.wrapping_add((-((uv & 1) as i32)) ^ (uv >> 1) as i32);
        varint(pctab, &mut pos)?; // the pc delta: not needed
        max = Some(max.map_or(val, |m: i32| m.max(val)));
    }
}

/// One function's inline tree: where it is (offset from gofunc) and how
/// many entries it has.
struct Tree {
    func: u32,
    gofunc_off: u64,
    len: u64,
}

/// `inlined name → names of the functions it was inlined into` (sorted,
/// deduplicated). `pcln` starts at the pcHeader; `read(vaddr, len)` reads
/// the binary's memory image; `gofunc_candidates` are the moduledata words
/// that may be `gofunc`. None when the tables are not Go 1.18+ or no
/// candidate decodes.
pub(crate) fn inlined_into<'d>(
    pcln: &[u8],
    read: impl Fn(u64, u64) -> Option<&'d [u8]>,
    gofunc_candidates: &[u64],
) -> Option<BTreeMap<String, Vec<String>>> {
    let h = pclntab::parse_header(pcln).ok()?;
    let (nfuncdata_at, pcdata_at, entry_size, name_at) = match h.version {
        Version::Go116 => return None,
        Version::Go118 => (39u64, 40u64, 20u64, 12u64),
        Version::Go120 => (43, 44, 16, 4),
    };
    let (funcname, cu, pctab, pcln_off) = (
        h.funcname_offset,
        h.cu_offset,
        h.pctab_offset,
        h.pcln_offset,
    );
    let names = pcln.get(usize::try_from(funcname).ok()?..usize::try_from(cu).ok()?)?;
    let pctab_b = pcln.get(usize::try_from(pctab).ok()?..usize::try_from(pcln_off).ok()?)?;
    let name_at_off = |off: u32| -> Option<&str> {
        let s = usize::try_from(off).ok()?;
        if s > 0 && *names.get(s - 1)? != 0 {
            return None;
        }
        let rest = names.get(s..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        if len == 0 {
            return None;
        }
        std::str::from_utf8(&rest[..len]).ok()
    };

    // Every function's tree, from the _func records.
    let mut trees = Vec::new();
    for i in 0..h.nfunc {
        let funcoff = u64::from(u32_at(pcln, pcln_off + (2 * i + 1) * 4)?);
        let f = pcln_off.checked_add(funcoff)?;
        let npcdata = u64::from(u32_at(pcln, f + 28)?);
        let nfuncdata = u64::from(*pcln.get(usize::try_from(f + nfuncdata_at).ok()?)?);
        if npcdata <= PCDATA_INL_TREE_INDEX || nfuncdata <= FUNCDATA_INL_TREE {
            continue;
        }
        let pcdata = u32_at(pcln, f + pcdata_at + PCDATA_INL_TREE_INDEX * 4)?;
        let fd = u32_at(pcln, f + pcdata_at + npcdata * 4 + FUNCDATA_INL_TREE * 4)?;
        if pcdata == 0 || fd == u32::MAX {
            continue;
        }
        let Some(max) = max_value(pctab_b, pcdata as usize) else {
            continue;
        };
        let len = u64::try_from(max).ok()? + 1;
        if len > MAX_TREE {
            return None;
        }
        trees.push(Tree {
            func: u32_at(pcln, f + 4)?,
            gofunc_off: u64::from(fd),
            len,
        });
    }

    // The gofunc under which the first trees name real functions.
    let tree_names = |gofunc: u64, t: &Tree| -> Option<Vec<u32>> {
        let b = read(gofunc.checked_add(t.gofunc_off)?, t.len * entry_size)?;
        (0..t.len)
            .map(|k| {
                let off = u32_at(b, k * entry_size + name_at)?;
                name_at_off(off).map(|_| off)
            })
            .collect()
    };
    let gofunc = *gofunc_candidates
        .iter()
        .find(|&&g| trees.iter().take(64).all(|t| tree_names(g, t).is_some()))?;

    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &trees {
        let Some(caller) = name_at_off(t.func) else {
            continue;
        };
        for off in tree_names(gofunc, t).unwrap_or_default() {
            if let Some(callee) = name_at_off(off) {
                out.entry(callee.to_owned())
                    .or_default()
                    .push(caller.to_owned());
            }
        }
    }
    for callers in out.values_mut() {
        callers.sort_unstable();
        callers.dedup();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_value_tables() {
        // -1 → +1 (zigzag 4) → 0 (zigzag 1), pc deltas 1; then the end.
        assert_eq!(max_value(&[4, 1, 1, 1, 0], 0), Some(1));
        // Only the initial step: value stays -1.
        assert_eq!(max_value(&[0, 1, 0], 0), Some(-1));
        // Cut short: no panic, no value.
        assert_eq!(max_value(&[4], 0), None);
        assert_eq!(max_value(&[0x80, 0x80], 0), None);
        assert_eq!(max_value(&[], 5), None);
    }

    #[test]
    fn garbage_gives_none() {
        assert!(inlined_into(&[0u8; 64], |_, _| None, &[0]).is_none());
        assert!(inlined_into(&[], |_, _| None, &[0]).is_none());
    }
}
