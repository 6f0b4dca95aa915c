//! One file per subcommand. This is the only layer that wires the other modules together:
//! `gguf`, `model`, `engine`, `doctor`, `provision` and `sys` do not know about each other's
//! command-line flags.

pub mod bench;
pub mod doctor;
pub mod inspect;
pub mod perplexity;
pub mod run;
pub mod setup;
pub mod tokenize;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: the command ran and found problems (doctor findings, failed checks).
    Problems,
    /// Exit 130 (128 + SIGINT, as a shell reports it): stopped by Ctrl-C after printing what
    /// finished (`pigpu bench`).
    Interrupted,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Problems => ExitCode::from(1),
            Outcome::Interrupted => ExitCode::from(130),
        }
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Setup(a) => setup::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Run(a) => run::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Perplexity(a) => perplexity::run(a),
    }
}
