//! Builds the `tokenizers`-crate pipeline that turns one run of plain text (special tokens
//! already split out) into ids. Byte-level BPE: regex splits, GPT-2 byte-to-character mapping,
//! merges by rank. SentencePiece: one BPE word over the whole run, merges derived from the
//! token scores, `<0xNN>` byte fallback.

use std::collections::HashSet;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use super::error::TokenizerError;
use super::pre::PreSpec;
use super::vocab::Vocab;

/// The words `tokenizers`' BPE keeps merged results for; more than the default because prompts
/// repeat the same words a lot and the cache is cheap.
const CACHE_WORDS: usize = 50_000;

fn build_error(v: &Vocab, what: &'static str, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build {
        path: v.path.clone(),
        what,
        message: e.to_string(),
    }
}

fn hf_vocab(v: &Vocab) -> tokenizers::models::bpe::Vocab {
    v.text_to_id
        .iter()
        .map(|(k, &id)| (k.clone(), id))
        .collect()
}

/// Byte-level BPE for `tokenizer.ggml.model = "gpt2"`.
pub fn bpe(v: &Vocab, spec: &PreSpec) -> Result<tokenizers::Tokenizer, TokenizerError> {
    // A merge whose parts or result are not tokens can never yield a token; llama.cpp keeps the
    // first rank of a repeated pair. `tokenizers` rejects both, so drop them here.
    let mut seen = HashSet::with_capacity(v.merges.len());
    let merges: Vec<(String, String)> = v
        .merges
        .iter()
        .filter(|(a, b)| {
            v.text_to_id.contains_key(a)
                && v.text_to_id.contains_key(b)
                && v.text_to_id.contains_key(&format!("{a}{b}"))
                && seen.insert((a.as_str(), b.as_str()))
        })
        .cloned()
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(hf_vocab(v), merges)
        .ignore_merges(spec.ignore_merges)
        .cache_capacity(CACHE_WORDS)
        .build()
        .map_err(|e| build_error(v, "BPE model", e))?;

    let mut steps = Vec::with_capacity(spec.regexes.len() + 1);
    for r in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex((*r).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| build_error(v, "pre-tokenizer regex", e))?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    // Regexes already split the text: only map bytes to GPT-2's printable characters.
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));

    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Sequence::new(steps)));
    Ok(tok)
}

/// SentencePiece BPE for `tokenizer.ggml.model = "llama"`.
///
/// llama.cpp repeatedly joins the adjacent pair whose joined text is a token with the highest
/// score (leftmost on ties). That is BPE with one merge per (left, right) split of every token,
/// ranked by the joined token's score, which is what is built here.
pub fn spm(v: &Vocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let mut ranked: Vec<(f32, u32, usize, &str, &str)> = Vec::new();
    for (text, &id) in &v.text_to_id {
        let score = v.tokens[id as usize].score;
        for (k, _) in text.char_indices().skip(1) {
            let (l, r) = text.split_at(k);
            if v.text_to_id.contains_key(l) && v.text_to_id.contains_key(r) {
                ranked.push((score, id, k, l, r));
            }
        }
    }
    // Highest score first; ties in a fixed order so builds are reproducible.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges = ranked
        .into_iter()
        .map(|(_, _, _, l, r)| (l.to_string(), r.to_string()))
        .collect();

    let mut builder = BPE::builder()
        .vocab_and_merges(hf_vocab(v), merges)
        .byte_fallback(true)
        .cache_capacity(CACHE_WORDS);
    if let Some(unk) = v.special.unk {
        builder = builder.unk_token(v.tokens[unk as usize].text.clone());
    }
    let model = builder
        .build()
        .map_err(|e| build_error(v, "SentencePiece model", e))?;
    Ok(tokenizers::Tokenizer::new(model))
}
