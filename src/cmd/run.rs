//! `pigpu run MODEL`: text completion (`-p`) streamed to stdout, or a chat (`cmd/chat/`) using
//! the model's chat template. Only generated text goes to stdout (plus the prompt with
//! `--echo`); logs and timings go to stderr, so `pigpu run m.gguf -p … > out.txt` captures text.
//! `--stop` strings and `--format json` (sampling constrained to JSON) come from `session`,
//! which `serve` shares.

use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};

use super::model_args;
pub use super::run_shared::Args;
use super::run_shared::{print_timings, take_profile, JsonOut, OutputFormat};
use super::Outcome;
use crate::engine::SamplingParams;
use crate::model::sampler::Rng;
use crate::model::tokenizer::StreamDecoder;
use crate::session::constrain::{JsonConstraint, TokenTrie, Top};
use crate::session::stop::StopText;
use crate::session::{check_fits, generate_with, Constrained, Flow, Session, StopReason};

pub(crate) fn run(a: Args) -> Result<Outcome> {
    if a.list_devices {
        return model_args::list_devices(&a.engine, a.json);
    }
    let params = a.sampling.params()?;
    let prompt = match &a.prompt {
        Some(p) => Some(p.clone()),
        None if a.chat || std::io::stdin().is_terminal() => None,
        None => {
            let b = super::read_stdin_capped("the prompt")?;
            Some(String::from_utf8(b).map_err(|e| {
                anyhow::anyhow!(
                    "the prompt on stdin is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                )
            })?)
        }
    };
    if prompt.as_deref() == Some("") {
        bail!("the prompt is empty (give text with -p, or pipe it on stdin)");
    }
    if a.n_predict == Some(0) {
        bail!("-n 0 generates nothing; give at least 1");
    }
    if a.chat || prompt.is_none() {
        if !a.stop.is_empty() {
            bail!("--stop works in completion mode (-p without --chat); chat ends each answer at the end-of-turn token");
        }
        if a.format.is_some() {
            bail!("--format works in completion mode (-p without --chat)");
        }
    }
    if a.stop.iter().any(String::is_empty) {
        bail!("--stop \"\": a stop string must not be empty");
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let model = a.model.as_deref().context("a model file is needed")?;
    // A pulled model's name works too; a name not pulled yet is pulled after asking (never in a
    // script).
    let model = super::pull::model_path_or_pull(model)?;
    let opts = a.engine.session(a.ctx, a.threads, !a.kv_f32)?;
    let mut s = model_args::load(&model, &opts)?;
    if a.profile {
        s.engine.set_profiling(true).context("--profile")?;
    }
    eprintln!("pigpu: seed {seed}");
    match prompt {
        Some(p) if !a.chat => completion(&a, &mut s, &p, &params, &mut Rng::new(seed)),
        Some(p) => {
            let mut chat = super::chat::Chat::new(&a, &s, params, seed)?;
            chat.turn(&a, &mut s, &p, None)?;
            Ok(Outcome::Ok)
        }
        None => super::chat::interactive(&a, &mut s, params, seed),
    }
}

fn completion(
    a: &Args,
    s: &mut Session,
    prompt: &str,
    params: &SamplingParams,
    rng: &mut Rng,
) -> Result<Outcome> {
    let ids = s
        .tokenizer()
        .encode(prompt, true, true)
        .context("tokenizing the prompt")?;
    if ids.is_empty() {
        bail!("the prompt tokenizes to nothing");
    }
    check_fits(ids.len(), a.n_predict(), s.engine.n_ctx())?;
    // Prefill here rather than in `generate` so the counters cover only the generation.
    let t_prompt = std::time::Instant::now();
    s.engine.prefill(&ids)?;
    let prompt_time = t_prompt.elapsed();
    s.engine.reset_stats();
    let mut out = std::io::stdout().lock();
    if a.echo && !a.json {
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
    }
    let shared = s.shared.clone();
    let tok = &shared.tokenizer;
    let mut json = match a.format {
        Some(OutputFormat::Json) => {
            let t0 = std::time::Instant::now();
            let trie = std::sync::Arc::new(TokenTrie::new(tok));
            log::debug!(
                "--format json: vocabulary trie built in {} ms",
                t0.elapsed().as_millis()
            );
            Some(JsonConstraint::new(trie, Top::Object))
        }
        None => None,
    };
    let constrained = json.as_mut().map(|json| Constrained {
        json,
        context: &ids,
    });
    let mut dec = StreamDecoder::new(tok, false);
    let mut stops = StopText::new(a.stop.clone());
    let mut text = String::new();
    let mut io_err = None;
    let mut g = generate_with(
        s.engine.as_mut(),
        &[],
        a.n_predict(),
        params,
        rng,
        &|t| tok.is_eog(t),
        constrained,
        &mut |t| {
            // Text is released once it cannot be the start of a stop string.
            let (piece, hit) = stops.push(&dec.push(t));
            text.push_str(&piece);
            if !a.json {
                if let Err(e) = out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
                    io_err = Some(e);
                    return Flow::Stop;
                }
            }
            if hit {
                Flow::StopString
            } else {
                Flow::Continue
            }
        },
    )?;
    if let Some(e) = io_err {
        return Err(e).context("writing to stdout");
    }
    g.prompt_time = prompt_time;
    // What the decoder and the stop matcher still hold (a stop string may end in it).
    let mut rest = String::new();
    if g.stop != StopReason::StopString {
        let (tail, hit) = stops.push(&dec.finish());
        rest = tail;
        if hit {
            g.stop = StopReason::StopString;
        } else {
            rest.push_str(&stops.finish());
        }
    }
    text.push_str(&rest);
    let t = g.timings(s.load_time, ids.len());
    let profile = take_profile(s.engine.as_mut());
    if a.json {
        let j = JsonOut {
            stop_string: stops.matched().map(str::to_string),
            ..JsonOut::new(ids.len(), &ids, &g, text, t, s.engine.as_ref(), profile)
        };
        j.write_line(&mut out)?;
    } else {
        write!(out, "{rest}")?;
        writeln!(out)?;
        print_timings(&t, ids.len(), g.tokens.len());
    }
    Ok(Outcome::Ok)
}
