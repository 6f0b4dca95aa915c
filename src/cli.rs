//! The command line, as clap derive types. Each subcommand's arguments live beside its
//! implementation in `src/cmd/<name>.rs`; this file only lists the subcommands and dispatches
//! to them.

use clap::{CommandFactory, Parser, Subcommand};

use crate::cmd::{self, Outcome};

/// Run language models on a Raspberry Pi 5 / CM5 with a desktop NVIDIA GPU — or on any Linux
/// machine with a Vulkan GPU, or on the CPU.
#[derive(Debug, Parser)]
#[command(name = "pigpu", version, propagate_version = true)]
#[command(after_help = "Exit codes: 0 ok, 1 ran and found problems, 2 failure.")]
pub struct Cli {
    /// `-v`/`-q` and the log format, global to every subcommand.
    #[command(flatten)]
    pub log: cmd::logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

/// Rewrites llama-bench's multi-letter short flags (`-pg 512,128`) into the long form clap
/// understands, and llama.cpp's other spellings (`-ngl`, `-fa`, `-c`, `-m`, `-f`; see
/// `cmd::compat`), so command lines copied from llama.cpp's tools work. A value pigpu cannot
/// honour (a partial `-ngl`) ends the program with exit 2 and a message, as a clap error does.
pub fn normalize_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let args = args
        .into_iter()
        .map(|a| if a == "-pg" { "--pg".into() } else { a })
        .collect();
    cmd::compat::rewrite(args).unwrap_or_else(|e| {
        eprintln!("pigpu: error: {e}");
        std::process::exit(2)
    })
}

// The subcommands. No `///` here: clap would take it as the top-level `about` text.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Provision the patched NVIDIA open kernel modules, userspace and boot config on a Pi.
    Setup(cmd::setup::Args),
    /// Find what is wrong with a Pi + GPU setup (or explain saved logs) and say how to fix it.
    Doctor(cmd::doctor::Args),
    /// Generate text with a GGUF model: completion or interactive chat.
    Run(cmd::run::Args),
    /// Serve a GGUF model over an OpenAI-compatible HTTP API (chat, completions, streaming).
    Serve(cmd::serve::Args),
    /// Measure prompt-processing and generation throughput, llama-bench style.
    Bench(cmd::bench::Args),
    /// Show a GGUF file's metadata, hyper-parameters, tokenizer and tensor table.
    Inspect(cmd::inspect::Args),
    /// Turn text into token ids with a model's own tokenizer.
    Tokenize(cmd::tokenize::Args),
    /// Measure a model's perplexity on a text file.
    Perplexity(cmd::perplexity::Args),
    /// Write a real model's shape (sizes, quant mix, vocabulary size) with random weights.
    Shape(cmd::shape::Args),
    /// Download a GGUF model from the Hugging Face Hub by name (REPO[:QUANT]) into the shared cache.
    Pull(cmd::pull::Args),
    /// List the GGUF models in the cache: name, size, last use, path.
    List(cmd::list::Args),
    /// Remove a pulled model from the cache.
    Rm(cmd::rm::Args),
    /// Print a shell completion script (bash, zsh, fish, ...) or write the man pages.
    Completions(cmd::completions::Args),
}

/// Runs the subcommand `cli` names.
pub fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Setup(a) => cmd::setup::run(a),
        Command::Doctor(a) => cmd::doctor::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Tokenize(a) => cmd::tokenize::run(a),
        Command::Perplexity(a) => cmd::perplexity::run(a),
        Command::Shape(a) => cmd::shape::run(a),
        Command::Completions(a) => cmd::completions::run(a, Cli::command()),
        Command::Pull(a) => cmd::pull::run(a),
        Command::List(a) => cmd::list::run(a),
        Command::Rm(a) => cmd::rm::run(a),
    }
}
