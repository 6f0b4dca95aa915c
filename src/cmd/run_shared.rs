//! What `pigpu run`'s completion (`cmd/run.rs`) and chat (`cmd/chat/`) share: the flags,
//! the `--json` object, the timing line and the `--profile` output. Kept apart so that the two
//! files import this one and not each other.

use std::path::PathBuf;

use super::model_args::{EngineArgs, SamplingArgs};
use crate::engine::{self, Engine, StatsPerToken};
use crate::session::generate::Generation;
use crate::session::{StopReason, Timings};

/// Arguments of `pigpu run`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  pigpu run model.gguf -p \"The capital of France is\" -n 32 --temp 0
  pigpu run model.gguf                       # interactive chat (stdin is a terminal)
  pigpu run model.gguf --chat -p \"Why is the sky blue?\" --system \"Be brief.\"
  pigpu run model.gguf -p \"Hello\" --json     # one JSON object with ids, text and timings
  pigpu run model.gguf -p \"Q: 2+2? A:\" --stop $'\\n'   # end before the first newline
  pigpu run model.gguf --format json -p \"A user record as JSON:\"   # the output is a JSON object
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
    /// Tokens to generate at most (default 256; a chat answer runs to its end-of-turn token
    /// unless -n is given).
    #[arg(short = 'n', long = "n-predict")]
    pub n_predict: Option<usize>,
    /// Context length in tokens: the KV cache holds this many (default: the model's training
    /// context, at most 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Sampling flags (`--temp`, `--top-k`, …).
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Random seed; the same seed and settings give the same output (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Engine choice and Vulkan device (`--backend`, `--device`).
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
    /// End the output before the first occurrence of this text (repeatable; the text itself is
    /// not printed). llama.cpp's `-r` / `--reverse-prompt` are the same flag.
    #[arg(
        long = "stop",
        short = 'r',
        visible_alias = "reverse-prompt",
        value_name = "STR"
    )]
    pub stop: Vec<String>,
    /// Constrain the output while sampling: `json` makes it a JSON object (tokens that would
    /// break it are never picked) and ends it when the object closes. Completion mode only.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,
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

impl Args {
    /// `-n` for a completion: 256 unless given.
    pub fn n_predict(&self) -> usize {
        self.n_predict.unwrap_or(256)
    }
}

/// What `--format` constrains the output to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A JSON object.
    Json,
}

/// The JSON `--json` prints (for a completion, and for each chat turn).
#[derive(serde::Serialize)]
pub struct JsonOut<'a> {
    /// Tokens in the prompt (with the chat template, for a chat turn).
    pub prompt_tokens: usize,
    /// The prompt's token ids.
    pub prompt_ids: &'a [u32],
    /// The generated token ids.
    pub tokens: &'a [u32],
    /// The generated text.
    pub text: String,
    /// Why generation ended.
    pub stop: StopReason,
    /// The stop string that ended the text (`stop` is then `stop_string`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_string: Option<String>,
    /// Load, prompt and generation times, with rates.
    pub timings: Timings,
    /// What ran, as the engine describes itself (`Engine::describe`).
    pub engine: String,
    /// Engine counters averaged per generated token.
    pub stats: RunStats,
    /// `--profile`: GPU time per op kind (prompt and decode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<engine::vulkan::Profile>,
}

impl<'a> JsonOut<'a> {
    /// The record for one completion or chat turn. `prompt_tokens` counts the whole prompt,
    /// `prompt_ids` are the ids fed for it (in chat only the new part); the engine's description
    /// and counters are read now. `stop_string` starts empty: run sets it when a `--stop` hit.
    pub fn new(
        prompt_tokens: usize,
        prompt_ids: &'a [u32],
        g: &'a Generation,
        text: String,
        timings: Timings,
        engine: &dyn Engine,
        profile: Option<engine::vulkan::Profile>,
    ) -> JsonOut<'a> {
        JsonOut {
            prompt_tokens,
            prompt_ids,
            tokens: &g.tokens,
            text,
            stop: g.stop,
            stop_string: None,
            timings,
            engine: engine.describe(),
            stats: RunStats::of(engine),
            profile,
        }
    }

    /// Writes the record as one line of JSON.
    pub fn write_line(&self, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)?;
        Ok(())
    }
}

/// The engine's counters since they were last reset, per token, with the token count.
#[derive(serde::Serialize)]
pub struct RunStats {
    tokens: u64,
    #[serde(flatten)]
    per_token: StatsPerToken,
}

impl RunStats {
    /// The counters of `engine` so far, averaged per generated token.
    pub fn of(engine: &dyn Engine) -> RunStats {
        let s = engine.stats();
        RunStats {
            tokens: s.tokens,
            per_token: StatsPerToken::over(&s, s.tokens),
        }
    }
}

/// `--profile`: the timings since the last call, printed on stderr (and returned for --json).
pub fn take_profile(engine: &mut dyn Engine) -> Option<engine::vulkan::Profile> {
    let p = engine.take_profile()?;
    eprint!("{}", p.text());
    Some(p)
}

/// Prints the one-line prompt and generation speeds on stderr.
pub fn print_timings(t: &Timings, n_prompt: usize, n_gen: usize) {
    eprintln!(
        "pigpu: prompt {n_prompt} tokens in {:.0} ms ({:.1} t/s), generated {n_gen} tokens in {:.0} ms ({:.1} t/s)",
        t.prompt_ms, t.prompt_tokens_per_s, t.gen_ms, t.gen_tokens_per_s
    );
}
