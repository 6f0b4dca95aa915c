//! `pigpu run --chat` (and `pigpu run MODEL` on a terminal): a conversation rendered with the
//! model's chat template, each answer streamed to stdout. On a terminal the input comes from a
//! line editor (`editor.rs`) and Ctrl-C stops an answer; from a pipe it is read a line at a time,
//! as before. Slash commands (`commands.rs`) work in both. The engine keeps the conversation's
//! tokens between turns, so a turn only prefills what is new (`turn.rs`).

mod commands;
mod editor;
mod turn;

use std::io::{BufRead, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use super::run_shared::Args;
use super::Outcome;
use crate::engine::SamplingParams;
use crate::session::Session;
pub use turn::Chat;

/// Where the turns come from.
enum Input {
    Editor(Box<editor::LineEditor>),
    Plain(std::io::Stdin),
}

impl Input {
    /// The next entry; None at the end of input.
    fn next(&mut self) -> Result<Option<String>> {
        match self {
            Input::Editor(ed) => loop {
                match ed.read("> ")? {
                    editor::Read::Line(l) => return Ok(Some(l)),
                    editor::Read::Cleared => continue,
                    editor::Read::Eof => return Ok(None),
                }
            },
            Input::Plain(stdin) => {
                let mut line = String::new();
                if stdin.lock().read_line(&mut line)? == 0 {
                    return Ok(None);
                }
                Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
            }
        }
    }
}

/// Chats until end of input, Ctrl-D or `/bye`. On a terminal Ctrl-C during an answer stops it
/// and the chat goes on; from a pipe Ctrl-C between answers ends the chat, as before.
pub fn interactive(
    a: &Args,
    s: &mut Session,
    params: SamplingParams,
    seed: u64,
) -> Result<Outcome> {
    let mut chat = Chat::new(a, s, params, seed)?;
    let tty = std::io::stdin().is_terminal();
    let generating = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (g, i) = (generating.clone(), interrupted.clone());
        ctrlc::set_handler(move || {
            if g.load(Ordering::SeqCst) {
                i.store(true, Ordering::SeqCst);
            } else if !tty {
                eprintln!();
                std::process::exit(0);
            }
            // On a terminal the line editor reads Ctrl-C at the prompt itself; a signal between
            // prompt and answer is dropped.
        })
        .context("installing the Ctrl-C handler")?;
    }
    let mut input = if tty {
        eprintln!(
            "pigpu: chat — type a message and press Enter; /help lists the commands; Ctrl-C stops an answer, Ctrl-D leaves"
        );
        Input::Editor(Box::new(editor::LineEditor::new()?))
    } else {
        Input::Plain(std::io::stdin())
    };
    loop {
        let Some(msg) = input.next()? else {
            if tty {
                eprintln!();
            }
            return Ok(Outcome::Ok);
        };
        if msg.trim().is_empty() {
            continue;
        }
        if commands::is_command(&msg) {
            if commands::run(&msg, &mut chat, s) == commands::Next::Quit {
                return Ok(Outcome::Ok);
            }
            continue;
        }
        interrupted.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let r = chat.turn(a, s, &msg, Some(&interrupted));
        generating.store(false, Ordering::SeqCst);
        match r {
            Err(e) if !tty => return Err(e),
            Err(e) => eprintln!("pigpu: error: {e:#}"),
            Ok(()) => {}
        }
    }
}
