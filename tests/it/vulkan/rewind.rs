//! `Engine::keep_prefix` on the Vulkan engine (`pigpu serve`'s prompt cache): an engine rewound
//! to k positions and fed the rest of a prompt gives the logits and the tokens of one fed the
//! whole prompt, its device state is exactly that of an engine fed only the kept tokens
//! (`state_after`: the position words and the repetition-penalty ring, past its wrap too), a
//! rewind to 0 is a fresh engine, and a rewound slot decodes in serve's batched pass
//! (`VulkanSlots::step_all`) as it does alone. Lavapipe, validation layer on, on a tiny shaped
//! model (random weights): the point is the engine's bookkeeping, which is the same on any model.

use pigpu::engine::vulkan::{VulkanEngine, VulkanOptions, VulkanSlots};
use pigpu::engine::{Engine, SamplingParams};

use super::{lavapipe, max_diff, no_validation_errors, vulkan};
use crate::engines::tiny;

/// Sampling that reads the history ring: a repetition penalty over the last 64 tokens.
fn penalized() -> SamplingParams {
    SamplingParams {
        temperature: 0.7,
        top_p: 0.9,
        repeat_penalty: 1.3,
        repeat_last_n: 64,
        ..SamplingParams::greedy()
    }
}

/// `n` tokens with `p` and a fixed stream of uniform numbers.
fn decode(e: &mut dyn Engine, p: &SamplingParams, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| e.step(p, ((i * 7 + 3) % 11) as f32 / 11.0).unwrap())
        .collect()
}

/// The state words a rewind sets (position words and ring); the batch position, the token and
/// the sampler's verdict are the next batch's and sampler's to write.
fn state_words(s: &[u32]) -> Vec<u32> {
    let mut s = s.to_vec();
    s[1] = 0; // S_POS
    s[2] = 0; // S_TOKEN
    *s.last_mut().unwrap() = 0; // S_BAD
    s
}

/// `e`'s device state is that after `history` (fed tokens, then the one sampled last if it is
/// not fed yet: the sampler puts it in the ring), with `e.n_past()` tokens in the cache.
fn assert_state(e: &VulkanEngine, history: &[u32], what: &str) {
    let got = state_words(&e.device_state().unwrap());
    let mut want = pigpu::engine::vulkan::state_after(history);
    want[0] = e.n_past() as u32; // S_NPAST
    assert_eq!(got.len(), want.len());
    let diff: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    assert!(
        diff.is_empty(),
        "{what}: device state differs from the state after {} tokens at words {diff:?}",
        history.len()
    );
}

/// `n` varied token ids below `n_vocab`, from `start` (no tokenizer: a shaped model's text is
/// noise anyway).
fn token_run(start: usize, n: usize, n_vocab: usize) -> Vec<u32> {
    (start..start + n)
        .map(|i| ((i * 37 + 11) % (n_vocab - 1)) as u32 + 1)
        .collect()
}

/// A prompt, an answer, then more: the engine that fed the prompt and sampled the answer is
/// rewound to part of it and fed the rest; its logits, its state and what it samples next are
/// those of a fresh engine fed the whole. Then a rewind to 0 equals a fresh engine exactly.
#[test]
fn tiny_rewind_then_the_rest_equals_feeding_it_all() {
    let model = tiny();
    let mut e = vulkan(&model, 96);
    let a = token_run(0, 12, model.config.n_vocab);
    e.prefill(&a).unwrap();
    let answer = decode(&mut e, &SamplingParams::greedy(), 6);
    // History: the prompt and every sampled token (the last one not fed yet).
    let mut fed = a.clone();
    fed.extend(&answer);
    assert_eq!(e.n_past(), a.len() + 5);
    assert_state(&e, &fed, "after a prompt and 6 sampled tokens");

    let more = token_run(100, 8, model.config.n_vocab);
    let whole: Vec<u32> = fed.iter().chain(&more).copied().collect();
    // Keep the prompt and 3 answer tokens (asking for more than was fed keeps what was fed).
    assert_eq!(e.keep_prefix(whole.len()).unwrap(), a.len() + 5);
    let k = e.keep_prefix(a.len() + 3).unwrap();
    assert_eq!((k, e.n_past()), (a.len() + 3, a.len() + 3));
    assert_state(&e, &whole[..k], "rewound");
    assert!(
        e.step(&SamplingParams::greedy(), 0.0).is_err(),
        "no logits pending after a rewind"
    );
    e.prefill(&whole[k..]).unwrap();
    assert_state(&e, &whole, "rewound, then the rest fed");
    let got = e.logits().unwrap();

    let mut fresh = vulkan(&model, 96);
    let fresh_state = fresh.device_state().unwrap();
    fresh.prefill(&whole).unwrap();
    let want = fresh.logits().unwrap();
    let want64: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    let (d, i) = max_diff(&got, &want64);
    eprintln!("max |logit| difference, rewound + rest vs whole: {d:.2e} (at {i})");
    assert!(d < 1e-3, "the rewound engine's logits differ by {d} at {i}");
    let p = penalized();
    let (n1, n2) = (decode(&mut e, &p, 8), decode(&mut fresh, &p, 8));
    assert_eq!(
        n1, n2,
        "sampling with a repetition penalty after the rewind"
    );

    // A rewind to 0 is a fresh engine: its state, then the same logits bit for bit.
    assert_eq!(e.keep_prefix(0).unwrap(), 0);
    assert_eq!(e.device_state().unwrap(), fresh_state);
    e.prefill(&whole).unwrap();
    fresh.reset();
    fresh.prefill(&whole).unwrap();
    assert_eq!(e.logits().unwrap(), fresh.logits().unwrap());
    no_validation_errors(&e);
}

/// Past the history ring's length (`HIST` = 256 tokens, whatever the context): the host's copy
/// of the history follows the device's through prompt batches and steps, and a rewind writes
/// the kept tokens' last 256 where the sampler reads them.
#[test]
fn tiny_rewind_rewrites_the_history_ring_past_its_wrap() {
    let model = tiny();
    let long = token_run(0, 290, model.config.n_vocab);
    let mut e = vulkan(&model, 320);
    e.prefill(&long).unwrap();
    let sampled = decode(&mut e, &penalized(), 3);
    let fed: Vec<u32> = long.iter().chain(&sampled).copied().collect();
    assert_eq!(e.n_past(), 292);
    assert_state(&e, &fed, "290 tokens and 3 sampled");
    let k = e.keep_prefix(270).unwrap();
    assert_eq!((k, e.n_past()), (270, 270));
    assert_state(&e, &long[..k], "rewound to 270");
    e.prefill(&long[k..]).unwrap();
    let got = decode(&mut e, &penalized(), 3);
    assert_eq!(got, sampled, "the same draws after the rewind");
    no_validation_errors(&e);
}

/// A slot rewound between jobs decodes in the batched pass (recorded before the rewind and
/// replayed after it) exactly as a fresh slot fed the whole prompt decodes alone; the slot
/// beside it is undisturbed.
#[test]
fn tiny_rewound_slot_decodes_batched_as_a_fresh_one_alone() {
    let model = tiny();
    let o = VulkanOptions {
        n_ctx: 96,
        progress: Default::default(),
        tuning: lavapipe(),
    };
    let mut set = VulkanSlots::new(model.clone(), 2, &o).expect("slots on lavapipe");
    let g = SamplingParams::greedy();
    let nv = model.config.n_vocab;
    let (a, b) = (token_run(0, 6, nv), token_run(50, 9, nv));
    let steps = |set: &mut VulkanSlots, n: usize| -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(), Vec::new()];
        for _ in 0..n {
            let got = set.step_all(&[(0, &g, 0.0), (1, &g, 0.0)]).unwrap();
            for (o, t) in out.iter_mut().zip(got) {
                o.push(t.unwrap());
            }
        }
        out
    };
    // First jobs, batched (the pass for slots {0, 1} is recorded here).
    set.engine(0).prefill(&a).unwrap();
    set.engine(1).prefill(&b).unwrap();
    let first = steps(&mut set, 5);
    assert_eq!(set.batch_stats().recorded, 1);
    // Slot 0's next prompt: its first prompt and answer, then more; it keeps what it fed.
    let more = token_run(100, 8, nv);
    let whole: Vec<u32> = a.iter().chain(&first[0]).chain(&more).copied().collect();
    let k = set.engine(0).keep_prefix(whole.len()).unwrap();
    assert_eq!(k, a.len() + 4, "the prompt and the answer's fed tokens");
    set.engine(0).prefill(&whole[k..]).unwrap();
    let second = steps(&mut set, 6);
    assert_eq!(set.batch_stats().recorded, 1, "the recorded pass replayed");

    // References: slot 0 fresh with the whole prompt alone; slot 1 alone, 11 tokens.
    let e = set.engine(0);
    e.reset();
    e.prefill(&whole).unwrap();
    let want0: Vec<u32> = (0..6).map(|_| e.step(&g, 0.0).unwrap()).collect();
    let e = set.engine(1);
    e.reset();
    e.prefill(&b).unwrap();
    let want1: Vec<u32> = (0..11).map(|_| e.step(&g, 0.0).unwrap()).collect();
    assert_eq!(second[0], want0, "the rewound slot");
    let got1: Vec<u32> = first[1].iter().chain(&second[1]).copied().collect();
    assert_eq!(got1, want1, "the slot beside it");
    let errs = set.engine(0).take_validation_errors();
    assert!(
        errs.is_empty(),
        "Vulkan validation errors:\n{}",
        errs.join("\n")
    );
}
