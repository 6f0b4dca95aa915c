//! Decode attention at depth (flash-decoding): the KV range is split over workgroups, each
//! taking one KV head's positions in its split for all the query heads of that head's group
//! (`shaders/attention_split.comp`), and a second dispatch merges the splits' partial max, sum
//! and output (`shaders/attention_combine.comp`). The number of splits is fixed when the graph
//! is built (the decode command buffer is recorded once); the positions per split follow the
//! device-held position, so short contexts leave the later splits empty.
//!
//! Two split kernels share the grid, bindings, partials and combine pass: the staged kernel for
//! GPUs (`shaders/attention_staged.comp`: K/V tiles staged in shared memory with uvec4 loads,
//! the head dimension split over a few lanes, subgroup reductions; shaped by `staged_shape` from
//! the device's limits) and the one-key-per-invocation kernel (`shaders/attention_split.comp`,
//! "rows"), the fallback without subgroup arithmetic and shuffles and the A/B baseline
//! (`Tuning::attn_staged`, `PIGPU_VK_ATTN=staged|rows`).
//!
//! Each has a variant with RoPE and the KV write folded in (`ROPE`, `Tuning::rope_fold`,
//! `PIGPU_VK_ROPE=fold`): it reads the QKV projection and the RoPE table instead of the rotated
//! queries, every workgroup rotates its query heads itself, the split owning the new position
//! takes that position's K and V rows from the projection (never from the cache) and its first
//! slice writes them into the cache, so the decode step needs no `rope_kv` dispatch before it.

use std::rc::Rc;

use ash::vk;

use super::buffer::BufRange;
use super::command::{CmdBuffer, Stamp};
use super::device::Device;
use super::error::Result;
use super::kernels::{Kernels, ATTN_BINDINGS, ATTN_PUSH, ATTN_ROPE_SPLIT_BINDINGS};
use super::pipeline::GpuKernel;
use super::shaders;
use super::shapes::Limits;
use super::tiled::ATTN_BR;

/// Invocations per workgroup of the split and combine kernels, and the granularity of a split.
pub const SPLIT_WG: u32 = 64;
/// Most query heads one split workgroup serves (shaders/attention_split.comp: GMAX).
pub const MAX_GROUP: u32 = 8;

/// How the decode attention splits the KV range: `n_split` workgroups per KV head, each over
/// `chunk` positions (0: the positions so far divided evenly, in multiples of 64), serving at
/// most `heads_per_wg` query heads of the KV head's group (1..=8); `staged`: on the staged
/// kernel where the device and head size allow it (else the rows kernel). `prompt`: the prompt
/// attention's splits (`Tuning::prompt_split`; `None`: chosen per batch, `prompt_split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Splits {
    pub n_split: u32,
    pub chunk: u32,
    pub heads_per_wg: u32,
    pub staged: bool,
    pub prompt: Option<u32>,
}

/// Workgroups a prompt batch's attention should fill before its KV range is split: about two
/// per SM on the GPUs pigpu meets (48 on an RTX A4000, 132 on an H100).
pub const PROMPT_WGS: u32 = 256;
/// Fewest keys a split of the prompt attention takes when chosen automatically.
pub const PROMPT_SPLIT_KEYS: u32 = 256;
/// Most splits of the prompt attention.
pub const PROMPT_MAX_SPLIT: u32 = 32;
/// (token, query head, split) rows of partials the prompt attention may write: what the
/// automatic choice can need (fewer than `PROMPT_WGS` workgroups of `ATTN_BR` rows, split at
/// most `PROMPT_WGS / workgroups + 1` ways) with room for a forced split.
pub const PROMPT_PART_ROWS: u32 = 2 * PROMPT_WGS * ATTN_BR;

impl Splits {
    /// For a context of `n_ctx` positions on `dev`: `Tuning::attn_chunk` if set (query heads
    /// grouped 8 per workgroup, as on GPUs: tests force the GPU path on lavapipe with it); else
    /// on GPUs up to 32 splits of at least 64 positions (8 KV heads x 32 workgroups at depth),
    /// each KV row read once for up to 8 query heads. `None` on CPU implementations: there
    /// attention is compute-bound, lavapipe's two threads are busy with one workgroup per query
    /// head already, and neither grouping nor splitting measured faster than the one-row kernel
    /// (docs/benchmarks.md), so decoding keeps it.
    pub fn for_context(dev: &Device, n_ctx: usize) -> Option<Splits> {
        let n_ctx = n_ctx.max(1) as u32;
        let staged = dev.tuning.attn_staged.unwrap_or(true);
        if let Some(chunk) = dev.tuning.attn_chunk {
            return Some(Splits {
                n_split: n_ctx.div_ceil(chunk).max(1),
                chunk,
                heads_per_wg: MAX_GROUP,
                staged,
                prompt: dev.tuning.prompt_split,
            });
        }
        if !dev.choices.split_attention {
            return None;
        }
        Some(Splits {
            n_split: n_ctx.div_ceil(SPLIT_WG).clamp(1, 32),
            chunk: 0,
            heads_per_wg: MAX_GROUP,
            staged,
            prompt: dev.tuning.prompt_split,
        })
    }

    /// Floats of the partials buffer for `n_head` query heads of size `head_dim`: the decode
    /// splits' or the prompt attention's (`PROMPT_PART_ROWS`), whichever is more.
    pub fn part_floats(&self, n_head: usize, head_dim: usize) -> usize {
        (n_head * self.n_split as usize).max(PROMPT_PART_ROWS as usize) * (head_dim + 2)
    }

    /// How a prompt batch of `n_tok` tokens whose last sees `keys` positions splits the KV
    /// range of its attention (`rows` query rows per workgroup, `n_head` query heads, tiles of
    /// `bc` keys): `(n_split, chunk)`, `chunk` positions per split (a multiple of `bc`), or
    /// `None` for one pass. Forced by `prompt` (at most `PROMPT_MAX_SPLIT`); else split where
    /// the batch's workgroups cannot fill `PROMPT_WGS` (a short batch: the rest of a prompt, a
    /// chat turn after a kept prefix) and there are at least `PROMPT_SPLIT_KEYS` keys a split.
    /// The partials always fit `PROMPT_PART_ROWS`.
    pub fn prompt_split(
        &self,
        n_head: u32,
        n_tok: u32,
        rows: u32,
        keys: u32,
        bc: u32,
    ) -> Option<(u32, u32)> {
        let wgs = n_head * n_tok.div_ceil(rows.max(1));
        let want = match self.prompt {
            Some(n) => n.min(PROMPT_MAX_SPLIT),
            None if wgs < PROMPT_WGS => PROMPT_WGS
                .div_ceil(wgs.max(1))
                .min(keys / PROMPT_SPLIT_KEYS)
                .min(PROMPT_MAX_SPLIT),
            None => 1,
        };
        let fit = PROMPT_PART_ROWS / (n_head * n_tok).max(1);
        let n = want.min(fit);
        if n < 2 || keys < 2 {
            return None;
        }
        let bc = bc.max(1);
        let chunk = keys.div_ceil(n).div_ceil(bc) * bc;
        // Splits past the last key would be empty: fewer, each `chunk` long.
        Some((keys.div_ceil(chunk), chunk)).filter(|&(n, _)| n > 1)
    }
}

/// The staged kernel's shape (shaders/attention_staged.comp's specialization constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedShape {
    /// Invocations per workgroup, a multiple of the largest subgroup size.
    pub wg: u32,
    /// Query heads per workgroup.
    pub g: u32,
    /// Head size.
    pub d: u32,
    /// Keys per tile.
    pub bc: u32,
    /// Lanes per (query head, key) score, summed by subgroup shuffles.
    pub ds: u32,
    /// Key phases of the output accumulation (lanes per 4 output dimensions).
    pub kp: u32,
}

impl StagedShape {
    /// Shared memory the shader declares for this shape, bytes: the K and V tiles, the queries,
    /// scores, per-subgroup maxima, running maxima and the key phases' reduction.
    pub fn shared_bytes(&self) -> u64 {
        let [_, g, d, bc, _, kp] = self.spec().map(u64::from);
        let red = if kp > 1 { g * kp * (d / 4) } else { 1 };
        2 * bc * d * 2 + g * d * 4 + 2 * g * bc * 4 + 2 * g * 4 + red * 20
    }

    /// The specialization constants, in the shader's order.
    pub fn spec(&self) -> [u32; 6] {
        [self.wg, self.g, self.d, self.bc, self.ds, self.kp]
    }
}

/// Invocations per workgroup of the staged kernel where the device allows (llama.cpp's decode
/// flash attention also runs 128).
const STAGED_WG: u32 = 128;

/// The staged kernel's shape for head size `d` and `g` query heads per workgroup on a device with
/// `lim` and subgroups of `min_sg..=max_sg` lanes (`shuffle`: subgroup shuffles in compute), or
/// `None` where it cannot run: no subgroup arithmetic or shuffles, `d` not a multiple of 8 or
/// over 256, or no tile that fits. The shape never exceeds the limits: the workgroup is at most
/// `max_wg` and a multiple of `max_sg`, a score's lanes (`ds` ≤ 8) fit in the smallest
/// subgroup, a tile's score lanes (`bc · ds`) fill whole subgroups, and the largest tile of 32,
/// 16 or 8 keys whose shared memory fits is taken.
pub fn staged_shape(
    lim: &Limits,
    (min_sg, max_sg): (u32, u32),
    shuffle: bool,
    d: u32,
    g: u32,
) -> Option<StagedShape> {
    if !lim.subgroup_arith || !shuffle || d == 0 || !d.is_multiple_of(8) || d > 256 {
        return None;
    }
    if min_sg == 0 || !min_sg.is_power_of_two() || !max_sg.is_power_of_two() || max_sg < min_sg {
        return None;
    }
    let g = g.clamp(1, MAX_GROUP);
    let cap = if lim.max_wg.is_power_of_two() {
        lim.max_wg
    } else {
        lim.max_wg.checked_next_power_of_two()? / 2
    };
    let wg = STAGED_WG.max(max_sg);
    if wg > cap {
        return None;
    }
    let ds = min_sg.min(8);
    let d4 = g * d / 4;
    let kp = if d4 >= wg {
        1
    } else {
        // The largest power of two with g·d/4·kp <= wg.
        let q = wg / d4;
        1 << (31 - q.leading_zeros())
    };
    [32, 16, 8].into_iter().find_map(|bc: u32| {
        let s = StagedShape {
            wg,
            g,
            d,
            bc,
            ds,
            kp: kp.min(bc),
        };
        ((bc * ds).is_multiple_of(max_sg) && s.shared_bytes() <= u64::from(lim.shared_bytes))
            .then_some(s)
    })
}

/// The split decode attention of one op: its two kernels and its splits.
#[derive(Clone)]
pub struct SplitAttention {
    pub split: Rc<GpuKernel>,
    pub combine: Rc<GpuKernel>,
    pub splits: Splits,
    /// Query heads per KV head.
    pub group: u32,
    /// Query heads per workgroup (the split kernel's GMAX, the staged kernel's G).
    pub per_wg: u32,
    /// The variant with RoPE and the KV write folded in (bindings `ATTN_ROPE_SPLIT_BINDINGS`,
    /// two more push words: n_rot, neox).
    pub rope: bool,
}

impl Kernels {
    /// The split decode attention for `group` query heads per KV head of size `head_dim`: the
    /// staged kernel (named `attention_staged_…`) when `splits.staged` and the device can run it
    /// for this head size, else the rows kernel (`attention_split_…`); with `rope`, their
    /// variant with RoPE and the KV write folded in (`attention_staged_rope_…`,
    /// `attention_split_rope_…`, and a combine pass on the same layout).
    pub fn split_attention(
        &self,
        group: u32,
        head_dim: u32,
        splits: Splits,
        rope: bool,
    ) -> Result<SplitAttention> {
        let g = group.clamp(1, splits.heads_per_wg.clamp(1, MAX_GROUP));
        let f = &self.dev.features;
        let staged = splits
            .staged
            .then(|| {
                staged_shape(
                    &Limits::of(&self.dev),
                    (f.min_subgroup, f.max_subgroup),
                    f.subgroup_shuffle,
                    head_dim,
                    g,
                )
            })
            .flatten();
        // The folded variants: one more binding (the RoPE table), two more push words.
        let (tag, bindings, push): (_, &[u32], _) = if rope {
            ("_rope", &ATTN_ROPE_SPLIT_BINDINGS, ATTN_PUSH + 2)
        } else {
            ("", &ATTN_BINDINGS, ATTN_PUSH)
        };
        let split = match staged {
            Some(sh) => {
                let [wg, g, d, bc, ds, kp] = sh.spec();
                let code = if rope {
                    shaders::ATTENTION_STAGED_ROPE
                } else {
                    shaders::ATTENTION_STAGED
                };
                self.get(
                    &format!("attention_staged{tag}_{wg}_g{g}_d{d}_bc{bc}_ds{ds}_kp{kp}"),
                    code,
                    bindings,
                    push,
                    &sh.spec(),
                )?
            }
            None => {
                let code = if rope {
                    shaders::ATTENTION_SPLIT_ROPE
                } else {
                    shaders::ATTENTION_SPLIT
                };
                let name = format!("attention_split{tag}_g{g}");
                self.get(&name, code, bindings, push, &[SPLIT_WG, g])?
            }
        };
        // The combine pass runs on the split pass's descriptor set: the same layout.
        let combine = self.get(
            &format!("attention_combine{tag}"),
            shaders::ATTENTION_COMBINE,
            bindings,
            push,
            &[SPLIT_WG],
        )?;
        Ok(SplitAttention {
            split,
            combine,
            splits,
            group,
            per_wg: g,
            rope,
        })
    }
}

impl SplitAttention {
    /// Records the decode attention (one token): the split pass, then, with more than one
    /// split, the combine pass (the recorder puts a barrier between them).
    /// `push`: n_head, n_kv, head_dim, n_tok, scale, window; `rope`: n_rot, neox for the folded
    /// variant (whose split pass is labelled `attention_rope split`).
    pub fn record(
        &self,
        cmd: &mut CmdBuffer,
        set: vk::DescriptorSet,
        push: &[u32; 6],
        rope: [u32; 2],
        n_kv: u32,
    ) {
        let p = [
            push[0],
            push[1],
            push[2],
            push[3],
            push[4],
            self.splits.n_split,
            self.splits.chunk,
            push[5],
            rope[0],
            rope[1],
        ];
        let (p, label) = if self.rope {
            (&p[..], "attention_rope split")
        } else {
            (&p[..8], "attention")
        };
        let slices = self.group.div_ceil(self.per_wg);
        cmd.label(|| Some(Stamp::named(label.into())));
        cmd.dispatch(&self.split, set, p, [n_kv, self.splits.n_split, slices]);
        if self.splits.n_split > 1 {
            cmd.label(|| Some(Stamp::named("attention combine".into())));
            cmd.dispatch(&self.combine, set, p, [push[0], 1, 1]);
        }
    }
}

/// Where the split attention keeps its partials, and how it splits.
#[derive(Debug, Clone, Copy)]
pub struct AttnScratch {
    pub part: BufRange,
    pub splits: Splits,
}
