//! The tokenizer's error type: every message names the model file and the metadata key or value
//! that was wrong, and what was expected.

use std::path::PathBuf;

use crate::gguf::GgufError;

/// An error building a tokenizer from GGUF metadata, or using it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file itself could not be read as GGUF.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A metadata key every tokenizer needs is absent.
    #[error("tokenizer: {}: has no tokenizer (metadata key '{key}' is missing)", path.display())]
    NoTokenizer {
        /// The model file.
        path: PathBuf,
        /// The missing key.
        key: &'static str,
    },
    #[error(
        "tokenizer: {}: tokenizer.ggml.model = \"{model}\" is not supported \
         (this build reads \"gpt2\" byte-level BPE and \"llama\" SentencePiece vocabularies)",
        path.display()
    )]
    /// `tokenizer.ggml.model` names a vocabulary kind this build cannot read.
    UnsupportedModel {
        /// The model file.
        path: PathBuf,
        /// The kind named in the file.
        model: String,
    },
    #[error(
        "tokenizer: {}: tokenizer.ggml.pre = \"{pre}\" is not a pre-tokenizer this build knows; \
         tokenizing with a guessed one would silently give wrong ids (known: {known})",
        path.display()
    )]
    /// `tokenizer.ggml.pre` names a pre-tokenizer this build does not know.
    UnknownPre {
        /// The model file.
        path: PathBuf,
        /// The pre-tokenizer named in the file.
        pre: String,
        /// The pre-tokenizers this build knows, comma-separated.
        known: String,
    },
    /// A per-token array has another length than the vocabulary.
    #[error("tokenizer: {}: metadata key '{key}' has {len} entries, expected {n_vocab} (one per token)", path.display())]
    LengthMismatch {
        /// The model file.
        path: PathBuf,
        /// The array's key.
        key: &'static str,
        /// Its length.
        len: usize,
        /// Tokens in the vocabulary (`tokenizer.ggml.tokens`).
        n_vocab: usize,
    },
    /// A tokenizer key has a value of the wrong type or form.
    #[error("tokenizer: {}: metadata key '{key}' is {found}, expected {expected}", path.display())]
    BadValue {
        /// The model file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What was expected, in words.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A special-token key holds an id outside the vocabulary.
    #[error("tokenizer: {}: metadata key '{key}' = {id} is not a token id (vocabulary has {n_vocab} tokens)", path.display())]
    BadSpecialId {
        /// The model file.
        path: PathBuf,
        /// The key (`tokenizer.ggml.bos_token_id`, …).
        key: &'static str,
        /// The id in the file.
        id: u64,
        /// Tokens in the vocabulary.
        n_vocab: usize,
    },
    /// An `add_*_token` flag is set but the matching special token is absent.
    #[error("tokenizer: {}: {flag} is set but the file names no {what} token", path.display())]
    MissingSpecial {
        /// The model file.
        path: PathBuf,
        /// The flag's key.
        flag: &'static str,
        /// Which token it needs ("BOS", "EOS").
        what: &'static str,
    },
    /// Building the encoder from the vocabulary failed.
    #[error("tokenizer: {}: cannot build the {what}: {message}", path.display())]
    Build {
        /// The model file.
        path: PathBuf,
        /// What was being built (merge table, pre-tokenizer regex, …).
        what: &'static str,
        /// The underlying error, as text.
        message: String,
    },
    /// Encoding a text failed.
    #[error("tokenizer: cannot encode {len} bytes of text: {message}")]
    Encode {
        /// Length of the text, in bytes.
        len: usize,
        /// The underlying error, as text.
        message: String,
    },
}
