//! Each kernel against a CPU reference on random inputs, with sizes that are not multiples of
//! the block, the rows per workgroup, the tokens per workgroup or the workgroup size.

use super::matmul::{assert_seg_types, op_types, random_weights, width_for, TYPES};
use super::matmul::{check_fused, check_matmul, check_swiglu, dense, seg, Matrix};
use super::{assert_attention, f16_pack, f16_round, Gpu, KvCache, Rng};
use crate::engine::vulkan::attention::AttnScratch;
use crate::engine::vulkan::buffer::Buffer;
use crate::engine::vulkan::kernels::STATE_WORDS;
use crate::engine::vulkan::ops::{GpuOp, MatvecSpec, OpKind};
use crate::quant::GgmlType;

#[test]
fn matvec_and_matmul_match_cpu_for_every_weight_type() {
    for (lane, texel) in Gpu::PATHS {
        matvec_every_type(lane, texel);
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

fn matvec_every_type(lane: u32, texel: bool) {
    let mut gpu = Gpu::with_lane_weights(lane, texel);
    assert_eq!(gpu.kernels.texel_weights(), texel);
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
        let m = Matrix::random(&mut gpu, &mut rng, ty, rows, k);
        for n_tok in [1usize, 19] {
            let what = format!("{ty} k={k} n_tok={n_tok} lane={lane} texel={texel}");
            check_matmul(&mut gpu, &mut rng, &m, n_tok, |_| {}, &what);
        }
        gpu.check();
    }
}

/// On the GPUs' paths (tree 0, subgroup 2) a mixed-type op's kernels, decode and batch, take
/// the segments' types as constants (`assert_seg_types`); the subgroup path's batches run the
/// tree path's mat-mat.
fn gpu_paths_take_the_types(op: &GpuOp, lane: u32) {
    if lane == 1 {
        return;
    }
    let types = op_types(op);
    assert_seg_types(&op.kernel, &types);
    if let OpKind::Matvec {
        batch_kernel: Some(b),
        ..
    } = &op.kind
    {
        assert_seg_types(b, &types);
    }
}

/// QKV-style: three matrices of mixed types in one dispatch, RMSNorm fused in, biases; then the
/// same output accumulated onto itself (residual add).
#[test]
fn fused_norm_bias_segments_and_residual() {
    let segs = [
        (GgmlType::Q5_0, 21usize),
        (GgmlType::Q8_0, 6),
        (GgmlType::Q4_1, 6),
    ];
    for (lane, texel) in Gpu::PATHS {
        let (mut gpu, mut rng) = (Gpu::with_lane_weights(lane, texel), Rng::new(2));
        let label = format!("fused lane={lane} texel={texel}");
        // A type change at row 21, inside an invocation: the `any` variant's `lane_rows`; on
        // the GPUs' paths the types as constants.
        let lane_rows = |op: &GpuOp| {
            assert!(!op.kernel.name.contains("_l"), "{label}");
            gpu_paths_take_the_types(op, lane);
        };
        check_fused(&mut gpu, &mut rng, 96, &segs, &[1, 19], lane_rows, &label);
    }
}

/// Mixed types in one dispatch where every type run's rows are a multiple of the lane path's 8
/// rows per invocation (Qwen2.5's and gemma-3's QKV: Q5_0 for Q and K, Q8_0 for V): on the
/// lane path the `any` variant runs the register forms with the segments' types as constants
/// (a `_l` pipeline, in decode and prompt), each invocation with its rows' dequantizer; the
/// last segment ends inside an invocation, a type run spans two segments whose boundary (rows
/// 21 and 45) is inside one. Checked against the CPU dequantizer on every path.
#[test]
fn mixed_types_in_whole_invocations_take_the_register_form() {
    use GgmlType::{Q4_1, Q4_K, Q5_0, Q6_K, Q8_0};
    let cases: [(usize, [(GgmlType, usize); 4]); 2] = [
        (96, [(Q5_0, 21), (Q5_0, 11), (Q8_0, 16), (Q4_1, 5)]),
        (512, [(Q4_K, 40), (Q6_K, 5), (Q6_K, 3), (Q8_0, 13)]),
    ];
    for (lane, texel) in Gpu::PATHS {
        let (mut gpu, mut rng) = (Gpu::with_lane_weights(lane, texel), Rng::new(6));
        for (k, segs) in &cases {
            let label = format!("mixed k={k} lane={lane} texel={texel}");
            let registers = |op: &GpuOp| {
                let OpKind::Matvec { batch_kernel, .. } = &op.kind else {
                    panic!("{label}: not a mat-vec");
                };
                let batch = batch_kernel.as_ref().expect("a batch op has its mat-mat");
                for kn in [&op.kernel, batch] {
                    let l = kn.name.contains("_l");
                    assert!(kn.name.contains("_any"), "{label}: {}", kn.name);
                    assert_eq!(l, lane == 1, "{label}: {} (register form)", kn.name);
                }
                gpu_paths_take_the_types(op, lane);
            };
            check_fused(&mut gpu, &mut rng, *k, segs, &[1, 19], registers, &label);
        }
        gpu.check();
    }
}

/// The lane mat-mat's tokens per workgroup by weight type (`lane_matmul_nt`): 32 for the types
/// whose dequantization costs most, the device's 16 for Q4_0/Q4_1, F32/F16 and mixed types;
/// each checked against the CPU over two workgroup rows of tokens, the second partial (40 and
/// 19 tokens), the norm and a bias fused. The GPUs' tree path keeps its 8 for all.
#[test]
fn the_lane_mat_mat_takes_more_tokens_where_dequantization_costs_most() {
    use crate::engine::vulkan::choices::{MATMUL_NT, MATMUL_NT_CPU};
    use crate::engine::vulkan::kernels::matmul_nt_of;
    use GgmlType::{F16, Q4_0, Q4_1, Q4_K, Q5_0, Q6_K, Q8_0};
    let cases = [
        (Q6_K, 2 * MATMUL_NT_CPU),
        (Q4_K, 2 * MATMUL_NT_CPU),
        (Q5_0, 2 * MATMUL_NT_CPU),
        (Q8_0, 2 * MATMUL_NT_CPU),
        (Q4_1, MATMUL_NT_CPU),
        (Q4_0, MATMUL_NT_CPU),
        (F16, MATMUL_NT_CPU),
    ];
    for lane in [1, 0] {
        let (mut gpu, mut rng) = (Gpu::with_lane(lane), Rng::new(12));
        for (ty, lane_nt) in cases {
            let want = if lane == 1 { lane_nt } else { MATMUL_NT };
            let label = format!("{ty} lane={lane}");
            let nt = |op: &GpuOp| {
                let OpKind::Matvec { batch_kernel, .. } = &op.kind else {
                    panic!("{label}: not a mat-vec");
                };
                let batch = batch_kernel.as_ref().expect("a batch op has its mat-mat");
                assert_eq!(matmul_nt_of(batch), want, "{label}: {}", batch.name);
            };
            let k = width_for(ty);
            check_fused(&mut gpu, &mut rng, k, &[(ty, 37)], &[40, 19], nt, &label);
        }
        gpu.check();
    }
    // Mixed types keep the device's count.
    let gpu = Gpu::with_lane(1);
    let mixed = gpu
        .kernels
        .matmul(&[(16, Q5_0), (8, Q4_1)], false, 0)
        .unwrap();
    assert_eq!(matmul_nt_of(&mixed), MATMUL_NT_CPU, "{}", mixed.name);
}

/// One weight type in two, three and four segments (a matrix in pieces, as a tensor larger
/// than one binding is bound): the typed kernels, built for that many segments (texel
/// weights pick the segment by comparisons up to the count), stack the segments' rows.
#[test]
fn segments_of_one_type_stack_their_rows() {
    let rows = [9usize, 16, 5, 3];
    for (lane, texel) in Gpu::PATHS {
        let (mut gpu, mut rng) = (Gpu::with_lane_weights(lane, texel), Rng::new(5));
        for n in 2..=rows.len() {
            let segs: Vec<(GgmlType, usize)> =
                rows[..n].iter().map(|&r| (GgmlType::Q4_K, r)).collect();
            let label = format!("{n} segments lane={lane} texel={texel}");
            check_fused(&mut gpu, &mut rng, 512, &segs, &[1, 3], |_| {}, &label);
        }
        gpu.check();
    }
}

/// A product taller than `TALL_ROWS` in several segments (a matrix in pieces, as the LM head
/// larger than one binding is bound): with texel weights on the lane path one token runs as
/// one dispatch per segment (`parts`, each a one-segment kernel at the head's 16 rows per
/// invocation), batches as one dispatch over all segments; elsewhere, and for shorter products
/// (the QKV), one dispatch. Segment boundaries in awkward places (inside an invocation's rows
/// and a workgroup's, segments of 1 and 3 rows), norm, bias and residual add fused; one token
/// and three, against the CPU dequantizer on every path.
#[test]
fn decode_over_pieces_runs_one_dispatch_per_segment() {
    use GgmlType::{Q4_K, Q5_0, Q8_0};
    let cases: [(usize, &[(GgmlType, usize)]); 4] = [
        (64, &[(Q8_0, 4100), (Q8_0, 4093), (Q8_0, 37)]),
        (64, &[(Q8_0, 8195), (Q8_0, 3), (Q8_0, 1), (Q8_0, 501)]),
        (256, &[(Q4_K, 5003), (Q4_K, 3297)]),
        (96, &[(Q5_0, 24), (Q5_0, 8), (Q8_0, 13)]),
    ];
    for (lane, texel) in Gpu::PATHS {
        let (mut gpu, mut rng) = (Gpu::with_lane_weights(lane, texel), Rng::new(13));
        for (k, segs) in cases {
            let total: usize = segs.iter().map(|s| s.1).sum();
            let label = format!("segments {segs:?} k={k} lane={lane} texel={texel}");
            let split = |op: &GpuOp| {
                let OpKind::Matvec { parts, .. } = &op.kind else {
                    panic!("{label}: not a mat-vec");
                };
                let want = lane == 1 && texel && total > 8192;
                assert_eq!(parts.len(), if want { segs.len() } else { 0 }, "{label}");
                for p in parts.iter() {
                    let name = &p.kernel.name;
                    assert!(name.ends_with("x16x1_s1"), "{label}: {name}");
                }
            };
            check_fused(&mut gpu, &mut rng, k, segs, &[1, 3], split, &label);
        }
        gpu.check();
    }
}

/// The fused RMSNorm on the GPUs' subgroup path for every weight type: its sum of squares is
/// gathered from each type's own activation loads, so each type's chunks must cover x exactly
/// once (wide widths too, and a second token whose x is not vec4-aligned when k is odd). On
/// the lane path the same cases run the typed mat-mat's pipelines with F_NORM fixed, with and
/// without whole vec4-aligned units (`X_WHOLE`: f32 and f16 widths are not multiples of 32).
#[test]
fn fused_norm_matches_cpu_for_every_weight_type_on_the_subgroup_and_lane_paths() {
    for lane in [2, 1] {
        let (mut gpu, mut rng) = (Gpu::with_lane(lane), Rng::new(4));
        for ty in TYPES {
            for k in [width_for(ty), wide_width_for(ty)] {
                let label = format!("norm {ty} k={k} lane={lane}");
                check_fused(&mut gpu, &mut rng, k, &[(ty, 37)], &[1, 2], |_| {}, &label);
            }
        }
        gpu.check();
    }
}

/// Gate and up in one dispatch with SwiGLU: y = silu(gate·x) * (up·x).
#[test]
fn fused_swiglu() {
    for (lane, texel) in Gpu::PATHS {
        let (mut gpu, mut rng) = (Gpu::with_lane_weights(lane, texel), Rng::new(3));
        let label = format!("swiglu lane={lane} texel={texel}");
        // Gate Q4_K and up Q6_K: on the GPUs' paths the `any` variant, types as constants.
        let types = |op: &GpuOp| gpu_paths_take_the_types(op, lane);
        check_swiglu(&mut gpu, &mut rng, (512, 19), &[1, 19], types, &label);
    }
}

/// Embedding rows from a table bound in two pieces, by token buffer and by device state.
#[test]
fn embedding_lookup_across_pieces() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(4);
    let ty = GgmlType::Q6_K;
    let (dim, rows_a, rows_b) = (256usize, 5usize, 4usize);
    let a = Matrix::random(&mut gpu, &mut rng, ty, rows_a, dim);
    let b = Matrix::random(&mut gpu, &mut rng, ty, rows_b, dim);
    let table: Vec<f32> = [a.w, b.w].concat();
    let tokens = [7u32, 0, 4, 5, 8];
    let tbuf = gpu.buf_u32(&tokens);
    let mut state = vec![0u32; STATE_WORDS];
    state[2] = 6;
    let sbuf = gpu.buf_u32(&state);
    let out = gpu.buf_f32(&vec![0.0; tokens.len() * dim]);
    let pieces = [(a.buf.all(), rows_a as u32), (b.buf.all(), rows_b as u32)];
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

/// A prompt batch's embedding starts the batch from the words it is recorded with: position
/// `n_past`, `n_past + n_tok` fed, the tokens from `hist_from` on appended to the history ring
/// after its `n_hist` (wrapping), only the batch's last HIST of them; nothing else changes.
#[test]
fn a_prompt_batch_embedding_starts_the_batch() {
    use crate::engine::vulkan::kernels::{HIST, S_BAD, S_HIST, S_NHIST, S_NPAST, S_TOKEN};
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(5);
    let (ty, dim, rows) = (GgmlType::Q8_0, 64usize, 9usize);
    let m = Matrix::random(&mut gpu, &mut rng, ty, rows, dim);
    // (tokens in the batch, hist_from, n_past, n_hist): a wrap past the ring's end, a fed
    // token already in the ring, and a batch longer than the ring.
    for (n_tok, hist_from, n_past, n_hist) in [(5, 0, 300, 254), (4, 1, 7, 8), (HIST + 40, 0, 3, 3)]
    {
        let tokens: Vec<u32> = (0..n_tok).map(|i| ((i * 5 + 1) % rows) as u32).collect();
        let tbuf = gpu.buf_u32(&tokens);
        let mut state: Vec<u32> = (0..STATE_WORDS as u32).map(|i| 1000 + i).collect();
        state[S_TOKEN] = 3;
        let sbuf = gpu.buf_u32(&state);
        let out = gpu.buf_f32(&vec![0.0; n_tok * dim]);
        let mut op = gpu
            .ops()
            .embed(
                sbuf.all(),
                tbuf.all(),
                &[(m.buf.all(), rows as u32)],
                ty,
                dim as u32,
                false,
                out.all(),
            )
            .unwrap();
        let OpKind::Embed {
            hist_from: h,
            n_past: p,
            n_hist: nh,
            ..
        } = &mut op.kind
        else {
            unreachable!("an embedding op")
        };
        (*h, *p, *nh) = (hist_from as u32, n_past as u32, n_hist as u32);
        gpu.run(&[(&op, n_tok as u32)]);
        let mut want = state.clone();
        let n_new = n_tok - hist_from;
        want[S_NPAST] = (n_past + n_tok) as u32;
        want[1] = n_past as u32;
        want[S_NHIST] = (n_hist + n_new) as u32;
        for i in n_new.saturating_sub(HIST)..n_new {
            want[S_HIST + (n_hist + i) % HIST] = tokens[hist_from + i];
        }
        let label = format!("{n_tok} tokens from {hist_from}, n_past {n_past}, n_hist {n_hist}");
        assert_eq!(gpu.read_u32(&sbuf, STATE_WORDS), want, "{label}");
        assert_eq!(
            want[S_BAD], state[S_BAD],
            "{label}: the verdict is left alone"
        );
        let got = gpu.read_f32(&out, n_tok * dim);
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &m.w[tok as usize * dim..(tok as usize + 1) * dim];
            assert_eq!(&got[t * dim..(t + 1) * dim], row, "{label}: token {t}");
        }
    }
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

/// One rope test's layout: (query heads, KV heads, head size, rotated dims).
pub(super) type RopeDims = (usize, usize, usize, usize);

/// The RoPE table of `n_rot` rotated dims (base^(-2j/n_rot)) on the device.
pub(super) fn rope_freqs(gpu: &mut Gpu, n_rot: usize, base: f32) -> Buffer {
    let freqs: Vec<f32> = (0..n_rot / 2)
        .map(|j| base.powf(-2.0 * j as f32 / n_rot as f32))
        .collect();
    gpu.buf_f32(&freqs)
}

/// The `rope_kv` op over `bufs` (state, QKV rows, rotated queries out, the RoPE table) writing
/// the new rows into `cache`.
pub(super) fn rope_kv_op(
    gpu: &mut Gpu,
    [state, qkv, q, freqs]: [&Buffer; 4],
    cache: &KvCache,
    (n_head, n_kv, d, n_rot): RopeDims,
    neox: bool,
) -> GpuOp {
    let kind = OpKind::RopeKv {
        q_dim: (n_head * d) as u32,
        kv_dim: (n_kv * d) as u32,
        head_dim: d as u32,
        n_rot: n_rot as u32,
        neox,
    };
    let (k, v) = (cache.kbuf.all(), cache.vbuf.all());
    gpu.ops()
        .rope_kv(state.all(), qkv.all(), q.all(), k, v, freqs.all(), kind)
        .unwrap()
}

/// One RoPE-fold test's data: the new token's QKV row at `pos`, a cache for `rope_kv` + the
/// attention, a second one for the folded kernel (the same rows; with `mark_new` other values
/// at the new position, so the fold must write that row and must not read it first), and the
/// buffers both sides read and write (`o1`: the pair's output, `o2`: the fold's).
pub(super) struct FoldData {
    pub qkv: Vec<f32>,
    pub cache: KvCache,
    pub kbuf2: Buffer,
    pub vbuf2: Buffer,
    pub sbuf: Buffer,
    pub qkvbuf: Buffer,
    pub fbuf: Buffer,
    pub qbuf: Buffer,
    pub o1: Buffer,
    pub o2: Buffer,
}

impl FoldData {
    pub fn new(gpu: &mut Gpu, rng: &mut Rng, dims: RopeDims, pos: usize, mark_new: bool) -> Self {
        let (n_head, n_kv, d, n_rot) = dims;
        let (qd, kvd, n_ctx) = (n_head * d, n_kv * d, pos + 3);
        let qkv = rng.vec(qd + 2 * kvd, 1.0);
        let cache = gpu.kv_cache(rng, n_ctx, kvd);
        let (mut k2, mut v2) = (cache.k.clone(), cache.v.clone());
        if mark_new {
            for i in pos * kvd..(pos + 1) * kvd {
                k2[i] = -k2[i] - 0.5;
                v2[i] = -v2[i] - 0.5;
            }
        }
        let (kbuf2, vbuf2) = (gpu.buf(&f16_pack(&k2)), gpu.buf(&f16_pack(&v2)));
        let sbuf = gpu.state_at(pos);
        let qkvbuf = gpu.buf_f32(&qkv);
        let fbuf = rope_freqs(gpu, n_rot, 10000.0);
        let qbuf = gpu.buf_f32(&vec![0.0; qd]);
        let o1 = gpu.buf_f32(&vec![f32::NAN; qd]);
        let o2 = gpu.buf_f32(&vec![f32::NAN; qd]);
        FoldData {
            qkv,
            cache,
            kbuf2,
            vbuf2,
            sbuf,
            qkvbuf,
            fbuf,
            qbuf,
            o1,
            o2,
        }
    }

    /// The `rope_kv` op of the pair, into the first cache.
    pub fn rope_op(&self, gpu: &mut Gpu, dims: RopeDims, neox: bool) -> GpuOp {
        let bufs = [&self.sbuf, &self.qkvbuf, &self.qbuf, &self.fbuf];
        rope_kv_op(gpu, bufs, &self.cache, dims, neox)
    }

    /// The folded attention over the second cache into `o2`: `attention_rope`, or with
    /// `scratch` the split form (`attention_rope_split`).
    pub fn folded_op(&self, gpu: &mut Gpu, scratch: Option<AttnScratch>, kind: OpKind) -> GpuOp {
        let (state, qkv) = (self.sbuf.all(), self.qkvbuf.all());
        let (k, v, out, freqs) = (
            self.kbuf2.all(),
            self.vbuf2.all(),
            self.o2.all(),
            self.fbuf.all(),
        );
        let mut ops = gpu.ops();
        match scratch {
            None => ops.attention_rope(state, qkv, k, v, out, freqs, kind),
            Some(s) => ops.attention_rope_split(state, qkv, k, v, out, freqs, s, kind),
        }
        .unwrap()
    }

    /// Runs `rope` then `attn`, and `folded`, and asserts the same K and V cache rows bit for
    /// bit and outputs within 1e-5 (relative above 1); returns the fold's output.
    pub fn assert_fold_equals_pair(
        &self,
        gpu: &mut Gpu,
        [rope, attn, folded]: [&GpuOp; 3],
        qd: usize,
        what: &str,
    ) -> Vec<f32> {
        gpu.run(&[(rope, 1), (attn, 1)]);
        gpu.run(&[(folded, 1)]);
        let words = self.cache.k.len() / 2;
        assert_eq!(
            gpu.read_u32(&self.cache.kbuf, words),
            gpu.read_u32(&self.kbuf2, words),
            "{what}: K cache"
        );
        assert_eq!(
            gpu.read_u32(&self.cache.vbuf, words),
            gpu.read_u32(&self.vbuf2, words),
            "{what}: V cache"
        );
        let (a, b) = (gpu.read_f32(&self.o1, qd), gpu.read_f32(&self.o2, qd));
        for i in 0..qd {
            assert!(
                (a[i] - b[i]).abs() <= 1e-5 * a[i].abs().max(1.0),
                "{what}: out[{i}] folded {} vs rope_kv + attention {}",
                b[i],
                a[i]
            );
        }
        b
    }
}

/// The folded attention's kind for `dims` (scale 1/sqrt(head size)).
pub(super) fn attention_rope_kind(dims: RopeDims, window: usize, neox: bool) -> OpKind {
    let (n_head, n_kv, d, n_rot) = dims;
    OpKind::AttentionRope {
        n_head: n_head as u32,
        n_kv: n_kv as u32,
        head_dim: d as u32,
        scale: 1.0 / (d as f32).sqrt(),
        window: window as u32,
        n_rot: n_rot as u32,
        neox,
        split: None,
    }
}

/// The reference for one QKV `row` at `pos`: its queries rotated (returned), its K rotated and
/// its V written into the f16 caches `kc`, `vc`.
pub(super) fn rope_kv_ref(
    row: &[f32],
    (n_head, n_kv, d, n_rot): RopeDims,
    (pos, neox, base): (usize, bool, f32),
    (kc, vc): (&mut [f32], &mut [f32]),
) -> Vec<f32> {
    let (qd, kvd) = (n_head * d, n_kv * d);
    let mut q = row[..qd].to_vec();
    let mut k = row[qd..qd + kvd].to_vec();
    rope_ref(&mut q, n_head, d, n_rot, pos, neox, base);
    rope_ref(&mut k, n_kv, d, n_rot, pos, neox, base);
    for i in 0..kvd {
        kc[pos * kvd + i] = f16_round(k[i]);
        vc[pos * kvd + i] = f16_round(row[qd + kvd + i]);
    }
    q
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
        let fbuf = rope_freqs(&mut gpu, d, base);
        let qbuf = gpu.buf_f32(&vec![0.0; n_tok * qd]);
        let obuf = gpu.buf_f32(&vec![0.0; n_tok * qd]);
        let dims = (n_head, n_kv, d, d);
        let rope = rope_kv_op(&mut gpu, [&sbuf, &qkvbuf, &qbuf, &fbuf], &cache, dims, neox);
        let attn = gpu.attention_op(
            &sbuf,
            &qbuf,
            &cache,
            &obuf,
            None,
            super::attention_kind((n_head, n_kv, d)),
        );
        gpu.run(&[(&rope, n_tok as u32), (&attn, n_tok as u32)]);

        // Reference.
        let (mut kc, mut vc) = (cache.k.clone(), cache.v.clone());
        let mut qr = vec![0f32; n_tok * qd];
        for t in 0..n_tok {
            let row = &qkv[t * (qd + 2 * kvd)..(t + 1) * (qd + 2 * kvd)];
            let q = rope_kv_ref(row, dims, (pos0 + t, neox, base), (&mut kc, &mut vc));
            qr[t * qd..(t + 1) * qd].copy_from_slice(&q);
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
        // Token t sees the cache up to its own position (the batch's rows written above).
        let what = format!("attention neox={neox}");
        assert_attention(
            &what,
            &got_o,
            &qr,
            (&kc, &vc),
            (n_head, n_kv, d),
            pos0,
            2e-3,
        );
        gpu.check();
    }
}

/// Decode attention with RoPE and the KV write folded in (`attention_rope`, CPU
/// implementations' decode step) against `rope_kv` + the one-row attention on the same data:
/// the same K and V rows in the cache, bit for bit, and the same output; and against the f64
/// reference without a window. Both styles, partial rotation (`n_rot` < head size), groups of
/// 1, 3 and 7, head sizes 64 to 256, a window, and positions 0, the first key of a chunk of 64
/// (64) and others.
#[test]
fn rope_folded_into_decode_attention() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(17);
    // (query heads, KV heads, head size), rotated dims, position, neox, window.
    let cases = [
        ((9, 3, 64), 64, 70, false, 0),
        ((9, 3, 64), 64, 0, false, 0),
        ((14, 2, 64), 64, 64, true, 0),
        ((4, 4, 128), 32, 129, false, 0),
        ((4, 1, 256), 256, 200, true, 0),
        ((8, 2, 64), 64, 300, false, 100),
    ];
    for ((n_head, n_kv, d), n_rot, pos, neox, window) in cases {
        let qd = n_head * d;
        let what = format!(
            "heads {n_head}/{n_kv} d {d} n_rot {n_rot} pos {pos} neox {neox} window {window}"
        );
        // A second cache with the same contents for the folded kernel.
        let dims = (n_head, n_kv, d, n_rot);
        let t = FoldData::new(&mut gpu, &mut rng, dims, pos, false);
        let rope = t.rope_op(&mut gpu, dims, neox);
        let kind = super::attention_kind_window((n_head, n_kv, d), window);
        let attn = gpu.attention_op(&t.sbuf, &t.qbuf, &t.cache, &t.o1, None, kind);
        let folded = t.folded_op(&mut gpu, None, attention_rope_kind(dims, window, neox));
        let b = t.assert_fold_equals_pair(&mut gpu, [&rope, &attn, &folded], qd, &what);
        if window == 0 {
            // The reference: rotated queries, the new rows in f16.
            let (mut kc, mut vc) = (t.cache.k.clone(), t.cache.v.clone());
            let q = rope_kv_ref(&t.qkv, dims, (pos, neox, 10000.0), (&mut kc, &mut vc));
            assert_attention(&what, &b, &q, (&kc, &vc), (n_head, n_kv, d), pos, 2e-3);
        }
        gpu.check();
    }
}

/// Times the folded decode attention (`attention_rope`) against `rope_kv` + the one-row
/// `attention` on the same data by GPU timestamps, each the fastest and the median of 200
/// runs, on SmolLM2's heads (9/3, 64) at two positions, Qwen2.5-0.5B's (14/2, NEOX) and a
/// head of 256 (gemma-3-270m's group of 4 on one KV head). A tuning aid, not a test:
/// `cargo test --release --lib bench_attention_rope -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn bench_attention_rope() {
    let reps = 200;
    let mut rng = Rng::new(3);
    let stat = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0] / 1e3, v[v.len() / 2] / 1e3)
    };
    for ((n_head, n_kv, d), neox, pos) in [
        ((9usize, 3usize, 64usize), false, 16usize),
        ((9, 3, 64), false, 80),
        ((14, 2, 64), true, 16),
        ((4, 1, 256), true, 16),
    ] {
        let mut gpu = Gpu::new();
        let dims = (n_head, n_kv, d, d);
        let t = FoldData::new(&mut gpu, &mut rng, dims, pos, false);
        let rope = t.rope_op(&mut gpu, dims, neox);
        let kind = super::attention_kind((n_head, n_kv, d));
        let attn = gpu.attention_op(&t.sbuf, &t.qbuf, &t.cache, &t.o1, None, kind);
        let folded = t.folded_op(&mut gpu, None, attention_rope_kind(dims, 0, neox));
        let (mut r, mut a, mut f) = (vec![], vec![], vec![]);
        // Taking turns, so that both see the same load.
        for _ in 0..reps {
            let t = gpu.run_timed(&[(&rope, 1), (&attn, 1)]);
            r.push(t[0]);
            a.push(t[1]);
            f.push(gpu.run_timed(&[(&folded, 1)])[0]);
        }
        let (r, a, f) = (stat(r), stat(a), stat(f));
        eprintln!(
            "heads {n_head}/{n_kv} d {d} neox {neox} pos {pos} (µs, min / median): rope_kv \
             {:.1} / {:.1}, attention {:.1} / {:.1}, attention_rope {:.1} / {:.1}; folded / \
             (rope_kv + attention) {:.2} / {:.2}",
            r.0,
            r.1,
            a.0,
            a.1,
            f.0,
            f.1,
            f.0 / (r.0 + a.0),
            f.1 / (r.1 + a.1)
        );
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
/// a head-sized Q8_0 mat-vec; `TYPE:ROWS:K:NTOK:R1+R2+...` splits the matrix into segments of
/// R1, R2, ... rows and the rest, as a tensor in pieces or a fused QKV is bound) on each shape
/// of `PIGPU_VK_BENCH_SHAPES` (`WG,ROWS,LANE;...`). A tuning aid, not a test:
/// `cargo test --release --lib bench_matvec -- --ignored --nocapture`.
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
        let mut split: Vec<usize> = f.get(4).map_or(vec![], |v| {
            v.split('+')
                .map(|r| r.parse().expect("segment rows"))
                .collect()
        });
        split.push(rows - split.iter().sum::<usize>());
        let row_bytes = wb.len() / rows;
        for shape in shapes.split(';') {
            let sh: Vec<u32> = shape.split(',').map(|v| v.parse().unwrap()).collect();
            let mut gpu = Gpu::open_shapes([sh[0], sh[1], sh[2]], [sh[0], sh[1], sh[2]]);
            let mut r0 = 0;
            let wbufs: Vec<_> = split
                .iter()
                .map(|&r| {
                    r0 += r;
                    gpu.buf(&wb[(r0 - r) * row_bytes..r0 * row_bytes])
                })
                .collect();
            let xbuf = gpu.buf_f32(&rng.vec(k * n_tok, 1.0));
            let nw = gpu.buf_f32(&rng.vec(k, 1.0));
            let ybuf = gpu.buf_f32(&vec![0.0; rows * n_tok]);
            let segs: Vec<_> = (wbufs.iter().zip(&split))
                .map(|(b, &r)| seg(b, ty, r))
                .collect();
            let spec = MatvecSpec {
                norm: Some(nw.all()),
                eps: 1e-5,
                ..dense(&xbuf, &segs, &ybuf, k, rows)
            };
            let op = gpu.ops().matvec(spec).unwrap();
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
                "{ty} {rows}x{k} x{n_tok} segments {split:?} {}: {:.1} µs GPU ({:.1} GB/s of weights, \
                 {:.0} M weights·tokens/s), {:.2} ms CPU ({:.0} M weights·tokens per CPU-s)",
                op.kernel.name,
                gpu_ns / 1e3,
                wbytes / gpu_ns,
                (rows * k * n_tok) as f64 / gpu_ns * 1e3,
                c * 1e3,
                (rows * k * n_tok) as f64 / c / 1e6
            );
        }
    }
}

/// Kernels asked for inside `Kernels::all_at_once` (as an engine builds its graph) have no
/// pipeline until it ends, then each its own, created on several threads; they compute what
/// kernels created one by one do (the same op run after); a nested call runs inside the outer
/// one; an error inside forgets the kernels it asked for, so asking again creates them.
#[test]
fn kernels_built_all_at_once_get_their_pipelines_at_its_end() {
    use crate::engine::vulkan::error::VkError;
    use crate::engine::vulkan::ops::{GpuOp, OpBuilder, OpKind};
    use ash::vk::Pipeline;
    use std::rc::Rc;

    let mut gpu = Gpu::new();
    let mut rng = Rng::new(11);
    let (rows, k) = (37, 96);
    let m = Matrix::random(&mut gpu, &mut rng, GgmlType::Q4_0, rows, k);
    let x = gpu.buf_f32(&vec![0.0; 19 * k]);
    let y = gpu.buf_f32(&vec![0.0; 19 * rows]);
    let segs = [m.seg()];
    let Gpu { kernels, arena, .. } = &mut gpu;
    let kernels = &*kernels;
    let (op, others) = kernels
        .all_at_once(|| {
            let op = OpBuilder { kernels, arena }.matvec(dense(&x, &segs, &y, k, rows))?;
            let others = vec![kernels.embed(GgmlType::Q4_0)?, kernels.rope_kv()?];
            let OpKind::Matvec { batch_kernel, .. } = &op.kind else {
                unreachable!("a mat-vec op")
            };
            let batch = batch_kernel.clone().expect("a batch op has its mat-mat");
            for kern in others.iter().chain([&op.kernel, &batch]) {
                assert_eq!(
                    kern.pipeline(),
                    Pipeline::null(),
                    "{} before the end",
                    kern.name
                );
            }
            let again = kernels.all_at_once(|| kernels.embed(GgmlType::Q4_0))?;
            assert!(Rc::ptr_eq(&again, &others[0]), "asked twice: one kernel");
            assert_eq!(
                again.pipeline(),
                Pipeline::null(),
                "nested: created by the outer call"
            );
            Ok((op, [others, vec![batch]].concat()))
        })
        .unwrap();
    let all: Vec<_> = others.iter().chain([&op.kernel]).collect();
    for kern in &all {
        assert_ne!(
            kern.pipeline(),
            Pipeline::null(),
            "{} after the end",
            kern.name
        );
    }
    let mut pipelines: Vec<u64> = all
        .iter()
        .map(|k| ash::vk::Handle::as_raw(k.pipeline()))
        .collect();
    pipelines.sort_unstable();
    pipelines.dedup();
    assert_eq!(pipelines.len(), all.len(), "each kernel its own pipeline");
    // The same kernels (asked for again by name) compute the product, one token and a batch.
    let same = |o: &GpuOp| {
        assert!(
            Rc::ptr_eq(&o.kernel, &op.kernel),
            "the kernel built at once"
        )
    };
    for n_tok in [1usize, 19] {
        check_matmul(
            &mut gpu,
            &mut rng,
            &m,
            n_tok,
            same,
            &format!("at once n_tok={n_tok}"),
        );
    }
    let kernels = &gpu.kernels;
    let r = kernels.all_at_once(|| {
        kernels.empty()?;
        Err::<(), _>(VkError::Unsupported("a test's stop".into()))
    });
    assert!(r.is_err(), "the error comes out");
    let empty = kernels.empty().unwrap();
    assert_ne!(
        empty.pipeline(),
        Pipeline::null(),
        "asked again after the error: created"
    );
    gpu.check();
}
