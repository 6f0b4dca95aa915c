//! Portable dot products of one packed weight row with one quantized activation row: the
//! reference the SIMD kernels are tested against, and what runs where no SIMD path exists.
//! Block layouts are ggml's (see `crate::quant`); integer sums first, one float multiply per
//! block, as llama.cpp does, so rounding matches its CPU backend closely.

// Index loops mirror the block layouts (element j and j + 16 share a byte), so keep them.
#![allow(clippy::needless_range_loop)]

use super::{f16_at, ActBlockQ8K, BlockQ8};

/// Q4_0 (18 B: f16 d, 16 B of nibbles; value = d·(q − 8)) · Q8_0.
pub fn dot_q4_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut sum = 0.0f32;
    for (b, y) in w.chunks_exact(18).zip(a) {
        let qs = &b[2..18];
        let mut si = 0i32;
        for j in 0..16 {
            si += ((qs[j] & 15) as i32 - 8) * y.qs[j] as i32;
            si += ((qs[j] >> 4) as i32 - 8) * y.qs[j + 16] as i32;
        }
        sum += si as f32 * (f16_at(b, 0) * y.d);
    }
    sum
}

/// Q4_1 (20 B: f16 d, f16 m, nibbles; value = d·q + m) · Q8_1 (`s` = d_y·Σq_y).
pub fn dot_q4_1(w: &[u8], a: &[BlockQ8]) -> f32 {
    // The minimum terms are summed apart from the scaled integer sums, in llama.cpp's order:
    // with outlier activations they are large and cancel, so the order shows in the result.
    let (mut sum, mut mins) = (0.0f32, 0.0f32);
    for (b, y) in w.chunks_exact(20).zip(a) {
        let qs = &b[4..20];
        let mut si = 0i32;
        for j in 0..16 {
            si += (qs[j] & 15) as i32 * y.qs[j] as i32;
            si += (qs[j] >> 4) as i32 * y.qs[j + 16] as i32;
        }
        sum += si as f32 * (f16_at(b, 0) * y.d);
        mins += f16_at(b, 2) * y.s;
    }
    sum + mins
}

/// Q5_0 (22 B: f16 d, u32 high bits, nibbles; value = d·(q − 16)) · Q8_0.
pub fn dot_q5_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut sum = 0.0f32;
    for (b, y) in w.chunks_exact(22).zip(a) {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        let mut si = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            si += (((qs[j] & 15) as u32 | h0) as i32 - 16) * y.qs[j] as i32;
            si += (((qs[j] >> 4) as u32 | h1) as i32 - 16) * y.qs[j + 16] as i32;
        }
        sum += si as f32 * (f16_at(b, 0) * y.d);
    }
    sum
}

/// Q5_1 (24 B: f16 d, f16 m, u32 high bits, nibbles; value = d·q + m) · Q8_1.
pub fn dot_q5_1(w: &[u8], a: &[BlockQ8]) -> f32 {
    // The minimum terms are summed apart from the scaled integer sums, in llama.cpp's order:
    // with outlier activations they are large and cancel, so the order shows in the result.
    let (mut sum, mut mins) = (0.0f32, 0.0f32);
    for (b, y) in w.chunks_exact(24).zip(a) {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let qs = &b[8..24];
        let mut si = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            si += ((qs[j] & 15) as u32 | h0) as i32 * y.qs[j] as i32;
            si += ((qs[j] >> 4) as u32 | h1) as i32 * y.qs[j + 16] as i32;
        }
        sum += si as f32 * (f16_at(b, 0) * y.d);
        mins += f16_at(b, 2) * y.s;
    }
    sum + mins
}

/// Q8_0 (34 B: f16 d, 32 × i8) · Q8_0.
pub fn dot_q8_0(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut sum = 0.0f32;
    for (b, y) in w.chunks_exact(34).zip(a) {
        let mut si = 0i32;
        for j in 0..32 {
            si += b[2 + j] as i8 as i32 * y.qs[j] as i32;
        }
        sum += si as f32 * (f16_at(b, 0) * y.d);
    }
    sum
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (12 packed bytes).
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Σ over sub-blocks of 32 of min·(Σ activations), from the Q8_K group-of-16 sums.
#[inline]
fn mins_dot(scales: &[u8], y: &ActBlockQ8K) -> i32 {
    (0..8)
        .map(|j| {
            scale_min_k4(j, scales).1 as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32)
        })
        .sum()
}

/// Q4_K (144 B: f16 d, f16 dmin, 12 B scales, 128 B nibbles; value = d·sc·q − dmin·m) · Q8_K.
pub fn dot_q4_k(w: &[u8], a: &[ActBlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, y) in w.chunks_exact(144).zip(a) {
        let scales = &b[4..16];
        let qs = &b[16..144];
        let mut si = 0i32;
        for c in 0..4 {
            let (sc0, _) = scale_min_k4(2 * c, scales);
            let (sc1, _) = scale_min_k4(2 * c + 1, scales);
            let (mut s0, mut s1) = (0i32, 0i32);
            for l in 0..32 {
                let q = qs[32 * c + l];
                s0 += (q & 15) as i32 * y.qs[64 * c + l] as i32;
                s1 += (q >> 4) as i32 * y.qs[64 * c + 32 + l] as i32;
            }
            si += s0 * sc0 as i32 + s1 * sc1 as i32;
        }
        let d = f16_at(b, 0) * y.d;
        let dmin = f16_at(b, 2) * y.d;
        sum += d * si as f32 - dmin * mins_dot(scales, y) as f32;
    }
    sum
}

/// Q5_K (176 B: f16 d, f16 dmin, 12 B scales, 32 B high bits, 128 B nibbles) · Q8_K.
pub fn dot_q5_k(w: &[u8], a: &[ActBlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, y) in w.chunks_exact(176).zip(a) {
        let scales = &b[4..16];
        let qh = &b[16..48];
        let qs = &b[48..176];
        let mut si = 0i32;
        for c in 0..4 {
            let (sc0, _) = scale_min_k4(2 * c, scales);
            let (sc1, _) = scale_min_k4(2 * c + 1, scales);
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let (mut s0, mut s1) = (0i32, 0i32);
            for l in 0..32 {
                let q = qs[32 * c + l];
                let h0 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h1 = if qh[l] & u2 != 0 { 16 } else { 0 };
                s0 += ((q & 15) as i32 + h0) * y.qs[64 * c + l] as i32;
                s1 += ((q >> 4) as i32 + h1) * y.qs[64 * c + 32 + l] as i32;
            }
            si += s0 * sc0 as i32 + s1 * sc1 as i32;
        }
        let d = f16_at(b, 0) * y.d;
        let dmin = f16_at(b, 2) * y.d;
        sum += d * si as f32 - dmin * mins_dot(scales, y) as f32;
    }
    sum
}

/// The 6-bit value of element `l + 32·k` (k = 0..4) within one 128-element half of a Q6_K
/// block, before subtracting 32.
#[inline]
fn q6(ql: &[u8], qh: &[u8], l: usize, k: usize) -> i32 {
    let lo = match k {
        0 => ql[l] & 15,
        1 => ql[l + 32] & 15,
        2 => ql[l] >> 4,
        _ => ql[l + 32] >> 4,
    };
    let hi = (qh[l] >> (2 * k)) & 3;
    (lo | (hi << 4)) as i32
}

/// Q6_K (210 B: 128 B low nibbles, 64 B high 2 bits, 16 × i8 scales, f16 d;
/// value = d·sc·(q − 32)) · Q8_K.
pub fn dot_q6_k(w: &[u8], a: &[ActBlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, y) in w.chunks_exact(210).zip(a) {
        let sc = &b[192..208];
        let mut si = 0i32;
        for half in 0..2 {
            let ql = &b[64 * half..64 * half + 64];
            let qh = &b[128 + 32 * half..128 + 32 * half + 32];
            for k in 0..4 {
                // Elements 128·half + 32·k + l; scale index 8·half + 2·k + l/16.
                for g in 0..2 {
                    let mut s = 0i32;
                    for l in 16 * g..16 * g + 16 {
                        s += (q6(ql, qh, l, k) - 32) * y.qs[128 * half + 32 * k + l] as i32;
                    }
                    si += s * sc[8 * half + 2 * k + g] as i8 as i32;
                }
            }
        }
        sum += f16_at(b, 208) * y.d * si as f32;
    }
    sum
}

/// F32 weights · f32 activations.
pub fn dot_f32(w: &[u8], a: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (wc, ac) = (w.chunks_exact(32), a.chunks_exact(8));
    let (wr, ar) = (wc.remainder(), ac.remainder());
    for (wb, ab) in wc.zip(ac) {
        for i in 0..8 {
            let x = f32::from_le_bytes([wb[4 * i], wb[4 * i + 1], wb[4 * i + 2], wb[4 * i + 3]]);
            acc[i] += x * ab[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (wb, x) in wr.chunks_exact(4).zip(ar) {
        sum += f32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]]) * x;
    }
    sum
}

/// F16 weights · f32 activations.
pub fn dot_f16(w: &[u8], a: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (wc, ac) = (w.chunks_exact(16), a.chunks_exact(8));
    let (wr, ar) = (wc.remainder(), ac.remainder());
    for (wb, ab) in wc.zip(ac) {
        for i in 0..8 {
            acc[i] += f16_at(wb, 2 * i) * ab[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (wb, x) in wr.chunks_exact(2).zip(ar) {
        sum += f16_at(wb, 0) * x;
    }
    sum
}

/// BF16 weights · f32 activations.
pub fn dot_bf16(w: &[u8], a: &[f32]) -> f32 {
    w.chunks_exact(2)
        .zip(a)
        .map(|(b, x)| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) * x)
        .sum()
}

/// Any type `crate::quant` can dequantize (Q2_K, Q3_K: no integer kernel yet) · f32
/// activations, one block at a time through a stack buffer. Correct but slow.
fn dot_via_dequant(ty: crate::quant::GgmlType, w: &[u8], a: &[f32]) -> f32 {
    let bs = ty.block_size();
    let mut tmp = [0.0f32; 256];
    let mut sum = 0.0f32;
    for (b, x) in w.chunks_exact(ty.type_size()).zip(a.chunks_exact(bs)) {
        if crate::quant::dequantize(ty, b, &mut tmp[..bs]).is_err() {
            return f32::NAN;
        }
        sum += tmp[..bs].iter().zip(x).map(|(p, q)| p * q).sum::<f32>();
    }
    sum
}

pub fn dot_q2_k_f32(w: &[u8], a: &[f32]) -> f32 {
    dot_via_dequant(crate::quant::GgmlType::Q2_K, w, a)
}
pub fn dot_q3_k_f32(w: &[u8], a: &[f32]) -> f32 {
    dot_via_dequant(crate::quant::GgmlType::Q3_K, w, a)
}
