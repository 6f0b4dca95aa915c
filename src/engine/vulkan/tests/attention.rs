//! The split decode attention (attention.rs: flash-decoding with grouped query heads) against
//! an f64 reference, from one cached position to thousands, with one split (final output
//! written directly), several (combine pass), empty trailing splits, groups larger than one
//! workgroup serves, a fixed chunk, and head sizes 64 to 256; and the one-row kernel it
//! replaces for decoding, on the same data, where the two must agree.

use super::{attention_kind, attention_ref, Gpu, Rng};
use crate::engine::vulkan::attention::{AttnScratch, Splits};
use crate::engine::vulkan::buffer::Buffer;
use crate::engine::vulkan::kernels::OpKind;

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
    let op = |gpu: &mut Gpu, out: &Buffer, scratch: Option<AttnScratch>| {
        gpu.ops()
            .attention(
                sbuf.all(),
                qbuf.all(),
                cache.kbuf.all(),
                cache.vbuf.all(),
                out.all(),
                scratch,
                attention_kind(c.heads),
            )
            .unwrap()
    };
    let split = op(
        gpu,
        &split_out,
        Some(AttnScratch {
            part: part.all(),
            splits: c.splits,
        }),
    );
    assert!(
        matches!(&split.kind, OpKind::Attention { split: Some(_), .. }),
        "no split kernel for {:?}",
        c.heads
    );
    let row = op(gpu, &row_out, None);
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
    let dynamic = |n_split| Splits {
        n_split,
        chunk: 0,
        heads_per_wg: 8,
    };
    let cases = [
        // One position: every split but the first is empty.
        Case {
            heads: (6, 2, 64),
            n: 1,
            splits: dynamic(4),
        },
        // SmolLM2's heads (9 query, 3 KV), one split: the split kernel writes the output.
        Case {
            heads: (9, 3, 64),
            n: 70,
            splits: dynamic(1),
        },
        // The same, one query head per workgroup (CPU implementations' default).
        Case {
            heads: (9, 3, 64),
            n: 70,
            splits: Splits {
                heads_per_wg: 1,
                ..dynamic(1)
            },
        },
        // One query head per workgroup, several splits, at depth.
        Case {
            heads: (14, 2, 64),
            n: 2100,
            splits: Splits {
                heads_per_wg: 1,
                ..dynamic(3)
            },
        },
        // Not a multiple of 64 positions, splits partly empty (chunk rounds up to 64).
        Case {
            heads: (9, 3, 64),
            n: 300,
            splits: dynamic(8),
        },
        // Qwen2.5-0.5B's group of 7 at depth 3000.
        Case {
            heads: (14, 2, 64),
            n: 3000,
            splits: dynamic(8),
        },
        // A group of 9 (two workgroup slices of query heads), head size 128.
        Case {
            heads: (18, 2, 128),
            n: 2500,
            splits: dynamic(5),
        },
        // No grouping, 32 splits (a GPU's default), past 4096 positions.
        Case {
            heads: (4, 4, 128),
            n: 4100,
            splits: dynamic(32),
        },
        // A fixed chunk (`PIGPU_VK_ATTN_CHUNK`), head size 256.
        Case {
            heads: (4, 1, 256),
            n: 1000,
            splits: Splits {
                n_split: 8,
                chunk: 128,
                heads_per_wg: 8,
            },
        },
    ];
    for c in &cases {
        run_case(&mut gpu, &mut rng, c);
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
                ops.push(
                    gpu.ops()
                        .attention(
                            sbuf.all(),
                            qbuf.all(),
                            cache.kbuf.all(),
                            cache.vbuf.all(),
                            obuf.all(),
                            scratch,
                            attention_kind((n_head, n_kv, d)),
                        )
                        .unwrap(),
                );
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
