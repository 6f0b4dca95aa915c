//! `pigpu rm NAME`: removes a pulled model from the Hugging Face cache: the snapshot entries of
//! the quant named (or of every GGUF of the repo), and their blobs unless another snapshot
//! still links to them. Asks first on a terminal; `--yes` for scripts.

use anyhow::{bail, Result};

use super::Outcome;
use crate::hub::{self, HubError, ModelRef};
use crate::sys::prompt::{Prompter, Prompts};

/// Arguments of `pigpu rm`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  pigpu rm HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_K_M
  pigpu rm HuggingFaceTB/SmolLM2-135M-Instruct-GGUF --yes   # every GGUF of the repo, no question

Only GGUF files that `pigpu list` shows are removed; other files of the repo (from other tools)
stay, and so does the repo directory while anything is left in it.")]
pub struct Args {
    /// The model: ORG/NAME (all its GGUF files) or ORG/NAME:QUANT, as `pigpu list` shows it.
    pub name: String,
    /// Remove without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub(crate) fn run(a: Args) -> Result<Outcome> {
    let name = ModelRef::parse(&a.name)?;
    let cfg = super::pull::hub_config()?;
    let found = hub::matching(&cfg.cache, &name);
    if found.is_empty() {
        let e = HubError::NotCached {
            name: name.to_string(),
            cache: cfg.cache,
        };
        bail!("nothing to remove: {e}");
    }
    let total: u64 = found.iter().map(|m| m.size).sum();
    for m in &found {
        eprintln!("  {}", m.path.display());
    }
    if !a.yes {
        let q = format!(
            "Remove {} file(s) of {name} ({:.1} MiB)?",
            found.len(),
            total as f64 / (1 << 20) as f64
        );
        if !Prompts::new(false).confirm(&q, false)? {
            bail!("{name}: nothing removed");
        }
    }
    let r = hub::remove(&cfg.cache, &found)?;
    eprintln!(
        "pigpu: removed {name}: {} file(s), {:.1} MiB freed{}",
        r.links.len(),
        r.bytes as f64 / (1 << 20) as f64,
        if r.repo_dir_removed {
            " (the repo's cache directory is gone)"
        } else {
            ""
        }
    );
    Ok(Outcome::Ok)
}
