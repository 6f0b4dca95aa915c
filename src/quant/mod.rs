//! Tensor element types as GGUF/ggml numbers them, their block geometry, and CPU
//! dequantization. The block layouts here are the ground truth the CPU engine's kernels and the
//! Vulkan shaders are tested against.

mod blocks;
mod dequant;

use std::fmt;

pub use blocks::{f16_to_f32, read_block, Block};
pub use dequant::{
    block_q2_k, block_q3_k, block_q4_0, block_q4_1, block_q4_k, block_q5_0, block_q5_1, block_q5_k,
    block_q6_k, block_q8_0, dequantize, dequantize_to_vec, is_supported,
};

/// Why a dequantization was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The type has no dequantizer in this build.
    #[error("dequantizing tensor type {0} is not supported (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K)")]
    Unsupported(GgmlType),
    /// The element count does not fill whole blocks of the type.
    #[error("{n_elements} elements of type {ty} is not a whole number of {block}-element blocks")]
    NotWholeBlocks {
        /// The tensor type.
        ty: GgmlType,
        /// Elements asked for.
        n_elements: u64,
        /// Elements per block of the type.
        block: usize,
    },
    /// The byte slice is not the size the element count needs.
    #[error("{n_elements} elements of type {ty} take {expected} bytes, got {found}")]
    SizeMismatch {
        /// The tensor type.
        ty: GgmlType,
        /// Elements asked for.
        n_elements: u64,
        /// Bytes those elements take.
        expected: u64,
        /// Bytes given.
        found: u64,
    },
}

/// A ggml tensor type, numbered as in GGUF tensor infos (`ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit float (id 0).
    F32,
    /// IEEE half float (id 1).
    F16,
    /// 32-element blocks: one f16 scale and 4-bit weights, 4.5 bits per weight (id 2).
    Q4_0,
    /// 32-element blocks: f16 scale and minimum, 4-bit weights, 5 bits per weight (id 3).
    Q4_1,
    /// 32-element blocks: f16 scale, 5-bit weights (high bits packed apart), 5.5 bits per weight
    /// (id 6).
    Q5_0,
    /// 32-element blocks: f16 scale and minimum, 5-bit weights, 6 bits per weight (id 7).
    Q5_1,
    /// 32-element blocks: one f16 scale and 32 signed bytes, 8.5 bits per weight (id 8).
    Q8_0,
    /// Q8_0 with the scaled block sum added, 9 bits per weight; ggml's activation format (id 9).
    Q8_1,
    /// 256-element super-blocks of 16×16, 4-bit scales and minimums, 2-bit weights; 2.625 bits per
    /// weight (id 10).
    Q2_K,
    /// 256-element super-blocks of 16×16, 6-bit scales, 3-bit weights; 3.4375 bits per weight (id
    /// 11).
    Q3_K,
    /// 256-element super-blocks of 8×32, 6-bit scales and minimums, 4-bit weights; 4.5 bits per
    /// weight (id 12).
    Q4_K,
    /// 256-element super-blocks of 8×32, 6-bit scales and minimums, 5-bit weights; 5.5 bits per
    /// weight (id 13).
    Q5_K,
    /// 256-element super-blocks of 16×16, 8-bit scales, 6-bit weights; 6.5625 bits per weight (id
    /// 14).
    Q6_K,
    /// 256-element blocks: f32 scale, 256 signed bytes and 16 partial sums; ggml's activation
    /// format for k-quant dot products (id 15).
    Q8_K,
    /// Codebook quantization, 2.0625 bits per weight; read but not dequantized here (id 16).
    IQ2_XXS,
    /// Codebook quantization, 2.3125 bits per weight; read but not dequantized here (id 17).
    IQ2_XS,
    /// Codebook quantization, 3.0625 bits per weight; read but not dequantized here (id 18).
    IQ3_XXS,
    /// Codebook quantization, 1.5625 bits per weight; read but not dequantized here (id 19).
    IQ1_S,
    /// 32-element blocks with a non-linear 4-bit table, 4.5 bits per weight; not dequantized here
    /// (id 20).
    IQ4_NL,
    /// Codebook quantization, 3.4375 bits per weight; read but not dequantized here (id 21).
    IQ3_S,
    /// Codebook quantization, 2.5625 bits per weight; read but not dequantized here (id 22).
    IQ2_S,
    /// 256-element super-blocks of the IQ4_NL table, 4.25 bits per weight; not dequantized here (id
    /// 23).
    IQ4_XS,
    /// Signed 8-bit integer (id 24).
    I8,
    /// Signed 16-bit integer (id 25).
    I16,
    /// Signed 32-bit integer (id 26).
    I32,
    /// Signed 64-bit integer (id 27).
    I64,
    /// 64-bit float (id 28).
    F64,
    /// Codebook quantization, 1.75 bits per weight; read but not dequantized here (id 29).
    IQ1_M,
    /// bfloat16: the top half of an f32 (id 30).
    BF16,
    /// Ternary weights, 1.6875 bits per weight; read but not dequantized here (id 34).
    TQ1_0,
    /// Ternary weights, 2.0625 bits per weight; read but not dequantized here (id 35).
    TQ2_0,
    /// 32-element blocks of 4-bit floats with a shared 8-bit exponent, 4.25 bits per weight; not
    /// dequantized here (id 39).
    MXFP4,
}

/// Elements per super-block of the k-quants.
pub const QK_K: usize = 256;

impl GgmlType {
    /// Every type this build knows the geometry of, in id order.
    pub const ALL: [GgmlType; 32] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q8_1,
        Self::Q2_K,
        Self::Q3_K,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
        Self::Q8_K,
        Self::IQ2_XXS,
        Self::IQ2_XS,
        Self::IQ3_XXS,
        Self::IQ1_S,
        Self::IQ4_NL,
        Self::IQ3_S,
        Self::IQ2_S,
        Self::IQ4_XS,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::F64,
        Self::IQ1_M,
        Self::BF16,
        Self::TQ1_0,
        Self::TQ2_0,
        Self::MXFP4,
    ];

    /// The `ggml_type` number used in GGUF files.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
        }
    }

    /// The type for a `ggml_type` number; `None` for numbers that are unused or unknown.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Self::ALL.iter().copied().find(|t| t.id() == id)
    }

    /// The ggml name (`Q4_K`, `F32`, ...), as llama.cpp and gguf-py print it.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
        }
    }

    /// The type for a ggml name, ignoring case (`q4_k` finds `Q4_K`); `None` when unknown.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Elements per block (1 for plain types).
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | I8 | I16 | I32 | I64 | F64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            _ => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 => 4,
            F16 | BF16 => 2,
            I8 => 1,
            I16 => 2,
            I32 => 4,
            I64 | F64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
            IQ2_XXS => 66,
            IQ2_XS => 74,
            IQ3_XXS => 98,
            IQ1_S => 50,
            IQ4_NL => 18,
            IQ3_S => 110,
            IQ2_S => 82,
            IQ4_XS => 136,
            IQ1_M => 56,
            TQ1_0 => 54,
            TQ2_0 => 66,
            MXFP4 => 17,
        }
    }

    /// Bytes taken by `n_elements` elements, or `None` when `n_elements` is not a whole number
    /// of blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.type_size() as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
        assert_eq!(GgmlType::from_id(4), None, "4 was Q4_2, removed from ggml");
    }

    #[test]
    fn sizes_of_common_types() {
        assert_eq!(GgmlType::Q4_K.bytes_for(256), Some(144));
        assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
        assert_eq!(GgmlType::Q8_0.bytes_for(63), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }
}
