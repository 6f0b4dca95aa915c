//! One transformer layer as ops, built and recorded the same way for one sequence (an engine's
//! decode step and prompt batches, graph.rs) and for several (serve's batched slots, batch.rs),
//! as the CPU engine's one `layer` function serves both there. A layer splits into:
//!   - its matrix products (`Products`), which run once over every row of the activations
//!     (tokens of a prompt, or one row per slot), each weight block read once for all rows;
//!   - what depends on a sequence's position or KV cache (`SeqOps`): Q/K norms, RoPE and the
//!     KV write, attention over the cache, post-norms; one set per sequence, bound to its rows
//!     of the activations, its device state and its cache. Where decoding takes the one-row
//!     attention (CPU implementations) a decode step runs RoPE, the KV write and attention as
//!     one dispatch (`attention_rope`, unless `Tuning::rope_fold` is `Some(false)`); on the
//!     split attention (GPUs) only with `Tuning::rope_fold` `Some(true)` (the folded split
//!     kernel, then its combine pass); prompt batches keep two.
//!
//! Data order per layer (graph.rs has the long form): QKV -> [Q/K norm] -> RoPE + KV write ->
//! attention -> output projection (+ residual, or through a post-norm) -> gate/up -> down
//! (+ residual, or through a post-norm).

use super::attention::AttnScratch;
use super::buffer::{BufRange, Buffer};
use super::command::CmdBuffer;
use super::error::{Result, VkError};
use super::kernels::{Seg, F_ACC, F_GELU, F_GLU};
use super::norms::Normed;
use super::ops::{GpuOp, MatvecSpec, OpBuilder, OpKind};
use super::weights::{GpuLayer, GpuMatrix, GpuWeights};
use crate::model::{Activation, Config, RopeStyle};

/// An activation buffer as the matrix products see it: rows `stride` floats apart.
#[derive(Debug, Clone, Copy)]
pub struct Act {
    pub buf: BufRange,
    pub stride: u32,
}

/// The activation buffers a layer's matrix products run over (every row at once).
pub struct ProductIo {
    /// The residual stream.
    pub x: Act,
    /// Q, K, V projections.
    pub qkv: Act,
    /// Attention output.
    pub attn: Act,
    /// Gated FFN output.
    pub ffn: Act,
    /// A projection on its way to a post-norm (gemma3).
    pub proj: Act,
    /// The norm pass's output (`Tuning::norm_pass`), laid out as `x`; `None`: norms fused.
    pub xn: Option<Act>,
}

/// What one sequence's position-dependent ops bind: its rows of the activations (the whole
/// buffers for an engine alone), its device state and its KV cache.
pub struct SeqIo<'a> {
    pub state: BufRange,
    pub x: BufRange,
    pub qkv: BufRange,
    /// Rotated queries.
    pub q: BufRange,
    pub attn: BufRange,
    pub proj: BufRange,
    /// Per layer, K and V.
    pub kv: &'a [(Buffer, Buffer)],
    /// The split decode attention's scratch (attention.rs); `None`: the one-row kernel.
    pub scratch: Option<AttnScratch>,
}

/// One layer's matrix products over all rows (QKV and gate/up with their input norm, fused or
/// as a pass of its own).
pub struct Products {
    qkv: Normed,
    o: GpuOp,
    gate_up: Normed,
    down: GpuOp,
}

impl Products {
    /// Dispatch-recording ops: 4, plus the two norm passes when they are separate.
    pub fn len(&self) -> usize {
        self.qkv.len() + self.gate_up.len() + 2
    }
}

/// One layer's ops for one sequence.
pub struct SeqOps {
    qk_norm: Option<GpuOp>,
    rope: GpuOp,
    attn: GpuOp,
    /// `rope` and `attn` folded for one token (`OpKind::AttentionRope`): on the one-row
    /// attention unless `Tuning::rope_fold` is `Some(false)`, on the split attention only when
    /// it is `Some(true)`.
    rope_attn: Option<GpuOp>,
    attn_post: Option<GpuOp>,
    ffn_post: Option<GpuOp>,
}

impl SeqOps {
    /// Dispatch-recording ops (for sizing a timed command buffer).
    pub fn len(&self) -> usize {
        3 + [&self.qk_norm, &self.attn_post, &self.ffn_post]
            .iter()
            .filter(|o| o.is_some())
            .count()
    }
}

/// The mat-vec over the rows of `x` with its input norm `norm` (weights, eps): fused, or as a
/// pass into `xn` when given.
#[allow(clippy::too_many_arguments)]
fn normed(
    b: &mut OpBuilder<'_>,
    x: Act,
    xn: Option<Act>,
    segs: &[Seg],
    (norm, eps): (&Buffer, f32),
    bias: Option<&Buffer>,
    y: Act,
    k: u32,
    flags: u32,
) -> Result<Normed> {
    b.normed_matvec(
        MatvecSpec {
            norm: Some(norm.all()),
            bias: bias.map(Buffer::all),
            eps,
            ..plain(x, segs, y, k, flags)
        },
        xn.map(|a| a.buf),
    )
}

/// The product of `segs` over all rows of `x` into `y`, with no norm and no bias.
fn plain<'a>(x: Act, segs: &'a [Seg], y: Act, k: u32, flags: u32) -> MatvecSpec<'a> {
    MatvecSpec {
        x: x.buf,
        segs,
        norm: None,
        bias: None,
        y: y.buf,
        k,
        x_stride: x.stride,
        y_stride: y.stride,
        x_off: 0,
        y_off: 0,
        flags,
        eps: 0.0,
    }
}

/// `m` as one segment; a layer matrix must fit one binding.
fn one(m: &GpuMatrix) -> Result<Seg> {
    if m.pieces.len() != 1 {
        return Err(VkError::Unsupported(format!(
            "a layer matrix larger than maxStorageBufferRange ({} rows of type {})",
            m.rows, m.ty
        )));
    }
    Ok(m.seg())
}

/// Layer `l`'s matrix products over the rows of `io`.
pub fn products(
    b: &mut OpBuilder<'_>,
    c: &Config,
    l: &GpuLayer,
    io: &ProductIo,
) -> Result<Products> {
    let (qd, kvd) = (c.q_dim() as u32, c.kv_dim() as u32);
    let mm = |b: &mut OpBuilder<'_>, x: Act, segs: &[Seg], y: Act, k: u32, flags: u32| {
        b.matvec(plain(x, segs, y, k, flags))
    };
    let (mut q, mut k, mut v) = (one(&l.q)?, one(&l.k)?, one(&l.v)?);
    if l.qkv_bias.is_some() {
        q.bias = Some(0);
        k.bias = Some(qd);
        v.bias = Some(qd + kvd);
    }
    let e = c.n_embd as u32;
    let qkv = normed(
        b,
        io.x,
        io.xn,
        &[q, k, v],
        (&l.attn_norm, c.rms_eps),
        l.qkv_bias.as_ref(),
        io.qkv,
        e,
        0,
    )?;
    // Without a post-norm a projection adds into x itself; with one it goes through proj.
    let out = |post: &Option<Buffer>| match post {
        None => (io.x, F_ACC),
        Some(_) => (io.proj, 0),
    };
    let (o_out, o_flags) = out(&l.attn_post_norm);
    let o = mm(b, io.attn, &[one(&l.o)?], o_out, qd, o_flags)?;
    let glu = match c.act {
        Activation::Silu => F_GLU,
        Activation::Gelu => F_GLU | F_GELU,
    };
    let gate_up = normed(
        b,
        io.x,
        io.xn,
        &[one(&l.gate)?, one(&l.up)?],
        (&l.ffn_norm, c.rms_eps),
        None,
        io.ffn,
        e,
        glu,
    )?;
    let (d_out, d_flags) = out(&l.ffn_post_norm);
    let down = mm(b, io.ffn, &[one(&l.down)?], d_out, c.n_ff as u32, d_flags)?;
    Ok(Products {
        qkv,
        o,
        gate_up,
        down,
    })
}

/// Layer `il`'s position-dependent ops for the sequence `io`.
pub fn seq_ops(
    b: &mut OpBuilder<'_>,
    c: &Config,
    w: &GpuWeights,
    il: usize,
    io: &SeqIo<'_>,
) -> Result<SeqOps> {
    let l = &w.layers[il];
    let (kc, vc) = &io.kv[il];
    let (e, qd, kvd, hd) = (
        c.n_embd as u32,
        c.q_dim() as u32,
        c.kv_dim() as u32,
        c.head_dim as u32,
    );
    let qk_norm = match &l.qk_norm {
        Some((wq, wk)) => Some(b.qk_norm(
            io.qkv,
            wq.all(),
            wk.all(),
            OpKind::QkNorm {
                q_dim: qd,
                kv_dim: kvd,
                head_dim: hd,
                eps: c.rms_eps,
            },
        )?),
        None => None,
    };
    let rope = b.rope_kv(
        io.state,
        io.qkv,
        io.q,
        kc.all(),
        vc.all(),
        w.inv_freq[w.layer_rope[il]].all(),
        OpKind::RopeKv {
            q_dim: qd,
            kv_dim: kvd,
            head_dim: hd,
            n_rot: c.n_rot as u32,
            neox: c.rope_style == RopeStyle::Neox,
        },
    )?;
    let (n_head, n_kv) = (c.n_head as u32, c.n_head_kv as u32);
    let window = c.layer_window(il).unwrap_or(0) as u32;
    let attn = b.attention(
        io.state,
        io.q,
        kc.all(),
        vc.all(),
        io.attn,
        io.scratch,
        OpKind::Attention {
            n_head,
            n_kv,
            head_dim: hd,
            scale: c.attn_scale,
            window,
            prompt: None,
            split: None,
        },
    )?;
    // The fold needs the kernels' shapes: whole groups, heads of at most 256 (MAX_D). Unset,
    // it is the one-row attention's default and not the split attention's (GPUs: unmeasured,
    // docs/vulkan.md "Tuning from the sweep").
    let shapes = n_kv > 0 && n_head.is_multiple_of(n_kv) && hd <= 256;
    let asked = b.kernels.dev.tuning.rope_fold;
    let fold = asked.unwrap_or(io.scratch.is_none()) && shapes;
    let kind = OpKind::AttentionRope {
        n_head,
        n_kv,
        head_dim: hd,
        scale: c.attn_scale,
        window,
        n_rot: c.n_rot as u32,
        neox: c.rope_style == RopeStyle::Neox,
        split: None,
    };
    let freqs = w.inv_freq[w.layer_rope[il]].all();
    let (st, qkv, out) = (io.state, io.qkv, io.attn);
    let rope_attn = match io.scratch {
        _ if !fold => None,
        None => Some(b.attention_rope(st, qkv, kc.all(), vc.all(), out, freqs, kind)?),
        Some(s) => {
            let (k, v) = (kc.all(), vc.all());
            Some(b.attention_rope_split(st, qkv, k, v, out, freqs, s, kind)?)
        }
    };
    let mut post = |pn: &Option<Buffer>| -> Result<Option<GpuOp>> {
        pn.as_ref()
            .map(|pn| {
                let kind = OpKind::NormAdd {
                    n: e,
                    eps: c.rms_eps,
                };
                b.norm_add(io.proj, pn.all(), io.x, kind)
            })
            .transpose()
    };
    let attn_post = post(&l.attn_post_norm)?;
    let ffn_post = post(&l.ffn_post_norm)?;
    Ok(SeqOps {
        qk_norm,
        rope,
        attn,
        rope_attn,
        attn_post,
        ffn_post,
    })
}

/// Records one layer: the products over `rows` rows, each sequence's ops over `n_tok` tokens
/// (an engine alone: one sequence, `rows` = `n_tok` = the batch; serve's slots: one token per
/// slot, `rows` up to the last busy slot's). Several sequences' ops run as a group, without
/// barriers among them (they touch different rows and caches); their attention too when
/// `attn_grouped` (each is one dispatch: no split-KV combine pass that must wait for it).
/// One token with the fold built: RoPE, the KV write and attention as one dispatch.
pub fn record(
    cmd: &mut CmdBuffer,
    p: &Products,
    seqs: &[&SeqOps],
    rows: u32,
    n_tok: u32,
    attn_grouped: bool,
) {
    let group = seqs.len() > 1;
    let each = |cmd: &mut CmdBuffer, f: &dyn Fn(&SeqOps) -> Option<&GpuOp>, grouped: bool| {
        cmd.group(grouped);
        for s in seqs {
            if let Some(op) = f(s) {
                op.record(cmd, n_tok);
            }
        }
        cmd.group(false);
    };
    p.qkv.record(cmd, rows);
    each(cmd, &|s| s.qk_norm.as_ref(), group);
    if n_tok == 1 && seqs.iter().all(|s| s.rope_attn.is_some()) {
        each(cmd, &|s| s.rope_attn.as_ref(), group && attn_grouped);
    } else {
        each(cmd, &|s| Some(&s.rope), group);
        each(cmd, &|s| Some(&s.attn), group && attn_grouped);
    }
    p.o.record(cmd, rows);
    each(cmd, &|s| s.attn_post.as_ref(), group);
    p.gate_up.record(cmd, rows);
    p.down.record(cmd, rows);
    each(cmd, &|s| s.ffn_post.as_ref(), group);
}
