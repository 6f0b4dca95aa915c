//! External commands for setup (make, patch, tar, depmod, apt-get, …), always as an argv through
//! `duct`, never a shell line, so no file name or version string can be interpreted by a shell.
//! Long-running commands write their combined output to a log file line by line, so a failure can
//! name the log and a progress display can follow along.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::group::ProcessGroup;

/// Why an external command could not be run or did not succeed.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The program could not be started (not found, not executable).
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        /// The command line, as shown to the user.
        cmd: String,
        /// The error from `spawn`.
        #[source]
        source: std::io::Error,
    },
    /// The command ran and exited non-zero or was killed.
    #[error("`{cmd}` failed ({status}); its output is in {}", log.display())]
    Failed {
        /// The command line, as shown to the user.
        cmd: String,
        /// Its exit status, in words.
        status: String,
        /// The log file holding its output.
        log: PathBuf,
    },
    /// The log file for the command's output could not be written.
    #[error("cannot write log {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A command line as argv, with an optional working directory and extra environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The program: a name looked up in `PATH`, or a path.
    pub program: OsString,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// Working directory; `None` keeps pigpu's.
    pub dir: Option<PathBuf>,
    /// Variables added to (or replacing in) the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// Runs in a process group of its own that is killed whole when the command ends, when
    /// pigpu is interrupted and when pigpu dies, even by SIGKILL (see `sys::group`).
    pub own_group: bool,
}

impl Cmd {
    /// A command running `program` with no arguments, in pigpu's directory and environment.
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            dir: None,
            env: Vec::new(),
            own_group: false,
        }
    }
    /// Appends one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }
    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    /// Runs the command in `d`.
    pub fn dir(mut self, d: impl Into<PathBuf>) -> Cmd {
        self.dir = Some(d.into());
        self
    }
    /// Sets the variable `k` to `v` for the command.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    /// The command and everything it starts die with pigpu (a build must not run on after a
    /// killed setup), and nothing of it outlives the command itself. Not for apt or dpkg, which
    /// must finish. Only [`Cmd::run_logged`] honours it.
    pub fn in_own_group(mut self) -> Cmd {
        self.own_group = true;
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

    /// The duct expression; with `group`, the command joins that process group before exec.
    fn expression(&self, group: Option<libc::pid_t>) -> duct::Expression {
        let mut e = duct::cmd(&self.program, &self.args);
        if let Some(d) = &self.dir {
            e = e.dir(d);
        }
        for (k, v) in &self.env {
            e = e.env(k, v);
        }
        if let Some(pgid) = group {
            e = e.before_spawn(move |cmd| {
                use std::os::unix::process::CommandExt;
                // SAFETY: the closure runs in the child between fork and exec and makes one
                // async-signal-safe call (setpgid) on no shared memory.
                unsafe {
                    cmd.pre_exec(move || super::group::join(pgid));
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
        // Declared before the handle, so dropped after it: on every return, whatever of the
        // group still runs is killed once the command has been waited for.
        let group = match self.own_group {
            true => Some(ProcessGroup::new().map_err(spawn_err)?),
            false => None,
        };
        let handle = self
            .expression(group.as_ref().map(ProcessGroup::id))
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
}

/// `depmod -b DIR RELEASE`: rebuilds the module index of `release` in the system tree at
/// `root_dir` (`/` or an image), logging to `log`. Real on test roots too.
pub fn depmod(
    programs: &ProgramPath,
    root_dir: &Path,
    release: &str,
    log: &Path,
) -> Result<(), CommandError> {
    let prog = programs
        .find("depmod")
        .unwrap_or_else(|| PathBuf::from("depmod"));
    Cmd::new(prog)
        .arg("-b")
        .arg(root_dir)
        .arg(release)
        .run_logged(log, &mut |_| {})
}

/// Where the tools pigpu runs by path (`depmod`, `patch`) are looked for: the usual system
/// directories first (root's tools such as `depmod` live in /usr/sbin, which a normal user's
/// `PATH` may lack), then the directories of a `PATH` value that the command layer read and
/// passed down. `ProgramPath::default()` is the system directories alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramPath {
    dirs: Vec<PathBuf>,
}

impl ProgramPath {
    /// The system directories, then those of `path_var` (a `PATH` value, `:`-separated).
    pub fn new(path_var: Option<&OsStr>) -> ProgramPath {
        let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(PathBuf::from)
            .collect();
        if let Some(path) = path_var {
            dirs.extend(std::env::split_paths(path));
        }
        ProgramPath { dirs }
    }

    /// The first regular file called `name` in these directories.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        self.dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
    }
}

impl Default for ProgramPath {
    fn default() -> Self {
        ProgramPath::new(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_the_system_dirs_then_the_given_path() {
        let t = tempfile::tempdir().unwrap();
        let tool = t.path().join("pigpu-test-tool");
        fs::write(&tool, "").unwrap();
        assert_eq!(ProgramPath::default().find("pigpu-test-tool"), None);
        let path = std::env::join_paths(["/nonexistent", t.path().to_str().unwrap()]).unwrap();
        let programs = ProgramPath::new(Some(&path));
        assert_eq!(programs.find("pigpu-test-tool"), Some(tool));
        // A directory of that name is not a program.
        assert_eq!(programs.find("."), None);
        // The system directories come first (`sh` is in /bin or /usr/bin everywhere).
        let sh = programs.find("sh").unwrap();
        assert!(
            sh.starts_with("/usr/bin") || sh.starts_with("/bin"),
            "{sh:?}"
        );
    }

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
        let err = Cmd::new("/nonexistent/prog")
            .run_logged(&log, &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prog"), "{err}");
        assert_eq!(Cmd::new("echo").arg("a b").display(), "echo 'a b'");
    }

    #[test]
    fn nothing_of_a_grouped_command_outlives_it() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("g.log");
        // A background job that would run on for a minute (its output detached, so the
        // command's own end is seen at once); its pid is the command's one line.
        let mut pid = String::new();
        Cmd::new("sh")
            .args(["-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo $!"])
            .in_own_group()
            .run_logged(&log, &mut |l| pid = l.to_string())
            .unwrap();
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let t0 = std::time::Instant::now();
        // Gone, or a zombie waiting for init (its stat shows state Z).
        while fs::read_to_string(proc_dir.join("stat"))
            .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").starts_with(" Z"))
        {
            assert!(
                t0.elapsed().as_secs() < 5,
                "sleep {pid} outlived its command"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
