//! The trace file: JSON Lines, written as events arrive so that a recording cut
//! short (SIGKILL, full disk) still reads up to its last complete line.
//!
//! ```text
//! {"header": {...}}          first line: format version, clock, binaries, probe table
//! {"e": {...}}               one per probe hit
//! {"binary": {...}}          a binary attached while recording (replaced at its
//!                            path, or found later), with its probes (version 2)
//! {"note": {...}}            a traced process started or exited, a restart, a
//!                            binary replaced and re-attached (version 2)
//! {"footer": {...}}          last line: counts, drops, why recording stopped
//! ```
//!
//! Version 2 added the `binary` and `note` lines. A version-1 reader would
//! skip them as unreadable and then reject the events of the appended
//! probes, so version-2 files say 2 (old readers refuse them with a clear
//! message); this reader reads both.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use podtrace_common::{Event, MAX_CAPTURES, STR_CAP};
use serde::{Deserialize, Serialize};

use crate::{attach::ProbeInfo, catalogue::CaptureKind};

pub const FORMAT: &str = "podtrace-trace";
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this reader reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub podtrace_version: String,
    pub hostname: String,
    /// Add to an event's ktime (CLOCK_MONOTONIC ns) to get Unix time in ns.
    pub mono_to_unix_ns: i64,
    pub started_unix_ns: i64,
    pub binaries: Vec<BinaryRecord>,
    pub probes: Vec<ProbeInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BinaryRecord {
    pub name: String,
    pub path: String,
    pub go_version: Option<String>,
    pub pids: Vec<u32>,
    /// Probes of the catalogue that did not resolve, with why.
    pub unresolved: Vec<String>,
}

/// A binary attached while recording: a new executable at a traced path
/// (an upgrade, a default→tuned swap) or, with discovery, a kubelet or
/// containerd started after recording began. Its probes continue the
/// probe table (ids after every earlier one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BinaryAdded {
    #[serde(flatten)]
    pub binary: BinaryRecord,
    pub probes: Vec<ProbeInfo>,
}

/// What the supervisor saw happen to a traced binary or process. The set
/// is closed so that a metrics exporter can count each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// A process of a traced binary appeared.
    ProcessStarted,
    /// A traced process is gone.
    ProcessExited,
    /// A process of a traced binary started after the previous one exited
    /// (`gap_ns`: from that exit to this start being seen).
    Restart,
    /// The traced path now names another file (`seen` at `t_ns`).
    BinaryReplaced,
    /// Probes attached to the new file at a replaced path (`latency_ns`:
    /// from seeing the replacement to attached; `gap_ns`: how long the path
    /// was not traced).
    Reattached,
    /// Discovery found a kubelet or containerd binary started after
    /// recording began, and attached to it.
    BinaryFound,
    /// A new binary could not be traced (`detail` says why).
    AttachFailed,
}

impl NoteKind {
    /// The name used in the trace (and for a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::ProcessStarted => "process_started",
            NoteKind::ProcessExited => "process_exited",
            NoteKind::Restart => "restart",
            NoteKind::BinaryReplaced => "binary_replaced",
            NoteKind::Reattached => "reattached",
            NoteKind::BinaryFound => "binary_found",
            NoteKind::AttachFailed => "attach_failed",
        }
    }
}

/// One supervisor note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// CLOCK_MONOTONIC ns (the events' clock) when it was seen or done.
    pub t_ns: u64,
    pub kind: NoteKind,
    /// Catalogue binary name ("kubelet").
    pub binary: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Restart: exit seen → start seen. Reattached: how long the path was
    /// not traced (from the replacement being seen, or the old process's
    /// exit if that came first, to attached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_ns: Option<u64>,
    /// Reattached, binary_found: from seeing the new file to its probes attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Note {
    pub fn new(t_ns: u64, kind: NoteKind, binary: &str) -> Note {
        Note {
            t_ns,
            kind,
            binary: binary.to_string(),
            path: String::new(),
            pid: None,
            gap_ns: None,
            latency_ns: None,
            detail: String::new(),
        }
    }

    /// One line for people (the report, record's stderr).
    pub fn describe(&self) -> String {
        let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
        let pid = self.pid.map(|p| p.to_string()).unwrap_or_default();
        match self.kind {
            NoteKind::ProcessStarted => format!("{}: process {pid} started", self.binary),
            NoteKind::ProcessExited => format!("{}: process {pid} exited", self.binary),
            NoteKind::Restart => format!(
                "{}: restarted as process {pid}, {} after the previous one exited",
                self.binary,
                self.gap_ns.map(ms).unwrap_or_default()
            ),
            NoteKind::BinaryReplaced => {
                format!("{}: {} replaced by another file", self.binary, self.path)
            }
            NoteKind::Reattached => format!(
                "{}: re-attached to the new {} in {} (not traced for {})",
                self.binary,
                self.path,
                self.latency_ns.map(ms).unwrap_or_default(),
                self.gap_ns.map(ms).unwrap_or_default()
            ),
            NoteKind::BinaryFound => format!(
                "{}: found {} started while recording, attached in {}",
                self.binary,
                self.path,
                self.latency_ns.map(ms).unwrap_or_default()
            ),
            NoteKind::AttachFailed => {
                format!("{}: {} not traced: {}", self.binary, self.path, self.detail)
            }
        }
    }
}

/// A captured value: a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Val {
    N(u64),
    S(String),
}

impl Val {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::S(s) => Some(s),
            Val::N(_) => None,
        }
    }
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Val::N(n) => Some(*n),
            Val::S(_) => None,
        }
    }
}

/// One probe hit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rec {
    /// ktime (CLOCK_MONOTONIC) ns.
    pub t: u64,
    /// Probe id (index into the header's probe table).
    pub p: u32,
    /// 1 entry, 2 exit.
    pub k: u8,
    pub pid: u32,
    pub tid: u32,
    pub g: u64,
    pub goid: u64,
    pub sp: u64,
    pub ra: u64,
    /// Captured values, in the order of the probe's captures; null if unreadable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub a: Vec<Option<Val>>,
    /// Bit i set: string capture i was longer than the eBPF side keeps
    /// ([`STR_CAP`] bytes) and holds only its start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tr: u8,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

impl Rec {
    /// Whether capture `i` of this event was cut short.
    pub fn truncated(&self, i: usize) -> bool {
        i < 8 && self.tr & (1 << i) != 0
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Footer {
    pub events: u64,
    pub drops: u64,
    pub hits: u64,
    /// From the start of recording to the stop (before the uprobes were
    /// detached and the ring drained).
    pub duration_ns: u64,
    pub stopped_by: String,
    /// Captures that could not be read or were cut short, per probe and
    /// capture (only those with a problem).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capture_problems: Vec<CaptureProblem>,
}

/// How often one capture of one probe failed or was truncated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureProblem {
    /// Probe id (index into the header's probe table).
    pub probe: u32,
    /// "entry" or "exit".
    pub site: String,
    /// Catalogue capture name.
    pub capture: String,
    /// Hits where it could not be read (a pointer read faulted).
    pub failed: u64,
    /// Hits where the string was longer than the bytes kept.
    pub truncated: u64,
}

/// Counts capture problems per (probe, site, capture slot) as events go by.
#[derive(Debug, Default, Clone)]
pub struct CaptureCounts {
    /// (probe, kind, slot) → (failed, truncated).
    counts: std::collections::BTreeMap<(u32, u8, usize), (u64, u64)>,
}

impl CaptureCounts {
    pub fn add(&mut self, r: &Rec) {
        for (i, v) in r.a.iter().enumerate() {
            let (failed, truncated) = (v.is_none(), r.truncated(i));
            if failed || truncated {
                let c = self.counts.entry((r.p, r.k, i)).or_default();
                c.0 += u64::from(failed);
                c.1 += u64::from(truncated);
            }
        }
    }

    /// The counts with probe and capture names from the probe table.
    pub fn problems(&self, probes: &[ProbeInfo]) -> Vec<CaptureProblem> {
        self.counts
            .iter()
            .map(|(&(p, k, i), &(failed, truncated))| {
                let probe = probes.get(p as usize);
                let entry = k == podtrace_common::KIND_ENTRY;
                let caps = probe.map(|pi| {
                    if entry {
                        &pi.entry_captures
                    } else {
                        &pi.exit_captures
                    }
                });
                CaptureProblem {
                    probe: p,
                    site: if entry { "entry" } else { "exit" }.into(),
                    capture: caps
                        .and_then(|c| c.get(i))
                        .map(|c| c.name.clone())
                        .unwrap_or_else(|| format!("#{i}")),
                    failed,
                    truncated,
                }
            })
            .collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Header(Box<Header>),
    #[serde(rename = "e")]
    Event(Rec),
    Binary(Box<BinaryAdded>),
    Note(Note),
    Footer(Footer),
}

impl Rec {
    /// Decodes an eBPF event with the probe's capture list.
    pub fn from_event(ev: &Event, probe: Option<&ProbeInfo>) -> Rec {
        let caps = match probe {
            Some(p) if ev.kind == podtrace_common::KIND_ENTRY => &p.entry_captures[..],
            Some(p) => &p.exit_captures[..],
            None => &[],
        };
        let a = caps
            .iter()
            .take(MAX_CAPTURES)
            .enumerate()
            .map(|(i, c)| {
                if ev.failed & (1 << i) != 0 {
                    return None;
                }
                Some(match c.kind {
                    k if k.is_string() => {
                        let n = (ev.vals[i] as usize).min(STR_CAP);
                        Val::S(String::from_utf8_lossy(&ev.strs[i][..n]).into_owned())
                    }
                    CaptureKind::U32 => Val::N(ev.vals[i] & 0xffff_ffff),
                    CaptureKind::Bool => Val::N(u64::from(ev.vals[i] & 0xff != 0)),
                    _ => Val::N(ev.vals[i]),
                })
            })
            .collect();
        Rec {
            t: ev.ktime_ns,
            p: ev.probe_id,
            k: ev.kind,
            pid: ev.pid,
            tid: ev.tid,
            g: ev.g,
            goid: ev.goid,
            sp: ev.sp,
            ra: ev.ret_addr,
            a,
            tr: ev.truncated & !ev.failed,
        }
    }
}

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

    pub fn create_rotating(
        path: &Path,
        header: &Header,
        rotation: Option<Rotation>,
    ) -> Result<Writer> {
        let mut w = Writer {
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
        };
        w.line(&Line::Header(Box::new(header.clone())))?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn line(&mut self, l: &Line) -> Result<()> {
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, l)?;
        self.scratch.push(b'\n');
        self.bytes += self.scratch.len() as u64;
        self.out
            .write_all(&self.scratch)
            .with_context(|| format!("writing trace {}", self.path.display()))
    }

    pub fn event(&mut self, r: Rec) -> Result<()> {
        self.events += 1;
        self.file_events += 1;
        self.line(&Line::Event(r))?;
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
        let footer = Footer {
            events: self.file_events,
            drops: self.counters.0,
            hits: self.counters.1,
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
        self.file_started_ns = mono_now();
        let header = Line::Header(Box::new(self.header.clone()));
        self.line(&header)?;
        self.flush()
    }

    pub fn finish(mut self, footer: Footer) -> Result<()> {
        let footer = Footer {
            // Per file when rotated: what this file holds.
            events: if self.rotation.is_some() {
                self.file_events
            } else {
                footer.events
            },
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

/// A whole trace read back into memory (tests, the fuzzer); the commands
/// stream with [`TraceReader`] instead.
#[derive(Debug, Clone)]
pub struct Trace {
    pub header: Header,
    pub events: Vec<Rec>,
    /// None if the recording was cut short.
    pub footer: Option<Footer>,
    /// What happened to the traced processes and binaries while recording
    /// (version 2).
    pub notes: Vec<Note>,
    /// Problems met while reading (a cut last line, say).
    pub warnings: Vec<String>,
}

impl Trace {
    /// Opens a trace file to stream its events.
    pub fn open(path: &Path) -> Result<TraceReader<BufReader<File>>> {
        let f = File::open(path).with_context(|| format!("opening trace {}", path.display()))?;
        TraceReader::new(
            BufReader::with_capacity(1 << 20, f),
            &path.display().to_string(),
        )
    }

    pub fn read(path: &Path) -> Result<Trace> {
        let f = File::open(path).with_context(|| format!("opening trace {}", path.display()))?;
        Self::read_from(BufReader::new(f), &path.display().to_string())
    }

    pub fn read_from(r: impl BufRead, name: &str) -> Result<Trace> {
        let mut r = TraceReader::new(r, name)?;
        let mut events = Vec::new();
        while let Some(e) = r.next_event()? {
            events.push(e);
        }
        let info = r.finish();
        Ok(Trace {
            header: info.header,
            events,
            footer: info.footer,
            notes: info.notes,
            warnings: info.warnings,
        })
    }

    pub fn probe(&self, id: u32) -> Option<&ProbeInfo> {
        self.header.probes.get(id as usize)
    }

    /// Capture failures and truncations per probe and capture, counted from
    /// the events (so also for a recording cut short).
    pub fn capture_problems(&self) -> Vec<CaptureProblem> {
        let mut c = CaptureCounts::default();
        for e in &self.events {
            c.add(e);
        }
        c.problems(&self.header.probes)
    }
}

/// What a trace says besides its events, for the reports: header, footer,
/// warnings and what was counted while the events streamed by.
#[derive(Debug, Clone)]
pub struct TraceInfo {
    pub header: Header,
    /// None if the recording was cut short.
    pub footer: Option<Footer>,
    /// What happened to the traced processes and binaries (version 2).
    pub notes: Vec<Note>,
    /// Problems met while reading (a cut last line, say).
    pub warnings: Vec<String>,
    /// Events read.
    pub events: u64,
    pub capture_problems: Vec<CaptureProblem>,
}

/// The parts of a trace the reports use, whether it was read whole
/// ([`Trace`], tests) or streamed ([`TraceInfo`]).
pub trait TraceMeta {
    fn header(&self) -> &Header;
    fn footer(&self) -> Option<&Footer>;
    fn warnings(&self) -> &[String];
    fn notes(&self) -> &[Note];
    fn event_count(&self) -> u64;
    /// Capture failures and truncations per probe and capture.
    fn capture_problems(&self) -> Vec<CaptureProblem>;
    fn probe(&self, id: u32) -> Option<&ProbeInfo> {
        self.header().probes.get(id as usize)
    }
}

impl<T: TraceMeta + ?Sized> TraceMeta for &T {
    fn header(&self) -> &Header {
        (**self).header()
    }
    fn footer(&self) -> Option<&Footer> {
        (**self).footer()
    }
    fn warnings(&self) -> &[String] {
        (**self).warnings()
    }
    fn notes(&self) -> &[Note] {
        (**self).notes()
    }
    fn event_count(&self) -> u64 {
        (**self).event_count()
    }
    fn capture_problems(&self) -> Vec<CaptureProblem> {
        (**self).capture_problems()
    }
}

impl TraceMeta for TraceInfo {
    fn header(&self) -> &Header {
        &self.header
    }
    fn footer(&self) -> Option<&Footer> {
        self.footer.as_ref()
    }
    fn warnings(&self) -> &[String] {
        &self.warnings
    }
    fn notes(&self) -> &[Note] {
        &self.notes
    }
    fn event_count(&self) -> u64 {
        self.events
    }
    fn capture_problems(&self) -> Vec<CaptureProblem> {
        self.capture_problems.clone()
    }
}

impl TraceMeta for Trace {
    fn header(&self) -> &Header {
        &self.header
    }
    fn footer(&self) -> Option<&Footer> {
        self.footer.as_ref()
    }
    fn warnings(&self) -> &[String] {
        &self.warnings
    }
    fn notes(&self) -> &[Note] {
        &self.notes
    }
    fn event_count(&self) -> u64 {
        self.events.len() as u64
    }
    fn capture_problems(&self) -> Vec<CaptureProblem> {
        Trace::capture_problems(self)
    }
}

/// A trace read line by line: the header at once, then one event at a time
/// ([`TraceReader::next_event`] or the iterator), footer and warnings from
/// [`TraceReader::finish`]. Holds one line at a time, however long the
/// recording.
pub struct TraceReader<R> {
    r: R,
    name: String,
    header: Header,
    /// Lines read so far, the header's included.
    line_no: usize,
    buf: String,
    footer: Option<Footer>,
    notes: Vec<Note>,
    warnings: Vec<String>,
    events: u64,
    captures: CaptureCounts,
    done: bool,
}

impl<R: BufRead> TraceReader<R> {
    /// Reads and checks the header line.
    pub fn new(mut r: R, name: &str) -> Result<TraceReader<R>> {
        let mut first = String::new();
        if r.read_line(&mut first)
            .with_context(|| format!("{name}: reading"))?
            == 0
        {
            bail!("{name}: empty file, not a podtrace trace");
        }
        let header = match serde_json::from_str::<Line>(&first) {
            Ok(Line::Header(h)) => *h,
            _ => bail!("{name}: not a podtrace trace (the first line is not a trace header)"),
        };
        if header.format != FORMAT {
            bail!("{name}: format `{}`, expected `{FORMAT}`", header.format);
        }
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&header.version) {
            bail!(
                "{name}: trace format version {} but this podtrace reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}",
                header.version
            );
        }
        Ok(TraceReader {
            r,
            name: name.to_string(),
            header,
            line_no: 1,
            buf: String::new(),
            footer: None,
            notes: Vec::new(),
            warnings: Vec::new(),
            events: 0,
            captures: CaptureCounts::default(),
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next event; None at the end. An event naming a probe the header
    /// does not have is an error (the trace is not one podtrace wrote).
    pub fn next_event(&mut self) -> Result<Option<Rec>> {
        let name = &self.name;
        while !self.done {
            self.buf.clear();
            match self.r.read_line(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(_) => self.line_no += 1,
                Err(e) => {
                    self.warnings.push(format!(
                        "{name}: read error after line {}: {e}",
                        self.line_no
                    ));
                    self.done = true;
                    break;
                }
            }
            let line = self.buf.strip_suffix('\n').unwrap_or(&self.buf);
            let line = line.strip_suffix('\r').unwrap_or(line);
            // One match over every kind of line.
            match serde_json::from_str::<Line>(line) {
                Ok(Line::Event(e)) => {
                    if e.p as usize >= self.header.probes.len() {
                        bail!(
                            "{name}: event names probe {} but the header has {}",
                            e.p,
                            self.header.probes.len()
                        );
                    }
                    self.events += 1;
                    self.captures.add(&e);
                    return Ok(Some(e));
                }
                Ok(Line::Footer(f)) => self.footer = Some(f),
                Ok(Line::Binary(b)) => {
                    let next = self.header.probes.len() as u32;
                    if b.probes
                        .iter()
                        .enumerate()
                        .any(|(i, p)| p.id != next + i as u32)
                    {
                        bail!(
                            "{name}:{}: appended probes do not continue the probe table at id {next}",
                            self.line_no
                        );
                    }
                    self.header.binaries.push(b.binary);
                    self.header.probes.extend(b.probes);
                }
                Ok(Line::Note(n)) => self.notes.push(n),
                Ok(Line::Header(_)) => self
                    .warnings
                    .push(format!("{name}:{}: second header ignored", self.line_no)),
                Err(e) => self.warnings.push(format!(
                    "{name}:{}: unreadable line ignored ({e}); the recording was probably cut short",
                    self.line_no
                )),
            }
        }
        Ok(None)
    }

    /// Header, footer, warnings and counts, once the events are read (any
    /// left unread are not counted).
    pub fn finish(self) -> TraceInfo {
        let mut warnings = self.warnings;
        if self.footer.is_none() {
            warnings.push(format!(
                "{}: no footer: the recording was interrupted; {} events read",
                self.name, self.events
            ));
        }
        TraceInfo {
            capture_problems: self.captures.problems(&self.header.probes),
            header: self.header,
            footer: self.footer,
            notes: self.notes,
            warnings,
            events: self.events,
        }
    }
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = Result<Rec>;
    fn next(&mut self) -> Option<Result<Rec>> {
        self.next_event().transpose()
    }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, from the tightest of a few bracketed reads.
pub fn mono_to_unix_offset() -> i64 {
    let mut best = (i64::MAX, 0);
    for _ in 0..16 {
        let m0 = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let m1 = clock_ns(libc::CLOCK_MONOTONIC);
        if m1 - m0 < best.0 {
            best = (m1 - m0, r - (m0 + (m1 - m0) / 2));
        }
    }
    best.1
}

/// CLOCK_MONOTONIC now, in ns (the clock of bpf_ktime_get_ns).
pub fn mono_now() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::synth::{synth, KubeletLike};

    fn small_trace() -> Trace {
        let spec = KubeletLike::default_periods(2, 7).spec();
        synth(&spec)
            .map(|(t, _)| t)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podtrace-trace-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn appended_binaries_and_notes_read_back_and_version_1_still_reads() {
        let t = small_trace();
        let dir = tmp("append");
        let path = dir.join("t.trace");
        let mut w = Writer::create(&path, &t.header).unwrap_or_else(|e| panic!("{e:#}"));
        let n = t.header.probes.len() as u32;
        let mut more = t.header.probes.clone();
        for (i, p) in more.iter_mut().enumerate() {
            p.id = n + i as u32;
        }
        let mut note = Note::new(5, NoteKind::Reattached, "kubelet");
        note.latency_ns = Some(3);
        w.note(note.clone()).unwrap_or_else(|e| panic!("{e:#}"));
        w.binary_added(BinaryAdded {
            binary: t.header.binaries[0].clone(),
            probes: more,
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        let mut e = t.events[0].clone();
        e.p = 2 * n - 1;
        w.event(e).unwrap_or_else(|e| panic!("{e:#}"));
        w.finish(Footer::default())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let back = Trace::read(&path).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(back.header.probes.len(), 2 * n as usize);
        assert_eq!(back.header.binaries.len(), t.header.binaries.len() + 1);
        assert_eq!(back.notes, vec![note]);
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        // Private.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        // A version-1 file (no binary or note lines) reads as before.
        let mut h = t.header.clone();
        h.version = 1;
        let v1 = format!(
            "{}\n{}\n",
            serde_json::json!({ "header": h }),
            serde_json::json!({ "e": t.events[0] })
        );
        let old = Trace::read_from(v1.as_bytes(), "v1").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(old.events.len(), 1);
        h.version = FORMAT_VERSION + 1;
        let v3 = format!("{}\n", serde_json::json!({ "header": h }));
        let err = Trace::read_from(v3.as_bytes(), "v3")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("reads versions 1 to 2")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotation_numbers_files_like_logrotate_and_keeps_max_files() {
        let t = small_trace();
        let dir = tmp("rotate");
        let path = dir.join("t.trace");
        let rot = Rotation {
            max_bytes: 4096,
            max_files: 3,
        };
        let mut w = Writer::create_rotating(&path, &t.header, Some(rot))
            .unwrap_or_else(|e| panic!("{e:#}"));
        for e in t.events.iter().cycle().take(2000) {
            w.event(e.clone()).unwrap_or_else(|e| panic!("{e:#}"));
        }
        w.finish(Footer::default())
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(Rotation::numbered(&path, 2).exists());
        assert!(!Rotation::numbered(&path, 3).exists());
        assert_eq!(Rotation::numbered(&path, 1), dir.join("t.trace.1"));
        let mut total = 0;
        for n in 0..3 {
            let f = Rotation::numbered(&path, n);
            let r = Trace::read(&f).unwrap_or_else(|e| panic!("{e:#}"));
            let footer = r
                .footer
                .unwrap_or_else(|| panic!("{} has no footer", f.display()));
            assert_eq!(footer.events as usize, r.events.len());
            assert_eq!(footer.stopped_by == ROTATED, n > 0);
            assert_eq!(r.header.probes.len(), t.header.probes.len());
            total += r.events.len();
        }
        assert!(total < 2000, "older files were deleted");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
