//! The fuzzers' seed corpora (fuzz/seeds/): small GGUF files built with `GgufWriter`, truncated
//! variants, and dequantization inputs. This test checks that the committed seeds are exactly what
//! the code below builds and that the reader treats each as expected (whole files parse,
//! truncated ones are errors). Regenerate after changing the list:
//! `PIGPU_WRITE_SEEDS=1 cargo test --release --test it fuzz::`

use crate::util::root;
use pigpu::gguf::ValueType as VT;
use pigpu::gguf::{Array, GgufFile, GgufWriter, Value};
use pigpu::quant::{is_supported, GgmlType};

fn arr(elem_type: VT, values: Vec<Value>) -> Value {
    Value::Array(Array { elem_type, values })
}

/// A deterministic byte pattern for tensor data.
fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

fn tensor(w: GgufWriter, name: &str, shape: &[u64], ty: GgmlType, salt: u8) -> GgufWriter {
    let n: u64 = shape.iter().product();
    let bytes = ty.bytes_for(n).unwrap() as usize;
    w.tensor(name, shape, ty, pattern(bytes, salt))
}

/// The whole seed files, by name.
fn gguf_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let minimal = GgufWriter::new();

    let mut v2 = GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.block_count", Value::U32(1));
    v2 = tensor(v2, "output_norm.weight", &[8], GgmlType::F32, 1);
    v2.version = 2;

    let every_value = GgufWriter::new()
        .kv("u8", Value::U8(200))
        .kv("i8", Value::I8(-5))
        .kv("u16", Value::U16(65000))
        .kv("i16", Value::I16(-300))
        .kv("u32", Value::U32(4_000_000_000))
        .kv("i32", Value::I32(-70_000))
        .kv("f32", Value::F32(0.5))
        .kv("bool", Value::Bool(true))
        .kv("string", Value::String("h\u{e9}llo".into()))
        .kv("u64", Value::U64(u64::MAX))
        .kv("i64", Value::I64(i64::MIN))
        .kv("f64", Value::F64(-1e300))
        .kv(
            "nested",
            arr(
                VT::Array,
                vec![
                    arr(VT::I16, vec![Value::I16(1), Value::I16(-2)]),
                    arr(VT::String, vec![Value::String("x".into())]),
                    arr(VT::Array, vec![arr(VT::Bool, vec![Value::Bool(false)])]),
                ],
            ),
        )
        .kv("general.alignment", Value::U32(64));

    let mut quants = GgufWriter::new().kv("general.architecture", Value::String("qwen2".into()));
    for (i, ty) in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ]
    .into_iter()
    .enumerate()
    {
        let ne0 = ty.block_size() as u64;
        let shape: &[u64] = if i % 2 == 0 { &[ne0] } else { &[ne0, 1, 1, 1] };
        quants = tensor(quants, &format!("t.{}", ty.name()), shape, ty, i as u8);
    }

    let tokens = ["<s>", "</s>", "a", "b", "ab", "\u{120}a"];
    let llama_like = GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.context_length", Value::U32(2048))
        .kv("llama.embedding_length", Value::U32(64))
        .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv(
            "tokenizer.ggml.tokens",
            arr(
                VT::String,
                tokens
                    .iter()
                    .map(|t| Value::String(t.to_string()))
                    .collect(),
            ),
        )
        .kv(
            "tokenizer.ggml.scores",
            arr(VT::F32, (0..6).map(|i| Value::F32(-(i as f32))).collect()),
        )
        .kv(
            "tokenizer.ggml.merges",
            arr(VT::String, vec![Value::String("a b".into())]),
        )
        .kv("tokenizer.ggml.bos_token_id", Value::U32(0));
    let llama_like = tensor(llama_like, "token_embd.weight", &[64, 6], GgmlType::Q8_0, 3);
    let llama_like = tensor(llama_like, "output_norm.weight", &[64], GgmlType::F32, 4);

    let quants = quants.to_bytes();
    let llama_like = llama_like.to_bytes();
    let mut out = vec![
        ("minimal.bin", minimal.to_bytes()),
        ("v2.bin", v2.to_bytes()),
        ("every_value_type.bin", every_value.to_bytes()),
        ("every_quant_type.bin", quants.clone()),
        ("llama_like.bin", llama_like.clone()),
    ];
    // Truncated variants: inside the header, the metadata, the tensor infos and the data.
    for (name, cut) in [
        ("truncated_header.bin", 20),
        ("truncated_metadata.bin", 200),
        ("truncated_data.bin", llama_like.len() - 100),
    ] {
        out.push((name, llama_like[..cut].to_vec()));
    }
    out.push((
        "truncated_tensor_infos.bin",
        quants[..quants.len() / 4].to_vec(),
    ));
    out
}

/// Dequantization seeds: a type-picking byte, then two blocks of that type.
fn dequantize_seeds() -> Vec<(String, Vec<u8>)> {
    GgmlType::ALL
        .iter()
        .enumerate()
        .filter(|(_, t)| is_supported(**t))
        .map(|(i, t)| {
            let mut b = vec![i as u8];
            b.extend(pattern(2 * t.type_size(), i as u8));
            (format!("{}.bin", t.name()), b)
        })
        .collect()
}

fn check_or_write(dir: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = root().join(dir);
    let write = std::env::var_os("PIGPU_WRITE_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if write {
            std::fs::write(&path, bytes).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (regenerate: PIGPU_WRITE_SEEDS=1)", path.display())
            });
            assert!(
                &committed == bytes,
                "{} is stale (regenerate: PIGPU_WRITE_SEEDS=1 cargo test --release --test it fuzz::)",
                path.display()
            );
        }
    }
}

#[test]
fn gguf_seed_corpus_is_current_and_parses_as_expected() {
    let seeds = gguf_seeds();
    for (name, bytes) in &seeds {
        let r = GgufFile::from_bytes(*name, bytes.clone());
        if name.starts_with("truncated_") {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("file ends") || e.contains("needs"),
                "{name}: {e}"
            );
        } else {
            let f = r.unwrap_or_else(|e| panic!("{name}: {e}"));
            for t in f.tensors() {
                assert_eq!(f.tensor_data(t).len() as u64, t.bytes);
            }
        }
    }
    let named: Vec<(String, Vec<u8>)> =
        seeds.into_iter().map(|(n, b)| (n.to_string(), b)).collect();
    check_or_write("fuzz/seeds/gguf", &named);
}

#[test]
fn dequantize_seed_corpus_is_current() {
    check_or_write("fuzz/seeds/dequantize", &dequantize_seeds());
}
