//! `pigpu run MODEL`: text completion (`-p`) streamed to stdout, or a chat (`cmd/chat.rs`) using
//! the model's chat template. Only generated text goes to stdout (plus the prompt with
//! `--echo`); logs and timings go to stderr, so `pigpu run m.gguf -p … > out.txt` captures text.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::model_args::{self, EngineArgs, SamplingArgs};
use super::Outcome;
use crate::engine::{self, Engine, SamplingParams, StatsPerToken};
use crate::model::sampler::Rng;
use crate::model::tokenizer::StreamDecoder;
use crate::session::{check_fits, generate, Flow, Session, StopReason, Timings};

/// Arguments of `pigpu run`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  pigpu run model.gguf -p \"The capital of France is\" -n 32 --temp 0
  pigpu run model.gguf                       # interactive chat (stdin is a terminal)
  pigpu run model.gguf --chat -p \"Why is the sky blue?\" --system \"Be brief.\"
  pigpu run model.gguf -p \"Hello\" --json     # one JSON object with ids, text and timings
  pigpu run --list-devices                   # the Vulkan devices and which one would be used
  pigpu run model.gguf --backend vulkan --device llvmpipe -p \"Hi\"   # a CPU Vulkan, on request
  pigpu run model.gguf --backend vulkan -p \"Hi\" -n 64 --profile   # GPU time per op on stderr")]
pub struct Args {
    /// The GGUF model file.
    #[arg(required_unless_present = "list_devices")]
    pub model: Option<PathBuf>,
    /// The prompt. Without it: chat when stdin is a terminal, else the prompt is read from stdin.
    #[arg(short = 'p', long)]
    pub prompt: Option<String>,
    /// Tokens to generate at most (per chat turn).
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    pub n_predict: usize,
    /// Context length in tokens: the KV cache holds this many (default: the model's training
    /// context, at most 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Random seed; the same seed and settings give the same output (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// List the Vulkan devices, say which one would be used and why, and exit.
    #[arg(long)]
    pub list_devices: bool,
    /// CPU threads (default: one per core).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Store the KV cache as f32 instead of f16.
    #[arg(long)]
    pub kv_f32: bool,
    /// Chat using the model's chat template (the default without -p when stdin is a terminal).
    #[arg(long)]
    pub chat: bool,
    /// System message for chat.
    #[arg(long)]
    pub system: Option<String>,
    /// Also print the prompt (completion mode).
    #[arg(long)]
    pub echo: bool,
    /// Print one JSON object at the end (prompt_tokens, tokens, text, timings) instead of
    /// streaming text.
    #[arg(long)]
    pub json: bool,
    /// Time every GPU command (Vulkan engine only): a table per op kind (count, mean µs, share,
    /// weight GB/s, GFLOP/s) and the device's copy bandwidth and per-stage floor on stderr, and
    /// a `profile` object in --json output. Decoding is slightly slower while profiled.
    #[arg(long)]
    pub profile: bool,
}

pub fn run(a: Args) -> Result<Outcome> {
    if a.list_devices {
        return model_args::list_devices(&a.engine, a.json);
    }
    let params = a.sampling.params()?;
    let prompt = match &a.prompt {
        Some(p) => Some(p.clone()),
        None if a.chat || std::io::stdin().is_terminal() => None,
        None => {
            let b = super::read_stdin_capped("the prompt")?;
            Some(String::from_utf8(b).map_err(|e| {
                anyhow::anyhow!(
                    "the prompt on stdin is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                )
            })?)
        }
    };
    if prompt.as_deref() == Some("") {
        bail!("the prompt is empty (give text with -p, or pipe it on stdin)");
    }
    if a.n_predict == 0 {
        bail!("-n 0 generates nothing; give at least 1");
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let model = a.model.as_deref().context("a model file is needed")?;
    let opts = a.engine.session(a.ctx, a.threads, !a.kv_f32)?;
    let mut s = model_args::load(model, &opts)?;
    if a.profile {
        s.engine.set_profiling(true).context("--profile")?;
    }
    eprintln!("pigpu: seed {seed}");
    let mut rng = Rng::new(seed);
    match prompt {
        Some(p) if !a.chat => completion(&a, &mut s, &p, &params, &mut rng),
        Some(p) => {
            let mut chat = super::chat::Chat::new(&a, &s)?;
            chat.turn(&a, &mut s, &p, &params, &mut rng, None)?;
            Ok(Outcome::Ok)
        }
        None => super::chat::interactive(&a, &mut s, &params, &mut rng),
    }
}

/// The JSON `--json` prints (for a completion, and for each chat turn).
#[derive(serde::Serialize)]
pub(super) struct JsonOut<'a> {
    pub prompt_tokens: usize,
    pub prompt_ids: &'a [u32],
    pub tokens: &'a [u32],
    pub text: String,
    pub stop: StopReason,
    pub timings: Timings,
    pub engine: String,
    /// Engine counters averaged per generated token.
    pub stats: RunStats,
    /// `--profile`: GPU time per op kind (prompt and decode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<engine::vulkan::Profile>,
}

/// The engine's counters since they were last reset, per token, with the token count.
#[derive(serde::Serialize)]
pub(super) struct RunStats {
    tokens: u64,
    #[serde(flatten)]
    per_token: StatsPerToken,
}

impl RunStats {
    pub fn of(engine: &dyn Engine) -> RunStats {
        let s = engine.stats();
        RunStats {
            tokens: s.tokens,
            per_token: StatsPerToken::over(&s, s.tokens),
        }
    }
}

/// `--profile`: the timings since the last call, printed on stderr (and returned for --json).
pub(super) fn take_profile(engine: &mut dyn Engine) -> Option<engine::vulkan::Profile> {
    let p = engine.take_profile()?;
    eprint!("{}", p.text());
    Some(p)
}

pub(super) fn print_timings(t: &Timings, n_prompt: usize, n_gen: usize) {
    eprintln!(
        "pigpu: prompt {n_prompt} tokens in {:.0} ms ({:.1} t/s), generated {n_gen} tokens in {:.0} ms ({:.1} t/s)",
        t.prompt_ms, t.prompt_tokens_per_s, t.gen_ms, t.gen_tokens_per_s
    );
}

fn completion(
    a: &Args,
    s: &mut Session,
    prompt: &str,
    params: &SamplingParams,
    rng: &mut Rng,
) -> Result<Outcome> {
    let ids = s
        .tokenizer()
        .encode(prompt, true, true)
        .context("tokenizing the prompt")?;
    if ids.is_empty() {
        bail!("the prompt tokenizes to nothing");
    }
    check_fits(ids.len(), a.n_predict, s.engine.n_ctx())?;
    // Prefill here rather than in `generate` so the counters cover only the generation.
    let t_prompt = std::time::Instant::now();
    s.engine.prefill(&ids)?;
    let prompt_time = t_prompt.elapsed();
    s.engine.reset_stats();
    let mut out = std::io::stdout().lock();
    if a.echo && !a.json {
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
    }
    let shared = s.shared.clone();
    let tok = &shared.tokenizer;
    let mut dec = StreamDecoder::new(tok, false);
    let mut text = String::new();
    let mut io_err = None;
    let mut g = generate(
        s.engine.as_mut(),
        &[],
        a.n_predict,
        params,
        rng,
        &|t| tok.is_eog(t),
        &mut |t| {
            let piece = dec.push(t);
            text.push_str(&piece);
            if !a.json {
                if let Err(e) = out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
                    io_err = Some(e);
                    return Flow::Stop;
                }
            }
            Flow::Continue
        },
    )?;
    if let Some(e) = io_err {
        return Err(e).context("writing to stdout");
    }
    g.prompt_time = prompt_time;
    let rest = dec.finish();
    text.push_str(&rest);
    let t = g.timings(s.load_time, ids.len());
    let profile = take_profile(s.engine.as_mut());
    if a.json {
        let j = JsonOut {
            prompt_tokens: ids.len(),
            prompt_ids: &ids,
            tokens: &g.tokens,
            text,
            stop: g.stop,
            timings: t,
            engine: s.engine.describe(),
            stats: RunStats::of(s.engine.as_ref()),
            profile,
        };
        serde_json::to_writer(&mut out, &j)?;
        writeln!(out)?;
    } else {
        write!(out, "{rest}")?;
        writeln!(out)?;
        print_timings(&t, ids.len(), g.tokens.len());
    }
    Ok(Outcome::Ok)
}
