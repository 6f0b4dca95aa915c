//! What a shape is: the `Shape` every catalog row fills, and the small enums it names (the
//! architecture family, the tokenizer style, the RoPE scaling). Only definitions live here, so
//! every other part of `shapes` reads them from below: `family` (each family's tensors and keys)
//! and `vocab` (each style's tokenizer) act on a `Shape`, and `catalog` lists the named ones.

use super::mix::Mix;

/// An architecture family (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama: the reference dense transformer; the others are described by how they differ from it.
    Llama,
    /// Llama plus biases on Q, K and V.
    Qwen2,
    /// Qwen2 without the biases, with per-head Q/K norms.
    Qwen3,
    /// Q/K norms, post-attention and post-FFN norms, sliding-window layers.
    Gemma3,
    /// Llama tensors; every fourth layer skips RoPE (a property of the architecture, no key).
    Smollm3,
}

/// Which real tokenizer a shape imitates: its pre-tokenizer, special tokens and template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabStyle {
    /// Llama 3: 256 control tokens after the ordinary ones, BOS `<|begin_of_text|>`.
    Llama3,
    /// Qwen2.5: 22 special tokens after the ordinary ones, then `[PADn]` padding.
    Qwen2,
    /// SmolLM2: 17 control tokens first (`<|endoftext|>`, `<|im_start|>`, ...).
    SmolLm,
}

/// How RoPE frequencies are scaled for long context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE at every context length.
    None,
    /// Llama 3.1's scheme (`rope_type: "llama3"` in `config.json`); llama.cpp's converter stores
    /// it as the per-dimension divisors of a `rope_freqs.weight` tensor.
    Llama3 {
        /// Context length multiplier (8 for Llama 3.1).
        factor: f32,
        /// Wavelengths longer than `original_context / low_freq_factor` are scaled by `factor`.
        low_freq_factor: f32,
        /// Wavelengths shorter than `original_context / high_freq_factor` are left as they are.
        high_freq_factor: f32,
        /// Context length the model was pre-trained with before the extension.
        original_context: u32,
    },
}

/// One named shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// What users type: `llama-3.2-3b`.
    pub name: &'static str,
    /// The model it mirrors (`general.name` gets " (random weights)" appended).
    pub model: &'static str,
    /// `general.size_label`.
    pub size_label: &'static str,
    /// The architecture family.
    pub family: Family,
    /// Transformer blocks.
    pub n_layer: u32,
    /// Model width.
    pub n_embd: u32,
    /// Hidden width of the feed-forward block.
    pub n_ff: u32,
    /// Query heads.
    pub n_head: u32,
    /// Key/value heads (grouped-query attention).
    pub n_head_kv: u32,
    /// Width of one head.
    pub head_dim: u32,
    /// Rows of the embedding (and output) matrix; the tokenizer has exactly this many tokens.
    pub n_vocab: u32,
    /// Tokens at the end of the vocabulary that are padding (`[PAD151665]` in Qwen2.5).
    pub n_vocab_pad: u32,
    /// Which real tokenizer the vocabulary imitates.
    pub vocab: VocabStyle,
    /// Context length written to `{arch}.context_length`.
    pub n_ctx_train: u32,
    /// `{arch}.rope.freq_base`.
    pub rope_freq_base: f32,
    /// Long-context RoPE scaling, if any.
    pub rope_scaling: RopeScaling,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// Sliding-window width of gemma3's local layers (`{arch}.attention.sliding_window`; 0 for
    /// families without one).
    pub sliding_window: u32,
    /// No `output.weight`: the output projection is the token embedding.
    pub tied_embeddings: bool,
    /// The mix used when the name has no `:mix`.
    pub default_mix: Mix,
    /// Part of the test suite's tiny set (not a real model).
    pub tiny: bool,
}

impl Shape {
    /// Width of Q (all heads).
    pub fn q_dim(&self) -> u64 {
        u64::from(self.n_head) * u64::from(self.head_dim)
    }
    /// Width of K and of V (all KV heads).
    pub fn kv_dim(&self) -> u64 {
        u64::from(self.n_head_kv) * u64::from(self.head_dim)
    }
}
