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

/// A whole trace read back.
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
    pub fn read(path: &Path) -> Result<Trace> {
        let f = File::open(path).with_context(|| format!("opening trace {}", path.display()))?;
        Self::read_from(BufReader::new(f), &path.display().to_string())
    }

    pub fn read_from(r: impl BufRead, name: &str) -> Result<Trace> {
        let mut lines = r.lines();
        let first = match lines.next() {
            Some(l) => l.with_context(|| format!("{name}: reading"))?,
            None => bail!("{name}: empty file, not a podtrace trace"),
        };
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
        let mut t = Trace {
            header,
            events: Vec::new(),
            footer: None,
            warnings: Vec::new(),
        };
        for (n, line) in lines.enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    t.warnings
                        .push(format!("{name}: read error after line {}: {e}", n + 1));
                    break;
                }
            };
            match serde_json::from_str::<Line>(&line) {
                Ok(Line::Event(e)) => t.events.push(e),
                Ok(Line::Footer(f)) => t.footer = Some(f),
                Ok(Line::Header(_)) => t.warnings.push(format!("{name}:{}: second header ignored", n + 2)),
                Err(e) => t.warnings.push(format!(
                    "{name}:{}: unreadable line ignored ({e}); the recording was probably cut short",
                    n + 2
                )),
            }
        }
        if t.footer.is_none() {
            t.warnings.push(format!(
                "{name}: no footer: the recording was interrupted; {} events read",
                t.events.len()
            ));
        }
        for e in &t.events {
            if e.p as usize >= t.header.probes.len() {
                bail!(
                    "{name}: event names probe {} but the header has {}",
                    e.p,
                    t.header.probes.len()
                );
            }
        }
        Ok(t)
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
