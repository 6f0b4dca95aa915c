//! Model families: the GGUF tensor names, shapes and metadata keys an architecture uses, as
//! llama.cpp's converter writes them. A new family (gemma3, qwen3, ...) is a new variant of
//! `Family` (in `shape`) and its arms here: its extra tensors (QK norms, post-norms) and keys;
//! the catalog, the mix rules, the random fill and the writer stay as they are.

use crate::gguf::Value;

use super::mix::Role;
use super::shape::{Family, RopeScaling, Shape};

/// How a tensor's values are made.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Random with roughly this standard deviation (quantized in the tensor's type).
    Random {
        /// Standard deviation of the values before quantization.
        sigma: f32,
    },
    /// Every element 1.0 (norm weights, so activations keep their scale).
    Ones,
    /// These exact values (F32).
    Exact(Vec<f32>),
}

/// One tensor of a shaped file, before its type is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorPlan {
    pub name: String,
    /// ggml order: innermost (row width) first.
    pub shape: Vec<u64>,
    pub role: Role,
    /// Layer index (0 for tensors outside the blocks).
    pub layer: u32,
    pub values: Values,
}

impl Family {
    /// `general.architecture`.
    pub fn arch(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma3 => "gemma3",
            Family::Smollm3 => "smollm3",
        }
    }

    fn qkv_bias(self) -> bool {
        matches!(self, Family::Qwen2)
    }

    fn qk_norm(self) -> bool {
        matches!(self, Family::Qwen3 | Family::Gemma3)
    }

    /// Architecture keys (`{arch}.*`), as the converter writes them.
    pub fn metadata(self, s: &Shape) -> Vec<(String, Value)> {
        let a = self.arch();
        let k = |key: &str| format!("{a}.{key}");
        let mut m = vec![
            (k("block_count"), Value::U32(s.n_layer)),
            (k("context_length"), Value::U32(s.n_ctx_train)),
            (k("embedding_length"), Value::U32(s.n_embd)),
            (k("feed_forward_length"), Value::U32(s.n_ff)),
            (k("attention.head_count"), Value::U32(s.n_head)),
            (k("attention.head_count_kv"), Value::U32(s.n_head_kv)),
            (k("rope.freq_base"), Value::F32(s.rope_freq_base)),
            (k("attention.layer_norm_rms_epsilon"), Value::F32(s.rms_eps)),
        ];
        if self != Family::Qwen2 {
            m.extend([
                (k("attention.key_length"), Value::U32(s.head_dim)),
                (k("attention.value_length"), Value::U32(s.head_dim)),
            ]);
        }
        if matches!(self, Family::Llama | Family::Smollm3) {
            m.extend([
                (k("vocab_size"), Value::U32(s.n_vocab)),
                (k("rope.dimension_count"), Value::U32(s.head_dim)),
            ]);
        }
        if self == Family::Gemma3 && s.sliding_window > 0 {
            m.push((k("attention.sliding_window"), Value::U32(s.sliding_window)));
        }
        m
    }

    /// Every tensor, in the converter's order (embedding, then each block, then the output).
    pub fn tensors(self, s: &Shape) -> Vec<TensorPlan> {
        let (e, q, kv, ff, v) = (
            u64::from(s.n_embd),
            s.q_dim(),
            s.kv_dim(),
            u64::from(s.n_ff),
            u64::from(s.n_vocab),
        );
        let mut out = Vec::new();
        let mut push = |name: String, shape: Vec<u64>, role: Role, layer: u32, values: Values| {
            out.push(TensorPlan {
                name,
                shape,
                role,
                layer,
                values,
            })
        };
        // Random weights scaled by 1/sqrt(input width): each projection keeps activations near
        // unit size, so a forward pass through any depth stays finite.
        let w = |cols: u64| Values::Random {
            sigma: 1.0 / (cols as f32).sqrt(),
        };
        if let Some(f) = rope_factors(s) {
            push(
                "rope_freqs.weight".into(),
                vec![f.len() as u64],
                Role::Vector,
                0,
                Values::Exact(f),
            );
        }
        push(
            "token_embd.weight".into(),
            vec![e, v],
            Role::TokenEmbd,
            0,
            w(e),
        );
        for i in 0..s.n_layer {
            let n = |t: &str| format!("blk.{i}.{t}");
            push(
                n("attn_norm.weight"),
                vec![e],
                Role::Vector,
                i,
                Values::Ones,
            );
            push(n("attn_q.weight"), vec![e, q], Role::AttnQ, i, w(e));
            push(n("attn_k.weight"), vec![e, kv], Role::AttnK, i, w(e));
            push(n("attn_v.weight"), vec![e, kv], Role::AttnV, i, w(e));
            if self.qkv_bias() {
                let b = Values::Random { sigma: 0.02 };
                push(n("attn_q.bias"), vec![q], Role::Vector, i, b.clone());
                push(n("attn_k.bias"), vec![kv], Role::Vector, i, b.clone());
                push(n("attn_v.bias"), vec![kv], Role::Vector, i, b);
            }
            let hd = u64::from(s.head_dim);
            if self.qk_norm() {
                push(
                    n("attn_q_norm.weight"),
                    vec![hd],
                    Role::Vector,
                    i,
                    near_one(hd, 1),
                );
                push(
                    n("attn_k_norm.weight"),
                    vec![hd],
                    Role::Vector,
                    i,
                    near_one(hd, 2),
                );
            }
            push(
                n("attn_output.weight"),
                vec![q, e],
                Role::AttnOutput,
                i,
                w(q),
            );
            if self == Family::Gemma3 {
                let v = near_one(e, 3);
                push(n("post_attention_norm.weight"), vec![e], Role::Vector, i, v);
            }
            push(n("ffn_norm.weight"), vec![e], Role::Vector, i, Values::Ones);
            push(n("ffn_gate.weight"), vec![e, ff], Role::FfnGate, i, w(e));
            push(n("ffn_up.weight"), vec![e, ff], Role::FfnUp, i, w(e));
            push(n("ffn_down.weight"), vec![ff, e], Role::FfnDown, i, w(ff));
            if self == Family::Gemma3 {
                let v = near_one(e, 4);
                push(n("post_ffw_norm.weight"), vec![e], Role::Vector, i, v);
            }
        }
        push(
            "output_norm.weight".into(),
            vec![e],
            Role::Vector,
            0,
            Values::Ones,
        );
        if !s.tied_embeddings {
            push("output.weight".into(), vec![e, v], Role::Output, 0, w(e));
        }
        out
    }
}

/// Norm weights that vary around 1 (0.75..1.25, a fixed pattern per `salt`): a test then sees
/// whether an engine multiplies by the weight element by element, which all-ones would hide.
fn near_one(len: u64, salt: u64) -> Values {
    Values::Exact(
        (0..len)
            .map(|i| 1.0 + 0.25 * ((i * 7 + salt * 13) as f32 * 0.37).sin())
            .collect(),
    )
}

/// Llama 3.1's RoPE frequency divisors, one per rotated pair: 1 for short wavelengths, `factor`
/// for long ones, and a smooth blend between (the published `rope_type: "llama3"` formula).
fn rope_factors(s: &Shape) -> Option<Vec<f32>> {
    let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_context,
    } = s.rope_scaling
    else {
        return None;
    };
    let n_rot = s.head_dim as usize;
    let old = original_context as f64;
    let low_wavelen = old / f64::from(low_freq_factor);
    let high_wavelen = old / f64::from(high_freq_factor);
    let factors = (0..n_rot / 2)
        .map(|i| {
            let freq = 1.0 / f64::from(s.rope_freq_base).powf(2.0 * i as f64 / n_rot as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                f64::from(factor)
            } else {
                let smooth = (old / wavelen - f64::from(low_freq_factor))
                    / f64::from(high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / f64::from(factor) + smooth)
            };
            f as f32
        })
        .collect();
    Some(factors)
}

#[cfg(test)]
mod tests {
    use super::super::catalog::find;
    use super::*;

    #[test]
    fn llama3_rope_factors_span_one_to_factor() {
        let f = rope_factors(find("llama-3.1-8b").unwrap()).unwrap();
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0, "the fastest-turning pair is not scaled");
        assert_eq!(f[63], 8.0, "the slowest pair is scaled by the full factor");
        assert!(f.windows(2).all(|p| p[0] <= p[1]), "{f:?}");
        assert!(f.iter().any(|&x| x > 1.0 && x < 8.0), "a blended band");
        assert!(rope_factors(find("qwen2.5-7b").unwrap()).is_none());
    }

    #[test]
    fn tensor_counts() {
        let s = find("qwen2.5-7b").unwrap();
        let t = Family::Qwen2.tensors(s);
        // token_embd, 28 x (2 norms + 4 attn + 3 biases + 3 ffn), output_norm, output.
        assert_eq!(t.len(), 1 + 28 * 12 + 2);
        let s = find("llama-3.2-3b").unwrap();
        let t = Family::Llama.tensors(s);
        // rope_freqs, token_embd, 28 x 9, output_norm (tied: no output).
        assert_eq!(t.len(), 2 + 28 * 9 + 1);
    }
}
