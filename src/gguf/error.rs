//! The GGUF reader's error type: every message names the file, and the key or tensor, and what
//! was expected.

use std::path::{Path, PathBuf};

/// An error reading a GGUF file. Displays as `gguf: <file>: <what>`.
#[derive(Debug, thiserror::Error)]
#[error("gguf: {}: {kind}", path.display())]
pub struct GgufError {
    pub path: PathBuf,
    pub kind: ErrorKind,
}

impl GgufError {
    pub fn new(path: &Path, kind: ErrorKind) -> Self {
        GgufError {
            path: path.to_path_buf(),
            kind,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot open or map the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("is {what}, not a file; expected the path of a .gguf model file")]
    NotAFile { what: &'static str },
    #[error("not a GGUF file: starts with {found:02x?}, expected the magic \"GGUF\"")]
    BadMagic { found: Vec<u8> },
    #[error("GGUF version {0} is not supported (this build reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("file ends at byte {file_len} while reading {what} at offset {offset} (needs {needed} bytes)")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        file_len: u64,
    },
    #[error("{what} is {count}, more than the limit of {limit}")]
    TooMany {
        what: String,
        count: u64,
        limit: u64,
    },
    #[error("metadata key at offset {offset} is not valid UTF-8")]
    KeyNotUtf8 { offset: u64 },
    #[error("metadata key '{key}': string value at offset {offset} is not valid UTF-8")]
    ValueNotUtf8 { key: String, offset: u64 },
    #[error("metadata key '{key}': unknown value type {type_id}")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("metadata key '{key}': arrays nested deeper than {limit} levels")]
    NestedTooDeep { key: String, limit: usize },
    #[error("metadata key '{key}' appears twice")]
    DuplicateKey { key: String },
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: String,
        found: String,
    },
    #[error("metadata key '{key}' is missing")]
    MissingKey { key: String },
    #[error("general.alignment is {0}, expected a non-zero power of two")]
    BadAlignment(u64),
    #[error("tensor name at offset {offset} is not valid UTF-8")]
    TensorNameNotUtf8 { offset: u64 },
    #[error("tensor '{name}' appears twice")]
    DuplicateTensor { name: String },
    #[error("tensor '{name}' has {n_dims} dimensions, expected 1 to {max}")]
    BadDims {
        name: String,
        n_dims: u32,
        max: usize,
    },
    #[error(
        "tensor '{name}' has shape {shape:?}: a dimension is 0 or the element count overflows"
    )]
    BadShape { name: String, shape: Vec<u64> },
    #[error("tensor '{name}' has unknown type id {type_id}")]
    UnknownTensorType { name: String, type_id: u32 },
    #[error("tensor '{name}' of type {ty} has {ne0} elements per row, expected a multiple of the block size {block}")]
    RowNotBlockMultiple {
        name: String,
        ty: &'static str,
        ne0: u64,
        block: usize,
    },
    #[error("tensor '{name}' starts at data offset {offset}, expected a multiple of the alignment {alignment}")]
    Misaligned {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor '{name}' needs {bytes} bytes at file offset {offset}, file has {file_len}")]
    OutOfFile {
        name: String,
        offset: u64,
        bytes: u64,
        file_len: u64,
    },
    #[error("tensors '{a}' and '{b}' overlap in the data section")]
    Overlap { a: String, b: String },
}
