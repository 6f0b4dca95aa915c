//! A whole `pigpu bench` run as data: a [`Suite`] (models × thread counts × tests) goes in, rows
//! ([`BenchResult`]) come out, and an [`Observer`] hears about progress as it happens. Loading
//! goes through `session`; the rows carry llama-bench's fields plus pigpu's own (`load`,
//! `upload` and `e2e` rows, per-token engine counters, the GPU profile).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;

use super::describe::{describe_model, now_rfc3339};
use super::report::{self, BenchResult};
use super::{run_test, Rng, RunConfig, TestSpec};
use crate::engine::vulkan::Profile;
use crate::engine::{
    self, Backend, Engine, EngineKind, EngineTuning, SamplingParams, StatsPerToken,
};
use crate::model::tokenizer::{StreamDecoder, Tokenizer};
use crate::model::Model;
use crate::platform::vulkan::VulkanEnv;
use crate::session::{Session, SessionOptions};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Model files to measure, each loaded in turn.
    pub models: Vec<PathBuf>,
    /// Every test, in the order they run for each model and thread count.
    pub tests: Vec<TestSpec>,
    /// CPU thread counts to run with (0 = one per core); each is a separate load.
    pub threads: Vec<usize>,
    /// Timed repetitions per test (`-r`).
    pub reps: usize,
    /// Prompt tokens fed per engine call (`-b`).
    pub n_batch: usize,
    /// Which engine to run on.
    pub backend: Backend,
    /// The Vulkan device from `--device` (`None`: `tuning.vulkan.device`, else automatic).
    pub device: Option<String>,
    /// The engines' knobs, read from the environment by the command layer.
    pub tuning: EngineTuning,
    /// pigpu's own `load` and `upload` rows.
    pub extra_rows: bool,
    /// The `e2eN` row's generation length (`None`: no such row).
    pub e2e: Option<usize>,
    /// Seed for the random prompt tokens.
    pub seed: u64,
    /// Time every GPU command and attach the profile to each row.
    pub profile: bool,
    /// How the generation tests' steps sample (greedy unless `--sampler` says otherwise).
    pub sampling: SamplingParams,
}

/// Hears about a suite's progress (the command renders it).
pub trait Observer {
    /// A model was loaded: its description and the engine it runs on.
    fn loaded(&mut self, model_type: &str, device: &str);
    /// A test began (its warm-up runs first).
    fn started(&mut self, test: &str);
    /// `rep` of `reps` timed repetitions of `test` finished.
    fn repetition(&mut self, test: &str, rep: usize, reps: usize);
    /// A row is done; `reps` is how many repetitions it was meant to have.
    fn finished(&mut self, row: &BenchResult, reps: usize);
    /// The GPU profile of the test just finished (`--profile`).
    fn profile(&mut self, profile: &Profile);
}

/// The end-to-end row's prompt.
const E2E_PROMPT: &str = "Once upon a time, in a small village by the sea,";

impl Suite {
    /// Context for the longest test, and for the end-to-end row: its prompt plus its
    /// generation. A token covers at least one byte, so the prompt's byte length (plus
    /// BOS/EOS) bounds its token count for any tokenizer. One more for the token that is
    /// sampled last.
    fn n_ctx(&self) -> usize {
        let mut n_ctx = self.tests.iter().map(|t| t.n_ctx()).max().unwrap_or(1);
        if let Some(g) = self.e2e {
            n_ctx = n_ctx.max(g.saturating_add(E2E_PROMPT.len() + 2));
        }
        n_ctx.saturating_add(1)
    }
}

/// Runs every model × thread count × test, appending each finished row to `results` (kept by
/// the caller, so rows that finished before an error or Ctrl-C can still be shown); returns
/// early (Ok) when `cancel` is set.
pub fn measure(
    suite: &Suite,
    cancel: &AtomicBool,
    obs: &mut dyn Observer,
    results: &mut Vec<BenchResult>,
) -> anyhow::Result<()> {
    let threads = if suite.threads.is_empty() {
        vec![0]
    } else {
        suite.threads.clone()
    };
    for path in &suite.models {
        for &t in &threads {
            if cancel.load(Ordering::SeqCst) {
                return Ok(());
            }
            if !measure_one(suite, path, t, cancel, obs, results)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One model with one thread count; `false` when cancelled part-way.
fn measure_one(
    suite: &Suite,
    path: &std::path::Path,
    t: usize,
    cancel: &AtomicBool,
    obs: &mut dyn Observer,
    results: &mut Vec<BenchResult>,
) -> anyhow::Result<bool> {
    let started = now_rfc3339();
    let t0 = Instant::now();
    let model = Model::load(path).with_context(|| format!("loading {}", path.display()))?;
    let open_time = t0.elapsed();
    refuse_past_trained_context(suite, &model, path)?;
    // The `load` row covers opening the file and building the engine; the tokenizer (for the
    // e2e row) is read on another thread meanwhile, as `run` does.
    let mut s = Session::with_opened(path, model.clone(), &session_options(suite, t))?;
    let engine = s.engine.as_mut();
    if suite.profile {
        engine.set_profiling(true).context("--profile")?;
    }
    let load_ns = (open_time + s.load_time).as_nanos() as u64;
    let common = Common::new(suite, path, &model, engine, t);
    obs.loaded(&common.model_type, &common.device);
    if suite.extra_rows {
        push_load_rows(&common, engine, load_ns, started, obs, results);
    }
    if !run_tests(suite, &model, &common, engine, cancel, obs, results)? {
        return Ok(false);
    }
    if let Some(g) = suite.e2e {
        let tok = &s.shared.tokenizer;
        let row = end_to_end(tok, s.engine.as_mut(), &common, g, suite.reps, cancel, obs)?;
        if let Some(row) = row {
            obs.finished(&row, suite.reps);
            results.push(row);
        }
    }
    Ok(true)
}

/// Refuses a suite with a test longer than the context `model` was trained for: past it the
/// figures mean little, and a typo like -p 5120000 would otherwise reserve a KV cache of many
/// gigabytes and run for hours.
fn refuse_past_trained_context(
    suite: &Suite,
    model: &Model,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let trained = model.config.n_ctx_train;
    if let Some(long) = suite.tests.iter().find(|t| t.n_ctx() > trained) {
        anyhow::bail!(
            "test {} needs {} tokens of context, but {} was trained for {trained} \
             ({}.context_length); use smaller -p/-n/-pg/-d values",
            long.name(),
            long.n_ctx(),
            path.display(),
            model.config.arch.name()
        );
    }
    Ok(())
}

/// The session for `suite` with `t` threads (0 = one per core).
fn session_options(suite: &Suite, t: usize) -> SessionOptions {
    SessionOptions {
        backend: suite.backend,
        ctx: Some(suite.n_ctx()),
        threads: (t != 0).then_some(t),
        kv_f16: true,
        device: suite.device.clone(),
        tuning: suite.tuning.clone(),
        // Bench draws its own progress lines; an upload bar would cut through them.
        progress: Default::default(),
    }
}

/// pigpu's `load` row (MB/s of weights over the load time, opening the file included) and,
/// where the engine uploads its weights, the `upload` row (GB/s).
fn push_load_rows(
    common: &Common,
    engine: &dyn Engine,
    load_ns: u64,
    started: String,
    obs: &mut dyn Observer,
    results: &mut Vec<BenchResult>,
) {
    let mbs = common.size as f64 / 1e6 / (load_ns as f64 / 1e9);
    let mut row = common.row("load".into(), None, &[load_ns], vec![mbs]);
    row.unit = Some("MB/s".into());
    row.test_time = started;
    obs.finished(&row, 1);
    results.push(row);
    if let Some((bytes, ns)) = engine.weight_upload().filter(|&(_, ns)| ns > 0) {
        let gbs = bytes as f64 / 1e9 / (ns as f64 / 1e9);
        let mut row = common.row("upload".into(), None, &[ns], vec![gbs]);
        row.unit = Some("GB/s".into());
        obs.finished(&row, 1);
        results.push(row);
    }
}

/// Runs each test of `suite` in turn, a row each; `false` when cancelled part-way.
fn run_tests(
    suite: &Suite,
    model: &Model,
    common: &Common,
    engine: &mut dyn Engine,
    cancel: &AtomicBool,
    obs: &mut dyn Observer,
    results: &mut Vec<BenchResult>,
) -> anyhow::Result<bool> {
    let mut rng = Rng::new(suite.seed);
    let cfg = RunConfig {
        reps: suite.reps,
        sampling: suite.sampling.clone(),
        n_batch: suite.n_batch,
        n_vocab: model.config.n_vocab,
    };
    for spec in &suite.tests {
        let name = spec.name();
        // Only this test's commands go into its profile.
        engine.take_profile();
        obs.started(&name);
        let started = now_rfc3339();
        let samples = run_test(engine, *spec, &cfg, &mut rng, cancel, |rep| {
            obs.repetition(&name, rep, suite.reps)
        })
        .with_context(|| format!("test {name}"))?;
        let Some(samples) = samples else {
            return Ok(false);
        };
        let n = (spec.n_prompt + spec.n_gen) as f64;
        let ts = samples.ns.iter().map(|&ns| n / (ns as f64 / 1e9)).collect();
        let mut row = common.row(name, Some(*spec), &samples.ns, ts);
        row.test_time = started;
        if spec.n_gen > 0 {
            row.stats = StatsPerToken::from_stats(&samples.stats);
        }
        obs.finished(&row, suite.reps);
        if let Some(p) = engine.take_profile() {
            obs.profile(&p);
            row.profile = Some(p);
        }
        results.push(row);
        if cancel.load(Ordering::SeqCst) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What stays the same for every row of one model × thread count.
struct Common {
    filename: String,
    model_type: String,
    size: u64,
    n_params: u64,
    n_batch: usize,
    threads: usize,
    kind: EngineKind,
    device: String,
    driver: String,
}

impl Common {
    /// The fields every row of `model` on `engine` with `t` threads (0 = one per core) shares.
    fn new(
        suite: &Suite,
        path: &std::path::Path,
        model: &Model,
        engine: &dyn Engine,
        t: usize,
    ) -> Common {
        let n_params: u64 = model.file.tensors().iter().map(|t| t.n_elements()).sum();
        let threads = if t == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            t
        };
        let kind = engine.kind();
        Common {
            filename: path.display().to_string(),
            model_type: describe_model(model, n_params),
            size: model.weight_bytes(),
            n_params,
            n_batch: suite.n_batch,
            threads,
            kind,
            device: engine.describe(),
            driver: match kind {
                EngineKind::Cpu => format!("pigpu {}", env!("CARGO_PKG_VERSION")),
                EngineKind::Vulkan => {
                    let selector = suite
                        .device
                        .as_ref()
                        .or(suite.tuning.vulkan.device.as_ref());
                    vulkan_driver(
                        selector.map(String::as_str),
                        &suite.tuning.vulkan.vulkan_env,
                    )
                }
            },
        }
    }

    fn row(&self, test: String, spec: Option<TestSpec>, ns: &[u64], ts: Vec<f64>) -> BenchResult {
        let (avg_ts, stddev_ts) = report::mean_sd(&ts);
        let nsf: Vec<f64> = ns.iter().map(|&n| n as f64).collect();
        let (avg_ns, stddev_ns) = report::mean_sd(&nsf);
        let spec = spec.unwrap_or(TestSpec {
            n_prompt: 0,
            n_gen: 0,
            n_depth: 0,
        });
        BenchResult {
            build_commit: option_env!("PIGPU_GIT_COMMIT")
                .unwrap_or("unknown")
                .to_string(),
            build_number: 0,
            model_filename: self.filename.clone(),
            model_type: self.model_type.clone(),
            model_size: self.size,
            model_n_params: self.n_params,
            n_batch: self.n_batch,
            n_threads: self.threads,
            n_gpu_layers: match self.kind {
                EngineKind::Cpu => 0,
                EngineKind::Vulkan => 99,
            },
            n_prompt: spec.n_prompt,
            n_gen: spec.n_gen,
            n_depth: spec.n_depth,
            test,
            test_time: now_rfc3339(),
            avg_ns: avg_ns as u64,
            stddev_ns: stddev_ns as u64,
            avg_ts,
            stddev_ts,
            samples_ns: ns.to_vec(),
            samples_ts: ts,
            backend: self.kind.bench_name().into(),
            device: self.device.clone(),
            driver: self.driver.clone(),
            unit: None,
            stats: None,
            profile: None,
        }
    }
}

/// The chosen Vulkan device's driver and API version (`llvmpipe Mesa 22.3.6 (LLVM 15.0.6),
/// Vulkan 1.3.230`), found the way the engine chose it; empty if the listing fails.
fn vulkan_driver(selector: Option<&str>, env: &VulkanEnv) -> String {
    engine::vulkan::list_devices_with(selector, env)
        .ok()
        .and_then(|infos| infos.into_iter().find(|d| d.chosen))
        .map_or_else(String::new, |d| {
            format!("{}, Vulkan {}", d.driver, d.api_version)
        })
}

/// pigpu's end-to-end row: a real short prompt, then `n_gen` tokens with llama.cpp's default
/// sampling (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05) and streaming detokenisation,
/// stopping only at `n_gen` (end-of-generation tokens are sampled through). t/s over the
/// generation phase.
fn end_to_end(
    tok: &Tokenizer,
    engine: &mut dyn Engine,
    common: &Common,
    n_gen: usize,
    reps: usize,
    cancel: &AtomicBool,
    obs: &mut dyn Observer,
) -> anyhow::Result<Option<BenchResult>> {
    let prompt = tok.encode(E2E_PROMPT, tok.add_bos(), false)?;
    let params = SamplingParams::chat();
    let mut rng = Rng::new(42);
    let name = format!("e2e{n_gen}");
    obs.started(&name);
    let started = now_rfc3339();
    let mut ns = Vec::new();
    'reps: for rep in 0..reps {
        engine.reset();
        engine.prefill(&prompt)?;
        let mut dec = StreamDecoder::new(tok, false);
        let mut text = String::new();
        let t0 = Instant::now();
        for _ in 0..n_gen {
            // Checked per token, as in `run_test`; the interrupted repetition is dropped.
            if cancel.load(Ordering::SeqCst) {
                break 'reps;
            }
            let id = engine.step(&params, rng.next_f32())?;
            text.push_str(&dec.push(id));
        }
        text.push_str(&dec.finish());
        ns.push(t0.elapsed().as_nanos() as u64);
        std::hint::black_box(&text);
        obs.repetition(&name, rep + 1, reps);
    }
    engine.reset();
    if ns.is_empty() {
        return Ok(None);
    }
    let ts = ns
        .iter()
        .map(|&n| n_gen as f64 / (n as f64 / 1e9))
        .collect();
    let spec = TestSpec {
        n_prompt: prompt.len(),
        n_gen,
        n_depth: 0,
    };
    let mut row = common.row(name, Some(spec), &ns, ts);
    row.test_time = started;
    Ok(Some(row))
}
