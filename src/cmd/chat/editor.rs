//! Chat's line editor on a terminal (rustyline): arrow keys and Emacs keys, history kept across
//! sessions in the user's state directory, multi-line input (a line ending in `\` goes on, and
//! `"""` opens a block that a line ending in `"""` closes), Tab completing slash commands.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Behavior, Config, Editor};

use super::commands::NAMES;

/// What one read at the prompt gave.
pub enum Read {
    /// A complete entry (multi-line input already joined).
    Line(String),
    /// Ctrl-C at the prompt: the line was dropped.
    Cleared,
    /// Ctrl-D on an empty line: leave.
    Eof,
}

/// The rustyline editor with chat's helper and the history file.
pub struct LineEditor {
    ed: Editor<ChatHelper, FileHistory>,
    history: Option<PathBuf>,
    warned: bool,
}

impl LineEditor {
    pub fn new() -> Result<LineEditor> {
        let config = Config::builder()
            .max_history_size(1000)
            .context("configuring the line editor")?
            .history_ignore_space(true)
            .auto_add_history(false)
            // Prompts and editing go to the terminal itself, so `> answers.txt` holds only answers.
            .behavior(Behavior::PreferTerm)
            .build();
        let mut ed: Editor<ChatHelper, FileHistory> =
            Editor::with_config(config).context("starting the line editor")?;
        ed.set_helper(Some(ChatHelper));
        let history = history_path(|k| std::env::var_os(k));
        if let Some(p) = &history {
            // A missing file is the first session; other errors are said once and then ignored.
            if p.exists() {
                if let Err(e) = ed.load_history(p) {
                    log::warn!("cannot read the chat history {}: {e}", p.display());
                }
            }
        }
        Ok(LineEditor {
            ed,
            history,
            warned: false,
        })
    }

    /// Reads one entry; a line ending in `\` or an open `"""` block asks for more lines.
    pub fn read(&mut self, prompt: &str) -> Result<Read> {
        match self.ed.readline(prompt) {
            Ok(text) => {
                if !text.trim().is_empty() {
                    self.remember(&text);
                }
                Ok(Read::Line(join(&text)))
            }
            Err(ReadlineError::Interrupted) => Ok(Read::Cleared),
            Err(ReadlineError::Eof) => Ok(Read::Eof),
            Err(e) => Err(e).context("reading from the terminal"),
        }
    }

    /// Adds an entry to the history and writes the file now, so a killed chat keeps it too.
    fn remember(&mut self, text: &str) {
        let _ = self.ed.add_history_entry(text);
        let Some(p) = &self.history else { return };
        let r = p
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(ReadlineError::from)
            .and_then(|_| self.ed.save_history(p));
        if let Err(e) = r {
            if !self.warned {
                log::warn!("cannot write the chat history {}: {e}", p.display());
                self.warned = true;
            }
        }
    }
}

/// `$XDG_STATE_HOME/pigpu/chat_history`, else `~/.local/state/pigpu/chat_history` (None when
/// neither is set: no history is kept).
fn history_path(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = set("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| set("HOME").map(|h| h.join(".local/state")))?;
    Some(base.join("pigpu").join("chat_history"))
}

/// Whether the entry so far needs more lines: it ends in `\`, or opens `"""` without closing it.
pub fn incomplete(input: &str) -> bool {
    let t = input.trim();
    if let Some(body) = t.strip_prefix("\"\"\"") {
        return !body.ends_with("\"\"\"");
    }
    input.ends_with('\\')
}

/// The message an entry stands for: a `"""` block without its quotes, or `\`-continued lines
/// joined with newlines.
pub fn join(input: &str) -> String {
    let t = input.trim();
    if let Some(body) = t.strip_prefix("\"\"\"") {
        let body = body.strip_suffix("\"\"\"").unwrap_or(body);
        return body.trim_matches('\n').to_string();
    }
    input.replace("\\\n", "\n")
}

/// Multi-line validation and slash-command completion.
struct ChatHelper;

impl Validator for ChatHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if incomplete(ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Completer for ChatHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let word = &line[..pos];
        if !word.starts_with('/') || word.contains(char::is_whitespace) {
            return Ok((0, Vec::new()));
        }
        let found = NAMES
            .iter()
            .filter(|n| n.starts_with(word))
            .map(|n| format!("{n} "))
            .collect();
        Ok((0, found))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}

impl Highlighter for ChatHelper {}

impl rustyline::Helper for ChatHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lives_in_the_state_directory() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let p = |pairs| history_path(env(pairs));
        assert_eq!(
            p(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")]),
            Some(PathBuf::from("/s/pigpu/chat_history"))
        );
        assert_eq!(
            p(&[("HOME", "/h")]),
            Some(PathBuf::from("/h/.local/state/pigpu/chat_history"))
        );
        // The XDG spec says to ignore relative paths.
        assert_eq!(
            p(&[("XDG_STATE_HOME", "rel"), ("HOME", "/h")]),
            Some(PathBuf::from("/h/.local/state/pigpu/chat_history"))
        );
        assert_eq!(p(&[("XDG_STATE_HOME", "")]), None);
    }

    #[test]
    fn backslash_lines_continue_and_join_with_newlines() {
        assert!(incomplete("first line\\"));
        assert!(!incomplete("first line\\\nsecond"));
        assert_eq!(join("first line\\\nsecond"), "first line\nsecond");
        assert_eq!(join("plain"), "plain");
    }

    #[test]
    fn triple_quote_blocks_stay_open_until_closed() {
        assert!(incomplete("\"\"\""));
        assert!(incomplete("\"\"\"\nsome text"));
        assert!(!incomplete("\"\"\"\nsome text\n\"\"\""));
        assert!(!incomplete("\"\"\"one line\"\"\""));
        assert_eq!(join("\"\"\"\na\\\nb\n\"\"\""), "a\\\nb");
        assert_eq!(join("\"\"\"one line\"\"\""), "one line");
    }
}
