//! The on-disk block layouts of the quantized ggml types, as `#[repr(C)]` structs whose sizes are
//! checked at compile time. The CPU engine's fused kernels read these structs and the Vulkan
//! shaders mirror them field for field, so a layout change here must be made there too.
//!
//! Half-precision fields hold the raw little-endian f16 bits (`u16`); read them with
//! [`f16_to_f32`] (or the `d()`-style accessors), which is bit-exact with numpy and gguf-py.
//! Every bit pattern is a valid value of every struct here, and none has padding, which is what
//! makes [`read_block`] sound.

use super::{GgmlType, QK_K};
use std::mem::{align_of, size_of};

/// Elements in one block of the 32-element ("legacy") quant types.
pub const QK: usize = 32;

/// Converts the bits of an IEEE half to f32 exactly, the way numpy's `astype(np.float32)` does:
/// subnormals become normal f32s and NaN payloads are kept (a signalling NaN stays signalling,
/// unlike the F16C/FCVT instructions, which quiet it). Written out rather than taken from `half`,
/// which may use those instructions, so results are the same on x86 and on the Pi.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exp = u32::from(bits >> 10) & 0x1f;
    let man = u32::from(bits & 0x03ff);
    let out = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24. Normalise: shift the mantissa until its leading one
            // reaches bit 10, lowering the exponent by one per shift.
            let shift = man.leading_zeros() - 21; // 1..=10
            let man = (man << shift) & 0x03ff;
            let exp = 127 - 15 + 1 - shift;
            sign | (exp << 23) | (man << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(out)
}

/// Reads a little-endian f16 field.
#[inline]
fn half(bits: u16) -> f32 {
    f16_to_f32(u16::from_le(bits))
}

/// A quant block: a plain-old-data struct with the exact on-disk layout of one block of
/// [`Block::TYPE`].
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only integer fields and arrays of them (so every
/// bit pattern is valid), have no padding (`size_of` equals the on-disk block size) and an
/// alignment of at most 4.
pub unsafe trait Block: Copy + 'static {
    /// The ggml type this block belongs to.
    const TYPE: GgmlType;
    /// Elements a block decodes to.
    const ELEMENTS: usize;
}

/// Declares a block struct's trait impl and checks its size and alignment at compile time.
macro_rules! block {
    ($name:ident, $ty:expr, $elements:expr, $size:expr) => {
        const _: () = assert!(size_of::<$name>() == $size);
        const _: () = assert!(align_of::<$name>() <= 4);
        // SAFETY: the struct is #[repr(C)], holds only integers and integer arrays, and the
        // assert above proves it has no padding.
        unsafe impl Block for $name {
            const TYPE: GgmlType = $ty;
            const ELEMENTS: usize = $elements;
        }
    };
}

/// `Q4_0`: 32 weights `d * (q - 8)` with 4-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// Scale (f16 bits).
    pub d: u16,
    /// Low nibbles are elements 0..16, high nibbles 16..32.
    pub qs: [u8; QK / 2],
}
block!(BlockQ4_0, GgmlType::Q4_0, QK, 18);

/// `Q4_1`: 32 weights `d * q + m` with 4-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_1 {
    pub d: u16,
    /// The block minimum (f16 bits).
    pub m: u16,
    pub qs: [u8; QK / 2],
}
block!(BlockQ4_1, GgmlType::Q4_1, QK, 20);

/// `Q5_0`: 32 weights `d * (q - 16)`, `q` = 4 low bits from `qs` and the 5th bit from `qh`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5_0 {
    pub d: u16,
    /// Fifth bits, a little-endian u32: bit `i` belongs to element `i`.
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
block!(BlockQ5_0, GgmlType::Q5_0, QK, 22);

/// `Q5_1`: 32 weights `d * q + m` with 5-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5_1 {
    pub d: u16,
    pub m: u16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
block!(BlockQ5_1, GgmlType::Q5_1, QK, 24);

/// `Q8_0`: 32 weights `d * q` with signed 8-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ8_0 {
    pub d: u16,
    pub qs: [i8; QK],
}
block!(BlockQ8_0, GgmlType::Q8_0, QK, 34);

/// `Q2_K`: 256 weights in 16 groups of 16; group `j` is `d*(scales[j]&15) * q - dmin*(scales[j]>>4)`
/// with 2-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ2K {
    /// Low nibble: group scale; high nibble: group minimum.
    pub scales: [u8; QK_K / 16],
    /// Element `128*h + 32*s + l` is bits `2s..2s+2` of `qs[32*h + l]`.
    pub qs: [u8; QK_K / 4],
    pub d: u16,
    pub dmin: u16,
}
block!(BlockQ2K, GgmlType::Q2_K, QK_K, 84);

/// `Q3_K`: 256 weights in 16 groups of 16; `d * (scale - 32) * (q - 4*(1 - hbit))` with 2-bit `q`
/// and 6-bit scales.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ3K {
    /// Element `128*h + 32*s + l` takes bit `4h + s` of `hmask[l]`; a set bit means no offset.
    pub hmask: [u8; QK_K / 8],
    /// Low two bits, laid out as in Q2_K.
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales: low nibbles in bytes 0..8, top two bits in bytes 8..12.
    pub scales: [u8; 12],
    pub d: u16,
}
block!(BlockQ3K, GgmlType::Q3_K, QK_K, 110);

/// `Q4_K`: 256 weights in 8 groups of 32; `d*sc * q - dmin*m` with 4-bit `q` and 6-bit `sc`/`m`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4K {
    pub d: u16,
    pub dmin: u16,
    /// Eight 6-bit scales and eight 6-bit minimums, packed (see [`k_scale_min`]).
    pub scales: [u8; 12],
    /// Group `2c` is the low nibbles of `qs[32c..32c+32]`, group `2c+1` the high nibbles.
    pub qs: [u8; QK_K / 2],
}
block!(BlockQ4K, GgmlType::Q4_K, QK_K, 144);

/// `Q5_K`: as Q4_K with a fifth bit per weight.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    /// Element `32j + l` takes bit `j` of `qh[l]` as its fifth bit.
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
block!(BlockQ5K, GgmlType::Q5_K, QK_K, 176);

/// `Q6_K`: 256 weights in 16 groups of 16; `d * scales[j] * (q - 32)` with 6-bit `q`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ6K {
    /// Low 4 bits: element `128h + 64n + l` is nibble `n` of `ql[64h + l]`.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits: element `128h + 32s + l` is bits `2s..2s+2` of `qh[32h + l]`.
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: u16,
}
block!(BlockQ6K, GgmlType::Q6_K, QK_K, 210);

/// `Q8_K`: 256 weights `d * q`; llama.cpp quantizes activations to it for k-quant dot products.
/// `bsums` (sums of each 16 `q`s) are not needed to dequantize.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    /// Scale, a little-endian f32 (not f16).
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}
// f32 is not an integer, but every f32 bit pattern is a valid f32, so the Block contract holds.
block!(BlockQ8K, GgmlType::Q8_K, QK_K, 292);

impl BlockQ4_0 {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
}
impl BlockQ4_1 {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
    pub fn m(&self) -> f32 {
        half(self.m)
    }
}
impl BlockQ5_0 {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
    /// The fifth bits as one u32.
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}
impl BlockQ5_1 {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
    pub fn m(&self) -> f32 {
        half(self.m)
    }
    pub fn qh(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}
impl BlockQ8_0 {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
}
impl BlockQ2K {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
    pub fn dmin(&self) -> f32 {
        half(self.dmin)
    }
}
impl BlockQ3K {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
    /// The sixteen signed scales, `-32..32`.
    pub fn scales(&self) -> [i8; 16] {
        let s = &self.scales;
        std::array::from_fn(|i| {
            let low = (s[i % 8] >> (4 * (i / 8))) & 0x0f;
            let high = (s[8 + i % 4] >> (2 * (i / 4))) & 0x03;
            (low | (high << 4)) as i8 - 32
        })
    }
}
impl BlockQ4K {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
    pub fn dmin(&self) -> f32 {
        half(self.dmin)
    }
}
impl BlockQ5K {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
    pub fn dmin(&self) -> f32 {
        half(self.dmin)
    }
}
impl BlockQ6K {
    pub fn d(&self) -> f32 {
        half(self.d)
    }
}
impl BlockQ8K {
    pub fn d(&self) -> f32 {
        f32::from_bits(u32::from_le(self.d.to_bits()))
    }
}

/// Unpacks the eight 6-bit (scale, min) pairs of a Q4_K/Q5_K block. Bytes 0..4 hold scales 0..4
/// in their low six bits, bytes 4..8 mins 0..4; the top two bits of those bytes and the nibbles
/// of bytes 8..12 make up scales and mins 4..8.
pub fn k_scale_min(scales: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = scales[j] & 0x3f;
        mn[j] = scales[j + 4] & 0x3f;
        sc[j + 4] = (scales[j + 8] & 0x0f) | ((scales[j] >> 2) & 0x30);
        mn[j + 4] = (scales[j + 8] >> 4) | ((scales[j + 4] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Copies one block out of `bytes` (which must be exactly one block long), at any alignment.
///
/// # Panics
/// When `bytes.len()` is not the block size; callers slice with `chunks_exact`.
#[inline]
pub fn read_block<B: Block>(bytes: &[u8]) -> B {
    assert_eq!(bytes.len(), size_of::<B>(), "read_block: wrong length");
    // SAFETY: `bytes` holds exactly size_of::<B>() readable bytes; read_unaligned has no
    // alignment requirement; every bit pattern is a valid B (Block contract).
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<B>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_the_type_table() {
        fn check<B: Block>() {
            assert_eq!(size_of::<B>(), B::TYPE.type_size(), "{}", B::TYPE);
            assert_eq!(B::ELEMENTS, B::TYPE.block_size(), "{}", B::TYPE);
        }
        check::<BlockQ4_0>();
        check::<BlockQ4_1>();
        check::<BlockQ5_0>();
        check::<BlockQ5_1>();
        check::<BlockQ8_0>();
        check::<BlockQ2K>();
        check::<BlockQ3K>();
        check::<BlockQ4K>();
        check::<BlockQ5K>();
        check::<BlockQ6K>();
        check::<BlockQ8K>();
    }

    #[test]
    fn f16_conversion_is_exact_for_every_bit_pattern() {
        // Every finite f16 is exactly representable in f64; compare against a formula.
        for bits in 0..=u16::MAX {
            let got = f16_to_f32(bits);
            let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
            let exp = i32::from((bits >> 10) & 0x1f);
            let man = f64::from(bits & 0x3ff);
            match exp {
                0x1f if man == 0.0 => assert_eq!(got, sign as f32 * f32::INFINITY),
                0x1f => {
                    assert!(got.is_nan());
                    // The payload is kept bit for bit (no quieting).
                    assert_eq!(got.to_bits() & 0x007f_ffff, u32::from(bits & 0x3ff) << 13);
                }
                0 => assert_eq!(f64::from(got), sign * man * 2f64.powi(-24), "{bits:#06x}"),
                e => assert_eq!(
                    f64::from(got),
                    sign * (1.0 + man / 1024.0) * 2f64.powi(e - 15),
                    "{bits:#06x}"
                ),
            }
            if bits & 0x8000 != 0 {
                assert!(got.is_sign_negative());
            }
        }
    }

    #[test]
    fn q3k_scales_unpack() {
        let mut b = BlockQ3K {
            hmask: [0; 32],
            qs: [0; 64],
            scales: [0; 12],
            d: 0,
        };
        // Scale 5: low nibble in byte 5, high bits in byte 8+1 at shift 2*(5/4)=2.
        b.scales[5] = 0x0a;
        b.scales[9] = 0b11 << 2;
        // Scale 13: low nibble is the high nibble of byte 5, high bits of byte 9 at shift 6.
        b.scales[5] |= 0x30;
        b.scales[9] |= 0b01 << 6;
        let s = b.scales();
        assert_eq!(s[5], (0x0a | (0b11 << 4)) - 32);
        assert_eq!(s[13], (0x03 | (0b01 << 4)) - 32);
        assert_eq!(s[0], -32);
    }

    #[test]
    fn k_scales_unpack() {
        let mut s = [0u8; 12];
        s[2] = 0b10_000111; // scale 2 = 7, top bits 0b10 go to scale 6
        s[6] = 0b01_111111; // min 2 = 63, top bits 0b01 go to min 6
        s[10] = 0x5a; // scale 6 low nibble 0xa, min 6 low nibble 0x5
        let (sc, mn) = k_scale_min(&s);
        assert_eq!(sc[2], 7);
        assert_eq!(mn[2], 63);
        assert_eq!(sc[6], 0xa | 0x20);
        assert_eq!(mn[6], 0x5 | 0x10);
    }

    #[test]
    fn read_block_takes_any_alignment() {
        // Starting at an odd address: the f16 scale `d` is the first two bytes, little-endian.
        let mut bytes = [0u8; 21];
        bytes[1] = 0x34;
        bytes[2] = 0x12;
        let b: BlockQ4_1 = read_block(&bytes[1..21]);
        assert_eq!(b.d, 0x1234);
    }
}
