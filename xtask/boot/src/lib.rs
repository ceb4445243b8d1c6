//! The Rust toolchain podtrace is built with, read from the workspace's
//! `Cargo.toml` (`[workspace.metadata.podtrace] toolchain = "…"`).
//!
//! Why not `rust-toolchain.toml`: rustup's proxy reads that file before
//! cargo starts, and where automatic installs are off (`RUSTUP_AUTO_INSTALL=0`,
//! or `rustup set auto-install disable`) it refuses to run cargo at all, so
//! `cargo xtask` could never install the toolchain it needs.

/// The workspace manifest, as this crate was built against it.
const MANIFEST: &str = include_str!("../../../Cargo.toml");

/// The pinned toolchain, e.g. `1.99.1`; `None` if the manifest lost the key.
pub fn pinned_toolchain() -> Option<&'static str> {
    let mut in_table = false;
    for line in MANIFEST.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == "[workspace.metadata.podtrace]";
        } else if in_table {
            let value = line
                .strip_prefix("toolchain")
                .and_then(|l| l.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"'));
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                return Some(v);
            }
        }
    }
    None
}

/// Components the build (rust-src: the eBPF crate builds `core`) and the
/// lints need.
pub const COMPONENTS: &str = "rust-src,clippy,rustfmt";

#[cfg(test)]
mod tests {
    #[test]
    fn the_workspace_pins_a_numbered_release() {
        let tc = super::pinned_toolchain().unwrap_or_default();
        let parts: Vec<&str> = tc.split('.').collect();
        assert_eq!(parts.len(), 3, "{tc:?}");
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{tc:?}");
    }
}
