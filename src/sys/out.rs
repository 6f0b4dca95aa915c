//! Writes behind the crate's `print!`/`eprint!` macros (see `lib.rs`): a closed stdout ends the
//! program quietly (exit 0, like `pigpu inspect m.gguf | head`), a failed stderr write is
//! dropped. Neither ever panics, whatever state a transaction is in.

use std::io::Write;

/// Writes to stdout; exits 0 when the reader has gone away.
pub fn stdout(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // Nothing more can be shown; every change so far is already journaled on disk.
            std::process::exit(0);
        }
    }
}

/// Writes to stderr; an error is dropped (there is nowhere left to report it).
pub fn stderr(args: std::fmt::Arguments) {
    let _ = std::io::stderr().lock().write_fmt(args);
}
