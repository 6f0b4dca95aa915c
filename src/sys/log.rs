//! The one path for diagnostics from library code: modules below `cmd/` call the `log` crate's
//! macros (`log::warn!`, `log::info!`, `log::debug!`) and never print; the binary installs this
//! logger, which writes `pigpu: MESSAGE` lines to stderr through `sys::out` (so a closed stderr
//! never panics) and, with `--log-file`, timestamped lines to a file. The level is set once at
//! the edge (`cmd::logging`, from `-q` / `-v` / `PIGPU_LOG`).

use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Writes records at or above the level set by [`init`] to stderr (and the log file, if any).
struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// The `--log-file`, set at most once, before any record is written.
static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // Dependencies' debug records (the line editor logs every key) only under -vv: `-v` is
        // for pigpu's own detail.
        let ours = metadata.target().starts_with("pigpu");
        metadata.level() <= log::max_level()
            && (ours
                || metadata.level() <= log::Level::Info
                || log::max_level() >= log::LevelFilter::Trace)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        super::out::stderr(format_args!("pigpu: {msg}\n"));
        if let Some(f) = FILE.get() {
            let line = format!(
                "{} {:<5} {}: {msg}\n",
                utc_now(),
                record.level(),
                record.target()
            );
            if let Ok(mut f) = f.lock() {
                // A full disk must not stop the run; the stderr line was already written.
                let _ = f.write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        if let Some(Ok(mut f)) = FILE.get().map(|f| f.lock()) {
            let _ = f.flush();
        }
    }
}

/// Installs the stderr logger at `level` (a second call only changes the level).
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Also writes every record that passes the level to `file` (called once, after [`init`]);
/// returns false when a file was already set.
pub fn set_file(file: std::fs::File) -> bool {
    FILE.set(Mutex::new(file)).is_ok()
}

/// `2026-12-04T22:30:01.123Z`, from the system clock.
fn utc_now() -> String {
    let d = super::clock::since_epoch();
    super::clock::utc_millis(d.as_secs(), d.subsec_millis())
}
