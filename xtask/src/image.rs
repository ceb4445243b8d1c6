//! `cargo xtask image`: an OCI image of podtrace, built without Docker.
//!
//! One layer, distroless-style: the podtrace binary (it embeds its eBPF
//! object and probe catalogue), stripped of debug info, and the few glibc
//! libraries it links (what `ldd` lists, at the paths the loader looks in);
//! nothing else — no shell, no package manager. The layer is a tar written
//! with the `tar` crate (fixed owners and times, sorted: the same binary
//! gives the same digest), gzip from `flate2`, digests from `sha2`, and the
//! OCI layout (oci-layout, index.json, blobs) is a few lines of JSON. skopeo
//! (Debian's) pushes it to a registry.
//!
//! Why not a static musl build: the toolchain here has no musl target and
//! rustup cannot fetch one; the glibc binary plus libc, libm, libgcc_s and
//! the loader is what the image holds instead (size in `cargo xtask image`'s
//! output).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use flate2::{write::GzEncoder, Compression};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::{root, step};

/// The image's tag: the workspace version.
pub const TAG: &str = env!("CARGO_PKG_VERSION");

/// Where the OCI layout goes.
pub fn layout_dir() -> PathBuf {
    root().join("target/image/podtrace")
}

/// What `build` made.
pub struct Built {
    pub layout: PathBuf,
}

/// Builds the OCI layout from the release binary at `podtrace`.
pub fn build(podtrace: &Path) -> Result<Built> {
    step("building the podtrace OCI image (no Docker: tar + gzip + sha256 in xtask)");
    let work = root().join("target/image/work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    // Debug info is half the binary; the image needs none of it.
    let stripped = work.join("podtrace");
    crate::sh(
        Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(podtrace),
    )?;

    // (path in the image, file on this machine, mode)
    let mut files: Vec<(String, PathBuf, u32)> = vec![("podtrace".into(), stripped.clone(), 0o755)];
    for lib in shared_libraries(&stripped)? {
        let host =
            std::fs::canonicalize(&lib).with_context(|| format!("resolving {}", lib.display()))?;
        let inside = lib
            .to_str()
            .and_then(|s| s.strip_prefix('/'))
            .with_context(|| format!("library path {} is not absolute UTF-8", lib.display()))?
            .to_string();
        files.push((inside, host, 0o755));
    }
    files.sort();

    let tar_bytes = layer_tar(&files)?;
    let diff_id = sha256(&tar_bytes);
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&tar_bytes)?;
    let layer = gz.finish()?;

    let layout = layout_dir();
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let put = |bytes: &[u8]| -> Result<(String, usize)> {
        let d = sha256(bytes);
        std::fs::write(layout.join("blobs/sha256").join(&d), bytes)?;
        Ok((format!("sha256:{d}"), bytes.len()))
    };
    let (layer_digest, layer_size) = put(&layer)?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/podtrace"],
            "Cmd": ["--help"],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": "podtrace",
                "org.opencontainers.image.version": TAG,
                "org.opencontainers.image.description": "where a pod's start-up time goes inside kubelet and containerd (eBPF uprobes)"
            }
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cargo xtask image"}]
    }))?;
    let (config_digest, config_size) = put(&config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer_size
        }]
    }))?;
    let (manifest_digest, manifest_size) = put(&manifest)?;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": TAG}
        }]
    }))?;
    std::fs::write(layout.join("index.json"), index)?;
    let _ = std::fs::remove_dir_all(&work);

    eprintln!(
        "    image: {} (tag {TAG}, manifest {manifest_digest}): layer {:.1} MiB compressed, {:.1} MiB unpacked ({})",
        layout.display(),
        layer_size as f64 / 1048576.0,
        tar_bytes.len() as f64 / 1048576.0,
        files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(", ")
    );
    Ok(Built { layout })
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The shared libraries `bin` loads, as the paths the loader finds them at
/// (the ELF interpreter included), from `ldd`.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path {
            if !p.starts_with('/') {
                bail!("ldd {}: cannot place {line:?}", bin.display());
            }
            libs.push(PathBuf::from(p));
        }
    }
    if !libs
        .iter()
        .any(|l| l.to_string_lossy().contains("ld-linux"))
    {
        bail!("ldd {} names no ELF interpreter", bin.display());
    }
    Ok(libs)
}

/// The layer: every parent directory, then the files, root-owned, mtime 0.
fn layer_tar(files: &[(String, PathBuf, u32)]) -> Result<Vec<u8>> {
    let mut dirs: Vec<String> = Vec::new();
    for (inside, _, _) in files {
        let mut p = Path::new(inside).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(format!("{}/", d.display()));
            p = d.parent();
        }
    }
    dirs.sort();
    dirs.dedup();
    let mut t = tar::Builder::new(Vec::new());
    t.mode(tar::HeaderMode::Deterministic);
    let header = |kind: tar::EntryType, size: u64, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    };
    for d in &dirs {
        let mut h = header(tar::EntryType::Directory, 0, 0o755);
        t.append_data(&mut h, d, std::io::empty())?;
    }
    for (inside, host, mode) in files {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mut h = header(tar::EntryType::Regular, data.len() as u64, *mode);
        t.append_data(&mut h, inside, data.as_slice())?;
    }
    Ok(t.into_inner()?)
}

/// Pushes the layout to `registry` (host:port, plain HTTP) as
/// `REGISTRY/podtrace:TAG` with skopeo; returns the reference.
pub fn push(layout: &Path, registry: &str) -> Result<String> {
    let reference = format!("{registry}/podtrace:{TAG}");
    crate::sh(
        Command::new("skopeo")
            .args([
                "copy",
                "--insecure-policy",
                "--dest-tls-verify=false",
                "--quiet",
            ])
            .arg(format!("oci:{}:{TAG}", layout.display()))
            .arg(format!("docker://{reference}")),
    )?;
    Ok(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_is_reproducible_and_root_owned() {
        let dir = std::env::temp_dir().join(format!("podtrace-image-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"binary").expect("write a");
        std::fs::write(&b, b"library").expect("write b");
        let files = vec![
            ("podtrace".to_string(), a.clone(), 0o755),
            (
                "lib/x86_64-linux-gnu/libc.so.6".to_string(),
                b.clone(),
                0o755,
            ),
        ];
        let first = layer_tar(&files).expect("tar");
        // Other mtimes on the host must not change the layer.
        std::fs::write(&a, b"binary").expect("rewrite a");
        assert_eq!(first, layer_tar(&files).expect("tar again"));
        let mut ar = tar::Archive::new(first.as_slice());
        let entries: Vec<(String, u64, u64, u32)> = ar
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").display().to_string(),
                    h.uid().expect("uid"),
                    h.mtime().expect("mtime"),
                    h.mode().expect("mode"),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("lib/".to_string(), 0, 0, 0o755),
                ("lib/x86_64-linux-gnu/".to_string(), 0, 0, 0o755),
                ("podtrace".to_string(), 0, 0, 0o755),
                ("lib/x86_64-linux-gnu/libc.so.6".to_string(), 0, 0, 0o755),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
