//! The forward pass as a fixed list of ops over fixed buffers. Built once per engine: every
//! descriptor set is written here and never again, and the same ops serve decoding (1 token) and
//! prompt processing (up to `Acts::ubatch` tokens), which differ only in push constants.
//!
//! Per layer, 6 dispatches (up to 9 where the architecture adds norms):
//!   1. QKV: RMSNorm(x) fused in, Q/K/V (mixed weight types allowed) and biases -> qkv
//!      (1b. qwen3, gemma3: per-head RMSNorm of Q and K in place)
//!   2. RoPE on Q and K, K and V written into the f16 cache at the device-held position (the
//!      layer's own RoPE table: gemma3's sliding layers have another base, smollm3's NoPE
//!      layers an all-zero one)
//!   3. attention over the cache (within the sliding window on such layers) -> attn
//!      (decoding: split over the KV range, plus a combine dispatch when there is more than
//!      one split; attention.rs)
//!   4. output projection + residual: x += Wo · attn
//!      (gemma3: proj = Wo · attn, then 4b. x += RMSNorm(proj))
//!   5. RMSNorm(x) fused in, gate and up, SwiGLU or GeGLU -> ffn
//!   6. down projection + residual: x += Wdown · ffn (gemma3: through a norm, as 4)

use std::sync::Arc;

use super::attention::{AttnScratch, Splits};
use super::buffer::{Buffer, MemKind};
use super::device::{Device, DeviceKind};
use super::error::{Result, VkError};
use super::kernels::{
    GpuOp, MatvecSpec, OpBuilder, OpKind, Seg, F_ACC, F_GELU, F_GLU, STATE_WORDS,
};
use super::weights::{GpuMatrix, GpuWeights};
use crate::model::{Activation, Config, RopeStyle};

/// Most tokens per prompt-processing submit on GPUs (activation buffers are sized for this many):
/// enough tiles of the prompt mat-mat to cover every SM of a large GPU.
pub const UBATCH_GPU: usize = 512;
/// On CPU implementations (lavapipe), where a bigger batch buys nothing.
pub const UBATCH_CPU: usize = 64;

/// Tokens per prompt batch on `dev` for model `c`: `Tuning::ubatch` if set, else by device
/// kind; then capped so the activation buffers take at most 1/32 of device memory, and at least 1.
pub fn ubatch_for(dev: &Device, c: &Config) -> usize {
    let b = dev
        .tuning
        .ubatch
        .unwrap_or(if dev.info.kind == DeviceKind::Cpu {
            UBATCH_CPU
        } else {
            UBATCH_GPU
        });
    let per_token = 4 * (2 * c.n_embd + 3 * c.q_dim() + 2 * c.kv_dim() + c.n_ff) as u64;
    let budget = (dev.info.memory_mib << 20) / 32;
    b.min((budget / per_token.max(1)) as usize).max(1)
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
    /// layer's at a time).
    pub attn_part: Buffer,
    /// [B][n_embd] f32: a projection on its way to a post-norm (gemma3).
    pub proj: Buffer,
    /// [logits_rows][n_vocab] f32: logits (row 0: the pending token's).
    pub logits: Buffer,
    /// [n_vocab] f32: the sampler's working copy.
    pub scratch: Buffer,
    /// [STATE_WORDS] u32: n_past, pos, token, history (shaders/common/state.glsl).
    pub state: Buffer,
    /// [B] u32: prompt tokens, copied from `tokens_up`.
    pub tokens: Buffer,
    /// Host-visible [B] u32: prompt tokens written by the CPU.
    pub tokens_up: Buffer,
    /// Host-visible [8] u32: sampling parameters and the random number (kernels::sample_params).
    pub params: Buffer,
    /// Host-visible [4] u32: the sampled token, copied back each step.
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
            logits: f(logits_rows * c.n_vocab, "logits")?,
            scratch: f(c.n_vocab, "sampler scratch")?,
            state: f(STATE_WORDS, "decoding state")?,
            tokens: f(b, "prompt tokens")?,
            tokens_up: Buffer::new(dev, (b * 4) as u64, MemKind::Upload, "prompt tokens")?,
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

pub struct Graph {
    /// Embedding of the token the sampler wrote into the state (decoding).
    pub embed_state: GpuOp,
    /// Embedding of the prompt tokens.
    pub embed_tokens: GpuOp,
    /// Position bookkeeping at the start of a prompt batch.
    pub advance: GpuOp,
    pub layers: Vec<Vec<GpuOp>>,
    /// Output norm + head for the token at `x_off` into logits row 0 (and onward for batches).
    pub head: GpuOp,
    pub sample: GpuOp,
}

fn one(m: &GpuMatrix) -> Result<Seg> {
    if m.pieces.len() != 1 {
        return Err(VkError::Unsupported(format!(
            "a layer matrix larger than maxStorageBufferRange ({} rows of type {})",
            m.rows, m.ty
        )));
    }
    Ok(m.seg())
}

pub fn build(
    b: &mut OpBuilder<'_>,
    c: &Config,
    w: &GpuWeights,
    a: &Acts,
    kv: &[(Buffer, Buffer)],
) -> Result<Graph> {
    let (e, qd, kvd) = (c.n_embd as u32, c.q_dim() as u32, c.kv_dim() as u32);
    let qkv_w = qd + 2 * kvd;
    let embd_pieces: Vec<_> = w
        .token_embd
        .pieces
        .iter()
        .map(|(buf, r)| (buf.all(), *r))
        .collect();
    let mut embed_state = b.embed(
        a.state.all(),
        a.tokens.all(),
        &embd_pieces,
        w.token_embd.ty,
        e,
        true,
        a.x.all(),
    )?;
    let mut embed_tokens = b.embed(
        a.state.all(),
        a.tokens.all(),
        &embd_pieces,
        w.token_embd.ty,
        e,
        false,
        a.x.all(),
    )?;
    for op in [&mut embed_state, &mut embed_tokens] {
        if let OpKind::Embed { scale, .. } = &mut op.kind {
            *scale = c.embd_scale;
        }
    }
    let glu_flags = match c.act {
        Activation::Silu => F_GLU,
        Activation::Gelu => F_GLU | F_GELU,
    };
    let advance = b.advance(a.state.all(), a.tokens.all())?;
    let mut layers = Vec::with_capacity(c.n_layer);
    for (il, (l, (kc, vc))) in w.layers.iter().zip(kv).enumerate() {
        let mut ops = Vec::with_capacity(9);
        let mut q = one(&l.q)?;
        let mut k = one(&l.k)?;
        let mut v = one(&l.v)?;
        if l.qkv_bias.is_some() {
            q.bias = Some(0);
            k.bias = Some(qd);
            v.bias = Some(qd + kvd);
        }
        let qkv = b.matvec(MatvecSpec {
            x: a.x.all(),
            segs: &[q, k, v],
            norm: Some(l.attn_norm.all()),
            bias: l.qkv_bias.as_ref().map(|b| b.all()),
            y: a.qkv.all(),
            k: e,
            x_stride: e,
            y_stride: qkv_w,
            x_off: 0,
            y_off: 0,
            flags: 0,
            eps: c.rms_eps,
        })?;
        ops.push(qkv);
        if let Some((wq, wk)) = &l.qk_norm {
            ops.push(b.qk_norm(
                a.qkv.all(),
                wq.all(),
                wk.all(),
                OpKind::QkNorm {
                    q_dim: qd,
                    kv_dim: kvd,
                    head_dim: c.head_dim as u32,
                    eps: c.rms_eps,
                },
            )?);
        }
        let rope = b.rope_kv(
            a.state.all(),
            a.qkv.all(),
            a.q.all(),
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
        let attn = b.attention(
            a.state.all(),
            a.q.all(),
            kc.all(),
            vc.all(),
            a.attn.all(),
            a.splits.map(|splits| AttnScratch {
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
        ops.extend([rope, attn]);
        // Without a post-norm the projection adds into x itself; with one it goes through proj.
        let (o_out, o_flags) = match &l.attn_post_norm {
            None => (a.x.all(), F_ACC),
            Some(_) => (a.proj.all(), 0),
        };
        ops.push(b.matvec(MatvecSpec {
            x: a.attn.all(),
            segs: &[one(&l.o)?],
            norm: None,
            bias: None,
            y: o_out,
            k: qd,
            x_stride: qd,
            y_stride: e,
            x_off: 0,
            y_off: 0,
            flags: o_flags,
            eps: 0.0,
        })?);
        if let Some(pn) = &l.attn_post_norm {
            let kind = OpKind::NormAdd {
                n: e,
                eps: c.rms_eps,
            };
            ops.push(b.norm_add(a.proj.all(), pn.all(), a.x.all(), kind)?);
        }
        ops.push(b.matvec(MatvecSpec {
            x: a.x.all(),
            segs: &[one(&l.gate)?, one(&l.up)?],
            norm: Some(l.ffn_norm.all()),
            bias: None,
            y: a.ffn.all(),
            k: e,
            x_stride: e,
            y_stride: c.n_ff as u32,
            x_off: 0,
            y_off: 0,
            flags: glu_flags,
            eps: c.rms_eps,
        })?);
        let (d_out, d_flags) = match &l.ffn_post_norm {
            None => (a.x.all(), F_ACC),
            Some(_) => (a.proj.all(), 0),
        };
        ops.push(b.matvec(MatvecSpec {
            x: a.ffn.all(),
            segs: &[one(&l.down)?],
            norm: None,
            bias: None,
            y: d_out,
            k: c.n_ff as u32,
            x_stride: c.n_ff as u32,
            y_stride: e,
            x_off: 0,
            y_off: 0,
            flags: d_flags,
            eps: 0.0,
        })?);
        if let Some(pn) = &l.ffn_post_norm {
            let kind = OpKind::NormAdd {
                n: e,
                eps: c.rms_eps,
            };
            ops.push(b.norm_add(a.proj.all(), pn.all(), a.x.all(), kind)?);
        }
        layers.push(ops);
    }
    let out = w.output.as_ref().unwrap_or(&w.token_embd);
    let head = b.matvec(MatvecSpec {
        x: a.x.all(),
        segs: &out.segs(),
        norm: Some(w.output_norm.all()),
        bias: None,
        y: a.logits.all(),
        k: e,
        x_stride: e,
        y_stride: c.n_vocab as u32,
        x_off: 0,
        y_off: 0,
        flags: 0,
        eps: c.rms_eps,
    })?;
    let sample = b.sample(
        a.logits.all(),
        a.state.all(),
        a.scratch.all(),
        a.params.all(),
        c.n_vocab as u32,
    )?;
    Ok(Graph {
        embed_state,
        embed_tokens,
        advance,
        layers,
        head,
        sample,
    })
}
