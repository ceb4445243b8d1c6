//! OTLP/HTTP push over TLS and with retries, against receivers on 127.0.0.1:
//! a rustls server with a certificate from a CA made here (rcgen), and a
//! plain one that answers 503 before it accepts.

use std::{
    io::{BufReader, Write},
    path::PathBuf,
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use podtrace::export::otlp_proto::collector::trace::v1::ExportTraceServiceRequest as Ours;
use podtrace::{
    correlate::correlate,
    export::otlp::{self, PushOptions},
    test_support::synth::{synth, SynthPod, SynthSpec},
};
use prost::Message as _;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

mod support;
use support::{accept, read_request, Request};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("podtrace-otlp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn request() -> Ours {
    let (t, _) = synth(&SynthSpec::new(vec![
        SynthPod::new(0, 1.0, 10.0, 5.0),
        SynthPod::new(1, 50.0, 20.0, 5.0),
    ]))
    .expect("synth");
    let req = otlp::otlp_request(&t, &correlate(&t));
    assert!(!req.resource_spans.is_empty());
    req
}

fn answer(w: &mut impl Write, status: &str, extra: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = w.write_all(head.as_bytes()).and_then(|_| w.write_all(body));
    let _ = w.flush();
}

/// A CA, and a server certificate for 127.0.0.1 and localhost it signed:
/// (CA PEM, server chain DER, server key DER).
fn pki() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "podtrace test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    (
        ca_cert.pem(),
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key DER"),
    )
}

/// An https OTLP receiver taking up to `n` connections; hands back each
/// request received (a failed handshake sends nothing).
fn tls_receiver(n: usize) -> (u16, String, mpsc::Receiver<(String, Vec<u8>)>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca_pem, chain, key) = pki();
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config"),
    );
    let (l, addr) = support::listen();
    let port = addr.port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        for _ in 0..n {
            let Some(sock) = accept(&l, deadline) else {
                return;
            };
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                return;
            };
            let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
            let Some(Request { line, body, .. }) = read_request(&mut tls) else {
                continue;
            };
            let ok = ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: 0,
                    error_message: "over tls".into(),
                }),
            }
            .encode_to_vec();
            answer(tls.get_mut(), "200 OK", "", &ok);
            let _ = tx.send((line, body));
        }
    });
    (port, ca_pem, rx)
}

#[test]
fn push_over_https_to_a_receiver_with_its_own_ca() {
    let req = request();
    let dir = tmp("tls");
    let (port, ca_pem, rx) = tls_receiver(2);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &ca_pem).expect("write CA");
    let ep = format!("https://127.0.0.1:{port}");

    // Without the CA the server's certificate is not trusted: no retry
    // helps, and the error says so.
    let e = format!(
        "{:#}",
        otlp::push(&ep, &req, &[], Duration::from_secs(5)).expect_err("an unknown CA must fail")
    );
    assert!(
        e.contains(&ep) && e.contains("certificate") && !e.contains("gave up"),
        "{e}"
    );

    let mut opts = PushOptions::new(&[], Duration::from_secs(5));
    opts.ca_cert = Some(&ca);
    let out = otlp::push_with(&ep, &req, &opts).expect("push over https");
    assert_eq!((out.status, out.message.as_str()), (200, "over tls"));
    let (line, body) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the receiver got a request");
    assert_eq!(line, "POST /v1/traces HTTP/1.1");
    assert_eq!(
        ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf"),
        ExportTraceServiceRequest::decode(otlp::to_protobuf(&req).as_slice()).expect("protobuf"),
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A plain receiver that answers `statuses` in turn, one per connection;
/// hands back when each request came.
fn flaky_receiver(
    statuses: Vec<(&'static str, &'static str)>,
) -> (String, mpsc::Receiver<Instant>) {
    let (l, addr) = support::listen();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (status, extra) in statuses {
            let Some(sock) = accept(&l, deadline) else {
                return;
            };
            let mut r = BufReader::new(sock);
            if read_request(&mut r).is_none() {
                return;
            }
            let _ = tx.send(Instant::now());
            answer(r.get_mut(), status, extra, b"");
        }
    });
    (format!("http://{addr}"), rx)
}

#[test]
fn transient_refusals_are_retried_with_backoff_and_bounded() {
    let req = request();
    // 503, 429 with Retry-After: 1, then 200: three attempts, the waits
    // 0.1 s (backoff) and 1 s (what the receiver asked).
    let (ep, rx) = flaky_receiver(vec![
        ("503 Service Unavailable", ""),
        ("429 Too Many Requests", "Retry-After: 1\r\n"),
        ("200 OK", ""),
    ]);
    let mut opts = PushOptions::new(&[], Duration::from_secs(5));
    opts.backoff = Duration::from_millis(100);
    let out = otlp::push_with(&ep, &req, &opts).expect("push after retries");
    assert_eq!((out.status, out.attempts), (200, 3));
    let at: Vec<Instant> = rx.try_iter().collect();
    assert_eq!(at.len(), 3);
    assert!(
        at[1] - at[0] >= Duration::from_millis(100),
        "{:?}",
        at[1] - at[0]
    );
    assert!(
        at[2] - at[1] >= Duration::from_secs(1),
        "{:?}",
        at[2] - at[1]
    );

    // Always 503: gives up after 1 + retries attempts and says so.
    let (ep, rx) = flaky_receiver(vec![("503 Service Unavailable", ""); 3]);
    opts.retries = 2;
    opts.backoff = Duration::from_millis(10);
    let e = format!(
        "{:#}",
        otlp::push_with(&ep, &req, &opts).expect_err("must give up")
    );
    assert!(
        e.contains("gave up after 3 attempts") && e.contains("503"),
        "{e}"
    );
    assert_eq!(rx.try_iter().count(), 3);

    // A 400 is not retried.
    let (ep, rx) = flaky_receiver(vec![("400 Bad Request", ""), ("200 OK", "")]);
    opts.retries = 3;
    let e = format!("{:#}", otlp::push_with(&ep, &req, &opts).expect_err("400"));
    assert!(e.contains("400") && !e.contains("gave up"), "{e}");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.try_iter().count(), 1, "one request only");
}

/// A system without CA certificates (podtrace's own image: no
/// /etc/ssl) still pushes over plain http, and over https with --ca-cert;
/// https with neither says what to give. `podtrace export` runs with the
/// system's roots pointed at nothing (SSL_CERT_FILE, SSL_CERT_DIR).
#[test]
fn pushes_without_system_ca_certificates() {
    let dir = tmp("no-system-ca");
    let (t, _) = synth(&SynthSpec::new(vec![SynthPod::new(0, 1.0, 10.0, 5.0)])).expect("synth");
    let trace = dir.join("t.trace");
    podtrace::test_support::synth::write_trace(&t, &trace).expect("write trace");
    std::fs::write(dir.join("empty.pem"), "").expect("write empty bundle");
    std::fs::create_dir_all(dir.join("no-certs")).expect("mkdir");
    let export = |endpoint: &str, ca: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_podtrace"));
        c.args(["export", "--format", "otlp", "--endpoint", endpoint])
            .env("SSL_CERT_FILE", dir.join("empty.pem"))
            .env("SSL_CERT_DIR", dir.join("no-certs"));
        if let Some(ca) = ca {
            c.arg("--ca-cert").arg(ca);
        }
        c.arg(&trace).output().expect("run podtrace export")
    };

    // Plain http.
    let (l, addr) = support::listen();
    let got = thread::spawn(move || {
        let sock = accept(&l, Instant::now() + Duration::from_secs(30))?;
        let mut r = BufReader::new(sock);
        let req = read_request(&mut r)?;
        answer(r.get_mut(), "200 OK", "", &[]);
        Some(req.line)
    });
    let out = export(&format!("http://{addr}"), None);
    assert!(
        out.status.success(),
        "http without system CA certificates: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        got.join().expect("receiver").as_deref(),
        Some("POST /v1/traces HTTP/1.1")
    );

    // https: the CA given works; none given fails and says what to give.
    let (port, ca_pem, rx) = tls_receiver(1);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &ca_pem).expect("write CA");
    let ep = format!("https://127.0.0.1:{port}");
    let out = export(&ep, Some(&ca));
    assert!(
        out.status.success(),
        "https with --ca-cert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(rx.recv_timeout(Duration::from_secs(30)).is_ok());
    let out = export(&ep, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--ca-cert"),
        "https without any CA: {err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
