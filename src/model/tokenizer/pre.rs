//! Pre-tokenizers for byte-level BPE vocabularies, chosen by `tokenizer.ggml.pre`. Each is the
//! list of split regexes llama.cpp applies for that name (applied in order, each one splitting
//! the pieces the previous one produced, matches and the text between them both kept), plus the
//! per-name settings llama.cpp attaches to it. Names map to the same groups as in llama.cpp so a
//! GGUF file tokenizes here exactly as it does there.

/// GPT-2's pattern; the tail of most others.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's pattern, with the case-insensitive contractions spelled out as llama.cpp does.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's pattern: Llama 3's, but digits one at a time.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What one `tokenizer.ggml.pre` value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreSpec {
    /// The group this name belongs to (llama.cpp's pre-tokenizer type), for display.
    pub group: &'static str,
    /// Split regexes, applied in order.
    pub regexes: &'static [&'static str],
    /// Whether detokenizing removes the space before `?!.,` and in contractions.
    pub clean_spaces: bool,
    /// Whether a pre-tokenized word that is itself a token skips the merges.
    pub ignore_merges: bool,
    /// The default of `add_bos_token` when the file does not set it.
    pub add_bos: bool,
}

const fn spec(
    group: &'static str,
    regexes: &'static [&'static str],
    clean_spaces: bool,
) -> PreSpec {
    PreSpec {
        group,
        regexes,
        clean_spaces,
        ignore_merges: false,
        add_bos: false,
    }
}

const DEFAULT_REGEXES: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];
const FALCON_REGEXES: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"];
const STARCODER_REGEXES: &[&str] = &[r"\p{N}", GPT2];

/// Every name this build accepts, with its meaning.
const TABLE: &[(&str, PreSpec)] = &[
    ("default", spec("default", DEFAULT_REGEXES, true)),
    ("llama3", LLAMA3_SPEC),
    ("llama-v3", LLAMA3_SPEC),
    ("llama-bpe", LLAMA3_SPEC),
    ("falcon3", LLAMA3_SPEC),
    ("dbrx", spec("llama3", &[LLAMA3], true)),
    ("smaug-bpe", spec("llama3", &[LLAMA3], true)),
    ("falcon", spec("falcon", FALCON_REGEXES, true)),
    ("gpt-2", spec("gpt2", &[GPT2], true)),
    ("phi-2", spec("gpt2", &[GPT2], true)),
    ("roberta-bpe", spec("gpt2", &[GPT2], true)),
    ("gigachat", spec("gpt2", &[GPT2], true)),
    ("mpt", spec("gpt2", &[GPT2], true)),
    ("olmo", spec("gpt2", &[GPT2], true)),
    ("jais", spec("gpt2", &[GPT2], true)),
    ("starcoder", spec("starcoder", STARCODER_REGEXES, true)),
    ("refact", spec("starcoder", STARCODER_REGEXES, true)),
    ("codeshell", spec("starcoder", STARCODER_REGEXES, true)),
    ("exaone", spec("starcoder", STARCODER_REGEXES, true)),
    ("minerva-7b", spec("starcoder", STARCODER_REGEXES, true)),
    ("command-r", spec("starcoder", STARCODER_REGEXES, false)),
    ("smollm", spec("starcoder", STARCODER_REGEXES, false)),
    ("qwen2", spec("qwen2", &[QWEN2], false)),
    ("deepseek-r1-qwen", spec("qwen2", &[QWEN2], false)),
    ("stablelm2", spec("qwen2", &[QWEN2], true)),
    ("megrez", spec("qwen2", &[QWEN2], true)),
];

const LLAMA3_SPEC: PreSpec = PreSpec {
    group: "llama3",
    regexes: &[LLAMA3],
    clean_spaces: true,
    ignore_merges: true,
    add_bos: true,
};

/// The meaning of a `tokenizer.ggml.pre` value, or `None` for a name this build does not know.
pub fn lookup(name: &str) -> Option<PreSpec> {
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Every accepted name, comma-separated (for error messages and docs).
pub fn known_names() -> String {
    TABLE.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_regex_compiles_with_fancy_regex() {
        for (name, spec) in TABLE {
            for r in spec.regexes {
                let pattern = tokenizers::pre_tokenizers::split::SplitPattern::Regex(r.to_string());
                tokenizers::pre_tokenizers::split::Split::new(
                    pattern,
                    tokenizers::SplitDelimiterBehavior::Isolated,
                    false,
                )
                .unwrap_or_else(|e| panic!("{name}: {r}: {e}"));
            }
        }
    }

    #[test]
    fn aliases_share_a_group() {
        assert_eq!(lookup("llama-bpe"), lookup("llama3"));
        assert!(lookup("llama3").unwrap().ignore_merges);
        assert_eq!(lookup("smollm").unwrap().regexes, STARCODER_REGEXES);
        assert!(!lookup("qwen2").unwrap().clean_spaces);
        assert!(lookup("gpt-2").unwrap().clean_spaces);
        assert_eq!(lookup("nonsense"), None);
    }
}
