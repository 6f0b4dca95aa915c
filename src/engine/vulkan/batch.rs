//! The slots of `pigpu serve --parallel N --backend vulkan`: N engines over one upload of the
//! weights (`SharedWeights`), each with its own KV cache, activations and device state, driven by
//! one thread, and their decode batched: the busy slots' pending tokens go through the model in one
//! pass over the weights (decode is bound by reading them, so B streams cost little more than one).
//!
//! Batch buffers have one row per slot (row s belongs to slot s), with row strides padded to the
//! device's storage-offset alignment so an op can bind one slot's row. The matrix products run
//! once over rows 0..=last busy slot (the mat-vec's mat-mat, or the tiled mat-mat past 8
//! rows: each weight block read once for every row); everything that depends on a slot's
//! position or cache runs per busy slot on its own row: the embedding of the token its sampler
//! wrote (which also advances its position), Q/K norms, RoPE and the KV write, attention over
//! its cache, post-norms (layer.rs builds and records a layer for the slots as for one engine
//! alone); then each slot's logits row is copied to the slot, whose `step` samples it (the
//! slot's own recorded sample-only command). One command buffer per set of busy
//! slots, recorded the first time that set decodes and replayed after: no recording and no
//! descriptor update per token in steady state.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::bail;

use super::attention::AttnScratch;
use super::buffer::{BufRange, Buffer, MemKind};
use super::command::CmdBuffer;
use super::engine::VulkanEngine;
use super::error::Result as VkResult;
use super::graph;
use super::kernels::{SampleMode, MAX_SEG};
use super::layer::{self, Act, ProductIo, Products, SeqIo, SeqOps};
use super::norms::Normed;
use super::ops::{GpuOp, OpBuilder};
use super::options::VulkanOptions;
use super::pipeline::DescriptorArena;
use super::shared::SharedWeights;
use crate::engine::{Engine, EngineResult, SamplingParams};
use crate::model::Model;

/// A batch buffer: `rows` rows of `stride` floats (`stride` ≥ the row's width, padded so each
/// row starts at an offset a descriptor may bind).
struct Rows {
    buf: Buffer,
    stride: u32,
}

impl Rows {
    fn new(
        shared: &SharedWeights,
        rows: usize,
        width: usize,
        align_floats: usize,
    ) -> VkResult<Rows> {
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
    fn row(&self, r: usize, width: usize) -> BufRange {
        self.buf
            .range(r as u64 * self.stride as u64 * 4, width as u64 * 4)
    }

    /// Every row, as the matrix products see them.
    fn act(&self) -> Act {
        Act {
            buf: self.buf.all(),
            stride: self.stride,
        }
    }
}

/// Counters of the batched decode (tests check the steady state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batched decode steps submitted (one submit each: the pass and every slot's sampler).
    pub passes: u64,
    /// Tokens fed by them.
    pub tokens: u64,
    /// Command buffers recorded (once per new set of busy slots).
    pub recorded: u64,
    /// Descriptor-set writes of the batch ops since they were built.
    pub descriptor_updates: u64,
}

/// `n` Vulkan engines over one upload of the weights, whose decode steps run as one batched pass:
/// the slots of `pigpu serve`.
pub struct VulkanSlots {
    // Field order is drop order: command buffers first, the engines before what they share.
    /// Recorded passes by set of busy slots and the sets of those whose parameters are greedy
    /// and top-k-bounded (bit s: slot s; a slot's pass records the sampler's selection for its
    /// `SampleMode`).
    passes: HashMap<(u64, u64, u64), CmdBuffer>,
    /// Per layer, the matrix products over every row.
    layers: Vec<Products>,
    head: Normed,
    /// Per slot: the embedding of its sampled token into its row, and its layers' ops.
    embed: Vec<GpuOp>,
    slot_layers: Vec<Vec<SeqOps>>,
    arena: DescriptorArena,
    updates_base: u64,
    /// x, qkv, q, attn, ffn, proj (and xn): held for the descriptor sets that point into them.
    _rows: Vec<Rows>,
    logits: Rows,
    engines: Vec<VulkanEngine>,
    shared: Rc<SharedWeights>,
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
        let shared = SharedWeights::open(&model, opts)?;
        Self::with_shared(shared, model, n, opts)
    }

    pub(crate) fn with_shared(
        shared: Rc<SharedWeights>,
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
        // Rows are bound at offsets: storage (and with texel weights, texel-buffer) alignment.
        let mut align_bytes = dev.limits.min_storage_buffer_offset_alignment;
        if dev.texel_weights() {
            align_bytes = align_bytes.max(dev.limits.min_texel_buffer_offset_alignment);
        }
        let align = (align_bytes as usize / 4).max(1);
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
        // The norm pass's output, laid out as x (`Tuning::norm_pass`; else the norms are fused).
        let xn = dev.tuning.norm_pass.then(|| rows(e)).transpose()?;
        let logits = Rows::new(&shared, n, c.n_vocab, 1)?;
        // Per layer 4 products and 2 norm passes; per slot its embedding and 6 ops a layer, and
        // the lanes prompt attention's own set (texel K/V views).
        let sets = (6 * c.n_layer + 8 + MAX_SEG + n * (1 + 7 * c.n_layer)) as u32;
        let mut arena = DescriptorArena::new(dev, sets, sets * 8)?;
        // The pipelines these ops can dispatch that the engines' do not, created together.
        let (layers, head, embed, slot_layers) = shared.kernels.all_at_once(|| {
            let mut b = OpBuilder {
                kernels: &shared.kernels,
                arena: &mut arena,
            };
            let w = &shared.weights;
            let io = ProductIo {
                x: x.act(),
                qkv: qkv.act(),
                attn: attn.act(),
                ffn: ffn.act(),
                proj: proj.act(),
                xn: xn.as_ref().map(Rows::act),
            };
            let layers = w
                .layers
                .iter()
                .map(|l| layer::products(&mut b, c, l, &io))
                .collect::<VkResult<Vec<_>>>()?;
            let head = graph::head(&mut b, c, w, io.x, io.xn, logits.act(), true)?;
            let mut embed = Vec::with_capacity(n);
            let mut slot_layers = Vec::with_capacity(n);
            for (s, eng) in engines.iter().enumerate() {
                let a = &eng.acts;
                let seq = SeqIo {
                    state: a.state.all(),
                    x: x.row(s, e),
                    qkv: qkv.row(s, qd + 2 * kvd),
                    q: q.row(s, qd),
                    attn: attn.row(s, qd),
                    proj: proj.row(s, e),
                    kv: &eng.kv,
                    scratch: a.splits.map(|splits| AttnScratch {
                        part: a.attn_part.all(),
                        splits,
                    }),
                };
                embed.push(graph::embed(
                    &mut b,
                    c,
                    w,
                    seq.state,
                    a.tokens.all(),
                    true,
                    seq.x,
                )?);
                slot_layers.push(
                    (0..c.n_layer)
                        .map(|il| layer::seq_ops(&mut b, c, w, il, &seq))
                        .collect::<VkResult<Vec<_>>>()?,
                );
            }
            Ok((layers, head, embed, slot_layers))
        })?;
        let attn_grouped = engines[0].acts.splits.is_none_or(|s| s.n_split <= 1);
        // Rows of slots not in a pass still go through the matrix products: start them at 0.
        let mut clear = CmdBuffer::new(dev)?;
        clear.begin(false)?;
        for r in [&x, &qkv, &q, &attn, &ffn, &proj, &logits]
            .into_iter()
            .chain(xn.as_ref())
        {
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
            _rows: [x, qkv, q, attn, ffn, proj].into_iter().chain(xn).collect(),
            logits,
            engines,
            shared,
            model,
            attn_grouped,
            stats: BatchStats::default(),
        })
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.engines.len()
    }

    /// Whether there are no slots.
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

    /// One token for each slot of `draws` (slot, sampling parameters, uniform draw in [0, 1)).
    /// The slots with a pending token (the one their last step returned) are fed and sampled
    /// together, in one submit, when there are two or more: one pass over the weights, then each
    /// slot's own sampler with its own parameters. A slot alone, or one fresh from a prefill
    /// (its logits are there: it only samples), runs its own recorded step. Err: the shared
    /// pass failed or a pending token does not fit its context (nothing changed then); else
    /// each slot's own result, in the order of `draws` (non-finite logits fail that slot only).
    pub fn step_all(
        &mut self,
        draws: &[(usize, &SamplingParams, f32)],
    ) -> anyhow::Result<Vec<EngineResult<u32>>> {
        let n = self.engines.len();
        if let Some(&(i, ..)) = draws.iter().find(|d| d.0 >= n) {
            bail!("slot {i} does not exist (there are {n})");
        }
        let mut fed: Vec<usize> = draws
            .iter()
            .map(|d| d.0)
            .filter(|&i| self.engines[i].unfed.is_some())
            .collect();
        fed.sort_unstable();
        fed.dedup();
        if fed.len() < 2 {
            return Ok(draws
                .iter()
                .map(|&(i, p, u)| self.engines[i].step(p, u))
                .collect());
        }
        for &i in &fed {
            let e = &self.engines[i];
            if e.n_past + 1 > e.n_ctx() {
                bail!(
                    "slot {i}: the pending token does not fit in the context of {} (raise --ctx)",
                    e.n_ctx()
                );
            }
        }
        for &(i, p, u) in draws {
            if fed.contains(&i) {
                self.engines[i].set_draw(p, u);
            }
        }
        let mask = fed.iter().fold(0u64, |m, &i| m | 1 << i);
        let of_mode = |mode: SampleMode| {
            fed.iter()
                .filter(|&&i| self.engines[i].mode == mode)
                .fold(0u64, |m, &i| m | 1 << i)
        };
        let mask = (mask, of_mode(SampleMode::Greedy), of_mode(SampleMode::TopK));
        if !self.passes.contains_key(&mask) {
            let mut cmd = CmdBuffer::new(&self.shared.dev)?;
            self.record(&mut cmd, &fed)?;
            self.passes.insert(mask, cmd);
            self.stats.recorded += 1;
        }
        let cmd = &self.passes[&mask];
        let t0 = std::time::Instant::now();
        cmd.submit_wait()
            .map_err(anyhow::Error::from)
            .map_err(|e| e.context("running a batched decode step on the GPU"))?;
        let ns = t0.elapsed().as_nanos() as u64 / fed.len() as u64;
        self.stats.passes += 1;
        self.stats.tokens += fed.len() as u64;
        Ok(draws
            .iter()
            .map(|&(i, p, u)| {
                let e = &mut self.engines[i];
                if fed.contains(&i) {
                    e.stats.host_ns += ns;
                    e.take_sampled(true)
                } else {
                    e.step(p, u)
                }
            })
            .collect())
    }

    /// Records the pass over the slots `idx` (ascending).
    fn record(&self, cmd: &mut CmdBuffer, idx: &[usize]) -> VkResult<()> {
        let rows = *idx.last().unwrap() as u32 + 1;
        cmd.begin(true)?;
        cmd.group(true);
        for &s in idx {
            self.embed[s].record(cmd, 1);
        }
        cmd.group(false);
        for (il, p) in self.layers.iter().enumerate() {
            let seqs: Vec<&SeqOps> = idx.iter().map(|&s| &self.slot_layers[s][il]).collect();
            layer::record(cmd, p, &seqs, rows, 1, self.attn_grouped);
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
        // Each slot's sampler over its row (its own parameters, state and history: the
        // prefilters, then the selections; on the one-stage path the prefilter group records
        // nothing), then the tokens and verdicts to the host: independent per slot, so no
        // barriers among the slots of a group.
        for rec in [
            VulkanEngine::record_sample_pre,
            VulkanEngine::record_sample_select,
            VulkanEngine::record_sample_readback,
        ] {
            cmd.group(true);
            for &s in idx {
                rec(&self.engines[s], cmd);
            }
            cmd.group(false);
        }
        cmd.end()
    }
}
