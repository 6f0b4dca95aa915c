//! Chat's slash commands (`/help`, `/clear`, `/system`, `/set`, `/save`, `/load`, `/stats`,
//! `/bye`): handled here and never sent to the model. Their output goes to stderr, beside the
//! timings, so stdout carries only answers.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::turn::{Chat, LastTurn};
use crate::model::sampler::Rng;
use crate::session::conversation::Conversation;
use crate::session::{Session, StopReason};

/// Every command, for `/help`, the unknown-command message and Tab completion.
pub const NAMES: &[&str] = &[
    "/help", "/clear", "/system", "/set", "/save", "/load", "/stats", "/bye", "/exit",
];

const HELP: &str = "\
Commands (never sent to the model):
  /help              this list
  /clear             forget the conversation (the system prompt is kept)
  /system [TEXT]     set the system prompt (without TEXT: show it)
  /set [KEY VALUE]   set temp, top_k, top_p, min_p, seed or n (without KEY: show them);
                     n is the most tokens an answer may take (`/set n off`: to its end)
  /save FILE         write the conversation as JSON (system prompt and messages)
  /load FILE         read a conversation saved with /save
  /stats             tokens and speed of the last answer, and the context in use
  /bye, /exit        leave (as Ctrl-D does)
Keys: arrows and Emacs keys edit the line, Up/Down walk the history (kept across sessions),
  Tab completes commands, Ctrl-C stops an answer (at the prompt: clears the line), Ctrl-D leaves.
Multi-line input: end a line with \\ to go on to the next, or write a block between \"\"\" lines
  (pasted text keeps its newlines too).";

/// What the chat does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Quit,
}

/// Whether `line` is a command (`/word …`) rather than a message; a path like `/usr/bin/ls is…`
/// is a message.
pub fn is_command(line: &str) -> bool {
    let word = line.split_whitespace().next().unwrap_or("");
    word.len() > 1
        && word.starts_with('/')
        && word[1..]
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '_')
}

/// Runs one command. Errors (a bad value, a file that cannot be read) are printed and the chat
/// goes on.
pub fn run(line: &str, chat: &mut Chat, s: &Session) -> Next {
    match dispatch(line.trim(), chat, s) {
        Ok(next) => next,
        Err(e) => {
            eprintln!("pigpu: error: {e:#}");
            Next::Continue
        }
    }
}

fn dispatch(line: &str, chat: &mut Chat, s: &Session) -> Result<Next> {
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "/help" => eprintln!("{HELP}"),
        "/bye" | "/exit" | "/quit" => return Ok(Next::Quit),
        "/clear" => {
            chat.conv.clear();
            chat.last = None;
            eprintln!("conversation cleared (the system prompt is kept)");
        }
        "/system" if rest.is_empty() => match &chat.conv.system {
            Some(t) => eprintln!("system prompt: {t}"),
            None => eprintln!("no system prompt (set one with /system TEXT)"),
        },
        "/system" => {
            chat.conv.system = Some(rest.to_string());
            eprintln!("system prompt set (it applies from the next answer on)");
        }
        "/set" if rest.is_empty() => eprintln!("{}", settings(chat)),
        "/set" => set(chat, rest)?,
        "/save" => {
            let p = path_arg(rest, "/save FILE")?;
            chat.conv.save(&p)?;
            eprintln!(
                "saved {} messages to {}",
                chat.conv.turns().len(),
                p.display()
            );
        }
        "/load" => {
            let p = path_arg(rest, "/load FILE")?;
            let c = Conversation::load(&p)?;
            eprintln!(
                "loaded {} messages{} from {}",
                c.turns().len(),
                if c.system.is_some() {
                    " and a system prompt"
                } else {
                    ""
                },
                p.display()
            );
            chat.conv = c;
            chat.last = None;
        }
        "/stats" => eprintln!("{}", stats(chat, s)),
        other => bail!(
            "unknown command {other}; the commands are {} (a message that starts with / needs a space or other text first)",
            NAMES.join(" ")
        ),
    }
    Ok(Next::Continue)
}

/// The file argument of /save and /load, with a leading `~/` meaning the home directory.
fn path_arg(rest: &str, usage: &str) -> Result<PathBuf> {
    if rest.is_empty() {
        bail!("usage: {usage}");
    }
    if let (Some(tail), Some(home)) = (rest.strip_prefix("~/"), std::env::var_os("HOME")) {
        return Ok(PathBuf::from(home).join(tail));
    }
    Ok(PathBuf::from(rest))
}

fn settings(chat: &Chat) -> String {
    let p = &chat.params;
    format!(
        "temp {}  top_k {}  top_p {}  min_p {}  seed {}  n {}",
        p.temperature,
        p.top_k,
        p.top_p,
        p.min_p,
        chat.seed,
        chat.limit
            .map_or("off (answers run to their end-of-turn token)".into(), |n| n
                .to_string())
    )
}

/// `/set KEY VALUE`, checked as the command-line flags are.
fn set(chat: &mut Chat, rest: &str) -> Result<()> {
    let (key, value) = rest
        .split_once(char::is_whitespace)
        .map(|(k, v)| (k, v.trim()))
        .unwrap_or((rest, ""));
    if value.is_empty() {
        bail!("usage: /set KEY VALUE with KEY one of temp, top_k, top_p, min_p, seed, n");
    }
    let float = |lo: f32, hi: f32| -> Result<f32> {
        let v: f32 = value
            .parse()
            .ok()
            .filter(|v: &f32| (lo..=hi).contains(v))
            .with_context(|| format!("/set {key} {value}: expected a number from {lo} to {hi}"))?;
        Ok(v)
    };
    let int = || -> Result<u64> {
        value
            .parse()
            .with_context(|| format!("/set {key} {value}: expected a whole number ≥ 0"))
    };
    match key {
        "temp" => chat.params.temperature = float(0.0, 100.0)?,
        "top_p" => chat.params.top_p = float(0.0, 1.0)?,
        "min_p" => chat.params.min_p = float(0.0, 1.0)?,
        "top_k" => chat.params.top_k = int()? as usize,
        "seed" => {
            chat.seed = int()?;
            chat.rng = Rng::new(chat.seed);
        }
        "n" if matches!(value, "off" | "none" | "0") => chat.limit = None,
        "n" => chat.limit = Some(int()? as usize),
        other => bail!(
            "/set {other}: unknown setting; the settings are temp, top_k, top_p, min_p, seed, n"
        ),
    }
    eprintln!("{}", settings(chat));
    Ok(())
}

fn stats(chat: &Chat, s: &Session) -> String {
    let n_ctx = s.engine.n_ctx();
    let context = format!(
        "context: {} of {n_ctx} tokens in use ({} messages{})",
        chat.context_used(n_ctx),
        chat.conv.turns().len(),
        if chat.conv.system.is_some() {
            " and the system prompt"
        } else {
            ""
        }
    );
    let Some(LastTurn {
        fed,
        answer,
        stop,
        timings: t,
    }) = &chat.last
    else {
        return format!("no answer yet\n{context}");
    };
    let why = match stop {
        StopReason::EndOfText => "its end-of-turn token",
        StopReason::Length => "the token limit",
        StopReason::Context => "the full context",
        StopReason::Interrupted => "Ctrl-C",
        // Chat uses neither stop strings nor --format (run refuses them with --chat).
        StopReason::StopString => "a stop string",
        StopReason::JsonComplete => "the end of its JSON object",
    };
    format!(
        "last answer: {answer} tokens in {:.0} ms ({:.1} t/s), ended by {why}\n\
         its prompt: {fed} new tokens in {:.0} ms ({:.1} t/s)\n{context}",
        t.gen_ms, t.gen_tokens_per_s, t.prompt_ms, t.prompt_tokens_per_s
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_slash_words_and_paths_are_messages() {
        assert!(is_command("/help"));
        assert!(is_command("/set temp 0.5"));
        assert!(is_command("/frobnicate now"));
        assert!(!is_command("/usr/bin/ls is a program?"));
        assert!(!is_command("/"));
        assert!(!is_command("hello /help"));
        assert!(!is_command("/2 + 2"));
    }
}
