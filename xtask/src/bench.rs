//! `cargo xtask bench`.
use anyhow::Result;

pub fn run() -> Result<()> {
    anyhow::bail!("bench: not written yet")
}
