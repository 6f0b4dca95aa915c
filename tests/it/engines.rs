//! The engines the model tests build, made one way everywhere: the CPU engine with default
//! options, the CPU engine's reference mode (f16 KV cache, scalar kernels) that referees the
//! Vulkan engine, and the Vulkan engine on lavapipe with the validation layer on; and the tiny
//! shaped models they run where a trained model proves nothing more.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pigpu::engine::cpu::kernels::Isa;
use pigpu::engine::cpu::{CpuEngine, CpuOptions};
use pigpu::engine::vulkan::{Tuning, VulkanEngine, VulkanOptions};
use pigpu::model::shapes::{self, ShapeSpec};
use pigpu::model::Model;

/// The CPU engine with default options and a context of `n_ctx`.
pub fn cpu(model: &Arc<Model>, n_ctx: usize) -> CpuEngine {
    CpuEngine::new(
        model.clone(),
        &CpuOptions {
            n_ctx,
            ..Default::default()
        },
    )
    .unwrap()
}

/// The CPU engine's reference mode: an f16 KV cache like the Vulkan engine's and the scalar
/// kernels, so the two compute the same thing up to rounding.
pub fn cpu_reference(model: &Arc<Model>, n_ctx: usize) -> CpuEngine {
    CpuEngine::new(
        model.clone(),
        &CpuOptions {
            n_ctx,
            kv_f16: true,
            isa: Some(Isa::Reference),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Lavapipe with the validation layer on; the pipeline cache where the environment puts it
/// (as the commands would: shaders compile once per machine, not once per test).
pub fn lavapipe() -> Tuning {
    Tuning {
        device: Some("llvmpipe".into()),
        validation: true,
        ..Tuning::from_lookup(|n| std::env::var(n).ok()).expect("PIGPU_* variables")
    }
}

/// [`lavapipe`] with every choice the engine makes by device kind made as on a discrete GPU
/// (`PIGPU_VK_AS=gpu`), so lavapipe runs the paths a GPU will (docs/vulkan.md, "Choices by
/// device kind").
pub fn lavapipe_as_gpu() -> Tuning {
    Tuning {
        as_gpu: Some(true),
        ..lavapipe()
    }
}

/// The Vulkan engine on lavapipe with `tuning` (start from [`lavapipe`]).
pub fn vulkan_tuned(model: &Arc<Model>, n_ctx: usize, tuning: Tuning) -> VulkanEngine {
    let opts = VulkanOptions {
        n_ctx,
        progress: Default::default(),
        tuning,
    };
    VulkanEngine::new(model.clone(), &opts).expect("vulkan engine on lavapipe")
}

/// The Vulkan engine on lavapipe with the validation layer on.
pub fn vulkan(model: &Arc<Model>, n_ctx: usize) -> VulkanEngine {
    vulkan_tuned(model, n_ctx, lavapipe())
}

/// A shaped model (`pigpu shape`: a real architecture with random finite weights) written with
/// `seed` into a temporary file and loaded, e.g. `"tiny-llama:q4_k_m"`: for tests whose point
/// does not need a trained model, at a fraction of a real one's cost on lavapipe. (The file is
/// removed at once; the model keeps its mapping.)
pub fn shaped(spec: &str, seed: u64) -> Arc<Model> {
    let dir = tempfile::tempdir().unwrap();
    let path = shaped_file(spec, seed, dir.path());
    Model::load(&path).expect("load the shaped model")
}

/// The tiny shaped model the engine-bookkeeping tests run: `tiny-llama:q4_k_m` (2 layers,
/// width 256, 2,048 tokens with a byte-level BPE tokenizer and ChatML template, random
/// weights), seed 7. Batched slots, a shared weight upload, a rewind, a device lost mid-run
/// and the decode counters are the same host and device bookkeeping on any model, so a trained
/// one proves nothing more there and costs lavapipe far more.
pub const TINY: (&str, u64) = ("tiny-llama:q4_k_m", 7);

/// [`TINY`], loaded.
pub fn tiny() -> Arc<Model> {
    shaped(TINY.0, TINY.1)
}

/// A shaped model written with `seed` into `dir` (as `shaped.gguf`), for tests that run the
/// binary on a file; returns its path.
pub fn shaped_file(spec: &str, seed: u64, dir: &Path) -> PathBuf {
    let spec: ShapeSpec = spec.parse().expect("a shape name");
    let path = dir.join("shaped.gguf");
    shapes::write(&spec, seed, &path, 1).expect("write the shaped model");
    path
}
