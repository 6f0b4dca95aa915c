//! Shaped models end to end: `pigpu shape write` and `list` through the real binary, a tiny
//! shape run on the CPU engine and benchmarked by name (`bench --shape`), and the same file on
//! the Vulkan engine on lavapipe (validation layer on) against the CPU engine's exact mode.

use pigpu::engine::{Engine, SamplingParams};
use pigpu::model::tokenizer::Tokenizer;
use serde_json::Value as J;

use crate::engines;
use crate::util;

#[test]
fn list_names_every_required_shape() {
    let out = util::run(&["shape", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: J = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for want in [
        "llama-3.2-1b",
        "llama-3.2-3b",
        "llama-3.1-8b",
        "qwen2.5-7b",
        "tiny-llama",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let text = util::run(&["shape", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("q4_k_m"));
}

#[test]
fn bad_names_fail_with_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("x.gguf");
    let out = util::run(&["shape", "write", "llama-70b", out_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown shape 'llama-70b'") && err.contains("llama-3.1-8b"),
        "{err}"
    );
    assert!(!out_path.exists());
}

#[test]
fn written_tiny_shape_runs_on_the_cpu_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let p = path.to_str().unwrap();
    let out = util::run(&[
        "shape",
        "write",
        "tiny-qwen2:q4_k_m",
        p,
        "--seed",
        "4",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w: J = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(w["shape"], "tiny-qwen2:q4_k_m");
    assert_eq!(
        w["bytes"].as_u64(),
        Some(std::fs::metadata(&path).unwrap().len())
    );
    // Q4_K_M on 256-wide rows: Q4_K, except Q6_K for attn_v and ffn_down in the layer
    // use_more_bits picks (of 2 layers: the last) and for the separate output.
    assert_eq!(w["types"]["Q6_K"][0], 1 + 1 + 1, "{w}");
    assert_eq!(w["types"]["Q4_K"][0], 2 * 6 + 1, "{w}");

    let out = util::run(&[
        "run",
        p,
        "-p",
        "Hello there",
        "-n",
        "12",
        "--temp",
        "0",
        "--backend",
        "cpu",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: J = serde_json::from_slice(&out.stdout).unwrap();
    let n = r["tokens"].as_array().unwrap().len();
    // Random weights may well pick an end-of-generation token; anything else runs the full 12.
    assert!(n == 12 || r["stop"] != "length", "{r}");
    assert!(n >= 1, "{r}");
}

#[test]
fn bench_shape_writes_to_the_cache_once() {
    let dir = tempfile::tempdir().unwrap();
    let bench = || {
        util::pigpu()
            .env("PIGPU_SHAPE_CACHE", dir.path())
            .args([
                "bench",
                "--shape",
                "tiny-llama",
                "-p",
                "8",
                "-n",
                "4",
                "-r",
                "1",
                "--backend",
                "cpu",
                "--no-extra",
                "-o",
                "json",
            ])
            .output()
            .unwrap()
    };
    let first = bench();
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    assert!(err.contains("writing shape tiny-llama:q4_k_m"), "{err}");
    let rows: J = serde_json::from_slice(&first.stdout).unwrap();
    let tests: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["test"].as_str().unwrap())
        .collect();
    assert_eq!(tests, ["pp8", "tg4"]);
    assert!(rows[0]["model_filename"]
        .as_str()
        .unwrap()
        .ends_with("tiny-llama-q4_k_m-seed1-v1.gguf"));
    let second = bench();
    assert!(second.status.success());
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("writing shape"),
        "the cached file is reused"
    );
}

/// The tiny shape on lavapipe: prompt logits within 0.02 of the CPU engine's exact-activation
/// mode (f32 activations, the same arithmetic up to rounding), 16 greedy tokens equal up to a
/// near tie (0.05) of the CPU reference mode, and no validation-layer errors.
#[test]
fn tiny_shape_on_lavapipe_matches_cpu_reference_mode() {
    let model = engines::shaped("tiny-llama:q4_k_m", 2);
    let mut gpu = engines::vulkan(&model, 64);
    let mut cpu = engines::cpu_reference(&model, 64);
    let tok = Tokenizer::from_gguf(&model.file).unwrap();
    let prompt = tok
        .encode("The quick brown fox jumps over", true, true)
        .unwrap();
    gpu.prefill(&prompt).unwrap();
    cpu.prefill(&prompt).unwrap();
    let (lg, lc) = (gpu.logits().unwrap(), cpu.logits().unwrap());
    assert_eq!(lg.len(), lc.len());
    let diff = lg
        .iter()
        .zip(&lc)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("tiny-llama on lavapipe: max |logit difference| vs CPU reference mode {diff:.5}");
    assert!(diff < 0.02, "logits differ by {diff}");
    let p = SamplingParams::greedy();
    let mut ctx = prompt.clone();
    for i in 0..16 {
        let (a, b) = (cpu.step(&p, 0.0).unwrap(), gpu.step(&p, 0.0).unwrap());
        if a != b {
            // Where they part, the CPU reference mode's logits for this context must show a
            // near tie between the two tokens.
            let mut referee = engines::cpu_reference(&model, 64);
            referee.prefill(&ctx).unwrap();
            let l = referee.logits().unwrap();
            let gap = (l[a as usize] - l[b as usize]).abs();
            assert!(
                gap <= 0.05,
                "token {i}: cpu {a}, gpu {b}, logit gap {gap}: not a tie"
            );
            eprintln!("tiny-llama on lavapipe: split at a tie at token {i} (gap {gap:.4})");
            break;
        }
        ctx.push(a);
    }
    eprintln!(
        "tiny-llama on lavapipe: {} of 16 greedy tokens equal to the CPU reference mode",
        ctx.len() - prompt.len()
    );
    let errs = gpu.take_validation_errors();
    assert!(errs.is_empty(), "validation errors:\n{}", errs.join("\n"));
}
