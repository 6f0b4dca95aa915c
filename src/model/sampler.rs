//! The host-side sampler: the reference every engine's sampling is tested against, and what
//! the CPU engine uses. Pure: given logits, the token history, the settings and one uniform
//! random number it always picks the same token. The random number comes from [`Rng`], a
//! small seeded generator, so the same `--seed` gives the same text.

/// A seeded pseudo-random generator (SplitMix64): tiny, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`; the same seed gives the same sequence.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1), from the top 24 bits (exactly representable in f32).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Sampling settings. `temperature <= 0` means greedy (argmax; ties go to the lowest id).
///
/// Order of application, the same in every engine: repetition penalty over the last
/// `repeat_last_n` tokens of the history → top-k → temperature → softmax → top-p → min-p →
/// draw with the host-supplied uniform number `u` in [0, 1).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits before the softmax; `<= 0` means greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the repetition penalty looks at (0 = none).
    pub repeat_last_n: usize,
}

impl SamplingParams {
    /// Argmax sampling with every filter off.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
        }
    }
}

impl SamplingParams {
    /// The defaults of `run`, chat and `serve` (a request without sampler fields): temperature
    /// 0.8, top-k 40, top-p 0.95, min-p 0.05, no repetition penalty.
    pub fn chat() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            ..SamplingParams::greedy()
        }
    }
}

/// Index of the largest value; ties go to the lowest index. NaN never wins.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_v {
            best_v = x;
            best = i;
        }
    }
    best
}

/// Applies the repetition penalty in place to the logits of tokens among the last
/// `params.repeat_last_n` of `history` (each distinct token once): positive logits are divided
/// by the penalty, negative ones multiplied, as llama.cpp does.
fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], params: &SamplingParams) {
    if params.repeat_penalty == 1.0 || params.repeat_last_n == 0 {
        return;
    }
    let start = history.len().saturating_sub(params.repeat_last_n);
    let mut seen: Vec<u32> = history[start..].to_vec();
    seen.sort_unstable();
    seen.dedup();
    for t in seen {
        if let Some(l) = logits.get_mut(t as usize) {
            if *l > 0.0 {
                *l /= params.repeat_penalty;
            } else {
                *l *= params.repeat_penalty;
            }
        }
    }
}

/// Picks a token from `logits` (modified in place by the repetition penalty).
///
/// Order (the contract in [`SamplingParams`]): repetition penalty → greedy if
/// `temperature <= 0` → top-k → temperature → softmax → top-p → min-p → draw with `u`.
pub fn sample(logits: &mut [f32], history: &[u32], params: &SamplingParams, u: f32) -> u32 {
    apply_repetition_penalty(logits, history, params);
    if params.temperature <= 0.0 {
        return argmax(logits) as u32;
    }
    // Candidates sorted by logit, highest first (ties: lower id first, so the order is total).
    let mut cand: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_nan())
        .map(|(i, &l)| (i as u32, l))
        .collect();
    if cand.is_empty() {
        return 0;
    }
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if params.top_k > 0 && params.top_k < cand.len() {
        cand.select_nth_unstable_by(params.top_k - 1, by_logit);
        cand.truncate(params.top_k);
    }
    cand.sort_unstable_by(by_logit);

    // Softmax at the temperature (shifted by the max for stability).
    let max = cand[0].1;
    let mut probs: Vec<f32> = cand
        .iter()
        .map(|&(_, l)| ((l - max) / params.temperature).exp())
        .collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);

    // Top-p: the smallest prefix whose mass reaches p (at least one token).
    let mut keep = probs.len();
    if params.top_p < 1.0 {
        let mut cum = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= params.top_p {
                keep = i + 1;
                break;
            }
        }
    }
    // Min-p: drop tokens below min_p × the top probability.
    if params.min_p > 0.0 {
        let floor = params.min_p * probs[0];
        keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
    }
    let kept = &probs[..keep];
    let mass: f32 = kept.iter().sum();
    let target = u.clamp(0.0, 1.0) * mass;
    let mut cum = 0.0;
    for (i, p) in kept.iter().enumerate() {
        cum += p;
        if target < cum {
            return cand[i].0;
        }
    }
    cand[keep - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temp: f32) -> SamplingParams {
        SamplingParams {
            temperature: temp,
            ..SamplingParams::greedy()
        }
    }

    #[test]
    fn greedy_takes_the_max_and_lowest_id_on_ties() {
        let mut l = vec![0.5, 2.0, 2.0, -1.0];
        assert_eq!(sample(&mut l, &[], &params(0.0), 0.9), 1);
    }

    #[test]
    fn repetition_penalty_can_change_the_winner() {
        let mut p = params(0.0);
        p.repeat_penalty = 2.0;
        let mut l = vec![1.0, 1.5, -3.0];
        // 1.5 / 2 = 0.75 < 1.0
        assert_eq!(sample(&mut l, &[1, 1, 2], &p, 0.0), 0);
        assert_eq!(l, vec![1.0, 0.75, -6.0]);
    }

    #[test]
    fn top_k_one_is_greedy_whatever_u() {
        let mut p = params(1.0);
        p.top_k = 1;
        for u in [0.0, 0.3, 0.999] {
            let mut l = vec![0.1, 0.2, 3.0, 0.0];
            assert_eq!(sample(&mut l, &[], &p, u), 2);
        }
    }

    #[test]
    fn draw_follows_the_cumulative_distribution() {
        // Equal logits: u in [0, 1/3) → 0, [1/3, 2/3) → 1, [2/3, 1) → 2.
        let p = params(1.0);
        let picks: Vec<u32> = [0.1, 0.4, 0.9]
            .iter()
            .map(|&u| sample(&mut [0.0; 3], &[], &p, u))
            .collect();
        assert_eq!(picks, vec![0, 1, 2]);
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // probs ≈ [0.665, 0.245, 0.090]
        let l = vec![2.0, 1.0, 0.0];
        let mut p = params(1.0);
        p.top_p = 0.5;
        assert_eq!(sample(&mut l.clone(), &[], &p, 0.99), 0);
        let mut p = params(1.0);
        p.min_p = 0.2; // keeps 0.665 and 0.245 (≥ 0.133), drops 0.090
        assert_eq!(sample(&mut l.clone(), &[], &p, 0.99), 1);
    }

    #[test]
    fn same_seed_same_numbers() {
        let a: Vec<f32> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_f32()).collect()
        };
        let mut r = Rng::new(42);
        let b: Vec<f32> = (0..5).map(|_| r.next_f32()).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mut r = Rng::new(43);
        assert_ne!(a[0], r.next_f32());
    }
}
