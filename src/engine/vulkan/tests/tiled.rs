//! The tiled prompt mat-mat (shaders/matmul_tiled.comp) against CPU references: every weight
//! type on each tile shape (small, medium, large, picked by the sizes), with row counts, token
//! counts and widths that are not multiples of the tile, and the fusions the prompt path uses
//! (RMSNorm, biases over mixed-type segments, residual add, SwiGLU), each on every form of the
//! kernel (`TiledKernel`: scalar, vec4, vec4 with prefetch); and the prompt attention.

use super::matmul::{assert_seg_types, check_fused, check_matmul, check_swiglu};
use super::matmul::{op_types, width_for, Matrix, TYPES};
use super::{assert_attention, attention_kind, Gpu, Rng};
use crate::engine::vulkan::ops::{GpuOp, OpKind};
use crate::engine::vulkan::tiled::TILES;
use crate::engine::vulkan::TiledKernel;
use crate::quant::GgmlType;

/// A device whose prompt ops take the tiled mat-mat in `form`.
fn gpu_with(form: TiledKernel) -> Gpu {
    let gpu = Gpu::tiled();
    gpu.kernels.set_tiled_form(form);
    gpu
}

/// Fails unless `op` runs batches on the tiled kernel in `form` (not a silent mat-vec fallback,
/// nor another form): the pipeline of every tile it may pick is that form's shader, with the
/// prefetch constant of the vec4 forms; where the op's weights mix types, the `any` variant
/// with their types as its constants 7-10 (`seg_types`).
fn assert_tiled(op: &GpuOp, form: TiledKernel) {
    let types = op_types(op);
    let OpKind::Matvec { tiled: Some(t), .. } = &op.kind else {
        panic!("the op has no tiled kernel");
    };
    for (m, n) in SHAPES {
        let (_, k) = t.pick(m as u32, n as u32);
        let (prefix, pf) = match form {
            TiledKernel::Scalar => ("tiled_", None),
            TiledKernel::Vec4 => ("tiledv_", Some(0)),
            TiledKernel::Vec4Prefetch => ("tiledv_", Some(1)),
        };
        assert!(k.name.starts_with(prefix), "{} for {}", k.name, form.name());
        if let Some(pf) = pf {
            assert_eq!(k.spec.get(6), Some(&pf), "{}: prefetch constant", k.name);
        }
        assert_seg_types(k, &types);
    }
}

/// (rows, tokens) that pick the small, medium and large tile.
const SHAPES: [(usize, usize); 3] = [(37, 11), (70, 40), (130, 67)];

fn plain(gpu: &mut Gpu, rng: &mut Rng, ty: GgmlType, rows: usize, k: usize, n_tok: usize) {
    let m = Matrix::random(gpu, rng, ty, rows, k);
    let form = gpu.kernels.tiled_form.get();
    let what = format!("tiled {} {ty} {rows}x{k} n_tok={n_tok}", form.name());
    check_matmul(gpu, rng, &m, n_tok, |op| assert_tiled(op, form), &what);
}

fn every_type_and_tile(form: TiledKernel) {
    let mut gpu = gpu_with(form);
    // Every shape must fit lavapipe, or this test would silently cover fewer tiles.
    for t in TILES {
        assert!(
            t.fits_for(form, &gpu.dev.limits),
            "tile {} does not fit the {} form",
            t.name,
            form.name()
        );
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
    gpu.check();
}

#[test]
fn tiled_matmul_matches_cpu_for_every_weight_type_and_tile() {
    every_type_and_tile(TiledKernel::Scalar);
}

#[test]
fn tiled_vec4_matmul_matches_cpu_for_every_weight_type_and_tile() {
    every_type_and_tile(TiledKernel::Vec4);
}

#[test]
fn tiled_vec4_prefetch_matmul_matches_cpu_for_every_weight_type_and_tile() {
    every_type_and_tile(TiledKernel::Vec4Prefetch);
}

/// QKV-style: three matrices of mixed types in one dispatch, RMSNorm, biases, residual add.
#[test]
fn tiled_fused_norm_bias_segments_and_residual() {
    for form in TiledKernel::ALL {
        let mut gpu = gpu_with(form);
        let mut rng = Rng::new(22);
        let segs = [
            (GgmlType::Q5_0, 50usize),
            (GgmlType::Q8_0, 20),
            (GgmlType::Q4_1, 20),
        ];
        check_fused(
            &mut gpu,
            &mut rng,
            160,
            &segs,
            &[9, 40, 70],
            |op| assert_tiled(op, form),
            &format!("tiled {} fused", form.name()),
        );
    }
}

/// Gate and up in one dispatch with SwiGLU, on each tile shape.
#[test]
fn tiled_swiglu() {
    for form in TiledKernel::ALL {
        let mut gpu = gpu_with(form);
        let mut rng = Rng::new(23);
        let n_toks = [9, 40, 100];
        check_swiglu(
            &mut gpu,
            &mut rng,
            (512, 70),
            &n_toks,
            |op| assert_tiled(op, form),
            &format!("tiled {} swiglu", form.name()),
        );
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
        let op = gpu.attention_op(
            &sbuf,
            &qbuf,
            &cache,
            &obuf,
            None,
            attention_kind((n_head, n_kv, d)),
        );
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
        // Token t sees the cache up to its own position.
        let what = format!("prompt attention d={d}");
        let kv = (&cache.k[..], &cache.v[..]);
        assert_attention(&what, &got, &q, kv, (n_head, n_kv, d), pos0, 2e-4);
        gpu.check();
    }
}
