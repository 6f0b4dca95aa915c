//! `pigpu perplexity MODEL FILE`: how well the model predicts a text. The text is tokenized
//! without BOS and cut into consecutive windows of `--ctx` tokens; inside each window every
//! token after the first is scored given the tokens before it (the first is context only), and
//! the perplexity is `exp(mean negative log-likelihood)` over all scored tokens.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::Outcome;
use crate::engine::{Backend, Engine};

/// Arguments of `pigpu perplexity`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  pigpu perplexity model.gguf wiki.txt --ctx 512 --chunks 4
  pigpu perplexity model.gguf wiki.txt --json   # {\"ppl\", \"n_tokens\", \"n_scored\", \"n_windows\", \"ctx\"}")]
pub struct Args {
    /// The GGUF model file, or a pulled model's name (ORG/NAME[:QUANT]).
    pub model: PathBuf,
    /// The text file to score (UTF-8).
    pub file: PathBuf,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score only the first K windows.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Which engine runs the model.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// CPU threads (default: one per core).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Print one JSON object: {"ppl", "n_tokens" (in the text), "n_scored", "n_windows", "ctx"}.
    #[arg(long)]
    pub json: bool,
}

/// Tokens scored per call, so that only this many rows of logits exist at a time.
const BATCH: usize = 64;

/// Negative log-likelihood of each `targets[i]` under the logits row `i` (`n_vocab` wide).
fn nll_rows(logits: &[f32], n_vocab: usize, targets: &[u32]) -> Vec<f64> {
    logits
        .chunks_exact(n_vocab)
        .zip(targets)
        .map(|(row, &t)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
            let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            max + sum.ln() - row[t as usize] as f64
        })
        .collect()
}

/// Scores `tokens` window by window; returns (sum of NLL, tokens scored, windows).
pub fn score(
    engine: &mut dyn Engine,
    tokens: &[u32],
    ctx: usize,
    chunks: Option<usize>,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<(f64, usize, usize)> {
    let mut windows = tokens.len() / ctx;
    if let Some(k) = chunks {
        windows = windows.min(k);
    }
    let (mut nll, mut count) = (0.0f64, 0usize);
    for w in 0..windows {
        let win = &tokens[w * ctx..(w + 1) * ctx];
        engine.reset();
        let mut start = 0;
        while start < win.len() {
            let end = (start + BATCH).min(win.len());
            let logits = engine.prefill_all_logits(&win[start..end])?;
            let n_vocab = logits.len() / (end - start);
            // Row i predicts token start + i + 1; the last row of the window predicts nothing.
            let targets = &win[start + 1..(end + 1).min(win.len())];
            for v in nll_rows(&logits, n_vocab, targets) {
                nll += v;
                count += 1;
            }
            start = end;
        }
        progress(w + 1, windows, (nll / count.max(1) as f64).exp());
    }
    Ok((nll, count, windows))
}

pub fn run(a: Args) -> Result<Outcome> {
    if a.ctx < 2 {
        bail!(
            "--ctx {} is too small: a window needs at least 2 tokens",
            a.ctx
        );
    }
    if a.chunks == Some(0) {
        bail!("--chunks 0 scores nothing; give at least 1");
    }
    let text = crate::sys::root::read_regular(&a.file, super::MAX_TEXT_INPUT)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let text = String::from_utf8(text)
        .map_err(|e| anyhow::anyhow!("{} is not UTF-8 text: {e}", a.file.display()))?;
    let model = super::pull::model_path(&a.model)?;
    let mut l = super::run::load(&model, a.backend, Some(a.ctx), a.threads, true, None)?;
    let tokens = l
        .tokenizer
        .encode(&text, false, false)
        .context("tokenizing the text")?;
    if tokens.len() < a.ctx {
        bail!(
            "{} has {} tokens, fewer than one window of --ctx {}; use a smaller --ctx or a longer text",
            a.file.display(),
            tokens.len(),
            a.ctx
        );
    }
    let tty = std::io::stderr().is_terminal();
    let t0 = std::time::Instant::now();
    let (nll, count, windows) = score(l.engine.as_mut(), &tokens, a.ctx, a.chunks, |w, n, p| {
        if tty {
            eprint!("\rpigpu: window {w}/{n}, perplexity so far {p:.4}");
        }
    })?;
    if tty {
        eprintln!();
    }
    let ppl = (nll / count as f64).exp();
    eprintln!(
        "pigpu: scored {count} tokens in {windows} windows of {} in {:.1} s",
        a.ctx,
        t0.elapsed().as_secs_f64()
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({"ppl": ppl, "n_tokens": tokens.len(), "n_scored": count, "n_windows": windows, "ctx": a.ctx})
        );
    } else {
        println!(
            "perplexity: {ppl:.4} ({count} tokens, {windows} windows of {})",
            a.ctx
        );
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_of_a_uniform_row_is_ln_n() {
        let v = nll_rows(&[0.0; 8], 4, &[1, 3]);
        assert!(v.iter().all(|x| (x - 4f64.ln()).abs() < 1e-12));
    }
}
