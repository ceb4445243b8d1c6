//! Trace files: the [`writer`] (with rotation) and the [`reader`]. The
//! records themselves are [`crate::format`]'s; neither side knows how they
//! were recorded or what they will be analysed for.

pub mod chain;
pub mod reader;
pub mod writer;

pub use reader::{Trace, TraceInfo, TraceMeta, TraceReader};

use anyhow::Result;

use crate::format::{ProbeInfo, Rec};

/// A trace's events in file order with the probe table read so far: one
/// file ([`TraceReader`]) or a rotated chain read as one
/// ([`chain::ChainReader`]). What the correlator reads from.
pub trait EventStream {
    /// The probe table so far (`binary` lines and a chain's newer files
    /// grow it before the first event naming the new probes).
    fn probes(&self) -> &[ProbeInfo];
    /// The next event; None at the end.
    fn next_event(&mut self) -> Result<Option<Rec>>;
    /// What was read besides the events.
    fn finish(self) -> TraceInfo;
}

impl<R: std::io::BufRead> EventStream for TraceReader<R> {
    fn probes(&self) -> &[ProbeInfo] {
        &self.header().probes
    }
    fn next_event(&mut self) -> Result<Option<Rec>> {
        TraceReader::next_event(self)
    }
    fn finish(self) -> TraceInfo {
        TraceReader::finish(self)
    }
}

impl EventStream for chain::ChainReader {
    fn probes(&self) -> &[ProbeInfo] {
        chain::ChainReader::probes(self)
    }
    fn next_event(&mut self) -> Result<Option<Rec>> {
        chain::ChainReader::next_event(self)
    }
    fn finish(self) -> TraceInfo {
        chain::ChainReader::finish(self)
    }
}
pub use writer::{Rotation, Writer, ROTATED};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{BinaryAdded, Footer, Note, NoteKind, FORMAT_VERSION};
    use crate::test_support::synth::{synth, KubeletLike};
    use std::path::PathBuf;

    fn small_trace() -> Trace {
        let spec = KubeletLike::default_periods(2, 7).spec();
        synth(&spec)
            .map(|(t, _)| t)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podtrace-trace-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn appended_binaries_and_notes_read_back_and_version_1_still_reads() {
        let t = small_trace();
        let dir = tmp("append");
        let path = dir.join("t.trace");
        let mut w = Writer::create(&path, &t.header).unwrap_or_else(|e| panic!("{e:#}"));
        let n = t.header.probes.len() as u32;
        let mut more = t.header.probes.clone();
        for (i, p) in more.iter_mut().enumerate() {
            p.id = n + i as u32;
        }
        let mut note = Note::new(5, NoteKind::Reattached, "kubelet");
        note.latency_ns = Some(3);
        w.note(note.clone()).unwrap_or_else(|e| panic!("{e:#}"));
        w.binary_added(BinaryAdded {
            binary: t.header.binaries[0].clone(),
            probes: more,
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        let mut e = t.events[0].clone();
        e.p = 2 * n - 1;
        w.event(&e).unwrap_or_else(|e| panic!("{e:#}"));
        w.finish(Footer::default())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let back = Trace::read(&path).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(back.header.probes.len(), 2 * n as usize);
        assert_eq!(back.header.binaries.len(), t.header.binaries.len() + 1);
        assert_eq!(back.notes, vec![note]);
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        // Private.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        // A version-1 file (no binary or note lines) reads as before.
        let mut h = t.header.clone();
        h.version = 1;
        let v1 = format!(
            "{}\n{}\n",
            serde_json::json!({ "header": h }),
            serde_json::json!({ "e": t.events[0] })
        );
        let old = Trace::read_from(v1.as_bytes(), "v1").unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(old.events.len(), 1);
        h.version = FORMAT_VERSION + 1;
        let v3 = format!("{}\n", serde_json::json!({ "header": h }));
        let err = Trace::read_from(v3.as_bytes(), "v3")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("reads versions 1 to 2")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_existing_trace_is_moved_aside_never_truncated() {
        let t = small_trace();
        let dir = tmp("aside");
        let path = dir.join("t.trace");
        let write = |n: usize, rot: Option<Rotation>| {
            let mut w =
                Writer::create_rotating(&path, &t.header, rot).unwrap_or_else(|e| panic!("{e:#}"));
            for e in t.events.iter().take(n) {
                w.event(e).unwrap_or_else(|e| panic!("{e:#}"));
            }
            w.finish(Footer::default())
                .unwrap_or_else(|e| panic!("{e:#}"));
        };
        let events = |n: u32| {
            Trace::read(&Rotation::numbered(&path, n))
                .unwrap_or_else(|e| panic!("{e:#}"))
                .events
                .len()
        };
        // Three recordings, newest first: t.trace, t.trace.1, t.trace.2.
        for n in [1, 2, 3] {
            write(n, None);
        }
        assert_eq!((events(0), events(1), events(2)), (3, 2, 1));
        // With --max-files 3 the oldest goes.
        write(
            4,
            Some(Rotation {
                max_bytes: 1 << 30,
                max_files: 3,
            }),
        );
        assert_eq!((events(0), events(1), events(2)), (4, 3, 2));
        assert!(!Rotation::numbered(&path, 3).exists());
        // An empty file holds nothing to keep.
        let empty = dir.join("e.trace");
        std::fs::write(&empty, "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(writer::move_aside(&empty, None).ok().flatten(), None);
        assert!(empty.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotation_numbers_files_like_logrotate_and_keeps_max_files() {
        let t = small_trace();
        let dir = tmp("rotate");
        let path = dir.join("t.trace");
        let rot = Rotation {
            max_bytes: 4096,
            max_files: 3,
        };
        let mut w = Writer::create_rotating(&path, &t.header, Some(rot))
            .unwrap_or_else(|e| panic!("{e:#}"));
        for e in t.events.iter().cycle().take(2000) {
            w.event(e).unwrap_or_else(|e| panic!("{e:#}"));
        }
        w.finish(Footer::default())
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(Rotation::numbered(&path, 2).exists());
        assert!(!Rotation::numbered(&path, 3).exists());
        assert_eq!(Rotation::numbered(&path, 1), dir.join("t.trace.1"));
        let mut total = 0;
        for n in 0..3 {
            let f = Rotation::numbered(&path, n);
            let r = Trace::read(&f).unwrap_or_else(|e| panic!("{e:#}"));
            let footer = r
                .footer
                .unwrap_or_else(|| panic!("{} has no footer", f.display()));
            assert_eq!(footer.events as usize, r.events.len());
            assert_eq!(footer.stopped_by == ROTATED, n > 0);
            assert_eq!(r.header.probes.len(), t.header.probes.len());
            total += r.events.len();
        }
        assert!(total < 2000, "older files were deleted");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Each rotated file's footer counts its own drops and hits (those
    /// since the file began), so that the files' counts add up to the
    /// recording's, and the last file's too.
    #[test]
    fn each_rotated_file_carries_only_its_own_drops_and_hits() {
        let t = small_trace();
        let dir = tmp("rotate-counts");
        let path = dir.join("t.trace");
        let rot = Rotation {
            max_bytes: 4096,
            max_files: 10_000,
        };
        let mut w = Writer::create_rotating(&path, &t.header, Some(rot))
            .unwrap_or_else(|e| panic!("{e:#}"));
        // Every event was one hit, and every tenth hit was dropped.
        let mut drops = 0;
        for (i, e) in t.events.iter().cycle().take(300).enumerate() {
            drops += u64::from(i % 10 == 0);
            w.counters = (drops, i as u64 + 1 + drops);
            w.event(e).unwrap_or_else(|e| panic!("{e:#}"));
        }
        let end = w.counters;
        w.finish(Footer {
            drops: end.0,
            hits: end.1,
            ..Footer::default()
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        let (mut sum_drops, mut sum_hits, mut files) = (0, 0, 0);
        for n in 0.. {
            let f = Rotation::numbered(&path, n);
            if !f.exists() {
                break;
            }
            let footer = Trace::read(&f)
                .unwrap_or_else(|e| panic!("{e:#}"))
                .footer
                .unwrap_or_else(|| panic!("{} has no footer", f.display()));
            // Hits here: this file's events and drops (to the event the
            // counters were read at).
            assert!(
                footer.hits.abs_diff(footer.events + footer.drops) <= 1,
                "{}: {footer:?}",
                f.display()
            );
            sum_drops += footer.drops;
            sum_hits += footer.hits;
            files += 1;
        }
        assert!(files > 3, "{files} files");
        assert_eq!((sum_drops, sum_hits), end);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
