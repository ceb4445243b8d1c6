//! An OTLP/HTTP trace receiver for the tests that check what `record
//! --otlp-endpoint` sends (e2e_live, e2e_cluster): included by each with
//! `#[path]`, as it needs the dev-dependencies opentelemetry-proto and prost.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Instant,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value,
};
use prost::Message as _;

/// One OTLP/HTTP request as received.
pub struct Got {
    pub at: Instant,
    pub req: ExportTraceServiceRequest,
}

/// An OTLP/HTTP receiver bound to `bind` (`IP:PORT`; keep-alive,
/// Content-Length bodies, protobuf) answering 200 with an empty
/// ExportTraceServiceResponse; returns its `http://IP:PORT` and what it got.
pub fn otlp_receiver(bind: &str) -> (String, Arc<Mutex<Vec<Got>>>) {
    let l = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    let addr = l.local_addr().expect("addr");
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.trim_end().split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let req = ExportTraceServiceRequest::decode(body.as_slice())
                        .expect("an ExportTraceServiceRequest");
                    if let Ok(mut v) = store.lock() {
                        v.push(Got {
                            at: Instant::now(),
                            req,
                        });
                    }
                    let _ = r.get_mut().write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (format!("http://{addr}"), got)
}

pub fn attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], k: &str) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.key == k)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}
