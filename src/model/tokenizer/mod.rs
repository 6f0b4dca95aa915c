//! The tokenizer a GGUF file carries in its metadata, with llama.cpp's semantics: byte-level BPE
//! (`gpt2`) with the pre-tokenizer named by `tokenizer.ggml.pre`, or SentencePiece (`llama`)
//! with scores, byte fallback and the leading space. Special tokens are split out of the text
//! first (user-defined ones always, control ones only when asked), then each run of plain text
//! goes through the `tokenizers` crate.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let gguf = pigpu::gguf::GgufFile::open("model.gguf")?;
//! let tok = pigpu::model::tokenizer::Tokenizer::from_gguf(&gguf)?;
//! let ids = tok.encode("<|im_start|>user\nHi", true, true)?;
//! assert_eq!(tok.decode(&ids), "<|im_start|>user\nHi");
//! # Ok(()) }
//! ```

mod decode;
mod encoder;
mod error;
mod pre;
mod vocab;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use decode::StreamDecoder;
pub use error::TokenizerError;
pub use pre::PreSpec;
pub use vocab::TokenType;

use crate::gguf::GgufFile;
use vocab::{Kind, Vocab};

/// A tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata.
pub struct Tokenizer {
    vocab: Vocab,
    encoder: tokenizers::Tokenizer,
    /// Control, user-defined and unknown tokens, longest text first: the order in which they are
    /// cut out of the text, so that a longer special token wins over one it contains.
    special_tokens: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.vocab.model)
            .field("pre", &self.vocab.pre)
            .field("n_vocab", &self.vocab.tokens.len())
            .finish()
    }
}

/// A piece of the input after special tokens were cut out.
enum Fragment {
    Text(std::ops::Range<usize>),
    Token(u32),
}

impl Tokenizer {
    /// Builds the tokenizer of `f`. Fails, naming the file and key, when the file has no
    /// tokenizer, an unsupported `tokenizer.ggml.model`, an unknown `tokenizer.ggml.pre`, or
    /// inconsistent metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let vocab = Vocab::from_gguf(f)?;
        let encoder = match vocab.kind {
            Kind::Bpe(spec) => encoder::bpe(&vocab, &spec)?,
            Kind::Spm => encoder::spm(&vocab)?,
        };
        let mut special_tokens: Vec<u32> = (0..vocab.tokens.len() as u32)
            .filter(|&id| {
                matches!(
                    vocab.tokens[id as usize].ty,
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                )
            })
            .collect();
        special_tokens.sort_by_key(|&id| std::cmp::Reverse(vocab.tokens[id as usize].text.len()));
        Ok(Tokenizer {
            vocab,
            encoder,
            special_tokens,
        })
    }

    /// Text to ids, as llama.cpp's `llama_tokenize(text, add_special, parse_special)`:
    /// `add_special` adds BOS/EOS where the metadata asks for them; `parse_special` turns the
    /// text of control tokens (like `<|im_start|>`) into their ids instead of tokenizing it as
    /// plain text. User-defined tokens are always matched whole.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let v = &self.vocab;
        let mut out = Vec::new();
        if add_special && v.add_bos {
            out.extend(v.special.bos);
        }
        // SentencePiece puts a space in front of text that starts the input or follows a
        // special token, then spells every space as `▁`.
        let mut after_special = true;
        for frag in self.split_special(text, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(range) => {
                    let piece = &text[range];
                    if self.is_spm() {
                        let mut s = String::with_capacity(piece.len() + 3);
                        if v.add_space_prefix && after_special {
                            s.push(' ');
                        }
                        s.push_str(piece);
                        let s = s.replace(' ', "\u{2581}");
                        self.encode_plain(&s, &mut out)?;
                    } else {
                        self.encode_plain(piece, &mut out)?;
                    }
                    after_special = false;
                }
            }
        }
        if add_special && v.add_eos {
            out.extend(v.special.eos);
        }
        Ok(out)
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let enc = self
            .encoder
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Encode {
                len: text.len(),
                message: e.to_string(),
            })?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }

    /// Cuts special tokens out of `text`, longest first, every occurrence left to right.
    fn split_special(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(0..text.len()));
        for &id in &self.special_tokens {
            let t = &self.vocab.tokens[id as usize];
            if !parse_special && t.ty.is_special() {
                continue;
            }
            let needle = t.text.as_str();
            if !text.contains(needle) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(range) = f else {
                    next.push(f);
                    continue;
                };
                let mut start = range.start;
                for (pos, _) in text[range.clone()].match_indices(needle) {
                    let at = range.start + pos;
                    if at > start {
                        next.push(Fragment::Text(start..at));
                    }
                    next.push(Fragment::Token(id));
                    start = at + needle.len();
                }
                if start < range.end {
                    next.push(Fragment::Text(start..range.end));
                }
            }
            frags = next;
        }
        frags
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.tokens.len()
    }
    /// `tokenizer.ggml.model`: "gpt2" or "llama".
    pub fn model(&self) -> &str {
        &self.vocab.model
    }
    /// `tokenizer.ggml.pre` as the file has it (`None` when absent).
    pub fn pre(&self) -> Option<&str> {
        self.vocab.pre.as_deref()
    }
    /// The pre-tokenizer in use, `None` for SentencePiece.
    pub fn pre_spec(&self) -> Option<&PreSpec> {
        match &self.vocab.kind {
            Kind::Bpe(spec) => Some(spec),
            Kind::Spm => None,
        }
    }
    fn is_spm(&self) -> bool {
        matches!(self.vocab.kind, Kind::Spm)
    }
    /// Id of the beginning-of-sequence token, if the file names one.
    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.special.bos
    }
    /// Id of the end-of-sequence token, if the file names one.
    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.special.eos
    }
    /// Id of the end-of-turn token (`<|eot_id|>`, `<|im_end|>`), if the file names or implies one.
    pub fn eot_id(&self) -> Option<u32> {
        self.vocab.special.eot
    }
    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }
    /// Whether generation should stop at `id`: EOS, EOT, EOM, the FIM pad/repo/file-separator
    /// tokens, and tokens such as `<|im_end|>` or `<|endoftext|>` (llama.cpp's list).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }
    /// Every end-of-generation id, ascending.
    pub fn eog_ids(&self) -> &BTreeSet<u32> {
        &self.vocab.eog
    }
    /// The token's text as stored in the file (byte-level BPE tokens in GPT-2's alphabet,
    /// SentencePiece tokens with `▁`); empty for an id outside the vocabulary.
    pub fn token_text(&self, id: u32) -> &str {
        self.vocab
            .tokens
            .get(id as usize)
            .map_or("", |t| t.text.as_str())
    }
    /// The token's type; `None` for an id outside the vocabulary.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.tokens.get(id as usize).map(|t| t.ty)
    }
    /// The id of a token by its exact text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.text_to_id.get(text).copied()
    }
}
