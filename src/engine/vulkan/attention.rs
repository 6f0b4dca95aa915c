//! Decode attention at depth (flash-decoding): the KV range is split over workgroups, each
//! taking one KV head's positions in its split for all the query heads of that head's group
//! (`shaders/attention_split.comp`), and a second dispatch merges the splits' partial max, sum
//! and output (`shaders/attention_combine.comp`). The number of splits is fixed when the graph
//! is built (the decode command buffer is recorded once); the positions per split follow the
//! device-held position, so short contexts leave the later splits empty.

use std::rc::Rc;

use ash::vk;

use super::buffer::BufRange;
use super::command::{CmdBuffer, Stamp};
use super::device::{Device, DeviceKind};
use super::error::Result;
use super::kernels::{Kernels, ATTN_BINDINGS, ATTN_PUSH};
use super::pipeline::GpuKernel;
use super::shaders;

/// Invocations per workgroup of the split and combine kernels, and the granularity of a split.
pub const SPLIT_WG: u32 = 64;
/// Most query heads one split workgroup serves (shaders/attention_split.comp: GMAX).
pub const MAX_GROUP: u32 = 8;

/// How the decode attention splits the KV range: `n_split` workgroups per KV head, each over
/// `chunk` positions (0: the positions so far divided evenly, in multiples of 64), serving at
/// most `heads_per_wg` query heads of the KV head's group (1..=8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Splits {
    pub n_split: u32,
    pub chunk: u32,
    pub heads_per_wg: u32,
}

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
        if let Some(chunk) = dev.tuning.attn_chunk {
            return Some(Splits {
                n_split: n_ctx.div_ceil(chunk).max(1),
                chunk,
                heads_per_wg: MAX_GROUP,
            });
        }
        if dev.info.kind == DeviceKind::Cpu {
            return None;
        }
        Some(Splits {
            n_split: n_ctx.div_ceil(SPLIT_WG).clamp(1, 32),
            chunk: 0,
            heads_per_wg: MAX_GROUP,
        })
    }

    /// Floats of the partials buffer for `n_head` query heads of size `head_dim`.
    pub fn part_floats(&self, n_head: usize, head_dim: usize) -> usize {
        n_head * self.n_split as usize * (head_dim + 2)
    }
}

/// The split decode attention of one op: its two kernels and its splits.
#[derive(Clone)]
pub struct SplitAttention {
    pub split: Rc<GpuKernel>,
    pub combine: Rc<GpuKernel>,
    pub splits: Splits,
    /// Query heads per KV head.
    pub group: u32,
    /// Query heads per workgroup (the split kernel's GMAX).
    pub per_wg: u32,
}

impl Kernels {
    /// The split decode attention for `group` query heads per KV head.
    pub fn split_attention(&self, group: u32, splits: Splits) -> Result<SplitAttention> {
        let g = group.clamp(1, splits.heads_per_wg.clamp(1, MAX_GROUP));
        let split = self.get(
            &format!("attention_split_g{g}"),
            shaders::ATTENTION_SPLIT,
            &ATTN_BINDINGS,
            ATTN_PUSH,
            &[SPLIT_WG, g],
        )?;
        let combine = self.get(
            "attention_combine",
            shaders::ATTENTION_COMBINE,
            &ATTN_BINDINGS,
            ATTN_PUSH,
            &[SPLIT_WG],
        )?;
        Ok(SplitAttention {
            split,
            combine,
            splits,
            group,
            per_wg: g,
        })
    }
}

impl SplitAttention {
    /// Records the decode attention (one token): the split pass, then, with more than one
    /// split, the combine pass (the recorder puts a barrier between them).
    /// `push`: n_head, n_kv, head_dim, n_tok, scale, window.
    pub fn record(&self, cmd: &mut CmdBuffer, set: vk::DescriptorSet, push: &[u32; 6], n_kv: u32) {
        let p = [
            push[0],
            push[1],
            push[2],
            push[3],
            push[4],
            self.splits.n_split,
            self.splits.chunk,
            push[5],
        ];
        let slices = self.group.div_ceil(self.per_wg);
        cmd.label(|| Some(Stamp::named("attention".into())));
        cmd.dispatch(&self.split, set, &p, [n_kv, self.splits.n_split, slices]);
        if self.splits.n_split > 1 {
            cmd.label(|| Some(Stamp::named("attention combine".into())));
            cmd.dispatch(&self.combine, set, &p, [push[0], 1, 1]);
        }
    }
}

/// Where the split attention keeps its partials, and how it splits.
#[derive(Debug, Clone, Copy)]
pub struct AttnScratch {
    pub part: BufRange,
    pub splits: Splits,
}
