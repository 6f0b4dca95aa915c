//! Kernel tests on random blocks: every kernel (portable and the SIMD one this CPU runs —
//! under qemu-aarch64 that is NEON) against a float reference built from the dequantized
//! weights and activations.

use super::*;
use crate::model::sampler::Rng;

const TYPES: [GgmlType; 13] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn f16_bytes(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

/// A random row of `k` elements of `ty` with sane scales (random bytes elsewhere).
fn random_row(ty: GgmlType, k: usize, rng: &mut Rng) -> Vec<u8> {
    let bytes = ty.bytes_for(k as u64).unwrap() as usize;
    let mut row: Vec<u8> = (0..bytes).map(|_| rng.next_u64() as u8).collect();
    let scale = |rng: &mut Rng| f16_bytes((rng.next_f32() - 0.3) * 0.02);
    match ty {
        GgmlType::F32 => {
            for c in row.chunks_exact_mut(4) {
                c.copy_from_slice(&(rng.next_f32() * 2.0 - 1.0).to_le_bytes());
            }
        }
        GgmlType::F16 | GgmlType::BF16 => {
            for c in row.chunks_exact_mut(2) {
                let v = rng.next_f32() * 2.0 - 1.0;
                let b = if ty == GgmlType::F16 {
                    f16_bytes(v)
                } else {
                    ((v.to_bits() >> 16) as u16).to_le_bytes()
                };
                c.copy_from_slice(&b);
            }
        }
        _ => {
            let fields: &[usize] = match ty {
                GgmlType::Q2_K => &[80, 82],
                GgmlType::Q3_K => &[108],
                GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
                GgmlType::Q6_K => &[208],
                _ => &[0],
            };
            for b in row.chunks_exact_mut(ty.type_size()) {
                for &f in fields {
                    b[f..f + 2].copy_from_slice(&scale(rng));
                }
            }
        }
    }
    row
}

fn random_acts(k: usize, rng: &mut Rng) -> Vec<f32> {
    (0..k)
        .map(|i| (rng.next_f32() * 2.0 - 1.0) * if i % 7 == 0 { 4.0 } else { 1.0 })
        .collect()
}

/// The dot product through the given ISA's kernel (with the activation quantization it uses)
/// and the f64 reference over the same quantized activations.
fn dot_both(ty: GgmlType, isa: Isa, row: &[u8], x: &[f32]) -> (f32, f64, f64) {
    let k = x.len();
    let mut w = vec![0.0f32; k];
    dequantize_row(ty, row, &mut w);
    let (fmt, dot) = kernel(ty, isa).unwrap();
    let xq: Vec<f32>;
    let got = match dot {
        Dot::F32(f) => {
            xq = x.to_vec();
            f(row, x)
        }
        Dot::Q8(f) => {
            let mut a = vec![BlockQ8::default(); k / 32];
            quantize_q8(x, &mut a, fmt == ActFormat::Q8_1);
            xq = a
                .iter()
                .flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d))
                .collect();
            f(row, &a)
        }
        Dot::Q8K(f) => {
            let mut a = vec![ActBlockQ8K::default(); k / 256];
            quantize_q8k(x, &mut a);
            xq = a
                .iter()
                .flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d))
                .collect();
            f(row, &a)
        }
    };
    let reference: f64 = w.iter().zip(&xq).map(|(&a, &b)| a as f64 * b as f64).sum();
    let magnitude: f64 = w
        .iter()
        .zip(&xq)
        .map(|(&a, &b)| (a as f64 * b as f64).abs())
        .sum();
    (got, reference, magnitude)
}

#[test]
fn every_kernel_matches_the_dequantized_reference() {
    let mut rng = Rng::new(7);
    let isas = [Isa::Portable, Isa::detect(), Isa::Reference];
    for ty in TYPES {
        for k in [256, 512, 1024 + 256] {
            for _ in 0..20 {
                let row = random_row(ty, k, &mut rng);
                let x = random_acts(k, &mut rng);
                for isa in isas {
                    let (got, want, mag) = dot_both(ty, isa, &row, &x);
                    // Only the order of f32 additions differs from the f64 reference.
                    let tol = 2e-5 * mag + 1e-6;
                    assert!(
                        (got as f64 - want).abs() <= tol,
                        "{ty} on {isa:?}, k={k}: kernel {got}, reference {want} (tolerance {tol})"
                    );
                }
            }
        }
    }
}

/// The reference kernels take the activations unquantized, so they must agree with the f64 dot
/// of the dequantized row much more tightly than the 8-bit kernels need to.
#[test]
fn reference_kernels_are_exact_up_to_f32_rounding() {
    let mut rng = Rng::new(5);
    for ty in TYPES {
        for k in [32 * 3, 256, 1024 + 256 + 8] {
            if k % ty.block_size() != 0 {
                continue;
            }
            let row = random_row(ty, k, &mut rng);
            let x = random_acts(k, &mut rng);
            let mut w = vec![0.0f32; k];
            dequantize_row(ty, &row, &mut w);
            let want: f64 = w.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mag: f64 = w
                .iter()
                .zip(&x)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let (fmt, Dot::F32(f)) = kernel(ty, Isa::Reference).unwrap() else {
                panic!("{ty}: the reference kernel must take f32 activations");
            };
            assert_eq!(fmt, ActFormat::F32);
            let got = f(&row, &x) as f64;
            assert!(
                (got - want).abs() <= 1e-6 * mag + 1e-9,
                "{ty}, k={k}: reference kernel {got}, f64 {want}"
            );
        }
    }
}

/// The instruction set named in `PIGPU_EXPECT_ISA` is the one detected, so a run meant to test
/// SIMD kernels cannot quietly test the portable ones twice. `scripts/cross-test.sh` sets it to
/// `neon+dotprod` under qemu-aarch64; unset, there is nothing to check.
#[test]
fn the_expected_instruction_set_is_detected() {
    let Ok(want) = std::env::var("PIGPU_EXPECT_ISA") else {
        return;
    };
    assert_eq!(Isa::detect().name(), want, "PIGPU_EXPECT_ISA");
}

#[test]
fn simd_kernels_match_portable_kernels() {
    let isa = Isa::detect();
    eprintln!("testing {} kernels against portable ones", isa.name());
    let mut rng = Rng::new(11);
    for ty in TYPES {
        for _ in 0..50 {
            let k = 512;
            let row = random_row(ty, k, &mut rng);
            let x = random_acts(k, &mut rng);
            let (fast, _, mag) = dot_both(ty, isa, &row, &x);
            let (slow, _, _) = dot_both(ty, Isa::Portable, &row, &x);
            assert!(
                ((fast - slow) as f64).abs() <= 1e-5 * mag + 1e-6,
                "{ty}: {} {fast} vs portable {slow}",
                isa.name()
            );
        }
    }
}

#[test]
fn q8_quantization_matches_llama_cpp_rules() {
    let x: Vec<f32> = (0..32).map(|i| i as f32 - 12.7).collect();
    let mut b = [BlockQ8::default()];
    quantize_q8(&x, &mut b, true);
    // max |x| = x[31] → d = max / 127 (stored as f16), the largest maps to exactly 127;
    // s = d · Σq with the unrounded d, stored as f16.
    let d = x[31] / 127.0;
    assert_eq!(b[0].qs[31], 127);
    assert_eq!(b[0].d, half::f16::from_f32(d).to_f32());
    let sum: i32 = b[0].qs.iter().map(|&q| q as i32).sum();
    assert_eq!(b[0].s, half::f16::from_f32(d * sum as f32).to_f32());

    // Q8_K takes the sign of the largest-magnitude element: here it is negative.
    let mut x = vec![0.5f32; 256];
    x[3] = -2.0;
    let mut k = [ActBlockQ8K::default()];
    quantize_q8k(&x, &mut k);
    assert_eq!(k[0].qs[3], -127);
    assert!((k[0].d - 2.0 / 127.0).abs() < 1e-7);
    assert_eq!(
        k[0].bsums[0],
        k[0].qs[..16].iter().map(|&q| q as i16).sum::<i16>()
    );
}

#[test]
fn zero_activations_give_zero() {
    let mut rng = Rng::new(3);
    for ty in TYPES {
        let row = random_row(ty, 256, &mut rng);
        let (got, _, _) = dot_both(ty, Isa::detect(), &row, &[0.0; 256]);
        assert_eq!(got, 0.0, "{ty}");
    }
}

/// The ISAs this CPU can run, best first (AVX2 too when VNNI is there: both are checked).
fn runnable_isas() -> Vec<Isa> {
    let best = Isa::detect();
    let mut v = vec![best];
    if best == Isa::Avx2Vnni {
        v.push(Isa::Avx2);
    }
    v
}

/// Tiles of every size (rows and tokens not multiples of the micro-kernels' 4) give exactly
/// the one-row dot products of the same ISA: the float operations per (row, token) pair are
/// the same sequence.
#[test]
fn tile_kernels_equal_one_row_dots() {
    let mut rng = Rng::new(13);
    for isa in runnable_isas() {
        for ty in TYPES {
            let Some(tile) = tile(ty, isa) else { continue };
            let (fmt, dot) = kernel(ty, isa).unwrap();
            let (rows, k) = (37, 512);
            let w: Vec<u8> = (0..rows)
                .flat_map(|_| random_row(ty, k, &mut rng))
                .collect();
            let rb = w.len() / rows;
            for n in [1, 2, 3, 4, 5, 9, 13] {
                let x: Vec<f32> = (0..n).flat_map(|_| random_acts(k, &mut rng)).collect();
                let mut a8 = vec![BlockQ8::default(); n * k / 32];
                let mut ak = vec![ActBlockQ8K::default(); n * k / 256];
                quantize_q8(&x, &mut a8, fmt == ActFormat::Q8_1);
                quantize_q8k(&x, &mut ak);
                // Rows 3..rows (an odd start and count) into a buffer of all rows.
                let mut out = vec![f32::NAN; n * rows];
                // SAFETY: a kernel for this CPU; out has n · rows elements.
                unsafe {
                    match tile {
                        Tile::Q8(f) => f(&w, rb, 3..rows, &a8, n, out.as_mut_ptr(), rows),
                        Tile::Q8K(f) => f(&w, rb, 3..rows, &ak, n, out.as_mut_ptr(), rows),
                    }
                }
                for t in 0..n {
                    for r in 0..rows {
                        let got = out[t * rows + r];
                        if r < 3 {
                            assert!(
                                got.is_nan(),
                                "{ty} {isa:?}: row {r} outside the tile was written"
                            );
                            continue;
                        }
                        let row = &w[r * rb..(r + 1) * rb];
                        let want = match dot {
                            Dot::Q8(f) => f(row, &a8[t * k / 32..(t + 1) * k / 32]),
                            Dot::Q8K(f) => f(row, &ak[t * k / 256..(t + 1) * k / 256]),
                            Dot::F32(_) => unreachable!("tiles take quantized activations"),
                        };
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{ty} on {isa:?}, n={n}: tile {got} vs dot {want} at token {t} row {r}"
                        );
                    }
                }
            }
        }
    }
}

/// The VNNI build of the x86 kernels gives bit-identical results to the AVX2 one.
#[test]
fn vnni_kernels_equal_avx2_kernels() {
    if Isa::detect() != Isa::Avx2Vnni {
        eprintln!("no AVX-VNNI on this CPU: nothing to compare");
        return;
    }
    let mut rng = Rng::new(17);
    for ty in TYPES {
        for _ in 0..30 {
            let row = random_row(ty, 512, &mut rng);
            let x = random_acts(512, &mut rng);
            let (a, _, _) = dot_both(ty, Isa::Avx2Vnni, &row, &x);
            let (b, _, _) = dot_both(ty, Isa::Avx2, &row, &x);
            assert_eq!(a.to_bits(), b.to_bits(), "{ty}: vnni {a} vs avx2 {b}");
        }
    }
}

/// The SIMD activation quantizer gives exactly the portable definition's blocks, including
/// all-zero blocks, exact halves (ties round to even) and the largest magnitude negative.
#[test]
fn q8_quantization_simd_equals_portable() {
    let mut rng = Rng::new(19);
    let mut x = random_acts(32 * 64, &mut rng);
    x[..32].fill(0.0);
    for (i, v) in x[32..64].iter_mut().enumerate() {
        // max |x| = 127 → scale 1: these land exactly on .5 before rounding.
        *v = if i == 0 { -127.0 } else { i as f32 + 0.5 };
    }
    for with_sum in [false, true] {
        let mut a = vec![BlockQ8::default(); 64];
        let mut b = vec![BlockQ8::default(); 64];
        quantize_q8(&x, &mut a, with_sum);
        quantize_q8_portable(&x, &mut b, with_sum);
        assert_eq!(a, b, "with_sum {with_sum}");
    }
    // Q8_K: a zero block, a block whose largest magnitude appears first negative then
    // positive, ties, and random blocks.
    let mut x = random_acts(256 * 8, &mut rng);
    x[..256].fill(0.0);
    x[256 + 5] = -3.0;
    x[256 + 9] = 3.0;
    for (i, v) in x[512..768].iter_mut().enumerate() {
        *v = if i == 0 {
            127.0
        } else {
            (i % 200) as f32 - 99.5
        };
    }
    let mut a = vec![ActBlockQ8K::default(); 8];
    let mut b = vec![ActBlockQ8K::default(); 8];
    quantize_q8k(&x, &mut a);
    quantize_q8k_portable(&x, &mut b);
    assert_eq!(a, b);
}

/// CPU time of this thread, for the throughput figures below (immune to other processes).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Not a test of speed (nothing is asserted about time): prints the thread-CPU nanoseconds per
/// weight block of the one-row dot loop and of the tile kernels, per type and ISA, for tuning.
/// `cargo test --release --lib kernel_throughput -- --ignored --nocapture`
#[test]
#[ignore = "a throughput report for tuning, not a check"]
fn kernel_throughput() {
    let mut rng = Rng::new(5);
    // PIGPU_THROUGHPUT_ROWS=32768 streams the weights from memory instead of cache.
    let rows: usize = std::env::var("PIGPU_THROUGHPUT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let k: usize = std::env::var("PIGPU_THROUGHPUT_COLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1536);
    let mut isas = vec![Isa::Portable];
    #[cfg(target_arch = "x86_64")]
    isas.extend([Isa::Avx2, Isa::Avx2Vnni]);
    isas.retain(|&i| i == Isa::Portable || Isa::detect() == Isa::Avx2Vnni || i == Isa::detect());
    for ty in [
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let w: Vec<u8> = (0..rows)
            .flat_map(|_| random_row(ty, k, &mut rng))
            .collect();
        let rb = w.len() / rows;
        for n in [1usize, 64] {
            let x: Vec<f32> = (0..n).flat_map(|_| random_acts(k, &mut rng)).collect();
            let mut line = format!("{ty:>5} n={n:<3}");
            for &isa in &isas {
                let (fmt, dot) = kernel(ty, isa).unwrap();
                let mut out = vec![0.0f32; n * rows];
                let mut a8 = vec![BlockQ8::default(); n * k / 32];
                let mut ak = vec![ActBlockQ8K::default(); n * k / 256];
                quantize_q8(&x, &mut a8, fmt == ActFormat::Q8_1);
                quantize_q8k(&x, &mut ak);
                let blocks = (rows * n * k / ty.block_size()) as f64;
                let reps = (4_000_000.0 / blocks).ceil() as usize;
                let t0 = thread_cpu_ns();
                for _ in 0..reps {
                    for t in 0..n {
                        for r in 0..rows {
                            let row = &w[r * rb..(r + 1) * rb];
                            out[t * rows + r] = match dot {
                                Dot::Q8(f) => f(row, &a8[t * k / 32..(t + 1) * k / 32]),
                                Dot::Q8K(f) => f(row, &ak[t * k / 256..(t + 1) * k / 256]),
                                Dot::F32(f) => f(row, &x[t * k..(t + 1) * k]),
                            };
                        }
                    }
                }
                let dots = (thread_cpu_ns() - t0) as f64 / (reps as f64 * blocks);
                line += &format!("  {}: dot {dots:5.2} ns/blk", isa.name());
                if let Some(tile) = tile(ty, isa) {
                    let t0 = thread_cpu_ns();
                    for _ in 0..reps {
                        // SAFETY: a kernel for this CPU; out has n · rows elements.
                        unsafe {
                            match tile {
                                Tile::Q8(f) => f(&w, rb, 0..rows, &a8, n, out.as_mut_ptr(), rows),
                                Tile::Q8K(f) => f(&w, rb, 0..rows, &ak, n, out.as_mut_ptr(), rows),
                            }
                        }
                    }
                    let tiles = (thread_cpu_ns() - t0) as f64 / (reps as f64 * blocks);
                    line += &format!(" tile {tiles:5.2}");
                }
            }
            eprintln!("{line}");
        }
    }
}
