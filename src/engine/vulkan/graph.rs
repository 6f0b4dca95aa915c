//! The forward pass as a fixed list of ops over fixed buffers. Built once per engine: every
//! descriptor set is written here and never again, and the same ops serve decoding (1 token) and
//! prompt processing (up to `Acts::ubatch` tokens), which differ only in push constants.
//!
//! Per layer, 6 dispatches (up to 9 where the architecture adds norms; 2 more with the norm
//! pass, `Tuning::norm_pass`, which runs 1 and 5's RMSNorm as a dispatch of its own into `xn`
//! and the products without their fused norm, and the head's likewise):
//!   1. QKV: RMSNorm(x) fused in, Q/K/V (mixed weight types allowed) and biases -> qkv
//!      (1b. qwen3, gemma3: per-head RMSNorm of Q and K in place)
//!   2. RoPE on Q and K, K and V written into the f16 cache at the device-held position (the
//!      layer's own RoPE table: gemma3's sliding layers have another base, smollm3's NoPE
//!      layers an all-zero one); decoding with the one-row attention (CPU implementations)
//!      folds this into 3's dispatch, and on the split attention with `PIGPU_VK_ROPE=fold`
//!      into its split pass (layer.rs, `Tuning::rope_fold`)
//!   3. attention over the cache (within the sliding window on such layers) -> attn
//!      (decoding: split over the KV range, plus a combine dispatch when there is more than
//!      one split; attention.rs)
//!   4. output projection + residual: x += Wo · attn
//!      (gemma3: proj = Wo · attn, then 4b. x += RMSNorm(proj))
//!   5. RMSNorm(x) fused in, gate and up, SwiGLU or GeGLU -> ffn
//!   6. down projection + residual: x += Wdown · ffn (gemma3: through a norm, as 4)
//!
//! layer.rs builds and records a layer (for this one sequence here, for serve's slots in
//! batch.rs); this file holds the buffers, the embedding, the head and the sampler.

use std::sync::Arc;

use super::attention::{AttnScratch, Splits};
use super::buffer::{BufRange, Buffer, MemKind};
use super::command::CmdBuffer;
use super::device::Device;
use super::error::{Result, VkError};
use super::kernels::{sample_id_words, STATE_WORDS};
use super::layer::{self, Act, ProductIo, Products, SeqIo, SeqOps};
use super::norms::Normed;
use super::ops::{GpuOp, MatvecSpec, OpBuilder, OpKind, SampleOps};
use super::weights::GpuWeights;
use crate::model::Config;

/// Tokens per prompt batch on `dev` for model `c`: `Choices::ubatch` (`Tuning::ubatch` if set,
/// else the kind's), capped so the activation buffers take at most 1/32 of device memory, and
/// at least 1.
pub fn ubatch_for(dev: &Device, c: &Config) -> usize {
    let b = dev.choices.ubatch;
    let per_token = act_bytes_per_token(dev, c);
    let budget = (dev.info.memory_mib << 20) / 32;
    b.min((budget / per_token.max(1)) as usize).max(1)
}

/// Bytes of the activation buffers per token of a prompt batch (`Acts`: x, proj, qkv, q, attn,
/// ffn, and the norm pass's `xn` when it is on); memory.rs counts them too.
pub fn act_bytes_per_token(dev: &Device, c: &Config) -> u64 {
    let xn = if dev.tuning.norm_pass { c.n_embd } else { 0 };
    4 * (2 * c.n_embd + xn + 3 * c.q_dim() + 2 * c.kv_dim() + c.n_ff) as u64
}

/// Activation and state buffers, each with the shape noted (B = `ubatch`).
pub struct Acts {
    /// Tokens per prompt batch.
    pub ubatch: usize,
    /// Logits rows (tokens whose logits one batch can return): min(B, what one binding holds).
    pub logits_rows: usize,
    /// [B][n_embd] f32: the residual stream.
    pub x: Buffer,
    /// [B][q_dim + 2 kv_dim] f32: Q, K, V projections.
    pub qkv: Buffer,
    /// [B][q_dim] f32: rotated queries.
    pub q: Buffer,
    /// [B][q_dim] f32: attention output.
    pub attn: Buffer,
    /// [B][n_ff] f32: SwiGLU output.
    pub ffn: Buffer,
    /// How decode attention splits the KV range (attention.rs); `None`: the one-row kernel.
    pub splits: Option<Splits>,
    /// [n_head][n_split][2 + head_dim] f32: the splits' partial max, sum and output (one
    /// layer's at a time); a split prompt batch's [token][head][split][2 + head_dim]
    /// (`Splits::part_floats` holds either).
    pub attn_part: Buffer,
    /// [B][n_embd] f32: a projection on its way to a post-norm (gemma3).
    pub proj: Buffer,
    /// [B][n_embd] f32: the norm pass's output (`Tuning::norm_pass`); `None`: norms fused.
    pub xn: Option<Buffer>,
    /// [logits_rows][n_vocab] f32: logits (row 0: the pending token's).
    pub logits: Buffer,
    /// [n_vocab] f32: the sampler's candidates (their penalized logits, then its working copy).
    pub scratch: Buffer,
    /// [kernels::sample_id_words(n_vocab)] u32: the candidates' ids, then each vocabulary
    /// slice's NaN/infinity bits, then the selection's narrowed list.
    pub cand_ids: Buffer,
    /// [STATE_WORDS] u32: n_past, pos, token, history (shaders/common/state.glsl); host-visible
    /// and read by the host in place when `state_mapped`.
    pub state: Buffer,
    /// `Device::state_mapped`: the host reads the token and verdict from `state`, and no copy
    /// to `readback` is recorded.
    pub state_mapped: bool,
    /// [B] u32: prompt tokens, copied from `tokens_up`; or, where `state_mapped`, host-visible
    /// and written by the CPU in place (then there is no `tokens_up` and no copy command).
    pub tokens: Buffer,
    /// Host-visible [B] u32: prompt tokens written by the CPU (`None` where `state_mapped`).
    pub tokens_up: Option<Buffer>,
    /// Host-visible [8] u32: sampling parameters and the random number (kernels::sample_params).
    pub params: Buffer,
    /// Host-visible [4] u32: the sampled token and verdict, copied back each step (unless
    /// `state_mapped`).
    pub readback: Buffer,
}

impl Acts {
    pub fn new(
        dev: &Arc<Device>,
        c: &Config,
        ubatch: usize,
        splits: Option<Splits>,
    ) -> Result<Acts> {
        let f = |n: usize, what: &str| Buffer::new(dev, (n * 4) as u64, MemKind::Device, what);
        let b = ubatch.max(1);
        let row_bytes = (c.n_vocab * 4) as u64;
        // At most one binding and 256 MiB of logits (Qwen2.5's 151936-entry rows: 220 rows).
        let logits_rows = (b as u64).min(dev.max_binding().min(256 << 20) / row_bytes) as usize;
        if logits_rows == 0 {
            return Err(VkError::Unsupported(format!(
                "a logits row of {} MiB (maxStorageBufferRange {} MiB)",
                row_bytes >> 20,
                dev.max_binding() >> 20
            )));
        }
        Ok(Acts {
            ubatch: b,
            logits_rows,
            x: f(b * c.n_embd, "activations")?,
            qkv: f(b * (c.q_dim() + 2 * c.kv_dim()), "activations")?,
            q: f(b * c.q_dim(), "activations")?,
            attn: f(b * c.q_dim(), "activations")?,
            ffn: f(b * c.n_ff, "activations")?,
            splits,
            attn_part: f(
                splits.map_or(1, |s| s.part_floats(c.n_head, c.head_dim).max(1)),
                "attention partials",
            )?,
            proj: f(b * c.n_embd, "activations")?,
            xn: dev
                .tuning
                .norm_pass
                .then(|| f(b * c.n_embd, "activations"))
                .transpose()?,
            logits: f(logits_rows * c.n_vocab, "logits")?,
            scratch: f(c.n_vocab, "sampler scratch")?,
            cand_ids: f(sample_id_words(c.n_vocab), "sampler scratch")?,
            state: Buffer::new(
                dev,
                (STATE_WORDS * 4) as u64,
                if dev.state_mapped() {
                    MemKind::Readback
                } else {
                    MemKind::Device
                },
                "decoding state",
            )?,
            state_mapped: dev.state_mapped(),
            tokens: if dev.state_mapped() {
                Buffer::new(dev, (b * 4) as u64, MemKind::Upload, "prompt tokens")?
            } else {
                f(b, "prompt tokens")?
            },
            tokens_up: (!dev.state_mapped())
                .then(|| Buffer::new(dev, (b * 4) as u64, MemKind::Upload, "prompt tokens"))
                .transpose()?,
            params: Buffer::new(dev, 32, MemKind::Upload, "sampling parameters")?,
            readback: Buffer::new(dev, 16, MemKind::Readback, "token readback")?,
        })
    }
}

/// The KV cache: per layer, K and V as [n_ctx][kv_dim] f16.
pub fn kv_cache(dev: &Arc<Device>, c: &Config, n_ctx: usize) -> Result<Vec<(Buffer, Buffer)>> {
    let bytes = (n_ctx * c.kv_dim() * 2) as u64;
    if bytes > dev.max_binding() {
        return Err(VkError::Unsupported(format!(
            "a context of {n_ctx} tokens ({} MiB of K per layer > maxStorageBufferRange {} MiB); use a smaller --ctx",
            bytes >> 20,
            dev.max_binding() >> 20
        )));
    }
    let mut out = Vec::with_capacity(c.n_layer);
    for _ in 0..c.n_layer {
        let what = format!("the KV cache for --ctx {n_ctx}");
        out.push((
            Buffer::new(dev, bytes, MemKind::Device, &what)?,
            Buffer::new(dev, bytes, MemKind::Device, &what)?,
        ));
    }
    Ok(out)
}

/// One layer of an engine alone: its products and its one sequence's ops (layer.rs).
pub struct Layer {
    pub products: Products,
    pub seq: SeqOps,
}

impl Layer {
    /// Records the layer for a batch of `n_tok` tokens.
    pub fn record(&self, cmd: &mut CmdBuffer, n_tok: u32) {
        layer::record(cmd, &self.products, &[&self.seq], n_tok, n_tok, false);
    }

    /// Dispatch-recording ops.
    pub fn len(&self) -> usize {
        self.products.len() + self.seq.len()
    }
}

pub struct Graph {
    /// Embedding of the token the sampler wrote into the state (decoding).
    pub embed_state: GpuOp,
    /// Embedding of the prompt tokens, which also starts a batch's position and history
    /// bookkeeping (`OpKind::Embed`'s `hist_from`).
    pub embed_tokens: GpuOp,
    pub layers: Vec<Layer>,
    /// Output norm + head for the token at `x_off` into logits row 0 (one token: its mat-vec
    /// only; a batch of rows runs it a token per workgroup row).
    pub head: Normed,
    /// The sampler: its selection for every sampler and the greedy-only one.
    pub sample: SampleOps,
}

/// The embedding lookup into `out`: of the token the sampler left in `state` (`from_state`,
/// decoding) or of the tokens in `tokens` (a prompt batch).
pub fn embed(
    b: &mut OpBuilder<'_>,
    c: &Config,
    w: &GpuWeights,
    state: BufRange,
    tokens: BufRange,
    from_state: bool,
    out: BufRange,
) -> Result<GpuOp> {
    let pieces: Vec<_> = w
        .token_embd
        .pieces
        .iter()
        .map(|(buf, r)| (buf.all(), *r))
        .collect();
    let mut op = b.embed(
        state,
        tokens,
        &pieces,
        w.token_embd.ty,
        c.n_embd as u32,
        from_state,
        out,
    )?;
    if let OpKind::Embed { scale, .. } = &mut op.kind {
        *scale = c.embd_scale;
    }
    Ok(op)
}

/// Output norm + head: logits rows from the rows of `x` (the norm fused, or as a pass into
/// `xn`, laid out as `x`). `batch`: for batches of rows (serve's slots, all logits of a prompt),
/// else for one row (the mat-vec only: the mat-mat's pipeline is not built).
pub fn head(
    b: &mut OpBuilder<'_>,
    c: &Config,
    w: &GpuWeights,
    x: Act,
    xn: Option<Act>,
    logits: Act,
    batch: bool,
) -> Result<Normed> {
    let out = w.output.as_ref().unwrap_or(&w.token_embd);
    b.normed_matvec_for(
        MatvecSpec {
            x: x.buf,
            segs: &out.segs(),
            norm: Some(w.output_norm.all()),
            bias: None,
            y: logits.buf,
            k: c.n_embd as u32,
            x_stride: x.stride,
            y_stride: logits.stride,
            x_off: 0,
            y_off: 0,
            flags: 0,
            eps: c.rms_eps,
        },
        xn.map(|a| a.buf),
        batch,
    )
}

/// The rows `head` reads and writes over an engine's own buffers: x (or the norm pass's xn)
/// and the logits, a token per row.
pub fn head_io(c: &Config, a: &Acts) -> (Act, Option<Act>, Act) {
    let act = |buf: &Buffer, width: usize| Act {
        buf: buf.all(),
        stride: width as u32,
    };
    (
        act(&a.x, c.n_embd),
        a.xn.as_ref().map(|xn| act(xn, c.n_embd)),
        act(&a.logits, c.n_vocab),
    )
}

pub fn build(
    b: &mut OpBuilder<'_>,
    c: &Config,
    w: &GpuWeights,
    a: &Acts,
    kv: &[(Buffer, Buffer)],
) -> Result<Graph> {
    let (st, tok) = (a.state.all(), a.tokens.all());
    let embed_state = embed(b, c, w, st, tok, true, a.x.all())?;
    let embed_tokens = embed(b, c, w, st, tok, false, a.x.all())?;
    // Rows of one token each, packed.
    let act = |buf: &Buffer, width: usize| Act {
        buf: buf.all(),
        stride: width as u32,
    };
    let rows = ProductIo {
        x: act(&a.x, c.n_embd),
        qkv: act(&a.qkv, c.q_dim() + 2 * c.kv_dim()),
        attn: act(&a.attn, c.q_dim()),
        ffn: act(&a.ffn, c.n_ff),
        proj: act(&a.proj, c.n_embd),
        xn: a.xn.as_ref().map(|xn| act(xn, c.n_embd)),
    };
    let seq = SeqIo {
        state: st,
        x: a.x.all(),
        qkv: a.qkv.all(),
        q: a.q.all(),
        attn: a.attn.all(),
        proj: a.proj.all(),
        kv,
        scratch: a.splits.map(|splits| AttnScratch {
            part: a.attn_part.all(),
            splits,
        }),
    };
    let mut layers = Vec::with_capacity(c.n_layer);
    for (il, l) in w.layers.iter().enumerate() {
        layers.push(Layer {
            products: layer::products(b, c, l, &rows)?,
            seq: layer::seq_ops(b, c, w, il, &seq)?,
        });
    }
    // Decoding and prompts need one token's logits; `VulkanEngine` builds the head for all of
    // a batch's rows when first asked (`prefill_all_logits`).
    let (hx, hxn, logits) = head_io(c, a);
    let head = head(b, c, w, hx, hxn, logits, false)?;
    let sample = b.sample(
        a.logits.all(),
        st,
        a.scratch.all(),
        a.cand_ids.all(),
        a.params.all(),
        c.n_vocab as u32,
    )?;
    Ok(Graph {
        embed_state,
        embed_tokens,
        layers,
        head,
        sample,
    })
}
