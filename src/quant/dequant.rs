//! CPU dequantization: block bytes to f32, bit-exact with gguf-py's `gguf.quants.dequantize`.
//!
//! Bit-exactness comes from doing the same f32 operations in the same order as gguf-py (numpy,
//! f32 throughout): the scale products first (`d * sc`, `dmin * m`), then one multiply and one
//! add or subtract per weight, never fused (Rust does not contract `a * b + c` into an FMA).
//! Verified against committed gguf-py output in `tests/it/quant.rs`.

use super::blocks::*;
use super::{GgmlType, QuantError, QK_K};

/// Whether [`dequantize`] handles `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | Q8_K
    )
}

/// Dequantizes `data` (whole blocks of `ty`, as stored in a GGUF file) into `out`, which must hold
/// exactly the number of elements the blocks decode to.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    if !is_supported(ty) {
        return Err(QuantError::Unsupported(ty));
    }
    let n = out.len() as u64;
    let block = ty.block_size();
    if !out.len().is_multiple_of(block) {
        return Err(QuantError::NotWholeBlocks {
            ty,
            n_elements: n,
            block,
        });
    }
    let expected = (out.len() / block) as u64 * ty.type_size() as u64;
    if data.len() as u64 != expected {
        return Err(QuantError::SizeMismatch {
            ty,
            n_elements: n,
            expected,
            found: data.len() as u64,
        });
    }
    use GgmlType::*;
    match ty {
        F32 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        F16 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        BF16 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
        Q4_0 => each(data, out, block_q4_0),
        Q4_1 => each(data, out, block_q4_1),
        Q5_0 => each(data, out, block_q5_0),
        Q5_1 => each(data, out, block_q5_1),
        Q8_0 => each(data, out, block_q8_0),
        Q2_K => each(data, out, block_q2_k),
        Q3_K => each(data, out, block_q3_k),
        Q4_K => each(data, out, block_q4_k),
        Q5_K => each(data, out, block_q5_k),
        Q6_K => each(data, out, block_q6_k),
        Q8_K => each(data, out, block_q8_k),
        _ => unreachable!("is_supported covers every arm"),
    }
    Ok(())
}

/// Dequantizes `n_elements` elements of `ty` from `data` into a new vector.
pub fn dequantize_to_vec(
    ty: GgmlType,
    data: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, QuantError> {
    if !is_supported(ty) {
        return Err(QuantError::Unsupported(ty));
    }
    // Check the sizes before allocating, so a bogus count cannot ask for gigabytes.
    let expected = ty.bytes_for(n_elements as u64);
    if expected != Some(data.len() as u64) {
        return Err(match expected {
            None => QuantError::NotWholeBlocks {
                ty,
                n_elements: n_elements as u64,
                block: ty.block_size(),
            },
            Some(expected) => QuantError::SizeMismatch {
                ty,
                n_elements: n_elements as u64,
                expected,
                found: data.len() as u64,
            },
        });
    }
    let mut out = vec![0f32; n_elements];
    dequantize(ty, data, &mut out)?;
    Ok(out)
}

/// Runs `f` on every block of `data` and its slice of `out` (sizes already checked).
#[inline]
fn each<B: Block, const N: usize>(data: &[u8], out: &mut [f32], f: fn(&B, &mut [f32; N])) {
    for (bytes, o) in data
        .chunks_exact(std::mem::size_of::<B>())
        .zip(out.chunks_exact_mut(N))
    {
        let o: &mut [f32; N] = o.try_into().expect("chunks_exact_mut gives N");
        f(&read_block::<B>(bytes), o);
    }
}

/// Dequantizes one Q4_0 block.
pub fn block_q4_0(b: &BlockQ4_0, out: &mut [f32; QK]) {
    let d = b.d();
    for (i, &q) in b.qs.iter().enumerate() {
        out[i] = d * f32::from((q & 0x0f) as i8 - 8);
        out[i + QK / 2] = d * f32::from((q >> 4) as i8 - 8);
    }
}

/// Dequantizes one Q4_1 block.
pub fn block_q4_1(b: &BlockQ4_1, out: &mut [f32; QK]) {
    let (d, m) = (b.d(), b.m());
    for (i, &q) in b.qs.iter().enumerate() {
        out[i] = d * f32::from(q & 0x0f) + m;
        out[i + QK / 2] = d * f32::from(q >> 4) + m;
    }
}

/// Dequantizes one Q5_0 block.
pub fn block_q5_0(b: &BlockQ5_0, out: &mut [f32; QK]) {
    let (d, qh) = (b.d(), b.qh());
    for (i, &q) in b.qs.iter().enumerate() {
        let lo = (q & 0x0f) | (((qh >> i) & 1) as u8) << 4;
        let hi = (q >> 4) | (((qh >> (i + 16)) & 1) as u8) << 4;
        out[i] = d * f32::from(lo as i8 - 16);
        out[i + QK / 2] = d * f32::from(hi as i8 - 16);
    }
}

/// Dequantizes one Q5_1 block.
pub fn block_q5_1(b: &BlockQ5_1, out: &mut [f32; QK]) {
    let (d, m, qh) = (b.d(), b.m(), b.qh());
    for (i, &q) in b.qs.iter().enumerate() {
        let lo = (q & 0x0f) | (((qh >> i) & 1) as u8) << 4;
        let hi = (q >> 4) | (((qh >> (i + 16)) & 1) as u8) << 4;
        out[i] = d * f32::from(lo) + m;
        out[i + QK / 2] = d * f32::from(hi) + m;
    }
}

/// Dequantizes one Q8_0 block.
pub fn block_q8_0(b: &BlockQ8_0, out: &mut [f32; QK]) {
    let d = b.d();
    for (o, &q) in out.iter_mut().zip(&b.qs) {
        *o = f32::from(q) * d;
    }
}

/// Dequantizes one Q2_K block.
pub fn block_q2_k(b: &BlockQ2K, out: &mut [f32; QK_K]) {
    let (d, dmin) = (b.d(), b.dmin());
    for (e, o) in out.iter_mut().enumerate() {
        let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let sc = b.scales[e / 16];
        let dl = d * f32::from(sc & 0x0f);
        let ml = dmin * f32::from(sc >> 4);
        let q = (b.qs[32 * h + l] >> (2 * s)) & 3;
        *o = dl * f32::from(q) - ml;
    }
}

/// Dequantizes one Q3_K block.
pub fn block_q3_k(b: &BlockQ3K, out: &mut [f32; QK_K]) {
    let d = b.d();
    let scales = b.scales();
    for (e, o) in out.iter_mut().enumerate() {
        let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let dl = d * f32::from(scales[e / 16]);
        let low = ((b.qs[32 * h + l] >> (2 * s)) & 3) as i8;
        let high_set = (b.hmask[l] >> (4 * h + s)) & 1 != 0;
        let q = if high_set { low } else { low - 4 };
        *o = dl * f32::from(q);
    }
}

/// Dequantizes one Q4_K block.
pub fn block_q4_k(b: &BlockQ4K, out: &mut [f32; QK_K]) {
    k_nibble_groups((b.d(), b.dmin()), &b.scales, &b.qs, None, out);
}

/// Dequantizes one Q5_K block.
pub fn block_q5_k(b: &BlockQ5K, out: &mut [f32; QK_K]) {
    k_nibble_groups((b.d(), b.dmin()), &b.scales, &b.qs, Some(&b.qh), out);
}

/// Q4_K and Q5_K: eight groups of 32, each `d·sc[j]·q − dmin·m[j]`, with `q` the low nibbles of
/// `qs[32c..32c+32]` for group `2c` and the high ones for `2c+1`, plus (Q5_K) bit `j` of `qh[l]`
/// as the fifth bit of element `32j + l`.
fn k_nibble_groups(
    (d, dmin): (f32, f32),
    scales: &[u8; 12],
    qs: &[u8; QK_K / 2],
    qh: Option<&[u8; QK_K / 8]>,
    out: &mut [f32; QK_K],
) {
    let (sc, mn) = k_scale_min(scales);
    for (j, group) in out.chunks_exact_mut(32).enumerate() {
        let d1 = d * f32::from(sc[j]);
        let m1 = dmin * f32::from(mn[j]);
        let qs = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        let shift = 4 * (j % 2);
        for (l, o) in group.iter_mut().enumerate() {
            let fifth = qh.map_or(0, |qh| ((qh[l] >> j) & 1) << 4);
            *o = d1 * f32::from(((qs[l] >> shift) & 0x0f) | fifth) - m1;
        }
    }
}

/// Dequantizes one Q6_K block.
pub fn block_q6_k(b: &BlockQ6K, out: &mut [f32; QK_K]) {
    let d = b.d();
    for (e, o) in out.iter_mut().enumerate() {
        let (h, r) = (e / 128, e % 128);
        let low = (b.ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
        let high = (b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
        let q = (low | (high << 4)) as i8 - 32;
        let d1 = d * f32::from(b.scales[e / 16]);
        *o = d1 * f32::from(q);
    }
}

/// Dequantizes one Q8_K block.
fn block_q8_k(b: &BlockQ8K, out: &mut [f32; QK_K]) {
    let d = b.d();
    for (o, &q) in out.iter_mut().zip(&b.qs) {
        *o = d * f32::from(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64, for reproducible arbitrary bytes.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let z = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    #[test]
    fn arbitrary_bytes_and_sizes_never_panic() {
        for ty in GgmlType::ALL {
            let (bs, ts) = (ty.block_size(), ty.type_size());
            for len in 0..3 * ts + 2 {
                let data = bytes(len as u64 * 131 + ty.id() as u64, len);
                for n in [0, bs, 2 * bs, 3 * bs, len / ts * bs, len / ts * bs + 1] {
                    let whole = len % ts == 0 && n == len / ts * bs;
                    let r = dequantize_to_vec(ty, &data, n);
                    assert_eq!(r.is_ok(), whole && is_supported(ty), "{ty} len {len} n {n}");
                    let mut out = vec![0f32; n];
                    assert_eq!(dequantize(ty, &data, &mut out).is_ok(), r.is_ok());
                }
            }
        }
    }

    #[test]
    fn q8_k_is_scale_times_quant() {
        // No gguf-py reference exists for Q8_K; check the definition directly.
        let mut raw = Vec::new();
        raw.extend(0.375f32.to_le_bytes());
        raw.extend((0..=255u8).map(|i| i.wrapping_sub(128)));
        raw.extend([0u8; 32]);
        let out = dequantize_to_vec(GgmlType::Q8_K, &raw, 256).unwrap();
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, 0.375 * (i as f32 - 128.0));
        }
    }

    #[test]
    fn plain_types_convert_exactly() {
        let f16 = [0x3c00u16, 0xc000, 0x0001, 0x7c00];
        let raw: Vec<u8> = f16.iter().flat_map(|x| x.to_le_bytes()).collect();
        let out = dequantize_to_vec(GgmlType::F16, &raw, 4).unwrap();
        assert_eq!(out[..3], [1.0, -2.0, 2f32.powi(-24)]);
        assert_eq!(out[3], f32::INFINITY);
        let out = dequantize_to_vec(GgmlType::BF16, &raw, 4).unwrap();
        assert_eq!(out[0].to_bits(), 0x3c00_0000);
        let raw = (-1.5f32).to_le_bytes();
        assert_eq!(dequantize_to_vec(GgmlType::F32, &raw, 1).unwrap(), [-1.5]);
    }

    #[test]
    fn q4_0_by_hand() {
        // d = 0.5; byte 0 = 0xf0: element 0 has q 0 -> -4.0, element 16 has q 15 -> 3.5.
        let mut raw = vec![0x00, 0x38];
        raw.extend([0x88; 16]);
        raw[2] = 0xf0;
        let out = dequantize_to_vec(GgmlType::Q4_0, &raw, 32).unwrap();
        assert_eq!((out[0], out[16], out[1]), (-4.0, 3.5, 0.0));
    }
}
