//! The `pigpu` binary: parse, dispatch, print the error chain, map to an exit code.
//! Exit codes: 0 ok, 1 "ran and found problems", 2 failure (see `pigpu::cmd::Outcome`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A model file truncated while mapped: an error naming it, not "Bus error".
    pigpu::sys::sigbus::install();
    let cli = pigpu::cli::Cli::parse_from(pigpu::cli::normalize_args(std::env::args_os()));
    match cli.log.install().and_then(|()| pigpu::cli::dispatch(cli)) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            if is_broken_pipe(&err) {
                // `pigpu inspect m.gguf | head` is not an error.
                return ExitCode::SUCCESS;
            }
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "pigpu: error: {err}");
            for cause in err.chain().skip(1) {
                let _ = writeln!(stderr, "  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
