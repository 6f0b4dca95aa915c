//! `pigpu tokenize`: text to token ids with the model's own tokenizer (from its GGUF metadata),
//! printed as one JSON array, or with each token's piece.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::gguf::GgufFile;
use crate::model::tokenizer::Tokenizer;

/// Arguments of `pigpu tokenize`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example:
  pigpu tokenize model.gguf 'Hello world'
  pigpu tokenize model.gguf '<|im_start|>user' --pieces
  echo 'from a pipe' | pigpu tokenize model.gguf - --raw

Without --raw, BOS/EOS are added as the model's metadata says (tokenizer.ggml.add_bos_token,
add_eos_token) and special-token text such as <|im_start|> becomes its single id. With --raw,
nothing is added and special-token text is tokenized as plain text (llama.cpp's
add_special=false, parse_special=false).")]
pub struct Args {
    /// The GGUF model file whose tokenizer to use, or a pulled model's name (ORG/NAME[:QUANT]).
    pub model: PathBuf,
    /// The text to tokenize; `-` reads it from standard input.
    pub text: String,
    /// Print one `{"id", "piece"}` object per token (piece: the text the token stands for).
    #[arg(long)]
    pub pieces: bool,
    /// Tokenize the text exactly as written: no BOS/EOS, special tokens not parsed.
    #[arg(long)]
    pub raw: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let f = GgufFile::open(&super::pull::model_path(&args.model)?)?;
    let tok = Tokenizer::from_gguf(&f)?;
    let text = if args.text == "-" {
        let buf = super::read_stdin_capped("the text")?;
        String::from_utf8(buf).map_err(|e| {
            anyhow::anyhow!(
                "standard input is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })?
    } else {
        args.text
    };
    let special = !args.raw;
    let ids = tok.encode(&text, special, special)?;

    let mut out = String::new();
    if args.pieces {
        out.push_str("[\n");
        for (i, &id) in ids.iter().enumerate() {
            let bytes = tok.token_to_piece(id);
            let piece = serde_json::to_string(&String::from_utf8_lossy(&bytes))?;
            out.push_str(&format!("  {{\"id\": {id}, \"piece\": {piece}"));
            // Part of a character split across tokens: show the raw bytes too.
            if std::str::from_utf8(&bytes).is_err() {
                out.push_str(&format!(", \"bytes\": {}", serde_json::to_string(&bytes)?));
            }
            out.push('}');
            out.push_str(if i + 1 < ids.len() { ",\n" } else { "\n" });
        }
        out.push_str("]\n");
    } else {
        out.push_str(&serde_json::to_string(&ids)?);
        out.push('\n');
    }
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("writing to stdout")?;
    Ok(Outcome::Ok)
}
