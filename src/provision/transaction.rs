//! File changes as a transaction: every file is backed up before pigpu first changes it, every
//! write is atomic (temp file, fsync, rename), and each change is journaled in the state file as
//! it happens. A failed step rolls back everything the run did; `commit` moves the journal into
//! the permanent records that `--undo` reverses. Reversal is shared by both.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::host::{Host, HostError};
use super::state::{self, Record, State, StateError};
use crate::sys::command::depmod;
use crate::sys::download::sha256_file;
use crate::sys::root::{atomic_replace, atomic_write};
use crate::sys::Root;

/// Why a change could not be made or journaled.
#[derive(Debug, Error)]
pub enum TxError {
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`writing`, `backing up`, `creating`).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The state (journal) could not be saved.
    #[error(transparent)]
    State(#[from] StateError),
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> TxError + 'p {
    move |source| TxError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The changes of one run.
pub struct Transaction<'r> {
    root: &'r Root,
    /// The state as changed so far (journaled before each change).
    pub state: State,
    /// Paths already backed up in this run.
    touched: Vec<String>,
    /// Digests accepted before this run (a rollback forgets the run's own).
    accepted_before: usize,
}

impl<'r> Transaction<'r> {
    /// Starts a run on `root` over its current `state`.
    pub fn begin(root: &'r Root, state: State) -> Transaction<'r> {
        let accepted_before = state.accepted_unpinned.len();
        Transaction {
            root,
            state,
            touched: Vec::new(),
            accepted_before,
        }
    }

    /// The host path of the system path `abs` inside the root.
    fn resolve(&self, abs: &str) -> Result<PathBuf, TxError> {
        self.root
            .inside(abs)
            .map_err(io_err("resolving", Path::new(abs)))
    }

    fn journal(&mut self, r: Record) -> Result<(), TxError> {
        self.state.in_progress.push(r);
        state::save(self.root, &self.state)?;
        Ok(())
    }

    /// Backs up `abs` (once per run) before its first change; records the change.
    fn before_change(&mut self, abs: &str) -> Result<(), TxError> {
        if self.touched.iter().any(|t| t == abs) {
            return Ok(());
        }
        let path = self.resolve(abs)?;
        self.journal_missing_dirs(abs)?;
        let backup = if path.exists() {
            let n = self.state.records.len() + self.state.in_progress.len();
            let flat = abs.trim_start_matches('/').replace('/', "__");
            let b = format!("{}/{n:04}-{flat}", state::BACKUP_DIR);
            let bp = self.root.path(&b);
            fs::create_dir_all(bp.parent().unwrap()).map_err(io_err("creating", &bp))?;
            fs::copy(&path, &bp).map_err(io_err("backing up", &path))?;
            Some(b)
        } else {
            None
        };
        self.touched.push(abs.to_string());
        // The digest is filled in after the write.
        self.journal(Record::File {
            path: abs.to_string(),
            backup,
            sha256_after: String::new(),
        })
    }

    /// Journals each missing directory above `abs`, outermost first, before the write creates
    /// them, so undo can take away what the run added (`/etc/udev/rules.d` on a minimal image)
    /// and nothing that was there before.
    fn journal_missing_dirs(&mut self, abs: &str) -> Result<(), TxError> {
        // The directories as the write will create them: links on the way resolved inside the
        // root (`/etc/modprobe.d` may lead elsewhere in it), the missing rest as named.
        let host = self.resolve(abs)?;
        let sys = Path::new("/").join(host.strip_prefix(self.root.dir()).unwrap_or(&host));
        let mut missing = Vec::new();
        let mut dir = sys.parent();
        while let Some(d) = dir {
            if d == Path::new("/") || fs::symlink_metadata(self.root.path(d)).is_ok() {
                break;
            }
            missing.push(d.to_string_lossy().into_owned());
            dir = d.parent();
        }
        for d in missing.into_iter().rev() {
            self.journal(Record::MadeDir { path: d })?;
        }
        Ok(())
    }

    /// Records that the index files `files` of `release` did not exist before this run's
    /// depmod made them (see [`Record::DepmodIndex`]).
    pub fn record_depmod_index(
        &mut self,
        release: &str,
        files: Vec<String>,
    ) -> Result<(), TxError> {
        self.journal(Record::DepmodIndex {
            release: release.to_string(),
            files,
        })
    }

    fn after_change(&mut self, abs: &str) -> Result<(), TxError> {
        let path = self.root.path(abs);
        let sha = sha256_file(&path).map_err(io_err("hashing", &path))?;
        for r in self.state.in_progress.iter_mut().rev() {
            if let Record::File {
                path: p,
                sha256_after,
                ..
            } = r
            {
                if p == abs {
                    *sha256_after = sha;
                    break;
                }
            }
        }
        state::save(self.root, &self.state)?;
        Ok(())
    }

    /// Writes a file (system path) atomically, with a backup of what it replaces.
    pub fn write_file(
        &mut self,
        abs: &str,
        bytes: &[u8],
        mode: Option<u32>,
    ) -> Result<(), TxError> {
        self.replace_file(abs, mode, "writing", |tmp| fs::write(tmp, bytes))
    }

    /// Copies a host file into the root (system path) atomically, with a backup.
    pub fn install_file(
        &mut self,
        abs: &str,
        from: &Path,
        mode: Option<u32>,
    ) -> Result<(), TxError> {
        self.replace_file(abs, mode, "installing", |tmp| {
            fs::copy(from, tmp).map(|_| ())
        })
    }

    /// Replaces the file at `abs` (system path) atomically with what `fill` writes into a temp
    /// file beside it ([`atomic_replace`]), backed up and journalled; `action` names the step
    /// in an error.
    fn replace_file(
        &mut self,
        abs: &str,
        mode: Option<u32>,
        action: &'static str,
        fill: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<(), TxError> {
        self.before_change(abs)?;
        let path = self.resolve(abs)?;
        atomic_replace(&path, mode, fill).map_err(io_err(action, &path))?;
        self.after_change(abs)
    }

    /// Copies a whole directory tree to a system path that must not exist yet.
    pub fn create_tree(&mut self, abs: &str, from: &Path) -> Result<(), TxError> {
        let dest = self.resolve(abs)?;
        if dest.exists() {
            return Err(TxError::Io {
                action: "creating",
                path: dest,
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "already exists and pigpu did not create it",
                ),
            });
        }
        self.journal(Record::Dir {
            path: abs.to_string(),
        })?;
        copy_tree(from, &dest).map_err(io_err("copying into", &dest))
    }

    /// Journals an effect done through the host.
    pub fn record(&mut self, r: Record) -> Result<(), TxError> {
        self.journal(r)
    }

    /// Keeps this run's changes: the journal joins the records; a file pigpu changed in an
    /// earlier run keeps its first backup (the original).
    pub fn commit(mut self) -> Result<State, TxError> {
        let run = std::mem::take(&mut self.state.in_progress);
        for r in run {
            if let Record::File {
                path,
                backup,
                sha256_after,
            } = &r
            {
                let earlier = self
                    .state
                    .records
                    .iter_mut()
                    .find(|e| matches!(e, Record::File { path: p, .. } if p == path));
                if let Some(Record::File {
                    sha256_after: s, ..
                }) = earlier
                {
                    *s = sha256_after.clone();
                    if let Some(b) = backup {
                        let _ = fs::remove_file(self.root.path(b));
                    }
                    continue;
                }
            }
            self.state.records.push(r);
        }
        state::save(self.root, &self.state)?;
        Ok(self.state)
    }

    /// Reverses this run's changes, newest first. Returns what could not be reversed.
    pub fn rollback(mut self, host: &mut dyn Host, log: &Path) -> (State, Vec<String>) {
        let run = std::mem::take(&mut self.state.in_progress);
        let problems = revert_all(self.root, &run, host, log, true);
        self.state.accepted_unpinned.truncate(self.accepted_before);
        let _ = finish_state(self.root, &self.state);
        (self.state, problems)
    }
}

/// Saves the state, or removes pigpu's directory when nothing is left in it (so a run that
/// changed nothing leaves no trace).
pub fn finish_state(root: &Root, st: &State) -> Result<(), TxError> {
    if st.records.is_empty()
        && st.in_progress.is_empty()
        && st.pending_reboot.is_none()
        && st.accepted_unpinned.is_empty()
    {
        let f = root.path(state::STATE_FILE);
        let _ = fs::remove_file(&f);
        let _ = fs::remove_file(root.path(state::STATE_COPY));
        let _ = fs::remove_dir(root.path(state::BACKUP_DIR));
        let _ = fs::remove_dir(root.path("/var/lib/pigpu"));
        Ok(())
    } else {
        Ok(state::save(root, st)?)
    }
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let ft = e.file_type()?;
        let dest = to.join(e.file_name());
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path())?, &dest)?;
        } else if ft.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else if ft.is_file() {
            fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// Copies a tree (used for work copies outside any transaction).
pub fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    copy_tree(from, to)
}

/// Reverses records newest first. `strict`: files are restored even if changed since (a
/// rollback within a run); otherwise a file someone edited after pigpu is left alone, except
/// `config.txt`, from which only pigpu's block is removed.
pub fn revert_all(
    root: &Root,
    records: &[Record],
    host: &mut dyn Host,
    log: &Path,
    strict: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut depmod_for: Vec<String> = Vec::new();
    for (i, r) in records.iter().rev().enumerate() {
        if let Err(e) = revert(root, r, host, log, strict, &mut depmod_for) {
            problems.push(e);
        }
        // A test kills pigpu here, after `i + 1` reversals and before the state says so.
        crate::sys::stall::stall(format_args!("revert:{}", i + 1));
    }
    // A release whose index pigpu created has it removed instead (its DepmodIndex record).
    let created: Vec<&String> = records
        .iter()
        .filter_map(|r| match r {
            Record::DepmodIndex { release, .. } => Some(release),
            _ => None,
        })
        .collect();
    for rel in depmod_for.iter().filter(|r| !created.contains(r)) {
        if let Err(e) = depmod(host.programs(), root.dir(), rel, log) {
            problems.push(format!("depmod for {rel}: {e}"));
        }
    }
    problems
}

fn host_msg(what: &str, e: HostError) -> String {
    format!("{what}: {e}")
}

/// Reverses one record. A module install only notes its release in `depmod` (its index is
/// rebuilt once, after every record); the rest is undone here.
fn revert(
    root: &Root,
    r: &Record,
    host: &mut dyn Host,
    log: &Path,
    strict: bool,
    depmod: &mut Vec<String>,
) -> Result<(), String> {
    match r {
        Record::File {
            path,
            backup,
            sha256_after,
        } => revert_file(root, path, backup.as_deref(), sha256_after, strict),
        Record::Dir { path } => match fs::remove_dir_all(root.path(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {path}: {e}")),
        },
        Record::Packages { names } => host
            .apt_mark_auto(root, names, log)
            .map_err(|e| host_msg("apt-mark auto", e)),
        Record::Hold { names } => host
            .hold(root, names, false, log)
            .map_err(|e| host_msg("apt-mark unhold", e)),
        Record::Dkms { module, version } => host
            .dkms(
                root,
                &[
                    "remove".to_string(),
                    format!("{module}/{version}"),
                    "--all".to_string(),
                ],
                log,
            )
            .map_err(|e| host_msg("dkms remove", e)),
        Record::Userspace { uninstall, .. } => uninstall_userspace(root, uninstall, host, log),
        Record::Modules { release, .. } => {
            if !depmod.contains(release) {
                depmod.push(release.clone());
            }
            Ok(())
        }
        Record::DepmodIndex { release, files } => remove_depmod_index(root, release, files),
        Record::MadeDir { path } => remove_made_dir(root, path),
    }
}

/// Puts a file pigpu wrote back as it was: the original from its backup, or no file where
/// pigpu created it. Outside a rollback (`strict` false) a file changed since pigpu wrote it
/// is left instead ([`edited_since`]).
fn revert_file(
    root: &Root,
    path: &str,
    backup: Option<&str>,
    sha256_after: &str,
    strict: bool,
) -> Result<(), String> {
    let p = root.inside(path).map_err(|e| format!("{path}: {e}"))?;
    let now = sha256_file(&p).ok();
    let unchanged = now.as_deref() == Some(sha256_after) || sha256_after.is_empty();
    if !strict && !unchanged {
        return Err(edited_since(&p, path, backup));
    }
    match backup {
        Some(b) => restore_backup(root, &p, path, b, unchanged),
        None => match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing {path}: {e}")),
        },
    }
}

/// The problem of a file edited after pigpu changed it (at `p`, system path `path`), naming
/// the original's `backup`: the file is left as it is, only `config.txt` loses pigpu's block.
fn edited_since(p: &Path, path: &str, backup: Option<&str>) -> String {
    let kept = backup
        .map(|b| format!(" (the original is kept at {b})"))
        .unwrap_or_default();
    if !path.ends_with("config.txt") {
        return format!("{path} was changed after pigpu wrote it; left as it is{kept}");
    }
    if let Ok(bytes) = fs::read(p) {
        let cleaned = super::bootconfig::set_block_bytes(&bytes, &[]);
        if let Err(e) = atomic_write(p, &cleaned, None) {
            return format!("{path}: {e}");
        }
    }
    format!("{path} was edited after pigpu changed it: only pigpu's block was removed{kept}")
}

/// Copies the original back from backup `b` over the file at `p` (system path `path`) and
/// removes the backup; nothing to do where an earlier rollback restored it already or the
/// write never changed it (`unchanged`: the file is as pigpu left it).
fn restore_backup(
    root: &Root,
    p: &Path,
    path: &str,
    b: &str,
    unchanged: bool,
) -> Result<(), String> {
    let bp = root.path(b);
    let current = fs::read(p).ok();
    if !bp.exists() && !unchanged {
        // An earlier rollback restored it and was stopped before it could record that:
        // nothing left to do.
        return Ok(());
    }
    if current.is_some() && fs::read(&bp).ok() == current {
        // Never changed (the write failed), or restored already.
        let _ = fs::remove_file(&bp);
        return Ok(());
    }
    atomic_replace(
        p,
        fs::metadata(&bp)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777),
        |tmp| fs::copy(&bp, tmp).map(|_| ()),
    )
    .map_err(|e| format!("restoring {path} from {b}: {e}"))?;
    let _ = fs::remove_file(&bp);
    Ok(())
}

/// Runs NVIDIA's uninstaller (`uninstall`, its argv) in the target; a problem when it is gone.
fn uninstall_userspace(
    root: &Root,
    uninstall: &[String],
    host: &mut dyn Host,
    log: &Path,
) -> Result<(), String> {
    if uninstall.first().is_some_and(|p| root.exists(p)) {
        host.run_in_target(root, uninstall, log)
            .map_err(|e| host_msg("uninstalling NVIDIA userspace", e))
    } else {
        Err(format!(
            "NVIDIA's uninstaller {} is gone; remove the userspace by hand",
            uninstall.join(" ")
        ))
    }
}

/// Removes the module index `files` that pigpu's depmod created for `release`.
fn remove_depmod_index(root: &Root, release: &str, files: &[String]) -> Result<(), String> {
    for f in files {
        let p = root.path(format!("/lib/modules/{release}/{f}"));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", p.display())),
        }
    }
    Ok(())
}

/// Removes a directory pigpu made, only when empty: anything someone else put there since
/// keeps it.
fn remove_made_dir(root: &Root, path: &str) -> Result<(), String> {
    match fs::remove_dir(root.path(path)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
            log::info!("{path} is left: it holds files pigpu did not put there");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            log::info!("{path} is left: it is no longer the directory pigpu made");
            Ok(())
        }
        Err(e) => Err(format!("removing {path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::recording::RecordingHost;

    #[test]
    fn two_runs_keep_the_first_backup_and_undo_restores_the_original() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let f = root.path("/etc/x.conf");
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, "original\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();

        let mut tx = Transaction::begin(&root, State::default());
        tx.write_file("/etc/x.conf", b"run one\n", None).unwrap();
        tx.write_file("/etc/new.conf", b"made by pigpu\n", None)
            .unwrap();
        let st = tx.commit().unwrap();
        // The mode of the replaced file is kept.
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut tx = Transaction::begin(&root, st);
        tx.write_file("/etc/x.conf", b"run two\n", None).unwrap();
        let st = tx.commit().unwrap();
        let files: Vec<&Record> = st
            .records
            .iter()
            .filter(|r| matches!(r, Record::File { path, .. } if path == "/etc/x.conf"))
            .collect();
        assert_eq!(files.len(), 1, "{:?}", st.records);

        // A failed third run is rolled back to run two's content.
        let mut tx = Transaction::begin(&root, st.clone());
        tx.write_file("/etc/x.conf", b"run three\n", None).unwrap();
        let mut host = RecordingHost::default();
        let (st2, problems) = tx.rollback(&mut host, &root.path("/log"));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(st2.records, st.records);
        assert_eq!(fs::read_to_string(&f).unwrap(), "run two\n");

        // Undo: the original, byte for byte; pigpu's own file gone.
        let problems = revert_all(&root, &st.records, &mut host, &root.path("/log"), false);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(fs::read_to_string(&f).unwrap(), "original\n");
        assert!(!root.path("/etc/new.conf").exists());
    }

    #[test]
    fn rollback_of_a_file_never_changed_or_restored_already_is_no_problem() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let f = root.path("/boot/config.txt");
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, "original\n").unwrap();
        let mut host = RecordingHost::default();
        // The write failed after the backup was taken (an unwritable file): the file is still the
        // original, so there is nothing to restore and nothing to report.
        let mut tx = Transaction::begin(&root, State::default());
        tx.before_change("/boot/config.txt").unwrap();
        let (_, problems) = tx.rollback(&mut host, &root.path("/log"));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            !root.path(state::BACKUP_DIR).exists()
                || root.list_dir(state::BACKUP_DIR).unwrap().is_empty()
        );
        // A rollback killed after restoring the file and removing its backup, before saving the
        // state: the next run's rollback finds the original in place and no backup.
        let mut tx = Transaction::begin(&root, State::default());
        tx.write_file("/boot/config.txt", b"pigpu\n", None).unwrap();
        let st = tx.state.clone();
        let Some(Record::File {
            backup: Some(b), ..
        }) = st.in_progress.first()
        else {
            panic!("{st:?}")
        };
        fs::copy(root.path(b), &f).unwrap();
        fs::remove_file(root.path(b)).unwrap();
        let (_, problems) = Transaction::begin(&root, st).rollback(&mut host, &root.path("/log"));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(fs::read_to_string(&f).unwrap(), "original\n");
    }

    /// A failed run of every kind of change is reversed newest first: the host's calls in that
    /// order, each file and directory put back, and the one change that cannot be reversed (a
    /// vanished uninstaller) named while the rest still goes on.
    #[test]
    fn rollback_reverses_every_kind_of_change_newest_first() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        fs::create_dir_all(root.path("/etc")).unwrap();
        fs::write(root.path("/etc/old.conf"), "original\n").unwrap();
        let src = t.path().join("src-tree");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "x").unwrap();
        let index = root.path("/lib/modules/6.12.1/modules.dep");
        fs::create_dir_all(index.parent().unwrap()).unwrap();
        fs::create_dir_all(root.path("/srv/kept")).unwrap();
        fs::create_dir_all(root.path("/var/lib/dkms/nvidia/580.95.05")).unwrap();

        let mut tx = Transaction::begin(&root, State::default());
        tx.write_file("/etc/new.d/new.conf", b"new\n", None)
            .unwrap();
        tx.write_file("/etc/old.conf", b"pigpu\n", None).unwrap();
        tx.create_tree("/opt/tree", &src).unwrap();
        tx.record(Record::MadeDir {
            path: "/srv/kept".into(),
        })
        .unwrap();
        let names = |n: &str| vec![n.to_string()];
        tx.record(Record::Packages {
            names: names("dkms"),
        })
        .unwrap();
        tx.record(Record::Hold {
            names: names("linux-image"),
        })
        .unwrap();
        tx.record(Record::Dkms {
            module: "nvidia".into(),
            version: "580.95.05".into(),
        })
        .unwrap();
        tx.record(Record::Userspace {
            version: "580.95.05".into(),
            uninstall: vec!["/usr/bin/nvidia-uninstall".into(), "-s".into()],
        })
        .unwrap();
        tx.record(Record::Modules {
            driver: "580.95.05".into(),
            release: "6.12.1".into(),
            files: vec![],
        })
        .unwrap();
        fs::write(&index, "").unwrap();
        tx.record_depmod_index("6.12.1", vec!["modules.dep".into()])
            .unwrap();
        // Someone put a file into a directory pigpu made: it stays.
        fs::write(root.path("/srv/kept/theirs"), "").unwrap();

        let mut host = RecordingHost::default();
        let (st, problems) = tx.rollback(&mut host, &root.path("/log"));
        assert_eq!(
            host.calls,
            [
                "dkms remove nvidia/580.95.05 --all",
                "apt-mark unhold linux-image",
                "apt-mark auto dkms",
            ]
        );
        assert_eq!(
            problems,
            ["NVIDIA's uninstaller /usr/bin/nvidia-uninstall -s is gone; remove the userspace by hand"]
        );
        assert!(st.in_progress.is_empty() && st.records.is_empty(), "{st:?}");
        assert!(!index.exists());
        assert!(!root.path("/var/lib/dkms/nvidia/580.95.05").exists());
        assert!(!root.path("/opt/tree").exists());
        assert!(root.path("/srv/kept/theirs").exists());
        assert_eq!(
            fs::read_to_string(root.path("/etc/old.conf")).unwrap(),
            "original\n"
        );
        assert!(!root.path("/etc/new.d").exists());
        assert!(
            !root.path(state::BACKUP_DIR).exists()
                || root.list_dir(state::BACKUP_DIR).unwrap().is_empty()
        );
    }

    /// Undo of files changed since pigpu wrote them: `config.txt` loses only pigpu's block, any
    /// other file is left; both problems name the backup of the original. An uninstaller that
    /// is there runs; a directory pigpu made that is now a file stays.
    #[test]
    fn undo_of_edited_files_and_the_userspace() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let cfg = root.path("/boot/firmware/config.txt");
        fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        fs::create_dir_all(root.path("/etc")).unwrap();
        fs::write(&cfg, "[all]\narm_64bit=1\n").unwrap();
        fs::write(root.path("/etc/m.conf"), "original\n").unwrap();
        let uninstaller = root.path("/usr/bin/nvidia-uninstall");
        fs::create_dir_all(uninstaller.parent().unwrap()).unwrap();
        fs::write(
            &uninstaller,
            "#!/bin/sh\necho \"$@\" > \"$DESTDIR/uninstalled\"\n",
        )
        .unwrap();
        fs::set_permissions(&uninstaller, fs::Permissions::from_mode(0o755)).unwrap();

        let mut tx = Transaction::begin(&root, State::default());
        let with_block = super::super::bootconfig::set_block_bytes(
            b"[all]\narm_64bit=1\n",
            &["dtparam=pciex1".to_string()],
        );
        tx.write_file("/boot/firmware/config.txt", &with_block, None)
            .unwrap();
        tx.write_file("/etc/m.conf", b"pigpu\n", None).unwrap();
        tx.record(Record::MadeDir {
            path: "/srv/gone".into(),
        })
        .unwrap();
        tx.record(Record::Userspace {
            version: "580.95.05".into(),
            uninstall: vec!["/usr/bin/nvidia-uninstall".into(), "-s".into()],
        })
        .unwrap();
        let st = tx.commit().unwrap();
        fs::create_dir_all(root.path("/srv")).unwrap();
        fs::write(root.path("/srv/gone"), "a file now").unwrap();
        let mut edited = fs::read(&cfg).unwrap();
        edited.extend_from_slice(b"# mine\n");
        fs::write(&cfg, &edited).unwrap();
        fs::write(root.path("/etc/m.conf"), "by hand\n").unwrap();

        let mut host = RecordingHost::default();
        let problems = revert_all(&root, &st.records, &mut host, &root.path("/log"), false);
        assert_eq!(host.calls, ["run /usr/bin/nvidia-uninstall -s"]);
        assert_eq!(
            fs::read_to_string(root.path("/uninstalled")).unwrap(),
            "-s\n"
        );
        let backup = |n: &str| format!("{}/{n}", state::BACKUP_DIR);
        assert_eq!(
            problems,
            [
                format!(
                    "/etc/m.conf was changed after pigpu wrote it; left as it is (the original is kept at {})",
                    backup("0001-etc__m.conf")
                ),
                format!(
                    "/boot/firmware/config.txt was edited after pigpu changed it: only pigpu's block was removed (the original is kept at {})",
                    backup("0000-boot__firmware__config.txt")
                ),
            ]
        );
        let cfg_now = fs::read_to_string(&cfg).unwrap();
        assert!(
            cfg_now.starts_with("[all]\narm_64bit=1\n") && cfg_now.ends_with("# mine\n"),
            "{cfg_now}"
        );
        assert!(!cfg_now.contains("pciex1"), "{cfg_now}");
        assert_eq!(
            fs::read_to_string(root.path("/etc/m.conf")).unwrap(),
            "by hand\n"
        );
        assert!(root.path("/srv/gone").is_file());
        assert!(root.exists(backup("0000-boot__firmware__config.txt")));
    }

    #[test]
    fn undo_leaves_a_file_edited_after_pigpu_alone() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let mut tx = Transaction::begin(&root, State::default());
        tx.write_file("/etc/y.conf", b"pigpu\n", None).unwrap();
        let st = tx.commit().unwrap();
        fs::write(root.path("/etc/y.conf"), "edited by hand\n").unwrap();
        let mut host = RecordingHost::default();
        let problems = revert_all(&root, &st.records, &mut host, &root.path("/log"), false);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("/etc/y.conf was changed after pigpu wrote it"),
            "{problems:?}"
        );
        assert_eq!(
            fs::read_to_string(root.path("/etc/y.conf")).unwrap(),
            "edited by hand\n"
        );
    }
}
