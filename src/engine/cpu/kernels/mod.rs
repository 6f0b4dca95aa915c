//! The CPU engine's compute kernels: activations quantized to 8 bits the way llama.cpp does it
//! (Q8_0 / Q8_1 blocks of 32, Q8_K blocks of 256), and dot products of packed weight rows with
//! them, in a portable version and SIMD versions (AVX2 on x86-64, NEON + dot-product on aarch64)
//! chosen once at run time. Weights are never dequantized as a whole: each kernel reads the
//! packed blocks straight from the memory map.

/// A SIMD module's lookups `dot(ty)` and `tile(ty)`, over the kernels it defines under fixed
/// names: one-row `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0` (Q8 activations) and `q4_k`, `q6_k`
/// (Q8_K); tiles `tile_q4_0` … `tile_q8_0`, and the k-quant tiles it lists. Every instruction
/// set covers these types with the same activation formats, so the table is written once.
macro_rules! simd_lookup {
    (k_tiles: [$($kt:ident => $tf:ident),* $(,)?]) => {
        /// This instruction set's one-row kernel for `ty`, if it has one.
        pub fn dot(ty: GgmlType) -> Option<Dot> {
            Some(match ty {
                GgmlType::Q4_0 => Dot::Q8(q4_0),
                GgmlType::Q4_1 => Dot::Q8(q4_1),
                GgmlType::Q5_0 => Dot::Q8(q5_0),
                GgmlType::Q5_1 => Dot::Q8(q5_1),
                GgmlType::Q8_0 => Dot::Q8(q8_0),
                GgmlType::Q4_K => Dot::Q8K(q4_k),
                GgmlType::Q6_K => Dot::Q8K(q6_k),
                _ => return None,
            })
        }

        /// This instruction set's tile kernel for `ty`, if it has one.
        pub fn tile(ty: GgmlType) -> Option<Tile> {
            Some(match ty {
                GgmlType::Q4_0 => Tile::Q8(tile_q4_0),
                GgmlType::Q4_1 => Tile::Q8(tile_q4_1),
                GgmlType::Q5_0 => Tile::Q8(tile_q5_0),
                GgmlType::Q5_1 => Tile::Q8(tile_q5_1),
                GgmlType::Q8_0 => Tile::Q8(tile_q8_0),
                $(GgmlType::$kt => Tile::Q8K($tf),)*
                _ => return None,
            })
        }
    };
}

pub(crate) mod portable;
pub(crate) mod reference;

/// The 32-element weight formats against Q8_0/Q8_1 activations, as the const generic `T` of
/// the SIMD modules' block decoder `decode32`, one-row kernels and tiles.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod fmt32 {
    pub const Q4_0: u8 = 0;
    pub const Q4_1: u8 = 1;
    pub const Q5_0: u8 = 2;
    pub const Q5_1: u8 = 3;
    pub const Q8_0: u8 = 4;

    /// Bytes per block of format `t`.
    pub const fn block_bytes(t: u8) -> usize {
        match t {
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            _ => 34,
        }
    }

    /// Whether format `t` stores unsigned quants plus a minimum (`d·q + m`); the others store
    /// signed quants (`d·q`).
    pub const fn has_min(t: u8) -> bool {
        matches!(t, Q4_1 | Q5_1)
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

use crate::quant::GgmlType;

/// A block of 32 activations quantized to i8: `x ≈ d·q`. For Q8_1 also `s = d·Σq` (the
/// correction term for weight formats with a minimum). `d` and `s` hold values already rounded
/// to f16, as llama.cpp stores them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(8))]
pub struct BlockQ8 {
    /// Scale: `x ≈ d·q`.
    pub d: f32,
    /// `d·Σq` (Q8_1 only; 0 for Q8_0).
    pub s: f32,
    /// The quantized activations.
    pub qs: [i8; 32],
}

/// A block of 256 activations quantized to i8 with an f32 scale and sums of each group of 16
/// (llama.cpp's `block_q8_K`), the partner of the k-quants.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(8))]
pub struct ActBlockQ8K {
    /// Scale: `x ≈ d·q`.
    pub d: f32,
    /// The quantized activations.
    pub qs: [i8; 256],
    /// Sum of `qs` over each group of 16.
    pub bsums: [i16; 16],
}

impl Default for BlockQ8 {
    fn default() -> Self {
        BlockQ8 {
            d: 0.0,
            s: 0.0,
            qs: [0; 32],
        }
    }
}
impl Default for ActBlockQ8K {
    fn default() -> Self {
        ActBlockQ8K {
            d: 0.0,
            qs: [0; 256],
            bsums: [0; 16],
        }
    }
}

#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

#[inline]
fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Quantizes `x` (a multiple of 32 long) to Q8_0 (`with_sum = false`) or Q8_1 blocks:
/// `d = max|x| / 127`, `q = round_half_even(x · 127 / max|x|)` — llama.cpp's x86 and ARM paths.
pub fn quantize_q8(x: &[f32], out: &mut [BlockQ8], with_sum: bool) {
    assert_eq!(x.len(), 32 * out.len(), "quantize_q8: input length");
    #[cfg(target_arch = "x86_64")]
    if have_avx2() {
        // SAFETY: AVX2/FMA/F16C detected; lengths checked above. Same results as below.
        unsafe { avx2::quantize_q8(x, out, with_sum) };
        return;
    }
    quantize_q8_portable(x, out, with_sum);
}

/// Whether this CPU has the features of `Isa::Avx2` (detected once).
#[cfg(target_arch = "x86_64")]
fn have_avx2() -> bool {
    static HAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAVE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    })
}

/// The portable form of [`quantize_q8`] (the definition the SIMD form must match exactly).
pub fn quantize_q8_portable(x: &[f32], out: &mut [BlockQ8], with_sum: bool) {
    for (xb, y) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in y.qs.iter_mut().zip(xb) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        y.d = round_f16(d);
        y.s = if with_sum {
            round_f16(d * sum as f32)
        } else {
            0.0
        };
    }
}

/// Quantizes `x` (a multiple of 256 long) to Q8_K blocks as llama.cpp does: the scale comes from
/// the element of largest magnitude *with its sign* (`iscale = −127 / max`), values clamp at 127.
pub fn quantize_q8k(x: &[f32], out: &mut [ActBlockQ8K]) {
    assert_eq!(x.len(), 256 * out.len(), "quantize_q8k: input length");
    #[cfg(target_arch = "x86_64")]
    if have_avx2() {
        // SAFETY: AVX2/FMA/F16C detected; lengths checked above. Same results as below.
        unsafe { avx2::quantize_q8k(x, out) };
        return;
    }
    quantize_q8k_portable(x, out);
}

/// The portable form of [`quantize_q8k`] (the definition the SIMD form must match exactly).
pub fn quantize_q8k_portable(x: &[f32], out: &mut [ActBlockQ8K]) {
    for (xb, y) in x.chunks_exact(256).zip(out.iter_mut()) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *y = ActBlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in y.qs.iter_mut().zip(xb) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (g, s) in y.bsums.iter_mut().enumerate() {
            *s = y.qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
        }
        y.d = 1.0 / iscale;
    }
}

/// Which instruction set the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, no SIMD: runs everywhere, the baseline the others are tested against.
    Portable,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// The AVX2 kernels built with AVX-VNNI's `vpdpbusd` (Intel Alder Lake / Sapphire Rapids,
    /// AMD Zen 4 and later); results identical to `Avx2`.
    Avx2Vnni,
    /// aarch64 NEON with the dot-product extension (`sdot`, Cortex-A76 and later).
    NeonDot,
    /// f32 activations, weights dequantized block by block (`reference.rs`): no 8-bit
    /// activations, so not llama.cpp's arithmetic but the exact computation's up to f32
    /// rounding — the oracle for testing other engines (the Vulkan engine computes this way).
    /// Used only when asked for (`Isa::requested("reference")`, `CpuOptions::isa`).
    Reference,
}

impl Isa {
    /// The instruction set `PIGPU_CPU_ISA` asks for (resolved by the command layer into
    /// `CpuOptions::isa`): `portable`, `avx2` (AVX2 without VNNI, where the CPU has AVX2) or
    /// `reference`; to compare results or speed. An error says what was expected.
    pub fn requested(name: &str) -> Result<Isa, String> {
        match name.trim() {
            "portable" => Ok(Isa::Portable),
            "reference" => Ok(Isa::Reference),
            "avx2" if matches!(Isa::detect(), Isa::Avx2 | Isa::Avx2Vnni) => Ok(Isa::Avx2),
            "avx2" => Err("avx2, which this CPU lacks (AVX2, FMA and F16C are needed)".into()),
            other => Err(format!("'{other}': expected portable, avx2 or reference")),
        }
    }

    /// The best instruction set this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                if std::arch::is_x86_feature_detected!("avxvnni") {
                    return Isa::Avx2Vnni;
                }
                return Isa::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                return Isa::NeonDot;
            }
        }
        Isa::Portable
    }
    /// The name `PIGPU_CPU_ISA` and `describe()` use (`avx2+vnni`, `neon+dotprod`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx2Vnni => "avx2+vnni",
            Isa::NeonDot => "neon+dotprod",
            Isa::Reference => "reference",
        }
    }
}

/// The activation format a weight type's kernels take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActFormat {
    /// [`BlockQ8`] blocks of 32, no sum (Q4_0, Q5_0, Q8_0 weights).
    Q8_0,
    /// [`BlockQ8`] blocks of 32 with the scaled sum (Q4_1, Q5_1 weights, which have a minimum).
    Q8_1,
    /// [`ActBlockQ8K`] blocks of 256 (the k-quants).
    Q8K,
    /// Plain f32 (F32, F16, BF16 weights, and the `Reference` kernels).
    F32,
}

impl ActFormat {
    /// Elements per activation block.
    pub fn block(self) -> usize {
        match self {
            ActFormat::Q8_0 | ActFormat::Q8_1 => 32,
            ActFormat::Q8K => 256,
            ActFormat::F32 => 1,
        }
    }
}

/// Dot product of one weight row (raw block bytes) with Q8_0/Q8_1 activations.
pub type DotQ8 = fn(&[u8], &[BlockQ8]) -> f32;
/// Dot product of one weight row (raw block bytes) with Q8_K activations.
pub type DotQ8K = fn(&[u8], &[ActBlockQ8K]) -> f32;
/// Dot product of one weight row (raw bytes) with f32 activations.
pub type DotF32 = fn(&[u8], &[f32]) -> f32;

/// A tile kernel: `out[t · m + r] = W[r] · a[t]` for the weight rows `rows` of the matrix `w`
/// (`row_bytes` per row) and the tokens `0..n` of `a` (each `row_bytes / type_size` blocks).
///
/// # Safety
/// The CPU must have the kernel's instruction set (guaranteed by getting it from [`tile`]),
/// `out` must be valid for writes at every `t · m + r`, and no other thread may access those
/// elements during the call.
pub type TileQ8 =
    unsafe fn(&[u8], usize, std::ops::Range<usize>, &[BlockQ8], usize, *mut f32, usize);
/// As [`TileQ8`], against Q8_K activations.
pub type TileQ8K =
    unsafe fn(&[u8], usize, std::ops::Range<usize>, &[ActBlockQ8K], usize, *mut f32, usize);

/// A matrix kernel that covers many rows and tokens in one call (see [`TileQ8`]).
#[derive(Clone, Copy)]
pub enum Tile {
    /// Against Q8_0/Q8_1 activations.
    Q8(TileQ8),
    /// Against Q8_K activations.
    Q8K(TileQ8K),
}

/// A dot-product kernel for one weight type, by the activation format it takes.
#[derive(Clone, Copy)]
pub enum Dot {
    /// Against Q8_0/Q8_1 activations.
    Q8(DotQ8),
    /// Against Q8_K activations.
    Q8K(DotQ8K),
    /// Against f32 activations.
    F32(DotF32),
}

/// Weight types the CPU engine can multiply with, for error messages.
pub const SUPPORTED: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

/// The activation format and kernel for weights of type `ty` on `isa`; `None` if the type is
/// not supported by the CPU engine.
pub fn kernel(ty: GgmlType, isa: Isa) -> Option<(ActFormat, Dot)> {
    use GgmlType as T;
    if isa == Isa::Reference {
        return reference::kernel(ty).map(|f| (ActFormat::F32, Dot::F32(f)));
    }
    let portable = match ty {
        T::F32 => (ActFormat::F32, Dot::F32(portable::dot_f32)),
        T::F16 => (ActFormat::F32, Dot::F32(portable::dot_f16)),
        T::BF16 => (ActFormat::F32, Dot::F32(portable::dot_bf16)),
        T::Q4_0 => (ActFormat::Q8_0, Dot::Q8(portable::dot_q4_0)),
        T::Q4_1 => (ActFormat::Q8_1, Dot::Q8(portable::dot_q4_1)),
        T::Q5_0 => (ActFormat::Q8_0, Dot::Q8(portable::dot_q5_0)),
        T::Q5_1 => (ActFormat::Q8_1, Dot::Q8(portable::dot_q5_1)),
        T::Q8_0 => (ActFormat::Q8_0, Dot::Q8(portable::dot_q8_0)),
        T::Q4_K => (ActFormat::Q8K, Dot::Q8K(portable::dot_q4_k)),
        T::Q5_K => (ActFormat::Q8K, Dot::Q8K(portable::dot_q5_k)),
        T::Q6_K => (ActFormat::Q8K, Dot::Q8K(portable::dot_q6_k)),
        T::Q2_K => (ActFormat::F32, Dot::F32(portable::dot_q2_k_f32)),
        T::Q3_K => (ActFormat::F32, Dot::F32(portable::dot_q3_k_f32)),
        _ => return None,
    };
    let fast = match isa {
        Isa::Portable => None,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::kernel(ty, false),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Vnni => avx2::kernel(ty, true),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => neon::dot(ty),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    Some((portable.0, fast.unwrap_or(portable.1)))
}

/// The tile kernel for weights of type `ty` on `isa`, where there is one (the matrix product
/// falls back to one dot product per row and token otherwise). Its activation format is the
/// one [`kernel`] names.
pub fn tile(ty: GgmlType, isa: Isa) -> Option<Tile> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::tile(ty, false),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Vnni => avx2::tile(ty, true),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => neon::tile(ty),
        _ => None,
    }
}

/// Dequantizes one row of `ty` (for embedding lookups): `out.len()` elements from `row`,
/// through `crate::quant`, the project's reference dequantization.
pub fn dequantize_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    if crate::quant::dequantize(ty, row, out).is_err() {
        // Types are checked when the engine is built; a NaN row makes any slip visible.
        out.fill(f32::NAN);
    }
}

#[cfg(test)]
mod tests;
