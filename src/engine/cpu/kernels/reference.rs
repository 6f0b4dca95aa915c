//! Exact-activation dot products (`Isa::Reference`): each weight block is dequantized with
//! `crate::quant` (the project's gguf-py-exact dequantizers) and dotted with the f32 activations,
//! which are never quantized. Slower than the 8-bit kernels and not what llama.cpp computes, but
//! it is what a GPU engine with f32 activations computes, so it is the oracle other engines are
//! tested against.
//!
//! Within a block the sum runs in eight f32 lanes (so it vectorizes); blocks are summed in f64,
//! which keeps a long row's rounding error far below the differences between engines.

use crate::quant::{
    block_q2_k, block_q3_k, block_q4_0, block_q4_1, block_q4_k, block_q5_0, block_q5_1, block_q5_k,
    block_q6_k, block_q8_0, f16_to_f32, read_block, Block, GgmlType,
};

use super::DotF32;

/// The reference kernel for weights of `ty`, or `None` if the CPU engine does not support it.
pub fn kernel(ty: GgmlType) -> Option<DotF32> {
    use GgmlType as T;
    Some(match ty {
        T::F32 => dot_f32,
        T::F16 => dot_f16,
        T::BF16 => dot_bf16,
        T::Q4_0 => |w, x| dot_blocks(w, x, block_q4_0),
        T::Q4_1 => |w, x| dot_blocks(w, x, block_q4_1),
        T::Q5_0 => |w, x| dot_blocks(w, x, block_q5_0),
        T::Q5_1 => |w, x| dot_blocks(w, x, block_q5_1),
        T::Q8_0 => |w, x| dot_blocks(w, x, block_q8_0),
        T::Q2_K => |w, x| dot_blocks(w, x, block_q2_k),
        T::Q3_K => |w, x| dot_blocks(w, x, block_q3_k),
        T::Q4_K => |w, x| dot_blocks(w, x, block_q4_k),
        T::Q5_K => |w, x| dot_blocks(w, x, block_q5_k),
        T::Q6_K => |w, x| dot_blocks(w, x, block_q6_k),
        _ => return None,
    })
}

/// The dot product of `w` and `x` (equal lengths, a multiple of 8 or not): eight f32 lanes,
/// summed in f64 at the end.
#[inline(always)]
fn dot_lanes(w: &[f32], x: &[f32]) -> f64 {
    let mut acc = [0f32; 8];
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let tail: f32 = wc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in wc.zip(xc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
}

/// Dequantizes `row` block by block with `f` and dots each block with its slice of `x`.
#[inline(always)]
fn dot_blocks<B: Block, const N: usize>(row: &[u8], x: &[f32], f: fn(&B, &mut [f32; N])) -> f32 {
    let mut buf = [0f32; N];
    let mut sum = 0f64;
    for (bytes, xb) in row
        .chunks_exact(std::mem::size_of::<B>())
        .zip(x.chunks_exact(N))
    {
        f(&read_block::<B>(bytes), &mut buf);
        sum += dot_lanes(&buf, xb);
    }
    sum as f32
}

/// Converts `row` 32 elements at a time with `conv` (bytes of one element → f32) and dots them.
#[inline(always)]
fn dot_plain<const S: usize>(row: &[u8], x: &[f32], conv: fn(&[u8]) -> f32) -> f32 {
    let mut buf = [0f32; 32];
    let mut sum = 0f64;
    for (bytes, xb) in row.chunks(32 * S).zip(x.chunks(32)) {
        let n = xb.len();
        for (o, b) in buf[..n].iter_mut().zip(bytes.chunks_exact(S)) {
            *o = conv(b);
        }
        sum += dot_lanes(&buf[..n], xb);
    }
    sum as f32
}

fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    dot_plain::<4>(row, x, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    dot_plain::<2>(row, x, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
}

fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    dot_plain::<2>(row, x, |b| {
        f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
    })
}
