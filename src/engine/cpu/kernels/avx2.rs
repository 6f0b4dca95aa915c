//! x86-64 kernels: AVX2 (+ FMA, F16C), and the same code compiled a second time with AVX-VNNI,
//! whose `vpdpbusd` does in one instruction what AVX2 does with `vpmaddubsw` + `vpmaddwd`.
//! Both give bit-identical results: every integer sum is exact (no i16 saturation is possible
//! with the value ranges used here) and the float operations run in the same order.
//!
//! The matrix kernels work on tiles: a micro-kernel takes R weight rows × C activation rows and
//! keeps R·C independent accumulators, so a weight block is unpacked once for C tokens during
//! prompt processing (C = 8, or 4 for the formats with a minimum) and an activation block is
//! loaded once for R rows while decoding (R = 4 for the 32-element formats). Per (row, token)
//! pair the float work is the same sequence as a one-row dot product, so tiles and single dots
//! agree exactly. Each kernel is tested against the portable one on
//! random blocks (`kernels::tests`).

use std::arch::x86_64::*;
use std::ops::Range;

use half::f16;

use super::fmt32::{block_bytes, has_min, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use super::{ActBlockQ8K, BlockQ8, Dot, Tile};
use crate::engine::cpu::ops::KvKernels;
use crate::quant::GgmlType;

/// The kernel for `ty` in the plain AVX2 or the VNNI build, if there is one. Only called after
/// `Isa::detect` found the features (AVX2, FMA and F16C; plus AVX-VNNI when `vnni`).
pub fn kernel(ty: GgmlType, vnni: bool) -> Option<Dot> {
    if vnni {
        vnni::dot(ty)
    } else {
        plain::dot(ty)
    }
}

/// The tile kernel for `ty` (see [`kernel`]).
pub fn tile(ty: GgmlType, vnni: bool) -> Option<Tile> {
    if vnni {
        vnni::tile(ty)
    } else {
        plain::tile(ty)
    }
}

pub fn kv_kernels() -> KvKernels {
    KvKernels {
        dot: dot_f16,
        axpy: axpy_f16,
    }
}

// The safe entry points below and in the two kernel modules are only handed out by `kernel`,
// `tile` and `kv_kernels`, which the engine uses only when `Isa::detect` reported the features
// on this CPU.
fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    // SAFETY: AVX2/FMA/F16C were detected (see above).
    unsafe { dot_f16_avx2(q, k) }
}
fn axpy_f16(acc: &mut [f32], a: f32, v: &[f16]) {
    // SAFETY: AVX2/FMA/F16C were detected (see above).
    unsafe { axpy_f16_avx2(acc, a, v) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_to_f32(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// The f16 at `p` (unaligned).
///
/// # Safety
/// `p` must point to 2 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes.
    f16_to_f32(unsafe { (p as *const u16).read_unaligned() })
}

/// Sum of the eight f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
}

/// 16 bytes of packed nibbles → 32 bytes: low nibbles in 0..16, high nibbles in 16..32.
///
/// # Safety
/// `p` must point to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    let v = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let hi = _mm_srli_epi16::<4>(v);
    _mm256_and_si256(_mm256_set_m128i(hi, v), _mm256_set1_epi8(0x0F))
}

/// Byte i of the result is 0xFF when bit i of `bits` is set, else 0.
#[inline]
#[target_feature(enable = "avx2")]
fn bits_to_bytes(bits: u32) -> __m256i {
    // Byte i takes byte i/8 of `bits`, then tests its bit i%8.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask)
}

/// One weight block of 32 unpacked: the 32 quants as bytes (signed for the formats without a
/// minimum, which are dotted with the sign trick; unsigned otherwise), the scale and the
/// minimum (0 for the signed formats).
///
/// # Safety
/// `p` must point to a whole block of format `T`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode32<const T: u8>(p: *const u8) -> (__m256i, f32, f32) {
    // SAFETY (all arms): the offsets stay inside the block's `block_bytes(T)` bytes.
    unsafe {
        match T {
            Q4_0 => (
                _mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8)),
                f16_at(p),
                0.0,
            ),
            Q4_1 => (nibbles(p.add(4)), f16_at(p), f16_at(p.add(2))),
            Q5_0 => {
                let qh = (p.add(2) as *const u32).read_unaligned();
                // q − 16 where the fifth bit is clear is the nibble with 0xF0 or-ed in (as i8).
                let hi = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xF0u8 as i8));
                (_mm256_or_si256(nibbles(p.add(6)), hi), f16_at(p), 0.0)
            }
            Q5_1 => {
                let qh = (p.add(4) as *const u32).read_unaligned();
                let hi = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
                (
                    _mm256_or_si256(nibbles(p.add(8)), hi),
                    f16_at(p),
                    f16_at(p.add(2)),
                )
            }
            _ => (
                _mm256_loadu_si256(p.add(2) as *const __m256i),
                f16_at(p),
                0.0,
            ),
        }
    }
}

/// How far ahead of the block being read a decoding kernel prefetches, in bytes.
const PREFETCH: usize = 384;

/// Where a tile writes: `out[t · stride + r]` for token t and weight row r.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    stride: usize,
}

impl Out {
    /// # Safety
    /// The element must be inside the buffer and written by no other thread.
    #[inline]
    unsafe fn put(self, t: usize, r: usize, v: f32) {
        // SAFETY: the caller's guarantee.
        unsafe { *self.ptr.add(t * self.stride + r) = v };
    }
}

/// Covers rows × tokens with micro-kernels: 1 row × `pre_c` tokens while that many remain
/// (each weight block unpacked once for them; 8 where the accumulators fit in registers, 4
/// for the formats with a minimum term), then 1 × 4, then `r_dec` rows × 1 token (each
/// activation block loaded once for several rows).
macro_rules! tiler {
    ($features:literal, $name:ident, $micro:ident, $act:ty, $bytes:expr, $pre_c:expr, $r_dec:expr $(, $t:ident)?) => {
        /// # Safety
        /// See [`super::super::TileQ8`]: `w` holds whole rows `rows`, `a` holds `n`
        /// activation rows of `nb` blocks, `out` is valid for `out[t · m + r]` and no
        /// other thread writes those elements.
        // (`r + 1 <= end` when R_DEC is 1 reads as the other sizes do.)
        #[allow(clippy::int_plus_one)]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            w: &[u8],
            row_bytes: usize,
            rows: Range<usize>,
            a: &[$act],
            n: usize,
            out: *mut f32,
            m: usize,
        ) {
            let nb = row_bytes / $bytes;
            assert!(rows.end * row_bytes <= w.len() && n * nb <= a.len());
            let out = Out { ptr: out, stride: m };
            let wp = |r: usize| w[r * row_bytes..].as_ptr();
            let ap = |t: usize| a[t * nb..].as_ptr();
            let mut t = 0;
            // SAFETY (every call): rows and tokens are inside the bounds asserted
            // above; `out` is the caller's.
            while t + $pre_c <= n {
                for r in rows.clone() {
                    unsafe { $micro::<$($t,)? 1, $pre_c>(wp(r), row_bytes, ap(t), nb, out, (r, t)) };
                }
                t += $pre_c;
            }
            while t + 4 <= n {
                for r in rows.clone() {
                    unsafe { $micro::<$($t,)? 1, 4>(wp(r), row_bytes, ap(t), nb, out, (r, t)) };
                }
                t += 4;
            }
            while t < n {
                let mut r = rows.start;
                while r + $r_dec <= rows.end {
                    unsafe { $micro::<$($t,)? $r_dec, 1>(wp(r), row_bytes, ap(t), nb, out, (r, t)) };
                    r += $r_dec;
                }
                while r < rows.end {
                    unsafe { $micro::<$($t,)? 1, 1>(wp(r), row_bytes, ap(t), nb, out, (r, t)) };
                    r += 1;
                }
                t += 1;
            }
        }
    };
}

/// One-row dot products through the tile kernels (a 1 × 1 tile).
macro_rules! single {
    ($name:ident, $tile:ident, $act:ty, $bytes:expr) => {
        fn $name(w: &[u8], a: &[$act]) -> f32 {
            let mut v = 0.0f32;
            let nb = w.len() / $bytes;
            assert!(
                a.len() >= nb,
                "dot product: {} activation blocks for {nb} weight blocks",
                a.len()
            );
            // SAFETY: the features were detected (module doc); one row of `w.len()`
            // bytes, one token, one output element that only this call writes.
            unsafe { $tile(w, nb * $bytes, 0..1, a, 1, &mut v, 1) };
            v
        }
    };
}

/// Generates one build of the matrix kernels: `$features` is the target-feature list and
/// `dpbusd(acc, u, s)` adds Σ of four u8·i8 products to each i32 lane of `acc`.
macro_rules! matrix_kernels {
    ($features:literal, $dpbusd:item) => {
        use super::*;

        #[inline]
        $dpbusd

        /// R rows × C tokens of a 32-block format. `w` points at the first row's first block,
        /// `a` at the first token's first block; `nb` blocks per row.
        ///
        /// # Safety
        /// R rows of `nb` blocks (each `row_bytes` apart) and C tokens of `nb` activation
        /// blocks must be readable; `out` as in [`Out::put`] for rows r0.. and tokens t0...
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn micro32<const T: u8, const R: usize, const C: usize>(
            w: *const u8,
            row_bytes: usize,
            a: *const BlockQ8,
            nb: usize,
            out: Out,
            (r0, t0): (usize, usize),
        ) {
            let zero = _mm256_setzero_si256();
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            let mut mins = [[0.0f32; C]; R];
            for b in 0..nb {
                let mut x = [zero; R];
                let mut ax = [zero; R];
                let mut dw = [0.0f32; R];
                let mut mw = [0.0f32; R];
                for r in 0..R {
                    if C == 1 {
                        // Decoding streams the weights once: ask for them a few cache lines
                        // ahead (a hint; addresses past the row are never dereferenced).
                        _mm_prefetch::<_MM_HINT_T0>(
                            w.wrapping_add(r * row_bytes + b * block_bytes(T) + PREFETCH) as *const i8,
                        );
                    }
                    // SAFETY: block b of row r is inside the rows the caller vouched for.
                    (x[r], dw[r], mw[r]) =
                        unsafe { decode32::<T>(w.add(r * row_bytes + b * block_bytes(T))) };
                    if !has_min(T) {
                        ax[r] = _mm256_sign_epi8(x[r], x[r]);
                    }
                }
                for c in 0..C {
                    // SAFETY: block b of token c is inside the activations vouched for.
                    let y = unsafe { &*a.add(c * nb + b) };
                    // SAFETY: `qs` is 32 bytes.
                    let q = unsafe { _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i) };
                    for r in 0..R {
                        let s = if !has_min(T) {
                            dpbusd(zero, ax[r], _mm256_sign_epi8(q, x[r]))
                        } else {
                            dpbusd(zero, x[r], q)
                        };
                        let d = _mm256_set1_ps(dw[r] * y.d);
                        acc[r][c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[r][c]);
                        if has_min(T) {
                            mins[r][c] += mw[r] * y.s;
                        }
                    }
                }
            }
            for r in 0..R {
                for c in 0..C {
                    // SAFETY: the caller's guarantee.
                    unsafe { out.put(t0 + c, r0 + r, hsum(acc[r][c]) + mins[r][c]) };
                }
            }
        }

        /// R rows × C tokens of Q4_K (blocks of 256 against Q8_K).
        ///
        /// # Safety
        /// As for `micro32`.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn micro_q4k<const R: usize, const C: usize>(
            w: *const u8,
            row_bytes: usize,
            a: *const ActBlockQ8K,
            nb: usize,
            out: Out,
            (r0, t0): (usize, usize),
        ) {
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            let mut mins = [[0.0f32; C]; R];
            for b in 0..nb {
                for r in 0..R {
                    // SAFETY: block b of row r is inside the vouched rows (144 bytes).
                    let blk = unsafe { std::slice::from_raw_parts(w.add(r * row_bytes + b * 144), 144) };
                    let mut sc = [0i16; 8];
                    let mut mn6 = [0i32; 8];
                    for j in 0..8 {
                        let (s6, m6) = super::super::portable::scale_min_k4(j, &blk[4..16]);
                        sc[j] = s6 as i16;
                        mn6[j] = m6 as i32;
                    }
                    let (d, dmin) = (
                        f16_to_f32(u16::from_le_bytes([blk[0], blk[1]])),
                        f16_to_f32(u16::from_le_bytes([blk[2], blk[3]])),
                    );
                    // SAFETY: the 128 nibble bytes at 16..144.
                    let v: [__m256i; 4] = std::array::from_fn(|ch| unsafe {
                        _mm256_loadu_si256(blk.as_ptr().add(16 + 32 * ch) as *const __m256i)
                    });
                    for c in 0..C {
                        // SAFETY: block b of token c is inside the vouched activations.
                        let y = unsafe { &*a.add(c * nb + b) };
                        let mut mn = 0i32;
                        for j in 0..8 {
                            mn += mn6[j] * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
                        }
                        let mut sumi = _mm256_setzero_si256();
                        for ch in 0..4 {
                            let lo = _mm256_and_si256(v[ch], m4);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v[ch]), m4);
                            // SAFETY: activations 64·ch .. 64·ch + 64 of 256.
                            let (q0, q1) = unsafe {
                                (
                                    _mm256_loadu_si256(y.qs.as_ptr().add(64 * ch) as *const __m256i),
                                    _mm256_loadu_si256(y.qs.as_ptr().add(64 * ch + 32) as *const __m256i),
                                )
                            };
                            // i16 pair sums, scaled by the sub-block scale in the widening
                            // multiply.
                            let p0 = _mm256_madd_epi16(
                                _mm256_maddubs_epi16(lo, q0),
                                _mm256_set1_epi16(sc[2 * ch]),
                            );
                            let p1 = _mm256_madd_epi16(
                                _mm256_maddubs_epi16(hi, q1),
                                _mm256_set1_epi16(sc[2 * ch + 1]),
                            );
                            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
                        }
                        let dd = _mm256_set1_ps(d * y.d);
                        acc[r][c] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), acc[r][c]);
                        mins[r][c] += dmin * y.d * mn as f32;
                    }
                }
            }
            for r in 0..R {
                for c in 0..C {
                    // SAFETY: the caller's guarantee.
                    unsafe { out.put(t0 + c, r0 + r, hsum(acc[r][c]) - mins[r][c]) };
                }
            }
        }

        /// R rows × C tokens of Q6_K (blocks of 256 against Q8_K).
        ///
        /// # Safety
        /// As for `micro32`.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn micro_q6k<const R: usize, const C: usize>(
            w: *const u8,
            row_bytes: usize,
            a: *const ActBlockQ8K,
            nb: usize,
            out: Out,
            (r0, t0): (usize, usize),
        ) {
            let m4 = _mm256_set1_epi8(0x0F);
            let m2 = _mm256_set1_epi8(0x03);
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            let mut corr = [[0.0f32; C]; R];
            for b in 0..nb {
                for r in 0..R {
                    // SAFETY: block b of row r is inside the vouched rows (210 bytes).
                    let blk = unsafe { std::slice::from_raw_parts(w.add(r * row_bytes + b * 210), 210) };
                    let sc = &blk[192..208];
                    let d = f16_to_f32(u16::from_le_bytes([blk[208], blk[209]]));
                    // The eight 32-quant vectors (0..63) of the block, in activation order.
                    let mut xs = [_mm256_setzero_si256(); 8];
                    for half in 0..2 {
                        // SAFETY: ql bytes 64·half .. +64, qh bytes 128 + 32·half .. +32.
                        let (ql0, ql1, qh) = unsafe {
                            (
                                _mm256_loadu_si256(blk.as_ptr().add(64 * half) as *const __m256i),
                                _mm256_loadu_si256(blk.as_ptr().add(64 * half + 32) as *const __m256i),
                                _mm256_loadu_si256(blk.as_ptr().add(128 + 32 * half) as *const __m256i),
                            )
                        };
                        let lows = [
                            _mm256_and_si256(ql0, m4),
                            _mm256_and_si256(ql1, m4),
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                        ];
                        let highs = [
                            _mm256_and_si256(qh, m2),
                            _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2),
                            _mm256_and_si256(_mm256_srli_epi16::<4>(qh), m2),
                            _mm256_and_si256(_mm256_srli_epi16::<6>(qh), m2),
                        ];
                        for k in 0..4 {
                            xs[4 * half + k] =
                                _mm256_or_si256(lows[k], _mm256_slli_epi16::<4>(highs[k]));
                        }
                    }
                    for c in 0..C {
                        // SAFETY: block b of token c is inside the vouched activations.
                        let y = unsafe { &*a.add(c * nb + b) };
                        // Σ q·32 over each group of 16 is 32·bsum: subtract it once instead
                        // of per element.
                        let mut offset = 0i32;
                        for (&s, &bs) in sc.iter().zip(&y.bsums) {
                            offset += s as i8 as i32 * bs as i32;
                        }
                        let mut sumi = _mm256_setzero_si256();
                        for (i, &x) in xs.iter().enumerate() {
                            // SAFETY: 32 activations at 32·i of 256.
                            let q = unsafe {
                                _mm256_loadu_si256(y.qs.as_ptr().add(32 * i) as *const __m256i)
                            };
                            // Elements 0..16 use scale 2i, 16..32 use 2i + 1.
                            let scales = _mm256_set_m128i(
                                _mm_set1_epi16(sc[2 * i + 1] as i8 as i16),
                                _mm_set1_epi16(sc[2 * i] as i8 as i16),
                            );
                            let p = _mm256_maddubs_epi16(x, q);
                            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales));
                        }
                        let dd = d * y.d;
                        acc[r][c] =
                            _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(sumi), acc[r][c]);
                        corr[r][c] += dd * (32 * offset) as f32;
                    }
                }
            }
            for r in 0..R {
                for c in 0..C {
                    // SAFETY: the caller's guarantee.
                    unsafe { out.put(t0 + c, r0 + r, hsum(acc[r][c]) - corr[r][c]) };
                }
            }
        }

        tiler!($features, tile_q4_0, micro32, BlockQ8, 18, 8, 4, Q4_0);
        tiler!($features, tile_q4_1, micro32, BlockQ8, 20, 4, 4, Q4_1);
        tiler!($features, tile_q5_0, micro32, BlockQ8, 22, 8, 4, Q5_0);
        tiler!($features, tile_q5_1, micro32, BlockQ8, 24, 4, 4, Q5_1);
        tiler!($features, tile_q8_0, micro32, BlockQ8, 34, 8, 4, Q8_0);
        tiler!($features, tile_q4_k, micro_q4k, ActBlockQ8K, 144, 8, 2);
        tiler!($features, tile_q6_k, micro_q6k, ActBlockQ8K, 210, 8, 1);

        single!(q4_0, tile_q4_0, BlockQ8, 18);
        single!(q4_1, tile_q4_1, BlockQ8, 20);
        single!(q5_0, tile_q5_0, BlockQ8, 22);
        single!(q5_1, tile_q5_1, BlockQ8, 24);
        single!(q8_0, tile_q8_0, BlockQ8, 34);
        single!(q4_k, tile_q4_k, ActBlockQ8K, 144);
        single!(q6_k, tile_q6_k, ActBlockQ8K, 210);

        simd_lookup!(k_tiles: [Q4_K => tile_q4_k, Q6_K => tile_q6_k]);
    };
}

/// AVX2 + FMA + F16C.
mod plain {
    matrix_kernels!(
        "avx2,fma,f16c",
        #[target_feature(enable = "avx2")]
        fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
            _mm256_add_epi32(
                acc,
                _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
            )
        }
    );
}

/// The same kernels with AVX-VNNI.
mod vnni {
    matrix_kernels!(
        "avx2,fma,f16c,avxvnni",
        #[target_feature(enable = "avx2,avxvnni")]
        fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
            _mm256_dpbusd_avx_epi32(acc, u, s)
        }
    );
}

/// Q8_0 (`with_sum = false`) or Q8_1 quantization of `x` with exactly the portable rounding
/// (`kernels::quantize_q8`): round half to even of `x · 127 / max|x|`.
///
/// # Safety
/// AVX2 available; `x.len() == 32 · out.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8(x: &[f32], out: &mut [BlockQ8], with_sum: bool) {
    let sign = _mm256_set1_ps(-0.0);
    for (xb, y) in x.chunks_exact(32).zip(out.iter_mut()) {
        // SAFETY: xb has 32 floats.
        let v: [__m256; 4] =
            std::array::from_fn(|i| unsafe { _mm256_loadu_ps(xb.as_ptr().add(8 * i)) });
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vi in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            _mm256_cvtps_epi32(_mm256_round_ps::<
                { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
            >(_mm256_mul_ps(v[i], id)))
        });
        let sum = hsum_i32(_mm256_add_epi32(
            _mm256_add_epi32(q[0], q[1]),
            _mm256_add_epi32(q[2], q[3]),
        ));
        // Pack i32 → i16 → i8 and undo the lane interleaving of the packs.
        let p = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: `qs` is 32 bytes.
        unsafe { _mm256_storeu_si256(y.qs.as_mut_ptr() as *mut __m256i, p) };
        y.d = f16::from_f32(d).to_f32();
        y.s = if with_sum {
            f16::from_f32(d * sum as f32).to_f32()
        } else {
            0.0
        };
    }
}

/// Q8_K quantization of `x` with exactly the portable rules (`kernels::quantize_q8k`): the
/// scale from the first element of largest magnitude with its sign, round half to even,
/// clamp at 127, sums of each 16.
///
/// # Safety
/// AVX2 available; `x.len() == 256 · out.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8k(x: &[f32], out: &mut [ActBlockQ8K]) {
    let sign = _mm256_set1_ps(-0.0);
    for (xb, y) in x.chunks_exact(256).zip(out.iter_mut()) {
        // SAFETY: xb has 256 floats.
        let v: [__m256; 32] =
            std::array::from_fn(|i| unsafe { _mm256_loadu_ps(xb.as_ptr().add(8 * i)) });
        let mut m = _mm256_setzero_ps();
        for vi in &v {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        if amax == 0.0 {
            *y = ActBlockQ8K::default();
            continue;
        }
        // The first element whose magnitude is the maximum gives the sign.
        let max = *xb.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
        let iscale = -127.0 / max;
        let is = _mm256_set1_ps(iscale);
        let lim = _mm256_set1_epi32(127);
        let q: [__m256i; 32] = std::array::from_fn(|i| {
            _mm256_min_epi32(
                _mm256_cvtps_epi32(_mm256_round_ps::<
                    { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                >(_mm256_mul_ps(is, v[i]))),
                lim,
            )
        });
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for g in 0..8 {
            let p = _mm256_packs_epi16(
                _mm256_packs_epi32(q[4 * g], q[4 * g + 1]),
                _mm256_packs_epi32(q[4 * g + 2], q[4 * g + 3]),
            );
            // SAFETY: 32 bytes at 32·g of the 256.
            unsafe {
                _mm256_storeu_si256(
                    y.qs.as_mut_ptr().add(32 * g) as *mut __m256i,
                    _mm256_permutevar8x32_epi32(p, order),
                )
            };
        }
        for (g, s) in y.bsums.iter_mut().enumerate() {
            *s = hsum_i32(_mm256_add_epi32(q[2 * g], q[2 * g + 1])) as i16;
        }
        y.d = 1.0 / iscale;
    }
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(q: &[f32], k: &[f16]) -> f32 {
    let n = q.len().min(k.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let kv = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), kv, acc);
        }
        i += 8;
    }
    let mut s = hsum(acc);
    for j in i..n {
        s += q[j] * k[j].to_f32();
    }
    s
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f16_avx2(acc: &mut [f32], a: f32, v: &[f16]) {
    let n = acc.len().min(v.len());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i) as *const __m128i));
            let p = acc.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, _mm256_fmadd_ps(av, x, _mm256_loadu_ps(p)));
        }
        i += 8;
    }
    for j in i..n {
        acc[j] += a * v[j].to_f32();
    }
}
