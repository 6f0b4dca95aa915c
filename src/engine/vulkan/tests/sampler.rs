//! The GPU sampler on both its paths — two stages (the prefilter shaders/sample_pre.comp, then
//! the selection shaders/sample.comp) and one (shaders/sample.comp alone over the whole
//! vocabulary, CPU implementations' default) — against a CPU reference of the same semantics,
//! on random logits over vocabularies that are not a multiple of the workgroup size or of the
//! prefilter's slice, with ties within and across slices, penalized tokens in several slices,
//! and top-k on both sides of the prefilter's limit (`SAMPLE_K_MAX`, past which it keeps the
//! whole vocabulary).

use super::{Gpu, Rng};
use crate::engine::vulkan::buffer::{u32_bytes, Buffer};
use crate::engine::vulkan::kernels::{
    sample_id_words, sample_mode, sample_params, sample_slices, SampleMode, HIST, SAMPLE_K_MAX,
    SAMPLE_SLICE, STATE_WORDS, S_BAD, S_TOKEN,
};
use crate::engine::SamplingParams;

/// The reference: penalty -> greedy | top-k -> softmax(temp) -> top-p -> min-p -> draw, in the
/// order (logit desc, id asc).
pub fn sample_ref(logits: &[f32], hist: &[u32], p: &SamplingParams, u: f32) -> u32 {
    let w = kept_ref(logits, hist, p);
    let s2: f64 = w.iter().map(|x| x.1 as f64).sum();
    let target = u as f64 * s2;
    let mut cum = 0f64;
    for &(i, wi) in &w {
        cum += wi as f64;
        if cum > target {
            return i as u32;
        }
    }
    w.last().unwrap().0 as u32
}

/// The tokens the reference can draw (penalty -> greedy | top-k -> softmax(temp) -> top-p ->
/// min-p), with their weights, in the order (logit desc, id asc); greedy: the one token.
fn kept_ref(logits: &[f32], hist: &[u32], p: &SamplingParams) -> Vec<(usize, f32)> {
    let n = logits.len();
    let l = penalized(logits, hist, p);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap().then(a.cmp(&b)));
    if p.temperature <= 0.0 {
        return vec![(idx[0], 1.0)];
    }
    if p.top_k > 0 && p.top_k < n {
        idx.truncate(p.top_k);
    }
    let mx = l[idx[0]];
    let mut w: Vec<(usize, f32)> = idx
        .iter()
        .map(|&i| (i, ((l[i] - mx) / p.temperature).exp()))
        .collect();
    let s: f64 = w.iter().map(|x| x.1 as f64).sum();
    if p.top_p < 1.0 {
        let target = p.top_p as f64 * s;
        let mut cum = 0f64;
        for j in 0..w.len() {
            cum += w[j].1 as f64;
            if cum >= target {
                w.truncate(j + 1);
                break;
            }
        }
    }
    if p.min_p > 0.0 {
        w.retain(|x| x.1 >= p.min_p);
    }
    w
}

fn params(
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        min_p,
        repeat_penalty,
        repeat_last_n: 64,
    }
}

/// The repetition penalty as the reference applies it: `logits` with each distinct token among
/// the last `repeat_last_n` of `hist` penalized once.
fn penalized(logits: &[f32], hist: &[u32], p: &SamplingParams) -> Vec<f32> {
    let mut l = logits.to_vec();
    if p.repeat_penalty != 1.0 {
        let mut seen = Vec::new();
        for &t in hist.iter().rev().take(p.repeat_last_n.min(HIST)) {
            if !seen.contains(&t) && (t as usize) < l.len() {
                seen.push(t);
                let v = &mut l[t as usize];
                *v = if *v > 0.0 {
                    *v / p.repeat_penalty
                } else {
                    *v * p.repeat_penalty
                };
            }
        }
    }
    l
}

/// The sampler op over one logits row on the device, with its scratch buffer.
struct Sampler {
    n: usize,
    logits: Buffer,
    scratch: Buffer,
}

/// Both paths: two stages, then one.
const PATHS: [bool; 2] = [true, false];

/// What one run left: the state words and the candidates' id buffer.
struct Run {
    state: Vec<u32>,
    ids: Vec<u32>,
}

impl Sampler {
    fn new(gpu: &mut Gpu, logits: &[f32]) -> Sampler {
        let n = logits.len();
        Sampler {
            n,
            logits: gpu.buf_f32(logits),
            scratch: gpu.buf_f32(&vec![0.0; n]),
        }
    }

    /// Samples with `p` and `u` from a state whose history is `hist` (n_past 12; `bad`: a stale
    /// verdict the sampler must overwrite), in two stages (`two`) or one, with the selection
    /// the engine records for `p` (`sample_mode`: greedy-only, top-k-bounded or for every
    /// sampler).
    fn run(
        &self,
        gpu: &mut Gpu,
        two: bool,
        hist: &[u32],
        p: &SamplingParams,
        u: f32,
        bad: u32,
    ) -> Run {
        self.run_with(gpu, two, hist, p, u, bad, sample_mode(p))
    }

    /// `run` with the selection of `mode`.
    #[allow(clippy::too_many_arguments)]
    fn run_with(
        &self,
        gpu: &mut Gpu,
        two: bool,
        hist: &[u32],
        p: &SamplingParams,
        u: f32,
        bad: u32,
        mode: SampleMode,
    ) -> Run {
        let mut state = vec![0u32; STATE_WORDS];
        state[0] = 12; // n_past
        state[3] = hist.len() as u32;
        for (i, &t) in hist.iter().enumerate() {
            state[4 + i] = t;
        }
        state[S_BAD] = bad;
        let sbuf = gpu.buf_u32(&state);
        let pbuf = gpu.buf(u32_bytes(&sample_params(p, u)));
        // Poisoned for every run, so a word the prefilter should have written and did not (or
        // wrote on the one-stage path) shows.
        let ids = gpu.buf_u32(&vec![0xDEAD_BEEF; sample_id_words(self.n)]);
        gpu.kernels.set_sample_two_stage(two);
        let ops = gpu
            .ops()
            .sample(
                self.logits.all(),
                sbuf.all(),
                self.scratch.all(),
                ids.all(),
                pbuf.all(),
                self.n as u32,
            )
            .unwrap();
        let op = ops.get(mode);
        let suffix = match mode {
            SampleMode::Any => "",
            SampleMode::Greedy => "_greedy",
            SampleMode::TopK => "_topk",
        };
        let base = if two { "sample" } else { "sample_one" };
        assert_eq!(
            op.kernel.name,
            format!("{base}{suffix}"),
            "the selection asked for ({mode:?})"
        );
        let mut cmd = crate::engine::vulkan::command::CmdBuffer::new(&gpu.dev).unwrap();
        cmd.begin(false).unwrap();
        op.record(&mut cmd, 1);
        cmd.end().unwrap();
        if two {
            assert_eq!(cmd.dispatches, 2, "the prefilter and the selection");
        } else {
            assert_eq!(cmd.dispatches, 1, "one stage: no prefilter");
        }
        cmd.submit_wait().unwrap();
        Run {
            state: gpu.read_u32(&sbuf, STATE_WORDS),
            ids: gpu.read_u32(&ids, sample_id_words(self.n)),
        }
    }

    /// Runs every case at several `u` on both paths and checks each token against the
    /// reference, the state bookkeeping, and which candidates the prefilter kept (two stages)
    /// or that nothing wrote candidates (one stage).
    fn check(&self, gpu: &mut Gpu, logits: &[f32], hist: &[u32], cases: &[SamplingParams]) {
        for ((ci, p), two) in cases
            .iter()
            .enumerate()
            .flat_map(|c| PATHS.map(|two| (c, two)))
        {
            for u in [0.0f32, 0.13, 0.5, 0.77, 0.999] {
                let r = self.run(gpu, two, hist, p, u, 0);
                let want = sample_ref(logits, hist, p, u);
                let what = format!("n={} two stages {two} case {ci} {p:?} u={u}", self.n);
                assert_eq!(r.state[S_TOKEN], want, "{what}");
                let mode = sample_mode(p);
                if mode != SampleMode::Any {
                    // The selection for every sampler decodes these as well (its run-time tests
                    // of the parameters), with the same state after it.
                    let any = self.run_with(gpu, two, hist, p, u, 0, SampleMode::Any);
                    assert_eq!(any.state, r.state, "selection for every sampler: {what}");
                }
                assert_eq!(
                    r.state[0], 12,
                    "n_past untouched (the token is fed next step)"
                );
                assert_eq!(r.state[3], hist.len() as u32 + 1, "history count: {what}");
                assert_eq!(r.state[4 + hist.len()], want, "appended: {what}");
                assert_eq!(r.state[S_BAD], 0, "finite logits: {what}");
                if two {
                    expect_candidates(&r.ids, &penalized(logits, hist, p), p, &what);
                } else {
                    assert!(
                        r.ids[..self.n + sample_slices(self.n)]
                            .iter()
                            .all(|&w| w == 0xDEAD_BEEF),
                        "one stage wrote candidates: {what}"
                    );
                }
                if let Some(list) = narrowed(&r, self.n, two) {
                    let kept = kept_ref(logits, hist, p);
                    expect_narrowed(&list, &kept, self.n, mode, &what);
                }
            }
        }
    }
}

/// The token ids of the selection's narrowed list (shaders/sample.comp `narrow`), or `None` when
/// it did not narrow (the list's region is still poisoned).
fn narrowed(r: &Run, n: usize, two: bool) -> Option<Vec<u32>> {
    let list: Vec<u32> = r.ids[n + sample_slices(n)..]
        .iter()
        .copied()
        .take_while(|&w| w != 0xDEAD_BEEF)
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(if two {
        list.iter().map(|&c| r.ids[c as usize]).collect()
    } else {
        list
    })
}

/// A narrowed list keeps at most half the candidates, in id order, and every token the
/// reference could draw (`kept`): narrowing is exact. The top-k-bounded selection's list
/// (`SampleMode::TopK`) is in no order and holds at most `SAMPLE_K_MAX` distinct tokens.
fn expect_narrowed(list: &[u32], kept: &[(usize, f32)], n: usize, mode: SampleMode, what: &str) {
    let mut list = list.to_vec();
    if mode == SampleMode::TopK {
        assert!(list.len() <= SAMPLE_K_MAX, "{} listed: {what}", list.len());
        list.sort_unstable();
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "a token listed twice: {what}"
        );
    } else {
        assert!(list.len() <= n / 2, "{} listed of {n}: {what}", list.len());
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "the list in id order: {what}"
        );
    }
    for &(t, _) in kept {
        assert!(
            list.binary_search(&(t as u32)).is_ok(),
            "token {t}, which the reference can draw, narrowed away: {what}"
        );
    }
}

/// Candidates per slice the prefilter keeps for `p` over `n` tokens (shaders/common/
/// candidates.glsl), written out again so the test checks the shader's rule.
fn per_slice(p: &SamplingParams, n: usize) -> usize {
    if p.temperature <= 0.0 {
        1
    } else if p.top_k > 0 && p.top_k < n && p.top_k <= SAMPLE_K_MAX {
        p.top_k
    } else {
        SAMPLE_SLICE
    }
}

/// The prefilter kept, for each slice at slice·k, exactly the slice's top k of the penalized
/// logits `l` (order: logit desc, id asc), in id order; each slice's NaN/infinity word is 0.
fn expect_candidates(ids: &[u32], l: &[f32], p: &SamplingParams, what: &str) {
    let n = l.len();
    let k = per_slice(p, n);
    for s in 0..sample_slices(n) {
        let lo = s * SAMPLE_SLICE;
        let hi = (lo + SAMPLE_SLICE).min(n);
        let mut best: Vec<u32> = (lo as u32..hi as u32).collect();
        best.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
        best.truncate(k);
        best.sort_unstable();
        let got = &ids[s * k..s * k + best.len()];
        assert_eq!(got, &best[..], "slice {s}'s candidates (k = {k}): {what}");
        assert_eq!(ids[n + s], 0, "slice {s}'s verdict: {what}");
    }
}

#[test]
fn gpu_sampler_matches_reference() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(6);
    let n = 3001usize;
    let mut logits = rng.vec(n, 4.0);
    // Ties: a duplicated maximum (greedy must take the lower id), and a run of equal values
    // around where a top-k cut falls.
    let top = logits.iter().cloned().fold(f32::MIN, f32::max) + 1.0;
    logits[2000] = top;
    logits[17] = top;
    for i in [100usize, 300, 700, 1500, 2999] {
        logits[i] = 3.5;
    }
    let hist: Vec<u32> = vec![17, 5, 17, 2000, 42, 9, 42];
    let cases = [
        params(0.0, 0, 1.0, 0.0, 1.0),
        params(0.0, 0, 1.0, 0.0, 1.3),
        params(1.0, 0, 1.0, 0.0, 1.0),
        params(0.7, 40, 1.0, 0.0, 1.0),
        params(0.9, 0, 0.9, 0.0, 1.0),
        params(0.8, 0, 1.0, 0.05, 1.0),
        params(0.8, 50, 0.95, 0.02, 1.1),
        params(1.5, 7, 1.0, 0.0, 1.0),
    ];
    Sampler::new(&mut gpu, &logits).check(&mut gpu, &logits, &hist, &cases);
    // Greedy ties go to the lowest id.
    assert_eq!(sample_ref(&logits, &hist, &cases[0], 0.0), 17);
}

/// The prefilter's boundaries: five slices, the last one short; logits on a coarse grid, so
/// every top-k cut falls inside a run of equal logits spread over all the slices (ties across
/// slice boundaries, kept in id order); penalized tokens in four slices, one of them the
/// greedy winner; top_k = 1, 2, K_MAX (the prefilter's largest) and K_MAX + 1 (the whole
/// vocabulary), top_k = n - 1 and top_k = n.
#[test]
fn gpu_sampler_candidates_across_slices() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(11);
    let n = 4 * SAMPLE_SLICE + 333;
    let mut logits: Vec<f32> = (0..n).map(|_| (rng.sym(4.0) * 4.0).round() / 4.0).collect();
    // The maximum at the last id of slice 0 and the first of slice 1 (greedy: the lower id),
    // above it a token in slice 4 that the penalty pushes below.
    logits[SAMPLE_SLICE - 1] = 6.0;
    logits[SAMPLE_SLICE] = 6.0;
    logits[4 * SAMPLE_SLICE + 100] = 7.0;
    let hist: Vec<u32> = vec![
        5,
        4 * SAMPLE_SLICE as u32 + 100,
        1030,
        2047,
        n as u32 - 1,
        5,
        3000,
    ];
    let k = SAMPLE_K_MAX;
    let cases = [
        params(0.0, 0, 1.0, 0.0, 1.0),
        params(0.0, 0, 1.0, 0.0, 1.3),
        params(0.9, 1, 1.0, 0.0, 1.2),
        params(0.9, 2, 1.0, 0.0, 1.0),
        params(1.0, k, 1.0, 0.0, 1.0),
        params(0.6, k, 0.8, 0.01, 1.3),
        params(1.0, k + 1, 1.0, 0.0, 1.0),
        params(0.6, k + 1, 0.8, 0.01, 1.3),
        params(0.8, 0, 0.5, 0.0, 1.1),
        params(1.2, n - 1, 1.0, 0.0, 1.0),
        params(1.2, n, 1.0, 0.1, 1.0),
    ];
    let s = Sampler::new(&mut gpu, &logits);
    s.check(&mut gpu, &logits, &hist, &cases);
    assert_eq!(sample_ref(&logits, &hist, &cases[0], 0.0), 4 * 1024 + 100);
    assert_eq!(
        sample_ref(&logits, &hist, &cases[1], 0.0),
        SAMPLE_SLICE as u32 - 1
    );
    // The whole vocabulary past K_MAX: every id in place.
    let r = s.run(&mut gpu, true, &hist, &cases[6], 0.5, 0);
    assert!(r.ids[..n]
        .iter()
        .enumerate()
        .all(|(i, &id)| id as usize == i));

    // The top K_MAX all in one slice (slice 2): the other slices' candidates are all dropped
    // by the selection's top-k, whose cut falls among equal logits.
    let mut crowded = logits.clone();
    for (j, v) in crowded[2 * SAMPLE_SLICE..2 * SAMPLE_SLICE + 300]
        .iter_mut()
        .enumerate()
    {
        *v = 10.0 + (j % 7) as f32 * 0.25;
    }
    let s = Sampler::new(&mut gpu, &crowded);
    s.check(&mut gpu, &crowded, &hist, &cases[2..8]);
}

/// A vocabulary smaller than one slice and smaller than top_k: one prefilter workgroup, top-k
/// a no-op as over the whole vocabulary.
#[test]
fn gpu_sampler_small_vocabulary() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(3);
    let n = 77;
    let logits = rng.vec(n, 3.0);
    let hist = vec![3u32, 76, 3, 40];
    let cases = [
        params(0.0, 0, 1.0, 0.0, 1.2),
        params(0.8, 20, 0.9, 0.0, 1.2),
        params(0.8, 76, 1.0, 0.05, 1.0),
        params(0.8, 100, 1.0, 0.0, 1.0),
    ];
    Sampler::new(&mut gpu, &logits).check(&mut gpu, &logits, &hist, &cases);
}

/// One stage penalizes while it reads the logits, each invocation stepping through the history
/// tokens of its own class of ids (id mod 128, the workgroup size) in id order: several history
/// tokens in one class (the four largest logits, so greedy must look past each), repeats, a
/// token outside the vocabulary, a penalty below 1 (raising), and tokens older than
/// `repeat_last_n` (not penalized: one of them is the greedy winner) must all give the
/// reference's token, on both paths.
#[test]
fn gpu_sampler_penalty_same_class() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(21);
    let n = 3001usize;
    let mut logits = rng.vec(n, 2.0);
    let class = [5usize, 133, 261, 5 + 23 * 128];
    for (j, &t) in class.iter().enumerate() {
        logits[t] = 9.0 - j as f32 * 0.1;
    }
    logits[700] = 8.0;
    // Older than the last 64: 700 and 1000 (never penalized), then 70 random tokens (none of
    // them 700), then the recent ones, repeats and an id past the vocabulary among them.
    let mut hist: Vec<u32> = vec![700, 1000];
    while hist.len() < 72 {
        let t = (rng.next_u64() % n as u64) as u32;
        if t != 700 && t != 1000 {
            hist.push(t);
        }
    }
    hist.extend([5, 133, 5, 261, n as u32 + 7, 2949, 133, 261]);
    let last = |mut p: SamplingParams| {
        p.repeat_last_n = 64;
        p
    };
    let cases = [
        last(params(0.0, 0, 1.0, 0.0, 2.0)),
        last(params(0.0, 0, 1.0, 0.0, 0.7)),
        last(params(0.8, 40, 0.95, 0.0, 2.0)),
        last(params(0.8, 0, 1.0, 0.05, 1.5)),
        last(params(1.0, 0, 0.9, 0.0, 0.7)),
        last(params(1.0, 0, 0.9, 0.02, 1.3)),
    ];
    Sampler::new(&mut gpu, &logits).check(&mut gpu, &logits, &hist, &cases);
    assert_eq!(sample_ref(&logits, &hist, &cases[0], 0.0), 700);
    assert_eq!(sample_ref(&logits, &hist, &cases[1], 0.0), 5);
}

/// A NaN or infinite logit anywhere in the row (the first slice, or the last, short one) is
/// flagged in the state's `S_BAD` word (bit 0 NaN, bit 1 infinite), greedy or sampling, with a
/// penalty or without, whatever the candidates, on both paths, and the token is then 0 (an id
/// the next step can embed); finite logits leave the word 0 and sample as before.
#[test]
fn gpu_sampler_flags_non_finite_logits() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(9);
    let n = 2 * SAMPLE_SLICE + 1001;
    let cases = [
        (None, 0),
        (Some(f32::NAN), 1),
        (Some(f32::INFINITY), 2),
        (Some(f32::NEG_INFINITY), 2),
    ];
    for (bad, want_flag) in cases {
        for at in [3usize, n - 1] {
            let mut logits = rng.vec(n, 4.0);
            logits[1321] = 50.0;
            if let Some(v) = bad {
                logits[at] = v;
            }
            let s = Sampler::new(&mut gpu, &logits);
            // With a penalty, on a history that holds the bad logit's id and the winner's.
            let hist = [at as u32, 1321, 7];
            for (p, hist) in [
                (params(0.0, 0, 1.0, 0.0, 1.0), &[][..]),
                (params(0.8, 40, 0.95, 0.0, 1.0), &[]),
                (params(0.8, 0, 0.95, 0.0, 1.0), &[]),
                (params(0.0, 0, 1.0, 0.0, 1.3), &hist),
                (params(0.8, 0, 1.0, 0.05, 1.1), &hist),
            ] {
                for two in PATHS {
                    // A verdict left from an earlier step is overwritten.
                    let st = s.run(&mut gpu, two, hist, &p, 0.5, 7).state;
                    let what = format!("{bad:?} at {at} {p:?} {hist:?}, two stages {two}");
                    assert_eq!(st[S_BAD], want_flag, "{what}");
                    let want_token = if want_flag == 0 { 1321 } else { 0 };
                    assert_eq!(st[S_TOKEN], want_token, "{what}");
                }
            }
        }
    }
}

/// Logits shaped like a language model's: a bulk of `n` tokens in -4..4, a head of 300 tokens
/// 6..14 spread over the ids, and 60 tokens tied at 11 (so top-k cuts of 40 and more fall in a
/// run of equal logits across invocations' classes of ids and across slices).
fn peaked(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut l = rng.vec(n, 4.0);
    for j in 0..300 {
        let t = (j * 7919 + 13) % n;
        l[t] = 10.0 + rng.sym(4.0);
    }
    for j in 0..60 {
        l[(j * 104_729 + 5) % n] = 11.0;
    }
    l
}

/// The selection narrows its passes to the candidates that can still be drawn (top-k's bound,
/// min-p's floor, top-p's tail bound): on a model-shaped row of SmolLM2's and Qwen2.5's
/// vocabulary sizes, the chat defaults, top-k, top-p only and min-p only narrow on both paths,
/// the list holds every token the reference can draw, and every case (ties at the top-k cut,
/// top-k = the workgroup size and one past it, top-p 1 and min-p 0, a penalty) draws the
/// reference's token. (No case draws from the whole vocabulary, which is not narrowed: over
/// 152k weights the f32 sums of either path and the reference's f64 sums can put a draw near
/// u = 1 on different tokens of the tail.)
#[test]
fn gpu_sampler_narrows_exactly() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(31);
    for n in [49_152usize, 151_936] {
        let logits = peaked(&mut rng, n);
        let hist: Vec<u32> = vec![13, 7932, 5, (n - 1) as u32, 13];
        let chat = params(0.8, 40, 0.95, 0.05, 1.0);
        let top_k = params(0.8, 40, 1.0, 0.0, 1.0);
        let top_p = params(0.8, 0, 0.95, 0.0, 1.0);
        let min_p = params(0.8, 0, 1.0, 0.05, 1.0);
        let s = Sampler::new(&mut gpu, &logits);
        for p in [&chat, &top_k, &top_p, &min_p] {
            for two in PATHS {
                let r = s.run(&mut gpu, two, &hist, p, 0.5, 0);
                assert!(
                    narrowed(&r, n, two).is_some(),
                    "n={n} {p:?} two stages {two}: not narrowed"
                );
            }
        }
        let cases = [
            chat.clone(),
            top_k,
            top_p,
            min_p,
            params(0.0, 0, 1.0, 0.0, 1.0),
            params(1.0, 50, 1.0, 0.0, 1.0),
            params(0.7, 128, 0.9, 0.0, 1.0),
            params(0.7, 129, 0.9, 0.02, 1.0),
            params(0.7, 129, 1.0, 0.0, 1.0),
            params(1.0, 0, 0.95, 0.05, 1.0),
            params(1.0, 0, 0.5, 0.0, 1.0),
            params(0.8, 40, 0.95, 0.05, 1.3),
            params(0.8, 0, 1.0, 0.3, 1.3),
        ];
        s.check(&mut gpu, &logits, &hist, &cases);
    }
}

/// Vocabularies smaller than the workgroup (invocations without a token: the top-k bound is the
/// k-th largest of the invocations that have one) and just past it, every sampler.
#[test]
fn gpu_sampler_tiny_vocabularies() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(41);
    for n in [1usize, 2, 5, 130] {
        let mut logits = rng.vec(n, 3.0);
        if n > 2 {
            logits[n - 1] = logits[0];
        }
        let hist = vec![0u32, (n - 1) as u32];
        let cases = [
            params(0.0, 0, 1.0, 0.0, 1.0),
            params(0.8, 1, 1.0, 0.0, 1.0),
            params(0.8, 3, 0.95, 0.05, 1.2),
            params(0.8, 0, 0.9, 0.0, 1.0),
            params(0.8, 0, 1.0, 0.2, 1.0),
            params(0.8, 0, 1.0, 0.0, 1.0),
            params(0.8, 0, 0.001, 0.0, 1.0),
            params(1.3, n + 1, 0.6, 0.0, 1.0),
        ];
        Sampler::new(&mut gpu, &logits).check(&mut gpu, &logits, &hist, &cases);
    }
}

/// Top-p without a top-k (top_k 0, or >= the vocabulary) narrows before its softmax pass to
/// the bins of weight (factors of 4 from the top) that hold top_p of the mass (shaders/
/// sample.comp `narrow_nucleus`): on model-shaped rows of SmolLM2's and Qwen2.5's vocabulary
/// sizes and on a coarse grid of logits (the nucleus' last weight tied across many tokens), top_p
/// from 1e-6 to 0.99, with min-p, a penalty, a high and a low temperature, every case on both
/// paths draws the reference's token and every narrowed list holds every token the reference
/// can draw (`check`). The lists take both ways after narrowing: at most 128 (ranked,
/// `select_small`, with the whole row's total) and more (the radix searches over the list).
#[test]
fn gpu_sampler_top_p_narrows_to_the_nucleus() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(57);
    let mut sizes = Vec::new();
    let grid: Vec<f32> = (0..20_000)
        .map(|_| (rng.sym(4.0) * 2.0).round() / 2.0)
        .collect();
    let rows = [peaked(&mut rng, 49_152), peaked(&mut rng, 151_936), grid];
    for logits in &rows {
        let n = logits.len();
        let hist: Vec<u32> = vec![13, 7932, 5, (n - 1) as u32, 13];
        let cases = [
            params(0.8, 0, 0.95, 0.0, 1.0),
            params(0.8, 0, 0.5, 0.0, 1.0),
            params(0.8, 0, 0.01, 0.0, 1.0),
            params(0.8, 0, 1e-6, 0.0, 1.0),
            params(0.8, n, 0.9, 0.0, 1.0),
            params(0.8, 0, 0.9, 0.02, 1.3),
            params(1.0, 0, 0.99, 0.0, 1.0),
            params(2.0, 0, 0.7, 0.0, 1.0),
            params(0.3, 0, 0.95, 0.0, 1.2),
        ];
        let s = Sampler::new(&mut gpu, logits);
        s.check(&mut gpu, logits, &hist, &cases);
        for p in &cases {
            for two in PATHS {
                let r = s.run(&mut gpu, two, &hist, p, 0.5, 0);
                let list = narrowed(&r, n, two);
                let what = format!("n={n} {p:?} two stages {two}");
                if p.top_p <= 0.5 {
                    assert!(list.is_some(), "{what}: not narrowed");
                }
                if let Some(l) = list {
                    sizes.push(l.len());
                }
            }
        }
    }
    assert!(
        sizes.iter().any(|&m| m <= 128) && sizes.iter().any(|&m| m > 128),
        "list sizes {sizes:?}"
    );
}

/// The top-k-bounded selection (`SampleMode::TopK`) with more than 128 candidates at its bound
/// (300 tokens tied at the top, spread over the ids; shaders/sample.comp `tk_exact`): its list is
/// then exactly the top k on the one-stage path — the lowest ids among the tied — and every case draws the
/// reference's token on both paths, with a penalty that pulls some of the tied tokens out of
/// the tie, and with top-k 1, 40 (the chat defaults) and 128.
#[test]
fn gpu_sampler_top_k_exact_when_the_bound_ties() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(63);
    for n in [3001usize, 49_152] {
        let mut logits = rng.vec(n, 4.0);
        for j in 0..300 {
            logits[(j * 7_919 + 11) % n] = 12.0;
        }
        let tied = (11 % n) as u32;
        let hist: Vec<u32> = vec![tied, 5, ((7_919 + 11) % n) as u32];
        let cases = [
            params(0.8, 40, 0.95, 0.05, 1.0),
            params(0.8, 40, 0.95, 0.05, 1.3),
            params(1.0, 1, 1.0, 0.0, 1.0),
            params(1.0, 128, 1.0, 0.0, 1.2),
            params(0.5, 100, 0.5, 0.0, 1.0),
        ];
        let s = Sampler::new(&mut gpu, &logits);
        s.check(&mut gpu, &logits, &hist, &cases);
        for p in &cases {
            assert_eq!(sample_mode(p), SampleMode::TopK);
            // One stage: all 300 tied tokens (298 with the penalty) reach the bound. (Two
            // stages keep at most k of them per slice, which can stay at or below 128; `check`
            // covers their lists.)
            let r = s.run(&mut gpu, false, &hist, p, 0.5, 0);
            let list = narrowed(&r, n, false).expect("a list");
            assert_eq!(list.len(), p.top_k, "exactly the top k: n={n} {p:?}");
        }
    }
}
