//! The effects setup cannot perform on files alone: apt, apt-mark, DKMS, loading modules, and
//! running a program inside the target system (NVIDIA's installer). [`SystemHost`] does them for
//! real (in a `chroot` for a root that is not `/`); the tests' stand-in is
//! `provision::recording::RecordingHost` (built only for tests, or with the `testing` feature).

use std::path::Path;

use thiserror::Error;

use crate::sys::command::{Cmd, CommandError, ProgramPath};
use crate::sys::Root;

/// Why a host operation failed.
#[derive(Debug, Error)]
pub enum HostError {
    /// The command it runs failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The operation cannot be done on this root.
    #[error("{what}: {why}")]
    Refused {
        /// The operation.
        what: String,
        /// Why not.
        why: String,
    },
    /// libkmod could not load a module.
    #[error("loading module {name}: {message}")]
    Load {
        /// The module (or modules, comma-separated).
        name: String,
        /// libkmod's error, as text.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// System-level effects on the target.
pub trait Host {
    /// `apt-get update` then `apt-get install -y` of `packages`.
    fn apt_install(
        &mut self,
        root: &Root,
        packages: &[String],
        log: &Path,
    ) -> Result<(), HostError>;
    /// `apt-mark auto`: leave packages pigpu installed to `apt autoremove`.
    fn apt_mark_auto(
        &mut self,
        root: &Root,
        packages: &[String],
        log: &Path,
    ) -> Result<(), HostError>;
    /// `apt-mark hold` / `unhold`.
    fn hold(
        &mut self,
        root: &Root,
        packages: &[String],
        hold: bool,
        log: &Path,
    ) -> Result<(), HostError>;
    /// `dkms add|remove …`.
    fn dkms(&mut self, root: &Root, args: &[String], log: &Path) -> Result<(), HostError>;
    /// Loads modules (and what they depend on) into the running kernel.
    fn load_modules(&mut self, root: &Root, names: &[String]) -> Result<(), HostError>;
    /// Runs `argv` as a program of the target system (paths in it are target paths).
    fn run_in_target(&mut self, root: &Root, argv: &[String], log: &Path) -> Result<(), HostError>;
    /// Where this machine's own tools are found (`depmod -b ROOT`, `patch`: they run here, on
    /// files under the root, so they come from this machine, not the target).
    fn programs(&self) -> &ProgramPath;
}

/// The real thing: commands on `/`, or in `chroot ROOT` for another root.
#[derive(Debug, Default)]
pub struct SystemHost {
    /// The tools' search path, with the `PATH` the command layer read.
    pub programs: ProgramPath,
}

impl SystemHost {
    fn cmd(root: &Root, argv: &[String]) -> Cmd {
        let c = if root.is_live() {
            Cmd::new(&argv[0]).args(&argv[1..])
        } else {
            Cmd::new("chroot").arg(root.dir()).args(argv)
        };
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
    }
    fn run(root: &Root, argv: &[String], log: &Path) -> Result<(), HostError> {
        Ok(Self::cmd(root, argv).run_logged(log, &mut |_| {})?)
    }
}

fn argv(words: &[&str], rest: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|s| s.to_string())
        .chain(rest.iter().cloned())
        .collect()
}

impl Host for SystemHost {
    fn programs(&self) -> &ProgramPath {
        &self.programs
    }
    fn apt_install(
        &mut self,
        root: &Root,
        packages: &[String],
        log: &Path,
    ) -> Result<(), HostError> {
        Self::run(root, &argv(&["apt-get", "update", "-q"], &[]), log)?;
        Self::run(
            root,
            &argv(
                &["apt-get", "install", "-y", "-q", "--no-install-recommends"],
                packages,
            ),
            log,
        )
    }
    fn apt_mark_auto(
        &mut self,
        root: &Root,
        packages: &[String],
        log: &Path,
    ) -> Result<(), HostError> {
        Self::run(root, &argv(&["apt-mark", "auto"], packages), log)
    }
    fn hold(
        &mut self,
        root: &Root,
        packages: &[String],
        hold: bool,
        log: &Path,
    ) -> Result<(), HostError> {
        let verb = if hold { "hold" } else { "unhold" };
        Self::run(root, &argv(&["apt-mark", verb], packages), log)
    }
    fn dkms(&mut self, root: &Root, args: &[String], log: &Path) -> Result<(), HostError> {
        Self::run(root, &argv(&["dkms"], args), log)
    }
    fn load_modules(&mut self, root: &Root, names: &[String]) -> Result<(), HostError> {
        if !root.is_live() {
            return Err(HostError::Refused {
                what: "loading modules".to_string(),
                why: format!("{} is not the running system", root.dir().display()),
            });
        }
        let ctx = kmod::Context::new().map_err(|e| HostError::Load {
            name: names.join(","),
            message: e.to_string(),
        })?;
        let loaded: Vec<String> = ctx
            .modules_loaded()
            .map(|it| {
                it.map(|m| m.name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for name in names {
            insert_with_deps(&ctx, name, &loaded, 0)?;
        }
        Ok(())
    }
    fn run_in_target(&mut self, root: &Root, argv: &[String], log: &Path) -> Result<(), HostError> {
        if !root.is_live() && !same_arch_as_host(root) {
            return Err(HostError::Refused {
                what: argv.join(" "),
                why: format!(
                    "the root at {} is not a {} system, so its programs cannot run here",
                    root.dir().display(),
                    std::env::consts::ARCH
                ),
            });
        }
        Self::run(root, argv, log)
    }
}

/// Whether the root's `/bin/sh` is an ELF for this machine (a chroot can run it).
fn same_arch_as_host(root: &Root) -> bool {
    // Links resolved inside the root (`/bin -> usr/bin`, `sh -> dash`); the first bytes suffice.
    let Ok(bytes) = root
        .inside("/bin/sh")
        .and_then(|p| crate::sys::root::read_regular(&p, crate::sys::root::MAX_READ))
    else {
        return false;
    };
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return false;
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let host = match std::env::consts::ARCH {
        "x86_64" => 62,
        "aarch64" => 183,
        _ => return false,
    };
    machine == host
}

fn insert_with_deps(
    ctx: &kmod::Context,
    name: &str,
    loaded: &[String],
    depth: u32,
) -> Result<(), HostError> {
    let err = |message: String| HostError::Load {
        name: name.to_string(),
        message,
    };
    if depth > 16 || loaded.iter().any(|l| *l == name.replace('-', "_")) {
        return Ok(());
    }
    let mut found = ctx
        .module_new_from_lookup(name)
        .map_err(|e| err(e.to_string()))?;
    let module = found.next().ok_or_else(|| {
        err("not found in modules.dep: was depmod run for the running kernel?".to_string())
    })?;
    for dep in module.dependencies() {
        let dep_name = dep.name().to_string_lossy().into_owned();
        insert_with_deps(ctx, &dep_name, loaded, depth + 1)?;
    }
    match module.insert_module(0, &[]) {
        Ok(()) => Ok(()),
        // Already loaded (EEXIST) is fine.
        Err(e) if e.to_string().contains("exists") => Ok(()),
        Err(e) => Err(err(format!("{e}; see `dmesg` and run `pigpu doctor`"))),
    }
}
