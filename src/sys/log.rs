//! The one path for diagnostics from library code: modules below `cmd/` call the `log` crate's
//! macros (`log::warn!`, `log::info!`, `log::debug!`) and never print; the binary installs this
//! logger, which writes `pigpu: MESSAGE` lines to stderr through `sys::out` (so a closed stderr
//! never panics). The level is set once at the edge (`main.rs`).

/// Writes records at or above the level set by [`init`] to stderr.
struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            super::out::stderr(format_args!("pigpu: {}\n", record.args()));
        }
    }

    fn flush(&self) {}
}

/// Installs the stderr logger at `level` (a second call only changes the level).
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
