//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built `pigpu` binary.
pub fn pigpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pigpu"))
}

/// Runs pigpu with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    pigpu().args(args).output().expect("spawn pigpu")
}

/// Runs pigpu with `args`, writing `input` to its stdin (then closing it), and returns its output.
pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = pigpu()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pigpu");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The directory where `scripts/fetch-models.sh` caches the test models
/// (`$PIGPU_MODEL_CACHE`, default `~/.cache/pigpu/models`).
pub fn model_cache() -> PathBuf {
    if let Some(d) = std::env::var_os("PIGPU_MODEL_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cache/pigpu/models")
}

/// A cached test model by file name, or `None` (with a note on stderr) when it was not fetched.
/// The README's test command always fetches them, so in CI these tests never skip.
pub fn test_model(file: &str) -> Option<PathBuf> {
    let p = model_cache().join(file);
    if p.exists() {
        Some(p)
    } else {
        if std::env::var_os("PIGPU_REQUIRE_MODELS").is_some() {
            panic!(
                "test model {} missing (run scripts/fetch-models.sh)",
                p.display()
            );
        }
        eprintln!(
            "skipping: {} not fetched (run scripts/fetch-models.sh)",
            p.display()
        );
        None
    }
}

pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

/// The project root (for fixtures).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes the GGUF file `src` again as `dst`, with `edit` applied to its metadata and `tensor` to
/// each tensor's bytes (by name): the probe's way of making hostile variants of a real model.
pub fn rewrite_gguf(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<(String, pigpu::gguf::Value)>),
    mut tensor: impl FnMut(&str, &mut Vec<u8>),
) {
    let f = pigpu::gguf::GgufFile::open(src).expect("open the model to rewrite");
    let mut w = pigpu::gguf::GgufWriter::new();
    w.version = f.version();
    w.metadata = f.metadata().to_vec();
    edit(&mut w.metadata);
    for t in f.tensors() {
        let mut data = f.tensor_data(t).to_vec();
        tensor(&t.name, &mut data);
        w = w.tensor(&t.name, &t.shape, t.ty, data);
    }
    std::fs::write(dst, w.to_bytes()).expect("write the rewritten model");
}

/// The metadata value under `key` (which must be there), for [`rewrite_gguf`]'s `edit`.
pub fn meta<'a>(
    md: &'a mut [(String, pigpu::gguf::Value)],
    key: &str,
) -> &'a mut pigpu::gguf::Value {
    &mut md
        .iter_mut()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no metadata key {key}"))
        .1
}

/// The token ids of a JSON array of numbers (the reference files' `prompt_ids`, `greedy.ids`).
pub fn token_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array of token ids: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap_or_else(|| panic!("not a token id: {x}")) as u32)
        .collect()
}

/// Lower-case hex of `bytes` (for digests).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
