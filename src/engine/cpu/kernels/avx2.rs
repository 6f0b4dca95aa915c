//! AVX2 kernels (x86-64 with AVX2, FMA and F16C, detected at run time before any of these is
//! chosen). Integer products with `vpmaddubsw` (unsigned × signed bytes → i16 pairs) and
//! `vpmaddwd` (→ i32), one float multiply-add per block. Each is tested against the portable
//! kernel on random blocks (`kernels::tests`).

use std::arch::x86_64::*;

use half::f16;

use super::{BlockQ8, BlockQ8K, Dot};
use crate::engine::cpu::ops::KvKernels;
use crate::quant::GgmlType;

/// The AVX2 kernel for `ty`, if there is one. Only called after `Isa::detect` found AVX2, FMA
/// and F16C.
pub fn kernel(ty: GgmlType) -> Option<Dot> {
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

pub fn kv_kernels() -> KvKernels {
    KvKernels {
        dot: dot_f16,
        axpy: axpy_f16,
    }
}

// Safe entry points. SAFETY (all of them): `kernel`/`kv_kernels` are only used when
// `Isa::detect` reported AVX2 + FMA + F16C on this CPU, and the inner functions read only
// inside the slices they are given (lengths checked by `chunks_exact`/`zip`).
macro_rules! safe {
    ($name:ident, $inner:ident, $a:ty) => {
        fn $name(w: &[u8], a: &[$a]) -> f32 {
            // SAFETY: see above.
            unsafe { $inner(w, a) }
        }
    };
}
safe!(q4_0, q4_0_avx2, BlockQ8);
safe!(q4_1, q4_1_avx2, BlockQ8);
safe!(q5_0, q5_0_avx2, BlockQ8);
safe!(q5_1, q5_1_avx2, BlockQ8);
safe!(q8_0, q8_0_avx2, BlockQ8);
safe!(q4_k, q4_k_avx2, BlockQ8K);
safe!(q6_k, q6_k_avx2, BlockQ8K);

fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    // SAFETY: see above.
    unsafe { dot_f16_avx2(q, k) }
}
fn axpy_f16(acc: &mut [f32], a: f32, v: &[f16]) {
    // SAFETY: see above.
    unsafe { axpy_f16_avx2(acc, a, v) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_to_f32(b: &[u8], i: usize) -> f32 {
    let bits = u16::from_le_bytes([b[i], b[i + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
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

/// Σ u·s over 32 byte pairs (u unsigned < 128, s signed) as eight i32 partial sums.
#[inline]
#[target_feature(enable = "avx2")]
fn dot_us(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Σ a·b over 32 signed byte pairs (neither −128 in `a`) as eight i32 partial sums.
#[inline]
#[target_feature(enable = "avx2")]
fn dot_ss(a: __m256i, b: __m256i) -> __m256i {
    dot_us(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_avx2(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, y) in w.chunks_exact(18).zip(a) {
        // SAFETY: b has 18 bytes, the nibbles are bytes 2..18; y.qs is 32 bytes.
        let (x, q) = unsafe {
            (
                nibbles(b.as_ptr().add(2)),
                _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i),
            )
        };
        let x = _mm256_sub_epi8(x, _mm256_set1_epi8(8));
        let d = _mm256_set1_ps(f16_to_f32(b, 0) * y.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_ss(x, q)), acc);
    }
    hsum(acc)
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_avx2(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (b, y) in w.chunks_exact(20).zip(a) {
        // SAFETY: b has 20 bytes, the nibbles are bytes 4..20; y.qs is 32 bytes.
        let (x, q) = unsafe {
            (
                nibbles(b.as_ptr().add(4)),
                _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i),
            )
        };
        let d = _mm256_set1_ps(f16_to_f32(b, 0) * y.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_us(x, q)), acc);
        mins += f16_to_f32(b, 2) * y.s;
    }
    hsum(acc) + mins
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0_avx2(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, y) in w.chunks_exact(22).zip(a) {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        // SAFETY: b has 22 bytes, the nibbles are bytes 6..22; y.qs is 32 bytes.
        let (x, q) = unsafe {
            (
                nibbles(b.as_ptr().add(6)),
                _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i),
            )
        };
        // q − 16 where the fifth bit is clear is the nibble with 0xF0 or-ed in (as i8).
        let hi = _mm256_andnot_si256(bits_to_bytes(qh), _mm256_set1_epi8(0xF0u8 as i8));
        let x = _mm256_or_si256(x, hi);
        let d = _mm256_set1_ps(f16_to_f32(b, 0) * y.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_ss(x, q)), acc);
    }
    hsum(acc)
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1_avx2(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (b, y) in w.chunks_exact(24).zip(a) {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        // SAFETY: b has 24 bytes, the nibbles are bytes 8..24; y.qs is 32 bytes.
        let (x, q) = unsafe {
            (
                nibbles(b.as_ptr().add(8)),
                _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i),
            )
        };
        let hi = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
        let x = _mm256_or_si256(x, hi);
        let d = _mm256_set1_ps(f16_to_f32(b, 0) * y.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_us(x, q)), acc);
        mins += f16_to_f32(b, 2) * y.s;
    }
    hsum(acc) + mins
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_avx2(w: &[u8], a: &[BlockQ8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, y) in w.chunks_exact(34).zip(a) {
        // SAFETY: b has 34 bytes, the quants are bytes 2..34; y.qs is 32 bytes.
        let (x, q) = unsafe {
            (
                _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i),
                _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i),
            )
        };
        let d = _mm256_set1_ps(f16_to_f32(b, 0) * y.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_ss(x, q)), acc);
    }
    hsum(acc)
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_avx2(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    for (b, y) in w.chunks_exact(144).zip(a) {
        let scales = &b[4..16];
        let mut sc = [0i16; 8];
        let mut mn = 0i32;
        for (j, s) in sc.iter_mut().enumerate() {
            let (s6, m6) = super::portable::scale_min_k4(j, scales);
            *s = s6 as i16;
            mn += m6 as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
        }
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            // SAFETY: nibbles 32·c .. 32·c + 32 of the 128 at bytes 16..144; activations
            // 64·c .. 64·c + 64 of 256.
            let (lo, hi, q0, q1) = unsafe {
                let v = _mm256_loadu_si256(b.as_ptr().add(16 + 32 * c) as *const __m256i);
                (
                    _mm256_and_si256(v, _mm256_set1_epi8(0x0F)),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(v), _mm256_set1_epi8(0x0F)),
                    _mm256_loadu_si256(y.qs.as_ptr().add(64 * c) as *const __m256i),
                    _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32) as *const __m256i),
                )
            };
            // i16 pair sums, scaled by the sub-block scale in the widening multiply.
            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, q0), _mm256_set1_epi16(sc[2 * c]));
            let p1 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, q1),
                _mm256_set1_epi16(sc[2 * c + 1]),
            );
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        let d = f16_to_f32(b, 0) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        mins += f16_to_f32(b, 2) * y.d * mn as f32;
    }
    hsum(acc) - mins
}

/// # Safety
/// AVX2/FMA/F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_avx2(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut corr = 0.0f32;
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    for (b, y) in w.chunks_exact(210).zip(a) {
        let sc = &b[192..208];
        // Σ q·32 over each group of 16 is 32·bsum: subtract it once instead of per element.
        let mut offset = 0i32;
        for (&s, &bs) in sc.iter().zip(&y.bsums) {
            offset += s as i8 as i32 * bs as i32;
        }
        let mut sumi = _mm256_setzero_si256();
        for half in 0..2 {
            // SAFETY: ql bytes 64·half .. +64, qh bytes 128 + 32·half .. +32, activations
            // 128·half .. +128, all inside the 210-byte block and 256 activations.
            let (ql0, ql1, qh) = unsafe {
                (
                    _mm256_loadu_si256(b.as_ptr().add(64 * half) as *const __m256i),
                    _mm256_loadu_si256(b.as_ptr().add(64 * half + 32) as *const __m256i),
                    _mm256_loadu_si256(b.as_ptr().add(128 + 32 * half) as *const __m256i),
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
                let x = _mm256_or_si256(lows[k], _mm256_slli_epi16::<4>(highs[k]));
                // SAFETY: 32 activations at 128·half + 32·k.
                let q = unsafe {
                    _mm256_loadu_si256(y.qs.as_ptr().add(128 * half + 32 * k) as *const __m256i)
                };
                let p = _mm256_maddubs_epi16(x, q); // 16 i16: pairs of elements
                                                    // Elements 0..16 use scale 8·half + 2k, 16..32 use 8·half + 2k + 1.
                let s0 = sc[8 * half + 2 * k] as i8 as i16;
                let s1 = sc[8 * half + 2 * k + 1] as i8 as i16;
                let scales = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales));
            }
        }
        let d = f16_to_f32(b, 208) * y.d;
        let total = _mm256_cvtepi32_ps(sumi);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), total, acc);
        corr += d * (32 * offset) as f32;
    }
    hsum(acc) - corr
}

/// # Safety
/// AVX2/FMA/F16C available; `q.len() == k.len()`.
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
