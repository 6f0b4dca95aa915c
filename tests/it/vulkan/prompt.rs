//! The prompt path on lavapipe with the GPU's choices forced: the tiled mat-mat (which CPU
//! implementations do not use by default) and a batch of more than 64 tokens, so every tile
//! shape the engine picks for a real model runs; last-token logits against the f64 reference,
//! for the default form of the tiled kernel and the vec4 one (`PIGPU_VK_TILED`).

use std::sync::OnceLock;

use pigpu::engine::vulkan::{TiledKernel, Tuning};
use pigpu::engine::Engine;
use pigpu::model::Model;

use super::reference::Reference;
use super::{max_diff, no_validation_errors, tokens, PROMPTS};
use crate::engines::vulkan_tuned;
use crate::util;

#[test]
fn smollm_tiled_prompt_logits_match_f64_reference() {
    tiled_prompt(false);
}

/// The same with the RMSNorms as passes of their own (`PIGPU_VK_NORM=pass`), the head's over
/// the last token's row only, and the vec4 form with prefetch (`PIGPU_VK_TILED`).
#[test]
fn smollm_tiled_prompt_logits_with_the_norm_pass_match_f64_reference() {
    tiled_prompt(true);
}

/// The f64 reference's last-token logits for the one prompt both tests run, computed once for
/// the test binary: the reference's forward pass over 126 tokens of SmolLM2 is ~20 s of one
/// core under load, and the two tests asked for the same numbers.
fn reference_logits(model: &Model, prompt: &[u32]) -> &'static [f64] {
    static LOGITS: OnceLock<(Vec<u32>, Vec<f64>)> = OnceLock::new();
    let (p, l) = LOGITS.get_or_init(|| {
        let t0 = std::time::Instant::now();
        let l = Reference::new(model).logits(prompt);
        eprintln!(
            "f64 reference over {} tokens: {:.1} s",
            prompt.len(),
            t0.elapsed().as_secs_f64()
        );
        (prompt.to_vec(), l)
    });
    assert_eq!(p, prompt, "the reference was computed for another prompt");
    l
}

fn tiled_prompt(norm_pass: bool) {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    // Batches of 70 (large tile) and 40 (medium), then the rest (small; more than 8 tokens).
    let text = [PROMPTS.join("\n\n"), PROMPTS.join(" ")].join("\n");
    let prompt = tokens(&model, &text);
    assert!(
        (120..=135).contains(&prompt.len()),
        "prompt of {} tokens",
        prompt.len()
    );
    let reference = reference_logits(&model, &prompt);
    // One form each, ~1 CPU-min: the default with the fused norms, and the vec4 one with
    // prefetch (which runs all of `vec4`'s code) with the norm pass. The lib's tiled_ tests
    // cover every form on every weight type and fusion.
    let form = if norm_pass {
        TiledKernel::Vec4Prefetch
    } else {
        TiledKernel::Scalar
    };
    let tuning = Tuning {
        prompt_tiled: Some(true),
        tiled_kernel: Some(form),
        ubatch: Some(70),
        norm_pass,
        ..super::lavapipe()
    };
    let mut gpu = vulkan_tuned(&model, 256, tuning);
    for part in [&prompt[..110], &prompt[110..]] {
        gpu.prefill(part).unwrap();
    }
    let (d, i) = max_diff(&gpu.logits().unwrap(), reference);
    let name = form.name();
    eprintln!(
        "tiled ({name}) prompt of {} tokens, norm pass {norm_pass}: max |logit - f64 reference| {d:.4} (at {i})",
        prompt.len()
    );
    assert!(
        d < 0.05,
        "tiled ({name}) prompt: logits differ from the f64 reference by {d} at token {i}"
    );
    no_validation_errors(&gpu);
}

/// Every row of `prefill_all_logits` (perplexity's path: the head over all of a batch's rows,
/// whose mat-mat the engine builds only when first asked) against the logits of the same
/// engine kind after prefilling that row's prefix (the one-token head), fused norms and the
/// norm pass; afterwards the engine holds the last row's logits, as after `prefill`.
#[test]
fn smollm_all_logits_match_each_prefix() {
    let Some(path) = util::test_model(util::SMOLLM) else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let prompt = tokens(&model, PROMPTS[0]);
    let n_vocab = model.config.n_vocab;
    assert!(prompt.len() > 2, "a prompt of several rows");
    for norm_pass in [false, true] {
        let tuning = Tuning {
            norm_pass,
            ..crate::engines::lavapipe()
        };
        let mut all = vulkan_tuned(&model, 64, tuning.clone());
        let rows = all.prefill_all_logits(&prompt).unwrap();
        assert_eq!(rows.len(), prompt.len() * n_vocab);
        let after = all.logits().unwrap();
        let mut one = vulkan_tuned(&model, 64, tuning);
        for (i, row) in rows.chunks_exact(n_vocab).enumerate() {
            one.reset();
            one.prefill(&prompt[..=i]).unwrap();
            let want: Vec<f64> = one.logits().unwrap().iter().map(|&v| v as f64).collect();
            let (d, at) = max_diff(row, &want);
            assert!(
                d < 0.01,
                "norm pass {norm_pass}: all-logits row {i} differs from its prefix's logits by {d} at {at}"
            );
        }
        let last: Vec<f64> = rows[rows.len() - n_vocab..]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let (d, _) = max_diff(&after, &last);
        // Row 0 then holds the one-token head's mat-vec over the last row: another summation
        // order than the mat-mat's.
        assert!(
            d < 0.01,
            "norm pass {norm_pass}: logits after all-logits differ from its last row by {d}"
        );
        no_validation_errors(&all);
        no_validation_errors(&one);
    }
}
