//! Mat-vec / mat-mat scaffolding shared by the kernel, tiled and shape tests: random but
//! well-formed weight matrices on the device with their dequantized values, the op spec for
//! densely packed rows, and the three products the engine dispatches (plain, QKV-style fused,
//! SwiGLU) checked against f64 CPU references.

use super::{Gpu, Rng};
use crate::engine::vulkan::buffer::Buffer;
use crate::engine::vulkan::kernels::{one_type, Seg, F_ACC, F_GLU};
use crate::engine::vulkan::ops::{GpuOp, MatvecSpec, OpKind};
use crate::engine::vulkan::pipeline::GpuKernel;
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

/// The weight segments (rows, type) of mat-vec op `op`.
pub fn op_types(op: &GpuOp) -> Vec<(u32, GgmlType)> {
    let OpKind::Matvec { segs, .. } = &op.kind else {
        panic!("{}: not a mat-vec op", op.kernel.name);
    };
    segs.iter().map(|s| (s.0, s.1)).collect()
}

/// Where `types` (rows, type) mix weight types, GPU-path kernel `k` must be the `any` variant
/// with each segment's type as its constants (`kernels::seg_types`, one dequantizer per
/// segment): 7-10 on the subgroup mat-vec and the tiled mat-mats, 5-8 on the tree path.
pub fn assert_seg_types(k: &GpuKernel, types: &[(u32, GgmlType)]) {
    if one_type(types).is_some() {
        return;
    }
    assert!(
        k.name.contains("_any_") && k.name.contains("_ty"),
        "{}",
        k.name
    );
    let want: Vec<u32> = (0..4)
        .map(|i| types.get(i).unwrap_or(&types[0]).1.id())
        .collect();
    let at = if k.name.starts_with("matvecsg") || k.name.starts_with("tiled") {
        7
    } else {
        5
    };
    assert_eq!(
        k.spec.get(at..at + 4),
        Some(&want[..]),
        "{}: segment types",
        k.name
    );
}

/// A width that is a whole number of blocks but not of workgroup-size × 32 elements.
pub fn width_for(ty: GgmlType) -> usize {
    match ty.block_size() {
        1 => 100,
        32 => 7 * 32,
        _ => 3 * 256,
    }
}

/// One segment: all `rows` of the matrix of type `ty` in `w`, no bias.
pub fn seg(w: &Buffer, ty: GgmlType, rows: usize) -> Seg {
    Seg {
        w: w.all(),
        rows: rows as u32,
        ty,
        bias: None,
    }
}

/// `y = W·x` over `segs` with x and y packed densely by token (`k` and `y_rows` floats a
/// token), nothing fused; a test adds norm, bias, flags or eps by struct update.
pub fn dense<'a>(
    x: &Buffer,
    segs: &'a [Seg],
    y: &Buffer,
    k: usize,
    y_rows: usize,
) -> MatvecSpec<'a> {
    MatvecSpec {
        x: x.all(),
        segs,
        norm: None,
        bias: None,
        y: y.all(),
        k: k as u32,
        x_stride: k as u32,
        y_stride: y_rows as u32,
        x_off: 0,
        y_off: 0,
        flags: 0,
        eps: 0.0,
    }
}

/// A random matrix (`random_weights`) on the device, with its dequantized values for the
/// reference.
pub struct Matrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub k: usize,
    pub w: Vec<f32>,
    pub buf: Buffer,
}

impl Matrix {
    pub fn random(gpu: &mut Gpu, rng: &mut Rng, ty: GgmlType, rows: usize, k: usize) -> Matrix {
        let wb = random_weights(rng, ty, rows, k);
        Matrix {
            ty,
            rows,
            k,
            w: dequant(ty, &wb, rows * k),
            buf: gpu.buf(&wb),
        }
    }

    pub fn seg(&self) -> Seg {
        seg(&self.buf, self.ty, self.rows)
    }
}

/// `y = W·x` for `n_tok` random tokens on the kernel the op builder picks, against `matmul_ref`
/// (`assert_close`); `inspect` sees the op before it runs (to assert which kernel it got).
pub fn check_matmul(
    gpu: &mut Gpu,
    rng: &mut Rng,
    m: &Matrix,
    n_tok: usize,
    inspect: impl Fn(&GpuOp),
    what: &str,
) {
    let (rows, k) = (m.rows, m.k);
    let x = rng.vec(n_tok * k, 1.0);
    let xbuf = gpu.buf_f32(&x);
    let ybuf = gpu.buf_f32(&vec![0.0; n_tok * rows]);
    let segs = [m.seg()];
    let op = gpu
        .ops()
        .matvec(dense(&xbuf, &segs, &ybuf, k, rows))
        .unwrap();
    inspect(&op);
    gpu.run(&[(&op, n_tok as u32)]);
    let got = gpu.read_f32(&ybuf, n_tok * rows);
    let (want, mag) = matmul_ref(&m.w, rows, k, &x, n_tok);
    assert_close(what, &got, &want, &mag);
}

/// QKV-style: the matrices `segs` (type, rows) of width `k` in one dispatch, RMSNorm fused in,
/// a bias per row, the result added onto y (residual), for each batch size in `n_toks`; checked
/// as "`label` n_tok=N". `inspect` sees each op before it runs (the product). With
/// `gpu.norm_pass` the norm runs as its own pass (norms.rs) and the product without it.
pub fn check_fused(
    gpu: &mut Gpu,
    rng: &mut Rng,
    k: usize,
    segs: &[(GgmlType, usize)],
    n_toks: &[usize],
    inspect: impl Fn(&GpuOp),
    label: &str,
) {
    let total: usize = segs.iter().map(|s| s.1).sum();
    let nw = rng.vec(k, 1.0);
    let bias = rng.vec(total, 0.5);
    let eps = 1e-6f32;
    let nwbuf = gpu.buf_f32(&nw);
    let bbuf = gpu.buf_f32(&bias);
    let mats: Vec<Matrix> = segs
        .iter()
        .map(|&(ty, rows)| Matrix::random(gpu, rng, ty, rows, k))
        .collect();
    let wall: Vec<f32> = mats.iter().flat_map(|m| m.w.iter().copied()).collect();
    // Each matrix's bias follows the previous one's in the bias buffer.
    let mut off = 0u32;
    let seg_list: Vec<Seg> = mats
        .iter()
        .map(|m| {
            let s = Seg {
                bias: Some(off),
                ..m.seg()
            };
            off += m.rows as u32;
            s
        })
        .collect();
    for &n_tok in n_toks {
        let x = rng.vec(n_tok * k, 2.0);
        let xbuf = gpu.buf_f32(&x);
        let y0 = rng.vec(n_tok * total, 1.0);
        let ybuf = gpu.buf_f32(&y0);
        let spec = MatvecSpec {
            norm: Some(nwbuf.all()),
            bias: Some(bbuf.all()),
            flags: F_ACC,
            eps,
            ..dense(&xbuf, &seg_list, &ybuf, k, total)
        };
        // With `gpu.norm_pass`: the norm as a pass of its own into xn (NaN until written),
        // then the product without its fused norm.
        let xn = gpu
            .norm_pass
            .then(|| gpu.buf_f32(&vec![f32::NAN; n_tok * k]));
        let op = gpu
            .ops()
            .normed_matvec(spec, xn.as_ref().map(Buffer::all))
            .unwrap();
        assert_eq!(op.pass.is_some(), gpu.norm_pass);
        inspect(&op.product);
        let ops: Vec<(&GpuOp, u32)> = op
            .pass
            .iter()
            .chain([&op.product])
            .map(|o| (o, n_tok as u32))
            .collect();
        gpu.run(&ops);
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
        assert_close(&format!("{label} n_tok={n_tok}"), &got, &want, &mag);
    }
}

/// Gate (Q4_K) and up (Q6_K), `rows` × `k` each, in one dispatch with SwiGLU:
/// y = silu(gate·x) * (up·x), for each batch size in `n_toks`; checked as "`label` n_tok=N".
/// `inspect` sees each op before it runs.
pub fn check_swiglu(
    gpu: &mut Gpu,
    rng: &mut Rng,
    (k, rows): (usize, usize),
    n_toks: &[usize],
    inspect: impl Fn(&GpuOp),
    label: &str,
) {
    let gate = Matrix::random(gpu, rng, GgmlType::Q4_K, rows, k);
    let up = Matrix::random(gpu, rng, GgmlType::Q6_K, rows, k);
    for &n_tok in n_toks {
        let x = rng.vec(n_tok * k, 1.0);
        let xbuf = gpu.buf_f32(&x);
        let ybuf = gpu.buf_f32(&vec![0.0; n_tok * rows]);
        let segs = [gate.seg(), up.seg()];
        let spec = MatvecSpec {
            flags: F_GLU,
            ..dense(&xbuf, &segs, &ybuf, k, rows)
        };
        let op = gpu.ops().matvec(spec).unwrap();
        inspect(&op);
        gpu.run(&[(&op, n_tok as u32)]);
        let got = gpu.read_f32(&ybuf, n_tok * rows);
        let (gy, gm) = matmul_ref(&gate.w, rows, k, &x, n_tok);
        let (uy, um) = matmul_ref(&up.w, rows, k, &x, n_tok);
        for i in 0..got.len() {
            let silu = gy[i] / (1.0 + (-gy[i]).exp());
            let want = silu * uy[i];
            let tol = 1e-4 * (gm[i] * uy[i].abs() + um[i] * gy[i].abs()) + 1e-5;
            assert!(
                (got[i] - want).abs() <= tol,
                "{label} n_tok={n_tok} element {i}: gpu {} cpu {want}",
                got[i]
            );
        }
    }
}
