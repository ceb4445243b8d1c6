//! CSV: one row per span (RFC 4180 quoting, LF line ends, a header row).
//! Columns, in order, are [`COLUMNS`]; docs/export.md says what each means.

use std::io::Write;

use anyhow::{Context as _, Result};

use crate::{
    catalogue::Role,
    correlate::Correlated,
    export::{args_json, depth, function, syncs_by_pod, unix_ns},
};

pub const COLUMNS: &[&str] = &[
    "span_id",
    "parent_id",
    "depth",
    "pod_uid",
    "pod_namespace",
    "pod_name",
    "binary",
    "pid",
    "goroutine",
    "probe",
    "role",
    "function",
    "start_unix_ns",
    "end_unix_ns",
    "duration_ns",
    "pod_offset_ms",
    "exit_seen",
    "error",
    "args",
];

/// Quotes a field if it holds a comma, a quote or a line break.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn role_name(r: Role) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Writes every span, in start order.
pub fn write(trace: &crate::trace::Trace, c: &Correlated, mut out: impl Write) -> Result<()> {
    let syncs = syncs_by_pod(c);
    let pod_start: Vec<Option<u64>> = syncs
        .iter()
        .map(|v| v.first().map(|&i| c.spans[i].start))
        .collect();
    let mut order: Vec<usize> = (0..c.spans.len()).collect();
    order.sort_by_key(|&i| (c.spans[i].start, i));
    let w = || -> std::io::Result<()> {
        writeln!(out, "{}", COLUMNS.join(","))?;
        for i in order {
            let s = &c.spans[i];
            let pod = s.pod.and_then(|p| c.pods.get(p));
            let offset = s
                .pod
                .and_then(|p| pod_start.get(p).copied().flatten())
                .map(|b| format!("{:.6}", (s.start as f64 - b as f64) / 1e6));
            let args = serde_json::Value::Object(args_json(s)).to_string();
            let row = [
                i.to_string(),
                s.parent.map(|p| p.to_string()).unwrap_or_default(),
                depth(c, i).to_string(),
                pod.map(|p| p.uid.clone()).unwrap_or_default(),
                pod.and_then(|p| p.namespace.clone()).unwrap_or_default(),
                pod.and_then(|p| p.name.clone()).unwrap_or_default(),
                s.binary.clone(),
                s.pid.to_string(),
                s.goid.to_string(),
                s.name.clone(),
                role_name(s.role),
                function(trace, s).to_string(),
                unix_ns(trace, s.start).to_string(),
                s.end
                    .map(|e| unix_ns(trace, e).to_string())
                    .unwrap_or_default(),
                s.duration().map(|d| d.to_string()).unwrap_or_default(),
                offset.unwrap_or_default(),
                if s.end.is_some() { "1" } else { "0" }.to_string(),
                s.arg_u64("error")
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                args,
            ];
            let line: Vec<String> = row.iter().map(|f| field(f)).collect();
            writeln!(out, "{}", line.join(","))?;
        }
        out.flush()
    };
    w().context("writing CSV")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }
}
