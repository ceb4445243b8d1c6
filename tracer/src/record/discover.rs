//! Which binaries to trace: the ones named on the command line, the
//! processes given by pid, the command to start, or every running kubelet
//! and containerd found in /proc (told apart by name, else by which
//! catalogue recognises their code).
//!
//! Reads /proc and binaries' headers; attaches nothing and writes nothing.
//! The supervisor uses the same functions to find what starts later.

use std::{
    fs::File,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    rc::Rc,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    catalogue::{BinaryCatalogue, Catalogue, Role, Status},
    resolve::{build_info_of_file, GoBinary},
};

/// A file identity: (device, inode).
pub type FileKey = (u64, u64);

/// The identity of the file `path` names now (following symlinks).
pub fn file_key(path: &Path) -> Option<FileKey> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// What the user asked to trace. All empty: every kubelet and containerd
/// running now, and (with the supervisor) those started later.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub kubelet: Option<PathBuf>,
    pub containerd: Option<PathBuf>,
    pub pids: Vec<u32>,
    /// A command to start once attached; its binary is traced when nothing
    /// else is named.
    pub command: Vec<String>,
}

impl Targets {
    /// Nothing named: find the binaries by looking at what runs.
    pub fn discover(&self) -> bool {
        self.kubelet.is_none()
            && self.containerd.is_none()
            && self.pids.is_empty()
            && self.command.is_empty()
    }
}

/// Suffix the kernel adds to /proc/PID/exe's link text when the file was
/// removed or replaced (an in-place upgrade renames a new file over it).
const DELETED: &str = " (deleted)";

/// A running executable (one file, possibly already deleted) and the
/// processes running it.
#[derive(Debug)]
pub struct RunningExe {
    /// The link text of /proc/PID/exe without [`DELETED`].
    pub shown: PathBuf,
    pub deleted: bool,
    pub key: FileKey,
    pub pids: Vec<u32>,
    /// One of its processes is in the host's mount namespace (see
    /// [`host_mount_ns`]): discovery looks at no other.
    pub host: bool,
}

/// The mount namespace (its inode) of process `pid`.
pub fn mount_ns(pid: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// The host's mount namespace: PID 1's, else kthreadd's (PID 2, always in
/// the initial one), else podtrace's own. In a DaemonSet pod (hostPID)
/// podtrace's own is the container's, so PID 1 comes first; a kind or DinD
/// node's kubelet runs in a mount namespace of its own and is not this
/// node's (in such a node, with its hostPID, PID 1 is that node's init).
pub fn host_mount_ns() -> Option<u64> {
    mount_ns("1")
        .or_else(|| mount_ns("2"))
        .or_else(|| mount_ns("self"))
}

impl RunningExe {
    /// A path that opens this very file for as long as its first process
    /// lives, also when it was deleted or lives in another mount namespace.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.pids[0]))
    }

    pub fn file_name(&self) -> &str {
        self.shown
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
    }

    /// The path it was started from, when that still names this file here
    /// (not deleted, not in another mount namespace): watched for the
    /// binary being replaced.
    pub fn watchable_path(&self) -> Option<PathBuf> {
        (!self.deleted && file_key(&self.shown) == Some(self.key)).then(|| self.shown.clone())
    }

    /// The catalogues whose process names match this file's name.
    pub fn named_like<'c>(&self, cat: &'c Catalogue) -> Vec<&'c BinaryCatalogue> {
        cat.binaries
            .iter()
            .filter(|b| b.binary.process_names.iter().any(|n| n == self.file_name()))
            .collect()
    }
}

/// Every process's executable, grouped by file (device and inode of the
/// file /proc/PID/exe points at), in pid order. Kernel threads and
/// processes we may not look at are left out, and so is podtrace itself.
pub fn running_executables() -> Vec<RunningExe> {
    let me = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    let host_ns = host_mount_ns();
    let mut out: Vec<RunningExe> = Vec::new();
    for pid in pids.into_iter().filter(|&p| p != me) {
        let exe = format!("/proc/{pid}/exe");
        let (Ok(link), Ok(meta)) = (std::fs::read_link(&exe), std::fs::metadata(&exe)) else {
            continue;
        };
        let text = link.to_string_lossy();
        let (shown, deleted) = match text.strip_suffix(DELETED) {
            Some(t) => (PathBuf::from(t), true),
            None => (link.clone(), false),
        };
        let key = (meta.dev(), meta.ino());
        // Unreadable: as before namespaces were looked at.
        let host = host_ns.is_none_or(|h| mount_ns(&pid.to_string()).is_none_or(|m| m == h));
        match out.iter_mut().find(|r| r.key == key) {
            Some(r) => {
                r.pids.push(pid);
                r.host |= host;
            }
            None => out.push(RunningExe {
                shown,
                deleted,
                key,
                pids: vec![pid],
                host,
            }),
        }
    }
    out
}

/// Whether the file at `path` may be a catalogue's binary, told from its
/// `.go.buildinfo` alone (a few bounded reads, see
/// [`build_info_of_file`]): discovery looks at every running executable,
/// and GoBinary::open would read each one whole (100 MB for a kubelet).
///
/// Built from a catalogue's module (`k8s.io/kubernetes`), only the command
/// the catalogue is for may be ours: `…/cmd/kubelet`, not kube-apiserver,
/// kubectl or containerd's shims, which share the module. With it among
/// the dependencies, anything may be (k3s runs kubelet and containerd
/// inside `k3s agent`). Anything else is not; nor is a build without
/// module information (Debian's containerd), which is found by its name.
pub fn may_be_ours(path: &Path, cat: &Catalogue) -> bool {
    let Ok(Some(info)) = build_info_of_file(path) else {
        return false;
    };
    let Some(main) = &info.main else {
        return false;
    };
    let under = |p: &str, m: &str| {
        p.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let command = info.path.rsplit('/').next().unwrap_or_default();
    cat.binaries.iter().any(|b| {
        let module = &b.binary.module;
        if under(&main.path, module) {
            b.binary.process_names.iter().any(|n| n == command)
        } else {
            info.deps.iter().any(|d| under(&d.path, module))
        }
    })
}

/// The catalogues that recognise `bin` as theirs: at least one probe that
/// defines the binary (a pod sync for kubelet, a CRI handler for a runtime)
/// resolves. A multi-call binary such as k3s (kubelet and containerd in one
/// executable) gets every one that does.
pub fn recognising<'c>(cat: &'c Catalogue, bin: &GoBinary) -> Vec<&'c BinaryCatalogue> {
    cat.binaries
        .iter()
        .filter(|b| {
            b.resolve(bin).iter().any(|r| {
                r.status == Status::Ok
                    && b.probes
                        .iter()
                        .any(|p| p.name == r.probe && matches!(p.role, Role::PodSync | Role::Cri))
            })
        })
        .collect()
}

/// The catalogue whose probes resolve best in `bin` (at least one).
fn identify<'c>(cat: &'c Catalogue, bin: &GoBinary) -> Option<&'c BinaryCatalogue> {
    cat.binaries
        .iter()
        .map(|b| {
            let ok = b
                .resolve(bin)
                .iter()
                .filter(|r| r.status == Status::Ok)
                .count();
            (ok, b)
        })
        .filter(|(ok, _)| *ok > 0)
        .max_by_key(|(ok, _)| *ok)
        .map(|(_, b)| b)
}

/// A binary to trace: its path, the processes (empty = all) and which
/// catalogue it is for.
pub struct Chosen<'c> {
    /// How it is shown: the path given, or the one its process was started
    /// from (also when that is in another mount namespace, or deleted).
    pub path: PathBuf,
    /// The file, opened when it was chosen: a process found running it may
    /// exit before the probes are attached; the file stays reachable
    /// (`binary` was read, and is attached, through this descriptor).
    pub file: Rc<File>,
    /// `--pid`: only these processes, their probes per process. Empty:
    /// every process of the file (its uprobes sit on the inode, so a
    /// restart is traced from its first instruction).
    pub pids: Vec<u32>,
    /// The processes found running it (the trace header names them).
    pub seen: Vec<u32>,
    /// The path to watch for the binary being replaced (None: `--pid`, a
    /// file already deleted, or a path in another mount namespace).
    pub watch: Option<PathBuf>,
    pub catalogue: &'c BinaryCatalogue,
    /// Shared by the catalogues of one multi-call binary.
    pub binary: Rc<GoBinary>,
}

/// The path that opens `file` itself, for as long as it is held.
pub fn fd_path(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd as _;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("{}: cannot open the file", path.display()))
}

/// An absolute path for a binary named on the command line: aya takes a
/// bare name (`kubelet`) for a shared library to look up in ld.so.cache.
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p)
        .with_context(|| format!("{}: cannot make the path absolute", p.display()))
}

fn which(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|c| c.is_file())
    })
}

/// The binaries to trace for `t`, each with the catalogue(s) it is for,
/// and the files discovery looked at and found not to be any catalogue's
/// (the supervisor need not look at them again).
pub fn choose<'c>(t: &Targets, cat: &'c Catalogue) -> Result<(Vec<Chosen<'c>>, Vec<FileKey>)> {
    let mut out = Vec::new();
    let mut rejected = Vec::new();
    for (p, name) in [(&t.kubelet, "kubelet"), (&t.containerd, "containerd")] {
        if let Some(p) = p {
            let path = absolute(p)?;
            let file = open(&path)?;
            let binary = GoBinary::open(&path)?;
            let watch = Some(path.clone());
            push(
                &mut out,
                Found {
                    path,
                    file,
                    pids: vec![],
                    seen: vec![],
                    watch,
                },
                vec![cat.for_binary(name)?],
                binary,
            );
        }
    }
    for &pid in &t.pids {
        by_pid(&mut out, cat, pid)?;
    }
    if let (Some(cmd), true) = (
        t.command.first(),
        t.kubelet.is_none() && t.containerd.is_none() && t.pids.is_empty(),
    ) {
        by_command(&mut out, cat, cmd)?;
    }
    if t.discover() {
        running(&mut out, &mut rejected, cat)?;
        if out.is_empty() {
            bail!(
                "no running kubelet or containerd found; pass --kubelet PATH, --containerd PATH \
                 or --pid PID, or a command after --"
            );
        }
    }
    Ok((out, rejected))
}

/// A binary found, before it is known which catalogues it is for.
struct Found {
    path: PathBuf,
    file: File,
    pids: Vec<u32>,
    seen: Vec<u32>,
    watch: Option<PathBuf>,
}

/// Adds the binary `f` once per catalogue it is for.
fn push<'c>(out: &mut Vec<Chosen<'c>>, f: Found, cats: Vec<&'c BinaryCatalogue>, binary: GoBinary) {
    let binary = Rc::new(binary);
    let file = Rc::new(f.file);
    for catalogue in cats {
        out.push(Chosen {
            path: f.path.clone(),
            file: Rc::clone(&file),
            pids: f.pids.clone(),
            seen: f.seen.clone(),
            watch: f.watch.clone(),
            catalogue,
            binary: Rc::clone(&binary),
        });
    }
}

fn catalogue_names(cat: &Catalogue) -> String {
    cat.binaries
        .iter()
        .map(|b| b.binary.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--pid`: the process's binary, for the catalogue(s) that recognise it.
fn by_pid<'c>(out: &mut Vec<Chosen<'c>>, cat: &'c Catalogue, pid: u32) -> Result<()> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("no process {pid} (or not allowed to read /proc/{pid}/exe)"))?;
    eprintln!("podtrace: process {pid} runs {}", exe.display());
    let path = PathBuf::from(format!("/proc/{pid}/exe"));
    let file = open(&path)?;
    let binary = GoBinary::open(&path)?;
    let mut cats = recognising(cat, &binary);
    if cats.is_empty() {
        cats.extend(identify(cat, &binary));
    }
    if cats.is_empty() {
        bail!(
            "{} (process {pid}): none of the catalogue's functions ({}) resolve in it ({})",
            exe.display(),
            catalogue_names(cat),
            binary.go_version().unwrap_or("no Go version")
        );
    }
    push(
        out,
        Found {
            path,
            file,
            pids: vec![pid],
            seen: vec![pid],
            watch: None,
        },
        cats,
        binary,
    );
    Ok(())
}

/// The command after `--`, when nothing else is named: its binary.
fn by_command<'c>(out: &mut Vec<Chosen<'c>>, cat: &'c Catalogue, cmd: &str) -> Result<()> {
    let path =
        absolute(&which(cmd).with_context(|| format!("command `{cmd}` not found on PATH"))?)?;
    let file = open(&path)?;
    let binary = GoBinary::open(&path)?;
    let c = identify(cat, &binary).with_context(|| {
        format!(
            "{}: none of the catalogue's functions ({}) resolve in it ({})",
            path.display(),
            catalogue_names(cat),
            binary.go_version().unwrap_or("no Go version")
        )
    })?;
    push(
        out,
        Found {
            path: path.clone(),
            file,
            pids: vec![],
            seen: vec![],
            watch: Some(path),
        },
        vec![c],
        binary,
    );
    Ok(())
}

/// Every running kubelet and containerd in the host's mount namespace: by
/// file name, else a Go binary whose code a catalogue recognises (k3s, a
/// renamed copy). Files found not to be any catalogue's go to `rejected`.
fn running<'c>(
    out: &mut Vec<Chosen<'c>>,
    rejected: &mut Vec<FileKey>,
    cat: &'c Catalogue,
) -> Result<()> {
    for exe in running_executables().into_iter().filter(|e| e.host) {
        // Held from here: the process may exit meanwhile, the file stays.
        // Not openable: it exited already, and nothing is known of it.
        let Ok(file) = File::open(exe.proc_path()) else {
            continue;
        };
        if file.metadata().is_ok_and(|m| (m.dev(), m.ino()) != exe.key) {
            // The pid was reused by another program since the scan.
            continue;
        }
        let path = fd_path(&file);
        let by_name = exe.named_like(cat);
        if by_name.is_empty() && !may_be_ours(&path, cat) {
            rejected.push(exe.key);
            continue;
        }
        let binary = match GoBinary::open(&path) {
            Ok(b) => b,
            // Not a Go binary (most processes).
            Err(_) if by_name.is_empty() => continue,
            Err(e) => return Err(e).context(format!("{}", exe.shown.display())),
        };
        let cats = if by_name.is_empty() {
            recognising(cat, &binary)
        } else {
            by_name
        };
        if cats.is_empty() {
            rejected.push(exe.key);
            continue;
        }
        eprintln!(
            "podtrace: found {}{} (pid {}) running {}",
            exe.shown.display(),
            if exe.deleted {
                ", deleted or replaced since it started"
            } else {
                ""
            },
            exe.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            cats.iter()
                .map(|c| c.binary.name.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        );
        let watch = exe.watchable_path();
        push(
            out,
            Found {
                path: exe.shown.clone(),
                file,
                pids: vec![],
                seen: exe.pids,
                watch,
            },
            cats,
            binary,
        );
    }
    Ok(())
}
