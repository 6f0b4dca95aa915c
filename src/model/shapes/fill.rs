//! Random tensor data in any of the writable ggml formats, fast: the quant bits are random bytes
//! straight from a PRNG, then each block's scale fields are overwritten with finite f16 values
//! chosen so the dequantized weights have about the requested standard deviation (random bytes
//! in a scale field would give NaNs, infinities and absurd magnitudes). Sub-block scales are
//! kept small so that the f16 super-block scales stay normal numbers (GPUs may flush f16
//! subnormals to zero).

use half::f16;

use crate::quant::GgmlType;

/// SplitMix64: tiny, fast and good enough for weights nobody reads.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    #[inline]
    fn next_signed(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Fills `out` with random bytes.
    fn fill_bytes(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// Mixes a seed with a name and a chunk number into an independent stream seed, so every chunk
/// of every tensor can be generated on its own (in any order, on any thread) with the same bytes.
pub fn stream_seed(seed: u64, name: &str, chunk: u64) -> u64 {
    // FNV-1a over the name, then two SplitMix steps to spread the bits.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut r = Rng::new(seed ^ h.rotate_left(17) ^ chunk.wrapping_mul(0xd134_2543_de82_ef95));
    r.next_u64();
    r.next_u64()
}

/// Whether [`random`] can produce this type.
pub fn supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K | Q6_K
    )
}

fn f16_bits(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_bits().to_le_bytes()
}

/// Fills `out` (whole blocks of `ty`) with random weights of standard deviation about `sigma`.
/// Panics only on a type [`supported`] rejects (callers check first).
pub fn random(ty: GgmlType, sigma: f32, rng: &mut Rng, out: &mut [u8]) {
    use GgmlType::*;
    match ty {
        F32 => {
            for c in out.chunks_exact_mut(4) {
                c.copy_from_slice(&(rng.next_signed() * sigma * 1.732).to_le_bytes());
            }
            return;
        }
        F16 => {
            for c in out.chunks_exact_mut(2) {
                c.copy_from_slice(&f16_bits(rng.next_signed() * sigma * 1.732));
            }
            return;
        }
        _ => {}
    }
    rng.fill_bytes(out);
    let size = ty.type_size();
    // The spread of the raw quants times the sub-scales, worked out per format for uniform
    // random bits: the super-block scale is sigma / spread.
    match ty {
        Q4_0 | Q4_1 => {
            let d = sigma / 4.6;
            for b in out.chunks_exact_mut(size) {
                b[0..2].copy_from_slice(&f16_bits(d));
                if ty == Q4_1 {
                    b[2..4].copy_from_slice(&f16_bits(-7.5 * d));
                }
            }
        }
        Q5_0 | Q5_1 => {
            let d = sigma / 9.2;
            for b in out.chunks_exact_mut(size) {
                b[0..2].copy_from_slice(&f16_bits(d));
                if ty == Q5_1 {
                    b[2..4].copy_from_slice(&f16_bits(-15.5 * d));
                }
            }
        }
        Q8_0 => {
            let d = sigma / 74.0;
            for b in out.chunks_exact_mut(size) {
                b[0..2].copy_from_slice(&f16_bits(d));
            }
        }
        Q4_K | Q5_K => {
            // Scales and minimums in 0..16 (bytes 0..8 of `scales` keep their low nibble, bytes
            // 8..12 are all nibbles); dmin centres the weights on zero.
            let (spread, centre) = if ty == Q4_K {
                (63.5, 7.5)
            } else {
                (130.0, 15.5)
            };
            let d = sigma / spread;
            for b in out.chunks_exact_mut(size) {
                b[0..2].copy_from_slice(&f16_bits(d));
                b[2..4].copy_from_slice(&f16_bits(centre * d));
                for s in &mut b[4..12] {
                    *s &= 0x0f;
                }
            }
        }
        Q6_K => {
            // Sub-block scales in 1..=8.
            let d = sigma / 93.0;
            for b in out.chunks_exact_mut(size) {
                for s in &mut b[192..208] {
                    *s = (*s & 7) + 1;
                }
                b[208..210].copy_from_slice(&f16_bits(d));
            }
        }
        other => panic!("shapes: no random fill for {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize_to_vec;

    fn stats(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    #[test]
    fn every_format_gives_finite_weights_of_about_sigma() {
        use GgmlType::*;
        let sigma = 0.02f32;
        for ty in [F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K] {
            let n = 256 * 64usize;
            let mut buf = vec![0u8; ty.bytes_for(n as u64).unwrap() as usize];
            random(ty, sigma, &mut Rng::new(7), &mut buf);
            let w = dequantize_to_vec(ty, &buf, n).unwrap();
            assert!(w.iter().all(|x| x.is_finite()), "{ty}");
            let (mean, sd) = stats(&w);
            assert!(mean.abs() < 0.2 * f64::from(sigma), "{ty}: mean {mean}");
            assert!(
                sd > 0.6 * f64::from(sigma) && sd < 1.5 * f64::from(sigma),
                "{ty}: sd {sd} for sigma {sigma}"
            );
        }
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = stream_seed(1, "blk.0.attn_q.weight", 0);
        assert_eq!(a, stream_seed(1, "blk.0.attn_q.weight", 0));
        assert_ne!(a, stream_seed(1, "blk.0.attn_q.weight", 1));
        assert_ne!(a, stream_seed(1, "blk.0.attn_k.weight", 0));
        assert_ne!(a, stream_seed(2, "blk.0.attn_q.weight", 0));
    }
}
