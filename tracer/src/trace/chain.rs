//! Many trace files as one input: arguments that are globs (expanded here,
//! since a quoted glob reaches us unexpanded), comma-separated lists, and
//! rotated chains (FILE.N … FILE.1, FILE, written by `record --max-files`)
//! read as one stream of events, oldest file first ([`ChainReader`]).
//!
//! Knows file names and headers only; what the events mean is for the
//! readers above.

use std::{
    collections::BTreeSet,
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

use super::{
    reader::{Trace, TraceInfo, TraceReader},
    writer::{Rotation, ROTATED},
};
use crate::format::{CaptureCounts, Footer, Header, ProbeInfo, Rec};

/// One recording's files, oldest first: FILE.N … FILE.1, FILE (a file
/// that was never rotated is a chain of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// FILE: the name the recording was written to.
    pub base: PathBuf,
    /// Oldest first.
    pub files: Vec<PathBuf>,
    /// The node the recording ran on: the header's node name
    /// (`--node-name`, `$NODE_NAME`, else the hostname), or FILE's stem
    /// when it names none.
    pub node: String,
}

impl Chain {
    /// FILE's stem (`node-a.trace` → `node-a`).
    pub fn stem(&self) -> String {
        stem_of(&self.base)
    }
}

fn stem_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Whether a path component holds glob syntax (`*`, `?`, `[`).
fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell-style match of one file name: `*` any run, `?` one character,
/// `[abc]`, `[a-z]`, `[!a]` (or `[^a]`) one of a set. A `[` without its
/// `]` matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative with one backtrack point (the last `*`): linear enough.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match class(&p[pi..], n[ni]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None => (n[ni] == '[').then_some(1),
            },
            Some(&c) => (c == n[ni]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                pi += len;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[...]` class at the start of `p`: (whether `c` is in it, the class's
/// length); None if it has no closing `]`.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&x) = p.get(i) {
        if x == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&y| y != ']') {
            let y = p[i + 2];
            hit |= x <= c && c <= y;
            i += 3;
        } else {
            hit |= x == c;
            i += 1;
        }
    }
    None
}

/// The files a glob names, sorted; components with glob syntax are matched
/// against directory listings (names starting with `.` only by a pattern
/// that does too).
fn expand_glob(pattern: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = vec![PathBuf::new()];
    for comp in pattern.components() {
        let s = comp.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for dir in &found {
            if !is_glob(&s) {
                next.push(dir.join(comp));
                continue;
            }
            let listed = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            };
            let Ok(entries) = std::fs::read_dir(listed) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && !s.starts_with('.') {
                    continue;
                }
                if glob_match(&s, &name) {
                    next.push(dir.join(&name));
                }
            }
        }
        found = next;
    }
    let mut files: Vec<PathBuf> = found.into_iter().filter(|p| p.is_file()).collect();
    files.sort();
    Ok(files)
}

/// The files of one argument: a path, a glob, or several of either
/// separated by commas. A literal path is kept as given (opening it
/// reports a missing file); a glob that matches no file is an error.
pub fn expand_arg(arg: &Path) -> Result<Vec<PathBuf>> {
    let s = arg.to_string_lossy();
    let mut out: Vec<PathBuf> = Vec::new();
    // A literal path that exists wins over reading its commas as a list.
    let pieces: Vec<&str> = if arg.exists() {
        vec![&s]
    } else {
        s.split(',').filter(|p| !p.is_empty()).collect()
    };
    for piece in pieces {
        let p = Path::new(piece);
        if is_glob(piece) && !p.exists() {
            let files = expand_glob(p)?;
            if files.is_empty() {
                bail!("{piece}: no trace file matches");
            }
            out.extend(files);
        } else {
            out.push(p.to_path_buf());
        }
    }
    if out.is_empty() {
        bail!("`{s}`: no trace file named");
    }
    Ok(out)
}

/// `FILE.N` → (FILE, N) for N ≥ 1; anything else is (itself, 0).
fn split_rotation(p: &Path) -> (PathBuf, u32) {
    let s = p.as_os_str().to_string_lossy();
    if let Some((base, n)) = s.rsplit_once('.') {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !base.ends_with('/') {
            if let Ok(n) = n.parse::<u32>() {
                if n >= 1 {
                    return (PathBuf::from(base), n);
                }
            }
        }
    }
    (p.to_path_buf(), 0)
}

/// Reads only the header line of a trace.
pub fn read_header(path: &Path) -> Result<Header> {
    let f = File::open(path).with_context(|| format!("opening trace {}", path.display()))?;
    let r = TraceReader::new(BufReader::new(f), &path.display().to_string())?;
    Ok(r.header().clone())
}

/// Groups files into rotated chains, in the order their first file was
/// given. `FILE.N` joins FILE's chain when both were written by one
/// recording (same node and clock offset in their headers: the writer
/// copies the header into every file it rotates to); otherwise it is a
/// chain of its own. Duplicates (the same file twice) are read once.
pub fn chains(files: &[PathBuf]) -> Result<Vec<Chain>> {
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    // (base, node, clock offset) → numbered files.
    type Key = (PathBuf, String, i64);
    let mut groups: Vec<(Key, Vec<(u32, PathBuf)>)> = Vec::new();
    for f in files {
        let canon = f.canonicalize().unwrap_or_else(|_| f.clone());
        if !seen.insert(canon) {
            continue;
        }
        let h = read_header(f)?;
        let (base, n) = split_rotation(f);
        let key = (base, h.node().to_string(), h.mono_to_unix_ns);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push((n, f.clone())),
            None => groups.push((key, vec![(n, f.clone())])),
        }
    }
    let mut out = Vec::new();
    for ((base, node, _), mut v) in groups {
        // Oldest first: the highest number first, FILE itself last.
        v.sort_by_key(|x| std::cmp::Reverse(x.0));
        if v.windows(2).any(|w| w[0].0 == w[1].0) {
            // Two files of one number: not one recording's chain.
            for (_, f) in v {
                out.push(Chain {
                    node: node_name(&node, &f),
                    base: f.clone(),
                    files: vec![f],
                });
            }
            continue;
        }
        out.push(Chain {
            node: node_name(&node, &base),
            base,
            files: v.into_iter().map(|(_, f)| f).collect(),
        });
    }
    Ok(out)
}

/// The header's node (`record --node-name`, `$NODE_NAME`, else the
/// hostname), or the file's stem for a trace that names none.
fn node_name(node: &str, base: &Path) -> String {
    if node.trim().is_empty() {
        stem_of(base)
    } else {
        node.to_string()
    }
}

/// Older rotated files of `chain` that exist on disk but were not given
/// (FILE given alone while FILE.1 is there): for a hint.
pub fn older_not_given(chain: &Chain) -> Vec<PathBuf> {
    let oldest = chain.files.first().map_or(0, |f| split_rotation(f).1);
    let mut out = Vec::new();
    let mut n = oldest + 1;
    loop {
        let p = Rotation::numbered(&chain.base, n);
        if !p.is_file() {
            break;
        }
        out.push(p);
        n += 1;
    }
    out
}

/// A chain's files read as one trace: their events in file order (oldest
/// first), the probe table grown as the files' headers and `binary` lines
/// grow it. A call open at the end of one file closes in the next, so the
/// reader above correlates the whole stream with one state (goroutine
/// stacks, pods): a pod start that straddles a rotation stays whole.
pub struct ChainReader {
    files: Vec<PathBuf>,
    next: usize,
    cur: TraceReader<BufReader<File>>,
    infos: Vec<TraceInfo>,
    captures: CaptureCounts,
    events: u64,
}

impl ChainReader {
    pub fn open(files: &[PathBuf]) -> Result<ChainReader> {
        let Some(first) = files.first() else {
            bail!("no trace file given");
        };
        Ok(ChainReader {
            cur: Trace::open(first)?,
            files: files.to_vec(),
            next: 1,
            infos: Vec::new(),
            captures: CaptureCounts::default(),
            events: 0,
        })
    }

    /// The probe table as far as read.
    pub fn probes(&self) -> &[ProbeInfo] {
        &self.cur.header().probes
    }

    /// The next event of the chain; None after the last file's last.
    pub fn next_event(&mut self) -> Result<Option<Rec>> {
        loop {
            if let Some(e) = self.cur.next_event()? {
                self.events += 1;
                self.captures.add(&e);
                return Ok(Some(e));
            }
            let Some(path) = self.files.get(self.next).cloned() else {
                return Ok(None);
            };
            self.next += 1;
            let next = Trace::open(&path)?;
            let prev = std::mem::replace(&mut self.cur, next);
            let (old, new) = (prev.header().clone(), self.cur.header());
            // Every rotated file's header holds the whole table so far: it
            // must continue the one read.
            let continues = new.probes.len() >= old.probes.len()
                && old.probes.iter().zip(&new.probes).all(|(a, b)| {
                    (a.id, &a.binary, &a.probe, &a.symbol) == (b.id, &b.binary, &b.probe, &b.symbol)
                })
                && old.mono_to_unix_ns == new.mono_to_unix_ns;
            if !continues {
                bail!(
                    "{} does not continue {}: not one recording's rotated files",
                    path.display(),
                    self.files[self.next - 2].display()
                );
            }
            self.infos.push(prev.finish());
        }
    }

    /// The chain's header (the oldest file's, with the probe table and
    /// binaries as the newest file has them), the newest file's footer
    /// (with the events of all), notes and warnings of all files.
    pub fn finish(self) -> TraceInfo {
        let last = self.cur.finish();
        let rotated = !self.infos.is_empty();
        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        for (i, info) in self.infos.iter().enumerate() {
            warnings.extend(info.warnings.iter().cloned());
            notes.extend(info.notes.iter().cloned());
            if let Some(f) = info.footer.as_ref().filter(|f| f.stopped_by != ROTATED) {
                warnings.push(format!(
                    "{}: stopped by {} and not by rotation, yet a newer file follows it in the chain",
                    self.files[i].display(),
                    f.stopped_by
                ));
            }
        }
        warnings.extend(last.warnings);
        notes.extend(last.notes);
        let numbers: Vec<u32> = self.files.iter().map(|f| split_rotation(f).1).collect();
        if numbers.windows(2).any(|w| w[0] != w[1] + 1) {
            warnings.push(format!(
                "{}: the chain has a gap (files {}): pods that straddle a missing file are cut",
                self.files
                    .last()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default(),
                numbers
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let header = match self.infos.into_iter().next() {
            Some(oldest) => Header {
                probes: last.header.probes,
                binaries: last.header.binaries,
                ..oldest.header
            },
            None => last.header,
        };
        let events = self.events;
        TraceInfo {
            capture_problems: self.captures.problems(&header.probes),
            header,
            // Of the whole chain; a single file's footer as it is.
            footer: last
                .footer
                .map(|f| if rotated { Footer { events, ..f } } else { f }),
            notes,
            warnings,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        let m = glob_match;
        assert!(m("*.trace*", "node-a.trace.1"));
        assert!(m("*.trace*", "node-a.trace"));
        assert!(!m("*.trace", "node-a.trace.1"));
        assert!(m("node-?.trace", "node-b.trace"));
        assert!(!m("node-?.trace", "node-bb.trace"));
        assert!(m("node-[ab].trace", "node-a.trace"));
        assert!(!m("node-[ab].trace", "node-c.trace"));
        assert!(m("node-[a-c].trace", "node-c.trace"));
        assert!(m("node-[!a].trace", "node-c.trace"));
        assert!(!m("node-[!a].trace", "node-a.trace"));
        assert!(m("a[b", "a[b"));
        assert!(m("*", ""));
        assert!(!m("?", ""));
        assert!(m("*a*b*c", "xxaxxbxxc"));
        assert!(!m("*a*b*c", "xxaxxbxxcx"));
    }

    #[test]
    fn rotated_names_split() {
        assert_eq!(
            split_rotation(Path::new("/x/n.trace.12")),
            (PathBuf::from("/x/n.trace"), 12)
        );
        assert_eq!(
            split_rotation(Path::new("/x/n.trace")),
            (PathBuf::from("/x/n.trace"), 0)
        );
        assert_eq!(split_rotation(Path::new("n.0")), (PathBuf::from("n.0"), 0));
        assert_eq!(
            split_rotation(Path::new("n.1a")),
            (PathBuf::from("n.1a"), 0)
        );
    }

    #[test]
    fn expand_reads_lists_and_globs() -> Result<()> {
        let d = std::env::temp_dir().join(format!("podtrace-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub"))?;
        std::fs::write(d.join("sub").join("c.trace"), "x")?;
        for f in [
            "a.trace",
            "a.trace.1",
            "a.trace.2",
            "b.trace",
            ".hidden.trace",
        ] {
            std::fs::write(d.join(f), "x")?;
        }
        let got = expand_arg(&d.join("*.trace*"))?;
        let names: Vec<String> = got
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["a.trace", "a.trace.1", "a.trace.2", "b.trace"]);
        let list = format!(
            "{},{}",
            d.join("b.trace").display(),
            d.join("a.trace.?").display()
        );
        let got = expand_arg(Path::new(&list))?;
        assert_eq!(
            got,
            vec![d.join("b.trace"), d.join("a.trace.1"), d.join("a.trace.2")]
        );
        // A glob in a directory component.
        let got = expand_arg(&d.join("s*").join("*"))?;
        assert_eq!(got, vec![d.join("sub").join("c.trace")]);
        assert!(expand_arg(&d.join("*.nothing")).is_err());
        // A literal path is kept (its absence is reported when opened).
        assert_eq!(expand_arg(&d.join("c.trace"))?, vec![d.join("c.trace")]);
        let _ = std::fs::remove_dir_all(&d);
        Ok(())
    }
}
