//! The norm pass (`shaders/rms_norm.comp`, `Tuning::norm_pass`): the kernel against an f64
//! reference on both reductions, and the products over normed rows (QKV-style, on every mat-vec
//! path and the tiled mat-mat) with the pass in place of the fused norm.

use super::matmul::check_fused;
use super::{Gpu, Rng};
use crate::engine::vulkan::kernels::F_NORM;
use crate::engine::vulkan::ops::{GpuOp, OpKind};
use crate::quant::GgmlType;

/// What the untouched floats of the output hold: any change to them is a write out of bounds.
const UNTOUCHED: f32 = 1234.5;

/// `rows` rows of `n` floats, `stride` apart from float `off` on, through the pass's kernel
/// (`subgroup`: its subgroup reduction, where the device has one); every row against f64, and
/// every float outside the rows unchanged.
fn check_rows(
    gpu: &mut Gpu,
    rng: &mut Rng,
    subgroup: bool,
    n: usize,
    (rows, stride, off): (usize, usize, usize),
) {
    let len = off + rows * stride + 3;
    let x = rng.vec(len, 3.0);
    let w = rng.vec(n, 1.5);
    let eps = 1e-5f32;
    let (xb, wb) = (gpu.buf_f32(&x), gpu.buf_f32(&w));
    let yb = gpu.buf_f32(&vec![UNTOUCHED; len]);
    let kernel = gpu.kernels.rms_norm(subgroup).unwrap();
    let set = gpu
        .arena
        .set(&kernel, &[&[xb.all()], &[wb.all()], &[yb.all()]])
        .unwrap();
    let op = GpuOp {
        kernel,
        set,
        kind: OpKind::RmsNorm {
            n: n as u32,
            eps,
            stride: stride as u32,
            off: off as u32,
        },
    };
    gpu.run(&[(&op, rows as u32)]);
    let got = gpu.read_f32(&yb, len);
    let what = format!("rms_norm subgroup={subgroup} n={n} rows={rows} stride={stride} off={off}");
    let mut inside = vec![false; len];
    for r in 0..rows {
        let base = off + r * stride;
        let row = &x[base..base + n];
        let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
        let s = 1.0 / (ms + eps as f64).sqrt();
        for i in 0..n {
            let want = row[i] as f64 * s * w[i] as f64;
            let g = got[base + i] as f64;
            assert!(
                (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{what}: row {r} [{i}]: {g} vs {want}"
            );
            inside[base + i] = true;
        }
    }
    for (j, (&g, &inside)) in got.iter().zip(&inside).enumerate() {
        assert!(
            inside || g == UNTOUCHED,
            "{what}: float {j} outside the rows: {g}"
        );
    }
}

/// Odd and even widths, below and above the workgroup, packed rows (vec4 loads where the width
/// is a multiple of 4) and padded rows from an offset (scalar loads where they do not start on
/// a vec4), on both reductions.
#[test]
fn rms_norm_pass_matches_f64_reference() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(11);
    let sg = gpu.dev.features.subgroup_arith;
    for subgroup in [false, true] {
        for n in [1usize, 3, 7, 64, 577, 1000, 3072] {
            check_rows(&mut gpu, &mut rng, subgroup, n, (5, n, 0));
            check_rows(&mut gpu, &mut rng, subgroup, n, (3, n + 5, 7));
            check_rows(&mut gpu, &mut rng, subgroup, n, (2, n + 4, 8));
        }
        gpu.check();
    }
    let names: Vec<String> = [false, true]
        .iter()
        .map(|&s| gpu.kernels.rms_norm(s).unwrap().name.clone())
        .collect();
    let want_sg = if sg { "rms_norm_sg" } else { "rms_norm" };
    assert_eq!(
        names,
        ["rms_norm", want_sg],
        "the tree and the device's choice"
    );
}

fn assert_unnormed(op: &GpuOp) {
    assert!(
        matches!(&op.kind, OpKind::Matvec { flags, .. } if flags & F_NORM == 0),
        "the product after the pass must not norm again"
    );
}

/// QKV-style products (mixed types, biases, residual) over rows normed by the pass, on the
/// tree, lane and subgroup mat-vec paths (1 token, and the 8-token mat-mat over 9) and the tiled
/// mat-mat: the fused-norm reference of `check_fused`.
#[test]
fn products_after_the_norm_pass_match_the_fused_reference() {
    let segs = [
        (GgmlType::Q5_0, 21usize),
        (GgmlType::Q8_0, 6),
        (GgmlType::Q4_K, 6),
    ];
    for lane in [0, 1, 2] {
        let (mut gpu, mut rng) = (Gpu::with_lane(lane), Rng::new(12));
        gpu.norm_pass = true;
        let label = format!("norm pass, lane {lane}");
        check_fused(
            &mut gpu,
            &mut rng,
            256,
            &segs,
            &[1, 9],
            assert_unnormed,
            &label,
        );
    }
    let (mut gpu, mut rng) = (Gpu::tiled(), Rng::new(13));
    gpu.norm_pass = true;
    check_fused(
        &mut gpu,
        &mut rng,
        512,
        &segs,
        &[40],
        assert_unnormed,
        "norm pass, tiled",
    );
}
