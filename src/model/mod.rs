//! Model layer: hyper-parameters from GGUF metadata, weights by tensor name, tokenizer, chat
//! template and sampler (the generation loop is `crate::session`'s). Engines take a [`Model`]
//! and never parse GGUF metadata themselves.

pub mod chat;
pub mod config;
pub mod sampler;
pub mod shapes;
pub mod tokenizer;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

pub use config::{Activation, Config, RopeStyle};
pub use weights::{Weight, Weights};

use crate::gguf::{GgufError, GgufFile};
use crate::quant::GgmlType;

/// Why a GGUF file cannot be run as a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("architecture '{arch}' is not supported (this build runs: llama, qwen2, qwen3, gemma3, smollm3)")]
    UnsupportedArch { arch: String },
    #[error("metadata key '{key}' is missing")]
    MissingKey { key: String },
    #[error("metadata key '{key}' is {value}, expected {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
    #[error("tensor '{name}' is missing")]
    MissingTensor { name: String },
    #[error("tensor '{name}' has shape {shape:?}, expected {expected:?}")]
    BadShape {
        name: String,
        shape: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error(
        "tensor '{name}' has type {ty}, which this engine cannot run (supported: {supported})"
    )]
    UnsupportedType {
        name: String,
        ty: GgmlType,
        supported: String,
    },
    #[error("this is part {part} of a model split into {count} files (split.count); pigpu loads one-file models only: merge the parts with llama.cpp's `llama-gguf-split --merge FIRST-PART.gguf OUT.gguf`, or pick a quant published as one file")]
    SplitFile { part: u64, count: u64 },
}

/// A loaded (memory-mapped, validated) model: the file, its hyper-parameters and its weights.
/// Shared between the engine and the host code through an `Arc`.
pub struct Model {
    pub file: GgufFile,
    pub config: Config,
    pub weights: Weights,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("file", &self.file.path())
            .field("config", &self.config)
            .finish()
    }
}

impl Model {
    /// Opens `path`, reads the hyper-parameters and looks up every weight.
    pub fn load(path: impl AsRef<Path>) -> Result<Arc<Model>, ModelError> {
        Self::from_gguf(GgufFile::open(path)?)
    }

    pub fn from_gguf(file: GgufFile) -> Result<Arc<Model>, ModelError> {
        // Parts of a split model (llama.cpp's gguf-split: `split.no` counts from 0) hold only some
        // tensors, and only the first has the hyper-parameters: without this check they would
        // fail later with a missing tensor or key, which hides the real cause.
        if let Some(count) = file.get_u64("split.count")?.filter(|&n| n > 1) {
            let part = file.get_u64("split.no")?.unwrap_or(0) + 1;
            return Err(ModelError::SplitFile { part, count });
        }
        let config = Config::from_gguf(&file)?;
        let weights = Weights::from_gguf(&file, &config)?;
        Ok(Arc::new(Model {
            file,
            config,
            weights,
        }))
    }

    /// The bytes of a weight in the memory map.
    pub fn data(&self, w: &Weight) -> &[u8] {
        let start = w.file_offset as usize;
        &self.file.bytes()[start..start + w.bytes as usize]
    }

    /// A vector weight (norm, bias) as f32 values.
    pub fn vector_f32(&self, w: &Weight) -> Vec<f32> {
        let b = self.data(w);
        match w.ty {
            GgmlType::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    }

    /// Bytes of all weights (what a GPU engine uploads).
    pub fn weight_bytes(&self) -> u64 {
        self.weights.all().iter().map(|w| w.bytes).sum()
    }
}
