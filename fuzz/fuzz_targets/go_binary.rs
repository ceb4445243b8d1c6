//! The whole Go-binary reader on arbitrary bytes: ELF, `.go.buildinfo`,
//! symbol tables or pclntab, text start, goid offset (decodes
//! `runtime.goroutineheader`), then what `probes` and `record` ask of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podtrace::resolve::GoBinary;

fuzz_target!(|data: &[u8]| {
    let Ok(bin) = GoBinary::from_bytes(data.to_vec(), "fuzz".into()) else {
        return;
    };
    let _ = (bin.go_version(), bin.go_release(), bin.goid_info());
    let _ = bin.module_version("k8s.io/cri-api");
    let _ = bin.inlined_functions();
    // A few functions from each end: decoding every one of a large table
    // would make each run slow without reaching new code.
    let fs = bin.functions();
    let picked = fs.iter().take(4).chain(fs.iter().rev().take(4));
    for f in picked {
        let _ = bin.function(&f.name);
        let _ = bin.function_at(f.entry);
        let _ = bin.file_offset(f.entry);
        let _ = bin.inlined_into(&f.name);
        if let Ok(s) = bin.sites(f) {
            let _ = bin.file_offset(s.entry_site.vaddr());
        }
        let _ = bin.result_regs(f);
    }
});
