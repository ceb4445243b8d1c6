//! Reading a trace file back: streamed one line at a time
//! ([`TraceReader`]) or whole ([`Trace`], tests and the fuzzer).

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
};

use anyhow::{bail, Context as _, Result};

use crate::format::{
    CaptureCounts, CaptureProblem, Footer, Header, Line, Note, ProbeInfo, Rec, FORMAT,
    FORMAT_VERSION, OLDEST_READABLE_VERSION,
};

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
