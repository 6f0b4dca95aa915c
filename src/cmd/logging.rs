//! The global logging flags (`-q`, `-v`, `--log-file`) and the `PIGPU_LOG` default, turned into
//! the level and file of `sys::log`. Read here, at the edge, so library code never looks at the
//! environment to decide how loud to be.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use log::LevelFilter;

/// The environment variable that sets the default level when neither `-q` nor `-v` is given.
const ENV: &str = "PIGPU_LOG";

/// Logging flags, accepted before or after the subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Only errors on stderr: no progress, status or warning lines (for scripts).
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: -v debug, -vv trace.
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Also append every log line, with a UTC timestamp and its level, to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// Parses a `PIGPU_LOG` value: `off`, `error`, `warn`, `info`, `debug` or `trace`.
fn parse_level(s: &str) -> Result<LevelFilter> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::Off),
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        other => bail!(
            "{ENV}={other:?} is not a log level; expected one of off, error, warn, info, debug, trace"
        ),
    }
}

impl LogArgs {
    /// The level: `-q` → errors only, `-v` → debug, `-vv` → trace; without either, `env`
    /// (the value of `PIGPU_LOG`, if set), else info.
    pub fn level(&self, env: Option<&str>) -> Result<LevelFilter> {
        Ok(match (self.quiet, self.verbose) {
            (true, _) => LevelFilter::Error,
            (false, 1) => LevelFilter::Debug,
            (false, n) if n >= 2 => LevelFilter::Trace,
            _ => match env {
                Some(v) if !v.is_empty() => parse_level(v)?,
                _ => LevelFilter::Info,
            },
        })
    }

    /// Installs the logger: level from the flags and `PIGPU_LOG`, and the `--log-file` opened
    /// for appending (created when missing).
    pub fn install(&self) -> Result<()> {
        let env = std::env::var(ENV).ok();
        // Install first at info, so an error below is still rendered the usual way.
        crate::sys::log::init(LevelFilter::Info);
        let level = self.level(env.as_deref())?;
        crate::sys::log::init(level);
        log::debug!(
            "pigpu {}: log level {}",
            env!("CARGO_PKG_VERSION"),
            level.as_str().to_ascii_lowercase()
        );
        if let Some(path) = &self.log_file {
            if path.is_dir() {
                bail!(
                    "--log-file {} is a directory; expected a file path",
                    path.display()
                );
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening --log-file {}", path.display()))?;
            crate::sys::log::set_file(f);
            log::debug!("logging at {level} to {}", path.display());
        }
        Ok(())
    }
}

/// Whether commands should show status and progress lines: not under `-q` (or a
/// `PIGPU_LOG` below info). Commands that print such lines themselves ask this.
pub fn status_lines() -> bool {
    log::max_level() >= LevelFilter::Info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(quiet: bool, verbose: u8) -> LogArgs {
        LogArgs {
            quiet,
            verbose,
            log_file: None,
        }
    }

    #[test]
    fn flags_beat_the_environment() {
        assert_eq!(args(false, 0).level(None).unwrap(), LevelFilter::Info);
        assert_eq!(
            args(true, 0).level(Some("trace")).unwrap(),
            LevelFilter::Error
        );
        assert_eq!(
            args(false, 1).level(Some("off")).unwrap(),
            LevelFilter::Debug
        );
        assert_eq!(args(false, 3).level(None).unwrap(), LevelFilter::Trace);
        assert_eq!(
            args(false, 0).level(Some("WARN")).unwrap(),
            LevelFilter::Warn
        );
        assert_eq!(args(false, 0).level(Some("")).unwrap(), LevelFilter::Info);
    }

    #[test]
    fn a_bad_environment_value_is_named() {
        let e = args(false, 0).level(Some("loud")).unwrap_err().to_string();
        assert!(
            e.contains("PIGPU_LOG") && e.contains("loud") && e.contains("debug"),
            "{e}"
        );
    }
}
