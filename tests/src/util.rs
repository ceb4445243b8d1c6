//! Helpers the harnesses (`containerd`, `node`, `otlp`) share: where
//! set-up keeps its builds, the test's own helper binaries, log tails,
//! ports, random names, cgroup roots and stopping child processes. Only std
//! and libc, like `containerd.rs`: tests/cri-client/tests/env.rs pulls both
//! in with `#[path]`.

use std::{
    io::Read as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// `$PODTRACE_HOME` (default `~/.podtrace`), where `cargo xtask setup` builds
/// the upstream binaries (xtask/src/setup.rs).
/// A binary `cargo xtask setup` installs in `~/.podtrace/bin`; panics
/// saying what builds it (`how`) when it is missing.
pub fn setup_bin(name: &str, how: &str) -> PathBuf {
    let p = podtrace_home().join("bin").join(name);
    assert!(
        p.is_file(),
        "{} does not exist: `cargo xtask setup` builds {how}",
        p.display()
    );
    p
}

pub fn podtrace_home() -> PathBuf {
    std::env::var_os("PODTRACE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
                .join(".podtrace")
        })
}

/// The repository root: the directory above this crate that holds
/// tests/containerd/build-images.sh (found by walking up, so that it holds
/// also for the crates that include this file with `#[path]`).
pub(crate) fn repo_root() -> PathBuf {
    let mut d = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        if d.join("tests/containerd/build-images.sh").exists() {
            return d;
        }
        if !d.pop() {
            panic!(
                "cannot find tests/containerd/build-images.sh above {}",
                env!("CARGO_MANIFEST_DIR")
            );
        }
    }
}

/// A helper binary of this workspace (`cri-client`, `otlp-sink`): `$var`,
/// else next to the running test binary's target dir (release, then
/// debug), else `target/release/NAME`; panics with `how` to build it.
pub(crate) fn workspace_bin(name: &str, var: &str, how: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "{var}={} does not exist", p.display());
        return p;
    }
    let mut candidates = Vec::new();
    // <target>/<profile>/deps/<test binary>
    if let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(Path::to_path_buf))
    {
        candidates.push(target.join("release").join(name));
        candidates.push(target.join("debug").join(name));
    }
    let fallback = repo_root().join("target/release").join(name);
    candidates.push(fallback.clone());
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{} does not exist: build it with {how} (or set {var})",
                fallback.display()
            )
        })
}

/// The last `lines` lines of a log file, headed by its path (for panics).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    let start = v.len().saturating_sub(lines);
    format!(
        "--- last {} lines of {} ---\n{}",
        v.len() - start,
        path.display(),
        v[start..].join("\n")
    )
}

/// 12 random hex digits: names of a run's directories, cgroups, sockets.
pub(crate) fn rand_hex() -> String {
    let mut b = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A TCP port of 127.0.0.1 free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// GET http://addr/path (HTTP/1.0, whole answer): (status, body); None if
/// nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Cgroup hierarchy roots: /sys/fs/cgroup/<controller> on v1 (and the
/// hybrid `unified`), /sys/fs/cgroup itself on v2.
pub(crate) fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.procs").exists() {
        return vec![base.to_path_buf()];
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// SIGTERM, wait up to `grace`, then SIGKILL and reap. The exit status if
/// it ended by itself, None if it had to be killed.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    // SAFETY: plain kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let t = Instant::now();
    while t.elapsed() < grace {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Run a command with a deadline; returns (status or None on timeout, stdout, stderr).
pub(crate) fn run_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> (Option<ExitStatus>, String, String) {
    let dir = std::env::temp_dir();
    let tag = format!("podtrace-cmd-{}-{}", std::process::id(), rand_hex());
    let (out_p, err_p) = (
        dir.join(format!("{tag}.out")),
        dir.join(format!("{tag}.err")),
    );
    let spawned = (|| {
        let out = std::fs::File::create(&out_p)?;
        let err = std::fs::File::create(&err_p)?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()
    })();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return (None, String::new(), format!("spawn failed: {e}")),
    };
    let t = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| {
        std::fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let r = (status, read(&out_p), read(&err_p));
    let _ = std::fs::remove_file(&out_p);
    let _ = std::fs::remove_file(&err_p);
    r
}
