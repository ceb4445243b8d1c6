//! The trace's records: what each line of a trace file holds.
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
//! message); the reader reads both.
//!
//! Owns the types only: recording ([`crate::record`]) makes them, the
//! [`crate::trace`] writer and reader move them to and from files. It must
//! not know about either.

use podtrace_common::{Event, MAX_CAPTURES, STR_CAP};
use serde::{Deserialize, Serialize};

use crate::catalogue::{CaptureDef, CaptureKind, Role, SiteKind};

pub const FORMAT: &str = "podtrace-trace";
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this reader reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// One traced function, as recorded in the trace header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub id: u32,
    /// Catalogue binary name ("kubelet").
    pub binary: String,
    /// Catalogue probe name ("mount_wait").
    pub probe: String,
    pub role: Role,
    pub symbol: String,
    pub entry_site: SiteKind,
    pub rets: usize,
    pub entry_captures: Vec<CaptureDef>,
    pub exit_captures: Vec<CaptureDef>,
}

impl ProbeInfo {
    /// A kubelet probe on `symbol` with an entry probe at the prologue's
    /// jump, one RET, and the pod UID (`pod_uid`, a string through RSI)
    /// captured at entry: what the unit tests of the stages after `attach`
    /// need.
    #[cfg(test)]
    pub(crate) fn kubelet_with_pod_uid(
        id: u32,
        probe: &str,
        role: Role,
        symbol: &str,
    ) -> ProbeInfo {
        ProbeInfo {
            id,
            binary: "kubelet".into(),
            probe: probe.into(),
            role,
            symbol: symbol.into(),
            entry_site: SiteKind::PrologueJump,
            rets: 1,
            entry_captures: vec![CaptureDef {
                name: "pod_uid".into(),
                kind: CaptureKind::Str,
                reg: "RSI".into(),
                reg2: None,
                path: vec![96],
            }],
            exit_captures: vec![],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub podtrace_version: String,
    pub hostname: String,
    /// The Kubernetes node the traced kubelet runs as (`record
    /// --node-name`, else `$NODE_NAME`, else the hostname). Inside a
    /// DaemonSet's container the hostname is the pod's, so this comes from
    /// the downward API. Empty in traces written before it was recorded:
    /// read it with [`Header::node`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// Add to an event's ktime (CLOCK_MONOTONIC ns) to get Unix time in ns.
    pub mono_to_unix_ns: i64,
    pub started_unix_ns: i64,
    pub binaries: Vec<BinaryRecord>,
    pub probes: Vec<ProbeInfo>,
}

impl Header {
    /// The node's name: `node_name`, or the hostname for traces that do
    /// not record one.
    pub fn node(&self) -> &str {
        if self.node_name.is_empty() {
            &self.hostname
        } else {
            &self.node_name
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BinaryRecord {
    pub name: String,
    pub path: String,
    pub go_version: Option<String>,
    /// The component's own version (kubelet's `k8s.io/kubernetes`,
    /// containerd's module; else the Go version): the `version` label of
    /// the live metrics, per binary attached. Absent in traces of podtrace
    /// before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub pids: Vec<u32>,
    /// Probes of the catalogue that did not resolve, with why.
    pub unresolved: Vec<String>,
    /// Set when the binary is newer than the catalogue's newest tested
    /// version (probes matched by shape only): what the user was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseen: Option<String>,
    /// Which build this is (traces before podtrace 0.2 lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<BinaryIdentity>,
    /// Its probes: ids `first_probe .. first_probe + probe_count` of the
    /// probe table (so that a pod's calls can be told apart by build when
    /// one file replaced another while recording).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_probe: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_count: Option<u32>,
}

impl BinaryRecord {
    /// Whether probe `id` is one of this binary's.
    pub fn has_probe(&self, id: u32) -> bool {
        match (self.first_probe, self.probe_count) {
            (Some(f), Some(n)) => (f..f + n).contains(&id),
            _ => false,
        }
    }
}

/// What a traced binary is, enough to tell two builds of one version apart
/// (kubelet v1.36.3 as released and rebuilt with tuned intervals).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryIdentity {
    /// The file's own path (symlinks and /proc/PID/exe resolved; as the
    /// traced process's mount namespace names it).
    pub real_path: String,
    /// The component's module and version from `.go.buildinfo`, e.g.
    /// `k8s.io/kubernetes` `v1.36.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The module's `h1:` sum as the build recorded it: empty for a build
    /// from a vendored or edited tree (a rebuilt kubelet).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module_sum: String,
    /// The version stamped with `-ldflags -X …gitVersion=` (or containerd's
    /// `version.Version`), when the build recorded its ldflags (builds with
    /// `-trimpath` do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamped_version: Option<String>,
    /// `vcs.revision`, `vcs.time`, `vcs.modified` when built from a checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs_modified: Option<bool>,
    /// The build settings (`go version -m`'s `build` lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_settings: Vec<(String, String)>,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    pub size: u64,
}

impl BinaryIdentity {
    /// The short build id people see: the first 12 hex digits of the hash.
    pub fn build(&self) -> &str {
        self.sha256.get(..12).unwrap_or(&self.sha256)
    }

    /// `v1.36.3 build 3f2a…` (or the module-less form).
    pub fn describe(&self) -> String {
        format!(
            "{} build {}{}",
            self.version.as_deref().unwrap_or("(no module version)"),
            self.build(),
            if self.module_sum.is_empty() && self.module.is_some() {
                " (rebuilt: no module sum)"
            } else {
                ""
            }
        )
    }
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
    /// A traced process's CPU time so far (`cpu_ns`: user + system from
    /// /proc/PID/stat), sampled at the start, every few seconds and at the
    /// stop: what the loops' busy time is held against.
    CpuTime,
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
            NoteKind::CpuTime => "cpu_time",
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
    /// CpuTime: the process's user + system CPU time so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ns: Option<u64>,
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
            cpu_ns: None,
        }
    }

    /// Whether it tells of the processes and binaries (what the report's
    /// notes list), not a CPU sample.
    pub fn is_event(&self) -> bool {
        self.kind != NoteKind::CpuTime
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
            NoteKind::CpuTime => format!(
                "{}: process {pid} has used {} of CPU",
                self.binary,
                self.cpu_ns.map(ms).unwrap_or_default()
            ),
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
pub(crate) enum Line {
    Header(Box<Header>),
    #[serde(rename = "e")]
    Event(Rec),
    Binary(Box<BinaryAdded>),
    Note(Note),
    Footer(Footer),
}

/// An event's line from a borrowed record: the same JSON as
/// [`Line::Event`], without a copy of the record (the recording's hot path).
#[derive(Serialize)]
pub(crate) enum EventLine<'a> {
    #[serde(rename = "e")]
    Event(&'a Rec),
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
