//! The tokenizer against llama.cpp's own test vectors (tests/fixtures/vocab, from upstream
//! `models/ggml-vocab-*`) and on the real test models: every case must give exactly the ids
//! llama.cpp's test-tokenizer-0 expects (no BOS, special tokens not parsed).

use std::path::Path;

use crate::util::{root, test_model, QWEN, SMOLLM};
use pigpu::gguf::GgufFile;
use pigpu::model::tokenizer::{StreamDecoder, Tokenizer};

const SEPARATOR: &str = "\n__ggml_vocab_test__\n";

/// The cases of a `.inp` file and the expected ids of its `.out` file, paired.
fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let dir = root().join("tests/fixtures/vocab");
    let inp = std::fs::read_to_string(dir.join(format!("{name}.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
    let mut cases: Vec<&str> = inp.split(SEPARATOR).collect();
    // The file ends with a separator: the last piece is empty and not a case.
    assert_eq!(
        cases.pop(),
        Some(""),
        "{name}.inp does not end with a separator"
    );
    let expected: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        cases.len(),
        expected.len(),
        "{name}: .inp and .out disagree"
    );
    cases
        .into_iter()
        .map(str::to_string)
        .zip(expected)
        .collect()
}

/// Runs every case; returns how many matched, printing each mismatch.
fn check(tok: &Tokenizer, name: &str) -> (usize, usize) {
    let cases = vectors(name);
    let mut ok = 0;
    for (text, want) in &cases {
        let got = tok.encode(text, false, false).unwrap();
        if &got == want {
            ok += 1;
        } else {
            eprintln!("{name}: {text:?}\n  want {want:?}\n  got  {got:?}");
        }
    }
    (ok, cases.len())
}

fn fixture_tokenizer(file: &str) -> Tokenizer {
    let f = GgufFile::open(root().join("tests/fixtures/vocab").join(file)).unwrap();
    Tokenizer::from_gguf(&f).unwrap()
}

#[test]
fn gpt2_vectors_46_of_46() {
    let tok = fixture_tokenizer("ggml-vocab-gpt-2.gguf");
    assert_eq!((tok.model(), tok.pre()), ("gpt2", Some("gpt-2")));
    assert_eq!(check(&tok, "ggml-vocab-gpt-2.gguf"), (46, 46));
}

#[test]
fn llama_spm_vectors_46_of_46() {
    let tok = fixture_tokenizer("ggml-vocab-llama-spm.gguf");
    assert_eq!(tok.model(), "llama");
    assert_eq!(check(&tok, "ggml-vocab-llama-spm.gguf"), (46, 46));
}

#[test]
fn qwen2_vectors_46_of_46_on_the_real_model() {
    let Some(p) = test_model(QWEN) else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(p).unwrap()).unwrap();
    assert_eq!(tok.pre(), Some("qwen2"));
    assert_eq!(check(&tok, "ggml-vocab-qwen2.gguf"), (46, 46));
}

/// Decoding what was encoded gives the text back, for every vector case. A stream of tokens
/// keeps the space SentencePiece put in front (`stream_prefix`): in generation that space is
/// real text.
fn round_trips(tok: &Tokenizer, name: &str, stream_prefix: &str) {
    for (text, _) in vectors(name) {
        let ids = tok.encode(&text, false, false).unwrap();
        let mut stream = StreamDecoder::new(tok, true);
        let mut streamed: String = ids.iter().map(|&id| stream.push(id)).collect();
        streamed.push_str(&stream.finish());
        let whole = tok.decode(&ids);
        assert_eq!(whole, text, "{name}: decode(encode(x)) != x");
        let want = if text.is_empty() {
            String::new()
        } else {
            format!("{stream_prefix}{text}")
        };
        assert_eq!(streamed, want, "{name}: streamed decode differs");
    }
}

#[test]
fn smollm_round_trips_and_knows_its_special_tokens() {
    let Some(p) = test_model(SMOLLM) else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(p).unwrap()).unwrap();
    assert_eq!((tok.model(), tok.pre()), ("gpt2", Some("smollm")));
    assert_eq!(tok.n_vocab(), 49152);
    round_trips(&tok, "ggml-vocab-qwen2.gguf", "");

    let im_start = tok.token_id("<|im_start|>").unwrap();
    let im_end = tok.token_id("<|im_end|>").unwrap();
    assert_eq!((im_start, im_end), (1, 2));
    assert!(tok.is_eog(im_end));
    assert!(tok.is_eog(tok.token_id("<|endoftext|>").unwrap()));
    assert!(!tok.is_eog(im_start));
    // add_bos_token is false in this file: add_special adds nothing.
    assert!(!tok.add_bos());

    let chat = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
    let parsed = tok.encode(chat, true, true).unwrap();
    assert_eq!(parsed.first(), Some(&im_start));
    assert_eq!(parsed.iter().filter(|&&t| t == im_end).count(), 1);
    assert_eq!(tok.decode(&parsed), chat);
    // smollm splits digits one at a time.
    let digits = tok.encode("12345", false, false).unwrap();
    assert_eq!(digits.len(), 5);

    let raw = tok.encode(chat, false, false).unwrap();
    assert!(!raw.contains(&im_start) && !raw.contains(&im_end));
    assert_eq!(tok.decode(&raw), chat);
}

#[test]
fn qwen_special_tokens_and_round_trip() {
    let Some(p) = test_model(QWEN) else { return };
    let tok = Tokenizer::from_gguf(&GgufFile::open(p).unwrap()).unwrap();
    round_trips(&tok, "ggml-vocab-qwen2.gguf", "");
    let im_end = tok.token_id("<|im_end|>").unwrap();
    assert_eq!(tok.eos_id(), Some(im_end));
    for t in [
        "<|endoftext|>",
        "<|im_end|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
    ] {
        assert!(
            tok.is_eog(tok.token_id(t).unwrap()),
            "{t} should end generation"
        );
    }
    // User-defined tokens are matched whole even when special tokens are not parsed.
    let tool = tok.token_id("<tool_call>").unwrap();
    assert_eq!(tok.encode("<tool_call>", false, false).unwrap(), vec![tool]);
    // Control tokens only when parsing special tokens.
    assert_eq!(tok.encode("<|im_end|>", false, true).unwrap(), vec![im_end]);
    assert!(tok.encode("<|im_end|>", false, false).unwrap().len() > 1);
}

#[test]
fn spm_decode_and_bos() {
    let tok = fixture_tokenizer("ggml-vocab-llama-spm.gguf");
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    assert!(tok.add_bos() && !tok.add_eos());
    let ids = tok.encode("Hello world", true, false).unwrap();
    assert_eq!(ids[0], 1);
    // The leading space SentencePiece adds is not part of the decoded text.
    assert_eq!(tok.decode(&ids[1..]), "Hello world");
    round_trips(&tok, "ggml-vocab-llama-spm.gguf", " ");
}

#[test]
fn vocab_fixtures_match_their_checksums() {
    // The README's SHA256SUMS pins the upstream files: a changed fixture is caught here.
    use sha2::{Digest, Sha256};
    let dir = root().join("tests/fixtures/vocab");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut n = 0;
    for line in sums.lines() {
        let (hash, file) = line.split_once("  ").unwrap();
        let bytes = std::fs::read(Path::new(&dir).join(file)).unwrap();
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, hash, "{file}");
        n += 1;
    }
    assert_eq!(n, 10);
}

// `pigpu tokenize` on the real models.

use crate::util::{run, run_with_stdin};

fn ids_of(out: &std::process::Output) -> Vec<u32> {
    assert!(
        out.status.success(),
        "pigpu failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON array of ids")
}

#[test]
fn tokenize_raw_reproduces_llama_cpp_vectors() {
    let Some(p) = test_model(QWEN) else { return };
    let model = p.to_str().unwrap();
    // A few non-empty cases of the qwen2 vectors, through the command line.
    for (text, want) in vectors("ggml-vocab-qwen2.gguf")
        .into_iter()
        .filter(|(t, _)| !t.is_empty() && !t.starts_with('-'))
        .step_by(9)
    {
        assert_eq!(
            ids_of(&run(&["tokenize", model, &text, "--raw"])),
            want,
            "{text:?}"
        );
    }
}

#[test]
fn tokenize_parses_special_tokens_unless_raw() {
    let Some(p) = test_model(QWEN) else { return };
    let model = p.to_str().unwrap();
    let tok = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap();
    let im_start = tok.token_id("<|im_start|>").unwrap();
    let text = "<|im_start|>user\nhi";
    let parsed = ids_of(&run(&["tokenize", model, text]));
    assert_eq!(parsed[0], im_start);
    assert_eq!(parsed, tok.encode(text, true, true).unwrap());
    let raw = ids_of(&run(&["tokenize", model, text, "--raw"]));
    assert!(!raw.contains(&im_start) && raw.len() > parsed.len());
}

#[test]
fn tokenize_reads_stdin_and_shows_pieces() {
    let Some(p) = test_model(SMOLLM) else { return };
    let text = "Ünïcode — and <|im_end|> too\n";
    let out = run_with_stdin(
        &["tokenize", p.to_str().unwrap(), "-", "--pieces"],
        text.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pieces: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let im_end = pieces.iter().find(|p| p["piece"] == "<|im_end|>").unwrap();
    assert_eq!(im_end["id"], 2);
    // The raw bytes of all pieces, in order, are the text.
    let mut bytes = Vec::new();
    for p in &pieces {
        match p.get("bytes") {
            Some(b) => bytes.extend(
                b.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u8),
            ),
            None => bytes.extend_from_slice(p["piece"].as_str().unwrap().as_bytes()),
        }
    }
    assert_eq!(String::from_utf8(bytes).unwrap(), text);
}

#[test]
fn tokenize_bad_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    let not_gguf = dir.path().join("notes.txt");
    std::fs::write(&not_gguf, "just text").unwrap();
    let no_tok = dir.path().join("no-tokenizer.gguf");
    let w = pigpu::gguf::GgufWriter::new().kv(
        "general.architecture",
        pigpu::gguf::Value::String("llama".into()),
    );
    std::fs::write(&no_tok, w.to_bytes()).unwrap();
    for (file, what) in [
        (&missing, "No such file"),
        (&not_gguf, "not a GGUF file"),
        (&no_tok, "has no tokenizer"),
    ] {
        let out = run(&["tokenize", file.to_str().unwrap(), "hi"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(file.to_str().unwrap()) && err.contains(what),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
}

/// Ids llama.cpp itself produced (`scripts/ref/tokenizer_reference.py`, through llama-cpp-python)
/// for texts the upstream vectors do not cover: chat markup, user-defined and FIM tokens, special
/// text glued to words, code, mixed scripts, emoji, whitespace runs. Both modes, and the
/// end-of-generation set over the whole vocabulary.
#[test]
fn matches_llama_cpp_on_chat_markup_and_special_tokens() {
    let path = root().join("tests/fixtures/tokenizer/llama-cpp-ref.json");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let texts: Vec<&str> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut checked = 0;
    for (name, m) in r["models"].as_object().unwrap() {
        let file = m["file"].as_str().unwrap();
        let p = if file.starts_with("ggml-vocab") {
            root().join("tests/fixtures/vocab").join(file)
        } else {
            match test_model(file) {
                Some(p) => p,
                None => continue,
            }
        };
        let tok = Tokenizer::from_gguf(&GgufFile::open(&p).unwrap()).unwrap();
        assert_eq!(
            tok.n_vocab() as u64,
            m["n_vocab"].as_u64().unwrap(),
            "{name}"
        );
        let eog: Vec<u32> = tok.eog_ids().iter().copied().collect();
        assert_eq!(eog, ids(&m["eog"]), "{name}: end-of-generation ids");
        for (i, text) in texts.iter().enumerate() {
            let raw = tok.encode(text, false, false).unwrap();
            assert_eq!(raw, ids(&m["raw"][i]), "{name}, raw: {text:?}");
            let special = tok.encode(text, true, true).unwrap();
            assert_eq!(special, ids(&m["special"][i]), "{name}, special: {text:?}");
        }
        checked += 1;
    }
    // The two vocab-only fixtures are always there.
    assert!(checked >= 2);
}
