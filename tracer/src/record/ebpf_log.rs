//! `podtrace record --ebpf-log`: the eBPF program's aya-log records about
//! captures that failed or were cut short, with probe and capture names.
//!
//! The eBPF side knows only numbers ("probe 3 entry capture 1: read of 8
//! bytes at 0xc000123456 failed (step 1 of the path)"); this logger puts the
//! names from the probe table in front and prints the first few of each
//! kind, counting the rest (the trace's footer and the report count them all).
//!
//! Beside [`super::bpf`], which hands it to aya-log; reads only the
//! probe table ([`crate::format::ProbeInfo`]).

use std::{
    collections::BTreeMap,
    io::Write as _,
    sync::{Arc, Mutex},
};

use crate::{catalogue::CaptureDef, format::ProbeInfo};

/// Messages printed per (probe, site, capture, kind of problem).
pub const SHOWN_PER_CAPTURE: u64 = 3;

/// Where the lines go: stderr, or a buffer in tests.
pub type Sink = Box<dyn FnMut(&str) + Send>;

/// Cloning shares the counts: one clone goes to aya-log, one stays for
/// [`CaptureLogger::summary`].
#[derive(Clone)]
pub struct CaptureLogger {
    probes: Arc<Vec<ProbeInfo>>,
    state: Arc<Mutex<State>>,
}

struct State {
    sink: Sink,
    /// (probe, site, capture, failed?) → messages seen.
    seen: BTreeMap<(u32, String, usize, bool), u64>,
}

/// The numbers at the start of a capture message: `probe N SITE capture I: …`.
fn parse(msg: &str) -> Option<(u32, &str, usize, &str)> {
    let rest = msg.strip_prefix("probe ")?;
    let (id, rest) = rest.split_once(' ')?;
    let (site, rest) = rest.split_once(" capture ")?;
    let (slot, what) = rest.split_once(": ")?;
    Some((id.parse().ok()?, site, slot.parse().ok()?, what))
}

/// `RDI+16→+0` style summary of what a capture reads.
fn describe(c: &CaptureDef) -> String {
    let mut s = c.reg.clone();
    for (i, off) in c.path.iter().enumerate() {
        s.push_str(&if i == 0 {
            format!("+{off}")
        } else {
            format!("→+{off}")
        });
    }
    format!("{} at {s}", format!("{:?}", c.kind).to_lowercase())
}

impl CaptureLogger {
    pub fn new(probes: Vec<ProbeInfo>, sink: Sink) -> CaptureLogger {
        CaptureLogger {
            probes: Arc::new(probes),
            state: Arc::new(Mutex::new(State {
                sink,
                seen: BTreeMap::new(),
            })),
        }
    }

    pub fn stderr(probes: Vec<ProbeInfo>) -> CaptureLogger {
        Self::new(
            probes,
            Box::new(|line| {
                let _ = writeln!(std::io::stderr(), "{line}");
            }),
        )
    }

    /// The line for one eBPF message, or None to count it silently.
    fn line(&self, st: &mut State, msg: &str) -> Option<String> {
        let Some((id, site, slot, what)) = parse(msg) else {
            return Some(format!("podtrace: ebpf: {msg}"));
        };
        let n = st
            .seen
            .entry((id, site.to_string(), slot, what.contains("failed")))
            .or_default();
        *n += 1;
        if *n > SHOWN_PER_CAPTURE {
            return None;
        }
        let probe = self.probes.get(id as usize);
        let cap = probe.and_then(|p| {
            if site == "entry" {
                p.entry_captures.get(slot)
            } else {
                p.exit_captures.get(slot)
            }
        });
        let more = if *n == SHOWN_PER_CAPTURE {
            " (further ones counted, not shown)"
        } else {
            ""
        };
        Some(match (probe, cap) {
            (Some(p), Some(c)) => format!(
                "podtrace: ebpf: {} {} ({}) {site} capture `{}` ({}): {what}{more}",
                p.binary,
                p.probe,
                p.symbol,
                c.name,
                describe(c)
            ),
            _ => format!("podtrace: ebpf: {msg}{more}"),
        })
    }

    /// Messages not shown, per capture, as lines for the end of the run.
    pub fn summary(&self) -> Vec<String> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        st.seen
            .iter()
            .filter(|(_, &n)| n > SHOWN_PER_CAPTURE)
            .map(|((id, site, slot, failed), n)| {
                let p = self.probes.get(*id as usize);
                format!(
                    "podtrace: ebpf: {} more {} messages for {} {} {site} capture #{slot}",
                    n - SHOWN_PER_CAPTURE,
                    if *failed { "failed-read" } else { "truncation" },
                    p.map_or("?", |p| p.binary.as_str()),
                    p.map_or("?", |p| p.probe.as_str()),
                )
            })
            .collect()
    }
}

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let msg = record.args().to_string();
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(line) = self.line(&mut st, &msg) {
            (st.sink)(&line);
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use log::Log as _;

    use super::*;
    use crate::catalogue::Role;

    #[test]
    fn names_the_probe_and_capture_and_limits_repeats() {
        let probe = ProbeInfo::kubelet_with_pod_uid(
            0,
            "sync",
            Role::PodSync,
            "k8s.io/kubernetes/pkg/kubelet.(*Kubelet).SyncPod",
        );
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let out = Arc::clone(&lines);
        let l = CaptureLogger::new(
            vec![probe],
            Box::new(move |s| out.lock().expect("lock").push(s.to_string())),
        );
        for _ in 0..5 {
            l.log(
                &log::Record::builder()
                    .args(format_args!(
                        "probe 0 entry capture 0: read of 8 bytes at 0xc000010060 failed (step 0 of the path)"
                    ))
                    .build(),
            );
        }
        let got = lines.lock().expect("lock").clone();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(
            got[0],
            "podtrace: ebpf: kubelet sync (k8s.io/kubernetes/pkg/kubelet.(*Kubelet).SyncPod) entry capture `pod_uid` (str at RSI+96): read of 8 bytes at 0xc000010060 failed (step 0 of the path)"
        );
        assert!(got[2].ends_with("(further ones counted, not shown)"));
        assert_eq!(
            l.summary(),
            ["podtrace: ebpf: 2 more failed-read messages for kubelet sync entry capture #0"]
        );
    }
}
