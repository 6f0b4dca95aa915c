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
    /// The file itself could not be read as GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` names an architecture this build cannot run.
    #[error("architecture '{arch}' is not supported (this build runs: llama, qwen2, qwen3, gemma3, smollm3)")]
    UnsupportedArch {
        /// The architecture named in the file.
        arch: String,
    },
    /// A hyper-parameter the architecture needs is absent.
    #[error("metadata key '{key}' is missing")]
    MissingKey {
        /// The metadata key.
        key: String,
    },
    /// A hyper-parameter is out of range or inconsistent with another.
    #[error("metadata key '{key}' is {value}, expected {expected}")]
    BadValue {
        /// The metadata key.
        key: String,
        /// Its value in the file, as text.
        value: String,
        /// What was expected, in words.
        expected: String,
    },
    /// A weight tensor the architecture needs is absent.
    #[error("tensor '{name}' is missing")]
    MissingTensor {
        /// The tensor name.
        name: String,
    },
    /// A weight tensor's dimensions disagree with the hyper-parameters.
    #[error("tensor '{name}' has shape {shape:?}, expected {expected:?}")]
    BadShape {
        /// The tensor name.
        name: String,
        /// Its dimensions in the file, innermost first.
        shape: Vec<u64>,
        /// The dimensions the hyper-parameters imply.
        expected: Vec<u64>,
    },
    #[error(
        "tensor '{name}' has type {ty}, which this engine cannot run (supported: {supported})"
    )]
    /// A weight tensor's type has no kernel in the engine that was asked for.
    UnsupportedType {
        /// The tensor name.
        name: String,
        /// Its type.
        ty: GgmlType,
        /// The types that engine runs, comma-separated.
        supported: String,
    },
    /// The file is one part of a split model (`split.count` > 1).
    #[error("this is part {part} of a model split into {count} files (split.count); pigpu loads one-file models only: merge the parts with llama.cpp's `llama-gguf-split --merge FIRST-PART.gguf OUT.gguf`, or pick a quant published as one file")]
    SplitFile {
        /// Which part, counting from 1.
        part: u64,
        /// How many parts the model has.
        count: u64,
    },
}

/// A loaded (memory-mapped, validated) model: the file, its hyper-parameters and its weights.
/// Shared between the engine and the host code through an `Arc`.
pub struct Model {
    /// The mapped GGUF file the weights point into.
    pub file: GgufFile,
    /// Hyper-parameters read from the metadata.
    pub config: Config,
    /// Every weight tensor, looked up and shape-checked.
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

    /// Reads the hyper-parameters from an opened file and looks up every weight.
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
