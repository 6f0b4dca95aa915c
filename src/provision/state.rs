//! pigpu's record on the target (`/var/lib/pigpu/state.json`): every file it wrote (with the
//! original's backup and the digest it left), every package, hold, DKMS registration and
//! userspace install, a reboot it is waiting for, and digests it accepted without a pin. Re-runs
//! resume from it, `--undo` reverses it, and a run that died half-way is rolled back from its
//! `in_progress` journal before anything else happens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sys::download::sha256_file;
use crate::sys::root::atomic_write;
use crate::sys::Root;

/// The state file, as a system path.
pub const STATE_FILE: &str = "/var/lib/pigpu/state.json";
/// A second copy of the state file, written after it: a damaged (or moved) state file is
/// recovered from it, so pigpu never forgets what it installed.
pub const STATE_COPY: &str = "/var/lib/pigpu/state.json.copy";
/// Backups of files pigpu changed.
pub const BACKUP_DIR: &str = "/var/lib/pigpu/backup";
/// Work space: unpacked and patched sources, builds.
pub const WORK_DIR: &str = "/var/lib/pigpu/work";
/// Build and install logs.
pub const LOG_DIR: &str = "/var/log/pigpu";

/// Why the state file could not be read or written.
#[derive(Debug, Error)]
pub enum StateError {
    /// Reading or writing the file failed.
    #[error("state file {}: {source}", path.display())]
    Io {
        /// The state file (or its copy).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON pigpu writes.
    #[error("state file {}: not pigpu state JSON: {message}", path.display())]
    Parse {
        /// The state file (or its copy).
        path: PathBuf,
        /// The JSON parser's complaint.
        message: String,
    },
}

/// One thing pigpu did, enough to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Record {
    /// A file written: `backup` holds the original (none: pigpu created it).
    File {
        /// The file, as a system path.
        path: String,
        /// Where the original was copied (under `/var/lib/pigpu/backup`).
        backup: Option<String>,
        /// sha256 of what pigpu wrote (hex; empty until written): undo leaves a file changed since
        /// alone.
        sha256_after: String,
    },
    /// A directory tree pigpu created whole.
    Dir {
        /// The tree's system path.
        path: String,
    },
    /// Packages pigpu had apt install.
    Packages {
        /// Debian package names.
        names: Vec<String>,
    },
    /// Packages pigpu put on hold.
    Hold {
        /// Debian package names.
        names: Vec<String>,
    },
    /// A DKMS registration.
    Dkms {
        /// DKMS module name (`nvidia`).
        module: String,
        /// Registered version (the driver version).
        version: String,
    },
    /// NVIDIA's userspace, with the argv that uninstalls it.
    Userspace {
        /// The driver version installed.
        version: String,
        /// Command line that uninstalls it.
        uninstall: Vec<String>,
    },
    /// Kernel modules installed for a release (their files are `File` records too).
    Modules {
        /// The driver version the modules are.
        driver: String,
        /// The kernel release they are installed for.
        release: String,
        /// System paths of the installed module files.
        files: Vec<String>,
    },
    /// A directory pigpu created for a file it wrote (`/etc/udev/rules.d` on a minimal image);
    /// undo removes it when it is empty again.
    MadeDir {
        /// The directory's system path.
        path: String,
    },
    /// Module index files (`modules.dep`, `modules.alias`, …) of a release that pigpu's depmod
    /// created where there were none: undo removes them instead of running depmod again.
    DepmodIndex {
        /// The kernel release.
        release: String,
        /// System paths of the index files created.
        files: Vec<String>,
    },
}

/// A reboot-needing step that ran; the next run continues after a reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReboot {
    /// Id of the step that ran.
    pub step: String,
    /// `/proc/sys/kernel/random/boot_id` when it ran (a different one means a reboot happened).
    pub boot_id: Option<String>,
}

/// A digest recorded for an artifact that had no pin (`--accept-unpinned`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// What the artifact is.
    pub what: String,
    /// Where it was fetched from.
    pub location: String,
    /// sha256 of the bytes accepted (hex).
    pub digest: String,
}

/// How the modules survive kernel updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Persist {
    /// Register the sources with DKMS (installs `dkms` when missing); the default.
    Dkms,
    /// Hold the kernel packages so apt does not replace the kernel the modules were built for.
    Hold,
    /// Neither: rebuild by running `pigpu setup` again after a kernel update.
    None,
}

/// The choices of the first run, kept so later runs (after a reboot, or a plain rerun) neither
/// ask again nor quietly change them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choices {
    /// PCIe generation chosen for the external connector.
    pub pcie_gen: u32,
    /// How the modules survive kernel updates.
    pub persist: Persist,
    /// `apt-mark hold` the kernel packages (`--no-kernel-hold` turns it off). State files from
    /// before this field was kept read as on, the default then too.
    #[serde(default = "on")]
    pub hold_kernel: bool,
    /// Pin Debian's NVIDIA packages to priority -1 (`--no-apt-pin` turns it off).
    #[serde(default = "on")]
    pub apt_pin: bool,
}

fn on() -> bool {
    true
}

/// pigpu's record of a root (`/var/lib/pigpu/state.json`): choices, what was done, what is pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The first run's choices; `None` before any run.
    #[serde(default)]
    pub choices: Option<Choices>,
    /// Driver version installed; `None` when none is.
    #[serde(default)]
    pub driver: Option<String>,
    /// Finished changes, oldest first: what undo reverses.
    #[serde(default)]
    pub records: Vec<Record>,
    /// Changes of a run that has not finished (rolled back if pigpu died).
    #[serde(default)]
    pub in_progress: Vec<Record>,
    /// A reboot-needing step that ran, until the reboot is seen.
    #[serde(default)]
    pub pending_reboot: Option<PendingReboot>,
    /// Digests taken for unpinned artifacts, so later runs check against them.
    #[serde(default)]
    pub accepted_unpinned: Vec<Accepted>,
}

/// Reads the state of `root`, falling back to the copy when the main file is missing or corrupt;
/// empty when there is neither.
pub fn load(root: &Root) -> Result<State, StateError> {
    let main = load_file(root, STATE_FILE);
    if matches!(main, Ok(Some(_))) {
        return main.map(Option::unwrap_or_default);
    }
    match (main, load_file(root, STATE_COPY)) {
        (Ok(main), Ok(None)) => Ok(main.unwrap_or_default()),
        (main, Ok(Some(copy))) => {
            let why = match main {
                Err(e) => e.to_string(),
                _ => format!("{} is missing", root.path(STATE_FILE).display()),
            };
            log::warn!(
                "{why}; using its copy {} (the state as of the last change)",
                root.path(STATE_COPY).display()
            );
            Ok(copy)
        }
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e),
    }
}

/// One state file: `Ok(None)` when it is missing.
fn load_file(root: &Root, abs: &str) -> Result<Option<State>, StateError> {
    let path = root.path(abs);
    match root.read_bytes(abs) {
        Ok(Some(bytes)) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Parse {
                    path,
                    message: e.to_string(),
                })
        }
        Ok(None) => Ok(None),
        Err(source) => Err(StateError::Io { path, source }),
    }
}

/// Writes `state` atomically, main file and copy.
pub fn save(root: &Root, state: &State) -> Result<(), StateError> {
    let path = root.path(STATE_FILE);
    let io = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_string_pretty(state).expect("state serializes");
    atomic_write(&path, text.as_bytes(), Some(0o644)).map_err(io)?;
    let copy = root.path(STATE_COPY);
    atomic_write(&copy, text.as_bytes(), Some(0o644)).map_err(|source| StateError::Io {
        path: copy.clone(),
        source,
    })
}

impl State {
    /// Module files pigpu installed for `driver` on `release` (system paths).
    pub fn modules_for(&self, driver: &str, release: &str) -> Vec<String> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Modules {
                    driver: d,
                    release: r,
                    files,
                } if d == driver && r == release => Some(files.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The `File` record for a path.
    fn file_record(&self, path: &str) -> Option<&Record> {
        self.records
            .iter()
            .rev()
            .find(|r| matches!(r, Record::File { path: p, .. } if p == path))
    }

    /// Whether every listed file still has the digest pigpu left.
    pub fn files_unchanged(&self, root: &Root, paths: &[String]) -> bool {
        paths.iter().all(|p| match self.file_record(p) {
            Some(Record::File { sha256_after, .. }) => {
                sha256_file(&root.path(p)).is_ok_and(|s| s == *sha256_after)
            }
            _ => false,
        })
    }

    /// Whether any finished change matches `pred`.
    pub fn has(&self, pred: impl Fn(&Record) -> bool) -> bool {
        self.records.iter().any(pred)
    }
}
