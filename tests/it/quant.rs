//! Dequantization against gguf-py, bit for bit: hand-picked and random blocks of every supported
//! type, and every tensor of both real test models. The expected data was made by
//! `scripts/ref/quant_reference.py` (see tests/fixtures/quant/README.md).

use crate::util::{hex, root, test_model, QWEN, SMOLLM};
use pigpu::gguf::GgufFile;
use pigpu::quant::{dequantize, dequantize_to_vec, GgmlType};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures/quant").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The splitmix64 byte stream the reference script uses for its bulk blocks.
fn prng_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}

#[test]
fn random_and_edge_blocks_match_gguf_py_bit_for_bit() {
    let doc = fixture("random_blocks.json");
    let types = doc["types"].as_object().unwrap();
    let mut checked = Vec::new();
    for (name, t) in types {
        let ty = GgmlType::from_name(name).unwrap();
        let block_elements = t["block_elements"].as_u64().unwrap() as usize;
        for b in t["blocks"].as_array().unwrap() {
            let bytes = unhex(b["bytes"].as_str().unwrap());
            let want = unhex(b["out"].as_str().unwrap());
            let got = dequantize_to_vec(ty, &bytes, block_elements).unwrap();
            let got = le_bytes(&got);
            if got != want {
                let i = (0..want.len() / 4)
                    .find(|&i| got[4 * i..4 * i + 4] != want[4 * i..4 * i + 4])
                    .unwrap();
                let bits = |v: &[u8]| u32::from_le_bytes(v[4 * i..4 * i + 4].try_into().unwrap());
                panic!(
                    "{name} block ({}): element {i} is {:#010x}, gguf-py gives {:#010x}",
                    b["note"],
                    bits(&got),
                    bits(&want)
                );
            }
        }

        let bulk = &t["bulk"];
        let block_bytes = t["block_bytes"].as_u64().unwrap() as usize;
        let n_blocks = bulk["n_blocks"].as_u64().unwrap() as usize;
        let mut bytes = prng_bytes(bulk["seed"].as_u64().unwrap(), n_blocks * block_bytes);
        let fields: Vec<usize> = bulk["scale_fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_u64().unwrap() as usize)
            .collect();
        for block in bytes.chunks_exact_mut(block_bytes) {
            for &f in &fields {
                let v = u16::from_le_bytes([block[f], block[f + 1]]);
                let v = if (v >> 10) & 0x1f == 0x1f {
                    v & !0x4000
                } else {
                    v
                };
                block[f..f + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        let got = dequantize_to_vec(ty, &bytes, n_blocks * block_elements).unwrap();
        let digest = hex(&Sha256::digest(le_bytes(&got)));
        assert_eq!(
            digest,
            bulk["sha256"].as_str().unwrap(),
            "{name}: {n_blocks} pseudo-random blocks differ from gguf-py"
        );
        checked.push(name.clone());
    }
    // Every type the issue lists has reference data.
    for name in [
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
        "Q5_K", "Q6_K",
    ] {
        assert!(checked.iter().any(|c| c == name), "no fixture for {name}");
    }
}

/// Dequantizes one tensor in slices (so no tensor is held whole in f32) and hashes the output.
fn tensor_sha256(f: &GgufFile, t: &pigpu::gguf::TensorInfo, buf: &mut Vec<f32>) -> String {
    const CHUNK_BLOCKS: usize = 4096;
    let data = f.tensor_data(t);
    let (bs, ts) = (t.ty.block_size(), t.ty.type_size());
    let mut h = Sha256::new();
    let mut bytes = Vec::new();
    for chunk in data.chunks(CHUNK_BLOCKS * ts) {
        buf.resize(chunk.len() / ts * bs, 0.0);
        dequantize(t.ty, chunk, buf).unwrap_or_else(|e| panic!("{}: {e}", t.name));
        bytes.clear();
        bytes.extend(buf.iter().flat_map(|x| x.to_le_bytes()));
        h.update(&bytes);
    }
    hex(&h.finalize())
}

fn check_model(file: &str, doc: &Value) -> usize {
    let Some(path) = test_model(file) else {
        return 0;
    };
    let gguf = GgufFile::open(&path).unwrap();
    let entry = doc["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["file"] == file)
        .unwrap_or_else(|| panic!("{file} missing from model_tensors.json"));
    let want = entry["tensors"].as_array().unwrap();
    assert_eq!(want.len(), gguf.tensors().len(), "{file}: tensor count");
    for (w, t) in want.iter().zip(gguf.tensors()) {
        assert_eq!(w["name"], t.name.as_str());
        assert_eq!(w["type"], t.ty.name(), "{}", t.name);
        let shape: Vec<u64> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(shape, t.shape, "{}", t.name);
    }

    // Two workers take tensors from a shared queue, largest first, so both cores stay busy.
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(gguf.tensors()[i].bytes));
    let next = AtomicUsize::new(0);
    let mismatches = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let t = &gguf.tensors()[i];
                    let got = tensor_sha256(&gguf, t, &mut buf);
                    if got != want[i]["sha256"].as_str().unwrap() {
                        mismatches
                            .lock()
                            .unwrap()
                            .push(format!("{} ({})", t.name, t.ty));
                    }
                }
            });
        }
    });
    let mismatches = mismatches.into_inner().unwrap();
    assert!(
        mismatches.is_empty(),
        "{file}: {} tensors differ from gguf-py: {mismatches:?}",
        mismatches.len()
    );
    want.len()
}

#[test]
fn every_tensor_of_both_models_matches_gguf_py() {
    let doc = fixture("model_tensors.json");
    let n = check_model(SMOLLM, &doc) + check_model(QWEN, &doc);
    eprintln!("{n} tensors bit-exact");
}

#[test]
fn bad_sizes_and_unsupported_types_are_errors() {
    let e = dequantize_to_vec(GgmlType::Q4_K, &[0; 143], 256).unwrap_err();
    assert_eq!(
        e.to_string(),
        "256 elements of type Q4_K take 144 bytes, got 143"
    );
    let e = dequantize_to_vec(GgmlType::Q8_0, &[0; 34], 31).unwrap_err();
    assert!(
        e.to_string()
            .contains("not a whole number of 32-element blocks"),
        "{e}"
    );
    let e = dequantize(GgmlType::IQ2_XXS, &[0; 66], &mut [0.0; 256]).unwrap_err();
    assert!(e.to_string().contains("IQ2_XXS is not supported"), "{e}");
    // A huge element count is refused before anything is allocated.
    assert!(dequantize_to_vec(GgmlType::F32, &[], usize::MAX / 2).is_err());
}
