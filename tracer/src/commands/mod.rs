//! Subcommands that work on recorded traces (`compare`, `export`) and the
//! loading they share.

pub mod compare;
pub mod export;
pub mod synth;

use std::path::Path;

use anyhow::Result;

use crate::{
    correlate::{Correlated, Correlator},
    trace::Trace,
};

/// An open entry older than this (10 min) is closed as aged out: far longer
/// than any pod start, short enough not to hold a whole day's frames.
pub const MAX_SPAN_AGE_NS: u64 = 600 * 1_000_000_000;

/// Pairs a trace's events into spans and pods (events in time order).
pub fn correlate(trace: &Trace) -> Correlated {
    correlate_with(trace, MAX_SPAN_AGE_NS)
}

/// As [`correlate`], with calls open longer than `max_open_ns` aged out.
pub fn correlate_with(trace: &Trace, max_open_ns: u64) -> Correlated {
    let mut order: Vec<usize> = (0..trace.events.len()).collect();
    // Stable: equal timestamps keep file order (entry before exit of a call).
    order.sort_by_key(|&i| trace.events[i].t);
    let mut c = Correlator::new(&trace.header.probes, max_open_ns);
    for i in order {
        c.push(&trace.events[i]);
    }
    c.finish()
}

/// Reads a trace file and correlates it.
pub fn load_correlated(path: &Path) -> Result<(Trace, Correlated)> {
    // Trace::read's errors already name the file.
    let trace = Trace::read(path)?;
    let corr = correlate(&trace);
    Ok((trace, corr))
}
