//! llama.cpp's spellings on pigpu's command line: argument-vector rewrites applied before clap
//! parses, so command lines copied from llama-cli, llama-perplexity, llama-bench or
//! llama-server work where they mean the same thing. Pure (no I/O), so each spelling is tested
//! here. What is rewritten, per subcommand (`run`, `perplexity`, `bench`, `serve`):
//!
//! - `-ngl N` / `--n-gpu-layers N` / `--gpu-layers N`: pigpu runs all layers on the GPU or none.
//!   `-1`, `all`, `auto` or any N ≥ 99 (llama.cpp's "everything") are accepted and dropped (the
//!   backend stays as given, `auto` by default); `0` becomes `--backend cpu`; a partial offload
//!   (1–98) is an error that says so.
//! - `-fa` / `--flash-attn` [`on`|`off`|`auto`|`1`|`0`]: accepted and dropped; pigpu has one
//!   attention path per engine and no switch for it.
//! - `-c N` / `--ctx-size N` → `--ctx N` (`run`, `perplexity`, `serve`).
//! - `-m FILE` / `--model FILE` → the positional model (`run`, `perplexity`, `serve`; `bench`
//!   already takes `-m`), and `-f FILE` / `--file FILE` → perplexity's positional text file.
//! - `run --system TEXT` without `--chat`: `--chat` is added, since a system message only means
//!   something in a chat.

use std::ffi::{OsStr, OsString};

/// A llama.cpp flag whose value pigpu cannot honour.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompatError {
    /// A layer count other than 0 or all (`-ngl 20`): pigpu has no partial offload.
    #[error("{flag} {value}: pigpu runs every layer on the GPU or none (no partial offload); use {flag} 99 (all layers; the default when a GPU is found) or {flag} 0 (the CPU, same as --backend cpu)")]
    PartialOffload {
        /// The flag as given (`-ngl`, `--n-gpu-layers`).
        flag: String,
        /// Its value.
        value: String,
    },
    #[error(
        "{flag} needs a value (a layer count: 0 for the CPU, 99 or -1 for all layers on the GPU)"
    )]
    /// The flag is last on the command line, with no value after it.
    MissingValue {
        /// The flag as given.
        flag: String,
    },
}

/// Global flags that take a value, so the subcommand can be found after them.
const GLOBAL_WITH_VALUE: [&str; 1] = ["--log-file"];

const SUBCOMMANDS: [&str; 4] = ["run", "perplexity", "bench", "serve"];

/// Splits `--flag=value` into its parts.
fn split_eq(a: &str) -> (&str, Option<&str>) {
    match a.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f, Some(v)),
        _ => (a, None),
    }
}

/// Rewrites llama.cpp spellings in `args` (program name first) as the module doc says.
pub fn rewrite(args: Vec<OsString>) -> Result<Vec<OsString>, CompatError> {
    let mut out: Vec<OsString> = Vec::with_capacity(args.len() + 2);
    let mut it = args.into_iter().peekable();
    if let Some(prog) = it.next() {
        out.push(prog);
    }
    // Global flags, then the subcommand.
    let mut sub = None;
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().into_owned();
        out.push(a);
        if GLOBAL_WITH_VALUE.contains(&s.as_str()) {
            if let Some(v) = it.next() {
                out.push(v);
            }
        } else if !s.starts_with('-') {
            sub = Some(s);
            break;
        }
    }
    let Some(sub) = sub.filter(|s| SUBCOMMANDS.contains(&s.as_str())) else {
        out.extend(it);
        return Ok(out);
    };
    let sub_at = out.len();
    let (mut model, mut file) = (None::<OsString>, None::<OsString>);
    let (mut has_chat, mut has_system) = (false, false);
    let mut rest: Vec<OsString> = Vec::new();
    while let Some(a) = it.next() {
        let Some(s) = a.to_str().map(str::to_string) else {
            rest.push(a);
            continue;
        };
        if s == "--" {
            rest.push(a);
            rest.extend(it.by_ref());
            break;
        }
        let (flag, inline) = split_eq(&s);
        let value = |it: &mut std::iter::Peekable<std::vec::IntoIter<OsString>>| {
            inline
                .map(OsString::from)
                .or_else(|| it.next())
                .ok_or_else(|| CompatError::MissingValue {
                    flag: flag.to_string(),
                })
        };
        match flag {
            "-ngl" | "--n-gpu-layers" | "--gpu-layers" => {
                let v = value(&mut it)?;
                let v = v.to_string_lossy().trim().to_string();
                let all = matches!(v.as_str(), "-1" | "all" | "auto")
                    || v.parse::<u64>().is_ok_and(|n| n >= 99);
                if v == "0" {
                    rest.push("--backend".into());
                    rest.push("cpu".into());
                } else if !all {
                    return Err(CompatError::PartialOffload {
                        flag: flag.to_string(),
                        value: v,
                    });
                }
            }
            "-fa" | "--flash-attn" => {
                let takes = |v: &OsStr| {
                    matches!(
                        v.to_str(),
                        Some("on" | "off" | "auto" | "1" | "0" | "true" | "false")
                    )
                };
                if inline.is_none() && it.peek().is_some_and(|v| takes(v)) {
                    it.next();
                }
            }
            "-c" | "--ctx-size" if sub != "bench" => {
                let v = value(&mut it)?;
                rest.push("--ctx".into());
                rest.push(v);
            }
            "-m" | "--model" if sub != "bench" => {
                model = Some(value(&mut it)?);
            }
            "-f" | "--file" if sub == "perplexity" => {
                file = Some(value(&mut it)?);
            }
            _ => {
                if sub == "run" {
                    has_chat |= flag == "--chat";
                    has_system |= flag == "--system";
                }
                rest.push(a);
            }
        }
    }
    if has_system && !has_chat {
        rest.push("--chat".into());
    }
    // The positionals go first after the subcommand, model before file, as clap expects them.
    let mut front: Vec<OsString> = Vec::new();
    front.extend(model);
    front.extend(file);
    out.splice(sub_at..sub_at, front);
    out.extend(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &str) -> Result<String, CompatError> {
        let v: Vec<OsString> = args.split(' ').map(OsString::from).collect();
        rewrite(v).map(|o| {
            o.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    #[test]
    fn gpu_layers_all_none_or_an_explained_error() {
        assert_eq!(
            rw("pigpu bench -m m.gguf -ngl 99").unwrap(),
            "pigpu bench -m m.gguf"
        );
        assert_eq!(
            rw("pigpu run m.gguf --n-gpu-layers -1").unwrap(),
            "pigpu run m.gguf"
        );
        assert_eq!(
            rw("pigpu run m.gguf --gpu-layers=all").unwrap(),
            "pigpu run m.gguf"
        );
        assert_eq!(
            rw("pigpu perplexity m t -ngl 0").unwrap(),
            "pigpu perplexity m t --backend cpu"
        );
        let e = rw("pigpu serve m.gguf -ngl 20").unwrap_err().to_string();
        assert!(
            e.contains("-ngl 20") && e.contains("no partial offload"),
            "{e}"
        );
        assert!(matches!(
            rw("pigpu run m.gguf -ngl"),
            Err(CompatError::MissingValue { .. })
        ));
    }

    #[test]
    fn flash_attention_is_accepted() {
        assert_eq!(
            rw("pigpu run m.gguf -fa -p hi").unwrap(),
            "pigpu run m.gguf -p hi"
        );
        assert_eq!(
            rw("pigpu run m.gguf -fa on -p hi").unwrap(),
            "pigpu run m.gguf -p hi"
        );
        assert_eq!(
            rw("pigpu bench -m m --flash-attn=1").unwrap(),
            "pigpu bench -m m"
        );
    }

    #[test]
    fn context_model_and_file_spellings() {
        assert_eq!(
            rw("pigpu run -m m.gguf -c 2048 -p hi").unwrap(),
            "pigpu run m.gguf --ctx 2048 -p hi"
        );
        assert_eq!(
            rw("pigpu -q perplexity -f t.txt --model m.gguf --ctx-size 128").unwrap(),
            "pigpu -q perplexity m.gguf t.txt --ctx 128"
        );
        assert_eq!(
            rw("pigpu --log-file x.log serve -m m.gguf --ctx-size=512").unwrap(),
            "pigpu --log-file x.log serve m.gguf --ctx 512"
        );
        // bench keeps its own -m, and its -c is not a context flag.
        assert_eq!(
            rw("pigpu bench -m m.gguf").unwrap(),
            "pigpu bench -m m.gguf"
        );
        // Other subcommands and anything after `--` are left alone.
        assert_eq!(rw("pigpu inspect -m x").unwrap(), "pigpu inspect -m x");
        assert_eq!(
            rw("pigpu run m.gguf -p -- -ngl 3").unwrap(),
            "pigpu run m.gguf -p -- -ngl 3"
        );
    }

    #[test]
    fn system_implies_chat() {
        assert_eq!(
            rw("pigpu run m.gguf --system be-brief -p hi").unwrap(),
            "pigpu run m.gguf --system be-brief -p hi --chat"
        );
        assert_eq!(
            rw("pigpu run m.gguf --chat --system=x").unwrap(),
            "pigpu run m.gguf --chat --system=x"
        );
    }
}
