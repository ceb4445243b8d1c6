//! The trace file: JSON Lines, written as events arrive so that a recording cut
//! short (SIGKILL, full disk) still reads up to its last complete line.
//!
//! ```text
//! {"header": {...}}          first line: format version, clock, binaries, probe table
//! {"e": {...}}               one per probe hit
//! {"footer": {...}}          last line: counts, drops, why recording stopped
//! ```

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::Path,
};

use anyhow::{bail, Context as _, Result};
use podtrace_common::{Event, MAX_CAPTURES, STR_CAP};
use serde::{Deserialize, Serialize};

use crate::{attach::ProbeInfo, catalogue::CaptureKind};

pub const FORMAT: &str = "podtrace-trace";
pub const FORMAT_VERSION: u32 = 1;

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

/// Streams a trace to a file.
pub struct Writer {
    out: BufWriter<File>,
    pub events: u64,
}

impl Writer {
    pub fn create(path: &Path, header: &Header) -> Result<Writer> {
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = Writer {
            out: BufWriter::with_capacity(1 << 20, f),
            events: 0,
        };
        w.line(&Line::Header(Box::new(header.clone())))?;
        w.out.flush()?;
        Ok(w)
    }

    fn line(&mut self, l: &Line) -> Result<()> {
        serde_json::to_writer(&mut self.out, l)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn event(&mut self, r: Rec) -> Result<()> {
        self.events += 1;
        self.line(&Line::Event(r))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("writing trace")
    }

    pub fn finish(mut self, footer: Footer) -> Result<()> {
        self.line(&Line::Footer(footer))?;
        self.out.flush().context("writing trace")?;
        self.out
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
            .context("syncing trace")
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
        if header.version != FORMAT_VERSION {
            bail!(
                "{name}: trace format version {} but this podtrace reads version {FORMAT_VERSION}",
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
