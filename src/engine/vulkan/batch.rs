//! The slots of `pigpu serve --parallel N --backend vulkan`: N engines over one upload of the
//! weights (`Shared`), each with its own KV cache, activations and device state, driven by one
//! thread, and their decode batched: the busy slots' pending tokens go through the model in one
//! pass over the weights (decode is bound by reading them, so B streams cost little more than one).
//!
//! Batch buffers have one row per slot (row s belongs to slot s), with row strides padded to the
//! device's storage-offset alignment so an op can bind one slot's row. The matrix products run
//! once over rows 0..=last busy slot (the mat-vec's 8-token mat-mat, or the tiled mat-mat past 8
//! rows: each weight block read once for every row); everything that depends on a slot's
//! position or cache runs per busy slot on its own row: the embedding of the token its sampler
//! wrote (which also advances its position), Q/K norms, RoPE and the KV write, attention over
//! its cache, post-norms; then each slot's logits row is copied to the slot, whose `step`
//! samples it (the slot's own recorded sample-only command). One command buffer per set of busy
//! slots, recorded the first time that set decodes and replayed after: no recording and no
//! descriptor update per token in steady state.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::bail;

use super::buffer::{Buffer, MemKind};
use super::command::CmdBuffer;
use super::engine::VulkanEngine;
use super::error::Result as VkResult;
use super::kernels::{GpuOp, MatvecSpec, OpBuilder, OpKind, F_ACC, F_GELU, F_GLU};
use super::options::VulkanOptions;
use super::pipeline::DescriptorArena;
use super::shared::Shared;
use crate::engine::Engine;
use crate::model::{Activation, Config, Model, RopeStyle};

/// A batch buffer: `rows` rows of `stride` floats (`stride` ≥ the row's width, padded so each
/// row starts at an offset a descriptor may bind).
struct Rows {
    buf: Buffer,
    stride: u32,
}

impl Rows {
    fn new(shared: &Shared, rows: usize, width: usize, align_floats: usize) -> VkResult<Rows> {
        let stride = width.div_ceil(align_floats) * align_floats;
        let buf = Buffer::new(
            &shared.dev,
            (rows * stride * 4) as u64,
            MemKind::Device,
            "batched activations",
        )?;
        Ok(Rows {
            buf,
            stride: stride as u32,
        })
    }

    /// Row `r` (`width` floats) as a descriptor range.
    fn row(&self, r: usize, width: u32) -> super::buffer::BufRange {
        self.buf
            .range(r as u64 * self.stride as u64 * 4, width as u64 * 4)
    }
}

/// The per-slot ops of one layer, bound to the slot's row of the batch buffers and its cache.
struct SlotLayer {
    qk_norm: Option<GpuOp>,
    rope: GpuOp,
    attn: GpuOp,
    attn_post: Option<GpuOp>,
    ffn_post: Option<GpuOp>,
}

/// One layer's matrix products over all rows.
struct BatchLayer {
    qkv: GpuOp,
    o: GpuOp,
    gate_up: GpuOp,
    down: GpuOp,
}

/// Counters of the batched decode (tests check the steady state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batched decode passes submitted.
    pub passes: u64,
    /// Tokens fed by them.
    pub tokens: u64,
    /// Command buffers recorded (once per new set of busy slots).
    pub recorded: u64,
    /// Descriptor-set writes of the batch ops since they were built.
    pub descriptor_updates: u64,
}

pub struct VulkanSlots {
    // Field order is drop order: command buffers first, the engines before what they share.
    /// Recorded passes by set of busy slots (bit s: slot s).
    passes: HashMap<u64, CmdBuffer>,
    layers: Vec<BatchLayer>,
    head: GpuOp,
    /// Per slot: the embedding of its sampled token into its row, and its layers' ops.
    embed: Vec<GpuOp>,
    slot_layers: Vec<Vec<SlotLayer>>,
    arena: DescriptorArena,
    updates_base: u64,
    /// x, qkv, q, attn, ffn, proj: held for the descriptor sets that point into them.
    _rows: Vec<Rows>,
    logits: Rows,
    engines: Vec<VulkanEngine>,
    shared: Rc<Shared>,
    model: Arc<Model>,
    /// Group the slots' attention dispatches (no barrier among them): only when each is one
    /// dispatch (no split-KV combine pass after it).
    attn_grouped: bool,
    stats: BatchStats,
}

/// Most slots (the busy set is a 64-bit mask).
pub const MAX_SLOTS: usize = 64;

impl VulkanSlots {
    /// Opens the device, uploads the weights once, builds `n` engines over them and the ops of
    /// the batched decode.
    pub fn new(model: Arc<Model>, n: usize, opts: &VulkanOptions) -> VkResult<VulkanSlots> {
        let shared = Shared::open(&model, opts)?;
        Self::with_shared(shared, model, n, opts)
    }

    pub fn with_shared(
        shared: Rc<Shared>,
        model: Arc<Model>,
        n: usize,
        opts: &VulkanOptions,
    ) -> VkResult<VulkanSlots> {
        let n = n.clamp(1, MAX_SLOTS);
        let engines = (0..n)
            .map(|_| VulkanEngine::with_shared(shared.clone(), model.clone(), opts))
            .collect::<VkResult<Vec<_>>>()?;
        let c = &model.config;
        let dev = &shared.dev;
        let align = (dev.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let (e, qd, kvd) = (c.n_embd, c.q_dim(), c.kv_dim());
        let rows = |w: usize| Rows::new(&shared, n, w, align);
        let (x, qkv, q, attn, ffn, proj) = (
            rows(e)?,
            rows(qd + 2 * kvd)?,
            rows(qd)?,
            rows(qd)?,
            rows(c.n_ff)?,
            rows(e)?,
        );
        let logits = Rows::new(&shared, n, c.n_vocab, 1)?;
        let sets = (4 * c.n_layer + 8 + n * (1 + 5 * c.n_layer)) as u32;
        let mut arena = DescriptorArena::new(dev, sets, sets * 8)?;
        let mut b = OpBuilder {
            kernels: &shared.kernels,
            arena: &mut arena,
        };
        let w = &shared.weights;
        let glu_flags = match c.act {
            Activation::Silu => F_GLU,
            Activation::Gelu => F_GLU | F_GELU,
        };
        let mm = |b: &mut OpBuilder<'_>,
                  xr: &Rows,
                  segs: &[super::kernels::Seg],
                  norm,
                  bias,
                  yr: &Rows,
                  k: usize,
                  flags: u32|
         -> VkResult<GpuOp> {
            b.matvec(MatvecSpec {
                x: xr.buf.all(),
                segs,
                norm,
                bias,
                y: yr.buf.all(),
                k: k as u32,
                x_stride: xr.stride,
                y_stride: yr.stride,
                x_off: 0,
                y_off: 0,
                flags,
                eps: if norm.is_some() { c.rms_eps } else { 0.0 },
            })
        };
        let mut layers = Vec::with_capacity(c.n_layer);
        for l in &w.layers {
            let (mut sq, mut sk, mut sv) = (l.q.seg(), l.k.seg(), l.v.seg());
            if l.qkv_bias.is_some() {
                sq.bias = Some(0);
                sk.bias = Some(qd as u32);
                sv.bias = Some((qd + kvd) as u32);
            }
            let (o_out, o_flags) = match &l.attn_post_norm {
                None => (&x, F_ACC),
                Some(_) => (&proj, 0),
            };
            let (d_out, d_flags) = match &l.ffn_post_norm {
                None => (&x, F_ACC),
                Some(_) => (&proj, 0),
            };
            layers.push(BatchLayer {
                qkv: mm(
                    &mut b,
                    &x,
                    &[sq, sk, sv],
                    Some(l.attn_norm.all()),
                    l.qkv_bias.as_ref().map(|b| b.all()),
                    &qkv,
                    e,
                    0,
                )?,
                o: mm(&mut b, &attn, &[l.o.seg()], None, None, o_out, qd, o_flags)?,
                gate_up: mm(
                    &mut b,
                    &x,
                    &[l.gate.seg(), l.up.seg()],
                    Some(l.ffn_norm.all()),
                    None,
                    &ffn,
                    e,
                    glu_flags,
                )?,
                down: mm(
                    &mut b,
                    &ffn,
                    &[l.down.seg()],
                    None,
                    None,
                    d_out,
                    c.n_ff,
                    d_flags,
                )?,
            });
        }
        let out = w.output.as_ref().unwrap_or(&w.token_embd);
        let head = mm(
            &mut b,
            &x,
            &out.segs(),
            Some(w.output_norm.all()),
            None,
            &logits,
            e,
            0,
        )?;
        let mut embed = Vec::with_capacity(n);
        let mut slot_layers = Vec::with_capacity(n);
        for (s, eng) in engines.iter().enumerate() {
            let (op, ls) = slot_ops(&mut b, c, &shared, eng, s, [&x, &qkv, &q, &attn, &proj])?;
            embed.push(op);
            slot_layers.push(ls);
        }
        let attn_grouped = engines[0].acts.splits.is_none_or(|s| s.n_split <= 1);
        // Rows of slots not in a pass still go through the matrix products: start them at 0.
        let mut clear = CmdBuffer::new(dev)?;
        clear.begin(false)?;
        for r in [&x, &qkv, &q, &attn, &ffn, &proj, &logits] {
            clear.fill(&r.buf, 0, r.buf.size, 0);
        }
        clear.end()?;
        clear.submit_wait()?;
        shared.kernels.save_cache();
        let updates_base = arena.updates;
        Ok(VulkanSlots {
            passes: HashMap::new(),
            layers,
            head,
            embed,
            slot_layers,
            arena,
            updates_base,
            _rows: vec![x, qkv, q, attn, ffn, proj],
            logits,
            engines,
            shared,
            model,
            attn_grouped,
            stats: BatchStats::default(),
        })
    }

    pub fn len(&self) -> usize {
        self.engines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.engines.is_empty()
    }

    /// Slot `i`'s engine.
    pub fn engine(&mut self, i: usize) -> &mut VulkanEngine {
        &mut self.engines[i]
    }

    /// The batched decode's counters so far.
    pub fn batch_stats(&self) -> BatchStats {
        BatchStats {
            descriptor_updates: self.arena.updates - self.updates_base,
            ..self.stats
        }
    }

    /// Feeds the pending token of each slot in `busy` that has one (the token its `step`
    /// returned last), in one pass over the weights when there are several, leaving each one's
    /// logits pending for its next `step`. Fails, changing nothing, if a context is full.
    pub fn feed_pending(&mut self, busy: &[usize]) -> anyhow::Result<()> {
        let idx: Vec<usize> = busy
            .iter()
            .copied()
            .filter(|&i| i < self.engines.len() && self.engines[i].unfed.is_some())
            .collect();
        if idx.len() < 2 {
            // One slot: its own recorded decode step (sampling included) feeds it in `step`.
            return Ok(());
        }
        for &i in &idx {
            let e = &self.engines[i];
            if e.n_past + 1 > e.n_ctx() {
                bail!(
                    "slot {i}: the pending token does not fit in the context of {} (raise --ctx)",
                    e.n_ctx()
                );
            }
        }
        let mask = idx.iter().fold(0u64, |m, &i| m | 1 << i);
        if !self.passes.contains_key(&mask) {
            let mut cmd = CmdBuffer::new(&self.shared.dev)?;
            self.record(&mut cmd, &idx)?;
            self.passes.insert(mask, cmd);
            self.stats.recorded += 1;
        }
        let cmd = &self.passes[&mask];
        let t0 = std::time::Instant::now();
        cmd.submit_wait()
            .map_err(anyhow::Error::from)
            .map_err(|e| e.context("running a batched decode step on the GPU"))?;
        let ns = t0.elapsed().as_nanos() as u64 / idx.len() as u64;
        for &i in &idx {
            let e = &mut self.engines[i];
            e.unfed = None;
            e.n_past += 1;
            e.stats.host_ns += ns;
        }
        self.stats.passes += 1;
        self.stats.tokens += idx.len() as u64;
        Ok(())
    }

    /// Records the pass over the slots `idx` (ascending).
    fn record(&self, cmd: &mut CmdBuffer, idx: &[usize]) -> VkResult<()> {
        let rows = *idx.last().unwrap() as u32 + 1;
        cmd.begin(true)?;
        let each = each_slot;
        each(cmd, idx, &|s| Some(&self.embed[s]), true);
        for (il, l) in self.layers.iter().enumerate() {
            let sl = |s: usize| &self.slot_layers[s][il];
            l.qkv.record(cmd, rows);
            each(cmd, idx, &|s| sl(s).qk_norm.as_ref(), true);
            each(cmd, idx, &|s| Some(&sl(s).rope), true);
            each(cmd, idx, &|s| Some(&sl(s).attn), self.attn_grouped);
            l.o.record(cmd, rows);
            each(cmd, idx, &|s| sl(s).attn_post.as_ref(), true);
            l.gate_up.record(cmd, rows);
            l.down.record(cmd, rows);
            each(cmd, idx, &|s| sl(s).ffn_post.as_ref(), true);
        }
        self.head.record(cmd, rows);
        let row_bytes = self.model.config.n_vocab as u64 * 4;
        cmd.group(true);
        for &s in idx {
            let off = s as u64 * self.logits.stride as u64 * 4;
            cmd.copy(
                &self.logits.buf,
                off,
                &self.engines[s].acts.logits,
                0,
                row_bytes,
            );
        }
        cmd.group(false);
        cmd.end()
    }
}

/// Records `f(s)` for each slot `s` of `idx` that has such an op, as a group (no barriers
/// among them) when `grouped`.
fn each_slot<'a>(
    cmd: &mut CmdBuffer,
    idx: &[usize],
    f: &dyn Fn(usize) -> Option<&'a GpuOp>,
    grouped: bool,
) {
    cmd.group(grouped);
    for &s in idx {
        if let Some(op) = f(s) {
            op.record(cmd, 1);
        }
    }
    cmd.group(false);
}

/// Slot `s`'s ops: the embedding of its sampled token into its row of `x`, and per layer the
/// ops that read its position and cache, bound to its rows of `[x, qkv, q, attn, proj]`.
fn slot_ops(
    b: &mut OpBuilder<'_>,
    c: &Config,
    shared: &Shared,
    eng: &VulkanEngine,
    s: usize,
    [x, qkv, q, attn, proj]: [&Rows; 5],
) -> VkResult<(GpuOp, Vec<SlotLayer>)> {
    let w = &shared.weights;
    let a = &eng.acts;
    let (e, qd, kvd) = (c.n_embd as u32, c.q_dim() as u32, c.kv_dim() as u32);
    let pieces: Vec<_> = w
        .token_embd
        .pieces
        .iter()
        .map(|(buf, r)| (buf.all(), *r))
        .collect();
    let mut embed = b.embed(
        a.state.all(),
        a.tokens.all(),
        &pieces,
        w.token_embd.ty,
        e,
        true,
        x.row(s, e),
    )?;
    if let OpKind::Embed { scale, .. } = &mut embed.kind {
        *scale = c.embd_scale;
    }
    let mut layers = Vec::with_capacity(c.n_layer);
    for (il, (l, (kc, vc))) in w.layers.iter().zip(&eng.kv).enumerate() {
        let qkv_row = qkv.row(s, qd + 2 * kvd);
        let qk_norm = match &l.qk_norm {
            Some((wq, wk)) => Some(b.qk_norm(
                qkv_row,
                wq.all(),
                wk.all(),
                OpKind::QkNorm {
                    q_dim: qd,
                    kv_dim: kvd,
                    head_dim: c.head_dim as u32,
                    eps: c.rms_eps,
                },
            )?),
            None => None,
        };
        let rope = b.rope_kv(
            a.state.all(),
            qkv_row,
            q.row(s, qd),
            kc.all(),
            vc.all(),
            w.inv_freq[w.layer_rope[il]].all(),
            OpKind::RopeKv {
                q_dim: qd,
                kv_dim: kvd,
                head_dim: c.head_dim as u32,
                n_rot: c.n_rot as u32,
                neox: c.rope_style == RopeStyle::Neox,
            },
        )?;
        let attn_op = b.attention(
            a.state.all(),
            q.row(s, qd),
            kc.all(),
            vc.all(),
            attn.row(s, qd),
            a.splits.map(|splits| super::attention::AttnScratch {
                part: a.attn_part.all(),
                splits,
            }),
            OpKind::Attention {
                n_head: c.n_head as u32,
                n_kv: c.n_head_kv as u32,
                head_dim: c.head_dim as u32,
                scale: c.attn_scale,
                window: c.layer_window(il).unwrap_or(0) as u32,
                prompt: None,
                split: None,
            },
        )?;
        let post = |b: &mut OpBuilder<'_>, pn: &Option<Buffer>| -> VkResult<Option<GpuOp>> {
            pn.as_ref()
                .map(|pn| {
                    let kind = OpKind::NormAdd {
                        n: e,
                        eps: c.rms_eps,
                    };
                    b.norm_add(proj.row(s, e), pn.all(), x.row(s, e), kind)
                })
                .transpose()
        };
        layers.push(SlotLayer {
            qk_norm,
            rope,
            attn: attn_op,
            attn_post: post(b, &l.attn_post_norm)?,
            ffn_post: post(b, &l.ffn_post_norm)?,
        });
    }
    Ok((embed, layers))
}
