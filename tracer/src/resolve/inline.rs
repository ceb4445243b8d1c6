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

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// Largest value of a pc-value table (runtime.step), None if it has none,
/// and how many bytes were read. Entries are (value delta, pc delta)
/// varint pairs from -1; a zero byte ends the table, except as the very
/// first value delta. Every step reads at least two bytes, so the work is
/// bounded by the table's bytes.
fn max_value(pctab: &[u8], start: usize) -> (Option<i32>, usize) {
    let (mut pos, mut val, mut max) = (start, -1i32, None);
    let read = |pos: usize| pos.saturating_sub(start);
    loop {
        match pctab.get(pos) {
            None => return (None, read(pos)),
            Some(0) if max.is_some() => return (max, read(pos + 1)),
            Some(_) => {}
        }
        let Some(uv) = varint(pctab, &mut pos) else {
            return (None, read(pos));
        };
        val = val.wrapping_add((-((uv & 1) as i32)) ^ (uv >> 1) as i32);
        // The pc delta: not needed.
        if varint(pctab, &mut pos).is_none() {
            return (None, read(pos));
        }
        max = Some(max.map_or(val, |m: i32| m.max(val)));
    }
}

/// One function's inline tree: the function's name offset, where the tree
/// is (offset from gofunc) and how many entries it has.
struct Tree {
    func: u32,
    gofunc_off: u64,
    len: u64,
}

/// Why the inline trees were not read (logged; the caller then knows of no
/// inlined calls, as for a binary without trees).
fn give_up<T>(why: std::fmt::Arguments) -> Option<T> {
    log::debug!("inline trees not read: {why}");
    None
}

/// `inlined name → names of the functions it was inlined into` (sorted,
/// deduplicated). `pcln` starts at the pcHeader; `read(vaddr, len)` reads
/// the binary's memory image, which holds `image_len` bytes in all;
/// `gofunc_candidates` are the moduledata words that may be `gofunc`. None
/// when the tables are not Go 1.18+, no candidate decodes, or they claim
/// more than their bytes can hold.
///
/// The tables are untrusted, so the work is bounded by their size:
/// pc-value tables and trees shared by several functions are decoded once
/// (the linker shares identical ones), distinct ones may not add up to more
/// bytes than their section holds (real ones do not overlap), and names are
/// looked up once per offset. Tree entries' parent links are never
/// followed (every entry of a function's tree was inlined into that
/// function, whatever its depth), so cyclic parents cannot loop.
pub(crate) fn inlined_into<'d>(
    pcln: &[u8],
    read: impl Fn(u64, u64) -> Option<&'d [u8]>,
    image_len: u64,
    gofunc_candidates: &[u64],
) -> Option<BTreeMap<String, Vec<String>>> {
    let h = pclntab::parse_header(pcln, pcln.len() as u64).ok()?;
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

    // Names by offset, each looked up once: a name starts after a NUL, so
    // the distinct names found do not overlap and all lookups together
    // read the name table at most once (plus one byte per repeat).
    let mut name_cache: HashMap<u32, Option<(usize, usize)>> = HashMap::new();
    let mut name_span = |off: u32| -> Option<(usize, usize)> {
        *name_cache.entry(off).or_insert_with(|| {
            let s = usize::try_from(off).ok()?;
            if s > 0 && *names.get(s - 1)? != 0 {
                return None;
            }
            let rest = names.get(s..)?;
            let len = rest.iter().position(|&b| b == 0)?;
            (len > 0 && std::str::from_utf8(&rest[..len]).is_ok()).then_some((s, len))
        })
    };
    let name_of = |span: (usize, usize)| -> &str {
        // Checked UTF-8 when cached.
        std::str::from_utf8(&names[span.0..span.0 + span.1]).unwrap_or_default()
    };

    // Every function's tree, from the _func records. The pc-value tables
    // are scanned once per distinct start; their bytes together may not
    // exceed the pctab's.
    let mut maxes: HashMap<u32, Option<i32>> = HashMap::new();
    let mut pctab_read = 0usize;
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
        let max = match maxes.get(&pcdata) {
            Some(&m) => m,
            None => {
                let (m, n) = max_value(pctab_b, pcdata as usize);
                pctab_read += n;
                if pctab_read > pctab_b.len() {
                    return give_up(format_args!(
                        "pc-value tables overlap: {pctab_read} bytes read from a {}-byte pctab",
                        pctab_b.len()
                    ));
                }
                maxes.insert(pcdata, m);
                m
            }
        };
        let Some(max) = max else {
            continue;
        };
        let len = u64::try_from(max).ok()? + 1;
        if len > MAX_TREE {
            return give_up(format_args!(
                "function {i}: inline tree of {len} entries (at most {MAX_TREE})"
            ));
        }
        trees.push(Tree {
            func: u32_at(pcln, f + 4)?,
            gofunc_off: u64::from(fd),
            len,
        });
    }

    // The name offsets of a tree's entries, None if any is not a name.
    let mut tree_names = |gofunc: u64, gofunc_off: u64, len: u64| -> Option<Vec<u32>> {
        let b = read(gofunc.checked_add(gofunc_off)?, len * entry_size)?;
        (0..len)
            .map(|k| {
                let off = u32_at(b, k * entry_size + name_at)?;
                name_span(off).map(|_| off)
            })
            .collect()
    };
    // The gofunc under which the first trees name real functions (the
    // first 64, or fewer if they are big: a check, not a decode).
    let mut checked = 0u64;
    let sample: Vec<&Tree> = trees
        .iter()
        .take(64)
        .take_while(|t| {
            checked += t.len;
            checked <= 4096 || checked == t.len
        })
        .collect();
    let gofunc = *gofunc_candidates.iter().find(|&&g| {
        sample
            .iter()
            .all(|t| tree_names(g, t.gofunc_off, t.len).is_some())
    })?;

    // Each distinct tree (by offset, largest length seen) decoded once;
    // together they may not hold more entries than the image has bytes for.
    let mut longest: HashMap<u64, u64> = HashMap::new();
    for t in &trees {
        let l = longest.entry(t.gofunc_off).or_default();
        *l = (*l).max(t.len);
    }
    let entries: u64 = longest.values().sum();
    if entries.saturating_mul(entry_size) > image_len {
        return give_up(format_args!(
            "{entries} inline-tree entries of {entry_size} bytes claimed by a {image_len}-byte binary"
        ));
    }
    let mut decoded: HashMap<u64, Vec<u32>> = HashMap::new();
    for (&off, &len) in &longest {
        let mut callees = tree_names(gofunc, off, len).unwrap_or_default();
        callees.sort_unstable();
        callees.dedup();
        decoded.insert(off, callees);
    }

    // (callee, caller) name offsets, deduplicated. Functions sharing a
    // tree each add its callees; together no more than the image could
    // hold if every function had a tree of its own (as in real binaries,
    // where a shared tree is a rare identical small one), else a few
    // functions sharing one huge tree would multiply it.
    let budget = image_len / entry_size;
    let mut visits = 0u64;
    let mut pairs: BTreeSet<(u32, u32)> = BTreeSet::new();
    for t in &trees {
        if name_span(t.func).is_none() {
            continue;
        }
        let callees = decoded.get(&t.gofunc_off).map_or(&[][..], Vec::as_slice);
        visits += callees.len() as u64;
        if visits > budget {
            return give_up(format_args!(
                "functions sharing inline trees name over {budget} inlined calls"
            ));
        }
        for &callee in callees {
            pairs.insert((callee, t.func));
        }
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (callee, caller) in pairs {
        let (Some(c), Some(f)) = (name_span(callee), name_span(caller)) else {
            continue;
        };
        out.entry(name_of(c).to_owned())
            .or_default()
            .push(name_of(f).to_owned());
    }
    for callers in out.values_mut() {
        callers.sort_unstable();
        callers.dedup();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::pclntab::synth::{self, Func};
    use super::*;

    /// Where the tests' gofunc image starts.
    const GOFUNC: u64 = 0x10_0000;

    /// Go 1.20 tree entries (16 bytes) naming these name offsets, with
    /// parentPc fields linking each entry to the next, the last back to the
    /// first: a cycle, which the decoder must not follow.
    fn tree(name_offs: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, &off) in name_offs.iter().enumerate() {
            // (High bit set: never a name offset, so that the tests' wrong
            // gofunc candidate, 4 bytes off, does not decode.)
            let parent = 0x8000_0000 | ((k + 1) % name_offs.len()) as u32;
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&parent.to_le_bytes());
            b.extend_from_slice(&[0; 4]);
        }
        b
    }

    /// A pc-value table whose values go -1 → 0 → … → max (then the end).
    fn pc_values(max: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for _ in 0..=max {
            b.extend_from_slice(&[2, 1]); // value +1 (zigzag 2), pc +1
        }
        b.push(0);
        b
    }

    fn decode(pcln: &[u8], image: &[u8]) -> Option<BTreeMap<String, Vec<String>>> {
        let read = |vaddr: u64, len: u64| -> Option<&[u8]> {
            let at = usize::try_from(vaddr.checked_sub(GOFUNC)?).ok()?;
            image.get(at..at.checked_add(usize::try_from(len).ok()?)?)
        };
        let image_len = (pcln.len() + image.len()) as u64;
        // A wrong candidate first: the right one is found by its names.
        inlined_into(pcln, read, image_len, &[GOFUNC + 4, GOFUNC])
    }

    #[test]
    fn pc_value_tables() {
        // -1 → +1 (zigzag 4) → 0 (zigzag 1), pc deltas 1; then the end.
        assert_eq!(max_value(&[4, 1, 1, 1, 0], 0), (Some(1), 5));
        // Only the initial step: value stays -1.
        assert_eq!(max_value(&[0, 1, 0], 0), (Some(-1), 3));
        // Cut short: no panic, no value.
        assert_eq!(max_value(&[4], 0).0, None);
        assert_eq!(max_value(&[0x80, 0x80], 0).0, None);
        assert_eq!(max_value(&[], 5), (None, 0));
    }

    #[test]
    fn garbage_gives_none() {
        assert!(inlined_into(&[0u8; 64], |_, _| None, 64, &[0]).is_none());
        assert!(inlined_into(&[], |_, _| None, 0, &[0]).is_none());
    }

    #[test]
    fn trees_with_cyclic_parents_decode_once() {
        // main.f holds inlined copies of main.g and main.h; main.k none.
        let (names, o) = synth::names(&["main.f", "main.g", "main.h", "main.k"]);
        let mut pctab = vec![0u8]; // offset 0 means "no table"
        pctab.extend(pc_values(1));
        let fs = [
            Func {
                name: o[0],
                inl_pcdata: 1,
                inl_tree: 0,
            },
            Func {
                name: o[3],
                inl_pcdata: 0,
                inl_tree: u32::MAX,
            },
        ];
        let t = synth::table(&fs, &names, &pctab);
        let map = decode(&t, &tree(&[o[1], o[2]])).unwrap();
        let f = vec!["main.f".to_string()];
        assert_eq!(
            map,
            BTreeMap::from([("main.g".into(), f.clone()), ("main.h".into(), f)])
        );
    }

    #[test]
    fn huge_tree_is_refused() {
        // One pc-value table claiming a tree of 2^20 entries.
        let (names, o) = synth::names(&["main.f", "main.g"]);
        let mut pctab = vec![0u8];
        // -1 + (2^20 + 1) = 2^20: zigzag 2^21 + 2, as a varint; pc +1.
        let mut v = (1u32 << 21) + 2;
        while v >= 0x80 {
            pctab.push((v as u8) | 0x80);
            v >>= 7;
        }
        pctab.extend_from_slice(&[v as u8, 1, 0]);
        let fs = [Func {
            name: o[0],
            inl_pcdata: 1,
            inl_tree: 0,
        }];
        let t = synth::table(&fs, &names, &pctab);
        assert_eq!(decode(&t, &tree(&[o[1]; 4])), None);
    }

    #[test]
    fn overlapping_pc_value_tables_are_refused() {
        // 3000 functions whose tables start at every step of one long
        // table: decoding each would read 3000 × 3000 steps.
        let (names, o) = synth::names(&["main.f", "main.g"]);
        let mut pctab = vec![0u8];
        pctab.extend(pc_values(2999));
        let fs: Vec<Func> = (0..3000)
            .map(|k| Func {
                name: o[0],
                inl_pcdata: 1 + 2 * k,
                inl_tree: 0,
            })
            .collect();
        let t = synth::table(&fs, &names, &pctab);
        assert_eq!(decode(&t, &tree(&vec![o[1]; 3000])), None);
        // The same functions sharing the table's start: decoded once.
        let shared: Vec<Func> = fs
            .iter()
            .map(|f| Func {
                inl_pcdata: 1,
                ..*f
            })
            .collect();
        let t = synth::table(&shared, &names, &pctab);
        let map = decode(&t, &tree(&vec![o[1]; 3000])).unwrap();
        assert_eq!(map["main.g"], vec!["main.f".to_string()]);
    }

    #[test]
    fn functions_sharing_a_huge_tree_are_refused() {
        // 2000 functions sharing one tree that names 1000 distinct
        // functions: 2 million (callee, caller) pairs from a 300 KB input.
        let list: Vec<String> = (0..3000).map(|i| format!("p.f{i:04}")).collect();
        let refs: Vec<&str> = list.iter().map(String::as_str).collect();
        let (names, o) = synth::names(&refs);
        let mut pctab = vec![0u8];
        pctab.extend(pc_values(999));
        let fs: Vec<Func> = (0..2000)
            .map(|k| Func {
                name: o[1000 + k],
                inl_pcdata: 1,
                inl_tree: 0,
            })
            .collect();
        let t = synth::table(&fs, &names, &pctab);
        let image = tree(&o[..1000]);
        assert!(t.len() + image.len() < 300 << 10);
        assert_eq!(decode(&t, &image), None);
        // A few functions sharing it are fine, in a binary big enough to
        // hold a copy for each (the budget: 16 bytes an entry).
        let t = synth::table(&fs[..3], &names, &pctab);
        let mut image = image;
        image.resize(3 * 1000 * 16, 0);
        let map = decode(&t, &image).unwrap();
        assert_eq!(map.len(), 1000);
        assert_eq!(map["p.f0999"], ["p.f1000", "p.f1001", "p.f1002"]);
    }
}
