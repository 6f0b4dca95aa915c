//! `PIGPU_VK_AS=gpu` on lavapipe: every choice the engine makes by device kind made as on a
//! discrete GPU (`Choices`), so the paths a GPU will run are run here first, with the
//! validation layer on: the subgroup mat-vec (`matvec_sg.comp`), the tiled prompt mat-mat and
//! the prompt attention over several batches, the 8-token mat-mat for a short batch, the split
//! decode attention with its combine pass at a depth where several splits hold keys, RoPE and
//! the KV write as their own pass, the two-stage sampler and the copied readback. Each test
//! checks the engine really took them (its choices, its shapes, its splits, the profile's
//! labels), so none can pass on lavapipe's own paths.

use super::*;
pub use crate::engines::lavapipe_as_gpu as tuning;

/// Fails unless `gpu` made the GPU's choices on a device that is not one, with the subgroup
/// mat-vec and the split decode attention (more than one split).
pub fn assert_gpu_choices(gpu: &VulkanEngine) {
    let c = gpu.choices();
    assert!(c.gpu && c.proxy, "{c:?}");
    assert!(c.prompt_tiled && c.sampler_two_stage && !c.state_mapped && !c.texel_weights);
    assert_eq!(gpu.matvec_shape(), [128, 2, 2], "the subgroup mat-vec");
    let splits = gpu.attention_splits();
    assert!(splits.is_some_and(|n| n > 1), "split attention: {splits:?}");
    let d = gpu.describe();
    assert!(d.contains("choosing as a GPU"), "{d}");
}

/// The op labels of one phase of a profile.
fn labels(p: &pigpu::engine::vulkan::Profile, phase: &str) -> Vec<String> {
    let ph = p.phases.iter().find(|ph| ph.phase == phase);
    let ph = ph.unwrap_or_else(|| panic!("no {phase} phase in {:?}", p.phases));
    ph.ops.iter().map(|o| o.label.clone()).collect()
}

/// The tiny model's prompt of 40 tokens in batches of 16 (the tiled mat-mat's small tile and
/// the prompt attention) and one of 8 (the mat-mat), then decoding: the profile names the GPU's
/// ops and none of lavapipe's own, and the timed recording's tokens are the plain engine's.
#[test]
fn tiny_as_gpu_dispatches_the_gpus_kernels() {
    let model = crate::engines::tiny();
    let prompt: Vec<u32> = (0..40).map(|i| 3 + (i * 37) % 1000).collect();
    let g = SamplingParams::greedy();
    let run = |profile: bool| {
        let t = Tuning {
            ubatch: Some(16),
            ..tuning()
        };
        let mut gpu = vulkan_tuned(&model, 256, t);
        assert_gpu_choices(&gpu);
        assert_eq!(gpu.attention_splits(), Some(4), "256 positions, 64 a split");
        gpu.set_profiling(profile).unwrap();
        gpu.prefill(&prompt).unwrap();
        let out: Vec<u32> = (0..6).map(|_| gpu.step(&g, 0.0).unwrap()).collect();
        no_validation_errors(&gpu);
        (out, gpu.take_profile())
    };
    let (plain, _) = run(false);
    let (timed, p) = run(true);
    assert_eq!(plain, timed, "the timed recording's tokens");
    let p = p.expect("profiling is on");
    let (pre, dec) = (labels(&p, "prompt"), labels(&p, "decode"));
    let has = |ls: &[String], l: &str| ls.iter().any(|x| x.starts_with(l));
    for l in ["tiled/s", "matmul", "attention_prompt", "rope_kv"] {
        assert!(has(&pre, l), "prompt: no {l} in {pre:?}");
    }
    for l in [
        "rope_kv",
        "attention combine",
        "sample_pre",
        "sample",
        "matvec",
    ] {
        assert!(has(&dec, l), "decode: no {l} in {dec:?}");
    }
    for l in ["attention_rope", "sample_one", "tiled", "matmul"] {
        assert!(!has(&dec, l), "decode: {l} in {dec:?}");
    }
}

/// RoPE and the KV write folded into the split attention (`PIGPU_VK_ROPE=fold`) against the
/// GPU's default `rope_kv` pass, on the tiny model: a prompt of 70 tokens, then 25 greedy steps
/// at positions 70-94 (the second of 4 splits holds the new key). The same tokens and device
/// state, exactly one dispatch a layer fewer, the same steady state (no recording, no
/// descriptor write, one submit per token), and the profile names the folded split pass and
/// its combine pass and no `rope_kv` while decoding (the timed recording's tokens the same).
#[test]
fn tiny_as_gpu_rope_fold_decodes_as_the_rope_pass() {
    let model = crate::engines::tiny();
    let n_layer = model.config.n_layer as u64;
    let prompt: Vec<u32> = (0..70).map(|i| 3 + (i * 53) % 1000).collect();
    let g = SamplingParams::greedy();
    let engine = |fold: bool| {
        let t = Tuning {
            rope_fold: Some(fold),
            ..tuning()
        };
        let mut gpu = vulkan_tuned(&model, 256, t);
        assert_gpu_choices(&gpu);
        assert_eq!(gpu.attention_splits(), Some(4), "256 positions, 64 a split");
        gpu.prefill(&prompt).unwrap();
        gpu
    };
    let run = |fold: bool| {
        let mut gpu = engine(fold);
        let mut out = vec![gpu.step(&g, 0.0).unwrap()];
        gpu.reset_stats();
        out.extend((0..24).map(|_| gpu.step(&g, 0.0).unwrap()));
        let s = gpu.stats();
        assert_eq!(
            (s.command_buffers_recorded, s.descriptor_updates, s.submits),
            (0, 0, 24),
            "fold {fold}: the steady state"
        );
        no_validation_errors(&gpu);
        (out, s.dispatches / 24, gpu.device_state().unwrap())
    };
    let (fold, pass) = (run(true), run(false));
    assert_eq!(fold.0, pass.0, "greedy tokens, folded vs rope_kv pass");
    assert_eq!(fold.2, pass.2, "device state after decoding");
    assert_eq!(fold.1 + n_layer, pass.1, "dispatches per token");
    let mut gpu = engine(true);
    gpu.set_profiling(true).unwrap();
    let timed: Vec<u32> = (0..6).map(|_| gpu.step(&g, 0.0).unwrap()).collect();
    no_validation_errors(&gpu);
    assert_eq!(timed, fold.0[..6], "the timed recording's tokens");
    let p = gpu.take_profile().expect("profiling is on");
    let dec = labels(&p, "decode");
    let has = |l: &str| dec.iter().any(|x| x.starts_with(l));
    for l in ["attention_rope split", "attention combine"] {
        assert!(has(l), "decode: no {l} in {dec:?}");
    }
    assert!(!has("rope_kv"), "decode: rope_kv in {dec:?}");
}

/// A short batch deep in the cache splits its prompt attention over the KV range, as a GPU
/// does (`Splits::prompt_split`): on the tiny model, 600 tokens (a batch of 512, then one of
/// 88 that already splits), then 20 more at depth 600 (2 splits of 320 positions). The logits
/// and 4 greedy tokens after it are the one-pass attention's (`PIGPU_VK_PROMPT_SPLIT=1`), and
/// the profile of that batch names the split pass and its combine pass, which the one-pass
/// engine's does not.
#[test]
fn tiny_as_gpu_short_batch_at_depth_splits_its_prompt_attention() {
    let model = crate::engines::tiny();
    let prompt: Vec<u32> = (0..620).map(|i| 3 + (i * 41) % 1000).collect();
    let g = SamplingParams::greedy();
    let run = |split: Option<u32>| {
        let t = Tuning {
            prompt_split: split,
            ..tuning()
        };
        let mut gpu = vulkan_tuned(&model, 1024, t);
        assert_gpu_choices(&gpu);
        gpu.prefill(&prompt[..600]).unwrap();
        gpu.set_profiling(true).unwrap();
        gpu.prefill(&prompt[600..]).unwrap();
        let logits = gpu.logits().unwrap();
        let out: Vec<u32> = (0..4).map(|_| gpu.step(&g, 0.0).unwrap()).collect();
        no_validation_errors(&gpu);
        let p = gpu.take_profile().expect("profiling is on");
        (logits, out, labels(&p, "prompt"))
    };
    let (split, one) = (run(None), run(Some(1)));
    let has = |ls: &[String], l: &str| ls.iter().any(|x| x.starts_with(l));
    for l in ["attention_prompt split", "attention combine"] {
        assert!(has(&split.2, l), "split: no {l} in {:?}", split.2);
        assert!(!has(&one.2, l), "one pass: {l} in {:?}", one.2);
    }
    assert!(has(&one.2, "attention_prompt_"), "one pass: {:?}", one.2);
    let d = split
        .0
        .iter()
        .zip(&one.0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d < 1e-3, "logits after the split batch differ by {d}");
    assert_eq!(split.1, one.1, "greedy tokens after the split batch");
}

/// Greedy decoding of `file` with every choice a GPU's against the CPU reference mode: a prompt
/// of `len` tokens prefilled in batches of `ubatch` (the tiled mat-mat, several batches) and a
/// last call of 5 tokens (the 8-token mat-mat), then `n` tokens decoded over `n_ctx / 64`
/// splits of the KV range (past the first split where `len` > 64; the combine of several
/// splits holding keys is also the tiny model's tests'). A split from the CPU's token is allowed only
/// at a tie of the f64 reference, as in `greedy_matches_cpu_reference`. `rope_fold`:
/// `Tuning::rope_fold` where given (`PIGPU_VK_ROPE`); `prompt_split`: `Tuning::prompt_split`
/// (`PIGPU_VK_PROMPT_SPLIT`).
fn greedy_long_prompt(
    file: &str,
    len: usize,
    (n_ctx, ubatch): (usize, usize),
    n: usize,
    (rope_fold, prompt_split): (Option<bool>, Option<u32>),
) {
    let Some(path) = util::test_model(file) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let text = [PROMPTS.join("\n\n"), PROMPTS.join(" ")].join("\n");
    let mut prompt = tokens(&model, &text);
    assert!(prompt.len() >= len, "{} tokens", prompt.len());
    prompt.truncate(len);
    assert!(len - 5 > ubatch, "several batches");
    let mut cpu = cpu_reference(&model, n_ctx);
    let base = tuning();
    let t = Tuning {
        ubatch: Some(ubatch),
        rope_fold: rope_fold.or(base.rope_fold),
        prompt_split,
        ..base
    };
    let mut gpu = vulkan_tuned(&model, n_ctx, t);
    assert_gpu_choices(&gpu);
    assert_eq!(gpu.attention_splits(), Some((n_ctx / 64) as u32));
    cpu.prefill(&prompt).unwrap();
    gpu.prefill(&prompt[..len - 5]).unwrap();
    gpu.prefill(&prompt[len - 5..]).unwrap();
    let p = SamplingParams::greedy();
    let mut ctx = prompt.clone();
    for i in 0..n {
        let (a, b) = (cpu.step(&p, 0.0).unwrap(), gpu.step(&p, 0.0).unwrap());
        if a != b {
            let r = Reference::new(&model);
            let what = format!("{file} as a GPU: token {i}");
            let gap = referee_split(&r, &what, &ctx, (a, b));
            eprintln!("{what}: split at a tie: cpu {a} gpu {b}, f64 reference gap {gap:.4}");
            break;
        }
        ctx.push(a);
    }
    eprintln!(
        "{file} as a GPU: prompt {len} tokens in batches of {ubatch}, {} of {n} greedy tokens identical to the CPU reference mode",
        ctx.len() - len
    );
    no_validation_errors(&gpu);
}

/// SmolLM2: 120 tokens in batches of 64 and 51 (the tiled mat-mat's medium tile; the small
/// one is the other models' and the tiny model's) and 5 (the mat-mat), then 10 tokens over 4
/// splits of 64 positions (the last two, at 128 and 129, with three holding keys). Lavapipe
/// runs a tiled batch at a full tile's cost: batches of 48, 48 and 19 were 160 columns, these
/// are 128; and a decoded token costs ~1.7 s here, so 10 rather than 16.
#[test]
fn smollm_as_gpu_greedy_matches_cpu_reference_mode() {
    greedy_long_prompt(util::SMOLLM, 120, (256, 64), 10, (None, None));
}

/// With RoPE and the KV write folded into the split attention (`PIGPU_VK_ROPE=fold`): 72
/// tokens in batches of 32, then 8 decoded at positions 72-79, in the second of 2 splits (the
/// fold changes decoding only, so the prompt is the shorter one: the 120 above cost ~50 s more
/// on lavapipe for no path this test adds). And the prompt attention split over the KV range
/// (`PIGPU_VK_PROMPT_SPLIT=3`, which the GPU does only deep in the cache): the second batch's
/// 64 keys in 2 splits, the last two batches' 67 and 72 in 3, where the test above runs the
/// prompt attention in one pass.
#[test]
fn smollm_as_gpu_rope_fold_greedy_matches_cpu_reference_mode() {
    greedy_long_prompt(util::SMOLLM, 72, (128, 32), 8, (Some(true), Some(3)));
}

/// Qwen2.5: the biases, the untied 145 MB head in segments on the subgroup mat-vec, the mixed
/// Q5_0/Q8_0 QKV (the `any` variants with the segments' types as constants), the two-stage
/// sampler over 149 slices; 40 tokens in batches of 32 (one full small tile, then 3 and 5 on
/// the mat-mat), 4 decoded in the first of 2 splits. (Lavapipe runs a tiled batch at the cost
/// of a full tile, ~110 s for this model's 32 columns: the two tiled batches of 72 tokens
/// before, past the first split, cost ~320 s of a CI test thread.)
#[test]
fn qwen_as_gpu_greedy_matches_cpu_reference_mode() {
    greedy_long_prompt(util::QWEN, 40, (128, 32), 4, (None, None));
}

/// Gemma 3 270M: head size 256 (the staged split attention's and the prompt attention's
/// smaller tiles within lavapipe's 32 KiB), Q/K norms, post-norms, GELU, the mixed QKV; 40
/// tokens in batches of 32, 8 decoded in the first of 2 splits (the split attention at head
/// size 256 over several splits: `engine::vulkan::tests::attention`).
#[test]
fn gemma3_as_gpu_greedy_matches_cpu_reference_mode() {
    greedy_long_prompt(util::GEMMA, 40, (128, 32), 8, (None, None));
}

/// The sampler's paths with every other choice a GPU's: the two-stage sampler (the GPU's)
/// draws what the one-stage sampler draws from the same logits, for greedy with a penalty,
/// top-k, top-p, min-p and the chat defaults together, over 6 steps each.
#[test]
fn tiny_as_gpu_samples_as_the_one_stage_sampler() {
    let model = crate::engines::tiny();
    let one = Tuning {
        sampler_two_stage: Some(false),
        ..tuning()
    };
    let mut two = vulkan_tuned(&model, 128, tuning());
    let mut one = vulkan_tuned(&model, 128, one);
    assert!(two.choices().sampler_two_stage && !one.choices().sampler_two_stage);
    let prompt = tokens(&model, PROMPTS[2]);
    let g = SamplingParams::greedy();
    let cases = [
        SamplingParams {
            repeat_penalty: 1.3,
            repeat_last_n: 16,
            ..g
        },
        SamplingParams {
            temperature: 1.1,
            top_k: 5,
            ..g
        },
        SamplingParams {
            temperature: 0.9,
            top_p: 0.8,
            ..g
        },
        SamplingParams {
            temperature: 1.0,
            min_p: 0.1,
            ..g
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
        },
    ];
    let mut draws = Vec::new();
    for (i, p) in cases.iter().enumerate() {
        let run = |e: &mut VulkanEngine| {
            e.reset();
            e.prefill(&prompt).unwrap();
            let mut rng = pigpu::model::sampler::Rng::new(7 + i as u64);
            (0..6)
                .map(|_| e.step(p, rng.next_f32()).unwrap())
                .collect::<Vec<u32>>()
        };
        let (a, b) = (run(&mut two), run(&mut one));
        assert_eq!(a, b, "case {i} {p:?}: two stages against one");
        draws.push(a);
    }
    assert!(
        draws.windows(2).any(|w| w[0] != w[1]),
        "the settings change the draws: {draws:?}"
    );
    no_validation_errors(&two);
    no_validation_errors(&one);
}
