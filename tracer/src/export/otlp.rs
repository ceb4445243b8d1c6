//! OTLP traces: one trace per pod start (the pod's create sync; a pod that
//! only resynced is no start), spans nested as in the report (sync → mount
//! wait, runtime stages), the poll checks and volume marks as span events of
//! the mount wait. Encoded with the
//! OpenTelemetry protobuf types, as protobuf JSON (a file) or protobuf
//! (OTLP/HTTP push).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
    resource::v1::Resource,
    trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status},
};
use prost::Message as _;

use crate::{
    catalogue::Role,
    compare::SplitMix64,
    correlate::Correlated,
    export::{function, syncs_by_pod, unix_ns},
    report::Report,
    trace::{Trace, Val},
};

/// Instrumentation scope of every span.
pub const SCOPE: &str = "podtrace";

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn kv_int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn kv_f64(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn kv_val(key: &str, v: &Val) -> KeyValue {
    match v {
        Val::N(n) => kv_int(key, i64::try_from(*n).unwrap_or(i64::MAX)),
        Val::S(s) => kv_str(key, s),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Deterministic, non-zero ids: the same trace exports the same ids.
fn ids(uid: &str, start: u64) -> (Vec<u8>, SplitMix64) {
    let mut rng = SplitMix64::new(fnv1a(uid.as_bytes()) ^ start);
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&rng.next_u64().to_be_bytes());
    id.extend_from_slice(&(rng.next_u64() | 1).to_be_bytes());
    (id, rng)
}

fn unix_u64(trace: &Trace, mono: u64) -> u64 {
    u64::try_from(unix_ns(trace, mono)).unwrap_or(0)
}

/// Roles that become spans (the rows of the report, the runtime's CRI
/// handlers); the poll machinery shows up as attributes and events of the
/// mount wait.
fn is_span_role(r: Role) -> bool {
    matches!(r, Role::PodSync | Role::MountWait | Role::Stage | Role::Cri)
}

/// Turns call trees into OTLP spans of one trace.
struct TreeExport<'a> {
    trace: &'a Trace,
    c: &'a Correlated,
    children: &'a [Vec<usize>],
    trace_id: Vec<u8>,
    rng: SplitMix64,
    pod_attrs: Vec<KeyValue>,
}

impl TreeExport<'_> {
    /// The spans of the tree under `top` (skipping roles that are not
    /// spans), `top` a child of `parent`. Returns (span index, span).
    fn export(&mut self, top: usize, parent: Option<Vec<u8>>) -> Vec<(usize, Span)> {
        let c = self.c;
        let mut stack = vec![(top, parent)];
        let mut out = Vec::new();
        while let Some((i, parent)) = stack.pop() {
            let s = &c.spans[i];
            let exported = is_span_role(s.role);
            let span_id = if exported {
                (self.rng.next_u64() | 1).to_be_bytes().to_vec()
            } else {
                Vec::new()
            };
            let next_parent = if exported {
                Some(span_id.clone())
            } else {
                parent.clone()
            };
            let mut kids = self.children[i].clone();
            kids.sort_by_key(|&k| std::cmp::Reverse(c.spans[k].start));
            stack.extend(kids.into_iter().map(|k| (k, next_parent.clone())));
            if !exported {
                continue;
            }
            let mut attrs = self.pod_attrs.clone();
            attrs.push(kv_str("code.function.name", function(self.trace, s)));
            attrs.push(kv_str("podtrace.probe", &s.name));
            attrs.push(kv_int(
                "podtrace.goroutine.id",
                i64::try_from(s.goid).unwrap_or(-1),
            ));
            for (k, v) in s.entry.iter().chain(s.exit.iter()) {
                if !matches!(
                    k.as_str(),
                    "pod_name" | "pod_namespace" | "pod_uid" | "error"
                ) {
                    attrs.push(kv_val(&format!("podtrace.arg.{k}"), v));
                }
            }
            let end = match s.end {
                Some(e) => e,
                None => {
                    attrs.push(kv("podtrace.exit_seen", any_value::Value::BoolValue(false)));
                    s.start
                }
            };
            let status = match s.arg_u64("error") {
                Some(1) => Some(Status {
                    code: status::StatusCode::Error as i32,
                    message: format!("{} returned an error", s.name),
                }),
                _ => None,
            };
            out.push((
                i,
                Span {
                    trace_id: self.trace_id.clone(),
                    span_id,
                    parent_span_id: parent.unwrap_or_default(),
                    name: s.name.clone(),
                    kind: span::SpanKind::Internal as i32,
                    start_time_unix_nano: unix_u64(self.trace, s.start),
                    end_time_unix_nano: unix_u64(self.trace, end),
                    attributes: attrs,
                    status,
                    ..Default::default()
                },
            ));
        }
        out
    }
}

/// Builds the export request: one resource per traced process.
pub fn otlp_request(trace: &Trace, c: &Correlated) -> ExportTraceServiceRequest {
    let report = Report::build(trace, c);
    let syncs = syncs_by_pod(c);
    // Children of each span, to walk a sync's tree.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); c.spans.len()];
    for (i, s) in c.spans.iter().enumerate() {
        if let Some(p) = s.parent {
            children[p].push(i);
        }
    }
    // Outermost runtime CRI handlers of each pod.
    let mut cri: Vec<Vec<usize>> = vec![Vec::new(); c.pods.len()];
    for (i, s) in c.spans.iter().enumerate() {
        let outermost = s.parent.is_none_or(|pp| c.spans[pp].role != Role::Cri);
        if let (Role::Cri, Some(p), true) = (s.role, s.pod, outermost) {
            if let Some(v) = cri.get_mut(p) {
                v.push(i);
            }
        }
    }
    let mut by_process: BTreeMap<(String, u32), Vec<Span>> = BTreeMap::new();
    for (p, idx) in syncs.iter().enumerate() {
        let pod = &c.pods[p];
        let mut pod_attrs = vec![kv_str("k8s.pod.uid", &pod.uid)];
        if let Some(n) = &pod.name {
            pod_attrs.push(kv_str("k8s.pod.name", n));
        }
        if let Some(ns) = &pod.namespace {
            pod_attrs.push(kv_str("k8s.namespace.name", ns));
        }
        let Some(first) = crate::report::start_sync(c, idx) else {
            if idx.is_empty() {
                // Only the runtime was traced for this pod.
                let calls = cri.get(p).map(Vec::as_slice).unwrap_or_default();
                runtime_only(trace, c, &children, calls, pod_attrs, &mut by_process);
            }
            // Otherwise it was already running: its resyncs are no start.
            continue;
        };
        let idx = &idx[idx.iter().position(|&i| i == first).unwrap_or(0)..];
        let root = &c.spans[first];
        let (trace_id, rng) = ids(&pod.uid, root.start);
        let mut tx = TreeExport {
            trace,
            c,
            children: &children,
            trace_id,
            rng,
            pod_attrs,
        };
        let pr = report.pods.iter().find(|r| r.uid == pod.uid);
        let first_clean_end = idx
            .iter()
            .map(|&i| &c.spans[i])
            .find(|s| s.end.is_some() && s.arg_u64("error") != Some(1))
            .and_then(|s| s.end);
        let mut spans = tx.export(first, None);
        for (i, sp) in &mut spans {
            if *i == first {
                if let Some(e) = first_clean_end {
                    sp.attributes.push(kv_f64(
                        "podtrace.pod_start_ms",
                        (e - root.start) as f64 / 1e6,
                    ));
                }
                sp.attributes
                    .push(kv_int("podtrace.later_syncs", idx.len() as i64 - 1));
            }
            if c.spans[*i].role == Role::MountWait {
                mount_wait_details(trace, pr, root.start, &mut sp.attributes, &mut sp.events);
            }
        }
        // The runtime's CRI handlers for this pod during its start, in their
        // own process: under the innermost call of the sync that encloses
        // them in time (RunPodSandbox under create_sandbox), else the sync.
        let window_end = first_clean_end.or(root.end);
        let enclosing: Vec<(u64, u64, Vec<u8>)> = spans
            .iter()
            .map(|(i, sp)| {
                let s = &c.spans[*i];
                (s.start, s.end.unwrap_or(s.start), sp.span_id.clone())
            })
            .collect();
        let root_id = enclosing.first().map(|e| e.2.clone());
        for &ci in cri.get(p).map(Vec::as_slice).unwrap_or_default() {
            let cs = &c.spans[ci];
            if cs.start < root.start || window_end.is_some_and(|e| cs.start > e) {
                continue;
            }
            let end = cs.end.unwrap_or(cs.start);
            let parent = enclosing
                .iter()
                .filter(|(s, e, _)| *s <= cs.start && end <= *e)
                .min_by_key(|(s, e, _)| e - s)
                .map(|e| e.2.clone())
                .or_else(|| root_id.clone());
            by_process
                .entry((cs.binary.clone(), cs.pid))
                .or_default()
                .extend(tx.export(ci, parent).into_iter().map(|(_, sp)| sp));
        }
        by_process
            .entry((root.binary.clone(), root.pid))
            .or_default()
            .extend(spans.into_iter().map(|(_, sp)| sp));
    }
    let resource_spans = by_process
        .into_iter()
        .map(|((binary, pid), spans)| {
            let mut attrs = vec![
                kv_str("service.name", &binary),
                kv_int("process.pid", pid as i64),
                kv_str("host.name", &trace.header.hostname),
                kv_str("process.runtime.name", "go"),
            ];
            if let Some(b) = trace.header.binaries.iter().find(|b| b.name == binary) {
                attrs.push(kv_str("process.executable.path", &b.path));
                if let Some(v) = &b.go_version {
                    attrs.push(kv_str("process.runtime.version", v));
                }
            }
            ResourceSpans {
                resource: Some(Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// A pod whose start only the container runtime saw (no kubelet sync in the
/// trace): its CRI calls under one synthetic root span, `pod_start`, from the
/// first call's start to the last one's end (`podtrace.synthetic = true`).
fn runtime_only(
    trace: &Trace,
    c: &Correlated,
    children: &[Vec<usize>],
    calls: &[usize],
    pod_attrs: Vec<KeyValue>,
    by_process: &mut BTreeMap<(String, u32), Vec<Span>>,
) {
    let Some(first) = calls.iter().map(|&i| &c.spans[i]).min_by_key(|s| s.start) else {
        return;
    };
    let start = first.start;
    let end = calls
        .iter()
        .map(|&i| c.spans[i].end.unwrap_or(c.spans[i].start))
        .max()
        .unwrap_or(start);
    let uid = attr_value(&pod_attrs, "k8s.pod.uid").unwrap_or_default();
    let (trace_id, mut rng) = ids(&uid, start);
    let root_id = (rng.next_u64() | 1).to_be_bytes().to_vec();
    let mut attrs = pod_attrs.clone();
    attrs.push(kv("podtrace.synthetic", any_value::Value::BoolValue(true)));
    let root = Span {
        trace_id: trace_id.clone(),
        span_id: root_id.clone(),
        name: "pod_start".into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: unix_u64(trace, start),
        end_time_unix_nano: unix_u64(trace, end),
        attributes: attrs,
        ..Default::default()
    };
    by_process
        .entry((first.binary.clone(), first.pid))
        .or_default()
        .push(root);
    let mut tx = TreeExport {
        trace,
        c,
        children,
        trace_id,
        rng,
        pod_attrs,
    };
    for &i in calls {
        let s = &c.spans[i];
        by_process
            .entry((s.binary.clone(), s.pid))
            .or_default()
            .extend(
                tx.export(i, Some(root_id.clone()))
                    .into_iter()
                    .map(|(_, sp)| sp),
            );
    }
}

fn attr_value(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// The report's poll analysis on the mount-wait span.
fn mount_wait_details(
    trace: &Trace,
    pr: Option<&crate::report::PodReport>,
    base: u64,
    attrs: &mut Vec<KeyValue>,
    events: &mut Vec<span::Event>,
) {
    let Some(mw) = pr.and_then(|p| p.mount_wait.as_ref()) else {
        return;
    };
    let at = |ms: f64| {
        unix_u64(
            trace,
            base.saturating_add((ms * 1e6).round().max(0.0) as u64),
        )
    };
    attrs.push(kv_int("podtrace.poll.checks", mw.checks.len() as i64));
    for (k, v) in [
        (
            "podtrace.poll.interval_configured_ms",
            mw.configured_interval_ms,
        ),
        (
            "podtrace.poll.interval_observed_ms",
            mw.observed_interval_ms,
        ),
        ("podtrace.volumes_mounted_ms", mw.volumes_mounted_ms),
        ("podtrace.mount_noticed_ms", mw.noticed_ms),
        ("podtrace.lost_to_polling_ms", mw.lost_to_polling_ms),
    ] {
        if let Some(v) = v {
            attrs.push(kv_f64(k, v));
        }
    }
    for ch in &mw.checks {
        let mut a = Vec::new();
        if let Some(u) = ch.unmounted {
            a.push(kv_int("podtrace.unmounted", u as i64));
        }
        if let Some(d) = ch.duration_ms {
            a.push(kv_f64("podtrace.duration_ms", d));
        }
        events.push(span::Event {
            time_unix_nano: at(ch.at_ms),
            name: "poll_check".into(),
            attributes: a,
            ..Default::default()
        });
    }
    for v in &mw.volumes {
        events.push(span::Event {
            time_unix_nano: at(v.at_ms),
            name: "volume_mounted".into(),
            attributes: v
                .volume
                .iter()
                .map(|n| kv_str("podtrace.volume", n))
                .collect(),
            ..Default::default()
        });
    }
    if let Some(n) = mw.noticed_ms {
        events.push(span::Event {
            time_unix_nano: at(n),
            name: "mount_noticed".into(),
            ..Default::default()
        });
    }
    events.sort_by_key(|e| e.time_unix_nano);
}

/// Protobuf JSON encoding (OTLP/JSON: hex ids, camelCase, 64-bit ints as strings).
pub fn to_json(req: &ExportTraceServiceRequest) -> Result<String> {
    serde_json::to_string(req).context("encoding OTLP JSON")
}

pub fn to_protobuf(req: &ExportTraceServiceRequest) -> Vec<u8> {
    req.encode_to_vec()
}

/// What the receiver said.
#[derive(Debug, Clone, Default)]
pub struct PushOutcome {
    pub status: u16,
    pub rejected_spans: i64,
    pub message: String,
}

struct Url {
    host: String,
    port: u16,
    path: String,
}

/// `http://host[:port][/path]`; an empty path means `/v1/traces` (as
/// OTEL_EXPORTER_OTLP_ENDPOINT), any other path is used as given.
fn parse_endpoint(endpoint: &str) -> Result<Url> {
    let rest = match endpoint.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => bail!(
            "{endpoint}: https is not supported; push to an http:// endpoint (a local collector or agent)"
        ),
        Some((scheme, _)) => bail!("{endpoint}: unsupported scheme `{scheme}`, expected http://"),
        None => endpoint,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.strip_prefix('[') {
        // [v6-address]:port
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .with_context(|| format!("{endpoint}: unclosed `[` in the host"))?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .with_context(|| format!("{endpoint}: bad port `{p}`"))?,
        None => 80,
    };
    if host.is_empty() {
        bail!("{endpoint}: no host");
    }
    Ok(Url {
        host: host.into(),
        port,
        path: if path.is_empty() || path == "/" {
            "/v1/traces".into()
        } else {
            path.into()
        },
    })
}

/// POSTs `req` as OTLP/HTTP protobuf to `endpoint`. `headers` are extra
/// request headers (say, authorization). Errors on a non-2xx answer.
pub fn push(
    endpoint: &str,
    req: &ExportTraceServiceRequest,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<PushOutcome> {
    let url = parse_endpoint(endpoint)?;
    let body = to_protobuf(req);
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .with_context(|| format!("{endpoint}: resolving {}", url.host))?
        .next()
        .with_context(|| format!("{endpoint}: {} has no address", url.host))?;
    let mut conn = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("{endpoint}: connecting to {addr}"))?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    let host = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: podtrace/{}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (k, v) in headers {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            bail!("header `{k}`: names must not contain ':' or line breaks, values no line breaks");
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())
        .and_then(|_| conn.write_all(&body))
        .and_then(|_| conn.flush())
        .with_context(|| format!("{endpoint}: sending the request"))?;
    let (status, reason, resp_headers, resp_body) = read_response(&mut BufReader::new(conn))
        .with_context(|| format!("{endpoint}: reading the answer"))?;
    let content_type = resp_headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&resp_body);
        let text: String = text.chars().take(500).collect();
        bail!(
            "{endpoint}: the receiver answered {status} {reason}: {}",
            text.trim()
        );
    }
    let mut out = PushOutcome {
        status,
        ..Default::default()
    };
    if content_type.starts_with("application/x-protobuf") && !resp_body.is_empty() {
        // A partial success names the spans the receiver dropped.
        if let Ok(r) = ExportTraceServiceResponse::decode(resp_body.as_slice()) {
            if let Some(ps) = r.partial_success {
                out.rejected_spans = ps.rejected_spans;
                out.message = ps.error_message;
            }
        }
    }
    Ok(out)
}

type Response = (u16, String, Vec<(String, String)>, Vec<u8>);

/// Minimal HTTP/1.1 response reader: status line, headers, and a body sized
/// by Content-Length, chunked, or read to the end.
fn read_response(r: &mut impl BufRead) -> Result<Response> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("not an HTTP answer: {:?}", line.trim_end());
    };
    if !version.starts_with("HTTP/") {
        bail!("not an HTTP answer: {:?}", line.trim_end());
    }
    let status: u16 = code
        .parse()
        .with_context(|| format!("bad status line {:?}", line.trim_end()))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .with_context(|| format!("bad chunk size {:?}", line.trim()))?;
            if size == 0 {
                break;
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = header("content-length") {
        let n: usize = n
            .parse()
            .with_context(|| format!("bad Content-Length {n:?}"))?;
        body.resize(n.min(16 << 20), 0);
        r.read_exact(&mut body)?;
    } else {
        r.take(16 << 20).read_to_end(&mut body)?;
    }
    Ok((status, reason, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() -> Result<()> {
        let u = parse_endpoint("http://127.0.0.1:4318")?;
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 4318, "/v1/traces")
        );
        let u = parse_endpoint("http://collector/otlp/v1/traces")?;
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("collector", 80, "/otlp/v1/traces")
        );
        let u = parse_endpoint("http://[::1]:4318/")?;
        assert_eq!((u.host.as_str(), u.port), ("::1", 4318));
        assert!(parse_endpoint("https://x").is_err());
        assert!(parse_endpoint("http://x:notaport").is_err());
        Ok(())
    }

    #[test]
    fn chunked_answers_are_read() -> Result<()> {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (st, _, _, body) = read_response(&mut &raw[..])?;
        assert_eq!((st, body.as_slice()), (200, &b"abcde"[..]));
        Ok(())
    }
}
