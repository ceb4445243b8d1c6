//! podtrace: where a pod's start-up time goes inside kubelet and containerd.
//!
//! The pipeline, one module per stage, each using only those before it:
//!
//! - [`resolve`]: read Go binaries (pclntab, buildinfo, RET sites);
//! - [`catalogue`]: what to probe in which version, as data;
//! - [`record`]: discover → plan → load and attach → drain into a trace,
//!   supervised while it runs;
//! - [`format`] and [`trace`]: the trace's records, and its files;
//! - [`correlate`]: events → calls (spans) → pods;
//! - [`analysis`]: report, compare, predict;
//! - [`export`], [`html`]: other formats; [`live`]: metrics and OTLP while
//!   recording;
//! - [`commands`]: the command line, turning arguments into calls above.
//!
//! docs/architecture.md draws it.

pub mod analysis;
pub mod catalogue;
pub mod clock;
pub mod commands;
pub mod correlate;
pub mod export;
pub mod fixture;
pub mod format;
pub mod html;
pub mod live;
pub mod record;
pub mod resolve;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod trace;
