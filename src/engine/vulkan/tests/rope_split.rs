//! The split decode attention with RoPE and the KV write folded in (`PIGPU_VK_ROPE=fold` on
//! GPUs: `attention_staged_rope_…`, `attention_split_rope_…`) against `rope_kv` + the split
//! attention on the same data: the same K and V rows in the cache, bit for bit (the folded
//! kernel's cache starts with other values at the new position, so it must write them, and must
//! not read them before), the same output, and the f64 reference; on both split kernels, at
//! depths where the new position is a split's only key, the last of a full chunk or deep in a
//! later split, with one split (output written directly), several (combine pass) and empty
//! trailing ones, GQA groups of 1 to 9 (two workgroup slices of query heads: only the first
//! writes), head sizes 64, 128 and 256, both RoPE styles, partial rotation, a fixed chunk and
//! sliding windows (gemma-3's head size 256 with one).

use super::kernels::{attention_rope_kind, rope_kv_ref, FoldData};
use super::{attention_kind_window, attention_ref, Buffer, Gpu, Rng};
use crate::engine::vulkan::attention::{AttnScratch, Splits};
use crate::engine::vulkan::ops::OpKind;

/// One case: (query heads, KV heads, head size), rotated dims, NEOX, the new position, sliding
/// window (0: none), splits, chunk (0: automatic), query heads per workgroup.
type Case = (
    (usize, usize, usize),
    usize,
    bool,
    usize,
    usize,
    u32,
    u32,
    u32,
);

fn run_case(gpu: &mut Gpu, rng: &mut Rng, c: Case, staged: bool) {
    let ((n_head, n_kv, d), n_rot, neox, pos, window, n_split, chunk, heads_per_wg) = c;
    let (qd, kvd) = (n_head * d, n_kv * d);
    let splits = Splits {
        n_split,
        chunk,
        heads_per_wg,
        staged,
        prompt: None,
    };
    let dims = (n_head, n_kv, d, n_rot);
    // The folded kernel's cache: the same rows, but other values at the new position.
    let t = FoldData::new(gpu, rng, dims, pos, true);
    let part_floats = splits.part_floats(n_head, d).max(1);
    let (p1, p2) = (
        gpu.buf_f32(&vec![f32::NAN; part_floats]),
        gpu.buf_f32(&vec![f32::NAN; part_floats]),
    );
    let rope = t.rope_op(gpu, dims, neox);
    let kind = attention_kind_window((n_head, n_kv, d), window);
    let scratch = |part: &Buffer| AttnScratch {
        part: part.all(),
        splits,
    };
    let attn = gpu.attention_op(&t.sbuf, &t.qbuf, &t.cache, &t.o1, Some(scratch(&p1)), kind);
    let folded = t.folded_op(
        gpu,
        Some(scratch(&p2)),
        attention_rope_kind(dims, window, neox),
    );
    let OpKind::AttentionRope { split: Some(s), .. } = &folded.kind else {
        panic!("no folded split kernel for {c:?}");
    };
    let f = gpu.dev.features;
    let ran_staged = s.split.name.starts_with("attention_staged_rope_");
    let kernel = if ran_staged { "staged" } else { "rows" };
    assert_eq!(ran_staged, staged && f.subgroup_arith && f.subgroup_shuffle);
    assert!(
        ran_staged || s.split.name.starts_with("attention_split_rope_"),
        "{}",
        s.split.name
    );
    let what = format!(
        "{kernel} kernel, heads {n_head}/{n_kv} d {d} n_rot {n_rot} neox {neox} pos {pos} \
         window {window}, {n_split} splits (chunk {chunk}, {heads_per_wg} heads per workgroup)"
    );
    let b = t.assert_fold_equals_pair(gpu, [&rope, &attn, &folded], qd, &what);
    // The reference: rotated queries, the new rows in f16, the window's keys alone.
    let (mut kc, mut vc) = (t.cache.k.clone(), t.cache.v.clone());
    let q = rope_kv_ref(&t.qkv, dims, (pos, neox, 10000.0), (&mut kc, &mut vc));
    let n = pos + 1;
    let w0 = if window > 0 {
        n.saturating_sub(window)
    } else {
        0
    };
    let want = attention_ref(
        &q,
        &kc[w0 * kvd..],
        &vc[w0 * kvd..],
        (n_head, n_kv, d),
        n - w0,
    );
    for i in 0..qd {
        assert!(
            (b[i] as f64 - want[i]).abs() < 2e-3,
            "{what}: out[{i}] = {} vs the f64 reference {}",
            b[i],
            want[i]
        );
    }
    gpu.check();
}

#[test]
fn rope_folded_into_split_attention() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(29);
    let cases: [Case; 12] = [
        // Position 0: the new key is the only one (every other split empty).
        ((6, 2, 64), 64, false, 0, 0, 4, 0, 8),
        // SmolLM2's heads: the new key the last of a full first chunk of 64.
        ((9, 3, 64), 64, false, 63, 0, 4, 0, 8),
        // The new key alone in the second split.
        ((9, 3, 64), 64, false, 64, 0, 4, 0, 8),
        // One split (the output written directly), one query head per workgroup.
        ((9, 3, 64), 64, true, 130, 0, 1, 0, 1),
        // Qwen2.5-0.5B's group of 7 (NEOX) at depth.
        ((14, 2, 64), 64, true, 2999, 0, 8, 0, 8),
        // A group of 9: two workgroup slices of query heads; partial rotation, head size 128.
        ((18, 2, 128), 32, false, 2400, 0, 5, 0, 8),
        // No grouping, 32 splits (a GPU's default), past 4096 positions.
        ((4, 4, 128), 128, false, 4099, 0, 32, 0, 8),
        // A fixed chunk (`PIGPU_VK_ATTN_CHUNK`), head size 256, NEOX.
        ((4, 1, 256), 256, true, 999, 0, 8, 128, 8),
        // A sliding window of 300 at depth 1200: the splits before it stay empty.
        ((8, 2, 64), 64, false, 1199, 300, 8, 0, 8),
        // A window inside one split and one tile, group of 3, head size 128.
        ((6, 2, 128), 128, true, 499, 20, 4, 0, 8),
        // gemma-3-270m's heads (4 query, 1 KV, 256) in a window of 512, depth 700.
        ((4, 1, 256), 256, false, 700, 512, 16, 0, 8),
        // A window of one: only the new key.
        ((8, 2, 64), 64, false, 150, 1, 4, 0, 8),
    ];
    for c in cases {
        for staged in [true, false] {
            run_case(&mut gpu, &mut rng, c, staged);
        }
    }
}

/// Times the folded split attention against `rope_kv` + the split attention on the same data
/// by GPU timestamps (each pass's dispatches summed; the fastest and the median of 9 runs taking
/// turns), on both split kernels, 8 splits, on SmolLM2's heads (9/3, 64), Qwen2.5-0.5B's (14/2, 64,
/// NEOX) and Llama-3.2-3B's (24/8, 128) at depths 256 and 4096. On lavapipe this says what the
/// fold costs in work, not what a GPU's stage saves: `cargo test --release --lib
/// bench_rope_split -- --ignored --nocapture` (with `PIGPU_TEST_DEVICE` for another device).
#[test]
#[ignore = "benchmark"]
fn bench_rope_split() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(31);
    let n_split = 8;
    for ((n_head, n_kv, d), neox) in [
        ((9, 3, 64), false),
        ((14, 2, 64), true),
        ((24, 8, 128), false),
    ] {
        for (n, staged) in [(256usize, true), (4096, true), (256, false), (4096, false)] {
            let splits = Splits {
                n_split,
                chunk: 0,
                heads_per_wg: 8,
                staged,
                prompt: None,
            };
            let dims = (n_head, n_kv, d, d);
            let t = FoldData::new(&mut gpu, &mut rng, dims, n - 1, false);
            let part = gpu.buf_f32(&vec![0.0; splits.part_floats(n_head, d)]);
            let part2 = gpu.buf_f32(&vec![0.0; splits.part_floats(n_head, d)]);
            let rope = t.rope_op(&mut gpu, dims, neox);
            let scratch = |part: &Buffer| AttnScratch {
                part: part.all(),
                splits,
            };
            let kind = attention_kind_window((n_head, n_kv, d), 0);
            let attn = gpu.attention_op(
                &t.sbuf,
                &t.qbuf,
                &t.cache,
                &t.o1,
                Some(scratch(&part)),
                kind,
            );
            let kind = attention_rope_kind(dims, 0, neox);
            let folded = t.folded_op(&mut gpu, Some(scratch(&part2)), kind);
            let (mut pair, mut fold) = (Vec::new(), Vec::new());
            for _ in 0..9 {
                // rope_kv, split, combine; then the folded split and its combine.
                let times = gpu.run_timed(&[(&rope, 1), (&attn, 1), (&folded, 1)]);
                assert_eq!(times.len(), 5, "two passes of each attention");
                pair.push(times[0] + times[1] + times[2]);
                fold.push(times[3] + times[4]);
            }
            for v in [&mut pair, &mut fold] {
                v.sort_by(f64::total_cmp);
            }
            eprintln!(
                "{} kernel, heads {n_head}/{n_kv} d {d} neox {neox} depth {n}, {n_split} splits: rope_kv + \
                 split + combine min {:.1} / median {:.1} us, folded split + combine {:.1} / \
                 {:.1} us (folded / pair: min {:.2}, median {:.2})",
                if staged { "staged" } else { "rows" },
                pair[0] / 1e3,
                pair[4] / 1e3,
                fold[0] / 1e3,
                fold[4] / 1e3,
                fold[0] / pair[0],
                fold[4] / pair[4]
            );
        }
    }
}
