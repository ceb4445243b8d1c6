//! Word from the kernel when a traced path may name another file: inotify
//! on the directories of the paths the supervisor watches. A binary
//! renamed over a traced one (an upgrade, the default→tuned swap),
//! rewritten in place, or deleted is seen at once, so the supervisor need
//! not stat every path four times a second to attach to it within a
//! second.
//!
//! Used by the recording loop beside the supervisor; it only says that
//! something changed (the supervisor looks for itself).

use std::{
    collections::BTreeMap,
    mem::MaybeUninit,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::PathBuf,
};

use anyhow::{Context as _, Result};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// The inotify instance and the directories it watches.
pub struct PathWatch {
    fd: OwnedFd,
    /// Watched directory → watch descriptor.
    dirs: BTreeMap<PathBuf, i32>,
}

impl PathWatch {
    pub fn new() -> Result<PathWatch> {
        let fd =
            inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).context("inotify_init1")?;
        Ok(PathWatch {
            fd,
            dirs: BTreeMap::new(),
        })
    }

    /// The descriptor that becomes readable on a change.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Watches the directories of `paths` (and stops watching the others).
    /// A directory that cannot be watched is left to the supervisor's own
    /// periodic look.
    pub fn set(&mut self, paths: &[PathBuf]) {
        let want: Vec<PathBuf> = paths
            .iter()
            .filter_map(|p| p.parent().map(PathBuf::from))
            .collect();
        let gone: Vec<PathBuf> = self
            .dirs
            .keys()
            .filter(|d| !want.contains(d))
            .cloned()
            .collect();
        for d in gone {
            if let Some(wd) = self.dirs.remove(&d) {
                let _ = inotify::remove_watch(&self.fd, wd);
            }
        }
        for d in want {
            if self.dirs.contains_key(&d) {
                continue;
            }
            let flags = WatchFlags::MOVED_TO
                | WatchFlags::CREATE
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::MODIFY
                | WatchFlags::ATTRIB
                | WatchFlags::DELETE
                | WatchFlags::MOVED_FROM;
            if let Ok(wd) = inotify::add_watch(&self.fd, &d, flags) {
                self.dirs.insert(d, wd);
            }
        }
    }

    /// Reads what is queued. Returns whether anything changed in a watched
    /// directory (any file: the supervisor compares its paths itself).
    pub fn changed(&mut self) -> bool {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut any = false;
        // IN_IGNORED (a watch removed) says nothing about the files.
        let news = |e: &inotify::Event<'_>| !e.events().contains(ReadFlags::IGNORED);
        loop {
            let mut r = inotify::Reader::new(&self.fd, &mut buf);
            match r.next() {
                Ok(e) => {
                    any |= news(&e);
                    // The rest of this read.
                    while !r.is_buffer_empty() {
                        match r.next() {
                            Ok(e) => any |= news(&e),
                            Err(_) => break,
                        }
                    }
                }
                Err(_) => return any,
            }
        }
    }

    /// How many directories are watched.
    pub fn watched(&self) -> usize {
        self.dirs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_over_a_watched_path_is_told() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("podtrace-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let traced = dir.join("kubelet");
        std::fs::write(&traced, "old")?;
        let mut w = PathWatch::new()?;
        w.set(std::slice::from_ref(&traced));
        assert_eq!(w.watched(), 1);
        assert!(!w.changed(), "nothing happened yet");
        let new = dir.join("kubelet.new");
        std::fs::write(&new, "new")?;
        assert!(w.changed(), "a file written in the directory");
        std::fs::rename(&new, &traced)?;
        assert!(w.changed(), "a file renamed over the traced path");
        assert!(!w.changed());
        w.set(&[]);
        assert_eq!(w.watched(), 0);
        std::fs::write(&traced, "again")?;
        assert!(!w.changed(), "no longer watched");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
