//! External commands for setup (make, patch, tar, depmod, apt-get, …), always as an argv through
//! `duct`, never a shell line, so no file name or version string can be interpreted by a shell.
//! Long-running commands write their combined output to a log file line by line, so a failure can
//! name the log and a progress display can follow along.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CommandError {
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}); its output is in {}", log.display())]
    Failed {
        cmd: String,
        status: String,
        log: PathBuf,
    },
    #[error("`{cmd}` failed ({status}): {output}")]
    FailedCaptured {
        cmd: String,
        status: String,
        output: String,
    },
    #[error("cannot write log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A command line as argv, with an optional working directory and extra environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub dir: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    /// Ends (SIGTERM, which `make` passes on to its children) when pigpu dies, even by SIGKILL.
    pub die_with_parent: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            dir: None,
            env: Vec::new(),
            die_with_parent: false,
        }
    }
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    pub fn dir(mut self, d: impl Into<PathBuf>) -> Cmd {
        self.dir = Some(d.into());
        self
    }
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    /// The command is sent SIGTERM when pigpu dies (a build must not run on after a killed
    /// setup; `make` passes the signal to its jobs). Not for apt or dpkg, which must finish.
    pub fn die_with_parent(mut self) -> Cmd {
        self.die_with_parent = true;
        self
    }

    /// The argv for messages and logs, each word quoted when it needs it (display only: it is
    /// never handed to a shell).
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|w| {
                let s = w.to_string_lossy();
                if !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./=:+,@%".contains(&b))
                {
                    s.into_owned()
                } else {
                    format!("'{}'", s.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn expression(&self) -> duct::Expression {
        let mut e = duct::cmd(&self.program, &self.args);
        if let Some(d) = &self.dir {
            e = e.dir(d);
        }
        for (k, v) in &self.env {
            e = e.env(k, v);
        }
        if self.die_with_parent {
            let parent = std::process::id() as libc::pid_t;
            e = e.before_spawn(move |cmd| {
                use std::os::unix::process::CommandExt;
                // SAFETY: the closure runs in the child between fork and exec and only makes
                // async-signal-safe calls (prctl, getppid, kill) on no shared memory.
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        // The parent died before the prctl: nobody will send the signal.
                        if libc::getppid() != parent {
                            libc::kill(libc::getpid(), libc::SIGTERM);
                        }
                        Ok(())
                    });
                }
                Ok(())
            });
        }
        e.stdin_null().unchecked()
    }

    /// Runs the command, appending its combined stdout/stderr to `log` and handing each line to
    /// `on_line` as it arrives. Fails (naming the log) on a non-zero exit.
    pub fn run_logged(
        &self,
        log: &Path,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(), CommandError> {
        let log_err = |source| CommandError::Log {
            path: log.to_path_buf(),
            source,
        };
        if let Some(parent) = log.parent() {
            fs::create_dir_all(parent).map_err(log_err)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(log_err)?;
        writeln!(file, "$ {}", self.display()).map_err(log_err)?;
        let spawn_err = |source| CommandError::Spawn {
            cmd: self.display(),
            source,
        };
        let handle = self
            .expression()
            .stderr_to_stdout()
            .reader()
            .map_err(spawn_err)?;
        let mut reader = BufReader::new(&handle);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(spawn_err)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf).map_err(log_err)?;
            let line = String::from_utf8_lossy(&buf);
            on_line(line.trim_end_matches(['\n', '\r']));
        }
        drop(reader);
        let output = handle
            .try_wait()
            .map_err(spawn_err)?
            .expect("the reader hit end of output, so the child has exited");
        if !output.status.success() {
            let status = output.status.to_string();
            let _ = writeln!(file, "pigpu: command ended with {status}");
            return Err(CommandError::Failed {
                cmd: self.display(),
                status,
                log: log.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Runs a short command and returns its stdout; its stderr goes into the error on failure.
    pub fn run_capture(&self) -> Result<String, CommandError> {
        let out = self
            .expression()
            .stdout_capture()
            .stderr_capture()
            .run()
            .map_err(|source| CommandError::Spawn {
                cmd: self.display(),
                source,
            })?;
        if !out.status.success() {
            return Err(CommandError::FailedCaptured {
                cmd: self.display(),
                status: out.status.to_string(),
                output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `depmod -b DIR RELEASE`: rebuilds the module index of `release` in the system tree at
/// `root_dir` (`/` or an image), logging to `log`. Real on test roots too.
pub fn depmod(root_dir: &Path, release: &str, log: &Path) -> Result<(), CommandError> {
    let prog = find_program("depmod").unwrap_or_else(|| PathBuf::from("depmod"));
    Cmd::new(prog)
        .arg("-b")
        .arg(root_dir)
        .arg(release)
        .run_logged(log, &mut |_| {})
}

/// Finds a program in the usual system directories and then `PATH` (root's tools such as
/// `depmod` live in /usr/sbin, which a normal user's PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_never_shell_interpreted() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("logs/x.log");
        let evil = "$(touch pwned); `touch pwned2` 'q\" *";
        let mut lines = Vec::new();
        Cmd::new("printf")
            .arg("%s\\n")
            .arg(evil)
            .dir(t.path())
            .run_logged(&log, &mut |l| lines.push(l.to_string()))
            .unwrap();
        assert_eq!(lines, [evil]);
        assert!(!t.path().join("pwned").exists() && !t.path().join("pwned2").exists());
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("$ printf "), "{text}");
        assert!(text.ends_with(&format!("{evil}\n")), "{text}");
    }

    #[test]
    fn failure_names_the_log_and_keeps_stderr() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("fail.log");
        let err = Cmd::new("sh")
            .args(["-c", "echo to-stderr >&2; exit 3"])
            .run_logged(&log, &mut |_| {})
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("fail.log") && msg.contains('3'), "{msg}");
        assert!(fs::read_to_string(&log).unwrap().contains("to-stderr"));
        let err = Cmd::new("/nonexistent/prog").run_capture().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prog"), "{err}");
        assert_eq!(Cmd::new("echo").arg("a b").display(), "echo 'a b'");
    }
}
