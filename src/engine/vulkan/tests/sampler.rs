//! The GPU sampler against a CPU reference of the same semantics (see shaders/sample.comp), on
//! random logits over a vocabulary that is not a multiple of the workgroup size, with ties.

use super::{Gpu, Rng};
use crate::engine::vulkan::buffer::u32_bytes;
use crate::engine::vulkan::kernels::{sample_params, HIST, STATE_WORDS, S_BAD, S_TOKEN};
use crate::engine::SamplingParams;

/// The reference: penalty -> greedy | top-k -> softmax(temp) -> top-p -> min-p -> draw, in the
/// order (logit desc, id asc).
pub fn sample_ref(logits: &[f32], hist: &[u32], p: &SamplingParams, u: f32) -> u32 {
    let n = logits.len();
    let mut l = logits.to_vec();
    if p.repeat_penalty != 1.0 {
        let mut seen = Vec::new();
        for &t in hist.iter().rev().take(p.repeat_last_n.min(HIST)) {
            if !seen.contains(&t) && (t as usize) < n {
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
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap().then(a.cmp(&b)));
    if p.temperature <= 0.0 {
        return idx[0] as u32;
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
    let lbuf = gpu.buf_f32(&logits);
    let scratch = gpu.buf_f32(&vec![0.0; n]);
    for (ci, p) in cases.iter().enumerate() {
        for u in [0.0f32, 0.13, 0.5, 0.77, 0.999] {
            let mut state = vec![0u32; STATE_WORDS];
            state[0] = 12; // n_past
            state[3] = hist.len() as u32;
            for (i, &t) in hist.iter().enumerate() {
                state[4 + i] = t;
            }
            let sbuf = gpu.buf_u32(&state);
            let pbuf = gpu.buf(u32_bytes(&sample_params(p, u)));
            let op = gpu
                .ops()
                .sample(lbuf.all(), sbuf.all(), scratch.all(), pbuf.all(), n as u32)
                .unwrap();
            gpu.run(&[(&op, 1)]);
            let st = gpu.read_u32(&sbuf, 4 + hist.len() + 1);
            let want = sample_ref(&logits, &hist, p, u);
            assert_eq!(st[2], want, "case {ci} {p:?} u={u}");
            assert_eq!(
                st[0], 12,
                "n_past untouched (the token is fed by the next step)"
            );
            assert_eq!(st[3], hist.len() as u32 + 1, "history count");
            assert_eq!(st[4 + hist.len()], want, "token appended to the history");
        }
    }
    // Greedy ties go to the lowest id.
    assert_eq!(sample_ref(&logits, &hist, &cases[0], 0.0), 17);
}

/// A NaN or infinite logit anywhere in the row is flagged in the state's `S_BAD` word (bit 0
/// NaN, bit 1 infinite), greedy or sampling, and the token is then 0 (an id the next step can
/// embed); finite logits leave the word 0 and sample as before.
#[test]
fn gpu_sampler_flags_non_finite_logits() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(9);
    let n = 1001usize;
    let scratch = gpu.buf_f32(&vec![0.0; n]);
    let cases = [
        (None, 0),
        (Some(f32::NAN), 1),
        (Some(f32::INFINITY), 2),
        (Some(f32::NEG_INFINITY), 2),
    ];
    for (bad, want_flag) in cases {
        let mut logits = rng.vec(n, 4.0);
        logits[321] = 50.0;
        if let Some(v) = bad {
            logits[n - 1] = v;
        }
        let lbuf = gpu.buf_f32(&logits);
        for p in [
            params(0.0, 0, 1.0, 0.0, 1.0),
            params(0.8, 40, 0.95, 0.0, 1.0),
        ] {
            let mut state = vec![0u32; STATE_WORDS];
            // A verdict left from an earlier step is overwritten.
            state[S_BAD] = 7;
            let sbuf = gpu.buf_u32(&state);
            let pbuf = gpu.buf(u32_bytes(&sample_params(&p, 0.5)));
            let op = gpu
                .ops()
                .sample(lbuf.all(), sbuf.all(), scratch.all(), pbuf.all(), n as u32)
                .unwrap();
            gpu.run(&[(&op, 1)]);
            let st = gpu.read_u32(&sbuf, STATE_WORDS);
            assert_eq!(st[S_BAD], want_flag, "{bad:?} {p:?}");
            let want_token = if want_flag == 0 { 321 } else { 0 };
            assert_eq!(st[S_TOKEN], want_token, "{bad:?} {p:?}");
        }
    }
}
