//! `pigpu bench`'s measurement core, with llama-bench's semantics: one warm-up run per test, the
//! KV cache cleared before every repetition, prompt tests on random tokens in batches, generation
//! tests one token per step, tokenisation excluded, mean ± sample standard deviation of tokens/s.
//! `suite` runs a whole bench (models × threads × tests) and builds the rows; `report` renders
//! them.

pub mod describe;
pub mod report;
pub mod suite;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::engine::{Engine, SamplingParams, Stats};
pub use crate::model::sampler::Rng;
pub use suite::{measure, Observer, Suite};

/// One test: `n_prompt` prompt tokens and/or `n_gen` generated tokens after `n_depth` tokens of
/// (untimed) context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestSpec {
    /// Prompt tokens processed in one batch pass (0: none).
    pub n_prompt: usize,
    /// Tokens generated one at a time after the prompt (0: none).
    pub n_gen: usize,
    /// Tokens of context filled before the timed part (0: none).
    pub n_depth: usize,
}

impl TestSpec {
    /// llama-bench's test name: `pp512`, `tg128`, `pp512+tg128`, with ` @ d4096` for a depth.
    pub fn name(&self) -> String {
        let mut s = match (self.n_prompt, self.n_gen) {
            (p, 0) => format!("pp{p}"),
            (0, g) => format!("tg{g}"),
            (p, g) => format!("pp{p}+tg{g}"),
        };
        if self.n_depth > 0 {
            s.push_str(&format!(" @ d{}", self.n_depth));
        }
        s
    }
    /// Context the test needs (saturating: an absurd `-n` must not wrap round to a small
    /// context that passes the checks).
    pub fn n_ctx(&self) -> usize {
        self.n_depth
            .saturating_add(self.n_prompt)
            .saturating_add(self.n_gen)
    }
}

/// Every combination, in llama-bench's order: prompt tests, then generation tests, then
/// prompt+generation pairs, each for every depth. Zero values are skipped.
fn expand(
    prompts: &[usize],
    gens: &[usize],
    pairs: &[(usize, usize)],
    depths: &[usize],
) -> Vec<TestSpec> {
    let depths = if depths.is_empty() { &[0][..] } else { depths };
    let mut out = Vec::new();
    for &d in depths {
        for &p in prompts.iter().filter(|&&p| p > 0) {
            out.push(TestSpec {
                n_prompt: p,
                n_gen: 0,
                n_depth: d,
            });
        }
        for &g in gens.iter().filter(|&&g| g > 0) {
            out.push(TestSpec {
                n_prompt: 0,
                n_gen: g,
                n_depth: d,
            });
        }
        for &(p, g) in pairs.iter().filter(|&&(p, g)| p > 0 || g > 0) {
            out.push(TestSpec {
                n_prompt: p,
                n_gen: g,
                n_depth: d,
            });
        }
    }
    out
}

/// `-pg PP,TG`: a prompt length and a generation length.
pub fn parse_pair(s: &str) -> Result<(usize, usize), String> {
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

/// More repetitions than this are refused: an absurd `-r` (a typo, or 2^64 − 1) would
/// otherwise run until killed and print nothing.
const MAX_REPS: usize = 10_000;

/// Flag values that describe no bench.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// No test has any tokens to process.
    #[error("nothing to measure: every -p, -n and -pg value is 0")]
    NothingToMeasure,
    /// `-r 0`.
    #[error("-r must be at least 1")]
    NoRepetitions,
    /// `-r` above the cap.
    #[error("-r {0} is more than {MAX_REPS} repetitions per test")]
    TooManyRepetitions(usize),
    /// `-b 0`.
    #[error("-b (batch size) must be at least 1")]
    NoBatch,
}

/// The tests the flags ask for (see [`expand`]), and the `e2eN` row's length (the longest
/// generation, when pigpu's own rows are on), after checking the counts.
pub fn plan(
    prompts: &[usize],
    gens: &[usize],
    pairs: &[(usize, usize)],
    depths: &[usize],
    reps: usize,
    n_batch: usize,
    extra_rows: bool,
) -> Result<(Vec<TestSpec>, Option<usize>), PlanError> {
    let tests = expand(prompts, gens, pairs, depths);
    if tests.is_empty() {
        return Err(PlanError::NothingToMeasure);
    }
    if reps == 0 {
        return Err(PlanError::NoRepetitions);
    }
    if reps > MAX_REPS {
        return Err(PlanError::TooManyRepetitions(reps));
    }
    if n_batch == 0 {
        return Err(PlanError::NoBatch);
    }
    let e2e = gens.iter().copied().filter(|&g| g > 0).max();
    Ok((tests, e2e.filter(|_| extra_rows)))
}

/// Random prompt tokens, from the sampler's seeded generator, so two runs with the same seed
/// measure the same work.
fn random_tokens(rng: &mut Rng, n: usize, n_vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| (rng.next_u64() % n_vocab as u64) as u32)
        .collect()
}

/// The timed samples of one test.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Wall time of each timed repetition, in nanoseconds.
    pub ns: Vec<u64>,
    /// Engine counters over all timed generation steps.
    pub stats: Stats,
}

/// How each test is repeated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Timed repetitions per test.
    pub reps: usize,
    /// How each generation step samples (`--sampler`; greedy by default).
    pub sampling: SamplingParams,
    /// Prompt tokens fed to the engine per call (`-b`).
    pub n_batch: usize,
    /// Vocabulary size: random prompt tokens are drawn below it.
    pub n_vocab: usize,
}

/// Runs one test `reps` times after a warm-up, calling `on_rep` after each timed repetition.
/// `cancel` is checked between batches and generation steps, so Ctrl-C takes effect within one
/// forward pass; the repetition it interrupts is discarded. Returns `None` if no repetition
/// finished, else the samples of those that did (possibly fewer than `reps`).
pub fn run_test(
    engine: &mut dyn Engine,
    spec: TestSpec,
    cfg: &RunConfig,
    rng: &mut Rng,
    cancel: &AtomicBool,
    mut on_rep: impl FnMut(usize),
) -> anyhow::Result<Option<Samples>> {
    let sampling = &cfg.sampling;
    let (reps, n_vocab) = (cfg.reps, cfg.n_vocab);
    let n_batch = cfg.n_batch.max(1);
    let cancelled = || cancel.load(Ordering::Relaxed);

    // One run of the test; `None` when cancelled part-way.
    let once = |engine: &mut dyn Engine,
                rng: &mut Rng,
                timed: bool|
     -> anyhow::Result<Option<(u64, Stats)>> {
        engine.reset();
        if spec.n_depth > 0 {
            for chunk in random_tokens(rng, spec.n_depth, n_vocab).chunks(n_batch) {
                if cancelled() {
                    return Ok(None);
                }
                engine.prefill(chunk)?;
            }
        }
        let prompt = random_tokens(rng, spec.n_prompt, n_vocab);
        let first = random_tokens(rng, 1, n_vocab);
        engine.reset_stats();
        let t0 = Instant::now();
        for chunk in prompt.chunks(n_batch) {
            if cancelled() {
                return Ok(None);
            }
            engine.prefill(chunk)?;
        }
        let gen_start = engine.stats();
        if spec.n_gen > 0 {
            // The first generated token needs a forward pass of its own when there was no
            // prompt (llama-bench decodes a random token); afterwards each step samples and
            // advances.
            let steps = if spec.n_prompt == 0 && spec.n_depth == 0 {
                engine.prefill(&first)?;
                spec.n_gen - 1
            } else {
                spec.n_gen
            };
            for _ in 0..steps {
                if cancelled() {
                    return Ok(None);
                }
                engine.step(sampling, rng.next_f32())?;
            }
        }
        let ns = t0.elapsed().as_nanos() as u64;
        let mut stats = engine.stats();
        if timed {
            stats = diff(&stats, &gen_start);
            stats.tokens = spec.n_gen as u64;
        }
        Ok(Some((ns, stats)))
    };

    let mut samples = Samples::default();
    if once(engine, rng, false)?.is_some() {
        // The warm-up finished; now the timed repetitions. With `--profile`, drop the warm-up's
        // timings (they include each pipeline's first use).
        let _ = engine.take_profile();
        for rep in 0..reps {
            let Some((ns, stats)) = once(engine, rng, true)? else {
                break;
            };
            samples.ns.push(ns);
            add(&mut samples.stats, &stats);
            on_rep(rep + 1);
            if cancelled() {
                break;
            }
        }
    }
    engine.reset();
    Ok(if samples.ns.is_empty() {
        None
    } else {
        Some(samples)
    })
}

fn diff(a: &Stats, b: &Stats) -> Stats {
    Stats {
        tokens: a.tokens.saturating_sub(b.tokens),
        dispatches: a.dispatches.saturating_sub(b.dispatches),
        submits: a.submits.saturating_sub(b.submits),
        command_buffers_recorded: a
            .command_buffers_recorded
            .saturating_sub(b.command_buffers_recorded),
        descriptor_updates: a.descriptor_updates.saturating_sub(b.descriptor_updates),
        readback_bytes: a.readback_bytes.saturating_sub(b.readback_bytes),
        upload_bytes: a.upload_bytes.saturating_sub(b.upload_bytes),
        host_ns: a.host_ns.saturating_sub(b.host_ns),
    }
}

fn add(a: &mut Stats, b: &Stats) {
    a.tokens += b.tokens;
    a.dispatches += b.dispatches;
    a.submits += b.submits;
    a.command_buffers_recorded += b.command_buffers_recorded;
    a.descriptor_updates += b.descriptor_updates;
    a.readback_bytes += b.readback_bytes;
    a.upload_bytes += b.upload_bytes;
    a.host_ns += b.host_ns;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_llama_bench() {
        let t = |p, g, d| {
            TestSpec {
                n_prompt: p,
                n_gen: g,
                n_depth: d,
            }
            .name()
        };
        assert_eq!(t(512, 0, 0), "pp512");
        assert_eq!(t(0, 128, 0), "tg128");
        assert_eq!(t(4096, 128, 0), "pp4096+tg128");
        assert_eq!(t(512, 0, 4096), "pp512 @ d4096");
    }

    #[test]
    fn every_combination_in_order() {
        let v = expand(&[128, 512], &[16], &[(64, 8)], &[0, 256]);
        let names: Vec<String> = v.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "pp128",
                "pp512",
                "tg16",
                "pp64+tg8",
                "pp128 @ d256",
                "pp512 @ d256",
                "tg16 @ d256",
                "pp64+tg8 @ d256"
            ]
        );
        assert!(expand(&[0], &[0], &[], &[]).is_empty());
    }

    #[test]
    fn absurd_counts_neither_wrap_nor_pass() {
        let max = usize::MAX;
        // A pair whose sum wraps to 1 is still a test, and its context saturates.
        let v = expand(&[], &[], &[(max, 2)], &[max]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].n_ctx(), max);
        let plan1 = |reps, b| plan(&[8], &[4], &[], &[0], reps, b, true);
        assert_eq!(plan1(max, 1), Err(PlanError::TooManyRepetitions(max)));
        assert_eq!(plan1(0, 1), Err(PlanError::NoRepetitions));
        assert_eq!(plan1(1, 0), Err(PlanError::NoBatch));
        let (tests, e2e) = plan1(MAX_REPS, 1).unwrap();
        assert_eq!((tests.len(), e2e), (2, Some(4)));
        assert_eq!(
            plan(&[0], &[0], &[], &[], 1, 1, true),
            Err(PlanError::NothingToMeasure)
        );
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let ta = random_tokens(&mut a, 100, 49152);
        assert_eq!(ta, random_tokens(&mut b, 100, 49152));
        assert!(ta.iter().all(|&t| t < 49152));
        assert!(ta.iter().any(|&t| t != ta[0]));
    }
}
