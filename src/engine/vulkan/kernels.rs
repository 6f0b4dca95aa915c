//! The engine's kernels: one `GpuKernel` per shader variant (created lazily, only for the weight
//! types a model uses), their push-constant layouts, and `GpuOp`, a dispatch whose descriptor set is
//! written once and whose push constants depend only on the batch size — so the decode command
//! buffer can be recorded once and replayed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use ash::vk;

use super::attention::{AttnScratch, SplitAttention, ATTN_BINDINGS, ATTN_PUSH};
use super::buffer::BufRange;
use super::command::CmdBuffer;
use super::device::Device;
use super::error::{Result, VkError};
use super::pipeline::{DescriptorArena, GpuKernel, PipelineCache};
use super::shaders;
use super::shapes::{self, Limits, PATH_LANE, PATH_SUBGROUP, PATH_TREE};
use super::tiled::{PromptAttention, Tiled};
use crate::quant::GgmlType;

/// Matrices one mat-vec dispatch can cover (shaders: MAX_SEG).
pub const MAX_SEG: usize = 4;
/// Tokens per workgroup of the mat-mat variant (shaders: NT of `matmul_*`).
pub const MATMUL_NT: u32 = 8;
/// Length of the token-history ring in the device state (shaders/common/state.glsl: HIST).
pub const HIST: usize = 256;
/// Words of the device state buffer.
pub const STATE_WORDS: usize = 4 + HIST;
pub const S_TOKEN: usize = 2;

// Mat-vec flags (shaders/matvec.comp).
pub const F_NORM: u32 = 1;
pub const F_ACC: u32 = 2;
pub const F_BIAS: u32 = 4;
pub const F_GLU: u32 = 8;
/// With `F_GLU`: GELU (tanh form) in place of SiLU (shaders/common/act.glsl).
pub const F_GELU: u32 = 16;

pub(super) const MATVEC_BINDINGS: [u32; 5] = [1, MAX_SEG as u32, 1, 1, 1];
pub(super) const MATVEC_PUSH: u32 = 24;

/// Whether the shaders can read weights of type `ty`.
pub fn supported(ty: GgmlType) -> bool {
    shaders::WEIGHT_TYPE_IDS.contains(&ty.id())
}

/// Kernels of one device, built on first use.
pub struct Kernels {
    pub(super) dev: Arc<Device>,
    cache: PipelineCache,
    built: RefCell<HashMap<String, Rc<GpuKernel>>>,
    /// (workgroup size, rows per workgroup, path: `shapes::PATH_*`) of the mat-vec and mat-mat
    /// variants, fitted to the device's limits.
    matvec_shape: [u32; 3],
    matmul_shape: [u32; 3],
    /// Prompt batches of more than `MATMUL_NT` tokens use the tiled mat-mat (tiled.rs).
    pub(super) prompt_tiled: Cell<bool>,
    limits: Limits,
}

/// The tiled mat-mat serves prompts on GPUs; on CPU implementations (lavapipe) the lane-path
/// mat-vec over 8 tokens is faster. `Tuning::prompt_tiled` overrides the choice.
fn prompt_tiled_default(dev: &Device) -> bool {
    dev.tuning
        .prompt_tiled
        .unwrap_or(dev.info.kind != super::device::DeviceKind::Cpu)
}

impl Kernels {
    /// The kernels of `dev` with its default shapes, or those `Tuning::matvec` /
    /// `Tuning::matmul` ask for (tests force the GPUs' subgroup path on lavapipe with them).
    pub fn new(dev: &Arc<Device>) -> Result<Kernels> {
        // CPU implementations run invocations as SIMD lanes and pay for every barrier and,
        // per lane, for every load: there, each invocation computes 8 whole rows (sharing the
        // activation loads); GPUs share a row's blocks across a workgroup, with subgroup
        // reductions where the device has them.
        let (matvec, matmul) = if dev.info.kind == super::device::DeviceKind::Cpu {
            ([32, 8, PATH_LANE], [32, 8, PATH_LANE])
        } else if dev.features.subgroup_arith {
            ([128, 2, PATH_SUBGROUP], [32, 2, PATH_TREE])
        } else {
            ([32, 4, PATH_TREE], [32, 2, PATH_TREE])
        };
        Self::with_shapes(
            dev,
            dev.tuning.matvec.unwrap_or(matvec),
            dev.tuning.matmul.unwrap_or(matmul),
        )
    }

    /// Kernels with explicit mat-vec / mat-mat shapes (workgroup size, rows per workgroup,
    /// path), fitted to the device's limits; tests use it to cover every path on one device.
    pub fn with_shapes(dev: &Arc<Device>, matvec: [u32; 3], matmul: [u32; 3]) -> Result<Kernels> {
        let limits = Limits::of(dev);
        Ok(Kernels {
            dev: dev.clone(),
            cache: PipelineCache::new(dev)?,
            built: RefCell::new(HashMap::new()),
            matvec_shape: shapes::fit(matvec, 1, &limits),
            matmul_shape: shapes::fit(matmul, MATMUL_NT, &limits),
            limits,
            prompt_tiled: Cell::new(prompt_tiled_default(dev)),
        })
    }

    /// The decode mat-vec shape (workgroup size, rows per workgroup, path) in use.
    pub fn matvec_shape(&self) -> [u32; 3] {
        self.matvec_shape
    }

    /// Forces the prompt path: the tiled mat-mat (`true`) or the 8-token mat-vec, for ops built
    /// after this call (tests cover both on one device).
    #[cfg(test)]
    pub fn set_prompt_tiled(&self, on: bool) {
        self.prompt_tiled.set(on);
    }

    pub(super) fn get(
        &self,
        name: &str,
        spirv: &[u8],
        counts: &[u32],
        push: u32,
        spec: &[u32],
    ) -> Result<Rc<GpuKernel>> {
        if let Some(k) = self.built.borrow().get(name) {
            return Ok(k.clone());
        }
        // The subgroup mat-vec runs with full subgroups where the device can promise them.
        let full = name.starts_with("matvecsg")
            && self.dev.features.full_subgroups
            && spec[0].is_multiple_of(self.dev.features.max_subgroup.max(1));
        let k = Rc::new(GpuKernel::new(
            &self.dev,
            &self.cache,
            name,
            spirv,
            counts,
            push,
            spec,
            full,
        )?);
        self.built.borrow_mut().insert(name.to_string(), k.clone());
        Ok(k)
    }

    /// Mat-vec (`batch` = false, one token per workgroup) or mat-mat (8 tokens) for weights of
    /// type `ty` (`None`: the variant that reads the type per segment).
    pub fn matvec(&self, batch: bool, ty: Option<GgmlType>) -> Result<Rc<GpuKernel>> {
        let spec = if batch {
            self.matmul_shape
        } else {
            self.matvec_shape
        };
        self.matvec_shaped(batch, ty, spec)
    }

    /// The decode mat-vec for a `rows` × `k` matrix (`shapes::for_matrix`: narrower workgroups
    /// for very tall or short matrices on the subgroup path).
    pub fn matvec_decode(&self, ty: Option<GgmlType>, rows: u32, k: u32) -> Result<Rc<GpuKernel>> {
        let spec = shapes::for_matrix(self.matvec_shape, rows, k, &self.limits);
        self.matvec_shaped(false, ty, spec)
    }

    fn matvec_shaped(
        &self,
        batch: bool,
        ty: Option<GgmlType>,
        spec: [u32; 3],
    ) -> Result<Rc<GpuKernel>> {
        let sg = !batch && spec[2] == PATH_SUBGROUP;
        let prefix = if batch {
            "matmul"
        } else if sg {
            "matvecsg"
        } else {
            "matvec"
        };
        let (name, spirv) = match ty {
            Some(t) => {
                let code = if batch {
                    shaders::matmul_for(t.id())
                } else if sg {
                    shaders::matvecsg_for(t.id())
                } else {
                    shaders::matvec_for(t.id())
                };
                let code = code.ok_or_else(|| {
                    VkError::Unsupported(format!("weights of type {t} on the GPU"))
                })?;
                (format!("{prefix}_{t}"), code)
            }
            None => (
                format!("{prefix}_any"),
                if batch {
                    shaders::MATMUL_ANY
                } else if sg {
                    shaders::MATVECSG_ANY
                } else {
                    shaders::MATVEC_ANY
                },
            ),
        };
        let name = format!("{name}_{}x{}x{}", spec[0], spec[1], spec[2]);
        self.get(&name, spirv, &MATVEC_BINDINGS, MATVEC_PUSH, &spec)
    }

    pub fn embed(&self) -> Result<Rc<GpuKernel>> {
        self.get(
            "embed",
            shaders::EMBED,
            &[1, 1, MAX_SEG as u32, 1],
            9,
            &[64],
        )
    }
    pub fn rope_kv(&self) -> Result<Rc<GpuKernel>> {
        self.get("rope_kv", shaders::ROPE_KV, &[1, 1, 1, 1, 1, 1], 6, &[])
    }
    pub fn attention(&self) -> Result<Rc<GpuKernel>> {
        self.get(
            "attention",
            shaders::ATTENTION,
            &ATTN_BINDINGS,
            ATTN_PUSH,
            &[64],
        )
    }
    pub fn sample(&self) -> Result<Rc<GpuKernel>> {
        self.get("sample", shaders::SAMPLE, &[1, 1, 1, 1], 2, &[128])
    }
    pub fn advance(&self) -> Result<Rc<GpuKernel>> {
        self.get("advance", shaders::ADVANCE, &[1, 1], 2, &[])
    }
    /// One workgroup doing nothing: the profiler's per-stage floor.
    pub fn empty(&self) -> Result<Rc<GpuKernel>> {
        self.get("empty", shaders::EMPTY, &[1], 0, &[])
    }

    /// Saves the pipeline cache now (it is also saved on drop).
    pub fn save_cache(&self) {
        self.cache.save();
    }
}

/// One matrix of a mat-vec dispatch.
#[derive(Debug, Clone, Copy)]
pub struct Seg {
    pub w: BufRange,
    pub rows: u32,
    pub ty: GgmlType,
    /// Offset (floats) of this matrix's bias in the bias buffer.
    pub bias: Option<u32>,
}

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
        /// Decode-time mat-vec and batch-time mat-mat variants (same layout, same set).
        batch_kernel: Rc<GpuKernel>,
        /// The tiled mat-mat for batches of more than `MATMUL_NT` tokens (same set), if used.
        tiled: Option<Rc<Tiled>>,
    },
    Embed {
        dim: u32,
        from_state: bool,
        ty: GgmlType,
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
    Sample {
        n_vocab: u32,
    },
    /// Per-head Q/K RMS norm in place in the QKV buffer (norms.rs).
    QkNorm {
        q_dim: u32,
        kv_dim: u32,
        head_dim: u32,
        eps: f32,
    },
    /// `x += rms_norm(y) · w` per token row of `n` (norms.rs).
    NormAdd {
        n: u32,
        eps: f32,
    },
    /// `hist_from`: tokens before this index are not added to the history.
    Advance {
        hist_from: u32,
    },
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

impl GpuOp {
    /// Records this op for a batch of `n_tok` tokens (`logits_off` for `Sample`: float offset of
    /// the logits row).
    pub fn record(&self, cmd: &mut CmdBuffer, n_tok: u32) {
        // Names the dispatch on a timed command buffer (`--profile`); nothing otherwise.
        cmd.label(|| self.stamp(n_tok));
        match &self.kind {
            OpKind::Matvec {
                k,
                x_stride,
                y_stride,
                flags,
                eps,
                x_off,
                y_off,
                segs,
                batch_kernel,
                tiled,
            } => {
                let glu = flags & F_GLU != 0;
                let rows: u32 = if glu {
                    segs[0].0
                } else {
                    segs.iter().map(|s| s.0).sum()
                };
                let mut push = vec![
                    *k,
                    n_tok,
                    *x_stride,
                    *y_stride,
                    *flags,
                    eps.to_bits(),
                    *y_off,
                    segs.len() as u32,
                    *x_off,
                    0,
                    0,
                    0,
                ];
                push.extend(four(segs.iter().map(|s| s.0)));
                push.extend(four(segs.iter().map(|s| s.1.id())));
                push.extend(four(segs.iter().map(|s| s.2.unwrap_or(u32::MAX))));
                if let Some(t) = tiled.as_ref().filter(|_| n_tok > MATMUL_NT) {
                    t.record(cmd, self.set, &push, rows, n_tok, glu);
                    return;
                }
                let batch = n_tok > 1;
                let (kernel, nt) = if batch {
                    (batch_kernel, MATMUL_NT)
                } else {
                    (&self.kernel, 1)
                };
                // Rows per workgroup: ROWS per invocation on the lane-per-row path.
                let rpw = if kernel.spec[2] == PATH_LANE {
                    kernel.spec[0] * kernel.spec[1]
                } else {
                    kernel.spec[1]
                };
                // Workgroups beyond the 65535 of one grid dimension go on to z (the shaders
                // number them x + z·x_count and skip rows past the end).
                let groups = rows.div_ceil(rpw);
                let z = groups.div_ceil(65535).max(1);
                cmd.dispatch(
                    kernel,
                    self.set,
                    &push,
                    [groups.div_ceil(z), n_tok.div_ceil(nt), z],
                );
            }
            OpKind::Embed {
                dim,
                from_state,
                ty,
                seg_rows,
                scale,
            } => {
                let mut push = vec![*dim, *from_state as u32, ty.id(), seg_rows.len() as u32];
                push.extend(four(seg_rows.iter().copied()));
                push.push(scale.to_bits());
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
                if let Some(s) = split.as_ref().filter(|_| n_tok == 1) {
                    s.record(cmd, self.set, &push, *n_kv);
                    return;
                }
                // The single-pass kernels read the same 8 push words (n_split and chunk unused).
                let push = [push[0], push[1], push[2], push[3], push[4], 0, 0, push[5]];
                match prompt.as_ref().filter(|_| n_tok > 1) {
                    Some(p) => cmd.dispatch(
                        &p.kernel,
                        self.set,
                        &push,
                        [*n_head, n_tok.div_ceil(p.rows), 1],
                    ),
                    None => cmd.dispatch(&self.kernel, self.set, &push, [*n_head, n_tok, 1]),
                }
            }
            OpKind::Sample { n_vocab } => {
                cmd.dispatch(&self.kernel, self.set, &[*n_vocab, 0], [1, 1, 1]);
            }
            OpKind::Advance { hist_from } => {
                cmd.dispatch(&self.kernel, self.set, &[n_tok, *hist_from], [1, 1, 1]);
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

impl OpBuilder<'_> {
    pub fn matvec(&mut self, s: MatvecSpec<'_>) -> Result<GpuOp> {
        assert!(!s.segs.is_empty() && s.segs.len() <= MAX_SEG);
        let ty0 = s.segs[0].ty;
        let same = s.segs.iter().all(|g| g.ty == ty0);
        let ty = if same { Some(ty0) } else { None };
        let glu = s.flags & F_GLU != 0;
        let rows: u32 = if glu {
            s.segs[0].rows
        } else {
            s.segs.iter().map(|g| g.rows).sum()
        };
        let kernel = self.kernels.matvec_decode(ty, rows, s.k)?;
        let batch_kernel = self.kernels.matvec(true, ty)?;
        let tiled = self.kernels.tiled(ty)?;
        let ws: Vec<BufRange> = s.segs.iter().map(|g| g.w).collect();
        // Unused optional bindings point at the input (never read: the flags say so).
        let norm = s.norm.unwrap_or(s.x);
        let bias = s.bias.unwrap_or(s.x);
        let set = self
            .arena
            .set(&kernel, &[&[s.x], &ws, &[norm], &[bias], &[s.y]])?;
        let mut flags = s.flags;
        if s.norm.is_some() {
            flags |= F_NORM;
        }
        if s.segs.iter().any(|g| g.bias.is_some()) {
            flags |= F_BIAS;
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
        let kernel = self.kernels.embed()?;
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
                ty,
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
            *prompt = self.kernels.prompt_attention(*head_dim)?;
            *split = match scratch {
                Some(s) if *head_dim <= 256 && *n_kv > 0 && n_head.is_multiple_of(*n_kv) => {
                    let need = s.splits.part_floats(*n_head as usize, *head_dim as usize);
                    assert!(
                        s.splits.n_split == 1 || s.part.len >= need as u64 * 4,
                        "attention partials: {} bytes for {need} floats",
                        s.part.len
                    );
                    Some(self.kernels.split_attention(*n_head / *n_kv, s.splits)?)
                }
                _ => None,
            };
        }
        Ok(GpuOp { kernel, set, kind })
    }

    pub fn sample(
        &mut self,
        logits: BufRange,
        state: BufRange,
        scratch: BufRange,
        params: BufRange,
        n_vocab: u32,
    ) -> Result<GpuOp> {
        let kernel = self.kernels.sample()?;
        let set = self
            .arena
            .set(&kernel, &[&[logits], &[state], &[scratch], &[params]])?;
        Ok(GpuOp {
            kernel,
            set,
            kind: OpKind::Sample { n_vocab },
        })
    }

    pub fn advance(&mut self, state: BufRange, tokens: BufRange) -> Result<GpuOp> {
        let kernel = self.kernels.advance()?;
        let set = self.arena.set(&kernel, &[&[state], &[tokens]])?;
        Ok(GpuOp {
            kernel,
            set,
            kind: OpKind::Advance { hist_from: 0 },
        })
    }
}

/// The sampling parameters as the sampler reads them (shaders/sample.comp: Params), 32 bytes.
pub fn sample_params(p: &crate::engine::SamplingParams, u: f32) -> [u32; 8] {
    [
        p.temperature.to_bits(),
        p.top_k.min(u32::MAX as usize) as u32,
        p.top_p.to_bits(),
        p.min_p.to_bits(),
        p.repeat_penalty.to_bits(),
        p.repeat_last_n.min(HIST) as u32,
        u.to_bits(),
        0,
    ]
}
