//! The streaming reader (`Trace::open` → correlator, what report, compare,
//! predict and export run on) against the whole-file path it replaced, and
//! against a report committed from the code before it.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use podtrace::{
    analysis::report::Report,
    correlate::{correlate, read_correlated, MAX_SPAN_AGE_NS, REORDER_NS},
    export::csv,
    test_support::synth::{synth, write_busy_node, write_trace, BusyNode, SynthPod, SynthSpec},
    trace::Trace,
};
use serde_json::Value;

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stream-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn busy(seconds: u64) -> BusyNode {
    BusyNode {
        seconds,
        ..BusyNode::hour()
    }
}

/// The report and the CSV export from the whole trace in memory (sorted by
/// time, the old path) and from the stream.
fn both_ways(path: &Path) -> ((Value, Vec<u8>), (Value, Vec<u8>)) {
    let t = Trace::read(path).expect("read whole");
    let c = correlate(&t);
    let mut csv_mem = Vec::new();
    csv::write(&t, &c, &mut csv_mem).expect("csv");
    let mem = serde_json::to_value(Report::build(&t, &c)).expect("json");
    let (info, c) = read_correlated(path, MAX_SPAN_AGE_NS).expect("stream");
    let mut csv_stream = Vec::new();
    csv::write(&info, &c, &mut csv_stream).expect("csv");
    let stream = serde_json::to_value(Report::build(&info, &c)).expect("json");
    ((mem, csv_mem), (stream, csv_stream))
}

/// `got` cut down to the fields `want` has, at every depth.
fn only_fields_of(got: &Value, want: &Value) -> Value {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => Value::Object(
            w.iter()
                .filter_map(|(k, wv)| Some((k.clone(), only_fields_of(g.get(k)?, wv))))
                .collect(),
        ),
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            Value::Array(g.iter().zip(w).map(|(g, w)| only_fields_of(g, w)).collect())
        }
        _ => got.clone(),
    }
}

#[test]
fn streamed_report_matches_the_committed_one() {
    let path = tmp("golden").join("busy.trace");
    let st = write_busy_node(&busy(120), &path).expect("busy node");
    assert_eq!((st.events, st.pod_starts), (11632, 24));
    let (info, c) = read_correlated(&path, MAX_SPAN_AGE_NS).expect("stream");
    assert_eq!(info.events, st.events);
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    let got = serde_json::to_value(Report::build(&info, &c)).expect("json");
    // Written by `podtrace report --format json` before the reader streamed
    // (whole trace in memory, per-pod scans of all spans), on the same
    // generated trace: pods, resyncs, loops and pairing counts.
    let want: Value =
        serde_json::from_str(include_str!("fixtures/busy_node_120s_report.json")).expect("fixture");
    // Fields are only ever added to the report: the fixture's must hold.
    for k in ["pods", "resynced_pods", "loops", "stats"] {
        assert_eq!(
            only_fields_of(&got[k], &want[k]),
            want[k],
            "report section {k}"
        );
    }
    // Added since: each loop's busy time (its ticks' durations add up).
    for l in got["loops"].as_array().expect("loops") {
        assert!(l["busy_ms"].as_f64().is_some_and(|b| b > 0.0), "{l}");
    }
    assert_eq!(got["pods"].as_array().map(Vec::len), Some(24));
    assert_eq!(got["resynced_pods"].as_array().map(Vec::len), Some(100));
}

#[test]
fn streaming_equals_the_whole_file_path() {
    let dir = tmp("same");
    // A kubelet + containerd run with every stage, and a busy node.
    let mut spec = SynthSpec::new(
        (0..6)
            .map(|i| SynthPod::new(i, 30.0 + 400.0 * i as f64, 150.0, 100.0))
            .collect(),
    );
    spec.containerd_pid = Some(77);
    spec.post_sync_relist = true;
    let (t, _) = synth(&spec).expect("synth");
    let a = dir.join("synth.trace");
    write_trace(&t, &a).expect("write");
    let b = dir.join("busy.trace");
    write_busy_node(&busy(90), &b).expect("busy");
    for p in [&a, &b] {
        let (mem, stream) = both_ways(p);
        assert!(mem.0["pods"].as_array().is_some_and(|v| !v.is_empty()));
        assert_eq!(mem, stream, "{}", p.display());
    }
}

#[test]
fn events_out_of_order_within_the_window_are_put_back() {
    // The ring buffer interleaves CPUs: write the events with neighbours
    // swapped (up to 5 ms apart) and some hits at one instant, as the
    // recorder may; the stream must pair them as the sorted whole does.
    let dir = tmp("reorder");
    let (mut t, _) = synth(&SynthSpec::new(
        (0..4)
            .map(|i| SynthPod::new(i, 30.0 + 300.0 * i as f64, 120.0, 100.0))
            .collect(),
    ))
    .expect("synth");
    let sorted = dir.join("sorted.trace");
    write_trace(&t, &sorted).expect("write");
    let mut swapped = 0;
    for i in (1..t.events.len()).step_by(3) {
        if t.events[i].t - t.events[i - 1].t < 5_000_000 && t.events[i].t > t.events[i - 1].t {
            t.events.swap(i - 1, i);
            swapped += 1;
        }
    }
    assert!(swapped >= 30, "only {swapped} swaps");
    let shuffled = dir.join("shuffled.trace");
    write_trace(&t, &shuffled).expect("write");
    let (want, want_csv) = both_ways(&sorted).0;
    let ((mem, _), (got, got_csv)) = both_ways(&shuffled);
    assert_eq!(got, want);
    assert_eq!(got_csv, want_csv);
    assert_eq!(mem, want, "the whole-file path sorts too");
    // An event later than the window is paired where it stands, and said.
    let busy_path = dir.join("busy.trace");
    write_busy_node(&busy(30), &busy_path).expect("busy");
    let mut t = Trace::read(&busy_path).expect("read");
    let late_at = t.events.len() / 2;
    let mut e = t.events[late_at].clone();
    e.t -= REORDER_NS + 500_000_000;
    t.events.insert(late_at, e);
    let late = dir.join("late.trace");
    write_trace(&t, &late).expect("write");
    let (info, _) = read_correlated(&late, MAX_SPAN_AGE_NS).expect("stream");
    assert!(
        info.warnings
            .iter()
            .any(|w| w.contains("1 events came more than 1 s after later ones")),
        "{:?}",
        info.warnings
    );
}

#[test]
fn a_cut_short_trace_reads_to_its_last_complete_line() {
    let dir = tmp("cut");
    let full = dir.join("full.trace");
    write_busy_node(&busy(60), &full).expect("busy");
    let bytes = std::fs::read(&full).expect("read");
    // Cut in the middle of an event line two thirds in (as SIGKILL or a full
    // disk would): no footer, a partial last line.
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let keep = lines.len() * 2 / 3;
    let mut cut: Vec<u8> = lines[..keep].concat();
    cut.extend_from_slice(&lines[keep][..lines[keep].len() / 2]);
    let path = dir.join("cut.trace");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&cut))
        .expect("write");
    let (info, c) = read_correlated(&path, MAX_SPAN_AGE_NS).expect("stream");
    // Every complete event line (all but the header) was read.
    assert_eq!(info.events, keep as u64 - 1);
    assert!(info.footer.is_none());
    let name = path.display().to_string();
    assert_eq!(info.warnings.len(), 2, "{:?}", info.warnings);
    let cut_line = format!("{name}:{}: unreadable line ignored (", keep + 1);
    assert!(
        info.warnings[0].starts_with(&cut_line)
            && info.warnings[0].ends_with("); the recording was probably cut short"),
        "{:?}",
        info.warnings
    );
    assert_eq!(
        info.warnings[1],
        format!(
            "{name}: no footer: the recording was interrupted; {} events read",
            keep - 1
        )
    );
    assert!(!c.spans.is_empty());
    // The report says so, and equals the whole-file path's.
    let (mem, stream) = both_ways(&path);
    assert_eq!(mem, stream);
    assert_eq!(stream.0["trace"]["complete"], Value::Bool(false));
    assert_eq!(stream.0["warnings"].as_array().map(Vec::len), Some(2));
}

#[test]
fn an_event_naming_an_unknown_probe_is_an_error() {
    let dir = tmp("probe");
    let (mut t, _) =
        synth(&SynthSpec::new(vec![SynthPod::new(0, 30.0, 50.0, 100.0)])).expect("synth");
    let n = t.header.probes.len() as u32;
    t.events[3].p = n + 5;
    let path = dir.join("bad.trace");
    write_trace(&t, &path).expect("write");
    let e = read_correlated(&path, MAX_SPAN_AGE_NS)
        .expect_err("must fail")
        .to_string();
    assert!(
        e.contains(&format!(
            "event names probe {} but the header has {n}",
            n + 5
        )) && e.contains("bad.trace"),
        "{e}"
    );
}
