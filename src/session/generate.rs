//! The generation loop, independent of text: prefill the prompt, then step until a stop token,
//! the token budget, or the end of the context. The caller turns tokens into text (streaming)
//! through the callback; the timings and counters of one generation come back with it.
//!
//! A constrained generation ([`Constrained`], e.g. `--format json`) samples on the host: each
//! step feeds the previous token with `prefill`, reads the logits back, masks them and draws with
//! the host sampler. That works on every engine through the `Engine` trait, at the cost of one
//! logits read-back (4 × n_vocab bytes) and one pass over the vocabulary's trie per token.

use std::time::{Duration, Instant};

use super::constrain::JsonConstraint;
use crate::engine::{Engine, SamplingParams};
use crate::model::sampler::{self, Rng};

/// What the callback tells the loop after each token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on generating.
    Continue,
    /// Stop now: the generation ends as `Interrupted` (Ctrl-C, a write error).
    Stop,
    /// A stop string was found in the text.
    StopString,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-generation token was sampled (it is not part of the output).
    EndOfText,
    /// `max_tokens` tokens were generated.
    Length,
    /// The context is full.
    Context,
    /// The callback asked to stop (Ctrl-C, a write error).
    Interrupted,
    /// A stop string was found (the text ends before it).
    StopString,
    /// The JSON value the output was constrained to is complete.
    JsonComplete,
}

/// What a constrained generation needs besides the engine.
pub struct Constrained<'a> {
    /// The JSON recogniser each sampled token must satisfy.
    pub json: &'a mut JsonConstraint,
    /// The tokens in the engine before this generation (the prompt), for the repetition
    /// penalty, which the host sampler applies over them and the generated ones.
    pub context: &'a [u32],
}

/// The outcome of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated token ids (without the stop token).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub stop: StopReason,
    /// The end-of-generation token that ended it, if one did. Like every sampled token it is
    /// held by the engine and fed before the next prompt, so a caller tracking the context must
    /// count it.
    pub stop_token: Option<u32>,
    /// Time spent on the prompt (prefill).
    pub prompt_time: Duration,
    /// Time from the end of the prompt to the end of generation.
    pub gen_time: Duration,
}

/// Load, prompt and generation times of one generation, with their rates (`--json`'s
/// `timings`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timings {
    /// Opening the model to ready engine, in milliseconds.
    pub load_ms: f64,
    /// Prompt processing time, in milliseconds.
    pub prompt_ms: f64,
    /// Prompt tokens processed per second.
    pub prompt_tokens_per_s: f64,
    /// Generation time, in milliseconds.
    pub gen_ms: f64,
    /// Tokens generated per second.
    pub gen_tokens_per_s: f64,
}

impl Generation {
    /// The timings of this generation after a load of `load`, over `n_prompt` prompt tokens.
    pub fn timings(&self, load: Duration, n_prompt: usize) -> Timings {
        let rate = |n: usize, d: Duration| {
            if d.as_secs_f64() > 0.0 {
                n as f64 / d.as_secs_f64()
            } else {
                0.0
            }
        };
        Timings {
            load_ms: load.as_secs_f64() * 1e3,
            prompt_ms: self.prompt_time.as_secs_f64() * 1e3,
            prompt_tokens_per_s: rate(n_prompt, self.prompt_time),
            gen_ms: self.gen_time.as_secs_f64() * 1e3,
            gen_tokens_per_s: rate(self.tokens.len(), self.gen_time),
        }
    }
}

/// Prefills `prompt` (may be empty when the engine already holds the context) and generates up
/// to `max_tokens` tokens. `is_stop(t)` marks end-of-generation tokens; `on_token` sees each
/// generated token as soon as it exists.
pub fn generate(
    engine: &mut dyn Engine,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    rng: &mut Rng,
    is_stop: &dyn Fn(u32) -> bool,
    on_token: &mut dyn FnMut(u32) -> Flow,
) -> anyhow::Result<Generation> {
    generate_with(
        engine, prompt, max_tokens, params, rng, is_stop, None, on_token,
    )
}

/// [`generate`], optionally under a constraint. A constrained generation ends when its value is
/// complete ([`StopReason::JsonComplete`]) and its last token is not held by the engine (it was
/// sampled on the host), so `stop_token` is then `None` and nothing is pending.
#[allow(clippy::too_many_arguments)]
pub fn generate_with(
    engine: &mut dyn Engine,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    rng: &mut Rng,
    is_stop: &dyn Fn(u32) -> bool,
    mut constrained: Option<Constrained<'_>>,
    on_token: &mut dyn FnMut(u32) -> Flow,
) -> anyhow::Result<Generation> {
    let t0 = Instant::now();
    if !prompt.is_empty() {
        engine.prefill(prompt)?;
    }
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();
    let mut tokens = Vec::new();
    let mut stop_token = None;
    // Host time spent masking and sampling under the constraint (reported with -v).
    let mut constrain_time = Duration::ZERO;
    let mut constrained_steps = 0usize;
    let stop = loop {
        if tokens.len() >= max_tokens {
            break StopReason::Length;
        }
        // A step after the first feeds the previous token, which needs a free position.
        if !tokens.is_empty() && engine.n_past() + 1 > engine.n_ctx() {
            break StopReason::Context;
        }
        let u = rng.next_f32();
        let t = match constrained.as_mut() {
            None => engine.step(params, u)?,
            Some(c) => {
                if let Some(&last) = tokens.last() {
                    engine.prefill(&[last])?;
                }
                let mut logits = engine.logits()?;
                let tc = Instant::now();
                c.json.mask(&mut logits)?;
                let history: Vec<u32> = c.context.iter().chain(&tokens).copied().collect();
                let t = sampler::sample(&mut logits, &history, params, u);
                if !is_stop(t) {
                    c.json.accept(t)?;
                }
                constrain_time += tc.elapsed();
                constrained_steps += 1;
                t
            }
        };
        if is_stop(t) {
            // A constrained token was drawn on the host: the engine does not hold it.
            stop_token = constrained.is_none().then_some(t);
            break StopReason::EndOfText;
        }
        tokens.push(t);
        match on_token(t) {
            Flow::Continue => {}
            Flow::Stop => break StopReason::Interrupted,
            Flow::StopString => break StopReason::StopString,
        }
        if constrained.as_ref().is_some_and(|c| c.json.is_done()) {
            break StopReason::JsonComplete;
        }
    };
    if constrained.is_some() {
        log::info!(
            "json constraint: {:.2} ms per token masking and sampling on the host ({} tokens)",
            constrain_time.as_secs_f64() * 1e3 / constrained_steps.max(1) as f64,
            constrained_steps
        );
    }
    Ok(Generation {
        tokens,
        stop,
        stop_token,
        prompt_time,
        gen_time: t1.elapsed(),
    })
}

/// Checks that `n_prompt` tokens plus `n` generated ones fit in a context of `n_ctx`.
pub fn check_fits(n_prompt: usize, n: usize, n_ctx: usize) -> Result<(), super::SessionError> {
    use super::SessionError::{PromptTooLong, TooManyTokens};
    if n_prompt > n_ctx {
        return Err(PromptTooLong { n_prompt, n_ctx });
    }
    if n_prompt.saturating_add(n) > n_ctx {
        return Err(TooManyTokens { n_prompt, n, n_ctx });
    }
    Ok(())
}
