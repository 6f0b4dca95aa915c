//! Carries out a [`Plan`]: each step's effects go through `sys` (commands, downloads) and the
//! [`Host`], and every file change through a [`Transaction`]. A failed step rolls back the whole
//! run; a step that needs a reboot ends the run (on a running system) with the state saying where
//! to resume.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::files;
use super::gittree;
use super::host::{Host, HostError};
use super::kbuild::{
    apply_patch, collect_modules, first_error, kernel_trees, make_command, make_var, sanitize_tree,
    single_top_dir, KbuildError,
};
use super::manifest::{self, Artifact, Manifest};
use super::plan::{Op, Plan, Step};
use super::probe::{self, Probe};
use super::state::{self, Accepted, PendingReboot, Record, State};
use super::transaction::{self, Transaction, TxError};
use crate::sys::command::{depmod, Cmd, CommandError};
use crate::sys::download::{DownloadError, Downloader};
use crate::sys::Root;

/// Why one step of the plan failed.
#[derive(Debug, Error)]
pub enum StepError {
    /// A download failed or did not match its pin.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// An unpacked source or patched tree is not the pinned git tree.
    #[error("{what}: git tree {actual} is not the pinned tree {expected} (nothing was installed)")]
    Tree {
        /// What was checked (the driver source, the patched tree).
        what: String,
        /// The pinned git tree id.
        expected: String,
        /// The tree id computed from the files.
        actual: String,
    },
    /// The module build failed.
    #[error("build failed: {first_error}\n  full log: {}", log.display())]
    Build {
        /// The first compiler or make error line in the log.
        first_error: String,
        /// The full build log.
        log: PathBuf,
    },
    /// An external command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A host operation (apt, dkms, module loading) failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// Journaling or undoing a change failed.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// Finding or checking the kernel trees failed.
    #[error(transparent)]
    Kbuild(#[from] KbuildError),
    /// Anything else, in words (a missing file, an unexpected tree).
    #[error("{0}")]
    Other(String),
}

/// Why a run of the plan stopped.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error(
        "step {id} failed; this run's changes were rolled back{}",
        problems_text(problems)
    )]
    /// A step failed; what this run changed was rolled back.
    Step {
        /// The step's id (`build`, `install-modules`, …).
        id: String,
        /// Why it failed.
        #[source]
        source: Box<StepError>,
        /// Changes the rollback could not undo, each in words.
        problems: Vec<String>,
    },
    /// A reboot that pigpu asked for has not happened: the plan's `blocked` message.
    #[error("{0}")]
    Blocked(String),
}

fn problems_text(p: &[String]) -> String {
    if p.is_empty() {
        String::new()
    } else {
        format!(", except: {}", p.join("; "))
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every step ran.
    Complete {
        /// Ids of the steps that ran, in order.
        ran: Vec<String>,
    },
    /// A step that needs a reboot ran; the next run continues.
    Reboot {
        /// Ids of the steps that ran, in order.
        ran: Vec<String>,
        /// The step that needs the reboot.
        step: String,
    },
}

/// What a run reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'e> {
    /// Step `index` (from 1) of `count` begins.
    Step {
        /// Its position, from 1.
        index: usize,
        /// Steps in the plan.
        count: usize,
        /// The step's id.
        id: &'e str,
        /// What it does, in words.
        action: &'e str,
    },
    /// A line about the step in progress: a digest, a tree id, a patch applied, a warning.
    Note(String),
    /// A long command is running (a build, NVIDIA's installer): what it is doing now.
    Busy(String),
    /// The long command ended.
    Idle,
}

/// What the executor works with.
pub struct Exec<'a> {
    /// The root the plan changes (`/` on the live system).
    pub root: &'a Root,
    /// The driver manifest the plan was made from.
    pub manifest: &'a Manifest,
    /// Runs apt, dkms, depmod, module loading and NVIDIA's installer.
    pub host: &'a mut dyn Host,
    /// Fetches and caches the pinned artifacts.
    pub downloader: &'a Downloader,
    /// Where progress goes: the command layer renders it (library code never prints).
    pub events: &'a dyn Fn(Event),
    /// The answered choices, remembered in the state for later runs.
    pub choices: state::Choices,
}

fn other(msg: impl Into<String>) -> StepError {
    StepError::Other(msg.into())
}

/// The files `depmod` writes into `/lib/modules/<release>` (kmod 30–34).
const DEPMOD_INDEX: &[&str] = &[
    "modules.alias",
    "modules.alias.bin",
    "modules.builtin.alias.bin",
    "modules.builtin.bin",
    "modules.dep",
    "modules.dep.bin",
    "modules.devname",
    "modules.softdep",
    "modules.symbols",
    "modules.symbols.bin",
    "modules.weakdep",
];

impl Exec<'_> {
    fn note(&self, line: String) {
        (self.events)(Event::Note(line));
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.root.path(format!("{}/{name}", state::LOG_DIR))
    }

    fn cached(&self, a: &Artifact) -> Result<PathBuf, StepError> {
        self.downloader
            .cached(&a.file, a.sha256.as_deref())
            .map(|f| f.path)
            .ok_or_else(|| {
                other(format!(
                    "{} is not in the cache {}; the fetch step brings it",
                    a.what,
                    self.downloader.cache_dir().display()
                ))
            })
    }

    /// Runs the plan.
    pub fn run(&mut self, plan: &Plan, probe: &Probe) -> Result<RunEnd, ExecError> {
        if let Some(b) = &plan.blocked {
            return Err(ExecError::Blocked(b.clone()));
        }
        let mut st = probe.state.clone();
        st.pending_reboot = None;
        st.driver = Some(self.manifest.driver.clone());
        st.choices = Some(self.choices.clone());
        let mut tx = Transaction::begin(self.root, st);
        let mut ran = Vec::new();
        let n = plan.steps.len();
        for (i, step) in plan.steps.iter().enumerate() {
            (self.events)(Event::Step {
                index: i + 1,
                count: n,
                id: step.id,
                action: &step.action,
            });
            if let Err(e) = self.step(step, &mut tx) {
                // The work tree (unpacked, patched, built) is only this run's: it goes too.
                self.clean_work();
                let log = self.log_path("rollback.log");
                let (_, problems) = tx.rollback(self.host, &log);
                return Err(ExecError::Step {
                    id: step.id.to_string(),
                    source: Box::new(e),
                    problems,
                });
            }
            ran.push(step.id.to_string());
            if step.reboot && probe.running_kernel.is_some() {
                tx.state.pending_reboot = Some(PendingReboot {
                    step: step.id.to_string(),
                    boot_id: probe.boot_id.clone(),
                });
                let st = tx.commit().map_err(|e| ExecError::Step {
                    id: step.id.to_string(),
                    source: Box::new(e.into()),
                    problems: vec![],
                })?;
                let _ = st;
                self.clean_work();
                return Ok(RunEnd::Reboot {
                    ran,
                    step: step.id.to_string(),
                });
            }
        }
        // A test kills pigpu here: every step done and journaled, nothing committed.
        crate::sys::stall::stall(format_args!("commit"));
        let st = tx.commit().map_err(|e| ExecError::Step {
            id: "commit".to_string(),
            source: Box::new(e.into()),
            problems: vec![],
        })?;
        let _ = transaction::finish_state(self.root, &st);
        self.clean_work();
        Ok(RunEnd::Complete { ran })
    }

    /// The unpacked source and the build objects (about 1 GiB for NVIDIA's tree) are not needed
    /// after a successful run: DKMS has its own copy, and a rebuild starts from the cached archive.
    fn clean_work(&self) {
        let _ = fs::remove_dir_all(self.root.path(super::plan::work_dir(self.manifest)));
        let _ = fs::remove_dir(self.root.path(state::WORK_DIR));
    }

    fn step(&mut self, step: &Step, tx: &mut Transaction) -> Result<(), StepError> {
        let m = self.manifest;
        match &step.op {
            Op::Fetch { artifacts } => self.fetch(artifacts, tx),
            Op::AptInstall { packages } => {
                let log = self.log_path("apt.log");
                tx.record(Record::Packages {
                    names: packages.clone(),
                })?;
                self.host.apt_install(self.root, packages, &log)?;
                Ok(())
            }
            Op::Kernel4k {
                packages,
                config,
                text,
            } => {
                let log = self.log_path("apt.log");
                tx.record(Record::Packages {
                    names: packages.clone(),
                })?;
                self.host.apt_install(self.root, packages, &log)?;
                let bytes = config_bytes(self.root, config, text);
                tx.write_file(config, &bytes, None)?;
                Ok(())
            }
            Op::Prepare { work, release } => self.prepare(work, release, tx),
            Op::Build {
                work,
                release,
                jobs,
                log,
            } => self.build(work, release, *jobs, log),
            Op::InstallModules { work, release, log } => {
                self.install_modules(work, release, log, tx)
            }
            Op::Dkms { work } => {
                let dest = format!("/usr/src/nvidia-{}", m.driver);
                tx.create_tree(&dest, &self.root.path(format!("{work}/src")))?;
                tx.write_file(
                    &format!("{dest}/dkms.conf"),
                    files::dkms_conf(m).as_bytes(),
                    Some(0o644),
                )?;
                let args: Vec<String> = ["add", "-m", "nvidia", "-v", &m.driver]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                tx.record(Record::Dkms {
                    module: "nvidia".to_string(),
                    version: m.driver.clone(),
                })?;
                self.host
                    .dkms(self.root, &args, &self.log_path("dkms.log"))?;
                Ok(())
            }
            Op::Hold { packages } => {
                tx.record(Record::Hold {
                    names: packages.clone(),
                })?;
                self.host
                    .hold(self.root, packages, true, &self.log_path("apt.log"))?;
                Ok(())
            }
            Op::Userspace { args } => self.userspace(args, tx),
            Op::WriteFiles { files } => {
                for (path, text) in files {
                    tx.write_file(path, text.as_bytes(), Some(0o644))?;
                }
                Ok(())
            }
            Op::BootConfig { path, text } => {
                let bytes = config_bytes(self.root, path, text);
                Ok(tx.write_file(path, &bytes, None)?)
            }
            Op::LoadModules { names } => Ok(self.host.load_modules(self.root, names)?),
        }
    }

    fn fetch(&mut self, artifacts: &[Artifact], tx: &mut Transaction) -> Result<(), StepError> {
        let m = self.manifest;
        let mut got = BTreeMap::new();
        let mut cached_files: Vec<String> = Vec::new();
        // Everything is downloaded and checked before anything is unpacked or installed.
        for a in artifacts {
            let f = self
                .downloader
                .fetch(&a.what, &a.location, &a.file, a.sha256.as_deref())?;
            let how = if f.transferred == 0 {
                "cached".to_string()
            } else if f.resumed {
                format!("resumed, {} bytes", f.transferred)
            } else {
                format!("{} bytes", f.transferred)
            };
            self.note(format!("{} ({how}) sha256 {}", a.what, f.sha256));
            if a.sha256.is_none()
                && !(a.what.starts_with("patch") && m.series.result_tree.is_some())
                && !(a.what.starts_with("module source") && m.source.tree.is_some())
            {
                self.note(format!(
                    "warning: {} has no pin; accepted with --accept-unpinned, sha256 {} recorded",
                    a.what, f.sha256
                ));
                tx.state.accepted_unpinned.push(Accepted {
                    what: a.what.clone(),
                    location: a.location.clone(),
                    digest: format!("sha256:{}", f.sha256),
                });
            }
            if f.transferred == 0 {
                cached_files.push(a.file.clone());
            }
            got.insert(a.file.clone(), f.path);
        }
        // Unpack the source and check its tree. A bad copy that came from the cache is removed
        // and downloaded once more (a captive portal's page must not block setup for good).
        let src_art = m.source_artifact();
        let Some(archive) = got.get(&src_art.file).cloned() else {
            return Ok(());
        };
        let work = self.root.path(super::plan::work_dir(m));
        let pristine = work.join("pristine");
        let pin = m.source.tree.clone();
        let what = src_art.what.clone();
        let checked = |this: &Self, archive: &Path| -> Result<(PathBuf, String), StepError> {
            let (top, tree) = this.unpack(archive, &pristine)?;
            match &pin {
                Some(want) if *want != tree => {
                    let _ = fs::remove_dir_all(&pristine);
                    Err(StepError::Tree {
                        what: what.clone(),
                        expected: want.clone(),
                        actual: tree,
                    })
                }
                _ => Ok((top, tree)),
            }
        };
        let (top, tree) = match checked(self, &archive) {
            Ok(r) => r,
            Err(e) if src_art.sha256.is_none() && cached_files.contains(&src_art.file) => {
                let _ = fs::remove_file(&archive);
                self.note(format!(
                    "the cached {} is not a good copy ({e}); removed it, downloading again",
                    archive.display()
                ));
                let again = self
                    .downloader
                    .fetch(&src_art.what, &src_art.location, &src_art.file, None)
                    .map_err(|d| {
                        other(format!(
                            "the cached copy {} of {} was bad ({e}) and was removed; downloading it again failed: {d}",
                            archive.display(),
                            src_art.what
                        ))
                    })?;
                checked(self, &again.path)?
            }
            Err(e) => return Err(e),
        };
        match &m.source.tree {
            Some(_) => self.note(format!(
                "{} unpacked, tree {tree} matches the pin",
                src_art.what
            )),
            None => {
                self.note(format!(
                    "{} unpacked, tree {tree} (no tree pin)",
                    src_art.what
                ));
                tx.state.accepted_unpinned.push(Accepted {
                    what: format!("{} (unpacked)", src_art.what),
                    location: src_art.location,
                    digest: format!("git-tree:{tree}"),
                });
            }
        }
        fs::write(
            work.join("pristine.top"),
            top.strip_prefix(&pristine)
                .unwrap_or(Path::new(""))
                .to_string_lossy()
                .as_bytes(),
        )
        .map_err(|e| other(format!("{}: {e}", work.display())))?;
        Ok(())
    }

    /// Unpacks `archive` into `pristine` (emptied first) as plain files: no owners or modes
    /// from the archive, then checked and normalised (see [`sanitize_tree`]). Returns the top
    /// directory and its git tree id. Fails when the archive is damaged or holds special files.
    fn unpack(&self, archive: &Path, pristine: &Path) -> Result<(PathBuf, String), StepError> {
        let _ = fs::remove_dir_all(pristine);
        fs::create_dir_all(pristine).map_err(|e| other(format!("{}: {e}", pristine.display())))?;
        Cmd::new("tar")
            .arg("--no-same-owner")
            .arg("--no-same-permissions")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(pristine)
            .run_logged(&self.log_path("fetch.log"), &mut |_| {})?;
        sanitize_tree(pristine).map_err(|e| {
            let _ = fs::remove_dir_all(pristine);
            other(format!(
                "{}: {e} (nothing was installed)",
                archive.display()
            ))
        })?;
        let top = single_top_dir(pristine);
        let tree =
            gittree::tree_id(&top).map_err(|e| other(format!("hashing {}: {e}", top.display())))?;
        Ok((top, tree))
    }

    fn prepare(
        &mut self,
        work_abs: &str,
        release: &str,
        tx: &mut Transaction,
    ) -> Result<(), StepError> {
        let m = self.manifest;
        let work = self.root.path(work_abs);
        let pristine = work.join("pristine");
        let top_rel = fs::read_to_string(work.join("pristine.top")).unwrap_or_default();
        let top = pristine.join(top_rel.trim());
        if !top.is_dir() {
            return Err(other(format!(
                "{} is missing: the fetch step unpacks it",
                top.display()
            )));
        }
        let tmp = work.join("src.tmp");
        let src = work.join("src");
        let _ = fs::remove_dir_all(&tmp);
        let _ = fs::remove_dir_all(&src);
        fs::rename(&top, &tmp).map_err(|e| other(format!("{}: {e}", tmp.display())))?;
        let _ = fs::remove_dir_all(&pristine);
        let log = self.log_path(&format!("prepare-{}.log", m.driver));
        let patch = self
            .host
            .programs()
            .find("patch")
            .ok_or_else(|| other("`patch` is not installed (apt-get install patch)"))?;
        for a in m.patch_artifacts() {
            let file = self.cached(&a)?;
            self.note(format!("applying {}", a.what));
            Cmd::new(&patch)
                .args(["-p1", "--batch", "--no-backup-if-mismatch", "-d"])
                .arg(&tmp)
                .arg("-i")
                .arg(&file)
                .run_logged(&log, &mut |_| {})
                .map_err(|e| other(format!("{} does not apply: {e}", a.what)))?;
        }
        let tree =
            gittree::tree_id(&tmp).map_err(|e| other(format!("hashing {}: {e}", tmp.display())))?;
        match &m.series.result_tree {
            Some(want) if *want != tree => {
                return Err(StepError::Tree {
                    what: "the patched source".to_string(),
                    expected: want.clone(),
                    actual: tree,
                });
            }
            Some(_) => self.note(format!("patched tree {tree} matches the pin")),
            None => {
                self.note(format!("patched tree {tree}"));
                if m.series.patch.iter().any(|p| p.sha256.is_none()) {
                    tx.state.accepted_unpinned.push(Accepted {
                        what: "patched source".to_string(),
                        location: m.origin.clone(),
                        digest: format!("git-tree:{tree}"),
                    });
                }
            }
        }
        // pigpu's compatibility patches, for what the target kernel's headers say now (the
        // headers may have been installed by apt-deps after the plan was made).
        let checks = probe::kernel_facts(self.root, release).api;
        let decision = manifest::decide_compat(&m.driver, &m.compat, release, &checks)
            .map_err(StepError::Other)?;
        for line in &decision.reasons {
            self.note(line.to_string());
        }
        for (i, c) in decision.apply.iter().enumerate() {
            let bytes = m.compat_bytes(c).map_err(StepError::Other)?;
            let file = work.join(format!("compat-{}.patch", i + 1));
            fs::write(&file, bytes).map_err(|e| other(format!("{}: {e}", file.display())))?;
            self.note(format!("applying compatibility patch {}", c.file));
            apply_patch(self.host.programs(), &tmp, &file, &log).map_err(|e| {
                other(format!(
                    "compatibility patch {} does not apply: {e}",
                    c.file
                ))
            })?;
        }
        fs::rename(&tmp, &src).map_err(|e| other(format!("{}: {e}", src.display())))?;
        Ok(())
    }

    fn make(
        &self,
        dir: &Path,
        target: &str,
        release: &str,
        extra: &[String],
        log: &Path,
        jobs: usize,
    ) -> Result<(), StepError> {
        let trees = kernel_trees(self.root, release)?;
        let cmd = make_command(dir, target, jobs, &trees, &self.manifest.make_args, extra)?
            .in_own_group();
        (self.events)(Event::Busy(format!("make {target}")));
        let mut compiled = 0usize;
        let result = cmd.run_logged(log, &mut |line| {
            let t = line.trim_start();
            if t.starts_with("CC") || t.starts_with("LD") {
                compiled += 1;
                (self.events)(Event::Busy(format!("make {target}: {compiled} files, {t}")));
            }
        });
        (self.events)(Event::Idle);
        match result {
            Ok(()) => Ok(()),
            Err(CommandError::Failed { log, .. }) => {
                let text = fs::read_to_string(&log).unwrap_or_default();
                let first = first_error(&text).unwrap_or_else(|| {
                    text.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("no output")
                        .to_string()
                });
                Err(StepError::Build {
                    first_error: first,
                    log,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn build(
        &mut self,
        work_abs: &str,
        release: &str,
        jobs: usize,
        log_abs: &str,
    ) -> Result<(), StepError> {
        let work = self.root.path(work_abs);
        let src = work.join("src");
        if !src.is_dir() {
            return Err(other(format!(
                "{} is missing: the prepare step makes it",
                src.display()
            )));
        }
        let build = work.join(format!("build-{release}"));
        let _ = fs::remove_dir_all(&build);
        transaction::copy_dir(&src, &build)
            .map_err(|e| other(format!("copying to {}: {e}", build.display())))?;
        let log = self.root.path(log_abs);
        let _ = fs::remove_file(&log);
        let started = std::time::Instant::now();
        self.make(
            &build.join(&self.manifest.make_dir),
            "modules",
            release,
            &[],
            &log,
            jobs,
        )?;
        self.note(format!(
            "built in {:.1} s (log: {})",
            started.elapsed().as_secs_f64(),
            log.display()
        ));
        Ok(())
    }

    fn install_modules(
        &mut self,
        work_abs: &str,
        release: &str,
        log_abs: &str,
        tx: &mut Transaction,
    ) -> Result<(), StepError> {
        let m = self.manifest;
        let work = self.root.path(work_abs);
        let build = work.join(format!("build-{release}"));
        let stage = work.join(format!("stage-{release}"));
        let _ = fs::remove_dir_all(&stage);
        let log = self.root.path(log_abs);
        self.make(
            &build.join(&m.make_dir),
            "modules_install",
            release,
            &[
                make_var("INSTALL_MOD_PATH", &stage.to_string_lossy())?,
                "DEPMOD=true".to_string(),
            ],
            &log,
            1,
        )?;
        // Whatever release directory Kbuild used, the files go under the target release.
        let mut found = Vec::new();
        collect_modules(&stage.join("lib/modules"), &mut found);
        if found.is_empty() {
            return Err(other(format!(
                "make modules_install put no .ko files under {}",
                stage.display()
            )));
        }
        let mut installed = Vec::new();
        for f in &found {
            let rel = f
                .strip_prefix(stage.join("lib/modules"))
                .expect("under stage");
            let inner: PathBuf = rel.components().skip(1).collect();
            let abs = format!("/lib/modules/{release}/{}", inner.display());
            tx.install_file(&abs, f, Some(0o644))?;
            installed.push(abs);
        }
        let names: Vec<String> = installed
            .iter()
            .filter_map(|p| Path::new(p).file_name())
            .map(|n| {
                n.to_string_lossy()
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        for want in &m.modules {
            if !names.iter().any(|n| n == want) {
                return Err(other(format!(
                    "the build produced no {want}.ko (got {})",
                    names.join(", ")
                )));
            }
        }
        tx.record(Record::Modules {
            driver: m.driver.clone(),
            release: release.to_string(),
            files: installed.clone(),
        })?;
        // On a real system the kernel package ships the index; a bare image may have none, and
        // then the files depmod makes are this run's to take away on undo (journaled first, as
        // every change is).
        let dir = format!("/lib/modules/{release}");
        if !self.root.exists(format!("{dir}/modules.dep")) {
            let made: Vec<String> = DEPMOD_INDEX
                .iter()
                .filter(|f| !self.root.exists(format!("{dir}/{f}")))
                .map(|f| f.to_string())
                .collect();
            tx.record_depmod_index(release, made)?;
        }
        depmod(self.host.programs(), self.root.dir(), release, &log)?;
        let _ = fs::remove_dir_all(&stage);
        self.note(format!("installed {}", installed.join(", ")));
        Ok(())
    }

    fn userspace(&mut self, args: &[String], tx: &mut Transaction) -> Result<(), StepError> {
        let m = self.manifest;
        let art = m.userspace_artifact();
        let cached = self.cached(&art)?;
        // The installer must be inside the target to run there.
        let inside = format!("{}/{}", super::plan::work_dir(m), art.file);
        let dest = self.root.path(&inside);
        if let Some(d) = dest.parent() {
            fs::create_dir_all(d).map_err(|e| other(format!("{}: {e}", d.display())))?;
        }
        if cached != dest {
            fs::copy(&cached, &dest).map_err(|e| other(format!("{}: {e}", dest.display())))?;
        }
        let mut argv = vec!["sh".to_string(), inside.clone()];
        argv.extend(args.iter().cloned());
        tx.record(Record::Userspace {
            version: m.driver.clone(),
            uninstall: m.userspace.uninstall.clone(),
        })?;
        let log = self.log_path(&format!("userspace-{}.log", m.driver));
        (self.events)(Event::Busy("NVIDIA installer".to_string()));
        let r = self.host.run_in_target(self.root, &argv, &log);
        (self.events)(Event::Idle);
        r?;
        let _ = fs::remove_file(&dest);
        let missing: Vec<&String> = m
            .userspace
            .installs
            .iter()
            .filter(|p| !self.root.exists(p))
            .collect();
        if !missing.is_empty() {
            return Err(other(format!(
                "the installer finished but did not install {} (log: {})",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                log.display()
            )));
        }
        Ok(())
    }
}

/// The bytes to write for pigpu's `config.txt` block: `text` is the planned file, but when the
/// file on disk is not UTF-8 the block is set into its bytes instead, so no byte outside the
/// block changes.
fn config_bytes(root: &Root, path: &str, text: &str) -> Vec<u8> {
    match root.read_bytes(path) {
        Ok(Some(bytes)) if std::str::from_utf8(&bytes).is_err() => {
            super::bootconfig::set_block_bytes(&bytes, &super::bootconfig::managed_lines(text))
        }
        _ => text.as_bytes().to_vec(),
    }
}

/// `--undo`: reverses everything pigpu recorded, newest first, and removes its work files.
pub fn undo(root: &Root, st: &State, host: &mut dyn Host) -> Vec<String> {
    let log = root.path(format!("{}/undo.log", state::LOG_DIR));
    // A run that was stopped (killed, perhaps again during its rollback) left its journal: it is
    // reversed first and as its rollback would, strictly, so a file that rollback restored
    // already is no "edited after pigpu" problem. Then the committed records, where a file the
    // user edited since is left alone.
    let mut problems = transaction::revert_all(root, &st.in_progress, host, &log, true);
    problems.extend(transaction::revert_all(
        root,
        &st.records,
        host,
        &log,
        false,
    ));
    let _ = fs::remove_dir_all(root.path(state::WORK_DIR));
    let left = State {
        accepted_unpinned: Vec::new(),
        ..State::default()
    };
    let _ = transaction::finish_state(root, &left);
    problems
}
