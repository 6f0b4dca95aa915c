//! From ids back to bytes and text: each token's piece (GPT-2 byte characters mapped back to
//! bytes, SentencePiece `▁` to spaces, `<0xNN>` to its byte), whole-sequence decoding with
//! llama.cpp's space clean-up, and a streaming decoder that never splits a UTF-8 character.

use super::vocab::TokenType;
use super::Tokenizer;

/// SentencePiece's visible space, U+2581.
pub(crate) const SPM_SPACE: char = '\u{2581}';

/// GPT-2's byte-level alphabet, reversed: for each code point below 324, the byte it stands for.
/// Printable Latin-1 bytes stand for themselves; the other 68 bytes, in order, are shifted to
/// U+0100 onwards so that every byte has a visible, non-space character.
fn byte_of_char_table() -> [Option<u8>; 324] {
    let mut table = [None; 324];
    let mut shifted = 0usize;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        if printable {
            table[b as usize] = Some(b);
        } else {
            table[256 + shifted] = Some(b);
            shifted += 1;
        }
    }
    table
}

/// The bytes a byte-level BPE token's text stands for. A character outside the alphabet (only
/// in a malformed vocabulary) is kept as its own UTF-8.
pub(crate) fn bpe_text_to_bytes(text: &str) -> Vec<u8> {
    static TABLE: std::sync::OnceLock<[Option<u8>; 324]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(byte_of_char_table);
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match table.get(c as usize).copied().flatten() {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// The byte an SPM byte token (`<0xNN>`) stands for.
pub(crate) fn spm_byte(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// The raw bytes of one token as llama.cpp's `token_to_piece` gives them. With
    /// `special = false`, control and unknown tokens give nothing; user-defined tokens always
    /// give their text. An id outside the vocabulary gives nothing.
    pub fn piece(&self, id: u32, special: bool) -> Vec<u8> {
        let Some(t) = self.vocab.tokens.get(id as usize) else {
            return Vec::new();
        };
        if t.ty.is_special() && !special {
            return Vec::new();
        }
        match t.ty {
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                t.text.as_bytes().to_vec()
            }
            TokenType::Normal => {
                if self.is_spm() {
                    t.text.replace(SPM_SPACE, " ").into_bytes()
                } else {
                    bpe_text_to_bytes(&t.text)
                }
            }
            TokenType::Byte if self.is_spm() => match spm_byte(&t.text) {
                Some(b) => vec![b],
                None => Vec::new(),
            },
            // llama.cpp renders unused, undefined (and, in BPE, byte) tokens as nothing.
            _ => Vec::new(),
        }
    }

    /// The raw bytes of one token, special tokens included (for streaming and `--pieces`).
    pub fn token_to_piece(&self, id: u32) -> Vec<u8> {
        self.piece(id, true)
    }

    /// Decodes a whole sequence, special tokens rendered as their text, like llama.cpp's
    /// `llama_detokenize(remove_special = false, unparse_special = true)`: for SentencePiece the
    /// space added in front of the text is removed again, and vocabularies that ask for it get
    /// the spaces before punctuation and contractions cleaned up. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, true)).into_owned()
    }

    /// [`Tokenizer::decode`] as bytes, with the choice of rendering special tokens.
    fn decode_bytes(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut strip_space = self.vocab.add_space_prefix;
        for &id in ids {
            let piece = self.piece(id, special);
            let skip = usize::from(strip_space && piece.first() == Some(&b' '));
            out.extend_from_slice(&piece[skip..]);
            strip_space = false;
        }
        if self.vocab.clean_spaces {
            out = clean_spaces(out);
        }
        out
    }
}

/// llama.cpp's clean-up of tokenization spaces, in its three passes: drop the space before
/// `? ! . ,`; turn ` ' ` into `'`; drop the space before `'s 'm 're 've`.
fn clean_spaces(text: Vec<u8>) -> Vec<u8> {
    if text.is_empty() {
        return text;
    }
    let mut out = Vec::with_capacity(text.len());
    out.push(text[0]);
    for i in 1..text.len() {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }

    let mut src = out;
    let mut out = Vec::with_capacity(src.len());
    out.push(src[0]);
    let mut i = 1;
    while i < src.len() {
        let x = src[i];
        if x == b'\'' && i + 1 < src.len() && src[i - 1] == b' ' && src[i + 1] == b' ' {
            out.pop();
            // The space after is skipped too, and no longer counts as a space before what
            // follows (llama.cpp overwrites it with NUL).
            src[i + 1] = 0;
            out.push(x);
            i += 2;
            continue;
        }
        out.push(x);
        i += 1;
    }

    let src = out;
    let n = src.len();
    let mut out = Vec::with_capacity(n);
    out.push(src[0]);
    for i in 1..n {
        let x = src[i];
        if src[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = src[i + 1];
            let drop = match x1 {
                b's' | b'm' => true,
                b't' | b'd' => false,
                _ => i + 2 < n && matches!((x1, src[i + 2]), (b'r', b'e') | (b'v', b'e')),
            };
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    out
}

/// Turns ids into text one at a time for printing as they are generated: only complete UTF-8
/// characters come out; the bytes of a character split across tokens wait for the rest.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    special: bool,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder that renders special tokens as their text when `special` is true, and as
    /// nothing otherwise (llama.cpp's default when printing a generation).
    pub fn new(tok: &'a Tokenizer, special: bool) -> Self {
        StreamDecoder {
            tok,
            special,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.pending.extend(self.tok.piece(id, self.special));
        self.take_complete()
    }

    /// Everything still held back, invalid or incomplete sequences as U+FFFD. Call at the end.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // The prefix was just checked to be valid UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[..good]).unwrap_or_default());
                    match e.error_len() {
                        // Truncated character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                        // Bytes that can never become valid: replace them and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..good + bad);
                        }
                    }
                }
            }
        }
    }
}
