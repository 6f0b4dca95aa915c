//! `pigpu run --chat` (and `pigpu run MODEL` on a terminal): a conversation rendered with the
//! model's chat template, one turn per line of input, each reply streamed to stdout. The engine
//! keeps the conversation's tokens between turns, so a turn only prefills what is new.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::run_shared::{print_timings, take_profile, Args, JsonOut, RunStats};
use super::Outcome;
use crate::engine::SamplingParams;
use crate::model::chat::{ChatTemplate, Message};
use crate::model::sampler::Rng;
use crate::model::tokenizer::StreamDecoder;
use crate::session::{check_fits, generate, Flow, Session};

/// A conversation: the messages so far and the tokens the engine already holds.
pub struct Chat {
    template: ChatTemplate,
    messages: Vec<Message>,
    /// Every token given to the engine since its last reset (fed or sampled).
    in_engine: Vec<u32>,
}

impl Chat {
    pub fn new(a: &Args, s: &Session) -> Result<Chat> {
        let src = s
            .model()
            .file
            .get_str("tokenizer.chat_template")?
            .ok_or(crate::model::chat::ChatError::NoTemplate)?;
        let tok = s.tokenizer();
        let text = |id: Option<u32>| id.map(|i| tok.token_text(i).to_string());
        let template = ChatTemplate::new(
            src,
            &text(tok.bos_id()).unwrap_or_default(),
            &text(tok.eos_id()).unwrap_or_default(),
        )?;
        let mut messages = Vec::new();
        if let Some(sys) = &a.system {
            messages.push(Message::new("system", sys.clone()));
        }
        Ok(Chat {
            template,
            messages,
            in_engine: Vec::new(),
        })
    }

    /// One user turn: render, feed what the engine does not hold yet, stream the reply.
    pub fn turn(
        &mut self,
        a: &Args,
        s: &mut Session,
        user: &str,
        params: &SamplingParams,
        rng: &mut Rng,
        interrupt: Option<&AtomicBool>,
    ) -> Result<()> {
        s.engine.reset_stats();
        self.messages.push(Message::new("user", user));
        let rendered = self.template.render(&self.messages, true)?;
        let ids = s
            .tokenizer()
            .encode(&rendered, false, true)
            .context("tokenizing the chat prompt")?;
        let n_ctx = s.engine.n_ctx();
        if let Err(e) = check_fits(ids.len(), a.n_predict.min(n_ctx / 4).max(1), n_ctx) {
            self.messages.pop();
            return Err(anyhow::Error::new(e)
                .context("the conversation no longer fits (start a new one or raise --ctx)"));
        }
        // Reuse the cached prefix when the engine's tokens are a prefix of the new prompt.
        let new = if ids.starts_with(&self.in_engine) && !self.in_engine.is_empty() {
            &ids[self.in_engine.len()..]
        } else {
            s.engine.reset();
            self.in_engine.clear();
            &ids[..]
        };
        let new = new.to_vec();
        let budget = a.n_predict.min(n_ctx - ids.len());
        let shared = s.shared.clone();
        let tok = &shared.tokenizer;
        let mut dec = StreamDecoder::new(tok, false);
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        let g = generate(
            s.engine.as_mut(),
            &new,
            budget,
            params,
            rng,
            &|t| tok.is_eog(t),
            &mut |t| {
                let piece = dec.push(t);
                reply.push_str(&piece);
                if !a.json {
                    let _ = out.write_all(piece.as_bytes()).and_then(|_| out.flush());
                }
                if interrupt.is_some_and(|f| f.load(Ordering::SeqCst)) {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            },
        )?;
        let rest = dec.finish();
        reply.push_str(&rest);
        self.in_engine = ids;
        self.in_engine.extend(&g.tokens);
        // The end-of-turn token was sampled and will be fed with the next prompt.
        self.in_engine.extend(g.stop_token);
        self.messages.push(Message::new("assistant", reply.clone()));
        let t = g.timings(s.load_time, new.len());
        let profile = take_profile(s.engine.as_mut());
        if a.json {
            let j = JsonOut {
                prompt_tokens: self.in_engine.len() - g.tokens.len(),
                prompt_ids: &new,
                tokens: &g.tokens,
                text: reply,
                stop: g.stop,
                timings: t,
                engine: s.engine.describe(),
                // In chat the turn's prompt is included (the engine's counters since the turn began).
                stats: RunStats::of(s.engine.as_ref()),
                profile,
            };
            serde_json::to_writer(&mut out, &j)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{rest}")?;
            print_timings(&t, new.len(), g.tokens.len());
        }
        Ok(())
    }
}

/// Reads turns from stdin until end of input; Ctrl-C while generating stops the reply, Ctrl-C
/// at the prompt (or Ctrl-D) ends the chat.
pub fn interactive(
    a: &Args,
    s: &mut Session,
    params: &SamplingParams,
    rng: &mut Rng,
) -> Result<Outcome> {
    let mut chat = Chat::new(a, s)?;
    let generating = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (g, i) = (generating.clone(), interrupted.clone());
        ctrlc::set_handler(move || {
            if g.load(Ordering::SeqCst) {
                i.store(true, Ordering::SeqCst);
            } else {
                eprintln!();
                std::process::exit(0);
            }
        })
        .context("installing the Ctrl-C handler")?;
    }
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!("pigpu: chat — type a message and press Enter; Ctrl-D or Ctrl-C to quit");
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        if tty {
            eprint!("> ");
        }
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            if tty {
                eprintln!();
            }
            return Ok(Outcome::Ok);
        }
        let msg = line.trim_end_matches(['\n', '\r']);
        if msg.trim().is_empty() {
            continue;
        }
        interrupted.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let r = chat.turn(a, s, msg, params, rng, Some(&interrupted));
        generating.store(false, Ordering::SeqCst);
        if let Err(e) = r {
            eprintln!("pigpu: error: {e:#}");
            if !tty {
                return Err(e);
            }
        }
    }
}
