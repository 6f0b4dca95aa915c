//! Several engines over one model on one device (`pigpu serve --parallel N --backend vulkan`):
//! the weights are uploaded once and shared, each engine keeps its own KV cache and state.

use pigpu::engine::vulkan::{Shared, VulkanEngine, VulkanOptions};
use pigpu::engine::{Engine, SamplingParams};
use pigpu::model::Model;

use super::{lavapipe, no_validation_errors, tokens, PROMPTS};
use crate::util;

fn opts(n_ctx: usize) -> VulkanOptions {
    VulkanOptions {
        n_ctx,
        progress: Default::default(),
        tuning: lavapipe(),
    }
}

fn greedy(e: &mut dyn Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    e.reset();
    e.prefill(prompt).unwrap();
    let g = SamplingParams::greedy();
    (0..n).map(|_| e.step(&g, 0.0).unwrap()).collect()
}

/// Engines built over one `Shared` allocate their caches and activations only: the weights'
/// device memory is there once (the device's own count of device-local bytes), the upload ran
/// once, and the engines decode independently (interleaved steps give each its own answer).
#[test]
fn smollm_engines_share_one_weight_upload() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let o = opts(64);
    let shared = Shared::open(&model, &o).expect("weights on lavapipe");
    let weights = shared.device_local_bytes();
    assert!(
        weights >= model.weight_bytes() && shared.upload_bytes >= model.weight_bytes(),
        "{weights} device bytes, {} uploaded, for {} bytes of weights",
        shared.upload_bytes,
        model.weight_bytes()
    );
    let mut a = VulkanEngine::with_shared(shared.clone(), model.clone(), &o).unwrap();
    let one = shared.device_local_bytes() - weights;
    let mut b = VulkanEngine::with_shared(shared.clone(), model.clone(), &o).unwrap();
    let two = shared.device_local_bytes() - weights;
    eprintln!(
        "weights {:.1} MiB on the device (uploaded {:.1} MiB once); per engine {:.2} MiB",
        weights as f64 / 1048576.0,
        shared.upload_bytes as f64 / 1048576.0,
        one as f64 / 1048576.0
    );
    assert_eq!(two, 2 * one, "a second engine adds what the first did");
    assert!(
        one < weights / 4,
        "an engine's own part ({one} B) is its cache and activations"
    );
    // Each reports the one upload.
    assert_eq!(a.weight_upload().unwrap().0, shared.upload_bytes);
    assert_eq!(b.weight_upload().unwrap().0, shared.upload_bytes);

    // Interleaved decoding: each engine's tokens equal its tokens decoded alone.
    let (pa, pb) = (tokens(&model, PROMPTS[0]), tokens(&model, PROMPTS[2]));
    let n = 6;
    let alone_a = greedy(&mut a, &pa, n);
    let alone_b = greedy(&mut b, &pb, n);
    let g = SamplingParams::greedy();
    a.reset();
    b.reset();
    a.prefill(&pa).unwrap();
    b.prefill(&pb).unwrap();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..n {
        ta.push(a.step(&g, 0.0).unwrap());
        tb.push(b.step(&g, 0.0).unwrap());
    }
    assert_eq!(ta, alone_a);
    assert_eq!(tb, alone_b);
    assert_ne!(alone_a, alone_b, "two prompts, two answers");
    no_validation_errors(&a);
    drop((a, b));
    assert_eq!(
        shared.device_local_bytes(),
        weights,
        "the engines' memory is freed"
    );
}
