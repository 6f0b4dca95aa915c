//! `pigpu bench`: throughput figures in llama-bench's format (see `crate::bench`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use super::Outcome;
use std::time::Instant;

use crate::bench::report::{self, BenchResult, StatsPerToken};
use crate::bench::{expand, run_test, Rng, RunConfig, TestSpec};
use crate::engine::{self, Backend, Engine, EngineOptions, SamplingParams};
use crate::model::shapes::{self, ShapeSpec};
use crate::model::tokenizer::{StreamDecoder, Tokenizer};
use crate::model::Model;

/// Output formats, as llama-bench's `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Md,
    Json,
    Jsonl,
    Csv,
}

/// Arguments of `pigpu bench`. Flags taking lists accept comma-separated values and may be
/// repeated; every combination runs, as in llama-bench.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  pigpu bench -m model.gguf                      # pp512 and tg128, 5 repetitions
  pigpu bench -m model.gguf -p 64 -n 16 -r 3 -o json
  pigpu bench -m a.gguf -m b.gguf -p 128,512 -n 0 -t 2,4
  pigpu bench -m model.gguf -pg 512,128 -d 0,1024 --backend vulkan
  pigpu bench -m model.gguf -p 64 -n 16 -r 2 --backend vulkan --profile   # GPU time per op
  pigpu bench --shape llama-3.1-8b:q4_k_m --backend vulkan -p 512 -n 128

Prompt tests (ppN) process N random tokens in batches; generation tests (tgN) make N tokens one
step at a time (each step samples greedily on the engine, which llama-bench does not do; the
cost is a few microseconds). Rows `load` (MB/s) and `e2e` (generation including sampling and
detokenisation, t/s) are pigpu's own additions.

Progress goes to stderr, one line per finished test. Ctrl-C stops within one forward pass and
prints the rows that finished, in the chosen format, then exits with status 130; a second Ctrl-C
quits at once without output.")]
pub struct Args {
    /// Model file(s).
    #[arg(short = 'm', long = "model", required_unless_present = "shapes")]
    pub models: Vec<PathBuf>,
    /// A named model shape with random weights (`pigpu shape list`), `NAME[:MIX]`: written to
    /// the shape cache on first use, then benchmarked like a model file (after any -m).
    #[arg(long = "shape", value_name = "NAME[:MIX]")]
    pub shapes: Vec<ShapeSpec>,
    /// Prompt lengths to test.
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test.
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Prompt+generation pairs `PP,TG` (also accepted as `-pg PP,TG`).
    #[arg(long = "pg", value_parser = parse_pair)]
    pub pg: Vec<(usize, usize)>,
    /// Context depths to test at (tokens already in the KV cache, untimed).
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub n_depth: Vec<usize>,
    /// Repetitions per test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Batch size for prompt processing.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub n_batch: usize,
    /// Engine: cpu, vulkan, or auto (a suitable GPU if present, else the CPU).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Vulkan device by index or name (see `pigpu run --list-devices`).
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads to test with (default: all cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "md")]
    pub output: Format,
    /// Skip pigpu's own rows (load, e2e).
    #[arg(long)]
    pub no_extra: bool,
    /// Seed for the random prompt tokens.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Time every GPU command (Vulkan engine only): after each test, a table per op kind
    /// (count, mean µs, share, weight GB/s, GFLOP/s, the device's copy bandwidth and stage
    /// floor) on stderr, and a `profile` object in that row of -o json / jsonl. Profiled runs are
    /// slightly slower; compare t/s without it.
    #[arg(long)]
    pub profile: bool,
}

fn parse_pair(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("expected PP,TG, got '{s}'"))?;
    let p = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' is not a token count"))?;
    let g = b
        .trim()
        .parse()
        .map_err(|_| format!("'{b}' is not a token count"))?;
    Ok((p, g))
}

/// llama.cpp's names for `general.file_type` (`llama_ftype`), used in the model column.
fn ftype_name(ftype: u32) -> Option<&'static str> {
    Some(match ftype {
        0 => "all F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

/// `<arch> <size> <ftype>` as llama-bench describes a model, e.g. `llama 135M Q4_1`. The size
/// is `general.size_label` when the file has one, else derived from the parameter count.
fn describe_model(model: &Model, n_params: u64) -> String {
    let f = &model.file;
    let arch = model.config.arch.name();
    let size = match f.get_str("general.size_label").ok().flatten() {
        Some(s) => s.to_string(),
        None if n_params >= 1_000_000_000 => format!("{}B", (n_params as f64 / 1e9).round()),
        None => format!("{}M", (n_params as f64 / 1e6).round()),
    };
    let ftype = match f
        .get_u32("general.file_type")
        .ok()
        .flatten()
        .and_then(ftype_name)
    {
        Some(n) => n.to_string(),
        None => {
            // No (known) file type: name the most common weight type, as a hint.
            let mut counts = std::collections::BTreeMap::new();
            for t in f.tensors().iter().filter(|t| t.shape.len() > 1) {
                *counts.entry(t.ty.name()).or_insert(0u64) += t.bytes;
            }
            counts
                .into_iter()
                .max_by_key(|(_, b)| *b)
                .map_or("?".into(), |(n, _)| n.to_string())
        }
    };
    format!("{arch} {size} {ftype}")
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, re-derived).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What stays the same for every row of one model × thread count.
struct Common {
    filename: String,
    model_type: String,
    size: u64,
    n_params: u64,
    n_batch: usize,
    threads: usize,
    backend: String,
    device: String,
    driver: String,
}

impl Common {
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
            n_gpu_layers: if self.backend == "CPU" { 0 } else { 99 },
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
            backend: self.backend.clone(),
            device: self.device.clone(),
            driver: self.driver.clone(),
            unit: None,
            stats: None,
            profile: None,
        }
    }
}

fn print_results(results: &[BenchResult], format: Format) -> anyhow::Result<()> {
    use std::io::Write;
    let text = match format {
        Format::Md => report::markdown(results),
        Format::Json => report::json(results) + "\n",
        Format::Jsonl => report::jsonl(results),
        Format::Csv => report::csv(results),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub fn run(mut args: Args) -> anyhow::Result<Outcome> {
    let tests = expand(&args.n_prompt, &args.n_gen, &args.pg, &args.n_depth);
    anyhow::ensure!(
        !tests.is_empty(),
        "nothing to measure: every -p, -n and -pg value is 0"
    );
    anyhow::ensure!(args.reps > 0, "-r must be at least 1");
    anyhow::ensure!(args.n_batch > 0, "-b (batch size) must be at least 1");
    for spec in &args.shapes {
        if !shapes::cache_path(spec, 1).exists() {
            eprintln!(
                "bench: writing shape {spec} to {} (once; later runs reuse it)",
                shapes::cache_dir().display()
            );
        }
        args.models.push(shapes::cached(spec, 1)?.path);
    }

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second handler cannot be installed (e.g. when called twice in one process); then
        // Ctrl-C just kills us, as it would without a handler.
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                // A second Ctrl-C: the user does not want to wait for the current forward pass.
                eprintln!("\nbench: interrupted again; exiting without printing results");
                std::process::exit(130);
            }
            eprintln!(
                "\nbench: interrupted; stopping after the current step, then printing what \
                 finished (Ctrl-C again to quit at once)"
            );
        });
    }
    let cancelled = || cancel.load(Ordering::SeqCst);
    let mut progress = Progress::new();

    let mut results = Vec::new();
    let measured = measure(&args, &tests, &cancel, &mut progress, &mut results);
    if let Err(e) = measured {
        // Keep what finished: a long run that fails late should not lose its figures. The
        // error itself is printed by `main` after them.
        if !results.is_empty() {
            progress.line(&format!(
                "stopped by an error; printing the {} row(s) that finished first",
                results.len()
            ));
            print_results(&results, args.output)?;
        }
        return Err(e);
    }
    let interrupted = cancelled();
    if interrupted {
        progress.line(&format!(
            "interrupted; printing the {} row(s) that finished",
            results.len()
        ));
    }
    print_results(&results, args.output)?;
    Ok(if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Ok
    })
}

/// Runs every model × thread count × test, appending each finished row to `results`; returns
/// early (Ok) when `cancel` is set.
fn measure(
    args: &Args,
    tests: &[TestSpec],
    cancel: &AtomicBool,
    progress: &mut Progress,
    results: &mut Vec<BenchResult>,
) -> anyhow::Result<()> {
    let threads = if args.threads.is_empty() {
        vec![0]
    } else {
        args.threads.clone()
    };
    // Context for the longest test, and for the end-to-end row: its prompt plus the longest
    // generation. A token covers at least one byte, so the prompt's byte length (plus BOS/EOS)
    // bounds its token count for any tokenizer.
    let mut n_ctx = tests.iter().map(|t| t.n_ctx()).max().unwrap_or(1);
    if !args.no_extra {
        let max_gen = args.n_gen.iter().copied().max().unwrap_or(0);
        if max_gen > 0 {
            n_ctx = n_ctx.max(E2E_PROMPT.len() + 2 + max_gen);
        }
    }
    let n_ctx = n_ctx + 1;

    for path in &args.models {
        for &t in &threads {
            if cancel.load(Ordering::SeqCst) {
                return Ok(());
            }
            let started = now_rfc3339();
            let t0 = Instant::now();
            let model = Model::load(path).with_context(|| format!("loading {}", path.display()))?;
            // Past the trained context the figures mean little, and a typo like -p 5120000
            // would otherwise reserve a KV cache of many gigabytes and run for hours.
            let trained = model.config.n_ctx_train;
            if let Some(long) = tests.iter().find(|t| t.n_ctx() > trained) {
                anyhow::bail!(
                    "test {} needs {} tokens of context, but {} was trained for {trained} \
                     ({}.context_length); use smaller -p/-n/-pg/-d values",
                    long.name(),
                    long.n_ctx(),
                    path.display(),
                    model.config.arch.name()
                );
            }
            let opts = EngineOptions {
                n_ctx,
                threads: t,
                kv_f16: true,
                device: args.device.clone(),
                tuning: super::engine_tuning()?,
            };
            let mut engine = engine::create(args.backend, model.clone(), &opts)?;
            if args.profile {
                engine.set_profiling(true).context("--profile")?;
            }
            let load_ns = t0.elapsed().as_nanos() as u64;
            let n_params: u64 = model.file.tensors().iter().map(|t| t.n_elements()).sum();
            let size = model.weight_bytes();
            let used_threads = if t == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                t
            };
            let cpu = engine.describe().starts_with("cpu");
            let common = Common {
                filename: path.display().to_string(),
                model_type: describe_model(&model, n_params),
                size,
                n_params,
                n_batch: args.n_batch,
                threads: used_threads,
                backend: if cpu { "CPU" } else { "Vulkan" }.into(),
                device: engine.describe(),
                driver: if cpu {
                    format!("pigpu {}", env!("CARGO_PKG_VERSION"))
                } else {
                    vulkan_driver(args.device.as_deref())
                },
            };
            progress.line(&format!("{} on {}", common.model_type, common.device));
            if !args.no_extra {
                let mbs = size as f64 / 1e6 / (load_ns as f64 / 1e9);
                let mut row = common.row("load".into(), None, &[load_ns], vec![mbs]);
                row.unit = Some("MB/s".into());
                row.test_time = started.clone();
                progress.finished(&row, 1);
                results.push(row);
                if let Some((bytes, ns)) = engine.weight_upload().filter(|&(_, ns)| ns > 0) {
                    let gbs = bytes as f64 / 1e9 / (ns as f64 / 1e9);
                    let mut row = common.row("upload".into(), None, &[ns], vec![gbs]);
                    row.unit = Some("GB/s".into());
                    progress.finished(&row, 1);
                    results.push(row);
                }
            }
            let mut rng = Rng::new(args.seed);
            let cfg = RunConfig {
                reps: args.reps,
                n_batch: args.n_batch,
                n_vocab: model.config.n_vocab,
            };
            for spec in tests {
                let name = spec.name();
                // Only this test's commands go into its profile.
                engine.take_profile();
                progress.started(&name);
                let started = now_rfc3339();
                let samples = run_test(engine.as_mut(), *spec, cfg, &mut rng, cancel, |rep| {
                    progress.rep(&name, rep, args.reps)
                })
                .with_context(|| format!("test {name}"))?;
                let Some(samples) = samples else {
                    return Ok(());
                };
                let n = (spec.n_prompt + spec.n_gen) as f64;
                let ts = samples.ns.iter().map(|&ns| n / (ns as f64 / 1e9)).collect();
                let mut row = common.row(name, Some(*spec), &samples.ns, ts);
                row.test_time = started;
                if spec.n_gen > 0 {
                    row.stats = StatsPerToken::from_stats(&samples.stats);
                }
                progress.finished(&row, args.reps);
                if let Some(p) = engine.take_profile() {
                    eprint!("{}", p.text());
                    row.profile = Some(p);
                }
                results.push(row);
                if cancel.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
            if !args.no_extra {
                if let Some(g) = args.n_gen.iter().copied().filter(|&g| g > 0).max() {
                    let row = end_to_end(
                        &model,
                        engine.as_mut(),
                        &common,
                        g,
                        args.reps,
                        cancel,
                        progress,
                    )?;
                    if let Some(row) = row {
                        progress.finished(&row, args.reps);
                        results.push(row);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The chosen Vulkan device's driver and API version (`llvmpipe Mesa 22.3.6 (LLVM 15.0.6),
/// Vulkan 1.3.230`), found the way the engine chose it; empty if the listing fails.
fn vulkan_driver(selector: Option<&str>) -> String {
    let env_device = super::engine_tuning().ok().and_then(|t| t.vulkan.device);
    let listed = engine::vulkan::list_devices_with(selector.or(env_device.as_deref()));
    listed
        .ok()
        .and_then(|infos| infos.into_iter().find(|d| d.chosen))
        .map_or_else(String::new, |d| {
            format!("{}, Vulkan {}", d.driver, d.api_version)
        })
}

/// Progress on stderr. One line per finished test (`bench: pp64: 96.81 ± 1.16 t/s`) always; on
/// a terminal also a repetition counter rewritten in place, which would only clutter a log.
struct Progress {
    tty: bool,
    /// A counter line is on screen without its newline.
    open: bool,
}

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress {
            tty: std::io::stderr().is_terminal(),
            open: false,
        }
    }

    fn clear(&mut self) {
        if self.open {
            eprint!("\r\x1b[K");
            self.open = false;
        }
    }

    fn line(&mut self, text: &str) {
        self.clear();
        eprintln!("bench: {text}");
    }

    fn started(&mut self, name: &str) {
        if self.tty {
            self.clear();
            eprint!("bench: {name}: warm-up");
            self.open = true;
        }
    }

    fn rep(&mut self, name: &str, rep: usize, reps: usize) {
        if self.tty {
            self.clear();
            eprint!("bench: {name}: repetition {rep}/{reps}");
            self.open = true;
        }
    }

    /// The line for a finished row; says so when Ctrl-C cut its repetitions short.
    fn finished(&mut self, row: &BenchResult, reps: usize) {
        let unit = row.unit.as_deref().unwrap_or("t/s");
        let n = row.samples_ns.len();
        let note = if n < reps {
            format!(" ({n} of {reps} repetitions)")
        } else {
            String::new()
        };
        self.line(&format!(
            "{}: {:.2} ± {:.2} {unit}{note}",
            row.test, row.avg_ts, row.stddev_ts
        ));
    }
}

/// The end-to-end row's prompt.
const E2E_PROMPT: &str = "Once upon a time, in a small village by the sea,";

/// pigpu's end-to-end row: a real short prompt, then `n_gen` tokens with llama.cpp's default
/// sampling (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05) and streaming detokenisation,
/// stopping only at `n_gen` (end-of-generation tokens are sampled through). t/s over the
/// generation phase.
fn end_to_end(
    model: &Model,
    engine: &mut dyn Engine,
    common: &Common,
    n_gen: usize,
    reps: usize,
    cancel: &AtomicBool,
    progress: &mut Progress,
) -> anyhow::Result<Option<BenchResult>> {
    let tok = Tokenizer::from_gguf(&model.file).context("e2e row: tokenizer")?;
    let prompt = tok.encode(E2E_PROMPT, tok.add_bos(), false)?;
    let params = SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
    };
    let mut rng = Rng::new(42);
    let name = format!("e2e{n_gen}");
    progress.started(&name);
    let started = now_rfc3339();
    let mut ns = Vec::new();
    'reps: for rep in 0..reps {
        engine.reset();
        engine.prefill(&prompt)?;
        let mut dec = StreamDecoder::new(&tok, false);
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
        progress.rep(&name, rep + 1, reps);
    }
    progress.clear();
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
