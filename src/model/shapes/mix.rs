//! Quantization mixes: which ggml type each tensor gets, following the rules of llama.cpp's
//! `llama-quantize` (`llama_tensor_get_type` in `src/llama-quant.cpp`, as vendored in
//! llama-cpp-python 0.3.36) for dense llama-like models, so a shaped file holds the same
//! per-tensor types as a real file quantized with that mix:
//! - one-dimensional tensors (norms, biases, `rope_freqs`) stay F32;
//! - the output projection (or the token embedding when the output is tied to it) becomes Q6_K,
//!   unless the mix is Q8_0 (stays Q8_0) or its rows are not a whole number of the mix's blocks
//!   (then Q8_0);
//! - Q4_K_M and Q5_K_M give `attn_v` and `ffn_down` Q6_K in the layers `use_more_bits` picks
//!   (the first and last eighth, and every third layer between);
//! - a K-quant on rows that are not a multiple of 256 falls back to a 32-element format
//!   (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0).

use crate::quant::GgmlType;

/// A named mix (llama.cpp's `llama_ftype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mix {
    /// Every matrix F16.
    F16,
    /// Q4_0 for every matrix but the output projection (Q6_K).
    Q4_0,
    /// Q4_1 for every matrix but the output projection (Q6_K).
    Q4_1,
    /// Q8_0 for every matrix, the output projection too.
    Q8_0,
    /// Q4_K_M: Q4_K, with Q6_K for `attn_v` and `ffn_down` in the layers `use_more_bits` picks.
    Q4KM,
    /// Q5_K_M: Q5_K, with Q6_K for `attn_v` and `ffn_down` in the layers `use_more_bits` picks.
    Q5KM,
    /// Q6_K for every matrix (Q8_0 where rows are not a multiple of 256).
    Q6K,
}

/// What a tensor is, as far as the mix rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The token embedding matrix (`token_embd.weight`).
    TokenEmbd,
    /// The output projection (`output.weight`).
    Output,
    /// Any one-dimensional tensor: norms, biases, RoPE factors.
    Vector,
    /// `blk.N.attn_q.weight`.
    AttnQ,
    /// `blk.N.attn_k.weight`.
    AttnK,
    /// `blk.N.attn_v.weight`.
    AttnV,
    /// `blk.N.attn_output.weight`.
    AttnOutput,
    /// `blk.N.ffn_gate.weight`.
    FfnGate,
    /// `blk.N.ffn_up.weight`.
    FfnUp,
    /// `blk.N.ffn_down.weight`.
    FfnDown,
}

impl Mix {
    /// Every mix, in the order `pigpu shape list` shows them.
    pub const ALL: [Mix; 7] = [
        Mix::Q4KM,
        Mix::Q5KM,
        Mix::Q6K,
        Mix::Q4_0,
        Mix::Q4_1,
        Mix::Q8_0,
        Mix::F16,
    ];

    /// The name users type (`q4_k_m`), as llama-quantize spells it in lower case.
    pub fn name(self) -> &'static str {
        match self {
            Mix::F16 => "f16",
            Mix::Q4_0 => "q4_0",
            Mix::Q4_1 => "q4_1",
            Mix::Q8_0 => "q8_0",
            Mix::Q4KM => "q4_k_m",
            Mix::Q5KM => "q5_k_m",
            Mix::Q6K => "q6_k",
        }
    }

    /// The mix for a name, ignoring case (`Q4_K_M` finds `q4_k_m`); `None` when unknown.
    pub fn from_name(name: &str) -> Option<Mix> {
        Mix::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// `general.file_type` (`llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            Mix::F16 => 1,
            Mix::Q4_0 => 2,
            Mix::Q4_1 => 3,
            Mix::Q8_0 => 7,
            Mix::Q4KM => 15,
            Mix::Q5KM => 17,
            Mix::Q6K => 18,
        }
    }

    /// The type of every matrix no rule singles out.
    fn base(self) -> GgmlType {
        match self {
            Mix::F16 => GgmlType::F16,
            Mix::Q4_0 => GgmlType::Q4_0,
            Mix::Q4_1 => GgmlType::Q4_1,
            Mix::Q8_0 => GgmlType::Q8_0,
            Mix::Q4KM => GgmlType::Q4_K,
            Mix::Q5KM => GgmlType::Q5_K,
            Mix::Q6K => GgmlType::Q6_K,
        }
    }

    /// The type of a tensor of `role` in layer `layer` of `n_layer` (ignored for non-layer
    /// tensors), whose rows are `cols` elements wide. `tied` says the token embedding also
    /// serves as the output projection.
    pub fn type_for(self, role: Role, layer: u32, n_layer: u32, cols: u64, tied: bool) -> GgmlType {
        if role == Role::Vector {
            return GgmlType::F32;
        }
        let base = self.base();
        if base == GgmlType::F16 {
            return GgmlType::F16;
        }
        let chosen = match role {
            Role::Output => output_type(base, cols),
            Role::TokenEmbd if tied => output_type(base, cols),
            Role::AttnV | Role::FfnDown
                if matches!(self, Mix::Q4KM | Mix::Q5KM) && use_more_bits(layer, n_layer) =>
            {
                GgmlType::Q6_K
            }
            _ => base,
        };
        fallback(chosen, cols)
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// llama.cpp's choice for the output projection.
fn output_type(base: GgmlType, cols: u64) -> GgmlType {
    if !cols.is_multiple_of(base.block_size() as u64) || base == GgmlType::Q8_0 {
        GgmlType::Q8_0
    } else {
        GgmlType::Q6_K
    }
}

/// The layers that get more bits in the _M mixes.
fn use_more_bits(layer: u32, n_layer: u32) -> bool {
    let (i, n) = (i64::from(layer), i64::from(n_layer));
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// A K-quant on rows that are not whole 256-element super-blocks falls back to a 32-element
/// format; F16 if even that does not fit.
fn fallback(ty: GgmlType, cols: u64) -> GgmlType {
    if cols.is_multiple_of(ty.block_size() as u64) {
        return ty;
    }
    let to = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if cols.is_multiple_of(to.block_size() as u64) {
        to
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_matches_llama_cpp_for_28_layers() {
        // n/8 = 3, 7n/8 = 24: layers 0-2, 24-27, and 3 + 3k + 2 = 5, 8, ..., 23.
        let picked: Vec<u32> = (0..28).filter(|&i| use_more_bits(i, 28)).collect();
        assert_eq!(picked, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
    }

    #[test]
    fn output_and_fallbacks() {
        let m = Mix::Q4KM;
        assert_eq!(m.type_for(Role::Output, 0, 1, 4096, false), GgmlType::Q6_K);
        assert_eq!(
            m.type_for(Role::TokenEmbd, 0, 1, 4096, false),
            GgmlType::Q4_K
        );
        assert_eq!(
            m.type_for(Role::TokenEmbd, 0, 1, 3072, true),
            GgmlType::Q6_K
        );
        // 896-wide rows (Qwen2.5-0.5B): K-quants fall back.
        assert_eq!(m.type_for(Role::AttnQ, 5, 24, 896, true), GgmlType::Q5_0);
        assert_eq!(m.type_for(Role::AttnV, 0, 24, 896, true), GgmlType::Q8_0);
        assert_eq!(
            m.type_for(Role::TokenEmbd, 0, 24, 896, true),
            GgmlType::Q8_0
        );
        // SmolLM2's Q4_1 file: 576-wide tied embedding becomes Q8_0, the rest stays Q4_1.
        let q = Mix::Q4_1;
        assert_eq!(
            q.type_for(Role::TokenEmbd, 0, 30, 576, true),
            GgmlType::Q8_0
        );
        assert_eq!(q.type_for(Role::FfnDown, 0, 30, 1536, true), GgmlType::Q4_1);
        assert_eq!(
            Mix::Q8_0.type_for(Role::Output, 0, 1, 4096, false),
            GgmlType::Q8_0
        );
        assert_eq!(
            Mix::Q4_0.type_for(Role::Output, 0, 1, 4096, false),
            GgmlType::Q6_K
        );
        assert_eq!(
            Mix::F16.type_for(Role::Output, 0, 1, 4096, false),
            GgmlType::F16
        );
        assert_eq!(m.type_for(Role::Vector, 0, 1, 4096, false), GgmlType::F32);
    }
}
