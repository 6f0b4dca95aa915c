//! The vocabulary as a GGUF file describes it under `tokenizer.ggml.*`: token texts, scores and
//! types, merges, special token ids and the add-BOS/EOS flags, with the defaults and the
//! by-text detection of end-of-generation tokens that llama.cpp applies, so a file means the same
//! here as there.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::error::TokenizerError;
use super::pre::{self, PreSpec};
use crate::gguf::{GgufFile, Value, ValueType};

/// A token's type, as `tokenizer.ggml.token_type` numbers them (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// Type 0, or any number outside 1..=6.
    Undefined,
    /// Type 1: an ordinary token, matched and rendered as text.
    Normal,
    /// Type 2: the unknown token.
    Unknown,
    /// Type 3: a control token (BOS, EOS, chat markers).
    Control,
    /// Type 4: a token added by the user, matched as a whole in text.
    UserDefined,
    /// Type 5: a reserved slot that never appears in text.
    Unused,
    /// Type 6: one raw byte (`<0xNN>` in SentencePiece vocabularies).
    Byte,
}

impl TokenType {
    /// The type for a `tokenizer.ggml.token_type` number; unknown numbers give `Undefined`.
    pub fn from_id(id: i128) -> TokenType {
        match id {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// Control and unknown tokens: matched in text only when parsing special tokens, and
    /// rendered as text only when asked to.
    pub fn is_special(self) -> bool {
        matches!(self, TokenType::Control | TokenType::Unknown)
    }
}

/// Which algorithm the vocabulary uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with merges and a regex pre-tokenizer.
    Bpe(PreSpec),
    /// `tokenizer.ggml.model = "llama"`: SentencePiece BPE with scores and `<0xNN>` byte fallback.
    Spm,
}

#[derive(Debug, Clone)]
pub struct TokenData {
    pub text: String,
    pub score: f32,
    pub ty: TokenType,
}

/// Special token ids (`None` when the file has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Picks one id out of [`SpecialIds`], so keys and detection rules can be tables.
type Slot = fn(&mut SpecialIds) -> &mut Option<u32>;

/// Everything read from the metadata, before the encoder is built.
#[derive(Debug)]
pub struct Vocab {
    pub path: PathBuf,
    pub model: String,
    pub pre: Option<String>,
    pub kind: Kind,
    pub tokens: Vec<TokenData>,
    /// Text to id; where two tokens share a text the later id wins, as in llama.cpp.
    pub text_to_id: HashMap<String, u32>,
    /// BPE merges as (left, right) pairs in rank order (empty for SentencePiece).
    pub merges: Vec<(String, String)>,
    pub special: SpecialIds,
    pub eog: BTreeSet<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub clean_spaces: bool,
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

/// Texts by which llama.cpp recognises an end-of-turn token when the file names none, in the
/// order tried here (llama.cpp takes whichever its hash map yields first).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
];
/// Texts of tokens that end generation whatever the file says (llama.cpp's list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// gpt-oss (harmony) markup that llama.cpp always treats as user-defined, so it is rendered.
const HARMONY_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

impl Vocab {
    pub fn from_gguf(f: &GgufFile) -> Result<Vocab, TokenizerError> {
        let path = f.path().to_path_buf();
        let model = f
            .get_str(KEY_MODEL)?
            .ok_or_else(|| TokenizerError::NoTokenizer {
                path: path.clone(),
                key: KEY_MODEL,
            })?
            .to_string();
        let pre_name = f.get_str(KEY_PRE)?.map(str::to_string);
        let kind = match model.as_str() {
            "gpt2" => Kind::Bpe(bpe_pre(&path, pre_name.as_deref())?),
            "llama" => Kind::Spm,
            _ => return Err(TokenizerError::UnsupportedModel { path, model }),
        };

        let texts = f.get_array(KEY_TOKENS, ValueType::String)?.ok_or_else(|| {
            TokenizerError::NoTokenizer {
                path: path.clone(),
                key: KEY_TOKENS,
            }
        })?;
        let n = texts.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(TokenizerError::BadValue {
                path,
                key: KEY_TOKENS,
                expected: "a non-empty list of tokens",
                found: format!("{n} tokens"),
            });
        }
        let scores = numbers(f, KEY_SCORES, n)?;
        let types = numbers(f, KEY_TYPES, n)?;

        let mut tokens = Vec::with_capacity(n);
        let mut text_to_id = HashMap::with_capacity(n);
        for (i, v) in texts.iter().enumerate() {
            // Checked by get_array: every element is a string.
            let mut text = v.as_str().unwrap_or_default().to_string();
            if text.is_empty() {
                // An empty token could never be matched or told apart; llama.cpp renames it.
                text = format!("[EMPTY_{i}]");
            }
            text_to_id.insert(text.clone(), i as u32);
            tokens.push(TokenData {
                text,
                score: scores.as_ref().map_or(0.0, |s| s[i] as f32),
                ty: types
                    .as_ref()
                    .map_or(TokenType::Normal, |t| TokenType::from_id(t[i] as i128)),
            });
        }

        let merges = match kind {
            Kind::Bpe(_) => read_merges(f, &path)?,
            Kind::Spm => Vec::new(),
        };

        let mut v = Vocab {
            path,
            model,
            pre: pre_name,
            kind,
            tokens,
            text_to_id,
            merges,
            special: SpecialIds::default(),
            eog: BTreeSet::new(),
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            clean_spaces: false,
        };
        v.read_flags_and_specials(f)?;
        Ok(v)
    }

    fn read_flags_and_specials(&mut self, f: &GgufFile) -> Result<(), TokenizerError> {
        let n = self.tokens.len();
        let in_range = |id: u32| (id as usize) < n;
        // Defaults as llama.cpp sets them per vocabulary type.
        match self.kind {
            Kind::Spm => {
                self.special.unk = Some(0).filter(|&i| in_range(i));
                self.special.bos = Some(1).filter(|&i| in_range(i));
                self.special.eos = Some(2).filter(|&i| in_range(i));
                self.add_bos = true;
                self.add_space_prefix = true;
            }
            Kind::Bpe(spec) => {
                self.add_bos = spec.add_bos;
                self.clean_spaces = spec.clean_spaces;
            }
        }

        let keys: [(&'static str, Slot); 13] = [
            ("tokenizer.ggml.bos_token_id", |s| &mut s.bos),
            ("tokenizer.ggml.eos_token_id", |s| &mut s.eos),
            ("tokenizer.ggml.eot_token_id", |s| &mut s.eot),
            ("tokenizer.ggml.eom_token_id", |s| &mut s.eom),
            ("tokenizer.ggml.unknown_token_id", |s| &mut s.unk),
            ("tokenizer.ggml.seperator_token_id", |s| &mut s.sep),
            ("tokenizer.ggml.padding_token_id", |s| &mut s.pad),
            ("tokenizer.ggml.fim_pre_token_id", |s| &mut s.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", |s| &mut s.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", |s| &mut s.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", |s| &mut s.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", |s| &mut s.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", |s| &mut s.fim_sep),
        ];
        for (key, slot) in keys {
            if let Some(id) = f.get_u64(key)? {
                if id >= n as u64 {
                    return Err(TokenizerError::BadSpecialId {
                        path: self.path.clone(),
                        key,
                        id,
                        n_vocab: n,
                    });
                }
                *slot(&mut self.special) = Some(id as u32);
            }
        }
        if let Some(b) = f.get_bool("tokenizer.ggml.add_bos_token")? {
            self.add_bos = b;
        }
        if let Some(b) = f.get_bool("tokenizer.ggml.add_eos_token")? {
            self.add_eos = b;
        }
        if let Some(b) = f.get_bool("tokenizer.ggml.add_space_prefix")? {
            self.add_space_prefix = b;
        }
        if self.add_bos && self.special.bos.is_none() {
            return Err(TokenizerError::MissingSpecial {
                path: self.path.clone(),
                flag: "tokenizer.ggml.add_bos_token",
                what: "BOS",
            });
        }
        if self.add_eos && self.special.eos.is_none() {
            return Err(TokenizerError::MissingSpecial {
                path: self.path.clone(),
                flag: "tokenizer.ggml.add_eos_token",
                what: "EOS",
            });
        }

        // Files converted from Hugging Face often name no EOT/FIM tokens; llama.cpp finds them
        // by text and treats them as control tokens even where the file says otherwise.
        let detect: [(&[&str], Slot); 8] = [
            (EOT_TEXTS, |s| &mut s.eot),
            (&["<|eom_id|>"], |s| &mut s.eom),
            (FIM_PRE_TEXTS, |s| &mut s.fim_pre),
            (FIM_SUF_TEXTS, |s| &mut s.fim_suf),
            (FIM_MID_TEXTS, |s| &mut s.fim_mid),
            (FIM_PAD_TEXTS, |s| &mut s.fim_pad),
            (FIM_REP_TEXTS, |s| &mut s.fim_rep),
            (FIM_SEP_TEXTS, |s| &mut s.fim_sep),
        ];
        for (texts, slot) in detect {
            if slot(&mut self.special).is_some() {
                continue;
            }
            if let Some(id) = texts.iter().find_map(|t| self.text_to_id.get(*t).copied()) {
                *slot(&mut self.special) = Some(id);
                self.tokens[id as usize].ty = TokenType::Control;
            }
        }

        let s = &self.special;
        let mut eog: BTreeSet<u32> = [s.fim_pad, s.fim_rep, s.fim_sep, s.eos, s.eot, s.eom]
            .into_iter()
            .flatten()
            .collect();
        for t in EOG_TEXTS {
            if let Some(&id) = self.text_to_id.get(*t) {
                eog.insert(id);
                self.tokens[id as usize].ty = TokenType::Control;
            }
        }
        for t in HARMONY_USER_DEFINED {
            if let Some(&id) = self.text_to_id.get(*t) {
                self.tokens[id as usize].ty = TokenType::UserDefined;
            }
        }
        self.drop_eog_exceptions(&mut eog);
        self.eog = eog;
        Ok(())
    }

    /// llama.cpp's two exceptions to the text list: in harmony-style vocabularies (`<|return|>`
    /// and `<|call|>`, or `<|calls|>` and `<|flush|>`) `<|end|>` only ends a message, not the
    /// generation; next to `<|tool_response>` (Gemma 4), `</s>` is ordinary text.
    fn drop_eog_exceptions(&mut self, eog: &mut BTreeSet<u32>) {
        let in_eog = |text: &str| {
            self.text_to_id
                .get(text)
                .copied()
                .filter(|id| eog.contains(id))
        };
        let has = |text: &str| in_eog(text).is_some();
        let call = has("<|call|>") || has("<|calls|>");
        let end = in_eog("<|end|>").filter(|_| call && (has("<|return|>") || has("<|flush|>")));
        let s = in_eog("</s>").filter(|_| has("<|tool_response>"));
        if let Some(end) = end {
            eog.remove(&end);
            self.tokens[end as usize].ty = TokenType::UserDefined;
        }
        if let Some(s) = s {
            eog.remove(&s);
            self.tokens[s as usize].ty = TokenType::Normal;
        }
    }
}

/// The pre-tokenizer for a BPE vocabulary. A missing name falls back to "default" as llama.cpp
/// does, with a warning in the log; an unknown one is an error rather than a silently wrong split.
fn bpe_pre(path: &Path, name: Option<&str>) -> Result<PreSpec, TokenizerError> {
    match name {
        None => {
            log::warn!(
                "warning: {}: no {KEY_PRE} in the metadata; using the \"default\" \
                 pre-tokenizer as llama.cpp does (token ids may differ from the model's own \
                 tokenizer; regenerate the GGUF with a current converter)",
                path.display()
            );
            Ok(pre::lookup("default").expect("default is in the table"))
        }
        Some(n) => pre::lookup(n).ok_or_else(|| TokenizerError::UnknownPre {
            path: path.to_path_buf(),
            pre: n.to_string(),
            known: pre::known_names(),
        }),
    }
}

/// A numeric per-token array (scores or types), `None` when absent; its length must be `n`.
fn numbers(f: &GgufFile, key: &'static str, n: usize) -> Result<Option<Vec<f64>>, TokenizerError> {
    let Some(v) = f.get(key) else {
        return Ok(None);
    };
    let bad = |found: String| TokenizerError::BadValue {
        path: f.path().to_path_buf(),
        key,
        expected: "an array of numbers",
        found,
    };
    let Value::Array(a) = v else {
        return Err(bad(v.type_description()));
    };
    if a.values.len() != n {
        return Err(TokenizerError::LengthMismatch {
            path: f.path().to_path_buf(),
            key,
            len: a.values.len(),
            n_vocab: n,
        });
    }
    a.values
        .iter()
        .map(|x| x.as_f64().ok_or_else(|| bad(v.type_description())))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `tokenizer.ggml.merges`: "left right" strings in rank order. The split is at the first space
/// after the first byte, as llama.cpp does (byte-level tokens never hold a literal space).
fn read_merges(f: &GgufFile, path: &Path) -> Result<Vec<(String, String)>, TokenizerError> {
    let list =
        f.get_array(KEY_MERGES, ValueType::String)?
            .ok_or_else(|| TokenizerError::NoTokenizer {
                path: path.to_path_buf(),
                key: KEY_MERGES,
            })?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let s = v.as_str().unwrap_or_default();
            s.char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(pos, _)| (s[..pos].to_string(), s[pos + 1..].to_string()))
                .ok_or_else(|| TokenizerError::BadValue {
                    path: path.to_path_buf(),
                    key: KEY_MERGES,
                    expected: "\"left right\" pairs",
                    found: format!("entry {i} = {s:?}"),
                })
        })
        .collect()
}
