//! NEON kernels for aarch64 with the dot-product extension (`sdot`: Cortex-A76 in the Pi 5 and
//! later), detected at run time before any of these is chosen. Each is tested against the
//! portable kernel on random blocks (`kernels::tests`, run under qemu-aarch64 in CI).

use std::arch::aarch64::*;

use std::ops::Range;

use super::fmt32::{block_bytes, has_min, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use super::{f16_at, ActBlockQ8K, BlockQ8, Dot, Tile};
use crate::engine::cpu::ops::{self, KvKernels};
use crate::quant::GgmlType;

// `dot(ty)` and `tile(ty)`: only called after `Isa::detect` found `dotprod`. No k-quant tiles
// here yet (their one-row kernels serve the matrix product).
simd_lookup!(k_tiles: []);

/// f16 KV-cache helpers: the portable ones (the `half` crate converts with the FP16
/// instructions of the A76 when they are present).
pub fn kv_kernels() -> KvKernels {
    KvKernels {
        dot: ops::dot_f16_portable,
        axpy: ops::axpy_f16_portable,
    }
}

// Safe entry points. SAFETY (all of them): `dot` is only used when `Isa::detect` reported
// NEON with `dotprod` on this CPU, and the inner functions read only inside the slices they are
// given (lengths checked by `chunks_exact`/`zip`).
macro_rules! safe {
    ($name:ident, $inner:expr, $a:ty) => {
        fn $name(w: &[u8], a: &[$a]) -> f32 {
            // SAFETY: see above.
            unsafe { $inner(w, a) }
        }
    };
}
safe!(q4_0, dot_q8::<Q4_0>, BlockQ8);
safe!(q4_1, dot_q8::<Q4_1>, BlockQ8);
safe!(q5_0, dot_q8::<Q5_0>, BlockQ8);
safe!(q5_1, dot_q8::<Q5_1>, BlockQ8);
safe!(q8_0, dot_q8::<Q8_0>, BlockQ8);
safe!(q4_k, q4_k_neon, ActBlockQ8K);
safe!(q6_k, q6_k_neon, ActBlockQ8K);

/// The two 16-byte halves of a Q8 block's quants.
///
/// # Safety
/// NEON available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn act32(q: &[i8; 32]) -> (int8x16_t, int8x16_t) {
    // SAFETY: 32 readable bytes.
    unsafe { (vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))) }
}

/// 16 bytes of nibbles → (low nibbles, high nibbles) as unsigned bytes.
///
/// # Safety
/// `p` points to 16 readable bytes; NEON available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: the caller guarantees 16 readable bytes.
    let v = unsafe { vld1q_u8(p) };
    (vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(v))
}

/// Byte i of the result is 0xFF when bit `i + 16·half` of `bits` is set.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(bits: u32, half: u32) -> uint8x16_t {
    let b0 = (bits >> (16 * half)) as u8;
    let b1 = (bits >> (16 * half + 8)) as u8;
    let v = vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1));
    let mask = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    vtstq_u8(v, mask)
}

/// The 32 quants of a 5-bit block as two halves: the nibbles at `p`, each with `if_set` or-ed
/// in where its fifth bit (bit i of the little-endian `qh`) is set and `if_clear` where not.
///
/// # Safety
/// `p` points to 16 readable bytes; NEON available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn with_fifth_bit(
    qh: &[u8],
    p: *const u8,
    if_set: u8,
    if_clear: u8,
) -> (int8x16_t, int8x16_t) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    // SAFETY: the caller guarantees 16 readable bytes.
    let (lo, hi) = unsafe { nibbles(p) };
    let (set, clear) = (vdupq_n_u8(if_set), vdupq_n_u8(if_clear));
    let f0 = vbslq_u8(fifth_bits(qh, 0), set, clear);
    let f1 = vbslq_u8(fifth_bits(qh, 1), set, clear);
    (
        vreinterpretq_s8_u8(vorrq_u8(lo, f0)),
        vreinterpretq_s8_u8(vorrq_u8(hi, f1)),
    )
}

/// `acc[i] += Σ_{j<4} a[4i + j]·b[4i + j]`: the `sdot` instruction. (`vdotq_s32` is still an
/// unstable intrinsic in Rust, so it is written as inline assembly.)
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` reads and writes only these vector registers; the dot-product extension is
    // enabled for this function and present at run time (checked by `Isa::detect`).
    unsafe {
        std::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Σ x·y over 32 signed byte pairs given as two halves each.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn dot32(x0: int8x16_t, x1: int8x16_t, y0: int8x16_t, y1: int8x16_t) -> i32 {
    let acc = sdot(vdupq_n_s32(0), x0, y0);
    vaddvq_s32(sdot(acc, x1, y1))
}

/// One row of a 32-element block format `T` against Q8 activations: each block decoded as the
/// tiles decode it (`decode32`), the minimum terms summed apart in llama.cpp's order.
///
/// # Safety
/// NEON with dotprod available.
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_q8<const T: u8>(w: &[u8], a: &[BlockQ8]) -> f32 {
    let (mut sum, mut mins) = (0.0f32, 0.0f32);
    for (b, y) in w.chunks_exact(block_bytes(T)).zip(a) {
        // SAFETY: `b` is a whole block of format T; `y.qs` holds 32 quants.
        let ((x0, x1, dw, mw), (y0, y1)) = unsafe { (decode32::<T>(b.as_ptr()), act32(&y.qs)) };
        sum += dot32(x0, x1, y0, y1) as f32 * (dw * y.d);
        if has_min(T) {
            mins += mw * y.s;
        }
    }
    if has_min(T) {
        sum + mins
    } else {
        sum
    }
}

/// # Safety
/// NEON with dotprod available.
#[target_feature(enable = "neon,dotprod")]
unsafe fn q4_k_neon(w: &[u8], a: &[ActBlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    for (b, y) in w.chunks_exact(144).zip(a) {
        let scales = &b[4..16];
        let mut si = 0i32;
        let mut mn = 0i32;
        for c in 0..4 {
            let (sc0, m0) = super::portable::scale_min_k4(2 * c, scales);
            let (sc1, m1) = super::portable::scale_min_k4(2 * c + 1, scales);
            mn += m0 as i32 * (y.bsums[4 * c] as i32 + y.bsums[4 * c + 1] as i32);
            mn += m1 as i32 * (y.bsums[4 * c + 2] as i32 + y.bsums[4 * c + 3] as i32);
            // SAFETY: nibbles 32·c .. +32 of the 128 at bytes 16..144; activations
            // 64·c .. +64 of 256.
            let (s0, s1) = unsafe {
                let p = b.as_ptr().add(16 + 32 * c);
                let (l0, h0) = nibbles(p);
                let (l1, h1) = nibbles(p.add(16));
                let q = y.qs.as_ptr().add(64 * c);
                let s0 = dot32(
                    vreinterpretq_s8_u8(l0),
                    vreinterpretq_s8_u8(l1),
                    vld1q_s8(q),
                    vld1q_s8(q.add(16)),
                );
                let s1 = dot32(
                    vreinterpretq_s8_u8(h0),
                    vreinterpretq_s8_u8(h1),
                    vld1q_s8(q.add(32)),
                    vld1q_s8(q.add(48)),
                );
                (s0, s1)
            };
            si += s0 * sc0 as i32 + s1 * sc1 as i32;
        }
        sum += f16_at(b, 0) * y.d * si as f32 - f16_at(b, 2) * y.d * mn as f32;
    }
    sum
}

/// # Safety
/// NEON with dotprod available.
#[target_feature(enable = "neon,dotprod")]
unsafe fn q6_k_neon(w: &[u8], a: &[ActBlockQ8K]) -> f32 {
    let mut sum = 0.0f32;
    let m4 = vdupq_n_u8(0x0F);
    let m2 = vdupq_n_u8(0x03);
    for (b, y) in w.chunks_exact(210).zip(a) {
        let sc = &b[192..208];
        // Σ (q − 32)·y = Σ q·y − 32·Σ y, with Σ y per group of 16 from the bsums.
        let mut offset = 0i32;
        for (&s, &bs) in sc.iter().zip(&y.bsums) {
            offset += s as i8 as i32 * bs as i32;
        }
        let mut si = 0i32;
        for half in 0..2 {
            for j in 0..2 {
                // SAFETY: ql bytes 64·half + {0, 32} + 16·j .. +16 and qh bytes
                // 128 + 32·half + 16·j .. +16 lie inside the 210-byte block.
                let (qa, qb, qh) = unsafe {
                    let ql = b.as_ptr().add(64 * half + 16 * j);
                    (
                        vld1q_u8(ql),
                        vld1q_u8(ql.add(32)),
                        vld1q_u8(b.as_ptr().add(128 + 32 * half + 16 * j)),
                    )
                };
                let xs = [
                    vorrq_u8(vandq_u8(qa, m4), vshlq_n_u8::<4>(vandq_u8(qh, m2))),
                    vorrq_u8(
                        vandq_u8(qb, m4),
                        vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(qh), m2)),
                    ),
                    vorrq_u8(
                        vshrq_n_u8::<4>(qa),
                        vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(qh), m2)),
                    ),
                    vorrq_u8(vshrq_n_u8::<4>(qb), vshlq_n_u8::<4>(vshrq_n_u8::<6>(qh))),
                ];
                for (k, x) in xs.into_iter().enumerate() {
                    // SAFETY: 16 activations at 128·half + 32·k + 16·j.
                    let q = unsafe { vld1q_s8(y.qs.as_ptr().add(128 * half + 32 * k + 16 * j)) };
                    let d = vaddvq_s32(sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(x), q));
                    si += d * sc[8 * half + 2 * k + j] as i8 as i32;
                }
            }
        }
        sum += f16_at(b, 208) * y.d * (si - 32 * offset) as f32;
    }
    sum
}

// Tiles: as the x86 ones (see `avx2.rs`), R rows × C tokens per micro-kernel with the float
// operations per (row, token) in the order of the one-row kernel `dot_q8`, so both agree bit
// for bit.

/// One block of format `T` unpacked: the 32 quants as two signed halves (as the one-row kernels
/// form them), the scale and the minimum.
///
/// # Safety
/// `p` points to a whole block; NEON available.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn decode32<const T: u8>(p: *const u8) -> (int8x16_t, int8x16_t, f32, f32) {
    // SAFETY (all arms): the offsets stay inside the block's `block_bytes(T)` bytes.
    unsafe {
        let b = std::slice::from_raw_parts(p, block_bytes(T));
        match T {
            Q4_0 => {
                let (lo, hi) = nibbles(p.add(2));
                let eight = vdupq_n_s8(8);
                (
                    vsubq_s8(vreinterpretq_s8_u8(lo), eight),
                    vsubq_s8(vreinterpretq_s8_u8(hi), eight),
                    f16_at(b, 0),
                    0.0,
                )
            }
            Q4_1 => {
                let (lo, hi) = nibbles(p.add(4));
                (
                    vreinterpretq_s8_u8(lo),
                    vreinterpretq_s8_u8(hi),
                    f16_at(b, 0),
                    f16_at(b, 2),
                )
            }
            Q5_0 => {
                // q − 16 is the nibble with 0xF0 or-ed in where the fifth bit is clear.
                let (x0, x1) = with_fifth_bit(&b[2..6], p.add(6), 0x00, 0xF0);
                (x0, x1, f16_at(b, 0), 0.0)
            }
            Q5_1 => {
                let (x0, x1) = with_fifth_bit(&b[4..8], p.add(8), 0x10, 0x00);
                (x0, x1, f16_at(b, 0), f16_at(b, 2))
            }
            _ => {
                let q = p.add(2) as *const i8;
                (vld1q_s8(q), vld1q_s8(q.add(16)), f16_at(b, 0), 0.0)
            }
        }
    }
}

/// R rows × C tokens of a 32-block format; `out[(t0 + c)·m + r0 + r]`.
///
/// # Safety
/// R rows of `nb` blocks (`row_bytes` apart) at `w`, C tokens of `nb` blocks at `a`, and the
/// output elements valid and written by no other thread; NEON with dotprod available.
#[inline]
#[target_feature(enable = "neon,dotprod")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro32<const T: u8, const R: usize, const C: usize>(
    w: *const u8,
    row_bytes: usize,
    a: *const BlockQ8,
    nb: usize,
    out: *mut f32,
    m: usize,
    (r0, t0): (usize, usize),
) {
    let mut sum = [[0.0f32; C]; R];
    let mut mins = [[0.0f32; C]; R];
    for b in 0..nb {
        let z = vdupq_n_s8(0);
        let (mut x0, mut x1, mut dw, mut mw) = ([z; R], [z; R], [0.0f32; R], [0.0f32; R]);
        for r in 0..R {
            // SAFETY: block b of row r is inside the rows vouched for.
            (x0[r], x1[r], dw[r], mw[r]) =
                unsafe { decode32::<T>(w.add(r * row_bytes + b * block_bytes(T))) };
        }
        for c in 0..C {
            // SAFETY: block b of token c is inside the activations vouched for.
            let y = unsafe { &*a.add(c * nb + b) };
            // SAFETY: 32 quants.
            let (y0, y1) = unsafe { act32(&y.qs) };
            for r in 0..R {
                sum[r][c] += dot32(x0[r], x1[r], y0, y1) as f32 * (dw[r] * y.d);
                if has_min(T) {
                    mins[r][c] += mw[r] * y.s;
                }
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            let v = if has_min(T) {
                sum[r][c] + mins[r][c]
            } else {
                sum[r][c]
            };
            // SAFETY: the caller's guarantee.
            unsafe { *out.add((t0 + c) * m + r0 + r) = v };
        }
    }
}

/// Rows × tokens in micro-kernels: 1 row × 4 tokens while four tokens remain, then 4 rows × 1.
///
/// # Safety
/// See `kernels::TileQ8`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile32<const T: u8>(
    w: &[u8],
    row_bytes: usize,
    rows: Range<usize>,
    a: &[BlockQ8],
    n: usize,
    out: *mut f32,
    m: usize,
) {
    let nb = row_bytes / block_bytes(T);
    assert!(rows.end * row_bytes <= w.len() && n * nb <= a.len());
    let wp = |r: usize| w[r * row_bytes..].as_ptr();
    let ap = |t: usize| a[t * nb..].as_ptr();
    let mut t = 0;
    // SAFETY (every call): rows and tokens are inside the bounds asserted above; `out` is the
    // caller's.
    while t + 4 <= n {
        for r in rows.clone() {
            unsafe { micro32::<T, 1, 4>(wp(r), row_bytes, ap(t), nb, out, m, (r, t)) };
        }
        t += 4;
    }
    while t < n {
        let mut r = rows.start;
        while r + 4 <= rows.end {
            unsafe { micro32::<T, 4, 1>(wp(r), row_bytes, ap(t), nb, out, m, (r, t)) };
            r += 4;
        }
        while r < rows.end {
            unsafe { micro32::<T, 1, 1>(wp(r), row_bytes, ap(t), nb, out, m, (r, t)) };
            r += 1;
        }
        t += 1;
    }
}

macro_rules! tile_fn {
    ($name:ident, $t:ident) => {
        /// # Safety
        /// See `kernels::TileQ8` (dotprod detected: guaranteed by `tile`).
        unsafe fn $name(
            w: &[u8],
            row_bytes: usize,
            rows: Range<usize>,
            a: &[BlockQ8],
            n: usize,
            out: *mut f32,
            m: usize,
        ) {
            // SAFETY: the caller's guarantee (see above).
            unsafe { tile32::<$t>(w, row_bytes, rows, a, n, out, m) }
        }
    };
}
tile_fn!(tile_q4_0, Q4_0);
tile_fn!(tile_q4_1, Q4_1);
tile_fn!(tile_q5_0, Q5_0);
tile_fn!(tile_q5_1, Q5_1);
tile_fn!(tile_q8_0, Q8_0);
