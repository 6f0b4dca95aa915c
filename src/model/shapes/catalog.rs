//! The named shapes: the hyper-parameters of real published models (from their `config.json`,
//! as llama.cpp's converter writes them into GGUF metadata), plus two tiny shapes for tests.
//! Adding a model of a supported family is one entry here.

use super::family::Family;
use super::mix::Mix;
use super::vocab::VocabStyle;

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
    /// No `output.weight`: the output projection is the token embedding.
    pub tied_embeddings: bool,
    /// The mix used when the name has no `:mix`.
    pub default_mix: Mix,
    /// Part of the test suite's tiny set (not a real model).
    pub tiny: bool,
}

const LLAMA32_ROPE: RopeScaling = RopeScaling::Llama3 {
    factor: 32.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_context: 8192,
};
const LLAMA31_ROPE: RopeScaling = RopeScaling::Llama3 {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_context: 8192,
};

/// Every shape, smallest first within a family.
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "tiny-llama",
        model: "tiny llama (tests)",
        size_label: "2M",
        family: Family::Llama,
        n_layer: 2,
        n_embd: 256,
        n_ff: 768,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_vocab: 2048,
        n_vocab_pad: 0,
        vocab: VocabStyle::SmolLm,
        n_ctx_train: 4096,
        rope_freq_base: 10000.0,
        rope_scaling: RopeScaling::None,
        rms_eps: 1e-5,
        tied_embeddings: true,
        default_mix: Mix::Q4KM,
        tiny: true,
    },
    Shape {
        name: "tiny-qwen2",
        model: "tiny qwen2 (tests)",
        size_label: "2M",
        family: Family::Qwen2,
        n_layer: 2,
        n_embd: 256,
        n_ff: 768,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 64,
        n_vocab: 2080,
        n_vocab_pad: 10,
        vocab: VocabStyle::Qwen2,
        n_ctx_train: 4096,
        rope_freq_base: 1_000_000.0,
        rope_scaling: RopeScaling::None,
        rms_eps: 1e-6,
        tied_embeddings: false,
        default_mix: Mix::Q4KM,
        tiny: true,
    },
    Shape {
        name: "smollm2-135m",
        model: "SmolLM2-135M-Instruct",
        size_label: "135M",
        family: Family::Llama,
        n_layer: 30,
        n_embd: 576,
        n_ff: 1536,
        n_head: 9,
        n_head_kv: 3,
        head_dim: 64,
        n_vocab: 49152,
        n_vocab_pad: 0,
        vocab: VocabStyle::SmolLm,
        n_ctx_train: 8192,
        rope_freq_base: 100_000.0,
        rope_scaling: RopeScaling::None,
        rms_eps: 1e-5,
        tied_embeddings: true,
        // The real test model's mix (tests/fixtures and docs/test-models: Q4_1 + one Q8_0).
        default_mix: Mix::Q4_1,
        tiny: false,
    },
    Shape {
        name: "llama-3.2-1b",
        model: "Llama-3.2-1B-Instruct",
        size_label: "1B",
        family: Family::Llama,
        n_layer: 16,
        n_embd: 2048,
        n_ff: 8192,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 64,
        n_vocab: 128_256,
        n_vocab_pad: 0,
        vocab: VocabStyle::Llama3,
        n_ctx_train: 131_072,
        rope_freq_base: 500_000.0,
        rope_scaling: LLAMA32_ROPE,
        rms_eps: 1e-5,
        tied_embeddings: true,
        default_mix: Mix::Q4KM,
        tiny: false,
    },
    Shape {
        name: "llama-3.2-3b",
        model: "Llama-3.2-3B-Instruct",
        size_label: "3B",
        family: Family::Llama,
        n_layer: 28,
        n_embd: 3072,
        n_ff: 8192,
        n_head: 24,
        n_head_kv: 8,
        head_dim: 128,
        n_vocab: 128_256,
        n_vocab_pad: 0,
        vocab: VocabStyle::Llama3,
        n_ctx_train: 131_072,
        rope_freq_base: 500_000.0,
        rope_scaling: LLAMA32_ROPE,
        rms_eps: 1e-5,
        tied_embeddings: true,
        default_mix: Mix::Q4KM,
        tiny: false,
    },
    Shape {
        name: "llama-3.1-8b",
        model: "Llama-3.1-8B-Instruct",
        size_label: "8B",
        family: Family::Llama,
        n_layer: 32,
        n_embd: 4096,
        n_ff: 14336,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        n_vocab: 128_256,
        n_vocab_pad: 0,
        vocab: VocabStyle::Llama3,
        n_ctx_train: 131_072,
        rope_freq_base: 500_000.0,
        rope_scaling: LLAMA31_ROPE,
        rms_eps: 1e-5,
        tied_embeddings: false,
        default_mix: Mix::Q4KM,
        tiny: false,
    },
    Shape {
        name: "qwen2.5-0.5b",
        model: "Qwen2.5-0.5B-Instruct",
        size_label: "0.5B",
        family: Family::Qwen2,
        n_layer: 24,
        n_embd: 896,
        n_ff: 4864,
        n_head: 14,
        n_head_kv: 2,
        head_dim: 64,
        n_vocab: 151_936,
        n_vocab_pad: 271,
        vocab: VocabStyle::Qwen2,
        n_ctx_train: 32768,
        rope_freq_base: 1_000_000.0,
        rope_scaling: RopeScaling::None,
        rms_eps: 1e-6,
        tied_embeddings: true,
        default_mix: Mix::Q4KM,
        tiny: false,
    },
    Shape {
        name: "qwen2.5-1.5b",
        model: "Qwen2.5-1.5B-Instruct",
        size_label: "1.5B",
        family: Family::Qwen2,
        n_layer: 28,
        n_embd: 1536,
        n_ff: 8960,
        n_head: 12,
        n_head_kv: 2,
        head_dim: 128,
        n_vocab: 151_936,
        n_vocab_pad: 271,
        vocab: VocabStyle::Qwen2,
        n_ctx_train: 32768,
        rope_freq_base: 1_000_000.0,
        rope_scaling: RopeScaling::None,
        rms_eps: 1e-6,
        tied_embeddings: true,
        default_mix: Mix::Q4KM,
        tiny: false,
    },
    Shape {
        name: "qwen2.5-3b",
        model: "Qwen2.5-3B-Instruct",
        size_label: "3B",
        family: Family::Qwen2,
        n_layer: 36,
        n_embd: 2048,
        n_ff: 11008,
        n_head: 16,
        n_head_kv: 2,
        head_dim: 128,
        n_vocab: 151_936,
        n_vocab_pad: 271,
        vocab: VocabStyle::Qwen2,
        n_ctx_train: 32768,
        rope_freq_base: 1_000_000.0,
        rope_scaling: RopeScaling::None,
        rms_eps: 1e-6,
        tied_embeddings: true,
        default_mix: Mix::Q4KM,
        tiny: false,
    },
    Shape {
        name: "qwen2.5-7b",
        model: "Qwen2.5-7B-Instruct",
        size_label: "7B",
        family: Family::Qwen2,
        n_layer: 28,
        n_embd: 3584,
        n_ff: 18944,
        n_head: 28,
        n_head_kv: 4,
        head_dim: 128,
        n_vocab: 152_064,
        n_vocab_pad: 399,
        vocab: VocabStyle::Qwen2,
        n_ctx_train: 32768,
        rope_freq_base: 1_000_000.0,
        rope_scaling: RopeScaling::None,
        rms_eps: 1e-6,
        tied_embeddings: false,
        default_mix: Mix::Q4KM,
        tiny: false,
    },
];

/// The shape called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static Shape> {
    SHAPES.iter().find(|s| s.name.eq_ignore_ascii_case(name))
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
