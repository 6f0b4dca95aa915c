//! `pigpu shape`: list the named model shapes, or write one as a GGUF file with random weights
//! (see `crate::model::shapes`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::model::shapes::{self, ShapeSpec, Written, SHAPES};

/// Arguments of `pigpu shape`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  pigpu shape list
  pigpu shape write llama-3.2-3b:q4_k_m /tmp/llama-3.2-3b-q4_k_m.gguf
  pigpu shape write llama-3.1-8b:q8_0 8b.gguf --seed 7 --json
  pigpu bench --shape llama-3.1-8b --backend vulkan    # write once to the cache, then bench

A shape is a real model's architecture, sizes, vocabulary size and quantization mix with random
(finite) weights: benchmark figures match the real model's, generated text is noise. The files
load in pigpu and in llama.cpp alike, so both can be measured on the same file.")]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

// No `///` here: clap would take it as `pigpu shape`'s `about` text.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the shapes and mixes this build can write.
    List {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a shape as a GGUF file.
    Write {
        /// `NAME[:MIX]`, e.g. `llama-3.2-3b:q4_k_m` (without a mix: the shape's default).
        spec: ShapeSpec,
        /// The file to write (replaced if it exists).
        out: PathBuf,
        /// Seed of the random weights; the same seed writes the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Writer threads (default: all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::List { json } => list(json),
        Action::Write {
            spec,
            out,
            seed,
            threads,
            json,
        } => {
            let w = shapes::write(&spec, seed, &out, threads)?;
            print_written(&w, json)?;
            Ok(Outcome::Ok)
        }
    }
}

/// The summary of a written shape: one line per type on stderr-friendly text, or JSON.
fn print_written(w: &Written, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(w)?)?;
        return Ok(());
    }
    let types: Vec<String> = w
        .types
        .iter()
        .map(|(ty, (n, _))| format!("{ty} ×{n}"))
        .collect();
    writeln!(
        out,
        "{}: {} ({:.2} GB, {} tensors: {}) in {:.1} s",
        w.shape,
        w.path.display(),
        w.bytes as f64 / 1e9,
        w.tensors,
        types.join(", "),
        w.seconds
    )
    .context("writing to stdout")?;
    Ok(())
}

fn list(json: bool) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    if json {
        let v: Vec<serde_json::Value> = SHAPES
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "model": s.model,
                    "arch": s.family.arch(),
                    "n_layer": s.n_layer,
                    "n_embd": s.n_embd,
                    "n_ff": s.n_ff,
                    "n_head": s.n_head,
                    "n_head_kv": s.n_head_kv,
                    "head_dim": s.head_dim,
                    "n_vocab": s.n_vocab,
                    "n_ctx_train": s.n_ctx_train,
                    "tied_embeddings": s.tied_embeddings,
                    "default_mix": s.default_mix.name(),
                    "test_only": s.tiny,
                    "data_bytes": shapes::Mix::ALL.iter().map(|m| {
                        (m.name().to_string(), shapes::data_bytes(&ShapeSpec { shape: s, mix: *m }))
                    }).collect::<std::collections::BTreeMap<_, _>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(Outcome::Ok);
    }
    writeln!(
        out,
        "{:<14} {:<24} {:<6} {:>6} {:>6} {:>9} {:>6} {:>7} {:>8}  default mix",
        "shape", "model", "arch", "layers", "d", "heads/kv", "ffn", "vocab", "GB"
    )?;
    for s in SHAPES {
        let spec = ShapeSpec {
            shape: s,
            mix: s.default_mix,
        };
        writeln!(
            out,
            "{:<14} {:<24} {:<6} {:>6} {:>6} {:>9} {:>6} {:>7} {:>8.2}  {}",
            s.name,
            s.model,
            s.family.arch(),
            s.n_layer,
            s.n_embd,
            format!("{}/{}", s.n_head, s.n_head_kv),
            s.n_ff,
            s.n_vocab,
            shapes::data_bytes(&spec) as f64 / 1e9,
            s.default_mix
        )?;
    }
    writeln!(
        out,
        "\nmixes: {} (write NAME:MIX; GB is the weights at the default mix)",
        shapes::Mix::ALL.map(|m| m.name()).join(", ")
    )?;
    Ok(Outcome::Ok)
}
