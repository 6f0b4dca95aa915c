//! `pigpu inspect`: what is in a GGUF file: architecture, hyper-parameters, tokenizer, all
//! metadata and the tensor table, for people (aligned text) or for scripts (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value as J};

use super::Outcome;
use crate::gguf::{GgufFile, Value};
use crate::model::tokenizer::Tokenizer;

/// Arguments of `pigpu inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example:
  pigpu inspect ~/.cache/pigpu/models/SmolLM2-135M-Instruct.Q4_1.gguf
  pigpu inspect model.gguf --json | jq '.tensors[] | select(.type == \"Q4_K\") | .name'

JSON: {\"file\", \"version\", \"alignment\", \"data_offset\", \"metadata\": {key: value},
\"tokenizer\": {...} or {\"error\"}, \"tensors\": [{\"name\", \"type\", \"shape\", \"offset\",
\"bytes\"}]}. `shape` is innermost (contiguous) dimension first, as ggml's ne; `offset` is
relative to the data section, which starts at `data_offset` in the file.")]
pub struct Args {
    /// The GGUF model file, or a pulled model's name (ORG/NAME[:QUANT]).
    pub model: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show arrays and long strings in full (by default arrays over 16 elements and strings
    /// over 200 characters are summarised).
    #[arg(long)]
    pub full: bool,
}

/// Arrays longer than this are summarised unless `--full`.
const MAX_ARRAY: usize = 16;
/// Strings longer than this are shortened in the text output unless `--full`.
const MAX_STRING: usize = 200;

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let f = GgufFile::open(&super::pull::model_path(&args.model)?)?;
    // A file without a usable tokenizer is still worth inspecting: report why, do not fail.
    let tok = match f.get("tokenizer.ggml.model") {
        None => Err("none (no tokenizer.ggml.model in the metadata)".to_string()),
        Some(_) => Tokenizer::from_gguf(&f).map_err(|e| e.to_string()),
    };
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&to_json(&f, &tok, args.full))?;
        s.push('\n');
        s
    } else {
        to_text(&f, &tok, args.full)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(Outcome::Ok)
}

fn to_json(f: &GgufFile, tok: &Result<Tokenizer, String>, full: bool) -> J {
    let max = (!full).then_some(MAX_ARRAY);
    let metadata: serde_json::Map<String, J> = f
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json(max)))
        .collect();
    let tensors: Vec<J> = f
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.shape,
                "offset": t.offset,
                "bytes": t.bytes,
            })
        })
        .collect();
    json!({
        "file": f.path().display().to_string(),
        "version": f.version(),
        "alignment": f.alignment(),
        "data_offset": f.data_offset(),
        "metadata": metadata,
        "tokenizer": tokenizer_json(tok),
        "tensors": tensors,
    })
}

fn tokenizer_json(tok: &Result<Tokenizer, String>) -> J {
    match tok {
        Err(e) => json!({ "error": e }),
        Ok(t) => {
            let named = |id: Option<u32>| id.map(|i| json!({"id": i, "text": t.token_text(i)}));
            json!({
                "model": t.model(),
                "pre": t.pre(),
                "n_vocab": t.n_vocab(),
                "bos": named(t.bos_id()),
                "eos": named(t.eos_id()),
                "eot": named(t.eot_id()),
                "add_bos": t.add_bos(),
                "add_eos": t.add_eos(),
                "eog": t.eog_ids().iter().collect::<Vec<_>>(),
            })
        }
    }
}

/// The hyper-parameters worth a line of their own, as (label, key without the architecture
/// prefix); the first of several alternatives present is shown.
const HPARAMS: &[(&str, &[&str])] = &[
    ("block count", &["block_count"]),
    ("context length", &["context_length"]),
    ("embedding length", &["embedding_length"]),
    ("feed-forward length", &["feed_forward_length"]),
    ("heads", &["attention.head_count"]),
    ("kv heads", &["attention.head_count_kv"]),
    ("head dim (k)", &["attention.key_length"]),
    ("head dim (v)", &["attention.value_length"]),
    ("rope base", &["rope.freq_base"]),
    ("rope dims", &["rope.dimension_count"]),
    (
        "norm eps",
        &[
            "attention.layer_norm_rms_epsilon",
            "attention.layer_norm_epsilon",
        ],
    ),
    ("vocab size", &["vocab_size"]),
    ("experts", &["expert_count"]),
];

fn to_text(f: &GgufFile, tok: &Result<Tokenizer, String>, full: bool) -> String {
    let mut o = String::new();
    let arch = f.get_str("general.architecture").ok().flatten();
    let name = f.get_str("general.name").ok().flatten();
    let _ = writeln!(o, "file          {}", f.path().display());
    let _ = writeln!(
        o,
        "format        GGUF v{}, {} bytes, {} metadata keys, {} tensors",
        f.version(),
        thousands(f.file_len()),
        f.metadata().len(),
        f.tensors().len()
    );
    if let Some(n) = name {
        let _ = writeln!(o, "name          {n}");
    }
    let _ = writeln!(o, "architecture  {}", arch.unwrap_or("(none)"));
    if let Ok(Some(ft)) = f.get_u32("general.file_type") {
        let name = file_type_name(ft).unwrap_or("unknown");
        let _ = writeln!(o, "file type     {name} (general.file_type = {ft})");
    }
    if !f.tensors().is_empty() {
        let params: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
        let bytes: u64 = f.tensors().iter().map(|t| t.bytes).sum();
        let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
        for t in f.tensors() {
            *by_type.entry(t.ty.name()).or_default() += 1;
        }
        let mix: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
        let _ = writeln!(
            o,
            "weights       {} parameters, {} ({})",
            thousands(params),
            human_bytes(bytes),
            mix.join(", ")
        );
    }

    if let Some(arch) = arch {
        let _ = writeln!(o, "\nhyper-parameters");
        for (label, keys) in HPARAMS {
            let found = keys.iter().find_map(|k| {
                let key = format!("{arch}.{k}");
                f.get(&key).map(|v| (key, v))
            });
            if let Some((key, v)) = found {
                let _ = writeln!(o, "  {label:<20} {:<12} {key}", short(v, full));
            }
        }
    }

    let _ = writeln!(o, "\ntokenizer");
    match tok {
        Err(e) => {
            let _ = writeln!(o, "  {e}");
        }
        Ok(t) => {
            let kind = if t.model() == "llama" {
                "SentencePiece"
            } else {
                "byte-level BPE"
            };
            let _ = writeln!(
                o,
                "  model {} ({kind}), pre {}, {} tokens",
                t.model(),
                t.pre().unwrap_or("(none)"),
                thousands(t.n_vocab() as u64)
            );
            let named = |id: Option<u32>| match id {
                Some(i) => format!("{i} {:?}", t.token_text(i)),
                None => "(none)".to_string(),
            };
            let _ = writeln!(
                o,
                "  bos {} (added: {}), eos {} (added: {})",
                named(t.bos_id()),
                t.add_bos(),
                named(t.eos_id()),
                t.add_eos()
            );
            let eog: Vec<String> = t.eog_ids().iter().map(|&i| named(Some(i))).collect();
            let _ = writeln!(o, "  end of generation: {}", eog.join(", "));
        }
    }

    let _ = writeln!(o, "\nmetadata");
    let width = f.metadata().iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in f.metadata() {
        let _ = writeln!(o, "  {k:<width$}  {}", short(v, full));
    }

    if !f.tensors().is_empty() {
        let _ = writeln!(o, "\ntensors");
        let width = f.tensors().iter().map(|t| t.name.len()).max().unwrap_or(0);
        let _ = writeln!(
            o,
            "  {:<width$}  {:<7} {:<20} {:>10}",
            "name", "type", "shape", "size"
        );
        for t in f.tensors() {
            let shape: Vec<String> = t.shape.iter().map(u64::to_string).collect();
            let _ = writeln!(
                o,
                "  {:<width$}  {:<7} {:<20} {:>10}",
                t.name,
                t.ty.name(),
                shape.join(" × "),
                human_bytes(t.bytes)
            );
        }
    }
    o
}

/// A value on one line: arrays shortened by their `Display`, long strings cut unless `full`,
/// newlines shown as `\n`.
fn short(v: &Value, full: bool) -> String {
    let s = match v {
        Value::Array(a) if full => {
            let items: Vec<String> = a.values.iter().map(|x| short(x, true)).collect();
            format!("[{}]", items.join(", "))
        }
        v => v.to_string(),
    };
    let s = s.replace('\n', "\\n");
    if full || s.chars().count() <= MAX_STRING {
        s
    } else {
        let cut: String = s.chars().take(MAX_STRING).collect();
        format!("{cut}… ({} characters)", s.chars().count())
    }
}

/// The name of a `general.file_type` value (llama.cpp's `llama_ftype`): the quantization recipe
/// the file was made with, which the tensor types alone do not tell (Q4_K_M vs Q4_K_S).
fn file_type_name(ft: u32) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(98_362_432), "98,362,432");
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn long_strings_are_cut_unless_full() {
        let v = Value::String("x".repeat(500));
        assert!(short(&v, false).ends_with("(502 characters)"));
        assert_eq!(short(&v, true).len(), 502);
    }
}
