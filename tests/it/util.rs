//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The built `pigpu` binary.
pub fn pigpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pigpu"))
}

/// Runs pigpu with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    pigpu().args(args).output().expect("spawn pigpu")
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
