//! `podtrace export`: Chrome trace-event JSON checked against the format
//! (every event well-formed, nesting consistent per track), OTLP decoded with
//! the protobuf types (JSON file and an OTLP/HTTP push to a receiver in this
//! test), CSV parsed back; and the errors on unusable inputs.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufReader, Write},
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value::Value as AnyV, KeyValue},
    trace::v1::Span,
};
use podtrace::{
    catalogue::Role,
    commands::export::{run, ExportArgs, ExportFormat},
    correlate::{correlate, Correlated},
    export::{
        chrome::{self, Tracks},
        csv as csv_export, otlp, otlp_proto,
    },
    format::Val,
    test_support::synth::{synth, write_trace, SynthPod, SynthSpec, SynthTruth},
    trace::Trace,
};
use prost::Message as _;

mod support;
use serde_json::Value;

/// podtrace's own OTLP request (export/otlp_proto.rs), read back with
/// opentelemetry-proto's types: the reference these tests check it by.
fn otlp_of(
    t: &Trace,
    c: &Correlated,
) -> (
    otlp_proto::collector::trace::v1::ExportTraceServiceRequest,
    ExportTraceServiceRequest,
) {
    let ours = otlp::otlp_request(t, c);
    let bytes = otlp::to_protobuf(&ours);
    let reference = ExportTraceServiceRequest::decode(bytes.as_slice())
        .expect("opentelemetry-proto decodes podtrace's protobuf");
    // Nothing podtrace wrote is lost on the way (every field is one the
    // reference knows, with the same number and type).
    assert_eq!(
        reference.encode_to_vec(),
        bytes,
        "the reference re-encodes the same bytes"
    );
    (ours, reference)
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("export-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn sample() -> (Trace, Correlated, SynthTruth) {
    let mut pods: Vec<SynthPod> = (0..4)
        .map(|i| SynthPod::new(i, 20.0 + 150.0 * i as f64, 90.0 + 70.0 * i as f64, 100.0))
        .collect();
    pods[1].volumes_ms = vec![30.0, 140.0, 160.0];
    pods[2].containers_ms = vec![12.0, 8.0, 20.0];
    pods[2].later_syncs = 2;
    // Quotes and a comma, to exercise CSV quoting.
    pods[3].namespace = "team,\"a\"".into();
    let (t, truth) = synth(&SynthSpec::new(pods)).expect("synthetic trace");
    let c = correlate(&t);
    (t, c, truth)
}

fn ns_of(us: &Value) -> i64 {
    (us.as_f64().expect("number") * 1000.0).round() as i64
}

/// Checks the trace-event format; returns the complete events per track.
fn check_chrome(doc: &Value) -> BTreeMap<(u64, u64), Vec<Value>> {
    assert_eq!(doc["displayTimeUnit"], "ms");
    let evs = doc["traceEvents"].as_array().expect("traceEvents array");
    assert!(!evs.is_empty());
    let mut thread_names: HashMap<(u64, u64), String> = HashMap::new();
    let mut process_names: HashMap<u64, String> = HashMap::new();
    let mut used: Vec<(u64, u64)> = Vec::new();
    let mut tracks: BTreeMap<(u64, u64), Vec<Value>> = BTreeMap::new();
    for e in evs {
        let name = e["name"].as_str().expect("name is a string");
        assert!(!name.is_empty());
        let pid = e["pid"].as_u64().expect("pid is an integer");
        let tid = e["tid"].as_u64().expect("tid is an integer");
        let ts = e["ts"].as_f64().expect("ts is a number");
        assert!(ts.is_finite() && ts >= 0.0, "{e}");
        match e["ph"].as_str().expect("ph") {
            "X" => {
                let dur = e["dur"].as_f64().expect("X has dur");
                assert!(dur.is_finite() && dur >= 0.0, "{e}");
                assert!(e["cat"].is_string(), "{e}");
                used.push((pid, tid));
                tracks.entry((pid, tid)).or_default().push(e.clone());
            }
            "i" => {
                assert!(matches!(e["s"].as_str(), Some("t" | "p" | "g")), "{e}");
                assert!(e.get("dur").is_none(), "{e}");
                used.push((pid, tid));
            }
            "M" => {
                let args = e["args"].as_object().expect("M has args");
                match name {
                    "thread_name" => {
                        thread_names
                            .insert((pid, tid), args["name"].as_str().expect("name").into());
                    }
                    "process_name" => {
                        process_names.insert(pid, args["name"].as_str().expect("name").into());
                    }
                    "thread_sort_index" | "process_sort_index" => {
                        assert!(args["sort_index"].is_i64() || args["sort_index"].is_u64())
                    }
                    "process_labels" => assert!(args["labels"].is_string()),
                    other => panic!("unknown metadata event {other}"),
                }
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    for (pid, tid) in &used {
        assert!(
            thread_names.contains_key(&(*pid, *tid)),
            "track {pid}/{tid} has no name"
        );
        assert!(process_names.contains_key(pid), "process {pid} has no name");
    }
    // Nesting: on each track complete events nest or follow each other.
    for (k, evs) in &mut tracks {
        evs.sort_by_key(|e| (ns_of(&e["ts"]), -ns_of(&e["dur"])));
        let mut stack: Vec<(i64, String)> = Vec::new();
        for e in evs.iter() {
            let (s, d) = (ns_of(&e["ts"]), ns_of(&e["dur"]));
            while stack.last().is_some_and(|t| t.0 <= s) {
                stack.pop();
            }
            if let Some((end, outer)) = stack.last() {
                assert!(
                    s + d <= *end,
                    "track {k:?}: {} [{s}, {}] crosses the end of {outer} at {end}",
                    e["name"],
                    s + d
                );
            }
            stack.push((s + d, e["name"].as_str().unwrap_or("").into()));
        }
    }
    tracks
}

fn thread_names(doc: &Value) -> HashMap<(u64, u64), String> {
    doc["traceEvents"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                (
                    e["pid"].as_u64().unwrap_or(0),
                    e["tid"].as_u64().unwrap_or(0),
                ),
                e["args"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn chrome_trace_is_well_formed_and_nested_per_pod() {
    let (t, c, truth) = sample();
    let doc = serde_json::to_value(chrome::chrome_trace(&t, &c, Tracks::Pod)).expect("json");
    let tracks = check_chrome(&doc);
    let names = thread_names(&doc);
    // Every finished call that is not a point event is on exactly one track.
    let calls = c
        .spans
        .iter()
        .filter(|s| s.end.is_some() && !matches!(s.role, Role::PollCheck | Role::VolumeMounted))
        .count();
    assert_eq!(tracks.values().map(Vec::len).sum::<usize>(), calls);
    // Each pod's syncs (and all under them) are on the pod's track.
    for (i, p) in truth.pods.iter().enumerate() {
        let want = if i == 3 {
            "pod team,\"a\"/pod-3".to_string()
        } else {
            format!("pod default/pod-{i}")
        };
        let (key, evs) = tracks
            .iter()
            .find(|(k, _)| names.get(k) == Some(&want))
            .unwrap_or_else(|| panic!("no track {want}"));
        let sync = evs
            .iter()
            .find(|e| e["name"] == "sync")
            .expect("sync on the pod track");
        assert_eq!(sync["args"]["pod_uid"], p.uid.as_str());
        let ts0 = doc["otherData"]["t0_mono_ns"].as_u64().expect("t0");
        assert_eq!(ns_of(&sync["ts"]) as u64 + ts0, p.sync_start, "{key:?}");
        assert_eq!(ns_of(&sync["dur"]) as u64, p.sync_end - p.sync_start);
        assert!(evs.iter().any(|e| e["name"] == "mount_wait"));
        assert!(evs.iter().any(|e| e["name"] == "create_sandbox"));
    }
    // Poll checks are instant events carrying what they found.
    let evs = doc["traceEvents"].as_array().expect("events");
    let checks: Vec<&Value> = evs
        .iter()
        .filter(|e| e["ph"] == "i" && e["cat"] == "poll_check")
        .collect();
    assert_eq!(
        checks.len(),
        truth.pods.iter().map(|p| p.checks.len()).sum::<usize>()
    );
    for p in &truth.pods {
        let mut mine: Vec<&&Value> = checks
            .iter()
            .filter(|e| e["args"]["pod_uid"] == p.uid.as_str())
            .collect();
        mine.sort_by_key(|e| ns_of(&e["ts"]));
        let got: Vec<u64> = mine
            .iter()
            .map(|e| e["args"]["unmounted"].as_u64().expect("unmounted"))
            .collect();
        let want: Vec<u64> = p.checks.iter().map(|c| c.1).collect();
        assert_eq!(got, want, "{}", p.uid);
    }
    // The mount-wait findings as markers.
    assert_eq!(
        evs.iter()
            .filter(|e| e["name"] == "mount noticed by poll")
            .count(),
        truth.pods.len()
    );
    assert_eq!(
        evs.iter()
            .filter(|e| e["name"] == "volumes mounted")
            .count(),
        truth.pods.len()
    );
    // Loops sit on goroutine tracks; one process named after the binary.
    assert!(names.values().any(|n| n == "goroutine 1"));
    let procs: Vec<&Value> = evs.iter().filter(|e| e["name"] == "process_name").collect();
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0]["args"]["name"], "kubelet (pid 4242)");
}

#[test]
fn chrome_goroutine_tracks_and_overlapping_syncs() {
    let (t, c, _) = sample();
    let doc = serde_json::to_value(chrome::chrome_trace(&t, &c, Tracks::Goroutine)).expect("json");
    let tracks = check_chrome(&doc);
    let names = thread_names(&doc);
    for (k, evs) in &tracks {
        for e in evs {
            assert_eq!(
                names[k],
                format!("goroutine {}", e["args"]["goroutine"]),
                "{e}"
            );
        }
    }
    // Two syncs of one pod that overlap in time (on two goroutines) cannot
    // share a track: the second goes to an overlap track, nesting intact.
    let pods = vec![
        SynthPod::new(0, 10.0, 200.0, 100.0),
        SynthPod::new(1, 100.0, 200.0, 100.0),
    ];
    let (mut t, _) = synth(&SynthSpec::new(pods.clone())).expect("synth");
    for e in &mut t.events {
        for v in e.a.iter_mut().flatten() {
            if let Val::S(s) = v {
                *s = s
                    .replace(&pods[1].uid, &pods[0].uid)
                    .replace("pod-1", "pod-0");
            }
        }
    }
    let c = correlate(&t);
    assert_eq!(c.pods.len(), 1);
    let doc = serde_json::to_value(chrome::chrome_trace(&t, &c, Tracks::Pod)).expect("json");
    check_chrome(&doc);
    assert!(thread_names(&doc)
        .values()
        .any(|n| n == "pod default/pod-0 (overlap 2)"));
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyV> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(AnyV::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Checks an export request against the truth: one trace per pod start,
/// spans nested, attributes and times right.
fn check_otlp(req: &ExportTraceServiceRequest, t: &Trace, truth: &SynthTruth) {
    let off = t.header.mono_to_unix_ns;
    let unix = |mono: u64| (mono as i64 + off) as u64;
    assert_eq!(req.resource_spans.len(), 1, "one traced process");
    let rs = &req.resource_spans[0];
    let res = rs.resource.as_ref().expect("resource");
    assert_eq!(attr_str(&res.attributes, "service.name"), Some("kubelet"));
    assert_eq!(
        attr(&res.attributes, "process.pid"),
        Some(&AnyV::IntValue(4242))
    );
    assert_eq!(attr_str(&res.attributes, "host.name"), Some("node-1"));
    assert_eq!(attr_str(&res.attributes, "k8s.node.name"), Some("node-1"));
    let spans: Vec<&Span> = rs.scope_spans.iter().flat_map(|s| &s.spans).collect();
    assert_eq!(
        rs.scope_spans[0].scope.as_ref().map(|s| s.name.as_str()),
        Some("podtrace")
    );
    let mut by_trace: BTreeMap<&[u8], Vec<&Span>> = BTreeMap::new();
    for s in &spans {
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id.len(), 8);
        assert!(s.span_id.iter().any(|b| *b != 0));
        by_trace.entry(&s.trace_id).or_default().push(s);
    }
    assert_eq!(by_trace.len(), truth.pods.len(), "one trace per pod start");
    let mut ids: Vec<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "span ids are unique");
    for p in &truth.pods {
        let (_, tr) = by_trace
            .iter()
            .find(|(_, v)| {
                v.iter()
                    .any(|s| attr_str(&s.attributes, "k8s.pod.uid") == Some(&p.uid))
            })
            .expect("trace of the pod");
        let roots: Vec<&&Span> = tr.iter().filter(|s| s.parent_span_id.is_empty()).collect();
        assert_eq!(roots.len(), 1, "one root per trace");
        let root = roots[0];
        assert_eq!(root.name, "sync");
        assert_eq!(
            (root.start_time_unix_nano, root.end_time_unix_nano),
            (unix(p.sync_start), unix(p.sync_end))
        );
        for s in tr {
            assert_eq!(attr_str(&s.attributes, "k8s.pod.uid"), Some(p.uid.as_str()));
            assert!(attr_str(&s.attributes, "k8s.pod.name").is_some());
            assert!(attr_str(&s.attributes, "k8s.namespace.name").is_some());
            assert!(attr_str(&s.attributes, "code.function.name").is_some_and(|f| f.contains('.')));
            if s.parent_span_id.is_empty() {
                continue;
            }
            let parent = tr
                .iter()
                .find(|q| q.span_id == s.parent_span_id)
                .expect("parent in the same trace");
            assert!(
                parent.start_time_unix_nano <= s.start_time_unix_nano
                    && s.end_time_unix_nano <= parent.end_time_unix_nano,
                "{} inside {}",
                s.name,
                parent.name
            );
        }
        let names: Vec<&str> = tr.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names.iter().filter(|n| **n == "start_container").count(),
            p.containers.len()
        );
        assert!(!names.contains(&"poll_check") && !names.contains(&"reconcile"));
        let mw = tr
            .iter()
            .find(|s| s.name == "mount_wait")
            .expect("mount wait span");
        assert_eq!(mw.parent_span_id, root.span_id);
        assert_eq!(
            (mw.start_time_unix_nano, mw.end_time_unix_nano),
            (unix(p.mount_wait_start), unix(p.mount_wait_end))
        );
        let checks: Vec<_> = mw
            .events
            .iter()
            .filter(|e| e.name == "poll_check")
            .collect();
        assert_eq!(checks.len(), p.checks.len());
        for (e, (at, unmounted)) in checks.iter().zip(&p.checks) {
            assert_eq!(e.time_unix_nano, unix(*at));
            assert_eq!(
                attr(&e.attributes, "podtrace.unmounted"),
                Some(&AnyV::IntValue(*unmounted as i64))
            );
        }
        let lost = (p.noticed - p.volumes_mounted.expect("mounted")) as f64 / 1e6;
        match attr(&mw.attributes, "podtrace.lost_to_polling_ms") {
            Some(AnyV::DoubleValue(v)) => assert!((v - lost).abs() < 1e-9),
            other => panic!("lost_to_polling_ms: {other:?}"),
        }
        let sandbox = tr
            .iter()
            .find(|s| s.name == "create_sandbox")
            .expect("sandbox");
        assert_eq!(sandbox.start_time_unix_nano, unix(p.sandbox.0));
        assert!(tr
            .iter()
            .any(|s| s.name == "runtime_sync" && s.span_id == sandbox.parent_span_id));
    }
}

#[test]
fn otlp_json_and_protobuf_decode_to_the_pod_starts() {
    let (t, c, truth) = sample();
    let (ours, req) = otlp_of(&t, &c);
    check_otlp(&req, &t, &truth);
    // JSON: decodes back to the same message, with OTLP/JSON conventions,
    // and is the very JSON opentelemetry-proto writes for it.
    let json = otlp::to_json(&ours).expect("json");
    let back: ExportTraceServiceRequest = serde_json::from_str(&json).expect("decode OTLP JSON");
    assert_eq!(back, req);
    let v: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v, serde_json::to_value(&req).expect("reference JSON"));
    let s0 = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert!(s0["traceId"]
        .as_str()
        .is_some_and(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())));
    assert!(s0["spanId"].as_str().is_some_and(|id| id.len() == 16));
    assert!(
        s0["startTimeUnixNano"].is_string(),
        "64-bit times are strings: {s0}"
    );
    // Stable ids: the same trace exports the same ids.
    assert_eq!(otlp::otlp_request(&t, &c), ours);
}

/// The resource names the node the trace is of (`record --node-name`,
/// `$NODE_NAME`), not the hostname of the recorder (in a DaemonSet, its
/// pod's); traces without a node name fall back to the hostname.
#[test]
fn otlp_resource_names_the_node_not_the_recorders_hostname() {
    let (mut t, c, _) = sample();
    t.header.hostname = "podtrace-x7k2p".into();
    t.header.node_name = "node-7".into();
    let names = |t: &Trace| -> Vec<(Option<String>, Option<String>)> {
        otlp_of(t, &c)
            .1
            .resource_spans
            .iter()
            .map(|rs| {
                let a = &rs.resource.as_ref().expect("resource").attributes;
                (
                    attr_str(a, "host.name").map(str::to_string),
                    attr_str(a, "k8s.node.name").map(str::to_string),
                )
            })
            .collect()
    };
    let node7 = (Some("node-7".to_string()), Some("node-7".to_string()));
    assert!(names(&t).iter().all(|n| *n == node7), "{:?}", names(&t));
    t.header.node_name.clear();
    let host = (
        Some("podtrace-x7k2p".to_string()),
        Some("podtrace-x7k2p".to_string()),
    );
    assert!(names(&t).iter().all(|n| *n == host), "{:?}", names(&t));
}

/// An OTLP/HTTP receiver on 127.0.0.1 that takes one request, answers
/// `status` with `body`, and hands back what it got. Gives up after 30 s.
fn receiver(
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
) -> (String, mpsc::Receiver<support::Request>) {
    let (l, addr) = support::listen();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let Some(conn) = support::accept(&l, deadline) else {
            return;
        };
        let mut r = BufReader::new(conn);
        let Some(req) = support::read_request(&mut r) else {
            return;
        };
        let mut conn = r.into_inner();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = conn
            .write_all(head.as_bytes())
            .and_then(|_| conn.write_all(&body));
        let _ = tx.send(req);
    });
    (format!("http://{addr}"), rx)
}

#[test]
fn otlp_http_push_reaches_a_receiver() {
    let (t, c, truth) = sample();
    let (ours, req) = otlp_of(&t, &c);
    let answer = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "one span too old".into(),
        }),
    }
    .encode_to_vec();
    let (ep, rx) = receiver("200 OK", "application/x-protobuf", answer);
    let out = otlp::push(
        &ep,
        &ours,
        &[("X-Tenant".into(), "lab".into())],
        Duration::from_secs(10),
    )
    .expect("push");
    assert_eq!(
        (out.status, out.rejected_spans, out.message.as_str()),
        (200, 1, "one span too old")
    );
    let got = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver got a request");
    assert_eq!(got.line, "POST /v1/traces HTTP/1.1");
    let h = |k: &str| {
        got.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h("content-type"), Some("application/x-protobuf"));
    assert_eq!(h("x-tenant"), Some("lab"));
    let decoded =
        ExportTraceServiceRequest::decode(got.body.as_slice()).expect("receiver decodes protobuf");
    assert_eq!(decoded, req);
    check_otlp(&decoded, &t, &truth);

    // A refusal is an error that says what the receiver answered.
    let (ep, _rx) = receiver("400 Bad Request", "text/plain", b"bad payload".to_vec());
    let e = otlp::push(&ep, &ours, &[], Duration::from_secs(10))
        .expect_err("400 must fail")
        .to_string();
    assert!(e.contains("400") && e.contains("bad payload"), "{e}");

    // The command pushes and writes the JSON file when asked for both.
    let dir = tmp("push");
    let path = dir.join("run.trace");
    write_trace(&t, &path).expect("write");
    let (ep, rx) = receiver("200 OK", "application/x-protobuf", Vec::new());
    let json = dir.join("run.otlp.json");
    run(ExportArgs {
        trace: path,
        format: ExportFormat::Otlp,
        output: Some(json.clone()),
        tracks: Tracks::Pod,
        endpoint: Some(format!("{ep}/v1/traces")),
        headers: vec![],
        timeout_secs: 10,
        ca_cert: None,
        retries: 3,
    })
    .expect("export --endpoint");
    let got = rx.recv_timeout(Duration::from_secs(30)).expect("pushed");
    let decoded = ExportTraceServiceRequest::decode(got.body.as_slice()).expect("decode");
    check_otlp(&decoded, &t, &truth);
    let file: ExportTraceServiceRequest =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json file"))
            .expect("decode file");
    assert_eq!(file, decoded);
}

#[test]
fn csv_parses_back_to_the_spans() {
    let (t, c, truth) = sample();
    let mut buf = Vec::new();
    csv_export::write(&t, &c, &mut buf).expect("csv");
    let mut r = csv::ReaderBuilder::new().from_reader(buf.as_slice());
    let header: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, csv_export::COLUMNS);
    let col = |n: &str| header.iter().position(|h| h == n).expect("column");
    let rows: Vec<csv::StringRecord> = r.records().collect::<Result<_, _>>().expect("records");
    assert_eq!(rows.len(), c.spans.len(), "one row per span");
    let by_id: HashMap<usize, &csv::StringRecord> = rows
        .iter()
        .map(|r| (r[col("span_id")].parse().expect("id"), r))
        .collect();
    let off = t.header.mono_to_unix_ns;
    for (i, s) in c.spans.iter().enumerate() {
        let row = by_id[&i];
        assert_eq!(&row[col("probe")], &*s.name);
        assert_eq!(
            row[col("start_unix_ns")].parse::<i64>().expect("start"),
            s.start as i64 + off
        );
        match s.end {
            Some(e) => {
                assert_eq!(
                    row[col("end_unix_ns")].parse::<i64>().expect("end"),
                    e as i64 + off
                );
                assert_eq!(
                    row[col("duration_ns")].parse::<u64>().expect("dur"),
                    e - s.start
                );
                assert_eq!(&row[col("exit_seen")], "1");
            }
            None => assert_eq!(&row[col("exit_seen")], "0"),
        }
        match s.parent {
            Some(p) => {
                assert_eq!(row[col("parent_id")].parse::<usize>().expect("parent"), p);
                let pd: usize = by_id[&p][col("depth")].parse().expect("depth");
                assert_eq!(row[col("depth")].parse::<usize>().expect("depth"), pd + 1);
            }
            None => assert_eq!((&row[col("parent_id")], &row[col("depth")]), ("", "0")),
        }
        let args: Value = serde_json::from_str(&row[col("args")]).expect("args is JSON");
        assert_eq!(
            args.as_object().map(|o| o.len()),
            Some(s.entry.len() + s.exit.len())
        );
    }
    for (i, p) in truth.pods.iter().enumerate() {
        let syncs: Vec<&csv::StringRecord> = rows
            .iter()
            .filter(|r| &r[col("probe")] == "sync" && &r[col("pod_uid")] == p.uid.as_str())
            .collect();
        let first = syncs.first().expect("sync row");
        assert_eq!(
            first[col("start_unix_ns")].parse::<i64>().expect("start"),
            p.sync_start as i64 + off
        );
        assert_eq!(&first[col("pod_offset_ms")], "0.000000");
        let ns = if i == 3 { "team,\"a\"" } else { "default" };
        assert_eq!(
            &first[col("pod_namespace")],
            ns,
            "quoted fields come back whole"
        );
        assert_eq!(&first[col("role")], "pod_sync");
        assert_eq!(&first[col("error")], "0");
        let checks: Vec<u64> = rows
            .iter()
            .filter(|r| &r[col("probe")] == "poll_check" && &r[col("pod_uid")] == p.uid.as_str())
            .map(|r| {
                let a: Value = serde_json::from_str(&r[col("args")]).expect("args");
                a["unmounted"].as_u64().expect("unmounted")
            })
            .collect();
        assert_eq!(checks, p.checks.iter().map(|c| c.1).collect::<Vec<_>>());
    }
}

#[test]
fn unusable_inputs_give_clear_messages() {
    let dir = tmp("bad");
    let args = |trace: PathBuf, format| ExportArgs {
        trace,
        format,
        output: Some(dir.join("out")),
        tracks: Tracks::Pod,
        endpoint: None,
        headers: vec![],
        timeout_secs: 1,
        ca_cert: None,
        retries: 3,
    };
    let empty = dir.join("empty.trace");
    std::fs::write(&empty, "").expect("write");
    let e = run(args(empty, ExportFormat::Chrome))
        .expect_err("empty must fail")
        .to_string();
    assert!(e.contains("empty.trace") && e.contains("empty file"), "{e}");

    let (mut t, _) = synth(&SynthSpec::new(vec![])).expect("synth");
    t.events.clear();
    let header_only = dir.join("header-only.trace");
    write_trace(&t, &header_only).expect("write");
    let e = run(args(header_only, ExportFormat::Csv))
        .expect_err("no calls must fail")
        .to_string();
    assert!(
        e.contains("header-only.trace") && e.contains("no calls"),
        "{e}"
    );

    let (t, _) = synth(&SynthSpec::new(vec![])).expect("synth");
    let loops_only = dir.join("loops.trace");
    write_trace(&t, &loops_only).expect("write");
    let e = run(args(loops_only.clone(), ExportFormat::Otlp))
        .expect_err("no pods must fail")
        .to_string();
    assert!(
        e.contains("loops.trace") && e.contains("no pod starts"),
        "{e}"
    );
    // Chrome and CSV are fine with loops only.
    run(args(loops_only.clone(), ExportFormat::Chrome)).expect("chrome of loops");

    let mut a = args(loops_only, ExportFormat::Csv);
    a.endpoint = Some("http://127.0.0.1:9".into());
    let e = run(a).expect_err("endpoint with csv must fail").to_string();
    assert!(e.contains("--format otlp"), "{e}");

    let (t, _) = synth(&SynthSpec::new(vec![SynthPod::new(0, 1.0, 10.0, 5.0)])).expect("synth");
    let e = otlp::push(
        "https://127.0.0.1:4318",
        &otlp::otlp_request(&t, &correlate(&t)),
        &[],
        Duration::from_secs(1),
    )
    .expect_err("https must fail")
    .to_string();
    assert!(e.contains("https"), "{e}");
}

#[test]
fn runtime_calls_join_the_pod_start_across_processes() {
    let mut spec = SynthSpec::new(
        (0..3)
            .map(|i| SynthPod::new(i, 10.0 + 200.0 * i as f64, 50.0, 100.0))
            .collect(),
    );
    spec.containerd_pid = Some(777);
    let (t, truth) = synth(&spec).expect("synth");
    let c = correlate(&t);
    let off = t.header.mono_to_unix_ns;
    let unix = |mono: u64| (mono as i64 + off) as u64;

    // OTLP: the containerd handlers are spans of the pod's trace, in the
    // containerd resource, under the kubelet call that waited for them.
    let (_, req) = otlp_of(&t, &c);
    assert_eq!(req.resource_spans.len(), 2, "kubelet and containerd");
    let all: Vec<(&str, &Span)> = req
        .resource_spans
        .iter()
        .flat_map(|rs| {
            let svc = rs
                .resource
                .as_ref()
                .and_then(|r| attr_str(&r.attributes, "service.name"))
                .unwrap_or("");
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (svc, s)))
        })
        .collect();
    // StartContainer names only the container: joined through the id that
    // CreateContainer returned.
    let attributed: Vec<&str> = vec!["RunPodSandbox", "CreateContainer", "StartContainer"];
    for p in &truth.pods {
        let mine: Vec<&(&str, &Span)> = all
            .iter()
            .filter(|(_, s)| attr_str(&s.attributes, "k8s.pod.uid") == Some(p.uid.as_str()))
            .collect();
        let trace_id = &mine[0].1.trace_id;
        assert!(
            mine.iter().all(|(_, s)| &s.trace_id == trace_id),
            "one trace per pod start"
        );
        for (name, start, end) in p.cri.iter().filter(|c| attributed.contains(&c.0.as_str())) {
            let (svc, s) = mine
                .iter()
                .find(|(_, s)| &s.name == name && s.start_time_unix_nano == unix(*start))
                .unwrap_or_else(|| panic!("{name} of {} exported", p.uid));
            assert_eq!(*svc, "containerd");
            assert_eq!(s.end_time_unix_nano, unix(*end));
            let parent = mine
                .iter()
                .find(|(_, q)| q.span_id == s.parent_span_id)
                .expect("parent in the trace");
            let want = if name == "RunPodSandbox" {
                "create_sandbox"
            } else {
                "start_container"
            };
            assert_eq!((parent.0, parent.1.name.as_str()), ("kubelet", want));
            assert!(
                parent.1.start_time_unix_nano <= s.start_time_unix_nano
                    && s.end_time_unix_nano <= parent.1.end_time_unix_nano
            );
        }
    }

    // Chrome: a containerd process with a track for each pod it served.
    let doc = serde_json::to_value(chrome::chrome_trace(&t, &c, Tracks::Pod)).expect("json");
    let tracks = check_chrome(&doc);
    let names = thread_names(&doc);
    let evs = doc["traceEvents"].as_array().expect("events");
    assert!(evs.iter().any(|e| e["name"] == "process_name"
        && e["pid"] == 777
        && e["args"]["name"] == "containerd (pid 777)"));
    let sandbox_tracks: Vec<&String> = tracks
        .iter()
        .filter(|((pid, _), evs)| *pid == 777 && evs.iter().any(|e| e["name"] == "RunPodSandbox"))
        .map(|(k, _)| &names[k])
        .collect();
    assert_eq!(sandbox_tracks.len(), truth.pods.len());
    assert!(sandbox_tracks
        .iter()
        .all(|n| n.starts_with("pod default/pod-")));

    // CSV: rows from both processes.
    let mut buf = Vec::new();
    csv_export::write(&t, &c, &mut buf).expect("csv");
    let mut r = csv::ReaderBuilder::new().from_reader(buf.as_slice());
    let rows: Vec<csv::StringRecord> = r.records().collect::<Result<_, _>>().expect("records");
    assert_eq!(rows.len(), c.spans.len());
    assert!(rows
        .iter()
        .any(|r| &r[6] == "containerd" && &r[9] == "RunPodSandbox"));
}

#[test]
fn runtime_only_traces_export_one_trace_per_pod() {
    let mut spec = SynthSpec::new(
        (0..2)
            .map(|i| SynthPod::new(i, 10.0 + 200.0 * i as f64, 50.0, 100.0))
            .collect(),
    );
    spec.containerd_pid = Some(777);
    let (mut t, truth) = synth(&spec).expect("synth");
    let probes = t.header.probes.clone();
    t.events
        .retain(|e| probes[e.p as usize].binary == "containerd");
    let c = correlate(&t);
    let (_, req) = otlp_of(&t, &c);
    assert_eq!(req.resource_spans.len(), 1, "containerd only");
    let spans: Vec<&Span> = req.resource_spans[0]
        .scope_spans
        .iter()
        .flat_map(|s| &s.spans)
        .collect();
    let off = t.header.mono_to_unix_ns;
    for p in &truth.pods {
        let mine: Vec<&&Span> = spans
            .iter()
            .filter(|s| attr_str(&s.attributes, "k8s.pod.uid") == Some(p.uid.as_str()))
            .collect();
        let root = mine
            .iter()
            .find(|s| s.parent_span_id.is_empty())
            .expect("root");
        assert_eq!(root.name, "pod_start");
        assert_eq!(
            attr(&root.attributes, "podtrace.synthetic"),
            Some(&AnyV::BoolValue(true))
        );
        assert_eq!(mine.len(), 1 + p.cri.len());
        let first = p.cri.iter().map(|c| c.1).min().expect("calls");
        let last = p.cri.iter().map(|c| c.2).max().expect("calls");
        assert_eq!(
            (root.start_time_unix_nano, root.end_time_unix_nano),
            ((first as i64 + off) as u64, (last as i64 + off) as u64)
        );
        assert!(mine
            .iter()
            .filter(|s| s.name != "pod_start")
            .all(|s| s.parent_span_id == root.span_id && s.trace_id == root.trace_id));
    }
    let doc = serde_json::to_value(chrome::chrome_trace(&t, &c, Tracks::Pod)).expect("json");
    check_chrome(&doc);
}
