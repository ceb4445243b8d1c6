//! The test OTLP receiver (tests/otlp-sink) against a real OTLP/gRPC client:
//! the OpenTelemetry Go SDK's `otlptracegrpc` exporter, the one kubelet and
//! containerd use (tests/otlp-sink/go-client, same versions as containerd
//! 2.2.9), plain and gzip-compressed. Every span the SDK handed its exporter
//! arrives with the same ids, timestamps, status and attributes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use podtrace_tests::{
    otlp::{Sink, Span},
    root, TempDir,
};
use serde_json::Value;

fn home() -> PathBuf {
    std::env::var_os("PODTRACE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".podtrace")
        })
}

fn go() -> PathBuf {
    if let Some(g) = std::env::var_os("GO") {
        return PathBuf::from(g);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/local/go/bin")])
        .map(|d| d.join("go"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no `go` on PATH or in /usr/local/go/bin (Go >= 1.24 builds the OTLP test client; or set GO)")
        })
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Build tests/otlp-sink/go-client into target/otlp-go-client (again only
/// when its sources change). Modules come from the proxy into podtrace's
/// module cache (shared with the containerd build, which has most of them).
fn go_client() -> PathBuf {
    let src = root().join("tests/otlp-sink/go-client");
    let out_dir = root().join("target/otlp-go-client");
    let out = out_dir.join("otlp-go-client");
    let newest = ["main.go", "go.mod", "go.sum"]
        .iter()
        .filter_map(|f| mtime(&src.join(f)))
        .max();
    if matches!((mtime(&out), newest), (Some(b), Some(s)) if b >= s) {
        return out;
    }
    std::fs::create_dir_all(&out_dir).expect("create target/otlp-go-client");
    // Private output, then a rename: test binaries may race to build.
    let tmp = out_dir.join(format!("otlp-go-client.tmp-{}", std::process::id()));
    let env_or = |k: &str, d: PathBuf| std::env::var_os(k).map_or(d, PathBuf::from);
    let t = Instant::now();
    let o = Command::new(go())
        .current_dir(&src)
        .args(["build", "-trimpath", "-o"])
        .arg(&tmp)
        .arg(".")
        .env("GOMODCACHE", env_or("GOMODCACHE", home().join("go/mod")))
        .env("GOCACHE", env_or("GOCACHE", home().join("go/cache")))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTELEMETRY", "off")
        .output()
        .expect("running go build");
    assert!(
        o.status.success(),
        "building {} failed ({}):\n{}{}",
        src.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move otlp-go-client into place");
    eprintln!("built otlp-go-client in {:.1}s", t.elapsed().as_secs_f64());
    out
}

/// Run the Go client against `endpoint`; the spans it says it exported.
fn send(endpoint: &str, service: &str, gzip: bool, children: usize) -> Vec<Value> {
    let mut cmd = Command::new(go_client());
    cmd.args(["--endpoint", endpoint, "--service", service])
        .args(["--host", "podtrace-test-host"])
        .args(["--children", &children.to_string()]);
    if gzip {
        cmd.arg("--gzip");
    }
    let o = cmd.output().expect("running otlp-go-client");
    assert!(
        o.status.success(),
        "otlp-go-client failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("client line {l}: {e}")))
        .collect()
}

fn check_same(sent: &[Value], got: &[&Span], service: &str) {
    assert_eq!(got.len(), sent.len(), "{service}: spans received vs sent");
    let by_id: BTreeMap<&str, &&Span> = got.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for s in sent {
        let id = s["span_id"].as_str().expect("span_id");
        let r = by_id
            .get(id)
            .unwrap_or_else(|| panic!("{service}: span {id} ({}) not received", s["name"]));
        let ctx = format!("{service} span {} ({id})", s["name"]);
        assert_eq!(r.name, s["name"].as_str().unwrap(), "{ctx}: name");
        assert_eq!(
            r.trace_id,
            s["trace_id"].as_str().unwrap(),
            "{ctx}: trace id"
        );
        assert_eq!(
            r.parent_span_id,
            s["parent_span_id"].as_str().unwrap(),
            "{ctx}: parent"
        );
        assert_eq!(r.kind, s["kind"].as_str().unwrap(), "{ctx}: kind");
        assert_eq!(
            Some(r.start_unix_nano),
            s["start_unix_nano"].as_u64(),
            "{ctx}: start"
        );
        assert_eq!(
            Some(r.end_unix_nano),
            s["end_unix_nano"].as_u64(),
            "{ctx}: end"
        );
        assert_eq!(r.status_code, s["status_code"].as_str().unwrap(), "{ctx}");
        assert_eq!(
            r.status_message,
            s["status_message"].as_str().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            Value::Object(r.attributes.clone()),
            s["attributes"],
            "{ctx}: attributes"
        );
        assert_eq!(r.service_name.as_deref(), Some(service), "{ctx}");
        assert_eq!(r.host_name.as_deref(), Some("podtrace-test-host"), "{ctx}");
        assert_eq!(r.scope, "podtrace/otlp-go-client", "{ctx}: scope");
    }
}

#[test]
fn go_otlptracegrpc_spans_arrive_exactly() {
    let dir = TempDir::new("otlp");
    let mut sink = Sink::start(&dir.0);
    assert_eq!(
        std::fs::read_to_string(dir.join("otlp-sink.ready"))
            .expect("ready file")
            .trim(),
        sink.endpoint
    );
    let mut total = 0;
    for (service, gzip, children) in [("plain", false, 3), ("gzip", true, 2)] {
        let sent = send(&sink.endpoint, service, gzip, children);
        assert_eq!(sent.len(), children + 1, "client output");
        total += sent.len();
        // Read while the sink runs: each request is flushed before it is
        // answered, and the client returned only after its answer.
        let spans = sink.wait_for(Duration::from_secs(10), |s| s.len() >= total);
        let got: Vec<&Span> = spans
            .iter()
            .filter(|s| s.service_name.as_deref() == Some(service))
            .collect();
        check_same(&sent, &got, service);
        // The tree: one root, the others its children, one of them failed.
        let root: Vec<&&Span> = got.iter().filter(|s| s.parent_span_id.is_empty()).collect();
        assert_eq!(root.len(), 1, "{service}: one root");
        assert!(got
            .iter()
            .filter(|s| !s.parent_span_id.is_empty())
            .all(|s| s.parent_span_id == root[0].span_id && s.trace_id == root[0].trace_id));
        assert_eq!(
            root[0].attr("k8s.pod.uid"),
            Some("00000000-0000-4000-8000-000000000001")
        );
        assert_eq!(root[0].attributes["count"], -42);
        assert!(got.iter().any(|s| s.status_code == "error"));
        eprintln!(
            "{service}: {} spans received exactly as sent (root {:.3} ms)",
            got.len(),
            root[0].duration_ms()
        );
    }
    // SIGTERM: a clean exit that accounts for everything; the --gzip
    // client's request really was compressed.
    let st = sink.stop().expect("otlp-sink exits on SIGTERM within 5 s");
    assert!(st.success(), "otlp-sink exit status {st}");
    let log = std::fs::read_to_string(&sink.log).expect("sink log");
    assert!(
        log.contains(&format!("stopped; {total} spans in 2 requests (1 gzip)")),
        "{log}"
    );
}
