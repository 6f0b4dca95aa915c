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

/// `2026-12-04T22:30:01.123Z`, from the system clock (no time-zone database needed).
fn utc_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(d.as_secs(), d.subsec_millis())
}

/// Formats seconds since the epoch as RFC 3339 UTC with milliseconds.
fn format_utc(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for every date after 1970.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (a leap day) 12:34:56 UTC.
        assert_eq!(format_utc(1_709_210_096, 7), "2024-02-29T12:34:56.007Z");
        assert_eq!(format_utc(1_796_342_400, 999), "2026-12-04T00:00:00.999Z");
    }
}
