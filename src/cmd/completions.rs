//! `pigpu completions`: shell completion scripts and man pages, generated from the clap
//! definitions of this very binary (so they always match its flags). The Debian packages ship
//! both, written at packaging time by `scripts/package.sh`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap_complete::Shell;

use super::Outcome;

/// Arguments of `pigpu completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  pigpu completions bash > ~/.local/share/bash-completion/completions/pigpu
  pigpu completions zsh > ~/.zfunc/_pigpu         (with fpath+=~/.zfunc before compinit)
  pigpu completions fish > ~/.config/fish/completions/pigpu.fish
  pigpu completions --man /tmp/man && man -l /tmp/man/pigpu-run.1

The Debian package installs the bash, zsh and fish completions and the man pages already
(`man pigpu`, `man pigpu-setup`, ...).")]
pub struct Args {
    /// The shell to print a completion script for, on standard output.
    #[arg(value_enum, required_unless_present = "man", conflicts_with = "man")]
    pub shell: Option<Shell>,
    /// Write man pages instead: pigpu.1 and one pigpu-SUBCOMMAND.1 per subcommand, into DIR
    /// (created when missing); prints the paths written.
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
}

/// Prints or writes what `cli` (the whole command line's definition, handed down by
/// `cli::dispatch` so that this module does not import the command-line types) generates.
pub fn run(args: Args, mut cli: clap::Command) -> anyhow::Result<Outcome> {
    match (args.shell, &args.man) {
        (Some(shell), None) => {
            // Rendered into memory first: clap_complete panics on a failed write, and a closed
            // pipe (`pigpu completions bash | head`) must stay an ordinary error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli, "pigpu", &mut script);
            let mut out = std::io::stdout().lock();
            out.write_all(&script)
                .and_then(|()| out.flush())
                .context("writing the completion script to standard output")?;
        }
        (None, Some(dir)) => {
            for path in write_man_pages(dir, cli)? {
                println!("{}", path.display());
            }
        }
        // clap enforces exactly one of the two; this is for callers that build Args by hand.
        _ => bail!("give either a shell (bash, zsh, fish, elvish, powershell) or --man DIR"),
    }
    Ok(Outcome::Ok)
}

/// Writes pigpu.1 and pigpu-SUBCOMMAND.1 for every visible subcommand of `cli` into `dir`;
/// returns the paths in the order written (top-level page first).
fn write_man_pages(dir: &Path, cli: clap::Command) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the man page directory {}", dir.display()))?;
    let mut cmd = cli.disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut written = Vec::new();
    for page in pages {
        let man = clap_mangen::Man::new(page).manual("pigpu manual");
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)
            .context("rendering a man page into memory")?;
        std::fs::write(&path, text)
            .with_context(|| format!("writing the man page {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
