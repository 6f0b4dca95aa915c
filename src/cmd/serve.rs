//! `pigpu serve MODEL`: loads the model behind an OpenAI-compatible HTTP API (see
//! docs/serve.md). The listener comes up first and answers `/health` with "loading" while the
//! weights are read and the slots build their engines; SIGTERM or Ctrl-C stop it gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::model_args::BackendArg;
use super::Outcome;
use crate::engine::Backend;
use crate::model::chat::ChatTemplate;
use crate::serve::api::Limits;
use crate::serve::http::{self, AppState, Ready};
use crate::serve::metrics::Metrics;
use crate::serve::schedule;
use crate::serve::slots::Queue;
use crate::session::SessionOptions;

/// Arguments of `pigpu serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  pigpu serve model.gguf                                  # http://127.0.0.1:8080/v1
  pigpu serve model.gguf --parallel 4 --ctx 4096          # four clients at once
  pigpu serve model.gguf --host 0.0.0.0 --api-key \"$(cat key)\"   # on the network, with a key
  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'")]
pub struct Args {
    /// The GGUF model file, or a pulled model's name (ORG/NAME[:QUANT]).
    pub model: PathBuf,
    /// Address to listen on. The default answers only this machine; give 0.0.0.0 (and an
    /// --api-key) to serve the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests generated at once: each slot has its own engine and KV cache of --ctx tokens (on
    /// the CPU engine the slots decode together, one pass over the weights per token).
    #[arg(long, short = 'P', default_value_t = 1)]
    pub parallel: usize,
    /// Requests that may wait for a free slot; beyond that new ones get 503 with Retry-After.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Context length of each slot in tokens (default: the model's training context, at most
    /// 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Which engine runs the model.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// The Vulkan device, by index or part of its name (as for `pigpu run`).
    #[arg(long, value_name = "INDEX|NAME")]
    pub device: Option<String>,
    /// CPU threads (default: one per core). On the CPU engine all slots decode together with
    /// them.
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Store the KV cache as f32 instead of f16.
    #[arg(long)]
    pub kv_f32: bool,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health (default:
    /// $PIGPU_API_KEY; unset: no key).
    #[arg(long, env = "PIGPU_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Allow browser pages from this origin (repeatable; `*` for any). Without it no CORS
    /// headers are sent, so browsers refuse cross-origin calls.
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Vec<String>,
    /// Most tokens one request may generate (also the default for requests without max_tokens).
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: usize,
    /// Longest prompt accepted, in tokens (default: the context less one).
    #[arg(long)]
    pub max_prompt_tokens: Option<usize>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// The model's id in /v1/models and replies (default: the file name without .gguf).
    #[arg(long)]
    pub alias: Option<String>,
}

/// The most slots: each holds a KV cache and (on the CPU) threads; beyond this it is a typo.
const MAX_PARALLEL: usize = 64;

fn check(a: &Args) -> Result<()> {
    if a.parallel == 0 || a.parallel > MAX_PARALLEL {
        bail!(
            "--parallel {} must be between 1 and {MAX_PARALLEL}",
            a.parallel
        );
    }
    if a.max_tokens == 0 {
        bail!("--max-tokens 0 would refuse every request; give at least 1");
    }
    if a.max_body_bytes < 1024 {
        bail!(
            "--max-body-bytes {} is too small for any request (at least 1024)",
            a.max_body_bytes
        );
    }
    if a.api_key.as_deref() == Some("") {
        bail!("--api-key is empty; give a key or leave the option out");
    }
    if !a.model.exists() {
        bail!("model file {} does not exist", a.model.display());
    }
    Ok(())
}

pub(crate) fn run(mut a: Args) -> Result<Outcome> {
    a.model = super::pull::model_path(&a.model)?;
    check(&a)?;
    let addr: SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (a.host.as_str(), a.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut i| i.next())
                .context("no address")
        })
        .with_context(|| {
            format!(
                "--host {:?} is not an address this machine can listen on",
                a.host
            )
        })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(a, addr))
}

async fn serve(a: Args, addr: SocketAddr) -> Result<Outcome> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    let model_id = a.alias.clone().unwrap_or_else(|| {
        let name = a.model.file_name().unwrap_or_default().to_string_lossy();
        name.strip_suffix(".gguf").unwrap_or(&name).to_string()
    });
    let queue = Arc::new(Queue::new(a.queue));
    let metrics = Arc::new(Metrics::default());
    metrics
        .slots
        .store(a.parallel, std::sync::atomic::Ordering::Relaxed);
    metrics
        .queue_capacity
        .store(a.queue, std::sync::atomic::Ordering::Relaxed);
    let limits = Limits {
        max_tokens: a.max_tokens,
        max_prompt_tokens: a.max_prompt_tokens.unwrap_or(usize::MAX),
        max_body_bytes: a.max_body_bytes,
    };
    let state = Arc::new(AppState::new(
        model_id,
        a.api_key.clone(),
        limits,
        queue.clone(),
        metrics.clone(),
    ));
    let app = http::router(state.clone(), &a.cors)?;
    eprintln!("pigpu: listening on http://{local} (OpenAI API under /v1)");
    if a.api_key.is_none() && !local.ip().is_loopback() {
        eprintln!("pigpu: warning: listening on {local} without --api-key: anyone who can reach it can use the model");
    }

    // Load in the background so /health can say "loading" meanwhile.
    let (load_tx, load_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let loader = {
        let (state, queue, metrics, a) = (state.clone(), queue.clone(), metrics.clone(), a.clone());
        std::thread::Builder::new()
            .name("load".into())
            .spawn(move || match load(&a, &state, queue, metrics) {
                Ok(slots) => slots,
                Err(e) => {
                    let _ = load_tx.send(e);
                    Vec::new()
                }
            })?
    };

    let load_err = Arc::new(std::sync::Mutex::new(None));
    let shutdown = {
        let load_err = load_err.clone();
        async move {
            // The loader drops its sender unused when loading succeeds: then only a signal stops.
            let failed = async {
                match load_rx.await {
                    Ok(e) => e,
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signal() => eprintln!("pigpu: stopping: finishing requests in flight"),
                e = failed => *load_err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
            }
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    queue.close();
    let slots = loader.join().unwrap_or_default();
    for s in slots {
        let _ = s.join();
    }
    if let Some(e) = load_err.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    eprintln!("pigpu: stopped");
    Ok(Outcome::Ok)
}

/// SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Loads the model through the session layer (the checks, warm-up and engine choice of `pigpu
/// run`), starts the slots and marks the server ready.
fn load(
    a: &Args,
    state: &AppState,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let t0 = Instant::now();
    let opts = SessionOptions {
        backend: Backend::from(a.backend),
        ctx: a.ctx,
        threads: a.threads,
        kv_f16: !a.kv_f32,
        device: a.device.clone(),
        tuning: super::engine_tuning()?,
        progress: super::progress::Display::stderr().reporter(),
    };
    let (handles, started) = schedule::start(a.parallel, a.model.clone(), opts, queue, metrics)?;
    let shared = started.shared;
    let tokenizer = &shared.tokenizer;
    let template = match shared.model.file.get_str("tokenizer.chat_template")? {
        Some(src) => {
            let text = |id: Option<u32>| id.map(|i| tokenizer.token_text(i).to_string());
            Some(ChatTemplate::new(
                src,
                &text(tokenizer.bos_id()).unwrap_or_default(),
                &text(tokenizer.eos_id()).unwrap_or_default(),
            )?)
        }
        None => {
            eprintln!("pigpu: warning: the model has no chat template; /v1/chat/completions will refuse requests");
            None
        }
    };
    let c = &shared.model.config;
    eprintln!(
        "pigpu: {} ({}, {} layers) on {}, {} slot(s) of {} tokens, ready in {} ms",
        a.model.file_name().unwrap_or_default().to_string_lossy(),
        c.arch.name(),
        c.n_layer,
        started.describe,
        a.parallel,
        started.n_ctx,
        t0.elapsed().as_millis()
    );
    let _ = state.ready.set(Ready {
        shared: shared.clone(),
        template,
        n_ctx: started.n_ctx,
    });
    Ok(handles)
}
