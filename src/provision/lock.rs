//! One changing run at a time per root: `setup` and `setup --undo` hold an exclusive `flock` on
//! `/var/lib/pigpu/lock` (inside the root) for as long as they may change it, so a second run
//! cannot mistake a live run's journal for a crashed one and roll it back. The holder writes its
//! PID into the file, and a refused run names it. The kernel drops the lock when the holder
//! dies, so a killed run never blocks the next one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

use thiserror::Error;

use crate::sys::Root;

/// The lock file, as a system path.
const LOCK_FILE: &str = "/var/lib/pigpu/lock";

/// Why setup's lock could not be taken.
#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "another pigpu setup{} is changing {} (it holds {}); wait for it to finish, then run again",
        holder.map(|p| format!(" (PID {p})")).unwrap_or_default(),
        root.display(),
        path.display()
    )]
    /// Another pigpu holds the lock for this root.
    Busy {
        /// The root being changed.
        root: PathBuf,
        /// The lock file.
        path: PathBuf,
        /// The PID the holder wrote into the lock file, when it can be read.
        holder: Option<u32>,
    },
    /// The lock file could not be created or locked.
    #[error("lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// The held lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
    root: Root,
}

/// Takes the lock without waiting: `Busy` (with the holder's PID) when another run has it.
pub fn acquire(root: &Root) -> Result<Lock, LockError> {
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| LockError::Io { path, source }
    };
    // A few tries: a holder that finishes removes the file between our open and our flock.
    for _ in 0..20 {
        let path = root.inside(LOCK_FILE).map_err(io(&root.path(LOCK_FILE)))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(&path))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io(&path))?;
        // SAFETY: flock on a descriptor this function owns; it touches no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Busy {
                    root: root.dir().to_path_buf(),
                    path,
                    holder: text.trim().parse().ok(),
                });
            }
            return Err(LockError::Io { path, source: err });
        }
        // Locked, but maybe a file the previous holder has just unlinked: then start over.
        let same = fs::symlink_metadata(&path).ok().is_some_and(|now| {
            file.metadata()
                .is_ok_and(|held| held.ino() == now.ino() && held.dev() == now.dev())
        });
        if !same {
            continue;
        }
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io(&path))?;
        return Ok(Lock {
            file,
            path,
            root: root.clone(),
        });
    }
    Err(LockError::Io {
        path: root.path(LOCK_FILE),
        source: io::Error::other("the lock file kept being replaced; is another pigpu looping?"),
    })
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held, so a waiting run re-checks the inode and starts over; pigpu's
        // directory goes too when nothing else is left in it (a run that changed nothing).
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_dir(self.root.path("/var/lib/pigpu"));
        let _ = &self.file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_pid_and_freed_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let held = acquire(&root).unwrap();
        let e = acquire(&root).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("PID {}", std::process::id())),
            "{msg}"
        );
        drop(held);
        assert!(!t.path().join("var/lib/pigpu").exists());
        drop(acquire(&root).unwrap());
    }
}
