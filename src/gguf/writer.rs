//! GGUF writing: [`GgufWriter`] builds small files in memory (tests, fuzz seeds, tiny fixtures);
//! [`FileLayout`] plans a file whose tensor data is streamed afterwards (shaped models of
//! gigabytes, see `crate::model::shapes`), so both write exactly the layout the reader expects.

use super::{Value, ValueType, DEFAULT_ALIGNMENT};
use crate::quant::GgmlType;

/// Builds a GGUF file in memory.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    /// GGUF version written in the header (3 by default).
    pub version: u32,
    /// Metadata key/value pairs, written in this order.
    pub metadata: Vec<(String, Value)>,
    /// Tensors in file order: name, shape (innermost first), type, data bytes.
    pub tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl GgufWriter {
    /// An empty version-3 file.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a metadata key/value pair.
    pub fn kv(mut self, key: &str, value: Value) -> Self {
        self.metadata.push((key.to_string(), value));
        self
    }
    /// Adds a tensor; `data` must hold exactly the bytes its shape and type need.
    pub fn tensor(mut self, name: &str, shape: &[u64], ty: GgmlType, data: Vec<u8>) -> Self {
        self.tensors
            .push((name.to_string(), shape.to_vec(), ty, data));
        self
    }

    /// The whole file: header, metadata, tensor table, padding, aligned tensor data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let entries: Vec<TensorEntry> = self
            .tensors
            .iter()
            .map(|(name, shape, ty, data)| TensorEntry {
                name: name.clone(),
                shape: shape.clone(),
                ty: *ty,
                bytes: data.len() as u64,
            })
            .collect();
        let layout = FileLayout::new(self.version, &self.metadata, entries);
        let mut out = layout.header.clone();
        for ((_, _, _, data), off) in self.tensors.iter().zip(&layout.offsets) {
            out.resize(layout.header.len() + *off as usize, 0);
            out.extend_from_slice(data);
        }
        out
    }
}

/// One entry of a file's tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// Tensor name.
    pub name: String,
    /// Dimensions, innermost first (ggml's `ne`).
    pub shape: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Size of the tensor's data in bytes.
    pub bytes: u64,
}

/// A planned file: the encoded header (magic, metadata, tensor table, padding up to the data
/// section) and where each tensor's data goes. The data section starts at `header.len()`;
/// tensor `i` starts `offsets[i]` bytes into it, and the gaps between tensors are zeros.
#[derive(Debug, Clone)]
pub struct FileLayout {
    /// Encoded header, tensor table and padding; the data section starts at its end.
    pub header: Vec<u8>,
    /// Offset of each tensor's data in the data section, in the order of `tensors`.
    pub offsets: Vec<u64>,
    /// The tensor table, in file order.
    pub tensors: Vec<TensorEntry>,
    /// Length of the whole file.
    pub file_len: u64,
}

impl FileLayout {
    /// Plans a file of GGUF `version` with `metadata` and `tensors` in the given order, aligned to
    /// `general.alignment` when the metadata sets a power of two, else to 32 bytes.
    pub fn new(
        version: u32,
        metadata: &[(String, Value)],
        tensors: Vec<TensorEntry>,
    ) -> FileLayout {
        let align = alignment(metadata);
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            write_str(&mut out, k);
            out.extend_from_slice(&type_id(v.value_type()).to_le_bytes());
            write_value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(tensors.len());
        let mut end = 0u64;
        for t in &tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in &t.shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            end = offset + t.bytes;
            offset = end.div_ceil(align) * align;
        }
        let data_start = (out.len() as u64).div_ceil(align) * align;
        out.resize(data_start as usize, 0);
        FileLayout {
            header: out,
            offsets,
            tensors,
            file_len: data_start + end,
        }
    }

    /// Absolute file offset of tensor `i`'s data.
    pub fn file_offset(&self, i: usize) -> u64 {
        self.header.len() as u64 + self.offsets[i]
    }
}

fn alignment(metadata: &[(String, Value)]) -> u64 {
    metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_int())
        .and_then(|a| u64::try_from(a).ok())
        .filter(|a| a.is_power_of_two())
        .unwrap_or(DEFAULT_ALIGNMENT)
}

fn type_id(t: ValueType) -> u32 {
    (0..13)
        .find(|&i| ValueType::from_id(i) == Some(t))
        .expect("every type has an id")
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.extend_from_slice(&type_id(a.elem_type).to_le_bytes());
            out.extend_from_slice(&(a.values.len() as u64).to_le_bytes());
            for x in &a.values {
                write_value(out, x);
            }
        }
    }
}
