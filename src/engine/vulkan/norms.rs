//! The ops some architectures add around the shared forward pass: the per-head Q/K RMS norm
//! (qwen3, gemma3; `shaders/qk_norm.comp`) and the residual add through an RMS norm (gemma3's
//! post-attention and post-FFN norms; `shaders/norm_add.comp`).

use super::buffer::BufRange;
use super::error::Result;
use super::kernels::Kernels;
use super::ops::{GpuOp, OpBuilder, OpKind};
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
}
