//! The pclntab decoder (pcHeader, function table, names) on the bytes a
//! `.gopclntab` section would hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = podtrace::resolve::fuzzing::pclntab(data);
});
