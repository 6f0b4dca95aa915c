//! A synthetic byte-level BPE tokenizer of the right size: the 256 byte tokens, then tokens made
//! by merging (two characters, then three) until the vocabulary has the real model's number of
//! ordinary tokens, then the family's special tokens at their real ids and texts (so chat
//! templates, BOS/EOS and end-of-generation detection behave as with the real model). It uses
//! the real pre-tokenizer name (`llama-bpe`, `qwen2`, `smollm`), so llama.cpp and pigpu both
//! accept it; token ids for a text differ from the real model's, which benchmarks never notice.

use crate::gguf::{Array, Value, ValueType};

use super::shape::{Shape, VocabStyle};

/// `tokenizer.ggml.token_type` values.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

const LLAMA3_NAMED: &[&str] = &[
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
];
const LLAMA3_SPECIALS: u32 = 256;

const QWEN2_SPECIALS: &[(&str, i32)] = &[
    ("<|endoftext|>", CONTROL),
    ("<|im_start|>", CONTROL),
    ("<|im_end|>", CONTROL),
    ("<|object_ref_start|>", CONTROL),
    ("<|object_ref_end|>", CONTROL),
    ("<|box_start|>", CONTROL),
    ("<|box_end|>", CONTROL),
    ("<|quad_start|>", CONTROL),
    ("<|quad_end|>", CONTROL),
    ("<|vision_start|>", CONTROL),
    ("<|vision_end|>", CONTROL),
    ("<|vision_pad|>", CONTROL),
    ("<|image_pad|>", CONTROL),
    ("<|video_pad|>", CONTROL),
    ("<tool_call>", USER_DEFINED),
    ("</tool_call>", USER_DEFINED),
    ("<|fim_prefix|>", CONTROL),
    ("<|fim_middle|>", CONTROL),
    ("<|fim_suffix|>", CONTROL),
    ("<|fim_pad|>", CONTROL),
    ("<|repo_name|>", CONTROL),
    ("<|file_sep|>", CONTROL),
];

const SMOLLM_SPECIALS: &[&str] = &[
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<repo_name>",
    "<reponame>",
    "<file_sep>",
    "<filename>",
    "<gh_stars>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<jupyter_script>",
    "<empty_output>",
];

/// A minimal ChatML template (Qwen2.5 and SmolLM2 format their chats this way).
const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n\
{{ message['content'] }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A minimal Llama 3 template: header tokens around each role, `<|eot_id|>` after each turn.
const LLAMA3_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}\
<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>\
{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

/// GPT-2's byte-to-character table: printable bytes stand for themselves, the others map to
/// U+0100 upwards in byte order. Returned in the order the real vocabularies list them.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut out: Vec<char> = (0..256u32)
        .filter(|&b| printable(b))
        .filter_map(char::from_u32)
        .collect();
    let mut next = 256u32;
    for b in 0..256u32 {
        if !printable(b) {
            out.extend(char::from_u32(next));
            next += 1;
        }
    }
    out
}

/// The characters merged tokens are built from: space (`Ġ`), letters, digits, a few marks.
fn merge_alphabet() -> Vec<char> {
    let mut a = vec!['Ġ'];
    a.extend('a'..='z');
    a.extend('A'..='Z');
    a.extend('0'..='9');
    a.extend(['.', ',', '-', 'Ċ']);
    a
}

/// `n` ordinary tokens (n ≥ 256) and the merges that make tokens 256..n.
fn ordinary(n: usize) -> (Vec<String>, Vec<String>) {
    let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
    let mut merges = Vec::with_capacity(n.saturating_sub(256));
    let alpha = merge_alphabet();
    let mut pairs = Vec::with_capacity(alpha.len() * alpha.len());
    'outer: for &x in &alpha {
        for &y in &alpha {
            if tokens.len() >= n {
                break 'outer;
            }
            let t: String = [x, y].iter().collect();
            merges.push(format!("{x} {y}"));
            pairs.push(t.clone());
            tokens.push(t);
        }
    }
    'outer2: for p in &pairs {
        for &z in &alpha {
            if tokens.len() >= n {
                break 'outer2;
            }
            merges.push(format!("{p} {z}"));
            tokens.push(format!("{p}{z}"));
        }
    }
    // Enough for any vocabulary below 256 + 67^2 + 67^3 (about 305k) tokens.
    tokens.truncate(n);
    (tokens, merges)
}

fn strings(v: impl IntoIterator<Item = String>) -> Value {
    Value::Array(Array {
        elem_type: ValueType::String,
        values: v.into_iter().map(Value::String).collect(),
    })
}

/// The `tokenizer.*` metadata for `s`; the token list has exactly `s.n_vocab` entries.
pub fn metadata(s: &Shape) -> Vec<(String, Value)> {
    let n = s.n_vocab as usize;
    let mut tokens: Vec<String> = Vec::with_capacity(n);
    let mut types: Vec<i32> = Vec::with_capacity(n);
    let (pre, bos, eos, pad, template);
    let mut extra: Vec<(String, Value)> = Vec::new();
    match s.vocab {
        VocabStyle::Llama3 => {
            let n_ord = n - LLAMA3_SPECIALS as usize;
            let (ord, merges) = ordinary(n_ord);
            extra.push(("tokenizer.ggml.merges".into(), strings(merges)));
            types.resize(ord.len(), NORMAL);
            tokens.extend(ord);
            for i in 0..LLAMA3_SPECIALS as usize {
                tokens.push(match LLAMA3_NAMED.get(i) {
                    Some(t) => t.to_string(),
                    None => format!("<|reserved_special_token_{}|>", i - 8),
                });
                types.push(CONTROL);
            }
            pre = "llama-bpe";
            bos = n_ord as u32;
            eos = n_ord as u32 + 9;
            pad = n_ord as u32 + 4;
            template = LLAMA3_TEMPLATE;
        }
        VocabStyle::Qwen2 => {
            let n_pad = s.n_vocab_pad as usize;
            let n_ord = n - QWEN2_SPECIALS.len() - n_pad;
            let (ord, merges) = ordinary(n_ord);
            extra.push(("tokenizer.ggml.merges".into(), strings(merges)));
            types.resize(ord.len(), NORMAL);
            tokens.extend(ord);
            for (t, ty) in QWEN2_SPECIALS {
                tokens.push(t.to_string());
                types.push(*ty);
            }
            for i in tokens.len()..n {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            pre = "qwen2";
            bos = n_ord as u32;
            eos = n_ord as u32 + 2;
            pad = n_ord as u32;
            template = CHATML;
            extra.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)));
        }
        VocabStyle::SmolLm => {
            for t in SMOLLM_SPECIALS {
                tokens.push(t.to_string());
                types.push(CONTROL);
            }
            let (ord, merges) = ordinary(n - SMOLLM_SPECIALS.len());
            extra.push(("tokenizer.ggml.merges".into(), strings(merges)));
            types.resize(types.len() + ord.len(), NORMAL);
            tokens.extend(ord);
            pre = "smollm";
            bos = 1;
            eos = 2;
            pad = 2;
            template = CHATML;
            extra.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)));
            extra.push(("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)));
        }
    }
    let mut m = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), strings(tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(Array {
                elem_type: ValueType::I32,
                values: types.into_iter().map(Value::I32).collect(),
            }),
        ),
    ];
    m.extend(extra);
    m.extend([
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(pad)),
        (
            "tokenizer.chat_template".into(),
            Value::String(template.into()),
        ),
    ]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_permutation_in_gpt2_order() {
        let b = byte_chars();
        assert_eq!(b.len(), 256);
        assert_eq!(b[0], '!');
        assert_eq!(b[93], '~');
        let mut sorted = b.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
        // Space and newline map into the U+0100 range, as in every GPT-2-style vocabulary.
        assert!(b.contains(&'Ġ') && b.contains(&'Ċ'));
    }

    #[test]
    fn merges_build_distinct_tokens_from_tokens() {
        let (tokens, merges) = ordinary(9000);
        assert_eq!(tokens.len(), 9000);
        assert_eq!(merges.len(), 9000 - 256);
        let set: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(set.len(), tokens.len(), "token texts are unique");
        for m in &merges {
            let (a, b) = m.split_once(' ').unwrap();
            assert!(
                set.contains(&a.to_string()) && set.contains(&b.to_string()),
                "{m}"
            );
            assert!(set.contains(&format!("{a}{b}")), "{m}");
        }
    }
}
