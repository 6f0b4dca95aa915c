//! The split decode attention (attention.rs: flash-decoding with grouped query heads) against
//! an f64 reference, from one cached position to thousands, with one split (final output
//! written directly), several (combine pass), empty trailing splits, groups larger than one
//! workgroup serves, a fixed chunk, and head sizes 64 to 256; and the one-row kernel it
//! replaces for decoding, on the same data, where the two must agree.

use super::{attention_ref, Gpu, Rng};
use crate::engine::vulkan::attention::{AttnScratch, Splits};
use crate::engine::vulkan::ops::OpKind;

struct Case {
    heads: (usize, usize, usize),
    /// Positions attended to (the current token's included).
    n: usize,
    splits: Splits,
}

fn run_case(gpu: &mut Gpu, rng: &mut Rng, c: &Case) {
    let (n_head, n_kv, d) = c.heads;
    let (qd, kvd, n_ctx) = (n_head * d, n_kv * d, c.n + 5);
    let cache = gpu.kv_cache(rng, n_ctx, kvd);
    let q = rng.vec(qd, 1.0);
    // At the current token's position.
    let sbuf = gpu.state_at(c.n - 1);
    let qbuf = gpu.buf_f32(&q);
    let split_out = gpu.buf_f32(&vec![f32::NAN; qd]);
    let row_out = gpu.buf_f32(&vec![f32::NAN; qd]);
    let part = gpu.buf_f32(&vec![f32::NAN; c.splits.part_floats(n_head, d).max(1)]);
    let scratch = AttnScratch {
        part: part.all(),
        splits: c.splits,
    };
    let split = gpu.attention_op(&sbuf, &qbuf, &cache, &split_out, Some(scratch), c.heads);
    assert!(
        matches!(&split.kind, OpKind::Attention { split: Some(_), .. }),
        "no split kernel for {:?}",
        c.heads
    );
    let row = gpu.attention_op(&sbuf, &qbuf, &cache, &row_out, None, c.heads);
    gpu.run(&[(&split, 1), (&row, 1)]);
    let want = attention_ref(&q, &cache.k, &cache.v, c.heads, c.n);
    let got = gpu.read_f32(&split_out, qd);
    let got_row = gpu.read_f32(&row_out, qd);
    let what = format!(
        "heads {:?}, depth {}, {} splits (chunk {})",
        c.heads, c.n, c.splits.n_split, c.splits.chunk
    );
    for i in 0..qd {
        assert!(
            (got[i] as f64 - want[i]).abs() < 2e-3,
            "{what}: out[{i}] = {} vs {}",
            got[i],
            want[i]
        );
        assert!(
            (got[i] - got_row[i]).abs() < 2e-3,
            "{what}: out[{i}] = {} vs the one-row kernel's {}",
            got[i],
            got_row[i]
        );
    }
    gpu.check();
}

#[test]
fn split_attention_matches_reference_at_every_depth() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(41);
    // (query heads, KV heads, head size), positions attended to, splits, chunk (0: the
    // positions shared out evenly), query heads per workgroup.
    let cases = [
        // One position: every split but the first is empty.
        ((6, 2, 64), 1, 4, 0, 8),
        // SmolLM2's heads (9 query, 3 KV), one split: the split kernel writes the output.
        ((9, 3, 64), 70, 1, 0, 8),
        // The same, one query head per workgroup (CPU implementations' default).
        ((9, 3, 64), 70, 1, 0, 1),
        // One query head per workgroup, several splits, at depth.
        ((14, 2, 64), 2100, 3, 0, 1),
        // Not a multiple of 64 positions, splits partly empty (chunk rounds up to 64).
        ((9, 3, 64), 300, 8, 0, 8),
        // Qwen2.5-0.5B's group of 7 at depth 3000.
        ((14, 2, 64), 3000, 8, 0, 8),
        // A group of 9 (two workgroup slices of query heads), head size 128.
        ((18, 2, 128), 2500, 5, 0, 8),
        // No grouping, 32 splits (a GPU's default), past 4096 positions.
        ((4, 4, 128), 4100, 32, 0, 8),
        // A fixed chunk (`PIGPU_VK_ATTN_CHUNK`), head size 256.
        ((4, 1, 256), 1000, 8, 128, 8),
    ];
    for (heads, n, n_split, chunk, heads_per_wg) in cases {
        let splits = Splits {
            n_split,
            chunk,
            heads_per_wg,
        };
        run_case(&mut gpu, &mut rng, &Case { heads, n, splits });
    }
}

/// GPU time of the split decode attention against the one-row kernel it replaced, at depths up
/// to 4096 with SmolLM2's and Qwen2.5-0.5B's heads (a report, not a check: timing on a shared
/// machine is noise-prone). `cargo test --release --lib bench_split_attention -- --ignored
/// --nocapture`; `PIGPU_VK_BENCH_SPLITS` sets the split count (default 4, lavapipe's cap),
/// `PIGPU_VK_BENCH_GROUP` the query heads per workgroup (default 1, lavapipe's choice).
#[test]
#[ignore = "benchmark"]
fn bench_split_attention() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(7);
    let n_split: u32 = std::env::var("PIGPU_VK_BENCH_SPLITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    for (n_head, n_kv, d) in [(9usize, 3usize, 64usize), (14, 2, 64)] {
        for n in [256usize, 1024, 4096] {
            let (qd, kvd) = (n_head * d, n_kv * d);
            let cache = gpu.kv_cache(&mut rng, n, kvd);
            let sbuf = gpu.state_at(n - 1);
            let qbuf = gpu.buf_f32(&rng.vec(qd, 1.0));
            let obuf = gpu.buf_f32(&vec![0.0; qd]);
            let heads_per_wg: u32 = std::env::var("PIGPU_VK_BENCH_GROUP")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let splits = Splits {
                n_split,
                chunk: 0,
                heads_per_wg,
            };
            let part = gpu.buf_f32(&vec![0.0; splits.part_floats(n_head, d)]);
            let mut ops = Vec::new();
            for scratch in [
                None,
                Some(AttnScratch {
                    part: part.all(),
                    splits,
                }),
            ] {
                let heads = (n_head, n_kv, d);
                ops.push(gpu.attention_op(&sbuf, &qbuf, &cache, &obuf, scratch, heads));
            }
            // Best of 5 (one-row, split pass [, combine pass]) per kernel.
            let (mut row, mut split) = (f64::MAX, f64::MAX);
            for _ in 0..5 {
                let t = gpu.run_timed(&[(&ops[0], 1), (&ops[1], 1)]);
                row = row.min(t[0]);
                split = split.min(t[1..].iter().sum());
            }
            eprintln!(
                "heads {n_head}/{n_kv} d {d} depth {n}: one-row {:.0} us, split ({n_split}) {:.0} us, {:.2}x",
                row / 1e3,
                split / 1e3,
                row / split
            );
        }
    }
}
