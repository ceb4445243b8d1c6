//! OTLP traces: one trace per pod start (the pod's create sync; a pod that
//! only resynced is no start), spans nested as in the report (sync → mount
//! wait, runtime stages), the poll checks and volume marks as span events of
//! the mount wait. Encoded with the
//! OTLP protobuf messages ([`super::otlp_proto`]), as protobuf JSON (a
//! file) or protobuf (OTLP/HTTP push, over http or https, [`super::http`]).

use std::{collections::BTreeMap, path::Path, time::Duration};

use super::otlp_proto::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
    resource::v1::Resource,
    trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status},
};
use anyhow::{bail, Context as _, Result};
use prost::Message as _;

use super::http;
use crate::{
    analysis::report::{pod_summary, PodSummary},
    analysis::rng::SplitMix64,
    catalogue::Role,
    correlate::Correlated,
    export::{function, syncs_by_pod, unix_ns},
    format::Val,
    trace::TraceMeta,
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

fn unix_u64(trace: &dyn TraceMeta, mono: u64) -> u64 {
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
    trace: &'a dyn TraceMeta,
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
                if !matches!(&**k, "pod_name" | "pod_namespace" | "pod_uid" | "error") {
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
                    name: s.name.to_string(),
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
pub fn otlp_request(trace: &dyn TraceMeta, c: &Correlated) -> ExportTraceServiceRequest {
    otlp_request_for(trace, c, None)
}

/// [`otlp_request`] for some of the pods only (indexes into `c.pods`; None:
/// all): `record --otlp-endpoint` sends each pod as soon as its start is
/// complete. `trace` needs only its header here.
pub fn otlp_request_for(
    trace: &dyn TraceMeta,
    c: &Correlated,
    only: Option<&[usize]>,
) -> ExportTraceServiceRequest {
    let off = trace.header().mono_to_unix_ns;
    let syncs = syncs_by_pod(c);
    // Children of each span, to walk a sync's tree.
    let children = &c.children;
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
        if only.is_some_and(|o| !o.contains(&p)) {
            continue;
        }
        let pod = &c.pods[p];
        let mut pod_attrs = vec![kv_str("k8s.pod.uid", &pod.uid)];
        if let Some(n) = &pod.name {
            pod_attrs.push(kv_str("k8s.pod.name", n));
        }
        if let Some(ns) = &pod.namespace {
            pod_attrs.push(kv_str("k8s.namespace.name", ns));
        }
        let Some(first) = crate::analysis::pods::start_sync(c, idx) else {
            if idx.is_empty() {
                // Only the runtime was traced for this pod.
                let calls = cri.get(p).map(Vec::as_slice).unwrap_or_default();
                runtime_only(trace, c, children, calls, pod_attrs, &mut by_process);
            }
            // Otherwise it was already running: its resyncs are no start.
            continue;
        };
        // The report's own numbers for the mount wait, for this pod only
        // (record --otlp-endpoint sends one pod out of a window).
        let summary = pod_summary(c, p, idx, off);
        let pr = match &summary {
            PodSummary::Started(r) => Some(&**r),
            _ => None,
        };
        let idx = &idx[idx.iter().position(|&i| i == first).unwrap_or(0)..];
        let root = &c.spans[first];
        let (trace_id, rng) = ids(&pod.uid, root.start);
        let mut tx = TreeExport {
            trace,
            c,
            children,
            trace_id,
            rng,
            pod_attrs,
        };
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
                .entry((cs.binary.to_string(), cs.pid))
                .or_default()
                .extend(tx.export(ci, parent).into_iter().map(|(_, sp)| sp));
        }
        by_process
            .entry((root.binary.to_string(), root.pid))
            .or_default()
            .extend(spans.into_iter().map(|(_, sp)| sp));
    }
    let resource_spans = by_process
        .into_iter()
        .map(|((binary, pid), spans)| {
            let mut attrs = vec![
                kv_str("service.name", &binary),
                kv_int("process.pid", pid as i64),
                // The node, not the recorder's hostname: in a DaemonSet
                // that is the pod's name.
                kv_str("host.name", trace.header().node()),
                kv_str("k8s.node.name", trace.header().node()),
                kv_str("process.runtime.name", "go"),
            ];
            if let Some(b) = trace.header().binaries.iter().find(|b| b.name == binary) {
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
    trace: &dyn TraceMeta,
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
        .entry((first.binary.to_string(), first.pid))
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
            .entry((s.binary.to_string(), s.pid))
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
    trace: &dyn TraceMeta,
    pr: Option<&crate::analysis::report::PodReport>,
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
    /// Requests sent (1 + retries).
    pub attempts: u32,
}

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions<'a> {
    /// Extra request headers (say, authorization).
    pub headers: &'a [(String, String)],
    /// Connect, and whole-request, timeout.
    pub timeout: Duration,
    /// Also trust this PEM CA certificate (bundle) for https, beside the
    /// system's roots.
    pub ca_cert: Option<&'a Path>,
    /// Retries after a transient failure (connect error, timeout, 429, 502,
    /// 503, 504: the OTLP spec's retryable answers).
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one, or the
    /// receiver's Retry-After when it gives one (at most [`MAX_BACKOFF`]).
    pub backoff: Duration,
}

/// Longest wait between two attempts, also when Retry-After asks for more.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl<'a> PushOptions<'a> {
    pub fn new(headers: &'a [(String, String)], timeout: Duration) -> PushOptions<'a> {
        PushOptions {
            headers,
            timeout,
            ca_cert: None,
            retries: 3,
            backoff: Duration::from_millis(250),
        }
    }
}

/// `http[s]://host[:port][/path]` (no scheme: http); an empty path means
/// `/v1/traces` (as OTEL_EXPORTER_OTLP_ENDPOINT), any other path is used as
/// given.
pub fn endpoint_url(endpoint: &str) -> Result<http::Url> {
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    http::Url::parse(&with_scheme, "/v1/traces")
}

/// POSTs `req` as OTLP/HTTP protobuf to `endpoint`, with up to three
/// retries. Errors on a non-2xx answer.
pub fn push(
    endpoint: &str,
    req: &ExportTraceServiceRequest,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<PushOutcome> {
    push_with(endpoint, req, &PushOptions::new(headers, timeout))
}

/// Why an attempt failed, and whether another may succeed.
enum Failure {
    Transient(anyhow::Error, Option<Duration>),
    Final(anyhow::Error),
}

fn retry_after(a: &http::Answer) -> Option<Duration> {
    a.header("retry-after")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The request's own headers, then the caller's.
fn request_headers(extra: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut h = vec![
        ("Content-Type", "application/x-protobuf"),
        (
            "User-Agent",
            concat!("podtrace/", env!("CARGO_PKG_VERSION")),
        ),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    h
}

fn attempt(
    endpoint: &str,
    url: &http::Url,
    body: &[u8],
    headers: &[(&str, &str)],
    timeout: Duration,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<PushOutcome, Failure> {
    let answer = match http::post(url, headers, body, timeout, tls) {
        Ok(a) => a,
        Err(f @ (http::Failed::Connect(_) | http::Failed::Timeout(_))) => {
            return Err(Failure::Transient(
                f.into_error()
                    .context(format!("{endpoint}: sending the request")),
                None,
            ))
        }
        Err(f) => {
            return Err(Failure::Final(
                f.into_error()
                    .context(format!("{endpoint}: sending the request")),
            ))
        }
    };
    let status = answer.status;
    if !(200..300).contains(&status) {
        let text: String = String::from_utf8_lossy(&answer.body)
            .chars()
            .take(500)
            .collect();
        let e = anyhow::anyhow!(
            "{endpoint}: the receiver answered {status}: {}",
            text.trim()
        );
        return Err(match status {
            429 | 502 | 503 | 504 => Failure::Transient(e, retry_after(&answer)),
            _ => Failure::Final(e),
        });
    }
    let protobuf = answer
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/x-protobuf"));
    let mut out = PushOutcome {
        status,
        ..Default::default()
    };
    if protobuf && !answer.body.is_empty() {
        // A partial success names the spans the receiver dropped.
        if let Ok(r) = ExportTraceServiceResponse::decode(answer.body.as_slice()) {
            if let Some(ps) = r.partial_success {
                out.rejected_spans = ps.rejected_spans;
                out.message = ps.error_message;
            }
        }
    }
    Ok(out)
}

/// [`push`] with all the options.
pub fn push_with(
    endpoint: &str,
    req: &ExportTraceServiceRequest,
    opts: &PushOptions<'_>,
) -> Result<PushOutcome> {
    Pusher::new(endpoint, opts)?.push(req)
}

/// Why [`Pusher::try_push`] did not deliver.
#[derive(Debug)]
pub struct PushFailed {
    pub error: anyhow::Error,
    /// Only transient failures, to the last retry: the receiver may be
    /// back later (a collector restarting), the request is fine.
    pub away: bool,
}

/// An endpoint checked and its TLS set up once, for many pushes
/// (`record --otlp-endpoint` sends every pod: the system's CA
/// certificates are read once, not per pod).
pub struct Pusher<'a> {
    endpoint: String,
    url: http::Url,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    opts: PushOptions<'a>,
}

impl<'a> Pusher<'a> {
    pub fn new(endpoint: &str, opts: &PushOptions<'a>) -> Result<Pusher<'a>> {
        let url = endpoint_url(endpoint)?;
        for (k, v) in opts.headers {
            if !http::valid_header_name(k) {
                bail!("header `{k}`: not a valid header name");
            }
            if !http::valid_header_value(v) {
                bail!("header `{k}`: the value must be printable, without line breaks");
            }
        }
        let tls = if url.https {
            Some(http::tls_config(opts.ca_cert).context("setting up TLS")?)
        } else {
            None
        };
        Ok(Pusher {
            endpoint: endpoint.to_string(),
            url,
            tls,
            opts: opts.clone(),
        })
    }

    /// POSTs `req`, retrying as [`PushOptions`] says.
    pub fn push(&self, req: &ExportTraceServiceRequest) -> Result<PushOutcome> {
        self.try_push(req).map_err(|f| f.error)
    }

    /// [`Pusher::push`], telling a receiver that is away (every attempt
    /// refused, timed out or answered 429/502/503/504: worth trying again
    /// later) from one that rejected the request.
    pub fn try_push(&self, req: &ExportTraceServiceRequest) -> Result<PushOutcome, PushFailed> {
        let (endpoint, url, opts) = (self.endpoint.as_str(), &self.url, &self.opts);
        let headers = request_headers(opts.headers);
        let body = to_protobuf(req);
        let mut backoff = opts.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt(
                endpoint,
                url,
                &body,
                &headers,
                opts.timeout,
                self.tls.as_ref(),
            ) {
                Ok(mut out) => {
                    out.attempts = attempts;
                    return Ok(out);
                }
                Err(Failure::Final(e)) => {
                    return Err(PushFailed {
                        error: e,
                        away: false,
                    })
                }
                Err(Failure::Transient(e, _)) if attempts > opts.retries => {
                    return Err(PushFailed {
                        error: e.context(format!(
                            "{endpoint}: gave up after {attempts} attempts ({} retries)",
                            opts.retries
                        )),
                        away: true,
                    })
                }
                Err(Failure::Transient(e, asked)) => {
                    let wait = asked.unwrap_or(backoff).min(MAX_BACKOFF);
                    log::warn!("{e:#}; retrying in {wait:?}");
                    std::thread::sleep(wait);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() -> Result<()> {
        let u = endpoint_url("http://127.0.0.1:4318")?.to_string();
        assert_eq!(u, "http://127.0.0.1:4318/v1/traces");
        let u = endpoint_url("http://collector/otlp/v1/traces")?.to_string();
        assert_eq!(u, "http://collector/otlp/v1/traces");
        let u = endpoint_url("http://[::1]:4318/")?.to_string();
        assert_eq!(u, "http://[::1]:4318/v1/traces");
        let u = endpoint_url("collector:4318")?.to_string();
        assert_eq!(u, "http://collector:4318/v1/traces");
        assert_eq!(
            endpoint_url("https://x")?.to_string(),
            "https://x/v1/traces"
        );
        assert!(endpoint_url("http://x:notaport").is_err());
        assert!(endpoint_url("ftp://x").is_err());
        Ok(())
    }
}
