//! pigpu as a library: the binary in `main.rs` is a thin shell over these modules, and the
//! integration tests in `tests/it/` drive the same code.
#![warn(missing_docs)]

// `print!`/`println!`/`eprint!`/`eprintln!` for the whole crate (macro_rules shadow the std ones
// in every module below): std's panic when the stream is closed (`pigpu setup --dry-run | true`,
// `… 2>&1 | head -c 4000` during a transaction). Here a closed stdout ends the program quietly
// with exit 0 (what was done is already journaled; the next run continues or rolls back), and a
// failed write to stderr is dropped: there is nobody left to tell.
macro_rules! print {
    ($($arg:tt)*) => { $crate::sys::out::stdout(format_args!($($arg)*)) };
}
macro_rules! println {
    () => { $crate::sys::out::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::sys::out::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::sys::out::stderr(format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { $crate::sys::out::stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::sys::out::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

pub mod bench;
pub mod cli;
pub mod cmd;
pub mod doctor;
pub mod engine;
pub mod gguf;
pub mod hub;
pub mod model;
pub mod platform;
pub mod provision;
pub mod quant;
pub(crate) mod serve;
pub mod session;
pub mod sys;
