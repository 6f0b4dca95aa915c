//! `pigpu inspect` on the real test models and on bad input.

use crate::util::{run, test_model, QWEN, SMOLLM};
use pigpu::gguf::{GgufFile, GgufWriter, Value};
use serde_json::Value as J;

fn json_of(args: &[&str]) -> J {
    let out = run(args);
    assert!(
        out.status.success(),
        "pigpu failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

#[test]
fn smollm_json_matches_the_file() {
    let Some(p) = test_model(SMOLLM) else { return };
    let path = p.to_str().unwrap();
    let j = json_of(&["inspect", path, "--json"]);
    let f = GgufFile::open(&p).unwrap();

    let md = &j["metadata"];
    assert_eq!(md["general.architecture"], "llama");
    assert_eq!(md["llama.block_count"], 30);
    assert_eq!(md["llama.attention.head_count_kv"], 3);
    assert_eq!(md.as_object().unwrap().len(), f.metadata().len());
    // Long arrays are summarised by default...
    assert_eq!(md["tokenizer.ggml.tokens"]["len"], 49152);
    assert_eq!(md["tokenizer.ggml.tokens"]["head"][1], "<|im_start|>");

    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 272);
    for (t, info) in tensors.iter().zip(f.tensors()) {
        assert_eq!(t["name"], info.name.as_str());
        assert_eq!(t["type"], info.ty.name());
        assert_eq!(t["offset"], info.offset);
        assert_eq!(t["bytes"], info.bytes);
    }
    let embd = tensors
        .iter()
        .find(|t| t["name"] == "token_embd.weight")
        .unwrap();
    // Q8_0: 34 bytes per 32 weights; shape innermost first.
    assert_eq!(embd["type"], "Q8_0");
    assert_eq!(embd["shape"], serde_json::json!([576, 49152]));
    assert_eq!(embd["bytes"], 576 * 49152 / 32 * 34);

    let tok = &j["tokenizer"];
    assert_eq!(tok["model"], "gpt2");
    assert_eq!(tok["pre"], "smollm");
    assert_eq!(tok["n_vocab"], 49152);
    assert_eq!(tok["eos"]["text"], "<|im_end|>");
    assert_eq!(tok["add_bos"], false);
}

#[test]
fn full_keeps_long_arrays() {
    let Some(p) = test_model(SMOLLM) else { return };
    let j = json_of(&["inspect", p.to_str().unwrap(), "--json", "--full"]);
    let tokens = j["metadata"]["tokenizer.ggml.tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[2], "<|im_end|>");
}

#[test]
fn qwen_text_shows_hyper_parameters_tokenizer_and_tensors() {
    let Some(p) = test_model(QWEN) else { return };
    let out = run(&["inspect", p.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "architecture  qwen2",
        "file type     Q4_K_M (general.file_type = 15)",
        "qwen2.block_count",
        "qwen2.attention.head_count_kv",
        "qwen2.rope.freq_base",
        "qwen2.attention.layer_norm_rms_epsilon",
        "pre qwen2, 151,936 tokens",
        "eos 151645 \"<|im_end|>\"",
        "Q4_K ×12",
        "Q5_0 ×133",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("blk.0.attn_q.bias"))
        .unwrap();
    assert!(line.contains("F32") && line.contains("896"), "{line}");
    assert!(text
        .lines()
        .any(|l| l.trim_start().starts_with("block count") && l.contains(" 24 ")));
}

#[test]
fn bad_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let not_gguf = dir.path().join("notes.txt");
    std::fs::write(&not_gguf, "just text, long enough to hold a header").unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, b"GGUF\x03\x00\x00\x00").unwrap();
    for (file, what) in [
        (&missing, "No such file"),
        (&not_gguf, "not a GGUF file"),
        (&truncated, "file ends"),
    ] {
        let out = run(&["inspect", file.to_str().unwrap(), "--json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(file.to_str().unwrap()) && err.contains(what),
            "{err}"
        );
    }
}

#[test]
fn a_gguf_without_tokenizer_is_inspected_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("weights-only.gguf");
    let w = GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.block_count", Value::U32(2));
    std::fs::write(&p, w.to_bytes()).unwrap();
    let j = json_of(&["inspect", p.to_str().unwrap(), "--json"]);
    assert_eq!(j["metadata"]["llama.block_count"], 2);
    assert!(j["tokenizer"]["error"]
        .as_str()
        .unwrap()
        .contains("tokenizer.ggml.model"));
    assert_eq!(j["tensors"], serde_json::json!([]));
}
