//! Shaped models: names parse, the mix puts the right type on every tensor, sizes match the
//! published files, and a written tiny file reads back as a model with a working tokenizer.

use super::*;
use crate::gguf::GgufFile;
use crate::model::tokenizer::Tokenizer;
use crate::model::{Config, Weights};
use crate::quant::GgmlType;

fn spec(s: &str) -> ShapeSpec {
    s.parse().unwrap()
}

#[test]
fn names_parse_and_bad_names_say_what_is_known() {
    let s = spec("llama-3.2-3b:q4_k_m");
    assert_eq!(s.shape.n_layer, 28);
    assert_eq!(s.mix, Mix::Q4KM);
    assert_eq!(spec("Llama-3.1-8B").mix, Mix::Q4KM, "default mix, any case");
    assert_eq!(spec("smollm2-135m").mix, Mix::Q4_1);
    let e = "llama-9b:q4_k_m"
        .parse::<ShapeSpec>()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown shape 'llama-9b'") && e.contains("qwen2.5-7b"),
        "{e}"
    );
    let e = "llama-3.2-1b:q3"
        .parse::<ShapeSpec>()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown quantization mix 'q3'") && e.contains("q4_k_m"),
        "{e}"
    );
}

/// Tensors per type, as `pigpu inspect` would count them.
fn counts(spec: &ShapeSpec) -> BTreeMap<&'static str, usize> {
    plan(spec, 1)
        .type_counts()
        .into_iter()
        .map(|(k, (n, _))| (k, n))
        .collect()
}

#[test]
fn q4_k_m_mix_follows_llama_quantize() {
    // Llama-3.2-3B: 28 layers, tied embedding. use_more_bits picks 14 layers for attn_v and
    // ffn_down; the tied embedding is the output, so Q6_K.
    let c = counts(&spec("llama-3.2-3b:q4_k_m"));
    assert_eq!(c["Q6_K"], 14 + 14 + 1, "{c:?}");
    assert_eq!(c["Q4_K"], 28 * 7 - 28, "{c:?}");
    assert_eq!(
        c["F32"],
        28 * 2 + 2,
        "norms, output_norm, rope_freqs: {c:?}"
    );
    let p = plan(&spec("llama-3.2-3b:q4_k_m"), 1);
    let ty = |name: &str| {
        p.layout
            .tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.ty)
    };
    assert_eq!(ty("token_embd.weight"), Some(GgmlType::Q6_K));
    assert_eq!(ty("output.weight"), None);
    assert_eq!(ty("blk.0.attn_v.weight"), Some(GgmlType::Q6_K));
    assert_eq!(ty("blk.3.attn_v.weight"), Some(GgmlType::Q4_K));
    assert_eq!(ty("blk.5.ffn_down.weight"), Some(GgmlType::Q6_K));
    assert_eq!(ty("blk.5.ffn_up.weight"), Some(GgmlType::Q4_K));

    // Llama-3.1-8B: separate output (Q6_K), embedding keeps the base type.
    let p = plan(&spec("llama-3.1-8b"), 1);
    let ty = |name: &str| p.layout.tensors.iter().find(|t| t.name == name).unwrap().ty;
    assert_eq!(ty("output.weight"), GgmlType::Q6_K);
    assert_eq!(ty("token_embd.weight"), GgmlType::Q4_K);

    // Qwen2.5-0.5B: 896-wide rows fall back to 32-element formats; ffn_down (4864 wide) does
    // not. 24 layers: use_more_bits picks 12.
    let c = counts(&spec("qwen2.5-0.5b"));
    assert_eq!(c["Q8_0"], 12 + 1, "{c:?}");
    assert_eq!(c["Q5_0"], 24 * 5 + 12, "{c:?}");
    assert_eq!(c["Q6_K"], 12, "{c:?}");
    assert_eq!(c["Q4_K"], 12, "{c:?}");
    assert_eq!(c["F32"], 24 * 5 + 1, "{c:?}");

    // SmolLM2-135M in its real test model's mix: Q4_1 (210), Q8_0 (1), F32 (61).
    let c = counts(&spec("smollm2-135m"));
    assert_eq!(c, BTreeMap::from([("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]));

    // Q8_0 and Q4_0 mixes.
    let c = counts(&spec("llama-3.1-8b:q8_0"));
    assert_eq!(
        c,
        BTreeMap::from([("F32", 32 * 2 + 2), ("Q8_0", 32 * 7 + 2)])
    );
    let c = counts(&spec("llama-3.1-8b:q4_0"));
    assert_eq!(
        c,
        BTreeMap::from([("F32", 66), ("Q4_0", 32 * 7 + 1), ("Q6_K", 1)])
    );
}

#[test]
fn sizes_match_the_published_files() {
    // Published Q4_K_M file sizes of the real models, in GB (1e9 bytes), to 2 %: the mix and
    // the shapes are right if the bytes are.
    for (name, gb) in [
        ("llama-3.2-1b", 0.81),
        ("llama-3.2-3b", 2.02),
        ("llama-3.1-8b", 4.92),
        ("qwen2.5-7b", 4.68),
    ] {
        let p = plan(&spec(name), 1);
        let got = p.layout.file_len as f64 / 1e9;
        assert!(
            (got / gb - 1.0).abs() < 0.02,
            "{name}: {got:.3} GB, published {gb} GB"
        );
    }
}

fn write_tiny(name: &str, seed: u64, threads: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let w = write(&spec(name), seed, &path, threads).unwrap();
    assert!(w.generated);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), w.bytes);
    (dir, path)
}

#[test]
fn tiny_files_read_back_as_models() {
    for name in [
        "tiny-llama:q4_k_m",
        "tiny-qwen2:q4_k_m",
        "tiny-llama:q4_0",
        "tiny-qwen2:q8_0",
    ] {
        let (_dir, path) = write_tiny(name, 3, 2);
        let f = GgufFile::open(&path).unwrap();
        let c = Config::from_gguf(&f).unwrap();
        let s = spec(name).shape;
        assert_eq!(
            (
                c.n_layer,
                c.n_embd,
                c.n_ff,
                c.n_head,
                c.n_head_kv,
                c.n_vocab
            ),
            (2, 256, 768, 4, 2, s.n_vocab as usize)
        );
        let w = Weights::from_gguf(&f, &c).unwrap();
        assert_eq!(w.tied_output, s.tied_embeddings, "{name}");
        // Every tensor has the type the plan says, and all data is finite where dequantizable.
        let p = plan(&spec(name), 3);
        for (info, planned) in f.tensors().iter().zip(&p.layout.tensors) {
            assert_eq!(info.name, planned.name);
            assert_eq!(info.ty, planned.ty, "{}", info.name);
            let n = info.n_elements() as usize;
            let v = crate::quant::dequantize_to_vec(info.ty, f.tensor_data(info), n).unwrap();
            assert!(v.iter().all(|x| x.is_finite()), "{name}: {}", info.name);
        }
        let tok = Tokenizer::from_gguf(&f).unwrap();
        assert_eq!(tok.n_vocab(), s.n_vocab as usize);
        let ids = tok
            .encode("<|im_start|>user\nHello world<|im_end|>", false, true)
            .unwrap();
        assert_eq!(tok.token_text(ids[0]), "<|im_start|>", "{name}: {ids:?}");
        let back: String = ids.iter().map(|&i| tok.token_text(i)).collect();
        assert!(back.contains("Hello"), "{back}");
        assert!(tok.eos_id().is_some_and(|e| tok.is_eog(e)));
    }
}

#[test]
fn same_seed_same_bytes_whatever_the_threads() {
    let (_a, pa) = write_tiny("tiny-qwen2", 5, 1);
    let (_b, pb) = write_tiny("tiny-qwen2", 5, 3);
    let (_c, pc) = write_tiny("tiny-qwen2", 6, 2);
    let (a, b, c) = (
        std::fs::read(pa).unwrap(),
        std::fs::read(pb).unwrap(),
        std::fs::read(pc).unwrap(),
    );
    assert!(a == b, "same seed, 1 vs 3 threads: files differ");
    assert_eq!(a.len(), c.len());
    assert!(a != c, "another seed gives other weights");
}

#[test]
fn cached_writes_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec("tiny-llama");
    let first = cached(dir.path(), &s, 9).unwrap();
    let second = cached(dir.path(), &s, 9).unwrap();
    assert!(first.generated && !second.generated);
    assert_eq!(first.path, second.path);
    assert!(first.path.starts_with(dir.path()));
}

#[test]
fn cache_dir_follows_the_variables_in_order() {
    fn vars<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }
    let all = [
        ("PIGPU_SHAPE_CACHE", "/s"),
        ("XDG_CACHE_HOME", "/x"),
        ("HOME", "/h"),
    ];
    assert_eq!(cache_dir_from(vars(&all)), Path::new("/s"));
    assert_eq!(
        cache_dir_from(vars(&all[1..])),
        Path::new("/x/pigpu/shapes")
    );
    assert_eq!(
        cache_dir_from(vars(&all[2..])),
        Path::new("/h/.cache/pigpu/shapes")
    );
    // An empty value counts as unset.
    let empty = [("PIGPU_SHAPE_CACHE", ""), ("HOME", "/h")];
    assert_eq!(
        cache_dir_from(vars(&empty)),
        Path::new("/h/.cache/pigpu/shapes")
    );
    // No cache or home directory: the temporary directory the lookup names, else /tmp.
    assert_eq!(
        cache_dir_from(vars(&[("TMPDIR", "/t")])),
        Path::new("/t/pigpu/shapes")
    );
    assert_eq!(cache_dir_from(vars(&[])), Path::new("/tmp/pigpu/shapes"));
}
