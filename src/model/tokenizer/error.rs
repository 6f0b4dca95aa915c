//! The tokenizer's error type: every message names the model file and the metadata key or value
//! that was wrong, and what was expected.

use std::path::PathBuf;

use crate::gguf::GgufError;

/// An error building a tokenizer from GGUF metadata, or using it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer: {}: has no tokenizer (metadata key '{key}' is missing)", path.display())]
    NoTokenizer { path: PathBuf, key: &'static str },
    #[error(
        "tokenizer: {}: tokenizer.ggml.model = \"{model}\" is not supported \
         (this build reads \"gpt2\" byte-level BPE and \"llama\" SentencePiece vocabularies)",
        path.display()
    )]
    UnsupportedModel { path: PathBuf, model: String },
    #[error(
        "tokenizer: {}: tokenizer.ggml.pre = \"{pre}\" is not a pre-tokenizer this build knows; \
         tokenizing with a guessed one would silently give wrong ids (known: {known})",
        path.display()
    )]
    UnknownPre {
        path: PathBuf,
        pre: String,
        known: String,
    },
    #[error("tokenizer: {}: metadata key '{key}' has {len} entries, expected {n_vocab} (one per token)", path.display())]
    LengthMismatch {
        path: PathBuf,
        key: &'static str,
        len: usize,
        n_vocab: usize,
    },
    #[error("tokenizer: {}: metadata key '{key}' is {found}, expected {expected}", path.display())]
    BadValue {
        path: PathBuf,
        key: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("tokenizer: {}: metadata key '{key}' = {id} is not a token id (vocabulary has {n_vocab} tokens)", path.display())]
    BadSpecialId {
        path: PathBuf,
        key: &'static str,
        id: u64,
        n_vocab: usize,
    },
    #[error("tokenizer: {}: {flag} is set but the file names no {what} token", path.display())]
    MissingSpecial {
        path: PathBuf,
        flag: &'static str,
        what: &'static str,
    },
    #[error("tokenizer: {}: cannot build the {what}: {message}", path.display())]
    Build {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("tokenizer: cannot encode {len} bytes of text: {message}")]
    Encode { len: usize, message: String },
}
