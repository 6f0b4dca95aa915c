//! `pigpu inspect` (not yet implemented: exits 2 with a clear message).

use std::path::PathBuf;

use super::Outcome;

/// Arguments of `pigpu inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  pigpu inspect --help")]
pub struct Args {
    /// Placeholder until this command lands.
    #[arg(hide = true)]
    pub rest: Vec<PathBuf>,
}

pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    super::not_yet("inspect")
}
