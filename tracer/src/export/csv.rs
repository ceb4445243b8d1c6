//! CSV: one row per span (RFC 4180 quoting, LF line ends, a header row),
//! written with the `csv` crate. Columns, in order, are [`COLUMNS`];
//! docs/export.md says what each means.

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

fn role_name(r: Role) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Writes every span, in start order.
pub fn write(
    trace: &dyn crate::trace::TraceMeta,
    c: &Correlated,
    mut out: impl Write,
) -> Result<()> {
    let syncs = syncs_by_pod(c);
    let pod_start: Vec<Option<u64>> = syncs
        .iter()
        .map(|v| v.first().map(|&i| c.spans[i].start))
        .collect();
    let mut order: Vec<usize> = (0..c.spans.len()).collect();
    order.sort_by_key(|&i| (c.spans[i].start, i));
    // Quote only where needed (a comma, quote or line break), LF ends: the
    // crate's defaults but for the terminator.
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(&mut out);
    w.write_record(COLUMNS).context("writing CSV")?;
    for i in order {
        let s = &c.spans[i];
        let pod = s.pod.and_then(|p| c.pods.get(p));
        let offset = s
            .pod
            .and_then(|p| pod_start.get(p).copied().flatten())
            .map(|b| format!("{:.6}", (s.start as f64 - b as f64) / 1e6));
        let args = serde_json::Value::Object(args_json(s)).to_string();
        w.write_record([
            i.to_string(),
            s.parent.map(|p| p.to_string()).unwrap_or_default(),
            depth(c, i).to_string(),
            pod.map(|p| p.uid.clone()).unwrap_or_default(),
            pod.and_then(|p| p.namespace.clone()).unwrap_or_default(),
            pod.and_then(|p| p.name.clone()).unwrap_or_default(),
            s.binary.to_string(),
            s.pid.to_string(),
            s.goid.to_string(),
            s.name.to_string(),
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
        ])
        .context("writing CSV")?;
    }
    w.flush().context("writing CSV")?;
    drop(w);
    out.flush().context("writing CSV")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::synth::{synth, SynthPod, SynthSpec};

    #[test]
    fn quoting_only_where_needed_and_lf_ends() -> Result<()> {
        let mut pod = SynthPod::new(0, 1.0, 10.0, 5.0);
        pod.namespace = "team,\"a\"".into();
        let (t, _) = synth(&SynthSpec::new(vec![pod]))?;
        let c = crate::correlate::correlate(&t);
        let mut buf = Vec::new();
        write(&t, &c, &mut buf)?;
        let text = String::from_utf8(buf)?;
        assert!(!text.contains('\r'));
        assert!(text.starts_with(&(COLUMNS.join(",") + "\n")));
        // The namespace quoted, quotes doubled; the JSON args quoted too.
        assert!(text.contains(",\"team,\"\"a\"\"\","), "{text}");
        assert!(text.contains(",\"{\"\""), "{text}");
        Ok(())
    }
}
