//! Mat-vec shapes against device limits (every shape the chooser can return fits a 48 KiB /
//! subgroup-32 GPU and lavapipe), the path each device gets, and a matrix tall enough that its
//! workgroups spill from the grid's x dimension onto z.

use super::matmul::{dense, random_weights, seg};
use super::{Gpu, Rng};
use crate::engine::vulkan::choices::{MATMUL_NT, MATMUL_NT_CPU};
use crate::engine::vulkan::kernels::{FIXED_PUSH, F_ACC, F_BIAS, F_GLU, F_NORM, X_WHOLE};
use crate::engine::vulkan::shapes::{self, Limits, MAX_ROWS, PATH_LANE, PATH_SUBGROUP, PATH_TREE};
use crate::quant::{dequantize, GgmlType};

/// Workgroup sizes a knob or a default might ask for, sane and not.
const WGS: [u32; 14] = [0, 1, 3, 8, 16, 32, 48, 64, 100, 128, 256, 512, 1024, 4096];

#[test]
fn every_shape_the_chooser_returns_fits_the_device_limits() {
    let small = Limits {
        shared_bytes: 17 * 1024,
        max_wg: 256,
        subgroup_arith: false,
    };
    for lim in [Limits::NVIDIA_48K, Limits::LAVAPIPE, small] {
        for nt in [1, 8] {
            for wg in WGS {
                for rows in 0..=20 {
                    for path in 0..4 {
                        let got = shapes::fit([wg, rows, path], nt, &lim);
                        let [w, r, p] = got;
                        let what =
                            format!("{lim:?} nt={nt} asked [{wg},{rows},{path}] got {got:?}");
                        assert!(
                            shapes::shared_bytes(got, nt) <= u64::from(lim.shared_bytes),
                            "{what}: shared memory"
                        );
                        assert!(w >= 1 && w <= lim.max_wg && w.is_power_of_two(), "{what}");
                        assert!((1..=MAX_ROWS).contains(&r), "{what}: rows");
                        assert!(p <= PATH_SUBGROUP, "{what}: path");
                        if p == PATH_SUBGROUP {
                            assert!(lim.subgroup_arith && nt == 1, "{what}: subgroup path");
                        }
                        // Tall and short matrices get their own decode shape (one token),
                        // which must fit too.
                        for (m, k) in [(128_256, 3072), (3072, 576), (3072, 3072)] {
                            let t = shapes::for_matrix(got, m, k, &lim);
                            assert!(
                                shapes::shared_bytes(t, 1) <= u64::from(lim.shared_bytes)
                                    && t[0] <= lim.max_wg,
                                "{what}: for {m}x{k}: {t:?}"
                            );
                        }
                    }
                }
            }
        }
    }
    // The shape that failed on the H200 (64 KiB for 8 tokens) now shrinks to fit.
    let h200 = shapes::fit([128, 8, PATH_TREE], 8, &Limits::NVIDIA_48K);
    assert!(shapes::shared_bytes([128, 8, PATH_TREE], 8) > 48 * 1024);
    assert_eq!(h200, [128, 4, PATH_TREE]);
    // The defaults are kept as they are where they fit.
    assert_eq!(
        shapes::fit([128, 2, PATH_SUBGROUP], 1, &Limits::NVIDIA_48K),
        [128, 2, PATH_SUBGROUP]
    );
    assert_eq!(
        shapes::fit([32, 8, PATH_LANE], 8, &Limits::LAVAPIPE),
        [32, 8, PATH_LANE]
    );
    // Without subgroup arithmetic the subgroup path falls back to the tree.
    assert_eq!(
        shapes::fit([128, 2, PATH_SUBGROUP], 1, &small)[2],
        PATH_TREE
    );
    // The LM head and short rows take 32-lane workgroups on the subgroup path.
    let base = [128, 2, PATH_SUBGROUP];
    let lim = Limits::NVIDIA_48K;
    assert_eq!(shapes::for_matrix(base, 128_256, 3072, &lim)[0], 32);
    assert_eq!(shapes::for_matrix(base, 8192, 3072, &lim)[0], 128);
    assert_eq!(shapes::for_matrix(base, 3072, 576, &lim)[0], 32);
    // The LM head takes 16 rows per invocation on the lane path; other matrices, and a lane
    // shape that asks for more rows already, keep the base shape.
    let lane = [32, 8, PATH_LANE];
    let lim = Limits::LAVAPIPE;
    assert_eq!(
        shapes::for_matrix(lane, 49_152, 576, &lim),
        [32, shapes::LANE_TALL_ROWS, PATH_LANE]
    );
    assert_eq!(shapes::for_matrix(lane, 8192, 576, &lim), lane);
    assert_eq!(shapes::for_matrix(lane, 3072, 576, &lim), lane);
    assert_eq!(
        shapes::for_matrix([32, 16, PATH_LANE], 151_936, 896, &lim),
        [32, 16, PATH_LANE]
    );
}

#[test]
fn lavapipe_probes_its_features_and_keeps_the_lane_path() {
    let gpu = Gpu::new();
    let f = gpu.dev.features;
    // Lavapipe (Mesa 22.3) reports all of these; a device without them takes the fallbacks.
    assert!(f.subgroup_arith && f.subgroup_shuffle, "{f:?}");
    assert!(f.storage16 && f.storage8 && f.float16, "{f:?}");
    assert!(f.size_control && f.full_subgroups, "{f:?}");
    assert!(
        f.min_subgroup >= 1 && f.max_subgroup >= f.min_subgroup,
        "{f:?}"
    );
    assert_eq!(Limits::of(&gpu.dev), Limits::LAVAPIPE);
    assert_eq!(gpu.kernels.matvec_shape(), [32, 8, PATH_LANE]);
    assert_eq!(gpu.kernels.matmul_nt(), MATMUL_NT_CPU);
}

/// The lane path's register mat-mat (`lane_rows_batch`: the typed variants, and the `any`
/// variant where no invocation's rows mix types) fixes the op's GLU and norm, and whole
/// vec4-aligned units, in its pipeline (its other flags stay push constants); the `any`
/// variant's `lane_rows` and the GPUs' tree path fix nothing, so they keep one pipeline for
/// every op.
#[test]
fn the_lane_mat_mat_fixes_what_the_op_does() {
    use GgmlType::{Q4_1, Q5_0, Q8_0};
    let all = F_GLU | F_NORM | F_ACC | F_BIAS;
    let q: &[(u32, GgmlType)] = &[(576, Q4_1)];
    let lane = Gpu::with_lane(1);
    let fixed = |segs: &[(u32, GgmlType)], flags, k, x_off, x_stride| {
        lane.kernels.matmul_fixed(segs, flags, k, x_off, x_stride)
    };
    assert_eq!(fixed(q, all, 576, 0, 576), F_GLU | F_NORM | X_WHOLE);
    assert_eq!(fixed(q, F_ACC, 1536, 0, 1536), X_WHOLE);
    assert_eq!(fixed(q, F_NORM, 100, 0, 100), F_NORM, "k not whole units");
    assert_eq!(fixed(q, 0, 576, 0, 578), 0, "x rows not vec4-aligned");
    assert_eq!(fixed(q, 0, 576, 2, 576), 0, "x not vec4-aligned");
    // Qwen2.5's QKV (Q5_0, Q5_0, Q8_0): the type changes at row 1024, a multiple of 8.
    let qkv: &[(u32, GgmlType)] = &[(896, Q5_0), (128, Q5_0), (128, Q8_0)];
    assert_eq!(lane.kernels.matmul_shape()[1], 8, "rows per invocation");
    assert_eq!(fixed(qkv, F_NORM | F_BIAS, 896, 0, 896), F_NORM | X_WHOLE);
    let odd: &[(u32, GgmlType)] = &[(21, Q5_0), (11, Q8_0)];
    assert_eq!(
        fixed(odd, F_NORM, 96, 0, 96),
        FIXED_PUSH,
        "a type change at row 21"
    );
    let glu: &[(u32, GgmlType)] = &[(64, Q5_0), (64, Q8_0)];
    assert_eq!(
        fixed(glu, F_GLU, 96, 0, 96),
        FIXED_PUSH,
        "gate and up of two types"
    );
    let tree = Gpu::with_lane(0);
    assert_eq!(tree.kernels.matmul_nt(), MATMUL_NT);
    assert_eq!(tree.kernels.matmul_fixed(q, all, 576, 0, 576), FIXED_PUSH);
    assert_eq!(
        tree.kernels.matmul_fixed(qkv, F_NORM, 896, 0, 896),
        FIXED_PUSH
    );
}

/// Which segments the `any` variant's register form takes (LANE_T0..3): a type change only at
/// a multiple of the rows per invocation, GLU only with gate and up of one type, unused
/// segments filled with the first segment's type.
#[test]
fn lane_types_only_where_no_invocation_mixes_types() {
    use crate::engine::vulkan::kernels::lane_types;
    use GgmlType::{Q4_K, Q5_0, Q6_K, Q8_0};
    let (q5, q8) = (Q5_0.id(), Q8_0.id());
    let qkv = [(896, Q5_0), (128, Q5_0), (128, Q8_0)];
    assert_eq!(lane_types(&qkv, false, 8), Some([q5, q5, q8, q5]));
    assert_eq!(lane_types(&qkv, false, 256), Some([q5, q5, q8, q5]));
    assert_eq!(lane_types(&qkv, false, 16), Some([q5, q5, q8, q5]));
    assert_eq!(
        lane_types(&qkv, false, 48),
        None,
        "1024 is no multiple of 48"
    );
    // The same type on both sides of an unaligned boundary needs no alignment.
    let q = [(20, Q5_0), (4, Q5_0), (8, Q8_0), (5, Q4_K)];
    assert_eq!(lane_types(&q, false, 8), Some([q5, q5, q8, Q4_K.id()]));
    assert_eq!(lane_types(&q, false, 16), None, "a change at row 24");
    assert_eq!(lane_types(&[(64, Q4_K), (64, Q6_K)], true, 8), None);
    assert_eq!(
        lane_types(&[(64, Q4_K), (64, Q4_K)], true, 8),
        Some([Q4_K.id(); 4])
    );
    assert_eq!(lane_types(&[], false, 8), None);
    assert_eq!(
        lane_types(&[(8, Q5_0); 5], false, 8),
        None,
        "more than MAX_SEG"
    );
}

/// 140 000 rows: 70 000 two-row workgroups on the subgroup path, more than one grid dimension
/// holds, so the dispatch spills onto z; compared with the CPU on every path.
#[test]
fn matvec_taller_than_one_grid_dimension() {
    let (rows, k) = (140_000usize, 32usize);
    let mut rng = Rng::new(7);
    let wb = random_weights(&mut rng, GgmlType::Q8_0, rows, k);
    let mut w = vec![0f32; rows * k];
    dequantize(GgmlType::Q8_0, &wb, &mut w).unwrap();
    let x = rng.vec(k, 1.0);
    for lane in [0, 1, 2] {
        let mut gpu = Gpu::with_lane(lane);
        let wbuf = gpu.buf(&wb);
        let xbuf = gpu.buf_f32(&x);
        let ybuf = gpu.buf_f32(&vec![0.0; rows]);
        let segs = [seg(&wbuf, GgmlType::Q8_0, rows)];
        let op = gpu
            .ops()
            .matvec(dense(&xbuf, &segs, &ybuf, k, rows))
            .unwrap();
        gpu.run(&[(&op, 1)]);
        let got = gpu.read_f32(&ybuf, rows);
        for r in 0..rows {
            let (mut s, mut m) = (0f64, 0f64);
            for i in 0..k {
                let p = w[r * k + i] as f64 * x[i] as f64;
                s += p;
                m += p.abs();
            }
            let tol = 2e-5 * m + 1e-5;
            assert!(
                (got[r] as f64 - s).abs() <= tol,
                "lane={lane} row {r}: gpu {} cpu {s}",
                got[r]
            );
        }
        gpu.check();
    }
}
