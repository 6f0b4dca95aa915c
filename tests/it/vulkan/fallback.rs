//! A GPU failure mid-generation, induced for real: the engine's test hook makes every queue
//! submit after the N-th fail with `VK_ERROR_DEVICE_LOST` (nothing is submitted), so the error
//! comes out of the Vulkan engine's own submit path. Under `--backend auto` the generation must
//! go on on the CPU engine, under `--backend vulkan` stop with a clear error.

use std::sync::Arc;

use pigpu::engine::cpu::kernels::Isa;
use pigpu::engine::cpu::CpuOptions;
use pigpu::engine::fallback::{is_gpu_failure, Fallback};
use pigpu::engine::{Engine, EngineError, SamplingParams};
use pigpu::model::Model;

use super::{max_diff, no_validation_errors, tokens, vulkan, PROMPTS, TIE};
use crate::util;

fn greedy(e: &mut dyn Engine, prompt: &[u32], n: usize) -> anyhow::Result<Vec<u32>> {
    e.prefill(prompt)?;
    (0..n)
        .map(|_| Ok(e.step(&SamplingParams::greedy(), 0.0)?))
        .collect()
}

/// The device is lost after the prompt and six decode steps; the fallback re-runs the tokens so
/// far on the CPU engine (in its exact-activation mode, which matches this GPU token for token
/// on this prompt) and the output is the same as a run that never failed. On the tiny shaped
/// model (`engines::tiny`; SmolLM2 until 2026-12-06): the hand-over is bookkeeping (submits
/// counted, tokens re-fed, positions), the same on any model; the last step's logits are
/// compared too (within the tie margin, [`TIE`]: the two engines differ by f32 rounding).
#[test]
fn tiny_device_lost_mid_generation_continues_on_the_cpu() {
    let model = crate::engines::tiny();
    let prompt = tokens(&model, PROMPTS[0]);
    let n = 16;
    let mut gpu = vulkan(&model, 128);
    let want = greedy(&mut gpu, &prompt, n).unwrap();
    let want_logits: Vec<f64> = gpu.logits().unwrap().iter().map(|&x| x as f64).collect();
    no_validation_errors(&gpu);

    // Alone, the lost device is an error that says so.
    let mut gpu = vulkan(&model, 128);
    gpu.lose_device_after_submits(3); // the prompt batch, the first two steps
    let err = greedy(&mut gpu, &prompt, n).unwrap_err();
    assert!(is_gpu_failure(&err), "{err:#}");
    assert!(format!("{err:#}").contains("device was lost"), "{err:#}");

    let gpu = vulkan(&model, 128);
    gpu.lose_device_after_submits(1 + 6);
    let cpu = CpuOptions {
        n_ctx: 128,
        threads: 0,
        kv_f16: true,
        isa: Some(Isa::Reference),
    };
    let mut e = Fallback::new(Box::new(gpu), Arc::clone(&model), cpu);
    let got = greedy(&mut e, &prompt, n).unwrap();
    assert!(e.fell_back(), "the induced device loss did not happen");
    assert!(e.describe().starts_with("cpu"), "{}", e.describe());
    assert_eq!(got, want, "the output changed across the fallback");
    // The tiny model's greedy tokens soon repeat, so the tokens alone would miss a re-run that
    // fed the wrong context; the logits of the last step would not.
    let (d, i) = max_diff(&e.logits().unwrap(), &want_logits);
    assert!(
        d < TIE,
        "the last step's logits differ across the fallback by {d} at token {i}"
    );
    assert_eq!(e.n_past(), prompt.len() + n - 1);
}

/// Errors that are not the GPU's pass through the fallback unchanged and keep the GPU.
#[test]
fn smollm_fallback_passes_input_errors_through() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let gpu = vulkan(&model, 8);
    let mut e = Fallback::new(Box::new(gpu), Arc::clone(&model), CpuOptions::default());
    let err = e.prefill(&[1; 9]).unwrap_err();
    assert!(!err.is_gpu_failure(), "{err:#}");
    assert!(matches!(err, EngineError::ContextFull(_)), "{err:?}");
    assert!(err.to_string().contains("context length 8"), "{err}");
    let err = e.prefill(&[u32::MAX]).unwrap_err();
    assert!(matches!(err, EngineError::BadInput(_)), "{err:?}");
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    assert!(!e.fell_back());
    assert!(e.describe().starts_with("vulkan"), "{}", e.describe());
}

/// The same through the command line, with the hook set in the environment.
#[test]
fn run_backend_auto_survives_a_lost_device_and_vulkan_reports_it() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let path = path.to_str().unwrap();
    let args = |backend| {
        let mut c = util::pigpu();
        c.args(["run", path, "--backend", backend, "--device", "llvmpipe"])
            .args(["-p", PROMPTS[0], "-n", "12", "--temp", "0", "--ctx", "64"])
            .env("PIGPU_TEST_VK_LOSE_DEVICE_AFTER", "5");
        c.output().expect("spawn pigpu")
    };
    let out = args("auto");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "auto: {stderr}");
    assert!(
        stderr.contains("the GPU failed") && stderr.contains("continuing on the CPU"),
        "{stderr}"
    );
    assert!(!stdout.trim().is_empty(), "no text generated: {stderr}");

    let out = args("vulkan");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "vulkan: {stderr}");
    assert!(stderr.contains("device was lost"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
