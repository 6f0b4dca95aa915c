//! Every choice the engine makes by device kind, made once when the device opens: a GPU's
//! choices or a CPU implementation's (lavapipe's). The kind is the device's own unless
//! `Tuning::as_gpu` (`PIGPU_VK_AS=gpu|cpu`) names one, so lavapipe can run the exact
//! configuration a discrete GPU will; a knob of its own (`PIGPU_VK_MATVEC`, `_UBATCH`, ...)
//! still wins over the kind's default. Nothing here reads a limit: the shapes are fitted to the
//! real device's shared memory, workgroup and subgroup sizes where they are used (`shapes::fit`,
//! `staged_shape`, `Tile::fits`, the norm pass's workgroup), so a GPU's choice never exceeds
//! what the device running it allows. docs/vulkan.md, "Choices by device kind", lists them.

use super::tuning::Tuning;

/// Mat-vec paths (the third number of a shape, `PIGPU_VK_MATVEC=WG,ROWS,PATH`).
/// 0: shared-memory tree reduction, a workgroup shares the blocks of ROWS rows (shaders/matvec.comp).
pub const PATH_TREE: u32 = 0;
/// 1: each invocation computes ROWS whole rows, no barriers (lavapipe's fast path).
pub const PATH_LANE: u32 = 1;
/// 2: the subgroup decode mat-vec for GPUs (shaders/matvec_sg.comp); one token per workgroup.
pub const PATH_SUBGROUP: u32 = 2;

/// Tokens per workgroup of the mat-mat on GPUs (shaders: spec constant NT of `matmul_*`), where
/// batches of more tokens go to the tiled mat-mat.
pub const MATMUL_NT: u32 = 8;
/// The same on CPU implementations (lavapipe), where the mat-mat serves whole prompts: each
/// dequantized weight unit serves this many tokens (docs/vulkan.md).
pub const MATMUL_NT_CPU: u32 = 16;

/// Most tokens per prompt-processing submit on GPUs (activation buffers are sized for this many):
/// enough tiles of the prompt mat-mat to cover every SM of a large GPU.
pub const UBATCH_GPU: usize = 512;
/// On CPU implementations (lavapipe), where a bigger batch buys nothing.
pub const UBATCH_CPU: usize = 64;

/// The engine's choices for one device, each a knob's value where it is set, else the default
/// of the kind the choices are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choices {
    /// The kind's defaults are a GPU's (a GPU, or `PIGPU_VK_AS=gpu`); `false`: a CPU
    /// implementation's.
    pub gpu: bool,
    /// Whether that differs from the device's own kind (`PIGPU_VK_AS` named the other).
    pub proxy: bool,
    /// The decode mat-vec shape (workgroup size, rows per workgroup, path) before it is fitted
    /// to the device: the subgroup kernel on GPUs with subgroup arithmetic, the tree without,
    /// whole rows per lane on CPU implementations.
    pub matvec: [u32; 3],
    /// The same for the mat-mat (prompt batches up to `matmul_nt` tokens, serve's slots).
    pub matmul: [u32; 3],
    /// Tokens per workgroup of the mat-mat.
    pub matmul_nt: u32,
    /// Prompt batches of more than `matmul_nt` tokens on the tiled mat-mat (and the prompt
    /// attention), else on the mat-mat.
    pub prompt_tiled: bool,
    /// Prompt batches off the tiled path take the lanes attention (one query row per SIMD lane,
    /// `shaders/attention_lanes.comp`), else the one-row kernel.
    pub prompt_attn_lanes: bool,
    /// Tokens per prompt batch, before the memory cap (`graph::ubatch_for`).
    pub ubatch: usize,
    /// Decoding splits the KV range over workgroups (`attention.rs`; with it, RoPE and the KV
    /// write stay a pass of their own); `false`: the one-row attention, RoPE folded in.
    pub split_attention: bool,
    /// The sampler in two stages (prefilter over slices, then the selection), else one.
    pub sampler_two_stage: bool,
    /// The `matvec.comp` mat-vecs read weights through uniform texel buffers.
    pub texel_weights: bool,
    /// The host reads each step's token from the mapped device state, else from a copy.
    pub state_mapped: bool,
    /// The weights' device memory is mapped and filled by the CPU in place, with no staging
    /// copy (`MemKind::Weights`; where it is the host's memory anyway).
    pub weights_in_place: bool,
    /// Invocations per row of the norm pass (before the device's workgroup cap).
    pub norm_wg: u32,
    /// Bytes of the profiler's copy-bandwidth test.
    pub profile_copy_bytes: u64,
}

impl Choices {
    /// The choices for a device whose own kind is a CPU implementation (`cpu`), with subgroup
    /// arithmetic in compute shaders (`subgroup_arith`) and texel views that reach as far as a
    /// storage binding (`texel_reach`), under `tuning`.
    pub fn new(cpu: bool, subgroup_arith: bool, texel_reach: bool, tuning: &Tuning) -> Choices {
        let gpu = tuning.as_gpu.unwrap_or(!cpu);
        // CPU implementations run invocations as SIMD lanes and pay for every barrier and, per
        // lane, for every load: there, each invocation computes 8 whole rows (sharing the
        // activation loads); GPUs share a row's blocks across a workgroup, with subgroup
        // reductions where the device has them.
        let (matvec, matmul) = if !gpu {
            ([32, 8, PATH_LANE], [32, 8, PATH_LANE])
        } else if subgroup_arith {
            ([128, 2, PATH_SUBGROUP], [32, 2, PATH_TREE])
        } else {
            ([32, 4, PATH_TREE], [32, 2, PATH_TREE])
        };
        Choices {
            gpu,
            proxy: gpu == cpu,
            matvec: tuning.matvec.unwrap_or(matvec),
            matmul: tuning.matmul.unwrap_or(matmul),
            matmul_nt: tuning
                .matmul_nt
                .unwrap_or(if gpu { MATMUL_NT } else { MATMUL_NT_CPU }),
            // The tiled mat-mat serves prompts on GPUs; on CPU implementations the lane-path
            // mat-mat (16 tokens per workgroup) is as fast (docs/vulkan.md).
            prompt_tiled: tuning.prompt_tiled.unwrap_or(gpu),
            // GPUs' prompts take the tiled path's prompt attention anyway.
            prompt_attn_lanes: tuning.prompt_attn_lanes.unwrap_or(!gpu),
            ubatch: tuning
                .ubatch
                .unwrap_or(if gpu { UBATCH_GPU } else { UBATCH_CPU }),
            // A chunk asked for turns the split on for any kind (`Splits::for_context`).
            split_attention: gpu || tuning.attn_chunk.is_some(),
            // On CPU implementations the two-stage sampler's 48+ workgroups cost more than one
            // workgroup over the whole vocabulary (docs/benchmarks.md).
            sampler_two_stage: tuning.sampler_two_stage.unwrap_or(gpu),
            // lavapipe gathers texels but loops over the SIMD lanes for every storage-buffer
            // load; only where a texel view reaches as far as a storage binding, so no tensor
            // needs more pieces.
            texel_weights: tuning.texel_weights.unwrap_or(!gpu && texel_reach),
            // A CPU implementation's memory is all host memory: no copy needed.
            state_mapped: tuning.state_mapped.unwrap_or(!gpu),
            // The same memory: a staging buffer would only add a second copy of every weight.
            weights_in_place: !gpu,
            // A 3072-wide row is three vec4 loads each at 256.
            norm_wg: if gpu { 256 } else { 64 },
            // Large enough to dwarf the copy's start-up on a GPU, small for lavapipe's memory.
            profile_copy_bytes: if gpu { 256 << 20 } else { 64 << 20 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A discrete GPU with subgroup arithmetic, and lavapipe (a CPU implementation whose texel
    /// views reach as far as a storage binding), both with subgroup arithmetic.
    fn gpu(t: &Tuning) -> Choices {
        Choices::new(false, true, false, t)
    }
    fn lavapipe(t: &Tuning) -> Choices {
        Choices::new(true, true, true, t)
    }

    #[test]
    fn as_gpu_makes_every_choice_a_discrete_gpus() {
        let none = Tuning::default();
        let as_gpu = Tuning {
            as_gpu: Some(true),
            ..Tuning::default()
        };
        let (own, proxy) = (gpu(&none), lavapipe(&as_gpu));
        assert!(!own.proxy && proxy.proxy);
        assert_eq!(
            Choices {
                proxy: false,
                ..proxy
            },
            own,
            "lavapipe as a GPU"
        );
        assert_eq!(gpu(&as_gpu), own, "a GPU named a GPU: nothing changes");
        // The GPU's choices, field by field (a default changed here changes docs/vulkan.md).
        assert!(own.gpu && own.prompt_tiled && own.split_attention && own.sampler_two_stage);
        assert!(!own.texel_weights && !own.state_mapped && !own.prompt_attn_lanes);
        assert_eq!(own.matvec, [128, 2, PATH_SUBGROUP]);
        assert_eq!(own.matmul, [32, 2, PATH_TREE]);
        assert_eq!((own.matmul_nt, own.ubatch, own.norm_wg), (8, 512, 256));
        // Without subgroup arithmetic the GPU's tree mat-vec.
        assert_eq!(
            Choices::new(true, false, true, &as_gpu).matvec,
            [32, 4, PATH_TREE]
        );
    }

    #[test]
    fn as_cpu_makes_every_choice_a_cpu_implementations() {
        let as_cpu = Tuning {
            as_gpu: Some(false),
            ..Tuning::default()
        };
        let own = lavapipe(&Tuning::default());
        assert!(!own.gpu && !own.proxy);
        assert!(!own.prompt_tiled && !own.split_attention && !own.sampler_two_stage);
        assert!(own.texel_weights && own.state_mapped && own.prompt_attn_lanes);
        assert_eq!(own.matvec, [32, 8, PATH_LANE]);
        assert_eq!((own.matmul_nt, own.ubatch, own.norm_wg), (16, 64, 64));
        let proxy = Choices::new(false, true, true, &as_cpu);
        assert!(proxy.proxy);
        assert_eq!(
            Choices {
                proxy: false,
                ..proxy
            },
            own,
            "a GPU as a CPU"
        );
        // Texel weights only where texel views reach as far as a storage binding.
        assert!(!Choices::new(false, true, false, &as_cpu).texel_weights);
    }

    #[test]
    fn a_knob_of_its_own_wins_over_the_kind() {
        let t = Tuning {
            as_gpu: Some(true),
            matvec: Some([32, 8, PATH_LANE]),
            matmul_nt: Some(16),
            prompt_tiled: Some(false),
            ubatch: Some(48),
            sampler_two_stage: Some(false),
            texel_weights: Some(true),
            state_mapped: Some(true),
            ..Tuning::default()
        };
        let c = lavapipe(&t);
        assert!(c.gpu && c.split_attention);
        assert_eq!(c.matvec, [32, 8, PATH_LANE]);
        assert_eq!((c.matmul_nt, c.ubatch), (16, 48));
        assert!(!c.prompt_tiled && !c.sampler_two_stage && c.texel_weights && c.state_mapped);
        // A chunk asked for splits the attention on any kind.
        let chunk = Tuning {
            attn_chunk: Some(64),
            ..Tuning::default()
        };
        assert!(lavapipe(&chunk).split_attention && !lavapipe(&chunk).gpu);
    }
}
