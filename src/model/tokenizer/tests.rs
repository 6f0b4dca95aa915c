//! Unit tests for the tokenizer on small vocabularies built in memory with `GgufWriter`: the
//! special-token split, BOS/EOS, SentencePiece merges and byte fallback, decoding, and every
//! way the metadata can be wrong.

use super::decode::{bpe_text_to_bytes, spm_byte};
use super::*;
use crate::gguf::{Array, GgufWriter, Value, ValueType};

fn strings(v: &[&str]) -> Value {
    Value::Array(Array {
        elem_type: ValueType::String,
        values: v.iter().map(|s| Value::String(s.to_string())).collect(),
    })
}
fn ints(v: &[i32]) -> Value {
    Value::Array(Array {
        elem_type: ValueType::I32,
        values: v.iter().map(|&i| Value::I32(i)).collect(),
    })
}
fn floats(v: &[f32]) -> Value {
    Value::Array(Array {
        elem_type: ValueType::F32,
        values: v.iter().map(|&f| Value::F32(f)).collect(),
    })
}

/// GPT-2's character for each byte (the inverse of the decoder's table). Searched from the top
/// because a character outside the alphabet decodes to itself: ' ' would "decode" to 0x20 too.
fn byte_chars() -> Vec<String> {
    (0..=255u8)
        .map(|b| {
            (0..324u32)
                .rev()
                .filter_map(char::from_u32)
                .find(|c| bpe_text_to_bytes(&c.to_string()) == [b])
                .expect("every byte has a character")
                .to_string()
        })
        .collect()
}

/// A byte-level BPE vocabulary: the 256 byte characters, "he", "hel", "hello", "Ġw", and the
/// special tokens `<|end|>` (control) and `<tool>` (user-defined).
fn bpe_file(extra: &[(&str, Value)]) -> GgufWriter {
    let mut tokens = byte_chars();
    for t in ["he", "hel", "hello", "Ġw", "<|end|>", "<tool>"] {
        tokens.push(t.to_string());
    }
    let mut types = vec![1; tokens.len()];
    types[260] = 3;
    types[261] = 4;
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut w = GgufWriter::new()
        .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::String("gpt-2".into()))
        .kv("tokenizer.ggml.tokens", strings(&refs))
        .kv("tokenizer.ggml.token_type", ints(&types))
        .kv(
            "tokenizer.ggml.merges",
            strings(&["h e", "he l", "hel lo", "l o", "Ġ w"]),
        );
    for (k, v) in extra {
        w = w.kv(k, v.clone());
    }
    w
}

/// Adds "lo" (needed by the merge "hel lo") and builds.
fn bpe(extra: &[(&str, Value)]) -> Tokenizer {
    let mut w = bpe_file(extra);
    add_token(&mut w, "lo");
    build(w).unwrap()
}

fn add_token(w: &mut GgufWriter, text: &str) {
    for (k, v) in &mut w.metadata {
        if let Value::Array(a) = v {
            match k.as_str() {
                "tokenizer.ggml.tokens" => a.values.push(Value::String(text.into())),
                "tokenizer.ggml.token_type" => a.values.push(Value::I32(1)),
                "tokenizer.ggml.scores" => a.values.push(Value::F32(-100.0)),
                _ => {}
            }
        }
    }
}

fn build(w: GgufWriter) -> Result<Tokenizer, TokenizerError> {
    let f = GgufFile::from_bytes("test.gguf", w.to_bytes()).unwrap();
    Tokenizer::from_gguf(&f)
}

#[test]
fn bpe_merges_by_rank_and_maps_bytes() {
    let tok = bpe(&[]);
    let hello = tok.token_id("hello").unwrap();
    let gw = tok.token_id("Ġw").unwrap();
    let ids = tok.encode("hello w", false, false).unwrap();
    assert_eq!(ids, vec![hello, gw]);
    assert_eq!(tok.decode(&ids), "hello w");
    // A byte outside ASCII comes back as itself.
    let ids = tok.encode("é", false, false).unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(tok.decode(&ids), "é");
}

#[test]
fn control_tokens_only_when_parsing_special_user_defined_always() {
    let tok = bpe(&[]);
    let end = tok.token_id("<|end|>").unwrap();
    let tool = tok.token_id("<tool>").unwrap();
    let parsed = tok.encode("hello<|end|><tool>", false, true).unwrap();
    assert_eq!(parsed[1..], [end, tool]);
    let raw = tok.encode("hello<|end|><tool>", false, false).unwrap();
    assert!(
        !raw.contains(&end),
        "control token matched without parse_special"
    );
    assert_eq!(raw.last(), Some(&tool), "user-defined token not matched");
    assert_eq!(tok.decode(&raw), "hello<|end|><tool>");
    // Rendering: control text only when asked for.
    assert_eq!(tok.piece(end, false), b"");
    assert_eq!(tok.piece(end, true), b"<|end|>");
    assert_eq!(tok.piece(tool, false), b"<tool>");
}

#[test]
fn eog_from_eos_and_by_text() {
    let tok = bpe(&[("tokenizer.ggml.eos_token_id", Value::U32(104))]);
    assert!(tok.is_eog(104));
    // "<|end|>" ends generation by its text even though no key names it.
    assert!(tok.is_eog(tok.token_id("<|end|>").unwrap()));
    assert_eq!(tok.eot_id(), tok.token_id("<|end|>"));
    assert!(!tok.is_eog(tok.token_id("hello").unwrap()));
}

#[test]
fn add_special_follows_the_metadata() {
    let tok = bpe(&[
        ("tokenizer.ggml.bos_token_id", Value::U32(7)),
        ("tokenizer.ggml.eos_token_id", Value::U32(8)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(true)),
    ]);
    let ids = tok.encode("he", true, false).unwrap();
    assert_eq!(ids, vec![7, tok.token_id("he").unwrap(), 8]);
    assert_eq!(tok.encode("he", false, false).unwrap().len(), 1);
    assert_eq!(tok.encode("", true, false).unwrap(), vec![7, 8]);

    let plain = bpe(&[("tokenizer.ggml.bos_token_id", Value::U32(7))]);
    assert_eq!(plain.encode("he", true, false).unwrap().len(), 1);
}

#[test]
fn longer_special_token_wins() {
    let mut w = bpe_file(&[]);
    add_token(&mut w, "lo");
    add_token(&mut w, "<|end|>x");
    if let Some((_, Value::Array(a))) = w
        .metadata
        .iter_mut()
        .find(|(k, _)| k == "tokenizer.ggml.token_type")
    {
        *a.values.last_mut().unwrap() = Value::I32(3);
    }
    let tok = build(w).unwrap();
    let long = tok.token_id("<|end|>x").unwrap();
    let ids = tok.encode("<|end|>x<|end|>", false, true).unwrap();
    assert_eq!(ids, vec![long, tok.token_id("<|end|>").unwrap()]);
}

#[test]
fn bad_metadata_is_a_clear_error() {
    let msg = |w: GgufWriter| build(w).unwrap_err().to_string();

    let e = msg(GgufWriter::new().kv("general.architecture", Value::String("llama".into())));
    assert!(
        e.contains("test.gguf") && e.contains("has no tokenizer"),
        "{e}"
    );

    let e = msg(GgufWriter::new().kv("tokenizer.ggml.model", Value::String("t5".into())));
    assert!(e.contains("\"t5\" is not supported"), "{e}");

    let mut w = bpe_file(&[]);
    w.metadata[1].1 = Value::String("made-up".into());
    let e = msg(w);
    assert!(
        e.contains("tokenizer.ggml.pre = \"made-up\"") && e.contains("qwen2"),
        "{e}"
    );

    let e = msg(bpe_file(&[(
        "tokenizer.ggml.bos_token_id",
        Value::U32(99_999),
    )]));
    assert!(e.contains("bos_token_id") && e.contains("99999"), "{e}");

    let e = msg(bpe_file(&[(
        "tokenizer.ggml.add_bos_token",
        Value::Bool(true),
    )]));
    assert!(
        e.contains("add_bos_token is set") && e.contains("BOS"),
        "{e}"
    );

    let mut w = bpe_file(&[]);
    w.metadata.retain(|(k, _)| k != "tokenizer.ggml.merges");
    let e = msg(w);
    assert!(e.contains("tokenizer.ggml.merges"), "{e}");

    let mut w = bpe_file(&[]);
    w.metadata[3].1 = ints(&[1, 1, 1]);
    let e = msg(w);
    assert!(
        e.contains("token_type") && e.contains("has 3 entries, expected 262"),
        "{e}"
    );

    let mut w = bpe_file(&[]);
    w.metadata[2].1 = ints(&[1]);
    let e = msg(w);
    assert!(e.contains("tokenizer.ggml.tokens"), "{e}");
}

#[test]
fn missing_pre_falls_back_to_default() {
    let mut w = bpe_file(&[]);
    add_token(&mut w, "lo");
    w.metadata.retain(|(k, _)| k != "tokenizer.ggml.pre");
    let tok = build(w).unwrap();
    assert_eq!(tok.pre(), None);
    assert_eq!(tok.pre_spec().unwrap().group, "default");
    // The default pre-tokenizer splits punctuation runs off first.
    let ids = tok.encode("he!!", false, false).unwrap();
    assert_eq!(tok.decode(&ids), "he!!");
}

/// A SentencePiece vocabulary: `<unk> <s> </s>`, byte tokens for 0xC3 and 0xA9, and pieces whose
/// scores make "▁ab" win over "▁a" + "b".
fn spm() -> Tokenizer {
    let tokens = [
        "<unk>", "<s>", "</s>", "<0xC3>", "<0xA9>", "▁", "a", "b", "c", "▁a", "ab", "▁ab", "bc",
    ];
    let scores = [
        0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -1.5,
    ];
    let types = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1];
    let w = GgufWriter::new()
        .kv("tokenizer.ggml.model", Value::String("llama".into()))
        .kv("tokenizer.ggml.tokens", strings(&tokens))
        .kv("tokenizer.ggml.scores", floats(&scores))
        .kv("tokenizer.ggml.token_type", ints(&types));
    build(w).unwrap()
}

#[test]
fn spm_merges_by_score_with_space_prefix_and_byte_fallback() {
    let tok = spm();
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    // "▁abc": "bc" (-1.5) beats "▁a" (-5) and "ab" (-6): ▁ a bc; then nothing joins.
    assert_eq!(tok.encode("abc", false, false).unwrap(), vec![9, 12]);
    // "▁ab": ▁a first (-5 beats ab -6), then ▁a+b = ▁ab.
    assert_eq!(tok.encode("ab", false, false).unwrap(), vec![11]);
    // BOS by default for SentencePiece.
    assert_eq!(tok.encode("ab", true, false).unwrap(), vec![1, 11]);
    // "é" is not a piece: its two bytes.
    assert_eq!(tok.encode("é", false, false).unwrap(), vec![5, 3, 4]);
    assert_eq!(tok.decode(&[5, 3, 4]), "é");
    // The space after a special token comes back too.
    assert_eq!(tok.encode("</s>a", false, true).unwrap(), vec![2, 9]);
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let tok = spm();
    let mut s = StreamDecoder::new(&tok, false);
    assert_eq!(s.push(6), "a");
    assert_eq!(s.push(3), "", "half of é must wait");
    assert_eq!(s.push(4), "é");
    assert_eq!(s.push(1), "", "control tokens are hidden unless asked for");
    // A byte that can never start a character is replaced, not held forever.
    assert_eq!(s.push(4), "\u{FFFD}");
    assert_eq!(s.push(3), "");
    assert_eq!(s.finish(), "\u{FFFD}");
    let mut s = StreamDecoder::new(&tok, true);
    assert_eq!(s.push(1), "<s>");
}

#[test]
fn byte_tables() {
    assert_eq!(bpe_text_to_bytes("Ġ"), b" ");
    assert_eq!(bpe_text_to_bytes("Ċ"), b"\n");
    assert_eq!(bpe_text_to_bytes("Ã©"), "é".as_bytes());
    assert_eq!(bpe_text_to_bytes("hi"), b"hi");
    assert_eq!(spm_byte("<0x0A>"), Some(10));
    assert_eq!(spm_byte("<0xZZ>"), None);
    assert_eq!(spm_byte("<0x0>"), None);
}

#[test]
fn decode_cleans_spaces_where_the_vocab_asks() {
    let tok = bpe(&[]);
    assert!(tok.pre_spec().unwrap().clean_spaces);
    let ids = tok.encode("he ! he 's he ' he", false, false).unwrap();
    assert_eq!(tok.decode(&ids), "he! he's he'he");
    // A NUL byte in the text is kept.
    let ids = tok.encode("he\0he", false, false).unwrap();
    assert_eq!(tok.decode(&ids), "he\0he");
}

#[test]
fn out_of_range_ids_are_harmless() {
    let tok = spm();
    assert_eq!(tok.token_text(1000), "");
    assert_eq!(tok.token_type(1000), None);
    assert!(tok.token_to_piece(1000).is_empty());
    assert!(!tok.is_eog(1000));
}

#[test]
fn tokenizer_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Tokenizer>();
}
