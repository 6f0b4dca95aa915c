//! What a shape is: the `Shape` every catalog row fills, and the small enums it names (the
//! architecture family, the tokenizer style, the RoPE scaling). Only definitions live here, so
//! every other part of `shapes` reads them from below: `family` (each family's tensors and keys)
//! and `vocab` (each style's tokenizer) act on a `Shape`, and `catalog` lists the named ones.

use super::mix::Mix;

/// An architecture family (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
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
    None,
    /// Llama 3.1's scheme (`rope_type: "llama3"` in `config.json`); llama.cpp's converter stores
    /// it as the per-dimension divisors of a `rope_freqs.weight` tensor.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
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
    pub family: Family,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    /// Rows of the embedding (and output) matrix; the tokenizer has exactly this many tokens.
    pub n_vocab: u32,
    /// Tokens at the end of the vocabulary that are padding (`[PAD151665]` in Qwen2.5).
    pub n_vocab_pad: u32,
    pub vocab: VocabStyle,
    pub n_ctx_train: u32,
    pub rope_freq_base: f32,
    pub rope_scaling: RopeScaling,
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
