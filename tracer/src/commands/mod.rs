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
    correlate::{Correlated, Correlator, InOrder, REORDER_NS},
    trace::{Trace, TraceInfo},
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
pub fn load_correlated(path: &Path) -> Result<(TraceInfo, Correlated)> {
    read_correlated(path, MAX_SPAN_AGE_NS)
}

/// Streams a trace file into the correlator, one line at a time: memory
/// holds the spans, never the events (but for the last second of them,
/// put back in time order).
pub fn read_correlated(path: &Path, max_open_ns: u64) -> Result<(TraceInfo, Correlated)> {
    // Trace::open's errors already name the file.
    let mut reader = Trace::open(path)?;
    let probes = reader.header().probes.clone();
    let mut known = probes.len();
    let mut c = InOrder::new(Correlator::new(&probes, max_open_ns));
    while let Some(e) = reader.next_event()? {
        // A `binary` line (a binary replaced while recording) grew the
        // table before the first event naming its probes.
        let table = &reader.header().probes;
        if table.len() > known {
            c.add_probes(&table[known..]);
            known = table.len();
        }
        c.push(e);
    }
    let (corr, late) = c.finish();
    let mut info = reader.finish();
    if late > 0 {
        info.warnings.push(format!(
            "{}: {late} events came more than {} s after later ones and were paired in file order",
            path.display(),
            REORDER_NS / 1_000_000_000
        ));
    }
    Ok((info, corr))
}

/// Output of `probes` and `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A duration with units, more than zero: 500ms, 30s, 1.5s, 5m, 1h30m
/// (humantime's syntax); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("`{s}`: not a valid duration")),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("`{s}`: {e} (expected e.g. 500ms, 30s, 1.5s, 5m, 1h30m)"))?,
    };
    if d.is_zero() {
        return Err(format!("`{s}`: must be more than zero"));
    }
    Ok(d)
}

/// A duration for people, to the millisecond: `2m 3s 40ms`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).map_err(|e| e.to_string());
        assert_eq!(ok("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(ok("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(ok("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(ok("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(ok("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(ok("30"), Ok(Duration::from_secs(30)));
        for bad in ["0s", "0", "-3s", "5 parsecs", "", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("5 parsecs").is_err_and(|e| e.contains("e.g. 500ms")));
        assert_eq!(
            format_duration(Duration::from_nanos(123_456_789_012)),
            "2m 3s 456ms"
        );
    }
}
