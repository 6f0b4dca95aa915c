//! Several engines over one model on one device (`pigpu serve --parallel N --backend vulkan`):
//! the weights are uploaded once and shared, each engine keeps its own KV cache and state, and
//! the busy slots decode together in one pass over the weights and sample in the same submit
//! (`VulkanSlots::step_all`).
//!
//! All but the throughput run are on the tiny shaped model (`engines::tiny`): sharing the
//! upload and keeping the slots apart is bookkeeping, the same on any model; they ran on
//! SmolLM2 until 2026-12-06.

use pigpu::engine::vulkan::{SharedWeights, VulkanEngine, VulkanOptions, VulkanSlots};
use pigpu::engine::{Engine, SamplingParams};
use pigpu::model::Model;

use super::{lavapipe, no_validation_errors, tokens, PROMPTS};
use crate::engines::tiny;
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

/// Engines built over one `SharedWeights` allocate their caches and activations only: the
/// weights' device memory is there once (the device's own count of device-local bytes), the upload ran
/// once, and the engines decode independently (interleaved steps give each its own answer).
/// Prompt batches of 8 tokens: an engine's activations and logits rows scale with the batch,
/// and at lavapipe's default batch they are as large as the tiny model's 1.3 MiB of weights.
#[test]
fn tiny_engines_share_one_weight_upload() {
    let model = tiny();
    let o = VulkanOptions {
        tuning: pigpu::engine::vulkan::Tuning {
            ubatch: Some(8),
            ..lavapipe()
        },
        ..opts(64)
    };
    let shared = SharedWeights::open(&model, &o).expect("weights on lavapipe");
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

/// Slot `s`'s sampling settings and its stream of uniform numbers (`u(s, step)`).
type Sampler = (SamplingParams, fn(usize, usize) -> f32);

fn greedy_sampler() -> Sampler {
    (SamplingParams::greedy(), |_, _| 0.0)
}

/// Decodes `prompts[j]` in slot `slots[j]`, all together, `n` tokens each with `samplers[j]`:
/// each step is one `step_all` over every slot. Checks the counters: the first step after the
/// prefills only samples (one submit per slot); every later one is one submit for all slots
/// (the pass and every slot's sampler), with no recording and no descriptor update, and each
/// slot reads back at most 16 bytes per token.
fn batched(
    set: &mut VulkanSlots,
    slots: &[usize],
    prompts: &[&[u32]],
    samplers: &[Sampler],
    n: usize,
) -> Vec<Vec<u32>> {
    for (&s, p) in slots.iter().zip(prompts) {
        set.engine(s).reset();
        set.engine(s).prefill(p).unwrap();
        set.engine(s).reset_stats();
    }
    let submits = |set: &mut VulkanSlots| -> u64 {
        let own: u64 = slots.iter().map(|&s| set.engine(s).stats().submits).sum();
        own + set.batch_stats().passes
    };
    let mut out = vec![Vec::new(); slots.len()];
    for step in 0..n {
        let draws: Vec<(usize, &SamplingParams, f32)> = slots
            .iter()
            .zip(samplers)
            .map(|(&s, (p, u))| (s, p, u(s, step)))
            .collect();
        let before = submits(set);
        let got = set.step_all(&draws).unwrap();
        let want = if step == 0 { slots.len() as u64 } else { 1 };
        assert_eq!(submits(set) - before, want, "submits at step {step}");
        for (j, t) in got.into_iter().enumerate() {
            out[j].push(t.unwrap());
        }
    }
    for &s in slots {
        let st = set.engine(s).stats();
        assert_eq!(
            st.command_buffers_recorded, 0,
            "slot {s} recorded while decoding"
        );
        assert_eq!(st.descriptor_updates, 0);
        assert_eq!(st.tokens, n as u64);
        assert!(
            st.readback_bytes <= 16 * n as u64,
            "slot {s} read back {} bytes for {n} tokens",
            st.readback_bytes
        );
    }
    out
}

/// `n` tokens of `prompt` in slot `s` alone (its own recorded steps) with `sampler`.
fn alone(set: &mut VulkanSlots, s: usize, prompt: &[u32], sampler: &Sampler, n: usize) -> Vec<u32> {
    let e = set.engine(s);
    e.reset();
    e.prefill(prompt).unwrap();
    (0..n)
        .map(|step| e.step(&sampler.0, (sampler.1)(s, step)).unwrap())
        .collect()
}

/// B slots decoded together give each the tokens it gets decoded alone (four prompts of
/// different lengths): greedy at B = 4; at B = 2 on slots 1 and 3 (so a row in between
/// idles) each slot samples with its own settings and random numbers, which the one submit per
/// step must keep apart, then one slot greedy beside one sampling. Validation layer on; one
/// recording per set of busy slots and of their greedy ones, none per token.
#[test]
fn tiny_batched_decode_equals_each_alone() {
    let model = tiny();
    let mut set = VulkanSlots::new(model.clone(), 4, &opts(96)).expect("slots on lavapipe");
    let prompts: Vec<Vec<u32>> = PROMPTS[..4].iter().map(|p| tokens(&model, p)).collect();
    let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
    assert!(lens.windows(2).any(|w| w[0] != w[1]), "{lens:?}");
    let n = 6;
    let g = greedy_sampler();
    let alone_greedy: Vec<Vec<u32>> = (0..4)
        .map(|i| alone(&mut set, i, &prompts[i], &g, n))
        .collect();
    assert_eq!(
        set.batch_stats().passes,
        0,
        "decoded alone, nothing batched"
    );

    let p: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let four = batched(&mut set, &[0, 1, 2, 3], &p, &vec![g.clone(); 4], n);
    assert_eq!(four, alone_greedy, "B = 4");
    let st = set.batch_stats();
    // The first step after a prefill only samples; every later one is a batched pass.
    assert_eq!((st.passes, st.tokens), (n as u64 - 1, 4 * (n as u64 - 1)));
    assert_eq!(st.recorded, 1, "one recording for the set, replayed");

    let hot = SamplingParams {
        temperature: 1.2,
        top_k: 40,
        ..SamplingParams::greedy()
    };
    let warm = SamplingParams {
        temperature: 0.7,
        top_p: 0.9,
        repeat_penalty: 1.3,
        ..SamplingParams::greedy()
    };
    let samplers: [Sampler; 2] = [
        (hot, |s, step| ((s * 7 + step * 13) % 17) as f32 / 17.0),
        (warm, |s, step| ((s * 5 + step * 11) % 19) as f32 / 19.0),
    ];
    let want: Vec<Vec<u32>> = [1, 3]
        .iter()
        .zip(&samplers)
        .map(|(&s, sm)| alone(&mut set, s, &prompts[s], sm, n))
        .collect();
    let two = batched(&mut set, &[1, 3], &[p[1], p[3]], &samplers, n);
    assert_eq!(two, want, "B = 2, each slot sampling with its own settings");
    assert_ne!(want[0], alone_greedy[1], "the settings change the tokens");
    assert_eq!(set.batch_stats().recorded, 2);

    // The same two slots, one greedy and one sampling, in one pass: the greedy slot's
    // selection is the greedy-only one (kernels.rs `sample_mode`), the other's the one for
    // every sampler (above, `hot` took the top-k-bounded one beside it); the pair of modes is a
    // recording of its own.
    let mixed = [g.clone(), samplers[1].clone()];
    let got = batched(&mut set, &[1, 3], &[p[1], p[3]], &mixed, n);
    assert_eq!(
        got,
        [alone_greedy[1].clone(), want[1].clone()],
        "B = 2, greedy beside sampling"
    );
    let st = set.batch_stats();
    assert_eq!(st.recorded, 3);
    assert_eq!(st.descriptor_updates, 0);
    eprintln!("batched decode on lavapipe: {st:?}");
    let errs = set.engine(0).take_validation_errors();
    assert!(
        errs.is_empty(),
        "Vulkan validation errors:\n{}",
        errs.join("\n")
    );
}

/// With the RMSNorms as passes of their own (`PIGPU_VK_NORM=pass`: the pass over every row of
/// the batch, into a batched scratch the products read) and the two-stage sampler (GPUs'
/// default, `PIGPU_VK_SAMPLER=two`: every slot's prefilter as one group, then the selections;
/// the test above covers lavapipe's one stage): three slots decoded together give each its
/// tokens alone, greedy, in one submit per step.
#[test]
fn tiny_batched_decode_with_the_norm_pass_equals_each_alone() {
    let model = tiny();
    let o = VulkanOptions {
        tuning: pigpu::engine::vulkan::Tuning {
            norm_pass: true,
            sampler_two_stage: Some(true),
            ..lavapipe()
        },
        ..opts(96)
    };
    let mut set = VulkanSlots::new(model.clone(), 3, &o).expect("slots on lavapipe");
    let prompts: Vec<Vec<u32>> = PROMPTS[..3].iter().map(|p| tokens(&model, p)).collect();
    let (n, g) = (5, greedy_sampler());
    let want: Vec<Vec<u32>> = (0..3)
        .map(|i| alone(&mut set, i, &prompts[i], &g, n))
        .collect();
    let p: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let got = batched(&mut set, &[0, 1, 2], &p, &vec![g.clone(); 3], n);
    assert_eq!(got, want, "B = 3 with the norm pass");
    let st = set.batch_stats();
    assert_eq!(
        (st.passes, st.recorded, st.descriptor_updates),
        (n as u64 - 1, 1, 0)
    );
    no_validation_errors(set.engine(0));
}

/// serve's batched decode with every choice a GPU's (`PIGPU_VK_AS=gpu`): the slots' pass on
/// the 8-token mat-mat and the split attention (4 splits), every slot's two-stage sampler, the
/// copied readback. Three slots decoded together give each its tokens alone (there on the
/// subgroup mat-vec), greedy, in one submit per step.
#[test]
fn tiny_batched_decode_as_a_gpu_equals_each_alone() {
    let model = tiny();
    let o = VulkanOptions {
        tuning: super::as_gpu::tuning(),
        ..opts(256)
    };
    let mut set = VulkanSlots::new(model.clone(), 3, &o).expect("slots on lavapipe");
    super::as_gpu::assert_gpu_choices(set.engine(0));
    let prompts: Vec<Vec<u32>> = PROMPTS[..3].iter().map(|p| tokens(&model, p)).collect();
    let (n, g) = (6, greedy_sampler());
    let want: Vec<Vec<u32>> = (0..3)
        .map(|i| alone(&mut set, i, &prompts[i], &g, n))
        .collect();
    let p: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let got = batched(&mut set, &[0, 1, 2], &p, &vec![g.clone(); 3], n);
    assert_eq!(got, want, "B = 3 as a GPU");
    let st = set.batch_stats();
    assert_eq!(
        (st.passes, st.recorded, st.descriptor_updates),
        (n as u64 - 1, 1, 0)
    );
    no_validation_errors(set.engine(0));
}

/// Aggregate decode tokens/s on lavapipe at B = 1, 2, 4 streams, batched (one pass per step)
/// against B streams each decoding alone (its own pass per token). Run by hand:
/// `cargo test --release --test it vulkan::batch::smollm_batched_throughput -- --ignored --nocapture`.
/// Lavapipe is a CPU driver: the figures say little about a GPU.
#[test]
#[ignore]
fn smollm_batched_throughput() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let o = VulkanOptions {
        tuning: pigpu::engine::vulkan::Tuning {
            validation: false,
            ..lavapipe()
        },
        ..opts(128)
    };
    let mut set = VulkanSlots::new(model.clone(), 4, &o).unwrap();
    let prompt = tokens(&model, PROMPTS[0]);
    let g = SamplingParams::greedy();
    let n = 16;
    for b in [1usize, 2, 4] {
        let slots: Vec<usize> = (0..b).collect();
        for together in [false, true] {
            for &s in &slots {
                set.engine(s).reset();
                set.engine(s).prefill(&prompt).unwrap();
                set.engine(s).step(&g, 0.0).unwrap();
            }
            let draws: Vec<(usize, &SamplingParams, f32)> =
                slots.iter().map(|&s| (s, &g, 0.0)).collect();
            let one_step = |set: &mut VulkanSlots| {
                if together {
                    set.step_all(&draws).unwrap();
                } else {
                    for &s in &slots {
                        set.engine(s).step(&g, 0.0).unwrap();
                    }
                }
            };
            // Warm-up step (records the pass for this set).
            one_step(&mut set);
            let t0 = std::time::Instant::now();
            for _ in 0..n {
                one_step(&mut set);
            }
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "B = {b}, {}: {:.2} tok/s aggregate ({n} tokens per stream in {secs:.2} s)",
                if together { "batched" } else { "unbatched" },
                (b * n) as f64 / secs
            );
        }
    }
}
