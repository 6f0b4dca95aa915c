//! The parser proper: a bounds-checked cursor over the file's bytes. Nothing is allocated for a
//! count until the bytes that count implies are known to be in the file.

use super::{
    Array, ErrorKind, TensorInfo, Value, ValueType, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS,
    MAX_METADATA, MAX_METADATA_VALUES, MAX_TENSORS,
};
use crate::quant::GgmlType;

pub(super) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], ErrorKind> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if n > remaining {
            return Err(ErrorKind::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                file_len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }
    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], ErrorKind> {
        let s = self.take(N as u64, what)?;
        Ok(s.try_into().expect("take returned N bytes"))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, ErrorKind> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, ErrorKind> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// A length-prefixed byte string.
    fn bytes(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8], ErrorKind> {
        let len = self.u64(what)?;
        self.take(len, what)
    }
}

/// A count read from the file, checked against a named limit and against the bytes left
/// (each item needs at least `min_item_bytes`).
fn check_count(
    cur: &Cursor,
    count: u64,
    limit: u64,
    min_item_bytes: u64,
    what: &dyn Fn() -> String,
) -> Result<usize, ErrorKind> {
    if count > limit {
        return Err(ErrorKind::TooMany {
            what: what(),
            count,
            limit,
        });
    }
    let needed = count.saturating_mul(min_item_bytes);
    if needed > cur.remaining() {
        return Err(ErrorKind::Truncated {
            what: what(),
            offset: cur.pos as u64,
            needed,
            file_len: cur.buf.len() as u64,
        });
    }
    Ok(count as usize)
}

/// Parses a whole file in its order: the header, the metadata, the tensor table; then checks
/// that every tensor's data lies inside the file and no two overlap.
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, ErrorKind> {
    let mut cur = Cursor { buf, pos: 0 };
    let version = read_magic_and_version(&mut cur)?;
    let n_tensors = cur.u64(&|| "the tensor count".into())?;
    let n_kv = cur.u64(&|| "the metadata count".into())?;
    let metadata = read_metadata(&mut cur, n_kv)?;
    let alignment = alignment_of(&metadata)?;
    let tensors = read_tensor_table(&mut cur, n_tensors, alignment)?;
    let data_offset = (cur.pos as u64).div_ceil(alignment) * alignment;
    check_placement(&tensors, data_offset, buf.len() as u64)?;
    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
    })
}

/// The magic `GGUF` and a version this reader knows (2 or 3; a byte-swapped one is a
/// big-endian file).
fn read_magic_and_version(cur: &mut Cursor) -> Result<u32, ErrorKind> {
    let buf = cur.buf;
    let magic = cur
        .take(4, &|| "the magic".into())
        .map_err(|_| ErrorKind::BadMagic {
            found: buf[..buf.len().min(4)].to_vec(),
        })?;
    if magic != b"GGUF" {
        return Err(ErrorKind::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = cur.u32(&|| "the version".into())?;
    match version {
        2 | 3 => Ok(version),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => Err(ErrorKind::BigEndian),
        v => Err(ErrorKind::UnsupportedVersion(v)),
    }
}

/// `n_kv` metadata pairs, each key once.
fn read_metadata(cur: &mut Cursor, n_kv: u64) -> Result<Vec<(String, Value)>, ErrorKind> {
    // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
    let n_kv = check_count(cur, n_kv, MAX_METADATA, 13, &|| "the metadata count".into())?;
    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv);
    let mut seen = std::collections::HashSet::with_capacity(n_kv);
    let mut values = 0u64;
    for i in 0..n_kv {
        let key_offset = cur.pos as u64;
        let key = cur.bytes(&|| format!("metadata key #{i}"))?;
        let key = std::str::from_utf8(key)
            .map_err(|_| ErrorKind::KeyNotUtf8 { offset: key_offset })?
            .to_string();
        let type_id = cur.u32(&|| format!("the type of metadata key '{key}'"))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| ErrorKind::UnknownValueType {
            key: key.clone(),
            type_id,
        })?;
        let value = read_value(cur, &key, ty, 0, &mut values)?;
        if !seen.insert(key.clone()) {
            return Err(ErrorKind::DuplicateKey { key });
        }
        metadata.push((key, value));
    }
    Ok(metadata)
}

/// `general.alignment` (a power of two), else the default.
fn alignment_of(metadata: &[(String, Value)]) -> Result<u64, ErrorKind> {
    match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, v)) => {
            let a = v.as_int().unwrap_or(0);
            let a = u64::try_from(a).unwrap_or(0);
            if a == 0 || !a.is_power_of_two() {
                return Err(ErrorKind::BadAlignment(a));
            }
            Ok(a)
        }
    }
}

/// `n_tensors` tensor infos, each name once.
fn read_tensor_table(
    cur: &mut Cursor,
    n_tensors: u64,
    alignment: u64,
) -> Result<Vec<TensorInfo>, ErrorKind> {
    // A tensor info takes at least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 + 8 bytes.
    let n_tensors = check_count(cur, n_tensors, MAX_TENSORS, 32, &|| {
        "the tensor count".into()
    })?;
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut names = std::collections::HashSet::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let t = read_tensor_info(cur, i, alignment)?;
        if !names.insert(t.name.clone()) {
            return Err(ErrorKind::DuplicateTensor { name: t.name });
        }
        tensors.push(t);
    }
    Ok(tensors)
}

/// Tensor info `i`: name, shape, type and offset, checked (dimensions, size, whole blocks per
/// row, the offset a multiple of `alignment`).
fn read_tensor_info(cur: &mut Cursor, i: usize, alignment: u64) -> Result<TensorInfo, ErrorKind> {
    let name_offset = cur.pos as u64;
    let name = cur.bytes(&|| format!("the name of tensor #{i}"))?;
    let name = std::str::from_utf8(name)
        .map_err(|_| ErrorKind::TensorNameNotUtf8 {
            offset: name_offset,
        })?
        .to_string();
    let n_dims = cur.u32(&|| format!("the dimension count of tensor '{name}'"))?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(ErrorKind::BadDims {
            name,
            n_dims,
            max: MAX_DIMS,
        });
    }
    let mut shape = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        shape.push(cur.u64(&|| format!("the shape of tensor '{name}'"))?);
    }
    let type_id = cur.u32(&|| format!("the type of tensor '{name}'"))?;
    let offset = cur.u64(&|| format!("the offset of tensor '{name}'"))?;
    let ty = GgmlType::from_id(type_id).ok_or_else(|| ErrorKind::UnknownTensorType {
        name: name.clone(),
        type_id,
    })?;
    let n_elements = shape
        .iter()
        .try_fold(
            1u64,
            |acc, &d| if d == 0 { None } else { acc.checked_mul(d) },
        )
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| ErrorKind::BadShape {
            name: name.clone(),
            shape: shape.clone(),
        })?;
    if shape[0] % ty.block_size() as u64 != 0 {
        return Err(ErrorKind::RowNotBlockMultiple {
            name,
            ty: ty.name(),
            ne0: shape[0],
            block: ty.block_size(),
        });
    }
    let bytes = ty
        .bytes_for(n_elements)
        .ok_or_else(|| ErrorKind::BadShape {
            name: name.clone(),
            shape: shape.clone(),
        })?;
    if offset % alignment != 0 {
        return Err(ErrorKind::Misaligned {
            name,
            offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        shape,
        ty,
        offset,
        bytes,
    })
}

/// Every tensor's data inside the file (`file_len` bytes, data section at `data_offset`), and no
/// two tensors' data overlapping.
fn check_placement(
    tensors: &[TensorInfo],
    data_offset: u64,
    file_len: u64,
) -> Result<(), ErrorKind> {
    for t in tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.bytes));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(ErrorKind::OutOfFile {
                    name: t.name.clone(),
                    offset: data_offset.saturating_add(t.offset),
                    bytes: t.bytes,
                    file_len,
                })
            }
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        if w[0].offset + w[0].bytes > w[1].offset {
            return Err(ErrorKind::Overlap {
                a: w[0].name.clone(),
                b: w[1].name.clone(),
            });
        }
    }
    Ok(())
}

fn read_value(
    cur: &mut Cursor,
    key: &str,
    ty: ValueType,
    depth: usize,
    values_so_far: &mut u64,
) -> Result<Value, ErrorKind> {
    let what = || format!("the value of metadata key '{key}'");
    Ok(match ty {
        ValueType::U8 => Value::U8(cur.array::<1>(&what)?[0]),
        ValueType::I8 => Value::I8(cur.array::<1>(&what)?[0] as i8),
        ValueType::U16 => Value::U16(u16::from_le_bytes(cur.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(cur.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(cur.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(cur.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(cur.array(&what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(cur.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(cur.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(cur.array(&what)?)),
        // Any non-zero byte is true, as in llama.cpp; gguf-py writes 0/1.
        ValueType::Bool => Value::Bool(cur.array::<1>(&what)?[0] != 0),
        ValueType::String => {
            let offset = cur.pos as u64;
            let s = cur.bytes(&what)?;
            let s = std::str::from_utf8(s).map_err(|_| ErrorKind::ValueNotUtf8 {
                key: key.to_string(),
                offset,
            })?;
            Value::String(s.to_string())
        }
        ValueType::Array => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(ErrorKind::NestedTooDeep {
                    key: key.to_string(),
                    limit: MAX_ARRAY_DEPTH,
                });
            }
            let type_id = cur.u32(&what)?;
            let elem_type =
                ValueType::from_id(type_id).ok_or_else(|| ErrorKind::UnknownValueType {
                    key: key.to_string(),
                    type_id,
                })?;
            let len = cur.u64(&what)?;
            let len = check_count(cur, len, u64::MAX, elem_type.min_size() as u64, &|| {
                format!("the length of array '{key}'")
            })?;
            let total = *values_so_far + len as u64;
            if total > MAX_METADATA_VALUES {
                return Err(ErrorKind::TooMany {
                    what: format!("the number of array elements in the metadata up to key '{key}'"),
                    count: total,
                    limit: MAX_METADATA_VALUES,
                });
            }
            *values_so_far = total;
            let mut values = Vec::with_capacity(len);
            for _ in 0..len {
                values.push(read_value(cur, key, elem_type, depth + 1, values_so_far)?);
            }
            Value::Array(Array { elem_type, values })
        }
    })
}
