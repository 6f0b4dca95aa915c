//! The engine's kernels: one `GpuKernel` per shader variant (created lazily, only for the weight
//! types a model uses) and their binding and push-constant layouts. `attention` and `tiled` add
//! the split and prompt kernels on top; `ops` turns kernels into recorded dispatches.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::buffer::BufRange;
use super::device::Device;
use super::error::{Result, VkError};
use super::pipeline::{GpuKernel, PipelineCache, PipelineJob};
use super::shaders;
use super::shapes::{self, Limits, PATH_LANE, PATH_SUBGROUP, PATH_TREE};
use super::tuning::TiledKernel;
use crate::quant::GgmlType;

/// Matrices one mat-vec dispatch can cover (shaders: MAX_SEG).
pub const MAX_SEG: usize = 4;
/// The mat-mat's spec constant FIXED (shaders/matvec.comp) when the op fixes nothing: its
/// lane path reads the flags from the push constants.
pub const FIXED_PUSH: u32 = 256;
/// FIXED bit: every 32-element unit lies within k and x is vec4-aligned.
pub const X_WHOLE: u32 = 128;
/// Length of the token-history ring in the device state (shaders/common/state.glsl: HIST).
pub const HIST: usize = 256;
/// Words of the device state buffer.
pub const STATE_WORDS: usize = 5 + HIST;
/// Words of the device state (shaders/common/state.glsl): tokens in the KV cache, (1: the
/// position of the batch being run,) the last sampled token, tokens ever put in the history
/// ring, the ring.
pub const S_NPAST: usize = 0;
pub const S_TOKEN: usize = 2;
pub const S_NHIST: usize = 3;
pub const S_HIST: usize = 4;
/// The sampler's verdict on the logits it read: 0 finite, bit 0 a NaN, bit 1 an infinity
/// (shaders/common/state.glsl).
pub const S_BAD: usize = S_HIST + HIST;
pub const BAD_NAN: u32 = 1;

// Mat-vec flags (shaders/matvec.comp).
pub const F_NORM: u32 = 1;
pub const F_ACC: u32 = 2;
pub const F_BIAS: u32 = 4;
pub const F_GLU: u32 = 8;
/// With `F_GLU`: GELU (tanh form) in place of SiLU (shaders/common/act.glsl).
pub const F_GELU: u32 = 16;

pub(super) const MATVEC_BINDINGS: [u32; 5] = [1, MAX_SEG as u32, 1, 1, 1];
/// With texel weights (`Device::texel_weights`): the same, plus bindings 5-7, `R32_UINT`
/// uniform texel buffers over the weight segments, x and the norm weights again
/// (shaders/matvec.comp: `TEXEL`).
pub(super) const MATVEC_TEXEL_BINDINGS: [u32; 8] =
    [1, MAX_SEG as u32, 1, 1, 1, MAX_SEG as u32, 1, 1];
/// The first texel binding of `MATVEC_TEXEL_BINDINGS` (the rest are texel bindings too).
pub(super) const MATVEC_TEXEL_BINDING: u32 = 5;
pub(super) const MATVEC_PUSH: u32 = 24;

/// Storage bindings of every attention kernel (state, q, K cache, V cache, out, partials): one
/// descriptor set serves the decode, split, combine and prompt kernels.
pub const ATTN_BINDINGS: [u32; 6] = [1; 6];
/// The lanes prompt attention reading K and V through texel buffers
/// (`shaders/attention_lanes.comp` built with `TEXEL`): the attention's six storage bindings,
/// then `R32_UINT` uniform texel views of the K and V caches (bindings 6 and 7).
pub(super) const ATTN_TEXEL_BINDINGS: [u32; 8] = [1; 8];
/// The first texel binding of `ATTN_TEXEL_BINDINGS`.
pub(super) const ATTN_TEXEL_BINDING: u32 = 6;
/// Push words: n_head, n_kv, head_dim, n_tok, scale, n_split, chunk, window (sliding window in
/// positions, 0 = none).
pub const ATTN_PUSH: u32 = 8;
/// Storage bindings of the split attention with RoPE and the KV write folded in: the split
/// attention's (the QKV projection in place of the rotated queries), then the RoPE table.
pub const ATTN_ROPE_SPLIT_BINDINGS: [u32; 7] = [1; 7];

/// Storage bindings of both sampler kernels (logits, state, candidates' logits, candidates' ids,
/// parameters): one descriptor set serves the prefilter and the selection.
pub const SAMPLE_BINDINGS: [u32; 5] = [1; 5];
/// Tokens per prefilter workgroup (shaders/common/candidates.glsl: SLICE).
pub const SAMPLE_SLICE: usize = 1024;
/// Most candidates a slice keeps for top-k (shaders/common/candidates.glsl: K_MAX); a larger
/// top_k keeps the whole vocabulary. Also the selection's workgroup size (shaders/sample.comp
/// WG), which bounds the top-k-bounded selection's k (`SampleMode::TopK`).
pub const SAMPLE_K_MAX: usize = 128;

/// Prefilter workgroups (vocabulary slices) for a vocabulary of `n_vocab` tokens.
pub fn sample_slices(n_vocab: usize) -> usize {
    n_vocab.div_ceil(SAMPLE_SLICE)
}

/// Words of the candidates' id buffer: an id per token, then each slice's NaN/infinity bits,
/// then the selection's narrowed list (shaders/sample.comp `narrow`: at most half of the
/// candidates, which are at most the vocabulary; the top-k-bounded selection's list, at most
/// `SAMPLE_K_MAX`).
pub fn sample_id_words(n_vocab: usize) -> usize {
    n_vocab + sample_slices(n_vocab) + (n_vocab / 2).max(SAMPLE_K_MAX)
}

/// Tokens per workgroup of a mat-mat kernel (`Kernels::matmul`: its spec constant NT).
pub fn matmul_nt_of(kernel: &GpuKernel) -> u32 {
    kernel.spec[3]
}

/// The one weight type of segments `segs` (rows, type), `None` when they mix types (the `any`
/// variant).
pub fn one_type(segs: &[(u32, GgmlType)]) -> Option<GgmlType> {
    let ty = segs.first()?.1;
    segs.iter().all(|s| s.1 == ty).then_some(ty)
}

/// The GPUs' `any` variants' segment-type constants: SEG_T0..3 on the subgroup mat-vec and the
/// tiled mat-mats (shaders/common/seg_types.glsl, constants 7-10), LANE_T0..3 on the tree path
/// (constants 5-8): each segment's type id, unused segments segment 0's, so that each
/// segment's call holds one dequantizer.
pub fn seg_types(segs: &[(u32, GgmlType)]) -> [u32; 4] {
    let mut out = [segs.first().map_or(0, |s| s.1.id()); 4];
    for (o, s) in out.iter_mut().zip(segs) {
        *o = s.1.id();
    }
    out
}

/// Puts the `any` variant's SEG_T0..3 (`seg_types`) after `spec`'s shape constants (ids 7-10)
/// and names the pipeline for them.
pub fn with_seg_types(spec: &mut Vec<u32>, name: &mut String, segs: &[(u32, GgmlType)]) {
    let t = seg_types(segs);
    spec.resize(7, 0);
    spec.extend(t);
    name.push_str(&format!("_ty{}.{}.{}.{}", t[0], t[1], t[2], t[3]));
}

/// The `any` variant's lane-path constants LANE_T0..3 (shaders/matvec.comp) for segments
/// `segs` (rows, type) on a kernel of `rows` rows per invocation: each segment's type id
/// (unused segments segment 0's), so that each invocation runs the register form of its rows'
/// type. `None` where an invocation's rows would mix types: a type changes at a row that is
/// not a multiple of `rows`, or a GLU product's gate and up differ (each invocation reads both).
pub fn lane_types(segs: &[(u32, GgmlType)], glu: bool, rows: u32) -> Option<[u32; 4]> {
    let first = segs.first()?.1;
    if segs.len() > MAX_SEG || (glu && segs.iter().any(|s| s.1 != first)) {
        return None;
    }
    let mut start = 0u32;
    let mut out = [first.id(); 4];
    for (i, s) in segs.iter().enumerate() {
        if i > 0 && s.1 != segs[i - 1].1 && (rows == 0 || !start.is_multiple_of(rows)) {
            return None;
        }
        out[i] = s.1.id();
        start = start.checked_add(s.0)?;
    }
    Some(out)
}

/// Tokens per workgroup of the lane path's mat-mat over segments `segs` (rows, type), from the
/// device's `base` (`Choices::matmul_nt`, 16 on CPU implementations): twice that for one weight
/// type whose dequantization costs most per unit (Q5_0, Q5_1, Q8_0 and the K-quants), which
/// each dequantized unit then serves; `base` for Q4_0/Q4_1 (on lavapipe their products were
/// slower with 32: the per-token accumulators in scratch memory grow with NT), F32/F16 and
/// mixed types. Measured: docs/benchmarks.md, "The lane mat-mat's tokens per type".
pub fn lane_matmul_nt(segs: &[(u32, GgmlType)], base: u32) -> u32 {
    use GgmlType::{Q2_K, Q3_K, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0};
    match one_type(segs) {
        Some(Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K) => base * 2,
        _ => base,
    }
}

/// Whether the shaders can read weights of type `ty`.
pub fn supported(ty: GgmlType) -> bool {
    shaders::WEIGHT_TYPE_IDS.contains(&ty.id())
}

/// A kernel asked for inside `Kernels::all_at_once`, its pipeline not created yet.
struct Pending {
    kernel: Rc<GpuKernel>,
    spirv: &'static [u8],
    full_subgroups: bool,
}

/// Kernels of one device, built on first use.
pub struct Kernels {
    pub(super) dev: Arc<Device>,
    cache: PipelineCache,
    built: RefCell<HashMap<String, Rc<GpuKernel>>>,
    /// Inside `all_at_once`: the kernels asked for so far whose pipelines it creates at its end.
    pending: RefCell<Option<Vec<Pending>>>,
    /// Threads `all_at_once` creates pipelines on.
    pipeline_threads: usize,
    /// (workgroup size, rows per workgroup, path: `shapes::PATH_*`) of the mat-vec and mat-mat
    /// variants, fitted to the device's limits.
    matvec_shape: [u32; 3],
    matmul_shape: [u32; 3],
    /// Tokens per workgroup of the mat-mat (`Choices::matmul_nt`).
    matmul_nt: u32,
    /// Prompt batches of more than `matmul_nt` tokens use the tiled mat-mat (tiled.rs).
    pub(super) prompt_tiled: Cell<bool>,
    /// The form of the tiled mat-mat (`Tuning::tiled_kernel`, default the scalar one).
    pub(super) tiled_form: Cell<TiledKernel>,
    /// The sampler in two stages (prefilter, selection) or in one (`Choices::sampler_two_stage`).
    sample_two_stage: Cell<bool>,
    /// Prompt batches off the tiled path take the lanes attention (`Choices::prompt_attn_lanes`)
    /// instead of the one-row kernel.
    pub(super) prompt_lanes: Cell<bool>,
    /// The lanes attention reads K and V through texel views where they reach the cache
    /// (`Kernels::kv_texel`); on with `texel`, off only in tests (the storage form).
    pub(super) lanes_texel: Cell<bool>,
    limits: Limits,
    /// `Device::texel_weights`: the mat-vec family's layout has the texel binding, and the
    /// `matvec.comp` variants read weights through it.
    texel: bool,
}

impl Kernels {
    /// The kernels of `dev` with the shapes its choices name (`Choices::matvec`,
    /// `Choices::matmul`: the kind's, or those `Tuning::matvec` / `Tuning::matmul` ask for).
    pub fn new(dev: &Arc<Device>) -> Result<Kernels> {
        Self::with_shapes(dev, dev.choices.matvec, dev.choices.matmul)
    }

    /// Kernels with explicit mat-vec / mat-mat shapes (workgroup size, rows per workgroup,
    /// path), fitted to the device's limits; tests use it to cover every path on one device.
    pub fn with_shapes(dev: &Arc<Device>, matvec: [u32; 3], matmul: [u32; 3]) -> Result<Kernels> {
        let limits = Limits::of(dev);
        let matmul_nt = dev.choices.matmul_nt;
        Ok(Kernels {
            dev: dev.clone(),
            cache: PipelineCache::new(dev)?,
            built: RefCell::new(HashMap::new()),
            pending: RefCell::new(None),
            pipeline_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            matvec_shape: shapes::fit(matvec, 1, &limits),
            matmul_shape: shapes::fit(matmul, matmul_nt, &limits),
            matmul_nt,
            limits,
            prompt_tiled: Cell::new(dev.choices.prompt_tiled),
            tiled_form: Cell::new(dev.tuning.tiled_kernel.unwrap_or(TiledKernel::Scalar)),
            sample_two_stage: Cell::new(dev.choices.sampler_two_stage),
            prompt_lanes: Cell::new(dev.choices.prompt_attn_lanes),
            lanes_texel: Cell::new(dev.texel_weights()),
            texel: dev.texel_weights(),
        })
    }

    /// Tokens per workgroup of the prompt mat-mat.
    #[cfg(test)]
    pub fn matmul_nt(&self) -> u32 {
        self.matmul_nt
    }

    /// The prompt mat-mat shape (workgroup size, rows per workgroup, path) in use.
    #[cfg(test)]
    pub fn matmul_shape(&self) -> [u32; 3] {
        self.matmul_shape
    }

    /// The decode mat-vec shape (workgroup size, rows per workgroup, path) in use.
    pub fn matvec_shape(&self) -> [u32; 3] {
        self.matvec_shape
    }

    /// Forces the prompt path: the tiled mat-mat (`true`) or the lane mat-mat, for ops built
    /// after this call (tests cover both on one device).
    #[cfg(test)]
    pub fn set_prompt_tiled(&self, on: bool) {
        self.prompt_tiled.set(on);
    }

    /// Forces the prompt attention off the tiled path: the lanes kernel (`true`, where the
    /// device can run it) or the one-row kernel, for ops built after this call.
    #[cfg(test)]
    pub fn set_prompt_lanes(&self, on: bool) {
        self.prompt_lanes.set(on);
    }

    /// Forces the lanes attention's K/V reads: texel views (`true`, where `kv_texel` allows)
    /// or storage buffers, for ops built after this call (tests cover both on one device).
    #[cfg(test)]
    pub fn set_lanes_texel(&self, on: bool) {
        self.lanes_texel.set(on && self.texel);
    }

    /// Forces the sampler's path, two stages (`true`) or one, for ops built after this call
    /// (tests run the sampler's cases on both paths on one device).
    #[cfg(test)]
    pub fn set_sample_two_stage(&self, on: bool) {
        self.sample_two_stage.set(on);
    }

    /// Forces the form of the tiled mat-mat for ops built after this call (tests run every
    /// form on one device).
    #[cfg(test)]
    pub fn set_tiled_form(&self, form: TiledKernel) {
        self.tiled_form.set(form);
    }

    pub(super) fn get(
        &self,
        name: &str,
        spirv: &'static [u8],
        counts: &[u32],
        push: u32,
        spec: &[u32],
    ) -> Result<Rc<GpuKernel>> {
        self.get_in(name, spirv, counts, None, push, spec)
    }

    /// Whether the mat-vec family's descriptor sets have the texel binding (then its ops write
    /// the weight segments there too).
    pub fn texel_weights(&self) -> bool {
        self.texel
    }

    /// A kernel of the mat-vec family (mat-vec, mat-mat, tiled mat-mat): all on one layout, so
    /// an op's one descriptor set serves each of them.
    pub(super) fn get_matvec(
        &self,
        name: &str,
        spirv: &'static [u8],
        spec: &[u32],
    ) -> Result<Rc<GpuKernel>> {
        if self.texel {
            let (b, t) = (&MATVEC_TEXEL_BINDINGS, Some(MATVEC_TEXEL_BINDING));
            self.get_in(name, spirv, b, t, MATVEC_PUSH, spec)
        } else {
            self.get_in(name, spirv, &MATVEC_BINDINGS, None, MATVEC_PUSH, spec)
        }
    }

    pub(super) fn get_in(
        &self,
        name: &str,
        spirv: &'static [u8],
        counts: &[u32],
        texel: Option<u32>,
        push: u32,
        spec: &[u32],
    ) -> Result<Rc<GpuKernel>> {
        if let Some(k) = self.built.borrow().get(name) {
            return Ok(k.clone());
        }
        // The subgroup mat-vec and the staged attention run with full subgroups where the
        // device can promise them.
        let full = (name.starts_with("matvecsg")
            || name.starts_with("attention_staged")
            || name.starts_with("attention_lanes"))
            && self.dev.features.full_subgroups
            && spec[0].is_multiple_of(self.dev.features.max_subgroup.max(1));
        let k = match self.pending.borrow_mut().as_mut() {
            Some(pending) => {
                let k = Rc::new(GpuKernel::unbuilt(
                    &self.dev,
                    &self.cache,
                    name,
                    counts,
                    texel,
                    push,
                    spec,
                )?);
                pending.push(Pending {
                    kernel: k.clone(),
                    spirv,
                    full_subgroups: full,
                });
                k
            }
            None => Rc::new(GpuKernel::new(
                &self.dev,
                &self.cache,
                name,
                spirv,
                counts,
                texel,
                push,
                spec,
                full,
            )?),
        };
        self.built.borrow_mut().insert(name.to_string(), k.clone());
        Ok(k)
    }

    /// Runs `build` (which asks for kernels and writes descriptor sets, recording nothing: an
    /// engine's graph) with pipeline creation held back, then creates the pipelines of every
    /// kernel it asked for at once, on as many threads as the machine has (drivers compile in
    /// `vkCreateComputePipelines`, one pipeline per call and thread). Nested calls run inside
    /// the outer one. On an error, the kernels without pipelines are forgotten.
    pub fn all_at_once<T>(&self, build: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.pending.borrow().is_some() {
            return build();
        }
        *self.pending.borrow_mut() = Some(Vec::new());
        let out = build();
        let pending = self.pending.borrow_mut().take().unwrap_or_default();
        let out = out.and_then(|v| self.create_pending(&pending).map(|()| v));
        if out.is_err() {
            let mut built = self.built.borrow_mut();
            for p in &pending {
                if p.kernel.pipeline() == ash::vk::Pipeline::null() {
                    built.remove(&p.kernel.name);
                }
            }
        }
        out
    }

    /// Creates the pipelines of `pending` (`all_at_once`); the first error, if any.
    fn create_pending(&self, pending: &[Pending]) -> Result<()> {
        let t0 = std::time::Instant::now();
        let jobs: Vec<PipelineJob<'_>> = pending
            .iter()
            .map(|p| PipelineJob {
                name: &p.kernel.name,
                spirv: p.spirv,
                layout: p.kernel.layout.pipeline_layout,
                spec: &p.kernel.spec,
                full_subgroups: p.full_subgroups,
            })
            .collect();
        let created = self.cache.create_all(&jobs, self.pipeline_threads);
        log::debug!(
            "vulkan: {} pipelines created in {:.0} ms on up to {} threads",
            jobs.len(),
            t0.elapsed().as_secs_f64() * 1e3,
            self.pipeline_threads
        );
        let mut first_err = None;
        for (p, r) in pending.iter().zip(created) {
            match r {
                Ok(pipeline) => p.kernel.set_pipeline(pipeline),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The prompt mat-mat (`matmul_nt` tokens per workgroup) for weight segments `segs` (rows,
    /// type; mixed types: the `any` variant) of a product that is GLU or not; `fixed`: what its
    /// pipeline fixes (`matmul_fixed`).
    pub fn matmul(&self, segs: &[(u32, GgmlType)], glu: bool, fixed: u32) -> Result<Rc<GpuKernel>> {
        let [wg, rows, path] = self.matmul_shape;
        let nt = match self.dev.tuning.matmul_nt {
            None if path == PATH_LANE => lane_matmul_nt(segs, self.matmul_nt),
            _ => self.matmul_nt,
        };
        self.matvec_shaped(true, segs, glu, &[wg, rows, path, nt, fixed])
    }

    /// The mat-mat's spec constant FIXED for an op over `segs` (rows, type) with push `flags`,
    /// input width `k` and x read from float `x_off` every `x_stride` floats: where the lane
    /// path runs `lane_rows_batch` (the typed variants, and the `any` variant where
    /// `lane_types` gives its segments' types) its F_GLU and F_NORM and whether its units are
    /// whole and vec4-aligned (`X_WHOLE`), so lavapipe compiles no code for what the op does
    /// not do (gallivm runs both sides of a branch); elsewhere `FIXED_PUSH`, one pipeline for
    /// every op.
    pub fn matmul_fixed(
        &self,
        segs: &[(u32, GgmlType)],
        flags: u32,
        k: u32,
        x_off: u32,
        x_stride: u32,
    ) -> u32 {
        let [_, rows, path] = self.matmul_shape;
        let glu = flags & F_GLU != 0;
        let registers = one_type(segs).is_some() || lane_types(segs, glu, rows).is_some();
        if path != PATH_LANE || !registers {
            return FIXED_PUSH;
        }
        let whole = k.is_multiple_of(32) && (x_off | x_stride).is_multiple_of(4);
        (flags & (F_GLU | F_NORM)) | if whole { X_WHOLE } else { 0 }
    }

    /// Whether the decode mat-vec over weight segments `segs` (rows, type) runs as one dispatch
    /// per segment (`OpKind::Matvec`'s `parts`, each a one-segment kernel over its segment's
    /// rows): on the lane path with texel weights (CPU implementations), for a product of
    /// several segments, not GLU, taller than `shapes::TALL_ROWS` rows (a matrix in pieces: an
    /// LM head larger than one binding, Qwen2.5's). On lavapipe a kernel built for two segments
    /// cost 1.25-1.4x the CPU time of one-segment kernels over the same rows, whether it picked
    /// the segment per row or per invocation (docs/vulkan.md, "The LM head in pieces"); for
    /// such a product the extra dispatch is a small share, where the QKV's three segments
    /// (under 1 ms) would pay two more stages. GPUs keep one dispatch.
    pub fn split_per_segment(&self, segs: &[(u32, GgmlType)], glu: bool) -> bool {
        let rows: u64 = segs.iter().map(|s| u64::from(s.0)).sum();
        self.texel
            && self.matvec_shape[2] == PATH_LANE
            && segs.len() > 1
            && !glu
            && rows > u64::from(shapes::TALL_ROWS)
    }

    /// The decode mat-vec for a `rows` × `k` product over weight segments `segs` (rows, type),
    /// GLU or not (`shapes::for_matrix`: narrower workgroups for very tall or short matrices on
    /// the subgroup path).
    pub fn matvec_decode(
        &self,
        segs: &[(u32, GgmlType)],
        glu: bool,
        rows: u32,
        k: u32,
    ) -> Result<Rc<GpuKernel>> {
        let spec = shapes::for_matrix(self.matvec_shape, rows, k, &self.limits);
        self.matvec_shaped(false, segs, glu, &spec)
    }

    /// A `matvec.comp`-family kernel for weight segments `segs` (rows, type); `spec`:
    /// (workgroup size, rows, path) and for the mat-mat (`batch`) NT and FIXED. The `any`
    /// variant on the lane path gets its segments' types as constants 5-8 where `lane_types`
    /// allows (LANE_T0..3: the register forms), else reads them from the push constants; on
    /// the tree path it always gets them there (`seg_types`), on the subgroup path as
    /// constants 7-10 (`with_seg_types`).
    fn matvec_shaped(
        &self,
        batch: bool,
        segs: &[(u32, GgmlType)],
        glu: bool,
        spec: &[u32],
    ) -> Result<Rc<GpuKernel>> {
        let ty = one_type(segs);
        let nseg = segs.len() as u32;
        let lane = match ty {
            None if spec[2] == PATH_LANE => lane_types(segs, glu, spec[1]),
            _ => None,
        };
        // The tree path's `any` variant: the same constants, always (`dq_unit`).
        let tree = (ty.is_none() && spec[2] == PATH_TREE).then(|| seg_types(segs));
        let sg = !batch && spec[2] == PATH_SUBGROUP;
        // Texel weights: `matvec.comp` built with TEXEL, the segment count a constant (SEGS).
        // Decode only: the mat-mat reads storage buffers, which the texel layout has
        // too (with texel reads it was 1.08-1.18x slower on lavapipe, docs/vulkan.md).
        let texel = self.texel && !sg && !batch;
        let prefix = match (batch, sg, texel) {
            (true, _, _) => "matmul",
            (false, true, _) => "matvecsg",
            (false, false, false) => "matvec",
            (false, false, true) => "matvect",
        };
        let (name, spirv) = match ty {
            Some(t) => {
                let code = match prefix {
                    "matmul" => shaders::matmul_for(t.id()),
                    "matvecsg" => shaders::matvecsg_for(t.id()),
                    "matvect" => shaders::matvect_for(t.id()),
                    _ => shaders::matvec_for(t.id()),
                };
                let code = code.ok_or_else(|| {
                    VkError::Unsupported(format!("weights of type {t} on the GPU"))
                })?;
                (format!("{prefix}_{t}"), code)
            }
            None => (
                format!("{prefix}_any"),
                match prefix {
                    // Its weight types fixed by constants: the variant built without glslc's
                    // optimizer, far cheaper for lavapipe to create (build.rs: LANE_ANY).
                    "matmul" if lane.is_some() => shaders::MATMUL_ANY_LANE,
                    "matmul" => shaders::MATMUL_ANY,
                    "matvecsg" => shaders::MATVECSG_ANY,
                    "matvect" => shaders::MATVECT_ANY,
                    _ => shaders::MATVEC_ANY,
                },
            ),
        };
        let mut name = format!("{name}_{}x{}x{}", spec[0], spec[1], spec[2]);
        if let [_, _, _, nt, fixed] = spec {
            name = format!("{name}_t{nt}_f{fixed}");
        }
        let mut spec = spec.to_vec();
        if texel {
            let nseg = nseg.clamp(1, MAX_SEG as u32);
            spec.push(nseg);
            name = format!("{name}_s{nseg}");
        }
        if let Some(t) = lane.or(tree) {
            // Constants 3 and 4 (NT and FIXED, or SEGS) as they are, then LANE_T0..3.
            spec.resize(5, 0);
            spec.extend(t);
            let tag = if lane.is_some() { "l" } else { "ty" };
            name = format!("{name}_{tag}{}.{}.{}.{}", t[0], t[1], t[2], t[3]);
        }
        if sg && ty.is_none() {
            with_seg_types(&mut spec, &mut name, segs);
        }
        self.get_matvec(&name, spirv, &spec)
    }

    /// The embedding lookup for a table of type `ty`: the type is the pipeline's constant TY
    /// (shaders/embed.comp), so it compiles one dequantizer, not every type's.
    pub fn embed(&self, ty: GgmlType) -> Result<Rc<GpuKernel>> {
        self.get(
            &format!("embed_{ty}"),
            shaders::EMBED,
            &[1, 1, MAX_SEG as u32, 1],
            11,
            &[64, ty.id()],
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
    /// The one-row decode attention with RoPE and the KV write folded in (shaders/attention.comp,
    /// `ROPE`): bindings state, QKV, K cache, V cache, out, RoPE table; the attention's push
    /// words, then n_rot and neox.
    pub fn attention_rope(&self) -> Result<Rc<GpuKernel>> {
        self.get(
            "attention_rope",
            shaders::ATTENTION_ROPE,
            &[1; 6],
            ATTN_PUSH + 2,
            &[64],
        )
    }
    /// The sampler: on the two-stage path the prefilter over the vocabulary's slices and the
    /// selection over their candidates (one workgroup); on the one-stage path no prefilter and
    /// `sample_one`, one workgroup over the whole vocabulary (the same shader, spec constant
    /// ONE_STAGE). The selection comes three times, from the same shader: for every sampler,
    /// compiled for greedy decoding only (`_greedy`, spec constant GREEDY) and for top-k-bounded
    /// sampling only (`_topk`, spec constant TOPK); an op records the one `sample_mode` names
    /// (`ops::SampleOps`).
    pub fn sample(&self) -> Result<SampleKernels> {
        let two = self.sample_two_stage.get();
        let pre = if two {
            Some(self.get(
                "sample_pre",
                shaders::SAMPLE_PRE,
                &SAMPLE_BINDINGS,
                2,
                &[128],
            )?)
        } else {
            None
        };
        let name = if two { "sample" } else { "sample_one" };
        let select = |mode: SampleMode| {
            let (suffix, greedy, top_k) = match mode {
                SampleMode::Any => ("", 0, 0),
                SampleMode::Greedy => ("_greedy", 1, 0),
                SampleMode::TopK => ("_topk", 0, 1),
            };
            let spec = [SAMPLE_K_MAX as u32, !two as u32, greedy, top_k];
            self.get(
                &format!("{name}{suffix}"),
                shaders::SAMPLE,
                &SAMPLE_BINDINGS,
                2,
                &spec,
            )
        };
        Ok(SampleKernels {
            pre,
            any: select(SampleMode::Any)?,
            greedy: select(SampleMode::Greedy)?,
            top_k: select(SampleMode::TopK)?,
        })
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

/// The sampler's kernels (`Kernels::sample`), all on one descriptor set layout.
pub struct SampleKernels {
    /// The prefilter (two stages), `None` on the one-stage path.
    pub pre: Option<Rc<GpuKernel>>,
    /// The selection for every sampler (the temperature read at run time).
    pub any: Rc<GpuKernel>,
    /// The selection compiled for greedy decoding only (temperature <= 0).
    pub greedy: Rc<GpuKernel>,
    /// The selection compiled for top-k-bounded sampling only (`SampleMode::TopK`).
    pub top_k: Rc<GpuKernel>,
}

/// Which of the sampler's selection pipelines serves a set of parameters (`sample_mode`); the
/// engines record a step with each and submit the one the parameters written last name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleMode {
    /// Every sampler (the temperature and the filters read at run time): top-p or min-p
    /// without a top-k, a top-k over `SAMPLE_K_MAX`, sampling from the whole vocabulary.
    Any = 0,
    /// Greedy decoding: the temperature is <= 0 (as shaders/sample.comp tests it).
    Greedy = 1,
    /// Sampling under a top-k of 1 to `SAMPLE_K_MAX` (the chat defaults' family, whatever the
    /// top-p, min-p and penalty): the list of the top k built in shared memory.
    TopK = 2,
}

impl SampleMode {
    /// Every mode, in the order of their index (`as usize`).
    pub const ALL: [SampleMode; 3] = [SampleMode::Any, SampleMode::Greedy, SampleMode::TopK];
}

/// The selection pipeline for `p` (`SampleMode`): greedy when the temperature is <= 0, the
/// top-k-bounded one when 1 <= top_k <= `SAMPLE_K_MAX`, else the one for every sampler.
pub fn sample_mode(p: &crate::engine::SamplingParams) -> SampleMode {
    if p.temperature <= 0.0 {
        SampleMode::Greedy
    } else if (1..=SAMPLE_K_MAX).contains(&p.top_k) {
        SampleMode::TopK
    } else {
        SampleMode::Any
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

/// The device state of an engine fed exactly `history` (every token fed since a reset, in
/// order) with nothing sampled since: n_past and the ring's count are its length, the ring
/// holds its last `HIST` tokens where the kernels put them, every other word is 0 (the next
/// batch or step sets the position; the sampler writes the token and its verdict). `&[]` is a
/// fresh engine's state. `VulkanEngine::keep_prefix` writes this to rewind an engine.
pub fn state_after(history: &[u32]) -> Vec<u32> {
    let mut s = vec![0u32; STATE_WORDS];
    let n = history.len();
    s[S_NPAST] = n as u32;
    s[S_NHIST] = n as u32;
    for (j, &t) in history.iter().enumerate().skip(n.saturating_sub(HIST)) {
        s[S_HIST + j % HIST] = t;
    }
    s
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn the_state_after_a_history_holds_its_last_tokens_in_the_ring() {
        assert_eq!(state_after(&[]), vec![0; STATE_WORDS], "fresh: all zero");
        let s = state_after(&[7, 8, 9]);
        assert_eq!(&s[..S_HIST + 4], &[3, 0, 0, 3, 7, 8, 9, 0]);
        assert_eq!(s[S_BAD], 0);
        // Past HIST tokens the ring wraps: token j sits at j % HIST, the oldest are gone.
        let long: Vec<u32> = (1000..1000 + HIST as u32 + 10).collect();
        let s = state_after(&long);
        assert_eq!(
            (s[S_NPAST], s[S_NHIST]),
            (long.len() as u32, long.len() as u32)
        );
        for (j, &t) in long.iter().enumerate().skip(10) {
            assert_eq!(s[S_HIST + j % HIST], t, "token {j}");
        }
        assert_eq!(s.len(), STATE_WORDS);
    }
}
