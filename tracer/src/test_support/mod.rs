//! Support for tests and documentation, not part of the command line.
//!
//! [`synth`] builds traces whose every time is known, so the exporters,
//! `compare`, `predict` and the pictures can be checked without a kernel.

pub mod synth;
