//! Writing a trace file as events arrive, so that a recording cut short
//! (SIGKILL, full disk) still reads up to its last complete line; rotation.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::{
    clock::mono_now,
    format::{BinaryAdded, EventLine, Footer, Header, Line, Note, Rec},
};

/// `--max-size`/`--max-files`: when the file reaches `max_bytes` it gets
/// its footer and is renamed FILE.1 (FILE.1 → FILE.2, …), and a new FILE
/// starts with a header holding the whole probe table, so that every file
/// is a trace on its own; at most `max_files` files are kept, the oldest
/// deleted. FILE is always the newest (logrotate's numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub max_files: u32,
}

impl Rotation {
    /// The name of the `n`th older file (0 = `path` itself).
    pub fn numbered(path: &Path, n: u32) -> PathBuf {
        if n == 0 {
            return path.to_path_buf();
        }
        let mut s = path.as_os_str().to_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }
}

/// `stopped_by` of the footer of a file closed by rotation.
pub const ROTATED: &str = "rotated";

/// Streams a trace to a file (mode 0600: it holds pod names and ids), and
/// rotates it if asked.
pub struct Writer {
    out: BufWriter<File>,
    path: PathBuf,
    /// The header of the next file: the probe table grows as binaries are
    /// added.
    header: Header,
    rotation: Option<Rotation>,
    /// Bytes written to (or buffered for) the current file.
    bytes: u64,
    file_events: u64,
    file_started_ns: u64,
    scratch: Vec<u8>,
    /// Events written, over every file.
    pub events: u64,
    /// Drops and probe hits as last read (for the footer of a rotated file).
    pub counters: (u64, u64),
    /// Where an earlier trace at the path was moved to.
    pub moved_aside: Option<PathBuf>,
    /// [`Writer::counters`] when the current file began: each file's footer
    /// carries its own drops and hits, not those of the files before it.
    file_counters: (u64, u64),
}

/// Moves an existing, non-empty regular file at `path` aside as `path.1`
/// (an older `.1` becomes `.2`, and so on, as rotation does): a recording
/// restarted with the same `-o` (a DaemonSet pod after a rollout, an OOM
/// kill or a crash) must not wipe the last one's trace. With `max_files`,
/// at most that many files are kept, the oldest deleted; without, all.
/// Returns the name it was moved to.
pub fn move_aside(path: &Path, max_files: Option<u32>) -> Result<Option<PathBuf>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() && m.len() > 0 => {}
        // Nothing there, nothing in it, or not a file (a FIFO, /dev/null):
        // nothing to keep.
        _ => return Ok(None),
    }
    let name = |n| Rotation::numbered(path, n);
    // The first number free (or the last one kept).
    let mut last = 1;
    while name(last).exists() && max_files.is_none_or(|m| last + 1 < m.max(2)) {
        last += 1;
    }
    if max_files.is_some_and(|m| m <= 1) {
        // One file kept: the new one. (Only with --max-files 1.)
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        return Ok(None);
    }
    for n in (0..last).rev() {
        let (from, to) = (name(n), name(n + 1));
        if from.exists() {
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(Some(name(1)))
}

/// Creates (or truncates) `path` with mode 0600.
fn create_private(path: &Path) -> Result<File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // The mode applies only to a new file: an existing one keeps its own.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private (0600)", path.display()))?;
    Ok(f)
}

impl Writer {
    pub fn create(path: &Path, header: &Header) -> Result<Writer> {
        Self::create_rotating(path, header, None)
    }

    /// A writer of `path`, rotated with `rotation`. An existing trace at
    /// `path` is moved aside first ([`move_aside`]), never truncated.
    pub fn create_rotating(
        path: &Path,
        header: &Header,
        rotation: Option<Rotation>,
    ) -> Result<Writer> {
        let moved_aside = move_aside(path, rotation.map(|r| r.max_files))?;
        let mut w = Writer {
            moved_aside,
            out: BufWriter::with_capacity(1 << 20, create_private(path)?),
            path: path.to_path_buf(),
            header: header.clone(),
            rotation,
            bytes: 0,
            file_events: 0,
            file_started_ns: mono_now(),
            scratch: Vec::with_capacity(1024),
            events: 0,
            counters: (0, 0),
            file_counters: (0, 0),
        };
        w.line(&Line::Header(Box::new(header.clone())))?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn line(&mut self, l: &impl serde::Serialize) -> Result<()> {
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, l)?;
        self.scratch.push(b'\n');
        self.bytes += self.scratch.len() as u64;
        self.out
            .write_all(&self.scratch)
            .with_context(|| format!("writing trace {}", self.path.display()))
    }

    pub fn event(&mut self, r: &Rec) -> Result<()> {
        self.events += 1;
        self.file_events += 1;
        self.line(&EventLine::Event(r))?;
        self.rotate_if_full()
    }

    /// A binary attached while recording: its record and probes go into
    /// this file and the header of every later one.
    pub fn binary_added(&mut self, b: BinaryAdded) -> Result<()> {
        self.header.binaries.push(b.binary.clone());
        self.header.probes.extend(b.probes.iter().cloned());
        self.line(&Line::Binary(Box::new(b)))?;
        self.flush()
    }

    pub fn note(&mut self, n: Note) -> Result<()> {
        self.line(&Line::Note(n))?;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing trace {}", self.path.display()))
    }

    fn rotate_if_full(&mut self) -> Result<()> {
        let Some(rot) = self.rotation else {
            return Ok(());
        };
        if self.bytes < rot.max_bytes {
            return Ok(());
        }
        let (drops, hits) = self.since_file_began(self.counters);
        let footer = Footer {
            events: self.file_events,
            drops,
            hits,
            duration_ns: mono_now().saturating_sub(self.file_started_ns),
            stopped_by: ROTATED.into(),
            capture_problems: Vec::new(),
        };
        self.line(&Line::Footer(footer))?;
        self.flush()?;
        let name = |n| Rotation::numbered(&self.path, n);
        // The oldest goes; the others move up one.
        let last = rot.max_files.saturating_sub(1);
        let oldest = name(last);
        match std::fs::remove_file(&oldest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", oldest.display())),
        }
        for n in (0..last).rev() {
            let (from, to) = (name(n), name(n + 1));
            if from.exists() {
                std::fs::rename(&from, &to)
                    .with_context(|| format!("rotating {} to {}", from.display(), to.display()))?;
            }
        }
        self.header.started_unix_ns = mono_now() as i64 + self.header.mono_to_unix_ns;
        self.out = BufWriter::with_capacity(1 << 20, create_private(&self.path)?);
        self.bytes = 0;
        self.file_events = 0;
        self.file_counters = self.counters;
        self.file_started_ns = mono_now();
        let header = Line::Header(Box::new(self.header.clone()));
        self.line(&header)?;
        self.flush()
    }

    /// Whether the trace is rotated (then the drain keeps
    /// [`Writer::counters`] current, for each file's footer).
    pub fn rotates(&self) -> bool {
        self.rotation.is_some()
    }

    /// Drops and hits since the current file began, from `total`.
    fn since_file_began(&self, total: (u64, u64)) -> (u64, u64) {
        (
            total.0.saturating_sub(self.file_counters.0),
            total.1.saturating_sub(self.file_counters.1),
        )
    }

    pub fn finish(mut self, footer: Footer) -> Result<()> {
        // Per file when rotated: what this file holds.
        let (drops, hits) = self.since_file_began((footer.drops, footer.hits));
        let footer = Footer {
            events: if self.rotation.is_some() {
                self.file_events
            } else {
                footer.events
            },
            drops,
            hits,
            ..footer
        };
        self.line(&Line::Footer(footer))?;
        self.flush()?;
        let path = self.path.clone();
        self.out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing trace {}", path.display()))
    }
}
