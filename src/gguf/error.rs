//! The GGUF reader's error type: every message names the file, and the key or tensor, and what
//! was expected.

use std::path::{Path, PathBuf};

/// An error reading a GGUF file. Displays as `gguf: <file>: <what>`.
#[derive(Debug, thiserror::Error)]
#[error("gguf: {}: {kind}", path.display())]
pub struct GgufError {
    /// The file that was being read.
    pub path: PathBuf,
    /// What was wrong with it.
    pub kind: ErrorKind,
}

impl GgufError {
    /// An error about the file at `path`.
    pub fn new(path: &Path, kind: ErrorKind) -> Self {
        GgufError {
            path: path.to_path_buf(),
            kind,
        }
    }
}

/// What was wrong with a GGUF file; each message says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// Opening, mapping or reading the file failed.
    #[error("cannot open or map the file: {0}")]
    Io(#[from] std::io::Error),
    /// The path exists but is not a regular file.
    #[error("is {what}, not a file; expected the path of a .gguf model file")]
    NotAFile {
        /// What the path is instead ("a directory", "a named pipe", …).
        what: &'static str,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: starts with {found:02x?}, expected the magic \"GGUF\"")]
    BadMagic {
        /// The bytes found at the start of the file (up to four).
        found: Vec<u8>,
    },
    /// A version other than 2 or 3.
    #[error("GGUF version {0} is not supported (this build reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    /// The version field reads as a byte-swapped 2 or 3: the file was written big-endian.
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    /// The file ended before a field that the header says is there.
    #[error("file ends at byte {file_len} while reading {what} at offset {offset} (needs {needed} bytes)")]
    Truncated {
        /// The field being read (e.g. "tensor count").
        what: String,
        /// Its offset in the file, in bytes.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Length of the whole file, in bytes.
        file_len: u64,
    },
    /// A count in the file exceeds the reader's cap (`MAX_TENSORS`, `MAX_METADATA`, …).
    #[error("{what} is {count}, more than the limit of {limit}")]
    TooMany {
        /// What was counted.
        what: String,
        /// The count in the file.
        count: u64,
        /// The cap it exceeds.
        limit: u64,
    },
    /// A metadata key's bytes are not UTF-8.
    #[error("metadata key at offset {offset} is not valid UTF-8")]
    KeyNotUtf8 {
        /// File offset of the key, in bytes.
        offset: u64,
    },
    /// A string value's bytes are not UTF-8.
    #[error("metadata key '{key}': string value at offset {offset} is not valid UTF-8")]
    ValueNotUtf8 {
        /// The key the value belongs to.
        key: String,
        /// File offset of the string, in bytes.
        offset: u64,
    },
    /// A value type id outside 0..=12.
    #[error("metadata key '{key}': unknown value type {type_id}")]
    UnknownValueType {
        /// The key whose value has the type id.
        key: String,
        /// The type id read.
        type_id: u32,
    },
    /// Arrays of arrays nested deeper than `MAX_ARRAY_DEPTH`.
    #[error("metadata key '{key}': arrays nested deeper than {limit} levels")]
    NestedTooDeep {
        /// The key of the outermost array.
        key: String,
        /// The depth allowed.
        limit: usize,
    },
    /// The same metadata key twice in one file.
    #[error("metadata key '{key}' appears twice")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A metadata value has another type than the key needs.
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    WrongType {
        /// The key looked up.
        key: String,
        /// The type the caller needs, in words.
        expected: String,
        /// The type in the file.
        found: String,
    },
    /// A required metadata key is absent.
    #[error("metadata key '{key}' is missing")]
    MissingKey {
        /// The key that is absent.
        key: String,
    },
    /// `general.alignment` is 0 or not a power of two.
    #[error("general.alignment is {0}, expected a non-zero power of two")]
    BadAlignment(u64),
    /// A tensor name's bytes are not UTF-8.
    #[error("tensor name at offset {offset} is not valid UTF-8")]
    TensorNameNotUtf8 {
        /// File offset of the name, in bytes.
        offset: u64,
    },
    /// Two tensors with the same name.
    #[error("tensor '{name}' appears twice")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
    },
    /// A tensor with 0 or more than `MAX_DIMS` dimensions.
    #[error("tensor '{name}' has {n_dims} dimensions, expected 1 to {max}")]
    BadDims {
        /// The tensor's name.
        name: String,
        /// The number of dimensions in the file.
        n_dims: u32,
        /// The most allowed (`MAX_DIMS`).
        max: usize,
    },
    #[error(
        "tensor '{name}' has shape {shape:?}: a dimension is 0 or the element count overflows"
    )]
    /// A tensor with a zero dimension, or more elements than fit in a u64.
    BadShape {
        /// The tensor's name.
        name: String,
        /// Its dimensions as read, innermost first.
        shape: Vec<u64>,
    },
    /// A tensor type id this build does not know (see `GgmlType`).
    #[error("tensor '{name}' has unknown type id {type_id}")]
    UnknownTensorType {
        /// The tensor's name.
        name: String,
        /// The type id read.
        type_id: u32,
    },
    /// A block-quantized tensor whose rows are not a whole number of blocks.
    #[error("tensor '{name}' of type {ty} has {ne0} elements per row, expected a multiple of the block size {block}")]
    RowNotBlockMultiple {
        /// The tensor's name.
        name: String,
        /// Its type's name.
        ty: &'static str,
        /// Elements per row (the innermost dimension).
        ne0: u64,
        /// Elements per block of the type.
        block: usize,
    },
    /// A tensor whose data offset is not a multiple of the file's alignment.
    #[error("tensor '{name}' starts at data offset {offset}, expected a multiple of the alignment {alignment}")]
    Misaligned {
        /// The tensor's name.
        name: String,
        /// Its offset into the data section, in bytes.
        offset: u64,
        /// The file's alignment, in bytes.
        alignment: u64,
    },
    /// A tensor whose data runs past the end of the file.
    #[error("tensor '{name}' needs {bytes} bytes at file offset {offset}, file has {file_len}")]
    OutOfFile {
        /// The tensor's name.
        name: String,
        /// Its absolute file offset, in bytes.
        offset: u64,
        /// Bytes its shape and type need.
        bytes: u64,
        /// Length of the whole file, in bytes.
        file_len: u64,
    },
    /// Two tensors whose data ranges share bytes.
    #[error("tensors '{a}' and '{b}' overlap in the data section")]
    Overlap {
        /// The tensor that starts first.
        a: String,
        /// The tensor that starts inside `a`'s data.
        b: String,
    },
}
