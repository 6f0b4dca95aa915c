//! The split decode attention (attention.rs: flash-decoding with grouped query heads) against
//! an f64 reference, from one cached position to thousands, with one split (final output
//! written directly), several (combine pass), empty trailing splits, groups larger than one
//! workgroup serves, a fixed chunk, a sliding window and head sizes 64 to 256; each case on
//! both split kernels (the staged one for GPUs and the rows one) and on the one-row kernel they
//! replace for decoding, on the same data, where all must agree. And the staged kernel's shapes
//! against the limits of the devices it may meet. And the lanes prompt attention (CPU
//! implementations' prompt batches) against the reference and the one-row kernel; the tiled
//! prompt attention split over the KV range (a short batch deep in the cache) against the
//! reference and its one-pass form, and the rule that chooses its splits.

use super::{attention_kind, attention_kind_window, attention_ref, Gpu, KvCache, Rng};
use crate::engine::vulkan::attention::{staged_shape, AttnScratch, Splits, StagedShape};
use crate::engine::vulkan::attention::{PROMPT_MAX_SPLIT, PROMPT_PART_ROWS, PROMPT_WGS};
use crate::engine::vulkan::ops::OpKind;
use crate::engine::vulkan::shapes::Limits;
use crate::engine::vulkan::tiled::{lanes_heads, lanes_shape};

struct Case {
    heads: (usize, usize, usize),
    /// Positions attended to (the current token's included).
    n: usize,
    splits: Splits,
    /// Sliding window in positions (0: none).
    window: usize,
}

fn run_case(gpu: &mut Gpu, rng: &mut Rng, c: &Case) {
    let (n_head, n_kv, d) = c.heads;
    let (qd, kvd, n_ctx) = (n_head * d, n_kv * d, c.n + 5);
    let cache = gpu.kv_cache(rng, n_ctx, kvd);
    let q = rng.vec(qd, 1.0);
    // At the current token's position.
    let sbuf = gpu.state_at(c.n - 1);
    let qbuf = gpu.buf_f32(&q);
    let kind = || attention_kind_window(c.heads, c.window);
    let row_out = gpu.buf_f32(&vec![f32::NAN; qd]);
    let row = gpu.attention_op(&sbuf, &qbuf, &cache, &row_out, None, kind());
    // The window's keys are the last `window` positions: the reference over those alone.
    let w0 = if c.window > 0 {
        c.n.saturating_sub(c.window)
    } else {
        0
    };
    let want = attention_ref(
        &q,
        &cache.k[w0 * kvd..],
        &cache.v[w0 * kvd..],
        c.heads,
        c.n - w0,
    );
    let f = gpu.dev.features;
    for staged in [true, false] {
        let splits = Splits { staged, ..c.splits };
        let split_out = gpu.buf_f32(&vec![f32::NAN; qd]);
        let part = gpu.buf_f32(&vec![f32::NAN; splits.part_floats(n_head, d).max(1)]);
        let scratch = AttnScratch {
            part: part.all(),
            splits,
        };
        let split = gpu.attention_op(&sbuf, &qbuf, &cache, &split_out, Some(scratch), kind());
        let OpKind::Attention { split: Some(s), .. } = &split.kind else {
            panic!("no split kernel for {:?}", c.heads);
        };
        // Every head size here is a multiple of 8 up to 256: the staged kernel runs wherever
        // the device has subgroup arithmetic and shuffles (lavapipe has).
        let can_stage = f.subgroup_arith && f.subgroup_shuffle;
        let ran_staged = s.split.name.starts_with("attention_staged");
        assert_eq!(
            ran_staged,
            staged && can_stage,
            "staged kernel for {:?}, asked {staged}",
            c.heads
        );
        gpu.run(&[(&split, 1), (&row, 1)]);
        let got = gpu.read_f32(&split_out, qd);
        let got_row = gpu.read_f32(&row_out, qd);
        let what = format!(
            "{} kernel, heads {:?}, depth {}, window {}, {} splits (chunk {}, {} heads per \
             workgroup)",
            if ran_staged { "staged" } else { "rows" },
            c.heads,
            c.n,
            c.window,
            splits.n_split,
            splits.chunk,
            splits.heads_per_wg
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
}

#[test]
fn split_attention_matches_reference_at_every_depth() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(41);
    // (query heads, KV heads, head size), positions attended to, splits, chunk (0: the
    // positions shared out evenly), query heads per workgroup, sliding window (0: none).
    let cases = [
        // One position: every split but the first is empty.
        ((6, 2, 64), 1, 4, 0, 8, 0),
        // SmolLM2's heads (9 query, 3 KV), one split: the split kernel writes the output.
        ((9, 3, 64), 70, 1, 0, 8, 0),
        // The same, one query head per workgroup (CPU implementations' default).
        ((9, 3, 64), 70, 1, 0, 1, 0),
        // One query head per workgroup, several splits, at depth.
        ((14, 2, 64), 2100, 3, 0, 1, 0),
        // Not a multiple of 64 positions, splits partly empty (chunk rounds up to 64).
        ((9, 3, 64), 300, 8, 0, 8, 0),
        // Qwen2.5-0.5B's group of 7 at depth 3000.
        ((14, 2, 64), 3000, 8, 0, 8, 0),
        // A group of 9 (two workgroup slices of query heads), head size 128.
        ((18, 2, 128), 2500, 5, 0, 8, 0),
        // No grouping, 32 splits (a GPU's default), past 4096 positions.
        ((4, 4, 128), 4100, 32, 0, 8, 0),
        // A fixed chunk (`PIGPU_VK_ATTN_CHUNK`), head size 256.
        ((4, 1, 256), 1000, 8, 128, 8, 0),
        // A sliding window of 300 at depth 1200: the splits before it stay empty.
        ((8, 2, 64), 1200, 8, 0, 8, 300),
        // A window inside one split and one tile, group of 3, head size 128.
        ((6, 2, 128), 500, 4, 0, 8, 20),
    ];
    for (heads, n, n_split, chunk, heads_per_wg, window) in cases {
        let splits = Splits {
            n_split,
            chunk,
            heads_per_wg,
            staged: true,
            prompt: None,
        };
        let c = Case {
            heads,
            n,
            splits,
            window,
        };
        run_case(&mut gpu, &mut rng, &c);
    }
}

/// The f64 reference for row `t` of the batch's queries `q`, the token at position `p`: its
/// attention over the cached positions it sees (the last `window` up to its own; 0: all).
fn batch_ref(
    q: &[f32],
    cache: &KvCache,
    heads: (usize, usize, usize),
    p: usize,
    t: usize,
    window: usize,
) -> Vec<f64> {
    let (n_head, n_kv, d) = heads;
    let (qd, kvd) = (n_head * d, n_kv * d);
    let w0 = if window > 0 {
        (p + 1).saturating_sub(window)
    } else {
        0
    };
    let row = &q[t * qd..(t + 1) * qd];
    attention_ref(
        row,
        &cache.k[w0 * kvd..],
        &cache.v[w0 * kvd..],
        heads,
        p + 1 - w0,
    )
}

/// The tiled prompt attention split over the KV range (`Splits::prompt_split`: workgroups by
/// split, then the combine pass over [token][head][split] partials) against the f64 reference
/// and the same kernel in one pass on the same data: forced splits whose chunk leaves the last
/// split short, a batch of several query blocks whose early blocks see no key in the last
/// splits, a sliding window that leaves the first splits empty for every row, head size 128,
/// and the automatic choice deep in the cache. The recording names the split pass and the
/// combine pass, and the partials hold exactly the splits chosen.
#[test]
fn prompt_attention_split_matches_one_pass_and_reference() {
    let mut gpu = Gpu::tiled();
    let mut rng = Rng::new(67);
    // (query heads, KV heads, head size), cached positions, tokens, window, forced splits
    // (None: automatic), splits expected.
    let cases = [
        ((6, 2, 64), 100, 20, 0, Some(3), 2),
        ((6, 2, 64), 300, 37, 0, Some(7), 6),
        ((8, 2, 64), 400, 30, 100, Some(4), 4),
        ((4, 1, 128), 1200, 9, 0, None, 4),
        ((9, 3, 64), 40, 12, 0, None, 1),
    ];
    for ((n_head, n_kv, d), pos0, n_tok, window, forced, want_split) in cases {
        let heads = (n_head, n_kv, d);
        let (qd, kvd, n_ctx) = (n_head * d, n_kv * d, pos0 + n_tok + 3);
        let cache = gpu.kv_cache(&mut rng, n_ctx, kvd);
        let q = rng.vec(n_tok * qd, 1.0);
        let sbuf = gpu.state_at(pos0);
        let qbuf = gpu.buf_f32(&q);
        let kind = || attention_kind_window(heads, window);
        let one_out = gpu.buf_f32(&vec![f32::NAN; n_tok * qd]);
        let one = gpu.attention_op(&sbuf, &qbuf, &cache, &one_out, None, kind());
        let splits = Splits {
            n_split: 4,
            chunk: 0,
            heads_per_wg: 8,
            staged: true,
            prompt: forced,
        };
        let part_len = splits.part_floats(n_head, d);
        let part = gpu.buf_f32(&vec![f32::NAN; part_len]);
        let scratch = AttnScratch {
            part: part.all(),
            splits,
        };
        let split_out = gpu.buf_f32(&vec![f32::NAN; n_tok * qd]);
        let split = gpu.attention_op(&sbuf, &qbuf, &cache, &split_out, Some(scratch), kind());
        let what = format!(
            "heads {heads:?}, pos0 {pos0}, {n_tok} tokens, window {window}, splits {forced:?}"
        );
        let labels = gpu.run_at(&[(&split, n_tok as u32)], pos0 as u32);
        gpu.run_at(&[(&one, n_tok as u32)], pos0 as u32);
        gpu.check();
        if want_split > 1 {
            assert_eq!(
                labels,
                ["attention_prompt split", "attention combine"],
                "{what}"
            );
        } else {
            assert_eq!(labels.len(), 1, "{what}: {labels:?}");
            assert!(
                labels[0].starts_with("attention_prompt_"),
                "{what}: {labels:?}"
            );
        }
        let written = gpu.read_f32(&part, part_len);
        let n_written = written.iter().take_while(|x| !x.is_nan()).count();
        let expect = if want_split > 1 {
            n_tok * n_head * want_split * (d + 2)
        } else {
            0
        };
        assert_eq!(n_written, expect, "{what}: partials written");
        let got = gpu.read_f32(&split_out, n_tok * qd);
        let got_one = gpu.read_f32(&one_out, n_tok * qd);
        for t in 0..n_tok {
            let want = batch_ref(&q, &cache, heads, pos0 + t, t, window);
            for (j, want) in want.iter().enumerate() {
                let (a, b) = (got[t * qd + j], got_one[t * qd + j]);
                assert!(
                    (a as f64 - want).abs() < 2e-4,
                    "{what}: t={t} out[{j}] = {a} vs {want}"
                );
                assert!(
                    (a - b).abs() < 2e-4,
                    "{what}: t={t} out[{j}] = {a} vs one pass {b}"
                );
            }
        }
    }
}

/// Which prompt batches split their attention, and how: only short batches (fewer workgroups
/// than `PROMPT_WGS`) with at least 256 keys a split, never past `PROMPT_MAX_SPLIT` or the
/// partials' room, chunks whole tiles covering every key, no empty trailing split; a forced
/// count splits any batch (within that room) and 1 never does.
#[test]
fn prompt_splits_only_short_batches_deep_in_the_cache() {
    let auto = Splits {
        n_split: 1,
        chunk: 0,
        heads_per_wg: 8,
        staged: true,
        prompt: None,
    };
    let forced = |n| Splits {
        prompt: Some(n),
        ..auto
    };
    // (splits, query heads, tokens, keys, tile) -> (n_split, chunk)
    let cases = [
        // Llama-3.2-3B's 24 heads: 20 tokens after 3000 cached (48 workgroups): 6 splits.
        (auto, 24, 20, 3020, 32, Some((6, 512))),
        // The same batch shallow in the cache: no split (fewer than 512 keys).
        (auto, 24, 20, 300, 32, None),
        // 512 tokens (768 workgroups): no split at any depth.
        (auto, 24, 512, 8192, 32, None),
        // 9 heads, 8 tokens (9 workgroups) at depth 100000: 29 splits fill 256 workgroups.
        (auto, 9, 8, 100_000, 32, Some((29, 3456))),
        // 2 heads, 8 tokens at that depth: at most 32 splits.
        (auto, 2, 8, 100_000, 32, Some((32, 3136))),
        // Forced: 3 splits of a shallow batch; 1 never splits.
        (forced(3), 6, 20, 120, 32, Some((2, 64))),
        (forced(1), 6, 20, 5000, 32, None),
        // Forced past the partials' room: 400 tokens x 32 heads leave room for none.
        (forced(8), 32, 400, 5000, 32, None),
    ];
    for (s, n_head, n_tok, keys, bc, want) in cases {
        let got = s.prompt_split(n_head, n_tok, 16, keys, bc);
        assert_eq!(
            got, want,
            "{n_head} heads, {n_tok} tokens, {keys} keys, {s:?}"
        );
        if let Some((n, chunk)) = got {
            assert!(n > 1 && n <= PROMPT_MAX_SPLIT && chunk % bc == 0);
            assert!(
                n * chunk >= keys && (n - 1) * chunk < keys,
                "every split holds keys"
            );
            assert!(n_tok * n_head * n <= PROMPT_PART_ROWS, "the partials fit");
            if s.prompt.is_none() {
                assert!(n_head * n_tok.div_ceil(16) < PROMPT_WGS && chunk >= 256);
            }
        }
    }
}

/// The lanes prompt attention (`shaders/attention_lanes.comp`: one query row per invocation
/// and head, a subgroup of rows per workgroup, `lanes_heads` query heads of one KV head per
/// workgroup) against the f64 reference and the one-row kernel on the same data: SmolLM2's
/// heads over a whole 64-token batch from position 0, a batch that is no multiple of the rows
/// per workgroup starting deep in the cache (as a later ubatch of a long prompt does),
/// grouped-query heads of 1, 3, 4 and 7 (workgroups of 1, 2, 3, 4 and 7 heads: Qwen2.5's 14
/// over 2 at head size 64 all in one; at 80 one each), head sizes 6 to 256 (80: a row's pairs
/// are no multiple of the subgroup), sliding windows that start inside a block (every row's
/// window begins at another key, the block's first keys masked for its later rows) and one wider
/// than the cache, two tokens, and sharp scores (the queries scaled by 8) that make the
/// online softmax rescale.
#[test]
fn lanes_prompt_attention_matches_reference() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(53);
    // (query heads, KV heads, head size), first position, tokens, window, query scale.
    let cases = [
        ((9, 3, 64), 0, 64, 0, 1.0),
        ((6, 2, 64), 70, 37, 0, 1.0),
        ((4, 1, 128), 5, 20, 0, 1.0),
        ((8, 2, 256), 3, 11, 0, 1.0),
        ((14, 2, 80), 40, 9, 0, 1.0),
        ((14, 2, 64), 60, 19, 0, 1.0),
        ((2, 2, 6), 0, 13, 0, 1.0),
        ((8, 2, 64), 100, 30, 20, 1.0),
        ((4, 2, 128), 10, 17, 512, 1.0),
        ((6, 2, 64), 33, 2, 0, 1.0),
        ((9, 3, 64), 16, 24, 5, 8.0),
    ];
    for ((n_head, n_kv, d), pos0, n_tok, window, qs) in cases {
        let (qd, kvd, n_ctx) = (n_head * d, n_kv * d, pos0 + n_tok + 3);
        let cache = gpu.kv_cache(&mut rng, n_ctx, kvd);
        let q: Vec<f32> = rng.vec(n_tok * qd, 1.0).iter().map(|x| x * qs).collect();
        let sbuf = gpu.state_at(pos0);
        let qbuf = gpu.buf_f32(&q);
        let mut outs = Vec::new();
        // The lanes kernel reading K/V through texel views, through storage buffers, then the
        // one-row kernel.
        for (lanes, texel) in [(true, true), (true, false), (false, false)] {
            gpu.kernels.set_prompt_lanes(lanes);
            gpu.kernels.set_lanes_texel(texel);
            let obuf = gpu.buf_f32(&vec![f32::NAN; n_tok * qd]);
            let kind = attention_kind_window((n_head, n_kv, d), window);
            let op = gpu.attention_op(&sbuf, &qbuf, &cache, &obuf, None, kind);
            let name = match &op.kind {
                OpKind::Attention {
                    prompt: Some(p), ..
                } => Some(p.kernel.name.clone()),
                _ => None,
            };
            if lanes {
                let name = name.expect("lanes attention on lavapipe");
                let g = lanes_heads((n_head / n_kv) as u32, d as u32);
                let mut want = match g {
                    1 => format!("attention_lanes_8_{d}"),
                    g => format!("attention_lanes_8_{d}_g{g}"),
                };
                if texel {
                    want.push_str("_t");
                }
                assert_eq!(name, want);
            } else {
                assert_eq!(name, None, "one-row kernel");
            }
            gpu.run(&[(&op, n_tok as u32)]);
            outs.push(gpu.read_f32(&obuf, n_tok * qd));
            gpu.check();
        }
        gpu.kernels.set_prompt_lanes(true);
        gpu.kernels.set_lanes_texel(true);
        let what = format!(
            "heads {:?}, pos0 {pos0}, {n_tok} tokens, window {window}",
            (n_head, n_kv, d)
        );
        for t in 0..n_tok {
            let want = batch_ref(&q, &cache, (n_head, n_kv, d), pos0 + t, t, window);
            for (j, want) in want.iter().enumerate() {
                let row = outs[2][t * qd + j];
                for (form, out) in ["texel", "storage"].iter().zip(&outs) {
                    let lanes = out[t * qd + j];
                    assert!(
                        (lanes as f64 - want).abs() < 2e-4 * qs as f64,
                        "{what}, {form}: t={t} out[{j}] = {lanes} vs {want}"
                    );
                    assert!(
                        (lanes - row).abs() < 2e-4 * qs,
                        "{what}, {form}: t={t} out[{j}] = {lanes} vs the one-row kernel's {row}"
                    );
                }
            }
        }
    }
}

/// The lanes attention's heads per workgroup: the largest divisor of the group whose rows
/// (heads × head size) fit 512 floats, one where none larger does.
#[test]
fn lanes_heads_divide_the_group_within_the_row_budget() {
    for (group, d, want) in [
        (3, 64, 3),
        (7, 64, 7),
        (7, 80, 1),
        (4, 256, 2),
        (4, 128, 4),
        (8, 64, 8),
        (8, 128, 4),
        (6, 128, 3),
        (1, 256, 1),
        (2, 512, 1),
        (0, 64, 1),
    ] {
        assert_eq!(lanes_heads(group, d), want, "group {group}, head {d}");
    }
}

/// Where the lanes attention runs: a fixed subgroup of at most 16 lanes (a power of two) with
/// ballot, within the workgroup limit, and an even head size up to 256.
#[test]
fn lanes_shape_needs_a_fixed_subgroup_and_an_even_head() {
    assert_eq!(lanes_shape((8, 8), true, 1024, 64), Some(8));
    assert_eq!(lanes_shape((4, 4), true, 1024, 256), Some(4));
    assert_eq!(lanes_shape((16, 16), true, 1024, 2), Some(16));
    for (sg, ballot, max_wg, d) in [
        ((8, 32), true, 1024, 64),
        ((32, 32), true, 1024, 64),
        ((12, 12), true, 1024, 64),
        ((8, 8), false, 1024, 64),
        ((8, 8), true, 4, 64),
        ((8, 8), true, 1024, 65),
        ((8, 8), true, 1024, 0),
        ((8, 8), true, 1024, 258),
    ] {
        assert_eq!(
            lanes_shape(sg, ballot, max_wg, d),
            None,
            "{sg:?} {ballot} {max_wg} {d}"
        );
    }
}

/// Every staged shape the chooser returns, for head sizes 8..=256 and 1..=8 query heads per
/// workgroup, fits the device it was chosen for: shared memory, workgroup size, a whole number
/// of subgroups per workgroup and per tile's score lanes, a score's lanes within the smallest
/// subgroup; devices without subgroup shuffles, and odd or too large head sizes, get none.
#[test]
fn staged_shapes_fit_every_device() {
    let amd = Limits {
        shared_bytes: 64 * 1024,
        max_wg: 1024,
        subgroup_arith: true,
    };
    let small = Limits {
        shared_bytes: 16 * 1024,
        max_wg: 256,
        subgroup_arith: true,
    };
    // (limits, smallest and largest subgroup): NVIDIA, lavapipe, AMD (wave32/64), Intel (8-32),
    // a small device with 16 KiB.
    let devices = [
        (Limits::NVIDIA_48K, (32, 32)),
        (Limits::LAVAPIPE, (8, 8)),
        (amd, (32, 64)),
        (Limits::NVIDIA_48K, (8, 32)),
        (small, (16, 16)),
    ];
    for (lim, (min_sg, max_sg)) in devices {
        for d in (8..=256).step_by(8) {
            for g in 1..=8 {
                let what = format!("{lim:?}, subgroups {min_sg}..{max_sg}, d {d}, g {g}");
                let Some(s) = staged_shape(&lim, (min_sg, max_sg), true, d, g) else {
                    // Only the small device may lack room, and only for the largest groups.
                    assert!(lim == small && g * d >= 1024, "no shape: {what}");
                    continue;
                };
                assert_eq!((s.d, s.g), (d, g), "{what}");
                assert!(
                    s.shared_bytes() <= u64::from(lim.shared_bytes),
                    "{what}: {s:?}"
                );
                assert!(
                    s.wg <= lim.max_wg && s.wg.is_multiple_of(max_sg),
                    "{what}: {s:?}"
                );
                assert!((s.bc * s.ds).is_multiple_of(max_sg), "{what}: {s:?}");
                assert!(s.ds <= min_sg && s.ds.is_power_of_two(), "{what}: {s:?}");
                assert!(s.kp >= 1 && s.kp <= s.bc, "{what}: {s:?}");
                assert!(
                    s.g * s.kp * (d / 4) <= s.wg.max(s.g * d / 4),
                    "{what}: {s:?}"
                );
            }
        }
    }
    // On NVIDIA: 128 lanes, 32-key tiles, 8 lanes per score, and at head size 64 with one query
    // head the output spreads over 8 key phases (16 lanes each).
    let nv = staged_shape(&Limits::NVIDIA_48K, (32, 32), true, 64, 1).unwrap();
    assert_eq!(
        nv,
        StagedShape {
            wg: 128,
            g: 1,
            d: 64,
            bc: 32,
            ds: 8,
            kp: 8
        }
    );
    // Head size 256 with 8 query heads: 32 keys fit 48 KiB, lavapipe's 32 KiB takes 16.
    let big = |lim, sg| staged_shape(lim, sg, true, 256, 8).map(|s| s.bc);
    assert_eq!(big(&Limits::NVIDIA_48K, (32, 32)), Some(32));
    assert_eq!(big(&Limits::LAVAPIPE, (8, 8)), Some(16));
    let no_arith = Limits {
        subgroup_arith: false,
        ..Limits::NVIDIA_48K
    };
    for (lim, shuffle, d) in [
        (Limits::NVIDIA_48K, false, 128),
        (no_arith, true, 128),
        (Limits::NVIDIA_48K, true, 100),
        (Limits::NVIDIA_48K, true, 264),
        (Limits::NVIDIA_48K, true, 0),
    ] {
        assert_eq!(staged_shape(&lim, (32, 32), shuffle, d, 4), None, "d {d}");
    }
}

/// GPU time of the split decode attention's two kernels (staged and rows) against the one-row
/// kernel, at depths up to 4096 with SmolLM2's, Qwen2.5-0.5B's and Llama-3.2-3B's heads (a
/// report, not a check: timing on a shared machine is noise-prone, and lavapipe's times say
/// nothing about a GPU's). `cargo test --release --lib bench_split_attention -- --ignored
/// --nocapture`; `PIGPU_VK_BENCH_SPLITS` sets the split count (default 4),
/// `PIGPU_VK_BENCH_GROUP` the query heads per workgroup (default 8, the GPUs' choice).
#[test]
#[ignore = "benchmark"]
fn bench_split_attention() {
    let mut gpu = Gpu::new();
    let mut rng = Rng::new(7);
    let knob = |name: &str, default: u32| -> u32 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n_split = knob("PIGPU_VK_BENCH_SPLITS", 4);
    let heads_per_wg = knob("PIGPU_VK_BENCH_GROUP", 8);
    for (n_head, n_kv, d) in [(9usize, 3usize, 64usize), (14, 2, 64), (24, 8, 128)] {
        for n in [256usize, 1024, 4096] {
            let (qd, kvd) = (n_head * d, n_kv * d);
            let cache = gpu.kv_cache(&mut rng, n, kvd);
            let sbuf = gpu.state_at(n - 1);
            let qbuf = gpu.buf_f32(&rng.vec(qd, 1.0));
            let obuf = gpu.buf_f32(&vec![0.0; qd]);
            let heads = (n_head, n_kv, d);
            let mut ops =
                vec![gpu.attention_op(&sbuf, &qbuf, &cache, &obuf, None, attention_kind(heads))];
            let mut parts = Vec::new();
            for staged in [false, true] {
                let splits = Splits {
                    n_split,
                    chunk: 0,
                    heads_per_wg,
                    staged,
                    prompt: None,
                };
                let part = gpu.buf_f32(&vec![0.0; splits.part_floats(n_head, d)]);
                let scratch = AttnScratch {
                    part: part.all(),
                    splits,
                };
                ops.push(gpu.attention_op(
                    &sbuf,
                    &qbuf,
                    &cache,
                    &obuf,
                    Some(scratch),
                    attention_kind(heads),
                ));
                parts.push(part);
            }
            // Dispatches per split op: the split pass, and the combine pass with > 1 split.
            let per = if n_split > 1 { 2 } else { 1 };
            // Best of 5 per kernel: one-row, rows split (+ combine), staged split (+ combine).
            let (mut row, mut rows, mut staged) = (f64::MAX, f64::MAX, f64::MAX);
            for _ in 0..5 {
                let t = gpu.run_timed(&[(&ops[0], 1), (&ops[1], 1), (&ops[2], 1)]);
                row = row.min(t[0]);
                rows = rows.min(t[1..1 + per].iter().sum());
                staged = staged.min(t[1 + per..1 + 2 * per].iter().sum());
            }
            eprintln!(
                "heads {n_head}/{n_kv} d {d} depth {n}, {n_split} splits, {heads_per_wg} heads per \
                 workgroup: one-row {:.0} us, rows {:.0} us, staged {:.0} us (staged {:.2}x rows)",
                row / 1e3,
                rows / 1e3,
                staged / 1e3,
                rows / staged
            );
        }
    }
}
