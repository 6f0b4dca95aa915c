//! Hyper-parameters of a decoder-only transformer, read from GGUF metadata
//! (`{arch}.block_count`, `{arch}.attention.head_count`, ...). Every engine builds its buffers
//! from this one struct, so the CPU and Vulkan engines cannot disagree about shapes.

use crate::gguf::GgufFile;

use super::ModelError;

/// Architectures this build runs (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama family (also SmolLM, Mistral-style GQA models exported as `llama`).
    Llama,
    /// Qwen2 / Qwen2.5: like llama, plus biases on Q, K and V, and NEOX-style RoPE.
    Qwen2,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }
    /// How this architecture pairs the dimensions RoPE rotates (llama.cpp's arch table: `llama`
    /// is `LLAMA_ROPE_TYPE_NORM`, `qwen2` is `LLAMA_ROPE_TYPE_NEOX`). The llama converter permutes
    /// Q/K rows so that interleaved pairs are right for llama GGUFs; qwen2 GGUFs keep HF order.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama => RopeStyle::Normal,
            Arch::Qwen2 => RopeStyle::Neox,
        }
    }
    /// Whether Q, K and V projections carry bias tensors (`blk.N.attn_q.bias`, ...).
    pub fn qkv_bias(self) -> bool {
        matches!(self, Arch::Qwen2)
    }
}

/// Which dimensions of a head RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])`.
    Normal,
    /// Split halves `(x[i], x[i + n_rot/2])` (GPT-NeoX / Hugging Face order).
    Neox,
}

/// The hyper-parameters an engine needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    /// Model width (`{arch}.embedding_length`).
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention: `n_head` is a multiple of it).
    pub n_head_kv: usize,
    /// Width of one head (`{arch}.attention.key_length`, default `n_embd / n_head`).
    pub head_dim: usize,
    /// Hidden width of the feed-forward block.
    pub n_ff: usize,
    pub n_vocab: usize,
    /// Context the model was trained for (`{arch}.context_length`).
    pub n_ctx_train: usize,
    /// Dimensions of each head that RoPE rotates (`{arch}.rope.dimension_count`).
    pub n_rot: usize,
    pub rope_style: RopeStyle,
    /// `{arch}.rope.freq_base` (default 10000).
    pub rope_freq_base: f32,
    /// Position scale from linear RoPE scaling (`1 / {arch}.rope.scaling.factor`; 1 = none).
    pub rope_freq_scale: f32,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    pub qkv_bias: bool,
}

impl Config {
    /// Reads the hyper-parameters of `file`; an architecture other than `llama`/`qwen2` is
    /// [`ModelError::UnsupportedArch`].
    pub fn from_gguf(file: &GgufFile) -> Result<Config, ModelError> {
        let arch_name = file.architecture()?;
        let arch = Arch::from_name(arch_name).ok_or_else(|| ModelError::UnsupportedArch {
            arch: arch_name.to_string(),
        })?;
        let a = arch.name();
        let req = |key: &str| -> Result<usize, ModelError> {
            let k = format!("{a}.{key}");
            match file.get_u64(&k)? {
                Some(v) if v > 0 && v < (1 << 32) => Ok(v as usize),
                Some(v) => Err(ModelError::BadValue {
                    key: k,
                    value: v.to_string(),
                    expected: "a positive integer below 2^32".into(),
                }),
                None => Err(ModelError::MissingKey { key: k }),
            }
        };
        let n_layer = req("block_count")?;
        let n_embd = req("embedding_length")?;
        let n_ff = req("feed_forward_length")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = match file.get_u64(&format!("{a}.attention.head_count_kv"))? {
            Some(v) => v as usize,
            None => n_head,
        };
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(ModelError::BadValue {
                key: format!("{a}.attention.head_count_kv"),
                value: n_head_kv.to_string(),
                expected: format!("a divisor of {a}.attention.head_count = {n_head}"),
            });
        }
        let head_dim = match file.get_u64(&format!("{a}.attention.key_length"))? {
            Some(v) => v as usize,
            None => n_embd / n_head,
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(ModelError::BadValue {
                key: format!("{a}.attention.key_length"),
                value: head_dim.to_string(),
                expected: "an even head width".into(),
            });
        }
        if let Some(v) = file.get_u64(&format!("{a}.attention.value_length"))? {
            if v as usize != head_dim {
                return Err(ModelError::BadValue {
                    key: format!("{a}.attention.value_length"),
                    value: v.to_string(),
                    expected: format!("equal to the key length {head_dim}"),
                });
            }
        }
        let n_rot = match file.get_u64(&format!("{a}.rope.dimension_count"))? {
            Some(v) => v as usize,
            None => head_dim,
        };
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadValue {
                key: format!("{a}.rope.dimension_count"),
                value: n_rot.to_string(),
                expected: format!("an even number no larger than the head width {head_dim}"),
            });
        }
        let n_ctx_train = file
            .get_u64(&format!("{a}.context_length"))?
            .unwrap_or(2048) as usize;
        let rope_freq_base = file
            .get_f32(&format!("{a}.rope.freq_base"))?
            .unwrap_or(10000.0);
        let rms_eps = file
            .get_f32(&format!("{a}.attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5);
        let rope_freq_scale = rope_scale(file, a)?;
        // NaN or a non-positive epsilon or frequency base make every logit NaN: the model then
        // "generates" nothing, quietly. Refused here with the key named.
        for (key, v, expected) in [
            (
                "attention.layer_norm_rms_epsilon",
                rms_eps,
                "a small positive number (1e-5 or 1e-6)",
            ),
            (
                "rope.freq_base",
                rope_freq_base,
                "a positive number (10000 or more)",
            ),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ModelError::BadValue {
                    key: format!("{a}.{key}"),
                    value: v.to_string(),
                    expected: expected.into(),
                });
            }
        }
        if n_ctx_train == 0 {
            return Err(ModelError::BadValue {
                key: format!("{a}.context_length"),
                value: "0".into(),
                expected: "the trained context length (at least 1)".into(),
            });
        }

        // The vocabulary size is the embedding's outer dimension; metadata may repeat it.
        let embd = file
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor {
                name: "token_embd.weight".into(),
            })?;
        let n_vocab = embd.shape.get(1).copied().unwrap_or(0) as usize;
        if n_vocab == 0 {
            return Err(ModelError::BadShape {
                name: "token_embd.weight".into(),
                shape: embd.shape.clone(),
                expected: vec![n_embd as u64, 0],
            });
        }

        Ok(Config {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            n_ctx_train,
            n_rot,
            rope_style: arch.rope_style(),
            rope_freq_base,
            rope_freq_scale,
            rms_eps,
            qkv_bias: arch.qkv_bias(),
        })
    }

    /// Width of Q (all heads).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
    /// Width of K and of V (all KV heads).
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// `{arch}.rope.scaling.*`: none and linear are supported; YaRN and others are refused rather
/// than silently run with the wrong positions.
fn rope_scale(file: &GgufFile, a: &str) -> Result<f32, ModelError> {
    let ty_key = format!("{a}.rope.scaling.type");
    let factor = file
        .get_f32(&format!("{a}.rope.scaling.factor"))?
        .unwrap_or(1.0);
    match file.get_str(&ty_key)? {
        None | Some("none") => Ok(1.0),
        Some("linear") if factor > 0.0 => Ok(1.0 / factor),
        Some(other) => Err(ModelError::BadValue {
            key: ty_key,
            value: other.to_string(),
            expected: "\"none\" or \"linear\" with a positive factor (YaRN is not supported)"
                .into(),
        }),
    }
}
