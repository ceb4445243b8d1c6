//! Writes a synthetic recording of a busy node for `cargo xtask bench`:
//! `busy_node OUT [SECONDS]` (default one hour). Prints what it wrote as
//! one JSON line.

use anyhow::{Context as _, Result};
use podtrace::test_support::synth::{write_busy_node, BusyNode};

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let out = args.next().context("usage: busy_node OUT [SECONDS]")?;
    let mut spec = BusyNode::hour();
    if let Some(s) = args.next() {
        spec.seconds = s
            .to_str()
            .and_then(|s| s.parse().ok())
            .context("SECONDS: a whole number")?;
    }
    let st = write_busy_node(&spec, std::path::Path::new(&out))?;
    println!(
        "{{\"events\":{},\"spans\":{},\"pod_starts\":{},\"bytes\":{},\"seconds\":{}}}",
        st.events, st.spans, st.pod_starts, st.bytes, spec.seconds
    );
    Ok(())
}
