//! `pigpu bench`: throughput figures in llama-bench's format. This file turns the flags into a
//! `bench::Suite`, renders progress (an `Observer` on stderr) and prints the rows; the measuring
//! is `crate::bench`'s.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::builder::TypedValueParser as _;

use super::model_args::EngineArgs;
use super::Outcome;
use crate::bench::report::{self, BenchResult, Format};
use crate::bench::{measure, plan, Observer, Suite};
use crate::engine::vulkan::Profile;
use crate::engine::SamplingParams;
use crate::model::shapes::{self, ShapeSpec};

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
step at a time (each step samples on the engine, greedily unless --sampler says otherwise,
which llama-bench does not do; greedy costs a few microseconds on a GPU). Rows `load` (MB/s) and `e2e` (generation including sampling and
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
    #[arg(long = "pg", value_parser = crate::bench::parse_pair)]
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
    /// Engine choice and Vulkan device (`--backend`, `--device`).
    #[command(flatten)]
    pub engine: EngineArgs,
    /// CPU threads to test with (default: all cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Output format.
    #[arg(short = 'o', long = "output", default_value = "md",
          value_parser = clap::builder::PossibleValuesParser::new(Format::NAMES)
              .map(|s| Format::from_name(&s).expect("one of the names")))]
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
    /// How each generation step samples (on the engine, from a seeded draw): `greedy`; `chat`,
    /// the defaults of run, chat and serve (temp 0.8, top-k 40, top-p 0.95, min-p 0.05); `top-p`
    /// (temp 0.8, top-p 0.95 alone) or `min-p` (temp 0.8, min-p 0.05 alone). Rows do not name
    /// it.
    #[arg(long, value_enum, default_value_t = Sampler::Greedy)]
    pub sampler: Sampler,
}

/// `--sampler`'s choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sampler {
    /// Argmax.
    Greedy,
    /// `run`'s, chat's and serve's defaults.
    Chat,
    /// Top-p 0.95 alone (no top-k or min-p).
    TopP,
    /// Min-p 0.05 alone (no top-k or top-p).
    MinP,
}

impl Sampler {
    /// The settings the choice stands for.
    pub fn params(self) -> SamplingParams {
        let only = |top_p: f32, min_p: f32| SamplingParams {
            top_k: 0,
            top_p,
            min_p,
            ..SamplingParams::chat()
        };
        match self {
            Sampler::Greedy => SamplingParams::greedy(),
            Sampler::Chat => SamplingParams::chat(),
            Sampler::TopP => only(0.95, 0.0),
            Sampler::MinP => only(1.0, 0.05),
        }
    }
}

fn print_results(results: &[BenchResult], format: Format) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(report::render(results, format).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The suite the flags describe (writing any `--shape` models to the shape cache first).
fn suite(mut args: Args) -> anyhow::Result<Suite> {
    let (tests, e2e) = plan(
        &args.n_prompt,
        &args.n_gen,
        &args.pg,
        &args.n_depth,
        args.reps,
        args.n_batch,
        !args.no_extra,
    )?;
    // Pulled models by name, like every command that takes a model file.
    args.models = args
        .models
        .iter()
        .map(|m| super::pull::model_path(m))
        .collect::<anyhow::Result<_>>()?;
    let shape_dir = shapes::cache_dir_from(|k| std::env::var(k).ok());
    for spec in &args.shapes {
        if !shapes::cache_path(&shape_dir, spec, 1).exists() {
            eprintln!(
                "bench: writing shape {spec} to {} (once; later runs reuse it)",
                shape_dir.display()
            );
        }
        args.models.push(shapes::cached(&shape_dir, spec, 1)?.path);
    }
    Ok(Suite {
        tests,
        threads: args.threads,
        reps: args.reps,
        n_batch: args.n_batch,
        backend: args.engine.backend(),
        device: args.engine.device.clone(),
        tuning: args.engine.tuning()?,
        extra_rows: !args.no_extra,
        e2e,
        seed: args.seed,
        profile: args.profile,
        sampling: args.sampler.params(),
        models: args.models,
    })
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let output = args.output;
    let suite = suite(args)?;
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
    let mut progress = Progress::new();
    let mut results = Vec::new();
    if let Err(e) = measure(&suite, &cancel, &mut progress, &mut results) {
        // Keep what finished: a long run that fails late should not lose its figures. The
        // error itself is printed by `main` after them.
        if !results.is_empty() {
            progress.line(&format!(
                "stopped by an error; printing the {} row(s) that finished first",
                results.len()
            ));
            print_results(&results, output)?;
        }
        return Err(e);
    }
    let interrupted = cancel.load(Ordering::SeqCst);
    if interrupted {
        progress.line(&format!(
            "interrupted; printing the {} row(s) that finished",
            results.len()
        ));
    }
    print_results(&results, output)?;
    Ok(if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Ok
    })
}

/// Progress on stderr. One line per finished test (`bench: pp64: 96.81 ± 1.16 t/s`) always; on
/// a terminal also a repetition counter rewritten in place, which would only clutter a log.
struct Progress {
    display: std::sync::Arc<super::progress::Display>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            display: super::progress::Display::stderr(),
        }
    }

    fn line(&mut self, text: &str) {
        self.display.clear();
        eprintln!("bench: {text}");
    }

    /// A counter line, rewritten in place (on a terminal only).
    fn counter(&mut self, text: String) {
        self.display.counter(format!("bench: {text}"));
    }
}

impl Observer for Progress {
    fn loaded(&mut self, model_type: &str, device: &str) {
        self.line(&format!("{model_type} on {device}"));
    }

    fn started(&mut self, name: &str) {
        self.counter(format!("{name}: warm-up"));
    }

    fn repetition(&mut self, name: &str, rep: usize, reps: usize) {
        self.counter(format!("{name}: repetition {rep}/{reps}"));
    }

    fn finished(&mut self, row: &BenchResult, reps: usize) {
        self.line(&report::progress_line(row, reps));
    }

    fn profile(&mut self, profile: &Profile) {
        self.display.clear();
        eprint!("{}", profile.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::api::{self, Limits};
    use clap::Parser;

    /// `--sampler chat` samples as `run` without sampling flags and as an OpenAI request
    /// without sampler fields; `top-p` and `min-p` keep only their own filter.
    #[test]
    fn the_chat_sampler_is_what_run_and_serve_default_to() {
        #[derive(Parser)]
        struct Run {
            #[command(flatten)]
            s: super::super::model_args::SamplingArgs,
        }
        let run = Run::parse_from(["run"]).s.params().unwrap();
        assert_eq!(Sampler::Chat.params(), run);
        let limits = Limits {
            max_tokens: 16,
            max_prompt_tokens: 64,
            max_body_bytes: 4096,
        };
        let req = api::parse(br#"{"prompt":"hi"}"#, false, &limits).unwrap();
        assert_eq!(Sampler::Chat.params(), req.params);
        let top_p = Sampler::TopP.params();
        assert_eq!((top_p.top_k, top_p.top_p, top_p.min_p), (0, 0.95, 0.0));
        let min_p = Sampler::MinP.params();
        assert_eq!((min_p.top_k, min_p.top_p, min_p.min_p), (0, 1.0, 0.05));
        assert_eq!(Sampler::Greedy.params().temperature, 0.0);
        #[derive(Parser)]
        struct Bench {
            #[command(flatten)]
            a: Args,
        }
        let bench = |extra: &[&str]| {
            let argv = ["bench", "-m", "x.gguf"].iter().chain(extra);
            Bench::try_parse_from(argv).map(|b| b.a.sampler)
        };
        assert_eq!(bench(&[]).unwrap(), Sampler::Greedy);
        assert_eq!(bench(&["--sampler", "top-p"]).unwrap(), Sampler::TopP);
        assert!(bench(&["--sampler", "hot"]).is_err());
    }
}
