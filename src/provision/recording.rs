//! The test stand-in for [`Host`]: records every call and applies the visible result a real
//! run would leave in the root (dpkg status lines, the DKMS directory, `/proc/modules`), because
//! real apt and DKMS cannot run against a fake root. Built only for unit tests and with the
//! `testing` feature (which the integration tests turn on), never into the release binary.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::host::{Host, HostError};
use crate::sys::command::{Cmd, ProgramPath};
use crate::sys::Root;

/// Records every call; applies the visible result a real run would leave in the root.
#[derive(Debug, Default)]
pub struct RecordingHost {
    /// Each call as one line (`apt-get install dkms`, `dkms add -m nvidia -v 580.95.05`, …).
    pub calls: Vec<String>,
    /// The real tools `depmod` and `patch` run on test roots too (the system directories).
    pub programs: ProgramPath,
}

impl RecordingHost {
    fn dpkg_set(root: &Root, packages: &[String], status: Option<&str>) -> Result<(), HostError> {
        let path = root.path("/var/lib/dpkg/status");
        let io = |source| HostError::Io {
            path: path.clone(),
            source,
        };
        let text = fs::read_to_string(&path).unwrap_or_default();
        let mut paras: Vec<String> = text
            .split("\n\n")
            .filter(|p| !p.trim().is_empty())
            .map(str::to_string)
            .collect();
        for pkg in packages {
            let header = format!("Package: {pkg}");
            let pos = paras
                .iter()
                .position(|p| p.lines().next() == Some(header.as_str()));
            let new_status = status
                .map(str::to_string)
                .unwrap_or_else(|| "install ok installed".to_string());
            let para =
                format!("{header}\nStatus: {new_status}\nArchitecture: all\nVersion: 0-recorded");
            match pos {
                Some(i) => {
                    let old = &paras[i];
                    if status.is_none() && old.contains("Status: hold") {
                        continue;
                    }
                    paras[i] = old
                        .lines()
                        .map(|l| {
                            if l.starts_with("Status:") {
                                format!("Status: {new_status}")
                            } else {
                                l.to_string()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                }
                None => paras.push(para),
            }
        }
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(io)?;
        }
        fs::write(&path, paras.join("\n\n") + "\n").map_err(io)
    }
}

impl Host for RecordingHost {
    fn programs(&self) -> &ProgramPath {
        &self.programs
    }
    fn apt_install(
        &mut self,
        root: &Root,
        packages: &[String],
        _log: &Path,
    ) -> Result<(), HostError> {
        self.calls
            .push(format!("apt-get install {}", packages.join(" ")));
        Self::dpkg_set(root, packages, None)
    }
    fn apt_mark_auto(
        &mut self,
        _root: &Root,
        packages: &[String],
        _log: &Path,
    ) -> Result<(), HostError> {
        self.calls
            .push(format!("apt-mark auto {}", packages.join(" ")));
        Ok(())
    }
    fn hold(
        &mut self,
        root: &Root,
        packages: &[String],
        hold: bool,
        _log: &Path,
    ) -> Result<(), HostError> {
        let verb = if hold { "hold" } else { "unhold" };
        self.calls
            .push(format!("apt-mark {verb} {}", packages.join(" ")));
        let status = if hold {
            "hold ok installed"
        } else {
            "install ok installed"
        };
        Self::dpkg_set(root, packages, Some(status))
    }
    fn dkms(&mut self, root: &Root, args: &[String], _log: &Path) -> Result<(), HostError> {
        self.calls.push(format!("dkms {}", args.join(" ")));
        // `dkms add -m M -v V` / `dkms remove M/V --all`.
        let dir = match args.first().map(String::as_str) {
            Some("add") => args
                .get(2)
                .zip(args.get(4))
                .map(|(m, v)| (true, format!("/var/lib/dkms/{m}/{v}"))),
            Some("remove") => args.get(1).map(|mv| (false, format!("/var/lib/dkms/{mv}"))),
            _ => None,
        };
        if let Some((add, d)) = dir {
            let p = root.path(&d);
            let res = if add {
                fs::create_dir_all(&p)
            } else {
                fs::remove_dir_all(&p)
            };
            res.map_err(|source| HostError::Io { path: p, source })?;
        }
        Ok(())
    }
    fn load_modules(&mut self, root: &Root, names: &[String]) -> Result<(), HostError> {
        self.calls.push(format!("load {}", names.join(" ")));
        let path = root.path("/proc/modules");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|source| HostError::Io {
                path: path.clone(),
                source,
            })?;
        for n in names {
            writeln!(
                f,
                "{} 16384 0 - Live 0x0000000000000000",
                n.replace('-', "_")
            )
            .map_err(|source| HostError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
    fn run_in_target(&mut self, root: &Root, argv: &[String], log: &Path) -> Result<(), HostError> {
        self.calls.push(format!("run {}", argv.join(" ")));
        // Stands in for `chroot ROOT argv`: target paths that exist in the root are mapped into
        // it, and DESTDIR tells the test installer where the root is.
        let mapped: Vec<String> = argv
            .iter()
            .map(|a| {
                if a.starts_with('/') && root.exists(a) {
                    root.path(a).display().to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
        Cmd::new(&mapped[0])
            .args(&mapped[1..])
            .env("DESTDIR", root.dir())
            .run_logged(log, &mut |_| {})?;
        Ok(())
    }
}
