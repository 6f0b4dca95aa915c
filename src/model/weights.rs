//! The model's weights, looked up by their GGUF tensor names and checked against the
//! hyper-parameters. A [`Weight`] is only a description (name, type, shape, where the bytes are
//! in the file): engines read the bytes from the memory map (CPU) or stream them to a device
//! (Vulkan), so nothing here copies or dequantizes anything.

use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::GgmlType;

use super::{Config, ModelError};

/// One tensor of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    /// GGUF tensor name, verbatim (`blk.3.attn_q.weight`).
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    /// ggml order, innermost first: a matrix is `[k (input width), m (output rows)]`.
    pub shape: Vec<u64>,
    /// Absolute byte offset of the tensor data in the file.
    pub file_offset: u64,
    /// Size of the tensor data, in bytes.
    pub bytes: u64,
}

impl Weight {
    fn from_info(file: &GgufFile, info: &TensorInfo) -> Weight {
        Weight {
            name: info.name.clone(),
            ty: info.ty,
            shape: info.shape.clone(),
            file_offset: file.data_offset() + info.offset,
            bytes: info.bytes,
        }
    }
    /// Input width of a matrix (elements per row).
    pub fn cols(&self) -> usize {
        self.shape[0] as usize
    }
    /// Output rows of a matrix (1 for a vector).
    pub fn rows(&self) -> usize {
        self.shape.iter().skip(1).product::<u64>() as usize
    }
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.bytes as usize / self.rows().max(1)
    }
}

/// The weights of one transformer block.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// RMS norm before attention, `[n_embd]` (`blk.N.attn_norm.weight`).
    pub attn_norm: Weight,
    /// Query projection, `[n_embd, n_head·head_dim]`.
    pub attn_q: Weight,
    /// Key projection, `[n_embd, n_head_kv·head_dim]`.
    pub attn_k: Weight,
    /// Value projection, `[n_embd, n_head_kv·head_dim]`.
    pub attn_v: Weight,
    /// Present exactly when the architecture has QKV biases (qwen2).
    pub attn_q_bias: Option<Weight>,
    /// Key bias, with `attn_q_bias`.
    pub attn_k_bias: Option<Weight>,
    /// Value bias, with `attn_q_bias`.
    pub attn_v_bias: Option<Weight>,
    /// Per-head Q and K norm weights, `[head_dim]` (qwen3, gemma3).
    pub attn_q_norm: Option<Weight>,
    /// Per-head K norm weight, with `attn_q_norm`.
    pub attn_k_norm: Option<Weight>,
    /// Attention output projection, `[n_head·head_dim, n_embd]`.
    pub attn_output: Weight,
    /// Norm of the attention output before the residual add (gemma3).
    pub attn_post_norm: Option<Weight>,
    /// RMS norm before the feed-forward block, `[n_embd]`.
    pub ffn_norm: Weight,
    /// FFN gate projection, `[n_embd, n_ff]`.
    pub ffn_gate: Weight,
    /// FFN up projection, `[n_embd, n_ff]`.
    pub ffn_up: Weight,
    /// FFN down projection, `[n_ff, n_embd]`.
    pub ffn_down: Weight,
    /// Norm of the FFN output before the residual add (gemma3).
    pub ffn_post_norm: Option<Weight>,
}

/// All weights of the model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embedding matrix, `[n_embd, n_vocab]`: row `t` is token `t`'s input vector.
    pub token_embd: Weight,
    /// RMS norm after the last block, `[n_embd]`.
    pub output_norm: Weight,
    /// The output projection: `output.weight`, or `token_embd.weight` when the file has no
    /// separate one (tied embeddings).
    pub output: Weight,
    /// True when `output` is the token embedding.
    pub tied_output: bool,
    /// Per-dimension RoPE frequency divisors (`rope_freqs.weight`, Llama 3.1 style), if any.
    pub rope_freqs: Option<Weight>,
    /// One entry per transformer block, in order.
    pub layers: Vec<LayerWeights>,
}

impl Weights {
    /// Looks up every tensor the architecture needs and checks its shape.
    pub fn from_gguf(file: &GgufFile, c: &Config) -> Result<Weights, ModelError> {
        let (e, q, kv, ff, v) = (
            c.n_embd as u64,
            c.q_dim() as u64,
            c.kv_dim() as u64,
            c.n_ff as u64,
            c.n_vocab as u64,
        );
        let token_embd = get(file, "token_embd.weight", &[e, v])?;
        let output_norm = get(file, "output_norm.weight", &[e])?;
        let (output, tied_output) = match file.tensor("output.weight") {
            Some(_) => (get(file, "output.weight", &[e, v])?, false),
            None => (token_embd.clone(), true),
        };
        let rope_freqs = match file.tensor("rope_freqs.weight") {
            Some(_) => {
                let w = get(file, "rope_freqs.weight", &[c.n_rot as u64 / 2])?;
                if w.ty != GgmlType::F32 {
                    return Err(ModelError::UnsupportedType {
                        name: w.name,
                        ty: w.ty,
                        supported: "F32".into(),
                    });
                }
                Some(w)
            }
            None => None,
        };
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let bias = |s: &str, len: u64| -> Result<Option<Weight>, ModelError> {
                if c.qkv_bias {
                    get(file, &n(s), &[len]).map(Some)
                } else {
                    Ok(None)
                }
            };
            let opt = |on: bool, s: &str, len: u64| -> Result<Option<Weight>, ModelError> {
                if on {
                    get(file, &n(s), &[len]).map(Some)
                } else {
                    Ok(None)
                }
            };
            let hd = c.head_dim as u64;
            layers.push(LayerWeights {
                attn_norm: get(file, &n("attn_norm.weight"), &[e])?,
                attn_q: get(file, &n("attn_q.weight"), &[e, q])?,
                attn_k: get(file, &n("attn_k.weight"), &[e, kv])?,
                attn_v: get(file, &n("attn_v.weight"), &[e, kv])?,
                attn_q_bias: bias("attn_q.bias", q)?,
                attn_k_bias: bias("attn_k.bias", kv)?,
                attn_v_bias: bias("attn_v.bias", kv)?,
                attn_q_norm: opt(c.qk_norm, "attn_q_norm.weight", hd)?,
                attn_k_norm: opt(c.qk_norm, "attn_k_norm.weight", hd)?,
                attn_output: get(file, &n("attn_output.weight"), &[q, e])?,
                attn_post_norm: opt(c.post_norms, "post_attention_norm.weight", e)?,
                ffn_norm: get(file, &n("ffn_norm.weight"), &[e])?,
                ffn_gate: get(file, &n("ffn_gate.weight"), &[e, ff])?,
                ffn_up: get(file, &n("ffn_up.weight"), &[e, ff])?,
                ffn_down: get(file, &n("ffn_down.weight"), &[ff, e])?,
                ffn_post_norm: opt(c.post_norms, "post_ffw_norm.weight", e)?,
            });
        }
        Ok(Weights {
            token_embd,
            output_norm,
            output,
            tied_output,
            rope_freqs,
            layers,
        })
    }

    /// Every weight once (the tied output is not repeated), in forward order.
    pub fn all(&self) -> Vec<&Weight> {
        let mut v = vec![&self.token_embd];
        for l in &self.layers {
            v.extend([&l.attn_norm, &l.attn_q, &l.attn_k, &l.attn_v]);
            v.extend(
                [&l.attn_q_bias, &l.attn_k_bias, &l.attn_v_bias]
                    .into_iter()
                    .flatten(),
            );
            v.extend([&l.attn_q_norm, &l.attn_k_norm].into_iter().flatten());
            v.push(&l.attn_output);
            v.extend(l.attn_post_norm.iter());
            v.extend([&l.ffn_norm, &l.ffn_gate, &l.ffn_up, &l.ffn_down]);
            v.extend(l.ffn_post_norm.iter());
        }
        v.push(&self.output_norm);
        if !self.tied_output {
            v.push(&self.output);
        }
        v.extend(self.rope_freqs.iter());
        v
    }
}

/// A tensor by name with exactly `shape` (trailing 1s in the file are ignored).
fn get(file: &GgufFile, name: &str, shape: &[u64]) -> Result<Weight, ModelError> {
    let info = file.tensor(name).ok_or_else(|| ModelError::MissingTensor {
        name: name.to_string(),
    })?;
    let mut s = info.shape.clone();
    while s.len() > shape.len() && s.last() == Some(&1) {
        s.pop();
    }
    if s != shape {
        return Err(ModelError::BadShape {
            name: name.to_string(),
            shape: info.shape.clone(),
            expected: shape.to_vec(),
        });
    }
    if shape.len() == 1 && !matches!(info.ty, GgmlType::F32 | GgmlType::F16) {
        return Err(ModelError::UnsupportedType {
            name: name.to_string(),
            ty: info.ty,
            supported: "F32 or F16 for a vector".into(),
        });
    }
    Ok(Weight::from_info(file, info))
}
