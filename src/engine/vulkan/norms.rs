//! The RMS norms outside the fused mat-vec prologue: the per-head Q/K RMS norm (qwen3, gemma3;
//! `shaders/qk_norm.comp`), the residual add through an RMS norm (gemma3's post-attention and
//! post-FFN norms; `shaders/norm_add.comp`), and the norm pass (`shaders/rms_norm.comp`,
//! `Tuning::norm_pass`): the input norm of QKV, gate/up and the head as a dispatch of its own
//! writing the normed rows once, the product then reading them without its fused norm
//! (`Normed`; docs/vulkan.md, "RMSNorm once per token").

use super::buffer::BufRange;
use super::command::CmdBuffer;
use super::error::Result;
use super::kernels::Kernels;
use super::ops::{GpuOp, MatvecSpec, OpBuilder, OpKind};
use super::pipeline::GpuKernel;
use super::shaders;
use std::rc::Rc;

impl Kernels {
    pub fn qk_norm(&self) -> Result<Rc<GpuKernel>> {
        self.get("qk_norm", shaders::QK_NORM, &[1, 1, 1], 5, &[])
    }
    pub fn norm_add(&self) -> Result<Rc<GpuKernel>> {
        self.get("norm_add", shaders::NORM_ADD, &[1, 1, 1], 3, &[])
    }

    /// The norm pass's kernel: its reduction through `subgroupAdd` when `subgroup` and the
    /// device has subgroup arithmetic, else a shared-memory tree. 256 invocations per row on
    /// GPUs (a 3072-wide row is three vec4 loads each), 64 on CPU implementations, within the
    /// device's workgroup limits.
    pub fn rms_norm(&self, subgroup: bool) -> Result<Rc<GpuKernel>> {
        let want: u32 = self.dev.choices.norm_wg;
        let l = &self.dev.limits;
        let cap = l
            .max_compute_work_group_invocations
            .min(l.max_compute_work_group_size[0]);
        // A power of two (the tree halves it), at most the cap (≥ 128 by the Vulkan spec).
        let mut wg = want;
        while wg > cap {
            wg /= 2;
        }
        if subgroup && self.dev.features.subgroup_arith {
            self.get("rms_norm_sg", shaders::RMS_NORM_SG, &[1, 1, 1], 5, &[wg])
        } else {
            self.get("rms_norm", shaders::RMS_NORM, &[1, 1, 1], 5, &[wg])
        }
    }
}

/// A product over RMS-normed rows (QKV, gate/up, the head): the norm fused into the mat-vec
/// (`pass` is `None`), or a norm pass that writes the normed rows to scratch first and the
/// product reading them as plain input.
pub struct Normed {
    pub pass: Option<GpuOp>,
    pub product: GpuOp,
}

impl Normed {
    /// Records the pass (if any) and the product for a batch of `n_tok` rows.
    pub fn record(&self, cmd: &mut CmdBuffer, n_tok: u32) {
        if let Some(p) = &self.pass {
            p.record(cmd, n_tok);
        }
        self.product.record(cmd, n_tok);
    }

    /// Dispatch-recording ops (1 or 2).
    pub fn len(&self) -> usize {
        1 + self.pass.is_some() as usize
    }

    /// The same ops reading their rows from float `off` of the input on (the head over the last
    /// token of a batch); the pass norms those rows in place in its scratch, where the product
    /// then reads them.
    pub fn at(&self, off: u32) -> Normed {
        Normed {
            pass: self.pass.as_ref().map(|p| p.with_x_off(off)),
            product: self.product.with_x_off(off),
        }
    }
}

impl OpBuilder<'_> {
    /// Normalizes each of the `q_dim / head_dim` query heads and `kv_dim / head_dim` key heads
    /// of every token row in `qkv` in place, times `wq` or `wk` (`head_dim` floats each).
    pub fn qk_norm(
        &mut self,
        qkv: BufRange,
        wq: BufRange,
        wk: BufRange,
        kind: OpKind,
    ) -> Result<GpuOp> {
        let kernel = self.kernels.qk_norm()?;
        let set = self.arena.set(&kernel, &[&[qkv], &[wq], &[wk]])?;
        Ok(GpuOp { kernel, set, kind })
    }

    /// `x[t] += rms_norm(y[t]) · w` for each token row.
    pub fn norm_add(
        &mut self,
        y: BufRange,
        w: BufRange,
        x: BufRange,
        kind: OpKind,
    ) -> Result<GpuOp> {
        let kernel = self.kernels.norm_add()?;
        let set = self.arena.set(&kernel, &[&[y], &[w], &[x]])?;
        Ok(GpuOp { kernel, set, kind })
    }

    /// `y[t] = rms_norm(x[t]) · w` for each row (`OpKind::RmsNorm`: width, eps, row stride and
    /// first float, the same in `x` and `y`), on the device's preferred reduction.
    pub fn rms_norm(
        &mut self,
        x: BufRange,
        w: BufRange,
        y: BufRange,
        kind: OpKind,
    ) -> Result<GpuOp> {
        let kernel = self.kernels.rms_norm(true)?;
        let set = self.arena.set(&kernel, &[&[x], &[w], &[y]])?;
        Ok(GpuOp { kernel, set, kind })
    }

    /// The mat-vec `spec` with its norm (`spec.norm`, which must be set) fused in when `xn` is
    /// `None`, else as a norm pass over `spec.x`'s rows into `xn` (laid out like `spec.x`: the
    /// same row stride), which the mat-vec then reads without a norm.
    pub fn normed_matvec(&mut self, spec: MatvecSpec<'_>, xn: Option<BufRange>) -> Result<Normed> {
        self.normed_matvec_for(spec, xn, true)
    }

    /// `normed_matvec`; without `batch` the product runs one token (`OpBuilder::matvec_for`).
    pub fn normed_matvec_for(
        &mut self,
        spec: MatvecSpec<'_>,
        xn: Option<BufRange>,
        batch: bool,
    ) -> Result<Normed> {
        let (Some(xn), Some(w)) = (xn, spec.norm) else {
            return Ok(Normed {
                pass: None,
                product: self.matvec_for(spec, batch)?,
            });
        };
        let pass = self.rms_norm(
            spec.x,
            w,
            xn,
            OpKind::RmsNorm {
                n: spec.k,
                eps: spec.eps,
                stride: spec.x_stride,
                off: spec.x_off,
            },
        )?;
        let product = self.matvec_for(
            MatvecSpec {
                x: xn,
                norm: None,
                eps: 0.0,
                ..spec
            },
            batch,
        )?;
        Ok(Normed {
            pass: Some(pass),
            product,
        })
    }
}
