//! podtrace: where a pod's start-up time goes inside kubelet and containerd.
//!
//! The pipeline, one module per stage:
//! [`resolve`] (read Go binaries) → [`catalogue`] (what to probe, as data) →
//! [`attach`] (eBPF) → [`collect`] (ring buffer → [`trace`] file) →
//! [`correlate`] (spans, pods) → [`report`]; [`live`] summarises pods
//! while recording (Prometheus metrics, OTLP).

pub mod attach;
pub mod catalogue;
pub mod collect;
pub mod commands;
pub mod compare;
pub mod correlate;
pub mod ebpf_log;
pub mod export;
pub mod html;
pub mod journal;
pub mod live;
pub mod predict;
pub mod report;
pub mod resolve;
pub mod stats;
pub mod supervise;
pub mod test_support;
pub mod trace;
