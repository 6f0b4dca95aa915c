//! The model's weights on the device: each tensor uploaded once, streamed from the memory map
//! through the staging uploader, in pieces of whole rows when it is larger than one
//! storage-buffer binding may be (`maxStorageBufferRange`, 128 MiB on lavapipe).

use std::sync::Arc;

use super::buffer::{f32_bytes, Buffer, MemKind};
use super::device::Device;
use super::error::{Result, VkError};
use super::kernels::{supported, Seg, MAX_SEG};
use super::upload::Uploader;
use crate::model::{Model, Weight};
use crate::quant::GgmlType;
use crate::sys::progress::{Reporter, Task};

/// A matrix on the device: `rows` rows of `cols` elements, in pieces of whole rows.
pub struct GpuMatrix {
    pub ty: GgmlType,
    pub rows: u32,
    pub pieces: Vec<(Buffer, u32)>,
}

impl GpuMatrix {
    /// Its pieces as mat-vec segments.
    pub fn segs(&self) -> Vec<Seg> {
        self.pieces
            .iter()
            .map(|(b, rows)| Seg {
                w: b.all(),
                rows: *rows,
                ty: self.ty,
                bias: None,
            })
            .collect()
    }
    /// The one segment of a matrix that fits a single binding.
    pub fn seg(&self) -> Seg {
        assert_eq!(self.pieces.len(), 1, "matrix in pieces used as one segment");
        self.segs()[0]
    }
}

pub struct GpuLayer {
    pub attn_norm: Buffer,
    pub q: GpuMatrix,
    pub k: GpuMatrix,
    pub v: GpuMatrix,
    /// [q bias | k bias | v bias] (qwen2).
    pub qkv_bias: Option<Buffer>,
    /// Per-head Q and K norm weights, [head_dim] each (qwen3, gemma3).
    pub qk_norm: Option<(Buffer, Buffer)>,
    pub o: GpuMatrix,
    /// Norm of the attention output before the residual add, [n_embd] (gemma3).
    pub attn_post_norm: Option<Buffer>,
    pub ffn_norm: Buffer,
    pub gate: GpuMatrix,
    pub up: GpuMatrix,
    pub down: GpuMatrix,
    /// Norm of the FFN output before the residual add, [n_embd] (gemma3).
    pub ffn_post_norm: Option<Buffer>,
}

pub struct GpuWeights {
    pub token_embd: GpuMatrix,
    pub output_norm: Buffer,
    /// `None` when the output projection is the embedding table (tied weights).
    pub output: Option<GpuMatrix>,
    pub layers: Vec<GpuLayer>,
    /// RoPE tables, one per distinct (base, scale) among the layers plus an all-zero one for
    /// layers without RoPE (angle 0 rotates nothing); per rotated pair: the inverse frequency
    /// RoPE multiplies the position by.
    pub inv_freq: Vec<Buffer>,
    /// Per layer: its table in `inv_freq`.
    pub layer_rope: Vec<usize>,
}

struct Loader<'a> {
    dev: &'a Arc<Device>,
    model: &'a Model,
    up: Uploader,
    /// Bytes of matrices uploaded, reported to whoever draws progress.
    progress: Task<'a>,
}

impl Loader<'_> {
    fn vector(&mut self, w: &Weight) -> Result<Buffer> {
        let v = self.model.vector_f32(w);
        self.f32s(&v, &w.name)
    }

    fn f32s(&mut self, v: &[f32], what: &str) -> Result<Buffer> {
        let mut b = Buffer::new(self.dev, v.len() as u64 * 4, MemKind::Weights, what)?;
        self.up.upload(&mut b, 0, f32_bytes(v))?;
        Ok(b)
    }

    fn matrix(&mut self, w: &Weight) -> Result<GpuMatrix> {
        if !supported(w.ty) {
            return Err(VkError::Unsupported(format!(
                "tensor '{}' of type {} on the GPU",
                w.name, w.ty
            )));
        }
        let rows = w.rows() as u64;
        let row_bytes = w.row_bytes() as u64;
        // Keep a little under the limit: ranges are widened by a slack word.
        let per_piece = ((self.dev.max_weight_binding() - 64) / row_bytes.max(1)).max(1);
        let n_pieces = rows.div_ceil(per_piece);
        if n_pieces as usize > MAX_SEG {
            return Err(VkError::Unsupported(format!(
                "tensor '{}' ({} MiB): more than {MAX_SEG} pieces of {} MiB (maxStorageBufferRange, maxTexelBufferElements)",
                w.name,
                w.bytes >> 20,
                self.dev.max_weight_binding() >> 20
            )));
        }
        let data = self.model.data(w);
        let mut pieces = Vec::new();
        for p in 0..n_pieces {
            let r0 = p * per_piece;
            let r = per_piece.min(rows - r0);
            let bytes = &data[(r0 * row_bytes) as usize..((r0 + r) * row_bytes) as usize];
            let mut b = Buffer::new(self.dev, bytes.len() as u64, MemKind::Weights, &w.name)?;
            self.up.upload(&mut b, 0, bytes)?;
            self.progress.add(bytes.len() as u64);
            pieces.push((b, r as u32));
        }
        Ok(GpuMatrix {
            ty: w.ty,
            rows: rows as u32,
            pieces,
        })
    }
}

/// Uploads every weight of `model`, reporting the bytes done to `progress`.
pub fn upload(dev: &Arc<Device>, model: &Model, progress: &Reporter) -> Result<(GpuWeights, u64)> {
    let c = &model.config;
    let w = &model.weights;
    let mut ld = Loader {
        dev,
        model,
        up: Uploader::new(dev, super::upload::CHUNK)?,
        progress: progress.task(
            &format!("uploading weights to {}", dev.info.name),
            Some(model.weight_bytes()),
        ),
    };
    let token_embd = ld.matrix(&w.token_embd)?;
    let output = if w.output.name == w.token_embd.name {
        None
    } else {
        Some(ld.matrix(&w.output)?)
    };
    let output_norm = ld.vector(&w.output_norm)?;
    let mut layers = Vec::with_capacity(w.layers.len());
    for l in &w.layers {
        let qkv_bias = match (&l.attn_q_bias, &l.attn_k_bias, &l.attn_v_bias) {
            (Some(q), Some(k), Some(v)) => {
                let all = [
                    model.vector_f32(q),
                    model.vector_f32(k),
                    model.vector_f32(v),
                ]
                .concat();
                Some(ld.f32s(&all, &q.name)?)
            }
            _ => None,
        };
        let qk_norm = match (&l.attn_q_norm, &l.attn_k_norm) {
            (Some(q), Some(k)) => Some((ld.vector(q)?, ld.vector(k)?)),
            _ => None,
        };
        let attn_post_norm = l
            .attn_post_norm
            .as_ref()
            .map(|w| ld.vector(w))
            .transpose()?;
        let ffn_post_norm = l.ffn_post_norm.as_ref().map(|w| ld.vector(w)).transpose()?;
        layers.push(GpuLayer {
            attn_norm: ld.vector(&l.attn_norm)?,
            q: ld.matrix(&l.attn_q)?,
            k: ld.matrix(&l.attn_k)?,
            v: ld.matrix(&l.attn_v)?,
            qkv_bias,
            qk_norm,
            o: ld.matrix(&l.attn_output)?,
            attn_post_norm,
            ffn_norm: ld.vector(&l.ffn_norm)?,
            gate: ld.matrix(&l.ffn_gate)?,
            up: ld.matrix(&l.ffn_up)?,
            down: ld.matrix(&l.ffn_down)?,
            ffn_post_norm,
        });
    }
    // RoPE inverse frequencies, formed like the CPU engine's angles: freq_scale · base^(−2j/n)
    // (the power by repeated multiplication) / freq_factor[j].
    let half = c.n_rot / 2;
    let factors = w.rope_freqs.as_ref().map(|f| model.vector_f32(f));
    let table = |(base, scale): (f32, f32)| -> Vec<f32> {
        let ts = base.powf(-2.0 / c.n_rot as f32);
        let mut inv = Vec::with_capacity(half);
        let mut p = 1.0f32;
        for j in 0..half {
            let ff = factors.as_ref().map_or(1.0, |f| f[j]);
            inv.push(scale * (p / ff));
            p *= ts;
        }
        inv
    };
    let mut keys: Vec<Option<(f32, f32)>> = Vec::new();
    let mut layer_rope = Vec::with_capacity(c.n_layer);
    for il in 0..c.n_layer {
        let k = c.layer_rope(il);
        let i = keys.iter().position(|x| *x == k).unwrap_or_else(|| {
            keys.push(k);
            keys.len() - 1
        });
        layer_rope.push(i);
    }
    let mut inv_freq = Vec::with_capacity(keys.len());
    for k in keys {
        let v = k.map_or_else(|| vec![0.0; half], table);
        inv_freq.push(ld.f32s(&v, "rope frequencies")?);
    }
    ld.up.finish()?;
    let bytes = ld.up.bytes;
    Ok((
        GpuWeights {
            token_embd,
            output_norm,
            output,
            layers,
            inv_freq,
            layer_rope,
        },
        bytes,
    ))
}
