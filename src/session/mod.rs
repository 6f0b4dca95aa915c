//! A loaded model generating text: the layer above the engines that `run`, chat, `perplexity`
//! and `bench` share (and that a server builds on). Loading opens the GGUF file, reads the
//! tokenizer, checks the options, builds the engine the caller asked for (which first checks
//! that the model and its KV cache fit in its memory: `engine::fit`) and, for the CPU engine,
//! touches the weights once; [`generate`] is the token loop with its stop conditions and timings.
//!
//! The read-only part ([`SharedModel`]: the memory-mapped weights and the tokenizer) sits behind
//! an `Arc`, so several [`Session`]s can hold one loaded model: each session owns an engine and
//! with it a KV cache, and runs one generation at a time. A second session attaches with
//! [`Session::attach`]; the CPU engine then computes from the same memory map, while a Vulkan
//! engine uploads its own copy of the weights to the device.

pub mod constrain;
pub mod conversation;
pub mod generate;
pub mod stop;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

pub use generate::{check_fits, generate, generate_with, Constrained, Flow, StopReason, Timings};

use crate::engine::{self, Backend, Engine, EngineOptions, EngineTuning};
use crate::model::tokenizer::Tokenizer;
use crate::model::{Config, Model};
use crate::sys::progress::Reporter;

/// Why a model cannot be loaded or a request does not fit, before any engine runs.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The model file does not exist.
    #[error("model file {} does not exist", path.display())]
    NoFile {
        /// The path given.
        path: PathBuf,
    },
    /// The tokenizer and the embedding disagree on the vocabulary size.
    #[error("{}: the tokenizer has {n_tokens} tokens (tokenizer.ggml.tokens) but the embedding has {n_vocab} rows (token_embd.weight); they must match, as llama.cpp also requires (a model could otherwise produce ids no token stands for, or be fed ids beyond its embedding)", path.display())]
    VocabMismatch {
        /// The model file.
        path: PathBuf,
        /// Tokens in `tokenizer.ggml.tokens`.
        n_tokens: usize,
        /// Rows of `token_embd.weight`.
        n_vocab: usize,
    },
    /// `--ctx` below 2.
    #[error("--ctx {n_ctx} is too small (at least 2 tokens)")]
    CtxTooSmall {
        /// The context length asked for.
        n_ctx: usize,
    },
    /// `--threads` beyond what the machine can use.
    #[error("--threads {threads} is more than this machine can use: it has {cores} CPU(s); give at most {max} (the default is one per core)")]
    TooManyThreads {
        /// Threads asked for.
        threads: usize,
        /// CPU cores available.
        cores: usize,
        /// The most threads allowed.
        max: usize,
    },
    /// The KV cache for `--ctx` would need more than a petabyte.
    #[error("--ctx {n_ctx} is far beyond any memory (the model was trained for {trained} tokens)")]
    CtxBeyondMemory {
        /// The context length asked for.
        n_ctx: usize,
        /// The model's training context.
        trained: usize,
    },
    /// The prompt alone is longer than the context.
    #[error("the prompt is {n_prompt} tokens, longer than the context of {n_ctx} (raise --ctx)")]
    PromptTooLong {
        /// Prompt tokens.
        n_prompt: usize,
        /// Context length.
        n_ctx: usize,
    },
    /// Prompt plus `-n` new tokens do not fit the context.
    #[error("-n {n} after a prompt of {n_prompt} tokens needs {} positions, more than the context of {n_ctx} (lower -n or raise --ctx)", *n_prompt as u128 + *n as u128)]
    TooManyTokens {
        /// Prompt tokens.
        n_prompt: usize,
        /// New tokens asked for.
        n: usize,
        /// Context length.
        n_ctx: usize,
    },
}

/// How to load: which engine, how large a context, how many threads.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Which engine to run on (CPU, Vulkan, or automatic).
    pub backend: Backend,
    /// Context length (default: the model's training context, at most 4096).
    pub ctx: Option<usize>,
    /// CPU threads (default: one per core).
    pub threads: Option<usize>,
    /// f16 KV cache (else f32).
    pub kv_f16: bool,
    /// The Vulkan device from `--device` (`None`: `tuning.vulkan.device`, else automatic).
    pub device: Option<String>,
    /// The engines' knobs, read from the environment by the command layer.
    pub tuning: EngineTuning,
    /// Hears how far the warm-up and a GPU engine's weight upload are (the command draws it).
    pub progress: Reporter,
}

/// The part of a loaded model that sessions share: the file, weights and tokenizer.
pub struct SharedModel {
    /// The model file's path.
    pub path: PathBuf,
    /// The mapped model: hyper-parameters and weights.
    pub model: Arc<Model>,
    /// The tokenizer read from the model's metadata.
    pub tokenizer: Tokenizer,
}

impl SharedModel {
    /// Opens `path` and reads its hyper-parameters, weights table and tokenizer.
    pub fn open(path: &Path) -> anyhow::Result<Arc<SharedModel>> {
        SharedModel::with_model(path, open_model(path)?)
    }

    /// Adds the tokenizer to a model already opened from `path`.
    pub fn with_model(path: &Path, model: Arc<Model>) -> anyhow::Result<Arc<SharedModel>> {
        let tokenizer = read_tokenizer(path, &model)?;
        Ok(SharedModel::with_tokenizer(path, model, tokenizer))
    }

    /// Adds the tokenizer to a model already opened from `path`, reading it on another thread
    /// while this one runs `work` (building an engine: it needs the weights, never the
    /// tokenizer). The tokenizer's error comes first, then `work`'s.
    fn with_model_during<T>(
        path: &Path,
        model: Arc<Model>,
        work: impl FnOnce(&Arc<Model>) -> anyhow::Result<T>,
    ) -> anyhow::Result<(Arc<SharedModel>, T)> {
        let (tokenizer, out) = std::thread::scope(|s| {
            let tokenizer = s.spawn(|| read_tokenizer(path, &model));
            let out = work(&model);
            (tokenizer.join(), out)
        });
        let tokenizer = tokenizer.map_err(|_| {
            anyhow::anyhow!(
                "reading the tokenizer of {}: its thread stopped",
                path.display()
            )
        })??;
        let out = out?;
        Ok((SharedModel::with_tokenizer(path, model, tokenizer), out))
    }

    fn with_tokenizer(path: &Path, model: Arc<Model>, tokenizer: Tokenizer) -> Arc<SharedModel> {
        Arc::new(SharedModel {
            path: path.to_path_buf(),
            model,
            tokenizer,
        })
    }

    /// What [`Session::load`] does before it builds an engine: opens `path` and checks `opts`
    /// against the model and this machine. Returns the model and the context length; for a caller that builds its engines itself (`serve`'s Vulkan slots over
    /// one upload).
    pub fn load(path: &Path, opts: &SessionOptions) -> anyhow::Result<(Arc<SharedModel>, usize)> {
        let shared = SharedModel::open(path)?;
        let n_ctx = check_options(&shared.model.config, opts)?;
        Ok((shared, n_ctx))
    }

    /// Touches every page of the weights once, reporting the bytes done after each 16 MiB: on a
    /// Pi reading from an SD card or USB disk this is where the loading time goes, and it is
    /// better spent under a progress bar than hidden inside the first token.
    fn warm_up(&self, progress: &Reporter) {
        let bytes = self.model.file.bytes();
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let mut task = progress.task(&format!("loading {name}"), Some(bytes.len() as u64));
        let mut sink = 0u8;
        for chunk in bytes.chunks(16 << 20) {
            for page in chunk.iter().step_by(4096) {
                sink ^= *page;
            }
            task.add(chunk.len() as u64);
        }
        std::hint::black_box(sink);
    }
}

/// Maps the model at `path`.
fn open_model(path: &Path) -> anyhow::Result<Arc<Model>> {
    if !path.exists() {
        return Err(SessionError::NoFile {
            path: path.to_path_buf(),
        }
        .into());
    }
    Model::load(path).with_context(|| format!("loading model {}", path.display()))
}

/// Reads the tokenizer of `model` (opened from `path`) and checks it against the embedding.
fn read_tokenizer(path: &Path, model: &Model) -> anyhow::Result<Tokenizer> {
    let tokenizer = Tokenizer::from_gguf(&model.file)
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;
    check_vocab(path, model, &tokenizer)?;
    Ok(tokenizer)
}

/// Refuses a tokenizer whose token list is not as long as the embedding (probe G9: ids past the
/// token list were generated silently; ids past the embedding would index beyond it).
fn check_vocab(path: &Path, model: &Model, tokenizer: &Tokenizer) -> Result<(), SessionError> {
    if tokenizer.n_vocab() != model.config.n_vocab {
        return Err(SessionError::VocabMismatch {
            path: path.to_path_buf(),
            n_tokens: tokenizer.n_vocab(),
            n_vocab: model.config.n_vocab,
        });
    }
    Ok(())
}

/// One engine (and its KV cache) over a shared model: one conversation or run at a time.
pub struct Session {
    /// The loaded model this session runs.
    pub shared: Arc<SharedModel>,
    /// The engine, holding its own KV cache.
    pub engine: Box<dyn Engine>,
    /// From opening the file to the engine being ready.
    pub load_time: Duration,
}

impl Session {
    /// Opens `path`, checks the options, builds the engine (which refuses a model that does not
    /// fit before reading or uploading its weights) and, on the CPU engine, warms the weights up
    /// (reporting to `opts.progress`). A GPU engine has just read every page for its upload,
    /// reporting its own progress.
    pub fn load(path: &Path, opts: &SessionOptions) -> anyhow::Result<Session> {
        let t0 = Instant::now();
        let model = open_model(path)?;
        let mut s = Session::with_opened(path, model, opts)?;
        if s.engine.kind() == engine::EngineKind::Cpu {
            s.shared.warm_up(&opts.progress);
        }
        s.load_time = t0.elapsed();
        Ok(s)
    }

    /// [`Session::load`] for a model already opened from `path`, without the CPU engine's
    /// warm-up (`bench` times the opening apart and measures without it); `load_time` starts
    /// here. The tokenizer is read on another thread while the engine is built.
    pub fn with_opened(
        path: &Path,
        model: Arc<Model>,
        opts: &SessionOptions,
    ) -> anyhow::Result<Session> {
        let t0 = Instant::now();
        let n_ctx = check_options(&model.config, opts)?;
        // Neither needs the other; on a GPU the upload and pipeline creation leave cores idle.
        let (shared, engine) = SharedModel::with_model_during(path, model, |model| {
            build_engine(path, model, opts, n_ctx)
        })?;
        Ok(Session {
            shared,
            engine,
            load_time: t0.elapsed(),
        })
    }

    /// A new session over an already loaded model, with its own engine and KV cache (no
    /// warm-up: the pages were touched when the model was first loaded or are read by the
    /// engine as it uploads them).
    pub fn attach(shared: Arc<SharedModel>, opts: &SessionOptions) -> anyhow::Result<Session> {
        let t0 = Instant::now();
        let n_ctx = check_options(&shared.model.config, opts)?;
        let engine = build_engine(&shared.path, &shared.model, opts, n_ctx)?;
        Ok(Session {
            shared,
            engine,
            load_time: t0.elapsed(),
        })
    }

    /// The loaded model (hyper-parameters and weights).
    pub fn model(&self) -> &Arc<Model> {
        &self.shared.model
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    /// `SmolLM2-135M-Instruct.Q4_1.gguf (llama, 30 layers, 92 MiB) on cpu (avx2, 2 threads),
    /// context 4096, loaded in 944 ms`: what was loaded, for the log.
    pub fn summary(&self) -> String {
        let c = &self.shared.model.config;
        format!(
            "{} ({}, {} layers, {:.0} MiB) on {}, context {}, loaded in {} ms",
            self.shared
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            c.arch.name(),
            c.n_layer,
            self.shared.model.weight_bytes() as f64 / (1 << 20) as f64,
            self.engine.describe(),
            self.engine.n_ctx(),
            self.load_time.as_millis()
        )
    }
}

/// The engine for `opts` with a context of `n_ctx`.
fn build_engine(
    path: &Path,
    model: &Arc<Model>,
    opts: &SessionOptions,
    n_ctx: usize,
) -> anyhow::Result<Box<dyn Engine>> {
    let eopts = EngineOptions {
        n_ctx,
        threads: opts.threads.unwrap_or(0),
        kv_f16: opts.kv_f16,
        device: opts.device.clone(),
        tuning: opts.tuning.clone(),
        progress: opts.progress.clone(),
    };
    engine::create(opts.backend, model.clone(), &eopts)
        .with_context(|| format!("preparing {} for {:?}", path.display(), opts.backend))
}

/// `--threads` beyond this many per CPU core is refused: it only adds switching (and an absurd
/// value would try to start that many OS threads).
const MAX_THREADS_PER_CORE: usize = 4;

/// Resolves the context length and refuses options that cannot work on this machine.
fn check_options(c: &Config, opts: &SessionOptions) -> Result<usize, SessionError> {
    let n_ctx = opts.ctx.unwrap_or(c.n_ctx_train.min(4096));
    if n_ctx < 2 {
        return Err(SessionError::CtxTooSmall { n_ctx });
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = cores * MAX_THREADS_PER_CORE;
    if let Some(threads) = opts.threads.filter(|&t| t > max) {
        return Err(SessionError::TooManyThreads {
            threads,
            cores,
            max,
        });
    }
    check_kv_size(c, n_ctx, opts.kv_f16)?;
    if n_ctx > c.n_ctx_train {
        log::warn!(
            "warning: --ctx {n_ctx} is larger than the model's training context {}",
            c.n_ctx_train
        );
    }
    Ok(n_ctx)
}

/// Refuses a context whose KV cache size overflows or is beyond any machine (a petabyte), so
/// the engines' memory checks (`engine::fit`, against the memory there is) see sane sizes.
fn check_kv_size(c: &Config, n_ctx: usize, kv_f16: bool) -> Result<(), SessionError> {
    let elem: u64 = if kv_f16 { 2 } else { 4 };
    let bytes = [c.n_layer, c.n_head_kv, c.head_dim, 2]
        .iter()
        .try_fold(n_ctx as u64, |acc, &x| acc.checked_mul(x as u64))
        .and_then(|b| b.checked_mul(elem));
    match bytes {
        Some(b) if b < 1 << 50 => Ok(()),
        _ => Err(SessionError::CtxBeyondMemory {
            n_ctx,
            trained: c.n_ctx_train,
        }),
    }
}
