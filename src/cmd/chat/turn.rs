//! One chat turn: fit the conversation into the context (dropping the oldest turns when it is
//! full), feed the engine only what it does not hold yet, stream the answer to its end-of-turn
//! token (or `-n`, or Ctrl-C), and keep what `/stats` shows.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

use crate::cmd::run_shared::{print_timings, take_profile, Args, JsonOut};
use crate::engine::SamplingParams;
use crate::model::chat::{ChatTemplate, Message};
use crate::model::sampler::Rng;
use crate::model::tokenizer::StreamDecoder;
use crate::session::conversation::Conversation;
use crate::session::{generate, Flow, Session, StopReason, Timings};

/// The last answer, for `/stats`.
pub struct LastTurn {
    /// Prompt tokens fed for this turn (what the engine did not hold yet).
    pub fed: usize,
    pub answer: usize,
    pub stop: StopReason,
    pub timings: Timings,
}

/// A conversation, its sampling settings, and the tokens the engine already holds.
pub struct Chat {
    template: ChatTemplate,
    pub conv: Conversation,
    /// Every token given to the engine since its last reset (fed or sampled).
    in_engine: Vec<u32>,
    pub params: SamplingParams,
    pub seed: u64,
    pub rng: Rng,
    /// `-n` (or `/set n`): the most tokens an answer may take; None runs to the end of the turn.
    pub limit: Option<usize>,
    /// Whether the user has been told that old turns are dropped when the context is full.
    told_full: bool,
    pub last: Option<LastTurn>,
}

impl Chat {
    pub fn new(a: &Args, s: &Session, params: SamplingParams, seed: u64) -> Result<Chat> {
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
        Ok(Chat {
            template,
            conv: Conversation::new(a.system.clone()),
            in_engine: Vec::new(),
            params,
            seed,
            rng: Rng::new(seed),
            limit: a.n_predict,
            told_full: false,
            last: None,
        })
    }

    /// Tokens the engine holds now (the context in use).
    pub fn context_used(&self, n_ctx: usize) -> usize {
        self.in_engine.len().min(n_ctx)
    }

    /// One user turn: fit, feed what the engine does not hold yet, stream the answer.
    pub fn turn(
        &mut self,
        a: &Args,
        s: &mut Session,
        user: &str,
        interrupt: Option<&AtomicBool>,
    ) -> Result<()> {
        s.engine.reset_stats();
        let n_ctx = s.engine.n_ctx();
        // Room kept for the answer: -n when given, else a quarter of the context.
        let reserve = self.limit.unwrap_or(n_ctx / 4).clamp(1, (n_ctx / 2).max(1));
        let shared = s.shared.clone();
        let tok = &shared.tokenizer;
        let template = &self.template;
        let fitted = self.conv.fit_user(user, n_ctx, reserve, |m: &[Message]| {
            let rendered = template.render(m, true)?;
            tok.encode(&rendered, false, true)
                .context("tokenizing the chat prompt")
        })??;
        if fitted.dropped_messages > 0 {
            let line = format!(
                "the conversation filled the context of {n_ctx} tokens: the oldest turns are dropped to make room (the system prompt is kept)"
            );
            if self.told_full {
                log::info!(
                    "context full again: dropped the {} oldest messages",
                    fitted.dropped_messages
                );
            } else {
                eprintln!("pigpu: {line}");
                self.told_full = true;
            }
        }
        let ids = fitted.ids;
        let r = self.answer(a, s, &ids, interrupt);
        if r.is_err() {
            // The engine may hold part of a turn that is not in the conversation: start over.
            self.conv.pop();
            self.in_engine.clear();
        }
        r
    }

    fn answer(
        &mut self,
        a: &Args,
        s: &mut Session,
        ids: &[u32],
        interrupt: Option<&AtomicBool>,
    ) -> Result<()> {
        let n_ctx = s.engine.n_ctx();
        // Reuse the cached prefix when the engine's tokens are a prefix of the new prompt.
        let new = if ids.starts_with(&self.in_engine) && !self.in_engine.is_empty() {
            &ids[self.in_engine.len()..]
        } else {
            s.engine.reset();
            self.in_engine.clear();
            ids
        };
        let new = new.to_vec();
        let room = n_ctx - ids.len();
        let budget = self.limit.map_or(room, |n| n.min(room));
        let shared = s.shared.clone();
        let tok = &shared.tokenizer;
        let mut dec = StreamDecoder::new(tok, false);
        let mut reply = String::new();
        let mut out = std::io::stdout().lock();
        let g = generate(
            s.engine.as_mut(),
            &new,
            budget,
            &self.params,
            &mut self.rng,
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
        self.in_engine = ids.to_vec();
        self.in_engine.extend(&g.tokens);
        // The end-of-turn token was sampled and will be fed with the next prompt.
        self.in_engine.extend(g.stop_token);
        self.conv.push_assistant(reply.clone());
        let t = g.timings(s.load_time, new.len());
        let profile = take_profile(s.engine.as_mut());
        if a.json {
            // In chat the stats include the turn's prompt (the engine's counters since the turn
            // began).
            let j = JsonOut::new(
                ids.len(),
                &new,
                &g,
                reply,
                t.clone(),
                s.engine.as_ref(),
                profile,
            );
            j.write_line(&mut out)?;
        } else {
            writeln!(out, "{rest}")?;
            drop(out);
            let cut_by_n = self.limit.is_some_and(|n| n <= room);
            match g.stop {
                StopReason::Length if cut_by_n => dim(&format!(
                    "[answer cut at -n {budget} tokens; `/set n off` lets answers run to their end]"
                )),
                StopReason::Length | StopReason::Context => dim(&format!(
                    "[answer stopped: the context of {n_ctx} tokens is full; the next turn drops the oldest turns]"
                )),
                StopReason::Interrupted => dim("[answer stopped by Ctrl-C]"),
                // Not produced in chat: run refuses --stop and --format with --chat.
                StopReason::EndOfText | StopReason::StopString | StopReason::JsonComplete => {}
            }
            print_timings(&t, new.len(), g.tokens.len());
        }
        self.last = Some(LastTurn {
            fed: new.len(),
            answer: g.tokens.len(),
            stop: g.stop,
            timings: t,
        });
        Ok(())
    }
}

/// One line on stderr, dimmed on a terminal.
pub fn dim(line: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("\x1b[2m{line}\x1b[0m");
    } else {
        eprintln!("{line}");
    }
}
