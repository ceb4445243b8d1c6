//! Where things are: set-up's cache outside the repo, the Go toolchains,
//! the environment of offline Go builds. Used by every task; uses none.

use std::path::PathBuf;

/// Where set-up keeps what it builds outside the repo (shared by clones).
pub fn home() -> PathBuf {
    std::env::var_os("PODTRACE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".podtrace")
        })
}

pub fn go119() -> PathBuf {
    PathBuf::from("/usr/lib/go-1.19/bin/go")
}

pub fn go127() -> PathBuf {
    home().join("gobin-venv/lib/python3.11/site-packages/go/bin/go")
}

/// The Go the real kubelets are built with (1.26.8 on these machines), for
/// the workload build that reproduces their closure names.
pub fn go126() -> PathBuf {
    PathBuf::from("/usr/local/go/bin/go")
}

/// Environment for offline Go builds of the workloads.
pub fn go_env() -> Vec<(&'static str, String)> {
    vec![
        ("GOTOOLCHAIN", "local".into()),
        ("GOPROXY", "off".into()),
        ("GOFLAGS", "-mod=mod".into()),
        ("GOTELEMETRY", "off".into()),
    ]
}
