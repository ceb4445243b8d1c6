//! The trace file reader (JSON Lines: header, events, footer), as
//! `report`, `compare` and `export` read a file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace::trace::Trace;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Trace::read_from(data, "fuzz") {
        for e in &t.events {
            let _ = t.probe(e.p);
        }
    }
});
