//! `.go.buildinfo`: the Go version and module list that `go version -m`
//! prints (see Go's debug/buildinfo and runtime/debug.ParseBuildInfo).
//!
//! Header (32 bytes, 16-aligned): `"\xff Go buildinf:"`, ptrSize u8, flags u8.
//! flags & 2 (Go 1.18+): two varint-length-prefixed strings follow at +32.
//! Otherwise two pointers at +16 point to Go string headers {ptr, len}.

use super::elf::Elf;
use serde::Serialize;

pub(crate) const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const FLAG_BIG_ENDIAN: u8 = 0x1;
const FLAG_INLINE: u8 = 0x2;

/// One module: the main module, a dependency, or a replacement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Module {
    pub path: String,
    /// e.g. "v0.27.1"; "(devel)" for the main module of a VCS checkout and
    /// for staging modules built in place (k8s.io/* inside Kubernetes).
    pub version: String,
    /// "h1:…"; empty when not recorded.
    pub sum: String,
    pub replace: Option<Box<Module>>,
}

/// What `go version -m` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    /// e.g. "go1.19.8".
    pub go_version: String,
    /// Package path of the main package, e.g. "k8s.io/kubernetes/cmd/kubectl".
    pub path: String,
    pub main: Option<Module>,
    pub deps: Vec<Module>,
    /// `build` lines (key, value), e.g. ("GOARCH", "amd64").
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    pub fn module(&self, path: &str) -> Option<&Module> {
        self.main.iter().chain(&self.deps).find(|m| m.path == path)
    }
}

/// Locate and decode the build info; None when there is none or it is
/// unreadable (a Go binary without build info is still traceable).
pub(crate) fn read(elf: &Elf, data: &[u8]) -> Option<BuildInfo> {
    let (hdr_vaddr, hdr) = locate(elf, data)?;
    match decode(elf, data, hdr) {
        Ok((version, modinfo)) => {
            let mut info = parse_modinfo(&modinfo);
            info.go_version = version;
            Some(info)
        }
        Err(what) => {
            log::warn!("unreadable .go.buildinfo at {hdr_vaddr:#x}: {what}");
            None
        }
    }
}

/// Header bytes (to the end of the section or segment) and their vaddr.
fn locate<'d>(elf: &Elf, data: &'d [u8]) -> Option<(u64, &'d [u8])> {
    if let Some(s) = elf.section(".go.buildinfo") {
        let (b, _) = elf.section_bytes(data, s);
        if b.starts_with(MAGIC) {
            return Some((s.addr, b));
        }
    }
    // No section headers (or a renamed section): the header is 16-aligned
    // (in memory: segments need not start aligned) in a writable segment.
    for seg in elf.segments.iter().filter(|s| s.writable()) {
        let bytes = elf.segment_bytes(data, seg);
        let mut off = super::align_offset(seg.vaddr, 16);
        while off + HEADER_LEN <= bytes.len() {
            if bytes[off..].starts_with(MAGIC) {
                return Some((seg.vaddr + off as u64, &bytes[off..]));
            }
            off += 16;
        }
    }
    None
}

fn decode(elf: &Elf, data: &[u8], hdr: &[u8]) -> Result<(String, String), &'static str> {
    decode_with(hdr, |vaddr, len| elf.read(data, vaddr, len))
}

/// Most bytes [`read_file`] reads for one string or section: Go's module
/// text is tens of KB even for kubelet.
const FILE_READ_LIMIT: u64 = 4 << 20;

/// The build info of the ELF file at `path`, read with a few bounded reads
/// (headers, the `.go.buildinfo` section, and for Go < 1.18 the strings it
/// points at) instead of the whole file: discovery asks this of every
/// running executable. `Ok(None)`: not an ELF64 file with a
/// `.go.buildinfo` section, or unreadable build info.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Option<BuildInfo>> {
    use object::{
        elf::{FileHeader64, PT_LOAD},
        read::elf::{FileHeader as _, ProgramHeader as _, SectionHeader as _},
        Endianness, ReadRef as _,
    };
    let file = std::fs::File::open(path)?;
    let cache = object::ReadCache::new(file);
    let data = &cache;
    let Ok(header) = FileHeader64::<Endianness>::parse(data) else {
        return Ok(None);
    };
    let Ok(endian) = header.endian() else {
        return Ok(None);
    };
    let Ok(sections) = header.sections(endian, data) else {
        return Ok(None);
    };
    let Some((_, section)) = sections.section_by_name(endian, b".go.buildinfo") else {
        return Ok(None);
    };
    let Some((offset, size)) = section.file_range(endian) else {
        return Ok(None);
    };
    let Ok(hdr) = data.read_bytes_at(offset, size.min(FILE_READ_LIMIT)) else {
        return Ok(None);
    };
    if !hdr.starts_with(MAGIC) {
        return Ok(None);
    }
    let loads: Vec<(u64, u64, u64)> = header
        .program_headers(endian, data)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.p_type(endian) == PT_LOAD)
        .map(|p| (p.p_vaddr(endian), p.p_offset(endian), p.p_filesz(endian)))
        .collect();
    let read = |vaddr: u64, len: u64| -> Option<&[u8]> {
        if len > FILE_READ_LIMIT {
            return None;
        }
        let &(base, off, size) = loads
            .iter()
            .find(|&&(base, _, size)| vaddr >= base && vaddr - base < size)?;
        if vaddr - base + len > size {
            return None;
        }
        data.read_bytes_at(off + (vaddr - base), len).ok()
    };
    Ok(match decode_with(hdr, read) {
        Ok((version, modinfo)) => {
            let mut info = parse_modinfo(&modinfo);
            info.go_version = version;
            Some(info)
        }
        Err(_) => None,
    })
}

/// [`decode`] with `read(vaddr, len)` reading the target of a pointer.
fn decode_with<'d>(
    hdr: &'d [u8],
    read: impl Fn(u64, u64) -> Option<&'d [u8]>,
) -> Result<(String, String), &'static str> {
    if hdr.len() < HEADER_LEN {
        return Err("header truncated");
    }
    let ptr_size = usize::from(hdr[14]);
    let flags = hdr[15];
    let (version, modinfo) = if flags & FLAG_INLINE != 0 {
        let (version, rest) = varint_string(&hdr[HEADER_LEN..]).ok_or("bad version string")?;
        let (modinfo, _) = varint_string(rest).ok_or("bad module info string")?;
        (version, modinfo)
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return Err("bad pointer size");
        }
        let big = flags & FLAG_BIG_ENDIAN != 0;
        let word = |b: &[u8]| -> Option<u64> {
            let b = b.get(..ptr_size)?;
            let mut v = 0u64;
            for i in 0..ptr_size {
                let byte = if big { b[i] } else { b[ptr_size - 1 - i] };
                v = (v << 8) | u64::from(byte);
            }
            Some(v)
        };
        // Pointer to a Go string header {data pointer, length}.
        let string_at = |ptr: u64| -> Option<&[u8]> {
            let header = read(ptr, 2 * ptr_size as u64)?;
            let (p, n) = (word(header)?, word(header.get(ptr_size..)?)?);
            read(p, n)
        };
        let v = word(&hdr[16..])
            .and_then(string_at)
            .ok_or("bad version pointer")?;
        let m = word(&hdr[16 + ptr_size..])
            .and_then(string_at)
            .ok_or("bad module info pointer")?;
        (v, m)
    };
    let version = String::from_utf8_lossy(version).into_owned();
    if !version.starts_with("go") && !version.starts_with("devel") {
        return Err("version does not start with \"go\"");
    }
    // The module text is wrapped in 16-byte sentinels (cmd/go modload).
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &[][..]
    };
    Ok((version, String::from_utf8_lossy(modinfo).into_owned()))
}

/// A uvarint length then that many bytes.
fn varint_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len = 0u64;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let byte = *b.get(i)?;
        i += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let len = usize::try_from(len).ok()?;
    let end = i.checked_add(len)?;
    Some((b.get(i..end)?, b.get(end..)?))
}

/// Parse the tab-separated text of runtime/debug.BuildInfo.String().
pub(crate) fn parse_modinfo(text: &str) -> BuildInfo {
    fn module(fields: &[&str]) -> Module {
        Module {
            path: fields.first().unwrap_or(&"").to_string(),
            version: fields.get(1).unwrap_or(&"").to_string(),
            sum: fields.get(2).unwrap_or(&"").to_string(),
            replace: None,
        }
    }
    let mut info = BuildInfo::default();
    // `=>` lines replace the module on the line before (main or last dep).
    let mut last_is_dep = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once('\t') else {
            continue;
        };
        let fields: Vec<&str> = rest.split('\t').collect();
        match key {
            "go" => info.go_version = rest.to_string(),
            "path" => info.path = rest.to_string(),
            "mod" => {
                info.main = Some(module(&fields));
                last_is_dep = false;
            }
            "dep" => {
                info.deps.push(module(&fields));
                last_is_dep = true;
            }
            "=>" => {
                let target = if last_is_dep {
                    info.deps.last_mut()
                } else {
                    info.main.as_mut()
                };
                if let Some(m) = target {
                    m.replace = Some(Box::new(module(&fields)));
                }
            }
            "build" => {
                if let Some((k, v)) = split_setting(rest) {
                    info.settings.push((k, v));
                }
            }
            _ => {}
        }
    }
    info
}

/// `key=value`, where either side may be a Go-quoted string (values with
/// spaces, e.g. `-ldflags="-s -w"`).
fn split_setting(s: &str) -> Option<(String, String)> {
    let (key, rest) = if s.starts_with('"') {
        let (k, len) = unquote_prefix(s)?;
        (k, s.get(len..)?.strip_prefix('=')?)
    } else {
        let (k, v) = s.split_once('=')?;
        (k.to_string(), v)
    };
    let value = if rest.starts_with('"') {
        unquote_prefix(rest).map_or_else(|| rest.to_string(), |(v, _)| v)
    } else {
        rest.to_string()
    };
    Some((key, value))
}

/// Unquote a leading Go double-quoted string; returns it and the bytes used.
/// Handles the escapes strconv.Quote emits for printable ASCII text.
fn unquote_prefix(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_with_replace_and_quoted_settings() {
        let text = "path\texample.com/app\n\
                    mod\texample.com/app\t(devel)\t\n\
                    dep\tk8s.io/cri-api\tv0.27.1\th1:abc=\n\
                    dep\tk8s.io/fakedep\tv0.27.1\t\n\
                    =>\t../fakedep\t(devel)\t\n\
                    build\t-ldflags=\"-s -w\"\n\
                    build\tGOARCH=amd64\n";
        let info = parse_modinfo(text);
        assert_eq!(info.path, "example.com/app");
        assert_eq!(info.main.as_ref().unwrap().version, "(devel)");
        assert_eq!(info.deps.len(), 2);
        assert_eq!(info.deps[0].sum, "h1:abc=");
        let r = info.deps[1].replace.as_ref().unwrap();
        assert_eq!(
            (r.path.as_str(), r.version.as_str()),
            ("../fakedep", "(devel)")
        );
        assert_eq!(
            info.settings,
            vec![
                ("-ldflags".to_string(), "-s -w".to_string()),
                ("GOARCH".to_string(), "amd64".to_string())
            ]
        );
    }

    #[test]
    fn varint_strings() {
        assert_eq!(
            varint_string(&[2, b'h', b'i', 9]),
            Some((&b"hi"[..], &[9u8][..]))
        );
        assert_eq!(varint_string(&[5, b'h']), None);
        assert_eq!(varint_string(&[0x80; 12]), None);
    }
}
