//! `pigpu perplexity MODEL FILE`: how well the model predicts a text, computed the way
//! `llama-perplexity` does so the numbers compare with published tables. The text is tokenized
//! as llama.cpp does (a BOS first when the vocabulary asks for one) and cut into consecutive
//! windows of `--ctx` tokens (the tail is dropped; the first token of each window is replaced by
//! BOS when the vocabulary adds one); each window is evaluated from an empty cache and only its
//! second half is scored (positions `ctx/2 .. ctx-1` predict the next token), so every scored
//! token has at least `ctx/2` tokens of context. The result is `exp(mean NLL)` with llama.cpp's
//! ± estimate: `ppl × sd(NLL) / sqrt(n − 1)`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::model_args::EngineArgs;
use super::Outcome;
use crate::engine::Engine;

/// Arguments of `pigpu perplexity`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  pigpu perplexity model.gguf wiki.txt --ctx 512 --chunks 4
  pigpu perplexity model.gguf wiki.txt -c 256          # llama-perplexity's -c
  pigpu perplexity model.gguf wiki.txt --json   # {\"ppl\", \"ppl_err\", \"n_tokens\", \"n_scored\", \"n_windows\", \"ctx\", \"window_ppl\"}

The text needs at least 2 × ctx tokens, as for llama-perplexity.")]
pub struct Args {
    /// The GGUF model file, or a pulled model's name (ORG/NAME[:QUANT]).
    pub model: PathBuf,
    /// The text file to score (UTF-8).
    pub file: PathBuf,
    /// Tokens per window (llama-perplexity's `-c`).
    #[arg(short = 'c', long, visible_alias = "ctx-size", default_value_t = 512)]
    pub ctx: usize,
    /// Score only the first K windows.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Engine choice and Vulkan device (`--backend`, `--device`).
    #[command(flatten)]
    pub engine: EngineArgs,
    /// CPU threads (default: one per core).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Print one JSON object: {"ppl", "ppl_err" (the ± estimate), "n_tokens" (in the text),
    /// "n_scored", "n_windows", "ctx", "window_ppl" (running perplexity after each window, as
    /// llama-perplexity prints `[1]43.76,[2]33.30,…`)}.
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

/// Scores every prediction in each window (not only the second half): the definition of the
/// engine tests' reference data (`tests/fixtures/reference/*.json`, issue 3), which checks the
/// logits of every position. Returns (sum of NLL, tokens scored, windows).
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

/// What [`llama_perplexity`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// `exp(mean NLL)` over the scored tokens.
    pub ppl: f64,
    /// llama-perplexity's ± estimate: `ppl × sqrt(var(NLL) / (n − 1))`.
    pub ppl_err: f64,
    /// Tokens whose negative log-likelihood was counted (the second half of each window).
    pub n_scored: usize,
    /// Windows of `--ctx` tokens evaluated.
    pub n_windows: usize,
    /// The running perplexity after each window.
    pub window_ppl: Vec<f64>,
}

/// Scores `tokens` as `llama-perplexity` does: windows of `ctx` tokens, each from an empty
/// cache, the first token replaced by `bos` when given, and only the predictions from position
/// `ctx/2` on scored. `progress(window, windows, ppl_so_far)` is called after each window.
pub fn llama_perplexity(
    engine: &mut dyn Engine,
    tokens: &[u32],
    ctx: usize,
    chunks: Option<usize>,
    bos: Option<u32>,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<Perplexity> {
    let mut windows = tokens.len() / ctx;
    if let Some(k) = chunks {
        windows = windows.min(k);
    }
    let first = ctx / 2;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut window_ppl = Vec::with_capacity(windows);
    for w in 0..windows {
        let mut win = tokens[w * ctx..(w + 1) * ctx].to_vec();
        if let Some(b) = bos {
            win[0] = b;
        }
        engine.reset();
        // The first half is context only: no logits are needed for it.
        engine.prefill(&win[..first])?;
        let mut start = first;
        // Positions first .. ctx-2 predict tokens first+1 .. ctx-1; the last position's
        // prediction has no target, so it is never computed.
        while start < ctx - 1 {
            let end = (start + BATCH).min(ctx - 1);
            let logits = engine.prefill_all_logits(&win[start..end])?;
            let n_vocab = logits.len() / (end - start);
            for v in nll_rows(&logits, n_vocab, &win[start + 1..end + 1]) {
                nll += v;
                nll2 += v * v;
                count += 1;
            }
            start = end;
        }
        let p = (nll / count.max(1) as f64).exp();
        window_ppl.push(p);
        progress(w + 1, windows, p);
    }
    anyhow::ensure!(count > 1, "no tokens were scored (--ctx {ctx})");
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let sd = if var > 0.0 {
        (var / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        ppl_err: sd * ppl,
        n_scored: count,
        n_windows: windows,
        window_ppl,
    })
}

pub(crate) fn run(a: Args) -> Result<Outcome> {
    if a.ctx < 4 {
        bail!(
            "--ctx {} is too small: a window needs at least 4 tokens (its second half is scored)",
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
    let opts = a.engine.session(Some(a.ctx), a.threads, true)?;
    let mut l = super::model_args::load(&model, &opts)?;
    // As llama-perplexity: special tokens added as the vocabulary says, special text not parsed.
    let tokens = l
        .tokenizer()
        .encode(&text, true, false)
        .context("tokenizing the text")?;
    if tokens.len() < 2 * a.ctx {
        bail!(
            "{} has {} tokens; perplexity with --ctx {} needs at least {} (two windows, as \
             llama-perplexity); use a smaller --ctx or a longer text",
            a.file.display(),
            tokens.len(),
            a.ctx,
            2 * a.ctx
        );
    }
    let bos = if l.tokenizer().add_bos() {
        l.tokenizer().bos_id()
    } else {
        None
    };
    let display = super::progress::Display::stderr();
    let t0 = std::time::Instant::now();
    let r = llama_perplexity(
        l.engine.as_mut(),
        &tokens,
        a.ctx,
        a.chunks,
        bos,
        |w, n, p| display.counter(format!("pigpu: window {w}/{n}, perplexity so far {p:.4}")),
    );
    display.clear();
    let r = r?;
    log::info!(
        "scored {} tokens (the second half of {} windows of {}) in {:.1} s",
        r.n_scored,
        r.n_windows,
        a.ctx,
        t0.elapsed().as_secs_f64()
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "ppl": r.ppl,
                "ppl_err": r.ppl_err,
                "n_tokens": tokens.len(),
                "n_scored": r.n_scored,
                "n_windows": r.n_windows,
                "ctx": a.ctx,
                "window_ppl": r.window_ppl,
            })
        );
    } else {
        println!(
            "perplexity: {:.4} +/- {:.5} ({} tokens scored, {} windows of {})",
            r.ppl, r.ppl_err, r.n_scored, r.n_windows, a.ctx
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
