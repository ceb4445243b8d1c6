//! The few ELF facts the resolver needs: loadable segments (for vaddr → file
//! offset), section headers when they exist, and function symbols.
//!
//! Section headers are optional here: a truncated file loses them (they sit at
//! the end) and a Go binary is still readable through its segments.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym};
use object::Endianness;

#[derive(Debug)]
pub(crate) enum ElfError {
    NotElf,
    Unsupported(String),
    Malformed(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub flags: u32,
}

impl Segment {
    pub fn executable(&self) -> bool {
        self.flags & elf::PF_X.0 != 0
    }
    pub fn writable(&self) -> bool {
        self.flags & elf::PF_W.0 != 0
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub name: String,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    /// SHT_NOBITS (.bss): no bytes in the file.
    pub nobits: bool,
}

/// A defined function symbol from `.symtab` or `.dynsym`.
#[derive(Debug, Clone)]
pub(crate) struct FuncSym {
    pub name: String,
    pub value: u64,
    pub size: u64,
}

#[derive(Debug)]
pub(crate) struct Elf {
    pub machine: u16,
    pub segments: Vec<Segment>,
    pub sections: Vec<Section>,
    pub symtab: Vec<FuncSym>,
    pub dynsym: Vec<FuncSym>,
}

impl Elf {
    pub fn parse(data: &[u8]) -> Result<Elf, ElfError> {
        if data.len() < 4 || data[..4] != elf::ELFMAG {
            return Err(ElfError::NotElf);
        }
        // e_ident[EI_CLASS] and e_ident[EI_DATA].
        match data.get(4) {
            Some(2) => {}
            Some(1) => return Err(ElfError::Unsupported("32-bit ELF".into())),
            _ => return Err(ElfError::Malformed("bad ELF class".into())),
        }
        if data.get(5) != Some(&1) {
            return Err(ElfError::Unsupported("big-endian ELF".into()));
        }
        let header = elf::FileHeader64::<Endianness>::parse(data)
            .map_err(|e| ElfError::Malformed(e.to_string()))?;
        let endian = header
            .endian()
            .map_err(|e| ElfError::Malformed(e.to_string()))?;
        let machine = header.e_machine(endian).0;

        let phdrs = header
            .program_headers(endian, data)
            .map_err(|e| ElfError::Malformed(e.to_string()))?;
        let segments: Vec<Segment> = phdrs
            .iter()
            .filter(|p| p.p_type(endian) == elf::PT_LOAD)
            .map(|p| Segment {
                vaddr: p.p_vaddr(endian),
                offset: p.p_offset(endian),
                filesz: p.p_filesz(endian),
                flags: p.p_flags(endian).0,
            })
            .collect();

        // A broken or cut-off section table is not fatal: Go binaries are
        // readable through segments alone.
        let mut sections = Vec::new();
        let mut symtab = Vec::new();
        let mut dynsym = Vec::new();
        match header.sections(endian, data) {
            Ok(table) => {
                for s in table.iter() {
                    let name = table.section_name(endian, s).unwrap_or_default();
                    sections.push(Section {
                        name: String::from_utf8_lossy(name).into_owned(),
                        addr: s.sh_addr(endian),
                        offset: s.sh_offset(endian),
                        size: s.sh_size(endian),
                        nobits: s.sh_type(endian) == elf::SHT_NOBITS,
                    });
                }
                for (kind, out) in [
                    (elf::SHT_SYMTAB, &mut symtab),
                    (elf::SHT_DYNSYM, &mut dynsym),
                ] {
                    match table.symbols(endian, data, kind) {
                        Ok(syms) => {
                            for sym in syms.iter() {
                                if sym.st_type() != elf::STT_FUNC
                                    || sym.st_shndx(endian) == elf::SHN_UNDEF
                                    || sym.st_value(endian) == 0
                                {
                                    continue;
                                }
                                let Ok(name) = syms.symbol_name(endian, sym) else {
                                    continue;
                                };
                                out.push(FuncSym {
                                    name: String::from_utf8_lossy(name).into_owned(),
                                    value: sym.st_value(endian),
                                    size: sym.st_size(endian),
                                });
                            }
                        }
                        Err(e) => log::debug!("ignoring unreadable symbol table: {e}"),
                    }
                }
            }
            Err(e) => log::debug!("no usable section headers: {e}"),
        }
        Ok(Elf {
            machine,
            segments,
            sections,
            symtab,
            dynsym,
        })
    }

    /// The segment whose file-backed bytes hold `vaddr`.
    fn segment_of(&self, vaddr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
    }

    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let s = self.segment_of(vaddr)?;
        s.offset.checked_add(vaddr - s.vaddr)
    }

    pub fn is_executable(&self, vaddr: u64) -> bool {
        self.segment_of(vaddr).is_some_and(Segment::executable)
    }

    /// File bytes from `vaddr` to the end of its segment (clipped to the
    /// file, which may be truncated), with their file offset.
    pub fn bytes_from<'d>(&self, data: &'d [u8], vaddr: u64) -> Option<(&'d [u8], u64)> {
        let s = self.segment_of(vaddr)?;
        let start = s.offset.checked_add(vaddr - s.vaddr)?;
        let end = s.offset.checked_add(s.filesz)?;
        let bytes = clip(data, start, end);
        (!bytes.is_empty()).then_some((bytes, start))
    }

    /// Exactly `len` bytes at `vaddr`, or None.
    pub fn read<'d>(&self, data: &'d [u8], vaddr: u64, len: u64) -> Option<&'d [u8]> {
        let (bytes, _) = self.bytes_from(data, vaddr)?;
        bytes.get(..usize::try_from(len).ok()?)
    }

    /// File bytes of a segment (clipped to the file).
    pub fn segment_bytes<'d>(&self, data: &'d [u8], s: &Segment) -> &'d [u8] {
        clip(data, s.offset, s.offset.saturating_add(s.filesz))
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// File bytes of a section (clipped to the file), with their file offset.
    pub fn section_bytes<'d>(&self, data: &'d [u8], s: &Section) -> (&'d [u8], u64) {
        if s.nobits {
            return (&[], s.offset);
        }
        (
            clip(data, s.offset, s.offset.saturating_add(s.size)),
            s.offset,
        )
    }
}

/// `data[start..end]` with both ends clamped to the data.
fn clip(data: &[u8], start: u64, end: u64) -> &[u8] {
    let len = data.len() as u64;
    let start = start.min(len) as usize;
    let end = end.min(len) as usize;
    data.get(start..end.max(start)).unwrap_or_default()
}
