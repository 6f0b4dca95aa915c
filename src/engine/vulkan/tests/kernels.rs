//! Each kernel against a CPU reference on random inputs, with sizes that are not multiples of
//! the block, the rows per workgroup, the tokens per workgroup or the workgroup size.

use super::{attention_kind, attention_ref, f16_round, Gpu, Rng};
use crate::engine::vulkan::kernels::{MatvecSpec, OpKind, Seg, F_ACC, F_GLU, STATE_WORDS};
use crate::quant::{dequantize, GgmlType};

fn f16_bits(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

/// Random but well-formed tensor data: random quant bits, small finite f16 scales.
pub fn random_weights(rng: &mut Rng, ty: GgmlType, rows: usize, k: usize) -> Vec<u8> {
    use GgmlType::*;
    match ty {
        F32 => {
            return rng
                .vec(rows * k, 1.0)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        F16 => return (0..rows * k).flat_map(|_| f16_bits(rng.sym(1.0))).collect(),
        _ => {}
    }
    let n = ty.bytes_for((rows * k) as u64).expect("whole blocks") as usize;
    let mut data = rng.bytes(n);
    // (offset of an f16 scale in the block, whether it may be negative)
    let scales: &[(usize, bool)] = match ty {
        Q4_0 | Q5_0 | Q8_0 => &[(0, true)],
        Q4_1 | Q5_1 => &[(0, true), (2, true)],
        Q2_K => &[(80, true), (82, false)],
        Q3_K => &[(108, true)],
        Q4_K | Q5_K => &[(0, true), (2, false)],
        Q6_K => &[(208, true)],
        _ => panic!("no generator for {ty}"),
    };
    for block in data.chunks_exact_mut(ty.type_size()) {
        for &(off, signed) in scales {
            let v = if signed {
                rng.sym(0.05)
            } else {
                rng.f32() * 0.05
            };
            block[off..off + 2].copy_from_slice(&f16_bits(v));
        }
    }
    data
}

pub fn dequant(ty: GgmlType, data: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize(ty, data, &mut out).unwrap();
    out
}

/// y[t][r] = Σ_i w[r][i] x[t][i] in f64, and Σ |w x| for the tolerance.
pub fn matmul_ref(
    w: &[f32],
    rows: usize,
    k: usize,
    x: &[f32],
    n_tok: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0f32; n_tok * rows];
    let mut mag = vec![0f32; n_tok * rows];
    for t in 0..n_tok {
        for r in 0..rows {
            let (mut s, mut m) = (0f64, 0f64);
            for i in 0..k {
                let p = w[r * k + i] as f64 * x[t * k + i] as f64;
                s += p;
                m += p.abs();
            }
            y[t * rows + r] = s as f32;
            mag[t * rows + r] = m as f32;
        }
    }
    (y, mag)
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], mag: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.len() {
        let tol = 2e-5 * mag[i] + 1e-5;
        assert!(
            (got[i] - want[i]).abs() <= tol,
            "{what}: element {i}: gpu {} cpu {} (tolerance {tol})",
            got[i],
            want[i]
        );
    }
}

pub const TYPES: [GgmlType; 12] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// A width that is a whole number of blocks but not of workgroup-size × 32 elements.
pub fn width_for(ty: GgmlType) -> usize {
    match ty.block_size() {
        1 => 100,
        32 => 7 * 32,
        _ => 3 * 256,
    }
}

#[test]
fn matvec_and_matmul_match_cpu_for_every_weight_type() {
    for lane in [0, 1, 2] {
        matvec_every_type(lane);
    }
}

/// A width of at least 1024 (the subgroup path's 128-lane workgroups), not a multiple of the
/// lanes × the weights per lane.
fn wide_width_for(ty: GgmlType) -> usize {
    match ty.block_size() {
        1 => 1030,
        32 => 37 * 32,
        _ => 5 * 256,
    }
}

fn matvec_every_type(lane: u32) {
    let mut gpu = Gpu::with_lane(lane);
    let mut rng = Rng::new(1);
    let rows = 37;
    let widths: &[fn(GgmlType) -> usize] = if lane == 2 {
        &[width_for, wide_width_for]
    } else {
        &[width_for]
    };
    for (ty, width) in TYPES
        .iter()
        .flat_map(|&t| widths.iter().map(move |w| (t, w)))
    {
        let k = width(ty);
        if lane == 2 {
            assert_eq!(
                gpu.kernels.matvec_shape()[2],
                2,
                "the subgroup path on this device"
            );
        }
        let wb = random_weights(&mut rng, ty, rows, k);
        let w = dequant(ty, &wb, rows * k);
        let wbuf = gpu.buf(&wb);
        for n_tok in [1usize, 11] {
            let x = rng.vec(n_tok * k, 1.0);
            let xbuf = gpu.buf_f32(&x);
            let ybuf = gpu.buf_f32(&vec![0.0; n_tok * rows]);
            let op = gpu
                .ops()
                .matvec(MatvecSpec {
                    x: xbuf.all(),
                    segs: &[Seg {
                        w: wbuf.all(),
                        rows: rows as u32,
                        ty,
                        bias: None,
                    }],
                    norm: None,
                    bias: None,
                    y: ybuf.all(),
                    k: k as u32,
                    x_stride: k as u32,
                    y_stride: rows as u32,
                    x_off: 0,
                    y_off: 0,
                    flags: 0,
                    eps: 0.0,
                })
                .unwrap();
            gpu.run(&[(&op, n_tok as u32)]);
            let got = gpu.read_f32(&ybuf, n_tok * rows);
            let (want, mag) = matmul_ref(&w, rows, k, &x, n_tok);
            assert_close(
                &format!("{ty} k={k} n_tok={n_tok} lane={lane}"),
                &got,
                &want,
                &mag,
            );
        }
        gpu.check();
    }
}

/// QKV-style: three matrices of mixed types in one dispatch, RMSNorm fused in, biases; then the
/// same output accumulated onto itself (residual add).
#[test]
fn fused_norm_bias_segments_and_residual() {
    for lane in [0, 1, 2] {
        fused_norm_bias(lane);
    }
}

fn fused_norm_bias(lane: u32) {
    let mut gpu = Gpu::with_lane(lane);
    let mut rng = Rng::new(2);
    let k = 96;
    let segs = [
        (GgmlType::Q5_0, 21usize),
        (GgmlType::Q8_0, 6),
        (GgmlType::Q4_1, 6),
    ];
    let total: usize = segs.iter().map(|s| s.1).sum();
    let nw = rng.vec(k, 1.0);
    let bias = rng.vec(total, 0.5);
    let eps = 1e-6f32;
    let nwbuf = gpu.buf_f32(&nw);
    let bbuf = gpu.buf_f32(&bias);
    let mut wbufs = Vec::new();
    let mut wall = Vec::new();
    for &(ty, rows) in &segs {
        let wb = random_weights(&mut rng, ty, rows, k);
        wall.extend(dequant(ty, &wb, rows * k));
        wbufs.push(gpu.buf(&wb));
    }
    for n_tok in [1usize, 9] {
        let x = rng.vec(n_tok * k, 2.0);
        let xbuf = gpu.buf_f32(&x);
        let y0 = rng.vec(n_tok * total, 1.0);
        let ybuf = gpu.buf_f32(&y0);
        let mut off = 0u32;
        let seg_list: Vec<Seg> = segs
            .iter()
            .zip(&wbufs)
            .map(|(&(ty, rows), b)| {
                let s = Seg {
                    w: b.all(),
                    rows: rows as u32,
                    ty,
                    bias: Some(off),
                };
                off += rows as u32;
                s
            })
            .collect();
        let spec = |flags| MatvecSpec {
            x: xbuf.all(),
            segs: &seg_list,
            norm: Some(nwbuf.all()),
            bias: Some(bbuf.all()),
            y: ybuf.all(),
            k: k as u32,
            x_stride: k as u32,
            y_stride: total as u32,
            x_off: 0,
            y_off: 0,
            flags,
            eps,
        };
        let op = gpu.ops().matvec(spec(F_ACC)).unwrap();
        gpu.run(&[(&op, n_tok as u32)]);
        let got = gpu.read_f32(&ybuf, n_tok * total);
        // Reference: normalise, multiply, add bias, add the previous y.
        let mut xn = x.clone();
        for t in 0..n_tok {
            let row = &x[t * k..(t + 1) * k];
            let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / k as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            for i in 0..k {
                xn[t * k + i] = (row[i] as f64 * s * nw[i] as f64) as f32;
            }
        }
        let (mut want, mag) = matmul_ref(&wall, total, k, &xn, n_tok);
        for t in 0..n_tok {
            for r in 0..total {
                want[t * total + r] += bias[r] + y0[t * total + r];
            }
        }
        assert_close(&format!("fused n_tok={n_tok}"), &got, &want, &mag);
    }
}

/// Gate and up in one dispatch with SwiGLU: y = silu(gate·x) * (up·x).
#[test]
fn fused_swiglu() {
    for lane in [0, 1, 2] {
        swiglu(lane);
    }
}

fn swiglu(lane: u32) {
    let mut gpu = Gpu::with_lane(lane);
    let mut rng = Rng::new(3);
    let (k, rows) = (512usize, 19usize);
    let gb = random_weights(&mut rng, GgmlType::Q4_K, rows, k);
    let ub = random_weights(&mut rng, GgmlType::Q6_K, rows, k);
    let (g, u) = (
        dequant(GgmlType::Q4_K, &gb, rows * k),
        dequant(GgmlType::Q6_K, &ub, rows * k),
    );
    let (gbuf, ubuf) = (gpu.buf(&gb), gpu.buf(&ub));
    for n_tok in [1usize, 10] {
        let x = rng.vec(n_tok * k, 1.0);
        let xbuf = gpu.buf_f32(&x);
        let ybuf = gpu.buf_f32(&vec![0.0; n_tok * rows]);
        let segs = [
            Seg {
                w: gbuf.all(),
                rows: rows as u32,
                ty: GgmlType::Q4_K,
                bias: None,
            },
            Seg {
                w: ubuf.all(),
                rows: rows as u32,
                ty: GgmlType::Q6_K,
                bias: None,
            },
        ];
        let op = gpu
            .ops()
            .matvec(MatvecSpec {
                x: xbuf.all(),
                segs: &segs,
                norm: None,
                bias: None,
                y: ybuf.all(),
                k: k as u32,
                x_stride: k as u32,
                y_stride: rows as u32,
                x_off: 0,
                y_off: 0,
                flags: F_GLU,
                eps: 0.0,
            })
            .unwrap();
        gpu.run(&[(&op, n_tok as u32)]);
        let got = gpu.read_f32(&ybuf, n_tok * rows);
        let (gy, gm) = matmul_ref(&g, rows, k, &x, n_tok);
        let (uy, um) = matmul_ref(&u, rows, k, &x, n_tok);
        for i in 0..got.len() {
            let silu = gy[i] / (1.0 + (-gy[i]).exp());
            let want = silu * uy[i];
            let tol = 1e-4 * (gm[i] * uy[i].abs() + um[i] * gy[i].abs()) + 1e-5;
            assert!(
                (got[i] - want).abs() <= tol,
                "swiglu {i}: gpu {} cpu {want}",
                got[i]
            );
        }
    }
}

/// Embedding rows from a table bound in two pieces, by token buffer and by device state.
#[test]
fn embedding_lookup_across_pieces() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(4);
    let ty = GgmlType::Q6_K;
    let (dim, rows_a, rows_b) = (256usize, 5usize, 4usize);
    let a = random_weights(&mut rng, ty, rows_a, dim);
    let b = random_weights(&mut rng, ty, rows_b, dim);
    let table: Vec<f32> = [dequant(ty, &a, rows_a * dim), dequant(ty, &b, rows_b * dim)].concat();
    let (abuf, bbuf) = (gpu.buf(&a), gpu.buf(&b));
    let tokens = [7u32, 0, 4, 5, 8];
    let tbuf = gpu.buf_u32(&tokens);
    let mut state = vec![0u32; STATE_WORDS];
    state[2] = 6;
    let sbuf = gpu.buf_u32(&state);
    let out = gpu.buf_f32(&vec![0.0; tokens.len() * dim]);
    let pieces = [(abuf.all(), rows_a as u32), (bbuf.all(), rows_b as u32)];
    let op = gpu
        .ops()
        .embed(
            sbuf.all(),
            tbuf.all(),
            &pieces,
            ty,
            dim as u32,
            false,
            out.all(),
        )
        .unwrap();
    gpu.run(&[(&op, tokens.len() as u32)]);
    let got = gpu.read_f32(&out, tokens.len() * dim);
    for (t, &tok) in tokens.iter().enumerate() {
        let want = &table[tok as usize * dim..(tok as usize + 1) * dim];
        assert_eq!(&got[t * dim..(t + 1) * dim], want, "token {tok}");
    }
    let op = gpu
        .ops()
        .embed(
            sbuf.all(),
            tbuf.all(),
            &pieces,
            ty,
            dim as u32,
            true,
            out.all(),
        )
        .unwrap();
    gpu.run(&[(&op, 1)]);
    assert_eq!(
        &gpu.read_f32(&out, dim)[..],
        &table[6 * dim..7 * dim],
        "token from state"
    );
}

fn rope_ref(
    x: &mut [f32],
    n_heads: usize,
    d: usize,
    n_rot: usize,
    pos: usize,
    neox: bool,
    base: f32,
) {
    for h in 0..n_heads {
        let v = &mut x[h * d..(h + 1) * d];
        for j in 0..n_rot / 2 {
            let theta = pos as f64 * (base as f64).powf(-2.0 * j as f64 / n_rot as f64);
            let (s, c) = theta.sin_cos();
            let (a, b) = if neox {
                (j, j + n_rot / 2)
            } else {
                (2 * j, 2 * j + 1)
            };
            let (xa, xb) = (v[a] as f64, v[b] as f64);
            v[a] = (xa * c - xb * s) as f32;
            v[b] = (xa * s + xb * c) as f32;
        }
    }
}

/// RoPE (both styles) + KV write, then causal attention with grouped-query heads, against a CPU
/// reference; the batch starts at a non-zero position so earlier cache rows are used too.
#[test]
fn rope_kv_and_attention() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(5);
    let (n_head, n_kv, d) = (6usize, 2usize, 64usize);
    let (qd, kvd) = (n_head * d, n_kv * d);
    let (pos0, n_tok, n_ctx) = (70usize, 5usize, 80usize);
    for neox in [false, true] {
        let base = 10000.0f32;
        let qkv = rng.vec(n_tok * (qd + 2 * kvd), 1.0);
        // Cache rows before pos0 hold earlier tokens (already f16).
        let cache = gpu.kv_cache(&mut rng, n_ctx, kvd);
        let sbuf = gpu.state_at(pos0);
        let qkvbuf = gpu.buf_f32(&qkv);
        let freqs: Vec<f32> = (0..d / 2)
            .map(|j| base.powf(-2.0 * j as f32 / d as f32))
            .collect();
        let fbuf = gpu.buf_f32(&freqs);
        let qbuf = gpu.buf_f32(&vec![0.0; n_tok * qd]);
        let obuf = gpu.buf_f32(&vec![0.0; n_tok * qd]);
        let rope = gpu
            .ops()
            .rope_kv(
                sbuf.all(),
                qkvbuf.all(),
                qbuf.all(),
                cache.kbuf.all(),
                cache.vbuf.all(),
                fbuf.all(),
                OpKind::RopeKv {
                    q_dim: qd as u32,
                    kv_dim: kvd as u32,
                    head_dim: d as u32,
                    n_rot: d as u32,
                    neox,
                },
            )
            .unwrap();
        let attn = gpu
            .ops()
            .attention(
                sbuf.all(),
                qbuf.all(),
                cache.kbuf.all(),
                cache.vbuf.all(),
                obuf.all(),
                None,
                attention_kind((n_head, n_kv, d)),
            )
            .unwrap();
        gpu.run(&[(&rope, n_tok as u32), (&attn, n_tok as u32)]);

        // Reference.
        let (mut kc, mut vc) = (cache.k.clone(), cache.v.clone());
        let mut qr = vec![0f32; n_tok * qd];
        for t in 0..n_tok {
            let row = &qkv[t * (qd + 2 * kvd)..(t + 1) * (qd + 2 * kvd)];
            let mut q = row[..qd].to_vec();
            let mut k = row[qd..qd + kvd].to_vec();
            rope_ref(&mut q, n_head, d, d, pos0 + t, neox, base);
            rope_ref(&mut k, n_kv, d, d, pos0 + t, neox, base);
            qr[t * qd..(t + 1) * qd].copy_from_slice(&q);
            for i in 0..kvd {
                kc[(pos0 + t) * kvd + i] = f16_round(k[i]);
                vc[(pos0 + t) * kvd + i] = f16_round(row[qd + kvd + i]);
            }
        }
        let got_q = gpu.read_f32(&qbuf, n_tok * qd);
        for i in 0..got_q.len() {
            assert!(
                (got_q[i] - qr[i]).abs() < 2e-4,
                "rope q[{i}] neox={neox}: {} vs {}",
                got_q[i],
                qr[i]
            );
        }
        let got_o = gpu.read_f32(&obuf, n_tok * qd);
        for t in 0..n_tok {
            // Token t sees the cache up to its own position (the batch's rows written above).
            let want = attention_ref(
                &qr[t * qd..(t + 1) * qd],
                &kc,
                &vc,
                (n_head, n_kv, d),
                pos0 + t + 1,
            );
            for (j, want) in want.iter().enumerate() {
                let got = got_o[t * qd + j] as f64;
                let (h, i) = (j / d, j % d);
                assert!(
                    (got - want).abs() < 2e-3,
                    "attention t={t} h={h} i={i} neox={neox}: {got} vs {want}"
                );
            }
        }
        gpu.check();
    }
}

/// CPU time of this process (all threads, lavapipe's included): on a shared machine a steadier
/// measure than wall time.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Times mat-vecs / mat-mats by GPU timestamps: each case of `PIGPU_VK_BENCH` (`TYPE:ROWS:K:NTOK;...`, default
/// a head-sized Q8_0 mat-vec) on each shape of `PIGPU_VK_BENCH_SHAPES` (`WG,ROWS,LANE;...`). A
/// tuning aid, not a test: `cargo test --release --lib bench_matvec -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn bench_matvec() {
    let shapes = std::env::var("PIGPU_VK_BENCH_SHAPES").unwrap_or_else(|_| "32,4,1".into());
    let cases = std::env::var("PIGPU_VK_BENCH").unwrap_or_else(|_| "q8_0:49152:576:1".into());
    let mut rng = Rng::new(9);
    for case in cases.split(';') {
        let f: Vec<&str> = case.split(':').collect();
        let ty = TYPES
            .into_iter()
            .find(|t| t.to_string().eq_ignore_ascii_case(f[0]))
            .expect("weight type");
        let (rows, k, n_tok): (usize, usize, usize) = (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        let wb = random_weights(&mut rng, ty, rows, k);
        for shape in shapes.split(';') {
            let sh: Vec<u32> = shape.split(',').map(|v| v.parse().unwrap()).collect();
            let mut gpu = Gpu::open_shapes([sh[0], sh[1], sh[2]], [sh[0], sh[1], sh[2]]);
            let wbuf = gpu.buf(&wb);
            let xbuf = gpu.buf_f32(&rng.vec(k * n_tok, 1.0));
            let nw = gpu.buf_f32(&rng.vec(k, 1.0));
            let ybuf = gpu.buf_f32(&vec![0.0; rows * n_tok]);
            let op = gpu
                .ops()
                .matvec(MatvecSpec {
                    x: xbuf.all(),
                    segs: &[Seg {
                        w: wbuf.all(),
                        rows: rows as u32,
                        ty,
                        bias: None,
                    }],
                    norm: Some(nw.all()),
                    bias: None,
                    y: ybuf.all(),
                    k: k as u32,
                    x_stride: k as u32,
                    y_stride: rows as u32,
                    x_off: 0,
                    y_off: 0,
                    flags: 0,
                    eps: 1e-5,
                })
                .unwrap();
            gpu.run(&[(&op, n_tok as u32)]);
            let reps = 3;
            // GPU time from timestamps around the dispatch (best of `reps`), and the process's
            // CPU time (on lavapipe, the shader's own work; steadier than wall time on a shared
            // machine).
            let mut gpu_ns = f64::INFINITY;
            let c0 = cpu_seconds();
            for _ in 0..reps {
                gpu_ns = gpu_ns.min(gpu.run_timed(&[(&op, n_tok as u32)])[0]);
            }
            let c = (cpu_seconds() - c0) / reps as f64;
            let wbytes = wb.len() as f64;
            eprintln!(
                "{ty} {rows}x{k} x{n_tok} shape {shape}: {:.1} µs GPU ({:.1} GB/s of weights, \
                 {:.0} M weights·tokens/s), {:.2} ms CPU ({:.0} M weights·tokens per CPU-s)",
                gpu_ns / 1e3,
                wbytes / gpu_ns,
                (rows * k * n_tok) as f64 / gpu_ns * 1e3,
                c * 1e3,
                (rows * k * n_tok) as f64 / c / 1e6
            );
        }
    }
}
