//! Ops: `GpuOp`, a dispatch whose descriptor set is written once and whose push constants
//! depend only on the batch size (so the decode command buffer is recorded once and replayed),
//! `OpKind` (what it computes), and `OpBuilder`, which writes each op's set once. The kernels
//! they dispatch come from `kernels` (and `attention`, `tiled` for the split and prompt ones).

use std::rc::Rc;

use ash::vk;

use super::attention::{AttnScratch, SplitAttention};
use super::buffer::BufRange;
use super::command::{CmdBuffer, Stamp};
use super::error::{Result, VkError};
use super::kernels::{matmul_nt_of, sample_slices, Kernels, SampleMode, Seg};
use super::kernels::{F_BIAS, F_GLU, F_NORM, MAX_SEG};
use super::pipeline::{DescriptorArena, GpuKernel};
use super::shapes::PATH_LANE;
use super::tiled::{PromptAttention, Tiled};
use crate::quant::GgmlType;

/// What a dispatch computes; the push constants and grid follow from this and the batch size.
#[derive(Clone)]
pub enum OpKind {
    Matvec {
        k: u32,
        x_stride: u32,
        y_stride: u32,
        flags: u32,
        eps: f32,
        x_off: u32,
        y_off: u32,
        segs: Vec<(u32, GgmlType, Option<u32>)>,
        /// Decode-time mat-vec and batch-time mat-mat variants (same layout, same set); `None`:
        /// an op built for one token (`OpBuilder::matvec_for`), which runs a batch with its
        /// mat-vec, a token per workgroup row.
        batch_kernel: Option<Rc<GpuKernel>>,
        /// The tiled mat-mat for batches of more tokens than `batch_kernel` takes per workgroup
        /// (same set), if used.
        tiled: Option<Rc<Tiled>>,
        /// One token as one dispatch per segment (`Kernels::split_per_segment`), in `segs`'
        /// order: each a one-segment kernel with a set over that segment's weights; empty: one
        /// dispatch over all segments.
        parts: Rc<[SegPart]>,
    },
    /// The embedding lookup; a prompt batch's (`from_state` false) also starts the batch's
    /// position and history bookkeeping (shaders/embed.comp) from the three words the batch is
    /// recorded with (`OpBuilder::embed` sets 0; `VulkanEngine::run_batch` the batch's).
    Embed {
        dim: u32,
        from_state: bool,
        /// A prompt batch's tokens before this index are not added to the repetition-penalty
        /// history (the sampler already put them there).
        hist_from: u32,
        /// A prompt batch: the positions fed before it (the device state's `n_past`).
        n_past: u32,
        /// A prompt batch: the tokens the history ring was given before it (its count).
        n_hist: u32,
        seg_rows: Vec<u32>,
        /// Factor on every element (gemma3: sqrt(dim)); `OpBuilder::embed` sets 1.
        scale: f32,
    },
    RopeKv {
        q_dim: u32,
        kv_dim: u32,
        head_dim: u32,
        n_rot: u32,
        neox: bool,
    },
    Attention {
        n_head: u32,
        n_kv: u32,
        head_dim: u32,
        /// Factor on q·k (usually 1/sqrt(head_dim)).
        scale: f32,
        /// Sliding window in positions; 0 = none.
        window: u32,
        /// The prompt kernel (tiled.rs: query rows per workgroup) for batches of more than one
        /// token; set by `OpBuilder::attention` (pass `None`).
        prompt: Option<PromptAttention>,
        /// The split decode attention (attention.rs) for one token; set by
        /// `OpBuilder::attention` when given scratch for it (pass `None`).
        split: Option<SplitAttention>,
    },
    /// Decode attention (one token) with RoPE and the KV write folded in: replaces `RopeKv` +
    /// `Attention` for the decode step (layer.rs); prompt batches keep the two. The one-row
    /// kernel (`attention_rope`, CPU implementations), or with `split` the split attention's
    /// folded variant (`PIGPU_VK_ROPE=fold` on GPUs).
    AttentionRope {
        n_head: u32,
        n_kv: u32,
        head_dim: u32,
        scale: f32,
        window: u32,
        n_rot: u32,
        neox: bool,
        /// The split attention's folded variant (attention.rs); set by
        /// `OpBuilder::attention_rope_split` (pass `None`).
        split: Option<SplitAttention>,
    },
    Sample {
        n_vocab: u32,
        /// The prefilter (one workgroup per vocabulary slice) that runs before the op's kernel,
        /// the selection over its candidates, on the same descriptor set; `None`: the one-stage
        /// sampler, whose kernel reads the whole vocabulary (`Kernels::sample`).
        pre: Option<Rc<GpuKernel>>,
    },
    /// Per-head Q/K RMS norm in place in the QKV buffer (norms.rs).
    QkNorm {
        q_dim: u32,
        kv_dim: u32,
        head_dim: u32,
        eps: f32,
    },
    /// `x += rms_norm(y) · w` per token row of `n` (norms.rs).
    NormAdd { n: u32, eps: f32 },
    /// `y = rms_norm(x) · w` per row of `n`, rows `stride` floats apart from float `off` on in
    /// both (norms.rs: the norm pass).
    RmsNorm {
        n: u32,
        eps: f32,
        stride: u32,
        off: u32,
    },
}

/// One segment's dispatch of a mat-vec split per segment (`OpKind::Matvec`'s `parts`).
pub struct SegPart {
    pub kernel: Rc<GpuKernel>,
    pub set: vk::DescriptorSet,
}

/// A dispatch with its descriptor set written once.
pub struct GpuOp {
    pub kernel: Rc<GpuKernel>,
    pub set: vk::DescriptorSet,
    pub kind: OpKind,
}

fn four(v: impl Iterator<Item = u32>) -> [u32; 4] {
    let mut out = [0u32; 4];
    for (o, x) in out.iter_mut().zip(v) {
        *o = x;
    }
    out
}

/// The output rows of a mat-vec over `segs`: a GLU product's are its first (gate) matrix's,
/// the others' all the matrices' together.
fn output_rows(glu: bool, segs: &[(u32, GgmlType, Option<u32>)]) -> u32 {
    if glu {
        segs[0].0
    } else {
        segs.iter().map(|s| s.0).sum()
    }
}

impl GpuOp {
    /// This `Embed` op with a prompt batch's bookkeeping words: the first history slot it
    /// writes, and the host's n_past and history length (other ops are returned as they are).
    pub fn embed_for_batch(&self, from: u32, past: u32, hist_len: u32) -> GpuOp {
        let mut kind = self.kind.clone();
        if let OpKind::Embed {
            hist_from,
            n_past,
            n_hist,
            ..
        } = &mut kind
        {
            *hist_from = from;
            *n_past = past;
            *n_hist = hist_len;
        }
        GpuOp {
            kernel: self.kernel.clone(),
            set: self.set,
            kind,
        }
    }

    /// Records this op for a batch of `n_tok` tokens (`logits_off` for `Sample`: float offset of
    /// the logits row).
    pub fn record(&self, cmd: &mut CmdBuffer, n_tok: u32) {
        // Names the dispatch on a timed command buffer (`--profile`); nothing otherwise.
        cmd.label(|| self.stamp(n_tok));
        match &self.kind {
            OpKind::Matvec {
                flags,
                segs,
                batch_kernel,
                tiled,
                parts,
                ..
            } => {
                let glu = flags & F_GLU != 0;
                if n_tok == 1 && !parts.is_empty() {
                    self.record_parts(cmd, parts, segs);
                    return;
                }
                let rows = output_rows(glu, segs);
                let push = self.matvec_push(n_tok, 0, segs);
                match tiled
                    .as_ref()
                    .filter(|_| beyond_matmul(batch_kernel, n_tok))
                {
                    Some(t) => t.record(cmd, self.set, &push, rows, n_tok, glu),
                    None => self.record_matvec(cmd, &push, rows, n_tok, batch_kernel.as_deref()),
                }
            }
            OpKind::Embed {
                dim,
                from_state,
                hist_from,
                n_past,
                n_hist,
                seg_rows,
                scale,
            } => {
                let mut push = vec![*dim, *from_state as u32, *hist_from, seg_rows.len() as u32];
                push.extend(four(seg_rows.iter().copied()));
                push.extend([scale.to_bits(), *n_past, *n_hist]);
                cmd.dispatch(&self.kernel, self.set, &push, [n_tok, 1, 1]);
            }
            OpKind::RopeKv {
                q_dim,
                kv_dim,
                head_dim,
                n_rot,
                neox,
            } => {
                let push = [*q_dim, *kv_dim, *head_dim, *n_rot, n_tok, *neox as u32];
                let items = q_dim / 2 + kv_dim;
                cmd.dispatch(
                    &self.kernel,
                    self.set,
                    &push,
                    [items.div_ceil(64), n_tok, 1],
                );
            }
            OpKind::Attention {
                n_head,
                n_kv,
                head_dim,
                scale,
                window,
                prompt,
                split,
            } => {
                let push = [*n_head, *n_kv, *head_dim, n_tok, scale.to_bits(), *window];
                match split.as_ref().filter(|_| n_tok == 1) {
                    Some(s) => s.record(cmd, self.set, &push, [0, 0], *n_kv),
                    None => {
                        let p = prompt.as_ref();
                        self.record_attention(cmd, push, n_tok, p, split.as_ref())
                    }
                }
            }
            OpKind::AttentionRope {
                n_head,
                n_kv,
                head_dim,
                scale,
                window,
                n_rot,
                neox,
                split,
            } => {
                debug_assert_eq!(n_tok, 1, "the folded attention decodes one token");
                if let Some(s) = split {
                    let push = [*n_head, *n_kv, *head_dim, 1, scale.to_bits(), *window];
                    s.record(cmd, self.set, &push, [*n_rot, *neox as u32], *n_kv);
                    return;
                }
                let push = [
                    *n_head,
                    *n_kv,
                    *head_dim,
                    1,
                    scale.to_bits(),
                    0,
                    0,
                    *window,
                    *n_rot,
                    *neox as u32,
                ];
                cmd.dispatch(&self.kernel, self.set, &push, [*n_head, 1, 1]);
            }
            OpKind::Sample { .. } => {
                self.record_sample_stage(cmd, true);
                self.record_sample_stage(cmd, false);
            }
            OpKind::QkNorm {
                q_dim,
                kv_dim,
                head_dim,
                eps,
            } => {
                let push = [*q_dim, *kv_dim, *head_dim, n_tok, eps.to_bits()];
                let heads = (q_dim + kv_dim) / head_dim;
                cmd.dispatch(&self.kernel, self.set, &push, [heads, n_tok, 1]);
            }
            OpKind::NormAdd { n, eps } => {
                let push = [*n, n_tok, eps.to_bits()];
                cmd.dispatch(&self.kernel, self.set, &push, [n_tok, 1, 1]);
            }
            OpKind::RmsNorm {
                n,
                eps,
                stride,
                off,
            } => {
                let push = [*n, n_tok, eps.to_bits(), *stride, *off];
                cmd.dispatch(&self.kernel, self.set, &push, [n_tok, 1, 1]);
            }
        }
    }

    /// One token of a mat-vec split per segment: each part's kernel over its segment's rows
    /// (one segment, output rows from the segment's first on), together as one command: one
    /// barrier before them, none among them (they write disjoint rows), one timestamp after.
    fn record_parts(
        &self,
        cmd: &mut CmdBuffer,
        parts: &[SegPart],
        segs: &[(u32, GgmlType, Option<u32>)],
    ) {
        let mut start = 0u32;
        let dispatches: Vec<_> = parts
            .iter()
            .zip(segs)
            .map(|(p, &seg)| {
                let push = self.matvec_push(1, start, &[seg]);
                let rows = seg.0;
                start += rows;
                let rpw = p.kernel.spec[0] * p.kernel.spec[1];
                (&*p.kernel, p.set, push, [rows.div_ceil(rpw), 1, 1])
            })
            .collect();
        cmd.dispatch_all(&dispatches);
    }

    /// A mat-vec's push words for `n_tok` tokens over `segs` (rows, type, bias offset), its
    /// output written from row `y_shift` of its own output range on: the 12 fixed words, then
    /// the segments' rows, types and bias offsets, four words each.
    fn matvec_push(
        &self,
        n_tok: u32,
        y_shift: u32,
        segs: &[(u32, GgmlType, Option<u32>)],
    ) -> Vec<u32> {
        let OpKind::Matvec {
            k,
            x_stride,
            y_stride,
            flags,
            eps,
            x_off,
            y_off,
            ..
        } = &self.kind
        else {
            unreachable!("push words of a mat-vec")
        };
        let mut push = vec![
            *k,
            n_tok,
            *x_stride,
            *y_stride,
            *flags,
            eps.to_bits(),
            *y_off + y_shift,
            segs.len() as u32,
            *x_off,
            0,
            0,
            0,
        ];
        push.extend(four(segs.iter().map(|s| s.0)));
        push.extend(four(segs.iter().map(|s| s.1.id())));
        push.extend(four(segs.iter().map(|s| s.2.unwrap_or(u32::MAX))));
        push
    }

    /// A mat-vec (one token, this op's kernel) or the mat-mat (`batch_kernel`, NT tokens per
    /// workgroup; without one the mat-vec, a token per workgroup row) over `rows` output rows
    /// with its `push` words.
    fn record_matvec(
        &self,
        cmd: &mut CmdBuffer,
        push: &[u32],
        rows: u32,
        n_tok: u32,
        batch_kernel: Option<&GpuKernel>,
    ) {
        let (kernel, nt) = match batch_kernel.filter(|_| n_tok > 1) {
            Some(b) => (b, matmul_nt_of(b)),
            None => (&*self.kernel, 1),
        };
        // Rows per workgroup: ROWS per invocation on the lane-per-row path.
        let rpw = if kernel.spec[2] == PATH_LANE {
            kernel.spec[0] * kernel.spec[1]
        } else {
            kernel.spec[1]
        };
        // More workgroups than one grid dimension allows go on to z (`CmdBuffer` folds them).
        cmd.dispatch(
            kernel,
            self.set,
            push,
            [rows.div_ceil(rpw), n_tok.div_ceil(nt), 1],
        );
    }

    /// Attention for a batch (or one token without the split decode kernel): the prompt
    /// kernel for more than one token where there is one, else this op's kernel, a workgroup
    /// per head (and query row block, or token). `push`: the split attention's six words.
    /// With `split` (the device splits decode attention, and the partials buffer is bound) and
    /// a batch at a known depth (`CmdBuffer::n_past`), the prompt kernel splits its KV range
    /// where `Splits::prompt_split` says, and `split`'s combine pass merges the splits
    /// (labelled `attention_prompt split` and `attention combine`).
    fn record_attention(
        &self,
        cmd: &mut CmdBuffer,
        push: [u32; 6],
        n_tok: u32,
        prompt: Option<&PromptAttention>,
        split: Option<&SplitAttention>,
    ) {
        let n_head = push[0];
        let Some(p) = prompt.filter(|_| n_tok > 1) else {
            // The single-pass kernels read the same 8 push words (n_split and chunk unused).
            let push = [push[0], push[1], push[2], push[3], push[4], 0, 0, push[5]];
            cmd.dispatch(&self.kernel, self.set, &push, [n_head, n_tok, 1]);
            return;
        };
        let parts = match (p.split_tile, split, cmd.n_past) {
            (Some(bc), Some(s), Some(n_past)) => s
                .splits
                .prompt_split(n_head, n_tok, p.rows, n_past + n_tok, bc)
                .map(|nc| (s, nc)),
            _ => None,
        };
        let (n_split, chunk) = parts.map_or((0, 0), |(_, nc)| nc);
        let push = [
            push[0], push[1], push[2], push[3], push[4], n_split, chunk, push[5],
        ];
        let groups = [n_head / p.heads, n_tok.div_ceil(p.rows), n_split.max(1)];
        if let Some((s, _)) = parts {
            cmd.label(|| Some(Stamp::named("attention_prompt split".into())));
            cmd.dispatch(&p.kernel, self.set, &push, groups);
            cmd.label(|| Some(Stamp::named("attention combine".into())));
            cmd.dispatch(&s.combine, self.set, &push, [n_head, n_tok, 1]);
            return;
        }
        cmd.dispatch(&p.kernel, p.set.unwrap_or(self.set), &push, groups);
    }

    /// This op (same kernel and descriptor set) reading its input from float `off` on: a
    /// mat-vec's `x_off`, a norm pass's `off`; other ops unchanged.
    pub fn with_x_off(&self, off: u32) -> GpuOp {
        let mut kind = self.kind.clone();
        match &mut kind {
            OpKind::Matvec { x_off, .. } => *x_off = off,
            OpKind::RmsNorm { off: o, .. } => *o = off,
            _ => {}
        }
        GpuOp {
            kernel: self.kernel.clone(),
            set: self.set,
            kind,
        }
    }
}

impl GpuOp {
    /// Records one stage of a `Sample` op: the prefilter (`first`; nothing on the one-stage
    /// path) or the selection, which reads what the prefilter wrote (the recorder's barrier
    /// between them, unless grouped: batch.rs records each stage as a group over its slots).
    /// Nothing for other ops.
    pub fn record_sample_stage(&self, cmd: &mut CmdBuffer, first: bool) {
        let OpKind::Sample { n_vocab, pre } = &self.kind else {
            return;
        };
        let push = [*n_vocab, 0];
        match (first, pre) {
            (true, Some(pre)) => {
                let slices = sample_slices(*n_vocab as usize) as u32;
                cmd.dispatch(pre, self.set, &push, [slices, 1, 1]);
            }
            (true, None) => {}
            (false, _) => cmd.dispatch(&self.kernel, self.set, &push, [1, 1, 1]),
        }
    }
}

/// The sampler as three `Sample` ops on one descriptor set (the same prefilter, the same
/// buffers): `any` records the selection for every sampler, `greedy` the one compiled for
/// greedy decoding only, `top_k` the one for top-k-bounded sampling only, each skipping what its
/// mode never runs (shaders/sample.comp: GREEDY, TOPK). The parameters live in a buffer the
/// host writes each step, so a recording holds one of the three and the engine keeps one of
/// each (engine.rs, batch.rs), picked by `get` with the parameters' `kernels::sample_mode`.
pub struct SampleOps {
    /// The selection for every sampler (the temperature read at run time).
    pub any: GpuOp,
    /// The greedy-only selection (valid only while the temperature is <= 0).
    pub greedy: GpuOp,
    /// The top-k-bounded selection (valid only while `sample_mode` says `TopK`).
    pub top_k: GpuOp,
}

impl SampleOps {
    /// The op to record for parameters of mode `mode` (`kernels::sample_mode`).
    pub fn get(&self, mode: SampleMode) -> &GpuOp {
        match mode {
            SampleMode::Any => &self.any,
            SampleMode::Greedy => &self.greedy,
            SampleMode::TopK => &self.top_k,
        }
    }
}

/// Builders: allocate and write the descriptor set of each op once.
pub struct OpBuilder<'a> {
    pub kernels: &'a Kernels,
    pub arena: &'a mut DescriptorArena,
}

/// Inputs of a mat-vec op.
pub struct MatvecSpec<'a> {
    pub x: BufRange,
    pub segs: &'a [Seg],
    pub norm: Option<BufRange>,
    pub bias: Option<BufRange>,
    pub y: BufRange,
    pub k: u32,
    pub x_stride: u32,
    pub y_stride: u32,
    /// First float of `x` read (the last token's row, for logits after a batch).
    pub x_off: u32,
    pub y_off: u32,
    pub flags: u32,
    pub eps: f32,
}

/// Whether a batch of `n_tok` tokens is more than the mat-mat `batch_kernel` takes per
/// workgroup (then the tiled mat-mat serves it, where there is one).
pub fn beyond_matmul(batch_kernel: &Option<Rc<GpuKernel>>, n_tok: u32) -> bool {
    batch_kernel
        .as_ref()
        .is_some_and(|b| n_tok > matmul_nt_of(b))
}

impl OpBuilder<'_> {
    /// A mat-vec op for batches of any size (`matvec_for` with `batch`).
    pub fn matvec(&mut self, s: MatvecSpec<'_>) -> Result<GpuOp> {
        self.matvec_for(s, true)
    }

    /// A mat-vec op; with `batch` it has the mat-mat kernels for batches (and their pipelines
    /// are built), without it only the decode mat-vec (an op that runs one token: the engine's
    /// head, whose prompt batches need only the last token's logits).
    pub fn matvec_for(&mut self, s: MatvecSpec<'_>, batch: bool) -> Result<GpuOp> {
        assert!(!s.segs.is_empty() && s.segs.len() <= MAX_SEG);
        let types: Vec<(u32, GgmlType)> = s.segs.iter().map(|g| (g.rows, g.ty)).collect();
        let glu = s.flags & F_GLU != 0;
        let rows: u32 = if glu {
            s.segs[0].rows
        } else {
            s.segs.iter().map(|g| g.rows).sum()
        };
        let mut flags = s.flags;
        if s.norm.is_some() {
            flags |= F_NORM;
        }
        if s.segs.iter().any(|g| g.bias.is_some()) {
            flags |= F_BIAS;
        }
        let kernel = self.kernels.matvec_decode(&types, glu, rows, s.k)?;
        let (batch_kernel, tiled) = if batch {
            let fixed = (self.kernels).matmul_fixed(&types, flags, s.k, s.x_off, s.x_stride);
            (
                Some(self.kernels.matmul(&types, glu, fixed)?),
                self.kernels.tiled(&types)?,
            )
        } else {
            (None, None)
        };
        let ws: Vec<BufRange> = s.segs.iter().map(|g| g.w).collect();
        // Unused optional bindings point at the input (never read: the flags say so).
        let norm = s.norm.unwrap_or(s.x);
        let bias = s.bias.unwrap_or(s.x);
        let (x, norm, bias, y) = ([s.x], [norm], [bias], [s.y]);
        let mut bindings: Vec<&[BufRange]> = vec![&x, &ws, &norm, &bias, &y];
        if self.kernels.texel_weights() {
            // The segments, x and the norm weights again, as texel buffers
            // (`MATVEC_TEXEL_BINDINGS`).
            bindings.extend([&ws[..], &x, &norm]);
        }
        let set = self.arena.set(&kernel, &bindings)?;
        let mut parts = Vec::new();
        if self.kernels.split_per_segment(&types, glu) {
            for g in s.segs {
                // The whole product's rows pick the shape (the head's 16 rows per invocation).
                let kernel = self
                    .kernels
                    .matvec_decode(&[(g.rows, g.ty)], false, rows, s.k)?;
                let w = [g.w];
                let mut b: Vec<&[BufRange]> = vec![&x, &w, &norm, &bias, &y];
                b.extend([&w[..], &x, &norm]);
                let set = self.arena.set(&kernel, &b)?;
                parts.push(SegPart { kernel, set });
            }
        }
        Ok(GpuOp {
            kernel,
            set,
            kind: OpKind::Matvec {
                k: s.k,
                x_stride: s.x_stride,
                y_stride: s.y_stride,
                flags,
                eps: s.eps,
                x_off: s.x_off,
                y_off: s.y_off,
                segs: s.segs.iter().map(|g| (g.rows, g.ty, g.bias)).collect(),
                batch_kernel,
                tiled,
                parts: parts.into(),
            },
        })
    }

    /// Embedding lookup from `pieces` (each a whole number of rows) into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn embed(
        &mut self,
        state: BufRange,
        tokens: BufRange,
        pieces: &[(BufRange, u32)],
        ty: GgmlType,
        dim: u32,
        from_state: bool,
        out: BufRange,
    ) -> Result<GpuOp> {
        let kernel = self.kernels.embed(ty)?;
        let ws: Vec<BufRange> = pieces.iter().map(|p| p.0).collect();
        let set = self
            .arena
            .set(&kernel, &[&[state], &[tokens], &ws, &[out]])?;
        Ok(GpuOp {
            kernel,
            set,
            kind: OpKind::Embed {
                dim,
                from_state,
                hist_from: 0,
                n_past: 0,
                n_hist: 0,
                seg_rows: pieces.iter().map(|p| p.1).collect(),
                scale: 1.0,
            },
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rope_kv(
        &mut self,
        state: BufRange,
        qkv: BufRange,
        q: BufRange,
        kc: BufRange,
        vc: BufRange,
        inv_freq: BufRange,
        kind: OpKind,
    ) -> Result<GpuOp> {
        let kernel = self.kernels.rope_kv()?;
        let set = self.arena.set(
            &kernel,
            &[&[state], &[qkv], &[q], &[kc], &[vc], &[inv_freq]],
        )?;
        Ok(GpuOp { kernel, set, kind })
    }

    /// Attention over the cache; with `scratch`, decoding (one token) takes the split kernel
    /// (attention.rs), whose partials go to `scratch.part`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        state: BufRange,
        q: BufRange,
        kc: BufRange,
        vc: BufRange,
        out: BufRange,
        scratch: Option<AttnScratch>,
        mut kind: OpKind,
    ) -> Result<GpuOp> {
        let kernel = self.kernels.attention()?;
        // Without scratch the partials binding points at the output (never read as partials).
        let part = scratch.map_or(out, |s| s.part);
        let set = self
            .arena
            .set(&kernel, &[&[state], &[q], &[kc], &[vc], &[out], &[part]])?;
        if let OpKind::Attention {
            n_head,
            n_kv,
            head_dim,
            prompt,
            split,
            ..
        } = &mut kind
        {
            let group = match *n_kv {
                0 => 1,
                kv if n_head.is_multiple_of(kv) => *n_head / kv,
                _ => 1,
            };
            let kv_texel = self.kernels.kv_texel(kc, vc);
            *prompt = self.kernels.prompt_attention(*head_dim, group, kv_texel)?;
            // The lanes kernel with texel K/V reads has its own layout: the op's bindings,
            // then the two caches' views.
            if let Some(p) = prompt.as_mut().filter(|p| p.kernel.layout.texel.is_some()) {
                let b: [&[BufRange]; 8] =
                    [&[state], &[q], &[kc], &[vc], &[out], &[part], &[kc], &[vc]];
                p.set = Some(self.arena.set(&p.kernel, &b)?);
            }
            *split = match scratch {
                Some(s) if *head_dim <= 256 && *n_kv > 0 && n_head.is_multiple_of(*n_kv) => {
                    let need = s.splits.part_floats(*n_head as usize, *head_dim as usize);
                    assert!(
                        s.part.len >= need as u64 * 4,
                        "attention partials: {} bytes for {need} floats",
                        s.part.len
                    );
                    Some(self.kernels.split_attention(
                        *n_head / *n_kv,
                        *head_dim,
                        s.splits,
                        false,
                    )?)
                }
                _ => None,
            };
        }
        Ok(GpuOp { kernel, set, kind })
    }

    /// Decode attention with RoPE and the KV write folded in (`OpKind::AttentionRope`): reads
    /// the QKV projection `qkv` and the RoPE table `inv_freq`, writes K and V at the device-held
    /// position into `kc`, `vc` and the attention output into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_rope(
        &mut self,
        state: BufRange,
        qkv: BufRange,
        kc: BufRange,
        vc: BufRange,
        out: BufRange,
        inv_freq: BufRange,
        kind: OpKind,
    ) -> Result<GpuOp> {
        let kernel = self.kernels.attention_rope()?;
        let set = self.arena.set(
            &kernel,
            &[&[state], &[qkv], &[kc], &[vc], &[out], &[inv_freq]],
        )?;
        Ok(GpuOp { kernel, set, kind })
    }

    /// The split decode attention with RoPE and the KV write folded in (`OpKind::AttentionRope`
    /// with its `split` set; attention.rs): as `attention_rope`, the splits and their partials
    /// from `scratch`. The caller checks the shapes the split kernel takes: whole groups of query
    /// heads per KV head, heads of at most 256.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_rope_split(
        &mut self,
        state: BufRange,
        qkv: BufRange,
        kc: BufRange,
        vc: BufRange,
        out: BufRange,
        inv_freq: BufRange,
        scratch: AttnScratch,
        mut kind: OpKind,
    ) -> Result<GpuOp> {
        let OpKind::AttentionRope {
            n_head,
            n_kv,
            head_dim,
            split,
            ..
        } = &mut kind
        else {
            return Err(VkError::Unsupported(
                "attention_rope_split: an OpKind::AttentionRope".into(),
            ));
        };
        if *head_dim > 256 || *n_kv == 0 || !n_head.is_multiple_of(*n_kv) {
            return Err(VkError::Unsupported(format!(
                "the folded split attention for {n_head} query heads over {n_kv} KV heads of \
                 size {head_dim} (expected whole groups, heads of at most 256)"
            )));
        }
        let s = scratch.splits;
        let need = s.part_floats(*n_head as usize, *head_dim as usize) as u64 * 4;
        if s.n_split > 1 && scratch.part.len < need {
            return Err(VkError::Unsupported(format!(
                "attention partials: {} bytes, expected at least {need}",
                scratch.part.len
            )));
        }
        let sa = self
            .kernels
            .split_attention(*n_head / *n_kv, *head_dim, s, true)?;
        let set = self.arena.set(
            &sa.split,
            &[
                &[state],
                &[qkv],
                &[kc],
                &[vc],
                &[out],
                &[scratch.part],
                &[inv_freq],
            ],
        )?;
        let kernel = sa.split.clone();
        *split = Some(sa);
        Ok(GpuOp { kernel, set, kind })
    }

    /// The sampler over the logits row at the start of `logits`: `scratch` (`n_vocab` floats)
    /// and `ids` (`sample_id_words(n_vocab)` words) hold the candidates between its stages
    /// and the selection's narrowed list (the one-stage sampler uses `scratch` and the list
    /// only). Two stages or one: `Kernels::sample`. Three ops on one descriptor set: the
    /// selection for every sampler, the greedy-only one and the top-k-bounded one
    /// (`SampleOps`).
    pub fn sample(
        &mut self,
        logits: BufRange,
        state: BufRange,
        scratch: BufRange,
        ids: BufRange,
        params: BufRange,
        n_vocab: u32,
    ) -> Result<SampleOps> {
        let k = self.kernels.sample()?;
        let set = self.arena.set(
            &k.any,
            &[&[logits], &[state], &[scratch], &[ids], &[params]],
        )?;
        let op = |kernel: Rc<GpuKernel>| GpuOp {
            kernel,
            set,
            kind: OpKind::Sample {
                n_vocab,
                pre: k.pre.clone(),
            },
        };
        Ok(SampleOps {
            any: op(k.any.clone()),
            greedy: op(k.greedy.clone()),
            top_k: op(k.top_k.clone()),
        })
    }
}
