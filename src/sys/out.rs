//! Writes behind the crate's `print!`/`eprint!` macros (see `lib.rs`): a closed stdout ends the
//! program quietly (exit 0, like `pigpu inspect m.gguf | head`), unless a command that changes
//! the system said [`keep_going_when_closed`]: then the output is dropped and the command runs
//! to its end, so its exit status says how it really ended. A failed stderr write is dropped.
//! Neither ever panics, whatever state a transaction is in.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static KEEP_GOING: AtomicBool = AtomicBool::new(false);

/// From now on a closed stdout does not end the program. `setup` calls this before it may
/// change anything: exiting 0 there would look like success with the run cut off half-way.
pub fn keep_going_when_closed() {
    KEEP_GOING.store(true, Ordering::Relaxed);
}

/// Writes to stdout; when the reader has gone away, exits 0 (or, after
/// [`keep_going_when_closed`], drops the output and carries on).
pub fn stdout(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            if KEEP_GOING.load(Ordering::Relaxed) {
                return;
            }
            // Nothing more can be shown, and nothing is half-done.
            std::process::exit(0);
        }
    }
}

/// Writes to stderr; an error is dropped (there is nowhere left to report it).
pub fn stderr(args: std::fmt::Arguments) {
    let _ = std::io::stderr().lock().write_fmt(args);
}
