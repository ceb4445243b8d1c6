//! The inline-tree decoder: from an ELF, the pclntab and moduledata are
//! found as for a real binary, then every function's inline tree is read
//! (pc-value tables, funcdata, tree entries, names).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = podtrace::resolve::fuzzing::inline_trees(data);
});
