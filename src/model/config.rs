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
    /// Qwen3 (dense): qwen2 without the biases, plus a per-head RMS norm of Q and K before RoPE.
    Qwen3,
    /// Gemma 3: embeddings scaled by sqrt(n_embd), Q/K norms, RMS norms after attention and after
    /// the FFN as well as before, a GELU-gated FFN, and sliding-window layers with their own RoPE
    /// base (five of every six by default).
    Gemma3,
    /// SmolLM3: llama, except that every fourth layer has no RoPE at all (NoPE).
    Smollm3,
}

impl Arch {
    /// The architecture for a `general.architecture` value; `None` when this build cannot run it.
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            "gemma3" => Some(Arch::Gemma3),
            "smollm3" => Some(Arch::Smollm3),
            _ => None,
        }
    }
    /// The `general.architecture` value for this architecture.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Smollm3 => "smollm3",
        }
    }
    /// How this architecture pairs the dimensions RoPE rotates (llama.cpp's arch table: `llama`
    /// is `LLAMA_ROPE_TYPE_NORM`, `qwen2` is `LLAMA_ROPE_TYPE_NEOX`). The llama converter permutes
    /// Q/K rows so that interleaved pairs are right for llama GGUFs; qwen2 GGUFs keep HF order.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama | Arch::Smollm3 => RopeStyle::Normal,
            Arch::Qwen2 | Arch::Qwen3 | Arch::Gemma3 => RopeStyle::Neox,
        }
    }
    /// Whether Q and K are RMS-normed per head (`blk.N.attn_q_norm.weight`, `attn_k_norm`).
    pub fn qk_norm(self) -> bool {
        matches!(self, Arch::Qwen3 | Arch::Gemma3)
    }
    /// Whether attention and FFN outputs are RMS-normed before the residual add
    /// (`blk.N.attn_post_norm.weight`, `ffn_post_norm`).
    pub fn post_norms(self) -> bool {
        matches!(self, Arch::Gemma3)
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

/// The gate activation of the feed-forward block: `down(act(gate · x) * (up · x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `x · sigmoid(x)` (SwiGLU).
    Silu,
    /// GELU in its tanh approximation (GeGLU; llama.cpp's `ggml_gelu`).
    Gelu,
}

/// The hyper-parameters an engine needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    /// The model architecture (`general.architecture`).
    pub arch: Arch,
    /// Transformer blocks (`{arch}.block_count`).
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
    /// Tokens in the vocabulary: rows of the embedding and output matrices.
    pub n_vocab: usize,
    /// Context the model was trained for (`{arch}.context_length`).
    pub n_ctx_train: usize,
    /// Dimensions of each head that RoPE rotates (`{arch}.rope.dimension_count`).
    pub n_rot: usize,
    /// How RoPE pairs dimensions, from the architecture.
    pub rope_style: RopeStyle,
    /// `{arch}.rope.freq_base` (default 10000).
    pub rope_freq_base: f32,
    /// Position scale from linear RoPE scaling (`1 / {arch}.rope.scaling.factor`; 1 = none).
    pub rope_freq_scale: f32,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// Whether Q, K and V carry bias vectors (qwen2).
    pub qkv_bias: bool,
    /// Per-head RMS norm of Q and K before RoPE (qwen3, gemma3).
    pub qk_norm: bool,
    /// RMS norms of the attention and FFN outputs before each residual add (gemma3).
    pub post_norms: bool,
    /// Factor on the embedding rows as they enter the first layer (gemma3: sqrt(n_embd); else 1).
    pub embd_scale: f32,
    /// The gate activation of the feed-forward block.
    pub act: Activation,
    /// Factor on q·k before the softmax (1/sqrt(head_dim) unless the architecture says else).
    pub attn_scale: f32,
    /// Sliding-window width in positions (`{arch}.attention.sliding_window`; 0 = none): a query
    /// at position p of a sliding layer sees keys p - window + 1 ..= p.
    pub swa_window: usize,
    /// Per layer: whether it is a sliding-window layer (only with `swa_window > 0`).
    pub swa_layers: Vec<bool>,
    /// RoPE base of sliding-window layers (`{arch}.rope.freq_base_swa`, default 10000); their
    /// positions are not scaled.
    pub rope_freq_base_swa: f32,
    /// Per layer: whether it applies RoPE at all (smollm3 skips every fourth: NoPE).
    pub rope_layers: Vec<bool>,
}

impl Config {
    /// Reads the hyper-parameters of `file`; an architecture [`Arch::from_name`] does not know is
    /// [`ModelError::UnsupportedArch`]. The steps run in this order, so a file with several bad
    /// values is refused for the first of them: the architecture, the four required counts, the
    /// head layout, the scalars (read), the sliding window, soft-capping, the scalars (checked),
    /// and last the vocabulary size from the embedding tensor.
    pub fn from_gguf(file: &GgufFile) -> Result<Config, ModelError> {
        let arch = arch_of(file)?;
        let a = arch.name();
        let n_layer = required_count(file, a, "block_count")?;
        let n_embd = required_count(file, a, "embedding_length")?;
        let n_ff = required_count(file, a, "feed_forward_length")?;
        let n_head = required_count(file, a, "attention.head_count")?;
        let heads = head_layout(file, a, n_embd, n_head)?;
        let scalars = Scalars::read(file, a)?;
        let (swa_window, swa_layers) = sliding_window(file, arch, n_layer)?;
        // llama.cpp's SmolLM3 rotates in every layer except each fourth (n_no_rope_layer_step).
        let rope_layers = (0..n_layer)
            .map(|il| arch != Arch::Smollm3 || (il + 1) % 4 != 0)
            .collect();
        refuse_softcapping(file, a)?;
        scalars.check(a)?;
        let n_vocab = vocab_size(file, n_embd)?;

        Ok(Config {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv: heads.n_head_kv,
            head_dim: heads.head_dim,
            n_ff,
            n_vocab,
            n_ctx_train: scalars.n_ctx_train,
            n_rot: heads.n_rot,
            rope_style: arch.rope_style(),
            rope_freq_base: scalars.rope_freq_base,
            rope_freq_scale: scalars.rope_freq_scale,
            rms_eps: scalars.rms_eps,
            qkv_bias: arch.qkv_bias(),
            qk_norm: arch.qk_norm(),
            post_norms: arch.post_norms(),
            embd_scale: if arch == Arch::Gemma3 {
                (n_embd as f32).sqrt()
            } else {
                1.0
            },
            act: if arch == Arch::Gemma3 {
                Activation::Gelu
            } else {
                Activation::Silu
            },
            attn_scale: attn_scale(arch, n_layer, n_embd, n_head, heads.head_dim),
            swa_window,
            swa_layers,
            rope_freq_base_swa: scalars.rope_freq_base_swa,
            rope_layers,
        })
    }

    /// The sliding window of layer `il`, if it is a sliding-window layer.
    pub fn layer_window(&self, il: usize) -> Option<usize> {
        (self.swa_window > 0 && self.swa_layers[il]).then_some(self.swa_window)
    }

    /// RoPE (base, position scale) of layer `il`; `None` for a layer without RoPE.
    pub fn layer_rope(&self, il: usize) -> Option<(f32, f32)> {
        if !self.rope_layers[il] {
            None
        } else if self.layer_window(il).is_some() {
            Some((self.rope_freq_base_swa, 1.0))
        } else {
            Some((self.rope_freq_base, self.rope_freq_scale))
        }
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

/// The architecture `general.architecture` names, if this build runs it.
fn arch_of(file: &GgufFile) -> Result<Arch, ModelError> {
    let arch_name = file.architecture()?;
    Arch::from_name(arch_name).ok_or_else(|| ModelError::UnsupportedArch {
        arch: arch_name.to_string(),
    })
}

/// The required count `{a}.{key}`: present, positive and below 2^32.
fn required_count(file: &GgufFile, a: &str, key: &str) -> Result<usize, ModelError> {
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
}

/// How the heads are laid out: KV heads, head width and rotated dimensions.
struct HeadLayout {
    n_head_kv: usize,
    head_dim: usize,
    n_rot: usize,
}

/// The head layout, checked in this order: `attention.head_count_kv` divides the head count,
/// `attention.key_length` is even, `attention.value_length` equals it, and
/// `rope.dimension_count` is even and no larger than the head width.
fn head_layout(
    file: &GgufFile,
    a: &str,
    n_embd: usize,
    n_head: usize,
) -> Result<HeadLayout, ModelError> {
    let n_head_kv = match file.get_u64(&format!("{a}.attention.head_count_kv"))? {
        Some(v) => v as usize,
        None => n_head,
    };
    if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
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
    Ok(HeadLayout {
        n_head_kv,
        head_dim,
        n_rot,
    })
}

/// The scalar hyper-parameters with their defaults. [`Scalars::read`] refuses only a value of
/// the wrong type; [`Scalars::check`] refuses values that would make the model compute nothing.
struct Scalars {
    n_ctx_train: usize,
    rope_freq_base: f32,
    rms_eps: f32,
    rope_freq_scale: f32,
    rope_freq_base_swa: f32,
}

impl Scalars {
    /// Reads context length, RoPE base, RMS epsilon, RoPE scaling and the sliding-window RoPE
    /// base, in that order.
    fn read(file: &GgufFile, a: &str) -> Result<Scalars, ModelError> {
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
        let rope_freq_base_swa = file
            .get_f32(&format!("{a}.rope.freq_base_swa"))?
            .unwrap_or(10000.0);
        Ok(Scalars {
            n_ctx_train,
            rope_freq_base,
            rms_eps,
            rope_freq_scale,
            rope_freq_base_swa,
        })
    }

    /// The positive-value checks: epsilon, RoPE base and sliding-window RoPE base, then the
    /// context length.
    fn check(&self, a: &str) -> Result<(), ModelError> {
        // NaN or a non-positive epsilon or frequency base make every logit NaN: the model then
        // "generates" nothing, quietly. Refused here with the key named.
        for (key, v, expected) in [
            (
                "attention.layer_norm_rms_epsilon",
                self.rms_eps,
                "a small positive number (1e-5 or 1e-6)",
            ),
            (
                "rope.freq_base",
                self.rope_freq_base,
                "a positive number (10000 or more)",
            ),
            (
                "rope.freq_base_swa",
                self.rope_freq_base_swa,
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
        if self.n_ctx_train == 0 {
            return Err(ModelError::BadValue {
                key: format!("{a}.context_length"),
                value: "0".into(),
                expected: "the trained context length (at least 1)".into(),
            });
        }
        Ok(())
    }
}

/// `{a}.final_logit_softcapping` must be 0 or absent: logit soft-capping is not implemented.
fn refuse_softcapping(file: &GgufFile, a: &str) -> Result<(), ModelError> {
    if let Some(cap) = file.get_f32(&format!("{a}.final_logit_softcapping"))? {
        if cap != 0.0 {
            return Err(ModelError::BadValue {
                key: format!("{a}.final_logit_softcapping"),
                value: cap.to_string(),
                expected: "0 or absent (logit soft-capping is not implemented)".into(),
            });
        }
    }
    Ok(())
}

/// The vocabulary size: the embedding's outer dimension (metadata may repeat it).
fn vocab_size(file: &GgufFile, n_embd: usize) -> Result<usize, ModelError> {
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
    Ok(n_vocab)
}

/// `{arch}.rope.scaling.*`: none and linear are supported; YaRN and others are refused rather
/// than silently run with the wrong positions. As in llama.cpp, a factor without a type is
/// linear. Llama 3.x's `llama3` scaling has no key of its own: the converter writes it as the
/// per-pair divisors of the `rope_freqs.weight` tensor (see `Weights::rope_freqs`).
fn rope_scale(file: &GgufFile, a: &str) -> Result<f32, ModelError> {
    let ty_key = format!("{a}.rope.scaling.type");
    let factor = file.get_f32(&format!("{a}.rope.scaling.factor"))?;
    match (file.get_str(&ty_key)?, factor) {
        (None | Some("none"), None) | (Some("none"), _) => Ok(1.0),
        // llama.cpp reads a factor of 0 as "no scaling".
        (None | Some("linear"), Some(0.0)) => Ok(1.0),
        (None | Some("linear"), Some(f)) if f > 0.0 && f.is_finite() => Ok(1.0 / f),
        (Some("linear"), None) => Ok(1.0),
        (ty, f) => Err(ModelError::BadValue {
            key: ty_key,
            value: format!("{} (factor {f:?})", ty.unwrap_or("absent")),
            expected: "\"none\" or \"linear\" with a positive factor (YaRN is not supported)"
                .into(),
        }),
    }
}

/// `{arch}.attention.sliding_window` and which layers use it: llama.cpp's default pattern for
/// gemma3 is 6 (layers 5, 11, ... are global), overridden by a
/// `{arch}.attention.sliding_window_pattern` number or per-layer bool array.
fn sliding_window(
    file: &GgufFile,
    arch: Arch,
    n_layer: usize,
) -> Result<(usize, Vec<bool>), ModelError> {
    let a = arch.name();
    let window = match file.get_u64(&format!("{a}.attention.sliding_window"))? {
        Some(w) if arch == Arch::Gemma3 => w as usize,
        _ => 0,
    };
    if window == 0 {
        return Ok((0, vec![false; n_layer]));
    }
    let key = format!("{a}.attention.sliding_window_pattern");
    if let Some(v) = file.get(&key) {
        if let Some(items) = v.as_array() {
            let flags: Vec<bool> = items.values.iter().filter_map(|x| x.as_bool()).collect();
            if flags.len() != n_layer || items.values.len() != n_layer {
                return Err(ModelError::BadValue {
                    key,
                    value: format!("an array of {} entries", items.values.len()),
                    expected: format!("{n_layer} booleans (one per layer) or a number"),
                });
            }
            return Ok((window, flags));
        }
    }
    let pattern = file.get_u64(&key)?.unwrap_or(6) as usize;
    let flags = (0..n_layer)
        .map(|il| pattern == 0 || il % pattern < pattern - 1)
        .collect();
    Ok((window, flags))
}

/// The q·k scale: 1/sqrt(head_dim), except Gemma 3 27B (62 layers), whose query scale is
/// 1/sqrt(n_embd / n_head) (llama.cpp follows gemma_pytorch's config there).
fn attn_scale(arch: Arch, n_layer: usize, n_embd: usize, n_head: usize, head_dim: usize) -> f32 {
    if arch == Arch::Gemma3 && n_layer == 62 {
        1.0 / ((n_embd / n_head) as f32).sqrt()
    } else {
        1.0 / (head_dim as f32).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{ErrorKind, GgufWriter, Value};
    use crate::quant::GgmlType;

    /// The key, tensor or architecture an error names.
    fn named(e: &ModelError) -> String {
        match e {
            ModelError::Gguf(g) => match &g.kind {
                ErrorKind::WrongType { key, .. } => key.clone(),
                other => panic!("unexpected GGUF error {other}"),
            },
            ModelError::UnsupportedArch { arch } => arch.clone(),
            ModelError::MissingKey { key } | ModelError::BadValue { key, .. } => key.clone(),
            ModelError::MissingTensor { name } | ModelError::BadShape { name, .. } => name.clone(),
            other => panic!("unexpected error {other}"),
        }
    }

    /// A file with every value of `steps[first..]` bad (a key named twice takes its earliest
    /// bad value still to come), the rest good; the last step is the embedding tensor.
    fn file_from(steps: &[(&str, Value, Value)], first: usize) -> GgufFile {
        let mut kv: Vec<(&str, Value)> = Vec::new();
        for (i, (key, bad, good)) in steps.iter().enumerate().rev() {
            let v = if i >= first { bad } else { good };
            match kv.iter_mut().find(|(k, _)| k == key) {
                Some(slot) if i >= first => slot.1 = v.clone(),
                Some(_) => {}
                None => kv.push((key, v.clone())),
            }
        }
        let mut w = GgufWriter::new();
        for (k, v) in kv {
            w = w.kv(k, v);
        }
        if first > steps.len() {
            w = w.tensor(
                "token_embd.weight",
                &[8, 4],
                GgmlType::F32,
                vec![0; 8 * 4 * 4],
            );
        }
        GgufFile::from_bytes("order.gguf", w.to_bytes()).unwrap()
    }

    #[test]
    fn a_file_with_many_bad_values_is_refused_for_the_first_in_order() {
        use Value::{String as S, F32, U32};
        let steps: Vec<(&str, Value, Value)> = vec![
            ("general.architecture", S("gpt2".into()), S("llama".into())),
            ("llama.block_count", U32(0), U32(2)),
            ("llama.embedding_length", U32(0), U32(8)),
            ("llama.feed_forward_length", U32(0), U32(16)),
            ("llama.attention.head_count", U32(0), U32(2)),
            ("llama.attention.head_count_kv", U32(3), U32(1)),
            ("llama.attention.key_length", U32(3), U32(4)),
            ("llama.attention.value_length", U32(6), U32(4)),
            ("llama.rope.dimension_count", U32(6), U32(4)),
            ("llama.context_length", S("long".into()), U32(0)),
            ("llama.rope.freq_base", S("x".into()), F32(0.0)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                S("x".into()),
                F32(f32::NAN),
            ),
            (
                "llama.rope.scaling.type",
                S("yarn".into()),
                S("none".into()),
            ),
            ("llama.rope.freq_base_swa", S("x".into()), F32(-1.0)),
            ("llama.final_logit_softcapping", F32(30.0), F32(0.0)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                F32(f32::NAN),
                F32(1e-5),
            ),
            ("llama.rope.freq_base", F32(0.0), F32(10000.0)),
            ("llama.rope.freq_base_swa", F32(-1.0), F32(10000.0)),
            ("llama.context_length", U32(0), U32(64)),
        ];
        let mut want: Vec<String> = steps.iter().map(|s| s.0.to_string()).collect();
        want[0] = "gpt2".into();
        want.push("token_embd.weight".into());
        for (first, want) in want.iter().enumerate() {
            let e = Config::from_gguf(&file_from(&steps, first)).unwrap_err();
            assert_eq!(&named(&e), want, "bad from step {first}: {e}");
        }
        let c = Config::from_gguf(&file_from(&steps, steps.len() + 1)).unwrap();
        assert_eq!(
            (
                c.n_layer,
                c.n_head_kv,
                c.head_dim,
                c.n_rot,
                c.n_vocab,
                c.n_ctx_train
            ),
            (2, 1, 4, 4, 4, 64)
        );
    }
}
