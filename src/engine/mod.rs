//! Inference engines behind one interface at the level of prefill / step / sample: `cpu` (the
//! reference and the Pi's fallback) and `vulkan` (the only module that imports `ash`).
//!
//! The boundary is deliberately *not* "return logits": a GPU engine samples on the device and
//! hands back only the token id. Logits are an optional path for tests and perplexity.
//!
//! Decoding is lazy by one token: `step` samples a token and returns it *without* running the
//! model on it yet; the next `step` (or `prefill`) feeds it first. So one `step` = (feed the
//! previous token →) forward → sample, which is exactly one GPU submission, and a generation that
//! stops (end-of-turn token, `-n` reached, context full) never pays for a forward pass whose
//! logits nobody reads.

pub mod cpu;
pub mod error;
pub mod fallback;
pub mod fit;

pub mod vulkan;

// The sampler's settings belong to the sampler (the model layer); every engine takes them.
pub use crate::model::sampler::SamplingParams;
pub use error::EngineError;

/// What the engine boundary returns: the cases callers act on (docs/architecture.md).
pub type EngineResult<T> = Result<T, EngineError>;

/// Per-generation counters an engine keeps (all zero for the CPU engine's GPU-only fields).
/// `pigpu run --json` and `pigpu bench` report these averaged per generated token.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Tokens generated (the counters below are over these).
    pub tokens: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Queue submits.
    pub submits: u64,
    /// Command buffers recorded (the rest were replayed).
    pub command_buffers_recorded: u64,
    /// Descriptor-set writes.
    pub descriptor_updates: u64,
    /// Bytes read back from the device (logits, sampled ids).
    pub readback_bytes: u64,
    /// Bytes uploaded to the device after load (token ids, sampling parameters).
    pub upload_bytes: u64,
    /// Host time spent inside the engine, in nanoseconds.
    pub host_ns: u64,
}

/// `Stats` divided by a number of generated tokens: the one per-token view of the counters
/// (`pigpu run --json`'s `stats`, with the count beside it, and `pigpu bench`'s per-row `stats`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsPerToken {
    /// Compute dispatches per token.
    pub dispatches: f64,
    /// Queue submits per token.
    pub submits: f64,
    /// Command buffers recorded per token.
    pub command_buffers_recorded: f64,
    /// Descriptor-set writes per token.
    pub descriptor_updates: f64,
    /// Bytes read back from the device per token.
    pub readback_bytes: f64,
    /// Bytes uploaded to the device per token.
    pub upload_bytes: f64,
    /// Host time inside the engine per token, in microseconds.
    pub host_us: f64,
}

impl StatsPerToken {
    /// The counters per `s.tokens`; `None` when no token was generated.
    pub fn from_stats(s: &Stats) -> Option<StatsPerToken> {
        (s.tokens > 0).then(|| StatsPerToken::over(s, s.tokens))
    }

    /// The counters divided by `n` (taken as 1 when 0, so the raw counters show).
    pub fn over(s: &Stats, n: u64) -> StatsPerToken {
        let n = n.max(1) as f64;
        StatsPerToken {
            dispatches: s.dispatches as f64 / n,
            submits: s.submits as f64 / n,
            command_buffers_recorded: s.command_buffers_recorded as f64 / n,
            descriptor_updates: s.descriptor_updates as f64 / n,
            readback_bytes: s.readback_bytes as f64 / n,
            upload_bytes: s.upload_bytes as f64 / n,
            host_us: s.host_ns as f64 / n / 1e3,
        }
    }
}

/// Which kind of engine runs: what callers branch on (bench's `backend` column, the layer
/// count) instead of parsing `describe()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The CPU engine.
    Cpu,
    /// The Vulkan engine.
    Vulkan,
}

impl EngineKind {
    /// llama-bench's spelling of the backend: `CPU`, `Vulkan`.
    pub fn bench_name(self) -> &'static str {
        match self {
            EngineKind::Cpu => "CPU",
            EngineKind::Vulkan => "Vulkan",
        }
    }
}

/// One loaded model on one device, with its KV cache.
pub trait Engine {
    /// What runs, for logs: e.g. `cpu (avx2, 2 threads)` or `vulkan: NVIDIA RTX A4000`.
    fn describe(&self) -> String;
    /// Which kind of engine this is (after a GPU failure, the fallback reports the CPU).
    fn kind(&self) -> EngineKind;
    /// Context length the KV cache was sized for.
    fn n_ctx(&self) -> usize;
    /// Tokens whose keys and values are in the KV cache (the token last returned by `step` is
    /// not among them until it is fed).
    fn n_past(&self) -> usize;
    /// Empties the KV cache, drops any unfed sampled token and the token history used by the
    /// repetition penalty.
    fn reset(&mut self);
    /// Keeps the first `n` positions of the KV cache (at most `n_past()`) and forgets the rest,
    /// as if only those tokens had been fed since `reset`: no unfed token, no pending logits,
    /// the repetition-penalty history cut to them. Returns how many were kept; `prefill` goes
    /// on from there. A position's keys and values depend only on the tokens up to it, so
    /// feeding the rest of a prompt gives the logits of feeding all of it. `serve`'s slots
    /// start a prompt after the part already in their cache this way; `keep_prefix(0)` is
    /// `reset`. An engine that cannot keep a prefix resets and returns 0.
    fn keep_prefix(&mut self, n: usize) -> EngineResult<usize> {
        let _ = n;
        self.reset();
        Ok(0)
    }
    /// Feeds the token last returned by `step` (if not fed yet), then runs the model over
    /// `tokens` at the following positions, batched. Afterwards the logits of the last token are
    /// pending for `step` / `logits`. Fails, changing nothing, if the tokens do not fit in
    /// `n_ctx()` or an id is outside the vocabulary.
    fn prefill(&mut self, tokens: &[u32]) -> EngineResult<()>;
    /// Feeds the token last returned by `step` (if not fed yet; this needs one free position in
    /// the context), then samples from the pending logits with `params` and the uniform random
    /// number `u` (in [0, 1), drawn by the host so that a seed fixes the output) and returns the
    /// sampled token. The returned token is *not* fed yet (see the module docs).
    fn step(&mut self, params: &SamplingParams, u: f32) -> EngineResult<u32>;
    /// The pending logits (vocabulary-sized): those of the last token fed. Slow path for tests;
    /// engines may read back from a device.
    fn logits(&mut self) -> EngineResult<Vec<f32>>;
    /// Runs `tokens` like `prefill` and returns the logits of every one of them,
    /// `tokens.len() × n_vocab`, row-major. For perplexity and tests.
    fn prefill_all_logits(&mut self, tokens: &[u32]) -> EngineResult<Vec<f32>>;
    /// Counters since the last `reset_stats`.
    fn stats(&self) -> Stats;
    /// Zeroes the counters.
    fn reset_stats(&mut self);
    /// Bytes and nanoseconds of the host → device weight upload at load time, for engines that
    /// have one (`pigpu bench`'s `upload` row). The CPU engine reads the memory map in place.
    fn weight_upload(&self) -> Option<(u64, u64)> {
        None
    }
    /// Turns per-op GPU timing on or off (`--profile`). Engines without it refuse to turn it on.
    fn set_profiling(&mut self, on: bool) -> EngineResult<()> {
        if on {
            return Err(EngineError::BadInput(format!(
                "--profile times GPU commands, and this run uses {} (use --backend vulkan)",
                self.describe()
            )));
        }
        Ok(())
    }
    /// The per-op timings since profiling was turned on or since the last call.
    fn take_profile(&mut self) -> Option<vulkan::Profile> {
        None
    }
    /// The CPU engine itself, for a caller that decodes several of them in one pass (`serve`'s
    /// batched slots); `None` for every other engine.
    fn as_cpu_mut(&mut self) -> Option<&mut cpu::CpuEngine> {
        None
    }
}

/// Which engine to build. The command layer maps its `--backend` flag onto this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The CPU engine.
    Cpu,
    /// The Vulkan engine (a GPU).
    Vulkan,
    /// Vulkan when a usable GPU is found, else the CPU (with a warning).
    Auto,
}

/// Settings every engine takes.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Context length (KV cache positions).
    pub n_ctx: usize,
    /// CPU threads (0 = one per core). The CPU engine computes with them; a GPU engine may
    /// ignore it.
    pub threads: usize,
    /// f16 KV cache (else f32). The Vulkan engine always keeps an f16 cache.
    pub kv_f16: bool,
    /// GPU to use, by index or part of its name, from `--device` (`None`: `tuning.vulkan.device`,
    /// from `PIGPU_DEVICE`, else the automatic choice). Both are resolved by the command layer.
    pub device: Option<String>,
    /// The engines' knobs, resolved once by the command layer.
    pub tuning: EngineTuning,
    /// Hears how far a GPU engine's weight upload is (the command layer draws it).
    pub progress: crate::sys::progress::Reporter,
}

/// Knobs of both engines (docs/vulkan.md "Tuning", docs/cpu-engine.md): the Vulkan engine's
/// `Tuning` and the CPU engine's instruction-set override.
#[derive(Debug, Clone, Default)]
pub struct EngineTuning {
    /// The Vulkan engine's knobs (`PIGPU_VK_*`, `PIGPU_DEVICE`).
    pub vulkan: vulkan::Tuning,
    /// `PIGPU_CPU_ISA=portable|avx2|reference`; `None`: the best the CPU has.
    pub cpu_isa: Option<cpu::kernels::Isa>,
}

impl EngineTuning {
    /// Parses the `PIGPU_*` variables through `get`; the command layer passes
    /// `|name| std::env::var(name).ok()`, tests a map.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<EngineTuning, vulkan::TuningError> {
        let cpu_isa = match get("PIGPU_CPU_ISA").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => Some(
                cpu::kernels::Isa::requested(&v).map_err(|_| vulkan::TuningError {
                    var: "PIGPU_CPU_ISA",
                    value: v,
                    expected: "portable, avx2 (on a CPU with AVX2) or reference",
                })?,
            ),
        };
        Ok(EngineTuning {
            vulkan: vulkan::Tuning::from_lookup(get)?,
            cpu_isa,
        })
    }
}

/// Builds the engine for `backend`. This is the one place that picks an engine. Each engine
/// first checks that the model and its KV cache fit in its memory (`fit`), before any upload or
/// long read, and refuses with the numbers and the largest context that fits.
pub fn create(
    backend: Backend,
    model: std::sync::Arc<crate::model::Model>,
    opts: &EngineOptions,
) -> EngineResult<Box<dyn Engine>> {
    let o = cpu::CpuOptions {
        n_ctx: opts.n_ctx,
        threads: opts.threads,
        kv_f16: opts.kv_f16,
        isa: opts.tuning.cpu_isa,
    };
    let cpu = |model: std::sync::Arc<crate::model::Model>| -> EngineResult<Box<dyn Engine>> {
        check_host_fit(&model, &o)?;
        let e = cpu::CpuEngine::new(model, &o).map_err(anyhow::Error::from)?;
        Ok(Box::new(e))
    };
    match backend {
        Backend::Cpu => cpu(model),
        Backend::Vulkan => create_vulkan(model, opts),
        // A GPU that fails later (device lost, out of memory) hands over to the CPU engine.
        Backend::Auto => match create_vulkan(model.clone(), opts) {
            Ok(e) => Ok(Box::new(fallback::Fallback::new(e, model, o.clone()))),
            Err(e) => {
                let c = cpu(model)?;
                auto_on_cpu(&e);
                Ok(c)
            }
        },
    }
}

/// Says (one warning line) why `--backend auto` took the CPU: the GPU engine failed with `e`
/// (no usable GPU, with the cause at `-v`, or a model too large for it). `serve`, which builds
/// its GPU slots itself, says it the same way.
pub fn auto_on_cpu(e: &EngineError) {
    match e {
        EngineError::DoesNotFit(r) => log::warn!(
            "the model does not fit in the GPU's memory ({} needed at --ctx {}, {} there); \
             using the CPU",
            fit::size(r.need.total()),
            r.need.n_ctx,
            fit::size(r.available)
        ),
        e => {
            log::warn!("no usable GPU, using the CPU (-v says why)");
            log::info!("no Vulkan engine: {e:#}");
        }
    }
}

/// The CPU engine's memory check: the file (resident), the KV cache and the scratch against
/// `MemAvailable` (docs/cpu-engine.md "Memory check"). Skipped where the kernel does not say.
fn check_host_fit(model: &crate::model::Model, o: &cpu::CpuOptions) -> EngineResult<()> {
    let Some(avail) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| fit::parse_mem_available(&t))
    else {
        return Ok(());
    };
    let need = fit::cpu_need(model, o.n_ctx.max(1), o.kv_f16);
    fit::check(&need, avail, "memory available (MemAvailable)")
        .map_err(|r| EngineError::DoesNotFit(Box::new(r)))
}

/// The Vulkan engine on the device `opts.device` names (or the automatic choice, which never
/// takes a CPU implementation such as lavapipe, nor the Pi's V3D).
fn create_vulkan(
    model: std::sync::Arc<crate::model::Model>,
    opts: &EngineOptions,
) -> EngineResult<Box<dyn Engine>> {
    let mut o = vulkan::VulkanOptions {
        n_ctx: opts.n_ctx,
        progress: opts.progress.clone(),
        tuning: opts.tuning.vulkan.clone(),
    };
    if opts.device.is_some() {
        o.tuning.device = opts.device.clone();
    }
    Ok(Box::new(vulkan::VulkanEngine::new(model, &o)?))
}
