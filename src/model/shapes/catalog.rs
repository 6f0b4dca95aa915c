//! The named shapes: the hyper-parameters of real published models (from their `config.json`,
//! as llama.cpp's converter writes them into GGUF metadata), plus two tiny shapes for tests.
//! Adding a model of a supported family is one entry here.

use super::mix::Mix;
use super::shape::{Family, RopeScaling, Shape, VocabStyle};
use Family as F;
use VocabStyle as V;

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
/// tiny-llama3's: a short original context, so that the blend band of the factors covers real
/// pairs.
const TINY_LLAMA3_ROPE: RopeScaling = RopeScaling::Llama3 {
    factor: 8.0,
    low_freq_factor: 1.0,
    high_freq_factor: 4.0,
    original_context: 256,
};
const NONE: RopeScaling = RopeScaling::None;

/// Every shape, smallest first within a family; one row each, in [`row`]'s column order.
/// Notes on single values: tiny-gemma3 has six layers so that the default pattern makes layers
/// 0-4 sliding and layer 5 global, and a window of 8, shorter than the test prompts, so the
/// window is exercised; smollm2-135m's mix is the real test model's (Q4_1 plus one Q8_0).
#[rustfmt::skip]
pub const SHAPES: &[Shape] = &[
    //   name            model                                 size     family        layers embd  ff     heads kv hd    vocab     pad  tokenizer     ctx       rope base   scaling        eps   window tied   mix
    row(("tiny-llama",   "tiny llama (tests)",                 "2M"),   F::Llama,   [2,  256,  768,   4,  2, 64],  (2048,     0, V::SmolLm), 4096,    (10_000.0,    NONE),         1e-5, 0,     true,  Mix::Q4KM),
    row(("tiny-qwen2",   "tiny qwen2 (tests)",                 "2M"),   F::Qwen2,   [2,  256,  768,   4,  2, 64],  (2080,    10, V::Qwen2),  4096,    (1_000_000.0, NONE),         1e-6, 0,     false, Mix::Q4KM),
    row(("tiny-llama3",  "tiny llama 3.1 (tests: rope_freqs)", "2M"),   F::Llama,   [2,  256,  768,   4,  2, 64],  (2048,     0, V::Llama3), 4096,    (500_000.0,   TINY_LLAMA3_ROPE), 1e-5, 0, false, Mix::Q4KM),
    row(("tiny-qwen3",   "tiny qwen3 (tests)",                 "2M"),   F::Qwen3,   [2,  256,  768,   4,  2, 96],  (2080,    10, V::Qwen2),  4096,    (1_000_000.0, NONE),         1e-6, 0,     true,  Mix::Q4KM),
    row(("tiny-gemma3",  "tiny gemma3 (tests)",                "2M"),   F::Gemma3,  [6,  128,  512,   4,  1, 64],  (2048,     0, V::SmolLm), 4096,    (1_000_000.0, NONE),         1e-6, 8,     true,  Mix::Q4KM),
    row(("tiny-smollm3", "tiny smollm3 (tests)",               "2M"),   F::Smollm3, [4,  256,  768,   4,  2, 64],  (2048,     0, V::Llama3), 4096,    (5_000_000.0, NONE),         1e-6, 0,     true,  Mix::Q4KM),
    row(("smollm2-135m", "SmolLM2-135M-Instruct",              "135M"), F::Llama,   [30, 576,  1536,  9,  3, 64],  (49152,    0, V::SmolLm), 8192,    (100_000.0,   NONE),         1e-5, 0,     true,  Mix::Q4_1),
    row(("llama-3.2-1b", "Llama-3.2-1B-Instruct",              "1B"),   F::Llama,   [16, 2048, 8192,  32, 8, 64],  (128_256,  0, V::Llama3), 131_072, (500_000.0,   LLAMA32_ROPE), 1e-5, 0,     true,  Mix::Q4KM),
    row(("llama-3.2-3b", "Llama-3.2-3B-Instruct",              "3B"),   F::Llama,   [28, 3072, 8192,  24, 8, 128], (128_256,  0, V::Llama3), 131_072, (500_000.0,   LLAMA32_ROPE), 1e-5, 0,     true,  Mix::Q4KM),
    row(("llama-3.1-8b", "Llama-3.1-8B-Instruct",              "8B"),   F::Llama,   [32, 4096, 14336, 32, 8, 128], (128_256,  0, V::Llama3), 131_072, (500_000.0,   LLAMA31_ROPE), 1e-5, 0,     false, Mix::Q4KM),
    row(("qwen2.5-0.5b", "Qwen2.5-0.5B-Instruct",              "0.5B"), F::Qwen2,   [24, 896,  4864,  14, 2, 64],  (151_936, 271, V::Qwen2), 32768,   (1_000_000.0, NONE),         1e-6, 0,     true,  Mix::Q4KM),
    row(("qwen2.5-1.5b", "Qwen2.5-1.5B-Instruct",              "1.5B"), F::Qwen2,   [28, 1536, 8960,  12, 2, 128], (151_936, 271, V::Qwen2), 32768,   (1_000_000.0, NONE),         1e-6, 0,     true,  Mix::Q4KM),
    row(("qwen2.5-3b",   "Qwen2.5-3B-Instruct",                "3B"),   F::Qwen2,   [36, 2048, 11008, 16, 2, 128], (151_936, 271, V::Qwen2), 32768,   (1_000_000.0, NONE),         1e-6, 0,     true,  Mix::Q4KM),
    row(("qwen2.5-7b",   "Qwen2.5-7B-Instruct",                "7B"),   F::Qwen2,   [28, 3584, 18944, 28, 4, 128], (152_064, 399, V::Qwen2), 32768,   (1_000_000.0, NONE),         1e-6, 0,     false, Mix::Q4KM),
    row(("qwen3-0.6b",   "Qwen3-0.6B",                         "0.6B"), F::Qwen3,   [28, 1024, 3072,  16, 8, 128], (151_936, 267, V::Qwen2), 40960,   (1_000_000.0, NONE),         1e-6, 0,     true,  Mix::Q4KM),
    row(("qwen3-8b",     "Qwen3-8B",                           "8B"),   F::Qwen3,   [36, 4096, 12288, 32, 8, 128], (151_936, 267, V::Qwen2), 40960,   (1_000_000.0, NONE),         1e-6, 0,     false, Mix::Q4KM),
    row(("gemma3-1b",    "gemma-3-1b-it",                      "1B"),   F::Gemma3,  [26, 1152, 6912,  4,  1, 256], (262_144,  0, V::SmolLm), 32768,   (1_000_000.0, NONE),         1e-6, 512,   true,  Mix::Q4KM),
    row(("smollm3-3b",   "SmolLM3-3B",                         "3B"),   F::Smollm3, [36, 2048, 11008, 16, 4, 128], (128_256,  0, V::Llama3), 65536,   (5_000_000.0, NONE),         1e-6, 0,     true,  Mix::Q4KM),
];

/// One row of [`SHAPES`]: (name, model, size label), family, [layers, width, FFN width, heads,
/// KV heads, head width], (vocabulary, padding tokens at its end, tokenizer style), training
/// context, (RoPE base, RoPE scaling), RMS epsilon, sliding window (0: none), tied embeddings,
/// default mix. A shape is one of the tests' tiny set exactly when its name starts with `tiny-`.
#[allow(clippy::too_many_arguments)]
const fn row(
    (name, model, size_label): (&'static str, &'static str, &'static str),
    family: Family,
    [n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim]: [u32; 6],
    (n_vocab, n_vocab_pad, vocab): (u32, u32, VocabStyle),
    n_ctx_train: u32,
    (rope_freq_base, rope_scaling): (f32, RopeScaling),
    rms_eps: f32,
    sliding_window: u32,
    tied_embeddings: bool,
    default_mix: Mix,
) -> Shape {
    let b = name.as_bytes();
    let tiny =
        b.len() > 5 && b[0] == b't' && b[1] == b'i' && b[2] == b'n' && b[3] == b'y' && b[4] == b'-';
    Shape {
        name,
        model,
        size_label,
        family,
        n_layer,
        n_embd,
        n_ff,
        n_head,
        n_head_kv,
        head_dim,
        n_vocab,
        n_vocab_pad,
        vocab,
        n_ctx_train,
        rope_freq_base,
        rope_scaling,
        rms_eps,
        sliding_window,
        tied_embeddings,
        default_mix,
        tiny,
    }
}

/// The shape called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static Shape> {
    SHAPES.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}
