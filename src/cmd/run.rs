//! `pigpu run MODEL`: text completion (`-p`) streamed to stdout, or an interactive chat using
//! the model's chat template. Only generated text goes to stdout (plus the prompt with
//! `--echo`); logs and timings go to stderr, so `pigpu run m.gguf -p … > out.txt` captures text.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::Outcome;
use crate::engine::{self, Backend, Engine, EngineOptions, SamplingParams};
use crate::model::chat::{ChatTemplate, Message};
use crate::model::generate::{generate, Flow, Generation, StopReason};
use crate::model::sampler::Rng;
use crate::model::tokenizer::{StreamDecoder, Tokenizer};
use crate::model::Model;

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
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min-p × the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise tokens seen in the last --repeat-last-n tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed; the same seed and settings give the same output (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which engine runs the model.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// The Vulkan device, by index or part of its name (default: $PIGPU_DEVICE, else the best
    /// GPU; CPU implementations like lavapipe and the Pi's V3D are used only when named here).
    #[arg(long, value_name = "INDEX|NAME")]
    pub device: Option<String>,
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

/// Checks that the settings make sense before anything is loaded.
fn sampling(a: &Args) -> Result<SamplingParams> {
    if !(a.temp >= 0.0 && a.temp.is_finite()) {
        bail!("--temp {} must be a number ≥ 0", a.temp);
    }
    if !(0.0..=1.0).contains(&a.top_p) {
        bail!("--top-p {} must be in 0..=1", a.top_p);
    }
    if !(0.0..=1.0).contains(&a.min_p) {
        bail!("--min-p {} must be in 0..=1", a.min_p);
    }
    if !(a.repeat_penalty > 0.0 && a.repeat_penalty.is_finite()) {
        bail!("--repeat-penalty {} must be > 0", a.repeat_penalty);
    }
    Ok(SamplingParams {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
    })
}

/// A loaded model, its tokenizer and an engine.
pub struct Loaded {
    pub model: Arc<Model>,
    pub tokenizer: Tokenizer,
    pub engine: Box<dyn Engine>,
    pub load_time: Duration,
}

/// `--threads` beyond this many per CPU core is refused: it only adds switching (and an absurd
/// value would try to start that many OS threads).
const MAX_THREADS_PER_CORE: usize = 4;

fn check_threads(threads: Option<usize>) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match threads {
        Some(t) if t > cores * MAX_THREADS_PER_CORE => bail!(
            "--threads {t} is more than this machine can use: it has {cores} CPU(s); give at most {} (the default is one per core)",
            cores * MAX_THREADS_PER_CORE
        ),
        _ => Ok(()),
    }
}

/// Bytes of memory available for new allocations (`MemAvailable`), when the kernel says.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The KV cache a context needs, checked for overflow and (for engines whose cache lives in
/// host memory) against the memory available, so a huge `--ctx` is a clear error rather than
/// an abort on a failed allocation.
fn check_kv_memory(
    c: &crate::model::Config,
    n_ctx: usize,
    kv_f16: bool,
    backend: Backend,
) -> Result<()> {
    let elem: u64 = if kv_f16 { 2 } else { 4 };
    let bytes = [c.n_layer, c.n_head_kv, c.head_dim, 2]
        .iter()
        .try_fold(n_ctx as u64, |acc, &x| acc.checked_mul(x as u64))
        .and_then(|b| b.checked_mul(elem));
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let Some(bytes) = bytes.filter(|&b| b < 1 << 50) else {
        bail!(
            "--ctx {n_ctx} is far beyond any memory (the model was trained for {} tokens)",
            c.n_ctx_train
        );
    };
    if matches!(backend, Backend::Vulkan) {
        // On the GPU; the Vulkan engine checks its device memory itself.
        return Ok(());
    }
    if let Some(avail) = mem_available() {
        if bytes > avail {
            bail!(
                "--ctx {n_ctx} needs {:.1} GiB for the KV cache, more than the {:.1} GiB of memory available; lower --ctx (the model was trained for {} tokens)",
                gib(bytes),
                gib(avail),
                c.n_ctx_train
            );
        }
    }
    Ok(())
}

/// Opens `path`, builds the tokenizer and the engine, and reads the weights once (with a
/// progress line on a terminal) so that the first token does not pay for page faults.
pub fn load(
    path: &Path,
    backend: Backend,
    ctx: Option<usize>,
    threads: Option<usize>,
    kv_f16: bool,
    device: Option<&str>,
) -> Result<Loaded> {
    let t0 = Instant::now();
    if !path.exists() {
        bail!("model file {} does not exist", path.display());
    }
    let model = Model::load(path).with_context(|| format!("loading model {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&model.file)
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;
    let c = &model.config;
    let n_ctx = ctx.unwrap_or(c.n_ctx_train.min(4096));
    if n_ctx < 2 {
        bail!("--ctx {n_ctx} is too small (at least 2 tokens)");
    }
    check_threads(threads)?;
    check_kv_memory(c, n_ctx, kv_f16, backend)?;
    if n_ctx > c.n_ctx_train {
        log::warn!(
            "warning: --ctx {n_ctx} is larger than the model's training context {}",
            c.n_ctx_train
        );
    }
    warm_up(&model);
    let opts = EngineOptions {
        n_ctx,
        threads: threads.unwrap_or(0),
        kv_f16,
        device: device.map(str::to_string),
        tuning: super::engine_tuning()?,
    };
    let engine = engine::create(backend, model.clone(), &opts)
        .with_context(|| format!("preparing {} for {:?}", path.display(), backend))?;
    let load_time = t0.elapsed();
    log::info!(
        "{} ({}, {} layers, {:.0} MiB) on {}, context {}, loaded in {} ms",
        path.file_name().unwrap_or_default().to_string_lossy(),
        c.arch.name(),
        c.n_layer,
        model.weight_bytes() as f64 / (1 << 20) as f64,
        engine.describe(),
        engine.n_ctx(),
        load_time.as_millis()
    );
    Ok(Loaded {
        model,
        tokenizer,
        engine,
        load_time,
    })
}

/// Touches every page of the weights once, showing progress on a terminal: on a Pi reading from
/// an SD card or USB disk this is where the loading time goes, and it is better spent with a
/// progress bar than hidden inside the first token.
fn warm_up(model: &Model) {
    let bytes = model.file.bytes();
    let total = bytes.len() as u64;
    let bar = if std::io::stderr().is_terminal() && total > (64 << 20) {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "loading {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut sink = 0u8;
    for (i, chunk) in bytes.chunks(16 << 20).enumerate() {
        for page in chunk.iter().step_by(4096) {
            sink ^= *page;
        }
        if let Some(b) = &bar {
            b.set_position(((i + 1) as u64 * (16 << 20)).min(total));
        }
    }
    std::hint::black_box(sink);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

pub fn run(a: Args) -> Result<Outcome> {
    if a.list_devices {
        return list_devices(&a);
    }
    let params = sampling(&a)?;
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
    if let Some(p) = &prompt {
        if p.is_empty() {
            bail!("the prompt is empty (give text with -p, or pipe it on stdin)");
        }
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
    let mut loaded = load(
        model,
        a.backend,
        a.ctx,
        a.threads,
        !a.kv_f32,
        a.device.as_deref(),
    )?;
    if a.profile {
        loaded.engine.set_profiling(true).context("--profile")?;
    }
    eprintln!("pigpu: seed {seed}");
    let mut rng = Rng::new(seed);
    match prompt {
        Some(p) if !a.chat => completion(&a, &mut loaded, &p, &params, &mut rng),
        Some(p) => {
            let mut chat = Chat::new(&a, &loaded)?;
            chat.turn(&a, &mut loaded, &p, &params, &mut rng, None)?;
            Ok(Outcome::Ok)
        }
        None => interactive(&a, &mut loaded, &params, &mut rng),
    }
}

/// The JSON `--json` prints.
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    prompt_tokens: usize,
    prompt_ids: &'a [u32],
    tokens: &'a [u32],
    text: String,
    stop: StopReason,
    timings: Timings,
    engine: String,
    /// Engine counters averaged per generated token.
    stats: StatsOut,
    /// `--profile`: GPU time per op kind (prompt and decode).
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<engine::vulkan::Profile>,
}

/// `--profile`: the timings since the last call, printed on stderr (and returned for --json).
fn take_profile(engine: &mut dyn Engine) -> Option<engine::vulkan::Profile> {
    let p = engine.take_profile()?;
    eprint!("{}", p.text());
    Some(p)
}

/// `Stats` per generated token (`tokens` is the count they are averaged over).
#[derive(serde::Serialize)]
struct StatsOut {
    tokens: u64,
    dispatches: f64,
    submits: f64,
    command_buffers_recorded: f64,
    descriptor_updates: f64,
    readback_bytes: f64,
    upload_bytes: f64,
    host_us: f64,
}

fn stats_out(s: &engine::Stats) -> StatsOut {
    let n = s.tokens.max(1) as f64;
    StatsOut {
        tokens: s.tokens,
        dispatches: s.dispatches as f64 / n,
        submits: s.submits as f64 / n,
        command_buffers_recorded: s.command_buffers_recorded as f64 / n,
        descriptor_updates: s.descriptor_updates as f64 / n,
        readback_bytes: s.readback_bytes as f64 / n,
        upload_bytes: s.upload_bytes as f64 / n,
        host_us: s.host_ns as f64 / n / 1e3,
    }
}

/// `--list-devices`: every Vulkan device and why it is or is not the one `run` would use.
fn list_devices(a: &Args) -> Result<Outcome> {
    let sel = a
        .device
        .clone()
        .or_else(|| std::env::var("PIGPU_DEVICE").ok());
    let devs =
        engine::vulkan::list_devices_with(sel.as_deref()).context("listing Vulkan devices")?;
    if a.json {
        println!("{}", serde_json::to_string(&devs)?);
    } else if devs.is_empty() {
        // The same cause doctor's vulkan check and the engine's "no device" error give.
        match crate::platform::vulkan_no_device_cause() {
            Some(cause) => println!("no Vulkan devices: {cause}"),
            None => println!("no Vulkan devices (the loader found none)"),
        }
    } else {
        for d in &devs {
            println!(
                "{} {}: {} [{:?}, Vulkan {}, {} MiB, subgroup {}{}]\n    {}",
                if d.chosen { "*" } else { " " },
                d.index,
                d.name,
                d.kind,
                d.api_version,
                d.memory_mib,
                d.subgroup_size,
                if d.driver.is_empty() {
                    String::new()
                } else {
                    format!(", {}", d.driver)
                },
                d.reason
            );
        }
    }
    if !a.json && !devs.is_empty() && !devs.iter().any(|d| d.chosen) {
        if let Some(cause) = crate::platform::vulkan_no_device_cause() {
            println!("no GPU to choose; a Vulkan driver cannot load: {cause}");
        }
    }
    Ok(if devs.iter().any(|d| d.chosen) {
        Outcome::Ok
    } else {
        Outcome::Problems
    })
}

#[derive(serde::Serialize)]
struct Timings {
    load_ms: f64,
    prompt_ms: f64,
    prompt_tokens_per_s: f64,
    gen_ms: f64,
    gen_tokens_per_s: f64,
}

fn timings(load: Duration, n_prompt: usize, g: &Generation) -> Timings {
    let rate = |n: usize, d: Duration| {
        if d.as_secs_f64() > 0.0 {
            n as f64 / d.as_secs_f64()
        } else {
            0.0
        }
    };
    Timings {
        load_ms: load.as_secs_f64() * 1e3,
        prompt_ms: g.prompt_time.as_secs_f64() * 1e3,
        prompt_tokens_per_s: rate(n_prompt, g.prompt_time),
        gen_ms: g.gen_time.as_secs_f64() * 1e3,
        gen_tokens_per_s: rate(g.tokens.len(), g.gen_time),
    }
}

fn print_timings(t: &Timings, n_prompt: usize, n_gen: usize) {
    eprintln!(
        "pigpu: prompt {n_prompt} tokens in {:.0} ms ({:.1} t/s), generated {n_gen} tokens in {:.0} ms ({:.1} t/s)",
        t.prompt_ms, t.prompt_tokens_per_s, t.gen_ms, t.gen_tokens_per_s
    );
}

/// Checks that `n_prompt` tokens plus `n` generated ones fit in the context.
fn check_fits(n_prompt: usize, n: usize, n_ctx: usize) -> Result<()> {
    if n_prompt > n_ctx {
        bail!("the prompt is {n_prompt} tokens, longer than the context of {n_ctx} (raise --ctx)");
    }
    if n_prompt.saturating_add(n) > n_ctx {
        bail!(
            "-n {n} after a prompt of {n_prompt} tokens needs {} positions, more than the context of {n_ctx} (lower -n or raise --ctx)",
            n_prompt as u128 + n as u128
        );
    }
    Ok(())
}

fn completion(
    a: &Args,
    l: &mut Loaded,
    prompt: &str,
    params: &SamplingParams,
    rng: &mut Rng,
) -> Result<Outcome> {
    let ids = l
        .tokenizer
        .encode(prompt, true, true)
        .context("tokenizing the prompt")?;
    if ids.is_empty() {
        bail!("the prompt tokenizes to nothing");
    }
    check_fits(ids.len(), a.n_predict, l.engine.n_ctx())?;
    // Prefill here rather than in `generate` so the counters cover only the generation.
    let t_prompt = Instant::now();
    l.engine.prefill(&ids)?;
    let prompt_time = t_prompt.elapsed();
    l.engine.reset_stats();
    let mut out = std::io::stdout().lock();
    if a.echo && !a.json {
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
    }
    let tok = &l.tokenizer;
    let mut dec = StreamDecoder::new(tok, false);
    let mut text = String::new();
    let mut io_err = None;
    let mut g = generate(
        l.engine.as_mut(),
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
    let t = timings(l.load_time, ids.len(), &g);
    let profile = take_profile(l.engine.as_mut());
    if a.json {
        let j = JsonOut {
            prompt_tokens: ids.len(),
            prompt_ids: &ids,
            tokens: &g.tokens,
            text,
            stop: g.stop,
            timings: t,
            engine: l.engine.describe(),
            stats: stats_out(&l.engine.stats()),
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

/// A conversation: the messages so far and the tokens the engine already holds.
struct Chat {
    template: ChatTemplate,
    messages: Vec<Message>,
    /// Every token given to the engine since its last reset (fed or sampled).
    in_engine: Vec<u32>,
}

impl Chat {
    fn new(a: &Args, l: &Loaded) -> Result<Chat> {
        let src = l
            .model
            .file
            .get_str("tokenizer.chat_template")?
            .ok_or(crate::model::chat::ChatError::NoTemplate)?;
        let text = |id: Option<u32>| id.map(|i| l.tokenizer.token_text(i).to_string());
        let template = ChatTemplate::new(
            src,
            &text(l.tokenizer.bos_id()).unwrap_or_default(),
            &text(l.tokenizer.eos_id()).unwrap_or_default(),
        )?;
        let mut messages = Vec::new();
        if let Some(s) = &a.system {
            messages.push(Message::new("system", s.clone()));
        }
        Ok(Chat {
            template,
            messages,
            in_engine: Vec::new(),
        })
    }

    /// One user turn: render, feed what the engine does not hold yet, stream the reply.
    fn turn(
        &mut self,
        a: &Args,
        l: &mut Loaded,
        user: &str,
        params: &SamplingParams,
        rng: &mut Rng,
        interrupt: Option<&AtomicBool>,
    ) -> Result<()> {
        l.engine.reset_stats();
        self.messages.push(Message::new("user", user));
        let rendered = self.template.render(&self.messages, true)?;
        let ids = l
            .tokenizer
            .encode(&rendered, false, true)
            .context("tokenizing the chat prompt")?;
        let n_ctx = l.engine.n_ctx();
        if let Err(e) = check_fits(ids.len(), a.n_predict.min(n_ctx / 4).max(1), n_ctx) {
            self.messages.pop();
            return Err(
                e.context("the conversation no longer fits (start a new one or raise --ctx)")
            );
        }
        // Reuse the cached prefix when the engine's tokens are a prefix of the new prompt.
        let new = if ids.starts_with(&self.in_engine) && !self.in_engine.is_empty() {
            &ids[self.in_engine.len()..]
        } else {
            l.engine.reset();
            self.in_engine.clear();
            &ids[..]
        };
        let new = new.to_vec();
        let budget = a.n_predict.min(n_ctx - ids.len());
        let tok = &l.tokenizer;
        let mut dec = StreamDecoder::new(tok, false);
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        let g = generate(
            l.engine.as_mut(),
            &new,
            budget,
            params,
            rng,
            &|t| tok.is_eog(t),
            &mut |t| {
                let piece = dec.push(t);
                reply.push_str(&piece);
                if !a.json {
                    let _ = out.write_all(piece.as_bytes()).and_then(|_| out.flush());
                }
                if interrupt.is_some_and(|f| f.load(Ordering::SeqCst)) {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
        )?;
        let rest = dec.finish();
        reply.push_str(&rest);
        self.in_engine = ids;
        self.in_engine.extend(&g.tokens);
        // The end-of-turn token was sampled and will be fed with the next prompt.
        self.in_engine.extend(g.stop_token);
        self.messages.push(Message::new("assistant", reply.clone()));
        let t = timings(l.load_time, new.len(), &g);
        let profile = take_profile(l.engine.as_mut());
        if a.json {
            let j = JsonOut {
                prompt_tokens: self.in_engine.len() - g.tokens.len(),
                prompt_ids: &new,
                tokens: &g.tokens,
                text: reply,
                stop: g.stop,
                timings: t,
                engine: l.engine.describe(),
                // In chat the turn's prompt is included (the engine's counters since the turn began).
                stats: stats_out(&l.engine.stats()),
                profile,
            };
            serde_json::to_writer(&mut out, &j)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{rest}")?;
            print_timings(&t, new.len(), g.tokens.len());
        }
        Ok(())
    }
}

fn interactive(
    a: &Args,
    l: &mut Loaded,
    params: &SamplingParams,
    rng: &mut Rng,
) -> Result<Outcome> {
    let mut chat = Chat::new(a, l)?;
    // Ctrl-C while generating stops the reply; Ctrl-C at the prompt (or Ctrl-D) ends the chat.
    let generating = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (g, i) = (generating.clone(), interrupted.clone());
        ctrlc::set_handler(move || {
            if g.load(Ordering::SeqCst) {
                i.store(true, Ordering::SeqCst);
            } else {
                eprintln!();
                std::process::exit(0);
            }
        })
        .context("installing the Ctrl-C handler")?;
    }
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!("pigpu: chat — type a message and press Enter; Ctrl-D or Ctrl-C to quit");
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        if tty {
            eprint!("> ");
        }
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            if tty {
                eprintln!();
            }
            return Ok(Outcome::Ok);
        }
        let msg = line.trim_end_matches(['\n', '\r']);
        if msg.trim().is_empty() {
            continue;
        }
        interrupted.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let r = chat.turn(a, l, msg, params, rng, Some(&interrupted));
        generating.store(false, Ordering::SeqCst);
        if let Err(e) = r {
            eprintln!("pigpu: error: {e:#}");
            if !tty {
                return Err(e);
            }
        }
    }
}
