//! The GGUF container format (versions 2 and 3): header, metadata, tensor infos, and the
//! memory-mapped tensor data. Every count, length, offset and size read from the file is checked
//! against the bytes that are really there before it is used, so a hostile file cannot make the
//! reader allocate gigabytes or read out of bounds.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count,
//! metadata key/value pairs, tensor infos, padding to `general.alignment` (default 32), data.

mod error;
mod reader;
mod value;
mod writer;

use std::collections::HashMap;
use std::ops::Deref;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use error::{ErrorKind, GgufError};
pub use value::{Array, Value, ValueType};
pub use writer::{FileLayout, GgufWriter, TensorEntry};

use crate::quant::GgmlType;

/// Tensors in one file, at most.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Metadata entries in one file, at most.
pub const MAX_METADATA: u64 = 1 << 20;
/// Array elements in all of a file's metadata together, at most. Each element becomes a
/// [`Value`] of 32 bytes in memory although it may take one byte on disk, so without this cap a
/// large hostile file could make the reader allocate many times its own size. Real models stay far
/// below it (the largest vocabularies have about 260k tokens, stored in three arrays).
pub const MAX_METADATA_VALUES: u64 = 1 << 23;
/// Nesting depth of arrays in metadata, at most.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Dimensions of one tensor, at most (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// One tensor's entry in the file's tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost (contiguous) first, as ggml's `ne`.
    pub shape: Vec<u64>,
    /// Element type (float or quantized block format).
    pub ty: GgmlType,
    /// Offset relative to the start of the data section.
    pub offset: u64,
    /// Size in bytes.
    pub bytes: u64,
}

impl TensorInfo {
    /// Elements in the tensor (product of the dimensions).
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
    /// Number of rows (product of all dimensions but the first).
    pub fn n_rows(&self) -> u64 {
        self.shape.iter().skip(1).product()
    }
    /// Bytes in one row (the first dimension).
    pub fn row_bytes(&self) -> u64 {
        self.ty.bytes_for(self.shape[0]).unwrap_or(0)
    }
}

/// The bytes behind a file: a read-only memory map, or an owned buffer (for tests and fuzzing).
enum Storage {
    /// The watch is declared first so that it ends before the map does (fields drop in order).
    Mmap {
        _watch: crate::sys::sigbus::Watch,
        map: memmap2::Mmap,
    },
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mmap { map, .. } => map,
            Storage::Owned(v) => v,
        }
    }
}

/// An opened, validated GGUF file.
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    storage: Storage,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// What a non-regular file is, for the error message.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

impl GgufFile {
    /// Opens and validates `path`, memory-mapping it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let err = |k: ErrorKind| GgufError::new(path, k);
        // Non-blocking, so that a FIFO given as the model cannot hang the open; the type is
        // checked before mapping, because mmap on a directory or device fails with a confusing
        // "No such device".
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| err(e.into()))?;
        let meta = file.metadata().map_err(|e| err(e.into()))?;
        if !meta.is_file() {
            return Err(err(ErrorKind::NotAFile {
                what: file_kind(&meta.file_type()),
            }));
        }
        // SAFETY: the map is read-only and private to this process. If another process truncates
        // the file while it is mapped, reads may fault (SIGBUS); every GGUF runtime accepts that
        // risk to avoid copying gigabytes of weights, and pigpu never writes model files. The
        // binary turns such a fault inside this map into an error naming the file (sys::sigbus).
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| err(e.into()))?;
        let _watch = crate::sys::sigbus::watch(map.as_ptr(), map.len(), path);
        Self::parse(path, Storage::Mmap { _watch, map })
    }

    /// Parses an in-memory file; `name` is used in error messages.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::parse(name.as_ref(), Storage::Owned(bytes))
    }

    fn parse(path: &Path, storage: Storage) -> Result<GgufFile, GgufError> {
        let parsed = reader::parse(&storage).map_err(|k| GgufError::new(path, k))?;
        let index = parsed
            .metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: path.to_path_buf(),
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            index,
            tensors: parsed.tensors,
            tensor_index,
            storage,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The GGUF version in the header (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }
    /// Alignment of the data section and of every tensor in it, in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }
    /// File offset where the data section starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
    /// Length of the whole file, in bytes.
    pub fn file_len(&self) -> u64 {
        self.storage.len() as u64
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }
    /// The value of a metadata key; `None` when absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn error(&self, kind: ErrorKind) -> GgufError {
        GgufError::new(&self.path, kind)
    }
    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> GgufError {
        self.error(ErrorKind::WrongType {
            key: key.to_string(),
            expected: expected.to_string(),
            found: found.type_description(),
        })
    }
    /// The value of `key`, or a `MissingKey` error.
    pub fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| {
            self.error(ErrorKind::MissingKey {
                key: key.to_string(),
            })
        })
    }

    /// An integer key as u64 (any integer type, non-negative); `Ok(None)` when absent.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_int().and_then(|i| u64::try_from(i).ok()) {
                Some(i) => Ok(Some(i)),
                None => Err(self.wrong_type(key, "a non-negative integer", v)),
            },
        }
    }
    /// An integer key as u32; `Ok(None)` when absent.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_int().and_then(|i| u32::try_from(i).ok()) {
                Some(i) => Ok(Some(i)),
                None => Err(self.wrong_type(key, "an integer in 0..2^32", v)),
            },
        }
    }
    /// A numeric key as f32; `Ok(None)` when absent.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|f| Some(f as f32))
                .ok_or_else(|| self.wrong_type(key, "a number", v)),
        }
    }
    /// A boolean key; `Ok(None)` when absent, an error naming the key when it is not a bool.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "bool", v)),
        }
    }
    /// A string key; `Ok(None)` when absent, an error naming the key when it is not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "string", v)),
        }
    }
    /// An array key whose elements all have type `elem`; `Ok(None)` when absent.
    pub fn get_array(&self, key: &str, elem: ValueType) -> Result<Option<&[Value]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) if a.elem_type == elem => Ok(Some(&a.values)),
            Some(v) => Err(self.wrong_type(key, &format!("array of {elem}"), v)),
        }
    }

    /// `general.architecture`, required by every model file.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")?.ok_or_else(|| {
            self.error(ErrorKind::MissingKey {
                key: "general.architecture".into(),
            })
        })
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    /// A tensor's entry by name; `None` when the file has no such tensor.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }
    /// The bytes of a tensor of this file (bounds were checked when the file was opened).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.storage[start..start + info.bytes as usize]
    }
    /// The bytes of the whole file (e.g. to stream tensor ranges to a GPU).
    pub fn bytes(&self) -> &[u8] {
        &self.storage
    }
}

#[cfg(test)]
mod tests;
