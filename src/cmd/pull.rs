//! `pigpu pull REPO[:QUANT]`: a GGUF model from the Hugging Face Hub into the shared Hugging
//! Face cache. Also home to the one place that reads the Hub's environment (`HF_ENDPOINT`,
//! `HF_TOKEN`, the cache dirs) and to the model-argument resolver every model command calls.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Outcome;
use crate::hub::{self, HubConfig, HubError, ModelRef, Resolved};
use crate::sys::prompt::{PromptError, Prompter, Prompts};

/// Arguments of `pigpu pull`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  pigpu pull HuggingFaceTB/SmolLM2-135M-Instruct-GGUF           # the default quant (Q4_K_M when there is one)
  pigpu pull hf.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:Q8_0   # a named quant
  pigpu run HuggingFaceTB/SmolLM2-135M-Instruct-GGUF -p Hello   # then use the name anywhere a file goes

Files go to the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else
~/.cache/huggingface/hub), shared with huggingface_hub and llama.cpp. HF_ENDPOINT names another
Hub (a mirror); HF_TOKEN (or the file `huggingface-cli login` writes) is sent for private and
gated repos. The path of the model file is printed on stdout.")]
pub struct Args {
    /// The model: ORG/NAME or ORG/NAME:QUANT, optionally after hf.co/.
    pub name: String,
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The token: `HF_TOKEN`, else the file at `HF_TOKEN_PATH`, else `HF_HOME/token` (where
/// `huggingface-cli login` saves it).
fn token() -> Option<String> {
    if let Some(t) = env("HF_TOKEN") {
        return Some(t.trim().to_string());
    }
    let path = env("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
        let home = env("HF_HOME").map(PathBuf::from).or_else(|| {
            env("XDG_CACHE_HOME")
                .map(|x| Path::new(&x).join("huggingface"))
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache/huggingface")))
        })?;
        Some(home.join("token"))
    })?;
    let t = std::fs::read_to_string(path).ok()?;
    Some(t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The Hub settings from the environment (the only place they are read).
pub fn hub_config() -> Result<HubConfig> {
    let cache = hub::cache_dir_from(env)
        .context("no place for the model cache: set HF_HUB_CACHE (or HF_HOME, or HOME)")?;
    let mut cfg = HubConfig::new(
        &env("HF_ENDPOINT").unwrap_or_else(|| hub::DEFAULT_ENDPOINT.to_string()),
        cache,
    );
    cfg.token = token();
    cfg.progress = super::progress::Display::stderr().reporter();
    Ok(cfg)
}

/// What a model command opens for its `MODEL` argument: the file itself, or the cached file of
/// a model name (`ORG/NAME[:QUANT]`); a name not yet pulled is an error saying to pull it.
pub fn model_path(arg: &Path) -> Result<PathBuf> {
    Ok(hub::resolve_cached(arg, &hub_config()?)?)
}

/// [`model_path`] for `pigpu run`: a name not yet pulled is pulled after asking on a terminal;
/// in a script (no terminal) it is an error telling to run `pigpu pull`, never a silent download.
pub fn model_path_or_pull(arg: &Path) -> Result<PathBuf> {
    let cfg = hub_config()?;
    let name = match hub::resolve(arg, &cfg) {
        Resolved::Path(p) | Resolved::Cached { path: p, .. } => return Ok(p),
        Resolved::Missing(name) => name,
    };
    let question = format!(
        "{name} is not downloaded yet; pull it from {} now?",
        cfg.endpoint
    );
    match Prompts::new(false).confirm(&question, true) {
        Ok(true) => Ok(pull_and_report(&name, &cfg)?.path),
        Ok(false) => bail!("{name} was not pulled; nothing to run"),
        Err(PromptError::NoTerminal { .. }) => Err(HubError::NotCached {
            name: name.to_string(),
            cache: cfg.cache,
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Pulls and says on stderr what was taken.
fn pull_and_report(name: &ModelRef, cfg: &HubConfig) -> Result<hub::Pulled> {
    let p = hub::pull(name, cfg).with_context(|| format!("pulling {name}"))?;
    let how = if p.transferred == 0 {
        "already in the cache, verified".to_string()
    } else if p.resumed {
        format!(
            "resumed, {} MiB fetched, sha256 verified",
            p.transferred >> 20
        )
    } else {
        "sha256 verified".to_string()
    };
    eprintln!(
        "pigpu: {} ({}, {:.1} MiB, {how}) -> {}",
        p.name,
        p.file,
        p.size as f64 / (1 << 20) as f64,
        p.path.display()
    );
    Ok(p)
}

pub(crate) fn run(a: Args) -> Result<Outcome> {
    let name = ModelRef::parse(&a.name)?;
    let cfg = hub_config()?;
    let p = pull_and_report(&name, &cfg)?;
    println!("{}", p.path.display());
    Ok(Outcome::Ok)
}
