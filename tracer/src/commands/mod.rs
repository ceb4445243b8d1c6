//! One module per subcommand (its arguments and its `run`), and what they
//! share: loading traces and catalogues, output formats, durations.

pub mod compare;
pub mod export;
pub mod predict;
pub mod probes;
pub mod record;
pub mod report;

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};

use crate::{
    catalogue::{BinaryCatalogue, Catalogue},
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

/// Output of `probes` and `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A duration with a unit: 500ms, 30s, 5m (ns, us, ms, s, m, h).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a number with a unit, e.g. 500ms, 30s, 5m"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (ns, us, ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}`: not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn load_catalogue(path: Option<&Path>) -> Result<Catalogue> {
    match path {
        None => Ok(Catalogue::builtin()?),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Catalogue {
                binaries: vec![Catalogue::parse(&p.display().to_string(), &text)?],
            })
        }
    }
}

/// The catalogue's `[binary]` of this name, or the only one of a
/// single-binary `--catalogue` file.
pub fn catalogue_for<'c>(cat: &'c Catalogue, name: &str) -> Result<&'c BinaryCatalogue> {
    cat.binary(name)
        .or_else(|| (cat.binaries.len() == 1).then(|| &cat.binaries[0]))
        .with_context(|| format!("the catalogue has no [binary] named {name}"))
}
