//! A chat conversation as data: the system prompt, the turns so far, trimming the oldest turns
//! so a new one fits the context, and the JSON form that chat's `/save` and `/load` use. Kept
//! apart from the terminal (`cmd/chat/`) and from the template (the caller measures a list of
//! messages in tokens), so it is tested without a model.

use std::path::{Path, PathBuf};

use crate::model::chat::Message;

/// Why a conversation cannot be loaded, saved or extended.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// The file could not be read.
    #[error("cannot read conversation {}: {source}", path.display())]
    Read {
        /// The conversation file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write conversation {}: {source}", path.display())]
    Write {
        /// The conversation file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not the JSON a conversation is saved as.
    #[error("{} is not a conversation file: {reason} (expected JSON like {{\"system\": \"…\", \"messages\": [{{\"role\": \"user\", \"content\": \"…\"}}]}})", path.display())]
    Format {
        /// The conversation file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The new message alone (with the system prompt, if any) does not fit the context.
    #[error("the message is {n_tokens} tokens with the chat template{}, and the context of {n_ctx} tokens keeps {reserve} for the answer, so a message can take at most {} (shorten it, or raise --ctx)", if *with_system { " and the system prompt" } else { "" }, n_ctx.saturating_sub(*reserve))]
    TooLong {
        /// Tokens of the rendered prompt with only this message.
        n_tokens: usize,
        /// Context length, in tokens.
        n_ctx: usize,
        /// Tokens kept free for the answer.
        reserve: usize,
        /// Whether the system prompt counts in `n_tokens`.
        with_system: bool,
    },
}

/// The system prompt and the turns (user and assistant messages, in order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// The system prompt, sent before every turn when set.
    pub system: Option<String>,
    turns: Vec<Message>,
}

/// The file `/save` writes and `/load` reads.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    system: Option<String>,
    messages: Vec<FileMessage>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMessage {
    role: String,
    content: String,
}

/// A new turn that fits: the tokens of the whole rendered prompt, and how many old messages were
/// dropped to make room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    /// The rendered prompt's tokens, ready to feed.
    pub ids: Vec<u32>,
    /// How many of the oldest messages were left out so the prompt fits.
    pub dropped_messages: usize,
}

impl Conversation {
    /// An empty conversation with an optional system prompt.
    pub fn new(system: Option<String>) -> Conversation {
        Conversation {
            system,
            turns: Vec::new(),
        }
    }

    /// The user and assistant messages, oldest first (without the system prompt).
    pub fn turns(&self) -> &[Message] {
        &self.turns
    }

    /// Forgets the turns, keeping the system prompt.
    pub fn clear(&mut self) {
        self.turns.clear();
    }

    /// Every message as the template takes them: the system prompt (if any) first.
    pub fn messages(&self) -> Vec<Message> {
        let mut m = Vec::with_capacity(self.turns.len() + 1);
        if let Some(s) = &self.system {
            m.push(Message::new("system", s.clone()));
        }
        m.extend(self.turns.iter().cloned());
        m
    }

    /// Adds the assistant's answer to the last user message.
    pub fn push_assistant(&mut self, text: String) {
        self.turns.push(Message::new("assistant", text));
    }

    /// Takes back the last message (a user message whose answer failed).
    pub fn pop(&mut self) -> Option<Message> {
        self.turns.pop()
    }

    /// Adds the user message `user`, dropping the oldest turns (a user message with its answer,
    /// never the system prompt) until the rendered prompt leaves `reserve` of `n_ctx` positions
    /// for the answer. Once it has to drop anything it drops until the prompt takes at most half
    /// the context, so the next turns do not each drop one more turn and prefill everything again.
    /// `measure` renders a list of messages (with the prompt for the answer) into tokens. A
    /// message that does not fit even alone is refused and the conversation is left as it was.
    pub fn fit_user<E>(
        &mut self,
        user: &str,
        n_ctx: usize,
        reserve: usize,
        mut measure: impl FnMut(&[Message]) -> Result<Vec<u32>, E>,
    ) -> Result<Result<Fitted, ConversationError>, E> {
        let with = |c: &Conversation, from: usize| {
            let mut m = c.messages();
            let skip = usize::from(c.system.is_some());
            m.drain(skip..skip + from);
            m.push(Message::new("user", user));
            m
        };
        let fits = |n: usize| n.saturating_add(reserve) <= n_ctx;
        let ids = measure(&with(self, 0))?;
        if fits(ids.len()) {
            self.turns.push(Message::new("user", user));
            return Ok(Ok(Fitted {
                ids,
                dropped_messages: 0,
            }));
        }
        let alone = measure(&with(self, self.turns.len()))?;
        if !fits(alone.len()) {
            return Ok(Err(ConversationError::TooLong {
                n_tokens: alone.len(),
                n_ctx,
                reserve,
                with_system: self.system.is_some(),
            }));
        }
        let mut from = 0;
        let mut ids = ids;
        while from < self.turns.len() && (!fits(ids.len()) || ids.len() > n_ctx / 2) {
            from = self.next_turn(from);
            ids = if from == self.turns.len() {
                alone.clone()
            } else {
                measure(&with(self, from))?
            };
        }
        self.turns.drain(..from);
        self.turns.push(Message::new("user", user));
        Ok(Ok(Fitted {
            ids,
            dropped_messages: from,
        }))
    }

    /// Where the turn after the one starting at `from` starts: past the next assistant message
    /// (a loaded file may hold two user messages in a row; they go with the answer after them).
    fn next_turn(&self, from: usize) -> usize {
        match self.turns[from..]
            .iter()
            .position(|m| m.role == "assistant")
        {
            Some(i) => from + i + 1,
            None => self.turns.len(),
        }
    }

    /// The conversation as pretty JSON: `{"system": …, "messages": [{"role", "content"}…]}`.
    pub fn to_json(&self) -> String {
        let f = File {
            system: self.system.clone(),
            messages: self
                .turns
                .iter()
                .map(|m| FileMessage {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect(),
        };
        let mut s = serde_json::to_string_pretty(&f).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Reads what [`Conversation::to_json`] wrote. `path` only names the source in errors. A
    /// leading `system` message is taken as the system prompt (the form OpenAI-style tools save);
    /// other roles must be `user` or `assistant`.
    fn from_json(text: &str, path: &Path) -> Result<Conversation, ConversationError> {
        let bad = |reason: String| ConversationError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let f: File = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut system = f.system;
        let mut turns = Vec::with_capacity(f.messages.len());
        for (i, m) in f.messages.into_iter().enumerate() {
            match m.role.as_str() {
                "system" if i == 0 && system.is_none() => system = Some(m.content),
                "user" | "assistant" => turns.push(Message::new(&m.role, m.content)),
                other => {
                    return Err(bad(format!(
                        "message {} has role {other:?}, expected \"user\" or \"assistant\"{}",
                        i + 1,
                        if i == 0 { " (or \"system\")" } else { "" }
                    )))
                }
            }
        }
        Ok(Conversation { system, turns })
    }

    /// Writes the conversation to `path` as JSON.
    pub fn save(&self, path: &Path) -> Result<(), ConversationError> {
        std::fs::write(path, self.to_json()).map_err(|source| ConversationError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a conversation saved by [`Conversation::save`].
    pub fn load(path: &Path) -> Result<Conversation, ConversationError> {
        let read = |source| ConversationError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if !meta.is_file() {
            return Err(ConversationError::Format {
                path: path.to_path_buf(),
                reason: "it is not a regular file".into(),
            });
        }
        // Far more than any context holds; a bound on what a wrong path can make us read.
        if meta.len() > 64 << 20 {
            return Err(ConversationError::Format {
                path: path.to_path_buf(),
                reason: format!("it is {} bytes, more than 64 MiB", meta.len()),
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|e| ConversationError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        Conversation::from_json(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the template and tokenizer: 2 tokens of framing per message plus one per
    /// word, and 1 for the answer's prompt.
    fn measure(m: &[Message]) -> Result<Vec<u32>, std::convert::Infallible> {
        let n: usize = m
            .iter()
            .map(|m| 2 + m.content.split_whitespace().count())
            .sum();
        Ok(vec![0; n + 1])
    }

    fn words(n: usize) -> String {
        vec!["w"; n].join(" ")
    }

    fn chat(system: Option<&str>, turns: usize, size: usize) -> Conversation {
        let mut c = Conversation::new(system.map(str::to_string));
        for i in 0..turns {
            c.turns
                .push(Message::new("user", format!("q{i} {}", words(size))));
            c.push_assistant(format!("a{i} {}", words(size)));
        }
        c
    }

    #[test]
    fn a_turn_that_fits_drops_nothing() {
        let mut c = chat(Some("be brief"), 2, 3);
        let f = c.fit_user("hello", 100, 20, measure).unwrap().unwrap();
        assert_eq!(f.dropped_messages, 0);
        // system 4 + 4 turns of 6 + user 3 + 1.
        assert_eq!(f.ids.len(), 4 + 24 + 3 + 1);
        assert_eq!(c.turns().len(), 5);
        assert_eq!(c.turns()[4], Message::new("user", "hello"));
    }

    #[test]
    fn a_full_context_drops_whole_oldest_turns_and_keeps_the_system_prompt() {
        // 10 turns of 2 × 12 tokens: 240 + system 4 + user 3 + 1 does not fit 128 - 32.
        let mut c = chat(Some("be brief"), 10, 9);
        let f = c.fit_user("hello", 128, 32, measure).unwrap().unwrap();
        assert!(f.dropped_messages > 0 && f.dropped_messages.is_multiple_of(2));
        assert!(
            f.ids.len() + 32 <= 128 && f.ids.len() <= 64,
            "{}",
            f.ids.len()
        );
        assert_eq!(c.system.as_deref(), Some("be brief"));
        // The newest turns survive, oldest first, each question still with its answer.
        let t = c.turns();
        assert!(
            t[0].role == "user"
                && t[0]
                    .content
                    .starts_with(&format!("q{}", f.dropped_messages / 2))
        );
        assert_eq!(t[t.len() - 2].content, format!("a9 {}", words(9)));
        assert_eq!(measure(&c.messages()).unwrap(), f.ids);
    }

    #[test]
    fn trimming_goes_to_half_the_context_so_the_next_turns_fit() {
        let mut c = chat(None, 10, 9);
        c.fit_user("one", 200, 20, measure).unwrap().unwrap();
        let used = measure(&c.messages()).unwrap().len();
        assert!(used <= 100, "{used}");
        c.push_assistant("short answer".into());
        let f = c.fit_user("two", 200, 20, measure).unwrap().unwrap();
        assert_eq!(f.dropped_messages, 0);
    }

    #[test]
    fn a_message_larger_than_the_context_is_refused_and_nothing_is_lost() {
        let mut c = chat(Some("sys"), 3, 2);
        let before = c.clone();
        let e = c
            .fit_user(&words(200), 128, 32, measure)
            .unwrap()
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                ConversationError::TooLong {
                    n_tokens: 206,
                    n_ctx: 128,
                    reserve: 32,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains("206 tokens") && msg.contains("at most 96"),
            "{msg}"
        );
        assert_eq!(c, before);
    }

    #[test]
    fn two_user_messages_in_a_row_are_dropped_with_the_answer_after_them() {
        let mut c = Conversation::new(None);
        c.turns.push(Message::new("user", words(20)));
        c.turns.push(Message::new("user", words(20)));
        c.push_assistant(words(20));
        c.turns.push(Message::new("user", "q"));
        c.push_assistant("a".into());
        let f = c.fit_user("new", 40, 8, measure).unwrap().unwrap();
        assert_eq!(f.dropped_messages, 3);
        assert_eq!(c.turns()[0], Message::new("user", "q"));
    }

    #[test]
    fn a_measuring_error_is_passed_on() {
        let mut c = chat(None, 1, 1);
        let r = c.fit_user("x", 100, 10, |_| Err("template failed"));
        assert_eq!(r.unwrap_err(), "template failed");
        assert_eq!(c.turns().len(), 2);
    }

    #[test]
    fn save_then_load_gives_the_same_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        let mut c = chat(Some("Be brief. \"Quoted\"\nnew line"), 2, 2);
        c.turns.push(Message::new("user", "ünïcode ✓"));
        c.save(&p).unwrap();
        let back = Conversation::load(&p).unwrap();
        assert_eq!(back, c);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["messages"][4]["content"], "ünïcode ✓");
        assert!(v["system"].as_str().unwrap().starts_with("Be brief."));
    }

    #[test]
    fn a_leading_system_message_becomes_the_system_prompt() {
        let text = r#"{"messages": [{"role": "system", "content": "S"},
                                    {"role": "user", "content": "U"}]}"#;
        let c = Conversation::from_json(text, Path::new("x.json")).unwrap();
        assert_eq!(c.system.as_deref(), Some("S"));
        assert_eq!(c.turns(), &[Message::new("user", "U")]);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &str)] = &[
            ("not json", "not a conversation file"),
            (r#"{"system": "s"}"#, "missing field `messages`"),
            (
                r#"{"messages": [{"role": "tool", "content": "x"}]}"#,
                "message 1 has role \"tool\"",
            ),
            (
                r#"{"messages": [{"role": "user"}]}"#,
                "missing field `content`",
            ),
            (r#"{"messages": [], "extra": 1}"#, "unknown field `extra`"),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let p = dir.path().join(format!("{i}.json"));
            std::fs::write(&p, text).unwrap();
            let e = Conversation::load(&p).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains(&format!("{i}.json")),
                "{text}: {e}"
            );
        }
        let e = Conversation::load(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(e, ConversationError::Read { .. }), "{e}");
        let e = Conversation::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        let e = Conversation::load(&dir.path().join("bin"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
