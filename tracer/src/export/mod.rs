//! Exporters of correlated traces to the formats other tools read: Chrome
//! trace-event JSON (Perfetto, chrome://tracing), OTLP traces and CSV.
//! Formats and columns: docs/export.md.
//!
//! Reads correlated traces and reports; writes no trace, attaches nothing.

pub mod chrome;
pub mod csv;
pub mod http;
pub mod otlp;
pub mod otlp_proto;

use crate::{
    correlate::{Correlated, Pod, Span},
    format::Val,
    trace::TraceMeta,
};

/// Unix ns of a CLOCK_MONOTONIC ns timestamp.
pub fn unix_ns(trace: &dyn TraceMeta, mono: u64) -> i64 {
    (mono as i64).saturating_add(trace.header().mono_to_unix_ns)
}

/// Call depth of span `i` (0 for a span without a traced caller).
pub fn depth(c: &Correlated, mut i: usize) -> usize {
    let mut d = 0;
    while let Some(p) = c.spans.get(i).and_then(|s| s.parent) {
        d += 1;
        i = p;
    }
    d
}

/// Outermost traced caller of span `i`.
pub fn root(c: &Correlated, mut i: usize) -> usize {
    while let Some(p) = c.spans.get(i).and_then(|s| s.parent) {
        i = p;
    }
    i
}

/// The traced function's symbol, from the trace's probe table.
pub fn function<'a>(trace: &'a dyn TraceMeta, s: &'a Span) -> &'a str {
    trace
        .probe(s.probe)
        .map(|p| p.symbol.as_str())
        .unwrap_or(&s.name)
}

pub fn val_json(v: &Val) -> serde_json::Value {
    match v {
        Val::N(n) => serde_json::Value::from(*n),
        Val::S(s) => serde_json::Value::from(s.as_str()),
    }
}

/// A span's captured values as a JSON object (entry, then exit).
pub fn args_json(s: &Span) -> serde_json::Map<String, serde_json::Value> {
    s.entry
        .iter()
        .chain(s.exit.iter())
        .map(|(k, v)| (k.to_string(), val_json(v)))
        .collect()
}

/// `namespace/name`, or the UID when the pod's name was never captured.
pub fn pod_label(p: &Pod) -> String {
    match (&p.namespace, &p.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        _ => p.uid.clone(),
    }
}

pub use crate::analysis::pods::syncs_by_pod;
