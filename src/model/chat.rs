//! Chat templates: renders the model's `tokenizer.chat_template` (Jinja) with minijinja the way
//! Hugging Face's `apply_chat_template` does — variables `messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token`, and the `raise_exception` function templates use for bad input.

use minijinja::{Environment, Error, ErrorKind};

/// One chat message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    /// Who speaks: `system`, `user` or `assistant` (passed to the template as given).
    pub role: String,
    /// The message text.
    pub content: String,
}

impl Message {
    /// A message from `role` with `content`.
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// Why the chat template could not format a conversation.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The file has no `tokenizer.chat_template`.
    #[error("the model has no tokenizer.chat_template, so chat mode cannot format messages (use -p for plain completion)")]
    NoTemplate,
    /// The template is not valid Jinja (as minijinja reads it).
    #[error("tokenizer.chat_template does not parse: {0:#}")]
    Parse(Error),
    /// Rendering failed, or the template raised an exception for these messages.
    #[error("tokenizer.chat_template failed to render: {0:#}")]
    Render(Error),
}

/// Template instructions one render may run (a long conversation with a real template takes
/// well under a tenth of this); running out is a render error naming the template.
const MAX_FUEL: u64 = 5_000_000;
/// The most bytes a rendered prompt may have.
const MAX_OUTPUT: usize = 4 << 20;

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            self.0.resize(MAX_OUTPUT, 0);
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are the texts of those special tokens.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        // Hugging Face renders with trim_blocks and lstrip_blocks on.
        env.set_trim_blocks(true);
        // A template comes from the model file: bounded in work (nested loops over huge ranges
        // would otherwise run for hours) and, in `render`, in output size.
        env.set_fuel(Some(MAX_FUEL));
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(ChatError::Parse)?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders the conversation to the prompt text.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let t = self.env.get_template("chat").map_err(ChatError::Render)?;
        let mut out = Capped(Vec::new());
        t.render_captured_to(
            minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            },
            &mut out,
        )
        .map_err(|e| {
            if out.0.len() >= MAX_OUTPUT {
                ChatError::Render(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "the chat template's output passed {} MiB: not a prompt",
                        MAX_OUTPUT >> 20
                    ),
                ))
            } else {
                ChatError::Render(e)
            }
        })?;
        String::from_utf8(out.0).map_err(|_| {
            ChatError::Render(Error::new(
                ErrorKind::InvalidOperation,
                "the chat template's output is not UTF-8",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn a_template_that_loops_forever_or_grows_without_bound_is_stopped() {
        let m = [Message::new("user", "hi")];
        let loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}";
        let t0 = std::time::Instant::now();
        let e = ChatTemplate::new(loops, "", "")
            .unwrap()
            .render(&m, true)
            .unwrap_err();
        assert!(t0.elapsed().as_secs() < 20, "{:?}", t0.elapsed());
        assert!(e.to_string().contains("fuel"), "{e}");
        let big = "{% set s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' %}{% for i in range(100000) %}{{ s ~ s ~ s ~ s }}{% endfor %}";
        let e = ChatTemplate::new(big, "", "")
            .unwrap()
            .render(&m, true)
            .unwrap_err();
        assert!(e.to_string().contains("MiB"), "{e}");
    }

    #[test]
    fn renders_chatml_with_default_system() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let s = t.render(&[Message::new("user", "Hi")], true).unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = t
            .render(
                &[
                    Message::new("system", "Be brief"),
                    Message::new("user", "Hi"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn bos_token_and_raise_exception() {
        let t = ChatTemplate::new(
            "{{ bos_token }}{% if messages|length == 0 %}{{ raise_exception('no messages') }}{% endif %}x",
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(
            t.render(&[Message::new("user", "a")], false).unwrap(),
            "<s>x"
        );
        let e = t.render(&[], false).unwrap_err().to_string();
        assert!(e.contains("no messages"), "{e}");
    }

    #[test]
    fn bad_template_is_an_error() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(ChatError::Parse(_))
        ));
    }
}
