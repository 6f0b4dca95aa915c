//! The tiled prompt mat-mat (shaders/matmul_tiled.comp) against CPU references: every weight
//! type on each tile shape (small, medium, large, picked by the sizes), with row counts, token
//! counts and widths that are not multiples of the tile, and the fusions the prompt path uses
//! (RMSNorm, biases over mixed-type segments, residual add, SwiGLU); and the prompt attention.

use super::kernels::{assert_close, dequant, matmul_ref, random_weights, width_for, TYPES};
use super::{attention_kind, attention_ref, Gpu, Rng};
use crate::engine::vulkan::kernels::{GpuOp, MatvecSpec, OpKind, Seg, F_ACC, F_GLU};
use crate::engine::vulkan::tiled::TILES;
use crate::quant::GgmlType;

/// (rows, tokens) that pick the small, medium and large tile.
/// Fails unless `op` runs batches on the tiled kernel (not a silent mat-vec fallback).
fn assert_tiled(op: &GpuOp) {
    assert!(
        matches!(&op.kind, OpKind::Matvec { tiled: Some(_), .. }),
        "the op has no tiled kernel"
    );
}

const SHAPES: [(usize, usize); 3] = [(37, 11), (70, 40), (130, 67)];

fn plain(gpu: &mut Gpu, rng: &mut Rng, ty: GgmlType, rows: usize, k: usize, n_tok: usize) {
    let wb = random_weights(rng, ty, rows, k);
    let w = dequant(ty, &wb, rows * k);
    let wbuf = gpu.buf(&wb);
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
    assert_tiled(&op);
    gpu.run(&[(&op, n_tok as u32)]);
    let got = gpu.read_f32(&ybuf, n_tok * rows);
    let (want, mag) = matmul_ref(&w, rows, k, &x, n_tok);
    assert_close(
        &format!("tiled {ty} {rows}x{k} n_tok={n_tok}"),
        &got,
        &want,
        &mag,
    );
}

#[test]
fn tiled_matmul_matches_cpu_for_every_weight_type_and_tile() {
    let mut gpu = Gpu::tiled();
    // Every shape must fit lavapipe, or this test would silently cover fewer tiles.
    for t in TILES {
        assert!(t.fits(&gpu.dev.limits), "tile {} does not fit", t.name);
    }
    let mut rng = Rng::new(21);
    for ty in TYPES {
        for (rows, n_tok) in SHAPES {
            plain(&mut gpu, &mut rng, ty, rows, width_for(ty), n_tok);
        }
        gpu.check();
    }
    // A width that is not a multiple of 4 (scalar activation loads) nor of the tile's k step.
    plain(&mut gpu, &mut rng, GgmlType::F32, 70, 98, 40);
    plain(&mut gpu, &mut rng, GgmlType::F16, 130, 50, 67);
}

/// QKV-style: three matrices of mixed types in one dispatch, RMSNorm, biases, residual add.
#[test]
fn tiled_fused_norm_bias_segments_and_residual() {
    let mut gpu = Gpu::tiled();
    let mut rng = Rng::new(22);
    let k = 160;
    let segs = [
        (GgmlType::Q5_0, 50usize),
        (GgmlType::Q8_0, 20),
        (GgmlType::Q4_1, 20),
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
    for n_tok in [9usize, 40, 70] {
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
        let op = gpu
            .ops()
            .matvec(MatvecSpec {
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
                flags: F_ACC,
                eps,
            })
            .unwrap();
        assert_tiled(&op);
        gpu.run(&[(&op, n_tok as u32)]);
        let got = gpu.read_f32(&ybuf, n_tok * total);
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
        assert_close(&format!("tiled fused n_tok={n_tok}"), &got, &want, &mag);
    }
}

/// Gate and up in one dispatch with SwiGLU, on each tile shape.
#[test]
fn tiled_swiglu() {
    let mut gpu = Gpu::tiled();
    let mut rng = Rng::new(23);
    let (k, rows) = (512usize, 70usize);
    let gb = random_weights(&mut rng, GgmlType::Q4_K, rows, k);
    let ub = random_weights(&mut rng, GgmlType::Q6_K, rows, k);
    let (g, u) = (
        dequant(GgmlType::Q4_K, &gb, rows * k),
        dequant(GgmlType::Q6_K, &ub, rows * k),
    );
    let (gbuf, ubuf) = (gpu.buf(&gb), gpu.buf(&ub));
    for n_tok in [9usize, 40, 100] {
        let x = rng.vec(n_tok * k, 1.0);
        let xbuf = gpu.buf_f32(&x);
        let ybuf = gpu.buf_f32(&vec![0.0; n_tok * rows]);
        let seg = |w: &super::super::buffer::Buffer, ty| Seg {
            w: w.all(),
            rows: rows as u32,
            ty,
            bias: None,
        };
        let op = gpu
            .ops()
            .matvec(MatvecSpec {
                x: xbuf.all(),
                segs: &[seg(&gbuf, GgmlType::Q4_K), seg(&ubuf, GgmlType::Q6_K)],
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
        assert_tiled(&op);
        gpu.run(&[(&op, n_tok as u32)]);
        let got = gpu.read_f32(&ybuf, n_tok * rows);
        let (gy, gm) = matmul_ref(&g, rows, k, &x, n_tok);
        let (uy, um) = matmul_ref(&u, rows, k, &x, n_tok);
        for i in 0..got.len() {
            let want = gy[i] / (1.0 + (-gy[i]).exp()) * uy[i];
            let tol = 1e-4 * (gm[i] * uy[i].abs() + um[i] * gy[i].abs()) + 1e-5;
            assert!(
                (got[i] - want).abs() <= tol,
                "tiled swiglu n_tok={n_tok} element {i}: gpu {} cpu {want}",
                got[i]
            );
        }
    }
}

/// The prompt attention (query rows per workgroup, K/V tiles in shared memory) against an f64
/// reference: grouped-query heads, a batch that is not a multiple of the rows per workgroup,
/// starting deep enough that several key tiles precede the causal diagonal; head sizes 64 and
/// 128.
#[test]
fn prompt_attention_matches_cpu() {
    let mut gpu = Gpu::tiled();
    let mut rng = Rng::new(24);
    for (d, pos0, n_tok) in [(64usize, 70usize, 37usize), (128, 5, 20)] {
        let (n_head, n_kv) = (6usize, 2usize);
        let (qd, kvd, n_ctx) = (n_head * d, n_kv * d, pos0 + n_tok + 3);
        let cache = gpu.kv_cache(&mut rng, n_ctx, kvd);
        let q = rng.vec(n_tok * qd, 1.0);
        let sbuf = gpu.state_at(pos0);
        let qbuf = gpu.buf_f32(&q);
        let obuf = gpu.buf_f32(&vec![0.0; n_tok * qd]);
        let op = gpu
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
        assert!(
            matches!(
                &op.kind,
                OpKind::Attention {
                    prompt: Some(_),
                    ..
                }
            ),
            "no prompt attention kernel for head size {d}"
        );
        gpu.run(&[(&op, n_tok as u32)]);
        let got = gpu.read_f32(&obuf, n_tok * qd);
        for t in 0..n_tok {
            // Token t sees the cache up to its own position.
            let want = attention_ref(
                &q[t * qd..(t + 1) * qd],
                &cache.k,
                &cache.v,
                (n_head, n_kv, d),
                pos0 + t + 1,
            );
            for (j, want) in want.iter().enumerate() {
                let g = got[t * qd + j] as f64;
                let (h, i) = (j / d, j % d);
                assert!(
                    (g - want).abs() < 2e-4,
                    "prompt attention d={d} t={t} h={h} i={i}: {g} vs {want}"
                );
            }
        }
        gpu.check();
    }
}
