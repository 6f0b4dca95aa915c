//! Unit tests of the reader on files built in memory, well-formed and hostile.

use super::*;

fn small() -> GgufWriter {
    GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.block_count", Value::U32(2))
        .kv(
            "nested",
            Value::Array(Array {
                elem_type: ValueType::Array,
                values: vec![Value::Array(Array {
                    elem_type: ValueType::I16,
                    values: vec![Value::I16(-3), Value::I16(7)],
                })],
            }),
        )
        .tensor("a", &[4, 2], GgmlType::F32, (0..32).collect())
        .tensor("b", &[32], GgmlType::Q8_0, vec![1; 34])
}

#[test]
fn round_trip_metadata_and_tensors() {
    let f = GgufFile::from_bytes("t.gguf", small().to_bytes()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), Some(2));
    let nested = f.get("nested").unwrap().as_array().unwrap();
    assert_eq!(
        nested.values[0].as_array().unwrap().values[1],
        Value::I16(7)
    );
    let a = f.tensor("a").unwrap();
    assert_eq!(a.shape, vec![4, 2]);
    assert_eq!(f.tensor_data(a), &(0..32).collect::<Vec<u8>>()[..]);
    let b = f.tensor("b").unwrap();
    assert_eq!(b.offset % 32, 0);
    assert_eq!(f.tensor_data(b), &[1u8; 34][..]);
    assert_eq!(f.data_offset() % 32, 0);
}

#[test]
fn version_2_reads() {
    let mut w = small();
    w.version = 2;
    assert_eq!(
        GgufFile::from_bytes("t", w.to_bytes()).unwrap().version(),
        2
    );
}

fn err(bytes: Vec<u8>) -> String {
    GgufFile::from_bytes("bad.gguf", bytes)
        .unwrap_err()
        .to_string()
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = small().to_bytes();
    for len in 0..bytes.len() {
        let e = GgufFile::from_bytes("t", bytes[..len].to_vec());
        assert!(e.is_err(), "truncated to {len} bytes still parsed");
    }
}

#[test]
fn bad_magic_and_version() {
    assert!(err(b"GGML\x03\0\0\0".to_vec()).contains("magic"));
    let mut w = small();
    w.version = 1;
    assert!(err(w.to_bytes()).contains("version 1 is not supported"));
    let mut b = small().to_bytes();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(err(b).contains("big-endian"));
}

#[test]
fn absurd_counts_do_not_allocate() {
    let mut b = small().to_bytes();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(b).contains("tensor count"));
    let mut b = small().to_bytes();
    b[16..24].copy_from_slice(&(1u64 << 19).to_le_bytes());
    assert!(err(b).contains("metadata count"));
    // A string array claiming 2^40 elements.
    let w = GgufWriter::new().kv(
        "x",
        Value::Array(Array {
            elem_type: ValueType::String,
            values: vec![],
        }),
    );
    let mut b = w.to_bytes();
    // header 24, key "x" 9, value type 4, element type 4, then the length.
    let at = 24 + 9 + 4 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(err(b).contains("length of array 'x'"));
}

#[test]
fn out_of_file_misaligned_overlapping_unknown() {
    let w = GgufWriter::new().tensor("t", &[32], GgmlType::F32, vec![0; 128]);
    let mut b = w.to_bytes();
    b.truncate(b.len() - 1);
    assert!(err(b).contains("tensor 't' needs 128 bytes"));

    // Patch the offset of tensor 't' (last 8 bytes before padding of the info).
    let w = GgufWriter::new().tensor("t", &[8], GgmlType::F32, vec![0; 32]);
    let b = w.to_bytes();
    let info_end = 24 + 8 + 1 + 4 + 8 + 4 + 8;
    let mut m = b.clone();
    m[info_end - 8..info_end].copy_from_slice(&3u64.to_le_bytes());
    assert!(err(m).contains("alignment"));
    let mut u = b.clone();
    u[info_end - 12..info_end - 8].copy_from_slice(&99u32.to_le_bytes());
    assert!(err(u).contains("unknown type id 99"));

    let w = GgufWriter::new()
        .tensor("a", &[16], GgmlType::F32, vec![0; 64])
        .tensor("b", &[16], GgmlType::F32, vec![0; 64]);
    let mut b = w.to_bytes();
    // Second tensor info: point it at offset 32, inside 'a'.
    let second = 24 + (8 + 1 + 4 + 8 + 4 + 8) + (8 + 1 + 4 + 8 + 4 + 8);
    b[second - 8..second].copy_from_slice(&32u64.to_le_bytes());
    assert!(err(b).contains("overlap"));
}

#[test]
fn invalid_utf8_key_and_bad_alignment() {
    let w = GgufWriter::new().kv("k\u{e9}", Value::U8(1));
    let mut b = w.to_bytes();
    let pos = b.windows(2).position(|x| x == [0xc3, 0xa9]).unwrap();
    b[pos] = 0xff;
    assert!(err(b).contains("not valid UTF-8"));
    let w = GgufWriter::new().kv("general.alignment", Value::U32(3));
    assert!(err(w.to_bytes()).contains("power of two"));
}

#[test]
fn row_must_be_whole_blocks() {
    let w = GgufWriter::new().tensor("q", &[31], GgmlType::Q8_0, vec![0; 34]);
    assert!(err(w.to_bytes()).contains("multiple of the block size 32"));
}

#[test]
fn typed_getters_name_the_key() {
    let f = GgufFile::from_bytes("t.gguf", small().to_bytes()).unwrap();
    let e = f.get_str("llama.block_count").unwrap_err().to_string();
    assert!(
        e.contains("'llama.block_count'") && e.contains("expected string"),
        "{e}"
    );
    assert!(f
        .require("nope")
        .unwrap_err()
        .to_string()
        .contains("'nope' is missing"));
}

#[test]
fn metadata_values_are_capped_across_arrays() {
    // Two u8 arrays whose lengths fit the file one at a time but together pass the cap: the
    // second is refused before its elements are read.
    let half = MAX_METADATA_VALUES / 2 + 1;
    let file = |keys: &[&str]| {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((keys.len() as u64).to_le_bytes());
        for k in keys {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
            b.extend(9u32.to_le_bytes()); // array
            b.extend(0u32.to_le_bytes()); // of u8
            b.extend(half.to_le_bytes());
            b.resize(b.len() + half as usize, 7);
        }
        b
    };
    let e = err(file(&["a", "b"]));
    assert!(
        e.contains("array elements in the metadata up to key 'b'") && e.contains("limit"),
        "{e}"
    );
    // One of them alone is fine.
    let f = GgufFile::from_bytes("ok", file(&["a"])).unwrap();
    assert_eq!(
        f.get("a").unwrap().as_array().unwrap().values.len() as u64,
        half
    );
}

#[test]
fn file_with_no_tensors_need_not_be_padded() {
    // Fuzzer input (a harness finding, not a reader bug): a 31-byte header with no metadata and
    // no tensors parses; its data section would start at 32, past the end, which is harmless
    // because no tensor points into it.
    let mut b = GgufWriter::new().to_bytes();
    b.resize(31, 0);
    let f = GgufFile::from_bytes("t", b).unwrap();
    assert!(f.tensors().is_empty());
    assert_eq!((f.data_offset(), f.file_len()), (32, 31));
}
