//! The element-wise and small operations of the forward pass: RMS norm, RoPE, SwiGLU / GeGLU,
//! and attention over the KV cache. Their arithmetic follows llama.cpp's CPU backend where that
//! changes rounding (f64 sum in the norm, RoPE angles by repeated multiplication).

use half::f16;

use crate::model::RopeStyle;

/// `out = x / rms(x) · w` for one row (`x`, `out` and `w` of the same length).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * g;
    }
}

/// Rotary embedding tables for a run of positions: `cos`/`sin` of `n_rot / 2` angles each.
pub struct Rope {
    pub n_rot: usize,
    pub style: RopeStyle,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl Rope {
    /// Angles for positions `pos0..pos0 + n`: `θ_i = scale · p · base^(−2i/n_rot) / f_i`, the
    /// powers formed by repeated multiplication as llama.cpp does (it changes the last bits).
    pub fn new(
        n_rot: usize,
        style: RopeStyle,
        base: f32,
        freq_scale: f32,
        freq_factors: Option<&[f32]>,
        pos0: usize,
        n: usize,
    ) -> Rope {
        let half = n_rot / 2;
        let theta_scale = base.powf(-2.0 / n_rot as f32);
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in pos0..pos0 + n {
            let mut theta = p as f32;
            for i in 0..half {
                let ff = freq_factors.map_or(1.0, |f| f[i]);
                let t = freq_scale * (theta / ff);
                cos.push(t.cos());
                sin.push(t.sin());
                theta *= theta_scale;
            }
        }
        Rope {
            n_rot,
            style,
            cos,
            sin,
        }
    }

    /// Rotates every head (`head_dim` wide) in `row`, the row of the `t`-th position.
    pub fn apply(&self, row: &mut [f32], head_dim: usize, t: usize) {
        let half = self.n_rot / 2;
        let (cos, sin) = (
            &self.cos[t * half..(t + 1) * half],
            &self.sin[t * half..(t + 1) * half],
        );
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match self.style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// `gate ← silu(gate) · up`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `gate ← gelu(gate) · up`, GELU in its tanh form. llama.cpp's CPU backend looks GELU up in a
/// table indexed by the input rounded to f16 and holding f16 results (inputs beyond ±10 are
/// passed through or zeroed); the same roundings are made here so the two agree to the bit.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const A: f32 = 0.044715;
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            let x = f16::from_f32(x).to_f32();
            let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + A * x * x)).tanh());
            f16::from_f32(y).to_f32() * u
        };
    }
}

/// Storage of one layer's keys or values: `n_ctx` rows of `kv_dim`, in f16 or f32.
pub enum KvBuf {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl KvBuf {
    pub fn new(f16: bool, len: usize) -> KvBuf {
        if f16 {
            KvBuf::F16(vec![f16::ZERO; len])
        } else {
            KvBuf::F32(vec![0.0; len])
        }
    }
    pub fn write(&mut self, at: usize, x: &[f32]) {
        match self {
            KvBuf::F16(v) => {
                for (o, &s) in v[at..at + x.len()].iter_mut().zip(x) {
                    *o = f16::from_f32(s);
                }
            }
            KvBuf::F32(v) => v[at..at + x.len()].copy_from_slice(x),
        }
    }
}

/// Dot of an f32 vector with a stored row.
pub type DotKv16 = fn(&[f32], &[f16]) -> f32;
/// `acc += a · row` for a stored row.
pub type AxpyKv16 = fn(&mut [f32], f32, &[f16]);

pub fn dot_f16_portable(q: &[f32], k: &[f16]) -> f32 {
    q.iter().zip(k).map(|(&a, &b)| a * b.to_f32()).sum()
}
pub fn axpy_f16_portable(acc: &mut [f32], a: f32, v: &[f16]) {
    for (o, &b) in acc.iter_mut().zip(v) {
        *o += a * b.to_f32();
    }
}

/// The f16 helpers for this machine.
#[derive(Clone, Copy)]
pub struct KvKernels {
    pub dot: DotKv16,
    pub axpy: AxpyKv16,
}

/// Attention of one query head over positions `lo..=p` of one KV head (`lo` > 0 only in a
/// sliding-window layer): `out = softmax(q·Kᵀ · scale) · V`. `scores` is scratch of at least
/// `p + 1`.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    q: &[f32],
    k: &KvBuf,
    v: &KvBuf,
    kv_dim: usize,
    off: usize,
    lo: usize,
    p: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
    kk: KvKernels,
) {
    let hd = q.len();
    let scores = &mut scores[lo..=p];
    match k {
        KvBuf::F16(k) => {
            // llama.cpp multiplies an f16 cache with the query converted to f16 (its vec-dot
            // type for f16); doing the same keeps the logits closest to its.
            let mut q16 = [0.0f32; 256];
            let q16 = &mut q16[..hd.min(256)];
            for (o, &x) in q16.iter_mut().zip(q) {
                *o = f16::from_f32(x).to_f32();
            }
            let q = if hd <= 256 { &*q16 } else { q };
            for (j, s) in (lo..).zip(scores.iter_mut()) {
                *s = (kk.dot)(q, &k[j * kv_dim + off..j * kv_dim + off + hd]) * scale;
            }
        }
        KvBuf::F32(k) => {
            for (j, s) in (lo..).zip(scores.iter_mut()) {
                let row = &k[j * kv_dim + off..j * kv_dim + off + hd];
                *s = q.iter().zip(row).map(|(a, b)| a * b).sum::<f32>() * scale;
            }
        }
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut sum = 0.0f64;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s as f64;
    }
    let inv = (1.0 / sum) as f32;
    out.fill(0.0);
    match v {
        KvBuf::F16(v) => {
            // Likewise the probabilities meet an f16 V cache as f16 values in llama.cpp.
            for (j, &s) in (lo..).zip(scores.iter()) {
                let w = f16::from_f32(s * inv).to_f32();
                (kk.axpy)(out, w, &v[j * kv_dim + off..j * kv_dim + off + hd]);
            }
        }
        KvBuf::F32(v) => {
            for (j, &s) in (lo..).zip(scores.iter()) {
                let w = s * inv;
                for (o, &x) in out
                    .iter_mut()
                    .zip(&v[j * kv_dim + off..j * kv_dim + off + hd])
                {
                    *o += w * x;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_a_constant_row_is_the_weight() {
        let mut out = vec![0.0; 4];
        rms_norm(&[3.0; 4], &[1.0, 2.0, 3.0, 4.0], 0.0, &mut out);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            let r = Rope::new(8, style, 10000.0, 1.0, None, 0, 3);
            let x: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
            let mut y = x.clone();
            r.apply(&mut y, 8, 0);
            assert_eq!(x, y);
            r.apply(&mut y, 8, 2);
            let n = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
            assert!((n(&x) - n(&y)).abs() < 1e-4);
            // Position 2, pair 0 rotates by 2 radians.
            let (a, b) = if style == RopeStyle::Normal {
                (0, 1)
            } else {
                (0, 4)
            };
            let (c, s) = (2f32.cos(), 2f32.sin());
            assert!((y[a] - (x[a] * c - x[b] * s)).abs() < 1e-5);
        }
    }

    #[test]
    fn attention_over_one_position_returns_its_value() {
        let mut k = KvBuf::new(true, 4);
        let mut v = KvBuf::new(true, 4);
        k.write(0, &[1.0, 0.0, 0.0, 1.0]);
        v.write(0, &[5.0, 6.0, 7.0, 8.0]);
        let mut out = vec![0.0; 2];
        let kk = KvKernels {
            dot: dot_f16_portable,
            axpy: axpy_f16_portable,
        };
        attend(
            &[1.0, 1.0],
            &k,
            &v,
            4,
            2,
            0,
            0,
            1.0,
            &mut [0.0; 1],
            &mut out,
            kk,
        );
        assert_eq!(out, vec![7.0, 8.0]);
    }

    #[test]
    fn a_sliding_window_hides_old_positions() {
        // Two positions with very different values; a window starting at 1 sees only the second.
        let (mut k, mut v) = (KvBuf::new(false, 4), KvBuf::new(false, 4));
        k.write(0, &[1.0, 0.0]);
        k.write(2, &[1.0, 0.0]);
        v.write(0, &[100.0, 100.0]);
        v.write(2, &[1.0, 2.0]);
        let kk = KvKernels {
            dot: dot_f16_portable,
            axpy: axpy_f16_portable,
        };
        // The query against positions lo..=1.
        let attend_from = |lo: usize| {
            let mut out = vec![0.0; 2];
            let q = [1.0, 0.0];
            attend(&q, &k, &v, 2, 0, lo, 1, 1.0, &mut [0.0; 2], &mut out, kk);
            out
        };
        assert_eq!(attend_from(1), vec![1.0, 2.0]);
        assert_eq!(
            attend_from(0),
            vec![50.5, 51.0],
            "both positions, equal weights"
        );
    }

    #[test]
    fn geglu_matches_the_tanh_gelu_within_f16_rounding() {
        let xs = [-12.0f32, -3.0, -0.5, 0.0, 0.3, 1.0, 2.5, 11.0];
        let mut g = xs.to_vec();
        geglu(&mut g, &[2.0; 8]);
        for (&x, &y) in xs.iter().zip(&g) {
            let exact = 0.5 * x * (1.0 + (0.797_884_6 * x * (1.0 + 0.044715 * x * x)).tanh());
            assert!(
                (y - 2.0 * exact).abs() <= 2e-3 * (1.0 + exact.abs()),
                "{x}: {y} vs {exact}"
            );
        }
        assert_eq!(g[0], 0.0);
        assert_eq!(g[7], 22.0);
    }
}
