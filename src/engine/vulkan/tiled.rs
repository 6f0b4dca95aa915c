//! The prompt kernels: the tiled mat-mat (`shaders/matmul_tiled.comp`, or its vec4 form
//! `shaders/matmul_tiled_vec4.comp`: `Tuning::tiled_kernel`) with its tile shapes, which of
//! them a device can run (shared memory, workgroup size) and which one a batch of `n`
//! tokens over `m` output rows uses (batches of at most the mat-mat's NT tokens, 8 on GPUs, keep it);
//! and the prompt attention (`shaders/attention_prompt.comp`), query rows per workgroup; off
//! the tiled path on CPU implementations, the lanes attention (`shaders/attention_lanes.comp`,
//! one query row per invocation of a one-subgroup workgroup).

use std::rc::Rc;

use ash::vk;

use super::buffer::BufRange;
use super::command::CmdBuffer;
use super::error::{Result, VkError};
use super::kernels::{
    one_type, with_seg_types, Kernels, ATTN_BINDINGS, ATTN_PUSH, ATTN_TEXEL_BINDING,
    ATTN_TEXEL_BINDINGS,
};
use super::pipeline::GpuKernel;
use super::shaders;
use super::shapes::Limits;
use super::tuning::TiledKernel;
use crate::quant::GgmlType;

/// One tile shape: specialization constants 0..6 of the shader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub name: &'static str,
    /// Invocations per workgroup.
    pub wg: u32,
    /// Weight rows x tokens x k per step.
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    /// Rows x tokens each invocation accumulates.
    pub tm: u32,
    pub tn: u32,
}

/// Small, medium and large tiles (the sizes llama.cpp's `mul_mm` uses without cooperative
/// matrices, with f32 shared tiles; the large one has 256 invocations of 8x8 outputs so its 64
/// f32 accumulators stay in registers, and its 32 KiB of tiles fit lavapipe as well).
pub const TILES: [Tile; 3] = [
    Tile {
        name: "s",
        wg: 64,
        bm: 32,
        bn: 32,
        bk: 32,
        tm: 4,
        tn: 4,
    },
    Tile {
        name: "m",
        wg: 128,
        bm: 64,
        bn: 64,
        bk: 32,
        tm: 4,
        tn: 8,
    },
    Tile {
        name: "l",
        wg: 256,
        bm: 128,
        bn: 128,
        bk: 32,
        tm: 8,
        tn: 8,
    },
];

impl Tile {
    pub fn spec(&self) -> [u32; 6] {
        [self.wg, self.bm, self.bn, self.bk, self.tm, self.tn]
    }

    /// Shared memory the shader declares for this shape (the f32 tiles As and Bs).
    pub fn shared_bytes(&self) -> u32 {
        4 * self.bk * (self.bm + self.bn)
    }

    /// Whether the shape is consistent with the layout rules of `kernel`'s shader and within
    /// `limits`. The vec4 form also needs TM and TN multiples of 4 (vec4 reads), BM a multiple
    /// of 32 (its k swizzle of As spans 8 row groups) and the same number of weight quarters for
    /// every invocation.
    pub fn fits_for(&self, kernel: TiledKernel, limits: &vk::PhysicalDeviceLimits) -> bool {
        let vec4 = match kernel {
            TiledKernel::Scalar => true,
            TiledKernel::Vec4 | TiledKernel::Vec4Prefetch => {
                self.tm.is_multiple_of(4)
                    && self.tn.is_multiple_of(4)
                    && self.bm.is_multiple_of(32)
                    && (4 * self.bm * (self.bk / 32)).is_multiple_of(self.wg)
            }
        };
        vec4 && self.fits(limits)
    }

    /// Whether the shape is consistent (the scalar shader's layout rules) and within `limits`.
    pub fn fits(&self, limits: &vk::PhysicalDeviceLimits) -> bool {
        let consistent = (self.bm / self.tm) * (self.bn / self.tn) == self.wg
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && self.tm.is_multiple_of(2)
            && self.wg.is_multiple_of(self.bn)
            && self.bk.is_multiple_of(32)
            && self.bk * self.bm >= self.wg
            && (self.bk / (self.wg / self.bn)).is_multiple_of(4);
        consistent
            && self.shared_bytes() <= limits.max_compute_shared_memory_size
            && self.wg <= limits.max_compute_work_group_invocations
            && self.wg <= limits.max_compute_work_group_size[0]
    }
}

/// The tiled kernels of one weight type (or of the `any` variant), one per usable tile shape.
pub struct Tiled {
    /// Smallest first; never empty.
    kernels: Vec<(Tile, Rc<GpuKernel>)>,
    forced: Option<usize>,
}

impl Tiled {
    /// The tile for `m` output rows and `n` tokens: small when either is at most 32, medium
    /// when at most 64, else large (llama.cpp's rule) — among the shapes the device runs.
    pub fn pick(&self, m: u32, n: u32) -> &(Tile, Rc<GpuKernel>) {
        if let Some(i) = self.forced {
            return &self.kernels[i];
        }
        let want = if m <= 32 || n <= 32 {
            32
        } else if m <= 64 || n <= 64 {
            64
        } else {
            u32::MAX
        };
        self.kernels
            .iter()
            .rev()
            .find(|(t, _)| t.bm <= want && t.bn <= want)
            .unwrap_or(&self.kernels[0])
    }

    /// Records the dispatch for `rows` output rows (per matrix with SwiGLU) and `n_tok` tokens.
    pub fn record(
        &self,
        cmd: &mut CmdBuffer,
        set: vk::DescriptorSet,
        push: &[u32],
        rows: u32,
        n_tok: u32,
        glu: bool,
    ) {
        let (tile, kernel) = self.pick(rows, n_tok);
        let rows_per_tile = if glu { tile.bm / 2 } else { tile.bm };
        cmd.dispatch(
            kernel,
            set,
            push,
            [rows.div_ceil(rows_per_tile), n_tok.div_ceil(tile.bn), 1],
        );
    }
}

impl Kernels {
    /// The tiled prompt kernels for weight segments `segs` (rows, type): the variant of their
    /// one type, or where they mix types the `any` variant with each segment's type a constant
    /// (`kernels::with_seg_types`); `None` when prompts use the mat-vec (see `prompt_tiled`).
    pub fn tiled(&self, segs: &[(u32, GgmlType)]) -> Result<Option<Rc<Tiled>>> {
        if !self.prompt_tiled.get() {
            return Ok(None);
        }
        // `Tuning::tiled_kernel` (`PIGPU_VK_TILED`): which form of the shader.
        let form = self.tiled_form.get();
        let scalar = form == TiledKernel::Scalar;
        let (prefix, any) = if scalar {
            ("tiled", shaders::TILED_ANY)
        } else {
            ("tiledv", shaders::TILEDV_ANY)
        };
        let pick = |id| {
            if scalar {
                shaders::tiled_for(id)
            } else {
                shaders::tiledv_for(id)
            }
        };
        let ty = one_type(segs);
        let (name, spirv) = match ty {
            Some(t) => (
                format!("{prefix}_{t}"),
                pick(t.id()).ok_or_else(|| {
                    VkError::Unsupported(format!("weights of type {t} on the GPU"))
                })?,
            ),
            None => (format!("{prefix}_any"), any),
        };
        // `Tuning::tile` (`PIGPU_VK_TILE=s|m|l`): this tile for every prompt mat-mat, if it fits.
        let forced = self.dev.tuning.tile;
        let mut kernels = Vec::new();
        for tile in TILES.iter().filter(|t| t.fits_for(form, &self.dev.limits)) {
            let mut spec = tile.spec().to_vec();
            let mut kname = format!("{name}_{}", tile.name);
            if !scalar {
                let pf = form == TiledKernel::Vec4Prefetch;
                spec.push(u32::from(pf));
                if pf {
                    kname.push_str("_pf");
                }
            }
            if ty.is_none() {
                with_seg_types(&mut spec, &mut kname, segs);
            }
            let k = self.get_matvec(&kname, spirv, &spec)?;
            kernels.push((*tile, k));
        }
        if kernels.is_empty() {
            return Ok(None);
        }
        let forced = forced.and_then(|f| kernels.iter().position(|(t, _)| t.name == f));
        Ok(Some(Rc::new(Tiled { kernels, forced })))
    }
}

/// The prompt attention kernel, its query rows (tokens) per workgroup and the query heads each
/// workgroup serves (1 but for the lanes kernel, whose workgroup takes several heads of one KV
/// head's group).
#[derive(Clone)]
pub struct PromptAttention {
    pub kernel: Rc<GpuKernel>,
    pub rows: u32,
    pub heads: u32,
    /// The kernel's own descriptor set where its layout is not the attention op's: the lanes
    /// kernel reading K and V through texel views (`ATTN_TEXEL_BINDINGS`; the op's builder
    /// writes it). `None`: the op's set.
    pub set: Option<vk::DescriptorSet>,
    /// Keys per tile where the kernel can split the KV range over workgroups
    /// (`shaders/attention_prompt.comp`); `None`: it cannot (the lanes kernel).
    pub split_tile: Option<u32>,
}

/// Invocations, query rows and keys per tile of the prompt attention; the shared memory it
/// declares for head dimension `d` (shaders/attention_prompt.comp: Qs, Ks, Vs, Ps, alpha_s, l_s).
pub(super) const ATTN_WG: u32 = 128;
pub(super) const ATTN_BR: u32 = 16;
pub(super) fn attn_shared_bytes(d: u32, bc: u32) -> u32 {
    4 * (ATTN_BR * d + 2 * bc * (d / 2 + 1) + ATTN_BR * bc + 2 * ATTN_BR)
}

/// Largest subgroup the lanes attention serves (shaders/attention_lanes.comp: `LANES` names
/// lanes 0..=15), and its keys per step.
pub(super) const LANES_MAX_SG: u32 = 16;
pub(super) const LANES_KB: u32 = 2;
/// The most query-row floats (heads × head size) one invocation of the lanes attention keeps
/// (its query rows and outputs are unrolled private arrays: past this lavapipe's LLVM compiles
/// long and the rows leave the L1 cache).
pub(super) const LANES_MAX_ROW_FLOATS: u32 = 512;

/// Query heads per workgroup of the lanes attention for a grouped-query group of `group` query
/// heads per KV head and head size `d`: the largest divisor of `group` whose rows fit
/// `LANES_MAX_ROW_FLOATS` (1 at least), so a K or V word loaded and broadcast once serves that
/// many heads.
pub(super) fn lanes_heads(group: u32, d: u32) -> u32 {
    (1..=group.max(1))
        .rev()
        .find(|g| group.is_multiple_of(*g) && g * d <= LANES_MAX_ROW_FLOATS)
        .unwrap_or(1)
}

/// The lanes attention's workgroup (= query rows) on a device with subgroups of
/// `min_sg..=max_sg` lanes and `ballot` (subgroupBroadcast), for head dimension `d`, or `None`
/// where it cannot run: the subgroup size not fixed, not a power of two or over
/// `LANES_MAX_SG`, no ballot, `d` odd, 0 or over 256, or a workgroup past `max_wg`.
pub(super) fn lanes_shape(
    (min_sg, max_sg): (u32, u32),
    ballot: bool,
    max_wg: u32,
    d: u32,
) -> Option<u32> {
    let ok = ballot
        && min_sg == max_sg
        && min_sg.is_power_of_two()
        && min_sg <= LANES_MAX_SG
        && min_sg <= max_wg
        && d > 0
        && d <= 256
        && d.is_multiple_of(2);
    ok.then_some(min_sg)
}

impl Kernels {
    /// The prompt attention for head dimension `d`: on the tiled path the tiled kernel with 32
    /// keys per tile (16 where shared memory is short); off it, where `prompt_lanes` (CPU
    /// implementations) and the device allow (`lanes_shape`), the lanes kernel, one query row
    /// per invocation and head, `lanes_heads(group, d)` heads of one KV head per workgroup
    /// (`group`: query heads per KV head), reading K and V through texel views where `kv_texel`
    /// (`Kernels::kv_texel` of the op's caches); else `None` (the one-row kernel serves prompts
    /// too): `d` odd, or no tile fits the device.
    pub fn prompt_attention(
        &self,
        d: u32,
        group: u32,
        kv_texel: bool,
    ) -> Result<Option<PromptAttention>> {
        if !self.prompt_tiled.get() {
            return self.lanes_attention(d, group, kv_texel);
        }
        if !d.is_multiple_of(2) || d == 0 {
            return Ok(None);
        }
        let limits = &self.dev.limits;
        if ATTN_WG > limits.max_compute_work_group_invocations {
            return Ok(None);
        }
        let Some(bc) = [32, 16]
            .into_iter()
            .find(|&bc| attn_shared_bytes(d, bc) <= limits.max_compute_shared_memory_size)
        else {
            return Ok(None);
        };
        let kernel = self.get(
            &format!("attention_prompt_{d}_{bc}"),
            shaders::ATTENTION_PROMPT,
            &ATTN_BINDINGS,
            ATTN_PUSH,
            &[ATTN_WG, ATTN_BR, bc, d],
        )?;
        Ok(Some(PromptAttention {
            kernel,
            rows: ATTN_BR,
            heads: 1,
            set: None,
            split_tile: Some(bc),
        }))
    }

    /// Whether the lanes attention may read the caches `kc` and `vc` through `R32_UINT` texel
    /// views: where the device's buffers have texel usage (`Device::texel_weights`, which
    /// also gives the descriptor pool its texel descriptors), each view starts at the texel
    /// offset alignment and holds at most `maxTexelBufferElements` words. Else the kernel
    /// reads storage buffers (lavapipe: 128 Mi words, 512 MiB per layer's K or V).
    pub fn kv_texel(&self, kc: BufRange, vc: BufRange) -> bool {
        let limits = &self.dev.limits;
        let fits = |r: BufRange| {
            r.offset
                .is_multiple_of(limits.min_texel_buffer_offset_alignment.max(1))
                && r.len / 4 <= u64::from(limits.max_texel_buffer_elements)
        };
        self.lanes_texel.get() && self.texel_weights() && fits(kc) && fits(vc)
    }

    /// The lanes attention (`shaders/attention_lanes.comp`) for head dimension `d` and `group`
    /// query heads per KV head, named `attention_lanes_{SG}_{d}` (one head per workgroup) or
    /// `attention_lanes_{SG}_{d}_g{G}` (G heads), with `_t` where it reads K and V through
    /// texel views (`kv_texel`: its own layout, `ATTN_TEXEL_BINDINGS`), or `None` where it is
    /// off or cannot run.
    fn lanes_attention(
        &self,
        d: u32,
        group: u32,
        kv_texel: bool,
    ) -> Result<Option<PromptAttention>> {
        if !self.prompt_lanes.get() {
            return Ok(None);
        }
        let f = &self.dev.features;
        let Some(sg) = lanes_shape(
            (f.min_subgroup, f.max_subgroup),
            f.subgroup_ballot,
            Limits::of(&self.dev).max_wg,
            d,
        ) else {
            return Ok(None);
        };
        let heads = lanes_heads(group, d);
        let mut name = match heads {
            1 => format!("attention_lanes_{sg}_{d}"),
            g => format!("attention_lanes_{sg}_{d}_g{g}"),
        };
        let spec = [sg, d, LANES_KB, heads];
        let kernel = if kv_texel {
            name.push_str("_t");
            let (b, t) = (&ATTN_TEXEL_BINDINGS, Some(ATTN_TEXEL_BINDING));
            let spirv = shaders::ATTENTION_LANES_TEXEL;
            self.get_in(&name, spirv, b, t, ATTN_PUSH, &spec)?
        } else {
            self.get(
                &name,
                shaders::ATTENTION_LANES,
                &ATTN_BINDINGS,
                ATTN_PUSH,
                &spec,
            )?
        };
        Ok(Some(PromptAttention {
            kernel,
            rows: sg,
            heads,
            set: None,
            split_tile: None,
        }))
    }
}
