//! Reading Go binaries: functions, versions, probe sites.
//!
//! Works on unmodified, stripped release builds (no `.symtab`, no DWARF):
//! functions come from `.symtab`, else `.dynsym`, else Go's own pclntab,
//! which every Go binary keeps. Probe sites come from decoding the code.
//!
//! ```no_run
//! # use podtrace::resolve::GoBinary;
//! let bin = GoBinary::open("/usr/bin/kubelet".as_ref())?;
//! let f = bin.function("k8s.io/kubernetes/pkg/kubelet.(*Kubelet).SyncPod").unwrap();
//! let sites = bin.sites(f)?;
//! let entry_file_offset = bin.file_offset(sites.entry_site.vaddr());
//! # Ok::<(), podtrace::resolve::ResolveError>(())
//! ```
//!
//! The bottom of the pipeline: uses no other module of the crate.

mod buildinfo;
mod elf;
mod inline;
mod pclntab;
mod sites;

pub use buildinfo::{read_file as build_info_of_file, BuildInfo, Module};

use elf::{Elf, ElfError, FuncSym};
use pclntab::PclnError;
use serde::Serialize;
use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an ELF file", path.display())]
    NotElf { path: PathBuf },
    #[error("{}: unsupported ELF file: {what}", path.display())]
    UnsupportedElf { path: PathBuf, what: String },
    #[error("{}: malformed ELF file: {what}", path.display())]
    BadElf { path: PathBuf, what: String },
    #[error("{}: not a Go binary (no .go.buildinfo and no pclntab found)", path.display())]
    NotGo { path: PathBuf },
    #[error("{}: Go build info found but no pclntab (function table)", path.display())]
    NoPclntab { path: PathBuf },
    #[error("{}: pclntab truncated at offset {offset:#x}", path.display())]
    PclntabTruncated { path: PathBuf, offset: u64 },
    #[error("{}: unsupported pclntab version (magic {magic:#x})", path.display())]
    UnsupportedPclntab { path: PathBuf, magic: u32 },
    #[error("{}: malformed pclntab at offset {offset:#x}: {what}", path.display())]
    BadPclntab {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{}: function {name} [{entry:#x}, {end:#x}): code not in the file", path.display())]
    NoCode {
        path: PathBuf,
        name: String,
        entry: u64,
        end: u64,
    },
    #[error("{}: instruction decoding supports x86-64 only (ELF machine {machine})", path.display())]
    UnsupportedArch { path: PathBuf, machine: u16 },
}

/// A function: `[entry, end)` in virtual addresses as linked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Function {
    pub name: String,
    pub entry: u64,
    /// Exclusive. From the pclntab this is the next function's entry, so it
    /// includes the INT3 padding after the function.
    pub end: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SymbolSource {
    Symtab,
    Dynsym,
    Pclntab,
}

/// Where the pclntab's entry offsets get their base from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TextStartSource {
    /// `pcHeader.textStart` (Go 1.18–1.25).
    PcHeader,
    /// `runtime.moduledata.text` (Go 1.26+ leaves pcHeader.textStart 0).
    Moduledata,
    /// Last resort: the `.text` section start. Wrong for binaries whose
    /// `.text` starts before `runtime.text` (external linking), hence logged.
    TextSection,
    /// Go 1.16–1.17 tables hold absolute entries.
    Absolute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GoidSource {
    /// Read from `runtime.goroutineheader`'s load of `gp.goid`.
    Decoded,
    /// From the per-version table (code not decodable).
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GoidOffset {
    pub offset: u32,
    pub source: GoidSource,
}

/// Where to put the entry probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EntrySite {
    /// The JBE of the stack-bound check (`cmp rsp,[r14+0x10]; jbe` or the
    /// r12 forms for bigger frames). The kernel emulates a jump instead of
    /// single-stepping it, and registers still hold the arguments.
    PrologueJump { vaddr: u64 },
    /// No stack check (NOSPLIT leaf, assembly): the first instruction.
    FunctionStart { vaddr: u64 },
}

impl EntrySite {
    pub fn vaddr(&self) -> u64 {
        match *self {
            EntrySite::PrologueJump { vaddr } | EntrySite::FunctionStart { vaddr } => vaddr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionSites {
    pub entry: u64,
    pub entry_site: EntrySite,
    /// Every near RET in `[entry, end)`.
    pub rets: Vec<u64>,
    /// Direct JMP/Jcc whose target is outside the function (tail calls):
    /// the function returns without passing one of `rets`.
    pub tail_jumps: Vec<u64>,
    /// (call site, direct call target).
    pub calls: Vec<(u64, u64)>,
}

/// A Go ELF binary, read fully into memory.
pub struct GoBinary {
    path: PathBuf,
    data: Vec<u8>,
    elf: Elf,
    build_info: Option<BuildInfo>,
    source: SymbolSource,
    text_start: Option<(u64, TextStartSource)>,
    functions: Vec<Function>,
    /// Indices into `functions`, sorted by name.
    by_name: Vec<u32>,
    goid: Option<GoidOffset>,
    /// File range of the pclntab (from its pcHeader to the end of its
    /// section or segment) and its address, when one was found.
    pclntab: Option<PclntabAt>,
    /// Inlined function → functions it was inlined into, on first use.
    inlined_into: OnceLock<std::collections::BTreeMap<String, Vec<String>>>,
}

impl std::fmt::Debug for GoBinary {
    // Not derived: the file bytes and function list would flood any log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoBinary")
            .field("path", &self.path)
            .field("go_version", &self.go_version())
            .field("symbol_source", &self.source)
            .field("functions", &self.functions.len())
            .field("text_start", &self.text_start)
            .field("goid", &self.goid)
            .finish_non_exhaustive()
    }
}

impl GoBinary {
    pub fn open(path: &Path) -> Result<GoBinary, ResolveError> {
        let data = std::fs::read(path).map_err(|source| ResolveError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        GoBinary::from_bytes(data, path.to_path_buf())
    }

    pub fn from_bytes(data: Vec<u8>, path: PathBuf) -> Result<GoBinary, ResolveError> {
        let elf = Elf::parse(&data).map_err(|e| match e {
            ElfError::NotElf => ResolveError::NotElf { path: path.clone() },
            ElfError::Unsupported(what) => ResolveError::UnsupportedElf {
                path: path.clone(),
                what,
            },
            ElfError::Malformed(what) => ResolveError::BadElf {
                path: path.clone(),
                what,
            },
        })?;
        let build_info = buildinfo::read(&elf, &data);

        let mut text_start = None;
        let mut pclntab = pclntab_section(&elf).map(|s| {
            let (bytes, off) = elf.section_bytes(&data, s);
            (off as usize..off as usize + bytes.len(), s.addr)
        });
        let (source, mut functions) = if let Some(f) = go_symbols(&elf.symtab) {
            (SymbolSource::Symtab, f)
        } else if let Some(f) = go_symbols(&elf.dynsym) {
            (SymbolSource::Dynsym, f)
        } else {
            let (funcs, text, found) = pclntab_functions(&elf, &data, &path, build_info.is_some())?;
            text_start = Some(text);
            pclntab = Some(found);
            (SymbolSource::Pclntab, funcs)
        };
        functions.sort_by(|a, b| (a.entry, &a.name).cmp(&(b.entry, &b.name)));
        functions.dedup();
        let mut by_name: Vec<u32> = (0..functions.len() as u32).collect();
        // Ties by index, i.e. by entry: the lowest entry of a name comes first.
        by_name.sort_unstable_by(|&a, &b| {
            (&functions[a as usize].name, a).cmp(&(&functions[b as usize].name, b))
        });

        let mut bin = GoBinary {
            path,
            data,
            elf,
            build_info,
            source,
            text_start,
            functions,
            by_name,
            goid: None,
            pclntab,
            inlined_into: OnceLock::new(),
        };
        bin.goid = bin.find_goid();
        Ok(bin)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the whole file, hex: which build this is.
    pub fn sha256_hex(&self) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(&self.data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Size of the file in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// Functions the compiler inlined into the given function's callers:
    /// the names of the functions whose code holds an inlined copy of
    /// `name` (from the inline trees of Go 1.18+ binaries). A uprobe on
    /// `name` does not see those calls. Empty when none, or when the
    /// tables cannot be read.
    pub fn inlined_into(&self, name: &str) -> &[String] {
        self.inline_map().get(name).map_or(&[], Vec::as_slice)
    }

    /// Inlined function → functions holding a copy, from the inline trees
    /// (read once, on first use).
    fn inline_map(&self) -> &std::collections::BTreeMap<String, Vec<String>> {
        self.inlined_into
            .get_or_init(|| inline_map_of(&self.elf, &self.data, self.pclntab.clone()))
    }

    /// Functions the compiler inlined into every caller, sorted: inline
    /// trees name them but no function entry has them, so there is no code
    /// to attach to. Empty when the inline trees cannot be read. A function
    /// inlined into its callers whose body cannot fault may leave no name
    /// at all; it is then simply absent.
    pub fn inlined_functions(&self) -> Vec<&str> {
        self.inline_map()
            .keys()
            .map(String::as_str)
            .filter(|n| self.function(n).is_none())
            .collect()
    }

    /// e.g. "go1.19.8", from `.go.buildinfo`.
    pub fn go_version(&self) -> Option<&str> {
        self.build_info.as_ref().map(|b| b.go_version.as_str())
    }

    /// (major, minor) of the Go release, e.g. (1, 23) for "go1.23.8".
    pub fn go_release(&self) -> Option<(u32, u32)> {
        parse_go_release(self.go_version()?)
    }

    pub fn build_info(&self) -> Option<&BuildInfo> {
        self.build_info.as_ref()
    }

    /// Version of a module in the build, e.g. "k8s.io/cri-api" → "v0.27.1".
    /// If the module is replaced by another version of a module, that
    /// version (what was compiled); a replacement by a local directory
    /// keeps the required version. Modules built in place show "(devel)"
    /// (Kubernetes' staging k8s.io/* modules): use the main module's version.
    pub fn module_version(&self, module_path: &str) -> Option<&str> {
        let m = self.build_info.as_ref()?.module(module_path)?;
        match &m.replace {
            Some(r) if r.version.starts_with('v') => Some(r.version.as_str()),
            _ => Some(m.version.as_str()),
        }
    }

    pub fn symbol_source(&self) -> SymbolSource {
        self.source
    }

    /// The base of the pclntab's entry offsets and where it came from; None
    /// when functions came from a symbol table.
    pub fn text_start(&self) -> Option<(u64, TextStartSource)> {
        self.text_start
    }

    /// All functions, sorted by entry.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// By name, e.g. "k8s.io/apimachinery/pkg/util/wait.PollUntilContextTimeout".
    /// Names are spelled as in the pclntab (assembly functions without
    /// `.abi0`). A generic instantiation given in full, e.g.
    /// `slices.Sort[go.shape.int]`, also finds the `slices.Sort[...]` of a
    /// Go 1.18–1.21 pclntab. With duplicate names, the lowest entry wins.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.lookup(name)
            .or_else(|| self.lookup(&abbreviate_brackets(name)?))
    }

    fn lookup(&self, name: &str) -> Option<&Function> {
        let i = self
            .by_name
            .partition_point(|&i| self.functions[i as usize].name.as_str() < name);
        let f = self.functions.get(*self.by_name.get(i)? as usize)?;
        (f.name == name).then_some(f)
    }

    /// The function whose `[entry, end)` holds `vaddr`.
    pub fn function_at(&self, vaddr: u64) -> Option<&Function> {
        let i = self.functions.partition_point(|f| f.entry <= vaddr);
        let f = self.functions.get(i.checked_sub(1)?)?;
        (vaddr < f.end).then_some(f)
    }

    /// File offset of `vaddr`, through the PT_LOAD segment holding it: what
    /// a uprobe attached by offset needs.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.elf.file_offset(vaddr)
    }

    /// The function's bytes.
    pub fn code(&self, f: &Function) -> Result<&[u8], ResolveError> {
        f.end
            .checked_sub(f.entry)
            .and_then(|len| self.elf.read(&self.data, f.entry, len))
            .ok_or_else(|| ResolveError::NoCode {
                path: self.path.clone(),
                name: f.name.clone(),
                entry: f.entry,
                end: f.end,
            })
    }

    /// Decode the function: entry probe site, RETs, tail jumps, calls.
    pub fn sites(&self, f: &Function) -> Result<FunctionSites, ResolveError> {
        if self.elf.machine != object::elf::EM_X86_64.0 {
            return Err(ResolveError::UnsupportedArch {
                path: self.path.clone(),
                machine: self.elf.machine,
            });
        }
        Ok(sites::decode(self.code(f)?, f.entry, f.end))
    }

    /// How many integer result registers (RAX, RBX, RCX, RDI, …) the
    /// function fills before its RETs: its result shape in words, e.g. 3
    /// for `(bool, error)`, 4 for `(bool, func(), error)`. Reliable for
    /// functions that call something on every return path (any `defer`);
    /// None if it has no RET.
    pub fn result_regs(&self, f: &Function) -> Result<Option<usize>, ResolveError> {
        if self.elf.machine != object::elf::EM_X86_64.0 {
            return Err(ResolveError::UnsupportedArch {
                path: self.path.clone(),
                machine: self.elf.machine,
            });
        }
        Ok(sites::result_regs(self.code(f)?, f.entry, f.end))
    }

    /// Offset of `goid` in `runtime.g` for this binary.
    pub fn goid_offset(&self) -> Option<u32> {
        self.goid.map(|g| g.offset)
    }

    /// The goid offset and how it was found.
    pub fn goid_info(&self) -> Option<GoidOffset> {
        self.goid
    }

    fn find_goid(&self) -> Option<GoidOffset> {
        let table = self
            .go_release()
            .and_then(|(major, minor)| sites::goid_table(major, minor));
        let decoded = (|| {
            if self.elf.machine != object::elf::EM_X86_64.0 {
                return None;
            }
            let gh = self.function("runtime.goroutineheader")?;
            let printstring = self.function("runtime.printstring")?.entry;
            let ints: Vec<u64> = ["runtime.printint", "runtime.printuint"]
                .iter()
                .filter_map(|n| self.function(n).map(|f| f.entry))
                .collect();
            sites::goid_from_goroutineheader(self.code(gh).ok()?, gh.entry, printstring, &ints)
        })();
        match (decoded, table) {
            (Some(d), t) => {
                if t.is_some_and(|t| t != d) {
                    log::warn!(
                        "{}: goid offset {d} read from runtime code differs from the table ({t:?}) for {:?}",
                        self.path.display(),
                        self.go_version()
                    );
                }
                Some(GoidOffset {
                    offset: d,
                    source: GoidSource::Decoded,
                })
            }
            (None, Some(t)) => Some(GoidOffset {
                offset: t,
                source: GoidSource::Table,
            }),
            (None, None) => None,
        }
    }
}

/// Inlined function → functions holding a copy, from the inline trees of
/// the pclntab at `pclntab` (empty when they cannot be read).
fn inline_map_of(
    elf: &Elf,
    data: &[u8],
    pclntab: Option<PclntabAt>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let Some((range, vaddr)) = pclntab else {
        return Default::default();
    };
    let Some(pcln) = data.get(range) else {
        return Default::default();
    };
    let Ok(h) = pclntab::parse_header(pcln, pcln.len() as u64) else {
        return Default::default();
    };
    let candidates: Vec<u64> = find_moduledata(elf, data, vaddr, &h)
        .map(|md| {
            (pclntab::moduledata::GOFUNC_FIRST..=pclntab::moduledata::GOFUNC_LAST)
                .step_by(8)
                .filter_map(|o| word(md, o))
                .filter(|&w| w != 0 && !elf.is_executable(w))
                .collect()
        })
        .unwrap_or_default();
    let read = |vaddr: u64, len: u64| -> Option<&[u8]> {
        let off = usize::try_from(elf.file_offset(vaddr)?).ok()?;
        data.get(off..off.checked_add(usize::try_from(len).ok()?)?)
    };
    inline::inlined_into(pcln, read, data.len() as u64, &candidates).unwrap_or_default()
}

/// Entry points for the fuzz targets in `fuzz/`: the readers under
/// [`GoBinary`] on raw bytes. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Decodes `data` as a pclntab (what `.gopclntab` holds); returns the
    /// number of functions read, 0 on an error.
    pub fn pclntab(data: &[u8]) -> usize {
        let _ = pclntab::looks_like_header(data);
        let size = data.len() as u64;
        let _ = pclntab::parse_header(data, size);
        pclntab::parse(data, size).map_or(0, |t| t.funcs.len())
    }

    /// The inline trees of the ELF in `data`, found as [`GoBinary`] finds
    /// them (pclntab section or segment scan, then moduledata) without
    /// decoding any code; returns how many inlined functions were named.
    pub fn inline_trees(data: &[u8]) -> usize {
        let Ok(elf) = Elf::parse(data) else {
            return 0;
        };
        let at = match pclntab_section(&elf) {
            Some(s) => {
                let (bytes, off) = elf.section_bytes(data, s);
                Some((off as usize..off as usize + bytes.len(), s.addr))
            }
            None => scan_pclntab(&elf, data)
                .ok()
                .map(|(vaddr, _, range)| (range, vaddr)),
        };
        inline_map_of(&elf, data, at).len()
    }
}

/// "go1.23.8", "go1.24rc1", "devel go1.25-abc…" → (1, 23) etc.
fn parse_go_release(v: &str) -> Option<(u32, u32)> {
    let rest = &v[v.find("go")? + 2..];
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// Go 1.18–1.21 pclntabs abbreviate a bracketed part of a name (generic
/// instantiation, the array in `type..eq.[2]T`) to `[...]` (cmd/link
/// pcln.go); symbol tables and later pclntabs spell it out.
fn abbreviate_brackets(name: &str) -> Option<String> {
    let (i, j) = (name.find('[')?, name.rfind(']')?);
    (i < j).then(|| format!("{}[...]{}", &name[..i], &name[j + 1..]))
}

/// Functions from a symbol table, if it holds the Go functions (it has
/// `runtime.main`); `.dynsym` of most Go binaries holds only cgo imports.
/// `runtime.text`/`runtime.etext` mark the text bounds and are not functions.
fn go_symbols(syms: &[FuncSym]) -> Option<Vec<Function>> {
    if !syms.iter().any(|s| s.name == "runtime.main") {
        return None;
    }
    let syms: Vec<&FuncSym> = syms
        .iter()
        .filter(|s| s.name != "runtime.text" && s.name != "runtime.etext")
        .collect();
    let mut entries: Vec<u64> = syms.iter().map(|s| s.value).collect();
    entries.sort_unstable();
    entries.dedup();
    let next_entry = |v: u64| {
        let i = entries.partition_point(|&e| e <= v);
        entries.get(i).copied().unwrap_or(v)
    };
    Some(
        syms.iter()
            .map(|s| Function {
                // Assembly functions are `x.abi0` in symbol tables, `x` in
                // the pclntab: use the pclntab spelling.
                name: s.name.strip_suffix(".abi0").unwrap_or(&s.name).to_string(),
                entry: s.value,
                // Go gives every function a size; fall back to the next symbol.
                end: if s.size > 0 {
                    s.value.saturating_add(s.size)
                } else {
                    next_entry(s.value)
                },
            })
            .collect(),
    )
}

/// Where the pclntab is: its file range (pcHeader to the end of its section
/// or segment) and its address.
type PclntabAt = (std::ops::Range<usize>, u64);
/// The text start the pclntab's entries are relative to, and its source.
type TextBase = (u64, TextStartSource);

/// Locate and decode the pclntab: the `.gopclntab` section (also named
/// `.data.rel.ro.gopclntab` in PIE builds), else a scan of the loadable
/// segments for a pcHeader that decodes.
fn pclntab_functions(
    elf: &Elf,
    data: &[u8],
    path: &Path,
    has_buildinfo: bool,
) -> Result<(Vec<Function>, TextBase, PclntabAt), ResolveError> {
    let pcln_err = |e: PclnError, file_off: u64| match e {
        PclnError::Truncated(rel) => ResolveError::PclntabTruncated {
            path: path.to_path_buf(),
            offset: file_off.saturating_add(rel),
        },
        PclnError::BadMagic(magic) => ResolveError::UnsupportedPclntab {
            path: path.to_path_buf(),
            magic,
        },
        PclnError::Malformed(what) => ResolveError::BadPclntab {
            path: path.to_path_buf(),
            offset: file_off,
            what,
        },
    };

    let (vaddr, table, range) = if let Some(s) = pclntab_section(elf) {
        let (bytes, off) = elf.section_bytes(data, s);
        // The section's own size, not the bytes the file holds: a cut file
        // is reported as cut, not as a table too small for its header.
        let table = pclntab::parse(bytes, s.size).map_err(|e| pcln_err(e, off))?;
        (s.addr, table, off as usize..off as usize + bytes.len())
    } else {
        scan_pclntab(elf, data).map_err(|err| match err {
            Some((e, off)) => pcln_err(e, off),
            None if has_buildinfo => ResolveError::NoPclntab {
                path: path.to_path_buf(),
            },
            None => ResolveError::NotGo {
                path: path.to_path_buf(),
            },
        })?
    };

    let (base, how) = match table.header.version {
        pclntab::Version::Go116 => (0, TextStartSource::Absolute),
        _ if table.header.text_start != 0 => (table.header.text_start, TextStartSource::PcHeader),
        _ => match moduledata_text(elf, data, vaddr, &table.header) {
            Some(text) => (text, TextStartSource::Moduledata),
            None => {
                let text = elf.section(".text").map(|s| s.addr).ok_or_else(|| {
                    ResolveError::BadPclntab {
                        path: path.to_path_buf(),
                        offset: elf.file_offset(vaddr).unwrap_or(0),
                        what: "no text start: pcHeader.textStart is 0, no runtime.moduledata, no .text section".into(),
                    }
                })?;
                log::warn!(
                    "{}: text start from the .text section ({text:#x}): runtime.moduledata not found; \
                     entries may be off if .text does not start at runtime.text",
                    path.display()
                );
                (text, TextStartSource::TextSection)
            }
        },
    };

    let n = table.funcs.len();
    let mut functions = Vec::with_capacity(n);
    for (i, (name, off)) in table.funcs.iter().enumerate() {
        let next = table.funcs.get(i + 1).map_or(table.end, |f| f.1);
        functions.push(Function {
            name: name.clone(),
            entry: base.wrapping_add(*off),
            end: base.wrapping_add(next),
        });
    }
    // A wrong base would put every entry somewhere random: insist that the
    // first function is code.
    if let Some(first) = functions.first() {
        if !elf.is_executable(first.entry) {
            return Err(ResolveError::BadPclntab {
                path: path.to_path_buf(),
                offset: elf.file_offset(vaddr).unwrap_or(0),
                what: format!(
                    "first function {} at {:#x} is not in an executable segment (text start {base:#x} from {how:?})",
                    first.name, first.entry
                ),
            });
        }
    }
    Ok((functions, (base, how), (range, vaddr)))
}

/// The `.gopclntab` section (`.data.rel.ro.gopclntab` in PIE builds).
fn pclntab_section(elf: &Elf) -> Option<&elf::Section> {
    elf.sections
        .iter()
        .find(|s| s.name.ends_with(".gopclntab") && !s.nobits && s.size > 0)
}

/// Scan the loadable segments (data before code) for a pcHeader that
/// decodes. On failure, the most telling error seen (a truncation beats
/// other errors), with the candidate's file offset; None if no candidate.
type Found = (u64, pclntab::Table, std::ops::Range<usize>);

/// Candidates whose pcHeader decodes but whose table does not, before the
/// scan gives up. Each costs up to the segment's size to check; without a
/// cap, a crafted segment packed with overlapping headers that all point
/// at one long almost-valid table costs headers × table (quadratic). Real
/// binaries have none: a stray header that passes the header checks
/// (offsets ascending, within the segment, room for nfunc) is unlikely.
const MAX_SCAN_CANDIDATES: usize = 16;

fn scan_pclntab(elf: &Elf, data: &[u8]) -> Result<Found, Option<(PclnError, u64)>> {
    let mut best: Option<(PclnError, u64)> = None;
    let mut candidates = 0usize;
    let segs = elf
        .segments
        .iter()
        .filter(|s| !s.executable())
        .chain(elf.segments.iter().filter(|s| s.executable()));
    for seg in segs {
        let bytes = elf.segment_bytes(data, seg);
        // The header is at least 4-aligned (in practice 8 or 32). Magic
        // bytes 1..4 are 0xff: a cheap first test.
        // (A plain indexed loop: it stays fast in unoptimised test builds.)
        let mut pos = align_offset(seg.vaddr, 4);
        while pos + 8 <= bytes.len() {
            let at = pos;
            pos += 4;
            if bytes[at + 3] != 0xff || !pclntab::looks_like_header(&bytes[at..]) {
                continue;
            }
            let pos = at;
            let size = seg.filesz.saturating_sub(pos as u64);
            if pclntab::parse_header(&bytes[pos..], size).is_ok() {
                candidates += 1;
                if candidates > MAX_SCAN_CANDIDATES {
                    log::debug!(
                        "pclntab scan: gave up after {MAX_SCAN_CANDIDATES} headers whose tables do not decode"
                    );
                    return Err(best);
                }
            }
            match pclntab::parse(&bytes[pos..], size) {
                Ok(table) => {
                    let start = seg.offset as usize + pos;
                    return Ok((
                        seg.vaddr + pos as u64,
                        table,
                        start..seg.offset as usize + bytes.len(),
                    ));
                }
                Err(e) => {
                    let off = seg.offset + pos as u64;
                    let better = match (&best, &e) {
                        (None, _) => true,
                        (Some((PclnError::Truncated(_), _)), _) => false,
                        (Some(_), PclnError::Truncated(_)) => true,
                        _ => false,
                    };
                    if better {
                        best = Some((e, off));
                    }
                }
            }
        }
    }
    Err(best)
}

/// Offset into a segment starting at `vaddr` of its first `align`-aligned
/// address (segments need not start aligned: Debian's containerd has its
/// data segment at …c28).
fn align_offset(vaddr: u64, align: u64) -> usize {
    ((align - vaddr % align) % align) as usize
}

/// `runtime.moduledata.text`: find the moduledata by its first word (the
/// pclntab's address), check the next fields agree, read `text`. Go 1.26+
/// puts it in a `.go.module` section; otherwise scan writable segments.
fn moduledata_text(elf: &Elf, data: &[u8], pcln_vaddr: u64, h: &pclntab::Header) -> Option<u64> {
    word(
        find_moduledata(elf, data, pcln_vaddr, h)?,
        pclntab::moduledata::TEXT,
    )
}

/// The little-endian u64 at `off` in `b`, if it is there.
fn word(b: &[u8], off: u64) -> Option<u64> {
    let off = usize::try_from(off).ok()?;
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// `runtime.moduledata` (from its start to the end of its section or
/// segment): found by its first word (the pclntab's address), checked by
/// the next fields. Go 1.26+ puts it in a `.go.module` section; otherwise
/// scan writable segments.
fn find_moduledata<'d>(
    elf: &Elf,
    data: &'d [u8],
    pcln_vaddr: u64,
    h: &pclntab::Header,
) -> Option<&'d [u8]> {
    use pclntab::moduledata as md;
    let check = |b: &[u8]| -> Option<()> {
        if b.len() < md::MIN_LEN as usize
            || word(b, 0)? != pcln_vaddr
            || word(b, md::FUNCNAMETAB)? != pcln_vaddr.wrapping_add(h.funcname_offset)
            || word(b, md::FTAB_LEN)? != h.nfunc + 1
        {
            return None;
        }
        let (text, etext) = (word(b, md::TEXT)?, word(b, md::ETEXT)?);
        (text < etext && elf.is_executable(text)).then_some(())
    };
    if let Some(s) = elf.section(".go.module") {
        let b = elf.section_bytes(data, s).0;
        if check(b).is_some() {
            return Some(b);
        }
    }
    let needle = pcln_vaddr.to_le_bytes();
    for seg in elf.segments.iter().filter(|s| s.writable()) {
        let bytes = elf.segment_bytes(data, seg);
        let mut pos = align_offset(seg.vaddr, 8);
        while pos + 8 <= bytes.len() {
            if bytes[pos] == needle[0]
                && bytes[pos..pos + 8] == needle
                && check(&bytes[pos..]).is_some()
            {
                return Some(&bytes[pos..]);
            }
            pos += 8;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_release() {
        assert_eq!(parse_go_release("go1.23.8"), Some((1, 23)));
        assert_eq!(parse_go_release("go1.24rc1"), Some((1, 24)));
        assert_eq!(parse_go_release("devel go1.25-abcdef"), Some((1, 25)));
        assert_eq!(parse_go_release("go1"), None);
        assert_eq!(parse_go_release("nothing"), None);
    }

    #[test]
    fn alignment() {
        assert_eq!(align_offset(0x3168c28, 16), 8);
        assert_eq!(align_offset(0x3168c30, 16), 0);
        assert_eq!(align_offset(0x401001, 4), 3);
    }

    #[test]
    fn abbreviated_names() {
        let a = |s| abbreviate_brackets(s);
        assert_eq!(
            a("type..eq.[2]runtime.Frame").unwrap(),
            "type..eq.[...]runtime.Frame"
        );
        assert_eq!(
            a("slices.Sort[go.shape.[]int,go.shape.int]").unwrap(),
            "slices.Sort[...]"
        );
        assert_eq!(a("main.(*T).M.func1"), None);
    }

    #[test]
    fn not_elf() {
        let e = GoBinary::from_bytes(b"#!/bin/sh\n".to_vec(), "/x/foo".into()).unwrap_err();
        assert_eq!(e.to_string(), "/x/foo: not an ELF file");
    }
}
