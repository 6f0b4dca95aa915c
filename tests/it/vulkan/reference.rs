//! A plain f64 forward pass over dequantized weights (exact RoPE angles, f64 KV): an oracle
//! independent of both engines, used to referee the places where the Vulkan engine (f32
//! activations) and the CPU engine (8-bit activations, like llama.cpp) pick different greedy
//! tokens. Slow, and only run where they differ.

use pigpu::model::{Model, RopeStyle, Weight};
use pigpu::quant::dequantize;

struct Mat {
    rows: usize,
    cols: usize,
    w: Vec<f32>,
}

impl Mat {
    fn new(model: &Model, wt: &Weight) -> Mat {
        let n = wt.shape.iter().product::<u64>() as usize;
        let mut w = vec![0f32; n];
        dequantize(wt.ty, model.data(wt), &mut w).unwrap();
        Mat {
            rows: wt.rows(),
            cols: wt.cols(),
            w,
        }
    }
    fn mul(&self, x: &[f64]) -> Vec<f64> {
        (0..self.rows)
            .map(|r| {
                let row = &self.w[r * self.cols..(r + 1) * self.cols];
                row.iter().zip(x).map(|(a, b)| *a as f64 * b).sum()
            })
            .collect()
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    q: Mat,
    k: Mat,
    v: Mat,
    bias: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    o: Mat,
    ffn_norm: Vec<f32>,
    gate: Mat,
    up: Mat,
    down: Mat,
}

pub struct Reference<'m> {
    model: &'m Model,
    embd: Mat,
    output: Option<Mat>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
}

impl<'m> Reference<'m> {
    pub fn new(model: &'m Model) -> Reference<'m> {
        let w = &model.weights;
        let v = |x: &Weight| model.vector_f32(x);
        let layers = w
            .layers
            .iter()
            .map(|l| Layer {
                attn_norm: v(&l.attn_norm),
                q: Mat::new(model, &l.attn_q),
                k: Mat::new(model, &l.attn_k),
                v: Mat::new(model, &l.attn_v),
                bias: match (&l.attn_q_bias, &l.attn_k_bias, &l.attn_v_bias) {
                    (Some(q), Some(k), Some(b)) => Some((v(q), v(k), v(b))),
                    _ => None,
                },
                o: Mat::new(model, &l.attn_output),
                ffn_norm: v(&l.ffn_norm),
                gate: Mat::new(model, &l.ffn_gate),
                up: Mat::new(model, &l.ffn_up),
                down: Mat::new(model, &l.ffn_down),
            })
            .collect();
        Reference {
            model,
            embd: Mat::new(model, &w.token_embd),
            output: (w.output.name != w.token_embd.name).then(|| Mat::new(model, &w.output)),
            output_norm: v(&w.output_norm),
            layers,
        }
    }

    fn norm(&self, x: &[f64], g: &[f32]) -> Vec<f64> {
        let eps = self.model.config.rms_eps as f64;
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let s = 1.0 / (ms + eps).sqrt();
        x.iter().zip(g).map(|(v, g)| v * s * *g as f64).collect()
    }

    fn rope(&self, v: &mut [f64], pos: usize) {
        let c = &self.model.config;
        let half = c.n_rot / 2;
        for head in v.chunks_exact_mut(c.head_dim) {
            for j in 0..half {
                let theta = c.rope_freq_scale as f64
                    * pos as f64
                    * (c.rope_freq_base as f64).powf(-2.0 * j as f64 / c.n_rot as f64);
                let (s, co) = theta.sin_cos();
                let (a, b) = match c.rope_style {
                    RopeStyle::Normal => (2 * j, 2 * j + 1),
                    RopeStyle::Neox => (j, j + half),
                };
                let (xa, xb) = (head[a], head[b]);
                head[a] = xa * co - xb * s;
                head[b] = xa * s + xb * co;
            }
        }
    }

    /// Logits after the last of `tokens` (run from position 0).
    pub fn logits(&self, tokens: &[u32]) -> Vec<f64> {
        let c = &self.model.config;
        let e = c.n_embd;
        let (d, group) = (c.head_dim, c.n_head / c.n_head_kv);
        let mut kc: Vec<Vec<Vec<f64>>> = vec![Vec::new(); c.n_layer];
        let mut vc: Vec<Vec<Vec<f64>>> = vec![Vec::new(); c.n_layer];
        let mut x = Vec::new();
        for (pos, &t) in tokens.iter().enumerate() {
            x = self.embd.w[t as usize * e..(t as usize + 1) * e]
                .iter()
                .map(|v| *v as f64)
                .collect();
            for (li, l) in self.layers.iter().enumerate() {
                let xn = self.norm(&x, &l.attn_norm);
                let (mut q, mut k, mut v) = (l.q.mul(&xn), l.k.mul(&xn), l.v.mul(&xn));
                if let Some((bq, bk, bv)) = &l.bias {
                    q.iter_mut().zip(bq).for_each(|(a, b)| *a += *b as f64);
                    k.iter_mut().zip(bk).for_each(|(a, b)| *a += *b as f64);
                    v.iter_mut().zip(bv).for_each(|(a, b)| *a += *b as f64);
                }
                self.rope(&mut q, pos);
                self.rope(&mut k, pos);
                kc[li].push(k);
                vc[li].push(v);
                let mut attn = vec![0f64; c.q_dim()];
                for h in 0..c.n_head {
                    let kvh = h / group;
                    let qh = &q[h * d..(h + 1) * d];
                    let scores: Vec<f64> = kc[li]
                        .iter()
                        .map(|k| {
                            qh.iter()
                                .zip(&k[kvh * d..(kvh + 1) * d])
                                .map(|(a, b)| a * b)
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let w: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                    let z: f64 = w.iter().sum();
                    for (p, wp) in w.iter().enumerate() {
                        for i in 0..d {
                            attn[h * d + i] += wp / z * vc[li][p][kvh * d + i];
                        }
                    }
                }
                let o = l.o.mul(&attn);
                x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                let xn = self.norm(&x, &l.ffn_norm);
                let (g, u) = (l.gate.mul(&xn), l.up.mul(&xn));
                let h: Vec<f64> = g
                    .iter()
                    .zip(&u)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let dn = l.down.mul(&h);
                x.iter_mut().zip(&dn).for_each(|(a, b)| *a += b);
            }
        }
        let xn = self.norm(&x, &self.output_norm);
        self.output.as_ref().unwrap_or(&self.embd).mul(&xn)
    }
}
